"""Anti-entropy sync (seed 002 §9.1, §10): a sans-I/O session per peer and a coordinator.

Theory of operation.  A :class:`SyncSession` reconciles one context's journal with one peer.
The initiator sends its ``JournalDigest`` (DigestExchange); the responder compares it with its
own, which fixes the first plan (Equal / LocalBehind / RemoteBehind / Diverged), and answers.
From then on the two sides alternate messages of the reconciliation protocol
(:mod:`.reconcile`): each message carries the sender's cells for ranges still in question,
wants, and facts pushed in batches (Pushing / Pulling).  The responder always replies; the
initiator ends the session with FIN once neither side has anything left to ask or send, so a
session costs as many round trips as the reconciliation needs and no more.  Received facts are
validated and buffered and merged into the journal in one transaction at the end of the session
("merge + persist once per round"; a buffer over ``flush_facts`` is flushed early so memory stays
bounded).  Peer faults (malformed or oversize messages, facts that fail validation) never escape
``receive``: the session fails with a :class:`~aura_core.errors.SyncError` attributed to a
:class:`SyncPhase` and the peer, or the bad fact is dropped and counted.

:class:`AntiEntropy` schedules sessions with many peers: exponential backoff with jitter (``rand``
injected) after failures, a bounded attempt count, progress events and per-fact propagation
status (seed 002 §9.1).  Nothing here does I/O or reads the clock: ``now`` is a parameter and
``aura_core.asyncio.sync`` moves the bytes.
"""

from __future__ import annotations

import enum
import hashlib
import os
from collections import deque
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass
from typing import Final

from ..errors import AuraError, JournalError, ProtocolError, SyncError
from .digest import JournalDigest
from .reconcile import (
    FLAG_DIGEST,
    FLAG_FIN,
    FLAG_MORE,
    Limits,
    Reconciler,
    SyncMessage,
    decode_message,
    encode_message,
)
from .store import ContextJournal

__all__ = [
    "SyncPhase",
    "SyncPlan",
    "SyncSession",
    "SyncStats",
    "RetryPolicy",
    "AntiEntropy",
    "Propagation",
    "Started",
    "DigestExchanged",
    "Pulling",
    "Pushing",
    "PeerCompleted",
    "PeerFailed",
    "AllCompleted",
]

DEFAULT_RAND: Final[Callable[[int], bytes]] = os.urandom
MAX_AWAITING_ACKS: Final = 1 << 16  # ack-tracked facts one session waits acks for


class SyncPhase(enum.Enum):
    """Where a sync failure happened (seed 002 §10.5)."""

    LOAD_LOCAL_STATE = "LoadLocalState"
    COMPUTE_DIGEST = "ComputeDigest"
    DIGEST_EXCHANGE = "DigestExchange"
    PLAN_REQUEST = "PlanRequest"
    RECEIVE_OPERATIONS = "ReceiveOperations"
    MERGE_JOURNAL = "MergeJournal"
    PERSIST_JOURNAL = "PersistJournal"


class SyncPlan(enum.Enum):
    """The digest comparison's reconciliation action (seed 002 §10.3)."""

    EQUAL = "Equal"
    LOCAL_BEHIND = "LocalBehind"     # pull
    REMOTE_BEHIND = "RemoteBehind"   # push
    DIVERGED = "Diverged"            # push + pull


def plan_for(local: JournalDigest, remote: JournalDigest) -> SyncPlan:
    if local == remote:
        return SyncPlan.EQUAL
    if remote.count > local.count:
        return SyncPlan.LOCAL_BEHIND
    if remote.count < local.count:
        return SyncPlan.REMOTE_BEHIND
    return SyncPlan.DIVERGED


# -- progress events (tiny frozen dataclasses) -----------------------------------------------

@dataclass(frozen=True, slots=True)
class Started:
    peer: Hashable


@dataclass(frozen=True, slots=True)
class DigestExchanged:
    peer: Hashable
    plan: SyncPlan
    local: JournalDigest
    remote: JournalDigest


@dataclass(frozen=True, slots=True)
class Pulling:
    """``count`` facts arrived from ``peer`` in one message."""

    peer: Hashable
    count: int


@dataclass(frozen=True, slots=True)
class Pushing:
    """``count`` facts are being sent to ``peer`` in one message."""

    peer: Hashable
    count: int


@dataclass(frozen=True, slots=True)
class PeerCompleted:
    peer: Hashable
    stats: SyncStats


@dataclass(frozen=True, slots=True)
class PeerFailed:
    peer: Hashable
    error: SyncError
    retry_at: float | None


@dataclass(frozen=True, slots=True)
class AllCompleted:
    succeeded: tuple[Hashable, ...]
    failed: tuple[Hashable, ...]


Event = Started | DigestExchanged | Pulling | Pushing | PeerCompleted | PeerFailed | AllCompleted


@dataclass
class SyncStats:
    """What one session did.  ``plan`` is the action actually taken (by what moved)."""

    plan: SyncPlan = SyncPlan.EQUAL
    round_trips: int = 0
    messages_sent: int = 0
    bytes_sent: int = 0
    bytes_received: int = 0
    facts_pushed: int = 0
    facts_pulled: int = 0
    facts_inserted: int = 0
    facts_rejected: int = 0
    acks_sent: int = 0       # facts we received with an ack request and acknowledged
    acks_received: int = 0   # acks of our ack-tracked facts, recorded in the journal


# -- one session with one peer -------------------------------------------------------------

class SyncSession:
    """Reconciles ``journal`` with ``peer``; drive it with ``start``/``receive`` and drain
    ``data_to_send()`` and ``next_event()``."""

    def __init__(
        self,
        journal: ContextJournal,
        peer: Hashable,
        *,
        initiator: bool,
        limits: Limits = Limits(),
        flush_facts: int = 8192,
        peer_id: bytes | None = None,
        now: int = 0,
    ) -> None:
        self.journal = journal
        self.peer = peer
        # who acks are recorded from, and when (the driver's clock: this layer reads none)
        self.peer_id = peer_id if peer_id is not None else str(peer).encode()
        self.now = now
        self._awaiting_ack: set[bytes] = set()
        self._acks_out: list[bytes] = []
        self.initiator = initiator
        self.limits = limits
        self.flush_facts = flush_facts
        self.stats = SyncStats()
        self.done = False
        self.error: SyncError | None = None
        self._out: deque[bytes] = deque()
        self._events: deque[Event] = deque()
        self._buffer: list[bytes] = []
        self._first = True
        self._received = 0
        self._phase = SyncPhase.LOAD_LOCAL_STATE
        self._pulled_any = self._pushed_any = False
        try:
            self.local = journal.digest()
            self._phase = SyncPhase.COMPUTE_DIGEST
            self._rec = Reconciler(journal.sorted_ids(), limits)
        except (AuraError, ValueError) as exc:
            self._fail(exc)
            return
        self._events.append(Started(peer))

    # ---- outputs ----
    def data_to_send(self) -> list[bytes]:
        out = list(self._out)
        self._out.clear()
        return out

    def next_event(self) -> Event | None:
        return self._events.popleft() if self._events else None

    @property
    def failed(self) -> bool:
        return self.error is not None

    # ---- inputs ----
    def start(self) -> None:
        """Initiator: send our digest (the root cell)."""
        if not self.initiator or not self._first or self.done:
            if self.done:
                return
            raise SyncError("start() is for a fresh initiator", self._phase, self.peer)
        self._phase = SyncPhase.DIGEST_EXCHANGE
        d = self.local
        self._send(SyncMessage(flags=FLAG_DIGEST, ctx=self.journal.ctx, count=d.count, total=d.total,
                               root=self._rec.root_moments(),
                               counts=self._rec.root_counts() if d.count >= 256 else b""))

    def receive(self, data: bytes) -> None:
        """Feed one message from the peer.  Peer faults fail the session; nothing raises."""
        if self.done:
            return
        self.stats.bytes_received += len(data)
        self._received += 1
        try:
            self._receive(data)
        except ProtocolError as exc:
            self._fail(exc)
        except JournalError as exc:
            self._fail(exc)

    def abort(self, reason: str = "connection lost") -> None:
        """The transport failed (closed, timed out): fail in the current phase."""
        if not self.done:
            self._fail(SyncError(reason, self._phase, self.peer))

    # ---- internals ----
    def _receive(self, data: bytes) -> None:
        phase = SyncPhase.DIGEST_EXCHANGE if self._first else SyncPhase.RECEIVE_OPERATIONS
        self._phase = phase
        if self._received > self.limits.max_messages:
            raise ProtocolError("session exceeds the message bound")
        msg = decode_message(data, self.limits)
        root = None
        if self._first:
            self._first = False
            if not self.initiator and not msg.flags & FLAG_DIGEST:
                raise ProtocolError("first sync message carries no digest")
            if msg.flags & FLAG_DIGEST:
                if msg.root is not None and msg.ctx != self.journal.ctx:
                    raise ProtocolError("sync for another context")
                remote = JournalDigest(msg.count, msg.total)
                self._events.append(DigestExchanged(self.peer, plan_for(self.local, remote), self.local, remote))
                if not self.initiator:
                    if msg.root is None:
                        raise ProtocolError("first sync message carries no root cell")
                    root = (msg.count, *msg.root)
                    self._rec.set_id_key(msg.total, self.local.total)
                else:
                    self._rec.set_id_key(self.local.total, msg.total)
            if self.initiator:
                self.stats.round_trips += 1
        elif self.initiator:
            self.stats.round_trips += 1
        if msg.flags & FLAG_DIGEST and not (root is not None or self.initiator):
            raise ProtocolError("digest repeated")
        self._phase = SyncPhase.PLAN_REQUEST
        fin = bool(msg.flags & FLAG_FIN)
        if fin and (self.initiator or msg.has_requests):
            raise ProtocolError("FIN out of place")
        self._rec.process(msg, root=root)
        if msg.facts or msg.ack_facts:
            self._phase = SyncPhase.RECEIVE_OPERATIONS
            self._pulled_any = True
            n = len(msg.facts) + len(msg.ack_facts)
            self.stats.facts_pulled += n
            self._events.append(Pulling(self.peer, n))
            self._buffer.extend(msg.facts)
            self._buffer.extend(msg.ack_facts)
            if len(self._buffer) >= self.flush_facts or msg.ack_facts:
                self._flush()  # an ack promises the fact is persisted: merge before answering
            if msg.ack_facts and not fin:
                hashes = [hashlib.sha256(b).digest() for b in msg.ack_facts]
                held = self.journal.get_many(hashes)  # what failed validation is not acked
                self._acks_out.extend(h for h in hashes if h in held)
        for h in msg.acks:
            if h in self._awaiting_ack:
                self._awaiting_ack.discard(h)
                self.journal.record_ack(h, self.peer_id, self.now)
                self.stats.acks_received += 1
        if fin:
            self._finish()
            return
        reply = SyncMessage()
        if not self.initiator and self.stats.messages_sent == 0:
            d = self.local  # the responder's first reply carries its digest too
            reply = SyncMessage(flags=FLAG_DIGEST, count=d.count, total=d.total)
        self._compose(reply)
        # FIN when nothing is asked or left, and no fact in this message awaits its ack
        if self.initiator and not reply.has_requests and not reply.flags & FLAG_MORE \
                and not msg.flags & FLAG_MORE and not reply.ack_facts:
            reply.flags |= FLAG_FIN
            self._send(reply)
            self._finish()
            return
        self._send(reply)

    def _compose(self, m: SyncMessage) -> None:
        self._phase = SyncPhase.PLAN_REQUEST
        self._rec.compose(m, self.journal.get_many, self.journal.facts_in_range)
        if self._acks_out:
            n = self.limits.max_wants
            m.acks, self._acks_out = self._acks_out[:n], self._acks_out[n:]
            self.stats.acks_sent += len(m.acks)
            if self._acks_out:
                m.flags |= FLAG_MORE
        if m.facts:
            hashes = [hashlib.sha256(b).digest() for b in m.facts]
            tracked = self.journal.ack_tracked_among(hashes)
            if tracked and len(self._awaiting_ack) + len(tracked) <= MAX_AWAITING_ACKS:
                keep = [h not in tracked for h in hashes]
                m.ack_facts = [b for b, k in zip(m.facts, keep) if not k]
                m.facts = [b for b, k in zip(m.facts, keep) if k]
                self._awaiting_ack.update(tracked)
        if m.facts or m.ack_facts:
            self._pushed_any = True
            n = len(m.facts) + len(m.ack_facts)
            self.stats.facts_pushed += n
            self._events.append(Pushing(self.peer, n))

    def _send(self, m: SyncMessage) -> None:
        data = encode_message(m)
        self.stats.messages_sent += 1
        self.stats.bytes_sent += len(data)
        self._out.append(data)

    def _flush(self) -> None:
        if not self._buffer:
            return
        self._phase = SyncPhase.MERGE_JOURNAL
        batch, self._buffer = self._buffer, []
        self._phase = SyncPhase.PERSIST_JOURNAL
        result = self.journal.merge(batch)
        self.stats.facts_inserted += len(result.inserted)
        self.stats.facts_rejected += result.rejected

    def _finish(self) -> None:
        self._flush()
        self.stats.plan = {
            (False, False): SyncPlan.EQUAL,
            (True, False): SyncPlan.LOCAL_BEHIND,
            (False, True): SyncPlan.REMOTE_BEHIND,
            (True, True): SyncPlan.DIVERGED,
        }[(self._pulled_any, self._pushed_any)]
        self.done = True
        self._events.append(PeerCompleted(self.peer, self.stats))

    def _fail(self, exc: BaseException) -> None:
        err = exc if isinstance(exc, SyncError) else SyncError(str(exc), self._phase, self.peer)
        err.__cause__ = exc if err is not exc else None
        self.error = err
        self.done = True
        self._buffer.clear()  # facts of a failed session are not merged: nothing half-done
        self._out.clear()


# -- the coordinator -----------------------------------------------------------------------

@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with full jitter and a bounded attempt count (seed 002 §10.4)."""

    base: float = 0.5
    factor: float = 2.0
    max_delay: float = 30.0
    max_attempts: int = 6

    def delay(self, attempt: int, rand: Callable[[int], bytes]) -> float:
        cap = min(self.max_delay, self.base * self.factor ** max(0, attempt - 1))
        frac = int.from_bytes(rand(4), "big") / 2**32
        return cap / 2 + frac * cap / 2  # jitter in [cap/2, cap): never a thundering herd


@dataclass(frozen=True, slots=True)
class Propagation:
    """Propagation status of a locally committed fact (seed 002 §9.1).

    ``state`` is "Local", "Syncing", "Complete" or "Failed"; the other fields apply as named.
    """

    state: str
    peers_reached: int = 0
    peers_known: int = 0
    retry_at: float | None = None
    retry_count: int = 0
    error: str = ""


@dataclass
class _PeerState:
    attempts: int = 0
    next_at: float = 0.0
    reached_seq: int = 0
    in_session: bool = False
    session_seq: int = 0
    gave_up: bool = False
    last_error: str = ""


class AntiEntropy:
    """Schedules sync sessions of one context journal with a set of peers.

    Usage: ``for peer in ae.due(now): s = ae.begin(peer)``; run ``s`` over a transport; then
    ``ae.end(peer, s, now)``.  ``next_event()`` yields PeerFailed / AllCompleted in addition to
    the sessions' own events (which the driver forwards or drains itself).
    """

    def __init__(
        self,
        journal: ContextJournal,
        peers: Iterable[Hashable],
        *,
        policy: RetryPolicy = RetryPolicy(),
        limits: Limits = Limits(),
        rand: Callable[[int], bytes] = DEFAULT_RAND,
    ) -> None:
        self.journal = journal
        self.policy = policy
        self.limits = limits
        self.rand = rand
        self.peers: dict[Hashable, _PeerState] = {p: _PeerState() for p in peers}
        self.max_tracked = 1 << 16
        self._seq = 0
        self._local: dict[bytes, int] = {}  # fact hash -> local commit sequence (pruned when Complete)
        self._events: deque[Event] = deque()
        self._round: set[Hashable] = set()
        self._round_ok: list[Hashable] = []
        self._round_failed: list[Hashable] = []

    def note_local(self, hashes: Iterable[bytes]) -> None:
        """Facts just committed locally, whose propagation we track."""
        self._seq += 1
        for h in hashes:
            self._local.setdefault(bytes(h), self._seq)

    def start_round(self, now: float) -> None:
        """Make every peer due now (a new anti-entropy round), resetting give-ups."""
        for st in self.peers.values():
            st.next_at = now
            st.gave_up = False
            st.attempts = 0

    def due(self, now: float) -> list[Hashable]:
        return [p for p, st in self.peers.items()
                if not st.in_session and not st.gave_up and st.next_at <= now]

    def next_timer(self) -> float | None:
        times = [st.next_at for st in self.peers.values() if not st.in_session and not st.gave_up]
        return min(times) if times else None

    def begin(self, peer: Hashable, now: int = 0) -> SyncSession:
        """Start a session with ``peer``; ``now`` (the driver's clock) stamps acks it records."""
        st = self.peers[peer]
        st.in_session = True
        st.session_seq = self._seq
        st.attempts += 1
        self._round.add(peer)
        session = SyncSession(self.journal, peer, initiator=True, limits=self.limits, now=now)
        session.start()
        return session

    def end(self, peer: Hashable, session: SyncSession, now: float) -> None:
        st = self.peers[peer]
        st.in_session = False
        if session.done and not session.failed:
            st.attempts = 0
            st.reached_seq = max(st.reached_seq, st.session_seq)
            st.next_at = float("inf")  # until the next round
            st.last_error = ""
            self._round_ok.append(peer)
            self._prune()
        else:
            err = session.error or SyncError("session did not finish", None, peer)
            st.last_error = "sync failed"
            retry_at: float | None = None
            if st.attempts >= self.policy.max_attempts:
                st.gave_up = True
                self._round_failed.append(peer)
            else:
                retry_at = now + self.policy.delay(st.attempts, self.rand)
                st.next_at = retry_at
            self._events.append(PeerFailed(peer, err, retry_at))
        self._round.discard(peer)
        pending = [p for p, s in self.peers.items() if s.in_session or (not s.gave_up and s.next_at <= now)]
        waiting = [p for p, s in self.peers.items() if not s.gave_up and s.next_at != float("inf")]
        if not pending and not waiting:
            self._events.append(AllCompleted(tuple(self._round_ok), tuple(self._round_failed)))
            self._round_ok, self._round_failed = [], []

    def next_event(self) -> Event | None:
        return self._events.popleft() if self._events else None

    def propagation(self, h: bytes) -> Propagation | None:
        """Status of a fact noted with :meth:`note_local`.

        None when the fact was never noted, or was Complete and has been forgotten (the table
        keeps at most ``max_tracked`` facts beyond those still propagating).
        """
        seq = self._local.get(bytes(h))
        if seq is None:
            return None
        known = len(self.peers)
        reached = sum(1 for st in self.peers.values() if st.reached_seq >= seq)
        if reached == known:
            return Propagation("Complete", reached, known)
        failing = [st for st in self.peers.values() if st.reached_seq < seq and st.last_error]
        if failing:
            st = failing[0]
            return Propagation("Failed", reached, known,
                               None if st.gave_up else st.next_at, st.attempts, st.last_error)
        if reached == 0:
            return Propagation("Local", 0, known)
        return Propagation("Syncing", reached, known)

    def _prune(self) -> None:
        # facts every peer has are Complete; forget them only when the table grows large
        if len(self._local) < self.max_tracked:
            return
        low = min((st.reached_seq for st in self.peers.values()), default=0)
        if low:
            self._local = {h: s for h, s in self._local.items() if s > low}
