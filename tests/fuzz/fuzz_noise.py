"""atheris target for the compiled Noise code (csrc/noise via aura_core._noise).

Contract: for any bytes, ``HandshakeState.read_message`` returns a payload or raises
HandshakeError and leaves the state unchanged (the genuine message still completes the
handshake afterwards); datagram ``receive`` returns None (a counted drop) or a payload, and
``open`` raises only DecryptError / ReplayError / DecodeError; stream ``open`` / ``open_batch``
raise only DecryptError / DecodeError; no call crashes, and every session still carries genuine
traffic afterwards.  ``python tests/fuzz/fuzz_noise.py`` fuzzes; ``run_corpus(items)`` drives the
same checks from pytest.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable

import nacl.bindings as nb

from aura_core.errors import DecodeError, DecryptError, HandshakeError, ReplayError
from aura_core.noise import (PROTOCOL_BLAKE2B, PROTOCOL_BLAKE2S, DatagramSession,
                             HandshakeState, StreamSession)

SI, SR, EI, ER, PSK = (bytes([n]) * 32 for n in (1, 2, 3, 4, 5))
PR = nb.crypto_scalarmult_base(SR)


def _pair(protocol: str) -> tuple[HandshakeState, HandshakeState]:
    i = HandshakeState.initiator(protocol, b"fuzz", SI, PR, PSK, e=EI)
    r = HandshakeState.responder(protocol, b"fuzz", SR, PSK, e=ER)
    return i, r


def _done(protocol: str) -> tuple[HandshakeState, HandshakeState]:
    i, r = _pair(protocol)
    r.read_message(i.write_message(b""))
    i.read_message(r.write_message(b""))
    return i, r


class Target:
    """Fixed states the inputs are thrown at (rebuilt only when a genuine message moved one)."""

    def __init__(self) -> None:
        self.protocols = (PROTOCOL_BLAKE2S, PROTOCOL_BLAKE2B)
        self.m1: dict[str, bytes] = {}
        self.m2: dict[str, bytes] = {}
        for p in self.protocols:
            i, r = _pair(p)
            self.m1[p] = i.write_message(b"payload")
            r.read_message(self.m1[p])
            self.m2[p] = r.write_message(b"answer")
        i, r = _done(PROTOCOL_BLAKE2S)
        self.tx = DatagramSession.from_handshake(i, 1, 2, padding=16)
        self.rx = DatagramSession.from_handshake(r, 2, 1, padding=16)
        i, r = _done(PROTOCOL_BLAKE2B)  # one transport per handshake
        self.stx = StreamSession.from_handshake(i)
        self.srx = StreamSession.from_handshake(r)
        self.inputs = 0

    def one_input(self, data: bytes) -> None:
        self.inputs += 1
        for p in self.protocols:
            # responder reading message 1
            _, r = _pair(p)
            before = r.handshake_hash
            try:
                r.read_message(data)
                assert data == self.m1[p]
            except HandshakeError:
                assert r.handshake_hash == before and r.message_index == 0
                assert r.read_message(self.m1[p]) == b"payload"
            # initiator reading message 2
            i, r2 = _pair(p)
            r2.read_message(i.write_message(b"payload"))
            before = i.handshake_hash
            try:
                i.read_message(data)
                assert data == self.m2[p]
            except HandshakeError:
                assert i.handshake_hash == before and not i.complete
        # datagrams: silent path and raising path
        got = self.rx.receive(data)
        assert got is None or isinstance(got, bytes)
        try:
            self.rx.open(data)
        except (DecryptError, ReplayError, DecodeError):
            pass
        out, offs, status = self.rx.open_batch([data, data[:16], data[16:]])
        assert len(offs) == 4 and len(status) == 3 and offs[-1] <= len(out)
        # streams: raising single frame and batch
        for call in (self.srx.open, self.srx.open_batch):
            try:
                call(data)
            except (DecryptError, DecodeError):
                pass
        # genuine traffic still flows
        payload = data[:64]
        assert self.rx.open(self.tx.seal(payload)) == payload
        assert self.srx.open(self.stx.seal(payload)) == payload

    def check_totals(self) -> None:
        st = self.rx.stats
        # every receive/open/open_batch frame was either received or counted as one drop
        assert sum(v for k, v in st.items() if k != "sent") == self.inputs * 6


def seeds() -> list[bytes]:
    t = Target()
    m1 = t.m1[PROTOCOL_BLAKE2S]
    frame = t.tx.seal(b"x" * 40)
    return [b"", b"\x00", m1, m1[:-1], m1 + b"\x00", t.m2[PROTOCOL_BLAKE2S],
            t.m2[PROTOCOL_BLAKE2B], frame, frame[:-1], b"\x04\0\0\0\x02\0\0\0" + bytes(40),
            t.stx.seal(b"s"), b"\x00\x10" + bytes(16), b"\xff\xff" + bytes(100), bytes(65536)]


def run_corpus(items: Iterable[bytes]) -> int:
    t = Target()
    n = 0
    for data in items:
        t.one_input(data)
        n += 1
    t.check_totals()
    return n


def main() -> None:  # pragma: no cover - needs atheris
    import atheris

    atheris.instrument_all()  # Python-side coverage; the C is covered by the sanitizer build
    t = Target()
    atheris.Setup(sys.argv, t.one_input)
    atheris.Fuzz()


if __name__ == "__main__":  # pragma: no cover
    main()
