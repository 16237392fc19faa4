"""atheris target for the compiled receipts (csrc/receipt via aura_core._receipt).

Input: one flag byte, then a buffer taken as a chain of packed 200-byte receipts.  Contract for
any input: ``verify_chain`` returns or raises ChainError / SignatureError whose ``index`` is a
receipt of the buffer, and its verdict (kind and index, or total / last hash / last nonce)
equals the pure-Python reference (tests/reference/receipt_ref.py), with 1 or 2 threads;
transcript / Hash32 of every receipt equal the reference; ``Receipt.from_bytes`` round-trips
or raises ReceiptError; ``sign_batch`` over the buffer yields receipts whose signatures and
prev links the reference accepts.  The relay entry points too: the whole input taken as a
DELIVER frame, ``envelope_id`` / ``add_envelope_id`` equal ``aura_core.relay.envelope_id`` (or
both refuse it: shorter than 33 bytes), and ``forward_commitment_packed`` over the input cut to
32-byte records equals sorted-then-BLAKE2b in Python.  ``python tests/fuzz/fuzz_receipt.py`` fuzzes;
``run_corpus(items)`` drives the same checks from pytest.
"""

from __future__ import annotations

import hashlib
import sys
from collections.abc import Iterable

from aura_core import _receipt
from aura_core.errors import ChainError, InvalidValue, ReceiptError, SignatureError
from aura_core.ids import ContextId
from aura_core.keys import IdentityKey
from aura_core.receipts import Receipt, ReceiptChain, verify_chain
from aura_core.relay import envelope_id
from tests.reference import receipt_ref as ref

KEY = IdentityKey.from_seed(bytes(range(32)))
PK = KEY.public.ed25519
SK = KEY.ed25519_secret()
MAX_RECEIPTS = 8  # keep each input cheap (Ed25519 verify ~40 us)

_KIND_WORDS = {
    "sig": "signature does not verify", "signer": "wrong signer", "src": "src differs",
    "ctx": "cross-context", "dst": "dst differs", "epoch": "cross-epoch", "nonce": "nonce",
    "prev": "broken link", "cost_zero": "cost is zero", "overflow": "overflows",
    "limit": "exceeds the limit",
}


def forward_commitment_ref(packed: bytes) -> bytes:
    ids = sorted(packed[i:i + 32] for i in range(0, len(packed), 32))
    return hashlib.blake2b(b"".join(ids), digest_size=32, person=b"aura.forward.v1\0").digest()


def check_envelope(data: bytes) -> None:
    """The relay entry points over one input (a DELIVER frame / packed ids)."""
    ids = bytearray(bytes(32) * (data[:1] == b"\x11"))  # sometimes appended after an id
    try:
        want = envelope_id(data)
    except InvalidValue:
        for call in (lambda: _receipt.envelope_id(data), lambda: _receipt.add_envelope_id(ids, data)):
            try:
                call()
            except InvalidValue:
                pass
            else:
                raise AssertionError(f"short frame accepted: {data.hex()}")
        assert len(data) < 33 and len(ids) % 32 == 0
    else:
        assert _receipt.envelope_id(data) == want
        before = len(ids)
        assert _receipt.add_envelope_id(ids, data) == before // 32 + 1 and ids[before:] == want
    packed = bytearray(data[:len(data) // 32 * 32])
    assert _receipt.forward_commitment_packed(packed) == forward_commitment_ref(data[:len(packed)])
    assert bytes(packed) == b"".join(sorted(packed[i:i + 32] for i in range(0, len(packed), 32)))


def check_one(data: bytes) -> None:
    check_envelope(data)
    if not data:
        return
    flags, buf = data[0], data[1:1 + 200 * MAX_RECEIPTS]
    threads = 2 if flags & 1 else 1
    limit = (flags >> 2) * 4 if flags & 2 else None
    n, rest = divmod(len(buf), 200)
    try:
        s = verify_chain(buf, PK, limit=limit, threads=threads)
    except (ChainError, SignatureError) as exc:
        assert exc.index is not None and 0 <= exc.index <= n, (exc, data.hex())
        if rest == 0:
            recs = [buf[i:i + 200] for i in range(0, len(buf), 200)]
            kind, index = ref.verify_chain(recs, PK, limit=limit)  # type: ignore[misc]
            assert exc.index == index and _KIND_WORDS[kind] in str(exc), (exc, kind, index)
        else:
            assert isinstance(exc, ChainError) and (exc.index == n or "truncated" not in str(exc))
    else:
        assert rest == 0, "a truncated buffer was accepted"
        recs = [buf[i:i + 200] for i in range(0, len(buf), 200)]
        assert ref.verify_chain(recs, PK, limit=limit) == (s.total, s.head.prev.digest, s.head.nonce)
    for i in range(n):
        rec = buf[200 * i:200 * i + 200]
        assert _receipt.transcript(rec) == ref.transcript(rec)
        assert _receipt.receipt_hash(rec) == ref.receipt_hash(rec)
        try:
            r = Receipt.from_bytes(rec)
        except ReceiptError:
            pass
        else:
            assert bytes(r) == rec and Receipt.from_bytes(bytes(r)) == r
    if n and rest == 0:
        signed = bytearray(buf)
        _receipt.sign_batch(signed, SK, bool(flags & 4), threads)
        recs = [bytes(signed[i:i + 200]) for i in range(0, len(signed), 200)]
        for i, rec in enumerate(recs):
            assert ref._sig_ok(rec, PK)
            if flags & 4 and i:
                assert rec[72:104] == ref.receipt_hash(recs[i - 1])


def run_corpus(items: Iterable[bytes]) -> int:
    n = 0
    for data in items:
        check_one(bytes(data))
        n += 1
    return n


def seeds() -> list[bytes]:
    """Valid chains (with and without flags) and simple mutations of them."""
    ctx = ContextId(bytes(range(16)))
    dst = IdentityKey.from_seed(bytes([0xA5]) * 32).authority_id
    good = ReceiptChain(KEY, ctx, dst, 3).issue_packed([1, 2, 3, 4])
    corpus = [bytes([f]) + good for f in (0, 1, 2, 3, 6, 0x22, 0x42)]
    for pos in (10, 60, 70, 100, 150, 260, 599, 799):
        b = bytearray(good)
        b[pos] ^= 0x40
        corpus.append(b"\x01" + bytes(b))
    corpus += [b"\0" + good[:-1], b"\0" + good[200:], b"\0" + good[:200] * 2, b"\0", b"\0" * 201]
    # DELIVER frames around the 32-byte tail boundary and the 33-byte header
    corpus += [b"\x11" + good[:32 + n] for n in (0, 1, 31, 32, 33, 64)] + [b"\x11" * 32, b""]
    return corpus


def main() -> None:
    import atheris

    def test_one_input(data: bytes) -> None:
        check_one(data)

    atheris.instrument_all()  # Python-level coverage (the façade and the reference) guides it
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
