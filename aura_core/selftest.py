"""``aura-core selftest``: runs every known-answer vector set the package ships.

Each entry of ``CHECKS`` names a vector set and the function that checks it.  A check function
returns an iterable of ``(case, ok, detail)``; it must not raise for a failing case (a raise
counts as one failure of the whole set).
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Iterable
from typing import TextIO

__all__ = ["CHECKS", "GENERATORS", "run"]

Result = tuple[str, bool, str]

# vector set -> "module:function"
CHECKS: dict[str, str] = {
    "foundation (ids, Hash32, KDF)": "aura_core.vectors_foundation:check",
    "stun (RFC 5769)": "aura_core.vectors_stun:check",
    "dagcbor (IPLD codec fixtures, negatives)": "aura_core.vectors_dagcbor:check",
    "noise (cacophony IKpsk2 BLAKE2s/BLAKE2b)": "aura_core.vectors_noise:check",
    "rendezvous (descriptors, revocations, facts)": "aura_core.rendezvous.vectors:check",
    "receipts (transcript, Hash32, Ed25519, chains)": "aura_core.vectors_receipts:check",
}

# vector file (under aura_core/vectors/) -> "module:function" returning its JSON document;
# ``aura-core vectors`` regenerates them.
GENERATORS: dict[str, str] = {
    "foundation.json": "aura_core.vectors_foundation:generate",
    "rendezvous/descriptors.json": "aura_core.rendezvous.vectors:generate",
    "receipts.json": "aura_core.vectors_receipts:generate",
    "dagcbor/aura-negative.json": "aura_core.vectors_dagcbor:generate_negative",
}


def _load(spec: str) -> Callable[[], Iterable[Result]]:
    module, _, func = spec.partition(":")
    return getattr(importlib.import_module(module), func)


def run(out: TextIO = sys.stdout, verbose: bool = False) -> tuple[int, int]:
    passed = failed = 0
    for name, spec in CHECKS.items():
        p = f = 0
        try:
            for case, ok, detail in _load(spec)():
                if ok:
                    p += 1
                else:
                    f += 1
                    out.write(f"FAIL {name}: {case}: {detail}\n")
                if verbose and ok:
                    out.write(f"ok   {name}: {case}\n")
        except Exception as exc:  # a broken set counts as a failure, and the run goes on
            f += 1
            out.write(f"FAIL {name}: raised {type(exc).__name__}: {exc}\n")
        out.write(f"{name}: {p} passed, {f} failed\n")
        passed += p
        failed += f
    out.write(f"{passed} passed, {failed} failed\n")
    return passed, failed
