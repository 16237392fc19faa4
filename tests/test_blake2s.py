"""BLAKE2s in C (csrc/noise/blake2s.c) against RFC 7693 and hashlib.blake2s."""

from __future__ import annotations

import hashlib
import random

import pytest

from aura_core import _noise
from aura_core.errors import InvalidValue

pytestmark = pytest.mark.native


def test_rfc7693_appendix_b_abc():
    assert _noise.blake2s(b"abc").hex() == (
        "508c5e8c327c14e2e1a72ba34eeb452f37458b209ed63a294d999b4c86675982")


def _seq(n: int, seed: int) -> bytes:
    # RFC 7693 Appendix E selftest_seq (32-bit arithmetic, Fibonacci-like generator)
    a, b, out = (0xDEAD4BAD * seed) & 0xFFFFFFFF, 1, bytearray()
    for _ in range(n):
        t = (a + b) & 0xFFFFFFFF
        a, b = b, t
        out.append((t >> 24) & 0xFF)
    return bytes(out)


def test_rfc7693_appendix_e_selftest():
    grand = hashlib.blake2s()
    for md_len in (16, 20, 28, 32):
        for in_len in (0, 3, 64, 65, 255, 1024):
            data = _seq(in_len, in_len)
            grand.update(_noise.blake2s(data, digest_size=md_len))
            key = _seq(md_len, md_len)
            grand.update(_noise.blake2s(data, key=key, digest_size=md_len))
    assert grand.digest().hex() == (
        "6a411f08ce25adcdfb02aba641451cec53c598b24f4fc787fbdc88797f4c1dfe")


def test_against_hashlib_random():
    seed = random.randrange(1 << 32)
    rng = random.Random(seed)
    for _ in range(300):
        n = rng.choice([0, 1, 63, 64, 65, 127, 128, 129, rng.randrange(4096)])
        data = rng.randbytes(n)
        key = rng.randbytes(rng.choice([0, 1, 16, 32]))
        size = rng.randrange(1, 33)
        assert _noise.blake2s(data, key=key, digest_size=size) == hashlib.blake2s(
            data, key=key, digest_size=size).digest(), f"seed={seed}"


def test_buffer_types_and_limits():
    data = bytes(range(100))
    assert _noise.blake2s(bytearray(data)) == _noise.blake2s(memoryview(data)) == hashlib.blake2s(
        data).digest()
    with pytest.raises(InvalidValue):
        _noise.blake2s(b"", key=bytes(33))
    with pytest.raises(InvalidValue):
        _noise.blake2s(b"", digest_size=0)
    with pytest.raises(InvalidValue):
        _noise.blake2s(b"", digest_size=33)


@pytest.mark.parametrize("protocol", sorted(_noise.PROTOCOLS))
def test_hmac_hkdf_match_stdlib(protocol):
    import hmac as std

    fn = hashlib.blake2s if protocol.endswith("2s") else hashlib.blake2b
    hl = fn().digest_size
    rng = random.Random(7)
    for _ in range(20):
        key, data = rng.randbytes(hl), rng.randbytes(rng.randrange(300))
        assert _noise._hmac(protocol, key, data) == std.new(key, data, fn).digest()
        tk = std.new(key, data, fn).digest()
        o1 = std.new(tk, b"\1", fn).digest()
        o2 = std.new(tk, o1 + b"\2", fn).digest()
        o3 = std.new(tk, o2 + b"\3", fn).digest()
        assert _noise._hkdf(protocol, key, data, 3) == (o1, o2, o3)
        assert _noise._hkdf(protocol, key, data, 2) == (o1, o2)
