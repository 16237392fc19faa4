"""Relay forwarding benchmarks: frames/s through a relay server running in a subprocess.

Contenders (one group, 1400-byte frames, one server process each, all on 127.0.0.1):

- ``ours``: ``aura-core relay --workers 1`` with every guard on: Biscuit-authenticated
  clients, per-frame context check, token bucket, flow budget charged before each forward,
  receipt windows signed with the relay's key (and sent to the destinations);
- ``limit``: the same server stack with ``--no-guards`` (no per-frame guards, budgets or
  receipts): the ceiling of the stack itself;
- ``peer``: a minimal ``websockets`` forwarder (``python -m aura_core.benchsuite.relay peer``):
  ``async for`` each message, ``await dst.send(...)``, as one would write it.

``run()`` pushes one batch (``PAIRS`` senders x ``BATCH`` frames, each sender to its own
receiver) and returns once every frame has been DELIVERED to its receiver, so the rate is
end-to-end forwarding throughput, not what a send buffer absorbed.  The load generator is the
same for all three: clients authenticate through the real protocol, then write pre-built
masked WebSocket frames straight to their transports and count delivered frames without
decoding them (so the client side stays cheap next to the server).

``python -m aura_core.benchsuite.relay report`` also measures latency percentiles (p50/p99,
from timestamps inside the payloads) at half the saturating rate of each stack.
"""

from __future__ import annotations

import asyncio
import atexit
import json
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from . import Group

FRAME = 1400
PAIRS = 8
BATCH = 128           # frames per sender per run() (below the relay's 512-frame queues)
HEADER = 33
_T = struct.Struct(">Q")

# -- raw client side -----------------------------------------------------------------------------


def client_frame(message: bytes) -> bytes:
    """A masked binary WebSocket frame (all-zero masking key: the payload is sent as is)."""
    n = len(message)
    if n < 126:
        head = bytes([0x82, 0x80 | n])
    elif n < 65536:
        head = bytes([0x82, 0x80 | 126]) + n.to_bytes(2, "big")
    else:
        head = bytes([0x82, 0x80 | 127]) + n.to_bytes(8, "big")
    return head + b"\0\0\0\0" + message


class RawLink(asyncio.Protocol):
    """Takes over an open client WebSocket's transport: counts binary frames received,
    answers pings, and optionally reads a send timestamp at payload offset 0."""

    def __init__(self, transport: asyncio.Transport, on_frame: Callable[[], None],
                 latencies: list[float] | None = None) -> None:
        self.transport = transport
        self._buf = bytearray()
        self.on_frame = on_frame
        self.latencies = latencies
        self.received = 0
        self.closed = False
        self.since = 0
        transport.set_protocol(self)

    def data_received(self, data: bytes) -> None:
        buf = self._buf
        buf += data
        off, n = 0, len(buf)
        count = 0
        lat = self.latencies
        while n - off >= 2:
            b0, b1 = buf[off], buf[off + 1] & 0x7F
            pos = off + 2
            if b1 == 126:
                if n - pos < 2:
                    break
                b1 = int.from_bytes(buf[pos:pos + 2], "big")
                pos += 2
            elif b1 == 127:
                if n - pos < 8:
                    break
                b1 = int.from_bytes(buf[pos:pos + 8], "big")
                pos += 8
            if n - pos < b1:
                break
            op = b0 & 0x0F
            if op == 2 and buf[pos] == 0x11:  # DELIVER (RECEIPTs are not counted)
                count += 1
                if lat is not None and b1 >= HEADER + 8:
                    ts = _T.unpack_from(buf, pos + HEADER)[0]
                    if ts >= self.since:  # frames of an earlier measurement are not counted
                        lat.append(time.perf_counter_ns() - ts)
            elif op == 9:  # ping -> pong
                self.transport.write(client_frame_op(0x8A, bytes(buf[pos:pos + b1])))
            elif op == 8:
                self.closed = True
            off = pos + b1
        del buf[:off]
        if count:
            self.received += count
            self.on_frame_count(count)

    def on_frame_count(self, count: int) -> None:
        self.on_frame()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True


def client_frame_op(first: int, payload: bytes) -> bytes:
    return bytes([first, 0x80 | len(payload)]) + b"\0\0\0\0" + payload


async def open_raw(kind: str, url: str, key: Any, token: bytes, ctx: Any) -> asyncio.Transport:
    """Authenticate (``aura``) or say hello (``peer``), then hand back the raw transport."""
    if kind == "peer":
        from websockets.asyncio.client import connect

        ws = await connect(url, compression=None, max_size=None, ping_interval=None, proxy=None)
        await ws.send(bytes(key.authority_id))
        return ws.transport
    from ..asyncio.relay import RelayClient

    client = await RelayClient.connect(url, key, token, contexts=[ctx], ping_interval=None)
    return client._ws.transport


# -- server stacks in subprocesses ---------------------------------------------------------------

_ISSUER_SEED = bytes(range(32))
_procs: list[subprocess.Popen[str]] = []


@atexit.register
def _stop_all() -> None:
    for p in _procs:
        if p.poll() is None:
            p.terminate()
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()


def start_stack(kind: str, workers: int = 1, *extra: str) -> tuple[subprocess.Popen[str], dict[str, Any]]:
    """Start ``ours`` / ``limit`` (aura-core relay) or ``peer`` in a subprocess; (proc, the
    ready line: ``port``, and ``metrics_port`` for the relay stacks)."""
    from ..capabilities import CapabilityIssuer

    if kind == "peer":
        cmd = [sys.executable, "-m", "aura_core.benchsuite.relay", "peer"]
    else:
        root = CapabilityIssuer(_ISSUER_SEED).public_key.hex()
        cmd = [sys.executable, "-m", "aura_core", "relay", "--port", "0", "--workers", str(workers),
               "--biscuit-root", root, "--ephemeral-identity", "--log-level", "warning",
               "--metrics-port", "0", *extra]
        if kind == "limit":
            cmd.append("--no-guards")
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    _procs.append(p)
    line = p.stdout.readline() if p.stdout else ""
    if not line:
        raise RuntimeError(f"{kind} relay did not start")
    return p, json.loads(line)


class Harness:
    """PAIRS sender->receiver links to one stack, driven from a background event loop."""

    def __init__(self, kind: str, workers: int = 1, pairs: int = PAIRS, port: int | None = None) -> None:
        from ..capabilities import CAP_RELAY_FORWARD, CapabilityIssuer
        from ..ids import ContextId
        from ..keys import IdentityKey
        from ..relay import encode_send

        self.kind = kind
        self.proc: subprocess.Popen[str] | None = None
        self.metrics_port: int | None = None
        if port is None:
            self.proc, info = start_stack(kind, workers)
            self.port = int(info["port"])
            self.metrics_port = info.get("metrics_port")
        else:
            self.port = port
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        ctx = ContextId(b"\x42" * 16)
        token = CapabilityIssuer(_ISSUER_SEED).issue(ctx, [CAP_RELAY_FORWARD])
        keys = [IdentityKey.from_seed(i.to_bytes(2, "big") * 16) for i in range(2 * pairs)]
        self.latencies: list[float] = []
        self._target = 0
        self._got = 0
        self._done = threading.Event()
        url = f"ws://127.0.0.1:{self.port}"

        async def setup() -> tuple[list[asyncio.Transport], list[RawLink]]:
            senders, receivers = [], []
            for i in range(pairs):
                rx = await open_raw(kind, url, keys[2 * i + 1], token, ctx)
                receivers.append(RawLink(rx, self._on_frame, self.latencies))
                senders.append(await open_raw(kind, url, keys[2 * i], token, ctx))
            await asyncio.sleep(0.1)
            return senders, receivers

        self.senders, self.receivers = asyncio.run_coroutine_threadsafe(setup(), self.loop).result(30)
        self._sends = [client_frame(encode_send(ctx, keys[2 * i + 1].authority_id, b"\0" * FRAME))
                       for i in range(pairs)]
        self._batches = [f * BATCH for f in self._sends]
        self._heads = [f[:-FRAME] for f in self._sends]

    def _on_frame(self) -> None:
        got = sum(r.received for r in self.receivers)
        if got >= self._target:
            self._done.set()

    def push(self, timeout: float = 10.0) -> int:
        """One batch through the relay; returns the frames delivered."""
        per = BATCH * len(self.senders)
        self._done.clear()
        self._target = sum(r.received for r in self.receivers) + per
        start = self._target - per

        def write() -> None:
            for t, batch in zip(self.senders, self._batches):
                t.write(batch)

        self.loop.call_soon_threadsafe(write)
        self._done.wait(timeout)
        return sum(r.received for r in self.receivers) - start

    def paced(self, rate: float, seconds: float, warmup: float = 0.25) -> list[float]:
        """Send timestamped frames at ``rate`` frames/s for ``warmup + seconds``; latencies in
        seconds of the frames sent after the warm-up (steady state: the first ~50 ms of load
        after an idle pause cost the server about twice as much per frame, in every stack)."""
        self.latencies.clear()
        tick = 0.0005  # fine-grained pacing: arrivals from many clients are not 2 ms bursts
        pad = b"\0" * (FRAME - 8)
        senders = list(zip(self.senders, self._heads))

        async def settle() -> None:  # until nothing more arrives (a backlog drains first)
            last = -1
            for _ in range(100):
                got = sum(r.received for r in self.receivers)
                if got == last:
                    return
                last = got
                await asyncio.sleep(0.2)

        async def go() -> None:
            await settle()
            for r in self.receivers:
                r.since = time.perf_counter_ns() + int(warmup * 1e9)  # warm-up frames not counted
            self.latencies.clear()
            end = time.perf_counter() + warmup + seconds
            nxt = time.perf_counter()
            carry = 0.0
            k = 0
            while nxt < end:
                carry += rate * tick
                n = int(carry)
                carry -= n
                stamp = _T.pack(time.perf_counter_ns())
                for _ in range(n):  # round-robin over the senders
                    t, head = senders[k]
                    k = (k + 1) % len(senders)
                    t.write(head + stamp + pad)
                nxt += tick
                await asyncio.sleep(max(0.0, nxt - time.perf_counter()))
            await settle()

        asyncio.run_coroutine_threadsafe(go(), self.loop).result(warmup + seconds + 30)
        return sorted(x / 1e9 for x in self.latencies)

    def relay_cpu_seconds(self) -> float:
        """utime + stime of the relay's processes (the node and its workers; not this one)."""
        assert self.proc is not None
        return sum(_cpu_seconds(p) for p in _process_tree(self.proc.pid))

    def metrics(self) -> dict[str, float]:
        """The relay's Prometheus counters (summed over its workers)."""
        import urllib.request

        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=10) as r:
            text = r.read().decode()
        return {name: float(value) for name, value in
                (line.rsplit(" ", 1) for line in text.splitlines() if line and not line.startswith("#"))}

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)


def _process_tree(pid: int) -> list[int]:
    """``pid`` and its descendants (a relay node's workers are its children)."""
    import os

    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        try:
            for task in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{task}/children") as f:
                    todo += [int(c) for c in f.read().split()]
        except OSError:
            pass
    return out


def _cpu_seconds(pid: int) -> float:
    """utime + stime of one process (``/proc/<pid>/stat`` fields 14 and 15), in seconds."""
    import os

    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()  # the name may hold spaces: skip past it
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


_harnesses: dict[str, Harness] = {}


def _contender(kind: str) -> Callable[[], Callable[[], int]]:
    def factory() -> Callable[[], int]:
        def run() -> int:
            h = _harnesses.get(kind)
            if h is None:  # started lazily: discovering the suite costs nothing
                # the others stay up (idle): runners may interleave contenders' samples
                h = _harnesses[kind] = Harness(kind)
                for _ in range(5):  # warm up (connections, windows, allocator) before timing
                    h.push()
            return h.push()
        return run
    return factory


def groups() -> list[Group]:
    g = Group("relay", f"forward {FRAME} B frames, {PAIRS} pairs, 1 worker", "frames",
              goals={"same stack, no guards": 0.7, "websockets forwarder": 1.5})
    g.add("aura relay (guards+budgets+receipts)", "ours", _contender("ours"))
    g.add("same stack, no guards", "limit", _contender("limit"))
    g.add("websockets forwarder", "peer", _contender("peer"))
    return [g]


# -- the peer: a minimal websockets forwarder ----------------------------------------------------

async def _peer_main() -> None:
    from websockets.asyncio.server import serve

    peers: dict[bytes, Any] = {}

    async def handler(ws: Any) -> None:
        me = await ws.recv()
        peers[me] = ws
        try:
            async for m in ws:
                dst = peers.get(m[17:33])
                if dst is not None:
                    await dst.send(b"\x11" + m[1:17] + me + m[33:])
        finally:
            peers.pop(me, None)

    async with serve(handler, "127.0.0.1", 0, compression=None, max_size=None) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        print(json.dumps({"port": port}), flush=True)
        await asyncio.Future()


def interleaved_rates(rounds: int = 7, window: float = 0.3,
                      kinds: tuple[str, ...] = ("ours", "limit", "peer")) -> dict[str, float]:
    """Median frames/s of each stack, measured in alternating windows (a shared machine's
    load drifts; alternating keeps the comparison fair).  All servers stay up, idle when
    not measured."""
    import statistics

    hs = {k: Harness(k) for k in kinds}
    rates: dict[str, list[float]] = {k: [] for k in kinds}
    try:
        for h in hs.values():
            for _ in range(3):
                h.push()
        for _ in range(rounds):
            for k, h in hs.items():
                t0 = time.perf_counter()
                n = 0
                while time.perf_counter() - t0 < window:
                    n += h.push()
                rates[k].append(n / (time.perf_counter() - t0))
    finally:
        for h in hs.values():
            h.close()
    return {k: statistics.median(v) for k, v in rates.items()}


def scaling(workers: tuple[int, ...] = (1, 2), rounds: int = 5, window: float = 1.0,
            pairs: int = 32) -> dict[str, Any]:
    """Capacity per core: the guarded stack with 1 and with 2 workers under the same load.

    Both nodes stay up; windows alternate between them (the machine is shared).  Per node:
    delivered frames/s (wall clock: on a 2-core machine the load generator needs a core too,
    so this can hardly scale here), relay CPU seconds per million forwarded frames (utime +
    stime of the node's processes, the load generator excluded: the figure that says whether
    capacity grows with cores), and the share of frames that crossed the worker mesh.
    """
    import os
    import statistics

    hs = {w: Harness("ours", workers=w, pairs=pairs) for w in workers}
    per: dict[int, dict[str, list[float]]] = {w: {"rate": [], "cpu_per_m": []} for w in workers}
    frames_total = dict.fromkeys(workers, 0)
    cpu_total = dict.fromkeys(workers, 0.0)
    try:
        for h in hs.values():
            for _ in range(5):
                h.push()
        before = {w: h.metrics() for w, h in hs.items()}
        load = os.getloadavg()[0]
        for _ in range(rounds):
            for w, h in hs.items():
                c0 = h.relay_cpu_seconds()
                t0 = time.perf_counter()
                n = 0
                while time.perf_counter() - t0 < window:
                    n += h.push()
                dt = time.perf_counter() - t0
                cpu = h.relay_cpu_seconds() - c0
                per[w]["rate"].append(n / dt)
                per[w]["cpu_per_m"].append(cpu / n * 1e6 if n else float("nan"))
                frames_total[w] += n
                cpu_total[w] += cpu
        after = {w: h.metrics() for w, h in hs.items()}
    finally:
        for h in hs.values():
            h.close()
    out: dict[str, Any] = {"pairs": pairs, "frame_bytes": FRAME, "rounds": rounds, "window_s": window,
                           "loadavg_1m": round(load, 2)}
    for w in workers:
        fwd = after[w]["aura_relay_forwards_total"] - before[w]["aura_relay_forwards_total"]
        remote = (after[w]["aura_relay_delivered_remote_total"]
                  - before[w]["aura_relay_delivered_remote_total"])
        cpu_m = cpu_total[w] / frames_total[w] * 1e6 if frames_total[w] else float("nan")
        out[f"workers_{w}"] = {
            "frames_per_s": round(statistics.median(per[w]["rate"])),
            "relay_cpu_s_per_1M": round(cpu_m, 2),
            "relay_cpu_s_per_1M_median_window": round(statistics.median(per[w]["cpu_per_m"]), 2),
            "capacity_frames_per_cpu_s": round(1e6 / cpu_m) if cpu_m == cpu_m else None,
            "mesh_fraction": round(remote / fwd, 3) if fwd else 0.0,
        }
    if len(workers) == 2:
        one, two = (out[f"workers_{w}"] for w in workers)
        out[f"cpu_per_frame_{workers[1]}w_over_{workers[0]}w"] = round(
            two["relay_cpu_s_per_1M"] / one["relay_cpu_s_per_1M"], 3)
        if two["mesh_fraction"]:  # what one frame crossing the mesh adds, both workers together
            out["mesh_extra_us_per_crossed_frame"] = round(
                (two["relay_cpu_s_per_1M"] - one["relay_cpu_s_per_1M"]) / two["mesh_fraction"], 2)
    return out


def report(seconds: float = 2.0, rates: tuple[float, ...] = (2000.0, 5000.0)) -> dict[str, Any]:
    """Saturating rates (interleaved), then latency percentiles at half of each stack's
    saturating rate and at the same fixed offered rates for every stack."""
    sat = interleaved_rates()
    out: dict[str, Any] = {}
    for kind in ("ours", "limit", "peer"):
        h = Harness(kind)
        try:
            for _ in range(5):
                h.push()
            rate = sat[kind]
            row: dict[str, Any] = {"frames_per_s": round(rate)}
            for label, offered in (("half_load", rate / 2), *((f"at_{int(r)}", r) for r in rates)):
                lat = h.paced(offered, seconds)
                expected = offered * seconds

                def pick(q: float) -> float:
                    return round(lat[min(len(lat) - 1, int(q * len(lat)))] * 1e3, 3) if lat else float("nan")

                row[label] = {"offered": round(offered), "delivered_share": round(len(lat) / expected, 3),
                              "p50_ms": pick(0.5), "p99_ms": pick(0.99)}
            out[kind] = row
        finally:
            h.close()
    out["ratio_ours_over_limit"] = round(out["ours"]["frames_per_s"] / out["limit"]["frames_per_s"], 3)
    out["ratio_ours_over_peer"] = round(out["ours"]["frames_per_s"] / out["peer"]["frames_per_s"], 3)
    return out


if __name__ == "__main__":
    if sys.argv[1:2] == ["peer"]:
        asyncio.run(_peer_main())
    elif sys.argv[1:2] == ["scaling"]:
        print(json.dumps(scaling(rounds=int(sys.argv[2]) if len(sys.argv) > 2 else 5), indent=1))
    elif sys.argv[1:2] == ["rates"]:
        print(json.dumps(interleaved_rates(int(sys.argv[2]) if len(sys.argv) > 2 else 7), indent=1))
    else:
        print(json.dumps(report(float(sys.argv[2]) if len(sys.argv) > 2 else 2.0), indent=1))
