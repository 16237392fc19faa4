"""Punch packets and the compiled punch loop, checked against a pure-Python reference."""

from __future__ import annotations

import hashlib
import os
import random
import socket
import sys
import threading
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aura_core import _punch
from aura_core.errors import InvalidValue
from aura_core.hashing import kdf
from aura_core.punch import (PACKET_LEN, PunchEngine, build_punch, check_punch,
                             is_punch, punch_key)
from aura_core.stun import check_fingerprint, parse_message

sys.path.insert(0, str(Path(__file__).parent / "fuzz"))
import fuzz_punch  # noqa: E402

pytestmark = pytest.mark.native

ids = st.binary(min_size=16, max_size=16)
nonces = st.binary(min_size=32, max_size=32)
seqs = st.integers(0, (1 << 64) - 1)


# --- pure-Python reference of docs/wire.md "Punch packets" ------------------------------------

def ref_key(nonce: bytes) -> bytes:
    h = hashlib.blake2b(digest_size=32, key=nonce, person=b"aura.kdf.v1".ljust(16, b"\0"))
    h.update(bytes([len(b"punch-key")]) + b"punch-key")
    return h.digest()


def ref_build(nonce: bytes, sender: bytes, receiver: bytes, seq: int, flags: int = 0) -> bytes:
    body = (b"\x00\x11" + (56).to_bytes(2, "big") + b"\x21\x12\xa4\x42" + b"AURA"
            + seq.to_bytes(8, "big") + b"\xc0\xa5" + (52).to_bytes(2, "big")
            + bytes([1, flags, 0, 0]) + sender + receiver)
    return body + hashlib.blake2b(body, digest_size=16, key=ref_key(nonce)).digest()


@given(nonces, ids, ids, seqs, st.sampled_from([0, 1]))
def test_build_matches_reference(nonce, sender, receiver, seq, flags):
    pkt = build_punch(nonce, sender, receiver, seq, ack=bool(flags))
    assert pkt == ref_build(nonce, sender, receiver, seq, flags)
    assert len(pkt) == PACKET_LEN == 76
    assert punch_key(nonce) == ref_key(nonce) == kdf(nonce, b"punch-key")


@given(nonces, ids, ids, seqs)
def test_never_looks_like_quic_and_is_valid_stun(nonce, sender, receiver, seq):
    pkt = build_punch(nonce, sender, receiver, seq)
    assert pkt[0] <= 0x3F  # QUIC v1 starts 0x40-0x7F (short) or 0xC0-0xFF (long)
    m = parse_message(pkt)  # a well-formed STUN Binding indication
    assert m.msg_class == "indication" and m.method == 1 and check_fingerprint(m) is None
    assert m.attrs[0][0] == 0xC0A5 and 0x8000 <= m.attrs[0][0]  # comprehension-optional
    assert is_punch(pkt)


def test_check_verdicts():
    me, peer, other = b"M" * 16, b"P" * 16, b"O" * 16
    nonce = os.urandom(32)
    good = build_punch(nonce, peer, me, 5, ack=True)
    assert check_punch(good, nonce, me) == ("ok", (peer, 5, True))
    assert check_punch(good, os.urandom(32), me)[0] == "bad_tag"
    assert check_punch(good, nonce, other)[0] == "wrong_receiver"
    for i in range(PACKET_LEN):  # any flipped bit is caught
        bad = bytearray(good)
        bad[i] ^= 0x01
        assert check_punch(bytes(bad), nonce, me)[0] != "ok", i
    assert check_punch(good[:-1], nonce, me)[0] == "malformed"
    assert check_punch(good + b"\0", nonce, me)[0] == "malformed"
    assert check_punch(b"\x40" + good[1:], nonce, me)[0] == "not_punch"
    assert check_punch(b"", nonce, me)[0] == "not_punch"
    stun_req = bytes.fromhex("000100002112a442") + bytes(12)
    assert check_punch(stun_req, nonce, me)[0] == "not_punch" and not is_punch(stun_req)
    unknown_flags = bytearray(good)
    unknown_flags[25] = 0x80
    assert check_punch(bytes(unknown_flags), nonce, me)[0] == "malformed"


def test_bad_arguments_raise_invalid_value():
    with pytest.raises(InvalidValue):
        punch_key(b"short")
    with pytest.raises(InvalidValue):
        build_punch(bytes(32), b"x", bytes(16), 0)
    with pytest.raises(InvalidValue):
        build_punch(bytes(32), bytes(16), bytes(16), -1)
    with pytest.raises(InvalidValue):
        PunchEngine(bytes(16), bytes(32), [(b"a" * 16, bytes(32)), (b"a" * 16, bytes(32))])
    e = PunchEngine(bytes(16), bytes(32), [(b"a" * 16, bytes(32))])
    with pytest.raises(InvalidValue):
        e.set_targets([(b"b" * 16, ("127.0.0.1", 1))])
    with pytest.raises(InvalidValue):
        e.set_targets([(b"a" * 16, ("not-an-ip", 1))])
    with pytest.raises(InvalidValue):
        e.set_targets([(b"a" * 16, ("127.0.0.1", 70000))])
    for interval, timeout in ((0.0, 1.0), (1e10, 1.0), (0.05, 1e12), (float("nan"), 1.0)):
        with pytest.raises(InvalidValue):  # ns arithmetic in C must not overflow
            e.run(0, interval=interval, timeout=timeout)


# --- replay window ----------------------------------------------------------------------------

class RefWindow:
    def __init__(self) -> None:
        self.seen: set[int] = set()
        self.top = -1

    def accept(self, seq: int) -> bool:
        if seq in self.seen or (self.top >= 0 and self.top - seq >= 64):
            return False
        self.seen.add(seq)
        self.top = max(self.top, seq)
        return True


@settings(max_examples=200)
@given(st.lists(st.integers(0, 300), max_size=120))
def test_replay_window_matches_reference(seqs_in):
    me, peer, nonce = b"M" * 16, b"P" * 16, bytes(range(32))
    e = PunchEngine(me, nonce, [(peer, os.urandom(32))])
    ref = RefWindow()
    for s in seqs_in:
        verdict, _ = e.accept(build_punch(nonce, peer, me, s))
        assert (verdict == "ok") == ref.accept(s), s
        assert verdict in ("ok", "replayed")
    st_ = e.stats()
    assert st_["ok"] + st_["replayed"] == len(seqs_in)


def test_engine_drops_and_counts():
    me, peer, stranger = b"M" * 16, b"P" * 16, b"S" * 16
    nonce = os.urandom(32)
    e = PunchEngine(me, nonce, [(peer, os.urandom(32))])
    assert e.accept(build_punch(nonce, stranger, me, 1))[0] == "unknown_sender"
    assert e.accept(build_punch(os.urandom(32), peer, me, 1))[0] == "bad_tag"
    assert e.accept(build_punch(nonce, peer, stranger, 1))[0] == "wrong_receiver"
    assert e.accept(b"\xc3quic")[0] == "not_punch"
    v, ev = e.accept(build_punch(nonce, peer, me, 1))
    assert v == "ok" and ev is not None and ev.peer == peer and ev.seq == 1
    assert e.accept(build_punch(nonce, peer, me, 1))[0] == "replayed"
    s = e.stats()
    assert (s["unknown_sender"], s["bad_tag"], s["wrong_receiver"], s["not_punch"], s["ok"],
            s["replayed"]) == (1, 1, 1, 1, 1, 1)


# --- the loop over real loopback sockets ------------------------------------------------------

def udp() -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    s.bind(("127.0.0.1", 0))
    return s


def test_two_engines_punch_and_ack_over_loopback():
    a_id, b_id, na, nb = os.urandom(16), os.urandom(16), os.urandom(32), os.urandom(32)
    sa, sb, spoof = udp(), udp(), udp()
    try:
        ea = PunchEngine(a_id, na, [(b_id, nb)])
        eb = PunchEngine(b_id, nb, [(a_id, na)])
        # a stale candidate (nobody there) plus the real one: a burst covers both
        dead = udp()
        dead_addr = dead.getsockname()
        dead.close()
        ea.set_targets([(b_id, dead_addr), (b_id, sb.getsockname())])
        # forged punches (wrong key, replays of nothing) from a third socket are dropped in C
        for i in range(5):
            spoof.sendto(build_punch(os.urandom(32), a_id, b_id, i), sb.getsockname())
        spoof.sendto(b"\xc3not a punch", sb.getsockname())
        result = {}
        t = threading.Thread(target=lambda: result.setdefault(
            "b", eb.run(sb.fileno(), send=False, timeout=2.0, stop_after=1)))
        t.start()
        got = ea.run(sa.fileno(), interval=0.02, timeout=2.0, stop_after=1)
        t.join()
        # b saw a's punch from a's real address (peer-reflexive) and acked it from C
        (ev_b,) = result["b"]
        assert ev_b.peer == a_id and not ev_b.ack and ev_b.source == sa.getsockname()
        (ev_a,) = got
        assert ev_a.peer == b_id and ev_a.ack and ev_a.source == sb.getsockname()
        sb_stats = eb.stats()
        assert sb_stats["bad_tag"] == 5 and sb_stats["not_punch"] == 1 and sb_stats["acks_sent"] == 1
        assert ea.stats()["sent"] >= 2
    finally:
        for s in (sa, sb, spoof):
            s.close()


def test_run_respects_deadline_with_nothing_arriving():
    s = udp()
    try:
        e = PunchEngine(os.urandom(16), os.urandom(32), [(os.urandom(16), os.urandom(32))])
        assert e.run(s.fileno(), send=False, timeout=0.05) == []
        assert e.run(s.fileno(), send=True, timeout=0.0) == []  # no targets: nothing to send
    finally:
        s.close()


def test_many_targets_one_burst():
    me, peer_ids = os.urandom(16), [os.urandom(16) for _ in range(300)]
    nonces = {p: os.urandom(32) for p in peer_ids}
    sink, src = udp(), udp()
    try:
        e = PunchEngine(me, os.urandom(32), nonces.items())
        e.set_targets((p, sink.getsockname()) for p in peer_ids)
        assert e.target_count == 300 and e.send_burst(src.fileno()) == 300
        sink.settimeout(1)
        seen = set()
        for _ in range(300):
            pkt = sink.recv(128)
            receiver = pkt[44:60]  # each packet tagged under its own receiver's key
            assert check_punch(pkt, nonces[receiver], receiver)[0] == "ok"
            seen.add(pkt[44:60])
        assert seen == set(peer_ids)
    finally:
        sink.close()
        src.close()


def test_bench_helpers_move_packets():
    rx, tx = udp(), udp()
    try:
        host, port = rx.getsockname()
        assert _punch._bench_sendmmsg(tx.fileno(), host, port, PACKET_LEN, 100) == 100
        assert _punch._bench_recvmmsg(rx.fileno(), PACKET_LEN, 100, 1.0) == 100
    finally:
        rx.close()
        tx.close()


# --- every tag path (portable, AVX2 4-lane, AVX-512 8-lane) gives the reference bytes ----------

@pytest.fixture(params=[0, 1, 2], ids=["portable", "avx2", "avx512"])
def simd_level(request):
    prev = _punch._set_simd(request.param)
    if _punch._simd_active() != request.param:
        _punch._set_simd(prev)
        pytest.skip(f"CPU lacks vector level {request.param}")
    yield request.param
    _punch._set_simd(prev)


def test_burst_tags_match_reference_on_every_path(simd_level):
    # 37 peers, 2 targets each in shuffled order: batches of 64 with 8/4/1-lane remainders,
    # every lane a different key; each packet is compared with the pure-Python reference.
    rng = random.Random(simd_level)
    print("seed", simd_level)
    me = rng.randbytes(16)
    nonces = {rng.randbytes(16): rng.randbytes(32) for _ in range(37)}
    targets = [p for p in nonces for _ in range(2)]
    rng.shuffle(targets)
    sink, src = udp(), udp()
    try:
        e = PunchEngine(me, rng.randbytes(32), nonces.items())
        e.set_targets((p, sink.getsockname()) for p in targets)
        for _ in range(2):
            assert e.send_burst(src.fileno()) == len(targets)
        sink.settimeout(1)
        next_seq = {p: 0 for p in nonces}
        for _ in range(2 * len(targets)):
            pkt = sink.recv(128)
            receiver = pkt[44:60]
            seq = int.from_bytes(pkt[12:20], "big")
            assert seq == next_seq[receiver]
            next_seq[receiver] += 1
            assert pkt == ref_build(nonces[receiver], me, receiver, seq)
    finally:
        sink.close()
        src.close()


def test_batched_receive_validates_like_reference_on_every_path(simd_level):
    # one recvmmsg batch mixing valid, forged, misaddressed, replayed and foreign datagrams
    rng = random.Random(100 + simd_level)
    print("seed", 100 + simd_level)
    me, peer, nonce = rng.randbytes(16), rng.randbytes(16), rng.randbytes(32)
    rx, tx = udp(), udp()
    try:
        e = PunchEngine(me, nonce, [(peer, rng.randbytes(32))], auto_ack=False)
        want = {"ok": 0, "bad_tag": 0, "wrong_receiver": 0, "replayed": 0, "not_punch": 0}
        sent = []
        for i in range(61):
            kind = rng.choice(["ok", "ok", "bad_tag", "wrong_receiver", "replayed", "not_punch"])
            if kind == "ok":
                pkt = ref_build(nonce, peer, me, 1000 + i)
            elif kind == "bad_tag":
                pkt = bytearray(ref_build(nonce, peer, me, 1000 + i))
                pkt[rng.randrange(76)] ^= 1 << rng.randrange(8)
                pkt = bytes(pkt)
                if check_punch(pkt, nonce, me)[0] != "bad_tag":
                    continue  # a flip in the header is malformed instead: not this test's case
            elif kind == "wrong_receiver":
                pkt = ref_build(nonce, peer, rng.randbytes(16), 1000 + i)
            elif kind == "replayed":
                if not sent:
                    continue
                pkt = sent[-1]
            else:
                pkt = b"\xc3" + rng.randbytes(40)
            if kind == "ok":
                sent.append(pkt)
            want[kind] += 1
            tx.sendto(pkt, rx.getsockname())
        assert e.run(rx.fileno(), send=False, timeout=0.3, stop_after=0, max_events=0) == []
        s = e.stats()
        assert {k: s[k] for k in want} == want
    finally:
        rx.close()
        tx.close()


def test_run_serves_receive_between_slices_of_a_long_burst():
    # 5,000 targets go out in slices of 256 with the socket drained in between: punches queued
    # before the run are accepted after the first slice, so stop_after ends the run there
    # instead of after the whole burst.
    me, peer, pn, mn = os.urandom(16), os.urandom(16), os.urandom(32), os.urandom(32)
    peers = [(os.urandom(16), os.urandom(32)) for _ in range(4999)] + [(peer, pn)]
    sink, s, other = udp(), udp(), udp()
    try:
        e = PunchEngine(me, mn, peers, auto_ack=False)
        e.set_targets((p, sink.getsockname()) for p, _ in peers)
        for i in range(3):
            other.sendto(build_punch(mn, peer, me, i), s.getsockname())
        evs = e.run(s.fileno(), interval=0.05, timeout=5.0, stop_after=3)
        st_ = e.stats()
        assert [ev.seq for ev in evs] == [0, 1, 2] and st_["ok"] == 3
        assert st_["sent"] == 256 and st_["bursts"] == 1
        # a short run: bursts started + skipped never exceed the bursts due (0, 50, ..., 100 ms)
        e.run(s.fileno(), interval=0.05, timeout=0.12, stop_after=0)
        st2 = e.stats()
        assert 1 <= st2["bursts"] - 1 + st2["bursts_missed"] <= 3
    finally:
        for x in (sink, s, other):
            x.close()


# --- fuzz target smoke (the sanitizer pass runs this) -----------------------------------------

def test_fuzz_corpus_smoke(simd_level):
    rng = random.Random(1234)
    print("seed 1234")
    corpus = fuzz_punch.seeds()
    for seed in list(corpus):
        for _ in range(50):
            b = bytearray(seed or b"\0")
            b[rng.randrange(len(b))] ^= 1 << rng.randrange(8)
            corpus.append(bytes(b))
    corpus += [rng.randbytes(rng.randrange(0, 100)) for _ in range(300)]
    assert fuzz_punch.run_corpus(corpus) == len(corpus)


# --- the asyncio driver over loopback (no NAT): ack proves the path; peer-reflexive learning ----

def test_asyncio_punch_learns_peer_reflexive_and_proves_path():
    import asyncio

    from aura_core.asyncio.punch import punch, serve

    a_id, b_id, na, nb = os.urandom(16), os.urandom(16), os.urandom(32), os.urandom(32)
    sa, sb = udp(), udp()
    dead = udp()
    wrong = dead.getsockname()  # B was told a stale address for A (as a symmetric NAT would)
    dead.close()

    async def go():
        ea = PunchEngine(a_id, na, [(b_id, nb)])
        eb = PunchEngine(b_id, nb, [(a_id, na)])
        b_done = asyncio.Event()

        async def side_a():
            res = await punch(ea, sa, b_id, [sb.getsockname()], window=2.0, interval=0.02)
            await serve(ea, sa, b_done, slice_s=0.02)  # keep answering until B is through
            return res

        async def side_b():
            try:
                return await punch(eb, sb, a_id, [wrong], window=2.0, interval=0.02)
            finally:
                b_done.set()

        ra, rb = await asyncio.gather(side_a(), side_b())
        # B proved the path through A's real address although it never had it as a candidate
        return ra, rb, eb

    ra, rb, eb = asyncio.run(go())
    try:
        assert ra.direct and ra.path == sb.getsockname()
        assert rb.direct and rb.path == sa.getsockname() and sa.getsockname() != wrong
        assert any(ev.source == sa.getsockname() and not ev.ack for ev in rb.events)
    finally:
        sa.close()
        sb.close()


def test_asyncio_punch_gives_up_at_window_and_serve_acks():
    import asyncio

    from aura_core.asyncio.punch import punch, serve

    a_id, b_id, na, nb = os.urandom(16), os.urandom(16), os.urandom(32), os.urandom(32)
    sa, sb = udp(), udp()

    async def go():
        ea = PunchEngine(a_id, na, [(b_id, nb)])
        eb = PunchEngine(b_id, nb, [(a_id, na)])
        # nobody answers: the attempt ends at its window, on the relay
        lonely = await punch(ea, sa, b_id, [sb.getsockname()], window=0.15, interval=0.03)
        # now B serves (acks only, no punches of its own): A's next attempt succeeds
        stop = asyncio.Event()
        server = asyncio.ensure_future(serve(eb, sb, stop, slice_s=0.02))
        ok = await punch(ea, sa, b_id, [sb.getsockname()], window=2.0, interval=0.02)
        stop.set()
        await server
        return lonely, ok, eb.stats()

    lonely, ok, b_stats = asyncio.run(go())
    try:
        assert not lonely.direct and lonely.path is None and lonely.elapsed >= 0.15
        assert ok.direct and ok.path == sb.getsockname()
        # B's socket had A's earlier punches queued: accepted (fresh seqs) and acked
        assert b_stats["acks_sent"] >= 1 and b_stats["sent"] == 0
    finally:
        sa.close()
        sb.close()


def test_answer_builds_ack_for_a_receive_loop_that_owns_the_socket():
    me, peer, nm, np_ = b"M" * 16, b"P" * 16, os.urandom(32), os.urandom(32)
    e = PunchEngine(me, nm, [(peer, np_)])
    verdict, ev, ack = e.answer(build_punch(nm, peer, me, 3))
    assert verdict == "ok" and ev.seq == 3 and not ev.ack
    # the ack is a valid punch to the peer, under the peer's key, flagged ACK
    assert check_punch(ack, np_, peer) == ("ok", (me, 0, True))
    v2, ev2, ack2 = e.answer(build_punch(nm, peer, me, 4, ack=True))
    assert v2 == "ok" and ev2.ack and ack2 is None  # acks are never acked (no ping-pong)
    assert e.answer(build_punch(nm, peer, me, 3)) == ("replayed", None, None)
    assert e.stats()["acks_sent"] == 1


def test_engine_refuses_calls_while_running_in_another_thread():
    from aura_core.errors import UsageError

    s = udp()
    peer = os.urandom(16)
    e = PunchEngine(os.urandom(16), os.urandom(32), [(peer, os.urandom(32))])
    t = threading.Thread(target=lambda: e.run(s.fileno(), send=False, timeout=0.5))
    t.start()
    try:
        import time

        time.sleep(0.1)  # let run() start (it releases the GIL while it waits)
        with pytest.raises(UsageError):
            e.set_targets([(peer, ("127.0.0.1", 9))])  # would free the array run() reads
        with pytest.raises(UsageError):
            e.send_burst(s.fileno())
        with pytest.raises(UsageError):
            e.accept(b"x")
    finally:
        t.join()
        s.close()
    e.set_targets([(peer, ("127.0.0.1", 9))])  # fine again afterwards


def test_asyncio_upgrade_drives_actor_through_failure_backoff_and_success():
    import asyncio

    from aura_core.asyncio.punch import serve, upgrade
    from aura_core.selection import (AttemptBudget, BackoffWindow, CandidateGeneration,
                                     CandidatesUpdated, ConnState, LocalBinding, NetworkChanged,
                                     NetworkGeneration, PeerConnectionActor)

    a_id, b_id, na, nb = os.urandom(16), os.urandom(16), os.urandom(32), os.urandom(32)
    sa, sb = udp(), udp()

    async def go():
        loop = asyncio.get_running_loop()
        ea = PunchEngine(a_id, na, [(b_id, nb)])
        eb = PunchEngine(b_id, nb, [(a_id, na)])
        binding = LocalBinding("lo", sa.getsockname(), NetworkGeneration(0))
        actor = PeerConnectionActor(loop.time(), budget=AttemptBudget(3),
                                    backoff=BackoffWindow(base=0.3, jitter=0.0),
                                    attempt_timeout=5.0)
        actor.handle(NetworkChanged(NetworkGeneration(0), frozenset({binding})), loop.time())
        actor.handle(CandidatesUpdated(CandidateGeneration(1), (sb.getsockname(),)), loop.time())

        async def b_late():  # B comes up during A's backoff
            await asyncio.sleep(0.2)
            _drain_sock(sb)  # forget A's first punches: as if B's socket was not there yet
            stop = asyncio.Event()
            server = asyncio.ensure_future(serve(eb, sb, stop, slice_s=0.02))
            await asyncio.sleep(1.5)
            stop.set()
            await server

        outcome, _ = await asyncio.gather(
            upgrade(actor, ea, sa, b_id, binding, window=0.1, interval=0.02), b_late())
        return actor, outcome

    actor, outcome = asyncio.run(go())
    try:
        assert actor.state is ConnState.DIRECT and outcome.direct
        assert actor.direct.path == sb.getsockname() and actor.direct.binding.local == sa.getsockname()
        assert [(b.value, a.value) for _, b, a, _ in actor.history] == [
            ("relay-only", "upgrading"), ("upgrading", "degraded"), ("degraded", "upgrading"),
            ("upgrading", "direct")]
    finally:
        sa.close()
        sb.close()


def _drain_sock(s: socket.socket) -> None:
    s.setblocking(False)
    try:
        while True:
            s.recv(2048)
    except BlockingIOError:
        pass
