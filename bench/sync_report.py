"""Sync cost report: two journals of about N facts (default 1,000,000) differing by d facts.

For each shape, difference size and seed it runs one anti-entropy session between an initiator
A and a responder B (in memory: the same bytes the TCP runner frames with a 4-byte length each)
and prints bytes on the wire (framing included), round trips, seconds, and the overhead per
differing fact beyond the fact's own bytes.  Shapes (U = a universe of N facts):
  scattered  - B lacks d random facts of A                    (one-sided, responder behind)
  ahead      - A lacks d random facts of B                    (one-sided, initiator behind)
  diverged   - A lacks d/2 random facts, B lacks d - d/2 others (two-sided)
  clustered  - B lacks d facts adjacent in hash order          (one-sided)
  adjacent   - d facts adjacent in hash order, alternately missing from A and from B (two-sided)
Goals (issue 6): <= 3 round trips for <= 100 differences; <= 200 B overhead per differing fact.

By default the journals are in-memory stand-ins (:class:`MemJournal`, the interface of
``ContextJournal``), so a 1M-fact table of many cases runs in minutes; ``--sqlite`` runs the
same cases on real SQLite journals (slow: the database is copied per case).

    .venv/bin/python bench/sync_report.py [--n 1000000] [--diffs 1,2,10,100,1000,10000]
        [--shapes scattered,ahead,diverged,clustered,adjacent] [--seeds 1,2,3] [--sqlite]
"""

from __future__ import annotations

import argparse
import bisect
import gc
import hashlib
import os
import random
import shutil
import sys
import tempfile
import time
from collections.abc import Iterable, Sequence

from aura_core import dagcbor
from aura_core.journal import JournalDigest, JournalStore
from aura_core.journal.digest import MOD
from aura_core.journal.reconcile import SortedIds
from aura_core.journal.store import MergeResult
from aura_core.journal.sync import SyncSession

CTX = bytes(range(16))
SHAPES = ("scattered", "ahead", "diverged", "clustered", "adjacent")


def make_fact(i: int) -> bytes:
    return dagcbor.encode({"kind": "descriptor", "n": i, "hint": "udp:192.0.2.1:4000"})


class Universe:
    """N facts sorted by hash, shared by every journal of a report (built once)."""

    def __init__(self, pairs: Sequence[tuple[bytes, bytes]]) -> None:
        self.pairs = pairs
        self.keys = [h for h, _ in pairs]
        self.bodies = dict(pairs)
        self.digest = JournalDigest.of(self.keys)
        self.blob = b"".join(self.keys)

    def __len__(self) -> int:
        return len(self.pairs)

    def journal_without(self, drop: Iterable[int]) -> MemJournal:
        """A journal of every fact but those at positions ``drop`` (O(d) besides list copies)."""
        cut = sorted(set(drop))
        keys: list[bytes] = []
        parts: list[bytes] = []
        last = 0
        for i in [*cut, len(self.keys)]:
            keys += self.keys[last:i]
            parts.append(self.blob[32 * last:32 * i])
            last = i + 1
        gone = [self.keys[i] for i in cut]
        digest = JournalDigest(self.digest.count - len(gone),
                               (self.digest.total - sum(int.from_bytes(h, "big") for h in gone)) % MOD)
        return MemJournal(keys=keys, bodies=self.bodies, missing=set(gone), digest=digest,
                          blob=b"".join(parts))


class MemJournal:
    """An in-memory journal with the interface SyncSession uses (no validation: bench only).

    Journals of one :class:`Universe` share its bodies (read-only); each keeps its own sorted
    keys, the universe facts it lacks, and the facts merged from outside the universe.
    """

    def __init__(self, pairs: Sequence[tuple[bytes, bytes]] = (), *, keys: list[bytes] | None = None,
                 bodies: dict[bytes, bytes] | None = None, missing: set[bytes] | None = None,
                 digest: JournalDigest | None = None, blob: bytes | None = None) -> None:
        self.ctx = CTX
        self.keys = [h for h, _ in pairs] if keys is None else keys  # sorted
        self._shared = dict(pairs) if bodies is None else bodies
        self._missing = missing or set()
        self._own: dict[bytes, bytes] = {}
        self._digest = JournalDigest.of(self.keys) if digest is None else digest
        self._ids: SortedIds | None = None
        self._blob = blob  # the keys joined, when the caller has them at hand

    def _body(self, h: bytes) -> bytes | None:
        if h in self._missing:
            return None
        return self._own.get(h) or self._shared.get(h)

    def digest(self) -> JournalDigest:
        return self._digest

    def sorted_ids(self) -> SortedIds:
        if self._ids is None:
            self._ids = SortedIds(self._blob or b"".join(self.keys))
        return self._ids

    def get_many(self, hashes: Sequence[bytes]) -> dict[bytes, bytes]:
        return {h: b for h in hashes if (b := self._body(h)) is not None}

    def facts_in_range(self, lo: bytes, hi: bytes | None, limit: int) -> list[tuple[bytes, bytes]]:
        i = bisect.bisect_left(self.keys, lo)
        j = len(self.keys) if hi is None else bisect.bisect_left(self.keys, hi)
        return [(h, self._body(h) or b"") for h in self.keys[i:min(j, i + limit)]]

    def ack_tracked_among(self, hashes):
        return set()

    def record_ack(self, h, peer, acked_at):
        pass

    def merge(self, bodies: Iterable[bytes]) -> MergeResult:
        res = MergeResult()
        for b in bodies:
            h = hashlib.sha256(b).digest()
            if self._body(h) is not None:
                res.duplicates += 1
                continue
            if self._shared.get(h) == b:
                self._missing.discard(h)
            else:
                self._own[h] = b
            self._digest = self._digest.add(h)
            res.inserted.append(h)
        if len(res.inserted) < 64:
            for h in res.inserted:
                bisect.insort(self.keys, h)
        else:  # one sort of two sorted runs: linear, where many insorts move the list each time
            self.keys += sorted(res.inserted)
            self.keys.sort()
        self._ids = self._blob = None
        return res


def pump(ja, jb, max_rounds: int = 10_000):
    """Run one session between two journals in memory; (initiator, responder, frames, seconds).

    Bounded: a session still talking after ``max_rounds`` exchanges is a bug, not a slow case.
    """
    t = time.perf_counter()
    sa = SyncSession(ja, "B", initiator=True)
    sb = SyncSession(jb, "A", initiator=False)
    sa.start()
    frames = 0
    for _ in range(max_rounds):
        moved = False
        for d in sa.data_to_send():
            frames += 1
            sb.receive(d)
            moved = True
        for d in sb.data_to_send():
            frames += 1
            sa.receive(d)
            moved = True
        if not moved:
            break
    else:
        raise RuntimeError(f"sync did not finish within {max_rounds} exchanges")
    return sa, sb, frames, time.perf_counter() - t


def exclusives(shape: str, n: int, d: int, rng: random.Random) -> tuple[list[int], list[int]]:
    """Positions (in hash order of the universe) held only by A, and only by B."""
    if shape == "scattered":
        return rng.sample(range(n), d), []
    if shape == "ahead":
        return [], rng.sample(range(n), d)
    if shape == "diverged":
        both = rng.sample(range(n), d)
        return both[:d - d // 2], both[d - d // 2:]
    start = rng.randrange(n - d)
    run = list(range(start, start + d))
    if shape == "clustered":
        return run, []
    if shape == "adjacent":
        return run[0::2], run[1::2]
    raise ValueError(shape)


def sqlite_pair(tmp: str, a_pairs, b_pairs):
    out = []
    for name, pairs in (("a", a_pairs), ("b", b_pairs)):
        path = os.path.join(tmp, name + ".db")
        for suffix in ("", "-wal", "-shm"):
            if os.path.exists(path + suffix):
                os.remove(path + suffix)
        s = JournalStore(path, synchronous="OFF")
        bodies = [b for _, b in pairs]
        for i in range(0, len(bodies), 50_000):
            s.merge(CTX, bodies[i:i + 50_000], trusted=True)
        out.append(s)
    return out


def run_case(universe: Universe, shape, d, seed, tmp=None):
    """One session; returns a dict of measurements."""
    n = len(universe)
    a_only, b_only = exclusives(shape, n, d, random.Random(f"{shape}/{d}/{seed}"))
    stores = None
    if tmp is None:
        ja, jb = universe.journal_without(b_only), universe.journal_without(a_only)
    else:
        drop_a, drop_b = set(b_only), set(a_only)
        stores = sqlite_pair(tmp, [u for i, u in enumerate(universe.pairs) if i not in drop_a],
                             [u for i, u in enumerate(universe.pairs) if i not in drop_b])
        ja, jb = stores[0].view(CTX), stores[1].view(CTX)
    ja.sorted_ids(), jb.sorted_ids()  # snapshots are cached by the store: not part of a session
    sa, sb, frames, secs = pump(ja, jb)
    wire = sa.stats.bytes_sent + sb.stats.bytes_sent + 4 * frames
    fact_bytes = sum(len(universe.pairs[i][1]) for i in a_only + b_only)
    ok = ja.digest() == jb.digest() == universe.digest and ja.keys == jb.keys \
        and not sa.failed and not sb.failed \
        and sa.stats.facts_pushed + sb.stats.facts_pushed == d
    if stores:
        for s in stores:
            s.close()
    return {"shape": shape, "d": d, "seed": seed, "wire": wire, "fact_bytes": fact_bytes,
            "overhead": (wire - fact_bytes) / d, "rts": sa.stats.round_trips, "msgs": frames,
            "secs": secs, "ok": ok}


def universe_of(n: int) -> Universe:
    bodies = [make_fact(i) for i in range(n)]
    return Universe(sorted((hashlib.sha256(b).digest(), b) for b in bodies))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--diffs", default="1,2,10,100,1000,10000")
    ap.add_argument("--shapes", default=",".join(SHAPES))
    ap.add_argument("--seeds", default="1,2,3")
    ap.add_argument("--sqlite", action="store_true")
    args = ap.parse_args()
    t0 = time.perf_counter()
    universe = universe_of(args.n)
    gc.collect()
    gc.freeze()  # the universe's million objects are not garbage: keep collections off them
    tmp = tempfile.mkdtemp(prefix="aura-sync-report-") if args.sqlite else None
    print(f"# n={args.n} seeds={args.seeds} {'sqlite' if tmp else 'memory'} "
          f"universe {time.perf_counter() - t0:.1f}s python {sys.version.split()[0]}", flush=True)
    print(f"{'shape':10} {'diffs':>6} {'seed':>4} {'bytes':>10} {'fact B':>10} {'ovh/diff':>9} "
          f"{'RTs':>4} {'msgs':>5} {'secs':>6}  converged")
    worst: dict[tuple[str, int], tuple[int, float]] = {}
    for shape in args.shapes.split(","):
        for d in map(int, args.diffs.split(",")):
            if shape in ("diverged", "adjacent") and d < 2:
                continue  # one difference cannot be on both sides
            for seed in map(int, args.seeds.split(",")):
                r = run_case(universe, shape, d, seed, tmp)
                print(f"{shape:10} {d:>6} {seed:>4} {r['wire']:>10} {r['fact_bytes']:>10} "
                      f"{r['overhead']:>9.1f} {r['rts']:>4} {r['msgs']:>5} {r['secs']:>6.2f}  "
                      f"{r['ok']}", flush=True)
                w = worst.get((shape, d), (0, 0.0))
                worst[(shape, d)] = (max(w[0], r["rts"]), max(w[1], r["overhead"]))
    print("# worst over seeds: shape d -> round trips, overhead B/diff")
    for (shape, d), (rts, ovh) in worst.items():
        flag = "" if d > 100 or (rts <= 3 and ovh <= 200) else "  <-- over the goal"
        print(f"#   {shape:10} {d:>6}  {rts:>2} RT  {ovh:7.1f} B{flag}")
    if tmp:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
