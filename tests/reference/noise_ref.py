"""Pure-Python reference of Noise IKpsk2 (rev 34) and of aura_core's transport framing
(docs/wire.md §3), written from the specs with hashlib (BLAKE2s/BLAKE2b, HMAC) and PyNaCl
(X25519, ChaCha20-Poly1305 IETF) only.  The C in csrc/noise is checked against it byte for
byte.  Slow and simple on purpose; never used by the package."""

from __future__ import annotations

import hashlib
import hmac
import struct

import nacl.bindings as nb

MAX_MSG = 65535
REJECT_AFTER_MESSAGES = (1 << 64) - (1 << 13) - 1
REPLAY_BITS = 8192
REPLAY_WINDOW = REPLAY_BITS - 64


class Hash:
    def __init__(self, name: str) -> None:
        self.fn = hashlib.blake2s if name.endswith("BLAKE2s") else hashlib.blake2b
        self.len = 32 if name.endswith("BLAKE2s") else 64

    def hash(self, data: bytes) -> bytes:
        return self.fn(data).digest()

    def hmac(self, key: bytes, data: bytes) -> bytes:
        return hmac.new(key, data, self.fn).digest()

    def hkdf(self, ck: bytes, ikm: bytes, n: int) -> list[bytes]:
        tk = self.hmac(ck, ikm)
        out = [self.hmac(tk, b"\x01")]
        out.append(self.hmac(tk, out[0] + b"\x02"))
        if n == 3:
            out.append(self.hmac(tk, out[1] + b"\x03"))
        return out


def nonce(n: int) -> bytes:
    return b"\0" * 4 + n.to_bytes(8, "little")


def aead_seal(k: bytes, n: int, ad: bytes, pt: bytes) -> bytes:
    return nb.crypto_aead_chacha20poly1305_ietf_encrypt(pt, ad, nonce(n), k)


def aead_open(k: bytes, n: int, ad: bytes, ct: bytes) -> bytes:
    return nb.crypto_aead_chacha20poly1305_ietf_decrypt(ct, ad, nonce(n), k)


def dh(priv: bytes, pub: bytes) -> bytes:
    return nb.crypto_scalarmult(priv, pub)


def pub(priv: bytes) -> bytes:
    return nb.crypto_scalarmult_base(priv)


class Cipher:
    def __init__(self, k: bytes | None = None) -> None:
        self.k, self.n = k, 0

    def encrypt(self, ad: bytes, pt: bytes) -> bytes:
        if self.k is None:
            return pt
        out = aead_seal(self.k, self.n, ad, pt)
        self.n += 1
        return out

    def decrypt(self, ad: bytes, ct: bytes) -> bytes:
        if self.k is None:
            return ct
        out = aead_open(self.k, self.n, ad, ct)  # raises on failure, n unchanged
        self.n += 1
        return out

    def rekey(self) -> None:
        self.k = aead_seal(self.k, (1 << 64) - 1, b"", bytes(32))[:32]


class Handshake:
    """IKpsk2: <- s ... -> e, es, s, ss / <- e, ee, se, psk."""

    def __init__(self, protocol: str, prologue: bytes, initiator: bool, s: bytes,
                 rs: bytes | None, psk: bytes, e: bytes | None = None) -> None:
        self.H = Hash(protocol)
        name = protocol.encode()
        self.h = name.ljust(self.H.len, b"\0") if len(name) <= self.H.len else self.H.hash(name)
        self.ck = self.h
        self.c = Cipher()
        self.initiator, self.s, self.psk, self.fixed_e = initiator, s, psk, e
        self.rs, self.re, self.e = rs, None, None
        self.mix_hash(prologue)
        self.mix_hash(rs if initiator else pub(s))

    def mix_hash(self, data: bytes) -> None:
        self.h = self.H.hash(self.h + data)

    def mix_key(self, ikm: bytes) -> None:
        self.ck, tk = self.H.hkdf(self.ck, ikm, 2)
        self.c = Cipher(tk[:32])

    def mix_key_and_hash(self, ikm: bytes) -> None:
        self.ck, th, tk = self.H.hkdf(self.ck, ikm, 3)
        self.mix_hash(th)
        self.c = Cipher(tk[:32])

    def enc_hash(self, pt: bytes) -> bytes:
        ct = self.c.encrypt(self.h, pt)
        self.mix_hash(ct)
        return ct

    def dec_hash(self, ct: bytes) -> bytes:
        pt = self.c.decrypt(self.h, ct)
        self.mix_hash(ct)
        return pt

    def _e(self) -> bytes:
        self.e = self.fixed_e or nb.randombytes(32)
        ep = pub(self.e)
        self.mix_hash(ep)
        self.mix_key(ep)
        return ep

    def write(self, payload: bytes) -> bytes:
        if self.initiator:
            out = self._e()
            self.mix_key(dh(self.e, self.rs))
            out += self.enc_hash(pub(self.s))
            self.mix_key(dh(self.s, self.rs))
        else:
            out = self._e()
            self.mix_key(dh(self.e, self.re))
            self.mix_key(dh(self.e, self.rs))
            self.mix_key_and_hash(self.psk)
        out += self.enc_hash(payload)
        assert len(out) <= MAX_MSG
        return out

    def read(self, msg: bytes) -> bytes:
        self.re = msg[:32]
        self.mix_hash(self.re)
        self.mix_key(self.re)
        if not self.initiator:
            self.mix_key(dh(self.s, self.re))
            self.rs = self.dec_hash(msg[32:80])
            self.mix_key(dh(self.s, self.rs))
            return self.dec_hash(msg[80:])
        self.mix_key(dh(self.e, self.re))
        self.mix_key(dh(self.s, self.re))
        self.mix_key_and_hash(self.psk)
        return self.dec_hash(msg[32:])

    def split(self) -> tuple[Cipher, Cipher]:
        k1, k2 = self.H.hkdf(self.ck, b"", 2)
        return Cipher(k1[:32]), Cipher(k2[:32])


# ---- framing (docs/wire.md §3.4-3.6) ----

def pad(payload: bytes, block: int) -> bytes:
    if not block:
        return payload
    size = -(-(len(payload) + 1) // block) * block
    return (payload + b"\x80").ljust(min(size, MAX_MSG - 16), b"\0")


def unpad(data: bytes, block: int) -> bytes | None:
    if not block:
        return data
    stripped = data.rstrip(b"\0")
    if not stripped.endswith(b"\x80"):
        return None
    return stripped[:-1]


def dgram_seal(k: bytes, counter: int, receiver: int, payload: bytes, block: int = 0) -> bytes:
    header = struct.pack("<B3xIQ", 4, receiver, counter)
    return header + aead_seal(k, counter, header, pad(payload, block))


def dgram_open(k: bytes, receiver: int, datagram: bytes, block: int = 0) -> tuple[int, bytes]:
    typ, idx, ctr = struct.unpack_from("<B3xIQ", datagram)
    assert typ == 4 and datagram[1:4] == b"\0\0\0" and idx == receiver
    return ctr, unpad(aead_open(k, ctr, datagram[:16], datagram[16:]), block)


def stream_seal(c: Cipher, payload: bytes, block: int = 0) -> bytes:
    ct = c.encrypt(b"", pad(payload, block))
    return struct.pack(">H", len(ct)) + ct


def stream_open(c: Cipher, frame: bytes, block: int = 0) -> bytes:
    (n,) = struct.unpack_from(">H", frame)
    assert len(frame) == 2 + n
    return unpad(c.decrypt(b"", frame[2:]), block)


class ReplayWindow:
    """Linux WireGuard's counter check semantics (counter.c), as a plain set-based model."""

    def __init__(self) -> None:
        self.top = 0  # greatest accepted + 1
        self.seen: set[int] = set()

    def accept(self, counter: int) -> bool:
        if self.top >= REJECT_AFTER_MESSAGES + 1 or counter >= REJECT_AFTER_MESSAGES:
            return False
        c = counter + 1
        if REPLAY_WINDOW + c < self.top:
            return False
        if c > self.top:
            # a ring of 128 words: the words entered reuse (and clear) those 128 words back
            old_word, new_word, ring = self.top >> 6, c >> 6, REPLAY_BITS // 64
            if new_word != old_word:
                self.seen = {x for x in self.seen if not old_word - ring < (x >> 6) <= new_word - ring
                             and x + REPLAY_WINDOW >= c}  # older ones are refused by position
            self.top = c
        if c in self.seen:
            return False
        self.seen.add(c)
        return True
