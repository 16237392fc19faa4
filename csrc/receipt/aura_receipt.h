/* aura_receipt.h — receipts: signing transcript, Hash32, batch build+hash+sign, whole-chain verify.
 *
 * Byte layout (docs/wire.md "Receipts"; all integers unsigned big-endian):
 *
 *   packed receipt, 200 bytes             signing transcript, 152 bytes
 *     0  16  ctx    ContextId               0  16  "aura.receipt.v1\0"
 *    16  16  src    AuthorityId            16 136  packed[0:136]
 *    32  16  dst    AuthorityId
 *    48   8  epoch  u64                   Hash32(receipt) = BLAKE2b-256(key = none, salt = none,
 *    56   8  cost   u64                      personal = "aura.receipt.v1\0", transcript)
 *    64   8  nonce  u64                   sig = Ed25519(src secret key, transcript)
 *    72  32  prev   Hash32 of the previous receipt of the chain (zero: first of an epoch)
 *   104  32  commit Hash32 commitment to what the receipt covers (zero: nothing committed)
 *   136  64  sig
 *
 * The hash covers the transcript, not the signature, so a batch can be hashed and linked in
 * one cheap serial pass and signed in parallel (Ed25519 dominates: ~14 us sign, ~40 us verify,
 * versus ~0.4 us of BLAKE2b per receipt).
 *
 * Threads: sign_batch and verify_chain split the Ed25519 work over up to AURA_RCPT_MAX_THREADS
 * pthreads (strided indices, so the first bad signature is found early and the work balances).
 * No Python.h here: callers release the GIL around these calls.
 */
#ifndef AURA_RECEIPT_H
#define AURA_RECEIPT_H

#include <stddef.h>
#include <stdint.h>

#define AURA_RCPT_LEN 200
#define AURA_RCPT_BODY_LEN 136
#define AURA_RCPT_TRANSCRIPT_LEN 152
#define AURA_RCPT_SIG_OFF 136
#define AURA_RCPT_PREV_OFF 72
#define AURA_RCPT_MAX_THREADS 16

/* verify result codes: 0 = chain valid, otherwise the check that failed at `index` */
enum {
    AURA_RCPT_OK = 0,
    AURA_RCPT_ERR_SIG = 1,       /* Ed25519 signature invalid */
    AURA_RCPT_ERR_SIGNER = 2,    /* src is not the AuthorityId of the verifying key */
    AURA_RCPT_ERR_CTX = 3,       /* ctx differs from the chain's */
    AURA_RCPT_ERR_SRC = 4,       /* src differs from the chain's */
    AURA_RCPT_ERR_DST = 5,       /* dst differs from the chain's */
    AURA_RCPT_ERR_EPOCH = 6,     /* epoch differs from the chain's / the expected one */
    AURA_RCPT_ERR_NONCE = 7,     /* nonce not strictly greater than the previous one */
    AURA_RCPT_ERR_PREV = 8,      /* prev is not the Hash32 of the previous receipt */
    AURA_RCPT_ERR_COST_ZERO = 9, /* a receipt must charge at least 1 */
    AURA_RCPT_ERR_OVERFLOW = 10, /* cumulative cost overflows u64 */
    AURA_RCPT_ERR_LIMIT = 11,    /* cumulative cost exceeds the limit */
    AURA_RCPT_ERR_ARG = 12,      /* bad call (length not a multiple of 200, too many threads) */
    AURA_RCPT_ERR_NOMEM = 13,    /* could not start a thread (the work ran on the caller) */
};

typedef struct aura_rcpt_verify_opts {
    const uint8_t *pk;           /* 32-byte Ed25519 public key of src */
    const uint8_t *ctx;          /* expected ctx (16) or NULL: the first receipt's */
    const uint8_t *dst;          /* expected dst (16) or NULL: the first receipt's */
    const uint8_t *start_prev;   /* expected prev of receipt 0 (32) or NULL: all zero */
    uint64_t after_nonce;        /* receipt 0's nonce must exceed this (when has_after_nonce) */
    uint64_t epoch;              /* expected epoch (when has_epoch) */
    uint64_t limit;              /* cumulative cost bound (when has_limit) */
    uint64_t spent_before;       /* cost already spent before receipt 0 (counts toward limit) */
    int has_after_nonce, has_epoch, has_limit;
    unsigned threads;            /* 1..AURA_RCPT_MAX_THREADS */
} aura_rcpt_verify_opts;

typedef struct aura_rcpt_verify_result {
    int code;                    /* AURA_RCPT_OK or an error code */
    size_t index;                /* the first bad receipt when code != OK */
    uint64_t total;              /* spent_before + sum of costs (when OK) */
    uint64_t last_nonce;         /* nonce of the last receipt (when OK and n > 0) */
    uint8_t last_hash[32];       /* Hash32 of the last receipt (start_prev when n == 0) */
} aura_rcpt_verify_result;

/* The 152-byte signing transcript of a packed receipt (only its first 136 bytes are read). */
void aura_receipt_transcript(uint8_t out[AURA_RCPT_TRANSCRIPT_LEN], const uint8_t *rec);

/* Hash32 of a packed receipt (only its first 136 bytes are read). */
void aura_receipt_hash(uint8_t out[32], const uint8_t *rec);

/* Sign n packed receipts in place.  If `link`, receipt i > 0 gets prev = Hash32(receipt i-1)
 * (receipt 0's prev is left as given).  Writes every sig; last_hash (may be NULL) receives the
 * Hash32 of the last receipt.  sk is libsodium's 64-byte Ed25519 secret key.  Returns 0 or
 * AURA_RCPT_ERR_ARG. */
int aura_receipt_sign_batch(uint8_t *recs, size_t n, const uint8_t sk[64], int link,
                            uint8_t last_hash[32], unsigned threads);

/* Verify a whole chain of n packed receipts; fills res, returns res->code. */
int aura_receipt_verify_chain(const uint8_t *recs, size_t n, const aura_rcpt_verify_opts *opts,
                              aura_rcpt_verify_result *res);

/* AuthorityId (16 bytes) of an Ed25519 public key: BLAKE2b-256("aura.authority.1", pk)[:16]. */
void aura_receipt_authority_id(uint8_t out[16], const uint8_t pk[32]);

/* Relay envelope ids (docs/wire.md, relay receipts).  A DELIVER frame is
 * 0x11 || ctx(16) || src(16) || payload; its id is
 *   BLAKE2b-256(person = "aura.envelope.v1", ctx || src || u32be len(payload) || tail)
 * with tail the last min(32, len(payload)) payload bytes (the Noise tag binds the rest).
 * Returns AURA_RCPT_ERR_ARG (out untouched) when len < 33 (not a DELIVER frame). */
#define AURA_RCPT_DELIVER_HEADER 33
#define AURA_RCPT_ENVELOPE_ID_LEN 32
int aura_receipt_envelope_id(uint8_t out[32], const uint8_t *frame, size_t len);

/* Forward commitment over n packed 32-byte envelope ids: sorts the records IN PLACE
 * (bytewise ascending: a multiset), then BLAKE2b-256(person = "aura.forward.v1\0", ids). */
void aura_receipt_forward_commitment(uint8_t out[32], uint8_t *ids, size_t n);

/* Limits for benchmarks: raw Ed25519 over a 152-byte message, n times, one thread. */
void aura_receipt_bench_raw_sign(size_t n, const uint8_t sk[64]);
int aura_receipt_bench_raw_verify(size_t n, const uint8_t sig[64], const uint8_t msg[152],
                                  const uint8_t pk[32]);

#endif
