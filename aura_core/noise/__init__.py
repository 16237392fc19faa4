"""Noise IKpsk2 secure channels (SPEC §3.1): the public façade over ``aura_core._noise``.

In the Noise specification's own terms (rev 34)::

    hs = HandshakeState.initiator(PROTOCOL_BLAKE2S, prologue, s, rs, psk)
    msg1 = hs.write_message(payload)          # -> e, es, s, ss
    ...                                       # <- e, ee, se, psk
    c1, c2 = hs.split()                       # CipherState pair (c1: initiator -> responder)

Transport sessions built from a finished handshake: :class:`DatagramSession` (UDP: explicit
counter, 8192-bit replay window, silent counted drops via ``receive``) and
:class:`StreamSession` (length-prefixed frames, implicit counters).  The Aura binding — prologue,
PSK, channel id, the version/capability offer in the first payloads — is in
:mod:`aura_core.noise.binding`.  Byte layouts: docs/wire.md §3.
"""

from __future__ import annotations

from typing import Final

from .._noise import (
    DATAGRAM_HEADER,
    MAX_MESSAGE,
    MAX_PLAINTEXT,
    PROTOCOLS,
    REJECT_AFTER_MESSAGES,
    REJECT_AFTER_TIME,
    REKEY_AFTER_MESSAGES,
    REKEY_AFTER_TIME,
    STREAM_HEADER,
    CipherState,
    DatagramSession,
    HandshakeState,
    ReplayWindow,
    StreamSession,
    openssl_available,
    padded_len,
)
from .channel import AuraHandshake
from .binding import (
    CAPABILITIES,
    Negotiated,
    Offer,
    aura_prologue,
    aura_psk,
    channel_id,
    negotiate,
)

__all__ = [
    "PROTOCOL_BLAKE2S",
    "PROTOCOL_BLAKE2B",
    "PROTOCOLS",
    "MAX_MESSAGE",
    "MAX_PLAINTEXT",
    "DATAGRAM_HEADER",
    "STREAM_HEADER",
    "REKEY_AFTER_MESSAGES",
    "REJECT_AFTER_MESSAGES",
    "REKEY_AFTER_TIME",
    "REJECT_AFTER_TIME",
    "HandshakeState",
    "CipherState",
    "DatagramSession",
    "StreamSession",
    "ReplayWindow",
    "openssl_available",
    "padded_len",
    "CAPABILITIES",
    "Offer",
    "Negotiated",
    "negotiate",
    "aura_prologue",
    "aura_psk",
    "channel_id",
    "AuraHandshake",
]

PROTOCOL_BLAKE2S: Final = "Noise_IKpsk2_25519_ChaChaPoly_BLAKE2s"
PROTOCOL_BLAKE2B: Final = "Noise_IKpsk2_25519_ChaChaPoly_BLAKE2b"
