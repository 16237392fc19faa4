/* noise.h — Noise IKpsk2 (rev 34) over 25519 / ChaChaPoly / BLAKE2s|BLAKE2b, and the transport
 * sessions built on it (datagram with replay window, stream, padding, batches).
 *
 * Theory of operation.  A handshake is a plain struct without pointers, so a read is done on a
 * copy and committed only on success: a rejected message leaves the state exactly as it was
 * (the flynn/noise and snow advisories were about half-updated state).  Transport cipher states
 * advance their nonce only after a successful open.  Everything returns NOISE_OK or a negative
 * NOISE_ERR_* code; the .pyx maps codes to aura_core.errors.
 *
 * Wire formats are specified byte for byte in docs/wire.md §3 ("Noise channel"). */
#ifndef AURA_NOISE_H
#define AURA_NOISE_H

#include <stddef.h>
#include <stdint.h>

#include "noise_aead.h"

#define NOISE_MAX_MSG 65535u
#define NOISE_TAGLEN 16u
#define NOISE_DHLEN 32u
#define NOISE_MAX_PLAINTEXT (NOISE_MAX_MSG - NOISE_TAGLEN) /* 65519 */
#define NOISE_HASH_BLAKE2S 0
#define NOISE_HASH_BLAKE2B 1
#define NOISE_MSG1_OVERHEAD (32u + 48u + 16u) /* e, encrypted s, payload tag */
#define NOISE_MSG2_OVERHEAD (32u + 16u)       /* e, payload tag */

/* WireGuard's limits (messages.h), used for transport sessions. */
#define NOISE_REKEY_AFTER_MESSAGES (1ULL << 60)
#define NOISE_REJECT_AFTER_MESSAGES (UINT64_MAX - (1ULL << 13)) /* 2^64 - 2^13 - 1 */

enum {
    NOISE_OK = 0,
    NOISE_ERR_STATE = -1,     /* call not allowed now (usage) */
    NOISE_ERR_SIZE = -2,      /* message/payload over the limit, or output too small */
    NOISE_ERR_DECRYPT = -3,   /* authentication failed */
    NOISE_ERR_DH = -4,        /* DH gave the all-zero output (low-order point) */
    NOISE_ERR_SHORT = -5,     /* message shorter than its fixed part */
    NOISE_ERR_NONCE = -6,     /* nonce space exhausted */
    NOISE_ERR_REPLAY = -7,    /* counter seen or too old */
    NOISE_ERR_EXPIRED = -8,   /* REJECT_AFTER_* reached, or session marked expired */
    NOISE_ERR_MALFORMED = -9, /* bad header / padding */
    NOISE_ERR_INDEX = -10,    /* datagram for another receiver index */
    NOISE_ERR_INTERNAL = -11,
};

/* ---- hashing (exposed for tests and the raw benchmark) ---- */
size_t noise_hashlen(int hash_id);
void noise_hash(int hash_id, const uint8_t *in, size_t inlen, uint8_t *out);
void noise_hmac(int hash_id, const uint8_t *key, size_t keylen, const uint8_t *in, size_t inlen,
                uint8_t *out);
/* HKDF as the Noise spec defines it (2 or 3 outputs of HASHLEN each; out3 may be NULL). */
void noise_hkdf(int hash_id, const uint8_t *ck, const uint8_t *ikm, size_t ikmlen, uint8_t *out1,
                uint8_t *out2, uint8_t *out3);

/* ---- CipherState ---- */
typedef struct noise_cipher {
    noise_aead_key key;
    uint64_t n;
    int has_key;
} noise_cipher;

void noise_cipher_init(noise_cipher *c, const uint8_t *k /* NULL: empty */, int backend);
void noise_cipher_clear(noise_cipher *c);
/* EncryptWithAd: out gets ptlen+16 bytes (or ptlen if no key).  Nonce advances on success. */
int noise_cipher_encrypt(noise_cipher *c, const uint8_t *ad, size_t adlen, const uint8_t *pt,
                         size_t ptlen, uint8_t *out);
/* DecryptWithAd: nonce advances only on success; out untouched-or-wiped on failure. */
int noise_cipher_decrypt(noise_cipher *c, const uint8_t *ad, size_t adlen, const uint8_t *ct,
                         size_t ctlen, uint8_t *out, size_t *outlen);
int noise_cipher_rekey(noise_cipher *c);

/* ---- HandshakeState (IKpsk2 only) ---- */
typedef struct noise_handshake {
    int hash_id;
    size_t hashlen;
    uint8_t ck[64], h[64];
    uint8_t k[32];
    uint64_t n;
    int has_k;
    int initiator;
    int step; /* messages processed so far; 2 = complete */
    int has_fixed_e;
    uint8_t s[32], s_pub[32], e[32], e_pub[32], rs[32], re[32], psk[32];
} noise_handshake;

/* protocol name: the full Noise name (hash suite decided by the caller from it).  rs required for
 * the initiator, ignored for the responder.  e: fixed ephemeral private key or NULL. */
int noise_hs_init(noise_handshake *hs, int hash_id, const uint8_t *name, size_t namelen,
                  const uint8_t *prologue, size_t prologuelen, int initiator, const uint8_t s[32],
                  const uint8_t *rs, const uint8_t psk[32], const uint8_t *e);
size_t noise_hs_overhead(const noise_handshake *hs); /* fixed bytes of the next message */
int noise_hs_write(noise_handshake *hs, const uint8_t *payload, size_t plen, uint8_t *out,
                   size_t outcap, size_t *outlen);
/* out must hold msglen bytes. */
int noise_hs_read(noise_handshake *hs, const uint8_t *msg, size_t msglen, uint8_t *out,
                  size_t *outlen);
/* k1: initiator -> responder, k2: responder -> initiator. */
int noise_hs_split(const noise_handshake *hs, uint8_t k1[32], uint8_t k2[32]);
void noise_hs_clear(noise_handshake *hs);
int noise_x25519_base(uint8_t pub[32], const uint8_t priv[32]);

/* ---- transport sessions (noise_transport.c) ---- */
#define NOISE_REPLAY_BITS 8192u
#define NOISE_REPLAY_WORDS (NOISE_REPLAY_BITS / 64u)
#define NOISE_REPLAY_WINDOW (NOISE_REPLAY_BITS - 64u) /* 8128 usable, as WireGuard */

typedef struct noise_replay {
    uint64_t top; /* greatest accepted counter + 1; 0 = none yet */
    uint64_t bits[NOISE_REPLAY_WORDS];
} noise_replay;

void noise_replay_reset(noise_replay *r);
/* 1 if the counter would be accepted (no change made), 0 otherwise. */
int noise_replay_check(const noise_replay *r, uint64_t counter);
/* Marks the counter seen; 1 if it was new, 0 if a replay (call after check + decrypt). */
int noise_replay_update(noise_replay *r, uint64_t counter);

#define NOISE_DGRAM_TYPE_DATA 4u
#define NOISE_DGRAM_HEADER 16u
#define NOISE_STREAM_HEADER 2u

enum { /* per-session counters */
    NOISE_STAT_RECV_OK = 0,
    NOISE_STAT_DROP_MALFORMED,
    NOISE_STAT_DROP_INDEX,
    NOISE_STAT_DROP_REPLAY,
    NOISE_STAT_DROP_AUTH,
    NOISE_STAT_DROP_EXPIRED,
    NOISE_STAT_SENT,
    NOISE_STAT_COUNT
};

typedef struct noise_session {
    noise_cipher send, recv;
    noise_replay replay;
    uint32_t local_index, remote_index;
    uint32_t pad_block; /* 0: no padding */
    int expired;        /* set by the owner: epoch change, time limit */
    uint64_t stats[NOISE_STAT_COUNT];
} noise_session;

void noise_session_init(noise_session *s, const uint8_t send_k[32], const uint8_t recv_k[32],
                        int backend, uint32_t local_index, uint32_t remote_index,
                        uint32_t pad_block);
void noise_session_clear(noise_session *s);
/* Plaintext length after padding, or 0 if the payload cannot be carried (too large). */
size_t noise_padded_len(uint32_t pad_block, size_t len);
size_t noise_dgram_sealed_len(const noise_session *s, size_t len); /* 0: too large */
size_t noise_stream_sealed_len(const noise_session *s, size_t len);

int noise_dgram_seal(noise_session *s, const uint8_t *pt, size_t ptlen, uint8_t *out,
                     size_t *outlen);
/* out must hold len bytes; updates the stats counter of the outcome. */
int noise_dgram_open(noise_session *s, const uint8_t *in, size_t len, uint8_t *out,
                     size_t *outlen);
int noise_stream_seal(noise_session *s, const uint8_t *pt, size_t ptlen, uint8_t *out,
                      size_t *outlen);
/* Opens one frame from the front of in; *consumed = 0 if in holds no complete frame yet. */
int noise_stream_open(noise_session *s, const uint8_t *in, size_t len, uint8_t *out,
                      size_t *outlen, size_t *consumed);

/* Batches: items i at in + in_off[i] .. in_off[i+1] (or ptrs/lens arrays); outputs packed into
 * out with out_off[0..n].  Datagram open: status[i] is the NOISE_* code of frame i (drops are
 * counted, not fatal).  Seal: stops at the first error and returns it. */
int noise_dgram_seal_batch(noise_session *s, size_t n, const uint8_t *const *ptrs,
                           const size_t *lens, uint8_t *out, size_t *out_off);
int noise_stream_seal_batch(noise_session *s, size_t n, const uint8_t *const *ptrs,
                            const size_t *lens, uint8_t *out, size_t *out_off);
void noise_dgram_open_batch(noise_session *s, size_t n, const uint8_t *const *ptrs,
                            const size_t *lens, uint8_t *out, size_t *out_off, int8_t *status);
/* Opens as many complete frames as in holds (at most max_frames); returns the count in *nframes,
 * bytes used in *consumed; returns the error of the first bad frame (frames before it are kept). */
int noise_stream_open_batch(noise_session *s, const uint8_t *in, size_t len, size_t max_frames,
                            uint8_t *out, size_t *out_off, size_t *nframes, size_t *consumed);

/* ---- raw loops for benchmark limits (noise_bench.c) ---- */
/* n IKpsk2 handshakes' worth of primitives: 2 X25519 keygens + 8 X25519 + the hashing. */
int noise_bench_raw_handshake(size_t n, int hash_id);
/* n seals of len bytes with the given backend in one loop. */
int noise_bench_raw_aead(size_t n, size_t len, int backend);

#endif
