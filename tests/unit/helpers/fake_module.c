/* fake_module.c: see fake_module.h. Shapes: x [B, 2], W [2, 2], b [2]. */
#include <math.h>
#include <signal.h>
#include <string.h>

#include "fake_module.h"
#include "philox.h"

#define SIGMA 0.1

static const GrTensorInfo fake_params[2] = {
    {"net.w", GR_F32, 2, {2, 2}, GR_INIT_GLOROT, 0, 0, 2, 2},
    {"net.b", GR_F32, 1, {2}, GR_INIT_ZEROS, 0, 0, 2, 2},
};

static const GrConstInfo fake_consts[] = {
    {"B", 0, FAKE_B, NULL},          {"D", 0, 2, NULL},
    {"data", 1, 0, "checkerboard"}, {"lr", 0, 0.05, NULL},
    {"optimizer", 1, 0, "adam"},    {"ema", 0, 0.9, NULL},
    {"steps", 0, 60, NULL},         {"ckpt_every", 0, 20, NULL},
    {"sigma_d", 0, 0.5, NULL},      {"T", 0, 1.0, NULL},
    {"sampler", 1, 0, "imm"},
};

static const GrTensorInfo in_x[1] = {{"x", GR_F32, 2, {FAKE_B, 2}, 0, 0, 0, 0, 0}};
static const GrTensorInfo in_xl[2] = {{"x", GR_F32, 2, {FAKE_B, 2}, 0, 0, 0, 0, 0},
                                      {"labels", GR_I32, 1, {FAKE_B}, 0, 0, 0, 0, 0}};
static const GrTensorInfo in_x64[1] = {{"x", GR_F64, 2, {FAKE_B, 2}, 0, 0, 0, 0, 0}};
static const GrTensorInfo out_lg[3] = {{"loss", GR_F32, 0, {0}, 0, 0, 0, 0, 0},
                                       {"d.net.w", GR_F32, 2, {2, 2}, 0, 0, 0, 0, 0},
                                       {"d.net.b", GR_F32, 1, {2}, 0, 0, 0, 0, 0}};
static const GrTensorInfo out_lg64[3] = {{"loss", GR_F64, 0, {0}, 0, 0, 0, 0, 0},
                                         {"d.net.w", GR_F64, 2, {2, 2}, 0, 0, 0, 0, 0},
                                         {"d.net.b", GR_F64, 1, {2}, 0, 0, 0, 0, 0}};
static const GrTensorInfo in_s[3] = {{"x", GR_F32, 2, {FAKE_NS, 2}, 0, 0, 0, 0, 0},
                                     {"t", GR_F32, 1, {FAKE_NS}, 0, 0, 0, 0, 0},
                                     {"s", GR_F32, 1, {FAKE_NS}, 0, 0, 0, 0, 0}};

typedef struct {
  int f64;
  const void *x;
  double w[4], b[2];
  double *z, *r; /* workspace [B, 2] each */
  const GrRunCtx *rc;
} Rows;

static double ld(const void *p, int f64, int64_t i) {
  return f64 ? ((const double *)p)[i] : (double)((const float *)p)[i];
}

static void st(void *p, int f64, int64_t i, double v) {
  if (f64) ((double *)p)[i] = v;
  else ((float *)p)[i] = (float)v;
}

/* rows [lo, hi): z = x + sigma n, r = z W + b - x */
static void rows_body(void *env, int64_t lo, int64_t hi) {
  Rows *e = env;
  for (int64_t i = lo; i < hi; i++) {
    for (int c = 0; c < 2; c++) {
      double n = gr_normal_f64(e->rc->seed, e->rc->step, 1, (uint64_t)(i * 2 + c));
      e->z[i * 2 + c] = ld(e->x, e->f64, i * 2 + c) + SIGMA * n;
    }
    for (int c = 0; c < 2; c++)
      e->r[i * 2 + c] = e->z[i * 2] * e->w[c] + e->z[i * 2 + 1] * e->w[2 + c] + e->b[c] -
                        ld(e->x, e->f64, i * 2 + c);
  }
}

/* args: x, W, b, outputs...; grad != 0: outputs loss, gW, gb */
static void fake_loss_core(void **args, void *ws, const GrRunCtx *rc, int f64, int grad,
                           int nan5, double wscale) {
  Rows e = {f64, args[0], {0}, {0}, ws, (double *)ws + FAKE_B * 2, rc};
  for (int k = 0; k < 4; k++) e.w[k] = ld(args[1], f64, k);
  for (int k = 0; k < 2; k++) e.b[k] = ld(args[2], f64, k);
  gr_parallel_for(rc, FAKE_B, 8, rows_body, &e);
  double L = 0, gw[4] = {0}, gb[2] = {0};
  for (int64_t i = 0; i < FAKE_B; i++)
    for (int c = 0; c < 2; c++) {
      double r = e.r[i * 2 + c];
      L += r * r;
      gb[c] += r / FAKE_B;
      gw[c] += e.z[i * 2] * r / FAKE_B;
      gw[2 + c] += e.z[i * 2 + 1] * r / FAKE_B;
    }
  L /= 2.0 * FAKE_B;
  if (nan5 && rc->step >= 5) L = NAN;
  st(args[3], f64, 0, L);
  if (!grad) return;
  for (int k = 0; k < 4; k++) st(args[4], f64, k, gw[k] * wscale);
  for (int k = 0; k < 2; k++) st(args[5], f64, k, gb[k]);
}

static void e_loss_grad(void **a, void *ws, const GrRunCtx *rc) { fake_loss_core(a, ws, rc, 0, 1, 0, 1); }
static void e_loss(void **a, void *ws, const GrRunCtx *rc) { fake_loss_core(a, ws, rc, 0, 0, 0, 1); }
static void e_loss_grad64(void **a, void *ws, const GrRunCtx *rc) { fake_loss_core(a, ws, rc, 1, 1, 0, 1); }
static void e_loss64(void **a, void *ws, const GrRunCtx *rc) { fake_loss_core(a, ws, rc, 1, 0, 0, 1); }
static void e_loss_grad_nan(void **a, void *ws, const GrRunCtx *rc) { fake_loss_core(a, ws, rc, 0, 1, 1, 1); }
static void e_loss_grad_int(void **a, void *ws, const GrRunCtx *rc) {
  fake_loss_core(a, ws, rc, 0, 1, 0, 1);
  if (rc->step == 3) raise(SIGINT);
}
static void e_loss_grad_bad(void **a, void *ws, const GrRunCtx *rc) { fake_loss_core(a, ws, rc, 0, 1, 0, 1.5); }

/* args: x, t, s, W, b, out: out = x + (s - t)(x W + b) */
/* args: x, labels, W, b, loss, gW, gb */
static void e_loss_grad_labels(void **a, void *ws, const GrRunCtx *rc) {
  const float *x = a[0];
  const int32_t *lab = a[1];
  void *rest[6] = {a[0], a[2], a[3], a[4], a[5], a[6]};
  fake_loss_core(rest, ws, rc, 0, 1, 0, 1);
  double s = sqrt(3.0) / 4; /* checkerboard scale (docs/runtime.md) */
  for (int i = 0; i < FAKE_B; i++) {
    int cx = (int)floor(x[2 * i] / s) + 2, cy = (int)floor(x[2 * i + 1] / s) + 2;
    if (lab[i] != 4 * cy + cx) *(float *)a[4] = NAN;
  }
}

static void e_sample(void **a, void *ws, const GrRunCtx *rc) {
  const float *x = a[0], *t = a[1], *s = a[2], *w = a[3], *b = a[4];
  float *y = a[5];
  for (int i = 0; i < FAKE_NS; i++)
    for (int c = 0; c < 2; c++) {
      double v = (double)x[i * 2] * w[c] + (double)x[i * 2 + 1] * w[2 + c] + b[c];
      y[i * 2 + c] = (float)(x[i * 2 + c] + ((double)s[i] - t[i]) * v);
    }
}

#define WS (int64_t)(FAKE_B * 2 * 2 * sizeof(double))

void fake_module_make(GrModuleInfo *m, GrEntryInfo *en, FakeVariant v) {
  int n = 0;
  GrEntryFn lg = v == FAKE_NAN_AT_5 ? e_loss_grad_nan : v == FAKE_BAD_GRAD ? e_loss_grad_bad
               : v == FAKE_SIGINT_AT_3 ? e_loss_grad_int : e_loss_grad;
  if (v == FAKE_LABELS) en[n++] = (GrEntryInfo){"loss_grad", 2, 3, in_xl, out_lg, WS, 1000, e_loss_grad_labels};
  else en[n++] = (GrEntryInfo){"loss_grad", 1, 3, in_x, out_lg, WS, 1000, lg};
  en[n++] = (GrEntryInfo){"loss", 1, 1, in_x, out_lg, WS, 500, e_loss};
  en[n++] = (GrEntryInfo){"sample", 3, 1, in_s, in_s, 0, 100, e_sample};
  if (v == FAKE_WITH_F64) {
    en[n++] = (GrEntryInfo){"loss_grad_f64", 1, 3, in_x64, out_lg64, WS, 1000, e_loss_grad64};
    en[n++] = (GrEntryInfo){"loss_f64", 1, 1, in_x64, out_lg64, WS, 500, e_loss64};
  }
  memset(m, 0, sizeof *m);
  m->abi_version = GR_ABI_VERSION;
  m->source_name = "tests/fake_denoiser.grad";
  m->graph_hash = v == FAKE_FOREIGN ? "feedfacefeedface" : "0123456789abcdef";
  m->nparams = 2;
  m->nconsts = (int32_t)(sizeof fake_consts / sizeof *fake_consts);
  m->nentries = n;
  m->params = fake_params;
  m->consts = fake_consts;
  m->entries = en;
}
