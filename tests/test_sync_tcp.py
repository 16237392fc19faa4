"""Journals synced over real TCP connections on 127.0.0.1 (aura_core.asyncio.sync)."""

from __future__ import annotations

import asyncio
import random

from aura_core import dagcbor
from aura_core.asyncio.sync import run_anti_entropy, serve, sync_with
from aura_core.journal import JournalStore
from aura_core.journal.sync import AllCompleted, PeerCompleted, PeerFailed, RetryPolicy, AntiEntropy, SyncPhase

CTX = bytes(range(16))


def fact(i: int) -> bytes:
    return dagcbor.encode({"i": i, "pad": random.Random(i).randbytes(16)})


def test_two_journals_over_tcp():
    async def main():
        a, b = JournalStore(), JournalStore()
        a.merge(CTX, [fact(i) for i in range(0, 3000)])
        b.merge(CTX, [fact(i) for i in range(1000, 4000)])
        served = []
        server = await serve(b, "127.0.0.1", 0, contexts={CTX}, on_session=served.append)
        port = server.sockets[0].getsockname()[1]
        s = await sync_with(a, CTX, "127.0.0.1", port)
        await asyncio.sleep(0.05)
        server.close()
        await server.wait_closed()
        assert s.done and not s.failed, s.error
        assert a.digest(CTX) == b.digest(CTX) and a.digest(CTX).count == 4000
        assert served and served[0].done and not served[0].failed
        assert s.stats.facts_pushed == 1000 and s.stats.facts_pulled == 1000

    asyncio.run(main())


def test_unknown_context_and_dead_peer_fail_with_a_phase():
    async def main():
        a, b = JournalStore(), JournalStore()
        a.merge(CTX, [fact(1)])
        server = await serve(b, "127.0.0.1", 0, contexts={bytes(16)})
        port = server.sockets[0].getsockname()[1]
        s = await sync_with(a, CTX, "127.0.0.1", port, timeout=2.0)
        assert s.failed and s.error.phase is SyncPhase.DIGEST_EXCHANGE
        server.close()
        await server.wait_closed()
        s2 = await sync_with(a, CTX, "127.0.0.1", port, timeout=2.0)  # nobody listens now
        assert s2.failed and b.digest(CTX).count == 0

    asyncio.run(main())


def test_anti_entropy_round_with_three_peers_over_tcp():
    async def main():
        stores = {n: JournalStore() for n in "abcd"}
        for k, (n, s) in enumerate(stores.items()):
            s.merge(CTX, [fact(k * 100 + i) for i in range(50)])
        servers = {n: await serve(stores[n], "127.0.0.1", 0) for n in "bcd"}
        addrs = {n: ("127.0.0.1", srv.sockets[0].getsockname()[1]) for n, srv in servers.items()}
        servers["d"].close()
        await servers["d"].wait_closed()  # d is down: a's round retries, then gives up
        ae = AntiEntropy(stores["a"].view(CTX), addrs,
                         policy=RetryPolicy(base=0.01, max_delay=0.05, max_attempts=3),
                         rand=random.Random(5).randbytes)
        events = []
        done = await run_anti_entropy(ae, addrs, store=stores["a"], ctx=CTX, timeout=2.0,
                                      on_event=events.append)
        assert isinstance(done, AllCompleted)
        assert set(done.succeeded) == {"b", "c"} and done.failed == ("d",)
        assert sum(isinstance(e, PeerFailed) for e in events) == 3
        assert sum(isinstance(e, PeerCompleted) for e in events) == 2
        for n in "bc":
            servers[n].close()
        # a has b's and c's facts; b and c got a's (and c has b's only through a later round)
        assert stores["a"].digest(CTX).count == 150
        assert stores["b"].digest(CTX).count >= 100 and stores["c"].digest(CTX).count >= 100

    asyncio.run(main())
