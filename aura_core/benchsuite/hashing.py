"""Foundation benchmarks: Hash32 and the KDF against PyNaCl's and hashlib's raw calls."""

from __future__ import annotations

import hashlib

from . import Group

N = 1000


def groups() -> list[Group]:
    from aura_core.hashing import Tag, hash32, kdf

    data = bytes(range(200))
    personal = Tag.RECEIPT.ljust(16, b"\0")
    g = Group("hashing", "hash32 200 B", "hashes", goals={"pynacl generichash": 1.0})

    def ours():
        def run() -> int:
            for _ in range(N):
                hash32(Tag.RECEIPT, data)
            return N
        return run

    def pynacl():
        from nacl.bindings import crypto_generichash_blake2b_salt_personal as gh

        def run() -> int:
            for _ in range(N):
                gh(data, digest_size=32, person=personal)
            return N
        return run

    def raw_hashlib():
        def run() -> int:
            for _ in range(N):
                hashlib.blake2b(data, digest_size=32, person=personal).digest()
            return N
        return run

    g.add("aura hash32", "ours", ours)
    g.add("pynacl generichash", "peer", pynacl)
    g.add("hashlib blake2b (raw)", "limit", raw_hashlib)

    key = bytes(32)
    k = Group("hashing", "kdf 32 B", "derivations")

    def ours_kdf():
        def run() -> int:
            for _ in range(N):
                kdf(key, b"handshake-psk", data[:56])
            return N
        return run

    k.add("aura kdf", "ours", ours_kdf)
    k.add("hashlib keyed blake2b (raw)", "limit", lambda: (lambda: [
        hashlib.blake2b(data[:56], digest_size=32, key=key).digest() for _ in range(N)] and N))
    return [g, k]
