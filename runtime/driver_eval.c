/* driver_eval.c: `prog sample`, `prog eval` and `prog gradcheck`.
 *
 * Sampling. The program's entry "sample" is ONE sampler step: (x [Ns, D..], t [Ns],
 * s [Ns]) -> x at time s, for the compile-time sampling batch Ns. A K-step sampler starts
 * from x ~ N(0, sigma_d^2 I) at t_0 = T and calls it for each pair (t_i, t_{i+1}) of the
 * schedule t_0 = T > t_1 > ... > t_K = eps (gr_sample_times):
 *   "imm"      K = 1: T -> eps; K = 2: via t = eta / (1 + eta), eta = 1.4 (the IMM paper's
 *              middle time for OT-FM, t = 1.4/2.4); K >= 3: uniform in t
 *   "uniform"  K equal steps in t (flow matching with Euler)
 * With --restart each step jumps to eps and the result is re-noised to the next time
 * with the OT-FM interpolant gr_interp_ot (rt.h): x_t = (1 - t) x + t sigma_d n.
 * N samples are produced in chunks of Ns (the last one padded); every noise value the
 * driver draws is Philox(seed, stage, stream, sample row * D + k), so the samples do not
 * depend on Ns (random draws inside the entry get RunCtx.step = chunk * K + stage).
 *
 * Evaluation samples N points per step count and compares them with N held-out rows
 * (metrics.c): energy distance, MMD^2 with RBF bandwidths {0.1, 0.5, 1, 2} x the median
 * pairwise distance of the held-out rows, and sliced W2^2 over 128 directions. A "data"
 * row compares N training rows with the held-out rows: the noise floor of the table. For
 * rows of at most 64 values the Frechet distance of Gaussian fits is printed too.
 *
 * Gradient check: central differences (L(p + h e) - L(p - h e)) / 2h against loss_grad at
 * a few random coordinates, with the batch, seed and step fixed so the loss is a
 * deterministic function of the parameters. The f64 entries (loss_f64 / loss_grad_f64,
 * all tensors f64) are used when the program has them; otherwise f32 with a larger h.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "rt.h"
#include "rng_fill.h"


int gr_sample_times(const char *sampler, int64_t k, double T, double eps, double *t,
                    char *err, size_t nerr) {
  if (k < 1) {
    snprintf(err, nerr, "the number of sampling steps must be >= 1");
    return -1;
  }
  int imm = strcmp(sampler, "imm") == 0;
  if (!imm && strcmp(sampler, "uniform") != 0) {
    snprintf(err, nerr, "unknown sampler '%s' (imm, uniform)", sampler);
    return -1;
  }
  if (!(T > eps)) {
    snprintf(err, nerr, "sampling needs T > eps (T = %g, eps = %g)", T, eps);
    return -1;
  }
  for (int64_t i = 0; i <= k; i++) t[i] = T + (eps - T) * (double)i / (double)k;
  double mid = 1.4 / 2.4;
  if (imm && k == 2 && mid < T && mid > eps) t[1] = mid;
  t[k] = eps;
  return 0;
}

/* ---- sampling ---------------------------------------------------------------------------- */
typedef struct {
  const GrEntryInfo *e;
  int64_t ns, row; /* compile-time sampling batch, values per sample */
} Sampler;

static int sampler_check(const GrModuleInfo *m, Sampler *sp) {
  const GrEntryInfo *e = gr_find_entry(m, "sample");
  if (!e) return gr_fail("this program has no entry 'sample' (one sampler step: x, t, s -> x)");
  if (e->ninputs != 3 || e->noutputs < 1 || e->inputs[0].rank < 1 || e->inputs[0].dtype != GR_F32)
    return gr_fail("entry 'sample' must be (x: f32[Ns, ...], t: f32[Ns], s: f32[Ns]) -> f32[Ns, ...]");
  sp->e = e;
  sp->ns = e->inputs[0].dims[0];
  sp->row = gr_numel(&e->inputs[0]) / (sp->ns ? sp->ns : 1);
  for (int i = 1; i < 3; i++)
    if (e->inputs[i].dtype != GR_F32 || gr_numel(&e->inputs[i]) != sp->ns)
      return gr_fail("entry 'sample': input %d must be f32[%lld] (a time per sample)", i, (long long)sp->ns);
  if (gr_numel(&e->outputs[0]) != sp->ns * sp->row || e->outputs[0].dtype != GR_F32)
    return gr_fail("entry 'sample' must return x with the shape of its input x");
  return 0;
}

/* The sampler's start noise x[i] = sigma_d z(off + i), z from gr_normal_fill_fast_f32
 * (rng_fast.c: four normals per Philox block, f32), in blocks over the pool. Each value
 * depends on its index only. */
#define NOISE_BLOCK 1024
typedef struct {
  float *x;
  int64_t n;
  uint64_t off, seed;
  double sigma_d;
} NoiseEnv;

static void noise_blocks(void *env, int64_t lo, int64_t hi) {
  const NoiseEnv *ne = env;
  int64_t i0 = lo * NOISE_BLOCK, i1 = hi * NOISE_BLOCK < ne->n ? hi * NOISE_BLOCK : ne->n;
  if (i1 > i0)
    gr_normal_fill_fast_f32(ne->x + i0, i1 - i0, ne->seed, 0, GR_STREAM_SAMPLE_INIT,
                            ne->off + (uint64_t)i0, (float)ne->sigma_d);
}

/* Runs the K-step sampler for n samples into out [n, row] with weights w. */
static int run_sampler(const GrOpts *o, const Sampler *sp, float *const *w, int64_t k,
                       int64_t n, float *out, GrPool *pool) {
  char err[256];
  double *t = malloc((size_t)(k + 1) * sizeof *t);
  if (!t) return gr_fail("out of memory");
  if (gr_sample_times(o->sampler, k, o->T, o->eps, t, err, sizeof err)) {
    free(t);
    return gr_fail("%s", err);
  }
  int64_t ns = sp->ns, row = sp->row;
  float *x = gr_alloc((size_t)(ns * row) * 4), *y = gr_alloc((size_t)(ns * row) * 4);
  float *tt = gr_alloc((size_t)ns * 4), *ss = gr_alloc((size_t)ns * 4);
  void *ws = gr_alloc((size_t)(sp->e->workspace_bytes > 0 ? sp->e->workspace_bytes : 64));
  int r = 0;
  if (!x || !y || !tt || !ss || !ws) r = gr_fail("out of memory");
  for (int64_t c0 = 0; r == 0 && c0 < n; c0 += ns) {
    int64_t valid = n - c0 < ns ? n - c0 : ns;
    memset(x, 0, (size_t)(ns * row) * 4);
    NoiseEnv ne = {x, valid * row, (uint64_t)(c0 * row), o->seed, o->sigma_d};
    GrRunCtx prc = {.pool = pool};
    gr_parallel_for(&prc, (ne.n + NOISE_BLOCK - 1) / NOISE_BLOCK, 8, noise_blocks, &ne);
    for (int64_t st = 0; st < k; st++) {
      if (o->restart && st > 0)
        for (int64_t i = 0; i < valid * row; i++) {
          float z = gr_normal_f32(o->seed, (uint64_t)st, GR_STREAM_SAMPLE_NOISE, (uint64_t)(c0 * row + i));
          x[i] = gr_interp_ot(x[i], z, t[st], o->sigma_d);
        }
      double to = o->restart ? o->eps : t[st + 1];
      for (int64_t i = 0; i < ns; i++) tt[i] = (float)t[st], ss[i] = (float)to;
      /* draws inside the entry: a fresh counter step per (chunk, stage) */
      GrRunCtx rc = {.seed = o->seed, .step = (uint64_t)(c0 / ns * k + st), .pool = pool};
      void *in[3] = {x, tt, ss}, *outs[1] = {y};
      void **many = NULL;
      if (sp->e->noutputs > 1) { /* extra outputs: give them scratch */
        many = calloc((size_t)sp->e->noutputs, sizeof *many);
        for (int q = 0; many && q < sp->e->noutputs; q++)
          many[q] = q ? gr_alloc((size_t)gr_numel(&sp->e->outputs[q]) * gr_dtype_size(sp->e->outputs[q].dtype) + 8) : y;
      }
      gr_call_entry(sp->e, o->m, in, (void *const *)w, many ? many : outs, ws, &rc);
      if (many) {
        for (int q = 1; q < sp->e->noutputs; q++) gr_free(many[q]);
        free(many);
      }
      memcpy(x, y, (size_t)(ns * row) * 4);
    }
    memcpy(out + c0 * row, x, (size_t)(valid * row) * 4);
  }
  gr_free(x), gr_free(y), gr_free(tt), gr_free(ss), gr_free(ws);
  free(t);
  return r;
}

static int load_weights(GrOpts *o, GrState *s) {
  char err[1024];
  if (gr_state_alloc(s, o->m)) return gr_fail("cannot allocate the parameters");
  uint64_t seed;
  if (access(o->ckpt, F_OK) != 0)
    return gr_fail("no checkpoint %s (train first: %s train --ckpt %s, or pass --ckpt FILE)", o->ckpt,
                 o->prog, o->ckpt);
  if (gr_state_load(s, o, o->ckpt, 0, &seed, err, sizeof err)) return gr_fail("%s", err);
  return 0;
}

/* The sampler's weights: EMA unless --no-ema. */
static float *const *sampling_weights(const GrOpts *o, const GrState *s) {
  return o->no_ema ? s->w : s->ema;
}

static int is_image_row(int64_t row, int *h, int *w) {
  int64_t r = (int64_t)(sqrt((double)row) + 0.5);
  if (r * r != row || r < 4) return 0;
  *h = *w = (int)r;
  return 1;
}

static int write_png(const GrOpts *o, const float *xs, int64_t n, int64_t row) {
  char err[1024];
  int h, w;
  if (row == 2) {
    if (gr_png_scatter(o->png, xs, n, err, sizeof err)) return gr_fail("%s", err);
  } else if (is_image_row(row, &h, &w)) {
    if (gr_png_grid(o->png, xs, n, h, w, err, sizeof err)) return gr_fail("%s", err);
  } else return gr_fail("--png: samples of %lld values are neither 2-D points nor square images", (long long)row);
  return 0;
}

int gr_cmd_sample(GrOpts *o) {
  char err[1024];
  Sampler sp;
  int64_t k = o->steps_given ? o->steps : (int64_t)gr_const_num(o->m, "sample_steps", 1);
  if (sampler_check(o->m, &sp)) return 1;
  if (o->n <= 0) return gr_fail("sample: -n N (N > 0) is required");
  if (!o->out) return gr_fail("sample: --out FILE.npy is required");
  if (gr_check_writable(o->out, err, sizeof err)) return gr_fail("%s", err);
  GrState s;
  if (load_weights(o, &s)) {
    gr_state_free(&s);
    return 1;
  }
  GrTensor t = {GR_F32, sp.e->inputs[0].rank, {0}, NULL};
  memcpy(t.dims, sp.e->inputs[0].dims, sizeof t.dims);
  t.dims[0] = o->n;
  t.data = gr_alloc((size_t)(o->n * sp.row) * 4);
  int r = 1;
  GrPool *pool = gr_pool_create(o->threads);
  if (!t.data) gr_fail("out of memory");
  else if (run_sampler(o, &sp, sampling_weights(o, &s), k, o->n, t.data, pool) == 0) {
    if (gr_npy_write(o->out, &t, err, sizeof err)) gr_fail("%s", err);
    else if (!o->png || write_png(o, t.data, o->n, sp.row) == 0) {
      r = 0;
      if (!o->quiet)
        printf("wrote %lld samples (%lld step%s, %s weights) to %s\n", (long long)o->n, (long long)k,
               k == 1 ? "" : "s", o->no_ema ? "raw" : "EMA", o->out);
    }
  }
  gr_pool_destroy(pool);
  gr_free(t.data);
  gr_state_free(&s);
  return r;
}

/* ---- eval -------------------------------------------------------------------------------- */
typedef struct {
  char label[16];
  double energy, mmd[4], sw2, fd; /* fd: NAN when not computed (d > 64) */
} EvalRow;

static const double mmd_scale[4] = {0.1, 0.5, 1, 2};

/* Frechet distance between Gaussian fits of x and y (raw space), for d <= 64 where the
 * covariance eigen-solves are cheap; NAN otherwise. */
static double frechet_of(const float *x, const float *y, int64_t n, int64_t d) {
  if (d > 64 || n < 2) return NAN;
  size_t dd = (size_t)(d * d);
  double *m1 = malloc((size_t)d * sizeof *m1), *m2 = malloc((size_t)d * sizeof *m2);
  double *c1 = malloc(dd * sizeof *c1), *c2 = malloc(dd * sizeof *c2);
  double r = NAN;
  if (m1 && m2 && c1 && c2) {
    gr_mean_cov(x, n, (int)d, m1, c1);
    gr_mean_cov(y, n, (int)d, m2, c2);
    r = gr_frechet(m1, c1, m2, c2, (int)d);
    if (r < 0 && r > -1e-9) r = 0;
  }
  free(m1), free(m2), free(c1), free(c2);
  return r;
}

static int eval_metrics(const float *x, const float *y, int64_t n, int64_t d, double med,
                        uint64_t seed, EvalRow *r, GrPool *pool) {
  double h[4];
  for (int b = 0; b < 4; b++) h[b] = mmd_scale[b] * med;
  GrRunCtx rc = {.seed = seed, .step = 0, .pool = pool};
  if (gr_energy_mmd(x, n, y, n, d, h, 4, &r->energy, r->mmd, &rc)) return gr_fail("out of memory");
  r->sw2 = gr_sliced_w2(x, y, n, d, 128, seed);
  r->fd = frechet_of(x, y, n, d);
  return 0;
}

static int parse_steps_list(const char *s, int64_t *ks, int max) {
  int n = 0;
  while (s && *s) {
    char *e;
    long long v = strtoll(s, &e, 10);
    if (e == s || v < 1 || n == max) return -1;
    ks[n++] = v;
    s = *e == ',' ? e + 1 : e;
    if (*e && *e != ',') return -1;
  }
  return n;
}

static void eval_print(const GrOpts *o, const EvalRow *rows, int nr, int64_t n, double med) {
  if (o->json) {
    printf("{\"n\": %lld, \"median_dist\": %.9g, \"mmd_bandwidths\": [%.9g, %.9g, %.9g, %.9g], \"rows\": [",
           (long long)n, med, 0.1 * med, 0.5 * med, med, 2 * med);
    for (int i = 0; i < nr; i++)
    {
      char fd[32];
      if (isnan(rows[i].fd)) snprintf(fd, sizeof fd, "null");
      else snprintf(fd, sizeof fd, "%.9g", rows[i].fd);
      printf("%s{\"steps\": \"%s\", \"energy\": %.9g, \"mmd\": [%.9g, %.9g, %.9g, %.9g], \"sw2\": %.9g, \"fd\": %s}",
             i ? ", " : "", rows[i].label, rows[i].energy, rows[i].mmd[0], rows[i].mmd[1], rows[i].mmd[2],
             rows[i].mmd[3], rows[i].sw2, fd);
    }
    printf("]}\n");
    return;
  }
  printf("n = %lld samples vs %lld held-out rows; MMD bandwidths = {0.1, 0.5, 1, 2} x median distance %.4g\n",
         (long long)n, (long long)n, med);
  printf("%-6s %12s %12s %12s %12s %12s %12s %12s\n", "steps", "energy", "mmd@0.1", "mmd@0.5", "mmd@1",
         "mmd@2", "sw2", "fd");
  for (int i = 0; i < nr; i++)
    printf("%-6s %12.6g %12.6g %12.6g %12.6g %12.6g %12.6g %12.6g\n", rows[i].label, rows[i].energy,
           rows[i].mmd[0], rows[i].mmd[1], rows[i].mmd[2], rows[i].mmd[3], rows[i].sw2, rows[i].fd);
}

/* eval --png P.png: the samples of each step count K into P_K.png. */
static int eval_png(const GrOpts *o, const float *x, int64_t n, int64_t row, int64_t k) {
  char path[1100];
  size_t len = strlen(o->png);
  if (len > 4 && strcmp(o->png + len - 4, ".png") == 0) len -= 4;
  snprintf(path, sizeof path, "%.*s_%lld.png", (int)len, o->png, (long long)k);
  GrOpts po = *o;
  po.png = path;
  return write_png(&po, x, n, row);
}

int gr_cmd_eval(GrOpts *o) {
  char err[1024];
  Sampler sp;
  int64_t ks[32];
  int nk = parse_steps_list(o->steps_list ? o->steps_list : "1,2,4", ks, 32);
  if (nk <= 0) return gr_fail("--steps: expected a list of positive step counts like 1,2,4,8");
  if (sampler_check(o->m, &sp)) return 1;
  int64_t n = o->n > 0 ? o->n : 1000;
  GrData held, train;
  const char *src = o->eval_data ? o->eval_data : o->data;
  if (gr_data_open(&held, src, o->seed, 1, err, sizeof err)) return gr_fail("%s", err);
  if (gr_data_open(&train, o->data, o->seed, 0, err, sizeof err)) {
    gr_data_close(&held);
    return gr_fail("%s", err);
  }
  GrState s;
  int r = 1;
  float *y = gr_alloc((size_t)(n * sp.row) * 4), *x = gr_alloc((size_t)(n * sp.row) * 4);
  EvalRow *rows = calloc((size_t)nk + 1, sizeof *rows);
  GrPool *pool = gr_pool_create(o->threads);
  if (held.row_elems != sp.row || train.row_elems != sp.row)
    gr_fail("data '%s' has rows of %lld values but the samples have %lld", src, (long long)held.row_elems, (long long)sp.row);
  else if (!x || !y || !rows) gr_fail("out of memory");
  else if (load_weights(o, &s) == 0) {
    if (gr_data_rows(&held, 0, n, y, NULL, err, sizeof err) || gr_data_rows(&train, 0, n, x, NULL, err, sizeof err))
      gr_fail("%s", err);
    else {
      double med = gr_median_dist(y, n, sp.row);
      snprintf(rows[0].label, sizeof rows[0].label, "data");
      int ok = eval_metrics(x, y, n, sp.row, med, o->seed, &rows[0], pool) == 0;
      for (int i = 0; ok && i < nk; i++) {
        ok = run_sampler(o, &sp, sampling_weights(o, &s), ks[i], n, x, pool) == 0;
        snprintf(rows[i + 1].label, sizeof rows[i + 1].label, "%lld", (long long)ks[i]);
        if (ok) ok = eval_metrics(x, y, n, sp.row, med, o->seed, &rows[i + 1], pool) == 0;
        if (ok && o->png) ok = eval_png(o, x, n, sp.row, ks[i]) == 0;
      }
      if (ok) {
        eval_print(o, rows, nk + 1, n, med);
        r = 0;
      }
    }
    gr_state_free(&s);
  } else gr_state_free(&s);
  gr_pool_destroy(pool);
  gr_free(x), gr_free(y), free(rows);
  gr_data_close(&held), gr_data_close(&train);
  return r;
}

/* ---- gradcheck ---------------------------------------------------------------------------- */
/* The numeric side differentiates `l`. When the program carries loss_held_f64 and
 * loss_frozen_f64 (gradc build adds them), `l` is the frozen loss: every stop_grad value
 * is an extra input, filled once from loss_held_f64 at the base point, so the difference
 * treats stop_grad values as constants exactly as the derived gradient does (IMM's target
 * branch is the same network under stop_grad; a plain difference would see it move). */
typedef struct {
  const GrOpts *o;
  const GrEntryInfo *lg, *l; /* loss_grad and (optional) loss */
  const GrEntryInfo *held;   /* loss_held_f64, or NULL */
  int f64;
  void **params;              /* in the entries' dtype */
  void *in[2];
  void **lin;                 /* inputs of l: in[], then the held stop_grad values */
  void **outs;                /* loss_grad outputs */
  void *ws;
  GrPool *pool;
} Gc;

static double gc_loss(Gc *g) {
  GrRunCtx rc = {.seed = g->o->seed, .step = 0, .pool = g->pool};
  if (g->l) {
    double buf[8] = {0};
    void *out[1] = {buf};
    gr_call_entry(g->l, g->o->m, g->lin ? g->lin : g->in, g->params, out, g->ws, &rc);
    return g->f64 ? buf[0] : (double)((float *)buf)[0];
  }
  gr_call_entry(g->lg, g->o->m, g->in, g->params, g->outs, g->ws, &rc);
  return g->f64 ? *(double *)g->outs[0] : (double)*(float *)g->outs[0];
}

static int gc_setup(Gc *g, GrState *s, GrData *d) {
  const GrModuleInfo *m = g->o->m;
  const GrEntryInfo *e = g->lg;
  char err[512];
  size_t esz = g->f64 ? 8 : 4;
  if (e->ninputs < 1 || e->ninputs > 2 || e->noutputs != 1 + m->nparams)
    return gr_fail("entry %s must take (batch[, labels]) and return the loss and one gradient per parameter", e->name);
  int64_t B = e->inputs[0].dims[0], row = gr_numel(&e->inputs[0]) / (B ? B : 1);
  if (row != d->row_elems) return gr_fail("data '%s' has rows of %lld values, the model's input %lld", d->name, (long long)d->row_elems, (long long)row);
  float *xf = gr_alloc((size_t)(B * row) * 4 + 4);
  int32_t *lab = gr_alloc((size_t)B * 4 + 4);
  g->in[0] = gr_alloc((size_t)(B * row) * esz + 8);
  g->in[1] = lab;
  g->params = calloc((size_t)m->nparams + 1, sizeof *g->params);
  g->outs = calloc((size_t)m->nparams + 1, sizeof *g->outs);
  int64_t wsb = e->workspace_bytes;
  if (g->l && g->l->workspace_bytes > wsb) wsb = g->l->workspace_bytes;
  g->ws = gr_alloc((size_t)(wsb > 0 ? wsb : 64));
  if (!xf || !lab || !g->in[0] || !g->params || !g->outs || !g->ws) return gr_fail("out of memory");
  int r = gr_data_rows(d, 0, B, xf, lab, err, sizeof err);
  for (int64_t i = 0; i < B * row; i++) {
    if (g->f64) ((double *)g->in[0])[i] = xf[i];
    else ((float *)g->in[0])[i] = xf[i];
  }
  gr_free(xf);
  if (r) return gr_fail("%s", err);
  g->outs[0] = gr_alloc(16);
  for (int i = 0; i < m->nparams; i++) {
    g->params[i] = gr_alloc((size_t)s->numel[i] * esz + 8);
    g->outs[1 + i] = gr_alloc((size_t)s->numel[i] * esz + 8);
    if (!g->params[i] || !g->outs[1 + i] || !g->outs[0]) return gr_fail("out of memory");
    for (int64_t k = 0; k < s->numel[i]; k++) {
      if (g->f64) ((double *)g->params[i])[k] = s->w[i][k];
      else ((float *)g->params[i])[k] = s->w[i][k];
    }
  }
  return 0;
}

/* Fills g->lin: the loss inputs, then the stop_grad values of loss_held_f64 at the
 * current parameters. */
static int gc_hold(Gc *g) {
  const GrEntryInfo *h = g->held;
  int nin = h->ninputs, nheld = h->noutputs - 1;
  if (g->l->ninputs != nin + nheld) return gr_fail("entries %s and %s do not match", h->name, g->l->name);
  g->lin = calloc((size_t)(nin + nheld) + 1, sizeof *g->lin);
  void **hout = calloc((size_t)h->noutputs + 1, sizeof *hout);
  if (!g->lin || !hout) return free(hout), gr_fail("out of memory");
  for (int i = 0; i < nin; i++) g->lin[i] = g->in[i];
  int64_t wsb = h->workspace_bytes > 64 ? h->workspace_bytes : 64;
  void *ws = gr_alloc((size_t)wsb);
  int bad = !ws;
  for (int j = 0; j < h->noutputs && !bad; j++) {
    hout[j] = gr_alloc((size_t)gr_numel(&h->outputs[j]) * gr_dtype_size(h->outputs[j].dtype) + 8);
    bad = !hout[j];
  }
  if (!bad) {
    GrRunCtx rc = {.seed = g->o->seed, .step = 0, .pool = g->pool};
    gr_call_entry(h, g->o->m, g->in, g->params, hout, ws, &rc);
    for (int j = 0; j < nheld; j++) g->lin[nin + j] = hout[1 + j];
  }
  gr_free(ws);
  gr_free(hout[0]);
  if (bad)
    for (int j = 1; j < h->noutputs; j++) gr_free(hout[j]);
  free(hout);
  return bad ? gr_fail("out of memory") : 0;
}

static void gc_free(Gc *g, int np) {
  if (g->lin && g->held)
    for (int j = g->held->ninputs; j < g->l->ninputs; j++) gr_free(g->lin[j]);
  free(g->lin);
  gr_free(g->in[0]), gr_free(g->in[1]), gr_free(g->ws);
  for (int i = 0; g->params && i < np; i++) gr_free(g->params[i]);
  for (int i = 0; g->outs && i <= np; i++) gr_free(g->outs[i]);
  free(g->params), free(g->outs);
}

/* Central difference at (param p, element k); the parameter is restored afterwards. */
static double gc_fd(Gc *g, int p, int64_t k, double h) {
  double lp, lm, step;
  if (g->f64) {
    double *v = (double *)g->params[p] + k, v0 = *v;
    *v = v0 + h, lp = gc_loss(g);
    *v = v0 - h, lm = gc_loss(g);
    *v = v0;
    step = 2 * h;
  } else {
    float *v = (float *)g->params[p] + k, v0 = *v;
    float a = (float)(v0 + h), b = (float)(v0 - h);
    *v = a, lp = gc_loss(g);
    *v = b, lm = gc_loss(g);
    *v = v0;
    step = (double)a - (double)b;
  }
  return (lp - lm) / step;
}

static int gc_run(Gc *g, GrState *s) {
  const GrModuleInfo *m = g->o->m;
  int64_t total = 0;
  for (int i = 0; i < m->nparams; i++) total += s->numel[i];
  if (total == 0) return gr_fail("the program has no parameters to check");
  GrRunCtx rc = {.seed = g->o->seed, .step = 0, .pool = g->pool};
  gr_call_entry(g->lg, m, g->in, g->params, g->outs, g->ws, &rc);
  double L = g->f64 ? *(double *)g->outs[0] : (double)*(float *)g->outs[0];
  /* the analytic gradient, saved before finite differences reuse the outputs */
  int64_t ncoord = g->o->n > 0 ? g->o->n : 16;
  double tol = g->o->tol > 0 ? g->o->tol : g->f64 ? 1e-5 : 2e-2;
  double h = g->f64 ? 1e-6 : 1e-2, worst = 0;
  /* Errors are relative to max(|numeric|, |analytic|, floor). The finite difference
   * carries rounding noise of about 4 u |L| / h (a few units of roundoff u in each loss
   * evaluation, divided by 2h); floor = noise / tol, so noise alone stays within the
   * tolerance and tiny gradient components of a large f32 loss are not flagged. */
  double u = g->f64 ? 2.220446049250313e-16 : 1.1920929e-07;
  double atol = 4.0 * u * fmax(fabs(L), 1e-30) / h / tol;
  double *an = malloc((size_t)ncoord * sizeof *an);
  int *pp = malloc((size_t)ncoord * sizeof *pp);
  int64_t *kk = malloc((size_t)ncoord * sizeof *kk);
  if (!an || !pp || !kk) {
    free(an), free(pp), free(kk);
    return gr_fail("out of memory");
  }
  for (int64_t c = 0; c < ncoord; c++) {
    int64_t gi = (int64_t)(gr_uniform_f64(g->o->seed, (uint64_t)c, GR_STREAM_GRADCHECK, 0) * (double)total);
    int p = 0;
    while (gi >= s->numel[p]) gi -= s->numel[p++];
    pp[c] = p, kk[c] = gi;
    an[c] = g->f64 ? ((double *)g->outs[1 + p])[gi] : (double)((float *)g->outs[1 + p])[gi];
  }
  printf("gradient check (%s, h = %g, %lld coordinates, tolerance %g, loss %.6g, noise floor %.3g)\n",
         g->f64 ? "f64" : "f32", h, (long long)ncoord, tol, L, atol);
  printf("  %-32s %8s %14s %14s %10s\n", "parameter", "index", "analytic", "numeric", "rel.err");
  for (int64_t c = 0; c < ncoord; c++) {
    double num = gc_fd(g, pp[c], kk[c], h);
    double den = fmax(fmax(fabs(num), fabs(an[c])), atol);
    double rel = fabs(num - an[c]) / den;
    if (!(rel <= worst)) worst = rel; /* NaN counts as worst */
    printf("  %-32s %8lld %14.7g %14.7g %10.3g\n", m->params[pp[c]].name, (long long)kk[c], an[c], num, rel);
  }
  free(an), free(pp), free(kk);
  int ok = worst <= tol;
  printf("worst relative error %.3g: %s\n", worst, ok ? "ok" : "FAILED");
  return ok ? 0 : 1;
}

int gr_cmd_gradcheck(GrOpts *o) {
  char err[1024];
  const GrModuleInfo *m = o->m;
  Gc g = {.o = o};
  g.lg = gr_find_entry(m, "loss_grad_f64");
  g.l = gr_find_entry(m, "loss_f64");
  g.f64 = g.lg != NULL;
  if (g.f64 && gr_find_entry(m, "loss_frozen_f64") && gr_find_entry(m, "loss_held_f64")) {
    g.l = gr_find_entry(m, "loss_frozen_f64");
    g.held = gr_find_entry(m, "loss_held_f64");
  }
  if (!g.f64) {
    g.lg = gr_find_entry(m, "loss_grad");
    g.l = gr_find_entry(m, "loss");
  }
  if (!g.lg) return gr_fail("this program has no entry 'loss_grad' to check");
  GrState s;
  if (gr_state_alloc(&s, m)) {
    gr_state_free(&s);
    return gr_fail("cannot allocate the parameters");
  }
  FILE *probe = o->ckpt ? fopen(o->ckpt, "rb") : NULL;
  if (probe) { /* the checkpoint's parameters when there is one, else the initial ones */
    fclose(probe);
    if (gr_state_load(&s, o, o->ckpt, 0, NULL, err, sizeof err)) {
      gr_state_free(&s);
      return gr_fail("%s", err);
    }
  } else
    for (int i = 0; i < m->nparams; i++) gr_init_param(&m->params[i], i, o->seed, s.w[i]);
  GrData d;
  if (gr_data_open(&d, o->data, o->seed, 0, err, sizeof err)) {
    gr_state_free(&s);
    return gr_fail("%s", err);
  }
  g.pool = gr_pool_create(o->threads);
  int r = gc_setup(&g, &s, &d) || (g.held && gc_hold(&g)) ? 1 : gc_run(&g, &s);
  gc_free(&g, m->nparams);
  gr_pool_destroy(g.pool);
  gr_data_close(&d);
  gr_state_free(&s);
  return r;
}
