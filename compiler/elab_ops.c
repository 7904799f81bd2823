/* elab_ops.c: operators, conversions and indexing during elaboration.
 *
 * Two worlds meet here. Compile-time numbers fold (1 + 2 is 3, `/` on ints gives a
 * float, `//` and `%` floor like Python). As soon as a tensor is involved the operator
 * becomes IR: numbers turn into constants of the tensor's dtype (weak typing, so `x * 2`
 * keeps x's dtype), both operands are brought to one shape with NumPy broadcasting
 * (ir_broadcast_pair, whose message names both shapes and the operator), and the op is
 * emitted. Matmul follows NumPy: 1-D operands are promoted to matrices and the added axis
 * removed afterwards; batch dimensions broadcast.
 */
#include <math.h>
#include <string.h>

#include "elab.h"

int elab_get_int(Elab *E, Value v, const char *what, SrcLoc loc, int64_t *out) {
  if (v.k == V_ERR) return -1;
  if (v.k == V_INT) return *out = v.i, 0;
  if (v.k == V_FLOAT && v.f == floor(v.f) && fabs(v.f) < 9e15) return *out = (int64_t)v.f, 0;
  diag_error(E->c, loc, v.k == V_TENSOR ? "sizes and indices are compile-time ints" : NULL,
             "%s must be an int, got %s", what, v_describe(E, &v));
  return -1;
}

int elab_norm_axis(Elab *E, int64_t ax, int rank, SrcLoc loc) {
  if (ax < -rank || ax >= rank) {
    diag_error(E->c, loc, "negative axes count from the end", "axis %lld out of range for rank %d",
               (long long)ax, rank);
    return -1;
  }
  return (int)(ax < 0 ? ax + rank : ax);
}

int elab_get_shape(Elab *E, Value v, SrcLoc loc, Shape *out, int allow_infer) {
  Value one = v;
  if (v.k == V_INT) v = (Value){.k = V_LIST, .items = &one, .n = 1, .t = IR_ERR};
  if (v.k != V_LIST && v.k != V_TUPLE) {
    if (v.k != V_ERR)
      diag_error(E->c, loc, "e.g. [B, D]", "a shape must be a list of ints, got %s",
                 v_describe(E, &v));
    return -1;
  }
  if (v.n > IR_MAXRANK) {
    diag_error(E->c, loc, NULL, "rank %d is above the maximum of %d", v.n, IR_MAXRANK);
    return -1;
  }
  out->rank = v.n;
  for (int i = 0; i < v.n; i++) {
    if (elab_get_int(E, v.items[i], "a dimension", loc, &out->dims[i])) return -1;
    if (out->dims[i] < 0 && !(allow_infer && out->dims[i] == -1)) {
      diag_error(E->c, loc, NULL, "dimension %lld is negative", (long long)out->dims[i]);
      return -1;
    }
    if (out->dims[i] > ((int64_t)1 << 40)) {
      diag_error(E->c, loc, NULL, "dimension %lld is too large", (long long)out->dims[i]);
      return -1;
    }
  }
  return 0;
}

int elab_get_axes(Elab *E, Value v, int rank, SrcLoc loc, uint32_t *axes) {
  *axes = 0;
  if (v.k == V_NONE) {
    *axes = (1u << rank) - 1;
    return 0;
  }
  Value one = v;
  if (v.k == V_INT) v = (Value){.k = V_LIST, .items = &one, .n = 1, .t = IR_ERR};
  if (v.k != V_LIST && v.k != V_TUPLE) {
    diag_error(E->c, loc, NULL, "axis must be an int or a list of ints, got %s", v_describe(E, &v));
    return -1;
  }
  for (int i = 0; i < v.n; i++) {
    int64_t a;
    if (elab_get_int(E, v.items[i], "an axis", loc, &a)) return -1;
    int ax = elab_norm_axis(E, a, rank, loc);
    if (ax < 0) return -1;
    *axes |= 1u << ax;
  }
  return 0;
}

ValId elab_to_tensor(Elab *E, Value v, DType dt, SrcLoc loc) {
  if (v.k == V_TENSOR) return v.t;
  if (v_is_num(&v)) {
    if (elab_need_graph(E, loc)) return IR_ERR;
    return ir_scalar(E->g, v_num(&v), dt, loc);
  }
  if (v.k != V_ERR)
    diag_error(E->c, loc, NULL, "expected a tensor or a number, got %s", v_describe(E, &v));
  return IR_ERR;
}

/* The dtype a group of operands agrees on: that of the tensors (which must agree), or
 * f32 when all are numbers. -1 after a diagnostic. */
static int common_dtype(Elab *E, Value *vals, int n, const char *what, SrcLoc loc) {
  int dt = -1;
  for (int i = 0; i < n; i++) {
    if (vals[i].k != V_TENSOR) continue;
    DType t = ir_node(E->g, vals[i].t)->dtype;
    if (dt >= 0 && (DType)dt != t) {
      diag_error(E->c, loc, "convert one side with cast(x, f64) (or f32, i32, i64)",
                 "dtypes %s and %s differ in '%s'", dtype_name((DType)dt), dtype_name(t), what);
      return -1;
    }
    dt = (int)t;
  }
  return dt < 0 ? (int)fe_dtype(E, DT_F32) : dt;
}

int elab_broadcast_n(Elab *E, Value *vals, ValId *out, int n, const char *what, SrcLoc loc) {
  if (elab_need_graph(E, loc)) return -1;
  int dt = common_dtype(E, vals, n, what, loc);
  if (dt < 0) return -1;
  /* tensors first, pairwise with the first one until all agree (NumPy: the join) */
  int first = -1;
  for (int i = 0; i < n; i++) {
    out[i] = IR_ERR;
    if (vals[i].k != V_TENSOR) continue;
    out[i] = vals[i].t;
    if (first < 0) first = i;
    else if (ir_broadcast_pair(E->g, &out[first], &out[i], what, loc)) return -1;
  }
  Shape s = {0, {0}};
  if (first >= 0) s = ir_node(E->g, out[first])->shape;
  for (int i = 0; i < n; i++) {
    if (vals[i].k == V_TENSOR) {
      if ((out[i] = ir_broadcast_to(E->g, out[i], &s, loc)) == IR_ERR) return -1;
    } else if (v_is_num(&vals[i])) {
      out[i] = ir_const(E->g, v_num(&vals[i]), (DType)dt, &s, loc); /* weak typing */
    } else {
      if (vals[i].k != V_ERR)
        diag_error(E->c, loc, NULL, "'%s' needs tensors or numbers, got %s", what,
                   v_describe(E, &vals[i]));
      return -1;
    }
  }
  return 0;
}

/* ---- compile-time folding ------------------------------------------------------------------- */
static int64_t floordiv(int64_t a, int64_t b) {
  int64_t q = a / b;
  return (a % b != 0 && ((a < 0) != (b < 0))) ? q - 1 : q;
}

static Value fold(Elab *E, const char *op, Value a, Value b, SrcLoc loc) {
  if (a.k == V_STR && b.k == V_STR) {
    if (!strcmp(op, "+")) return (Value){.k = V_STR, .s = arena_printf(&E->c->arena, "%s%s", a.s, b.s), .t = IR_ERR};
    if (!strcmp(op, "==")) return v_bool(!strcmp(a.s, b.s));
    if (!strcmp(op, "!=")) return v_bool(strcmp(a.s, b.s) != 0);
  }
  if ((a.k == V_LIST || a.k == V_TUPLE) && a.k == b.k && !strcmp(op, "+")) {
    Value r = {.k = a.k, .n = a.n + b.n, .t = IR_ERR};
    r.items = arena_alloc(&E->c->arena, (size_t)(r.n ? r.n : 1) * sizeof *r.items);
    for (int i = 0; i < a.n; i++) r.items[i] = a.items[i];
    for (int i = 0; i < b.n; i++) r.items[a.n + i] = b.items[i];
    return r;
  }
  if (a.k == V_DTYPE && b.k == V_DTYPE && (!strcmp(op, "==") || !strcmp(op, "!=")))
    return v_bool((a.i == b.i) == !strcmp(op, "=="));
  if (!v_is_num(&a) || !v_is_num(&b)) {
    diag_error(E->c, loc, NULL, "'%s' cannot combine %s and %s", op, v_describe(E, &a),
               v_describe(E, &b));
    return v_err();
  }
  int ints = a.k != V_FLOAT && b.k != V_FLOAT;
  double x = v_num(&a), y = v_num(&b);
  int64_t i = a.i, j = b.i, r = 0;
  int ovf = 0; /* compile-time integers are int64: overflow is an error, never wrap-around */
  switch (op[0]) {
  case '+':
    if (!ints) return v_float(x + y);
    ovf = __builtin_add_overflow(i, j, &r);
    break;
  case '-':
    if (!ints) return v_float(x - y);
    ovf = __builtin_sub_overflow(i, j, &r);
    break;
  case '*':
    if (op[1] == '*') {
      if (!ints || j < 0) return v_float(pow(x, y));
      r = 1;
      for (int64_t k = 0; k < j && !ovf; k++) {
        ovf = __builtin_mul_overflow(r, i, &r);
        if (r == 0 || r == 1) break; /* 0**j, 1**j: no need to loop j times */
        if (r == -1) { r = (j - k - 1) % 2 ? -r : r; break; }
      }
      break;
    }
    if (!ints) return v_float(x * y);
    ovf = __builtin_mul_overflow(i, j, &r);
    break;
  case '/':
  case '%':
    if (ints && j == 0) {
      diag_error(E->c, loc, NULL, "division by zero");
      return v_err();
    }
    if (!ints) {
      if (op[0] == '%') return v_float(x - y * floor(x / y));
      return v_float(op[1] == '/' ? floor(x / y) : x / y);
    }
    if (op[0] == '/' && op[1] != '/') return v_float(x / y);
    if (i == INT64_MIN && j == -1) {
      if (op[0] == '%') return v_int(0);
      ovf = 1;
      break;
    }
    return v_int(op[0] == '%' ? i - floordiv(i, j) * j : floordiv(i, j));
  case '<': return v_bool(op[1] ? x <= y : x < y);
  case '>': return v_bool(op[1] ? x >= y : x > y);
  case '=': return v_bool(x == y);
  case '!': return v_bool(x != y);
  }
  if (ovf) {
    diag_error(E->c, loc, "compile-time integers are 64-bit; write a float (e.g. 1.0e19) if you need a larger value",
               "integer overflow in '%s'", op);
    return v_err();
  }
  if (op[0] == '+' || op[0] == '-' || op[0] == '*') return v_int(r);
  diag_error(E->c, loc, NULL, "'%s' is not defined on numbers", op);
  return v_err();
}

/* ---- tensors ------------------------------------------------------------------------------------ */
static Op binop_op(const char *op) {
  static const struct { const char *s; Op op; } t[] = {
      {"+", OP_ADD}, {"-", OP_SUB}, {"*", OP_MUL}, {"/", OP_DIV}, {"**", OP_POW}, {"<", OP_LT},
      {"<=", OP_LE}, {">", OP_GT},  {">=", OP_GE}, {"==", OP_EQ}, {"!=", OP_NE}};
  for (size_t i = 0; i < sizeof t / sizeof *t; i++)
    if (!strcmp(t[i].s, op)) return t[i].op;
  return OP_COUNT;
}

Value elab_matmul(Elab *E, Value a, Value b, SrcLoc loc) {
  if (elab_need_graph(E, loc)) return v_err();
  if (a.k != V_TENSOR || b.k != V_TENSOR) {
    diag_error(E->c, loc, NULL, "'@' needs two tensors, got %s and %s", v_describe(E, &a),
               v_describe(E, &b));
    return v_err();
  }
  Graph *g = E->g;
  ValId x = a.t, y = b.t;
  Shape sa = ir_node(g, x)->shape, sb = ir_node(g, y)->shape;
  if (sa.rank == 0 || sb.rank == 0) {
    diag_error(E->c, loc, "use '*' to scale by a scalar", "'@' needs tensors of rank 1 or more");
    return v_err();
  }
  if (ir_node(g, x)->dtype != ir_node(g, y)->dtype) {
    diag_error(E->c, loc, "convert one side with cast(x, f64)", "dtypes %s and %s differ in '@'",
               dtype_name(ir_node(g, x)->dtype), dtype_name(ir_node(g, y)->dtype));
    return v_err();
  }
  int va = sa.rank == 1, vb = sb.rank == 1;
  Shape ta = sa, tb = sb;
  if (va) ta = (Shape){2, {1, sa.dims[0]}};
  if (vb) tb = (Shape){2, {sb.dims[0], 1}};
  char s1[96], s2[96];
  if (ta.dims[ta.rank - 1] != tb.dims[tb.rank - 2]) {
    diag_error(E->c, loc, "the last axis of the left operand must equal the second-to-last of the right",
               "cannot multiply %s by %s in '@' (%lld != %lld)", shape_str(&sa, s1, 96),
               shape_str(&sb, s2, 96), (long long)ta.dims[ta.rank - 1],
               (long long)tb.dims[tb.rank - 2]);
    return v_err();
  }
  /* batch dims: NumPy broadcasting on all but the last two axes */
  int rank = ta.rank > tb.rank ? ta.rank : tb.rank;
  Shape fa = {rank, {0}}, fb = {rank, {0}};
  for (int i = 0; i < rank; i++) {
    int ia = i - (rank - ta.rank), ib = i - (rank - tb.rank);
    int64_t da = ia >= 0 ? ta.dims[ia] : 1, db = ib >= 0 ? tb.dims[ib] : 1;
    if (i < rank - 2) {
      if (da != db && da != 1 && db != 1) {
        diag_error(E->c, loc, "batch dimensions follow NumPy broadcasting",
                   "batch dimensions of %s and %s cannot broadcast in '@'", shape_str(&sa, s1, 96),
                   shape_str(&sb, s2, 96));
        return v_err();
      }
      fa.dims[i] = fb.dims[i] = da == 1 ? db : da;
    } else {
      fa.dims[i] = da;
      fb.dims[i] = db;
    }
  }
  Shape la = {rank, {0}}, lb = {rank, {0}};
  for (int i = 0; i < rank; i++) {
    la.dims[i] = i < rank - ta.rank ? 1 : ta.dims[i - (rank - ta.rank)];
    lb.dims[i] = i < rank - tb.rank ? 1 : tb.dims[i - (rank - tb.rank)];
  }
  x = ir_broadcast(g, ir_reshape(g, x, &la, loc), &fa, loc);
  y = ir_broadcast(g, ir_reshape(g, y, &lb, loc), &fb, loc);
  ValId r = ir_matmul(g, x, y, 0, 0, loc);
  if (r == IR_ERR) return v_err();
  uint32_t drop = 0;
  if (va) drop |= 1u << (rank - 2);
  if (vb) drop |= 1u << (rank - 1);
  return v_tensor(drop ? ir_squeeze_axes(g, r, drop, loc) : r);
}

static ValId floor_div(Graph *g, ValId a, ValId b, SrcLoc loc) {
  ValId q = ir_binary(g, OP_DIV, a, b, loc);
  if (q == IR_ERR || !dtype_is_float(ir_node(g, q)->dtype)) return q;
  return ir_unary(g, OP_FLOOR, q, loc);
}

Value elab_binop(Elab *E, const char *op, Value a, Value b, SrcLoc loc) {
  if (a.k == V_ERR || b.k == V_ERR) return v_err();
  if (!strcmp(op, "@")) return elab_matmul(E, a, b, loc);
  if (a.k != V_TENSOR && b.k != V_TENSOR) return fold(E, op, a, b, loc);
  Value vals[2] = {a, b};
  ValId t[2];
  if (elab_broadcast_n(E, vals, t, 2, op, loc)) return v_err();
  Graph *g = E->g;
  if (!strcmp(op, "//")) return v_tensor(floor_div(g, t[0], t[1], loc));
  if (!strcmp(op, "%")) {
    ValId q = floor_div(g, t[0], t[1], loc);
    return v_tensor(ir_binary(g, OP_SUB, t[0], ir_binary(g, OP_MUL, q, t[1], loc), loc));
  }
  Op o = binop_op(op);
  if (o == OP_COUNT) {
    diag_error(E->c, loc, NULL, "'%s' is not defined on tensors", op);
    return v_err();
  }
  return v_tensor(ir_binary(g, o, t[0], t[1], loc));
}

Value elab_unop(Elab *E, const char *op, Value a, SrcLoc loc) {
  if (!strcmp(op, "not")) {
    if (a.k == V_BOOL) return v_bool(!a.i);
    diag_error(E->c, loc, a.k == V_TENSOR ? "for a tensor mask m use 1 - m" : NULL,
               "'not' needs a compile-time bool, got %s", v_describe(E, &a));
    return v_err();
  }
  if (!strcmp(op, "+") && (v_is_num(&a) || a.k == V_TENSOR)) return a;
  if (a.k == V_INT && a.i == INT64_MIN) {
    diag_error(E->c, loc, "compile-time integers are 64-bit", "integer overflow in unary '-'");
    return v_err();
  }
  if (a.k == V_INT) return v_int(-a.i);
  if (a.k == V_FLOAT) return v_float(-a.f);
  if (a.k == V_TENSOR) return v_tensor(ir_unary(E->g, OP_NEG, a.t, loc));
  diag_error(E->c, loc, NULL, "unary '%s' needs a number or a tensor, got %s", op,
             v_describe(E, &a));
  return v_err();
}

/* ---- indexing -------------------------------------------------------------------------------------- */
static int slice_bound(Elab *E, Value v, int64_t size, int64_t dflt, SrcLoc loc, int64_t *out) {
  if (v.k == V_NONE) return *out = dflt, 0;
  if (elab_get_int(E, v, "a slice bound", loc, out)) return -1;
  if (*out < 0) *out += size;
  return 0;
}

static Value index_seq(Elab *E, Value base, Value *items, int n, SrcLoc loc) {
  if (n != 1) {
    diag_error(E->c, loc, NULL, "a %s takes one index", v_kind_name(&base));
    return v_err();
  }
  int64_t i;
  if (elab_get_int(E, items[0], "an index", loc, &i)) return v_err();
  if (i < 0) i += base.n;
  if (i < 0 || i >= base.n) {
    diag_error(E->c, loc, NULL, "index %lld out of range for a %s of %d", (long long)i,
               v_kind_name(&base), base.n);
    return v_err();
  }
  return base.items[i];
}

Value elab_index(Elab *E, Value base, Ast *idx, Value *items, int n, SrcLoc loc) {
  if (base.k == V_LIST || base.k == V_TUPLE) {
    if (n == 1 && idx->list[0]->kind == A_SLICE) {
      int64_t lo, hi;
      if (slice_bound(E, items[0], base.n, 0, loc, &lo) ||
          slice_bound(E, items[1], base.n, base.n, loc, &hi))
        return v_err();
      if (lo < 0) lo = 0;
      if (hi > base.n) hi = base.n;
      Value r = {.k = base.k, .n = hi > lo ? (int)(hi - lo) : 0, .t = IR_ERR};
      r.items = base.items + (hi > lo ? lo : 0);
      return r;
    }
    return index_seq(E, base, items, n, loc);
  }
  if (base.k != V_TENSOR) {
    diag_error(E->c, loc, NULL, "cannot index %s", v_describe(E, &base));
    return v_err();
  }
  Graph *g = E->g;
  ValId x = base.t;
  Shape s = ir_node(g, x)->shape;
  if (n > s.rank) {
    char sb[96];
    diag_error(E->c, loc, NULL, "too many indices (%d) for a tensor of shape %s", n,
               shape_str(&s, sb, sizeof sb));
    return v_err();
  }
  uint32_t drop = 0;
  for (int i = 0; i < n; i++) {
    Ast *it = idx->list[i];
    SrcLoc l = it->loc;
    int64_t size = s.dims[i], lo, hi;
    if (it->kind != A_SLICE && items[2 * i].k == V_TENSOR) {
      x = ir_gather(g, x, items[2 * i].t, i, l); /* index by an integer tensor */
      if (x == IR_ERR) return v_err();
      continue;
    }
    if (it->kind == A_SLICE) {
      if (slice_bound(E, items[2 * i], size, 0, l, &lo) ||
          slice_bound(E, items[2 * i + 1], size, size, l, &hi))
        return v_err();
    } else {
      if (elab_get_int(E, items[2 * i], "an index", l, &lo)) return v_err();
      int64_t orig = lo;
      if (lo < 0) lo += size;
      if (lo < 0 || lo >= size) {
        diag_error(E->c, l, "negative indices count from the end",
                   "index %lld out of range for axis %d of size %lld", (long long)orig, i,
                   (long long)size);
        return v_err();
      }
      hi = lo + 1;
      drop |= 1u << i;
    }
    if (lo == 0 && hi == size) continue;
    if (lo < 0 || hi > size || lo > hi) {
      diag_error(E->c, l, "slices must lie within the axis (negative bounds count from the end)",
                 "slice [%lld:%lld] out of range for axis %d of size %lld", (long long)lo,
                 (long long)hi, i, (long long)size);
      return v_err();
    }
    x = ir_slice(g, x, i, lo, hi, l);
  }
  return v_tensor(drop ? ir_squeeze_axes(g, x, drop, loc) : x);
}
