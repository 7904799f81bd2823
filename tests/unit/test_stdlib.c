/* test_stdlib.c: the standard library's formulas against closed forms computed in C.
 *
 * Why: the golden test (test_imm_golden.c) covers one configuration (OT-FM, Euler-FM,
 * Laplace, V-statistic). This suite covers the rest of the surface the graphs rely on,
 * each against an independent C expression or an invariant that a wrong formula breaks:
 * both schedules (alpha, sigma, eta, eta^-1, lambda, -dlambda/dt, derivatives, c_in), DDIM
 * self-consistency and exactness on the true noise (argument order!), r(s, t) in f64 with
 * and without a minimum gap, the weight for both published (a, b) settings, c_skip/c_out
 * of both parameterizations, every kernel, V/U estimators (MMD(P, P) = 0, symmetry), the
 * M = 1 consistency form, the stop-gradient on the target branch (parameter gradients of
 * the loss equal those of the same loss with the target given as data, and sum(y_r) has
 * exactly zero gradient), samplers and the nn blocks.
 *
 * The programs are tests/stdlib/{schedules,losses}.grad, compiled with promote_f64 so
 * every comparison is in double precision. Run from the repository root.
 */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "autodiff.h"
#include "frontend.h"
#include "gradrt.h"
#include "interp.h"
#include "ir.h"
#include "testutil.h"

#define KT 7 /* times per schedule test (K in schedules.grad) */

typedef TuProg Prog;

static void prog_open(Prog *pg, const char *file, const Define *defs, int ndefs) {
  ck_assert_msg(tu_prog_open(pg, file, defs, ndefs, 1, 7) == 0, "%s does not compile", file);
}

static void prog_close(Prog *pg) { tu_prog_close(pg); }

/* Runs graph g on double arrays (one per input, sized by the input's shape). */
static void run_graph(Prog *pg, const Graph *g, const double *const *ins, GrTensor *outs) {
  GrTensor in[8];
  char err[256];
  ck_assert(g != NULL);
  ck_assert_int_le(g->ninputs, 8);
  for (int i = 0; i < g->ninputs; i++) {
    const GInput *gi = &g->inputs[i];
    ck_assert_int_eq(gi->dtype, DT_F64);
    in[i].dtype = GR_F64;
    in[i].rank = gi->shape.rank;
    for (int d = 0; d < gi->shape.rank; d++) in[i].dims[d] = gi->shape.dims[d];
    int64_t n = shape_numel(&gi->shape);
    in[i].data = gr_alloc((size_t)n * sizeof(double));
    memcpy(in[i].data, ins[i], (size_t)n * sizeof(double));
  }
  int rc = interp_run(g, &pg->p, in, pg->params, outs, 3, 0, err, sizeof err);
  ck_assert_msg(rc == 0, "%s: %s", g->name, err);
  for (int i = 0; i < g->ninputs; i++) gr_tensor_free(&in[i]);
}

static const Graph *entry(const Prog *pg, const char *name) {
  const Graph *g = program_find_entry(&pg->p, name);
  ck_assert_msg(g != NULL, "no entry %s", name);
  return g;
}

static const double *D64(const GrTensor *t) {
  ck_assert_int_eq(t->dtype, GR_F64);
  return (const double *)t->data;
}

static void free_outs(const Graph *g, GrTensor *outs) {
  for (int j = 0; j < g->noutputs; j++) gr_tensor_free(&outs[j]);
}

#define NEAR(got, want, tol, what, i)                                                          \
  ck_assert_msg(fabs((got) - (want)) <= (tol) * (1 + fabs(want)), "%s[%d]: got %.17g want %.17g", \
                (what), (int)(i), (double)(got), (double)(want))

/* ---- schedules -------------------------------------------------------------------------- */

static const double times[KT] = {0.02, 0.15, 0.3, 0.5, 0.65, 0.8, 0.99};

typedef struct {
  double alpha, sigma, eta, eta_inv, lambda, ndl, dalpha, dsigma;
} Sched;

static Sched closed_form(double t, int cosine) {
  Sched s;
  if (cosine) {
    double h = M_PI * t / 2;
    s = (Sched){cos(h), sin(h), tan(h), (2 / M_PI) * atan(t), 2 * log(cos(h) / sin(h)),
                M_PI / (sin(h) * cos(h)), -M_PI / 2 * sin(h), M_PI / 2 * cos(h)};
  } else {
    s = (Sched){1 - t, t, t / (1 - t), t / (1 + t), 2 * log((1 - t) / t), 2 / (t * (1 - t)), -1, 1};
  }
  return s;
}

static void check_schedule(int cosine) {
  Prog pg;
  Define d[] = {{"sched", cosine ? "cosine" : "otfm"}};
  GrTensor o[10];
  const double *in[] = {times};
  prog_open(&pg, "tests/stdlib/schedules.grad", d, 1);
  const Graph *g = entry(&pg, "schedule");
  run_graph(&pg, g, in, o);
  for (int i = 0; i < KT; i++) {
    Sched s = closed_form(times[i], cosine);
    NEAR(D64(&o[0])[i], s.alpha, 1e-13, "alpha", i);
    NEAR(D64(&o[1])[i], s.sigma, 1e-13, "sigma", i);
    NEAR(D64(&o[2])[i], s.eta, 1e-13, "eta", i);
    NEAR(D64(&o[3])[i], s.eta_inv, 1e-13, "eta_inv", i);
    NEAR(D64(&o[4])[i], s.lambda, 1e-13, "lambda", i);
    NEAR(D64(&o[5])[i], s.ndl, 1e-13, "neg_dlambda", i);
    NEAR(D64(&o[6])[i], s.dalpha, 1e-13, "dalpha", i);
    NEAR(D64(&o[7])[i], s.dsigma, 1e-13, "dsigma", i);
    NEAR(D64(&o[8])[i], 1 / (0.5 * sqrt(s.alpha * s.alpha + s.sigma * s.sigma)), 1e-13, "c_in", i);
    NEAR(D64(&o[9])[i], times[i], 1e-12, "eta_inv(eta(t))", i);
    /* -dlambda/dt against a central difference of lambda */
    double h = 1e-6;
    Sched sp = closed_form(times[i] + h, cosine), sm = closed_form(times[i] - h, cosine);
    NEAR(D64(&o[5])[i], -(sp.lambda - sm.lambda) / (2 * h), 1e-6, "neg_dlambda (fd)", i);
  }
  free_outs(g, o);
  prog_close(&pg);
}

START_TEST(schedule_otfm) { check_schedule(0); }
END_TEST

START_TEST(schedule_cosine) { check_schedule(1); }
END_TEST

/* ---- DDIM ---------------------------------------------------------------------------------- */

static void check_ddim(int cosine) {
  enum { N = 5, D = 3 };
  double x[N * D], n[N * D], xt[N * D], s[N], r[N], t[N];
  for (int i = 0; i < N * D; i++) {
    x[i] = sin(1.3 * i + 0.2);
    n[i] = cos(0.7 * i + 1.1);
    xt[i] = 0.4 * sin(2.1 * i);
  }
  for (int i = 0; i < N; i++) {
    t[i] = 0.2 + 0.15 * i;
    r[i] = t[i] * 0.7;
    s[i] = t[i] * 0.25 * (i % 3); /* includes s = 0 */
  }
  Prog pg;
  Define d[] = {{"sched", cosine ? "cosine" : "otfm"}};
  GrTensor o[4];
  const double *in[] = {x, n, xt, s, r, t};
  prog_open(&pg, "tests/stdlib/schedules.grad", d, 1);
  const Graph *g = entry(&pg, "ddim");
  run_graph(&pg, g, in, o);
  for (int i = 0; i < N * D; i++) {
    NEAR(D64(&o[0])[i], D64(&o[1])[i], 1e-13, "ddim(ddim(x_t,x,r,t),x,s,r) vs ddim(x_t,x,s,t)", i);
    NEAR(D64(&o[2])[i], D64(&o[3])[i], 1e-13, "ddim(x_t(n),x,s,t) vs x_s(n)", i);
    int row = i / D;
    Sched a = closed_form(s[row], cosine), b = closed_form(t[row], cosine);
    double want = (a.alpha - b.alpha * a.sigma / b.sigma) * x[i] + a.sigma / b.sigma * xt[i];
    NEAR(D64(&o[1])[i], want, 1e-13, "ddim closed form", i);
  }
  free_outs(g, o);
  prog_close(&pg);
}

START_TEST(ddim_otfm) { check_ddim(0); }
END_TEST

START_TEST(ddim_cosine) { check_ddim(1); }
END_TEST

/* ---- weight, r(s, t), coefficients ------------------------------------------------------- */

static void check_weight(int cosine, const char *a, const char *b) {
  Prog pg;
  Define d[] = {{"sched", cosine ? "cosine" : "otfm"}, {"a", a}, {"b", b}};
  GrTensor o[1];
  double s[KT] = {0};
  const double *in[] = {s, times};
  double A = atof(a), Bw = atof(b);
  prog_open(&pg, "tests/stdlib/schedules.grad", d, 3);
  const Graph *g = entry(&pg, "weight");
  run_graph(&pg, g, in, o);
  for (int i = 0; i < KT; i++) {
    double t = times[i], want;
    if (cosine) {
      Sched c = closed_form(t, 1);
      want = 0.5 / (1 + exp(c.lambda - Bw)) * c.ndl * pow(c.alpha, A) / (c.alpha * c.alpha + c.sigma * c.sigma);
    } else { /* the golden README's closed form for OT-FM */
      double u = 1 - t;
      want = t * pow(u, A - 1) / ((t * t + exp(-Bw) * u * u) * (u * u + t * t));
    }
    NEAR(D64(&o[0])[i], want, 1e-12, "weight", i);
  }
  free_outs(g, o);
  prog_close(&pg);
}

/* rand() draws t = 0 once in 2^24 groups: the weight must be exactly 0 there, not
 * sigmoid(-inf) * inf = NaN (a 20k-step training run hit it at step 19071). */
static void check_weight_at_zero(int cosine) {
  Prog pg;
  Define d[] = {{"sched", cosine ? "cosine" : "otfm"}, {"a", "1.0"}, {"b", "5.0"}};
  GrTensor o[1];
  double zeros[KT] = {0};
  const double *in[] = {zeros, zeros};
  prog_open(&pg, "tests/stdlib/schedules.grad", d, 3);
  const Graph *g = entry(&pg, "weight");
  run_graph(&pg, g, in, o);
  for (int i = 0; i < KT; i++) ck_assert_msg(D64(&o[0])[i] == 0.0, "weight(t = 0) = %g", D64(&o[0])[i]);
  free_outs(g, o);
  prog_close(&pg);
}

START_TEST(weight_zero_at_t0) {
  check_weight_at_zero(0);
  check_weight_at_zero(1);
}
END_TEST

START_TEST(weight_otfm_a1_b5) { check_weight(0, "1.0", "5.0"); }
END_TEST

START_TEST(weight_otfm_a2_b4) { check_weight(0, "2.0", "4.0"); }
END_TEST

START_TEST(weight_cosine_a1_b5) { check_weight(1, "1.0", "5.0"); }
END_TEST

static void check_r(int cosine, const char *min_gap) {
  Prog pg;
  Define d[] = {{"sched", cosine ? "cosine" : "otfm"}, {"min_gap", min_gap},
                {"T", cosine ? "0.996" : "0.994"}};
  GrTensor o[1];
  double t[KT], s[KT], T = cosine ? 0.996 : 0.994, gap = atof(min_gap);
  for (int i = 0; i < KT; i++) {
    t[i] = i == KT - 1 ? T : times[i];
    s[i] = t[i] * (i % 2 ? 0.5 : 0.05);
  }
  const double *in[] = {t, s};
  prog_open(&pg, "tests/stdlib/schedules.grad", d, 3);
  const Graph *g = entry(&pg, "r_from");
  run_graph(&pg, g, in, o);
  double step = closed_form(T, cosine).eta / 4096.0; /* (eta(T) - eta(0)) / 2^12 */
  for (int i = 0; i < KT; i++) {
    double e = closed_form(t[i], cosine).eta - step;
    double r = e < 0 ? s[i] : (cosine ? (2 / M_PI) * atan(e) : e / (1 + e));
    if (gap > 0 && t[i] - gap < r) r = t[i] - gap;
    if (r < s[i]) r = s[i];
    NEAR(D64(&o[0])[i], r, 1e-13, "r", i);
    ck_assert(D64(&o[0])[i] < t[i]);
    ck_assert(D64(&o[0])[i] >= s[i]);
  }
  free_outs(g, o);
  prog_close(&pg);
}

START_TEST(r_otfm) { check_r(0, "0.0"); }
END_TEST

START_TEST(r_cosine_min_gap) { check_r(1, "0.01"); }
END_TEST

static void check_coefs(int cosine) {
  Prog pg;
  Define d[] = {{"sched", cosine ? "cosine" : "otfm"}};
  GrTensor o[4];
  double s[KT];
  for (int i = 0; i < KT; i++) s[i] = times[i] * 0.4;
  const double *in[] = {s, times};
  prog_open(&pg, "tests/stdlib/schedules.grad", d, 1);
  const Graph *g = entry(&pg, "coefs");
  run_graph(&pg, g, in, o);
  for (int i = 0; i < KT; i++) {
    Sched a = closed_form(s[i], cosine), b = closed_form(times[i], cosine);
    double nt = b.alpha * b.alpha + b.sigma * b.sigma;
    NEAR(D64(&o[0])[i], 1.0, 0, "c_skip euler_fm", i);
    NEAR(D64(&o[1])[i], -(times[i] - s[i]) * 0.5, 1e-14, "c_out euler_fm", i);
    NEAR(D64(&o[2])[i], (a.alpha * b.alpha + a.sigma * b.sigma) / nt, 1e-13, "c_skip edm", i);
    NEAR(D64(&o[3])[i], -0.5 * (a.alpha * b.sigma - b.alpha * a.sigma) / sqrt(nt), 1e-13, "c_out edm", i);
    if (cosine) { /* alpha^2 + sigma^2 = 1: c_skip = cos(pi (t - s) / 2) */
      NEAR(D64(&o[2])[i], cos(M_PI * (times[i] - s[i]) / 2), 1e-13, "c_skip edm (cos)", i);
      NEAR(D64(&o[3])[i], -0.5 * sin(M_PI * (times[i] - s[i]) / 2), 1e-13, "c_out edm (sin)", i);
    }
  }
  free_outs(g, o);
  prog_close(&pg);
}

START_TEST(coefs_otfm) { check_coefs(0); }
END_TEST

START_TEST(coefs_cosine) { check_coefs(1); }
END_TEST

/* ---- kernels and MMD ------------------------------------------------------------------------ */

enum { G = 3, M = 4, DD = 3, B = 12 };

static void particles(double *p, double *q, double *c) {
  for (int i = 0; i < G * M * DD; i++) {
    p[i] = sin(0.9 * i + 0.3);
    q[i] = 0.8 * cos(1.7 * i) + 0.1;
  }
  p[DD] = p[0], p[DD + 1] = p[1], p[DD + 2] = p[2]; /* two equal particles: distance 0 */
  for (int g = 0; g < G; g++) c[g] = (g % 2 ? -0.2 : 0.35) * (g + 1); /* |c_out| is used */
}

static double pdist(const double *p, const double *q, int g, int j, int k) {
  double s = 0;
  for (int d = 0; d < DD; d++) {
    double v = p[(g * M + j) * DD + d] - q[(g * M + k) * DD + d];
    s += v * v;
  }
  return sqrt(s);
}

START_TEST(kernels_closed_form) {
  double p[G * M * DD], q[G * M * DD], c[G];
  particles(p, q, c);
  Prog pg;
  GrTensor o[4];
  const double *in[] = {p, q, c};
  prog_open(&pg, "tests/stdlib/losses.grad", NULL, 0);
  const Graph *g = entry(&pg, "kern");
  run_graph(&pg, g, in, o);
  for (int gi = 0; gi < G; gi++)
    for (int j = 0; j < M; j++)
      for (int k = 0; k < M; k++) {
        int i = (gi * M + j) * M + k;
        double d = pdist(p, q, gi, j, k), ell = fabs(c[gi]) * DD;
        NEAR(D64(&o[0])[i], exp(-fmax(d, 1e-8) / ell), 1e-13, "laplace", i);
        NEAR(D64(&o[1])[i], exp(-d * d / (ell * ell)), 1e-13, "rbf", i);
        NEAR(D64(&o[2])[i], -fmax(d, 1e-8), 1e-13, "energy", i);
        NEAR(D64(&o[3])[i], 1 / sqrt(1 + d * d / (ell * ell)), 1e-13, "imq", i);
      }
  free_outs(g, o);
  prog_close(&pg);
}
END_TEST

START_TEST(mmd_invariants) {
  double p[G * M * DD], q[G * M * DD], c[G];
  particles(p, q, c);
  Prog pg;
  GrTensor o[5];
  const double *in[] = {p, q, c};
  prog_open(&pg, "tests/stdlib/losses.grad", NULL, 0);
  const Graph *g = entry(&pg, "mmds");
  run_graph(&pg, g, in, o);
  for (int gi = 0; gi < G; gi++) {
    double v = 0, u = 0, ell = fabs(c[gi]) * DD;
    for (int j = 0; j < M; j++)
      for (int k = 0; k < M; k++) {
        double term = exp(-fmax(pdist(p, p, gi, j, k), 1e-8) / ell) +
                      exp(-fmax(pdist(q, q, gi, j, k), 1e-8) / ell) -
                      2 * exp(-fmax(pdist(p, q, gi, j, k), 1e-8) / ell);
        v += term;
        if (j != k) u += term;
      }
    NEAR(D64(&o[0])[gi], v / (M * M), 1e-13, "V-statistic", gi);
    NEAR(D64(&o[1])[gi], D64(&o[0])[gi], 1e-14, "V symmetric", gi);
    ck_assert_msg(fabs(D64(&o[2])[gi]) < 1e-15, "MMD_V(P, P) = %g", D64(&o[2])[gi]);
    ck_assert(D64(&o[0])[gi] > 0);
    NEAR(D64(&o[3])[gi], u / (M * (M - 1)), 1e-13, "U-statistic", gi);
    NEAR(D64(&o[4])[gi], D64(&o[3])[gi], 1e-14, "U symmetric", gi);
  }
  free_outs(g, o);
  prog_close(&pg);
}
END_TEST

/* M = 1: mmd = k(y, y) + k(y', y') - 2 k(y, y') = 2 (k(0) - k(y, y')) ~ 2 (1 - k(y, y')) */
START_TEST(mmd_m1_consistency) {
  double p[B * DD], q[B * DD], c[B];
  for (int i = 0; i < B * DD; i++) p[i] = sin(0.5 * i), q[i] = p[i] + 0.1 * cos(3.0 * i);
  for (int i = 0; i < B; i++) c[i] = 0.05 + 0.1 * i;
  Prog pg;
  GrTensor o[1];
  const double *in[] = {p, q, c};
  prog_open(&pg, "tests/stdlib/losses.grad", NULL, 0);
  const Graph *g = entry(&pg, "mmd_m1");
  run_graph(&pg, g, in, o);
  for (int i = 0; i < B; i++) {
    double ell = c[i] * DD, d2 = 0;
    for (int d = 0; d < DD; d++) d2 += (p[i * DD + d] - q[i * DD + d]) * (p[i * DD + d] - q[i * DD + d]);
    double k = exp(-sqrt(d2) / ell);
    NEAR(D64(&o[0])[i], 2 * (exp(-1e-8 / ell) - k), 1e-13, "M=1 exact", i);
    ck_assert(fabs(D64(&o[0])[i] - 2 * (1 - k)) < 1e-6);
  }
  free_outs(g, o);
  prog_close(&pg);
}
END_TEST

/* ---- the loss: stop-gradient on the target branch ---------------------------------------------- */

static void loss_inputs(double *x, double *n, double *t, double *s, double *r) {
  for (int i = 0; i < B * DD; i++) x[i] = sin(1.1 * i), n[i] = cos(0.37 * i + 0.5);
  static const double tt[G] = {0.8, 0.4, 0.15}, ss[G] = {0.1, 0.39, 0.0}, rr[G] = {0.7, 0.395, 0.1};
  memcpy(t, tt, sizeof tt), memcpy(s, ss, sizeof ss), memcpy(r, rr, sizeof rr);
}

START_TEST(target_branch_has_no_gradient) {
  double x[B * DD], n[B * DD], t[G], s[G], r[G];
  loss_inputs(x, n, t, s, r);
  const double *in5[] = {x, n, t, s, r};
  Prog pg;
  prog_open(&pg, "tests/stdlib/losses.grad", NULL, 0);
  int np = pg.p.nparams;
  ck_assert_int_gt(np, 0);
  GrTensor *o1 = calloc((size_t)np + 2, sizeof *o1), *o2 = calloc((size_t)np + 2, sizeof *o2);
  GrTensor yr[1];
  /* 1. sum(y_r) has exactly zero gradient for every parameter */
  Graph *ts = ad_grad_entry(&pg.p, entry(&pg, "target_sum"));
  ck_assert(ts != NULL);
  run_graph(&pg, ts, in5, o1);
  for (int i = 0; i < np; i++) {
    int64_t ne = shape_numel(&pg.p.params[i].shape);
    for (int64_t e = 0; e < ne; e++) ck_assert(D64(&o1[1 + i])[e] == 0.0);
  }
  free_outs(ts, o1);
  /* 2. gradients with y_r computed in-graph == gradients with y_r given as data */
  run_graph(&pg, entry(&pg, "target"), in5, yr);
  const double *in6[] = {x, n, t, s, r, D64(&yr[0])};
  Graph *g1 = ad_grad_entry(&pg.p, entry(&pg, "loss"));
  Graph *g2 = ad_grad_entry(&pg.p, entry(&pg, "loss_fixed_target"));
  ck_assert(g1 != NULL && g2 != NULL);
  run_graph(&pg, g1, in5, o1);
  run_graph(&pg, g2, in6, o2);
  NEAR(D64(&o1[0])[0], D64(&o2[0])[0], 1e-14, "loss", 0);
  ck_assert(D64(&o1[0])[0] > 0);
  double gmax = 0;
  for (int i = 0; i < np; i++) {
    int64_t ne = shape_numel(&pg.p.params[i].shape);
    for (int64_t e = 0; e < ne; e++) {
      NEAR(D64(&o1[1 + i])[e], D64(&o2[1 + i])[e], 1e-12, pg.p.params[i].name, e);
      gmax = fmax(gmax, fabs(D64(&o1[1 + i])[e]));
    }
  }
  ck_assert(gmax > 0); /* the online branch does get a gradient */
  free_outs(g1, o1);
  free_outs(g2, o2);
  gr_tensor_free(&yr[0]);
  free(o1), free(o2);
  prog_close(&pg);
}
END_TEST

/* The whole loss for cosine / Simple-EDM / t - s input / RBF / U-statistic / (a, b) = (2, 4),
 * with a closed-form "network" g(x, t, s') = sin(x) t + s', recomputed here in C. */
static void toy_onestep(const double *x, double t, double s, double *y) {
  Sched a = closed_form(s, 1), b = closed_form(t, 1);
  double nt = b.alpha * b.alpha + b.sigma * b.sigma, cin = 1 / (0.5 * sqrt(nt));
  double skip = (a.alpha * b.alpha + a.sigma * b.sigma) / nt;
  double cout = -0.5 * (a.alpha * b.sigma - b.alpha * a.sigma) / sqrt(nt);
  for (int d = 0; d < DD; d++) y[d] = skip * x[d] + cout * (sin(cin * x[d]) * t + (t - s));
}

START_TEST(loss_all_switches_closed_form) {
  double x[B * DD], n[B * DD], t[G], s[G], r[G];
  loss_inputs(x, n, t, s, r);
  Prog pg;
  GrTensor o[5];
  const double *in[] = {x, n, t, s, r};
  prog_open(&pg, "tests/stdlib/losses.grad", NULL, 0);
  const Graph *g = entry(&pg, "loss_toy");
  run_graph(&pg, g, in, o);
  double yt[B * DD], yr[B * DD], total = 0;
  for (int i = 0; i < B; i++) {
    int gi = i / M;
    double xt[DD], xr[DD];
    Sched at = closed_form(t[gi], 1), ar = closed_form(r[gi], 1);
    for (int d = 0; d < DD; d++) {
      xt[d] = at.alpha * x[i * DD + d] + at.sigma * 0.5 * n[i * DD + d];
      xr[d] = ar.alpha * x[i * DD + d] + ar.sigma * 0.5 * n[i * DD + d];
    }
    toy_onestep(xt, t[gi], s[gi], &yt[i * DD]);
    toy_onestep(xr, r[gi], s[gi], &yr[i * DD]);
  }
  for (int i = 0; i < B * DD; i++) {
    NEAR(D64(&o[3])[i], yt[i], 1e-13, "y_t", i);
    NEAR(D64(&o[4])[i], yr[i], 1e-13, "y_r", i);
  }
  for (int gi = 0; gi < G; gi++) {
    Sched a = closed_form(s[gi], 1), b = closed_form(t[gi], 1);
    double cout = -0.5 * (a.alpha * b.sigma - b.alpha * a.sigma); /* alpha^2 + sigma^2 = 1 */
    double ell = fabs(cout) * DD, u = 0;
    for (int j = 0; j < M; j++)
      for (int k = 0; k < M; k++) {
        if (j == k) continue;
        double ptt = pdist(yt, yt, gi, j, k), prr = pdist(yr, yr, gi, j, k), ptr = pdist(yt, yr, gi, j, k);
        u += exp(-ptt * ptt / (ell * ell)) + exp(-prr * prr / (ell * ell)) - 2 * exp(-ptr * ptr / (ell * ell));
      }
    u /= M * (M - 1);
    double w = 0.5 / (1 + exp(b.lambda - 4.0)) * b.ndl * b.alpha * b.alpha / (b.alpha * b.alpha + b.sigma * b.sigma);
    NEAR(D64(&o[1])[gi], u, 1e-12, "mmd (U, rbf)", gi);
    NEAR(D64(&o[2])[gi], w, 1e-12, "w (cosine, a = 2, b = 4)", gi);
    total += w * u / G;
  }
  NEAR(D64(&o[0])[0], total, 1e-12, "loss", 0);
  free_outs(g, o);
  prog_close(&pg);
}
END_TEST

START_TEST(onestep_identity_and_samplers) {
  double x[B * DD], t[B];
  for (int i = 0; i < B * DD; i++) x[i] = 0.5 * sin(2.3 * i);
  for (int i = 0; i < B; i++) t[i] = 0.05 + 0.07 * i;
  Prog pg;
  GrTensor o[4];
  const double *in2[] = {x, t}, *in1[] = {x};
  prog_open(&pg, "tests/stdlib/losses.grad", NULL, 0);
  const Graph *g = entry(&pg, "identity");
  run_graph(&pg, g, in2, o);
  for (int i = 0; i < B * DD; i++) {
    NEAR(D64(&o[0])[i], x[i], 1e-15, "f_{t,t} euler_fm", i);
    NEAR(D64(&o[1])[i], x[i], 1e-14, "f_{t,t} edm", i);
  }
  free_outs(g, o);
  g = entry(&pg, "samplers");
  run_graph(&pg, g, in1, o);
  double moved = 0;
  for (int i = 0; i < B * DD; i++) {
    NEAR(D64(&o[1])[i], D64(&o[0])[i], 1e-15, "restart(1) vs pushforward(1)", i);
    NEAR(D64(&o[2])[i], D64(&o[3])[i], 1e-13, "pushforward(2) vs two onesteps via eta = 1.4", i);
    moved = fmax(moved, fabs(D64(&o[0])[i] - x[i]));
  }
  ck_assert(moved > 1e-6);
  free_outs(g, o);
  prog_close(&pg);
}
END_TEST

/* ---- nn blocks ------------------------------------------------------------------------------------ */

START_TEST(nn_blocks) {
  enum { K = 7 };
  double h[B * K], u[B];
  for (int i = 0; i < B * K; i++) h[i] = 3 * sin(0.77 * i);
  for (int i = 0; i < B; i++) u[i] = 100.0 * i + 0.5;
  Prog pg;
  GrTensor o[4];
  const double *in[] = {h, u};
  prog_open(&pg, "tests/stdlib/losses.grad", NULL, 0);
  const Graph *g = entry(&pg, "blocks");
  run_graph(&pg, g, in, o);
  for (int row = 0; row < B; row++) {
    double mu = 0, var = 0;
    for (int k = 0; k < K; k++) mu += h[row * K + k] / K;
    for (int k = 0; k < K; k++) var += (h[row * K + k] - mu) * (h[row * K + k] - mu) / K;
    for (int k = 0; k < K; k++) {
      int i = row * K + k;
      double v = h[i];
      NEAR(D64(&o[0])[i], v / (1 + exp(-v)), 1e-14, "silu", i);
      NEAR(D64(&o[1])[i], 0.5 * v * (1 + tanh(sqrt(2 / M_PI) * (v + 0.044715 * v * v * v))), 1e-14, "gelu", i);
      NEAR(D64(&o[2])[i], (v - mu) / sqrt(var + 1e-5), 1e-12, "layer_norm", i);
    }
    for (int k = 0; k < 4; k++) { /* f_k = 10000^(-k/4) */
      double f = pow(10000.0, -k / 4.0);
      NEAR(D64(&o[3])[row * 8 + k], cos(u[row] * f), 1e-12, "PE cos", row);
      NEAR(D64(&o[3])[row * 8 + 4 + k], sin(u[row] * f), 1e-12, "PE sin", row);
    }
  }
  free_outs(g, o);
  prog_close(&pg);
}
END_TEST

static Suite *stdlib_suite(void) {
  Suite *s = suite_create("stdlib");
  TCase *tc = tcase_create("interp");
  tcase_set_timeout(tc, 60);
  tcase_add_test(tc, schedule_otfm);
  tcase_add_test(tc, schedule_cosine);
  tcase_add_test(tc, ddim_otfm);
  tcase_add_test(tc, ddim_cosine);
  tcase_add_test(tc, weight_otfm_a1_b5);
  tcase_add_test(tc, weight_zero_at_t0);
  tcase_add_test(tc, weight_otfm_a2_b4);
  tcase_add_test(tc, weight_cosine_a1_b5);
  tcase_add_test(tc, r_otfm);
  tcase_add_test(tc, r_cosine_min_gap);
  tcase_add_test(tc, coefs_otfm);
  tcase_add_test(tc, coefs_cosine);
  suite_add_tcase(s, tc);
  TCase *lc = tcase_create("loss");
  tcase_set_timeout(lc, 60);
  tcase_add_test(lc, kernels_closed_form);
  tcase_add_test(lc, mmd_invariants);
  tcase_add_test(lc, mmd_m1_consistency);
  tcase_add_test(lc, target_branch_has_no_gradient);
  tcase_add_test(lc, loss_all_switches_closed_form);
  tcase_add_test(lc, onestep_identity_and_samplers);
  tcase_add_test(lc, nn_blocks);
  suite_add_tcase(s, lc);
  return s;
}

int main(void) {
  SRunner *sr = srunner_create(stdlib_suite());
  srunner_run_all(sr, CK_NORMAL);
  int nf = srunner_ntests_failed(sr);
  srunner_free(sr);
  return nf == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
