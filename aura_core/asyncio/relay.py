"""WebSocket relay server and client over :class:`aura_core.relay.RelayCore` (the only I/O).

The server feeds each binary WebSocket message to the core, and one writer task per
connection drains that connection's queue with a write timeout (a reader that is too slow is
disconnected rather than allowed to grow memory).  A Prometheus text endpoint serves the
core's counters.  Shutdown stops reading, flushes every queued frame, then closes.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass

from websockets.asyncio.client import ClientConnection, connect
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from ..errors import ProtocolError, TransportError
from ..ids import AuthorityId, ContextId
from ..keys import IdentityKey
from ..relay import MsgType, RelayCore, decode_deliver, decode_welcome, encode_auth, encode_send, parse_challenge

__all__ = ["RelayServer", "RelayClient", "serve_relay"]

log = logging.getLogger("aura_core.relay")
_clock = time.monotonic


@dataclass
class _Link:
    ws: ServerConnection
    wake: asyncio.Event
    drained: asyncio.Event
    writer: asyncio.Task[None] | None = None


class RelayServer:
    """Serves a :class:`RelayCore` on a WebSocket port (and, optionally, metrics over HTTP)."""

    def __init__(self, core: RelayCore, host: str = "127.0.0.1", port: int = 0, *,
                 write_timeout: float = 5.0, reuse_port: bool = False,
                 metrics_port: int | None = None, backpressure_wait: float = 0.05) -> None:
        self.core = core
        self.host = host
        self.port = port
        self.write_timeout = write_timeout
        self.backpressure_wait = backpressure_wait
        self._high_water = max(1, core.config.queue_limit // 2)
        self.reuse_port = reuse_port
        self.metrics_port = metrics_port
        self._ids = itertools.count(1)
        self._links: dict[int, _Link] = {}
        self._server: Server | None = None
        self._metrics: asyncio.Server | None = None
        self._closing = False
        self._reaper: asyncio.Task[None] | None = None

    async def start(self) -> RelayServer:
        self._server = await serve(
            self._handle, self.host, self.port, compression=None, max_size=self.core.config.max_frame,
            max_queue=64, reuse_port=self.reuse_port, ping_interval=20, ping_timeout=20)
        sock = next(iter(self._server.sockets))
        self.port = sock.getsockname()[1]
        if self.metrics_port is not None:
            self._metrics = await asyncio.start_server(self._serve_metrics, self.host, self.metrics_port)
            self.metrics_port = next(iter(self._metrics.sockets)).getsockname()[1]
        self._reaper = asyncio.create_task(self._reap())
        log.info(json.dumps({"event": "relay_started", "host": self.host, "port": self.port,
                             "metrics_port": self.metrics_port}))
        return self

    @property
    def url(self) -> str:
        return f"ws://{self.host}:{self.port}"

    async def close(self) -> None:
        """Graceful shutdown: stop reading, flush every queued frame, then close."""
        self._closing = True
        if self._reaper:
            self._reaper.cancel()
        for link in list(self._links.values()):
            link.wake.set()
        writers = [l.writer for l in self._links.values() if l.writer]
        if writers:
            await asyncio.wait(writers, timeout=self.write_timeout)
        if self._server:
            self._server.close()
            await self._server.wait_closed()
        if self._metrics:
            self._metrics.close()
            await self._metrics.wait_closed()
        log.info(json.dumps({"event": "relay_stopped", **self.core.metrics.as_dict()}))

    async def _handle(self, ws: ServerConnection) -> None:
        conn_id = next(self._ids)
        link = _Link(ws, asyncio.Event(), asyncio.Event())
        self._links[conn_id] = link
        core = self.core
        try:
            first = core.connect(conn_id, _clock())
            await ws.send(first)
            if first[:1] == MsgType.ERROR.value:
                return
            link.writer = asyncio.create_task(self._write_loop(conn_id, link))
            async for message in ws:
                if self._closing:
                    break
                if isinstance(message, str):
                    core.metrics.drop_malformed += 1
                    continue
                wake, reply = core.receive(conn_id, message, _clock())
                for other in wake:
                    target = self._links.get(other)
                    if target is not None:
                        target.wake.set()
                        if core.queue_depth(other) >= self._high_water:
                            # Back-pressure: stop reading this sender (TCP pushes back) until the
                            # receiver's writer catches up; a receiver that stays stuck past
                            # backpressure_wait gets counted drops instead of stalling everyone.
                            target.drained.clear()
                            try:
                                await asyncio.wait_for(target.drained.wait(), self.backpressure_wait)
                            except asyncio.TimeoutError:
                                pass
                if reply is not None:
                    await ws.send(reply)
                    if reply[:1] == MsgType.ERROR.value:
                        return
                    for old in core.superseded():
                        stale = self._links.get(old)
                        if stale is not None:
                            core.disconnect(old)
                            await stale.ws.close(1008, "superseded")
        except ConnectionClosed:
            pass
        finally:
            if link.writer is not None and not self._closing:
                link.writer.cancel()
            if not self._closing:
                self._links.pop(conn_id, None)
                core.disconnect(conn_id)

    async def _write_loop(self, conn_id: int, link: _Link) -> None:
        core, ws = self.core, link.ws
        try:
            while True:
                await link.wake.wait()
                link.wake.clear()
                while True:
                    frames = core.pop_outgoing(conn_id, 256)
                    if not frames:
                        link.drained.set()
                        break
                    # a reader slower than write_timeout is dropped, not buffered without bound
                    await asyncio.wait_for(_send_each(ws, frames), self.write_timeout)
                if self._closing:
                    return
        except (ConnectionClosed, asyncio.TimeoutError):
            log.info(json.dumps({"event": "slow_or_gone_reader", "conn": conn_id}))
            await ws.close(1008, "write timeout")

    async def _reap(self) -> None:
        while True:
            deadline = self.core.next_deadline()
            await asyncio.sleep(1.0 if deadline is None else max(0.05, deadline - _clock()))
            for conn_id in self.core.expired(_clock()):
                link = self._links.get(conn_id)
                if link is not None:
                    await link.ws.close(1008, "authentication timeout")

    def metrics_text(self) -> str:
        m = self.core.metrics.as_dict()
        lines = []
        for name, value in m.items():
            kind = "gauge" if name in ("connections", "authenticated") else "counter"
            metric = f"aura_relay_{name}" + ("_total" if kind == "counter" else "")
            lines += [f"# TYPE {metric} {kind}", f"{metric} {value}"]
        lines += ["# TYPE aura_relay_queue_depth gauge", f"aura_relay_queue_depth {self.core.total_queued()}"]
        return "\n".join(lines) + "\n"

    async def _serve_metrics(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
            body = self.metrics_text().encode()
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\n"
                         b"Content-Length: " + str(len(body)).encode() + b"\r\nConnection: close\r\n\r\n" + body)
            await writer.drain()
        except (asyncio.TimeoutError, asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


async def _send_each(ws: ServerConnection | ClientConnection, frames: list[bytes]) -> None:
    # one WebSocket message per frame (send(iterable) would fragment a single message)
    for frame in frames:
        await ws.send(frame)


async def serve_relay(core: RelayCore, host: str = "127.0.0.1", port: int = 0, **kw: object) -> RelayServer:
    return await RelayServer(core, host, port, **kw).start()  # type: ignore[arg-type]


class RelayClient:
    """An authority's connection to a relay: authenticate, send, receive frames."""

    def __init__(self, ws: ClientConnection, authority: AuthorityId) -> None:
        self._ws = ws
        self.authority = authority

    @classmethod
    async def connect(cls, url: str, key: IdentityKey, token: bytes, *, timeout: float = 10.0) -> RelayClient:
        try:
            ws = await connect(url, compression=None, max_size=None, open_timeout=timeout, proxy=None)
        except OSError as exc:
            raise TransportError(f"cannot reach relay {url}: {exc}") from exc
        try:
            nonce = parse_challenge(await asyncio.wait_for(ws.recv(), timeout))  # type: ignore[arg-type]
            await ws.send(encode_auth(key, nonce, token))
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
        return cls(ws, authority)

    async def send(self, context: ContextId, dst: AuthorityId, payload: bytes) -> None:
        await self._ws.send(encode_send(context, dst, payload))

    async def send_many(self, context: ContextId, dst: AuthorityId, payloads: Iterable[bytes]) -> None:
        head = MsgType.SEND.value + bytes(context) + bytes(dst)
        await _send_each(self._ws, [head + p for p in payloads])

    async def recv(self) -> tuple[ContextId, AuthorityId, bytes]:
        try:
            message = await self._ws.recv()
        except ConnectionClosed as exc:
            raise TransportError(f"relay connection closed: {exc}") from exc
        if isinstance(message, str):
            raise ProtocolError("relay sent a text message")
        return decode_deliver(message)

    async def close(self) -> None:
        await self._ws.close()
