/* test_runtime_gemm.c: gr_gemm (runtime/gemm.c), the matrix products split over the pool.
 *
 * Generated code sends every matrix product through gr_gemm, which cuts C into blocks of
 * rows or columns and runs one BLAS call per block on the pool's threads. Two properties
 * matter: the product is right (against a plain f64 triple loop, every transpose
 * combination, shapes that do and do not divide into blocks, f32 and f64), and the bits do
 * not depend on the thread count (design rule: results never change with --threads). */
#include <check.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "gradrt.h"

typedef struct {
  int64_t M, N, K;
  int ta, tb, f64;
} Case;

/* op(A) [M, K], op(B) [K, N]; A stored [K, M] when ta, B stored [N, K] when tb. */
static double ref_elem(const Case *c, const double *A, const double *B, int64_t i, int64_t j) {
  double s = 0;
  for (int64_t k = 0; k < c->K; k++) {
    double a = c->ta ? A[k * c->M + i] : A[i * c->K + k];
    double b = c->tb ? B[j * c->K + k] : B[k * c->N + j];
    s += a * b;
  }
  return s;
}

static void fill(double *x, int64_t n, unsigned seed) {
  srand(seed);
  for (int64_t i = 0; i < n; i++) x[i] = (double)rand() / RAND_MAX - 0.5;
}

/* Runs c with 1, 2 and 3 threads: all bit-identical and close to the f64 reference. */
static void check_case(const Case *c) {
  int64_t na = c->M * c->K, nb = c->K * c->N, nc = c->M * c->N;
  size_t es = c->f64 ? 8 : 4;
  double *A = malloc((size_t)na * 8), *B = malloc((size_t)nb * 8);
  fill(A, na, 1), fill(B, nb, 2);
  void *Ac = malloc((size_t)na * es), *Bc = malloc((size_t)nb * es);
  for (int64_t i = 0; i < na; i++)
    if (c->f64) ((double *)Ac)[i] = A[i];
    else ((float *)Ac)[i] = (float)A[i];
  for (int64_t i = 0; i < nb; i++)
    if (c->f64) ((double *)Bc)[i] = B[i];
    else ((float *)Bc)[i] = (float)B[i];
  int64_t lda = c->ta ? c->M : c->K, ldb = c->tb ? c->K : c->N;
  void *C[3];
  for (int t = 0; t < 3; t++) {
    C[t] = malloc((size_t)nc * es);
    memset(C[t], 0xff, (size_t)nc * es); /* NaN: every element must be written */
    GrRunCtx rc = {.pool = gr_pool_create(t + 1)};
    gr_gemm(&rc, c->f64, c->ta, c->tb, c->M, c->N, c->K, Ac, lda, Bc, ldb, C[t], c->N);
    gr_pool_destroy(rc.pool);
  }
  for (int t = 1; t < 3; t++)
    ck_assert_msg(!memcmp(C[0], C[t], (size_t)nc * es), "%lldx%lldx%lld ta%d tb%d f64=%d: %d threads differ",
                  (long long)c->M, (long long)c->N, (long long)c->K, c->ta, c->tb, c->f64, t + 1);
  double tol = c->f64 ? 1e-12 : 1e-5;
  for (int64_t i = 0; i < c->M; i += 1 + c->M / 37)
    for (int64_t j = 0; j < c->N; j += 1 + c->N / 41) {
      double want = ref_elem(c, A, B, i, j);
      double got = c->f64 ? ((double *)C[0])[i * c->N + j] : ((float *)C[0])[i * c->N + j];
      ck_assert_msg(fabs(got - want) <= tol * (1 + sqrt((double)c->K)), "C[%lld,%lld] = %g, want %g",
                    (long long)i, (long long)j, got, want);
    }
  for (int t = 0; t < 3; t++) free(C[t]);
  free(A), free(B), free(Ac), free(Bc);
}

START_TEST(split_rows_all_transposes) {
  /* M > N: split over rows of C; 1000 is not a multiple of the 64-row block */
  for (int ta = 0; ta < 2; ta++)
    for (int tb = 0; tb < 2; tb++) {
      Case c = {1000, 130, 70, ta, tb, 0};
      check_case(&c);
    }
}
END_TEST

START_TEST(split_columns_all_transposes) {
  /* N > M: split over columns of C (the weight-gradient shape X^T dY is [in, out]) */
  for (int ta = 0; ta < 2; ta++)
    for (int tb = 0; tb < 2; tb++) {
      Case c = {96, 700, 129, ta, tb, 0};
      check_case(&c);
    }
}
END_TEST

START_TEST(f64_and_small) {
  Case big = {300, 200, 90, 1, 0, 1}; /* f64, split */
  check_case(&big);
  Case small = {5, 7, 3, 0, 1, 0}; /* below the split threshold: one call */
  check_case(&small);
  Case narrow = {64, 64, 1024, 1, 0, 0}; /* 64 rows: the minimum 2 blocks of 32 */
  check_case(&narrow);
  Case k0 = {130, 70, 0, 0, 0, 0}; /* K = 0: C = 0 */
  check_case(&k0);
}
END_TEST

START_TEST(imm_layer_shapes) {
  /* the IMM step's products at B = 1024, width 256: forward, input and weight gradients */
  Case fwd = {1024, 256, 256, 0, 0, 0}, dx = {1024, 256, 256, 0, 1, 0}, dw = {256, 256, 1024, 1, 0, 0};
  check_case(&fwd);
  check_case(&dx);
  check_case(&dw);
}
END_TEST

START_TEST(own_kernel_blocking) {
  /* runtime/sgemm.c (used for f32 when the CPU has AVX-512): N > NC = 512 (two column
   * blocks), K > KC = 256 (three k passes accumulated into C), M not a multiple of MR = 8
   * and only two row units (so the columns are cut into groups too), N not a multiple
   * of NR = 32; and a tiny product below the split threshold */
  for (int ta = 0; ta < 2; ta++)
    for (int tb = 0; tb < 2; tb++) {
      Case c = {77, 1100, 600, ta, tb, 0};
      check_case(&c);
      Case tiny = {3, 40, 5, ta, tb, 0};
      check_case(&tiny);
    }
}
END_TEST

static Suite *suite(void) {
  Suite *s = suite_create("runtime_gemm");
  TCase *tc = tcase_create("gemm");
  tcase_set_timeout(tc, 30);
  tcase_add_test(tc, split_rows_all_transposes);
  tcase_add_test(tc, split_columns_all_transposes);
  tcase_add_test(tc, f64_and_small);
  tcase_add_test(tc, imm_layer_shapes);
  tcase_add_test(tc, own_kernel_blocking);
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
