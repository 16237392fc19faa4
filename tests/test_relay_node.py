"""Relay node over loopback: cross-worker forwarding, slow readers, floods, SIGTERM drain,
restart recovery, configuration.  Only 127.0.0.1 is used."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from aura_core import ContextId, IdentityKey
from aura_core.capabilities import CAP_RELAY_FORWARD, CapabilityIssuer
from aura_core.errors import TransportError
from aura_core.receipts import Receipt, forward_commitment
from aura_core.relay import (
    ReceiptSigner, ReceiptWindows, RelayConfig, RelayCore, biscuit_authorizer, chain_owner,
)

ISSUER = CapabilityIssuer(bytes(range(32)))
ROOT = ISSUER.public_key
CTX = ContextId(b"\x01" * 16)
RELAY_KEY = IdentityKey.from_seed(b"\x77" * 32)
KEYS = [IdentityKey.from_seed(bytes([i + 1]) * 32) for i in range(16)]
TOKEN = ISSUER.issue(CTX, [CAP_RELAY_FORWARD])


def _core(**kw):
    return RelayCore(biscuit_authorizer(ROOT), config=RelayConfig(**kw))


# -- two workers in one process, joined by a mesh socketpair ---------------------------------

async def _two_workers():
    from aura_core.asyncio.relay import RelayClient, RelayServer

    s0, s1 = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    w = [RelayServer(_core(), worker=i, workers=2, mesh={1 - i: s}, windows=ReceiptWindows(window=0.2),
                     signer=ReceiptSigner(RELAY_KEY)) for i, s in enumerate((s0, s1))]
    for srv in w:
        await srv.start()
    # pick a destination whose receipt chain is owned by the worker it is NOT connected to
    a_key = KEYS[0]
    b_key = next(k for k in KEYS[1:] if chain_owner(bytes(k.authority_id), 2) == 0)
    try:
        a = await RelayClient.connect(w[0].url, a_key, TOKEN, contexts=[CTX])
        b = await RelayClient.connect(w[1].url, b_key, TOKEN, contexts=[CTX], track_ids=True)
        await asyncio.sleep(0.1)  # the JOIN crosses the mesh
        await a.send_many(CTX, b_key.authority_id, [b"%d" % i for i in range(300)])
        got = [await asyncio.wait_for(b.recv(), 5) for _ in range(300)]
        # and back, the other way
        await b.send(CTX, a_key.authority_id, b"pong")
        back = await asyncio.wait_for(a.recv(), 5)
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(b.recv(), 1.0)  # collects the receipt signed by worker 0
        # b moves to worker 0: newest wins, frames follow it
        b2 = await RelayClient.connect(w[0].url, b_key, TOKEN, contexts=[CTX])
        await asyncio.sleep(0.1)
        await a.send(CTX, b_key.authority_id, b"after-move")
        moved = await asyncio.wait_for(b2.recv(), 5)
        for c in (a, b, b2):
            await c.close()
        return got, back, b, b_key, moved, [srv.stats() for srv in w]
    finally:
        await asyncio.gather(*(srv.close() for srv in w))


def test_cross_worker_forwarding_receipts_and_moves():
    got, back, b, b_key, moved, stats = asyncio.run(_two_workers())
    assert [p for _, _, p in got] == [b"%d" % i for i in range(300)]
    assert all(src == KEYS[0].authority_id for _, src, _ in got)
    assert back[2] == b"pong" and back[1] == b_key.authority_id
    assert moved[2] == b"after-move"
    assert stats[0]["metrics"]["forwarded"] == 301 and stats[1]["metrics"]["delivered_remote"] == 300
    # the receipt chain toward b is signed by its owner (worker 0), delivered by worker 1
    assert stats[0]["metrics"]["receipts_issued"] >= 1 and len(b.receipts) == 1
    r = Receipt.from_bytes(b.receipts[0])
    r.verify(RELAY_KEY.public)
    assert r.cost == 300 and r.commit == forward_commitment(b.envelope_ids)
    assert b.receipt_checks == [True]


# -- slow reader, flood ------------------------------------------------------------------------

async def _slow_reader():
    from aura_core.asyncio.relay import RelayClient, RelayServer

    core = _core(queue_limit=64, queue_bytes=64 * 1433)
    server = await RelayServer(core, write_timeout=0.5, backpressure_wait=0.001).start()
    peak = 0
    try:
        a = await RelayClient.connect(server.url, KEYS[0], TOKEN, contexts=[CTX])
        b = await RelayClient.connect(server.url, KEYS[1], TOKEN, contexts=[CTX])
        b._ws.transport.pause_reading()  # b never reads: its socket buffers fill up
        payload = b"\xab" * 1400
        for _ in range(60):
            await a.send_many(CTX, KEYS[1].authority_id, [payload] * 100)
            peak = max(peak, core.total_queued_bytes())
            await asyncio.sleep(0.02)
            if core.conn_of(bytes(KEYS[1].authority_id)) is None:
                break
        for _ in range(100):
            if core.conn_of(bytes(KEYS[1].authority_id)) is None:
                break
            await asyncio.sleep(0.05)
        gone = core.conn_of(bytes(KEYS[1].authority_id)) is None
        await a.close()
        return gone, peak, core.metrics
    finally:
        await server.close()


def test_slow_reader_is_disconnected_with_bounded_memory():
    gone, peak, m = asyncio.run(_slow_reader())
    assert gone  # write timeout hit: the relay let go of the reader
    assert peak <= 64 * 1433  # the queue never held more than its byte bound
    assert m.drop_queue_full > 0 or m.drop_unknown_destination > 0


async def _flood(rate: float, burst: float, n: int):
    from aura_core.asyncio.relay import RelayClient, RelayServer

    core = _core(rate=rate, burst=burst)
    server = await RelayServer(core).start()
    try:
        a = await RelayClient.connect(server.url, KEYS[0], TOKEN, contexts=[CTX])
        b = await RelayClient.connect(server.url, KEYS[1], TOKEN, contexts=[CTX])
        t0 = time.monotonic()
        await a.send_many(CTX, KEYS[1].authority_id, [b"x"] * n)
        got = 0
        try:
            while True:
                await asyncio.wait_for(b.recv(), 0.5)
                got += 1
        except asyncio.TimeoutError:
            pass
        elapsed = time.monotonic() - t0
        await a.close()
        await b.close()
        return got, elapsed, core.metrics
    finally:
        await server.close()


def test_flood_is_rate_limited():
    got, elapsed, m = asyncio.run(_flood(rate=100.0, burst=20.0, n=2000))
    assert got + m.drop_rate_limited == 2000
    assert got <= 20 + 100 * elapsed + 1  # the bucket: burst plus refill over the whole run
    assert m.drop_rate_limited >= 2000 - 20 - 100 * elapsed - 1


# -- the node as a subprocess ------------------------------------------------------------------

class Node:
    def __init__(self, *extra: str, port: int = 0, workers: int = 2) -> None:
        cmd = [sys.executable, "-m", "aura_core", "relay", "--host", "127.0.0.1", "--port", str(port),
               "--workers", str(workers), "--metrics-port", "0", "--biscuit-root", ROOT.hex(),
               "--identity-key", RELAY_KEY.seed_bytes().hex(), "--receipt-window", "0.2",
               "--log-level", "warning", *extra]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"relay node did not start (rc={self.proc.wait()})")
        self.info = json.loads(line)
        self.url = f"ws://127.0.0.1:{self.info['port']}"

    async def metrics(self) -> dict[str, float]:
        reader, writer = await asyncio.open_connection("127.0.0.1", self.info["metrics_port"])
        writer.write(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        text = (await reader.read()).decode()
        writer.close()
        out = {}
        for line in text.split("\r\n\r\n", 1)[1].splitlines():
            if line and not line.startswith("#"):
                name, value = line.rsplit(" ", 1)
                out[name] = float(value)
        return out

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()


@pytest.fixture
def node():
    n = Node()
    yield n
    n.stop()


async def _ring(n: Node, count: int):
    from aura_core.asyncio.relay import RelayClient

    clients = [await RelayClient.connect(n.url, k, TOKEN, contexts=[CTX]) for k in KEYS[:count]]
    await asyncio.sleep(0.2)
    for i, c in enumerate(clients):
        await c.send_many(CTX, KEYS[(i + 1) % count].authority_id, [b"%d:%d" % (i, j) for j in range(50)])
    got = []
    for i, c in enumerate(clients):
        frames = [await asyncio.wait_for(c.recv(), 10) for _ in range(50)]
        got.append([p for _, _, p in frames])
    m = await n.metrics()
    for c in clients:
        await c.close()
    return got, m


def test_node_workers_deliver_across_workers(node):
    count = 16  # SO_REUSEPORT spreads these over both workers (all on one: p = 2**-15)
    got, m = asyncio.run(_ring(node, count))
    for i in range(count):
        assert got[i] == [b"%d:%d" % ((i - 1) % count, j) for j in range(50)]
    assert m["aura_relay_workers"] == 2
    assert m["aura_relay_forwards_total"] == 50 * count
    assert m['aura_relay_drops_total{reason="queue_full"}'] == 0
    assert 0 < m['aura_relay_forward_latency_seconds_bucket{le="+Inf"}']


async def _drain_on_sigterm(n: Node, frames: int):
    from aura_core.asyncio.relay import RelayClient

    a = await RelayClient.connect(n.url, KEYS[0], TOKEN, contexts=[CTX])
    b = await RelayClient.connect(n.url, KEYS[1], TOKEN, contexts=[CTX])
    await asyncio.sleep(0.2)
    b._ws.transport.pause_reading()  # b is slow: frames pile up in the relay
    await a.send_many(CTX, KEYS[1].authority_id, [i.to_bytes(4, "big") + b"\0" * 1000 for i in range(frames)])
    for _ in range(200):
        m = await n.metrics()
        if m["aura_relay_forwards_total"] == frames:
            break
        await asyncio.sleep(0.05)
    acknowledged = int(m["aura_relay_forwards_total"])
    n.proc.send_signal(signal.SIGTERM)
    await asyncio.sleep(0.3)
    b._ws.transport.resume_reading()
    got = []
    with pytest.raises(TransportError):
        while True:
            got.append((await asyncio.wait_for(b.recv(), 15))[2])
    return acknowledged, got, b._ws.close_code


def test_sigterm_drains_every_acknowledged_frame(node):
    acknowledged, got, code = asyncio.run(_drain_on_sigterm(node, 400))
    assert acknowledged == 400
    assert [int.from_bytes(p[:4], "big") for p in got] == list(range(400))
    assert code == 1001
    # the SIGTERM above stops it: wait, not node.stop(), whose second SIGTERM could land after
    # the drain, when the node has dropped its handlers on the way out (-15 instead of 0)
    assert node.proc.wait(30) == 0


async def _restart(first: Node):
    from aura_core.asyncio.relay import RelayClient

    port = first.info["port"]
    a = await RelayClient.connect(first.url, KEYS[0], TOKEN, contexts=[CTX])
    b = await RelayClient.connect(first.url, KEYS[1], TOKEN, contexts=[CTX])
    await asyncio.sleep(0.2)
    await a.send_many(CTX, KEYS[1].authority_id, [b"before-%d" % i for i in range(20)])
    before = [(await asyncio.wait_for(b.recv(), 5))[2] for _ in range(20)]
    assert first.stop() == 0
    with pytest.raises(TransportError):
        await asyncio.wait_for(b.recv(), 5)
    second = await asyncio.to_thread(Node, port=port)
    try:
        # both ends reconnect (with backoff) and the stream continues
        a = await RelayClient.connect(second.url, KEYS[0], TOKEN, contexts=[CTX], retry_for=10)
        b = await RelayClient.connect(second.url, KEYS[1], TOKEN, contexts=[CTX], retry_for=10)
        await asyncio.sleep(0.2)
        await a.send_many(CTX, KEYS[1].authority_id, [b"after-%d" % i for i in range(20)])
        after = [(await asyncio.wait_for(b.recv(), 5))[2] for _ in range(20)]
        await a.close()
        await b.close()
    finally:
        second.stop()
    return before, after


def test_relay_restart_mid_stream_clients_reconnect(node):
    before, after = asyncio.run(_restart(node))
    assert before == [b"before-%d" % i for i in range(20)]
    assert after == [b"after-%d" % i for i in range(20)]


async def _retry_gives_up():
    from aura_core.asyncio.relay import RelayClient

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    t0 = time.monotonic()
    with pytest.raises(TransportError):
        await RelayClient.connect(f"ws://127.0.0.1:{port}", KEYS[0], TOKEN, contexts=[CTX], retry_for=0.3)
    return time.monotonic() - t0


def test_reconnect_retries_then_gives_up():
    assert asyncio.run(_retry_gives_up()) >= 0.15  # it did back off and retry before failing


# -- configuration -----------------------------------------------------------------------------

def test_config_file_and_flags(tmp_path: Path):
    from aura_core.cli import build_parser
    from aura_core.relay_cli import settings_from

    key_file = tmp_path / "relay.key"
    key_file.write_bytes(RELAY_KEY.seed_bytes())
    conf = tmp_path / "relay.toml"
    conf.write_text(f'[relay]\nport = 9000\nworkers = 3\nqueue_limit = 32\nrate = 50.5\n'
                    f'biscuit_root = "{ROOT.hex()}"\nidentity_key = "{key_file}"\nuvloop = true\n')
    args = build_parser().parse_args(["relay", "--config", str(conf), "--port", "9100", "--budget", "7"])
    s = settings_from(args)
    assert (s.port, s.workers, s.queue_limit, s.rate, s.budget, s.uvloop) == (9100, 3, 32, 50.5, 7, True)
    assert s.biscuit_root == ROOT and s.identity_key == RELAY_KEY.seed_bytes()
    conf.write_text("[relay]\nbogus = 1\n")
    with pytest.raises(SystemExit):
        settings_from(build_parser().parse_args(["relay", "--config", str(conf)]))
    with pytest.raises(SystemExit):  # no Biscuit root: refuses to run an open relay
        settings_from(build_parser().parse_args(["relay"]))
    with pytest.raises(SystemExit):  # receipts need a key
        settings_from(build_parser().parse_args(["relay", "--biscuit-root", ROOT.hex()]))


def test_metrics_text_format():
    from aura_core.asyncio.relay import RelayServer

    srv = RelayServer(_core())
    srv.core.metrics.drop_budget = 3
    srv.latency.observe(0.0002)
    srv.latency.observe(2.0)
    text = srv.metrics_text()
    assert 'aura_relay_drops_total{reason="budget"} 3' in text
    assert "aura_relay_budget_denials_total 3" in text
    assert 'aura_relay_forward_latency_seconds_bucket{le="0.00025"} 1' in text
    assert 'aura_relay_forward_latency_seconds_bucket{le="+Inf"} 2' in text
    assert "aura_relay_forward_latency_seconds_count 2" in text


def test_node_with_uvloop_flag():
    pytest.importorskip("uvloop", reason="uvloop is an optional accelerator")
    n = Node("--uvloop", workers=1)
    try:
        got, m = asyncio.run(_ring(n, 4))
        assert got[0] == [b"3:%d" % j for j in range(50)]
        assert m["aura_relay_forwards_total"] == 200
    finally:
        assert n.stop() == 0


def test_node_stops_when_a_worker_dies():
    n = Node(workers=2)
    try:
        children = []
        for task in Path(f"/proc/{n.proc.pid}/task").iterdir():
            children += [int(c) for c in (task / "children").read_text().split()]
        assert len(children) == 2
        os.kill(children[0], signal.SIGKILL)
        assert n.proc.wait(30) == 1  # the survivor was drained and stopped; status says why
    finally:
        n.stop()


def test_node_appends_signed_receipts_for_the_journal(tmp_path: Path):
    from aura_core.receipts import verify_chain

    n = Node("--receipts-dir", str(tmp_path), workers=2)
    try:
        asyncio.run(_ring(n, 4))
        time.sleep(0.6)  # windows of 0.2 s close
    finally:
        assert n.stop() == 0
    blobs = b"".join(p.read_bytes() for p in sorted(tmp_path.glob("worker-*.receipts")))
    assert blobs and len(blobs) % 200 == 0
    receipts = [Receipt.from_bytes(blobs[i:i + 200]) for i in range(0, len(blobs), 200)]
    assert sum(r.cost for r in receipts) == 200  # every forward is covered exactly once
    by_dst: dict[bytes, list[Receipt]] = {}
    for r in receipts:
        r.verify(RELAY_KEY.public)
        by_dst.setdefault(bytes(r.dst), []).append(r)
    for chain in by_dst.values():  # one signer per chain: each dst's receipts form one chain
        chain.sort(key=lambda r: r.nonce)
        assert verify_chain(chain, RELAY_KEY.public).total == 50


async def _cross_worker_drain():
    from aura_core.asyncio.relay import RelayClient, RelayServer

    s0, s1 = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    w = [RelayServer(_core(), worker=i, workers=2, mesh={1 - i: s}) for i, s in enumerate((s0, s1))]
    for srv in w:
        await srv.start()
    a = await RelayClient.connect(w[0].url, KEYS[0], TOKEN, contexts=[CTX])
    b = await RelayClient.connect(w[1].url, KEYS[1], TOKEN, contexts=[CTX])
    await asyncio.sleep(0.1)
    b._ws.transport.pause_reading()
    await a.send_many(CTX, KEYS[1].authority_id, [i.to_bytes(4, "big") + b"\0" * 1000 for i in range(300)])
    while w[0].core.metrics.forwarded < 300:
        await asyncio.sleep(0.01)
    closing = asyncio.gather(*(srv.close() for srv in w))
    await asyncio.sleep(0.2)
    b._ws.transport.resume_reading()
    got = []
    with pytest.raises(TransportError):
        while True:
            got.append((await asyncio.wait_for(b.recv(), 10))[2])
    await closing
    return got, [srv.core.metrics for srv in w]


def test_shutdown_drains_frames_in_flight_between_workers():
    got, metrics = asyncio.run(_cross_worker_drain())
    assert [int.from_bytes(p[:4], "big") for p in got] == list(range(300))
    assert metrics[1].delivered_remote == 300 and metrics[1].drop_queue_full == 0


async def _garbage():
    from websockets.asyncio.client import connect

    from aura_core.asyncio.relay import RelayClient, RelayServer

    core = _core()
    server = await RelayServer(core).start()
    try:
        a = await RelayClient.connect(server.url, KEYS[0], TOKEN, contexts=[CTX])
        b = await RelayClient.connect(server.url, KEYS[1], TOKEN, contexts=[CTX])
        await a._ws.send("a text message")                       # not our protocol
        await a._ws.send([b"\x10" + bytes(CTX), bytes(KEYS[1].authority_id) + b"frag"])  # fragmented
        await a._ws.send(b"\x10short")
        await a.send(CTX, KEYS[1].authority_id, b"still works")
        got = await asyncio.wait_for(b.recv(), 5)
        raw = await connect(server.url, compression=None, proxy=None)  # unauthenticated garbage
        await raw.recv()
        await raw.send(b"\xff" * 64)
        refusal = await raw.recv()
        await asyncio.wait_for(raw.wait_closed(), 5)
        await a.close()
        await b.close()
        return got, refusal, raw.close_code, core.metrics
    finally:
        await server.close()


def test_server_survives_malformed_websocket_messages():
    got, refusal, code, m = asyncio.run(_garbage())
    assert got[2] == b"still works"
    assert refusal[:2] == b"\x7f\x02" and code == 1008
    assert m.drop_malformed >= 3 and m.forwarded == 1 and m.auth_failures == 1


async def _epochs():
    from aura_core.asyncio.relay import RelayClient, RelayServer

    core = _core(budget_per_epoch=5)
    server = await RelayServer(core, epoch_seconds=0.5, windows=ReceiptWindows(window=0.1),
                               signer=ReceiptSigner(RELAY_KEY)).start()
    try:
        a = await RelayClient.connect(server.url, KEYS[0], TOKEN, contexts=[CTX])
        b = await RelayClient.connect(server.url, KEYS[1], TOKEN, contexts=[CTX], track_ids=True)
        if 0.5 - time.time() % 0.5 < 0.2:  # not right at a boundary: all ten in one epoch
            await asyncio.sleep(0.25)
        first_epoch = core.epoch
        await a.send_many(CTX, KEYS[1].authority_id, [b"a%d" % i for i in range(10)])
        got = [(await asyncio.wait_for(b.recv(), 5))[2] for _ in range(5)]
        while core.epoch == first_epoch:
            await asyncio.sleep(0.05)
        await a.send_many(CTX, KEYS[1].authority_id, [b"b%d" % i for i in range(5)])
        got += [(await asyncio.wait_for(b.recv(), 5))[2] for _ in range(5)]
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(b.recv(), 0.6)
        await a.close()
        await b.close()
        return got, first_epoch, core, b
    finally:
        await server.close()


def test_wall_clock_epochs_reset_budgets():
    got, first_epoch, core, b = asyncio.run(_epochs())
    assert got == [b"a%d" % i for i in range(5)] + [b"b%d" % i for i in range(5)]
    assert core.metrics.drop_budget == 5 and first_epoch > 0
    receipts = [Receipt.from_bytes(r) for r in b.receipts]
    assert sum(r.cost for r in receipts) == 10 and all(b.receipt_checks)
    assert len({r.epoch for r in receipts}) >= 2  # a new chain per epoch


async def _lockstep_windows():
    from aura_core.asyncio.relay import RelayClient, RelayServer

    core = _core()
    server = await RelayServer(core, windows=ReceiptWindows(window=30.0, max_cost=4),
                               signer=ReceiptSigner(RELAY_KEY)).start()
    batches: list[int] = []
    route = server._route_closes
    server._route_closes = lambda closes: (batches.append(len(closes)), route(closes))[1]
    try:
        a = await RelayClient.connect(server.url, KEYS[0], TOKEN, contexts=[CTX])
        dsts = [await RelayClient.connect(server.url, k, TOKEN, contexts=[CTX], track_ids=True)
                for k in KEYS[1:5]]
        frames = [(d, b"%d-%d" % (j, i)) for i in range(12) for j, d in enumerate(dsts)]
        for d, p in frames:  # round-robin: the four windows fill in lockstep
            await a.send(CTX, d.authority, p)
        got = [[(await asyncio.wait_for(d.recv(), 5))[2] for _ in range(12)] for d in dsts]
        for d in dsts:  # nothing more but the receipts, which recv() collects
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(d.recv(), 0.3)
        for c in (a, *dsts):
            await c.close()
        return got, dsts, batches
    finally:
        await server.close()


def test_windows_filling_in_lockstep_each_get_their_receipt_in_chain_order():
    got, dsts, batches = asyncio.run(_lockstep_windows())
    assert got == [[b"%d-%d" % (j, i) for i in range(12)] for j in range(4)]
    # 12 full windows (3 per destination), each signed in its own call, none lost or merged
    assert batches[:12] == [1] * 12
    for d in dsts:
        rs = [Receipt.from_bytes(r) for r in d.receipts]
        assert [r.cost for r in rs] == [4, 4, 4] and d.receipt_checks == [True] * 3
        assert [r.nonce for r in rs] == [1, 2, 3] and rs[1].prev == rs[0].hash()


async def _deferred_order():
    from aura_core.asyncio.relay import RelayServer
    from aura_core.hashing import Hash32
    from aura_core.relay import WindowClose

    server = RelayServer(_core(), windows=ReceiptWindows(), signer=ReceiptSigner(RELAY_KEY))
    routed: list[list[bytes]] = []
    server._route_closes = lambda closes: routed.append([c.dst for c in closes])
    closes = [WindowClose(bytes(CTX), bytes([i]) * 16, 0, 4, 4, Hash32(bytes(32))) for i in range(4)]
    server._defer_closes(closes[:3])
    steps = [list(routed)]
    for _ in range(2):
        await asyncio.sleep(0)  # one loop iteration
        steps.append(list(routed))
    server._close_windows(closes[3:])  # an immediate close (timer, rotation) drains first
    return steps, routed


def test_deferred_signing_takes_one_window_per_iteration_and_keeps_order():
    steps, routed = asyncio.run(_deferred_order())
    d = [bytes([i]) * 16 for i in range(4)]
    assert steps == [[], [[d[0]]], [[d[0]], [d[1]]]]  # nothing in the read's own iteration
    assert routed == [[d[0]], [d[1]], [d[2], d[3]]]
