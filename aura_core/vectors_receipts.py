"""Known-answer vectors for receipts (docs/wire.md "Receipts"): ``aura_core/vectors/receipts.json``.

``generate()`` builds them from fixed inputs (Ed25519 signatures are deterministic, so the
whole file is reproducible); ``check()`` (selftest) rebuilds every valid receipt from its fields,
compares packed bytes, transcript, Hash32 and signature, verifies each chain, and checks that
every invalid chain is rejected with the recorded error class and index.  An independent
implementer can check the same file with only Ed25519 and BLAKE2b.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from importlib import resources
from typing import Any

from .errors import ChainError, SignatureError
from .hashing import Hash32, Tag, hash32
from .ids import AuthorityId, ContextId
from .keys import IdentityKey
from .receipts import Receipt, ReceiptChain, forward_commitment, verify_chain

FILE = "receipts.json"

_SEED = bytes(range(32))
_OTHER_SEED = bytes([0xA5]) * 32
_CTX = bytes.fromhex("00112233445566778899aabbccddeeff")


def _receipt_case(r: Receipt) -> dict[str, Any]:
    return {
        "ctx": str(r.ctx), "src": str(r.src), "dst": str(r.dst), "epoch": r.epoch,
        "cost": r.cost, "nonce": r.nonce, "prev": r.prev.digest.hex(),
        "commit": r.commit.digest.hex(), "transcript": r.transcript().hex(),
        "hash32": r.hash().digest.hex(), "sig": r.sig.hex(), "packed": bytes(r).hex(),
    }


def _resign(key: IdentityKey, body: bytes) -> bytes:
    """A receipt with a (deliberately wrong) body, validly signed by ``key``."""
    return body + key.sign(Tag.RECEIPT.ljust(16, b"\0") + body)


def generate() -> dict[str, Any]:
    key = IdentityKey.from_seed(_SEED)
    other = IdentityKey.from_seed(_OTHER_SEED)
    ctx = ContextId(_CTX)
    dst = other.authority_id
    ch = ReceiptChain(key, ctx, dst, 7)
    first = ch.issue_batch([1, 3])
    commit = forward_commitment([bytes([i]) * 32 for i in range(3)])
    third = ch.issue(2, commit)
    valid = [
        {"name": "epoch 7, three receipts, the last commits to 3 forwarded envelope ids",
         "public_key": key.public.ed25519.hex(), "ed25519_seed": _SEED.hex(),
         "forwarded_ids": [(bytes([i]) * 32).hex() for i in range(3)],
         "total": 6, "receipts": [_receipt_case(r) for r in first + [third]]},
    ]
    packed = [bytes(r) for r in first + [third]]
    pk = key.public.ed25519.hex()
    # invalid chains: (name, receipts, options, error class, index)
    flipped = bytearray(packed[1])
    flipped[63] ^= 1
    broken_prev = _resign(key, packed[2][:72] + bytes(32) + packed[2][104:136])
    cross_epoch = _resign(key, packed[1][:48] + (8).to_bytes(8, "big") + packed[1][56:136])
    theirs = ReceiptChain(other, ctx, key.authority_id, 7).issue_batch([1])
    invalid = [
        ("forged cost", [packed[0], bytes(flipped), packed[2]], {}, "SignatureError", 1),
        ("reordered", [packed[0], packed[2], packed[1]], {}, "ChainError", 1),
        ("duplicated", [packed[0], packed[0]], {}, "ChainError", 1),
        ("broken prev", [packed[0], packed[1], broken_prev], {}, "ChainError", 2),
        ("cross-epoch", [packed[0], cross_epoch], {}, "ChainError", 1),
        ("old epoch in a new one", packed, {"epoch": 8}, "ChainError", 0),
        ("over the limit", packed, {"limit": 5}, "ChainError", 2),
        ("wrong signer", [bytes(theirs[0])], {}, "SignatureError", 0),
    ]
    return {
        "description": "aura_core receipt vectors: packed form, transcript, Hash32, Ed25519, chains",
        "version": 1, "valid": valid,
        "invalid": [{"name": n, "public_key": pk, "receipts": [r.hex() for r in rs],
                     "options": o, "error": e, "index": i} for n, rs, o, e, i in invalid],
    }


def check() -> Iterator[tuple[str, bool, str]]:
    data = json.loads(resources.files("aura_core.vectors").joinpath(FILE).read_text())
    for ci, case in enumerate(data["valid"]):
        key = IdentityKey.from_seed(bytes.fromhex(case["ed25519_seed"]))
        ok = key.public.ed25519.hex() == case["public_key"]
        yield f"valid[{ci}] key", ok, "" if ok else "public key differs"
        rs = []
        for ri, rc in enumerate(case["receipts"]):
            fields = (ContextId.parse(rc["ctx"]), AuthorityId.parse(rc["src"]),
                      AuthorityId.parse(rc["dst"]), rc["epoch"], rc["cost"], rc["nonce"],
                      Hash32(bytes.fromhex(rc["prev"])))
            commit = Hash32(bytes.fromhex(rc["commit"]))
            unsigned = Receipt(*fields, bytes(64), commit)
            t = unsigned.transcript()
            sig = key.sign(t)
            r = Receipt(*fields, sig, commit)
            got = (t.hex(), r.hash().digest.hex(), sig.hex(), bytes(r).hex(),
                   hash32(Tag.RECEIPT, t).digest.hex())
            want = (rc["transcript"], rc["hash32"], rc["sig"], rc["packed"], rc["hash32"])
            yield f"valid[{ci}].receipt[{ri}]", got == want, "" if got == want else f"got {got}"
            rs.append(r)
        if case.get("forwarded_ids"):
            c = forward_commitment(bytes.fromhex(x) for x in case["forwarded_ids"])
            ok = c == rs[-1].commit
            yield f"valid[{ci}] forward commitment", ok, "" if ok else f"got {c}"
        try:
            total = verify_chain(rs, bytes.fromhex(case["public_key"])).total
            yield f"valid[{ci}] chain", total == case["total"], f"total {total}"
        except (ChainError, SignatureError) as exc:
            yield f"valid[{ci}] chain", False, str(exc)
    errors = {"ChainError": ChainError, "SignatureError": SignatureError}
    for ci, case in enumerate(data["invalid"]):
        name = f"invalid[{ci}] {case['name']}"
        buf = b"".join(bytes.fromhex(x) for x in case["receipts"])
        try:
            verify_chain(buf, bytes.fromhex(case["public_key"]), **case["options"])
        except (ChainError, SignatureError) as exc:
            ok = type(exc) is errors[case["error"]] and exc.index == case["index"]
            yield name, ok, "" if ok else f"got {type(exc).__name__} at {exc.index}: {exc}"
        else:
            yield name, False, "accepted"


if __name__ == "__main__":  # pragma: no cover - regenerate: python -m aura_core.vectors_receipts
    from pathlib import Path

    target = Path(str(resources.files("aura_core.vectors"))) / FILE
    target.write_text(json.dumps(generate(), indent=1) + "\n")
    print(f"wrote {target}")
