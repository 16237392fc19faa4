"""asyncio driver of :class:`aura_core.stun.StunClient` over a caller-owned UDP socket.

The socket is not taken over (no transport): after the query the same socket, hence the same
NAT mapping, is used for punching.  Only this layer reads the clock (the loop's).
"""

from __future__ import annotations

import asyncio
import socket

from ..stun import (Address, BindingFailed, BindingResult, BindingSucceeded, MappingBehaviour,
                    StunClient, mapping_behaviour)

__all__ = ["query", "discover"]


async def query(sock: socket.socket, servers: list[Address], *,
                client: StunClient | None = None) -> list[BindingSucceeded | BindingFailed]:
    """One Binding transaction per server, concurrently; results in completion order."""
    loop = asyncio.get_running_loop()
    sock.setblocking(False)
    client = client or StunClient()
    for server in servers:
        client.start(server, loop.time())
    events: list[BindingSucceeded | BindingFailed] = []
    while True:
        for data, addr in client.datagrams_to_send(loop.time()):
            sock.sendto(data, addr)
        while (event := client.next_event()) is not None:
            events.append(event)
        if not client.pending:
            return events
        timer = client.get_timer()
        wait = None if timer is None else max(0.0, timer - loop.time())
        try:
            data, addr = await asyncio.wait_for(loop.sock_recvfrom(sock, 2048), wait)
        except (TimeoutError, asyncio.TimeoutError):
            client.handle_timer(loop.time())
            continue
        except OSError:  # ICMP error queued on the socket (server unreachable): keep waiting
            continue
        client.receive_datagram(data, (addr[0], addr[1]), loop.time())


async def discover(sock: socket.socket, servers: list[Address], *,
                   client: StunClient | None = None
                   ) -> tuple[list[BindingResult], MappingBehaviour, list[BindingFailed]]:
    """Reflexive addresses from every server, and the NAT's mapping behaviour."""
    events = await query(sock, servers, client=client)
    ok = [e.result for e in events if isinstance(e, BindingSucceeded)]
    failed = [e for e in events if isinstance(e, BindingFailed)]
    return ok, mapping_behaviour(ok), failed
