"""``aura-core demo``: the product's main job, end to end on this machine, with a readable trace.

A relay node and two authorities (alice, bob) in one relational context:

1. the relay serves WebSocket on 127.0.0.1, admitting only clients whose Biscuit capability
   grants ``relay:forward`` in the context, and signs receipts for windows of forwards;
2. each authority publishes a sealed, signed rendezvous descriptor (guards: capability, flow
   budget charged first) as a fact in its SQLite journal;
3. the journals reconcile over TCP (anti-entropy sync), so each learns the other's descriptor;
4. alice connects (guards again), and a Noise IKpsk2 channel is set up over the relay;
5. messages flow over the relay, then the connection upgrades in the background to direct QUIC
   over a punched UDP socket, and messages keep flowing — none lost, duplicated or reordered;
6. the context epoch rotates: a real re-handshake with keys of the new epoch;
7. the relay's receipts are verified as hash chains against the charged forwards.

Every step is checked; the exit status is 0 only if all checks passed.

The steps are functions of one authority (``publish``, ``learn``, ``attach``, ``establish``,
``exchange_side``...) so that ``aura-core demo --netlab`` (aura_core/netlab) runs the same story
with each authority in its own process behind a NAT.
"""

from __future__ import annotations

import asyncio
import dataclasses
import socket
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from .. import dagcbor
from .._sodium import random_bytes
from ..capabilities import ALL_CAPABILITIES, CAP_RENDEZVOUS_RELAY, CapabilityIssuer
from ..effects import EffectHandlers, run_local
from ..errors import AuraError
from ..flow import COST_CONNECT_RELAY, FlowLedger
from ..guards import GuardSnapshot, SendIntent, evaluate
from ..hashing import ContextKey
from ..ids import AuthorityId, ContextId
from ..journal import JournalStore
from ..journal.sync import SyncSession
from ..keys import IdentityKey, PublicIdentity
from ..punch import PunchEngine
from ..receipts import Receipt, verify_chain
from ..relay import ReceiptSigner, ReceiptWindows, RelayConfig, RelayCore, biscuit_authorizer
from ..rendezvous import QuicDirect, RendezvousDescriptor, RendezvousFact, WebSocketRelay
from ..rendezvous.descriptor import TransportHint
from ..rendezvous.service import RendezvousService
from ..selection import ConnState
from . import sync as journal_sync
from .connection import ConnectionConfig, PeerConnection, RelayLink
from .quic import DirectEndpoint
from .relay import RelayClient, RelayServer

__all__ = ["run", "main"]

EPOCH = 1
BUDGET = 1000


def _now_ms() -> int:
    return int(time.time() * 1000)


class Trace:
    """Timestamped, aligned lines: who did what."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.t0 = time.monotonic()
        self.checks: list[tuple[str, bool]] = []

    def say(self, who: str, text: str) -> None:
        self.out.write(f"{time.monotonic() - self.t0:7.3f}s  {who:<6} {text}\n")
        self.out.flush()

    def check(self, what: str, ok: bool) -> bool:
        self.checks.append((what, ok))
        if not ok:
            self.say("CHECK", f"FAILED: {what}")
        return ok


@dataclass
class Authority:
    name: str
    key: IdentityKey
    token: bytes
    journal: JournalStore
    sock: socket.socket
    ledger: FlowLedger = field(default_factory=FlowLedger)
    service: RendezvousService | None = None
    link: RelayLink | None = None
    endpoint: DirectEndpoint | None = None
    conn: PeerConnection | None = None

    @property
    def id(self) -> AuthorityId:
        return self.key.authority_id

    def snapshot(self, ctx: ContextId, epoch: int, root: bytes) -> GuardSnapshot:
        flow = {a.peer: a.limit - a.spent - a.reserved for a in self.ledger.accounts(ctx)}
        return GuardSnapshot.prepare(authority=self.id, context=ctx, epoch=epoch, now=_now_ms(),
                                     token=self.token, root_public_key=root, flow=flow)

    def handlers(self) -> EffectHandlers:
        return EffectHandlers(flow=self.ledger, journal=self.journal, receipts=lambda r: r)

    def headroom(self, ctx: ContextId, peer: AuthorityId) -> int:
        return self.ledger.headroom(ctx, peer)


async def wait_until(pred: Callable[[], bool], timeout: float) -> bool:
    end = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > end:
            return False
        await asyncio.sleep(0.01)
    return True


# -- steps shared with the NAT lab run (aura_core/netlab/peer.py runs one side of each) ----------

def demo_config(**overrides: Any) -> ConnectionConfig:
    """The demo's connection timing: short keepalives and backoff, so a run takes seconds."""
    return dataclasses.replace(ConnectionConfig(keepalive_interval=0.2, direct_timeout=2.0,
                                                punch_window=1.5, backoff_base=0.2,
                                                backoff_cap=1.0), **overrides)


async def start_relay(root: bytes, host: str = "127.0.0.1", port: int = 0, *,
                      key: IdentityKey | None = None) -> tuple[RelayServer, ReceiptSigner, IdentityKey]:
    """The relay node: admits Biscuit ``relay:forward`` holders of ``root``, signs receipts."""
    relay_key = key or IdentityKey.generate()
    core = RelayCore(biscuit_authorizer(root), config=RelayConfig(epoch=EPOCH))
    signer = ReceiptSigner(relay_key)
    server = await RelayServer(core, host, port, windows=ReceiptWindows(window=0.25, epoch=EPOCH),
                               signer=signer, metrics_port=0).start()
    return server, signer, relay_key


def verify_receipts(issued: list[bytes], relay_public: PublicIdentity, ctx: ContextId
                    ) -> tuple[int, int]:
    """Verify the relay's receipts as hash chains per (ctx, dst, epoch): (chains, total cost).
    Raises (CryptoError/ProtocolError) on a bad signature, link, nonce or sequence."""
    chains: dict[tuple[bytes, bytes, int], list[bytes]] = {}
    for packed in issued:
        r = Receipt.from_bytes(packed)
        chains.setdefault((bytes(r.ctx), bytes(r.dst), r.epoch), []).append(packed)
    total = 0
    for (c, dst, epoch), packs in chains.items():
        total += verify_chain(b"".join(packs), relay_public, ctx=ContextId(c),
                              dst=AuthorityId(dst), epoch=epoch).total
    return len(chains), total


def join(p: Authority, ctx: ContextId, context_key: ContextKey, peers: list[AuthorityId]) -> None:
    """p joins the context: rendezvous service at EPOCH, a flow budget towards each peer."""
    p.service = RendezvousService(p.key)
    p.service.join_context(ctx, context_key, EPOCH)
    for q in peers:
        p.ledger.open(ctx, q, BUDGET, EPOCH)


def publish(t: Trace, p: Authority, ctx: ContextId, root: bytes, hints: list[TransportHint]) -> None:
    """Guards (capability, flow charged first), then the sealed descriptor into p's journal."""
    assert p.service is not None
    outcome = p.service.prepare_publish_descriptor(p.snapshot(ctx, EPOCH, root), ctx, hints, _now_ms())
    res = run_local(outcome.effects, p.handlers())
    t.check(f"{p.name} publish admitted", outcome.is_allowed() and res.ok)
    t.say(p.name, f"published its descriptor (sealed under the context key, signed): "
                  f"{p.journal.digest(bytes(ctx)).count} fact(s) in its journal; "
                  f"flow charged 1, headroom {p.headroom(ctx, p.id)}")


def sync_line(t: Trace, who: str, session: SyncSession) -> None:
    st = session.stats
    t.say("sync", f"{who} over TCP: plan {st.plan.name}, pushed {st.facts_pushed}, "
                  f"pulled {st.facts_pulled}, {st.round_trips} round trip(s), "
                  f"{st.bytes_sent + st.bytes_received} bytes")


def learn(t: Trace, p: Authority, ctx: ContextId, peer_name: str, peer: AuthorityId
          ) -> RendezvousDescriptor | None:
    """Open what p's journal holds; the peer's descriptor if it is there and valid."""
    assert p.service is not None
    bodies = [b for _, b in p.journal.facts_in_range(bytes(ctx), b"", None, 1000)]
    p.service.ingest(ctx, bodies, _now_ms())
    d = p.service.get_cached_descriptor(ctx, peer, _now_ms())
    if d is not None:
        hints = ", ".join(type(h).__name__ for h in d.transport_hints)
        t.say(p.name, f"opened {peer_name}'s descriptor: hints [{hints}], valid "
                      f"{(d.valid_until - d.valid_from) // 60000} min")
    return d


def admit_connect(t: Trace, p: Authority, peer: AuthorityId, peer_name: str, ctx: ContextId,
                  root: bytes) -> None:
    intent = SendIntent(peer, CAP_RENDEZVOUS_RELAY, COST_CONNECT_RELAY, operation="connect")
    outcome = evaluate(p.snapshot(ctx, EPOCH, root), intent, b"")
    res = run_local(outcome.effects, p.handlers())
    t.check(f"{p.name} connect admitted", outcome.is_allowed() and res.ok)
    t.say(p.name, f"guards admit connecting to {peer_name} via the relay: rendezvous:relay held, "
                  f"flow charged {COST_CONNECT_RELAY}, headroom {p.headroom(ctx, peer)}")


async def attach(p: Authority, peer: AuthorityId, peer_desc: RendezvousDescriptor, url: str,
                 ctx: ContextId) -> None:
    """p's direct endpoint (its UDP socket, punching for this peer) and relay link."""
    assert p.service is not None
    own = p.service.own_descriptor(ctx)
    assert own is not None
    engine = PunchEngine(bytes(p.id), own.punch_nonce, [(bytes(peer), peer_desc.punch_nonce)])
    p.endpoint = await DirectEndpoint.bind(engine, sock=p.sock)
    p.link = await RelayLink(lambda: RelayClient.connect(
        url, p.key, p.token, contexts=[ctx], timeout=5.0)).start()


async def establish(p: Authority, peer: PublicIdentity, context_key: ContextKey, ctx: ContextId,
                    initiator: bool, cfg: ConnectionConfig,
                    local_candidates: list[tuple[str, int]] | None = None) -> PeerConnection:
    assert p.link is not None
    p.conn = await PeerConnection.establish(
        relay=p.link, identity=p.key, peer=peer, context_key=context_key, context=ctx, epoch=EPOCH,
        initiator=initiator, endpoint=p.endpoint, local_candidates=local_candidates, config=cfg)
    return p.conn


def channel_line(t: Trace, p: Authority) -> None:
    assert p.conn is not None and p.conn.channel_id is not None
    t.say(p.name, f"Noise_IKpsk2_25519_ChaChaPoly_BLAKE2s over the relay: channel "
                  f"{p.conn.channel_id.hex()[:16]}…, epoch {EPOCH}, PSK from the context key")


def record_channel(p: Authority, ctx: ContextId, initiator: AuthorityId, responder: AuthorityId) -> None:
    """The ChannelEstablished fact (both sides derive the same bytes, hence one CID)."""
    assert p.conn is not None and p.conn.channel_id is not None
    p.journal.merge(bytes(ctx), [dagcbor.encode(RendezvousFact.channel_established(
        ctx, initiator, responder, p.conn.channel_id, EPOCH))])


def _messages(label: str, sender: str, n: int) -> list[bytes]:
    return [b"%s %d from %s" % (label.encode(), i, sender.encode()) for i in range(n)]


async def exchange_side(t: Trace, p: Authority, peer_name: str, n: int, label: str, *,
                        sending: bool) -> bool:
    """One side of an exchange: the sender sends n numbered messages and reads n answers; the
    other side reads them and answers each.  Checks order and completeness on both sides."""
    conn = p.conn
    assert conn is not None
    sender = p.name if sending else peer_name
    want = _messages(label, sender, n)
    try:
        if sending:
            for m in want:
                await conn.send(m)
            got = [await asyncio.wait_for(conn.recv(), 10) for _ in range(n)]
            ok = got == [b"ack " + m for m in want]
        else:
            got = [await asyncio.wait_for(conn.recv(), 10) for _ in range(n)]
            for m in got:
                await conn.send(b"ack " + m)
            ok = got == want
    except (asyncio.TimeoutError, AuraError):
        ok = False
    if sending:
        t.say(p.name, f"{n} messages → {peer_name} and {n} answers back, path {conn.path}: "
                      f"{'in order, none lost or duplicated' if ok else 'MISMATCH'}")
    return t.check(f"{label}: exactly-once in-order delivery ({p.name} "
                   f"{'sent' if sending else 'answered'})", ok)


async def _exchange(t: Trace, a: Authority, b: Authority, n: int, label: str) -> bool:
    oks = await asyncio.gather(exchange_side(t, a, b.name, n, label, sending=True),
                               exchange_side(t, b, a.name, n, label, sending=False))
    return all(oks)


def upgrade_settled(conn: PeerConnection) -> bool:
    """Direct, or every attempt of the budget spent and back on the relay (relay fallback)."""
    return conn.path == "direct" or (conn.state is ConnState.RELAY_ONLY and conn.actor.candidates != ()
                                     and conn.actor.budget.remaining == 0)


def rotate_local(p: Authority, ctx: ContextId, epoch: int) -> None:
    """The context moves to ``epoch``: budgets reset, the rendezvous service's keys advance."""
    assert p.service is not None
    p.ledger.rotate(ctx, epoch)
    p.service.advance_epoch(ctx, epoch)


def spent(p: Authority, ctx: ContextId) -> int:
    return sum(a.spent for a in p.ledger.accounts(ctx))


async def detach(p: Authority) -> None:
    if p.conn is not None:
        await p.conn.close(flush=0.5)
    if p.link is not None:
        await p.link.close()
    if p.endpoint is not None:
        p.endpoint.close()
    elif p.sock is not None:
        p.sock.close()


async def run(out: TextIO = sys.stdout, *, messages: int = 20, workdir: str | None = None) -> int:
    t = Trace(out)
    cfg = demo_config()
    with tempfile.TemporaryDirectory(prefix="aura-demo-") as tmp:
        root_dir = Path(workdir or tmp)
        root_dir.mkdir(parents=True, exist_ok=True)

        # -- the context and its capability root -------------------------------------------------
        ctx = ContextId.random()
        context_key = ContextKey(random_bytes(32))
        issuer = CapabilityIssuer(random_bytes(32))
        root = issuer.public_key
        t.say("ctx", f"{ctx}: shared 32-byte context key; capability root {root.hex()[:16]}…")

        # -- the relay node -----------------------------------------------------------------------
        server, signer, relay_key = await start_relay(root)
        t.say("relay", f"{relay_key.authority_id} listening on {server.url} "
                       f"(metrics :{server.metrics_port}); admits Biscuit relay:forward holders")

        people: list[Authority] = []
        for name in ("alice", "bob"):
            key = IdentityKey.generate()
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sock.bind(("127.0.0.1", 0))
            token = issuer.issue(ctx, ALL_CAPABILITIES, expires_at=_now_ms() + 3_600_000)
            people.append(Authority(name, key, token, JournalStore(str(root_dir / f"{name}.sqlite")),
                                    sock))
            t.say(name, f"{key.authority_id} (Ed25519; its X25519 form is the Noise static key); "
                        f"UDP socket {sock.getsockname()[0]}:{sock.getsockname()[1]}")
        alice, bob = people
        for p in people:
            join(p, ctx, context_key, [q.id for q in people])

        sync_server = None
        try:
            # -- publish descriptors (guards, then journal) ---------------------------------------
            for p in people:
                publish(t, p, ctx, root, [QuicDirect("%s:%d" % p.sock.getsockname()),
                                          WebSocketRelay(relay_key.authority_id)])

            # -- anti-entropy: bob serves, alice syncs --------------------------------------------
            served = asyncio.Event()
            sync_server = await journal_sync.serve(bob.journal, on_session=lambda s: served.set())
            host, port = sync_server.sockets[0].getsockname()[:2]
            session = await journal_sync.sync_with(alice.journal, bytes(ctx), host, port, peer="bob")
            await asyncio.wait_for(served.wait(), 10)  # bob merged what alice pushed
            sync_line(t, "alice ⇄ bob", session)
            digests = [p.journal.digest(bytes(ctx)) for p in people]
            t.check("journals converged", digests[0] == digests[1])
            desc: dict[str, RendezvousDescriptor] = {}
            for p, q in ((alice, bob), (bob, alice)):
                d = learn(t, p, ctx, q.name, q.id)
                t.check(f"{p.name} learned {q.name}'s descriptor", d is not None)
                assert d is not None
                desc[p.name] = d

            # -- connect: guards, relay links, Noise over the relay -------------------------------
            admit_connect(t, alice, bob.id, bob.name, ctx, root)
            for p, q in ((alice, bob), (bob, alice)):
                await attach(p, q.id, desc[p.name], server.url, ctx)
            t.say("relay", f"alice and bob authenticated (Ed25519 challenge + Biscuit); "
                           f"{server.core.metrics.authenticated} connected")
            await asyncio.wait_for(asyncio.gather(*(
                establish(p, q.key.public, context_key, ctx, p is alice, cfg)
                for p, q in ((alice, bob), (bob, alice)))), 20)
            ca, cb = alice.conn, bob.conn
            assert ca is not None and cb is not None
            t.check("both sides derived one channel id", ca.channel_id == cb.channel_id)
            channel_line(t, alice)
            for p in people:
                record_channel(p, ctx, alice.id, bob.id)
            t.say("both", "ChannelEstablished fact appended to both journals (one CID)")

            await _exchange(t, alice, bob, messages, "relay")

            # -- upgrade to direct ----------------------------------------------------------------
            ca.update_from_descriptor(desc["alice"])
            cb.update_from_descriptor(desc["bob"])
            t.say("both", "direct candidates from the descriptors; punching in the background "
                          "while the relay keeps carrying traffic")
            direct = await wait_until(lambda: ca.path == "direct" and cb.path == "direct", 20)
            t.check("upgraded to direct", direct)
            t.say("both", f"path now {ca.path}: QUIC over the punched UDP sockets "
                          f"(state {ca.state.name})")
            await _exchange(t, alice, bob, messages, "direct")
            await _exchange(t, bob, alice, messages, "direct-back")

            # -- epoch rotation: a real re-handshake ----------------------------------------------
            old_channel = ca.channel_id
            charged = [spent(p, ctx) for p in people]
            for p in people:
                rotate_local(p, ctx, EPOCH + 1)
            await asyncio.wait_for(ca.rotate(EPOCH + 1), 15)
            rotated = await wait_until(lambda: cb.epoch == EPOCH + 1, 15)
            t.check("epoch rotated on both sides", rotated and ca.channel_id != old_channel)
            t.say("alice", f"epoch {EPOCH} → {EPOCH + 1}: re-handshake with the new epoch's PSK, "
                           f"channel {(ca.channel_id or b'').hex()[:16]}…; budgets reset")
            await _exchange(t, alice, bob, messages, "epoch2")

            stats_a, stats_b = ca.stats, cb.stats
            final_path = ca.path
            t.say("stats", f"alice received {stats_a.get('data_relay_in', 0)} via relay, "
                           f"{stats_a.get('data_direct_in', 0)} direct; bob received "
                           f"{stats_b.get('data_relay_in', 0)} via relay, {stats_b.get('data_direct_in', 0)} direct")
        finally:
            for p in people:
                if p.conn is not None:
                    await p.conn.close(flush=0.5)
            await asyncio.sleep(0.4)  # let the last receipt windows close
            for p in people:
                await detach(p)
            await server.close()
            if sync_server is not None:
                sync_server.close()
                await sync_server.wait_closed()

        # -- receipts: the relay's signed accounting ---------------------------------------------
        issued = list(signer.issued)
        n_chains, total = verify_receipts(issued, relay_key.public, ctx)
        forwarded = server.core.metrics.forwarded
        t.check("relay receipts verify and sum to the forwards charged", bool(issued) and total == forwarded)
        t.say("relay", f"{len(issued)} receipts in {n_chains} chains verified (signatures, prev "
                       f"links, nonces); they cover {total} forwards = {forwarded} frames forwarded")
        facts = [p.journal.digest(bytes(ctx)).count for p in people]
        for p in people:
            p.journal.close()

    failed = [w for w, ok in t.checks if not ok]
    m = server.core.metrics
    out.write("\nsummary\n")
    rows = [
        ("context", f"{ctx}, epochs {EPOCH}→{EPOCH + 1}"),
        ("path", f"relay first, then direct QUIC over punched UDP; final path {final_path}"),
        ("messages", f"{messages * 4} each way, exactly once and in order "
                     f"(alice received {stats_a.get('data_relay_in', 0)} via relay, "
                     f"{stats_a.get('data_direct_in', 0)} direct)"),
        ("relay", f"{m.forwarded} frames forwarded, {m.auth_failures} auth failures, "
                  f"{m.drop_budget} budget drops, {len(issued)} receipts covering {total}"),
        ("budgets", ", ".join(f"{p.name} charged {n} in epoch {EPOCH} (limit {BUDGET} per peer)"
                              for p, n in zip(people, charged)) + "; reset by the rotation"),
        ("journals", ", ".join(f"{p.name} {n} facts" for p, n in zip(people, facts))),
        ("checks", f"{len(t.checks) - len(failed)} passed, {len(failed)} failed"),
    ]
    for k, v in rows:
        out.write(f"  {k:<9} {v}\n")
    t.say("done", f"{len(t.checks) - len(failed)} checks passed, {len(failed)} failed")
    return 1 if failed else 0


def main(argv: list[str] | None = None, out: TextIO = sys.stdout) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="aura-core demo")
    parser.add_argument("--messages", type=int, default=20)
    args = parser.parse_args(argv)
    return asyncio.run(run(out, messages=args.messages))
