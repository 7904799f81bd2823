/* sgemm.c: gradc's own f32 matrix product for CPUs with AVX-512 (BLIS-style).
 *
 * Why not OpenBLAS for everything: matrix products are 75-90 % of a training step, and
 * on this project's machines OpenBLAS runs its 256-bit `Haswell` kernels (the environment
 * sets OPENBLAS_CORETYPE=Haswell; docs/performance.md), about half of what the cores can
 * do with 512-bit FMAs. This file is one 512-bit kernel, written for the shapes training
 * steps have (M = batch or features, N, K = 64..1024), used whenever the CPU has AVX-512F
 * (checked once at run time). f64 products and CPUs without AVX-512 keep OpenBLAS (gemm.c).
 *
 * The algorithm is the usual one (Goto/BLIS): for each chunk of KC values of k,
 *   1. pack op(B)[k0:k1, :] into column panels of NR = 32 (k-major, zero-padded), once,
 *      shared by all threads (when M <= 128 and B is not transposed, the kernel reads B
 *      in place instead);
 *   2. cut the rows of C into units of MC rows; each thread reads op(A)[rows, k0:k1] in
 *      place, 8 rows at a time (only a last panel of fewer than 8 rows is packed,
 *      zero-padded, with 16 x 16 in-register transposes when A is row-major, on the
 *      thread's stack), then
 *   3. runs the MR x NR micro-kernel over every (row panel, column panel) pair: 16 zmm
 *      accumulators, per k two loads of B and eight broadcast FMAs.
 * Every element of C is the sum over k in ascending order, chunk by chunk, with one FMA
 * per term: the result does not depend on how rows are cut or on the thread count.
 *
 * Nothing is allocated: the B panel (KC x NC floats, 512 KiB) lives on the caller's stack
 * and a partial A panel (MR x KC, 8 KiB) on each worker's; N is processed NC columns at a
 * time.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "rt.h"

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>

#define MR 8   /* rows of a micro-tile: broadcasts from packed A */
#define NR 32  /* columns of a micro-tile: two zmm registers */
#define KC 256 /* k per packed chunk: an NR-wide B panel is 32 KiB, in L1 */
#define MC 64  /* rows per unit of work (one thread packs and runs them) */
#define NC 512 /* columns per packed B block */

typedef struct {
  int ta, tb;
  int64_t M, N, K, lda, ldb, ldc;
  const float *A, *B;
  float *C;
  int64_t k0, kc, j0, nc; /* this pass: op(A)[:, k0:k0+kc] op(B)[k0:k0+kc, j0:j0+nc] */
  float *bp;               /* packed B of this pass */
  int64_t groups, gw;      /* units per MC rows: column groups of gw columns (NR multiple) */
  int direct_b;            /* the kernel reads B in place (no packing) */
} Pass;

#define TARGET __attribute__((target("avx512f,fma")))

/* Lanes [0, w) of one zmm of 16 floats (w < 0: none, w >= 16: all): the columns of a
 * panel of width w are col_mask(w) and col_mask(w - 16). */
static inline __mmask16 col_mask(int64_t w) {
  return (__mmask16)(w <= 0 ? 0 : w >= 16 ? 0xffff : (1u << w) - 1);
}

/* In-register transpose of 16 x 16 floats: r[i][j] -> r[j][i] (unpack within 128-bit
 * lanes, then two rounds of 128-bit lane shuffles). */
TARGET static inline void transpose16(__m512 r[16]) {
  __m512 t[16];
#pragma GCC unroll 16
  for (int i = 0; i < 16; i += 2) {
    t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);
    t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
  }
#pragma GCC unroll 16
  for (int i = 0; i < 16; i += 4) { /* r[i + m], lane q: rows i..i+3 of column 4q + m */
    r[i] = _mm512_shuffle_ps(t[i], t[i + 2], 0x44);
    r[i + 1] = _mm512_shuffle_ps(t[i], t[i + 2], 0xEE);
    r[i + 2] = _mm512_shuffle_ps(t[i + 1], t[i + 3], 0x44);
    r[i + 3] = _mm512_shuffle_ps(t[i + 1], t[i + 3], 0xEE);
  }
#pragma GCC unroll 4
  for (int m = 0; m < 4; m++) {
    __m512 u0 = _mm512_shuffle_f32x4(r[m], r[4 + m], 0x88), u1 = _mm512_shuffle_f32x4(r[m], r[4 + m], 0xDD);
    __m512 u2 = _mm512_shuffle_f32x4(r[8 + m], r[12 + m], 0x88), u3 = _mm512_shuffle_f32x4(r[8 + m], r[12 + m], 0xDD);
    t[m] = _mm512_shuffle_f32x4(u0, u2, 0x88);
    t[8 + m] = _mm512_shuffle_f32x4(u0, u2, 0xDD);
    t[4 + m] = _mm512_shuffle_f32x4(u1, u3, 0x88);
    t[12 + m] = _mm512_shuffle_f32x4(u1, u3, 0xDD);
  }
#pragma GCC unroll 16
  for (int i = 0; i < 16; i++) r[i] = t[i];
}

/* Packs `rows` rows of src (row stride ld, kc values each) k-major: dst[k * width + r] =
 * src[r * ld + k] for r < rows, 0 for rows <= r < min(width, 16); width is 8 (A panels:
 * only the low 8 floats of each transposed row are stored) or 32 (B panels: 16 of the
 * 32 columns per call). */
TARGET static void transpose_rows(const float *src, int64_t ld, int64_t rows, int64_t kc, float *dst,
                                  int64_t width) {
  int64_t nr = rows < 0 ? 0 : rows > 16 ? 16 : rows;
  if (width == 8 && nr > 8) nr = 8;
  for (int64_t k = 0; k < kc; k += 16) {
    int64_t n = kc - k < 16 ? kc - k : 16;
    __mmask16 km = (__mmask16)(n == 16 ? 0xffff : (1u << n) - 1);
    __m512 r[16];
#pragma GCC unroll 16
    for (int i = 0; i < 16; i++) /* rows past nr: a load with an empty mask reads nothing */
      r[i] = _mm512_maskz_loadu_ps(i < nr ? km : 0, src + (i < nr ? i : 0) * ld + k);
    transpose16(r);
    if (width == 8) {
#pragma GCC unroll 16
      for (int kk = 0; kk < 16; kk++)
        if (kk < n) _mm256_store_ps(dst + (k + kk) * 8, _mm512_castps512_ps256(r[kk]));
    } else {
#pragma GCC unroll 16
      for (int kk = 0; kk < 16; kk++)
        if (kk < n) _mm512_store_ps(dst + (k + kk) * width, r[kk]);
    }
  }
}

/* Packs panels [lo, hi) of op(B)[k0:k0+kc, j0:j0+nc] (panel q: columns [q NR, +NR)),
 * each kc x NR, into p->bp. */
TARGET static void pack_b(void *env, int64_t lo, int64_t hi) {
  const Pass *p = env;
  for (int64_t jp = lo * NR; jp < hi * NR && jp < p->nc; jp += NR) {
    int64_t w = p->nc - jp < NR ? p->nc - jp : NR, j = p->j0 + jp;
    float *d = p->bp + jp * p->kc;
    if (!p->tb) {
      __mmask16 m0 = col_mask(w), m1 = col_mask(w - 16);
      for (int64_t k = 0; k < p->kc; k++) {
        const float *s = p->B + (p->k0 + k) * p->ldb + j;
        _mm512_store_ps(d + k * NR, _mm512_maskz_loadu_ps(m0, s));
        _mm512_store_ps(d + k * NR + 16, _mm512_maskz_loadu_ps(m1, s + 16));
      }
    } else { /* B is [N, K]: column j of op(B) is row j of B; 16 x 16 transposes */
      for (int64_t h = 0; h < NR; h += 16)
        transpose_rows(p->B + (j + h) * p->ldb + p->k0, p->ldb, w - h, p->kc, d + h, NR);
    }
  }
}

/* Packs op(A)[i0:i0+mc, k0:k0+kc] into ceil(mc / MR) panels of kc x MR. */
TARGET static void pack_a(const Pass *p, int64_t i0, int64_t mc, float *restrict dst) {
  for (int64_t ip = 0; ip < mc; ip += MR) {
    int64_t h = mc - ip < MR ? mc - ip : MR, i = i0 + ip;
    float *d = dst + ip * p->kc;
    if (p->ta) { /* A is [K, M]: row i of op(A) is column i of A */
      __mmask16 m = (__mmask16)((1u << h) - 1);
      for (int64_t k = 0; k < p->kc; k++) {
        __m512 v = _mm512_maskz_loadu_ps(m, p->A + (p->k0 + k) * p->lda + i);
        _mm256_store_ps(d + k * MR, _mm512_castps512_ps256(v));
      }
    } else {
      transpose_rows(p->A + i * p->lda + p->k0, p->lda, h, p->kc, d, MR);
    }
  }
}

/* C[0:h, 0:w] (+)= a-panel x b-panel over kc: the MR x NR micro-kernel. acc: add to C. */
TARGET static void kernel(int64_t kc, const float *restrict a, int64_t ak, int64_t ar,
                          const float *restrict b, int64_t bs, float *c, int64_t ldc, int64_t h,
                          int64_t w, int acc) {
  __mmask16 m0 = col_mask(w), m1 = col_mask(w - 16);
  __m512 c0[MR], c1[MR];
#pragma GCC unroll 8
  for (int r = 0; r < MR; r++) c0[r] = c1[r] = _mm512_setzero_ps();
  for (int64_t k = 0; k < kc; k++) {
    __m512 b0 = _mm512_maskz_loadu_ps(m0, b), b1 = _mm512_maskz_loadu_ps(m1, b + 16);
#pragma GCC unroll 8
    for (int r = 0; r < MR; r++) {
      __m512 av = _mm512_set1_ps(a[r * ar]);
      c0[r] = _mm512_fmadd_ps(av, b0, c0[r]);
      c1[r] = _mm512_fmadd_ps(av, b1, c1[r]);
    }
    a += ak, b += bs;
  }
#pragma GCC unroll 8
  for (int r = 0; r < MR; r++) {
    if (r >= h) break;
    float *cr = c + r * ldc;
    if (acc) {
      c0[r] = _mm512_add_ps(_mm512_maskz_loadu_ps(m0, cr), c0[r]);
      c1[r] = _mm512_add_ps(_mm512_maskz_loadu_ps(m1, cr + 16), c1[r]);
    }
    _mm512_mask_storeu_ps(cr, m0, c0[r]);
    _mm512_mask_storeu_ps(cr + 16, m1, c1[r]);
  }
}

/* A is read in place (whole 8-row panels): the kernel's 8 broadcasts per k come from 8
 * rows (or 8 neighbours in a row of a transposed A), all in L1. Measured, 1 thread,
 * against packing every panel: 1024 x 256 x 256 222 -> 244-253 GFLOP/s, 848 x 256 x 1024
 * (A transposed) 209-214 -> 239-242, 1024 x 784 x 256 212-223 -> 240-243.
 *
 * Units [lo, hi) of this pass: unit u is rows [MC (u / groups), +MC) x column group
 * u % groups. */
TARGET static void pass_units(void *env, int64_t lo, int64_t hi) {
  const Pass *p = env;
  float ap[MR * KC] __attribute__((aligned(64))); /* a last panel of fewer than MR rows */
  for (int64_t u = lo; u < hi; u++) {
    int64_t i0 = u / p->groups * MC, mc = p->M - i0 < MC ? p->M - i0 : MC;
    int64_t g0 = u % p->groups * p->gw, g1 = g0 + p->gw < p->nc ? g0 + p->gw : p->nc;
    /* whole panels of 8 rows are read in place; a last partial one is packed (reading
     * 8 rows in place there could run past the end of A) */
    int64_t full = mc / MR * MR;
    if (full < mc) pack_a(p, i0 + full, mc - full, ap);
    for (int64_t jp = g0; jp < g1; jp += NR)
      for (int64_t ip = 0; ip < mc; ip += MR)
        kernel(p->kc,
               ip < full ? (p->ta ? p->A + p->k0 * p->lda + i0 + ip : p->A + (i0 + ip) * p->lda + p->k0)
                         : ap + (ip - full) * p->kc,
               ip < full ? (p->ta ? p->lda : 1) : MR, ip < full ? (p->ta ? 1 : p->lda) : 1,
               p->direct_b ? p->B + p->k0 * p->ldb + p->j0 + jp : p->bp + jp * p->kc,
               p->direct_b ? p->ldb : NR, p->C + (i0 + ip) * p->ldc + p->j0 + jp,
               p->ldc, mc - ip < MR ? mc - ip : MR, p->nc - jp < NR ? p->nc - jp : NR, p->k0 > 0);
  }
}

int gr_sgemm_avx512_ok(void) {
  static int ok = -1;
  if (ok < 0) ok = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("fma");
  return ok;
}

void gr_sgemm_avx512(const GrRunCtx *rc, int ta, int tb, int64_t M, int64_t N, int64_t K,
                     const float *A, int64_t lda, const float *B, int64_t ldb, float *C,
                     int64_t ldc) {
  float bp[KC * NC] __attribute__((aligned(64)));
  if (K <= 0) { /* an empty sum: C = 0 */
    for (int64_t i = 0; i < M; i++) memset(C + i * ldc, 0, (size_t)N * sizeof *C);
    return;
  }
  Pass p = {.ta = ta, .tb = tb, .M = M, .N = N, .K = K, .lda = lda, .ldb = ldb, .ldc = ldc,
            .A = A, .B = B, .C = C, .bp = bp};
  int64_t rows = (M + MC - 1) / MC;
  /* Few rows: packing B (all of it, for a handful of micro-tiles) costs more than reading
   * it in place. Measured, 1 thread: 64 x 256 x 256 214-217 GFLOP/s packed, 233-240 in
   * place; 1024 x 784 x 256 232 packed, 158-209 in place (a 3 KiB row stride thrashes
   * L1 sets). */
  p.direct_b = !tb && M <= 2 * MC;
  /* below ~2M multiply-adds a second thread's wake-up costs more than it saves */
  int par = M * N * K >= (1LL << 21);
  for (p.j0 = 0; p.j0 < N; p.j0 += NC) {
    p.nc = N - p.j0 < NC ? N - p.j0 : NC;
    /* few row units (small M): also cut the columns, into groups of 4 panels */
    p.gw = rows >= 4 || !par ? NC : 4 * NR;
    p.groups = (p.nc + p.gw - 1) / p.gw;
    int64_t units = rows * p.groups;
    for (p.k0 = 0; p.k0 < K; p.k0 += KC) {
      p.kc = K - p.k0 < KC ? K - p.k0 : KC;
      int64_t panels = (p.nc + NR - 1) / NR;
      if (p.direct_b) {
        if (par && units > 1) gr_parallel_for(rc, units, 1, pass_units, &p);
        else pass_units(&p, 0, units);
      } else if (par && units > 1) { /* packing B is ~5 % of the work: split it too */
        gr_parallel_for(rc, panels, 1, pack_b, &p);
        gr_parallel_for(rc, units, 1, pass_units, &p);
      } else {
        pack_b(&p, 0, panels);
        pass_units(&p, 0, units);
      }
    }
  }
}

int gr_sgemm_use_own(void) {
  static int own = -1;
  if (own < 0) {
    const char *e = getenv("GRADC_GEMM");
    own = gr_sgemm_avx512_ok() && !(e && !strcmp(e, "blas"));
  }
  return own;
}

#else /* not x86-64 with GCC/clang: OpenBLAS does every product */
int gr_sgemm_avx512_ok(void) { return 0; }
int gr_sgemm_use_own(void) { return 0; }
void gr_sgemm_avx512(const GrRunCtx *rc, int ta, int tb, int64_t M, int64_t N, int64_t K,
                     const float *A, int64_t lda, const float *B, int64_t ldb, float *C,
                     int64_t ldc) {
  (void)rc, (void)ta, (void)tb, (void)M, (void)N, (void)K, (void)A, (void)lda, (void)B, (void)ldb,
      (void)C, (void)ldc;
}
#endif
