/* aura_punch.c — punch packet build/validate, replay windows, and the sendmmsg/recvmmsg loop.
 * Layout and rationale in aura_punch.h; byte-level spec in docs/wire.md ("Punch packets"). */
#define _GNU_SOURCE
#include "aura_punch.h"

#include <errno.h>
#include <poll.h>
#include <string.h>
#include <time.h>

#include "aura_common.h"

#define BATCH 64

static const uint8_t TXID_PREFIX[4] = {'A', 'U', 'R', 'A'};

static int64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void tag_of(uint8_t *tag, const uint8_t *pkt, const uint8_t *key) {
    aura_na->crypto_generichash_blake2b(tag, AURA_PUNCH_TAG_LEN, pkt, AURA_PUNCH_TAG_OFF, key,
                                        AURA_PUNCH_KEY_LEN);
}

void aura_punch_build(uint8_t *out, const uint8_t *key, const uint8_t *sender,
                      const uint8_t *receiver, uint64_t seq, uint8_t flags) {
    aura_store16_be(out, 0x0011);                    /* Binding indication */
    aura_store16_be(out + 2, AURA_PUNCH_LEN - 20);   /* attributes length */
    aura_store32_be(out + 4, 0x2112A442u);           /* magic cookie */
    memcpy(out + 8, TXID_PREFIX, 4);
    aura_store64_be(out + 12, seq);
    aura_store16_be(out + 20, AURA_PUNCH_ATTR);
    aura_store16_be(out + 22, AURA_PUNCH_LEN - 24);
    out[24] = AURA_PUNCH_VERSION;
    out[25] = flags;
    out[26] = 0;
    out[27] = 0;
    memcpy(out + 28, sender, AURA_PUNCH_ID_LEN);
    memcpy(out + 44, receiver, AURA_PUNCH_ID_LEN);
    tag_of(out + AURA_PUNCH_TAG_OFF, out, key);
}

int aura_punch_parse(const uint8_t *pkt, size_t len, aura_punch_fields *f) {
    /* Not ours unless it is STUN-shaped with our attribute first: everything else (QUIC, other
     * STUN, noise) is NOT_PUNCH so a caller sharing the socket can route it elsewhere. */
    if (len < 24 || (pkt[0] & 0xC0) != 0 || aura_load32_be(pkt + 4) != 0x2112A442u ||
        aura_load16_be(pkt + 20) != AURA_PUNCH_ATTR)
        return AURA_PUNCH_NOT_PUNCH;
    if (len != AURA_PUNCH_LEN || aura_load16_be(pkt) != 0x0011 ||
        aura_load16_be(pkt + 2) != AURA_PUNCH_LEN - 20 || memcmp(pkt + 8, TXID_PREFIX, 4) != 0 ||
        aura_load16_be(pkt + 22) != AURA_PUNCH_LEN - 24 || pkt[24] != AURA_PUNCH_VERSION ||
        (pkt[25] & ~AURA_PUNCH_FLAGS_KNOWN) != 0 || pkt[26] != 0 || pkt[27] != 0)
        return AURA_PUNCH_MALFORMED;
    f->seq = aura_load64_be(pkt + 12);
    f->flags = pkt[25];
    memcpy(f->sender, pkt + 28, AURA_PUNCH_ID_LEN);
    memcpy(f->receiver, pkt + 44, AURA_PUNCH_ID_LEN);
    return AURA_PUNCH_OK;
}

int aura_punch_check(const uint8_t *pkt, size_t len, const uint8_t *key, const uint8_t *local_id,
                     aura_punch_fields *f) {
    int v = aura_punch_parse(pkt, len, f);
    if (v != AURA_PUNCH_OK) return v;
    if (memcmp(f->receiver, local_id, AURA_PUNCH_ID_LEN) != 0) return AURA_PUNCH_WRONG_RECEIVER;
    uint8_t tag[AURA_PUNCH_TAG_LEN];
    tag_of(tag, pkt, key);
    return aura_ct_eq(tag, pkt + AURA_PUNCH_TAG_OFF, AURA_PUNCH_TAG_LEN) ? AURA_PUNCH_OK
                                                                         : AURA_PUNCH_BAD_TAG;
}

long aura_punch_find_peer(const aura_punch_engine *e, const uint8_t *id) {
    size_t lo = 0, hi = e->npeers;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = memcmp(e->peers[mid].id, id, AURA_PUNCH_ID_LEN);
        if (c == 0) return (long)mid;
        if (c < 0) lo = mid + 1;
        else hi = mid;
    }
    return -1;
}

/* WireGuard-style sliding window; only updated for packets whose tag verified. */
static int replay_accept(aura_punch_peer *p, uint64_t seq) {
    if (!p->rx_seen) {
        p->rx_seen = 1;
        p->rx_top = seq;
        p->rx_window = 1;
        return 1;
    }
    if (seq > p->rx_top) {
        uint64_t shift = seq - p->rx_top;
        p->rx_window = shift >= AURA_PUNCH_REPLAY_BITS ? 1 : (p->rx_window << shift) | 1;
        p->rx_top = seq;
        return 1;
    }
    uint64_t back = p->rx_top - seq;
    if (back >= AURA_PUNCH_REPLAY_BITS) return 0;
    uint64_t bit = (uint64_t)1 << back;
    if (p->rx_window & bit) return 0;
    p->rx_window |= bit;
    return 1;
}

int aura_punch_accept(aura_punch_engine *e, const uint8_t *pkt, size_t len, aura_punch_fields *f,
                      long *peer) {
    *peer = -1;
    int v = aura_punch_check(pkt, len, e->rx_key, e->local_id, f);
    if (v == AURA_PUNCH_OK) {
        long i = aura_punch_find_peer(e, f->sender);
        if (i < 0) v = AURA_PUNCH_UNKNOWN_SENDER;
        else if (!replay_accept(&e->peers[i], f->seq)) v = AURA_PUNCH_REPLAYED;
        else *peer = i;
    }
    e->counts[v]++;
    return v;
}

long aura_punch_send_burst(aura_punch_engine *e, int fd, uint8_t flags) {
    uint8_t bufs[BATCH][AURA_PUNCH_LEN];
    struct mmsghdr msgs[BATCH];
    struct iovec iov[BATCH];
    long total = 0;
    for (size_t base = 0; base < e->ntargets; base += BATCH) {
        size_t n = e->ntargets - base < BATCH ? e->ntargets - base : BATCH;
        for (size_t k = 0; k < n; k++) {
            aura_punch_target *t = &e->targets[base + k];
            aura_punch_peer *p = &e->peers[t->peer];
            aura_punch_build(bufs[k], p->tx_key, e->local_id, p->id, p->tx_seq++, flags);
            iov[k].iov_base = bufs[k];
            iov[k].iov_len = AURA_PUNCH_LEN;
            memset(&msgs[k], 0, sizeof msgs[k]);
            msgs[k].msg_hdr.msg_name = &t->addr;
            msgs[k].msg_hdr.msg_namelen = t->addrlen;
            msgs[k].msg_hdr.msg_iov = &iov[k];
            msgs[k].msg_hdr.msg_iovlen = 1;
        }
        size_t done = 0;
        while (done < n) {
            int r = sendmmsg(fd, msgs + done, (unsigned)(n - done), 0);
            if (r < 0) {
                if (errno == EINTR) continue;
                /* One unreachable candidate (EPERM from a firewall, ENETUNREACH, ECONNREFUSED
                 * left over from an ICMP) must not stop the burst: skip it and go on. */
                e->send_errors++;
                done++;
                continue;
            }
            done += (size_t)r;
            total += r;
        }
    }
    e->sent += (uint64_t)total;
    return total;
}

int aura_punch_make_ack(aura_punch_engine *e, long peer, uint8_t *out) {
    if (peer < 0 || (size_t)peer >= e->npeers) return AURA_PUNCH_EARG;
    aura_punch_peer *p = &e->peers[peer];
    aura_punch_build(out, p->tx_key, e->local_id, p->id, p->tx_seq++, AURA_PUNCH_FLAG_ACK);
    return 0;
}

static void send_ack(aura_punch_engine *e, int fd, long peer, const struct sockaddr_storage *to,
                     socklen_t tolen) {
    uint8_t pkt[AURA_PUNCH_LEN];
    aura_punch_make_ack(e, peer, pkt);
    if (sendto(fd, pkt, sizeof pkt, 0, (const struct sockaddr *)to, tolen) == (ssize_t)sizeof pkt)
        e->acks_sent++;
    else
        e->send_errors++;
}

long aura_punch_run(aura_punch_engine *e, int fd, int send, int64_t interval_ns, int64_t timeout_ns,
                    size_t stop_after, aura_punch_event *events, size_t max_events) {
    if (fd < 0 || interval_ns <= 0 || timeout_ns < 0 || (max_events && !events)) return AURA_PUNCH_EARG;
    uint8_t bufs[BATCH][AURA_PUNCH_LEN + 1]; /* +1: an oversized datagram shows as truncated */
    struct mmsghdr msgs[BATCH];
    struct iovec iov[BATCH];
    struct sockaddr_storage from[BATCH];
    int64_t start = now_ns(), deadline = start + timeout_ns, next_send = start;
    size_t nev = 0;
    if (stop_after == 0) stop_after = (size_t)-1;
    for (;;) {
        int64_t now = now_ns();
        if (now >= deadline) break;
        if (send && now >= next_send) {
            if (aura_punch_send_burst(e, fd, 0) < 0) return AURA_PUNCH_ESYS;
            next_send = now + interval_ns;
        }
        int64_t wake = send && next_send < deadline ? next_send : deadline;
        int64_t wait_ms = (wake - now_ns() + 999999) / 1000000;
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        int pr = poll(&pfd, 1, wait_ms < 0 ? 0 : (int)wait_ms);
        if (pr < 0) {
            if (errno == EINTR) continue;
            return AURA_PUNCH_ESYS;
        }
        if (pr == 0) continue;
        for (;;) {
            for (size_t k = 0; k < BATCH; k++) {
                iov[k].iov_base = bufs[k];
                iov[k].iov_len = sizeof bufs[k];
                memset(&msgs[k], 0, sizeof msgs[k]);
                msgs[k].msg_hdr.msg_name = &from[k];
                msgs[k].msg_hdr.msg_namelen = sizeof from[k];
                msgs[k].msg_hdr.msg_iov = &iov[k];
                msgs[k].msg_hdr.msg_iovlen = 1;
            }
            int r = recvmmsg(fd, msgs, BATCH, MSG_DONTWAIT, NULL);
            if (r < 0) {
                if (errno == EINTR) continue;
                /* EAGAIN: drained.  ECONNREFUSED & co: an ICMP error queued by an earlier send
                 * to a closed candidate; it is consumed by this call, keep going. */
                if (errno == EAGAIN || errno == EWOULDBLOCK) break;
                e->send_errors++;
                continue;
            }
            if (r == 0) break;
            for (int k = 0; k < r; k++) {
                aura_punch_fields f;
                long peer;
                size_t len = msgs[k].msg_len;
                if (msgs[k].msg_hdr.msg_flags & MSG_TRUNC) len = sizeof bufs[k];
                e->datagrams++;
                if (aura_punch_accept(e, bufs[k], len, &f, &peer) != AURA_PUNCH_OK) continue;
                if (e->auto_ack && !(f.flags & AURA_PUNCH_FLAG_ACK))
                    send_ack(e, fd, peer, &from[k], msgs[k].msg_hdr.msg_namelen);
                if (nev < max_events) {
                    aura_punch_event *ev = &events[nev];
                    ev->peer = (uint32_t)peer;
                    ev->flags = f.flags;
                    ev->seq = f.seq;
                    memcpy(&ev->from, &from[k], sizeof from[k]);
                    ev->fromlen = msgs[k].msg_hdr.msg_namelen;
                    ev->elapsed_ns = now_ns() - start;
                }
                nev++;
            }
            if (nev >= stop_after) goto done;
            if (r < BATCH) break;
        }
    }
done:
    return (long)nev; /* accepted; only the first max_events were stored */
}

long aura_punch_bench_sendmmsg(int fd, const struct sockaddr_storage *to, socklen_t tolen,
                               size_t pkt_len, size_t count) {
    uint8_t buf[2048];
    struct mmsghdr msgs[BATCH];
    struct iovec iov;
    if (pkt_len > sizeof buf) return AURA_PUNCH_EARG;
    memset(buf, 0x5A, pkt_len);
    iov.iov_base = buf;
    iov.iov_len = pkt_len;
    for (size_t k = 0; k < BATCH; k++) {
        memset(&msgs[k], 0, sizeof msgs[k]);
        msgs[k].msg_hdr.msg_name = (void *)to;
        msgs[k].msg_hdr.msg_namelen = tolen;
        msgs[k].msg_hdr.msg_iov = &iov;
        msgs[k].msg_hdr.msg_iovlen = 1;
    }
    size_t done = 0;
    while (done < count) {
        size_t n = count - done < BATCH ? count - done : BATCH;
        int r = sendmmsg(fd, msgs, (unsigned)n, 0);
        if (r < 0) {
            if (errno == EINTR) continue;
            return AURA_PUNCH_ESYS;
        }
        done += (size_t)r;
    }
    return (long)done;
}

long aura_punch_bench_recvmmsg(int fd, size_t pkt_len, size_t count, int64_t timeout_ns) {
    uint8_t bufs[BATCH][2048];
    struct mmsghdr msgs[BATCH];
    struct iovec iov[BATCH];
    struct sockaddr_storage from[BATCH];
    if (pkt_len > sizeof bufs[0]) return AURA_PUNCH_EARG;
    int64_t deadline = now_ns() + timeout_ns;
    size_t got = 0;
    while (got < count) {
        for (size_t k = 0; k < BATCH; k++) {
            iov[k].iov_base = bufs[k];
            iov[k].iov_len = pkt_len;
            memset(&msgs[k], 0, sizeof msgs[k]);
            msgs[k].msg_hdr.msg_name = &from[k];
            msgs[k].msg_hdr.msg_namelen = sizeof from[k];
            msgs[k].msg_hdr.msg_iov = &iov[k];
            msgs[k].msg_hdr.msg_iovlen = 1;
        }
        int r = recvmmsg(fd, msgs, BATCH, MSG_DONTWAIT, NULL);
        if (r > 0) {
            got += (size_t)r;
            continue;
        }
        if (r < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) return AURA_PUNCH_ESYS;
        int64_t left = deadline - now_ns();
        if (left <= 0) break;
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        poll(&pfd, 1, (int)((left + 999999) / 1000000));
    }
    return (long)got;
}

long aura_punch_bench_send_many(int fd, const struct sockaddr_storage *to, socklen_t tolen,
                                const uint8_t *buf, size_t pkt_len, size_t count) {
    struct mmsghdr msgs[BATCH];
    struct iovec iov[BATCH];
    size_t done = 0;
    while (done < count) {
        size_t n = count - done < BATCH ? count - done : BATCH;
        for (size_t k = 0; k < n; k++) {
            iov[k].iov_base = (void *)(buf + (done + k) * pkt_len);
            iov[k].iov_len = pkt_len;
            memset(&msgs[k], 0, sizeof msgs[k]);
            msgs[k].msg_hdr.msg_name = (void *)to;
            msgs[k].msg_hdr.msg_namelen = tolen;
            msgs[k].msg_hdr.msg_iov = &iov[k];
            msgs[k].msg_hdr.msg_iovlen = 1;
        }
        int r = sendmmsg(fd, msgs, (unsigned)n, 0);
        if (r < 0) {
            if (errno == EINTR) continue;
            return AURA_PUNCH_ESYS;
        }
        done += (size_t)r;
    }
    return (long)done;
}

long aura_punch_bench_accept(aura_punch_engine *e, const uint8_t *pkt, size_t len, size_t n) {
    long ok = 0;
    for (size_t i = 0; i < n; i++) {
        aura_punch_fields f;
        long peer;
        /* same packet again: after the first it is a replay, but only after the full tag check */
        int v = aura_punch_accept(e, pkt, len, &f, &peer);
        ok += (v == AURA_PUNCH_OK || v == AURA_PUNCH_REPLAYED);
    }
    return ok;
}

long aura_punch_bench_blake2b(const uint8_t *pkt, const uint8_t *key, size_t n) {
    uint8_t tag[AURA_PUNCH_TAG_LEN];
    uint8_t acc = 0;
    for (size_t i = 0; i < n; i++) {
        aura_na->crypto_generichash_blake2b(tag, sizeof tag, pkt, AURA_PUNCH_TAG_OFF, key,
                                            AURA_PUNCH_KEY_LEN);
        acc |= tag[0];
    }
    return (long)n + (acc & 0);
}
