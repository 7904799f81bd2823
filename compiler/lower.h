/* lower.h: internal interface of the LLVM back end (lower.c, lower_ops.c, jit.c, aot.c).
 *
 * The back end works on a CgPlan: the program's entries after the graph passes, each
 * with its schedule. lower.c turns a plan into one LLVM module; lower_ops.c emits the
 * scalar arithmetic of each op (shared by every kernel shape); jit.c and aot.c turn the
 * module into machine code.
 */
#ifndef GRADC_LOWER_H
#define GRADC_LOWER_H

#include <llvm-c/Core.h>
#include <llvm-c/TargetMachine.h>

#include "codegen.h"
#include "schedule.h"

typedef struct {
  Program *p;  /* the source program (params, externs, consts) */
  int n;       /* entries */
  Graph **g;   /* optimized graphs (owned) */
  Sched **s;   /* their schedules (owned) */
} CgPlan;

/* Optimizes and schedules every entry. Returns 0, or -1 after a diagnostic. */
int cg_plan(Ctx *c, Program *p, const CgOptions *o, CgPlan *plan);
void cg_plan_free(CgPlan *plan);

/* Process-wide LLVM setup (targets, -vector-library=LIBMVEC-X86): once, thread-safe. */
void cg_llvm_init(void);
/* A TargetMachine for o->cpu (NULL on error, message in err). */
LLVMTargetMachineRef cg_target_machine(const CgOptions *o, int pic, char *err, size_t n);
/* Builds the module of a plan in cx. */
LLVMModuleRef cg_lower(const CgPlan *plan, const CgOptions *o, LLVMContextRef cx,
                       LLVMTargetMachineRef tm);
/* Runs the IR pass pipeline of o->opt_level (nothing at level 0). 0 or -1. */
int cg_run_passes(LLVMModuleRef m, LLVMTargetMachineRef tm, const CgOptions *o, char *err, size_t n);

/* ---- lower_ops.c: scalar code for one op --------------------------------------------- */
typedef struct {
  LLVMContextRef cx;
  LLVMModuleRef m;
  LLVMBuilderRef b;
  LLVMTypeRef i1, i8, i32, i64, f32, f64, ptr, vd;
  const Program *p;
  struct LowKernel *kernels; /* emitted kernel functions by structural key (reuse) */
  int nkernels;
} Low;

LLVMTypeRef low_type(Low *L, DType t);
LLVMValueRef low_const(Low *L, DType t, double v);
/* f(x) for a K_UNARY op; `from` is the input's dtype (CAST converts to `to`). */
LLVMValueRef low_unary(Low *L, Op op, DType to, DType from, LLVMValueRef x);
/* a op b for a K_BINARY op on dtype t (compares give 0/1 in t). */
LLVMValueRef low_binary(Low *L, Op op, DType t, LLVMValueRef a, LLVMValueRef b);
LLVMValueRef low_where(Low *L, DType ct, LLVMValueRef c, LLVMValueRef a, LLVMValueRef b);
/* Random draw of (seed, step, stream, idx) exactly as runtime/philox.h. */
LLVMValueRef low_random(Low *L, Op op, DType t, LLVMValueRef seed, LLVMValueRef step,
                        uint64_t stream, LLVMValueRef idx);
LLVMValueRef low_extern(Low *L, int ext, const DType *argt, LLVMValueRef *args);
/* Reductions: the identity and one combining step (reassoc+contract on floats). */
LLVMValueRef low_reduce_init(Low *L, Op op, DType t);
LLVMValueRef low_reduce_step(Low *L, Op op, DType t, LLVMValueRef acc, LLVMValueRef x);
/* Declares (once) a function of the module. */
LLVMValueRef low_func(Low *L, const char *name, LLVMTypeRef ret, LLVMTypeRef *args, int n);

#endif
