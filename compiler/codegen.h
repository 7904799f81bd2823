/* codegen.h: from IR to native code (optimization passes, schedule, LLVM, JIT, AOT).
 *
 * The back half of the pipeline (docs/compiler.md):
 *   cg_optimize   fold, simplify, CSE, DCE (compiler/opt.c), each pass IR -> new IR
 *   schedule      fuse nodes into loop-nest kernels and BLAS calls, fix their order, plan
 *                 one arena for every intermediate (compiler/sched.c)
 *   lower         one LLVM module per program (compiler/lower.c, lower_ops.c)
 *   JIT / AOT     ORC LLJIT + libffi (compiler/jit.c), or an object file with the
 *                 gr_module table linked against libgradrt (compiler/aot.c)
 * The entry ABI is the one in runtime/gradrt.h's header comment.
 */
#ifndef GRADC_CODEGEN_H
#define GRADC_CODEGEN_H

#include <stdio.h>

#include "gradrt.h"
#include "ir.h"

typedef struct {
  int opt_level;          /* 0: fast (no IR passes, CodeGenLevelNone: unit tests); 2: default<O2> */
  const char *cpu;        /* NULL or "native": host CPU and features; else an LLVM CPU name
                             such as "x86-64-v3" (portable AOT objects) */
  int no_graph_opt;       /* skip the graph passes (debugging) */
  int64_t par_grain;      /* elements per parallel chunk (0: default 16384) */
  const char *rt_dir;     /* AOT: folder holding libgradrt.a (NULL: next to the gradc binary) */
  const char *cc;         /* AOT: the C compiler driver used to link (NULL: "cc") */
  const char *ldflags;    /* AOT: extra link flags, split at spaces (e.g. "-static-libgcc") */
  const char *rt_lib;     /* AOT: the runtime archive lib<rt_lib>.a in rt_dir (NULL: "gradrt";
                             "gradrt_mpi" with cc "mpicc" for `gradc build --mpi`) */
  const char *source_name;/* AOT: recorded in gr_module.source_name */
  int timings;            /* print the time of each back-end phase to stderr */
} CgOptions;

void cg_options_default(CgOptions *o);

/* ---- graph passes (compiler/opt.c) ---------------------------------------------------- */
/* Each returns a NEW graph (the input is not modified); see the contracts in opt.c. */
Graph *opt_fold(const Graph *g, const Program *p);
Graph *opt_simplify(const Graph *g, const Program *p);
Graph *opt_cse(const Graph *g, const Program *p);
Graph *opt_dce(const Graph *g, const Program *p);
/* All passes in order (fold, simplify, CSE, DCE, twice), ir_verify between them. */
Graph *opt_run(const Graph *g, const Program *p);
/* Replaces every entry of p by its optimized graph. Returns 0 or -1 (a diagnostic). */
int cg_optimize(Ctx *c, Program *p);

/* ---- JIT (compiler/jit.c) -------------------------------------------------------------- */
typedef struct CgJit CgJit;
/* Optimizes (unless o->no_graph_opt), schedules, lowers and JIT-compiles every entry of p.
 * p is not modified. NULL after a diagnostic in c. */
CgJit *cg_jit_compile(Ctx *c, Program *p, const CgOptions *o);
/* Runs one entry: inputs/params as for interp_run; outputs receive newly allocated
 * tensors (gr_tensor_free). Uses rc->pool = the pool given to cg_jit_set_pool (or none).
 * No allocation inside the compiled call: the workspace is allocated at compile time. */
int cg_jit_run(CgJit *j, const char *entry, const GrTensor *inputs, const GrTensor *params,
               GrTensor *outputs, uint64_t seed, uint64_t step, char *err, size_t n);
/* Calls the flat entry point directly with caller-owned buffers (args: inputs, params,
 * outputs), the fast path for training loops: allocates nothing. Not reentrant for one
 * entry (the libffi argument array is prepared once per entry). */
int cg_jit_call(CgJit *j, const char *entry, void **args, uint64_t seed, uint64_t step);
void cg_jit_set_pool(CgJit *j, GrPool *pool);
/* Address of the uniform wrapper gr_entry_NAME (NULL if no such entry). */
GrEntryFn cg_jit_entry(CgJit *j, const char *entry);
int64_t cg_jit_workspace_bytes(CgJit *j, const char *entry);
void cg_jit_free(CgJit *j);

/* ---- AOT (compiler/aot.c) -------------------------------------------------------------- */
/* Writes a standalone executable (object file + gr_module table + main calling gr_main,
 * linked with libgradrt, OpenBLAS, libmvec). Returns 0, or -1 after a diagnostic. */
int cg_build_executable(Ctx *c, Program *p, const CgOptions *o, const char *out_path);
/* Writes only the object file (defines gr_module, the entries and, if with_main, main). */
int cg_emit_object(Ctx *c, Program *p, const CgOptions *o, const char *obj_path, int with_main);

/* ---- dumps (`gradc dump --stage=opt|sched|llvm`, `--emit=asm`) ------------------------- */
/* stage: "opt" (IR after the passes), "sched" (kernels and memory plan), "llvm" (module
 * after the LLVM passes of o->opt_level), "asm" (assembly). */
void cg_dump(Ctx *c, Program *p, const char *stage, const CgOptions *o, FILE *out);

#endif
