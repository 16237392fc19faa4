"""Direct QUIC paths on the punched UDP socket (SPEC §4 transport selection; seed 000 §2).

Theory of operation
-------------------
A :class:`DirectEndpoint` owns one UDP socket: the one whose address an authority advertises
in its descriptor, the one it punches from, and the one QUIC then runs on, so the NAT mapping
the punch opened is the mapping QUIC uses.  Every incoming datagram is demultiplexed by its
first byte (RFC 9443 style)::

    0x00-0x3F with the STUN magic cookie at bytes 4..8
        AURA-PUNCH attribute at 20..22 -> the PunchEngine (validated and acked from C)
        any other STUN message         -> ``on_stun`` (a STUN client on this socket), else drop
    0x40-0x7F, 0xC0-0xFF              -> QUIC v1 (short / long header), routed by source address
    anything else                     -> dropped and counted

Punching runs inside this loop (``PunchEngine.send_burst`` every ``interval``, every reply
validated by ``PunchEngine.answer``), so QUIC packets that arrive while we still punch are not
lost to a competing reader.  An authenticated punch from an address we did not target makes that
address a target too (peer-reflexive, as ICE does); the path is proven when the peer *acks*
one of our punches.

QUIC is aioquic's sans-I/O ``QuicConnection``, driven here: feed datagrams, drain events,
transmit, re-arm one timer.  The client is the channel's Noise initiator; the server accepts a
connection only from an address that sent it an authenticated punch of that peer.  Each path
carries Noise datagrams (the channel's :class:`~aura_core.noise.DatagramSession` frames) on
bidirectional stream 0, each prefixed by its length as a u16 big-endian.

**Authentication is Noise's, not TLS's.**  QUIC's TLS 1.3 runs with a self-signed certificate
generated at run time and the client does not verify it: QUIC here only provides congestion
control, loss recovery and a NAT-friendly encrypted envelope.  Who the peer is, is proven by
the Noise IKpsk2 session whose frames the stream carries (a frame that does not open under the
channel's keys is dropped); a man in the middle of QUIC sees only Noise ciphertext.  There is no
QUIC connection migration: a path that changes address dies (keepalives then fall back to the
relay) and a fresh upgrade cycle punches again.
"""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import socket
import ssl
import struct
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Final

from aioquic.buffer import Buffer
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.connection import QuicConnection
from aioquic.quic.events import ConnectionTerminated, HandshakeCompleted, StreamDataReceived, StreamReset
from aioquic.quic.packet import QuicPacketType, pull_quic_header

from ..errors import TransportError, UsageError
from ..punch import Address, PunchEngine, PunchEvent, is_punch
from ..stun import BindingFailed, BindingSucceeded, StunClient
from .punch import PunchOutcome, set_rcvbuf

__all__ = [
    "ALPN",
    "STREAM_ID",
    "classify",
    "FrameDecoder",
    "frame",
    "self_signed_certificate",
    "QuicPath",
    "DirectEndpoint",
]

ALPN: Final = "aura-direct/1"
STREAM_ID: Final = 0  # the client's first bidirectional stream carries the channel
_LEN: Final = struct.Struct(">H")
_COOKIE: Final = b"\x21\x12\xa4\x42"
_SMALLEST_INITIAL: Final = 1200  # RFC 9000 §14.1: a client Initial is padded to 1200 bytes
_MAX_PUNCHED_FROM: Final = 4096  # addresses remembered from authenticated punches


def classify(data: bytes) -> str:
    """``"quic"``, ``"punch"``, ``"stun"`` or ``"other"`` by the first byte (module docstring)."""
    if not data:
        return "other"
    b = data[0]
    if 0x40 <= b <= 0x7F or b >= 0xC0:
        return "quic"
    if b < 0x40 and len(data) >= 20 and data[4:8] == _COOKIE:
        return "punch" if is_punch(data) else "stun"
    return "other"


def frame(noise_datagram: bytes) -> bytes:
    """One stream record: u16 BE length || Noise datagram (1..65535 bytes)."""
    if not 0 < len(noise_datagram) <= 0xFFFF:
        raise UsageError("a framed Noise datagram is 1..65535 bytes")
    return _LEN.pack(len(noise_datagram)) + noise_datagram


class FrameDecoder:
    """Splits stream bytes into u16-length-prefixed frames; holds at most one partial frame."""

    def __init__(self) -> None:
        self._buf = bytearray()
        self.zero_length = 0

    def feed(self, data: bytes) -> list[bytes]:
        self._buf += data
        out: list[bytes] = []
        pos = 0
        buf = self._buf
        while len(buf) - pos >= 2:
            (n,) = _LEN.unpack_from(buf, pos)
            if n == 0:
                self.zero_length += 1  # never sent by us: skip, counted
                pos += 2
                continue
            if len(buf) - pos - 2 < n:
                break
            out.append(bytes(buf[pos + 2:pos + 2 + n]))
            pos += 2 + n
        del buf[:pos]
        return out

    @property
    def buffered(self) -> int:
        return len(self._buf)


_CERT: tuple[object, object] | None = None


def self_signed_certificate() -> tuple[object, object]:
    """A throw-away ECDSA P-256 certificate and key for the QUIC server side (made once per
    process).  Nobody verifies it: peers authenticate with Noise inside the stream."""
    global _CERT
    if _CERT is None:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID

        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "aura-direct")])
        now = datetime.datetime.now(datetime.timezone.utc)
        cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
                .public_key(key.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(now - datetime.timedelta(days=1))
                .not_valid_after(now + datetime.timedelta(days=30))
                .sign(key, hashes.SHA256()))
        _CERT = (cert, key)
    return _CERT


class QuicPath:
    """One direct QUIC connection to a peer, carrying framed Noise datagrams on stream 0.

    ``on_frame(frame)`` is called for each complete frame; ``connected`` resolves when the QUIC
    handshake completes; ``closed`` resolves with a reason when the connection ends.
    """

    def __init__(self, endpoint: DirectEndpoint, peer: bytes, addr: Address,
                 conn: QuicConnection, client: bool) -> None:
        loop = asyncio.get_running_loop()
        self.endpoint = endpoint
        self.peer = peer
        self.addr = addr
        self.client = client
        self.on_frame: Callable[[bytes], None] | None = None
        self.connected: asyncio.Future[None] = loop.create_future()
        self.closed: asyncio.Future[str] = loop.create_future()
        self.frames_in = 0
        self.frames_out = 0
        self._conn = conn
        self._decoder = FrameDecoder()
        self._stream_open = client  # the server may send on stream 0 once the client opened it
        self._backlog: list[bytes] = []
        self._timer: asyncio.TimerHandle | None = None
        self._pump_scheduled = False

    @property
    def is_open(self) -> bool:
        return self.connected.done() and not self.closed.done()

    def send_frame(self, noise_datagram: bytes) -> None:
        """Queue one Noise datagram on the stream (sent on the next loop iteration)."""
        if self.closed.done():
            raise TransportError(f"direct path closed: {self.closed.result()}")
        data = frame(noise_datagram)
        self.frames_out += 1
        if not self._stream_open:
            self._backlog.append(data)
            return
        self._conn.send_stream_data(STREAM_ID, data)
        self._schedule_pump()

    def close(self, reason: str = "closed") -> None:
        if self.closed.done():
            return
        self._conn.close(reason_phrase=reason)
        self._pump()
        self._finish(reason)

    # -- driver ---------------------------------------------------------------------------------
    def _schedule_pump(self) -> None:
        if not self._pump_scheduled:
            self._pump_scheduled = True
            asyncio.get_running_loop().call_soon(self._pump)

    def _datagram(self, data: bytes, addr: Address) -> None:
        self._conn.receive_datagram(data, addr, self.endpoint.loop.time())
        self._pump()

    def _on_timer(self) -> None:
        self._timer = None
        self._conn.handle_timer(self.endpoint.loop.time())
        self._pump()

    def _pump(self) -> None:
        self._pump_scheduled = False
        if self.closed.done():
            return
        conn = self._conn
        while (event := conn.next_event()) is not None:
            if isinstance(event, HandshakeCompleted):
                if not self.connected.done():
                    self.connected.set_result(None)
            elif isinstance(event, StreamDataReceived):
                if event.stream_id != STREAM_ID:
                    continue  # we never open other streams: ignore the peer's
                if not self._stream_open:
                    self._stream_open = True
                    for data in self._backlog:
                        conn.send_stream_data(STREAM_ID, data)
                    self._backlog.clear()
                for f in self._decoder.feed(event.data):
                    self.frames_in += 1
                    if self.on_frame is not None:
                        self.on_frame(f)
                if event.end_stream:
                    conn.close(reason_phrase="stream ended")
            elif isinstance(event, StreamReset) and event.stream_id == STREAM_ID:
                conn.close(reason_phrase="stream reset")
            elif isinstance(event, ConnectionTerminated):
                self._transmit()
                self._finish(event.reason_phrase or f"terminated ({event.error_code})")
                return
        self._transmit()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        when = conn.get_timer()
        if when is not None:
            self._timer = self.endpoint.loop.call_at(when, self._on_timer)

    def _transmit(self) -> None:
        for data, addr in self._conn.datagrams_to_send(self.endpoint.loop.time()):
            self.endpoint._sendto(data, addr)

    def _finish(self, reason: str) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not self.connected.done():
            self.connected.set_exception(TransportError(f"QUIC handshake failed: {reason}"))
            self.connected.exception()  # retrieved: nobody may be waiting
        if not self.closed.done():
            self.closed.set_result(reason)
        self.endpoint._forget(self)


@dataclass
class _PunchState:
    targets: list[Address]
    events: list[PunchEvent] = field(default_factory=list)
    acked_from: Address | None = None
    wake: asyncio.Event = field(default_factory=asyncio.Event)


class DirectEndpoint(asyncio.DatagramProtocol):
    """One UDP socket shared by punching, STUN and direct QUIC (see the module docstring)."""

    def __init__(self, engine: PunchEngine, *, idle_timeout: float = 15.0) -> None:
        self.engine = engine
        self.idle_timeout = idle_timeout
        self.loop = asyncio.get_running_loop()
        self.on_stun: Callable[[bytes, Address], None] | None = None
        self.stats: dict[str, int] = dict.fromkeys(
            ("quic", "punch_ok", "punch_bad", "stun", "other", "quic_unknown", "send_errors"), 0)
        self._transport: asyncio.DatagramTransport | None = None
        self._sock: socket.socket | None = None
        self._paths: dict[Address, QuicPath] = {}
        self._punched_from: dict[Address, bytes] = {}  # address -> peer, from authenticated punches
        self._punching: dict[bytes, _PunchState] = {}
        self._accepting: dict[bytes, asyncio.Future[QuicPath]] = {}

    @classmethod
    async def bind(cls, engine: PunchEngine, host: str = "127.0.0.1", port: int = 0, *,
                   sock: socket.socket | None = None, idle_timeout: float = 15.0) -> DirectEndpoint:
        """Bind a UDP socket (or adopt ``sock``, e.g. one STUN already mapped) and start reading."""
        if sock is None:
            family = socket.AF_INET6 if ipaddress.ip_address(host).version == 6 else socket.AF_INET
            sock = socket.socket(family, socket.SOCK_DGRAM)
            sock.bind((host, port))
        set_rcvbuf(sock)
        sock.setblocking(False)
        self = cls(engine, idle_timeout=idle_timeout)
        self._sock = sock
        await self.loop.create_datagram_endpoint(lambda: self, sock=sock)
        return self

    @property
    def local_address(self) -> Address:
        assert self._sock is not None
        host, port = self._sock.getsockname()[:2]
        return (host, port)

    @property
    def fileno(self) -> int:
        assert self._sock is not None
        return self._sock.fileno()

    @property
    def is_closed(self) -> bool:
        return self._transport is None

    def close(self) -> None:
        for path in list(self._paths.values()):
            path.close("endpoint closed")
        for fut in self._accepting.values():
            if not fut.done():
                fut.set_exception(TransportError("endpoint closed"))
                fut.exception()
        if self._transport is not None:
            self._transport.close()
            self._transport = None

    # -- asyncio.DatagramProtocol -----------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None

    def error_received(self, exc: Exception) -> None:
        self.stats["send_errors"] += 1  # ICMP unreachable and the like: keepalives decide

    def datagram_received(self, data: bytes, addr: tuple) -> None:  # type: ignore[override]
        addr = (addr[0], addr[1])
        kind = classify(data)
        if kind == "quic":
            self.stats["quic"] += 1
            self._on_quic(data, addr)
        elif kind == "punch":
            self._on_punch(data, addr)
        elif kind == "stun" and self.on_stun is not None:
            self.stats["stun"] += 1
            self.on_stun(data, addr)
        else:
            self.stats["other" if kind == "other" else "stun"] += 1

    def _sendto(self, data: bytes, addr: Address) -> None:
        if self._transport is not None:
            self._transport.sendto(data, addr)

    # -- punching ---------------------------------------------------------------------------------
    def _on_punch(self, data: bytes, addr: Address) -> None:
        verdict, event, ack = self.engine.answer(data)
        if event is None:
            self.stats["punch_bad"] += 1  # forged, misaddressed or replayed: dropped in C
            return
        self.stats["punch_ok"] += 1
        if ack is not None:
            self._sendto(ack, addr)  # tell the peer its punch reached us
        if addr not in self._punched_from and len(self._punched_from) >= _MAX_PUNCHED_FROM:
            del self._punched_from[next(iter(self._punched_from))]  # oldest first: bounded
        self._punched_from[addr] = event.peer
        state = self._punching.get(event.peer)
        if state is None:
            return
        state.events.append(PunchEvent(event.peer, event.seq, event.ack, addr,
                                       self.loop.time()))
        if addr not in state.targets:
            state.targets.append(addr)  # peer-reflexive: punch where it really comes from
            self._set_targets()
        if event.ack and state.acked_from is None:
            state.acked_from = addr
        state.wake.set()

    def _set_targets(self) -> None:
        self.engine.set_targets((peer, a) for peer, st in self._punching.items()
                                for a in st.targets if st.acked_from is None)

    async def punch(self, peer: bytes, candidates: Iterable[Address], *, window: float = 1.5,
                    interval: float = 0.05, prepunch: float = 0.0,
                    prepunch_ttl: int = 2) -> PunchOutcome:
        """Punch ``peer`` at ``candidates`` until it acks (direct) or ``window`` s pass.

        ``prepunch`` s of low-TTL punches first open our own NAT without reaching the far one
        (avoids the conntrack-clash remap; see tests/netlab)."""
        if peer in self._punching:
            raise UsageError("already punching this peer")
        start = self.loop.time()
        state = _PunchState(list(dict.fromkeys((h, p) for h, p in candidates)))
        self._punching[peer] = state
        self._set_targets()
        try:
            if prepunch > 0 and self._sock is not None:
                old = self._sock.getsockopt(socket.IPPROTO_IP, socket.IP_TTL)
                self._sock.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, prepunch_ttl)
                try:
                    while self.loop.time() - start < prepunch and state.acked_from is None:
                        self.engine.send_burst(self.fileno)
                        await asyncio.sleep(interval)
                finally:
                    self._sock.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, old)
            while state.acked_from is None:
                left = window - (self.loop.time() - start)
                if left <= 0 or self._transport is None:
                    break
                self.engine.send_burst(self.fileno)
                state.wake.clear()
                try:
                    await asyncio.wait_for(state.wake.wait(), min(left, interval))
                except asyncio.TimeoutError:
                    pass
        finally:
            del self._punching[peer]
            self._set_targets()
        return PunchOutcome(peer, state.acked_from is not None, state.acked_from,
                            self.loop.time() - start, state.events, self.engine.stats())

    # -- STUN on the shared socket ------------------------------------------------------------------
    async def stun(self, servers: Iterable[Address], *, client: StunClient | None = None
                   ) -> list[BindingSucceeded | BindingFailed]:
        """STUN Binding transactions from this socket while it is in use (punching, QUIC), e.g.
        to refresh the reflexive address the descriptor advertises.  Responses come through the
        demultiplexer (``on_stun``); RFC 8489 retransmission timing is the StunClient's."""
        client = client or StunClient()
        wake = asyncio.Event()
        previous = self.on_stun

        def feed(data: bytes, addr: Address) -> None:
            client.receive_datagram(data, addr, self.loop.time())
            wake.set()

        self.on_stun = feed
        try:
            for server in servers:
                client.start((server[0], server[1]), self.loop.time())
            events: list[BindingSucceeded | BindingFailed] = []
            while True:
                for data, addr in client.datagrams_to_send(self.loop.time()):
                    self._sendto(data, addr)
                while (event := client.next_event()) is not None:
                    events.append(event)
                if not client.pending or self._transport is None:
                    return events
                timer = client.get_timer()
                wake.clear()
                try:
                    await asyncio.wait_for(wake.wait(), None if timer is None
                                           else max(0.0, timer - self.loop.time()))
                except asyncio.TimeoutError:
                    pass
        finally:
            self.on_stun = previous

    # -- QUIC -------------------------------------------------------------------------------------
    def _config(self, client: bool) -> QuicConfiguration:
        cfg = QuicConfiguration(is_client=client, alpn_protocols=[ALPN],
                                idle_timeout=self.idle_timeout, server_name="aura-direct")
        if client:
            cfg.verify_mode = ssl.CERT_NONE  # authentication is Noise's (module docstring)
        else:
            cfg.certificate, cfg.private_key = self_signed_certificate()
        return cfg

    def _on_quic(self, data: bytes, addr: Address) -> None:
        path = self._paths.get(addr)
        if path is not None:
            path._datagram(data, addr)
            return
        peer = self._punched_from.get(addr)
        fut = self._accepting.get(peer) if peer is not None else None
        if peer is None or fut is None or fut.done() or len(data) < _SMALLEST_INITIAL:
            self.stats["quic_unknown"] += 1
            return
        try:
            header = pull_quic_header(Buffer(data=data), host_cid_length=8)
        except ValueError:
            self.stats["quic_unknown"] += 1
            return
        if header.packet_type != QuicPacketType.INITIAL:
            self.stats["quic_unknown"] += 1
            return
        conn = QuicConnection(configuration=self._config(False),
                              original_destination_connection_id=header.destination_cid)
        path = QuicPath(self, peer, addr, conn, client=False)
        self._paths[addr] = path
        fut.set_result(path)
        path._datagram(data, addr)

    def _forget(self, path: QuicPath) -> None:
        if self._paths.get(path.addr) is path:
            del self._paths[path.addr]

    async def connect(self, peer: bytes, addr: Address, *, timeout: float = 5.0) -> QuicPath:
        """QUIC client towards ``peer`` at ``addr`` (a proven punch path)."""
        addr = (addr[0], addr[1])
        old = self._paths.get(addr)
        if old is not None:
            old.close("replaced")
        conn = QuicConnection(configuration=self._config(True))
        path = QuicPath(self, peer, addr, conn, client=True)
        self._paths[addr] = path
        conn.connect(addr, self.loop.time())
        path._pump()
        try:
            await asyncio.wait_for(asyncio.shield(path.connected), timeout)
        except asyncio.TimeoutError:
            path.close("handshake timeout")
            raise TransportError("QUIC handshake timed out") from None
        return path

    async def accept(self, peer: bytes, *, timeout: float = 5.0) -> QuicPath:
        """QUIC server: the next connection from an address ``peer`` punched us from."""
        if peer in self._accepting and not self._accepting[peer].done():
            raise UsageError("already accepting this peer")
        fut: asyncio.Future[QuicPath] = self.loop.create_future()
        self._accepting[peer] = fut
        try:
            path = await asyncio.wait_for(asyncio.shield(fut), timeout)
            await asyncio.wait_for(asyncio.shield(path.connected), timeout)
        except asyncio.TimeoutError:
            if fut.done() and not fut.cancelled() and fut.exception() is None:
                fut.result().close("handshake timeout")
            raise TransportError("no QUIC connection from the peer in time") from None
        finally:
            if self._accepting.get(peer) is fut:
                del self._accepting[peer]
            if not fut.done():
                fut.cancel()
        return path
