"""Load run: N concurrent authorities (default 1,000) through one relay node, 1400-byte frames.

Starts ``aura-core relay`` (one worker per core) in a subprocess on 127.0.0.1, connects N
Biscuit-authenticated authorities in pairs (each sends to its partner) plus a few clients
that never authenticate and try to send anyway, offers a paced load for a bounded time, and
prints one JSON report: delivered frames/s, p50/p99 latency (send timestamp inside the
payload -> receipt, so it includes both kernels and the client loop), relay RSS (all
processes) and its CPU seconds per million delivered frames (utime+stime of the node's
processes while the load ran; this generator excluded), peak queue depth/bytes from the metrics endpoint against their bound, drops by
reason, and the unauthenticated clients' outcome.

    .venv/bin/python tests/relay_load.py [--clients 1000] [--seconds 10] [--rate 20000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path

from aura_core.benchsuite.relay import RawLink, _cpu_seconds, _process_tree, client_frame, open_raw
from aura_core.capabilities import CAP_RELAY_FORWARD, CapabilityIssuer
from aura_core.ids import ContextId
from aura_core.keys import IdentityKey
from aura_core.relay import encode_send

FRAME = 1400
QUEUE_LIMIT = 512
_T = struct.Struct(">Q")


def _rss_kib(pid: int) -> int:
    """Resident memory of ``pid`` and its children (the workers)."""
    pids = [pid]
    try:
        for task in Path(f"/proc/{pid}/task").iterdir():
            pids += [int(c) for c in (task / "children").read_text().split()]
    except OSError:
        pass
    total = 0
    for p in pids:
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total


async def _metrics(port: int) -> dict[str, float]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
    text = (await reader.read()).decode()
    writer.close()
    out = {}
    for line in text.split("\r\n\r\n", 1)[1].splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            out[name] = float(value)
    return out


async def _attacker(url: str, ctx: ContextId, victim: bytes, issuer_root: bytes) -> str:
    """Connect, never authenticate properly, try to send: returns what the relay did."""
    from websockets.asyncio.client import connect

    ws = await connect(url, compression=None, ping_interval=None, proxy=None)
    await ws.recv()  # CHALLENGE
    try:
        for _ in range(10):
            await ws.send(encode_send(ctx, victim, b"\xee" * FRAME))
        reply = await asyncio.wait_for(ws.recv(), 5)
        await asyncio.wait_for(ws.wait_closed(), 5)
        return f"refused:{reply[:2].hex()}:close={ws.close_code}"
    except Exception as exc:  # closed before or after the ERROR
        return f"closed:{type(exc).__name__}:close={ws.close_code}"


async def run(clients: int, seconds: float, rate: float, workers: int, attackers: int) -> dict[str, object]:
    issuer = CapabilityIssuer(bytes(range(32)))
    ctx = ContextId(b"\x33" * 16)
    token = issuer.issue(ctx, [CAP_RELAY_FORWARD], expires_at=int(time.time() * 1000) + 3_600_000)
    cmd = [sys.executable, "-m", "aura_core", "relay", "--port", "0", "--workers", str(workers),
           "--metrics-port", "0", "--biscuit-root", issuer.public_key.hex(), "--ephemeral-identity",
           "--queue-limit", str(QUEUE_LIMIT), "--max-clients", str(clients + attackers + 100),
           "--log-level", os.environ.get("RELAY_LOG", "warning")]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    try:
        info = json.loads(proc.stdout.readline())  # type: ignore[union-attr]
        url = f"ws://127.0.0.1:{info['port']}"
        keys = [IdentityKey.from_seed(i.to_bytes(4, "big") * 8) for i in range(clients)]
        latencies: list[int] = []
        links: list[RawLink] = []
        transports: list[asyncio.Transport] = [None] * clients  # type: ignore[list-item]
        sem = asyncio.Semaphore(64)

        async def join(i: int) -> None:
            async with sem:
                t = await open_raw("aura", url, keys[i], token, ctx)
            transports[i] = t
            links.append(RawLink(t, lambda: None, latencies))

        t0 = time.perf_counter()
        await asyncio.gather(*(join(i) for i in range(clients)))
        connect_s = time.perf_counter() - t0
        refusals = await asyncio.gather(*(_attacker(url, ctx, bytes(keys[0].authority_id), issuer.public_key)
                                          for _ in range(attackers)))
        heads = [client_frame(encode_send(ctx, keys[i ^ 1].authority_id, b"\0" * FRAME))[:-FRAME]
                 for i in range(clients)]
        pad = b"\0" * (FRAME - 8)
        peak = {"queue_depth": 0.0, "queued_bytes": 0.0, "rss_kib": 0}
        stop = asyncio.Event()

        async def watch() -> None:
            while not stop.is_set():
                m = await _metrics(info["metrics_port"])
                peak["queue_depth"] = max(peak["queue_depth"], m["aura_relay_queue_depth"])
                peak["queued_bytes"] = max(peak["queued_bytes"], m["aura_relay_queued_bytes"])
                peak["rss_kib"] = max(peak["rss_kib"], _rss_kib(proc.pid))
                await asyncio.sleep(0.5)

        watcher = asyncio.create_task(watch())
        cpu0 = sum(_cpu_seconds(p) for p in _process_tree(proc.pid))
        tick = 0.01
        sent = 0
        cursor = 0
        carry = 0.0
        start = time.perf_counter()
        nxt = start
        while nxt < start + seconds:
            carry += rate * tick
            n = int(carry)
            carry -= n
            now_ns = time.perf_counter_ns()
            for _ in range(n):
                i = cursor
                cursor = (cursor + 1) % clients
                transports[i].write(heads[i] + _T.pack(now_ns) + pad)
            sent += n
            nxt += tick
            await asyncio.sleep(max(0.0, nxt - time.perf_counter()))
        offered_s = time.perf_counter() - start
        await asyncio.sleep(2.0)  # let the tail arrive
        relay_cpu = sum(_cpu_seconds(p) for p in _process_tree(proc.pid)) - cpu0
        stop.set()
        await watcher
        m = await _metrics(info["metrics_port"])
        received = sum(link.received for link in links)
        lat = sorted(latencies)

        def q(p: float) -> float:
            return round(lat[min(len(lat) - 1, int(p * len(lat)))] / 1e6, 3) if lat else float("nan")

        report = {
            "clients": clients, "workers": info["workers"], "frame_bytes": FRAME, "seconds": round(offered_s, 2),
            "connect_seconds": round(connect_s, 2),
            "offered_frames_per_s": round(sent / offered_s), "delivered_frames_per_s": round(received / offered_s),
            "sent": sent, "delivered": received,
            "relay_cpu_s_per_1M": round(relay_cpu / received * 1e6, 2) if received else None,
            "mesh_fraction": round(m["aura_relay_delivered_remote_total"] / max(1, m["aura_relay_forwards_total"]), 3),
            "latency_ms": {"p50": q(0.50), "p99": q(0.99), "max": q(1.0)},
            "relay_rss_mib": round(peak["rss_kib"] / 1024, 1),
            "peak_queue_depth": int(peak["queue_depth"]), "peak_queued_bytes": int(peak["queued_bytes"]),
            "queue_bound_frames": clients * QUEUE_LIMIT,
            "forwards_total": int(m["aura_relay_forwards_total"]),
            "auth_failures": int(m["aura_relay_auth_failures_total"]),
            "authenticated": int(m["aura_relay_authenticated"]),
            "drops": {k.split('"')[1]: int(v) for k, v in m.items() if k.startswith("aura_relay_drops_total")},
            "receipts": int(m["aura_relay_receipts_total"]),
            "unauthenticated_clients": attackers, "unauthenticated_outcomes": sorted(set(refusals)),
        }
        for t in transports:
            t.close()
        return report
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()


def main(argv: list[str] | None = None) -> dict[str, object]:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--clients", type=int, default=1000)
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--rate", type=float, default=20000.0, help="offered frames/s in total")
    p.add_argument("--workers", type=int, default=0, help="relay workers (0: one per core)")
    p.add_argument("--attackers", type=int, default=20, help="clients that never authenticate")
    args = p.parse_args(argv)
    report = asyncio.run(run(args.clients, args.seconds, args.rate, args.workers or (os.cpu_count() or 1),
                             args.attackers))
    print(json.dumps(report, indent=1))
    return report


if __name__ == "__main__":
    main()
