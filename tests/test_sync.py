"""Anti-entropy sync: reconciliation correctness and cost, wire codec, hostile peers, retries."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aura_core import dagcbor
from aura_core.errors import ProtocolError, SyncError
from aura_core.journal import JournalStore, fact_hash
from aura_core.journal.reconcile import (
    FLAG_DIGEST,
    FLAG_FIN,
    Limits,
    P,
    SortedIds,
    Split,
    cubic_roots,
    decode_cell,
    decode_root,
    key_of,
    SyncMessage,
    decode_message,
    encode_message,
)
from aura_core.journal.sync import (
    AllCompleted,
    AntiEntropy,
    DigestExchanged,
    PeerCompleted,
    PeerFailed,
    Pulling,
    Pushing,
    RetryPolicy,
    Started,
    SyncPhase,
    SyncPlan,
    SyncSession,
)

CTX = bytes(range(16))


def fact(i: int) -> bytes:
    return dagcbor.encode({"n": i, "v": "x"})


def store_with(ids) -> JournalStore:
    s = JournalStore()
    s.merge(CTX, [fact(i) for i in ids])
    return s


def events(session):
    out = []
    while (e := session.next_event()) is not None:
        out.append(e)
    return out


def pump(a: JournalStore, b: JournalStore, limits: Limits = Limits()):
    sa = SyncSession(a.view(CTX), "B", initiator=True, limits=limits)
    sb = SyncSession(b.view(CTX), "A", initiator=False, limits=limits)
    sa.start()
    exchange(sa, sb, 10_000)
    return sa, sb


def exchange(first: SyncSession, second: SyncSession, rounds: int) -> None:
    """Move messages both ways until neither side has anything to send (at most ``rounds``)."""
    for _ in range(rounds):
        moved = False
        for d in first.data_to_send():
            second.receive(d)
            moved = True
        for d in second.data_to_send():
            first.receive(d)
            moved = True
        if not moved:
            break


# -- two replicas --------------------------------------------------------------------------

@settings(max_examples=60, deadline=None)
@given(st.sets(st.integers(0, 400), max_size=300), st.sets(st.integers(0, 400), max_size=300))
def test_two_journals_converge_to_the_union(xs, ys):
    a, b = store_with(xs), store_with(ys)
    sa, sb = pump(a, b)
    assert sa.done and sb.done and not sa.failed and not sb.failed
    assert a.digest(CTX) == b.digest(CTX) == store_with(xs | ys).digest(CTX)
    assert a.hashes(CTX) == b.hashes(CTX)
    assert sa.stats.facts_pushed + sb.stats.facts_pushed == len(xs ^ ys)  # nothing sent twice


def test_plans_and_events():
    cases = [((range(50), range(50)), SyncPlan.EQUAL, SyncPlan.EQUAL),
             ((range(50), range(40)), SyncPlan.REMOTE_BEHIND, SyncPlan.LOCAL_BEHIND),
             ((range(40), range(50)), SyncPlan.LOCAL_BEHIND, SyncPlan.REMOTE_BEHIND),
             ((range(0, 50), range(5, 55)), SyncPlan.DIVERGED, SyncPlan.DIVERGED)]
    for (xa, xb), pa, pb in cases:
        sa, sb = pump(store_with(xa), store_with(xb))
        assert (sa.stats.plan, sb.stats.plan) == (pa, pb)
        ev = events(sa)
        assert isinstance(ev[0], Started) and isinstance(ev[1], DigestExchanged)
        assert ev[1].plan == pa and isinstance(ev[-1], PeerCompleted)
        kinds = {type(e) for e in ev}
        assert (Pushing in kinds) == (pa in (SyncPlan.REMOTE_BEHIND, SyncPlan.DIVERGED))
        assert (Pulling in kinds) == (pa in (SyncPlan.LOCAL_BEHIND, SyncPlan.DIVERGED))


def test_cost_grows_with_difference_not_size():
    base = range(20_000)
    a = store_with(base)
    results = {}
    for d in (1, 100):
        drop = set(random.Random(d).sample(range(20_000), d))
        b = store_with(i for i in base if i not in drop)
        sa, sb = pump(a, b)
        assert a.digest(CTX) == b.digest(CTX)
        results[d] = (sa.stats.round_trips, sa.stats.bytes_sent + sb.stats.bytes_sent)
    fact_bytes = len(fact(1)) + 1
    rt1, bytes1 = results[1]
    assert rt1 == 1 and bytes1 - fact_bytes < 200
    rt100, bytes100 = results[100]
    assert rt100 <= 3 and (bytes100 - 100 * fact_bytes) / 100 < 200


def test_range_pushes_are_paged_within_message_limits():
    a, b = store_with(range(3000)), JournalStore()
    lim = Limits(max_facts=100, out_message_bytes=4000)
    sa, sb = pump(a, b, lim)
    assert a.digest(CTX) == b.digest(CTX)
    assert sa.stats.messages_sent > 3000 * len(fact(1)) // 4000


def test_sorted_ids_moments_and_search():
    hs = sorted({fact_hash(fact(i)) for i in range(1000)})
    ids = SortedIds(b"".join(hs))
    keys = [key_of(int.from_bytes(h, "big")) for h in hs]
    for i, j in [(0, 0), (0, 1000), (3, 700), (64, 128), (999, 1000)]:
        assert ids.cell(i, j) == (j - i, sum(keys[i:j]) % P, sum(e * e for e in keys[i:j]) % P)
    assert ids.contains(hs[10]) and not ids.contains(b"\0" * 32)
    assert ids.index(int.from_bytes(hs[5], "big")) == 5
    assert ids.find_key(0, 1000, keys[77]) == hs[77] and ids.find_key(0, 77, keys[77]) is None
    assert ids.find_key(0, 1000, (keys[77] + 1) % P) is None
    # children cells, by both strategies (walk for sparse children, prefix moments for dense)
    for k, p, b in [(0, 0, 1), (0, 0, 3), (2, 1, 4), (0, 0, 12), (5, 17, 2)]:
        starts, cells = ids.cells(k, p, b)
        for c in range(1 << b):
            lo = ((p << b) | c) << (256 - k - b)
            hi = ((p << b) | c) + 1 << (256 - k - b)
            inside = [key_of(int.from_bytes(h, "big")) for h in hs if lo <= int.from_bytes(h, "big") < hi]
            assert cells[c] == (len(inside), sum(inside) % P, sum(e * e for e in inside) % P)
            assert starts[c + 1] - starts[c] == len(inside)


@settings(max_examples=200, deadline=None)
@given(st.sets(st.integers(1, P - 1), min_size=1, max_size=2), st.sets(st.integers(1, P - 1), max_size=2),
       st.integers(0, P - 1), st.integers(0, P - 1))
def test_decode_cell_recovers_every_difference_of_at_most_two(xs, ys, s1, s2):
    xs, ys = xs - ys, ys - xs
    if len(xs) + len(ys) > 2 or not xs and not ys:
        return
    # a common part (s1, s2 of shared facts) cancels: only the difference is decoded
    d1 = (sum(xs) - sum(ys)) % P
    d2 = (sum(x * x for x in xs) - sum(y * y for y in ys)) % P
    got = decode_cell(len(xs) - len(ys), d1, d2)
    assert got is not None and set(got[0]) == xs and set(got[1]) == ys
    # and a random cell is mostly refused, never "decoded" to keys without being checked
    assert decode_cell(1, s1, s2) is None or s2 == s1 * s1 % P


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(1, P - 1), min_size=1, max_size=6, unique=True), st.integers(0, 3))
def test_decode_root_recovers_every_difference_of_at_most_three(keys, split):
    keys = keys[:3]
    xs, ys = set(keys[:min(split, len(keys))]), set(keys[min(split, len(keys)):])
    d = [(sum(pow(x, k, P) for x in xs) - sum(pow(y, k, P) for y in ys)) % P for k in (1, 2, 3)]
    got = decode_root(len(xs) - len(ys), *d)
    assert got is not None and set(got[0]) == xs and set(got[1]) == ys


def test_decode_root_answers_bigger_differences_only_consistently():
    rng = random.Random(7)
    for _ in range(100):
        xs = [rng.randrange(P) for _ in range(rng.randrange(0, 6))]
        ys = [rng.randrange(P) for _ in range(5 - len(xs))]
        d = [(sum(pow(x, k, P) for x in xs) - sum(pow(y, k, P) for y in ys)) % P for k in (1, 2, 3)]
        got = decode_root(len(xs) - len(ys), *d)
        if got is not None:  # by chance only; it still explains all three moments
            ours, theirs = got
            assert len(ours) + len(theirs) <= 3 and len(ours) - len(theirs) == len(xs) - len(ys)
            assert [(sum(pow(x, k, P) for x in ours) - sum(pow(y, k, P) for y in theirs)) % P
                    for k in (1, 2, 3)] == d


def test_cubic_roots():
    rng = random.Random(3)
    for _ in range(20):
        r = [rng.randrange(P) for _ in range(3)]
        c1 = -sum(r) % P
        c2 = (r[0] * r[1] + r[0] * r[2] + r[1] * r[2]) % P
        c3 = -r[0] * r[1] * r[2] % P
        assert sorted(cubic_roots(c1, c2, c3)) == sorted(r)
    assert cubic_roots(0, 0, 0) is None          # a triple root
    assert cubic_roots(0, 1, 0) is None          # z (z^2 + 1): -1 is not a square mod P = 3 mod 4
    assert cubic_roots(-3 % P, 3, P - 1) is None  # (z - 1)^3


def test_small_ranges_are_listed_and_resolved_in_one_step():
    a, b = store_with(range(40)), store_with(range(3, 43, 2))
    sa, sb = pump(a, b)
    assert a.digest(CTX) == b.digest(CTX) and sa.stats.round_trips <= 2
    assert sa.stats.facts_pushed + sb.stats.facts_pushed == len(set(range(40)) ^ set(range(3, 43, 2)))


# -- wire codec ----------------------------------------------------------------------------

messages = st.builds(
    SyncMessage,
    flags=st.sampled_from([0, 2, 4, 6]),
    splits=st.lists(st.builds(lambda k, b, cells, fp: Split(k, (1 << k) - 1 if k else 0, b, [
                                  (c, s1 & ((1 << 64) - 1), 0) if fp else (c, s1, s2)
                                  for c, s1, s2 in cells[: 1 << b]] + [(0, 0, 0)] * ((1 << b) - len(cells[: 1 << b])), fp),
                              st.integers(0, 40), st.integers(1, 3),
                              st.lists(st.tuples(st.integers(1, 10**6), st.integers(0, P - 1), st.integers(0, P - 1)), max_size=8),
                              st.booleans()),
                    max_size=3),
    facts=st.lists(st.binary(min_size=1, max_size=40), max_size=4),
    want_ids=st.lists(st.tuples(st.integers(0, 128), st.binary(min_size=32, max_size=32)), max_size=3),
    want_keys=st.lists(st.tuples(st.just(8), st.integers(0, 255), st.integers(0, P - 1)), max_size=3),
    want_ranges=st.lists(st.tuples(st.just(3), st.integers(0, 7)), max_size=3),
    ids=st.lists(st.tuples(st.just(9), st.integers(0, 511), st.integers(1, 5).map(lambda n: bytes(range(8 * n)))), max_size=2),
    want_idx=st.lists(st.tuples(st.just(2), st.integers(0, 3), st.just(9), st.just(b"\x81\x00")), max_size=2),
    root=st.one_of(st.none(), st.tuples(st.integers(0, P - 1), st.integers(0, P - 1), st.integers(0, P - 1))),
    ack_facts=st.lists(st.binary(min_size=1, max_size=40), max_size=3),
    acks=st.lists(st.binary(min_size=32, max_size=32), max_size=3),
    ctx=st.just(CTX),
    counts=st.sampled_from([b"", bytes(2), bytes(range(32)), b"\xff" * 4]),
    moments=st.lists(st.one_of(
        st.tuples(st.just(5), st.integers(0, 31), st.integers(1, 10**6),
                  st.lists(st.integers(0, P - 1), min_size=1, max_size=16).map(tuple)),
        st.tuples(st.just(0), st.just(0), st.just(0), st.just(()))), max_size=2),
)


@settings(max_examples=200, deadline=None)
@given(messages)
def test_codec_roundtrip(m):
    data = encode_message(m)
    back = decode_message(data)
    assert encode_message(back) == data
    assert back.splits == m.splits and back.facts == m.facts and back.want_ids == m.want_ids
    assert back.moments == m.moments
    assert back.counts == m.counts and back.want_keys == m.want_keys and back.ids == m.ids
    assert back.want_idx == m.want_idx and back.root == m.root
    assert back.ack_facts == m.ack_facts and back.acks == m.acks
    # every truncation is either rejected or is itself a shorter valid message
    for cut in range(len(data)):
        try:
            short = decode_message(data[:cut])
        except ProtocolError:
            continue
        assert encode_message(short) == data[:cut]


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_codec_random_bytes_raise_only_protocol_error(data):
    try:
        decode_message(b"\x03\x00" + data)
        decode_message(data)
    except ProtocolError:
        pass


def test_codec_rejects_noncanonical_and_oversize():
    with pytest.raises(ProtocolError):
        decode_message(b"\x02\x00")  # unknown (old) version
    with pytest.raises(ProtocolError):
        decode_message(b"\x03\x80")  # unknown flag
    with pytest.raises(ProtocolError):
        decode_message(b"\x03\x00\x02\x80\x00")  # non-minimal varint
    with pytest.raises(ProtocolError):
        decode_message(b"\x03\x00\x05\x01\x02")  # prefix 2 does not fit in 1 bit
    with pytest.raises(ProtocolError):
        decode_message(b"\x03\x00\x01\x00\x11" + b"\x00" * 8192)  # fan-out 2^17
    big = encode_message(SyncMessage(facts=[b"x"] * 20))
    with pytest.raises(ProtocolError):
        decode_message(big, Limits(max_facts=10))
    with pytest.raises(ProtocolError):
        decode_message(b"\x03\x00" + b"\x05\x00" * 10, Limits(max_wants=5))
    with pytest.raises(ProtocolError):
        decode_message(b"\x03\x00" + b"\x00" * 100, Limits(max_message_bytes=50))
    with pytest.raises(ProtocolError):
        decode_message(b"\x03\x00\x06\x09" + b"\x00" * 512)  # counts for 2^9 children
    with pytest.raises(ProtocolError):
        decode_message(b"\x03\x00\x06\x01\x00\x00\x06\x01\x00\x00")  # counts twice
    with pytest.raises(ProtocolError):  # a field element >= P
        decode_message(b"\x03\x00\x07" + CTX + b"\xff" * 16 + bytes(16))
    with pytest.raises(ProtocolError):  # root twice
        decode_message(b"\x03\x00" + (b"\x07" + CTX + bytes(48)) * 2)
    with pytest.raises(ProtocolError):  # an empty id list
        decode_message(b"\x03\x00\x08\x00\x00")
    with pytest.raises(ProtocolError):  # more listed ids than cells allowed
        decode_message(b"\x03\x00\x08\x00\x05" + bytes(40), Limits(max_cells=4))
    with pytest.raises(ProtocolError):  # bitmap padding bits set
        decode_message(b"\x03\x00\x09\x00\x03\xe1")
    with pytest.raises(ProtocolError):  # truncated fingerprint split
        decode_message(b"\x03\x00\x0a\x00\x01\x01" + bytes(8))
    for nm in (0, 17):  # moments: 1..16 power sums
        with pytest.raises(ProtocolError):
            decode_message(b"\x03\x00\x0d\x00" + bytes((nm,)) + b"\x01" + bytes(16 * nm))
    with pytest.raises(ProtocolError):  # a power sum >= P
        decode_message(b"\x03\x00\x0d\x00\x01\x01" + b"\xff" * 16)
    with pytest.raises(ProtocolError):  # truncated
        decode_message(b"\x03\x00\x0d\x00\x02\x01" + bytes(16))
    with pytest.raises(ProtocolError):  # power sums count as cells
        decode_message(b"\x03\x00" + b"\x0d\x00\x0c\x00" * 3, Limits(max_cells=30))
    assert decode_message(b"\x03\x00\x0d\x00\x0c\x00").moments == [(0, 0, 0, ())]


def test_moments_decode_a_small_cluster_and_lying_moments_fail_safe():
    from aura_core.journal.reconcile import decode_moments
    rng = random.Random(5)
    for t in range(1, 12):
        xs = [rng.randrange(1, P) for _ in range(rng.randrange(t + 1))]
        ys = [rng.randrange(1, P) for _ in range(t - len(xs))]
        d = [(sum(pow(x, k, P) for x in xs) - sum(pow(y, k, P) for y in ys)) % P for k in range(1, 13)]
        got = decode_moments(len(xs) - len(ys), d)
        assert got is not None and sorted(got[0]) == sorted(xs) and sorted(got[1]) == sorted(ys)
        assert decode_moments(len(xs) - len(ys), d[:t]) is None or t == 0  # needs t + 1 sums
    # a responder fed random power sums for a range never pushes what the peer holds wrongly:
    # it either decodes nothing (and narrows) or names keys it must find in its own range
    b = store_with(range(300))
    r = SyncSession(b.view(CTX), "A", initiator=False)
    r.receive(encode_message(SyncMessage(flags=FLAG_DIGEST, root=(1, 2, 3), ctx=CTX, count=300, total=1,
                                         moments=[(0, 0, 299, tuple(rng.randrange(P) for _ in range(12)))])))
    assert not r.failed
    out = [decode_message(x) for x in r.data_to_send()]
    assert out and not any(x.facts for x in out)  # nothing decoded from lies: the range is narrowed


def test_root_counts_size_the_first_split():
    from aura_core.journal.reconcile import Reconciler

    a = store_with(range(5000))
    behind = store_with(range(100, 5000))
    ra, rb = Reconciler(a.sorted_ids(CTX)), Reconciler(behind.sorted_ids(CTX))
    assert rb._root_estimate(ra.root_counts()) [:2] == (100.0, False)  # one-sided: all counted
    assert rb._root_estimate(b"") == (8.0, False, -1, False)          # no counts: the default guess
    assert not rb._root_estimate(ra.root_counts())[3]
    diverged = Reconciler(store_with(range(50, 5050)).sorted_ids(CTX))
    est, _, _, two_sided = diverged._root_estimate(ra.root_counts())
    assert est > 50 and two_sided
    sa = SyncSession(a.view(CTX), "B", initiator=True)
    sb = SyncSession(behind.view(CTX), "A", initiator=False)
    sa.start()
    [hello] = sa.data_to_send()
    assert len(decode_message(hello).counts) == 16
    sb.receive(hello)
    [reply] = sb.data_to_send()
    [split] = decode_message(reply).splits
    assert (split.k, split.b, split.fp) == (0, 7, False)  # a cell per counted difference


# -- hostile peers -------------------------------------------------------------------------

def responder(store, limits=Limits()):
    return SyncSession(store.view(CTX), "evil", initiator=False, limits=limits)


def test_garbage_fails_the_session_without_touching_the_journal():
    s = store_with(range(10))
    before = s.digest(CTX)
    for junk in [b"", b"\x01", b"\xff" * 50, b"\x01\x00\x02\x05"]:
        r = responder(s)
        r.receive(junk)
        assert r.failed and isinstance(r.error, SyncError)
        assert r.error.phase is SyncPhase.DIGEST_EXCHANGE and r.error.peer == "evil"
        assert r.data_to_send() == []
    assert s.digest(CTX) == before and s.integrity_check() == "ok"


def test_invalid_facts_are_dropped_and_counted():
    s = store_with(range(10))
    r = responder(s)
    r.receive(encode_message(SyncMessage(flags=FLAG_DIGEST, root=(1, 2, 3), ctx=CTX, count=0, total=0)))
    bad = [b"\x18\x01", fact(99) + b"\x00", b"\xa1\x61a\x01\x61a\x02"]  # noncanonical, trailing, dup keys
    r.receive(encode_message(SyncMessage(flags=FLAG_FIN, facts=bad + [fact(100)])))
    assert r.done and not r.failed
    assert r.stats.facts_rejected == 3 and r.stats.facts_inserted == 1
    assert s.digest(CTX) == s.recompute_digest(CTX) and s.digest(CTX).count == 11


def test_other_context_and_lying_digest():
    s = store_with(range(10))
    r = responder(s)
    r.receive(encode_message(SyncMessage(flags=FLAG_DIGEST, root=(1, 2, 3), ctx=bytes(16), count=10, total=5)))
    assert r.failed and r.error.phase is SyncPhase.DIGEST_EXCHANGE
    # a digest that lies (count 11, random sum): we answer, never store anything unverified
    r = responder(s)
    r.receive(encode_message(SyncMessage(flags=FLAG_DIGEST, root=(1, 2, 3), ctx=CTX, count=11, total=12345)))
    out = r.data_to_send()
    assert len(out) == 1 and not r.failed
    r.receive(encode_message(SyncMessage(flags=FLAG_FIN)))
    assert r.done and s.digest(CTX).count == 10


def test_power_sums_cost_at_most_one_scan_per_message():
    # disjoint MOMENTS ranges (an honest message) are answered; overlapping ones that would sum
    # more keys than the journal holds fail the session instead of costing a scan each
    s = store_with(range(300))
    halves = s.sorted_ids(CTX).n // 2
    lies = tuple(range(1, 13))

    def first(moments):
        r = responder(s)
        r.receive(encode_message(SyncMessage(flags=FLAG_DIGEST, root=(1, 2, 3), ctx=CTX, count=300,
                                             total=1, moments=moments)))
        return r

    assert not first([(1, 0, halves, lies), (1, 1, halves, lies)]).failed
    r = first([(1, 0, halves, lies), (1, 1, halves, lies), (2, 0, halves, lies)])
    assert r.failed and "work bound" in str(r.error.__cause__ or r.error)
    assert s.digest(CTX) == s.recompute_digest(CTX)


def test_pending_work_is_bounded():
    s = store_with(range(10))
    lim = Limits(max_pending=50)
    r = responder(s, lim)
    r.receive(encode_message(SyncMessage(flags=FLAG_DIGEST, root=(1, 2, 3), ctx=CTX, count=10, total=1)))
    r.data_to_send()
    for _ in range(3):
        r.receive(encode_message(SyncMessage(want_ranges=[(6, i) for i in range(40)])))
        r.data_to_send()
        if r.failed:
            break
    # answering is paged, but the queue cannot grow past the bound
    assert len(r._rec.push_ranges) <= 50 or r.failed


def test_fin_with_requests_is_a_protocol_error():
    s = store_with(range(3))
    r = responder(s)
    r.receive(encode_message(SyncMessage(flags=FLAG_DIGEST, root=(1, 2, 3), ctx=CTX, count=0, total=0)))
    r.receive(encode_message(SyncMessage(flags=FLAG_FIN, want_ranges=[(0, 0)])))
    assert r.failed and r.error.phase is SyncPhase.PLAN_REQUEST


# -- coordinator ---------------------------------------------------------------------------

class FixedRand:
    def __init__(self, byte: int) -> None:
        self.byte = byte

    def __call__(self, n: int) -> bytes:
        return bytes([self.byte]) * n


def test_backoff_with_jitter_and_give_up():
    pol = RetryPolicy(base=1.0, factor=2.0, max_delay=8.0, max_attempts=4)
    lo, hi = FixedRand(0), FixedRand(255)
    assert [pol.delay(a, lo) for a in (1, 2, 3, 4, 5)] == [0.5, 1.0, 2.0, 4.0, 4.0]
    assert all(pol.delay(a, hi) < min(8.0, 2 ** (a - 1)) for a in (1, 2, 3, 4, 5))
    j = AntiEntropy(store_with(range(3)).view(CTX), ["p"], policy=pol, rand=lo)
    now = 0.0
    for attempt in range(1, 5):
        assert j.due(now) == ["p"]
        s = j.begin("p")
        s.abort("timeout")
        j.end("p", s, now)
        ev = j.next_event()
        assert isinstance(ev, PeerFailed) and ev.error.peer == "p"
        assert ev.error.phase is SyncPhase.DIGEST_EXCHANGE
        if attempt < 4:
            assert ev.retry_at == now + pol.delay(attempt, lo)
            assert j.due(now) == []
            now = ev.retry_at
        else:
            assert ev.retry_at is None
    assert isinstance(j.next_event(), AllCompleted)
    assert j.due(now + 1000) == []  # gave up until the next round
    j.start_round(now + 1000)
    assert j.due(now + 1000) == ["p"]


def test_propagation_status():
    a = JournalStore()
    peers = {"b": JournalStore(), "c": JournalStore()}
    ae = AntiEntropy(a.view(CTX), peers, rand=FixedRand(7))
    [cid] = a.append(CTX, [fact(1)])
    h = fact_hash(fact(1))
    ae.note_local([h])
    assert ae.propagation(h).state == "Local"
    ae.start_round(0.0)
    for name in ae.due(0.0):
        s = ae.begin(name)
        r = SyncSession(peers[name].view(CTX), "a", initiator=False)
        if name == "c":
            s.abort("partition")
        for _ in range(20):
            for d in s.data_to_send():
                r.receive(d)
            for d in r.data_to_send():
                s.receive(d)
        ae.end(name, s, 0.0)
        p = ae.propagation(h)
        if name == "b":
            assert (p.state, p.peers_reached, p.peers_known) == ("Syncing", 1, 2)
        else:
            assert p.state == "Failed" and p.retry_count == 1 and p.retry_at is not None
            assert p.error == "sync failed"  # generic: no detail leaks into status
    t = ae.next_timer()
    [name] = ae.due(t)
    s = ae.begin(name)
    r = SyncSession(peers[name].view(CTX), "a", initiator=False)
    for _ in range(20):
        for d in s.data_to_send():
            r.receive(d)
        for d in r.data_to_send():
            s.receive(d)
    ae.end(name, s, t)
    assert ae.propagation(h).state == "Complete"
    assert peers["b"].digest(CTX) == peers["c"].digest(CTX) == a.digest(CTX)
    kinds = []
    while (e := ae.next_event()) is not None:
        kinds.append(type(e))
    assert kinds == [PeerFailed, AllCompleted]


def test_received_facts_buffer_and_session_length_are_bounded():
    s = JournalStore()
    r = SyncSession(s.view(CTX), "evil", initiator=False, flush_facts=50,
                    limits=Limits(max_messages=30))
    r.receive(encode_message(SyncMessage(flags=FLAG_DIGEST, root=(1, 2, 3), ctx=CTX, count=0, total=0)))
    for k in range(40):
        r.receive(encode_message(SyncMessage(facts=[fact(1000 + 20 * k + i) for i in range(20)])))
        r.data_to_send()
        assert len(r._buffer) < 50  # flushed to the journal, not held in memory
        if r.failed:
            break
    assert r.failed and k == 29 and r.error.phase is SyncPhase.RECEIVE_OPERATIONS
    assert s.digest(CTX) == s.recompute_digest(CTX) and s.digest(CTX).count >= 500


def test_failed_key_wants_cost_one_split_per_range():
    s = store_with(range(3000))
    r = SyncSession(s.view(CTX), "evil", initiator=False)
    r.receive(encode_message(SyncMessage(flags=FLAG_DIGEST, root=r._rec.root_moments(), ctx=CTX,
                                         count=3000, total=s.digest(CTX).total)))
    assert r.data_to_send() and not r._rec.pending()  # equal: nothing to do
    # key lookups are binary searches; a flood of bogus keys for one range is answered once
    r.receive(encode_message(SyncMessage(want_keys=[(0, 0, i) for i in range(500)])))
    assert not r.failed
    [reply] = r.data_to_send()
    m = decode_message(reply)
    assert len(m.splits) == 1 and not m.facts


def test_snapshot_is_cached_until_the_journal_changes():
    s = store_with(range(100))
    v = s.view(CTX)
    first = v.sorted_ids()
    assert v.sorted_ids() is first
    s.merge(CTX, [fact(1000)])
    assert v.sorted_ids() is not first and v.sorted_ids().n == 101


@settings(max_examples=150, deadline=None)
@given(st.lists(messages, min_size=1, max_size=4), st.booleans())
def test_hostile_message_sequences_never_escape_or_corrupt(seq, as_initiator):
    s = store_with(range(300))
    before = s.digest(CTX)
    sess = SyncSession(s.view(CTX), "evil", initiator=as_initiator, limits=Limits(max_pending=5000))
    if as_initiator:
        sess.start()
    else:
        sess.receive(encode_message(SyncMessage(flags=FLAG_DIGEST, root=(1, 2, 3), ctx=CTX, count=7, total=99)))
    for m in seq:
        m.flags &= ~FLAG_DIGEST
        sess.receive(encode_message(m))  # must not raise, whatever the content
        sess.data_to_send()
    assert s.integrity_check() == "ok" and s.digest(CTX) == s.recompute_digest(CTX)
    assert s.digest(CTX).count >= before.count


# -- acknowledgments (seed 002 §9.2) -------------------------------------------------------

@pytest.mark.parametrize("tracked_side_initiates", [True, False])
def test_ack_tracked_facts_are_acked_and_recorded(tracked_side_initiates):
    a, b = store_with(range(50)), store_with(range(40))
    tracked = [fact(1000 + i) for i in range(3)]
    a.append(CTX, tracked, ack_tracked=True)
    hs = [fact_hash(f) for f in tracked]
    if tracked_side_initiates:
        sa = SyncSession(a.view(CTX), "B", initiator=True, peer_id=b"peer-b", now=1234)
        sb = SyncSession(b.view(CTX), "A", initiator=False, peer_id=b"peer-a", now=99)
        first, second = sa, sb
    else:
        sb = SyncSession(b.view(CTX), "A", initiator=True, peer_id=b"peer-a", now=99)
        sa = SyncSession(a.view(CTX), "B", initiator=False, peer_id=b"peer-b", now=1234)
        first, second = sb, sa
    first.start()
    exchange(first, second, 100)
    assert sa.done and sb.done and not sa.failed and not sb.failed
    assert a.digest(CTX) == b.digest(CTX)
    for h in hs:  # every ack-tracked fact: acked by B once B had persisted it
        assert a.acks(CTX, h) == [(b"peer-b", 1234)] and (CTX, h) in b
    assert sa.stats.acks_received == 3 and sb.stats.acks_sent == 3
    assert a.acks(CTX, fact_hash(fact(45))) == []  # untracked facts are never acked


def test_unsolicited_or_bogus_acks_are_ignored():
    s = store_with(range(10))
    s.append(CTX, [fact(500)], ack_tracked=True)
    r = responder(s)
    r.receive(encode_message(SyncMessage(flags=FLAG_DIGEST, root=(1, 2, 3), ctx=CTX, count=3, total=1)))
    r.data_to_send()
    r.receive(encode_message(SyncMessage(acks=[fact_hash(fact(500)), bytes(32)])))
    assert not r.failed and r.stats.acks_received == 0 and s.acks(CTX, fact_hash(fact(500))) == []
    with pytest.raises(ProtocolError):
        decode_message(b"\x03\x00\x0c\x02" + bytes(33))  # truncated ack list


def test_id_lists_for_large_ranges_or_wrong_bitmaps_fail_the_session():
    s = store_with(range(600))
    r = responder(s)
    r.receive(encode_message(SyncMessage(flags=FLAG_DIGEST, root=(1, 2, 3), ctx=CTX, count=3, total=1)))
    r.data_to_send()
    r.receive(encode_message(SyncMessage(ids=[(0, 0, bytes(8))])))  # the whole journal "listed"
    assert r.failed and isinstance(r.error, SyncError)
    r = responder(s)
    r.receive(encode_message(SyncMessage(flags=FLAG_DIGEST, root=(1, 2, 3), ctx=CTX, count=3, total=1)))
    r.data_to_send()
    r.receive(encode_message(SyncMessage(want_idx=[(8, 3, 9, b"\xff\x80")])))  # not our count
    assert r.failed and s.digest(CTX).count == 600


def _sessions_with_log(ja, jb):
    """Pump two sessions in memory, keeping every decoded message as ("A" | "B", message)."""
    sa, sb = SyncSession(ja, "B", initiator=True), SyncSession(jb, "A", initiator=False)
    sa.start()
    log = []
    for _ in range(100):
        moved = False
        for src, dst, who in ((sa, sb, "A"), (sb, sa, "B")):
            for d in src.data_to_send():
                log.append((who, decode_message(d)))
                dst.receive(d)
                moved = True
        if not moved:
            break
    assert not sa.failed and not sb.failed and ja.digest() == jb.digest()
    return sa, log


@pytest.mark.parametrize("shape", ["adjacent", "diverged"])
def test_few_differences_of_both_sides_are_settled_from_the_root_power_sums(shape):
    # adjacent: 2 + 2 extras in one root child, so every COUNTS entry cancels; diverged: 2 + 2 in
    # distinct children.  Either way the responder's first reply carries the root's power sums
    # (and root-child fingerprints as the fallback), and the initiator settles all four at once.
    from bench.sync_report import exclusives, universe_of
    u = universe_of(5000)
    for seed in range(3):
        a_only, b_only = exclusives(shape, len(u), 4, random.Random(seed))
        ja, jb = u.journal_without(b_only), u.journal_without(a_only)
        sa, log = _sessions_with_log(ja, jb)
        (_, first), (_, reply), (_, settle) = log[:3]
        assert [(k, p, c) for k, p, c, _ in reply.moments] == [(0, 0, len(u) - 2)]
        assert [(s.k, s.b, s.fp) for s in reply.splits] == [(0, 4, True)]
        assert len(settle.facts) == 2 and len(settle.want_keys) == 2 and not settle.splits
        assert sa.stats.round_trips == 2


def test_no_power_sums_below_a_range_whose_sums_did_not_decode():
    # 30 differences alternating sides in a row: the root's power sums (sent because the COUNTS
    # cancel) cannot decode them; the peer's split inside the root tells the responder so, and
    # it sends no more power sums (each would cost 200 bytes for nothing)
    from bench.sync_report import exclusives, universe_of
    u = universe_of(200_000)  # big enough that the chase does not reach id lists at once
    a_only, b_only = exclusives("adjacent", len(u), 30, random.Random(1))
    _, log = _sessions_with_log(u.journal_without(b_only), u.journal_without(a_only))
    sent = [(who, k) for who, m in log for k, _, _, _ in m.moments]
    assert sent == [("B", 0)]


def test_pair_factor_inverts_the_mean_count_difference_of_poisson_extras():
    import math

    from aura_core.journal.reconcile import PAIR_FACTOR, _mean_abs_skellam, pair_factor

    def brute(lam):  # E|x - y| for x, y ~ Poisson(lam), summed directly
        p = [math.exp(-lam) * lam ** k / math.factorial(k) for k in range(60)]
        return sum(p[x] * p[y] * abs(x - y) for x in range(60) for y in range(60))

    for lam in (0.01, 0.2, 0.7, 1.5, 3.0):
        assert _mean_abs_skellam(lam) == pytest.approx(brute(lam), rel=1e-9)
        m = brute(lam)
        if 2 * lam / m < PAIR_FACTOR:
            assert pair_factor(m) == pytest.approx(2 * lam / m, rel=1e-6)
    factors = [pair_factor(t / 16) for t in range(0, 64)]
    assert factors[0] == 1.0 and factors[1] < 1.05  # sparse: hardly any pair cancels
    assert factors == sorted(factors) and factors[-1] == PAIR_FACTOR
