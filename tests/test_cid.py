"""CID: parse/format (base32 v1, base58 v0), binary form, fields, equality/order/hash, and
agreement with independent implementations (multiformats via dag-cbor, libipld)."""

from __future__ import annotations

import hashlib
import pickle

import pytest

from aura_core.cid import BLAKE2B_256, CID, DAG_CBOR, DAG_PB, RAW, SHA2_256
from aura_core.errors import CIDError

V1 = "bafyreidogqfzz75tpkmjzjke425xqcrmpcib2p5tg44hnbirumdbpl5adu"   # the int-0 fixture
V0 = "QmQg1v4o9xdT3Q14wh4S7dxZkDjyZ9ssFzFzyep1YrVJBY"
OTHERS = ["bafkqabiaaebagba", "bagyacvradn6dsgl6sw2jwoh7s3d37hq5wsu7g22wtdwnmaaaaaaaaaaaaaaa",
          "bahaacvrabdhd3fzrwaambazyivoiustl2bo2c3rgweo2ug4rogcoz2apaqaa",
          "bafkreifw7plhl6mofk6sfvhnfh64qmkq73oeqwl6sloru6rehaoujituke"]


def test_v1_fields_and_roundtrip():
    c = CID.decode(V1)
    assert (c.version, c.codec, c.hash_code) == (1, DAG_CBOR, SHA2_256)
    assert c.digest == hashlib.sha256(b"\x00").digest()
    assert str(c) == V1
    assert bytes(c) == b"\x01\x71\x12\x20" + c.digest
    assert CID.decode(bytes(c)) == c == CID.decode(b"\x00" + bytes(c))
    assert CID(1, DAG_CBOR, SHA2_256, c.digest) == c
    assert CID.for_block(b"\x00") == c
    assert c.multihash == b"\x12\x20" + c.digest
    assert repr(c) == f"CID('{V1}')"


def test_v0_read():
    c = CID.decode(V0)
    assert (c.version, c.codec, c.hash_code, len(c.digest)) == (0, DAG_PB, SHA2_256, 32)
    assert str(c) == V0
    assert len(bytes(c)) == 34
    v1 = c.to_v1()
    assert v1.version == 1 and v1.codec == DAG_PB and v1.digest == c.digest and v1 != c


@pytest.mark.parametrize("text", OTHERS)
def test_other_codecs_and_hashes_roundtrip(text):
    c = CID.decode(text)
    assert str(c) == text
    assert CID(c.version, c.codec, c.hash_code, c.digest) == c


def test_other_multibases_parse():
    c = CID.decode(V1)
    assert CID.decode("B" + V1[1:].upper()) == c
    assert CID.decode("f" + bytes(c).hex()) == c
    assert CID.decode("F" + bytes(c).hex().upper()) == c


def test_blake2b_for_block():
    c = CID.for_block(b"abc", codec=RAW, hash="blake2b-256")
    assert c.hash_code == BLAKE2B_256 and c.codec == RAW
    assert c.digest == hashlib.blake2b(b"abc", digest_size=32).digest()
    assert CID.decode(str(c)) == c


def test_equality_order_hash_pickle():
    a, b = CID.for_block(b"a"), CID.for_block(b"b")
    assert a != b and a == CID.for_block(b"a") and a != bytes(a)
    assert sorted([b, a]) == sorted([a, b]) and (a < b) == (bytes(a) < bytes(b))
    assert (a <= a) and (a >= a) and ((a > b) == (bytes(a) > bytes(b)))
    assert len({a, CID.decode(str(a)), b}) == 2
    assert pickle.loads(pickle.dumps(a)) == a


@pytest.mark.parametrize("bad", [
    "", "x", "bafy", "b!!!!", "zzzzz0", "Qm" + "1" * 44, "bafyreidogqfzz75tpkmjzjke425xqcrmpcib2p5tg44hnbirumdbpl5ad",
    "BAFYREIDOGQFZZ75TPKMJZJKE425XQCRMPCIB2P5TG44HNBIRUMDBPL5Adu",
    b"", b"\x02\x71\x12\x20" + bytes(32), b"\x01\x71\x12\x21" + bytes(32), b"\x01\x71\x12\x80\x00",
    b"\x01\xff", "f" + "zz", 42,
])
def test_malformed_rejected(bad):
    with pytest.raises(CIDError):
        CID.decode(bad)


def test_constructor_validation():
    with pytest.raises(CIDError):
        CID(0, DAG_CBOR, SHA2_256, bytes(32))
    with pytest.raises(CIDError):
        CID(2, DAG_CBOR, SHA2_256, bytes(32))
    with pytest.raises(CIDError):
        CID.for_block(b"", hash="md5")


def test_agrees_with_multiformats_and_libipld():
    multiformats = pytest.importorskip("multiformats")
    libipld = pytest.importorskip("libipld")
    for text in [V1, V0, *OTHERS]:
        ours = CID.decode(text)
        theirs = multiformats.CID.decode(text)
        assert bytes(ours) == bytes(theirs)
        assert str(ours) == str(theirs)
        assert ours.codec == theirs.codec.code and ours.hash_code == theirs.hashfun.code
        info = libipld.decode_cid(text)
        assert info["version"] == ours.version and info["codec"] == ours.codec
        assert info["hash"]["code"] == ours.hash_code and info["hash"]["digest"] == ours.digest
