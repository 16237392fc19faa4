/* noise.c — Noise hash/HMAC/HKDF, CipherState, SymmetricState and the IKpsk2 HandshakeState.
 *
 * IKpsk2 (rev 34, §7.5 and §9):   <- s
 *                                 ...
 *                                 -> e, es, s, ss
 *                                 <- e, ee, se, psk
 * With a psk modifier every "e" token also does MixKey(e.public). */
#include "noise.h"

#include <string.h>

#include "aura_common.h"
#include "blake2s.h"

/* ---------------- hashing ---------------- */

typedef struct {
    int id;
    union {
        aura_blake2s_state s;
        aura_blake2b_state b;
    } u;
} hctx;

size_t noise_hashlen(int hash_id) { return hash_id == NOISE_HASH_BLAKE2S ? 32 : 64; }
static size_t blocklen(int hash_id) { return hash_id == NOISE_HASH_BLAKE2S ? 64 : 128; }

static void h_init(hctx *c, int id) {
    c->id = id;
    if (id == NOISE_HASH_BLAKE2S)
        aura_blake2s_init(&c->u.s, 32, NULL, 0);
    else
        aura_na->crypto_generichash_blake2b_init(&c->u.b, NULL, 0, 64);
}
static void h_update(hctx *c, const uint8_t *p, size_t n) {
    if (n == 0) return;
    if (c->id == NOISE_HASH_BLAKE2S)
        aura_blake2s_update(&c->u.s, p, n);
    else
        aura_na->crypto_generichash_blake2b_update(&c->u.b, p, n);
}
static void h_final(hctx *c, uint8_t *out) {
    if (c->id == NOISE_HASH_BLAKE2S)
        aura_blake2s_final(&c->u.s, out);
    else {
        aura_na->crypto_generichash_blake2b_final(&c->u.b, out, 64);
        aura_wipe(&c->u.b, sizeof c->u.b);
    }
}

void noise_hash(int hash_id, const uint8_t *in, size_t inlen, uint8_t *out) {
    hctx c;
    h_init(&c, hash_id);
    h_update(&c, in, inlen);
    h_final(&c, out);
}

/* HMAC-HASH(key, a || b), RFC 2104 with the hash's block length. */
static void hmac2(int id, const uint8_t *key, size_t keylen, const uint8_t *a, size_t alen,
                  const uint8_t *b, size_t blen, uint8_t *out) {
    uint8_t pad[128], inner[64];
    size_t bl = blocklen(id), hl = noise_hashlen(id);
    hctx c;
    /* keys here are at most HASHLEN <= block length (Noise never passes longer ones) */
    memset(pad, 0x36, bl);
    for (size_t i = 0; i < keylen; i++) pad[i] ^= key[i];
    h_init(&c, id);
    h_update(&c, pad, bl);
    h_update(&c, a, alen);
    h_update(&c, b, blen);
    h_final(&c, inner);
    memset(pad, 0x5c, bl);
    for (size_t i = 0; i < keylen; i++) pad[i] ^= key[i];
    h_init(&c, id);
    h_update(&c, pad, bl);
    h_update(&c, inner, hl);
    h_final(&c, out);
    aura_wipe(pad, sizeof pad);
    aura_wipe(inner, sizeof inner);
}

void noise_hmac(int hash_id, const uint8_t *key, size_t keylen, const uint8_t *in, size_t inlen,
                uint8_t *out) {
    hmac2(hash_id, key, keylen, in, inlen, NULL, 0, out);
}

void noise_hkdf(int id, const uint8_t *ck, const uint8_t *ikm, size_t ikmlen, uint8_t *out1,
                uint8_t *out2, uint8_t *out3) {
    uint8_t tk[64], one = 1, two = 2, three = 3;
    size_t hl = noise_hashlen(id);
    hmac2(id, ck, hl, ikm, ikmlen, NULL, 0, tk);
    hmac2(id, tk, hl, &one, 1, NULL, 0, out1);
    hmac2(id, tk, hl, out1, hl, &two, 1, out2);
    if (out3) hmac2(id, tk, hl, out2, hl, &three, 1, out3);
    aura_wipe(tk, sizeof tk);
}

/* ---------------- CipherState ---------------- */

void noise_cipher_init(noise_cipher *c, const uint8_t *k, int backend) {
    static const uint8_t zero[32] = {0};
    noise_aead_key_init(&c->key, k ? k : zero, backend);
    c->n = 0;
    c->has_key = k != NULL;
}

void noise_cipher_clear(noise_cipher *c) {
    noise_aead_key_clear(&c->key);
    c->n = 0;
    c->has_key = 0;
}

int noise_cipher_encrypt(noise_cipher *c, const uint8_t *ad, size_t adlen, const uint8_t *pt,
                         size_t ptlen, uint8_t *out) {
    if (!c->has_key) {
        if (out != pt && ptlen) memmove(out, pt, ptlen);
        return NOISE_OK;
    }
    if (c->n == UINT64_MAX) return NOISE_ERR_NONCE; /* 2^64-1 is reserved (rev 34 §5.1) */
    if (noise_aead_seal(&c->key, c->n, ad, adlen, pt, ptlen, out) != 0) return NOISE_ERR_INTERNAL;
    c->n++;
    return NOISE_OK;
}

int noise_cipher_decrypt(noise_cipher *c, const uint8_t *ad, size_t adlen, const uint8_t *ct,
                         size_t ctlen, uint8_t *out, size_t *outlen) {
    if (!c->has_key) {
        if (out != ct && ctlen) memmove(out, ct, ctlen);
        *outlen = ctlen;
        return NOISE_OK;
    }
    if (ctlen < NOISE_TAGLEN) return NOISE_ERR_SHORT;
    if (c->n == UINT64_MAX) return NOISE_ERR_NONCE;
    if (noise_aead_open(&c->key, c->n, ad, adlen, ct, ctlen, out) != 0) return NOISE_ERR_DECRYPT;
    c->n++;
    *outlen = ctlen - NOISE_TAGLEN;
    return NOISE_OK;
}

int noise_cipher_rekey(noise_cipher *c) {
    uint8_t zeros[32] = {0}, out[48];
    if (!c->has_key) return NOISE_ERR_STATE;
    /* REKEY(k) = first 32 bytes of ENCRYPT(k, 2^64-1, "", zeros[32]) */
    if (noise_aead_seal_backend(&c->key, NOISE_AEAD_SODIUM, UINT64_MAX, NULL, 0, zeros, 32, out) != 0)
        return NOISE_ERR_INTERNAL;
    noise_aead_key_set(&c->key, out);
    aura_wipe(out, sizeof out);
    return NOISE_OK;
}

/* ---------------- SymmetricState (inside the handshake struct) ---------------- */

static void mix_hash(noise_handshake *hs, const uint8_t *data, size_t len) {
    hctx c;
    h_init(&c, hs->hash_id);
    h_update(&c, hs->h, hs->hashlen);
    h_update(&c, data, len);
    h_final(&c, hs->h);
}

static void mix_key(noise_handshake *hs, const uint8_t *ikm, size_t len) {
    uint8_t tk[64];
    noise_hkdf(hs->hash_id, hs->ck, ikm, len, hs->ck, tk, NULL);
    memcpy(hs->k, tk, 32); /* truncated to 32 bytes when HASHLEN is 64 */
    hs->n = 0;
    hs->has_k = 1;
    aura_wipe(tk, sizeof tk);
}

static void mix_key_and_hash(noise_handshake *hs, const uint8_t *ikm, size_t len) {
    uint8_t th[64], tk[64];
    noise_hkdf(hs->hash_id, hs->ck, ikm, len, hs->ck, th, tk);
    mix_hash(hs, th, hs->hashlen);
    memcpy(hs->k, tk, 32);
    hs->n = 0;
    hs->has_k = 1;
    aura_wipe(th, sizeof th);
    aura_wipe(tk, sizeof tk);
}

static inline void hs_nonce(uint8_t iv[12], uint64_t n) {
    memset(iv, 0, 4);
    aura_store64_le(iv + 4, n);
}

/* out = ENCRYPT(k, n, h, pt); MixHash(out).  Every IKpsk2 encryption happens after a MixKey. */
static int encrypt_and_hash(noise_handshake *hs, const uint8_t *pt, size_t len, uint8_t *out) {
    uint8_t iv[12];
    hs_nonce(iv, hs->n);
    if (aura_na->crypto_aead_chacha20poly1305_ietf_encrypt_detached(
            out, out + len, NULL, pt, len, hs->h, hs->hashlen, NULL, iv, hs->k) != 0)
        return NOISE_ERR_INTERNAL;
    hs->n++;
    mix_hash(hs, out, len + NOISE_TAGLEN);
    return NOISE_OK;
}

static int decrypt_and_hash(noise_handshake *hs, const uint8_t *ct, size_t len, uint8_t *out) {
    uint8_t iv[12];
    if (len < NOISE_TAGLEN) return NOISE_ERR_SHORT;
    hs_nonce(iv, hs->n);
    if (aura_na->crypto_aead_chacha20poly1305_ietf_decrypt_detached(
            out, NULL, ct, len - NOISE_TAGLEN, ct + len - NOISE_TAGLEN, hs->h, hs->hashlen, iv,
            hs->k) != 0)
        return NOISE_ERR_DECRYPT;
    hs->n++;
    mix_hash(hs, ct, len);
    return NOISE_OK;
}

/* MixKey(DH(priv, pub)); the all-zero result (low-order point) is rejected. */
static int mix_dh(noise_handshake *hs, const uint8_t *priv, const uint8_t *pub) {
    uint8_t shared[32];
    if (aura_na->crypto_scalarmult_curve25519(shared, priv, pub) != 0) {
        aura_wipe(shared, sizeof shared);
        return NOISE_ERR_DH;
    }
    mix_key(hs, shared, 32);
    aura_wipe(shared, sizeof shared);
    return NOISE_OK;
}

int noise_x25519_base(uint8_t pub[32], const uint8_t priv[32]) {
    return aura_na->crypto_scalarmult_curve25519_base(pub, priv) == 0 ? NOISE_OK : NOISE_ERR_DH;
}

/* ---------------- HandshakeState ---------------- */

/* Static public keys of the last few static private keys: a node uses one static key for every
 * handshake, and recomputing its public key would be a ninth and tenth X25519 per handshake.
 * Only touched from noise_hs_init, which the .pyx calls with the GIL held (one thread at a time). */
#define PUBCACHE 4
static struct {
    uint8_t priv[32], pub[32];
    int used;
} pubcache[PUBCACHE];
static unsigned pubcache_next;

static int static_pub(uint8_t pub[32], const uint8_t priv[32]) {
    for (int i = 0; i < PUBCACHE; i++) {
        if (pubcache[i].used && aura_ct_eq(pubcache[i].priv, priv, 32)) {
            memcpy(pub, pubcache[i].pub, 32);
            return NOISE_OK;
        }
    }
    int rc = noise_x25519_base(pub, priv);
    if (rc == NOISE_OK) {
        unsigned slot = pubcache_next++ % PUBCACHE;
        memcpy(pubcache[slot].priv, priv, 32);
        memcpy(pubcache[slot].pub, pub, 32);
        pubcache[slot].used = 1;
    }
    return rc;
}

int noise_hs_init(noise_handshake *hs, int hash_id, const uint8_t *name, size_t namelen,
                  const uint8_t *prologue, size_t prologuelen, int initiator, const uint8_t s[32],
                  const uint8_t *rs, const uint8_t psk[32], const uint8_t *e) {
    memset(hs, 0, sizeof *hs);
    if (hash_id != NOISE_HASH_BLAKE2S && hash_id != NOISE_HASH_BLAKE2B) return NOISE_ERR_STATE;
    if (initiator && rs == NULL) return NOISE_ERR_STATE;
    hs->hash_id = hash_id;
    hs->hashlen = noise_hashlen(hash_id);
    /* InitializeSymmetric: h = name zero-padded to HASHLEN if it fits, else HASH(name) */
    if (namelen <= hs->hashlen)
        memcpy(hs->h, name, namelen);
    else
        noise_hash(hash_id, name, namelen, hs->h);
    memcpy(hs->ck, hs->h, hs->hashlen);
    mix_hash(hs, prologue, prologuelen);
    hs->initiator = initiator;
    memcpy(hs->s, s, 32);
    if (static_pub(hs->s_pub, s) != NOISE_OK) return NOISE_ERR_DH;
    memcpy(hs->psk, psk, 32);
    if (e) {
        memcpy(hs->e, e, 32);
        hs->has_fixed_e = 1;
    }
    /* pre-message "<- s": the responder's static public key */
    if (initiator) {
        memcpy(hs->rs, rs, 32);
        mix_hash(hs, hs->rs, 32);
    } else {
        mix_hash(hs, hs->s_pub, 32);
    }
    return NOISE_OK;
}

size_t noise_hs_overhead(const noise_handshake *hs) {
    return hs->step == 0 ? NOISE_MSG1_OVERHEAD : NOISE_MSG2_OVERHEAD;
}

static int gen_e(noise_handshake *hs) {
    if (!hs->has_fixed_e) aura_na->randombytes_buf(hs->e, 32);
    return noise_x25519_base(hs->e_pub, hs->e);
}

/* token "e" on the writing side (psk handshake: MixKey too) */
static int write_e(noise_handshake *hs, uint8_t *out) {
    int rc = gen_e(hs);
    if (rc) return rc;
    memcpy(out, hs->e_pub, 32);
    mix_hash(hs, hs->e_pub, 32);
    mix_key(hs, hs->e_pub, 32);
    return NOISE_OK;
}

static void read_e(noise_handshake *hs, const uint8_t *in) {
    memcpy(hs->re, in, 32);
    mix_hash(hs, hs->re, 32);
    mix_key(hs, hs->re, 32);
}

static int do_write(noise_handshake *hs, const uint8_t *payload, size_t plen, uint8_t *out) {
    int rc;
    if (hs->initiator) { /* -> e, es, s, ss */
        if ((rc = write_e(hs, out))) return rc;
        if ((rc = mix_dh(hs, hs->e, hs->rs))) return rc;
        if ((rc = encrypt_and_hash(hs, hs->s_pub, 32, out + 32))) return rc;
        if ((rc = mix_dh(hs, hs->s, hs->rs))) return rc;
        return encrypt_and_hash(hs, payload, plen, out + 80);
    }
    /* <- e, ee, se, psk */
    if ((rc = write_e(hs, out))) return rc;
    if ((rc = mix_dh(hs, hs->e, hs->re))) return rc;
    if ((rc = mix_dh(hs, hs->e, hs->rs))) return rc;
    mix_key_and_hash(hs, hs->psk, 32);
    return encrypt_and_hash(hs, payload, plen, out + 32);
}

int noise_hs_write(noise_handshake *hs, const uint8_t *payload, size_t plen, uint8_t *out,
                   size_t outcap, size_t *outlen) {
    int my_turn = hs->initiator ? hs->step == 0 : hs->step == 1;
    if (!my_turn) return NOISE_ERR_STATE;
    size_t need = noise_hs_overhead(hs) + plen;
    if (need > NOISE_MAX_MSG || need > outcap) return NOISE_ERR_SIZE;
    /* write can only fail on a broken local key; work on a copy all the same */
    noise_handshake t = *hs;
    int rc = do_write(&t, payload, plen, out);
    if (rc == NOISE_OK) {
        t.step++;
        *hs = t;
        *outlen = need;
    }
    aura_wipe(&t, sizeof t);
    return rc;
}

static int do_read(noise_handshake *hs, const uint8_t *msg, size_t len, uint8_t *out,
                   size_t *outlen) {
    int rc;
    if (!hs->initiator) { /* -> e, es, s, ss */
        if (len < NOISE_MSG1_OVERHEAD) return NOISE_ERR_SHORT;
        read_e(hs, msg);
        if ((rc = mix_dh(hs, hs->s, hs->re))) return rc;
        if ((rc = decrypt_and_hash(hs, msg + 32, 48, hs->rs))) return rc;
        if ((rc = mix_dh(hs, hs->s, hs->rs))) return rc;
        if ((rc = decrypt_and_hash(hs, msg + 80, len - 80, out))) return rc;
        *outlen = len - NOISE_MSG1_OVERHEAD;
        return NOISE_OK;
    }
    /* <- e, ee, se, psk */
    if (len < NOISE_MSG2_OVERHEAD) return NOISE_ERR_SHORT;
    read_e(hs, msg);
    if ((rc = mix_dh(hs, hs->e, hs->re))) return rc;
    if ((rc = mix_dh(hs, hs->s, hs->re))) return rc;
    mix_key_and_hash(hs, hs->psk, 32);
    if ((rc = decrypt_and_hash(hs, msg + 32, len - 32, out))) return rc;
    *outlen = len - NOISE_MSG2_OVERHEAD;
    return NOISE_OK;
}

int noise_hs_read(noise_handshake *hs, const uint8_t *msg, size_t msglen, uint8_t *out,
                  size_t *outlen) {
    int my_turn = hs->initiator ? hs->step == 1 : hs->step == 0;
    if (!my_turn) return NOISE_ERR_STATE;
    if (msglen > NOISE_MAX_MSG) return NOISE_ERR_SIZE;
    /* snapshot / commit: a rejected message changes nothing */
    noise_handshake t = *hs;
    size_t n = 0;
    int rc = do_read(&t, msg, msglen, out, &n);
    if (rc == NOISE_OK) {
        t.step++;
        *hs = t;
        *outlen = n;
    } else if (msglen) {
        memset(out, 0, msglen); /* no partial plaintext leaves a failed read */
    }
    aura_wipe(&t, sizeof t);
    return rc;
}

int noise_hs_split(const noise_handshake *hs, uint8_t k1[32], uint8_t k2[32]) {
    uint8_t t1[64], t2[64];
    if (hs->step != 2) return NOISE_ERR_STATE;
    noise_hkdf(hs->hash_id, hs->ck, NULL, 0, t1, t2, NULL);
    memcpy(k1, t1, 32);
    memcpy(k2, t2, 32);
    aura_wipe(t1, sizeof t1);
    aura_wipe(t2, sizeof t2);
    return NOISE_OK;
}

void noise_hs_clear(noise_handshake *hs) { aura_wipe(hs, sizeof *hs); }
