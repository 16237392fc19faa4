"""Sync cost report: two journals of N facts (default 1,000,000) differing by 1, 100, 10,000.

For each difference size and shape it runs one anti-entropy session (in memory, the same bytes
the TCP runner frames with a 4-byte length each) and prints bytes on the wire, round trips,
seconds, and the overhead per differing fact beyond the fact's own bytes.  Shapes:
  scattered  - B lacks d facts chosen at random
  clustered  - B lacks d facts adjacent in key (hash) order
  diverged   - B lacks d/2 random facts of A and holds d/2 facts A lacks
Goals (issue 6): <= 3 round trips for <= 100 differences; <= 200 B overhead per differing fact.

    .venv/bin/python bench/sync_report.py [--n 1000000] [--diffs 1,100,10000] [--seed 1]
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import sys
import tempfile
import time

from aura_core import dagcbor
from aura_core.journal import JournalDigest, JournalStore, fact_hash
from aura_core.journal.sync import SyncSession

CTX = bytes(range(16))


def make_fact(i: int) -> bytes:
    return dagcbor.encode({"kind": "descriptor", "n": i, "hint": "udp:192.0.2.1:4000"})


def build(path: str, bodies) -> JournalStore:
    s = JournalStore(path, synchronous="OFF")
    batch = []
    for b in bodies:
        batch.append(b)
        if len(batch) == 50_000:
            s.merge(CTX, batch, trusted=True)
            batch = []
    if batch:
        s.merge(CTX, batch, trusted=True)
    return s


def remove(store: JournalStore, hashes: list[bytes]) -> None:
    """Bench-only: delete facts (journals never shrink) and rewrite the digest row."""
    db = store._db
    db.execute("BEGIN")
    db.executemany("DELETE FROM facts WHERE ctx = ? AND h = ?", [(CTX, h) for h in hashes])
    d = store.digest(CTX)
    gone = JournalDigest.of(hashes)
    new = JournalDigest(d.count - gone.count, (d.total - gone.total) % (1 << 256))
    db.execute("UPDATE digests SET count = ?, total = ? WHERE ctx = ?", (new.count, new.sum_bytes, CTX))
    db.execute("COMMIT")
    store._digests[CTX] = new


def pump(a: JournalStore, b: JournalStore):
    t = time.perf_counter()
    sa = SyncSession(a.view(CTX), "B", initiator=True)
    sb = SyncSession(b.view(CTX), "A", initiator=False)
    sa.start()
    frames = 0
    while True:
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
    return sa, sb, frames, time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--diffs", default="1,100,10000")
    ap.add_argument("--shapes", default="scattered,clustered,diverged")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    rng = random.Random(args.seed)
    tmp = tempfile.mkdtemp(prefix="aura-sync-report-")
    t0 = time.perf_counter()
    base = [make_fact(i) for i in range(args.n)]
    a = build(os.path.join(tmp, "a.db"), base)
    a._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    a.close()
    a = JournalStore(os.path.join(tmp, "a.db"), synchronous="OFF")
    by_hash = sorted((fact_hash(f), f) for f in base)
    print(f"# n={args.n} seed={args.seed} build {time.perf_counter() - t0:.1f}s "
          f"python {sys.version.split()[0]}", flush=True)
    print(f"{'shape':10} {'diffs':>6} {'bytes':>10} {'fact B':>10} {'ovh/diff':>9} {'RTs':>4} "
          f"{'msgs':>5} {'secs':>6}  converged")
    extra = iter(range(args.n, 10 * args.n))
    for shape in args.shapes.split(","):
        for d in map(int, args.diffs.split(",")):
            if shape == "diverged" and d < 2:
                continue  # one difference cannot be on both sides
            bpath = os.path.join(tmp, "b.db")
            for suffix in ("", "-wal", "-shm"):
                if os.path.exists(bpath + suffix):
                    os.remove(bpath + suffix)
            shutil.copy(os.path.join(tmp, "a.db"), bpath)
            b = JournalStore(bpath, synchronous="OFF")
            if shape == "clustered":
                start = rng.randrange(args.n - d)
                missing = by_hash[start:start + d]
                added: list[bytes] = []
            elif shape == "scattered":
                missing = rng.sample(by_hash, d)
                added = []
            else:
                missing = rng.sample(by_hash, d // 2 or 1)
                added = [make_fact(next(extra)) for _ in range(d - len(missing))]
            remove(b, [h for h, _ in missing])
            if added:
                b.merge(CTX, added, trusted=True)
            a_before = a.digest(CTX)
            sa, sb, frames, secs = pump(a, b)
            wire = sa.stats.bytes_sent + sb.stats.bytes_sent + 4 * frames
            fact_bytes = sum(len(f) for _, f in missing) + sum(len(f) for f in added)
            ok = a.digest(CTX) == b.digest(CTX) and not sa.failed and not sb.failed
            print(f"{shape:10} {d:>6} {wire:>10} {fact_bytes:>10} {(wire - fact_bytes) / d:>9.1f} "
                  f"{sa.stats.round_trips:>4} {frames:>5} {secs:>6.2f}  {ok}", flush=True)
            if added:  # a gained b's extra facts: take them out again for the next case
                remove(a, [fact_hash(f) for f in added])
                assert a.digest(CTX) == a_before
            b.close()
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
