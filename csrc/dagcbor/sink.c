/* sink.c — the streaming hash sink behind digest()/cid(): the encoder flushes its small
 * buffer (and large byte/text payloads directly) into it, so no whole encoding is built. */
#include "dagcbor.h"

int aura_dc_sink_init(aura_dc_sink *s, int alg) {
    s->alg = alg;
    s->total = 0;
    switch (alg) {
    case AURA_DC_HASH_SHA256:
        aura_sha256_init(&s->u.sha);
        return 0;
    case AURA_DC_HASH_BLAKE2B256:
        return aura_na->crypto_generichash_blake2b_init(&s->u.b2, NULL, 0, 32) == 0 ? 0 : -1;
    default:
        return -1;
    }
}

void aura_dc_sink_update(aura_dc_sink *s, const uint8_t *p, size_t n) {
    if (n == 0) return;
    s->total += n;
    if (s->alg == AURA_DC_HASH_SHA256)
        aura_sha256_update(&s->u.sha, p, n);
    else
        aura_na->crypto_generichash_blake2b_update(&s->u.b2, p, (unsigned long long)n);
}

void aura_dc_sink_final(aura_dc_sink *s, uint8_t out[32]) {
    if (s->alg == AURA_DC_HASH_SHA256)
        aura_sha256_final(&s->u.sha, out);
    else
        aura_na->crypto_generichash_blake2b_final(&s->u.b2, out, 32);
    /* Not secret, but the state is dead: keep no stale hash state around. */
    memset(&s->u, 0, sizeof s->u);
}
