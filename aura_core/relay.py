"""Relay node core: forwards opaque Noise frames between authenticated authorities (sans-I/O).

Theory of operation
-------------------
A relay cannot read what it forwards: a frame is ``(context id, destination authority,
opaque bytes)``.  Every connection goes through two states::

    AWAITING_AUTH --AUTH ok--> READY --close--> (gone)
          \\--bad AUTH / timeout--> ERROR sent, closed

* On connect the relay hands out a CHALLENGE carrying a fresh 32-byte nonce.  The client
  answers AUTH with its Ed25519 public key, a capability token, the contexts it asks to use,
  and a signature over all of that and the nonce.  ``authorize(token, identity, contexts,
  now_ms)`` (:func:`biscuit_authorizer`: Biscuit ``relay:forward`` per context, expiry
  against the wall clock) returns the contexts granted.  The AuthorityId is derived from the
  key, so a client cannot claim another's id.
* A SEND is forwarded only if the context is authorised for the sender, the destination is
  connected (here, or on another worker: :meth:`RelayCore.set_remote`) and authorised in the
  same context, and the per-(context, sender) flow budget was charged first
  (``COST_RELAY_FORWARD``).  Anything else is dropped silently and counted (seed 002 §6:
  denials produce no traffic).
* Each connection has a bounded outbound queue (frames and bytes); a frame for a full queue
  is dropped and counted (anchors: Tailscale DERP 32 frames, iroh-relay 512).  Flood
  protection is a token bucket per connection (``rate``, ``burst``), also a counted drop; it
  is kept in its GCRA form (one "theoretical arrival time" per connection: the same
  admissions as the bucket, one float compare and add per frame).
* ``observer`` sees every frame queued for a local destination (after the budget was
  charged): :class:`ReceiptWindows` hooks in there and closes, per (context, destination),
  a window of forwards into one summary that the chain owner signs as ONE receipt
  (aura_core.receipts' relay design; :class:`ReceiptSigner`).

Multi-worker relays: each worker runs one core.  Frames for an authority connected to another
worker leave through :attr:`RelayCore.remote_out` and enter there via
:meth:`RelayCore.deliver_remote`; the charge is made once, on the sender's worker.

Wire format: docs/wire.md "Relay".  The asyncio server is aura_core/asyncio/relay.py.
"""

from __future__ import annotations

import collections
import hashlib
import inspect
import hmac
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Final, Protocol

from ._receipt import add_envelope_id as _add_envelope_id
from ._receipt import forward_commitment_packed as _forward_commitment_packed
from .errors import (
    AuthorizationError, InvalidValue, ProtocolError, ReceiptError, SignatureError, UsageError,
)
from .flow import COST_RELAY_FORWARD, FlowAccount, FlowLedger
from .hashing import Hash32
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
    "ReceiptWindows",
    "ReceiptSigner",
    "WindowClose",
    "biscuit_authorizer",
    "static_authorizer",
    "envelope_id",
    "chain_owner",
    "encode_challenge",
    "encode_auth",
    "encode_send",
    "encode_deliver",
    "encode_receipt",
    "decode_deliver",
    "decode_relay_message",
    "decode_welcome",
    "auth_transcript",
]

RELAY_VERSION: Final = 1
NONCE_LEN: Final = 32
AUTH_DOMAIN: Final = b"aura-relay-auth/1"
HEADER_LEN: Final = 33  # type || context id || authority id
MAX_TOKEN_LEN: Final = 8192
MAX_AUTH_CONTEXTS: Final = 64
# BLAKE2b-256 personalization of an envelope id (what relay receipts commit to).
ENVELOPE_TAG: Final = b"aura.envelope.v1"
RECEIPT_LEN: Final = 200


class MsgType(bytes, Enum):
    CHALLENGE = b"\x01"
    AUTH = b"\x02"
    WELCOME = b"\x03"
    SEND = b"\x10"
    DELIVER = b"\x11"
    RECEIPT = b"\x12"
    ERROR = b"\x7f"


# ERROR codes (u8).  Reasons are generic on purpose: a denied client learns nothing more.
ERR_PROTOCOL: Final = 1
ERR_AUTH: Final = 2
ERR_CAPACITY: Final = 3
ERR_SHUTDOWN: Final = 4

_DELIVER: Final = 0x11
_SEND: Final = 0x10


def _auth_body(ed25519_public: bytes, token: bytes, contexts: Sequence[bytes]) -> bytes:
    return (ed25519_public + len(token).to_bytes(2, "big") + token + bytes([len(contexts)])
            + b"".join(contexts))


def auth_transcript(nonce: bytes, ed25519_public: bytes, token: bytes = b"",
                    contexts: Sequence[bytes] = ()) -> bytes:
    """What a client signs: domain || version || nonce || key || u16 len || token || u8 n || ctxs."""
    return AUTH_DOMAIN + bytes([RELAY_VERSION]) + nonce + _auth_body(ed25519_public, token, contexts)


def encode_challenge(nonce: bytes) -> bytes:
    return MsgType.CHALLENGE.value + bytes([RELAY_VERSION]) + nonce


def encode_auth(key: IdentityKey, nonce: bytes, token: bytes,
                contexts: Iterable[ContextId | bytes] = ()) -> bytes:
    """Client side: the AUTH answer to a CHALLENGE nonce, asking for ``contexts``."""
    if len(token) > MAX_TOKEN_LEN:
        raise InvalidValue("capability token too large")
    ctxs = [bytes(c) for c in contexts]
    if len(ctxs) > MAX_AUTH_CONTEXTS or any(len(c) != 16 for c in ctxs):
        raise InvalidValue(f"at most {MAX_AUTH_CONTEXTS} 16-byte context ids")
    pk = key.public.ed25519
    body = _auth_body(pk, token, ctxs)
    sig = key.sign(AUTH_DOMAIN + bytes([RELAY_VERSION]) + nonce + body)
    return MsgType.AUTH.value + body + sig


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
    return b"\x11" + context + src + payload  # MsgType.DELIVER (a literal: Enum access is slow)


def encode_receipt(packed_receipt: bytes) -> bytes:
    if len(packed_receipt) != RECEIPT_LEN:
        raise InvalidValue("a packed receipt is 200 bytes")
    return MsgType.RECEIPT.value + packed_receipt


def decode_deliver(message: bytes) -> tuple[ContextId, AuthorityId, bytes]:
    """Client side: (context, source authority, payload) of a DELIVER."""
    if len(message) < HEADER_LEN or message[:1] != MsgType.DELIVER.value:
        raise ProtocolError("expected a relay DELIVER", code=ERR_PROTOCOL)
    return ContextId(message[1:17]), AuthorityId(message[17:33]), message[33:]


def decode_relay_message(message: bytes) -> tuple[MsgType, bytes]:
    """Client side: (DELIVER, whole message) or (RECEIPT, the 200-byte receipt)."""
    if message[:1] == MsgType.DELIVER.value and len(message) >= HEADER_LEN:
        return MsgType.DELIVER, message
    if message[:1] == MsgType.RECEIPT.value and len(message) == 1 + RECEIPT_LEN:
        return MsgType.RECEIPT, message[1:]
    raise ProtocolError("unexpected relay message", code=ERR_PROTOCOL)


def envelope_id(deliver_frame: bytes) -> bytes:
    """The id a relay receipt commits to for one DELIVER frame ``0x11 || ctx || src || payload``:

    ``BLAKE2b-256(person="aura.envelope.v1", ctx || src || u32be len(payload) || tail)``
    where ``tail`` is the last ``min(32, len)`` payload bytes.  A relayed payload is a Noise
    transport message: its last 16 bytes are the AEAD tag, which binds the whole ciphertext
    under a key the relay does not hold, so the tail identifies the frame as well as the
    whole would, and costs the same for every frame size (hashing 1400 bytes per forward
    would cost more than the rest of the guards together).  The destination computes the
    same id from what it received and checks the receipt's commitment.
    """
    n = len(deliver_frame) - HEADER_LEN
    if n < 0:
        raise InvalidValue("not a DELIVER frame")
    # the pure-Python reference of the C (_receipt.add_envelope_id, used per forward)
    h = hashlib.blake2b(digest_size=32, person=ENVELOPE_TAG)
    h.update(deliver_frame[1:HEADER_LEN] + n.to_bytes(4, "big") + deliver_frame[-min(32, n):] if n
             else deliver_frame[1:HEADER_LEN] + bytes(4))
    return h.digest()


def chain_owner(dst: bytes, workers: int) -> int:
    """The worker that signs the receipt chains toward ``dst`` (one writer per chain)."""
    return int.from_bytes(dst[:4], "big") % workers


class Authorizer(Protocol):
    def __call__(self, token: bytes, identity: PublicIdentity, contexts: Sequence[ContextId],
                 now_ms: int) -> Iterable[ContextId]:
        """Which of ``contexts`` ``identity`` may forward in; raise AuthorizationError if none."""


class ForwardObserver(Protocol):
    def __call__(self, context: bytes, src: bytes, dst: bytes, frame: bytes, now: float) -> None:
        """Called once per frame queued for a local destination (``frame``: the DELIVER)."""


@dataclass(frozen=True)
class RelayConfig:
    queue_limit: int = 512          # frames queued per connection before counted drops
    queue_bytes: int = 1 << 21      # bytes queued per connection before counted drops
    max_frame: int = 65535 + HEADER_LEN
    max_clients: int = 10_000
    auth_timeout: float = 10.0      # seconds a connection may stay unauthenticated
    budget_per_epoch: int = 1 << 40  # flow budget opened per (context, neighbour)
    epoch: int = 0
    rate: float = 200_000.0         # frames/s per connection (token bucket refill)
    burst: float = 20_000.0         # bucket size
    auth_rate: float = 5_000.0      # AUTH attempts/s per worker (each costs signature + Biscuit checks)
    auth_burst: float = 1_000.0

    def __post_init__(self) -> None:
        if (self.queue_limit < 1 or self.max_clients < 1 or self.max_frame <= HEADER_LEN
                or self.queue_bytes < self.max_frame or self.rate <= 0 or self.burst < 1
                or self.auth_rate <= 0 or self.auth_burst < 1):
            raise InvalidValue("relay limits must be positive (queue_bytes >= max_frame)")


@dataclass
class RelayMetrics:
    """Counters exported as Prometheus metrics by the server."""

    connections: int = 0
    authenticated: int = 0
    auth_failures: int = 0
    forwarded: int = 0
    forwarded_bytes: int = 0
    delivered_remote: int = 0
    drop_queue_full: int = 0
    drop_unknown_destination: int = 0
    drop_unauthorised_context: int = 0
    drop_budget: int = 0
    drop_malformed: int = 0
    drop_rate_limited: int = 0
    drop_oversize: int = 0
    drop_gone: int = 0               # remote destination left while the frame crossed workers
    drop_mesh_full: int = 0          # the link to the destination's worker is backed up (bound)
    auth_rate_limited: int = 0       # AUTH attempts refused unverified (CPU flood protection)
    receipts_issued: int = 0

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


GAUGES: Final = frozenset({"connections", "authenticated"})


@dataclass(eq=False)
class _Conn:
    conn_id: int
    nonce: bytes
    opened: float
    authority: bytes | None = None           # raw 16-byte AuthorityId once authenticated
    contexts: frozenset[bytes] = frozenset()  # raw context ids authorised
    accounts: dict[bytes, FlowAccount] = field(default_factory=dict)
    queue: collections.deque[bytes] = field(default_factory=collections.deque)
    queued_bytes: int = 0
    enqueued: int = 0                         # frames ever queued (latency sampling)
    tat: float = 0.0                          # GCRA theoretical arrival time (token bucket)
    closing: bool = False


class RelayCore:
    """The relay's state machine: connections in, frames and wake-ups out.

    Drive it with :meth:`connect`, :meth:`receive`, :meth:`disconnect`; drain each
    connection's frames with :meth:`pop_outgoing`.  :meth:`receive` returns the ids of the
    connections that have new frames to write; frames for other workers collect in
    :attr:`remote_out` as ``(worker, dst, deliver_frame)``.
    """

    def __init__(self, authorize: Authorizer, *, config: RelayConfig | None = None,
                 ledger: FlowLedger | None = None, observer: ForwardObserver | None = None,
                 rand: Callable[[int], bytes] | None = None,
                 wall_ms: Callable[[float], int] | None = None, guards: bool = True) -> None:
        if rand is None:
            from ._sodium import random_bytes
            rand = random_bytes
        self.config = config or RelayConfig()
        cfg = self.config  # per-frame limits as plain attributes (read on every frame)
        self._max_frame = cfg.max_frame
        # token bucket as GCRA: admit at ``now`` iff max(tat, now) - now <= (burst - 1) / rate,
        # then tat = max(tat, now) + 1 / rate (tokens = burst - (tat - now) * rate)
        # (plus 1e-6 token of slack: float sums of 1/rate must not drop the burst's last frame)
        self._inc, self._tau = 1.0 / cfg.rate, (cfg.burst - 1.0 + 1e-6) / cfg.rate
        self._queue_limit, self._queue_bytes = cfg.queue_limit, cfg.queue_bytes
        self.ledger = ledger if ledger is not None else FlowLedger()
        self.metrics = RelayMetrics()
        self._observe: ForwardObserver | None = None
        self.observer = observer
        self.remote_out: list[tuple[int, bytes, bytes]] = []
        self.last_depth = 0  # queue depth of the connection :meth:`receive` last queued for
        self.last_auth_failure = ""
        self._authorize = authorize
        self._rand = rand
        # Biscuit expiries are wall-clock: the I/O layer injects its clock; by default the
        # monotonic ``now`` (seconds) is taken as Unix time, which suits tests.
        self._wall_ms = wall_ms or (lambda now: int(now * 1000))
        self._conns: dict[int, _Conn] = {}
        self._by_authority: dict[bytes, _Conn] = {}
        self._remote: dict[bytes, tuple[int, frozenset[bytes]]] = {}
        self._auth_tokens = self.config.auth_burst
        self._auth_refilled: float | None = None
        self.epoch = self.config.epoch
        if not guards:
            # benchmarks only: the same stack without per-frame guards (context, rate, budget,
            # receipts) -- the ceiling the guarded relay is measured against
            self.receive = self._receive_unguarded  # type: ignore[method-assign]

    @property
    def observer(self) -> ForwardObserver | None:
        return self._observer

    @observer.setter
    def observer(self, observer: ForwardObserver | None) -> None:
        self._observer = observer
        # called per forward: an instance's bound __call__ skips the generic call slot
        call = getattr(observer, "__call__", None)
        self._observe = call if inspect.ismethod(call) else observer

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

    def contexts_of(self, conn_id: int) -> frozenset[bytes]:
        conn = self._conns.get(conn_id)
        return conn.contexts if conn and conn.authority else frozenset()

    def conn_of(self, authority: bytes) -> int | None:
        conn = self._by_authority.get(authority)
        return conn.conn_id if conn else None

    def rotate_epoch(self, epoch: int) -> bool:
        """Enter a newer flow-budget epoch: every budget's spent resets (older: no-op)."""
        if epoch <= self.epoch:
            return False
        self.epoch = epoch
        for account in self.ledger.accounts():
            account.rotate(epoch)
        return True

    # -- the directory of authorities on other workers ------------------------------------

    def set_remote(self, authority: bytes, worker: int, contexts: Iterable[bytes]) -> int | None:
        """``authority`` is now connected on ``worker``.  Newest wins: returns the id of a local
        connection of the same authority that must now be closed, if any."""
        self._remote[bytes(authority)] = (worker, frozenset(contexts))
        local = self._by_authority.pop(bytes(authority), None)
        if local is None:
            return None
        local.authority = None
        local.closing = True
        self.metrics.authenticated -= 1
        return local.conn_id

    def drop_remote(self, authority: bytes, worker: int) -> None:
        entry = self._remote.get(bytes(authority))
        if entry is not None and entry[0] == worker:
            del self._remote[bytes(authority)]

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
            if conn.closing:  # superseded: nothing more is accepted from it
                return [], None
            return [], self._auth(conn, message, now)
        m = self.metrics
        if len(message) < HEADER_LEN or message[0] != _SEND:
            m.drop_malformed += 1
            return [], None
        if len(message) > self._max_frame:
            m.drop_oversize += 1
            return [], None
        # token bucket (flood protection), GCRA form: see __init__
        tat = conn.tat
        if tat < now:
            tat = now
        elif tat - now > self._tau:  # fewer than one token left
            m.drop_rate_limited += 1
            return [], None
        conn.tat = tat + self._inc
        ctx = message[1:17]
        account = conn.accounts.get(ctx)
        if account is None:
            m.drop_unauthorised_context += 1
            return [], None
        dst_id = message[17:33]
        dst = self._by_authority.get(dst_id)
        if dst is None:
            remote = self._remote.get(dst_id)
            if remote is None or ctx not in remote[1]:
                m.drop_unknown_destination += 1
                return [], None
            if not account.try_charge(COST_RELAY_FORWARD):  # charge before forwarding
                m.drop_budget += 1
                return [], None
            assert conn.authority is not None
            self.remote_out.append(
                (remote[0], dst_id, encode_deliver(ctx, conn.authority, memoryview(message)[HEADER_LEN:])))
            m.forwarded += 1
            m.forwarded_bytes += len(message) - HEADER_LEN
            return [], None
        if ctx not in dst.contexts:
            m.drop_unknown_destination += 1
            return [], None
        size = len(message)  # the DELIVER is as long as the SEND
        if len(dst.queue) >= self._queue_limit or dst.queued_bytes + size > self._queue_bytes:
            m.drop_queue_full += 1
            return [], None
        if not account.try_charge(COST_RELAY_FORWARD):  # charge before forwarding
            m.drop_budget += 1
            return [], None
        assert conn.authority is not None
        frame = b"\x11" + ctx + conn.authority + memoryview(message)[HEADER_LEN:]  # encode_deliver
        dst.queue.append(frame)
        dst.queued_bytes += size
        dst.enqueued += 1
        self.last_depth = len(dst.queue)
        m.forwarded += 1
        m.forwarded_bytes += len(message) - HEADER_LEN
        if self._observe is not None:
            self._observe(ctx, conn.authority, dst_id, frame, now)
        return [dst.conn_id], None

    def _receive_unguarded(self, conn_id: int, message: bytes, now: float) -> tuple[list[int], bytes | None]:
        conn = self._conns.get(conn_id)
        if conn is None:
            raise UsageError(f"unknown connection {conn_id}")
        if conn.authority is None:
            if conn.closing:
                return [], None
            return [], self._auth(conn, message, now)
        if len(message) < HEADER_LEN or message[0] != _SEND or len(message) > self.config.max_frame:
            self.metrics.drop_malformed += 1
            return [], None
        dst_id = message[17:33]
        dst = self._by_authority.get(dst_id)
        assert conn.authority is not None
        if dst is None:
            remote = self._remote.get(dst_id)
            if remote is None:
                self.metrics.drop_unknown_destination += 1
                return [], None
            self.remote_out.append((remote[0], dst_id, encode_deliver(
                message[1:17], conn.authority, memoryview(message)[HEADER_LEN:])))
            self.metrics.forwarded += 1
            return [], None
        if len(dst.queue) >= self.config.queue_limit:
            self.metrics.drop_queue_full += 1
            return [], None
        frame = encode_deliver(message[1:17], conn.authority, memoryview(message)[HEADER_LEN:])
        dst.queue.append(frame)
        dst.queued_bytes += len(frame)
        dst.enqueued += 1
        self.last_depth = len(dst.queue)
        self.metrics.forwarded += 1
        return [dst.conn_id], None

    def deliver_remote(self, dst_id: bytes, frame: bytes, now: float) -> int | None:
        """A DELIVER frame another worker charged and forwarded: queue it for ``dst_id``.

        Returns the connection to wake, or None (counted drop: gone, full, or not in context).
        """
        m = self.metrics
        dst = self._by_authority.get(dst_id)
        if dst is None or len(frame) < HEADER_LEN or frame[0] != _DELIVER:
            m.drop_gone += 1
            return None
        ctx = frame[1:17]
        if ctx not in dst.contexts:
            m.drop_gone += 1
            return None
        cfg = self.config
        if len(dst.queue) >= cfg.queue_limit or dst.queued_bytes + len(frame) > cfg.queue_bytes:
            m.drop_queue_full += 1
            return None
        dst.queue.append(frame)
        dst.queued_bytes += len(frame)
        dst.enqueued += 1
        m.delivered_remote += 1
        if self._observe is not None:
            self._observe(ctx, frame[17:33], dst_id, frame, now)
        return dst.conn_id

    def enqueue_control(self, conn_id: int, message: bytes) -> bool:
        """Queue a relay-originated message (a RECEIPT) behind the frames it covers.

        Not subject to the frame bounds (one per window), so it is never dropped for a full queue.
        """
        conn = self._conns.get(conn_id)
        if conn is None or conn.authority is None:
            return False
        conn.queue.append(message)
        conn.queued_bytes += len(message)
        conn.enqueued += 1
        return True

    def pop_outgoing(self, conn_id: int, limit: int = 64) -> list[bytes]:
        """Up to ``limit`` queued frames for a connection, oldest first."""
        conn = self._conns.get(conn_id)
        if conn is None or not conn.queue:
            return []
        q = conn.queue
        n = min(limit, len(q))
        out = [q.popleft() for _ in range(n)]
        conn.queued_bytes -= sum(map(len, out))
        return out

    def queue_depth(self, conn_id: int) -> int:
        conn = self._conns.get(conn_id)
        return len(conn.queue) if conn else 0

    def enqueued_count(self, conn_id: int) -> int:
        conn = self._conns.get(conn_id)
        return conn.enqueued if conn else 0

    def total_queued(self) -> int:
        return sum(len(c.queue) for c in self._conns.values())

    def total_queued_bytes(self) -> int:
        return sum(c.queued_bytes for c in self._conns.values())

    # -- authentication ---------------------------------------------------------------------

    def _auth(self, conn: _Conn, message: bytes, now: float) -> bytes:
        cfg = self.config
        last = now if self._auth_refilled is None else self._auth_refilled
        tokens = min(cfg.auth_burst, self._auth_tokens + max(0.0, now - last) * cfg.auth_rate)
        self._auth_refilled = now
        if tokens < 1.0:  # refused before any signature or token is checked
            self._auth_tokens = tokens
            self.metrics.auth_failures += 1
            self.metrics.auth_rate_limited += 1
            return MsgType.ERROR.value + bytes([ERR_CAPACITY]) + b"busy, retry later"
        self._auth_tokens = tokens - 1.0
        try:
            identity, token, requested = self._parse_auth(conn, message)
            contexts = frozenset(bytes(c) for c in self._authorize(
                token, identity, [ContextId(c) for c in requested], self._wall_ms(now)))
            if not contexts:
                raise AuthorizationError()
        except (AuthorizationError, SignatureError, ProtocolError, InvalidValue) as exc:
            self.metrics.auth_failures += 1
            self.last_auth_failure = f"{type(exc).__name__}: {exc.__cause__!r}"  # logs only, never sent
            return MsgType.ERROR.value + bytes([ERR_AUTH]) + b"authorization failed"
        authority = bytes(identity.authority_id)
        previous = self._by_authority.get(authority)
        if previous is not None:  # newest connection of an authority wins (as DERP does)
            previous.authority = None
            previous.closing = True
            self.metrics.authenticated -= 1
        self._remote.pop(authority, None)
        conn.authority = authority
        conn.contexts = contexts
        conn.tat = now  # a full bucket
        for ctx in contexts:
            peer = identity.authority_id
            cid = ContextId(ctx)
            account = self.ledger.account(cid, peer)
            if account is None:
                account = self.ledger.open(cid, peer, self.config.budget_per_epoch, self.epoch)
            else:
                account.rotate(self.epoch)  # no-op unless it was opened in an older epoch
            conn.accounts[ctx] = account
        self._by_authority[authority] = conn
        self.metrics.authenticated += 1
        return MsgType.WELCOME.value + authority

    def superseded(self) -> list[int]:
        """Connections replaced by a newer one of the same authority (close them)."""
        return [c.conn_id for c in self._conns.values() if c.closing]

    @staticmethod
    def _parse_auth(conn: _Conn, message: bytes) -> tuple[PublicIdentity, bytes, list[bytes]]:
        if len(message) < 1 + 32 + 2 + 1 + 64 or message[:1] != MsgType.AUTH.value:
            raise ProtocolError("expected AUTH", code=ERR_PROTOCOL)
        pk = message[1:33]
        n = int.from_bytes(message[33:35], "big")
        if n > MAX_TOKEN_LEN or len(message) < 35 + n + 1 + 64:
            raise ProtocolError("bad AUTH token length", code=ERR_PROTOCOL)
        token = message[35:35 + n]
        k = message[35 + n]
        end = 36 + n + 16 * k
        if k > MAX_AUTH_CONTEXTS or len(message) != end + 64:
            raise ProtocolError("bad AUTH context list", code=ERR_PROTOCOL)
        requested = [message[i:i + 16] for i in range(36 + n, end, 16)]
        identity = PublicIdentity(pk)
        identity.verify(AUTH_DOMAIN + bytes([RELAY_VERSION]) + conn.nonce + message[1:end],
                        message[end:])
        return identity, token, requested


# -- authorizers ---------------------------------------------------------------------------------

def biscuit_authorizer(root_public_key: bytes) -> Authorizer:
    """Production authorizer: a Biscuit token from ``root_public_key``'s issuer must grant
    ``relay:forward`` in each requested context at ``now_ms`` (aura_core.capabilities).

    Contexts the token does not grant are left out; none granted (wrong root, forged,
    expired, other context, capability missing) is a generic AuthorizationError.  A refusal
    is retried (3 tries): Biscuit's authorizer has a 1 ms run-time limit, which a preempted
    process on a loaded machine can exceed with a valid token (measured: ~1 in 2,000).
    """
    from .capabilities import CAP_RELAY_FORWARD, verify_capabilities

    root = bytes(root_public_key)
    if len(root) != 32:
        raise InvalidValue("a Biscuit root public key is 32 bytes")
    wanted = (CAP_RELAY_FORWARD,)

    def authorize(token: bytes, identity: PublicIdentity, contexts: Sequence[ContextId],
                  now_ms: int) -> Iterable[ContextId]:
        granted = [c for c in contexts if any(  # retried: see below
            CAP_RELAY_FORWARD in verify_capabilities(token, root, c, now_ms, wanted) for _ in range(3))]
        if not granted:
            raise AuthorizationError()
        return granted

    return authorize


def static_authorizer(grants: dict[AuthorityId, Iterable[ContextId]], token: bytes) -> Authorizer:
    """An authorizer for tests and closed deployments: a fixed table and one shared token.

    With no contexts requested the client gets all its table entries.  Production relays use
    :func:`biscuit_authorizer`.
    """
    table = {a: frozenset(cs) for a, cs in grants.items()}
    expected = token

    def authorize(token: bytes, identity: PublicIdentity, contexts: Sequence[ContextId],
                  now_ms: int) -> Iterable[ContextId]:
        if not hmac.compare_digest(token, expected):
            raise AuthorizationError()
        allowed = table.get(identity.authority_id, frozenset())
        granted = allowed if not contexts else allowed & frozenset(contexts)
        if not granted:
            raise AuthorizationError()
        return granted

    return authorize


# -- receipts ------------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class WindowClose:
    """A closed window of forwards toward ``dst`` in ``ctx``: what one receipt will cover."""

    ctx: bytes
    dst: bytes
    epoch: int
    cost: int
    count: int
    commit: Hash32


class _Win:
    __slots__ = ("start", "ids")  # cost = len(ids) // 32 * COST_RELAY_FORWARD (one per forward)

    def __init__(self, start: float) -> None:
        self.start = start
        self.ids = bytearray()  # packed 32-byte envelope ids, appended by the C


class ReceiptWindows:
    """Closes, per (context, destination), windows of forwards (an observer for RelayCore).

    The rule is aura_core.receipts.ForwardAggregator's: a window closes ``window`` seconds
    after its first forward, or at ``max_cost``; its summary carries the summed cost and
    ``forward_commitment`` of the envelope ids.  Closing is split from signing so that on a
    multi-worker relay the worker delivering the frames closes windows while the one worker
    owning the (ctx, dst) chain signs (:class:`ReceiptSigner`): one writer per chain.
    """

    def __init__(self, *, window: float = 1.0, max_cost: int = 1024, epoch: int = 0) -> None:
        if not window > 0 or max_cost < 1:
            raise InvalidValue("window and max_cost must be positive")
        self.window = window
        # Small windows bound the work of closing one (sorting + hashing its ids: ~0.2 ms at
        # 1,024) and the memory it holds; a busy neighbour gets a receipt per 1,024 forwards.
        self.max_cost = max_cost
        self._max_ids = -(-max_cost // COST_RELAY_FORWARD)  # forwards that reach max_cost
        self.epoch = epoch
        self._open: dict[tuple[bytes, bytes], _Win] = {}
        self.ready: list[WindowClose] = []  # closed at max_cost, not yet handed out

    def __call__(self, context: bytes, src: bytes, dst: bytes, frame: bytes, now: float) -> None:
        key = (context, dst)
        w = self._open.get(key)
        if w is None:
            w = self._open[key] = _Win(now)
        # envelope_id(frame), hashed in C straight into the window (this runs per forward)
        if _add_envelope_id(w.ids, frame) >= self._max_ids:
            self.ready.append(self._close(key))

    def take_ready(self) -> list[WindowClose]:
        out, self.ready = self.ready, []
        return out

    def rotate(self, epoch: int) -> list[WindowClose]:
        """Close every window under the old epoch, then count under ``epoch``."""
        out = self.flush()
        self.epoch = max(self.epoch, epoch)
        return out

    def next_deadline(self) -> float | None:
        if self.ready:
            return float("-inf")
        if not self._open:
            return None
        return min(w.start for w in self._open.values()) + self.window

    def poll(self, now: float, max_ids: int | None = None) -> list[WindowClose]:
        """Windows due at ``now`` (and those closed at max_cost).  With ``max_ids``, stops once
        that many ids were committed: call again for the rest (spreads the work)."""
        out = self.take_ready()
        budget = max_ids if max_ids is not None else -1
        for k in sorted(k for k, w in self._open.items() if w.start + self.window <= now):
            if budget == 0:
                break
            w = self._open[k]
            if budget > 0:
                budget = max(0, budget - len(w.ids) // 32)
            out.append(self._close(k))
        return out

    def flush(self) -> list[WindowClose]:
        return self.take_ready() + [self._close(k) for k in sorted(self._open)]

    def _close(self, key: tuple[bytes, bytes]) -> WindowClose:
        w = self._open.pop(key)  # its ids are sorted in place: the window is gone
        count = len(w.ids) // 32
        return WindowClose(key[0], key[1], self.epoch, count * COST_RELAY_FORWARD, count,
                           Hash32(_forward_commitment_packed(w.ids)))


class ReceiptSigner:
    """Signs window summaries into receipts with the relay's own IdentityKey.

    ``src`` of every receipt is the relay's AuthorityId, ``dst`` the neighbour the frames were
    delivered to; one chain per (ctx, dst) (aura_core.receipts.ReceiptIssuer).  Issued
    receipts are kept (bounded) for the journal and handed to ``sink`` if given.
    """

    def __init__(self, key: IdentityKey, *, keep: int = 10_000,
                 sink: Callable[[bytes], object] | None = None) -> None:
        from .receipts import ReceiptIssuer

        self.key = key
        self.issuer = ReceiptIssuer(key)
        self.issued: collections.deque[bytes] = collections.deque(maxlen=keep)
        self.sink = sink
        self.count = 0

    def sign(self, close: WindowClose) -> bytes:
        """The 200-byte packed receipt for ``close``."""
        chain = self.issuer.chain(ContextId(close.ctx), AuthorityId(close.dst), close.epoch)
        if chain.epoch != close.epoch:
            raise ReceiptError("window of an epoch the chain already left")
        packed = bytes(chain.issue(close.cost, close.commit))
        self.issued.append(packed)
        self.count += 1
        if self.sink is not None:
            self.sink(packed)
        return packed
