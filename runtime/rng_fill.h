/* rng_fill.h: batched normal draws for the runtime's own noise (runtime/rng_fill.c). */
#ifndef GRADC_RNG_FILL_H
#define GRADC_RNG_FILL_H

#include <stdint.h>

/* out[i] = gr_normal_f64(seed, step, stream, off + i) for i in [0, n), bit for bit. */
void gr_normal_fill_f64(double *out, int64_t n, uint64_t seed, uint64_t step, uint64_t stream,
                        uint64_t off);

#endif
