"""AuthorityId and ContextId: 16-byte identifiers with the reference implementation's text form.

``authority-<uuid>`` / ``context-<uuid>`` (lowercase, hyphenated) on display; parsing accepts the
prefix or the bare UUID.  An AuthorityId is self-certifying: the first 16 bytes of
Hash32("aura.authority.1", ed25519_public_key) (docs/wire.md §2.2).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import ClassVar, TypeVar

from .errors import IdError
from .hashing import Tag, hash32

__all__ = ["AuthorityId", "ContextId", "ID_LEN"]

ID_LEN = 16
_T = TypeVar("_T", bound="_Id16")


class _Id16:
    """A 16-byte identifier: immutable, ordered by bytes, hashable."""

    __slots__ = ("_raw", "_hash")
    PREFIX: ClassVar[str]

    def __init__(self, raw: bytes | bytearray | memoryview) -> None:
        raw = bytes(raw)
        if len(raw) != ID_LEN:
            raise IdError(f"{type(self).__name__} is {ID_LEN} bytes, got {len(raw)}")
        object.__setattr__(self, "_raw", raw)
        # ids key many dicts on hot paths: hash once
        object.__setattr__(self, "_hash", hash((self.PREFIX, raw)))

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable")

    @classmethod
    def parse(cls: type[_T], text: str) -> _T:
        """Parse ``<prefix>-<uuid>`` or a bare UUID (any case)."""
        if not isinstance(text, str):
            raise IdError(f"{cls.__name__} text must be str")
        body = text.strip()
        head = cls.PREFIX + "-"
        if body.lower().startswith(head):
            body = body[len(head):]
        try:
            return cls(uuid.UUID(body).bytes)
        except ValueError:
            raise IdError(f"not a {cls.__name__}: {text!r}") from None

    @classmethod
    def random(cls: type[_T], rand: Callable[[int], bytes] | None = None) -> _T:
        """A fresh random id (``rand`` defaults to the package CSPRNG)."""
        if rand is None:
            from ._sodium import random_bytes as rand
        return cls(rand(ID_LEN))

    def __bytes__(self) -> bytes:
        return self._raw

    @property
    def uuid(self) -> uuid.UUID:
        return uuid.UUID(bytes=self._raw)

    def __str__(self) -> str:
        return f"{self.PREFIX}-{uuid.UUID(bytes=self._raw)}"

    def __repr__(self) -> str:
        return f"{type(self).__name__}('{self}')"

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return self._raw == other._raw  # type: ignore[attr-defined]

    def __lt__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return self._raw < other._raw  # type: ignore[attr-defined]

    def __le__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return self._raw <= other._raw  # type: ignore[attr-defined]

    def __gt__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return self._raw > other._raw  # type: ignore[attr-defined]

    def __ge__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return self._raw >= other._raw  # type: ignore[attr-defined]

    def __hash__(self) -> int:
        return self._hash  # type: ignore[no-any-return]

    def __reduce__(self) -> tuple[type, tuple[bytes]]:
        return (type(self), (self._raw,))


class AuthorityId(_Id16):
    """Identity of an authority, derived from its Ed25519 public key."""

    __slots__ = ()
    PREFIX = "authority"

    @classmethod
    def from_public_key(cls, ed25519_public: bytes) -> AuthorityId:
        if len(ed25519_public) != 32:
            raise IdError("an Ed25519 public key is 32 bytes")
        return cls(hash32(Tag.AUTHORITY, bytes(ed25519_public)).digest[:ID_LEN])


class ContextId(_Id16):
    """Identity of a relational context (random, or derived by the caller)."""

    __slots__ = ()
    PREFIX = "context"
