"""PeerConnection: relay first, direct when the network allows (seed 000 §2, seed 001 §3.2).

Theory of operation
-------------------
A :class:`PeerConnection` is one secure channel towards one peer in one context.  Its pieces:

* a Noise :class:`~aura_core.noise.DatagramSession` (explicit counters, replay window), so a
  sealed frame is valid on *any* path, in any order, at most once — a single stream session
  could not survive frames lost or overtaken when the path changes;
* a :class:`~aura_core.transport.PathSwitcher` inside the sealed plaintext: sequence numbers,
  cumulative acks and retransmission give exactly-once, in-order delivery across relay→direct
  (and back) switches and relay restarts;
* a :class:`~aura_core.selection.PeerConnectionActor` that decides the path: it starts on the
  relay, emits bounded ``StartAttempt``s, and promotes to direct only on a verified, recoverable
  path;
* a shared :class:`RelayLink` (the authority's relay connection, reconnecting with backoff) and
  an optional :class:`~aura_core.asyncio.quic.DirectEndpoint` (the advertised UDP socket).

An attempt = tell the peer over the relay (CTRL ``PUNCH_REQUEST`` with our candidates, so both
sides punch at once, as libp2p DCUtR does), punch, then QUIC over the punched socket (the Noise
initiator is the QUIC client) and a Noise-sealed ``PATH_HELLO`` each way: the path is verified
when a frame that opens under the channel's keys arrives over it.  A peer that receives a
``PUNCH_REQUEST`` assists (punches back) even if its own actor is idle; a path it so verifies
is kept warm as a standby: the peer's address on it is a peer-reflexive candidate (a new
candidate sub-generation), so the idle actor starts an attempt that succeeds at once.  One upgrade
runs at a time per connection, which bounds what a peer's requests can make us do.  When UDP is
unavailable, a ``WebSocketDirect`` hint gives a direct WebSocket instead (module wsdirect).

On the direct path both sides send a sealed ``KEEPALIVE`` when they have sent nothing for
``keepalive_interval`` (it also holds the NAT mapping); nothing authenticated received for
``direct_timeout`` — or QUIC closing — is ``DirectLost``: back to the relay, everything
unacknowledged is retransmitted there.  Receiving is always accepted on every path.

Control records (the PathSwitcher's CTRL, inside Noise; docs/wire.md "Path records")::

    PUNCH_REQUEST = 0x03 0x01 || count (u8) || count x (family u8: 4|6, address 4|16, port u16 BE)
    PATH_HELLO    = 0x03 0x02
    KEEPALIVE     = 0x03 0x03
    CLOSE         = 0x03 0x04          (sent by close() after a flush: the peer stops too)

Handshakes ride the relay as the Noise binding's UDP handshake datagrams (type 1 / type 2; the
initiation is resent every 0.5 s until answered, and an identical resend gets the cached
answer).  :meth:`PeerConnection.rotate` re-handshakes at a new epoch (or the same one: the
initiator rekeys by itself before REKEY_AFTER_TIME) without stopping traffic: the old session
keeps opening frames still in flight, and the responder switches its sending keys only when a
frame opens under the new session (as WireGuard does); the offer's timestamp refuses replays.
"""

from __future__ import annotations

import asyncio
import dataclasses
import ipaddress
import logging
import os
import struct
import time
from collections import deque
from urllib.parse import urlsplit
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Final

from websockets.exceptions import ConnectionClosed

from ..errors import (AuraError, CryptoError, HandshakeError, ProtocolError, TransportError,
                      UsageError)
from ..hashing import ContextKey
from ..ids import AuthorityId, ContextId
from ..keys import IdentityKey, PublicIdentity
from ..noise import AuraHandshake, DatagramSession
from ..noise.binding import (MSG_INITIATION, MSG_RESPONSE, MSG_TRANSPORT, frame_initiation,
                             frame_response, parse_handshake_datagram)
from ..rendezvous.descriptor import (QuicDirect, QuicReflexive, RendezvousDescriptor,
                                     TransportHint, WebSocketDirect)
from ..rendezvous.negotiate import make_offer
from ..selection import (AttemptBudget, AttemptFailed, AttemptSucceeded, BackoffWindow,
                         CancelAttempt, CandidateGeneration, CandidatesUpdated, ConnState,
                         DirectLost, LocalBinding, NetworkChanged, NetworkGeneration,
                         PeerConnectionActor, StartAttempt, UseDirect, UseRelay)
from ..transport import PathSwitcher, encode_ctrl
from .quic import DirectEndpoint, QuicPath
from .relay import RelayClient
from .wsdirect import WsDirectListener, WsDirectPath, connect_ws_direct

DirectPath = QuicPath | WsDirectPath

__all__ = [
    "CTRL_PUNCH_REQUEST",
    "CTRL_PATH_HELLO",
    "CTRL_KEEPALIVE",
    "CTRL_CLOSE",
    "ConnectionConfig",
    "RelayLink",
    "PeerConnection",
    "encode_candidates",
    "decode_candidates",
    "candidates_from_hints",
]

log = logging.getLogger("aura_core.connection")

CTRL_PUNCH_REQUEST: Final = 0x01
CTRL_PATH_HELLO: Final = 0x02
CTRL_KEEPALIVE: Final = 0x03
CTRL_CLOSE: Final = 0x04
MAX_CANDIDATES: Final = 16

Address = tuple[str, int]


def encode_candidates(candidates: Sequence[Address]) -> bytes:
    cands = list(candidates)[:MAX_CANDIDATES]
    out = bytearray([len(cands)])
    for host, port in cands:
        ip = ipaddress.ip_address(host)
        out += bytes([ip.version]) + ip.packed + struct.pack(">H", port)
    return bytes(out)


def decode_candidates(body: bytes) -> list[Address]:
    """Inverse of :func:`encode_candidates`; DecodeError-free: malformed -> ProtocolError."""
    if not body or body[0] > MAX_CANDIDATES:
        raise ProtocolError("bad candidate list")
    out: list[Address] = []
    pos = 1
    for _ in range(body[0]):
        if pos >= len(body) or body[pos] not in (4, 6):
            raise ProtocolError("bad candidate family")
        n = 4 if body[pos] == 4 else 16
        if pos + 1 + n + 2 > len(body):
            raise ProtocolError("candidate list truncated")
        host = str(ipaddress.ip_address(body[pos + 1:pos + 1 + n]))
        (port,) = struct.unpack_from(">H", body, pos + 1 + n)
        out.append((host, port))
        pos += 1 + n + 2
    if pos != len(body):
        raise ProtocolError("trailing bytes after the candidate list")
    return out


def _split_addr(addr: str) -> Address:
    host, _, port = addr.rpartition(":")
    return (host[1:-1] if host.startswith("[") else host), int(port)


def candidates_from_hints(hints: Iterable[TransportHint]) -> tuple[list[Address], list[str]]:
    """A descriptor's direct transport hints as ``(udp candidates, websocket urls)``.

    QuicDirect and QuicReflexive are UDP candidates (punch, then QUIC); WebSocketDirect is a
    URL to dial; WebSocketRelay says which relay to meet on (the RelayLink's business) and
    TcpDirect has no transport here yet, so both are skipped.
    """
    udp: list[Address] = []
    urls: list[str] = []
    for h in hints:
        if isinstance(h, (QuicDirect, QuicReflexive)):
            udp.append(_split_addr(h.addr))
        elif isinstance(h, WebSocketDirect):
            urls.append(h.url)
    return list(dict.fromkeys(udp)), list(dict.fromkeys(urls))


@dataclass
class ConnectionConfig:
    """Timing and bounds of a :class:`PeerConnection` (seconds)."""

    keepalive_interval: float = 1.0
    direct_timeout: float = 5.0
    punch_window: float = 1.5
    punch_interval: float = 0.05
    prepunch: float = 0.0  # low-TTL pre-punch (conntrack-clash routers; see tests/netlab)
    quic_timeout: float = 3.0
    attempt_timeout: float = 6.0  # > punch_window + quic_timeout
    attempts: int = 3  # AttemptBudget per generation (libp2p DCUtR: 3)
    backoff_base: float = 1.0
    backoff_cap: float = 30.0
    window: int = 256  # PathSwitcher messages in flight (below the relay's 512-frame queue)
    rto: float = 0.3
    rto_max: float = 3.0
    handshake_timeout: float = 5.0


# -- the relay connection, shared by an authority's PeerConnections -------------------------------

Handler = Callable[[bytes], None]


class RelayLink:
    """An authority's relay connection: dispatches frames by (context, source) to registered
    handlers and reconnects with exponential backoff when the relay goes away.  Sends while
    the relay is down are dropped (and counted): the PathSwitcher retransmits."""

    def __init__(self, connect: Callable[[], Awaitable[RelayClient]], *, retry_base: float = 0.05,
                 retry_cap: float = 2.0) -> None:
        self._connect = connect
        self._retry_base, self._retry_cap = retry_base, retry_cap
        self._client: RelayClient | None = None
        self._handlers: dict[tuple[bytes, bytes], Handler] = {}
        self._on_up: dict[tuple[bytes, bytes], Callable[[], None]] = {}
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self.up = asyncio.Event()
        self.stats: dict[str, int] = dict.fromkeys(
            ("connects", "send_dropped", "unroutable", "sent", "received"), 0)

    async def start(self, *, timeout: float = 10.0) -> RelayLink:
        self._task = asyncio.create_task(self._run())
        await asyncio.wait_for(self.up.wait(), timeout)
        return self

    def register(self, context: ContextId, peer: AuthorityId, handler: Handler,
                 on_up: Callable[[], None] | None = None) -> None:
        key = (bytes(context), bytes(peer))
        self._handlers[key] = handler
        if on_up is not None:
            self._on_up[key] = on_up

    def unregister(self, context: ContextId, peer: AuthorityId) -> None:
        key = (bytes(context), bytes(peer))
        self._handlers.pop(key, None)
        self._on_up.pop(key, None)

    async def send(self, context: ContextId, dst: AuthorityId, payloads: Sequence[bytes]) -> bool:
        client = self._client
        if client is None:
            self.stats["send_dropped"] += len(payloads)
            return False
        try:
            await client.send_many(context, dst, payloads)
        except (ConnectionClosed, OSError, TransportError):
            self.stats["send_dropped"] += len(payloads)
            self._down(client)
            return False
        self.stats["sent"] += len(payloads)
        return True

    @property
    def client(self) -> RelayClient | None:
        """The live relay client (None while reconnecting), e.g. to read its receipts."""
        return self._client

    def _down(self, client: RelayClient) -> None:
        if self._client is client:
            self._client = None
            self.up.clear()

    async def _run(self) -> None:
        delay = self._retry_base
        while not self._closed:
            try:
                client = await self._connect()
            except (TransportError, ProtocolError, OSError) as exc:
                log.debug("relay connect failed: %s", exc)
                await asyncio.sleep(delay)
                delay = min(self._retry_cap, delay * 2)
                continue
            delay = self._retry_base
            self._client = client
            self.stats["connects"] += 1
            self.up.set()
            for cb in list(self._on_up.values()):
                cb()
            try:
                while True:
                    context, src, payload = await client.recv()
                    self.stats["received"] += 1
                    handler = self._handlers.get((bytes(context), bytes(src)))
                    if handler is None:
                        self.stats["unroutable"] += 1
                        continue
                    try:
                        handler(payload)
                    except AuraError:  # a peer fault never takes the relay link down
                        self.stats["unroutable"] += 1
            except (TransportError, ProtocolError, OSError, ConnectionClosed) as exc:
                log.debug("relay connection lost: %s", exc)
            self._down(client)
            try:
                await client.close()
            except Exception:  # noqa: BLE001 - already broken; closing is best effort
                pass

    async def close(self) -> None:
        self._closed = True
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        if self._client is not None:
            await self._client.close()
            self._client = None
        self.up.clear()


# -- the connection driver ---------------------------------------------------------------------------

@dataclass
class _Sessions:
    """The send session plus recent ones still opening in-flight frames (rotation).

    A responder's new session is *pending* until a frame from the initiator opens under it
    (as WireGuard does): a replayed initiation can then never switch our sending keys."""

    current: DatagramSession
    by_index: dict[int, DatagramSession] = field(default_factory=dict)
    pending: set[int] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.by_index[self.current.local_index] = self.current

    def add(self, new: DatagramSession, *, confirmed: bool, keep: int = 3) -> None:
        self.by_index[new.local_index] = new
        if confirmed:
            self.current = new
        else:
            self.pending.add(new.local_index)
        while len(self.by_index) > keep:
            old_index = next(i for i in self.by_index if self.by_index[i] is not self.current)
            self.pending.discard(old_index)
            self.by_index.pop(old_index).expire()

    def confirm(self, session: DatagramSession) -> bool:
        """A frame opened under ``session``: a pending one becomes the send session."""
        if session.local_index in self.pending:
            self.pending.discard(session.local_index)
            self.current = session
            return True
        return False


class PeerConnection:
    """One channel towards one peer: relay first, direct QUIC when it works (module docstring).

    Build it with :meth:`establish` (Noise handshake over the relay) or directly from an
    established :class:`DatagramSession`.  ``send``/``recv`` carry application messages
    (bytes, at most :data:`aura_core.transport.MAX_PAYLOAD`), exactly once and in order.
    """

    def __init__(self, *, relay: RelayLink, context: ContextId, local: AuthorityId,
                 peer: AuthorityId, session: DatagramSession, initiator: bool,
                 endpoint: DirectEndpoint | None = None,
                 local_candidates: Sequence[Address] | None = None,
                 config: ConnectionConfig | None = None,
                 ws_listener: WsDirectListener | None = None,
                 on_trace: Callable[[str], None] | None = None) -> None:
        self.relay = relay
        self.ws_listener = ws_listener
        self.context, self.local, self.peer = context, local, peer
        self.initiator = initiator
        self.endpoint = endpoint
        self.config = cfg = config or ConnectionConfig()
        self.local_candidates = list(local_candidates if local_candidates is not None else
                                     ([endpoint.local_address] if endpoint is not None else []))
        self.on_trace = on_trace
        self.trace: deque[tuple[float, str]] = deque(maxlen=1000)
        self.stats: dict[str, int] = dict.fromkeys(
            ("relay_out", "direct_out", "relay_in", "direct_in", "noise_drops", "data_relay_in",
             "data_direct_in", "keepalives", "attempts", "assists", "upgrades", "direct_lost",
             "bad_control"), 0)
        self.loop = asyncio.get_running_loop()
        self._sessions = _Sessions(session)
        self.switcher = PathSwitcher(window=cfg.window, rto=cfg.rto, rto_max=cfg.rto_max)
        self.actor = PeerConnectionActor(
            now=self.loop.time(), budget=AttemptBudget(cfg.attempts),
            backoff=BackoffWindow(base=cfg.backoff_base, cap=max(cfg.backoff_cap, cfg.backoff_base)),
            attempt_timeout=cfg.attempt_timeout)
        self._netgen = NetworkGeneration(0)
        self._peer_candidates: list[Address] = []
        self._peer_ws_urls: list[str] = []
        self._cand_gen = 0
        self._prflx = 0  # peer-reflexive sub-generation (see _on_verified)
        self._attempt: int | None = None
        self._upgrade_task: asyncio.Task[bool] | None = None
        self._path: DirectPath | None = None
        self._verified = asyncio.Event()
        self._use_direct = False
        self._effective_direct = False
        self._last_direct_in = 0.0
        self._last_direct_out = 0.0
        self._wake = asyncio.Event()
        self._space = asyncio.Event()
        self._inbox: deque[bytes] = deque()  # at most cfg.window (receive flow control)
        self._readable = asyncio.Event()
        self._peer_closed = False
        self._replies: dict[bytes, bytes] = {}  # initiation -> our response (idempotent resends)
        self._last_initiation: int | None = None  # newest initiation timestamp accepted (replays)
        self._tasks: set[asyncio.Task[None]] = set()
        self._rekeying: asyncio.Task[None] | None = None
        self._hs_inbox: asyncio.Queue[bytes] = asyncio.Queue(maxsize=16)
        self._driver: asyncio.Task[None] | None = None
        self._closed = False
        self._identity: IdentityKey | None = None
        self._peer_identity: PublicIdentity | None = None
        self._context_key: ContextKey | None = None
        self.epoch = session.epoch or 0
        self.channel_id: bytes | None = None  # Hash32 of the handshake (ChannelEstablished fact)
        self._pending_cids: dict[int, bytes] = {}

    # -- construction ---------------------------------------------------------------------------
    @classmethod
    async def establish(cls, *, relay: RelayLink, identity: IdentityKey, peer: PublicIdentity,
                        context_key: ContextKey, context: ContextId, epoch: int, initiator: bool,
                        endpoint: DirectEndpoint | None = None,
                        local_candidates: Sequence[Address] | None = None,
                        config: ConnectionConfig | None = None,
                        ws_listener: WsDirectListener | None = None,
                        on_trace: Callable[[str], None] | None = None) -> PeerConnection:
        """Noise IKpsk2 over the relay (both sides call this), then a started connection."""
        cfg = config or ConnectionConfig()
        inbox: asyncio.Queue[bytes] = asyncio.Queue(maxsize=16)
        relay.register(context, peer.authority_id,
                       lambda b: inbox.put_nowait(b) if not inbox.full() else None)
        try:
            session, answered, cid = await asyncio.wait_for(
                _handshake(relay, inbox, identity, peer, context_key, context, epoch, initiator),
                cfg.handshake_timeout)
        except asyncio.TimeoutError:
            relay.unregister(context, peer.authority_id)
            raise HandshakeError("handshake over the relay timed out") from None
        conn = cls(relay=relay, context=context, local=identity.authority_id,
                   peer=peer.authority_id, session=session, initiator=initiator,
                   endpoint=endpoint, local_candidates=local_candidates, config=cfg,
                   ws_listener=ws_listener, on_trace=on_trace)
        conn._identity, conn._peer_identity, conn._context_key = identity, peer, context_key
        if answered is not None:
            conn._replies[answered.initiation] = answered.reply
            conn._last_initiation = answered.timestamp
        conn.epoch = epoch
        conn.channel_id = cid
        conn._note(f"channel up over the relay (epoch {epoch}, "
                   f"{'initiator' if initiator else 'responder'})")
        await conn.start()
        return conn

    async def start(self) -> None:
        self.relay.register(self.context, self.peer, self._on_relay_frame, self._on_relay_up)
        if self.ws_listener is not None:
            self.ws_listener.register(self.context, self.peer, self._on_ws_path)
        self.actor.handle(NetworkChanged(self._netgen, self._bindings()), self.loop.time())
        self._driver = asyncio.create_task(self._drive())

    # -- public API -----------------------------------------------------------------------------
    @property
    def path(self) -> str:
        """Where our messages go now: ``"direct"`` or ``"relay"``."""
        return "direct" if self._sending_direct() else "relay"

    @property
    def state(self) -> ConnState:
        return self.actor.state

    def _check_open(self) -> None:
        if self._peer_closed:
            raise TransportError("the peer closed the connection")
        if self._closed:
            raise UsageError("connection closed")

    async def send(self, payload: bytes) -> None:
        """Queue one message; waits while the send window is full."""
        self._check_open()
        while not self.switcher.can_send(len(payload)):
            self._space.clear()
            await self._space.wait()
            self._check_open()
        self.switcher.send(payload, self.loop.time())
        self._wake.set()

    async def recv(self) -> bytes:
        """The next message from the peer, in order.  After either side closed, what was
        delivered is still returned, then TransportError / UsageError."""
        while True:
            if self._inbox:
                self._wake.set()  # room again: the driver moves more from the switcher
                return self._inbox.popleft()
            if self._closed or self._peer_closed:
                msg = self.switcher.next_message()
                if msg is not None:
                    return msg
                self._check_open()
            self._readable.clear()
            await self._readable.wait()

    async def flush(self, timeout: float) -> bool:
        """Wait until everything sent was acknowledged (True) or ``timeout`` s pass."""
        end = self.loop.time() + timeout
        while self.switcher.unacked and self.loop.time() < end:
            self._space.clear()
            try:
                await asyncio.wait_for(self._space.wait(), end - self.loop.time())
            except asyncio.TimeoutError:
                break
        return not self.switcher.unacked

    def update_candidates(self, generation: int, candidates: Iterable[Address],
                          ws_urls: Iterable[str] = ()) -> None:
        """The peer's direct candidates from a (newer) descriptor: UDP addresses (QuicDirect /
        QuicReflexive hints) and direct WebSocket URLs (WebSocketDirect hints)."""
        if not 0 <= generation < 1 << 48:
            raise UsageError("candidate generation is a 48-bit counter")
        self._peer_candidates = [(h, p) for h, p in candidates]
        self._peer_ws_urls = list(ws_urls)
        self._cand_gen, self._prflx = generation, 0
        self.actor.handle(CandidatesUpdated(CandidateGeneration(generation * 1024),
                                            tuple(self._actor_candidates())), self.loop.time())
        self._wake.set()

    def update_from_descriptor(self, descriptor: RendezvousDescriptor) -> None:
        """The peer's (validated, opened) descriptor: its direct hints become candidates, its
        ``valid_from`` (ms, newer for every republication) the candidate generation."""
        if descriptor.authority_id != self.peer or descriptor.context_id != self.context:
            raise UsageError("descriptor of another peer or context")
        udp, urls = candidates_from_hints(descriptor.transport_hints)
        self.update_candidates(descriptor.valid_from, udp, urls)

    def _actor_candidates(self) -> list[Address]:
        out = list(self._peer_candidates)
        for url in self._peer_ws_urls:
            u = urlsplit(url)
            if u.hostname:
                out.append((u.hostname, u.port or (443 if u.scheme == "wss" else 80)))
        return out

    def network_changed(self, endpoint: DirectEndpoint | None = None) -> None:
        """Our network changed (new interface, address or NAT): a fresh upgrade cycle starts;
        the relay keeps carrying traffic meanwhile.  Pass ``endpoint`` if the socket changed."""
        if endpoint is not None and endpoint is not self.endpoint:
            if self._upgrade_task is not None and not self._upgrade_task.done():
                self._upgrade_task.cancel()  # it punches from the old socket
            self._upgrade_task = None
            if self._path is not None:
                self._path.close("endpoint replaced")
            self.endpoint = endpoint
            self.local_candidates = [endpoint.local_address]
        self._netgen = self._netgen.next()
        self._note(f"network changed (generation {self._netgen.value})")
        self.actor.handle(NetworkChanged(self._netgen, self._bindings()), self.loop.time())
        self._wake.set()

    async def rotate(self, epoch: int) -> None:
        """Re-handshake at ``epoch`` over the relay (initiator side; the peer answers
        automatically).  Traffic continues; frames of the old session still open."""
        if self._identity is None or self._peer_identity is None or self._context_key is None:
            raise UsageError("rotate needs a connection made with establish()")
        session, _, cid = await asyncio.wait_for(
            _handshake(self.relay, self._hs_inbox, self._identity, self._peer_identity,
                       self._context_key, self.context, epoch, True),
            self.config.handshake_timeout)
        self._sessions.add(session, confirmed=True)
        self.epoch = epoch
        self.channel_id = cid
        self._note(f"epoch rotated to {epoch} (initiator)")
        await self._send_now(encode_ctrl(CTRL_KEEPALIVE))  # confirms the new keys to the peer

    async def close(self, *, flush: float = 1.0) -> None:
        """Close: wait up to ``flush`` s for our messages to be acknowledged, tell the peer
        (CLOSE), and stop.  Messages already delivered stay readable with :meth:`recv`."""
        if self._closed:
            return
        if flush > 0 and not self._peer_closed and self._driver is not None:
            await self.flush(flush)
        if not self._peer_closed:
            try:
                await self._send_now(encode_ctrl(CTRL_CLOSE))
            except AuraError:
                pass
        self._closed = True
        self._space.set()
        self._readable.set()
        self.relay.unregister(self.context, self.peer)
        if self.ws_listener is not None:
            self.ws_listener.unregister(self.context, self.peer)
        if self._upgrade_task is not None:
            self._upgrade_task.cancel()
        if self._path is not None:
            self._path.close("connection closed")
        if self._driver is not None:
            self._driver.cancel()
            for task in (self._driver, self._upgrade_task):
                if task is not None:
                    try:
                        await task
                    except (asyncio.CancelledError, Exception):  # noqa: BLE001 - shutting down
                        pass

    # -- internals ------------------------------------------------------------------------------
    def _note(self, text: str) -> None:
        self.trace.append((self.loop.time(), text))
        log.info("%s -> %s: %s", self.local, self.peer, text)
        if self.on_trace is not None:
            self.on_trace(text)

    def _bindings(self) -> frozenset[LocalBinding]:
        """Our local bindings in this network generation: the UDP endpoint, and outbound TCP
        through the default route (where direct WebSockets originate)."""
        out = {LocalBinding("tcp", ("0.0.0.0", 0), self._netgen)}
        if self.endpoint is not None and not self.endpoint.is_closed:
            out.add(LocalBinding("udp", self.endpoint.local_address, self._netgen))
        return frozenset(out)

    def _path_binding(self, path: DirectPath) -> LocalBinding | None:
        if isinstance(path, QuicPath):
            if path.endpoint is not self.endpoint or path.endpoint.is_closed:
                return None  # a path on a socket we no longer hold is not recoverable
            return LocalBinding("udp", path.endpoint.local_address, self._netgen)
        return LocalBinding("tcp", ("0.0.0.0", 0), self._netgen)

    def _sending_direct(self) -> bool:
        return (self._use_direct and self._path is not None and self._path.is_open
                and self._verified.is_set())

    def _seal(self, record: bytes) -> bytes:
        return self._sessions.current.seal(record, self.loop.time())

    async def _send_records(self, records: list[bytes]) -> None:
        if not records:
            return
        frames = [self._seal(r) for r in records]
        if self._sending_direct():
            assert self._path is not None
            for f in frames:
                self._path.send_frame(f)
            self._last_direct_out = self.loop.time()
            self.stats["direct_out"] += len(frames)
        else:
            self.stats["relay_out"] += len(frames)
            await self.relay.send(self.context, self.peer, frames)

    async def _send_now(self, record: bytes) -> None:
        frame = self._seal(record)
        if self._sending_direct():
            assert self._path is not None
            self._path.send_frame(frame)
        else:
            await self.relay.send(self.context, self.peer, [frame])

    def _send_direct_ctrl(self, kind: int) -> None:
        if self._path is not None and self._path.is_open:
            self._path.send_frame(self._seal(encode_ctrl(kind)))
            self._last_direct_out = self.loop.time()

    def _on_relay_up(self) -> None:
        self._note("relay connected")
        if not self._effective_direct:  # whatever was lost meanwhile goes again
            self.switcher.path_changed(self.loop.time())
        self._wake.set()

    def _on_relay_frame(self, data: bytes) -> None:
        if data[:1] in (bytes([MSG_INITIATION]), bytes([MSG_RESPONSE])):
            if data[0] == MSG_INITIATION:
                if len(self._tasks) >= 4:  # bounded work per peer: excess initiations dropped
                    self.stats["noise_drops"] += 1
                    return
                task = asyncio.create_task(self._answer_rotation(data))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
            elif not self._hs_inbox.full():
                self._hs_inbox.put_nowait(data)
            return
        self._on_noise(data, None)

    def _on_noise(self, data: bytes, path: DirectPath | None) -> None:
        now = self.loop.time()
        session = None
        if len(data) >= 16 and data[0] == MSG_TRANSPORT:
            session = self._sessions.by_index.get(int.from_bytes(data[4:8], "little"))
        plain = session.receive(data, now) if session is not None else None
        if plain is None or session is None:
            self.stats["noise_drops"] += 1  # forged, replayed, stale: silent (seed 002 §6)
            return
        if self._sessions.confirm(session):
            self.epoch = session.epoch if session.epoch is not None else self.epoch
            self.channel_id = self._pending_cids.pop(session.local_index, self.channel_id)
            self._note(f"peer confirmed the rotated session: epoch {self.epoch} (responder)")
        direct = path is not None
        self.stats["direct_in" if direct else "relay_in"] += 1
        if plain[:1] == b"\x01":
            self.stats["data_direct_in" if direct else "data_relay_in"] += 1
        if path is not None:
            self._last_direct_in = now
            if path is self._path and not self._verified.is_set():
                self._verified.set()
                self._on_verified(path)
        self.switcher.receive(plain, now)
        self._wake.set()

    async def _answer_rotation(self, data: bytes) -> None:
        """Responder side of :meth:`rotate`: the peer re-handshakes at our epoch + 1 (or ours)."""
        if self._identity is None or self._peer_identity is None or self._context_key is None:
            return
        cached = self._replies.get(data)
        if cached is not None:  # a retransmitted initiation: the same answer, no new session
            await self.relay.send(self.context, self.peer, [cached])
            return
        for epoch in (self.epoch + 1, self.epoch):
            try:
                session, answered = _respond(data, self._identity, self._peer_identity,
                                             self._context_key, self.context, epoch,
                                             self._last_initiation)
            except _HS_ERRORS:
                continue
            while len(self._replies) >= 4:
                del self._replies[next(iter(self._replies))]
            self._replies[data] = reply = answered.reply
            self._last_initiation = answered.timestamp
            await self.relay.send(self.context, self.peer, [reply])
            self._sessions.add(session, confirmed=False)  # sends switch on the peer's first frame
            self._pending_cids[session.local_index] = answered.channel_id
            self._note(f"answered a re-handshake at epoch {epoch}")
            return
        self.stats["noise_drops"] += 1

    async def _drive(self) -> None:
        try:
            while not self._closed:
                self._wake.clear()  # before the step: a wake-up during its awaits is kept
                await self._step()
                deadline = self._next_deadline()
                if deadline > self.loop.time() and not self._wake.is_set():
                    timer = self.loop.call_at(deadline, self._wake.set)
                    await self._wake.wait()
                    timer.cancel()
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001 - a driver bug must be visible, not silent
            log.exception("connection driver failed")
            raise

    def _next_deadline(self) -> float:
        now = self.loop.time()
        candidates = [now + 1.0]
        for t in (self.actor.get_timer(), self.switcher.get_timer()):
            if t is not None:
                candidates.append(t)
        if self._path is not None and self._path.is_open and self._verified.is_set():
            candidates.append(self._last_direct_out + self.config.keepalive_interval)
            candidates.append(self._last_direct_in + self.config.direct_timeout)
        return min(candidates)

    def _maybe_rekey(self, now: float) -> None:
        """Initiator: re-handshake at the same epoch before the session's time/count limits
        (REKEY_AFTER_*), so a long-lived connection never seals with expired keys."""
        if (not self.initiator or self._identity is None or not self._sessions.current.needs_rekey(now)
                or (self._rekeying is not None and not self._rekeying.done())):
            return

        async def rekey() -> None:
            try:
                await self.rotate(self.epoch)
            except (asyncio.TimeoutError, AuraError) as exc:
                self._note(f"rekey failed, will retry: {exc}")
        self._rekeying = asyncio.create_task(rekey())

    async def _step(self) -> None:
        now = self.loop.time()
        self._maybe_rekey(now)
        self.actor.handle_timer(now)
        self._check_upgrade(now)
        self._check_direct(now)
        while (action := self.actor.next_action()) is not None:
            await self._act(action)
        while (ctrl := self.switcher.next_control()) is not None:
            self._on_control(*ctrl)
        direct = self._sending_direct()
        if direct != self._effective_direct:  # the path our records take changed
            self._effective_direct = direct
            self.switcher.path_changed(self.loop.time(), reliable=direct)
        await self._send_records(self.switcher.records_to_send(self.loop.time()))
        while len(self._inbox) < self.config.window and (
                msg := self.switcher.next_message()) is not None:
            self._inbox.append(msg)
            self._readable.set()
        if self.switcher.can_send():
            self._space.set()
        if self._path is not None and self._path.is_open and self._verified.is_set():
            if self.loop.time() - self._last_direct_out >= self.config.keepalive_interval:
                self.stats["keepalives"] += 1
                self._send_direct_ctrl(CTRL_KEEPALIVE)

    async def _act(self, action: object) -> None:
        now = self.loop.time()
        if isinstance(action, StartAttempt):
            self._attempt = action.attempt
            self.stats["attempts"] += 1
            self._note(f"direct attempt {action.attempt} towards {list(action.candidates)}")
            await self.relay.send(self.context, self.peer, [self._seal(encode_ctrl(
                CTRL_PUNCH_REQUEST, encode_candidates(self.local_candidates)))])
            self._start_upgrade([])  # UDP candidates: ours from descriptors, theirs below
            self._check_upgrade(now)
        elif isinstance(action, CancelAttempt):
            # The running upgrade (bounded by the punch window and QUIC timeouts) is left to
            # finish: its result serves the next attempt, or warms a standby path.
            if self._attempt == action.attempt:
                self._attempt = None
                self._note(f"direct attempt {action.attempt} abandoned")
        elif isinstance(action, UseDirect):
            self._use_direct = True  # _step tells the switcher once the path is really used
            self.stats["upgrades"] += 1
            self._note(f"path -> direct QUIC via {action.path}")
        elif isinstance(action, UseRelay):
            was = self._use_direct
            self._use_direct = False
            self._note(f"path -> relay ({action.reason})" if was else f"on relay ({action.reason})")

    def _on_control(self, kind: int, body: bytes) -> None:
        if kind == CTRL_PUNCH_REQUEST:
            try:
                cands = decode_candidates(body)
            except ProtocolError:
                self.stats["bad_control"] += 1
                return
            if not self._can_upgrade() or self._direct_ready():
                return
            if self._upgrade_task is None or self._upgrade_task.done():
                self.stats["assists"] += 1
                self._note(f"peer asked to punch: assisting towards {cands}")
                self._start_upgrade(cands)
        elif kind in (CTRL_PATH_HELLO, CTRL_KEEPALIVE):
            pass  # their effect (path verified / alive) was taken on arrival
        elif kind == CTRL_CLOSE:
            self._note("peer closed the connection")
            self._peer_closed = True
            self._readable.set()
            self._space.set()
            task = asyncio.create_task(self.close(flush=0))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        else:
            self.stats["bad_control"] += 1

    def _direct_ready(self) -> bool:
        return self._path is not None and self._path.is_open and self._verified.is_set()

    def _can_upgrade(self) -> bool:
        udp = self.endpoint is not None and not self.endpoint.is_closed
        return udp or bool(self._ws_connect_urls())

    def _ws_connect_urls(self) -> list[str]:
        # The initiator dials the peer's listener; the responder dials only when it has no
        # listener of its own (so the initiator could not reach it): one connection, not two.
        if self.initiator or self.ws_listener is None:
            return list(self._peer_ws_urls)
        return []

    def _start_upgrade(self, candidates: list[Address]) -> None:
        if not self._can_upgrade() or self._direct_ready():
            return
        if self._upgrade_task is not None and not self._upgrade_task.done():
            return  # one upgrade at a time; the running one serves this attempt too
        cands = list(dict.fromkeys(candidates + self._peer_candidates))
        self._upgrade_task = asyncio.create_task(self._upgrade(cands))
        self._upgrade_task.add_done_callback(lambda _t: self._wake.set())

    def _check_upgrade(self, now: float) -> None:
        """Report a finished upgrade (or a warm standby path) to the actor."""
        attempt = self._attempt
        if attempt is None or self.actor.current_attempt != attempt:
            return
        if self._direct_ready():
            assert self._path is not None
            self._attempt = None
            self.actor.handle(AttemptSucceeded(attempt, self._path.addr,
                                               self._path_binding(self._path)), now)
            return
        task = self._upgrade_task
        if task is None or task.done():
            ok = task is not None and not task.cancelled() and task.exception() is None and task.result()
            if not ok:
                self._attempt = None
                self._note(f"direct attempt {attempt} failed: staying on relay")
                self.actor.handle(AttemptFailed(attempt), now)

    def _check_direct(self, now: float) -> None:
        path = self._path
        if path is None:
            return
        dead = not path.is_open
        if not dead and self._verified.is_set() and now - self._last_direct_in > self.config.direct_timeout:
            path.close("keepalive timeout")
            dead = True
        if dead:
            self._path = None
            self._verified.clear()
            self._note(f"direct path to {path.addr} closed ({path.closed.result() if path.closed.done() else 'dead'})")
            if self.actor.state is ConnState.DIRECT:
                self.stats["direct_lost"] += 1
                self.actor.handle(DirectLost("direct path lost"), now)

    def _on_verified(self, path: DirectPath) -> None:
        """A direct path carried an authenticated frame.  If our actor is idle (the peer
        started the upgrade), the peer's address on it is a new, peer-reflexive candidate: a
        new candidate sub-generation, whose attempt succeeds at once on this warm path."""
        self._note(f"direct path verified with {path.addr} ({type(path).__name__})")
        if self.actor.state in (ConnState.RELAY_ONLY, ConnState.DEGRADED) and self._prflx < 1023:
            self._prflx += 1
            cands = tuple(dict.fromkeys(self._actor_candidates() + [path.addr]))
            self.actor.handle(CandidatesUpdated(
                CandidateGeneration(self._cand_gen * 1024 + self._prflx), cands), self.loop.time())

    def _adopt(self, path: DirectPath) -> None:
        """Make ``path`` the candidate direct path and say hello over it (sealed)."""
        old = self._path
        self._path = path
        self._verified.clear()
        if old is not None and old is not path:
            old.close("replaced")
        path.on_frame = lambda f, p=path: self._on_noise(f, p)
        path.closed.add_done_callback(lambda _f: self._wake.set())
        self._last_direct_in = self._last_direct_out = self.loop.time()
        self._send_direct_ctrl(CTRL_PATH_HELLO)

    def _on_ws_path(self, path: DirectPath) -> None:
        """An incoming direct WebSocket routed to us by the listener (not yet authenticated)."""
        if self._direct_ready():
            path.close("a direct path is already up")
            return
        self._note(f"incoming direct WebSocket from {path.addr}")
        self._adopt(path)
        self.loop.call_later(self.config.quic_timeout, self._drop_unverified, path)

    def _drop_unverified(self, path: DirectPath) -> None:
        if self._path is path and not self._verified.is_set():
            path.close("no authenticated frame")

    async def _verify(self, path: DirectPath) -> bool:
        self._adopt(path)
        try:
            await asyncio.wait_for(self._verified.wait(), self.config.quic_timeout)
        except asyncio.TimeoutError:
            path.close("no authenticated frame")
            self._note("direct path did not verify (no Noise frame over it)")
            return False
        return self._path is path

    async def _upgrade(self, candidates: list[Address]) -> bool:
        """Punch + QUIC on the UDP endpoint; failing that, a direct WebSocket."""
        endpoint = self.endpoint
        if endpoint is not None and not endpoint.is_closed and await self._upgrade_quic(
                endpoint, candidates):
            return True
        for url in self._ws_connect_urls():
            try:
                path = await connect_ws_direct(url, self.context, self.local, self.peer,
                                               timeout=self.config.quic_timeout)
            except TransportError as exc:
                self._note(f"direct WebSocket to {url} failed: {exc}")
                continue
            if await self._verify(path):
                return True
        return False

    async def _upgrade_quic(self, endpoint: DirectEndpoint, candidates: list[Address]) -> bool:
        cfg = self.config
        peer = bytes(self.peer)
        try:
            out = await endpoint.punch(peer, candidates, window=cfg.punch_window,
                                       interval=cfg.punch_interval, prepunch=cfg.prepunch)
        except UsageError:
            return False
        if not out.direct or out.path is None:
            self._note(f"punch got no answer in {out.elapsed:.2f} s")
            return False
        self._note(f"punched {out.path} in {out.elapsed * 1000:.0f} ms")
        try:
            if self.initiator:
                quic = await endpoint.connect(peer, out.path, timeout=cfg.quic_timeout)
            else:
                quic = await endpoint.accept(peer, timeout=cfg.quic_timeout)
        except TransportError as exc:
            self._note(f"QUIC failed: {exc}")
            return False
        return await self._verify(quic)


# -- handshakes over the relay ---------------------------------------------------------------------

def _new_index() -> int:
    return int.from_bytes(os.urandom(4), "little")


_HS_ERRORS: Final = (CryptoError, ProtocolError, ValueError)
HANDSHAKE_RESEND: Final = 0.5  # the initiation goes again until answered (relay restarts, races)


@dataclass(frozen=True)
class _Answered:
    """A responder's record of the initiation it answered (replays and retransmissions)."""

    initiation: bytes
    reply: bytes
    timestamp: int
    channel_id: bytes


async def _handshake(relay: RelayLink, inbox: asyncio.Queue[bytes], identity: IdentityKey,
                     peer: PublicIdentity, context_key: ContextKey, context: ContextId,
                     epoch: int, initiator: bool, not_after: int | None = None
                     ) -> tuple[DatagramSession, _Answered | None, bytes]:
    """One IKpsk2 exchange over the relay: ``(session, what the responder answered | None,
    channel id)``.

    The initiator's offer carries a wall-clock timestamp (ns), so a recorded initiation cannot
    be replayed to a responder that remembers the last one it accepted (``not_after``)."""
    index = _new_index()
    loop = asyncio.get_running_loop()
    if initiator:
        offer = dataclasses.replace(make_offer(epoch), timestamp=time.time_ns())
        hs = AuraHandshake.initiator(identity, peer, context_key, bytes(context), epoch, offer)
        initiation = frame_initiation(index, hs.write_message())
        while True:
            await relay.up.wait()
            await relay.send(context, peer.authority_id, [initiation])
            try:
                data = await asyncio.wait_for(inbox.get(), HANDSHAKE_RESEND)
            except asyncio.TimeoutError:
                continue
            try:
                kind, sender, receiver, msg = parse_handshake_datagram(data)
            except ValueError:
                continue
            if kind != MSG_RESPONSE or receiver != index:
                continue
            hs.read_message(msg)
            hs.negotiated  # VersionError if incompatible
            return (hs.datagram_session(index, sender, now=loop.time()), None,
                    hs.channel_id.digest)
    while True:
        data = await inbox.get()
        try:
            session, answered = _respond(data, identity, peer, context_key, context, epoch,
                                         not_after)
        except _HS_ERRORS:
            continue
        await relay.send(context, peer.authority_id, [answered.reply])
        return session, answered, answered.channel_id


def _respond(data: bytes, identity: IdentityKey, peer: PublicIdentity, context_key: ContextKey,
             context: ContextId, epoch: int, not_after: int | None
             ) -> tuple[DatagramSession, _Answered]:
    kind, sender, _, msg = parse_handshake_datagram(data)
    if kind != MSG_INITIATION:
        raise ProtocolError("expected a handshake initiation")
    hs = AuraHandshake.responder(identity, context_key, bytes(context), epoch, make_offer(epoch),
                                 lambda rs: peer if rs == peer.x25519 else None)
    remote = hs.read_message(msg, not_after=not_after)  # HandshakeError on a replay
    hs.negotiated
    index = _new_index()
    reply = frame_response(index, sender, hs.write_message())
    session = hs.datagram_session(index, sender, now=asyncio.get_running_loop().time())
    return session, _Answered(bytes(data), reply, remote.timestamp, hs.channel_id.digest)
