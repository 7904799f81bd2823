/* peak.c: measure this machine's fp32 FMA peak, the denominator of "% of peak".
 *
 * Why measure rather than compute from the data sheet: the benchmark machines are
 * virtual, their clocks float, and whether a 512-bit FMA runs at full or half rate
 * depends on the core. An FMA-only loop with enough independent accumulators to hide
 * the FMA latency (latency 4 x 2 ports = 8 in flight; we use 16) runs at the issue
 * limit, which is the number a matrix-multiply kernel can at best reach.
 *
 * Build: cc -O2 -march=native -pthread bench/peak.c -o build/bench/peak
 * Usage: peak [seconds_per_measurement=0.3] [max_threads=2]
 * Prints one line per thread count: "threads N gflops G isa ISA", the best of 3 runs.
 * Each thread's rate is its flops per second of its own CPU time (CLOCK_THREAD_CPUTIME_ID),
 * summed over threads: on a shared, busy machine wall time would count the time other
 * jobs hold the core, and the peak would come out low.
 */
#include <immintrin.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#if defined(__AVX512F__)
#define ISA "avx512"
#define NACC 16 /* of 32 zmm registers; unrolled, so they stay in registers */
typedef __m512 vec;
#define VLEN 16
#define VSET1(x) _mm512_set1_ps(x)
#define VFMA(a, b, c) _mm512_fmadd_ps(a, b, c)
#define VADD(a, b) _mm512_add_ps(a, b)
#define VSUM(a) _mm512_reduce_add_ps(a)
#elif defined(__FMA__)
#define ISA "avx2-fma"
#define NACC 12 /* of 16 ymm registers, leaving room for the constants */
typedef __m256 vec;
#define VLEN 8
#define VSET1(x) _mm256_set1_ps(x)
#define VFMA(a, b, c) _mm256_fmadd_ps(a, b, c)
#define VADD(a, b) _mm256_add_ps(a, b)
static float vsum256(__m256 a) {
  float t[8];
  _mm256_storeu_ps(t, a);
  return t[0] + t[1] + t[2] + t[3] + t[4] + t[5] + t[6] + t[7];
}
#define VSUM(a) vsum256(a)
#else
#error "peak.c needs FMA (build with -march=native on an x86-64 with FMA)"
#endif

#define INNER 1000 /* iterations between clock checks */

typedef struct {
  double seconds; /* how long to run (thread CPU time) */
  double flops;   /* out: flops done */
  double elapsed; /* out: thread CPU seconds */
  float sink;     /* out: keeps the result alive */
} Job;

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* NACC independent chains of acc = acc * m + a: 2 flops per lane per FMA. */
static void *fma_loop(void *arg) {
  Job *job = arg;
  vec acc[NACC];
  const vec m = VSET1(0.999999f), a = VSET1(1e-7f);
  for (int i = 0; i < NACC; i++) acc[i] = VSET1((float)i);
  double t0 = now(), t1 = t0;
  int64_t iters = 0;
  while (t1 - t0 < job->seconds) {
    for (int k = 0; k < INNER; k++) {
#pragma GCC unroll 16 /* >= NACC */
      for (int i = 0; i < NACC; i++) acc[i] = VFMA(acc[i], m, a);
    }
    iters += INNER;
    t1 = now();
  }
  vec s = acc[0];
  for (int i = 1; i < NACC; i++) s = VADD(s, acc[i]);
  job->sink = VSUM(s);
  job->flops = (double)iters * NACC * VLEN * 2.0;
  job->elapsed = t1 - t0;
  return NULL;
}

static double measure(int nthreads, double seconds) {
  pthread_t th[64];
  Job jobs[64];
  for (int i = 0; i < nthreads; i++) {
    jobs[i] = (Job){ .seconds = seconds };
    if (pthread_create(&th[i], NULL, fma_loop, &jobs[i]) != 0) return -1.0;
  }
  double rate = 0.0;
  float sink = 0.0f;
  for (int i = 0; i < nthreads; i++) {
    pthread_join(th[i], NULL);
    rate += jobs[i].flops / jobs[i].elapsed;
    sink += jobs[i].sink;
  }
  if (sink == 12345.0f) fputs("", stderr); /* never true; uses sink */
  return rate / 1e9;
}

int main(int argc, char **argv) {
  double seconds = argc > 1 ? atof(argv[1]) : 0.3;
  int maxt = argc > 2 ? atoi(argv[2]) : 2;
  if (seconds <= 0.0 || maxt < 1 || maxt > 64) {
    fprintf(stderr, "usage: peak [seconds>0] [threads 1..64]\n");
    return 2;
  }
  for (int n = 1; n <= maxt; n++) {
    double best = 0.0;
    for (int rep = 0; rep < 3; rep++) {
      double g = measure(n, seconds);
      if (g < 0) {
        fprintf(stderr, "peak: cannot start %d threads\n", n);
        return 1;
      }
      if (g > best) best = g;
    }
    printf("threads %d gflops %.1f isa %s\n", n, best, ISA);
  }
  return 0;
}
