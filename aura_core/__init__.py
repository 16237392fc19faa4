"""aura_core: the protocol core of Aura's peer rendezvous and secure channels.

Compiled modules are mandatory: importing the package loads libsodium once (aura_core._sodium)
and fails with :class:`~aura_core.errors.LibraryError` if it cannot.
"""

from __future__ import annotations

from . import _sodium  # noqa: F401  (loads libsodium; fails loudly if it cannot)
from .errors import (
    AuraError,
    LibraryError,
    UsageError,
    InvalidValue,
    IdError,
    KeyFormatError,
    CryptoError,
    HandshakeError,
    DecryptError,
    ReplayError,
    SignatureError,
    SessionExpired,
    CodecError,
    DecodeError,
    TruncatedError,
    NonCanonicalError,
    UnsupportedError,
    EncodeError,
    CIDError,
    ReceiptError,
    ChainError,
    BudgetError,
    FlowBudgetExceeded,
    LeakageBudgetExceeded,
    AuthorizationError,
    ProtocolError,
    VersionError,
    DescriptorError,
    JournalError,
    SyncError,
    TransportError,
    StunError,
)
from .cid import CID
from .hashing import ContextKey, Hash32, hash32, kdf
from .ids import AuthorityId, ContextId
from .keys import IdentityKey, PublicIdentity
from .flow import FlowAccount, FlowBudget, FlowLedger, Reservation
from .receipts import (
    ChainHead,
    ChainSummary,
    ForwardAggregator,
    Receipt,
    ReceiptChain,
    ReceiptIssuer,
    verify_chain,
)

__version__ = "0.1.0"

__all__ = [
    "__version__",
    "AuthorityId",
    "CID",
    "ContextId",
    "ContextKey",
    "Hash32",
    "IdentityKey",
    "PublicIdentity",
    "hash32",
    "kdf",
    "FlowAccount",
    "FlowBudget",
    "FlowLedger",
    "Reservation",
    "ChainHead",
    "ChainSummary",
    "ForwardAggregator",
    "Receipt",
    "ReceiptChain",
    "ReceiptIssuer",
    "verify_chain",
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
