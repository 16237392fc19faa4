"""WebSocket relay server, its multi-worker node, and the client (the relay's only I/O).

One :class:`RelayServer` per worker process feeds each binary WebSocket message to its
:class:`~aura_core.relay.RelayCore` synchronously (no per-message future or task).  After
AUTH the relay parses a connection's frames itself (:class:`_RelayConnection`: complete,
unfragmented, masked binary frames; whole pings/pongs go to websockets, anything else hands
the stream back to websockets for good), since websockets' generator parser cost a third of
a forward.  Back-pressure is per message (a sender whose destination queue is half full
stops being read, the unparsed rest of its read held, until that queue drains, or
``backpressure_wait`` passes and further frames become counted drops).  Frames queued by a
read are written at the end of that read (one socket write per destination per read, no
task switch); when a socket is full, the connection's writer task waits for the drain, and a
reader that does not take a write within ``write_timeout`` is disconnected instead of
growing memory.

Multi-core (:func:`run_node`): the parent process reserves the port, creates a full mesh of
Unix stream socketpairs between the workers plus one control socketpair per worker, and
forks one worker per core; every worker binds the same port with SO_REUSEPORT (the kernel
spreads connections).  Workers tell each other which authorities they hold (JOIN/LEAVE, newest
by monotonic time wins), forward frames for authorities held elsewhere over the mesh (the
budget is charged once, on the sender's worker), and send receipt windows to the worker that
owns the (ctx, dst) chain (``chain_owner``) so each chain has one signer.  The parent serves
the Prometheus endpoint by asking every worker for its counters over the control pipe.

The mesh is built to cost little per frame, since a frame between workers costs both
processes: the core routes a frame for a remote authority into ``remote_out``; after each
client read (not per message) those frames become M_FWD records, ``u32 len || u8 3 || dst(16)
|| f64 sampled read time (0: none) || DELIVER frame``, queued per link and written once per
event-loop iteration (one syscall for everything that iteration routed; SO_SNDBUF asked at
4 MiB so it rarely splits).  The receiving worker parses M_FWD records inline, without
re-checking what the sender's worker authenticated and charged: it only queues each frame for
its destination (bounded, counted drops) and feeds its receipt window.  Records of one link
keep their order, so frames of one (source, destination) stay ordered and are delivered once.
Control records (JOIN, LEAVE, SIGN, RECEIPT, DRAINED) use the same framing; frames routed
before a JOIN or SIGN are flushed before it.  A worker that falls behind holds its feeders
back: past 256 KiB in asyncio's buffer the link stops reading the clients whose frames it
carries (TCP pushes back on them) until it drains, further writes wait in a backlog of whole
chunks, and past 8 MiB frames become counted ``mesh_full`` drops.  The alternative design,
handing a connection over to its peers' worker (SCM_RIGHTS), would save the crossing for
stable pairs only and has to move the connection's budget, bucket and queue: not done.  Measured (``python -m aura_core.benchsuite.relay
scaling``): relay CPU per frame with 2 workers and about half the frames crossing the mesh is
within ~1.1x of one worker's, so capacity grows with cores.

Shutdown (SIGTERM/SIGINT): stop accepting and stop reading (transports paused: everything
already read is still processed), tell the other workers DRAINED after the last mesh frame,
wait for theirs, flush receipt windows, write every queued frame, then close with 1001.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import gc
import itertools
import json
import logging
import os
import signal
import socket
import struct
import sys
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed, InvalidHandshake
from websockets.frames import Frame, Opcode, apply_mask
from websockets.protocol import State
from websockets.streams import StreamReader

from ..errors import ProtocolError, TransportError
from ..hashing import Hash32
from ..ids import AuthorityId, ContextId
from ..keys import IdentityKey
from ..relay import (
    MsgType, ReceiptSigner, ReceiptWindows, RelayCore, WindowClose, chain_owner,
    decode_deliver, decode_welcome, encode_auth, encode_receipt, encode_send, parse_challenge,
)

__all__ = ["RelayServer", "RelayClient", "LatencyHistogram", "serve_relay", "format_metrics",
           "run_node", "NodeSettings"]

log = logging.getLogger("aura_core.relay")
_clock = time.monotonic


def _log(event: str, level: int = logging.INFO, **fields: object) -> None:
    """One structured log line: a JSON object with a wall-clock ``ts`` and an ``event`` name."""
    if log.isEnabledFor(level):
        log.log(level, json.dumps({"ts": round(time.time(), 3), "event": event, **fields}))


# -- latency histogram ---------------------------------------------------------------------------

BUCKETS = (0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
           0.25, 1.0)


class LatencyHistogram:
    """Cumulative-bucket histogram (Prometheus semantics) of sampled forwarding latencies."""

    def __init__(self) -> None:
        self.counts = [0] * (len(BUCKETS) + 1)
        self.sum = 0.0

    def observe(self, seconds: float) -> None:
        i = 0
        for i, bound in enumerate(BUCKETS):  # noqa: B007 - 13 buckets, sampled frames only
            if seconds <= bound:
                break
        else:
            i = len(BUCKETS)
        self.counts[i] += 1
        self.sum += seconds

    def as_dict(self) -> dict[str, Any]:
        return {"counts": list(self.counts), "sum": self.sum}

    @staticmethod
    def quantile(counts: Sequence[int], q: float) -> float:
        """Upper bucket bound holding quantile ``q`` (inf past the last bucket)."""
        total = sum(counts)
        if not total:
            return 0.0
        acc = 0
        for i, c in enumerate(counts):
            acc += c
            if acc >= q * total:
                return BUCKETS[i] if i < len(BUCKETS) else float("inf")
        return float("inf")


def format_metrics(stats: Iterable[dict[str, Any]]) -> str:
    """Prometheus text exposition of one or more workers' :meth:`RelayServer.stats`."""
    total: dict[str, int] = {}
    counts = [0] * (len(BUCKETS) + 1)
    lsum = 0.0
    n = 0
    for s in stats:
        n += 1
        for k, v in s["metrics"].items():
            total[k] = total.get(k, 0) + v
        for k in ("queue_depth", "queued_bytes"):
            total[k] = total.get(k, 0) + s[k]
        counts = [a + b for a, b in zip(counts, s["latency"]["counts"])]
        lsum += s["latency"]["sum"]
    out = ["# HELP aura_relay_workers Worker processes answering.", "# TYPE aura_relay_workers gauge",
           f"aura_relay_workers {n}"]

    def metric(name: str, kind: str, help_: str, value: object, labels: str = "") -> None:
        out.extend((f"# HELP {name} {help_}", f"# TYPE {name} {kind}", f"{name}{labels} {value}"))

    metric("aura_relay_connections", "gauge", "Open WebSocket connections.", total.get("connections", 0))
    metric("aura_relay_authenticated", "gauge", "Authenticated clients.", total.get("authenticated", 0))
    metric("aura_relay_auth_failures_total", "counter", "Refused AUTH attempts.", total.get("auth_failures", 0))
    metric("aura_relay_auth_rate_limited_total", "counter", "AUTH attempts refused unverified (flood).",
           total.get("auth_rate_limited", 0))
    metric("aura_relay_delivered_remote_total", "counter", "Frames delivered for another worker.",
           total.get("delivered_remote", 0))
    metric("aura_relay_forwards_total", "counter", "Frames charged and forwarded.", total.get("forwarded", 0))
    metric("aura_relay_forwarded_bytes_total", "counter", "Payload bytes forwarded.",
           total.get("forwarded_bytes", 0))
    metric("aura_relay_budget_denials_total", "counter", "Frames refused by the flow budget.",
           total.get("drop_budget", 0))
    metric("aura_relay_receipts_total", "counter", "Receipts signed.", total.get("receipts_issued", 0))
    metric("aura_relay_queue_depth", "gauge", "Frames queued for clients.", total.get("queue_depth", 0))
    metric("aura_relay_queued_bytes", "gauge", "Bytes queued for clients.", total.get("queued_bytes", 0))
    out += ["# HELP aura_relay_drops_total Frames dropped, by reason.", "# TYPE aura_relay_drops_total counter"]
    for k in sorted(total):
        if k.startswith("drop_"):
            out.append(f'aura_relay_drops_total{{reason="{k[5:]}"}} {total[k]}')
    name = "aura_relay_forward_latency_seconds"
    out += [f"# HELP {name} Read-to-written latency of sampled frames.", f"# TYPE {name} histogram"]
    acc = 0
    for bound, c in zip(BUCKETS, counts):
        acc += c
        out.append(f'{name}_bucket{{le="{bound}"}} {acc}')
    acc += counts[-1]
    out += [f'{name}_bucket{{le="+Inf"}} {acc}', f"{name}_sum {lsum:.6f}", f"{name}_count {acc}"]
    return "\n".join(out) + "\n"


async def _serve_http_text(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                           body_fn: Callable[[], Any]) -> None:
    try:
        await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        body = (await body_fn()).encode()
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\n"
                     b"Content-Length: " + str(len(body)).encode() + b"\r\nConnection: close\r\n\r\n" + body)
        await writer.drain()
    except (asyncio.TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
        pass
    finally:
        writer.close()


# -- worker mesh ---------------------------------------------------------------------------------

M_JOIN, M_LEAVE, M_FWD, M_SIGN, M_RECEIPT, M_DRAINED = 1, 2, 3, 4, 5, 6
_HEAD = struct.Struct(">IB")            # u32 length (of type + body) || u8 type
_FWD = struct.Struct(">IB16sd")         # ... M_FWD || dst || f64 sampled read time (0: none)
_SIGN = struct.Struct(">16s16sQQQ32s")
MESH_PAUSE = 1 << 18  # bytes in asyncio's buffer toward one worker before its feeders pause
MESH_SOCKBUF = 4 << 20  # SO_SNDBUF asked for on each mesh socket
MESH_READ = 1 << 20  # bytes read from a mesh link per readiness
MESH_HIGH_WATER = 8 << 20  # bytes buffered toward one worker before frames are dropped (counted)


class _MeshLink(asyncio.Protocol):
    """One Unix stream to another worker: u32 length || u8 type || body, batched writes.

    Everything queued during one event-loop iteration leaves in one write.  M_FWD records
    are parsed inline by :meth:`data_received` (no per-frame dispatch): they are the traffic.
    While the other worker is behind, whole writes wait here in a backlog of chunks instead
    of in asyncio's buffer (a bytearray that moves its whole content on every partial send:
    megabytes there cost quadratic CPU exactly when a worker is overloaded).
    """

    def __init__(self, server: RelayServer, peer: int) -> None:
        self.server = server
        self.peer = peer
        self.transport: asyncio.Transport | None = None
        self._buf = bytearray()
        self._out: list[bytes] = []
        self._scheduled = False
        self._backlog: deque[bytes] = deque()
        self._backlog_bytes = 0
        self._writable = True  # asyncio's buffer is below MESH_PAUSE
        self.drained = asyncio.Event()
        self.lost = asyncio.Event()
        self.paused = False  # behind: the clients feeding this link stop being read
        self.blocked: list[_Link] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        transport.set_write_buffer_limits(high=MESH_PAUSE)
        # one read per loop iteration carries the frames of many clients: read more than
        # asyncio's 256 KiB (selector transports read ``max_size`` per readiness; much more
        # costs page faults on every read, since glibc then maps each buffer afresh)
        if hasattr(transport, "max_size"):
            transport.max_size = MESH_READ  # type: ignore[attr-defined]

    # asyncio flow control: the other worker is not keeping up -> stop reading the clients
    # that feed this link (TCP pushes back on them) until it drains
    def pause_writing(self) -> None:
        self._writable = False
        self.paused = True

    def resume_writing(self) -> None:
        self._writable = True
        t = self.transport
        while self._backlog and self._writable and t is not None and not t.is_closing():
            chunk = self._backlog.popleft()
            self._backlog_bytes -= len(chunk)
            t.write(chunk)  # may pause writing again at once
        if self._writable or self._lost():
            self._backlog.clear()
            self._backlog_bytes = 0
            self.paused = False
            blocked, self.blocked = self.blocked, []
            for link in blocked:
                self.server._resume(link)

    def _lost(self) -> bool:
        return self.transport is None or self.transport.is_closing()

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost.set()
        self.drained.set()
        self.resume_writing()

    def send(self, kind: int, body: bytes) -> bool:
        """Queue one control message (JOIN, LEAVE, SIGN, RECEIPT, DRAINED)."""
        return self.send_parts((_HEAD.pack(len(body) + 1, kind) + body,), control=True)

    def send_parts(self, parts: Iterable[bytes], *, control: bool = False) -> bool:
        """Queue ready-framed records; frames (not control) are refused past the high water."""
        t = self.transport
        if t is None or t.is_closing():
            return False
        if not control and t.get_write_buffer_size() + self._backlog_bytes > MESH_HIGH_WATER:
            return False
        self._out.extend(parts)
        if not self._scheduled:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self.flush)
        return True

    def flush(self) -> None:
        self._scheduled = False
        if self._out and not self._lost():
            chunk = b"".join(self._out)
            if self._writable and not self._backlog:
                assert self.transport is not None
                self.transport.write(chunk)
            else:
                self._backlog.append(chunk)
                self._backlog_bytes += len(chunk)
        self._out.clear()

    def data_received(self, data: bytes) -> None:
        if self._buf:  # the tail of the last read was a partial record
            self._buf += data
            data = bytes(self._buf)
            self._buf.clear()
        server = self.server
        deliver = server.core.deliver_remote
        now = _clock()
        head, fwd = _HEAD.unpack_from, _FWD.unpack_from
        off, n = 0, len(data)
        while n - off >= 5:
            size, kind = head(data, off)
            end = off + 4 + size
            if end > n:
                break
            if kind == M_FWD and size > 25:
                # the sender's worker authenticated, checked and charged this frame: queue it
                dst, t0 = fwd(data, off)[2:]
                conn_id = deliver(dst, data[off + 29:end], now)
                if conn_id is not None:
                    server._pending_wake.add(conn_id)
                    if t0:
                        server._sample(conn_id, t0)
            elif size:
                server._mesh_message(self.peer, kind, data[off + 5:end])
            else:  # an empty record cannot come from a worker: the stream is corrupt
                raise ProtocolError("corrupt worker mesh stream")
            off = end
        if off < n:
            self._buf += memoryview(data)[off:]
        windows = server.windows
        if windows is not None and windows.ready:  # a window reached max_cost
            server._defer_closes(windows.take_ready())
        server._flush_wakes()


# -- the server ----------------------------------------------------------------------------------

class _RelayConnection(ServerConnection):
    """A websockets server connection that hands binary messages straight to the relay.

    ``relay_sink`` gets each complete binary message (None for a text or fragmented message);
    pings, pongs and close frames keep websockets' handling.  Once the relay takes a connection
    over (:meth:`relay_start`, websockets' parser idle between frames), reads go through a
    fast path: complete unfragmented masked binary frames within ``max_size`` are unmasked and
    handed to the sink here, one loop over the read (websockets' generator parser costs about
    a third of a forward); a complete ping or pong is fed to websockets alone, so its parser
    only ever sees whole frames and stays in step; anything else (close, text, fragments,
    oversize, unmasked) turns the fast path off for good and websockets gets the rest of the
    stream, exactly as without it.
    Back-pressure is per message: :meth:`relay_pause` stops reading the socket AND holds what
    the last read still carried (parsed frames, or the unparsed bytes) until :meth:`relay_resume`.
    """

    relay_sink: Callable[[bytes | None], None] | None = None
    relay_after: Callable[[], None] | None = None  # after each read's messages: flush the mesh
    relay_hold: deque[Frame] | None = None
    relay_fast = False
    relay_max = 0
    relay_buf: bytearray

    def relay_start(self, sink: Callable[[bytes | None], None], after: Callable[[], None],
                    max_size: int) -> None:
        """Route binary messages to ``sink``; take the fast path if websockets' parser is idle
        between frames (nothing buffered, suspended in its end-of-stream check)."""
        self.relay_sink, self.relay_after, self.relay_max = sink, after, max_size
        self.relay_buf = bytearray()
        protocol = self.protocol
        gen = protocol.parser  # follow the parser's yield-from chain to where it waits
        for _ in range(8):
            inner = getattr(gen, "gi_yieldfrom", None)
            if inner is None:
                break
            gen = inner
        self.relay_fast = (protocol.state is State.OPEN and not protocol.reader.buffer
                           and getattr(gen, "gi_code", None) is _AT_EOF)

    def relay_stop(self) -> None:
        self.relay_sink = self.relay_after = None
        if self.relay_fast:  # websockets reads the rest (a close handshake, say)
            self.relay_fast = False
            rest, self.relay_buf = bytes(self.relay_buf), bytearray()
            if rest and self.protocol.state is State.OPEN:
                super().data_received(rest)

    def data_received(self, data: bytes) -> None:
        if self.relay_fast:
            self._fast_received(data)
        else:
            super().data_received(data)
        after = self.relay_after
        if after is not None:
            after()

    def _fast_received(self, data: bytes) -> None:
        buf = self.relay_buf
        if buf:
            buf += data
            data = bytes(buf)
            buf.clear()
        sink = self.relay_sink
        limit = self.relay_max
        off, n = 0, len(data)
        while n - off >= 6:
            b0, b1 = data[off], data[off + 1]
            size = b1 & 0x7F
            pos = off + 2
            if size == 126:
                if n - off < 8:
                    break
                size = _U16.unpack_from(data, pos)[0]
                pos += 2
            elif size == 127:
                if n - off < 14:
                    break
                size = _U64.unpack_from(data, pos)[0]
                pos += 8
            end = pos + 4 + size
            if b0 == 0x82 and b1 & 0x80 and size <= limit and sink is not None:
                if end > n:
                    break
                mask = data[pos:pos + 4]
                payload = data[pos + 4:end]
                off = end
                sink(payload if mask == _NO_MASK else apply_mask(payload, mask))
                if self.relay_hold is not None or not self.relay_fast:  # paused, or let go
                    break
            elif (b0 == 0x89 or b0 == 0x8A) and size <= 125 and b1 & 0x80:
                if end > n:
                    break
                super().data_received(data[off:end])  # a whole ping/pong: websockets answers
                off = end
            else:
                self.relay_fast = False
                break
        if off < n:
            if self.relay_fast:
                buf += memoryview(data)[off:]
            else:
                super().data_received(data[off:])

    def process_event(self, event: Any) -> None:
        sink = self.relay_sink
        if sink is not None and isinstance(event, Frame) and event.opcode in _DATA:
            if self.relay_hold is not None:
                self.relay_hold.append(event)
                return
            sink(event.data if event.opcode is Opcode.BINARY and event.fin else None)  # type: ignore[arg-type]
            return
        super().process_event(event)

    def relay_pause(self) -> None:
        if self.relay_hold is None:
            self.relay_hold = deque()
            self.transport.pause_reading()

    def relay_resume(self, *, read: bool = True) -> None:
        held = self.relay_hold
        if held is None:
            return
        self.relay_hold = None
        after = self.relay_after
        while held:
            self.process_event(held.popleft())
            if self.relay_hold is not None:  # paused again while replaying
                self.relay_hold.extend(held)
                break
        else:
            if self.relay_fast and self.relay_buf:  # bytes the fast path held back
                self._fast_received(b"")
        if after is not None:
            after()
        if read and self.relay_hold is None:
            self.transport.resume_reading()


_AT_EOF = StreamReader.at_eof.__code__
_NO_MASK = bytes(4)
_U16 = struct.Struct(">H")
_U64 = struct.Struct(">Q")
_DATA = frozenset({Opcode.BINARY, Opcode.TEXT, Opcode.CONT})


@dataclass(eq=False)
class _Link:
    ws: ServerConnection
    wake: asyncio.Event
    writer: asyncio.Task[None] | None = None
    popped: int = 0
    samples: deque[tuple[int, float]] = field(default_factory=deque)
    paused: bool = False                                  # reading paused (back-pressure)
    writing: bool = False                                 # the writer task is mid-batch
    blocked: list[_Link] = field(default_factory=list)    # senders waiting for this reader


class RelayServer:
    """Serves a :class:`RelayCore` on a WebSocket port (and, optionally, metrics over HTTP).

    ``windows`` + ``signer`` turn on receipts (one per (context, destination) window, sent to
    the destination as a RECEIPT message after the frames it covers).  ``mesh`` (socketpairs
    by peer worker index) joins this server to the other workers of a node.
    """

    def __init__(self, core: RelayCore, host: str = "127.0.0.1", port: int = 0, *,
                 write_timeout: float = 5.0, reuse_port: bool = False,
                 metrics_port: int | None = None, backpressure_wait: float = 0.05,
                 windows: ReceiptWindows | None = None, signer: ReceiptSigner | None = None,
                 worker: int = 0, workers: int = 1, mesh: dict[int, socket.socket] | None = None,
                 sample_every: int = 16, drain_timeout: float = 10.0,
                 epoch_seconds: float = 0.0) -> None:
        if (windows is None) != (signer is None):
            raise ValueError("receipts need both windows and signer")
        self.core = core
        self.host = host
        self.port = port
        self.write_timeout = write_timeout
        self.backpressure_wait = backpressure_wait
        self.drain_timeout = drain_timeout
        # epochs by wall clock (every worker of a node agrees without talking): 0 = fixed
        self.epoch_seconds = epoch_seconds
        self._high_water = max(1, core.config.queue_limit // 2)
        self.reuse_port = reuse_port
        self.metrics_port = metrics_port
        self.windows = windows
        self.signer = signer
        if windows is not None:
            core.observer = windows
        self.worker = worker
        self.workers = workers
        self._mesh_socks = mesh or {}
        self.mesh: dict[int, _MeshLink] = {}
        self.latency = LatencyHistogram()
        self.sample_every = max(1, sample_every)
        self._sample_tick = 0
        self._ids = itertools.count(1)
        self._links: dict[int, _Link] = {}
        self._server: Server | None = None
        self._metrics: asyncio.Server | None = None
        self._closing = False
        self._tasks: list[asyncio.Task[None]] = []
        self._pending_wake: set[int] = set()
        self._to_sign: collections.deque[WindowClose] = collections.deque()  # full windows
        self._sign_scheduled = False
        self._joined: dict[bytes, int] = {}  # authority -> monotonic ns of its newest connection

    async def start(self) -> RelayServer:
        loop = asyncio.get_running_loop()
        for peer, sock in sorted(self._mesh_socks.items()):
            sock.setblocking(False)
            # a deep buffer: one loop iteration's frames fit in one write (a Unix stream
            # counts its bytes against the sender's buffer; the kernel caps it at wmem_max)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, MESH_SOCKBUF)
            link = _MeshLink(self, peer)
            await loop.create_connection(lambda link=link: link, sock=sock)  # type: ignore[misc]
            self.mesh[peer] = link
        self._server = await serve(
            self._handle, self.host, self.port, compression=None, max_size=self.core.config.max_frame,
            max_queue=64, reuse_port=self.reuse_port, ping_interval=20, ping_timeout=20,
            create_connection=_RelayConnection)
        sock = next(iter(self._server.sockets))
        self.port = sock.getsockname()[1]
        if self.metrics_port is not None:
            self._metrics = await asyncio.start_server(
                lambda r, w: _serve_http_text(r, w, self._metrics_body), self.host, self.metrics_port)
            self.metrics_port = next(iter(self._metrics.sockets)).getsockname()[1]
        self._tasks.append(asyncio.create_task(self._reap()))
        if self.epoch_seconds > 0:
            self._rotate(self._wall_epoch())
            self._tasks.append(asyncio.create_task(self._epoch_timer()))
        if self.windows is not None:
            self._tasks.append(asyncio.create_task(self._receipt_timer()))
        _log("relay_listening", worker=self.worker, host=self.host, port=self.port,
             metrics_port=self.metrics_port)
        return self

    @property
    def url(self) -> str:
        return f"ws://{self.host}:{self.port}"

    # -- shutdown ----------------------------------------------------------------------------

    async def close(self) -> None:
        """Graceful shutdown: stop reading, deliver every frame already read, then close."""
        if self._closing:
            return
        self._closing = True
        if self._server:
            self._server.close(close_connections=False)  # stop accepting
        for link in list(self._links.values()):
            with contextlib.suppress(Exception):
                link.ws.transport.pause_reading()
        for link in list(self._links.values()):  # messages parsed but held back: process them
            ws = link.ws
            if isinstance(ws, _RelayConnection) and ws.relay_hold is not None:
                link.paused = False
                ws.relay_resume(read=False)
        # let handlers finish messages already read off the sockets (they are acknowledged)
        for _ in range(3):
            await asyncio.sleep(0.01)
        self._flush_remote()
        for m in self.mesh.values():
            m.send(M_DRAINED, b"")
            m.flush()
        if self.mesh:
            waits = [asyncio.create_task(m.drained.wait()) for m in self.mesh.values()]
            await asyncio.wait(waits, timeout=self.drain_timeout)
            for w in waits:
                w.cancel()
        self._close_windows(self.windows.flush() if self.windows else [])
        for m in self.mesh.values():
            m.flush()
        await asyncio.sleep(0)  # receipts signed by another worker may still come back
        deadline = _clock() + self.drain_timeout
        for link in self._links.values():
            link.wake.set()
        while self.core.total_queued() and _clock() < deadline:
            await asyncio.sleep(0.005)
        lost = self.core.total_queued()
        for t in self._tasks:
            t.cancel()
        links = list(self._links.values())
        for link in links:
            if link.writer is not None:
                link.writer.cancel()
        closing = [asyncio.ensure_future(link.ws.close(1001, "relay shutting down")) for link in links]
        if closing:
            await asyncio.wait(closing, timeout=1.0)
        for link in links:  # peers that did not answer the close handshake in time
            with contextlib.suppress(Exception):
                link.ws.transport.abort()
        if self._server:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2.0)
        if self._metrics:
            self._metrics.close()
            await self._metrics.wait_closed()
        for m in self.mesh.values():
            if m.transport is not None:
                m.transport.close()
        _log("relay_stopped", worker=self.worker, frames_lost_at_shutdown=lost,
             **self.core.metrics.as_dict())

    # -- connections -------------------------------------------------------------------------

    async def _handle(self, ws: ServerConnection) -> None:
        conn_id = next(self._ids)
        link = _Link(ws, asyncio.Event())
        self._links[conn_id] = link
        core = self.core
        try:
            first = core.connect(conn_id, _clock())
            if first[:1] != MsgType.ERROR.value and not self._closing:
                # from here on every binary message goes to _on_message, synchronously, as
                # websockets parses it (no per-message future, no async iteration)
                assert isinstance(ws, _RelayConnection)
                ws.relay_start(functools.partial(self._on_message, conn_id, link),
                               functools.partial(self._after_read, link), core.config.max_frame)
                link.writer = asyncio.create_task(self._write_loop(conn_id, link))
            await ws.send(first)
            if link.writer is None:
                return
            await ws.wait_closed()
        except ConnectionClosed:
            pass
        finally:
            if isinstance(ws, _RelayConnection):
                ws.relay_stop()
            if link.writer is not None and not self._closing:
                link.writer.cancel()
            self._release_blocked(link)
            if not self._closing:
                self._links.pop(conn_id, None)
                authority = core.authority_of(conn_id)
                core.disconnect(conn_id)
                if authority is not None and core.conn_of(bytes(authority)) is None:
                    for m in self.mesh.values():
                        m.send(M_LEAVE, bytes(authority))

    def _on_message(self, conn_id: int, link: _Link, message: bytes | None) -> None:
        core = self.core
        if message is None:  # text or fragmented: not our protocol
            core.metrics.drop_malformed += 1
            return
        now = _clock()
        wake, reply = core.receive(conn_id, message, now)
        if wake:
            other = wake[0]
            target = self._links.get(other)
            if target is not None:
                self._sample_tick += 1
                if self._sample_tick >= self.sample_every:
                    self._sample_tick = 0
                    target.samples.append((core.enqueued_count(other), now))
                self._pending_wake.add(other)  # written at the end of this read
                if (core.last_depth >= self._high_water and not link.paused
                        and target is not link and not self._closing):
                    # Back-pressure: stop reading this sender (TCP pushes back) until the
                    # receiver's writer catches up; a receiver that stays stuck past
                    # backpressure_wait gets counted drops instead of stalling everyone.
                    link.paused = True
                    assert isinstance(link.ws, _RelayConnection)
                    link.ws.relay_pause()
                    target.blocked.append(link)
                    asyncio.get_running_loop().call_later(self.backpressure_wait, self._resume, link)
        windows = self.windows
        if windows is not None and windows.ready:  # a window reached max_cost
            self._defer_closes(windows.take_ready())
        if reply is not None:
            ws = link.ws
            ws.protocol.send_binary(reply)
            ws.send_data()  # websockets writes before dispatching events: flush it ourselves
            if reply[:1] == MsgType.ERROR.value:
                # debug: a flood of bad clients must not become a flood of log lines
                _log("auth_refused", logging.DEBUG, worker=self.worker, conn=conn_id,
                     reason=core.last_auth_failure)
                assert isinstance(ws, _RelayConnection)
                ws.relay_stop()
                asyncio.ensure_future(ws.close(1008, "authorization failed"))
                return
            self._joined_here(conn_id)
            for old in core.superseded():
                stale = self._links.get(old)
                core.disconnect(old)
                if stale is not None:
                    asyncio.ensure_future(stale.ws.close(1008, "superseded"))

    def _resume(self, link: _Link) -> None:
        if link.paused and not self._closing:
            link.paused = False
            assert isinstance(link.ws, _RelayConnection)
            link.ws.relay_resume()
            if link.paused or link.ws.relay_hold is not None:
                return
            self._flush_wakes()

    def _release_blocked(self, target: _Link) -> None:
        blocked, target.blocked = target.blocked, []
        for link in blocked:
            self._resume(link)

    def _joined_here(self, conn_id: int) -> None:
        authority = self.core.authority_of(conn_id)
        if authority is None or not self.mesh:
            return
        raw = bytes(authority)
        self._flush_remote()  # frames routed before the JOIN leave before it
        stamp = time.monotonic_ns()  # CLOCK_MONOTONIC is system-wide: comparable across workers
        self._joined[raw] = stamp
        ctxs = sorted(self.core.contexts_of(conn_id))
        body = raw + stamp.to_bytes(8, "big") + bytes([len(ctxs)]) + b"".join(ctxs)
        for m in self.mesh.values():
            m.send(M_JOIN, body)

    def _flush_remote(self, sender: _Link | None = None) -> None:
        """Frames the core routed to other workers: framed as M_FWD records, one batch per
        worker link (the link writes once per loop iteration).  Runs after each read."""
        out = self.core.remote_out
        if not out:
            return
        batches: dict[int, list[bytes]] = {}
        tick, every = self._sample_tick, self.sample_every
        pack = _FWD.pack
        for worker, dst, frame in out:
            parts = batches.get(worker)
            if parts is None:
                parts = batches[worker] = []
            tick += 1
            if tick >= every:
                tick = 0
                parts += (pack(len(frame) + 25, M_FWD, dst, _clock()), frame)
            else:
                parts += (pack(len(frame) + 25, M_FWD, dst, 0.0), frame)
        self._sample_tick = tick
        out.clear()
        for worker, parts in batches.items():
            link = self.mesh.get(worker)
            if link is None or not link.send_parts(parts):
                self.core.metrics.drop_mesh_full += len(parts) // 2
            elif link.paused and sender is not None and not sender.paused and not self._closing:
                # the other worker is behind: this sender waits (TCP pushes back on it) until
                # the link drains -- no timer here, unlike a slow client: resuming early only
                # grows the buffer toward the high water and turns the overload into drops
                sender.paused = True
                assert isinstance(sender.ws, _RelayConnection)
                sender.ws.relay_pause()
                link.blocked.append(sender)

    def _after_read(self, sender: _Link) -> None:
        """End of one read's messages: frames for other workers leave, queued ones are written."""
        if self.core.remote_out:
            self._flush_remote(sender)
        if self._pending_wake:
            self._flush_wakes()

    def _flush_wakes(self) -> None:
        pending = self._pending_wake
        self._pending_wake = set()  # (writing may resume senders whose frames wake others)
        for conn_id in pending:
            link = self._links.get(conn_id)
            if link is not None:
                self._write_now(conn_id, link)

    def _sample(self, conn_id: int, t0: float) -> None:
        """Time the frame just queued for ``conn_id`` (read at ``t0``) until it is written."""
        link = self._links.get(conn_id)
        if link is not None:
            link.samples.append((self.core.enqueued_count(conn_id), t0))

    def _mesh_message(self, peer: int, kind: int, body: bytes) -> None:
        """A control message from another worker (M_FWD records are handled inline)."""
        core = self.core
        if kind == M_JOIN:
            authority, stamp, n = body[:16], int.from_bytes(body[16:24], "big"), body[24]
            ctxs = [body[25 + 16 * i:41 + 16 * i] for i in range(n)]
            if stamp < self._joined.get(authority, -1):
                return  # an older connection than one we hold or know of
            self._joined[authority] = stamp
            stale = core.set_remote(authority, peer, ctxs)
            if stale is not None:
                link = self._links.get(stale)
                core.disconnect(stale)
                if link is not None:
                    asyncio.ensure_future(link.ws.close(1008, "superseded"))
        elif kind == M_LEAVE:
            core.drop_remote(body, peer)
        elif kind == M_SIGN:
            ctx, dst, epoch, cost, count, commit = _SIGN.unpack(body)
            self._sign_and_route(WindowClose(ctx, dst, epoch, cost, count, Hash32(commit)), reply_to=peer)
        elif kind == M_RECEIPT:
            self._deliver_receipt(body[:16], body[16:])
        elif kind == M_DRAINED:
            self.mesh[peer].drained.set()

    # -- epochs ------------------------------------------------------------------------------

    def _wall_epoch(self) -> int:
        return int(time.time() // self.epoch_seconds)

    def _rotate(self, epoch: int) -> None:
        if not self.core.rotate_epoch(epoch):
            return
        if self.windows is not None:  # windows of the old epoch close (and get signed) under it
            self._close_windows(self.windows.rotate(epoch))
        _log("epoch", worker=self.worker, epoch=epoch)

    async def _epoch_timer(self) -> None:
        while True:
            nxt = (self._wall_epoch() + 1) * self.epoch_seconds
            await asyncio.sleep(max(0.001, nxt - time.time()))
            self._rotate(self._wall_epoch())

    # -- receipts ----------------------------------------------------------------------------

    async def _receipt_timer(self) -> None:
        assert self.windows is not None
        period = min(0.25, self.windows.window / 4)
        while True:
            await asyncio.sleep(period)
            now = _clock()
            closes = self.windows.poll(now, max_ids=1024)
            while closes:  # in slices, yielding between them: no long pause for the frames
                self._close_windows(closes)
                await asyncio.sleep(0)
                closes = self.windows.poll(now, max_ids=1024)

    def _defer_closes(self, closes: list[WindowClose]) -> None:
        """Windows that reached max_cost: signed one per loop iteration, not all in this one.

        Under even load over many destinations the windows fill in lockstep (8 pairs at
        75k frames/s: 8 windows within one read every ~110 ms); signing them together held
        that read's frames ~0.7 ms and stacked up into the half-load p99 tail.
        """
        self._to_sign.extend(closes)
        if not self._sign_scheduled:
            self._sign_scheduled = True
            asyncio.get_running_loop().call_soon(self._sign_next)

    def _sign_next(self) -> None:
        self._sign_scheduled = False
        if self._to_sign:
            self._route_closes([self._to_sign.popleft()])
        if self._to_sign:
            self._sign_scheduled = True
            asyncio.get_running_loop().call_soon(self._sign_next)

    def _close_windows(self, closes: list[WindowClose]) -> None:
        """Sign now every pending full window, then ``closes`` (chains stay in window order)."""
        if self._to_sign:
            closes = [*self._to_sign, *closes]
            self._to_sign.clear()
        self._route_closes(closes)

    def _route_closes(self, closes: list[WindowClose]) -> None:
        """Sign ``closes`` here, or send them to their chain's owner worker."""
        self._flush_remote()  # frames routed before a SIGN leave before it
        for close in closes:
            owner = chain_owner(close.dst, self.workers)
            if owner == self.worker or owner not in self.mesh:
                self._sign_and_route(close, reply_to=None)
            else:
                self.mesh[owner].send(M_SIGN, _SIGN.pack(close.ctx, close.dst, close.epoch, close.cost,
                                                         close.count, close.commit.digest))
        self._flush_wakes()

    def _sign_and_route(self, close: WindowClose, reply_to: int | None) -> None:
        assert self.signer is not None
        try:
            packed = self.signer.sign(close)
        except Exception as exc:  # a stale epoch or exhausted chain: logged, never crashes the relay
            _log("receipt_error", error=str(exc))
            return
        self.core.metrics.receipts_issued += 1
        if reply_to is None:
            self._deliver_receipt(close.dst, packed)
        else:
            self.mesh[reply_to].send(M_RECEIPT, close.dst + packed)

    def _deliver_receipt(self, dst: bytes, packed: bytes) -> None:
        conn_id = self.core.conn_of(dst)
        if conn_id is not None and self.core.enqueue_control(conn_id, encode_receipt(packed)):
            self._pending_wake.add(conn_id)

    # -- writing -----------------------------------------------------------------------------

    def _write_some(self, conn_id: int, link: _Link) -> int:
        """Pop one batch for a connection and write it (one transport write); frames written."""
        frames = self.core.pop_outgoing(conn_id, 256)
        if not frames:
            return 0
        link.popped += len(frames)
        _write_frames(link.ws, frames)
        samples = link.samples
        if samples:
            now = _clock()
            while samples and samples[0][0] <= link.popped:
                self.latency.observe(now - samples.popleft()[1])
        return len(frames)

    def _write_now(self, conn_id: int, link: _Link) -> None:
        """Write a connection's queue at the end of the read that filled it (no task switch, no
        extra loop iteration); its writer task takes over once the socket is full."""
        ws = link.ws
        if link.writing or ws.paused or link.writer is None:
            link.wake.set()
            return
        try:
            while self._write_some(conn_id, link):
                if ws.paused:
                    link.wake.set()  # the writer waits for the drain, bounded by write_timeout
                    return
        except ConnectionClosed:
            link.wake.set()  # the writer finds it closed and lets go of the connection
            return
        if link.blocked:  # next iteration: resuming a sender here could recurse once per batch
            asyncio.get_running_loop().call_soon(self._release_blocked, link)

    async def _write_loop(self, conn_id: int, link: _Link) -> None:
        core, ws = self.core, link.ws
        try:
            while True:
                await link.wake.wait()
                link.wake.clear()
                link.writing = True
                while self._write_some(conn_id, link):
                    if ws.paused:  # the socket is full: wait, but not forever
                        # a reader slower than write_timeout is dropped, not buffered without bound
                        async with asyncio.timeout(self.write_timeout):
                            await ws.drain()
                link.writing = False
                if link.blocked:
                    self._release_blocked(link)
        except (ConnectionClosed, asyncio.TimeoutError):
            _log("slow_or_gone_reader", worker=self.worker, conn=conn_id)
            with contextlib.suppress(Exception):
                ws.transport.abort() if not ws.transport.is_closing() else None
            core.disconnect(conn_id)

    async def _reap(self) -> None:
        while True:
            deadline = self.core.next_deadline()
            await asyncio.sleep(1.0 if deadline is None else max(0.05, deadline - _clock()))
            for conn_id in self.core.expired(_clock()):
                link = self._links.get(conn_id)
                if link is not None:
                    asyncio.ensure_future(link.ws.close(1008, "authentication timeout"))

    # -- metrics -----------------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        return {"worker": self.worker, "metrics": self.core.metrics.as_dict(),
                "queue_depth": self.core.total_queued(), "queued_bytes": self.core.total_queued_bytes(),
                "latency": self.latency.as_dict()}

    def metrics_text(self) -> str:
        return format_metrics([self.stats()])

    async def _metrics_body(self) -> str:
        return self.metrics_text()


def _header(n: int) -> bytes:
    if n < 126:
        return bytes((0x82, n))
    if n < 65536:
        return b"\x82\x7e" + n.to_bytes(2, "big")
    return b"\x82\x7f" + n.to_bytes(8, "big")


def _write_frames(ws: ServerConnection, frames: list[bytes]) -> None:
    """One WebSocket message per frame, all written with one transport write.

    Server frames are unmasked, so they are framed here directly (RFC 6455 §5.2: FIN+binary,
    7/16/64-bit length) instead of one websockets send() per frame.
    """
    if ws.protocol.state is not State.OPEN:
        raise ConnectionClosed(None, None)
    parts = []
    for frame in frames:
        parts.append(_header(len(frame)))
        parts.append(frame)
    ws.transport.write(b"".join(parts))


async def _send_batch(ws: ClientConnection, frames: list[bytes]) -> None:
    """Client side: many messages through websockets (it masks), one transport write."""
    async with ws.send_context():
        protocol = ws.protocol
        for frame in frames:
            protocol.send_binary(frame)
        ws.transport.write(b"".join(protocol.data_to_send()))


async def serve_relay(core: RelayCore, host: str = "127.0.0.1", port: int = 0, **kw: Any) -> RelayServer:
    return await RelayServer(core, host, port, **kw).start()


# -- the multi-worker node -----------------------------------------------------------------------

@dataclass
class NodeSettings:
    """Everything a relay node needs (built by aura_core.relay_cli from a TOML file and flags)."""

    host: str = "127.0.0.1"
    port: int = 8765
    workers: int = 0                # 0: one per core
    metrics_host: str = "127.0.0.1"
    metrics_port: int | None = None
    queue_limit: int = 512
    queue_bytes: int = 1 << 21
    max_frame: int = 65535 + 33
    max_clients: int = 10_000
    rate: float = 200_000.0
    burst: float = 20_000.0
    auth_rate: float = 5_000.0
    auth_burst: float = 1_000.0
    budget: int = 1 << 40
    epoch: int = 0
    epoch_seconds: float = 0.0      # > 0: epoch = floor(unix time / epoch_seconds)
    auth_timeout: float = 10.0
    write_timeout: float = 5.0
    drain_timeout: float = 10.0
    receipt_window: float = 1.0
    receipts: bool = True
    guards: bool = True             # False: no auth check, budget or receipts (benchmarks only)
    receipts_dir: str | None = None     # append signed receipts to <dir>/worker-<n>.receipts
    identity_key: bytes | None = None   # 32-byte seed of the relay's IdentityKey
    biscuit_root: bytes | None = None   # 32-byte Biscuit root public key
    static_token: bytes | None = None   # tests only: a shared token instead of Biscuit
    static_grants: dict[bytes, list[bytes]] = field(default_factory=dict)
    uvloop: bool = False
    log_level: str = "info"


def _build_server(s: NodeSettings, worker: int, workers: int,
                  mesh: dict[int, socket.socket]) -> RelayServer:
    from ..relay import RelayConfig, biscuit_authorizer, static_authorizer

    cfg = RelayConfig(queue_limit=s.queue_limit, queue_bytes=s.queue_bytes, max_frame=s.max_frame,
                      max_clients=s.max_clients, auth_timeout=s.auth_timeout,
                      budget_per_epoch=s.budget, epoch=s.epoch, rate=s.rate, burst=s.burst,
                      auth_rate=s.auth_rate, auth_burst=s.auth_burst)
    if s.biscuit_root is not None:
        authorize = biscuit_authorizer(s.biscuit_root)
    elif s.static_token is not None:
        authorize = static_authorizer({AuthorityId(a): [ContextId(c) for c in cs]
                                       for a, cs in s.static_grants.items()}, s.static_token)
    else:
        raise TransportError("a relay needs a Biscuit root public key (or a static test token)")
    core = RelayCore(authorize, config=cfg, wall_ms=lambda now: time.time_ns() // 1_000_000,
                     guards=s.guards)
    windows = signer = None
    if s.receipts and s.guards:
        key = IdentityKey(s.identity_key) if s.identity_key else IdentityKey.generate()
        windows = ReceiptWindows(window=s.receipt_window, epoch=s.epoch)
        sink = None
        if s.receipts_dir:
            # 200-byte packed receipts back to back, one file per worker (one writer each); the
            # journal ingests them with Receipt.from_bytes(...).to_fact()
            os.makedirs(s.receipts_dir, exist_ok=True)
            out = open(os.path.join(s.receipts_dir, f"worker-{worker}.receipts"), "ab", buffering=0)
            sink = out.write
        signer = ReceiptSigner(key, sink=sink)
    return RelayServer(core, s.host, s.port, write_timeout=s.write_timeout, reuse_port=True,
                       windows=windows, signer=signer, worker=worker, workers=workers, mesh=mesh,
                       drain_timeout=s.drain_timeout, epoch_seconds=s.epoch_seconds)


def _run_loop(main: Callable[[], Any], use_uvloop: bool) -> Any:
    if use_uvloop:
        try:
            import uvloop
        except ImportError:
            _log("uvloop_missing")
        else:
            with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
                return runner.run(main())
    return asyncio.run(main())


def _worker_main(s: NodeSettings, worker: int, workers: int, mesh: dict[int, socket.socket],
                 ctrl: socket.socket) -> None:
    logging.basicConfig(level=s.log_level.upper(), format="%(message)s", stream=sys.stderr, force=True)
    logging.getLogger("websockets").setLevel(logging.WARNING)  # per-connection chatter
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent turns ^C into SIGTERM for us

    async def main() -> None:
        server = _build_server(s, worker, workers, mesh)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        await server.start()
        # everything allocated so far lives as long as the worker: keep the collector from
        # re-scanning it (fewer, shorter pauses on the forwarding path)
        gc.collect()
        gc.freeze()
        gc.set_threshold(50_000, 50, 100)  # fewer young-generation passes on the hot path
        ctrl.setblocking(False)
        reader, writer = await asyncio.open_unix_connection(sock=ctrl)
        writer.write(b"ready\n")

        async def control() -> None:
            while True:
                line = await reader.readline()
                if not line:
                    stop.set()
                    return
                if line.strip() == b"stats":
                    writer.write(json.dumps(server.stats()).encode() + b"\n")

        task = asyncio.create_task(control())
        await stop.wait()
        await server.close()
        task.cancel()
        writer.close()

    _run_loop(main, s.uvloop)


def _reserve_port(host: str, port: int) -> socket.socket:
    """Bind (not listen) a SO_REUSEPORT socket: fixes the port number for the workers."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    return sock


def run_node(s: NodeSettings, *, ready: Callable[[dict[str, Any]], None] | None = None) -> int:
    """Run a relay node in the foreground until SIGTERM/SIGINT; returns an exit status."""
    import multiprocessing

    workers = s.workers or os.cpu_count() or 1
    reserved = _reserve_port(s.host, s.port)
    s.port = reserved.getsockname()[1]
    pairs: dict[tuple[int, int], tuple[socket.socket, socket.socket]] = {}
    for i in range(workers):
        for j in range(i + 1, workers):
            pairs[(i, j)] = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    ctx = multiprocessing.get_context("fork")
    procs = []
    ctrls = []
    for i in range(workers):
        mesh = {}
        for (a, b), (sa, sb) in pairs.items():
            if a == i:
                mesh[b] = sa
            elif b == i:
                mesh[a] = sb
        parent_end, child_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        p = ctx.Process(target=_worker_main, args=(s, i, workers, mesh, child_end), daemon=False,
                        name=f"aura-relay-{i}")
        p.start()
        child_end.close()
        procs.append(p)
        ctrls.append(parent_end)
    for sa, sb in pairs.values():
        sa.close()
        sb.close()

    async def parent() -> int:
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        streams = []
        for c in ctrls:
            c.setblocking(False)
            streams.append(await asyncio.open_unix_connection(sock=c))
        for r, _ in streams:
            if (await r.readline()).strip() != b"ready":
                _log("worker_failed_to_start")
                stop.set()
        reserved.close()  # every worker listens now
        lock = asyncio.Lock()

        async def body() -> str:
            async with lock:
                stats = []
                for r, w in streams:
                    w.write(b"stats\n")
                for r, w in streams:
                    line = await asyncio.wait_for(r.readline(), 5)
                    if line:
                        stats.append(json.loads(line))
                return format_metrics(stats)

        metrics = None
        info: dict[str, Any] = {"event": "relay_node_ready", "host": s.host, "port": s.port,
                                "workers": workers, "pid": os.getpid()}
        if s.metrics_port is not None:
            metrics = await asyncio.start_server(lambda r, w: _serve_http_text(r, w, body),
                                                 s.metrics_host, s.metrics_port)
            info["metrics_port"] = next(iter(metrics.sockets)).getsockname()[1]
        if ready is not None:
            ready(info)
        _log(**info)  # type: ignore[arg-type]
        waiters = [loop.run_in_executor(None, p.join) for p in procs]
        done = asyncio.ensure_future(asyncio.gather(*waiters))
        stopping = asyncio.ensure_future(stop.wait())
        # a worker that dies takes the node down (cleanly, exit status 1): a supervisor
        # (systemd, k8s) restarts the node, and clients reconnect with backoff
        await asyncio.wait([stopping, *waiters], return_when=asyncio.FIRST_COMPLETED)  # type: ignore[type-var]
        if not stop.is_set():
            _log("worker_died", logging.ERROR, exit_codes=[p.exitcode for p in procs])
        stopping.cancel()
        for p in procs:
            if p.is_alive() and p.pid:
                os.kill(p.pid, signal.SIGTERM)
        await asyncio.wait_for(done, s.drain_timeout + 10)
        if metrics is not None:
            metrics.close()
        codes = [p.exitcode for p in procs]
        _log("relay_node_stopped", exit_codes=codes)
        return 0 if all(c == 0 for c in codes) else 1

    return int(asyncio.run(parent()))


# -- the client ----------------------------------------------------------------------------------

class RelayClient:
    """An authority's connection to a relay: authenticate, send, receive frames and receipts.

    RECEIPT messages (the relay's signed accounting of what it forwarded to us) are collected
    in :attr:`receipts` as 200-byte packed receipts.  With ``track_ids`` the envelope ids of
    delivered frames are kept (:attr:`envelope_ids`) and each receipt's commitment is checked
    against the frames it covers (:attr:`receipt_checks`).
    """

    def __init__(self, ws: ClientConnection, authority: AuthorityId, *, track_ids: bool = False) -> None:
        self._ws = ws
        self.authority = authority
        self.receipts: list[bytes] = []
        self.track_ids = track_ids
        self.envelope_ids: list[bytes] = []
        self.receipt_checks: list[bool] = []  # per RECEIPT: commitment matched what we got
        self._pending: dict[bytes, deque[bytes]] = {}

    @classmethod
    async def connect(cls, url: str, key: IdentityKey, token: bytes, *,
                      contexts: Iterable[ContextId] = (), timeout: float = 10.0,
                      track_ids: bool = False, retry_for: float = 0.0,
                      ping_interval: float | None = 20.0) -> RelayClient:
        """Connect and authenticate; with ``retry_for`` > 0, unreachable relays (a restart)
        are retried with exponential backoff (50 ms doubling to 1 s) for that many seconds."""
        contexts = list(contexts)
        deadline = _clock() + retry_for
        delay = 0.05
        while True:
            try:
                return await cls._connect_once(url, key, token, contexts, timeout, track_ids, ping_interval)
            except TransportError:
                if _clock() + delay > deadline:
                    raise
                await asyncio.sleep(delay)
                delay = min(1.0, delay * 2)

    @classmethod
    async def _connect_once(cls, url: str, key: IdentityKey, token: bytes, contexts: list[ContextId],
                            timeout: float, track_ids: bool, ping_interval: float | None) -> RelayClient:
        try:
            ws = await connect(url, compression=None, max_size=None, open_timeout=timeout, proxy=None,
                               ping_interval=ping_interval)
        except (OSError, asyncio.TimeoutError, InvalidHandshake) as exc:
            raise TransportError(f"cannot reach relay {url}: {exc}") from exc
        try:
            nonce = parse_challenge(await asyncio.wait_for(ws.recv(), timeout))  # type: ignore[arg-type]
            await ws.send(encode_auth(key, nonce, token, contexts))
            authority = decode_welcome(await asyncio.wait_for(ws.recv(), timeout))  # type: ignore[arg-type]
        except (ConnectionClosed, asyncio.TimeoutError) as exc:
            await ws.close()
            raise TransportError(f"relay handshake failed: {exc}") from exc
        except ProtocolError:
            await ws.close()
            raise
        if authority != key.authority_id:
            await ws.close()
            raise ProtocolError("relay welcomed a different authority")
        return cls(ws, authority, track_ids=track_ids)

    async def send(self, context: ContextId, dst: AuthorityId, payload: bytes) -> None:
        await self._ws.send(encode_send(context, dst, payload))

    async def send_many(self, context: ContextId, dst: AuthorityId, payloads: Iterable[bytes]) -> None:
        head = MsgType.SEND.value + bytes(context) + bytes(dst)
        frames = [head + p for p in payloads]
        for i in range(0, len(frames), 256):
            await _send_batch(self._ws, frames[i:i + 256])

    async def recv(self) -> tuple[ContextId, AuthorityId, bytes]:
        """The next delivered frame (RECEIPTs arriving meanwhile are collected)."""
        from ..relay import envelope_id

        while True:
            try:
                message = await self._ws.recv()
            except ConnectionClosed as exc:
                raise TransportError(f"relay connection closed: {exc}") from exc
            if isinstance(message, str):
                raise ProtocolError("relay sent a text message")
            if message[:1] == MsgType.RECEIPT.value and len(message) == 201:
                self.receipts.append(message[1:])
                if self.track_ids:
                    self.receipt_checks.append(self._check_receipt(message[1:]))
                continue
            if self.track_ids and message[:1] == MsgType.DELIVER.value and len(message) >= 33:
                eid = envelope_id(message)
                self.envelope_ids.append(eid)
                self._pending.setdefault(message[1:17], deque()).append(eid)
            return decode_deliver(message)

    def _check_receipt(self, packed: bytes) -> bool:
        """Does the receipt commit to the next ``cost`` frames of its context we received?

        (Each forward costs 1, so ``cost`` is the number of frames a window covers, and a
        window's frames are delivered before the next window's.)  The signature is checked
        by the caller with the relay's public key (``Receipt.verify``)."""
        from ..receipts import forward_commitment

        ctx, cost, commit = packed[:16], int.from_bytes(packed[56:64], "big"), packed[104:136]
        pending = self._pending.get(ctx, deque())
        if cost > len(pending):
            return False
        ids = [pending.popleft() for _ in range(cost)]
        return forward_commitment(ids).digest == commit

    async def close(self) -> None:
        await self._ws.close()
