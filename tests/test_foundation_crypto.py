"""Identity keys, Hash32 and the KDF, checked against independent code paths."""

from __future__ import annotations

import hashlib
import pickle

import pytest
from hypothesis import given
from hypothesis import strategies as st
from nacl import bindings

from aura_core import AuthorityId, ContextId, ContextKey, Hash32, IdentityKey, PublicIdentity, hash32, kdf
from aura_core.errors import InvalidValue, KeyFormatError, SignatureError
from aura_core.hashing import Tag
from tests.reference import x25519_ref

seeds = st.binary(min_size=32, max_size=32)


@given(seeds)
def test_x25519_conversion_matches_rfc7748_reference(seed):
    key = IdentityKey.from_seed(seed)
    assert key.x25519_secret() == x25519_ref.ed25519_seed_to_x25519_secret(seed)
    assert key.public.x25519 == x25519_ref.ed25519_public_to_x25519(key.public.ed25519)
    # the converted secret and public halves belong together
    assert x25519_ref.x25519(key.x25519_secret(), (9).to_bytes(32, "little")) == key.public.x25519


def test_authority_id_is_bound_to_the_public_key():
    key = IdentityKey.from_seed(bytes(range(32)))
    expected = hashlib.blake2b(key.public.ed25519, digest_size=32,
                               person=b"aura.authority.1").digest()[:16]
    assert bytes(key.authority_id) == expected
    assert AuthorityId.from_public_key(key.public.ed25519) == key.authority_id
    other = IdentityKey.from_seed(bytes(32))
    assert other.authority_id != key.authority_id


def test_sign_and_verify_and_reject():
    key = IdentityKey.from_seed(b"\x07" * 32)
    sig = key.sign(b"message")
    key.public.verify(b"message", sig)
    with pytest.raises(SignatureError):
        key.public.verify(b"messagf", sig)
    with pytest.raises(SignatureError):
        key.public.verify(b"message", sig[:-1] + bytes([sig[-1] ^ 1]))
    with pytest.raises(SignatureError):
        key.public.verify(b"message", sig[:10])


def test_no_secret_in_repr_and_constant_time_equality():
    seed = bytes(range(1, 33))
    key = IdentityKey.from_seed(seed)
    text = repr(key) + str(key)
    assert seed.hex() not in text and key.x25519_secret().hex() not in text
    assert "secret" in repr(ContextKey(seed)) and seed.hex() not in repr(ContextKey(seed))
    assert key == IdentityKey.from_seed(seed) and key != IdentityKey.from_seed(bytes(32))
    assert key.public == PublicIdentity(key.public.ed25519)


def test_bad_key_material_is_rejected():
    with pytest.raises(KeyFormatError):
        IdentityKey(b"short")
    with pytest.raises(KeyFormatError):
        PublicIdentity(b"\x00" * 31)
    with pytest.raises(KeyFormatError):
        ContextKey(b"\x00" * 16)
    assert issubclass(KeyFormatError, ValueError)


@given(st.binary(max_size=300), st.sampled_from([Tag.CHANNEL, Tag.RECEIPT, Tag.COMMIT, b"x"]))
def test_hash32_equals_libsodium_salt_personal(data, tag):
    ours = hash32(tag, data[:7], data[7:])
    theirs = bindings.crypto_generichash_blake2b_salt_personal(
        data, digest_size=32, person=tag.ljust(16, b"\0"))
    assert ours.digest == theirs
    assert ours == Hash32(theirs)


def test_hash32_domains_separate():
    assert hash32(Tag.CHANNEL, b"x") != hash32(Tag.RECEIPT, b"x")
    with pytest.raises(InvalidValue):
        hash32(b"a tag longer than sixteen", b"")


@given(seeds, st.binary(min_size=1, max_size=40), st.binary(max_size=64))
def test_kdf_equals_keyed_libsodium_blake2b(key, label, info):
    msg = bytes([len(label)]) + label + info
    theirs = bindings.crypto_generichash_blake2b_salt_personal(
        msg, digest_size=32, key=key, person=b"aura.kdf.v1".ljust(16, b"\0"))
    assert kdf(key, label, info) == theirs


def test_kdf_label_info_boundary_is_unambiguous():
    key = bytes(32)
    assert kdf(key, b"ab", b"c") != kdf(key, b"a", b"bc")


def test_context_derivations():
    ck = ContextKey(bytes(range(32)))
    ctx, ctx2 = bytes(16), b"\x01" * 16
    a, b = AuthorityId(b"\xaa" * 16), AuthorityId(b"\xbb" * 16)
    psk = ck.handshake_psk(ctx, 1, bytes(a), bytes(b))
    assert psk == ck.handshake_psk(ctx, 1, bytes(b), bytes(a))  # unordered pair
    assert len(psk) == 32
    assert psk != ck.handshake_psk(ctx, 2, bytes(a), bytes(b))
    assert psk != ck.handshake_psk(ctx2, 1, bytes(a), bytes(b))
    # not computable from public identifiers: another context key gives another PSK
    assert psk != ContextKey(bytes(32)).handshake_psk(ctx, 1, bytes(a), bytes(b))
    assert ck.descriptor_key(ctx) != psk
    assert len(ck.routing_tag(ctx, 1, bytes(a))) == 16
    with pytest.raises(InvalidValue):
        ck.handshake_psk(ctx, -1, bytes(a), bytes(b))
    with pytest.raises(InvalidValue):
        ck.handshake_psk(ctx, 1 << 64, bytes(a), bytes(b))


def test_ids_text_forms():
    raw = bytes.fromhex("00112233445566778899aabbccddeeff")
    aid = AuthorityId(raw)
    assert str(aid) == "authority-00112233-4455-6677-8899-aabbccddeeff"
    assert AuthorityId.parse(str(aid)) == aid
    assert AuthorityId.parse("00112233-4455-6677-8899-AABBCCDDEEFF") == aid
    assert str(ContextId(raw)) == "context-00112233-4455-6677-8899-aabbccddeeff"
    assert ContextId.parse("context-00112233-4455-6677-8899-aabbccddeeff") == ContextId(raw)
    assert aid != ContextId(raw)  # different kinds never compare equal
    assert pickle.loads(pickle.dumps(aid)) == aid
    assert sorted([AuthorityId(b"\x02" * 16), AuthorityId(b"\x01" * 16)])[0] == AuthorityId(b"\x01" * 16)
    assert len({AuthorityId(raw), AuthorityId(raw)}) == 1


@pytest.mark.parametrize("text", ["", "authority-", "context-00112233-4455-6677-8899-aabbccddeeff",
                                  "authority-0011", "authority-zz112233-4455-6677-8899-aabbccddeeff"])
def test_ids_reject_bad_text(text):
    from aura_core.errors import IdError
    with pytest.raises(IdError):
        AuthorityId.parse(text)


def test_ids_are_immutable_and_sized():
    from aura_core.errors import IdError
    with pytest.raises(IdError):
        ContextId(b"\x00" * 15)
    aid = AuthorityId.random(rand=lambda n: b"\x05" * n)
    assert bytes(aid) == b"\x05" * 16
    with pytest.raises(AttributeError):
        aid._raw = b""  # type: ignore[misc]
    assert AuthorityId.random() != AuthorityId.random()
