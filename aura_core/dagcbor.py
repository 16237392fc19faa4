"""Strict canonical DAG-CBOR (SPEC §3.3): encode, decode, streaming digests and CIDs.

The data model and its Python mapping::

    map     dict with str keys        (encoded sorted: UTF-8 length first, then bytewise)
    list    list / tuple              (decoded as list)
    int     int in -2**64 .. 2**64-1
    bytes   bytes / bytearray / memoryview (decoded as bytes; never turned into a CID)
    string  str (valid Unicode)
    bool, null                        True / False / None
    float   float, finite, always written as 64-bit
    link    aura_core.cid.CID         (tag 42 around 0x00 + the binary CID)

``decode`` rejects every non-canonical or out-of-model input with a
:class:`~aura_core.errors.DecodeError` subclass carrying the byte offset:
:class:`TruncatedError` (input ends early), :class:`NonCanonicalError` (non-minimal heads,
indefinite lengths, unsorted or duplicate keys, 16/32-bit floats, trailing bytes) and
:class:`UnsupportedError` (other tags, a malformed CID in tag 42, NaN/Infinity, undefined and
other simple values, non-string map keys, invalid UTF-8, reserved additional information,
nesting deeper than :data:`MAX_DEPTH`).  ``encode`` raises :class:`EncodeError` whose ``path``
locates the bad value (``$.facts[3].key``).

``digest(obj)`` and ``cid(obj)`` hash the encoding while it is produced: a small buffer is
flushed into the hash and large byte/text payloads are hashed in place, so memory stays bounded
whatever the size of ``obj``; the result equals hashing ``encode(obj)``.  Hashes: ``sha2-256``
(SHA-NI when the CPU has it, else portable C) and ``blake2b-256`` (libsodium).

The encoder state is reused between calls, so separate Encoder/Decoder objects would not pay.
"""

from __future__ import annotations

from typing import Any, Final, Literal

from . import _dagcbor
from .cid import CID

__all__ = ["MAX_DEPTH", "HashName", "encode", "encode_into", "decode", "digest", "cid", "CID"]

HashName = Literal["sha2-256", "blake2b-256"]

#: Deepest nesting of lists/maps accepted by encode and decode (a bare scalar is depth 0).
MAX_DEPTH: Final[int] = _dagcbor.MAX_DEPTH


def encode(obj: Any) -> bytes:
    """The canonical DAG-CBOR encoding of ``obj``."""
    return _dagcbor.encode(obj)


def encode_into(obj: Any, buffer: bytearray | memoryview, offset: int = 0) -> int:
    """Write the encoding of ``obj`` into ``buffer`` at ``offset``; returns its length.

    A ``bytearray`` is resized to exactly ``offset + length``; another writable buffer must be
    large enough, else :class:`~aura_core.errors.InvalidValue` and nothing is written.
    """
    return _dagcbor.encode_into(obj, buffer, offset)


def decode(data: bytes | bytearray | memoryview) -> Any:
    """Decode exactly one canonical DAG-CBOR item (no trailing bytes)."""
    return _dagcbor.decode(data)


def digest(obj: Any, hash: HashName = "sha2-256") -> bytes:  # noqa: A002 (spec name)
    """32-byte hash of ``encode(obj)``, computed while encoding in bounded memory."""
    return _dagcbor.digest(obj, hash)


def cid(obj: Any, hash: HashName = "sha2-256") -> CID:  # noqa: A002 (spec name)
    """CIDv1 (codec dag-cbor 0x71) of ``encode(obj)``, hashed while encoding."""
    return _dagcbor.cid(obj, hash)


# The façade functions above document the API; bind the compiled ones directly so a call costs
# no extra Python frame (same signatures).
encode = _dagcbor.encode  # type: ignore[assignment]  # noqa: F811
encode_into = _dagcbor.encode_into  # type: ignore[assignment]  # noqa: F811
decode = _dagcbor.decode  # type: ignore[assignment]  # noqa: F811
digest = _dagcbor.digest  # type: ignore[assignment]  # noqa: F811
cid = _dagcbor.cid  # type: ignore[assignment]  # noqa: F811
