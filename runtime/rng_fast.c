/* rng_fast.c: the sampler's start noise, four normals per Philox block in f32.
 *
 * Why not gr_normal_f64 (philox.h): that definition (one Philox block and an exact f64
 * log/cos per value) is shared bit for bit by the interpreter and the generated code, and
 * costs ~4.7 ns per value here. `prog sample` draws D values per sample before the first
 * network call: at D = 784 that was ~3.8 ms per 1024 samples, 75 % of the time of the
 * network's own matrix products in a 1-step sampler. The start noise is the runtime's
 * alone (nothing else has to reproduce it), so it uses the cheaper textbook form: block
 * b = Philox(seed, step, stream, b) gives four 32-bit words (v0, v1, v2, v3), and
 *   z[4b + 2p] = r cos(2 pi u2), z[4b + 2p + 1] = r sin(2 pi u2), r = sqrt(-2 ln u1),
 *   u1 = ((v_{2p} >> 8) + 1) / 2^24 in (0, 1], u2 = (v_{2p+1} >> 8) / 2^24, p = 0, 1,
 * in f32 with glibc's vector logf/sinf/cosf (libmvec). A value depends only on (seed,
 * step, stream, index), never on the thread count or on how a fill is cut; libmvec's
 * AVX-512 and AVX2 variants may differ in the last bit, so two different CPUs can give
 * slightly different start noise. Measured: 1.0 ns per value (was 4.7).
 *
 * Built with -O3 -ffast-math -fopenmp-simd (Makefile): that is what makes GCC call the
 * libmvec variants; nothing else lives in this file.
 */
#include <math.h>

#include "philox.h"
#include "rng_fill.h"

#define CHUNK 256 /* Philox blocks per round: 1024 values */

/* z[0 .. 4 nb) for the blocks b0 .. b0 + nb. */
GR_CLONES static void blocks(float *restrict z, uint64_t b0, int64_t nb, uint64_t seed,
                             uint64_t step, uint64_t stream) {
  float u1[2 * CHUNK], u2[2 * CHUNK];
  for (int64_t b = 0; b < nb; b++) {
    philox_u32x4 r = gr_philox_block(seed, step, stream, b0 + (uint64_t)b);
    u1[2 * b] = (float)((r.v[0] >> 8) + 1) * (1.0f / 16777216.0f);
    u2[2 * b] = (float)(r.v[1] >> 8) * (1.0f / 16777216.0f);
    u1[2 * b + 1] = (float)((r.v[2] >> 8) + 1) * (1.0f / 16777216.0f);
    u2[2 * b + 1] = (float)(r.v[3] >> 8) * (1.0f / 16777216.0f);
  }
  for (int64_t p = 2 * nb; p < 2 * CHUNK; p++) u1[p] = 1.0f, u2[p] = 0.0f;
  /* Always the full 2 CHUNK values, so that every value comes from the vector variant: a
   * loop of variable length ends in scalar iterations (libm's logf, not libmvec's), and a
   * value would then depend on where a fill was cut. Three loops: in one, GCC merges sin
   * and cos into a scalar sincosf call. */
  float rr[2 * CHUNK], c[2 * CHUNK], s[2 * CHUNK];
#pragma omp simd
  for (int p = 0; p < 2 * CHUNK; p++) rr[p] = sqrtf(-2.0f * logf(u1[p]));
#pragma omp simd
  for (int p = 0; p < 2 * CHUNK; p++) c[p] = cosf(6.28318530717958647692f * u2[p]);
#pragma omp simd
  for (int p = 0; p < 2 * CHUNK; p++) s[p] = sinf(6.28318530717958647692f * u2[p]);
  for (int64_t p = 0; p < 2 * nb; p++) {
    z[2 * p] = rr[p] * c[p];
    z[2 * p + 1] = rr[p] * s[p];
  }
}

void gr_normal_fill_fast_f32(float *out, int64_t n, uint64_t seed, uint64_t step, uint64_t stream,
                             uint64_t off, float scale) {
  float z[4 * CHUNK];
  for (int64_t i = 0; i < n;) {
    uint64_t j = off + (uint64_t)i, b0 = j / 4;
    int64_t skip = (int64_t)(j % 4), want = n - i;
    int64_t nb = (skip + want + 3) / 4;
    if (nb > CHUNK) nb = CHUNK;
    blocks(z, b0, nb, seed, step, stream);
    int64_t m = 4 * nb - skip < want ? 4 * nb - skip : want;
    for (int64_t q = 0; q < m; q++) out[i + q] = scale * z[skip + q];
    i += m;
  }
}
