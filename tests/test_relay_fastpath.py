"""The relay's fast read path (binary frames parsed by the relay, not websockets' parser):
engaged after AUTH, in step with websockets for pings, any read split, both length forms and
real masks; anything unusual hands the stream back to websockets; back-pressure holds the
unparsed bytes and replays them in order."""

from __future__ import annotations

import asyncio
import random

from aura_core import ContextId, IdentityKey
from aura_core.relay import RelayConfig, RelayCore, encode_send, static_authorizer

TOKEN = b"fast-token"
CTX = ContextId(b"\x06" * 16)
A = IdentityKey.from_seed(b"\x61" * 32)
B = IdentityKey.from_seed(b"\x62" * 32)


def _core(**cfg):
    return RelayCore(static_authorizer({A.authority_id: [CTX], B.authority_id: [CTX]}, TOKEN),
                     config=RelayConfig(**cfg))


def _masked(first: int, payload: bytes, rng: random.Random) -> bytes:
    """A client frame: FIN/opcode byte, masked length (7, 16 or 64 bit), mask, masked payload."""
    n = len(payload)
    if n < 126:
        head = bytes([first, 0x80 | n])
    elif n < 65536:
        head = bytes([first, 0xFE]) + n.to_bytes(2, "big")
    else:
        head = bytes([first, 0xFF]) + n.to_bytes(8, "big")
    mask = rng.randbytes(4) if rng.random() < 0.7 else bytes(4)
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def _server_conn(server, key):
    conn_id = server.core.conn_of(bytes(key.authority_id))
    return server._links[conn_id].ws


async def _split_reads(seed: int):
    from aura_core.asyncio.relay import RelayClient, RelayServer

    rng = random.Random(seed)
    core = _core(queue_limit=4096, queue_bytes=1 << 26)
    server = await RelayServer(core).start()
    try:
        a = await RelayClient.connect(server.url, A, TOKEN, contexts=[CTX])
        b = await RelayClient.connect(server.url, B, TOKEN, contexts=[CTX])
        ws = _server_conn(server, A)
        engaged = ws.relay_fast
        sizes = [0, 1, 92, 93, 94, 65502, 65503, 65535] + [rng.randrange(0, 3000) for _ in range(200)]
        payloads = [b"%05d" % i + rng.randbytes(max(0, s - 5)) for i, s in enumerate(sizes)]
        stream = b""
        for i, p in enumerate(payloads):
            stream += _masked(0x82, encode_send(CTX, B.authority_id, p), rng)
            if i % 25 == 0:
                stream += _masked(0x89, b"ping%d" % i, rng)  # websockets answers with a pong
        off = 0
        while off < len(stream):  # reads cut anywhere: inside headers, masks, payloads
            n = rng.choice((1, 3, 7, 64, 1500, 9000, 70000))
            ws.data_received(stream[off:off + n])
            off += n
        got = [(await asyncio.wait_for(b.recv(), 10))[2] for _ in payloads]
        still_fast = ws.relay_fast
        # a text message is not our protocol: counted, and websockets parses from here on
        ws.data_received(_masked(0x81, b"hello", rng) + _masked(0x82, encode_send(CTX, B.authority_id, b"after"), rng))
        after = (await asyncio.wait_for(b.recv(), 10))[2]
        await a.close()
        await b.close()
        return engaged, still_fast, got, payloads, ws.relay_fast, after, core.metrics
    finally:
        await server.close()


def test_fast_path_any_split_pings_masks_and_fallback():
    seed = random.randrange(1 << 30)
    print("seed", seed)
    engaged, still_fast, got, payloads, fast_after_text, after, m = asyncio.run(_split_reads(seed))
    assert engaged and still_fast  # pings went through websockets without leaving the fast path
    assert got == payloads
    assert not fast_after_text and after == b"after"
    assert m.drop_malformed == 1 and m.forwarded == len(payloads) + 1


async def _held_bytes(frames: int):
    from aura_core.asyncio.relay import RelayClient, RelayServer

    rng = random.Random(7)
    core = _core(queue_limit=16)
    server = await RelayServer(core, backpressure_wait=0.5).start()
    try:
        a = await RelayClient.connect(server.url, A, TOKEN, contexts=[CTX])
        b = await RelayClient.connect(server.url, B, TOKEN, contexts=[CTX])
        ws = _server_conn(server, A)
        stream = b"".join(_masked(0x82, encode_send(CTX, B.authority_id, i.to_bytes(4, "big") + bytes(1000)), rng)
                          for i in range(frames))
        ws.data_received(stream)  # one read: the sender is paused at 8 queued, the rest held
        held = len(ws.relay_buf)
        got = [int.from_bytes((await asyncio.wait_for(b.recv(), 10))[2][:4], "big") for _ in range(frames)]
        await a.close()
        await b.close()
        return held, len(stream), got, core.metrics
    finally:
        await server.close()


def test_back_pressure_holds_unparsed_bytes_and_replays_them_in_order():
    held, total, got, m = asyncio.run(_held_bytes(200))
    assert 0 < held < total  # paused mid-read: the unparsed rest waited in the connection
    assert got == list(range(200))
    assert m.drop_queue_full == 0
