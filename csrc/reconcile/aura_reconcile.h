/* aura_reconcile.h — GF(2^127 - 1) moments of sorted 32-byte fact hashes, for journal sync.
 *
 * A fact's key is the top 127 bits of its hash (bytes 0..15 big-endian, shifted right by one),
 * reduced mod P = 2^127 - 1.  These functions sum powers of keys over runs of a packed array
 * of n hashes (32 bytes each, as aura_core.journal.reconcile.SortedIds holds them).  Field
 * elements cross the interface as two uint64_t words, low word first, always reduced (< P).
 * Plain C, no Python.h: the caller passes the array and its length; every index is checked. */
#ifndef AURA_RECONCILE_H
#define AURA_RECONCILE_H

#include <stddef.h>
#include <stdint.h>

#define AURA_REC_OK 0
#define AURA_REC_ERR_ARG (-1)       /* an index, count or width out of bounds */

#define AURA_REC_MAX_POWERS 64      /* most power sums one call computes */
#define AURA_REC_MAX_FANOUT_BITS 16 /* most child bits aura_rec_cells splits a range into */

/* out[2q], out[2q+1] = Σ key^(q+1) over positions [i, j), for q < m (1 <= m <= MAX_POWERS). */
int aura_rec_power_sums(const uint8_t *hashes, size_t n, size_t i, size_t j, unsigned m,
                        uint64_t *out);

/* Prefix moments every `step` positions: for t = 0 .. ceil(n / step),
 * p1[2t..2t+1] = Σ key and p2[2t..2t+1] = Σ key^2 over positions [0, min(t * step, n)).
 * s3[0..1] = Σ key^3 over all n.  p1 and p2 hold 2 * (1 + ceil(n / step)) words each. */
int aura_rec_prefix(const uint8_t *hashes, size_t n, size_t step, uint64_t *p1, uint64_t *p2,
                    uint64_t *s3);

/* Cells of 2^b children over positions [i, j), all inside one aligned range of depth k (the
 * caller's claim; a hash outside it is still counted in the child its bits k..k+b-1 name).
 * counts[c] and sums (Σ key at s1[2c..2c+1], Σ key^2 at s2[2c..2c+1]) for c < 2^b;
 * requires 1 <= b <= MAX_FANOUT_BITS and k + b <= 128. */
int aura_rec_cells(const uint8_t *hashes, size_t n, size_t i, size_t j, unsigned k, unsigned b,
                   uint64_t *counts, uint64_t *s1, uint64_t *s2);

/* The first position x in [lo, hi] with hashes[x] >= bound (32 bytes, compared as big-endian
 * numbers), for sorted hashes; *pos receives it.  Requires lo <= hi <= n. */
int aura_rec_lower_bound(const uint8_t *hashes, size_t n, size_t lo, size_t hi,
                         const uint8_t *bound, size_t *pos);

#endif
