"""Reconciliation cost bounds (issue 6): round trips and bytes per differing fact, every shape.

Not timed.  A 20,000-fact universe; two in-memory journals with the interface SyncSession uses
differ by d facts in one of five shapes (see bench/sync_report.py, which runs the same at 1M):
scattered / ahead (one-sided either way), diverged (two-sided), clustered (one-sided, adjacent in
hash order), adjacent (two-sided, alternating, adjacent in hash order).  Each case prints its
seed, so a failure is reproducible.
"""

from __future__ import annotations

import hashlib
import random

import pytest

from aura_core import dagcbor
from bench.sync_report import MemJournal, exclusives, pump  # the report's journal, shapes, pump

CTX = bytes(range(16))
N = 20_000
SEEDS = (1, 2, 3)


@pytest.fixture(scope="module")
def universe():
    bodies = [dagcbor.encode({"kind": "descriptor", "n": i, "hint": "udp:192.0.2.1:4000"})
              for i in range(N)]
    return sorted((hashlib.sha256(b).digest(), b) for b in bodies)


def session(universe, shape, d, seed):
    a_only, b_only = exclusives(shape, len(universe), d, random.Random(f"{shape}/{d}/{seed}"))
    da, db = set(b_only), set(a_only)
    ja = MemJournal([u for i, u in enumerate(universe) if i not in da])
    jb = MemJournal([u for i, u in enumerate(universe) if i not in db])
    sa, sb, frames, _ = pump(ja, jb, max_rounds=1000)
    assert not sa.failed and not sb.failed
    assert ja.digest() == jb.digest() and ja.digest().count == len(universe)
    assert sa.stats.facts_pushed + sb.stats.facts_pushed == d  # nothing sent twice
    wire = sa.stats.bytes_sent + sb.stats.bytes_sent + 4 * frames  # with TCP framing
    facts = sum(len(universe[i][1]) for i in a_only + b_only)
    return sa.stats.round_trips, (wire - facts) / d


# overhead bound per differing fact: the goal (200 B) for every shape and size.  Small clusters
# used to cost a fixed 1-1.8 KB to locate: now the root's third moment settles up to three
# differences in the first reply, and a cluster of up to eleven found in one range is settled from
# that range's power sums (MOMENTS) instead of being chased down to id lists
GOAL = 200.0


@pytest.mark.parametrize("shape", ["scattered", "ahead", "diverged", "clustered", "adjacent"])
@pytest.mark.parametrize("d", [1, 2, 3, 4, 6, 10, 100])
def test_round_trips_and_overhead_per_difference(universe, shape, d):
    if d == 1 and shape in ("diverged", "adjacent"):
        pytest.skip("one difference cannot be on both sides")
    bound = GOAL
    for seed in SEEDS:
        rts, overhead = session(universe, shape, d, seed)
        print(f"{shape} d={d} seed={seed}: {rts} RT, {overhead:.1f} B/diff")
        assert rts <= 3, f"seed {seed}"
        assert overhead <= bound, f"seed {seed}"


def test_large_differences_converge_with_bounded_overhead(universe):
    for shape in ("diverged", "clustered"):
        rts, overhead = session(universe, shape, 1000, 1)
        print(f"{shape} d=1000: {rts} RT, {overhead:.1f} B/diff")
        assert overhead <= GOAL
