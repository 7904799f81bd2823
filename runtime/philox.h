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
 *                 z = sqrt(-2 gr_log_f64(u1)) * gr_cos2pi_f64(u2), then rounded to the dtype.
 * gr_log_f64 and gr_cos2pi_f64 are NOT libm: they are defined here with +, -, *, /, bit
 * casts and fixed polynomials only (max relative error vs libm ~1e-15, tested), because
 * every IEEE implementation computes such a sequence identically, while libm's scalar and
 * libmvec's vector log/cos differ in the last bits. So the generated code can replay them
 * inline, vectorized, and still agree with the interpreter and the runtime bit for bit.
 * The sequences must never be contracted into FMAs: the Makefile builds with
 * -ffp-contract=off and the code generator emits them without fast-math flags.
 *   log x:  x = 2^e m, m in [sqrt(1/2), sqrt 2] (m halved and e + 1 when m > sqrt 2),
 *           f = m - 1, s = f / (2 + f), z = s s, p = 1 + z/3 + ... + z^9/19 (Horner from
 *           1/19), h = s p, r = e LN2_LO + (h + h), result = e LN2_HI + r.
 *   cos 2 pi u (u in [0, 1)): t = 4u, k = (int)(t + 0.5), f = t - k in [-1/2, 1/2]
 *           (all exact); with y = f f, c = Horner(GR_COS_C8..C0)(y) = cos(pi f / 2),
 *           s = f Horner(GR_SIN_S8..S0)(y) = sin(pi f / 2); the result is c, -s, -c, s for
 *           k & 3 = 0, 1, 2, 3. Coefficients are the Taylor ones rounded to double.
 * The interpreter, the generated code (compiler/lower_*.c emits the same arithmetic
 * inline) and the runtime (data shuffling, initialization) all use these definitions; a
 * test checks the published known-answer vectors and the codegen against this header.
 */
#ifndef GRADC_PHILOX_H
#define GRADC_PHILOX_H

#include <math.h>
#include <stdint.h>
#include <string.h>

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

/* ln 2 = LN2_HI + LN2_LO; LN2_HI has 32 significant bits, so e * LN2_HI is exact. */
#define GR_LN2_HI 0x1.62e42fee00000p-1
#define GR_LN2_LO 0x1.a39ef35793c76p-33
#define GR_SQRT2 1.4142135623730951
/* (-1)^k (pi/2)^(2k) / (2k)!  and  (-1)^k (pi/2)^(2k+1) / (2k+1)!,  k = 0..8 */
#define GR_COS_C                                                                             \
  {0x1.0000000000000p+0, -0x1.3bd3cc9be45dep+0, 0x1.03c1f081b5ac4p-2, -0x1.55d3c7e3cbffap-6, \
   0x1.e1f506891babbp-11, -0x1.a6d1f2a204a8cp-16, 0x1.f9d38a3763cc3p-22,                     \
   -0x1.b6e24f44b128fp-28, 0x1.20c62c2f2d7f5p-34}
#define GR_SIN_S                                                                             \
  {0x1.921fb54442d18p+0, -0x1.4abbce625be53p-1, 0x1.466bc6775aae2p-4, -0x1.32d2cce62bd86p-8, \
   0x1.50783487ee782p-13, -0x1.e3074fde8871fp-19, 0x1.e8f434d018d63p-25,                     \
   -0x1.6fadb9f155744p-31, 0x1.aaec32af93359p-38}
#define GR_TRIG_DEG 9 /* coefficients per polynomial */
#define GR_LOG_DEG 10 /* 1/19, 1/17, ..., 1/3, 1: Horner coefficient j is 1/(19 - 2j) */

/* Natural log of a positive normal finite x (the Box-Muller u1 in (0, 1]). */
static inline double gr_log_f64(double x) {
  uint64_t bits;
  memcpy(&bits, &x, sizeof bits);
  int64_t e = (int64_t)(bits >> 52) - 1023;
  uint64_t mb = (bits & 0x000FFFFFFFFFFFFFull) | 0x3FF0000000000000ull;
  double m;
  memcpy(&m, &mb, sizeof m);
  int big = m > GR_SQRT2;
  m = big ? m * 0.5 : m;
  e = big ? e + 1 : e;
  double f = m - 1.0;
  double s = f / (2.0 + f);
  double z = s * s;
  double p = 1.0 / 19.0;
  for (int j = 1; j < GR_LOG_DEG; j++) p = p * z + 1.0 / (double)(19 - 2 * j);
  double h = s * p;
  double de = (double)e;
  double r = de * GR_LN2_LO + (h + h);
  return de * GR_LN2_HI + r;
}

/* cos(2 pi u) for u in [0, 1). */
static inline double gr_cos2pi_f64(double u) {
  static const double cc[GR_TRIG_DEG] = GR_COS_C, sc[GR_TRIG_DEG] = GR_SIN_S;
  double t = u * 4.0;
  int32_t k = (int32_t)(t + 0.5);
  double f = t - (double)k;
  double y = f * f;
  double c = cc[GR_TRIG_DEG - 1], sn = sc[GR_TRIG_DEG - 1];
  for (int j = GR_TRIG_DEG - 2; j >= 0; j--) {
    c = c * y + cc[j];
    sn = sn * y + sc[j];
  }
  sn = f * sn;
  int q = k & 3;
  double v = (q & 1) ? sn : c;
  return (q == 1 || q == 2) ? -v : v;
}

static inline double gr_normal_f64(uint64_t seed, uint64_t step, uint64_t stream, uint64_t i) {
  philox_u32x4 r = gr_philox_block(seed, step, stream, i);
  double u1 = ((double)r.v[0] + 1.0) * (1.0 / 4294967296.0);
  double u2 = (double)r.v[1] * (1.0 / 4294967296.0);
  return sqrt(-2.0 * gr_log_f64(u1)) * gr_cos2pi_f64(u2);
}

static inline float gr_normal_f32(uint64_t seed, uint64_t step, uint64_t stream, uint64_t i) {
  return (float)gr_normal_f64(seed, step, stream, i);
}

#endif
