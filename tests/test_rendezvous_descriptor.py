"""Rendezvous descriptors: seal/open round trip, validation failures, revocation, views."""

from __future__ import annotations

import dataclasses
import hashlib

import pytest

from aura_core import dagcbor
from aura_core.errors import DescriptorError, InvalidValue
from aura_core.hashing import ContextKey
from aura_core.ids import AuthorityId, ContextId
from aura_core.keys import IdentityKey
from aura_core.rendezvous import (
    LinkProtocol,
    QuicDirect,
    QuicReflexive,
    RendezvousFact,
    ServiceKind,
    TcpDirect,
    WebSocketDirect,
    WebSocketRelay,
    build_descriptor,
    open_descriptor,
    psk_commitment,
    revoke_descriptor,
    seal_descriptor,
    verify_revocation,
)
from aura_core.rendezvous.descriptor import MAX_DESCRIPTOR_BYTES, SIG_DOMAIN

NOW = 1_750_000_000_000
HOUR = 3600_000


def det_rand(seed: bytes):
    counter = [0]

    def rand(n: int) -> bytes:
        counter[0] += 1
        return hashlib.blake2b(seed + counter[0].to_bytes(8, "big"), digest_size=n).digest()
    return rand


ALICE = IdentityKey(bytes([1]) * 32)
BOB = IdentityKey(bytes([2]) * 32)
RELAY = IdentityKey(bytes([3]) * 32)
CTX = ContextId(bytes(range(16)))
OTHER_CTX = ContextId(bytes(range(1, 17)))
KEY = ContextKey(bytes([7]) * 32)
OTHER_KEY = ContextKey(bytes([8]) * 32)
HINTS = (QuicDirect("203.0.113.7:4433"), QuicReflexive("[2001:db8::1]:443"),
         WebSocketRelay(RELAY.authority_id), WebSocketDirect("wss://example.net/aura"),
         TcpDirect("198.51.100.2:9000"))


def make(identity=ALICE, ctx=CTX, key=KEY, now=NOW, **kw):
    rand = det_rand(b"d")
    d = build_descriptor(identity, key, ctx, kw.pop("hints", HINTS), now=now, rand=rand, **kw)
    return d, seal_descriptor(d, identity, key, rand=rand)


def test_round_trip_and_encoded_bytes():
    d, fact = make(nickname="alice", epoch=3)
    got = open_descriptor(fact, KEY, CTX, now=NOW + 1)
    assert got == d and got.nickname_suggestion == "alice" and got.epoch == 3
    assert got.transport_hints == HINTS
    # bytes form is the journal body; it decodes identically
    raw = dagcbor.encode(fact)
    assert open_descriptor(raw, KEY, CTX, now=NOW) == d
    assert RendezvousFact.kind_of(fact) == "rendezvous.descriptor"
    # the transport payload is not visible in the fact
    assert b"203.0.113.7" not in raw and b"alice" not in raw and d.punch_nonce not in raw


def test_deterministic_with_injected_rand():
    assert dagcbor.encode(make()[1]) == dagcbor.encode(make()[1])


def test_psk_commitment_needs_context_key():
    a = psk_commitment(KEY, CTX, 1, ALICE.authority_id)
    assert a != psk_commitment(OTHER_KEY, CTX, 1, ALICE.authority_id)
    assert a != psk_commitment(KEY, CTX, 2, ALICE.authority_id)
    assert a != psk_commitment(KEY, OTHER_CTX, 1, ALICE.authority_id)


@pytest.mark.parametrize("now,msg", [(NOW + HOUR, "expired"), (NOW + 2 * HOUR, "expired"),
                                     (NOW - HOUR, "not valid yet")])
def test_validity_window(now, msg):
    _, fact = make()
    with pytest.raises(DescriptorError, match=msg):
        open_descriptor(fact, KEY, CTX, now=now)


def test_future_within_skew_is_accepted():
    _, fact = make()
    assert open_descriptor(fact, KEY, CTX, now=NOW - 10_000).valid_from == NOW


def test_forged_signature_and_tampering():
    _, fact = make()
    for field, value in (("sig", bytes(64)), ("valid_until", NOW + 2 * HOUR),
                         ("ct", fact["ct"][:-1] + bytes([fact["ct"][-1] ^ 1])), ("epoch", 9)):
        bad = dict(fact, **{field: value})
        with pytest.raises(DescriptorError, match="signature invalid"):
            open_descriptor(bad, KEY, CTX, now=NOW)


def test_key_not_bound_to_authority():
    # Bob re-signs Alice's descriptor with his own key but keeps Alice's authority id.
    _, fact = make()
    bad = dict(fact, pk=BOB.public.ed25519)
    bad["sig"] = BOB.sign(SIG_DOMAIN + dagcbor.encode(RendezvousFact.unsigned_body(bad)))
    with pytest.raises(DescriptorError, match="not bound"):
        open_descriptor(bad, KEY, CTX, now=NOW)


def test_cross_context():
    _, fact = make()
    with pytest.raises(DescriptorError, match="another context"):
        open_descriptor(fact, KEY, OTHER_CTX, now=NOW)
    with pytest.raises(DescriptorError, match="does not decrypt"):
        open_descriptor(fact, OTHER_KEY, CTX, now=NOW)
    # A validly signed descriptor of another context, relabelled and re-signed to this
    # context by its own author: the AEAD associated data still binds the old context.
    _, other = make(ctx=OTHER_CTX)
    moved = dict(other, ctx=bytes(CTX))
    moved["sig"] = ALICE.sign(SIG_DOMAIN + dagcbor.encode(RendezvousFact.unsigned_body(moved)))
    with pytest.raises(DescriptorError, match="does not decrypt"):
        open_descriptor(moved, KEY, CTX, now=NOW)


def test_commitment_for_wrong_epoch_rejected():
    d, _ = make(epoch=1)
    d2 = dataclasses.replace(d, epoch=2)  # commitment still for epoch 1
    fact = seal_descriptor(d2, ALICE, KEY, rand=det_rand(b"x"))
    with pytest.raises(DescriptorError, match="PSK commitment"):
        open_descriptor(fact, KEY, CTX, now=NOW)


def test_oversized_and_malformed():
    _, fact = make()
    with pytest.raises(DescriptorError, match="too large"):
        open_descriptor(dict(fact, ct=bytes(MAX_DESCRIPTOR_BYTES)), KEY, CTX, now=NOW)
    with pytest.raises(DescriptorError, match="too large"):
        open_descriptor(bytes(MAX_DESCRIPTOR_BYTES + 1), KEY, CTX, now=NOW)
    with pytest.raises(DescriptorError, match="canonical"):
        open_descriptor(b"\xff\x00", KEY, CTX, now=NOW)
    for bad in ({}, {"kind": "rendezvous.descriptor"}, dict(fact, extra=1), dict(fact, nonce=b"x"),
                dict(fact, v=2), dict(fact, epoch=-1), [1, 2]):
        with pytest.raises(DescriptorError):
            open_descriptor(bad, KEY, CTX, now=NOW)
    with pytest.raises(InvalidValue):
        make(nickname="x" * 100)
    with pytest.raises(InvalidValue):
        make(hints=())
    with pytest.raises(InvalidValue):
        make(lifetime_ms=30 * 24 * HOUR)


@pytest.mark.parametrize("bad", ["1.2.3.4", "1.2.3.4:0", "host.example:80", "2001:db8::1:80",
                                 "[1.2.3.4]:80", "1.2.3.4:65536", ""])
def test_bad_addresses(bad):
    with pytest.raises(InvalidValue):
        QuicDirect(bad)


def test_bad_urls():
    for bad in ("http://x", "wss://x/?token=secret", "wss://a b"):
        with pytest.raises(InvalidValue):
            WebSocketDirect(bad)


def test_revocation():
    d, _ = make()
    rev = revoke_descriptor(ALICE, CTX, d.nonce)
    assert verify_revocation(rev, CTX) == (ALICE.authority_id, d.nonce)
    assert verify_revocation(dagcbor.encode(rev), CTX)[1] == d.nonce
    with pytest.raises(DescriptorError, match="another context"):
        verify_revocation(rev, OTHER_CTX)
    forged = dict(rev, auth=bytes(BOB.authority_id))
    with pytest.raises(DescriptorError):
        verify_revocation(forged, CTX)
    with pytest.raises(DescriptorError, match="signature"):
        verify_revocation(dict(rev, nonce=bytes(32)), CTX)


def test_refresh_window():
    d, _ = make()
    assert not d.needs_refresh(NOW)
    assert not d.needs_refresh(NOW + int(0.79 * HOUR))
    assert d.needs_refresh(NOW + int(0.8 * HOUR))
    assert d.needs_refresh(NOW + HOUR - 1000, refresh_window_ms=5000)
    assert not d.needs_refresh(NOW + HOUR - 6000, refresh_window_ms=5000)


def test_split_views_are_socially_neutral():
    d, _ = make()
    eps = d.link_endpoints()
    assert [e.protocol for e in eps] == [LinkProtocol.QUIC, LinkProtocol.QUIC_REFLEXIVE,
                                         LinkProtocol.WEBSOCKET_RELAY, LinkProtocol.WEBSOCKET,
                                         LinkProtocol.TCP]
    assert eps[2].relay_authority == RELAY.authority_id and eps[2].address is None
    assert [s.kind for s in d.service_descriptors()] == [ServiceKind.ESTABLISH, ServiceKind.MOVE]
    assert len(d.establish_paths()) == 5
    assert [p.route.hops[0].relay_authority for p in d.move_paths()] == [RELAY.authority_id]
    assert all(p.route.destination == ALICE.authority_id for p in d.establish_paths())
    # the schemas can only say generic things
    for cls in (type(eps[0]), type(d.service_descriptors()[0]), type(d.establish_paths()[0]),
                type(d.move_paths()[0]), type(d.establish_paths()[0].route)):
        names = {f.name for f in dataclasses.fields(cls)}
        assert not names & {"role", "reason", "trust", "friend", "guardian", "neighborhood", "tier"}
    assert {k.value for k in ServiceKind} == {"Establish", "Move", "Hold"}
    d2, fact = make(services=(ServiceKind.HOLD,))
    assert [s.kind for s in open_descriptor(fact, KEY, CTX, now=NOW).service_descriptors()] == [
        ServiceKind.HOLD]
    assert not make(hints=(WebSocketRelay(RELAY.authority_id),))[0].has_direct_transport()


def test_unknown_service_name_in_payload_rejected():
    # A publisher cannot smuggle a social route class through the encrypted payload.
    from nacl import bindings as nb

    from aura_core.rendezvous.descriptor import AD_DOMAIN, _HEADER_FIELDS
    d, fact = make()
    payload = d._payload()
    payload["svc"] = ["friend relay"]
    header = {k: fact[k] for k in _HEADER_FIELDS}
    ct = nb.crypto_aead_xchacha20poly1305_ietf_encrypt(
        dagcbor.encode(payload), AD_DOMAIN + dagcbor.encode(header), fact["aead_nonce"],
        KEY.descriptor_key(bytes(CTX)))
    bad = dict(fact, ct=ct)
    bad["sig"] = ALICE.sign(SIG_DOMAIN + dagcbor.encode(RendezvousFact.unsigned_body(bad)))
    with pytest.raises(DescriptorError, match="malformed"):
        open_descriptor(bad, KEY, CTX, now=NOW)


def test_channel_established_fact_shape():
    f = RendezvousFact.channel_established(CTX, ALICE.authority_id, BOB.authority_id,
                                           bytes(32), 4)
    assert RendezvousFact.check(dagcbor.decode(dagcbor.encode(f))) == f
    with pytest.raises(DescriptorError):
        RendezvousFact.channel_established(CTX, ALICE.authority_id, BOB.authority_id, b"x", 4)
    assert isinstance(AuthorityId(f["initiator"]), AuthorityId)
