"""Guard chain and effect interpreter: decisions, effect order, atomic coupling, no traffic on failure."""

from __future__ import annotations

import asyncio
import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aura_core import dagcbor
from aura_core.asyncio.effects import execute
from aura_core.capabilities import ALL_CAPABILITIES, CAP_RELAY_FORWARD, CAP_RENDEZVOUS_PUBLISH, CapabilityIssuer
from aura_core.effects import EffectHandlers, check_order, run_local
from aura_core.errors import JournalError, UsageError
from aura_core.flow import COST_PUBLISH, COST_RELAY_FORWARD, FlowLedger
from aura_core.guards import (
    ALLOW,
    BLOCK,
    DENY,
    AppendFact,
    ChargeBudget,
    Failure,
    GuardSnapshot,
    RecordLeakage,
    RecordReceipt,
    SendEnvelope,
    SendIntent,
    cap_guard,
    evaluate,
    flow_guard,
    journal_coupler,
    leakage_guard,
)
from aura_core.ids import AuthorityId, ContextId
from aura_core.journal import JournalStore, fact_hash
from aura_core.leakage import LeakageBudget, LeakageLedger

ME = AuthorityId(b"a" * 16)
PEER = AuthorityId(b"b" * 16)
CTX = ContextId(bytes(range(16)))
T0 = 1_700_000_000_000


def snapshot(caps=ALL_CAPABILITIES, headroom=10, leak=LeakageBudget(5, 5, 5)):
    return GuardSnapshot(ME, CTX, 3, T0, frozenset(caps), {PEER: headroom}, leak)


PUBLISH = SendIntent(PEER, CAP_RENDEZVOUS_PUBLISH, COST_PUBLISH, operation="publish")
FORWARD = SendIntent(PEER, CAP_RELAY_FORWARD, COST_RELAY_FORWARD, LeakageBudget.parse("neighbor:1"))


def chain(s, intent, envelope, facts=()):
    """The guard chain written out stage by stage (evaluate() is its inlined form)."""
    for guard in (cap_guard, flow_guard, leakage_guard):
        d = guard(s, intent)
        if d is not None:
            return d, ()
    return ALLOW, journal_coupler(s, intent, envelope, facts)


# -- decisions -----------------------------------------------------------------------------

def test_allowed_send_effects_are_ordered():
    out = evaluate(snapshot(), FORWARD, b"env", (b"\x01",))
    assert out.is_allowed() and out.decision is ALLOW
    assert [type(e) for e in out.effects] == [ChargeBudget, RecordLeakage, AppendFact, RecordReceipt, SendEnvelope]
    assert out.effects[0] == ChargeBudget(CTX, PEER, 1)
    assert out.effects[-1] == SendEnvelope(CTX, PEER, b"env")
    assert out.effects[3] == RecordReceipt(CTX, PEER, 1, 3, CAP_RELAY_FORWARD)
    check_order(out.effects)


def test_denials_and_blocks_are_decisions_with_generic_messages():
    cases = [(snapshot(caps=[]), PUBLISH, DENY), (snapshot(headroom=0), PUBLISH, BLOCK),
             (snapshot(leak=LeakageBudget(5, 0, 5)), FORWARD, BLOCK)]
    for s, intent, want in cases:
        out = evaluate(s, intent, b"env")
        assert not out.is_allowed() and out.decision == want and out.effects == ()
        assert out.decision.message in ("authorization failed", "send blocked")
        assert "publish" not in out.decision.message and "budget" not in out.decision.message
    # capability is checked first: no budget information leaks through a denial
    assert evaluate(snapshot(caps=[], headroom=0), PUBLISH, b"e").decision.failure is Failure.DENIAL


@settings(max_examples=200, deadline=None)
@given(st.sets(st.sampled_from(sorted(ALL_CAPABILITIES))), st.integers(0, 4), st.integers(0, 3),
       st.sampled_from(sorted(ALL_CAPABILITIES)), st.integers(1, 4), st.integers(0, 3))
def test_inlined_chain_equals_the_staged_chain(caps, headroom, nb, cap, cost, leak):
    s = snapshot(caps, headroom, LeakageBudget(0, nb, 0))
    intent = SendIntent(PEER, cap, cost, LeakageBudget(0, leak, 0))
    out = evaluate(s, intent, b"x", (b"\x02",))
    d, effects = chain(s, intent, b"x", (b"\x02",))
    assert out.decision == d and out.effects == effects


def test_snapshot_prepare_verifies_token_once():
    iss = CapabilityIssuer(bytes(range(32)))
    tok = iss.issue(CTX, [CAP_RENDEZVOUS_PUBLISH], expires_at=T0 + 1000)
    s = GuardSnapshot.prepare(authority=ME, context=CTX, epoch=1, now=T0, token=tok,
                              root_public_key=iss.public_key, flow={PEER: 5})
    assert s.capabilities == {CAP_RENDEZVOUS_PUBLISH}
    assert evaluate(s, PUBLISH, b"e").is_allowed()
    assert evaluate(s, FORWARD, b"e").decision is DENY
    late = GuardSnapshot.prepare(authority=ME, context=CTX, epoch=1, now=T0 + 2000, token=tok,
                                 root_public_key=iss.public_key, flow={PEER: 5})
    assert evaluate(late, PUBLISH, b"e").decision is DENY


def test_check_order_rejects_reordered_effects():
    good = list(evaluate(snapshot(), FORWARD, b"env", (b"\x01",)).effects)
    check_order(good)
    for perm in itertools.permutations(good):
        if list(perm) == good:
            continue
        charge_i = perm.index(good[0])
        send_i = perm.index(good[-1])
        append_i = perm.index(good[2])
        if send_i < charge_i or send_i < append_i:
            with pytest.raises(UsageError):
                check_order(perm)
        else:
            check_order(perm)


# -- the interpreter -----------------------------------------------------------------------

def handlers(limit=10, leak=LeakageBudget(5, 5, 5), journal=None, receipts=None):
    flow = FlowLedger()
    flow.open(CTX, PEER, limit)
    ledger = LeakageLedger()
    ledger.set(CTX, leak)
    return EffectHandlers(flow, ledger, journal if journal is not None else JournalStore(), receipts)


class Wire:
    def __init__(self, fail_at: int | None = None) -> None:
        self.sent: list[bytes] = []
        self.fail_at = fail_at

    async def __call__(self, cmd: SendEnvelope) -> None:
        if self.fail_at is not None and len(self.sent) == self.fail_at:
            raise ConnectionError("link down")
        self.sent.append(cmd.envelope)


def run(coro):
    return asyncio.run(coro)


def test_execute_charges_journals_then_sends():
    h = handlers()
    receipts = []
    h.receipts = lambda r: receipts.append(r) or ("receipt", r.cost)
    fact = dagcbor.encode({"descriptor": 1})
    wire = Wire()
    res = run(execute(evaluate(snapshot(), FORWARD, b"env", (fact,), ack_tracked=True), h, wire))
    assert res.ok and res.sent == 1 and wire.sent == [b"env"]
    assert h.flow.headroom(CTX, PEER) == 9
    assert h.leakage.remaining(CTX) == LeakageBudget(5, 4, 5)
    assert h.journal.get(CTX, fact_hash(fact)) == fact and h.journal.is_ack_tracked(CTX, fact_hash(fact))
    assert res.receipts == [("receipt", 1)]


def test_denied_outcome_produces_no_traffic_and_no_state_change():
    h = handlers()
    wire = Wire()
    res = run(execute(evaluate(snapshot(caps=[]), PUBLISH, b"env", (dagcbor.encode(1),)), h, wire))
    assert not res.ok and res.failure is Failure.DENIAL and res.message == "authorization failed"
    assert wire.sent == [] and h.flow.headroom(CTX, PEER) == 10 and h.journal.digest(CTX).count == 0


def test_budget_spent_since_snapshot_blocks_at_execution():
    h = handlers(limit=1)
    wire = Wire()
    s = snapshot(headroom=1)
    assert run(execute(evaluate(s, PUBLISH, b"1"), h, wire)).ok
    res = run(execute(evaluate(s, PUBLISH, b"2", (dagcbor.encode(2),)), h, wire))
    assert not res.ok and res.failure is Failure.BLOCK and res.message == "send blocked"
    assert wire.sent == [b"1"] and h.journal.digest(CTX).count == 0


def test_journal_failure_releases_budget_and_sends_nothing():
    h = handlers()
    wire = Wire()
    bad_fact = b"\x18\x01"  # not canonical: the journal refuses it
    res = run(execute(evaluate(snapshot(), FORWARD, b"env", (dagcbor.encode(1), bad_fact)), h, wire))
    assert not res.ok and res.failure is Failure.COMMIT and isinstance(res.error, JournalError)
    assert wire.sent == [] and h.journal.digest(CTX).count == 0  # the good fact is not in either
    assert h.flow.headroom(CTX, PEER) == 10 and h.leakage.remaining(CTX) == LeakageBudget(5, 5, 5)


def test_receipt_failure_is_a_commit_failure():
    def broken(_r):
        raise RuntimeError("signer unavailable")

    h = handlers(receipts=broken)
    wire = Wire()
    res = run(execute(evaluate(snapshot(), PUBLISH, b"env", (dagcbor.encode(1),)), h, wire))
    assert not res.ok and res.failure is Failure.COMMIT and wire.sent == []
    assert h.journal.digest(CTX).count == 0 and h.flow.headroom(CTX, PEER) == 10


def test_failed_send_stops_later_sends():
    h = handlers()
    other = AuthorityId(b"c" * 16)
    h.flow.open(CTX, other, 10)
    effects = (ChargeBudget(CTX, PEER, 1), ChargeBudget(CTX, other, 1),
               SendEnvelope(CTX, PEER, b"1"), SendEnvelope(CTX, other, b"2"), SendEnvelope(CTX, PEER, b"3"))
    from aura_core.guards import GuardOutcome
    wire = Wire(fail_at=1)
    res = run(execute(GuardOutcome(ALLOW, effects), h, wire))
    assert not res.ok and res.sent == 1 and wire.sent == [b"1"]
    assert isinstance(res.error, ConnectionError) and res.message == "send failed"


def test_run_local_rejects_misordered_outcomes():
    h = handlers()
    with pytest.raises(UsageError):
        run_local([SendEnvelope(CTX, PEER, b"x"), ChargeBudget(CTX, PEER, 1)], h)
    assert h.flow.headroom(CTX, PEER) == 10


# -- leakage budgets -----------------------------------------------------------------------

def test_leakage_annotations_and_ledger():
    from aura_core.errors import InvalidValue, LeakageBudgetExceeded

    assert LeakageBudget.parse("neighbor:1") == LeakageBudget(0, 1, 0)
    assert LeakageBudget.parse("external:2, in_group:1,neighbor:3") == LeakageBudget(2, 3, 1)
    for bad in ("neighbour:1", "neighbor", "neighbor:-1", "x:y"):
        with pytest.raises(InvalidValue):
            LeakageBudget.parse(bad)
    with pytest.raises(InvalidValue):
        LeakageBudget(-1)
    led = LeakageLedger()
    assert led.remaining(CTX) == LeakageBudget()
    led.set(CTX, LeakageBudget(1, 2, 0))
    r = led.reserve(CTX, LeakageBudget(0, 2, 0))
    with pytest.raises(LeakageBudgetExceeded):
        led.reserve(CTX, LeakageBudget(0, 1, 0))
    led.release(r)
    led.release(r)  # releasing twice is a no-op
    assert led.remaining(CTX) == LeakageBudget(1, 2, 0)
    led.record(CTX, LeakageBudget(1, 0, 0))
    assert led.remaining(CTX) == LeakageBudget(0, 2, 0)
    with pytest.raises(UsageError):
        led.commit(r)
