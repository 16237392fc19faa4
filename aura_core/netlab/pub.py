"""The ``pub`` node of ``aura-core demo --netlab``: the relay node and a rendezvous journal.

Runs as ``ip netns exec <lab>-pub python -m aura_core.netlab.pub`` (JSON lines on stdio):

  <- {"root": hex, "ctx": hex, "seed": hex, "host": ip, "relay_port": n, "sync_port": n}
  -> {"stage": "up", "url": ws-url, "sync": [ip, port]}
  <- {"cmd": "stop"}   (after both authorities closed)
  -> {"stage": "stopped", "receipts": n, "chains": n, "covered": n, "forwarded": n,
      "verified": bool, "auth_failures": n, "drop_budget": n, "sync_sessions": n, "facts": n}

The relay is the loopback demo's (Biscuit ``relay:forward`` holders only, receipts signed per
window).  The journal is a plain JournalStore that answers anti-entropy sessions for the
context: the authorities sit behind NATs and cannot accept each other's TCP, so they publish
through this meeting point, which stores their descriptors sealed (it cannot open them).
"""

from __future__ import annotations

import asyncio
import json
import sys
import tempfile

from ..asyncio import sync as journal_sync
from ..asyncio.demo import start_relay, verify_receipts
from ..errors import AuraError
from ..ids import ContextId
from ..journal import JournalStore
from ..keys import IdentityKey


def emit(obj: dict) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


async def read_line() -> dict:
    line = await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    return json.loads(line) if line else {"cmd": "stop"}


async def main() -> None:
    c = await read_line()
    ctx = ContextId(bytes.fromhex(c["ctx"]))
    server, signer, relay_key = await start_relay(bytes.fromhex(c["root"]), c["host"], c["relay_port"],
                                                  key=IdentityKey.from_seed(bytes.fromhex(c["seed"])))
    sessions: list[object] = []
    with tempfile.TemporaryDirectory(prefix="aura-netlab-pub-") as tmp:
        store = JournalStore(f"{tmp}/pub.sqlite")
        sync = await journal_sync.serve(store, c["host"], c["sync_port"], contexts=[bytes(ctx)],
                                        on_session=sessions.append)
        emit({"stage": "up", "url": server.url, "sync": [c["host"], c["sync_port"]]})
        await read_line()
        await asyncio.sleep(0.4)  # let the last receipt windows close
        await server.close()
        sync.close()
        await sync.wait_closed()
        issued = list(signer.issued)
        try:
            chains, covered = verify_receipts(issued, relay_key.public, ctx)
            verified = bool(issued)
        except AuraError:
            chains, covered, verified = 0, 0, False
        m = server.core.metrics
        emit({"stage": "stopped", "receipts": len(issued), "chains": chains, "covered": covered,
              "forwarded": m.forwarded, "verified": verified and covered == m.forwarded,
              "auth_failures": m.auth_failures, "drop_budget": m.drop_budget,
              "sync_sessions": len(sessions), "facts": store.digest(bytes(ctx)).count})
        store.close()


if __name__ == "__main__":
    asyncio.run(main())
