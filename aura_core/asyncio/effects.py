"""Async effect executor: runs a GuardOutcome's effects in order over a transport.

Local effects run first, atomically (:func:`aura_core.effects.run_local`); only if they all
succeed are the SendEnvelope effects awaited, in order; the first failing send stops the rest.
A denied or blocked outcome does nothing and sends nothing.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from ..effects import EffectHandlers, run_local
from ..guards import Failure, GuardOutcome, SendEnvelope

__all__ = ["ExecutionResult", "execute"]

Transport = Callable[[SendEnvelope], Awaitable[None]]


@dataclass
class ExecutionResult:
    ok: bool
    sent: int = 0
    failure: Failure | None = None
    message: str = ""                 # generic, safe to surface
    error: BaseException | None = None  # for local logs only
    receipts: list[object] = field(default_factory=list)


async def execute(outcome: GuardOutcome, handlers: EffectHandlers, transport: Transport) -> ExecutionResult:
    if not outcome.decision.allowed:
        return ExecutionResult(False, 0, outcome.decision.failure, outcome.decision.message)
    local = run_local(outcome.effects, handlers)
    if not local.ok:
        msg = "send blocked" if local.failure is Failure.BLOCK else "send failed"
        return ExecutionResult(False, 0, local.failure, msg, local.error)
    sent = 0
    for cmd in local.sends:
        try:
            await transport(cmd)
        except Exception as exc:  # transport failure: no later send runs
            return ExecutionResult(False, sent, Failure.COMMIT, "send failed", exc, local.receipts)
        sent += 1
    return ExecutionResult(True, sent, receipts=local.receipts)
