/* noise_aead.h — ChaCha20-Poly1305 (IETF, 96-bit nonce) behind two interchangeable backends.
 *
 * libsodium (through aura_na) is always there.  OpenSSL's libcrypto — the one the Python
 * process already loaded for hashlib — is about 3x faster on 1 KiB+ frames on these machines, so
 * it is dlopen()ed once (noise_openssl_load) into a small table of EVP function pointers.  Both
 * backends produce identical bytes (tests check it); AUTO picks per call by size.
 *
 * A key object caches an OpenSSL EVP_CIPHER_CTX per direction, so a frame costs one IV reset
 * instead of a full context set-up.  It is not thread-safe: one user at a time (the .pyx holds a
 * busy flag around GIL-free calls). */
#ifndef AURA_NOISE_AEAD_H
#define AURA_NOISE_AEAD_H

#include <stddef.h>
#include <stdint.h>

#define NOISE_AEAD_SODIUM 1
#define NOISE_AEAD_OPENSSL 2
#define NOISE_AEAD_AUTO 0
/* Below this plaintext size AUTO uses libsodium: its per-call cost is lower, and on these
 * machines the two cross over between 512 B and 1 KiB (measured with _bench_raw_aead). */
#define NOISE_AEAD_AUTO_THRESHOLD 768

typedef struct noise_aead_key {
    uint8_t k[32];
    int backend;    /* NOISE_AEAD_* as requested */
    void *evp_enc;  /* EVP_CIPHER_CTX*, keyed lazily */
    void *evp_dec;
} noise_aead_key;

/* Load libcrypto from `path`; 0 on success (idempotent), -1 with a message otherwise. */
int noise_openssl_load(const char *path, char *err, size_t errlen);
int noise_openssl_available(void);

void noise_aead_key_init(noise_aead_key *key, const uint8_t k[32], int backend);
/* Replace the key bytes (rekey); cached contexts are re-keyed lazily. */
void noise_aead_key_set(noise_aead_key *key, const uint8_t k[32]);
/* Wipe the key and free cached contexts. */
void noise_aead_key_clear(noise_aead_key *key);
/* Copy `src` into `dst` without sharing contexts (dst must be cleared/uninitialised). */
void noise_aead_key_copy(noise_aead_key *dst, const noise_aead_key *src);

/* out = ciphertext || 16-byte tag (out may equal pt).  0 ok, -1 backend failure. */
int noise_aead_seal(noise_aead_key *key, uint64_t n, const uint8_t *ad, size_t adlen,
                    const uint8_t *pt, size_t ptlen, uint8_t *out);
/* ct includes the tag (ctlen >= 16); writes ctlen-16 bytes to out (may equal ct).  0 ok, -1
 * authentication failure (out is wiped). */
int noise_aead_open(noise_aead_key *key, uint64_t n, const uint8_t *ad, size_t adlen,
                    const uint8_t *ct, size_t ctlen, uint8_t *out);

/* Raw one-shot calls for the benchmark limits (fresh context each call for OpenSSL is NOT used:
 * the limit keeps one context per key, as a tuned C program would). */
int noise_aead_seal_backend(noise_aead_key *key, int backend, uint64_t n, const uint8_t *ad,
                            size_t adlen, const uint8_t *pt, size_t ptlen, uint8_t *out);

#endif
