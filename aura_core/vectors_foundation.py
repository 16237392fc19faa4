"""Known-answer vectors for ids, Hash32 and the context-key KDF (docs/wire.md §2).

``generate()`` produces ``aura_core/vectors/foundation.json`` from fixed inputs (run
``aura-core vectors``); ``check()`` recomputes every case and compares.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from importlib import resources
from typing import Any

from .hashing import ContextKey, Tag, hash32, kdf
from .ids import AuthorityId, ContextId
from .keys import IdentityKey

FILE = "foundation.json"


def _inputs() -> list[dict[str, Any]]:
    seeds = [bytes(range(32)), bytes([0xA5]) * 32, bytes(32)]
    cases: list[dict[str, Any]] = []
    for seed in seeds:
        key = IdentityKey.from_seed(seed)
        cases.append({
            "kind": "identity",
            "ed25519_seed": seed.hex(),
            "ed25519_public": key.public.ed25519.hex(),
            "x25519_public": key.public.x25519.hex(),
            "x25519_secret": key.x25519_secret().hex(),
            "authority_id": str(key.authority_id),
        })
    for tag, data in [(Tag.CHANNEL, b""), (Tag.RECEIPT, b"abc"), (Tag.COMMIT, bytes(range(200)))]:
        cases.append({"kind": "hash32", "tag": tag.decode(), "data": data.hex(),
                      "hash32": hash32(tag, data).digest.hex()})
    ck = bytes(range(0x40, 0x60))
    ctx = bytes.fromhex("00112233445566778899aabbccddeeff")
    a = AuthorityId.from_public_key(IdentityKey.from_seed(seeds[0]).public.ed25519)
    b = AuthorityId.from_public_key(IdentityKey.from_seed(seeds[1]).public.ed25519)
    key = ContextKey(ck)
    cases.append({"kind": "kdf", "key": ck.hex(), "label": "descriptor-key", "info": ctx.hex(),
                  "length": 32, "output": kdf(ck, b"descriptor-key", ctx).hex()})
    cases.append({"kind": "context", "context_key": ck.hex(), "context_id": str(ContextId(ctx)),
                  "epoch": 7, "a": str(a), "b": str(b),
                  "descriptor_key": key.descriptor_key(ctx).hex(),
                  "handshake_psk": key.handshake_psk(ctx, 7, bytes(a), bytes(b)).hex(),
                  "routing_tag_a": key.routing_tag(ctx, 7, bytes(a)).hex()})
    return cases


def generate() -> dict[str, Any]:
    return {"description": "aura_core foundation vectors: identity keys, AuthorityId, Hash32, KDF",
            "version": 1, "cases": _inputs()}


def check() -> Iterator[tuple[str, bool, str]]:
    data = json.loads(resources.files("aura_core.vectors").joinpath(FILE).read_text())
    for i, case in enumerate(data["cases"]):
        kind = case["kind"]
        name = f"{kind}[{i}]"
        if kind == "identity":
            key = IdentityKey.from_seed(bytes.fromhex(case["ed25519_seed"]))
            got = (key.public.ed25519.hex(), key.public.x25519.hex(), key.x25519_secret().hex(),
                   str(key.authority_id))
            want = (case["ed25519_public"], case["x25519_public"], case["x25519_secret"],
                    case["authority_id"])
        elif kind == "hash32":
            got = hash32(case["tag"].encode(), bytes.fromhex(case["data"])).digest.hex()
            want = case["hash32"]
        elif kind == "kdf":
            got = kdf(bytes.fromhex(case["key"]), case["label"].encode(),
                      bytes.fromhex(case["info"]), case["length"]).hex()
            want = case["output"]
        elif kind == "context":
            key = ContextKey(bytes.fromhex(case["context_key"]))
            ctx = bytes(ContextId.parse(case["context_id"]))
            a, b = bytes(AuthorityId.parse(case["a"])), bytes(AuthorityId.parse(case["b"]))
            got = (key.descriptor_key(ctx).hex(), key.handshake_psk(ctx, case["epoch"], a, b).hex(),
                   key.handshake_psk(ctx, case["epoch"], b, a).hex(),
                   key.routing_tag(ctx, case["epoch"], a).hex())
            want = (case["descriptor_key"], case["handshake_psk"], case["handshake_psk"],
                    case["routing_tag_a"])
        else:
            yield name, False, f"unknown kind {kind}"
            continue
        yield name, got == want, "" if got == want else f"got {got}, want {want}"
