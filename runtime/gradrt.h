/* gradrt.h: libgradrt, the runtime linked into every gradc executable and into gradc.
 *
 * Three audiences:
 *  1. Generated code (JIT or AOT object files) calls gr_parallel_for and reads GrRunCtx.
 *  2. An AOT object file defines `gr_module` (GrModuleInfo below): the parameters, the
 *     top-level constants and the entry points of the compiled .grad program. The training
 *     driver (gr_main) reads only that table, so one driver serves every program.
 *  3. gradc itself uses the file formats (.npy, safetensors), parameter initialization
 *     and the RNG, so the interpreter and executables agree bit for bit.
 *
 * Entry-point calling convention (what lowering emits for every entry NAME):
 *   void NAME(T *in0, ..., T *inK, T *param0, ..., T *paramP, T *out0, ..., T *outQ,
 *             void *workspace, const GrRunCtx *rc);
 * the flat signature gradc's JIT driver calls through libffi (it is known only at run
 * time), plus a uniform wrapper for the driver:
 *   void gr_entry_NAME(void **args, void *workspace, const GrRunCtx *rc);
 * with args = inputs, then all parameters of the program in order, then outputs. Every
 * entry receives every parameter; those it does not use are ignored. Scalars are rank-0
 * tensors (pointers to one element). Buffers are 64-byte aligned, C order.
 */
#ifndef GRADC_GRADRT_H
#define GRADC_GRADRT_H

#include <stddef.h>
#include <stdint.h>

#define GR_MAXRANK 6
#define GR_ABI_VERSION 1

typedef enum { GR_F32, GR_F64, GR_I32, GR_I64 } GrDType; /* same order as compiler DType */

typedef enum {
  GR_INIT_ZEROS, GR_INIT_ONES, GR_INIT_CONST, GR_INIT_NORMAL,
  GR_INIT_UNIFORM, GR_INIT_GLOROT, GR_INIT_HE
} GrInitKind; /* same order as compiler InitKind */

typedef struct {
  const char *name;
  int32_t dtype; /* GrDType */
  int32_t rank;
  int64_t dims[GR_MAXRANK];
  /* parameters only: */
  int32_t init;  /* GrInitKind */
  double init_a, init_b;
  int64_t fan_in, fan_out;
} GrTensorInfo;

typedef struct GrPool GrPool;

typedef struct {
  uint64_t seed;  /* training seed (RANDN/RANDU draws) */
  uint64_t step;  /* optimizer step: fresh noise every step */
  GrPool *pool;   /* NULL: run on the calling thread */
  uint64_t shard; /* data-parallel rank: a random draw of rank >= 1 and n elements uses
                     counters shard*n + i (its slice of the global batch, docs/distributed.md);
                     0 (single process) leaves every draw unchanged */
} GrRunCtx;

typedef void (*GrEntryFn)(void **args, void *workspace, const GrRunCtx *rc);

typedef struct {
  const char *name;
  int32_t ninputs, noutputs;
  const GrTensorInfo *inputs, *outputs;
  int64_t workspace_bytes; /* the memory plan's peak; the caller allocates it once */
  int64_t flops;           /* per call, from the graph (matmuls + elementwise) */
  GrEntryFn fn;
} GrEntryInfo;

typedef struct {
  const char *name;
  int32_t is_str;
  double num;
  const char *str;
} GrConstInfo;

typedef struct {
  int32_t abi_version;     /* GR_ABI_VERSION */
  const char *source_name; /* the .grad file it came from */
  const char *graph_hash;  /* hex; checkpoints from another graph are refused */
  int32_t nparams, nconsts, nentries;
  const GrTensorInfo *params;
  const GrConstInfo *consts;
  const GrEntryInfo *entries;
} GrModuleInfo;

/* ---- for generated code ------------------------------------------------------------- */
/* Runs body(env, lo, hi) over [0, n) split into contiguous chunks on the pool's threads
 * (or inline when rc->pool is NULL or n is small). Returns when all chunks are done.
 * Each index is processed by exactly one call, so results do not depend on thread count. */
void gr_parallel_for(const GrRunCtx *rc, int64_t n, int64_t grain,
                     void (*body)(void *env, int64_t lo, int64_t hi), void *env);

/* C[M, N] = op(A) op(B) (row-major, op = transpose when ta/tb; f32, or f64 when f64 != 0),
 * split over rc's pool (runtime/gemm.c): f32 by gradc's AVX-512 kernel where the CPU has
 * it (runtime/sgemm.c), otherwise by blocks of rows or columns of C, each block one BLAS
 * call on one thread. Either way every element of C is summed in an order fixed by the
 * shape, so the result does not depend on the thread count. */
void gr_gemm(const GrRunCtx *rc, int32_t f64, int32_t ta, int32_t tb, int64_t M, int64_t N,
             int64_t K, const void *A, int64_t lda, const void *B, int64_t ldb, void *C,
             int64_t ldc);

GrPool *gr_pool_create(int nthreads); /* nthreads <= 1: NULL (inline) */
void gr_pool_destroy(GrPool *p);
int gr_pool_threads(const GrPool *p);

/* ---- memory ----------------------------------------------------------------------------- */
void *gr_alloc(size_t n); /* 64-byte aligned, zeroed; NULL on failure */
void gr_free(void *p);
size_t gr_dtype_size(int32_t dtype);
int64_t gr_numel(const GrTensorInfo *t);

/* ---- tensors and files --------------------------------------------------------------------- */
typedef struct {
  int32_t dtype; /* GrDType */
  int32_t rank;
  int64_t dims[GR_MAXRANK];
  void *data; /* gr_alloc'ed (owned) unless noted */
} GrTensor;

/* NumPy .npy, format versions 1-3, little-endian f32/f64/i32/i64, C order. On failure
 * returns -1 with a message naming the file and what is wrong in err. */
int gr_npy_read(const char *path, GrTensor *out, char *err, size_t nerr);
int gr_npy_read_mem(const void *buf, size_t len, const char *name, GrTensor *out, char *err, size_t nerr);
int gr_npy_write(const char *path, const GrTensor *t, char *err, size_t nerr); /* atomic */
void gr_tensor_free(GrTensor *t);

/* ---- parameters ------------------------------------------------------------------------- */
/* Fills buf (dtype/shape of info) with the initializer, from (seed, index of the param).
 * Deterministic: uses the Philox stream 0x5EED0000 + param_index; element i (flat C order)
 * uses counter i at step 0. Values are computed in double, then rounded to the dtype:
 * normal a * gr_normal_f64; uniform a + (b - a) * u with u = gr_uniform_f32 for f32
 * params, gr_uniform_f64 otherwise; glorot/he as in docs/interpreter.md. */
void gr_init_param(const GrTensorInfo *info, int param_index, uint64_t seed, void *buf);

/* ---- the training executable's main() ----------------------------------------------------- */
/* Parses argv (train, sample, eval, gradcheck, data, info) and runs it against `m`.
 * Returns the process exit status. AOT executables call it from their main(). */
int gr_main(const GrModuleInfo *m, int argc, char **argv);

#endif
