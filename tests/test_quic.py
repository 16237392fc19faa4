"""Direct QUIC on the punched socket: demultiplexing, framing, punch + QUIC on loopback."""

from __future__ import annotations

import asyncio
import os
import random
import socket

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aura_core.asyncio.quic import DirectEndpoint, FrameDecoder, classify, frame
from aura_core.errors import TransportError, UsageError
from aura_core.punch import PunchEngine, build_punch

pytestmark = pytest.mark.native  # the punch engine is compiled


def test_classify_first_byte_rules():
    punch = build_punch(os.urandom(32), b"a" * 16, b"b" * 16, 1)
    assert classify(punch) == "punch"
    stun = b"\x00\x01\x00\x00" + b"\x21\x12\xa4\x42" + b"\0" * 12  # Binding request, no attrs
    assert classify(stun) == "stun"
    assert classify(b"\x00\x01\x00\x00" + b"XXXX" + b"\0" * 12) == "other"  # no magic cookie
    for b in (0x40, 0x5A, 0x7F, 0xC0, 0xC3, 0xFF):
        assert classify(bytes([b]) + b"\0" * 30) == "quic"
    for b in (0x80, 0xBF, 0x01):  # 0x80-0xBF are neither (RFC 9443 gives them to others)
        assert classify(bytes([b]) + b"\0" * 30) == "other"
    assert classify(b"") == "other"


@settings(max_examples=100, deadline=None)
@given(st.lists(st.binary(min_size=1, max_size=300), max_size=20), st.integers(1, 50))
def test_frame_decoder_any_split(frames, chunk):
    data = b"".join(frame(f) for f in frames)
    dec = FrameDecoder()
    got = []
    for i in range(0, len(data), chunk):
        got += dec.feed(data[i:i + chunk])
    assert got == frames and dec.buffered == 0


def test_frame_bounds():
    with pytest.raises(UsageError):
        frame(b"")
    with pytest.raises(UsageError):
        frame(b"\0" * 65536)
    assert FrameDecoder().feed(b"\0\0" + frame(b"x")) == [b"x"]


def _pair():
    ida, idb = os.urandom(16), os.urandom(16)
    na, nb = os.urandom(32), os.urandom(32)
    ea = PunchEngine(ida, na, [(idb, nb)])
    eb = PunchEngine(idb, nb, [(ida, na)])
    return ida, idb, ea, eb


async def _punched_quic(timeout=5.0):
    ida, idb, ea, eb = _pair()
    a = await DirectEndpoint.bind(ea)
    b = await DirectEndpoint.bind(eb)
    oa, ob = await asyncio.wait_for(asyncio.gather(
        a.punch(idb, [b.local_address], window=3.0),
        b.punch(ida, [a.local_address], window=3.0)), timeout)
    return ida, idb, a, b, oa, ob


def test_punch_then_quic_frames_both_ways():
    async def main():
        ida, idb, a, b, oa, ob = await _punched_quic()
        try:
            assert oa.direct and ob.direct
            assert oa.path == b.local_address and ob.path == a.local_address
            server_task = asyncio.create_task(b.accept(ida, timeout=5.0))
            pa = await a.connect(idb, oa.path, timeout=5.0)
            pb = await server_task
            got_a, got_b = [], []
            pa.on_frame, pb.on_frame = got_a.append, got_b.append
            msgs = [random.Random(i).randbytes(i * 37 % 1500 + 1) for i in range(200)]
            for m in msgs:
                pa.send_frame(m)
            pb.send_frame(b"before the stream exists")  # server side: held until stream 0 opens
            for _ in range(500):
                if len(got_b) == len(msgs) and got_a:
                    break
                await asyncio.sleep(0.01)
            assert got_b == msgs and got_a == [b"before the stream exists"]
            for m in msgs:
                pb.send_frame(m)
            for _ in range(500):
                if len(got_a) == len(msgs) + 1:
                    break
                await asyncio.sleep(0.01)
            assert got_a[1:] == msgs
            assert a.stats["quic"] > 0 and b.stats["quic"] > 0
            pa.close("done")
            reason = await asyncio.wait_for(pb.closed, 5.0)
            assert reason == "done" and not pb.is_open
            with pytest.raises(TransportError):
                pa.send_frame(b"x")
        finally:
            a.close()
            b.close()

    asyncio.run(main())


def test_quic_from_unpunched_address_is_dropped():
    async def main():
        ida, idb, ea, eb = _pair()
        b = await DirectEndpoint.bind(eb)
        stranger = await DirectEndpoint.bind(PunchEngine(os.urandom(16), os.urandom(32), []))
        try:
            accept = asyncio.create_task(b.accept(ida, timeout=1.0))
            with pytest.raises(TransportError):
                await stranger.connect(ida, b.local_address, timeout=1.0)
            with pytest.raises(TransportError):
                await accept
            assert b.stats["quic_unknown"] > 0
        finally:
            b.close()
            stranger.close()

    asyncio.run(main())


def test_spoofed_punch_and_noise_are_counted_drops():
    async def main():
        ida, idb, ea, eb = _pair()
        b = await DirectEndpoint.bind(eb)
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            forged = build_punch(os.urandom(32), ida, idb, 5)  # wrong key
            s.sendto(forged, b.local_address)
            s.sendto(b"\x99garbage", b.local_address)
            s.sendto(b"\x00\x01\x00\x00\x21\x12\xa4\x42" + b"\0" * 12, b.local_address)
            for _ in range(200):
                if b.stats["punch_bad"] and b.stats["other"] and b.stats["stun"]:
                    break
                await asyncio.sleep(0.01)
            assert b.stats["punch_bad"] == 1 and b.stats["other"] == 1 and b.stats["stun"] == 1
            assert b.stats["punch_ok"] == 0
        finally:
            s.close()
            b.close()

    asyncio.run(main())


def test_punch_without_answer_fails_within_window():
    async def main():
        ida, idb, ea, eb = _pair()
        a = await DirectEndpoint.bind(ea)
        dead = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        dead.bind(("127.0.0.1", 0))
        try:
            out = await asyncio.wait_for(a.punch(idb, [dead.getsockname()], window=0.3), 5.0)
            assert not out.direct and out.path is None
            with pytest.raises(UsageError):
                t = asyncio.create_task(a.punch(idb, [], window=0.2))
                await asyncio.sleep(0)
                await a.punch(idb, [], window=0.2)
            await t
        finally:
            dead.close()
            a.close()

    asyncio.run(main())


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=80))
def test_classify_total(data):
    assert classify(data) in ("quic", "punch", "stun", "other")


def test_stun_through_the_shared_socket():
    from aura_core.stun import BindingSucceeded, build_binding_response, parse_message

    async def main():
        ida, idb, ea, eb = _pair()
        a = await DirectEndpoint.bind(ea)
        server = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        server.bind(("127.0.0.1", 0))
        server.setblocking(False)
        loop = asyncio.get_running_loop()

        async def serve_one():
            data, addr = await loop.sock_recvfrom(server, 2048)
            txid = parse_message(data).txid
            server.sendto(b"\x99not stun", addr)  # demux: dropped, the answer still arrives
            server.sendto(build_binding_response(txid, ("198.51.100.7", 40000)), addr)

        try:
            task = asyncio.create_task(serve_one())
            events = await asyncio.wait_for(a.stun([server.getsockname()]), 10)
            await task
            assert len(events) == 1 and isinstance(events[0], BindingSucceeded)
            assert events[0].result.mapped == ("198.51.100.7", 40000)
            assert a.on_stun is None and a.stats["stun"] == 1 and a.stats["other"] == 1
        finally:
            server.close()
            a.close()

    asyncio.run(main())
