"""Journal and guard benchmarks: SQLite ingest vs raw executemany; guard chain sends/s.

* ``journal/ingest 2000 facts``: :meth:`JournalStore.merge` of 2,000 new DAG-CBOR facts (strict
  validation, hashing, dedupe, digest update, one transaction) against the raw primitive: one
  ``sqlite3.executemany`` of the same rows into the same table, same pragmas (WAL, FULL), also
  in one transaction.  Goal: ours >= 0.7x raw.
* ``guards/allowed sends``: :func:`aura_core.guards.evaluate` of an allowed send (capability,
  flow and leakage checks, five ordered effects) against bare inline checks.  Goal (absolute):
  >= 200,000 sends/s.

The sync cost report (bytes, round trips, seconds for 1M-fact journals) is ``bench/sync_report.py``.
"""

from __future__ import annotations

import itertools
import os
import sqlite3
import tempfile

from . import Group

N_FACTS = 2000
N_SENDS = 20000


def groups() -> list[Group]:
    from aura_core import dagcbor
    from aura_core.journal import JournalStore
    from aura_core.journal.store import _SCHEMA, fact_hash

    tmp = tempfile.mkdtemp(prefix="aura-bench-journal-")
    facts = [dagcbor.encode({"kind": "descriptor", "n": i, "hint": "udp:10.0.0.1:4000",
                             "nonce": os.urandom(16)}) for i in range(N_FACTS)]
    ing = Group("journal", f"ingest {N_FACTS} facts", "facts", goals={"sqlite3 executemany (raw)": 0.7})
    ctx_counter = itertools.count(1)

    def ours():
        store = JournalStore(os.path.join(tmp, "ours.db"))

        def run() -> int:
            ctx = next(ctx_counter).to_bytes(16, "big")
            r = store.merge(ctx, facts)
            return len(r.inserted)
        return run

    def raw():
        db = sqlite3.connect(os.path.join(tmp, "raw.db"), isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        db.executescript(_SCHEMA)
        hashes = [fact_hash(f) for f in facts]

        def run() -> int:
            ctx = next(ctx_counter).to_bytes(16, "big")
            rows = [(ctx, h, f, 0) for h, f in zip(hashes, facts)]
            db.execute("BEGIN IMMEDIATE")
            db.executemany("INSERT INTO facts (ctx, h, body, ack) VALUES (?, ?, ?, ?)", rows)
            db.execute("COMMIT")
            return len(rows)
        return run

    ing.add("aura JournalStore.merge", "ours", ours)
    ing.add("sqlite3 executemany (raw)", "limit", raw)

    from aura_core.capabilities import ALL_CAPABILITIES, CAP_RELAY_FORWARD
    from aura_core.guards import GuardSnapshot, SendIntent, evaluate
    from aura_core.ids import AuthorityId, ContextId
    from aura_core.leakage import LeakageBudget

    me, peer = AuthorityId(b"a" * 16), AuthorityId(b"b" * 16)
    snap = GuardSnapshot(me, ContextId(bytes(16)), 1, 0, ALL_CAPABILITIES, {peer: 1 << 40},
                         LeakageBudget(1 << 30, 1 << 30, 1 << 30))
    intent = SendIntent(peer, CAP_RELAY_FORWARD, 1, LeakageBudget(0, 1, 0))
    envs = [os.urandom(64) for _ in range(N_SENDS)]
    g = Group("guards", "allowed sends", "sends")

    def chain():
        def run() -> int:
            for env in envs:
                evaluate(snap, intent, env)
            return N_SENDS
        return run

    def bare():
        caps, flow, leak = snap.capabilities, snap.flow, snap.leakage

        def run() -> int:
            for env in envs:
                if intent.capability in caps and flow.get(peer, 0) >= 1 and leak.allows(intent.leakage):
                    (env,)
            return N_SENDS
        return run

    g.add("aura guards.evaluate", "ours", chain)
    g.add("inline checks, no effects (limit)", "limit", bare)
    return [ing, g]
