"""Known-answer vectors of the rendezvous wire forms (``aura_core/vectors/rendezvous/``).

Produced by this project (``python -m aura_core.rendezvous.vectors`` rewrites the file) so other
implementations can check their descriptor sealing, revocations and ChannelEstablished facts byte
for byte.  Randomness is a fixed stream: the n-byte draw number i (from 1) is
``BLAKE2b(digest_size=n, data="aura.vector.rand" || i as u64 BE)``; the draws are, in order,
descriptor ``nonce`` (32), ``punch_nonce`` (32), then the AEAD nonce (24).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator
from importlib import resources
from typing import Any

from .. import dagcbor
from ..hashing import ContextKey
from ..ids import AuthorityId, ContextId
from ..keys import IdentityKey
from .descriptor import (
    AD_DOMAIN,
    QuicDirect,
    QuicReflexive,
    TcpDirect,
    WebSocketDirect,
    WebSocketRelay,
    build_descriptor,
    open_descriptor,
    psk_commitment,
    revoke_descriptor,
    seal_descriptor,
)
from .facts import RendezvousFact

__all__ = ["FILE", "generate", "check"]

FILE = "rendezvous/descriptors.json"


def vector_rand() -> Callable[[int], bytes]:
    counter = [0]

    def rand(n: int) -> bytes:
        counter[0] += 1
        return hashlib.blake2b(b"aura.vector.rand" + counter[0].to_bytes(8, "big"),
                               digest_size=n).digest()
    return rand


_CASES: list[dict[str, Any]] = [
    {"name": "direct+relay hints, nickname", "identity_seed": "01" * 32,
     "context": "00112233445566778899aabbccddeeff", "context_key": "07" * 32, "epoch": 3,
     "now": 1_750_000_000_000, "lifetime_ms": 3_600_000, "nickname": "alice",
     "hints": [{"t": "QuicDirect", "addr": "203.0.113.7:4433"},
               {"t": "QuicReflexive", "addr": "[2001:db8::1]:443"},
               {"t": "WebSocketRelay", "relay": "0f" * 16},
               {"t": "WebSocketDirect", "url": "wss://relay.example/aura"},
               {"t": "TcpDirect", "addr": "198.51.100.2:9000"}]},
    {"name": "single relay hint, epoch 0", "identity_seed": "02" * 32,
     "context": "ffeeddccbbaa99887766554433221100", "context_key": "a5" * 32, "epoch": 0,
     "now": 1_700_000_000_000, "lifetime_ms": 600_000, "nickname": None,
     "hints": [{"t": "WebSocketRelay", "relay": "01" * 16}]},
]


def _hint(d: dict[str, Any]) -> Any:
    t = d["t"]
    if t == "WebSocketRelay":
        return WebSocketRelay(AuthorityId(bytes.fromhex(d["relay"])))
    if t == "WebSocketDirect":
        return WebSocketDirect(d["url"])
    return {"QuicDirect": QuicDirect, "QuicReflexive": QuicReflexive, "TcpDirect": TcpDirect}[t](d["addr"])


def _outputs(case: dict[str, Any]) -> dict[str, Any]:
    ident = IdentityKey(bytes.fromhex(case["identity_seed"]))
    ctx = ContextId(bytes.fromhex(case["context"]))
    key = ContextKey(bytes.fromhex(case["context_key"]))
    rand = vector_rand()
    d = build_descriptor(ident, key, ctx, [_hint(h) for h in case["hints"]], now=case["now"],
                         epoch=case["epoch"], lifetime_ms=case["lifetime_ms"],
                         nickname=case["nickname"], rand=rand)
    fact = seal_descriptor(d, ident, key, rand=rand)
    header = {k: fact[k] for k in ("kind", "v", "ctx", "auth", "pk", "epoch", "valid_from",
                                   "valid_until", "nonce")}
    revoked = revoke_descriptor(ident, ctx, d.nonce)
    est = RendezvousFact.channel_established(ctx, ident.authority_id,
                                             AuthorityId(bytes(range(16))), bytes(range(32)),
                                             case["epoch"])
    return {
        "authority_id": bytes(ident.authority_id).hex(),
        "ed25519_public": ident.public.ed25519.hex(),
        "handshake_psk_self": key.handshake_psk(bytes(ctx), case["epoch"], bytes(ident.authority_id),
                                                bytes(ident.authority_id)).hex(),
        "psk_commitment": psk_commitment(key, ctx, case["epoch"], ident.authority_id).hex(),
        "descriptor_key": key.descriptor_key(bytes(ctx)).hex(),
        "payload": dagcbor.encode(d._payload()).hex(),
        "associated_data": (AD_DOMAIN + dagcbor.encode(header)).hex(),
        "fact": dagcbor.encode(fact).hex(),
        "fact_cid": str(dagcbor.cid(fact)),
        "revocation": dagcbor.encode(revoked).hex(),
        "channel_established": dagcbor.encode(est).hex(),
        "channel_established_cid": str(dagcbor.cid(est)),
    }


def generate() -> dict[str, Any]:
    return {"description": __doc__.strip().splitlines()[0],
            "rand": "draw i (from 1) of n bytes = BLAKE2b(digest_size=n, 'aura.vector.rand' || u64be(i))",
            "vectors": [dict(case, expect=_outputs(case)) for case in _CASES]}


def load() -> list[dict[str, Any]]:
    text = resources.files("aura_core.vectors").joinpath(FILE).read_text(encoding="utf-8")
    vectors: list[dict[str, Any]] = json.loads(text)["vectors"]
    return vectors


def check() -> Iterator[tuple[str, bool, str]]:
    for v in load():
        exp = v["expect"]
        got = _outputs(v)
        bad = sorted(k for k in exp if exp[k] != got.get(k))
        yield v["name"] + ": seal", not bad, ", ".join(bad)
        try:
            ctx = ContextId(bytes.fromhex(v["context"]))
            key = ContextKey(bytes.fromhex(v["context_key"]))
            d = open_descriptor(bytes.fromhex(exp["fact"]), key, ctx, now=v["now"])
            ok = (d.epoch == v["epoch"] and d.nickname_suggestion == v["nickname"]
                  and [_hint(h) for h in v["hints"]] == list(d.transport_hints)
                  and d.handshake_psk_commitment.hex() == exp["psk_commitment"])
            yield v["name"] + ": open", ok, "" if ok else "decoded fields differ"
        except Exception as exc:  # reported, not raised (selftest contract)
            yield v["name"] + ": open", False, f"{type(exc).__name__}: {exc}"


if __name__ == "__main__":
    out = resources.files("aura_core.vectors").joinpath(FILE)
    with resources.as_file(out) as path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(generate(), indent=1) + "\n", encoding="utf-8")
        print(f"wrote {path}")
