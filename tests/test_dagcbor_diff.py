"""Differential and property tests of the compiled DAG-CBOR codec against the pure-Python
reference (tests/reference/dagcbor_ref.py), the strict `dag-cbor` package (PyPI) and libipld.

Random data models come from hypothesis (seeds printed on failure) and from a seeded generator
(the seed is printed with ``-s`` and in the assertion message)."""

from __future__ import annotations

import hashlib
import math
import os
import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aura_core import dagcbor
from aura_core.cid import CID
from aura_core.errors import DecodeError
from tests.reference import dagcbor_ref as ref

pytestmark = pytest.mark.native

dag_cbor = pytest.importorskip("dag_cbor")
multiformats = pytest.importorskip("multiformats")

_CIDS = [CID.for_block(bytes([i])) for i in range(4)] + [
    CID.decode("QmQg1v4o9xdT3Q14wh4S7dxZkDjyZ9ssFzFzyep1YrVJBY"),
    CID.for_block(b"x", codec=0x55, hash="blake2b-256")]

scalars = (
    st.none() | st.booleans()
    | st.integers(min_value=-(2**64), max_value=2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.binary(max_size=80) | st.text(max_size=40)
    | st.sampled_from(_CIDS)
)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=6)
    | st.dictionaries(st.text(max_size=12), inner, max_size=6),
    max_leaves=40,
)


def to_theirs(v):
    """Our data model -> dag_cbor's (multiformats CID for links)."""
    if isinstance(v, CID):
        return multiformats.CID.decode(bytes(v))
    if isinstance(v, dict):
        return {k: to_theirs(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [to_theirs(x) for x in v]
    return v


def from_theirs(v):
    if isinstance(v, multiformats.CID):
        return CID.decode(bytes(v))
    if isinstance(v, dict):
        return {k: from_theirs(x) for k, x in v.items()}
    if isinstance(v, list):
        return [from_theirs(x) for x in v]
    return v


def same(a, b):
    """Equality that tells -0.0 from 0.0 and bool from int."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return a == b and math.copysign(1, a) == math.copysign(1, b)
    if isinstance(a, dict):
        return list(a) == list(b) and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    return a == b


def canonical_python(v):
    """What decode(encode(v)) returns for v: tuples become lists, maps in canonical order."""
    if isinstance(v, dict):
        items = sorted(v.items(), key=lambda kv: (len(kv[0].encode()), kv[0].encode()))
        return {k: canonical_python(x) for k, x in items}
    if isinstance(v, (list, tuple)):
        return [canonical_python(x) for x in v]
    if isinstance(v, (bytearray, memoryview)):
        return bytes(v)
    return v


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(values)
def test_roundtrip_and_agreement_with_reference_and_dag_cbor(value):
    data = dagcbor.encode(value)
    assert data == ref.encode(value)
    assert data == dag_cbor.encode(to_theirs(value))
    back = dagcbor.decode(data)
    assert same(back, canonical_python(value))
    assert same(ref.decode(data), back)
    assert same(from_theirs(dag_cbor.decode(data)), back)
    assert dagcbor.encode(back) == data
    assert dagcbor.digest(value) == hashlib.sha256(data).digest()
    assert dagcbor.cid(value) == CID.for_block(data)
    buf = bytearray(b"xx")
    assert dagcbor.encode_into(value, buf, 2) == len(data) and buf[2:] == data


@settings(max_examples=300, deadline=None)
@given(values)
def test_agreement_with_libipld(value):
    libipld = pytest.importorskip("libipld")
    # libipld has its own link type and refuses -0.0: compare on the rest of the model
    if _has(value, lambda x: isinstance(x, CID) or (isinstance(x, float) and x == 0
                                                     and math.copysign(1, x) < 0)):
        return
    data = dagcbor.encode(value)
    assert libipld.encode_dag_cbor(value) == data
    assert same(libipld.decode_dag_cbor(data), dagcbor.decode(data))


def _has(v, pred):
    if pred(v):
        return True
    if isinstance(v, dict):
        return any(_has(x, pred) for x in v.values())
    if isinstance(v, (list, tuple)):
        return any(_has(x, pred) for x in v)
    return False


def _mutations(data: bytes, rng: random.Random):
    """Small edits of a valid encoding: flips, truncations, insertions, deletions."""
    for _ in range(12):
        b = bytearray(data)
        op = rng.randrange(4)
        if op == 0 and b:
            b[rng.randrange(len(b))] ^= 1 << rng.randrange(8)
        elif op == 1 and b:
            del b[rng.randrange(len(b)):]
        elif op == 2:
            b.insert(rng.randrange(len(b) + 1), rng.randrange(256))
        elif b:
            del b[rng.randrange(len(b))]
        yield bytes(b)


@settings(max_examples=200, deadline=None)
@given(values, st.integers(min_value=0, max_value=2**32))
def test_mutated_inputs_decode_exactly_like_the_reference(value, seed):
    rng = random.Random(seed)
    for blob in _mutations(dagcbor.encode(value), rng):
        try:
            want = ref.decode(blob)
        except DecodeError as exc:
            with pytest.raises(type(exc)) as info:
                dagcbor.decode(blob)
            assert info.value.offset == exc.offset, blob.hex()
            continue
        got = dagcbor.decode(blob)
        assert same(got, want), blob.hex()
        assert dagcbor.encode(got) == blob


def test_random_bytes_decode_like_the_reference_and_dag_cbor():
    seed = int.from_bytes(os.urandom(4), "big")
    rng = random.Random(seed)
    for _ in range(3000):
        blob = rng.randbytes(rng.randrange(1, 24))
        try:
            want = ref.decode(blob)
        except DecodeError as exc:
            with pytest.raises(type(exc)):
                dagcbor.decode(blob)
            continue
        got = dagcbor.decode(blob)
        assert same(got, want), f"seed {seed}: {blob.hex()}"
        assert from_theirs(dag_cbor.decode(blob)) == got, f"seed {seed}: {blob.hex()}"


def test_fact_shaped_maps_agree_with_all_peers():
    from aura_core.benchsuite.dagcbor import make_facts
    libipld = pytest.importorskip("libipld")
    for fact in make_facts(300):
        data = dagcbor.encode(fact)
        assert data == libipld.encode_dag_cbor(fact) == dag_cbor.encode(fact) == ref.encode(fact)
        assert dagcbor.decode(data) == fact
        assert dagcbor.cid(fact) == CID.for_block(data)
