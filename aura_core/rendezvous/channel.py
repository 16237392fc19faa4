"""Secure channels: the Handshaker state machine, SecureChannel and ChannelManager
(seed 001 §1.1, §9; seed 002 §8).

Theory of operation
-------------------
* A :class:`Handshaker` runs one Noise IKpsk2 exchange through :class:`aura_core.noise.AuraHandshake`
  (prologue = context + epoch, PSK from the context key per (epoch, pair), offer/answer in the
  payloads).  Its order is checked by a :class:`~aura_core.choreo.Monitor` of
  ``RendezvousExchange`` projected to its role; the descriptor steps of that choreography
  happened through the journal before a handshaker exists, so the monitor starts after them.
  A handshaker has a deadline (``now + timeout_ms``); after it, every call fails.
  States: ``new`` -> ``sent`` (initiator) -> ``done`` | ``failed``; a responder goes
  ``new`` -> ``done`` | ``failed`` in one step.  A call out of the role's order (reading the
  response before sending, answering twice) is refused by the monitor with ProtocolError; a
  rejected message fails the handshake for good (the caller starts a new one).
* A :class:`SecureChannel` is bound to (context, local, remote, epoch).  Its id is the Noise
  binding's ``hash32(Tag.CHANNEL, handshake_hash)`` — equal on both sides, fresh per handshake.
  Frames are the Noise binding's stream frames; a frame from another epoch does not
  authenticate under this epoch's keys and is rejected with :class:`DecryptError`, leaving the
  channel usable.
* Agreement modes: every new channel starts **A1** (provisional, ``reversion_risk``).  Merged
  convergence evidence moves it to **A2** (soft-safe, still revertible); merged commit evidence
  for its ``ChannelEstablished`` fact moves it to **A3** (final, no reversion risk).  Until A3
  ``provisional`` is true.  The consensus that produces the evidence is outside this package:
  the caller merges it.
* :class:`ChannelManager` keeps one channel per (context, peer).  ``advance_epoch`` marks that
  context's channels ``Rotating`` / ``needs_rotation``; rotation is a real re-handshake at the
  new epoch whose channel replaces the old one on ``register`` (the old session is expired and
  its keys wiped).  ``close`` tears a channel down the same way.

Times are milliseconds since the Unix epoch (``now``); Noise sessions get seconds.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from enum import Enum
from typing import Final

from ..choreo import RENDEZVOUS_EXCHANGE, Monitor
from ..errors import (
    DecryptError,
    HandshakeError,
    ProtocolError,
    ReceiptError,
    SignatureError,
    UsageError,
    VersionError,
)
from ..hashing import ContextKey
from ..ids import AuthorityId, ContextId
from ..keys import IdentityKey, PublicIdentity
from ..noise import AuraHandshake, StreamSession
from ..noise.channel import HandshakeKeys
from ..noise.binding import Offer
from .negotiate import Compatible, Incompatible, evaluate, make_offer

__all__ = [
    "ChannelState",
    "AgreementMode",
    "Handshaker",
    "SecureChannel",
    "ChannelManager",
    "DEFAULT_HANDSHAKE_TIMEOUT_MS",
]

DEFAULT_HANDSHAKE_TIMEOUT_MS: Final = 5000
_INITIATOR, _RESPONDER = "Initiator", "Responder"


class ChannelState(str, Enum):
    ESTABLISHING = "Establishing"
    ACTIVE = "Active"
    ROTATING = "Rotating"
    CLOSED = "Closed"
    ERROR = "Error"


class AgreementMode(str, Enum):
    A1 = "A1"  # provisional
    A2 = "A2"  # soft-safe: coordinator convergence evidence merged
    A3 = "A3"  # finalized by consensus: commit evidence merged


def _template_after_descriptors(role: str) -> Monitor:
    """A RendezvousExchange monitor positioned after the descriptor offer/answer steps."""
    m = RENDEZVOUS_EXCHANGE.monitor(role)
    other = _RESPONDER if role == _INITIATOR else _INITIATOR
    if role == _INITIATOR:
        m.on_send(other, "DescriptorOffer")
        m.on_receive(other, "DescriptorAnswer")
    else:
        m.on_receive(other, "DescriptorOffer")
        m.on_send(other, "DescriptorAnswer")
    return m


_TEMPLATES: Final = {r: _template_after_descriptors(r) for r in (_INITIATOR, _RESPONDER)}


def _monitor_after_descriptors(role: str) -> Monitor:
    return _TEMPLATES[role].copy()


def _keys(keys: HandshakeKeys | None, identity: IdentityKey, context_key: ContextKey,
          context_id: ContextId) -> HandshakeKeys:
    if keys is None:
        return HandshakeKeys(identity, context_key, bytes(context_id))
    # a cache built for another identity or context would give a handshake the peer rejects
    # (wrong static key or PSK); refuse it loudly instead
    if (keys.identity is not identity or keys.context_key is not context_key
            or keys.context != bytes(context_id)):
        raise UsageError("handshake keys are for another identity or context")
    return keys


class Handshaker:
    """One channel handshake, initiator or responder (see the module docstring)."""

    __slots__ = ("role", "identity", "context_id", "epoch", "deadline", "state", "peer",
                 "monitor", "outcome", "_hs", "_offer", "_channel_id")

    def __init__(self, role: str, hs: AuraHandshake, identity: IdentityKey, context_id: ContextId,
                 epoch: int, offer: Offer, peer: PublicIdentity | None, now: int,
                 timeout_ms: int) -> None:
        self.role = role
        self.identity = identity
        self.context_id = context_id
        self.epoch = epoch
        self.deadline = now + timeout_ms
        self.state = "new"
        self.peer = peer
        self.monitor = _TEMPLATES[role].copy()  # = _monitor_after_descriptors(role)
        self.outcome: Compatible | Incompatible | None = None
        self._hs = hs
        self._offer = offer
        self._channel_id: bytes | None = None

    @classmethod
    def initiator(cls, identity: IdentityKey, peer: PublicIdentity, context_key: ContextKey,
                  context_id: ContextId, epoch: int, *, now: int,
                  timeout_ms: int = DEFAULT_HANDSHAKE_TIMEOUT_MS, offer: Offer | None = None,
                  timestamp: int = 0, e: bytes | None = None,
                  keys: HandshakeKeys | None = None) -> Handshaker:
        """``timestamp`` must grow with every initiation to the same responder (its replay
        protection for message 1, see :class:`aura_core.noise.binding.Offer`).  ``keys``: the
        caller's cached :class:`HandshakeKeys` of (identity, context_key, context_id), if any."""
        offer = offer or make_offer(epoch)
        if timestamp:
            offer = offer.with_timestamp(timestamp)
        hs = _keys(keys, identity, context_key, context_id).initiator(peer, epoch, offer, e=e)
        return cls(_INITIATOR, hs, identity, context_id, epoch, offer, peer, now, timeout_ms)

    @classmethod
    def responder(cls, identity: IdentityKey, context_key: ContextKey, context_id: ContextId,
                  epoch: int, resolve: Callable[[bytes], PublicIdentity | None], *, now: int,
                  timeout_ms: int = DEFAULT_HANDSHAKE_TIMEOUT_MS, offer: Offer | None = None,
                  e: bytes | None = None, keys: HandshakeKeys | None = None) -> Handshaker:
        offer = offer or make_offer(epoch)
        hs = _keys(keys, identity, context_key, context_id).responder(epoch, offer, resolve, e=e)
        return cls(_RESPONDER, hs, identity, context_id, epoch, offer, None, now, timeout_ms)

    def is_expired(self, now: int) -> bool:
        return now >= self.deadline

    def _check(self, now: int, want_role: str) -> None:
        # Order itself is the monitor's job (ProtocolError: the role broke its local type).
        if self.role is not want_role and self.role != want_role:
            raise UsageError(f"this call is for the {want_role.lower()}")
        if self.state == "failed":
            raise UsageError("handshake already failed")
        if now >= self.deadline:
            self.state = "failed"
            raise HandshakeError("handshake timed out")

    def _fail(self, exc: Exception) -> None:
        self.state = "failed"
        raise exc

    def create_init_message(self, now: int) -> bytes:
        """Initiator: Noise message 1 carrying our offer."""
        self._check(now, _INITIATOR)
        self.monitor.on_send(_RESPONDER, "HandshakeInit")
        msg = self._hs.write_message()
        self.state = "sent"
        return msg

    def process_init(self, message: bytes, now: int, *, not_after: int | None = None) -> bytes:
        """Responder: read message 1, answer with message 2.  The outcome says whether versions
        are compatible; an incompatible answer is still returned so the peer learns why.

        ``not_after``: the greatest initiation timestamp already accepted from this peer; an
        initiation not newer than it is a replay (HandshakeError)."""
        self._check(now, _RESPONDER)
        self.monitor.on_receive(_INITIATOR, "HandshakeInit")
        try:
            remote = self._hs.read_message(message, not_after=not_after)
        except (HandshakeError, ProtocolError) as exc:
            self._fail(exc)
        self.peer = self._hs.peer
        self.outcome = evaluate(self._offer, remote)
        self.monitor.on_send(_INITIATOR, "HandshakeComplete")
        response = self._hs.write_message()
        self.state = "done"
        return response

    def process_response(self, message: bytes, now: int) -> None:
        """Initiator: read message 2; the handshake is then complete."""
        self._check(now, _INITIATOR)
        self.monitor.on_receive(_RESPONDER, "HandshakeComplete")
        try:
            remote = self._hs.read_message(message)
        except (HandshakeError, ProtocolError) as exc:
            self._fail(exc)
        self.outcome = evaluate(self._offer, remote)
        self.state = "done"

    @property
    def complete(self) -> bool:
        return self.state == "done"

    @property
    def remote_timestamp(self) -> int:
        """The peer's offer timestamp (after its message was read)."""
        remote = self._hs.remote_offer
        return remote.timestamp if remote is not None else 0

    @property
    def channel_id(self) -> bytes:
        cid = self._channel_id
        if cid is None:
            cid = self._channel_id = self._hs.channel_id_bytes
        return cid

    def build_channel(self, now: int) -> SecureChannel:
        """The channel of a completed, version-compatible handshake (VersionError otherwise)."""
        if self.state != "done" or self.peer is None:
            raise UsageError("build_channel before the handshake completed")
        if isinstance(self.outcome, Incompatible):
            raise VersionError(f"incompatible peer (version {self.outcome.peer_version}): "
                               f"{self.outcome.reason}")
        assert isinstance(self.outcome, Compatible)
        session = self._hs.stream_session(now=now / 1000.0)
        # positional: channel_id, context_id, local, remote, epoch, state, agreement_mode,
        # reversion_risk, needs_rotation, bytes_sent, bytes_received, initiator, peer_identity,
        # negotiated, _session
        return SecureChannel(self.channel_id, self.context_id, self.identity.authority_id,
                             self.peer.authority_id, self.epoch, ChannelState.ACTIVE,
                             AgreementMode.A1, True, False, 0, 0, self.role == _INITIATOR,
                             self.peer, self.outcome, session)


@dataclass(eq=False, slots=True)
class SecureChannel:
    """An established channel (seed 001 §9.1)."""

    channel_id: bytes
    context_id: ContextId
    local: AuthorityId
    remote: AuthorityId
    epoch: int
    state: ChannelState = ChannelState.ESTABLISHING
    agreement_mode: AgreementMode = AgreementMode.A1
    reversion_risk: bool = True
    needs_rotation: bool = False
    bytes_sent: int = 0
    bytes_received: int = 0
    initiator: bool = False
    peer_identity: PublicIdentity | None = field(default=None, repr=False)
    negotiated: Compatible | None = None
    _session: StreamSession | None = field(default=None, repr=False)

    @property
    def is_active(self) -> bool:
        return self.state in (ChannelState.ACTIVE, ChannelState.ROTATING) and self._session is not None

    @property
    def provisional(self) -> bool:
        """True until commit evidence (A3) is merged (seed 001 §1.1)."""
        return self.agreement_mode is not AgreementMode.A3

    def needs_epoch_rotation(self, current_epoch: int) -> bool:
        return self.epoch < current_epoch

    def _live(self) -> StreamSession:
        if not self.is_active or self._session is None:
            raise UsageError(f"channel is {self.state.value}")
        return self._session

    def seal(self, payload: bytes, now: int) -> bytes:
        """Encrypt one frame for the peer (stream framing of the Noise binding)."""
        frame = self._live().seal(payload, now / 1000.0)
        self.bytes_sent += len(frame)
        return frame

    def open(self, frame: bytes, now: int) -> bytes:
        """Decrypt one frame; a frame of another epoch or a forged one raises DecryptError and
        changes nothing."""
        try:
            plain = self._live().open(frame, now / 1000.0)
        except DecryptError:
            raise DecryptError("frame does not authenticate under this channel's epoch keys") from None
        self.bytes_received += len(frame)
        return plain

    def check_receipt(self, receipt: object) -> None:
        """Accept a receipt of this channel's peer for this context and epoch only.

        ``receipt`` is an :class:`aura_core.receipts.Receipt`; old-epoch receipts cannot be
        replayed into a rotated channel (seed 002 §8 "Re-keying on epoch change").
        """
        from ..receipts import Receipt

        if not isinstance(receipt, Receipt):
            raise ReceiptError("not a receipt")
        if receipt.ctx != self.context_id or receipt.src != self.remote or receipt.dst != self.local:
            raise ReceiptError("receipt is not for this channel")
        if receipt.epoch != self.epoch:
            raise ReceiptError("receipt from another epoch")
        if self.peer_identity is None:
            raise ReceiptError("peer key unknown")
        try:
            receipt.verify(self.peer_identity)
        except SignatureError:
            raise ReceiptError("receipt signature invalid") from None

    def mark_soft_safe(self) -> None:
        if self.agreement_mode is AgreementMode.A1:
            self.agreement_mode = AgreementMode.A2

    def finalize(self) -> None:
        self.agreement_mode = AgreementMode.A3
        self.reversion_risk = False

    def close(self, state: ChannelState = ChannelState.CLOSED) -> None:
        if self._session is not None:
            self._session.expire()  # wipes the transport keys
        self._session = None
        self.state = state
        self.needs_rotation = False


class ChannelManager:
    """Channels keyed by (context, peer), at most one each (seed 001 §9.2)."""

    def __init__(self) -> None:
        self._by_peer: dict[tuple[ContextId, AuthorityId], SecureChannel] = {}
        self._by_id: dict[bytes, SecureChannel] = {}
        self._epochs: dict[ContextId, int] = {}

    def __len__(self) -> int:
        return len(self._by_peer)

    def __iter__(self) -> Iterator[SecureChannel]:
        return iter(list(self._by_peer.values()))

    def current_epoch(self, context: ContextId) -> int:
        return self._epochs.get(context, 0)

    def register(self, channel: SecureChannel) -> SecureChannel | None:
        """Add ``channel``; it replaces (and closes) the previous channel with that peer.

        A channel of an epoch older than the context's current one is refused (UsageError):
        it is exactly what rotation must get rid of.  Returns the replaced channel, if any.
        """
        ctx, epoch = channel.context_id, channel.epoch
        current = self._epochs.get(ctx, 0)
        if epoch < current:
            channel.close(ChannelState.ERROR)
            raise ProtocolError("channel of an old epoch")
        key = (ctx, channel.remote)
        old = self._by_peer.get(key)
        if old is not None:
            if old.epoch > epoch:
                channel.close(ChannelState.ERROR)
                raise ProtocolError("a newer-epoch channel with this peer exists")
            if old is not channel:
                self._by_id.pop(old.channel_id, None)
                old.close()
        self._by_peer[key] = channel
        self._by_id[channel.channel_id] = channel
        if epoch > current:
            self._epochs[ctx] = epoch
        return old

    def find_by_context_peer(self, context: ContextId, peer: AuthorityId) -> SecureChannel | None:
        return self._by_peer.get((context, peer))

    def get(self, channel_id: bytes) -> SecureChannel | None:
        return self._by_id.get(bytes(channel_id))

    def advance_epoch(self, context: ContextId, new_epoch: int) -> list[SecureChannel]:
        """Enter ``new_epoch`` for ``context``: its older channels must re-handshake.

        Returns the channels to rotate.  They stay usable (``Rotating``) until their
        replacement registers, so traffic does not stop during rotation.
        """
        if new_epoch <= self.current_epoch(context):
            return []
        self._epochs[context] = new_epoch
        out = []
        for (ctx, _), ch in self._by_peer.items():
            if ctx == context and ch.needs_epoch_rotation(new_epoch):
                ch.needs_rotation = True
                ch.state = ChannelState.ROTATING
                out.append(ch)
        return out

    def merge_convergence(self, channel_id: bytes) -> bool:
        """A2 evidence for a channel was merged; True if the channel is known."""
        ch = self.get(channel_id)
        if ch is not None:
            ch.mark_soft_safe()
        return ch is not None

    def merge_commit(self, context: ContextId, channel_id: bytes, epoch: int) -> bool:
        """A3 commit evidence for (context, channel, epoch) was merged; True if it applied."""
        ch = self.get(channel_id)
        if ch is None or ch.context_id != context or ch.epoch != epoch:
            return False
        ch.finalize()
        return True

    def close(self, context: ContextId, peer: AuthorityId) -> SecureChannel | None:
        ch = self._by_peer.pop((context, peer), None)
        if ch is not None:
            self._by_id.pop(ch.channel_id, None)
            ch.close()
        return ch

    def close_context(self, context: ContextId) -> list[SecureChannel]:
        return [ch for (ctx, peer) in list(self._by_peer) if ctx == context
                for ch in [self.close(ctx, peer)] if ch is not None]
