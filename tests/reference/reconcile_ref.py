"""Pure-Python reference of aura_core._reconcile (GF(2^127 - 1) moments of packed 32-byte hashes).

Written from the definitions, not from the C: a key is the top 127 bits of a hash (its first 16
bytes big-endian, shifted right by one) reduced mod P = 2^127 - 1; every sum is mod P.
"""

from __future__ import annotations

P = (1 << 127) - 1


def key(h: bytes) -> int:
    return (int.from_bytes(h[:16], "big") >> 1) % P


def keys(hashes: bytes, i: int, j: int) -> list[int]:
    return [key(hashes[32 * x:32 * x + 32]) for x in range(i, j)]


def power_sums(hashes: bytes, i: int, j: int, m: int) -> list[int]:
    ks = keys(hashes, i, j)
    return [sum(pow(e, q, P) for e in ks) % P for q in range(1, m + 1)]


def prefix_moments(hashes: bytes, step: int) -> tuple[list[int], list[int], int]:
    n = len(hashes) // 32
    ks = keys(hashes, 0, n)
    ends = [min(t * step, n) for t in range(1 + (n + step - 1) // step)]
    p1 = [sum(ks[:e]) % P for e in ends]
    p2 = [sum(x * x for x in ks[:e]) % P for e in ends]
    return p1, p2, sum(x ** 3 for x in ks) % P


def lower_bound(hashes: bytes, bound: bytes, lo: int, hi: int) -> int:
    while lo < hi:
        mid = (lo + hi) // 2
        if hashes[32 * mid:32 * mid + 32] < bound:
            lo = mid + 1
        else:
            hi = mid
    return lo


def cells(hashes: bytes, i: int, j: int, k: int, b: int) -> list[tuple[int, int, int]]:
    out = [(0, 0, 0)] * (1 << b)
    for x in range(i, j):
        h = hashes[32 * x:32 * x + 32]
        c = (int.from_bytes(h[:16], "big") >> (128 - k - b)) & ((1 << b) - 1)
        n, s1, s2 = out[c]
        e = key(h)
        out[c] = (n + 1, (s1 + e) % P, (s2 + e * e) % P)
    return out
