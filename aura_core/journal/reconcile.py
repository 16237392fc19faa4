"""Range-based set reconciliation over 32-byte fact hashes (Negentropy-style, with sum cells).

Theory of operation.  Fact hashes are uniform 256-bit numbers, so the key space itself is split:
a *range* is an aligned prefix ``(k, p)`` = every hash whose top ``k`` bits equal ``p``.  A *cell*
summarises one side's facts in a range: ``count`` and ``sum`` (Σ hash mod 2^128; the root cell
carries the full 256-bit sum, which is the JournalDigest).  Because sums add, a cell tells the
receiver more than "equal or not":

* equal counts and sums                  -> the range is reconciled (nothing is sent);
* one side has 0 facts there             -> the other pushes (or is asked for) the whole range;
* counts differ by exactly one           -> the difference of the sums *is* the missing fact's
                                            key: it is pushed or wanted directly (a "pure cell",
                                            as in an invertible Bloom lookup table);
* anything else                          -> the range is split into 2^b children and the
                                            receiver of the split compares child by child.

The fan-out ``b`` is chosen from the estimated number of differences in the range (count
difference, and the fraction of unequal siblings), so a few differences are isolated in one or
two rounds and bytes grow with the difference, not with the journal.  Equal children cost one
byte when empty and 17 bytes otherwise.  A wrong guess (a pure-looking cell that hid three
differences) costs one more split of that range, never a wrong result: every fact is checked by
its hash on receipt and digests are compared at the end of each session.

This module is pure (no store, no I/O): :class:`SortedIds` is a snapshot of one side's hashes,
:class:`Reconciler` turns received :class:`SyncMessage` s into queued pushes, wants and splits,
and :func:`encode_message` / :func:`decode_message` are the wire format (docs/wire.md "journal
sync"), decoded with hard limits so peer input cannot grow memory without bound.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

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

WIRE_VERSION: Final = 1
FLAG_DIGEST: Final = 0x01  # the message starts with the sender's context id and JournalDigest
FLAG_MORE: Final = 0x02    # the sender still has queued output (pushes) for the next message
FLAG_FIN: Final = 0x04     # the initiator is done; no reply is expected

TAG_SPLIT: Final = 1
TAG_FACTS: Final = 2
TAG_WANT_ID: Final = 3
TAG_WANT_KEY: Final = 4
TAG_WANT_RANGE: Final = 5
TAG_COUNTS: Final = 6      # root children counts mod 256: sizes the first split (initiator only)
COUNTS_BITS: Final = 5

BITS: Final = 256
MOD128: Final = 1 << 128
MASK128: Final = MOD128 - 1
MOD256: Final = 1 << 256
MAX_DEPTH: Final = 128     # ranges deeper than this are transferred whole (never reached honestly)
MAX_FANOUT_BITS: Final = 16
CHECKPOINT: Final = 64     # SortedIds keeps one prefix sum per 64 hashes
FANOUT_FACTOR = 6.0        # cells per estimated difference when a range is split
COUNTED_FACTOR = 2.0       # ... when the estimate is a count difference rather than a guess
ROOT_FACTOR = 2.0          # the same at the root (its cells hold the most facts, so cost most)
ROOT_ESTIMATE = 8.0        # differences assumed at the root when the counts say nothing


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
    max_scan: int = 1 << 21            # hashes scanned for pure-cell keys per message processed
    out_message_bytes: int = 1 << 20   # soft target for what we compose


# -- snapshot of one side's hashes ---------------------------------------------------------

class SortedIds:
    """Sorted 32-byte hashes in one bytes object plus a prefix sum every CHECKPOINT entries."""

    __slots__ = ("blob", "n", "_pref")

    def __init__(self, blob: bytes) -> None:
        if len(blob) % 32:
            raise ValueError("hash blob is a multiple of 32 bytes")
        self.blob = blob
        self.n = len(blob) // 32
        pref = [0]
        acc = 0
        fb = int.from_bytes
        for c in range(0, self.n, CHECKPOINT):
            chunk = blob[c * 32:(c + CHECKPOINT) * 32]
            for o in range(0, len(chunk), 32):
                acc += fb(chunk[o:o + 32], "big")
            pref.append(acc)
        self._pref = pref

    @classmethod
    def of(cls, hashes: list[bytes]) -> SortedIds:
        return cls(b"".join(sorted(set(hashes))))

    def key(self, i: int) -> bytes:
        return self.blob[i * 32:i * 32 + 32]

    def index(self, bound: int, lo: int = 0, hi: int | None = None) -> int:
        """First position whose hash >= ``bound`` (0 <= bound <= 2^256), searched in [lo, hi]."""
        if bound >= MOD256:
            return self.n
        b = bound.to_bytes(32, "big")
        hi = self.n if hi is None else hi
        blob = self.blob
        while lo < hi:
            mid = (lo + hi) >> 1
            if blob[mid * 32:mid * 32 + 32] < b:
                lo = mid + 1
            else:
                hi = mid
        return lo

    def prefix_sum(self, i: int) -> int:
        c = i // CHECKPOINT
        acc = self._pref[c]
        fb, blob = int.from_bytes, self.blob
        for o in range(c * CHECKPOINT * 32, i * 32, 32):
            acc += fb(blob[o:o + 32], "big")
        return acc

    def cells(self, k: int, p: int, b: int) -> tuple[list[int], list[int], list[int]]:
        """Positions, counts and sums of the 2^b children of range (k, p).

        Returns ``(starts, counts, sums)``: child c holds positions [starts[c], starts[c+1]).
        Costs O(r + 2^b) for r hashes in the range: a walk over the hashes when they are few
        per child, prefix sums at the child boundaries otherwise.
        """
        m = 1 << b
        lo, hi = range_bounds(k, p)
        i0, i1 = self.index(lo), self.index(hi)
        shift = BITS - k - b
        if i1 - i0 <= 32 * m:
            counts, sums = [0] * m, [0] * m
            blob, fb = self.blob, int.from_bytes
            for o in range(i0 * 32, i1 * 32, 32):
                v = fb(blob[o:o + 32], "big")
                c = (v - lo) >> shift
                counts[c] += 1
                sums[c] += v
            starts = [i0]
            for c in counts:
                starts.append(starts[-1] + c)
            return starts, counts, sums
        starts = [i0]
        for c in range(1, m):
            starts.append(self.index(lo + (c << shift), starts[-1], i1))
        starts.append(i1)
        pre = [self.prefix_sum(x) for x in starts]
        return (starts, [starts[c + 1] - starts[c] for c in range(m)],
                [pre[c + 1] - pre[c] for c in range(m)])

    def contains(self, h: bytes) -> bool:
        i = self.index(int.from_bytes(h, "big"))
        return i < self.n and self.key(i) == h

    def find_low(self, i: int, j: int, low: int) -> bytes | None:
        """The hash in positions [i, j) whose low 128 bits equal ``low``, if any."""
        blob, fb = self.blob, int.from_bytes
        for o in range(i * 32, j * 32, 32):
            if fb(blob[o + 16:o + 32], "big") == low:
                return blob[o:o + 32]
        return None


def range_bounds(k: int, p: int) -> tuple[int, int]:
    shift = BITS - k
    return p << shift, (p + 1) << shift


# -- messages --------------------------------------------------------------------------------

@dataclass
class Split:
    """The sender's cells for the 2^b children of range (k, p): (count, sum mod 2^128)."""

    k: int
    p: int
    b: int
    cells: list[tuple[int, int]]


@dataclass
class SyncMessage:
    flags: int = 0
    ctx: bytes = b""
    count: int = 0          # digest (when FLAG_DIGEST)
    total: int = 0
    splits: list[Split] = field(default_factory=list)
    facts: list[bytes] = field(default_factory=list)
    want_ids: list[tuple[int, bytes]] = field(default_factory=list)     # (k, full hash)
    want_keys: list[tuple[int, int, int]] = field(default_factory=list)  # (k, p, low128)
    want_ranges: list[tuple[int, int]] = field(default_factory=list)    # (k, p)
    counts: bytes = b""     # counts mod 256 of the 2^b root children (b = log2 len)

    @property
    def has_requests(self) -> bool:
        return bool(self.splits or self.want_ids or self.want_keys or self.want_ranges)

    @property
    def is_empty(self) -> bool:
        return not (self.has_requests or self.facts)


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
        out += m.ctx
        _varint(m.count, out)
        out += m.total.to_bytes(32, "big")
    if m.counts:
        out.append(TAG_COUNTS)
        out.append(len(m.counts).bit_length() - 1)
        out += m.counts
    for s in m.splits:
        out.append(TAG_SPLIT)
        _range(s.k, s.p, out)
        out.append(s.b)
        for count, total in s.cells:
            _varint(count, out)
            if count:
                out += total.to_bytes(16, "big")
    if m.facts:
        out.append(TAG_FACTS)
        _varint(len(m.facts), out)
        for body in m.facts:
            _varint(len(body), out)
            out += body
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
        m.ctx = r.take(16)
        m.count = r.varint()
        m.total = int.from_bytes(r.take(32), "big")
    cells = wants = 0
    while r.pos < len(r.buf):
        tag = r.u8()
        if tag == TAG_SPLIT:
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
                lst.append((c, int.from_bytes(r.take(16), "big") if c else 0))
            m.splits.append(Split(k, p, b, lst))
        elif tag == TAG_COUNTS:
            b = r.u8()
            if m.counts or not 1 <= b <= 8:
                raise r.fail("bad counts section")
            m.counts = r.take(1 << b)
        elif tag == TAG_FACTS:
            n = r.varint()
            if n + len(m.facts) > limits.max_facts:
                raise r.fail("too many facts")
            for _ in range(n):
                ln = r.varint()
                if not 0 < ln <= limits.max_fact_bytes:
                    raise r.fail("fact size out of bounds")
                m.facts.append(r.take(ln))
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
                m.want_keys.append((k, p, int.from_bytes(r.take(16), "big")))
            else:
                m.want_ranges.append(r.range())
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
        self._scan = limits.max_scan
        self._work = 0
        self._cells_left = 0
        self.pushed = 0          # facts sent
        self.wanted = 0          # want entries sent

    # ---- analysis of what the peer sent ----
    def pending(self) -> int:
        return (len(self.push_ids) + len(self.push_ranges) + len(self.splits) + len(self.want_ids)
                + len(self.want_keys) + len(self.want_ranges))

    def _check_pending(self) -> None:
        if self.pending() > self.limits.max_pending:
            raise ProtocolError("peer requests exceed the pending-work bound")

    def _charge(self, work: int) -> None:
        # an honest message's ranges are disjoint, so each kind of work it causes is at most
        # the journal size; a message that asks for more is hostile
        self._work -= work
        if self._work < 0:
            raise ProtocolError("sync message exceeds the work bound")

    def _find_low(self, i: int, j: int, low: int) -> bytes | None | bool:
        """find_low within the per-message scan budget; False when over budget."""
        if j - i > self._scan:
            return False
        self._scan -= j - i
        self._charge(j - i)
        return self.ids.find_low(i, j, low)

    def _cell(self, k: int, p: int) -> tuple[int, int, int, int]:
        lo, hi = range_bounds(k, p)
        i, j = self.ids.index(lo), self.ids.index(hi)
        return i, j, j - i, self.ids.prefix_sum(j) - self.ids.prefix_sum(i)

    def process(self, m: SyncMessage, *, root: tuple[int, int] | None = None) -> None:
        """Queue our response to ``m``; ``root`` is the peer's digest if this is its first."""
        self._scan = self.limits.max_scan  # bounds the CPU one message can make us spend
        self._work = 4 * self.ids.n + 4 * self.limits.max_cells + self.limits.max_scan
        self._cells_left = self.limits.max_cells
        if root is not None:
            count, total = root
            i, j, c, s = 0, self.ids.n, self.ids.n, self.ids.prefix_sum(self.ids.n) % MOD256
            if (c, s) != (count, total):
                self._compare(0, 0, i, j, c, s, count, total, MOD256, est=self._root_estimate(m.counts))
        for sp in m.splits:
            self._process_split(sp)
        for k, h in m.want_ids:
            if self.ids.contains(h):
                self.push_ids.append(h)
            else:  # their candidate was wrong: split the range it came from
                self._queue_split(k, int.from_bytes(h, "big") >> (BITS - k) if k else 0, est=2)
        for k, p, key in m.want_keys:
            lo, hi = range_bounds(k, p)
            found = self._find_low(self.ids.index(lo), self.ids.index(hi), key)
            if isinstance(found, bytes):
                self.push_ids.append(found)
            else:
                self._queue_split(k, p, est=2)
        for k, p in m.want_ranges:
            self._push_range(k, p)
        self._check_pending()

    def root_counts(self, b: int = COUNTS_BITS) -> bytes:
        """Our counts (mod 256) of the 2^b root children, for the first message."""
        idx = [self.ids.index(c << (BITS - b)) for c in range((1 << b) + 1)]
        return bytes((idx[c + 1] - idx[c]) & 0xFF for c in range(1 << b))

    def _root_estimate(self, counts: bytes) -> float:
        """Differences expected at the root, from the peer's per-child counts if it sent them.

        Σ|Δc| over children counts every difference when one side holds all the extras (the
        signed sum then has the same magnitude); when both sides hold extras they partly cancel
        within a child, so the sum is scaled up (2.5 ≈ E[x+y] / E|x-y| for Poisson x, y ~ 1.5).
        """
        if not counts:
            return ROOT_ESTIMATE
        ours = self.root_counts(len(counts).bit_length() - 1)
        deltas = [((o - t + 128) & 0xFF) - 128 for o, t in zip(ours, counts)]
        total = sum(abs(d) for d in deltas)
        return max(2.0, float(total) if abs(sum(deltas)) == total else 2.5 * total)

    def _process_split(self, sp: Split) -> None:
        kc = sp.k + sp.b
        base = sp.p << sp.b
        self._charge(len(sp.cells))
        starts, counts, sums = self.ids.cells(sp.k, sp.p, sp.b)
        self._charge(starts[-1] - starts[0])
        unequal = []
        for c, (tc, ts) in enumerate(sp.cells):
            oc = counts[c]
            os = sums[c] & MASK128
            if oc != tc or os != ts:
                unequal.append((c, oc, os, tc, ts))
        if not unequal:
            return
        m, q = len(sp.cells), len(unequal)
        d_est = m * math.log(m / (m - q)) if q < m else m * (math.log(m) + 1.0)
        per_child = max(2.0, d_est / q)
        for c, oc, os, tc, ts in unequal:
            self._compare(kc, base | c, starts[c], starts[c + 1], oc, os, tc, ts, MOD128, per_child)

    def _compare(self, k: int, p: int, i: int, j: int, oc: int, os: int, tc: int, ts: int,
                 mod: int, est: float) -> None:
        if tc == 0:
            self._push_range(k, p)
        elif oc == 0:
            self.want_ranges.append((k, p))
        elif oc - tc == 1:  # we hold exactly one extra, if pure: its key is the sum difference
            diff = (os - ts) % mod
            found: bytes | bool | None
            if mod == MOD256:
                h = diff.to_bytes(32, "big")
                found = h if self.ids.contains(h) else None
            else:
                found = self._find_low(i, j, diff)
            if isinstance(found, bytes):
                self.push_ids.append(found)
            else:
                self._queue_split(k, p, est)
        elif tc - oc == 1:  # they hold exactly one extra
            diff = (ts - os) % mod
            if mod == MOD256:
                self.want_ids.append((k, diff.to_bytes(32, "big")))
            else:
                self.want_keys.append((k, p, diff))
        else:
            dc = abs(oc - tc)
            if dc >= est:  # the count difference is a solid estimate (one side holds the extras)
                self._queue_split(k, p, dc, COUNTED_FACTOR)
            else:
                self._queue_split(k, p, est)

    def _push_range(self, k: int, p: int) -> None:
        lo, hi = range_bounds(k, p)
        self.push_ranges.append((lo.to_bytes(32, "big"), None if hi >= MOD256 else hi.to_bytes(32, "big")))

    def _queue_split(self, k: int, p: int, est: float, factor: float = 0.0) -> None:
        if k >= MAX_DEPTH - 1:  # never happens with honest hashes: exchange the range whole
            self._push_range(k, p)
            self.want_ranges.append((k, p))
            return
        if not factor:
            factor = ROOT_FACTOR if k == 0 else FANOUT_FACTOR
        b = max(1, min(MAX_FANOUT_BITS, MAX_DEPTH - k, math.ceil(math.log2(factor * est))))
        while b > 1 and (1 << b) > self._cells_left:  # keep what one message makes us build bounded
            b -= 1
        self._cells_left -= 1 << b
        self._charge(1 << b)
        starts, counts, sums = self.ids.cells(k, p, b)
        self._charge(starts[-1] - starts[0])
        self.splits.append(Split(k, p, b, [(c, x & MASK128) for c, x in zip(counts, sums)]))

    # ---- composing our next message ----
    def compose(self, m: SyncMessage, fetch_ids: FetchIds, fetch_range: FetchRange) -> None:
        """Fill ``m`` from the queues, within the outgoing limits; leftovers stay queued."""
        lim = self.limits
        budget = lim.out_message_bytes
        cells = 0
        while self.splits and cells + len(self.splits[0].cells) <= lim.max_cells:
            sp = self.splits.popleft()
            cells += len(sp.cells)
            budget -= 3 + 17 * len(sp.cells)
            m.splits.append(sp)
        nw = min(lim.max_wants, len(self.want_ids) + len(self.want_keys) + len(self.want_ranges))
        m.want_ids, self.want_ids = self.want_ids[:nw], self.want_ids[nw:]
        nw -= len(m.want_ids)
        m.want_keys, self.want_keys = self.want_keys[:nw], self.want_keys[nw:]
        nw -= len(m.want_keys)
        m.want_ranges, self.want_ranges = self.want_ranges[:nw], self.want_ranges[nw:]
        self.wanted += len(m.want_ids) + len(m.want_keys) + len(m.want_ranges)
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
                or self.want_ranges:
            m.flags |= FLAG_MORE
