"""Crash-test writer: appends batches of facts to a journal forever, acknowledging each.

Usage: python journal_crash_writer.py DB RUN [SYNCHRONOUS]
After each merge returns (durable under synchronous=FULL) it prints ``ACK <run> <batch>``;
the test kills it with SIGKILL at a random moment and checks every acknowledged batch.
Batch contents are a pure function of (run, batch), so the checker can rebuild them.
"""

from __future__ import annotations

import sys

from aura_core import dagcbor
from aura_core.journal import JournalStore

CTX = bytes(range(16))


def batch_facts(run: int, batch: int) -> list[bytes]:
    size = 1 + (run * 7919 + batch * 104729) % 40
    return [dagcbor.encode({"run": run, "batch": batch, "i": i, "pad": b"\xab" * (i % 50)})
            for i in range(size)]


def main() -> None:
    path, run = sys.argv[1], int(sys.argv[2])
    sync = sys.argv[3] if len(sys.argv) > 3 else "FULL"
    store = JournalStore(path, synchronous=sync)
    out = sys.stdout
    out.write("READY\n")
    out.flush()
    batch = 0
    while True:
        store.merge(CTX, batch_facts(run, batch))
        out.write(f"ACK {run} {batch}\n")
        out.flush()
        batch += 1


if __name__ == "__main__":
    main()
