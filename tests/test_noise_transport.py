"""Transport sessions: datagram frames + the 8192-bit replay window (WireGuard's counter
self-test cases), stream frames, padding, batches, expiry/rekey thresholds, backends."""

from __future__ import annotations

import random
import threading

import nacl.bindings as nb
import pytest

from aura_core.errors import (DecodeError, DecryptError, InvalidValue, ReplayError,
                              SessionExpired, UsageError)
from aura_core.noise import (MAX_PLAINTEXT, PROTOCOL_BLAKE2B, PROTOCOL_BLAKE2S,
                             REJECT_AFTER_MESSAGES, REJECT_AFTER_TIME, REKEY_AFTER_MESSAGES,
                             REKEY_AFTER_TIME, DatagramSession, HandshakeState, ReplayWindow,
                             StreamSession, openssl_available, padded_len)
from tests.reference import noise_ref as ref

pytestmark = pytest.mark.native

BACKENDS = ["sodium", "auto"] + (["openssl"] if openssl_available() else [])
WINDOW = 8192 - 64  # usable window, as WireGuard's COUNTER_WINDOW_SIZE
REJECT = REJECT_AFTER_MESSAGES


def handshake(protocol=PROTOCOL_BLAKE2S, seed=1):
    """A finished handshake pair; the reference runs alongside to know the split keys."""
    rng = random.Random(seed)
    si, sr, ei, er = (rng.randbytes(32) for _ in range(4))
    psk = rng.randbytes(32)
    pr = nb.crypto_scalarmult_base(sr)
    i = HandshakeState.initiator(protocol, b"t", si, pr, psk, e=ei)
    r = HandshakeState.responder(protocol, b"t", sr, psk, e=er)
    x = ref.Handshake(protocol, b"t", True, si, pr, psk, ei)
    m1 = i.write_message(b"")
    assert m1 == x.write(b"")
    r.read_message(m1)
    m2 = r.write_message(b"")
    x.read(m2)
    i.read_message(m2)
    c1, c2 = x.split()
    KEYS[id(i)] = KEYS[id(r)] = (c1.k, c2.k)
    return i, r


KEYS: dict[int, tuple[bytes, bytes]] = {}


def dgram_pair(padding=0, backend="auto", now=0.0, protocol=PROTOCOL_BLAKE2S, epoch=None):
    i, r = handshake(protocol)
    a = DatagramSession.from_handshake(i, 10, 20, padding=padding, backend=backend, now=now,
                                       epoch=epoch)
    b = DatagramSession.from_handshake(r, 20, 10, padding=padding, backend=backend, now=now,
                                       epoch=epoch)
    return a, b, i, r


def stream_pair(padding=0, backend="auto"):
    i, r = handshake()
    return (StreamSession.from_handshake(i, padding=padding, backend=backend),
            StreamSession.from_handshake(r, padding=padding, backend=backend), i, r)


# ---- replay window: WireGuard's counter self-test, case for case ----

def wireguard_cases():
    """(init?, counter, expected) steps of Linux WireGuard's counter.c self-test."""
    T = WINDOW + 1  # T_LIM
    R = REJECT
    steps = [(0, True), (1, True), (1, False), (9, True), (8, True), (7, True), (7, False),
             (T, True), (T - 1, True), (T - 1, False), (T - 2, True), (2, True), (2, False),
             (T + 16, True), (3, False), (T + 16, False), (T * 4, True),
             (T * 4 - (T - 1), True), (10, False), (T * 4 - T, False),
             (T * 4 - (T + 1), False), (T * 4 - (T - 2), True), (T * 4 + 1 - T, False),
             (0, False), (R, False), (R - 1, True), (R, False), (R - 1, False), (R - 2, True),
             (R + 1, False), (R + 2, False), (R - 2, False), (R - 3, True), (0, False)]
    yield "main", steps
    yield "fill forward from 1", [(i, True) for i in range(1, WINDOW + 1)] + [(0, True), (0, False)]
    yield "fill forward from 2", ([(i, True) for i in range(2, WINDOW + 2)]
                                  + [(1, True), (0, False)])
    yield "fill backward to 0", [(i, True) for i in range(WINDOW, -1, -1)]
    yield "fill backward to 1", [(i, True) for i in range(WINDOW + 1, 0, -1)] + [(0, False)]
    yield "backward then edge", ([(i, True) for i in range(WINDOW, 0, -1)]
                                 + [(WINDOW + 1, True), (0, False)])
    yield "backward then 0 then edge", ([(i, True) for i in range(WINDOW, 0, -1)]
                                        + [(0, True), (WINDOW + 1, True)])


@pytest.mark.parametrize("name,steps", list(wireguard_cases()), ids=lambda x: x if isinstance(x, str) else "")
def test_replay_window_wireguard_selftest(name, steps):
    w, model = ReplayWindow(), ref.ReplayWindow()
    for n, (counter, expected) in enumerate(steps):
        assert model.accept(counter) == expected, (name, n, counter)
        assert w.accept(counter) == expected, (name, n, counter)


def test_replay_window_random_against_model():
    seed = random.randrange(1 << 32)
    rng = random.Random(seed)
    w, model, top = ReplayWindow(), ref.ReplayWindow(), 0
    for _ in range(20000):
        r = rng.random()
        if r < 0.5:
            c = top + rng.randrange(3)
        elif r < 0.8:
            c = max(0, top - rng.randrange(WINDOW + 200))
        elif r < 0.95:
            c = top + rng.randrange(20000)
        else:
            c = rng.randrange(1 << 64)
        top = max(top, c)
        assert w.check(c) == (model.top < REJECT + 1 and c < REJECT and c + 1 + WINDOW >= model.top
                              and (c + 1) not in model.seen), f"seed={seed}"
        assert w.accept(c) == model.accept(c), f"seed={seed} counter={c}"
        if top >= REJECT:
            w, model, top = ReplayWindow(), ref.ReplayWindow(), 0


# ---- datagram mode ----

@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("padding", [0, 16, 256])
def test_datagram_roundtrip_matches_reference(backend, padding):
    a, b, i, r = dgram_pair(padding, backend)
    (k1, k2) = ref_keys(i)
    rng = random.Random(2)
    for n in range(40):
        size = rng.choice([0, 1, 64, 1024, 1400, 16384, MAX_PLAINTEXT - (1 if padding else 0)])
        pt = rng.randbytes(size)
        d = a.seal(pt)
        assert d == ref.dgram_seal(k1, n, 20, pt, padding)
        assert b.open(d) == pt
        back = b.seal(pt[:100])
        assert ref.dgram_open(k2, 10, back, padding) == (n, pt[:100])
        assert a.receive(back) == pt[:100]
    assert b.stats["received"] == 40 and a.stats["sent"] == 40


def ref_keys(hs):
    return KEYS[id(hs)]


def test_datagram_bad_input_counted_and_session_survives():
    a, b, _, _ = dgram_pair()
    good = [a.seal(bytes([n]) * 50) for n in range(5)]
    assert b.receive(good[0]) == bytes(50)
    bad_tag = bytearray(good[1])
    bad_tag[-1] ^= 1
    bad_hdr = bytearray(good[1])
    bad_hdr[2] = 1
    wrong_index = bytearray(good[1])
    wrong_index[4] ^= 0xFF
    wrong_ctr = bytearray(good[1])
    wrong_ctr[8] = 3  # counter changed: auth fails (nonce and AD differ)
    drops = [bytes(bad_tag), bytes(bad_hdr), bytes(wrong_index), bytes(wrong_ctr), good[0],
             good[1][:31], b"", b"\x04" + bytes(40), b"\x07" + random.Random(1).randbytes(299)]
    for d in drops:
        assert b.receive(d) is None
    st = b.stats
    assert st["dropped_auth"] == 2  # bad tag; counter field changed (nonce and AD differ)
    assert st["dropped_replay"] == 1 and st["dropped_index"] == 2
    assert st["dropped_malformed"] == 4 and st["received"] == 1
    assert sum(v for k, v in st.items() if k.startswith("dropped")) == len(drops)
    # a failed decrypt never touched the window: counter 1 still opens, in any order
    huge = good[2][:16] + bytes(65536)  # longer than any Noise message behind the header
    assert b.receive(huge) is None and b.stats["dropped_malformed"] == 5
    assert b.receive(good[3]) == bytes([3]) * 50
    assert b.receive(good[1]) == bytes([1]) * 50
    with pytest.raises(ReplayError):
        b.open(good[1])
    with pytest.raises(ReplayError):
        b.open(bytes(bad_tag))  # counter 1 is taken now: refused before any decrypt
    with pytest.raises(DecryptError):
        b.open(good[2][:-1] + bytes([good[2][-1] ^ 1]))
    with pytest.raises(DecodeError):
        b.open(bytes(bad_hdr))
    with pytest.raises(DecodeError):
        b.open(bytes(wrong_index))
    assert b.open(good[2]) == bytes([2]) * 50
    assert b.open(good[4]) == bytes([4]) * 50


def test_datagram_reordered_and_far_behind():
    a, b, _, _ = dgram_pair()
    frames = [a.seal(n.to_bytes(4, "big")) for n in range(WINDOW + 100)]
    order = list(range(200))
    random.Random(4).shuffle(order)
    for n in order:
        assert b.open(frames[n]) == n.to_bytes(4, "big")
    assert b.open(frames[WINDOW + 99]) == (WINDOW + 99).to_bytes(4, "big")
    assert b.receive(frames[50]) is None  # now behind the window
    assert b.receive(frames[200]) == (200).to_bytes(4, "big")  # inside the window, unseen


def test_datagram_oversize_and_padding_limits():
    a, b, _, _ = dgram_pair()
    with pytest.raises(InvalidValue):
        a.seal(bytes(MAX_PLAINTEXT + 1))
    p, q, _, _ = dgram_pair(padding=64)
    with pytest.raises(InvalidValue):
        p.seal(bytes(MAX_PLAINTEXT))
    d = p.seal(b"x" * 10)
    assert len(d) == 16 + 64 + 16
    assert q.open(d) == b"x" * 10
    assert padded_len(64, 0) == 64 and padded_len(64, 63) == 64 and padded_len(64, 64) == 128
    assert padded_len(0, 5) == 5 and padded_len(1000, MAX_PLAINTEXT - 1) == MAX_PLAINTEXT


def test_datagram_padding_mismatch_is_a_drop():
    i, r = handshake()
    a = DatagramSession.from_handshake(i, 1, 2)
    b = DatagramSession.from_handshake(r, 2, 1, padding=32)
    assert b.receive(a.seal(b"no marker")) is None
    assert b.stats["dropped_malformed"] == 1


@pytest.mark.parametrize("backend", BACKENDS)
def test_datagram_batches(backend):
    a, b, _, _ = dgram_pair(backend=backend)
    rng = random.Random(8)
    payloads = [rng.randbytes(rng.choice([0, 64, 1024, 1400, 16384])) for _ in range(50)]
    buf, offs = a.seal_batch(payloads)
    frames = [buf[offs[n]:offs[n + 1]] for n in range(50)]
    assert len(offs) == 51 and offs[-1] == len(buf)
    frames[7] = frames[7][:-1] + bytes([frames[7][-1] ^ 1])
    frames.append(frames[3])  # replay
    out, o2, status = b.open_batch(frames + [bytearray(frames[9])])
    assert list(status[:7]) == [0] * 7 and status[7] == 0xFD  # -3 as int8
    assert status[50] == 0xF9 and status[51] == 0xF9  # -7 replay (frame 9 seen)
    for n in range(50):
        if n != 7:
            assert out[o2[n]:o2[n + 1]] == payloads[n]
        else:
            assert o2[n] == o2[n + 1]
    # single-frame and batch share one nonce sequence
    assert b.open(a.seal(b"after")) == b"after"
    assert a.send_nonce == 51
    # packed form: the seal_batch output opens as is
    buf2, offs2 = a.seal_batch(payloads[:10])
    out3, o3, st3 = b.open_batch_packed(buf2, offs2)
    assert st3 == bytes(10)
    assert [out3[o3[n]:o3[n + 1]] for n in range(10)] == payloads[:10]
    with pytest.raises(InvalidValue):
        b.open_batch_packed(buf2, [0, len(buf2) + 1])
    with pytest.raises(InvalidValue):
        b.open_batch_packed(buf2, [5, 2])
    with pytest.raises(InvalidValue):
        b.open_batch_packed(buf2, [])
    empty, eo, es = b.open_batch([])
    assert (empty, eo, es) == (b"", [0], b"")


def test_batch_input_errors_do_not_advance():
    a, _, _, _ = dgram_pair()
    with pytest.raises(InvalidValue):
        a.seal_batch([b"ok", bytes(MAX_PLAINTEXT + 1)])
    with pytest.raises(TypeError):
        a.seal_batch([b"ok", 5])
    assert a.send_nonce == 0


# ---- stream mode ----

@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("padding", [0, 64])
def test_stream_roundtrip_matches_reference(backend, padding):
    a, b, i, r = stream_pair(padding, backend)
    k1, _ = ref_keys(i)
    x = ref.Cipher(k1)
    y = ref.Cipher(k1)
    rng = random.Random(5)
    for _ in range(20):
        pt = rng.randbytes(rng.choice([0, 5, 1024, 1400, 16384, MAX_PLAINTEXT - 1]))
        f = a.seal(pt)
        assert f == ref.stream_seal(x, pt, padding)
        assert b.open(f) == pt
        assert ref.stream_open(y, f, padding) == pt
    assert a.send_nonce == b.recv_nonce == 20


def test_stream_frames_match_noiseprotocol_framing():
    """A stream frame is u16 BE length || Noise transport message: a plain CipherState opens it."""
    a, b, i, r = stream_pair()
    from aura_core.noise import CipherState

    c1 = CipherState.from_key(ref_keys(i)[0])  # initiator -> responder key, as split() gives it
    for n in range(5):
        f = a.seal(b"m%d" % n)
        assert int.from_bytes(f[:2], "big") == len(f) - 2
        assert c1.decrypt_with_ad(b"", f[2:]) == b"m%d" % n


def test_stream_feed_partial_and_many():
    a, b, _, _ = stream_pair()
    msgs = [bytes([n]) * (n * 37) for n in range(30)]
    wire = b"".join(a.seal(m) for m in msgs)
    got, pos, rng = [], 0, random.Random(6)
    while pos < len(wire):
        step = rng.randrange(1, 300)
        got += b.feed(wire[pos:pos + step])
        pos += step
    assert got == msgs and b.buffered == 0


def test_stream_bad_frames():
    a, b, _, _ = stream_pair()
    f1, f2 = a.seal(b"one"), a.seal(b"two")
    bad = bytearray(f1)
    bad[5] ^= 1
    with pytest.raises(DecryptError):
        b.open(bytes(bad))
    assert b.recv_nonce == 0
    with pytest.raises(DecryptError):
        b.open(f2)  # reordered: implicit counter says frame 0
    with pytest.raises(DecodeError):
        b.open(f1 + b"x")
    with pytest.raises(DecodeError):
        b.open(f1[:-1])
    with pytest.raises(DecodeError):
        b.open(b"\x00\x05" + bytes(5))  # shorter than a tag
    assert b.open(f1) == b"one" and b.open(f2) == b"two"
    with pytest.raises(DecryptError):
        b.open(f2)  # replayed
    # feed: good frames first, then the bad one raises, and keeps raising
    c, d, _, _ = stream_pair()
    g1, g2 = c.seal(b"a"), c.seal(b"b")
    g2 = g2[:-1] + bytes([g2[-1] ^ 1])
    assert d.feed(g1 + g2) == [b"a"]
    with pytest.raises(DecryptError):
        d.feed(b"")
    with pytest.raises(DecryptError):
        d.feed(c.seal(b"c"))


def test_stream_batches():
    a, b, _, _ = stream_pair(backend="auto")
    payloads = [bytes([n]) * (n * 100) for n in range(40)]
    buf, offs = a.seal_batch(payloads)
    out, o2, used = b.open_batch(buf + b"\x00")  # a trailing partial header stays unread
    assert used == len(buf) and len(o2) == 41
    assert [out[o2[n]:o2[n + 1]] for n in range(40)] == payloads


# ---- expiry, rekey, epoch ----

def test_message_limits():
    a, b, _, _ = dgram_pair()
    assert not a.needs_rekey()
    a.send_nonce = REKEY_AFTER_MESSAGES
    assert a.needs_rekey()
    d = a.seal(b"x")
    assert b.open(d) == b"x"  # counters far ahead are fine
    a.send_nonce = REJECT - 1
    assert b.open(a.seal(b"last")) == b"last"
    with pytest.raises(SessionExpired):
        a.seal(b"one too many")
    assert a.is_expired()
    s, t, _, _ = stream_pair()
    t.recv_nonce = REJECT
    with pytest.raises(SessionExpired):
        t.open(s.seal(b""))


def test_time_limits_injected_now():
    a, b, _, _ = dgram_pair(now=1000.0)
    assert not a.needs_rekey(1000.0 + REKEY_AFTER_TIME - 1)
    assert a.needs_rekey(1000.0 + REKEY_AFTER_TIME)
    assert not b.needs_rekey(1000.0 + REKEY_AFTER_TIME)  # only the initiator rekeys on time
    d = a.seal(b"x", now=1000.0 + REJECT_AFTER_TIME - 1)
    assert not a.is_expired(1000.0 + REJECT_AFTER_TIME - 1)
    assert a.is_expired(1000.0 + REJECT_AFTER_TIME)
    assert b.receive(d, now=1000.0 + REJECT_AFTER_TIME) is None
    assert b.stats["dropped_expired"] == 1
    with pytest.raises(SessionExpired):
        a.seal(b"x", now=1000.0 + REJECT_AFTER_TIME)
    with pytest.raises(SessionExpired):
        b.open(d)  # stays expired


def test_epoch_change_forces_new_handshake():
    a, b, _, _ = dgram_pair(epoch=7)
    assert a.check_epoch(7) and a.epoch == 7
    d = a.seal(b"x")
    assert not b.check_epoch(8)
    with pytest.raises(SessionExpired):
        b.open(d)
    with pytest.raises(SessionExpired):
        b.seal(b"y")
    assert b.is_expired()


def test_one_transport_per_handshake():
    i, r = handshake()
    DatagramSession.from_handshake(i, 1, 2)
    for make in (lambda: i.split(), lambda: StreamSession.from_handshake(i),
                 lambda: DatagramSession.from_handshake(i, 1, 2)):
        with pytest.raises(UsageError):
            make()
    r.split()
    with pytest.raises(UsageError):
        r.split()


def test_blake2b_suite_sessions():
    a, b, _, _ = dgram_pair(protocol=PROTOCOL_BLAKE2B)
    assert b.open(a.seal(b"2b")) == b"2b"


def test_busy_flag_blocks_concurrent_use():
    """Two threads on one session: a call that finds it busy raises UsageError, and no nonce
    is ever used twice."""
    a, b, _, _ = dgram_pair()
    payloads = [bytes(16384)] * 100
    counters: list[int] = []
    lock = threading.Lock()

    def record(frames):
        with lock:
            counters.extend(int.from_bytes(f[8:16], "little") for f in frames)

    def worker():
        for _ in range(5):
            try:
                buf, offs = a.seal_batch(payloads)
            except UsageError:
                continue
            record([buf[offs[n]:offs[n + 1]] for n in range(len(payloads))])

    t = threading.Thread(target=worker)
    t.start()
    for _ in range(3000):
        try:
            record([a.seal(b"x")])
        except UsageError:
            pass
    t.join()
    assert len(counters) == len(set(counters)) == a.send_nonce
