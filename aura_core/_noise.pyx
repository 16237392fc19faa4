# cython: language_level=3
# _noise.pyx — Cython wrapper of csrc/noise: Noise IKpsk2 handshake, CipherState, datagram and
# stream transport sessions, batches, the AEAD backend choice (libsodium / OpenSSL libcrypto).
#
# Python objects stay out of the C loops: arguments are taken with the buffer protocol, outputs
# are preallocated bytes filled in place, and batches run with the GIL released.  A session is
# used by one caller at a time: a GIL-free call marks it busy and a concurrent call raises
# UsageError instead of racing on the nonce.  The public API is aura_core.noise (façade).

import os

from cpython.buffer cimport PyObject_GetBuffer, PyBuffer_Release, PyBUF_SIMPLE
from cpython.bytes cimport PyBytes_FromStringAndSize, PyBytes_AS_STRING
from cpython.mem cimport PyMem_Malloc, PyMem_Free
from cpython.ref cimport PyObject

cdef extern from "Python.h":
    char *_PBS "PyBytes_AS_STRING" (PyObject *o) nogil
from libc.stdint cimport uint8_t, uint32_t, uint64_t, int8_t
from libc.string cimport memcpy

from aura_core._sodium_api cimport import_sodium
from aura_core.errors import (DecodeError, DecryptError, HandshakeError, InvalidValue,
                              KeyFormatError, LibraryError, ReplayError, SessionExpired,
                              UsageError)

import_sodium()

cdef extern from "blake2s.h":
    int aura_blake2s(uint8_t *out, size_t outlen, const uint8_t *inp, size_t inlen,
                     const uint8_t *key, size_t keylen) nogil

cdef extern from "noise.h":
    enum:
        NOISE_MAX_MSG
        NOISE_MAX_PLAINTEXT
        NOISE_TAGLEN
        NOISE_HASH_BLAKE2S
        NOISE_HASH_BLAKE2B
        NOISE_OK
        NOISE_ERR_STATE
        NOISE_ERR_SIZE
        NOISE_ERR_DECRYPT
        NOISE_ERR_DH
        NOISE_ERR_SHORT
        NOISE_ERR_NONCE
        NOISE_ERR_REPLAY
        NOISE_ERR_EXPIRED
        NOISE_ERR_MALFORMED
        NOISE_ERR_INDEX
        NOISE_ERR_INTERNAL
        NOISE_AEAD_AUTO
        NOISE_AEAD_SODIUM
        NOISE_AEAD_OPENSSL
        NOISE_DGRAM_HEADER
        NOISE_STREAM_HEADER
        NOISE_STAT_RECV_OK
        NOISE_STAT_DROP_MALFORMED
        NOISE_STAT_DROP_INDEX
        NOISE_STAT_DROP_REPLAY
        NOISE_STAT_DROP_AUTH
        NOISE_STAT_DROP_EXPIRED
        NOISE_STAT_SENT
        NOISE_STAT_COUNT
    unsigned long long NOISE_REKEY_AFTER_MESSAGES
    unsigned long long NOISE_REJECT_AFTER_MESSAGES

    ctypedef struct noise_aead_key:
        int backend
    ctypedef struct noise_cipher:
        noise_aead_key key
        uint64_t n
        int has_key
    ctypedef struct noise_handshake:
        int hash_id
        size_t hashlen
        uint8_t h[64]
        int initiator
        int step
        uint8_t rs[32]
        uint8_t e_pub[32]
        uint8_t s_pub[32]
        uint8_t psk[32]
    ctypedef struct noise_replay:
        uint64_t top
    ctypedef struct noise_session:
        noise_cipher send
        noise_cipher recv
        noise_replay replay
        uint32_t local_index
        uint32_t remote_index
        uint32_t pad_block
        int expired
        uint64_t stats[8]

    int noise_openssl_load(const char *path, char *err, size_t errlen)
    int noise_openssl_available()
    size_t noise_hashlen(int hash_id) nogil
    void noise_hash(int hash_id, const uint8_t *inp, size_t inlen, uint8_t *out) nogil
    void noise_hmac(int hash_id, const uint8_t *key, size_t keylen, const uint8_t *inp,
                    size_t inlen, uint8_t *out) nogil
    void noise_hkdf(int hash_id, const uint8_t *ck, const uint8_t *ikm, size_t ikmlen,
                    uint8_t *out1, uint8_t *out2, uint8_t *out3) nogil

    void noise_cipher_init(noise_cipher *c, const uint8_t *k, int backend) nogil
    void noise_cipher_clear(noise_cipher *c) nogil
    int noise_cipher_encrypt(noise_cipher *c, const uint8_t *ad, size_t adlen, const uint8_t *pt,
                             size_t ptlen, uint8_t *out) nogil
    int noise_cipher_decrypt(noise_cipher *c, const uint8_t *ad, size_t adlen, const uint8_t *ct,
                             size_t ctlen, uint8_t *out, size_t *outlen) nogil
    int noise_cipher_rekey(noise_cipher *c) nogil

    int noise_hs_init(noise_handshake *hs, int hash_id, const uint8_t *name, size_t namelen,
                      const uint8_t *prologue, size_t prologuelen, int initiator, const uint8_t *s,
                      const uint8_t *rs, const uint8_t *psk, const uint8_t *e) nogil
    size_t noise_hs_overhead(const noise_handshake *hs) nogil
    int noise_hs_write(noise_handshake *hs, const uint8_t *payload, size_t plen, uint8_t *out,
                       size_t outcap, size_t *outlen) nogil
    int noise_hs_read(noise_handshake *hs, const uint8_t *msg, size_t msglen, uint8_t *out,
                      size_t *outlen) nogil
    int noise_hs_split(const noise_handshake *hs, uint8_t *k1, uint8_t *k2) nogil
    void noise_hs_clear(noise_handshake *hs) nogil

    void noise_replay_reset(noise_replay *r) nogil
    int noise_replay_check(const noise_replay *r, uint64_t counter) nogil
    int noise_replay_update(noise_replay *r, uint64_t counter) nogil

    void noise_session_init(noise_session *s, const uint8_t *send_k, const uint8_t *recv_k,
                            int backend, uint32_t local_index, uint32_t remote_index,
                            uint32_t pad_block) nogil
    void noise_session_clear(noise_session *s) nogil
    size_t noise_padded_len(uint32_t pad_block, size_t len) nogil
    size_t noise_dgram_sealed_len(const noise_session *s, size_t len) nogil
    size_t noise_stream_sealed_len(const noise_session *s, size_t len) nogil
    int noise_dgram_seal(noise_session *s, const uint8_t *pt, size_t ptlen, uint8_t *out,
                         size_t *outlen) nogil
    int noise_dgram_open(noise_session *s, const uint8_t *inp, size_t len, uint8_t *out,
                         size_t *outlen) nogil
    int noise_stream_seal(noise_session *s, const uint8_t *pt, size_t ptlen, uint8_t *out,
                          size_t *outlen) nogil
    int noise_stream_open(noise_session *s, const uint8_t *inp, size_t len, uint8_t *out,
                          size_t *outlen, size_t *consumed) nogil
    int noise_dgram_seal_batch(noise_session *s, size_t n, const uint8_t *const *ptrs,
                               const size_t *lens, uint8_t *out, size_t *out_off) nogil
    int noise_stream_seal_batch(noise_session *s, size_t n, const uint8_t *const *ptrs,
                                const size_t *lens, uint8_t *out, size_t *out_off) nogil
    void noise_dgram_open_batch(noise_session *s, size_t n, const uint8_t *const *ptrs,
                                const size_t *lens, uint8_t *out, size_t *out_off,
                                int8_t *status) nogil
    int noise_stream_open_batch(noise_session *s, const uint8_t *inp, size_t len,
                                size_t max_frames, uint8_t *out, size_t *out_off,
                                size_t *nframes, size_t *consumed) nogil
    int noise_bench_raw_handshake(size_t n, int hash_id) nogil
    int noise_bench_raw_aead(size_t n, size_t len, int backend) nogil


# ---- constants (WireGuard's numbers; docs/wire.md §3) ----
MAX_MESSAGE = NOISE_MAX_MSG
MAX_PLAINTEXT = NOISE_MAX_PLAINTEXT
REKEY_AFTER_MESSAGES = NOISE_REKEY_AFTER_MESSAGES
REJECT_AFTER_MESSAGES = NOISE_REJECT_AFTER_MESSAGES
REKEY_AFTER_TIME = 120.0
REJECT_AFTER_TIME = 180.0
DATAGRAM_HEADER = NOISE_DGRAM_HEADER
STREAM_HEADER = NOISE_STREAM_HEADER
PROTOCOLS = {
    "Noise_IKpsk2_25519_ChaChaPoly_BLAKE2s": NOISE_HASH_BLAKE2S,
    "Noise_IKpsk2_25519_ChaChaPoly_BLAKE2b": NOISE_HASH_BLAKE2B,
}

DEF GIL_FREE_BYTES = 4096  # single frames at least this large run with the GIL released

# ---- AEAD backends ----

cdef char _err[512]


def _find_libcrypto():
    """The libcrypto this process already loaded (through hashlib's _hashlib), else a soname."""
    import _hashlib  # noqa: F401  (makes sure libcrypto is mapped)
    found = []
    try:
        with open("/proc/self/maps") as maps:
            for line in maps:
                path = line.strip().rpartition(" ")[2]
                if "/libcrypto.so" in path and path not in found:
                    found.append(path)
    except OSError:
        pass
    return found + ["libcrypto.so.3", "libcrypto.so.1.1"]


def _load_openssl():
    if os.environ.get("AURA_NOISE_OPENSSL", "1") in ("0", "no", "false"):
        return None
    for path in _find_libcrypto():
        if noise_openssl_load(os.fsencode(path), _err, sizeof(_err)) == 0:
            return path
    return None


OPENSSL_PATH = _load_openssl()
_BACKENDS = {"auto": NOISE_AEAD_AUTO, "sodium": NOISE_AEAD_SODIUM, "openssl": NOISE_AEAD_OPENSSL}


def openssl_available():
    """True if OpenSSL's ChaCha20-Poly1305 was loaded (the fast backend for large frames)."""
    return noise_openssl_available() != 0


cdef int _backend(object name) except -1:
    try:
        b = _BACKENDS[name]
    except KeyError:
        raise InvalidValue(f"AEAD backend must be one of {sorted(_BACKENDS)}") from None
    if b == NOISE_AEAD_OPENSSL and not noise_openssl_available():
        raise LibraryError("OpenSSL's ChaCha20-Poly1305 is not available in this process")
    return b


# ---- helpers ----

cdef inline int _buf(object o, Py_buffer *view) except -1:
    PyObject_GetBuffer(o, view, PyBUF_SIMPLE)
    return 0


cdef inline bytes _key32(object o, str what):
    cdef bytes b = bytes(o)
    if len(b) != 32:
        raise KeyFormatError(f"{what} must be 32 bytes")
    return b


cdef int _hash_id(object protocol) except -1:
    name = protocol.decode("ascii") if isinstance(protocol, (bytes, bytearray)) else protocol
    try:
        return PROTOCOLS[name]
    except (KeyError, TypeError):
        raise InvalidValue(f"unsupported Noise protocol {protocol!r}; supported: "
                           f"{', '.join(PROTOCOLS)}") from None


cdef str _HS_REASON(int rc):
    if rc == NOISE_ERR_DECRYPT:
        return "handshake message failed authentication"
    if rc == NOISE_ERR_SHORT:
        return "handshake message truncated"
    if rc == NOISE_ERR_DH:
        return "peer key is a low-order point"
    if rc == NOISE_ERR_SIZE:
        return "handshake message over 65535 bytes"
    return f"handshake failed ({rc})"


cdef object _transport_error(int rc):
    if rc == NOISE_ERR_DECRYPT:
        return DecryptError("transport frame failed authentication")
    if rc == NOISE_ERR_REPLAY:
        return ReplayError("counter already seen or outside the replay window")
    if rc == NOISE_ERR_EXPIRED:
        return SessionExpired("session expired (message or time limit, epoch change); re-handshake")
    if rc == NOISE_ERR_NONCE:
        return SessionExpired("nonce space exhausted")
    if rc == NOISE_ERR_MALFORMED:
        return DecodeError("malformed transport frame")
    if rc == NOISE_ERR_INDEX:
        return DecodeError("datagram addressed to another receiver index")
    if rc == NOISE_ERR_SHORT:
        return DecryptError("ciphertext shorter than its tag")
    if rc == NOISE_ERR_SIZE:
        return InvalidValue(f"payload too large for one frame (max {NOISE_MAX_PLAINTEXT} bytes "
                            "before padding)")
    if rc == NOISE_ERR_STATE:
        return UsageError("call not allowed in this state")
    return DecryptError(f"transport error {rc}")


# ---- test hooks for the hash layer ----

def blake2s(data, *, key=b"", int digest_size=32):
    """BLAKE2s (RFC 7693) computed by csrc/noise/blake2s.c."""
    cdef Py_buffer d, k
    if not 1 <= digest_size <= 32:
        raise InvalidValue("digest_size must be 1..32")
    _buf(data, &d)
    try:
        _buf(key, &k)
        try:
            if k.len > 32:
                raise InvalidValue("BLAKE2s key is at most 32 bytes")
            out = PyBytes_FromStringAndSize(NULL, digest_size)
            with nogil:
                aura_blake2s(<uint8_t *> _PBS(<PyObject *> out), digest_size,
                             <const uint8_t *> d.buf, d.len, <const uint8_t *> k.buf, k.len)
            return out
        finally:
            PyBuffer_Release(&k)
    finally:
        PyBuffer_Release(&d)


def _hmac(protocol, bytes key, bytes data):
    cdef int hid = _hash_id(protocol)
    cdef size_t hl = noise_hashlen(hid)
    if <size_t> len(key) > hl:
        raise InvalidValue("HMAC key longer than HASHLEN is not used by Noise")
    out = PyBytes_FromStringAndSize(NULL, hl)
    noise_hmac(hid, key, len(key), data, len(data), <uint8_t *> _PBS(<PyObject *> out))
    return out


def _hkdf(protocol, bytes ck, bytes ikm, int outputs):
    cdef int hid = _hash_id(protocol)
    cdef size_t hl = noise_hashlen(hid)
    cdef uint8_t o1[64]
    cdef uint8_t o2[64]
    cdef uint8_t o3[64]
    if <size_t> len(ck) != hl or outputs not in (2, 3):
        raise InvalidValue("ck is HASHLEN bytes; 2 or 3 outputs")
    noise_hkdf(hid, ck, ikm, len(ikm), o1, o2, o3 if outputs == 3 else NULL)
    res = [o1[:hl], o2[:hl]]
    if outputs == 3:
        res.append(o3[:hl])
    return tuple(res)


# ---- CipherState ----

cdef class CipherState:
    """A Noise CipherState (k, n): EncryptWithAd / DecryptWithAd / Rekey / SetNonce.

    A failed decrypt raises DecryptError and leaves the nonce where it was.
    """

    cdef noise_cipher c
    cdef int busy

    def __cinit__(self):
        noise_cipher_init(&self.c, NULL, NOISE_AEAD_AUTO)

    def __dealloc__(self):
        noise_cipher_clear(&self.c)

    @staticmethod
    def from_key(key, *, backend="auto"):
        """A cipher state keyed with ``key`` (32 bytes), nonce 0."""
        cdef CipherState cs = CipherState.__new__(CipherState)
        cdef bytes k = _key32(key, "cipher key")
        noise_cipher_clear(&cs.c)
        noise_cipher_init(&cs.c, k, _backend(backend))
        return cs

    def has_key(self):
        return self.c.has_key != 0

    @property
    def n(self):
        """The next nonce."""
        return self.c.n

    @n.setter
    def n(self, unsigned long long value):
        self.c.n = value

    def set_nonce(self, unsigned long long value):
        self.c.n = value

    def encrypt_with_ad(self, ad, plaintext):
        cdef Py_buffer a, p
        cdef int rc
        if self.busy:
            raise UsageError("cipher state in use by another thread")
        _buf(ad, &a)
        try:
            _buf(plaintext, &p)
            try:
                if <size_t> p.len > NOISE_MAX_PLAINTEXT:
                    raise InvalidValue(f"plaintext over {NOISE_MAX_PLAINTEXT} bytes")
                out = PyBytes_FromStringAndSize(NULL, p.len + (NOISE_TAGLEN if self.c.has_key else 0))
                if p.len >= GIL_FREE_BYTES:
                    self.busy = 1
                    with nogil:
                        rc = noise_cipher_encrypt(&self.c, <const uint8_t *> a.buf, a.len,
                                                  <const uint8_t *> p.buf, p.len,
                                                  <uint8_t *> _PBS(<PyObject *> out))
                    self.busy = 0
                else:
                    rc = noise_cipher_encrypt(&self.c, <const uint8_t *> a.buf, a.len,
                                              <const uint8_t *> p.buf, p.len,
                                              <uint8_t *> _PBS(<PyObject *> out))
                if rc:
                    raise _transport_error(rc)
                return out
            finally:
                PyBuffer_Release(&p)
        finally:
            PyBuffer_Release(&a)

    def decrypt_with_ad(self, ad, ciphertext):
        cdef Py_buffer a, ct
        cdef int rc
        cdef size_t outlen = 0
        if self.busy:
            raise UsageError("cipher state in use by another thread")
        _buf(ad, &a)
        try:
            _buf(ciphertext, &ct)
            try:
                if <size_t> ct.len > NOISE_MAX_MSG:
                    raise DecryptError(f"ciphertext over {NOISE_MAX_MSG} bytes")
                if self.c.has_key and <size_t> ct.len < NOISE_TAGLEN:
                    raise DecryptError("ciphertext shorter than its tag")
                out = PyBytes_FromStringAndSize(NULL, ct.len - (NOISE_TAGLEN if self.c.has_key else 0))
                if ct.len >= GIL_FREE_BYTES:
                    self.busy = 1
                    with nogil:
                        rc = noise_cipher_decrypt(&self.c, <const uint8_t *> a.buf, a.len,
                                                  <const uint8_t *> ct.buf, ct.len,
                                                  <uint8_t *> _PBS(<PyObject *> out), &outlen)
                    self.busy = 0
                else:
                    rc = noise_cipher_decrypt(&self.c, <const uint8_t *> a.buf, a.len,
                                              <const uint8_t *> ct.buf, ct.len,
                                              <uint8_t *> _PBS(<PyObject *> out), &outlen)
                if rc:
                    raise _transport_error(rc)
                return out
            finally:
                PyBuffer_Release(&ct)
        finally:
            PyBuffer_Release(&a)

    def rekey(self):
        if noise_cipher_rekey(&self.c) != NOISE_OK:
            raise UsageError("rekey needs a key")

    def __repr__(self):
        return f"CipherState(n={self.c.n}, key={'<set>' if self.c.has_key else 'none'})"


# ---- HandshakeState ----

cdef class HandshakeState:
    """Noise IKpsk2 HandshakeState (initiator or responder), in the spec's own terms.

    ``read_message`` works on a copy and commits only on success: a rejected message raises
    HandshakeError and leaves the state exactly as it was (so a datagram transport may keep
    waiting for the genuine message).
    """

    cdef noise_handshake hs
    cdef readonly str protocol_name
    cdef bint psk_set
    cdef bint split_done  # the transport keys were handed out once: never twice (nonce reuse)

    def __dealloc__(self):
        noise_hs_clear(&self.hs)

    @staticmethod
    cdef HandshakeState _make(protocol, prologue, s, rs, psk, e, int initiator):
        cdef HandshakeState self = HandshakeState.__new__(HandshakeState)
        cdef int hid = _hash_id(protocol)
        cdef bytes name = protocol.encode("ascii") if isinstance(protocol, str) else bytes(protocol)
        cdef bytes sk = _key32(s, "static private key")
        cdef bytes pk = _key32(psk, "PSK") if psk is not None else bytes(32)
        cdef bytes rk = _key32(rs, "remote static public key") if initiator else None
        cdef bytes ek = _key32(e, "ephemeral private key") if e is not None else None
        cdef bytes pro = bytes(prologue)
        cdef int rc = noise_hs_init(&self.hs, hid, name, len(name), pro, len(pro), initiator, sk,
                                    <const uint8_t *> rk if rk is not None else NULL, pk,
                                    <const uint8_t *> ek if ek is not None else NULL)
        if rc:
            raise KeyFormatError("bad static key")
        self.protocol_name = name.decode()
        self.psk_set = psk is not None
        return self

    @classmethod
    def initiator(cls, protocol, prologue, s, rs, psk, e=None):
        """Initiator of ``protocol``: own static private key ``s``, responder's public ``rs``."""
        return HandshakeState._make(protocol, prologue, s, rs, psk, e, 1)

    @classmethod
    def responder(cls, protocol, prologue, s, psk, e=None):
        """Responder of ``protocol`` with static private key ``s``.

        ``psk`` may be None when it depends on who the initiator is: IK reveals the initiator's
        static key only in message 1, and the psk token is used only in message 2, so the
        responder reads message 1, looks the peer up, and calls :meth:`set_psk` before writing.
        """
        return HandshakeState._make(protocol, prologue, s, None, psk, e, 0)

    def set_psk(self, psk):
        """Set the PSK before the message that uses it (IKpsk2: message 2)."""
        cdef bytes pk = _key32(psk, "PSK")
        if self.hs.step >= 2:  # both roles use the psk token while processing message 2
            raise UsageError("the PSK was already used")
        memcpy(self.hs.psk, <const uint8_t *> pk, 32)
        self.psk_set = True

    @property
    def initiator_role(self):
        return self.hs.initiator != 0

    @property
    def handshake_hash(self):
        """h: the channel-binding value (HASHLEN bytes)."""
        return <bytes> self.hs.h[:self.hs.hashlen]

    @property
    def complete(self):
        return self.hs.step == 2

    @property
    def message_index(self):
        return self.hs.step

    @property
    def remote_static(self):
        """The peer's static public key once known (initiator: from the start)."""
        if self.hs.initiator or self.hs.step >= 1:
            return <bytes> self.hs.rs[:32]
        return None

    @property
    def local_static_public(self):
        return <bytes> self.hs.s_pub[:32]

    @property
    def local_ephemeral_public(self):
        made = self.hs.step >= 1 if self.hs.initiator else self.hs.step >= 2
        return <bytes> self.hs.e_pub[:32] if made else None

    def write_message(self, payload=b""):
        cdef Py_buffer p
        cdef size_t outlen = 0
        cdef int rc
        if not self.psk_set:
            raise UsageError("no PSK: call set_psk() before writing")
        _buf(payload, &p)
        try:
            need = noise_hs_overhead(&self.hs) + <size_t> p.len
            if need > NOISE_MAX_MSG:
                raise InvalidValue(f"handshake message would exceed {NOISE_MAX_MSG} bytes")
            out = PyBytes_FromStringAndSize(NULL, need)
            rc = noise_hs_write(&self.hs, <const uint8_t *> p.buf, p.len,
                                <uint8_t *> _PBS(<PyObject *> out), need, &outlen)
        finally:
            PyBuffer_Release(&p)
        if rc == NOISE_ERR_STATE:
            raise UsageError("not this side's turn to write (or the handshake is complete)")
        if rc:
            raise HandshakeError(_HS_REASON(rc))
        return out

    def read_message(self, message):
        cdef Py_buffer m
        cdef size_t outlen = 0
        cdef int rc
        if self.hs.initiator and not self.psk_set:
            raise UsageError("no PSK: call set_psk() before reading message 2")
        _buf(message, &m)
        try:
            if <size_t> m.len > NOISE_MAX_MSG:
                raise HandshakeError(_HS_REASON(NOISE_ERR_SIZE))
            tmp = PyBytes_FromStringAndSize(NULL, m.len)
            rc = noise_hs_read(&self.hs, <const uint8_t *> m.buf, m.len,
                               <uint8_t *> PyBytes_AS_STRING(tmp), &outlen)
        finally:
            PyBuffer_Release(&m)
        if rc == NOISE_ERR_STATE:
            raise UsageError("not this side's turn to read (or the handshake is complete)")
        if rc:
            raise HandshakeError(_HS_REASON(rc))
        return tmp[:outlen]

    def split(self, *, backend="auto"):
        """(c1, c2): c1 encrypts initiator->responder, c2 responder->initiator.

        Allowed once per handshake (and not after a transport session was made from it): two
        holders of the same key would both start at nonce 0.
        """
        cdef uint8_t k1[32]
        cdef uint8_t k2[32]
        cdef int b = _backend(backend)
        if self.split_done:
            raise UsageError("split() already ran: two users of one key would reuse nonces")
        if noise_hs_split(&self.hs, k1, k2) != NOISE_OK:
            raise UsageError("split() before the handshake is complete")
        self.split_done = True
        cdef CipherState c1 = CipherState.__new__(CipherState)
        cdef CipherState c2 = CipherState.__new__(CipherState)
        noise_cipher_clear(&c1.c)
        noise_cipher_clear(&c2.c)
        noise_cipher_init(&c1.c, k1, b)
        noise_cipher_init(&c2.c, k2, b)
        _wipe(k1, 32)
        _wipe(k2, 32)
        return c1, c2

    def __repr__(self):
        role = "initiator" if self.hs.initiator else "responder"
        return f"HandshakeState({self.protocol_name}, {role}, message {self.hs.step})"


cdef extern from *:
    """
    #include "aura_common.h"
    static void _wipe(void *p, size_t n) { aura_wipe(p, n); }
    """
    void _wipe(void *p, size_t n) nogil


# ---- transport sessions ----

ctypedef size_t (*sealed_len_fn)(const noise_session *s, size_t len) noexcept nogil
ctypedef int (*seal_fn)(noise_session *s, const uint8_t *pt, size_t ptlen, uint8_t *out,
                        size_t *outlen) noexcept nogil


cdef class _Session:
    cdef noise_session s
    cdef int busy
    cdef readonly bint is_initiator
    cdef readonly double created
    cdef readonly object epoch

    def __dealloc__(self):
        noise_session_clear(&self.s)

    cdef object _seal(self, object payload, object now, sealed_len_fn sealed_len, seal_fn seal):
        """One frame sealed by ``seal`` (datagram or stream framing); GIL released when large."""
        cdef Py_buffer p
        cdef size_t outlen = 0, need
        cdef int rc
        self._enter(now)
        _buf(payload, &p)
        try:
            need = sealed_len(&self.s, p.len)
            if need == 0:
                raise _transport_error(NOISE_ERR_SIZE)
            out = PyBytes_FromStringAndSize(NULL, need)
            if p.len >= GIL_FREE_BYTES:
                self.busy = 1
                with nogil:
                    rc = seal(&self.s, <const uint8_t *> p.buf, p.len,
                              <uint8_t *> _PBS(<PyObject *> out), &outlen)
                self.busy = 0
            else:
                rc = seal(&self.s, <const uint8_t *> p.buf, p.len,
                          <uint8_t *> _PBS(<PyObject *> out), &outlen)
        finally:
            PyBuffer_Release(&p)
        if rc:
            raise _transport_error(rc)
        return out

    cdef int _init(self, HandshakeState hs, uint32_t local_index, uint32_t remote_index,
                   uint32_t padding, object backend, double now, object epoch) except -1:
        cdef uint8_t k1[32]
        cdef uint8_t k2[32]
        cdef int b = _backend(backend)
        if padding > NOISE_MAX_PLAINTEXT:
            raise InvalidValue("padding block too large")
        if hs.split_done:
            raise UsageError("the handshake's keys were already split: one transport per handshake")
        if noise_hs_split(&hs.hs, k1, k2) != NOISE_OK:
            raise UsageError("transport session before the handshake is complete")
        hs.split_done = True
        if hs.hs.initiator:
            noise_session_init(&self.s, k1, k2, b, local_index, remote_index, padding)
        else:
            noise_session_init(&self.s, k2, k1, b, local_index, remote_index, padding)
        _wipe(k1, 32)
        _wipe(k2, 32)
        self.is_initiator = hs.hs.initiator != 0
        self.created = now
        self.epoch = epoch
        return 0

    cdef inline int _enter(self, object now) except -1:
        if self.busy:
            raise UsageError("session in use by another thread")
        if now is not None and <double> now - self.created >= REJECT_AFTER_TIME:
            self.s.expired = 1
        return 0

    @property
    def local_index(self):
        return self.s.local_index

    @property
    def remote_index(self):
        return self.s.remote_index

    @property
    def padding(self):
        return self.s.pad_block

    @property
    def send_nonce(self):
        return self.s.send.n

    @send_nonce.setter
    def send_nonce(self, unsigned long long n):
        """For tests of the message limits only."""
        self.s.send.n = n

    @property
    def recv_nonce(self):
        return self.s.recv.n

    @recv_nonce.setter
    def recv_nonce(self, unsigned long long n):
        self.s.recv.n = n

    @property
    def stats(self):
        """Counters: received, drops by cause, sent."""
        st = self.s.stats
        return {"received": st[NOISE_STAT_RECV_OK], "dropped_malformed": st[NOISE_STAT_DROP_MALFORMED],
                "dropped_index": st[NOISE_STAT_DROP_INDEX], "dropped_replay": st[NOISE_STAT_DROP_REPLAY],
                "dropped_auth": st[NOISE_STAT_DROP_AUTH], "dropped_expired": st[NOISE_STAT_DROP_EXPIRED],
                "sent": st[NOISE_STAT_SENT]}

    def expire(self):
        """Refuse all further traffic (epoch change, explicit close); keys are wiped."""
        self.s.expired = 1
        noise_cipher_clear(&self.s.send)
        noise_cipher_clear(&self.s.recv)

    def is_expired(self, now=None):
        """True once REJECT_AFTER_TIME / REJECT_AFTER_MESSAGES is reached or expire() ran."""
        if now is not None and <double> now - self.created >= REJECT_AFTER_TIME:
            return True
        return self.s.expired != 0 or self.s.send.n >= NOISE_REJECT_AFTER_MESSAGES

    def needs_rekey(self, now=None):
        """WireGuard's rule: REKEY_AFTER_MESSAGES sent, or (initiator) REKEY_AFTER_TIME elapsed."""
        if self.s.send.n >= NOISE_REKEY_AFTER_MESSAGES:
            return True
        return (now is not None and self.is_initiator
                and <double> now - self.created >= REKEY_AFTER_TIME)

    def check_epoch(self, epoch):
        """Expire the session if ``epoch`` differs from the one it was keyed for."""
        if self.epoch is not None and epoch != self.epoch:
            self.expire()
            return False
        return True


cdef class DatagramSession(_Session):
    """Datagram (UDP) transport: 16-byte header, explicit counter, 8192-bit replay window.

    ``open`` raises on a bad frame; ``receive`` drops it silently and counts it (``stats``).
    """

    @staticmethod
    def from_handshake(HandshakeState hs, unsigned int local_index, unsigned int remote_index,
                       *, unsigned int padding=0, backend="auto", double now=0.0, epoch=None):
        cdef DatagramSession self = DatagramSession.__new__(DatagramSession)
        self._init(hs, local_index, remote_index, padding, backend, now, epoch)
        return self

    def seal(self, payload, now=None):
        return self._seal(payload, now, noise_dgram_sealed_len, noise_dgram_seal)

    cdef object _open(self, object datagram, object now, bint raising):
        cdef Py_buffer d
        cdef size_t outlen = 0
        cdef int rc
        self._enter(now)
        _buf(datagram, &d)
        try:
            out = PyBytes_FromStringAndSize(NULL, d.len)
            if d.len >= GIL_FREE_BYTES:
                self.busy = 1
                with nogil:
                    rc = noise_dgram_open(&self.s, <const uint8_t *> d.buf, d.len,
                                          <uint8_t *> _PBS(<PyObject *> out), &outlen)
                self.busy = 0
            else:
                rc = noise_dgram_open(&self.s, <const uint8_t *> d.buf, d.len,
                                      <uint8_t *> _PBS(<PyObject *> out), &outlen)
        finally:
            PyBuffer_Release(&d)
        if rc:
            if raising:
                raise _transport_error(rc)
            return None
        return out[:outlen]

    def open(self, datagram, now=None):
        """Open one datagram or raise (DecryptError, ReplayError, DecodeError, SessionExpired)."""
        return self._open(datagram, now, True)

    def receive(self, datagram, now=None):
        """Open one datagram; None (counted in ``stats``) if it must be dropped silently."""
        return self._open(datagram, now, False)

    def seal_batch(self, payloads, now=None):
        """Seal many payloads in one GIL-free call: (buffer, offsets) with n+1 offsets."""
        return _seal_batch(self, payloads, now, 0)

    cdef object _open_many(self, Py_ssize_t n, const uint8_t **ptrs, size_t *lens, size_t *offs,
                           size_t total):
        # The GIL-free part of both batch opens: n datagrams (ptrs, lens; total bytes at most)
        # into one plaintext buffer, offsets and a status byte each.
        cdef Py_ssize_t i
        out = PyBytes_FromStringAndSize(NULL, total)
        status = PyBytes_FromStringAndSize(NULL, n)
        cdef uint8_t *obuf = <uint8_t *> _PBS(<PyObject *> out)
        cdef int8_t *sbuf = <int8_t *> _PBS(<PyObject *> status)
        self.busy = 1
        with nogil:
            noise_dgram_open_batch(&self.s, n, ptrs, lens, obuf, offs, sbuf)
        self.busy = 0
        return out, [offs[i] for i in range(n + 1)], status

    def open_batch(self, datagrams, now=None):
        """Open many datagrams in one GIL-free call: (buffer, offsets, status).

        Plaintext i is ``buffer[offsets[i]:offsets[i+1]]`` when ``status[i] == 0``; a non-zero
        status is a counted drop (its code: -3 auth, -7 replay, -8 expired, -9 malformed,
        -10 index).
        """
        cdef Py_ssize_t n = len(datagrams), i, got = 0
        cdef Py_buffer *views = <Py_buffer *> PyMem_Malloc(max(n, 1) * sizeof(Py_buffer))
        cdef const uint8_t **ptrs = <const uint8_t **> PyMem_Malloc(max(n, 1) * sizeof(void *))
        cdef size_t *lens = <size_t *> PyMem_Malloc(max(n, 1) * sizeof(size_t))
        cdef size_t *offs = <size_t *> PyMem_Malloc((n + 1) * sizeof(size_t))
        cdef size_t total = 0
        try:
            if not (views and ptrs and lens and offs):
                raise MemoryError()
            self._enter(now)
            for i in range(n):
                _buf(datagrams[i], &views[i])
                got += 1
                ptrs[i] = <const uint8_t *> views[i].buf
                lens[i] = views[i].len
                total += views[i].len
            return self._open_many(n, ptrs, lens, offs, total)
        finally:
            for i in range(got):
                PyBuffer_Release(&views[i])
            PyMem_Free(views)
            PyMem_Free(ptrs)
            PyMem_Free(lens)
            PyMem_Free(offs)

    def open_batch_packed(self, data, offsets, now=None):
        """Like :meth:`open_batch` for datagrams packed in one buffer (as ``seal_batch`` returns
        them, or as a recvmmsg loop fills one): datagram i is ``data[offsets[i]:offsets[i+1]]``."""
        cdef Py_buffer d
        cdef Py_ssize_t n = len(offsets) - 1, i
        cdef const uint8_t **ptrs
        cdef size_t *lens
        cdef size_t *offs
        cdef size_t lo, hi, prev = 0
        if n < 0:
            raise InvalidValue("offsets needs at least one entry")
        self._enter(now)
        _buf(data, &d)
        ptrs = <const uint8_t **> PyMem_Malloc(max(n, 1) * sizeof(void *))
        lens = <size_t *> PyMem_Malloc(max(n, 1) * sizeof(size_t))
        offs = <size_t *> PyMem_Malloc((n + 1) * sizeof(size_t))
        try:
            if not (ptrs and lens and offs):
                raise MemoryError()
            for i in range(n):
                lo = offsets[i]
                hi = offsets[i + 1]
                if lo < prev or hi < lo or hi > <size_t> d.len:
                    raise InvalidValue("offsets must be non-decreasing and inside the buffer")
                prev = lo
                ptrs[i] = <const uint8_t *> d.buf + lo
                lens[i] = hi - lo
            return self._open_many(n, ptrs, lens, offs, <size_t> d.len)
        finally:
            PyMem_Free(ptrs)
            PyMem_Free(lens)
            PyMem_Free(offs)
            PyBuffer_Release(&d)

    def __repr__(self):
        return (f"DatagramSession(local={self.s.local_index}, remote={self.s.remote_index}, "
                f"sent={self.s.send.n})")


cdef object _seal_batch(_Session self, object payloads, object now, bint stream):
    cdef Py_ssize_t n = len(payloads), i, got = 0
    cdef Py_buffer *views = <Py_buffer *> PyMem_Malloc(max(n, 1) * sizeof(Py_buffer))
    cdef const uint8_t **ptrs = <const uint8_t **> PyMem_Malloc(max(n, 1) * sizeof(void *))
    cdef size_t *lens = <size_t *> PyMem_Malloc(max(n, 1) * sizeof(size_t))
    cdef size_t *offs = <size_t *> PyMem_Malloc((n + 1) * sizeof(size_t))
    cdef size_t total = 0, one
    cdef uint8_t *obuf
    cdef int rc
    try:
        if not (views and ptrs and lens and offs):
            raise MemoryError()
        self._enter(now)
        for i in range(n):
            _buf(payloads[i], &views[i])
            got += 1
            ptrs[i] = <const uint8_t *> views[i].buf
            lens[i] = views[i].len
            one = (noise_stream_sealed_len(&self.s, lens[i]) if stream
                   else noise_dgram_sealed_len(&self.s, lens[i]))
            if one == 0:
                raise _transport_error(NOISE_ERR_SIZE)
            total += one
        out = PyBytes_FromStringAndSize(NULL, total)
        obuf = <uint8_t *> _PBS(<PyObject *> out)
        self.busy = 1
        with nogil:
            if stream:
                rc = noise_stream_seal_batch(&self.s, n, ptrs, lens, obuf, offs)
            else:
                rc = noise_dgram_seal_batch(&self.s, n, ptrs, lens, obuf, offs)
        self.busy = 0
        if rc:
            raise _transport_error(rc)
        return out, [offs[i] for i in range(n + 1)]
    finally:
        for i in range(got):
            PyBuffer_Release(&views[i])
        PyMem_Free(views)
        PyMem_Free(ptrs)
        PyMem_Free(lens)
        PyMem_Free(offs)


cdef class StreamSession(_Session):
    """Stream (TCP / WebSocket / QUIC stream) transport: u16 BE length-prefixed Noise frames,
    implicit counters.  A bad frame is fatal for a stream: it raises and nothing advances."""

    cdef bytearray _pending
    cdef object _error

    @staticmethod
    def from_handshake(HandshakeState hs, *, unsigned int padding=0, backend="auto",
                       double now=0.0, epoch=None):
        cdef StreamSession self = StreamSession.__new__(StreamSession)
        self._init(hs, 0, 0, padding, backend, now, epoch)
        self._pending = bytearray()
        return self

    def seal(self, payload, now=None):
        return self._seal(payload, now, noise_stream_sealed_len, noise_stream_seal)

    def open(self, frame, now=None):
        """Open exactly one complete frame (length prefix included)."""
        cdef Py_buffer d
        cdef size_t outlen = 0, used = 0
        cdef const uint8_t *p
        cdef int rc
        self._enter(now)
        _buf(frame, &d)
        try:
            p = <const uint8_t *> d.buf
            # the frame must be exactly one length-prefixed message: checked before any state moves
            if d.len < NOISE_STREAM_HEADER or NOISE_STREAM_HEADER + ((p[0] << 8) | p[1]) != <size_t> d.len:
                raise DecodeError("not exactly one length-prefixed frame", 0)
            out = PyBytes_FromStringAndSize(NULL, d.len)
            if d.len >= GIL_FREE_BYTES:
                self.busy = 1
                with nogil:
                    rc = noise_stream_open(&self.s, p, d.len, <uint8_t *> _PBS(<PyObject *> out),
                                           &outlen, &used)
                self.busy = 0
            else:
                rc = noise_stream_open(&self.s, p, d.len, <uint8_t *> _PBS(<PyObject *> out),
                                       &outlen, &used)
        finally:
            PyBuffer_Release(&d)
        if rc:
            raise _transport_error(rc)
        return out[:outlen]

    def seal_batch(self, payloads, now=None):
        """Seal many payloads in one GIL-free call: (buffer of frames, offsets)."""
        return _seal_batch(self, payloads, now, 1)

    def open_batch(self, data, now=None):
        """Open every complete frame at the front of ``data`` in one GIL-free call.

        Returns (buffer, offsets, consumed): plaintext i is ``buffer[offsets[i]:offsets[i+1]]``,
        ``consumed`` the bytes of ``data`` used.  A bad frame raises only if it is the first one.
        """
        cdef Py_buffer d
        cdef size_t nframes = 0, used = 0, maxf, i
        cdef size_t *offs
        cdef int rc
        self._enter(now)
        _buf(data, &d)
        try:
            maxf = <size_t> d.len // (NOISE_STREAM_HEADER + NOISE_TAGLEN) + 1
            offs = <size_t *> PyMem_Malloc((maxf + 1) * sizeof(size_t))
            if offs == NULL:
                raise MemoryError()
            try:
                out = PyBytes_FromStringAndSize(NULL, d.len)
                self.busy = 1
                with nogil:
                    rc = noise_stream_open_batch(&self.s, <const uint8_t *> d.buf, d.len, maxf,
                                                 <uint8_t *> _PBS(<PyObject *> out), offs,
                                                 &nframes, &used)
                self.busy = 0
                if rc and nframes == 0:
                    raise _transport_error(rc)
                return out, [offs[i] for i in range(nframes + 1)], used
            finally:
                PyMem_Free(offs)
        finally:
            PyBuffer_Release(&d)

    def feed(self, data, now=None):
        """Buffer stream bytes and return the plaintexts of every complete frame.

        Frames before a bad one are returned first; the bad one raises (DecryptError /
        DecodeError) on the next call, and every call after that raises it again: a stream
        that carried a forged or corrupt frame is dead.
        """
        if self._error is not None:
            raise self._error
        self._pending += data
        if not self._pending:
            return []
        try:
            buf, offs, used = self.open_batch(self._pending, now)
        except (DecryptError, DecodeError, SessionExpired) as exc:
            self._error = exc
            raise
        del self._pending[:used]
        return [buf[offs[i]:offs[i + 1]] for i in range(len(offs) - 1)]

    @property
    def buffered(self):
        return len(self._pending)

    def __repr__(self):
        return f"StreamSession(sent={self.s.send.n}, received={self.s.recv.n})"


# ---- the replay window alone (tests port WireGuard's counter self-test) ----

cdef class ReplayWindow:
    """The datagram replay window alone: ``accept(counter)`` checks and marks in one step."""

    cdef noise_replay r

    def __cinit__(self):
        noise_replay_reset(&self.r)

    def check(self, unsigned long long counter):
        return noise_replay_check(&self.r, counter) != 0

    def accept(self, unsigned long long counter):
        if not noise_replay_check(&self.r, counter):
            return False
        return noise_replay_update(&self.r, counter) != 0

    def reset(self):
        noise_replay_reset(&self.r)


def padded_len(unsigned int pad_block, Py_ssize_t length):
    """Plaintext length after padding (0 if the payload cannot be carried)."""
    if length < 0:
        raise InvalidValue("length must be non-negative")
    return noise_padded_len(pad_block, length)


# ---- benchmark entries (C loops; limits for benchsuite/noise.py) ----

def _bench_raw_handshake_primitives(size_t n, protocol="Noise_IKpsk2_25519_ChaChaPoly_BLAKE2s"):
    """n handshakes' worth of raw primitives (2 keygens + 8 X25519 + the hashing), in C."""
    cdef int hid = _hash_id(protocol)
    cdef int rc
    with nogil:
        rc = noise_bench_raw_handshake(n, hid)
    if rc:
        raise UsageError("raw handshake loop failed")
    return n


def _bench_raw_aead(size_t n, size_t length, backend):
    """n raw ChaCha20-Poly1305 seal+open pairs of ``length`` bytes with one backend, in C."""
    cdef int b = _backend(backend)
    cdef int rc
    with nogil:
        rc = noise_bench_raw_aead(n, length, b)
    if rc:
        raise UsageError("raw AEAD loop failed")
    return n
