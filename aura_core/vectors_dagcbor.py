"""DAG-CBOR vector checks for ``aura-core selftest`` (vectors in aura_core/vectors/dagcbor/).

* ``fixtures/<name>/<CID>.dag-cbor`` — the 128 IPLD codec fixtures: decode, re-encode
  byte-identical, and the CIDv1 (dag-cbor, sha2-256) of the block, computed both from the bytes
  and by the streaming ``cid()``, equals the file name.
* ``negative-fixtures/dag-cbor/decode/*.json`` — upstream blocks that must fail to decode.
* ``aura-negative.json`` — this project's non-canonical / out-of-model blocks, each with the
  DecodeError subclass and byte offset the decoder must report (``generate_negative()`` writes
  it; ``aura-core vectors`` may regenerate it).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from importlib import resources
from importlib.resources.abc import Traversable
from typing import Any

from . import errors
from .cid import CID
from .dagcbor import cid, decode, encode

__all__ = ["check", "generate_negative", "NEGATIVE_FILE"]

NEGATIVE_FILE = "aura-negative.json"

_CIDV1 = bytes.fromhex("01711220") + bytes(range(32))


def _h(*parts: str | bytes) -> str:
    return b"".join(bytes.fromhex(p) if isinstance(p, str) else p for p in parts).hex()


def generate_negative() -> dict[str, Any]:
    """The project's negative decode vectors: (name, hex, error class, offset)."""
    deep_ok = 256
    cases: list[tuple[str, str, str, int]] = [
        ("duplicate key", "a2616101616102", "NonCanonicalError", 4),
        ("keys not bytewise sorted", "a2616201616102", "NonCanonicalError", 4),
        ("longer key first", "a262616101616202", "NonCanonicalError", 5),
        ("uint 1-byte head for 23", "1817", "NonCanonicalError", 0),
        ("uint 2-byte head for 255", "1900ff", "NonCanonicalError", 0),
        ("uint 4-byte head for 65535", "1a0000ffff", "NonCanonicalError", 0),
        ("uint 8-byte head for 2^32-1", "1b00000000ffffffff", "NonCanonicalError", 0),
        ("negint 1-byte head for -1", "3800", "NonCanonicalError", 0),
        ("bytes length non-minimal", "5800", "NonCanonicalError", 0),
        ("string length non-minimal", "780161", "NonCanonicalError", 0),
        ("list length non-minimal", "9800", "NonCanonicalError", 0),
        ("map length non-minimal", "b800", "NonCanonicalError", 0),
        ("nested non-minimal int", "82011817", "NonCanonicalError", 2),
        ("indefinite bytes", "5f4100ff", "NonCanonicalError", 0),
        ("indefinite string", "7f6161ff", "NonCanonicalError", 0),
        ("indefinite list", "9fff", "NonCanonicalError", 0),
        ("indefinite map", "bfff", "NonCanonicalError", 0),
        ("stray break", "ff", "NonCanonicalError", 0),
        ("half float", "f93c00", "NonCanonicalError", 0),
        ("single float", "fa3f800000", "NonCanonicalError", 0),
        ("trailing bytes", "0102", "NonCanonicalError", 1),
        ("tag 42 head non-minimal", _h("d9002a5825", b"\0" + _CIDV1), "NonCanonicalError", 0),
        ("NaN", "fb7ff8000000000000", "UnsupportedError", 0),
        ("Infinity", "fb7ff0000000000000", "UnsupportedError", 0),
        ("-Infinity", "fbfff0000000000000", "UnsupportedError", 0),
        ("NaN in a list", "81fb7ff8000000000000", "UnsupportedError", 1),
        ("undefined", "f7", "UnsupportedError", 0),
        ("simple value 16", "f0", "UnsupportedError", 0),
        ("simple value 32", "f820", "UnsupportedError", 0),
        ("reserved additional info 28", "1c", "UnsupportedError", 0),
        ("tag 0", "c06161", "UnsupportedError", 0),
        ("tag 43", "d82b40", "UnsupportedError", 0),
        ("tag 42 around a string", "d82a6161", "UnsupportedError", 2),
        ("tag 42 without 0x00 prefix", _h("d82a5824", _CIDV1), "UnsupportedError", 4),
        ("tag 42 digest length mismatch", _h("d82a5824", b"\0" + _CIDV1[:-1]), "UnsupportedError", 9),
        ("tag 42 CID version 2", _h("d82a5825", b"\0\x02" + _CIDV1[1:]), "UnsupportedError", 5),
        ("tag 42 empty", "d82a40", "UnsupportedError", 3),
        ("map key integer", "a10102", "UnsupportedError", 1),
        ("map key bytes", "a1416102", "UnsupportedError", 1),
        ("invalid UTF-8 continuation", "62c328", "UnsupportedError", 1),
        ("UTF-8 surrogate", "63eda080", "UnsupportedError", 1),
        ("UTF-8 overlong", "62c080", "UnsupportedError", 1),
        ("UTF-8 above U+10FFFF", "64f4908080", "UnsupportedError", 1),
        ("invalid UTF-8 in a map key", "a162c32801", "UnsupportedError", 2),
        (f"nesting {deep_ok + 1} lists", "81" * (deep_ok + 1) + "80", "UnsupportedError", deep_ok),
        ("empty input", "", "TruncatedError", 0),
        ("truncated 1-byte head", "18", "TruncatedError", 0),
        ("truncated 8-byte head", "1b0000", "TruncatedError", 0),
        ("truncated string", "6261", "TruncatedError", 0),
        ("truncated bytes", "4301", "TruncatedError", 0),
        ("list longer than input", "8301", "TruncatedError", 0),
        ("map value missing", "a16161", "TruncatedError", 3),
        ("truncated float", "fb3ff0", "TruncatedError", 0),
        ("truncated CID", _h("d82a5825", b"\0" + _CIDV1[:10]), "TruncatedError", 2),
    ]
    return {
        "description": "aura_core DAG-CBOR negative decode vectors: each block must be rejected "
                       "with the named DecodeError subclass at the given byte offset",
        "version": 1,
        "max_depth": deep_ok,
        "cases": [{"name": n, "hex": h, "error": e, "offset": o} for n, h, e, o in cases],
    }


def _root() -> Traversable:
    return resources.files("aura_core.vectors").joinpath("dagcbor")


def _fixture_files() -> Iterator[tuple[str, str, bytes]]:
    for folder in sorted(_root().joinpath("fixtures").iterdir(), key=lambda t: t.name):
        for f in folder.iterdir():
            if f.name.endswith(".dag-cbor"):
                yield folder.name, f.name[: -len(".dag-cbor")], f.read_bytes()


def _expect_error(data: bytes, cls: type[errors.DecodeError],
                  offset: int | None) -> tuple[bool, str]:
    try:
        value = decode(data)
    except cls as exc:
        if offset is not None and exc.offset != offset:
            return False, f"{type(exc).__name__} at {exc.offset}, want offset {offset}"
        return True, ""
    except Exception as exc:  # any other exception is a failure of the contract
        return False, f"raised {type(exc).__name__}: {exc}"
    return False, f"accepted: {value!r:.60}"


def check() -> Iterator[tuple[str, bool, str]]:
    count = 0
    for folder, name, data in _fixture_files():
        count += 1
        try:
            value = decode(data)
            again = encode(value)
            want = CID.decode(name)
            ok = again == data and CID.for_block(again) == want and cid(value) == want
            detail = "" if ok else f"re-encode equal={again == data}, cid={cid(value)}"
        except Exception as exc:
            ok, detail = False, f"raised {type(exc).__name__}: {exc}"
        yield f"fixture {folder}", ok, detail
    yield "fixture count", count == 128, f"{count} fixtures"
    neg = _root().joinpath("negative-fixtures", "dag-cbor", "decode")
    for f in sorted(neg.iterdir(), key=lambda t: t.name):
        for case in json.loads(f.read_text()):
            ok, detail = _expect_error(bytes.fromhex(case["hex"]), errors.DecodeError, None)
            yield f"upstream negative {case['name']}", ok, detail
    ours = json.loads(_root().joinpath(NEGATIVE_FILE).read_text())
    for case in ours["cases"]:
        cls = getattr(errors, case["error"])
        ok, detail = _expect_error(bytes.fromhex(case["hex"]), cls, case["offset"])
        yield f"negative {case['name']}", ok, detail


if __name__ == "__main__":
    print(json.dumps(generate_negative(), indent=1))
