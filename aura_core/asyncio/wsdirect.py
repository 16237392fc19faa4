"""Direct WebSocket paths carrying Noise frames (the ``WebSocketDirect`` transport hint).

For a peer that is reachable over TCP (a public listener, or UDP blocked on the way) a direct
WebSocket replaces the relay hop.  Framing is the WebSocket's own: after one clear-text *hello*
message every binary message is exactly one Noise datagram of the channel's
:class:`~aura_core.noise.DatagramSession`::

    hello = "AURAWSD1" (8) || context id (16) || sender authority id (16) || receiver id (16)

The hello only routes the connection to the right channel; it proves nothing.  Like the QUIC
path, a WebSocket path is *verified* only when a frame that opens under the channel's Noise keys
arrives over it, and the connection driver closes paths that do not verify in time.  Plain
``ws://`` is deliberate: confidentiality and authenticity are Noise's.

:class:`WsDirectPath` has the same shape as :class:`aura_core.asyncio.quic.QuicPath`
(``send_frame``, ``on_frame``, ``closed``, ``is_open``, ``close``), so
:class:`aura_core.asyncio.connection.PeerConnection` drives both the same way.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Final

from websockets.asyncio.client import ClientConnection, connect
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from ..errors import TransportError, UsageError
from ..ids import AuthorityId, ContextId

__all__ = ["HELLO_MAGIC", "encode_hello", "decode_hello", "WsDirectPath", "WsDirectListener",
           "connect_ws_direct"]

log = logging.getLogger("aura_core.wsdirect")

HELLO_MAGIC: Final = b"AURAWSD1"
HELLO_LEN: Final = 8 + 16 * 3
MAX_FRAME: Final = 0xFFFF
QUEUE_LIMIT: Final = 1024  # frames waiting for the socket; beyond: counted drops (the
# PathSwitcher retransmits), so a stalled peer cannot grow our memory
Address = tuple[str, int]


def encode_hello(context: ContextId, sender: AuthorityId, receiver: AuthorityId) -> bytes:
    return HELLO_MAGIC + bytes(context) + bytes(sender) + bytes(receiver)


def decode_hello(data: bytes) -> tuple[bytes, bytes, bytes] | None:
    """``(context, sender, receiver)`` of a hello, or None if it is not one."""
    if len(data) != HELLO_LEN or data[:8] != HELLO_MAGIC:
        return None
    return data[8:24], data[24:40], data[40:56]


class WsDirectPath:
    """One direct WebSocket to a peer (either side of it)."""

    def __init__(self, ws: ClientConnection | ServerConnection, peer: bytes, addr: Address,
                 client: bool, *, write_timeout: float = 5.0) -> None:
        loop = asyncio.get_running_loop()
        self.ws = ws
        self.peer = peer
        self.addr = addr
        self.client = client
        self.write_timeout = write_timeout
        self.on_frame: Callable[[bytes], None] | None = None
        self.connected: asyncio.Future[None] = loop.create_future()
        self.connected.set_result(None)
        self.closed: asyncio.Future[str] = loop.create_future()
        self.frames_in = self.frames_out = self.dropped = 0
        self._queue: asyncio.Queue[bytes] = asyncio.Queue(QUEUE_LIMIT)
        self._writer = asyncio.create_task(self._write_loop())

    @property
    def is_open(self) -> bool:
        return not self.closed.done()

    def send_frame(self, noise_datagram: bytes) -> None:
        if self.closed.done():
            raise TransportError(f"direct path closed: {self.closed.result()}")
        if not 0 < len(noise_datagram) <= MAX_FRAME:
            raise UsageError("a Noise datagram is 1..65535 bytes")
        try:
            self._queue.put_nowait(noise_datagram)
            self.frames_out += 1
        except asyncio.QueueFull:
            self.dropped += 1

    def close(self, reason: str = "closed") -> None:
        if not self.closed.done():
            self.closed.set_result(reason)
            self._writer.cancel()
            asyncio.ensure_future(self.ws.close(1000, reason[:100]))

    async def _write_loop(self) -> None:
        try:
            while True:
                batch = [await self._queue.get()]
                while not self._queue.empty():
                    batch.append(self._queue.get_nowait())
                async with asyncio.timeout(self.write_timeout):  # a stalled peer: closed
                    for frame in batch:
                        await self.ws.send(frame)
        except (ConnectionClosed, asyncio.TimeoutError, OSError):
            self.close("write failed")

    async def read_loop(self) -> None:
        """Deliver each binary message (one Noise datagram) until the connection ends."""
        try:
            async for message in self.ws:
                if isinstance(message, str) or not message:
                    continue  # not ours: ignored (the Noise layer would drop it anyway)
                self.frames_in += 1
                if self.on_frame is not None:
                    self.on_frame(message)
        except ConnectionClosed:
            pass
        finally:
            self.close("connection ended")


async def connect_ws_direct(url: str, context: ContextId, local: AuthorityId, peer: AuthorityId,
                            *, timeout: float = 5.0) -> WsDirectPath:
    """Open a direct WebSocket to ``peer``'s listener at ``url`` and start reading."""
    try:
        ws = await connect(url, compression=None, max_size=MAX_FRAME, open_timeout=timeout,
                           proxy=None)
    except (OSError, asyncio.TimeoutError) as exc:
        raise TransportError(f"cannot reach {url}: {exc}") from exc
    except Exception as exc:  # websockets' handshake errors (InvalidURI, InvalidStatus...)
        raise TransportError(f"WebSocket handshake with {url} failed: {exc}") from exc
    await ws.send(encode_hello(context, local, peer))
    host, port = ws.remote_address[:2]
    path = WsDirectPath(ws, bytes(peer), (host, port), client=True)
    task = asyncio.create_task(path.read_loop())
    path.closed.add_done_callback(lambda _f: task.cancel() if not task.done() else None)
    return path


class WsDirectListener:
    """Accepts direct WebSockets for registered (context, peer) pairs of one local authority."""

    def __init__(self, local: AuthorityId, host: str = "127.0.0.1", port: int = 0, *,
                 hello_timeout: float = 5.0) -> None:
        self.local = bytes(local)
        self.host, self.port = host, port
        self.hello_timeout = hello_timeout
        self._routes: dict[tuple[bytes, bytes], Callable[[WsDirectPath], None]] = {}
        self._server: Server | None = None
        self.stats: dict[str, int] = dict.fromkeys(("accepted", "refused"), 0)

    async def start(self) -> WsDirectListener:
        self._server = await serve(self._handle, self.host, self.port, compression=None,
                                   max_size=MAX_FRAME, max_queue=64)
        self.port = next(iter(self._server.sockets)).getsockname()[1]
        return self

    @property
    def url(self) -> str:
        return f"ws://{self.host}:{self.port}"

    def register(self, context: ContextId, peer: AuthorityId,
                 on_path: Callable[[WsDirectPath], None]) -> None:
        self._routes[(bytes(context), bytes(peer))] = on_path

    def unregister(self, context: ContextId, peer: AuthorityId) -> None:
        self._routes.pop((bytes(context), bytes(peer)), None)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def _handle(self, ws: ServerConnection) -> None:
        try:
            first = await asyncio.wait_for(ws.recv(), self.hello_timeout)
        except (ConnectionClosed, asyncio.TimeoutError):
            self.stats["refused"] += 1
            return
        hello = decode_hello(first) if isinstance(first, bytes) else None
        route = None
        if hello is not None and hello[2] == self.local:
            route = self._routes.get((hello[0], hello[1]))
        if hello is None or route is None:
            self.stats["refused"] += 1  # generic refusal: nothing learned about who we know
            await ws.close(1008, "refused")
            return
        self.stats["accepted"] += 1
        host, port = ws.remote_address[:2]
        path = WsDirectPath(ws, hello[1], (host, port), client=False)
        route(path)
        await path.read_loop()
