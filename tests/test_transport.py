"""PathSwitcher: exactly-once, in-order delivery over lossy, duplicating, reordering paths,
pumped in memory (no sockets, no clock)."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aura_core.errors import InvalidValue, UsageError
from aura_core.transport import (MAX_PAYLOAD, REC_ACK, REC_CTRL, REC_DATA, PathSwitcher,
                                 encode_ack, encode_ctrl, encode_data)


class Net:
    """Two lossy paths (think relay and direct) between a and b, with a virtual clock.

    Each path drops, duplicates and delays records; the 'active' path switches at given steps
    and the switcher is told (path_changed), as the connection driver does."""

    def __init__(self, rng: random.Random, loss: float, dup: float, jitter: int) -> None:
        self.rng, self.loss, self.dup, self.jitter = rng, loss, dup, jitter
        self.flight: list[tuple[int, str, bytes]] = []  # (arrival step, to, record)
        self.step = 0

    def put(self, to: str, record: bytes, path_delay: int) -> None:
        if self.rng.random() < self.loss:
            return
        copies = 2 if self.rng.random() < self.dup else 1
        for _ in range(copies):
            self.flight.append((self.step + path_delay + self.rng.randrange(self.jitter + 1), to, record))

    def due(self) -> list[tuple[str, bytes]]:
        now = [(t, r) for s, t, r in self.flight if s <= self.step]
        self.flight = [f for f in self.flight if f[0] > self.step]
        self.rng.shuffle(now)
        return now


def pump(a: PathSwitcher, b: PathSwitcher, messages: list[bytes], rng: random.Random, *,
         loss=0.2, dup=0.1, jitter=5, switches=(), max_steps=20000) -> tuple[list[bytes], list[bytes]]:
    net = Net(rng, loss, dup, jitter)
    got_b: list[bytes] = []
    got_a: list[bytes] = []
    to_send_a = list(messages)
    to_send_b = [m[::-1] for m in messages]  # b talks back at the same time
    delay = 1
    step_dt = 0.05
    for step in range(max_steps):
        net.step = step
        now = step * step_dt
        if step in switches:
            delay = rng.choice([0, 1, 8])  # the new path has another latency
            a.path_changed(now, reliable=loss == 0.0)  # a lossless path needs no timer
            b.path_changed(now, reliable=loss == 0.0)
        while to_send_a and a.can_send(len(to_send_a[0])):
            a.send(to_send_a.pop(0), now)
        while to_send_b and b.can_send(len(to_send_b[0])):
            b.send(to_send_b.pop(0), now)
        for rec in a.records_to_send(now):
            net.put("b", rec, delay)
        for rec in b.records_to_send(now):
            net.put("a", rec, delay)
        for to, rec in net.due():
            (b if to == "b" else a).receive(rec, now)
        while (m := b.next_message()) is not None:
            got_b.append(m)
        while (m := a.next_message()) is not None:
            got_a.append(m)
        if (not to_send_a and not to_send_b and len(got_b) == len(messages)
                and len(got_a) == len(messages) and a.unacked == 0 and b.unacked == 0):
            break
    return got_a, got_b


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(0, 300),
       loss=st.sampled_from([0.0, 0.1, 0.4]), dup=st.sampled_from([0.0, 0.3]),
       jitter=st.integers(0, 12), switches=st.lists(st.integers(0, 400), max_size=6))
def test_exactly_once_in_order_across_switches(seed, n, loss, dup, jitter, switches):
    rng = random.Random(seed)
    msgs = [i.to_bytes(4, "big") + rng.randbytes(rng.randrange(0, 40)) for i in range(n)]
    a, b = PathSwitcher(window=32), PathSwitcher(window=32)
    got_a, got_b = pump(a, b, msgs, rng, loss=loss, dup=dup, jitter=jitter, switches=set(switches))
    assert got_b == msgs  # nothing lost, duplicated or reordered
    assert got_a == [m[::-1] for m in msgs]
    assert a.unacked == 0 and b.unacked == 0
    assert a.stats["delivered"] == b.stats["delivered"] == n


def test_duplicates_and_reordering_counted_not_delivered_twice():
    r = PathSwitcher(window=8)
    r.receive(encode_data(1, 0, b"one"), 0.0)
    assert r.next_message() is None  # held until 0 arrives
    r.receive(encode_data(1, 0, b"one"), 0.0)
    r.receive(encode_data(0, 0, b"zero"), 0.0)
    r.receive(encode_data(0, 0, b"zero"), 0.0)
    assert [r.next_message(), r.next_message(), r.next_message()] == [b"zero", b"one", None]
    assert r.stats["duplicate"] == 2 and r.expected == 2
    r.receive(encode_data(2 + 8, 0, b"far"), 0.0)  # beyond the reorder window
    assert r.stats["out_of_window"] == 1
    # acks owed even for duplicates, as a bare ACK when no data goes out
    assert r.records_to_send(0.0) == [encode_ack(2)]
    assert r.records_to_send(0.0) == []


def test_retransmission_backoff_and_path_change():
    s = PathSwitcher(rto=1.0, rto_max=4.0)
    s.send(b"x", 0.0)
    assert s.records_to_send(0.0) == [encode_data(0, 0, b"x")]
    assert s.records_to_send(0.5) == []
    assert s.get_timer() == 1.0
    assert s.records_to_send(1.0) == [encode_data(0, 0, b"x")]  # retransmitted
    assert s.get_timer() == 3.0  # backed off to 2 s
    s.path_changed(1.5)
    assert s.records_to_send(1.5) == [encode_data(0, 0, b"x")]  # at once on the new path
    s.receive(encode_ack(1), 1.6)
    assert s.unacked == 0 and s.get_timer() is None and s.idle
    assert s.stats["retransmitted"] == 2 and s.stats["acked"] == 1


def test_bounded_send_buffer_and_bad_input():
    s = PathSwitcher(window=2)
    s.send(b"a", 0.0)
    s.send(b"b", 0.0)
    assert not s.can_send()
    with pytest.raises(UsageError):
        s.send(b"c", 0.0)
    with pytest.raises(InvalidValue):
        PathSwitcher().send(b"\0" * (MAX_PAYLOAD + 1), 0.0)
    with pytest.raises(InvalidValue):
        PathSwitcher(window=0)
    # acks for data never sent and garbage records are counted drops
    s.receive(encode_ack(99), 0.0)
    for bad in (b"", b"\x01short", bytes([REC_ACK]) + b"\0" * 3, b"\x7f" + b"\0" * 20, b"\x03"):
        s.receive(bad, 0.0)
    assert s.stats["malformed"] == 6 and s.unacked == 2
    s.receive(encode_ack(1), 0.0)
    assert s.can_send() and s.unacked == 1


def test_receive_byte_bound():
    r = PathSwitcher(window=64, max_bytes=MAX_PAYLOAD)
    big = b"\0" * (MAX_PAYLOAD // 2 + 1)
    r.receive(encode_data(1, 0, big), 0.0)
    r.receive(encode_data(2, 0, big), 0.0)  # would exceed the reorder byte budget
    assert r.stats["over_bytes"] == 1
    r.receive(encode_data(0, 0, big), 0.0)  # the expected one is always accepted
    assert r.expected == 2


def test_control_records_pass_through():
    r = PathSwitcher()
    r.receive(encode_ctrl(7, b"body"), 0.0)
    assert r.next_control() == (7, b"body") and r.next_control() is None
    assert encode_ctrl(1)[0] == REC_CTRL and encode_data(0, 0, b"")[0] == REC_DATA
    with pytest.raises(InvalidValue):
        encode_ctrl(256)


def test_receiver_flow_control_when_application_does_not_read():
    r = PathSwitcher(window=4)
    for seq in range(6):
        r.receive(encode_data(seq, 0, bytes([seq])), 0.0)
    assert r.expected == 4  # four delivered and acknowledged; the rest held, unacknowledged
    assert r.records_to_send(0.0) == [encode_ack(4)]
    assert r.next_message() == b"\x00"  # reading makes room: held data moves up
    assert r.expected == 5 and r.records_to_send(0.0) == [encode_ack(5)]
    assert [r.next_message() for _ in range(6)] == [bytes([i]) for i in range(1, 6)] + [None]
    assert r.expected == 6


def test_rto_follows_measured_rtt_and_reliable_paths_never_time_out():
    s = PathSwitcher(rto=0.1, rto_max=5.0)
    for i in range(20):  # a path with a steady 0.5 s round trip
        s.send(b"m", float(i))
        s.records_to_send(float(i))
        s.receive(encode_ack(i + 1), i + 0.5)
    assert abs(s.srtt - 0.5) < 0.05 and s.get_timer() is None  # all acknowledged
    s.send(b"late", 100.0)
    s.records_to_send(100.0)
    assert 100.5 <= s.get_timer() < 101.0  # srtt + 4 rttvar, not the 0.1 s floor
    # a reliable path (QUIC stream): no timer retransmission however long the ack takes
    s.path_changed(200.0, reliable=True)
    assert s.records_to_send(200.0) == [encode_data(20, 0, b"late")]
    assert s.get_timer() is None and s.records_to_send(1000.0) == []
    # back on a lossy path: due again at once, then by timer
    s.path_changed(1000.0)
    assert len(s.records_to_send(1000.0)) == 1 and s.get_timer() == 1000.1


def test_delayed_acks():
    r = PathSwitcher(window=256, ack_every=16, ack_delay=0.01)
    for seq in range(5):
        r.receive(encode_data(seq, 0, b"x"), 1.0)
    assert r.records_to_send(1.0) == [] and r.get_timer() == 1.01
    assert r.records_to_send(1.01) == [encode_ack(5)] and r.get_timer() is None
    for seq in range(5, 21):  # ack_every reached: at once
        r.receive(encode_data(seq, 0, b"x"), 2.0)
    assert r.get_timer() == 0.0 and r.records_to_send(2.0) == [encode_ack(21)]
    r.receive(encode_data(3, 0, b"x"), 3.0)  # a duplicate: our ack was lost, answer now
    assert r.records_to_send(3.0) == [encode_ack(21)]
    r.send(b"reply", 4.0)
    r.receive(encode_data(21, 0, b"x"), 4.0)
    assert r.records_to_send(4.0) == [encode_data(0, 22, b"reply")]  # piggybacked, no bare ACK
    # nothing else owed: a second later only the (unacknowledged) reply goes again
    assert r.records_to_send(5.0) == [encode_data(0, 22, b"reply")]
    assert r.stats["retransmitted"] == 1


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(max_size=40), max_size=30))
def test_receive_never_raises_on_arbitrary_records(records):
    """The contract for peer bytes: accepted, or a counted drop — never an exception."""
    r = PathSwitcher(window=8)
    r.send(b"ours", 0.0)
    for i, rec in enumerate(records):
        r.receive(rec, float(i))
        r.records_to_send(float(i))
        while r.next_message() is not None:
            pass
        while r.next_control() is not None:
            pass
    assert r.unacked <= 1 and len(r._held) <= 8
