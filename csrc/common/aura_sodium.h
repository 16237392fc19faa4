/* aura_sodium.h — the one libsodium function table shared by every compiled module.
 *
 * libsodium is not linked: `aura_core._sodium` dlopen()s a library that exports it (PyNaCl's
 * extension, or a system libsodium) and fills one table with dlsym() at import.  Every other
 * extension receives a pointer to that table through a capsule (see aura_core/_sodium_api.pxd),
 * so the table is filled once per process and sodium_init() runs exactly once.
 *
 * Adding a function: one X(...) line below; the loader and the error naming a missing symbol
 * follow from it.  The opaque state structs mirror libsodium's public layouts (ABI-stable).
 */
#ifndef AURA_SODIUM_H
#define AURA_SODIUM_H

#include <stddef.h>
#include <stdint.h>

#if defined(__GNUC__)
#define AURA_ALIGN(n) __attribute__((aligned(n)))
#else
#define AURA_ALIGN(n)
#endif

typedef struct AURA_ALIGN(64) aura_blake2b_state { unsigned char opaque[384]; } aura_blake2b_state;
typedef struct aura_sha256_state { uint32_t state[8]; uint64_t count; uint8_t buf[64]; } aura_sha256_state;
typedef struct AURA_ALIGN(16) aura_poly1305_state { unsigned char opaque[256]; } aura_poly1305_state;

#define AURA_SODIUM_FUNCS(X)                                                                        \
    X(int, sodium_init, (void))                                                                     \
    X(void, randombytes_buf, (void *buf, size_t size))                                              \
    X(void, sodium_memzero, (void *pnt, size_t len))                                                \
    X(int, sodium_memcmp, (const void *b1, const void *b2, size_t len))                             \
    X(int, crypto_scalarmult_curve25519, (unsigned char *q, const unsigned char *n,                 \
                                          const unsigned char *p))                                  \
    X(int, crypto_scalarmult_curve25519_base, (unsigned char *q, const unsigned char *n))           \
    X(int, crypto_sign_ed25519_seed_keypair, (unsigned char *pk, unsigned char *sk,                 \
                                              const unsigned char *seed))                           \
    X(int, crypto_sign_ed25519_detached, (unsigned char *sig, unsigned long long *siglen,           \
                                          const unsigned char *m, unsigned long long mlen,          \
                                          const unsigned char *sk))                                 \
    X(int, crypto_sign_ed25519_verify_detached, (const unsigned char *sig, const unsigned char *m,  \
                                                 unsigned long long mlen, const unsigned char *pk)) \
    X(int, crypto_sign_ed25519_pk_to_curve25519, (unsigned char *x, const unsigned char *ed))       \
    X(int, crypto_sign_ed25519_sk_to_curve25519, (unsigned char *x, const unsigned char *ed))       \
    X(int, crypto_sign_ed25519_sk_to_pk, (unsigned char *pk, const unsigned char *sk))              \
    X(int, crypto_aead_chacha20poly1305_ietf_encrypt_detached,                                      \
      (unsigned char *c, unsigned char *mac, unsigned long long *maclen, const unsigned char *m,    \
       unsigned long long mlen, const unsigned char *ad, unsigned long long adlen,                  \
       const unsigned char *nsec, const unsigned char *npub, const unsigned char *k))               \
    X(int, crypto_aead_chacha20poly1305_ietf_decrypt_detached,                                      \
      (unsigned char *m, unsigned char *nsec, const unsigned char *c, unsigned long long clen,      \
       const unsigned char *mac, const unsigned char *ad, unsigned long long adlen,                 \
       const unsigned char *npub, const unsigned char *k))                                          \
    X(int, crypto_aead_xchacha20poly1305_ietf_encrypt,                                              \
      (unsigned char *c, unsigned long long *clen, const unsigned char *m, unsigned long long mlen, \
       const unsigned char *ad, unsigned long long adlen, const unsigned char *nsec,                \
       const unsigned char *npub, const unsigned char *k))                                          \
    X(int, crypto_aead_xchacha20poly1305_ietf_decrypt,                                              \
      (unsigned char *m, unsigned long long *mlen, unsigned char *nsec, const unsigned char *c,     \
       unsigned long long clen, const unsigned char *ad, unsigned long long adlen,                  \
       const unsigned char *npub, const unsigned char *k))                                          \
    X(int, crypto_stream_chacha20_ietf_xor_ic,                                                      \
      (unsigned char *c, const unsigned char *m, unsigned long long mlen, const unsigned char *n,   \
       uint32_t ic, const unsigned char *k))                                                        \
    X(int, crypto_onetimeauth_poly1305_init, (aura_poly1305_state *st, const unsigned char *key))   \
    X(int, crypto_onetimeauth_poly1305_update, (aura_poly1305_state *st, const unsigned char *in,   \
                                                unsigned long long inlen))                          \
    X(int, crypto_onetimeauth_poly1305_final, (aura_poly1305_state *st, unsigned char *out))        \
    X(int, crypto_generichash_blake2b, (unsigned char *out, size_t outlen, const unsigned char *in, \
                                        unsigned long long inlen, const unsigned char *key,         \
                                        size_t keylen))                                             \
    X(int, crypto_generichash_blake2b_salt_personal,                                                \
      (unsigned char *out, size_t outlen, const unsigned char *in, unsigned long long inlen,        \
       const unsigned char *key, size_t keylen, const unsigned char *salt,                          \
       const unsigned char *personal))                                                              \
    X(int, crypto_generichash_blake2b_init, (aura_blake2b_state *st, const unsigned char *key,      \
                                             size_t keylen, size_t outlen))                         \
    X(int, crypto_generichash_blake2b_init_salt_personal,                                           \
      (aura_blake2b_state *st, const unsigned char *key, size_t keylen, size_t outlen,              \
       const unsigned char *salt, const unsigned char *personal))                                   \
    X(int, crypto_generichash_blake2b_update, (aura_blake2b_state *st, const unsigned char *in,     \
                                               unsigned long long inlen))                           \
    X(int, crypto_generichash_blake2b_final, (aura_blake2b_state *st, unsigned char *out,           \
                                              size_t outlen))                                       \
    X(int, crypto_hash_sha256, (unsigned char *out, const unsigned char *in,                        \
                                unsigned long long inlen))                                          \
    X(int, crypto_hash_sha256_init, (aura_sha256_state *st))                                        \
    X(int, crypto_hash_sha256_update, (aura_sha256_state *st, const unsigned char *in,              \
                                       unsigned long long inlen))                                   \
    X(int, crypto_hash_sha256_final, (aura_sha256_state *st, unsigned char *out))

typedef struct aura_sodium {
#define AURA_SODIUM_FIELD(ret, name, args) ret(*name) args;
    AURA_SODIUM_FUNCS(AURA_SODIUM_FIELD)
#undef AURA_SODIUM_FIELD
    const char *path; /* the library the table was filled from */
} aura_sodium_t;

/* Set once per extension module at import (from the capsule); read-only afterwards. */
extern const aura_sodium_t *aura_na;

/* Fill the table from the shared object at `path` and run sodium_init().  Returns 0 on success;
 * on failure writes a message naming the missing symbol (or the dlopen error) into err. */
int aura_sodium_load(const char *path, char *err, size_t errlen);

/* The table filled by the last successful aura_sodium_load() in this module, or NULL. */
const aura_sodium_t *aura_sodium_table(void);

#endif
