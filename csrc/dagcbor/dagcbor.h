/* dagcbor.h — the plain-C pieces of the strict DAG-CBOR codec (aura_core/_dagcbor.pyx walks
 * Python objects on top of them): CBOR head parsing and writing with canonical-form checks,
 * UTF-8 validation, map-key order, binary CID validation, SHA-256 (SHA-NI with a portable
 * fallback) and the streaming hash sink used by digest()/cid().
 *
 * No Python.h here: everything can be fuzzed and sanitized on its own.  The head helpers are
 * static inline because the decoder calls them once per item. */
#ifndef AURA_DAGCBOR_H
#define AURA_DAGCBOR_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "aura_common.h"

/* Nesting limit for lists/maps (both directions), documented in docs/wire.md. */
#define AURA_DC_MAX_DEPTH 256

/* Result codes of the parsing helpers (0 = ok).  The .pyx maps them to DecodeError subclasses. */
enum {
    AURA_DC_OK = 0,
    AURA_DC_TRUNCATED = 1,   /* input ended inside a head or payload */
    AURA_DC_NONMINIMAL = 2,  /* integer/length/tag head not in its shortest form */
    AURA_DC_INDEFINITE = 3,  /* indefinite length or break (additional info 31) */
    AURA_DC_RESERVED = 4,    /* additional info 28..30: not well-formed CBOR */
    AURA_DC_BAD_CID = 5,     /* tag-42 payload that is not 0x00 + a valid binary CID */
};

/* Read one CBOR head at p[*pos..n).  On success stores the major type (0..7), the additional
 * info (0..31) and the argument, and advances *pos past the head.  For major types 0..6 the
 * argument must be minimally encoded; for major type 7 the raw argument is returned unchecked
 * (the caller decides: simple values, 64-bit float bits).  *pos is left unchanged on error. */
static inline int aura_dc_read_head(const uint8_t *p, size_t n, size_t *pos, unsigned *major,
                                    unsigned *info, uint64_t *val) {
    size_t i = *pos;
    if (AURA_UNLIKELY(i >= n)) return AURA_DC_TRUNCATED;
    uint8_t b = p[i];
    unsigned mt = b >> 5, ai = b & 31u;
    uint64_t v;
    size_t len;
    *major = mt;
    *info = ai;
    if (AURA_LIKELY(ai < 24)) {
        *val = ai;
        *pos = i + 1;
        return AURA_DC_OK;
    }
    switch (ai) {
    case 24: len = 1; break;
    case 25: len = 2; break;
    case 26: len = 4; break;
    case 27: len = 8; break;
    case 31: return AURA_DC_INDEFINITE;
    default: return AURA_DC_RESERVED;
    }
    if (AURA_UNLIKELY(n - i - 1 < len)) return AURA_DC_TRUNCATED;
    switch (len) {
    case 1: v = p[i + 1]; if (mt != 7 && v < 24) return AURA_DC_NONMINIMAL; break;
    case 2: v = aura_load16_be(p + i + 1); if (mt != 7 && v <= 0xff) return AURA_DC_NONMINIMAL; break;
    case 4: v = aura_load32_be(p + i + 1); if (mt != 7 && v <= 0xffff) return AURA_DC_NONMINIMAL; break;
    default: v = aura_load64_be(p + i + 1); if (mt != 7 && v <= 0xffffffffu) return AURA_DC_NONMINIMAL; break;
    }
    *val = v;
    *pos = i + 1 + len;
    return AURA_DC_OK;
}

/* Size of the shortest head for argument v (1, 2, 3, 5 or 9 bytes). */
static inline size_t aura_dc_head_size(uint64_t v) {
    return v < 24 ? 1 : v <= 0xff ? 2 : v <= 0xffff ? 3 : v <= 0xffffffffu ? 5 : 9;
}

/* Write the shortest head of major type mt with argument v at p (room for 9 bytes needed).
 * Returns the number of bytes written. */
static inline size_t aura_dc_write_head(uint8_t *p, unsigned mt, uint64_t v) {
    uint8_t m = (uint8_t)(mt << 5);
    if (v < 24) { p[0] = (uint8_t)(m | v); return 1; }
    if (v <= 0xff) { p[0] = m | 24; p[1] = (uint8_t)v; return 2; }
    if (v <= 0xffff) { p[0] = m | 25; aura_store16_be(p + 1, (uint16_t)v); return 3; }
    if (v <= 0xffffffffu) { p[0] = m | 26; aura_store32_be(p + 1, (uint32_t)v); return 5; }
    p[0] = m | 27;
    aura_store64_be(p + 1, v);
    return 9;
}

/* Copy n ≤ 32 bytes with fixed-size (overlapping) moves instead of a libc call; src and dst
 * must not overlap.  Reads and writes stay inside [src, src+n) and [dst, dst+n). */
static inline void aura_dc_copy_small(uint8_t *dst, const uint8_t *src, size_t n) {
    if (n >= 16) {
        memcpy(dst, src, 16);
        memcpy(dst + n - 16, src + n - 16, 16);
    } else if (n >= 8) {
        memcpy(dst, src, 8);
        memcpy(dst + n - 8, src + n - 8, 8);
    } else if (n >= 4) {
        memcpy(dst, src, 4);
        memcpy(dst + n - 4, src + n - 4, 4);
    } else {
        for (size_t i = 0; i < n; i++) dst[i] = src[i];
    }
}

#if defined(__GNUC__)
#define AURA_DC_ALWAYS_INLINE inline __attribute__((always_inline))
#else
#define AURA_DC_ALWAYS_INLINE inline
#endif

/* Encoder fast paths on a buffer (buf, *len, cap).  Each returns 0 when it wrote, 1 when the
 * caller must take the slow path (grow / flush / large payload) — then nothing was written. */
static AURA_DC_ALWAYS_INLINE int aura_dc_put_head(uint8_t *buf, size_t *len, size_t cap,
                                                  unsigned mt, uint64_t v) {
    if (AURA_UNLIKELY(*len + 9 > cap)) return 1;
    *len += aura_dc_write_head(buf + *len, mt, v);
    return 0;
}

static AURA_DC_ALWAYS_INLINE int aura_dc_put_string(uint8_t *buf, size_t *len, size_t cap,
                                                    unsigned mt, const uint8_t *p, size_t n) {
    if (n > 32 || AURA_UNLIKELY(*len + 2 + 32 > cap)) return 1;
    size_t l = *len;
    l += aura_dc_write_head(buf + l, mt, n);   /* n ≤ 32: a 1- or 2-byte head */
    aura_dc_copy_small(buf + l, p, n);
    *len = l + n;
    return 0;
}

/* Write a 64-bit float (major 7, additional info 27): 9 bytes. */
static inline size_t aura_dc_write_float(uint8_t *p, double d) {
    uint64_t bits;
    memcpy(&bits, &d, 8);
    p[0] = 0xfb;
    aura_store64_be(p + 1, bits);
    return 9;
}

/* The double in raw IEEE-754 bits, and whether it is finite (DAG-CBOR forbids NaN/Infinity). */
static inline double aura_dc_bits_to_double(uint64_t bits) {
    double d;
    memcpy(&d, &bits, 8);
    return d;
}
static inline int aura_dc_bits_finite(uint64_t bits) {
    return ((bits >> 52) & 0x7ff) != 0x7ff;
}

/* Canonical map-key order: shorter first, then bytewise.  <0, 0, >0 like memcmp. */
static inline int aura_dc_key_cmp(const uint8_t *a, size_t al, const uint8_t *b, size_t bl) {
    if (al != bl) return al < bl ? -1 : 1;
    if (al > 32) return memcmp(a, b, al);
    /* keys are short: a byte loop beats a call into libc */
    for (size_t i = 0; i < al; i++)
        if (a[i] != b[i]) return a[i] < b[i] ? -1 : 1;
    return 0;
}

/* Equality of two byte runs of the same length n (the decoder's string caches): word loads,
 * never reading outside [p, p+n). */
static inline int aura_dc_eq_short(const uint8_t *a, const uint8_t *b, size_t n) {
    uint64_t x, y;
    uint32_t u, v;
    if (n >= 8) {
        size_t i = 0;
        for (; i + 8 <= n; i += 8) {
            memcpy(&x, a + i, 8);
            memcpy(&y, b + i, 8);
            if (x != y) return 0;
        }
        memcpy(&x, a + n - 8, 8);
        memcpy(&y, b + n - 8, 8);
        return x == y;
    }
    if (n >= 4) {
        memcpy(&u, a, 4); memcpy(&v, b, 4);
        if (u != v) return 0;
        memcpy(&u, a + n - 4, 4); memcpy(&v, b + n - 4, 4);
        return u == v;
    }
    for (size_t i = 0; i < n; i++)
        if (a[i] != b[i]) return 0;
    return 1;
}

/* Cache slot hash of a short byte run: its length, first and last 8 (or 4) bytes. */
static inline uint32_t aura_dc_short_hash(const uint8_t *p, size_t n) {
    uint64_t a = 0, b = 0;
    if (n >= 8) {
        memcpy(&a, p, 8);
        memcpy(&b, p + n - 8, 8);
    } else if (n >= 4) {
        uint32_t x, y;
        memcpy(&x, p, 4);
        memcpy(&y, p + n - 4, 4);
        a = x;
        b = y;
    } else if (n) {
        a = (uint64_t)p[0] | ((uint64_t)p[n / 2] << 8) | ((uint64_t)p[n - 1] << 16);
    }
    uint64_t h = (a ^ (b * 0x9E3779B97F4A7C15ull) ^ (uint64_t)n) * 0xff51afd7ed558ccdull;
    return (uint32_t)(h >> 40);
}

/* Index of the first byte of the first invalid UTF-8 sequence in p[0..n), or n if all valid
 * (RFC 3629: no overlongs, no surrogates, nothing above U+10FFFF). */
size_t aura_dc_utf8_invalid_at(const uint8_t *p, size_t n);

/* 1 if p[0..n) is all ASCII (the common case for map keys and short strings). */
static inline int aura_dc_is_ascii(const uint8_t *p, size_t n) {
    size_t i = 0;
    uint64_t acc = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t w;
        memcpy(&w, p + i, 8);
        acc |= w;
    }
    for (; i < n; i++) acc |= p[i];
    return (acc & 0x8080808080808080ull) == 0;
}

/* Validate the payload of a tag-42 byte string: 0x00 then a binary CIDv0 (0x12 0x20 + 32 bytes)
 * or CIDv1 (varint 1, varint codec, multihash: varint code, varint length, exactly that many
 * digest bytes).  Varints are minimal unsigned LEB128 of at most 9 bytes.  Returns AURA_DC_OK
 * or AURA_DC_BAD_CID with *bad = index of the offending byte within p. */
int aura_dc_cid_check(const uint8_t *p, size_t n, size_t *bad);

/* Same for a binary CID without the 0x00 prefix (what CID(bytes) accepts). */
int aura_dc_cid_check_raw(const uint8_t *p, size_t n, size_t *bad);

/* Read a minimal unsigned varint (≤ 9 bytes, value < 2^63).  Returns bytes consumed or 0. */
size_t aura_dc_varint(const uint8_t *p, size_t n, uint64_t *out);

/* ---- SHA-256 ------------------------------------------------------------------------------ */

typedef struct aura_sha256 {
    uint32_t h[8];
    uint64_t total;   /* bytes absorbed */
    uint8_t buf[64];
    size_t buflen;
} aura_sha256;

void aura_sha256_init(aura_sha256 *s);
void aura_sha256_update(aura_sha256 *s, const uint8_t *p, size_t n);
void aura_sha256_final(aura_sha256 *s, uint8_t out[32]);
/* "sha-ni" or "portable": which block function the CPU dispatch chose. */
const char *aura_sha256_impl(void);
/* Force the portable path (tests compare both); returns the previous setting. */
int aura_sha256_force_portable(int on);

/* ---- streaming hash sink ------------------------------------------------------------------ */

enum { AURA_DC_HASH_SHA256 = 1, AURA_DC_HASH_BLAKE2B256 = 2 };

typedef struct aura_dc_sink {
    union {
        aura_sha256 sha;
        aura_blake2b_state b2;
    } u;
    int alg;
    uint64_t total;
} aura_dc_sink;

int aura_dc_sink_init(aura_dc_sink *s, int alg);          /* 0 ok, -1 unknown alg */
void aura_dc_sink_update(aura_dc_sink *s, const uint8_t *p, size_t n);
void aura_dc_sink_final(aura_dc_sink *s, uint8_t out[32]);  /* wipes the state */

#endif
