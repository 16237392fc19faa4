"""Range-based set reconciliation over 32-byte fact hashes (Negentropy-style, with moment cells).

Theory of operation.  Fact hashes are uniform 256-bit numbers, so the key space itself is split:
a *range* is an aligned prefix ``(k, p)`` = every hash whose top ``k`` bits equal ``p``.  A
fact's *key* is the top 127 bits of its hash, an element of GF(P), P = 2^127 - 1.  A *cell*
summarises one side's facts in a range: ``count``, ``Σ key`` and ``Σ key²`` (mod P).  Because
moments add, the difference of two cells is the moments of the symmetric difference alone, and
any difference of at most two facts is *decoded* from it, whatever its shape
(:func:`decode_cell`): one fact (certified by Σ key² = key²), one on each side (x - y and
x² - y² give x and y), or two on one side (a quadratic).  Decoded keys are looked up by binary
search (keys are hash prefixes); keys the holder lacks mean a bigger difference.  The root (the
initiator's whole set) also carries Σ key³, so the first reply settles any difference of at most
three facts, wherever they sit (:func:`decode_root`: Newton's identities, then the roots of a
quadratic or a cubic over GF(P)).  Then:

* equal cells                      -> the range is reconciled (nothing is sent);
* one side has 0 facts there       -> the other pushes (or is asked for) the whole range;
* a decodable cell                 -> ours are pushed, theirs wanted by key (WANT_KEY);
* either side holds <= 64 facts    -> we list our ids there (IDS, 8 bytes each, keyed by both
                                      digests); the peer pushes what we lack and names, by a
                                      bitmap, what it lacks: the Negentropy "IdList" step;
* otherwise                        -> the range is split into 2^b children, ~one expected
                                      difference per child (from the count difference, the root
                                      COUNTS, or the fraction of unequal siblings).

A difference that stays *clustered* (alone among its siblings, in one root child by the COUNTS,
or in no root child by the COUNTS: extras of both sides cancelling within children, so the root
itself) in a range of at most MOMENTS_RANGE facts, with a count difference below MOMENTS_M, is
sent as that range's power sums Σ key^1..Σ key^12 (MOMENTS, 192 bytes): the peer decodes up to
eleven differences there at once (:func:`decode_moments`: the difference is the reduced fraction
Π(1 - x t) / Π(1 - y t), a Padé approximant of exp(-Σ p_j t^j / j)).  Unless the count
difference says the cluster fits (3..11, one-sided-looking), it is also chased with fingerprint
splits (count + 8 bytes per child) wide enough that the
cluster's child can be listed next; at the root, the COUNTS' child is chased in the first reply
while the other root children get fingerprints.  A wrong guess costs one more step for that
range, never a wrong result: every fact is checked by its hash on receipt and the journals'
digests are compared after each session.  A peer that splits inside a range we sent power sums
for could not decode them: no moments below it either.

This module is pure (no store, no I/O): :class:`SortedIds` is a snapshot of one side's hashes
(its scans, power sums and searches run in C: :mod:`aura_core._reconcile`),
:class:`Reconciler` turns received :class:`SyncMessage` s into queued pushes, wants, splits and
lists, and :func:`encode_message` / :func:`decode_message` are the wire format (version 3,
docs/wire.md "journal sync"), decoded with hard limits so peer input cannot grow memory without
bound.
"""

from __future__ import annotations

import hashlib
import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

from .. import _reconcile
from ..errors import ProtocolError

__all__ = [
    "SortedIds",
    "SyncMessage",
    "Split",
    "Limits",
    "Reconciler",
    "encode_message",
    "decode_message",
    "WIRE_VERSION",
    "FLAG_DIGEST",
    "FLAG_MORE",
    "FLAG_FIN",
]

WIRE_VERSION: Final = 3
FLAG_DIGEST: Final = 0x01  # the message starts with the sender's context id and JournalDigest
FLAG_MORE: Final = 0x02    # the sender still has queued output (pushes) for the next message
FLAG_FIN: Final = 0x04     # the initiator is done; no reply is expected

TAG_SPLIT: Final = 1
TAG_FACTS: Final = 2
TAG_WANT_ID: Final = 3
TAG_WANT_KEY: Final = 4
TAG_WANT_RANGE: Final = 5
TAG_COUNTS: Final = 6      # root children counts mod 256: sizes the first split (initiator only)
TAG_ROOT: Final = 7        # the initiator's moments (Σkey, Σkey², Σkey³) of its whole set
TAG_IDS: Final = 8         # a small range's fact ids (keyed 8-byte digests), in hash order
TAG_WANT_IDX: Final = 9    # which of the peer's listed ids we lack (a bitmap)
TAG_SPLIT_FP: Final = 10   # a split with 8-byte fingerprints instead of moments (chasing clusters)
FP_MASK: Final = (1 << 64) - 1
TAG_FACTS_ACK: Final = 11  # facts whose receipt the sender asks to be acknowledged (seed 002 §9.2)
TAG_ACKS: Final = 12       # fact hashes we received with an ack request, now persisted
TAG_MOMENTS: Final = 13    # count and power sums Σkey^1..Σkey^m of one range (a small cluster)
MOMENTS_M = 12             # power sums we send: decode up to 11 differences in the range
MAX_MOMENTS: Final = 16    # most power sums a peer may send per range (bounds our work)
MOMENTS_RANGE = 1 << 24    # most facts in a range we send moments for (~0.1 s of C at 1M)
ID_BYTES: Final = 8
IDLIST_MAX = 64            # a range this small (either side) is listed, not split
CLUSTER_EXTRA_BITS = 2     # extra fan-out bits for a difference found clustered
COUNTS_BITS: Final = 4

BITS: Final = 256
MOD256: Final = 1 << 256
P: Final = (1 << 127) - 1  # cells sum keys and squared keys in GF(P)
KEY_SHIFT: Final = BITS - 127  # a fact's key is the top 127 bits of its hash
INV2: Final = (P + 1) // 2
MAX_DEPTH: Final = 128     # ranges deeper than this are transferred whole (never reached honestly)
MAX_FANOUT_BITS: Final = 16
CHECKPOINT: Final = 64     # SortedIds keeps one prefix sum per 64 hashes
WALK_PER_CHILD: Final = 256  # cells() walks a range (in C) up to this many hashes per child
FANOUT_FACTOR = 1.5        # cells per estimated difference when a range is split
COUNTED_FACTOR = 1.0       # ... when the estimate is a count difference rather than a guess
ROOT_FACTOR = 1.0          # the same at the root (its cells hold the most facts, so cost most)
ROOT_ESTIMATE = 8.0        # differences assumed at the root when the counts say nothing
PAIR_FACTOR = 2.5          # most differences per unit of Σ|Δcount| when both sides hold extras


@dataclass(frozen=True)
class Limits:
    """Hard bounds on what a peer can make us parse, queue or buffer."""

    max_message_bytes: int = 4 << 20
    max_cells: int = 1 << 16           # cells per message, both directions
    max_facts: int = 4096              # facts per message
    max_fact_bytes: int = 64 << 10
    max_wants: int = 1 << 16           # want entries per message
    max_pending: int = 1 << 17         # queued pushes, wants and splits at any time
    max_messages: int = 4096           # messages one session may receive
    max_scan: int = 1 << 21            # extra work units (lookups, ids) one message may cost
    out_message_bytes: int = 1 << 20   # soft target for what we compose


def key_of(h: int) -> int:
    """A fact's reconciliation key: the top 127 bits of its hash, an element of GF(P)."""
    return (h >> KEY_SHIFT) % P


def _sqrt(a: int) -> int | None:
    """A square root in GF(P) (P = 3 mod 4), or None."""
    r = pow(a, (P + 1) // 4, P)
    return r if r * r % P == a % P else None


def _mean_abs_skellam(lam: float) -> float:
    """E|x - y| for independent x, y ~ Poisson(lam): 2 lam e^(-2 lam) (I0(2 lam) + I1(2 lam))."""
    h = lam  # z / 2 with z = 2 lam
    i0 = i1 = 0.0
    term = 1.0  # h^(2k) / (k!)^2
    for k in range(60):
        i0 += term
        i1 += term * h / (k + 1)
        term *= h * h / ((k + 1) * (k + 1))
    return 2 * lam * math.exp(-2 * lam) * (i0 + i1)


def pair_factor(m: float) -> float:
    """Differences per unit of |Δcount| when each side's extras in a cell are Poisson(λ) and
    the cells' mean |Δcount| is ``m``: E[x + y] / E|x - y| at the λ giving m, at most
    PAIR_FACTOR.  Near 1 when differences are sparse (few cancel), PAIR_FACTOR once about one
    and a half per side share each cell."""
    lo, hi = 0.0, 4.0  # at λ = 4 the ratio is already over PAIR_FACTOR
    if m <= 0:
        return 1.0
    if m >= _mean_abs_skellam(hi):
        return PAIR_FACTOR
    for _ in range(40):  # E|x - y| grows with λ
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if _mean_abs_skellam(mid) < m else (lo, mid)
    return max(1.0, min(PAIR_FACTOR, 2 * lo / m))


def decode_cell(dc: int, d1: int, d2: int) -> tuple[list[int], list[int]] | None:
    """The keys (ours, theirs) of a cell difference of at most two facts, or None.

    ``dc`` = our count - theirs, ``d1``/``d2`` = our sums of keys / squared keys - theirs (mod P).
    One fact (|dc| = 1) is certified by d2 = ±d1^2; one on each side (dc = 0) solves
    x - y = d1, x^2 - y^2 = d2; two on one side (|dc| = 2) solves x + y = s, x^2 + y^2 = q.
    A wrong answer for a larger difference is possible only where it names keys absent from the
    holder's range, which the caller checks (then the range is split instead).
    """
    if dc == 1:
        return ([d1], []) if d2 == d1 * d1 % P and d1 else None
    if dc == -1:
        y = -d1 % P
        return ([], [y]) if (-d2) % P == y * y % P and y else None
    if dc == 0:
        if not d1:
            return None
        t = d2 * pow(d1, P - 2, P) % P  # x + y
        x, y = (t + d1) * INV2 % P, (t - d1) * INV2 % P
        return ([x], [y]) if x != y else None
    if dc in (2, -2):
        s, q = (d1, d2) if dc == 2 else (-d1 % P, -d2 % P)
        r = _sqrt((2 * q - s * s) % P)  # (x - y)^2 = 2q - s^2
        if r is None or not r:
            return None
        x, y = (s + r) * INV2 % P, (s - r) * INV2 % P
        return ([x, y], []) if dc == 2 else ([], [x, y])
    return None


# -- three differences from three moments (the root) ----------------------------------------
# Polynomials over GF(P) are coefficient lists, lowest degree first.

def _trim(a: list[int]) -> list[int]:
    while a and not a[-1]:
        a.pop()
    return a


def _pmod(a: list[int], f: list[int]) -> list[int]:
    """a mod f (f monic)."""
    a = _trim([x % P for x in a])
    df = len(f) - 1
    while len(a) - 1 >= df:
        c, sh = a[-1], len(a) - 1 - df
        for i in range(df + 1):
            a[sh + i] = (a[sh + i] - c * f[i]) % P
        _trim(a)
    return a


def _pmulmod(a: list[int], b: list[int], f: list[int]) -> list[int]:
    out = [0] * max(1, len(a) + len(b) - 1)
    for i, x in enumerate(a):
        for j, y in enumerate(b):
            out[i + j] += x * y
    return _pmod(out, f)


def _monic(a: list[int]) -> list[int]:
    inv = pow(a[-1], P - 2, P)
    return [x * inv % P for x in a]


def _pgcd(a: list[int], b: list[int]) -> list[int]:
    a, b = _trim(list(a)), _trim(list(b))
    while b:
        a, b = b, _pmod(a, _monic(b))
    return _monic(a) if a else a


def _ppow_x(shift: int, e: int, f: list[int]) -> list[int]:
    """(x + shift)^e mod f."""
    r, base = [1], _pmod([shift, 1], f)
    while e:
        if e & 1:
            r = _pmulmod(r, base, f)
        base = _pmulmod(base, base, f)
        e >>= 1
    return r


def _quad_roots(b: int, c: int) -> list[int] | None:
    """The two distinct roots of z^2 + b z + c in GF(P), or None."""
    r = _sqrt((b * b - 4 * c) % P)
    if r is None or not r:
        return None
    return [(-b + r) * INV2 % P, (-b - r) * INV2 % P]


def cubic_roots(c1: int, c2: int, c3: int) -> list[int] | None:
    """The three distinct roots of z^3 + c1 z^2 + c2 z + c3 in GF(P), or None.

    gcd with z^P - z keeps the product of the linear factors; then one equal-degree split,
    gcd with (z + δ)^((P-1)/2) - 1 (Cantor–Zassenhaus, δ = 0, 1, ...: each δ splits the roots
    with probability 3/4), leaves a linear or quadratic factor, and the rest follows.
    """
    f = [c3 % P, c2 % P, c1 % P, 1]
    xp = _ppow_x(0, P, f)
    xp = xp + [0] * (2 - len(xp))
    xp[1] = (xp[1] - 1) % P
    if _trim(xp):  # z^P - z not divisible by f: fewer than three distinct roots in GF(P)
        return None
    for delta in range(64):
        h = _ppow_x(delta, (P - 1) // 2, f)
        h = (h or [0]) + [0] * (1 - len(h or [0]))
        h[0] = (h[0] - 1) % P
        g = _pgcd(f, h)
        if len(g) == 2:  # a root r; the others solve f / (z - r)
            r = -g[0] % P
            b = (c1 + r) % P          # f = (z - r)(z^2 + b z + c)
            c = (c2 + r * b) % P
            rest = _quad_roots(b, c)
            return None if rest is None or r in rest else [r, *rest]
        if len(g) == 3:
            two = _quad_roots(g[1], g[0])
            if two is None:
                return None
            return [*two, (-c1 - two[0] - two[1]) % P]
    return None


def _power_sums_match(ours: list[int], theirs: list[int], d: tuple[int, int, int]) -> bool:
    return all((sum(pow(x, k, P) for x in ours) - sum(pow(y, k, P) for y in theirs) - d[k - 1]) % P == 0
               for k in (1, 2, 3))


def decode_root(dc: int, d1: int, d2: int, d3: int) -> tuple[list[int], list[int]] | None:
    """The keys (ours, theirs) of a difference of at most three facts, from three moments.

    ``dc`` fixes the split between the sides whenever the total is at most three: |dc| = 3 is
    three on one side, |dc| = 1 one fact or two plus one, dc = 0 one each, |dc| = 2 two on one
    side.  Every answer is checked against all three moments; an answer for a bigger difference
    is possible only by chance (and then names keys the holder lacks, or counts that disagree).
    """
    d = (d1 % P, d2 % P, d3 % P)
    got = decode_cell(dc, d[0], d[1]) if -2 <= dc <= 2 else None
    if got is not None and _power_sums_match(*got, d):
        return got
    if dc not in (1, -1, 3, -3):
        return None
    sg = 1 if dc > 0 else -1
    p1, p2, p3 = (sg * x % P for x in d)  # the side with more extras is "ours" below
    # coefficients of Π(1 - x t) / Π(1 - y t) = exp(-Σ p_k t^k / k), by Newton's identities
    inv3 = pow(3, P - 2, P)
    c1 = -p1 % P
    c2 = -(p1 * c1 + p2) * INV2 % P
    c3 = -(p1 * c2 + p2 * c1 + p3) * inv3 % P
    if abs(dc) == 3:
        roots = cubic_roots(c1, c2, c3)
        if roots is None:
            return None
        many, few = roots, []
    else:  # two plus one: numerator 1 + n1 t + n2 t^2, denominator 1 - y t, Padé at order 3
        if not c2:
            return None
        y = c3 * pow(c2, P - 2, P) % P
        xs = _quad_roots((c1 - y) % P, (c2 - y * c1) % P)
        if xs is None or y in xs:
            return None
        many, few = xs, [y]
    got = (many, few) if sg > 0 else (few, many)
    return got if _power_sums_match(*got, d) else None


def _pdivexact(f: list[int], g: list[int]) -> list[int]:
    """f / g for a monic divisor g of f."""
    f = list(f)
    q = [0] * (len(f) - len(g) + 1)
    for s in range(len(q) - 1, -1, -1):
        c = q[s] = f[s + len(g) - 1]
        for i in range(len(g)):
            f[s + i] = (f[s + i] - c * g[i]) % P
    return q


def _split_roots(f: list[int], depth: int = 0) -> list[int] | None:
    """Roots of a monic f known to be a product of distinct linear factors."""
    n = len(f) - 1
    if n == 0:
        return []
    if n == 1:
        return [-f[0] % P]
    if n == 2:
        return _quad_roots(f[1], f[0])
    for delta in range(depth * 64, depth * 64 + 64):
        h = _ppow_x(delta, (P - 1) // 2, f) or [0]
        h[0] = (h[0] - 1) % P
        g = _pgcd(f, h)
        if 1 < len(g) < len(f):
            a, b = _split_roots(g, depth + 1), _split_roots(_pdivexact(f, g), depth + 1)
            return None if a is None or b is None else a + b
    return None


def poly_roots(f: list[int]) -> list[int] | None:
    """The distinct roots in GF(P) of monic f (lowest coefficient first), if it splits so."""
    if len(f) > 2:
        xp = _ppow_x(0, P, f)
        xp = xp + [0] * (2 - len(xp))
        xp[1] = (xp[1] - 1) % P
        if _trim(xp):  # f does not divide z^P - z
            return None
    return _split_roots([x % P for x in f])


def decode_moments(dc: int, d: list[int]) -> tuple[list[int], list[int]] | None:
    """Keys (ours, theirs) of a difference of at most len(d) - 1 facts from len(d) power sums.

    ``d[j-1]`` = our Σ key^j - theirs (mod P).  With S(t) = exp(-Σ d_j t^j / j) (Newton's
    identities), the difference is the reduced fraction N(t)/D(t) = Π(1 - x t)/Π(1 - y t):
    for each total t = |dc|, |dc| + 2, ... < len(d) (a = (t + dc)/2 ours, b = (t - dc)/2
    theirs), D is solved from the coefficients a+1..a+b of S·D = N, and the remaining
    coefficients up to len(d) must vanish (the check).  The smallest such t is the true one.
    """
    m = len(d)
    c = [1] + [0] * m
    for k in range(1, m + 1):
        c[k] = -sum(d[i - 1] * c[k - i] for i in range(1, k + 1)) * pow(k, P - 2, P) % P
    for t in range(max(abs(dc), 1 if dc else 2), m, 2):
        a, b = (t + dc) // 2, (t - dc) // 2
        # b equations in d_1..d_b: c_k + Σ d_i c_{k-i} = 0, k = a+1..a+b (Gaussian elimination)
        rows = [[c[k - i] if k - i >= 0 else 0 for i in range(1, b + 1)] + [-c[k] % P]
                for k in range(a + 1, a + b + 1)]
        ok = True
        for col in range(b):
            piv = next((r for r in range(col, b) if rows[r][col]), None)
            if piv is None:
                ok = False
                break
            rows[col], rows[piv] = rows[piv], rows[col]
            inv = pow(rows[col][col], P - 2, P)
            rows[col] = [x * inv % P for x in rows[col]]
            for r in range(b):
                if r != col and rows[r][col]:
                    f = rows[r][col]
                    rows[r] = [(x - f * y) % P for x, y in zip(rows[r], rows[col])]
        if not ok:
            continue
        den = [1] + [rows[i][b] for i in range(b)]
        num = [sum(den[i] * c[k - i] for i in range(min(k, b) + 1)) % P for k in range(m + 1)]
        if any(num[a + 1:]) or (a and not num[a]) or (b and not den[b]):
            continue
        ours = poly_roots(num[a::-1])   # z^a + N1 z^(a-1) + ... + N_a, lowest first
        theirs = poly_roots(den[::-1])
        if ours is None or theirs is None or len(set(ours) | set(theirs)) != t:
            return None
        return ours, theirs
    return None


# -- snapshot of one side's hashes ---------------------------------------------------------

class SortedIds:
    """Sorted 32-byte hashes in one bytes object plus prefix moments every CHECKPOINT entries.

    The scans over the hashes (prefix moments, power sums of a run, child cells) run in C
    (:mod:`aura_core._reconcile`, GIL released); lookups stay here.
    """

    __slots__ = ("blob", "n", "_p1", "_p2", "s3", "_whole")

    def __init__(self, blob: bytes) -> None:
        if len(blob) % 32:
            raise ValueError("hash blob is a multiple of 32 bytes")
        self.blob = blob
        self.n = len(blob) // 32
        # s3: Σ key^3 of the whole set (only the root carries a third moment)
        self._p1, self._p2, self.s3 = _reconcile.prefix_moments(blob, CHECKPOINT)
        self._whole: dict[int, list[int]] = {}  # the whole set's power sums, by m (root MOMENTS)

    @classmethod
    def of(cls, hashes: list[bytes]) -> SortedIds:
        return cls(b"".join(sorted(set(hashes))))

    def key(self, i: int) -> bytes:
        return self.blob[i * 32:i * 32 + 32]

    def index(self, bound: int, lo: int = 0, hi: int | None = None) -> int:
        """First position whose hash >= ``bound`` (0 <= bound <= 2^256), searched in [lo, hi]."""
        if bound >= MOD256:
            return self.n
        return _reconcile.lower_bound(self.blob, bound.to_bytes(32, "big"), lo,
                                      self.n if hi is None else hi)

    def moments(self, i: int) -> tuple[int, int]:
        """(Σ key, Σ key^2) mod P over positions [0, i)."""
        c = i // CHECKPOINT
        a1, a2 = self._p1[c], self._p2[c]
        if i > c * CHECKPOINT:
            r1, r2 = _reconcile.power_sums(self.blob, c * CHECKPOINT, i, 2)
            return (a1 + r1) % P, (a2 + r2) % P
        return a1, a2

    def cell(self, i: int, j: int) -> tuple[int, int, int]:
        """(count, Σ key, Σ key^2) over positions [i, j)."""
        a1, a2 = self.moments(i)
        b1, b2 = self.moments(j)
        return j - i, (b1 - a1) % P, (b2 - a2) % P

    def power_sums(self, i: int, j: int, m: int) -> list[int]:
        """Σ key^1 .. Σ key^m (mod P) over positions [i, j): O((j - i) m), in C."""
        if i or j != self.n:
            return _reconcile.power_sums(self.blob, i, j, m)
        if m not in self._whole:  # a snapshot serves every peer's session: sum the root once
            self._whole[m] = _reconcile.power_sums(self.blob, 0, j, m)
        return list(self._whole[m])

    def cells(self, k: int, p: int, b: int) -> tuple[list[int], list[tuple[int, int, int]]]:
        """Positions and cells (count, Σ key, Σ key^2) of the 2^b children of range (k, p).

        Returns ``(starts, cells)``: child c holds positions [starts[c], starts[c+1]).
        Costs O(r + 2^b) for r hashes in the range: one C walk over the hashes when they are
        few per child, prefix moments at the child boundaries otherwise.
        """
        m = 1 << b
        lo, hi = range_bounds(k, p)
        i0, i1 = self.index(lo), self.index(hi)
        if i1 - i0 <= WALK_PER_CHILD * m:
            cells = _reconcile.cells(self.blob, i0, i1, k, b)
            starts = [i0]
            for count, _, _ in cells:
                starts.append(starts[-1] + count)
            return starts, cells
        shift = BITS - k - b
        starts = [i0]
        for c in range(1, m):
            starts.append(self.index(lo + (c << shift), starts[-1], i1))
        starts.append(i1)
        mom = [self.moments(x) for x in starts]
        return starts, [(starts[c + 1] - starts[c], (mom[c + 1][0] - mom[c][0]) % P,
                         (mom[c + 1][1] - mom[c][1]) % P) for c in range(m)]

    def contains(self, h: bytes) -> bool:
        i = self.index(int.from_bytes(h, "big"))
        return i < self.n and self.key(i) == h

    def find_key(self, i: int, j: int, key: int) -> bytes | None:
        """The hash in positions [i, j) whose key is ``key``, if any (a binary search)."""
        if not 0 <= key < P:
            return None
        x = self.index(key << KEY_SHIFT, i, j)
        if x < j:
            h = self.key(x)
            if key_of(int.from_bytes(h, "big")) == key:
                return h
        return None


def _within(k: int, p: int, ka: int, pa: int) -> bool:
    """Range (k, p) lies inside range (ka, pa)."""
    return k >= ka and p >> (k - ka) == pa


def range_bounds(k: int, p: int) -> tuple[int, int]:
    shift = BITS - k
    return p << shift, (p + 1) << shift


# -- messages --------------------------------------------------------------------------------

@dataclass
class Split:
    """The sender's cells for the 2^b children of range (k, p): (count, Σ key, Σ key^2 mod P).

    A fingerprint split (``fp``) carries (count, Σ key mod 2^64, 0): it finds unequal children
    at a third of the cost, without decoding them.
    """

    k: int
    p: int
    b: int
    cells: list[tuple[int, int, int]]
    fp: bool = False


@dataclass
class SyncMessage:
    flags: int = 0
    ctx: bytes = b""        # the initiator's context id (in the ROOT section)
    count: int = 0          # digest (when FLAG_DIGEST)
    total: int = 0
    splits: list[Split] = field(default_factory=list)
    facts: list[bytes] = field(default_factory=list)
    ack_facts: list[bytes] = field(default_factory=list)  # facts sent with "ack requested"
    acks: list[bytes] = field(default_factory=list)       # 32-byte hashes of facts we acknowledge
    want_ids: list[tuple[int, bytes]] = field(default_factory=list)     # (k, full hash)
    want_keys: list[tuple[int, int, int]] = field(default_factory=list)  # (k, p, low128)
    want_ranges: list[tuple[int, int]] = field(default_factory=list)    # (k, p)
    counts: bytes = b""     # counts mod 256 of the 2^b root children (b = log2 len)
    root: tuple[int, int, int] | None = None  # the initiator's (Σ key, Σ key^2, Σ key^3), whole set
    ids: list[tuple[int, int, bytes]] = field(default_factory=list)       # (k, p, n * 8 bytes)
    want_idx: list[tuple[int, int, int, bytes]] = field(default_factory=list)  # (k, p, n, bitmap)
    moments: list[tuple[int, int, int, tuple[int, ...]]] = field(default_factory=list)  # (k, p, count, sums)

    @property
    def has_requests(self) -> bool:
        return bool(self.splits or self.want_ids or self.want_keys or self.want_ranges
                    or self.ids or self.want_idx or self.moments)

    @property
    def is_empty(self) -> bool:
        return not (self.has_requests or self.facts or self.ack_facts or self.acks)


def _varint(n: int, out: bytearray) -> None:
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)


def _range(k: int, p: int, out: bytearray) -> None:
    out.append(k)
    out += p.to_bytes((k + 7) // 8, "big")


def encode_message(m: SyncMessage) -> bytes:
    out = bytearray((WIRE_VERSION, m.flags))
    if m.flags & FLAG_DIGEST:
        _varint(m.count, out)
        out += m.total.to_bytes(32, "big")
    if m.root is not None:
        out.append(TAG_ROOT)
        out += m.ctx + b"".join(x.to_bytes(16, "big") for x in m.root)
    if m.counts:
        out.append(TAG_COUNTS)
        out.append(len(m.counts).bit_length() - 1)
        out += m.counts
    for k, p, count, sums in m.moments:
        out.append(TAG_MOMENTS)
        _range(k, p, out)
        out.append(len(sums) or 1)  # an empty range states no sums (but m >= 1)
        _varint(count, out)
        if count:
            out += b"".join(x.to_bytes(16, "big") for x in sums)
    for s in m.splits:
        out.append(TAG_SPLIT_FP if s.fp else TAG_SPLIT)
        _range(s.k, s.p, out)
        out.append(s.b)
        for count, s1, s2 in s.cells:
            _varint(count, out)
            if count and s.fp:
                out += (s1 & FP_MASK).to_bytes(8, "big")
            elif count:
                out += s1.to_bytes(16, "big") + s2.to_bytes(16, "big")
    for tag, bodies in ((TAG_FACTS, m.facts), (TAG_FACTS_ACK, m.ack_facts)):
        if bodies:
            out.append(tag)
            _varint(len(bodies), out)
            for body in bodies:
                _varint(len(body), out)
                out += body
    if m.acks:
        out.append(TAG_ACKS)
        _varint(len(m.acks), out)
        out += b"".join(m.acks)
    for k, h in m.want_ids:
        out.append(TAG_WANT_ID)
        out.append(k)
        out += h
    for k, p, key in m.want_keys:
        out.append(TAG_WANT_KEY)
        _range(k, p, out)
        out += key.to_bytes(16, "big")
    for k, p in m.want_ranges:
        out.append(TAG_WANT_RANGE)
        _range(k, p, out)
    for k, p, blob in m.ids:
        out.append(TAG_IDS)
        _range(k, p, out)
        _varint(len(blob) // ID_BYTES, out)
        out += blob
    for k, p, n, bitmap in m.want_idx:
        out.append(TAG_WANT_IDX)
        _range(k, p, out)
        _varint(n, out)
        out += bitmap
    return bytes(out)


class _Reader:
    __slots__ = ("buf", "pos")

    def __init__(self, buf: bytes) -> None:
        self.buf = buf
        self.pos = 0

    def fail(self, what: str) -> ProtocolError:
        return ProtocolError(f"malformed sync message: {what} at byte {self.pos}")

    def take(self, n: int) -> bytes:
        end = self.pos + n
        if end > len(self.buf):
            raise self.fail("truncated")
        out = self.buf[self.pos:end]
        self.pos = end
        return out

    def u8(self) -> int:
        if self.pos >= len(self.buf):
            raise self.fail("truncated")
        v = self.buf[self.pos]
        self.pos += 1
        return v

    def varint(self) -> int:
        n = shift = 0
        while True:
            byte = self.u8()
            n |= (byte & 0x7F) << shift
            if not byte & 0x80:
                if byte == 0 and shift:
                    raise self.fail("non-minimal varint")
                return n
            shift += 7
            if shift > 56:
                raise self.fail("varint too long")

    def elem(self) -> int:
        v = int.from_bytes(self.take(16), "big")
        if v >= P:
            raise self.fail("field element out of range")
        return v

    def range(self) -> tuple[int, int]:
        k = self.u8()
        if k > MAX_DEPTH:
            raise self.fail("range too deep")
        p = int.from_bytes(self.take((k + 7) // 8), "big")
        if p >> k:
            raise self.fail("range prefix out of bounds")
        return k, p


def decode_message(data: bytes, limits: Limits = Limits()) -> SyncMessage:
    """Parse one sync message; every malformed or oversize input raises ProtocolError."""
    if len(data) > limits.max_message_bytes:
        raise ProtocolError("sync message too large")
    r = _Reader(bytes(data))
    if r.u8() != WIRE_VERSION:
        raise ProtocolError("unknown sync wire version")
    m = SyncMessage(flags=r.u8())
    if m.flags & ~(FLAG_DIGEST | FLAG_MORE | FLAG_FIN):
        raise r.fail("unknown flags")
    if m.flags & FLAG_DIGEST:
        m.count = r.varint()
        m.total = int.from_bytes(r.take(32), "big")
    cells = wants = 0
    while r.pos < len(r.buf):
        tag = r.u8()
        if tag in (TAG_SPLIT, TAG_SPLIT_FP):
            k, p = r.range()
            b = r.u8()
            if not 1 <= b <= MAX_FANOUT_BITS or k + b > MAX_DEPTH:
                raise r.fail("bad fan-out")
            cells += 1 << b
            if cells > limits.max_cells:
                raise r.fail("too many cells")
            lst = []
            for _ in range(1 << b):
                c = r.varint()
                if tag == TAG_SPLIT_FP:
                    lst.append((c, int.from_bytes(r.take(8), "big"), 0) if c else (0, 0, 0))
                else:
                    lst.append((c, r.elem(), r.elem()) if c else (0, 0, 0))
            m.splits.append(Split(k, p, b, lst, tag == TAG_SPLIT_FP))
        elif tag == TAG_ROOT:
            if m.root is not None:
                raise r.fail("root repeated")
            m.ctx = r.take(16)
            m.root = (r.elem(), r.elem(), r.elem())
        elif tag == TAG_COUNTS:
            b = r.u8()
            if m.counts or not 1 <= b <= 8:
                raise r.fail("bad counts section")
            m.counts = r.take(1 << b)
        elif tag in (TAG_FACTS, TAG_FACTS_ACK):
            n = r.varint()
            dest = m.facts if tag == TAG_FACTS else m.ack_facts
            if not n or dest or n + len(m.facts) + len(m.ack_facts) > limits.max_facts:
                raise r.fail("bad fact batch")
            for _ in range(n):
                ln = r.varint()
                if not 0 < ln <= limits.max_fact_bytes:
                    raise r.fail("fact size out of bounds")
                dest.append(r.take(ln))
        elif tag == TAG_ACKS:
            n = r.varint()
            wants += n
            if not n or m.acks or wants > limits.max_wants:
                raise r.fail("bad acks")
            blob = r.take(32 * n)
            m.acks = [blob[x:x + 32] for x in range(0, len(blob), 32)]
        elif tag in (TAG_WANT_ID, TAG_WANT_KEY, TAG_WANT_RANGE):
            wants += 1
            if wants > limits.max_wants:
                raise r.fail("too many wants")
            if tag == TAG_WANT_ID:
                k = r.u8()
                if k > MAX_DEPTH:
                    raise r.fail("range too deep")
                m.want_ids.append((k, r.take(32)))
            elif tag == TAG_WANT_KEY:
                k, p = r.range()
                m.want_keys.append((k, p, r.elem()))
            else:
                m.want_ranges.append(r.range())
        elif tag == TAG_IDS:
            k, p = r.range()
            n = r.varint()
            cells += n
            if not n or cells > limits.max_cells:
                raise r.fail("bad id list")
            m.ids.append((k, p, r.take(n * ID_BYTES)))
        elif tag == TAG_WANT_IDX:
            wants += 1
            if wants > limits.max_wants:
                raise r.fail("too many wants")
            k, p = r.range()
            n = r.varint()
            if not 0 < n <= limits.max_cells:
                raise r.fail("bad id bitmap")
            bitmap = r.take((n + 7) // 8)
            if n % 8 and bitmap[-1] & ((1 << (8 - n % 8)) - 1):
                raise r.fail("bitmap padding")
            m.want_idx.append((k, p, n, bitmap))
        elif tag == TAG_MOMENTS:
            k, p = r.range()
            nm = r.u8()
            cells += nm
            if not 1 <= nm <= MAX_MOMENTS or cells > limits.max_cells:
                raise r.fail("bad moments")
            count = r.varint()
            m.moments.append((k, p, count, tuple(r.elem() for _ in range(nm)) if count else ()))
        else:
            raise r.fail("unknown section")
    return m


# -- the protocol engine ---------------------------------------------------------------------

FetchIds = Callable[[list[bytes]], dict[bytes, bytes]]
FetchRange = Callable[[bytes, "bytes | None", int], list[tuple[bytes, bytes]]]


class Reconciler:
    """One side of one reconciliation session over a fixed snapshot of its hashes.

    ``process(msg)`` compares the peer's cells with ours and queues what to push, want or split;
    ``compose(...)`` drains the queues into the next message within the size limits.
    """

    def __init__(self, ids: SortedIds, limits: Limits = Limits()) -> None:
        self.ids = ids
        self.limits = limits
        self.push_ids: deque[bytes] = deque()
        self.push_ranges: deque[tuple[bytes, bytes | None]] = deque()
        self.splits: deque[Split] = deque()
        self.want_ids: list[tuple[int, bytes]] = []
        self.want_keys: list[tuple[int, int, int]] = []
        self.want_ranges: list[tuple[int, int]] = []
        self.ids_out: deque[tuple[int, int, bytes]] = deque()
        self.want_idx: list[tuple[int, int, int, bytes]] = []
        self.moments_out: list[tuple[int, int, int, tuple[int, ...]]] = []
        self._big: set[tuple[int, int]] = set()  # ranges whose moments did not decode
        self._mom_sent: set[tuple[int, int]] = set()  # ranges we sent power sums for
        self._split: set[tuple[int, int]] = set()  # ranges we sent cells for (once is enough)
        self.id_key = b""        # keys the 8-byte ids of IDS lists (set_id_key, once digests are known)
        self._work = 0
        self._cells_left = 0
        self._moment_keys = 0    # keys this message's MOMENTS may sum (uncached ranges)
        self.pushed = 0          # facts sent
        self.wanted = 0          # want entries sent

    # ---- analysis of what the peer sent ----
    def pending(self) -> int:
        return (len(self.push_ids) + len(self.push_ranges) + len(self.splits) + len(self.want_ids)
                + len(self.want_keys) + len(self.want_ranges) + len(self.ids_out) + len(self.want_idx)
                + len(self.moments_out))

    def set_id_key(self, initiator_total: int, responder_total: int) -> None:
        """Key the IDS ids by both digests, so nobody can grind colliding ids in advance."""
        h = hashlib.blake2b(digest_size=16, person=b"aura.sync.ids.v2")
        h.update(initiator_total.to_bytes(32, "big") + responder_total.to_bytes(32, "big"))
        self.id_key = h.digest()

    def _ids_of(self, i: int, j: int) -> list[bytes]:
        key, blob = self.id_key, self.ids.blob
        return [hashlib.blake2b(blob[o:o + 32], digest_size=ID_BYTES, key=key).digest()
                for o in range(i * 32, j * 32, 32)]

    def _range_pos(self, k: int, p: int) -> tuple[int, int]:
        lo, hi = range_bounds(k, p)
        i = self.ids.index(lo)
        return i, self.ids.index(hi, i)

    def _check_pending(self) -> None:
        if self.pending() > self.limits.max_pending:
            raise ProtocolError("peer requests exceed the pending-work bound")

    def _charge(self, work: int) -> None:
        # an honest message's ranges are disjoint, so each kind of work it causes is at most
        # the journal size; a message that asks for more is hostile
        self._work -= work
        if self._work < 0:
            raise ProtocolError("sync message exceeds the work bound")

    def _find(self, i: int, j: int, key: int) -> bytes | None:
        self._charge(1)
        return self.ids.find_key(i, j, key)

    def process(self, m: SyncMessage, *, root: tuple[int, int, int, int] | None = None) -> None:
        """Queue our response to ``m``; ``root`` is the peer's root cell (count, Σkey, Σkey²,
        Σkey³) if this is its first message."""
        self._work = 4 * self.ids.n + 4 * self.limits.max_cells + self.limits.max_scan
        self._cells_left = self.limits.max_cells
        # an honest message's MOMENTS ranges are disjoint (the whole set's sums are cached), so
        # a message costs at most one scan of the journal in power sums, however it is built
        self._moment_keys = self.ids.n
        if root is not None:
            tc, t1, t2, t3 = root
            oc, o1, o2 = self.ids.cell(0, self.ids.n)
            if (oc, o1, o2, self.ids.s3) != root and not self._resolve_root(m.counts, root):
                self._narrow_root(m.counts, oc, tc)
        nested = {(sp.k, sp.p) for sp in m.splits}
        resolved = set()
        for k, p, count, sums in m.moments:
            if self._process_moments(k, p, count, sums, (k, p) in nested):
                resolved.add((k, p))
        nested |= {(k, p) for k, p, _, _ in m.moments}  # compared there, not in a parent split
        for sp in m.splits:
            if (sp.k, sp.p) not in resolved:
                self._process_split(sp, nested)
        for k, h in m.want_ids:
            if self.ids.contains(h):
                self.push_ids.append(h)
            else:  # their candidate was wrong: split the range it came from
                self._queue_split(k, int.from_bytes(h, "big") >> (BITS - k) if k else 0, est=3)
        for k, p, key in m.want_keys:
            lo, hi = range_bounds(k, p)
            found = self._find(self.ids.index(lo), self.ids.index(hi), key)
            if found is not None:
                self.push_ids.append(found)
            else:
                self._queue_split(k, p, est=3)
        for k, p in m.want_ranges:
            self._push_range(k, p)
        for k, p, blob in m.ids:
            i, j = self._range_pos(k, p)
            if j - i > 4 * IDLIST_MAX:  # honest lists name ranges where both sides hold few
                raise ProtocolError("id list for a large range")
            self._charge(j - i + len(blob) // ID_BYTES)
            mine = self._ids_of(i, j)
            listed = [blob[x:x + ID_BYTES] for x in range(0, len(blob), ID_BYTES)]
            theirs = set(listed)
            self.push_ids.extend(self.ids.key(i + x) for x, e in enumerate(mine) if e not in theirs)
            have = set(mine)
            bits = [e not in have for e in listed]
            if any(bits):
                bm = bytearray((len(bits) + 7) // 8)
                for x, want in enumerate(bits):
                    if want:
                        bm[x >> 3] |= 0x80 >> (x & 7)
                self.want_idx.append((k, p, len(bits), bytes(bm)))
        for k, p, n, bitmap in m.want_idx:
            i, j = self._range_pos(k, p)
            if j - i != n:
                raise ProtocolError("id bitmap does not match the listed range")
            self._charge(n)
            self.push_ids.extend(self.ids.key(i + x) for x in range(n) if bitmap[x >> 3] & (0x80 >> (x & 7)))
        self._check_pending()

    def root_counts(self, b: int = COUNTS_BITS) -> bytes:
        """Our counts (mod 256) of the 2^b root children, for the first message."""
        idx = [self.ids.index(c << (BITS - b)) for c in range((1 << b) + 1)]
        return bytes((idx[c + 1] - idx[c]) & 0xFF for c in range(1 << b))

    def root_moments(self) -> tuple[int, int, int]:
        _, s1, s2 = self.ids.cell(0, self.ids.n)
        return s1, s2, self.ids.s3

    def _resolve_root(self, counts: bytes, root: tuple[int, int, int, int]) -> bool:
        """Settle the whole difference from the root cells when it is at most three facts.

        The decoded own keys must all be held, and the decoded keys' spread over the root
        children must agree with the peer's COUNTS (when sent): the check on keys of theirs,
        which we cannot look up.
        """
        tc, t1, t2, t3 = root
        oc, o1, o2 = self.ids.cell(0, self.ids.n)
        if not tc or not oc:
            return self._resolve(0, 0, 0, oc, (oc, o1, o2), root[:3])
        got = decode_root(oc - tc, o1 - t1, o2 - t2, self.ids.s3 - t3)
        if got is None:
            return False
        mine, other = got
        if counts:
            b = len(counts).bit_length() - 1
            delta = [0] * len(counts)
            for x in mine:
                delta[x >> (127 - b)] += 1
            for y in other:
                delta[y >> (127 - b)] -= 1
            if any((o - t - dl) & 0xFF for o, t, dl in zip(self.root_counts(b), counts, delta)):
                return False
        found = [self._find(0, self.ids.n, x) for x in mine]
        if any(h is None for h in found):
            return False
        self.push_ids.extend(h for h in found if h is not None)
        self.want_keys.extend((0, 0, y) for y in other)
        return True

    def _root_estimate(self, counts: bytes) -> tuple[float, bool, int, bool]:
        """Differences expected at the root, from the peer's per-child counts if it sent them.

        Σ|Δc| over children counts every difference when one side holds all the extras (the
        signed sum then has the same magnitude); when both sides hold extras (``two_sided``) they
        partly cancel within a child, so the sum is scaled up by :func:`pair_factor` (E[x+y] /
        E|x-y| for Poisson x, y: ~1 when sparse, 2.5 when dense).  The difference looks clustered when at most one child's count differs (the
        root cell could not be decoded, so there are at least three differences).
        """
        if not counts:
            return ROOT_ESTIMATE, False, -1, False
        ours = self.root_counts(len(counts).bit_length() - 1)
        deltas = [((o - t + 128) & 0xFF) - 128 for o, t in zip(ours, counts)]
        total = sum(abs(d) for d in deltas)
        two_sided = abs(sum(deltas)) != total
        est = max(3.0, total * pair_factor(total / len(deltas)) if two_sided else float(total))
        nonzero = [c for c, d in enumerate(deltas) if d]
        return est, len(nonzero) <= 1, nonzero[0] if len(nonzero) == 1 else -1, two_sided

    def _narrow_root(self, counts: bytes, oc: int, tc: int) -> None:
        est, clustered, child, two_sided = self._root_estimate(counts)
        b0 = len(counts).bit_length() - 1
        if counts and (clustered and child < 0 or two_sided and est <= (MOMENTS_M - 1) / 2) \
                and self._moments_fit(0, 0, oc, oc - tc):
            # few differences of both sides, or extras cancelling within every root child: the
            # root's power sums settle up to eleven wherever they are (at ~a third of the cost
            # of full cells); the children's fingerprints find them if there are more
            self._send_moments(0, 0, 0, oc)
            self._queue_split(0, 0, 0.0, b_fixed=b0, fp=True)
            return
        if not (clustered and child >= 0 and max(oc, tc) > IDLIST_MAX):
            self._narrow(0, 0, 0, oc, oc, tc, est, clustered)
            return
        # the counts put every difference in one root child: fingerprint the root's children
        # (a check that nothing hides elsewhere, and the fallback for that child's power sums)
        # and chase that child in the same message
        self._queue_split(0, 0, 0.0, b_fixed=b0, fp=True)
        i, j = self._range_pos(b0, child)
        delta = ((j - i - counts[child] + 128) & 0xFF) - 128
        self._narrow(b0, child, i, j, j - i, j - i - delta, est, True, chase=False)

    def _process_moments(self, k: int, p: int, tc: int, sums: tuple[int, ...], split: bool) -> bool:
        """Compare a peer's power sums of a range: settled (True), or narrowed unless ``split``
        (the same message also splits the range: that split is the fallback)."""
        i, j = self._range_pos(k, p)
        oc = j - i
        self._charge(len(sums) + (j - i) * len(sums) // 8)
        if tc and oc and oc <= 2 * MOMENTS_RANGE:
            if oc != self.ids.n:
                self._moment_keys -= oc
                if self._moment_keys < 0:
                    raise ProtocolError("sync message exceeds the work bound")
            ours = self.ids.power_sums(i, j, len(sums))
            if oc == tc and tuple(ours) == sums:
                return True
            got = decode_moments(oc - tc, [(o - t) % P for o, t in zip(ours, sums)])
            if got is not None:
                found = [self._find(i, j, x) for x in got[0]]
                if all(h is not None for h in found):
                    self.push_ids.extend(h for h in found if h is not None)
                    self.want_keys.extend((k, p, y) for y in got[1])
                    return True
        elif not tc or not oc:
            cell = (oc, 0, 0)
            return self._resolve(k, p, i, j, cell, (tc, 0, 0)) if oc != tc else True
        self._big.add((k, p))  # too many differences: no moments for its subranges either
        if not split:
            # chased as wide as a cluster of a few differences: reaching listable ranges matters
            self._narrow(k, p, i, j, oc, tc, float(max(abs(oc - tc), 3)), True)
        return False

    def _process_split(self, sp: Split, nested: set[tuple[int, int]] = set()) -> None:
        # the peer splits inside a range we sent power sums for: they did not decode there
        self._big.update(r for r in self._mom_sent if _within(sp.k, sp.p, *r))
        kc = sp.k + sp.b
        base = sp.p << sp.b
        self._charge(len(sp.cells))
        starts, cells = self.ids.cells(sp.k, sp.p, sp.b)
        self._charge(starts[-1] - starts[0])
        if sp.fp:
            cells = [(c, s1 & FP_MASK, 0) for c, s1, _ in cells]
        unequal = [c for c in range(len(cells)) if cells[c] != sp.cells[c]]
        if not unequal:
            return
        m, q = len(sp.cells), len(unequal)
        d_est = m * math.log(m / (m - q)) if q < m else m * (math.log(m) + 1.0)
        per_child = max(3.0, d_est / q)
        # one unequal child among many, or two neighbours (a cluster across their boundary)
        clustered = m >= 8 and (q == 1 or q == 2 and unequal[1] == unequal[0] + 1)
        if sp.fp and not clustered:  # an unequal fingerprint child may hold a single difference
            per_child = max(1.5, d_est / q)
        for c in unequal:
            if (kc, base | c) in nested:  # the same message splits it further: compared there
                continue
            self._compare(kc, base | c, starts[c], starts[c + 1], cells[c], sp.cells[c], per_child,
                          clustered, sp.fp)

    def _compare(self, k: int, p: int, i: int, j: int, ours: tuple[int, int, int],
                 theirs: tuple[int, int, int], est: float, clustered: bool = False,
                 fp: bool = False) -> None:
        if not self._resolve(k, p, i, j, ours, theirs, fp):
            self._narrow(k, p, i, j, ours[0], theirs[0], est, clustered)

    def _resolve(self, k: int, p: int, i: int, j: int, ours: tuple[int, int, int],
                 theirs: tuple[int, int, int], fp: bool = False) -> bool:
        """Settle an unequal range directly (one side empty, or a decodable cell)."""
        oc, o1, o2 = ours
        tc, t1, t2 = theirs
        if tc == 0:
            self._push_range(k, p)
            return True
        if oc == 0:
            self.want_ranges.append((k, p))
            return True
        dc = oc - tc
        small = max(oc, tc) <= IDLIST_MAX and j > i
        # two facts of theirs cannot be certified from two moments: a small range is listed instead
        decodable = -2 <= dc <= 2 and not fp and not (dc == -2 and small)
        got = decode_cell(dc, (o1 - t1) % P, (o2 - t2) % P) if decodable else None
        if got is not None:
            mine, other = got
            found = [self._find(i, j, x) for x in mine]
            if all(h is not None for h in found):
                self.push_ids.extend(h for h in found if h is not None)
                self.want_keys.extend((k, p, y) for y in other)
                return True
        return False

    def _moments_fit(self, k: int, p: int, oc: int, dc: int) -> bool:
        """Our power sums of range (k, p) could settle it: not too many facts or differences,
        not sent before, and not inside a range whose power sums did not decode."""
        return IDLIST_MAX < oc <= MOMENTS_RANGE and abs(dc) < MOMENTS_M and (k, p) not in self._split \
            and not any(_within(k, p, kb, pb) for kb, pb in self._big)

    def _send_moments(self, k: int, p: int, i: int, j: int) -> None:
        self._mom_sent.add((k, p))
        self._charge((j - i) * MOMENTS_M // 8)
        self.moments_out.append((k, p, j - i, tuple(self.ids.power_sums(i, j, MOMENTS_M))))

    def _narrow(self, k: int, p: int, i: int, j: int, oc: int, tc: int, est: float,
                clustered: bool, chase: bool = True) -> None:
        """An unresolved range: list it if small, else split it (chasing it if clustered)."""
        dc = oc - tc
        if max(oc, tc) <= IDLIST_MAX and j > i:  # list our ids: the peer resolves it in one step
            self._charge(j - i)
            self.ids_out.append((k, p, b"".join(self._ids_of(i, j))))
            return
        # a clustered difference (alone among its siblings) is chased with extra fan-out, up to
        # children small enough to be listed next time
        size = max(oc, tc) if clustered else 0
        if clustered and self._moments_fit(k, p, oc, dc):
            # a small cluster in a big range: our power sums let the peer decode up to
            # MOMENTS_M - 1 differences at once; a one-sided cluster (|dc| = its size) that fits
            # needs nothing else, nor one whose fallback the caller sends; any other is also
            # chased in case it is bigger
            self._send_moments(k, p, i, j)
            if 3 <= abs(dc) < MOMENTS_M or not chase:
                self._split.add((k, p))
                return
        if abs(dc) >= max(3.0, est):  # the count difference is a solid estimate
            self._queue_split(k, p, abs(dc), COUNTED_FACTOR, size)
        else:
            self._queue_split(k, p, max(est, 1.5), 0.0, size)

    def _push_range(self, k: int, p: int) -> None:
        lo, hi = range_bounds(k, p)
        self.push_ranges.append((lo.to_bytes(32, "big"), None if hi >= MOD256 else hi.to_bytes(32, "big")))

    def _queue_split(self, k: int, p: int, est: float, factor: float = 0.0, size: int = 0, *,
                     b_fixed: int = 0, fp: bool = False) -> None:
        if (k, p) in self._split:
            return
        self._split.add((k, p))
        if k >= MAX_DEPTH - 1:  # never happens with honest hashes: exchange the range whole
            self._push_range(k, p)
            self.want_ranges.append((k, p))
            return
        if not factor:
            factor = ROOT_FACTOR if k == 0 else FANOUT_FACTOR
        if b_fixed:
            b = b_fixed
        else:
            b = math.ceil(math.log2(factor * est))
            fp = size > IDLIST_MAX  # chasing a cluster: cheap cells, wide enough to list next time
            if fp:
                # children of ~IDLIST_MAX / 2 facts (so few exceed IDLIST_MAX, and the cluster's
                # child is listed next) if that costs at most one bit more than the extra bits
                want = math.ceil(math.log2(2 * size / IDLIST_MAX))
                b = max(b, want if want <= b + CLUSTER_EXTRA_BITS + 1 else b + CLUSTER_EXTRA_BITS)
        b = max(1, min(MAX_FANOUT_BITS, MAX_DEPTH - k, b))
        while b > 1 and (1 << b) > self._cells_left:  # keep what one message makes us build bounded
            b -= 1
        self._cells_left -= 1 << b
        self._charge(1 << b)
        starts, cells = self.ids.cells(k, p, b)
        self._charge(starts[-1] - starts[0])
        self.splits.append(Split(k, p, b, cells, fp))

    # ---- composing our next message ----
    def compose(self, m: SyncMessage, fetch_ids: FetchIds, fetch_range: FetchRange) -> None:
        """Fill ``m`` from the queues, within the outgoing limits; leftovers stay queued."""
        lim = self.limits
        budget = lim.out_message_bytes
        cells = 0
        while self.splits and cells + len(self.splits[0].cells) <= lim.max_cells:
            sp = self.splits.popleft()
            cells += len(sp.cells)
            budget -= 3 + (11 if sp.fp else 35) * len(sp.cells)
            m.splits.append(sp)
        while self.moments_out and cells + MAX_MOMENTS <= lim.max_cells:
            mo = self.moments_out.pop(0)
            cells += len(mo[3])
            budget -= 8 + 16 * len(mo[3])
            m.moments.append(mo)
        while self.ids_out and cells + len(self.ids_out[0][2]) // ID_BYTES <= lim.max_cells:
            k, p, blob = self.ids_out.popleft()
            cells += len(blob) // ID_BYTES
            budget -= 8 + len(blob)
            m.ids.append((k, p, blob))
        nw = min(lim.max_wants, len(self.want_ids) + len(self.want_keys) + len(self.want_ranges)
                 + len(self.want_idx))
        m.want_ids, self.want_ids = self.want_ids[:nw], self.want_ids[nw:]
        nw -= len(m.want_ids)
        m.want_keys, self.want_keys = self.want_keys[:nw], self.want_keys[nw:]
        nw -= len(m.want_keys)
        m.want_ranges, self.want_ranges = self.want_ranges[:nw], self.want_ranges[nw:]
        nw -= len(m.want_ranges)
        m.want_idx, self.want_idx = self.want_idx[:nw], self.want_idx[nw:]
        self.wanted += len(m.want_ids) + len(m.want_keys) + len(m.want_ranges) + len(m.want_idx)
        room = lim.max_facts
        if self.push_ids and budget > 0:
            take: list[bytes] = []
            while self.push_ids and len(take) < room:
                take.append(self.push_ids.popleft())
            bodies = fetch_ids(take)
            for h in take:
                body = bodies.get(h)
                if body is None:
                    continue
                if budget - len(body) < 0 and m.facts:
                    self.push_ids.appendleft(h)
                    continue
                m.facts.append(body)
                budget -= len(body) + 3
            room = lim.max_facts - len(m.facts)
        while self.push_ranges and room > 0 and budget > 0:
            lo, hi = self.push_ranges.popleft()
            rows = fetch_range(lo, hi, room + 1)
            more = len(rows) > room
            rows = rows[:room]
            for n, (h, body) in enumerate(rows):
                if budget - len(body) < 0 and m.facts:
                    more = True
                    rows = rows[:n]
                    break
                m.facts.append(body)
                budget -= len(body) + 3
            room = lim.max_facts - len(m.facts)
            if more:  # resume just after the last fact sent
                nxt = int.from_bytes(rows[-1][0], "big") + 1 if rows else int.from_bytes(lo, "big")
                if nxt < MOD256:
                    self.push_ranges.appendleft((nxt.to_bytes(32, "big"), hi))
                break
        self.pushed += len(m.facts)
        if self.push_ids or self.push_ranges or self.splits or self.want_ids or self.want_keys \
                or self.want_ranges or self.ids_out or self.want_idx or self.moments_out:
            m.flags |= FLAG_MORE
