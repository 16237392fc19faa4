/* noise_aead.c — the two ChaCha20-Poly1305 backends and the libcrypto loader (see noise_aead.h). */
#include "noise_aead.h"

#include <dlfcn.h>
#include <stdio.h>
#include <string.h>

#include "aura_common.h"

/* EVP control codes (stable across OpenSSL 1.1 and 3.x). */
#define AURA_EVP_CTRL_AEAD_GET_TAG 0x10
#define AURA_EVP_CTRL_AEAD_SET_TAG 0x11

#define AURA_EVP_FUNCS(X)                                                                      \
    X(const void *, EVP_chacha20_poly1305, (void))                                             \
    X(void *, EVP_CIPHER_CTX_new, (void))                                                      \
    X(void, EVP_CIPHER_CTX_free, (void *ctx))                                                  \
    X(int, EVP_EncryptInit_ex, (void *ctx, const void *cipher, void *impl,                     \
                                const unsigned char *key, const unsigned char *iv))            \
    X(int, EVP_DecryptInit_ex, (void *ctx, const void *cipher, void *impl,                     \
                                const unsigned char *key, const unsigned char *iv))            \
    X(int, EVP_EncryptUpdate, (void *ctx, unsigned char *out, int *outl,                       \
                               const unsigned char *in, int inl))                              \
    X(int, EVP_DecryptUpdate, (void *ctx, unsigned char *out, int *outl,                       \
                               const unsigned char *in, int inl))                              \
    X(int, EVP_EncryptFinal_ex, (void *ctx, unsigned char *out, int *outl))                    \
    X(int, EVP_DecryptFinal_ex, (void *ctx, unsigned char *out, int *outl))                    \
    X(int, EVP_CIPHER_CTX_ctrl, (void *ctx, int type, int arg, void *ptr))

typedef struct {
#define F(ret, name, args) ret(*name) args;
    AURA_EVP_FUNCS(F)
#undef F
    const void *cipher;
} evp_table;

static evp_table evp;
static int evp_ready = 0;

int noise_openssl_load(const char *path, char *err, size_t errlen) {
    if (evp_ready) return 0;
    void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (h == NULL) {
        snprintf(err, errlen, "cannot load %s: %s", path, dlerror());
        return -1;
    }
    evp_table t;
    void *sym;
#define B(ret, name, args)                                                     \
    sym = dlsym(h, #name);                                                     \
    if (sym == NULL) {                                                         \
        snprintf(err, errlen, "%s does not export %s", path, #name);           \
        dlclose(h);                                                            \
        return -1;                                                             \
    }                                                                          \
    *(void **)(&t.name) = sym;
    AURA_EVP_FUNCS(B)
#undef B
    t.cipher = t.EVP_chacha20_poly1305();
    if (t.cipher == NULL) {
        snprintf(err, errlen, "%s has no ChaCha20-Poly1305", path);
        dlclose(h);
        return -1;
    }
    evp = t; /* handle stays open for the process lifetime, on purpose */
    evp_ready = 1;
    return 0;
}

int noise_openssl_available(void) { return evp_ready; }

static inline void nonce12(uint8_t iv[12], uint64_t n) {
    memset(iv, 0, 4);
    aura_store64_le(iv + 4, n);
}

void noise_aead_key_init(noise_aead_key *key, const uint8_t k[32], int backend) {
    memcpy(key->k, k, 32);
    key->backend = backend;
    key->evp_enc = NULL;
    key->evp_dec = NULL;
}

void noise_aead_key_set(noise_aead_key *key, const uint8_t k[32]) {
    memcpy(key->k, k, 32);
    /* drop cached contexts: they hold the old key schedule */
    if (key->evp_enc) evp.EVP_CIPHER_CTX_free(key->evp_enc);
    if (key->evp_dec) evp.EVP_CIPHER_CTX_free(key->evp_dec);
    key->evp_enc = key->evp_dec = NULL;
}

void noise_aead_key_clear(noise_aead_key *key) {
    if (key->evp_enc) evp.EVP_CIPHER_CTX_free(key->evp_enc); /* OpenSSL cleanses it */
    if (key->evp_dec) evp.EVP_CIPHER_CTX_free(key->evp_dec);
    key->evp_enc = key->evp_dec = NULL;
    aura_wipe(key->k, sizeof key->k);
}

void noise_aead_key_copy(noise_aead_key *dst, const noise_aead_key *src) {
    noise_aead_key_init(dst, src->k, src->backend);
}

static void *evp_ctx(noise_aead_key *key, int enc) {
    void **slot = enc ? &key->evp_enc : &key->evp_dec;
    if (*slot == NULL) {
        void *ctx = evp.EVP_CIPHER_CTX_new();
        if (ctx == NULL) return NULL;
        int ok = enc ? evp.EVP_EncryptInit_ex(ctx, evp.cipher, NULL, key->k, NULL)
                     : evp.EVP_DecryptInit_ex(ctx, evp.cipher, NULL, key->k, NULL);
        if (ok != 1) {
            evp.EVP_CIPHER_CTX_free(ctx);
            return NULL;
        }
        *slot = ctx;
    }
    return *slot;
}

static inline int pick(const noise_aead_key *key, int backend, size_t len) {
    if (backend == NOISE_AEAD_AUTO)
        backend = (evp_ready && len >= NOISE_AEAD_AUTO_THRESHOLD) ? NOISE_AEAD_OPENSSL
                                                                  : NOISE_AEAD_SODIUM;
    if (backend == NOISE_AEAD_OPENSSL && !evp_ready) backend = NOISE_AEAD_SODIUM;
    return backend;
}

static int seal_openssl(noise_aead_key *key, uint64_t n, const uint8_t *ad, size_t adlen,
                        const uint8_t *pt, size_t ptlen, uint8_t *out) {
    uint8_t iv[12];
    int l = 0;
    void *ctx = evp_ctx(key, 1);
    if (ctx == NULL || ptlen > 0x7fffffff || adlen > 0x7fffffff) return -1;
    nonce12(iv, n);
    if (evp.EVP_EncryptInit_ex(ctx, NULL, NULL, NULL, iv) != 1) return -1;
    if (adlen && evp.EVP_EncryptUpdate(ctx, NULL, &l, ad, (int)adlen) != 1) return -1;
    if (ptlen && evp.EVP_EncryptUpdate(ctx, out, &l, pt, (int)ptlen) != 1) return -1;
    if (evp.EVP_EncryptFinal_ex(ctx, out + ptlen, &l) != 1) return -1;
    if (evp.EVP_CIPHER_CTX_ctrl(ctx, AURA_EVP_CTRL_AEAD_GET_TAG, 16, out + ptlen) != 1) return -1;
    return 0;
}

static int open_openssl(noise_aead_key *key, uint64_t n, const uint8_t *ad, size_t adlen,
                        const uint8_t *ct, size_t ctlen, uint8_t *out) {
    uint8_t iv[12], tag[16];
    int l = 0;
    size_t mlen = ctlen - 16;
    void *ctx = evp_ctx(key, 0);
    if (ctx == NULL || ctlen > 0x7fffffff || adlen > 0x7fffffff) return -1;
    memcpy(tag, ct + mlen, 16); /* copy first: out may alias ct */
    nonce12(iv, n);
    if (evp.EVP_DecryptInit_ex(ctx, NULL, NULL, NULL, iv) != 1) return -1;
    if (adlen && evp.EVP_DecryptUpdate(ctx, NULL, &l, ad, (int)adlen) != 1) return -1;
    if (mlen && evp.EVP_DecryptUpdate(ctx, out, &l, ct, (int)mlen) != 1) goto fail;
    if (evp.EVP_CIPHER_CTX_ctrl(ctx, AURA_EVP_CTRL_AEAD_SET_TAG, 16, tag) != 1) goto fail;
    if (evp.EVP_DecryptFinal_ex(ctx, out + mlen, &l) != 1) goto fail;
    return 0;
fail:
    if (mlen) memset(out, 0, mlen); /* never hand out unauthenticated plaintext */
    return -1;
}

int noise_aead_seal_backend(noise_aead_key *key, int backend, uint64_t n, const uint8_t *ad,
                            size_t adlen, const uint8_t *pt, size_t ptlen, uint8_t *out) {
    if (pick(key, backend, ptlen) == NOISE_AEAD_OPENSSL)
        return seal_openssl(key, n, ad, adlen, pt, ptlen, out);
    uint8_t iv[12];
    nonce12(iv, n);
    return aura_na->crypto_aead_chacha20poly1305_ietf_encrypt_detached(
               out, out + ptlen, NULL, pt, ptlen, ad, adlen, NULL, iv, key->k) == 0
               ? 0
               : -1;
}

int noise_aead_seal(noise_aead_key *key, uint64_t n, const uint8_t *ad, size_t adlen,
                    const uint8_t *pt, size_t ptlen, uint8_t *out) {
    return noise_aead_seal_backend(key, key->backend, n, ad, adlen, pt, ptlen, out);
}

int noise_aead_open(noise_aead_key *key, uint64_t n, const uint8_t *ad, size_t adlen,
                    const uint8_t *ct, size_t ctlen, uint8_t *out) {
    if (ctlen < 16) return -1;
    size_t mlen = ctlen - 16;
    if (pick(key, key->backend, mlen) == NOISE_AEAD_OPENSSL)
        return open_openssl(key, n, ad, adlen, ct, ctlen, out);
    uint8_t iv[12];
    nonce12(iv, n);
    /* libsodium verifies the tag before writing any plaintext */
    return aura_na->crypto_aead_chacha20poly1305_ietf_decrypt_detached(
               out, NULL, ct, mlen, ct + mlen, ad, adlen, iv, key->k) == 0
               ? 0
               : -1;
}
