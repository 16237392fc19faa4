"""PeerConnection end to end on loopback: a real relay (RelayServer), Noise over it, an upgrade
to direct QUIC over UDP on 127.0.0.1, and no message lost, duplicated or reordered across
relay->direct, direct->relay, relay restarts and epoch rotation.  Every wait is bounded; no
timing is asserted."""

from __future__ import annotations

import asyncio
import os

import pytest

from aura_core.asyncio.connection import (ConnectionConfig, PeerConnection, RelayLink,
                                          candidates_from_hints, decode_candidates,
                                          encode_candidates)
from aura_core.rendezvous.descriptor import (QuicDirect, QuicReflexive, RendezvousDescriptor,
                                             TcpDirect, WebSocketDirect, WebSocketRelay)
from aura_core.asyncio.quic import DirectEndpoint
from aura_core.asyncio.relay import RelayClient, RelayServer
from aura_core.asyncio.wsdirect import WsDirectListener, connect_ws_direct
from aura_core.errors import ProtocolError, TransportError, UsageError
from aura_core.hashing import ContextKey
from aura_core.ids import ContextId
from aura_core.keys import IdentityKey
from aura_core.punch import PunchEngine
from aura_core.relay import RelayCore, static_authorizer
from aura_core.selection import ConnState

pytestmark = pytest.mark.native

TOKEN = b"relay-token"
CFG = ConnectionConfig(keepalive_interval=0.2, direct_timeout=1.0, punch_window=1.5,
                       quic_timeout=2.0, attempt_timeout=4.0, backoff_base=0.2, backoff_cap=0.5,
                       rto=0.2, rto_max=1.0)


async def wait_until(pred, timeout=15.0, what="condition"):
    end = asyncio.get_running_loop().time() + timeout
    while not pred():
        if asyncio.get_running_loop().time() > end:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


class World:
    """Relay node + two authorities (A initiator, B responder) in one context."""

    async def start(self, *, direct=(True, True), cfg=CFG, port=0, ws=(False, False)):
        self.A, self.B = IdentityKey.generate(), IdentityKey.generate()
        self.ctx = ContextId.random()
        self.ck = ContextKey(os.urandom(32))
        self.port = port
        await self.start_relay()
        self.links = []
        for key in (self.A, self.B):
            self.links.append(await RelayLink(
                lambda key=key: RelayClient.connect(self.url, key, TOKEN, timeout=2.0)).start())
        na, nb = os.urandom(32), os.urandom(32)
        ida, idb = bytes(self.A.authority_id), bytes(self.B.authority_id)
        self.engines = (PunchEngine(ida, na, [(idb, nb)]), PunchEngine(idb, nb, [(ida, na)]))
        self.ea = await DirectEndpoint.bind(self.engines[0]) if direct[0] else None
        self.eb = await DirectEndpoint.bind(self.engines[1]) if direct[1] else None
        self.wsl = [await WsDirectListener(k.authority_id).start() if on else None
                    for k, on in zip((self.A, self.B), ws)]
        self.a, self.b = await asyncio.wait_for(asyncio.gather(
            PeerConnection.establish(relay=self.links[0], identity=self.A, peer=self.B.public,
                                     context_key=self.ck, context=self.ctx, epoch=1,
                                     initiator=True, endpoint=self.ea, config=cfg,
                                     ws_listener=self.wsl[0]),
            PeerConnection.establish(relay=self.links[1], identity=self.B, peer=self.A.public,
                                     context_key=self.ck, context=self.ctx, epoch=1,
                                     initiator=False, endpoint=self.eb, config=cfg,
                                     ws_listener=self.wsl[1])), 15)
        return self

    async def start_relay(self):
        grants = {self.A.authority_id: [self.ctx], self.B.authority_id: [self.ctx]}
        self.server = await RelayServer(RelayCore(static_authorizer(grants, TOKEN)),
                                        port=self.port).start()
        self.port = self.server.port
        self.url = self.server.url

    def descriptor(self, key, endpoint, valid_from=1_700_000_000_000):
        return RendezvousDescriptor(
            authority_id=key.authority_id, context_id=self.ctx,
            transport_hints=(QuicDirect("%s:%d" % endpoint.local_address),
                             WebSocketRelay(key.authority_id)),
            handshake_psk_commitment=bytes(32), public_key=key.public.ed25519,
            valid_from=valid_from, valid_until=valid_from + 3_600_000, nonce=os.urandom(32),
            punch_nonce=os.urandom(32))

    def candidates(self):
        """Both learn each other's direct candidates from descriptors."""
        self.a.update_from_descriptor(self.descriptor(self.B, self.eb))
        self.b.update_from_descriptor(self.descriptor(self.A, self.ea))

    async def close(self):
        for c in (self.a, self.b):
            await c.close(flush=0.2)
        for l in self.links:
            await l.close()
        for e in (self.ea, self.eb):
            if e is not None:
                e.close()
        for l in self.wsl:
            if l is not None:
                await l.close()
        await self.server.close()


class Stream:
    """Numbered messages one way; checks exactly-once, in-order delivery."""

    def __init__(self, src: PeerConnection, dst: PeerConnection, tag: bytes) -> None:
        self.src, self.dst, self.tag = src, dst, tag
        self.sent = 0
        self.got: list[bytes] = []
        self._reader = asyncio.create_task(self._read())

    def msg(self, i: int) -> bytes:
        return self.tag + i.to_bytes(4, "big") + bytes(i % 200)

    async def send(self, n: int, pause_every: int = 0) -> None:
        for _ in range(n):
            await self.src.send(self.msg(self.sent))
            self.sent += 1
            if pause_every and self.sent % pause_every == 0:
                await asyncio.sleep(0.005)

    async def _read(self) -> None:
        while True:
            self.got.append(await self.dst.recv())

    async def done(self, timeout=20.0) -> None:
        await wait_until(lambda: len(self.got) >= self.sent, timeout, "delivery")
        await asyncio.sleep(0.05)  # a late duplicate would show up now
        self._reader.cancel()
        assert self.got == [self.msg(i) for i in range(self.sent)]


def run(coro):
    asyncio.run(asyncio.wait_for(coro, 60))


def test_candidates_from_descriptor_hints():
    hints = [QuicDirect("192.0.2.1:4000"), QuicReflexive("[2001:db8::1]:5000"),
             WebSocketDirect("ws://192.0.2.1:8080/aura"), TcpDirect("192.0.2.1:22"),
             QuicDirect("192.0.2.1:4000")]
    assert candidates_from_hints(hints) == ([("192.0.2.1", 4000), ("2001:db8::1", 5000)],
                                            ["ws://192.0.2.1:8080/aura"])


def test_candidates_codec():
    cands = [("127.0.0.1", 4000), ("::1", 5), ("203.0.113.9", 65535)]
    assert decode_candidates(encode_candidates(cands)) == cands
    for bad in (b"", b"\x01", b"\x01\x05" + b"\0" * 6, b"\x01\x04\0\0\0\0\0\0\0", b"\x11"):
        with pytest.raises(ProtocolError):
            decode_candidates(bad)


def test_relay_to_direct_switch_loses_nothing():
    async def main():
        w = await World().start()
        try:
            ab, ba = Stream(w.a, w.b, b"AB"), Stream(w.b, w.a, b"BA")
            await asyncio.gather(ab.send(150), ba.send(150))
            await wait_until(lambda: len(ab.got) == 150 and len(ba.got) == 150, what="relay phase")
            assert w.a.path == w.b.path == "relay"
            with pytest.raises(UsageError):
                w.a.update_from_descriptor(w.descriptor(w.A, w.ea))  # not the peer's
            w.candidates()
            # keep both streams flowing while the upgrade happens underneath
            await asyncio.gather(ab.send(300, pause_every=10), ba.send(300, pause_every=10),
                                 wait_until(lambda: w.a.path == w.b.path == "direct",
                                            what="direct on both sides"))
            await asyncio.gather(ab.send(150), ba.send(150))
            await ab.done()
            await ba.done()
            assert w.a.state is ConnState.DIRECT and w.b.state is ConnState.DIRECT
            for c in (w.a, w.b):  # both paths really carried data
                assert c.stats["data_relay_in"] > 0 and c.stats["data_direct_in"] > 0
            assert any("direct" in t for _, t in w.a.trace)
        finally:
            await w.close()

    run(main())


def test_relay_restart_mid_stream_recovers():
    async def main():
        w = await World().start(direct=(False, False))
        try:
            ab, ba = Stream(w.a, w.b, b"AB"), Stream(w.b, w.a, b"BA")
            await asyncio.gather(ab.send(100), ba.send(100))
            await w.server.close()  # the relay goes away mid-stream
            await wait_until(lambda: not w.links[0].up.is_set() and not w.links[1].up.is_set(),
                             what="links noticing the relay is gone")
            sending = asyncio.gather(ab.send(100, pause_every=20), ba.send(100, pause_every=20))
            await asyncio.sleep(0.3)
            await w.start_relay()  # same port, a fresh relay process
            await sending
            await ab.done()
            await ba.done()
            assert w.links[0].stats["connects"] >= 2 and w.links[1].stats["connects"] >= 2
            assert w.a.switcher.stats["retransmitted"] + w.b.switcher.stats["retransmitted"] > 0
        finally:
            await w.close()

    run(main())


def test_direct_failure_falls_back_to_relay():
    async def main():
        w = await World().start()
        try:
            w.candidates()
            await wait_until(lambda: w.a.path == w.b.path == "direct", what="direct")
            ab, ba = Stream(w.a, w.b, b"AB"), Stream(w.b, w.a, b"BA")
            await asyncio.gather(ab.send(100), ba.send(100))
            w.eb.close()  # B's UDP socket dies (interface gone)
            await asyncio.gather(ab.send(200, pause_every=10), ba.send(200, pause_every=10),
                                 wait_until(lambda: w.a.path == w.b.path == "relay",
                                            what="fallback to relay"))
            await asyncio.gather(ab.send(100), ba.send(100))
            await ab.done()
            await ba.done()
            assert w.a.stats["direct_lost"] == 1 and w.b.stats["direct_lost"] == 1
            assert w.a.state in (ConnState.DEGRADED, ConnState.UPGRADING, ConnState.RELAY_ONLY)
        finally:
            await w.close()

    run(main())


def test_network_change_starts_fresh_cycle_without_dropping_relay():
    async def main():
        cfg = ConnectionConfig(**{**CFG.__dict__, "attempts": 1, "punch_window": 0.5})
        w = await World().start(direct=(True, False), cfg=cfg)
        try:
            dead = await DirectEndpoint.bind(PunchEngine(os.urandom(16), os.urandom(32), []))
            w.a.update_candidates(1, [dead.local_address])  # a stale candidate: punch fails
            await wait_until(lambda: w.a.state is ConnState.RELAY_ONLY and w.a.stats["attempts"] == 1,
                             what="budget exhausted")
            ab = Stream(w.a, w.b, b"AB")
            await ab.send(50)
            # B's network comes up with a UDP endpoint: a new generation, a fresh cycle
            w.eb = await DirectEndpoint.bind(w.engines[1])
            w.b.update_candidates(1, [w.ea.local_address])
            w.b.network_changed(endpoint=w.eb)
            await asyncio.gather(ab.send(100, pause_every=10),
                                 wait_until(lambda: w.a.path == w.b.path == "direct",
                                            what="both direct"))
            # A's budget was spent: it followed B's attempt (assist), and B's address on the
            # verified path became a peer-reflexive candidate of a new sub-generation
            assert w.a.stats["assists"] >= 1 and w.a.actor.candidate_generation.value == 1025
            # a network change that keeps A's UDP binding keeps the direct path
            w.a.network_changed()
            assert w.a.path == "direct" and w.a.state is ConnState.DIRECT
            await ab.send(50)
            await ab.done()
            dead.close()
        finally:
            await w.close()

    run(main())


def test_epoch_rotation_mid_stream():
    async def main():
        w = await World().start(direct=(False, False))
        try:
            first_channel = w.a.channel_id
            assert first_channel == w.b.channel_id and len(first_channel) == 32
            ab, ba = Stream(w.a, w.b, b"AB"), Stream(w.b, w.a, b"BA")
            await asyncio.gather(ab.send(100, pause_every=10), ba.send(100, pause_every=10),
                                 w.a.rotate(2))
            await asyncio.gather(ab.send(100), ba.send(100))
            await ab.done()
            await ba.done()
            assert w.a.epoch == w.b.epoch == 2
            assert w.a.channel_id == w.b.channel_id and w.a.channel_id != first_channel
            assert w.a._sessions.current.epoch == w.b._sessions.current.epoch == 2
        finally:
            await w.close()

    run(main())


def test_automatic_rekey_before_session_time_limit():
    async def main():
        w = await World().start(direct=(False, False))
        try:
            ab = Stream(w.a, w.b, b"AB")
            await ab.send(50)
            old = w.a._sessions.current
            w.a._maybe_rekey(w.a.loop.time() + 130.0)  # as if REKEY_AFTER_TIME (120 s) passed
            await wait_until(lambda: w.a._sessions.current is not old, what="rekey")
            await ab.send(50)
            await ab.done()
            assert w.a.epoch == w.b.epoch == 1  # same epoch, fresh keys
            assert w.b._sessions.current.local_index != 0 and not w.b._sessions.pending
        finally:
            await w.close()

    run(main())


def test_direct_websocket_when_udp_is_unavailable():
    async def main():
        w = await World().start(direct=(False, False), ws=(False, True))
        try:
            ab, ba = Stream(w.a, w.b, b"AB"), Stream(w.b, w.a, b"BA")
            await asyncio.gather(ab.send(100), ba.send(100))
            w.a.update_candidates(1, [], ws_urls=[w.wsl[1].url])  # B's WebSocketDirect hint
            await asyncio.gather(ab.send(200, pause_every=10), ba.send(200, pause_every=10),
                                 wait_until(lambda: w.a.path == w.b.path == "direct",
                                            what="direct WebSocket"))
            await asyncio.gather(ab.send(100), ba.send(100))
            assert w.b.stats["data_direct_in"] > 0 and w.a.stats["data_direct_in"] > 0
            await w.wsl[1].close()  # B's listener goes away with its connections: back to relay
            await asyncio.gather(ab.send(100, pause_every=10), ba.send(100, pause_every=10),
                                 wait_until(lambda: w.a.path == w.b.path == "relay",
                                            what="fallback to relay"))
            await ab.done()
            await ba.done()
            w.wsl[1] = None
        finally:
            await w.close()

    run(main())


def test_direct_websocket_refuses_unknown_hellos():
    async def main():
        key = IdentityKey.generate()
        lst = await WsDirectListener(key.authority_id).start()
        try:
            ctx, stranger = ContextId.random(), IdentityKey.generate().authority_id
            path = await connect_ws_direct(lst.url, ctx, stranger, key.authority_id)
            reason = await asyncio.wait_for(path.closed, 5)
            assert not path.is_open and reason
            await wait_until(lambda: lst.stats["refused"] == 1, what="refusal counted")
            assert lst.stats["accepted"] == 0
        finally:
            await lst.close()

    run(main())


def test_close_flushes_and_tells_the_peer():
    async def main():
        w = await World().start(direct=(False, False))
        try:
            for i in range(50):
                await w.a.send(i.to_bytes(2, "big"))
            await w.a.close()  # waits for the acks, then CLOSE
            got = [await asyncio.wait_for(w.b.recv(), 10) for _ in range(50)]
            assert got == [i.to_bytes(2, "big") for i in range(50)]
            with pytest.raises(TransportError):
                await asyncio.wait_for(w.b.recv(), 10)
            with pytest.raises(TransportError):
                await w.b.send(b"too late")
            with pytest.raises(UsageError):
                await w.a.send(b"closed")
        finally:
            await w.close()

    run(main())


from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from aura_core.asyncio.wsdirect import decode_hello, encode_hello  # noqa: E402
from aura_core.ids import AuthorityId  # noqa: E402


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=120))
def test_peer_bytes_decoders_are_total(data):
    try:
        cands = decode_candidates(data)
    except ProtocolError:
        pass
    else:
        assert encode_candidates(cands) == data
    hello = decode_hello(data)
    if hello is not None:
        ctx, src, dst = hello
        assert encode_hello(ContextId(ctx), AuthorityId(src), AuthorityId(dst)) == data


def test_replayed_initiation_cannot_rekey_the_responder():
    async def main():
        w = await World().start(direct=(False, False))
        try:
            seen = []
            send = w.links[0].send

            async def spy(context, dst, payloads):
                seen.extend(p for p in payloads if p[:1] == b"\x01")
                return await send(context, dst, payloads)

            w.links[0].send = spy
            await w.a.rotate(1)  # rekey at the same epoch
            await w.a.rotate(1)
            ab = Stream(w.a, w.b, b"AB")
            await ab.send(20)
            await ab.done()
            old = seen[0]
            current = w.b._sessions.current
            w.b._replies.clear()  # forget the retransmission cache: the timestamp must decide
            drops = w.b.stats["noise_drops"]
            w.b._on_relay_frame(old)
            await wait_until(lambda: w.b.stats["noise_drops"] == drops + 1, what="replay refused")
            assert w.b._sessions.current is current and not w.b._sessions.pending
        finally:
            await w.close()

    run(main())
