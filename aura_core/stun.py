"""Sans-I/O STUN Binding client (RFC 8489) and mapping-behaviour detection (RFC 4787/5780).

Theory of operation: a :class:`BindingTransaction` is one request to one server.  It is driven by
three inputs — :meth:`~BindingTransaction.receive` (a parsed response), ``now`` (seconds, any
monotonic origin) and :meth:`~BindingTransaction.handle_timer` — and its outputs are pulled:
:meth:`~BindingTransaction.datagrams_to_send`, :meth:`~BindingTransaction.get_timer`,
``state`` / ``result``.  Retransmission follows RFC 8489 §6.2.1 exactly: RTO 500 ms doubling,
Rc = 7 sends, then Rm × RTO = 8 s wait (sends at 0, 0.5, 1.5, 3.5, 7.5, 15.5, 31.5 s; failure at
39.5 s).  :class:`StunClient` multiplexes transactions by transaction id and turns datagrams into
events.  Peer faults (garbage, wrong transaction, bad FINGERPRINT) are dropped and counted, never
raised; :class:`~aura_core.errors.StunError` reaches the caller only from :func:`parse_message`
and the explicit check helpers.

Nothing here does I/O or reads the clock: ``now`` and ``rand`` are parameters (defaults below);
:mod:`aura_core.asyncio.stun` is the driver over a real socket.
"""

from __future__ import annotations

import binascii
import hashlib
import hmac
import ipaddress
import os
import stringprep
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final, Literal

from .errors import InvalidValue, StunError

__all__ = [
    "MAGIC_COOKIE",
    "BINDING_REQUEST",
    "BINDING_SUCCESS",
    "BINDING_ERROR",
    "BINDING_INDICATION",
    "Attr",
    "StunMessage",
    "Address",
    "parse_message",
    "encode_message",
    "build_binding_request",
    "build_binding_response",
    "check_fingerprint",
    "check_integrity",
    "short_term_key",
    "long_term_key",
    "saslprep",
    "BindingResult",
    "BindingTransaction",
    "BindingSucceeded",
    "BindingFailed",
    "StunClient",
    "MappingBehaviour",
    "mapping_behaviour",
    "RTO",
    "RC",
    "RM",
]

DEFAULT_RAND: Callable[[int], bytes] = os.urandom

MAGIC_COOKIE: Final = 0x2112A442
_COOKIE_BYTES: Final = MAGIC_COOKIE.to_bytes(4, "big")
_FINGERPRINT_XOR: Final = 0x5354554E

BINDING_REQUEST: Final = 0x0001
BINDING_INDICATION: Final = 0x0011
BINDING_SUCCESS: Final = 0x0101
BINDING_ERROR: Final = 0x0111

RTO: Final = 0.5  # initial retransmission timeout, seconds (RFC 8489 §6.2.1)
RC: Final = 7  # requests sent in total
RM: Final = 16  # final wait, in multiples of the initial RTO

Address = tuple[str, int]


class Attr:
    """Attribute types used here (RFC 8489 §18.3, RFC 5780 §7)."""

    MAPPED_ADDRESS: Final = 0x0001
    USERNAME: Final = 0x0006
    MESSAGE_INTEGRITY: Final = 0x0008
    ERROR_CODE: Final = 0x0009
    UNKNOWN_ATTRIBUTES: Final = 0x000A
    REALM: Final = 0x0014
    NONCE: Final = 0x0015
    MESSAGE_INTEGRITY_SHA256: Final = 0x001C
    XOR_MAPPED_ADDRESS: Final = 0x0020
    SOFTWARE: Final = 0x8022
    ALTERNATE_SERVER: Final = 0x8023
    FINGERPRINT: Final = 0x8028
    RESPONSE_ORIGIN: Final = 0x802B
    OTHER_ADDRESS: Final = 0x802C


_KNOWN_REQUIRED: Final = frozenset({
    Attr.MAPPED_ADDRESS, Attr.USERNAME, Attr.MESSAGE_INTEGRITY, Attr.ERROR_CODE,
    Attr.UNKNOWN_ATTRIBUTES, Attr.REALM, Attr.NONCE, Attr.MESSAGE_INTEGRITY_SHA256,
    Attr.XOR_MAPPED_ADDRESS, 0x001D, 0x001E,  # PASSWORD-ALGORITHM, USERHASH
})


@dataclass(frozen=True, slots=True)
class StunMessage:
    """A parsed STUN message.

    ``attrs`` keeps every attribute in wire order as ``(type, value, offset)`` where ``offset``
    is where the attribute header starts in ``raw`` (integrity checks need it).
    """

    msg_type: int
    txid: bytes
    attrs: tuple[tuple[int, bytes, int], ...]
    raw: bytes

    @property
    def method(self) -> int:
        t = self.msg_type
        return (t & 0x000F) | ((t & 0x00E0) >> 1) | ((t & 0x3E00) >> 2)

    @property
    def msg_class(self) -> Literal["request", "indication", "success", "error"]:
        c = ((self.msg_type >> 7) & 0x2) | ((self.msg_type >> 4) & 0x1)
        return ("request", "indication", "success", "error")[c]

    def get(self, attr_type: int) -> bytes | None:
        """First value of ``attr_type`` before any MESSAGE-INTEGRITY (later ones are ignored,
        RFC 8489 §14.5), except FINGERPRINT / MESSAGE-INTEGRITY(-SHA256) themselves."""
        for t, v, _ in self._effective():
            if t == attr_type:
                return v
        return None

    def _effective(self) -> list[tuple[int, bytes, int]]:
        out = []
        seen_integrity = False
        for t, v, off in self.attrs:
            if seen_integrity and t not in (Attr.FINGERPRINT, Attr.MESSAGE_INTEGRITY_SHA256):
                continue
            out.append((t, v, off))
            if t in (Attr.MESSAGE_INTEGRITY, Attr.MESSAGE_INTEGRITY_SHA256):
                seen_integrity = True
        return out

    @property
    def software(self) -> str | None:
        v = self.get(Attr.SOFTWARE)
        return None if v is None else v.decode("utf-8", "replace")

    @property
    def mapped_address(self) -> Address | None:
        """XOR-MAPPED-ADDRESS, else MAPPED-ADDRESS (RFC 3489 servers), else None."""
        v = self.get(Attr.XOR_MAPPED_ADDRESS)
        if v is not None:
            return _decode_address(v, xor=self.txid)
        v = self.get(Attr.MAPPED_ADDRESS)
        return None if v is None else _decode_address(v, xor=None)

    def address_attr(self, attr_type: int) -> Address | None:
        v = self.get(attr_type)
        return None if v is None else _decode_address(v, xor=None)

    @property
    def error(self) -> tuple[int, str] | None:
        v = self.get(Attr.ERROR_CODE)
        if v is None:
            return None
        if len(v) < 4:
            raise StunError("ERROR-CODE shorter than 4 bytes")
        return (v[2] & 0x7) * 100 + v[3], v[4:].decode("utf-8", "replace")

    def unknown_required(self) -> list[int]:
        return [t for t, _, _ in self._effective() if t < 0x8000 and t not in _KNOWN_REQUIRED]


def parse_message(data: bytes) -> StunMessage:
    """Parse one STUN message (RFC 8489 §5, §14).  Raises :class:`StunError` if malformed."""
    data = bytes(data)
    if len(data) < 20:
        raise StunError("STUN message shorter than its 20-byte header")
    if data[0] & 0xC0:
        raise StunError("first two bits of a STUN message must be zero")
    length = int.from_bytes(data[2:4], "big")
    if data[4:8] != _COOKIE_BYTES:
        raise StunError("magic cookie missing")
    if length % 4 or 20 + length != len(data):
        raise StunError("STUN length does not match the datagram")
    attrs = []
    off = 20
    while off < len(data):
        if off + 4 > len(data):
            raise StunError("truncated attribute header")
        t = int.from_bytes(data[off:off + 2], "big")
        n = int.from_bytes(data[off + 2:off + 4], "big")
        end = off + 4 + n
        padded = off + 4 + ((n + 3) & ~3)
        if padded > len(data):
            raise StunError(f"attribute 0x{t:04x} overruns the message")
        attrs.append((t, data[off + 4:end], off))
        off = padded
    return StunMessage(int.from_bytes(data[0:2], "big"), data[8:20], tuple(attrs), data)


def _pad(value: bytes) -> bytes:
    return value + b"\0" * (-len(value) % 4)


def encode_message(msg_type: int, txid: bytes, attrs: list[tuple[int, bytes]], *,
                   integrity_key: bytes | None = None, fingerprint: bool = False) -> bytes:
    """Encode a message; append MESSAGE-INTEGRITY (HMAC-SHA1) and/or FINGERPRINT if asked."""
    if len(txid) != 12:
        raise InvalidValue("a STUN transaction id is 12 bytes")
    body = b"".join(t.to_bytes(2, "big") + len(v).to_bytes(2, "big") + _pad(v) for t, v in attrs)

    def header(length: int) -> bytes:
        return msg_type.to_bytes(2, "big") + length.to_bytes(2, "big") + _COOKIE_BYTES + txid

    if integrity_key is not None:
        mac = hmac.new(integrity_key, header(len(body) + 24) + body, hashlib.sha1).digest()
        body += Attr.MESSAGE_INTEGRITY.to_bytes(2, "big") + b"\x00\x14" + mac
    if fingerprint:
        crc = binascii.crc32(header(len(body) + 8) + body) ^ _FINGERPRINT_XOR
        body += Attr.FINGERPRINT.to_bytes(2, "big") + b"\x00\x04" + crc.to_bytes(4, "big")
    return header(len(body)) + body


def _find(msg: StunMessage, attr_type: int) -> tuple[bytes, int] | None:
    for t, v, off in msg.attrs:
        if t == attr_type:
            return v, off
        if t == Attr.FINGERPRINT:
            break
    return None


def check_fingerprint(msg: StunMessage) -> bool | None:
    """True/False if a FINGERPRINT is present (it must be last), None if absent."""
    if not msg.attrs or msg.attrs[-1][0] != Attr.FINGERPRINT:
        return None if all(t != Attr.FINGERPRINT for t, _, _ in msg.attrs) else False
    value, off = msg.attrs[-1][1], msg.attrs[-1][2]
    if len(value) != 4:
        return False
    raw = msg.raw
    prefix = raw[:2] + (off - 20 + 8).to_bytes(2, "big") + raw[4:off]
    return (binascii.crc32(prefix) ^ _FINGERPRINT_XOR) == int.from_bytes(value, "big")


def check_integrity(msg: StunMessage, key: bytes) -> bool | None:
    """Verify MESSAGE-INTEGRITY-SHA256 if present, else MESSAGE-INTEGRITY (HMAC-SHA1);
    None if the message carries neither.  Constant-time comparison."""
    for attr_type, algo, size in ((Attr.MESSAGE_INTEGRITY_SHA256, hashlib.sha256, 32),
                                  (Attr.MESSAGE_INTEGRITY, hashlib.sha1, 20)):
        found = _find(msg, attr_type)
        if found is None:
            continue
        value, off = found
        if attr_type == Attr.MESSAGE_INTEGRITY_SHA256 and not 16 <= len(value) <= 32:
            return False
        if attr_type == Attr.MESSAGE_INTEGRITY and len(value) != size:
            return False
        raw = msg.raw
        prefix = raw[:2] + (off - 20 + 4 + len(value)).to_bytes(2, "big") + raw[4:off]
        mac = hmac.new(key, prefix, algo).digest()[:len(value)]
        return hmac.compare_digest(mac, value)
    return None


def saslprep(text: str) -> str:
    """RFC 4013 SASLprep (stored strings not allowed unassigned code points)."""
    mapped = "".join(" " if stringprep.in_table_c12(c) else c for c in text
                     if not stringprep.in_table_b1(c))
    out = unicodedata.normalize("NFKC", mapped)
    prohibited = (stringprep.in_table_c12, stringprep.in_table_c21_c22, stringprep.in_table_c3,
                  stringprep.in_table_c4, stringprep.in_table_c5, stringprep.in_table_c6,
                  stringprep.in_table_c7, stringprep.in_table_c8, stringprep.in_table_c9,
                  stringprep.in_table_a1)
    for c in out:
        if any(p(c) for p in prohibited):
            raise InvalidValue(f"SASLprep: prohibited character U+{ord(c):04X}")
    if any(stringprep.in_table_d1(c) for c in out):
        if not (stringprep.in_table_d1(out[0]) and stringprep.in_table_d1(out[-1])) or any(
                stringprep.in_table_d2(c) for c in out):
            raise InvalidValue("SASLprep: bidirectional rule violated")
    return out


def short_term_key(password: str) -> bytes:
    return saslprep(password).encode("utf-8")


def long_term_key(username: str, realm: str, password: str) -> bytes:
    """MD5(username ":" realm ":" SASLprep(password)) (RFC 8489 §9.2.2, MD5 algorithm)."""
    return hashlib.md5(f"{username}:{realm}:{saslprep(password)}".encode("utf-8")).digest()


def _decode_address(value: bytes, xor: bytes | None) -> Address:
    if len(value) < 4:
        raise StunError("address attribute shorter than 4 bytes")
    family = value[1]
    port = int.from_bytes(value[2:4], "big")
    raw = value[4:]
    if family == 1 and len(raw) == 4:
        pass
    elif family == 2 and len(raw) == 16:
        pass
    else:
        raise StunError("address attribute: unknown family or wrong length")
    if xor is not None:
        port ^= MAGIC_COOKIE >> 16
        mask = _COOKIE_BYTES + xor
        raw = bytes(a ^ b for a, b in zip(raw, mask))
    return str(ipaddress.ip_address(raw)), port


def _encode_address(addr: Address, xor: bytes | None) -> bytes:
    ip = ipaddress.ip_address(addr[0])
    raw = ip.packed
    port = addr[1]
    if xor is not None:
        port ^= MAGIC_COOKIE >> 16
        raw = bytes(a ^ b for a, b in zip(raw, _COOKIE_BYTES + xor))
    return bytes([0, 1 if ip.version == 4 else 2]) + port.to_bytes(2, "big") + raw


def build_binding_request(txid: bytes, *, software: str | None = None,
                          fingerprint: bool = True) -> bytes:
    attrs = [] if software is None else [(Attr.SOFTWARE, software.encode("utf-8"))]
    return encode_message(BINDING_REQUEST, txid, attrs, fingerprint=fingerprint)


def build_binding_response(txid: bytes, mapped: Address, *, fingerprint: bool = True) -> bytes:
    """A success response (for in-memory tests and the lab's servers)."""
    return encode_message(BINDING_SUCCESS, txid,
                          [(Attr.XOR_MAPPED_ADDRESS, _encode_address(mapped, txid))],
                          fingerprint=fingerprint)


# --- the client -------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class BindingResult:
    server: Address
    mapped: Address  # our server-reflexive address as this server saw it
    rtt: float  # from the last transmission to the response (Karn: only if not retransmitted)
    other_address: Address | None = None  # RFC 5780 OTHER-ADDRESS, if the server has one
    software: str | None = None


@dataclass(frozen=True, slots=True)
class BindingSucceeded:
    txid: bytes
    result: BindingResult


@dataclass(frozen=True, slots=True)
class BindingFailed:
    txid: bytes
    server: Address
    reason: str  # "timeout", "error 4xx: ...", "unknown comprehension-required attribute"
    code: int | None = None


TxState = Literal["pending", "succeeded", "failed"]


class BindingTransaction:
    """One Binding request to one server with RFC 8489 retransmission."""

    def __init__(self, server: Address, now: float, *, rand: Callable[[int], bytes] = DEFAULT_RAND,
                 software: str | None = None, rto: float = RTO, rc: int = RC, rm: int = RM) -> None:
        if rto <= 0 or rc < 1 or rm < 1:
            raise InvalidValue("rto > 0, rc >= 1, rm >= 1")
        self.server = server
        self.txid = rand(12)
        if len(self.txid) != 12:
            raise InvalidValue("rand must return the requested number of bytes")
        self.request = build_binding_request(self.txid, software=software)
        self._rto0 = rto
        self._rto = rto
        self._rc = rc
        self._rm = rm
        self._sent = 0
        self._due: float | None = now  # next transmission (or the failure deadline)
        self._last_send = now
        self._outbox: list[tuple[bytes, Address]] = []
        self.state: TxState = "pending"
        self.result: BindingResult | None = None
        self.failure: BindingFailed | None = None
        self.handle_timer(now)

    @property
    def transmissions(self) -> int:
        return self._sent

    def get_timer(self) -> float | None:
        return self._due if self.state == "pending" else None

    def handle_timer(self, now: float) -> None:
        while self.state == "pending" and self._due is not None and now >= self._due:
            if self._sent < self._rc:
                self._outbox.append((self.request, self.server))
                self._sent += 1
                self._last_send = self._due
                if self._sent < self._rc:
                    self._due += self._rto
                    self._rto *= 2
                else:
                    self._due += self._rm * self._rto0
            else:
                self.state = "failed"
                self.failure = BindingFailed(self.txid, self.server, "timeout")

    def datagrams_to_send(self, now: float) -> list[tuple[bytes, Address]]:
        self.handle_timer(now)
        out, self._outbox = self._outbox, []
        return out

    def receive(self, msg: StunMessage, now: float) -> bool:
        """Feed a response with our transaction id; True if it concluded the transaction."""
        if self.state != "pending" or msg.txid != self.txid or msg.method != 0x001:
            return False
        if check_fingerprint(msg) is False:
            return False  # corrupted or not STUN after all: keep waiting (RFC 8489 §7.3)
        try:
            if msg.msg_class == "success":
                if msg.unknown_required():
                    self._fail("unknown comprehension-required attribute")
                    return True
                mapped = msg.mapped_address
                if mapped is None:
                    self._fail("success response without a mapped address")
                    return True
                rtt = now - self._last_send
                self.result = BindingResult(self.server, mapped, rtt,
                                            msg.address_attr(Attr.OTHER_ADDRESS), msg.software)
                self.state = "succeeded"
                return True
            if msg.msg_class == "error":
                code, reason = msg.error or (0, "error response without ERROR-CODE")
                self._fail(f"error {code}: {reason}", code)
                return True
        except StunError as exc:  # malformed attribute: the response is discarded
            self._fail(f"malformed response: {exc}")
            return True
        return False

    def _fail(self, reason: str, code: int | None = None) -> None:
        self.state = "failed"
        self.failure = BindingFailed(self.txid, self.server, reason, code)


Event = BindingSucceeded | BindingFailed


@dataclass
class StunClient:
    """Many concurrent Binding transactions over one socket, keyed by transaction id."""

    rand: Callable[[int], bytes] = DEFAULT_RAND
    software: str | None = None
    rto: float = RTO
    rc: int = RC
    rm: int = RM
    dropped: int = 0  # datagrams that were not a response to a live transaction
    _tx: dict[bytes, BindingTransaction] = field(default_factory=dict)
    _events: list[Event] = field(default_factory=list)

    def start(self, server: Address, now: float) -> bytes:
        tx = BindingTransaction(server, now, rand=self.rand, software=self.software,
                                rto=self.rto, rc=self.rc, rm=self.rm)
        if tx.txid in self._tx:
            raise InvalidValue("transaction id collision (is rand deterministic?)")
        self._tx[tx.txid] = tx
        return tx.txid

    def receive_datagram(self, data: bytes, source: Address, now: float) -> None:
        try:
            msg = parse_message(data)
        except StunError:
            self.dropped += 1
            return
        tx = self._tx.get(msg.txid)
        if tx is None or not tx.receive(msg, now):
            self.dropped += 1
            return
        self._conclude(tx)

    def _conclude(self, tx: BindingTransaction) -> None:
        del self._tx[tx.txid]
        if tx.result is not None:
            self._events.append(BindingSucceeded(tx.txid, tx.result))
        elif tx.failure is not None:
            self._events.append(tx.failure)

    def handle_timer(self, now: float) -> None:
        for tx in list(self._tx.values()):
            tx.handle_timer(now)
            if tx.state == "failed":
                self._conclude(tx)

    def get_timer(self) -> float | None:
        timers = [t for t in (tx.get_timer() for tx in self._tx.values()) if t is not None]
        return min(timers) if timers else None

    def datagrams_to_send(self, now: float) -> list[tuple[bytes, Address]]:
        out: list[tuple[bytes, Address]] = []
        for tx in self._tx.values():
            out.extend(tx.datagrams_to_send(now))
        self.handle_timer(now)
        return out

    def next_event(self) -> Event | None:
        return self._events.pop(0) if self._events else None

    @property
    def pending(self) -> int:
        return len(self._tx)


MappingBehaviour = Literal["endpoint-independent", "endpoint-dependent", "unknown"]


def mapping_behaviour(results: list[BindingResult]) -> MappingBehaviour:
    """RFC 4787 mapping from Binding results against servers at *different* IP addresses,
    all sent from one local socket: the same mapped address everywhere ⇒ endpoint-independent
    (a punch can work); different ⇒ endpoint-dependent (symmetric NAT); fewer than two distinct
    server IPs ⇒ unknown."""
    if len({r.server[0] for r in results}) < 2:
        return "unknown"
    return "endpoint-independent" if len({r.mapped for r in results}) == 1 else "endpoint-dependent"
