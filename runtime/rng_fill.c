/* rng_fill.c: many normal draws at once, vectorized, for the sampler's noise.
 *
 * Why a file of its own: gr_normal_f64 (philox.h) is plain IEEE arithmetic, so a
 * vectorized loop of it gives exactly the scalar values, but GCC only vectorizes it
 * (a) at -O3 with -fno-trapping-math (else the selects in gr_log_f64 / gr_cos2pi_f64 stay
 * branches; neither flag changes a result: no FMA contraction, -ffp-contract=off, and
 * sqrt is correctly rounded in every width) and (b) with AVX-512's 64-bit integer <->
 * double conversions. The build is not -march=native, so the loop is compiled twice
 * (target_clones): x86-64-v4 and the baseline, picked at load time; the flags come from
 * a per-file line in the Makefile. Sampling at D = 784
 * spends most of its time drawing the initial noise (docs/performance.md).
 */

#include "rng_fill.h"

#include "philox.h"

GR_CLONES void gr_normal_fill_f64(double *out, int64_t n, uint64_t seed, uint64_t step,
                                  uint64_t stream, uint64_t off) {
  for (int64_t i = 0; i < n; i++) out[i] = gr_normal_f64(seed, step, stream, off + (uint64_t)i);
}
