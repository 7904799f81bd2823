/* gemm.c: matrix products split over the runtime's own thread pool.
 *
 * Generated code calls gr_gemm for every matrix product (compiler/lower.c). f32 products
 * with N >= 16 go to gradc's own AVX-512 kernel when the CPU has it (sgemm.c, about twice
 * OpenBLAS's 256-bit kernels here); the rest comes to OpenBLAS as below. OpenBLAS can
 * thread a product itself, but its idle workers spin in sched_yield between calls, on the
 * same cores as our pool (pool.c) which runs every other kernel. Measured on the IMM 2-D
 * step (4 x 256, B = 1024), CPU time per step: 10.3 ms with 1 thread; pool 2 + OpenBLAS
 * 2: 15.3 ms; pool 1 + OpenBLAS 2: 17.3 ms (the spinning), pool 2 + OpenBLAS 1: 10.1 ms
 * but the products (75 % of the step) stay serial. So OpenBLAS runs single-threaded
 * (blas.c) and the products are split here.
 *
 * The split is a function of the shape only, never of the thread count: C is cut into
 * `n` blocks of whole rows (or columns, whichever dimension is larger; boundaries at
 * multiples of 16), each block is always its own BLAS call, and the threads only decide
 * who makes which calls (gr_parallel_for hands each thread a contiguous run of blocks).
 * So the bits of C never depend on --threads, for any BLAS. (Merging a thread's blocks
 * into one call would not be safe: OpenBLAS's Haswell kernels compute rows near a call's
 * edge in a different order, so a different cut changed ~3 % of the elements of a
 * 1024 x 256 x 256 product in the last bits; its AVX-512 kernels did not. Tested in
 * tests/unit/test_runtime_gemm.c.)
 *
 * Block size: with one thread each extra call re-packs the whole other operand (splitting
 * rows of C re-packs all of B). Measured at 1 thread (IMM D = 2, B = 1024, CPU ms per
 * step, 3 interleaved triples): one call per product 8.18-8.56; blocks of 128 (8 per
 * 1024 rows) 9.16-9.43 (+11 %); blocks of 256, at least 2 (4 per 1024 rows, 2 for the
 * 256-wide weight gradients) 8.53-8.90 (+3 %). So: len / 256 blocks, at least 2 (every
 * product worth splitting feeds both threads of a 2-core machine), at most 16.
 *
 * Small products (under GR_GEMM_MIN_PAR multiply-adds) stay one call: below that the
 * dispatch (a few microseconds) costs more than the second core gains.
 */
#include <cblas.h>
#include <stdint.h>

#include "rt.h"

#ifndef GR_GEMM_BLOCK
#define GR_GEMM_BLOCK 256           /* target rows/columns per block (at least 2 blocks) */
#endif
#define GR_GEMM_MAXBLK 16           /* at most this many blocks (calls) per product */
#ifndef GR_GEMM_MIN_PAR
#define GR_GEMM_MIN_PAR (1LL << 21) /* M N K below this: one call */
#endif

typedef struct {
  int32_t f64, ta, tb, split_n;
  int64_t M, N, K, lda, ldb, ldc;
  const void *A, *B;
  void *C;
} GemmEnv;

/* C[r0:r1, :] (split_n = 0) or C[:, r0:r1] (split_n = 1) with one BLAS call. */
static void gemm_slice(const GemmEnv *e, int64_t r0, int64_t r1) {
  size_t es = e->f64 ? 8 : 4;
  const char *A = e->A, *B = e->B;
  char *C = e->C;
  int64_t M = e->M, N = e->N;
  if (!e->split_n) {
    A += (size_t)(e->ta ? r0 : r0 * e->lda) * es; /* rows of op(A): rows of A, or columns */
    C += (size_t)(r0 * e->ldc) * es;
    M = r1 - r0;
  } else {
    B += (size_t)(e->tb ? r0 * e->ldb : r0) * es; /* columns of op(B) */
    C += (size_t)r0 * es;
    N = r1 - r0;
  }
  enum CBLAS_TRANSPOSE ta = e->ta ? CblasTrans : CblasNoTrans, tb = e->tb ? CblasTrans : CblasNoTrans;
  if (e->f64)
    cblas_dgemm(CblasRowMajor, ta, tb, (int)M, (int)N, (int)e->K, 1.0, (const double *)A, (int)e->lda,
                (const double *)B, (int)e->ldb, 0.0, (double *)C, (int)e->ldc);
  else
    cblas_sgemm(CblasRowMajor, ta, tb, (int)M, (int)N, (int)e->K, 1.0f, (const float *)A, (int)e->lda,
                (const float *)B, (int)e->ldb, 0.0f, (float *)C, (int)e->ldc);
}

/* Start of block b of n over [0, len): b len / n rounded down to a multiple of 16. */
static int64_t block_start(int64_t b, int64_t n, int64_t len) {
  if (b >= n) return len;
  return (int64_t)((__int128)b * len / n) / 16 * 16;
}

static int64_t block_count(int64_t M, int64_t N, int64_t K, int64_t len) {
  if (M * N * K < GR_GEMM_MIN_PAR || len < 32) return 1;
  int64_t n = len / GR_GEMM_BLOCK;
  if (n > GR_GEMM_MAXBLK) n = GR_GEMM_MAXBLK;
  return n < 2 ? 2 : n;
}

typedef struct {
  const GemmEnv *e;
  int64_t n, len;
} BlockEnv;

static void gemm_body(void *env, int64_t lo, int64_t hi) {
  const BlockEnv *be = env;
  for (int64_t b = lo; b < hi; b++) {
    int64_t r0 = block_start(b, be->n, be->len), r1 = block_start(b + 1, be->n, be->len);
    if (r1 > r0) gemm_slice(be->e, r0, r1);
  }
}

void gr_gemm(const GrRunCtx *rc, int32_t f64, int32_t ta, int32_t tb, int64_t M, int64_t N,
             int64_t K, const void *A, int64_t lda, const void *B, int64_t ldb, void *C,
             int64_t ldc) {
  if (M <= 0 || N <= 0) return;
  /* gradc's own kernel computes 32 columns at a time: narrow products (the last layer
   * of a 2-D model, N = 2) waste most of it and stay with OpenBLAS */
  if (!f64 && N >= 16 && gr_sgemm_use_own()) {
    gr_sgemm_avx512(rc, ta, tb, M, N, K, A, lda, B, ldb, C, ldc);
    return;
  }
  GemmEnv e = {f64, ta, tb, N > M, M, N, K, lda, ldb, ldc, A, B, C};
  int64_t len = e.split_n ? N : M;
  BlockEnv be = {&e, block_count(M, N, K, len), len};
  if (be.n == 1) gemm_slice(&e, 0, len);
  else gr_parallel_for(rc, be.n, 1, gemm_body, &be);
}
