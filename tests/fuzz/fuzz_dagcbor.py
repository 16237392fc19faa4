"""atheris target for the compiled DAG-CBOR codec (csrc/dagcbor via aura_core._dagcbor).

Contract, for any bytes: ``decode`` returns a value or raises a DecodeError subclass (nothing
else); an accepted value re-encodes to exactly the input (the decoder accepts only canonical
forms), its streaming digest equals SHA-256 of the input, and the C pieces (UTF-8 validator,
binary CID check) agree with their Python counterparts.  ``python tests/fuzz/fuzz_dagcbor.py``
fuzzes; ``run_corpus(items)`` drives the same checks from pytest.
"""

from __future__ import annotations

import hashlib
import sys
from collections.abc import Iterable

from aura_core import _dagcbor, dagcbor
from aura_core.cid import CID
from aura_core.errors import CIDError, DecodeError


def check_one(data: bytes) -> None:
    try:
        value = dagcbor.decode(data)
    except DecodeError as exc:
        assert exc.offset is not None and 0 <= exc.offset <= len(data), (exc, data.hex())
    else:
        assert dagcbor.encode(value) == data, data.hex()
        assert dagcbor.digest(value) == hashlib.sha256(data).digest()
    # the same bytes as a memoryview slice (no bytes fast path)
    padded = memoryview(b"\0" + data)[1:]
    try:
        dagcbor.decode(padded)
    except DecodeError:
        pass
    # UTF-8 validator vs CPython's codec
    try:
        data.decode("utf-8")
        want = len(data)
    except UnicodeDecodeError as exc:
        want = exc.start
    assert _dagcbor.utf8_invalid_at(data) == want, data.hex()
    # binary CID check (C) vs the CID class (Python)
    c_ok = _dagcbor.check_cid_bytes(data) is None
    try:
        CID.decode(data) if data[:1] != b"\0" else CID.decode(b"\0" + data)
        py_ok = True
    except CIDError:
        py_ok = False
    assert c_ok == py_ok, data.hex()


def run_corpus(items: Iterable[bytes]) -> int:
    n = 0
    for data in items:
        check_one(bytes(data))
        n += 1
    return n


def seeds() -> list[bytes]:
    """Valid encodings of varied shapes plus the negative vectors' blocks."""
    import json
    from importlib import resources

    values = [0, -1, 2**64 - 1, -(2**64), 1.5, -0.0, "é水", b"\0" * 40, [], {}, [None, True],
              {"a": [1, {"b": b"x"}], "bb": CID.for_block(b"z")}, "x" * 300, list(range(30))]
    corpus = [dagcbor.encode(v) for v in values]
    neg = json.loads(resources.files("aura_core.vectors").joinpath(
        "dagcbor", "aura-negative.json").read_text())
    corpus += [bytes.fromhex(c["hex"]) for c in neg["cases"]]
    return corpus


def main() -> None:
    import atheris

    def test_one_input(data: bytes) -> None:
        check_one(data)

    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
