"""Rendezvous (seed 001): descriptors as journal facts, the RendezvousService, secure channels.

Sans-I/O: every operation takes ``now`` (milliseconds since the Unix epoch) and, where it needs
randomness, ``rand``; the caller executes the returned effect commands.
"""

from __future__ import annotations

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

__all__ = [
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
