/* rng_fill.h: batched normal draws for the runtime's own noise (runtime/rng_fill.c). */
#ifndef GRADC_RNG_FILL_H
#define GRADC_RNG_FILL_H

#include <stdint.h>

/* The fill loops are compiled twice, for x86-64-v4 (AVX-512) and the baseline, and the
 * variant is picked at load time (the build is not -march=native). */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && !defined(__SANITIZE_ADDRESS__)
#define GR_CLONES __attribute__((target_clones("arch=x86-64-v4", "default")))
#else
#define GR_CLONES
#endif

/* out[i] = gr_normal_f64(seed, step, stream, off + i) for i in [0, n), bit for bit. */
void gr_normal_fill_f64(double *out, int64_t n, uint64_t seed, uint64_t step, uint64_t stream,
                        uint64_t off);

/* out[i] = scale z(off + i): four normals per Philox block in f32 with libmvec (the
 * sampler's start noise; runtime/rng_fast.c has the definition). Not gr_normal_f64. */
void gr_normal_fill_fast_f32(float *out, int64_t n, uint64_t seed, uint64_t step, uint64_t stream,
                             uint64_t off, float scale);

#endif
