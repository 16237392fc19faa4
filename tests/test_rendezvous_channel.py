"""Handshaker / SecureChannel / ChannelManager: in-memory handshakes, rotation, teardown."""

from __future__ import annotations

import pytest

from aura_core.errors import (
    DecryptError,
    HandshakeError,
    ProtocolError,
    ReceiptError,
    UsageError,
    VersionError,
)
from aura_core.hashing import ContextKey
from aura_core.ids import ContextId
from aura_core.keys import IdentityKey
from aura_core.receipts import ReceiptChain
from aura_core.rendezvous.channel import (
    AgreementMode,
    ChannelManager,
    ChannelState,
    Handshaker,
)
from aura_core.rendezvous.negotiate import (
    Compatible,
    Incompatible,
    evaluate,
    make_offer,
    require_compatible,
)

pytestmark = pytest.mark.native  # drives the compiled Noise core

A = IdentityKey(bytes([1]) * 32)
B = IdentityKey(bytes([2]) * 32)
C = IdentityKey(bytes([3]) * 32)
CTX = ContextId(bytes(range(16)))
CTX2 = ContextId(bytes(range(1, 17)))
KEY = ContextKey(bytes([9]) * 32)


def resolver(*ids):
    table = {i.public.x25519: i.public for i in ids}
    return table.get


def handshake(ini=A, res=B, epoch=1, key_i=KEY, key_r=KEY, epoch_r=None, ctx_r=CTX, now=0,
              known=(A, C), offer_i=None, offer_r=None):
    hi = Handshaker.initiator(ini, res.public, key_i, CTX, epoch, now=now, offer=offer_i)
    hr = Handshaker.responder(res, key_r, ctx_r, epoch if epoch_r is None else epoch_r,
                              resolver(*known), now=now, offer=offer_r)
    m2 = hr.process_init(hi.create_init_message(now), now + 1)
    hi.process_response(m2, now + 2)
    return hi, hr


def test_handshake_and_exchange():
    hi, hr = handshake()
    ca, cb = hi.build_channel(3), hr.build_channel(3)
    assert ca.channel_id == cb.channel_id and len(ca.channel_id) == 32
    assert (ca.local, ca.remote, cb.local, cb.remote) == (A.authority_id, B.authority_id,
                                                          B.authority_id, A.authority_id)
    assert ca.state is ChannelState.ACTIVE and ca.agreement_mode is AgreementMode.A1
    assert ca.reversion_risk and ca.provisional
    for i in range(5):
        assert cb.open(ca.seal(b"ping %d" % i, 10), 11) == b"ping %d" % i
        assert ca.open(cb.seal(b"pong", 12), 13) == b"pong"
    assert ca.bytes_sent == cb.bytes_received > 0 and cb.bytes_sent == ca.bytes_received
    assert isinstance(ca.negotiated, Compatible) and ca.negotiated.version == "1.0.0"


def test_handshake_order_is_enforced_by_the_choreography():
    hi = Handshaker.initiator(A, B.public, KEY, CTX, 1, now=0)
    with pytest.raises(ProtocolError, match="expected Send.Responder, HandshakeInit"):
        hi.process_response(b"x" * 48, 0)  # before sending the init
    assert hi.state == "new"
    hr = Handshaker.responder(B, KEY, CTX, 1, resolver(A), now=0)
    with pytest.raises(UsageError):  # API misuse: not the responder's call at all
        hr.create_init_message(0)
    m1 = hi.create_init_message(0)
    with pytest.raises(ProtocolError, match="expected Recv"):
        hi.create_init_message(0)
    hr.process_init(m1, 0)
    with pytest.raises(ProtocolError, match="after the protocol ended"):
        hr.process_init(m1, 0)  # replayed init into a finished responder
    assert hr.monitor.done and not hi.monitor.done


def test_unknown_initiator_is_rejected():
    with pytest.raises(HandshakeError, match="unknown initiator"):
        handshake(ini=A, known=(C,))


def test_wrong_peer_response_rejected():
    # A thinks it talks to B; C answers (C knows A) -> A's handshake fails, nothing built.
    hi = Handshaker.initiator(A, B.public, KEY, CTX, 1, now=0)
    hc = Handshaker.responder(C, KEY, CTX, 1, resolver(A), now=0)
    with pytest.raises(HandshakeError):
        hc.process_init(hi.create_init_message(0), 0)


def test_wrong_epoch_or_context_rejected():
    with pytest.raises(HandshakeError):
        handshake(epoch=2, epoch_r=1)
    with pytest.raises(HandshakeError):
        handshake(ctx_r=CTX2)
    with pytest.raises(HandshakeError):
        handshake(key_r=ContextKey(bytes([8]) * 32))  # wrong PSK: fails at message 2
    hi = Handshaker.initiator(A, B.public, KEY, CTX, 1, now=0)
    hr = Handshaker.responder(B, KEY, CTX, 1, resolver(A), now=0)
    hr.process_init(hi.create_init_message(0), 0)
    bad = Handshaker.responder(B, KEY, CTX, 2, resolver(A), now=0)
    hi2 = Handshaker.initiator(A, B.public, KEY, CTX, 2, now=0)
    m2_other = bad.process_init(hi2.create_init_message(0), 0)
    with pytest.raises(HandshakeError):
        hi.process_response(m2_other, 1)
    assert hi.state == "failed"
    with pytest.raises(UsageError):
        hi.build_channel(2)


def test_timeout():
    hi = Handshaker.initiator(A, B.public, KEY, CTX, 1, now=0, timeout_ms=100)
    hr = Handshaker.responder(B, KEY, CTX, 1, resolver(A), now=0, timeout_ms=100)
    m2 = hr.process_init(hi.create_init_message(50), 50)
    with pytest.raises(HandshakeError, match="timed out"):
        hi.process_response(m2, 100)
    assert hi.state == "failed"


def test_version_negotiation():
    v1 = make_offer(1)
    v2 = make_offer(1, version="2.1.0", min_version="2.0.0", capabilities=["fact_journal"])
    v12 = make_offer(1, version="2.0.0", min_version="1.0.0", capabilities=["fact_journal", "padding"])
    assert evaluate(v1, v12) == Compatible("1.0.0", frozenset({"fact_journal"}))
    assert evaluate(v2, v12) == Compatible("2.0.0", frozenset({"fact_journal"}))
    out = evaluate(v1, v2, upgrade_url="https://example.net/upgrade")
    assert isinstance(out, Incompatible) and out.peer_version == "2.1.0" and "no common version" in out.reason
    assert out.upgrade_url == "https://example.net/upgrade"
    with pytest.raises(VersionError, match="incompatible"):
        require_compatible(v1, v2)


def test_incompatible_handshake_builds_no_channel_on_either_side():
    hi, hr = handshake(offer_i=make_offer(1), offer_r=make_offer(1, version="2.0.0", min_version="2.0.0"))
    assert isinstance(hi.outcome, Incompatible) and isinstance(hr.outcome, Incompatible)
    assert hi.outcome.peer_version == "2.0.0" and hr.outcome.peer_version == "1.0.0"
    for h in (hi, hr):
        with pytest.raises(VersionError):
            h.build_channel(5)


def test_manager_rotation_is_a_real_rehandshake():
    mgr_a, mgr_b = ChannelManager(), ChannelManager()
    hi, hr = handshake(epoch=1)
    ca, cb = hi.build_channel(0), hr.build_channel(0)
    mgr_a.register(ca), mgr_b.register(cb)
    assert mgr_a.find_by_context_peer(CTX, B.authority_id) is ca
    stale_frame = ca.seal(b"epoch-1 frame", 1)
    rotating = mgr_a.advance_epoch(CTX, 2)
    assert rotating == [ca] and ca.needs_rotation and ca.state is ChannelState.ROTATING
    assert ca.needs_epoch_rotation(2) and mgr_a.advance_epoch(CTX, 2) == []
    mgr_b.advance_epoch(CTX, 2)
    hi2, hr2 = handshake(epoch=2)
    ca2, cb2 = hi2.build_channel(5), hr2.build_channel(5)
    assert ca2.channel_id != ca.channel_id and ca2.epoch == 2
    assert mgr_a.register(ca2) is ca and mgr_b.register(cb2) is cb
    assert ca.state is ChannelState.CLOSED and not ca.is_active
    assert mgr_a.find_by_context_peer(CTX, B.authority_id) is ca2 and mgr_a.get(ca.channel_id) is None
    # the old epoch's frame does not open on the new channel, and the channel keeps working
    with pytest.raises(DecryptError, match="epoch"):
        cb2.open(stale_frame, 6)
    assert cb2.open(ca2.seal(b"epoch-2 frame", 7), 8) == b"epoch-2 frame"
    # the old channel objects cannot be used any more
    with pytest.raises(UsageError):
        cb.open(stale_frame, 9)
    # an old-epoch channel can no longer be registered
    hi1, hr1 = handshake(epoch=1)
    with pytest.raises(ProtocolError, match="old epoch"):
        mgr_a.register(hi1.build_channel(10))


def test_agreement_modes():
    mgr = ChannelManager()
    hi, _ = handshake()
    ch = hi.build_channel(0)
    mgr.register(ch)
    assert ch.agreement_mode is AgreementMode.A1 and ch.provisional
    assert mgr.merge_convergence(ch.channel_id) and ch.agreement_mode is AgreementMode.A2
    assert ch.reversion_risk and ch.provisional
    assert not mgr.merge_commit(CTX, ch.channel_id, 2)  # evidence for another epoch
    assert not mgr.merge_commit(CTX2, ch.channel_id, 1)
    assert mgr.merge_commit(CTX, ch.channel_id, 1)
    assert ch.agreement_mode is AgreementMode.A3 and not ch.reversion_risk and not ch.provisional


def test_receipts_bound_to_channel_epoch():
    hi, hr = handshake(epoch=1)
    cb = hr.build_channel(0)  # B's view: remote is A
    chain = ReceiptChain(A, CTX, B.authority_id, epoch=1)
    cb.check_receipt(chain.issue(2))
    old = ReceiptChain(A, CTX, B.authority_id, epoch=0).issue(2)
    with pytest.raises(ReceiptError, match="epoch"):
        cb.check_receipt(old)
    with pytest.raises(ReceiptError, match="not for this channel"):
        cb.check_receipt(ReceiptChain(C, CTX, B.authority_id, epoch=1).issue(2))


def test_teardown():
    mgr = ChannelManager()
    hi, hr = handshake()
    ca = hi.build_channel(0)
    mgr.register(ca)
    hi2, _ = handshake(res=C, known=(A,))
    mgr.register(hi2.build_channel(0))
    assert len(mgr) == 2
    assert mgr.close(CTX, B.authority_id) is ca and ca.state is ChannelState.CLOSED
    with pytest.raises(UsageError):
        ca.seal(b"x", 1)
    assert len(mgr.close_context(CTX)) == 1 and len(mgr) == 0
