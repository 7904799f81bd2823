/* rt.h: declarations shared inside libgradrt (not part of the public ABI in gradrt.h).
 *
 * The runtime is a handful of small parts that the driver (driver.c, gr_main) wires
 * together: data sources (data.h), optimizers and schedules (optim.h), checkpoints in
 * safetensors format (ckpt.h), and here the logs and progress bar (log.c), the PNG
 * writer (png.c) and the sample-quality metrics (metrics.c). Every function that can fail
 * on user input returns -1 and writes a message naming the file and the problem into a
 * caller-provided buffer; nothing here calls exit().
 */
#ifndef GRADC_RT_H
#define GRADC_RT_H

#include <stdio.h>

#include "ckpt.h"
#include "comm.h"
#include "data.h"
#include "gradrt.h"
#include "optim.h"
#include "philox.h"

/* Philox streams used by the runtime (the generated code uses small stream numbers
 * chosen by the compiler; these are far away from them). */
#define GR_STREAM_DATA 0x0DA7A000ull        /* training data rows */
#define GR_STREAM_DATA_EVAL 0x0DA7E000ull   /* held-out rows (eval) */
#define GR_STREAM_SHUFFLE 0x5BFF0000ull     /* + epoch: per-epoch permutation */
#define GR_STREAM_SAMPLE_INIT 0x5A3E0000ull /* sampler start noise */
#define GR_STREAM_SAMPLE_NOISE 0x5A3E1000ull /* restart-sampling noise, step in counter */
#define GR_STREAM_GRADCHECK 0x6C4EC000ull   /* gradcheck's coordinate choice */
#define GR_STREAM_SW 0x5E550000ull          /* sliced-Wasserstein directions */

/* ---- logs (log.c) -------------------------------------------------------------------- */
typedef struct {
  FILE *f;       /* CSV or JSONL log file, NULL: none */
  int jsonl;     /* 1: JSON lines, 0: CSV */
  int tty;       /* progress bar on stderr, redrawn in place */
  int quiet;     /* no plain progress lines on stdout */
  int64_t total; /* steps in this run's target */
  double t0;     /* wall-clock start (seconds) */
  int64_t step0; /* first step of this run (resume) */
  int bar_drawn;
  double last_draw; /* the bar is redrawn at most 10 times a second */
} GrLog;

typedef struct {
  int64_t step; /* completed steps */
  double loss, lr, grad_norm, steps_per_s;
} GrLogRow;

double gr_now(void); /* monotonic seconds */
/* Opens path (NULL: no file). Appends when `append` and the file exists (resume). */
int gr_log_open(GrLog *lg, const char *path, int append, int64_t step0, int64_t total,
                char *err, size_t nerr);
void gr_log_row(GrLog *lg, const GrLogRow *r);     /* file row + plain line or bar */
void gr_log_progress(GrLog *lg, const GrLogRow *r); /* bar only (every step on a tty) */
void gr_log_close(GrLog *lg);
/* "1h02m03s" style duration into buf. */
char *gr_fmt_duration(double s, char *buf, size_t n);

/* ---- BLAS set-up (blas.c) --------------------------------------------------------------- */
/* Before the first matrix product of a run: OpenBLAS single-threaded (the pool of
 * `threads` splits the products, gemm.c; GRADC_BLAS_THREADS=N overrides). Idempotent. */
void gr_blas_setup(int threads);
/* The name of OpenBLAS's kernel set in use ("unknown" for another BLAS). */
const char *gr_blas_coretype(void);

/* ---- gradc's own f32 product (sgemm.c) ---------------------------------------------------- */
/* 1 when the CPU has AVX-512F and FMA. */
int gr_sgemm_avx512_ok(void);
/* 1 when gr_gemm sends f32 products to gr_sgemm_avx512: the CPU can, and the environment
 * does not say GRADC_GEMM=blas (OpenBLAS for every product, for comparisons). */
int gr_sgemm_use_own(void);
/* C[M, N] = op(A) op(B), row-major, f32, split over rc's pool by rows (and columns when
 * M is small); bit-identical for any thread count. Only when gr_sgemm_avx512_ok(). */
void gr_sgemm_avx512(const GrRunCtx *rc, int ta, int tb, int64_t M, int64_t N, int64_t K,
                     const float *A, int64_t lda, const float *B, int64_t ldb, float *C,
                     int64_t ldc);

/* ---- PNG (png.c) --------------------------------------------------------------------- */
/* Raw 8-bit image, channels 1 (gray) or 3 (RGB), rows top to bottom. */
int gr_png_write(const char *path, const uint8_t *pix, int w, int h, int channels,
                 char *err, size_t nerr);
/* Scatter plot of n 2-D points (x[i*2], x[i*2+1]) with axes and tick labels. */
int gr_png_scatter(const char *path, const float *xy, int64_t n, char *err, size_t nerr);
/* Grid of up to 100 images of ih x iw pixels (values in [-1, 1], gray; images smaller
 * than 64 pixels are drawn at 2x). */
int gr_png_grid(const char *path, const float *imgs, int64_t n, int ih, int iw, char *err,
                size_t nerr);

/* ---- metrics (metrics.c) ------------------------------------------------------------- */
/* x [n, d], y [m, d], row-major f32. All in f64 internally, deterministic order. */
double gr_energy_distance(const float *x, int64_t n, const float *y, int64_t m, int64_t d);
/* Biased (V-statistic) MMD^2 with k(a, b) = exp(-|a - b|^2 / (2 h^2)). */
double gr_mmd_rbf(const float *x, int64_t n, const float *y, int64_t m, int64_t d, double h);
/* Both at once for several bandwidths h[0..nh) (nh <= 16), rows split over rc's pool
 * (deterministic for any thread count). Returns -1 when memory runs out. */
int gr_energy_mmd(const float *x, int64_t n, const float *y, int64_t m, int64_t d,
                  const double *h, int nh, double *energy, double *mmd, const GrRunCtx *rc);
/* Median pairwise distance of the rows of y (the bandwidth reference). */
double gr_median_dist(const float *y, int64_t m, int64_t d);
/* Mean over `ndir` random unit directions of W2^2 between the projections; n == m. */
double gr_sliced_w2(const float *x, const float *y, int64_t n, int64_t d, int ndir,
                    uint64_t seed);
/* Frechet distance between N(mu1, c1) and N(mu2, c2) of dimension d (cov row-major).
 * Returns -1 on a numerical failure. */
double gr_frechet(const double *mu1, const double *c1, const double *mu2, const double *c2,
                  int d);
/* Mean [d] and covariance [d, d] of the rows of x [n, d]. */
void gr_mean_cov(const float *x, int64_t n, int d, double *mu, double *cov);

/* ---- the driver (driver.c, driver_eval.c) -------------------------------------------- */
/* Options of every subcommand, after defaults from the module's consts and flags. */
typedef struct {
  const GrModuleInfo *m;
  const char *prog, *cmd; /* argv[0], subcommand */
  /* training config */
  const char *data, *eval_data;
  double lr, beta1, beta2, adam_eps, weight_decay, momentum, lr_min, clip, ema;
  GrOptKind opt;
  GrSchedKind sched;
  int64_t warmup, steps, until, ckpt_every, every;
  uint64_t seed;
  int seed_given, steps_given;
  const char *ckpt, *log, *opt_name, *sched_name;
  int resume, threads, quiet, help;
  /* sampling / eval */
  double sigma_d, T, eps;
  const char *sampler, *steps_list, *out, *png, *labels;
  int64_t n;
  int no_ema, restart, json;
  double tol;
  char ckpt_default[512];
  GrComm *comm; /* data-parallel job (comm.h): rank 0 of 1 unless built with --mpi */
} GrOpts;

/* Parameters and their training state, one f32 array per parameter. */
typedef struct {
  const GrModuleInfo *m;
  int np;
  int64_t *numel;
  float **w, **ema, **s0, **s1, **g;
  int64_t step; /* completed optimizer steps */
  int64_t global_batch; /* gr_state_load: the checkpoint's global batch (0: not recorded) */
} GrState;

double gr_const_num(const GrModuleInfo *m, const char *name, double dflt);
const char *gr_const_str(const GrModuleInfo *m, const char *name, const char *dflt);
const GrEntryInfo *gr_find_entry(const GrModuleInfo *m, const char *name);
int gr_state_alloc(GrState *s, const GrModuleInfo *m);
void gr_state_free(GrState *s);
/* Loads weights (and EMA, optimizer state when `full`) from a checkpoint, refusing one
 * from another graph. Writes the checkpoint's seed into *seed when not NULL. */
int gr_state_load(GrState *s, const GrOpts *o, const char *path, int full, uint64_t *seed,
                  char *err, size_t nerr);
/* args = inputs, params, outputs; calls e->fn. */
/* Prints "error: MESSAGE" on stderr; returns 1 (the exit status) for `return gr_fail(..)`. */
int gr_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void gr_call_entry(const GrEntryInfo *e, const GrModuleInfo *m, void *const *inputs,
                   void *const *params, void *const *outputs, void *ws, const GrRunCtx *rc);
/* Does `path` lie in a writable folder? (creates and removes a temp file) */
int gr_check_writable(const char *path, char *err, size_t nerr);
/* OT-FM interpolant x_t = (1 - t) x + t sigma_d n: the one place it is written. */
static inline float gr_interp_ot(float x, float n, double t, double sigma_d) {
  return (float)((1.0 - t) * (double)x + t * sigma_d * (double)n);
}
int gr_cmd_sample(GrOpts *o);
int gr_cmd_eval(GrOpts *o);
int gr_cmd_gradcheck(GrOpts *o);
/* The sampling times t_0 = T > ... > t_K = eps for K steps ("imm" or "uniform"). */
int gr_sample_times(const char *sampler, int64_t k, double T, double eps, double *t,
                    char *err, size_t nerr);

#endif
