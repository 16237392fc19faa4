"""Transport selection for one peer: relay first, bounded direct upgrades (seed 001 §3.2).

Theory of operation
-------------------
A :class:`PeerConnectionActor` owns the path choice towards one peer.  It starts on the relay
(the safety baseline) and launches bounded direct-upgrade attempts (hole punches) in the
background; it promotes to direct only when an attempt succeeds on a *recoverable* path, and
otherwise stays on the relay.  It is sans-I/O: inputs are events fed with :meth:`handle` and
timer expiries fed with :meth:`handle_timer`, both with ``now``; outputs are pulled with
:meth:`next_action` (``StartAttempt``, ``CancelAttempt``, ``UseRelay``, ``UseDirect``) and
:meth:`get_timer`.  Randomness (backoff jitter) is injected.

States::

    relay-only ──candidates / network change──▶ upgrading ──success (recoverable)──▶ direct
        ▲                                         │    ▲                              │
        │ budget exhausted                  failed│    │backoff expired        lost /│network
        └──────────────── degraded ◀──────────────┘    └──────── degraded ◀───────────┘ change

Retry state is typed: a :class:`CandidateGeneration` (the peer's candidate set version) and a
:class:`NetworkGeneration` (our interfaces/bindings version).  Either changing resets the
:class:`AttemptBudget` and the :class:`BackoffWindow`, so a new network gets a fresh, immediate
upgrade cycle rather than inheriting a stale backoff.  Results of attempts launched under an older
generation are ignored (their ids no longer match).

Recoverability is judged from *local binding provenance*: a success counts only if it names the
local binding (interface, local address) it ran on and that binding belongs to the current
network generation.  A reflexive address alone never promotes: it may be a stale NAT mapping.
After a network change a direct path survives only if its local binding is still present.

Transitions are the table ``TRANSITIONS`` (state, event type) → handler; pairs absent from it
are ignored by design (for example a late result in ``direct``).
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from typing import Final

from .errors import InvalidValue

__all__ = [
    "ConnState",
    "CandidateGeneration",
    "NetworkGeneration",
    "LocalBinding",
    "AttemptBudget",
    "BackoffWindow",
    "CandidatesUpdated",
    "NetworkChanged",
    "AttemptSucceeded",
    "AttemptFailed",
    "DirectLost",
    "StartAttempt",
    "CancelAttempt",
    "UseRelay",
    "UseDirect",
    "PeerConnectionActor",
    "TRANSITIONS",
]

DEFAULT_RAND: Callable[[], float] = random.random  # jitter source, [0, 1)

Address = tuple[str, int]


class ConnState(str, Enum):
    RELAY_ONLY = "relay-only"  # on relay; no attempt running or scheduled
    UPGRADING = "upgrading"  # on relay; a direct attempt is running
    DIRECT = "direct"  # promoted to a direct path
    DEGRADED = "degraded"  # on relay after a failed/lost direct path; retry after backoff


@dataclass(frozen=True, order=True, slots=True)
class CandidateGeneration:
    """Version of the peer's candidate set (bumped by each new descriptor)."""

    value: int = 0

    def next(self) -> CandidateGeneration:
        return CandidateGeneration(self.value + 1)


@dataclass(frozen=True, order=True, slots=True)
class NetworkGeneration:
    """Version of our own network attachment (bumped on interface / address / NAT change)."""

    value: int = 0

    def next(self) -> NetworkGeneration:
        return NetworkGeneration(self.value + 1)


@dataclass(frozen=True, slots=True)
class LocalBinding:
    """Where a path is anchored locally: interface and bound address, and the network
    generation in which that binding was observed (its provenance)."""

    interface: str
    local: Address
    network: NetworkGeneration


@dataclass(slots=True)
class AttemptBudget:
    """At most ``limit`` upgrade attempts per generation (libp2p DCUtR makes 3)."""

    limit: int = 3
    used: int = 0

    def __post_init__(self) -> None:
        if self.limit < 1:
            raise InvalidValue("an attempt budget allows at least one attempt")

    @property
    def remaining(self) -> int:
        return self.limit - self.used

    def take(self) -> bool:
        if self.used >= self.limit:
            return False
        self.used += 1
        return True

    def reset(self) -> None:
        self.used = 0


@dataclass(slots=True)
class BackoffWindow:
    """Exponential backoff with jitter: the n-th failure waits ``min(cap, base·factor^(n-1))``
    scaled by a uniform factor in ``[1 - jitter, 1]`` (so retries of many peers spread out)."""

    base: float = 1.0
    factor: float = 2.0
    cap: float = 60.0
    jitter: float = 0.5
    failures: int = 0

    def __post_init__(self) -> None:
        if self.base <= 0 or self.factor < 1 or self.cap < self.base or not 0 <= self.jitter <= 1:
            raise InvalidValue("backoff needs base > 0, factor >= 1, cap >= base, 0 <= jitter <= 1")

    def fail(self, rand: Callable[[], float]) -> float:
        """Record a failure; return the delay before the next attempt."""
        self.failures += 1
        ceiling = min(self.cap, self.base * self.factor ** (self.failures - 1))
        return ceiling * (1.0 - self.jitter * rand())

    def reset(self) -> None:
        self.failures = 0


# --- events (inputs) -----------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class CandidatesUpdated:
    generation: CandidateGeneration
    candidates: tuple[Address, ...]


@dataclass(frozen=True, slots=True)
class NetworkChanged:
    generation: NetworkGeneration
    bindings: frozenset[LocalBinding]  # our usable local bindings in this generation


@dataclass(frozen=True, slots=True)
class AttemptSucceeded:
    attempt: int
    path: Address  # the peer's address that answered (peer-reflexive)
    binding: LocalBinding | None  # the local binding it ran on; None: provenance unknown


@dataclass(frozen=True, slots=True)
class AttemptFailed:
    attempt: int
    reason: str = "no answer within the punch window"


@dataclass(frozen=True, slots=True)
class DirectLost:
    reason: str = "keepalives unanswered"


Event = CandidatesUpdated | NetworkChanged | AttemptSucceeded | AttemptFailed | DirectLost


@dataclass(frozen=True, slots=True)
class _Timer:
    """Internal: the actor's own timer expired (attempt deadline or backoff)."""


# --- actions (outputs) ---------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class StartAttempt:
    attempt: int
    candidates: tuple[Address, ...]
    candidate_generation: CandidateGeneration
    network_generation: NetworkGeneration
    deadline: float


@dataclass(frozen=True, slots=True)
class CancelAttempt:
    attempt: int


@dataclass(frozen=True, slots=True)
class UseRelay:
    reason: str


@dataclass(frozen=True, slots=True)
class UseDirect:
    path: Address
    binding: LocalBinding


Action = StartAttempt | CancelAttempt | UseRelay | UseDirect

S = ConnState
# (state, event type) -> handler name.  Absent pairs are ignored on purpose.
TRANSITIONS: Final[dict[tuple[ConnState, type], str]] = {
    (S.RELAY_ONLY, CandidatesUpdated): "_on_new_generation",
    (S.RELAY_ONLY, NetworkChanged): "_on_new_generation",
    (S.UPGRADING, CandidatesUpdated): "_on_new_generation",
    (S.UPGRADING, NetworkChanged): "_on_new_generation",
    (S.UPGRADING, AttemptSucceeded): "_on_success",
    (S.UPGRADING, AttemptFailed): "_on_failure",
    (S.UPGRADING, _Timer): "_on_attempt_deadline",
    (S.DIRECT, CandidatesUpdated): "_on_candidates_while_direct",
    (S.DIRECT, NetworkChanged): "_on_network_while_direct",
    (S.DIRECT, DirectLost): "_on_direct_lost",
    (S.DEGRADED, CandidatesUpdated): "_on_new_generation",
    (S.DEGRADED, NetworkChanged): "_on_new_generation",
    (S.DEGRADED, _Timer): "_on_backoff_expired",
}


@dataclass
class PeerConnectionActor:
    """Path selection towards one peer (see the module docstring)."""

    now: float
    budget: AttemptBudget = field(default_factory=AttemptBudget)
    backoff: BackoffWindow = field(default_factory=BackoffWindow)
    attempt_timeout: float = 5.0
    rand: Callable[[], float] = DEFAULT_RAND
    state: ConnState = ConnState.RELAY_ONLY
    candidate_generation: CandidateGeneration = CandidateGeneration()
    network_generation: NetworkGeneration = NetworkGeneration()
    candidates: tuple[Address, ...] = ()
    bindings: frozenset[LocalBinding] | None = None  # None: not reported yet
    direct: UseDirect | None = None
    history: list[tuple[float, ConnState, ConnState, str]] = field(default_factory=list)
    _seen_candidates: bool = False
    _attempt: int = 0
    _timer: float | None = None
    _actions: deque[Action] = field(default_factory=deque)

    def __post_init__(self) -> None:
        if self.attempt_timeout <= 0:
            raise InvalidValue("attempt_timeout must be > 0")
        self._actions.append(UseRelay("relay first"))

    # -- driver API -------------------------------------------------------------------------------
    def handle(self, event: Event, now: float) -> None:
        self._dispatch(event, now)

    def handle_timer(self, now: float) -> None:
        if self._timer is not None and now >= self._timer:
            self._timer = None
            self._dispatch(_Timer(), now)

    def get_timer(self) -> float | None:
        return self._timer

    def next_action(self) -> Action | None:
        return self._actions.popleft() if self._actions else None

    @property
    def current_attempt(self) -> int | None:
        return self._attempt if self.state is ConnState.UPGRADING else None

    # -- machinery --------------------------------------------------------------------------------
    def _dispatch(self, event: object, now: float) -> None:
        self.now = now
        name = TRANSITIONS.get((self.state, type(event)))
        if name is None:
            return
        before = self.state
        after = getattr(self, name)(event)
        if after is not before:
            self.history.append((now, before, after, type(event).__name__))
        self.state = after

    def _generation_changed(self, event: CandidatesUpdated | NetworkChanged) -> bool:
        if isinstance(event, CandidatesUpdated):
            if self._seen_candidates and event.generation <= self.candidate_generation:
                return False  # an old or repeated descriptor: keep budget and backoff
            self._seen_candidates = True
            self.candidate_generation = event.generation
            self.candidates = tuple(event.candidates)
        else:
            if event.generation <= self.network_generation and self.bindings is not None:
                return False
            self.network_generation = event.generation
            self.bindings = event.bindings
        self.budget.reset()
        self.backoff.reset()
        return True

    def _start(self) -> ConnState:
        if not self.candidates or not self.budget.take():
            self._timer = None
            return ConnState.RELAY_ONLY
        self._attempt += 1
        deadline = self.now + self.attempt_timeout
        self._timer = deadline
        self._actions.append(StartAttempt(self._attempt, self.candidates,
                                          self.candidate_generation, self.network_generation,
                                          deadline))
        return ConnState.UPGRADING

    def _cancel_running(self) -> None:
        if self.state is ConnState.UPGRADING:
            self._actions.append(CancelAttempt(self._attempt))
            self._attempt += 1  # any late result of the cancelled attempt no longer matches

    def _retry_later(self) -> ConnState:
        if self.budget.remaining <= 0:
            self._timer = None
            return ConnState.RELAY_ONLY
        self._timer = self.now + self.backoff.fail(self.rand)
        return ConnState.DEGRADED

    def recoverable(self, binding: LocalBinding | None) -> bool:
        """A path is recoverable only if anchored on a binding of the current network generation
        that we still hold — never on a reflexive address alone."""
        if binding is None or binding.network != self.network_generation:
            return False
        return self.bindings is None or binding in self.bindings

    # -- handlers (named in TRANSITIONS) ----------------------------------------------------------
    def _on_new_generation(self, event: CandidatesUpdated | NetworkChanged) -> ConnState:
        if not self._generation_changed(event):
            return self.state
        self._cancel_running()
        return self._start()

    def _on_success(self, event: AttemptSucceeded) -> ConnState:
        if event.attempt != self._attempt:
            return self.state  # a stale attempt from an older generation
        if not self.recoverable(event.binding):
            return self._on_failure(AttemptFailed(event.attempt, "path not recoverable"))
        assert event.binding is not None
        self._timer = None
        self.budget.reset()
        self.backoff.reset()
        self.direct = UseDirect(event.path, event.binding)
        self._actions.append(self.direct)
        return ConnState.DIRECT

    def _on_failure(self, event: AttemptFailed) -> ConnState:
        if event.attempt != self._attempt:
            return self.state
        return self._retry_later()

    def _on_attempt_deadline(self, event: _Timer) -> ConnState:
        self._actions.append(CancelAttempt(self._attempt))
        self._attempt += 1
        return self._retry_later()

    def _on_candidates_while_direct(self, event: CandidatesUpdated) -> ConnState:
        # keep the working path; remember the new set (and its fresh budget) for later
        self._generation_changed(event)
        return ConnState.DIRECT

    def _on_network_while_direct(self, event: NetworkChanged) -> ConnState:
        if not self._generation_changed(event):
            return ConnState.DIRECT
        assert self.direct is not None
        old = self.direct.binding
        moved = LocalBinding(old.interface, old.local, self.network_generation)
        if moved in event.bindings:
            # the same local binding survived the change: the path is still anchored
            self.direct = UseDirect(self.direct.path, moved)
            return ConnState.DIRECT
        self.direct = None
        self._actions.append(UseRelay("network changed under the direct path"))
        return self._start()

    def _on_direct_lost(self, event: DirectLost) -> ConnState:
        self.direct = None
        self._actions.append(UseRelay(event.reason))
        return self._retry_later()

    def _on_backoff_expired(self, event: _Timer) -> ConnState:
        return self._start()
