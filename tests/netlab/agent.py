"""One host's punch agent for the NAT lab: ``ip netns exec <host> python agent.py ARGS``.

Talks JSON lines with the orchestrator (tests/netlab/test_netlab.py), which stands in for the
descriptor exchange (rendezvous) and keeps both sides' start synchronised:

  -> {"stage": "stun", "mapped": [[ip, port], ...], "behaviour": ...}
  <- {"candidates": [[ip, port], ...], "window": s, "prepunch": s}      (both sides at once)
  -> {"stage": "punch", "direct": bool, "path": [ip, port] | null, "elapsed": s, "stats": {...}}
     (then answers the peer's punches until told to stop)
  <- {"cmd": "stop"}      -> {"stage": "stopped"}
  <- {"cmd": "data"} | {"cmd": "relay"}
  -> {"stage": "data", "via": "direct" | "relay", "received": n, "lost": n, "dups": n, "bad": n}

Data phase: N sequence-numbered datagrams each way, authenticated with keyed BLAKE2b-128 under a
key both sides derive from the two punch nonces (aura_core.noise's datagram session is not in the
tree yet; swap it in here when it lands).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import json
import socket
import sys

from aura_core.asyncio.punch import punch, serve, set_rcvbuf
from aura_core.asyncio.stun import discover
from aura_core.punch import PunchEngine, is_punch


def emit(obj: dict) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


async def read_line() -> dict:
    line = await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    if not line:
        raise SystemExit("orchestrator went away")
    return json.loads(line)


def addr(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host, int(port)


class Data:
    """Authenticated sequence-numbered datagrams: 'AURD' || seq u32 || body 40 || tag 16."""

    def __init__(self, key: bytes, me: bytes, peer: bytes) -> None:
        self.key, self.me, self.peer = key, me, peer

    def _tag(self, sender: bytes, head: bytes) -> bytes:
        return hashlib.blake2b(sender + head, key=self.key, digest_size=16).digest()

    def make(self, seq: int) -> bytes:
        head = b"AURD" + seq.to_bytes(4, "big") + hashlib.sha256(seq.to_bytes(4, "big")).digest()[:8] * 5
        return head + self._tag(self.me, head)

    def check(self, data: bytes) -> int | None:
        if len(data) != 64 or data[:4] != b"AURD":
            return None
        if not hmac.compare_digest(self._tag(self.peer, data[:48]), data[48:]):
            return None
        return int.from_bytes(data[4:8], "big")


async def exchange(send, recv, data: Data, count: int, timeout: float) -> dict:
    """Send ``count`` datagrams, receive the peer's ``count``; report loss/dups/bad."""
    loop = asyncio.get_running_loop()
    for i in range(count):
        send(data.make(i))
        if i % 64 == 63:
            await asyncio.sleep(0)
    seen: set[int] = set()
    dups = bad = 0
    end = loop.time() + timeout
    while len(seen) < count and loop.time() < end:
        try:
            raw = await asyncio.wait_for(recv(), max(0.0, end - loop.time()))
        except (TimeoutError, asyncio.TimeoutError):
            break
        if is_punch(raw):
            continue  # a late punch from the peer, not data
        seq = data.check(raw)
        if seq is None or seq >= count:
            bad += 1
        elif seq in seen:
            dups += 1
        else:
            seen.add(seq)
    return {"received": len(seen), "lost": count - len(seen), "dups": dups, "bad": bad}


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--me", required=True)
    ap.add_argument("--nonce", required=True)
    ap.add_argument("--peer", required=True)
    ap.add_argument("--peer-nonce", required=True)
    ap.add_argument("--stun", action="append", required=True)
    ap.add_argument("--relay", required=True)
    ap.add_argument("--count", type=int, default=1000)
    a = ap.parse_args()
    me, nonce = bytes.fromhex(a.me), bytes.fromhex(a.nonce)
    peer, peer_nonce = bytes.fromhex(a.peer), bytes.fromhex(a.peer_nonce)
    loop = asyncio.get_running_loop()

    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    set_rcvbuf(sock)
    sock.bind(("0.0.0.0", 0))
    sock.setblocking(False)
    relay_sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    set_rcvbuf(relay_sock)
    relay_sock.bind(("0.0.0.0", 0))
    relay_sock.setblocking(False)
    relay = addr(a.relay)
    relay_sock.sendto(me + bytes(16), relay)  # register with the relay

    results, behaviour, failed = await discover(sock, [addr(s) for s in a.stun])
    emit({"stage": "stun", "mapped": [list(r.mapped) for r in results], "behaviour": behaviour,
          "failed": [f.reason for f in failed]})

    go = await read_line()
    engine = PunchEngine(me, nonce, [(peer, peer_nonce)])
    outcome = await punch(engine, sock, peer, [tuple(c) for c in go["candidates"]],
                          window=go["window"], prepunch=go["prepunch"],
                          interval=go.get("interval", 0.05))
    emit({"stage": "punch", "direct": outcome.direct, "path": outcome.path,
          "elapsed": outcome.elapsed, "stats": outcome.stats})

    stop = asyncio.Event()
    server = asyncio.ensure_future(serve(engine, sock, stop))
    cmd = await read_line()
    stop.set()
    await server
    emit({"stage": "stopped"})
    cmd = await read_line()

    key = hashlib.blake2b(b"".join(sorted((nonce, peer_nonce))), digest_size=32,
                          person=b"aura.netlab.data").digest()
    data = Data(key, me, peer)
    if cmd["cmd"] == "data" and outcome.path is not None:
        path = outcome.path
        report = await exchange(lambda b: sock.sendto(b, path),
                                lambda: loop.sock_recv(sock, 2048), data, a.count, 5.0)
        emit({"stage": "data", "via": "direct", **report})
    else:
        async def recv_relay() -> bytes:
            while True:
                raw = await loop.sock_recv(relay_sock, 2048)
                if raw[:16] == peer and raw[16:32] == me:
                    return raw[32:]

        report = await exchange(lambda b: relay_sock.sendto(me + peer + b, relay), recv_relay,
                                data, min(a.count, 200), 5.0)
        emit({"stage": "data", "via": "relay", **report})


if __name__ == "__main__":
    asyncio.run(main())
