"""AuraHandshake: IKpsk2 between two authorities of a context epoch, with the Aura binding.

Ties identities (Ed25519 -> X25519 static keys), the context key (PSK), the prologue, the
offer/answer payloads and the channel id together, so callers above (rendezvous) never touch
raw Noise keys.  The responder learns who is calling only from message 1 (IK hides the
initiator until then): ``resolve`` maps the initiator's X25519 static key to a known
:class:`PublicIdentity` (or None: unknown peer -> HandshakeError, as if the message were bad).
:class:`HandshakeKeys` holds what every handshake of one identity in one context shares (the
X25519 static secret, prologues, PSKs per (epoch, peer)) so a long-lived caller computes them once.
"""

from __future__ import annotations

from collections.abc import Callable

from .._noise import DatagramSession, HandshakeState, StreamSession
from ..errors import HandshakeError, ProtocolError, UsageError
from ..hashing import ContextKey, Hash32
from ..keys import IdentityKey, PublicIdentity
from .binding import (
    ROLE_ANSWER,
    ROLE_OFFER,
    Negotiated,
    Offer,
    aura_prologue,
    channel_id,
    channel_id_bytes,
    negotiate,
)

__all__ = ["AuraHandshake", "HandshakeKeys"]

DEFAULT_PROTOCOL = "Noise_IKpsk2_25519_ChaChaPoly_BLAKE2s"


class HandshakeKeys:
    """The handshake inputs of one identity in one context, computed once and reused.

    The X25519 static secret (an Ed25519 -> X25519 conversion), the prologue per epoch and the
    PSK per (epoch, peer) are the same for every handshake of that identity in that context, so
    a long-lived holder (the rendezvous service, next to the identity and context key it already
    holds) keeps one of these per context instead of recomputing them per handshake.  PSKs are
    keyed by (epoch, peer authority id) under this object's own (context key, context), so a
    different epoch, context or peer never reuses one; :meth:`forget` drops them (epoch change,
    leaving the context).  ``repr`` shows no secret.
    """

    __slots__ = ("identity", "context_key", "context", "_local", "_s", "_prologues", "_psks")

    MAX_PSKS = 4096  # peers x epochs kept; cleared wholesale beyond (recomputing is cheap)

    def __init__(self, identity: IdentityKey, context_key: ContextKey, context: bytes) -> None:
        self.identity = identity
        self.context_key = context_key
        self.context = bytes(context)
        self._local = bytes(identity.authority_id)
        self._s: bytes | None = None
        self._prologues: dict[int, bytes] = {}
        self._psks: dict[tuple[int, bytes], bytes] = {}
        aura_prologue(self.context, 0)  # validates the context id now rather than mid-handshake

    def __repr__(self) -> str:
        return f"HandshakeKeys({self.identity.authority_id}, context={self.context.hex()}, secrets=<hidden>)"

    def static_secret(self) -> bytes:
        s = self._s
        if s is None:
            s = self._s = self.identity.x25519_secret()
        return s

    def prologue(self, epoch: int) -> bytes:
        p = self._prologues.get(epoch)
        if p is None:
            if len(self._prologues) > 64:
                self._prologues.clear()
            p = self._prologues[epoch] = aura_prologue(self.context, epoch)
        return p

    def psk(self, epoch: int, peer: bytes) -> bytes:
        """The PSK of (this context, ``epoch``, {us, ``peer``}) (``peer``: an authority id)."""
        key = (epoch, peer)
        psk = self._psks.get(key)
        if psk is None:
            if len(self._psks) >= self.MAX_PSKS:
                self._psks.clear()
            psk = self._psks[key] = self.context_key.handshake_psk(self.context, epoch,
                                                                  self._local, bytes(peer))
        return psk

    def forget(self, before_epoch: int | None = None) -> None:
        """Drop cached PSKs (all, or those of epochs below ``before_epoch``)."""
        if before_epoch is None:
            self._psks.clear()
            self._prologues.clear()
            return
        for k in [k for k in self._psks if k[0] < before_epoch]:
            del self._psks[k]
        for e in [e for e in self._prologues if e < before_epoch]:
            del self._prologues[e]

    def initiator(self, peer: PublicIdentity, epoch: int, offer: Offer, *,
                  protocol: str = DEFAULT_PROTOCOL, e: bytes | None = None) -> AuraHandshake:
        """An initiator handshake to ``peer`` at ``epoch`` (see :meth:`AuraHandshake.initiator`)."""
        if offer.epoch != epoch:
            raise UsageError("the offer must name the handshake's epoch")
        hs = HandshakeState.initiator(protocol, self.prologue(epoch), self.static_secret(),
                                      peer.x25519, self.psk(epoch, bytes(peer.authority_id)), e=e)
        return AuraHandshake(hs, self, epoch, offer, peer, None)

    def responder(self, epoch: int, offer: Offer, resolve: Callable[[bytes], PublicIdentity | None],
                  *, protocol: str = DEFAULT_PROTOCOL, e: bytes | None = None) -> AuraHandshake:
        """A responder handshake at ``epoch`` (see :meth:`AuraHandshake.responder`)."""
        if offer.epoch != epoch:
            raise UsageError("the offer must name the handshake's epoch")
        hs = HandshakeState.responder(protocol, self.prologue(epoch), self.static_secret(), None,
                                      e=e)
        return AuraHandshake(hs, self, epoch, offer, None, resolve)


class AuraHandshake:
    """One Aura channel handshake (initiator or responder)."""

    __slots__ = ("hs", "_keys", "epoch", "offer", "peer", "_resolve", "remote_offer", "_initiator")

    def __init__(self, hs: HandshakeState, keys: HandshakeKeys, epoch: int, offer: Offer,
                 peer: PublicIdentity | None,
                 resolve: Callable[[bytes], PublicIdentity | None] | None) -> None:
        if offer.epoch != epoch:
            raise UsageError("the offer must name the handshake's epoch")
        self.hs = hs
        self._keys = keys
        self.epoch = epoch
        self.offer = offer
        self.peer = peer
        self._resolve = resolve
        self.remote_offer: Offer | None = None
        self._initiator = bool(hs.initiator_role)

    @classmethod
    def initiator(cls, identity: IdentityKey, peer: PublicIdentity, context_key: ContextKey,
                  context: bytes, epoch: int, offer: Offer, *, protocol: str = DEFAULT_PROTOCOL,
                  e: bytes | None = None) -> AuraHandshake:
        """One-off initiator; many handshakes of one identity in one context should share a
        :class:`HandshakeKeys` and call its ``initiator``."""
        return HandshakeKeys(identity, context_key, context).initiator(peer, epoch, offer,
                                                                       protocol=protocol, e=e)

    @classmethod
    def responder(cls, identity: IdentityKey, context_key: ContextKey, context: bytes, epoch: int,
                  offer: Offer, resolve: Callable[[bytes], PublicIdentity | None], *,
                  protocol: str = DEFAULT_PROTOCOL, e: bytes | None = None) -> AuraHandshake:
        return HandshakeKeys(identity, context_key, context).responder(epoch, offer, resolve,
                                                                       protocol=protocol, e=e)

    def write_message(self) -> bytes:
        """Message 1 (initiator: offer) or message 2 (responder: answer)."""
        offer = self.offer
        if self._initiator:
            return self.hs.write_message(offer.encode())
        return self.hs.write_message(offer.encode_as(ROLE_ANSWER))

    def read_message(self, message: bytes, *, not_after: int | None = None) -> Offer:
        """Read the peer's message; returns its offer (raises HandshakeError / ProtocolError).

        Responder: ``not_after`` is the greatest initiation timestamp already accepted from the
        peer (the caller keeps it per peer); an initiation whose timestamp is not above it is a
        replay and raises HandshakeError.  Check :attr:`peer` to know whose record to use: pass
        ``not_after`` as a callable of the peer's PublicIdentity if it depends on the peer.
        """
        hs = self.hs
        initiator = self._initiator
        payload = hs.read_message(message)
        if not initiator:
            rs = hs.remote_static
            peer = self._resolve(rs) if self._resolve is not None and rs is not None else None
            if peer is None or peer.x25519 != rs:
                raise HandshakeError("unknown initiator static key")
            self.peer = peer
            hs.set_psk(self._keys.psk(self.epoch, bytes(peer.authority_id)))
        try:
            remote = Offer.decode(payload)
        except ValueError as exc:
            raise ProtocolError(f"bad handshake offer: {exc}") from None
        expected = ROLE_ANSWER if initiator else ROLE_OFFER
        if remote.role != expected or remote.epoch != self.epoch:
            raise ProtocolError("handshake offer has the wrong role or epoch")
        if not initiator and not_after is not None and remote.timestamp <= not_after:
            raise HandshakeError("replayed initiation (timestamp not newer than the last one)")
        self.remote_offer = remote
        return remote

    @property
    def complete(self) -> bool:
        return bool(self.hs.complete)

    @property
    def handshake_hash(self) -> bytes:
        return bytes(self.hs.handshake_hash)

    @property
    def channel_id(self) -> Hash32:
        if not self.complete:
            raise UsageError("channel id before the handshake is complete")
        return channel_id(self.hs.handshake_hash)

    @property
    def channel_id_bytes(self) -> bytes:
        """:attr:`channel_id` as its 32 digest bytes."""
        if not self.hs.complete:
            raise UsageError("channel id before the handshake is complete")
        return channel_id_bytes(self.hs.handshake_hash)

    @property
    def negotiated(self) -> Negotiated:
        """min version and shared capabilities (VersionError if incompatible)."""
        if self.remote_offer is None:
            raise UsageError("no peer offer yet")
        return negotiate(self.offer, self.remote_offer)

    def datagram_session(self, local_index: int, remote_index: int, *, padding: int = 0,
                         backend: str = "auto", now: float = 0.0) -> DatagramSession:
        return DatagramSession.from_handshake(self.hs, local_index, remote_index, padding=padding,
                                              backend=backend, now=now, epoch=self.epoch)

    def stream_session(self, *, padding: int = 0, backend: str = "auto",
                       now: float = 0.0) -> StreamSession:
        return StreamSession.from_handshake(self.hs, padding=padding, backend=backend, now=now,
                                            epoch=self.epoch)
