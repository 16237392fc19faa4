"""PeerConnection across real NATs: relay first through the product's WebSocket relay, direct
QUIC behind cones, relay fallback behind symmetric NATs — with no message lost, duplicated or
reordered either way.

The lab is tests/netlab/lab.py (namespaces + nftables + coturn).  In ``pub`` this file runs the
product relay (:class:`aura_core.asyncio.relay.RelayServer`, ``static_authorizer``); in ``hA`` /
``hB`` it runs an agent (this same file with ``agent``) that learns its reflexive address from
coturn on the socket it then punches from, opens a channel over the relay
(:meth:`PeerConnection.establish`), streams numbered messages, learns the peer's candidates (the
orchestrator stands in for descriptor exchange) and lets the connection upgrade — or not.

Run alone: ``sudo .venv/bin/python -m pytest tests/netlab/test_connection_netlab.py -m netlab -s``.
"""

from __future__ import annotations

import asyncio
import json
import os
import selectors
import socket
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

RELAY_WS = ("100.64.0.3", 4001)  # beside the lab's UDP relay stand-in (port 4000)
TOKEN = "6c61622d746f6b656e"  # b"lab-token"
COUNT = 200  # messages per phase, each way (three phases: relay, during upgrade, after)

# (router A, router B, clash) -> the path both sides must end on
MODES = {
    "cone-cone": ("cone", "cone", False, "direct"),
    "fullcone-symmetric": ("fullcone", "symmetric", False, "direct"),
    "cone-symmetric": ("cone", "symmetric", False, "relay"),
    "symmetric-symmetric": ("symmetric", "symmetric", False, "relay"),
    "cone-cone-clash": ("cone", "cone", True, "direct"),
}
TRIALS = int(os.environ.get("AURA_NETLAB_CONN_TRIALS", "1"))


# -- the processes inside the lab ---------------------------------------------------------------

async def relay_main(host: str, port: int, context: str, ids: list[str]) -> None:
    from aura_core.asyncio.relay import RelayServer
    from aura_core.ids import AuthorityId, ContextId
    from aura_core.relay import RelayCore, static_authorizer

    grants = {AuthorityId(bytes.fromhex(i)): [ContextId(bytes.fromhex(context))] for i in ids}
    server = await RelayServer(RelayCore(static_authorizer(grants, bytes.fromhex(TOKEN))),
                               host, port).start()
    print("relay up", server.url, flush=True)
    await asyncio.Event().wait()


def emit(obj: dict) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


async def read_line() -> dict:
    line = await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    if not line:
        raise SystemExit("orchestrator went away")
    return json.loads(line)


async def agent_main(a: dict) -> None:
    from aura_core.asyncio.connection import ConnectionConfig, PeerConnection, RelayLink
    from aura_core.asyncio.quic import DirectEndpoint
    from aura_core.asyncio.relay import RelayClient
    from aura_core.asyncio.stun import discover
    from aura_core.hashing import ContextKey
    from aura_core.ids import ContextId
    from aura_core.keys import IdentityKey, PublicIdentity
    from aura_core.punch import PunchEngine
    from aura_core.selection import ConnState

    me = IdentityKey.from_seed(bytes.fromhex(a["seed"]))
    peer = PublicIdentity(bytes.fromhex(a["peer_pub"]))
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("0.0.0.0", 0))
    ok, behaviour, _ = await discover(sock, [(h, int(p)) for h, p in a["stun"]])
    mapped = list(dict.fromkeys(tuple(r.mapped) for r in ok))
    emit({"stage": "stun", "mapped": mapped, "behaviour": str(behaviour)})
    engine = PunchEngine(bytes(me.authority_id), bytes.fromhex(a["nonce"]),
                         [(bytes(peer.authority_id), bytes.fromhex(a["peer_nonce"]))])
    endpoint = await DirectEndpoint.bind(engine, sock=sock)
    url = f"ws://{RELAY_WS[0]}:{RELAY_WS[1]}"
    link = await RelayLink(lambda: RelayClient.connect(url, me, bytes.fromhex(TOKEN),
                                                       timeout=3.0)).start(timeout=20)
    cfg = ConnectionConfig(punch_window=1.5, prepunch=0.2, attempts=1, attempt_timeout=5.0,
                           keepalive_interval=0.5, direct_timeout=3.0)
    conn = await PeerConnection.establish(
        relay=link, identity=me, peer=peer, context_key=ContextKey(bytes.fromhex(a["ck"])),
        context=ContextId(bytes.fromhex(a["context"])), epoch=1, initiator=a["initiator"],
        endpoint=endpoint, local_candidates=mapped, config=cfg)
    got: list[bytes] = []

    async def reader() -> None:
        while True:
            got.append(await conn.recv())

    task = asyncio.create_task(reader())
    loop = asyncio.get_running_loop()

    async def send(start: int, n: int) -> None:
        for i in range(start, start + n):
            await conn.send(b"m" + i.to_bytes(4, "big"))
            if i % 20 == 19:
                await asyncio.sleep(0.002)

    await send(0, COUNT)
    emit({"stage": "relay_up"})
    cands = await read_line()  # both sides get each other's candidates at the same moment
    conn.update_candidates(1, [tuple(c) for c in cands["candidates"]])
    await send(COUNT, COUNT)
    end = loop.time() + 12.0
    while loop.time() < end and not (conn.state is ConnState.DIRECT or (
            conn.state is ConnState.RELAY_ONLY and conn.stats["attempts"] >= 1
            and (conn._upgrade_task is None or conn._upgrade_task.done()))):
        await asyncio.sleep(0.05)
    await send(2 * COUNT, COUNT)
    end = loop.time() + 20.0
    while len(got) < 3 * COUNT and loop.time() < end:
        await asyncio.sleep(0.02)
    await conn.flush(10.0)
    await asyncio.sleep(0.2)
    expected = [b"m" + i.to_bytes(4, "big") for i in range(3 * COUNT)]
    emit({"stage": "done", "path": conn.path, "state": conn.state.value,
          "received": len(got), "exact": got == expected,
          "data_relay_in": conn.stats["data_relay_in"],
          "data_direct_in": conn.stats["data_direct_in"],
          "trace": [t for _, t in conn.trace]})
    await read_line()  # exit when told (the peer may still be receiving)
    task.cancel()
    await conn.close()
    await link.close()
    endpoint.close()


# -- the orchestrator (pytest) -------------------------------------------------------------------

def _read(p: subprocess.Popen[str], timeout: float) -> dict:
    sel = selectors.DefaultSelector()
    sel.register(p.stdout, selectors.EVENT_READ)  # type: ignore[arg-type]
    try:
        if not sel.select(timeout):
            raise TimeoutError("agent did not answer in time")
    finally:
        sel.close()
    line = p.stdout.readline()  # type: ignore[union-attr]
    if not line:
        raise RuntimeError(f"agent exited: {p.stderr.read()[-3000:]}")  # type: ignore[union-attr]
    return json.loads(line)


def _write(p: subprocess.Popen[str], obj: dict) -> None:
    p.stdin.write(json.dumps(obj) + "\n")  # type: ignore[union-attr]
    p.stdin.flush()  # type: ignore[union-attr]


def run_trial(lab, keys, context: bytes, ck: bytes) -> list[dict]:
    from lab import PUB_STUN, STUN_PORT

    nonces = [os.urandom(32), os.urandom(32)]
    agents = []
    for i, host in enumerate(("hA", "hB")):
        args = {"seed": keys[i].seed_bytes().hex(), "peer_pub": keys[1 - i].public.ed25519.hex(),
                "nonce": nonces[i].hex(), "peer_nonce": nonces[1 - i].hex(), "ck": ck.hex(),
                "context": context.hex(), "initiator": i == 0,
                "stun": [[ip, STUN_PORT] for ip in PUB_STUN]}
        p = subprocess.Popen(["ip", "netns", "exec", lab.ns(host), sys.executable, "-u",
                              str(Path(__file__)), "agent", json.dumps(args)],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True, cwd=HERE.parent.parent)
        lab.procs.append(p)
        agents.append(p)
    try:
        stun = [_read(p, 20) for p in agents]
        for p in agents:
            assert _read(p, 30)["stage"] == "relay_up"
        for i, p in enumerate(agents):
            _write(p, {"candidates": stun[1 - i]["mapped"]})
        done = [_read(p, 60) for p in agents]
        for p in agents:
            _write(p, {"cmd": "exit"})
        for p in agents:
            p.wait(timeout=15)
    finally:
        for p in agents:
            if p.poll() is None:
                p.kill()
                p.wait()
    for d, s in zip(done, stun):
        d["behaviour"] = s["behaviour"]
    return done


@pytest.mark.netlab
@pytest.mark.parametrize("name", list(MODES))
def test_connection_through_nats(name: str) -> None:
    from lab import NatLab, missing_requirements

    why = missing_requirements()
    if why:
        pytest.skip(why)
    from aura_core.keys import IdentityKey

    mode_a, mode_b, clash, expect = MODES[name]
    with NatLab(mode_a, mode_b, clash=clash) as lab:
        lab.wait_ready()
        keys = [IdentityKey.generate(), IdentityKey.generate()]
        context, ck = os.urandom(16), os.urandom(32)
        lab._spawn("pub", [sys.executable, str(Path(__file__)), "relay", RELAY_WS[0],
                           str(RELAY_WS[1]), context.hex(),
                           *(bytes(k.authority_id).hex() for k in keys)], "wsrelay.out")
        for trial in range(TRIALS):
            done = run_trial(lab, keys, context, ck)
            print(f"\n{name} trial {trial}: " + json.dumps(
                [{k: d[k] for k in ("path", "state", "received", "data_relay_in",
                                    "data_direct_in", "behaviour")} for d in done]))
            for d in done:
                # relay first, whatever happens next; every message exactly once, in order
                assert d["exact"] and d["received"] == 3 * COUNT, d
                assert d["data_relay_in"] > 0, d
                assert d["path"] == expect, d
                if expect == "direct":
                    assert d["data_direct_in"] > 0, d
                else:
                    assert d["data_direct_in"] == 0 and d["state"] == "relay-only", d


if __name__ == "__main__":
    if sys.argv[1] == "relay":
        asyncio.run(relay_main(sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5:]))
    elif sys.argv[1] == "agent":
        asyncio.run(agent_main(json.loads(sys.argv[2])))
