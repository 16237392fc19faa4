"""The guard chain (seed 002 §2, §6; seed 001 §8): CapGuard → FlowGuard → LeakageGuard → JournalCoupler.

Theory of operation.  Before sending, the caller prepares a :class:`GuardSnapshot` once: the
capability token is verified then (signature, attenuation, expiry against ``now``, context
scope) and reduced to a frozenset of capability names; the flow headroom per peer and the
remaining leakage budget are copied in.  Evaluating a send is then pure and cheap: each guard is
a function of (snapshot, intent) that either passes or returns a decision; nothing raises on a
denial.  The result is a :class:`GuardOutcome`: a decision and the ordered
:class:`EffectCommand` s the effect interpreter (:mod:`aura_core.effects`) executes.  The order
is fixed by :func:`journal_coupler` and checked by the interpreter: charge budget, record
leakage, append facts, record receipt, then send — so nothing reaches the network before the
budget is charged and the journal committed.

Decisions carry generic messages only ("authorization failed", "send blocked"): they never name
the missing capability or the budget state (seed 002 §8.4), and a denied or blocked send yields
no effect at all, hence no traffic.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

from .errors import InvalidValue
from .ids import AuthorityId, ContextId
from .leakage import NO_LEAKAGE, LeakageBudget

__all__ = [
    "Failure",
    "GuardDecision",
    "ALLOW",
    "DENY",
    "BLOCK",
    "SendIntent",
    "GuardSnapshot",
    "GuardOutcome",
    "EffectCommand",
    "ChargeBudget",
    "RecordLeakage",
    "AppendFact",
    "RecordReceipt",
    "SendEnvelope",
    "cap_guard",
    "flow_guard",
    "leakage_guard",
    "journal_coupler",
    "evaluate",
]


class Failure(enum.Enum):
    """Seed 002 §6: denial (capability), block (budget), commit (journal coupling)."""

    DENIAL = "denial"
    BLOCK = "block"
    COMMIT = "commit"


@dataclass(frozen=True, slots=True)
class GuardDecision:
    """``allowed`` or not; ``failure`` says which kind; ``message`` is generic by design."""

    allowed: bool
    failure: Failure | None = None
    message: str = ""

    def is_allowed(self) -> bool:
        return self.allowed


ALLOW: Final = GuardDecision(True)
DENY: Final = GuardDecision(False, Failure.DENIAL, "authorization failed")
BLOCK: Final = GuardDecision(False, Failure.BLOCK, "send blocked")


# -- effect commands: tiny frozen records the interpreter executes in order --------------------

@dataclass(frozen=True, slots=True)
class ChargeBudget:
    """Charge ``cost`` to the flow budget of (context, peer) — always before any send to peer."""

    context: ContextId
    peer: AuthorityId
    cost: int


@dataclass(frozen=True, slots=True)
class RecordLeakage:
    """Take one message's leakage annotation out of the context's leakage budget."""

    context: ContextId
    cost: LeakageBudget


@dataclass(frozen=True, slots=True)
class AppendFact:
    """Append one DAG-CBOR fact to the context journal (``ack_tracked``: seed 002 §9.2)."""

    context: ContextId
    fact: bytes
    ack_tracked: bool = False


@dataclass(frozen=True, slots=True)
class RecordReceipt:
    """Record that ``cost`` was charged for ``operation`` towards ``peer`` in ``epoch``."""

    context: ContextId
    peer: AuthorityId
    cost: int
    epoch: int
    operation: str


@dataclass(frozen=True, slots=True)
class SendEnvelope:
    """Hand ``envelope`` (already encrypted/framed bytes) to the transport for ``peer``."""

    context: ContextId
    peer: AuthorityId
    envelope: bytes


EffectCommand = ChargeBudget | RecordLeakage | AppendFact | RecordReceipt | SendEnvelope


# -- inputs ------------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class SendIntent:
    """What kind of send: reusable across sends (the envelope is given per send)."""

    peer: AuthorityId
    capability: str
    cost: int
    leakage: LeakageBudget = NO_LEAKAGE
    operation: str = ""

    def __post_init__(self) -> None:
        if type(self.cost) is not int or self.cost <= 0:
            raise InvalidValue("a send costs a positive int")


@dataclass(frozen=True, slots=True)
class GuardSnapshot:
    """Everything the guards read, prepared once (see :meth:`prepare`).

    ``flow`` is the flow headroom per peer (a missing peer has none); ``leakage`` the remaining
    leakage budget of the context; ``capabilities`` the verified capability names.
    """

    authority: AuthorityId
    context: ContextId
    epoch: int
    now: int
    capabilities: frozenset[str]
    flow: Mapping[AuthorityId, int]
    leakage: LeakageBudget = NO_LEAKAGE
    # id(intent) -> (intent, constant head effects, receipt); the entry holds the intent, so
    # its id cannot be reused while cached, and ``is`` confirms the hit (hashing a SendIntent
    # field by field costs more than building the effects it saves)
    _static: dict[int, tuple[SendIntent, tuple[EffectCommand, ...], RecordReceipt]] = field(
        default_factory=dict, compare=False, repr=False)

    @classmethod
    def prepare(
        cls,
        *,
        authority: AuthorityId,
        context: ContextId,
        epoch: int,
        now: int,
        token: bytes,
        root_public_key: bytes,
        flow: Mapping[AuthorityId, int] | None = None,
        leakage: LeakageBudget = NO_LEAKAGE,
    ) -> GuardSnapshot:
        """Verify ``token`` once (attenuation, expiry at ``now`` ms, context) and snapshot.

        A forged or malformed token raises AuthorizationError; one that grants nothing here
        gives a snapshot in which every send is denied.
        """
        from .capabilities import verify_capabilities

        caps = verify_capabilities(token, root_public_key, context, now)
        return cls(authority, context, epoch, now, caps, dict(flow or {}), leakage)


@dataclass(frozen=True, slots=True)
class GuardOutcome:
    decision: GuardDecision
    effects: tuple[EffectCommand, ...] = ()

    def is_allowed(self) -> bool:
        return self.decision.allowed


DENIED: Final = GuardOutcome(DENY)
BLOCKED: Final = GuardOutcome(BLOCK)


# -- the guards (pure) -------------------------------------------------------------------------

def cap_guard(s: GuardSnapshot, intent: SendIntent) -> GuardDecision | None:
    return None if intent.capability in s.capabilities else DENY


def flow_guard(s: GuardSnapshot, intent: SendIntent) -> GuardDecision | None:
    return None if s.flow.get(intent.peer, 0) >= intent.cost else BLOCK


def leakage_guard(s: GuardSnapshot, intent: SendIntent) -> GuardDecision | None:
    return None if s.leakage.allows(intent.leakage) else BLOCK


def journal_coupler(s: GuardSnapshot, intent: SendIntent, envelope: bytes,
                    facts: tuple[bytes, ...] = (), ack_tracked: bool = False) -> tuple[EffectCommand, ...]:
    """The ordered effects of an allowed send: charge, leakage, facts, receipt, send."""
    static = s._static.get(id(intent))
    if static is None or static[0] is not intent:
        # per (snapshot, intent) constant: built once, reused by every send
        charge: tuple[EffectCommand, ...] = (ChargeBudget(s.context, intent.peer, intent.cost),)
        if not intent.leakage.is_zero:
            charge += (RecordLeakage(s.context, intent.leakage),)
        receipt = RecordReceipt(s.context, intent.peer, intent.cost, s.epoch,
                                intent.operation or intent.capability)
        if len(s._static) >= 1024:  # callers that build a fresh intent per send
            s._static.clear()
        static = s._static[id(intent)] = (intent, charge, receipt)
    head: tuple[EffectCommand, ...] = static[1]
    receipt = static[2]
    send = SendEnvelope(s.context, intent.peer, envelope)
    if facts:
        appends: tuple[EffectCommand, ...] = tuple(AppendFact(s.context, f, ack_tracked) for f in facts)
        return head + appends + (receipt, send)
    return head + (receipt, send)


def evaluate(s: GuardSnapshot, intent: SendIntent, envelope: bytes,
             facts: tuple[bytes, ...] = (), ack_tracked: bool = False) -> GuardOutcome:
    """Run the chain; the first guard that objects decides, and then no effect is produced."""
    if intent.capability not in s.capabilities:
        return DENIED
    if s.flow.get(intent.peer, 0) < intent.cost:
        return BLOCKED
    if intent.leakage is not NO_LEAKAGE and not s.leakage.allows(intent.leakage):
        return BLOCKED
    return GuardOutcome(ALLOW, journal_coupler(s, intent, envelope, facts, ack_tracked))
