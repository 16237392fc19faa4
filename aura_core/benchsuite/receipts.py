"""Receipt and flow-budget benchmarks (issue 5).

* sign: a batch of 256 chained receipts built + hashed + signed in one call (ours), the same
  work through PyNaCl from Python (peer), raw libsodium Ed25519 signatures of a 152-byte
  message in a C loop (limit).  Also with 2 threads, and ending in Receipt objects.
* verify: a 256-receipt chain verified in one call (links, nonces, epoch, cost sum, signatures),
  with 1 and 2 threads, against PyNaCl + hashlib from Python (peer) and raw libsodium Ed25519
  verify in a C loop (limit, one thread).
* flow: budget charges from Python (FlowAccount.try_charge, and FlowLedger.try_charge with the
  (ContextId, AuthorityId) lookup) against a fixed target of 1,000,000 charges/s.
"""

from __future__ import annotations

import hashlib
import time

from . import Group

N_CHAIN = 256
N_CHARGES = 20_000
TARGET = 1_000_000.0


def _fixed_rate(rate: float):
    """The fixed-target 'limit': reports ``rate`` ops per second of wall time it is given.

    It sleeps (leaving the CPU to others) and counts ``elapsed * rate`` operations, so it reads
    the target even on a loaded machine, where a spin loop would overshoot its time slice.
    """
    def factory():
        def run() -> int:
            t0 = time.perf_counter()
            time.sleep(0.0005)
            return max(1, int((time.perf_counter() - t0) * rate))
        return run
    return factory


def _noop_calls():
    """The floor of a Python call in the same loop shape (a method doing nothing)."""
    class _Noop:
        __slots__ = ()

        def try_charge(self, cost: int) -> bool:
            return True

    def factory():
        charge = _Noop().try_charge

        def run() -> int:
            for _ in range(N_CHARGES):
                charge(1)
            return N_CHARGES
        return run
    return factory


def groups() -> list[Group]:
    import nacl.bindings as nb

    from aura_core import _receipt
    from aura_core.flow import MAX_U64, FlowLedger
    from aura_core.ids import AuthorityId, ContextId
    from aura_core.keys import IdentityKey
    from aura_core.receipts import ReceiptChain, verify_chain

    key = IdentityKey.from_seed(bytes(range(32)))
    sk, pk = key.ed25519_secret(), key.public.ed25519
    ctx = ContextId(bytes(range(16)))
    dst = IdentityKey.from_seed(bytes([0xA5]) * 32).authority_id
    costs = [1] * N_CHAIN
    tag = b"aura.receipt.v1\0"
    chain_bytes = ReceiptChain(key, ctx, dst, 1).issue_packed(costs)
    recs = [chain_bytes[i:i + 200] for i in range(0, len(chain_bytes), 200)]
    t0 = _receipt.transcript(recs[0])

    def raw_sign():
        def run() -> int:
            return _receipt._bench_raw_sign(N_CHAIN, sk)
        return run

    def raw_verify():
        def run() -> int:
            return _receipt._bench_raw_verify(N_CHAIN // 4, recs[0][136:], t0, pk)
        return run

    def ours_sign(threads: int, objects: bool = False):
        def factory():
            ch = ReceiptChain(key, ctx, dst, 1, threads=threads)

            def run() -> int:
                if objects:
                    ch.issue_batch(costs)
                else:
                    ch.issue_packed(costs)
                return N_CHAIN
            return run
        return factory

    def peer_sign():
        prefix = bytes(ctx) + bytes(key.authority_id) + bytes(dst) + (1).to_bytes(8, "big")
        state = {"nonce": 0, "prev": bytes(32)}

        def run() -> int:
            out = []
            prev, nonce = state["prev"], state["nonce"]
            for c in costs:
                nonce += 1
                body = prefix + c.to_bytes(8, "big") + nonce.to_bytes(8, "big") + prev + bytes(32)
                t = tag + body
                out.append(body + nb.crypto_sign(t, sk)[:64])
                prev = hashlib.blake2b(t, digest_size=32, person=tag).digest()
            state["prev"], state["nonce"] = prev, nonce
            return len(out)
        return run

    def ours_verify(threads: int):
        def factory():
            def run() -> int:
                return verify_chain(chain_bytes, pk, epoch=1, limit=N_CHAIN, threads=threads).count
            return run
        return factory

    def peer_verify():
        def run() -> int:
            prev, last, total = bytes(32), 0, 0
            for r in recs:
                t = tag + r[:136]
                nb.crypto_sign_open(r[136:] + t, pk)
                nonce = int.from_bytes(r[64:72], "big")
                if r[72:104] != prev or nonce <= last or r[:16] != recs[0][:16]:
                    raise ValueError("chain broken")
                total += int.from_bytes(r[56:64], "big")
                prev, last = hashlib.blake2b(t, digest_size=32, person=tag).digest(), nonce
            return len(recs)
        return run

    out: list[Group] = []
    for threads in (1, 2):
        g = Group("receipts", f"sign batch {N_CHAIN}, {threads} thread{'s' * (threads > 1)}",
                  "receipts", goals={"libsodium sign C loop": 0.9} if threads == 1 else {})
        g.add("aura issue_packed", "ours", ours_sign(threads))
        g.add("PyNaCl + hashlib loop", "peer", peer_sign)
        g.add("libsodium sign C loop", "limit", raw_sign)
        out.append(g)
    g = Group("receipts", f"sign batch {N_CHAIN} -> Receipt objects", "receipts")
    g.add("aura issue_batch", "ours", ours_sign(1, objects=True))
    g.add("libsodium sign C loop", "limit", raw_sign)
    out.append(g)
    for threads in (1, 2):
        g = Group("receipts", f"verify chain {N_CHAIN}, {threads} thread{'s' * (threads > 1)}",
                  "receipts", goals={"libsodium verify C loop": 0.9 if threads == 1 else 1.7})
        g.add("aura verify_chain", "ours", ours_verify(threads))
        g.add("PyNaCl + hashlib loop", "peer", peer_verify)
        g.add("libsodium verify C loop", "limit", raw_verify)
        out.append(g)

    peer_id = AuthorityId(bytes([9]) * 16)

    def ours_account():
        acct = FlowLedger().open(ctx, peer_id, MAX_U64)
        charge = acct.try_charge

        def run() -> int:
            for _ in range(N_CHARGES):
                charge(1)
            return N_CHARGES
        return run

    def ours_ledger():
        ledger = FlowLedger()
        ledger.open(ctx, peer_id, MAX_U64)
        charge = ledger.try_charge

        def run() -> int:
            for _ in range(N_CHARGES):
                charge(ctx, peer_id, 1)
            return N_CHARGES
        return run

    g = Group("flow", "charge (FlowAccount)", "charges", goals={"target 1M/s": 1.0})
    g.add("aura FlowAccount.try_charge", "ours", ours_account)
    g.add("target 1M/s", "limit", _fixed_rate(TARGET))
    g.add("no-op Python method call", "limit", _noop_calls())
    out.append(g)
    g = Group("flow", "charge (FlowLedger by ids)", "charges", goals={"target 1M/s": 1.0})
    g.add("aura FlowLedger.try_charge", "ours", ours_ledger)
    g.add("target 1M/s", "limit", _fixed_rate(TARGET))
    out.append(g)
    return out


def paired(rounds: int = 15, seconds: float = 0.1) -> list[tuple[str, str, float, float, float]]:
    """Ratios robust to a shared, noisy machine: ours and each other contender are timed in
    alternation, ``rounds`` times, and the median of the per-round ratios is reported.

    Returns rows (group, contender, median ours rate, median its rate, median ratio ours/it).
    ``python -m aura_core.benchsuite.receipts`` prints them.
    """
    import statistics

    from . import Contender

    def rate(run, seconds: float) -> float:
        ops, t0 = 0, time.perf_counter()
        while True:
            ops += run()
            el = time.perf_counter() - t0
            if el >= seconds:
                return ops / el

    rows = []
    for g in groups():
        cs = [c for c in g.contenders if isinstance(c, Contender)]
        ours = next(c for c in cs if c.role == "ours")
        for c in cs:
            if c is ours:
                continue
            ro, rc, ratio = [], [], []
            for _ in range(rounds):
                a = rate(ours.run, seconds)
                b = rate(c.run, seconds)
                ro.append(a)
                rc.append(b)
                ratio.append(a / b)
            rows.append((g.key, c.name, statistics.median(ro), statistics.median(rc),
                         statistics.median(ratio)))
    return rows


if __name__ == "__main__":  # pragma: no cover - manual measurement
    for key, name, a, b, r in paired():
        print(f"{key:38} ours {a:12,.0f}/s  vs {name:28} {b:12,.0f}/s  ratio {r:5.2f}x")
