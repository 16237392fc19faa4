/* blake2s.h — BLAKE2s (RFC 7693), keyed or not, digest 1..32 bytes.  libsodium has no BLAKE2s,
 * and Noise_*_BLAKE2s (WireGuard's suite) needs it; checked against hashlib.blake2s and the
 * RFC 7693 appendix vectors in tests/test_blake2s.py. */
#ifndef AURA_BLAKE2S_H
#define AURA_BLAKE2S_H

#include <stddef.h>
#include <stdint.h>

#define AURA_BLAKE2S_BLOCKBYTES 64
#define AURA_BLAKE2S_OUTBYTES 32
#define AURA_BLAKE2S_KEYBYTES 32

typedef struct aura_blake2s_state {
    uint32_t h[8];
    uint32_t t[2];
    uint8_t buf[AURA_BLAKE2S_BLOCKBYTES];
    size_t buflen;
    size_t outlen;
} aura_blake2s_state;

/* 0 on success, -1 if outlen is not 1..32 or keylen > 32. */
int aura_blake2s_init(aura_blake2s_state *S, size_t outlen, const uint8_t *key, size_t keylen);
void aura_blake2s_update(aura_blake2s_state *S, const uint8_t *in, size_t inlen);
/* Writes S->outlen bytes and wipes the state. */
void aura_blake2s_final(aura_blake2s_state *S, uint8_t *out);
int aura_blake2s(uint8_t *out, size_t outlen, const uint8_t *in, size_t inlen, const uint8_t *key,
                 size_t keylen);

#endif
