"""Flow budgets and receipts together: charges and receipts add up; the relay aggregator."""

from __future__ import annotations

import hashlib
import threading

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aura_core.errors import FlowBudgetExceeded, InvalidValue
from aura_core.flow import COST_RELAY_FORWARD, FlowLedger
from aura_core.hashing import Hash32
from aura_core.ids import AuthorityId, ContextId
from aura_core.keys import IdentityKey
from aura_core.receipts import (
    ForwardAggregator,
    ReceiptChain,
    ReceiptIssuer,
    forward_commitment,
    verify_chain,
)

pytestmark = pytest.mark.native

KEY = IdentityKey.from_seed(bytes(range(32)))
PEER = IdentityKey.from_seed(bytes([0xA5]) * 32).authority_id
PEER2 = IdentityKey.from_seed(bytes([0x5A]) * 32).authority_id
CTX = ContextId(bytes(range(16)))


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 60), st.lists(st.integers(1, 5), max_size=40))
def test_receipts_sum_exactly_to_what_was_charged(limit: int, costs: list[int]) -> None:
    acct = FlowLedger().open(CTX, PEER, limit)
    ch = ReceiptChain(KEY, CTX, PEER)
    receipts = [ch.issue(c) for c in costs if acct.try_charge(c)]
    s = verify_chain(receipts, KEY.public, limit=limit)
    assert s.total == acct.spent == sum(r.cost for r in receipts) <= limit


def test_64_threads_race_one_budget_and_receipts_add_up() -> None:
    limit = 3000
    acct = FlowLedger().open(CTX, PEER, limit)
    ch = ReceiptChain(KEY, CTX, PEER)
    barrier = threading.Barrier(64)
    out: list[list] = [[] for _ in range(64)]

    def worker(i: int) -> None:
        barrier.wait()
        cost = 1 + i % 3
        while acct.headroom > 0:
            if acct.try_charge(cost):  # charge before "send", then the receipt
                out[i].append(ch.issue(cost))
            else:
                cost = 1

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(64)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    receipts = sorted((r for rs in out for r in rs), key=lambda r: r.nonce)
    s = verify_chain(receipts, KEY.public, limit=limit, threads=2)
    assert s.total == limit == acct.spent
    assert [r.nonce for r in receipts] == list(range(1, len(receipts) + 1))


def test_reservations_race_and_receipts_add_up() -> None:
    limit = 500
    acct = FlowLedger().open(CTX, PEER, limit)
    ch = ReceiptChain(KEY, CTX, PEER)
    lock = threading.Lock()
    receipts = []

    def worker(i: int) -> None:
        releases = 20 if i % 4 == 0 else 0
        while True:
            try:
                res = acct.reserve(2)
            except FlowBudgetExceeded:
                return
            if releases:
                releases -= 1
                acct.release(res)  # a send that did not happen: no charge, no receipt
                continue
            acct.commit(res)
            r = ch.issue(2)
            with lock:
                receipts.append(r)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    receipts.sort(key=lambda r: r.nonce)
    assert verify_chain(receipts, KEY.public, limit=limit).total == acct.spent == limit


def _eid(i: int) -> bytes:
    return hashlib.blake2b(i.to_bytes(8, "big"), digest_size=32).digest()


def test_forward_aggregator_one_receipt_per_neighbor_window() -> None:
    ledger = FlowLedger()
    for p in (PEER, PEER2):
        ledger.open(CTX, p, 10_000)
    agg = ForwardAggregator(ReceiptIssuer(KEY), window=1.0)
    assert agg.next_deadline() is None
    sent: dict[AuthorityId, list[bytes]] = {PEER: [], PEER2: []}
    for i in range(300):
        p = PEER if i % 3 else PEER2
        assert ledger.try_charge(CTX, p, COST_RELAY_FORWARD)
        agg.record(CTX, p, _eid(i), now=10.0 + i / 1000)
        sent[p].append(_eid(i))
    assert agg.next_deadline() == 11.0
    assert agg.poll(10.9) == []
    receipts = agg.poll(11.3)  # both windows (opened at 10.000 and 10.001) are due
    assert len(receipts) == 2
    for r in receipts:
        ids = sent[r.dst]
        assert r.cost == len(ids) == ledger.budget(CTX, r.dst).spent  # type: ignore[union-attr]
        assert r.commit == forward_commitment(reversed(ids))  # order does not matter
        verify_chain([r], KEY.public, epoch=0)
    # next window chains onto the first
    agg.record(CTX, PEER, _eid(1000), now=12.0)
    (r2,) = agg.flush()
    first = next(r for r in receipts if r.dst == PEER)
    assert r2.prev == first.hash() and r2.nonce == 2
    verify_chain([first, r2], KEY.public)


def test_forward_aggregator_early_close_epoch_change_and_audit_ids() -> None:
    agg = ForwardAggregator(ReceiptIssuer(KEY), window=5.0, max_cost=3, keep_ids=True)
    for i in range(3):
        agg.record(CTX, PEER, _eid(i), now=0.0)
    assert agg.next_deadline() == float("-inf")
    (full,) = agg.poll(0.0)
    assert full.cost == 3 and agg.closed_ids[full.commit] == sorted(_eid(i) for i in range(3))
    agg.record(CTX, PEER, _eid(7), now=1.0, epoch=0)
    agg.record(CTX, PEER, _eid(8), now=1.5, epoch=1)  # closes the epoch-0 window
    (old,) = agg.poll(1.5)
    assert old.epoch == 0 and old.cost == 1
    (new,) = agg.flush()
    assert new.epoch == 1 and new.nonce == 1 and new.prev == Hash32.zero()
    with pytest.raises(InvalidValue):
        agg.record(CTX, PEER, b"short", now=2.0)
    with pytest.raises(InvalidValue):
        forward_commitment([b"x" * 31])
    with pytest.raises(InvalidValue):
        agg.record(PEER, CTX, _eid(9), now=2.0)  # type: ignore[arg-type]


def test_forward_aggregator_drops_windows_of_a_left_epoch() -> None:
    issuer = ReceiptIssuer(KEY)
    agg = ForwardAggregator(issuer, window=1.0)
    agg.record(CTX, PEER, _eid(1), now=0.0, epoch=0)
    issuer.chain(CTX, PEER, 3)  # the chain moved on: epoch-0 receipts are invalid now
    assert agg.flush() == [] and agg.dropped_stale == 1
