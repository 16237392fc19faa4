/* sha256.c — SHA-256 (FIPS 180-4) for the streaming digests: a block function using the x86
 * SHA extensions (SHA-NI), chosen at run time by cpuid, and a portable C fallback.  The
 * streaming layer (buffering, padding) is shared by both. */
#include "dagcbor.h"

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#include <immintrin.h>
#define AURA_SHA_X86 1
#endif

static const uint32_t K256[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
};

#define ROR(x, n) (((x) >> (n)) | ((x) << (32 - (n))))

static void blocks_portable(uint32_t h[8], const uint8_t *p, size_t nblocks) {
    uint32_t w[64];
    while (nblocks--) {
        for (int t = 0; t < 16; t++) w[t] = aura_load32_be(p + 4 * t);
        for (int t = 16; t < 64; t++) {
            uint32_t s0 = ROR(w[t - 15], 7) ^ ROR(w[t - 15], 18) ^ (w[t - 15] >> 3);
            uint32_t s1 = ROR(w[t - 2], 17) ^ ROR(w[t - 2], 19) ^ (w[t - 2] >> 10);
            w[t] = w[t - 16] + s0 + w[t - 7] + s1;
        }
        uint32_t a = h[0], b = h[1], c = h[2], d = h[3], e = h[4], f = h[5], g = h[6], hh = h[7];
        for (int t = 0; t < 64; t++) {
            uint32_t S1 = ROR(e, 6) ^ ROR(e, 11) ^ ROR(e, 25);
            uint32_t ch = (e & f) ^ (~e & g);
            uint32_t t1 = hh + S1 + ch + K256[t] + w[t];
            uint32_t S0 = ROR(a, 2) ^ ROR(a, 13) ^ ROR(a, 22);
            uint32_t mj = (a & b) ^ (a & c) ^ (b & c);
            uint32_t t2 = S0 + mj;
            hh = g; g = f; f = e; e = d + t1; d = c; c = b; b = a; a = t1 + t2;
        }
        h[0] += a; h[1] += b; h[2] += c; h[3] += d; h[4] += e; h[5] += f; h[6] += g; h[7] += hh;
        p += 64;
    }
}

#ifdef AURA_SHA_X86
/* Two SHA256RNDS2 per group of four rounds; state kept as ABEF / CDGH as the instructions want.
 * Message schedule: W[16..19] = msg2(msg1(W0..3, W4..7) + W9..12, W12..15), rolling. */
__attribute__((target("sha,sse4.1,ssse3"))) static void blocks_shani(uint32_t h[8], const uint8_t *p,
                                                                      size_t nblocks) {
    const __m128i BSWAP = _mm_set_epi64x(0x0c0d0e0f08090a0bLL, 0x0405060700010203LL);
    __m128i tmp = _mm_loadu_si128((const __m128i *)&h[0]);   /* D C B A (lanes 3..0) */
    __m128i st1 = _mm_loadu_si128((const __m128i *)&h[4]);   /* H G F E */
    tmp = _mm_shuffle_epi32(tmp, 0xB1);                      /* C D A B */
    st1 = _mm_shuffle_epi32(st1, 0x1B);                      /* E F G H */
    __m128i st0 = _mm_alignr_epi8(tmp, st1, 8);              /* A B E F */
    st1 = _mm_blend_epi16(st1, tmp, 0xF0);                   /* C D G H */
    while (nblocks--) {
        __m128i save0 = st0, save1 = st1;
        __m128i m[4];
        for (int g = 0; g < 16; g++) {
            __m128i cur;
            if (g < 4) {
                cur = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)(p + 16 * g)), BSWAP);
            } else {
                __m128i x = _mm_sha256msg1_epu32(m[g & 3], m[(g + 1) & 3]);
                x = _mm_add_epi32(x, _mm_alignr_epi8(m[(g + 3) & 3], m[(g + 2) & 3], 4));
                cur = _mm_sha256msg2_epu32(x, m[(g + 3) & 3]);
            }
            m[g & 3] = cur;
            __m128i wk = _mm_add_epi32(cur, _mm_loadu_si128((const __m128i *)&K256[4 * g]));
            st1 = _mm_sha256rnds2_epu32(st1, st0, wk);
            wk = _mm_shuffle_epi32(wk, 0x0E);
            st0 = _mm_sha256rnds2_epu32(st0, st1, wk);
        }
        st0 = _mm_add_epi32(st0, save0);
        st1 = _mm_add_epi32(st1, save1);
        p += 64;
    }
    tmp = _mm_shuffle_epi32(st0, 0x1B);                      /* F E B A */
    st1 = _mm_shuffle_epi32(st1, 0xB1);                      /* D C H G */
    st0 = _mm_blend_epi16(tmp, st1, 0xF0);                   /* D C B A */
    st1 = _mm_alignr_epi8(st1, tmp, 8);                      /* H G F E */
    _mm_storeu_si128((__m128i *)&h[0], st0);
    _mm_storeu_si128((__m128i *)&h[4], st1);
}

static int cpu_has_shani(void) {
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return 0;
    if (!(c & (1u << 19)) || !(c & (1u << 9))) return 0;   /* SSE4.1, SSSE3 */
    if (__get_cpuid_max(0, NULL) < 7) return 0;
    __cpuid_count(7, 0, a, b, c, d);
    return (b >> 29) & 1;                                   /* SHA */
}
#endif

typedef void (*blocks_fn)(uint32_t h[8], const uint8_t *p, size_t nblocks);
static blocks_fn g_blocks = NULL;
static int g_forced_portable = 0;

static blocks_fn pick(void) {
    blocks_fn f = g_blocks;
    if (AURA_LIKELY(f != NULL)) return f;
#ifdef AURA_SHA_X86
    f = (!g_forced_portable && cpu_has_shani()) ? blocks_shani : blocks_portable;
#else
    f = blocks_portable;
#endif
    g_blocks = f;   /* idempotent: every thread computes the same pointer */
    return f;
}

const char *aura_sha256_impl(void) {
#ifdef AURA_SHA_X86
    return pick() == blocks_shani ? "sha-ni" : "portable";
#else
    pick();
    return "portable";
#endif
}

int aura_sha256_force_portable(int on) {
    int prev = g_forced_portable;
    g_forced_portable = on ? 1 : 0;
    g_blocks = NULL;
    return prev;
}

void aura_sha256_init(aura_sha256 *s) {
    static const uint32_t IV[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                                   0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
    memcpy(s->h, IV, sizeof IV);
    s->total = 0;
    s->buflen = 0;
}

void aura_sha256_update(aura_sha256 *s, const uint8_t *p, size_t n) {
    blocks_fn f = pick();
    s->total += n;
    if (s->buflen) {
        size_t take = 64 - s->buflen;
        if (take > n) take = n;
        memcpy(s->buf + s->buflen, p, take);
        s->buflen += take;
        p += take;
        n -= take;
        if (s->buflen < 64) return;
        f(s->h, s->buf, 1);
        s->buflen = 0;
    }
    if (n >= 64) {
        f(s->h, p, n / 64);
        p += n & ~(size_t)63;
        n &= 63;
    }
    if (n) {
        memcpy(s->buf, p, n);
        s->buflen = n;
    }
}

void aura_sha256_final(aura_sha256 *s, uint8_t out[32]) {
    blocks_fn f = pick();
    uint64_t bits = s->total * 8;
    size_t i = s->buflen;
    s->buf[i++] = 0x80;
    if (i > 56) {
        memset(s->buf + i, 0, 64 - i);
        f(s->h, s->buf, 1);
        i = 0;
    }
    memset(s->buf + i, 0, 56 - i);
    aura_store64_be(s->buf + 56, bits);
    f(s->h, s->buf, 1);
    for (int k = 0; k < 8; k++) aura_store32_be(out + 4 * k, s->h[k]);
}
