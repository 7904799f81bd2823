/* test_runtime_optim.c: optimizers against hand-computed steps, schedules, clipping, EMA,
 * and the thread pool's chunking.
 *
 * Two kinds of expected values: literal numbers worked out by hand for a constant
 * gradient (where Adam's bias-corrected step is exactly lr * sign(g)), and an independent
 * scalar re-implementation of each update rule in plain f64 for varying gradients. */
#include <check.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "rt.h"

static GrOptConfig cfg(GrOptKind k) {
  GrOptConfig c = {k, 0.9, 0.999, 1e-8, 0, 0.9};
  return c;
}

START_TEST(sgd_momentum_by_hand) {
  GrOptConfig c = cfg(GR_OPT_SGD);
  float w = 1, g = 0.5f, buf = 0, unused = 0;
  const double want[3] = {0.95, 0.855, 0.7195}; /* buf: 0.5, 0.95, 1.355 */
  for (int t = 1; t <= 3; t++) {
    gr_opt_step(NULL, &c, &w, &g, &buf, &unused, 1, t, 0.1);
    ck_assert_msg(fabs(w - want[t - 1]) < 1e-6, "step %d: %.9g vs %.9g", t, w, want[t - 1]);
  }
  ck_assert(fabs(buf - 1.355) < 1e-6);
}
END_TEST

START_TEST(adam_constant_gradient_by_hand) {
  /* constant g: mhat = g and vhat = g^2 exactly, so each step moves lr * g / (|g| + eps) */
  GrOptConfig c = cfg(GR_OPT_ADAM);
  float w[2] = {1, -2}, g[2] = {0.5f, -3}, m[2] = {0}, v[2] = {0};
  for (int t = 1; t <= 5; t++) {
    gr_opt_step(NULL, &c, w, g, m, v, 2, t, 0.1);
    ck_assert(fabs(w[0] - (1 - 0.1 * t)) < 1e-6);
    ck_assert(fabs(w[1] - (-2 + 0.1 * t)) < 1e-6);
  }
  ck_assert(fabs(m[0] - 0.5 * (1 - pow(0.9, 5))) < 1e-7);
  ck_assert(fabs(v[1] - 9 * (1 - pow(0.999, 5))) < 1e-6);
}
END_TEST

START_TEST(adamw_by_hand) {
  GrOptConfig c = cfg(GR_OPT_ADAMW);
  c.weight_decay = 0.1;
  float w = 1, g = 0.5f, m = 0, v = 0;
  gr_opt_step(NULL, &c, &w, &g, &m, &v, 1, 1, 0.1);
  ck_assert_msg(fabs(w - 0.89) < 1e-6, "%.9g", w); /* 1 - 0.1*0.1*1 - 0.1 */
  /* Adam with the same weight decay adds it to the gradient instead: different result */
  GrOptConfig a = cfg(GR_OPT_ADAM);
  a.weight_decay = 0.1;
  float w2 = 1, m2 = 0, v2 = 0;
  gr_opt_step(NULL, &a, &w2, &g, &m2, &v2, 1, 1, 0.1);
  ck_assert(fabs(w2 - 0.9) < 1e-6); /* g' = 0.6, still a sign step */
  ck_assert(fabs(m2 - 0.06) < 1e-7);
}
END_TEST

START_TEST(radam_first_steps_by_hand) {
  /* rho_inf = 1999; rho_1 = 1999 - 2 * 0.999 / 0.001 = 1 <= 5: un-adapted step lr * mhat */
  GrOptConfig c = cfg(GR_OPT_RADAM);
  float w = 1, g = 0.5f, m = 0, v = 0;
  gr_opt_step(NULL, &c, &w, &g, &m, &v, 1, 1, 0.1);
  ck_assert_msg(fabs(w - 0.95) < 1e-6, "%.9g", w);
}
END_TEST

/* Independent f64 references of the update rules (PyTorch's definitions). */
static void ref_adam(int kind, double *w, double g, double *m, double *v, int t, double lr, double wd) {
  double b1 = 0.9, b2 = 0.999, eps = 1e-8;
  if (kind == GR_OPT_ADAMW) *w *= 1 - lr * wd;
  else g += wd * *w;
  *m = b1 * *m + (1 - b1) * g;
  *v = b2 * *v + (1 - b2) * g * g;
  double mh = *m / (1 - pow(b1, t));
  if (kind != GR_OPT_RADAM) {
    *w -= lr * mh / (sqrt(*v / (1 - pow(b2, t))) + eps);
    return;
  }
  double ri = 2 / (1 - b2) - 1, rt = ri - 2 * t * pow(b2, t) / (1 - pow(b2, t));
  if (rt > 5) {
    double r = sqrt((rt - 4) * (rt - 2) * ri / ((ri - 4) * (ri - 2) * rt));
    *w -= lr * mh * r * sqrt(1 - pow(b2, t)) / (sqrt(*v) + eps);
  } else *w -= lr * mh;
}

START_TEST(adam_family_vs_reference) {
  int kinds[3] = {GR_OPT_ADAM, GR_OPT_ADAMW, GR_OPT_RADAM};
  for (int k = 0; k < 3; k++) {
    GrOptConfig c = cfg((GrOptKind)kinds[k]);
    c.weight_decay = 0.01;
    float w[3] = {0.3f, -1.2f, 2.0f}, m[3] = {0}, v[3] = {0};
    double rw[3] = {0.3, -1.2, 2.0}, rm[3] = {0}, rv[3] = {0};
    for (int t = 1; t <= 12; t++) {
      float g[3];
      for (int i = 0; i < 3; i++) g[i] = (float)(sin(t * 1.3 + i) * (i + 1));
      gr_opt_step(NULL, &c, w, g, m, v, 3, t, 0.05);
      for (int i = 0; i < 3; i++) ref_adam(kinds[k], &rw[i], g[i], &rm[i], &rv[i], t, 0.05, 0.01);
    }
    for (int i = 0; i < 3; i++)
      ck_assert_msg(fabs(w[i] - rw[i]) < 1e-5, "%s elem %d: %.9g vs %.9g", gr_opt_name(c.kind), i, w[i], rw[i]);
  }
}
END_TEST

START_TEST(sgd_weight_decay_vs_reference) {
  GrOptConfig c = cfg(GR_OPT_SGD);
  c.weight_decay = 0.1;
  c.momentum = 0.5;
  float w = 2, buf = 0, un = 0;
  double rw = 2, rb = 0;
  for (int t = 1; t <= 6; t++) {
    float g = (float)(t % 3) - 1;
    gr_opt_step(NULL, &c, &w, &g, &buf, &un, 1, t, 0.2);
    rb = 0.5 * rb + g + 0.1 * rw;
    rw -= 0.2 * rb;
  }
  ck_assert_msg(fabs(w - rw) < 1e-6, "%.9g vs %.9g", w, rw);
}
END_TEST

START_TEST(names_parse) {
  GrOptKind k;
  ck_assert_int_eq(gr_opt_parse("radam", &k), 0);
  ck_assert_int_eq(k, GR_OPT_RADAM);
  ck_assert_int_eq(gr_opt_parse("lion", &k), -1);
  ck_assert_str_eq(gr_opt_state_name(GR_OPT_SGD, 0), "momentum");
  ck_assert_str_eq(gr_opt_state_name(GR_OPT_ADAMW, 1), "adam_v");
  ck_assert_int_eq(gr_opt_nstate(GR_OPT_SGD), 1);
  GrSchedKind s;
  ck_assert_int_eq(gr_sched_parse("warmup_cosine", &s), 0);
  ck_assert_int_eq(gr_sched_parse("step", &s), -1);
}
END_TEST

START_TEST(schedules) {
  GrSchedule c = {GR_SCHED_CONSTANT, 0.1, 0.0, 0, 100};
  ck_assert(gr_sched_lr(&c, 0) == 0.1 && gr_sched_lr(&c, 99) == 0.1);
  c.warmup = 10;
  ck_assert(fabs(gr_sched_lr(&c, 0) - 0.01) < 1e-12);
  ck_assert(fabs(gr_sched_lr(&c, 4) - 0.05) < 1e-12);
  ck_assert(gr_sched_lr(&c, 10) == 0.1);
  GrSchedule cs = {GR_SCHED_COSINE, 0.1, 0.001, 0, 100};
  ck_assert(fabs(gr_sched_lr(&cs, 0) - 0.1) < 1e-12);
  ck_assert(fabs(gr_sched_lr(&cs, 50) - 0.0505) < 1e-12);
  ck_assert(fabs(gr_sched_lr(&cs, 100) - 0.001) < 1e-12);
  ck_assert(fabs(gr_sched_lr(&cs, 25) - (0.001 + 0.099 * 0.5 * (1 + cos(M_PI / 4)))) < 1e-12);
  GrSchedule wc = {GR_SCHED_WARMUP_COSINE, 0.1, 0, 20, 120};
  ck_assert(fabs(gr_sched_lr(&wc, 9) - 0.05) < 1e-12);
  ck_assert(fabs(gr_sched_lr(&wc, 20) - 0.1) < 1e-12);
  ck_assert(fabs(gr_sched_lr(&wc, 70) - 0.05) < 1e-12);
}
END_TEST

START_TEST(clip_and_ema) {
  float a[1] = {3}, b[1] = {4};
  float *g[2] = {a, b};
  int64_t n[2] = {1, 1};
  double norm = gr_grad_norm(NULL, g, n, 2);
  ck_assert(fabs(norm - 5) < 1e-12);
  ck_assert(gr_clip_scale(NULL, g, n, 2, norm, 10) == 1.0 && a[0] == 3);
  gr_clip_scale(NULL, g, n, 2, norm, 1);
  ck_assert(fabs(a[0] - 0.6) < 1e-7 && fabs(b[0] - 0.8) < 1e-7);
  gr_clip_scale(NULL, g, n, 2, 1, 0); /* clip 0: off */
  ck_assert(fabs(a[0] - 0.6) < 1e-7);
  float ema[2] = {1, 2}, w[2] = {0, 4};
  gr_ema_update(NULL, ema, w, 2, 0.9);
  ck_assert(fabs(ema[0] - 0.9) < 1e-7 && fabs(ema[1] - 2.2) < 1e-6);
}
END_TEST

/* Large arrays split over a pool give the same bits as inline. */
START_TEST(pooled_updates_match_inline) {
  enum { N = 100003 };
  float *w[2], *g[2], *m[2], *v[2], *e[2];
  for (int r = 0; r < 2; r++) {
    w[r] = malloc(N * sizeof(float)), g[r] = malloc(N * sizeof(float)), m[r] = calloc(N, sizeof(float));
    v[r] = calloc(N, sizeof(float)), e[r] = malloc(N * sizeof(float));
    for (int i = 0; i < N; i++) {
      w[r][i] = (float)gr_normal_f64(1, 0, 3, (uint64_t)i);
      g[r][i] = (float)gr_normal_f64(2, 0, 3, (uint64_t)i);
      e[r][i] = w[r][i];
    }
  }
  GrRunCtx inl = {.seed = 0, .step = 0, .pool = NULL}, par = {.seed = 0, .step = 0, .pool = gr_pool_create(3)};
  GrRunCtx *rcs[2] = {&inl, &par};
  double norms[2];
  for (int r = 0; r < 2; r++) {
    int64_t n = N;
    norms[r] = gr_grad_norm(rcs[r], &g[r], &n, 1);
    gr_clip_scale(rcs[r], &g[r], &n, 1, norms[r], 10.0);
    for (int k = 0; k < 4; k++) {
      GrOptConfig c = cfg((GrOptKind)k);
      c.weight_decay = 0.01;
      for (int t = 1; t <= 3; t++) gr_opt_step(rcs[r], &c, w[r], g[r], m[r], v[r], N, t, 0.01);
    }
    gr_ema_update(rcs[r], e[r], w[r], N, 0.99);
  }
  ck_assert(norms[0] == norms[1]);
  ck_assert(fabs(norms[0] - sqrt((double)N)) < 0.02 * sqrt((double)N)); /* N standard normals */
  ck_assert(memcmp(w[0], w[1], N * sizeof(float)) == 0);
  ck_assert(memcmp(m[0], m[1], N * sizeof(float)) == 0 && memcmp(v[0], v[1], N * sizeof(float)) == 0);
  ck_assert(memcmp(e[0], e[1], N * sizeof(float)) == 0);
  ck_assert(memcmp(g[0], g[1], N * sizeof(float)) == 0);
  gr_pool_destroy(par.pool);
  for (int r = 0; r < 2; r++) free(w[r]), free(g[r]), free(m[r]), free(v[r]), free(e[r]);
}
END_TEST

/* ---- pool ------------------------------------------------------------------------------ */
typedef struct {
  int *hits;
  GrRunCtx *rc;
  int nested;
} PoolEnv;

static void mark(void *env, int64_t lo, int64_t hi) {
  PoolEnv *e = env;
  for (int64_t i = lo; i < hi; i++) __atomic_add_fetch(&e->hits[i], 1, __ATOMIC_RELAXED);
  if (e->nested) {
    PoolEnv inner = {e->hits + 5000, e->rc, 0};
    gr_parallel_for(e->rc, 100, 1, mark, &inner); /* inline, never deadlocks */
  }
}

START_TEST(pool_covers_each_index_once) {
  int *hits = calloc(10000, sizeof *hits);
  for (int th = 1; th <= 6; th++) {
    GrPool *p = gr_pool_create(th);
    ck_assert_int_eq(gr_pool_threads(p), th);
    GrRunCtx rc = {.seed = 0, .step = 0, .pool = p};
    int64_t ns[] = {0, 1, 7, 64, 1000, 4999};
    for (size_t k = 0; k < sizeof ns / sizeof *ns; k++)
      for (int64_t grain = 1; grain <= 256; grain *= 4) {
        memset(hits, 0, 10000 * sizeof *hits);
        PoolEnv e = {hits, &rc, 0};
        gr_parallel_for(&rc, ns[k], grain, mark, &e);
        int64_t bad = 0;
        for (int64_t i = 0; i < 5000; i++) bad += hits[i] != (i < ns[k]);
        ck_assert_msg(bad == 0, "threads %d n %lld grain %lld: %lld indices wrong", th, (long long)ns[k], (long long)grain, (long long)bad);
      }
    memset(hits, 0, 10000 * sizeof *hits);
    PoolEnv e = {hits, &rc, 1};
    gr_parallel_for(&rc, 40, 1, mark, &e);
    int calls = 0;
    for (int i = 0; i < 40; i++) ck_assert_int_eq(hits[i], 1);
    for (int i = 0; i < 100; i++) calls += hits[5000 + i];
    ck_assert_int_eq(calls % 100, 0); /* every nested call covered its 100 indices */
    gr_pool_destroy(p);
  }
  free(hits);
}
END_TEST

static Suite *suite(void) {
  Suite *s = suite_create("runtime_optim");
  TCase *tc = tcase_create("optim");
  tcase_add_test(tc, sgd_momentum_by_hand);
  tcase_add_test(tc, adam_constant_gradient_by_hand);
  tcase_add_test(tc, adamw_by_hand);
  tcase_add_test(tc, radam_first_steps_by_hand);
  tcase_add_test(tc, adam_family_vs_reference);
  tcase_add_test(tc, sgd_weight_decay_vs_reference);
  tcase_add_test(tc, names_parse);
  tcase_add_test(tc, schedules);
  tcase_add_test(tc, clip_and_ema);
  tcase_add_test(tc, pooled_updates_match_inline);
  tcase_add_test(tc, pool_covers_each_index_once);
  suite_add_tcase(s, tc);
  return s;
}

int main(void) {
  SRunner *sr = srunner_create(suite());
  srunner_run_all(sr, CK_NORMAL);
  int failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  return failed ? 1 : 0;
}
