/* aura_reconcile.c — GF(2^127 - 1) power sums, prefix moments and child cells over packed
 * sorted hashes (see aura_reconcile.h).  unsigned __int128 arithmetic; elements stay reduced
 * (< P) between operations, so every sum of two fits in 128 bits. */
#include "aura_reconcile.h"

#include "aura_common.h"

typedef unsigned __int128 fe;

#define P127 ((((fe)1) << 127) - 1)
#define M64 ((fe)UINT64_MAX)

/* x < 2^128 -> x mod P (2^127 = 1 mod P, so the bit above 127 folds back in as a 1). */
static inline fe canon(fe x) {
    x = (x & P127) + (x >> 127);          /* <= P + 1 */
    return x >= P127 ? x - P127 : x;
}

static inline fe add(fe a, fe b) { return canon(a + b); }

/* a * b mod P for a, b < P: four 64x64 products, 2^128 = 2 mod P, two reductions. */
static inline fe mul(fe a, fe b) {
    uint64_t a0 = (uint64_t)a, a1 = (uint64_t)(a >> 64), b0 = (uint64_t)b, b1 = (uint64_t)(b >> 64);
    fe lo = (fe)a0 * b0;                  /* < 2^128 */
    fe mid = (fe)a1 * b0 + (fe)a0 * b1;   /* a1, b1 < 2^63: < 2^128 */
    fe hi = (fe)a1 * b1;                  /* < 2^126 */
    /* product = (hi + (mid >> 64)) 2^128 + t, t = lo + (mid mod 2^64) 2^64 (+ its carry 2^128) */
    fe t = lo + ((mid & M64) << 64);
    fe up = hi + (mid >> 64) + (t < lo);  /* <= 2^126: the product is < P^2 < 2^254 */
    /* t = (t >> 127) + (t & P) mod P, and up 2^128 = 2 up; canon(...) < P, so the sum < 2^128 */
    return canon(canon(t) + 2 * up);
}

static inline fe key_at(const uint8_t *h) {
    fe v = ((fe)aura_load64_be(h) << 64) | aura_load64_be(h + 8);
    v >>= 1;                              /* top 127 bits of the hash */
    return v == P127 ? 0 : v;
}

static inline void put(uint64_t *w, fe x) {
    w[0] = (uint64_t)x;
    w[1] = (uint64_t)(x >> 64);
}

int aura_rec_power_sums(const uint8_t *hashes, size_t n, size_t i, size_t j, unsigned m,
                        uint64_t *out) {
    if (!hashes || !out || i > j || j > n || m < 1 || m > AURA_REC_MAX_POWERS)
        return AURA_REC_ERR_ARG;
    fe sums[AURA_REC_MAX_POWERS] = {0};
    size_t x = i;
    /* four keys at a time: their power chains are independent, so the multiplies overlap */
    for (; x + 4 <= j; x += 4) {
        fe e[4], p[4];
        for (int l = 0; l < 4; l++)
            p[l] = e[l] = key_at(hashes + 32 * (x + l));
        for (unsigned q = 0;; q++) {
            sums[q] = add(sums[q], add(add(p[0], p[1]), add(p[2], p[3])));
            if (q + 1 == m)
                break;
            for (int l = 0; l < 4; l++)
                p[l] = mul(p[l], e[l]);
        }
    }
    for (; x < j; x++) {
        fe e = key_at(hashes + 32 * x), p = e;
        sums[0] = add(sums[0], p);
        for (unsigned q = 1; q < m; q++) {
            p = mul(p, e);
            sums[q] = add(sums[q], p);
        }
    }
    for (unsigned q = 0; q < m; q++)
        put(out + 2 * q, sums[q]);
    return AURA_REC_OK;
}

int aura_rec_prefix(const uint8_t *hashes, size_t n, size_t step, uint64_t *p1, uint64_t *p2,
                    uint64_t *s3) {
    if (!hashes || !p1 || !p2 || !s3 || step == 0)
        return AURA_REC_ERR_ARG;
    fe a1 = 0, a2 = 0, a3 = 0;
    size_t t = 0;
    put(p1, 0);
    put(p2, 0);
    for (size_t x = 0; x < n; x++) {
        fe e = key_at(hashes + 32 * x), e2 = mul(e, e);
        a1 = add(a1, e);
        a2 = add(a2, e2);
        a3 = add(a3, mul(e2, e));
        if ((x + 1) % step == 0 || x + 1 == n) {
            t++;
            put(p1 + 2 * t, a1);
            put(p2 + 2 * t, a2);
        }
    }
    put(s3, a3);
    return AURA_REC_OK;
}

int aura_rec_lower_bound(const uint8_t *hashes, size_t n, size_t lo, size_t hi,
                         const uint8_t *bound, size_t *pos) {
    if (!hashes || !bound || !pos || lo > hi || hi > n)
        return AURA_REC_ERR_ARG;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (memcmp(hashes + 32 * mid, bound, 32) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    *pos = lo;
    return AURA_REC_OK;
}

int aura_rec_cells(const uint8_t *hashes, size_t n, size_t i, size_t j, unsigned k, unsigned b,
                   uint64_t *counts, uint64_t *s1, uint64_t *s2) {
    if (!hashes || !counts || !s1 || !s2 || i > j || j > n || b < 1
        || b > AURA_REC_MAX_FANOUT_BITS || k + b > 128)
        return AURA_REC_ERR_ARG;
    size_t m = (size_t)1 << b;
    unsigned shift = 128 - k - b;
    fe mask = (((fe)1) << b) - 1;
    for (size_t c = 0; c < m; c++) {
        counts[c] = 0;
        put(s1 + 2 * c, 0);
        put(s2 + 2 * c, 0);
    }
    /* runs of one child are contiguous in sorted input: sum a run, then store it once */
    size_t cur = SIZE_MAX;
    fe r1 = 0, r2 = 0;
    uint64_t rc = 0;
    for (size_t x = i; x <= j; x++) {
        size_t c = SIZE_MAX;
        fe e = 0;
        if (x < j) {
            const uint8_t *h = hashes + 32 * x;
            fe v = ((fe)aura_load64_be(h) << 64) | aura_load64_be(h + 8);
            c = (size_t)((v >> shift) & mask);
            e = key_at(h);
        }
        if (c != cur) {
            if (cur != SIZE_MAX) {        /* unsorted input just adds to a child seen before */
                fe o1 = ((fe)s1[2 * cur + 1] << 64) | s1[2 * cur];
                fe o2 = ((fe)s2[2 * cur + 1] << 64) | s2[2 * cur];
                counts[cur] += rc;
                put(s1 + 2 * cur, add(o1, r1));
                put(s2 + 2 * cur, add(o2, r2));
            }
            cur = c;
            r1 = r2 = 0;
            rc = 0;
        }
        if (x < j) {
            rc++;
            r1 = add(r1, e);
            r2 = add(r2, mul(e, e));
        }
    }
    return AURA_REC_OK;
}
