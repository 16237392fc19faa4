"""Punch engine benchmarks (loopback only): send, receive+validate, validate CPU, 10k targets.

Contenders per group: ``ours`` (aura_core.punch's compiled engine), ``peer`` (the same work in
Python: hashlib BLAKE2b + ``socket.sendto`` / ``recv_into``), ``limit`` (a plain C
``sendmmsg``/``recvmmsg`` loop of the same 76-byte packets, or raw BLAKE2b for the CPU group).

- ``send``: build + tag + send one burst to 256 targets (the kernel bounds all three here).
- ``receive``: a C feeder thread pushes 4,096 distinct valid punches; the receiver reads and
  validates them all (SO_RCVBUF 4 MiB).  The feeder bounds every contender: a ratio near 1 means
  validation keeps up with line rate.
- ``validate``: tag check + sender lookup + replay window in C, no socket (the CPU cost).  The
  limit is the tag alone (one BLAKE2b compression from the cached key state, same vector path);
  libsodium's keyed BLAKE2b (two compressions per tag, as before the cached state) is a peer.
- ``burst to 10k targets``: one engine holding 10,000 peers (each its own key) and targets sends
  a full burst (build + tag + sendmmsg); the burst must fit in the 50 ms punch interval, i.e. the
  rate must stay above 200k punches/s, and within 0.9x of the C limit.  ``bench_deadlines()``
  runs the real loop with 10,000 targets (fixed cadence, receive served between slices) and
  reports bursts due/started/skipped and the worst start lateness.

``bench_cpu()`` gives the send and receive ratios by CPU time per packet (robust to preemption
on a shared box; wall-clock ratios of the groups swing by +-15 % there).

Both send limits and ours make the same syscalls: sendmmsg of 64 messages of 76 bytes each
(the last call of a 10,000 burst: 16).
"""

from __future__ import annotations

import hashlib
import math
import hmac
import os
import socket
import threading
import time

from . import Group

PKT = 76
TARGETS = 256
FEED = 4096


def _udp() -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:  # root may exceed net.core.rmem_max (default ~208 KiB); others get what it allows
        s.setsockopt(socket.SOL_SOCKET, getattr(socket, "SO_RCVBUFFORCE", 33), 4 << 20)
    except OSError:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    s.bind(("127.0.0.1", 0))
    return s


def _py_build(key: bytes, sender: bytes, receiver: bytes, seq: int) -> bytes:
    body = (b"\x00\x11\x00\x38\x21\x12\xa4\x42AURA" + seq.to_bytes(8, "big")
            + b"\xc0\xa5\x00\x34\x01\x00\x00\x00" + sender + receiver)
    return body + hashlib.blake2b(body, digest_size=16, key=key).digest()


def _drain(sock: socket.socket) -> None:
    sock.setblocking(False)
    try:
        while True:
            sock.recv(2048)
    except BlockingIOError:
        pass


def _fed(rx: socket.socket, feeder: socket.socket, packets: bytes, receive):
    """A timed body: empty ``rx``, start a C thread sending ``packets`` to it from ``feeder``,
    run ``receive()`` meanwhile and return its result."""
    from aura_core import _punch

    host, port = rx.getsockname()

    def run():
        _drain(rx)
        t = threading.Thread(target=_punch._bench_send_many,
                             args=(feeder.fileno(), host, port, packets, PKT))
        t.start()
        n = receive()
        t.join()
        return n
    return run


def groups() -> list[Group]:
    from aura_core import _punch
    from aura_core.punch import PunchEngine, punch_key

    me, peer = os.urandom(16), os.urandom(16)
    my_nonce, peer_nonce = os.urandom(32), os.urandom(32)
    my_key, peer_key = punch_key(my_nonce), punch_key(peer_nonce)
    # The send sink keeps a tiny receive buffer, so it is always full and every contender's
    # packets take the same (drop) path in the kernel regardless of the order they run in.
    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sink.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1)
    sink.bind(("127.0.0.1", 0))
    src = _udp()
    host, port = sink.getsockname()

    # --- send ------------------------------------------------------------------------------------
    send = Group("punch", f"send {PKT} B x{TARGETS} targets", "packets/s",
                 goals={"C sendmmsg": 0.9, "Python sendto": 1.0})

    def ours_send():
        engine = PunchEngine(me, my_nonce, [(peer, peer_nonce)])
        engine.set_targets([(peer, (host, port))] * TARGETS)
        fd = src.fileno()
        return lambda: engine.send_burst(fd)

    def limit_send():
        fd = src.fileno()
        return lambda: _punch._bench_sendmmsg(fd, host, port, PKT, TARGETS)

    def peer_send():
        seq = [0]
        dest = (host, port)

        def run() -> int:
            for _ in range(TARGETS):
                src.sendto(_py_build(peer_key, me, peer, seq[0]), dest)
                seq[0] += 1
            return TARGETS
        return run

    send.add("aura_core", "ours", ours_send)
    send.add("C sendmmsg", "limit", limit_send)
    send.add("Python sendto", "peer", peer_send)

    # --- receive + validate ---------------------------------------------------------------------
    recv = Group("punch", f"receive+validate {PKT} B", "packets/s",
                 goals={"C recvmmsg": 0.9, "Python recv_into": 1.0})
    rx = _udp()
    feeder = _udp()
    packets = b"".join(_punch.build(my_key, peer, me, i) for i in range(FEED))

    def fed(receive):
        return _fed(rx, feeder, packets, receive)

    def ours_recv():
        def receive() -> int:
            engine = PunchEngine(me, my_nonce, [(peer, peer_nonce)], auto_ack=False)
            engine.run(rx.fileno(), send=False, timeout=0.5, stop_after=FEED, max_events=1)
            return engine.stats()["ok"]
        return fed(receive)

    def limit_recv():
        return fed(lambda: _punch._bench_recvmmsg(rx.fileno(), PKT + 1, FEED, 0.5))

    def peer_recv():
        buf = bytearray(2048)
        view = memoryview(buf)

        def receive() -> int:
            rx.setblocking(True)
            rx.settimeout(0.5)
            ok = 0
            try:
                for _ in range(FEED):
                    n = rx.recv_into(buf)
                    if n == PKT and buf[44:60] == me:
                        tag = hashlib.blake2b(view[:60], digest_size=16, key=my_key).digest()
                        ok += hmac.compare_digest(tag, view[60:76])
            except TimeoutError:
                pass
            return ok
        return fed(receive)

    recv.add("aura_core", "ours", ours_recv)
    recv.add("C recvmmsg", "limit", limit_recv)
    recv.add("Python recv_into", "peer", peer_recv)

    # --- validate (CPU) -------------------------------------------------------------------------
    val = Group("punch", "validate (no socket)", "packets/s",
                goals={"libsodium keyed BLAKE2b-128": 1.0,
                       "Python hashlib": 1.0})
    pkt = _punch.build(my_key, peer, me, 1)

    def ours_val():
        engine = _punch.Engine(me, my_key, [(peer, peer_key)], False)
        return lambda: engine._bench_accept(pkt, 10000)

    def py_val():
        def run() -> int:
            for _ in range(1000):
                if pkt[44:60] == me:
                    hmac.compare_digest(
                        hashlib.blake2b(pkt[:60], digest_size=16, key=my_key).digest(), pkt[60:])
            return 1000
        return run

    val.add("aura_core", "ours", ours_val)
    val.add("tag only (cached key state)", "limit",
            lambda: (lambda: _punch._bench_tag(pkt, my_key, 10000)))
    val.add("libsodium keyed BLAKE2b-128", "peer",
            lambda: (lambda: _punch._bench_blake2b(pkt, my_key, 10000)))
    val.add("Python hashlib", "peer", py_val)

    # --- 10,000 concurrent targets --------------------------------------------------------------
    big = Group("punch", "burst to 10k targets", "punches/s", goals={"C sendmmsg": 0.9})
    n_targets = 10_000

    def ours_big():
        peers = [(os.urandom(16), os.urandom(32)) for _ in range(n_targets)]
        engine = PunchEngine(me, my_nonce, peers)
        engine.set_targets((p, (host, port)) for p, _ in peers)
        fd = src.fileno()
        return lambda: engine.send_burst(fd)

    def limit_big():
        fd = src.fileno()
        return lambda: _punch._bench_sendmmsg(fd, host, port, PKT, n_targets)

    big.add("aura_core", "ours", ours_big)
    big.add("C sendmmsg", "limit", limit_big)
    return [send, recv, val, big]


def bench_deadlines(targets: int = 10_000, interval: float = 0.05, duration: float = 1.0) -> dict:
    """Run the real punch loop with ``targets`` targets on loopback while a feeder sends it valid
    punches: bursts due vs started/skipped, worst start lateness, punches accepted meanwhile."""
    from aura_core import _punch
    from aura_core.punch import PunchEngine, punch_key

    sink, src, feeder = _udp(), _udp(), _udp()
    try:
        me, nonce, fid, fnonce = os.urandom(16), os.urandom(32), os.urandom(16), os.urandom(32)
        peers = [(os.urandom(16), os.urandom(32)) for _ in range(targets - 1)] + [(fid, fnonce)]
        engine = PunchEngine(me, nonce, peers, auto_ack=False)
        engine.set_targets((p, sink.getsockname()) for p, _ in peers)
        incoming = b"".join(_punch.build(punch_key(nonce), fid, me, i) for i in range(2000))
        host, port = src.getsockname()

        fed_at: list[int] = []  # CLOCK_MONOTONIC ns, the clock the C loop reads

        def feed() -> None:  # 2,000 punches spread over the run, in sendmmsg bursts of 100
            for k in range(20):
                threading.Event().wait(duration / 25)
                fed_at.append(time.monotonic_ns())
                _punch._bench_send_many(feeder.fileno(), host, port,
                                        incoming[k * 100 * PKT:(k + 1) * 100 * PKT], PKT)
        t = threading.Thread(target=feed)
        t.start()
        events = engine.run(src.fileno(), send=True, interval=interval, timeout=duration,
                            stop_after=0, max_events=2000)
        t.join()
        # how long an incoming punch waited (from its batch's send to its acceptance)
        st = engine.stats()
        delays = sorted((st["run_start_ns"] + ev.elapsed * 1e9 - fed_at[ev.seq // 100]) / 1e9
                        for ev in events if ev.seq // 100 < len(fed_at))
        due = math.ceil(duration / interval - 1e-9)  # bursts at 0, interval, ... < duration
        return {"targets": targets, "bursts_due": due, "bursts_started": st["bursts"],
                "bursts_skipped": st["bursts_missed"],
                "bursts_completed": st["sent"] // targets,
                "max_late_ms": round(st["max_late_ns"] / 1e6, 3),
                "punches_accepted": st["ok"],
                "rx_delay_ms_median": round(delays[len(delays) // 2] * 1e3, 3) if delays else None,
                "rx_delay_ms_max": round(delays[-1] * 1e3, 3) if delays else None}
    finally:
        sink.close()
        src.close()
        feeder.close()


def bench_cpu(rounds: int = 30) -> dict:
    """Send and receive ratios by CPU time of the calling thread (``time.thread_time_ns``),
    ours vs the C limit, interleaved: on a shared, oversubscribed box wall-clock rates swing
    with preemption, CPU time per packet does not.  Same syscalls as the groups above."""
    import statistics

    from aura_core import _punch
    from aura_core.punch import PunchEngine, punch_key

    out: dict = {}
    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sink.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1)
    sink.bind(("127.0.0.1", 0))
    src, rx, feeder = _udp(), _udp(), _udp()
    try:
        host, port = sink.getsockname()
        fd = src.fileno()

        def ratio(ours, limit, per: int) -> float:
            cpu: dict[str, list[float]] = {"ours": [], "limit": []}
            for r in range(rounds):
                pair = [("ours", ours), ("limit", limit)]
                for name, fn in pair if r % 2 else pair[::-1]:
                    t0 = time.thread_time_ns()
                    fn()
                    cpu[name].append((time.thread_time_ns() - t0) / per)
            return round(statistics.median(cpu["limit"]) / statistics.median(cpu["ours"]), 3)

        for n in (TARGETS, 10_000):
            peers = [(os.urandom(16), os.urandom(32)) for _ in range(n if n > TARGETS else 1)]
            engine = PunchEngine(os.urandom(16), os.urandom(32), peers)
            engine.set_targets((peers[i % len(peers)][0], (host, port)) for i in range(n))
            reps = max(1, 100_000 // n)

            def ours_send(engine=engine, reps=reps) -> None:
                for _ in range(reps):
                    engine.send_burst(fd)

            def limit_send(n=n, reps=reps) -> None:
                for _ in range(reps):
                    _punch._bench_sendmmsg(fd, host, port, PKT, n)

            out[f"send x{n}"] = ratio(ours_send, limit_send, reps * n)

        me, peer, mn, pn = os.urandom(16), os.urandom(16), os.urandom(32), os.urandom(32)
        packets = b"".join(_punch.build(punch_key(mn), peer, me, i) for i in range(FEED))

        def fed(receive):
            return _fed(rx, feeder, packets, receive)

        def ours_recv() -> None:
            engine = PunchEngine(me, mn, [(peer, pn)], auto_ack=False)
            engine.run(rx.fileno(), send=False, timeout=0.5, stop_after=FEED, max_events=1)

        out["receive+validate"] = ratio(
            fed(ours_recv), fed(lambda: _punch._bench_recvmmsg(rx.fileno(), PKT + 1, FEED, 0.5)),
            FEED)
        return out
    finally:
        for s in (sink, src, rx, feeder):
            s.close()
