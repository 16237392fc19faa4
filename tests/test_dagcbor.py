"""DAG-CBOR codec: fixtures, negative vectors, canonical-form rejection with offsets, encoder
errors with paths, the Python mapping, encode_into, streaming digests, and the C pieces."""

from __future__ import annotations

import hashlib
import json
import math
import os
from importlib import resources

import pytest

from aura_core import _dagcbor, dagcbor, errors
from aura_core.cid import CID
from aura_core.errors import (DecodeError, EncodeError, InvalidValue, NonCanonicalError,
                              TruncatedError, UnsupportedError)
from aura_core.vectors_dagcbor import _fixture_files, check, generate_negative
from tests.reference import dagcbor_ref as ref

pytestmark = pytest.mark.native

FIXTURES = list(_fixture_files())
NEGATIVE = json.loads(resources.files("aura_core.vectors").joinpath(
    "dagcbor", "aura-negative.json").read_text())["cases"]


def test_all_128_fixtures_are_shipped():
    assert len(FIXTURES) == 128
    assert len({name for _, name, _ in FIXTURES}) == 128


@pytest.mark.parametrize("folder,name,data", FIXTURES, ids=[f for f, _, _ in FIXTURES])
def test_fixture_roundtrip_and_cid(folder, name, data):
    value = dagcbor.decode(data)
    assert dagcbor.encode(value) == data
    want = CID.decode(name)
    assert str(want) == name
    assert dagcbor.cid(value) == want
    assert dagcbor.digest(value) == hashlib.sha256(data).digest() == want.digest
    assert dagcbor.digest(value, "blake2b-256") == hashlib.blake2b(data, digest_size=32).digest()
    # the pure-Python reference agrees on both directions
    assert ref.decode(data) == value
    assert ref.encode(value) == data


def test_selftest_check_all_pass():
    results = list(check())
    failed = [(c, d) for c, ok, d in results if not ok]
    assert not failed
    assert len(results) >= 128 + 1 + len(NEGATIVE)


def test_negative_file_is_what_the_generator_writes():
    assert generate_negative()["cases"] == NEGATIVE


@pytest.mark.parametrize("case", NEGATIVE, ids=[c["name"] for c in NEGATIVE])
def test_negative_vectors_rejected_with_class_and_offset(case):
    data = bytes.fromhex(case["hex"])
    cls = getattr(errors, case["error"])
    for decoder in (dagcbor.decode, ref.decode):
        with pytest.raises(cls) as info:
            decoder(data)
        assert info.value.offset == case["offset"], (decoder, info.value)
    # every other buffer type is decoded the same way
    with pytest.raises(cls):
        dagcbor.decode(bytearray(data))
    with pytest.raises(cls):
        dagcbor.decode(memoryview(data))


def test_negative_vectors_also_rejected_by_independent_dag_cbor():
    dag_cbor = pytest.importorskip("dag_cbor")
    accepted = []
    for case in NEGATIVE:
        try:
            dag_cbor.decode(bytes.fromhex(case["hex"]))
        except Exception:
            continue
        accepted.append(case["name"])
    # dag-cbor (pure Python, strict) has a deeper nesting limit than ours; everything else
    # it must reject as well.
    assert [n for n in accepted if not n.startswith("nesting")] == []


def test_upstream_duplicate_key_vector():
    with pytest.raises(NonCanonicalError) as info:
        dagcbor.decode(bytes.fromhex("a3636261720363666f6f0163666f6f02"))
    assert info.value.offset == 11


# ---- the Python mapping ----------------------------------------------------------------------

INT_EDGES = [0, 1, 23, 24, 255, 256, 65535, 65536, 2**32 - 1, 2**32, 2**63 - 1, 2**63, 2**64 - 1,
             -1, -24, -25, -256, -257, -65536, -65537, -2**32, -2**32 - 1, -2**63, -2**63 - 1,
             -2**64]


@pytest.mark.parametrize("n", INT_EDGES)
def test_integer_full_range(n):
    data = dagcbor.encode(n)
    assert data == ref.encode(n)
    back = dagcbor.decode(data)
    assert back == n and type(back) is int


@pytest.mark.parametrize("n", [2**64, -2**64 - 1, 10**30, -10**30])
def test_integer_out_of_range_is_encode_error(n):
    with pytest.raises(EncodeError) as info:
        dagcbor.encode({"a": [n]})
    assert info.value.path == "$.a[0]"


def test_floats_always_64_bit_and_finite():
    for f in [0.0, -0.0, 0.5, 1.1, -1e-323, 1.7976931348623157e308, 5e-324]:
        data = dagcbor.encode(f)
        assert len(data) == 9 and data[0] == 0xFB
        back = dagcbor.decode(data)
        assert back == f and math.copysign(1, back) == math.copysign(1, f)
    for bad in [math.nan, math.inf, -math.inf]:
        with pytest.raises(EncodeError):
            dagcbor.encode([bad])


def test_bool_none_are_not_ints():
    assert dagcbor.encode([True, False, None, 1, 0]) == bytes.fromhex("85f5f4f60100")
    assert dagcbor.decode(bytes.fromhex("83f5f4f6")) == [True, False, None]


def test_bytes_like_inputs_encode_as_bytes_and_decode_as_bytes():
    raw = bytes(range(40))
    want = dagcbor.encode(raw)
    for v in (bytearray(raw), memoryview(raw), memoryview(bytearray(raw))):
        assert dagcbor.encode(v) == want
    assert type(dagcbor.decode(want)) is bytes
    with pytest.raises(EncodeError):
        dagcbor.encode(memoryview(raw)[::2])   # not contiguous


def test_bytes_that_look_like_a_cid_stay_bytes():
    c = CID.for_block(b"x")
    for raw in (bytes(c), b"\0" + bytes(c)):
        back = dagcbor.decode(dagcbor.encode({"link": raw}))
        assert back == {"link": raw} and type(back["link"]) is bytes
    back = dagcbor.decode(dagcbor.encode({"link": c}))
    assert type(back["link"]) is CID and back["link"] == c


def test_tuple_encodes_as_list_and_key_order():
    assert dagcbor.encode((1, 2)) == dagcbor.encode([1, 2])
    value = {"bb": 1, "a": 2, "b": 3, "aaa": 4, "é": 5, "z": 6}
    data = dagcbor.encode(value)
    assert data == ref.encode(value)
    assert list(dagcbor.decode(data)) == ["a", "b", "z", "bb", "é", "aaa"]


def test_subclasses_encode_like_their_base():
    import enum

    class Flag(enum.IntEnum):
        A = 7

    class S(str):
        pass

    class D(dict):
        pass

    class L(list):
        pass

    class Sneaky(int):
        def __gt__(self, other):
            raise AssertionError("the encoder must not run Python code")

        __lt__ = __rsub__ = __sub__ = __gt__

    assert dagcbor.encode([Sneaky(2**64 - 1), Sneaky(-2**64)]) == \
        dagcbor.encode([2**64 - 1, -2**64])
    with pytest.raises(EncodeError):
        dagcbor.encode([Sneaky(2**64)])

    class B(bytes):
        pass

    class BA(bytearray):
        pass

    class F(float):
        pass

    class T(tuple):
        pass

    value = D({S("k"): L([Flag.A, S("v"), B(b"b"), BA(b"ba"), F(1.5), T((1,))])})
    want = dagcbor.encode({"k": [7, "v", b"b", b"ba", 1.5, [1]]})
    assert dagcbor.encode(value) == want
    assert dagcbor.digest(value) == hashlib.sha256(want).digest()


@pytest.mark.parametrize("value,path,what", [
    ({"a": {"b": [1, 2, object()]}}, "$.a.b[2]", "object"),
    ({"facts": [{}, {}, {}, {"key": {1, 2}}]}, "$.facts[3].key", "set"),
    ({1: "x"}, "$", "map key"),
    ({"a": {"x y": math.nan}}, "$.a['x y']", "NaN"),
    ([["\ud800"]], "$[0][0]", "surrogate"),
    ({"\udc00": 1}, "$['\\udc00']", "surrogate"),
    (object(), "$", "object"),
])
def test_encode_error_names_the_path(value, path, what):
    with pytest.raises(EncodeError) as info:
        dagcbor.encode(value)
    assert info.value.path == path
    assert what in str(info.value)
    with pytest.raises(EncodeError):
        dagcbor.digest(value)


def test_depth_limit_both_ways():
    ok = []
    for _ in range(dagcbor.MAX_DEPTH - 1):
        ok = [ok]
    assert dagcbor.decode(dagcbor.encode(ok)) == ok
    with pytest.raises(EncodeError):
        dagcbor.encode([ok])
    cyclic: list = []
    cyclic.append(cyclic)
    with pytest.raises(EncodeError):
        dagcbor.encode(cyclic)
    deep_map: dict = {}
    cur = deep_map
    for _ in range(dagcbor.MAX_DEPTH):
        cur["a"] = {}
        cur = cur["a"]
    with pytest.raises(EncodeError):
        dagcbor.encode(deep_map)
    with pytest.raises(UnsupportedError):
        dagcbor.decode(b"\xa1\x61a" * dagcbor.MAX_DEPTH + b"\xa0")


def test_decode_accepts_any_buffer_and_rejects_non_buffers():
    data = dagcbor.encode({"a": [1, b"x", "y"]})
    for buf in (data, bytearray(data), memoryview(data), memoryview(b"zz" + data)[2:]):
        assert dagcbor.decode(buf) == {"a": [1, b"x", "y"]}
    with pytest.raises(InvalidValue):
        dagcbor.decode("not bytes")
    with pytest.raises(InvalidValue):
        dagcbor.decode(memoryview(data)[::2])


def test_huge_declared_lengths_fail_fast():
    for data in [bytes.fromhex("9b0000000100000000"), bytes.fromhex("bb7fffffffffffffff"),
                 bytes.fromhex("5b7fffffffffffffff00"), bytes.fromhex("7b8000000000000000")]:
        with pytest.raises(TruncatedError):
            dagcbor.decode(data)


def test_decoded_keys_are_interned_and_equal():
    a = dagcbor.decode(dagcbor.encode({"alpha": 1, "ß": 2}))
    b = dagcbor.decode(dagcbor.encode({"alpha": 3}))
    ka = [k for k in a if k == "alpha"][0]
    kb = next(iter(b))
    assert ka == "alpha" and ka is kb
    assert a["ß"] == 2


# ---- encode_into --------------------------------------------------------------------------

def test_encode_into_bytearray_and_fixed_buffers():
    value = {"n": 1, "s": "x" * 100}
    want = dagcbor.encode(value)
    buf = bytearray(b"HEAD")
    n = dagcbor.encode_into(value, buf, 4)
    assert n == len(want) and buf == b"HEAD" + want
    buf = bytearray(1000)
    assert dagcbor.encode_into(value, buf) == len(want) and bytes(buf) == want
    fixed = memoryview(bytearray(len(want) + 2))
    assert dagcbor.encode_into(value, fixed, 2) == len(want)
    assert bytes(fixed[2:]) == want
    with pytest.raises(InvalidValue):
        dagcbor.encode_into(value, memoryview(bytearray(10)))
    with pytest.raises(InvalidValue):
        dagcbor.encode_into(value, bytearray(), 5)
    with pytest.raises(InvalidValue):
        dagcbor.encode_into(value, bytearray(), -1)


# ---- streaming digests ----------------------------------------------------------------------

def test_digest_equals_hash_of_encoding_for_large_and_mixed_values():
    big = os.urandom(300_000)
    value = {"blobs": [big, bytearray(big[:70_000]), memoryview(big)[:5000]],
             "text": "é" * 50_000 + "x" * 100_000, "n": list(range(5000)),
             "nested": [{"k": i, "v": b"v" * (i % 50)} for i in range(2000)]}
    data = dagcbor.encode(value)
    assert dagcbor.digest(value) == hashlib.sha256(data).digest()
    assert dagcbor.digest(value, "blake2b-256") == hashlib.blake2b(data, digest_size=32).digest()
    c = dagcbor.cid(value, "blake2b-256")
    assert c.version == 1 and c.codec == 0x71 and c.hash_code == 0xB220
    assert c == CID.for_block(data, hash="blake2b-256")
    assert dagcbor.cid(value) == CID.for_block(data)


def test_digest_of_many_sizes_crossing_buffer_boundaries():
    for n in [0, 1, 63, 64, 65, 4095, 4096, 4097, 16383, 16384, 16385, 65535, 65536, 65537]:
        value = [b"a" * n, "b" * n, [b"c" * (n // 3)] * 3]
        assert dagcbor.digest(value) == hashlib.sha256(dagcbor.encode(value)).digest()


def test_unknown_hash_rejected():
    with pytest.raises(InvalidValue):
        dagcbor.digest(1, "md5")
    with pytest.raises(InvalidValue):
        dagcbor.cid(1, "sha3-256")


def test_reentrant_encode_from_cid_subclass():
    class LoudCID(CID):
        __slots__ = ()

        def __bytes__(self):
            dagcbor.encode({"inner": [1, 2, 3]})   # re-enters the encoder
            return super().__bytes__()

    base = CID.for_block(b"q")
    loud = LoudCID.decode(bytes(base))
    assert dagcbor.encode({"x": [loud, 1]}) == dagcbor.encode({"x": [base, 1]})
    assert dagcbor.digest({"x": [loud]}) == dagcbor.digest({"x": [base]})


# ---- the C pieces ---------------------------------------------------------------------------

def test_sha256_c_matches_hashlib_both_implementations():
    assert _dagcbor.sha256_impl() in ("sha-ni", "portable")
    for n in [0, 1, 3, 55, 56, 57, 63, 64, 65, 119, 120, 127, 128, 129, 1000, 65536 + 7]:
        data = os.urandom(n)
        want = hashlib.sha256(data).digest()
        assert _dagcbor.sha256(data) == want
        assert _dagcbor.sha256(data, portable=True) == want


def test_utf8_validator_agrees_with_python():
    samples = [b"", b"abc", "é水𐅑".encode(), b"\xc3\x28", b"\xed\xa0\x80", b"\xc0\x80",
               b"\xf4\x90\x80\x80", b"abcdefgh\xff", b"\xe2\x82", b"ok\xf0\x9f\x98\x80ok"]
    rnd = [os.urandom(n) for n in range(1, 40) for _ in range(20)]
    for s in samples + rnd:
        try:
            s.decode("utf-8")
            want = len(s)
        except UnicodeDecodeError as exc:
            want = exc.start
        assert _dagcbor.utf8_invalid_at(s) == want, s


def test_cid_check_c():
    good = bytes(CID.for_block(b"a"))
    assert _dagcbor.check_cid_bytes(good) is None
    assert _dagcbor.check_cid_bytes(bytes(CID.decode("QmQg1v4o9xdT3Q14wh4S7dxZkDjyZ9ssFzFzyep1YrVJBY"))) is None
    assert _dagcbor.check_cid_bytes(b"") == 0
    assert _dagcbor.check_cid_bytes(good[:-1]) == 4
    assert _dagcbor.check_cid_bytes(b"\x01\x71\x12\x80\x00" + bytes(32)) == 3   # non-minimal varint
    assert _dagcbor.check_cid_bytes(b"\x02" + good[1:]) == 0


def test_decode_error_is_the_documented_tree():
    assert issubclass(TruncatedError, DecodeError)
    assert issubclass(DecodeError, ValueError)


# ---- fuzz target smoke run (the sanitizer pass runs it) ---------------------------------------

def test_fuzz_target_over_seed_corpus_and_random_bytes():
    import random

    from tests.fuzz import fuzz_dagcbor as fz

    seeds = fz.seeds()
    rng = random.Random(1234)
    mutated = []
    for s in seeds:
        for _ in range(20):
            b = bytearray(s)
            if b:
                b[rng.randrange(len(b))] = rng.randrange(256)
            mutated.append(bytes(b))
    noise = [rng.randbytes(rng.randrange(0, 64)) for _ in range(2000)]
    assert fz.run_corpus(seeds + mutated + noise) == len(seeds) + len(mutated) + len(noise)


def test_key_layout_cache_all_key_lengths_and_slot_churn():
    # every key length around the pre-encoding limits, encoded repeatedly (cache hits), and
    # many different layouts interleaved (slot replacement while a map is being written)
    for length in range(0, 40):
        value = {"k" * length: 1, "a": {"x" * length: [2, {"y" * (length + 1): 3}]}, "b": 4}
        want = ref.encode(value)
        for _ in range(3):
            assert dagcbor.encode(value) == want
            assert dagcbor.decode(want) == value
    maps = [{f"k{i}": {f"n{j}": j for j in range(i % 7)}, "z" * (i % 31): i} for i in range(400)]
    for _ in range(2):
        for m in maps:
            assert dagcbor.encode(m) == ref.encode(m)
            assert dagcbor.decode(ref.encode(m)) == m


def test_stub_declares_every_public_function():
    import ast
    from pathlib import Path

    stub = ast.parse((Path(_dagcbor.__file__).parent / "_dagcbor.pyi").read_text())
    declared = {n.name for n in stub.body if isinstance(n, (ast.FunctionDef, ast.ClassDef))}
    declared |= {n.target.id for n in stub.body if isinstance(n, ast.AnnAssign)}
    public = {n for n, v in vars(_dagcbor).items()
              if not n.startswith("__") and (callable(v) or n.isupper())
              and getattr(v, "__module__", "aura_core._dagcbor") == "aura_core._dagcbor"}
    assert public - {"_EncFail", "_Enc"} <= declared
    assert declared <= set(vars(_dagcbor))


def test_decoder_layouts_survive_nested_slot_replacement():
    # Outer and inner maps whose layouts compete for cache slots: many shapes, nested, decoded
    # repeatedly in varying order; every result must equal the reference decoder's.
    import random

    rng = random.Random(99)
    shapes = []
    for i in range(300):
        inner = {f"i{j}": j for j in range(rng.randrange(1, 6))}
        outer = {f"o{k}": (inner if k == 0 else k) for k in range(rng.randrange(1, 8))}
        outer["z" * rng.randrange(1, 5)] = [dict(inner), {"q": inner}]
        shapes.append(ref.encode(outer))
    for _ in range(3):
        rng.shuffle(shapes)
        for blob in shapes:
            assert dagcbor.decode(blob) == ref.decode(blob)


def _facts_with_optional_keys(n):
    # Two record kinds with the same key count and first key (one optional key or the other),
    # plus values of every kind, so the decoder's two-way layout sets and template dicts work.
    import random

    rng = random.Random(5)
    out = []
    for i in range(n):
        rec = {"ctx": rng.randbytes(32), "seq": i, "kind": rng.choice(["a", "bb", "ccc"]),
               "parts": [{"role": "x", "cost": rng.getrandbits(16)}] * (i % 3),
               "cid": dagcbor.cid(i % 5) if i % 7 == 0 else i}
        rec["prev" if i % 2 else "note"] = rng.randbytes(8) if i % 2 else "n%d" % i
        if i % 5 == 0:
            rec["sub"] = {"ctx": 1, "seq": {"ctx": 2}}      # nested maps sharing first keys
        out.append(rec)
    return out


def test_decoder_layout_ways_and_template_dicts_behave_like_plain_dicts():
    import gc

    facts = _facts_with_optional_keys(300)
    blobs = [ref.encode(f) for f in facts]
    for _ in range(3):
        for f, blob in zip(facts, blobs):
            d = dagcbor.decode(blob)
            assert d == f and list(d) == sorted(f, key=lambda k: (len(k.encode()), k.encode()))
            # GC tracking as PyDict_SetItem would leave it: tracked iff a value is a container
            assert gc.is_tracked(d) == any(isinstance(v, (list, dict, CID)) for v in d.values())
            # the dict is an ordinary dict afterwards: lookups, inserts, deletes, copies
            for k in f:
                assert d[k] == f[k] and k in d
            d["zz-new"] = 1
            del d["ctx"]
            assert d.pop("seq") == f["seq"]
            assert len(d) == len(f) - 1 and d["zz-new"] == 1 and dict(d) == d


def test_decoder_templates_balance_references_and_fail_cleanly():
    import sys

    facts = _facts_with_optional_keys(60)
    blobs = [ref.encode(f) for f in facts]
    for blob in blobs:
        dagcbor.decode(blob)                # warm the layouts
    none_refs = sys.getrefcount(None)
    for _ in range(20):
        for blob in blobs:
            dagcbor.decode(blob)
    assert abs(sys.getrefcount(None) - none_refs) < 20
    # a failure part way through a map that started from a template (its partly filled copy is
    # dropped): the strict error
    for blob in blobs[:10]:
        for cut in range(1, len(blob)):
            with pytest.raises(TruncatedError):
                dagcbor.decode(blob[:cut])
        bad = bytearray(blob)
        bad[-1:] = b"\xf7"                  # last value: undefined (outside the data model)
        with pytest.raises(DecodeError):
            dagcbor.decode(bytes(bad))


def test_encoder_reads_every_dict_shape():
    # combined tables with deleted entries, split tables (instance __dict__), dict subclasses
    # and general (non-str-keyed) tables: the same bytes as the reference, or the path error
    d = {f"k{i}": i for i in range(12)}
    for i in range(0, 12, 3):
        del d[f"k{i}"]
    d["new"] = [1, {"x": 2}]
    assert dagcbor.encode(d) == ref.encode(d)
    assert dagcbor.decode(dagcbor.encode(d)) == d

    class Obj:
        def __init__(self):
            self.ctx = b"c"
            self.seq = 7

    o = Obj()
    assert dagcbor.encode(vars(o)) == ref.encode({"ctx": b"c", "seq": 7})

    class Sub(dict):
        pass

    assert dagcbor.encode(Sub(b=1, a=2)) == ref.encode({"a": 2, "b": 1})
    with pytest.raises(EncodeError):
        dagcbor.encode({"a": 1, 2: "b"})
    emptied = {"a": 1}
    del emptied["a"]
    assert dagcbor.encode(emptied) == b"\xa0"
    for _ in range(3):                      # layout cache hits on the same shapes
        assert dagcbor.digest(d) == hashlib.sha256(ref.encode(d)).digest()


_BIG = {f"k{i:02d}": [i] for i in range(30)}  # more keys than a layout holds: the general path


@pytest.mark.parametrize("shape", ["layout", "one-off", "large"])
def test_decoder_maps_being_filled_are_unreachable_from_the_gc(shape):
    # A map or list being filled stays untracked until complete, on every path (template copy,
    # PyDict_SetItem for one-off and large maps) and CPython version: a GC callback (any Python
    # code that allocations can run) scanning gc.get_objects() never sees one half built, so
    # nothing can change a table under the decoder or read an empty list slot.
    import gc

    link = dagcbor.cid(1)                   # a CID is a GC allocation: collections run there
    # "!" sorts first (canonical order), so a map is recognisable from its first entry on.

    def blob(i):
        value = {"a": [1], "b": link, "c": {"x": [3]},
                 "l": ["zzlist", [4], link, {"y": [5]}], "!": 5}
        if shape == "large":
            value.update(_BIG)
        if shape == "one-off":
            value[f"zz{i:03d}"] = i         # a fresh key each time: never a remembered layout
        return ref.encode(value)

    blobs = [blob(i) for i in range(50)]
    wants = [ref.decode(b) for b in blobs]  # complete maps: only maps equal to one may be seen
    seen = []

    def callback(phase, info):
        if phase == "start":
            for o in gc.get_objects(generation=0):
                # (From 3.12 a collection may also start just after decode() returned: the
                # result, complete, is then fine to see.)
                if type(o) is dict and "!" in o and o not in wants:
                    seen.append(dict(o))
                    o.clear()
                    o.update({f"junk{i}": i for i in range(50)})
                elif type(o) is list and o and o[0] == "zzlist" and o != wants[0]["l"]:
                    seen.append(list(o))    # (a half-built one has NULL slots: this would crash)

    for _ in range(3 if shape == "layout" else 0):
        dagcbor.decode(blobs[0])            # layouts and templates in place
    old = gc.get_threshold()
    gc.callbacks.append(callback)
    gc.set_threshold(1)
    ok = 0
    try:
        for b, want in zip(blobs, wants):
            r = dagcbor.decode(b)
            ok += r == want and gc.is_tracked(r) and gc.is_tracked(r["l"])
            del r                           # only the one being built may exist meanwhile
    finally:
        gc.set_threshold(*old)
        gc.callbacks.remove(callback)
    assert seen == [] and ok == 50


def test_layout_keys_are_interned_once_a_layout_recurs_and_one_off_maps_decode_alike():
    import sys

    blob = ref.encode({"alpha-key": 1, "beta-key": [2], "gamma-key": {"delta-key": 3}})
    results = [dagcbor.decode(blob) for _ in range(4)]     # installed on the second sighting
    last = results[-1]
    assert all(r == ref.decode(blob) for r in results)
    for k in last:
        assert k is sys.intern(k)
    assert next(iter(last["gamma-key"])) is sys.intern("delta-key")
    # maps whose keys never recur (ids as keys): no layout, same values and key order
    for i in range(500):
        m = {f"id-{i}-{j}": j for j in range(i % 13)}
        got = dagcbor.decode(ref.encode(m))
        assert got == m and list(got) == sorted(m, key=lambda k: (len(k), k))


def test_mutated_records_decode_like_the_reference_with_layouts_warm():
    # Byte flips in records whose layouts and templates are in place: a key that departs from
    # its layout part way (other way of the set, plain-dict fallback), a broken value after
    # some were stored in place; the result, or the error class and offset, is the reference's.
    import random

    from aura_core.benchsuite.dagcbor import make_facts

    blobs = [dagcbor.encode(f) for f in make_facts(200)]
    for blob in blobs:
        dagcbor.decode(blob)
        dagcbor.decode(blob)
    rng = random.Random(11)
    for _ in range(4000):
        b = bytearray(rng.choice(blobs))
        for _ in range(rng.randrange(1, 3)):
            b[rng.randrange(len(b))] = rng.randrange(256)
        try:
            got = ("ok", dagcbor.decode(bytes(b)))
        except DecodeError as exc:
            got = (type(exc), exc.offset)
        try:
            want = ("ok", ref.decode(bytes(b)))
        except DecodeError as exc:
            want = (type(exc), exc.offset)
        assert got == want, bytes(b).hex()
        if got[0] == "ok":
            assert list(got[1]) == list(want[1])


def test_dict_fast_paths_enabled_exactly_on_the_mirrored_cpython():
    # The decoder's in-place template fill and the encoder's direct entry reads mirror CPython
    # 3.11-3.13's dict table (the same there, free-threaded builds aside); the import-time
    # probe must enable them there and nowhere else.
    import sys
    import sysconfig

    mirrored = (3, 11) <= sys.version_info[:2] <= (3, 13) \
        and not sysconfig.get_config_var("Py_GIL_DISABLED")
    assert _dagcbor._dict_fast_paths() == mirrored
