/* aura_punch.c — punch packet build/validate, replay windows, and the sendmmsg/recvmmsg loop.
 * Layout and rationale in aura_punch.h; byte-level spec in docs/wire.md ("Punch packets"). */
#define _GNU_SOURCE
#include "aura_punch.h"

#include <errno.h>
#include <poll.h>
#include <string.h>
#include <time.h>

#include "aura_common.h"

#define BATCH 64

static const uint8_t TXID_PREFIX[4] = {'A', 'U', 'R', 'A'};

static int64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* --- BLAKE2b-128 with a cached key state (RFC 7693) -------------------------------------------
 * Written for this one shape: keylen 32, outlen 16, 60 data bytes, so a tag is the key-block
 * chaining value (per key, cached) plus one final compression with t = 128 + 60.  The template
 * below is instantiated for plain uint64_t (portable) and for AVX2 __m256i (4 packets per
 * compression, one per 64-bit lane). */

static const uint64_t B2_IV[8] = {
    0x6a09e667f3bcc908ULL, 0xbb67ae8584caa73bULL, 0x3c6ef372fe94f82bULL, 0xa54ff53a5f1d36f1ULL,
    0x510e527fade682d1ULL, 0x9b05688c2b3e6c1fULL, 0x1f83d9abfb41bd6bULL, 0x5be0cd19137e2179ULL};

#define B2_PARAM0 0x01012010ULL /* fanout 1, depth 1, keylen 32 (<< 8), outlen 16 */
#define B2_TAG_T (128 + AURA_PUNCH_TAG_OFF)

/* One G; NW = message words that may be nonzero (the others are known zeros: skip the add). */
#define B2_G(a, b, c, d, x, y)                                       \
    do {                                                             \
        a = ADD(a, b);                                               \
        if ((x) < NW) a = ADD(a, M[x]);                              \
        d = ROT32(XOR(d, a));                                        \
        c = ADD(c, d);                                               \
        b = ROT24(XOR(b, c));                                        \
        a = ADD(a, b);                                               \
        if ((y) < NW) a = ADD(a, M[y]);                              \
        d = ROT16(XOR(d, a));                                        \
        c = ADD(c, d);                                               \
        b = ROT63(XOR(b, c));                                        \
    } while (0)

#define B2_ROUND(s0, s1, s2, s3, s4, s5, s6, s7, s8, s9, s10, s11, s12, s13, s14, s15) \
    do {                                                                              \
        B2_G(v0, v4, v8, v12, s0, s1);                                                \
        B2_G(v1, v5, v9, v13, s2, s3);                                                \
        B2_G(v2, v6, v10, v14, s4, s5);                                               \
        B2_G(v3, v7, v11, v15, s6, s7);                                               \
        B2_G(v0, v5, v10, v15, s8, s9);                                               \
        B2_G(v1, v6, v11, v12, s10, s11);                                             \
        B2_G(v2, v7, v8, v13, s12, s13);                                              \
        B2_G(v3, v4, v9, v14, s14, s15);                                              \
    } while (0)

#define B2_ROUNDS()                                                          \
    do {                                                                     \
        B2_ROUND(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);      \
        B2_ROUND(14, 10, 4, 8, 9, 15, 13, 6, 1, 12, 0, 2, 11, 7, 5, 3);      \
        B2_ROUND(11, 8, 12, 0, 5, 2, 15, 13, 10, 14, 3, 6, 7, 1, 9, 4);      \
        B2_ROUND(7, 9, 3, 1, 13, 12, 11, 14, 2, 6, 5, 10, 4, 0, 15, 8);      \
        B2_ROUND(9, 0, 5, 7, 2, 4, 10, 15, 14, 1, 11, 12, 6, 8, 3, 13);      \
        B2_ROUND(2, 12, 6, 10, 0, 11, 8, 3, 4, 13, 7, 5, 15, 14, 1, 9);      \
        B2_ROUND(12, 5, 1, 15, 14, 13, 4, 10, 0, 7, 6, 3, 9, 2, 8, 11);      \
        B2_ROUND(13, 11, 7, 14, 12, 1, 3, 9, 5, 0, 15, 4, 8, 6, 2, 10);      \
        B2_ROUND(6, 15, 14, 9, 11, 3, 0, 8, 12, 2, 13, 7, 1, 4, 10, 5);      \
        B2_ROUND(10, 2, 8, 4, 7, 6, 1, 5, 15, 11, 9, 14, 3, 12, 13, 0);      \
        B2_ROUND(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);      \
        B2_ROUND(14, 10, 4, 8, 9, 15, 13, 6, 1, 12, 0, 2, 11, 7, 5, 3);      \
    } while (0)

static inline uint64_t rotr64(uint64_t x, unsigned n) { return (x >> n) | (x << (64 - n)); }

/* Little-endian 64-bit load of tagged bytes (x86 and every host we build on are little-endian;
 * the byte-wise helper keeps big-endian hosts correct). */
static inline uint64_t ld64(const uint8_t *p) {
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    uint64_t v;
    memcpy(&v, p, 8);
    return v;
#else
    return aura_load64_le(p);
#endif
}

/* Scalar compression of one block m[16] into h with counter t and final flag f. */
static void b2_compress(uint64_t h[8], const uint64_t M[16], uint64_t t, uint64_t f) {
#define ADD(a, b) ((a) + (b))
#define XOR(a, b) ((a) ^ (b))
#define ROT32(x) rotr64(x, 32)
#define ROT24(x) rotr64(x, 24)
#define ROT16(x) rotr64(x, 16)
#define ROT63(x) rotr64(x, 63)
#define NW 16
    uint64_t v0 = h[0], v1 = h[1], v2 = h[2], v3 = h[3], v4 = h[4], v5 = h[5], v6 = h[6],
             v7 = h[7], v8 = B2_IV[0], v9 = B2_IV[1], v10 = B2_IV[2], v11 = B2_IV[3],
             v12 = B2_IV[4] ^ t, v13 = B2_IV[5], v14 = B2_IV[6] ^ f, v15 = B2_IV[7];
    B2_ROUNDS();
    h[0] ^= v0 ^ v8; h[1] ^= v1 ^ v9; h[2] ^= v2 ^ v10; h[3] ^= v3 ^ v11;
    h[4] ^= v4 ^ v12; h[5] ^= v5 ^ v13; h[6] ^= v6 ^ v14; h[7] ^= v7 ^ v15;
#undef NW
}

void aura_punch_key_state(aura_punch_kstate *s, const uint8_t *key) {
    uint64_t m[16] = {0};
    for (int i = 0; i < 8; i++) s->h[i] = B2_IV[i];
    s->h[0] ^= B2_PARAM0;
    for (int i = 0; i < 4; i++) m[i] = aura_load64_le(key + 8 * i);
    b2_compress(s->h, m, 128, 0);
    aura_wipe(m, sizeof m);
}

/* The tag block: bytes 0..59 in words 0..7 (word 7 half full), words 8..15 zero. */
void aura_punch_tag(uint8_t *tag, const aura_punch_kstate *s, const uint8_t *pkt) {
#define NW 8
    uint64_t M[8];
    for (int i = 0; i < 7; i++) M[i] = ld64(pkt + 8 * i);
    M[7] = aura_load32_le(pkt + 56);
    uint64_t v0 = s->h[0], v1 = s->h[1], v2 = s->h[2], v3 = s->h[3], v4 = s->h[4], v5 = s->h[5],
             v6 = s->h[6], v7 = s->h[7], v8 = B2_IV[0], v9 = B2_IV[1], v10 = B2_IV[2],
             v11 = B2_IV[3], v12 = B2_IV[4] ^ B2_TAG_T, v13 = B2_IV[5], v14 = ~B2_IV[6],
             v15 = B2_IV[7];
    B2_ROUNDS();
    aura_store64_le(tag, s->h[0] ^ v0 ^ v8);
    aura_store64_le(tag + 8, s->h[1] ^ v1 ^ v9);
#undef NW
#undef ADD
#undef XOR
#undef ROT32
#undef ROT24
#undef ROT16
#undef ROT63
}

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define AURA_PUNCH_HAVE_AVX2 1

/* Four tags per compression: lane j of every vector belongs to packet j. */
__attribute__((target("avx2"))) static void tag4_avx2(const aura_punch_kstate *const *st,
                                                      const uint8_t *const *pkt,
                                                      uint8_t *const *out) {
#define ADD(a, b) _mm256_add_epi64(a, b)
#define XOR(a, b) _mm256_xor_si256(a, b)
#define ROT32(x) _mm256_shuffle_epi32(x, _MM_SHUFFLE(2, 3, 0, 1))
#define ROT24(x) _mm256_shuffle_epi8(x, r24)
#define ROT16(x) _mm256_shuffle_epi8(x, r16)
#define ROT63(x) _mm256_or_si256(_mm256_srli_epi64(x, 63), _mm256_add_epi64(x, x))
#define NW 8
    const __m256i r24 = _mm256_setr_epi8(3, 4, 5, 6, 7, 0, 1, 2, 11, 12, 13, 14, 15, 8, 9, 10, 3, 4,
                                         5, 6, 7, 0, 1, 2, 11, 12, 13, 14, 15, 8, 9, 10);
    const __m256i r16 = _mm256_setr_epi8(2, 3, 4, 5, 6, 7, 0, 1, 10, 11, 12, 13, 14, 15, 8, 9, 2, 3,
                                         4, 5, 6, 7, 0, 1, 10, 11, 12, 13, 14, 15, 8, 9);
    __m256i M[8], h[8];
    for (int i = 0; i < 7; i++)
        M[i] = _mm256_setr_epi64x((long long)ld64(pkt[0] + 8 * i), (long long)ld64(pkt[1] + 8 * i),
                                  (long long)ld64(pkt[2] + 8 * i), (long long)ld64(pkt[3] + 8 * i));
    M[7] = _mm256_setr_epi64x(aura_load32_le(pkt[0] + 56), aura_load32_le(pkt[1] + 56),
                              aura_load32_le(pkt[2] + 56), aura_load32_le(pkt[3] + 56));
    for (int i = 0; i < 8; i++)
        h[i] = _mm256_setr_epi64x((long long)st[0]->h[i], (long long)st[1]->h[i],
                                  (long long)st[2]->h[i], (long long)st[3]->h[i]);
    __m256i v0 = h[0], v1 = h[1], v2 = h[2], v3 = h[3], v4 = h[4], v5 = h[5], v6 = h[6],
            v7 = h[7], v8 = _mm256_set1_epi64x((long long)B2_IV[0]),
            v9 = _mm256_set1_epi64x((long long)B2_IV[1]),
            v10 = _mm256_set1_epi64x((long long)B2_IV[2]),
            v11 = _mm256_set1_epi64x((long long)B2_IV[3]),
            v12 = _mm256_set1_epi64x((long long)(B2_IV[4] ^ B2_TAG_T)),
            v13 = _mm256_set1_epi64x((long long)B2_IV[5]),
            v14 = _mm256_set1_epi64x((long long)~B2_IV[6]),
            v15 = _mm256_set1_epi64x((long long)B2_IV[7]);
    B2_ROUNDS();
    uint64_t t0[4], t1[4];
    _mm256_storeu_si256((__m256i *)t0, XOR(h[0], XOR(v0, v8)));
    _mm256_storeu_si256((__m256i *)t1, XOR(h[1], XOR(v1, v9)));
    for (int j = 0; j < 4; j++) {
        aura_store64_le(out[j], t0[j]);
        aura_store64_le(out[j] + 8, t1[j]);
    }
#undef NW
#undef ADD
#undef XOR
#undef ROT32
#undef ROT24
#undef ROT16
#undef ROT63
}

/* Eight tags per compression: lane j of every vector belongs to packet j; AVX-512 rotates in
 * one instruction (vprorq) where AVX2 needs a shuffle or three ops. */
__attribute__((target("avx512f"))) static void tag8_avx512(const aura_punch_kstate *const *st,
                                                           const uint8_t *const *pkt,
                                                           uint8_t *const *out) {
#define ADD(a, b) _mm512_add_epi64(a, b)
#define XOR(a, b) _mm512_xor_si512(a, b)
#define ROT32(x) _mm512_ror_epi64(x, 32)
#define ROT24(x) _mm512_ror_epi64(x, 24)
#define ROT16(x) _mm512_ror_epi64(x, 16)
#define ROT63(x) _mm512_ror_epi64(x, 63)
#define NW 8
#define LANES8(E) _mm512_setr_epi64(E(0), E(1), E(2), E(3), E(4), E(5), E(6), E(7))
    __m512i M[8], h[8];
    for (int i = 0; i < 7; i++) {
#define W(j) (long long)ld64(pkt[j] + 8 * i)
        M[i] = LANES8(W);
#undef W
    }
#define W(j) (long long)aura_load32_le(pkt[j] + 56)
    M[7] = LANES8(W);
#undef W
    for (int i = 0; i < 8; i++) {
#define W(j) (long long)st[j]->h[i]
        h[i] = LANES8(W);
#undef W
    }
#undef LANES8
    __m512i v0 = h[0], v1 = h[1], v2 = h[2], v3 = h[3], v4 = h[4], v5 = h[5], v6 = h[6],
            v7 = h[7], v8 = _mm512_set1_epi64((long long)B2_IV[0]),
            v9 = _mm512_set1_epi64((long long)B2_IV[1]),
            v10 = _mm512_set1_epi64((long long)B2_IV[2]),
            v11 = _mm512_set1_epi64((long long)B2_IV[3]),
            v12 = _mm512_set1_epi64((long long)(B2_IV[4] ^ B2_TAG_T)),
            v13 = _mm512_set1_epi64((long long)B2_IV[5]),
            v14 = _mm512_set1_epi64((long long)~B2_IV[6]),
            v15 = _mm512_set1_epi64((long long)B2_IV[7]);
    B2_ROUNDS();
    uint64_t t0[8], t1[8];
    _mm512_storeu_si512((void *)t0, XOR(h[0], XOR(v0, v8)));
    _mm512_storeu_si512((void *)t1, XOR(h[1], XOR(v1, v9)));
    for (int j = 0; j < 8; j++) {
        aura_store64_le(out[j], t0[j]);
        aura_store64_le(out[j] + 8, t1[j]);
    }
#undef NW
#undef ADD
#undef XOR
#undef ROT32
#undef ROT24
#undef ROT16
#undef ROT63
}

static int cpu_level(void) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") ? 2 : __builtin_cpu_supports("avx2") ? 1 : 0;
}

static int simd_on = -1; /* 0 portable, 1 AVX2, 2 AVX-512; -1: not decided yet */

/* Relaxed atomics: engines in several threads may decide the level at once (same answer). */
static int simd_enabled(void) {
    int v = __atomic_load_n(&simd_on, __ATOMIC_RELAXED);
    if (AURA_UNLIKELY(v < 0)) {
        v = cpu_level();
        __atomic_store_n(&simd_on, v, __ATOMIC_RELAXED);
    }
    return v;
}

int aura_punch_set_simd(int level) {
    int prev = simd_enabled(), max = cpu_level();
    __atomic_store_n(&simd_on, level < 0 ? 0 : level > max ? max : level, __ATOMIC_RELAXED);
    return prev;
}
#else
static int simd_enabled(void) { return 0; }
int aura_punch_set_simd(int level) { (void)level; return 0; }
#endif

int aura_punch_simd_active(void) { return simd_enabled(); }

void aura_punch_tag_many(const aura_punch_kstate *const *st, const uint8_t *const *pkt,
                         uint8_t *const *out, size_t n) {
    size_t i = 0;
#ifdef AURA_PUNCH_HAVE_AVX2
    int level = simd_enabled();
    if (level >= 2)
        for (; i + 8 <= n; i += 8) tag8_avx512(st + i, pkt + i, out + i);
    if (level >= 1)
        for (; i + 4 <= n; i += 4) tag4_avx2(st + i, pkt + i, out + i);
#endif
    for (; i < n; i++) aura_punch_tag(out[i], st[i], pkt[i]);
}

static void tag_of(uint8_t *tag, const uint8_t *pkt, const uint8_t *key) {
    aura_punch_kstate s;
    aura_punch_key_state(&s, key);
    aura_punch_tag(tag, &s, pkt);
    aura_wipe(&s, sizeof s);
}

void aura_punch_engine_keys(aura_punch_engine *e) {
    aura_punch_key_state(&e->rx_state, e->rx_key);
    for (size_t i = 0; i < e->npeers; i++)
        aura_punch_key_state(&e->peers[i].tx_state, e->peers[i].tx_key);
}

/* Everything but the tag; seq and flags are the per-packet parts. */
static inline void write_body(uint8_t *out, const uint8_t *sender, const uint8_t *receiver,
                              uint64_t seq, uint8_t flags) {
    aura_store16_be(out, 0x0011);                    /* Binding indication */
    aura_store16_be(out + 2, AURA_PUNCH_LEN - 20);   /* attributes length */
    aura_store32_be(out + 4, 0x2112A442u);           /* magic cookie */
    memcpy(out + 8, TXID_PREFIX, 4);
    aura_store64_be(out + 12, seq);
    aura_store16_be(out + 20, AURA_PUNCH_ATTR);
    aura_store16_be(out + 22, AURA_PUNCH_LEN - 24);
    out[24] = AURA_PUNCH_VERSION;
    out[25] = flags;
    out[26] = 0;
    out[27] = 0;
    memcpy(out + 28, sender, AURA_PUNCH_ID_LEN);
    memcpy(out + 44, receiver, AURA_PUNCH_ID_LEN);
}

void aura_punch_build(uint8_t *out, const uint8_t *key, const uint8_t *sender,
                      const uint8_t *receiver, uint64_t seq, uint8_t flags) {
    write_body(out, sender, receiver, seq, flags);
    tag_of(out + AURA_PUNCH_TAG_OFF, out, key);
}

int aura_punch_parse(const uint8_t *pkt, size_t len, aura_punch_fields *f) {
    /* Not ours unless it is STUN-shaped with our attribute first: everything else (QUIC, other
     * STUN, noise) is NOT_PUNCH so a caller sharing the socket can route it elsewhere. */
    if (len < 24 || (pkt[0] & 0xC0) != 0 || aura_load32_be(pkt + 4) != 0x2112A442u ||
        aura_load16_be(pkt + 20) != AURA_PUNCH_ATTR)
        return AURA_PUNCH_NOT_PUNCH;
    if (len != AURA_PUNCH_LEN || aura_load16_be(pkt) != 0x0011 ||
        aura_load16_be(pkt + 2) != AURA_PUNCH_LEN - 20 || memcmp(pkt + 8, TXID_PREFIX, 4) != 0 ||
        aura_load16_be(pkt + 22) != AURA_PUNCH_LEN - 24 || pkt[24] != AURA_PUNCH_VERSION ||
        (pkt[25] & ~AURA_PUNCH_FLAGS_KNOWN) != 0 || pkt[26] != 0 || pkt[27] != 0)
        return AURA_PUNCH_MALFORMED;
    f->seq = aura_load64_be(pkt + 12);
    f->flags = pkt[25];
    memcpy(f->sender, pkt + 28, AURA_PUNCH_ID_LEN);
    memcpy(f->receiver, pkt + 44, AURA_PUNCH_ID_LEN);
    return AURA_PUNCH_OK;
}

/* Authority ids are public: plain word compares (memcmp is an out-of-line call here). */
static inline int id_eq(const uint8_t *a, const uint8_t *b) {
    return ((ld64(a) ^ ld64(b)) | (ld64(a + 8) ^ ld64(b + 8))) == 0;
}

/* memcmp order (big-endian words) without the call. */
static inline int id_cmp(const uint8_t *a, const uint8_t *b) {
    uint64_t x = aura_load64_be(a), y = aura_load64_be(b);
    if (x == y) {
        x = aura_load64_be(a + 8);
        y = aura_load64_be(b + 8);
    }
    return (x > y) - (x < y);
}

/* Parse + receiver check: the part of a check that needs no tag. */
static inline int precheck(const uint8_t *pkt, size_t len, const uint8_t *local_id,
                           aura_punch_fields *f) {
    int v = aura_punch_parse(pkt, len, f);
    if (v != AURA_PUNCH_OK) return v;
    if (!id_eq(pkt + 44, local_id)) return AURA_PUNCH_WRONG_RECEIVER;
    return AURA_PUNCH_OK;
}

int aura_punch_check(const uint8_t *pkt, size_t len, const uint8_t *key, const uint8_t *local_id,
                     aura_punch_fields *f) {
    int v = precheck(pkt, len, local_id, f);
    if (v != AURA_PUNCH_OK) return v;
    uint8_t tag[AURA_PUNCH_TAG_LEN];
    tag_of(tag, pkt, key);
    return aura_ct_eq(tag, pkt + AURA_PUNCH_TAG_OFF, AURA_PUNCH_TAG_LEN) ? AURA_PUNCH_OK
                                                                         : AURA_PUNCH_BAD_TAG;
}

long aura_punch_find_peer(const aura_punch_engine *e, const uint8_t *id) {
    size_t lo = 0, hi = e->npeers;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = id_cmp(e->peers[mid].id, id);
        if (c == 0) return (long)mid;
        if (c < 0) lo = mid + 1;
        else hi = mid;
    }
    return -1;
}

/* WireGuard-style sliding window; only updated for packets whose tag verified. */
static int replay_accept(aura_punch_peer *p, uint64_t seq) {
    if (!p->rx_seen) {
        p->rx_seen = 1;
        p->rx_top = seq;
        p->rx_window = 1;
        return 1;
    }
    if (seq > p->rx_top) {
        uint64_t shift = seq - p->rx_top;
        p->rx_window = shift >= AURA_PUNCH_REPLAY_BITS ? 1 : (p->rx_window << shift) | 1;
        p->rx_top = seq;
        return 1;
    }
    uint64_t back = p->rx_top - seq;
    if (back >= AURA_PUNCH_REPLAY_BITS) return 0;
    uint64_t bit = (uint64_t)1 << back;
    if (p->rx_window & bit) return 0;
    p->rx_window |= bit;
    return 1;
}

/* Second half of an accept: v is the precheck verdict, tag the computed tag when v is OK. */
static int finish_accept(aura_punch_engine *e, int v, const uint8_t *pkt, const uint8_t *tag,
                         const aura_punch_fields *f, long *peer) {
    *peer = -1;
    if (v == AURA_PUNCH_OK && !aura_ct_eq(tag, pkt + AURA_PUNCH_TAG_OFF, AURA_PUNCH_TAG_LEN))
        v = AURA_PUNCH_BAD_TAG;
    if (v == AURA_PUNCH_OK) {
        long i = aura_punch_find_peer(e, f->sender);
        if (i < 0) v = AURA_PUNCH_UNKNOWN_SENDER;
        else if (!replay_accept(&e->peers[i], f->seq)) v = AURA_PUNCH_REPLAYED;
        else *peer = i;
    }
    e->counts[v]++;
    return v;
}

int aura_punch_accept(aura_punch_engine *e, const uint8_t *pkt, size_t len, aura_punch_fields *f,
                      long *peer) {
    uint8_t tag[AURA_PUNCH_TAG_LEN];
    int v = precheck(pkt, len, e->local_id, f);
    if (v == AURA_PUNCH_OK) aura_punch_tag(tag, &e->rx_state, pkt);
    return finish_accept(e, v, pkt, tag, f, peer);
}

/* Validate n received datagrams in order (verdicts, fields and peers per datagram): prechecks
 * first, then every tag in one tag_many pass (all under our own key state), then lookup and
 * replay windows in arrival order.  n <= BATCH. */
static void accept_batch(aura_punch_engine *e, const uint8_t *const *pkt, const size_t *len, size_t n,
                         int *v, aura_punch_fields *f, long *peer) {
    const aura_punch_kstate *st[BATCH];
    const uint8_t *tp[BATCH];
    uint8_t tags[BATCH][AURA_PUNCH_TAG_LEN];
    uint8_t *to[BATCH];
    size_t slot[BATCH], nt = 0;
    for (size_t k = 0; k < n; k++) {
        v[k] = precheck(pkt[k], len[k], e->local_id, &f[k]);
        if (v[k] != AURA_PUNCH_OK) continue;
        st[nt] = &e->rx_state;
        tp[nt] = pkt[k];
        to[nt] = tags[nt];
        slot[k] = nt++;
    }
    aura_punch_tag_many(st, tp, to, nt);
    for (size_t k = 0; k < n; k++)
        v[k] = finish_accept(e, v[k], pkt[k], v[k] == AURA_PUNCH_OK ? tags[slot[k]] : NULL, &f[k],
                             &peer[k]);
}

/* Build packets for targets [base, base + n) into bufs and their headers into msgs/iov: bodies
 * first, then all n tags in one tag_many pass (4 per compression), each under its peer's cached
 * key state.  n <= BATCH. */
static void build_batch(aura_punch_engine *e, size_t base, size_t n, uint8_t flags,
                        uint8_t (*bufs)[AURA_PUNCH_LEN], struct mmsghdr *msgs,
                        struct iovec *iov) {
    const aura_punch_kstate *st[BATCH];
    const uint8_t *tp[BATCH];
    uint8_t *to[BATCH];
    for (size_t k = 0; k < n; k++) {
        aura_punch_target *t = &e->targets[base + k];
        aura_punch_peer *p = &e->peers[t->peer];
        write_body(bufs[k], e->local_id, p->id, p->tx_seq++, flags);
        st[k] = &p->tx_state;
        tp[k] = bufs[k];
        to[k] = bufs[k] + AURA_PUNCH_TAG_OFF;
        iov[k].iov_base = bufs[k];
        iov[k].iov_len = AURA_PUNCH_LEN;
        msgs[k].msg_hdr.msg_name = &t->addr.sa;
        msgs[k].msg_hdr.msg_namelen = t->addrlen;
        msgs[k].msg_hdr.msg_iov = &iov[k];
        msgs[k].msg_hdr.msg_iovlen = 1;
        msgs[k].msg_hdr.msg_control = NULL;
        msgs[k].msg_hdr.msg_controllen = 0;
        msgs[k].msg_hdr.msg_flags = 0;
        msgs[k].msg_len = 0;
    }
    aura_punch_tag_many(st, tp, to, n);
}

/* Ask for the peer lines targets [from, to) will read, so a large burst (peers in id order,
 * targets in any order) waits on memory once per batch, not once per target. */
static void prefetch_peers(const aura_punch_engine *e, size_t from, size_t to) {
    for (size_t i = from; i < to; i++) {
        const uint8_t *p = (const uint8_t *)&e->peers[e->targets[i].peer];
        __builtin_prefetch(p, 1, 3);
        __builtin_prefetch(p + 64, 1, 3);
    }
}

long aura_punch_send_range(aura_punch_engine *e, int fd, uint8_t flags, size_t from, size_t to) {
    uint8_t bufs[BATCH][AURA_PUNCH_LEN];
    struct mmsghdr msgs[BATCH];
    struct iovec iov[BATCH];
    long total = 0;
    if (to > e->ntargets) to = e->ntargets;
    if (from < to) prefetch_peers(e, from, to - from < BATCH ? to : from + BATCH);
    for (size_t base = from; base < to; base += BATCH) {
        size_t n = to - base < BATCH ? to - base : BATCH;
        build_batch(e, base, n, flags, bufs, msgs, iov);
        /* the next batch's peers load while the kernel sends this one */
        if (base + n < to) prefetch_peers(e, base + n, to - (base + n) < BATCH ? to : base + n + BATCH);
        size_t done = 0;
        while (done < n) {
            int r = sendmmsg(fd, msgs + done, (unsigned)(n - done), 0);
            if (r < 0) {
                if (errno == EINTR) continue;
                /* One unreachable candidate (EPERM from a firewall, ENETUNREACH, ECONNREFUSED
                 * left over from an ICMP) must not stop the burst: skip it and go on. */
                e->send_errors++;
                done++;
                continue;
            }
            done += (size_t)r;
            total += r;
        }
    }
    e->sent += (uint64_t)total;
    return total;
}

long aura_punch_send_burst(aura_punch_engine *e, int fd, uint8_t flags) {
    return aura_punch_send_range(e, fd, flags, 0, e->ntargets);
}

int aura_punch_make_ack(aura_punch_engine *e, long peer, uint8_t *out) {
    if (peer < 0 || (size_t)peer >= e->npeers) return AURA_PUNCH_EARG;
    aura_punch_peer *p = &e->peers[peer];
    write_body(out, e->local_id, p->id, p->tx_seq++, AURA_PUNCH_FLAG_ACK);
    aura_punch_tag(out + AURA_PUNCH_TAG_OFF, &p->tx_state, out);
    return 0;
}

static void send_ack(aura_punch_engine *e, int fd, long peer, const struct sockaddr_storage *to,
                     socklen_t tolen) {
    uint8_t pkt[AURA_PUNCH_LEN];
    aura_punch_make_ack(e, peer, pkt);
    if (sendto(fd, pkt, sizeof pkt, 0, (const struct sockaddr *)to, tolen) == (ssize_t)sizeof pkt)
        e->acks_sent++;
    else
        e->send_errors++;
}

/* Receive state of one run() call (kept off the stack of the burst code). */
typedef struct rx_ctx {
    uint8_t bufs[BATCH][AURA_PUNCH_LEN + 1]; /* +1: an oversized datagram shows as truncated */
    struct mmsghdr msgs[BATCH];
    struct iovec iov[BATCH];
    struct sockaddr_storage from[BATCH];
    aura_punch_event *events;
    size_t max_events, nev, stop_after;
    int64_t start;
} rx_ctx;

/* Read and validate everything queued on fd without blocking.  1: stop_after reached. */
static int drain(aura_punch_engine *e, int fd, rx_ctx *c) {
    const uint8_t *pkt[BATCH];
    size_t len[BATCH];
    int v[BATCH];
    aura_punch_fields f[BATCH];
    long peer[BATCH];
    for (;;) {
        for (size_t k = 0; k < BATCH; k++) {
            c->iov[k].iov_base = c->bufs[k];
            c->iov[k].iov_len = sizeof c->bufs[k];
            memset(&c->msgs[k], 0, sizeof c->msgs[k]);
            c->msgs[k].msg_hdr.msg_name = &c->from[k];
            c->msgs[k].msg_hdr.msg_namelen = sizeof c->from[k];
            c->msgs[k].msg_hdr.msg_iov = &c->iov[k];
            c->msgs[k].msg_hdr.msg_iovlen = 1;
        }
        int r = recvmmsg(fd, c->msgs, BATCH, MSG_DONTWAIT, NULL);
        if (r < 0) {
            if (errno == EINTR) continue;
            /* EAGAIN: drained.  ECONNREFUSED & co: an ICMP error queued by an earlier send
             * to a closed candidate; it is consumed by this call, keep going. */
            if (errno == EAGAIN || errno == EWOULDBLOCK) return 0;
            e->send_errors++;
            continue;
        }
        if (r == 0) return 0;
        for (int k = 0; k < r; k++) {
            pkt[k] = c->bufs[k];
            len[k] = c->msgs[k].msg_len;
            if (c->msgs[k].msg_hdr.msg_flags & MSG_TRUNC) len[k] = sizeof c->bufs[k];
        }
        e->datagrams += (uint64_t)r;
        accept_batch(e, pkt, len, (size_t)r, v, f, peer);
        for (int k = 0; k < r; k++) {
            if (v[k] != AURA_PUNCH_OK) continue;
            if (e->auto_ack && !(f[k].flags & AURA_PUNCH_FLAG_ACK))
                send_ack(e, fd, peer[k], &c->from[k], c->msgs[k].msg_hdr.msg_namelen);
            if (c->nev < c->max_events) {
                aura_punch_event *ev = &c->events[c->nev];
                ev->peer = (uint32_t)peer[k];
                ev->flags = f[k].flags;
                ev->seq = f[k].seq;
                memcpy(&ev->from, &c->from[k], sizeof c->from[k]);
                ev->fromlen = c->msgs[k].msg_hdr.msg_namelen;
                ev->elapsed_ns = now_ns() - c->start;
            }
            c->nev++;
        }
        if (c->nev >= c->stop_after) return 1;
        if (r < BATCH) return 0;
    }
}

long aura_punch_run(aura_punch_engine *e, int fd, int send, int64_t interval_ns, int64_t timeout_ns,
                    size_t stop_after, aura_punch_event *events, size_t max_events) {
    if (fd < 0 || interval_ns <= 0 || timeout_ns < 0 || (max_events && !events)) return AURA_PUNCH_EARG;
    if (timeout_ns > INT64_MAX / 4) timeout_ns = INT64_MAX / 4;    /* deadline and cadence */
    if (interval_ns > timeout_ns + 1) interval_ns = timeout_ns + 1; /* sums cannot overflow */
    rx_ctx ctx; /* ~24 KiB of stack: run() is called from Python threads (>= 8 MiB stacks) */
    rx_ctx *c = &ctx;
    c->events = events;
    c->max_events = max_events;
    c->nev = 0;
    c->stop_after = stop_after ? stop_after : (size_t)-1;
    c->start = now_ns();
    e->run_start_ns = c->start;
    int64_t deadline = c->start + timeout_ns, next_send = c->start;
    size_t pos = 0;         /* next target of the burst in progress */
    int in_burst = 0;
    for (;;) {
        int64_t now = now_ns();
        if (now >= deadline) break;
        if (send && !in_burst && now >= next_send) {
            /* Fixed cadence: bursts are due at start + k * interval.  Lateness does not shift
             * later bursts; a burst a whole interval late is skipped (counted), not queued. */
            int64_t late = now - next_send;
            if (late > e->max_late_ns) e->max_late_ns = late;
            e->bursts++;
            next_send += interval_ns;
            while (next_send <= now) {
                next_send += interval_ns;
                e->bursts_missed++;
            }
            in_burst = e->ntargets > 0;
            pos = 0;
        }
        if (in_burst) {
            size_t end = e->ntargets - pos > AURA_PUNCH_SLICE ? pos + AURA_PUNCH_SLICE : e->ntargets;
            if (aura_punch_send_range(e, fd, 0, pos, end) < 0) return AURA_PUNCH_ESYS;
            pos = end;
            in_burst = pos < e->ntargets;
            if (drain(e, fd, c)) break; /* incoming punches never wait for a whole burst */
            continue;
        }
        int64_t wake = send && next_send < deadline ? next_send : deadline;
        int64_t wait = wake - now_ns();
        if (wait < 0) wait = 0;
        struct timespec ts = {.tv_sec = (time_t)(wait / 1000000000),
                              .tv_nsec = (long)(wait % 1000000000)};
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        int pr = ppoll(&pfd, 1, &ts, NULL);
        if (pr < 0) {
            if (errno == EINTR) continue;
            return AURA_PUNCH_ESYS;
        }
        if (pr == 0) continue;
        if (drain(e, fd, c)) break;
    }
    return (long)c->nev; /* accepted; only the first max_events were stored */
}

long aura_punch_bench_sendmmsg(int fd, const struct sockaddr_storage *to, socklen_t tolen,
                               size_t pkt_len, size_t count) {
    uint8_t buf[2048];
    struct mmsghdr msgs[BATCH];
    struct iovec iov;
    if (pkt_len > sizeof buf) return AURA_PUNCH_EARG;
    memset(buf, 0x5A, pkt_len);
    iov.iov_base = buf;
    iov.iov_len = pkt_len;
    for (size_t k = 0; k < BATCH; k++) {
        memset(&msgs[k], 0, sizeof msgs[k]);
        msgs[k].msg_hdr.msg_name = (void *)to;
        msgs[k].msg_hdr.msg_namelen = tolen;
        msgs[k].msg_hdr.msg_iov = &iov;
        msgs[k].msg_hdr.msg_iovlen = 1;
    }
    size_t done = 0;
    while (done < count) {
        size_t n = count - done < BATCH ? count - done : BATCH;
        int r = sendmmsg(fd, msgs, (unsigned)n, 0);
        if (r < 0) {
            if (errno == EINTR) continue;
            return AURA_PUNCH_ESYS;
        }
        done += (size_t)r;
    }
    return (long)done;
}

long aura_punch_bench_recvmmsg(int fd, size_t pkt_len, size_t count, int64_t timeout_ns) {
    uint8_t bufs[BATCH][2048];
    struct mmsghdr msgs[BATCH];
    struct iovec iov[BATCH];
    struct sockaddr_storage from[BATCH];
    if (pkt_len > sizeof bufs[0]) return AURA_PUNCH_EARG;
    int64_t deadline = now_ns() + timeout_ns;
    size_t got = 0;
    while (got < count) {
        for (size_t k = 0; k < BATCH; k++) {
            iov[k].iov_base = bufs[k];
            iov[k].iov_len = pkt_len;
            memset(&msgs[k], 0, sizeof msgs[k]);
            msgs[k].msg_hdr.msg_name = &from[k];
            msgs[k].msg_hdr.msg_namelen = sizeof from[k];
            msgs[k].msg_hdr.msg_iov = &iov[k];
            msgs[k].msg_hdr.msg_iovlen = 1;
        }
        int r = recvmmsg(fd, msgs, BATCH, MSG_DONTWAIT, NULL);
        if (r > 0) {
            got += (size_t)r;
            continue;
        }
        if (r < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) return AURA_PUNCH_ESYS;
        int64_t left = deadline - now_ns();
        if (left <= 0) break;
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        poll(&pfd, 1, (int)((left + 999999) / 1000000));
    }
    return (long)got;
}

long aura_punch_bench_send_many(int fd, const struct sockaddr_storage *to, socklen_t tolen,
                                const uint8_t *buf, size_t pkt_len, size_t count) {
    struct mmsghdr msgs[BATCH];
    struct iovec iov[BATCH];
    size_t done = 0;
    while (done < count) {
        size_t n = count - done < BATCH ? count - done : BATCH;
        for (size_t k = 0; k < n; k++) {
            iov[k].iov_base = (void *)(buf + (done + k) * pkt_len);
            iov[k].iov_len = pkt_len;
            memset(&msgs[k], 0, sizeof msgs[k]);
            msgs[k].msg_hdr.msg_name = (void *)to;
            msgs[k].msg_hdr.msg_namelen = tolen;
            msgs[k].msg_hdr.msg_iov = &iov[k];
            msgs[k].msg_hdr.msg_iovlen = 1;
        }
        int r = sendmmsg(fd, msgs, (unsigned)n, 0);
        if (r < 0) {
            if (errno == EINTR) continue;
            return AURA_PUNCH_ESYS;
        }
        done += (size_t)r;
    }
    return (long)done;
}

long aura_punch_bench_accept(aura_punch_engine *e, const uint8_t *pkt, size_t len, size_t n) {
    /* the receive path's validation: batches of up to BATCH lanes all holding one packet (after
     * the first it is a replay, but only after the full tag check) */
    const uint8_t *pkts[BATCH];
    size_t lens[BATCH];
    int v[BATCH];
    aura_punch_fields f[BATCH];
    long peer[BATCH];
    long ok = 0;
    for (size_t k = 0; k < BATCH; k++) {
        pkts[k] = pkt;
        lens[k] = len;
    }
    for (size_t i = 0; i < n; i += BATCH) {
        size_t m = n - i < BATCH ? n - i : BATCH;
        accept_batch(e, pkts, lens, m, v, f, peer);
        for (size_t k = 0; k < m; k++) ok += (v[k] == AURA_PUNCH_OK || v[k] == AURA_PUNCH_REPLAYED);
    }
    return ok;
}

long aura_punch_bench_tag(const uint8_t *pkt, const uint8_t *key, size_t n) {
    aura_punch_kstate s;
    const aura_punch_kstate *st[BATCH];
    const uint8_t *tp[BATCH];
    uint8_t tags[BATCH][AURA_PUNCH_TAG_LEN];
    uint8_t *to[BATCH];
    uint8_t acc = 0;
    aura_punch_key_state(&s, key);
    for (size_t k = 0; k < BATCH; k++) {
        st[k] = &s;
        tp[k] = pkt;
        to[k] = tags[k];
    }
    for (size_t i = 0; i < n; i += BATCH) {
        size_t m = n - i < BATCH ? n - i : BATCH;
        aura_punch_tag_many(st, tp, to, m);
        acc |= tags[0][0];
    }
    aura_wipe(&s, sizeof s);
    return (long)n + (acc & 0);
}

long aura_punch_bench_blake2b(const uint8_t *pkt, const uint8_t *key, size_t n) {
    uint8_t tag[AURA_PUNCH_TAG_LEN];
    uint8_t acc = 0;
    for (size_t i = 0; i < n; i++) {
        aura_na->crypto_generichash_blake2b(tag, sizeof tag, pkt, AURA_PUNCH_TAG_OFF, key,
                                            AURA_PUNCH_KEY_LEN);
        acc |= tag[0];
    }
    return (long)n + (acc & 0);
}
