"""Fact journal: SQLite store, incremental digest, set reconciliation and anti-entropy sync."""

from __future__ import annotations

from .digest import JournalDigest
from .store import ContextJournal, JournalStore, MergeResult, cid_of, fact_hash

__all__ = ["ContextJournal", "JournalDigest", "JournalStore", "MergeResult", "cid_of", "fact_hash"]
