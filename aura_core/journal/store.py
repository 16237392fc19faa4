"""The fact journal: a per-context grow-only set of DAG-CBOR facts keyed by CID, in SQLite.

Theory of operation.  A fact is the canonical DAG-CBOR encoding of a value; its identity is its
CIDv1 (codec dag-cbor 0x71, multihash sha2-256), and inside the store it is keyed by the 32-byte
digest of that multihash (the "fact hash").  Merge is set union (a CRDT: commutative,
associative, idempotent): inserting a fact already present is a no-op and leaves the digest
unchanged.  Each merge is one SQLite transaction that also updates the context's
``JournalDigest`` row, so the stored digest always describes exactly the stored facts, even after
a crash.  The database runs in WAL mode; ``synchronous`` is FULL by default, which makes a merge
durable when it returns ("acknowledged"): tests kill a writer with SIGKILL and find every
acknowledged fact.

Facts from peers are validated before they touch the database (size limit, canonical DAG-CBOR
via the validator); invalid ones are dropped and counted, never stored.  Local appends are
strict: an invalid fact raises :class:`~aura_core.errors.JournalError`.

Tables (docs/wire.md does not cover them: they are local):
  facts(ctx, h, body, ack)          ack = 1 when the fact is ack-tracked (seed 002 §9.2)
  digests(ctx, count, total)        total = Σ h mod 2^256, 32 bytes big-endian
  acks(ctx, h, peer, acked_at)      FactAck records
"""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Callable, Iterable, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from typing import Final

from .. import dagcbor as _dagcbor
from ..cid import CID
from ..errors import InvalidValue, JournalError
from .digest import ID_LEN, JournalDigest
from .reconcile import SortedIds

__all__ = [
    "CID_PREFIX",
    "DEFAULT_MAX_FACT_SIZE",
    "JournalStore",
    "ContextJournal",
    "MergeResult",
    "cid_of",
    "fact_hash",
    "hash_of_cid",
    "dagcbor_validator",
]

# CIDv1 (0x01), dag-cbor (0x71), multihash sha2-256 (0x12) of 32 bytes (0x20).
CID_PREFIX: Final = b"\x01\x71\x12\x20"
DEFAULT_MAX_FACT_SIZE: Final = 64 * 1024
SYNCHRONOUS_MODES: Final = ("OFF", "NORMAL", "FULL", "EXTRA")

Validator = Callable[[bytes], object]


def fact_hash(body: bytes) -> bytes:
    """The 32-byte key of a fact: SHA-256 of its DAG-CBOR bytes (the CID's multihash digest)."""
    return hashlib.sha256(body).digest()


def cid_of(body: bytes) -> CID:
    """The CIDv1 of a fact (dag-cbor, sha2-256): binary form ``01 71 12 20 || sha256(body)``."""
    return CID(1, 0x71, 0x12, hashlib.sha256(body).digest())


def hash_of_cid(cid: object) -> bytes:
    """The fact hash inside a binary CID (or any object whose ``bytes()`` is one)."""
    raw = bytes(cid)  # type: ignore[call-overload]
    if len(raw) != len(CID_PREFIX) + ID_LEN or not raw.startswith(CID_PREFIX):
        raise InvalidValue("journal facts are keyed by CIDv1 dag-cbor sha2-256")
    return raw[len(CID_PREFIX):]


def dagcbor_validator(body: bytes) -> object:
    """Default validator: the strict DAG-CBOR decoder (rejects every non-canonical form)."""
    return _dagcbor.decode(body)


@dataclass
class MergeResult:
    """What one merge did: ``inserted`` fact hashes (new), duplicates and rejected counts."""

    inserted: list[bytes] = field(default_factory=list)
    duplicates: int = 0
    rejected: int = 0


_SCHEMA = """
CREATE TABLE IF NOT EXISTS facts (
    ctx BLOB NOT NULL, h BLOB NOT NULL, body BLOB NOT NULL, ack INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (ctx, h)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS digests (
    ctx BLOB PRIMARY KEY, count INTEGER NOT NULL, total BLOB NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS acks (
    ctx BLOB NOT NULL, h BLOB NOT NULL, peer BLOB NOT NULL, acked_at INTEGER NOT NULL,
    PRIMARY KEY (ctx, h, peer)) WITHOUT ROWID;
"""

_INSERT = "INSERT OR IGNORE INTO facts (ctx, h, body, ack) VALUES (?, ?, ?, ?)"


def _ctx(ctx: object) -> bytes:
    raw = bytes(ctx)  # type: ignore[call-overload]
    if len(raw) != 16:
        raise InvalidValue("a context id is 16 bytes")
    return raw


class JournalStore:
    """Fact journal of every context, persisted in one SQLite database (``":memory:"`` for tests).

    Not thread-safe: one owner (the event loop thread) drives it.
    """

    def __init__(
        self,
        path: str = ":memory:",
        *,
        synchronous: str = "FULL",
        validator: Validator | None = dagcbor_validator,
        max_fact_size: int = DEFAULT_MAX_FACT_SIZE,
    ) -> None:
        mode = synchronous.upper()
        if mode not in SYNCHRONOUS_MODES:
            raise InvalidValue(f"synchronous must be one of {SYNCHRONOUS_MODES}")
        # the default resolves to the compiled decoder itself: no Python frame per fact
        self.validator = _dagcbor.decode if validator is dagcbor_validator else validator
        self.max_fact_size = max_fact_size
        self._digests: dict[bytes, JournalDigest] = {}
        self._snapshots: dict[bytes, tuple[JournalDigest, SortedIds]] = {}
        try:
            # autocommit mode: transactions are explicit (BEGIN IMMEDIATE ... COMMIT)
            self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute(f"PRAGMA synchronous={mode}")
            self._db.executescript(_SCHEMA)
        except sqlite3.Error as exc:
            raise JournalError("journal storage failed to open") from exc

    # -- writes -------------------------------------------------------------------------------

    def merge(
        self,
        ctx: object,
        bodies: Iterable[bytes],
        *,
        ack_tracked: bool | AbstractSet[bytes] = False,
        strict: bool = False,
        trusted: bool = False,
    ) -> MergeResult:
        """Union ``bodies`` into the context's fact set in one transaction.

        ``ack_tracked`` flags every fact, or (a set) those bodies in it.  Invalid facts are
        dropped and counted (``strict`` raises instead).  ``trusted`` skips the
        DAG-CBOR validator (bodies the caller itself encoded), never the size limit.
        """
        c = _ctx(ctx)
        result = MergeResult()
        batch: dict[bytes, bytes] = {}
        limit = self.max_fact_size
        validator = None if trusted else self.validator
        sha = hashlib.sha256
        for body in bodies:
            if type(body) is not bytes:
                body = bytes(body)
            if not 0 < len(body) <= limit:
                result.rejected += 1
                if strict:
                    raise JournalError("fact is empty or larger than the limit")
                continue
            if validator is not None:
                try:
                    validator(body)
                except Exception as exc:  # the validator's own error is the detail
                    result.rejected += 1
                    if strict:
                        raise JournalError("fact is not canonical DAG-CBOR") from exc
                    continue
            h = sha(body).digest()
            if h in batch:
                result.duplicates += 1
            else:
                batch[h] = body
        if not batch:
            return result
        if isinstance(ack_tracked, bool):
            ack = 1 if ack_tracked else 0
            rows = [(c, h, b, ack) for h, b in batch.items()]
        else:  # the set of bodies that are ack-tracked
            rows = [(c, h, b, 1 if b in ack_tracked else 0) for h, b in batch.items()]
        db = self._db
        try:
            db.execute("BEGIN IMMEDIATE")
            try:
                cur = db.executemany(_INSERT, rows)
                if cur.rowcount != len(rows):
                    # some were already stored: redo with only the new ones, so the digest
                    # counts each fact exactly once
                    db.execute("ROLLBACK")
                    rows = self._only_new(c, rows)
                    db.execute("BEGIN IMMEDIATE")
                    db.executemany(_INSERT, rows)
                digest = self.digest(c)
                added = sum([int.from_bytes(row[1], "big") for row in rows])
                new = digest.add_many(len(rows), added)
                if rows:
                    db.execute(
                        "INSERT OR REPLACE INTO digests (ctx, count, total) VALUES (?, ?, ?)",
                        (c, new.count, new.sum_bytes),
                    )
                db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            raise JournalError("journal storage failed") from exc
        self._digests[c] = new
        result.duplicates += len(batch) - len(rows)
        result.inserted = [row[1] for row in rows]
        return result

    def _only_new(self, c: bytes, rows: list[tuple[bytes, bytes, bytes, int]]) -> list[tuple[bytes, bytes, bytes, int]]:
        have: set[bytes] = set()
        for i in range(0, len(rows), 500):
            chunk = [r[1] for r in rows[i:i + 500]]
            q = "SELECT h FROM facts WHERE ctx = ? AND h IN (%s)" % ",".join("?" * len(chunk))
            have.update(r[0] for r in self._db.execute(q, [c, *chunk]))
        return [r for r in rows if r[1] not in have]

    def append(self, ctx: object, bodies: Sequence[bytes], *, ack_tracked: bool = False) -> list[CID]:
        """Commit local facts (strict); returns their CIDs in input order."""
        self.merge(ctx, bodies, ack_tracked=ack_tracked, strict=True)
        return [cid_of(bytes(b)) for b in bodies]

    def record_ack(self, ctx: object, h: bytes, peer: bytes, acked_at: int) -> None:
        """Record a FactAck from ``peer`` (idempotent)."""
        try:
            self._db.execute(
                "INSERT OR IGNORE INTO acks (ctx, h, peer, acked_at) VALUES (?, ?, ?, ?)",
                (_ctx(ctx), bytes(h), bytes(peer), int(acked_at)),
            )
        except sqlite3.Error as exc:
            raise JournalError("journal storage failed") from exc

    # -- reads --------------------------------------------------------------------------------

    def digest(self, ctx: object) -> JournalDigest:
        c = _ctx(ctx)
        d = self._digests.get(c)
        if d is None:
            row = self._db.execute("SELECT count, total FROM digests WHERE ctx = ?", (c,)).fetchone()
            d = JournalDigest() if row is None else JournalDigest(row[0], int.from_bytes(row[1], "big"))
            self._digests[c] = d
        return d

    def get(self, ctx: object, h: bytes | CID) -> bytes | None:
        """A fact's bytes by fact hash or CID."""
        if isinstance(h, CID):
            h = hash_of_cid(h)
        row = self._db.execute("SELECT body FROM facts WHERE ctx = ? AND h = ?", (_ctx(ctx), h)).fetchone()
        return None if row is None else row[0]

    def get_many(self, ctx: object, hashes: Sequence[bytes]) -> dict[bytes, bytes]:
        c = _ctx(ctx)
        out: dict[bytes, bytes] = {}
        for i in range(0, len(hashes), 500):
            chunk = list(hashes[i:i + 500])
            q = "SELECT h, body FROM facts WHERE ctx = ? AND h IN (%s)" % ",".join("?" * len(chunk))
            out.update(self._db.execute(q, [c, *chunk]))
        return out

    def __contains__(self, key: tuple[object, bytes]) -> bool:
        ctx, h = key
        return self.get(ctx, h) is not None

    def is_ack_tracked(self, ctx: object, h: bytes) -> bool:
        row = self._db.execute("SELECT ack FROM facts WHERE ctx = ? AND h = ?", (_ctx(ctx), h)).fetchone()
        return bool(row and row[0])

    def ack_tracked_among(self, ctx: object, hashes: Sequence[bytes]) -> set[bytes]:
        """Those of ``hashes`` that are stored ack-tracked (primary-key lookups, 500 a query)."""
        c = _ctx(ctx)
        out: set[bytes] = set()
        for i in range(0, len(hashes), 500):
            chunk = list(hashes[i:i + 500])
            q = "SELECT h FROM facts WHERE ctx = ? AND ack = 1 AND h IN (%s)" % ",".join("?" * len(chunk))
            out.update(r[0] for r in self._db.execute(q, [c, *chunk]))
        return out

    def acks(self, ctx: object, h: bytes) -> list[tuple[bytes, int]]:
        q = "SELECT peer, acked_at FROM acks WHERE ctx = ? AND h = ? ORDER BY peer"
        return [(p, t) for p, t in self._db.execute(q, (_ctx(ctx), h))]

    def hashes(self, ctx: object) -> bytes:
        """Every fact hash of the context, sorted, concatenated (32 bytes each)."""
        cur = self._db.execute("SELECT h FROM facts WHERE ctx = ? ORDER BY h", (_ctx(ctx),))
        return b"".join(r[0] for r in cur)

    def sorted_ids(self, ctx: object) -> SortedIds:
        """The reconciliation snapshot of a context (cached until the digest changes)."""
        c = _ctx(ctx)
        d = self.digest(c)
        hit = self._snapshots.get(c)
        if hit is None or hit[0] != d:
            hit = self._snapshots[c] = (d, SortedIds(self.hashes(c)))
        return hit[1]

    def facts_in_range(self, ctx: object, lo: bytes, hi: bytes | None, limit: int) -> list[tuple[bytes, bytes]]:
        """(hash, body) with lo <= hash < hi (hi None: no upper bound), at most ``limit``."""
        c = _ctx(ctx)
        args: tuple[object, ...]
        if hi is None:
            q, args = "SELECT h, body FROM facts WHERE ctx = ? AND h >= ? ORDER BY h LIMIT ?", (c, lo, limit)
        else:
            q = "SELECT h, body FROM facts WHERE ctx = ? AND h >= ? AND h < ? ORDER BY h LIMIT ?"
            args = (c, lo, hi, limit)
        return list(self._db.execute(q, args))

    def contexts(self) -> list[bytes]:
        return [r[0] for r in self._db.execute("SELECT ctx FROM digests ORDER BY ctx")]

    def recompute_digest(self, ctx: object) -> JournalDigest:
        """The digest recomputed from the stored facts (an O(n) check, for tests and repair)."""
        cur = self._db.execute("SELECT h FROM facts WHERE ctx = ?", (_ctx(ctx),))
        return JournalDigest.of(r[0] for r in cur)

    def integrity_check(self) -> str:
        return self._db.execute("PRAGMA integrity_check").fetchone()[0]

    def view(self, ctx: object) -> ContextJournal:
        return ContextJournal(self, _ctx(ctx))

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> JournalStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class ContextJournal:
    """One context's facts: the view the sync state machine works on."""

    __slots__ = ("store", "ctx")

    def __init__(self, store: JournalStore, ctx: bytes) -> None:
        self.store = store
        self.ctx = ctx

    def digest(self) -> JournalDigest:
        return self.store.digest(self.ctx)

    def hashes(self) -> bytes:
        return self.store.hashes(self.ctx)

    def sorted_ids(self) -> SortedIds:
        return self.store.sorted_ids(self.ctx)

    def get_many(self, hashes: Sequence[bytes]) -> dict[bytes, bytes]:
        return self.store.get_many(self.ctx, hashes)

    def merge(self, bodies: Iterable[bytes]) -> MergeResult:
        return self.store.merge(self.ctx, bodies)

    def facts_in_range(self, lo: bytes, hi: bytes | None, limit: int) -> list[tuple[bytes, bytes]]:
        return self.store.facts_in_range(self.ctx, lo, hi, limit)

    def append(self, bodies: Sequence[bytes], *, ack_tracked: bool = False) -> list[CID]:
        return self.store.append(self.ctx, bodies, ack_tracked=ack_tracked)

    def ack_tracked_among(self, hashes: Sequence[bytes]) -> set[bytes]:
        return self.store.ack_tracked_among(self.ctx, hashes)

    def record_ack(self, h: bytes, peer: bytes, acked_at: int) -> None:
        self.store.record_ack(self.ctx, h, peer, acked_at)


