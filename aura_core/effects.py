"""The effect interpreter's sans-I/O core: executes a GuardOutcome's local effects atomically.

Theory of operation.  A :class:`~aura_core.guards.GuardOutcome` lists effects in the order the
JournalCoupler fixed.  :func:`check_order` enforces the two invariants the whole design rests on:
every send to a peer comes after a ChargeBudget for that (context, peer), and every AppendFact
comes before the first send.  :func:`run_local` then executes the local effects as one unit:

1. reserve every ChargeBudget in the flow ledger and every RecordLeakage in the leakage ledger
   (a budget that no longer fits fails here: a *block*);
2. build receipts through the receipt sink (a *commit* failure if it raises);
3. merge all AppendFact facts into the journal in one transaction (a *commit* failure if it
   raises — SQLite rolls the transaction back, so the journal is unchanged);
4. commit the reservations.

If any step fails, every reservation is released, the journal is untouched and no network effect
is returned: a failed send leaves no trace outside local logs (seed 002 §6).  On success it
returns the SendEnvelope effects, which ``aura_core.asyncio.effects.execute`` hands to the
transport in order, stopping at the first failure.  Steps 1-4 run without yielding to the event
loop, so nothing else can interleave between the reservation and the commit.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from .errors import BudgetError, UsageError
from .guards import (
    AppendFact,
    ChargeBudget,
    EffectCommand,
    Failure,
    RecordLeakage,
    RecordReceipt,
    SendEnvelope,
)

__all__ = ["EffectHandlers", "LocalResult", "check_order", "run_local"]


class _Flow(Protocol):
    def reserve(self, ctx: Any, peer: Any, cost: int) -> Any: ...
    def commit(self, reservation: Any) -> None: ...
    def release(self, reservation: Any) -> None: ...


class _Leakage(Protocol):
    def reserve(self, context: Any, cost: Any) -> Any: ...
    def commit(self, reservation: Any) -> None: ...
    def release(self, reservation: Any) -> None: ...


class _Journal(Protocol):
    def merge(self, ctx: Any, bodies: Any, *, ack_tracked: Any = ..., strict: bool = ...) -> Any: ...


@dataclass
class EffectHandlers:
    """The local state effects act on (a FlowLedger, a LeakageLedger, a JournalStore) and a
    receipt sink called with each RecordReceipt (it may build and sign a receipt)."""

    flow: _Flow
    leakage: _Leakage | None = None
    journal: _Journal | None = None
    receipts: Callable[[RecordReceipt], object] | None = None


@dataclass
class LocalResult:
    """``ok``: the sends to perform; else ``failure`` (kind) and the local ``error`` for logs."""

    ok: bool
    sends: list[SendEnvelope] = field(default_factory=list)
    receipts: list[object] = field(default_factory=list)
    failure: Failure | None = None
    error: BaseException | None = None


def check_order(effects: Sequence[EffectCommand]) -> None:
    """Charge-before-send and journal-before-send; one journal context per outcome."""
    charged: set[tuple[object, object]] = set()
    sent = False
    contexts = set()
    for e in effects:
        if isinstance(e, ChargeBudget):
            charged.add((e.context, e.peer))
        elif isinstance(e, SendEnvelope):
            if (e.context, e.peer) not in charged:
                raise UsageError("send before its budget charge")
            sent = True
        elif isinstance(e, AppendFact):
            if sent:
                raise UsageError("journal append after a send")
            contexts.add(e.context)
        elif not isinstance(e, (RecordLeakage, RecordReceipt)):
            raise UsageError(f"unknown effect {type(e).__name__}")
    if len(contexts) > 1:
        raise UsageError("one outcome appends to one context journal")


def run_local(effects: Sequence[EffectCommand], h: EffectHandlers) -> LocalResult:
    """Execute the local effects atomically (see the module docstring); never raises for
    budget or journal failures — they come back as ``LocalResult(ok=False, ...)``."""
    check_order(effects)
    flow_res: list[object] = []
    leak_res: list[object] = []
    facts: dict[bool, list[bytes]] = {}
    ctx = None
    receipts_todo: list[RecordReceipt] = []
    sends: list[SendEnvelope] = []
    try:
        for e in effects:
            if isinstance(e, ChargeBudget):
                flow_res.append(h.flow.reserve(e.context, e.peer, e.cost))
            elif isinstance(e, RecordLeakage):
                if h.leakage is None:
                    raise UsageError("no leakage ledger for a RecordLeakage effect")
                leak_res.append(h.leakage.reserve(e.context, e.cost))
            elif isinstance(e, AppendFact):
                facts.setdefault(e.ack_tracked, []).append(e.fact)
                ctx = e.context
            elif isinstance(e, RecordReceipt):
                receipts_todo.append(e)
            else:
                sends.append(e)
    except BudgetError as exc:
        _release(h, flow_res, leak_res)
        return LocalResult(False, failure=Failure.BLOCK, error=exc)
    except BaseException:  # misuse (UsageError...): undo, then let the caller see it
        _release(h, flow_res, leak_res)
        raise
    receipts: list[object] = []
    try:
        if h.receipts is not None:
            receipts = [h.receipts(r) for r in receipts_todo]
        if facts:
            if h.journal is None:
                raise UsageError("no journal for AppendFact effects")
            # one transaction for all of them: ack-tracked facts are flagged within it
            tracked = frozenset(facts.get(True, ()))
            h.journal.merge(ctx, facts.get(True, []) + facts.get(False, []),
                            ack_tracked=tracked, strict=True)
    except Exception as exc:  # the receipt sink or the journal failed: commit failure
        _release(h, flow_res, leak_res)
        return LocalResult(False, failure=Failure.COMMIT, error=exc)
    for r in flow_res:
        h.flow.commit(r)
    for r in leak_res:
        h.leakage.commit(r)  # type: ignore[union-attr]
    return LocalResult(True, sends, receipts)


def _release(h: EffectHandlers, flow_res: list[object], leak_res: list[object]) -> None:
    for r in flow_res:
        h.flow.release(r)
    for r in leak_res:
        h.leakage.release(r)  # type: ignore[union-attr]
