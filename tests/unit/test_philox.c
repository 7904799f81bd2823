/* test_philox.c: runtime/philox.h against the published Random123 known answers, and the
 * distributions built on it (range of the uniforms, moments of the normals), so the
 * interpreter, the runtime and generated code can all rely on the header. */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "philox.h"
#include "rng_fill.h"

typedef struct {
  uint32_t ctr[4], key[2], want[4];
} Kat;

/* philox4x32_10 vectors from Random123's kat_vectors file. */
static const Kat kats[] = {
    {{0, 0, 0, 0}, {0, 0}, {0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8}},
    {{0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff},
     {0xffffffff, 0xffffffff},
     {0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd}},
    {{0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344},
     {0xa4093822, 0x299f31d0},
     {0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1}},
};

START_TEST(known_answers) {
  const Kat *k = &kats[_i];
  philox_u32x4 c = {{k->ctr[0], k->ctr[1], k->ctr[2], k->ctr[3]}};
  philox_u32x4 r = philox4x32_10(c, k->key[0], k->key[1]);
  for (int w = 0; w < 4; w++)
    ck_assert_msg(r.v[w] == k->want[w], "vector %d word %d: got %08x want %08x", _i, w, r.v[w], k->want[w]);
}
END_TEST

/* The block function maps (seed, step, stream, idx) into counter and key as documented. */
START_TEST(block_layout) {
  uint64_t seed = 0x0123456789abcdefull, step = 7, stream = 0x1122334455667788ull, idx = 0xdeadbeefcafef00dull;
  philox_u32x4 c = {{(uint32_t)idx, (uint32_t)(idx >> 32), (uint32_t)stream, (uint32_t)step}};
  philox_u32x4 want = philox4x32_10(c, (uint32_t)seed, (uint32_t)(seed >> 32) ^ (uint32_t)(stream >> 32));
  philox_u32x4 got = gr_philox_block(seed, step, stream, idx);
  for (int w = 0; w < 4; w++) ck_assert_uint_eq(got.v[w], want.v[w]);
  /* every input matters */
  philox_u32x4 a = gr_philox_block(1, 0, 0, 0), b = gr_philox_block(2, 0, 0, 0),
               d = gr_philox_block(1, 1, 0, 0), e = gr_philox_block(1, 0, 1, 0),
               f = gr_philox_block(1, 0, 0, 1), g = gr_philox_block(1, 0, 1ull << 32, 0);
  ck_assert(a.v[0] != b.v[0] && a.v[0] != d.v[0] && a.v[0] != e.v[0] && a.v[0] != f.v[0] && a.v[0] != g.v[0]);
}
END_TEST

START_TEST(uniform_range_and_mean) {
  const int n = 100000;
  double s32 = 0, s64 = 0;
  for (int i = 0; i < n; i++) {
    float u = gr_uniform_f32(42, 3, 9, (uint64_t)i);
    double v = gr_uniform_f64(42, 3, 9, (uint64_t)i);
    ck_assert_msg(u >= 0.0f && u < 1.0f, "f32 uniform %d = %.9g", i, u);
    ck_assert_msg(v >= 0.0 && v < 1.0, "f64 uniform %d = %.17g", i, v);
    s32 += u;
    s64 += v;
  }
  /* mean 1/2, std of the mean sqrt(1/12/n) ~ 0.0009: allow 5 sigma */
  ck_assert_msg(fabs(s32 / n - 0.5) < 0.0046, "f32 mean %g", s32 / n);
  ck_assert_msg(fabs(s64 / n - 0.5) < 0.0046, "f64 mean %g", s64 / n);
  /* the definitions in the header, bit for bit */
  philox_u32x4 r = gr_philox_block(42, 3, 9, 5);
  ck_assert(gr_uniform_f32(42, 3, 9, 5) == (float)(r.v[0] >> 8) / 16777216.0f);
  ck_assert(gr_uniform_f64(42, 3, 9, 5) == (double)((((uint64_t)r.v[0] << 32) | r.v[1]) >> 11) / 9007199254740992.0);
}
END_TEST

/* gr_log_f64 / gr_cos2pi_f64 (the libm-free Box-Muller halves) against libm: every
 * u1 = (w + 1) 2^-32 shape (a sweep of w and the extremes) and u2 = w 2^-32, plus the
 * octant boundaries, to 1e-15 relative (log; measured 4.1e-16) and 1e-15 absolute (cos, |cos| <= 1). */
START_TEST(log_cos_vs_libm) {
  double worst_log = 0, worst_cos = 0;
  for (uint64_t i = 0; i < 400000; i++) {
    uint32_t w = (uint32_t)(i * 10737u + (i >> 3) * 977u); /* spreads over all of [0, 2^32) */
    if (i < 4) w = (uint32_t)(i < 2 ? i : 0xFFFFFFFFu - (i - 2));
    double u1 = ((double)w + 1.0) * (1.0 / 4294967296.0), u2 = (double)w * (1.0 / 4294967296.0);
    double l = log(u1), gl = gr_log_f64(u1);
    double el = l == 0 ? fabs(gl) : fabs(gl - l) / fabs(l);
    if (el > worst_log) worst_log = el;
    double ec = fabs(gr_cos2pi_f64(u2) - cos(6.283185307179586 * u2));
    if (ec > worst_cos) worst_cos = ec;
  }
  for (int o = 0; o < 8; o++) { /* exact octant points */
    double u = o / 8.0, ref = cos(2 * M_PI * u);
    double ec = fabs(gr_cos2pi_f64(u) - ref);
    if (ec > worst_cos) worst_cos = ec;
  }
  ck_assert(gr_cos2pi_f64(0.0) == 1.0 && gr_cos2pi_f64(0.5) == -1.0 && gr_log_f64(1.0) == 0.0);
  for (double x = 1e-300; x < 1e300; x *= 1.7) { /* the log is good on all normals */
    double el = fabs(gr_log_f64(x) - log(x)) / fabs(log(x));
    if (x != 1.0 && el > worst_log) worst_log = el;
  }
  ck_assert_msg(worst_log < 1e-15, "log rel err %g", worst_log);
  ck_assert_msg(worst_cos < 1e-15, "cos abs err %g", worst_cos);
  fprintf(stderr, "gr_log_f64 max rel err %.3g, gr_cos2pi_f64 max abs err %.3g\n", worst_log, worst_cos);
}
END_TEST

/* the runtime's vectorized batch (rng_fill.c) equals the scalar definition bit for bit */
START_TEST(normal_fill_matches) {
  static double z[3001];
  uint64_t offs[3] = {0, 12345, 0xFFFFFFFF00ull};
  for (int k = 0; k < 3; k++) {
    gr_normal_fill_f64(z, 3001, 99, 5, 0x1234567890ull, offs[k]);
    for (int i = 0; i < 3001; i++) ck_assert(z[i] == gr_normal_f64(99, 5, 0x1234567890ull, offs[k] + (uint64_t)i));
  }
}
END_TEST

START_TEST(normal_moments) {
  const int n = 100000;
  double s = 0, s2 = 0, s4 = 0;
  for (int i = 0; i < n; i++) {
    double z = gr_normal_f64(7, 0, 0x5EED0000, (uint64_t)i);
    ck_assert(isfinite(z));
    ck_assert((double)gr_normal_f32(7, 0, 0x5EED0000, (uint64_t)i) == (double)(float)z);
    s += z;
    s2 += z * z;
    s4 += z * z * z * z;
  }
  double mean = s / n, var = s2 / n - mean * mean, kurt = s4 / n;
  ck_assert_msg(fabs(mean) < 0.016, "mean %g", mean);       /* 5 sigma of 1/sqrt(n) */
  ck_assert_msg(fabs(var - 1) < 0.023, "variance %g", var); /* 5 sigma of sqrt(2/n) */
  ck_assert_msg(fabs(kurt - 3) < 0.2, "fourth moment %g", kurt);
}
END_TEST

/* The sampler's start noise (rng_fast.c): the documented formula (to f32 libm accuracy),
 * the same values however a fill is cut (offsets not a multiple of 4, chunk borders),
 * and the moments of N(0, 1). */
START_TEST(fast_fill) {
  enum { N = 5000 };
  static float a[N], b[N];
  const uint64_t off = 0xFFFFFFF3ull, st = 0x5A3E0000ull;
  gr_normal_fill_fast_f32(a, N, 42, 0, st, off, 1.0f);
  int64_t cuts[] = {0, 1, 3, 1026, 1027, 4100, N};
  for (int c = 0; c + 1 < (int)(sizeof cuts / sizeof *cuts); c++)
    gr_normal_fill_fast_f32(b + cuts[c], cuts[c + 1] - cuts[c], 42, 0, st, off + (uint64_t)cuts[c], 1.0f);
  ck_assert(!memcmp(a, b, sizeof a));
  double s = 0, s2 = 0, s4 = 0;
  for (int i = 0; i < N; i++) {
    uint64_t j = off + (uint64_t)i;
    philox_u32x4 r = gr_philox_block(42, 0, st, j / 4);
    int p = (int)(j / 2 % 2);
    double u1 = ((r.v[2 * p] >> 8) + 1) / 16777216.0, u2 = (r.v[2 * p + 1] >> 8) / 16777216.0;
    double want = sqrt(-2 * log(u1)) * (j % 2 ? sin(2 * M_PI * u2) : cos(2 * M_PI * u2));
    ck_assert_msg(fabs(a[i] - want) <= 2e-6 * (1 + fabs(want)), "z[%d] = %.9g, want %.9g", i, a[i], want);
    s += a[i], s2 += (double)a[i] * a[i], s4 += (double)a[i] * a[i] * a[i] * a[i];
  }
  ck_assert_msg(fabs(s / N) < 0.071, "mean %g", s / N); /* 5 sigma */
  ck_assert_msg(fabs(s2 / N - 1) < 0.1, "variance %g", s2 / N);
  ck_assert_msg(fabs(s4 / N - 3) < 0.6, "fourth moment %g", s4 / N);
  float c[8];
  gr_normal_fill_fast_f32(c, 8, 42, 0, st, off, 0.5f); /* scale */
  for (int i = 0; i < 8; i++) ck_assert(c[i] == 0.5f * a[i]);
}
END_TEST

int main(void) {
  Suite *s = suite_create("philox");
  TCase *tc = tcase_create("core");
  tcase_add_loop_test(tc, known_answers, 0, (int)(sizeof kats / sizeof kats[0]));
  tcase_add_test(tc, block_layout);
  tcase_add_test(tc, uniform_range_and_mean);
  tcase_add_test(tc, normal_moments);
  tcase_add_test(tc, log_cos_vs_libm);
  tcase_add_test(tc, normal_fill_matches);
  tcase_add_test(tc, fast_fill);
  suite_add_tcase(s, tc);
  SRunner *sr = srunner_create(s);
  srunner_run_all(sr, CK_NORMAL);
  int failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
