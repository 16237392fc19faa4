"""Authenticated UDP hole punching (SPEC §3.4; wire format in docs/wire.md "Punch packets").

A punch packet is a 76-byte STUN Binding indication with one private comprehension-optional
attribute (AURA-PUNCH, 0xC0A5) carrying version, flags, sender and receiver authority ids, and a
16-byte tag.  The sequence number sits in the STUN transaction id.  Packets are tagged under the
*receiver's* punch key, ``punch_key(receiver_descriptor.punch_nonce)``, so one engine checks every
incoming punch with its own key; forged, misaddressed and replayed punches are dropped and counted
in C (:meth:`PunchEngine.stats`), never surfaced.

The engine works on a socket's file descriptor (an int) so this module stays free of I/O imports;
:mod:`aura_core.asyncio.punch` drives it over a real socket.  :meth:`PunchEngine.run` blocks
with the GIL released until its timeout: drivers call it from a worker thread.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final, Literal

from . import _punch
from .errors import InvalidValue
from .hashing import LABEL_PUNCH_KEY, kdf

__all__ = [
    "PACKET_LEN",
    "PUNCH_ATTR",
    "FLAG_ACK",
    "Verdict",
    "PunchEvent",
    "PunchEngine",
    "punch_key",
    "build_punch",
    "check_punch",
    "is_punch",
]

PACKET_LEN: Final = _punch.PACKET_LEN
PUNCH_ATTR: Final = 0xC0A5
FLAG_ACK: Final = 0x01
_COOKIE: Final = b"\x21\x12\xa4\x42"

Verdict = Literal["ok", "not_punch", "malformed", "wrong_receiver", "bad_tag", "unknown_sender",
                  "replayed"]
Address = tuple[str, int]


def punch_key(punch_nonce: bytes) -> bytes:
    """The 32-byte key tagging punches *to* the holder of the descriptor with this nonce."""
    nonce = bytes(punch_nonce)
    if len(nonce) != 32:
        raise InvalidValue("punch_nonce is 32 bytes")
    return kdf(nonce, LABEL_PUNCH_KEY)


def build_punch(receiver_punch_nonce: bytes, sender: bytes, receiver: bytes, seq: int,
                *, ack: bool = False) -> bytes:
    """One punch packet from ``sender`` to ``receiver`` (ids are 16 bytes)."""
    if not 0 <= seq < 1 << 64:
        raise InvalidValue("seq is an unsigned 64-bit integer")
    return _punch.build(punch_key(receiver_punch_nonce), bytes(sender), bytes(receiver), seq,
                        FLAG_ACK if ack else 0)


def check_punch(data: bytes, local_punch_nonce: bytes, local_id: bytes
                ) -> tuple[Verdict, tuple[bytes, int, bool] | None]:
    """Stateless check of one datagram: ``(verdict, (sender, seq, ack) | None)``.

    No replay state: use a :class:`PunchEngine` for that.
    """
    verdict, fields = _punch.check(bytes(data), punch_key(local_punch_nonce), bytes(local_id))
    if fields is None:
        return verdict, None  # type: ignore[return-value]
    sender, _receiver, seq, flags = fields
    return "ok", (sender, seq, bool(flags & FLAG_ACK))


def is_punch(data: bytes) -> bool:
    """Cheap demultiplexing test: does this datagram carry the AURA-PUNCH attribute?"""
    return (len(data) >= 24 and data[0] < 0x40 and data[4:8] == _COOKIE
            and data[20:22] == b"\xc0\xa5")


@dataclass(frozen=True, slots=True)
class PunchEvent:
    """An authenticated punch: ``peer`` sent sequence ``seq``; ``source`` is the address it
    actually came from (peer-reflexive: may differ from every advertised candidate)."""

    peer: bytes
    seq: int
    ack: bool
    source: Address
    elapsed: float  # seconds since the run started


class PunchEngine:
    """Punch state for one local authority: its key, the peers it punches, their candidates.

    ``peers`` are ``(authority_id, punch_nonce)`` from their descriptors.  With ``auto_ack``
    (default) every accepted punch is answered at once, from C, with an ack punch sent to the
    address it came from, so the far side learns the path works in both directions.
    """

    def __init__(self, local_id: bytes, punch_nonce: bytes,
                 peers: Iterable[tuple[bytes, bytes]], *, auto_ack: bool = True) -> None:
        self.local_id = bytes(local_id)
        self._engine = _punch.Engine(self.local_id, punch_key(punch_nonce),
                                     [(bytes(i), punch_key(n)) for i, n in peers], auto_ack)

    @property
    def peer_ids(self) -> list[bytes]:
        return self._engine.peer_ids

    def set_targets(self, targets: Iterable[tuple[bytes, Address]]) -> None:
        """Replace the candidate pairs: ``(peer_id, (host, port))``."""
        self._engine.set_targets((bytes(p), a[0], a[1]) for p, a in targets)

    @property
    def target_count(self) -> int:
        return self._engine.target_count

    def send_burst(self, fd: int, *, ack: bool = False) -> int:
        """One punch to every target now; returns how many were sent."""
        return self._engine.send_burst(fd, ack)

    def run(self, fd: int, *, send: bool = True, interval: float = 0.05, timeout: float = 1.0,
            stop_after: int = 1, max_events: int = 64) -> list[PunchEvent]:
        """Punch every ``interval`` s and collect authenticated punches until ``timeout`` s or
        ``stop_after`` of them (0: run to the timeout); returns the first ``max_events`` (all are
        counted in ``stats()["ok"]``).  Blocks without the GIL.  Bursts keep a fixed cadence
        from the start and go out in slices of 256 targets with the socket read in between, so
        a large burst never holds incoming punches back for its whole length."""
        if stop_after < 0 or max_events < 0:
            raise InvalidValue("stop_after and max_events are >= 0")
        return [PunchEvent(p, seq, bool(flags & FLAG_ACK), src, t)
                for p, flags, seq, src, t in self._engine.run(
                    fd, send=send, interval=interval, timeout=timeout, stop_after=stop_after,
                    max_events=max_events)]

    def accept(self, data: bytes) -> tuple[Verdict, PunchEvent | None]:
        """Validate one datagram read elsewhere (replay window applies; counted)."""
        verdict, fields = self._engine.accept(bytes(data))
        if fields is None:
            return verdict, None  # type: ignore[return-value]
        peer, seq, flags = fields
        return "ok", PunchEvent(peer, seq, bool(flags & FLAG_ACK), ("", 0), 0.0)

    def answer(self, data: bytes) -> tuple[Verdict, PunchEvent | None, bytes | None]:
        """For a receive loop that owns the socket after the punch (Noise session, QUIC demux):
        validate a datagram that :func:`is_punch` flagged and get the ack to send back to its
        source, so a peer still punching learns the path works.  ``(verdict, event, ack)``."""
        verdict, fields, ack = self._engine.accept_and_ack(bytes(data))
        if fields is None:
            return verdict, None, None  # type: ignore[return-value]
        peer, seq, flags = fields
        return "ok", PunchEvent(peer, seq, bool(flags & FLAG_ACK), ("", 0), 0.0), ack

    def stats(self) -> dict[str, int]:
        """Counters: datagrams seen, verdicts (ok, bad_tag, replayed...), sent, acks, errors;
        from :meth:`run`: ``bursts`` started, ``bursts_missed`` (due bursts skipped for being a
        whole interval late), ``max_late_ns`` (worst burst start lateness), ``run_start_ns``."""
        return self._engine.stats()
