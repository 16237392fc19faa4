"""STUN (RFC 8489) client: RFC 5769 vectors, message checks, retransmission timing, a real coturn."""

from __future__ import annotations

import asyncio
import hashlib
import json
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aura_core import selftest
from aura_core.errors import InvalidValue, StunError
from aura_core.stun import (Attr, BINDING_ERROR, BINDING_SUCCESS, BindingFailed, BindingResult,
                            BindingSucceeded, BindingTransaction, StunClient, build_binding_request,
                            build_binding_response, check_fingerprint, check_integrity,
                            encode_message, long_term_key, mapping_behaviour, parse_message,
                            saslprep, short_term_key)
from aura_core.vectors_stun import check as vectors_check

VECTORS = json.loads((Path(__file__).parent.parent / "aura_core/vectors/stun/rfc5769.json")
                     .read_text())["vectors"]


def counter_rand():
    n = iter(range(1, 1 << 30))
    return lambda k: next(n).to_bytes(k, "big")


# --- vectors ---------------------------------------------------------------------------------

def test_vectors_all_pass_via_selftest_checker():
    results = list(vectors_check())
    assert len(results) == 4 and all(ok for _, ok, _ in results), results
    assert "stun (RFC 5769)" in selftest.CHECKS


@pytest.mark.parametrize("name", list(VECTORS))
def test_vector_tamper_breaks_integrity(name):
    raw = bytearray.fromhex(VECTORS[name]["hex"])
    cred = VECTORS[name]["credentials"]
    key = (short_term_key(cred["password"]) if cred["mechanism"] == "short-term"
           else long_term_key(cred["username"], cred["realm"], cred["password"]))
    assert check_integrity(parse_message(bytes(raw)), key) is True
    assert check_integrity(parse_message(bytes(raw)), key + b"x") is False
    raw[25] ^= 1  # inside the first attribute's value, covered by the MAC
    assert check_integrity(parse_message(bytes(raw)), key) is False
    if check_fingerprint(parse_message(bytes.fromhex(VECTORS[name]["hex"]))) is not None:
        assert check_fingerprint(parse_message(bytes(raw))) is False


def test_ipv4_response_fields():
    m = parse_message(bytes.fromhex(VECTORS["sample_ipv4_response"]["hex"]))
    assert m.msg_type == BINDING_SUCCESS and m.msg_class == "success" and m.method == 1
    assert m.mapped_address == ("192.0.2.1", 32853)
    assert m.software == "test vector"


def test_saslprep_rfc5769_password():
    cred = VECTORS["sample_request_long_term_auth"]["credentials"]
    assert saslprep(cred["password"]) == cred["password_after_saslprep"]
    assert saslprep("I\u00ADX") == "IX" and saslprep("\u2168") == "IX"  # RFC 4013 §3 examples
    with pytest.raises(InvalidValue):
        saslprep("\u0007")


# --- message structure -----------------------------------------------------------------------

@pytest.mark.parametrize("data", [
    b"", b"\x00" * 19,
    b"\x40" + bytes(19),  # top bits set: QUIC-looking
    bytes.fromhex("0001000021120000") + bytes(12),  # wrong cookie
    bytes.fromhex("000100042112a442") + bytes(12),  # length past the end
    bytes.fromhex("000100082112a442") + bytes(12) + bytes.fromhex("80220010") + bytes(4),
])
def test_malformed_messages_raise_stun_error(data):
    with pytest.raises(StunError):
        parse_message(data)


@given(st.binary(min_size=12, max_size=12),
       st.lists(st.tuples(st.integers(0x8000, 0xFFFF).filter(lambda t: t != Attr.FINGERPRINT),
                          st.binary(max_size=40)), max_size=5),
       st.booleans(), st.one_of(st.none(), st.binary(min_size=1, max_size=32)))
def test_encode_parse_roundtrip(txid, attrs, fp, key):
    raw = encode_message(0x0001, txid, attrs, integrity_key=key, fingerprint=fp)
    m = parse_message(raw)
    assert m.txid == txid and [(t, v) for t, v, _ in m.attrs][:len(attrs)] == attrs
    assert check_fingerprint(m) is (True if fp else None)
    assert check_integrity(m, key or b"k") is (None if key is None else True)


@given(st.binary(max_size=200))
def test_parse_random_bytes_never_crashes(data):
    try:
        m = parse_message(data)
    except StunError:
        return
    m.mapped_address if m.get(Attr.XOR_MAPPED_ADDRESS) is None else None
    check_fingerprint(m)


def test_attributes_after_integrity_are_ignored():
    txid = bytes(range(12))
    raw = encode_message(BINDING_SUCCESS, txid, [(Attr.SOFTWARE, b"a")], integrity_key=b"k")
    # append an unauthenticated SOFTWARE after MESSAGE-INTEGRITY and fix the length
    extra = Attr.SOFTWARE.to_bytes(2, "big") + b"\x00\x01b\x00\x00\x00"
    raw = raw[:2] + (len(raw) - 20 + 8).to_bytes(2, "big") + raw[4:] + extra
    m = parse_message(raw)
    assert m.software == "a" and check_integrity(m, b"k") is True


def test_mapped_address_fallback_and_ipv6_xor():
    txid = bytes(range(12))
    plain = bytes([0, 1]) + (4242).to_bytes(2, "big") + bytes([198, 51, 100, 7])
    m = parse_message(encode_message(BINDING_SUCCESS, txid, [(Attr.MAPPED_ADDRESS, plain)]))
    assert m.mapped_address == ("198.51.100.7", 4242)
    v6 = parse_message(build_binding_response(txid, ("2001:db8::1", 9)))
    assert v6.mapped_address == ("2001:db8::1", 9)


# --- transactions ----------------------------------------------------------------------------

def test_retransmission_schedule_rfc8489():
    tx = BindingTransaction(("192.0.2.9", 3478), 100.0, rand=counter_rand())
    sends = []
    t = 100.0
    while tx.state == "pending":
        if tx.datagrams_to_send(t):
            sends.append(round(t - 100.0, 3))
        t = tx.get_timer() if tx.get_timer() is not None else t
    assert sends == [0.0, 0.5, 1.5, 3.5, 7.5, 15.5, 31.5]
    assert round(t - 100.0, 3) == 39.5 and tx.failure and tx.failure.reason == "timeout"
    assert tx.transmissions == 7


def test_no_retransmission_before_timer():
    tx = BindingTransaction(("192.0.2.9", 3478), 0.0, rand=counter_rand())
    assert len(tx.datagrams_to_send(0.0)) == 1
    assert tx.datagrams_to_send(0.49) == []
    assert len(tx.datagrams_to_send(0.5)) == 1
    # a late tick sends every overdue retransmission once, in order
    assert len(tx.datagrams_to_send(3.6)) == 2


def pump(client: StunClient, server_map, now: float) -> None:
    for data, addr in client.datagrams_to_send(now):
        req = parse_message(data)
        assert req.msg_class == "request" and check_fingerprint(req) is True
        reply = server_map(req, addr)
        if reply is not None:
            client.receive_datagram(reply, addr, now + 0.01)


def test_client_success_two_servers_endpoint_independent():
    c = StunClient(rand=counter_rand())
    servers = [("192.0.2.1", 3478), ("192.0.2.2", 3478)]
    for s in servers:
        c.start(s, 0.0)
    pump(c, lambda req, addr: build_binding_response(req.txid, ("203.0.113.5", 40000)), 0.0)
    events = [c.next_event(), c.next_event()]
    assert c.next_event() is None and c.pending == 0
    assert all(isinstance(e, BindingSucceeded) for e in events)
    results = [e.result for e in events]  # type: ignore[union-attr]
    assert {r.mapped for r in results} == {("203.0.113.5", 40000)}
    assert all(abs(r.rtt - 0.01) < 1e-9 for r in results)
    assert mapping_behaviour(results) == "endpoint-independent"


def test_mapping_behaviour_cases():
    r = lambda srv, port: BindingResult((srv, 3478), ("203.0.113.5", port), 0.0)
    assert mapping_behaviour([r("192.0.2.1", 1), r("192.0.2.2", 2)]) == "endpoint-dependent"
    assert mapping_behaviour([r("192.0.2.1", 1), r("192.0.2.1", 2)]) == "unknown"
    assert mapping_behaviour([]) == "unknown"


def test_error_response_fails_with_code():
    c = StunClient(rand=counter_rand())
    txid = c.start(("192.0.2.1", 3478), 0.0)
    err = bytes([0, 0, 4, 20]) + b"Unknown Attribute"
    c.datagrams_to_send(0.0)
    c.receive_datagram(encode_message(BINDING_ERROR, txid, [(Attr.ERROR_CODE, err)]),
                       ("192.0.2.1", 3478), 0.1)
    ev = c.next_event()
    assert isinstance(ev, BindingFailed) and ev.code == 420 and "Unknown Attribute" in ev.reason


def test_garbage_wrong_txid_and_bad_fingerprint_are_dropped_not_raised():
    c = StunClient(rand=counter_rand())
    txid = c.start(("192.0.2.1", 3478), 0.0)
    c.datagrams_to_send(0.0)
    c.receive_datagram(b"\xc0garbage", ("192.0.2.1", 3478), 0.1)
    c.receive_datagram(build_binding_response(bytes(12), ("1.2.3.4", 5)), ("192.0.2.1", 3478), 0.1)
    bad = bytearray(build_binding_response(txid, ("1.2.3.4", 5)))
    bad[-1] ^= 0xFF  # FINGERPRINT wrong: silently discarded, transaction still pending
    c.receive_datagram(bytes(bad), ("192.0.2.1", 3478), 0.1)
    assert c.dropped == 3 and c.pending == 1 and c.next_event() is None
    c.receive_datagram(build_binding_response(txid, ("1.2.3.4", 5)), ("192.0.2.1", 3478), 0.2)
    assert isinstance(c.next_event(), BindingSucceeded)


def test_unknown_comprehension_required_attribute_fails_transaction():
    c = StunClient(rand=counter_rand())
    txid = c.start(("192.0.2.1", 3478), 0.0)
    c.datagrams_to_send(0.0)
    resp = encode_message(BINDING_SUCCESS, txid, [(0x0033, b"?")], fingerprint=True)
    c.receive_datagram(resp, ("192.0.2.1", 3478), 0.1)
    ev = c.next_event()
    assert isinstance(ev, BindingFailed) and "comprehension-required" in ev.reason


def test_rand_is_injected_and_checked():
    tx = BindingTransaction(("192.0.2.1", 1), 0.0, rand=lambda n: b"\x07" * n)
    assert tx.txid == b"\x07" * 12 and parse_message(tx.request).txid == tx.txid
    with pytest.raises(InvalidValue):
        BindingTransaction(("192.0.2.1", 1), 0.0, rand=lambda n: b"")
    c = StunClient(rand=lambda n: b"\x01" * n)
    c.start(("192.0.2.1", 1), 0.0)
    with pytest.raises(InvalidValue):
        c.start(("192.0.2.2", 1), 0.0)


def test_request_has_fingerprint_and_no_software_by_default():
    m = parse_message(build_binding_request(bytes(12)))
    assert [t for t, _, _ in m.attrs] == [Attr.FINGERPRINT] and check_fingerprint(m) is True


# --- a real coturn on loopback (no root needed) -------------------------------------------------

@pytest.fixture
def coturn():
    if shutil.which("turnserver") is None:
        pytest.skip("coturn not installed (apt-get install -y coturn)")
    state = Path(tempfile.mkdtemp(prefix="aura-coturn-"))
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    proc = subprocess.Popen(
        ["turnserver", "-n", "--stun-only", "--listening-ip=127.0.0.1", "--listening-ip=127.0.0.2",
         f"--listening-port={port}", "--no-tcp", "--no-tls", "--no-dtls", "--no-cli",
         f"--pidfile={state / 'pid'}", f"--userdb={state / 'db'}", f"--log-file={state / 'log'}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        yield [("127.0.0.1", port), ("127.0.0.2", port)]
    finally:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
        shutil.rmtree(state, ignore_errors=True)


def test_asyncio_driver_against_real_coturn(coturn):
    from aura_core.asyncio.stun import discover

    async def go():
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind(("127.0.0.1", 0))
        try:
            deadline = time.monotonic() + 5
            while True:  # coturn needs a moment to bind
                client = StunClient(rto=0.05, rc=3, rm=2)
                ok, behaviour, failed = await discover(sock, coturn, client=client)
                if len(ok) == 2 or time.monotonic() > deadline:
                    return sock.getsockname(), ok, behaviour, failed
        finally:
            sock.close()

    local, ok, behaviour, failed = asyncio.run(go())
    assert len(ok) == 2, failed
    assert {r.mapped for r in ok} == {local}  # no NAT on loopback: mapped = our own address
    assert behaviour == "endpoint-independent"
    assert all(r.software for r in ok)  # coturn names itself


def test_fuzz_corpus_smoke():
    import random
    import sys

    sys.path.insert(0, str(Path(__file__).parent / "fuzz"))
    import fuzz_stun

    rng = random.Random(4321)
    print("seed 4321")
    corpus = fuzz_stun.seeds() + [bytes.fromhex(v["hex"]) for v in VECTORS.values()]
    for seed in list(corpus):
        for _ in range(40):
            b = bytearray(seed or b"\0")
            b[rng.randrange(len(b))] ^= 1 << rng.randrange(8)
            corpus.append(bytes(b))
    corpus += [rng.randbytes(rng.randrange(0, 80)) for _ in range(200)]
    assert fuzz_stun.run_corpus(corpus) == len(corpus)
