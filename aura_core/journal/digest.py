"""JournalDigest: an O(1)-per-insert summary of a context's fact set (seed 002 §10.2).

Every fact is identified by the 32-byte digest of its CID's multihash (its "fact hash", uniformly
distributed).  The digest is ``count`` and ``sum`` = Σ fact_hash (as a 256-bit big-endian
integer) mod 2^256.  Both are order-independent, so equal sets give equal digests, and adding a
fact is one addition (removing never happens: the set only grows).  ``fact_hash`` condenses the
pair into a Hash32 for display and comparison; the pair itself is what travels on the wire
(docs/wire.md, journal sync), because sums of disjoint ranges add up: the reconciler splits it.

A modular sum is a fingerprint for honest replicas, not a commitment: an adversary who controls
facts can search for colliding sums (generalised birthday at 256 bits is far out of reach, but
the digest still never replaces checking each fact's CID on receipt).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

from ..hashing import Hash32, Tag, hash32

__all__ = ["JournalDigest", "MOD", "ID_LEN"]

ID_LEN: Final = 32
MOD: Final = 1 << 256
_MASK: Final = MOD - 1


@dataclass(frozen=True, slots=True)
class JournalDigest:
    """``count`` facts whose 32-byte fact hashes sum to ``total`` (mod 2^256)."""

    count: int = 0
    total: int = 0

    @classmethod
    def of(cls, fact_hashes: Iterable[bytes]) -> JournalDigest:
        n = s = 0
        for h in fact_hashes:
            n += 1
            s += int.from_bytes(h, "big")
        return cls(n, s & _MASK)

    def add(self, fact_hash: bytes) -> JournalDigest:
        """The digest after inserting one new fact (O(1))."""
        return JournalDigest(self.count + 1, (self.total + int.from_bytes(fact_hash, "big")) & _MASK)

    def add_many(self, count: int, total: int) -> JournalDigest:
        return JournalDigest(self.count + count, (self.total + total) & _MASK)

    @property
    def sum_bytes(self) -> bytes:
        return self.total.to_bytes(ID_LEN, "big")

    @property
    def fact_hash(self) -> Hash32:
        """Hash32("aura.digest.v1", u64be(count) || sum) — the seed's ``fact_hash``."""
        return hash32(Tag.DIGEST, self.count.to_bytes(8, "big"), self.sum_bytes)

    def __str__(self) -> str:
        return f"JournalDigest(count={self.count}, fact_hash={self.fact_hash})"
