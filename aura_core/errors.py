"""The one exception tree of aura_core.

Everything the package raises on purpose derives from :class:`AuraError`.  Builtin mix-ins are
used only where idiom expects them: ``ValueError`` for bad input, ``RuntimeError`` for misuse of
an API (calling in the wrong state), ``ImportError`` for a missing native library.  Errors that
correspond to something on the wire carry its code or position.

::

    AuraError
    ├── LibraryError (ImportError)          compiled module or libsodium symbol missing
    ├── UsageError (RuntimeError)           API called in a state that does not allow it
    ├── InvalidValue (ValueError)           a malformed argument
    │   ├── IdError                         AuthorityId / ContextId text or bytes
    │   └── KeyFormatError                  key material of the wrong size or form
    ├── CryptoError
    │   ├── HandshakeError                  Noise handshake message rejected
    │   ├── DecryptError                    AEAD open failed (tampered, wrong key)
    │   ├── ReplayError                     counter already seen or outside the window
    │   ├── SignatureError (.index)         Ed25519 signature invalid
    │   └── SessionExpired                  transport keys past REJECT_AFTER_* limits
    ├── CodecError (ValueError)
    │   ├── DecodeError (.offset)           bytes that are not canonical DAG-CBOR / a frame
    │   │   ├── TruncatedError              input ended early
    │   │   ├── NonCanonicalError           valid CBOR, but not the one canonical form
    │   │   └── UnsupportedError            CBOR outside the DAG-CBOR data model
    │   ├── EncodeError (.path)             value outside the data model
    │   └── CIDError                        malformed CID / multihash / multibase
    ├── ReceiptError
    │   └── ChainError (.index)             broken prev link, nonce order, epoch, cost sum
    ├── BudgetError
    │   ├── FlowBudgetExceeded              charge would exceed the flow budget
    │   └── LeakageBudgetExceeded           annotation would exceed the leakage budget
    ├── AuthorizationError                  capability check failed (generic message)
    ├── ProtocolError (.code)               peer or role broke the protocol / choreography
    │   └── VersionError                    no common protocol version
    ├── DescriptorError                     rendezvous descriptor invalid, expired, forged
    ├── JournalError                        fact store failure (storage, validation)
    ├── SyncError (.phase, .peer)           anti-entropy round failed
    └── TransportError                      network path failed (STUN, punch, relay, QUIC)
        └── StunError

Peer faults on a receive path are dropped and counted where the protocol demands silence; an
exception reaching the caller means the caller's input or call was wrong.
"""

from __future__ import annotations

__all__ = [
    "AuraError",
    "LibraryError",
    "UsageError",
    "InvalidValue",
    "IdError",
    "KeyFormatError",
    "CryptoError",
    "HandshakeError",
    "DecryptError",
    "ReplayError",
    "SignatureError",
    "SessionExpired",
    "CodecError",
    "DecodeError",
    "TruncatedError",
    "NonCanonicalError",
    "UnsupportedError",
    "EncodeError",
    "CIDError",
    "ReceiptError",
    "ChainError",
    "BudgetError",
    "FlowBudgetExceeded",
    "LeakageBudgetExceeded",
    "AuthorizationError",
    "ProtocolError",
    "VersionError",
    "DescriptorError",
    "JournalError",
    "SyncError",
    "TransportError",
    "StunError",
]


class AuraError(Exception):
    """Root of every exception aura_core raises on purpose."""


class LibraryError(AuraError, ImportError):
    """A compiled module or a libsodium symbol it needs is missing."""


class UsageError(AuraError, RuntimeError):
    """The API was called in a state that does not allow the call."""


class InvalidValue(AuraError, ValueError):
    """An argument is malformed."""


class IdError(InvalidValue):
    """An AuthorityId / ContextId is malformed."""


class KeyFormatError(InvalidValue):
    """Key material has the wrong size or form."""


class CryptoError(AuraError):
    """A cryptographic check failed."""


class HandshakeError(CryptoError):
    """A Noise handshake message was rejected; the handshake cannot continue."""


class DecryptError(CryptoError):
    """Authenticated decryption failed; the cipher state is unchanged."""


class ReplayError(CryptoError):
    """A transport counter was already seen or is outside the replay window."""


class SignatureError(CryptoError):
    """An Ed25519 signature is invalid.  ``index`` names the item in a batch, if any."""

    def __init__(self, message: str, index: int | None = None) -> None:
        super().__init__(message)
        self.index = index


class SessionExpired(CryptoError):
    """Transport keys are past REJECT_AFTER_MESSAGES / REJECT_AFTER_TIME; re-handshake."""


class CodecError(AuraError, ValueError):
    """Encoding or decoding failed."""


class DecodeError(CodecError):
    """Bytes are not a valid encoding.  ``offset`` is the byte where the problem was found."""

    def __init__(self, message: str, offset: int | None = None) -> None:
        super().__init__(message if offset is None else f"{message} at byte {offset}")
        self.offset = offset


class TruncatedError(DecodeError):
    """The input ended before the value did."""


class NonCanonicalError(DecodeError):
    """Valid CBOR, but not the single canonical DAG-CBOR form."""


class UnsupportedError(DecodeError):
    """CBOR outside the DAG-CBOR data model (other tags, undefined, simple values, ...)."""


class EncodeError(CodecError):
    """A value is outside the data model.  ``path`` locates it inside the encoded object."""

    def __init__(self, message: str, path: str = "") -> None:
        super().__init__(f"{message} at {path or '<root>'}")
        self.path = path


class CIDError(CodecError):
    """A CID, multihash or multibase string is malformed."""


class ReceiptError(AuraError):
    """A receipt is malformed or does not verify."""


class ChainError(ReceiptError):
    """A receipt chain is broken.  ``index`` is the first bad receipt."""

    def __init__(self, message: str, index: int | None = None) -> None:
        super().__init__(message if index is None else f"receipt {index}: {message}")
        self.index = index


class BudgetError(AuraError):
    """A budget does not allow the operation."""


class FlowBudgetExceeded(BudgetError):
    """Charging would exceed the flow budget (or no budget exists: zero headroom)."""


class LeakageBudgetExceeded(BudgetError):
    """Recording the leakage annotation would exceed the leakage budget."""


class AuthorizationError(AuraError):
    """A capability check failed.  The message is generic on purpose (seed 002 §8.4)."""

    def __init__(self, message: str = "authorization failed") -> None:
        super().__init__(message)


class ProtocolError(AuraError):
    """A peer or a role broke the protocol.  ``code`` is the wire code, if one applies."""

    def __init__(self, message: str, code: int | None = None) -> None:
        super().__init__(message)
        self.code = code


class VersionError(ProtocolError):
    """The two sides share no protocol version."""


class DescriptorError(AuraError):
    """A rendezvous descriptor is invalid, expired, forged or from another context."""


class JournalError(AuraError):
    """The fact journal could not store or validate a fact."""


class SyncError(AuraError):
    """An anti-entropy round failed; ``phase`` and ``peer`` attribute it."""

    def __init__(self, message: str, phase: object = None, peer: object = None) -> None:
        super().__init__(message)
        self.phase = phase
        self.peer = peer


class TransportError(AuraError):
    """A network path failed (STUN, punch, relay, QUIC, WebSocket)."""


class StunError(TransportError):
    """A STUN transaction failed or a STUN message is malformed."""
