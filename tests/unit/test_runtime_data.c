/* test_runtime_data.c: data sources (determinism, shapes, the documented scaling, the
 * per-epoch shuffle, .npy errors, Fashion-MNIST when installed), the sampling schedule,
 * and the sample-quality metrics on sets with known answers. */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "rt.h"
#include "testutil.h"

#define NROWS 20000

START_TEST(builtin_deterministic_and_scaled) {
  const char *sets[4] = {"checkerboard", "8gaussians", "moons", "swissroll"};
  char err[512];
  float *a = malloc(NROWS * 2 * sizeof *a), *b = malloc(NROWS * 2 * sizeof *b);
  for (int k = 0; k < 4; k++) {
    GrData d, e;
    ck_assert_msg(gr_data_open(&d, sets[k], 5, 0, err, sizeof err) == 0, "%s", err);
    ck_assert_int_eq(d.row_elems, 2);
    ck_assert(gr_data_rows(&d, 0, NROWS, a, NULL, err, sizeof err) == 0);
    /* same seed: same rows, also when asked for in pieces (resume) */
    ck_assert(gr_data_open(&e, sets[k], 5, 0, err, sizeof err) == 0);
    ck_assert(gr_data_rows(&e, 0, 100, b, NULL, err, sizeof err) == 0);
    ck_assert(gr_data_rows(&e, 100, NROWS - 100, b + 200, NULL, err, sizeof err) == 0);
    ck_assert(memcmp(a, b, NROWS * 2 * sizeof *a) == 0);
    gr_data_close(&e);
    /* another seed or the eval stream: different rows */
    ck_assert(gr_data_open(&e, sets[k], 6, 0, err, sizeof err) == 0);
    ck_assert(gr_data_rows(&e, 0, 100, b, NULL, err, sizeof err) == 0);
    ck_assert(memcmp(a, b, 200 * sizeof *a) != 0);
    gr_data_close(&e);
    ck_assert(gr_data_open(&e, sets[k], 5, 1, err, sizeof err) == 0);
    ck_assert(gr_data_rows(&e, 0, 100, b, NULL, err, sizeof err) == 0);
    ck_assert(memcmp(a, b, 200 * sizeof *a) != 0);
    gr_data_close(&e);
    /* centred, per-coordinate RMS std 0.5 (docs/runtime.md) */
    double m[2] = {0}, v[2] = {0};
    for (int i = 0; i < NROWS; i++)
      for (int c = 0; c < 2; c++) m[c] += a[2 * i + c] / (double)NROWS;
    for (int i = 0; i < NROWS; i++)
      for (int c = 0; c < 2; c++) v[c] += (a[2 * i + c] - m[c]) * (a[2 * i + c] - m[c]) / NROWS;
    double rms = sqrt((v[0] + v[1]) / 2);
    ck_assert_msg(fabs(m[0]) < 0.03 && fabs(m[1]) < 0.03, "%s mean %g %g", sets[k], m[0], m[1]);
    ck_assert_msg(fabs(rms - 0.5) < 0.02, "%s rms std %g", sets[k], rms);
    gr_data_close(&d);
  }
  free(a), free(b);
}
END_TEST

START_TEST(checkerboard_cells_and_labels) {
  char err[512];
  GrData d;
  ck_assert(gr_data_open(&d, "checkerboard", 1, 0, err, sizeof err) == 0);
  float x[2000];
  int32_t lab[1000];
  ck_assert(gr_data_rows(&d, 0, 1000, x, lab, err, sizeof err) == 0);
  double s = sqrt(3.0) / 4; /* the documented scale: board [-2, 2]^2 -> [-0.866, 0.866]^2 */
  int cells[16] = {0};
  for (int i = 0; i < 1000; i++) {
    double u = x[2 * i] / s, w = x[2 * i + 1] / s;
    ck_assert(u >= -2.0001 && u <= 2.0001 && w >= -2.0001 && w <= 2.0001);
    int cx = (int)floor(u) + 2, cy = (int)floor(w) + 2;
    ck_assert_msg((cx + cy) % 2 == 0, "point %g %g in a light cell", u, w);
    ck_assert_int_eq(lab[i], 4 * cy + cx);
    cells[lab[i]]++;
  }
  int used = 0;
  for (int c = 0; c < 16; c++) used += cells[c] > 0;
  ck_assert_int_eq(used, 8);
  gr_data_close(&d);
  ck_assert(gr_data_open(&d, "8gaussians", 1, 0, err, sizeof err) == 0);
  ck_assert(gr_data_rows(&d, 0, 1000, x, lab, err, sizeof err) == 0);
  for (int i = 0; i < 1000; i++) {
    double sc = 0.5 / sqrt(4.125), ang = lab[i] * M_PI / 4;
    double dx = x[2 * i] / sc - 2 * M_SQRT2 * cos(ang), dy = x[2 * i + 1] / sc - 2 * M_SQRT2 * sin(ang);
    ck_assert(lab[i] >= 0 && lab[i] < 8);
    ck_assert(sqrt(dx * dx + dy * dy) < 6 * 0.5 / M_SQRT2);
  }
  gr_data_close(&d);
}
END_TEST

START_TEST(npy_source_shuffles_per_epoch) {
  char *dir = tu_tmpdir(), path[600], err[512];
  snprintf(path, sizeof path, "%s/d.npy", dir);
  GrTensor t = {GR_F64, 3, {10, 1, 2}, gr_alloc(160)};
  for (int i = 0; i < 20; i++) ((double *)t.data)[i] = i / 2; /* row r = (r, r) */
  ck_assert(gr_npy_write(path, &t, err, sizeof err) == 0);
  gr_tensor_free(&t);
  GrData d;
  ck_assert_msg(gr_data_open(&d, path, 9, 0, err, sizeof err) == 0, "%s", err);
  ck_assert_int_eq(d.row_elems, 2);
  ck_assert_int_eq(d.nrows, 10);
  float x[60];
  ck_assert(gr_data_rows(&d, 0, 30, x, NULL, err, sizeof err) == 0);
  int same_order = 1;
  for (int ep = 0; ep < 3; ep++) {
    int seen[10] = {0};
    for (int r = 0; r < 10; r++) {
      float v = x[(ep * 10 + r) * 2];
      ck_assert(v == x[(ep * 10 + r) * 2 + 1]);
      seen[(int)v]++;
      if (ep == 1 && v != x[r * 2]) same_order = 0;
    }
    for (int r = 0; r < 10; r++) ck_assert_int_eq(seen[r], 1);
  }
  ck_assert_msg(!same_order, "epochs 0 and 1 have the same permutation");
  /* random access (resume) gives the same rows */
  float y[10];
  ck_assert(gr_data_rows(&d, 13, 5, y, NULL, err, sizeof err) == 0);
  ck_assert(memcmp(y, x + 26, sizeof y) == 0);
  gr_data_close(&d);
  /* malformed .npy sources: magic, header dict, data bytes that follow */
  static const struct {
    const char *magic, *dict;
    int hl_extra; /* added to the stored header length (a lying length) */
    size_t ndata;
    const char *want;
  } bad[] = {
      {"\x93NUMPY\x01", "{'descr': '<f4', 'fortran_order': False, 'shape': (100, 2), }", 0, 16, "truncated"},
      {"\x93NUMPY\x01", "{'descr': '<i4', 'fortran_order': False, 'shape': (1, 2), }", 0, 8, "float32 or float64"},
      {"\x93NUMPY\x01", "{'descr': '<f4', 'fortran_order': True, 'shape': (1, 2), }", 0, 8, "Fortran"},
      {"NOTNUMPY\x01", "{'descr': '<f4', 'fortran_order': False, 'shape': (1, 2), }", 0, 8, "bad magic"},
      {"\x93NUMPY\x01", "{'descr': '<f4', 'fortran_order': False, 'shape': (1, 2), }", 5000, 8, "exceeds the file"},
      {"\x93NUMPY\x01", "{'descr': '<f4', 'fortran_order': False, 'shape': (0, 2), }", 0, 0, "empty"},
      {"\x93NUMPY\x01", "{'descr': '<f4', 'fortran_order': False, 'shape': (1, x), }", 0, 8, "malformed shape"},
  };
  for (size_t k = 0; k < sizeof bad / sizeof *bad; k++) {
    unsigned char buf[256] = {0};
    memcpy(buf, bad[k].magic, 7);
    size_t hl = strlen(bad[k].dict), stored = hl + (size_t)bad[k].hl_extra;
    buf[8] = (unsigned char)stored, buf[9] = (unsigned char)(stored >> 8);
    memcpy(buf + 10, bad[k].dict, hl);
    snprintf(path, sizeof path, "%s/bad%zu.npy", dir, k);
    ck_assert(tu_write_file(path, buf, 10 + hl + bad[k].ndata) == 0);
    ck_assert_msg(gr_data_open(&d, path, 0, 0, err, sizeof err) != 0, "case %zu accepted", k);
    ck_assert_msg(strstr(err, bad[k].want) && strstr(err, path), "case %zu: %s", k, err);
  }
  ck_assert(gr_data_open(&d, "swirl", 0, 0, err, sizeof err) != 0);
  ck_assert_msg(strstr(err, "unknown data source 'swirl'"), "%s", err);
  tu_rmtree(dir);
  free(dir);
}
END_TEST

START_TEST(fashion_mnist_if_installed) {
  if (access("/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz", R_OK) != 0 &&
      access("/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte", R_OK) != 0)
    return; /* the data set is optional on a build machine */
  char err[512];
  GrData d;
  ck_assert_msg(gr_data_open(&d, "fashion_mnist", 0, 1, err, sizeof err) == 0, "%s", err); /* eval: t10k */
  ck_assert_int_eq(d.nrows, 10000);
  ck_assert_int_eq(d.row_elems, 784);
  ck_assert(d.has_labels);
  float *x = malloc(784 * 8 * sizeof *x);
  int32_t lab[8];
  ck_assert(gr_data_rows(&d, 0, 8, x, lab, err, sizeof err) == 0);
  float lo = 1, hi = -1;
  for (int i = 0; i < 784 * 8; i++) lo = fminf(lo, x[i]), hi = fmaxf(hi, x[i]);
  ck_assert(lo == -1.0f && hi <= 1.0f && hi > 0.5f);
  for (int i = 0; i < 8; i++) ck_assert(lab[i] >= 0 && lab[i] < 10);
  free(x);
  gr_data_close(&d);
}
END_TEST

START_TEST(sample_times) {
  double t[9];
  char err[256];
  ck_assert(gr_sample_times("imm", 1, 0.994, 0, t, err, sizeof err) == 0);
  ck_assert(t[0] == 0.994 && t[1] == 0);
  ck_assert(gr_sample_times("imm", 2, 1.0, 0, t, err, sizeof err) == 0);
  ck_assert(fabs(t[1] - 1.4 / 2.4) < 1e-15 && t[2] == 0);
  ck_assert(gr_sample_times("imm", 4, 1.0, 0.0, t, err, sizeof err) == 0);
  ck_assert(fabs(t[1] - 0.75) < 1e-15 && fabs(t[2] - 0.5) < 1e-15 && t[4] == 0);
  ck_assert(gr_sample_times("uniform", 2, 1.0, 0.1, t, err, sizeof err) == 0);
  ck_assert(fabs(t[1] - 0.55) < 1e-15 && t[2] == 0.1);
  ck_assert(gr_sample_times("heun", 2, 1.0, 0, t, err, sizeof err) != 0);
  ck_assert(gr_sample_times("imm", 0, 1.0, 0, t, err, sizeof err) != 0);
  ck_assert(gr_sample_times("imm", 2, 0.0, 0.5, t, err, sizeof err) != 0);
  /* the interpolant, in its one place */
  ck_assert(fabsf(gr_interp_ot(2.0f, 1.0f, 0.25, 0.5) - (0.75f * 2 + 0.25f * 0.5f)) < 1e-7f);
}
END_TEST

/* ---- metrics ----------------------------------------------------------------------------- */
static float *gauss(int64_t n, int d, double shift0, uint64_t seed) {
  float *x = malloc((size_t)(n * d) * sizeof *x);
  for (int64_t i = 0; i < n * d; i++) x[i] = (float)gr_normal_f64(seed, 0, 77, (uint64_t)i);
  for (int64_t i = 0; i < n; i++) x[i * d] += (float)shift0;
  return x;
}

START_TEST(metrics_known_values) {
  int64_t n = 600;
  float *x = gauss(n, 2, 0, 1), *y = gauss(n, 2, 0, 2), *z = gauss(n, 2, 2.0, 2);
  ck_assert(gr_energy_distance(x, n, x, n, 2) == 0);
  ck_assert(gr_mmd_rbf(x, n, x, n, 2, 1.0) == 0);
  double e_same = gr_energy_distance(x, n, y, n, 2), e_shift = gr_energy_distance(x, n, z, n, 2);
  ck_assert_msg(e_same >= 0 && e_same < 0.05 && e_shift > 1.0, "energy %g %g", e_same, e_shift);
  double m_same = gr_mmd_rbf(x, n, y, n, 2, 1.0), m_shift = gr_mmd_rbf(x, n, z, n, 2, 1.0);
  ck_assert_msg(m_same < 0.02 && m_shift > 0.3, "mmd %g %g", m_same, m_shift);
  /* sliced W2^2 of a shift delta in d dims = |delta|^2 / d = 4 / 2 */
  ck_assert(gr_sliced_w2(x, x, n, 2, 32, 0) == 0);
  double sw = gr_sliced_w2(x, z, n, 2, 256, 3);
  ck_assert_msg(fabs(sw - 2.0) < 0.3, "sw2 %g", sw);
  /* the combined, pooled version gives the same bits for any thread count */
  double hs[3] = {0.5, 1.0, 2.0}, e1, k1[3], e3, k3[3];
  GrRunCtx rc1 = {.seed = 0, .step = 0, .pool = NULL}, rc3 = {.seed = 0, .step = 0, .pool = gr_pool_create(3)};
  ck_assert(gr_energy_mmd(x, n, z, n, 2, hs, 3, &e1, k1, &rc1) == 0);
  ck_assert(gr_energy_mmd(x, n, z, n, 2, hs, 3, &e3, k3, &rc3) == 0);
  gr_pool_destroy(rc3.pool);
  ck_assert(e1 == e3 && e1 == e_shift && memcmp(k1, k3, sizeof k1) == 0 && k1[1] == m_shift);
  double med = gr_median_dist(x, n, 2); /* |N(0, 2I)| median: 2 sqrt(ln 2) = 1.665 */
  ck_assert_msg(fabs(med - 1.665) < 0.1, "median %g", med);
  free(x), free(y), free(z);
}
END_TEST

START_TEST(frechet_known_values) {
  double mu1[3] = {0, 0, 0}, mu2[3] = {1, 2, 2};
  double c1[9] = {1, 0, 0, 0, 1, 0, 0, 0, 1}, c2[9] = {4, 0, 0, 0, 4, 0, 0, 0, 4};
  /* |mu|^2 + tr(I + 4I - 2 * 2I) = 9 + 3 */
  ck_assert(fabs(gr_frechet(mu1, c1, mu2, c2, 3) - 12) < 1e-9);
  ck_assert(fabs(gr_frechet(mu2, c2, mu2, c2, 3)) < 1e-9);
  /* a non-diagonal pair: C and C give 0 */
  double c3[4] = {2, 0.5, 0.5, 1};
  ck_assert(fabs(gr_frechet(mu1, c3, mu1, c3, 2)) < 1e-9);
  float pts[8] = {1, 2, 3, 4, 5, 6, 7, 8};
  double mu[2], cov[4];
  gr_mean_cov(pts, 4, 2, mu, cov);
  ck_assert(mu[0] == 4 && mu[1] == 5);
  ck_assert(fabs(cov[0] - 20.0 / 3) < 1e-12 && fabs(cov[1] - 20.0 / 3) < 1e-12);
}
END_TEST

static Suite *suite(void) {
  Suite *s = suite_create("runtime_data");
  TCase *tc = tcase_create("data");
  tcase_set_timeout(tc, 30);
  tcase_add_test(tc, builtin_deterministic_and_scaled);
  tcase_add_test(tc, checkerboard_cells_and_labels);
  tcase_add_test(tc, npy_source_shuffles_per_epoch);
  tcase_add_test(tc, fashion_mnist_if_installed);
  tcase_add_test(tc, sample_times);
  tcase_add_test(tc, metrics_known_values);
  tcase_add_test(tc, frechet_known_values);
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
