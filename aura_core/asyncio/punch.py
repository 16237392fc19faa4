"""asyncio driver of :class:`aura_core.punch.PunchEngine` over a real UDP socket.

The compiled loop blocks (GIL released) for at most one slice, so it runs in the loop's default
executor.  The driver adds what ICE does around it: an authenticated punch from an address we did
not target becomes a new (peer-reflexive) target, and the path is proven when the peer *acks* one
of our punches (both directions then work).  An optional low-TTL phase first opens our own NAT
without reaching the far one (it avoids the conntrack-clash remap, see tests/netlab).

The side that is proven first must keep answering the peer's punches until the peer is through
too: either :func:`serve` for a while, or its session's receive loop passes datagrams that
:func:`aura_core.punch.is_punch` flags to :meth:`PunchEngine.answer` and sends the ack back.
:func:`keepalive` then holds the NAT mapping while the path is idle.
"""

from __future__ import annotations

import asyncio
import socket
from dataclasses import dataclass, field
from functools import partial

from ..punch import Address, PunchEngine, PunchEvent
from ..selection import (AttemptFailed, AttemptSucceeded, ConnState, LocalBinding,
                         PeerConnectionActor, StartAttempt)

__all__ = ["PunchOutcome", "punch", "serve", "keepalive", "upgrade", "set_rcvbuf"]


def set_rcvbuf(sock: socket.socket, size: int = 4 << 20) -> None:
    """Raise SO_RCVBUF (the default holds ~256 datagrams); best effort above rmem_max."""
    try:  # root may go past net.core.rmem_max
        sock.setsockopt(socket.SOL_SOCKET, getattr(socket, "SO_RCVBUFFORCE", 33), size)
    except OSError:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, size)


@dataclass
class PunchOutcome:
    peer: bytes
    direct: bool
    path: Address | None = None  # where the peer's ack came from: send to this address
    elapsed: float = 0.0  # seconds from the start to the proving ack (or to giving up)
    events: list[PunchEvent] = field(default_factory=list)
    stats: dict[str, int] = field(default_factory=dict)


async def _run(engine: PunchEngine, sock: socket.socket, *, send: bool, interval: float,
               timeout: float, stop_after: int) -> list[PunchEvent]:
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(None, partial(
        engine.run, sock.fileno(), send=send, interval=interval, timeout=timeout,
        stop_after=stop_after))


async def punch(engine: PunchEngine, sock: socket.socket, peer: bytes, candidates: list[Address],
                *, window: float = 1.5, interval: float = 0.05, prepunch: float = 0.0,
                prepunch_ttl: int = 2) -> PunchOutcome:
    """Punch ``peer`` at ``candidates`` until it acks (direct) or ``window`` s pass (relay)."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    targets: list[Address] = list(dict.fromkeys(candidates))
    engine.set_targets((peer, a) for a in targets)
    events: list[PunchEvent] = []
    if prepunch > 0:
        old_ttl = sock.getsockopt(socket.IPPROTO_IP, socket.IP_TTL)
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, prepunch_ttl)
        try:
            events += await _run(engine, sock, send=True, interval=interval, timeout=prepunch,
                                 stop_after=0)
        finally:
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, old_ttl)
    pending = list(events)
    while True:
        for ev in pending:
            if ev.peer != peer:
                continue
            if ev.source not in targets:
                targets.append(ev.source)  # peer-reflexive candidate: punch it too (as ICE)
                engine.set_targets((peer, a) for a in targets)
            if ev.ack:
                return PunchOutcome(peer, True, ev.source, loop.time() - start, events,
                                    engine.stats())
        left = window - (loop.time() - start)
        if left <= 0:
            return PunchOutcome(peer, False, None, loop.time() - start, events, engine.stats())
        pending = await _run(engine, sock, send=True, interval=interval,
                             timeout=min(left, interval), stop_after=1)
        events += pending


async def serve(engine: PunchEngine, sock: socket.socket, stop: asyncio.Event, *,
                slice_s: float = 0.05) -> list[PunchEvent]:
    """Answer the peer's punches (acks from C) without sending our own, until ``stop``."""
    seen: list[PunchEvent] = []
    while not stop.is_set():
        seen += await _run(engine, sock, send=False, interval=slice_s, timeout=slice_s,
                           stop_after=0)
    return seen


async def keepalive(engine: PunchEngine, sock: socket.socket, peer: bytes, path: Address,
                    stop: asyncio.Event, *, interval: float = 15.0) -> int:
    """Send one punch to ``path`` every ``interval`` s until ``stop``, so NATs keep the mapping
    (RFC 4787 requires UDP mappings to live >= 2 min, many keep only 30 s: 15 s is safe).
    The peer's receive loop drops or answers it; returns how many were sent."""
    engine.set_targets([(peer, path)])
    sent = 0
    while not stop.is_set():
        sent += engine.send_burst(sock.fileno())
        try:
            await asyncio.wait_for(stop.wait(), interval)
        except (TimeoutError, asyncio.TimeoutError):
            pass
    return sent


async def upgrade(actor: PeerConnectionActor, engine: PunchEngine, sock: socket.socket,
                  peer: bytes, binding: LocalBinding, *, window: float = 1.5,
                  interval: float = 0.05, prepunch: float = 0.0) -> PunchOutcome | None:
    """Execute a :class:`~aura_core.selection.PeerConnectionActor`'s upgrade cycle on ``sock``:
    each ``StartAttempt`` becomes a :func:`punch`, its outcome (with ``binding``, the socket's
    local provenance) goes back to the actor, backoff timers are honoured, until the actor
    settles on ``direct`` or ``relay-only``.  Returns the last punch outcome (None: no attempt).
    The caller applies ``UseRelay``/``UseDirect`` from ``actor.history`` / ``actor.direct``."""
    loop = asyncio.get_running_loop()
    last: PunchOutcome | None = None
    while True:
        action = actor.next_action()
        if isinstance(action, StartAttempt):
            last = await punch(engine, sock, peer, list(action.candidates), window=window,
                               interval=interval, prepunch=prepunch)
            if last.direct and last.path is not None:
                actor.handle(AttemptSucceeded(action.attempt, last.path, binding), loop.time())
            else:
                actor.handle(AttemptFailed(action.attempt), loop.time())
            continue
        if action is not None:
            continue  # UseRelay / UseDirect / CancelAttempt: state the caller reads
        if actor.state in (ConnState.DIRECT, ConnState.RELAY_ONLY):
            return last
        timer = actor.get_timer()
        if timer is None:
            return last
        await asyncio.sleep(max(0.0, timer - loop.time()))
        actor.handle_timer(loop.time())
