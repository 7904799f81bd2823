/* kernels.c: GFLOP/s of gradc's generated kernels next to the machine's peak.
 *
 * Why: the training step is a few matrix products (BLAS) and many fused elementwise
 * loops (generated). This prints, on the calling thread, (1) a peak measured with an FMA
 * loop of independent vector accumulators, (2) a fused elementwise chain
 * y = silu(x * a + b) * c compiled by gradc at the training setting (flops counted as one
 * per op and element, so memory-bound numbers are expected), (3) a row-sum reduction,
 * (4) the matrix products of an MLP layer (NN, NT, TN), through the same compiled
 * entries. Single-thread times use CLOCK_THREAD_CPUTIME_ID (the machine is shared).
 * Not a test: it never asserts speed.
 *
 * Build (from the repository root, after `make`):
 *   sh bench/build.sh && build/bench/kernels
 */
#include <immintrin.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "codegen.h"
#include "gradrt.h"

static double cpu(void) {
  struct timespec t;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
  return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* 12 independent 8-wide FMA chains (ymm; Zen 4 runs 512-bit FMAs at half rate anyway),
 * unrolled so they stay in registers: 192 flops per iteration. bench/peak.c does the same
 * with the widest vectors and several threads. */
static double peak_gflops(void) {
  __m256 m = _mm256_set1_ps(0.999999f), a = _mm256_set1_ps(1e-7f);
  __m256 c0 = _mm256_set1_ps(0), c1 = _mm256_set1_ps(1), c2 = _mm256_set1_ps(2), c3 = _mm256_set1_ps(3);
  __m256 c4 = _mm256_set1_ps(4), c5 = _mm256_set1_ps(5), c6 = _mm256_set1_ps(6), c7 = _mm256_set1_ps(7);
  __m256 c8 = _mm256_set1_ps(8), c9 = _mm256_set1_ps(9), c10 = _mm256_set1_ps(10), c11 = _mm256_set1_ps(11);
  long iters = 20000000;
  double t0 = cpu();
  for (long it = 0; it < iters; it++) {
#define F(c) c = _mm256_fmadd_ps(c, m, a)
    F(c0); F(c1); F(c2); F(c3); F(c4); F(c5); F(c6); F(c7); F(c8); F(c9); F(c10); F(c11);
#undef F
  }
  double dt = cpu() - t0;
  __m256 s = _mm256_add_ps(_mm256_add_ps(_mm256_add_ps(c0, c1), _mm256_add_ps(c2, c3)),
                           _mm256_add_ps(_mm256_add_ps(c4, c5), _mm256_add_ps(c6, c7)));
  s = _mm256_add_ps(s, _mm256_add_ps(_mm256_add_ps(c8, c9), _mm256_add_ps(c10, c11)));
  float out[8];
  _mm256_storeu_ps(out, s);
  if (out[0] == 12345.f) printf(" ");
  return 192.0 * (double)iters / dt * 1e-9;
}

typedef struct {
  Ctx c;
  Program p;
  Graph *g;
} Prog;

static void prog_init(Prog *q) {
  ctx_init(&q->c);
  program_init(&q->p, &q->c);
  q->g = program_add_entry(&q->p, "k");
}

/* Times entry k of q (inputs given, params none) for ~0.5 s; returns seconds per call. */
static double time_entry(Prog *q, void **args) {
  CgOptions o;
  cg_options_default(&o);
  CgJit *j = cg_jit_compile(&q->c, &q->p, &o);
  if (!j) {
    diag_print_all(&q->c, stderr);
    exit(1);
  }
  cg_jit_call(j, "k", args, 1, 0);
  long n = 0;
  double t0 = cpu();
  while (cpu() - t0 < 0.5) {
    cg_jit_call(j, "k", args, 1, (uint64_t)n);
    n++;
  }
  double dt = (cpu() - t0) / (double)n;
  cg_jit_free(j);
  return dt;
}

static void *buf(int64_t n) {
  float *p = gr_alloc((size_t)n * 4);
  for (int64_t i = 0; i < n; i++) p[i] = (float)((i % 17) * 0.05 - 0.4);
  return p;
}

static void bench_elementwise(int64_t n) {
  Prog q;
  prog_init(&q);
  Shape s = {1, {n}};
  SrcLoc L = SRCLOC_NONE;
  graph_add_input(q.g, "x", DT_F32, &s);
  ValId x = ir_input(q.g, 0, L);
  ValId a = ir_const(q.g, 1.5, DT_F32, &s, L), b = ir_const(q.g, 0.25, DT_F32, &s, L), c = ir_const(q.g, 0.5, DT_F32, &s, L);
  ValId y = ir_binary(q.g, OP_MUL, ir_unary(q.g, OP_SILU, ir_binary(q.g, OP_ADD, ir_binary(q.g, OP_MUL, x, a, L), b, L), L), c, L);
  graph_add_output(q.g, "y", y);
  void *args[2] = {buf(n), buf(n)};
  double dt = time_entry(&q, args);
  double flops = 6.0 * (double)n; /* mul, add, silu (neg, exp, add, div, mul counted as 3), mul */
  printf("  fused silu(x*a+b)*c   n=%-9lld %8.3f us  %6.1f GFLOP/s  %6.1f GB/s\n", (long long)n, dt * 1e6,
         flops / dt * 1e-9, 8.0 * (double)n / dt * 1e-9);
  gr_free(args[0]);
  gr_free(args[1]);
  program_free(&q.p);
  ctx_free(&q.c);
}

static void bench_rowsum(int64_t r, int64_t cc) {
  Prog q;
  prog_init(&q);
  Shape s = {2, {r, cc}};
  SrcLoc L = SRCLOC_NONE;
  graph_add_input(q.g, "x", DT_F32, &s);
  ValId x = ir_input(q.g, 0, L);
  graph_add_output(q.g, "y", ir_reduce(q.g, OP_SUM, ir_binary(q.g, OP_MUL, x, x, L), 2, L));
  void *args[2] = {buf(r * cc), buf(r)};
  double dt = time_entry(&q, args);
  printf("  row sum of squares    %lldx%-5lld %8.3f us  %6.1f GFLOP/s\n", (long long)r, (long long)cc, dt * 1e6,
         2.0 * (double)(r * cc) / dt * 1e-9);
  gr_free(args[0]);
  gr_free(args[1]);
  program_free(&q.p);
  ctx_free(&q.c);
}

static void bench_matmul(int64_t m, int64_t k, int64_t n, int ta, int tb) {
  Prog q;
  prog_init(&q);
  Shape sa = {2, {ta ? k : m, ta ? m : k}}, sb = {2, {tb ? n : k, tb ? k : n}};
  SrcLoc L = SRCLOC_NONE;
  graph_add_input(q.g, "a", DT_F32, &sa);
  graph_add_input(q.g, "b", DT_F32, &sb);
  graph_add_output(q.g, "c", ir_matmul(q.g, ir_input(q.g, 0, L), ir_input(q.g, 1, L), ta, tb, L));
  void *args[3] = {buf(m * k), buf(k * n), buf(m * n)};
  double dt = time_entry(&q, args);
  printf("  matmul %s%s %5lldx%-5lldx%-5lld %8.3f us  %6.1f GFLOP/s\n", ta ? "T" : "N", tb ? "T" : "N", (long long)m,
         (long long)k, (long long)n, dt * 1e6, 2.0 * (double)(m * k * n) / dt * 1e-9);
  for (int i = 0; i < 3; i++) gr_free(args[i]);
  program_free(&q.p);
  ctx_free(&q.c);
}

int main(void) {
  double peak = peak_gflops();
  printf("peak (FMA loop, 1 thread): %.1f GFLOP/s\n", peak);
  bench_elementwise(4096);
  bench_elementwise(262144);
  bench_elementwise(4194304);
  bench_rowsum(1024, 256);
  static const int64_t mm[][3] = {{64, 256, 256}, {1024, 256, 256}, {256, 1024, 256}, {1024, 784, 256}};
  for (int i = 0; i < 4; i++) {
    bench_matmul(mm[i][0], mm[i][1], mm[i][2], 0, 0);
    bench_matmul(mm[i][0], mm[i][1], mm[i][2], 0, 1);
    bench_matmul(mm[i][0], mm[i][1], mm[i][2], 1, 0);
  }
  printf("(ratios to the peak matter; absolute numbers depend on the machine and its load)\n");
  return 0;
}
