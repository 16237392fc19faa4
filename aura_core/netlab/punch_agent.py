"""One host's punch agent for the NAT lab: ``ip netns exec <host> python -m
aura_core.netlab.punch_agent ARGS`` (:meth:`NatLab.agent`).

Talks JSON lines with the orchestrator (tests/netlab/test_netlab.py), which stands in for the
descriptor exchange (rendezvous) and keeps both sides' start synchronised:

  -> {"stage": "stun", "mapped": [[ip, port], ...], "behaviour": ...}
  <- {"candidates": [[ip, port], ...], "window": s, "prepunch": s}      (both sides at once)
  -> {"stage": "punch", "direct": bool, "path": [ip, port] | null, "elapsed": s, "stats": {...}}
     (then answers the peer's punches until told to stop)
  <- {"cmd": "stop"}      -> {"stage": "stopped"}
  <- {"cmd": "data"} | {"cmd": "relay"}
  -> {"stage": "data", "via": "direct" | "relay", "received": n, "lost": n, "dups": n, "bad": n}
  <- {"cmd": "exit"} | {"cmd": "idle", "seconds": s, "keepalive": s}   (direct only)
  -> {"stage": "after_idle", "keepalives": n, "received": n, "lost": n, ...}

Direct data phase: an Aura Noise IKpsk2 handshake (aura_core.noise.AuraHandshake; hA initiates)
over the punched path, then N sequence-numbered messages each way through its DatagramSession.
Relay phase (no direct path): N sequence-numbered datagrams each way through the relay stand-in,
authenticated with keyed BLAKE2b-128 (the product relay carries Noise frames; not this stand-in).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import json
import socket
import sys
from collections.abc import Awaitable, Callable

from aura_core.asyncio.punch import keepalive, serve, set_rcvbuf, upgrade
from aura_core.asyncio.stun import discover
from aura_core.hashing import ContextKey
from aura_core.keys import IdentityKey, PublicIdentity
from aura_core.noise import AuraHandshake, Offer
from aura_core.punch import PunchEngine, is_punch
from aura_core.selection import (AttemptBudget, CandidateGeneration, CandidatesUpdated,
                                 LocalBinding, NetworkChanged, NetworkGeneration,
                                 PeerConnectionActor)

HS1, HS2, DATA = b"\xd1", b"\xd2", b"\xd3"  # the lab's own demux byte before each Noise message


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


SKIP = -1  # a datagram that is not data (late punch, keepalive, handshake resend): ignored


async def transfer(send: Callable[[int], object], recv: Callable[[], Awaitable[bytes]],
                   decode: Callable[[bytes], int | None], base: int, count: int,
                   timeout: float) -> dict:
    """Send datagrams ``base .. base+count-1`` (``send(i)``), then receive until the peer's
    ``count`` arrived or ``timeout``; ``decode`` gives a datagram's number, None (bad) or SKIP.
    Reports loss, duplicates and bad datagrams."""
    loop = asyncio.get_running_loop()
    for i in range(base, base + count):
        send(i)
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
        seq = decode(raw)
        if seq == SKIP:
            continue
        if seq is None or not base <= seq < base + count:
            bad += 1
        elif seq in seen:
            dups += 1
        else:
            seen.add(seq)
    return {"received": len(seen), "lost": count - len(seen), "dups": dups, "bad": bad}


async def exchange(send, recv, data: Data, count: int, timeout: float) -> dict:
    """``count`` authenticated datagrams each way (the relay stand-in's path)."""
    return await transfer(lambda i: send(data.make(i)), recv,
                          lambda raw: SKIP if is_punch(raw) else data.check(raw), 0, count, timeout)


async def noise_exchange(sock: socket.socket, path: tuple[str, int], identity: IdentityKey,
                         peer: PublicIdentity, ck: ContextKey, context: bytes, initiator: bool,
                         count: int, epoch: int = 1) -> tuple[dict, object]:
    """IKpsk2 handshake over the direct path, then ``count`` messages each way (DatagramSession)."""
    loop = asyncio.get_running_loop()
    offer = Offer(epoch=epoch, version=1 << 16, min_version=1 << 16)
    early: list[bytes] = []

    async def recv(timeout: float) -> bytes | None:
        try:
            return await asyncio.wait_for(loop.sock_recv(sock, 70000), timeout)
        except (TimeoutError, asyncio.TimeoutError):
            return None

    end = loop.time() + 5.0
    if initiator:
        hs = AuraHandshake.initiator(identity, peer, ck, context, epoch, offer)
        msg1 = HS1 + hs.write_message()
        sock.sendto(msg1, path)
        resend = loop.time() + 0.25
        while not hs.complete and loop.time() < end:
            raw = await recv(max(0.0, resend - loop.time()))
            if raw is None:
                sock.sendto(msg1, path)  # lost handshake message: send it again
                resend = loop.time() + 0.25
            elif raw[:1] == HS2:
                hs.read_message(raw[1:])
            elif raw[:1] == DATA:
                early.append(raw)  # the responder may start before our read of msg 2
        session = hs.datagram_session(1, 2)
    else:
        hs = AuraHandshake.responder(identity, ck, context, epoch, offer,
                                     lambda rs: peer if rs == peer.x25519 else None)
        while loop.time() < end:
            raw = await recv(max(0.0, end - loop.time()))
            if raw is not None and raw[:1] == HS1:
                hs.read_message(raw[1:])
                sock.sendto(HS2 + hs.write_message(), path)
                break
        session = hs.datagram_session(2, 1)
    report = await noise_transfer(sock, path, session, count, 0, early)
    report["noise"] = {"channel_id": str(hs.channel_id), "session": session.stats}
    return report, session


async def noise_transfer(sock: socket.socket, path: tuple[str, int], session, count: int,
                         base: int, early: list[bytes] | None = None,
                         timeout: float = 5.0) -> dict:
    """``count`` sequence-numbered messages each way through the Noise datagram session."""
    loop = asyncio.get_running_loop()
    early = early if early is not None else []

    async def recv() -> bytes:
        return early.pop(0) if early else await loop.sock_recv(sock, 70000)

    def decode(raw: bytes) -> int | None:
        if raw[:1] != DATA:
            return SKIP  # late punches, keepalives, handshake retransmissions
        plain = session.receive(raw[1:])  # None: failed auth or replay, dropped and counted
        return None if plain is None else int.from_bytes(plain[:4], "big")

    return await transfer(lambda i: sock.sendto(DATA + session.seal(i.to_bytes(4, "big") + bytes(28)),
                                                path), recv, decode, base, count, timeout)


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seed", required=True)  # our Ed25519 seed
    ap.add_argument("--nonce", required=True)  # our descriptor's punch_nonce
    ap.add_argument("--peer-pub", required=True)  # the peer's Ed25519 public key
    ap.add_argument("--peer-nonce", required=True)
    ap.add_argument("--context-key", required=True)
    ap.add_argument("--context", required=True)
    ap.add_argument("--initiator", action="store_true")
    ap.add_argument("--stun", action="append", required=True)
    ap.add_argument("--relay", required=True)
    ap.add_argument("--count", type=int, default=1000)
    a = ap.parse_args()
    identity = IdentityKey.from_seed(bytes.fromhex(a.seed))
    peer_public = PublicIdentity(bytes.fromhex(a.peer_pub))
    me, peer = bytes(identity.authority_id), bytes(peer_public.authority_id)
    nonce, peer_nonce = bytes.fromhex(a.nonce), bytes.fromhex(a.peer_nonce)
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
    # the upgrade policy decides: one attempt in the lab (relay is always there)
    net = NetworkGeneration(0)
    binding = LocalBinding("eth0", sock.getsockname(), net)
    actor = PeerConnectionActor(loop.time(), budget=AttemptBudget(go.get("attempts", 1)),
                                attempt_timeout=go["window"] + go["prepunch"] + 1.0)
    actor.handle(NetworkChanged(net, frozenset({binding})), loop.time())
    actor.handle(CandidatesUpdated(CandidateGeneration(1),
                                   tuple(tuple(c) for c in go["candidates"])), loop.time())
    outcome = await upgrade(actor, engine, sock, peer, binding, window=go["window"],
                            prepunch=go["prepunch"], interval=go.get("interval", 0.05))
    assert outcome is not None
    emit({"stage": "punch", "direct": outcome.direct, "path": outcome.path,
          "elapsed": outcome.elapsed, "stats": outcome.stats, "state": actor.state.value,
          "transitions": [(b.value, a.value) for _, b, a, _ in actor.history]})

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
        report, session = await noise_exchange(sock, outcome.path, identity, peer_public,
                                               ContextKey(bytes.fromhex(a.context_key)),
                                               bytes.fromhex(a.context), a.initiator, a.count)
        emit({"stage": "data", "via": "direct", **report})
        cmd = await read_line()
        if cmd["cmd"] == "idle":
            # idle past the routers' UDP conntrack timeout, holding the mapping (or not)
            stop = asyncio.Event()
            ka = asyncio.ensure_future(keepalive(engine, sock, peer, outcome.path, stop,
                                                 interval=cmd["keepalive"])
                                       ) if cmd["keepalive"] > 0 else None
            await asyncio.sleep(cmd["seconds"])
            stop.set()
            sent = await ka if ka is not None else 0
            if not a.initiator:  # the initiator's packets arrive first: deterministic test
                await asyncio.sleep(cmd.get("responder_delay", 0.0))
            after = await noise_transfer(sock, outcome.path, session, 100, 1 << 20, timeout=2.0)
            emit({"stage": "after_idle", "keepalives": sent, **after})
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
