"""Anti-entropy over TCP: drives :class:`~aura_core.journal.sync.SyncSession` on a stream.

Framing: each sync message travels as ``u32 big-endian length || message`` (docs/wire.md,
journal sync); a frame longer than the session's ``max_message_bytes`` closes the connection.
One connection carries one session: the initiator connects, sends its digest message, and the
two sides alternate until the session is done (the initiator's FIN ends it).  The server picks
the context from the first message's digest header and answers only for contexts it serves.
Timeouts and connection errors fail the session (SyncError attributed to the phase and peer);
:func:`run_anti_entropy` retries per the coordinator's backoff, sleeping on the loop's clock.
"""

from __future__ import annotations

import asyncio
import struct
import time
from collections.abc import Callable, Collection, Hashable, Mapping

from ..errors import ProtocolError
from ..journal.reconcile import Limits, decode_message
from ..journal.store import JournalStore


def _now_ms() -> int:
    """Wall-clock milliseconds: the ``acked_at`` of FactAcks recorded during a session."""
    return time.time_ns() // 1_000_000
from ..journal.sync import AllCompleted, AntiEntropy, Event, SyncSession

__all__ = ["serve", "sync_with", "run_anti_entropy"]

_LEN = struct.Struct(">I")


async def _read_frame(reader: asyncio.StreamReader, limit: int, timeout: float) -> bytes:
    head = await asyncio.wait_for(reader.readexactly(4), timeout)
    (n,) = _LEN.unpack(head)
    if n > limit:
        raise ProtocolError("sync frame too large")
    return await asyncio.wait_for(reader.readexactly(n), timeout)


async def _write(writer: asyncio.StreamWriter, frames: list[bytes]) -> None:
    for f in frames:
        writer.write(_LEN.pack(len(f)) + f)
    await writer.drain()


async def _drive(session: SyncSession, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                 timeout: float) -> None:
    limit = session.limits.max_message_bytes
    try:
        while True:
            await _write(writer, session.data_to_send())
            if session.done:
                return
            session.receive(await _read_frame(reader, limit, timeout))
    except (OSError, asyncio.IncompleteReadError, asyncio.TimeoutError, ProtocolError) as exc:
        session.abort(f"transport: {type(exc).__name__}")


async def sync_with(store: JournalStore, ctx: bytes, host: str, port: int, *, peer: Hashable = None,
                    limits: Limits = Limits(), timeout: float = 10.0,
                    session: SyncSession | None = None) -> SyncSession:
    """Run one initiator session against the server at (host, port); returns it (done/failed)."""
    if session is None:
        session = SyncSession(store.view(ctx), peer or (host, port), initiator=True, limits=limits,
                              now=_now_ms())
        session.start()
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
    except (OSError, asyncio.TimeoutError) as exc:
        session.abort(f"connect: {type(exc).__name__}")
        return session
    try:
        await _drive(session, reader, writer, timeout)
    finally:
        writer.close()
        try:
            await writer.wait_closed()
        except OSError:
            pass
    return session


async def serve(store: JournalStore, host: str = "127.0.0.1", port: int = 0, *,
                contexts: Collection[bytes] | None = None, limits: Limits = Limits(),
                timeout: float = 10.0,
                on_session: Callable[[SyncSession], None] | None = None) -> asyncio.Server:
    """Answer sync sessions for ``contexts`` (all, if None) of ``store``."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")
        try:
            first = await _read_frame(reader, limits.max_message_bytes, timeout)
            ctx = decode_message(first, limits).ctx
            if len(ctx) != 16 or (contexts is not None and ctx not in contexts):
                return  # silently: an unknown context reveals nothing
            session = SyncSession(store.view(ctx), peer, initiator=False, limits=limits, now=_now_ms())
            session.receive(first)
            await _drive(session, reader, writer, timeout)
            if on_session is not None:
                on_session(session)
        except (OSError, asyncio.IncompleteReadError, asyncio.TimeoutError, ProtocolError):
            return
        finally:
            writer.close()

    return await asyncio.start_server(handle, host, port)


async def run_anti_entropy(ae: AntiEntropy, addresses: Mapping[Hashable, tuple[str, int]], *,
                           store: JournalStore, ctx: bytes, timeout: float = 10.0,
                           on_event: Callable[[Event], None] | None = None) -> AllCompleted:
    """One anti-entropy round with every peer, retrying failures with backoff; returns the
    AllCompleted event."""
    loop = asyncio.get_running_loop()
    ae.start_round(loop.time())
    while True:
        now = loop.time()
        due = ae.due(now)
        if due:
            sessions = [(p, ae.begin(p, _now_ms())) for p in due]
            await asyncio.gather(*(sync_with(store, ctx, *addresses[p], peer=p, timeout=timeout,
                                             session=s) for p, s in sessions))
            for p, s in sessions:
                while (e := s.next_event()) is not None:
                    if on_event:
                        on_event(e)
                ae.end(p, s, loop.time())
        while (e := ae.next_event()) is not None:
            if on_event:
                on_event(e)
            if isinstance(e, AllCompleted):
                return e
        t = ae.next_timer()
        if t is not None and t > loop.time():
            await asyncio.sleep(min(t - loop.time(), 60.0))
