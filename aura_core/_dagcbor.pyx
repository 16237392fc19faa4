# _dagcbor.pyx — the Python-object walkers of the strict DAG-CBOR codec (SPEC §3.3).
#
# Owns: the encoder over dict/list/tuple/int/bytes/bytearray/memoryview/str/bool/None/float/CID,
# the streaming digest (the same walker writing into a small buffer flushed into a hash), and the
# decoder building Python objects.  Byte-level work (heads, UTF-8, CID checks, SHA-256, hash sink)
# is plain C in csrc/dagcbor/; the public façade is aura_core/dagcbor.py.
#
# Theory of operation.
# Encoder: one state (_Enc) is reused across calls (its scratch buffer survives, so a call
# allocates only its result); a re-entrant call gets a fresh one.  The walk runs no Python code
# (exact-type checks first, CIDs read from their C struct, ranges checked by comparison so no
# exception is raised mid-walk), so encode() reads the caller's objects through borrowed
# references; digest()/cid() hold references (they drop the GIL around large payloads, when
# another thread could mutate the value).  Map key order comes from a small cache keyed by the
# key objects' identities (layouts repeat: same literal keys, same insertion order), with the
# keys pre-encoded; a miss sorts (length, then bytes) and fills the slot.  Errors: a failure
# snapshots the current path (per-depth key or index, kept as the walk goes) and raises
# _EncFail; the entry point turns it into EncodeError(message, path="$.a[3].b").
# Digest: the same walker with the buffer flushed into the hash when full, and payloads of
# 4 KiB and more hashed in place: memory stays at the 16 KiB scratch buffer.
# Decoder: a single recursive pass; every canonical-form check is made as the bytes are read,
# and each failure raises a DecodeError subclass with the offset of the offending head.  Short
# ASCII keys and strings come from direct-mapped caches; map layouts (the key sequence of a
# record kind, installed when seen twice, keys interned, two per set so a kind with an optional
# key keeps both) are remembered so repeated records skip key lookups and order checks, and on
# CPython 3.11-3.13 such a map is a copy of the layout's template dict with its values stored
# in place (no hashing or probing per entry).  Containers stay untracked by the GC until filled
# (on every version and path), so no Python code run by an allocation (a finalizer, a gc
# callback) can reach one half built.  The encoder reads a str-keyed dict's entry table
# directly on 3.11-3.13 (PyDict_Next elsewhere).
# All caches are module-level, touched only with the GIL held, and guarded by generation counters
# where a nested call can replace a slot that an outer level is still using.

cimport cython
from libc.stdint cimport uint8_t, uint64_t, int64_t, uint32_t
from libc.string cimport memcpy, memcmp
from libc.stdlib cimport malloc, realloc, free

cdef extern from "<stdlib.h>" nogil:
    void *aligned_alloc(size_t alignment, size_t size)
from libc.math cimport isfinite
from cpython.object cimport PyObject, PyTypeObject
from cpython.ref cimport Py_INCREF, Py_DECREF, Py_XDECREF
from cpython.bytes cimport PyBytes_FromStringAndSize, PyBytes_AS_STRING, PyBytes_GET_SIZE
from cpython.bytearray cimport PyByteArray_AS_STRING, PyByteArray_GET_SIZE
from cpython.buffer cimport PyObject_GetBuffer, PyBuffer_Release, PyBUF_SIMPLE, PyBUF_WRITABLE
from cpython.list cimport PyList_New, PyList_GET_SIZE, PyList_GET_ITEM, PyList_SET_ITEM
from cpython.tuple cimport PyTuple_GET_SIZE, PyTuple_GET_ITEM
from cpython.dict cimport PyDict_New, PyDict_SetItem, PyDict_Next, PyDict_Size, PyDict_Copy
from cpython.float cimport PyFloat_AS_DOUBLE, PyFloat_FromDouble
from cpython.long cimport PyLong_FromUnsignedLongLong, PyLong_FromLongLong

from aura_core._sodium_api cimport import_sodium

import_sodium()

from aura_core.errors import (DecodeError, EncodeError, InvalidValue, NonCanonicalError,
                              TruncatedError, UnsupportedError)

cdef extern from "Python.h":
    PyTypeObject *Py_TYPE(object o)
    long long PyLong_AsLongLongAndOverflow(object o, int *overflow) except? -1
    unsigned long long PyLong_AsUnsignedLongLong(object o) except? <unsigned long long>-1
    const char *PyUnicode_AsUTF8AndSize(object o, Py_ssize_t *size) except NULL
    object PyUnicode_DecodeUTF8(const char *s, Py_ssize_t size, const char *errors)
    object PyUnicode_DecodeASCII(const char *s, Py_ssize_t size, const char *errors)
    object PyUnicode_New(Py_ssize_t size, unsigned int maxchar)
    object PyLong_FromLong(long v)
    void PyUnicode_InternInPlace(PyObject **p)
    bint PyUnicode_IS_COMPACT_ASCII(object o)
    Py_ssize_t PyUnicode_GET_LENGTH(object o)
    void *PyUnicode_DATA(object o)
    bint PyLong_Check(object o)
    bint PyUnicode_Check(object o)
    bint PyBytes_Check(object o)
    bint PyByteArray_Check(object o)
    object PyNumber_Index(object o)
    bint PyDict_Check(object o)
    bint PyList_Check(object o)
    bint PyTuple_Check(object o)
    bint PyFloat_Check(object o)

cdef extern from *:
    """
    /* A dict sized for n entries up front (no resizes while the decoder fills it). */
    #if PY_VERSION_HEX < 0x030D0000
    #define aura_dict_presized(n) _PyDict_NewPresized(n)
    #else
    #define aura_dict_presized(n) PyDict_New()
    #endif
    """
    object aura_dict_presized(Py_ssize_t n)
    PyObject *PyErr_NoMemory()

cdef extern from *:
    """
    /* The value slots of a fresh PyDict_Copy() of a decoder template (see _dec_map_small):
       CPython 3.11's combined, str-keyed table (Include/internal/pycore_dict.h), mirrored here;
       3.12 and 3.13 keep the same layout (3.13's free-threaded build adds a mutex: excluded).
       Entry i is {key, value} at slots[2i], slots[2i + 1].  NULL (callers then insert with
       PyDict_SetItem) on any other version or if the copy is not the expected shape. */
    #if PY_VERSION_HEX >= 0x030B0000 && PY_VERSION_HEX < 0x030E0000 && !defined(Py_GIL_DISABLED)
    typedef struct {
        Py_ssize_t dk_refcnt;
        uint8_t dk_log2_size;
        uint8_t dk_log2_index_bytes;
        uint8_t dk_kind;                /* 1: DICT_KEYS_UNICODE */
        uint32_t dk_version;
        Py_ssize_t dk_usable;
        Py_ssize_t dk_nentries;
        char dk_indices[];
    } aura_dictkeys311;
    /* Set at import by aura_dict_probe() once the mirrored layout is seen to hold. */
    static int aura_dict_layout_ok = 0;
    static inline PyObject **aura_dict_slots(PyObject *d, Py_ssize_t n) {
        PyDictObject *mp = (PyDictObject *)d;
        aura_dictkeys311 *k = (aura_dictkeys311 *)mp->ma_keys;
        if (!aura_dict_layout_ok || mp->ma_values != NULL || mp->ma_used != n
                || k->dk_refcnt != 1 || k->dk_kind != 1 || k->dk_nentries != n)
            return NULL;
        return (PyObject **)(k->dk_indices + ((size_t)1 << k->dk_log2_index_bytes));
    }
    /* The entries of a combined str-keyed table, {key, value} pairs in insertion order, a
       NULL value marking a deleted one; *count gets their number.  NULL for other shapes
       (split or general tables, other versions): the encoder then uses PyDict_Next. */
    static inline PyObject **aura_dict_entries(PyObject *d, Py_ssize_t *count) {
        PyDictObject *mp = (PyDictObject *)d;
        aura_dictkeys311 *k = (aura_dictkeys311 *)mp->ma_keys;
        if (!aura_dict_layout_ok || mp->ma_values != NULL || k->dk_kind != 1)
            return NULL;
        *count = k->dk_nentries;
        return (PyObject **)(k->dk_indices + ((size_t)1 << k->dk_log2_index_bytes));
    }
    /* d: a fresh {k1: v1, k2: v2} built by PyDict_SetItem; the fast paths are enabled only
       if the mirrored layout finds exactly those entries there. */
    static int aura_dict_probe(PyObject *d, PyObject *k1, PyObject *v1, PyObject *k2,
                               PyObject *v2) {
        PyObject **e;
        aura_dict_layout_ok = 1;
        e = aura_dict_slots(d, 2);
        aura_dict_layout_ok = e != NULL && e[0] == k1 && e[1] == v1 && e[2] == k2 && e[3] == v2;
        return aura_dict_layout_ok;
    }
    #else
    static inline PyObject **aura_dict_slots(PyObject *d, Py_ssize_t n) {
        (void)d; (void)n;
        return NULL;
    }
    static inline PyObject **aura_dict_entries(PyObject *d, Py_ssize_t *count) {
        (void)d; (void)count;
        return NULL;
    }
    static int aura_dict_probe(PyObject *d, PyObject *k1, PyObject *v1, PyObject *k2,
                               PyObject *v2) {
        (void)d; (void)k1; (void)v1; (void)k2; (void)v2;
        return 0;
    }
    #endif
    """
    PyObject **aura_dict_slots(object d, Py_ssize_t n)
    PyObject **aura_dict_entries(object d, Py_ssize_t *count)
    int aura_dict_probe(object d, object k1, object v1, object k2, object v2)
    bint PyType_IS_GC(PyTypeObject *t)
    bint PyObject_GC_IsTracked(object o)
    void PyObject_GC_Track(object o)
    void PyObject_GC_UnTrack(object o)

cdef extern from "dagcbor.h" nogil:
    enum:
        AURA_DC_MAX_DEPTH
        AURA_DC_OK
        AURA_DC_TRUNCATED
        AURA_DC_NONMINIMAL
        AURA_DC_INDEFINITE
        AURA_DC_RESERVED
        AURA_DC_BAD_CID
        AURA_DC_HASH_SHA256
        AURA_DC_HASH_BLAKE2B256
    ctypedef struct aura_dc_sink:
        uint64_t total
    int aura_dc_read_head(const uint8_t *p, size_t n, size_t *pos, unsigned *major,
                          unsigned *info, uint64_t *val)
    size_t aura_dc_write_head(uint8_t *p, unsigned mt, uint64_t v)
    size_t aura_dc_write_float(uint8_t *p, double d)
    void aura_dc_copy_small(uint8_t *dst, const uint8_t *src, size_t n)
    int aura_dc_put_head(uint8_t *buf, size_t *len, size_t cap, unsigned mt, uint64_t v)
    int aura_dc_put_string(uint8_t *buf, size_t *len, size_t cap, unsigned mt,
                           const uint8_t *p, size_t n)
    double aura_dc_bits_to_double(uint64_t bits)
    int aura_dc_bits_finite(uint64_t bits)
    int aura_dc_key_cmp(const uint8_t *a, size_t al, const uint8_t *b, size_t bl)
    int aura_dc_eq_short(const uint8_t *a, const uint8_t *b, size_t n)
    uint32_t aura_dc_short_hash(const uint8_t *p, size_t n)
    size_t aura_dc_utf8_invalid_at(const uint8_t *p, size_t n)
    int aura_dc_is_ascii(const uint8_t *p, size_t n)
    int aura_dc_cid_check(const uint8_t *p, size_t n, size_t *bad)
    int aura_dc_cid_check_raw(const uint8_t *p, size_t n, size_t *bad)
    int aura_dc_sink_init(aura_dc_sink *s, int alg)
    void aura_dc_sink_update(aura_dc_sink *s, const uint8_t *p, size_t n)
    void aura_dc_sink_final(aura_dc_sink *s, uint8_t *out)
    ctypedef struct aura_sha256:
        uint64_t total
    void aura_sha256_init(aura_sha256 *s)
    void aura_sha256_update(aura_sha256 *s, const uint8_t *p, size_t n)
    void aura_sha256_final(aura_sha256 *s, uint8_t *out)
    const char *aura_sha256_impl()
    int aura_sha256_force_portable(int on)

MAX_DEPTH = AURA_DC_MAX_DEPTH



cdef class CIDBase:
    """Storage of a CID (aura_core.cid.CID subclasses it and adds the API): the binary form
    and the lazily parsed fields.  Being a C struct, the walkers read and fill it directly."""
    cdef public bytes _raw
    cdef public object _fields


# aura_core.cid.CID, registered by that module when it is imported (it subclasses CIDBase).
cdef type _CID_TYPE = None


def _register_cid_type(type cls):
    global _CID_TYPE
    if not issubclass(cls, CIDBase):
        raise TypeError("the CID type must subclass CIDBase")
    _CID_TYPE = cls


cdef type _cid_type():
    if _CID_TYPE is None:
        import aura_core.cid  # noqa: F401  (registers the class)
    return _CID_TYPE


cdef tuple _NO_ARGS = ()


cdef inline object _new_cid(bytes raw):
    # The registered type's tp_new (CIDBase's, inherited) directly: no Python-level call.
    cdef type t = _cid_type()
    cdef CIDBase c = <CIDBase> (<PyTypeObject *> t).tp_new(t, <PyObject *> _NO_ARGS, NULL)
    c._raw = raw
    return c


# Scratch buffer: its starting size, the size above which it is given back after a call, the
# payload size from which digest() hashes a byte/text payload in place instead of copying it,
# and the size from which that hashing runs without the GIL.
cdef enum:
    SCRATCH = 16384
    KEEP_MAX = 1 << 20
    DIRECT_MIN = 4096
    NOGIL_MIN = 1 << 16
    STACK_KV = 32


class _EncFail(Exception):
    """Internal: an encode failure; the entry point turns it into EncodeError with the path."""


cdef struct KV:
    PyObject *k
    PyObject *v
    const char *kp
    Py_ssize_t kl


# Key-order cache: maps built by the same code have the same key objects in the same insertion
# order, so the canonical permutation is computed once per layout.  Entries hold references to
# their keys, so a key's address cannot be reused by another string while it is cached.
cdef enum:
    LAYOUTS = 64
    LAYOUT_MAXKEYS = 24

cdef enum:
    KENC_MAX = 32      # pre-encoded keys: head + up to 30 bytes of UTF-8

cdef struct Layout:
    Py_ssize_t n
    PyObject *keys[LAYOUT_MAXKEYS]
    uint8_t perm[LAYOUT_MAXKEYS]
    bint encoded                               # every key pre-encoded below
    uint64_t gen                               # bumped whenever the slot is replaced
    uint8_t klen[LAYOUT_MAXKEYS]               # in canonical order
    uint8_t kenc[LAYOUT_MAXKEYS][KENC_MAX]

cdef Layout _layouts[LAYOUTS]


@cython.final
cdef class _Enc:
    cdef uint8_t *buf
    cdef size_t len
    cdef size_t cap
    cdef bint sinking
    cdef bint busy
    # strong: hold a reference to every container item while it is encoded.  digest() needs it
    # (it releases the GIL around big payloads, and another thread could then mutate the
    # value); encode() does not: the walk runs no Python code and never drops the GIL, so the
    # caller's references keep everything alive.
    cdef bint strong
    cdef aura_dc_sink *sink     # separately allocated: the BLAKE2b state wants 64-byte alignment
    cdef list path
    # Where the walker is: for each container depth 1..depth, the map key or list index being
    # encoded (keys borrowed: the dict walker holds them).  Read only when a failure is raised.
    cdef int depth
    cdef PyObject *pkey[AURA_DC_MAX_DEPTH + 2]
    cdef Py_ssize_t pidx[AURA_DC_MAX_DEPTH + 2]

    def __cinit__(self):
        self.buf = <uint8_t *> malloc(SCRATCH)
        self.sink = <aura_dc_sink *> aligned_alloc(64, (sizeof(aura_dc_sink) + 63) & ~(<size_t> 63))
        if self.buf == NULL or self.sink == NULL:
            raise MemoryError()
        self.cap = SCRATCH
        self.len = 0
        self.sinking = False
        self.strong = False
        self.busy = False
        self.path = []
        self.depth = 0

    def __dealloc__(self):
        free(self.buf)
        free(self.sink)

    cdef int reset(self) except -1:
        self.len = 0
        self.depth = 0
        self.sinking = False
        self.strong = False
        if self.cap > KEEP_MAX:
            free(self.buf)
            self.buf = <uint8_t *> malloc(SCRATCH)
            self.cap = SCRATCH if self.buf != NULL else 0
            if self.buf == NULL:
                raise MemoryError()
        return 0

    cdef int fail(self, str message) except -1:
        # Take references to the path's keys before allocating anything (an allocation can run
        # the GC, and a finalizer could drop a key the walker only borrows).
        cdef int d
        cdef list path
        for d in range(1, self.depth + 1):
            if self.pidx[d] < 0:
                Py_INCREF(<object> self.pkey[d])
        path = []
        for d in range(1, self.depth + 1):
            if self.pidx[d] >= 0:
                path.append(self.pidx[d])
            else:
                path.append(<object> self.pkey[d])
                Py_DECREF(<object> self.pkey[d])
        self.path = path
        raise _EncFail(message)

    # The buffer primitives raise nothing through Cython (a failed allocation sets MemoryError
    # with PyErr_NoMemory and returns -1), so they carry no traceback code and stay small
    # enough for the C compiler to inline them into the walkers.

    cdef inline void flush(self) noexcept:
        if self.len:
            aura_dc_sink_update(self.sink, self.buf, self.len)
            self.len = 0

    cdef int grow(self, size_t need) noexcept:
        # Called when `need` more bytes do not fit: a digest flushes, an encode doubles.
        cdef size_t newcap
        cdef uint8_t *nb
        if self.sinking:
            self.flush()
            if need <= self.cap:
                return 0
        newcap = self.cap * 2
        while newcap < self.len + need:
            newcap *= 2
        nb = <uint8_t *> realloc(self.buf, newcap)
        if nb == NULL:
            PyErr_NoMemory()
            return -1
        self.buf = nb
        self.cap = newcap
        return 0

    cdef inline int head(self, unsigned mt, uint64_t v) except -1:
        if self.len + 9 > self.cap and self.grow(9) < 0:
            return -1
        self.len += aura_dc_write_head(self.buf + self.len, mt, v)
        return 0

    cdef inline int byte(self, uint8_t b) except -1:
        if self.len + 1 > self.cap and self.grow(1) < 0:
            return -1
        self.buf[self.len] = b
        self.len += 1
        return 0

    cdef inline int payload(self, const uint8_t *p, size_t n) except -1:
        if self.sinking and n >= DIRECT_MIN:
            self.direct(p, n)
            return 0
        if self.len + n > self.cap and self.grow(n) < 0:
            return -1
        if n <= 32:
            aura_dc_copy_small(self.buf + self.len, p, n)
        else:
            memcpy(self.buf + self.len, p, n)
        self.len += n
        return 0

    cdef void direct(self, const uint8_t *p, size_t n) noexcept:
        # Large payloads of a digest go straight into the hash (the walker holds the object).
        self.flush()
        if n >= NOGIL_MIN:
            with nogil:
                aura_dc_sink_update(self.sink, p, n)
        else:
            aura_dc_sink_update(self.sink, p, n)


cdef _Enc _ENC = _Enc()


cdef inline _Enc _acquire():
    cdef _Enc e = _ENC
    if e.busy:
        e = _Enc()
    e.busy = True
    return e


cdef inline void _release(_Enc e):
    e.busy = False
    try:
        e.reset()
    except MemoryError:
        pass


cdef str _path_text(list segs):
    cdef list out = ["$"]
    for s in segs:
        if isinstance(s, int):
            out.append(f"[{s}]")
        elif isinstance(s, str) and s.isidentifier():
            out.append(f".{s}")
        else:
            out.append(f"[{s!r}]")
    return "".join(out)


cdef inline const char *_utf8(object o, Py_ssize_t *n):
    # Compact ASCII strings are their own UTF-8; others get CPython's cached UTF-8 form.
    if PyUnicode_IS_COMPACT_ASCII(o):
        n[0] = PyUnicode_GET_LENGTH(o)
        return <const char *> PyUnicode_DATA(o)
    try:
        return PyUnicode_AsUTF8AndSize(o, n)
    except UnicodeError:
        return NULL


cdef inline int _enc_str(_Enc e, object o) except -1:
    cdef Py_ssize_t n = 0
    cdef const char *s = _utf8(o, &n)
    if s == NULL:
        e.fail("string is not valid Unicode (lone surrogate)")
    if aura_dc_put_string(e.buf, &e.len, e.cap, 3, <const uint8_t *> s, <size_t> n):
        e.head(3, <uint64_t> n)
        e.payload(<const uint8_t *> s, <size_t> n)
    return 0


cdef object _U64_MAX = 2**64 - 1
cdef object _N64_MIN = -2**64


cdef int _enc_bigint(_Enc e, object o, int overflow) except -1:
    # Range-checked by comparison first, so no OverflowError is ever raised mid-walk; an int
    # subclass is first copied to an exact int (PyNumber_Index does that in C), so the
    # comparison and subtraction below cannot run a subclass's Python methods.
    if type(o) is not int:
        o = PyNumber_Index(o)
    if overflow > 0:
        if o > _U64_MAX:
            e.fail("integer outside -2**64 .. 2**64-1")
        return e.head(0, PyLong_AsUnsignedLongLong(o))
    if o < _N64_MIN:
        e.fail("integer outside -2**64 .. 2**64-1")
    return e.head(1, PyLong_AsUnsignedLongLong(-1 - o))


cdef inline int _enc_int(_Enc e, object o) except -1:
    cdef int overflow = 0
    cdef long long v = PyLong_AsLongLongAndOverflow(o, &overflow)
    if overflow == 0:
        if v >= 0:
            if aura_dc_put_head(e.buf, &e.len, e.cap, 0, <uint64_t> v):
                return e.head(0, <uint64_t> v)
            return 0
        if aura_dc_put_head(e.buf, &e.len, e.cap, 1, <uint64_t> (-(v + 1))):
            return e.head(1, <uint64_t> (-(v + 1)))
        return 0
    return _enc_bigint(e, o, overflow)


cdef int _enc_buffer(_Enc e, object o) except -1:
    cdef Py_buffer view
    try:
        PyObject_GetBuffer(o, &view, PyBUF_SIMPLE)
    except (BufferError, TypeError) as exc:
        e.fail(f"byte buffer not contiguous: {exc}")
    try:
        e.head(2, <uint64_t> view.len)
        e.payload(<const uint8_t *> view.buf, <size_t> view.len)
    finally:
        PyBuffer_Release(&view)
    return 0


cdef int _enc_cid(_Enc e, object o) except -1:
    # The stored binary form, read from the struct: no Python code runs (subclass overrides of
    # __bytes__ are not consulted).
    cdef bytes raw = (<CIDBase> o)._raw
    if raw is None:
        e.fail("CID without a binary form")
    cdef Py_ssize_t n = PyBytes_GET_SIZE(raw)
    e.head(6, 42)
    e.head(2, <uint64_t> (n + 1))
    e.byte(0)
    e.payload(<const uint8_t *> PyBytes_AS_STRING(raw), <size_t> n)
    return 0


cdef int _enc_list(_Enc e, object o, int depth) except -1:
    cdef Py_ssize_t n = PyList_GET_SIZE(o)
    cdef Py_ssize_t i = 0
    cdef object item
    e.head(4, <uint64_t> n)
    e.depth = depth
    while i < n:
        if PyList_GET_SIZE(o) != n:
            e.fail("list changed size during encoding")
        e.pidx[depth] = i
        if e.strong:
            item = <object> PyList_GET_ITEM(o, i)    # a counted reference while it is encoded
            _enc(e, item, depth)
        else:
            _enc_item(e, PyList_GET_ITEM(o, i), depth)
        i += 1
    e.depth = depth - 1
    return 0


cdef int _enc_tuple(_Enc e, object o, int depth) except -1:
    cdef Py_ssize_t n = PyTuple_GET_SIZE(o)
    cdef Py_ssize_t i = 0
    e.head(4, <uint64_t> n)
    e.depth = depth
    while i < n:
        e.pidx[depth] = i
        _enc(e, <object> PyTuple_GET_ITEM(o, i), depth)
        i += 1
    e.depth = depth - 1
    return 0


cdef int _sort_keys(_Enc e, KV *kv, Py_ssize_t n, Py_ssize_t *order) except -1:
    # Canonical order by insertion sort (maps are small); keys must be str and distinct.
    cdef Py_ssize_t i, j, cur
    cdef int c
    for i in range(n):
        if not PyUnicode_Check(<object> kv[i].k):
            e.fail(f"map key must be str, not {type(<object> kv[i].k).__name__}")
        kv[i].kp = _utf8(<object> kv[i].k, &kv[i].kl)
        if kv[i].kp == NULL:
            e.depth += 1
            e.pkey[e.depth] = kv[i].k
            e.pidx[e.depth] = -1
            e.fail("map key is not valid Unicode (lone surrogate)")
    for i in range(n):
        cur = i
        j = i
        while j > 0:
            c = aura_dc_key_cmp(<const uint8_t *> kv[order[j - 1]].kp, <size_t> kv[order[j - 1]].kl,
                                <const uint8_t *> kv[cur].kp, <size_t> kv[cur].kl)
            if c <= 0:
                if c == 0:
                    e.fail("duplicate map key (str subclasses)")
                break
            order[j] = order[j - 1]
            j -= 1
        order[j] = cur
    return 0


cdef int _enc_dict_items(_Enc e, object o, KV *kv, Py_ssize_t n, Py_ssize_t *order,
                         int depth) except -1:
    cdef Py_ssize_t pos = 0, i = 0, j, ne = 0
    cdef PyObject *k
    cdef PyObject *v
    cdef size_t h = 0
    cdef Layout *lay = NULL
    cdef bint hit = False
    cdef const char *kp
    cdef Py_ssize_t kl = 0
    cdef PyObject **ent = aura_dict_entries(o, &ne)
    # Collect with references held (released by the caller, whatever happens).  A str-keyed
    # table is read directly (no Python code runs meanwhile), others through PyDict_Next.
    if ent != NULL:
        for j in range(ne):
            if ent[2 * j + 1] != NULL and i < n:
                k = ent[2 * j]
                kv[i].k = k
                kv[i].v = ent[2 * j + 1]
                i += 1
                h = (h ^ <size_t> k) * <size_t> 0x9E3779B97F4A7C15ULL
    else:
        while i < n and PyDict_Next(o, &pos, &k, &v):
            kv[i].k = k
            kv[i].v = v
            i += 1
            h = (h ^ <size_t> k) * <size_t> 0x9E3779B97F4A7C15ULL
    if e.strong:
        for j in range(i):
            Py_INCREF(<object> kv[j].k)
            Py_INCREF(<object> kv[j].v)
        (<Py_ssize_t *> &kv[n])[0] = i    # tell the caller how many references to drop
    if i != n or PyDict_Size(o) != n:
        e.fail("dict changed size during encoding")
    if n <= LAYOUT_MAXKEYS:
        lay = &_layouts[(h >> 58) & (LAYOUTS - 1)]
        if lay.n == n:
            hit = True
            for j in range(n):
                if lay.keys[j] != kv[j].k:
                    hit = False
                    break
    if hit:
        if lay.encoded:
            return _emit_layout(e, kv, lay, n, depth)
        for j in range(n):
            order[j] = lay.perm[j]
    else:
        for j in range(n):
            order[j] = j
        _sort_keys(e, kv, n, order)
        if lay != NULL:
            for j in range(lay.n):
                Py_DECREF(<object> lay.keys[j])
            lay.n = n
            lay.encoded = True
            lay.gen += 1
            for j in range(n):
                lay.keys[j] = kv[j].k
                Py_INCREF(<object> kv[j].k)
                lay.perm[j] = <uint8_t> order[j]
                i = order[j]
                if kv[i].kl <= 30:      # head + key within one 32-byte small copy
                    lay.klen[j] = <uint8_t> aura_dc_write_head(lay.kenc[j], 3, <uint64_t> kv[i].kl)
                    memcpy(&lay.kenc[j][lay.klen[j]], kv[i].kp, <size_t> kv[i].kl)
                    lay.klen[j] += <uint8_t> kv[i].kl
                else:
                    lay.encoded = False
    e.head(5, <uint64_t> n)
    e.depth = depth
    e.pidx[depth] = -1
    for j in range(n):
        i = order[j]
        kp = _utf8(<object> kv[i].k, &kl)      # cannot fail: checked when the layout was made
        e.head(3, <uint64_t> kl)
        e.payload(<const uint8_t *> kp, <size_t> kl)
        e.pkey[depth] = kv[i].k
        _enc_item(e, kv[i].v, depth)
    e.depth = depth - 1
    return 0


cdef int _emit_layout(_Enc e, KV *kv, Layout *lay, Py_ssize_t n, int depth) except -1:
    # Known layout: keys are copied pre-encoded, values follow in canonical order.  A nested
    # map may replace this cache slot meanwhile: the generation tells, and the keys then come
    # from the key objects (the permutation was copied first).
    cdef uint8_t perm[LAYOUT_MAXKEYS]
    cdef uint64_t gen = lay.gen
    cdef Py_ssize_t j, i, kl = 0
    cdef size_t m
    cdef const char *kp
    memcpy(perm, lay.perm, <size_t> n)
    e.head(5, <uint64_t> n)
    e.depth = depth
    e.pidx[depth] = -1
    for j in range(n):
        i = perm[j]
        if lay.gen == gen:
            m = lay.klen[j]
            if e.len + KENC_MAX > e.cap and e.grow(KENC_MAX) < 0:
                return -1
            aura_dc_copy_small(e.buf + e.len, lay.kenc[j], m)
            e.len += m
        else:
            kp = _utf8(<object> kv[i].k, &kl)
            e.head(3, <uint64_t> kl)
            e.payload(<const uint8_t *> kp, <size_t> kl)
        e.pkey[depth] = kv[i].k
        _enc_item(e, kv[i].v, depth)
    e.depth = depth - 1
    return 0


cdef int _enc_dict(_Enc e, object o, int depth) except -1:
    cdef Py_ssize_t n = PyDict_Size(o)
    cdef KV stack_kv[STACK_KV + 1]
    cdef Py_ssize_t stack_order[STACK_KV]
    cdef KV *kv = stack_kv
    cdef Py_ssize_t *order = stack_order
    cdef Py_ssize_t j, held
    if n == 0:
        return e.head(5, 0)
    if n > STACK_KV:
        kv = <KV *> malloc(<size_t> (n + 1) * sizeof(KV))
        order = <Py_ssize_t *> malloc(<size_t> n * sizeof(Py_ssize_t))
        if kv == NULL or order == NULL:
            free(kv)
            free(order)
            raise MemoryError()
    (<Py_ssize_t *> &kv[n])[0] = 0
    try:
        _enc_dict_items(e, o, kv, n, order, depth)
    finally:
        held = (<Py_ssize_t *> &kv[n])[0]
        for j in range(held):
            Py_DECREF(<object> kv[j].k)
            Py_DECREF(<object> kv[j].v)
        if kv != stack_kv:
            free(kv)
            free(order)
    return 0


cdef int _enc_other(_Enc e, object o, int depth) except -1:
    # Subclasses and rarer types, after the exact-type fast path of _enc.
    cdef double d
    cdef bytes copy
    if PyFloat_Check(o):
        d = PyFloat_AS_DOUBLE(o)
        if not isfinite(d):
            e.fail("NaN and Infinity are outside the data model")
        if e.len + 9 > e.cap and e.grow(9) < 0:
            return -1
        e.len += aura_dc_write_float(e.buf + e.len, d)
        return 0
    if isinstance(o, CIDBase):
        return _enc_cid(e, o)
    if type(o) is bytearray or type(o) is memoryview:
        return _enc_buffer(e, o)
    if PyUnicode_Check(o):
        return _enc_str(e, o)
    if PyLong_Check(o):
        return _enc_int(e, o)
    if PyBytes_Check(o):
        # bytes subclass: the immutable storage directly (a subclass could define __buffer__)
        e.head(2, <uint64_t> PyBytes_GET_SIZE(o))
        return e.payload(<const uint8_t *> PyBytes_AS_STRING(o), <size_t> PyBytes_GET_SIZE(o))
    if PyByteArray_Check(o):
        # bytearray subclass: a private copy of its storage (no buffer protocol, which a
        # subclass may override, and nothing another thread can resize while hashing)
        copy = PyBytes_FromStringAndSize(PyByteArray_AS_STRING(o), PyByteArray_GET_SIZE(o))
        e.head(2, <uint64_t> PyBytes_GET_SIZE(copy))
        return e.payload(<const uint8_t *> PyBytes_AS_STRING(copy), <size_t> PyBytes_GET_SIZE(copy))
    if PyDict_Check(o) or PyList_Check(o) or PyTuple_Check(o):
        if depth >= AURA_DC_MAX_DEPTH:
            e.fail(f"nesting deeper than {AURA_DC_MAX_DEPTH}")
        if PyDict_Check(o):
            return _enc_dict(e, o, depth + 1)
        if PyList_Check(o):
            return _enc_list(e, o, depth + 1)
        return _enc_tuple(e, o, depth + 1)
    e.fail(f"{type(o).__name__} is outside the DAG-CBOR data model")


cdef int _enc(_Enc e, object o, int depth) except -1:
    cdef type t = type(o)
    # Exact types first (the common case), in the order facts use them.
    if t is str:
        return _enc_str(e, o)
    if t is bytes:
        e.head(2, <uint64_t> PyBytes_GET_SIZE(o))
        return e.payload(<const uint8_t *> PyBytes_AS_STRING(o), <size_t> PyBytes_GET_SIZE(o))
    if t is int:
        return _enc_int(e, o)
    if t is dict:
        if depth >= AURA_DC_MAX_DEPTH:
            e.fail(f"nesting deeper than {AURA_DC_MAX_DEPTH}")
        return _enc_dict(e, o, depth + 1)
    if t is list:
        if depth >= AURA_DC_MAX_DEPTH:
            e.fail(f"nesting deeper than {AURA_DC_MAX_DEPTH}")
        return _enc_list(e, o, depth + 1)
    if o is None:
        return e.byte(0xf6)
    if o is True:
        return e.byte(0xf5)
    if o is False:
        return e.byte(0xf4)
    if t is tuple:
        if depth >= AURA_DC_MAX_DEPTH:
            e.fail(f"nesting deeper than {AURA_DC_MAX_DEPTH}")
        return _enc_tuple(e, o, depth + 1)
    if t is _CID_TYPE:
        return _enc_cid(e, o)
    return _enc_other(e, o, depth)


cdef inline int _enc_item(_Enc e, PyObject *v, int depth) except -1:
    # The leaves facts are made of, inline; everything else through _enc.
    cdef PyObject *t = <PyObject *> Py_TYPE(<object> v)
    cdef Py_ssize_t n
    if t == <PyObject *> bytes:
        n = PyBytes_GET_SIZE(<object> v)
        if aura_dc_put_string(e.buf, &e.len, e.cap, 2,
                              <const uint8_t *> PyBytes_AS_STRING(<object> v), <size_t> n):
            e.head(2, <uint64_t> n)
            return e.payload(<const uint8_t *> PyBytes_AS_STRING(<object> v), <size_t> n)
        return 0
    if t == <PyObject *> str:
        return _enc_str(e, <object> v)
    if t == <PyObject *> int:
        return _enc_int(e, <object> v)
    return _enc(e, <object> v, depth)


cdef int _run(_Enc e, object obj) except -1:
    try:
        _enc(e, obj, 0)
    except _EncFail as exc:
        raise EncodeError(str(exc), _path_text(e.path)) from None
    return 0


def encode(obj):
    """The canonical DAG-CBOR encoding of ``obj`` (bytes)."""
    cdef _Enc e = _acquire()
    try:
        _run(e, obj)
        return PyBytes_FromStringAndSize(<const char *> e.buf, <Py_ssize_t> e.len)
    finally:
        _release(e)


def encode_into(obj, buffer, Py_ssize_t offset=0):
    """Encode ``obj`` into ``buffer`` at ``offset``; returns the number of bytes written.

    A ``bytearray`` is resized to exactly ``offset + n``; any other writable buffer must be
    large enough (InvalidValue otherwise, nothing written).
    """
    cdef _Enc e
    cdef Py_buffer view
    cdef Py_ssize_t n
    if offset < 0:
        raise InvalidValue("offset must be >= 0")
    e = _acquire()
    try:
        _run(e, obj)
        n = <Py_ssize_t> e.len
        if type(buffer) is bytearray:
            if offset > len(buffer):
                raise InvalidValue("offset beyond the end of the buffer")
            buffer[offset:] = PyBytes_FromStringAndSize(<const char *> e.buf, n)
            return n
        PyObject_GetBuffer(buffer, &view, PyBUF_SIMPLE | PyBUF_WRITABLE)
        try:
            if offset + n > view.len:
                raise InvalidValue(f"buffer too small: need {offset + n} bytes, have {view.len}")
            memcpy(<uint8_t *> view.buf + offset, e.buf, <size_t> n)
        finally:
            PyBuffer_Release(&view)
        return n
    finally:
        _release(e)


cdef int _hash_alg(str name) except -1:
    if name == "sha2-256":
        return AURA_DC_HASH_SHA256
    if name == "blake2b-256":
        return AURA_DC_HASH_BLAKE2B256
    raise InvalidValue(f"unsupported hash {name!r} (sha2-256, blake2b-256)")


cdef int _digest_into(object obj, int alg, uint8_t *out) except -1:
    cdef _Enc e = _acquire()
    try:
        aura_dc_sink_init(e.sink, alg)
        e.sinking = True
        e.strong = True
        _run(e, obj)
        e.flush()
        aura_dc_sink_final(e.sink, out)
    finally:
        _release(e)
    return 0


def digest(obj, str hash="sha2-256"):
    """Hash of ``encode(obj)`` computed while encoding, in bounded memory."""
    cdef uint8_t out[32]
    _digest_into(obj, _hash_alg(hash), out)
    return PyBytes_FromStringAndSize(<const char *> out, 32)


def cid(obj, str hash="sha2-256"):
    """CIDv1 (codec dag-cbor 0x71) of ``encode(obj)``, hashed while encoding."""
    # binary CIDv1: 0x01, 0x71 (dag-cbor), multihash code varint, 0x20 (32), digest
    cdef uint8_t raw[38]
    cdef size_t pre
    cdef int alg = _hash_alg(hash)
    raw[0] = 0x01
    raw[1] = 0x71
    if alg == AURA_DC_HASH_SHA256:
        raw[2] = 0x12
        raw[3] = 0x20
        pre = 4
    else:
        raw[2] = 0xa0
        raw[3] = 0xe4
        raw[4] = 0x02
        raw[5] = 0x20
        pre = 6
    _digest_into(obj, alg, raw + pre)
    return _new_cid(PyBytes_FromStringAndSize(<const char *> raw, <Py_ssize_t> (pre + 32)))


# ---- decoder -------------------------------------------------------------------------------

cdef int _probe_dict_layout():
    cdef dict d = {}
    k1, v1, k2, v2 = "probe-key-one", object(), "probe-key-two", object()
    d[k1] = v1
    d[k2] = v2
    return aura_dict_probe(d, k1, v1, k2, v2)


# Whether the CPython 3.11-3.13 dict-table fast paths (decoder templates filled in place, encoder
# reading entries) are on: checked once here against a real dict, off on other versions.
cdef bint _DICT_FAST = _probe_dict_layout()


def _dict_fast_paths():
    """Whether the dict-table fast paths are enabled in this interpreter (for tests)."""
    return _DICT_FAST


# Map keys: short ASCII keys recur across records, and a shared str with its hash cached makes
# both PyDict_SetItem and the caller's later lookups cheaper (layout keys are also interned).
cdef enum:
    KEY_CACHE = 1024
    KEY_CACHE_MAXLEN = 32
    STR_CACHE_MAXLEN = 24
cdef PyObject *_key_cache[KEY_CACHE]


cdef PyObject *_str_cache[KEY_CACHE]

# Map layouts: records of one kind carry the same keys in the same (canonical) order.  A layout
# remembers them (interned str, referenced); while a map's keys match its layout byte for byte
# they need no cache lookup and no order check (the layout's order was checked when made).
cdef enum:
    DLAYOUTS = 256
    DLAYOUT_SETS = 128
    DLAYOUT_MAXKEYS = 24

cdef struct DLayout:
    Py_ssize_t n
    uint64_t gen                     # bumped whenever the slot is replaced
    PyObject *tmpl                   # {key: None, ...} in canonical order (copied per map)
    PyObject *keys[DLAYOUT_MAXKEYS]
    uint8_t klen[DLAYOUT_MAXKEYS]    # each key as encoded (head + UTF-8), compared as raw bytes
    uint8_t kdl[DLAYOUT_MAXKEYS]     # each key's UTF-8 length
    uint8_t kenc[DLAYOUT_MAXKEYS][32]

cdef DLayout _dlayouts[DLAYOUTS]
# Two-way sets: records of two kinds with the same key count and first key (a fact with an
# optional key present or not) keep both layouts; the most recently matched way is tried first.
cdef uint8_t _dlayout_mru[DLAYOUT_SETS]
# A layout is installed on its second sighting in a row in its set (maps whose keys never
# recur, e.g. keyed by ids, then cost no installs): the signature of the last miss per set.
cdef uint64_t _dlayout_cand[DLAYOUT_SETS]


cdef inline int _key_order(const uint8_t *prev, size_t prevl, const uint8_t *k, size_t kl,
                           size_t at) except -1:
    cdef int c = aura_dc_key_cmp(prev, prevl, k, kl)
    if c >= 0:
        if c == 0:
            raise NonCanonicalError("duplicate map key", at)
        raise NonCanonicalError("map keys not in canonical order (length, then bytewise)", at)
    return 0


cdef inline object _ascii_str(const uint8_t *p, size_t n):
    # A compact ASCII str from bytes already checked to be ASCII (no second validation pass).
    cdef object s = PyUnicode_New(<Py_ssize_t> n, 127)
    aura_dc_copy_small(<uint8_t *> PyUnicode_DATA(s), p, n)
    return s


cdef inline object _short_str(const uint8_t *p, size_t n, size_t at, PyObject **table):
    # Short ASCII strings through a direct-mapped cache; misses decode and replace the slot.
    # Only ASCII strings are cached, so a cached str's data are its UTF-8 bytes and a byte
    # comparison decides a hit.
    cdef uint32_t h
    cdef PyObject *hit
    cdef object s
    cdef PyObject *raw
    h = aura_dc_short_hash(p, n) & (KEY_CACHE - 1)
    hit = table[h]
    if hit != NULL and <size_t> PyUnicode_GET_LENGTH(<object> hit) == n and \
            aura_dc_eq_short(<const uint8_t *> PyUnicode_DATA(<object> hit), p, n):
        return <object> hit
    if not aura_dc_is_ascii(p, n):
        return _text(p, n, at)
    s = _ascii_str(p, n)
    raw = <PyObject *> s
    Py_INCREF(s)                        # this reference goes to the cache
    Py_XDECREF(table[h])
    table[h] = raw
    return s


cdef inline object _key(const uint8_t *p, size_t n, size_t at):
    # Map keys recur across records: a shared str (hash cached) makes PyDict_SetItem and the
    # caller's later lookups cheaper.  Interning waits for a layout (_install_layout): keys
    # that never recur are not worth the interned table's insert and delete.
    if n <= KEY_CACHE_MAXLEN:
        return _short_str(p, n, at, _key_cache)
    return _text(p, n, at)


cdef int _install_layout(DLayout *lay, object d, Py_ssize_t n) except -1:
    # d: a just-decoded map (its keys in canonical order).
    cdef Py_ssize_t i
    cdef list keys = list(d)
    cdef size_t kl, h
    cdef dict tmpl
    cdef PyObject *raw
    for k in keys:
        if not PyUnicode_IS_COMPACT_ASCII(k) or PyUnicode_GET_LENGTH(k) > 30:
            return 0            # only short ASCII keys: their data are their UTF-8 bytes
    for i in range(n):
        # Interned: a layout's keys are shared by every map decoded from it, and the caller's
        # literal keys then find them by identity.
        raw = <PyObject *> keys[i]
        Py_INCREF(<object> raw)
        PyUnicode_InternInPlace(&raw)       # may swap raw for the interned twin (ref moved)
        keys[i] = <object> raw
        Py_DECREF(<object> raw)
    tmpl = dict.fromkeys(keys)
    if PyObject_GC_IsTracked(tmpl):
        return 0                # (never: str keys, None values) copies must start untracked
    lay.gen += 1
    for i in range(lay.n):
        Py_DECREF(<object> lay.keys[i])
    lay.n = 0
    Py_XDECREF(lay.tmpl)
    Py_INCREF(tmpl)
    lay.tmpl = <PyObject *> tmpl
    for i in range(n):
        k = keys[i]
        Py_INCREF(k)
        lay.keys[i] = <PyObject *> k
        kl = <size_t> PyUnicode_GET_LENGTH(k)
        h = aura_dc_write_head(lay.kenc[i], 3, kl)
        memcpy(&lay.kenc[i][h], PyUnicode_DATA(k), kl)
        lay.klen[i] = <uint8_t> (h + kl)
        lay.kdl[i] = <uint8_t> kl
    lay.n = n
    return 0


cdef inline int _put(object d, object key, object val) except -1:
    # PyDict_SetItem, keeping d untracked by the GC while the decoder fills it (SetItem tracks
    # a dict once it holds a container).  1 if d needs tracking when complete.
    PyDict_SetItem(d, key, val)
    if PyObject_GC_IsTracked(d):
        PyObject_GC_UnTrack(d)
        return 1
    return 0


cdef object _untemplate(PyObject **slots, Py_ssize_t filled, Py_ssize_t count):
    # A template copy whose keys stopped matching after `filled` entries: a plain (untracked)
    # dict with those entries (the rest are then inserted the ordinary way).
    cdef Py_ssize_t j
    cdef object d = aura_dict_presized(count) if count > 5 else PyDict_New()
    for j in range(filled):
        _put(d, <object> slots[2 * j], <object> slots[2 * j + 1])
    return d


cdef object _dec_map_small(const uint8_t *p, size_t n, size_t *pos, int depth, Py_ssize_t count):
    # A map of a remembered layout starts as a copy of the layout's template dict (keys,
    # their hash table and the dict's size made once) and gets its values stored in place:
    # no hashing, probing or resizing per entry.  The copy stays untracked by the GC while it
    # is filled (so nothing, not even gc.get_objects() in a finalizer, can reach it and change
    # its table under the stored pointer) and is tracked at the end if a value is a container,
    # as PyDict_SetItem would have done.  Elsewhere (other CPython versions, a new layout, a
    # key that departs from the layout) entries go in with PyDict_SetItem.
    cdef Py_ssize_t i
    cdef size_t kstart, at, kl, prevl = 0
    cdef const uint8_t *prev = NULL
    cdef unsigned kmt = 0, kai = 0
    cdef uint64_t kl64 = 0
    cdef int rc
    cdef DLayout *lay
    cdef bint match, track = False
    cdef uint64_t gen = 0
    cdef size_t m
    cdef PyObject **slots = NULL
    cdef PyObject *old
    cdef object key, val, d
    cdef size_t set_ = 0
    cdef bint peeked = False
    cdef uint64_t sig = 0               # of the keys read the slow way (see _dlayout_cand)
    if count == 0:
        return PyDict_New()
    # Layout set from the count and the first key's bytes (peeked: checked again below).
    lay = &_dlayouts[0]
    match = False
    at = pos[0]
    if at < n and (p[at] >> 5) == 3 and (p[at] & 31) < 24 and <size_t> (p[at] & 31) <= n - at - 1:
        peeked = True
        set_ = (aura_dc_short_hash(p + at + 1, p[at] & 31) ^ <uint32_t> count) \
            & (DLAYOUT_SETS - 1)
        lay = &_dlayouts[2 * set_ + _dlayout_mru[set_]]
        if lay.n != count:
            lay = &_dlayouts[2 * set_ + (_dlayout_mru[set_] ^ 1)]
        match = lay.n == count
        gen = lay.gen
    if match:
        d = PyDict_Copy(<object> lay.tmpl)
        slots = aura_dict_slots(d, count)
        if slots == NULL:
            d = aura_dict_presized(count) if count > 5 else PyDict_New()
    else:
        d = aura_dict_presized(count) if count > 5 else PyDict_New()
    for i in range(count):
        kstart = pos[0]
        if match and lay.gen != gen:
            match = False           # a nested map replaced this layout meanwhile
        if match:
            # The key as encoded (head included) equals the layout's: no head parsing, no
            # lookup, no order check.
            m = lay.klen[i]
            if not (m <= n - kstart and aura_dc_eq_short(p + kstart, lay.kenc[i], m)):
                # The other way of the set may share the keys so far and have this one.
                d = _switch_way(&lay, &slots, d, p + kstart, n - kstart, i, count)
                gen = lay.gen
                m = lay.klen[i]
            if m <= n - kstart and aura_dc_eq_short(p + kstart, lay.kenc[i], m):
                prevl = lay.kdl[i]
                prev = p + kstart + m - prevl
                pos[0] = kstart + m
                if slots != NULL:
                    val = _dec(p, n, pos, depth + 1)
                    Py_INCREF(val)
                    old = slots[2 * i + 1]          # None, from the template
                    slots[2 * i + 1] = <PyObject *> val
                    Py_DECREF(<object> old)
                    if PyType_IS_GC(Py_TYPE(val)):
                        track = True
                else:
                    key = <object> lay.keys[i]
                    val = _dec(p, n, pos, depth + 1)
                    if _put(d, key, val):
                        track = True
                continue
            match = False
        if slots != NULL:
            d = _untemplate(slots, i, count)   # track stays right: the same values
            slots = NULL
        rc = aura_dc_read_head(p, n, pos, &kmt, &kai, &kl64)
        if rc:
            _head_error(rc, kstart)
        if kmt != 3:
            raise UnsupportedError("map key is not a text string", kstart)
        at = pos[0]
        if kl64 > n - at:
            raise TruncatedError("map key runs past the end of the input", kstart)
        kl = <size_t> kl64
        if i:
            _key_order(prev, prevl, p + at, kl, kstart)
        key = _key(p + at, kl, at)
        prev = p + at
        prevl = kl
        if sig == 0:
            sig = (<uint64_t> count << 32) | (<uint64_t> i << 8) | 1
        sig = (sig ^ aura_dc_short_hash(p + at, kl) ^ (<uint64_t> kl << 24)) * \
            <uint64_t> 0x9E3779B97F4A7C15ULL
        pos[0] = at + kl
        val = _dec(p, n, pos, depth + 1)
        if _put(d, key, val):
            track = True
    if track and not PyObject_GC_IsTracked(d):
        PyObject_GC_Track(d)
    if peeked:
        if match:
            _dlayout_mru[set_] = <uint8_t> (lay - &_dlayouts[2 * set_])
        elif _dlayout_cand[set_] == sig:
            # Seen twice: the new layout replaces the way not used last.
            _dlayout_cand[set_] = 0
            _dlayout_mru[set_] ^= 1
            _install_layout(&_dlayouts[2 * set_ + _dlayout_mru[set_]], d, count)
        else:
            _dlayout_cand[set_] = sig
    return d


cdef object _switch_way(DLayout **layp, PyObject ***slotsp, object d,
                        const uint8_t *k, size_t avail, Py_ssize_t i, Py_ssize_t count):
    # The current way's key i differs from the input; if the set's other way has the same
    # first i keys and this one, continue with it (the values so far move to a copy of its
    # template).  Returns the dict to fill; *layp changes only on a switch.
    cdef DLayout *lay = layp[0]
    cdef size_t base = <size_t> (lay - &_dlayouts[0]) & ~(<size_t> 1)
    cdef DLayout *alt = &_dlayouts[base + ((<size_t> (lay - &_dlayouts[0]) & 1) ^ 1)]
    cdef Py_ssize_t j
    cdef PyObject **slots = slotsp[0]
    cdef PyObject **nslots
    cdef PyObject *old
    cdef object nd
    if alt.n != count or alt.klen[i] > avail or not aura_dc_eq_short(k, alt.kenc[i], alt.klen[i]):
        return d
    for j in range(i):
        if alt.klen[j] != lay.klen[j] or memcmp(alt.kenc[j], lay.kenc[j], lay.klen[j]) != 0:
            return d
    layp[0] = alt
    if slots == NULL:
        return d                    # plain dict: keys so far are the same, keep filling it
    nd = PyDict_Copy(<object> alt.tmpl)
    nslots = aura_dict_slots(nd, count)
    if nslots == NULL:
        slotsp[0] = NULL
        return _untemplate(slots, i, count)     # the caller's track stays right: same values
    for j in range(i):              # the values so far move over (track is already right)
        Py_INCREF(<object> slots[2 * j + 1])
        old = nslots[2 * j + 1]
        nslots[2 * j + 1] = slots[2 * j + 1]
        Py_DECREF(<object> old)
    slotsp[0] = nslots
    return nd


cdef object _text(const uint8_t *p, size_t n, size_t at):
    try:
        return PyUnicode_DecodeUTF8(<const char *> p, <Py_ssize_t> n, NULL)
    except UnicodeDecodeError:
        pass
    raise UnsupportedError("invalid UTF-8 in text string", at + aura_dc_utf8_invalid_at(p, n))


cdef int _head_error(int rc, size_t at) except -1:
    if rc == AURA_DC_TRUNCATED:
        raise TruncatedError("input ends inside an item head", at)
    if rc == AURA_DC_NONMINIMAL:
        raise NonCanonicalError("integer/length/tag head not in its shortest form", at)
    if rc == AURA_DC_INDEFINITE:
        raise NonCanonicalError("indefinite-length item or break", at)
    raise UnsupportedError("reserved additional information (28..30)", at)


cdef inline object _dec(const uint8_t *p, size_t n, size_t *pos, int depth):
    # Heads and the leaves records are made of (byte/text strings, unsigned ints) inline;
    # everything else in _dec_more.
    cdef size_t start = pos[0]
    cdef size_t at
    cdef unsigned mt = 0, ai = 0
    cdef uint64_t v = 0
    cdef int rc = aura_dc_read_head(p, n, pos, &mt, &ai, &v)
    if rc:
        _head_error(rc, start)
    at = pos[0]
    if mt == 2:
        if v > n - at:
            raise TruncatedError("byte string runs past the end of the input", start)
        pos[0] = at + <size_t> v
        return PyBytes_FromStringAndSize(<const char *> p + at, <Py_ssize_t> v)
    if mt == 3:
        if v > n - at:
            raise TruncatedError("text string runs past the end of the input", start)
        pos[0] = at + <size_t> v
        if v <= STR_CACHE_MAXLEN:
            return _short_str(p + at, <size_t> v, at, _str_cache)
        return _text(p + at, <size_t> v, at)
    if mt == 0:
        if v < 0x40000000:
            return PyLong_FromLong(<long> v)     # one digit: the small-int cache or a fast path
        return PyLong_FromUnsignedLongLong(v)
    return _dec_more(p, n, pos, depth, start, mt, ai, v)


cdef object _dec_more(const uint8_t *p, size_t n, size_t *pos, int depth, size_t start,
                      unsigned mt, unsigned ai, uint64_t v):
    cdef size_t at, kstart, i, bad = 0
    cdef unsigned kmt = 0, kai = 0
    cdef uint64_t kl = 0
    cdef int rc, c
    cdef const uint8_t *prev = NULL
    cdef size_t prevl = 0
    cdef object lst, d, key, val, item
    cdef bint track = False
    at = pos[0]
    if mt == 5:
        if depth >= AURA_DC_MAX_DEPTH:
            raise UnsupportedError(f"nesting deeper than {AURA_DC_MAX_DEPTH}", start)
        if v > (n - at) // 2:
            raise TruncatedError("map has more entries than the input has bytes", start)
        if v <= DLAYOUT_MAXKEYS:
            return _dec_map_small(p, n, pos, depth, <Py_ssize_t> v)
        d = aura_dict_presized(<Py_ssize_t> v)
        for i in range(<size_t> v):
            kstart = pos[0]
            rc = aura_dc_read_head(p, n, pos, &kmt, &kai, &kl)
            if rc:
                _head_error(rc, kstart)
            if kmt != 3:
                raise UnsupportedError("map key is not a text string", kstart)
            at = pos[0]
            if kl > n - at:
                raise TruncatedError("map key runs past the end of the input", kstart)
            if i:
                _key_order(prev, prevl, p + at, <size_t> kl, kstart)
            prev = p + at
            prevl = <size_t> kl
            key = _key(p + at, <size_t> kl, at)
            pos[0] = at + <size_t> kl
            val = _dec(p, n, pos, depth + 1)
            if _put(d, key, val):
                track = True
        if track:
            PyObject_GC_Track(d)
        return d
    if mt == 4:
        if depth >= AURA_DC_MAX_DEPTH:
            raise UnsupportedError(f"nesting deeper than {AURA_DC_MAX_DEPTH}", start)
        if v > n - at:
            raise TruncatedError("list has more items than the input has bytes", start)
        lst = PyList_New(<Py_ssize_t> v)
        # Untracked while it holds NULL slots (nothing can reach it through the GC meanwhile).
        PyObject_GC_UnTrack(lst)
        for i in range(<size_t> v):
            item = _dec(p, n, pos, depth + 1)
            Py_INCREF(item)
            PyList_SET_ITEM(lst, <Py_ssize_t> i, item)
        PyObject_GC_Track(lst)
        return lst
    if mt == 1:
        if v < 0x8000000000000000ULL:
            return PyLong_FromLongLong(-1 - <long long> v)
        return -1 - PyLong_FromUnsignedLongLong(v)
    if mt == 7:
        if ai == 27:
            if not aura_dc_bits_finite(v):
                raise UnsupportedError("NaN and Infinity are outside the data model", start)
            return PyFloat_FromDouble(aura_dc_bits_to_double(v))
        if ai == 20:
            return False
        if ai == 21:
            return True
        if ai == 22:
            return None
        if ai == 25 or ai == 26:
            raise NonCanonicalError("floats must be 64-bit", start)
        if ai == 23:
            raise UnsupportedError("undefined is outside the data model", start)
        raise UnsupportedError("simple value outside the data model", start)
    # mt == 6: tags
    if v != 42:
        raise UnsupportedError(f"tag {v} (only 42, links, is allowed)", start)
    kstart = pos[0]
    rc = aura_dc_read_head(p, n, pos, &kmt, &kai, &kl)
    if rc:
        _head_error(rc, kstart)
    if kmt != 2:
        raise UnsupportedError("tag 42 must wrap a byte string", kstart)
    at = pos[0]
    if kl > n - at:
        raise TruncatedError("CID runs past the end of the input", kstart)
    if aura_dc_cid_check(p + at, <size_t> kl, &bad) != AURA_DC_OK:
        raise UnsupportedError("tag 42 payload is not 0x00 + a valid binary CID", at + bad)
    pos[0] = at + <size_t> kl
    return _new_cid(PyBytes_FromStringAndSize(<const char *> p + at + 1,
                                                   <Py_ssize_t> kl - 1))


def decode(data):
    """Decode one canonical DAG-CBOR item from ``data`` (any contiguous buffer)."""
    cdef Py_buffer view
    cdef size_t pos = 0
    cdef object out
    if type(data) is bytes:
        out = _dec(<const uint8_t *> PyBytes_AS_STRING(data), <size_t> PyBytes_GET_SIZE(data),
                   &pos, 0)
        if pos != <size_t> PyBytes_GET_SIZE(data):
            raise NonCanonicalError("trailing bytes after the item", pos)
        return out
    try:
        PyObject_GetBuffer(data, &view, PyBUF_SIMPLE)
    except (TypeError, BufferError) as exc:
        raise InvalidValue(f"decode() needs a contiguous bytes-like object: {exc}") from None
    try:
        out = _dec(<const uint8_t *> view.buf, <size_t> view.len, &pos, 0)
        if pos != <size_t> view.len:
            raise NonCanonicalError("trailing bytes after the item", pos)
        return out
    finally:
        PyBuffer_Release(&view)


# ---- small C entry points exposed for tests and fuzzing ---------------------------------------

def check_cid_bytes(data):
    """Validate a binary CID (no 0x00 prefix); returns None or the offset of the first bad byte."""
    cdef bytes b = bytes(data)
    cdef size_t bad = 0
    if aura_dc_cid_check_raw(<const uint8_t *> PyBytes_AS_STRING(b), <size_t> len(b),
                             &bad) == AURA_DC_OK:
        return None
    return bad


def utf8_invalid_at(data):
    """Index of the first invalid UTF-8 sequence in ``data``, or len(data) (C validator)."""
    cdef bytes b = bytes(data)
    return aura_dc_utf8_invalid_at(<const uint8_t *> PyBytes_AS_STRING(b), <size_t> len(b))


def sha256(data, bint portable=False):
    """SHA-256 of ``data`` with the C implementation (``portable`` forces the fallback)."""
    cdef bytes b = bytes(data)
    cdef aura_sha256 st
    cdef uint8_t out[32]
    cdef int prev = aura_sha256_force_portable(1 if portable else 0)
    try:
        aura_sha256_init(&st)
        aura_sha256_update(&st, <const uint8_t *> PyBytes_AS_STRING(b), <size_t> len(b))
        aura_sha256_final(&st, out)
    finally:
        aura_sha256_force_portable(prev)
    return PyBytes_FromStringAndSize(<const char *> out, 32)


def sha256_impl():
    """Which SHA-256 block function the CPU dispatch chose: "sha-ni" or "portable"."""
    return aura_sha256_impl().decode()
