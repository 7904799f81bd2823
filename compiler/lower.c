/* lower.c: a scheduled program -> one LLVM module.
 *
 * Per entry NAME the module holds
 *   NAME(in..., params..., outs..., workspace, rc)   the flat entry (runtime/gradrt.h)
 *   gr_entry_NAME(args, workspace, rc)               the uniform wrapper
 *   NAME.kI(env, lo, hi)                             kernel I over outer indices [lo, hi)
 *   NAME.kI.body(p0.., dst, seed, step, shard, lo, hi)      its loop nest, pointers noalias
 * The entry walks the schedule in order: a gemm kernel is a call (or a loop of calls for
 * batch dims) of gr_gemm (runtime/gemm.c: cblas_sgemm/dgemm split over the pool); any
 * other kernel stores its buffer pointers, seed and step into a small env array and runs NAME.kI over its outer extent, through
 * gr_parallel_for when rc->pool is set (only kernels whose outer loop indexes independent
 * output elements are split, so results never depend on the thread count).
 *
 * Inside a kernel, the value of a node at an element is built by ev(): a load if the node
 * has storage, else the node's op applied to its inputs' values at the mapped index. An
 * index (Ix) is kept as a flat offset and/or one value per dimension, each derived from
 * the other only when an op needs it, so plain elementwise chains become one flat,
 * vectorizable loop and broadcasts/transposes cost index arithmetic only.
 */
#include "lower.h"

#include <llvm-c/Analysis.h>
#include <llvm-c/Support.h>
#include <llvm-c/Target.h>
#include <llvm-c/Transforms/PassBuilder.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

/* ---- LLVM setup ----------------------------------------------------------------------- */
static pthread_once_t llvm_once = PTHREAD_ONCE_INIT;

static void llvm_init_once(void) {
  LLVMInitializeNativeTarget();
  LLVMInitializeNativeAsmPrinter();
  LLVMInitializeNativeAsmParser();
  const char *argv[] = {"gradc", "-vector-library=LIBMVEC-X86"};
  LLVMParseCommandLineOptions(2, argv, NULL);
}

void cg_llvm_init(void) { pthread_once(&llvm_once, llvm_init_once); }

LLVMTargetMachineRef cg_target_machine(const CgOptions *o, int pic, char *err, size_t n) {
  cg_llvm_init();
  char *triple = LLVMGetDefaultTargetTriple();
  LLVMTargetRef t;
  char *msg = NULL;
  if (LLVMGetTargetFromTriple(triple, &t, &msg)) {
    snprintf(err, n, "no LLVM target for %s: %s", triple, msg ? msg : "?");
    LLVMDisposeMessage(msg);
    LLVMDisposeMessage(triple);
    return NULL;
  }
  int native = !o->cpu || !strcmp(o->cpu, "native");
  char *cpu = native ? LLVMGetHostCPUName() : NULL;
  char *feat = native ? LLVMGetHostCPUFeatures() : NULL;
  LLVMTargetMachineRef tm = LLVMCreateTargetMachine(
      t, triple, native ? cpu : o->cpu, native ? feat : "",
      o->opt_level > 0 ? LLVMCodeGenLevelDefault : LLVMCodeGenLevelNone,
      pic ? LLVMRelocPIC : LLVMRelocDefault, LLVMCodeModelDefault);
  if (native) {
    LLVMDisposeMessage(cpu);
    LLVMDisposeMessage(feat);
  }
  LLVMDisposeMessage(triple);
  if (!tm) snprintf(err, n, "cannot create a target machine for cpu '%s'", o->cpu ? o->cpu : "native");
  return tm;
}

/* The training pipeline (opt_level 2). Kernels are already simple counted loops with
 * noalias pointers, so the full default<O2> (inliner, loop unrolling, SLP, interleaving)
 * buys nothing measurable on them but costs 3-4x the compile time: on the IMM training
 * graph this list vectorizes the same loops. opt_level 3 runs default<O2> with all of it.
 * always-inline first: the random draws call the alwaysinline gr_philox_w01, and a loop
 * with a call in it does not vectorize. */
#define CG_TRAINING_PIPELINE                                                                \
  "always-inline,function(sroa,early-cse,instcombine<no-verify-fixpoint>,simplifycfg,loop-mssa(licm),"  \
  "loop(loop-rotate),indvars,loop-vectorize,instcombine<no-verify-fixpoint>,simplifycfg)"

/* The loop vectorizer widens exp/log/sin/cos/pow to llvm.exp.v8f32 and friends; llc would
 * then call libmvec, but the codegen pipeline behind LLVMTargetMachineEmitToFile and
 * LLJIT builds its TargetLibraryInfo without the target triple and so without the
 * -vector-library table: each lane became a scalar libm call. This does that last
 * replacement here: llvm.NAME.vNfT -> _ZGV<isa>N<N>v[v]_NAME[f] (isa by vector width:
 * b 128, d 256, e 512 bits), glibc's vector ABI names. */
static void replace_veclib(LLVMModuleRef m) {
  static const char *const names[] = {"exp", "log", "sin", "cos", "pow"};
  LLVMValueRef next;
  for (LLVMValueRef f = LLVMGetFirstFunction(m); f; f = next) {
    next = LLVMGetNextFunction(f);
    size_t len;
    const char *nm = LLVMGetValueName2(f, &len);
    if (strncmp(nm, "llvm.", 5)) continue;
    for (int k = 0; k < 5; k++) {
      size_t bl = strlen(names[k]);
      if (strncmp(nm + 5, names[k], bl) || strncmp(nm + 5 + bl, ".v", 2)) continue;
      int lanes = atoi(nm + 5 + bl + 2);
      const char *ty = strchr(nm + 5 + bl + 2, 'f');
      if (!ty || (strcmp(ty, "f32") && strcmp(ty, "f64"))) break;
      int bits = lanes * (ty[1] == '3' ? 32 : 64);
      char isa = bits == 128 ? 'b' : bits == 256 ? 'd' : bits == 512 ? 'e' : 0;
      if (!isa) break;
      char vname[64];
      snprintf(vname, sizeof vname, "_ZGV%cN%d%s_%s%s", isa, lanes, k == 4 ? "vv" : "v", names[k],
               ty[1] == '3' ? "f" : "");
      LLVMValueRef vf = LLVMGetNamedFunction(m, vname);
      if (!vf) vf = LLVMAddFunction(m, vname, LLVMGlobalGetValueType(f));
      LLVMReplaceAllUsesWith(f, vf);
      LLVMDeleteFunction(f);
      break;
    }
  }
}

int cg_run_passes(LLVMModuleRef m, LLVMTargetMachineRef tm, const CgOptions *o, char *err, size_t n) {
  if (o->opt_level <= 0) return 0;
  LLVMPassBuilderOptionsRef po = LLVMCreatePassBuilderOptions();
  LLVMPassBuilderOptionsSetLoopVectorization(po, 1);
  LLVMPassBuilderOptionsSetSLPVectorization(po, o->opt_level >= 3);
  LLVMPassBuilderOptionsSetLoopInterleaving(po, o->opt_level >= 3);
  LLVMPassBuilderOptionsSetLoopUnrolling(po, o->opt_level >= 3);
  LLVMErrorRef e = LLVMRunPasses(m, o->opt_level >= 3 ? "default<O2>" : CG_TRAINING_PIPELINE, tm, po);
  LLVMDisposePassBuilderOptions(po);
  if (e) {
    char *msg = LLVMGetErrorMessage(e);
    snprintf(err, n, "LLVM passes: %s", msg);
    LLVMDisposeErrorMessage(msg);
    return -1;
  }
  replace_veclib(m);
  return 0;
}

/* ---- indices ---------------------------------------------------------------------------- */
typedef struct Ix Ix;
struct Ix {
  Shape sh;
  LLVMValueRef flat;
  LLVMValueRef d[IR_MAXRANK];
  int has_d;
  Ix *next;
};

typedef struct {
  Low *L;
  const Sched *s;
  const Graph *g;
  LLVMValueRef fn;
  LLVMValueRef *base; /* per storage node: its pointer inside the kernel body */
  LLVMValueRef dst, seed, step, shard;
  LLVMValueRef more_dst[KN_MAXMORE]; /* sibling-fused roots' destinations */
  LLVMBuilderRef alloca_b; /* positioned in the entry block */
  Ix *ixs;
  LLVMValueRef *memo;
  Ix **memo_ix;
} KC;

static LLVMValueRef ci64(KC *k, int64_t v) { return LLVMConstInt(k->L->i64, (unsigned long long)v, 1); }

static Ix *ix_new(KC *k, const Shape *sh) {
  Ix *x = calloc(1, sizeof *x);
  x->sh = *sh;
  x->next = k->ixs;
  k->ixs = x;
  return x;
}

static LLVMValueRef nsw_add(KC *k, LLVMValueRef a, LLVMValueRef b) { return LLVMBuildNSWAdd(k->L->b, a, b, ""); }
static LLVMValueRef nsw_mul(KC *k, LLVMValueRef a, LLVMValueRef b) { return LLVMBuildNSWMul(k->L->b, a, b, ""); }

static LLVMValueRef ix_flat(KC *k, Ix *x) {
  if (x->flat) return x->flat;
  LLVMValueRef f = ci64(k, 0);
  int64_t stride = 1;
  for (int i = x->sh.rank - 1; i >= 0; i--) {
    if (x->sh.dims[i] != 1) f = nsw_add(k, f, stride == 1 ? x->d[i] : nsw_mul(k, x->d[i], ci64(k, stride)));
    stride *= x->sh.dims[i];
  }
  return x->flat = f;
}

static LLVMValueRef ix_dim(KC *k, Ix *x, int i) {
  if (x->sh.dims[i] == 1) return ci64(k, 0);
  if (!x->has_d) {
    int64_t stride = 1;
    for (int j = x->sh.rank - 1; j >= 0; j--) {
      LLVMValueRef q = stride == 1 ? x->flat : LLVMBuildUDiv(k->L->b, x->flat, ci64(k, stride), "");
      x->d[j] = j == 0 ? q : LLVMBuildURem(k->L->b, q, ci64(k, x->sh.dims[j]), "");
      stride *= x->sh.dims[j];
    }
    x->has_d = 1;
  }
  return x->d[i];
}

/* A copy of x's per-dim index in shape sh (same rank), for ops that change a few dims. */
static Ix *ix_dims_of(KC *k, Ix *x, const Shape *sh) {
  Ix *y = ix_new(k, sh);
  for (int i = 0; i < sh->rank; i++) y->d[i] = ix_dim(k, x, i);
  y->has_d = 1;
  return y;
}

/* ---- values -------------------------------------------------------------------------------- */
static LLVMValueRef elem_ptr(KC *k, ValId st, DType t, LLVMValueRef flat) {
  LLVMValueRef base = k->base[st];
  IR_ASSERT(base);
  return LLVMBuildInBoundsGEP2(k->L->b, low_type(k->L, t), base, &flat, 1, "");
}

static LLVMValueRef load_at(KC *k, ValId v, Ix *x) {
  const Node *n = &k->g->nodes[v];
  return LLVMBuildLoad2(k->L->b, low_type(k->L, n->dtype), elem_ptr(k, k->s->store[v], n->dtype, ix_flat(k, x)), "");
}

static LLVMValueRef ev(KC *k, ValId v, Ix *x);

static LLVMValueRef to_i64(KC *k, DType t, LLVMValueRef v) {
  if (dtype_is_float(t)) return LLVMBuildFPToSI(k->L->b, v, k->L->i64, "");
  return t == DT_I64 ? v : LLVMBuildSExt(k->L->b, v, k->L->i64, "");
}

static LLVMValueRef clamp(KC *k, LLVMValueRef i, int64_t n) {
  LLVMBuilderRef b = k->L->b;
  i = LLVMBuildSelect(b, LLVMBuildICmp(b, LLVMIntSLT, i, ci64(k, 0), ""), ci64(k, 0), i, "");
  return LLVMBuildSelect(b, LLVMBuildICmp(b, LLVMIntSGE, i, ci64(k, n), ""), ci64(k, n - 1), i, "");
}

static LLVMValueRef ev_shape(KC *k, const Node *n, Ix *x) {
  LLVMBuilderRef b = k->L->b;
  const Node *a = &k->g->nodes[n->in[0]];
  int ax = n->attr.sl.axis;
  switch (n->op) {
  case OP_BROADCAST: {
    Ix *y = ix_new(k, &a->shape);
    for (int i = 0; i < a->shape.rank; i++) y->d[i] = a->shape.dims[i] == 1 ? ci64(k, 0) : ix_dim(k, x, i);
    y->has_d = 1;
    return ev(k, n->in[0], y);
  }
  case OP_RESHAPE: {
    Ix *y = ix_new(k, &a->shape);
    y->flat = ix_flat(k, x);
    return ev(k, n->in[0], y);
  }
  case OP_TRANSPOSE: {
    Ix *y = ix_new(k, &a->shape);
    for (int i = 0; i < n->shape.rank; i++) y->d[n->attr.perm[i]] = ix_dim(k, x, i);
    y->has_d = 1;
    return ev(k, n->in[0], y);
  }
  case OP_SLICE: {
    Ix *y = ix_dims_of(k, x, &a->shape);
    y->d[ax] = a->shape.dims[ax] == 1 ? ci64(k, 0) : nsw_add(k, ix_dim(k, x, ax), ci64(k, n->attr.sl.start));
    return ev(k, n->in[0], y);
  }
  case OP_PAD: {
    int64_t din = a->shape.dims[ax];
    if (din == 0) return low_const(k->L, n->dtype, 0);
    LLVMValueRef j = LLVMBuildNSWSub(b, ix_dim(k, x, ax), ci64(k, n->attr.sl.start), "");
    LLVMValueRef inb = LLVMBuildAnd(b, LLVMBuildICmp(b, LLVMIntSGE, j, ci64(k, 0), ""),
                                    LLVMBuildICmp(b, LLVMIntSLT, j, ci64(k, din), ""), "");
    Ix *y = ix_dims_of(k, x, &a->shape);
    y->d[ax] = din == 1 ? ci64(k, 0) : LLVMBuildSelect(b, inb, j, ci64(k, 0), "");
    return LLVMBuildSelect(b, inb, ev(k, n->in[0], y), low_const(k->L, n->dtype, 0), "");
  }
  case OP_CONCAT: {
    const Node *c = &k->g->nodes[n->in[1]];
    int64_t da = a->shape.dims[ax], dc = c->shape.dims[ax];
    LLVMValueRef i = ix_dim(k, x, ax);
    Ix *ya = ix_dims_of(k, x, &a->shape), *yc = ix_dims_of(k, x, &c->shape);
    if (dc == 0) return ev(k, n->in[0], ya);
    if (da == 0) return ev(k, n->in[1], yc);
    LLVMValueRef ina = LLVMBuildICmp(b, LLVMIntSLT, i, ci64(k, da), "");
    ya->d[ax] = da == 1 ? ci64(k, 0) : LLVMBuildSelect(b, ina, i, ci64(k, 0), "");
    yc->d[ax] = dc == 1 ? ci64(k, 0) : LLVMBuildSelect(b, ina, ci64(k, 0), LLVMBuildNSWSub(b, i, ci64(k, da), ""), "");
    return LLVMBuildSelect(b, ina, ev(k, n->in[0], ya), ev(k, n->in[1], yc), "");
  }
  case OP_GATHER: {
    const Node *idx = &k->g->nodes[n->in[1]];
    Ix *yi = ix_new(k, &idx->shape);
    yi->d[0] = ix_dim(k, x, ax);
    yi->has_d = 1;
    LLVMValueRef j = clamp(k, to_i64(k, idx->dtype, ev(k, n->in[1], yi)), a->shape.dims[ax]);
    Ix *y = ix_dims_of(k, x, &a->shape);
    y->d[ax] = a->shape.dims[ax] == 1 ? ci64(k, 0) : j;
    return ev(k, n->in[0], y);
  }
  default: IR_ASSERT(0 && "shape op without storage");
  }
  return NULL;
}

/* Counter of a random draw's element x: its flat index, plus shard * numel for a draw of
 * rank >= 1, so that data-parallel rank `shard` draws its slice of the global batch
 * (draws are sharded along their leading axis, docs/distributed.md). shard = 0: the
 * flat index, exactly as before. */
static LLVMValueRef random_index(KC *k, const Node *n, Ix *x) {
  LLVMValueRef i = ix_flat(k, x);
  if (n->shape.rank == 0) return i;
  LLVMValueRef off = LLVMBuildMul(k->L->b, k->shard, ci64(k, shape_numel(&n->shape)), "");
  return LLVMBuildAdd(k->L->b, i, off, "");
}

/* The value of node v at x computed from its inputs (never from v's own storage). */
static LLVMValueRef ev_op(KC *k, ValId v, Ix *x) {
  const Node *n = &k->g->nodes[v];
  Low *L = k->L;
  switch (op_info[n->op].kind) {
  case K_LEAF:
    if (n->op == OP_CONST) return low_const(L, n->dtype, n->attr.scalar);
    if (n->op == OP_IOTA) {
      LLVMValueRef i = ix_dim(k, x, n->attr.axis);
      if (dtype_is_float(n->dtype)) return LLVMBuildSIToFP(L->b, i, low_type(L, n->dtype), "");
      return n->dtype == DT_I64 ? i : LLVMBuildTrunc(L->b, i, L->i32, "");
    }
    IR_ASSERT(n->op == OP_RANDN || n->op == OP_RANDU);
    return low_random(L, n->op, n->dtype, k->seed, k->step, n->attr.stream, random_index(k, n, x));
  case K_UNARY:
    return low_unary(L, n->op, n->dtype, k->g->nodes[n->in[0]].dtype, ev(k, n->in[0], x));
  case K_BINARY: {
    LLVMValueRef a = ev(k, n->in[0], x), b = ev(k, n->in[1], x);
    return low_binary(L, n->op, k->g->nodes[n->in[0]].dtype, a, b);
  }
  case K_TERNARY: {
    LLVMValueRef c = ev(k, n->in[0], x), a = ev(k, n->in[1], x), b = ev(k, n->in[2], x);
    return low_where(L, k->g->nodes[n->in[0]].dtype, c, a, b);
  }
  case K_EXTERN: {
    LLVMValueRef args[3];
    DType t[3];
    for (int i = 0; i < ir_nin(n); i++) {
      args[i] = ev(k, n->in[i], x);
      t[i] = k->g->nodes[n->in[i]].dtype;
    }
    return low_extern(L, n->attr.ext.index, t, args);
  }
  case K_SHAPE: return ev_shape(k, n, x);
  default: IR_ASSERT(0 && "op needs storage");
  }
  return NULL;
}

static LLVMValueRef ev(KC *k, ValId v, Ix *x) {
  if (k->memo_ix[v] == x) return k->memo[v];
  ValId st = k->s->store[v];
  if (st != IR_ERR && st != v && k->memo_ix[st] == x) return k->memo[st]; /* a view of a sibling root */
  LLVMValueRef r = k->s->store[v] != IR_ERR ? load_at(k, v, x) : ev_op(k, v, x);
  k->memo_ix[v] = x;
  k->memo[v] = r;
  return r;
}

/* True when the fused tree below v can be indexed by the flat offset alone. */
static int flat_ok(const Sched *s, ValId v, int root) {
  const Node *n = &s->g->nodes[v];
  if (!root && s->store[v] != IR_ERR) return 1;
  if (op_is_elementwise(n->op) || n->op == OP_EXTERN) {
    for (int i = 0; i < ir_nin(n); i++)
      if (!flat_ok(s, n->in[i], 0)) return 0;
    return 1;
  }
  if (n->op == OP_RESHAPE || n->op == OP_STOPGRAD) return flat_ok(s, n->in[0], 0);
  return n->op == OP_CONST || n->op == OP_RANDN || n->op == OP_RANDU;
}

/* ---- loops ---------------------------------------------------------------------------------- */
typedef struct {
  LLVMBasicBlockRef head, exit;
  LLVMValueRef i;
} Loop;

static LLVMValueRef loop_open(KC *k, Loop *lp, LLVMValueRef lo, LLVMValueRef hi) {
  LLVMBuilderRef b = k->L->b;
  LLVMContextRef cx = k->L->cx;
  LLVMBasicBlockRef pre = LLVMGetInsertBlock(b);
  lp->head = LLVMAppendBasicBlockInContext(cx, k->fn, "loop");
  LLVMBasicBlockRef body = LLVMAppendBasicBlockInContext(cx, k->fn, "body");
  lp->exit = LLVMAppendBasicBlockInContext(cx, k->fn, "done");
  LLVMBuildBr(b, lp->head);
  LLVMPositionBuilderAtEnd(b, lp->head);
  lp->i = LLVMBuildPhi(b, k->L->i64, "i");
  LLVMAddIncoming(lp->i, &lo, &pre, 1);
  LLVMBuildCondBr(b, LLVMBuildICmp(b, LLVMIntSLT, lp->i, hi, ""), body, lp->exit);
  LLVMPositionBuilderAtEnd(b, body);
  return lp->i;
}

static void loop_close(KC *k, Loop *lp) {
  LLVMBuilderRef b = k->L->b;
  LLVMBasicBlockRef latch = LLVMGetInsertBlock(b);
  LLVMValueRef next = nsw_add(k, lp->i, ci64(k, 1));
  LLVMBuildBr(b, lp->head);
  LLVMAddIncoming(lp->i, &next, &latch, 1);
  LLVMPositionBuilderAtEnd(b, lp->exit);
}

static void store_at(KC *k, DType t, LLVMValueRef flat, LLVMValueRef v) {
  LLVMValueRef p = LLVMBuildInBoundsGEP2(k->L->b, low_type(k->L, t), k->dst, &flat, 1, "");
  LLVMBuildStore(k->L->b, v, p);
}

static void fill_dst(KC *k, DType t, int64_t n, LLVMValueRef v) {
  Loop lp;
  LLVMValueRef i = loop_open(k, &lp, ci64(k, 0), ci64(k, n));
  store_at(k, t, i, v);
  loop_close(k, &lp);
}

/* Opens loops over dims [from, rank) of sh, writing the index values into x->d. */
static int open_nest(KC *k, Loop *lps, const Shape *sh, int from, Ix *x, uint32_t skip) {
  int nl = 0;
  for (int d = from; d < sh->rank; d++) {
    if (skip >> d & 1) continue;
    if (sh->dims[d] == 1) {
      x->d[d] = ci64(k, 0);
      continue;
    }
    x->d[d] = loop_open(k, &lps[nl++], ci64(k, 0), ci64(k, sh->dims[d]));
  }
  return nl;
}

static void close_nest(KC *k, Loop *lps, int nl) {
  while (nl > 0) loop_close(k, &lps[--nl]);
}

/* A memory-form reduction whose last axis is kept (column sums) is split over that axis:
 * each output column is accumulated by one call, in input order, so any split gives the
 * same bits. */
static int mem_split(const Node *red, const Shape *in) {
  int r = in->rank;
  return r > 0 && !(red->attr.axes >> (r - 1) & 1) && in->dims[r - 1] > 1;
}

/* ---- kernel bodies ---------------------------------------------------------------------- */
/* Outer extent of a kernel: how many independent outer indices its [lo, hi) range covers. */
static int64_t kernel_extent(const Sched *s, const Kernel *kn, int *flat) {
  const Node *n = &s->g->nodes[kn->root];
  *flat = 0;
  if (kn->kind == KN_LOOP) {
    int all_flat = kn->copy ? 1 : flat_ok(s, kn->root, 1);
    for (int j = 0; j < kn->nmore; j++) all_flat &= flat_ok(s, kn->more[j], 1);
    if (n->shape.rank == 0 || all_flat) {
      *flat = 1;
      return shape_numel(&n->shape);
    }
    return n->shape.dims[0];
  }
  if (kn->kind == KN_REDUCE && !kn->mem_acc && n->shape.rank > 0 && !(n->attr.axes & 1))
    return n->shape.dims[0];
  if (kn->kind == KN_REDUCE && kn->mem_acc && mem_split(n, &s->g->nodes[n->in[0]].shape))
    return n->shape.dims[n->shape.rank - 1];
  return 1;
}

/* A kernel whose root is a concat along the last axis: per row, one inner loop per
 * operand over its own columns. The generic path (ev_shape) evaluates both operands at
 * every element and selects, which does not vectorize into plain copies: the network
 * input [x | features] of the IMM step at D = 784 (1024 x 848) took 5 % of the step. */
static void body_concat_last(KC *k, const Node *n, LLVMValueRef lo, LLVMValueRef hi) {
  Loop lps[IR_MAXRANK + 1];
  int r = n->shape.rank, nl = 0;
  Ix *x = ix_new(k, &n->shape);
  x->d[0] = loop_open(k, &lps[nl++], lo, hi);
  nl += open_nest(k, lps + nl, &n->shape, 1, x, 1u << (r - 1));
  int64_t off = 0;
  for (int s = 0; s < 2; s++) {
    ValId o = n->in[s];
    const Shape *os = &k->g->nodes[o].shape;
    int64_t w = os->dims[r - 1];
    if (w == 0) continue;
    Loop lp;
    LLVMValueRef j = loop_open(k, &lp, ci64(k, 0), ci64(k, w));
    Ix *xs = ix_new(k, &n->shape); /* the output element */
    for (int d = 0; d < r - 1; d++) xs->d[d] = x->d[d];
    xs->d[r - 1] = nsw_add(k, j, ci64(k, off));
    xs->has_d = 1;
    Ix *y = ix_dims_of(k, xs, os); /* the operand's element */
    y->d[r - 1] = w == 1 ? ci64(k, 0) : j;
    store_at(k, n->dtype, ix_flat(k, xs), ev(k, o, y));
    loop_close(k, &lp);
    off += w;
  }
  close_nest(k, lps, nl);
}

static void body_loop(KC *k, const Kernel *kn, LLVMValueRef lo, LLVMValueRef hi, int flat) {
  const Node *n = &k->g->nodes[kn->root];
  if (!flat && !kn->copy && kn->nmore == 0 && n->op == OP_CONCAT && n->shape.rank >= 2 &&
      n->attr.sl.axis == n->shape.rank - 1) {
    body_concat_last(k, n, lo, hi);
    return;
  }
  Loop lps[IR_MAXRANK + 1];
  Ix *x = ix_new(k, &n->shape);
  int nl = 0;
  if (flat) {
    x->flat = loop_open(k, &lps[nl++], lo, hi);
  } else {
    x->d[0] = loop_open(k, &lps[nl++], lo, hi);
    nl += open_nest(k, lps + nl, &n->shape, 1, x, 0);
    x->has_d = 1;
  }
  LLVMValueRef v = kn->copy ? ev(k, kn->root, x) : ev_op(k, kn->root, x);
  store_at(k, n->dtype, ix_flat(k, x), v);
  /* sibling roots: an earlier root's value is taken from the memo, never re-loaded */
  k->memo_ix[kn->root] = x;
  k->memo[kn->root] = v;
  for (int j = 0; j < kn->nmore; j++) {
    ValId r = kn->more[j];
    LLVMValueRef w = ev_op(k, r, x);
    k->memo_ix[r] = x;
    k->memo[r] = w;
    LLVMValueRef p = LLVMBuildInBoundsGEP2(k->L->b, low_type(k->L, k->g->nodes[r].dtype), k->more_dst[j],
                                           (LLVMValueRef[]){ix_flat(k, x)}, 1, "");
    LLVMBuildStore(k->L->b, w, p);
  }
  close_nest(k, lps, nl);
}

/* Memory-form reduction step at input element xi: dst[out(xi)] op= in[xi], where xo (the
 * output index) is xi with the reduced axes set to 0. */
static void acc_into_dst(KC *k, const Node *n, Ix *xi, Ix *xo) {
  Low *L = k->L;
  uint32_t axes = n->attr.axes;
  xi->has_d = xo->has_d = 1;
  for (int d = 0; d < xi->sh.rank; d++) xo->d[d] = (axes >> d & 1) ? ci64(k, 0) : xi->d[d];
  LLVMValueRef p = LLVMBuildInBoundsGEP2(L->b, low_type(L, n->dtype), k->dst, (LLVMValueRef[]){ix_flat(k, xo)}, 1, "");
  LLVMValueRef acc = LLVMBuildLoad2(L->b, low_type(L, n->dtype), p, "");
  LLVMBuildStore(L->b, low_reduce_step(L, n->op, n->dtype, acc, ev(k, n->in[0], xi)), p);
}

static void body_reduce(KC *k, const Kernel *kn, LLVMValueRef lo, LLVMValueRef hi) {
  const Node *n = &k->g->nodes[kn->root];
  const Node *in = &k->g->nodes[n->in[0]];
  Low *L = k->L;
  uint32_t axes = n->attr.axes;
  int r = in->shape.rank;
  Loop lps[2 * IR_MAXRANK + 1];
  int nl = 0;
  if (kn->mem_acc && !mem_split(n, &in->shape)) { /* dst = init; for every input element: dst[out(i)] op= in[i] */
    fill_dst(k, n->dtype, shape_numel(&n->shape), low_reduce_init(L, n->op, n->dtype));
    Ix *xi = ix_new(k, &in->shape), *xo = ix_new(k, &n->shape);
    nl = open_nest(k, lps, &in->shape, 0, xi, 0);
    acc_into_dst(k, n, xi, xo);
    close_nest(k, lps, nl);
    return;
  }
  if (kn->mem_acc) { /* the same, for the output columns [lo, hi) of the last (kept) dim only */
    uint32_t last = 1u << (r - 1);
    Ix *x0 = ix_new(k, &n->shape);
    nl = open_nest(k, lps, &n->shape, 0, x0, last);
    x0->d[r - 1] = loop_open(k, &lps[nl++], lo, hi);
    x0->has_d = 1;
    store_at(k, n->dtype, ix_flat(k, x0), low_reduce_init(L, n->op, n->dtype));
    close_nest(k, lps, nl);
    Ix *xi = ix_new(k, &in->shape), *xo = ix_new(k, &n->shape);
    nl = open_nest(k, lps, &in->shape, 0, xi, last);
    xi->d[r - 1] = loop_open(k, &lps[nl++], lo, hi);
    acc_into_dst(k, n, xi, xo);
    close_nest(k, lps, nl);
    return;
  }
  /* register form: loops over kept dims, accumulator, loops over reduced dims */
  Ix *xo = ix_new(k, &n->shape);
  xo->has_d = 1;
  int outer_split = r > 0 && !(axes & 1);
  if (outer_split) xo->d[0] = loop_open(k, &lps[nl++], lo, hi);
  else {
    Loop dummy; /* one iteration over [lo, hi) = [0, 1) */
    (void)loop_open(k, &dummy, lo, hi);
    lps[nl++] = dummy;
  }
  nl += open_nest(k, lps + nl, &n->shape, outer_split ? 1 : 0, xo, axes);
  for (int d = 0; d < r; d++)
    if (axes >> d & 1) xo->d[d] = ci64(k, 0);
  LLVMValueRef acc = LLVMBuildAlloca(k->alloca_b, low_type(L, n->dtype), "acc");
  LLVMBuildStore(L->b, low_reduce_init(L, n->op, n->dtype), acc);
  int first_red = r;
  for (int d = r - 1; d >= 0 && (axes >> d & 1); d--) first_red = d;
  int suffix = 1;
  for (int d = first_red; d < r; d++) suffix &= (int)(axes >> d & 1);
  for (int d = 0; d < first_red; d++) suffix &= !(axes >> d & 1);
  Loop inner[IR_MAXRANK];
  int ni = 0;
  Ix *xi = ix_new(k, &in->shape);
  if (suffix && flat_ok(k->s, n->in[0], 0)) {
    int64_t P = 1;
    for (int d = first_red; d < r; d++) P *= in->shape.dims[d];
    Shape pre = in->shape;
    pre.rank = first_red;
    Ix *xp = ix_new(k, &pre);
    for (int d = 0; d < first_red; d++) xp->d[d] = xo->d[d];
    xp->has_d = 1;
    LLVMValueRef base = nsw_mul(k, ix_flat(k, xp), ci64(k, P));
    LLVMValueRef j = loop_open(k, &inner[ni++], ci64(k, 0), ci64(k, P));
    xi->flat = nsw_add(k, base, j);
  } else {
    for (int d = 0; d < r; d++) xi->d[d] = xo->d[d];
    ni = open_nest(k, inner, &in->shape, 0, xi, ~axes);
    xi->has_d = 1;
  }
  LLVMValueRef a = LLVMBuildLoad2(L->b, low_type(L, n->dtype), acc, "");
  LLVMBuildStore(L->b, low_reduce_step(L, n->op, n->dtype, a, ev(k, n->in[0], xi)), acc);
  close_nest(k, inner, ni);
  store_at(k, n->dtype, ix_flat(k, xo), LLVMBuildLoad2(L->b, low_type(L, n->dtype), acc, ""));
  close_nest(k, lps, nl);
}

static void body_scatter(KC *k, const Kernel *kn) {
  const Node *n = &k->g->nodes[kn->root];
  const Node *upd = &k->g->nodes[n->in[0]], *idx = &k->g->nodes[n->in[1]];
  Low *L = k->L;
  int ax = n->attr.sl.axis;
  fill_dst(k, n->dtype, shape_numel(&n->shape), low_const(L, n->dtype, 0));
  if (n->shape.dims[ax] == 0) return;
  Loop lps[IR_MAXRANK];
  Ix *xu = ix_new(k, &upd->shape);
  int nl = open_nest(k, lps, &upd->shape, 0, xu, 0);
  xu->has_d = 1;
  Ix *xi = ix_new(k, &idx->shape);
  xi->d[0] = xu->d[ax];
  xi->has_d = 1;
  Ix *xo = ix_new(k, &n->shape);
  for (int d = 0; d < n->shape.rank; d++) xo->d[d] = xu->d[d];
  xo->d[ax] = clamp(k, to_i64(k, idx->dtype, ev(k, n->in[1], xi)), n->shape.dims[ax]);
  xo->has_d = 1;
  LLVMValueRef p = LLVMBuildInBoundsGEP2(L->b, low_type(L, n->dtype), k->dst, (LLVMValueRef[]){ix_flat(k, xo)}, 1, "");
  LLVMValueRef acc = LLVMBuildLoad2(L->b, low_type(L, n->dtype), p, "");
  LLVMValueRef v = ev(k, n->in[0], xu);
  LLVMBuildStore(L->b, dtype_is_float(n->dtype) ? LLVMBuildFAdd(L->b, acc, v, "") : LLVMBuildAdd(L->b, acc, v, ""), p);
  close_nest(k, lps, nl);
}

/* ---- kernel functions ------------------------------------------------------------------------ */
static void add_attr(Low *L, LLVMValueRef f, unsigned idx, const char *name) {
  unsigned kind = LLVMGetEnumAttributeKindForName(name, strlen(name));
  LLVMAddAttributeAtIndex(f, idx, LLVMCreateEnumAttribute(L->cx, kind, 0));
}

/* Kernels touching fewer elements are compiled without optimization (optnone): on the
 * IMM graph this halves the machine-code time and changes the step time by < 2%. */
#define CG_SMALL_KERNEL 4096

static void add_optnone(Low *L, LLVMValueRef f) {
  add_attr(L, f, LLVMAttributeFunctionIndex, "optnone");
  add_attr(L, f, LLVMAttributeFunctionIndex, "noinline");
}

/* Elements a kernel touches (its output, or its input for reductions and scatters). */
static int64_t kernel_work(const Sched *s, const Kernel *kn) {
  const Node *n = &s->g->nodes[kn->root];
  if (kn->kind == KN_REDUCE || kn->kind == KN_SCATTER) return shape_numel(&s->g->nodes[n->in[0]].shape);
  return shape_numel(&n->shape);
}

/* Emits NAME.kI.body and the env wrapper NAME.kI; returns the wrapper. */
static LLVMValueRef emit_kernel(Low *L, const Sched *s, int ki, const char *ename, int64_t *extent) {
  const Kernel *kn = &s->k[ki];
  int np = kn->nreads + 1 + kn->nmore; /* reads, dst, sibling dsts */
  LLVMTypeRef *pt = malloc((size_t)(np + 5) * sizeof *pt);
  for (int i = 0; i < np; i++) pt[i] = L->ptr;
  for (int i = 0; i < 5; i++) pt[np + i] = L->i64; /* seed, step, shard, lo, hi */
  char name[256];
  snprintf(name, sizeof name, "%s.k%d.body", ename, ki);
  LLVMValueRef body = LLVMAddFunction(L->m, name, LLVMFunctionType(L->vd, pt, (unsigned)np + 5, 0));
  LLVMSetLinkage(body, LLVMInternalLinkage);
  add_attr(L, body, LLVMAttributeFunctionIndex, "nounwind");
  /* 256-bit vectors: libmvec's 8-wide AVX2 variants are what LLVM 19 maps exp/log/sin/cos
   * to (with 512-bit vectors it widens to 16 lanes and then scalarizes the calls), and
   * Zen 4 splits 512-bit ops anyway. */
  LLVMAddAttributeAtIndex(body, LLVMAttributeFunctionIndex,
                          LLVMCreateStringAttribute(L->cx, "prefer-vector-width", 19, "256", 3));
  /* too little work to repay vectorization (or an entry run only by checks): no IR
   * passes, fast instruction selection */
  if (s->g->cold || kernel_work(s, kn) < CG_SMALL_KERNEL) add_optnone(L, body);
  for (int i = 0; i < np; i++) {
    add_attr(L, body, (unsigned)i + 1, "noalias");
    add_attr(L, body, (unsigned)i + 1, "nocapture");
    if (i < kn->nreads) add_attr(L, body, (unsigned)i + 1, "readonly");
  }
  KC k = {0};
  k.L = L;
  k.s = s;
  k.g = s->g;
  k.fn = body;
  k.base = calloc((size_t)s->g->nnodes, sizeof *k.base);
  k.memo = calloc((size_t)s->g->nnodes, sizeof *k.memo);
  k.memo_ix = calloc((size_t)s->g->nnodes, sizeof *k.memo_ix);
  for (int i = 0; i < kn->nreads; i++) k.base[kn->reads[i]] = LLVMGetParam(body, (unsigned)i);
  k.dst = LLVMGetParam(body, (unsigned)kn->nreads);
  for (int j = 0; j < kn->nmore; j++) k.more_dst[j] = LLVMGetParam(body, (unsigned)(kn->nreads + 1 + j));
  k.seed = LLVMGetParam(body, (unsigned)np);
  k.step = LLVMGetParam(body, (unsigned)np + 1);
  k.shard = LLVMGetParam(body, (unsigned)np + 2);
  LLVMBasicBlockRef entry = LLVMAppendBasicBlockInContext(L->cx, body, "entry");
  LLVMBasicBlockRef start = LLVMAppendBasicBlockInContext(L->cx, body, "start");
  k.alloca_b = LLVMCreateBuilderInContext(L->cx);
  LLVMPositionBuilderAtEnd(k.alloca_b, entry);
  LLVMPositionBuilderAtEnd(L->b, start);
  LLVMValueRef lo = LLVMGetParam(body, (unsigned)np + 3), hi = LLVMGetParam(body, (unsigned)np + 4);
  int flat;
  *extent = kernel_extent(s, kn, &flat);
  if (kn->kind == KN_LOOP) body_loop(&k, kn, lo, hi, flat);
  else if (kn->kind == KN_REDUCE) body_reduce(&k, kn, lo, hi);
  else body_scatter(&k, kn);
  LLVMBuildRetVoid(L->b);
  LLVMBuildBr(k.alloca_b, start);
  LLVMDisposeBuilder(k.alloca_b);
  while (k.ixs) {
    Ix *nx = k.ixs->next;
    free(k.ixs);
    k.ixs = nx;
  }
  free(k.base);
  free(k.memo);
  free(k.memo_ix);

  /* wrapper: void NAME.kI(ptr env, i64 lo, i64 hi) */
  snprintf(name, sizeof name, "%s.k%d", ename, ki);
  LLVMTypeRef wt[3] = {L->ptr, L->i64, L->i64};
  LLVMValueRef w = LLVMAddFunction(L->m, name, LLVMFunctionType(L->vd, wt, 3, 0));
  LLVMSetLinkage(w, LLVMInternalLinkage);
  add_attr(L, w, LLVMAttributeFunctionIndex, "nounwind");
  add_optnone(L, w); /* loads and one call: nothing to optimize */
  LLVMPositionBuilderAtEnd(L->b, LLVMAppendBasicBlockInContext(L->cx, w, "e"));
  LLVMValueRef *args = malloc((size_t)(np + 5) * sizeof *args);
  LLVMValueRef env = LLVMGetParam(w, 0);
  for (int i = 0; i < np + 3; i++) {
    LLVMValueRef p = LLVMBuildInBoundsGEP2(L->b, L->i64, env, (LLVMValueRef[]){LLVMConstInt(L->i64, (unsigned)i, 0)}, 1, "");
    args[i] = LLVMBuildLoad2(L->b, pt[i], p, "");
  }
  args[np + 3] = LLVMGetParam(w, 1);
  args[np + 4] = LLVMGetParam(w, 2);
  LLVMBuildCall2(L->b, LLVMFunctionType(L->vd, pt, (unsigned)np + 5, 0), body, args, (unsigned)np + 5, "");
  LLVMBuildRetVoid(L->b);
  free(args);
  free(pt);
  return w;
}

/* ---- kernel reuse ----------------------------------------------------------------------------
 * Two kernels whose fused trees are equal up to which buffers they read (same ops, dtypes,
 * shapes, attributes, same pattern of reads) compile to the same function: the forward
 * pass of `loss` and of `loss_grad`, or the two evaluations of one network inside a loss,
 * share their code. The key serializes the tree in the order collect_reads() numbers the
 * buffers, so equal keys mean equal parameter lists. */
struct LowKernel {
  char *key;
  size_t len;
  LLVMValueRef fn;
  int64_t extent;
};

typedef struct {
  char *b;
  size_t n, cap;
} Bytes;

static void put(Bytes *k, const void *p, size_t n) {
  if (k->n + n > k->cap) {
    k->cap = (k->n + n) * 2 + 64;
    k->b = xrealloc(k->b, k->cap);
  }
  memcpy(k->b + k->n, p, n);
  k->n += n;
}

static void key_node(const Sched *s, const Kernel *kn, ValId v, int root, int *local, int *nlocal, Bytes *k) {
  if (local[v] >= 0) {
    int32_t ref[2] = {-1, local[v]};
    put(k, ref, sizeof ref);
    return;
  }
  local[v] = (*nlocal)++;
  const Node *n = &s->g->nodes[v];
  int32_t head[3] = {(int32_t)n->op, (int32_t)n->dtype, n->shape.rank};
  put(k, head, sizeof head);
  put(k, n->shape.dims, (size_t)n->shape.rank * sizeof n->shape.dims[0]);
  if (!root && s->store[v] != IR_ERR) {
    int32_t slot = -2;
    for (int i = 0; i < kn->nreads; i++)
      if (kn->reads[i] == s->store[v]) slot = i;
    if (s->store[v] == kn->root) slot = -3;
    for (int j = 0; j < kn->nmore; j++)
      if (s->store[v] == kn->more[j]) slot = -4 - j;
    put(k, &slot, sizeof slot);
    return;
  }
  put(k, &n->attr, sizeof n->attr);
  for (int i = 0; i < ir_nin(n); i++) key_node(s, kn, n->in[i], 0, local, nlocal, k);
}

static char *kernel_key(const Sched *s, const Kernel *kn, size_t *len) {
  Bytes k = {0};
  int32_t head[4] = {(int32_t)kn->kind, kn->copy, kn->mem_acc, kn->nmore};
  put(&k, head, sizeof head);
  int *local = malloc((size_t)s->g->nnodes * sizeof *local), nlocal = 0;
  for (int i = 0; i < s->g->nnodes; i++) local[i] = -1;
  key_node(s, kn, kn->root, !kn->copy, local, &nlocal, &k);
  for (int j = 0; j < kn->nmore; j++) key_node(s, kn, kn->more[j], 1, local, &nlocal, &k);
  free(local);
  *len = k.n;
  return k.b;
}

static LLVMValueRef kernel_fn(Low *L, const Sched *s, int ki, const char *ename, int64_t *extent) {
  size_t len;
  char *key = kernel_key(s, &s->k[ki], &len);
  for (int i = 0; i < L->nkernels; i++)
    if (L->kernels[i].len == len && !memcmp(L->kernels[i].key, key, len)) {
      free(key);
      *extent = L->kernels[i].extent;
      return L->kernels[i].fn;
    }
  LLVMValueRef fn = emit_kernel(L, s, ki, ename, extent);
  L->kernels = xrealloc(L->kernels, (size_t)(L->nkernels + 1) * sizeof *L->kernels);
  L->kernels[L->nkernels++] = (struct LowKernel){key, len, fn, *extent};
  return fn;
}

/* ---- entry functions ------------------------------------------------------------------------ */
typedef struct {
  Low *L;
  const Sched *s;
  const CgOptions *o;
  LLVMValueRef fn, rc, seed, step, shard, pool;
  LLVMBuilderRef alloca_b;
  int nin, nparam;
} EC;

static LLVMValueRef buf_ptr(EC *e, const Buf *bf) {
  Low *L = e->L;
  switch (bf->kind) {
  case BUF_INPUT: return LLVMGetParam(e->fn, (unsigned)bf->index);
  case BUF_PARAM: return LLVMGetParam(e->fn, (unsigned)(e->nin + bf->index));
  case BUF_OUTPUT: return LLVMGetParam(e->fn, (unsigned)(e->nin + e->nparam + bf->index));
  case BUF_WS: {
    LLVMValueRef ws = LLVMGetParam(e->fn, LLVMCountParams(e->fn) - 2);
    LLVMValueRef off = LLVMConstInt(L->i64, (unsigned long long)bf->offset, 0);
    return LLVMBuildInBoundsGEP2(L->b, L->i8, ws, &off, 1, "");
  }
  default: IR_ASSERT(0 && "no buffer");
  }
  return NULL;
}

static LLVMValueRef node_ptr(EC *e, ValId v) { return buf_ptr(e, &e->s->buf[e->s->store[v]]); }

static void call_kernel(EC *e, const Kernel *kn, LLVMValueRef w, int64_t extent) {
  Low *L = e->L;
  LLVMBuilderRef b = L->b;
  int np = kn->nreads + 1 + kn->nmore;
  LLVMValueRef env = LLVMBuildArrayAlloca(e->alloca_b, L->i64, LLVMConstInt(L->i64, (unsigned)np + 3, 0), "env");
  for (int i = 0; i < np + 3; i++) {
    LLVMValueRef v = i < kn->nreads ? buf_ptr(e, &e->s->buf[kn->reads[i]])
                     : i == kn->nreads ? buf_ptr(e, &kn->dst)
                     : i < np ? buf_ptr(e, &kn->more_dst[i - kn->nreads - 1])
                     : i == np ? e->seed : i == np + 1 ? e->step : e->shard;
    LLVMValueRef p = LLVMBuildInBoundsGEP2(b, L->i64, env, (LLVMValueRef[]){LLVMConstInt(L->i64, (unsigned)i, 0)}, 1, "");
    LLVMBuildStore(b, v, p);
  }
  LLVMTypeRef wt[3] = {L->ptr, L->i64, L->i64};
  LLVMValueRef args[3] = {env, LLVMConstInt(L->i64, 0, 0), LLVMConstInt(L->i64, (unsigned long long)extent, 0)};
  if (extent <= 1) {
    LLVMBuildCall2(b, LLVMFunctionType(L->vd, wt, 3, 0), w, args, 3, "");
    return;
  }
  int64_t per = kernel_work(e->s, kn) / extent;
  int64_t grain = (e->o->par_grain > 0 ? e->o->par_grain : 16384) / (per > 0 ? per : 1);
  if (grain < 1) grain = 1;
  LLVMBasicBlockRef par = LLVMAppendBasicBlockInContext(L->cx, e->fn, "par"),
                    ser = LLVMAppendBasicBlockInContext(L->cx, e->fn, "ser"),
                    join = LLVMAppendBasicBlockInContext(L->cx, e->fn, "join");
  LLVMBuildCondBr(b, LLVMBuildIsNotNull(b, e->pool, ""), par, ser);
  LLVMPositionBuilderAtEnd(b, par);
  LLVMTypeRef pt[5] = {L->ptr, L->i64, L->i64, L->ptr, L->ptr};
  LLVMValueRef pf = low_func(L, "gr_parallel_for", L->vd, pt, 5);
  LLVMValueRef pargs[5] = {e->rc, args[2], LLVMConstInt(L->i64, (unsigned long long)grain, 0), w, env};
  LLVMBuildCall2(b, LLVMFunctionType(L->vd, pt, 5, 0), pf, pargs, 5, "");
  LLVMBuildBr(b, join);
  LLVMPositionBuilderAtEnd(b, ser);
  LLVMBuildCall2(b, LLVMFunctionType(L->vd, wt, 3, 0), w, args, 3, "");
  LLVMBuildBr(b, join);
  LLVMPositionBuilderAtEnd(b, join);
}

/* C[M,N] = op(A) op(B), batched over leading dims by a loop of BLAS calls. */
static void call_gemm(EC *e, const Kernel *kn) {
  Low *L = e->L;
  LLVMBuilderRef b = L->b;
  const Graph *g = e->s->g;
  const Node *n = &g->nodes[kn->root];
  const Shape *sa = &g->nodes[kn->mm_a].shape, *sb = &g->nodes[kn->mm_b].shape;
  int r = n->shape.rank;
  int64_t M = n->shape.dims[r - 2], N = n->shape.dims[r - 1];
  int64_t K = kn->mm_ta ? sa->dims[r - 2] : sa->dims[r - 1];
  int64_t lda = sa->dims[r - 1], ldb = sb->dims[r - 1];
  int64_t nb = 1;
  for (int i = 0; i < r - 2; i++) nb *= n->shape.dims[i];
  if (M == 0 || N == 0) return;
  DType t = n->dtype;
  LLVMTypeRef ty = low_type(L, t);
  LLVMValueRef A = node_ptr(e, kn->mm_a), B = node_ptr(e, kn->mm_b), C = buf_ptr(e, &kn->dst);
  /* gr_gemm(rc, f64, ta, tb, M, N, K, A, lda, B, ldb, C, ldc): runtime/gemm.c splits it
   * over the pool */
  LLVMTypeRef at[13] = {L->ptr, L->i32, L->i32, L->i32, L->i64, L->i64, L->i64, L->ptr, L->i64, L->ptr, L->i64, L->ptr, L->i64};
  LLVMTypeRef ft = LLVMFunctionType(L->vd, at, 13, 0);
  LLVMValueRef f = low_func(L, "gr_gemm", L->vd, at, 13);
  /* batch loop (in the entry function itself) */
  LLVMBasicBlockRef pre = LLVMGetInsertBlock(b);
  LLVMBasicBlockRef head = LLVMAppendBasicBlockInContext(L->cx, e->fn, "gemm"),
                    body = LLVMAppendBasicBlockInContext(L->cx, e->fn, "gemm.body"),
                    done = LLVMAppendBasicBlockInContext(L->cx, e->fn, "gemm.done");
  LLVMBuildBr(b, head);
  LLVMPositionBuilderAtEnd(b, head);
  LLVMValueRef i = LLVMBuildPhi(b, L->i64, "bi");
  LLVMValueRef zero = LLVMConstInt(L->i64, 0, 0);
  LLVMAddIncoming(i, &zero, &pre, 1);
  LLVMBuildCondBr(b, LLVMBuildICmp(b, LLVMIntSLT, i, LLVMConstInt(L->i64, (unsigned long long)nb, 0), ""), body, done);
  LLVMPositionBuilderAtEnd(b, body);
#define I32(v) LLVMConstInt(L->i32, (unsigned long long)(v), 0)
#define I64(v) LLVMConstInt(L->i64, (unsigned long long)(v), 0)
#define OFF(p, per) LLVMBuildInBoundsGEP2(b, ty, (p), (LLVMValueRef[]){LLVMBuildNSWMul(b, i, LLVMConstInt(L->i64, (unsigned long long)(per), 0), "")}, 1, "")
  LLVMValueRef args[13] = {e->rc, I32(t == DT_F64), I32(kn->mm_ta ? 1 : 0), I32(kn->mm_tb ? 1 : 0), I64(M), I64(N), I64(K),
                           OFF(A, M * K), I64(lda), OFF(B, K * N), I64(ldb), OFF(C, M * N), I64(N)};
#undef I32
#undef I64
#undef OFF
  LLVMBuildCall2(b, ft, f, args, 13, "");
  LLVMValueRef next = LLVMBuildNSWAdd(b, i, LLVMConstInt(L->i64, 1, 0), "");
  LLVMBuildBr(b, head);
  LLVMBasicBlockRef latch = LLVMGetInsertBlock(b);
  LLVMAddIncoming(i, &next, &latch, 1);
  LLVMPositionBuilderAtEnd(b, done);
}

static void emit_entry(Low *L, const Sched *s, const CgOptions *o) {
  const Graph *g = s->g;
  int nin = g->ninputs, np = L->p->nparams, nout = g->noutputs;
  int nargs = nin + np + nout + 2;
  LLVMTypeRef *pt = malloc((size_t)nargs * sizeof *pt);
  for (int i = 0; i < nargs; i++) pt[i] = L->ptr;
  LLVMTypeRef ft = LLVMFunctionType(L->vd, pt, (unsigned)nargs, 0);
  /* kernels first (they are separate functions) */
  LLVMValueRef *kw = calloc((size_t)s->nk + 1, sizeof *kw);
  int64_t *ext = calloc((size_t)s->nk + 1, sizeof *ext);
  for (int i = 0; i < s->nk; i++)
    if (s->k[i].kind != KN_MATMUL) kw[i] = kernel_fn(L, s, i, g->name, &ext[i]);
  EC e = {0};
  e.L = L;
  e.s = s;
  e.o = o;
  e.nin = nin;
  e.nparam = np;
  e.fn = LLVMAddFunction(L->m, g->name, ft);
  add_attr(L, e.fn, LLVMAttributeFunctionIndex, "nounwind");
  add_optnone(L, e.fn); /* a sequence of calls: fast instruction selection is enough */
  LLVMBasicBlockRef entry = LLVMAppendBasicBlockInContext(L->cx, e.fn, "entry");
  LLVMBasicBlockRef start = LLVMAppendBasicBlockInContext(L->cx, e.fn, "start");
  e.alloca_b = LLVMCreateBuilderInContext(L->cx);
  LLVMPositionBuilderAtEnd(e.alloca_b, entry);
  LLVMPositionBuilderAtEnd(L->b, start);
  e.rc = LLVMGetParam(e.fn, (unsigned)nargs - 1);
  /* GrRunCtx: { u64 seed; u64 step; GrPool *pool; u64 shard; } */
  e.seed = LLVMBuildLoad2(L->b, L->i64, e.rc, "seed");
  e.step = LLVMBuildLoad2(L->b, L->i64, LLVMBuildInBoundsGEP2(L->b, L->i8, e.rc, (LLVMValueRef[]){LLVMConstInt(L->i64, 8, 0)}, 1, ""), "step");
  e.pool = LLVMBuildLoad2(L->b, L->ptr, LLVMBuildInBoundsGEP2(L->b, L->i8, e.rc, (LLVMValueRef[]){LLVMConstInt(L->i64, 16, 0)}, 1, ""), "pool");
  e.shard = LLVMBuildLoad2(L->b, L->i64, LLVMBuildInBoundsGEP2(L->b, L->i8, e.rc, (LLVMValueRef[]){LLVMConstInt(L->i64, 24, 0)}, 1, ""), "shard");
  for (int i = 0; i < s->nk; i++) {
    if (s->k[i].kind == KN_MATMUL) call_gemm(&e, &s->k[i]);
    else call_kernel(&e, &s->k[i], kw[i], ext[i]);
  }
  LLVMBuildRetVoid(L->b);
  LLVMBuildBr(e.alloca_b, start);
  LLVMDisposeBuilder(e.alloca_b);

  /* uniform wrapper: void gr_entry_NAME(void **args, void *ws, const GrRunCtx *rc) */
  char name[256];
  snprintf(name, sizeof name, "gr_entry_%s", g->name);
  LLVMTypeRef wt[3] = {L->ptr, L->ptr, L->ptr};
  LLVMValueRef w = LLVMAddFunction(L->m, name, LLVMFunctionType(L->vd, wt, 3, 0));
  LLVMPositionBuilderAtEnd(L->b, LLVMAppendBasicBlockInContext(L->cx, w, "e"));
  LLVMValueRef *args = malloc((size_t)nargs * sizeof *args);
  for (int i = 0; i < nargs - 2; i++) {
    LLVMValueRef p = LLVMBuildInBoundsGEP2(L->b, L->ptr, LLVMGetParam(w, 0), (LLVMValueRef[]){LLVMConstInt(L->i64, (unsigned)i, 0)}, 1, "");
    args[i] = LLVMBuildLoad2(L->b, L->ptr, p, "");
  }
  args[nargs - 2] = LLVMGetParam(w, 1);
  args[nargs - 1] = LLVMGetParam(w, 2);
  LLVMBuildCall2(L->b, ft, e.fn, args, (unsigned)nargs, "");
  LLVMBuildRetVoid(L->b);
  free(args);
  free(kw);
  free(ext);
  free(pt);
}

LLVMModuleRef cg_lower(const CgPlan *plan, const CgOptions *o, LLVMContextRef cx, LLVMTargetMachineRef tm) {
  Low L = {0};
  L.cx = cx;
  L.m = LLVMModuleCreateWithNameInContext("gradc", cx);
  L.b = LLVMCreateBuilderInContext(cx);
  L.i1 = LLVMInt1TypeInContext(cx);
  L.i8 = LLVMInt8TypeInContext(cx);
  L.i32 = LLVMInt32TypeInContext(cx);
  L.i64 = LLVMInt64TypeInContext(cx);
  L.f32 = LLVMFloatTypeInContext(cx);
  L.f64 = LLVMDoubleTypeInContext(cx);
  L.ptr = LLVMPointerTypeInContext(cx, 0);
  L.vd = LLVMVoidTypeInContext(cx);
  L.p = plan->p;
  if (tm) {
    LLVMTargetDataRef td = LLVMCreateTargetDataLayout(tm);
    LLVMSetModuleDataLayout(L.m, td);
    LLVMDisposeTargetData(td);
    char *triple = LLVMGetTargetMachineTriple(tm);
    LLVMSetTarget(L.m, triple);
    LLVMDisposeMessage(triple);
  }
  for (int i = 0; i < plan->n; i++) emit_entry(&L, plan->s[i], o);
  LLVMDisposeBuilder(L.b);
  for (int i = 0; i < L.nkernels; i++) free(L.kernels[i].key);
  free(L.kernels);
  return L.m;
}

/* ---- plans ------------------------------------------------------------------------------------ */
/* Entry points are global symbols named after the entry (the ABI): a name the generated
 * code or the runtime also uses would call the wrong function. */
static int reserved_name(const char *n) {
  static const char *const libm[] = {"exp", "log", "log1p", "sqrt", "sin", "cos", "tan", "atan", "tanh",
                                     "pow", "floor", "fabs", "main", "memcpy", "memset", "memmove"};
  for (int i = 0; i < (int)(sizeof libm / sizeof libm[0]); i++) {
    size_t l = strlen(libm[i]);
    if (!strcmp(n, libm[i]) || (!strncmp(n, libm[i], l) && !strcmp(n + l, "f"))) return 1;
  }
  return !strncmp(n, "gr_", 3) || !strncmp(n, "cblas_", 6) || !strncmp(n, "_ZGV", 4);
}

int cg_plan(Ctx *c, Program *p, const CgOptions *o, CgPlan *plan) {
  memset(plan, 0, sizeof *plan);
  for (int i = 0; i < p->nentries; i++)
    if (reserved_name(p->entries[i]->name)) {
      diag_error(c, SRCLOC_NONE, "entry points become C symbols; pick another name",
                 "entry name '%s' is reserved (a C library or runtime symbol)", p->entries[i]->name);
      return -1;
    }
  plan->p = p;
  plan->n = p->nentries;
  plan->g = calloc((size_t)p->nentries + 1, sizeof *plan->g);
  plan->s = calloc((size_t)p->nentries + 1, sizeof *plan->s);
  for (int i = 0; i < p->nentries; i++) {
    char buf[512];
    if (ir_verify(p->entries[i], p, buf, sizeof buf)) {
      diag_error(c, SRCLOC_NONE, NULL, "internal: entry '%s' does not verify: %s", p->entries[i]->name, buf);
      cg_plan_free(plan);
      return -1;
    }
    plan->g[i] = o->no_graph_opt ? opt_dce(p->entries[i], p) : opt_run(p->entries[i], p);
    plan->s[i] = sched_build(plan->g[i], p);
  }
  return 0;
}

void cg_plan_free(CgPlan *plan) {
  for (int i = 0; i < plan->n; i++) {
    if (plan->s) sched_free(plan->s[i]);
    if (plan->g) graph_free(plan->g[i]);
  }
  free(plan->g);
  free(plan->s);
  memset(plan, 0, sizeof *plan);
}

void cg_options_default(CgOptions *o) {
  memset(o, 0, sizeof *o);
  o->opt_level = 2;
}
