/* elab_builtins.c: the built-in functions of .grad (docs/language.md, "Built-in functions").
 *
 * Each builtin is a row of one table: its name, its signature (also the hint shown for a
 * wrong call; the parameter names in it are the accepted keywords, `=` marks optional
 * ones), the function that expands it, and an op for the rows that share a function.
 * Builtins that are ops of ops.def map to one builder call; the rest are composed from
 * builders (mean = sum * (1/n), logsumexp with a stop_grad max shift, sqdist by
 * broadcast-subtract-square-sum...), so autodiff and codegen never see them.
 * On compile-time numbers the elementwise math builtins fold (sqrt(2.0) is a float).
 */
#include <math.h>
#include <string.h>

#include "autodiff.h"
#include "elab.h"

typedef Value (*BuiltinFn)(Elab *E, int op, Value *a, SrcLoc loc);

typedef struct {
  const char *name;
  const char *sig;
  BuiltinFn fn;
  int op;
} Builtin;

#define MAXARGS 4

/* ---- helpers ------------------------------------------------------------------------------ */
static int need_tensor(Elab *E, Value v, const char *fname, SrcLoc loc) {
  if (v.k == V_TENSOR) return elab_need_graph(E, loc);
  diag_error(E->c, loc, NULL, "%s() needs a tensor, got %s", fname, v_describe(E, &v));
  return -1;
}

static int get_dtype(Elab *E, Value v, SrcLoc loc, DType *dt) {
  if (v.k == V_NONE) return *dt = fe_dtype(E, DT_F32), 0;
  if (v.k == V_DTYPE) return *dt = (DType)v.i, 0;
  diag_error(E->c, loc, "dtypes: f32, f64, i32, i64", "expected a dtype, got %s", v_describe(E, &v));
  return -1;
}

static int get_bool(Elab *E, Value v, int dflt, SrcLoc loc, int *out) {
  if (v.k == V_NONE) return *out = dflt, 0;
  if (v.k == V_BOOL) return *out = (int)v.i, 0;
  diag_error(E->c, loc, NULL, "expected true or false, got %s", v_describe(E, &v));
  return -1;
}

static const Shape *shp(Elab *E, ValId t) { return &ir_node(E->g, t)->shape; }

/* ---- elementwise ---------------------------------------------------------------------------- */
static double fold_unary(Op op, double x) {
  switch (op) {
  case OP_EXP: return exp(x);
  case OP_LOG: return log(x);
  case OP_LOG1P: return log1p(x);
  case OP_SQRT: return sqrt(x);
  case OP_RSQRT: return 1 / sqrt(x);
  case OP_ABS: return fabs(x);
  case OP_SIGN: return (x > 0) - (x < 0);
  case OP_FLOOR: return floor(x);
  case OP_SIN: return sin(x);
  case OP_COS: return cos(x);
  case OP_TAN: return tan(x);
  case OP_ATAN: return atan(x);
  case OP_TANH: return tanh(x);
  case OP_SIGMOID: return 1 / (1 + exp(-x));
  case OP_SILU: return x / (1 + exp(-x));
  case OP_RELU: return x > 0 ? x : 0;
  case OP_SOFTPLUS: return x > 30 ? x : log1p(exp(x));
  default: return x; /* stop_grad */
  }
}

static Value b_unary(Elab *E, int op, Value *a, SrcLoc loc) {
  if (a[0].k == V_INT && (op == OP_ABS || op == OP_SIGN || op == OP_FLOOR || op == OP_RELU ||
                          op == OP_STOPGRAD))
    return v_int((int64_t)fold_unary((Op)op, (double)a[0].i)); /* ints stay ints */
  if (v_is_num(&a[0])) return v_float(fold_unary((Op)op, v_num(&a[0])));
  if (need_tensor(E, a[0], op_name((Op)op), loc)) return v_err();
  return v_tensor(ir_unary(E->g, (Op)op, a[0].t, loc));
}

static Value b_binary(Elab *E, int op, Value *a, SrcLoc loc) {
  if (v_is_num(&a[0]) && v_is_num(&a[1])) {
    double x = v_num(&a[0]), y = v_num(&a[1]);
    switch ((Op)op) {
    case OP_MAX: return v_float(x > y ? x : y);
    case OP_MIN: return v_float(x < y ? x : y);
    case OP_POW: return v_float(pow(x, y));
    default: return v_float(x * y);
    }
  }
  ValId t[2];
  if (elab_broadcast_n(E, a, t, 2, op_name((Op)op), loc)) return v_err();
  return v_tensor(ir_binary(E->g, (Op)op, t[0], t[1], loc));
}

static Value b_where(Elab *E, int op, Value *a, SrcLoc loc) {
  ValId t[3];
  if (a[0].k != V_TENSOR) {
    diag_error(E->c, loc, "for a compile-time condition use `if`",
               "where() needs a tensor condition, got %s", v_describe(E, &a[0]));
    return v_err();
  }
  Value br[2] = {a[1], a[2]};
  ValId bt[2];
  DType cdt = ir_node(E->g, a[0].t)->dtype;
  if (a[1].k != V_TENSOR && a[2].k != V_TENSOR && dtype_is_float(cdt)) {
    /* where(c, 1, 0): numbers take the condition's (float) dtype */
    br[0] = v_tensor(elab_to_tensor(E, a[1], cdt, loc));
    if (br[0].k == V_ERR) return br[0];
  }
  if (elab_broadcast_n(E, br, bt, 2, "where", loc)) return v_err();
  /* the condition may have its own dtype: broadcast shapes only */
  t[0] = a[0].t;
  t[1] = bt[0];
  t[2] = bt[1];
  if (ir_broadcast_pair(E->g, &t[0], &t[1], "where", loc)) return v_err();
  t[2] = ir_broadcast_to(E->g, t[2], shp(E, t[1]), loc);
  t[0] = ir_broadcast_to(E->g, t[0], shp(E, t[1]), loc);
  return v_tensor(ir_where(E->g, t[0], t[1], t[2], loc));
}

static Value b_clamp(Elab *E, int op, Value *a, SrcLoc loc) {
  ValId t[3];
  if (v_is_num(&a[0]) && v_is_num(&a[1]) && v_is_num(&a[2])) {
    double x = v_num(&a[0]), lo = v_num(&a[1]), hi = v_num(&a[2]);
    double r = x < lo ? lo : x > hi ? hi : x;
    int ints = a[0].k == V_INT && a[1].k == V_INT && a[2].k == V_INT;
    return ints ? v_int((int64_t)r) : v_float(r);
  }
  if (elab_broadcast_n(E, a, t, 3, "clamp", loc)) return v_err();
  return v_tensor(ir_binary(E->g, OP_MIN, ir_binary(E->g, OP_MAX, t[0], t[1], loc), t[2], loc));
}

/* ---- reductions ----------------------------------------------------------------------------- */
enum { R_SUM, R_MEAN, R_MAX, R_MIN, R_LSE };

/* max(3, 4), min([a, b, c]), sum([1, 2]): Python-style folding of compile-time numbers. */
static int fold_reduce(Elab *E, int kind, Value *a, Value *out) {
  Value two[2] = {a[0], a[1]};
  Value *xs = two;
  int n = 2;
  if (a[0].k == V_LIST || a[0].k == V_TUPLE) {
    if (a[1].k != V_NONE || a[2].k != V_NONE || a[0].n == 0) return 0;
    xs = a[0].items;
    n = a[0].n;
  } else if (!v_is_num(&a[0]) || !v_is_num(&a[1]) || a[2].k != V_NONE ||
             (kind != R_MAX && kind != R_MIN)) {
    return 0;
  }
  int ints = 1;
  double acc = kind == R_MAX ? -INFINITY : kind == R_MIN ? INFINITY : 0;
  for (int i = 0; i < n; i++) {
    if (!v_is_num(&xs[i])) return 0;
    double x = v_num(&xs[i]);
    ints &= xs[i].k == V_INT;
    acc = kind == R_MAX ? (x > acc ? x : acc) : kind == R_MIN ? (x < acc ? x : acc) : acc + x;
  }
  if (kind == R_MEAN) acc /= n, ints = 0;
  if (kind == R_LSE) return 0;
  *out = ints ? v_int((int64_t)acc) : v_float(acc);
  (void)E;
  return 1;
}

static Value b_reduce(Elab *E, int kind, Value *a, SrcLoc loc) {
  static const char *const names[] = {"sum", "mean", "max", "min", "logsumexp"};
  Value folded;
  if (fold_reduce(E, kind, a, &folded)) return folded;
  if (need_tensor(E, a[0], names[kind], loc)) return v_err();
  Graph *g = E->g;
  ValId x = a[0].t;
  const Shape s = *shp(E, x);
  uint32_t axes;
  int keep;
  if (elab_get_axes(E, a[1], s.rank, loc, &axes) || get_bool(E, a[2], 0, loc, &keep))
    return v_err();
  ValId r;
  switch (kind) {
  case R_SUM: r = ir_reduce(g, OP_SUM, x, axes, loc); break;
  case R_MAX: r = ir_reduce(g, OP_RMAX, x, axes, loc); break;
  case R_MIN: r = ir_reduce(g, OP_RMIN, x, axes, loc); break;
  case R_MEAN: {
    int64_t n = 1;
    for (int i = 0; i < s.rank; i++)
      if (axes >> i & 1) n *= s.dims[i];
    r = ir_reduce(g, OP_SUM, x, axes, loc);
    if (r == IR_ERR) return v_err();
    ValId k = ir_const(g, 1.0 / (double)(n ? n : 1), ir_node(g, r)->dtype, shp(E, r), loc);
    r = ir_binary(g, OP_MUL, r, k, loc);
    break;
  }
  default: { /* logsumexp: m + log(sum(exp(x - m))), m = stop_grad(max(x)) */
    ValId m = ir_unary(g, OP_STOPGRAD, ir_reduce(g, OP_RMAX, x, axes, loc), loc);
    if (m == IR_ERR) return v_err();
    ValId d = ir_binary(g, OP_SUB, x, ir_broadcast(g, m, &s, loc), loc);
    ValId l = ir_unary(g, OP_LOG, ir_reduce(g, OP_SUM, ir_unary(g, OP_EXP, d, loc), axes, loc), loc);
    r = ir_binary(g, OP_ADD, l, m, loc);
  }
  }
  return v_tensor(keep ? r : ir_squeeze_axes(g, r, axes, loc));
}

static Value b_softmax(Elab *E, int op, Value *a, SrcLoc loc) {
  if (need_tensor(E, a[0], "softmax", loc)) return v_err();
  Graph *g = E->g;
  ValId x = a[0].t;
  const Shape s = *shp(E, x);
  uint32_t axes;
  if (elab_get_axes(E, a[1].k == V_NONE ? v_int(-1) : a[1], s.rank, loc, &axes)) return v_err();
  ValId m = ir_unary(g, OP_STOPGRAD, ir_reduce(g, OP_RMAX, x, axes, loc), loc);
  ValId e = ir_unary(g, OP_EXP, ir_binary(g, OP_SUB, x, ir_broadcast(g, m, &s, loc), loc), loc);
  ValId z = ir_broadcast(g, ir_reduce(g, OP_SUM, e, axes, loc), &s, loc);
  return v_tensor(ir_binary(g, OP_DIV, e, z, loc));
}

/* ---- shapes ----------------------------------------------------------------------------------- */
static Value b_reshape(Elab *E, int op, Value *a, SrcLoc loc) {
  if (need_tensor(E, a[0], "reshape", loc)) return v_err();
  Shape to;
  if (elab_get_shape(E, a[1], loc, &to, 1)) return v_err();
  const Shape *s = shp(E, a[0].t);
  int infer = -1;
  int64_t known = 1;
  for (int i = 0; i < to.rank; i++) {
    if (to.dims[i] != -1) {
      known *= to.dims[i];
      continue;
    }
    if (infer >= 0) {
      diag_error(E->c, loc, NULL, "reshape: only one dimension can be -1");
      return v_err();
    }
    infer = i;
  }
  char s1[96], s2[96];
  if (infer >= 0) {
    if (known == 0 || shape_numel(s) % known) {
      diag_error(E->c, loc, NULL, "cannot reshape %s (%lld elements) to %s",
                 shape_str(s, s1, 96), (long long)shape_numel(s), shape_str(&to, s2, 96));
      return v_err();
    }
    to.dims[infer] = shape_numel(s) / known;
  }
  return v_tensor(ir_reshape(E->g, a[0].t, &to, loc));
}

static Value b_broadcast(Elab *E, int op, Value *a, SrcLoc loc) {
  if (need_tensor(E, a[0], "broadcast", loc)) return v_err();
  Shape to;
  if (elab_get_shape(E, a[1], loc, &to, 0)) return v_err();
  const Shape *s = shp(E, a[0].t);
  for (int i = 0; i < s->rank; i++) {
    int j = i + to.rank - s->rank;
    if (j < 0 || (s->dims[i] != 1 && s->dims[i] != to.dims[j])) {
      char s1[96], s2[96];
      diag_error(E->c, loc, "NumPy rules: trailing dimensions must be equal or 1",
                 "cannot broadcast %s to %s", shape_str(s, s1, 96), shape_str(&to, s2, 96));
      return v_err();
    }
  }
  return v_tensor(ir_broadcast_to(E->g, a[0].t, &to, loc));
}

static Value b_transpose(Elab *E, int op, Value *a, SrcLoc loc) {
  if (need_tensor(E, a[0], "transpose", loc)) return v_err();
  int rank = shp(E, a[0].t)->rank;
  int32_t perm[IR_MAXRANK] = {0};
  for (int i = 0; i < rank; i++) perm[i] = i;
  if (a[1].k == V_NONE) {
    if (rank < 2) {
      diag_error(E->c, loc, NULL, "transpose() needs rank 2 or more, got rank %d", rank);
      return v_err();
    }
    perm[rank - 2] = rank - 1;
    perm[rank - 1] = rank - 2;
  } else {
    Shape p;
    if (elab_get_shape(E, a[1], loc, &p, 0)) return v_err();
    unsigned seen = 0;
    for (int i = 0; i < p.rank; i++) {
      if (p.dims[i] >= rank || (seen >> p.dims[i] & 1)) p.rank = -1;
      if (p.rank < 0) break;
      seen |= 1u << p.dims[i];
      perm[i] = (int32_t)p.dims[i];
    }
    if (p.rank != rank) {
      diag_error(E->c, loc, NULL, "transpose: the permutation must list each axis 0..%d once",
                 rank - 1);
      return v_err();
    }
  }
  return v_tensor(ir_transpose(E->g, a[0].t, perm, loc));
}

static Value b_concat(Elab *E, int op, Value *a, SrcLoc loc) {
  Value parts[2] = {a[0], a[1]};
  Value *list = parts;
  int n = 2;
  if (a[0].k == V_LIST || a[0].k == V_TUPLE) {
    list = a[0].items;
    n = a[0].n;
  } else if (a[1].k == V_NONE) {
    n = 1;
  }
  if (n < 1 || elab_need_graph(E, loc)) {
    if (n < 1) diag_error(E->c, loc, NULL, "concat() of nothing");
    return v_err();
  }
  int64_t ax;
  if (elab_get_int(E, a[2].k == V_NONE ? v_int(0) : a[2], "axis", loc, &ax)) return v_err();
  if (need_tensor(E, list[0], "concat", loc)) return v_err();
  ValId r = list[0].t;
  int axis = elab_norm_axis(E, ax, shp(E, r)->rank, loc);
  if (axis < 0) return v_err();
  for (int i = 1; i < n; i++) {
    if (need_tensor(E, list[i], "concat", loc)) return v_err();
    r = ir_concat(E->g, r, list[i].t, axis, loc);
  }
  return v_tensor(r);
}

static Value b_gather(Elab *E, int op, Value *a, SrcLoc loc) {
  if (need_tensor(E, a[0], "gather", loc) || need_tensor(E, a[1], "gather", loc)) return v_err();
  int64_t ax;
  if (elab_get_int(E, a[2].k == V_NONE ? v_int(0) : a[2], "axis", loc, &ax)) return v_err();
  int axis = elab_norm_axis(E, ax, shp(E, a[0].t)->rank, loc);
  if (axis < 0) return v_err();
  return v_tensor(ir_gather(E->g, a[0].t, a[1].t, axis, loc));
}

static Value b_dim(Elab *E, int op, Value *a, SrcLoc loc) {
  if (need_tensor(E, a[0], "dim", loc)) return v_err();
  int64_t ax;
  if (elab_get_int(E, a[1], "axis", loc, &ax)) return v_err();
  const Shape *s = shp(E, a[0].t);
  int axis = elab_norm_axis(E, ax, s->rank, loc);
  return axis < 0 ? v_err() : v_int(s->dims[axis]);
}

static Value b_shape(Elab *E, int op, Value *a, SrcLoc loc) {
  if (need_tensor(E, a[0], "shape", loc)) return v_err();
  const Shape *s = shp(E, a[0].t);
  Value r = {.k = V_LIST, .n = s->rank, .t = IR_ERR};
  r.items = arena_alloc(&E->c->arena, (size_t)(s->rank ? s->rank : 1) * sizeof *r.items);
  for (int i = 0; i < s->rank; i++) r.items[i] = v_int(s->dims[i]);
  return r;
}

static Value b_len(Elab *E, int op, Value *a, SrcLoc loc) {
  if (a[0].k == V_LIST || a[0].k == V_TUPLE) return v_int(a[0].n);
  if (a[0].k == V_STR) return v_int((int64_t)strlen(a[0].s));
  if (a[0].k == V_TENSOR && shp(E, a[0].t)->rank) return v_int(shp(E, a[0].t)->dims[0]);
  diag_error(E->c, loc, NULL, "len() needs a list, a tuple or a tensor of rank >= 1, got %s",
             v_describe(E, &a[0]));
  return v_err();
}

static Value b_conv(Elab *E, int to_int, Value *a, SrcLoc loc) {
  if (!v_is_num(&a[0])) {
    diag_error(E->c, loc, a[0].k == V_TENSOR ? "for tensors use cast(x, dtype)" : NULL,
               "%s() needs a compile-time number, got %s", to_int ? "int" : "float",
               v_describe(E, &a[0]));
    return v_err();
  }
  return to_int ? v_int((int64_t)v_num(&a[0])) : v_float(v_num(&a[0]));
}

/* ---- products ----------------------------------------------------------------------------------- */
static Value b_matmul(Elab *E, int op, Value *a, SrcLoc loc) { return elab_matmul(E, a[0], a[1], loc); }

/* sqdist(a [.., N, D], b [.., M, D]) -> [.., N, M]: sum over D of (a_n - b_m)^2 */
static Value b_sqdist(Elab *E, int is_dist, Value *a, SrcLoc loc) {
  const char *name = is_dist ? "dist" : "sqdist";
  if (need_tensor(E, a[0], name, loc) || need_tensor(E, a[1], name, loc)) return v_err();
  Graph *g = E->g;
  Shape sa = *shp(E, a[0].t), sb = *shp(E, a[1].t);
  char s1[96], s2[96];
  if (sa.rank < 2 || sb.rank < 2 || sa.rank == IR_MAXRANK || sb.rank == IR_MAXRANK ||
      sa.dims[sa.rank - 1] != sb.dims[sb.rank - 1]) {
    diag_error(E->c, loc, "expected [.., N, D] and [.., M, D] with the same D",
               "%s() cannot pair %s and %s", name, shape_str(&sa, s1, 96), shape_str(&sb, s2, 96));
    return v_err();
  }
  Shape ea = sa, eb = sb; /* [.., N, 1, D] and [.., 1, M, D] */
  ea.rank++, eb.rank++;
  ea.dims[ea.rank - 1] = sa.dims[sa.rank - 1];
  ea.dims[ea.rank - 2] = 1;
  ea.dims[ea.rank - 3] = sa.dims[sa.rank - 2];
  eb.dims[eb.rank - 1] = sb.dims[sb.rank - 1];
  eb.dims[eb.rank - 2] = sb.dims[sb.rank - 2];
  eb.dims[eb.rank - 3] = 1;
  Value x = v_tensor(ir_reshape(g, a[0].t, &ea, loc)), y = v_tensor(ir_reshape(g, a[1].t, &eb, loc));
  Value d = elab_binop(E, "-", x, y, loc);
  if (d.k == V_ERR) return d;
  ValId sq = ir_binary(g, OP_MUL, d.t, d.t, loc);
  int last = shp(E, sq)->rank - 1;
  ValId r = ir_squeeze_axes(g, ir_reduce(g, OP_SUM, sq, 1u << last, loc), 1u << last, loc);
  if (is_dist) r = ir_unary(g, OP_SQRT, r, loc);
  return v_tensor(r);
}

/* ---- creation ------------------------------------------------------------------------------------ */
enum { C_ZEROS, C_ONES, C_FULL, C_RANDN, C_RAND };

static Value b_create(Elab *E, int kind, Value *a, SrcLoc loc) {
  Shape s;
  DType dt;
  if (elab_get_shape(E, a[0], loc, &s, 0) || get_dtype(E, a[kind == C_FULL ? 2 : 1], loc, &dt) ||
      elab_need_graph(E, loc))
    return v_err();
  switch (kind) {
  case C_ZEROS: return v_tensor(ir_const(E->g, 0, dt, &s, loc));
  case C_ONES: return v_tensor(ir_const(E->g, 1, dt, &s, loc));
  case C_FULL:
    if (!v_is_num(&a[1])) {
      diag_error(E->c, loc, "for a tensor value use broadcast(v, shape)",
                 "full() needs a compile-time number, got %s", v_describe(E, &a[1]));
      return v_err();
    }
    return v_tensor(ir_const(E->g, v_num(&a[1]), dt, &s, loc));
  default:
    if (!dtype_is_float(dt)) {
      diag_error(E->c, loc, NULL, "random draws need a float dtype");
      return v_err();
    }
    return v_tensor(ir_random(E->g, kind == C_RANDN ? OP_RANDN : OP_RANDU, dt, &s, loc));
  }
}

static Value b_iota(Elab *E, int is_arange, Value *a, SrcLoc loc) {
  Shape s;
  DType dt;
  int64_t ax = 0;
  if (elab_get_shape(E, a[0], loc, &s, 0) || get_dtype(E, a[is_arange ? 1 : 2], loc, &dt) ||
      elab_need_graph(E, loc))
    return v_err();
  if (!is_arange && a[1].k != V_NONE && elab_get_int(E, a[1], "axis", loc, &ax)) return v_err();
  int axis = elab_norm_axis(E, ax, s.rank, loc);
  if (axis < 0) return v_err();
  return v_tensor(ir_iota(E->g, dt, &s, axis, loc));
}

static Value b_cast(Elab *E, int op, Value *a, SrcLoc loc) {
  DType dt;
  if (get_dtype(E, a[1], loc, &dt)) return v_err();
  if (v_is_num(&a[0])) return v_tensor(elab_to_tensor(E, a[0], dt, loc));
  if (need_tensor(E, a[0], "cast", loc)) return v_err();
  return v_tensor(ir_cast(E->g, a[0].t, dt, loc));
}

/* ---- differentiation ------------------------------------------------------------------------------ */
/* Reads x (a tensor or a tuple of tensors) into ts; returns the count or -1. */
static int tensors_of(Elab *E, Value v, ValId *ts, int max, const char *what, SrcLoc loc) {
  if (v.k == V_TENSOR) return ts[0] = v.t, 1;
  if ((v.k == V_TUPLE || v.k == V_LIST) && v.n <= max) {
    for (int i = 0; i < v.n; i++) {
      if (v.items[i].k != V_TENSOR) goto bad;
      ts[i] = v.items[i].t;
    }
    return v.n;
  }
bad:
  diag_error(E->c, loc, NULL, "%s must be a tensor or a tuple of at most %d tensors, got %s", what,
             max, v_describe(E, &v));
  return -1;
}

static Value tuple_of(Elab *E, ValId *ts, int n, int as_tuple) {
  if (!as_tuple) return v_tensor(ts[0]);
  Value r = {.k = V_TUPLE, .n = n, .t = IR_ERR};
  r.items = arena_alloc(&E->c->arena, (size_t)n * sizeof *r.items);
  for (int i = 0; i < n; i++) r.items[i] = v_tensor(ts[i]);
  return r;
}

#define MAXWRT 16

static Value b_vjp(Elab *E, int has_ct, Value *a, SrcLoc loc) {
  ValId wrt[MAXWRT], grads[MAXWRT], ct = IR_ERR;
  if (need_tensor(E, a[0], has_ct ? "vjp" : "grad", loc)) return v_err();
  int n = tensors_of(E, a[1], wrt, MAXWRT, "the second argument", loc);
  if (n < 0) return v_err();
  if (has_ct) {
    if ((ct = elab_to_tensor(E, a[2], ir_node(E->g, a[0].t)->dtype, loc)) == IR_ERR) return v_err();
    ct = ir_broadcast_to(E->g, ct, shp(E, a[0].t), loc);
  } else if (shp(E, a[0].t)->rank != 0) {
    char sb[96];
    diag_error(E->c, loc, "reduce it first (e.g. sum or mean), or use vjp(y, x, ct)",
               "grad() needs a scalar, got shape %s", shape_str(shp(E, a[0].t), sb, sizeof sb));
    return v_err();
  }
  if (ad_vjp(E->g, a[0].t, ct, n, wrt, grads, loc)) return v_err();
  return tuple_of(E, grads, n, a[1].k != V_TENSOR);
}

/* jvp(y, x, v) or jvp(f, (primals), (tangents)) -> (f(primals), tangent) */
static Value b_jvp(Elab *E, int op, Value *a, SrcLoc loc) {
  ValId wrt[MAXWRT], tan[MAXWRT], ys[MAXWRT], outs[MAXWRT];
  if (elab_need_graph(E, loc)) return v_err();
  int is_fn = a[0].k == V_FN || a[0].k == V_BUILTIN || a[0].k == V_EXTERN;
  int n = tensors_of(E, a[1], wrt, MAXWRT, "the primals", loc);
  if (n < 0 || tensors_of(E, a[2], tan, MAXWRT, "the tangents", loc) != n) {
    if (n >= 0) diag_error(E->c, loc, NULL, "jvp: as many tangents as primals are needed");
    return v_err();
  }
  for (int i = 0; i < n; i++)
    if (!shape_eq(shp(E, wrt[i]), shp(E, tan[i])) ||
        ir_node(E->g, wrt[i])->dtype != ir_node(E->g, tan[i])->dtype) {
      char s1[96], s2[96];
      diag_error(E->c, loc, NULL, "jvp: tangent %d is %s%s but its primal is %s%s", i,
                 dtype_name(ir_node(E->g, tan[i])->dtype), shape_str(shp(E, tan[i]), s1, 96),
                 dtype_name(ir_node(E->g, wrt[i])->dtype), shape_str(shp(E, wrt[i]), s2, 96));
      return v_err();
    }
  Value y = a[0];
  if (is_fn) {
    /* fresh copies of the primals, so the derivative is that of f alone */
    Value args[MAXWRT];
    for (int i = 0; i < n; i++) {
      ValId z = ir_const(E->g, 0, ir_node(E->g, wrt[i])->dtype, shp(E, wrt[i]), loc);
      wrt[i] = ir_binary(E->g, OP_ADD, wrt[i], z, loc);
      args[i] = v_tensor(wrt[i]);
    }
    y = elab_call_value(E, a[0], args, NULL, n, NULL, loc);
    if (y.k == V_ERR) return y;
  }
  int ny = tensors_of(E, y, ys, MAXWRT, "the function's result", loc);
  if (ny < 0 || ad_jvp(E->g, n, wrt, tan, ny, ys, outs, loc)) return v_err();
  Value t = tuple_of(E, outs, ny, y.k != V_TENSOR);
  if (!is_fn) return t;
  Value r = {.k = V_TUPLE, .n = 2, .t = IR_ERR};
  r.items = arena_alloc(&E->c->arena, 2 * sizeof *r.items);
  r.items[0] = y;
  r.items[1] = t;
  return r;
}

/* ---- the table -------------------------------------------------------------------------------------- */
#define UN(nm, op) {nm, nm "(x)", b_unary, op}
static const Builtin builtins[] = {
    UN("exp", OP_EXP), UN("log", OP_LOG), UN("log1p", OP_LOG1P), UN("sqrt", OP_SQRT),
    UN("rsqrt", OP_RSQRT), UN("abs", OP_ABS), UN("sign", OP_SIGN), UN("floor", OP_FLOOR),
    UN("sin", OP_SIN), UN("cos", OP_COS), UN("tan", OP_TAN), UN("atan", OP_ATAN),
    UN("tanh", OP_TANH), UN("sigmoid", OP_SIGMOID), UN("silu", OP_SILU), UN("relu", OP_RELU),
    UN("softplus", OP_SOFTPLUS), UN("stop_grad", OP_STOPGRAD),
    {"maximum", "maximum(a, b)", b_binary, OP_MAX},
    {"minimum", "minimum(a, b)", b_binary, OP_MIN},
    {"pow", "pow(a, b)", b_binary, OP_POW},
    {"safe_mul", "safe_mul(a, b)", b_binary, OP_SAFEMUL},
    {"where", "where(c, a, b)", b_where, 0},
    {"clamp", "clamp(x, lo, hi)", b_clamp, 0},
    {"sum", "sum(x, axis=all, keepdims=false)", b_reduce, R_SUM},
    {"mean", "mean(x, axis=all, keepdims=false)", b_reduce, R_MEAN},
    {"max", "max(x, axis=all, keepdims=false)", b_reduce, R_MAX},
    {"min", "min(x, axis=all, keepdims=false)", b_reduce, R_MIN},
    {"logsumexp", "logsumexp(x, axis=all, keepdims=false)", b_reduce, R_LSE},
    {"softmax", "softmax(x, axis=-1)", b_softmax, 0},
    {"reshape", "reshape(x, shape)", b_reshape, 0},
    {"broadcast", "broadcast(x, shape)", b_broadcast, 0},
    {"transpose", "transpose(x, perm=last two swapped)", b_transpose, 0},
    {"concat", "concat(a, b=, axis=0)", b_concat, 0},
    {"gather", "gather(x, idx, axis=0)", b_gather, 0},
    {"dim", "dim(x, axis)", b_dim, 0},
    {"shape", "shape(x)", b_shape, 0},
    {"len", "len(xs)", b_len, 0},
    {"int", "int(v)", b_conv, 1},
    {"float", "float(v)", b_conv, 0},
    {"matmul", "matmul(a, b)", b_matmul, 0},
    {"sqdist", "sqdist(a, b)", b_sqdist, 0},
    {"dist", "dist(a, b)", b_sqdist, 1},
    {"zeros", "zeros(shape, dtype=f32)", b_create, C_ZEROS},
    {"ones", "ones(shape, dtype=f32)", b_create, C_ONES},
    {"full", "full(shape, value, dtype=f32)", b_create, C_FULL},
    {"randn", "randn(shape, dtype=f32)", b_create, C_RANDN},
    {"rand", "rand(shape, dtype=f32)", b_create, C_RAND},
    {"iota", "iota(shape, axis=0, dtype=f32)", b_iota, 0},
    {"arange", "arange(n, dtype=f32)", b_iota, 1},
    {"cast", "cast(x, dtype)", b_cast, 0},
    {"grad", "grad(y, x)", b_vjp, 0},
    {"vjp", "vjp(y, x, ct)", b_vjp, 1},
    {"jvp", "jvp(y, x, v)", b_jvp, 0},
};
#define NBUILTINS ((int)(sizeof builtins / sizeof *builtins))

int fe_builtin_count(void) { return NBUILTINS; }
const char *fe_builtin_name(int i) { return builtins[i].name; }
const char *fe_builtin_sig(int i) { return builtins[i].sig; }

int fe_builtin_find(const char *name) {
  for (int i = 0; i < NBUILTINS; i++)
    if (!strcmp(builtins[i].name, name)) return i;
  return -1;
}

/* Parameter names of a signature "f(a, b=, axis=0)": names[i], optional[i]. */
static int sig_params(const char *sig, char names[MAXARGS][24], int *optional) {
  const char *p = strchr(sig, '(') + 1;
  int n = 0;
  while (*p && *p != ')' && n < MAXARGS) {
    int k = 0;
    while (*p == ' ') p++;
    while (*p && *p != ',' && *p != ')' && *p != '=' && k < 23) names[n][k++] = *p++;
    names[n][k] = 0;
    optional[n] = *p == '=';
    while (*p && *p != ',' && *p != ')') p++;
    if (*p == ',') p++;
    n++;
  }
  return n;
}

Value fe_builtin_call(Elab *E, int index, Value *args, const char **kw, int nargs, SrcLoc loc) {
  const Builtin *b = &builtins[index];
  char names[MAXARGS][24];
  int optional[MAXARGS];
  int np = sig_params(b->sig, names, optional);
  Value slots[MAXARGS];
  for (int i = 0; i < MAXARGS; i++) slots[i] = v_none();
  const char *hint = arena_printf(&E->c->arena, "signature: %s", b->sig);
  int pos = 0;
  for (int i = 0; i < nargs; i++) {
    int k = -1;
    if (kw && kw[i]) {
      for (int j = 0; j < np; j++)
        if (!strcmp(names[j], kw[i])) k = j;
      if (k < 0) {
        diag_error(E->c, loc, hint, "%s() has no parameter named '%s'", b->name, kw[i]);
        return v_err();
      }
    } else if ((k = pos++) >= np) {
      diag_error(E->c, loc, hint, "too many arguments to %s(): %d given, at most %d", b->name,
                 nargs, np);
      return v_err();
    }
    if (slots[k].k != V_NONE) {
      diag_error(E->c, loc, hint, "argument '%s' of %s() given twice", names[k], b->name);
      return v_err();
    }
    slots[k] = args[i];
  }
  for (int i = 0; i < np; i++)
    if (!optional[i] && slots[i].k == V_NONE) {
      diag_error(E->c, loc, hint, "missing argument '%s' in call to %s()", names[i], b->name);
      return v_err();
    }
  return b->fn(E, b->op, slots, loc);
}
