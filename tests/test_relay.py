"""Relay node: the sans-I/O core (auth, forwarding rules, budgets, bounds) and the WebSocket server."""

from __future__ import annotations

import asyncio

import pytest

from aura_core import AuthorityId, ContextId, IdentityKey
from aura_core.errors import AuthorizationError, UsageError
from aura_core.relay import (
    ERR_AUTH, MsgType, RelayConfig, RelayCore, auth_transcript, decode_deliver, encode_auth,
    encode_send, parse_challenge, static_authorizer,
)

TOKEN = b"relay-token"
CTX = ContextId(b"\x01" * 16)
OTHER_CTX = ContextId(b"\x02" * 16)
A = IdentityKey.from_seed(b"\xa1" * 32)
B = IdentityKey.from_seed(b"\xb2" * 32)
C = IdentityKey.from_seed(b"\xc3" * 32)


def _core(**cfg):
    grants = {A.authority_id: [CTX], B.authority_id: [CTX], C.authority_id: [OTHER_CTX]}
    seen = []
    core = RelayCore(static_authorizer(grants, TOKEN), config=RelayConfig(**cfg),
                     observer=lambda ctx, src, dst, frame, now: seen.append((ctx, src, dst, len(frame) - 33)),
                     rand=lambda n: bytes(n))
    return core, seen


def _join(core, conn_id, key, now=0.0, token=TOKEN):
    nonce = parse_challenge(core.connect(conn_id, now))
    wake, reply = core.receive(conn_id, encode_auth(key, nonce, token), now)
    return reply


def test_auth_welcomes_the_key_holder_only():
    core, _ = _core()
    assert _join(core, 1, A) == MsgType.WELCOME.value + bytes(A.authority_id)
    assert core.authority_of(1) == A.authority_id
    # wrong token, unknown authority, forged signature: generic refusal
    assert _join(core, 2, A, token=b"nope")[:2] == MsgType.ERROR.value + bytes([ERR_AUTH])
    assert _join(core, 3, IdentityKey.from_seed(b"\x09" * 32))[:2] == MsgType.ERROR.value + bytes([ERR_AUTH])
    nonce = parse_challenge(core.connect(4, 0.0))
    forged = bytearray(encode_auth(B, nonce, TOKEN))
    forged[40] ^= 1  # inside the signature
    assert core.receive(4, bytes(forged), 0.0)[1][:2] == MsgType.ERROR.value + bytes([ERR_AUTH])
    # an AUTH answering another connection's challenge is useless (nonces differ)
    core2 = RelayCore(static_authorizer({A.authority_id: [CTX]}, TOKEN), rand=lambda n: b"\x07" * n)
    nonce2 = parse_challenge(core2.connect(1, 0.0))
    assert nonce2 != nonce
    assert core2.receive(1, encode_auth(A, nonce, TOKEN), 0.0)[1][:1] == MsgType.ERROR.value
    assert core.metrics.auth_failures == 3
    assert b"authorization failed" in _join(core, 5, A, token=b"x")
    assert auth_transcript(nonce, A.public.ed25519).startswith(b"aura-relay-auth/1\x01")
    # the signature covers the token and the requested contexts: swapping either fails
    nonce6 = parse_challenge(core.connect(6, 0.0))
    msg = bytearray(encode_auth(A, nonce6, TOKEN, [CTX]))
    msg[-64 - 1] ^= 1  # last byte of the requested context
    assert core.receive(6, bytes(msg), 0.0)[1][:2] == MsgType.ERROR.value + bytes([ERR_AUTH])


def test_forwarding_rules_and_counted_drops():
    core, seen = _core()
    _join(core, 1, A)
    _join(core, 2, B)
    _join(core, 3, C)
    wake, reply = core.receive(1, encode_send(CTX, B.authority_id, b"hello"), 1.0)
    assert wake == [2] and reply is None
    [frame] = core.pop_outgoing(2)
    assert decode_deliver(frame) == (CTX, A.authority_id, b"hello")
    assert seen == [(bytes(CTX), bytes(A.authority_id), bytes(B.authority_id), 5)]
    # destination not connected
    assert core.receive(1, encode_send(CTX, AuthorityId(b"\x00" * 16), b"x"), 1.0) == ([], None)
    # sender not authorised in that context
    assert core.receive(1, encode_send(OTHER_CTX, C.authority_id, b"x"), 1.0) == ([], None)
    # destination connected but not in the sender's context
    assert core.receive(1, encode_send(CTX, C.authority_id, b"x"), 1.0) == ([], None)
    # malformed
    assert core.receive(1, b"\x10short", 1.0) == ([], None)
    m = core.metrics
    assert (m.forwarded, m.drop_unknown_destination, m.drop_unauthorised_context, m.drop_malformed) == (1, 2, 1, 1)
    assert core.pop_outgoing(3) == [] and core.pop_outgoing(1) == []


def test_budget_is_charged_before_forwarding():
    core, seen = _core(budget_per_epoch=3)
    _join(core, 1, A)
    _join(core, 2, B)
    results = [core.receive(1, encode_send(CTX, B.authority_id, b"%d" % i), 1.0)[0] for i in range(5)]
    assert results == [[2], [2], [2], [], []]
    assert core.metrics.drop_budget == 2 and len(core.pop_outgoing(2)) == 3
    assert core.ledger.budget(CTX, A.authority_id).spent == 3
    assert len(seen) == 3


def test_queue_is_bounded():
    core, _ = _core(queue_limit=4)
    _join(core, 1, A)
    _join(core, 2, B)
    for i in range(10):
        core.receive(1, encode_send(CTX, B.authority_id, b"x"), 1.0)
    assert core.queue_depth(2) == 4 and core.metrics.drop_queue_full == 6
    # the budget was not charged for dropped frames
    assert core.ledger.budget(CTX, A.authority_id).spent == 4


def test_flood_protection_token_bucket():
    core, _ = _core(rate=10.0, burst=5.0)
    _join(core, 1, A, now=0.0)
    _join(core, 2, B, now=0.0)
    sent = sum(bool(core.receive(1, encode_send(CTX, B.authority_id, b"x"), 0.0)[0]) for _ in range(20))
    assert sent == 5 and core.metrics.drop_rate_limited == 15
    core.pop_outgoing(2, 100)
    # one second later, ten more tokens (capped at the burst of five)
    sent = sum(bool(core.receive(1, encode_send(CTX, B.authority_id, b"x"), 1.0)[0]) for _ in range(20))
    assert sent == 5


def test_token_bucket_admits_exactly_what_a_classic_bucket_does():
    # the core keeps the bucket in GCRA form; a classic refill-then-spend bucket is the reference
    # (rate a power of two and arrival times on a 1/64 s grid: every float below is exact)
    import random

    seed = random.randrange(1 << 32)
    print(f"seed={seed}")
    r = random.Random(seed)
    rate, burst = 8.0, 3.0
    core, seen = _core(rate=rate, burst=burst, queue_limit=10_000)
    _join(core, 1, A, now=0.0)
    _join(core, 2, B, now=0.0)
    tokens, last, t, want = burst, 0.0, 0.0, []
    for _ in range(2_000):
        t += r.choice([0, 0, 0, 1, 2, 8, 40]) / 64
        tokens = min(burst, tokens + (t - last) * rate)
        last = t
        want.append(tokens >= 1.0)
        if want[-1]:
            tokens -= 1.0
        core.receive(1, encode_send(CTX, B.authority_id, b"x"), t)
    got = len(seen)
    assert got == sum(want) and core.metrics.drop_rate_limited == len(want) - got
    assert 0 < got < len(want)  # both branches ran


def test_observer_may_be_a_function_or_a_callable_object_and_can_be_swapped():
    core, seen = _core()
    _join(core, 1, A)
    _join(core, 2, B)
    core.receive(1, encode_send(CTX, B.authority_id, b"one"), 0.0)

    class Counter:
        n = 0

        def __call__(self, ctx, src, dst, frame, now):
            self.n += 1

    counter = Counter()
    core.observer = counter
    assert core.observer is counter
    core.receive(1, encode_send(CTX, B.authority_id, b"two"), 0.0)
    core.observer = None
    core.receive(1, encode_send(CTX, B.authority_id, b"three"), 0.0)
    assert len(seen) == 1 and counter.n == 1 and core.queue_depth(2) == 3


def test_oversize_frames_dropped_and_auth_timeout():
    core, _ = _core(max_frame=100, auth_timeout=2.0)
    _join(core, 1, A)
    _join(core, 2, B)
    assert core.receive(1, encode_send(CTX, B.authority_id, b"x" * 200), 1.0) == ([], None)
    assert core.metrics.drop_oversize == 1
    core.connect(9, 10.0)
    assert core.next_deadline() == 12.0
    assert core.expired(11.0) == [] and core.expired(12.5) == [9]
    with pytest.raises(UsageError):
        core.connect(9, 10.0)
    with pytest.raises(UsageError):
        core.receive(99, b"", 0.0)


def test_newest_connection_of_an_authority_wins():
    core, _ = _core()
    _join(core, 1, A)
    _join(core, 2, B)
    _join(core, 3, A)
    assert core.superseded() == [1]
    core.receive(2, encode_send(CTX, A.authority_id, b"to-new"), 1.0)
    assert core.pop_outgoing(3) and not core.pop_outgoing(1)
    core.disconnect(1)
    assert core.authority_of(3) == A.authority_id and core.metrics.authenticated == 2


def test_capacity_limit():
    core, _ = _core(max_clients=1)
    core.connect(1, 0.0)
    assert core.connect(2, 0.0)[:1] == MsgType.ERROR.value


# -- over real WebSockets on loopback -----------------------------------------------------------

async def _roundtrip(n: int):
    from aura_core.asyncio.relay import RelayClient, RelayServer
    core, _ = _core()
    server = await RelayServer(core, metrics_port=0).start()
    try:
        a = await RelayClient.connect(server.url, A, TOKEN)
        b = await RelayClient.connect(server.url, B, TOKEN)
        await a.send_many(CTX, B.authority_id, [i.to_bytes(4, "big") for i in range(n)])
        got = [await asyncio.wait_for(b.recv(), 10) for _ in range(n)]
        reader, writer = await asyncio.open_connection("127.0.0.1", server.metrics_port)
        writer.write(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        metrics = (await reader.read()).decode()
        writer.close()
        with pytest.raises(AuthorizationError):
            await RelayClient.connect(server.url, A, b"wrong-token")
        await a.close()
        await b.close()
        return got, metrics
    finally:
        await server.close()


def test_websocket_relay_delivers_in_order_and_exports_metrics():
    got, metrics = asyncio.run(_roundtrip(1000))
    assert [p for _, _, p in got] == [i.to_bytes(4, "big") for i in range(1000)]
    assert all(src == A.authority_id and ctx == CTX for ctx, src, _ in got)
    assert "aura_relay_forwards_total 1000" in metrics
    assert "aura_relay_auth_failures_total" in metrics


def test_auth_attempts_are_rate_limited_before_any_crypto():
    core, _ = _core(auth_rate=1.0, auth_burst=2.0)
    assert _join(core, 1, A, now=0.0)[:1] == MsgType.WELCOME.value
    assert _join(core, 2, B, now=0.0)[:1] == MsgType.WELCOME.value
    busy = _join(core, 3, C, now=0.0)
    assert busy[:2] == MsgType.ERROR.value + bytes([3]) and core.authority_of(3) is None
    assert core.metrics.auth_rate_limited == 1
    assert _join(core, 4, C, now=1.5)[:1] == MsgType.WELCOME.value  # refilled


# -- bad input never escapes the receive path ---------------------------------------------------

from hypothesis import given, settings, strategies as st  # noqa: E402


_MESSAGES = st.one_of(
    st.binary(max_size=200),
    st.builds(lambda c, d, p: encode_send(c, d, p), st.sampled_from([CTX, OTHER_CTX]),
              st.sampled_from([A.authority_id, B.authority_id, C.authority_id]), st.binary(max_size=150)),
    st.builds(lambda t, p: t + p, st.sampled_from([b"\x02", b"\x10", b"\x11", b"\x12"]), st.binary(max_size=120)),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(_MESSAGES, min_size=1, max_size=8), st.booleans())
def test_random_messages_are_dropped_or_refused_never_raised(messages, authenticate_first):
    core, seen = _core(max_frame=150)
    _join(core, 2, B)
    if authenticate_first:
        _join(core, 1, A)
    else:
        core.connect(1, 0.0)
    before = core.metrics.forwarded
    for m in messages:
        wake, reply = core.receive(1, m, 1.0)
        assert wake in ([], [1], [2])  # [1]: A may send to itself
        assert reply is None or reply[:1] in (MsgType.ERROR.value, MsgType.WELCOME.value)
    if not authenticate_first:
        assert core.metrics.forwarded == before == 0 and not seen  # nothing without auth
    # whatever was queued is a well-formed DELIVER from A
    for frame in core.pop_outgoing(2, 1000) + core.pop_outgoing(1, 1000):
        ctx, src, _ = decode_deliver(frame)
        assert src == A.authority_id and ctx == CTX
