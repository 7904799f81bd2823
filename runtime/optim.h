/* optim.h: optimizers, learning-rate schedules, gradient clipping and the weight EMA
 * (optim.c). All state is f32 per parameter element; the arithmetic of one update is done
 * in f64 and rounded once, so the tests can state exact expected values. The per-element
 * functions split their arrays over rc's thread pool (rc or rc->pool NULL: inline); the
 * result is the same bits for any thread count.
 */
#ifndef GRADC_OPTIM_H
#define GRADC_OPTIM_H

#include <stdint.h>

#include "gradrt.h"

typedef enum { GR_OPT_SGD, GR_OPT_ADAM, GR_OPT_ADAMW, GR_OPT_RADAM } GrOptKind;
typedef enum { GR_SCHED_CONSTANT, GR_SCHED_COSINE, GR_SCHED_WARMUP_COSINE } GrSchedKind;

typedef struct {
  GrOptKind kind;
  double beta1, beta2, eps, weight_decay, momentum;
} GrOptConfig;

typedef struct {
  GrSchedKind kind;
  double lr, lr_min;
  int64_t warmup, total;
} GrSchedule;

int gr_opt_parse(const char *name, GrOptKind *out); /* -1: unknown */
const char *gr_opt_name(GrOptKind k);
int gr_opt_nstate(GrOptKind k);                 /* state tensors per parameter (1 or 2) */
const char *gr_opt_state_name(GrOptKind k, int i); /* "momentum", "adam_m", "adam_v" */
/* One update of w [n] with gradient g [n]; s0, s1 the state (s1 unused for SGD);
 * t = 1-based update count (bias correction), lr the learning rate of this step. */
void gr_opt_step(const GrRunCtx *rc, const GrOptConfig *c, float *w, const float *g, float *s0,
                 float *s1, int64_t n, int64_t t, double lr);

int gr_sched_parse(const char *name, GrSchedKind *out);
const char *gr_sched_name(GrSchedKind k);
/* Learning rate for 0-based step `step`. */
double gr_sched_lr(const GrSchedule *s, int64_t step);

/* Euclidean norm over several gradient arrays: f64 partial sums over blocks whose size
 * depends only on the array length (never on the thread count), added in block order. */
double gr_grad_norm(const GrRunCtx *rc, float *const *g, const int64_t *n, int count);
/* Scales all gradients by clip / norm when norm > clip > 0. Returns the factor. */
double gr_clip_scale(const GrRunCtx *rc, float *const *g, const int64_t *n, int count,
                     double norm, double clip);
/* ema = decay * ema + (1 - decay) * w */
void gr_ema_update(const GrRunCtx *rc, float *ema, const float *w, int64_t n, double decay);

#endif
