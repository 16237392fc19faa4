"""Relay worker mesh: M_FWD records batched by the sending worker and parsed inline by the
receiving one stay ordered and exactly-once, whatever the read boundaries; under concurrent
all-pairs load across two workers every frame arrives once, in order per source."""

from __future__ import annotations

import asyncio
import os
import random
import socket
import subprocess
import sys

from aura_core import ContextId, IdentityKey
from aura_core.relay import RelayConfig, RelayCore, encode_auth, parse_challenge, static_authorizer

TOKEN = b"mesh-token"
CTX = ContextId(b"\x05" * 16)
KEYS = [IdentityKey.from_seed(bytes([0x40 + i]) * 32) for i in range(6)]


def _core(**cfg):
    grants = {k.authority_id: [CTX] for k in KEYS}
    return RelayCore(static_authorizer(grants, TOKEN), config=RelayConfig(**cfg), rand=lambda n: bytes(n))


def _join(core, conn_id, key):
    nonce = parse_challenge(core.connect(conn_id, 0.0))
    core.receive(conn_id, encode_auth(key, nonce, TOKEN), 0.0)


class _Capture:
    """Stands in for a mesh link on the sending side: keeps what would be written."""

    paused = False

    def __init__(self):
        self.parts = []

    def send_parts(self, parts, *, control=False):
        self.parts += parts
        return True


def test_mesh_records_survive_any_read_split():
    from aura_core.asyncio.relay import M_LEAVE, RelayServer, _MeshLink

    seed = random.randrange(1 << 30)
    print("seed", seed)
    rng = random.Random(seed)
    sender = RelayServer(_core(), worker=0, workers=2)
    capture = sender.mesh[1] = _Capture()
    receiver = RelayServer(_core(queue_limit=4096, queue_bytes=1 << 24), worker=1, workers=2)
    _join(receiver.core, 1, KEYS[1])
    dst = bytes(KEYS[1].authority_id)
    frames = [b"\x11" + bytes(CTX) + bytes(KEYS[0].authority_id) + rng.randbytes(rng.randrange(0, 3000))
              for _ in range(400)]
    for i in range(0, len(frames), 37):  # several reads' worth of routed frames
        sender.core.remote_out.extend((1, dst, f) for f in frames[i:i + 37])
        sender._flush_remote()
    assert len(capture.parts) == 2 * len(frames)  # a record head, then the frame as is
    # a control record in the middle (another authority leaving) must not disturb the frames
    leave = (17).to_bytes(4, "big") + bytes([M_LEAVE]) + bytes(16)
    stream = b"".join(capture.parts[:400]) + leave + b"".join(capture.parts[400:])
    link = _MeshLink(receiver, 0)
    off = 0
    while off < len(stream):
        n = rng.choice((1, 2, 5, 29, 700, 4096, 65536))
        link.data_received(stream[off:off + n])
        off += n
    got = receiver.core.pop_outgoing(1, limit=10_000)
    assert got == frames
    assert receiver.core.metrics.delivered_remote == len(frames)
    assert not link._buf


async def _all_pairs(per_pair: int, seed: int):
    from aura_core.asyncio.relay import RelayClient, RelayServer

    rng = random.Random(seed)
    s0, s1 = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    w = [RelayServer(_core(queue_limit=8192, queue_bytes=1 << 26), worker=i, workers=2, mesh={1 - i: s})
         for i, s in enumerate((s0, s1))]
    for srv in w:
        await srv.start()
    try:
        # clients 0-2 on worker 0, 3-5 on worker 1: 18 of the 30 ordered pairs cross the mesh
        clients = [await RelayClient.connect(w[i // 3].url, k, TOKEN, contexts=[CTX])
                   for i, k in enumerate(KEYS)]
        await asyncio.sleep(0.2)  # JOINs cross the mesh

        async def send(i: int) -> None:
            batches = {j: [b"%d:%d:" % (i, n) + rng.randbytes(rng.randrange(0, 2000)) for n in range(per_pair)]
                       for j in range(len(KEYS)) if j != i}
            for start in range(0, per_pair, 50):  # interleave destinations, 50 frames at a time
                for j, frames in batches.items():
                    await clients[i].send_many(CTX, KEYS[j].authority_id, frames[start:start + 50])

        async def receive(j: int) -> dict[int, list[int]]:
            seen: dict[int, list[int]] = {}
            for _ in range(per_pair * (len(KEYS) - 1)):
                _, _, payload = await asyncio.wait_for(clients[j].recv(), 20)
                src, n = payload.split(b":", 2)[:2]
                seen.setdefault(int(src), []).append(int(n))
            return seen

        receivers = [asyncio.create_task(receive(j)) for j in range(len(KEYS))]
        await asyncio.gather(*(send(i) for i in range(len(KEYS))))
        seen = await asyncio.gather(*receivers)
        for c in clients:
            await c.close()
        return seen, [srv.core.metrics for srv in w]
    finally:
        await asyncio.gather(*(srv.close() for srv in w))


def test_two_workers_all_pairs_ordered_exactly_once_under_load():
    seed = random.randrange(1 << 30)
    print("seed", seed)
    per_pair = 400
    seen, metrics = asyncio.run(_all_pairs(per_pair, seed))
    for j, by_src in enumerate(seen):
        assert sorted(by_src) == [i for i in range(len(KEYS)) if i != j]
        for seq in by_src.values():
            assert seq == list(range(per_pair))  # every frame once, in the order sent
    assert sum(m.forwarded for m in metrics) == per_pair * 30
    assert sum(m.delivered_remote for m in metrics) == per_pair * 18
    for m in metrics:
        assert m.drop_queue_full == m.drop_mesh_full == m.drop_gone == m.drop_unknown_destination == 0


def test_bench_reads_relay_cpu_of_a_process_tree():
    from aura_core.benchsuite.relay import _cpu_seconds, _process_tree

    child = subprocess.Popen([sys.executable, "-c", "import sys; sum(range(3_000_000)); sys.stdin.read()"],
                             stdin=subprocess.PIPE)
    try:
        assert child.pid in _process_tree(os.getpid())
        assert _cpu_seconds(os.getpid()) > 0
    finally:
        child.communicate(b"")
    assert _cpu_seconds(child.pid) == 0.0  # gone: no figure rather than a wrong one


async def _backlogged(frames: int):
    from aura_core.asyncio.relay import RelayClient, RelayServer

    s0, s1 = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    w = [RelayServer(_core(queue_limit=frames, queue_bytes=1 << 26), worker=i, workers=2, mesh={1 - i: s})
         for i, s in enumerate((s0, s1))]
    for srv in w:
        await srv.start()
    try:
        a = await RelayClient.connect(w[0].url, KEYS[0], TOKEN, contexts=[CTX])
        b = await RelayClient.connect(w[1].url, KEYS[1], TOKEN, contexts=[CTX])
        await asyncio.sleep(0.1)
        w[1].mesh[0].transport.pause_reading()  # worker 1 falls behind on the mesh
        link = w[0].mesh[1]
        sending = asyncio.create_task(
            a.send_many(CTX, KEYS[1].authority_id, [n.to_bytes(4, "big") + bytes(1200) for n in range(frames)]))
        peak = 0
        for _ in range(500):  # until the sender is held back behind a backlog
            await asyncio.sleep(0.01)
            peak = max(peak, link._backlog_bytes)
            if link.paused and link._backlog_bytes and w[0].core.metrics.forwarded < frames:
                break
        held_back = link.paused
        w[1].mesh[0].transport.resume_reading()
        got = [int.from_bytes((await asyncio.wait_for(b.recv(), 20))[2][:4], "big") for _ in range(frames)]
        await sending
        await a.close()
        await b.close()
        return held_back, peak, got, [srv.core.metrics for srv in w], link
    finally:
        await asyncio.gather(*(srv.close() for srv in w))


def test_a_worker_behind_holds_senders_back_and_loses_nothing():
    frames = 12_000  # ~15 MB: past the kernel's buffer and asyncio's, into the link's backlog
    held_back, peak, got, metrics, link = asyncio.run(_backlogged(frames))
    assert held_back and peak > 0  # whole writes waited in the backlog; the sender was paused
    assert got == list(range(frames))
    assert metrics[0].drop_mesh_full == 0 and metrics[1].delivered_remote == frames
    assert not link._backlog and not link.paused  # drained, and the sender let go again
