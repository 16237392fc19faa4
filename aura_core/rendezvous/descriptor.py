"""Rendezvous descriptors (seed 001 §4.2-4.3, seed 000 §3): build, seal, open, validate, revoke,
and the socially neutral split views derived from them.

Owns :class:`RendezvousDescriptor` (the plaintext value), the transport hints, the sealed fact
form (:func:`seal_descriptor` / :func:`open_descriptor`), signed revocations, and the views
:class:`LinkEndpoint`, :class:`ServiceDescriptor`, :class:`EstablishPath`, :class:`MovePath`.

Theory of operation
-------------------
* A sealed descriptor is a journal fact (kind ``rendezvous.descriptor``).  Its header (context,
  authority, Ed25519 key, epoch, validity window, nonce) is readable by whoever stores the fact;
  everything that says *how to reach* the authority (transport hints, PSK commitment,
  ``punch_nonce``, nickname, service families) is XChaCha20-Poly1305 ciphertext under
  ``ContextKey.descriptor_key(context)`` with the header as associated data, so only context
  participants can read it and a ciphertext moved to another header or context fails to open.
* The whole fact minus ``sig`` is signed by the authority (encrypt-then-sign): anyone can reject
  a forgery before decrypting, and the key is bound to the authority id because the id is the
  hash of the key.
* Validation order is cheapest first and leaks nothing: size, shape, context, key binding,
  signature, validity window against ``now``, decryption, then the PSK commitment (which proves
  the publisher holds this context's key for that epoch).  Replay, staleness and revocation need
  state and are checked by :class:`~aura_core.rendezvous.service.RendezvousService`.
* Views carry only generic service families (Establish / Move / Hold) and link endpoints; no
  social role (friend, guardian, neighborhood ...) can be expressed in their schema.

Times are milliseconds since the Unix epoch, passed in as ``now``; randomness arrives through
``rand`` (defaults below).
"""

from __future__ import annotations

import hmac
import ipaddress
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Final, Union

from nacl import bindings as _nacl
from nacl.exceptions import BadSignatureError as _NaclBadSignature
from nacl.exceptions import CryptoError as _NaclCryptoError

from .. import dagcbor
from .._sodium import random_bytes as _sodium_random_bytes
from ..errors import CodecError, DescriptorError, InvalidValue
from ..hashing import ContextKey, Tag, hash32
from ..ids import AuthorityId, ContextId
from ..keys import IdentityKey
from .facts import FACT_VERSION, KIND_DESCRIPTOR, KIND_DESCRIPTOR_REVOKED, RendezvousFact

__all__ = [
    "QuicDirect", "QuicReflexive", "WebSocketRelay", "WebSocketDirect", "TcpDirect",
    "TransportHint", "ServiceKind", "LinkProtocol", "LinkEndpoint", "ServiceDescriptorHeader",
    "ServiceDescriptor", "Route", "EstablishPath", "MovePath", "RendezvousDescriptor",
    "psk_commitment", "build_descriptor", "seal_descriptor", "open_descriptor",
    "revoke_descriptor", "verify_revocation", "MAX_DESCRIPTOR_BYTES", "MAX_HINTS",
    "MAX_LIFETIME_MS", "DEFAULT_LIFETIME_MS", "DEFAULT_SKEW_MS", "DEFAULT_REFRESH_FRACTION",
]


def _default_rand(n: int) -> bytes:
    return _sodium_random_bytes(n)


DEFAULT_RAND: Final[Callable[[int], bytes]] = _default_rand

MAX_DESCRIPTOR_BYTES: Final = 4096  # encoded fact; bigger ones are refused unread
MAX_HINTS: Final = 16
MAX_NICKNAME_BYTES: Final = 64
MAX_TEXT_BYTES: Final = 255  # addresses and URLs
MAX_LIFETIME_MS: Final = 7 * 24 * 3600 * 1000
DEFAULT_LIFETIME_MS: Final = 3600 * 1000
DEFAULT_SKEW_MS: Final = 30_000  # tolerated clock difference on valid_from
DEFAULT_REFRESH_FRACTION: Final = 0.2  # refresh in the last 20 % of the window

SIG_DOMAIN: Final = b"aura.rendezvous.descriptor.v1\x00"
REVOKE_DOMAIN: Final = b"aura.rendezvous.revoke.v1\x00"
AD_DOMAIN: Final = b"aura.rendezvous.descriptor-ad.v1\x00"
PSK_COMMIT_LABEL: Final = b"aura.psk-commit.v1"

_HEADER_FIELDS: Final = ("kind", "v", "ctx", "auth", "pk", "epoch", "valid_from", "valid_until",
                         "nonce")


# ---- transport hints -------------------------------------------------------------------------

_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_IPV4_PORT = re.compile(rf"{_OCTET}(?:\.{_OCTET}){{3}}:([0-9]{{1,5}})")


def _socket_addr(addr: object) -> str:
    """Validate ``ip:port`` / ``[ipv6]:port`` (the only forms a direct hint may carry)."""
    if not isinstance(addr, str) or not 0 < len(addr.encode()) <= MAX_TEXT_BYTES:
        raise InvalidValue("address must be a short text 'ip:port'")
    m = _IPV4_PORT.fullmatch(addr)  # the common case, without ipaddress's slow parser
    if m is not None and 0 < int(m.group(1)) < 65536 and m.group(1)[0] != "0":
        return addr
    host, sep, port = addr.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise InvalidValue(f"bad socket address {addr!r}")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
        version = 6
    else:
        version = 4
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        raise InvalidValue(f"bad socket address {addr!r}") from None
    if ip.version != version:
        raise InvalidValue(f"bad socket address {addr!r} (IPv6 needs brackets)")
    return addr


def _ws_url(url: object) -> str:
    if (not isinstance(url, str) or not 0 < len(url.encode()) <= MAX_TEXT_BYTES
            or not url.startswith(("ws://", "wss://")) or any(c.isspace() for c in url)):
        raise InvalidValue("WebSocket URL must be a short ws:// or wss:// text")
    if "?" in url:  # seed 001 §3.1: secrets never travel in query strings
        raise InvalidValue("WebSocket URL must not carry a query string")
    return url


@dataclass(frozen=True, slots=True)
class QuicDirect:
    addr: str

    def __post_init__(self) -> None:
        _socket_addr(self.addr)


@dataclass(frozen=True, slots=True)
class QuicReflexive:
    """A server-reflexive (STUN-observed) QUIC address."""
    addr: str

    def __post_init__(self) -> None:
        _socket_addr(self.addr)


@dataclass(frozen=True, slots=True)
class WebSocketRelay:
    relay: AuthorityId

    def __post_init__(self) -> None:
        if not isinstance(self.relay, AuthorityId):
            raise InvalidValue("relay must be an AuthorityId")


@dataclass(frozen=True, slots=True)
class WebSocketDirect:
    url: str

    def __post_init__(self) -> None:
        _ws_url(self.url)


@dataclass(frozen=True, slots=True)
class TcpDirect:
    addr: str

    def __post_init__(self) -> None:
        _socket_addr(self.addr)


TransportHint = Union[QuicDirect, QuicReflexive, WebSocketRelay, WebSocketDirect, TcpDirect]
_HINT_TYPES: Final = {c.__name__: c for c in (QuicDirect, QuicReflexive, WebSocketRelay,
                                               WebSocketDirect, TcpDirect)}
_HINT_CLASSES: Final = tuple(_HINT_TYPES.values())


def _hint_to_data(h: TransportHint) -> dict[str, Any]:
    if isinstance(h, WebSocketRelay):
        return {"t": "WebSocketRelay", "relay": bytes(h.relay)}
    if isinstance(h, WebSocketDirect):
        return {"t": "WebSocketDirect", "url": h.url}
    if isinstance(h, (QuicDirect, QuicReflexive, TcpDirect)):
        return {"t": type(h).__name__, "addr": h.addr}
    raise InvalidValue(f"not a transport hint: {h!r}")


def _hint_from_data(d: object) -> TransportHint:
    if not isinstance(d, dict) or d.get("t") not in _HINT_TYPES or len(d) != 2:
        raise DescriptorError("malformed transport hint")
    t = d["t"]
    try:
        if t == "WebSocketRelay":
            relay = d.get("relay")
            if not isinstance(relay, bytes):
                raise DescriptorError("malformed transport hint")
            return WebSocketRelay(AuthorityId(relay))
        value = d.get("url" if t == "WebSocketDirect" else "addr")
        if not isinstance(value, str):
            raise DescriptorError("malformed transport hint")
        if t == "WebSocketDirect":
            return WebSocketDirect(value)
        if t == "QuicDirect":
            return QuicDirect(value)
        if t == "QuicReflexive":
            return QuicReflexive(value)
        return TcpDirect(value)
    except InvalidValue:
        raise DescriptorError("malformed transport hint") from None


# ---- split views (seed 001 §4.3, §6.2) ---------------------------------------------------------

class ServiceKind(str, Enum):
    """Generic service families; deliberately no social roles."""
    ESTABLISH = "Establish"
    MOVE = "Move"
    HOLD = "Hold"


class LinkProtocol(str, Enum):
    QUIC = "quic"
    QUIC_REFLEXIVE = "quic-reflexive"
    WEBSOCKET = "websocket"
    WEBSOCKET_RELAY = "websocket-relay"
    TCP = "tcp"


@dataclass(frozen=True, slots=True)
class LinkEndpoint:
    """How a peer may be reached: a protocol and an address or a relay authority."""
    protocol: LinkProtocol
    address: str | None = None
    relay_authority: AuthorityId | None = None


@dataclass(frozen=True, slots=True)
class ServiceDescriptorHeader:
    authority_id: AuthorityId
    context_id: ContextId
    valid_until: int


@dataclass(frozen=True, slots=True)
class ServiceDescriptor:
    """What service family a peer offers (never why it was chosen)."""
    header: ServiceDescriptorHeader
    kind: ServiceKind


@dataclass(frozen=True, slots=True)
class Route:
    """Hops to take (a direct endpoint, or a relay) to reach ``destination``."""
    destination: AuthorityId
    hops: tuple[LinkEndpoint, ...]


@dataclass(frozen=True, slots=True)
class EstablishPath:
    route: Route


@dataclass(frozen=True, slots=True)
class MovePath:
    route: Route


def _endpoint(h: TransportHint) -> LinkEndpoint:
    if isinstance(h, QuicDirect):
        return LinkEndpoint(LinkProtocol.QUIC, h.addr)
    if isinstance(h, QuicReflexive):
        return LinkEndpoint(LinkProtocol.QUIC_REFLEXIVE, h.addr)
    if isinstance(h, TcpDirect):
        return LinkEndpoint(LinkProtocol.TCP, h.addr)
    if isinstance(h, WebSocketDirect):
        return LinkEndpoint(LinkProtocol.WEBSOCKET, h.url)
    return LinkEndpoint(LinkProtocol.WEBSOCKET_RELAY, None, h.relay)


# ---- the descriptor ---------------------------------------------------------------------------

def psk_commitment(context_key: ContextKey, context: ContextId, epoch: int,
                   authority: AuthorityId) -> bytes:
    """Commitment to the publisher's context PSK for ``epoch`` (docs/wire.md).

    ``Hash32(Tag.COMMIT, label || ctx || epoch_be64 || auth || psk)`` where ``psk`` is
    ``context_key.handshake_psk(ctx, epoch, auth, auth)``: only holders of the context key can
    compute or check it, and it pins the epoch the publisher is keyed for.
    """
    psk = context_key.handshake_psk(bytes(context), epoch, bytes(authority), bytes(authority))
    return hash32(Tag.COMMIT, PSK_COMMIT_LABEL, bytes(context), epoch.to_bytes(8, "big"),
                  bytes(authority), psk).digest


@dataclass(frozen=True)
class RendezvousDescriptor:
    """The plaintext descriptor (seed 001 §4.2 plus ``punch_nonce`` and ``epoch``)."""

    authority_id: AuthorityId
    context_id: ContextId
    transport_hints: tuple[TransportHint, ...]
    handshake_psk_commitment: bytes
    public_key: bytes
    valid_from: int
    valid_until: int
    nonce: bytes
    punch_nonce: bytes
    epoch: int = 0
    nickname_suggestion: str | None = None
    services: tuple[ServiceKind, ...] = ()
    sealed: dict[str, Any] | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        if not isinstance(self.authority_id, AuthorityId) or not isinstance(self.context_id, ContextId):
            raise InvalidValue("authority_id / context_id have the wrong type")
        for name, size in (("handshake_psk_commitment", 32), ("public_key", 32), ("nonce", 32),
                           ("punch_nonce", 32)):
            v = getattr(self, name)
            if not isinstance(v, bytes) or len(v) != size:
                raise InvalidValue(f"{name} must be {size} bytes")
        if not 0 <= self.valid_from < self.valid_until < 1 << 64:
            raise InvalidValue("validity window must satisfy 0 <= valid_from < valid_until")
        if self.valid_until - self.valid_from > MAX_LIFETIME_MS:
            raise InvalidValue("validity window longer than MAX_LIFETIME_MS")
        if not 0 <= self.epoch < 1 << 64:
            raise InvalidValue("epoch is a u64")
        if not 0 < len(self.transport_hints) <= MAX_HINTS:
            raise InvalidValue(f"a descriptor carries 1..{MAX_HINTS} transport hints")
        for h in self.transport_hints:
            if not isinstance(h, _HINT_CLASSES):
                raise InvalidValue(f"not a transport hint: {h!r}")
        if self.nickname_suggestion is not None and (
                not isinstance(self.nickname_suggestion, str)
                or len(self.nickname_suggestion.encode()) > MAX_NICKNAME_BYTES):
            raise InvalidValue(f"nickname is text of at most {MAX_NICKNAME_BYTES} bytes")
        if len(set(self.services)) != len(self.services) or not all(
                isinstance(s, ServiceKind) for s in self.services):
            raise InvalidValue("services are distinct ServiceKind values")

    # -- lifecycle ----------------------------------------------------------------------------
    def is_valid_at(self, now: int, skew_ms: int = DEFAULT_SKEW_MS) -> bool:
        return self.valid_from - skew_ms <= now < self.valid_until

    def refresh_at(self, fraction: float = DEFAULT_REFRESH_FRACTION) -> int:
        """The time from which the publisher should publish a successor."""
        return self.valid_until - int((self.valid_until - self.valid_from) * fraction)

    def needs_refresh(self, now: int, refresh_window_ms: int | None = None) -> bool:
        start = (self.refresh_at() if refresh_window_ms is None
                 else self.valid_until - refresh_window_ms)
        return now >= start

    # -- views ----------------------------------------------------------------------------------
    def link_endpoints(self) -> tuple[LinkEndpoint, ...]:
        return tuple(_endpoint(h) for h in self.transport_hints)

    def service_descriptors(self) -> tuple[ServiceDescriptor, ...]:
        """Explicit families if the publisher listed some, otherwise derived from the hints:
        any endpoint offers Establish, a relay hint also Move."""
        kinds = list(self.services)
        if not kinds:
            kinds.append(ServiceKind.ESTABLISH)
            if any(isinstance(h, WebSocketRelay) for h in self.transport_hints):
                kinds.append(ServiceKind.MOVE)
        header = ServiceDescriptorHeader(self.authority_id, self.context_id, self.valid_until)
        return tuple(ServiceDescriptor(header, k) for k in kinds)

    def establish_paths(self) -> tuple[EstablishPath, ...]:
        return tuple(EstablishPath(Route(self.authority_id, (ep,))) for ep in self.link_endpoints())

    def move_paths(self) -> tuple[MovePath, ...]:
        return tuple(MovePath(Route(self.authority_id, (ep,))) for ep in self.link_endpoints()
                     if ep.protocol is LinkProtocol.WEBSOCKET_RELAY)

    def has_direct_transport(self) -> bool:
        for h in self.transport_hints:
            if type(h) is not WebSocketRelay:
                return True
        return False

    # -- encoding -----------------------------------------------------------------------------
    def _payload(self) -> dict[str, Any]:
        p: dict[str, Any] = {"hints": [_hint_to_data(h) for h in self.transport_hints],
                             "psk_commit": self.handshake_psk_commitment,
                             "punch_nonce": self.punch_nonce}
        if self.nickname_suggestion is not None:
            p["nick"] = self.nickname_suggestion
        if self.services:
            p["svc"] = [s.value for s in self.services]
        return p

    def _header(self) -> dict[str, Any]:
        return {"kind": KIND_DESCRIPTOR, "v": FACT_VERSION, "ctx": bytes(self.context_id),
                "auth": bytes(self.authority_id), "pk": self.public_key, "epoch": self.epoch,
                "valid_from": self.valid_from, "valid_until": self.valid_until,
                "nonce": self.nonce}


def build_descriptor(identity: IdentityKey, context_key: ContextKey, context: ContextId,
                     hints: Sequence[TransportHint], *, now: int, epoch: int = 0,
                     lifetime_ms: int = DEFAULT_LIFETIME_MS, nickname: str | None = None,
                     services: Sequence[ServiceKind] = (),
                     rand: Callable[[int], bytes] = DEFAULT_RAND) -> RendezvousDescriptor:
    """A fresh plaintext descriptor for ``identity`` valid from ``now`` for ``lifetime_ms``."""
    auth = identity.authority_id
    return RendezvousDescriptor(
        authority_id=auth, context_id=context, transport_hints=tuple(hints),
        handshake_psk_commitment=psk_commitment(context_key, context, epoch, auth),
        public_key=identity.public.ed25519, valid_from=now, valid_until=now + lifetime_ms,
        nonce=rand(32), punch_nonce=rand(32), epoch=epoch, nickname_suggestion=nickname,
        services=tuple(services))


def _ad(header: dict[str, Any]) -> bytes:
    return AD_DOMAIN + dagcbor.encode(header)


def seal_descriptor(descriptor: RendezvousDescriptor, identity: IdentityKey,
                    context_key: ContextKey, *,
                    rand: Callable[[int], bytes] = DEFAULT_RAND) -> dict[str, Any]:
    """Encrypt the payload, sign the fact, return it (kind ``rendezvous.descriptor``)."""
    if identity.public.ed25519 != descriptor.public_key:
        raise InvalidValue("the descriptor's key is not this identity's")
    header = descriptor._header()
    key = context_key.descriptor_key(bytes(descriptor.context_id))
    aead_nonce = rand(24)
    ct = _nacl.crypto_aead_xchacha20poly1305_ietf_encrypt(
        dagcbor.encode(descriptor._payload()), _ad(header), aead_nonce, key)
    fact = dict(header, aead_nonce=aead_nonce, ct=ct)
    body = dagcbor.encode(fact)
    fact["sig"] = identity.sign(SIG_DOMAIN + body)
    # adding "sig" (4 bytes key + 2 bytes head + 64) keeps the map head at one byte
    if len(body) + 70 > MAX_DESCRIPTOR_BYTES:
        raise InvalidValue(f"sealed descriptor exceeds {MAX_DESCRIPTOR_BYTES} bytes")
    return fact


def _as_fact(fact: dict[str, Any] | bytes) -> tuple[dict[str, Any], bool]:
    """(the fact as a dict, whether its encoded size was already checked)."""
    sized = False
    if isinstance(fact, (bytes, bytearray, memoryview)):
        if len(fact) > MAX_DESCRIPTOR_BYTES:
            raise DescriptorError("descriptor too large")
        try:
            fact = dagcbor.decode(bytes(fact))
        except CodecError:
            raise DescriptorError("descriptor is not canonical DAG-CBOR") from None
        sized = True
    if not isinstance(fact, dict):
        raise DescriptorError("not a rendezvous fact")
    return fact, sized


def _verify(pk: bytes, auth: bytes, domain: bytes, body: dict[str, Any], sig: bytes) -> None:
    # The id is the hash of the key, so this binds key and authority.  (No PublicIdentity
    # here: its X25519 conversion costs a field inversion that verification does not need.)
    if not hmac.compare_digest(bytes(AuthorityId.from_public_key(pk)), auth):
        raise DescriptorError("descriptor key is not bound to its authority")
    try:
        _nacl.crypto_sign_open(sig + domain + dagcbor.encode(body), pk)
    except (_NaclBadSignature, _NaclCryptoError, ValueError):
        raise DescriptorError("descriptor signature invalid") from None


def open_descriptor(fact: dict[str, Any] | bytes, context_key: ContextKey, context: ContextId,
                    *, now: int, skew_ms: int = DEFAULT_SKEW_MS) -> RendezvousDescriptor:
    """Validate and decrypt a sealed descriptor; DescriptorError says what is wrong."""
    fact, sized = _as_fact(fact)
    if fact.get("kind") != KIND_DESCRIPTOR:
        raise DescriptorError("not a descriptor fact")
    RendezvousFact.check(fact)
    if not sized and len(dagcbor.encode(fact)) > MAX_DESCRIPTOR_BYTES:
        raise DescriptorError("descriptor too large")
    if not hmac.compare_digest(fact["ctx"], bytes(context)):
        raise DescriptorError("descriptor belongs to another context")
    _verify(fact["pk"], fact["auth"], SIG_DOMAIN, RendezvousFact.unsigned_body(fact), fact["sig"])
    valid_from, valid_until = fact["valid_from"], fact["valid_until"]
    if not valid_from < valid_until or valid_until - valid_from > MAX_LIFETIME_MS:
        raise DescriptorError("descriptor validity window is malformed")
    if now < valid_from - skew_ms:
        raise DescriptorError("descriptor is not valid yet")
    if now >= valid_until:
        raise DescriptorError("descriptor expired")
    header = {k: fact[k] for k in _HEADER_FIELDS}
    try:
        plain = _nacl.crypto_aead_xchacha20poly1305_ietf_decrypt(
            fact["ct"], _ad(header), fact["aead_nonce"], context_key.descriptor_key(bytes(context)))
    except _NaclCryptoError:
        raise DescriptorError("descriptor payload does not decrypt under this context key") from None
    try:
        payload = dagcbor.decode(plain)
    except CodecError:
        raise DescriptorError("descriptor payload is malformed") from None
    if (not isinstance(payload, dict) or not {"hints", "psk_commit", "punch_nonce"} <= set(payload)
            or not set(payload) <= {"hints", "psk_commit", "punch_nonce", "nick", "svc"}
            or not isinstance(payload["hints"], list)):
        raise DescriptorError("descriptor payload is malformed")
    auth, ctx = AuthorityId(fact["auth"]), ContextId(fact["ctx"])
    want = psk_commitment(context_key, ctx, fact["epoch"], auth)
    commit = payload["psk_commit"]
    if not isinstance(commit, bytes) or not hmac.compare_digest(commit, want):
        raise DescriptorError("descriptor PSK commitment does not match this context")
    if len(payload["hints"]) > MAX_HINTS:
        raise DescriptorError("too many transport hints")
    hints = tuple(_hint_from_data(h) for h in payload["hints"])
    svc = payload.get("svc", [])
    try:
        services = tuple(ServiceKind(s) for s in svc) if isinstance(svc, list) else None
        if services is None:
            raise ValueError
        return RendezvousDescriptor(
            authority_id=auth, context_id=ctx, transport_hints=hints,
            handshake_psk_commitment=commit, public_key=fact["pk"], valid_from=valid_from,
            valid_until=valid_until, nonce=fact["nonce"], punch_nonce=payload["punch_nonce"],
            epoch=fact["epoch"], nickname_suggestion=payload.get("nick"), services=services,
            sealed=fact)
    except (ValueError, TypeError):
        raise DescriptorError("descriptor payload is malformed") from None


def revoke_descriptor(identity: IdentityKey, context: ContextId, nonce: bytes) -> dict[str, Any]:
    """A signed ``rendezvous.descriptor_revoked`` fact for the descriptor with ``nonce``."""
    body = {"kind": KIND_DESCRIPTOR_REVOKED, "v": FACT_VERSION, "ctx": bytes(context),
            "auth": bytes(identity.authority_id), "pk": identity.public.ed25519,
            "nonce": bytes(nonce)}
    fact = dict(body, sig=identity.sign(REVOKE_DOMAIN + dagcbor.encode(body)))
    return RendezvousFact.check(fact)


def verify_revocation(fact: dict[str, Any] | bytes, context: ContextId) -> tuple[AuthorityId, bytes]:
    """Check a revocation's shape, context and signature; return (authority, nonce)."""
    fact, _ = _as_fact(fact)
    if fact.get("kind") != KIND_DESCRIPTOR_REVOKED:
        raise DescriptorError("not a revocation fact")
    RendezvousFact.check(fact)
    if not hmac.compare_digest(fact["ctx"], bytes(context)):
        raise DescriptorError("revocation belongs to another context")
    _verify(fact["pk"], fact["auth"], REVOKE_DOMAIN, RendezvousFact.unsigned_body(fact), fact["sig"])
    return AuthorityId(fact["auth"]), fact["nonce"]
