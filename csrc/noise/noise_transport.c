/* noise_transport.c — transport sessions over split() keys: datagram frames with an explicit
 * counter and an 8192-bit replay window (Linux WireGuard's counter check, re-implemented from
 * its description), stream frames with implicit counters, padding buckets, and batches. */
#include <string.h>

#include "aura_common.h"
#include "noise.h"

/* ---------------- replay window ----------------
 * top = greatest accepted counter + 1.  A counter c is acceptable when c < REJECT_AFTER_MESSAGES,
 * c + 1 + WINDOW >= top, and its bit is clear.  Sliding forward clears the words passed over
 * (at most the whole ring), so a jump far ahead costs at most NOISE_REPLAY_WORDS stores. */

void noise_replay_reset(noise_replay *r) { memset(r, 0, sizeof *r); }

int noise_replay_check(const noise_replay *r, uint64_t counter) {
    if (r->top >= NOISE_REJECT_AFTER_MESSAGES + 1 || counter >= NOISE_REJECT_AFTER_MESSAGES)
        return 0;
    uint64_t c = counter + 1;
    if (NOISE_REPLAY_WINDOW + c < r->top) return 0;
    if (c > r->top) return 1;
    uint64_t word = (c >> 6) & (NOISE_REPLAY_WORDS - 1);
    return !((r->bits[word] >> (c & 63)) & 1);
}

int noise_replay_update(noise_replay *r, uint64_t counter) {
    uint64_t c = counter + 1, index = c >> 6;
    if (c > r->top) {
        uint64_t cur = r->top >> 6, span = index - cur;
        if (span > NOISE_REPLAY_WORDS) span = NOISE_REPLAY_WORDS;
        for (uint64_t i = 1; i <= span; i++) r->bits[(cur + i) & (NOISE_REPLAY_WORDS - 1)] = 0;
        r->top = c;
    }
    uint64_t *w = &r->bits[index & (NOISE_REPLAY_WORDS - 1)], bit = 1ULL << (c & 63);
    int fresh = !(*w & bit);
    *w |= bit;
    return fresh;
}

/* ---------------- padding ----------------
 * Padded plaintext = payload || 0x80 || 0x00...; length rounded up to a multiple of pad_block
 * (capped at NOISE_MAX_PLAINTEXT).  Without padding the plaintext is the payload. */

size_t noise_padded_len(uint32_t pad_block, size_t len) {
    if (pad_block == 0) return len <= NOISE_MAX_PLAINTEXT ? len : 0;
    if (len + 1 > NOISE_MAX_PLAINTEXT) return 0;
    size_t p = ((len + 1 + pad_block - 1) / pad_block) * pad_block;
    return p > NOISE_MAX_PLAINTEXT ? NOISE_MAX_PLAINTEXT : p;
}

static void pad_into(uint8_t *buf, size_t len, size_t padded) {
    buf[len] = 0x80;
    memset(buf + len + 1, 0, padded - len - 1);
}

/* Returns the payload length or -1 if the padding is malformed. */
static long unpad(const uint8_t *buf, size_t len) {
    size_t i = len;
    while (i > 0 && buf[i - 1] == 0) i--;
    if (i == 0 || buf[i - 1] != 0x80) return -1;
    return (long)(i - 1);
}

/* ---------------- sessions ---------------- */

void noise_session_init(noise_session *s, const uint8_t send_k[32], const uint8_t recv_k[32],
                        int backend, uint32_t local_index, uint32_t remote_index,
                        uint32_t pad_block) {
    memset(s, 0, sizeof *s);
    noise_cipher_init(&s->send, send_k, backend);
    noise_cipher_init(&s->recv, recv_k, backend);
    s->local_index = local_index;
    s->remote_index = remote_index;
    s->pad_block = pad_block;
}

void noise_session_clear(noise_session *s) {
    noise_cipher_clear(&s->send);
    noise_cipher_clear(&s->recv);
    aura_wipe(s, sizeof *s);
}

/* 0 means "cannot be carried": padded_len is 0 only for an empty unpadded payload or too large */
static size_t body_len(const noise_session *s, size_t len) {
    size_t p = noise_padded_len(s->pad_block, len);
    if (p == 0 && (len != 0 || s->pad_block)) return 0;
    return p + NOISE_TAGLEN;
}

size_t noise_dgram_sealed_len(const noise_session *s, size_t len) {
    size_t b = body_len(s, len);
    return b ? NOISE_DGRAM_HEADER + b : 0;
}

size_t noise_stream_sealed_len(const noise_session *s, size_t len) {
    size_t b = body_len(s, len);
    return b ? NOISE_STREAM_HEADER + b : 0;
}

/* Seal payload (padded per session) into body; returns sealed body length or 0 on error rc. */
static int seal_body(noise_session *s, uint64_t n, const uint8_t *ad, size_t adlen,
                     const uint8_t *pt, size_t ptlen, uint8_t *body, size_t *bodylen) {
    size_t p = noise_padded_len(s->pad_block, ptlen);
    if (p == 0 && (ptlen != 0 || s->pad_block)) return NOISE_ERR_SIZE;
    const uint8_t *src = pt;
    if (p != ptlen) {
        if (ptlen) memcpy(body, pt, ptlen);
        pad_into(body, ptlen, p);
        src = body;
    }
    if (noise_aead_seal(&s->send.key, n, ad, adlen, src, p, body) != 0) return NOISE_ERR_INTERNAL;
    *bodylen = p + NOISE_TAGLEN;
    return NOISE_OK;
}

int noise_dgram_seal(noise_session *s, const uint8_t *pt, size_t ptlen, uint8_t *out,
                     size_t *outlen) {
    if (s->expired || s->send.n >= NOISE_REJECT_AFTER_MESSAGES) return NOISE_ERR_EXPIRED;
    out[0] = NOISE_DGRAM_TYPE_DATA;
    out[1] = out[2] = out[3] = 0;
    aura_store32_le(out + 4, s->remote_index);
    aura_store64_le(out + 8, s->send.n);
    size_t bl = 0;
    int rc = seal_body(s, s->send.n, out, NOISE_DGRAM_HEADER, pt, ptlen,
                       out + NOISE_DGRAM_HEADER, &bl);
    if (rc) return rc;
    s->send.n++;
    s->stats[NOISE_STAT_SENT]++;
    *outlen = NOISE_DGRAM_HEADER + bl;
    return NOISE_OK;
}

static int dgram_open(noise_session *s, const uint8_t *in, size_t len, uint8_t *out,
                      size_t *outlen) {
    if (len < NOISE_DGRAM_HEADER + NOISE_TAGLEN || len > NOISE_DGRAM_HEADER + NOISE_MAX_MSG ||
        in[0] != NOISE_DGRAM_TYPE_DATA || (in[1] | in[2] | in[3]) != 0)
        return NOISE_ERR_MALFORMED;
    if (aura_load32_le(in + 4) != s->local_index) return NOISE_ERR_INDEX;
    if (s->expired) return NOISE_ERR_EXPIRED;
    uint64_t ctr = aura_load64_le(in + 8);
    if (!noise_replay_check(&s->replay, ctr)) return NOISE_ERR_REPLAY;
    size_t ctlen = len - NOISE_DGRAM_HEADER;
    if (noise_aead_open(&s->recv.key, ctr, in, NOISE_DGRAM_HEADER, in + NOISE_DGRAM_HEADER, ctlen,
                        out) != 0)
        return NOISE_ERR_DECRYPT; /* the window is untouched */
    if (!noise_replay_update(&s->replay, ctr)) return NOISE_ERR_REPLAY;
    size_t plen = ctlen - NOISE_TAGLEN;
    if (s->pad_block) {
        long l = unpad(out, plen);
        if (l < 0) return NOISE_ERR_MALFORMED;
        plen = (size_t)l;
    }
    *outlen = plen;
    return NOISE_OK;
}

static void count(noise_session *s, int rc) {
    switch (rc) {
    case NOISE_OK: s->stats[NOISE_STAT_RECV_OK]++; break;
    case NOISE_ERR_INDEX: s->stats[NOISE_STAT_DROP_INDEX]++; break;
    case NOISE_ERR_REPLAY: s->stats[NOISE_STAT_DROP_REPLAY]++; break;
    case NOISE_ERR_DECRYPT: s->stats[NOISE_STAT_DROP_AUTH]++; break;
    case NOISE_ERR_EXPIRED: s->stats[NOISE_STAT_DROP_EXPIRED]++; break;
    default: s->stats[NOISE_STAT_DROP_MALFORMED]++; break;
    }
}

int noise_dgram_open(noise_session *s, const uint8_t *in, size_t len, uint8_t *out,
                     size_t *outlen) {
    *outlen = 0;
    int rc = dgram_open(s, in, len, out, outlen);
    count(s, rc);
    return rc;
}

int noise_stream_seal(noise_session *s, const uint8_t *pt, size_t ptlen, uint8_t *out,
                      size_t *outlen) {
    if (s->expired || s->send.n >= NOISE_REJECT_AFTER_MESSAGES) return NOISE_ERR_EXPIRED;
    size_t bl = 0;
    int rc = seal_body(s, s->send.n, NULL, 0, pt, ptlen, out + NOISE_STREAM_HEADER, &bl);
    if (rc) return rc;
    aura_store16_be(out, (uint16_t)bl);
    s->send.n++;
    s->stats[NOISE_STAT_SENT]++;
    *outlen = NOISE_STREAM_HEADER + bl;
    return NOISE_OK;
}

int noise_stream_open(noise_session *s, const uint8_t *in, size_t len, uint8_t *out,
                      size_t *outlen, size_t *consumed) {
    *consumed = 0;
    *outlen = 0;
    if (len < NOISE_STREAM_HEADER) return NOISE_OK;
    size_t flen = aura_load16_be(in);
    if (flen < NOISE_TAGLEN) return NOISE_ERR_MALFORMED;
    if (len - NOISE_STREAM_HEADER < flen) return NOISE_OK; /* incomplete: wait for more */
    if (s->expired || s->recv.n >= NOISE_REJECT_AFTER_MESSAGES) return NOISE_ERR_EXPIRED;
    if (noise_aead_open(&s->recv.key, s->recv.n, NULL, 0, in + NOISE_STREAM_HEADER, flen, out) != 0)
        return NOISE_ERR_DECRYPT; /* nonce not advanced */
    size_t plen = flen - NOISE_TAGLEN;
    if (s->pad_block) {
        long l = unpad(out, plen);
        if (l < 0) {
            memset(out, 0, plen);
            return NOISE_ERR_MALFORMED;
        }
        plen = (size_t)l;
    }
    s->recv.n++;
    s->stats[NOISE_STAT_RECV_OK]++;
    *outlen = plen;
    *consumed = NOISE_STREAM_HEADER + flen;
    return NOISE_OK;
}

/* ---------------- batches ---------------- */

int noise_dgram_seal_batch(noise_session *s, size_t n, const uint8_t *const *ptrs,
                           const size_t *lens, uint8_t *out, size_t *out_off) {
    out_off[0] = 0;
    for (size_t i = 0; i < n; i++) {
        size_t l = 0;
        int rc = noise_dgram_seal(s, ptrs[i], lens[i], out + out_off[i], &l);
        if (rc) return rc;
        out_off[i + 1] = out_off[i] + l;
    }
    return NOISE_OK;
}

int noise_stream_seal_batch(noise_session *s, size_t n, const uint8_t *const *ptrs,
                            const size_t *lens, uint8_t *out, size_t *out_off) {
    out_off[0] = 0;
    for (size_t i = 0; i < n; i++) {
        size_t l = 0;
        int rc = noise_stream_seal(s, ptrs[i], lens[i], out + out_off[i], &l);
        if (rc) return rc;
        out_off[i + 1] = out_off[i] + l;
    }
    return NOISE_OK;
}

void noise_dgram_open_batch(noise_session *s, size_t n, const uint8_t *const *ptrs,
                            const size_t *lens, uint8_t *out, size_t *out_off, int8_t *status) {
    out_off[0] = 0;
    for (size_t i = 0; i < n; i++) {
        size_t l = 0;
        int rc = noise_dgram_open(s, ptrs[i], lens[i], out + out_off[i], &l);
        status[i] = (int8_t)rc;
        out_off[i + 1] = out_off[i] + (rc == NOISE_OK ? l : 0);
    }
}

int noise_stream_open_batch(noise_session *s, const uint8_t *in, size_t len, size_t max_frames,
                            uint8_t *out, size_t *out_off, size_t *nframes, size_t *consumed) {
    size_t pos = 0, k = 0;
    int rc = NOISE_OK;
    out_off[0] = 0;
    while (k < max_frames) {
        size_t l = 0, used = 0;
        rc = noise_stream_open(s, in + pos, len - pos, out + out_off[k], &l, &used);
        if (rc != NOISE_OK || used == 0) break;
        pos += used;
        out_off[k + 1] = out_off[k] + l;
        k++;
    }
    *nframes = k;
    *consumed = pos;
    return rc;
}
