"""Protocol version negotiation for rendezvous channels (seed 002 §11).

The offer travels in the first payload of each Noise handshake message, in the format the Noise
binding defines (:class:`aura_core.noise.binding.Offer`: epoch, version, min_version, capability
bitmap), so negotiation costs no extra round trip.  This module builds our offer from names and
turns the binding's result into the two outcomes of seed 002 §11.2:

* :class:`Compatible` — ``version`` = min of both versions, ``capabilities`` = the shared names;
* :class:`Incompatible` — ``reason``, the peer's version and an optional ``upgrade_url``.

Both sides hold both offers once message 2 is read, so both reach the same outcome; an
incompatible responder still answers (its answer carries its range, so the initiator learns the
reason) but registers no channel.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

from ..errors import InvalidValue, ProtocolError, VersionError
from ..noise.binding import CAPABILITIES, Offer, negotiate, version_from_str, version_to_str

__all__ = [
    "PROTOCOL_VERSION",
    "MIN_PROTOCOL_VERSION",
    "DEFAULT_CAPABILITIES",
    "Compatible",
    "Incompatible",
    "make_offer",
    "capability_names",
    "evaluate",
    "require_compatible",
]

PROTOCOL_VERSION: Final = "1.0.0"
MIN_PROTOCOL_VERSION: Final = "1.0.0"
# Seed 002 §11.3 (all introduced in 1.0.0) plus the transport we run channels over.
DEFAULT_CAPABILITIES: Final = ("ceremony_supersession", "version_handshake", "fact_journal",
                               "stream_transport")


@dataclass(frozen=True, slots=True)
class Compatible:
    version: str
    capabilities: frozenset[str]


@dataclass(frozen=True, slots=True)
class Incompatible:
    reason: str
    peer_version: str
    upgrade_url: str | None = None


def capability_names(bits: int) -> frozenset[str]:
    """Names of the known capability bits set in ``bits`` (unknown bits are ignored)."""
    return frozenset(name for name, bit in CAPABILITIES.items() if bits & bit)


def make_offer(epoch: int, *, version: str = PROTOCOL_VERSION,
               min_version: str = MIN_PROTOCOL_VERSION,
               capabilities: Iterable[str] = DEFAULT_CAPABILITIES) -> Offer:
    if (version is PROTOCOL_VERSION and min_version is MIN_PROTOCOL_VERSION
            and capabilities is DEFAULT_CAPABILITIES):
        return _default_offer(epoch)
    return _make_offer(epoch, version, min_version, tuple(capabilities))


def _default_offer(epoch: int) -> Offer:
    offer = _DEFAULT_OFFERS.get(epoch)
    if offer is None:
        if len(_DEFAULT_OFFERS) > 64:
            _DEFAULT_OFFERS.clear()
        offer = _DEFAULT_OFFERS[epoch] = _make_offer(epoch, PROTOCOL_VERSION,
                                                     MIN_PROTOCOL_VERSION, DEFAULT_CAPABILITIES)
    return offer


_DEFAULT_OFFERS: dict[int, Offer] = {}


def _make_offer(epoch: int, version: str, min_version: str, capabilities: tuple[str, ...]) -> Offer:
    bits = 0
    for name in capabilities:
        if name not in CAPABILITIES:
            raise InvalidValue(f"unknown capability {name!r}")
        bits |= CAPABILITIES[name]
    return Offer(epoch, version_from_str(version), version_from_str(min_version), bits)


def evaluate(local: Offer, remote: Offer, upgrade_url: str | None = None) -> Compatible | Incompatible:
    """Seed 002 §11.2 outcome of two offers; never raises for a version mismatch."""
    # the outcome depends on the ranges, capabilities and epochs only (not on timestamps)
    key = (local.epoch, local.version, local.min_version, local.capabilities, remote.epoch,
           remote.version, remote.min_version, remote.capabilities, upgrade_url)
    hit = _OUTCOMES.get(key)
    if hit is None:
        if len(_OUTCOMES) > 256:  # offers are few in practice; bound the memo anyway
            _OUTCOMES.clear()
        hit = _OUTCOMES[key] = _evaluate(local, remote, upgrade_url)
    return hit


_OUTCOMES: dict[tuple[object, ...], Compatible | Incompatible] = {}


def _evaluate(local: Offer, remote: Offer, upgrade_url: str | None) -> Compatible | Incompatible:
    try:
        n = negotiate(local, remote)
    except VersionError as exc:
        return Incompatible(str(exc), version_to_str(remote.version), upgrade_url)
    except ProtocolError as exc:  # epochs differ
        return Incompatible(str(exc), version_to_str(remote.version), None)
    return Compatible(version_to_str(n.version), capability_names(n.capabilities))


def require_compatible(local: Offer, remote: Offer) -> Compatible:
    """Like :func:`evaluate` but raises :class:`VersionError` carrying the reason."""
    outcome = evaluate(local, remote)
    if isinstance(outcome, Incompatible):
        raise VersionError(f"incompatible peer (version {outcome.peer_version}): {outcome.reason}")
    return outcome
