"""Pure-Python reference of receipts (docs/wire.md "Receipts"): only Ed25519 (PyNaCl) and
BLAKE2b (hashlib), written from the wire spec, independent of aura_core's C.  The tests check
csrc/receipt against it: same bytes, same hashes, same first bad index and error kind."""

from __future__ import annotations

import hashlib

import nacl.bindings as nb
from nacl.exceptions import BadSignatureError

TAG = b"aura.receipt.v1\0"
AUTH_TAG = b"aura.authority.1"
LEN = 200
MAX = (1 << 64) - 1


def pack_body(ctx: bytes, src: bytes, dst: bytes, epoch: int, cost: int, nonce: int,
              prev: bytes, commit: bytes = bytes(32)) -> bytes:
    assert len(ctx) == len(src) == len(dst) == 16 and len(prev) == len(commit) == 32
    return (ctx + src + dst + epoch.to_bytes(8, "big") + cost.to_bytes(8, "big")
            + nonce.to_bytes(8, "big") + prev + commit)


def transcript(rec: bytes) -> bytes:
    return TAG + rec[:136]


def receipt_hash(rec: bytes) -> bytes:
    return hashlib.blake2b(transcript(rec), digest_size=32, person=TAG).digest()


def authority_id(pk: bytes) -> bytes:
    return hashlib.blake2b(pk, digest_size=32, person=AUTH_TAG).digest()[:16]


def sign(body: bytes, sk: bytes) -> bytes:
    return body + nb.crypto_sign(transcript(body), sk)[:64]


def sign_chain(bodies: list[bytes], sk: bytes) -> list[bytes]:
    """Sign bodies in order, linking prev of each (after the first) to the previous hash."""
    out = []
    for i, b in enumerate(bodies):
        if i:
            b = b[:72] + receipt_hash(out[-1]) + b[104:136]
        out.append(sign(b[:136], sk))
    return out


def _sig_ok(rec: bytes, pk: bytes) -> bool:
    try:
        nb.crypto_sign_open(rec[136:200] + transcript(rec), pk)
        return True
    except BadSignatureError:
        return False


def verify_chain(recs: list[bytes], pk: bytes, *, epoch: int | None = None,
                 limit: int | None = None, start_prev: bytes = bytes(32),
                 after_nonce: int | None = None, ctx: bytes | None = None,
                 dst: bytes | None = None) -> tuple[str, int] | tuple[int, bytes, int]:
    """(total, last_hash, last_nonce) if valid, else (error kind, index of the first bad receipt).

    Per receipt the checks run in this order; the first failing one is the error:
    signer (receipt 0) / src, sig, ctx, dst, epoch, nonce, prev, cost_zero, overflow, limit.
    """
    if not recs:
        return 0, start_prev, 0
    signer = authority_id(pk)
    ctx = recs[0][:16] if ctx is None else ctx
    dst = recs[0][32:48] if dst is None else dst
    epoch = int.from_bytes(recs[0][48:56], "big") if epoch is None else epoch
    prev, last_nonce, total = start_prev, after_nonce, 0
    for i, r in enumerate(recs):
        if len(r) != LEN:
            return "truncated", i
        if r[16:32] != signer:
            return ("signer" if i == 0 else "src"), i
        if not _sig_ok(r, pk):
            return "sig", i
        if r[:16] != ctx:
            return "ctx", i
        if r[32:48] != dst:
            return "dst", i
        if int.from_bytes(r[48:56], "big") != epoch:
            return "epoch", i
        nonce = int.from_bytes(r[64:72], "big")
        if last_nonce is not None and nonce <= last_nonce:
            return "nonce", i
        if r[72:104] != prev:
            return "prev", i
        cost = int.from_bytes(r[56:64], "big")
        if cost == 0:
            return "cost_zero", i
        if total + cost > MAX:
            return "overflow", i
        total += cost
        if limit is not None and total > limit:
            return "limit", i
        prev, last_nonce = receipt_hash(r), nonce
    return total, prev, last_nonce
