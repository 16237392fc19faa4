"""The compiled sync moments (aura_core._reconcile) against the pure-Python reference.

GF(2^127 - 1) power sums, prefix moments and child cells over packed 32-byte hashes must equal
tests/reference/reconcile_ref.py for every input, refuse out-of-range arguments with ValueError,
and SortedIds (which now scans through them) must agree with the reference on both of its
``cells`` paths.  Seeded random cases print their seed; hypothesis prints its own.
"""

from __future__ import annotations

import bisect
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aura_core import _reconcile
from aura_core.journal.reconcile import CHECKPOINT, P, WALK_PER_CHILD, SortedIds, range_bounds
from tests.fuzz import fuzz_reconcile
from tests.reference import reconcile_ref as ref

pytestmark = pytest.mark.native

# keys at the edges of the field: all ones (= P, so 0), zero, the top bit, P - 1 (all ones but
# the last key bit), and hashes whose low half is all ones (ignored by the key)
EDGE = [b"\xff" * 32, b"\x00" * 32, b"\x80" + b"\x00" * 31, b"\xff" * 15 + b"\xfd" + b"\xff" * 16,
        b"\x00" * 16 + b"\xff" * 16, b"\xff" * 16 + b"\x00" * 16]

hash_lists = st.lists(st.one_of(st.binary(min_size=32, max_size=32), st.sampled_from(EDGE)),
                      max_size=80)


def test_edge_keys_reduce_mod_p():
    blob = b"".join(EDGE)
    assert ref.key(EDGE[0]) == 0 and ref.key(EDGE[3]) == P - 1
    assert _reconcile.power_sums(blob, 0, 1, 3) == [0, 0, 0]
    sums = _reconcile.power_sums(blob, 3, 4, 2)
    assert sums == [P - 1, 1]  # (P - 1)^2 = 1
    assert _reconcile.power_sums(blob, 0, len(EDGE), 16) == ref.power_sums(blob, 0, len(EDGE), 16)


def test_products_at_the_limb_edges():
    # keys whose 64-bit halves are all ones or just past a boundary: every carry and fold of the
    # 127-bit multiply is taken, and high powers (m = 64) chain them
    edge = [P - 1, P - 2, 1 << 126, (1 << 64) - 1, 1 << 64, (1 << 127) - (1 << 64) - 1,
            ((1 << 63) - 1) << 64, 3, 1]
    blob = b"".join((x << 1).to_bytes(16, "big") + bytes(16) for x in edge)
    assert ref.keys(blob, 0, len(edge)) == edge
    for i in range(len(edge)):
        assert _reconcile.power_sums(blob, i, i + 1, 64) == ref.power_sums(blob, i, i + 1, 64)
    assert _reconcile.power_sums(blob, 0, len(edge), 64) == ref.power_sums(blob, 0, len(edge), 64)


@settings(max_examples=150, deadline=None)
@given(hash_lists, st.data())
def test_power_sums_match_reference(hashes, data):
    blob = b"".join(hashes)
    n = len(hashes)
    i = data.draw(st.integers(0, n))
    j = data.draw(st.integers(i, n))
    m = data.draw(st.integers(1, _reconcile.MAX_POWERS))
    assert _reconcile.power_sums(blob, i, j, m) == ref.power_sums(blob, i, j, m)


@settings(max_examples=100, deadline=None)
@given(hash_lists, st.integers(1, 70))
def test_prefix_moments_match_reference(hashes, step):
    blob = b"".join(hashes)
    assert _reconcile.prefix_moments(blob, step) == ref.prefix_moments(blob, step)


@settings(max_examples=150, deadline=None)
@given(hash_lists, st.integers(0, 127), st.integers(1, 8), st.booleans(), st.data())
def test_cells_match_reference(hashes, k, b, ordered, data):
    b = min(b, 128 - k)
    hashes = sorted(hashes) if ordered else hashes  # unsorted input is still summed per child
    blob = b"".join(hashes)
    i = data.draw(st.integers(0, len(hashes)))
    j = data.draw(st.integers(i, len(hashes)))
    assert _reconcile.cells(blob, i, j, k, b) == ref.cells(blob, i, j, k, b)


@settings(max_examples=150, deadline=None)
@given(hash_lists, st.one_of(st.binary(min_size=32, max_size=32), st.sampled_from(EDGE)), st.data())
def test_lower_bound_matches_bisect(hashes, bound, data):
    hashes = sorted(hashes)
    blob = b"".join(hashes)
    lo = data.draw(st.integers(0, len(hashes)))
    hi = data.draw(st.integers(lo, len(hashes)))
    got = _reconcile.lower_bound(blob, bound, lo, hi)
    assert got == bisect.bisect_left(hashes, bound, lo, hi) == ref.lower_bound(blob, bound, lo, hi)


@pytest.mark.parametrize("call", [
    lambda: _reconcile.power_sums(b"\0" * 64, 0, 3, 1),       # past the end
    lambda: _reconcile.power_sums(b"\0" * 64, 2, 1, 1),       # i > j
    lambda: _reconcile.power_sums(b"\0" * 64, -1, 1, 1),
    lambda: _reconcile.power_sums(b"\0" * 64, 0, 2, 0),       # no powers
    lambda: _reconcile.power_sums(b"\0" * 64, 0, 2, _reconcile.MAX_POWERS + 1),
    lambda: _reconcile.power_sums(b"\0" * 63, 0, 1, 1),       # ragged buffer
    lambda: _reconcile.prefix_moments(b"\0" * 64, 0),
    lambda: _reconcile.prefix_moments(b"\0" * 65, 1),
    lambda: _reconcile.cells(b"\0" * 64, 0, 2, 0, 0),         # no fan-out
    lambda: _reconcile.cells(b"\0" * 64, 0, 2, 0, _reconcile.MAX_FANOUT_BITS + 1),
    lambda: _reconcile.cells(b"\0" * 64, 0, 2, 125, 4),       # deeper than 128 bits
    lambda: _reconcile.cells(b"\0" * 64, 0, 3, 0, 2),
    lambda: _reconcile.lower_bound(b"\0" * 64, b"\0" * 31, 0, 2),  # short bound
    lambda: _reconcile.lower_bound(b"\0" * 64, b"\0" * 32, 1, 3),
])
def test_bad_arguments_are_value_errors(call):
    with pytest.raises(ValueError):
        call()


def test_empty_buffer():
    assert _reconcile.power_sums(b"", 0, 0, 4) == [0, 0, 0, 0]
    assert _reconcile.lower_bound(b"", b"\xff" * 32, 0, 0) == 0
    assert _reconcile.prefix_moments(b"", 64) == ([0], [0], 0)
    assert _reconcile.cells(b"", 0, 0, 0, 2) == [(0, 0, 0)] * 4


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_sorted_ids_agree_with_reference_on_both_cell_paths(seed):
    rng = random.Random(seed)
    print(f"seed {seed}")
    hashes = sorted({rng.randbytes(32) for _ in range(5000)})
    blob = b"".join(hashes)
    ids = SortedIds(blob)
    p1, p2, s3 = ref.prefix_moments(blob, CHECKPOINT)
    assert (ids._p1, ids._p2, ids.s3) == (p1, p2, s3)
    whole = ids.power_sums(0, 5000, 12)
    whole[0] += 1  # callers get a copy of the cached root sums
    assert ids.power_sums(0, 5000, 12) == ref.power_sums(blob, 0, 5000, 12)
    for i, j in [(0, 0), (0, 5000), (7, 4100), (64, 128), (4999, 5000), (63, 65)]:
        ks = ref.keys(blob, i, j)
        assert ids.cell(i, j) == (j - i, sum(ks) % P, sum(e * e for e in ks) % P)
        assert ids.power_sums(i, j, 12) == ref.power_sums(blob, i, j, 12)
    # (0, 0, b) with few hashes per child walks in C; (0, 0, 1) / (1, 1, 2) use prefix moments
    for k, p, b in [(0, 0, 8), (0, 0, 1), (1, 1, 2), (3, 5, 4), (6, 40, 1)]:
        starts, cells = ids.cells(k, p, b)
        lo, hi = range_bounds(k, p)
        i0, i1 = ids.index(lo), ids.index(hi)
        assert (i1 - i0 <= WALK_PER_CHILD << b) == (b >= 4 or k >= 6)  # both paths covered
        assert starts[0] == i0 and starts[-1] == i1
        assert cells == ref.cells(blob, i0, i1, k, b)
        assert all(starts[c + 1] - starts[c] == cells[c][0] for c in range(1 << b))


def test_fuzz_target_over_seed_corpus_and_random_bytes():
    rng = random.Random(6)
    corpus = fuzz_reconcile.seeds()
    corpus += [rng.randbytes(rng.randrange(0, 700)) for _ in range(400)]
    corpus += [bytes([rng.randrange(256) for _ in range(6)]) + b"".join(
        rng.choice(EDGE) for _ in range(rng.randrange(0, 20))) for _ in range(200)]
    assert fuzz_reconcile.run_corpus(corpus) == len(corpus)
