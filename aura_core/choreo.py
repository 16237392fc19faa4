"""Choreographies: protocols written once, globally, projected to per-role local types and
enforced at run time (seed 001 §5, seed 004 "Session Type System").

Owns :class:`Choreography` (roles + an ordered list of annotated :class:`Interaction`\\ s),
its :meth:`~Choreography.project` onto a role (a :class:`LocalType`: the exact sequence of
sends and receives that role performs), the run-time :class:`Monitor` that checks a role's
actual traffic against its local type, and the two rendezvous protocols
:data:`RENDEZVOUS_EXCHANGE` and :data:`RELAYED_RENDEZVOUS`.

Theory of operation
-------------------
* A global choreography is data: ``A -> B: Label`` steps, each carrying the guard capability
  the sender must hold, the journal facts the step records, its flow cost and its leakage
  annotation (``neighbor:1`` ...).  No code is generated from it.
* Projection follows MPST: for ``A -> B: m`` the sender's local type gets ``Send(B, m)``, the
  receiver's ``Recv(A, m)``, every other role nothing.
* Only *sequential* choreographies are accepted: the sender of each step must have taken part
  in the step before it.  Otherwise no role could locally know that the earlier step happened,
  and the global order would not be enforceable by per-role monitors (realizability).
* A :class:`Monitor` holds one role's position in its local type.  ``on_send``/``on_receive``
  advance it when the action is the expected one and raise :class:`ProtocolError` otherwise
  (wrong peer, wrong label, wrong direction, or anything after the end); a failed check leaves
  the position unchanged, so the caller decides whether to abort.  Both return the step's
  annotations so guards can be evaluated from the same single source.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final, Literal

from .errors import InvalidValue, ProtocolError

__all__ = [
    "Interaction",
    "LeakAnnotation",
    "Choreography",
    "LocalAction",
    "LocalType",
    "Monitor",
    "RENDEZVOUS_EXCHANGE",
    "RELAYED_RENDEZVOUS",
    "PROTOCOLS",
    "E_UNEXPECTED",
    "E_FINISHED",
]

# ProtocolError codes a monitor raises (docs/wire.md, choreography section).
E_UNEXPECTED: Final = 0x0101  # an action other than the next one in the local type
E_FINISHED: Final = 0x0102  # any action after the local type ended

LEAK_CLASSES: Final = ("external", "neighbor", "in_group")


@dataclass(frozen=True, slots=True)
class LeakAnnotation:
    """Metadata a step leaks to an observer class (seed 002 §4): ``neighbor:1`` etc."""

    observer: str
    amount: int

    def __post_init__(self) -> None:
        if self.observer not in LEAK_CLASSES:
            raise InvalidValue(f"leak observer must be one of {LEAK_CLASSES}")
        if type(self.amount) is not int or self.amount < 0:
            raise InvalidValue("leak amount must be a non-negative int")

    @classmethod
    def parse(cls, text: str) -> LeakAnnotation:
        """``"neighbor:1"`` -> LeakAnnotation("neighbor", 1)."""
        observer, sep, amount = text.partition(":")
        if not sep or not amount.isdigit():
            raise InvalidValue(f"bad leak annotation {text!r}")
        return cls(observer, int(amount))


@dataclass(frozen=True, slots=True)
class Interaction:
    """One global step ``sender -> receiver: label(payload)`` with its guard annotations."""

    sender: str
    receiver: str
    label: str
    payload: str = ""
    guard_capability: str | None = None
    journal_facts: tuple[str, ...] = ()
    flow_cost: int = 0
    leak: tuple[LeakAnnotation, ...] = ()

    def __str__(self) -> str:
        return f"{self.sender} -> {self.receiver}: {self.label}"


@dataclass(frozen=True, slots=True)
class LocalAction:
    """One step of a local type: ``Send(peer, label)`` or ``Recv(peer, label)``."""

    kind: Literal["send", "recv"]
    peer: str
    label: str
    step: Interaction = field(compare=False, repr=False)

    def __str__(self) -> str:
        return f"{'Send' if self.kind == 'send' else 'Recv'}({self.peer}, {self.label})"


@dataclass(frozen=True, slots=True)
class LocalType:
    """A role's projection: the exact sequence of its sends and receives, then End."""

    protocol: str
    role: str
    actions: tuple[LocalAction, ...]

    def __str__(self) -> str:
        return ".".join([str(a) for a in self.actions] + ["End"])


@dataclass(frozen=True, slots=True)
class Choreography:
    """A global protocol: named roles and the ordered interactions between them."""

    name: str
    namespace: str
    roles: tuple[str, ...]
    steps: tuple[Interaction, ...]

    def __post_init__(self) -> None:
        if len(set(self.roles)) != len(self.roles) or len(self.roles) < 2:
            raise InvalidValue(f"{self.name}: roles must be at least two distinct names")
        previous: Interaction | None = None
        for step in self.steps:
            if step.sender not in self.roles or step.receiver not in self.roles:
                raise InvalidValue(f"{self.name}: {step} names an undeclared role")
            if step.sender == step.receiver:
                raise InvalidValue(f"{self.name}: {step} sends to itself")
            if previous is not None and step.sender not in (previous.sender, previous.receiver):
                # Realizability: step.sender cannot know locally that `previous` happened.
                raise InvalidValue(f"{self.name}: {step} is not causally after {previous}")
            previous = step

    def project(self, role: str) -> LocalType:
        """The local type of ``role`` (MPST projection of a sequential choreography)."""
        if role not in self.roles:
            raise InvalidValue(f"{self.name} has no role {role!r}")
        actions = []
        for step in self.steps:
            if step.sender == role:
                actions.append(LocalAction("send", step.receiver, step.label, step))
            elif step.receiver == role:
                actions.append(LocalAction("recv", step.sender, step.label, step))
        return LocalType(self.name, role, tuple(actions))

    def monitor(self, role: str) -> Monitor:
        return Monitor(self.project(role))

    def capabilities(self, role: str) -> frozenset[str]:
        """Capabilities ``role`` needs to play its part (the guards of its sends)."""
        return frozenset(s.guard_capability for s in self.steps
                         if s.sender == role and s.guard_capability)


class Monitor:
    """Run-time enforcement of one role's local type (see the module docstring)."""

    __slots__ = ("local", "_pos")

    def __init__(self, local: LocalType) -> None:
        self.local = local
        self._pos = 0

    def copy(self) -> Monitor:
        """An independent monitor at the same position (to start many runs from a template)."""
        m = Monitor(self.local)
        m._pos = self._pos
        return m

    @property
    def done(self) -> bool:
        return self._pos == len(self.local.actions)

    @property
    def position(self) -> int:
        return self._pos

    def expected(self) -> LocalAction | None:
        """The next action this role must perform, or None at the end."""
        acts = self.local.actions
        return acts[self._pos] if self._pos < len(acts) else None

    def on_send(self, to: str, label: str) -> Interaction:
        return self._advance("send", to, label)

    def on_receive(self, sender: str, label: str) -> Interaction:
        return self._advance("recv", sender, label)

    def _advance(self, kind: str, peer: str, label: str) -> Interaction:
        want = self.expected()
        verb = "send" if kind == "send" else "receive"
        where = f"{self.local.protocol}/{self.local.role}"
        if want is None:
            raise ProtocolError(f"{where}: {verb} {label} from/to {peer} after the protocol ended",
                                code=E_FINISHED)
        if want.kind != kind or want.peer != peer or want.label != label:
            raise ProtocolError(f"{where}: expected {want}, got "
                                f"{'Send' if kind == 'send' else 'Recv'}({peer}, {label})",
                                code=E_UNEXPECTED)
        self._pos += 1
        return want.step


def _neighbor1() -> tuple[LeakAnnotation, ...]:
    return (LeakAnnotation("neighbor", 1),)


# Seed 001 §5.1.  Flow costs from seed 001 §8.2 (publish 1, connect direct 2); each side pays
# for its own observable sends, so the responder's answer costs a connect too.
RENDEZVOUS_EXCHANGE: Final = Choreography(
    name="RendezvousExchange",
    namespace="rendezvous_exchange",
    roles=("Initiator", "Responder"),
    steps=(
        Interaction("Initiator", "Responder", "DescriptorOffer", "RendezvousDescriptor",
                    "rendezvous:publish", ("descriptor_offered",), 1),
        Interaction("Responder", "Initiator", "DescriptorAnswer", "RendezvousDescriptor",
                    "rendezvous:publish", ("descriptor_answered",), 1),
        Interaction("Initiator", "Responder", "HandshakeInit", "NoiseHandshake",
                    "rendezvous:connect", (), 2),
        Interaction("Responder", "Initiator", "HandshakeComplete", "NoiseHandshake",
                    "rendezvous:connect", ("channel_established",), 2),
    ),
)

# Seed 001 §5.2.  Connect via relay costs 3; each relay forward costs 1 (seed 001 §8.2).
RELAYED_RENDEZVOUS: Final = Choreography(
    name="RelayedRendezvous",
    namespace="relayed_rendezvous",
    roles=("Initiator", "Relay", "Responder"),
    steps=(
        Interaction("Initiator", "Relay", "RelayRequest", "RelayEnvelope",
                    "rendezvous:relay", (), 3),
        Interaction("Relay", "Responder", "RelayForward", "RelayEnvelope",
                    "relay:forward", (), 1, _neighbor1()),
        Interaction("Responder", "Relay", "RelayResponse", "RelayEnvelope",
                    "rendezvous:relay", (), 3),
        Interaction("Relay", "Initiator", "RelayComplete", "RelayEnvelope",
                    "relay:forward", (), 1, _neighbor1()),
    ),
)

PROTOCOLS: Final = {c.name: c for c in (RENDEZVOUS_EXCHANGE, RELAYED_RENDEZVOUS)}
