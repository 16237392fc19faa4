"""Relay guards: Biscuit ``relay:forward`` authorization and receipts (sans-I/O, plus loopback)."""

from __future__ import annotations

import asyncio

import pytest

from aura_core import ContextId, IdentityKey
from aura_core.capabilities import CAP_RELAY_FORWARD, CAP_RENDEZVOUS_PUBLISH, CapabilityIssuer, attenuate
from aura_core.hashing import Hash32
from aura_core.receipts import Receipt, forward_commitment, verify_chain
from aura_core.relay import (
    ERR_AUTH, MsgType, ReceiptSigner, ReceiptWindows, RelayConfig, RelayCore, biscuit_authorizer,
    chain_owner, decode_relay_message, encode_auth, encode_deliver, encode_send, envelope_id,
    parse_challenge,
)

ISSUER = CapabilityIssuer(bytes(range(32)))
ROOT = ISSUER.public_key
OTHER_ROOT = CapabilityIssuer(bytes(range(1, 33)))
CTX = ContextId(b"\x01" * 16)
CTX2 = ContextId(b"\x02" * 16)
A = IdentityKey.from_seed(b"\xa1" * 32)
B = IdentityKey.from_seed(b"\xb2" * 32)
RELAY_KEY = IdentityKey.from_seed(b"\x77" * 32)
T0 = 1_700_000_000.0  # seconds; the core's default wall clock is ``now``
EXP = int(T0 * 1000) + 60_000


def _core(**kw):
    windows = ReceiptWindows(window=1.0)
    core = RelayCore(biscuit_authorizer(ROOT), config=RelayConfig(**kw), observer=windows,
                     rand=lambda n: bytes(n))
    return core, windows


def _join(core, conn_id, key, token, contexts=(CTX,), now=T0):
    nonce = parse_challenge(core.connect(conn_id, now))
    return core.receive(conn_id, encode_auth(key, nonce, token, contexts), now)[1]


def _good(ctx=CTX):
    return ISSUER.issue(ctx, [CAP_RELAY_FORWARD], expires_at=EXP)


def _refused(reply):
    return reply[:2] == MsgType.ERROR.value + bytes([ERR_AUTH])


def test_biscuit_token_accepted_for_its_context():
    core, _ = _core()
    assert _join(core, 1, A, _good()) == MsgType.WELCOME.value + bytes(A.authority_id)
    assert core.contexts_of(1) == {bytes(CTX)}


@pytest.mark.parametrize("case", ["wrong root", "expired", "wrong context", "missing capability",
                                  "attenuated away", "garbage", "no context asked"])
def test_biscuit_denials_are_generic_and_nothing_is_forwarded(case):
    core, _ = _core()
    assert _join(core, 2, B, _good()) is not None and core.authority_of(2) == B.authority_id
    token, contexts, now = _good(), (CTX,), T0
    if case == "wrong root":
        token = OTHER_ROOT.issue(CTX, [CAP_RELAY_FORWARD], expires_at=EXP)
    elif case == "expired":
        now = T0 + 61
    elif case == "wrong context":
        contexts = (CTX2,)
    elif case == "missing capability":
        token = ISSUER.issue(CTX, [CAP_RENDEZVOUS_PUBLISH], expires_at=EXP)
    elif case == "attenuated away":
        token = attenuate(_good(), ROOT, capabilities=[CAP_RENDEZVOUS_PUBLISH])
    elif case == "garbage":
        token = b"\x00" * 40
    elif case == "no context asked":
        contexts = ()
    reply = _join(core, 1, A, token, contexts, now=now)
    assert _refused(reply) and reply.endswith(b"authorization failed")
    assert core.authority_of(1) is None and core.metrics.auth_failures == 1
    # a refused (still unauthenticated) connection forwards nothing: its SEND is not an AUTH
    wake, reply = core.receive(1, encode_send(CTX, B.authority_id, b"x"), now)
    assert wake == [] and _refused(reply)
    assert core.metrics.forwarded == 0 and core.pop_outgoing(2) == []


def test_send_before_auth_is_never_forwarded():
    core, _ = _core()
    _join(core, 2, B, _good())
    core.connect(1, T0)
    wake, reply = core.receive(1, encode_send(CTX, B.authority_id, b"sneaky"), T0)
    assert wake == [] and _refused(reply) and core.metrics.forwarded == 0


def test_partial_grant_and_attenuated_expiry():
    core, _ = _core()
    # asks for two contexts, the token grants one: only that one is usable
    assert _join(core, 1, A, _good(), (CTX, CTX2))[:1] == MsgType.WELCOME.value
    assert core.contexts_of(1) == {bytes(CTX)}
    short = attenuate(_good(), ROOT, expires_at=int(T0 * 1000) + 1000)
    assert _refused(_join(core, 2, B, short, now=T0 + 2))
    assert _join(core, 3, B, short, now=T0)[:1] == MsgType.WELCOME.value


def _delivered(core, conn_id):
    return core.pop_outgoing(conn_id, 10_000)


def test_receipts_cover_windows_and_verify_against_what_was_delivered():
    core, windows = _core(budget_per_epoch=100)
    signer = ReceiptSigner(RELAY_KEY)
    _join(core, 1, A, _good())
    _join(core, 2, B, _good())
    frames = []
    for i in range(10):
        core.receive(1, encode_send(CTX, B.authority_id, b"w1-%d" % i), T0 + 0.1)
    frames += _delivered(core, 2)
    assert windows.poll(T0 + 0.5) == []  # window still open
    [close1] = windows.poll(T0 + 1.2)
    assert (close1.ctx, close1.dst, close1.cost, close1.count) == (bytes(CTX), bytes(B.authority_id), 10, 10)
    r1 = Receipt.from_bytes(signer.sign(close1))
    for i in range(5):
        core.receive(1, encode_send(CTX, B.authority_id, b"w2-%d" % i), T0 + 2)
    later = _delivered(core, 2)
    [close2] = windows.flush()
    r2 = Receipt.from_bytes(signer.sign(close2))
    # the relay signs with its own key, toward the neighbour that got the frames
    assert r1.src == RELAY_KEY.authority_id and r1.dst == B.authority_id and r1.ctx == CTX
    summary = verify_chain([r1, r2], RELAY_KEY.public, ctx=CTX, dst=B.authority_id, epoch=0)
    assert summary.count == 2 and summary.total == 15 == core.ledger.budget(CTX, A.authority_id).spent
    # the destination recomputes each commitment from the DELIVER frames it received
    assert r1.commit == forward_commitment(envelope_id(f) for f in frames)
    assert r2.commit == forward_commitment(envelope_id(f) for f in later)
    assert r2.prev == r1.hash()
    assert signer.count == 2 and list(signer.issued) == [bytes(r1), bytes(r2)]


def test_window_closes_early_at_max_cost_and_rotates_epoch():
    w = ReceiptWindows(window=100.0, max_cost=3)
    frame = encode_deliver(bytes(CTX), bytes(A.authority_id), b"p")
    for _ in range(3):
        w(bytes(CTX), bytes(A.authority_id), bytes(B.authority_id), frame, 0.0)
    assert w.next_deadline() == float("-inf")
    [c] = w.poll(0.0)
    assert c.cost == 3 and c.commit == forward_commitment([envelope_id(frame)] * 3)
    w(bytes(CTX), bytes(A.authority_id), bytes(B.authority_id), frame, 0.0)
    [old] = w.rotate(5)
    assert old.epoch == 0 and w.epoch == 5 and w.next_deadline() is None
    signer = ReceiptSigner(RELAY_KEY)
    signer.sign(c)
    signer.issuer.rotate(CTX, 5)
    with pytest.raises(Exception):
        signer.sign(old)  # a window of an epoch the chain already left is never signed


def test_envelope_id_and_chain_owner_definitions():
    import hashlib

    def ref(frame):  # the definition in docs/wire.md
        payload = frame[33:]
        data = frame[1:33] + len(payload).to_bytes(4, "big") + payload[-32:]
        return hashlib.blake2b(data, digest_size=32, person=b"aura.envelope.v1").digest()

    for payload in (b"", b"p", b"payload", bytes(range(32)), bytes(range(200)) * 7):
        frame = encode_deliver(bytes(CTX), bytes(A.authority_id), payload)
        assert envelope_id(frame) == ref(frame)
        w = ReceiptWindows()
        w(bytes(CTX), bytes(A.authority_id), bytes(B.authority_id), frame, 0.0)
        assert w.flush()[0].commit == forward_commitment([ref(frame)])  # the inlined copy agrees
    # a different tail or length is a different envelope
    base = encode_deliver(bytes(CTX), bytes(A.authority_id), bytes(100))
    assert envelope_id(base) != envelope_id(base[:-1] + b"\x01") != envelope_id(base + b"\x00")
    with pytest.raises(Exception):
        envelope_id(b"\x11short")
    assert chain_owner(b"\x00\x00\x00\x05" + bytes(12), 2) == 1
    assert decode_relay_message(MsgType.RECEIPT.value + bytes(200)) == (MsgType.RECEIPT, bytes(200))
    assert isinstance(forward_commitment([]), Hash32)


def test_unguarded_core_forwards_without_budget_or_context_checks():
    core = RelayCore(biscuit_authorizer(ROOT), config=RelayConfig(budget_per_epoch=1),
                     rand=lambda n: bytes(n), guards=False)
    _join(core, 1, A, _good())
    _join(core, 2, B, _good())
    for i in range(3):
        assert core.receive(1, encode_send(CTX2, B.authority_id, b"x"), T0)[0] == [2]
    assert core.metrics.forwarded == 3 and core.metrics.drop_budget == 0


# -- over WebSockets ---------------------------------------------------------------------------

async def _ws_receipts():
    from aura_core.asyncio.relay import RelayClient, RelayServer

    windows = ReceiptWindows(window=0.2)
    core = RelayCore(biscuit_authorizer(ROOT), rand=lambda n: bytes(n),
                     wall_ms=lambda now: int(T0 * 1000))
    server = await RelayServer(core, windows=windows, signer=ReceiptSigner(RELAY_KEY)).start()
    try:
        a = await RelayClient.connect(server.url, A, _good(), contexts=[CTX])
        b = await RelayClient.connect(server.url, B, _good(), contexts=[CTX], track_ids=True)
        await a.send_many(CTX, B.authority_id, [b"%d" % i for i in range(50)])
        got = [await asyncio.wait_for(b.recv(), 5) for _ in range(50)]
        with pytest.raises(asyncio.TimeoutError):  # only a RECEIPT comes next, no frame
            await asyncio.wait_for(b.recv(), 1.0)
        await a.send_many(CTX, B.authority_id, [b"second-%d" % i for i in range(30)])
        second = [await asyncio.wait_for(b.recv(), 5) for _ in range(30)]
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(b.recv(), 1.0)
        assert [p for _, _, p in second] == [b"second-%d" % i for i in range(30)]
        await a.close()
        await b.close()
        return got, b
    finally:
        await server.close()


def test_websocket_client_gets_a_receipt_after_the_frames_it_covers():
    got, b = asyncio.run(_ws_receipts())
    assert [p for _, _, p in got] == [b"%d" % i for i in range(50)]
    assert len(b.receipts) == 2
    r, r2 = (Receipt.from_bytes(x) for x in b.receipts)
    r.verify(RELAY_KEY.public)
    assert r.cost == 50 and r.dst == B.authority_id and r2.cost == 30 and r2.prev == r.hash()
    assert r.commit == forward_commitment(b.envelope_ids[:50])
    assert b.receipt_checks == [True, True]


def test_windows_close_at_max_cost_at_once_and_polls_in_slices():
    w = ReceiptWindows(window=1.0, max_cost=4)
    frames = {}
    for d in range(6):
        dst = bytes([d]) * 16
        frames[dst] = [encode_deliver(bytes(CTX), bytes(A.authority_id), b"%d-%d" % (d, i)) for i in range(3)]
        for f in frames[dst]:
            w(bytes(CTX), bytes(A.authority_id), dst, f, 0.0)
    full_dst = bytes([9]) * 16
    for i in range(4):
        w(bytes(CTX), bytes(A.authority_id), full_dst, encode_deliver(bytes(CTX), bytes(A.authority_id), b"f"), 0.5)
    assert [c.dst for c in w.ready] == [full_dst]  # closed the moment it reached max_cost
    first = w.poll(1.0, max_ids=5)  # the full one, then due windows until 5 ids are committed
    assert [c.dst for c in first] == [full_dst, bytes([0]) * 16, bytes([1]) * 16]
    rest = w.poll(1.0)
    assert [c.dst for c in rest] == [bytes([d]) * 16 for d in range(2, 6)]
    for c in first[1:] + rest:
        assert c.cost == 3 and c.commit == forward_commitment(envelope_id(f) for f in frames[c.dst])
    assert w.poll(5.0) == [] and w.next_deadline() is None


def test_epoch_rotation_resets_budgets_and_restarts_receipt_chains():
    core, windows = _core(budget_per_epoch=3)
    signer = ReceiptSigner(RELAY_KEY)
    _join(core, 1, A, _good())
    _join(core, 2, B, _good())
    sent = [core.receive(1, encode_send(CTX, B.authority_id, b"%d" % i), T0)[0] for i in range(5)]
    assert sent == [[2], [2], [2], [], []] and core.metrics.drop_budget == 2
    assert core.rotate_epoch(1) and not core.rotate_epoch(1)
    old = [signer.sign(c) for c in windows.rotate(1)]
    assert core.ledger.budget(CTX, A.authority_id).spent == 0
    sent = [core.receive(1, encode_send(CTX, B.authority_id, b"%d" % i), T0)[0] for i in range(4)]
    assert sent == [[2], [2], [2], []]  # the new epoch's budget, spent again
    new = [signer.sign(c) for c in windows.flush()]
    r_old, r_new = Receipt.from_bytes(old[0]), Receipt.from_bytes(new[0])
    assert (r_old.epoch, r_old.nonce, r_old.cost) == (0, 1, 3)
    assert (r_new.epoch, r_new.nonce, r_new.cost) == (1, 1, 3)  # the chain restarted
    verify_chain([r_new], RELAY_KEY.public, epoch=1)
    with pytest.raises(Exception):
        verify_chain([r_old], RELAY_KEY.public, epoch=1)  # old-epoch receipts are invalid now
    # an authority joining later gets the current epoch's budget
    _join(core, 3, IdentityKey.from_seed(b"\x33" * 32), _good())
    assert {b.epoch for b in (core.ledger.budget(CTX, k) for k in (A.authority_id,))} == {1}
