/* noise_bench.c — C loops of raw primitives: the "limit" contenders of benchsuite/noise.py.
 * They do the same primitive calls as our code, without state machine, framing or Python. */
#include <stdlib.h>
#include <string.h>

#include "aura_common.h"
#include "noise.h"

int noise_bench_raw_handshake(size_t n, int hash_id) {
    uint8_t a[32], A[32], b[32], B[32], ea[32], EA[32], eb[32], EB[32], dh[32];
    uint8_t h[64], ck[64], k1[64], k2[64], k3[64], buf[64 + 48], ct[64], key[32] = {1}, iv[12] = {0};
    size_t hl = noise_hashlen(hash_id);
    aura_na->randombytes_buf(a, 32);
    aura_na->randombytes_buf(b, 32);
    aura_na->crypto_scalarmult_curve25519_base(A, a);
    aura_na->crypto_scalarmult_curve25519_base(B, b);
    memset(h, 7, sizeof h);
    memset(ck, 9, sizeof ck);
    for (size_t i = 0; i < n; i++) {
        /* 2 ephemeral keygens + 8 DH (es, ss, ee, se on each side) */
        aura_na->randombytes_buf(ea, 32);
        aura_na->crypto_scalarmult_curve25519_base(EA, ea);
        aura_na->randombytes_buf(eb, 32);
        aura_na->crypto_scalarmult_curve25519_base(EB, eb);
        const uint8_t *pairs[8][2] = {{ea, B}, {a, B}, {b, EA}, {b, A},
                                      {eb, EA}, {eb, A}, {ea, EB}, {a, EB}};
        for (int j = 0; j < 8; j++) {
            if (aura_na->crypto_scalarmult_curve25519(dh, pairs[j][0], pairs[j][1]) != 0) return -1;
            ck[0] ^= dh[0];
        }
        /* hashing of both sides: 16 MixHash, 14 two-output + 2 three-output HKDF, 6 AEAD */
        for (int j = 0; j < 16; j++) {
            memcpy(buf, h, hl);
            memcpy(buf + hl, ct, 48);
            noise_hash(hash_id, buf, hl + 48, h);
        }
        for (int j = 0; j < 14; j++) noise_hkdf(hash_id, ck, dh, 32, ck, k1, NULL);
        for (int j = 0; j < 2; j++) noise_hkdf(hash_id, ck, dh, 32, ck, k2, k3);
        for (int j = 0; j < 6; j++)
            aura_na->crypto_aead_chacha20poly1305_ietf_encrypt_detached(ct, ct + 32, NULL, A, 32, h,
                                                                        hl, NULL, iv, key);
    }
    aura_wipe(a, 32);
    aura_wipe(b, 32);
    return (int)(ck[0] & 0); /* keep the loop observable */
}

int noise_bench_raw_aead(size_t n, size_t len, int backend) {
    uint8_t k[32];
    noise_aead_key ks, ko;
    uint8_t *pt = calloc(1, len + 16), *ct = malloc(len + 16), *rt = malloc(len + 16);
    if (!pt || !ct || !rt) {
        free(pt); free(ct); free(rt);
        return -1;
    }
    aura_na->randombytes_buf(k, 32);
    noise_aead_key_init(&ks, k, backend);
    noise_aead_key_init(&ko, k, backend);
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++) { /* one operation = seal + open of one frame */
        rc |= noise_aead_seal_backend(&ks, backend, i, NULL, 0, pt, len, ct);
        rc |= noise_aead_open(&ko, i, NULL, 0, ct, len + 16, rt);
    }
    noise_aead_key_clear(&ks);
    noise_aead_key_clear(&ko);
    free(pt); free(ct); free(rt);
    return rc;
}
