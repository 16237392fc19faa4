/* blake2s.c — BLAKE2s per RFC 7693 §3 (compression F with 10 rounds, sequential mode only). */
#include "blake2s.h"

#include <string.h>

#include "aura_common.h"

static const uint32_t IV[8] = {0x6A09E667UL, 0xBB67AE85UL, 0x3C6EF372UL, 0xA54FF53AUL,
                               0x510E527FUL, 0x9B05688CUL, 0x1F83D9ABUL, 0x5BE0CD19UL};

static const uint8_t SIGMA[10][16] = {
    {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15},
    {14, 10, 4, 8, 9, 15, 13, 6, 1, 12, 0, 2, 11, 7, 5, 3},
    {11, 8, 12, 0, 5, 2, 15, 13, 10, 14, 3, 6, 7, 1, 9, 4},
    {7, 9, 3, 1, 13, 12, 11, 14, 2, 6, 5, 10, 4, 0, 15, 8},
    {9, 0, 5, 7, 2, 4, 10, 15, 14, 1, 11, 12, 6, 8, 3, 13},
    {2, 12, 6, 10, 0, 11, 8, 3, 4, 13, 7, 5, 15, 14, 1, 9},
    {12, 5, 1, 15, 14, 13, 4, 10, 0, 7, 6, 3, 9, 2, 8, 11},
    {13, 11, 7, 14, 12, 1, 3, 9, 5, 0, 15, 4, 8, 6, 2, 10},
    {6, 15, 14, 9, 11, 3, 0, 8, 12, 2, 13, 7, 1, 4, 10, 5},
    {10, 2, 8, 4, 7, 6, 1, 5, 15, 11, 9, 14, 3, 12, 13, 0},
};

static inline uint32_t rotr32(uint32_t x, int n) { return (x >> n) | (x << (32 - n)); }

#define G(a, b, c, d, x, y)              \
    do {                                 \
        a = a + b + (x);                 \
        d = rotr32(d ^ a, 16);           \
        c = c + d;                       \
        b = rotr32(b ^ c, 12);           \
        a = a + b + (y);                 \
        d = rotr32(d ^ a, 8);            \
        c = c + d;                       \
        b = rotr32(b ^ c, 7);            \
    } while (0)

static void compress(aura_blake2s_state *S, const uint8_t *block, int last) {
    uint32_t m[16], v[16];
    for (int i = 0; i < 16; i++) m[i] = aura_load32_le(block + 4 * i);
    for (int i = 0; i < 8; i++) {
        v[i] = S->h[i];
        v[i + 8] = IV[i];
    }
    v[12] ^= S->t[0];
    v[13] ^= S->t[1];
    if (last) v[14] = ~v[14];
    for (int r = 0; r < 10; r++) {
        const uint8_t *s = SIGMA[r];
        G(v[0], v[4], v[8], v[12], m[s[0]], m[s[1]]);
        G(v[1], v[5], v[9], v[13], m[s[2]], m[s[3]]);
        G(v[2], v[6], v[10], v[14], m[s[4]], m[s[5]]);
        G(v[3], v[7], v[11], v[15], m[s[6]], m[s[7]]);
        G(v[0], v[5], v[10], v[15], m[s[8]], m[s[9]]);
        G(v[1], v[6], v[11], v[12], m[s[10]], m[s[11]]);
        G(v[2], v[7], v[8], v[13], m[s[12]], m[s[13]]);
        G(v[3], v[4], v[9], v[14], m[s[14]], m[s[15]]);
    }
    for (int i = 0; i < 8; i++) S->h[i] ^= v[i] ^ v[i + 8];
}

static inline void add_counter(aura_blake2s_state *S, uint32_t inc) {
    S->t[0] += inc;
    if (S->t[0] < inc) S->t[1]++;
}

int aura_blake2s_init(aura_blake2s_state *S, size_t outlen, const uint8_t *key, size_t keylen) {
    if (outlen == 0 || outlen > AURA_BLAKE2S_OUTBYTES || keylen > AURA_BLAKE2S_KEYBYTES) return -1;
    memset(S, 0, sizeof *S);
    memcpy(S->h, IV, sizeof IV);
    /* parameter block word 0: digest length, key length, fanout 1, depth 1 */
    S->h[0] ^= 0x01010000UL ^ ((uint32_t)keylen << 8) ^ (uint32_t)outlen;
    S->outlen = outlen;
    if (keylen > 0) {
        memcpy(S->buf, key, keylen); /* key block, zero padded, counts as the first block */
        S->buflen = AURA_BLAKE2S_BLOCKBYTES;
    }
    return 0;
}

void aura_blake2s_update(aura_blake2s_state *S, const uint8_t *in, size_t inlen) {
    if (inlen == 0) return;
    /* The last block is compressed in final (with the last flag), so keep a full buffer here. */
    size_t left = S->buflen, fill = AURA_BLAKE2S_BLOCKBYTES - left;
    if (inlen > fill) {
        memcpy(S->buf + left, in, fill);
        add_counter(S, AURA_BLAKE2S_BLOCKBYTES);
        compress(S, S->buf, 0);
        S->buflen = 0;
        in += fill;
        inlen -= fill;
        while (inlen > AURA_BLAKE2S_BLOCKBYTES) {
            add_counter(S, AURA_BLAKE2S_BLOCKBYTES);
            compress(S, in, 0);
            in += AURA_BLAKE2S_BLOCKBYTES;
            inlen -= AURA_BLAKE2S_BLOCKBYTES;
        }
    }
    memcpy(S->buf + S->buflen, in, inlen);
    S->buflen += inlen;
}

void aura_blake2s_final(aura_blake2s_state *S, uint8_t *out) {
    uint8_t full[AURA_BLAKE2S_OUTBYTES];
    add_counter(S, (uint32_t)S->buflen);
    memset(S->buf + S->buflen, 0, AURA_BLAKE2S_BLOCKBYTES - S->buflen);
    compress(S, S->buf, 1);
    for (int i = 0; i < 8; i++) aura_store32_le(full + 4 * i, S->h[i]);
    memcpy(out, full, S->outlen);
    aura_wipe(full, sizeof full);
    aura_wipe(S, sizeof *S);
}

int aura_blake2s(uint8_t *out, size_t outlen, const uint8_t *in, size_t inlen, const uint8_t *key,
                 size_t keylen) {
    aura_blake2s_state S;
    if (aura_blake2s_init(&S, outlen, key, keylen) != 0) return -1;
    aura_blake2s_update(&S, in, inlen);
    aura_blake2s_final(&S, out);
    return 0;
}
