"""Receipts: C vs the pure-Python reference, chain verification, bad input, journal form."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aura_core import _receipt
from aura_core.errors import ChainError, InvalidValue, ReceiptError, SignatureError, UsageError
from aura_core.flow import MAX_U64
from aura_core.hashing import Hash32, Tag, hash32
from aura_core.ids import AuthorityId, ContextId
from aura_core.keys import IdentityKey
from aura_core.receipts import (
    ChainHead,
    Receipt,
    ReceiptChain,
    ReceiptIssuer,
    verify_chain,
)
from tests.reference import receipt_ref as ref

pytestmark = pytest.mark.native

KEY = IdentityKey.from_seed(bytes(range(32)))
OTHER = IdentityKey.from_seed(bytes([0xA5]) * 32)
CTX = ContextId(bytes.fromhex("00112233445566778899aabbccddeeff"))
CTX2 = ContextId(bytes(16))
DST = OTHER.authority_id
PK = KEY.public.ed25519

KINDS = {
    "sig": (SignatureError, "signature does not verify"),
    "signer": (SignatureError, "wrong signer"),
    "src": (ChainError, "src differs"),
    "ctx": (ChainError, "cross-context"),
    "dst": (ChainError, "dst differs"),
    "epoch": (ChainError, "cross-epoch"),
    "nonce": (ChainError, "nonce not strictly increasing"),
    "prev": (ChainError, "broken link"),
    "cost_zero": (ChainError, "cost is zero"),
    "overflow": (ChainError, "overflows"),
    "limit": (ChainError, "exceeds the limit"),
    "truncated": (ChainError, "truncated"),
}


def expect(kind: str, index: int, recs: list[bytes] | bytes, pk: bytes = PK, **kw: object) -> None:
    exc, words = KINDS[kind]
    buf = recs if isinstance(recs, bytes) else b"".join(recs)
    with pytest.raises(exc) as info:
        verify_chain(buf, pk, **kw)  # type: ignore[arg-type]
    assert type(info.value) is exc
    assert info.value.index == index, str(info.value)
    assert words in str(info.value) and f"receipt {index}" in str(info.value)
    if isinstance(recs, list):  # the reference agrees on kind and index
        kwr = {k: v for k, v in kw.items() if k in ("epoch", "limit", "ctx", "dst")}
        for k in ("ctx", "dst"):
            if k in kwr:
                kwr[k] = bytes(kwr[k])  # type: ignore[arg-type]
        assert ref.verify_chain(recs, pk, **kwr) == (kind, index)  # type: ignore[arg-type]


def chain(n: int, *, key: IdentityKey = KEY, ctx: ContextId = CTX, epoch: int = 0,
          costs: list[int] | None = None) -> list[bytes]:
    ch = ReceiptChain(key, ctx, DST, epoch)
    packed = ch.issue_packed(costs or [1 + i % 3 for i in range(n)])
    return [packed[i:i + 200] for i in range(0, len(packed), 200)]


def resign(body: bytes, key: IdentityKey = KEY) -> bytes:
    return ref.sign(body[:136], key.ed25519_secret())


# -- byte forms -----------------------------------------------------------------------------------

def test_transcript_and_hash_match_reference_and_hash32() -> None:
    body = ref.pack_body(bytes(CTX), bytes(KEY.authority_id), bytes(DST), 7, 3, 9, bytes(range(32)),
                         bytes(range(32, 64)))
    rec = body + bytes(64)
    assert _receipt.transcript(rec) == ref.transcript(rec) == Tag.RECEIPT.ljust(16, b"\0") + body
    assert _receipt.receipt_hash(rec) == _receipt.receipt_hash(body) == ref.receipt_hash(rec)
    assert _receipt.receipt_hash(rec) == hash32(Tag.RECEIPT, ref.transcript(rec)).digest
    assert _receipt.authority_id(PK) == bytes(KEY.authority_id) == ref.authority_id(PK)
    with pytest.raises(InvalidValue):
        _receipt.transcript(rec[:199])


def test_issued_chain_is_byte_identical_to_reference() -> None:
    recs = chain(20)
    bodies = [ref.pack_body(bytes(CTX), bytes(KEY.authority_id), bytes(DST), 0, 1 + i % 3, i + 1,
                            bytes(32)) for i in range(20)]
    assert recs == ref.sign_chain(bodies, KEY.ed25519_secret())
    total, last, nonce = ref.verify_chain(recs, PK)  # type: ignore[misc]
    s = verify_chain(b"".join(recs), KEY.public)
    assert (s.total, s.head.prev.digest, s.head.nonce, s.count) == (total, last, nonce, 20)


@pytest.mark.parametrize("threads", [1, 2, 3, 16])
def test_sign_and_verify_threads_agree(threads: int) -> None:
    ch = ReceiptChain(KEY, CTX, DST, 3, threads=threads)
    packed = ch.issue_packed([1] * 100)
    assert packed == b"".join(chain(100, epoch=3, costs=[1] * 100))
    s = verify_chain(packed, PK, threads=threads, epoch=3, limit=100)
    assert s.total == 100 and s.head == ch.head


def test_receipt_object_roundtrips() -> None:
    r = ReceiptChain(KEY, CTX, DST, 2).issue(5, hash32(Tag.COMMIT, b"x"))
    assert r.src == KEY.authority_id and r.cost == 5 and r.nonce == 1 and r.prev == Hash32.zero()
    assert Receipt.from_bytes(bytes(r)) == r
    fresh = Receipt(r.ctx, r.src, r.dst, r.epoch, r.cost, r.nonce, r.prev, r.sig, r.commit)
    assert bytes(fresh) == bytes(r) and fresh.hash() == r.hash()
    assert r.hash().digest == ref.receipt_hash(bytes(r))
    r.verify(KEY.public)
    with pytest.raises(SignatureError):
        r.verify(OTHER.public)
    forged = Receipt(r.ctx, r.src, r.dst, r.epoch, r.cost + 1, r.nonce, r.prev, r.sig, r.commit)
    with pytest.raises(SignatureError):
        forged.verify(KEY.public)
    with pytest.raises(ReceiptError):
        Receipt.from_bytes(bytes(r)[:-1])


def test_fact_form_roundtrip_and_strictness() -> None:
    r = ReceiptChain(KEY, CTX, DST, 1).issue_batch([2, 3])[1]
    fact = r.to_fact()
    assert all(isinstance(k, str) for k in fact)
    assert all(isinstance(v, (str, bytes, int)) for v in fact.values())
    assert Receipt.from_fact(fact) == r
    for mutate in (
        lambda f: f.pop("sig"),
        lambda f: f.update(extra=1),
        lambda f: f.update(v=2),
        lambda f: f.update(type="other"),
        lambda f: f.update(ctx=bytes(15)),
        lambda f: f.update(prev="00" * 32),
        lambda f: f.update(nonce=MAX_U64 + 1),
        lambda f: f.update(cost=-1),
        lambda f: f.update(epoch=True),
    ):
        bad = dict(fact)
        mutate(bad)
        with pytest.raises(ReceiptError):
            Receipt.from_fact(bad)


def test_fact_roundtrips_through_dagcbor() -> None:
    import cbor2

    from aura_core import dagcbor

    r = ReceiptChain(KEY, CTX, DST, 1).issue(3, hash32(Tag.COMMIT, b"c"))
    data = dagcbor.encode(r.to_fact())
    assert dagcbor.encode(dagcbor.decode(data)) == data
    assert Receipt.from_fact(dagcbor.decode(data)) == r
    assert cbor2.loads(data) == r.to_fact()  # an independent decoder reads the same map
    assert dagcbor.cid(r.to_fact()) == dagcbor.cid(Receipt.from_fact(dagcbor.decode(data)).to_fact())


def test_bad_arguments() -> None:
    buf = b"".join(chain(2))
    for threads in (0, 17):
        with pytest.raises(InvalidValue):
            verify_chain(buf, PK, threads=threads)
        with pytest.raises(InvalidValue):
            _receipt.sign_batch(bytearray(200), KEY.ed25519_secret(), True, threads)
    with pytest.raises(InvalidValue):
        verify_chain(buf, PK[:31])
    with pytest.raises(InvalidValue):
        verify_chain(buf, PK, limit=-1)
    with pytest.raises(InvalidValue):
        _receipt.sign_batch(bytearray(199), KEY.ed25519_secret())
    with pytest.raises(InvalidValue):
        ReceiptChain(KEY, CTX, DST).issue(1, b"\0" * 32)  # type: ignore[arg-type]
    with pytest.raises(InvalidValue):
        ReceiptChain(KEY, DST, CTX)  # type: ignore[arg-type]
    r = ReceiptChain(KEY, CTX, DST).issue(1)
    with pytest.raises(InvalidValue):
        Receipt(r.ctx, r.src, r.dst, r.epoch, r.cost, r.nonce, r.prev, r.sig[:63])
    with pytest.raises(InvalidValue):
        Receipt(r.dst, r.src, r.dst, r.epoch, r.cost, r.nonce, r.prev, r.sig)  # type: ignore[arg-type]


# -- chains, epochs, issuers ------------------------------------------------------------------------

def test_epoch_rotation_restarts_chain_and_old_receipts_are_invalid() -> None:
    ch = ReceiptChain(KEY, CTX, DST, 1)
    old = ch.issue_batch([1, 1])
    ch.rotate(2)
    new = ch.issue_batch([1])
    assert new[0].nonce == 1 and new[0].prev == Hash32.zero() and new[0].epoch == 2
    verify_chain(new, PK, epoch=2)
    expect("epoch", 0, [bytes(r) for r in old], epoch=2)
    expect("epoch", 2, [bytes(r) for r in old + new])
    ch.rotate(1)  # older: no-op
    assert ch.head.epoch == 2


def test_continuing_a_verified_chain() -> None:
    ch = ReceiptChain(KEY, CTX, DST, 4)
    a = ch.issue_batch([1, 2])
    b = ch.issue_batch([3])
    s = verify_chain(a, PK, limit=10)
    s2 = verify_chain(b, PK, after=s.head, spent_before=s.total, limit=6)
    assert s2.total == 3 and s2.head == ch.head
    with pytest.raises(ChainError) as info:
        verify_chain(b, PK, after=s.head, spent_before=s.total, limit=5)
    assert info.value.index == 0
    with pytest.raises(ChainError):
        verify_chain(b, PK)  # without the head, receipt 0's prev is not zero
    with pytest.raises(ChainError):
        verify_chain(a, PK, after=ChainHead(4, 1, Hash32.zero()))  # nonce 1 not > 1


def test_issuer_binds_src_to_key_and_keeps_chains_apart() -> None:
    iss = ReceiptIssuer(KEY)
    r1 = iss.issue(CTX, DST, 1, epoch=1)
    r2 = iss.issue(CTX2, DST, 2, epoch=1)
    r3 = iss.issue(CTX, DST, 3, epoch=1)
    assert r1.src == r2.src == KEY.authority_id
    assert r3.prev == r1.hash() and r2.prev == Hash32.zero()
    verify_chain([r1, r3], KEY.public, epoch=1)
    iss.rotate(CTX, 2)
    with pytest.raises(UsageError):
        iss.issue(CTX, DST, 1, epoch=1)
    assert iss.issue(CTX, DST, 1, epoch=2).nonce == 1


def test_nonce_exhaustion_and_cost_range() -> None:
    ch = ReceiptChain(KEY, CTX, DST, head=ChainHead(0, MAX_U64 - 1))
    last = ch.issue(1)
    assert last.nonce == MAX_U64
    with pytest.raises(ReceiptError):
        ch.issue(1)
    for bad in (0, -1, MAX_U64 + 1, 1.0, True):
        with pytest.raises(InvalidValue):
            ch.issue_batch([bad])  # type: ignore[list-item]


def test_receipt_field_overflow_rejected() -> None:
    r = ReceiptChain(KEY, CTX, DST).issue(1)
    for name in ("epoch", "cost", "nonce"):
        kw = {f: getattr(r, f) for f in ("ctx", "src", "dst", "epoch", "cost", "nonce", "prev", "sig")}
        kw[name] = MAX_U64 + 1
        with pytest.raises(InvalidValue):
            Receipt(**kw)  # type: ignore[arg-type]


# -- bad input: each rejected, naming the first bad receipt ------------------------------------------

def test_forged_cost() -> None:
    recs = chain(10)
    r = bytearray(recs[4])
    r[63] ^= 1  # cost changed, signature kept
    recs[4] = bytes(r)
    expect("sig", 4, recs)


def test_forged_signature_bits() -> None:
    recs = chain(10)
    recs[9] = recs[9][:-1] + bytes([recs[9][-1] ^ 0x80])
    expect("sig", 9, recs)


def test_reordered_reports_prev_first_when_nonces_allow() -> None:
    recs = chain(10)
    recs[3], recs[4] = recs[4], recs[3]
    # receipt 3 now has nonce 5 > 3, but its prev is Hash32(old receipt 3), not Hash32(receipt 2)
    kind, index = ref.verify_chain(recs, PK)  # type: ignore[misc]
    assert (kind, index) == ("prev", 3)
    expect("prev", 3, recs)


def test_duplicated() -> None:
    recs = chain(10)
    recs.insert(6, recs[5])
    expect("nonce", 6, recs)


def test_truncated_buffer_and_missing_receipt() -> None:
    recs = chain(10)
    buf = b"".join(recs)
    expect("truncated", 9, buf[:-7])
    del recs[5]
    expect("prev", 5, recs)


def test_cross_context_receipt_in_chain() -> None:
    recs = chain(6)
    other = chain(6, ctx=CTX2)
    # splice a correctly linked, correctly signed receipt of another context
    body = other[3][:72] + ref.receipt_hash(recs[2]) + other[3][104:136]
    recs[3] = resign(body)
    expect("ctx", 3, recs)
    expect("ctx", 0, chain(3), ctx=CTX2)


def test_cross_epoch_receipt_in_chain() -> None:
    recs = chain(6)
    body = recs[3][:48] + (1).to_bytes(8, "big") + recs[3][56:136]
    recs[3] = resign(body)
    expect("epoch", 3, recs)


def test_wrong_signer() -> None:
    # a chain whose src claims KEY's authority but signed by OTHER
    recs = chain(5)
    recs = [resign(r, OTHER) for r in recs]
    expect("sig", 0, recs)
    # a genuine chain of OTHER checked against KEY's public key
    theirs = chain(5, key=OTHER)
    expect("signer", 0, theirs)
    # one receipt in the middle from another signer, well linked and self-consistent
    mine = chain(5)
    body = bytes(CTX) + bytes(OTHER.authority_id) + mine[2][32:136]
    mine[2] = resign(body, OTHER)
    expect("src", 2, mine)


def test_broken_prev_in_the_middle_of_a_long_chain() -> None:
    recs = chain(1000)
    body = recs[617][:72] + bytes(32) + recs[617][104:136]
    recs[617] = resign(body)
    expect("prev", 617, recs)
    with pytest.raises(ChainError) as info:
        verify_chain(b"".join(recs), PK, threads=2)
    assert info.value.index == 617


def test_cost_sum_overflow_and_limit_and_zero() -> None:
    recs = chain(3, costs=[MAX_U64 - 1, 1, 1])
    expect("overflow", 2, recs)
    expect("limit", 1, chain(3, costs=[5, 5, 5]), limit=9)
    verify_chain(b"".join(chain(3, costs=[5, 5, 5])), PK, limit=15)
    zero = chain(2)
    zero[1] = resign(zero[1][:56] + bytes(8) + zero[1][64:136])
    expect("cost_zero", 1, zero)


def test_not_a_receipt_in_sequence() -> None:
    good = ReceiptChain(KEY, CTX, DST).issue_batch([1, 1])
    with pytest.raises(ChainError) as info:
        verify_chain([good[0], b"junk"], PK)  # type: ignore[list-item]
    assert info.value.index == 1


def test_empty_chain() -> None:
    s = verify_chain([], PK, epoch=3)
    assert s.count == 0 and s.total == 0 and s.head == ChainHead(3)


MUTATIONS = ["flip", "swap", "dup", "drop", "resign_prev", "resign_epoch", "resign_ctx", "none"]


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 12), st.sampled_from(MUTATIONS), st.integers(0, 2**32), st.integers(0, 40))
def test_differential_against_reference(n: int, mutation: str, seed: int, limit: int) -> None:
    rnd = random.Random(seed)
    recs = chain(n, costs=[rnd.randint(1, 4) for _ in range(n)])
    i = rnd.randrange(n)
    if mutation == "flip":
        r = bytearray(recs[i])
        r[rnd.randrange(200)] ^= 1 << rnd.randrange(8)
        recs[i] = bytes(r)
    elif mutation == "swap" and n > 1:
        j = rnd.randrange(n)
        recs[i], recs[j] = recs[j], recs[i]
    elif mutation == "dup":
        recs.insert(i, recs[i])
    elif mutation == "drop" and n > 1:
        del recs[i]
    elif mutation == "resign_prev":
        recs[i] = resign(recs[i][:72] + rnd.randbytes(32) + recs[i][104:136])
    elif mutation == "resign_epoch":
        recs[i] = resign(recs[i][:48] + rnd.randbytes(8) + recs[i][56:136])
    elif mutation == "resign_ctx":
        recs[i] = resign(rnd.randbytes(16) + recs[i][16:136])
    expected = ref.verify_chain(recs, PK, limit=limit)
    buf = b"".join(recs)
    if isinstance(expected[0], str):
        exc, words = KINDS[expected[0]]  # type: ignore[index]
        for threads in (1, 2):
            with pytest.raises(exc) as info:
                verify_chain(buf, PK, limit=limit, threads=threads)
            assert info.value.index == expected[1] and words in str(info.value)
    else:
        s = verify_chain(buf, PK, limit=limit, threads=2)
        assert (s.total, s.head.prev.digest, s.head.nonce) == expected


# -- vectors ------------------------------------------------------------------------------------------

def test_vectors_selftest_regenerate_and_reference() -> None:
    import json
    from importlib import resources

    from aura_core import vectors_receipts

    results = list(vectors_receipts.check())
    assert results and all(ok for _, ok, _ in results), [r for r in results if not r[1]]
    stored = json.loads(resources.files("aura_core.vectors").joinpath("receipts.json").read_text())
    assert vectors_receipts.generate() == stored
    for case in stored["valid"]:  # the reference reproduces every byte from the fields
        pk = bytes.fromhex(case["public_key"])
        sk = IdentityKey.from_seed(bytes.fromhex(case["ed25519_seed"])).ed25519_secret()
        recs = []
        for rc in case["receipts"]:
            body = ref.pack_body(bytes(ContextId.parse(rc["ctx"])), bytes(AuthorityId.parse(rc["src"])),
                                 bytes(AuthorityId.parse(rc["dst"])), rc["epoch"], rc["cost"],
                                 rc["nonce"], bytes.fromhex(rc["prev"]), bytes.fromhex(rc["commit"]))
            rec = ref.sign(body, sk)
            assert rec.hex() == rc["packed"] and ref.receipt_hash(rec).hex() == rc["hash32"]
            recs.append(rec)
        assert ref.verify_chain(recs, pk)[0] == case["total"]
    kinds = {"SignatureError": ("sig", "signer"), "ChainError": tuple(k for k in KINDS if k not in ("sig", "signer"))}
    for case in stored["invalid"]:
        recs = [bytes.fromhex(x) for x in case["receipts"]]
        got = ref.verify_chain(recs, bytes.fromhex(case["public_key"]), **case["options"])
        assert got[1] == case["index"] and got[0] in kinds[case["error"]], (case["name"], got)


def test_fuzz_target_over_seed_corpus_and_random_bytes() -> None:
    from tests.fuzz import fuzz_receipt

    rnd = random.Random(1234)
    corpus = fuzz_receipt.seeds()
    corpus += [rnd.randbytes(rnd.choice([1, 2, 201, 401, 600])) for _ in range(40)]
    for base in fuzz_receipt.seeds()[:3]:
        for _ in range(15):
            b = bytearray(base)
            b[rnd.randrange(1, len(b))] ^= 1 << rnd.randrange(8)
            corpus.append(bytes(b))
    assert fuzz_receipt.run_corpus(corpus) == len(corpus)
