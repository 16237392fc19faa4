"""AuraHandshake: IKpsk2 between two authorities of a context epoch, with the Aura binding.

Ties identities (Ed25519 -> X25519 static keys), the context key (PSK), the prologue, the
offer/answer payloads and the channel id together, so callers above (rendezvous) never touch
raw Noise keys.  The responder learns who is calling only from message 1 (IK hides the
initiator until then): ``resolve`` maps the initiator's X25519 static key to a known
:class:`PublicIdentity` (or None: unknown peer -> HandshakeError, as if the message were bad).
"""

from __future__ import annotations

from collections.abc import Callable

from .._noise import DatagramSession, HandshakeState, StreamSession
from ..errors import HandshakeError, ProtocolError, UsageError
from ..hashing import ContextKey, Hash32
from ..keys import IdentityKey, PublicIdentity
from .binding import ROLE_ANSWER, ROLE_OFFER, Negotiated, Offer, aura_prologue, channel_id, negotiate

__all__ = ["AuraHandshake"]

DEFAULT_PROTOCOL = "Noise_IKpsk2_25519_ChaChaPoly_BLAKE2s"


class AuraHandshake:
    """One Aura channel handshake (initiator or responder)."""

    def __init__(self, hs: HandshakeState, identity: IdentityKey, context_key: ContextKey,
                 context: bytes, epoch: int, offer: Offer, peer: PublicIdentity | None,
                 resolve: Callable[[bytes], PublicIdentity | None] | None) -> None:
        if offer.epoch != epoch:
            raise UsageError("the offer must name the handshake's epoch")
        self.hs = hs
        self._identity = identity
        self._ck = context_key
        self._context = bytes(context)
        self.epoch = epoch
        self.offer = offer
        self.peer = peer
        self._resolve = resolve
        self.remote_offer: Offer | None = None

    @classmethod
    def initiator(cls, identity: IdentityKey, peer: PublicIdentity, context_key: ContextKey,
                  context: bytes, epoch: int, offer: Offer, *, protocol: str = DEFAULT_PROTOCOL,
                  e: bytes | None = None) -> AuraHandshake:
        psk = context_key.handshake_psk(bytes(context), epoch, bytes(identity.authority_id),
                                        bytes(peer.authority_id))
        hs = HandshakeState.initiator(protocol, aura_prologue(context, epoch),
                                      identity.x25519_secret(), peer.x25519, psk, e=e)
        return cls(hs, identity, context_key, context, epoch, offer, peer, None)

    @classmethod
    def responder(cls, identity: IdentityKey, context_key: ContextKey, context: bytes, epoch: int,
                  offer: Offer, resolve: Callable[[bytes], PublicIdentity | None], *,
                  protocol: str = DEFAULT_PROTOCOL, e: bytes | None = None) -> AuraHandshake:
        hs = HandshakeState.responder(protocol, aura_prologue(context, epoch),
                                      identity.x25519_secret(), None, e=e)
        return cls(hs, identity, context_key, context, epoch, offer, None, resolve)

    def write_message(self) -> bytes:
        """Message 1 (initiator: offer) or message 2 (responder: answer)."""
        role = ROLE_OFFER if self.hs.initiator_role else ROLE_ANSWER
        offer = self.offer if role == ROLE_OFFER else self.offer.answer()
        return self.hs.write_message(offer.encode())

    def read_message(self, message: bytes, *, not_after: int | None = None) -> Offer:
        """Read the peer's message; returns its offer (raises HandshakeError / ProtocolError).

        Responder: ``not_after`` is the greatest initiation timestamp already accepted from the
        peer (the caller keeps it per peer); an initiation whose timestamp is not above it is a
        replay and raises HandshakeError.  Check :attr:`peer` to know whose record to use: pass
        ``not_after`` as a callable of the peer's PublicIdentity if it depends on the peer.
        """
        if not self.hs.initiator_role:
            payload = self.hs.read_message(message)
            rs = self.hs.remote_static
            peer = self._resolve(rs) if self._resolve is not None and rs is not None else None
            if peer is None or peer.x25519 != rs:
                raise HandshakeError("unknown initiator static key")
            self.peer = peer
            self.hs.set_psk(self._ck.handshake_psk(self._context, self.epoch,
                                                   bytes(self._identity.authority_id),
                                                   bytes(peer.authority_id)))
        else:
            payload = self.hs.read_message(message)
        try:
            remote = Offer.decode(payload)
        except ValueError as exc:
            raise ProtocolError(f"bad handshake offer: {exc}") from None
        expected = ROLE_ANSWER if self.hs.initiator_role else ROLE_OFFER
        if remote.role != expected or remote.epoch != self.epoch:
            raise ProtocolError("handshake offer has the wrong role or epoch")
        if not self.hs.initiator_role and not_after is not None and remote.timestamp <= not_after:
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
