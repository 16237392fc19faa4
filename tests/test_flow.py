"""Flow budgets: CRDT laws, charge-before-send, reservations, epochs, concurrency (aura_core.flow)."""

from __future__ import annotations

import threading

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aura_core.errors import FlowBudgetExceeded, InvalidValue, UsageError
from aura_core.flow import (
    COST_CONNECT_DIRECT,
    COST_CONNECT_RELAY,
    COST_PUBLISH,
    COST_RELAY_FORWARD,
    MAX_U64,
    FlowBudget,
    FlowLedger,
)
from aura_core.ids import AuthorityId, ContextId

CTX = ContextId(bytes(range(16)))
CTX2 = ContextId(bytes(range(1, 17)))
PEER = AuthorityId(bytes([7]) * 16)
PEER2 = AuthorityId(bytes([8]) * 16)


@st.composite
def budgets(draw: st.DrawFn) -> FlowBudget:
    limit = draw(st.integers(0, 50) | st.integers(0, MAX_U64))
    spent = draw(st.integers(0, limit))
    epoch = draw(st.integers(0, 3))
    return FlowBudget(limit, spent, epoch)


def test_costs_are_the_spec_values() -> None:
    assert (COST_PUBLISH, COST_CONNECT_DIRECT, COST_CONNECT_RELAY, COST_RELAY_FORWARD) == (1, 2, 3, 1)


@given(budgets(), budgets())
def test_merge_commutative(a: FlowBudget, b: FlowBudget) -> None:
    assert a.merge(b) == b.merge(a)


@given(budgets(), budgets(), budgets())
def test_merge_associative(a: FlowBudget, b: FlowBudget, c: FlowBudget) -> None:
    assert a.merge(b).merge(c) == a.merge(b.merge(c))


@given(budgets())
def test_merge_idempotent(a: FlowBudget) -> None:
    assert a.merge(a) == a


@given(budgets(), budgets())
def test_merge_same_epoch_is_min_limit_max_spent(a: FlowBudget, b: FlowBudget) -> None:
    b = FlowBudget(b.limit, b.spent, a.epoch)
    m = a.merge(b)
    assert m.limit == min(a.limit, b.limit)
    assert m.spent == min(max(a.spent, b.spent), m.limit)
    assert m.spent <= m.limit


def test_merge_higher_epoch_wins_outright() -> None:
    old = FlowBudget(100, 90, 1)
    new = FlowBudget(200, 3, 2)
    assert old.merge(new) == new and new.merge(old) == new


@given(budgets(), st.lists(st.integers(1, 20), max_size=40))
def test_spent_never_exceeds_limit(b: FlowBudget, costs: list[int]) -> None:
    charged = 0
    for c in costs:
        try:
            nb = b.charge(c)
        except FlowBudgetExceeded:
            assert b.spent + c > b.limit
            continue
        charged += c
        assert nb.spent == b.spent + c <= nb.limit
        b = nb
    assert b.spent <= b.limit


def test_budget_rejects_bad_values() -> None:
    with pytest.raises(InvalidValue):
        FlowBudget(5, 6)
    with pytest.raises(InvalidValue):
        FlowBudget(-1)
    with pytest.raises(InvalidValue):
        FlowBudget(MAX_U64 + 1)
    with pytest.raises(InvalidValue):
        FlowBudget(True)  # type: ignore[arg-type]
    with pytest.raises(InvalidValue):
        FlowBudget(5).charge(0)
    with pytest.raises(InvalidValue):
        FlowBudget(5).charge(MAX_U64 + 1)


def test_rotation_resets_spent_and_ignores_older_epochs() -> None:
    b = FlowBudget(10, 10, 4)
    assert b.rotate(5) == FlowBudget(10, 0, 5)
    assert b.rotate(4) is b and b.rotate(1) is b


def test_missing_budget_is_zero_headroom() -> None:
    ledger = FlowLedger()
    assert ledger.headroom(CTX, PEER) == 0
    assert ledger.try_charge(CTX, PEER, 1) is False
    with pytest.raises(FlowBudgetExceeded):
        ledger.charge(CTX, PEER, 1)
    with pytest.raises(FlowBudgetExceeded):
        ledger.reserve(CTX, PEER, 1)
    assert ledger.budget(CTX, PEER) is None
    with pytest.raises(InvalidValue):
        ledger.try_charge(CTX, PEER, 0)


def test_charge_before_send_exact_limit() -> None:
    ledger = FlowLedger()
    ledger.open(CTX, PEER, 10)
    for _ in range(3):
        ledger.charge(CTX, PEER, COST_CONNECT_RELAY)
    assert ledger.headroom(CTX, PEER) == 1
    assert not ledger.try_charge(CTX, PEER, COST_CONNECT_DIRECT)
    assert ledger.try_charge(CTX, PEER, COST_PUBLISH)
    assert ledger.budget(CTX, PEER) == FlowBudget(10, 10, 0)
    # other keys are independent
    assert ledger.headroom(CTX2, PEER) == 0 and ledger.headroom(CTX, PEER2) == 0
    acct = ledger.account(CTX, PEER)
    assert acct is not None
    with pytest.raises(InvalidValue):
        acct.try_charge(-1)
    with pytest.raises(InvalidValue):
        acct.try_charge(1.0)  # type: ignore[arg-type]


def test_reservations() -> None:
    ledger = FlowLedger()
    acct = ledger.open(CTX, PEER, 5)
    r1 = ledger.reserve(CTX, PEER, 3)
    assert acct.headroom == 2
    assert not acct.try_charge(3)  # reserved headroom is not available to others
    with pytest.raises(FlowBudgetExceeded):
        acct.reserve(3)
    ledger.commit(r1)
    assert acct.snapshot() == FlowBudget(5, 3, 0) and acct.reserved == 0
    with pytest.raises(UsageError):
        ledger.commit(r1)
    r2 = acct.reserve(2)
    acct.release(r2)
    with pytest.raises(UsageError):
        acct.release(r2)
    assert acct.headroom == 2
    other = FlowLedger().open(CTX, PEER, 5)
    with pytest.raises(UsageError):
        other.commit(acct.reserve(1))


def test_reservation_stale_after_rotation() -> None:
    ledger = FlowLedger()
    acct = ledger.open(CTX, PEER, 5, epoch=1)
    acct.charge(2)
    r = acct.reserve(3)
    ledger.rotate(CTX, 2)
    assert acct.snapshot() == FlowBudget(5, 0, 2) and acct.reserved == 0
    with pytest.raises(FlowBudgetExceeded):
        acct.commit(r)
    acct.release(r)  # stale: no-op
    assert acct.headroom == 5


def test_commit_fails_when_merge_lowered_limit() -> None:
    acct = FlowLedger().open(CTX, PEER, 10)
    r = acct.reserve(4)
    acct.charge(6)
    acct.merge(FlowBudget(8, 0, 0))
    assert acct.headroom == 0
    with pytest.raises(FlowBudgetExceeded):
        acct.commit(r)
    assert acct.spent <= acct.limit


def test_ledger_merge_and_open() -> None:
    ledger = FlowLedger()
    assert ledger.merge(CTX, PEER, FlowBudget(9, 4, 1)) == FlowBudget(9, 4, 1)
    assert ledger.merge(CTX, PEER, FlowBudget(7, 2, 1)) == FlowBudget(7, 4, 1)
    ledger.open(CTX, PEER, 100, 1)  # open on an existing budget merges: limit stays the min
    assert ledger.budget(CTX, PEER) == FlowBudget(7, 4, 1)
    assert len(ledger) == 1 and list(ledger) == [(CTX, PEER)]
    with pytest.raises(InvalidValue):
        ledger.open(PEER, CTX, 1)  # type: ignore[arg-type]


@settings(max_examples=30)
@given(st.lists(st.tuples(st.sampled_from("crlm"), st.integers(1, 4)), max_size=60))
def test_random_ops_keep_invariants(ops: list[tuple[str, int]]) -> None:
    acct = FlowLedger().open(CTX, PEER, 20)
    open_res = []
    charged = 0
    for op, n in ops:
        if op == "c":
            charged += n if acct.try_charge(n) else 0
        elif op == "r":
            try:
                open_res.append(acct.reserve(n))
            except FlowBudgetExceeded:
                pass
        elif op == "l" and open_res:
            res = open_res.pop()
            if n % 2:
                acct.commit(res)
                charged += res.cost
            else:
                acct.release(res)
        elif op == "m":
            acct.merge(FlowBudget(20, min(20, acct.spent), 0))
        assert 0 <= acct.spent <= acct.limit
        assert acct.spent + acct.reserved <= acct.limit
        assert acct.spent == charged


def test_64_threads_race_one_budget() -> None:
    limit = 5000
    acct = FlowLedger().open(CTX, PEER, limit)
    barrier = threading.Barrier(64)
    won = [0] * 64

    def worker(i: int) -> None:
        barrier.wait()
        cost = 1 + i % 3
        while True:
            if acct.try_charge(cost):
                won[i] += cost
            elif acct.headroom < 1:
                return
            elif cost > 1:
                cost = 1  # smaller charges may still fit the remainder

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(64)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(won) == limit == acct.spent
