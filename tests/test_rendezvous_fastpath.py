"""The establishment fast paths give the same bytes and keys as the plain definitions:
cached handshake inputs (HandshakeKeys), offers built without re-validation, the
ChannelEstablished fact from a cached prefix, the channel id without its wrapper."""

from __future__ import annotations

import os

import pytest

from aura_core import dagcbor
from aura_core.errors import DescriptorError, InvalidValue, UsageError
from aura_core.hashing import ContextKey
from aura_core.ids import AuthorityId, ContextId
from aura_core.keys import IdentityKey
from aura_core.noise.binding import (ROLE_ANSWER, Offer, aura_prologue, channel_id,
                                     channel_id_bytes)
from aura_core.noise.channel import HandshakeKeys
from aura_core.rendezvous.channel import Handshaker
from aura_core.rendezvous.facts import RendezvousFact
from aura_core.rendezvous.negotiate import make_offer

pytestmark = pytest.mark.native

CTX = ContextId(bytes(range(16)))
CK = ContextKey(bytes(range(100, 132)))
ALICE = IdentityKey.from_seed(b"\x01" * 32)
BOB = IdentityKey.from_seed(b"\x02" * 32)
CAROL = IdentityKey.from_seed(b"\x03" * 32)


def test_handshake_keys_match_the_definitions():
    hk = HandshakeKeys(ALICE, CK, bytes(CTX))
    assert hk.static_secret() == ALICE.x25519_secret()
    for epoch in (0, 1, 2**64 - 1):
        assert hk.prologue(epoch) == aura_prologue(bytes(CTX), epoch)
        for peer in (BOB, CAROL):
            want = CK.handshake_psk(bytes(CTX), epoch, bytes(ALICE.authority_id),
                                    bytes(peer.authority_id))
            assert hk.psk(epoch, bytes(peer.authority_id)) == want
            assert hk.psk(epoch, bytes(peer.authority_id)) == want  # cached: same value


def test_handshake_keys_never_share_a_psk_across_epoch_peer_or_context():
    hk = HandshakeKeys(ALICE, CK, bytes(CTX))
    other_ctx = HandshakeKeys(ALICE, CK, bytes(15) + b"\x01")
    psks = {hk.psk(e, bytes(p.authority_id)) for e in (1, 2) for p in (BOB, CAROL)}
    psks |= {other_ctx.psk(1, bytes(BOB.authority_id))}
    assert len(psks) == 5
    # symmetric: the peer's own cache derives the same PSK for the pair
    assert HandshakeKeys(BOB, CK, bytes(CTX)).psk(1, bytes(ALICE.authority_id)) == hk.psk(
        1, bytes(BOB.authority_id))


def test_handshake_keys_forget_and_bound():
    hk = HandshakeKeys(ALICE, CK, bytes(CTX))
    for e in range(5):
        hk.psk(e, bytes(BOB.authority_id))
    hk.forget(3)
    assert sorted(k[0] for k in hk._psks) == [3, 4]
    hk.forget()
    assert not hk._psks
    for i in range(HandshakeKeys.MAX_PSKS + 10):
        hk.psk(i, bytes(BOB.authority_id))
    assert len(hk._psks) <= HandshakeKeys.MAX_PSKS


def test_handshake_keys_repr_hides_secrets():
    hk = HandshakeKeys(ALICE, CK, bytes(CTX))
    psk = hk.psk(1, bytes(BOB.authority_id))
    text = repr(hk) + str(hk)
    for secret in (hk.static_secret(), psk, CK.secret_bytes(), ALICE.seed_bytes()):
        assert secret.hex() not in text
    with pytest.raises(InvalidValue):
        HandshakeKeys(ALICE, CK, b"short")


def test_cached_keys_establish_with_one_off_handshakes():
    """Shared HandshakeKeys on one side, fresh ones on the other: same channel id, and a keys
    object of another identity or context is refused."""
    keys = HandshakeKeys(ALICE, CK, bytes(CTX))
    bob_keys = HandshakeKeys(BOB, CK, bytes(CTX))
    resolve = {ALICE.public.x25519: ALICE.public}.get
    for n in range(3):
        i = Handshaker.initiator(ALICE, BOB.public, CK, CTX, 1, now=0, timestamp=n + 1, keys=keys)
        r = Handshaker.responder(BOB, CK, CTX, 1, resolve, now=0,
                                 keys=bob_keys if n % 2 else None)
        i.process_response(r.process_init(i.create_init_message(0), 0), 0)
        assert i.channel_id == r.channel_id
        assert i.channel_id == channel_id(i._hs.handshake_hash).digest
        assert r.remote_timestamp == n + 1
    with pytest.raises(UsageError):
        Handshaker.initiator(BOB, ALICE.public, CK, CTX, 1, now=0, keys=keys)
    with pytest.raises(UsageError):
        Handshaker.initiator(ALICE, BOB.public, CK, ContextId(bytes(16)), 1, now=0, keys=keys)
    with pytest.raises(UsageError):
        Handshaker.initiator(ALICE, BOB.public, ContextKey(bytes(32)), CTX, 1, now=0, keys=keys)


def test_offer_fast_constructors_equal_validated_ones():
    o = make_offer(5)
    t = o.with_timestamp(123456789)
    assert t == Offer(o.epoch, o.version, o.min_version, o.capabilities, o.extension, o.role,
                      123456789)
    assert o.answer() == Offer(o.epoch, o.version, o.min_version, o.capabilities, o.extension,
                               ROLE_ANSWER, o.timestamp)
    assert o.encode_as(ROLE_ANSWER) == o.answer().encode()
    assert Offer.decode(t.encode()) == t and hash(Offer.decode(t.encode())) == hash(t)
    with pytest.raises(InvalidValue):
        o.with_timestamp(1 << 64)
    with pytest.raises(InvalidValue):
        o.encode_as(3)


def test_channel_established_bytes_equal_the_encoding():
    a, b = ALICE.authority_id, BOB.authority_id
    for _ in range(20):
        cid, epoch = os.urandom(32), int.from_bytes(os.urandom(8), "big")
        want = dagcbor.encode(RendezvousFact.channel_established(CTX, a, b, cid, epoch))
        assert RendezvousFact.channel_established_bytes(CTX, a, b, cid, epoch) == want
        assert RendezvousFact.channel_established_bytes(CTX, a, b, cid, 0) == dagcbor.encode(
            RendezvousFact.channel_established(CTX, a, b, cid, 0))
    for bad in [(bytes(CTX), a, b, bytes(32), 1), (CTX, a, b, bytes(31), 1),
                (CTX, a, b, bytes(32), True), (CTX, bytes(a), b, bytes(32), 1),
                (CTX, a, AuthorityId(bytes(16)), bytearray(32), 1), (CTX, a, b, bytes(32), -1)]:
        with pytest.raises(DescriptorError):
            RendezvousFact.channel_established_bytes(*bad)


def test_channel_id_bytes():
    for _ in range(20):
        h = os.urandom(32)
        assert channel_id_bytes(h) == channel_id(h).digest


def _service_pair(epoch=1):
    from aura_core.capabilities import ALL_CAPABILITIES
    from aura_core.guards import AppendFact, GuardSnapshot
    from aura_core.rendezvous import QuicDirect, RendezvousService

    now = 1_750_000_000_000
    sa, sb = RendezvousService(ALICE), RendezvousService(BOB)

    def snap(s, peer, epoch):
        return GuardSnapshot(s.authority_id, CTX, epoch, now, ALL_CAPABILITIES,
                             {peer.authority_id: 1 << 40, s.authority_id: 1 << 40})
    for s in (sa, sb):
        s.join_context(CTX, CK, epoch)
    for s, peer, other in ((sa, BOB, sb), (sb, ALICE, sa)):
        out = s.prepare_publish_descriptor(snap(s, peer, epoch), CTX, [QuicDirect("192.0.2.1:1")], now)
        other.cache_descriptor(next(e.fact for e in out.effects if isinstance(e, AppendFact)), CTX, now)

    def establish(epoch):
        init = sa.prepare_establish_channel(snap(sa, BOB, epoch), CTX, BOB.authority_id, now)
        resp = sb.prepare_handle_handshake(snap(sb, ALICE, epoch), CTX, ALICE.authority_id,
                                           init.effects[-1].envelope, now)
        ch, _ = sa.handle_handshake_response(CTX, BOB.authority_id, resp.effects[-1].envelope, now)
        return ch
    return sa, sb, establish


def test_service_psk_cache_follows_epochs_and_contexts():
    sa, sb, establish = _service_pair()
    ids = set()
    for epoch in (1, 2, 3):
        if epoch > 1:
            sa.advance_epoch(CTX, epoch)
            sb.advance_epoch(CTX, epoch)
        ch = establish(epoch)
        assert ch.epoch == epoch and ch.channel_id not in ids
        ids.add(ch.channel_id)
        for s in (sa, sb):
            # only the current epoch's PSK is kept, and it is the one the definition gives
            psks = s._contexts[CTX].keys._psks
            assert {k[0] for k in psks} == {epoch}
            assert list(psks.values()) == [CK.handshake_psk(bytes(CTX), epoch, bytes(ALICE.authority_id),
                                                            bytes(BOB.authority_id))]
    keys = sa._contexts[CTX].keys
    sa.leave_context(CTX)
    assert not keys._psks
    st = sb._contexts[CTX]
    text = repr(st) + repr(sb.channels.find_by_context_peer(CTX, ALICE.authority_id))
    for secret in (st.keys.static_secret(), *st.keys._psks.values(), CK.secret_bytes(),
                   BOB.seed_bytes()):
        assert secret.hex() not in text and repr(secret) not in text
