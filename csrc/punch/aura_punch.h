/* aura_punch.h — authenticated UDP punch packets and the punch loop (docs/wire.md "Punch packets").
 *
 * A punch packet is a STUN Binding *indication* (never answered by STUN agents; first byte 0x00,
 * magic cookie 0x2112A442, so it cannot be mistaken for QUIC on a shared socket) carrying one
 * comprehension-optional private attribute AURA-PUNCH (0xC0A5):
 *
 *   0   type 0x0011 | length 0x0038 | cookie 0x2112A442 | txid = "AURA" || seq (u64 BE)
 *   20  attr type 0xC0A5 | attr length 0x0034
 *   24  version 0x01 | flags | reserved 0x0000 | sender id (16) | receiver id (16)
 *   60  tag (16) = BLAKE2b-128(key = receiver's punch key, data = bytes 0..59)
 *   76  end
 *
 * A packet is always tagged under the *receiver's* punch key (derived from the receiver's
 * descriptor punch_nonce), so one engine validates every incoming punch with its own key and
 * drops forged, misaddressed and replayed ones here, before Python sees them.
 *
 * Plain C, no Python.h: fuzzed and sanitized on its own.
 */
#ifndef AURA_PUNCH_H
#define AURA_PUNCH_H

#include <stddef.h>
#include <stdint.h>
#include <netinet/in.h>
#include <sys/socket.h>

#define AURA_PUNCH_LEN 76
#define AURA_PUNCH_ID_LEN 16
#define AURA_PUNCH_KEY_LEN 32
#define AURA_PUNCH_TAG_LEN 16
#define AURA_PUNCH_TAG_OFF 60
#define AURA_PUNCH_ATTR 0xC0A5u
#define AURA_PUNCH_VERSION 1
#define AURA_PUNCH_FLAG_ACK 0x01u
#define AURA_PUNCH_FLAGS_KNOWN 0x01u
#define AURA_PUNCH_REPLAY_BITS 64

/* Verdicts of aura_punch_check (also the counters' indexes). */
enum {
    AURA_PUNCH_OK = 0,
    AURA_PUNCH_NOT_PUNCH = 1,      /* not a punch packet at all (STUN, QUIC, noise) */
    AURA_PUNCH_MALFORMED = 2,      /* punch-shaped but a field is wrong */
    AURA_PUNCH_WRONG_RECEIVER = 3, /* addressed to another authority */
    AURA_PUNCH_BAD_TAG = 4,        /* forged or corrupted */
    AURA_PUNCH_UNKNOWN_SENDER = 5, /* valid tag but the sender is not one we punch with */
    AURA_PUNCH_REPLAYED = 6,       /* sequence already seen or too old */
    AURA_PUNCH_NVERDICTS = 7
};

/* Error codes of the loop functions (negative). */
#define AURA_PUNCH_EARG (-1)
#define AURA_PUNCH_ESYS (-2)

/* Keyed BLAKE2b-128 with a 32-byte key compresses the key block first; that chaining value
 * depends on the key alone, so it is computed once per key (aura_punch_key_state) and every tag
 * costs one compression of the 60 tagged bytes.  Output identical to keyed BLAKE2b-128. */
typedef struct aura_punch_kstate {
    uint64_t h[8];
} aura_punch_kstate;

void aura_punch_key_state(aura_punch_kstate *s, const uint8_t *key);
/* tag[16] = BLAKE2b-128(key, pkt[0..59]) from the key's precomputed state. */
void aura_punch_tag(uint8_t *tag, const aura_punch_kstate *s, const uint8_t *pkt);
/* n tags at once (8 lanes per compression with AVX-512, 4 with AVX2, when the CPU has them):
 * out[i] = tag of pkt[i] under st[i]. */
void aura_punch_tag_many(const aura_punch_kstate *const *st, const uint8_t *const *pkt,
                         uint8_t *const *out, size_t n);
/* Vector level for tags: 0 portable, 1 AVX2, 2 AVX-512 (capped at what the CPU has; the default
 * is the best it has).  Returns the previous level.  For tests: every level gives the same bytes. */
int aura_punch_set_simd(int level);
/* The level in use. */
int aura_punch_simd_active(void);

typedef struct aura_punch_fields {
    uint64_t seq;
    uint8_t flags;
    uint8_t sender[AURA_PUNCH_ID_LEN];
    uint8_t receiver[AURA_PUNCH_ID_LEN];
} aura_punch_fields;

/* Build one packet into out[AURA_PUNCH_LEN]. */
void aura_punch_build(uint8_t *out, const uint8_t *key, const uint8_t *sender,
                      const uint8_t *receiver, uint64_t seq, uint8_t flags);

/* Structural parse (no tag check).  Returns AURA_PUNCH_OK, NOT_PUNCH or MALFORMED. */
int aura_punch_parse(const uint8_t *pkt, size_t len, aura_punch_fields *f);

/* Parse + receiver check + tag check under key.  Returns a verdict; fills f when OK. */
int aura_punch_check(const uint8_t *pkt, size_t len, const uint8_t *key, const uint8_t *local_id,
                     aura_punch_fields *f);

/* One remote authority we punch with.  The fields a burst reads per target come first (two
 * cache lines: tx_state, id, tx_seq). */
typedef struct aura_punch_peer {
    aura_punch_kstate tx_state;         /* that peer's key-block state (aura_punch_engine_keys) */
    uint8_t id[AURA_PUNCH_ID_LEN];
    uint64_t tx_seq;                    /* next sequence number we send it */
    uint64_t rx_top;                    /* highest sequence accepted from it */
    uint64_t rx_window;                 /* bit i set: rx_top - i accepted */
    uint8_t rx_seen;
    uint8_t tx_key[AURA_PUNCH_KEY_LEN]; /* that peer's punch key: tags what we send it */
} aura_punch_peer;

/* A destination address: IPv4 or IPv6 only, so a target is 36 bytes, not 136 (a 10,000-target
 * burst streams through 360 KB of targets instead of 1.3 MB). */
typedef union aura_punch_addr {
    struct sockaddr sa;
    struct sockaddr_in v4;
    struct sockaddr_in6 v6;
} aura_punch_addr;

/* One (address, peer) candidate pair. */
typedef struct aura_punch_target {
    aura_punch_addr addr;
    socklen_t addrlen;
    uint32_t peer;
} aura_punch_target;

/* An accepted punch: who, which sequence, and the address it actually came from. */
typedef struct aura_punch_event {
    uint32_t peer;
    uint8_t flags;
    uint64_t seq;
    struct sockaddr_storage from;
    socklen_t fromlen;
    int64_t elapsed_ns; /* since the call started */
} aura_punch_event;

typedef struct aura_punch_engine {
    uint8_t local_id[AURA_PUNCH_ID_LEN];
    uint8_t rx_key[AURA_PUNCH_KEY_LEN];
    aura_punch_kstate rx_state; /* every punch to us is tagged under rx_key: one state for all */
    aura_punch_peer *peers; /* sorted by id (binary search on receive) */
    size_t npeers;
    aura_punch_target *targets;
    size_t ntargets;
    uint64_t counts[AURA_PUNCH_NVERDICTS];
    uint64_t sent, send_errors, acks_sent, datagrams;
    uint64_t bursts, bursts_missed; /* run(): bursts started; due bursts skipped (> interval late) */
    int64_t max_late_ns;            /* run(): worst start lateness of a burst */
    int64_t run_start_ns;           /* run(): CLOCK_MONOTONIC at the start of the last call */
    int auto_ack; /* answer every accepted non-ack punch with an ack to its source */
} aura_punch_engine;

/* Compute rx_state and every peer's tx_state from the keys (after filling them in). */
void aura_punch_engine_keys(aura_punch_engine *e);

/* Index of the peer with this id, or -1. */
long aura_punch_find_peer(const aura_punch_engine *e, const uint8_t *id);

/* Validate one datagram against the engine (check + sender lookup + replay window). */
int aura_punch_accept(aura_punch_engine *e, const uint8_t *pkt, size_t len, aura_punch_fields *f,
                      long *peer);

/* Build an ack punch to peer index `peer` (next sequence number); 0 or AURA_PUNCH_EARG. */
int aura_punch_make_ack(aura_punch_engine *e, long peer, uint8_t *out);

/* One burst: a packet to every target, sendmmsg in batches.  Returns packets sent or < 0. */
long aura_punch_send_burst(aura_punch_engine *e, int fd, uint8_t flags);
/* Part of a burst: targets [from, to). */
long aura_punch_send_range(aura_punch_engine *e, int fd, uint8_t flags, size_t from, size_t to);

/* The punch loop: bursts due every interval_ns from the start (fixed cadence, no drift; a burst
 * more than an interval late is skipped and counted in bursts_missed), otherwise poll + recvmmsg
 * + validate until timeout_ns elapses or stop_after punches were accepted (0: no early stop).
 * A burst goes out in slices of AURA_PUNCH_SLICE targets with the socket drained (receive +
 * validate + ack) between slices, so incoming punches never wait for a whole large burst.
 * Returns the number accepted (only the first max_events are stored in events) or < 0.
 * Non-punch datagrams read from the socket are counted (NOT_PUNCH) and dropped. */
#define AURA_PUNCH_SLICE 256
long aura_punch_run(aura_punch_engine *e, int fd, int send, int64_t interval_ns, int64_t timeout_ns,
                    size_t stop_after, aura_punch_event *events, size_t max_events);

/* Benchmark baselines: the plain C loops (the "limit"). */
long aura_punch_bench_sendmmsg(int fd, const struct sockaddr_storage *to, socklen_t tolen,
                               size_t pkt_len, size_t count);
long aura_punch_bench_recvmmsg(int fd, size_t pkt_len, size_t count, int64_t timeout_ns);
long aura_punch_bench_send_many(int fd, const struct sockaddr_storage *to, socklen_t tolen,
                                const uint8_t *buf, size_t pkt_len, size_t count);
/* n validations of one packet through the engine (tag, lookup, replay window); returns n. */
long aura_punch_bench_accept(aura_punch_engine *e, const uint8_t *pkt, size_t len, size_t n);
/* n raw keyed BLAKE2b-128 tags over the 60 tagged bytes with libsodium (key block each time). */
long aura_punch_bench_blake2b(const uint8_t *pkt, const uint8_t *key, size_t n);
/* n tags of pkt from the precomputed key state through aura_punch_tag_many in batches of 64:
 * the validation cost floor (no parse, lookup or replay window). */
long aura_punch_bench_tag(const uint8_t *pkt, const uint8_t *key, size_t n);

#endif
