"""Capabilities as Biscuit tokens (seed 002 §2: "CapGuard evaluates Biscuit capabilities").

A token's authority block grants ``right(<context>, <capability>)`` facts and may bound its life
with ``check if time($t), $t <= <expiry>``; every holder can attenuate it by appending a block
that narrows the capabilities and/or the expiry (Biscuit's offline attenuation).  Verification
happens **once**, when a guard snapshot is prepared: :func:`verify_capabilities` checks the
signature chain against the issuer's root key, then asks the authorizer, for each capability
name, whether ``operation(<name>)`` is allowed in ``context(<ctx>)`` at ``time(<now>)``.  The
result is a frozenset of names, so guard evaluation per send is a set lookup.

Failures are generic: a bad token raises :class:`~aura_core.errors.AuthorizationError` with
"authorization failed", never naming what was missing (seed 002 §8.4).  ``now`` is a parameter
(milliseconds since the Unix epoch); nothing here reads the clock.  Biscuit dates have
one-second resolution, so expiries round down and ``now`` rounds up.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta, timezone
from typing import Final

import biscuit_auth as _bis

from .errors import AuthorizationError, InvalidValue

__all__ = [
    "CAP_RENDEZVOUS_PUBLISH",
    "CAP_RENDEZVOUS_CONNECT",
    "CAP_RENDEZVOUS_RELAY",
    "CAP_RELAY_FORWARD",
    "ALL_CAPABILITIES",
    "CapabilityIssuer",
    "attenuate",
    "verify_capabilities",
]

CAP_RENDEZVOUS_PUBLISH: Final = "rendezvous:publish"
CAP_RENDEZVOUS_CONNECT: Final = "rendezvous:connect"
CAP_RENDEZVOUS_RELAY: Final = "rendezvous:relay"
CAP_RELAY_FORWARD: Final = "relay:forward"
ALL_CAPABILITIES: Final = frozenset(
    {CAP_RENDEZVOUS_PUBLISH, CAP_RENDEZVOUS_CONNECT, CAP_RENDEZVOUS_RELAY, CAP_RELAY_FORWARD})


def _time(ms: int, *, up: bool = False) -> datetime:
    # Biscuit dates have one-second resolution: expiries round down and ``now`` rounds up, so
    # a token is never accepted after its millisecond expiry
    secs = -(-ms // 1000) if up else ms // 1000
    return datetime.fromtimestamp(secs, tz=timezone.utc)


def _ctx(context: object) -> str:
    raw = bytes(context)  # type: ignore[call-overload]
    if len(raw) != 16:
        raise InvalidValue("a context id is 16 bytes")
    return raw.hex()


def _names(caps: Iterable[str]) -> list[str]:
    out = sorted(set(caps))
    for c in out:
        if not isinstance(c, str) or not c or '"' in c or "\\" in c:
            raise InvalidValue("capability names are plain strings")
    return out


class CapabilityIssuer:
    """Holds a root Ed25519 key (32-byte seed) and issues capability tokens."""

    def __init__(self, seed: bytes) -> None:
        if len(seed) != 32:
            raise InvalidValue("a root key seed is 32 bytes")
        # (biscuit-python's bundled stubs lag its runtime signatures; hence the ignores)
        key = _bis.PrivateKey.from_bytes(bytes(seed), _bis.Algorithm.Ed25519)  # type: ignore[call-arg,attr-defined]
        self._kp = _bis.KeyPair.from_private_key(key)

    @property
    def public_key(self) -> bytes:
        """The 32-byte Ed25519 root public key verifiers need."""
        return bytes(self._kp.public_key.to_bytes())

    def issue(self, context: object, capabilities: Iterable[str], *, expires_at: int | None = None) -> bytes:
        """A token granting ``capabilities`` in ``context`` (until ``expires_at`` ms, if given)."""
        ctx = _ctx(context)
        b = _bis.BiscuitBuilder()
        for cap in _names(capabilities):
            b.add_fact(_bis.Fact("right({ctx}, {cap})", {"ctx": ctx, "cap": cap}))
        if expires_at is not None:
            b.add_check(_bis.Check("check if time($t), $t <= {exp}", {"exp": _time(expires_at)}))
        return bytes(b.build(self._kp.private_key).to_bytes())


def _root(public_key: bytes) -> _bis.PublicKey:
    return _bis.PublicKey.from_bytes(bytes(public_key), _bis.Algorithm.Ed25519)  # type: ignore[call-arg,attr-defined]


def attenuate(token: bytes, root_public_key: bytes, *, capabilities: Iterable[str] | None = None,
              expires_at: int | None = None) -> bytes:
    """Append a block that narrows ``token`` to ``capabilities`` and/or an earlier expiry."""
    try:
        t = _bis.Biscuit.from_bytes(bytes(token), _root(root_public_key))
    except Exception as exc:  # biscuit's own errors: malformed or forged token
        raise AuthorizationError() from exc
    blk = _bis.BlockBuilder()  # type: ignore[call-arg]
    if capabilities is not None:
        names = ", ".join('"%s"' % c for c in _names(capabilities))
        blk.add_check(_bis.Check("check if operation($op), [%s].contains($op)" % names))
    if expires_at is not None:
        blk.add_check(_bis.Check("check if time($t), $t <= {exp}", {"exp": _time(expires_at)}))
    return bytes(t.append(blk).to_bytes())


def _limits() -> object:
    # Biscuit's default run-time limit is 1 ms: a preempted process on a loaded machine then
    # refuses valid tokens (measured ~1 in 2,000).  Our policies are tiny; 50 ms only bounds a
    # pathological token, and the fact/iteration limits stay at Biscuit's defaults.
    limits = _bis.AuthorizerBuilder("allow if true;").limits()
    limits.max_time = timedelta(milliseconds=50)
    return limits


_LIMITS = _limits()


def verify_capabilities(token: bytes, root_public_key: bytes, context: object, now: int,
                        wanted: Iterable[str] = ALL_CAPABILITIES) -> frozenset[str]:
    """The capabilities of ``wanted`` that ``token`` grants in ``context`` at ``now`` (ms).

    Raises AuthorizationError (generic) if the token is malformed, forged or for another root.
    A valid token that grants nothing here (expired, other context) yields an empty set.
    """
    ctx = _ctx(context)
    try:
        t = _bis.Biscuit.from_bytes(bytes(token), _root(root_public_key))
    except Exception as exc:
        raise AuthorizationError() from exc
    when = _time(now, up=True)
    granted = set()
    for cap in _names(wanted):
        ab = _bis.AuthorizerBuilder(
            "time({now}); context({ctx}); operation({op}); allow if right({ctx}, {op});",
            {"now": when, "ctx": ctx, "op": cap})
        ab.set_limits(_LIMITS)
        try:
            ab.build(t).authorize()
        except Exception:  # not granted here: the reason is deliberately not kept
            continue
        granted.add(cap)
    return frozenset(granted)
