/* pool.c: the thread pool behind gr_parallel_for.
 *
 * Generated kernels call gr_parallel_for(rc, n, grain, body, env) for every loop worth
 * splitting. Results must not depend on the thread count (design rule 7), so the split
 * is fixed and simple: [0, n) is cut into `k` contiguous chunks, chunk i = [i*n/k,
 * (i+1)*n/k), where k = min(threads, ceil(n / grain)). Every index is processed by
 * exactly one call of body; a kernel that writes index i only from the call that owns i
 * (which is what the code generator emits) gives the same bits for any k.
 *
 * Chunk 0 runs on the caller; worker w (1..threads-1) runs chunk w. Dispatch is a
 * generation counter under one mutex: the caller publishes the job, bumps the
 * generation, broadcasts, runs its chunk, then waits until `pending` reaches zero. A
 * call made while the pool is already busy (a kernel calling gr_parallel_for from inside
 * a body, or two threads sharing a pool) does not wait for the pool: it runs inline,
 * which is correct because the split never affects results.
 *
 * Latency: a training step is dozens of kernels, so waking sleeping threads for each
 * (tens of microseconds through a condition variable) would dominate small models. Both
 * sides therefore spin on the atomic generation / pending counters (CPU pause) for up to
 * `spin_ns` before falling back to the condition variables; a worker that finished a
 * chunk is then still spinning when the next kernel is published, even after a stretch
 * of serial work on the caller (packing a matrix, the optimizer's bookkeeping). The
 * budget is time, not pause rounds: a pause takes 24 ns on this project's Zen 5 and
 * 3-40 ns elsewhere. Measured (IMM bench, 2-D, 2 threads, 300 or 3000 steps): 200 pause
 * rounds (~5 us) 2.2 s at B = 1024 and 3.9 s at B = 64, slower than 1 thread at B = 64
 * (2.3 s), with 0.3-1.1 s of system time in futex wake-ups; ~120 us: 1.72 s at B = 64;
 * ~500 us: 1.53 s and 1.65 s. Default 200 us; $GRADC_POOL_SPIN_US sets it, 0 disables
 * spinning. On an oversubscribed machine a spinning thread takes a core another process
 * needs for up to that long after each kernel; it then sleeps.
 *
 * Spinning backfires when the machine is busy: a spinning worker is never asleep, so the
 * scheduler gives it no wake-up preference, and when another process holds its core the
 * caller waits a whole time slice (milliseconds) per kernel. Measured with a fuzzer on
 * the other core (demo program, 300 steps, 2 threads): 7.3 s spinning 200 us, 1.25 s
 * not spinning, 1.06 s with 1 thread. So the caller watches how late the workers pick
 * up a job (publish to start of chunk): LATE_COUNT pick-ups later than LATE_NS within
 * LATE_WINDOW jobs turn spinning off for SLEEP_DISPATCHES jobs (workers then sleep and
 * are woken, which the scheduler serves at once), then spinning is tried again. An idle
 * machine does not trigger it: a spinning worker starts within a microsecond, a
 * sleeping one within tens.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>

#include "rt.h"

#define GR_SPIN_US_DEFAULT 200
#define LATE_NS 500000          /* a pick-up later than this: the worker was not running */
#define LATE_WINDOW 64          /* jobs per observation window */
#define LATE_COUNT 2            /* late pick-ups in a window that turn spinning off */
#define SLEEP_DISPATCHES 4096   /* jobs without spinning before trying again */

static int64_t now_ns(void) { return (int64_t)(gr_now() * 1e9); } /* gr_now: log.c */


static inline void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  __asm__ __volatile__("yield");
#endif
}

struct GrPool {
  int nthreads; /* including the caller */
  pthread_t *threads;
  pthread_mutex_t mu;
  pthread_cond_t work_cv, done_cv;
  pthread_mutex_t dispatch; /* held by the caller of a parallel job */
  _Atomic uint64_t generation; /* written under mu, read by spinning workers */
  _Atomic int pending;         /* workers still running the current job */
  _Atomic int shutdown;
  int64_t spin_ns;             /* configured spin before sleeping */
  _Atomic int64_t spin_now;    /* in effect now: spin_ns, or 0 while the machine is busy */
  _Atomic int64_t pickup_ns;   /* latest start of a chunk by a worker in the current job */
  int late, window, sleep_left; /* caller only: late pick-ups and jobs in this window, jobs
                                  left without spinning */
  /* the current job */
  int64_t n, nchunks;
  void (*body)(void *env, int64_t lo, int64_t hi);
  void *env;
};

typedef struct {
  GrPool *pool;
  int id; /* 1..nthreads-1 */
} WorkerArg;

static void run_chunk(GrPool *p, int64_t i) {
  int64_t lo = (int64_t)((__int128)p->n * i / p->nchunks);
  int64_t hi = (int64_t)((__int128)p->n * (i + 1) / p->nchunks);
  if (hi > lo) p->body(p->env, lo, hi);
}

static void *worker_main(void *arg) {
  WorkerArg *wa = arg;
  GrPool *p = wa->pool;
  int id = wa->id;
  free(wa);
  uint64_t seen = 0;
  for (;;) {
    int64_t spin = atomic_load(&p->spin_now), t0 = spin > 0 ? now_ns() : 0;
    for (int i = 1; spin > 0 && atomic_load(&p->generation) == seen && !atomic_load(&p->shutdown); i++) {
      cpu_relax();
      if (i % 32 == 0 && now_ns() - t0 > spin) break;
    }
    pthread_mutex_lock(&p->mu);
    while (!atomic_load(&p->shutdown) && atomic_load(&p->generation) == seen)
      pthread_cond_wait(&p->work_cv, &p->mu);
    if (atomic_load(&p->shutdown)) {
      pthread_mutex_unlock(&p->mu);
      break;
    }
    seen = atomic_load(&p->generation);
    int64_t nchunks = p->nchunks;
    pthread_mutex_unlock(&p->mu);
    int64_t t = now_ns(), prev = atomic_load(&p->pickup_ns);
    while (t > prev && !atomic_compare_exchange_weak(&p->pickup_ns, &prev, t)) {}
    if (id < nchunks) run_chunk(p, id);
    if (atomic_fetch_sub(&p->pending, 1) == 1) {
      pthread_mutex_lock(&p->mu);
      pthread_cond_signal(&p->done_cv);
      pthread_mutex_unlock(&p->mu);
    }
  }
  return NULL;
}

GrPool *gr_pool_create(int nthreads) {
  if (nthreads <= 1) return NULL;
  GrPool *p = calloc(1, sizeof *p);
  if (!p) return NULL;
  p->nthreads = nthreads;
  const char *sp = getenv("GRADC_POOL_SPIN_US");
  p->spin_ns = (int64_t)(sp && *sp ? atoi(sp) : GR_SPIN_US_DEFAULT) * 1000;
  if (p->spin_ns < 0) p->spin_ns = 0;
  atomic_store(&p->spin_now, p->spin_ns);
  p->threads = calloc((size_t)nthreads, sizeof *p->threads);
  if (!p->threads) {
    free(p);
    return NULL;
  }
  pthread_mutex_init(&p->mu, NULL);
  pthread_mutex_init(&p->dispatch, NULL);
  pthread_cond_init(&p->work_cv, NULL);
  pthread_cond_init(&p->done_cv, NULL);
  int started = 1;
  for (int i = 1; i < nthreads; i++) {
    WorkerArg *wa = malloc(sizeof *wa);
    if (!wa) break;
    wa->pool = p;
    wa->id = i;
    if (pthread_create(&p->threads[i], NULL, worker_main, wa) != 0) {
      free(wa);
      break;
    }
    started++;
  }
  p->nthreads = started; /* fewer threads if the system refused some: still correct */
  return p;
}

void gr_pool_destroy(GrPool *p) {
  if (!p) return;
  pthread_mutex_lock(&p->mu);
  atomic_store(&p->shutdown, 1);
  pthread_cond_broadcast(&p->work_cv);
  pthread_mutex_unlock(&p->mu);
  for (int i = 1; i < p->nthreads; i++) pthread_join(p->threads[i], NULL);
  pthread_mutex_destroy(&p->mu);
  pthread_mutex_destroy(&p->dispatch);
  pthread_cond_destroy(&p->work_cv);
  pthread_cond_destroy(&p->done_cv);
  free(p->threads);
  free(p);
}

int gr_pool_threads(const GrPool *p) { return p ? p->nthreads : 1; }

/* After each job (caller only): spinning off while workers pick up jobs late, back on
 * after SLEEP_DISPATCHES jobs to see whether the machine is free again. */
static void watch_latency(GrPool *p, int64_t pickup) {
  if (p->spin_ns <= 0) return;
  if (p->sleep_left > 0) {
    if (--p->sleep_left == 0) atomic_store(&p->spin_now, p->spin_ns);
    return;
  }
  p->late += pickup > LATE_NS;
  if (++p->window < LATE_WINDOW && p->late < LATE_COUNT) return;
  if (p->late >= LATE_COUNT) {
    atomic_store(&p->spin_now, 0);
    p->sleep_left = SLEEP_DISPATCHES;
  }
  p->late = p->window = 0;
}

void gr_parallel_for(const GrRunCtx *rc, int64_t n, int64_t grain,
                     void (*body)(void *env, int64_t lo, int64_t hi), void *env) {
  if (n <= 0) return;
  if (grain < 1) grain = 1;
  GrPool *p = rc ? rc->pool : NULL;
  int64_t nchunks = (n + grain - 1) / grain;
  if (!p || nchunks < 2 || pthread_mutex_trylock(&p->dispatch) != 0) {
    body(env, 0, n);
    return;
  }
  if (nchunks > p->nthreads) nchunks = p->nthreads;
  pthread_mutex_lock(&p->mu);
  p->n = n;
  p->nchunks = nchunks;
  p->body = body;
  p->env = env;
  atomic_store(&p->pending, p->nthreads - 1);
  atomic_store(&p->pickup_ns, 0);
  int64_t published = now_ns();
  atomic_fetch_add(&p->generation, 1);
  pthread_cond_broadcast(&p->work_cv);
  pthread_mutex_unlock(&p->mu);
  run_chunk(p, 0);
  int64_t spin = atomic_load(&p->spin_now), t0 = spin > 0 ? now_ns() : 0;
  for (int i = 1; spin > 0 && atomic_load(&p->pending) > 0; i++) {
    cpu_relax();
    if (i % 32 == 0 && now_ns() - t0 > spin) break;
  }
  if (atomic_load(&p->pending) > 0) {
    pthread_mutex_lock(&p->mu);
    while (atomic_load(&p->pending) > 0) pthread_cond_wait(&p->done_cv, &p->mu);
    pthread_mutex_unlock(&p->mu);
  }
  watch_latency(p, atomic_load(&p->pickup_ns) - published);
  pthread_mutex_unlock(&p->dispatch);
}
