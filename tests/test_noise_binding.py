"""The Aura binding of IKpsk2: prologue, PSK, channel id, offers and negotiation, the
AuraHandshake helper between two IdentityKeys, handshake datagram framing."""

from __future__ import annotations

import struct

import pytest

from aura_core.errors import (DecodeError, HandshakeError, InvalidValue, ProtocolError,
                              VersionError)
from aura_core.hashing import ContextKey, Tag, hash32
from aura_core.keys import IdentityKey
from aura_core.noise import AuraHandshake, HandshakeState, Offer, negotiate
from aura_core.noise.binding import (CAPABILITIES, MSG_INITIATION, MSG_RESPONSE, ROLE_ANSWER,
                                     aura_prologue, channel_id, frame_initiation, frame_response,
                                     parse_handshake_datagram, version_from_str, version_to_str)

pytestmark = pytest.mark.native

CTX = bytes(range(16))
CK = ContextKey(bytes(range(100, 132)))
ALICE = IdentityKey.from_seed(b"\x01" * 32)
BOB = IdentityKey.from_seed(b"\x02" * 32)
V1 = version_from_str("1.0.0")
CAPS = CAPABILITIES["version_handshake"] | CAPABILITIES["fact_journal"]


def test_prologue_layout():
    p = aura_prologue(CTX, 0x0102030405060708)
    assert p == b"AURA" + b"\x00\x01" + CTX + bytes.fromhex("0102030405060708")
    assert len(p) == 30
    with pytest.raises(InvalidValue):
        aura_prologue(CTX[:15], 1)
    with pytest.raises(InvalidValue):
        aura_prologue(CTX, -1)


def test_offer_layout_and_roundtrip():
    o = Offer(epoch=7, version=0x010203, min_version=0x010000, capabilities=5, extension=b"xy",
              timestamp=0x1122334455667788)
    raw = o.encode()
    assert raw == struct.pack(">BBQQIIQH", 1, 1, 7, 0x1122334455667788, 0x010203, 0x010000, 5,
                              2) + b"xy"
    assert len(raw) == 36 + 2
    assert Offer.decode(raw) == o
    assert Offer.decode(o.answer().encode()).role == ROLE_ANSWER
    for bad in (raw[:35], raw[:-1], raw + b"z", b"\x02" + raw[1:], raw[:1] + b"\x03" + raw[2:]):
        with pytest.raises(DecodeError):
            Offer.decode(bad)
    with pytest.raises(InvalidValue):
        Offer(epoch=1, version=1, min_version=2)
    assert version_to_str(version_from_str("2.10.255")) == "2.10.255"
    with pytest.raises(InvalidValue):
        version_from_str("1.0")


def test_negotiation():
    a = Offer(3, version_from_str("1.4.0"), version_from_str("1.0.0"), 0b0111)
    b = Offer(3, version_from_str("1.2.0"), version_from_str("1.1.0"), 0b1101)
    n = negotiate(a, b)
    assert n == negotiate(b, a)
    assert version_to_str(n.version) == "1.2.0" and n.capabilities == 0b0101
    assert n.has("ceremony_supersession") and not n.has("version_handshake")
    with pytest.raises(VersionError):
        negotiate(a, Offer(3, version_from_str("2.1.0"), version_from_str("2.0.0")))
    with pytest.raises(ProtocolError):
        negotiate(a, Offer(4, a.version, a.min_version))


def _directory(*ids):
    table = {k.public.x25519: k.public for k in ids}
    return table.get


def test_aura_handshake_end_to_end():
    offer_a = Offer(9, version_from_str("1.3.0"), V1, CAPS | CAPABILITIES["padding"])
    offer_b = Offer(9, version_from_str("1.1.0"), V1, CAPS)
    a = AuraHandshake.initiator(ALICE, BOB.public, CK, CTX, 9, offer_a)
    b = AuraHandshake.responder(BOB, CK, CTX, 9, offer_b, _directory(ALICE))
    assert b.read_message(a.write_message()) == offer_a
    assert b.peer == ALICE.public
    assert a.read_message(b.write_message()) == offer_b.answer()
    assert a.complete and b.complete
    assert a.channel_id == b.channel_id == hash32(Tag.CHANNEL, a.handshake_hash)
    assert a.channel_id == channel_id(b.handshake_hash)
    assert a.negotiated == b.negotiated
    assert version_to_str(a.negotiated.version) == "1.1.0" and a.negotiated.capabilities == CAPS
    sa, sb = a.datagram_session(1, 2), b.datagram_session(2, 1)
    assert sb.open(sa.seal(b"hi")) == b"hi" and sa.open(sb.seal(b"yo")) == b"yo"
    assert sa.epoch == 9


def test_aura_handshake_stream_session():
    a = AuraHandshake.initiator(ALICE, BOB.public, CK, CTX, 9, Offer(9, V1, V1))
    b = AuraHandshake.responder(BOB, CK, CTX, 9, Offer(9, V1, V1), _directory(ALICE))
    b.read_message(a.write_message())
    a.read_message(b.write_message())
    ta, tb = a.stream_session(padding=64), b.stream_session(padding=64)
    assert tb.feed(ta.seal(b"s")) == [b"s"]
    assert len(ta.seal(b"t")) == 2 + 64 + 16


def test_aura_handshake_psk_is_the_context_kdf():
    psk = CK.handshake_psk(CTX, 9, bytes(ALICE.authority_id), bytes(BOB.authority_id))
    a = AuraHandshake.initiator(ALICE, BOB.public, CK, CTX, 9, Offer(9, V1, V1))
    # a plain Noise responder with the documented prologue and PSK interoperates
    r = HandshakeState.responder("Noise_IKpsk2_25519_ChaChaPoly_BLAKE2s", aura_prologue(CTX, 9),
                                 BOB.x25519_secret(), psk)
    r.read_message(a.write_message())
    a.read_message(r.write_message(Offer(9, V1, V1).answer().encode()))
    assert a.handshake_hash == r.handshake_hash


@pytest.mark.parametrize("what", ["epoch", "context", "context_key", "unknown_peer"])
def test_aura_handshake_mismatch_fails(what):
    a = AuraHandshake.initiator(ALICE, BOB.public, CK, CTX, 9, Offer(9, V1, V1))
    ctx, epoch, ck, lookup = CTX, 9, CK, _directory(ALICE)
    if what == "epoch":
        epoch = 10
    elif what == "context":
        ctx = bytes(16)
    elif what == "context_key":
        ck = ContextKey(bytes(32))
    else:
        lookup = _directory(BOB)
    b = AuraHandshake.responder(BOB, ck, ctx, epoch, Offer(epoch, V1, V1), lookup)
    m1 = a.write_message()
    if what == "context_key":  # the PSK is only used in message 2: the initiator detects it
        b.read_message(m1)
        with pytest.raises(HandshakeError):
            a.read_message(b.write_message())
    else:
        with pytest.raises(HandshakeError):
            b.read_message(m1)


def test_handshake_datagram_framing():
    d1 = frame_initiation(0xAABBCCDD, b"m1")
    assert d1 == b"\x01\0\0\0" + bytes.fromhex("ddccbbaa") + b"m1"
    assert parse_handshake_datagram(d1) == (MSG_INITIATION, 0xAABBCCDD, None, b"m1")
    d2 = frame_response(5, 6, b"m2")
    assert d2 == b"\x02\0\0\0" + struct.pack("<II", 5, 6) + b"m2"
    assert parse_handshake_datagram(d2) == (MSG_RESPONSE, 5, 6, b"m2")
    for bad in (b"", b"\x01\0\0", b"\x01\0\1\0" + bytes(8), b"\x09\0\0\0" + bytes(8),
                b"\x02\0\0\0" + bytes(4)):
        with pytest.raises(DecodeError):
            parse_handshake_datagram(bad)


def test_replayed_initiation_refused_by_timestamp():
    def run(ts, not_after):
        a = AuraHandshake.initiator(ALICE, BOB.public, CK, CTX, 9, Offer(9, V1, V1, timestamp=ts))
        b = AuraHandshake.responder(BOB, CK, CTX, 9, Offer(9, V1, V1), _directory(ALICE))
        return b.read_message(a.write_message(), not_after=not_after)

    assert run(1000, 999).timestamp == 1000
    for ts in (999, 1000):
        with pytest.raises(HandshakeError):
            run(ts, 1000)
    assert run(5, None).timestamp == 5
