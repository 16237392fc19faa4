"""Hash32 and the context-key KDF (SPEC §2; byte-level definition in docs/wire.md §2).

Hash32 is BLAKE2b-256 with a 16-byte personalization as the domain tag.  The KDF is keyed
BLAKE2b-256 (a PRF) under the 32-byte context key, personalized ``aura.kdf.v1``, over a label
and its info bytes.  hashlib's BLAKE2b is libsodium's BLAKE2b with the same parameter block,
so the C code (crypto_generichash_blake2b_salt_personal) and this module agree byte for byte.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from typing import Final

from .errors import InvalidValue, KeyFormatError

__all__ = [
    "HASH32_LEN",
    "Hash32",
    "hash32",
    "Tag",
    "kdf",
    "ContextKey",
]

HASH32_LEN: Final = 32


class Tag:
    """Domain tags (BLAKE2b personalization, exactly 16 ASCII bytes, NUL-padded)."""

    AUTHORITY: Final = b"aura.authority.1"
    KDF: Final = b"aura.kdf.v1"
    CHANNEL: Final = b"aura.channel.v1"
    RECEIPT: Final = b"aura.receipt.v1"
    COMMIT: Final = b"aura.commit.v1"
    DIGEST: Final = b"aura.digest.v1"
    FORWARD: Final = b"aura.forward.v1"


_PERSONAL: dict[bytes, bytes] = {}


def _personal(tag: bytes) -> bytes:
    padded = _PERSONAL.get(tag)
    if padded is None:
        if not isinstance(tag, bytes) or len(tag) > 16:
            raise InvalidValue("a domain tag is at most 16 bytes")
        padded = _PERSONAL[tag] = tag.ljust(16, b"\0")
    return padded


def hash32(tag: bytes, *parts: bytes) -> Hash32:
    """BLAKE2b-256 of the concatenated ``parts`` under domain ``tag``."""
    h = hashlib.blake2b(parts[0] if len(parts) == 1 else b"".join(parts),
                        digest_size=32, person=_personal(tag))
    out = object.__new__(Hash32)
    object.__setattr__(out, "digest", h.digest())  # 32 bytes by construction: skip the check
    return out


@dataclass(frozen=True, slots=True)
class Hash32:
    """A 32-byte domain-separated BLAKE2b-256 digest.  Equality is constant-time."""

    digest: bytes

    def __post_init__(self) -> None:
        if not isinstance(self.digest, bytes) or len(self.digest) != HASH32_LEN:
            raise InvalidValue("Hash32 is exactly 32 bytes")

    def __bytes__(self) -> bytes:
        return self.digest

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Hash32):
            return NotImplemented
        return hmac.compare_digest(self.digest, other.digest)

    def __hash__(self) -> int:
        return hash(self.digest)

    def __str__(self) -> str:
        return self.digest.hex()

    def __repr__(self) -> str:
        return f"Hash32({self.digest.hex()})"

    @classmethod
    def zero(cls) -> Hash32:
        return cls(bytes(32))


_KDF_PERSONAL: Final = Tag.KDF.ljust(16, b"\0")

# KDF labels (docs/wire.md §2.4).  The info layouts are fixed per label.
LABEL_DESCRIPTOR_KEY: Final = b"descriptor-key"
LABEL_HANDSHAKE_PSK: Final = b"handshake-psk"
LABEL_ROUTING_TAG: Final = b"routing-tag"
LABEL_PUNCH_KEY: Final = b"punch-key"


def kdf(key: bytes, label: bytes, info: bytes = b"", length: int = 32) -> bytes:
    """Keyed BLAKE2b: ``BLAKE2b(key=key, person="aura.kdf.v1", data=len(label)||label||info)``.

    The one-byte label length keeps (label, info) pairs unambiguous.
    """
    if len(key) != 32:
        raise KeyFormatError("KDF key must be 32 bytes")
    if not 1 <= len(label) <= 255:
        raise InvalidValue("KDF label must be 1..255 bytes")
    if not 16 <= length <= 64:
        raise InvalidValue("KDF output must be 16..64 bytes")
    return hashlib.blake2b(bytes((len(label),)) + label + info, digest_size=length, key=key,
                           person=_KDF_PERSONAL).digest()


class ContextKey:
    """The 32-byte secret shared by a relational context's participants (SPEC §2).

    Everything secret per context derives from it; none of it is computable from public
    identifiers alone.  The key never appears in ``repr``.
    """

    __slots__ = ("_key",)

    def __init__(self, key: bytes) -> None:
        if not isinstance(key, (bytes, bytearray)) or len(key) != 32:
            raise KeyFormatError("a context key is exactly 32 bytes")
        self._key = bytes(key)

    def __repr__(self) -> str:
        return "ContextKey(<secret>)"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ContextKey):
            return NotImplemented
        return hmac.compare_digest(self._key, other._key)

    def __hash__(self) -> int:
        return hash(kdf(self._key, b"hash-identity", b"", 16))

    def secret_bytes(self) -> bytes:
        """The raw key (for storage by the caller; handle with care)."""
        return self._key

    def descriptor_key(self, context: bytes) -> bytes:
        """AEAD key for rendezvous descriptor payloads of this context (info: context id)."""
        return kdf(self._key, LABEL_DESCRIPTOR_KEY, _id16(context))

    def handshake_psk(self, context: bytes, epoch: int, a: bytes, b: bytes) -> bytes:
        """Noise PSK for (context, epoch, unordered pair of authorities)."""
        lo, hi = sorted((_id16(a), _id16(b)))
        return kdf(self._key, LABEL_HANDSHAKE_PSK, _id16(context) + _u64(epoch) + lo + hi)

    def routing_tag(self, context: bytes, epoch: int, authority: bytes) -> bytes:
        """16-byte routing tag of an authority in a context epoch (opaque to relays)."""
        return kdf(self._key, LABEL_ROUTING_TAG, _id16(context) + _u64(epoch) + _id16(authority), 16)


def _id16(value: bytes) -> bytes:
    raw = bytes(value)
    if len(raw) != 16:
        raise InvalidValue("ids are 16 bytes")
    return raw


def _u64(n: int) -> bytes:
    if not 0 <= n < 1 << 64:
        raise InvalidValue("epoch is an unsigned 64-bit integer")
    return n.to_bytes(8, "big")
