"""Relay node core: forwards opaque Noise frames between authenticated authorities (sans-I/O).

Theory of operation
-------------------
A relay cannot read what it forwards: a frame is ``(context id, destination authority,
opaque bytes)``.  Every connection goes through two states::

    AWAITING_AUTH --AUTH ok--> READY --close--> (gone)
          \\--bad AUTH / timeout--> ERROR sent, closed

* On connect the relay hands out a CHALLENGE carrying a fresh 32-byte nonce.  The client
  answers AUTH with its Ed25519 public key, a signature over the challenge, and a capability
  token; ``authorize(token, identity, now)`` (Biscuit ``relay:forward``; see
  aura_core.capabilities) returns the contexts the client may forward in.  The AuthorityId is
  derived from the key, so a client cannot claim another's id.
* A SEND is forwarded only if the context is authorised for the sender, the destination is
  connected and authorised in the same context, and the per-(context, neighbour) flow budget
  was charged first (``COST_RELAY_FORWARD``).  Anything else is dropped silently and counted
  (seed 002 §6: denials produce no traffic).
* Each connection has a bounded outbound queue; a frame for a full queue is dropped and
  counted (anchors: Tailscale DERP 32 frames, iroh-relay 512).  Flood protection is a token
  bucket per connection (frames per second, burst), also a counted drop.
* ``observer`` sees every accepted forward (receipt aggregation hooks in there).

Wire format: docs/wire.md §6.  The asyncio server is aura_core/asyncio/relay.py.
"""

from __future__ import annotations

import collections
import hmac
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from enum import Enum
from typing import Final, Protocol

from .errors import AuthorizationError, InvalidValue, ProtocolError, SignatureError, UsageError
from .flow import COST_RELAY_FORWARD, FlowAccount, FlowLedger
from .ids import AuthorityId, ContextId
from .keys import IdentityKey, PublicIdentity

__all__ = [
    "RELAY_VERSION",
    "MsgType",
    "RelayConfig",
    "RelayCore",
    "RelayMetrics",
    "Authorizer",
    "ForwardObserver",
    "encode_challenge",
    "encode_auth",
    "encode_send",
    "encode_deliver",
    "decode_deliver",
    "decode_welcome",
    "auth_transcript",
]

RELAY_VERSION: Final = 1
NONCE_LEN: Final = 32
AUTH_DOMAIN: Final = b"aura-relay-auth/1"
HEADER_LEN: Final = 33  # type || context id || authority id
MAX_TOKEN_LEN: Final = 8192


class MsgType(bytes, Enum):
    CHALLENGE = b"\x01"
    AUTH = b"\x02"
    WELCOME = b"\x03"
    SEND = b"\x10"
    DELIVER = b"\x11"
    ERROR = b"\x7f"


# ERROR codes (u8).  Reasons are generic on purpose: a denied client learns nothing more.
ERR_PROTOCOL: Final = 1
ERR_AUTH: Final = 2
ERR_CAPACITY: Final = 3
ERR_SHUTDOWN: Final = 4


def auth_transcript(nonce: bytes, ed25519_public: bytes) -> bytes:
    """What a client signs to authenticate: domain || version || relay nonce || its key."""
    return AUTH_DOMAIN + bytes([RELAY_VERSION]) + nonce + ed25519_public


def encode_challenge(nonce: bytes) -> bytes:
    return MsgType.CHALLENGE.value + bytes([RELAY_VERSION]) + nonce


def encode_auth(key: IdentityKey, nonce: bytes, token: bytes) -> bytes:
    """Client side: the AUTH answer to a CHALLENGE nonce."""
    if len(token) > MAX_TOKEN_LEN:
        raise InvalidValue("capability token too large")
    pk = key.public.ed25519
    return (MsgType.AUTH.value + pk + key.sign(auth_transcript(nonce, pk))
            + len(token).to_bytes(2, "big") + token)


def parse_challenge(message: bytes) -> bytes:
    """Client side: the nonce of a CHALLENGE."""
    if len(message) != 2 + NONCE_LEN or message[:1] != MsgType.CHALLENGE.value:
        raise ProtocolError("expected a relay CHALLENGE", code=ERR_PROTOCOL)
    if message[1] != RELAY_VERSION:
        raise ProtocolError(f"relay speaks version {message[1]}", code=ERR_PROTOCOL)
    return message[2:]


def decode_welcome(message: bytes) -> AuthorityId:
    if message[:1] == MsgType.ERROR.value and len(message) >= 2:
        raise AuthorizationError() if message[1] == ERR_AUTH else ProtocolError(
            "relay refused the connection", code=message[1])
    if len(message) != 17 or message[:1] != MsgType.WELCOME.value:
        raise ProtocolError("expected a relay WELCOME", code=ERR_PROTOCOL)
    return AuthorityId(message[1:])


def encode_send(context: ContextId | bytes, dst: AuthorityId | bytes, payload: bytes) -> bytes:
    return MsgType.SEND.value + bytes(context) + bytes(dst) + payload


def encode_deliver(context: bytes, src: bytes, payload: bytes | memoryview) -> bytes:
    return MsgType.DELIVER.value + context + src + payload


def decode_deliver(message: bytes) -> tuple[ContextId, AuthorityId, bytes]:
    """Client side: (context, source authority, payload) of a DELIVER."""
    if len(message) < HEADER_LEN or message[:1] != MsgType.DELIVER.value:
        raise ProtocolError("expected a relay DELIVER", code=ERR_PROTOCOL)
    return ContextId(message[1:17]), AuthorityId(message[17:33]), message[33:]


class Authorizer(Protocol):
    def __call__(self, token: bytes, identity: PublicIdentity, now: float) -> Iterable[ContextId]:
        """Contexts in which ``identity`` may have frames forwarded; raise AuthorizationError."""


class ForwardObserver(Protocol):
    def __call__(self, context: bytes, src: bytes, dst: bytes, size: int, now: float) -> None:
        """Called once per accepted forward (after the budget was charged)."""


@dataclass(frozen=True)
class RelayConfig:
    queue_limit: int = 512          # frames queued per connection before counted drops
    max_frame: int = 65535 + HEADER_LEN
    max_clients: int = 10_000
    auth_timeout: float = 10.0      # seconds a connection may stay unauthenticated
    budget_per_epoch: int = 1 << 40  # flow budget opened per (context, neighbour)
    epoch: int = 0
    rate: float = 200_000.0         # frames/s per connection (token bucket refill)
    burst: float = 20_000.0         # bucket size

    def __post_init__(self) -> None:
        if self.queue_limit < 1 or self.max_clients < 1 or self.max_frame <= HEADER_LEN:
            raise InvalidValue("relay limits must be positive")


@dataclass
class RelayMetrics:
    """Counters exported as Prometheus metrics by the server."""

    connections: int = 0
    authenticated: int = 0
    auth_failures: int = 0
    forwarded: int = 0
    forwarded_bytes: int = 0
    drop_queue_full: int = 0
    drop_unknown_destination: int = 0
    drop_unauthorised_context: int = 0
    drop_budget: int = 0
    drop_malformed: int = 0
    drop_rate_limited: int = 0
    drop_oversize: int = 0

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


@dataclass(eq=False)
class _Conn:
    conn_id: int
    nonce: bytes
    opened: float
    authority: bytes | None = None           # raw 16-byte AuthorityId once authenticated
    contexts: frozenset[bytes] = frozenset()  # raw context ids authorised
    accounts: dict[bytes, FlowAccount] = field(default_factory=dict)
    queue: collections.deque[bytes] = field(default_factory=collections.deque)
    tokens: float = 0.0
    refilled: float = 0.0
    closing: bool = False


class RelayCore:
    """The relay's state machine: connections in, frames and wake-ups out.

    Drive it with :meth:`connect`, :meth:`receive`, :meth:`disconnect`; drain each
    connection's frames with :meth:`pop_outgoing`.  :meth:`receive` returns the ids of the
    connections that have new frames to write.
    """

    def __init__(self, authorize: Authorizer, *, config: RelayConfig | None = None,
                 ledger: FlowLedger | None = None, observer: ForwardObserver | None = None,
                 rand: Callable[[int], bytes] | None = None) -> None:
        if rand is None:
            from ._sodium import random_bytes as rand
        self.config = config or RelayConfig()
        self.ledger = ledger if ledger is not None else FlowLedger()
        self.metrics = RelayMetrics()
        self._authorize = authorize
        self._observer = observer
        self._rand = rand
        self._conns: dict[int, _Conn] = {}
        self._by_authority: dict[bytes, _Conn] = {}

    # -- connections ------------------------------------------------------------------------

    def connect(self, conn_id: int, now: float) -> bytes:
        """A new transport connection; returns the CHALLENGE to send it."""
        if conn_id in self._conns:
            raise UsageError(f"connection {conn_id} already exists")
        if len(self._conns) >= self.config.max_clients:
            self.metrics.auth_failures += 1
            return MsgType.ERROR.value + bytes([ERR_CAPACITY]) + b"relay full"
        conn = _Conn(conn_id, self._rand(NONCE_LEN), now)
        self._conns[conn_id] = conn
        self.metrics.connections += 1
        return encode_challenge(conn.nonce)

    def disconnect(self, conn_id: int) -> list[bytes]:
        """Forget a connection; returns the frames still queued for it (for accounting)."""
        conn = self._conns.pop(conn_id, None)
        if conn is None:
            return []
        self.metrics.connections -= 1
        if conn.authority is not None and self._by_authority.get(conn.authority) is conn:
            del self._by_authority[conn.authority]
            self.metrics.authenticated -= 1
        return list(conn.queue)

    def expired(self, now: float) -> list[int]:
        """Connections that stayed unauthenticated past ``auth_timeout`` (close them)."""
        limit = now - self.config.auth_timeout
        return [c.conn_id for c in self._conns.values() if c.authority is None and c.opened < limit]

    def next_deadline(self) -> float | None:
        pending = [c.opened for c in self._conns.values() if c.authority is None]
        return min(pending) + self.config.auth_timeout if pending else None

    def authority_of(self, conn_id: int) -> AuthorityId | None:
        conn = self._conns.get(conn_id)
        return AuthorityId(conn.authority) if conn and conn.authority else None

    # -- frames -----------------------------------------------------------------------------

    def receive(self, conn_id: int, message: bytes, now: float) -> tuple[list[int], bytes | None]:
        """One message from a connection.

        Returns ``(wake, reply)``: connections with new frames queued, and a direct reply to
        send back on this connection (WELCOME / ERROR) or None.  A reply of type ERROR means:
        send it, then close the connection.
        """
        conn = self._conns.get(conn_id)
        if conn is None:
            raise UsageError(f"unknown connection {conn_id}")
        if conn.authority is None:
            return [], self._auth(conn, message, now)
        if len(message) < HEADER_LEN or message[0] != 0x10:
            self.metrics.drop_malformed += 1
            return [], None
        if len(message) > self.config.max_frame:
            self.metrics.drop_oversize += 1
            return [], None
        # token bucket (flood protection)
        tokens = conn.tokens + (now - conn.refilled) * self.config.rate
        conn.refilled = now
        if tokens > self.config.burst:
            tokens = self.config.burst
        if tokens < 1.0:
            conn.tokens = tokens
            self.metrics.drop_rate_limited += 1
            return [], None
        conn.tokens = tokens - 1.0
        ctx = message[1:17]
        account = conn.accounts.get(ctx)
        if account is None:
            self.metrics.drop_unauthorised_context += 1
            return [], None
        dst = self._by_authority.get(message[17:33])
        if dst is None or ctx not in dst.contexts:
            self.metrics.drop_unknown_destination += 1
            return [], None
        if len(dst.queue) >= self.config.queue_limit:
            self.metrics.drop_queue_full += 1
            return [], None
        if not account.try_charge(COST_RELAY_FORWARD):  # charge before forwarding
            self.metrics.drop_budget += 1
            return [], None
        assert conn.authority is not None
        dst.queue.append(encode_deliver(ctx, conn.authority, memoryview(message)[HEADER_LEN:]))
        self.metrics.forwarded += 1
        self.metrics.forwarded_bytes += len(message) - HEADER_LEN
        if self._observer is not None:
            self._observer(ctx, conn.authority, dst.authority or b"", len(message) - HEADER_LEN, now)
        return [dst.conn_id], None

    def pop_outgoing(self, conn_id: int, limit: int = 64) -> list[bytes]:
        """Up to ``limit`` queued frames for a connection, oldest first."""
        conn = self._conns.get(conn_id)
        if conn is None or not conn.queue:
            return []
        q = conn.queue
        n = min(limit, len(q))
        return [q.popleft() for _ in range(n)]

    def queue_depth(self, conn_id: int) -> int:
        conn = self._conns.get(conn_id)
        return len(conn.queue) if conn else 0

    def total_queued(self) -> int:
        return sum(len(c.queue) for c in self._conns.values())

    # -- authentication ---------------------------------------------------------------------

    def _auth(self, conn: _Conn, message: bytes, now: float) -> bytes:
        try:
            identity, token = self._parse_auth(conn, message)
            contexts = frozenset(bytes(c) for c in self._authorize(token, identity, now))
            if not contexts:
                raise AuthorizationError()
        except (AuthorizationError, SignatureError, ProtocolError, InvalidValue):
            self.metrics.auth_failures += 1
            return MsgType.ERROR.value + bytes([ERR_AUTH]) + b"authorization failed"
        authority = bytes(identity.authority_id)
        previous = self._by_authority.get(authority)
        if previous is not None:  # newest connection of an authority wins (as DERP does)
            previous.authority = None
            previous.closing = True
            self.metrics.authenticated -= 1
        conn.authority = authority
        conn.contexts = contexts
        conn.tokens = self.config.burst
        conn.refilled = now
        for ctx in contexts:
            peer = identity.authority_id
            cid = ContextId(ctx)
            account = self.ledger.account(cid, peer)
            if account is None:
                account = self.ledger.open(cid, peer, self.config.budget_per_epoch, self.config.epoch)
            conn.accounts[ctx] = account
        self._by_authority[authority] = conn
        self.metrics.authenticated += 1
        return MsgType.WELCOME.value + authority

    def superseded(self) -> list[int]:
        """Connections replaced by a newer one of the same authority (close them)."""
        return [c.conn_id for c in self._conns.values() if c.closing]

    @staticmethod
    def _parse_auth(conn: _Conn, message: bytes) -> tuple[PublicIdentity, bytes]:
        if len(message) < 1 + 32 + 64 + 2 or message[:1] != MsgType.AUTH.value:
            raise ProtocolError("expected AUTH", code=ERR_PROTOCOL)
        pk, sig = message[1:33], message[33:97]
        n = int.from_bytes(message[97:99], "big")
        token = message[99:]
        if len(token) != n or n > MAX_TOKEN_LEN:
            raise ProtocolError("bad AUTH token length", code=ERR_PROTOCOL)
        identity = PublicIdentity(pk)
        identity.verify(auth_transcript(conn.nonce, pk), sig)
        return identity, token


def static_authorizer(grants: dict[AuthorityId, Iterable[ContextId]], token: bytes) -> Authorizer:
    """An authorizer for tests and closed deployments: a fixed table and one shared token.

    Production relays use aura_core.capabilities (Biscuit ``relay:forward``).
    """
    table = {a: frozenset(cs) for a, cs in grants.items()}

    def authorize(presented: bytes, identity: PublicIdentity, now: float) -> Iterable[ContextId]:
        if not hmac.compare_digest(presented, token):
            raise AuthorizationError()
        contexts = table.get(identity.authority_id)
        if not contexts:
            raise AuthorizationError()
        return contexts

    return authorize
