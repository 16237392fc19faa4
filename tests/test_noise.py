"""Noise IKpsk2 handshake and CipherState: cacophony vectors, differential tests against the
pure-Python reference and against ``noiseprotocol``, and bad input."""

from __future__ import annotations

import random

import nacl.bindings as nb
import pytest

from aura_core import vectors_noise
from aura_core.errors import (DecryptError, HandshakeError, InvalidValue, KeyFormatError,
                              SessionExpired, UsageError)
from aura_core.noise import (MAX_MESSAGE, PROTOCOL_BLAKE2B, PROTOCOL_BLAKE2S, CipherState,
                             HandshakeState, openssl_available)
from tests.reference import noise_ref as ref

pytestmark = pytest.mark.native

PROTOCOLS = [PROTOCOL_BLAKE2S, PROTOCOL_BLAKE2B]
BACKENDS = ["sodium", "auto"] + (["openssl"] if openssl_available() else [])


def keypair(rng: random.Random) -> tuple[bytes, bytes]:
    sk = rng.randbytes(32)
    return sk, nb.crypto_scalarmult_base(sk)


def pair(protocol=PROTOCOL_BLAKE2S, prologue=b"p", psk=bytes(range(32)), rng=None):
    rng = rng or random.Random(1)
    (si, _), (sr, pr) = keypair(rng), keypair(rng)
    i = HandshakeState.initiator(protocol, prologue, si, pr, psk)
    r = HandshakeState.responder(protocol, prologue, sr, psk)
    return i, r


def complete(i, r, p1=b"one", p2=b"two"):
    assert r.read_message(i.write_message(p1)) == p1
    assert i.read_message(r.write_message(p2)) == p2
    return i, r


# ---- vectors ----

@pytest.mark.parametrize("vector", vectors_noise.vectors(), ids=lambda v: v["protocol_name"])
def test_cacophony_vector(vector):
    checked = vectors_noise.run_vector(vector)
    assert len(checked) == 2 * 2 + 2 + 2 * (len(vector["messages"]) - 2)
    for what, got, want in checked:
        assert got == want, what


def test_vectors_cover_both_suites():
    names = {v["protocol_name"] for v in vectors_noise.vectors()}
    assert names == set(PROTOCOLS)


def test_selftest_check_passes():
    results = list(vectors_noise.check())
    assert results and all(ok for _, ok, _ in results)


# ---- differential: C vs pure-Python reference ----

@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_against_reference(protocol):
    seed = random.randrange(1 << 32)
    rng = random.Random(seed)
    for _ in range(12):
        (si, _), (sr, pr) = keypair(rng), keypair(rng)
        ei, er = rng.randbytes(32), rng.randbytes(32)
        psk, prologue = rng.randbytes(32), rng.randbytes(rng.randrange(100))
        p1 = rng.randbytes(rng.choice([0, 1, 100, 1000, 65535 - 96]))
        p2 = rng.randbytes(rng.choice([0, 1, 100, 1000, 65535 - 48]))
        ci = HandshakeState.initiator(protocol, prologue, si, pr, psk, e=ei)
        cr = HandshakeState.responder(protocol, prologue, sr, psk, e=er)
        ri = ref.Handshake(protocol, prologue, True, si, pr, psk, ei)
        rr = ref.Handshake(protocol, prologue, False, sr, None, psk, er)
        m1 = ci.write_message(p1)
        assert m1 == ri.write(p1), f"seed={seed}"
        assert cr.read_message(m1) == rr.read(m1) == p1
        m2 = cr.write_message(p2)
        assert m2 == rr.write(p2), f"seed={seed}"
        assert ci.read_message(m2) == ri.read(m2) == p2
        assert ci.handshake_hash == cr.handshake_hash == ri.h == rr.h
        assert cr.remote_static == nb.crypto_scalarmult_base(si)
        (c1, c2), (x1, x2) = ci.split(), ri.split()
        for _ in range(3):
            pt = rng.randbytes(rng.randrange(2000))
            assert c1.encrypt_with_ad(b"ad", pt) == x1.encrypt(b"ad", pt)
            assert c2.encrypt_with_ad(b"", pt) == x2.encrypt(b"", pt)


# ---- differential: against noiseprotocol (an independent implementation) ----

def _np(protocol, initiator, s, rs, psk, prologue):
    from noise.connection import Keypair, NoiseConnection

    c = NoiseConnection.from_name(protocol.encode())
    (c.set_as_initiator if initiator else c.set_as_responder)()
    c.set_keypair_from_private_bytes(Keypair.STATIC, s)
    if rs is not None:
        c.set_keypair_from_public_bytes(Keypair.REMOTE_STATIC, rs)
    c.set_psks(psk)
    c.set_prologue(prologue)
    c.start_handshake()
    return c


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("we_initiate", [True, False])
def test_against_noiseprotocol(protocol, we_initiate):
    pytest.importorskip("noise.connection")
    seed = random.randrange(1 << 32)
    rng = random.Random(seed)
    for round_ in range(6):
        (si, pi), (sr, pr) = keypair(rng), keypair(rng)
        psk, prologue = rng.randbytes(32), rng.randbytes(rng.randrange(64))
        size = lambda: rng.choice([0, 1, 17, 1024, rng.randrange(65519 - 96)])  # noqa: E731
        if we_initiate:
            us = HandshakeState.initiator(protocol, prologue, si, pr, psk)
            them = _np(protocol, False, sr, None, psk, prologue)
        else:
            us = HandshakeState.responder(protocol, prologue, sr, psk)
            them = _np(protocol, True, si, pr, psk, prologue)
        p1, p2 = rng.randbytes(size()), rng.randbytes(size())
        if we_initiate:
            assert them.read_message(us.write_message(p1)) == p1, f"seed={seed}"
            assert us.read_message(them.write_message(p2)) == p2, f"seed={seed}"
        else:
            assert us.read_message(them.write_message(p1)) == p1, f"seed={seed}"
            assert them.read_message(us.write_message(p2)) == p2, f"seed={seed}"
        assert us.handshake_hash == them.get_handshake_hash()
        c1, c2 = us.split(backend=BACKENDS[round_ % len(BACKENDS)])
        send, recv = (c1, c2) if we_initiate else (c2, c1)
        for _ in range(4):
            a, b = rng.randbytes(size()), rng.randbytes(size())
            assert them.decrypt(send.encrypt_with_ad(b"", a)) == a, f"seed={seed}"
            assert recv.decrypt_with_ad(b"", them.encrypt(b)) == b, f"seed={seed}"


# ---- bad input ----

@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_tampered_message1_leaves_responder_usable(protocol):
    i, r = pair(protocol)
    m1 = i.write_message(b"hello")
    for pos in (0, 31, 32, 79, 80, len(m1) - 1):
        bad = bytearray(m1)
        bad[pos] ^= 0x01
        with pytest.raises(HandshakeError):
            r.read_message(bytes(bad))
        assert r.message_index == 0 and r.remote_static is None
    for cut in (0, 1, 32, 95):
        with pytest.raises(HandshakeError):
            r.read_message(m1[:cut])
    with pytest.raises(HandshakeError):
        r.read_message(bytes(MAX_MESSAGE + 1))
    h_before = r.handshake_hash
    with pytest.raises(HandshakeError):
        r.read_message(random.Random(5).randbytes(200))
    assert r.handshake_hash == h_before
    complete_from_m1(i, r, m1)


def complete_from_m1(i, r, m1):
    assert r.read_message(m1) == b"hello"
    assert i.read_message(r.write_message(b"ok")) == b"ok"
    (a, b), (c, d) = i.split(), r.split()
    assert c.decrypt_with_ad(b"", a.encrypt_with_ad(b"", b"x")) == b"x"


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_tampered_message2_leaves_initiator_usable(protocol):
    i, r = pair(protocol)
    r.read_message(i.write_message(b""))
    m2 = r.write_message(b"resp")
    for pos in range(0, len(m2), 7):
        bad = bytearray(m2)
        bad[pos] ^= 0x80
        with pytest.raises(HandshakeError):
            i.read_message(bytes(bad))
        assert not i.complete
    with pytest.raises(HandshakeError):
        i.read_message(m2[:47])
    assert i.read_message(m2) == b"resp"
    assert i.handshake_hash == r.handshake_hash


@pytest.mark.parametrize("what", ["psk", "prologue", "static", "remote_static", "protocol"])
def test_mismatched_parameters_fail(what):
    rng = random.Random(3)
    (si, _), (sr, pr) = keypair(rng), keypair(rng)
    psk, prologue, proto = bytes(32), b"pro", PROTOCOL_BLAKE2S
    kw = dict(psk=psk, prologue=prologue, s=sr, proto=proto)
    if what == "psk":
        kw["psk"] = b"\x01" * 32
    elif what == "prologue":
        kw["prologue"] = b"pro2"
    elif what == "static":
        kw["s"] = keypair(rng)[0]
    elif what == "protocol":
        kw["proto"] = PROTOCOL_BLAKE2B
    rs = keypair(rng)[1] if what == "remote_static" else pr
    i = HandshakeState.initiator(proto, prologue, si, rs, psk)
    r = HandshakeState.responder(kw["proto"], kw["prologue"], kw["s"], kw["psk"])
    m1 = i.write_message(b"")
    if what == "psk":  # the PSK enters at message 2: message 1 still reads
        r.read_message(m1)
        with pytest.raises(HandshakeError):
            i.read_message(r.write_message(b""))
        assert not i.complete
    else:
        with pytest.raises(HandshakeError):
            r.read_message(m1)


def test_replayed_message1_gives_new_state_but_message2_is_for_one_initiator():
    i, r = pair()
    m1 = i.write_message(b"")
    r.read_message(m1)
    with pytest.raises(UsageError):
        r.read_message(m1)  # a responder reads message 1 once
    i2, r2 = pair()
    with pytest.raises(UsageError):
        i2.read_message(b"x" * 48)  # the initiator writes first


def test_usage_errors():
    i, r = pair()
    with pytest.raises(UsageError):
        r.write_message(b"")
    with pytest.raises(UsageError):
        i.split()
    with pytest.raises(InvalidValue):
        i.write_message(bytes(MAX_MESSAGE - 95))
    i.write_message(bytes(MAX_MESSAGE - 96))
    with pytest.raises(UsageError):
        i.write_message(b"")
    with pytest.raises(InvalidValue):
        HandshakeState.initiator("Noise_XX_25519_ChaChaPoly_BLAKE2s", b"", bytes(32), bytes(32),
                                 bytes(32))
    with pytest.raises(KeyFormatError):
        HandshakeState.initiator(PROTOCOL_BLAKE2S, b"", bytes(31), bytes(32), bytes(32))
    with pytest.raises(KeyFormatError):
        HandshakeState.responder(PROTOCOL_BLAKE2S, b"", bytes(32), bytes(16))


def test_low_order_remote_static_rejected():
    # the all-zero point yields an all-zero DH output: refused rather than mixed in
    i = HandshakeState.initiator(PROTOCOL_BLAKE2S, b"", b"\x11" * 32, bytes(32), bytes(32))
    with pytest.raises(HandshakeError):
        i.write_message(b"")
    assert i.message_index == 0


def test_responder_psk_late_binding():
    rng = random.Random(9)
    (si, _), (sr, pr) = keypair(rng), keypair(rng)
    psk = rng.randbytes(32)
    i = HandshakeState.initiator(PROTOCOL_BLAKE2S, b"", si, pr, psk)
    r = HandshakeState.responder(PROTOCOL_BLAKE2S, b"", sr, None)
    r.read_message(i.write_message(b""))
    with pytest.raises(UsageError):
        r.write_message(b"")
    r.set_psk(psk)
    i.read_message(r.write_message(b""))
    assert i.handshake_hash == r.handshake_hash


# ---- CipherState ----

@pytest.mark.parametrize("backend", BACKENDS)
def test_cipherstate_failed_decrypt_keeps_nonce(backend):
    i, r = complete(*pair())
    (a, _), (c, _) = i.split(backend=backend), r.split(backend=backend)
    ct = [a.encrypt_with_ad(b"ad", bytes([n]) * (300 * n)) for n in range(3)]
    bad = bytearray(ct[0])
    bad[-1] ^= 1
    for junk in (bytes(bad), ct[1], ct[0][:15], ct[0][:-1] + b"\0"):
        with pytest.raises(DecryptError):
            c.decrypt_with_ad(b"ad", junk)
        assert c.n == 0
    with pytest.raises(DecryptError):
        c.decrypt_with_ad(b"other ad", ct[0])
    assert [c.decrypt_with_ad(b"ad", x) for x in ct] == [bytes([n]) * (300 * n) for n in range(3)]
    assert c.n == 3 and a.n == 3


@pytest.mark.parametrize("backend", BACKENDS)
def test_cipherstate_rekey_and_nonce_access(backend):
    k = bytes(range(32))
    a, b = CipherState.from_key(k, backend=backend), CipherState.from_key(k, backend="sodium")
    r = ref.Cipher(k)
    a.rekey()
    b.rekey()
    r.rekey()
    a.n = b.n = r.n = 1000
    pt = b"z" * 700
    ct = a.encrypt_with_ad(b"", pt)
    assert ct == r.encrypt(b"", pt)
    assert b.decrypt_with_ad(b"", ct) == pt and b.n == 1001
    a.set_nonce((1 << 64) - 1)
    with pytest.raises(SessionExpired):
        a.encrypt_with_ad(b"", b"")
    with pytest.raises(UsageError):
        CipherState().rekey()
    empty = CipherState()
    assert not empty.has_key() and empty.encrypt_with_ad(b"", b"abc") == b"abc"


def test_cipherstate_limits():
    c = CipherState.from_key(bytes(32))
    c.encrypt_with_ad(b"", bytes(65519))
    with pytest.raises(InvalidValue):
        c.encrypt_with_ad(b"", bytes(65520))
    with pytest.raises(DecryptError):
        c.decrypt_with_ad(b"", bytes(65536))


def test_backends_identical_bytes():
    if not openssl_available():
        pytest.skip("OpenSSL libcrypto not loadable here")
    rng = random.Random(11)
    k = rng.randbytes(32)
    for size in (0, 1, 15, 16, 63, 64, 255, 256, 1024, 1400, 16384, 65519):
        pt, ad = rng.randbytes(size), rng.randbytes(rng.randrange(40))
        outs = []
        for backend in ("sodium", "openssl", "auto"):
            c = CipherState.from_key(k, backend=backend)
            c.n = 77
            outs.append(c.encrypt_with_ad(ad, pt))
        assert outs[0] == outs[1] == outs[2], size
        for backend in ("sodium", "openssl"):
            d = CipherState.from_key(k, backend=backend)
            d.n = 77
            assert d.decrypt_with_ad(ad, outs[0]) == pt


# ---- fuzz target smoke run (the sanitizer pass runs it too) ----

def test_fuzz_target_smoke():
    from tests.fuzz import fuzz_noise

    rng = random.Random(13)
    corpus = fuzz_noise.seeds() + [rng.randbytes(rng.randrange(300)) for _ in range(150)]
    assert fuzz_noise.run_corpus(corpus) == len(corpus)
