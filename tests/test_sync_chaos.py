"""Replicas converge under drops, duplicates, reordering, partitions and restarts.

Four replicas (SQLite files) append facts while an in-memory network pumps their sync messages
with a seeded fault schedule: messages are dropped, duplicated and reordered, the network splits
into partitions that later heal, and replicas restart (store closed and reopened, in-flight
sessions lost, coordinator state lost).  Sessions time out and the coordinator retries with
backoff.  After the writers stop, every replica must hold exactly the union of all appended
facts.  The seed is printed (AURA_TEST_SEED replays one).
"""

from __future__ import annotations

import os
import random

import pytest

from aura_core import dagcbor
from aura_core.journal import JournalStore
from aura_core.journal.sync import AntiEntropy, PeerFailed, RetryPolicy, SyncSession

CTX = bytes(range(16))
NAMES = "abcd"


class Replica:
    def __init__(self, name: str, path: str, rng: random.Random) -> None:
        self.name, self.path, self.rng = name, path, rng
        self.start()

    def start(self) -> None:
        self.store = JournalStore(self.path, synchronous="NORMAL")
        self.ae = AntiEntropy(self.store.view(CTX), [n for n in NAMES if n != self.name],
                              policy=RetryPolicy(base=2, factor=2, max_delay=16, max_attempts=50),
                              rand=self.rng.randbytes)
        self.out: dict[int, tuple[str, SyncSession, int]] = {}   # sid -> (peer, session, last)
        self.inc: dict[tuple[str, int], tuple[SyncSession, int]] = {}
        self.finished: set[tuple[str, int]] = set()

    def restart(self, now: int) -> None:
        self.store.close()
        self.start()
        self.ae.start_round(now)


def run_chaos(tmp_path, seed: int, ticks: int = 400, quiet_after: int = 250) -> dict[str, Replica]:
    print(f"chaos seed={seed}")
    rng = random.Random(seed)
    reps = {n: Replica(n, str(tmp_path / f"{n}.db"), random.Random(rng.random())) for n in NAMES}
    for r in reps.values():
        r.ae.start_round(0)
    net: list[tuple[int, str, str, int, bool, bytes]] = []  # (due, src, dst, sid, to_initiator, data)
    sids = iter(range(1, 1 << 30))
    appended: set[bytes] = set()
    partition: dict[str, int] | None = None
    counter = 0
    stats = {"failed": 0, "restarts": 0, "dups": 0, "drops": 0}

    def send(t, src, dst, sid, to_init, frames):
        if t >= quiet_after:  # the network heals at the end: no more faults
            net.extend((t + 1, src, dst, sid, to_init, f) for f in frames)
            return
        for f in frames:
            if partition and partition[src] != partition[dst]:
                continue
            if rng.random() < 0.08:  # drop
                stats["drops"] += 1
                continue
            copies = 2 if rng.random() < 0.05 else 1  # duplicate
            stats["dups"] += copies - 1
            for _ in range(copies):
                net.append((t + rng.randint(1, 4), src, dst, sid, to_init, f))  # reorder via delays

    for t in range(ticks):
        chaos = t < quiet_after
        # writers
        if t < quiet_after - 50:
            for r in reps.values():
                if rng.random() < 0.2:
                    bodies = [dagcbor.encode({"w": r.name, "n": counter + i}) for i in range(rng.randint(1, 5))]
                    counter += len(bodies)
                    r.store.append(CTX, bodies)
                    appended.update(bodies)
        # faults
        if chaos and t % 60 == 10:
            partition = {n: rng.randint(0, 1) for n in NAMES}
        if not chaos or t % 60 == 40:
            partition = None
        if chaos and rng.random() < 0.01:
            victim = rng.choice(NAMES)
            reps[victim].restart(t)
            stats["restarts"] += 1
        # new rounds
        if t % 25 == 0:
            for r in reps.values():
                r.ae.start_round(t)
        for r in reps.values():
            for peer in r.ae.due(t):
                sid = next(sids)
                s = r.ae.begin(peer)
                r.out[sid] = (peer, s, t)
                send(t, r.name, peer, sid, False, s.data_to_send())
        # deliver
        now_msgs = [m for m in net if m[0] <= t]
        net[:] = [m for m in net if m[0] > t]
        rng.shuffle(now_msgs)
        for _, src, dst, sid, to_init, data in now_msgs:
            r = reps[dst]
            if to_init:
                entry = r.out.get(sid)
                if entry is None:
                    continue
                peer, s, _ = entry
                s.receive(data)
                r.out[sid] = (peer, s, t)
                send(t, dst, src, sid, False, s.data_to_send())
                if s.done:
                    del r.out[sid]
                    r.ae.end(peer, s, t)
            else:
                key = (src, sid)
                if key in r.finished:
                    continue
                s, _ = r.inc.get(key, (None, 0))
                if s is None:
                    s = SyncSession(r.store.view(CTX), src, initiator=False)
                s.receive(data)
                send(t, dst, src, sid, True, s.data_to_send())
                if s.done:
                    r.inc.pop(key, None)
                    r.finished.add(key)
                else:
                    r.inc[key] = (s, t)
        # timeouts
        for r in reps.values():
            for sid, (peer, s, last) in list(r.out.items()):
                if t - last > 8:
                    s.abort("timeout")
                    del r.out[sid]
                    r.ae.end(peer, s, t)
            for key, (s, last) in list(r.inc.items()):
                if t - last > 8:
                    del r.inc[key]
        # drain coordinator events so they cannot pile up
        for r in reps.values():
            while (e := r.ae.next_event()) is not None:
                stats["failed"] += isinstance(e, PeerFailed)
        if not chaos and t > quiet_after + 20:
            digests = {r.store.digest(CTX) for r in reps.values()}
            if len(digests) == 1 and not net:
                break
    print(f"chaos stats {stats}")
    return reps, appended, stats


def test_four_replicas_converge_under_faults(tmp_path):
    seed = int(os.environ.get("AURA_TEST_SEED", random.randrange(1 << 30)))
    reps, appended, stats = run_chaos(tmp_path, seed)
    assert len(appended) > 50
    assert stats["failed"] > 0 and stats["drops"] > 0 and stats["dups"] > 0  # faults happened
    from aura_core.journal import JournalDigest, fact_hash

    want = JournalDigest.of(fact_hash(b) for b in appended)
    for r in reps.values():
        assert r.store.digest(CTX) == want, f"seed={seed} replica {r.name} did not converge"
        assert r.store.recompute_digest(CTX) == want and r.store.integrity_check() == "ok"


@pytest.mark.slow
@pytest.mark.parametrize("k", range(10))
def test_chaos_many_seeds(tmp_path, k):
    test_four_replicas_converge_under_faults(tmp_path)
