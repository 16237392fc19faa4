"""The NAT lab: a small internet in network namespaces (root only), as an I/O harness.

Owns the lab (:mod:`.lab`: namespaces, nftables NAT modes, coturn), the processes that run inside
it (:mod:`.punch_agent`, :mod:`.udp_relay`, :mod:`.pub`, :mod:`.peer`) and the orchestrator of
``aura-core demo --netlab`` (:mod:`.demo`).  It does I/O and spawns processes, so the layering
test exempts it like ``asyncio/``; nothing else in the package imports it.
"""

from .lab import PAIRS, NatLab, missing_requirements

__all__ = ["PAIRS", "NatLab", "missing_requirements"]
