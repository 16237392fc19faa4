"""One authority of ``aura-core demo --netlab``, inside its NATed host namespace (hA or hB).

Runs as ``ip netns exec <lab>-hA python -m aura_core.netlab.peer``; reads one JSON line of
configuration on stdin (secrets travel there, not in argv) and writes JSON lines::

  {"say": [who, text]}                      a trace line (the orchestrator prints it)
  {"stage": "done", "path": ..., ...}       the outcome, with every check (see ``report``)
  {"stage": "error", "error": text}         a step raised; the mode fails

The story is the loopback demo's (aura_core/asyncio/demo.py) told by one side, with the same
step functions: learn the reflexive address from coturn on the UDP socket that will punch,
publish the descriptor (QuicReflexive + WebSocketRelay hints) to ``pub``'s journal by
anti-entropy sync (retried until pub answers) until the peer's descriptor arrives, open the
channel over the relay at once,
exchange, let the connection try the direct upgrade in the background (while traffic keeps
flowing), exchange on whatever path it settled on, rotate the epoch, exchange again.
Exchanges alternate direction; the sending side reads the answers, so both check order.
With ``"restart": true`` in the configuration, once the upgrade settled both sides stream
numbered messages to each other while the orchestrator SIGKILLs pub's relay and starts it again
(:func:`stream_across_restart`); the report then has a ``restart`` entry.
"""

from __future__ import annotations

import asyncio
import json
import socket
import sys
import tempfile
import time

from ..asyncio import sync as journal_sync
from ..asyncio.demo import (EPOCH, Authority, Trace, admit_connect, attach, channel_line,
                            demo_config, detach, establish, exchange_side, join, learn, publish,
                            record_channel, rotate_local, sync_line, upgrade_settled,
                            wait_until)
from ..asyncio.stun import discover
from ..errors import AuraError
from ..hashing import ContextKey
from ..ids import AuthorityId, ContextId
from ..journal import JournalStore
from ..keys import IdentityKey, PublicIdentity
from ..rendezvous import QuicReflexive, RendezvousDescriptor, WebSocketRelay

# the lab's timing: one attempt per candidate generation (a cone pair punches at the first in
# tests/netlab/test_netlab.py), so relay fallback is decided within the punch window
CONFIG = dict(keepalive_interval=0.5, direct_timeout=3.0, prepunch=0.2, attempts=1,
              attempt_timeout=5.0, handshake_timeout=15.0)
SYNC_PATIENCE = 20.0  # seconds to wait for the peer's descriptor to reach pub
# relay restart (``"restart": true``): messages before asking for the kill and after the link is
# back, the pace between sends, and how long the whole stream may take
RESTART_LEAD, RESTART_PACE, RESTART_PATIENCE = 50, 0.005, 20.0


def emit(obj: dict) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


class LineTrace(Trace):
    """Trace lines go to the orchestrator as JSON (it timestamps and prints them)."""

    def say(self, who: str, text: str) -> None:
        emit({"say": [who, text]})


async def fetch_peer(t: Trace, p: Authority, ctx: ContextId, peer_name: str, peer: AuthorityId,
                     sync_addr: tuple[str, int]) -> RendezvousDescriptor | None:
    """Anti-entropy with pub's journal until the peer's descriptor is there (ours goes out on
    the first round)."""
    end = time.monotonic() + SYNC_PATIENCE
    rounds = 0
    while time.monotonic() < end:
        session = await journal_sync.sync_with(p.journal, bytes(ctx), *sync_addr, peer="pub")
        rounds += 1
        if session.stats.facts_pushed or session.stats.facts_pulled:
            sync_line(t, f"{p.name} ⇄ pub (round {rounds})", session)
        d = learn(t, p, ctx, peer_name, peer)
        if d is not None:
            return d
        await asyncio.sleep(0.2)
    return None


async def stream_across_restart(t: Trace, p: Authority, peer_name: str, direct: bool) -> dict:
    """Both sides at once: numbered messages to the peer, from before the relay is killed until
    after the link is back up (so some are accepted while the relay is gone), then an end marker
    with the count; meanwhile read the peer's stream.  Every message ``send`` accepted must
    arrive exactly once, in order: the PeerConnection retransmits what the dead relay dropped."""
    conn, link = p.conn, p.link
    assert conn is not None and link is not None
    connects0, dropped0 = link.stats["connects"], link.stats["send_dropped"]
    retx0 = conn.switcher.stats["retransmitted"]
    phase = {"before": 0, "down": 0, "after": 0}  # sends by what the link looked like
    got: list[bytes] = []

    async def read() -> None:
        while not got or not got[-1].startswith(b"end "):
            got.append(await conn.recv())

    reader = asyncio.create_task(read())
    sent = 0
    ok = False
    try:
        end = time.monotonic() + RESTART_PATIENCE
        while time.monotonic() < end:
            await conn.send(b"restart %d from %s" % (sent, p.name.encode()))
            sent += 1
            back = link.stats["connects"] > connects0
            phase["after" if back else "before" if link.up.is_set() else "down"] += 1
            if sent == RESTART_LEAD:
                emit({"stage": "streaming"})  # the orchestrator kills the relay now
            if back and phase["after"] >= RESTART_LEAD:
                break
            await asyncio.sleep(RESTART_PACE)
        await conn.send(b"end %d" % sent)
        await asyncio.wait_for(reader, max(1.0, end - time.monotonic()))
        want = [b"restart %d from %s" % (i, peer_name.encode()) for i in range(int(got[-1][4:]))]
        ok = got[:-1] == want and link.stats["connects"] > connects0
    except (asyncio.TimeoutError, AuraError):
        pass
    finally:
        reader.cancel()
    received, connects = max(0, len(got) - 1), link.stats["connects"] - connects0
    retx = conn.switcher.stats["retransmitted"] - retx0
    t.say(p.name, f"relay restart mid-stream ({'direct' if direct else 'relay-only'} path): sent "
                  f"{sent} ({phase['down']} while the relay was down), received {received} from "
                  f"{peer_name}; relay link reconnected {connects}x through the NAT, "
                  f"{retx} retransmitted")
    t.check(f"restart: {p.name} reconnected to the restarted relay", connects >= 1)
    t.check(f"restart: exactly-once in-order delivery across the relay restart ({p.name} "
            f"received)", ok)
    return {"sent": sent, "received": received, "phases": phase, "connects": connects,
            "send_dropped": link.stats["send_dropped"] - dropped0, "retransmitted": retx,
            "path": conn.path}


async def story(c: dict, t: Trace, tmp: str) -> dict:
    name, peer_name, n = c["name"], c["peer_name"], c["messages"]
    initiator = bool(c["initiator"])
    ctx = ContextId(bytes.fromhex(c["ctx"]))
    root = bytes.fromhex(c["root"])
    context_key = ContextKey(bytes.fromhex(c["ck"]))
    key = IdentityKey.from_seed(bytes.fromhex(c["seed"]))
    peer = PublicIdentity(bytes.fromhex(c["peer_pub"]))
    cfg = demo_config(**CONFIG)

    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("0.0.0.0", 0))
    results, behaviour, _ = await discover(sock, [(h, int(port)) for h, port in c["stun"]])
    mapped = list(dict.fromkeys((r.mapped[0], r.mapped[1]) for r in results))
    t.say(name, f"{key.authority_id}; UDP socket :{sock.getsockname()[1]}; STUN (coturn in pub) "
                f"sees it as {', '.join('%s:%d' % m for m in mapped) or 'nothing'} — "
                f"mapping {behaviour}")
    t.check(f"{name} learned a reflexive address", bool(mapped))

    p = Authority(name, key, bytes.fromhex(c["token"]), JournalStore(f"{tmp}/{name}.sqlite"), sock)
    join(p, ctx, context_key, [key.authority_id, peer.authority_id])
    try:
        publish(t, p, ctx, root, [*(QuicReflexive("%s:%d" % m) for m in mapped),
                                  WebSocketRelay(AuthorityId(bytes.fromhex(c["relay_id"])))])
        desc = await fetch_peer(t, p, ctx, peer_name, peer.authority_id,
                                (c["sync"][0], int(c["sync"][1])))
        t.check(f"{name} learned {peer_name}'s descriptor", desc is not None)
        if desc is None:
            raise TimeoutError(f"{peer_name}'s descriptor never reached pub's journal")

        admit_connect(t, p, peer.authority_id, peer_name, ctx, root)
        t0 = time.monotonic()
        await attach(p, peer.authority_id, desc, c["relay_url"], ctx)
        conn = await establish(p, peer, context_key, ctx, initiator, cfg, local_candidates=mapped)
        time_to_relay = time.monotonic() - t0
        first_channel = conn.channel_id
        channel_line(t, p)
        ids = (key.authority_id, peer.authority_id)
        record_channel(p, ctx, *(ids if initiator else ids[::-1]))

        async def exchange(label: str, first: bool) -> bool:
            """``first``: the initiator sends (the other side answers)."""
            return await exchange_side(t, p, peer_name, n, label, sending=initiator == first)

        await exchange("relay", True)

        conn.update_from_descriptor(desc)
        t1 = time.monotonic()
        t.say(name, f"direct candidates from {peer_name}'s descriptor "
                    f"({', '.join(h.addr for h in desc.transport_hints if isinstance(h, QuicReflexive))}); "
                    f"punching in the background while the relay keeps carrying traffic")
        await exchange("upgrading", False)
        settled = await wait_until(lambda: upgrade_settled(conn), 20)
        elapsed = time.monotonic() - t1
        direct = conn.path == "direct"
        t.check(f"{name}: the upgrade settled (direct or relay fallback)", settled)
        if direct:
            t.say(name, f"path now direct after {elapsed:.2f} s: QUIC over the punched UDP socket "
                        f"(state {conn.state.name})")
        else:
            t.say(name, f"no direct path after {conn.stats['attempts']} attempt(s), "
                        f"{elapsed:.2f} s: staying on the relay (relay fallback, state "
                        f"{conn.state.name})")
        restart = None
        if c.get("restart"):  # the orchestrator SIGKILLs and restarts pub's relay meanwhile
            restart = await stream_across_restart(t, p, peer_name, direct)
        await exchange("direct" if direct else "fallback", True)
        await exchange("back", False)

        # the responder may see the re-handshake before its side of the last exchange ends:
        # compare with the first channel, not the one at this point
        rotate_local(p, ctx, EPOCH + 1)
        if initiator:
            await asyncio.wait_for(conn.rotate(EPOCH + 1), 15)
        rotated = await wait_until(lambda: conn.epoch == EPOCH + 1 and conn.channel_id != first_channel, 15)
        t.check(f"{name}: epoch rotated", rotated)
        if initiator:
            assert conn.channel_id is not None
            t.say(name, f"epoch {EPOCH} → {EPOCH + 1}: re-handshake with the new epoch's PSK, "
                        f"channel {conn.channel_id.hex()[:16]}…; budgets reset")
        await exchange("epoch2", True)
        stats = dict(conn.stats)
        t.say(name, f"received {stats['data_relay_in']} frames via the relay, "
                    f"{stats['data_direct_in']} direct; path {conn.path}")
        return {"path": conn.path, "state": conn.state.value, "behaviour": str(behaviour),
                "mapped": mapped, "time_to_relay": time_to_relay,
                "time_to_direct": elapsed if direct else None,
                "fallback_after": None if direct else elapsed, "channel_id": conn.channel_id.hex()
                if conn.channel_id else None, "messages": 5 * n,
                "data_relay_in": stats["data_relay_in"], "data_direct_in": stats["data_direct_in"],
                "attempts": stats["attempts"], "facts": p.journal.digest(bytes(ctx)).count,
                "notes": [f"{when - t0:.3f} {text}" for when, text in conn.trace][-40:],
                **({"restart": restart} if restart is not None else {})}
    finally:
        await detach(p)
        p.journal.close()


async def main() -> int:
    c = json.loads(sys.stdin.readline())
    t = LineTrace(sys.stdout)
    with tempfile.TemporaryDirectory(prefix=f"aura-netlab-{c['name']}-") as tmp:
        try:
            report = await story(c, t, tmp)
        except Exception as exc:  # noqa: BLE001 - reported to the orchestrator, which fails the mode
            emit({"stage": "error", "error": f"{type(exc).__name__}: {exc}", "checks": t.checks})
            return 1
    emit({"stage": "done", **report, "checks": t.checks})
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
