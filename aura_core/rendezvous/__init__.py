"""Rendezvous (seed 001): descriptors as journal facts, the RendezvousService, secure channels.

Sans-I/O: every operation takes ``now`` (milliseconds since the Unix epoch) and, where it needs
randomness, ``rand``; the caller executes the returned effect commands.
"""

from __future__ import annotations

from .channel import AgreementMode, ChannelManager, ChannelState, Handshaker, SecureChannel
from .descriptor import (
    EstablishPath,
    LinkEndpoint,
    LinkProtocol,
    MovePath,
    QuicDirect,
    QuicReflexive,
    RendezvousDescriptor,
    Route,
    ServiceDescriptor,
    ServiceDescriptorHeader,
    ServiceKind,
    TcpDirect,
    TransportHint,
    WebSocketDirect,
    WebSocketRelay,
    build_descriptor,
    open_descriptor,
    psk_commitment,
    revoke_descriptor,
    seal_descriptor,
    verify_revocation,
)
from .facts import RendezvousFact
from .negotiate import Compatible, Incompatible, make_offer
from .service import (
    CAP_RENDEZVOUS_CONNECT,
    CAP_RENDEZVOUS_PUBLISH,
    CAP_RENDEZVOUS_RELAY,
    CONNECT_DIRECT_COST,
    CONNECT_RELAY_COST,
    DESCRIPTOR_PUBLISH_COST,
    RendezvousConfig,
    RendezvousService,
)

__all__ = [
    "AgreementMode",
    "CAP_RENDEZVOUS_CONNECT",
    "CAP_RENDEZVOUS_PUBLISH",
    "CAP_RENDEZVOUS_RELAY",
    "CONNECT_DIRECT_COST",
    "CONNECT_RELAY_COST",
    "ChannelManager",
    "ChannelState",
    "Compatible",
    "DESCRIPTOR_PUBLISH_COST",
    "Handshaker",
    "Incompatible",
    "RendezvousConfig",
    "RendezvousService",
    "SecureChannel",
    "make_offer",
    "EstablishPath",
    "LinkEndpoint",
    "LinkProtocol",
    "MovePath",
    "QuicDirect",
    "QuicReflexive",
    "RendezvousDescriptor",
    "RendezvousFact",
    "Route",
    "ServiceDescriptor",
    "ServiceDescriptorHeader",
    "ServiceKind",
    "TcpDirect",
    "TransportHint",
    "WebSocketDirect",
    "WebSocketRelay",
    "build_descriptor",
    "open_descriptor",
    "psk_commitment",
    "revoke_descriptor",
    "seal_descriptor",
    "verify_revocation",
]
