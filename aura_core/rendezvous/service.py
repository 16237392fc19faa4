"""RendezvousService (seed 001 §10): descriptor publication, cache and refresh; channel
establishment and handshake handling, each prepared as a guard outcome with effect commands.

Theory of operation
-------------------
* Every ``prepare_*`` call is pure over its inputs (a :class:`GuardSnapshot`, ``now``, bytes)
  plus this object's state, and returns a :class:`GuardOutcome`.  The guard chain runs first;
  a denied or over-budget attempt returns an outcome with **no effects and no state change**
  and a generic reason (seed 002 §6: no capability names, budgets or membership leak).  The
  caller executes the allowed outcome's effects in order (charge first, then journal/send).
* Capabilities and costs come from the choreographies (:mod:`aura_core.choreo`) so one source
  states them: publish ``rendezvous:publish`` cost 1, connect direct ``rendezvous:connect``
  cost 2, connect through a relay ``rendezvous:relay`` cost 3.
* Descriptors of peers arrive through journal sync (:meth:`ingest`, or :meth:`cache_descriptor`
  directly).  Each is fully validated under the context key, then checked against state:
  replayed (nonce already seen), stale (older than the cached one), revoked.  Nothing is cached
  unless every check passes.
* The responder learns who calls from Noise message 1 only; it resolves the initiator's static
  key through the descriptors it has cached for that context, so unknown peers are refused the
  same way as garbage.  Each joined context keeps a :class:`HandshakeKeys` (our X25519 static
  secret, prologues, PSKs per (epoch, peer)), next to the context key it derives from; entering
  a new epoch drops the older PSKs, leaving the context drops them all.  Pending handshakes
  are bounded (``max_pending`` in total, one per (context, peer)) and expire after
  ``handshake_timeout_ms``.
* A completed handshake registers a :class:`SecureChannel` (A1, provisional) in the
  :class:`ChannelManager` and both sides append the same ``ChannelEstablished`` fact (same
  CID: the journal keeps one).
"""

from __future__ import annotations

import struct
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from .. import dagcbor
from ..choreo import RELAYED_RENDEZVOUS, RENDEZVOUS_EXCHANGE, Interaction
from ..guards import (
    ALLOW,
    AppendFact,
    ChargeBudget,
    GuardOutcome,
    GuardSnapshot,
    RecordReceipt,
    SendEnvelope,
    SendIntent,
    cap_guard,
    evaluate,
    flow_guard,
)
from ..noise.channel import HandshakeKeys
from ..noise.binding import (
    MSG_INITIATION,
    MSG_RESPONSE,
    frame_initiation,
    frame_response,
    parse_handshake_datagram,
)
from ..errors import (
    AuraError,
    DecodeError,
    DescriptorError,
    HandshakeError,
    ProtocolError,
    UsageError,
)
from ..hashing import ContextKey
from ..ids import AuthorityId, ContextId
from ..keys import IdentityKey, PublicIdentity
from .channel import DEFAULT_HANDSHAKE_TIMEOUT_MS, ChannelManager, Handshaker, SecureChannel
from .negotiate import Incompatible
from .descriptor import (
    DEFAULT_LIFETIME_MS,
    DEFAULT_RAND,
    DEFAULT_REFRESH_FRACTION,
    DEFAULT_SKEW_MS,
    RendezvousDescriptor,
    TransportHint,
    build_descriptor,
    open_descriptor,
    revoke_descriptor,
    seal_descriptor,
    verify_revocation,
)
from .facts import KIND_CHANNEL_ESTABLISHED, KIND_DESCRIPTOR, KIND_DESCRIPTOR_REVOKED, RendezvousFact

__all__ = [
    "CAP_RENDEZVOUS_PUBLISH",
    "CAP_RENDEZVOUS_CONNECT",
    "CAP_RENDEZVOUS_RELAY",
    "DESCRIPTOR_PUBLISH_COST",
    "CONNECT_DIRECT_COST",
    "CONNECT_RELAY_COST",
    "RendezvousConfig",
    "RendezvousService",
]

_OFFER, _ANSWER, _INIT, _COMPLETE = RENDEZVOUS_EXCHANGE.steps


def _cap(step: Interaction) -> str:
    if step.guard_capability is None:
        raise AssertionError(f"{step} has no guard capability")
    return step.guard_capability


CAP_RENDEZVOUS_PUBLISH: Final = _cap(_OFFER)
CAP_RENDEZVOUS_CONNECT: Final = _cap(_INIT)
CAP_RENDEZVOUS_RELAY: Final = _cap(RELAYED_RENDEZVOUS.steps[0])
DESCRIPTOR_PUBLISH_COST: Final = _OFFER.flow_cost
CONNECT_DIRECT_COST: Final = _INIT.flow_cost
CONNECT_RELAY_COST: Final = RELAYED_RENDEZVOUS.steps[0].flow_cost

_INDEX_POOL: Final = struct.Struct("<16I")  # 16 handshake indices per CSPRNG call
MAX_SEEN_NONCES: Final = 4096  # per context; older entries age out (FIFO)


@dataclass(frozen=True)
class RendezvousConfig:
    handshake_timeout_ms: int = DEFAULT_HANDSHAKE_TIMEOUT_MS
    max_pending: int = 64
    descriptor_lifetime_ms: int = DEFAULT_LIFETIME_MS
    refresh_fraction: float = DEFAULT_REFRESH_FRACTION
    skew_ms: int = DEFAULT_SKEW_MS
    max_cached_per_context: int = 1024


@dataclass
class _Context:
    key: ContextKey
    epoch: int
    keys: HandshakeKeys  # our static secret, prologues and PSKs in this context (cached)
    cache: dict[AuthorityId, RendezvousDescriptor] = field(default_factory=dict)
    by_x25519: dict[bytes, PublicIdentity] = field(default_factory=dict)
    pubs: dict[AuthorityId, PublicIdentity] = field(default_factory=dict)
    seen: OrderedDict[tuple[AuthorityId, bytes], None] = field(default_factory=OrderedDict)
    revoked: set[tuple[AuthorityId, bytes]] = field(default_factory=set)
    own: RendezvousDescriptor | None = None


class RendezvousService:
    """One authority's rendezvous coordinator over the contexts it has joined."""

    def __init__(self, identity: IdentityKey, config: RendezvousConfig | None = None, *,
                 rand: Callable[[int], bytes] = DEFAULT_RAND) -> None:
        self.identity = identity
        self.authority_id = identity.authority_id
        self.config = config or RendezvousConfig()
        self.channels = ChannelManager()
        self._rand = rand
        self._contexts: dict[ContextId, _Context] = {}
        # (context, peer) -> (handshaker, our sender index); soonest deadline among them
        self._pending: dict[tuple[ContextId, AuthorityId], tuple[Handshaker, int]] = {}
        self._soonest = 0
        self._intents: dict[tuple[AuthorityId, str, int], SendIntent] = {}
        self._index_pool: Iterator[int] = iter(())
        self._init_ts = 0  # our last initiation timestamp (strictly increasing)
        self._accepted_ts: dict[tuple[ContextId, AuthorityId], int] = {}  # peers' last ones

    # ---- contexts -----------------------------------------------------------------------------
    def join_context(self, context: ContextId, key: ContextKey, epoch: int = 0) -> None:
        if context in self._contexts:
            raise UsageError("context already joined")
        self._contexts[context] = _Context(key, epoch, HandshakeKeys(self.identity, key, bytes(context)))

    def leave_context(self, context: ContextId) -> list[SecureChannel]:
        st = self._contexts.pop(context, None)
        if st is not None:
            st.keys.forget()
        for k in [k for k in self._accepted_ts if k[0] == context]:
            del self._accepted_ts[k]
        for k in [k for k in self._pending if k[0] == context]:
            self._drop_pending(k)
        return self.channels.close_context(context)

    def _ctx(self, context: ContextId) -> _Context:
        try:
            return self._contexts[context]
        except KeyError:
            raise UsageError("context not joined") from None

    def epoch(self, context: ContextId) -> int:
        return self._ctx(context).epoch

    # ---- guard evaluation ---------------------------------------------------------------------
    def _check_snapshot(self, snapshot: GuardSnapshot, context: ContextId) -> _Context:
        if type(snapshot) is not GuardSnapshot:
            raise UsageError("a GuardSnapshot is required")
        if ((snapshot.authority is not self.authority_id and snapshot.authority != self.authority_id)
                or (snapshot.context is not context and snapshot.context != context)):
            raise UsageError("guard snapshot is for another authority or context")
        st = self._ctx(context)
        if snapshot.epoch != st.epoch:
            raise UsageError("guard snapshot is for another epoch")
        return st

    def _intent(self, peer: AuthorityId, capability: str, cost: int, operation: str) -> SendIntent:
        # Intents are immutable and few (peers x operations): reuse them, which also lets the
        # guards' per-intent effect cache hit.
        key = (peer, capability, cost)
        intent = self._intents.get(key)
        if intent is None:
            if len(self._intents) > 4096:
                self._intents.clear()
            intent = self._intents[key] = SendIntent(peer, capability, cost, operation=operation)
        return intent

    def _new_index(self) -> int:
        """A random 32-bit handshake sender index (drawn from a pooled CSPRNG buffer)."""
        index = next(self._index_pool, None)
        if index is None:
            self._index_pool = iter(_INDEX_POOL.unpack(self._rand(_INDEX_POOL.size)))
            index = next(self._index_pool)
        return index

    def _local_outcome(self, snapshot: GuardSnapshot, context: ContextId, capability: str,
                       cost: int, operation: str, facts: Callable[[], tuple[bytes, ...]]) -> GuardOutcome:
        """Guards for a journal-only operation (publish, revoke): the charge goes to our own
        account of the context, the fact propagates by sync, nothing is sent directly."""
        self._check_snapshot(snapshot, context)
        intent = self._intent(self.authority_id, capability, cost, operation)
        denied = cap_guard(snapshot, intent) or flow_guard(snapshot, intent)
        if denied is not None:
            return GuardOutcome(denied)
        appends = tuple(AppendFact(context, f) for f in facts())
        return GuardOutcome(ALLOW, (ChargeBudget(context, self.authority_id, cost), *appends,
                                    RecordReceipt(context, self.authority_id, cost, snapshot.epoch,
                                                  operation)))

    # ---- descriptors --------------------------------------------------------------------------
    def prepare_publish_descriptor(self, snapshot: GuardSnapshot, context: ContextId,
                                   transport_hints: Sequence[TransportHint], now: int, *,
                                   nickname: str | None = None,
                                   lifetime_ms: int | None = None) -> GuardOutcome:
        """Build, seal and sign our descriptor.  Effects: ChargeBudget(own account, 1),
        AppendFact(descriptor), RecordReceipt."""
        st = self._ctx(context)

        def facts() -> tuple[bytes, ...]:
            d = build_descriptor(self.identity, st.key, context, transport_hints, now=now,
                                 epoch=st.epoch,
                                 lifetime_ms=lifetime_ms or self.config.descriptor_lifetime_ms,
                                 nickname=nickname, rand=self._rand)
            fact = dagcbor.encode(seal_descriptor(d, self.identity, st.key, rand=self._rand))
            st.own = d
            return (fact,)

        return self._local_outcome(snapshot, context, CAP_RENDEZVOUS_PUBLISH,
                                   DESCRIPTOR_PUBLISH_COST, "rendezvous:publish", facts)

    def prepare_revoke_descriptor(self, snapshot: GuardSnapshot, context: ContextId) -> GuardOutcome:
        """Revoke our current descriptor.  Effects: charge 1, append the signed revocation."""
        st = self._ctx(context)
        own = st.own
        if own is None:
            raise UsageError("no published descriptor to revoke")

        def facts() -> tuple[bytes, ...]:
            st.own = None
            return (dagcbor.encode(revoke_descriptor(self.identity, context, own.nonce)),)

        return self._local_outcome(snapshot, context, CAP_RENDEZVOUS_PUBLISH,
                                   DESCRIPTOR_PUBLISH_COST, "rendezvous:revoke", facts)

    def own_descriptor(self, context: ContextId) -> RendezvousDescriptor | None:
        return self._ctx(context).own

    def needs_refresh(self, context: ContextId, now: int, refresh_window_ms: int | None = None) -> bool:
        """True when our descriptor is missing, of an older epoch, expired or in its last part."""
        st = self._ctx(context)
        own = st.own
        if own is None or own.epoch < st.epoch or now >= own.valid_until:
            return True
        if refresh_window_ms is None:
            return now >= own.refresh_at(self.config.refresh_fraction)
        return own.needs_refresh(now, refresh_window_ms)

    def cache_descriptor(self, fact: dict[str, Any] | bytes, context: ContextId, now: int) -> RendezvousDescriptor:
        """Validate a peer's sealed descriptor and cache it (DescriptorError: nothing cached)."""
        st = self._ctx(context)
        d = open_descriptor(fact, st.key, context, now=now, skew_ms=self.config.skew_ms)
        if d.authority_id == self.authority_id:
            raise DescriptorError("descriptor is our own")
        tag = (d.authority_id, d.nonce)
        if tag in st.revoked:
            raise DescriptorError("descriptor was revoked")
        if tag in st.seen:
            raise DescriptorError("descriptor replayed")
        cur = st.cache.get(d.authority_id)
        if cur is not None and (d.valid_from, d.epoch) < (cur.valid_from, cur.epoch):
            raise DescriptorError("descriptor older than the cached one")
        if cur is None and len(st.cache) >= self.config.max_cached_per_context:
            raise DescriptorError("descriptor cache full")
        st.seen[tag] = None
        if len(st.seen) > MAX_SEEN_NONCES:
            st.seen.popitem(last=False)
        if cur is not None:
            st.by_x25519.pop(st.pubs.pop(d.authority_id).x25519, None)
        st.cache[d.authority_id] = d
        pub = PublicIdentity(d.public_key)
        st.by_x25519[pub.x25519] = pub
        st.pubs[d.authority_id] = pub
        return d

    def get_cached_descriptor(self, context: ContextId, peer: AuthorityId,
                              now: int | None = None) -> RendezvousDescriptor | None:
        """The peer's cached descriptor (only if still valid at ``now`` when given)."""
        st = self._contexts.get(context)
        d = st.cache.get(peer) if st else None
        if d is not None and now is not None and now >= d.valid_until:
            return None
        return d

    def peers_needing_refresh(self, context: ContextId, now: int) -> list[AuthorityId]:
        st = self._ctx(context)
        return [a for a, d in st.cache.items() if d.needs_refresh(now) or d.epoch < st.epoch]

    def apply_revocation(self, fact: dict[str, Any] | bytes, context: ContextId) -> bool:
        """Honour a signed revocation; True if it removed the cached descriptor."""
        st = self._ctx(context)
        auth, nonce = verify_revocation(fact, context)
        cur = st.cache.get(auth)
        st.revoked.add((auth, nonce))
        if cur is not None and cur.nonce == nonce:
            del st.cache[auth]
            st.by_x25519.pop(st.pubs.pop(auth).x25519, None)
            return True
        return False

    def ingest(self, context: ContextId, facts: Iterable[dict[str, Any] | bytes], now: int) -> dict[str, int]:
        """Apply rendezvous facts merged from journal sync; invalid ones are dropped and counted
        (a peer's bad fact must not stop the rest)."""
        counts = {"cached": 0, "revoked": 0, "channels": 0, "dropped": 0, "ignored": 0}
        for raw in facts:
            try:
                fact = dagcbor.decode(raw) if isinstance(raw, (bytes, bytearray, memoryview)) else raw
                kind = fact.get("kind") if isinstance(fact, dict) else None
                if kind == KIND_DESCRIPTOR:
                    if fact["auth"] == bytes(self.authority_id):
                        counts["ignored"] += 1
                        continue
                    self.cache_descriptor(fact, context, now)
                    counts["cached"] += 1
                elif kind == KIND_DESCRIPTOR_REVOKED:
                    self.apply_revocation(fact, context)
                    counts["revoked"] += 1
                elif kind == KIND_CHANNEL_ESTABLISHED:
                    RendezvousFact.check(fact)
                    counts["channels"] += 1
                else:
                    counts["ignored"] += 1
            except (AuraError, KeyError, TypeError):
                counts["dropped"] += 1
        return counts

    # ---- channels -----------------------------------------------------------------------------
    def _expire(self, now: int) -> None:
        if not self._pending or now < self._soonest:
            return
        for k in [k for k, (h, _) in self._pending.items() if h.is_expired(now)]:
            del self._pending[k]
        self._soonest = min((h.deadline for h, _ in self._pending.values()), default=0)

    def _drop_pending(self, key: tuple[ContextId, AuthorityId]) -> None:
        self._pending.pop(key, None)

    def pending_count(self) -> int:
        return len(self._pending)

    def expire_handshakes(self, now: int) -> int:
        before = len(self._pending)
        self._expire(now)
        return before - len(self._pending)

    def prepare_establish_channel(self, snapshot: GuardSnapshot, context: ContextId,
                                  peer: AuthorityId, now: int) -> GuardOutcome:
        """Start a handshake with ``peer`` from its cached descriptor.

        Direct when the descriptor has a direct transport (cost 2, ``rendezvous:connect``),
        through its relay otherwise (cost 3, ``rendezvous:relay``).  Effects: ChargeBudget,
        RecordReceipt, SendEnvelope(handshake initiation).  Raises DescriptorError without a
        valid descriptor and UsageError when too many handshakes are pending; neither is
        visible to the peer.
        """
        st = self._check_snapshot(snapshot, context)
        d = st.cache.get(peer)
        if d is None or now >= d.valid_until:
            raise DescriptorError("no valid descriptor cached for this peer")
        self._expire(now)
        key = (context, peer)
        if len(self._pending) >= self.config.max_pending and key not in self._pending:
            raise UsageError("too many pending handshakes")
        if d.has_direct_transport():
            intent = self._intent(peer, CAP_RENDEZVOUS_CONNECT, CONNECT_DIRECT_COST, "rendezvous:connect")
        else:
            intent = self._intent(peer, CAP_RENDEZVOUS_RELAY, CONNECT_RELAY_COST, "rendezvous:connect")
        # Guards first: a denial must cost no key agreement either.
        denied = cap_guard(snapshot, intent) or flow_guard(snapshot, intent)
        if denied is not None:
            return GuardOutcome(denied)
        ts = max(now * 1_000_000, self._init_ts + 1)  # ns-scaled ms, strictly increasing
        hs = Handshaker.initiator(self.identity, st.pubs[peer], st.key, context, st.epoch,
                                  now=now, timeout_ms=self.config.handshake_timeout_ms, timestamp=ts,
                                  keys=st.keys)
        index = self._new_index()
        envelope = frame_initiation(index, hs.create_init_message(now))
        outcome = evaluate(snapshot, intent, envelope)
        if outcome.is_allowed():
            self._init_ts = ts
            self._pending[key] = (hs, index)
            if len(self._pending) == 1 or hs.deadline < self._soonest:
                self._soonest = hs.deadline
        return outcome

    def prepare_handle_handshake(self, snapshot: GuardSnapshot, context: ContextId,
                                 initiator: AuthorityId, envelope: bytes, now: int) -> GuardOutcome:
        """Responder: answer ``initiator``'s handshake initiation.

        The message must authenticate as ``initiator`` (the static key of its cached
        descriptor) under this context's epoch; otherwise HandshakeError / ProtocolError and
        nothing changes.  When the guards allow: ChargeBudget, AppendFact(ChannelEstablished)
        (only when versions are compatible), RecordReceipt, SendEnvelope(response), and the
        channel is registered (A1).  An incompatible peer still gets the answer (it carries our
        version range, so it learns why) but no channel exists on either side.
        """
        st = self._check_snapshot(snapshot, context)
        intent = self._intent(initiator, CAP_RENDEZVOUS_CONNECT, CONNECT_DIRECT_COST,
                              "rendezvous:connect")
        denied = cap_guard(snapshot, intent) or flow_guard(snapshot, intent)
        if denied is not None:
            return GuardOutcome(denied)  # dropped unread: no reply, no state
        try:
            kind, sender_index, _, message = parse_handshake_datagram(envelope)
        except DecodeError:
            raise ProtocolError("not a handshake initiation") from None
        if kind != MSG_INITIATION:
            raise ProtocolError("not a handshake initiation")
        hs = Handshaker.responder(self.identity, st.key, context, st.epoch, st.by_x25519.get,
                                  now=now, timeout_ms=self.config.handshake_timeout_ms,
                                  keys=st.keys)
        peer_key = (context, initiator)
        # HandshakeError: unknown or wrong peer, wrong epoch or context, replayed initiation
        response = hs.process_init(message, now, not_after=self._accepted_ts.get(peer_key))
        assert hs.peer is not None
        if hs.peer.authority_id is not initiator and hs.peer.authority_id != initiator:
            raise HandshakeError("handshake is not from the claimed initiator")
        reply = frame_response(self._new_index(), sender_index, response)
        compatible = not isinstance(hs.outcome, Incompatible)
        facts: tuple[bytes, ...] = ()
        if compatible:
            facts = (RendezvousFact.channel_established_bytes(
                context, initiator, self.authority_id, hs.channel_id, st.epoch),)
        outcome = evaluate(snapshot, intent, reply, facts)
        if outcome.is_allowed():
            self._accepted_ts[peer_key] = hs.remote_timestamp
            if compatible:
                self.channels.register(hs.build_channel(now))
        return outcome

    def handle_handshake_response(self, context: ContextId, peer: AuthorityId, envelope: bytes,
                                  now: int) -> tuple[SecureChannel, tuple[AppendFact, ...]]:
        """Initiator: finish the pending handshake with ``peer``.

        Returns the registered channel and the effects to run (AppendFact ChannelEstablished,
        the same fact the responder appends).  A response for another handshake, from a wrong
        peer or epoch, forged or late raises (HandshakeError / ProtocolError / VersionError)
        and drops the pending handshake: nothing is registered.
        """
        key = (context, peer)
        pending = self._pending.get(key)
        if pending is None:
            raise ProtocolError("no handshake pending with this peer")
        hs, index = pending
        try:
            try:
                kind, _, receiver, message = parse_handshake_datagram(envelope)
            except DecodeError:
                raise ProtocolError("not a handshake response") from None
            if kind != MSG_RESPONSE or receiver != index:
                raise ProtocolError("response does not match the pending handshake")
            hs.process_response(message, now)
            channel = hs.build_channel(now)
        except AuraError:
            del self._pending[key]
            raise
        del self._pending[key]
        self.channels.register(channel)
        fact = RendezvousFact.channel_established_bytes(context, self.authority_id, peer,
                                                        channel.channel_id, channel.epoch)
        return channel, (AppendFact(context, fact),)

    def advance_epoch(self, context: ContextId, new_epoch: int) -> list[AuthorityId]:
        """Enter ``new_epoch``: returns the peers whose channels must re-handshake (and our
        descriptor now needs refresh: its PSK commitment names the old epoch)."""
        st = self._ctx(context)
        if new_epoch <= st.epoch:
            return []
        st.epoch = new_epoch
        st.keys.forget(new_epoch)  # old-epoch PSKs are never used again
        for k in [k for k in self._pending if k[0] == context]:
            self._drop_pending(k)
        return [ch.remote for ch in self.channels.advance_epoch(context, new_epoch)]

    def teardown(self, context: ContextId, peer: AuthorityId) -> SecureChannel | None:
        self._drop_pending((context, peer))
        return self.channels.close(context, peer)


def bench_establish_pair(a: IdentityKey, b: IdentityKey, context: ContextId, key: ContextKey,
                         n: int) -> Callable[[], int]:
    """A benchmark runner: ``n`` full establishments between two services, pumped in memory
    (guards evaluated, effects built, channels registered; executing the effects is the
    interpreter's cost and not included)."""
    from ..capabilities import ALL_CAPABILITIES
    from .descriptor import QuicDirect

    now = 1_750_000_000_000
    sa, sb = RendezvousService(a), RendezvousService(b)
    snaps = {}
    for s, peer in ((sa, b), (sb, a)):
        s.join_context(context, key, 1)
        snaps[s] = GuardSnapshot(s.authority_id, context, 1, now, ALL_CAPABILITIES,
                                 {peer.authority_id: 1 << 60, s.authority_id: 1 << 60})
    for s, other in ((sa, sb), (sb, sa)):
        out = s.prepare_publish_descriptor(snaps[s], context, [QuicDirect("192.0.2.1:4433")], now)
        other.cache_descriptor(next(e.fact for e in out.effects if isinstance(e, AppendFact)),
                               context, now)
    a_id, b_id = a.authority_id, b.authority_id

    def run() -> int:
        for _ in range(n):
            init = sa.prepare_establish_channel(snaps[sa], context, b_id, now).effects[-1]
            assert isinstance(init, SendEnvelope)
            resp = sb.prepare_handle_handshake(snaps[sb], context, a_id, init.envelope, now).effects[-1]
            assert isinstance(resp, SendEnvelope)
            sa.handle_handshake_response(context, b_id, resp.envelope, now)
        return n
    return run
