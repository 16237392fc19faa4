"""Pure-Python strict DAG-CBOR reference (tests only): the compiled codec is checked against it.

Written from the IPLD DAG-CBOR spec, independently of csrc/dagcbor: straightforward and slow.
``decode`` returns the same Python values as aura_core.dagcbor.decode and raises the same
DecodeError subclass at the same offset.
"""

from __future__ import annotations

import math
import struct
from typing import Any

from aura_core.cid import CID
from aura_core.errors import (DecodeError, EncodeError, NonCanonicalError, TruncatedError,
                              UnsupportedError)

MAX_DEPTH = 256


def _head(major: int, n: int) -> bytes:
    m = major << 5
    if n < 24:
        return bytes([m | n])
    if n < 1 << 8:
        return bytes([m | 24, n])
    if n < 1 << 16:
        return bytes([m | 25]) + n.to_bytes(2, "big")
    if n < 1 << 32:
        return bytes([m | 26]) + n.to_bytes(4, "big")
    return bytes([m | 27]) + n.to_bytes(8, "big")


def encode(obj: Any) -> bytes:
    out: list[bytes] = []
    _enc(obj, out, 0)
    return b"".join(out)


def _enc(o: Any, out: list[bytes], depth: int) -> None:
    if o is None:
        out.append(b"\xf6")
    elif o is True:
        out.append(b"\xf5")
    elif o is False:
        out.append(b"\xf4")
    elif isinstance(o, int):
        if 0 <= o < 1 << 64:
            out.append(_head(0, o))
        elif -(1 << 64) <= o < 0:
            out.append(_head(1, -1 - o))
        else:
            raise EncodeError("integer out of range")
    elif isinstance(o, float):
        if not math.isfinite(o):
            raise EncodeError("non-finite float")
        out.append(b"\xfb" + struct.pack(">d", o))
    elif isinstance(o, (bytes, bytearray, memoryview)):
        b = bytes(o)
        out.append(_head(2, len(b)) + b)
    elif isinstance(o, str):
        b = o.encode("utf-8")
        out.append(_head(3, len(b)) + b)
    elif isinstance(o, CID):
        raw = b"\0" + bytes(o)
        out.append(b"\xd8\x2a" + _head(2, len(raw)) + raw)
    elif isinstance(o, (list, tuple)):
        if depth >= MAX_DEPTH:
            raise EncodeError("too deep")
        out.append(_head(4, len(o)))
        for x in o:
            _enc(x, out, depth + 1)
    elif isinstance(o, dict):
        if depth >= MAX_DEPTH:
            raise EncodeError("too deep")
        items = []
        for k, v in o.items():
            if not isinstance(k, str):
                raise EncodeError("non-string key")
            items.append((k.encode("utf-8"), v))
        items.sort(key=lambda kv: (len(kv[0]), kv[0]))
        out.append(_head(5, len(items)))
        for kb, v in items:
            out.append(_head(3, len(kb)) + kb)
            _enc(v, out, depth + 1)
    else:
        raise EncodeError(f"unsupported {type(o).__name__}")


def decode(data: bytes) -> Any:
    data = bytes(data)
    value, pos = _dec(data, 0, 0)
    if pos != len(data):
        raise NonCanonicalError("trailing bytes", pos)
    return value


def _read_head(data: bytes, pos: int) -> tuple[int, int, int, int]:
    """(major, info, argument, new position); canonical checks for majors 0..6."""
    if pos >= len(data):
        raise TruncatedError("end of input", pos)
    b = data[pos]
    major, info = b >> 5, b & 31
    if info < 24:
        return major, info, info, pos + 1
    if info == 31:
        raise NonCanonicalError("indefinite", pos)
    if info > 27:
        raise UnsupportedError("reserved", pos)
    size = 1 << (info - 24)
    if pos + 1 + size > len(data):
        raise TruncatedError("end of input in head", pos)
    arg = int.from_bytes(data[pos + 1:pos + 1 + size], "big")
    if major != 7:
        minimum = 24 if size == 1 else 1 << (8 * size // 2)
        if arg < minimum:
            raise NonCanonicalError("non-minimal", pos)
    return major, info, arg, pos + 1 + size


def _varint(raw: bytes, i: int) -> tuple[int, int] | None:
    v = 0
    for k in range(9):
        if i + k >= len(raw):
            return None
        b = raw[i + k]
        v |= (b & 0x7F) << (7 * k)
        if not b & 0x80:
            if (b == 0 and k > 0) or v >= 1 << 63:
                return None
            return v, i + k + 1
    return None


def _cid_bad_at(raw: bytes) -> int | None:
    """None if raw (with the 0x00 prefix) is a valid tag-42 payload, else the bad index."""
    if not raw or raw[0] != 0:
        return 0
    body = raw[1:]
    if len(body) == 34 and body[:2] == b"\x12\x20":
        return None
    i = 0
    r = _varint(body, i)
    if r is None or r[0] != 1:
        return 1
    i = r[1]
    for _ in range(3):
        r = _varint(body, i)
        if r is None:
            return 1 + i
        last, i = r
    if last != len(body) - i:
        return 1 + i
    return None


def _utf8(data: bytes, start: int, end: int) -> str:
    try:
        return data[start:end].decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UnsupportedError("invalid UTF-8", start + exc.start) from None


def _dec(data: bytes, pos: int, depth: int) -> tuple[Any, int]:
    start = pos
    major, info, arg, pos = _read_head(data, pos)
    if major == 0:
        return arg, pos
    if major == 1:
        return -1 - arg, pos
    if major in (2, 3):
        if pos + arg > len(data):
            raise TruncatedError("string past end", start)
        if major == 2:
            return data[pos:pos + arg], pos + arg
        return _utf8(data, pos, pos + arg), pos + arg
    if major == 4:
        if depth >= MAX_DEPTH:
            raise UnsupportedError("too deep", start)
        if arg > len(data) - pos:
            raise TruncatedError("list past end", start)
        out = []
        for _ in range(arg):
            v, pos = _dec(data, pos, depth + 1)
            out.append(v)
        return out, pos
    if major == 5:
        if depth >= MAX_DEPTH:
            raise UnsupportedError("too deep", start)
        if arg > (len(data) - pos) // 2:
            raise TruncatedError("map past end", start)
        d: dict[str, Any] = {}
        prev: bytes | None = None
        for _ in range(arg):
            kstart = pos
            kmajor, _, klen, pos = _read_head(data, pos)
            if kmajor != 3:
                raise UnsupportedError("key not a string", kstart)
            if pos + klen > len(data):
                raise TruncatedError("key past end", kstart)
            kb = data[pos:pos + klen]
            if prev is not None:
                if (len(prev), prev) == (len(kb), kb):
                    raise NonCanonicalError("duplicate key", kstart)
                if (len(prev), prev) > (len(kb), kb):
                    raise NonCanonicalError("unsorted keys", kstart)
            prev = kb
            key = _utf8(data, pos, pos + klen)
            pos += klen
            d[key], pos = _dec(data, pos, depth + 1)
        return d, pos
    if major == 6:
        if arg != 42:
            raise UnsupportedError("tag", start)
        bstart = pos
        bmajor, _, blen, pos = _read_head(data, pos)
        if bmajor != 2:
            raise UnsupportedError("tag 42 not bytes", bstart)
        if pos + blen > len(data):
            raise TruncatedError("CID past end", bstart)
        raw = data[pos:pos + blen]
        bad = _cid_bad_at(raw)
        if bad is not None:
            raise UnsupportedError("bad CID", pos + bad)
        return CID.decode(raw), pos + blen
    # major 7
    if info == 27:
        f = struct.unpack(">d", arg.to_bytes(8, "big"))[0]
        if not math.isfinite(f):
            raise UnsupportedError("non-finite", start)
        return f, pos
    if info in (25, 26):
        raise NonCanonicalError("short float", start)
    simple = {20: False, 21: True, 22: None}
    if info in simple:
        return simple[info], pos
    raise UnsupportedError("simple value", start)


__all__ = ["encode", "decode", "DecodeError", "MAX_DEPTH"]
