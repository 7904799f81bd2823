/* aot.c: a program -> object file with the gr_module table -> standalone executable.
 *
 * The object file holds the same code the JIT runs (lower.c), plus the metadata the
 * runtime's driver needs to train without knowing anything about the program:
 *   const GrModuleInfo gr_module = { abi, source name, graph hash, params (with their
 *     initializers), top-level constants, entries (inputs/outputs, workspace bytes,
 *     flops, uniform wrapper gr_entry_NAME) }
 * and, for executables, `int main(argc, argv) { return gr_main(&gr_module, argc, argv); }`.
 * The struct layouts below mirror runtime/gradrt.h field by field (LLVM's natural
 * alignment on x86-64 matches the C ABI). The graph hash is FNV-1a over the printed IR
 * of every entry and the parameters' names and shapes, so a checkpoint from another
 * graph is refused. Linking calls the system C compiler with libgradrt, OpenBLAS,
 * libmvec and libm; the executable never loads LLVM.
 */
#include <libgen.h>
#include <llvm-c/Analysis.h>
#include <spawn.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "lower.h"

extern char **environ;

typedef struct {
  LLVMContextRef cx;
  LLVMModuleRef m;
  LLVMTypeRef i32, i64, f64, ptr;
  LLVMTypeRef tensor, entry, cnst, module;
  int nstr;
} Meta;

static LLVMValueRef cstr(Meta *mt, const char *s) {
  if (!s) return LLVMConstPointerNull(mt->ptr);
  LLVMValueRef init = LLVMConstStringInContext(mt->cx, s, (unsigned)strlen(s), 0);
  char name[32];
  snprintf(name, sizeof name, ".gr.str%d", mt->nstr++);
  LLVMValueRef g = LLVMAddGlobal(mt->m, LLVMTypeOf(init), name);
  LLVMSetInitializer(g, init);
  LLVMSetGlobalConstant(g, 1);
  LLVMSetLinkage(g, LLVMPrivateLinkage);
  LLVMSetUnnamedAddress(g, LLVMGlobalUnnamedAddr);
  return g;
}

static LLVMValueRef ci32(Meta *mt, int64_t v) { return LLVMConstInt(mt->i32, (unsigned long long)v, 1); }
static LLVMValueRef ci64(Meta *mt, int64_t v) { return LLVMConstInt(mt->i64, (unsigned long long)v, 1); }

static LLVMValueRef const_array(Meta *mt, LLVMTypeRef t, LLVMValueRef *v, int n, const char *name) {
  if (n == 0) return LLVMConstPointerNull(mt->ptr);
  LLVMValueRef init = LLVMConstArray2(t, v, (uint64_t)n);
  LLVMValueRef g = LLVMAddGlobal(mt->m, LLVMTypeOf(init), name);
  LLVMSetInitializer(g, init);
  LLVMSetGlobalConstant(g, 1);
  LLVMSetLinkage(g, LLVMPrivateLinkage);
  return g;
}

/* GrTensorInfo */
static LLVMValueRef tensor_info(Meta *mt, const char *name, DType dt, const Shape *s, const Init *init) {
  LLVMValueRef dims[GR_MAXRANK];
  for (int i = 0; i < GR_MAXRANK; i++) dims[i] = ci64(mt, i < s->rank ? s->dims[i] : 0);
  LLVMValueRef f[9] = {cstr(mt, name), ci32(mt, dt), ci32(mt, s->rank), LLVMConstArray2(mt->i64, dims, GR_MAXRANK),
                       ci32(mt, init ? init->kind : 0), LLVMConstReal(mt->f64, init ? init->a : 0),
                       LLVMConstReal(mt->f64, init ? init->b : 0), ci64(mt, init ? init->fan_in : 0),
                       ci64(mt, init ? init->fan_out : 0)};
  return LLVMConstNamedStruct(mt->tensor, f, 9);
}

static void meta_types(Meta *mt) {
  LLVMContextRef cx = mt->cx;
  mt->i32 = LLVMInt32TypeInContext(cx);
  mt->i64 = LLVMInt64TypeInContext(cx);
  mt->f64 = LLVMDoubleTypeInContext(cx);
  mt->ptr = LLVMPointerTypeInContext(cx, 0);
  mt->tensor = LLVMStructCreateNamed(cx, "GrTensorInfo");
  LLVMTypeRef tf[9] = {mt->ptr, mt->i32, mt->i32, LLVMArrayType2(mt->i64, GR_MAXRANK), mt->i32, mt->f64, mt->f64, mt->i64, mt->i64};
  LLVMStructSetBody(mt->tensor, tf, 9, 0);
  mt->entry = LLVMStructCreateNamed(cx, "GrEntryInfo");
  LLVMTypeRef ef[8] = {mt->ptr, mt->i32, mt->i32, mt->ptr, mt->ptr, mt->i64, mt->i64, mt->ptr};
  LLVMStructSetBody(mt->entry, ef, 8, 0);
  mt->cnst = LLVMStructCreateNamed(cx, "GrConstInfo");
  LLVMTypeRef cf[4] = {mt->ptr, mt->i32, mt->f64, mt->ptr};
  LLVMStructSetBody(mt->cnst, cf, 4, 0);
  mt->module = LLVMStructCreateNamed(cx, "GrModuleInfo");
  LLVMTypeRef mf[9] = {mt->i32, mt->ptr, mt->ptr, mt->i32, mt->i32, mt->i32, mt->ptr, mt->ptr, mt->ptr};
  LLVMStructSetBody(mt->module, mf, 9, 0);
}

static LLVMValueRef entry_info(Meta *mt, const CgPlan *plan, int e) {
  const Graph *g = plan->g[e];
  const Sched *s = plan->s[e];
  LLVMValueRef *in = calloc((size_t)g->ninputs + 1, sizeof *in), *out = calloc((size_t)g->noutputs + 1, sizeof *out);
  for (int i = 0; i < g->ninputs; i++) in[i] = tensor_info(mt, g->inputs[i].name, g->inputs[i].dtype, &g->inputs[i].shape, NULL);
  for (int i = 0; i < g->noutputs; i++) {
    const Node *n = &g->nodes[g->outputs[i].val];
    out[i] = tensor_info(mt, g->outputs[i].name, n->dtype, &n->shape, NULL);
  }
  char nm[300], wn[300];
  snprintf(nm, sizeof nm, ".gr.in.%s", g->name);
  LLVMValueRef ins = const_array(mt, mt->tensor, in, g->ninputs, nm);
  snprintf(nm, sizeof nm, ".gr.out.%s", g->name);
  LLVMValueRef outs = const_array(mt, mt->tensor, out, g->noutputs, nm);
  snprintf(wn, sizeof wn, "gr_entry_%s", g->name);
  LLVMValueRef fn = LLVMGetNamedFunction(mt->m, wn);
  IR_ASSERT(fn);
  LLVMValueRef f[8] = {cstr(mt, g->name), ci32(mt, g->ninputs), ci32(mt, g->noutputs), ins, outs,
                       ci64(mt, s->ws_bytes), ci64(mt, s->flops), fn};
  free(in);
  free(out);
  return LLVMConstNamedStruct(mt->entry, f, 8);
}

/* FNV-1a of the printed IR of every entry and of the parameters, as 16 hex digits. */
static void graph_hash(const Program *p, char hex[17]) {
  char *buf = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&buf, &len);
  for (int i = 0; i < p->nentries; i++) ir_print(p->entries[i], p, f);
  for (int i = 0; i < p->nparams; i++) {
    char sb[96];
    fprintf(f, "param %s %s%s\n", p->params[i].name, dtype_name(p->params[i].dtype), shape_str(&p->params[i].shape, sb, sizeof sb));
  }
  fclose(f);
  uint64_t h = 1469598103934665603ull;
  for (size_t i = 0; i < len; i++) h = (h ^ (unsigned char)buf[i]) * 1099511628211ull;
  free(buf);
  snprintf(hex, 17, "%016llx", (unsigned long long)h);
}

static void emit_metadata(LLVMModuleRef m, const CgPlan *plan, const CgOptions *o, int with_main) {
  Meta mt = {0};
  mt.cx = LLVMGetModuleContext(m);
  mt.m = m;
  meta_types(&mt);
  const Program *p = plan->p;
  LLVMValueRef *pv = calloc((size_t)p->nparams + 1, sizeof *pv);
  for (int i = 0; i < p->nparams; i++) pv[i] = tensor_info(&mt, p->params[i].name, p->params[i].dtype, &p->params[i].shape, &p->params[i].init);
  LLVMValueRef params = const_array(&mt, mt.tensor, pv, p->nparams, ".gr.params");
  LLVMValueRef *cv = calloc((size_t)p->nconsts + 1, sizeof *cv);
  for (int i = 0; i < p->nconsts; i++) {
    LLVMValueRef f[4] = {cstr(&mt, p->consts[i].name), ci32(&mt, p->consts[i].is_str),
                         LLVMConstReal(mt.f64, p->consts[i].num), cstr(&mt, p->consts[i].is_str ? p->consts[i].str : NULL)};
    cv[i] = LLVMConstNamedStruct(mt.cnst, f, 4);
  }
  LLVMValueRef consts = const_array(&mt, mt.cnst, cv, p->nconsts, ".gr.consts");
  LLVMValueRef *ev = calloc((size_t)plan->n + 1, sizeof *ev);
  for (int i = 0; i < plan->n; i++) ev[i] = entry_info(&mt, plan, i);
  LLVMValueRef entries = const_array(&mt, mt.entry, ev, plan->n, ".gr.entries");
  char hex[17];
  graph_hash(p, hex);
  LLVMValueRef f[9] = {ci32(&mt, GR_ABI_VERSION), cstr(&mt, o->source_name ? o->source_name : "?"), cstr(&mt, hex),
                       ci32(&mt, p->nparams), ci32(&mt, p->nconsts), ci32(&mt, plan->n), params, consts, entries};
  LLVMValueRef gm = LLVMAddGlobal(m, mt.module, "gr_module");
  LLVMSetInitializer(gm, LLVMConstNamedStruct(mt.module, f, 9));
  LLVMSetGlobalConstant(gm, 1);
  free(pv);
  free(cv);
  free(ev);
  if (!with_main) return;
  /* int main(int argc, char **argv) { return gr_main(&gr_module, argc, argv); } */
  LLVMTypeRef mainargs[2] = {mt.i32, mt.ptr}, gmargs[3] = {mt.ptr, mt.i32, mt.ptr};
  LLVMValueRef mainf = LLVMAddFunction(m, "main", LLVMFunctionType(mt.i32, mainargs, 2, 0));
  LLVMTypeRef gmt = LLVMFunctionType(mt.i32, gmargs, 3, 0);
  LLVMValueRef grmain = LLVMGetNamedFunction(m, "gr_main");
  if (!grmain) grmain = LLVMAddFunction(m, "gr_main", gmt);
  LLVMBuilderRef b = LLVMCreateBuilderInContext(mt.cx);
  LLVMPositionBuilderAtEnd(b, LLVMAppendBasicBlockInContext(mt.cx, mainf, "e"));
  LLVMValueRef a[3] = {gm, LLVMGetParam(mainf, 0), LLVMGetParam(mainf, 1)};
  LLVMBuildRet(b, LLVMBuildCall2(b, gmt, grmain, a, 3, ""));
  LLVMDisposeBuilder(b);
}

int cg_emit_object(Ctx *c, Program *p, const CgOptions *o, const char *obj_path, int with_main) {
  CgOptions def;
  if (!o) {
    cg_options_default(&def);
    o = &def;
  }
  CgPlan plan;
  if (cg_plan(c, p, o, &plan)) return -1;
  char err[512];
  LLVMTargetMachineRef tm = cg_target_machine(o, 1, err, sizeof err);
  if (!tm) {
    diag_error(c, SRCLOC_NONE, "try --cpu=native or --cpu=x86-64-v3", "%s", err);
    cg_plan_free(&plan);
    return -1;
  }
  LLVMContextRef cx = LLVMContextCreate();
  LLVMModuleRef m = cg_lower(&plan, o, cx, tm);
  emit_metadata(m, &plan, o, with_main);
  int rc = 0;
  char *msg = NULL;
  if (LLVMVerifyModule(m, LLVMReturnStatusAction, &msg)) {
    diag_error(c, SRCLOC_NONE, NULL, "internal: invalid LLVM module: %s", msg);
    rc = -1;
  }
  LLVMDisposeMessage(msg);
  msg = NULL;
  if (!rc && cg_run_passes(m, tm, o, err, sizeof err)) {
    diag_error(c, SRCLOC_NONE, NULL, "%s", err);
    rc = -1;
  }
  if (!rc && LLVMTargetMachineEmitToFile(tm, m, (char *)obj_path, LLVMObjectFile, &msg)) {
    diag_error(c, SRCLOC_NONE, "check that the folder exists and is writable", "cannot write '%s': %s", obj_path, msg ? msg : "?");
    rc = -1;
  }
  LLVMDisposeMessage(msg);
  LLVMDisposeModule(m);
  LLVMContextDispose(cx);
  LLVMDisposeTargetMachine(tm);
  cg_plan_free(&plan);
  return rc;
}

/* The folder of libgradrt.a: o->rt_dir, else the folder of the running executable. */
static char *rt_dir(const CgOptions *o) {
  if (o->rt_dir) return strdup(o->rt_dir);
  char self[4096];
  ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
  if (n <= 0) return strdup(".");
  self[n] = 0;
  return strdup(dirname(self));
}

static int run_cmd(Ctx *c, char **argv) {
  pid_t pid;
  if (posix_spawnp(&pid, argv[0], NULL, NULL, argv, environ)) {
    diag_error(c, SRCLOC_NONE, strcmp(argv[0], "mpicc") == 0 ? "install Open MPI: apt-get install openmpi-bin libopenmpi-dev"
                                                           : "install a C compiler (gcc) or pass one with --cc",
               "cannot run '%s'", argv[0]);
    return -1;
  }
  int st;
  if (waitpid(pid, &st, 0) < 0 || !WIFEXITED(st) || WEXITSTATUS(st)) {
    diag_error(c, SRCLOC_NONE, "see the linker's message above", "linking with '%s' failed", argv[0]);
    return -1;
  }
  return 0;
}

/* gold links a training executable in ~25 ms, GNU ld (bfd) in ~50 ms: a sixth of `gradc
 * build graphs/imm_2d.grad` (docs/performance.md). Used when ld.gold is on PATH and the
 * compiler driver is the default one. */
static int have_gold(void) {
  const char *path = getenv("PATH");
  char buf[4096];
  for (const char *q = path; q && *q;) {
    const char *e = strchr(q, ':');
    size_t n = e ? (size_t)(e - q) : strlen(q);
    if (n > 0 && n + 10 < sizeof buf) {
      memcpy(buf, q, n);
      memcpy(buf + n, "/ld.gold", 9);
      if (access(buf, X_OK) == 0) return 1;
    }
    q = e ? e + 1 : q + n;
  }
  return 0;
}

int cg_build_executable(Ctx *c, Program *p, const CgOptions *o, const char *out_path) {
  CgOptions def;
  if (!o) {
    cg_options_default(&def);
    o = &def;
  }
  size_t n = strlen(out_path) + 8;
  char *obj = malloc(n);
  snprintf(obj, n, "%s.o", out_path);
  if (cg_emit_object(c, p, o, obj, 1)) {
    free(obj);
    return -1;
  }
  char *dir = rt_dir(o);
  const char *rtl = o->rt_lib ? o->rt_lib : "gradrt";
  size_t lb = strlen(dir) + strlen(rtl) + 16;
  char *libdir = malloc(lb), *rtarg = malloc(lb);
  snprintf(rtarg, lb, "%s/lib%s.a", dir, rtl);
  if (access(rtarg, R_OK) != 0) {
    diag_error(c, SRCLOC_NONE,
               strcmp(rtl, "gradrt_mpi") == 0 ? "install Open MPI (apt-get install openmpi-bin libopenmpi-dev), then run make"
                                              : "run make, or pass the folder holding it",
               "the runtime library %s does not exist", rtarg);
    remove(obj);
    free(libdir), free(rtarg), free(dir), free(obj);
    return -1;
  }
  snprintf(libdir, lb, "-L%s", dir);
  snprintf(rtarg, lb, "-l%s", rtl);
  char *argv[40];
  int k = 0;
  argv[k++] = (char *)(o->cc ? o->cc : "cc");
  if (!o->cc && have_gold()) argv[k++] = "-fuse-ld=gold";
  argv[k++] = "-o";
  argv[k++] = (char *)out_path;
  argv[k++] = obj;
  argv[k++] = libdir;
  argv[k++] = rtarg;
  char *extlibs[16];
  int ne = 0;
  for (int i = 0; i < p->nexterns && ne < 16; i++) {
    const char *lib = p->externs[i].lib;
    if (!lib) continue;
    size_t ln = strlen(lib) + 4;
    extlibs[ne] = malloc(ln);
    if (strchr(lib, '/')) snprintf(extlibs[ne], ln, "%s", lib);
    else snprintf(extlibs[ne], ln, "-l:%s", lib);
    argv[k++] = extlibs[ne++];
  }
  static const char *const sys[] = {"-lopenblas", "-lmvec", "-lm", "-lpthread", "-lz", "-ldl", "-lffi"};
  for (int i = 0; i < 7; i++) argv[k++] = (char *)sys[i];
  char *extra = o->ldflags ? strdup(o->ldflags) : NULL;
  for (char *save = NULL, *t = extra ? strtok_r(extra, " ", &save) : NULL; t && k < 39; t = strtok_r(NULL, " ", &save))
    argv[k++] = t;
  argv[k] = NULL;
  int rc = run_cmd(c, argv);
  free(extra);
  remove(obj);
  for (int i = 0; i < ne; i++) free(extlibs[i]);
  free(libdir);
  free(rtarg);
  free(dir);
  free(obj);
  return rc;
}

/* ---- dumps ----------------------------------------------------------------------------------
 * `gradc dump --stage=opt|sched|llvm|asm`: the program after the graph passes, its
 * schedules (kernels, fused node counts, buffers, the memory plan's peak), the LLVM module
 * after the IR passes of o->opt_level, or the assembly the object file would contain. */
static void dump_module(Ctx *c, Program *p, const CgOptions *o, int asm_out, FILE *out) {
  CgPlan plan;
  if (cg_plan(c, p, o, &plan)) return;
  char err[512];
  LLVMTargetMachineRef tm = cg_target_machine(o, 1, err, sizeof err);
  if (!tm) {
    diag_error(c, SRCLOC_NONE, NULL, "%s", err);
    cg_plan_free(&plan);
    return;
  }
  LLVMContextRef cx = LLVMContextCreate();
  LLVMModuleRef m = cg_lower(&plan, o, cx, tm);
  if (cg_run_passes(m, tm, o, err, sizeof err)) diag_error(c, SRCLOC_NONE, NULL, "%s", err);
  if (!asm_out) {
    char *s = LLVMPrintModuleToString(m);
    fputs(s, out);
    LLVMDisposeMessage(s);
  } else {
    LLVMMemoryBufferRef mb = NULL;
    char *msg = NULL;
    if (LLVMTargetMachineEmitToMemoryBuffer(tm, m, LLVMAssemblyFile, &msg, &mb)) {
      diag_error(c, SRCLOC_NONE, NULL, "cannot emit assembly: %s", msg ? msg : "?");
    } else {
      fwrite(LLVMGetBufferStart(mb), 1, LLVMGetBufferSize(mb), out);
      LLVMDisposeMemoryBuffer(mb);
    }
    LLVMDisposeMessage(msg);
  }
  LLVMDisposeModule(m);
  LLVMContextDispose(cx);
  LLVMDisposeTargetMachine(tm);
  cg_plan_free(&plan);
}

void cg_dump(Ctx *c, Program *p, const char *stage, const CgOptions *o, FILE *out) {
  CgOptions def;
  if (!o) {
    cg_options_default(&def);
    o = &def;
  }
  if (!strcmp(stage, "opt") || !strcmp(stage, "sched")) {
    CgPlan plan;
    if (cg_plan(c, p, o, &plan)) return;
    for (int i = 0; i < plan.n; i++) {
      if (stage[0] == 'o') ir_print(plan.g[i], p, out);
      else sched_print(plan.s[i], out);
    }
    cg_plan_free(&plan);
  } else if (!strcmp(stage, "llvm") || !strcmp(stage, "asm")) {
    dump_module(c, p, o, stage[0] == 'a', out);
  } else {
    diag_error(c, SRCLOC_NONE, "stages: opt, sched, llvm, asm", "unknown dump stage '%s'", stage);
  }
}
