/* blas.c: how the runtime sets up OpenBLAS before the first matrix product.
 *
 * Matrix products are 80-90 % of a training step at batch >= 256, and they are calls to
 * OpenBLAS's cblas_sgemm. OpenBLAS starts one thread per core and its idle threads spin
 * (sched_yield loops) between calls. Our own pool (pool.c) runs every other kernel; so
 * a `--threads 1` run still had OpenBLAS's second thread spinning on the other core, and
 * with 2 threads OpenBLAS's spinning workers take the cores our pool needs. Measured
 * (IMM 2-D, 4 x 256, B = 1024, `--threads 1`, OPENBLAS_NUM_THREADS unset, 100 steps):
 * 6.3 s of CPU time, 3.1 s of it system time in those spinning threads; with OpenBLAS at
 * 1 thread: 2.8 s. gr_blas_setup(threads) therefore sets OpenBLAS's thread count to the
 * run's `--threads` (openblas_set_num_threads, looked up with dlsym so another BLAS is
 * left alone), unless the user set OPENBLAS_NUM_THREADS.
 *
 * Kernel choice: OpenBLAS reads OPENBLAS_CORETYPE at load time. On this project's
 * machines the environment sets OPENBLAS_CORETYPE=Haswell (256-bit AVX2 kernels); unset,
 * OpenBLAS 0.3.21 detects the CPU as `Cooperlake` and uses its AVX-512 kernels (IMM 2-D
 * step at B = 1024: 1.78 s instead of 2.83 s CPU per 100 steps). The runtime respects
 * the user's setting and reports the kernel set in use (gr_blas_coretype, printed by
 * `info`); docs/performance.md measures both sides of the benchmark under the same one.
 *
 * Nothing here changes results beyond the last bits of a matrix product (a different
 * kernel sums in a different order); the thread count never changes them for a fixed
 * kernel choice (OpenBLAS splits sgemm over output blocks, each summed by one thread).
 */
#include <dlfcn.h>
#include <stdlib.h>
#include <string.h>

#include "rt.h"

typedef char *(*GrNameFn)(void);
typedef void (*GrSetThreadsFn)(int);

const char *gr_blas_coretype(void) {
  GrNameFn name = (GrNameFn)(uintptr_t)dlsym(RTLD_DEFAULT, "gotoblas_corename");
  return name ? name() : "unknown";
}

void gr_blas_setup(int threads) {
  const char *env = getenv("OPENBLAS_NUM_THREADS");
  if (env && *env) return;
  GrSetThreadsFn set = (GrSetThreadsFn)(uintptr_t)dlsym(RTLD_DEFAULT, "openblas_set_num_threads");
  if (set && threads >= 1) set(threads);
}
