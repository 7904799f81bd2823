/* optim.c: the optimizers, learning-rate schedules, clipping and EMA of gradc's trainer.
 *
 * Each update follows the PyTorch definitions (so a graph trained here and there uses the
 * same hyper-parameters for the same effect):
 *   SGD    buf = momentum * buf + (g + wd * w);         w -= lr * buf
 *   Adam   g' = g + wd * w (L2);  m = b1 m + (1 - b1) g';  v = b2 v + (1 - b2) g'^2
 *          w -= lr * (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps)
 *   AdamW  w -= lr * wd * w (decoupled), then Adam with wd = 0
 *   RAdam  (Liu et al. 2020) rho_inf = 2 / (1 - b2) - 1,
 *          rho_t = rho_inf - 2 t b2^t / (1 - b2^t); when rho_t > 5 the adaptive step
 *          mhat * r * sqrt(1 - b2^t) / (sqrt(v) + eps) with the rectification
 *          r = sqrt((rho_t - 4)(rho_t - 2) rho_inf / ((rho_inf - 4)(rho_inf - 2) rho_t)),
 *          else the un-adapted mhat (SGD with momentum); wd as L2, as PyTorch's RAdam.
 * Per element the arithmetic is f64, rounded to f32 once per stored value, so the unit
 * tests can compute expected values independently in f64 and compare tightly; except the
 * adaptive Adam/AdamW/RAdam step, which is f32 like PyTorch's (step constants from f64):
 * it was 11 % of the IMM step at batch 64 in f64 (vector divisions and square roots at
 * half the f32 rate); in f32 the step took 6 % less CPU time. The tests' f64 references
 * agree to 1e-6 relative.
 */
#include <math.h>
#include <string.h>

#include "optim.h"

static const char *const opt_names[] = {"sgd", "adam", "adamw", "radam"};
static const char *const sched_names[] = {"constant", "cosine", "warmup_cosine"};

int gr_opt_parse(const char *name, GrOptKind *out) {
  for (int i = 0; i < 4; i++)
    if (strcmp(name, opt_names[i]) == 0) {
      *out = (GrOptKind)i;
      return 0;
    }
  return -1;
}

const char *gr_opt_name(GrOptKind k) { return opt_names[k]; }

int gr_opt_nstate(GrOptKind k) { return k == GR_OPT_SGD ? 1 : 2; }

const char *gr_opt_state_name(GrOptKind k, int i) {
  if (k == GR_OPT_SGD) return "momentum";
  return i == 0 ? "adam_m" : "adam_v";
}

/* Hot loops. At batch 64 the IMM step spent 62 % of its CPU time here (perf: the Adam
 * loop 47 %, EMA 10 %, gradient norm 5 %), as scalar f64 code with a branch per element
 * and a sqrt that had to set errno. The loops below keep the f64 arithmetic but are
 * branch-free and built for the widest vector unit the CPU has (GR_HOT: O3 without
 * errno, one clone per x86-64 level, chosen at load time). */
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && !defined(__SANITIZE_ADDRESS__)
#define GR_HOT                                                                             \
  __attribute__((optimize("O3", "no-math-errno"),                                        \
                 target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define GR_HOT
#endif

static GR_HOT void sgd_loop(float *restrict w, const float *restrict g, float *restrict buf,
                            int64_t n, double wd, double mom, double lr) {
  for (int64_t i = 0; i < n; i++) {
    double gi = (double)g[i] + wd * (double)w[i];
    double b = mom * (double)buf[i] + gi;
    buf[i] = (float)b;
    w[i] = (float)((double)w[i] - lr * b);
  }
}

static void sgd_step(const GrOptConfig *c, float *w, const float *g, float *buf, int64_t n,
                     double lr) {
  sgd_loop(w, g, buf, n, c->weight_decay, c->momentum, lr);
}

/* The Adam family in one f32 loop: w' = shrink w (AdamW's decoupled decay), g' = g + wd w
 * (L2), the moments, then w' -= step m / (sqrt(v) isq + eps). Adam: step = lr / bc1,
 * isq = 1 / sqrt(bc2) (PyTorch's formulation); RAdam (adaptive): step = lr rect
 * sqrt(bc2) / bc1, isq = 1. */
typedef struct {
  double shrink, wd, b1, b2, step, isq, eps;
} AdamK;

static GR_HOT void adam_loop(float *restrict w, const float *restrict g, float *restrict m,
                             float *restrict v, int64_t n, const AdamK *k) {
  float shrink = (float)k->shrink, wd = (float)k->wd, b1 = (float)k->b1, b2 = (float)k->b2,
        c1 = (float)(1.0 - k->b1), c2 = (float)(1.0 - k->b2), step = (float)k->step,
        isq = (float)k->isq, eps = (float)k->eps;
  for (int64_t i = 0; i < n; i++) {
    float wi = w[i] * shrink;
    float gi = g[i] + wd * wi;
    float mi = b1 * m[i] + c1 * gi;
    float vi = b2 * v[i] + c2 * gi * gi;
    m[i] = mi;
    v[i] = vi;
    w[i] = wi - step * mi / (sqrtf(vi) * isq + eps);
  }
}

/* RAdam's un-adapted steps (rho_t <= 5): SGD with the bias-corrected momentum. */
static GR_HOT void radam_plain_loop(float *restrict w, const float *restrict g,
                                    float *restrict m, float *restrict v, int64_t n,
                                    const AdamK *k) {
  double wd = k->wd, b1 = k->b1, b2 = k->b2, step = k->step;
  for (int64_t i = 0; i < n; i++) {
    double wi = (double)w[i];
    double gi = (double)g[i] + wd * wi;
    double mi = b1 * (double)m[i] + (1.0 - b1) * gi;
    double vi = b2 * (double)v[i] + (1.0 - b2) * gi * gi;
    m[i] = (float)mi;
    v[i] = (float)vi;
    w[i] = (float)(wi - step * mi);
  }
}

/* Adam, AdamW and RAdam share the moment updates. */
static void adam_step(const GrOptConfig *c, float *w, const float *g, float *m, float *v,
                      int64_t n, int64_t t, double lr) {
  double b1 = c->beta1, b2 = c->beta2;
  double bc1 = 1.0 - pow(b1, (double)t), bc2 = 1.0 - pow(b2, (double)t);
  int decoupled = c->kind == GR_OPT_ADAMW;
  AdamK k = {decoupled ? 1.0 - lr * c->weight_decay : 1.0, decoupled ? 0.0 : c->weight_decay,
             b1, b2, lr / bc1, 1.0 / sqrt(bc2), c->eps};
  if (c->kind == GR_OPT_RADAM) {
    double rho_inf = 2.0 / (1.0 - b2) - 1.0;
    double rho_t = rho_inf - 2.0 * (double)t * pow(b2, (double)t) / bc2;
    if (!(rho_t > 5.0)) {
      radam_plain_loop(w, g, m, v, n, &k);
      return;
    }
    double rect = sqrt((rho_t - 4.0) * (rho_t - 2.0) * rho_inf /
                       ((rho_inf - 4.0) * (rho_inf - 2.0) * rho_t));
    k.step = lr * rect * sqrt(bc2) / bc1;
    k.isq = 1.0;
  }
  adam_loop(w, g, m, v, n, &k);
}

/* ---- splitting over the pool: every element is independent, so any split gives the same
 * bits; GR_OPT_GRAIN elements per chunk keeps small parameters on one thread. */
#define GR_OPT_GRAIN 16384

typedef struct {
  const GrOptConfig *c;
  float *w, *s0, *s1, *ema;
  const float *g;
  int64_t t;
  double lr, decay, scale;
} OptEnv;

static void opt_body(void *env, int64_t lo, int64_t hi) {
  OptEnv *e = env;
  if (e->c->kind == GR_OPT_SGD) sgd_step(e->c, e->w + lo, e->g + lo, e->s0 + lo, hi - lo, e->lr);
  else adam_step(e->c, e->w + lo, e->g + lo, e->s0 + lo, e->s1 + lo, hi - lo, e->t, e->lr);
}

void gr_opt_step(const GrRunCtx *rc, const GrOptConfig *c, float *w, const float *g, float *s0,
                 float *s1, int64_t n, int64_t t, double lr) {
  OptEnv e = {.c = c, .w = w, .s0 = s0, .s1 = s1, .g = g, .t = t, .lr = lr};
  gr_parallel_for(rc, n, GR_OPT_GRAIN, opt_body, &e);
}

int gr_sched_parse(const char *name, GrSchedKind *out) {
  for (int i = 0; i < 3; i++)
    if (strcmp(name, sched_names[i]) == 0) {
      *out = (GrSchedKind)i;
      return 0;
    }
  return -1;
}

const char *gr_sched_name(GrSchedKind k) { return sched_names[k]; }

/* Linear warm-up (any schedule with warmup > 0): lr * (step + 1) / warmup for the first
 * `warmup` steps. Cosine: from lr down to lr_min over the steps after the warm-up:
 * lr_min + (lr - lr_min) (1 + cos(pi p)) / 2 with p = (step - warmup) / (total - warmup). */
double gr_sched_lr(const GrSchedule *s, int64_t step) {
  if (s->warmup > 0 && step < s->warmup) return s->lr * (double)(step + 1) / (double)s->warmup;
  if (s->kind == GR_SCHED_CONSTANT) return s->lr;
  int64_t span = s->total - s->warmup;
  if (span <= 0) return s->lr_min;
  double p = (double)(step - s->warmup) / (double)span;
  if (p > 1) p = 1;
  return s->lr_min + (s->lr - s->lr_min) * 0.5 * (1.0 + cos(M_PI * p));
}

/* Block b of an array of n elements: nb = min(1024, ceil(n / 4096)) blocks of equal
 * size (the last shorter), a function of n only. */
#define GR_NORM_MAXBLOCKS 1024

typedef struct {
  const float *g;
  int64_t n, bs;
  double *part;
} NormEnv;

/* Sum of squares of g[0..n) in f64 with 8 interleaved partial sums (fixed order: the
 * result depends on n only). */
static GR_HOT double sumsq(const float *restrict g, int64_t n) {
  double acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int j = 0; j < 8; j++) acc[j] += (double)g[i + j] * (double)g[i + j];
  for (int j = 0; i < n; i++, j++) acc[j] += (double)g[i] * (double)g[i];
  return ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
}

static void norm_body(void *env, int64_t lo, int64_t hi) {
  NormEnv *e = env;
  for (int64_t b = lo; b < hi; b++) {
    int64_t a = b * e->bs, z = a + e->bs < e->n ? a + e->bs : e->n;
    e->part[b] = sumsq(e->g + a, z - a);
  }
}

double gr_grad_norm(const GrRunCtx *rc, float *const *g, const int64_t *n, int count) {
  double part[GR_NORM_MAXBLOCKS], s = 0;
  for (int k = 0; k < count; k++) {
    if (n[k] <= 0) continue;
    int64_t nb = (n[k] + 4095) / 4096;
    if (nb > GR_NORM_MAXBLOCKS) nb = GR_NORM_MAXBLOCKS;
    NormEnv e = {g[k], n[k], (n[k] + nb - 1) / nb, part};
    gr_parallel_for(rc, nb, 1, norm_body, &e);
    for (int64_t b = 0; b < nb; b++) s += part[b];
  }
  return sqrt(s);
}

static void scale_body(void *env, int64_t lo, int64_t hi) {
  OptEnv *e = env;
  for (int64_t i = lo; i < hi; i++) e->w[i] = (float)((double)e->w[i] * e->scale);
}

double gr_clip_scale(const GrRunCtx *rc, float *const *g, const int64_t *n, int count,
                     double norm, double clip) {
  if (!(clip > 0) || !(norm > clip)) return 1.0;
  double f = clip / norm;
  for (int k = 0; k < count; k++) {
    OptEnv e = {.w = g[k], .scale = f};
    gr_parallel_for(rc, n[k], GR_OPT_GRAIN, scale_body, &e);
  }
  return f;
}

static GR_HOT void ema_loop(float *restrict ema, const float *restrict w, int64_t n,
                            double decay) {
  for (int64_t i = 0; i < n; i++)
    ema[i] = (float)(decay * (double)ema[i] + (1.0 - decay) * (double)w[i]);
}

static void ema_body(void *env, int64_t lo, int64_t hi) {
  OptEnv *e = env;
  ema_loop(e->ema + lo, e->w + lo, hi - lo, e->decay);
}

void gr_ema_update(const GrRunCtx *rc, float *ema, const float *w, int64_t n, double decay) {
  OptEnv e = {.ema = ema, .w = (float *)w, .decay = decay};
  gr_parallel_for(rc, n, GR_OPT_GRAIN, ema_body, &e);
}
