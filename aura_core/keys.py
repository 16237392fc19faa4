"""Identity keys: an authority's Ed25519 key pair and its X25519 conversion for Noise (SPEC §2).

One key signs receipts and descriptors and, converted with libsodium's
crypto_sign_ed25519_{pk,sk}_to_curve25519, is the Noise static key.  Secrets never appear in
``repr``; equality is constant-time.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable

from nacl import bindings as _nacl
from nacl.exceptions import BadSignatureError, CryptoError as _NaclCryptoError

from .errors import KeyFormatError, SignatureError
from .ids import AuthorityId

__all__ = ["IdentityKey", "PublicIdentity"]


class PublicIdentity:
    """An authority's Ed25519 public key, its AuthorityId and its X25519 (Noise) public key."""

    __slots__ = ("_pk", "_authority", "_x25519")

    def __init__(self, ed25519_public: bytes) -> None:
        pk = bytes(ed25519_public)
        if len(pk) != 32:
            raise KeyFormatError("an Ed25519 public key is 32 bytes")
        try:
            x = _nacl.crypto_sign_ed25519_pk_to_curve25519(pk)
        except _NaclCryptoError:
            raise KeyFormatError("not a valid Ed25519 public key") from None
        self._pk = pk
        self._x25519 = x
        self._authority = AuthorityId.from_public_key(pk)

    @property
    def ed25519(self) -> bytes:
        return self._pk

    @property
    def x25519(self) -> bytes:
        """The Noise static public key."""
        return self._x25519

    @property
    def authority_id(self) -> AuthorityId:
        return self._authority

    def verify(self, message: bytes, signature: bytes) -> None:
        """Raise :class:`SignatureError` unless ``signature`` is valid for ``message``."""
        if len(signature) != 64:
            raise SignatureError("an Ed25519 signature is 64 bytes")
        try:
            _nacl.crypto_sign_open(bytes(signature) + bytes(message), self._pk)
        except BadSignatureError:
            raise SignatureError("signature verification failed") from None

    def __bytes__(self) -> bytes:
        return self._pk

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, PublicIdentity):
            return NotImplemented
        return hmac.compare_digest(self._pk, other._pk)

    def __hash__(self) -> int:
        return hash(self._pk)

    def __repr__(self) -> str:
        return f"PublicIdentity({self._authority})"


class IdentityKey:
    """An authority's Ed25519 key pair (the secret stays inside; ``repr`` never shows it)."""

    __slots__ = ("_seed", "_sk", "_public")

    def __init__(self, seed: bytes) -> None:
        seed = bytes(seed)
        if len(seed) != 32:
            raise KeyFormatError("an Ed25519 seed is 32 bytes")
        pk, sk = _nacl.crypto_sign_seed_keypair(seed)
        self._seed = seed
        self._sk = sk
        self._public = PublicIdentity(pk)

    @classmethod
    def generate(cls, rand: Callable[[int], bytes] | None = None) -> IdentityKey:
        """A fresh key pair; ``rand`` defaults to libsodium's CSPRNG."""
        if rand is None:
            from ._sodium import random_bytes as rand
        return cls(rand(32))

    @classmethod
    def from_seed(cls, seed: bytes) -> IdentityKey:
        return cls(seed)

    @property
    def public(self) -> PublicIdentity:
        return self._public

    @property
    def authority_id(self) -> AuthorityId:
        return self._public.authority_id

    def seed_bytes(self) -> bytes:
        """The 32-byte seed (for storage by the caller; handle with care)."""
        return self._seed

    def ed25519_secret(self) -> bytes:
        """libsodium's 64-byte secret key (seed || public key), for compiled signers."""
        return self._sk

    def x25519_secret(self) -> bytes:
        """The Noise static private key (libsodium's clamped conversion)."""
        return _nacl.crypto_sign_ed25519_sk_to_curve25519(self._sk)

    def sign(self, message: bytes) -> bytes:
        """Detached Ed25519 signature (64 bytes)."""
        return _nacl.crypto_sign(bytes(message), self._sk)[:64]

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, IdentityKey):
            return NotImplemented
        return hmac.compare_digest(self._seed, other._seed)

    def __hash__(self) -> int:
        return hash(self._public)

    def __repr__(self) -> str:
        return f"IdentityKey({self.authority_id}, secret=<hidden>)"
