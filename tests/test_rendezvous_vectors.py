"""Rendezvous vectors recomputed from the documented formulas (docs/wire.md, rendezvous) with
hashlib and PyNaCl only — an independent reading of the byte layout, not our code paths."""

from __future__ import annotations

import hashlib

import pytest
from nacl import bindings as nb

from aura_core import dagcbor
from aura_core.rendezvous.vectors import check, load

VECTORS = load()


def _kdf(key: bytes, label: bytes, info: bytes) -> bytes:
    h = hashlib.blake2b(digest_size=32, key=key, person=b"aura.kdf.v1".ljust(16, b"\0"))
    h.update(bytes([len(label)]) + label + info)
    return h.digest()


def test_selftest_check_passes():
    results = list(check())
    assert results and all(ok for _, ok, _ in results), results


@pytest.mark.parametrize("v", VECTORS, ids=lambda v: v["name"])
def test_vector_from_the_spec(v):
    exp = v["expect"]
    ctx, ck, epoch = bytes.fromhex(v["context"]), bytes.fromhex(v["context_key"]), v["epoch"]
    pk = nb.crypto_sign_seed_keypair(bytes.fromhex(v["identity_seed"]))[0]
    auth = hashlib.blake2b(pk, digest_size=32, person=b"aura.authority.1").digest()[:16]
    assert auth.hex() == exp["authority_id"] and pk.hex() == exp["ed25519_public"]
    # PSK commitment: Hash32(COMMIT, "aura.psk-commit.v1" || ctx || epoch || auth || psk(auth, auth))
    psk = _kdf(ck, b"handshake-psk", ctx + epoch.to_bytes(8, "big") + auth + auth)
    commit = hashlib.blake2b(b"aura.psk-commit.v1" + ctx + epoch.to_bytes(8, "big") + auth + psk,
                             digest_size=32, person=b"aura.commit.v1".ljust(16, b"\0")).digest()
    assert commit.hex() == exp["psk_commitment"]
    dkey = _kdf(ck, b"descriptor-key", ctx)
    assert dkey.hex() == exp["descriptor_key"]

    raw = bytes.fromhex(exp["fact"])
    fact = dagcbor.decode(raw)
    assert fact["kind"] == "rendezvous.descriptor" and fact["v"] == 1
    assert (fact["ctx"], fact["auth"], fact["pk"], fact["epoch"]) == (ctx, auth, pk, epoch)
    assert fact["valid_from"] == v["now"] and fact["valid_until"] == v["now"] + v["lifetime_ms"]
    # signature: Ed25519 over "aura.rendezvous.descriptor.v1\0" || DAG-CBOR(fact minus sig)
    body = {k: x for k, x in fact.items() if k != "sig"}
    nb.crypto_sign_open(fact["sig"] + b"aura.rendezvous.descriptor.v1\0" + dagcbor.encode(body), pk)
    # AEAD: XChaCha20-Poly1305, AD = "aura.rendezvous.descriptor-ad.v1\0" || DAG-CBOR(header)
    header = {k: fact[k] for k in ("kind", "v", "ctx", "auth", "pk", "epoch", "valid_from",
                                   "valid_until", "nonce")}
    ad = b"aura.rendezvous.descriptor-ad.v1\0" + dagcbor.encode(header)
    assert ad.hex() == exp["associated_data"]
    plain = nb.crypto_aead_xchacha20poly1305_ietf_decrypt(fact["ct"], ad, fact["aead_nonce"], dkey)
    assert plain.hex() == exp["payload"]
    payload = dagcbor.decode(plain)
    assert payload["psk_commit"] == commit and len(payload["punch_nonce"]) == 32
    assert payload.get("nick") == v["nickname"]
    assert [h["t"] for h in payload["hints"]] == [h["t"] for h in v["hints"]]
    # CID: CIDv1 dag-cbor sha2-256 of the bytes
    assert str(dagcbor.cid(fact)) == exp["fact_cid"]
    assert dagcbor.cid(fact).digest == hashlib.sha256(raw).digest()

    rev = dagcbor.decode(bytes.fromhex(exp["revocation"]))
    assert rev["nonce"] == fact["nonce"] and rev["kind"] == "rendezvous.descriptor_revoked"
    rbody = {k: x for k, x in rev.items() if k != "sig"}
    nb.crypto_sign_open(rev["sig"] + b"aura.rendezvous.revoke.v1\0" + dagcbor.encode(rbody), pk)

    est = dagcbor.decode(bytes.fromhex(exp["channel_established"]))
    assert set(est) == {"kind", "v", "ctx", "initiator", "responder", "channel_id", "epoch"}
