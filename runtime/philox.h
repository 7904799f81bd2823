/* philox.h: the counter-based random numbers every part of gradc agrees on.
 *
 * A random value is a pure function of (seed, step, stream, element index) (design
 * rule 7), so results do not depend on thread count, kernel boundaries or batch layout.
 * Philox-4x32-10 (Salmon et al., "Parallel random numbers: as easy as 1, 2, 3", SC'11):
 *   counter = { idx lo, idx hi, stream lo, step }   key = { seed lo, seed hi ^ stream hi }
 * Each element uses its own counter block; words 0 and 1 of the output feed the value:
 *   uniform f32:  (w0 >> 8) * 2^-24                        in [0, 1)
 *   uniform f64:  ((w0 << 32 | w1) >> 11) * 2^-53          in [0, 1)
 *   normal:       Box-Muller in f64, u1 = (w0 + 1) * 2^-32 in (0, 1], u2 = w1 * 2^-32,
 *                 z = sqrt(-2 ln u1) cos(2 pi u2), then rounded to the dtype.
 * The interpreter, the generated code (compiler/lower_*.c emits the same arithmetic
 * inline) and the runtime (data shuffling, initialization) all use these definitions; a
 * test checks the published known-answer vectors and the codegen against this header.
 */
#ifndef GRADC_PHILOX_H
#define GRADC_PHILOX_H

#include <math.h>
#include <stdint.h>

#define PHILOX_M0 0xD2511F53u
#define PHILOX_M1 0xCD9E8D57u
#define PHILOX_W0 0x9E3779B9u
#define PHILOX_W1 0xBB67AE85u

typedef struct {
  uint32_t v[4];
} philox_u32x4;

static inline philox_u32x4 philox4x32_10(philox_u32x4 ctr, uint32_t k0, uint32_t k1) {
  for (int r = 0; r < 10; r++) {
    uint64_t p0 = (uint64_t)PHILOX_M0 * ctr.v[0];
    uint64_t p1 = (uint64_t)PHILOX_M1 * ctr.v[2];
    uint32_t hi0 = (uint32_t)(p0 >> 32), lo0 = (uint32_t)p0;
    uint32_t hi1 = (uint32_t)(p1 >> 32), lo1 = (uint32_t)p1;
    philox_u32x4 n = {{hi1 ^ ctr.v[1] ^ k0, lo1, hi0 ^ ctr.v[3] ^ k1, lo0}};
    ctr = n;
    k0 += PHILOX_W0;
    k1 += PHILOX_W1;
  }
  return ctr;
}

static inline philox_u32x4 gr_philox_block(uint64_t seed, uint64_t step, uint64_t stream,
                                           uint64_t idx) {
  philox_u32x4 c = {{(uint32_t)idx, (uint32_t)(idx >> 32), (uint32_t)stream, (uint32_t)step}};
  return philox4x32_10(c, (uint32_t)seed, (uint32_t)(seed >> 32) ^ (uint32_t)(stream >> 32));
}

static inline float gr_uniform_f32(uint64_t seed, uint64_t step, uint64_t stream, uint64_t i) {
  philox_u32x4 r = gr_philox_block(seed, step, stream, i);
  return (float)(r.v[0] >> 8) * (1.0f / 16777216.0f);
}

static inline double gr_uniform_f64(uint64_t seed, uint64_t step, uint64_t stream, uint64_t i) {
  philox_u32x4 r = gr_philox_block(seed, step, stream, i);
  return (double)((((uint64_t)r.v[0] << 32) | r.v[1]) >> 11) * (1.0 / 9007199254740992.0);
}

static inline double gr_normal_f64(uint64_t seed, uint64_t step, uint64_t stream, uint64_t i) {
  philox_u32x4 r = gr_philox_block(seed, step, stream, i);
  double u1 = ((double)r.v[0] + 1.0) * (1.0 / 4294967296.0);
  double u2 = (double)r.v[1] * (1.0 / 4294967296.0);
  return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

static inline float gr_normal_f32(uint64_t seed, uint64_t step, uint64_t stream, uint64_t i) {
  return (float)gr_normal_f64(seed, step, stream, i);
}

#endif
