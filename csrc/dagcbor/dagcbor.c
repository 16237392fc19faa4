/* dagcbor.c — UTF-8 validation, unsigned varints and binary CID validation for the codec. */
#include "dagcbor.h"

size_t aura_dc_utf8_invalid_at(const uint8_t *p, size_t n) {
    size_t i = 0;
    while (i < n) {
        uint8_t b = p[i];
        if (b < 0x80) {
            /* ASCII run: skip 8 bytes at a time */
            while (i + 8 <= n) {
                uint64_t w;
                memcpy(&w, p + i, 8);
                if (w & 0x8080808080808080ull) break;
                i += 8;
            }
            if (i < n && p[i] < 0x80) i++;
            continue;
        }
        size_t need;
        uint8_t lo = 0x80, hi = 0xbf;
        if (b >= 0xc2 && b <= 0xdf) need = 1;
        else if (b >= 0xe0 && b <= 0xef) {
            need = 2;
            if (b == 0xe0) lo = 0xa0;          /* overlong */
            else if (b == 0xed) hi = 0x9f;     /* surrogates */
        } else if (b >= 0xf0 && b <= 0xf4) {
            need = 3;
            if (b == 0xf0) lo = 0x90;          /* overlong */
            else if (b == 0xf4) hi = 0x8f;     /* above U+10FFFF */
        } else {
            return i;
        }
        if (n - i - 1 < need) return i;
        if (p[i + 1] < lo || p[i + 1] > hi) return i;
        for (size_t k = 2; k <= need; k++)
            if ((p[i + k] & 0xc0) != 0x80) return i;
        i += need + 1;
    }
    return n;
}

size_t aura_dc_varint(const uint8_t *p, size_t n, uint64_t *out) {
    uint64_t v = 0;
    for (size_t i = 0; i < n && i < 9; i++) {
        uint8_t b = p[i];
        v |= (uint64_t)(b & 0x7f) << (7 * i);
        if (!(b & 0x80)) {
            if (b == 0 && i > 0) return 0;   /* not minimal */
            if (v >> 63) return 0;
            *out = v;
            return i + 1;
        }
    }
    return 0;
}

int aura_dc_cid_check_raw(const uint8_t *p, size_t n, size_t *bad) {
    uint64_t version, codec, code, len;
    size_t i = 0, k;
    if (n == 34 && p[0] == 0x12 && p[1] == 0x20) return AURA_DC_OK;   /* CIDv0: sha2-256 multihash */
    if (!(k = aura_dc_varint(p, n, &version)) || version != 1) { *bad = 0; return AURA_DC_BAD_CID; }
    i += k;
    if (!(k = aura_dc_varint(p + i, n - i, &codec))) { *bad = i; return AURA_DC_BAD_CID; }
    i += k;
    if (!(k = aura_dc_varint(p + i, n - i, &code))) { *bad = i; return AURA_DC_BAD_CID; }
    i += k;
    if (!(k = aura_dc_varint(p + i, n - i, &len))) { *bad = i; return AURA_DC_BAD_CID; }
    i += k;
    if (len != n - i) { *bad = i; return AURA_DC_BAD_CID; }
    (void)codec;
    (void)code;
    return AURA_DC_OK;
}

int aura_dc_cid_check(const uint8_t *p, size_t n, size_t *bad) {
    if (n < 1 || p[0] != 0x00) { *bad = 0; return AURA_DC_BAD_CID; }
    int rc = aura_dc_cid_check_raw(p + 1, n - 1, bad);
    if (rc) *bad += 1;
    return rc;
}
