# cython: language_level=3
# _reconcile.pyx — Cython wrapper of csrc/reconcile: GF(2^127 - 1) moments of packed sorted
# 32-byte hashes (power sums of a run, prefix moments, child cells) for journal sync.  The
# façade is aura_core/journal/reconcile.py (SortedIds); field elements come back as Python ints.
# The GIL is released around every scan of the hashes.

from libc.stdint cimport uint8_t, uint64_t
from libc.stdlib cimport free, malloc

cdef extern from "aura_reconcile.h":
    enum:
        AURA_REC_OK
        AURA_REC_MAX_POWERS
        AURA_REC_MAX_FANOUT_BITS
    int aura_rec_power_sums(const uint8_t *hashes, size_t n, size_t i, size_t j, unsigned m,
                            uint64_t *out) nogil
    int aura_rec_prefix(const uint8_t *hashes, size_t n, size_t step, uint64_t *p1, uint64_t *p2,
                        uint64_t *s3) nogil
    int aura_rec_cells(const uint8_t *hashes, size_t n, size_t i, size_t j, unsigned k, unsigned b,
                       uint64_t *counts, uint64_t *s1, uint64_t *s2) nogil
    int aura_rec_lower_bound(const uint8_t *hashes, size_t n, size_t lo, size_t hi,
                             const uint8_t *bound, size_t *pos) nogil

MAX_POWERS = AURA_REC_MAX_POWERS
MAX_FANOUT_BITS = AURA_REC_MAX_FANOUT_BITS

cdef inline object _elem(const uint64_t *w):
    return (<object>w[1] << 64) | <object>w[0]


cdef size_t _count(const uint8_t[::1] hashes) except? 0:
    if hashes.shape[0] % 32:
        raise ValueError("hash buffer is not a whole number of 32-byte hashes")
    return <size_t>hashes.shape[0] // 32


cdef void _check_run(size_t n, Py_ssize_t i, Py_ssize_t j) except *:
    if not 0 <= i <= j <= <Py_ssize_t>n:
        raise ValueError("hash positions out of range")


def power_sums(const uint8_t[::1] hashes, Py_ssize_t i, Py_ssize_t j, int m):
    """[Σ key^1, ..., Σ key^m] mod 2^127 - 1 over hash positions [i, j)."""
    cdef size_t n = _count(hashes)
    _check_run(n, i, j)
    if not 1 <= m <= AURA_REC_MAX_POWERS:
        raise ValueError("power count out of range")
    cdef uint64_t out[2 * AURA_REC_MAX_POWERS]
    cdef const uint8_t *p = &hashes[0] if n else <const uint8_t *>b""
    cdef int rc
    with nogil:
        rc = aura_rec_power_sums(p, n, <size_t>i, <size_t>j, <unsigned>m, out)
    if rc != AURA_REC_OK:
        raise ValueError("bad power-sum arguments")
    return [_elem(out + 2 * q) for q in range(m)]


def prefix_moments(const uint8_t[::1] hashes, Py_ssize_t step):
    """(p1, p2, s3): Σ key and Σ key^2 over positions [0, min(t * step, n)) for t = 0 ..
    ceil(n / step), and Σ key^3 over the whole buffer."""
    cdef size_t n = _count(hashes)
    if step < 1:
        raise ValueError("step must be positive")
    cdef size_t slots = 1 + (n + <size_t>step - 1) // <size_t>step
    cdef uint64_t *p1 = <uint64_t *>malloc(slots * 2 * sizeof(uint64_t))
    cdef uint64_t *p2 = <uint64_t *>malloc(slots * 2 * sizeof(uint64_t))
    cdef uint64_t s3[2]
    cdef const uint8_t *p = &hashes[0] if n else <const uint8_t *>b""
    cdef int rc
    cdef size_t t
    if p1 == NULL or p2 == NULL:
        free(p1)
        free(p2)
        raise MemoryError()
    try:
        with nogil:
            rc = aura_rec_prefix(p, n, <size_t>step, p1, p2, s3)
        if rc != AURA_REC_OK:
            raise ValueError("bad prefix arguments")
        return ([_elem(p1 + 2 * t) for t in range(slots)],
                [_elem(p2 + 2 * t) for t in range(slots)], _elem(s3))
    finally:
        free(p1)
        free(p2)


def lower_bound(const uint8_t[::1] hashes, const uint8_t[::1] bound, Py_ssize_t lo, Py_ssize_t hi):
    """The first position in [lo, hi] whose hash is >= the 32-byte ``bound`` (sorted hashes)."""
    cdef size_t n = _count(hashes)
    _check_run(n, lo, hi)
    if bound.shape[0] != 32:
        raise ValueError("bound is not 32 bytes")
    cdef size_t pos = 0
    # a binary search is ~20 compares: cheaper than releasing the GIL
    if aura_rec_lower_bound(&hashes[0] if n else <const uint8_t *>b"", n, <size_t>lo, <size_t>hi,
                            &bound[0], &pos) != AURA_REC_OK:
        raise ValueError("bad search arguments")
    return pos


def cells(const uint8_t[::1] hashes, Py_ssize_t i, Py_ssize_t j, int k, int b):
    """[(count, Σ key, Σ key^2)] of the 2^b children (hash bits k..k+b-1) of positions [i, j)."""
    cdef size_t n = _count(hashes)
    _check_run(n, i, j)
    if not (1 <= b <= AURA_REC_MAX_FANOUT_BITS and 0 <= k and k + b <= 128):
        raise ValueError("fan-out out of range")
    cdef size_t m = <size_t>1 << b
    cdef uint64_t *counts = <uint64_t *>malloc(m * 5 * sizeof(uint64_t))
    cdef uint64_t *s1
    cdef uint64_t *s2
    cdef const uint8_t *p = &hashes[0] if n else <const uint8_t *>b""
    cdef int rc
    cdef size_t c
    if counts == NULL:
        raise MemoryError()
    s1 = counts + m
    s2 = counts + 3 * m
    try:
        with nogil:
            rc = aura_rec_cells(p, n, <size_t>i, <size_t>j, <unsigned>k, <unsigned>b, counts, s1, s2)
        if rc != AURA_REC_OK:
            raise ValueError("bad cell arguments")
        return [(<object>counts[c], _elem(s1 + 2 * c), _elem(s2 + 2 * c)) for c in range(m)]
    finally:
        free(counts)
