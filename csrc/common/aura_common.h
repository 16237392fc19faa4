/* aura_common.h — byte-order helpers, secret wiping and constant-time comparison for csrc/.
 * Plain C, no Python.h, so every C unit can be fuzzed and sanitized on its own. */
#ifndef AURA_COMMON_H
#define AURA_COMMON_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "aura_sodium.h"

#if defined(__GNUC__)
#define AURA_LIKELY(x) __builtin_expect(!!(x), 1)
#define AURA_UNLIKELY(x) __builtin_expect(!!(x), 0)
#else
#define AURA_LIKELY(x) (x)
#define AURA_UNLIKELY(x) (x)
#endif

static inline uint16_t aura_load16_be(const uint8_t *p) { return (uint16_t)((p[0] << 8) | p[1]); }
static inline uint32_t aura_load32_be(const uint8_t *p) {
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}
static inline uint64_t aura_load64_be(const uint8_t *p) {
    return ((uint64_t)aura_load32_be(p) << 32) | aura_load32_be(p + 4);
}
static inline uint32_t aura_load32_le(const uint8_t *p) {
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}
static inline uint64_t aura_load64_le(const uint8_t *p) {
    return (uint64_t)aura_load32_le(p) | ((uint64_t)aura_load32_le(p + 4) << 32);
}
static inline void aura_store16_be(uint8_t *p, uint16_t v) { p[0] = (uint8_t)(v >> 8); p[1] = (uint8_t)v; }
static inline void aura_store32_be(uint8_t *p, uint32_t v) {
    p[0] = (uint8_t)(v >> 24); p[1] = (uint8_t)(v >> 16); p[2] = (uint8_t)(v >> 8); p[3] = (uint8_t)v;
}
static inline void aura_store64_be(uint8_t *p, uint64_t v) {
    aura_store32_be(p, (uint32_t)(v >> 32)); aura_store32_be(p + 4, (uint32_t)v);
}
static inline void aura_store32_le(uint8_t *p, uint32_t v) {
    p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); p[2] = (uint8_t)(v >> 16); p[3] = (uint8_t)(v >> 24);
}
static inline void aura_store64_le(uint8_t *p, uint64_t v) {
    aura_store32_le(p, (uint32_t)v); aura_store32_le(p + 4, (uint32_t)(v >> 32));
}

/* Wipe a secret; the call through the table cannot be optimised away. */
static inline void aura_wipe(void *p, size_t n) { aura_na->sodium_memzero(p, n); }

/* Constant-time equality: 1 if equal, 0 otherwise (no early exit). */
static inline int aura_ct_eq(const void *a, const void *b, size_t n) {
    const volatile uint8_t *x = (const volatile uint8_t *)a, *y = (const volatile uint8_t *)b;
    uint8_t d = 0;
    for (size_t i = 0; i < n; i++) d |= (uint8_t)(x[i] ^ y[i]);
    return (int)(1 & ((d - 1) >> 8));
}

#endif
