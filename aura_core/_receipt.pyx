# cython: language_level=3
# _receipt.pyx — Cython wrapper of csrc/receipt (receipt transcript, Hash32, batch sign, chain
# verify).  Works on packed 200-byte receipts (layout in csrc/receipt/aura_receipt.h and
# docs/wire.md); aura_core/receipts.py is the typed façade.  The GIL is released around every
# call that signs or verifies.  Also the relay's per-forward envelope id (appended straight into
# a window's packed bytearray) and the forward commitment over such a buffer.

from libc.stdint cimport uint8_t, uint64_t
from libc.string cimport memcpy
from cpython.bytearray cimport PyByteArray_AS_STRING, PyByteArray_GET_SIZE, PyByteArray_Resize
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_GET_SIZE

from aura_core._sodium_api cimport import_sodium
from aura_core.errors import ChainError, InvalidValue, KeyFormatError, SignatureError

import_sodium()

cdef extern from "aura_receipt.h":
    enum:
        AURA_RCPT_LEN
        AURA_RCPT_BODY_LEN
        AURA_RCPT_TRANSCRIPT_LEN
        AURA_RCPT_MAX_THREADS
        AURA_RCPT_OK
        AURA_RCPT_ERR_SIG
        AURA_RCPT_ERR_SIGNER
        AURA_RCPT_ERR_CTX
        AURA_RCPT_ERR_SRC
        AURA_RCPT_ERR_DST
        AURA_RCPT_ERR_EPOCH
        AURA_RCPT_ERR_NONCE
        AURA_RCPT_ERR_PREV
        AURA_RCPT_ERR_COST_ZERO
        AURA_RCPT_ERR_OVERFLOW
        AURA_RCPT_ERR_LIMIT
        AURA_RCPT_ERR_ARG

    ctypedef struct aura_rcpt_verify_opts:
        const uint8_t *pk
        const uint8_t *ctx
        const uint8_t *dst
        const uint8_t *start_prev
        uint64_t after_nonce
        uint64_t epoch
        uint64_t limit
        uint64_t spent_before
        int has_after_nonce, has_epoch, has_limit
        unsigned threads

    ctypedef struct aura_rcpt_verify_result:
        int code
        size_t index
        uint64_t total
        uint64_t last_nonce
        uint8_t last_hash[32]

    void aura_receipt_transcript(uint8_t *out, const uint8_t *rec) nogil
    void aura_receipt_hash(uint8_t *out, const uint8_t *rec) nogil
    int aura_receipt_sign_batch(uint8_t *recs, size_t n, const uint8_t *sk, int link,
                                uint8_t *last_hash, unsigned threads) nogil
    int aura_receipt_verify_chain(const uint8_t *recs, size_t n,
                                  const aura_rcpt_verify_opts *opts,
                                  aura_rcpt_verify_result *res) nogil
    void aura_receipt_authority_id(uint8_t *out, const uint8_t *pk) nogil
    void aura_receipt_bench_raw_sign(size_t n, const uint8_t *sk) nogil
    int aura_receipt_envelope_id(uint8_t *out, const uint8_t *frame, size_t len) nogil
    void aura_receipt_forward_commitment(uint8_t *out, uint8_t *ids, size_t n) nogil
    int aura_receipt_bench_raw_verify(size_t n, const uint8_t *sig, const uint8_t *msg,
                                      const uint8_t *pk) nogil

RECEIPT_LEN = AURA_RCPT_LEN
BODY_LEN = AURA_RCPT_BODY_LEN
TRANSCRIPT_LEN = AURA_RCPT_TRANSCRIPT_LEN
MAX_THREADS = AURA_RCPT_MAX_THREADS

# code -> (exception, message); the message names what was wrong, the index which receipt
_ERRORS = {
    AURA_RCPT_ERR_SIG: (SignatureError, "signature does not verify under the src key"),
    AURA_RCPT_ERR_SIGNER: (SignatureError, "src is not the authority of the verifying key (wrong signer)"),
    AURA_RCPT_ERR_CTX: (ChainError, "ctx differs from the chain's (cross-context receipt)"),
    AURA_RCPT_ERR_SRC: (ChainError, "src differs from the chain's"),
    AURA_RCPT_ERR_DST: (ChainError, "dst differs from the chain's"),
    AURA_RCPT_ERR_EPOCH: (ChainError, "epoch differs from the chain's (cross-epoch receipt)"),
    AURA_RCPT_ERR_NONCE: (ChainError, "nonce not strictly increasing (duplicate or reordered receipt)"),
    AURA_RCPT_ERR_PREV: (ChainError, "prev is not the Hash32 of the previous receipt (broken link)"),
    AURA_RCPT_ERR_COST_ZERO: (ChainError, "cost is zero"),
    AURA_RCPT_ERR_OVERFLOW: (ChainError, "cumulative cost overflows 64 bits"),
    AURA_RCPT_ERR_LIMIT: (ChainError, "cumulative cost exceeds the limit"),
}


cdef int _check_threads(int threads) except -1:
    if threads < 1 or threads > AURA_RCPT_MAX_THREADS:
        raise InvalidValue(f"threads must be 1..{AURA_RCPT_MAX_THREADS}")
    return 0


def transcript(const uint8_t[::1] rec) -> bytes:
    """The 152-byte signing transcript of a packed receipt (136 or 200 bytes)."""
    if rec.shape[0] != AURA_RCPT_LEN and rec.shape[0] != AURA_RCPT_BODY_LEN:
        raise InvalidValue("a packed receipt is 200 bytes (136 without its signature)")
    cdef uint8_t out[AURA_RCPT_TRANSCRIPT_LEN]
    aura_receipt_transcript(out, &rec[0])
    return out[:AURA_RCPT_TRANSCRIPT_LEN]


def receipt_hash(const uint8_t[::1] rec) -> bytes:
    """Hash32 of a packed receipt (136 or 200 bytes): 32 raw bytes."""
    if rec.shape[0] != AURA_RCPT_LEN and rec.shape[0] != AURA_RCPT_BODY_LEN:
        raise InvalidValue("a packed receipt is 200 bytes (136 without its signature)")
    cdef uint8_t out[32]
    aura_receipt_hash(out, &rec[0])
    return out[:32]


def authority_id(const uint8_t[::1] pk) -> bytes:
    """The 16-byte AuthorityId of an Ed25519 public key (C twin of AuthorityId.from_public_key)."""
    if pk.shape[0] != 32:
        raise KeyFormatError("an Ed25519 public key is 32 bytes")
    cdef uint8_t out[16]
    aura_receipt_authority_id(out, &pk[0])
    return out[:16]


def sign_batch(uint8_t[::1] recs, const uint8_t[::1] sk, bint link=True, int threads=1) -> bytes:
    """Sign packed receipts in place (``recs``: a writable buffer of n*200 bytes).

    With ``link``, receipt i > 0 gets prev = Hash32(receipt i-1).  Returns the Hash32 of the
    last receipt (zero bytes when the buffer is empty).
    """
    _check_threads(threads)
    if sk.shape[0] != 64:
        raise KeyFormatError("an Ed25519 secret key is 64 bytes")
    cdef size_t total = recs.shape[0]
    if total % AURA_RCPT_LEN:
        raise InvalidValue("receipt buffer length is not a multiple of 200")
    cdef size_t n = total // AURA_RCPT_LEN
    cdef uint8_t last[32]
    cdef uint8_t *p = &recs[0] if n else NULL
    cdef int rc
    with nogil:
        rc = aura_receipt_sign_batch(p, n, &sk[0], link, last, <unsigned> threads)
    if rc != AURA_RCPT_OK:
        raise InvalidValue("bad sign_batch arguments")
    return last[:32]


def verify_chain(const uint8_t[::1] recs not None, const uint8_t[::1] pk not None, *,
                 ctx=None, dst=None, start_prev=None, after_nonce=None, epoch=None,
                 limit=None, unsigned long long spent_before=0, int threads=1):
    """Verify a chain of packed receipts in one call (GIL released).

    Returns ``(total_cost, last_hash, last_nonce)``; raises :class:`SignatureError` or
    :class:`ChainError` whose ``index`` is the first bad receipt.
    """
    _check_threads(threads)
    if pk.shape[0] != 32:
        raise KeyFormatError("an Ed25519 public key is 32 bytes")
    cdef size_t total = recs.shape[0]
    if total % AURA_RCPT_LEN:
        n = total // AURA_RCPT_LEN
        raise ChainError("truncated receipt (buffer length is not a multiple of 200)", n)
    cdef size_t n_ = total // AURA_RCPT_LEN
    cdef aura_rcpt_verify_opts o
    cdef aura_rcpt_verify_result r
    cdef bytes ctx_b = _exact(ctx, 16, "ctx")
    cdef bytes dst_b = _exact(dst, 16, "dst")
    cdef bytes prev_b = _exact(start_prev, 32, "start_prev")
    o.pk = &pk[0]
    o.ctx = <const uint8_t *> ctx_b if ctx_b is not None else NULL
    o.dst = <const uint8_t *> dst_b if dst_b is not None else NULL
    o.start_prev = <const uint8_t *> prev_b if prev_b is not None else NULL
    o.has_after_nonce = after_nonce is not None
    o.after_nonce = _u64(after_nonce, "after_nonce") if after_nonce is not None else 0
    o.has_epoch = epoch is not None
    o.epoch = _u64(epoch, "epoch") if epoch is not None else 0
    o.has_limit = limit is not None
    o.limit = _u64(limit, "limit") if limit is not None else 0
    o.spent_before = spent_before
    o.threads = <unsigned> threads
    cdef const uint8_t *p = &recs[0] if n_ else NULL
    with nogil:
        aura_receipt_verify_chain(p, n_, &o, &r)
    if r.code != AURA_RCPT_OK:
        if r.code == AURA_RCPT_ERR_ARG:
            raise InvalidValue("bad verify_chain arguments")
        exc, msg = _ERRORS[r.code]
        if exc is SignatureError:
            raise SignatureError(f"receipt {r.index}: {msg}", r.index)
        raise exc(msg, r.index)
    return r.total, r.last_hash[:32], r.last_nonce


def envelope_id(const uint8_t[::1] frame) -> bytes:
    """The 32-byte envelope id of a DELIVER frame (C twin of aura_core.relay.envelope_id)."""
    cdef uint8_t out[32]
    if frame.shape[0] < 33 or aura_receipt_envelope_id(out, &frame[0], <size_t> frame.shape[0]):
        raise InvalidValue("not a DELIVER frame")
    return out[:32]


def add_envelope_id(bytearray ids not None, frame) -> int:
    """Append the envelope id of DELIVER ``frame`` to the packed ids ``ids``; returns how many
    ids ``ids`` now holds.  One call per relayed frame: no hash object, no temporary bytes."""
    if type(frame) is not bytes:
        frame = bytes(frame)
    cdef Py_ssize_t flen = PyBytes_GET_SIZE(frame)
    cdef Py_ssize_t m = PyByteArray_GET_SIZE(ids)
    if flen < 33:
        raise InvalidValue("not a DELIVER frame")
    if m % 32:
        raise InvalidValue("packed envelope ids: length is not a multiple of 32")
    PyByteArray_Resize(ids, m + 32)
    if aura_receipt_envelope_id(<uint8_t *> PyByteArray_AS_STRING(ids) + m,
                                <const uint8_t *> PyBytes_AS_STRING(frame), <size_t> flen):
        PyByteArray_Resize(ids, m)
        raise InvalidValue("not a DELIVER frame")
    return (m + 32) // 32


def forward_commitment_packed(uint8_t[::1] ids) -> bytes:
    """The forward commitment (32 raw bytes) over packed 32-byte envelope ids.  SORTS ``ids``
    IN PLACE (a writable buffer, e.g. a closed window's bytearray); GIL released."""
    cdef size_t total = ids.shape[0]
    if total % 32:
        raise InvalidValue("packed envelope ids: length is not a multiple of 32")
    cdef uint8_t out[32]
    cdef uint8_t *p = &ids[0] if total else NULL
    with nogil:
        aura_receipt_forward_commitment(out, p, total // 32)
    return out[:32]


cdef bytes _exact(value, Py_ssize_t size, str name):
    if value is None:
        return None
    b = bytes(value)
    if len(b) != size:
        raise InvalidValue(f"{name} must be {size} bytes")
    return b


cdef uint64_t _u64(value, str name) except? 0:
    if not isinstance(value, int) or not 0 <= value < (1 << 64):
        raise InvalidValue(f"{name} must be an int in 0..2**64-1")
    return <uint64_t> value


def _bench_raw_sign(size_t n, const uint8_t[::1] sk) -> int:
    """Limit: n raw libsodium Ed25519 signatures of a 152-byte message in a C loop."""
    if sk.shape[0] != 64:
        raise KeyFormatError("an Ed25519 secret key is 64 bytes")
    with nogil:
        aura_receipt_bench_raw_sign(n, &sk[0])
    return n


def _bench_raw_verify(size_t n, const uint8_t[::1] sig, const uint8_t[::1] msg,
                      const uint8_t[::1] pk) -> int:
    """Limit: n raw libsodium Ed25519 verifications of a 152-byte message in a C loop."""
    if sig.shape[0] != 64 or msg.shape[0] != AURA_RCPT_TRANSCRIPT_LEN or pk.shape[0] != 32:
        raise InvalidValue("sig 64, msg 152, pk 32 bytes")
    cdef int bad
    with nogil:
        bad = aura_receipt_bench_raw_verify(n, &sig[0], &msg[0], &pk[0])
    if bad:
        raise SignatureError("benchmark signature does not verify")
    return n
