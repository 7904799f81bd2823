/* fake_module.h: a hand-written stand-in for an AOT-compiled program, for runtime tests.
 *
 * A linear denoiser on 2-D data: pred = (x + 0.1 n) W + b, loss = mean((pred - x)^2)
 * over the B x 2 elements, n = Philox normal(rc->seed, rc->step, stream 1, element), so
 * the loss has the same "fresh noise every step" structure as a real graph. Its exact
 * gradient is coded by hand (entries loss_grad, loss, and f64 versions loss_grad_f64 /
 * loss_f64); "sample" is one Euler step x + (s - t)(x W + b). The row loop runs through
 * gr_parallel_for so thread-count determinism is exercised.
 */
#ifndef FAKE_MODULE_H
#define FAKE_MODULE_H

#include "gradrt.h"

#define FAKE_B 64
#define FAKE_NS 16

typedef enum {
  FAKE_PLAIN,     /* f32 entries only */
  FAKE_WITH_F64,  /* plus loss_f64 / loss_grad_f64 */
  FAKE_FOREIGN,   /* same as plain, another graph hash */
  FAKE_NAN_AT_5,  /* loss becomes NaN from step 5 on */
  FAKE_BAD_GRAD,  /* gradient of W scaled by 1.5 (gradcheck must fail) */
  FAKE_SIGINT_AT_3, /* raises SIGINT during step 3 (the trainer must stop cleanly) */
  FAKE_LABELS,    /* loss_grad takes i32[B] labels too; the loss is NaN unless every label
                     is the checkerboard cell of its row (so training checks the labels) */
} FakeVariant;

/* Fills *m (and the entries storage, >= 8 entries) with the given variant. */
void fake_module_make(GrModuleInfo *m, GrEntryInfo *entries, FakeVariant v);

#endif
