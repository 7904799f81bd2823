/* schedule.h (not sched.h: that name would shadow <sched.h> under -Icompiler): the schedule of one entry: kernels in a fixed order and the memory plan.
 *
 * Internal to the back end (sched.c builds it, lower.c and aot.c read it). Every node is
 * either materialized (it owns storage: an entry input, a parameter, an output buffer or
 * a slice of the workspace arena), a view (a reshape of a materialized node: same bytes),
 * or fused (recomputed inside each kernel that reads it, by index arithmetic).
 */
#ifndef GRADC_SCHED_H
#define GRADC_SCHED_H

#include "codegen.h"

typedef enum { BUF_NONE, BUF_INPUT, BUF_PARAM, BUF_OUTPUT, BUF_WS } BufKind;

typedef struct {
  BufKind kind;
  int index;      /* input, parameter or output number */
  int64_t offset; /* BUF_WS: byte offset in the workspace (64-byte aligned) */
  int64_t bytes;
} Buf;

#define KN_MAXMORE 3

typedef enum {
  KN_LOOP,    /* dst[i...] = value of root at i... (a fused elementwise/shape chain) */
  KN_REDUCE,  /* dst = reduce(fused chain) over root's axes */
  KN_MATMUL,  /* BLAS gemm (batched by a loop of calls) */
  KN_SCATTER, /* dst = 0; dst[.., idx[i], ..] += upd[.., i, ..] */
} KernKind;

typedef struct {
  KernKind kind;
  ValId root;   /* the node this kernel computes */
  int copy;     /* KN_LOOP: root is already materialized; copy it into dst */
  Buf dst;      /* where the result goes */
  int mem_acc;  /* KN_REDUCE: accumulate in dst (a reduced axis lies outside a kept one) */
  /* KN_MATMUL: operands after folding transposes into the flags */
  ValId mm_a, mm_b; /* nodes whose values (in storage store[]) are A and B as laid out */
  int mm_ta, mm_tb;
  /* KN_LOOP: further roots computed in the same loop (sibling fusion: same shape, each
   * reads the earlier ones only elementwise at the loop's own index) */
  ValId more[KN_MAXMORE];
  Buf more_dst[KN_MAXMORE];
  int nmore;
  ValId *reads; /* materialized nodes (by storage) this kernel reads */
  int nreads;
  int nfused;   /* number of nodes fused into this kernel (dump) */
} Kernel;

typedef struct {
  const Graph *g;
  const Program *p;
  ValId *store;  /* per node: the node whose storage holds its value (itself, the viewed
                    node), or IR_ERR when it is fused */
  Buf *buf;      /* per node: valid where store[v] == v */
  int *nuses;
  Kernel *k;
  int nk;
  int64_t ws_bytes; /* the plan's peak */
  int64_t flops;    /* per call: matrix products + one per fused elementwise node and element */
  int64_t mm_flops; /* the matrix products' share */
} Sched;

/* Builds the schedule of g (already optimized). Never fails on a verified graph. */
Sched *sched_build(const Graph *g, const Program *p);
void sched_free(Sched *s);
void sched_print(const Sched *s, FILE *out);
/* The storage node of v, or IR_ERR if v is fused. */
static inline ValId sched_store(const Sched *s, ValId v) { return s->store[v]; }

#endif
