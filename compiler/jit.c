/* jit.c: compile a program in memory (ORC LLJIT) and call its entries through libffi.
 *
 * The module is optimized BEFORE it is handed to LLJIT (LLJIT itself runs no IR passes);
 * the JIT gets its own TargetMachine because LLVMOrcJITTargetMachineBuilderCreateFrom-
 * TargetMachine takes ownership of the one it is given. Every function the module
 * declares (BLAS, libm, libmvec variants the vectorizer introduced, gr_parallel_for,
 * extern functions of the program) is resolved here with dlsym and registered as an
 * absolute symbol: one unresolved symbol would make the whole module fail to
 * materialize, and --as-needed linking can leave libm/libmvec out of the process. A
 * process-symbol generator stays behind as the fallback for the few calls codegen adds
 * on its own (memset, memcpy).
 *
 * Entry points have a flat signature known only at run time (inputs, params, outputs,
 * workspace, rc), so they are called through libffi with a prepared cif. The workspace
 * of each entry is allocated once at compile time: a call allocates nothing.
 */
#include <cblas.h>
#include <dlfcn.h>
#include <ffi.h>
#include <llvm-c/Analysis.h>
#include <llvm-c/LLJIT.h>
#include <llvm-c/Orc.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "lower.h"

static double mono(void) {
  struct timespec t;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
  return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

#pragma weak gr_parallel_for
#pragma weak gr_gemm

/* Used when the runtime's thread pool is not linked in: everything on the caller. */
static void serial_for(const GrRunCtx *rc, int64_t n, int64_t grain,
                       void (*body)(void *, int64_t, int64_t), void *env) {
  (void)rc, (void)grain;
  if (n > 0) body(env, 0, n);
}

/* Used when the runtime's gr_gemm is not linked in: one BLAS call. */
static void serial_gemm(const GrRunCtx *rc, int32_t f64, int32_t ta, int32_t tb, int64_t M,
                        int64_t N, int64_t K, const void *A, int64_t lda, const void *B,
                        int64_t ldb, void *C, int64_t ldc) {
  (void)rc;
  if (M <= 0 || N <= 0) return;
  enum CBLAS_TRANSPOSE a = ta ? CblasTrans : CblasNoTrans, b = tb ? CblasTrans : CblasNoTrans;
  if (f64)
    cblas_dgemm(CblasRowMajor, a, b, (int)M, (int)N, (int)K, 1.0, A, (int)lda, B, (int)ldb, 0.0, C,
                (int)ldc);
  else
    cblas_sgemm(CblasRowMajor, a, b, (int)M, (int)N, (int)K, 1.0f, A, (int)lda, B, (int)ldb, 0.0f,
                C, (int)ldc);
}

typedef struct {
  const char *name;
  const Graph *g; /* the optimized graph (plan) */
  void *flat;
  GrEntryFn wrapper;
  void *ws;
  int64_t ws_bytes;
  ffi_cif cif;
  ffi_type **types;
  void **av; /* libffi's argument pointers, prepared once: a call allocates nothing */
  int nargs;
} JitEntry;

struct CgJit {
  Ctx *ctx;
  Program *p;
  CgPlan plan;
  LLVMOrcLLJITRef jit;
  JitEntry *e;
  int ne;
  GrPool *pool;
  void *libs[8];
  int nlibs;
};

static int jit_fail(CgJit *j, LLVMErrorRef err, const char *what) {
  char *msg = LLVMGetErrorMessage(err);
  diag_error(j->ctx, SRCLOC_NONE, NULL, "JIT: %s: %s", what, msg);
  LLVMDisposeErrorMessage(msg);
  return -1;
}

static void *resolve(CgJit *j, const char *name) {
  if (!strcmp(name, "gr_parallel_for")) return gr_parallel_for ? (void *)gr_parallel_for : (void *)serial_for;
  if (!strcmp(name, "gr_gemm")) return gr_gemm ? (void *)gr_gemm : (void *)serial_gemm;
  if (!strcmp(name, "cblas_sgemm")) return (void *)cblas_sgemm;
  if (!strcmp(name, "cblas_dgemm")) return (void *)cblas_dgemm;
  for (int i = 0; i < j->nlibs; i++) {
    void *a = dlsym(j->libs[i], name);
    if (a) return a;
  }
  return dlsym(RTLD_DEFAULT, name);
}

static void open_libs(CgJit *j) {
  static const char *const std[] = {"libm.so.6", "libmvec.so.1"};
  for (int i = 0; i < 2; i++) {
    void *h = dlopen(std[i], RTLD_NOW | RTLD_GLOBAL);
    if (h) j->libs[j->nlibs++] = h;
  }
  for (int i = 0; i < j->p->nexterns && j->nlibs < 8; i++) {
    const char *lib = j->p->externs[i].lib;
    if (!lib) continue;
    void *h = dlopen(lib, RTLD_NOW | RTLD_GLOBAL);
    if (!h) {
      diag_error(j->ctx, j->p->externs[i].loc, "give a file name dlopen() can find, e.g. \"libm.so.6\"",
                 "cannot load library '%s' for extern '%s': %s", lib, j->p->externs[i].name, dlerror());
      continue;
    }
    j->libs[j->nlibs++] = h;
  }
}

/* Registers an absolute address for every function the module declares. */
static int define_symbols(CgJit *j, LLVMModuleRef m) {
  int cap = 16, n = 0;
  LLVMOrcCSymbolMapPair *pairs = malloc((size_t)cap * sizeof *pairs);
  for (LLVMValueRef f = LLVMGetFirstFunction(m); f; f = LLVMGetNextFunction(f)) {
    size_t len;
    const char *name = LLVMGetValueName2(f, &len);
    if (!LLVMIsDeclaration(f) || LLVMGetIntrinsicID(f) || !strncmp(name, "llvm.", 5)) continue;
    void *addr = resolve(j, name);
    if (!addr) {
      diag_error(j->ctx, SRCLOC_NONE, "is the library that defines it installed?", "JIT: unresolved symbol '%s'", name);
      free(pairs);
      return -1;
    }
    if (n == cap) pairs = xrealloc(pairs, (size_t)(cap *= 2) * sizeof *pairs);
    pairs[n].Name = LLVMOrcLLJITMangleAndIntern(j->jit, name);
    pairs[n].Sym.Address = (LLVMOrcExecutorAddress)(uintptr_t)addr;
    pairs[n].Sym.Flags.GenericFlags = LLVMJITSymbolGenericFlagsExported | LLVMJITSymbolGenericFlagsCallable;
    pairs[n].Sym.Flags.TargetFlags = 0;
    n++;
  }
  int rc = 0;
  if (n) {
    LLVMOrcMaterializationUnitRef mu = LLVMOrcAbsoluteSymbols(pairs, (size_t)n);
    LLVMErrorRef e = LLVMOrcJITDylibDefine(LLVMOrcLLJITGetMainJITDylib(j->jit), mu);
    if (e) rc = jit_fail(j, e, "defining runtime symbols");
  }
  free(pairs);
  return rc;
}

static int create_jit(CgJit *j, const CgOptions *o) {
  char err[256];
  LLVMTargetMachineRef tm = cg_target_machine(o, 0, err, sizeof err);
  if (!tm) {
    diag_error(j->ctx, SRCLOC_NONE, NULL, "JIT: %s", err);
    return -1;
  }
  LLVMOrcLLJITBuilderRef b = LLVMOrcCreateLLJITBuilder();
  LLVMOrcLLJITBuilderSetJITTargetMachineBuilder(b, LLVMOrcJITTargetMachineBuilderCreateFromTargetMachine(tm));
  LLVMErrorRef e = LLVMOrcCreateLLJIT(&j->jit, b);
  if (e) return jit_fail(j, e, "creating LLJIT");
  LLVMOrcDefinitionGeneratorRef gen;
  e = LLVMOrcCreateDynamicLibrarySearchGeneratorForProcess(&gen, LLVMOrcLLJITGetGlobalPrefix(j->jit), NULL, NULL);
  if (e) return jit_fail(j, e, "process symbols");
  LLVMOrcJITDylibAddGenerator(LLVMOrcLLJITGetMainJITDylib(j->jit), gen);
  return 0;
}

static int lookup(CgJit *j, const char *name, void **out) {
  LLVMOrcExecutorAddress a = 0;
  LLVMErrorRef e = LLVMOrcLLJITLookup(j->jit, &a, name);
  if (e) return jit_fail(j, e, name);
  *out = (void *)(uintptr_t)a;
  return 0;
}

static int setup_entry(CgJit *j, int i) {
  JitEntry *en = &j->e[i];
  en->g = j->plan.g[i];
  en->name = en->g->name;
  en->ws_bytes = j->plan.s[i]->ws_bytes;
  en->ws = gr_alloc((size_t)(en->ws_bytes > 0 ? en->ws_bytes : 64));
  if (!en->ws) {
    diag_error(j->ctx, SRCLOC_NONE, NULL, "out of memory for the workspace of '%s' (%lld bytes)", en->name, (long long)en->ws_bytes);
    return -1;
  }
  char wname[300];
  snprintf(wname, sizeof wname, "gr_entry_%s", en->name);
  void *w;
  if (lookup(j, en->name, &en->flat) || lookup(j, wname, &w)) return -1;
  en->wrapper = (GrEntryFn)w;
  en->nargs = en->g->ninputs + j->p->nparams + en->g->noutputs + 2;
  en->types = malloc((size_t)en->nargs * sizeof *en->types);
  en->av = malloc((size_t)en->nargs * sizeof *en->av);
  for (int k = 0; k < en->nargs; k++) en->types[k] = &ffi_type_pointer;
  if (ffi_prep_cif(&en->cif, FFI_DEFAULT_ABI, (unsigned)en->nargs, &ffi_type_void, en->types) != FFI_OK) {
    diag_error(j->ctx, SRCLOC_NONE, NULL, "libffi cannot prepare a call with %d arguments", en->nargs);
    return -1;
  }
  return 0;
}

CgJit *cg_jit_compile(Ctx *c, Program *p, const CgOptions *o) {
  CgOptions def;
  if (!o) {
    cg_options_default(&def);
    o = &def;
  }
  CgJit *j = calloc(1, sizeof *j);
  j->ctx = c;
  j->p = p;
  double t0 = mono();
  if (cg_plan(c, p, o, &j->plan)) {
    free(j);
    return NULL;
  }
  open_libs(j);
  char err[512];
  LLVMTargetMachineRef tm = cg_target_machine(o, 0, err, sizeof err);
  if (!tm || ctx_failed(c) || create_jit(j, o)) {
    if (!tm) diag_error(c, SRCLOC_NONE, NULL, "JIT: %s", err);
    else LLVMDisposeTargetMachine(tm);
    cg_jit_free(j);
    return NULL;
  }
  LLVMOrcThreadSafeContextRef tsc = LLVMOrcCreateNewThreadSafeContext();
  LLVMModuleRef m = cg_lower(&j->plan, o, LLVMOrcThreadSafeContextGetContext(tsc), tm);
#ifndef NDEBUG
  char *vmsg = NULL;
  if (LLVMVerifyModule(m, LLVMReturnStatusAction, &vmsg)) {
    fprintf(stderr, "gradc: internal: invalid LLVM module:\n%s\n", vmsg);
    LLVMDumpModule(m);
    IR_ASSERT(0 && "lowering produced an invalid module");
  }
  LLVMDisposeMessage(vmsg);
#endif
  double t1 = mono();
  int rc = cg_run_passes(m, tm, o, err, sizeof err);
  double t2 = mono();
  LLVMDisposeTargetMachine(tm);
  if (rc) diag_error(c, SRCLOC_NONE, NULL, "%s", err);
  if (rc || define_symbols(j, m)) {
    LLVMDisposeModule(m);
    LLVMOrcDisposeThreadSafeContext(tsc);
    cg_jit_free(j);
    return NULL;
  }
  LLVMOrcThreadSafeModuleRef tsm = LLVMOrcCreateNewThreadSafeModule(m, tsc);
  LLVMOrcDisposeThreadSafeContext(tsc);
  LLVMErrorRef e = LLVMOrcLLJITAddLLVMIRModule(j->jit, LLVMOrcLLJITGetMainJITDylib(j->jit), tsm);
  if (e) {
    jit_fail(j, e, "adding the module");
    cg_jit_free(j);
    return NULL;
  }
  j->ne = j->plan.n;
  j->e = calloc((size_t)j->ne + 1, sizeof *j->e);
  for (int i = 0; i < j->ne; i++)
    if (setup_entry(j, i)) {
      cg_jit_free(j);
      return NULL;
    }
  if (o->timings)
    fprintf(stderr, "gradc: plan+lower %.3f s, IR passes %.3f s, machine code %.3f s\n", t1 - t0, t2 - t1, mono() - t2);
  return j;
}

static JitEntry *find(CgJit *j, const char *entry) {
  for (int i = 0; i < j->ne; i++)
    if (!strcmp(j->e[i].name, entry)) return &j->e[i];
  return NULL;
}

void cg_jit_set_pool(CgJit *j, GrPool *pool) { j->pool = pool; }

GrEntryFn cg_jit_entry(CgJit *j, const char *entry) {
  JitEntry *e = find(j, entry);
  return e ? e->wrapper : NULL;
}

int64_t cg_jit_workspace_bytes(CgJit *j, const char *entry) {
  JitEntry *e = find(j, entry);
  return e ? e->ws_bytes : -1;
}

int cg_jit_call(CgJit *j, const char *entry, void **args, uint64_t seed, uint64_t step) {
  JitEntry *e = find(j, entry);
  if (!e) return -1;
  GrRunCtx rc = {.seed = seed, .step = step, .pool = j->pool};
  const GrRunCtx *rcp = &rc;
  int n = e->nargs;
  void **av = e->av;
  for (int i = 0; i < n - 2; i++) av[i] = &args[i];
  av[n - 2] = &e->ws;
  av[n - 1] = &rcp;
  ffi_call(&e->cif, FFI_FN(e->flat), NULL, av);
  return 0;
}

static int check_tensor(const GrTensor *t, DType dt, const Shape *s, const char *what, const char *name, char *err, size_t n) {
  int ok = t->dtype == (int32_t)dt && t->rank == s->rank && t->data;
  for (int i = 0; ok && i < s->rank; i++) ok = t->dims[i] == s->dims[i];
  if (!ok) {
    char sb[96];
    snprintf(err, n, "%s '%s': expected %s%s", what, name, dtype_name(dt), shape_str(s, sb, sizeof sb));
    return -1;
  }
  return 0;
}

int cg_jit_run(CgJit *j, const char *entry, const GrTensor *inputs, const GrTensor *params,
               GrTensor *outputs, uint64_t seed, uint64_t step, char *err, size_t n) {
  JitEntry *e = find(j, entry);
  if (!e) {
    snprintf(err, n, "no entry named '%s'", entry);
    return -1;
  }
  const Graph *g = e->g;
  for (int i = 0; i < g->ninputs; i++)
    if (check_tensor(&inputs[i], g->inputs[i].dtype, &g->inputs[i].shape, "input", g->inputs[i].name, err, n)) return -1;
  for (int i = 0; i < j->p->nparams; i++)
    if (check_tensor(&params[i], j->p->params[i].dtype, &j->p->params[i].shape, "parameter", j->p->params[i].name, err, n)) return -1;
  int na = e->nargs - 2;
  void **args = calloc((size_t)na + 1, sizeof *args);
  int k = 0;
  for (int i = 0; i < g->ninputs; i++) args[k++] = inputs[i].data;
  for (int i = 0; i < j->p->nparams; i++) args[k++] = params[i].data;
  for (int i = 0; i < g->noutputs; i++) {
    const Node *o = &g->nodes[g->outputs[i].val];
    GrTensor *t = &outputs[i];
    memset(t, 0, sizeof *t);
    t->dtype = (int32_t)o->dtype;
    t->rank = o->shape.rank;
    for (int d = 0; d < o->shape.rank; d++) t->dims[d] = o->shape.dims[d];
    size_t bytes = (size_t)shape_numel(&o->shape) * dtype_size(o->dtype);
    t->data = gr_alloc(bytes ? bytes : 8);
    if (!t->data) {
      for (int q = 0; q < i; q++) gr_tensor_free(&outputs[q]);
      free(args);
      snprintf(err, n, "out of memory for output %d", i);
      return -1;
    }
    args[k++] = t->data;
  }
  cg_jit_call(j, entry, args, seed, step);
  free(args);
  return 0;
}

void cg_jit_free(CgJit *j) {
  if (!j) return;
  for (int i = 0; i < j->ne; i++) {
    gr_free(j->e[i].ws);
    free(j->e[i].types);
    free(j->e[i].av);
  }
  free(j->e);
  if (j->jit) LLVMOrcDisposeLLJIT(j->jit);
  cg_plan_free(&j->plan);
  for (int i = 0; i < j->nlibs; i++) dlclose(j->libs[i]);
  free(j);
}
