"""Fact journal: set-union merge, incremental digest, validation, persistence, acks."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aura_core import dagcbor
from aura_core.cid import CID
from aura_core.errors import InvalidValue, JournalError
from aura_core.journal import JournalDigest, JournalStore, cid_of, fact_hash
from aura_core.journal.store import hash_of_cid

CTX = bytes(range(16))
OTHER = bytes(16)


def fact(i: int) -> bytes:
    return dagcbor.encode({"n": i, "kind": "test", "pad": random.Random(i).randbytes(8)})


def test_cid_matches_codec_and_cid_module():
    body = fact(1)
    obj = dagcbor.decode(body)
    assert cid_of(body) == dagcbor.cid(obj) == CID.for_block(body)
    assert bytes(cid_of(body)) == b"\x01\x71\x12\x20" + fact_hash(body)
    assert hash_of_cid(cid_of(body)) == fact_hash(body)
    with pytest.raises(InvalidValue):
        hash_of_cid(CID.for_block(body, hash="blake2b-256"))


def test_merge_is_set_union_and_duplicates_are_noops():
    s = JournalStore()
    r1 = s.merge(CTX, [fact(i) for i in range(10)])
    assert len(r1.inserted) == 10 and r1.duplicates == 0
    d1 = s.digest(CTX)
    r2 = s.merge(CTX, [fact(i) for i in range(5, 15)] + [fact(14)])
    assert len(r2.inserted) == 5 and r2.duplicates == 6
    assert s.digest(CTX).count == 15
    r3 = s.merge(CTX, [fact(3)])
    assert r3.inserted == [] and r3.duplicates == 1
    assert s.digest(CTX).count == 15 and s.digest(CTX) != d1
    assert s.digest(CTX) == s.recompute_digest(CTX)
    assert s.get(CTX, cid_of(fact(7))) == fact(7)
    assert s.get(OTHER, fact_hash(fact(7))) is None  # contexts are separate sets
    assert s.digest(OTHER) == JournalDigest()


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(0, 60), max_size=80), st.randoms(use_true_random=False))
def test_equal_sets_give_equal_digests_whatever_the_order(items, rnd):
    a, b = JournalStore(), JournalStore()
    for i in items:
        a.merge(CTX, [fact(i)])
    shuffled = list(items)
    rnd.shuffle(shuffled)
    for k in range(0, len(shuffled), 7):
        b.merge(CTX, [fact(i) for i in shuffled[k:k + 7]])
    assert a.digest(CTX) == b.digest(CTX) == JournalDigest.of(fact_hash(fact(i)) for i in set(items))
    assert a.digest(CTX).fact_hash == b.digest(CTX).fact_hash
    assert a.hashes(CTX) == b.hashes(CTX)


def test_digest_distinguishes_sets():
    d = JournalDigest.of([fact_hash(fact(1)), fact_hash(fact(2))])
    assert d != JournalDigest.of([fact_hash(fact(1)), fact_hash(fact(3))])
    assert d != JournalDigest.of([fact_hash(fact(1))])
    assert d.add(fact_hash(fact(3))) == JournalDigest.of(fact_hash(fact(i)) for i in (1, 2, 3))


def test_invalid_facts_are_rejected_and_never_stored():
    s = JournalStore(max_fact_size=256)
    good = fact(1)
    noncanonical = b"\x18\x01"           # 1 encoded in two bytes
    trailing = good + b"\x00"
    too_big = dagcbor.encode(b"x" * 300)
    r = s.merge(CTX, [noncanonical, good, trailing, too_big, b""])
    assert r.rejected == 4 and len(r.inserted) == 1
    assert s.digest(CTX).count == 1
    before = s.digest(CTX)
    with pytest.raises(JournalError):
        s.append(CTX, [fact(2), noncanonical])
    assert s.digest(CTX) == before and s.get(CTX, fact_hash(fact(2))) is None


def test_persistence_wal_and_reopen(tmp_path):
    path = str(tmp_path / "j.db")
    s = JournalStore(path)
    assert s._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert s._db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    cids = s.append(CTX, [fact(i) for i in range(20)], ack_tracked=True)
    d = s.digest(CTX)
    s.close()
    s2 = JournalStore(path, synchronous="normal")
    assert s2._db.execute("PRAGMA synchronous").fetchone()[0] == 1
    assert s2.digest(CTX) == d == s2.recompute_digest(CTX)
    assert all(s2.get(CTX, c) is not None for c in cids)
    assert s2.integrity_check() == "ok"
    assert s2.contexts() == [CTX]
    with pytest.raises(InvalidValue):
        JournalStore(path, synchronous="sometimes")


def test_ack_tracking():
    s = JournalStore()
    [c] = s.append(CTX, [fact(1)], ack_tracked=True)
    [d] = s.append(CTX, [fact(2)])
    h = hash_of_cid(c)
    assert s.is_ack_tracked(CTX, h) and not s.is_ack_tracked(CTX, hash_of_cid(d))
    peer = b"p" * 16
    s.record_ack(CTX, h, peer, 1000)
    s.record_ack(CTX, h, peer, 2000)  # idempotent: the first ack stands
    s.record_ack(CTX, h, b"q" * 16, 1500)
    assert s.acks(CTX, h) == [(peer, 1000), (b"q" * 16, 1500)]


def test_facts_in_range_and_get_many():
    s = JournalStore()
    bodies = [fact(i) for i in range(50)]
    s.merge(CTX, bodies)
    hs = sorted(fact_hash(b) for b in bodies)
    rows = s.facts_in_range(CTX, hs[10], hs[20], 100)
    assert [h for h, _ in rows] == hs[10:20]
    assert len(s.facts_in_range(CTX, bytes(32), None, 7)) == 7
    got = s.get_many(CTX, hs[:3] + [b"\xff" * 32])
    assert set(got) == set(hs[:3])


def test_bad_context_id():
    with pytest.raises(InvalidValue):
        JournalStore().merge(b"short", [fact(1)])
