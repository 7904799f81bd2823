/* elab.c: elaboration, i.e. partial evaluation of the syntax tree into IR.
 *
 * Every entry is expanded into one flat Graph. The evaluator walks statements and
 * expressions with compile-time values (ints, floats, bools, strings, functions, lists,
 * tuples, modules) and tensor values (node ids). Calls are inlined: a call evaluates the
 * callee's body in a fresh Frame whose environment holds the arguments; parameter types
 * are unified with the arguments, binding size variables (`N` in `f32[N, D]`) on first
 * use and checking them afterwards. `for` loops are unrolled and `if` is decided at
 * compile time, so the graph has no control flow.
 *
 * Parameters are named by the path of calls from the entry (Frame.path): a nested call's
 * scope is the callee name, suffixed _1, _2... for later calls of the same name within
 * one execution of the caller's body, or its `as NAME` label; a `model` restarts the path
 * at its own name, so every call of a model shares its weights.
 *
 * Work is bounded (FE_MAX_WORK statements/iterations, FE_MAX_NODES nodes,
 * FE_MAX_CALL_DEPTH nested calls), so no input makes the compiler hang.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "elab.h"

/* ---- values ----------------------------------------------------------------------------- */
Value v_err(void) { return (Value){.k = V_ERR, .t = IR_ERR}; }
Value v_none(void) { return (Value){.k = V_NONE, .t = IR_ERR}; }
Value v_int(int64_t i) { return (Value){.k = V_INT, .i = i, .t = IR_ERR}; }
Value v_float(double f) { return (Value){.k = V_FLOAT, .f = f, .t = IR_ERR}; }
Value v_bool(int b) { return (Value){.k = V_BOOL, .i = !!b, .t = IR_ERR}; }
Value v_tensor(ValId t) { return t == IR_ERR ? v_err() : (Value){.k = V_TENSOR, .t = t}; }

int v_is_num(const Value *v) { return v->k == V_INT || v->k == V_FLOAT || v->k == V_BOOL; }
double v_num(const Value *v) { return v->k == V_FLOAT ? v->f : (double)v->i; }

const char *v_kind_name(const Value *v) {
  static const char *const names[] = {"error",  "nothing", "int",      "float",  "bool",
                                      "str",    "dtype",   "tensor",   "function", "builtin",
                                      "extern", "list",    "tuple",    "module"};
  return names[v->k];
}

DType fe_dtype(Elab *E, DType dt) { return E->c->promote_f64 && dt == DT_F32 ? DT_F64 : dt; }

const Shape *v_shape(Elab *E, const Value *v) { return &E->g->nodes[v->t].shape; }

const char *v_describe(Elab *E, const Value *v) {
  Arena *A = &E->c->arena;
  char sb[96];
  switch (v->k) {
  case V_INT: return arena_printf(A, "int %lld", (long long)v->i);
  case V_FLOAT: return arena_printf(A, "float %g", v->f);
  case V_BOOL: return v->i ? "bool true" : "bool false";
  case V_STR: return arena_printf(A, "str \"%s\"", v->s);
  case V_TENSOR: {
    const Node *n = ir_node(E->g, v->t);
    if (!n->shape.rank) return arena_printf(A, "%s (scalar tensor)", dtype_name(n->dtype));
    return arena_printf(A, "%s%s", dtype_name(n->dtype), shape_str(&n->shape, sb, sizeof sb));
  }
  case V_FN: return arena_printf(A, "function '%s'", v->fn->name);
  case V_LIST: return arena_printf(A, "list of %d", v->n);
  case V_TUPLE: return arena_printf(A, "tuple of %d", v->n);
  default: return v_kind_name(v);
  }
}

int elab_need_graph(Elab *E, SrcLoc loc) {
  if (E->g) return 0;
  diag_error(E->c, loc, "constants hold compile-time values: numbers, strings, lists",
             "tensors cannot be computed in a constant");
  return -1;
}

/* ---- names -------------------------------------------------------------------------------- */
/* Bindings are recycled when their block or call ends (values are copied out, nothing
 * keeps a pointer to a binding past its scope), so unrolled loops run in bounded memory. */
static void unbind_to(Elab *E, Frame *f, Binding *saved) {
  while (f->env && f->env != saved) {
    Binding *b = f->env;
    f->env = b->next;
    f->nlocals--;
    b->next = E->free_bindings;
    E->free_bindings = b;
  }
}

static void bind(Elab *E, Frame *f, const char *name, Value v) {
  Binding *b = E->free_bindings;
  if (b) E->free_bindings = b->next;
  else b = arena_alloc(&E->c->arena, sizeof *b);
  b->name = name;
  b->v = v;
  b->next = f->env;
  f->env = b;
  f->nlocals++;
}

static Binding *find_local(Frame *f, const char *name) {
  for (Binding *b = f ? f->env : NULL; b; b = b->next)
    if (!strcmp(b->name, name)) return b;
  return NULL;
}

/* Top-level name of module m: constant, function, extern, imported module. */
static int module_lookup(Module *m, const char *name, Value *out) {
  ModSym *s = fe_module_sym(m, name);
  if (!s) return 0;
  Decl *d = s->decl;
  switch (d->kind) {
  case D_CONST:
    if (!s->val) return 0; /* not evaluated yet: declared later in the file */
    return *out = s->val->v, 1;
  case D_FN: return *out = (Value){.k = V_FN, .fn = d, .mod = m, .t = IR_ERR}, 1;
  case D_EXTERN: return *out = (Value){.k = V_EXTERN, .fn = d, .mod = m, .t = IR_ERR}, 1;
  case D_IMPORT:
    if (!d->mod) return 0;
    return *out = (Value){.k = V_MODULE, .mod = d->mod, .t = IR_ERR}, 1;
  }
  return 0;
}

static int global_lookup(Elab *E, const char *name, Value *out) {
  static const char *const dts[] = {"f32", "f64", "i32", "i64"};
  for (int i = 0; i < 4; i++)
    if (!strcmp(name, dts[i]))
      return *out = (Value){.k = V_DTYPE, .i = fe_dtype(E, (DType)i), .t = IR_ERR}, 1;
  if (!strcmp(name, "pi")) return *out = v_float(M_PI), 1;
  int b = fe_builtin_find(name);
  if (b >= 0) return *out = (Value){.k = V_BUILTIN, .i = b, .t = IR_ERR}, 1;
  return 0;
}

static int lookup_quiet(Elab *E, const char *name, Value *out) {
  Binding *b = find_local(E->top, name);
  if (b) return *out = b->v, 1;
  if (E->top && module_lookup(E->top->mod, name, out)) return 1;
  return global_lookup(E, name, out);
}

/* Collects the names visible here for "did you mean". */
static const char *closest_name(Elab *E, const char *name, Module *m, int locals) {
  int cap = 64, n = 0;
  const char **c = malloc((size_t)cap * sizeof *c);
  /* edit distance is at least the length difference: skip hopeless candidates early */
  int len = (int)strlen(name), slack = len / 3 + 1;
#define ADD(s)                                                                             \
  do {                                                                                     \
    int d_ = (int)strlen(s) - len;                                                         \
    if (d_ > slack || -d_ > slack) break;                                                  \
    if (n == cap) c = xrealloc(c, (size_t)(cap *= 2) * sizeof *c);                         \
    c[n++] = (s);                                                                          \
  } while (0)
  if (locals && E->top)
    for (Binding *b = E->top->env; b; b = b->next) ADD(b->name);
  for (Binding *b = m ? m->consts : NULL; b; b = b->next) ADD(b->name);
  for (int i = 0; m && i < m->ndecls; i++)
    ADD(m->decls[i]->kind == D_IMPORT ? m->decls[i]->alias : m->decls[i]->name);
  if (locals)
    for (int i = 0; i < fe_builtin_count(); i++) ADD(fe_builtin_name(i));
#undef ADD
  const char *best = diag_closest(name, c, n);
  free(c);
  return best;
}

static const char *did_you_mean(Elab *E, const char *best) {
  return best ? arena_printf(&E->c->arena, "did you mean `%s`?", best) : NULL;
}

Value elab_lookup(Elab *E, const char *name, SrcLoc loc) {
  Value v;
  if (lookup_quiet(E, name, &v)) return v;
  const char *best = closest_name(E, name, E->top ? E->top->mod : NULL, 1);
  diag_error(E->c, loc, did_you_mean(E, best), "unknown name '%s'", name);
  return v_err();
}

static Value member(Elab *E, Value base, const char *name, SrcLoc loc) {
  if (base.k == V_ERR) return base;
  if (base.k != V_MODULE) {
    const char *hint = NULL;
    if (base.k == V_TENSOR)
      hint = !strcmp(name, "T")       ? "use transpose(x)"
             : !strcmp(name, "shape") ? "use shape(x) or dim(x, axis)"
                                      : "tensors have no members; see the builtins in docs/language.md";
    diag_error(E->c, loc, hint, "a %s has no member '%s'", v_kind_name(&base), name);
    return v_err();
  }
  Value v;
  if (module_lookup(base.mod, name, &v)) {
    if (v.k == V_MODULE) {
      diag_error(E->c, loc, "import the module directly", "'%s' is a module imported by '%s', not a member", name, base.mod->name);
      return v_err();
    }
    return v;
  }
  const char *best = closest_name(E, name, base.mod, 0);
  diag_error(E->c, loc, did_you_mean(E, best), "module '%s' has no member '%s'", base.mod->name,
             name);
  return v_err();
}

/* ---- expressions ------------------------------------------------------------------------- */
static Value make_seq(Elab *E, VKind k, Value *items, int n) {
  Value v = {.k = k, .n = n, .t = IR_ERR};
  v.items = arena_alloc(&E->c->arena, (size_t)(n ? n : 1) * sizeof *v.items);
  for (int i = 0; i < n; i++) {
    if (items[i].k == V_ERR) return v_err();
    v.items[i] = items[i];
  }
  return v;
}

/* The leftmost location of an expression (binary nodes sit at their operator). */
static SrcLoc expr_start(const Ast *a) {
  while ((a->kind == A_BINOP || a->kind == A_INDEX || a->kind == A_MEMBER) && a->a) a = a->a;
  if (a->kind == A_CALL && a->a) return expr_start(a->a);
  return a->loc;
}

static Value eval_call(Elab *E, Ast *a) {
  Value callee = elab_expr(E, a->a);
  Value args_buf[8];
  SrcLoc locs_buf[8];
  Value *args = a->n <= 8 ? args_buf : arena_alloc(&E->c->arena, (size_t)a->n * sizeof *args);
  int bad = callee.k == V_ERR;
  for (int i = 0; i < a->n; i++) {
    args[i] = elab_expr(E, a->list[i]);
    bad |= args[i].k == V_ERR;
  }
  if (bad) return v_err();
  SrcLoc *locs = a->n <= 8 ? locs_buf : arena_alloc(&E->c->arena, (size_t)a->n * sizeof *locs);
  for (int i = 0; i < a->n; i++) locs[i] = expr_start(a->list[i]);
  E->arglocs = locs;
  Value r = elab_call_value(E, callee, args, a->names, a->n, a->name, a->loc);
  E->arglocs = NULL;
  return r;
}

static Value eval_index(Elab *E, Ast *a) {
  Value base = elab_expr(E, a->a);
  Value *items = arena_alloc(&E->c->arena, (size_t)a->n * 2 * sizeof *items);
  int bad = base.k == V_ERR;
  for (int i = 0; i < a->n; i++) {
    Ast *it = a->list[i];
    if (it->kind == A_SLICE) {
      items[2 * i] = it->a ? elab_expr(E, it->a) : v_none();
      items[2 * i + 1] = it->b ? elab_expr(E, it->b) : v_none();
    } else {
      items[2 * i] = elab_expr(E, it);
      items[2 * i + 1] = v_none();
    }
    bad |= items[2 * i].k == V_ERR || items[2 * i + 1].k == V_ERR;
  }
  if (bad) return v_err();
  return elab_index(E, base, a, items, a->n, a->loc);
}

static Value eval_logic(Elab *E, Ast *a) {
  int is_and = !strcmp(a->op, "and");
  Value l = elab_expr(E, a->a);
  if (l.k == V_ERR) return l;
  if (l.k != V_BOOL) goto bad;
  if (is_and ? !l.i : l.i) return l; /* short circuit */
  Value r = elab_expr(E, a->b);
  if (r.k == V_ERR) return r;
  if (r.k != V_BOOL) {
    l = r;
    goto bad;
  }
  return r;
bad:
  diag_error(E->c, a->loc,
             l.k == V_TENSOR ? "for tensors use where(c, a, b) or multiply the 0/1 masks" : NULL,
             "'%s' needs compile-time bools, got %s", a->op, v_describe(E, &l));
  return v_err();
}

Value elab_expr(Elab *E, Ast *a) {
  switch (a->kind) {
  case A_INT: return v_int(a->ival);
  case A_FLOAT: return v_float(a->fval);
  case A_BOOL: return v_bool((int)a->ival);
  case A_STR: return (Value){.k = V_STR, .s = a->str, .t = IR_ERR};
  case A_NAME: return elab_lookup(E, a->name, a->loc);
  case A_MEMBER: return member(E, elab_expr(E, a->a), a->name, a->loc);
  case A_TUPLE:
  case A_LIST: {
    Value *items = arena_alloc(&E->c->arena, (size_t)(a->n ? a->n : 1) * sizeof *items);
    for (int i = 0; i < a->n; i++) items[i] = elab_expr(E, a->list[i]);
    return make_seq(E, a->kind == A_TUPLE ? V_TUPLE : V_LIST, items, a->n);
  }
  case A_BINOP:
    if (!strcmp(a->op, "and") || !strcmp(a->op, "or")) return eval_logic(E, a);
    {
      Value l = elab_expr(E, a->a);
      Value r = elab_expr(E, a->b);
      if (l.k == V_ERR || r.k == V_ERR) return v_err();
      return elab_binop(E, a->op, l, r, a->loc);
    }
  case A_UNOP: {
    Value v = elab_expr(E, a->a);
    if (v.k == V_ERR) return v;
    return elab_unop(E, a->op, v, a->loc);
  }
  case A_CALL: return eval_call(E, a);
  case A_INDEX: return eval_index(E, a);
  default:
    diag_error(E->c, a->loc, NULL, "slices (a:b) are only allowed inside [ ]");
    return v_err();
  }
}

/* ---- types: unification of values with annotations ----------------------------------------- */
static const char *dim_desc(Elab *E, Ast *d) {
  return d->kind == A_NAME ? d->name : "a dimension";
}

/* What a checked value is, for messages; formatted only when there is an error (calls are
 * expanded millions of times in big unrolled programs). */
typedef struct {
  int kind; /* 0: a let name, 1: an argument, 2: a result */
  const char *name, *fn;
  int line; /* result: the line of the call, 0 for an entry */
} What;

static const char *what_str(Elab *E, What w) {
  if (w.kind == 0) return arena_printf(&E->c->arena, "'%s'", w.name);
  if (w.kind == 1) return arena_printf(&E->c->arena, "argument '%s' of '%s'", w.name, w.fn);
  if (!w.line) return arena_printf(&E->c->arena, "the result of '%s'", w.fn);
  return arena_printf(&E->c->arena, "the result of '%s' (called at line %d)", w.fn, w.line);
}

/* Checks (and converts) *v against type t inside frame f, binding size variables that are
 * not yet known. `w` names the value in messages ("argument 'x' of 'linear'"). */
static int unify(Elab *E, Frame *f, TypeExpr *t, Value *v, What w, SrcLoc loc) {
  if (v->k == V_ERR) return -1;
#define what what_str(E, w)
#define tn fe_type_str(E->c, t)
  switch (t->kind) {
  case TY_INT:
    if (v->k == V_INT) return 0;
    break;
  case TY_FLOAT:
    if (v->k == V_INT || v->k == V_FLOAT) return *v = v_float(v_num(v)), 0;
    break;
  case TY_BOOL:
    if (v->k == V_BOOL) return 0;
    break;
  case TY_STR:
    if (v->k == V_STR) return 0;
    break;
  case TY_LIST:
    if (v->k == V_LIST || v->k == V_TUPLE) return 0;
    break;
  case TY_FN:
    if (v->k == V_FN || v->k == V_BUILTIN || v->k == V_EXTERN) return 0;
    break;
  case TY_TUPLE:
    if ((v->k == V_TUPLE || v->k == V_LIST) && v->n == t->nelems) {
      for (int i = 0; i < v->n; i++)
        if (unify(E, f, t->elems[i], &v->items[i], w, loc)) return -1;
      return 0;
    }
    break;
  case TY_TENSOR: {
    DType dt = fe_dtype(E, t->dtype);
    Frame *saved = E->top;
    E->top = f;
    int rc = 0;
    if (v_is_num(v)) {
      /* a number where a tensor is expected: a constant of the declared type */
      Shape s = {t->rank, {0}};
      for (int i = 0; i < t->rank && !rc; i++) {
        Value d;
        if (t->dims[i]->kind == A_NAME && !lookup_quiet(E, t->dims[i]->name, &d)) {
          E->top = saved;
          diag_error(E->c, loc, "a number can stand for a tensor only when its shape is known",
                     "%s must be %s, got %s", what, tn, v_describe(E, v));
          return -1;
        }
        d = elab_expr(E, t->dims[i]);
        rc = elab_get_int(E, d, "a dimension", t->dims[i]->loc, &s.dims[i]);
      }
      if (!rc && elab_need_graph(E, loc)) rc = -1;
      if (!rc) *v = v_tensor(ir_const(E->g, v_num(v), dt, &s, loc));
      E->top = saved;
      return rc ? -1 : 0;
    }
    if (v->k != V_TENSOR) {
      E->top = saved;
      break;
    }
    const Node *n = ir_node(E->g, v->t);
    if (n->dtype != dt) {
      E->top = saved;
      diag_error(E->c, loc, dtype_is_float(n->dtype) ? "convert with cast(x, f64)" : NULL,
                 "%s must be %s, got %s", what, tn, v_describe(E, v));
      return -1;
    }
    if (n->shape.rank != t->rank) {
      E->top = saved;
      diag_error(E->c, loc, NULL, "%s must be %s (rank %d), got %s (rank %d)", what, tn, t->rank,
                 v_describe(E, v), n->shape.rank);
      return -1;
    }
    for (int i = 0; i < t->rank && !rc; i++) {
      Ast *d = t->dims[i];
      int64_t have = n->shape.dims[i], want;
      Value dv;
      if (d->kind == A_NAME && !lookup_quiet(E, d->name, &dv)) {
        bind(E, f, d->name, v_int(have)); /* a size variable: bound here */
        continue;
      }
      dv = elab_expr(E, d);
      if (elab_get_int(E, dv, "a dimension", d->loc, &want)) {
        rc = -1;
        break;
      }
      if (want != have) {
        diag_error(E->c, loc,
                   arena_printf(&E->c->arena, "%s = %lld in this call", dim_desc(E, d), (long long)want),
                   "%s must be %s, got %s (axis %d is %lld, expected %lld)", what, tn,
                   v_describe(E, v), i, (long long)have, (long long)want);
        rc = -1;
      }
    }
    E->top = saved;
    return rc;
  }
  }
  diag_error(E->c, loc, NULL, "%s must be %s, got %s", what, tn, v_describe(E, v));
  return -1;
#undef what
#undef tn
}

/* ---- statements ---------------------------------------------------------------------------- */
static void exec_block(Elab *E, Ast *b);
static const char *frame_path(Elab *E, Frame *f);

/* Elaboration of the current entry has given up (limits, or nothing new to report). */
static int stopped(const Elab *E) {
  return E->work > FE_MAX_WORK || E->repeats > 100 || E->c->ndiags >= E->c->max_errors;
}

static int count_work(Elab *E, SrcLoc loc) {
  /* Once the error limit is reached nothing more can be reported: stop, instead of
   * unrolling millions of iterations that each fail again (found by fuzz_frontend). */
  if (E->c->ndiags >= E->c->max_errors) return -1;
  /* the same errors over and over (a failing call in an unrolled loop): nothing new to say */
  if (E->repeats > 100) return -1;
  if (++E->work > FE_MAX_WORK || (E->g && E->g->nnodes > FE_MAX_NODES)) {
    if (E->work < (int64_t)1 << 60)
      diag_error(E->c, loc, "loops are unrolled at compile time: reduce the iteration counts",
                 "program too large: more than %d statements or %d graph nodes after unrolling",
                 FE_MAX_WORK, FE_MAX_NODES);
    E->work = (int64_t)1 << 61; /* report once */
    return -1;
  }
  return 0;
}

static void exec_let(Elab *E, Ast *s) {
  Frame *f = E->top;
  if (f->nlocals + s->n > FE_MAX_LOCALS) {
    diag_error(E->c, s->loc, "split the body into functions, or rebind names with `=`",
               "too many names in one body (more than %d)", FE_MAX_LOCALS);
    E->work = (int64_t)1 << 61; /* stop this entry, reported */
    return;
  }
  Value v = elab_expr(E, s->a);
  if (s->type && v.k != V_ERR)
    unify(E, f, s->type, &v, (What){0, s->names[0], NULL, 0}, s->loc);
  if (!s->is_tuple) {
    bind(E, f, s->names[0], v);
    return;
  }
  if (v.k != V_ERR && ((v.k != V_TUPLE && v.k != V_LIST) || v.n != s->n)) {
    diag_error(E->c, s->loc, NULL, "cannot unpack %s into %d names", v_describe(E, &v), s->n);
    v = v_err();
  }
  for (int i = 0; i < s->n; i++) bind(E, f, s->names[i], v.k == V_ERR ? v : v.items[i]);
}

static void exec_assign(Elab *E, Ast *s) {
  Binding *b = find_local(E->top, s->name);
  Value v = elab_expr(E, s->a);
  if (!b) {
    diag_error(E->c, s->loc, arena_printf(&E->c->arena, "declare it first: let %s = ...", s->name),
               "assignment to undeclared name '%s'", s->name);
    return;
  }
  b->v = v;
}

static const char *const init_names[] = {"zeros", "ones", "constant", "normal", "uniform",
                                         "glorot", "he"};

/* Reads a parameter initializer call: zeros() ones() constant(v) normal(std) uniform(a, b)
 * glorot() he(). */
static int read_init(Elab *E, Ast *a, Init *init) {
  static const int nargs[] = {0, 0, 1, 1, 2, 0, 0};
  memset(init, 0, sizeof *init);
  const char *hint = "initializers: zeros(), ones(), constant(v), normal(std), uniform(a, b), "
                     "glorot(), he()";
  if (a->kind != A_CALL || a->a->kind != A_NAME) {
    diag_error(E->c, a->loc, hint, "a parameter needs an initializer call");
    return -1;
  }
  int k = -1;
  for (int i = 0; i < INIT_COUNT; i++)
    if (!strcmp(a->a->name, init_names[i])) k = i;
  if (k < 0) {
    const char *best = diag_closest(a->a->name, init_names, INIT_COUNT);
    diag_error(E->c, a->loc, best ? did_you_mean(E, best) : hint, "unknown initializer '%s'",
               a->a->name);
    return -1;
  }
  if (a->n != nargs[k]) {
    diag_error(E->c, a->loc, hint, "%s() takes %d argument%s, got %d", init_names[k], nargs[k],
               nargs[k] == 1 ? "" : "s", a->n);
    return -1;
  }
  double vals[2] = {0, 0};
  for (int i = 0; i < a->n; i++) {
    Value v = elab_expr(E, a->list[i]);
    if (v.k == V_ERR) return -1;
    if (v.k != V_INT && v.k != V_FLOAT) {
      diag_error(E->c, a->list[i]->loc, NULL, "%s() needs numbers, got %s", init_names[k],
                 v_describe(E, &v));
      return -1;
    }
    vals[i] = v_num(&v);
  }
  init->kind = (InitKind)k;
  init->a = vals[0];
  init->b = vals[1];
  return 0;
}

static void exec_param(Elab *E, Ast *s) {
  Frame *f = E->top;
  if (s->type->kind != TY_TENSOR) {
    diag_error(E->c, s->type->loc, "e.g. param w: f32[I, O] = glorot()",
               "a parameter must have a tensor type");
    bind(E, f, s->name, v_err());
    return;
  }
  Shape sh = {s->type->rank, {0}};
  int rc = 0;
  for (int i = 0; i < sh.rank && !rc; i++) {
    Value d = elab_expr(E, s->type->dims[i]);
    rc = elab_get_int(E, d, "a parameter dimension", s->type->dims[i]->loc, &sh.dims[i]);
    if (!rc && sh.dims[i] < 1) {
      diag_error(E->c, s->type->dims[i]->loc, NULL, "parameter dimension %lld is not positive",
                 (long long)sh.dims[i]);
      rc = -1;
    }
  }
  Init init;
  if (read_init(E, s->a, &init)) rc = -1;
  if (rc || elab_need_graph(E, s->loc)) {
    bind(E, f, s->name, v_err());
    return;
  }
  if (E->p->nparams >= FE_MAX_PARAMS) {
    diag_error(E->c, s->loc, NULL, "too many parameters (more than %d)", FE_MAX_PARAMS);
    E->work = (int64_t)1 << 61; /* stop this entry, reported */
    bind(E, f, s->name, v_err());
    return;
  }
  const char *path = frame_path(E, f);
  const char *name = path[0] ? arena_printf(&E->c->arena, "%s.%s", path, s->name) : s->name;
  int idx = program_param(E->p, name, fe_dtype(E, s->type->dtype), &sh, init, s->loc);
  bind(E, f, s->name, v_tensor(ir_param(E->g, E->p, idx, s->loc)));
}

static void exec_return(Elab *E, Ast *s) {
  Frame *f = E->top;
  if (s->n == 1) {
    f->ret = elab_expr(E, s->list[0]);
  } else {
    Value *items = arena_alloc(&E->c->arena, (size_t)s->n * sizeof *items);
    for (int i = 0; i < s->n; i++) items[i] = elab_expr(E, s->list[i]);
    f->ret = make_seq(E, V_TUPLE, items, s->n);
  }
  f->returned = 1;
  f->ret_loc = s->loc;
}

static void exec_for(Elab *E, Ast *s) {
  Frame *f = E->top;
  Value lo = elab_expr(E, s->a), hi = s->b ? elab_expr(E, s->b) : v_none();
  if (lo.k == V_ERR || hi.k == V_ERR) return;
  int64_t a = 0, b = 0;
  Value *items = NULL;
  if (s->b) {
    if (elab_get_int(E, lo, "a loop bound", s->a->loc, &a)) return;
    if (elab_get_int(E, hi, "a loop bound", s->b->loc, &b)) return;
  } else if (lo.k == V_LIST || lo.k == V_TUPLE) {
    items = lo.items;
    b = lo.n;
  } else {
    diag_error(E->c, s->a->loc, "write `for i in 0..n` or iterate over a list",
               "cannot iterate over %s", v_describe(E, &lo));
    return;
  }
  for (int64_t i = a; i < b && !f->returned; i++) {
    if (count_work(E, s->loc)) return;
    Binding *saved = f->env;
    bind(E, f, s->name, items ? items[i] : v_int(i));
    exec_block(E, s->body);
    unbind_to(E, f, saved);
  }
}

static void exec_if(Elab *E, Ast *s) {
  Value c = elab_expr(E, s->a);
  if (c.k == V_ERR) return;
  if (c.k != V_BOOL && c.k != V_INT) {
    diag_error(E->c, s->a->loc,
               c.k == V_TENSOR ? "`if` is decided at compile time; for tensors use where(c, a, b)"
                               : NULL,
               "`if` needs a compile-time condition, got %s", v_describe(E, &c));
    return;
  }
  Binding *saved = E->top->env;
  if (c.i) exec_block(E, s->body);
  else if (s->els) exec_block(E, s->els);
  if (!E->top->returned) unbind_to(E, E->top, saved);
}

static void exec_stmt(Elab *E, Ast *s) {
  if (count_work(E, s->loc)) return;
  switch (s->kind) {
  case A_LET: exec_let(E, s); break;
  case A_ASSIGN: exec_assign(E, s); break;
  case A_PARAM: exec_param(E, s); break;
  case A_RETURN: exec_return(E, s); break;
  case A_FOR: exec_for(E, s); break;
  case A_IF: exec_if(E, s); break;
  case A_EXPR: elab_expr(E, s->a); break;
  default: exec_block(E, s); break;
  }
}

/* A block's `let`s are local to it; `=` rebinds through to outer blocks. */
static void exec_block(Elab *E, Ast *b) {
  Frame *f = E->top;
  Binding *saved = f->env;
  for (int i = 0; i < b->n && !f->returned; i++) {
    if (stopped(E)) return;
    exec_stmt(E, b->list[i]);
  }
  if (!f->returned) unbind_to(E, f, saved);
}

/* ---- calls ---------------------------------------------------------------------------------- */
static const char *signature(Elab *E, Decl *d) {
  const char *s = arena_printf(&E->c->arena, "%s%s(", d->kind == D_EXTERN ? "extern fn " : "",
                               d->name);
  for (int i = 0; i < d->nparams; i++)
    s = arena_printf(&E->c->arena, "%s%s%s: %s%s", s, i ? ", " : "", d->params[i].name,
                     fe_type_str(E->c, d->params[i].type), d->params[i].def ? " = ..." : "");
  s = arena_printf(&E->c->arena, "%s)", s);
  if (d->ret) s = arena_printf(&E->c->arena, "%s -> %s", s, fe_type_str(E->c, d->ret));
  return arena_printf(&E->c->arena, "signature: %s", s);
}

/* Matches positional and keyword arguments to d's parameters: slots[i] (V_NONE: absent). */
static int bind_args(Elab *E, Decl *d, Value *args, const char **kw, int nargs, Value *slots,
                     int *argidx, SrcLoc loc) {
  for (int i = 0; i < d->nparams; i++) slots[i] = v_none(), argidx[i] = -1;
  int pos = 0;
  for (int i = 0; i < nargs; i++) {
    int k = -1;
    if (kw && kw[i]) {
      for (int j = 0; j < d->nparams; j++)
        if (!strcmp(kw[i], d->params[j].name)) k = j;
      if (k < 0) {
        diag_error(E->c, loc, signature(E, d), "'%s' has no parameter named '%s'", d->name, kw[i]);
        return -1;
      }
    } else {
      k = pos++;
      if (k >= d->nparams) {
        diag_error(E->c, loc, signature(E, d), "too many arguments to '%s': %d given, %d expected",
                   d->name, nargs, d->nparams);
        return -1;
      }
    }
    if (slots[k].k != V_NONE) {
      diag_error(E->c, loc, signature(E, d), "argument '%s' of '%s' given twice",
                 d->params[k].name, d->name);
      return -1;
    }
    slots[k] = args[i];
    argidx[k] = i;
  }
  return 0;
}

static const char *call_chain(Elab *E, Decl *d) {
  const char *s = d->name;
  for (Frame *f = E->top; f && f->fn; f = f->parent) s = arena_printf(&E->c->arena, "%s -> %s", f->fn->name, s);
  return arena_printf(&E->c->arena, "call chain: %s", s);
}

/* How many earlier calls of `name` this execution of the caller's body made: the k of
 * the scope suffix _k (0: no suffix). */
static int scope_index(Elab *E, Frame *caller, const char *name) {
  for (int i = 0; i < caller->ncalls; i++)
    if (!strcmp(caller->calls[i].name, name)) return caller->calls[i].count++;
  if (caller->ncalls == caller->capcalls) {
    int cap = caller->capcalls ? 2 * caller->capcalls : 8;
    void *nc = arena_alloc(&E->c->arena, (size_t)cap * sizeof *caller->calls);
    if (caller->ncalls) memcpy(nc, caller->calls, (size_t)caller->ncalls * sizeof *caller->calls);
    caller->calls = nc;
    caller->capcalls = cap;
  }
  caller->calls[caller->ncalls].name = name;
  caller->calls[caller->ncalls++].count = 1;
  return 0;
}

/* The parameter path of frame f, built on first use ("" in an entry). */
static const char *frame_path(Elab *E, Frame *f) {
  if (f->path) return f->path;
  const char *parent = f->parent ? frame_path(E, f->parent) : "";
  const char *scope = f->scope_k ? arena_printf(&E->c->arena, "%s_%d", f->scope, f->scope_k) : f->scope;
  f->path = parent[0] ? arena_printf(&E->c->arena, "%s.%s", parent, scope) : scope;
  return f->path;
}

/* Runs the body of d in frame f (arguments bound) and checks the result type. */
static Value run_body(Elab *E, Frame *f, Decl *d, SrcLoc loc) {
  Frame *saved = E->top;
  E->top = f;
  E->depth++;
  exec_block(E, d->body);
  E->depth--;
  E->top = saved;
  Value r = f->returned ? f->ret : v_none();
  if (r.k == V_ERR || stopped(E)) return v_err();
  SrcLoc rloc = f->returned ? f->ret_loc : loc;
  if (d->ret) {
    if (!f->returned) {
      diag_error(E->c, d->loc, NULL, "'%s' ends without `return` but declares a result %s",
                 d->name, fe_type_str(E->c, d->ret));
      return v_err();
    }
    if (d->ret->kind == TY_TUPLE && r.k == V_TUPLE && r.n != d->ret->nelems) {
      diag_error(E->c, rloc, NULL, "'%s' returns %d values but declares %d", d->name, r.n,
                 d->ret->nelems);
      return v_err();
    }
    What what = {2, NULL, d->name, d->fnkind == FN_ENTRY ? 0 : loc.line};
    if (unify(E, f, d->ret, &r, what, rloc))
      return v_err();
  }
  return r;
}

/* Binds parameter i of d in frame f: the argument or the default, checked against the
 * declared type. 0 or -1 after a diagnostic. */
static int bind_param(Elab *E, Frame *f, Decl *d, int i, Value *slots, const int *argidx,
                      const SrcLoc *arglocs, SrcLoc loc) {
  AParam *pa = &d->params[i];
  Value v = slots[i];
  if (argidx[i] >= 0 && arglocs) loc = arglocs[argidx[i]]; /* blame the argument */
  if (v.k == V_NONE) {
    if (!pa->def) {
      diag_error(E->c, loc, signature(E, d), "missing argument '%s' in call to '%s'", pa->name,
                 d->name);
      return -1;
    }
    Frame *saved = E->top;
    E->top = f;
    v = elab_expr(E, pa->def);
    E->top = saved;
  }
  if (unify(E, f, pa->type, &v, (What){1, pa->name, d->name, 0}, loc)) return -1;
  bind(E, f, pa->name, v);
  return 0;
}

/* An error inside an imported module (the standard library...) is located there; tell the
 * user which of their own calls led to it: the innermost call made from the main file. */
static void note_call_site(Elab *E, Decl *d, int before, SrcLoc loc) {
  if (!E->main || loc.file != E->main->file) return;
  for (int i = before; i < E->c->ndiags; i++) {
    Diag *dg = &E->c->diags[i];
    if (dg->loc.file < 0 || dg->loc.file == loc.file) continue;
    if (dg->hint && strstr(dg->hint, "called at ")) continue;
    const char *note = arena_printf(&E->c->arena, "inside '%s', called at %s:%d:%d", d->name,
                                    E->c->files[loc.file].path, loc.line, loc.col);
    dg->hint = dg->hint ? arena_printf(&E->c->arena, "%s; %s", dg->hint, note) : note;
  }
}

static Value call_fn(Elab *E, Value callee, Value *args, const char **kw, int nargs,
                     const char *label, SrcLoc loc) {
  Decl *d = callee.fn;
  if (d->fnkind == FN_ENTRY) {
    diag_error(E->c, loc, "move the shared code into a fn that both call",
               "entry '%s' cannot be called", d->name);
    return v_err();
  }
  for (Frame *f = E->top; f; f = f->parent)
    if (f->fn == d) {
      diag_error(E->c, loc, call_chain(E, d),
                 "recursion is not supported: functions are expanded at compile time");
      return v_err();
    }
  if (E->depth >= FE_MAX_CALL_DEPTH || !E->top) {
    diag_error(E->c, loc, NULL, "calls nested too deeply (more than %d)", FE_MAX_CALL_DEPTH);
    return v_err();
  }
  Value slots_buf[16];
  int argidx_buf[16];
  char done_buf[16] = {0};
  int small = d->nparams <= 16;
  Value *slots = small ? slots_buf : arena_alloc(&E->c->arena, (size_t)d->nparams * sizeof *slots);
  int *argidx = small ? argidx_buf : arena_alloc(&E->c->arena, (size_t)d->nparams * sizeof *argidx);
  if (bind_args(E, d, args, kw, nargs, slots, argidx, loc)) return v_err();
  Frame f = {0};
  f.mod = callee.mod;
  f.fn = d;
  f.parent = E->top;
  f.call_loc = loc;
  if (d->fnkind == FN_MODEL) {
    f.path = d->name;
  } else {
    f.scope = label ? label : d->name;
    f.scope_k = label ? 0 : scope_index(E, E->top, d->name);
  }
  /* Binding order: non-tensor arguments given by the caller (they may size tensor
   * parameters), then tensor parameters (binding size variables), then defaulted
   * non-tensor parameters (whose defaults may use those size variables). A tensor
   * dimension naming a defaulted parameter binds that parameter first. */
  const SrcLoc *arglocs = E->arglocs;
  E->arglocs = NULL; /* defaults and nested calls have their own */
  char *done = small ? done_buf : arena_alloc(&E->c->arena, (size_t)d->nparams);
  for (int pass = 0; pass < 3; pass++)
    for (int i = 0; i < d->nparams; i++) {
      int is_tensor = d->params[i].type->kind == TY_TENSOR;
      int want = pass == 1 ? is_tensor : !is_tensor && ((slots[i].k != V_NONE) == (pass == 0));
      if (!want || done[i]) continue;
      if (is_tensor)
        for (int k = 0; k < d->params[i].type->rank; k++) {
          Ast *dim = d->params[i].type->dims[k];
          for (int j = 0; dim->kind == A_NAME && j < d->nparams; j++) {
            if (done[j] || d->params[j].type->kind == TY_TENSOR) continue;
            if (strcmp(d->params[j].name, dim->name)) continue;
            if (bind_param(E, &f, d, j, slots, argidx, arglocs, loc)) return v_err();
            done[j] = 1;
          }
        }
      if (bind_param(E, &f, d, i, slots, argidx, arglocs, loc)) return v_err();
      done[i] = 1;
    }
  int before = E->c->ndiags;
  Value r = run_body(E, &f, d, loc);
  unbind_to(E, &f, NULL);
  note_call_site(E, d, before, loc);
  if (E->c->ndiags > before) E->repeats += fe_dedupe_diags(E->c, 0);
  return r;
}

static Value call_extern(Elab *E, Decl *d, Value *args, const char **kw, int nargs, SrcLoc loc) {
  if (d->nparams < 1 || d->nparams > 3 || d->ret->kind != TY_TENSOR || d->ret->rank) {
    diag_error(E->c, d->loc, "e.g. extern \"libm.so.6\" fn erf(x: f64) -> f64",
               "an extern function takes 1 to 3 float scalars and returns a float scalar");
    return v_err();
  }
  Value slots[3];
  int argidx[3];
  if (bind_args(E, d, args, kw, nargs, slots, argidx, loc)) return v_err();
  Extern ex = {0};
  ex.name = d->name;
  ex.lib = d->lib[0] ? d->lib : NULL;
  ex.nargs = d->nparams;
  ex.ret = fe_dtype(E, d->ret->dtype);
  ex.loc = d->loc;
  for (int i = 0; i < d->nparams; i++) {
    TypeExpr *t = d->params[i].type;
    if (slots[i].k == V_NONE) {
      diag_error(E->c, loc, signature(E, d), "missing argument '%s' in call to '%s'",
                 d->params[i].name, d->name);
      return v_err();
    }
    if (t->kind != TY_TENSOR || t->rank || !dtype_is_float(t->dtype) ||
        !dtype_is_float(d->ret->dtype)) {
      diag_error(E->c, d->loc, "e.g. extern \"libm.so.6\" fn erf(x: f64) -> f64",
                 "extern parameters and results must be float scalars (f32 or f64)");
      return v_err();
    }
    ex.args[i] = fe_dtype(E, t->dtype);
  }
  if (elab_need_graph(E, loc)) return v_err();
  ValId ts[3];
  if (elab_broadcast_n(E, slots, ts, d->nparams, d->name, loc)) return v_err();
  for (int i = 0; i < d->nparams; i++) ts[i] = ir_cast(E->g, ts[i], ex.args[i], loc);
  int idx = program_add_extern(E->p, &ex);
  if (E->p->externs[idx].nargs != ex.nargs || E->p->externs[idx].ret != ex.ret) {
    diag_error(E->c, d->loc, NULL, "extern '%s' declared twice with different types", d->name);
    return v_err();
  }
  return v_tensor(ir_extern(E->g, E->p, idx, d->nparams, ts, loc));
}

Value elab_call_value(Elab *E, Value callee, Value *args, const char **kw, int nargs,
                      const char *label, SrcLoc loc) {
  switch (callee.k) {
  case V_ERR: return callee;
  case V_FN: return call_fn(E, callee, args, kw, nargs, label, loc);
  case V_BUILTIN: return fe_builtin_call(E, (int)callee.i, args, kw, nargs, loc);
  case V_EXTERN: return call_extern(E, callee.fn, args, kw, nargs, loc);
  default:
    diag_error(E->c, loc, NULL, "%s is not callable", v_describe(E, &callee));
    return v_err();
  }
}

/* ---- entries ---------------------------------------------------------------------------------- */
static const char *entry_sig_hint = "entry inputs are tensors with constant shapes, "
                                    "e.g. x: f32[B, D] with const B and D";

static int entry_inputs(Elab *E, Frame *f, Decl *d) {
  int rc = 0;
  for (int i = 0; i < d->nparams; i++) {
    AParam *pa = &d->params[i];
    if (pa->type->kind != TY_TENSOR) {
      diag_error(E->c, pa->loc, entry_sig_hint, "entry input '%s' has type %s", pa->name,
                 fe_type_str(E->c, pa->type));
      rc = -1;
      continue;
    }
    Shape s = {pa->type->rank, {0}};
    int bad = 0;
    for (int k = 0; k < s.rank && !bad; k++) {
      Ast *dim = pa->type->dims[k];
      Value dv;
      if (dim->kind == A_NAME && !lookup_quiet(E, dim->name, &dv)) {
        diag_error(E->c, dim->loc, entry_sig_hint, "entry input size '%s' is not a constant",
                   dim->name);
        bad = 1;
        break;
      }
      dv = elab_expr(E, dim);
      bad = elab_get_int(E, dv, "a dimension", dim->loc, &s.dims[k]);
      if (!bad && s.dims[k] < 1) {
        diag_error(E->c, dim->loc, NULL, "dimension %lld is not positive", (long long)s.dims[k]);
        bad = 1;
      }
    }
    if (bad) {
      bind(E, f, pa->name, v_err());
      rc = -1;
      continue;
    }
    int idx = graph_add_input(E->g, pa->name, fe_dtype(E, pa->type->dtype), &s);
    bind(E, f, pa->name, v_tensor(ir_input(E->g, idx, pa->loc)));
  }
  return rc;
}

static void entry_outputs(Elab *E, Decl *d, Value r) {
  TypeExpr *t = d->ret;
  int n = t->kind == TY_TUPLE ? t->nelems : 1;
  for (int i = 0; i < n; i++) {
    Value v = t->kind == TY_TUPLE ? r.items[i] : r;
    if (v.k != V_TENSOR) {
      diag_error(E->c, d->loc, NULL, "entry '%s' must return tensors, got %s", d->name,
                 v_describe(E, &v));
      return;
    }
    const char *name = t->kind != TY_TUPLE ? "out"
                       : t->names[i]       ? t->names[i]
                                           : arena_printf(&E->c->arena, "out%d", i);
    graph_add_output(E->g, name, v.t);
  }
}

/* Expands entry d of the main module into a new graph of E->p. */
void fe_elab_entry(Elab *E, Module *m, Decl *d);
void fe_elab_entry(Elab *E, Module *m, Decl *d) {
  E->g = program_add_entry(E->p, d->name);
  E->work = 0;
  E->repeats = 0;
  Frame f = {0};
  f.mod = m;
  f.fn = d;
  f.path = "";
  E->top = &f;
  int rc = entry_inputs(E, &f, d);
  E->top = NULL;
  if (rc) return;
  Value r = run_body(E, &f, d, d->loc);
  if (r.k == V_ERR || ctx_failed(E->c)) return;
  entry_outputs(E, d, r);
}
