/* blas.c: how the runtime sets up OpenBLAS before the first matrix product.
 *
 * Matrix products are 80-90 % of a training step at batch >= 256, and they are calls to
 * OpenBLAS's cblas_sgemm. OpenBLAS starts one thread per core and its idle threads spin
 * (sched_yield loops) between calls, on the cores our own pool (pool.c) needs for every
 * other kernel. Measured (IMM 2-D, 4 x 256, B = 1024, CPU time per step, load average
 * ~8): `--threads 1` with OpenBLAS's default 2 threads: 62.8 ms, half of it system time
 * in the spinning thread; OpenBLAS at 1 thread: 28 ms (Haswell kernels) / 10.3 ms
 * (AVX-512 kernels); pool 2 + OpenBLAS 2: 15.3 ms; pool 1 + OpenBLAS 2: 17.3 ms.
 * So OpenBLAS always runs single-threaded in gradc's executables, and gr_gemm
 * (gemm.c) splits the products over our pool instead: `--threads N` is the one knob.
 * GRADC_BLAS_THREADS=N overrides it (for experiments); OPENBLAS_NUM_THREADS is ignored,
 * since the pool already uses the cores.
 *
 * Kernel choice: OpenBLAS reads OPENBLAS_CORETYPE at load time. On this project's
 * machines the environment sets OPENBLAS_CORETYPE=Haswell (256-bit AVX2 kernels); unset,
 * OpenBLAS 0.3.21 detects the CPU as `Cooperlake` and uses its AVX-512 kernels (IMM 2-D
 * step at B = 1024: 1.78 s instead of 2.83 s CPU per 100 steps). The runtime respects
 * the user's setting and reports the kernel set in use (gr_blas_coretype, printed by
 * `info`); docs/performance.md measures both sides of the benchmark under the same one.
 *
 * The kernel set can change the last bits of a product (a different summation order); the
 * thread count cannot (gemm.c cuts products by shape only).
 */
#include <dlfcn.h>
#include <stdlib.h>
#include <string.h>

#include "rt.h"

typedef char *(*GrNameFn)(void);
typedef void (*GrSetThreadsFn)(int);
typedef int (*GrVoidFn)(void);

const char *gr_blas_coretype(void) {
  GrNameFn name = (GrNameFn)(uintptr_t)dlsym(RTLD_DEFAULT, "gotoblas_corename");
  return name ? name() : "unknown";
}

void gr_blas_setup(int threads) {
  (void)threads; /* the pool's threads split the products (gemm.c) */
  const char *env = getenv("GRADC_BLAS_THREADS");
  int n = env && *env ? atoi(env) : 1;
  GrSetThreadsFn set = (GrSetThreadsFn)(uintptr_t)dlsym(RTLD_DEFAULT, "openblas_set_num_threads");
  if (set && n >= 1) set(n);
  /* One thread: stop the worker threads OpenBLAS started when it was loaded. They spin in
   * sched_yield for ~0.1 s after their last job (here: after start-up) on the cores the
   * pool needs; a 2-thread `sample` of 1024 samples at D = 784 measured slower than with
   * 1 thread because of it. OpenBLAS starts them again if a later call wants threads. */
  GrVoidFn shutdown = (GrVoidFn)(uintptr_t)dlsym(RTLD_DEFAULT, "blas_thread_shutdown_");
  if (set && n == 1 && shutdown) shutdown();
}
