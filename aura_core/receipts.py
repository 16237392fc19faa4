"""Receipts: signed, hash-chained accounting of flow-budget charges (SPEC §3.2, seed 002 §3, §8).

Owns the :class:`Receipt` value, its wire / signing / journal forms, :class:`ReceiptChain`
(the issuer of one (ctx, src, dst) chain, signing with src's :class:`~aura_core.keys.IdentityKey`),
:class:`ReceiptIssuer` (all chains of one authority), :func:`verify_chain` and the relay's
:class:`ForwardAggregator`.  The byte work is C (aura_core._receipt); this module is sans-I/O.

Theory of operation
-------------------
* A receipt says "``src`` charged ``cost`` to its flow budget toward ``dst`` in context ``ctx``,
  epoch ``epoch``", signed by src's Ed25519 key (src = AuthorityId of that key, so anyone holding
  the public key checks the binding).  ``commit`` is a Hash32 commitment to what the charge
  covered (zero when nothing is committed; for relay windows, the forwarded envelope ids).
* Receipts of one (ctx, src, dst) form a chain per epoch: nonces start at 1 and strictly
  increase; ``prev`` is the Hash32 of the previous receipt (zero for the first of an epoch).
  An epoch change restarts the chain; receipts of an older epoch never verify in a newer one
  (the epoch is signed, and :func:`verify_chain` checks it when told the current epoch).
* Wire form: 200 packed bytes; signing transcript: 152 bytes; Hash32 over the transcript
  (docs/wire.md "Receipts", csrc/receipt/aura_receipt.h).  Journal form: a DAG-CBOR map
  (:meth:`Receipt.to_fact`).

Relays (the reasoning is in docs/wire.md): a relay does not sign per envelope.  It charges its
budget per forward, and :class:`ForwardAggregator` closes, per (context, neighbor), a window of
forwards into ONE receipt whose cost is the window's summed cost and whose ``commit`` is
``Hash32("aura.forward.v1", sorted envelope ids)``, so each hop stays accountable for exactly
which envelopes it forwarded while signing ~1 receipt per neighbor per window.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from . import _receipt
from .errors import ChainError, InvalidValue, ReceiptError, SignatureError, UsageError
from .flow import COST_RELAY_FORWARD, MAX_U64
from .hashing import Hash32, Tag
from .ids import AuthorityId, ContextId
from .keys import IdentityKey, PublicIdentity

__all__ = [
    "RECEIPT_LEN",
    "TRANSCRIPT_LEN",
    "FACT_TYPE",
    "FORWARD_TAG",
    "ENVELOPE_ID_LEN",
    "Receipt",
    "ChainHead",
    "ChainSummary",
    "ReceiptChain",
    "ReceiptIssuer",
    "ForwardAggregator",
    "forward_commitment",
    "verify_chain",
]

RECEIPT_LEN: Final = _receipt.RECEIPT_LEN  # 200
TRANSCRIPT_LEN: Final = _receipt.TRANSCRIPT_LEN  # 152
FACT_TYPE: Final = "aura.receipt"
FACT_VERSION: Final = 1
# BLAKE2b personalization of relay-window commitments (docs/wire.md "Relay receipts").
FORWARD_TAG: Final = Tag.FORWARD
ENVELOPE_ID_LEN: Final = 32
DEFAULT_WINDOW: Final = 1.0  # seconds a relay window stays open
DEFAULT_WINDOW_COST: Final = 1 << 20  # a window closes early at this much cost

_ZERO = Hash32.zero()
_FACT_KEYS: Final = frozenset(
    {"type", "v", "ctx", "src", "dst", "epoch", "cost", "nonce", "prev", "commit", "sig"})
_set = object.__setattr__


def _u64(name: str, value: object) -> int:
    if type(value) is not int or not 0 <= value <= MAX_U64:
        raise InvalidValue(f"receipt {name} must be an int in 0..2**64-1, got {value!r}")
    return value


@dataclass(frozen=True, slots=True)
class Receipt:
    """One signed charge (seed 002 §3).  Fields in signing order; ``commit`` defaults to zero."""

    ctx: ContextId
    src: AuthorityId
    dst: AuthorityId
    epoch: int
    cost: int
    nonce: int
    prev: Hash32
    sig: bytes
    commit: Hash32 = _ZERO
    _packed: bytes | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        if type(self.ctx) is not ContextId:
            raise InvalidValue("receipt ctx must be a ContextId")
        if type(self.src) is not AuthorityId or type(self.dst) is not AuthorityId:
            raise InvalidValue("receipt src and dst must be AuthorityIds")
        _u64("epoch", self.epoch)
        _u64("cost", self.cost)
        _u64("nonce", self.nonce)
        if not isinstance(self.prev, Hash32) or not isinstance(self.commit, Hash32):
            raise InvalidValue("receipt prev and commit must be Hash32")
        if type(self.sig) is not bytes or len(self.sig) != 64:
            raise InvalidValue("receipt sig must be 64 bytes")
        if self._packed is not None and self._packed != self._pack():
            raise InvalidValue("cached packed form does not match the fields")

    # -- byte forms -----------------------------------------------------------------------------
    def _pack(self) -> bytes:
        return b"".join((
            bytes(self.ctx), bytes(self.src), bytes(self.dst),
            self.epoch.to_bytes(8, "big"), self.cost.to_bytes(8, "big"),
            self.nonce.to_bytes(8, "big"), self.prev.digest, self.commit.digest, self.sig))

    def __bytes__(self) -> bytes:
        """The 200-byte wire form (docs/wire.md)."""
        packed = self._packed
        if packed is None:
            packed = self._pack()
            _set(self, "_packed", packed)
        return packed

    @classmethod
    def from_bytes(cls, data: bytes | bytearray | memoryview) -> Receipt:
        data = bytes(data)
        if len(data) != RECEIPT_LEN:
            raise ReceiptError(f"a packed receipt is {RECEIPT_LEN} bytes, got {len(data)}")
        return _unpack(data, 0, None, None, None)

    def transcript(self) -> bytes:
        """The 152 bytes the signature covers."""
        return _receipt.transcript(bytes(self))

    def hash(self) -> Hash32:
        """Hash32 of the receipt: what the next receipt's ``prev`` holds."""
        return _fast_hash32(_receipt.receipt_hash(bytes(self)))

    def verify(self, public_key: PublicIdentity | bytes) -> None:
        """Check this receipt's signature and that ``src`` is the key's authority (alone, no chain)."""
        pk = _pk(public_key)
        if bytes(self.src) != _receipt.authority_id(pk):
            raise SignatureError("receipt src is not the authority of the verifying key (wrong signer)", 0)
        try:
            PublicIdentity(pk).verify(self.transcript(), self.sig)
        except SignatureError:
            raise SignatureError("receipt signature does not verify under the src key", 0) from None

    # -- journal form ---------------------------------------------------------------------------
    def to_fact(self) -> dict[str, Any]:
        """The receipt as a journal fact in the IPLD data model (str keys, bytes, ints)."""
        return {
            "type": FACT_TYPE, "v": FACT_VERSION,
            "ctx": bytes(self.ctx), "src": bytes(self.src), "dst": bytes(self.dst),
            "epoch": self.epoch, "cost": self.cost, "nonce": self.nonce,
            "prev": self.prev.digest, "commit": self.commit.digest, "sig": self.sig,
        }

    @classmethod
    def from_fact(cls, fact: dict[str, Any]) -> Receipt:
        """Strict inverse of :meth:`to_fact` (exact keys and types); ReceiptError otherwise."""
        if not isinstance(fact, dict) or set(fact) != _FACT_KEYS:
            raise ReceiptError("not a receipt fact (keys differ)")
        if fact["type"] != FACT_TYPE or fact["v"] != FACT_VERSION or type(fact["v"]) is not int:
            raise ReceiptError("not a version-1 receipt fact")
        for name, size in (("ctx", 16), ("src", 16), ("dst", 16), ("prev", 32), ("commit", 32),
                           ("sig", 64)):
            if type(fact[name]) is not bytes or len(fact[name]) != size:
                raise ReceiptError(f"receipt fact {name} must be {size} bytes")
        try:
            return cls(ContextId(fact["ctx"]), AuthorityId(fact["src"]), AuthorityId(fact["dst"]),
                       fact["epoch"], fact["cost"], fact["nonce"], Hash32(fact["prev"]),
                       fact["sig"], Hash32(fact["commit"]))
        except InvalidValue as exc:
            raise ReceiptError(f"bad receipt fact: {exc}") from None


def _fast_hash32(digest: bytes) -> Hash32:
    # digest comes from our own C (always 32 bytes): skip the validating constructor
    h = object.__new__(Hash32)
    _set(h, "digest", digest)
    return h


def _unpack(buf: bytes, off: int, ctx: ContextId | None, src: AuthorityId | None,
            dst: AuthorityId | None) -> Receipt:
    """A Receipt from 200 bytes at ``off`` (ids reused when the caller already has them)."""
    r = object.__new__(Receipt)
    _set(r, "ctx", ctx if ctx is not None else ContextId(buf[off:off + 16]))
    _set(r, "src", src if src is not None else AuthorityId(buf[off + 16:off + 32]))
    _set(r, "dst", dst if dst is not None else AuthorityId(buf[off + 32:off + 48]))
    _set(r, "epoch", int.from_bytes(buf[off + 48:off + 56], "big"))
    _set(r, "cost", int.from_bytes(buf[off + 56:off + 64], "big"))
    _set(r, "nonce", int.from_bytes(buf[off + 64:off + 72], "big"))
    _set(r, "prev", _fast_hash32(buf[off + 72:off + 104]))
    commit = buf[off + 104:off + 136]
    _set(r, "commit", _ZERO if commit == _ZERO.digest else _fast_hash32(commit))
    _set(r, "sig", buf[off + 136:off + 200])
    _set(r, "_packed", buf[off:off + 200] if off or len(buf) != 200 else buf)
    return r


def _pk(public_key: PublicIdentity | bytes) -> bytes:
    if isinstance(public_key, PublicIdentity):
        return public_key.ed25519
    pk = bytes(public_key)
    if len(pk) != 32:
        raise InvalidValue("an Ed25519 public key is 32 bytes")
    return pk


@dataclass(frozen=True, slots=True)
class ChainHead:
    """Where a chain stands: the next receipt has ``epoch``, nonce > ``nonce``, prev ``prev``."""

    epoch: int
    nonce: int = 0
    prev: Hash32 = _ZERO


@dataclass(frozen=True, slots=True)
class ChainSummary:
    """What :func:`verify_chain` established: ``count`` receipts costing ``total`` in all."""

    count: int
    total: int
    head: ChainHead


def verify_chain(receipts: Sequence[Receipt] | bytes | bytearray | memoryview,
                 public_key: PublicIdentity | bytes, *, limit: int | None = None,
                 epoch: int | None = None, ctx: ContextId | None = None,
                 dst: AuthorityId | None = None, after: ChainHead | None = None,
                 spent_before: int = 0, threads: int = 1) -> ChainSummary:
    """Verify a whole chain in one compiled call (GIL released).

    ``receipts`` are Receipt objects or their concatenated 200-byte wire forms.  Checks, for
    every receipt: the Ed25519 signature by ``public_key`` and src = that key's authority; one
    ctx / src / dst / epoch throughout (``ctx``, ``dst``, ``epoch`` pin them; pass the current
    epoch so older-epoch receipts are rejected); nonces strictly increasing; each prev the
    Hash32 of the previous receipt (the first: zero, or ``after.prev`` when continuing from a
    verified ``after`` head); cost >= 1; the cumulative cost (from ``spent_before``) never over
    2**64-1 nor over ``limit``.  Raises :class:`SignatureError` / :class:`ChainError` whose
    ``index`` names the first bad receipt.  ``threads`` (1..16) splits the signature checks.
    """
    if isinstance(receipts, (bytes, bytearray, memoryview)):
        buf = bytes(receipts)
    else:
        parts = []
        for i, r in enumerate(receipts):
            if type(r) is not Receipt:
                raise ChainError(f"not a Receipt: {type(r).__name__}", i)
            parts.append(bytes(r))
        buf = b"".join(parts)
    if after is not None:
        if epoch is not None and epoch != after.epoch:
            raise InvalidValue("after.epoch and epoch disagree")
        epoch = after.epoch
    total, last, nonce = _receipt.verify_chain(
        buf, _pk(public_key),
        ctx=None if ctx is None else bytes(ctx), dst=None if dst is None else bytes(dst),
        start_prev=None if after is None else after.prev.digest,
        after_nonce=None if after is None else after.nonce,
        epoch=epoch, limit=limit, spent_before=_u64("spent_before", spent_before),
        threads=threads)
    count = len(buf) // RECEIPT_LEN
    if count == 0:
        head = after if after is not None else ChainHead(epoch or 0)
    else:
        head = ChainHead(int.from_bytes(buf[48:56], "big"), nonce, _fast_hash32(last))
    return ChainSummary(count, total - spent_before, head)


class ReceiptChain:
    """Issues the receipts of one (ctx, src, dst) chain, signed by src's identity key.

    Thread-safe: concurrent ``issue`` calls are serialized so nonces and prev links stay exact.
    """

    __slots__ = ("key", "ctx", "src", "dst", "_epoch", "_nonce", "_prev", "_lock", "_prefix",
                 "_sk", "threads")

    def __init__(self, key: IdentityKey, ctx: ContextId, dst: AuthorityId, epoch: int = 0, *,
                 head: ChainHead | None = None, threads: int = 1) -> None:
        if not isinstance(key, IdentityKey):
            raise InvalidValue("receipts are signed with an IdentityKey")
        if type(ctx) is not ContextId or type(dst) is not AuthorityId:
            raise InvalidValue("a receipt chain is keyed by (ContextId, dst AuthorityId)")
        if head is None:
            head = ChainHead(_u64("epoch", epoch))
        self.key = key
        self.ctx = ctx
        self.src = key.authority_id  # bound: src derives from the signing key
        self.dst = dst
        self._sk = key.ed25519_secret()
        self._lock = threading.Lock()
        self.threads = threads
        self._set_head(head)

    def _set_head(self, head: ChainHead) -> None:
        self._epoch = _u64("epoch", head.epoch)
        self._nonce = _u64("nonce", head.nonce)
        self._prev = head.prev
        self._prefix = bytes(self.ctx) + bytes(self.src) + bytes(self.dst) + head.epoch.to_bytes(8, "big")

    @property
    def head(self) -> ChainHead:
        with self._lock:
            return ChainHead(self._epoch, self._nonce, self._prev)

    @property
    def epoch(self) -> int:
        return self._epoch

    def rotate(self, epoch: int) -> None:
        """Start the chain of a newer epoch (nonce and prev restart).  Older/equal: no-op."""
        _u64("epoch", epoch)
        with self._lock:
            if epoch > self._epoch:
                self._set_head(ChainHead(epoch))

    def issue(self, cost: int, commit: Hash32 | None = None) -> Receipt:
        """Sign one receipt for a charge of ``cost`` already made."""
        return self.issue_batch((cost,), None if commit is None else (commit,))[0]

    def issue_batch(self, costs: Sequence[int], commits: Sequence[Hash32] | None = None) -> list[Receipt]:
        """Sign one receipt per cost (in order, chained) in a single compiled call."""
        buf, first, epoch, prev0 = self._build_and_sign(costs, commits)
        ctx, src, dst = self.ctx, self.src, self.dst
        out = []
        # fields are known here; only prev (after the first) and sig come back from C
        for i, cost in enumerate(costs):
            off = i * RECEIPT_LEN
            r = object.__new__(Receipt)
            _set(r, "ctx", ctx)
            _set(r, "src", src)
            _set(r, "dst", dst)
            _set(r, "epoch", epoch)
            _set(r, "cost", cost)
            _set(r, "nonce", first + i)
            _set(r, "prev", prev0 if i == 0 else _fast_hash32(buf[off + 72:off + 104]))
            _set(r, "sig", buf[off + 136:off + 200])
            _set(r, "commit", _ZERO if commits is None else commits[i])
            _set(r, "_packed", buf[off:off + 200])
            out.append(r)
        return out

    def issue_packed(self, costs: Sequence[int], commits: Sequence[Hash32] | None = None) -> bytes:
        """Like :meth:`issue_batch`, returning the concatenated 200-byte wire forms only."""
        return self._build_and_sign(costs, commits)[0]

    def _build_and_sign(self, costs: Sequence[int], commits: Sequence[Hash32] | None
                        ) -> tuple[bytes, int, int, Hash32]:
        """(signed packed receipts, first nonce, epoch, prev of the first)."""
        n = len(costs)
        if commits is not None and (len(commits) != n
                                    or not all(isinstance(c, Hash32) for c in commits)):
            raise InvalidValue("one Hash32 commit per cost")
        for c in costs:
            if type(c) is not int or not 0 < c <= MAX_U64:
                raise InvalidValue(f"a receipt cost must be an int in 1..2**64-1, got {c!r}")
        zero_tail = bytes(64 + 32)  # commit (zero) + sig placeholder
        with self._lock:
            first = self._nonce + 1
            if first + n - 1 > MAX_U64:
                raise ReceiptError("receipt nonce space of this epoch is exhausted; rotate the epoch")
            prefix = self._prefix
            parts = []
            prev_first = self._prev
            prev0 = prev_first.digest
            zero_prev = bytes(32)
            for i, c in enumerate(costs):
                tail = zero_tail if commits is None else commits[i].digest + bytes(64)
                parts.append(prefix + c.to_bytes(8, "big") + (first + i).to_bytes(8, "big")
                             + (prev0 if i == 0 else zero_prev) + tail)
            buf = bytearray(b"".join(parts))
            last = _receipt.sign_batch(buf, self._sk, True, self.threads)
            if n:
                self._nonce = first + n - 1
                self._prev = _fast_hash32(last)
            return bytes(buf), first, self._epoch, prev_first


class ReceiptIssuer:
    """All receipt chains of one authority, keyed by (ctx, dst); signs with its identity key."""

    __slots__ = ("key", "_chains", "_lock", "threads")

    def __init__(self, key: IdentityKey, *, threads: int = 1) -> None:
        if not isinstance(key, IdentityKey):
            raise InvalidValue("receipts are signed with an IdentityKey")
        self.key = key
        self.threads = threads
        self._chains: dict[tuple[ContextId, AuthorityId], ReceiptChain] = {}
        self._lock = threading.Lock()

    @property
    def authority_id(self) -> AuthorityId:
        return self.key.authority_id

    def chain(self, ctx: ContextId, dst: AuthorityId, epoch: int = 0) -> ReceiptChain:
        """The chain toward ``dst`` in ``ctx``, created at ``epoch`` or rotated up to it."""
        with self._lock:
            ch = self._chains.get((ctx, dst))
            if ch is None:
                ch = self._chains[(ctx, dst)] = ReceiptChain(self.key, ctx, dst, epoch,
                                                             threads=self.threads)
                return ch
        ch.rotate(epoch)
        return ch

    def issue(self, ctx: ContextId, dst: AuthorityId, cost: int, *, epoch: int = 0,
              commit: Hash32 | None = None) -> Receipt:
        ch = self.chain(ctx, dst, epoch)
        if ch.epoch != epoch:
            raise UsageError(f"chain is at epoch {ch.epoch}; receipts of epoch {epoch} are invalid")
        return ch.issue(cost, commit)

    def rotate(self, ctx: ContextId, epoch: int) -> None:
        """Start new chains for every dst of ``ctx`` at ``epoch``."""
        with self._lock:
            chains = [c for (cx, _), c in self._chains.items() if cx == ctx]
        for ch in chains:
            ch.rotate(epoch)


def forward_commitment(envelope_ids: Iterable[bytes]) -> Hash32:
    """``BLAKE2b-256(person="aura.forward.v1", sorted 32-byte ids concatenated)`` (a multiset)."""
    ids = list(envelope_ids)
    for e in ids:
        if len(e) != ENVELOPE_ID_LEN:
            raise InvalidValue(f"an envelope id is {ENVELOPE_ID_LEN} bytes")
    # the C sorts the packed copy and hashes it (GIL released)
    return _fast_hash32(_receipt.forward_commitment_packed(bytearray(b"".join(ids))))


class _Window:
    __slots__ = ("start", "cost", "ids", "epoch", "ctx", "neighbor")

    def __init__(self, start: float, epoch: int, ctx: ContextId, neighbor: AuthorityId) -> None:
        self.start = start
        self.cost = 0
        self.ids: list[bytes] = []
        self.epoch = epoch
        self.ctx = ctx
        self.neighbor = neighbor


class ForwardAggregator:
    """A relay's receipts for forwarded envelopes: one receipt per (context, neighbor) window.

    Sans-I/O.  For each forward: charge the flow budget first (FlowLedger), forward, then
    :meth:`record` the envelope id.  Call :meth:`poll` with the current time (when
    :meth:`next_deadline` passes): every window open for ``window`` seconds, or holding
    ``max_cost`` or more, becomes one signed receipt with cost = summed cost of its forwards and
    commit = :func:`forward_commitment` of their ids.  Send each receipt to its neighbor after
    the envelopes it covers, on the same ordered link; it also goes to the context journal.
    """

    def __init__(self, issuer: ReceiptIssuer, *, window: float = DEFAULT_WINDOW,
                 max_cost: int = DEFAULT_WINDOW_COST, keep_ids: bool = False) -> None:
        if not window > 0:
            raise InvalidValue("window must be positive")
        self.issuer = issuer
        self.window = window
        self.max_cost = _u64("max_cost", max_cost)
        self.keep_ids = keep_ids
        # keyed by raw ctx || neighbor bytes (C-level hash; see FlowLedger)
        self._open: dict[bytes, _Window] = {}
        self._full: list[bytes] = []
        self._ready: list[Receipt] = []  # closed early (epoch change), handed out by poll()
        self.dropped_stale = 0  # windows of an epoch the chain already left (invalid anyway)
        self.closed_ids: dict[Hash32, list[bytes]] = {}  # commit -> ids, when keep_ids (audits)

    def record(self, ctx: ContextId, neighbor: AuthorityId, envelope_id: bytes, now: float, *,
               epoch: int = 0, cost: int = COST_RELAY_FORWARD) -> None:
        """Account one forwarded envelope (already charged to the flow budget)."""
        if len(envelope_id) != ENVELOPE_ID_LEN:
            raise InvalidValue(f"an envelope id is {ENVELOPE_ID_LEN} bytes")
        if type(ctx) is not ContextId or type(neighbor) is not AuthorityId:
            raise InvalidValue("windows are keyed by (ContextId, AuthorityId)")
        key = ctx._raw + neighbor._raw  # type: ignore[attr-defined]
        w = self._open.get(key)
        if w is None or w.epoch != epoch:
            if w is not None:  # epoch changed: the old window closes under its own epoch
                self._close_now([key])
            w = self._open[key] = _Window(now, epoch, ctx, neighbor)
        w.ids.append(bytes(envelope_id))
        w.cost += cost
        if w.cost >= self.max_cost:
            self._full.append(key)

    def next_deadline(self) -> float | None:
        """When :meth:`poll` next has work (None: no open window)."""
        if self._full or self._ready:
            return float("-inf")
        if not self._open:
            return None
        return min(w.start for w in self._open.values()) + self.window

    def poll(self, now: float) -> list[Receipt]:
        """Close and sign every window that is due at ``now``."""
        due = [k for k, w in self._open.items() if w.start + self.window <= now]
        due += [k for k in self._full if k in self._open and k not in due]
        self._full.clear()
        self._close_now(due)
        out, self._ready = self._ready, []
        return out

    def flush(self) -> list[Receipt]:
        """Close and sign every open window (shutdown, epoch change, teardown)."""
        self._full.clear()
        self._close_now(list(self._open))
        out, self._ready = self._ready, []
        return out

    def _close_now(self, keys: list[bytes]) -> None:
        for key in keys:
            w = self._open.pop(key, None)
            if w is None or not w.ids:
                continue
            chain = self.issuer.chain(w.ctx, w.neighbor, w.epoch)
            if chain.epoch != w.epoch:
                self.dropped_stale += 1
                continue
            commit = forward_commitment(w.ids)
            if self.keep_ids:
                self.closed_ids[commit] = sorted(w.ids)
            self._ready.append(chain.issue(w.cost, commit))
