/* elab.h: elaboration internals shared by elab.c, elab_ops.c, elab_builtins.c and
 * frontend.c (front end only; the public interface is frontend.h).
 *
 * Elaboration is an interpreter over compile-time values (Value) whose only side effect
 * is appending nodes to the current entry's Graph. A tensor value is just a node id.
 * Errors are diagnostics; the value V_ERR marks "already reported" and makes every
 * operation on it quietly yield V_ERR again, so one mistake gives one message.
 */
#ifndef GRADC_ELAB_H
#define GRADC_ELAB_H

#include "ast.h"

typedef enum {
  V_ERR, V_NONE, V_INT, V_FLOAT, V_BOOL, V_STR, V_DTYPE, V_TENSOR, V_FN, V_BUILTIN,
  V_EXTERN, V_LIST, V_TUPLE, V_MODULE
} VKind;

typedef struct Value Value;
struct Value {
  VKind k;
  int64_t i;      /* INT, BOOL, DTYPE, BUILTIN (table index) */
  double f;       /* FLOAT */
  const char *s;  /* STR */
  ValId t;        /* TENSOR */
  Decl *fn;       /* FN, EXTERN */
  Module *mod;    /* FN, EXTERN (defining module), MODULE */
  Value *items;   /* LIST, TUPLE */
  int n;
};

typedef struct Binding {
  const char *name;
  Value v;
  struct Binding *next;
} Binding;

/* One activation of a fn/model/entry body. */
typedef struct Frame {
  Module *mod;
  Decl *fn;
  const char *path;  /* parameter path prefix ("" in an entry); NULL until first needed */
  const char *scope; /* this call's scope name (callee name or `as` label) */
  int scope_k;       /* suffix _k for the k-th repeated call of that name (0: none) */
  Binding *env;     /* locals, innermost first */
  int nlocals;      /* length of env */
  struct { const char *name; int count; } *calls; /* calls per callee name, for _1, _2 */
  int ncalls, capcalls;
  int returned;
  Value ret;
  SrcLoc ret_loc;
  SrcLoc call_loc;
  struct Frame *parent;
} Frame;

typedef struct {
  Ctx *c;
  Program *p;
  Graph *g;       /* NULL while evaluating top-level constants */
  Module *main;
  Frame *top;     /* innermost frame */
  int depth;      /* call depth */
  int64_t work;   /* statements executed + loop iterations: bounds unrolling */
  int64_t repeats;  /* diagnostics dropped as repeats: many means a loop failing again */
  Binding *free_bindings; /* recycled bindings (see unbind_to in elab.c) */
  const SrcLoc *arglocs; /* locations of the arguments of the call being bound, or NULL */
} Elab;

#define FE_MAX_NODES 1000000
#define FE_MAX_WORK 2000000
#define FE_MAX_CALL_DEPTH 200
#define FE_MAX_LOCALS 1000   /* live names in one body (lookups are linear) */
#define FE_MAX_PARAMS 20000  /* trainable parameters of a program */

/* Drops diagnostics identical (location and message) to an earlier one (frontend.c). */
int fe_dedupe_diags(Ctx *c, int from); /* returns how many it dropped */

/* Reports unknown names and module members in every function body of m, called or not
 * (resolve.c). Run after the module's symbol table is built. */
void fe_resolve_module(Ctx *c, Module *m);

/* values */
Value v_err(void);
Value v_none(void);
Value v_int(int64_t i);
Value v_float(double f);
Value v_bool(int b);
Value v_tensor(ValId t);
const char *v_kind_name(const Value *v);
const char *v_describe(Elab *E, const Value *v); /* "f32[16, 2]", "int 3", ... */
int v_is_num(const Value *v);
double v_num(const Value *v);
DType fe_dtype(Elab *E, DType dt); /* applies promote_f64 */
const Shape *v_shape(Elab *E, const Value *v);

/* evaluation (elab.c) */
Value elab_expr(Elab *E, Ast *a);
Value elab_call_value(Elab *E, Value callee, Value *args, const char **kw, int nargs,
                      const char *label, SrcLoc loc);
int elab_need_graph(Elab *E, SrcLoc loc);
Value elab_lookup(Elab *E, const char *name, SrcLoc loc);

/* operators and conversions (elab_ops.c) */
Value elab_binop(Elab *E, const char *op, Value a, Value b, SrcLoc loc);
Value elab_unop(Elab *E, const char *op, Value a, SrcLoc loc);
Value elab_index(Elab *E, Value base, Ast *idx, Value *items, int n, SrcLoc loc);
Value elab_matmul(Elab *E, Value a, Value b, SrcLoc loc);
/* A tensor for v (numbers become constants of dtype dt); IR_ERR after a diagnostic. */
ValId elab_to_tensor(Elab *E, Value v, DType dt, SrcLoc loc);
/* Brings n values to one dtype and one broadcast shape; 0 or -1 (diagnosed). */
int elab_broadcast_n(Elab *E, Value *vals, ValId *out, int n, const char *what, SrcLoc loc);
int elab_get_int(Elab *E, Value v, const char *what, SrcLoc loc, int64_t *out);
/* Reads a list of ints (or one int) as a shape; 0 or -1. */
int elab_get_shape(Elab *E, Value v, SrcLoc loc, Shape *out, int allow_infer);
int elab_get_axes(Elab *E, Value v, int rank, SrcLoc loc, uint32_t *axes);
int elab_norm_axis(Elab *E, int64_t ax, int rank, SrcLoc loc);

/* builtins (elab_builtins.c) */
int fe_builtin_find(const char *name);
int fe_builtin_count(void);
const char *fe_builtin_name(int i);
const char *fe_builtin_sig(int i);
Value fe_builtin_call(Elab *E, int index, Value *args, const char **kw, int nargs, SrcLoc loc);

#endif
