/* rng_fill.h: batched normal draws for the runtime's own noise (runtime/rng_fill.c). */
#ifndef GRADC_RNG_FILL_H
#define GRADC_RNG_FILL_H

#include <stdint.h>

/* out[i] = gr_normal_f64(seed, step, stream, off + i) for i in [0, n), bit for bit. */
void gr_normal_fill_f64(double *out, int64_t n, uint64_t seed, uint64_t step, uint64_t stream,
                        uint64_t off);

/* out[i] = scale z(off + i): four normals per Philox block in f32 with libmvec (the
 * sampler's start noise; runtime/rng_fast.c has the definition). Not gr_normal_f64. */
void gr_normal_fill_fast_f32(float *out, int64_t n, uint64_t seed, uint64_t step, uint64_t stream,
                             uint64_t off, float scale);

#endif
