"""The Aura binding of Noise IKpsk2 (SPEC §2, seed 002 §11; bytes in docs/wire.md §3).

- **Prologue** (30 bytes): ``"AURA"`` || u16 BE binding version (1) || context id (16) ||
  epoch (u64 BE).  Both sides must agree on it, so a channel is bound to one context epoch.
- **PSK**: ``ContextKey.handshake_psk(context, epoch, a, b)`` — keyed BLAKE2b over the
  unordered pair of authority ids; not computable from public identifiers.
- **Channel id**: ``hash32(Tag.CHANNEL, handshake_hash)``.
- **Offer** (the first payload of each handshake message, 36 bytes + extension): epoch, a
  timestamp (initiation replay protection, as WireGuard's TAI64N), version, minimum version
  and a capability bitmap, so version negotiation costs no round trip.  Both sides compute the same :func:`negotiate` result once they hold both offers.
- **Handshake datagrams** (UDP): type 1 initiation / type 2 response with sender/receiver
  indices, WireGuard-style; transport data is type 4 (``DatagramSession``).
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass
from typing import Final

from ..errors import DecodeError, InvalidValue, ProtocolError, VersionError
from ..hashing import ContextKey, Hash32, Tag, hash32

__all__ = [
    "BINDING_VERSION",
    "CAPABILITIES",
    "Offer",
    "Negotiated",
    "negotiate",
    "aura_prologue",
    "aura_psk",
    "channel_id",
    "channel_id_bytes",
    "version_from_str",
    "version_to_str",
    "frame_initiation",
    "frame_response",
    "parse_handshake_datagram",
    "MSG_INITIATION",
    "MSG_RESPONSE",
    "MSG_TRANSPORT",
]

BINDING_VERSION: Final = 1
PROLOGUE_MAGIC: Final = b"AURA"

# Capability bits of the offer (seed 002 §11.3, plus the channel's own options).
CAPABILITIES: Final[dict[str, int]] = {
    "ceremony_supersession": 1 << 0,
    "version_handshake": 1 << 1,
    "fact_journal": 1 << 2,
    "padding": 1 << 3,
    "stream_transport": 1 << 4,
    "datagram_transport": 1 << 5,
}

OFFER_FORMAT: Final = 1
ROLE_OFFER: Final = 1   # in message 1 (initiator)
ROLE_ANSWER: Final = 2  # in message 2 (responder)
# format, role, epoch, timestamp, version, min_version, capabilities, extension length
_OFFER = struct.Struct(">BBQQIIQH")

MSG_INITIATION: Final = 1
MSG_RESPONSE: Final = 2
MSG_TRANSPORT: Final = 4
_HS1 = struct.Struct("<B3xI")   # type, reserved, sender index
_HS2 = struct.Struct("<B3xII")  # type, reserved, sender index, receiver index


def _u64(n: int, what: str) -> int:
    if not isinstance(n, int) or not 0 <= n < 1 << 64:
        raise InvalidValue(f"{what} is an unsigned 64-bit integer")
    return n


def _id16(v: bytes, what: str) -> bytes:
    raw = bytes(v)
    if len(raw) != 16:
        raise InvalidValue(f"{what} is 16 bytes")
    return raw


def aura_prologue(context: bytes, epoch: int, version: int = BINDING_VERSION) -> bytes:
    """The 30-byte prologue binding binding version, context id and epoch."""
    if not 0 <= version < 1 << 16:
        raise InvalidValue("binding version is a u16")
    return PROLOGUE_MAGIC + struct.pack(">H", version) + _id16(context, "context id") + struct.pack(
        ">Q", _u64(epoch, "epoch"))


def aura_psk(context_key: ContextKey, context: bytes, epoch: int, a: bytes, b: bytes) -> bytes:
    """The handshake PSK of (context, epoch, {a, b}) — symmetric in a and b."""
    return context_key.handshake_psk(bytes(context), epoch, bytes(a), bytes(b))


def channel_id(handshake_hash: bytes) -> Hash32:
    """The channel id: Hash32 of the Noise handshake hash under ``aura.channel.v1``."""
    return hash32(Tag.CHANNEL, bytes(handshake_hash))


_CHANNEL_PERSON: Final = Tag.CHANNEL.ljust(16, b"\0")  # hash32's personalisation of the tag
_CHANNEL_HASH: Final = hashlib.blake2b(digest_size=32, person=_CHANNEL_PERSON)  # copied, never fed


def channel_id_bytes(handshake_hash: bytes) -> bytes:
    """``channel_id(handshake_hash).digest`` without the wrapper (once per establishment)."""
    h = _CHANNEL_HASH.copy()
    h.update(handshake_hash)
    return h.digest()


def version_from_str(text: str) -> int:
    """``"1.2.3"`` -> 0x010203 (one byte per component)."""
    parts = text.split(".")
    if len(parts) != 3 or not all(p.isdigit() and int(p) < 256 for p in parts):
        raise InvalidValue(f"version must be MAJOR.MINOR.PATCH with components < 256: {text!r}")
    return (int(parts[0]) << 16) | (int(parts[1]) << 8) | int(parts[2])


def version_to_str(v: int) -> str:
    return f"{(v >> 16) & 0xFF}.{(v >> 8) & 0xFF}.{v & 0xFF}"


@dataclass(frozen=True, slots=True)
class Offer:
    """Epoch and version/capability offer carried in a handshake payload.

    ``version``/``min_version`` are packed MAJOR<<16 | MINOR<<8 | PATCH; ``capabilities`` a
    bitmap of :data:`CAPABILITIES`; ``extension`` opaque application bytes after the offer.
    ``timestamp`` (u64, e.g. nanoseconds since the epoch, supplied by the caller: sans-I/O) must
    grow with every initiation to the same responder: a responder refuses an initiation whose
    timestamp is not above the last one it accepted from that peer, so a recorded message 1
    cannot be replayed to make it answer (IK's known replay gap; WireGuard's TAI64N field).
    """

    epoch: int
    version: int
    min_version: int
    capabilities: int = 0
    extension: bytes = b""
    role: int = ROLE_OFFER
    timestamp: int = 0

    def __post_init__(self) -> None:
        _u64(self.epoch, "epoch")
        _u64(self.timestamp, "timestamp")
        _u64(self.capabilities, "capabilities")
        for v in (self.version, self.min_version):
            if not 0 <= v < 1 << 24:
                raise InvalidValue("versions are packed into 24 bits")
        if self.min_version > self.version:
            raise InvalidValue("min_version above version")
        if len(self.extension) > 0xFFFF:
            raise InvalidValue("extension over 65535 bytes")
        if self.role not in (ROLE_OFFER, ROLE_ANSWER):
            raise InvalidValue("role is 1 (offer) or 2 (answer)")

    def encode(self) -> bytes:
        return _OFFER.pack(OFFER_FORMAT, self.role, self.epoch, self.timestamp, self.version,
                           self.min_version, self.capabilities,
                           len(self.extension)) + bytes(self.extension)

    @classmethod
    def decode(cls, data: bytes) -> Offer:
        data = bytes(data)
        hit = _DECODED.get(data)
        if hit is not None:  # a peer's answer repeats byte for byte (offers differ by timestamp)
            return hit
        if len(data) < _OFFER.size:
            raise DecodeError("offer truncated", len(data))
        fmt, role, epoch, ts, version, min_version, caps, ext = _OFFER.unpack_from(data)
        if fmt != OFFER_FORMAT:
            raise DecodeError(f"unknown offer format {fmt}", 0)
        if role not in (ROLE_OFFER, ROLE_ANSWER):
            raise DecodeError(f"bad offer role {role}", 1)
        if version >= 1 << 24 or min_version >= 1 << 24 or min_version > version:
            raise DecodeError("bad version range", 18)
        if len(data) != _OFFER.size + ext:
            raise DecodeError("offer extension length mismatch", 34)
        # every field was range-checked above or is bounded by its packed width
        offer = _trusted_offer(epoch, version, min_version, caps, data[_OFFER.size:], role, ts)
        if role == ROLE_ANSWER and ext == 0:
            if len(_DECODED) >= 256:
                _DECODED.clear()
            _DECODED[data] = offer
        return offer

    def encode_as(self, role: int) -> bytes:
        """:meth:`encode` with ``role`` in place of :attr:`role` (a responder's answer)."""
        if role not in (ROLE_OFFER, ROLE_ANSWER):
            raise InvalidValue("role is 1 (offer) or 2 (answer)")
        return _OFFER.pack(OFFER_FORMAT, role, self.epoch, self.timestamp, self.version,
                           self.min_version, self.capabilities,
                           len(self.extension)) + bytes(self.extension)

    def answer(self) -> Offer:
        """The same offer with the answer role (what a responder sends)."""
        return _trusted_offer(self.epoch, self.version, self.min_version, self.capabilities,
                              self.extension, ROLE_ANSWER, self.timestamp)

    def with_timestamp(self, timestamp: int) -> Offer:
        """The same offer carrying initiation ``timestamp`` (u64)."""
        return _trusted_offer(self.epoch, self.version, self.min_version, self.capabilities,
                              self.extension, self.role, _u64(timestamp, "timestamp"))


_DECODED: dict[bytes, Offer] = {}  # answer payload -> its (immutable) Offer; public values only
_new = object.__new__
_set = object.__setattr__


def _trusted_offer(epoch: int, version: int, min_version: int, capabilities: int,
                   extension: bytes, role: int, timestamp: int) -> Offer:
    """An Offer from fields already validated (by __post_init__ of the offer they come from, or
    by decode): no re-validation on the handshake hot path."""
    o = _new(Offer)
    _set(o, "epoch", epoch)
    _set(o, "version", version)
    _set(o, "min_version", min_version)
    _set(o, "capabilities", capabilities)
    _set(o, "extension", extension)
    _set(o, "role", role)
    _set(o, "timestamp", timestamp)
    return o


@dataclass(frozen=True, slots=True)
class Negotiated:
    """Outcome of a compatible negotiation: the min of both versions, the shared capabilities."""

    version: int
    capabilities: int

    def has(self, name: str) -> bool:
        return bool(self.capabilities & CAPABILITIES[name])


def negotiate(local: Offer, remote: Offer) -> Negotiated:
    """Seed 002 §11.2: compatible -> (min of both versions, shared capabilities).

    Raises :class:`VersionError` when the ranges do not overlap and :class:`ProtocolError`
    when the offers name different epochs (the prologue already binds the epoch, so this only
    fires on a peer bug).
    """
    if local.epoch != remote.epoch:
        raise ProtocolError(f"epoch mismatch: local {local.epoch}, peer {remote.epoch}")
    version = min(local.version, remote.version)
    if version < max(local.min_version, remote.min_version):
        raise VersionError(
            f"no common version: local {version_to_str(local.min_version)}.."
            f"{version_to_str(local.version)}, peer {version_to_str(remote.min_version)}.."
            f"{version_to_str(remote.version)}")
    return Negotiated(version, local.capabilities & remote.capabilities)


def frame_initiation(sender_index: int, message: bytes) -> bytes:
    """UDP handshake initiation: type 1, 3 zero bytes, sender index (u32 LE), Noise message 1."""
    return _HS1.pack(MSG_INITIATION, sender_index) + bytes(message)


def frame_response(sender_index: int, receiver_index: int, message: bytes) -> bytes:
    """UDP handshake response: type 2, 3 zero bytes, sender, receiver (u32 LE), message 2."""
    return _HS2.pack(MSG_RESPONSE, sender_index, receiver_index) + bytes(message)


def parse_handshake_datagram(data: bytes) -> tuple[int, int, int | None, bytes]:
    """(type, sender index, receiver index or None, Noise message) of a handshake datagram."""
    data = bytes(data)
    if len(data) < 4 or data[1:4] != b"\0\0\0":
        raise DecodeError("not an Aura Noise datagram", 0)
    if data[0] == MSG_INITIATION and len(data) >= _HS1.size:
        _, sender = _HS1.unpack_from(data)
        return MSG_INITIATION, sender, None, data[_HS1.size:]
    if data[0] == MSG_RESPONSE and len(data) >= _HS2.size:
        _, sender, receiver = _HS2.unpack_from(data)
        return MSG_RESPONSE, sender, receiver, data[_HS2.size:]
    raise DecodeError(f"unexpected datagram type {data[0]} or length {len(data)}", 0)
