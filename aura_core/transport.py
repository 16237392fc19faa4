"""Ordered, exactly-once delivery of application messages across path switches (sans-I/O).

Theory of operation
-------------------
A :class:`PathSwitcher` sits between the application and whichever path currently carries a
channel (relay, direct QUIC, direct WebSocket).  Paths may lose frames (a relay restarting, a
direct path dying mid-flight), duplicate them (a retransmission crossing the original) and
reorder them (frames still queued on the relay overtaken by frames on a fresh direct path).
The switcher hides all of that:

* the sender numbers each message (``seq``, from 0) and keeps it until the peer's cumulative
  acknowledgement covers it; unacknowledged messages are retransmitted all at once after
  :meth:`path_changed`, and — on a lossy path — after the retransmission timeout: RFC 6298's
  ``srtt + 4·rttvar`` from acknowledged first transmissions (Karn), at least ``rto``, doubling up
  to ``rto_max`` while nothing is acknowledged.  On a *reliable* path (a QUIC stream or a
  WebSocket: loss there means the path died, which is a path change) there is no timer
  retransmission, so a congested direct path is not flooded with spurious copies;
* the receiver delivers in ``seq`` order, holds out-of-order messages up to ``window`` ahead,
  drops (and counts) duplicates and anything outside the window, and acknowledges cumulatively
  (``ack`` = the next ``seq`` it expects), piggybacked on data or as a bare ACK record.

Buffers are bounded: at most ``window`` messages (and ``max_bytes`` bytes) unacknowledged on
the send side (:meth:`can_send` is the back-pressure signal), and at most ``window`` messages /
``max_bytes`` bytes held for reordering on the receive side, plus at most ``window`` delivered
but not yet pulled by the application (beyond that, data stays unacknowledged: the sender's
window then stalls, which is the receive-side flow control).

Records are the *plaintext* of the channel's Noise datagrams, so their header is authenticated
and replay-protected by Noise; this layer trusts the bytes it is given as coming from the peer.
A malformed record is a counted drop, never an exception.  Byte layout (docs/wire.md, "Path
records")::

    DATA  = 0x01 || seq (u64 BE) || ack (u64 BE) || payload
    ACK   = 0x02 || ack (u64 BE)
    CTRL  = 0x03 || type (u8) || body            (path control, handled by the driver)

Inputs: :meth:`send`, :meth:`receive`, :meth:`path_changed`, :meth:`handle_timer`, all with
``now``.  Outputs are pulled: :meth:`records_to_send`, :meth:`next_message`, :meth:`get_timer`.
"""

from __future__ import annotations

import struct
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from typing import Final

from .errors import InvalidValue, UsageError

__all__ = [
    "REC_DATA",
    "REC_ACK",
    "REC_CTRL",
    "DATA_HEADER",
    "MAX_PAYLOAD",
    "PathSwitcher",
    "encode_data",
    "encode_ack",
    "encode_ctrl",
]

REC_DATA: Final = 0x01
REC_ACK: Final = 0x02
REC_CTRL: Final = 0x03
_DATA = struct.Struct(">BQQ")
_ACK = struct.Struct(">BQ")
DATA_HEADER: Final = _DATA.size  # 17
# A Noise datagram (16-byte header + plaintext + 16-byte tag) must fit a relay frame and a
# u16-framed QUIC stream record: 65535 bytes.
MAX_PAYLOAD: Final = 65535 - 32 - DATA_HEADER
_U64: Final = 1 << 64


def encode_data(seq: int, ack: int, payload: bytes) -> bytes:
    return _DATA.pack(REC_DATA, seq, ack) + payload


def encode_ack(ack: int) -> bytes:
    return _ACK.pack(REC_ACK, ack)


def encode_ctrl(kind: int, body: bytes = b"") -> bytes:
    if not 0 <= kind < 256:
        raise InvalidValue("control type is a u8")
    return bytes((REC_CTRL, kind)) + body


@dataclass(slots=True)
class _Pending:
    payload: bytes
    last_sent: float | None = None  # None: never sent
    sends: int = 0


@dataclass
class PathSwitcher:
    """Sequence numbers, cumulative acks, retransmission and reordering for one channel."""

    window: int = 256
    max_bytes: int = 8 << 20
    rto: float = 0.3
    rto_max: float = 3.0
    stats: dict[str, int] = field(default_factory=lambda: dict.fromkeys(
        ("sent", "retransmitted", "acked", "delivered", "duplicate", "out_of_window",
         "over_bytes", "malformed", "acks_sent"), 0))
    _next_seq: int = 0
    _unacked: OrderedDict[int, _Pending] = field(default_factory=OrderedDict)
    _unacked_bytes: int = 0
    _current_rto: float = 0.0
    _due_from: int = 0  # messages from this seq on go out at the next records_to_send
    reliable: bool = False  # the current path loses nothing while it lives (see path_changed)
    srtt: float | None = None
    _rttvar: float = 0.0
    _recv_next: int = 0
    _held: dict[int, bytes] = field(default_factory=dict)
    _held_bytes: int = 0
    _ready: deque[bytes] = field(default_factory=deque)
    ack_every: int = 16  # a bare ACK after this many unacknowledged data records ...
    ack_delay: float = 0.01  # ... or this long after the first of them (QUIC: 25 ms)
    _ack_pending: bool = False
    _ack_count: int = 0
    _ack_since: float = 0.0
    _now: float = 0.0  # time of the last input (delayed-ACK bookkeeping)
    _controls: deque[tuple[int, bytes]] = field(default_factory=deque)

    def __post_init__(self) -> None:
        if self.window < 1 or self.max_bytes < MAX_PAYLOAD or self.rto <= 0 or self.rto_max < self.rto:
            raise InvalidValue("window >= 1, max_bytes >= MAX_PAYLOAD, 0 < rto <= rto_max")
        if self.ack_every < 1 or self.ack_delay < 0:
            raise InvalidValue("ack_every >= 1, ack_delay >= 0")
        # acknowledge well before the sender's window (assumed equal to ours) fills
        self.ack_every = max(1, min(self.ack_every, self.window // 4))
        self._current_rto = self.rto

    # -- sender -----------------------------------------------------------------------------------
    def can_send(self, size: int = 0) -> bool:
        """Whether one more message of ``size`` bytes fits the send buffer now."""
        return (len(self._unacked) < self.window
                and (not self._unacked or self._unacked_bytes + size <= self.max_bytes))

    def send(self, payload: bytes, now: float) -> int:
        """Queue one message; returns its sequence number.  UsageError if the buffer is full
        (check :meth:`can_send`) or the payload exceeds :data:`MAX_PAYLOAD`."""
        payload = bytes(payload)
        if len(payload) > MAX_PAYLOAD:
            raise InvalidValue(f"message over {MAX_PAYLOAD} bytes")
        if not self.can_send(len(payload)):
            raise UsageError("send buffer full: wait until can_send()")
        seq = self._next_seq
        self._next_seq += 1
        self._unacked[seq] = _Pending(payload)
        self._unacked_bytes += len(payload)
        return seq

    @property
    def unacked(self) -> int:
        return len(self._unacked)

    @property
    def idle(self) -> bool:
        """Nothing unacknowledged and no acknowledgement owed."""
        return not self._unacked and not self._ack_pending

    def path_changed(self, now: float, *, reliable: bool = False) -> None:
        """The carrying path changed: everything unacknowledged goes out again at once.
        ``reliable``: the new path delivers everything while it lives (no timer retransmits)."""
        self._due_from = next(iter(self._unacked), self._next_seq)
        self.reliable = reliable
        self.srtt = None  # another path, another round-trip time
        self._current_rto = self.rto

    def _send_one(self, seq: int, p: _Pending, now: float, out: list[bytes]) -> None:
        self.stats["retransmitted" if p.sends else "sent"] += 1
        p.sends += 1
        p.last_sent = now
        out.append(encode_data(seq, self._recv_next, p.payload))

    def records_to_send(self, now: float) -> list[bytes]:
        """Data due now (new or retransmitted, each carrying the current ack), or a bare ACK."""
        out: list[bytes] = []
        unacked = self._unacked
        if unacked:
            first = next(iter(unacked))
            due_from = max(self._due_from, first)
            if not self.reliable and due_from > first:
                limit = now - self._current_rto  # timer retransmissions (lossy paths only)
                for seq, p in unacked.items():
                    if seq >= due_from:
                        break
                    if p.last_sent is not None and p.last_sent <= limit:
                        self._send_one(seq, p, now, out)
                if out:  # back off until something is acknowledged
                    self._current_rto = min(self.rto_max, self._current_rto * 2)
            for seq in range(due_from, self._next_seq):  # new, or due after a path change
                self._send_one(seq, unacked[seq], now, out)
        self._due_from = self._next_seq
        if out:
            self._ack_pending = False  # piggybacked
            self._ack_count = 0
        elif self._ack_pending and (self._ack_count >= self.ack_every
                                    or now - self._ack_since >= self.ack_delay):
            self._ack_pending = False
            self._ack_count = 0
            self.stats["acks_sent"] += 1
            out.append(encode_ack(self._recv_next))
        return out

    def get_timer(self) -> float | None:
        """When something is due: 0.0 for unsent data or an ACK owed now, the delayed-ACK time,
        or the oldest unacknowledged message's retransmission time on a lossy path (None:
        nothing to wait for)."""
        ack: float | None = None
        if self._ack_pending:
            ack = 0.0 if self._ack_count >= self.ack_every else self._ack_since + self.ack_delay
        data = self._data_timer()
        if ack is None or data is None:
            return data if ack is None else ack
        return min(ack, data)

    def _data_timer(self) -> float | None:
        if not self._unacked:
            return None
        if self._due_from < self._next_seq:
            return 0.0
        if self.reliable:
            return None
        oldest = min(p.last_sent for p in self._unacked.values() if p.last_sent is not None)
        return oldest + self._current_rto

    def handle_timer(self, now: float) -> None:
        """Nothing to do beyond pulling :meth:`records_to_send`; kept for the usual driver shape."""

    def _on_ack(self, ack: int, now: float) -> None:
        if ack > self._next_seq:
            self.stats["malformed"] += 1  # acknowledges what we never sent
            return
        newest: _Pending | None = None
        while self._unacked:
            seq = next(iter(self._unacked))
            if seq >= ack:
                break
            newest = p = self._unacked.pop(seq)
            self._unacked_bytes -= len(p.payload)
            self.stats["acked"] += 1
        if newest is None:
            return
        if newest.sends == 1 and newest.last_sent is not None:  # Karn: unambiguous samples only
            sample = max(0.0, now - newest.last_sent)
            if self.srtt is None:
                self.srtt, self._rttvar = sample, sample / 2
            else:
                self._rttvar = 0.75 * self._rttvar + 0.25 * abs(self.srtt - sample)
                self.srtt = 0.875 * self.srtt + 0.125 * sample
        base = self.rto if self.srtt is None else self.srtt + 4 * self._rttvar
        self._current_rto = min(self.rto_max, max(self.rto, base))

    # -- receiver ---------------------------------------------------------------------------------
    def receive(self, record: bytes, now: float) -> None:
        """Feed one record from the peer (any path).  Bad records are dropped and counted."""
        self._now = now
        record = bytes(record)
        kind = record[0] if record else 0
        if kind == REC_DATA and len(record) >= _DATA.size:
            _, seq, ack = _DATA.unpack_from(record)
            self._on_ack(ack, now)
            self._on_data(seq, record[_DATA.size:])
        elif kind == REC_ACK and len(record) == _ACK.size:
            self._on_ack(_ACK.unpack_from(record)[1], now)
        elif kind == REC_CTRL and len(record) >= 2:
            self._controls.append((record[1], record[2:]))
        else:
            self.stats["malformed"] += 1

    def _on_data(self, seq: int, payload: bytes) -> None:
        self._owe_ack(self._ack_count + 1)
        if seq < self._recv_next or seq in self._held:
            self.stats["duplicate"] += 1
            self._owe_ack(self.ack_every)  # our previous ack was probably lost: answer now
            return
        if seq >= self._recv_next + self.window:
            self.stats["out_of_window"] += 1
            return
        if seq != self._recv_next or len(self._ready) >= self.window:
            # out of order, or the application is not reading: hold it (bounded), unacked
            if self._held_bytes + len(payload) > self.max_bytes:
                self.stats["over_bytes"] += 1
                return
            self._held[seq] = payload
            self._held_bytes += len(payload)
            return
        self._ready.append(payload)
        self._recv_next += 1
        self.stats["delivered"] += 1
        self._release_held()

    def _release_held(self) -> None:
        while self._recv_next in self._held and len(self._ready) < self.window:
            p = self._held.pop(self._recv_next)
            self._held_bytes -= len(p)
            self._ready.append(p)
            self._recv_next += 1
            self.stats["delivered"] += 1

    def next_message(self) -> bytes | None:
        """The next in-order message for the application, or None."""
        if not self._ready:
            return None
        msg = self._ready.popleft()
        if self._held:
            self._release_held()
            self._owe_ack(self.ack_every)  # the window reopened: tell the sender now
        return msg

    def _owe_ack(self, count: int) -> None:
        if not self._ack_pending:
            self._ack_pending = True
            self._ack_since = self._now
        self._ack_count = count

    def next_control(self) -> tuple[int, bytes] | None:
        """The next CTRL record received: ``(type, body)``, or None."""
        return self._controls.popleft() if self._controls else None

    @property
    def expected(self) -> int:
        """The next sequence number the receiver waits for (what it acknowledges)."""
        return self._recv_next
