"""Content identifiers (CIDs): CIDv1 with multicodec + multihash, and reading CIDv0.

Binary form (docs/wire.md, DAG-CBOR section): CIDv1 is ``varint(1) || varint(codec) ||
varint(hash_code) || varint(len(digest)) || digest``; CIDv0 is the bare sha2-256 multihash
``0x12 0x20 || digest`` (codec dag-pb implied).  Varints are minimal unsigned LEB128.  The text
form of a CIDv1 is multibase base32 lower case without padding, prefix ``b``; a CIDv0 is
base58btc without prefix (``Qm...``).  Parsing also accepts base32 upper (``B``), base58btc
(``z``) and base16 (``f``/``F``).

A CID keeps its binary form; equality, hashing and ordering are those of the bytes.
"""

from __future__ import annotations

import base64
import hashlib
from typing import Final

from ._dagcbor import CIDBase, _register_cid_type
from .errors import CIDError

__all__ = ["CID", "DAG_CBOR", "RAW", "DAG_PB", "SHA2_256", "BLAKE2B_256", "HASH_CODES"]

DAG_CBOR: Final = 0x71
RAW: Final = 0x55
DAG_PB: Final = 0x70
SHA2_256: Final = 0x12
BLAKE2B_256: Final = 0xB220

# hash name -> multihash code (the names digest()/cid() accept)
HASH_CODES: Final[dict[str, int]] = {"sha2-256": SHA2_256, "blake2b-256": BLAKE2B_256}

_B58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
_B58_INDEX = {c: i for i, c in enumerate(_B58)}


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _read_varint(raw: bytes, i: int) -> tuple[int, int]:
    v = 0
    for k in range(9):
        if i + k >= len(raw):
            raise CIDError("CID ends inside a varint")
        b = raw[i + k]
        v |= (b & 0x7F) << (7 * k)
        if not b & 0x80:
            if b == 0 and k > 0:
                raise CIDError("non-minimal varint in CID")
            if v >> 63:
                raise CIDError("varint in CID too large")
            return v, i + k + 1
    raise CIDError("varint in CID longer than 9 bytes")


def _parse(raw: bytes) -> tuple[int, int, int, bytes]:
    """(version, codec, hash_code, digest) of a binary CID; raises CIDError if malformed."""
    if len(raw) == 34 and raw[0] == 0x12 and raw[1] == 0x20:
        return 0, DAG_PB, SHA2_256, raw[2:]
    version, i = _read_varint(raw, 0)
    if version != 1:
        raise CIDError(f"unsupported CID version {version}")
    codec, i = _read_varint(raw, i)
    code, i = _read_varint(raw, i)
    length, i = _read_varint(raw, i)
    if length != len(raw) - i:
        raise CIDError("multihash digest length does not match")
    return 1, codec, code, raw[i:]


def _b58decode(text: str) -> bytes:
    n = 0
    for c in text:
        try:
            n = n * 58 + _B58_INDEX[c]
        except KeyError:
            raise CIDError(f"invalid base58 character {c!r}") from None
    pad = len(text) - len(text.lstrip("1"))
    body = n.to_bytes((n.bit_length() + 7) // 8, "big") if n else b""
    return b"\0" * pad + body


def _b58encode(raw: bytes) -> str:
    n = int.from_bytes(raw, "big")
    out = []
    while n:
        n, r = divmod(n, 58)
        out.append(_B58[r])
    pad = len(raw) - len(raw.lstrip(b"\0"))
    return "1" * pad + "".join(reversed(out))


def _b32decode(text: str) -> bytes:
    text = text.upper()
    try:
        return base64.b32decode(text + "=" * (-len(text) % 8))
    except (ValueError, TypeError) as exc:
        raise CIDError(f"invalid base32: {exc}") from None


class CID(CIDBase):
    """A content identifier.  Immutable; compares, hashes and orders by its binary form.

    Its storage (``_raw``, the binary CID; ``_fields``, parsed lazily) lives in the compiled
    base class so the DAG-CBOR walkers create and read CIDs without running Python code.
    """

    __slots__ = ()

    _raw: bytes
    _fields: tuple[int, int, int, bytes] | None

    def __init__(self, version: int, codec: int, hash_code: int, digest: bytes) -> None:
        digest = bytes(digest)
        if version == 0:
            if codec != DAG_PB or hash_code != SHA2_256 or len(digest) != 32:
                raise CIDError("CIDv0 is dag-pb with a 32-byte sha2-256 digest")
            raw = b"\x12\x20" + digest
        elif version == 1:
            for v in (codec, hash_code):
                if not 0 <= v < 1 << 63:
                    raise CIDError("codec / hash code out of range")
            raw = _varint(1) + _varint(codec) + _varint(hash_code) + _varint(len(digest)) + digest
        else:
            raise CIDError(f"unsupported CID version {version}")
        self._raw = raw
        self._fields = (version, codec, hash_code, digest)

    @classmethod
    def _from_raw(cls, raw: bytes) -> CID:
        """Trusted constructor for an already validated binary CID (the decoder's)."""
        self = CIDBase.__new__(cls)
        self._raw = raw
        self._fields = None
        return self

    @classmethod
    def decode(cls, value: str | bytes | bytearray | memoryview) -> CID:
        """Parse a CID from its text form (multibase, or base58 CIDv0) or its binary form.

        Binary input may carry the 0x00 multibase-identity prefix used inside DAG-CBOR tag 42.
        """
        if isinstance(value, str):
            raw = cls._text_to_bytes(value)
        elif isinstance(value, (bytes, bytearray, memoryview)):
            raw = bytes(value)
            if raw[:1] == b"\x00":
                raw = raw[1:]
        else:
            raise CIDError(f"cannot parse a CID from {type(value).__name__}")
        _parse(raw)
        return cls._from_raw(raw)

    @staticmethod
    def _text_to_bytes(text: str) -> bytes:
        if not text:
            raise CIDError("empty CID string")
        if len(text) == 46 and text.startswith("Qm"):
            raw = _b58decode(text)
            if len(raw) != 34 or raw[:2] != b"\x12\x20":
                raise CIDError("malformed CIDv0")
            return raw
        prefix, body = text[0], text[1:]
        if prefix == "b" and body == body.lower():
            raw = _b32decode(body)
        elif prefix == "B" and body == body.upper():
            raw = _b32decode(body)
        elif prefix == "z":
            raw = _b58decode(body)
        elif prefix in "fF":
            try:
                raw = bytes.fromhex(body)
            except ValueError:
                raise CIDError("invalid base16") from None
        else:
            raise CIDError(f"unsupported multibase prefix {prefix!r}")
        if raw[:2] == b"\x12\x20" and len(raw) == 34:
            raise CIDError("CIDv0 must not carry a multibase prefix")
        return raw

    @classmethod
    def for_block(cls, block: bytes | bytearray | memoryview, codec: int = DAG_CBOR,
                  hash: str = "sha2-256") -> CID:  # noqa: A002 (the spec's parameter name)
        """CIDv1 of a block of bytes under ``codec`` with the named hash."""
        if hash == "sha2-256":
            digest = hashlib.sha256(block).digest()
        elif hash == "blake2b-256":
            digest = hashlib.blake2b(block, digest_size=32).digest()
        else:
            raise CIDError(f"unsupported hash {hash!r} (sha2-256, blake2b-256)")
        return cls(1, codec, HASH_CODES[hash], digest)

    def _get(self) -> tuple[int, int, int, bytes]:
        f = self._fields
        if f is None:
            f = self._fields = _parse(self._raw)
        return f

    @property
    def version(self) -> int:
        return self._get()[0]

    @property
    def codec(self) -> int:
        return self._get()[1]

    @property
    def hash_code(self) -> int:
        return self._get()[2]

    @property
    def digest(self) -> bytes:
        return self._get()[3]

    @property
    def multihash(self) -> bytes:
        """``varint(hash_code) || varint(len) || digest``."""
        _, _, code, digest = self._get()
        return _varint(code) + _varint(len(digest)) + digest

    def to_v1(self) -> CID:
        version, codec, code, digest = self._get()
        return self if version == 1 else CID(1, codec, code, digest)

    def __bytes__(self) -> bytes:
        return self._raw

    def __str__(self) -> str:
        if self.version == 0:
            return _b58encode(self._raw)
        return "b" + base64.b32encode(self._raw).decode("ascii").rstrip("=").lower()

    def __repr__(self) -> str:
        return f"CID({str(self)!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, CID):
            return NotImplemented
        return self._raw == other._raw

    def __hash__(self) -> int:
        return hash((CID, self._raw))

    def __lt__(self, other: CID) -> bool:
        if not isinstance(other, CID):
            return NotImplemented
        return self._raw < other._raw

    def __le__(self, other: CID) -> bool:
        if not isinstance(other, CID):
            return NotImplemented
        return self._raw <= other._raw

    def __gt__(self, other: CID) -> bool:
        if not isinstance(other, CID):
            return NotImplemented
        return self._raw > other._raw

    def __ge__(self, other: CID) -> bool:
        if not isinstance(other, CID):
            return NotImplemented
        return self._raw >= other._raw

    def __reduce__(self) -> tuple[object, tuple[bytes]]:
        return (CID.decode, (self._raw,))


_register_cid_type(CID)
