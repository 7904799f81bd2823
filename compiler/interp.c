/* interp.c: the reference interpreter, the oracle every compiled result is tested against.
 *
 * Why it looks like this: the interpreter must be obviously right, not fast. Every op of
 * ops.def gets a kernel written as the most direct loop over output (or input) elements,
 * in the node's own dtype: f32 math is done in float, f64 in double, integers in int64_t
 * with two's-complement wrap-around and stored back into the node's width. Dispatch goes
 * through one table indexed by op (`impl[]` below): elementwise ops share one kernel per
 * arity and differ only by small scalar functions per dtype, so adding an op is one row.
 *
 * Semantics (docs/interpreter.md repeats them; the LLVM lowering must match):
 *   comparisons      1 or 0 in the input dtype
 *   where(c, a, b)   a where c != 0 (NaN counts as != 0), else b
 *   safe_mul(a, b)   (a == 0 || b == 0) ? 0 : a * b           (so 0 * inf = 0)
 *   sign(x)          x > 0 ? 1 : x < 0 ? -1 : x   (so +-0 and NaN pass through)
 *   relu(x)          x > 0 ? x : 0                            (relu(NaN) = 0)
 *   sigmoid(x)       x >= 0 ? 1 / (1 + exp(-x)) : exp(x) / (1 + exp(x))
 *   silu(x)          x * sigmoid(x)
 *   softplus(x)      log1p(exp(-|x|)) + max(x, 0)
 *   rsqrt(x)         1 / sqrt(x)
 *   maximum(a, b)    NaN if either is NaN, else a > b ? a : b  (minimum: a < b ? a : b)
 *   integer div      truncates toward zero; x / 0 = 0; INT_MIN / -1 wraps to INT_MIN
 *   integer + - * neg abs: wrap around (two's complement)
 *   cast             float -> int truncates toward zero, saturates at the int range,
 *                    NaN -> 0 (LLVM's fptosi.sat); int -> int wraps; -> float rounds
 *   sum/max/min      over attr.axes, keepdims; the accumulator has the node's dtype and
 *                    takes input elements in increasing flat (C-order) index; it starts at
 *                    the identity (sum 0, max -inf, min +inf; ints: INT_MIN, INT_MAX), then
 *                    acc = acc + x or maximum(acc, x) / minimum(acc, x) (NaN propagates)
 *   matmul           batched, acc = 0; acc += a[i,k] * b[k,j] for k = 0.. in order, in the
 *                    node dtype; ta/tb transpose the last two dims of that operand
 *   gather           out = x.take(idx, axis); an index outside [0, dim) is an error
 *   scatter_add      zeros of size attr.sl.start along axis, rows of upd added in
 *                    increasing flat index of upd; an index out of range is an error
 *   randn/randu      element i (flat C order) = gr_normal_/gr_uniform_{f32,f64}(seed,
 *                    step, attr.stream, i) of runtime/philox.h; with a data-parallel
 *                    shard (interp_run_shard), i + shard * numel for draws of rank >= 1
 *   extern           arguments converted to the declared dtypes (cast rules), the C
 *                    function called once per element, the result converted to the node
 *                    dtype
 *
 * Errors name the node, and its source line when it has one; a graph that fails ir_verify
 * is refused before anything runs.
 *
 * Memory: only nodes that an output depends on are evaluated; a node's buffer is freed
 * right after its last consumer ran. Output buffers are handed to the caller.
 */
#include "interp.h"
#include "philox.h"

#include <dlfcn.h>
#include <ffi.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <tgmath.h>

typedef struct {
  const Graph *g;
  const Program *p;
  const GrTensor *inputs, *params;
  uint64_t seed, step, shard;
  void **buf; /* [nnodes]: the value of each node while it is live */
  char *err;
  size_t nerr;
} Interp;

/* Records an error about node id; always returns -1. */
__attribute__((format(printf, 3, 4))) static int fail(Interp *it, int id, const char *fmt, ...) {
  if (!it->err || !it->nerr) return -1;
  const Node *n = &it->g->nodes[id];
  const Ctx *c = it->g->ctx;
  int k;
  if (c && n->loc.file >= 0 && n->loc.file < c->nfiles) /* point at the user's line */
    k = snprintf(it->err, it->nerr, "%s:%d:%d: %%%d (%s): ", c->files[n->loc.file].path, n->loc.line,
                 n->loc.col, id, op_name(n->op));
  else
    k = snprintf(it->err, it->nerr, "interp: %%%d (%s): ", id, op_name(n->op));
  if (k < 0 || (size_t)k >= it->nerr) return -1;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(it->err + k, it->nerr - (size_t)k, fmt, ap);
  va_end(ap);
  return -1;
}

/* ---- element access ------------------------------------------------------------------- */
static int64_t ld_int(const void *b, DType t, int64_t i) {
  return t == DT_I32 ? ((const int32_t *)b)[i] : ((const int64_t *)b)[i];
}
static void st_int(void *b, DType t, int64_t i, int64_t v) {
  if (t == DT_I32)
    ((int32_t *)b)[i] = (int32_t)(uint32_t)(uint64_t)v; /* wraps */
  else
    ((int64_t *)b)[i] = v;
}
/* Any dtype as double (used for conditions, casts and extern arguments). */
static double ld_dbl(const void *b, DType t, int64_t i) {
  switch (t) {
  case DT_F32: return ((const float *)b)[i];
  case DT_F64: return ((const double *)b)[i];
  default: return (double)ld_int(b, t, i);
  }
}
/* float -> int: truncate toward zero, saturate, NaN -> 0. */
static int64_t f2i(double v, DType to) {
  double lo = to == DT_I32 ? -2147483648.0 : -9223372036854775808.0;
  double hi = to == DT_I32 ? 2147483648.0 : 9223372036854775808.0;
  if (isnan(v)) return 0;
  if (v <= lo) return to == DT_I32 ? INT32_MIN : INT64_MIN;
  if (v >= hi) return to == DT_I32 ? INT32_MAX : INT64_MAX;
  return (int64_t)v;
}
/* Element i of (b, from) converted to dtype `to` and stored in element j of out. */
static void convert(void *out, DType to, int64_t j, const void *b, DType from, int64_t i) {
  if (to == DT_F32 && from == DT_F32)
    ((float *)out)[j] = ((const float *)b)[i];
  else if (to == DT_F32)
    ((float *)out)[j] = dtype_is_float(from) ? (float)ld_dbl(b, from, i) : (float)ld_int(b, from, i);
  else if (to == DT_F64)
    ((double *)out)[j] = ld_dbl(b, from, i);
  else if (dtype_is_float(from))
    st_int(out, to, j, f2i(ld_dbl(b, from, i), to));
  else
    st_int(out, to, j, ld_int(b, from, i));
}

static void unravel(int64_t i, const Shape *s, int64_t *c) {
  for (int d = s->rank - 1; d >= 0; d--) {
    c[d] = i % s->dims[d];
    i /= s->dims[d];
  }
}
static int64_t ravel(const int64_t *c, const Shape *s) {
  int64_t i = 0;
  for (int d = 0; d < s->rank; d++) i = i * s->dims[d] + c[d];
  return i;
}

/* ---- scalar functions per op and dtype ------------------------------------------------ */
/* With <tgmath.h>, exp/log/... pick the float or double version from the argument type,
 * so one expression defines both widths; integer literals keep the width. */
#define SIGMOID(x) ((x) >= 0 ? 1 / (1 + exp(-(x))) : exp(x) / (1 + exp(x)))
#define UNARY(name, EXPR)                                                                  \
  static float name##_f32(float x) { return EXPR; }                                        \
  static double name##_f64(double x) { return EXPR; }
UNARY(neg, -x)
UNARY(exp, exp(x))
UNARY(log, log(x))
UNARY(log1p, log1p(x))
UNARY(sqrt, sqrt(x))
UNARY(rsqrt, 1 / sqrt(x))
UNARY(abs, fabs(x))
UNARY(sign, x > 0 ? 1 : x < 0 ? -1 : x) /* +-0 and NaN pass through */
UNARY(floor, floor(x))
UNARY(sin, sin(x))
UNARY(cos, cos(x))
UNARY(tan, tan(x))
UNARY(atan, atan(x))
UNARY(tanh, tanh(x))
UNARY(sigmoid, SIGMOID(x))
UNARY(silu, x * SIGMOID(x))
UNARY(relu, x > 0 ? x : 0)
UNARY(softplus, log1p(exp(-fabs(x))) + (x > 0 ? x : 0))
UNARY(ident, x)

#define BINARY(name, EXPR)                                                                 \
  static float name##_f32(float a, float b) { return EXPR; }                               \
  static double name##_f64(double a, double b) { return EXPR; }
BINARY(add, a + b)
BINARY(sub, a - b)
BINARY(mul, a * b)
BINARY(div, a / b)
BINARY(pow, pow(a, b))
BINARY(max, isnan(a) || isnan(b) ? a + b : a > b ? a : b)
BINARY(min, isnan(a) || isnan(b) ? a + b : a < b ? a : b)
BINARY(safemul, a == 0 || b == 0 ? 0 : a * b)
BINARY(lt, a < b)
BINARY(le, a <= b)
BINARY(gt, a > b)
BINARY(ge, a >= b)
BINARY(eq, a == b)
BINARY(ne, a != b)

/* Integers: computed in 64 bits with wrap-around (unsigned arithmetic), stored back in the
 * node's width, so i32 results wrap at 32 bits. */
static int64_t neg_int(int64_t x) { return (int64_t)(0 - (uint64_t)x); }
static int64_t abs_int(int64_t x) { return x < 0 ? neg_int(x) : x; }
static int64_t sign_int(int64_t x) { return (x > 0) - (x < 0); }
static int64_t ident_int(int64_t x) { return x; }
static int64_t add_int(int64_t a, int64_t b) { return (int64_t)((uint64_t)a + (uint64_t)b); }
static int64_t sub_int(int64_t a, int64_t b) { return (int64_t)((uint64_t)a - (uint64_t)b); }
static int64_t mul_int(int64_t a, int64_t b) { return (int64_t)((uint64_t)a * (uint64_t)b); }
static int64_t div_int(int64_t a, int64_t b) { return b == 0 ? 0 : b == -1 ? neg_int(a) : a / b; }
static int64_t max_int(int64_t a, int64_t b) { return a > b ? a : b; }
static int64_t min_int(int64_t a, int64_t b) { return a < b ? a : b; }
static int64_t lt_int(int64_t a, int64_t b) { return a < b; }
static int64_t le_int(int64_t a, int64_t b) { return a <= b; }
static int64_t gt_int(int64_t a, int64_t b) { return a > b; }
static int64_t ge_int(int64_t a, int64_t b) { return a >= b; }
static int64_t eq_int(int64_t a, int64_t b) { return a == b; }
static int64_t ne_int(int64_t a, int64_t b) { return a != b; }

typedef struct {
  float (*f32)(float);
  double (*f64)(double);
  int64_t (*i)(int64_t); /* NULL: not defined on integers */
} UnaryFns;
typedef struct {
  float (*f32)(float, float);
  double (*f64)(double, double);
  int64_t (*i)(int64_t, int64_t);
} BinaryFns;

/* ---- kernels ---------------------------------------------------------------------------- */
typedef int (*Kernel)(Interp *it, int id, const Node *n, void *out);

#define IN(k) (it->buf[n->in[k]])
#define INNODE(k) (&it->g->nodes[n->in[k]])

static int k_unary(Interp *it, int id, const Node *n, void *out);
static int k_binary(Interp *it, int id, const Node *n, void *out);

static int k_const(Interp *it, int id, const Node *n, void *out) {
  double v = n->attr.scalar;
  int64_t N = shape_numel(&n->shape);
  for (int64_t i = 0; i < N; i++) convert(out, n->dtype, i, &v, DT_F64, 0);
  return 0;
}

static int check_tensor(Interp *it, int id, const Node *n, const GrTensor *t, const char *what,
                        const char *name) {
  char s1[96], s2[96];
  Shape got = {0, {0}};
  int bad = t->rank < 0 || t->rank > IR_MAXRANK || t->dtype != (int32_t)n->dtype || !t->data;
  if (t->rank >= 0 && t->rank <= IR_MAXRANK) {
    got.rank = t->rank;
    memcpy(got.dims, t->dims, sizeof(int64_t) * (size_t)t->rank);
    bad |= !shape_eq(&got, &n->shape);
  }
  if (!bad) return 0;
  return fail(it, id, "%s '%s' must be %s%s, got %s%s%s", what, name, dtype_name(n->dtype),
              shape_str(&n->shape, s1, sizeof s1),
              t->dtype >= 0 && t->dtype < DT_COUNT ? dtype_name((DType)t->dtype) : "?",
              shape_str(&got, s2, sizeof s2), t->data ? "" : " (no data)");
}

static int k_input(Interp *it, int id, const Node *n, void *out) {
  int k = n->attr.index;
  if (!it->inputs) return fail(it, id, "no input tensors given");
  const GrTensor *t = &it->inputs[k];
  if (check_tensor(it, id, n, t, "input", it->g->inputs[k].name)) return -1;
  memcpy(out, t->data, (size_t)shape_numel(&n->shape) * dtype_size(n->dtype));
  return 0;
}

static int k_param(Interp *it, int id, const Node *n, void *out) {
  int k = n->attr.index;
  if (!it->p || k < 0 || k >= it->p->nparams) return fail(it, id, "parameter index %d out of range", k);
  if (!it->params) return fail(it, id, "no parameter tensors given");
  if (check_tensor(it, id, n, &it->params[k], "parameter", it->p->params[k].name)) return -1;
  memcpy(out, it->params[k].data, (size_t)shape_numel(&n->shape) * dtype_size(n->dtype));
  return 0;
}

static int k_iota(Interp *it, int id, const Node *n, void *out) {
  int64_t N = shape_numel(&n->shape), c[IR_MAXRANK];
  for (int64_t i = 0; i < N; i++) {
    unravel(i, &n->shape, c);
    double v = (double)c[n->attr.axis];
    convert(out, n->dtype, i, &v, DT_F64, 0);
  }
  return 0;
}

static int k_random(Interp *it, int id, const Node *n, void *out) {
  int64_t N = shape_numel(&n->shape);
  uint64_t s = it->seed, st = it->step, str = n->attr.stream;
  uint64_t off = n->shape.rank > 0 ? it->shard * (uint64_t)N : 0; /* docs/distributed.md */
  int normal = n->op == OP_RANDN;
  if (n->dtype == DT_F32) {
    float *o = out;
    for (int64_t i = 0; i < N; i++)
      o[i] = normal ? gr_normal_f32(s, st, str, off + (uint64_t)i) : gr_uniform_f32(s, st, str, off + (uint64_t)i);
  } else if (n->dtype == DT_F64) {
    double *o = out;
    for (int64_t i = 0; i < N; i++)
      o[i] = normal ? gr_normal_f64(s, st, str, off + (uint64_t)i) : gr_uniform_f64(s, st, str, off + (uint64_t)i);
  } else {
    return fail(it, id, "random draws need a float dtype, not %s", dtype_name(n->dtype));
  }
  return 0;
}

static int k_cast(Interp *it, int id, const Node *n, void *out) {
  int64_t N = shape_numel(&n->shape);
  for (int64_t i = 0; i < N; i++) convert(out, n->dtype, i, IN(0), INNODE(0)->dtype, i);
  return 0;
}

static int k_where(Interp *it, int id, const Node *n, void *out) {
  int64_t N = shape_numel(&n->shape);
  size_t es = dtype_size(n->dtype);
  DType ct = INNODE(0)->dtype;
  for (int64_t i = 0; i < N; i++) {
    int take_a = dtype_is_float(ct) ? ld_dbl(IN(0), ct, i) != 0 : ld_int(IN(0), ct, i) != 0;
    memcpy((char *)out + (size_t)i * es, (const char *)IN(take_a ? 1 : 2) + (size_t)i * es, es);
  }
  return 0;
}

/* One step of a reduction in dtype t: out[o] = op(out[o], a[i]). */
static void reduce_step(Op op, DType t, void *out, int64_t o, const void *a, int64_t i) {
  if (t == DT_F32) {
    float *r = out, x = ((const float *)a)[i];
    r[o] = op == OP_SUM ? r[o] + x : op == OP_RMAX ? max_f32(r[o], x) : min_f32(r[o], x);
  } else if (t == DT_F64) {
    double *r = out, x = ((const double *)a)[i];
    r[o] = op == OP_SUM ? r[o] + x : op == OP_RMAX ? max_f64(r[o], x) : min_f64(r[o], x);
  } else {
    int64_t r = ld_int(out, t, o), x = ld_int(a, t, i);
    st_int(out, t, o, op == OP_SUM ? add_int(r, x) : op == OP_RMAX ? max_int(r, x) : min_int(r, x));
  }
}

/* The identity of a reduction in dtype t, stored into element o of out. */
static void reduce_init(Op op, DType t, void *out, int64_t o) {
  if (op == OP_SUM) return; /* gr_alloc zeroed it */
  if (dtype_is_float(t)) {
    double v = op == OP_RMAX ? -INFINITY : INFINITY;
    convert(out, t, o, &v, DT_F64, 0);
  } else {
    int64_t lo = t == DT_I32 ? INT32_MIN : INT64_MIN, hi = t == DT_I32 ? INT32_MAX : INT64_MAX;
    st_int(out, t, o, op == OP_RMAX ? lo : hi);
  }
}

/* Walks the input in flat order; each element is combined into the output cell with the
 * reduced coordinates set to 0, so every cell sees its elements in increasing index. */
static int k_reduce(Interp *it, int id, const Node *n, void *out) {
  const Shape *as = &INNODE(0)->shape;
  int64_t N = shape_numel(as), c[IR_MAXRANK];
  for (int64_t o = 0; o < shape_numel(&n->shape); o++) reduce_init(n->op, n->dtype, out, o);
  for (int64_t i = 0; i < N; i++) {
    unravel(i, as, c);
    for (int d = 0; d < as->rank; d++)
      if (n->attr.axes >> d & 1) c[d] = 0;
    reduce_step(n->op, n->dtype, out, ravel(c, &n->shape), IN(0), i);
  }
  return 0;
}

/* ---- data movement: byte copies, independent of dtype ------------------------------------ */
static void copy_elem(void *out, int64_t o, const void *in, int64_t i, size_t es) {
  memcpy((char *)out + (size_t)o * es, (const char *)in + (size_t)i * es, es);
}

static int k_broadcast(Interp *it, int id, const Node *n, void *out) {
  const Shape *as = &INNODE(0)->shape;
  int64_t N = shape_numel(&n->shape), c[IR_MAXRANK];
  for (int64_t o = 0; o < N; o++) {
    unravel(o, &n->shape, c);
    for (int d = 0; d < as->rank; d++)
      if (as->dims[d] == 1) c[d] = 0;
    copy_elem(out, o, IN(0), ravel(c, as), dtype_size(n->dtype));
  }
  return 0;
}

static int k_reshape(Interp *it, int id, const Node *n, void *out) {
  memcpy(out, IN(0), (size_t)shape_numel(&n->shape) * dtype_size(n->dtype));
  return 0;
}

static int k_transpose(Interp *it, int id, const Node *n, void *out) {
  const Shape *as = &INNODE(0)->shape;
  int64_t N = shape_numel(&n->shape), c[IR_MAXRANK], ci[IR_MAXRANK];
  for (int64_t o = 0; o < N; o++) {
    unravel(o, &n->shape, c);
    for (int d = 0; d < as->rank; d++) ci[n->attr.perm[d]] = c[d]; /* out dim d = in dim perm[d] */
    copy_elem(out, o, IN(0), ravel(ci, as), dtype_size(n->dtype));
  }
  return 0;
}

static int k_slice(Interp *it, int id, const Node *n, void *out) {
  const Shape *as = &INNODE(0)->shape;
  int64_t N = shape_numel(&n->shape), c[IR_MAXRANK];
  for (int64_t o = 0; o < N; o++) {
    unravel(o, &n->shape, c);
    c[n->attr.sl.axis] += n->attr.sl.start;
    copy_elem(out, o, IN(0), ravel(c, as), dtype_size(n->dtype));
  }
  return 0;
}

static int k_pad(Interp *it, int id, const Node *n, void *out) {
  const Shape *as = &INNODE(0)->shape;
  int ax = n->attr.sl.axis;
  int64_t N = shape_numel(&n->shape), c[IR_MAXRANK];
  for (int64_t o = 0; o < N; o++) { /* out is zeroed by gr_alloc: only copy the interior */
    unravel(o, &n->shape, c);
    c[ax] -= n->attr.sl.start;
    if (c[ax] >= 0 && c[ax] < as->dims[ax]) copy_elem(out, o, IN(0), ravel(c, as), dtype_size(n->dtype));
  }
  return 0;
}

static int k_concat(Interp *it, int id, const Node *n, void *out) {
  int ax = n->attr.sl.axis;
  int64_t na = INNODE(0)->shape.dims[ax], N = shape_numel(&n->shape), c[IR_MAXRANK];
  for (int64_t o = 0; o < N; o++) {
    unravel(o, &n->shape, c);
    int second = c[ax] >= na;
    if (second) c[ax] -= na;
    copy_elem(out, o, IN(second), ravel(c, &INNODE(second)->shape), dtype_size(n->dtype));
  }
  return 0;
}

/* Checks every index of a 1-D index tensor against [0, size). */
static int check_indices(Interp *it, int id, const Node *n, int64_t size) {
  const Node *ix = INNODE(1);
  for (int64_t j = 0; j < ix->shape.dims[0]; j++) {
    int64_t v = ld_int(IN(1), ix->dtype, j);
    if (v < 0 || v >= size)
      return fail(it, id, "index %lld at position %lld is out of range [0, %lld) on axis %d",
                  (long long)v, (long long)j, (long long)size, n->attr.sl.axis);
  }
  return 0;
}

static int k_gather(Interp *it, int id, const Node *n, void *out) {
  const Shape *xs = &INNODE(0)->shape;
  int ax = n->attr.sl.axis;
  if (check_indices(it, id, n, xs->dims[ax])) return -1;
  int64_t N = shape_numel(&n->shape), c[IR_MAXRANK];
  for (int64_t o = 0; o < N; o++) {
    unravel(o, &n->shape, c);
    c[ax] = ld_int(IN(1), INNODE(1)->dtype, c[ax]);
    copy_elem(out, o, IN(0), ravel(c, xs), dtype_size(n->dtype));
  }
  return 0;
}

static int k_scatter_add(Interp *it, int id, const Node *n, void *out) {
  const Shape *us = &INNODE(0)->shape;
  int ax = n->attr.sl.axis;
  if (check_indices(it, id, n, n->attr.sl.start)) return -1;
  int64_t N = shape_numel(us), c[IR_MAXRANK];
  for (int64_t i = 0; i < N; i++) {
    unravel(i, us, c);
    c[ax] = ld_int(IN(1), INNODE(1)->dtype, c[ax]);
    reduce_step(OP_SUM, n->dtype, out, ravel(c, &n->shape), IN(0), i);
  }
  return 0;
}

/* out[b, i, j] = sum_k A[b, i, k] * B[b, k, j], A = a or a^T (ta), B = b or b^T (tb). */
static int k_matmul(Interp *it, int id, const Node *n, void *out) {
  const Shape *as = &INNODE(0)->shape, *bs = &INNODE(1)->shape;
  int r = n->shape.rank, ta = n->attr.mm.ta, tb = n->attr.mm.tb;
  int64_t M = n->shape.dims[r - 2], Nn = n->shape.dims[r - 1];
  int64_t K = as->dims[ta ? r - 2 : r - 1];
  int64_t ar = as->dims[r - 2], ac = as->dims[r - 1], br = bs->dims[r - 2], bc = bs->dims[r - 1];
  int64_t batch = shape_numel(&n->shape) / (M * Nn > 0 ? M * Nn : 1);
  if (M * Nn == 0) return 0;
  for (int64_t bt = 0; bt < batch; bt++)
    for (int64_t i = 0; i < M; i++)
      for (int64_t j = 0; j < Nn; j++) {
        int64_t o = (bt * M + i) * Nn + j;
        float accf = 0;
        double accd = 0;
        for (int64_t k = 0; k < K; k++) {
          int64_t ai = bt * ar * ac + (ta ? k * ac + i : i * ac + k);
          int64_t bi = bt * br * bc + (tb ? j * bc + k : k * bc + j);
          if (n->dtype == DT_F32)
            accf += ((const float *)IN(0))[ai] * ((const float *)IN(1))[bi];
          else
            accd += ((const double *)IN(0))[ai] * ((const double *)IN(1))[bi];
        }
        if (n->dtype == DT_F32)
          ((float *)out)[o] = accf;
        else
          ((double *)out)[o] = accd;
      }
  return 0;
}

/* ---- extern: dlopen + dlsym + libffi ------------------------------------------------------ */
static ffi_type *ffi_of(DType t) { return t == DT_F32 ? &ffi_type_float : &ffi_type_double; }

static int k_extern(Interp *it, int id, const Node *n, void *out) {
  int idx = n->attr.ext.index;
  if (!it->p || idx < 0 || idx >= it->p->nexterns) return fail(it, id, "extern index %d out of range", idx);
  const Extern *e = &it->p->externs[idx];
  int na = n->attr.ext.nargs;
  if (na < 1 || na > 3 || na != e->nargs) return fail(it, id, "extern '%s': bad argument count", e->name);
  for (int k = 0; k < na; k++)
    if (!dtype_is_float(e->args[k])) return fail(it, id, "extern '%s': argument %d is not f32/f64", e->name, k);
  if (!dtype_is_float(e->ret)) return fail(it, id, "extern '%s': result is not f32/f64", e->name);
  void *h = dlopen(e->lib, RTLD_NOW | RTLD_LOCAL);
  if (!h)
    return fail(it, id, "extern '%s': cannot load library '%s': %s", e->name,
                e->lib ? e->lib : "(process)", dlerror());
  dlerror();
  void *sym = dlsym(h, e->name);
  if (!sym) {
    fail(it, id, "extern '%s': symbol not found in '%s'", e->name, e->lib ? e->lib : "(process)");
    dlclose(h);
    return -1;
  }
  ffi_cif cif;
  ffi_type *at[3];
  for (int k = 0; k < na; k++) at[k] = ffi_of(e->args[k]);
  if (ffi_prep_cif(&cif, FFI_DEFAULT_ABI, (unsigned)na, ffi_of(e->ret), at) != FFI_OK) {
    dlclose(h);
    return fail(it, id, "extern '%s': libffi cannot describe the call", e->name);
  }
  union { float f; double d; } argv[3], ret;
  void *argp[3];
  for (int k = 0; k < na; k++) argp[k] = &argv[k];
  int64_t N = shape_numel(&n->shape);
  for (int64_t i = 0; i < N; i++) {
    for (int k = 0; k < na; k++) convert(&argv[k], e->args[k], 0, IN(k), INNODE(k)->dtype, i);
    ffi_call(&cif, FFI_FN(sym), &ret, argp);
    convert(out, n->dtype, i, &ret, e->ret, 0);
  }
  dlclose(h);
  return 0;
}

/* ---- the table ----------------------------------------------------------------------------- */
typedef struct {
  Kernel run;
  UnaryFns un;   /* K_UNARY ops using k_unary */
  BinaryFns bin; /* K_BINARY ops */
} OpImpl;

#define UN(name, ifn) {k_unary, {name##_f32, name##_f64, ifn}, {0, 0, 0}}
#define BIN(name, ifn) {k_binary, {0, 0, 0}, {name##_f32, name##_f64, ifn}}
#define KERNEL(fn) {fn, {0, 0, 0}, {0, 0, 0}}

static const OpImpl impl[OP_COUNT] = {
    [OP_CONST] = KERNEL(k_const),
    [OP_INPUT] = KERNEL(k_input),
    [OP_PARAM] = KERNEL(k_param),
    [OP_IOTA] = KERNEL(k_iota),
    [OP_RANDN] = KERNEL(k_random),
    [OP_RANDU] = KERNEL(k_random),
    [OP_NEG] = UN(neg, neg_int),
    [OP_EXP] = UN(exp, NULL),
    [OP_LOG] = UN(log, NULL),
    [OP_LOG1P] = UN(log1p, NULL),
    [OP_SQRT] = UN(sqrt, NULL),
    [OP_RSQRT] = UN(rsqrt, NULL),
    [OP_ABS] = UN(abs, abs_int),
    [OP_SIGN] = UN(sign, sign_int),
    [OP_FLOOR] = UN(floor, ident_int),
    [OP_SIN] = UN(sin, NULL),
    [OP_COS] = UN(cos, NULL),
    [OP_TAN] = UN(tan, NULL),
    [OP_ATAN] = UN(atan, NULL),
    [OP_TANH] = UN(tanh, NULL),
    [OP_SIGMOID] = UN(sigmoid, NULL),
    [OP_SILU] = UN(silu, NULL),
    [OP_RELU] = UN(relu, NULL),
    [OP_SOFTPLUS] = UN(softplus, NULL),
    [OP_CAST] = KERNEL(k_cast),
    [OP_STOPGRAD] = UN(ident, ident_int),
    [OP_ADD] = BIN(add, add_int),
    [OP_SUB] = BIN(sub, sub_int),
    [OP_MUL] = BIN(mul, mul_int),
    [OP_DIV] = BIN(div, div_int),
    [OP_POW] = BIN(pow, NULL),
    [OP_MAX] = BIN(max, max_int),
    [OP_MIN] = BIN(min, min_int),
    [OP_SAFEMUL] = BIN(safemul, NULL),
    [OP_LT] = BIN(lt, lt_int),
    [OP_LE] = BIN(le, le_int),
    [OP_GT] = BIN(gt, gt_int),
    [OP_GE] = BIN(ge, ge_int),
    [OP_EQ] = BIN(eq, eq_int),
    [OP_NE] = BIN(ne, ne_int),
    [OP_WHERE] = KERNEL(k_where),
    [OP_SUM] = KERNEL(k_reduce),
    [OP_RMAX] = KERNEL(k_reduce),
    [OP_RMIN] = KERNEL(k_reduce),
    [OP_BROADCAST] = KERNEL(k_broadcast),
    [OP_RESHAPE] = KERNEL(k_reshape),
    [OP_TRANSPOSE] = KERNEL(k_transpose),
    [OP_SLICE] = KERNEL(k_slice),
    [OP_PAD] = KERNEL(k_pad),
    [OP_CONCAT] = KERNEL(k_concat),
    [OP_GATHER] = KERNEL(k_gather),
    [OP_SCATTERADD] = KERNEL(k_scatter_add),
    [OP_EXTERN] = KERNEL(k_extern),
    [OP_MATMUL] = KERNEL(k_matmul),
};

static int k_unary(Interp *it, int id, const Node *n, void *out) {
  const UnaryFns *f = &impl[n->op].un;
  int64_t N = shape_numel(&n->shape);
  const void *x = IN(0);
  switch (n->dtype) {
  case DT_F32:
    for (int64_t i = 0; i < N; i++) ((float *)out)[i] = f->f32(((const float *)x)[i]);
    return 0;
  case DT_F64:
    for (int64_t i = 0; i < N; i++) ((double *)out)[i] = f->f64(((const double *)x)[i]);
    return 0;
  default:
    if (!f->i) return fail(it, id, "not defined on %s", dtype_name(n->dtype));
    for (int64_t i = 0; i < N; i++) st_int(out, n->dtype, i, f->i(ld_int(x, n->dtype, i)));
    return 0;
  }
}

static int k_binary(Interp *it, int id, const Node *n, void *out) {
  const BinaryFns *f = &impl[n->op].bin;
  int64_t N = shape_numel(&n->shape);
  const void *a = IN(0), *b = IN(1);
  switch (n->dtype) {
  case DT_F32:
    for (int64_t i = 0; i < N; i++)
      ((float *)out)[i] = f->f32(((const float *)a)[i], ((const float *)b)[i]);
    return 0;
  case DT_F64:
    for (int64_t i = 0; i < N; i++)
      ((double *)out)[i] = f->f64(((const double *)a)[i], ((const double *)b)[i]);
    return 0;
  default:
    if (!f->i) return fail(it, id, "not defined on %s", dtype_name(n->dtype));
    for (int64_t i = 0; i < N; i++)
      st_int(out, n->dtype, i, f->i(ld_int(a, n->dtype, i), ld_int(b, n->dtype, i)));
    return 0;
  }
}

int interp_has_kernel(Op op) { return op < OP_COUNT && impl[op].run != NULL; }

/* ---- the driver ------------------------------------------------------------------------------ */
/* needed[i]: node i feeds an output. last[i]: the last node reading i (outputs: nnodes). */
static void plan(const Graph *g, char *needed, int *last) {
  for (int i = 0; i < g->noutputs; i++) {
    needed[g->outputs[i].val] = 1;
    last[g->outputs[i].val] = g->nnodes;
  }
  for (int i = g->nnodes - 1; i >= 0; i--) {
    if (!needed[i]) continue;
    const Node *n = &g->nodes[i];
    for (int k = 0; k < ir_nin(n); k++) {
      needed[n->in[k]] = 1;
      if (last[n->in[k]] < i) last[n->in[k]] = i;
    }
  }
}

static int eval_node(Interp *it, int id) {
  const Node *n = &it->g->nodes[id];
  if (n->op >= OP_COUNT || !impl[n->op].run) return fail(it, id, "no interpreter kernel");
  int64_t N = shape_numel(&n->shape);
  size_t es = dtype_size(n->dtype);
  if (N < 0 || (N > 0 && (uint64_t)N > SIZE_MAX / es)) return fail(it, id, "tensor too large");
  void *out = gr_alloc((size_t)N * es);
  if (!out) return fail(it, id, "out of memory (%lld elements)", (long long)N);
  if (impl[n->op].run(it, id, n, out)) {
    gr_free(out);
    return -1;
  }
  it->buf[id] = out;
  return 0;
}

static void to_tensor(const Node *n, void *data, GrTensor *t) {
  memset(t, 0, sizeof *t);
  t->dtype = (int32_t)n->dtype;
  t->rank = n->shape.rank;
  for (int d = 0; d < n->shape.rank; d++) t->dims[d] = n->shape.dims[d];
  t->data = data;
}

/* Hands the output buffers to the caller; a node returned twice is copied. */
static int collect_outputs(Interp *it, GrTensor *outputs) {
  const Graph *g = it->g;
  for (int j = 0; j < g->noutputs; j++) {
    int v = g->outputs[j].val;
    const Node *n = &g->nodes[v];
    void *data = it->buf[v];
    for (int k = 0; k < j; k++)
      if (g->outputs[k].val == v) {
        size_t bytes = (size_t)shape_numel(&n->shape) * dtype_size(n->dtype);
        if (!(data = gr_alloc(bytes))) return fail(it, v, "out of memory");
        memcpy(data, outputs[k].data, bytes);
        break;
      }
    to_tensor(n, data, &outputs[j]);
    if (data == it->buf[v]) it->buf[v] = NULL;
  }
  return 0;
}

int interp_run(const Graph *g, const Program *p, const GrTensor *inputs, const GrTensor *params,
               GrTensor *outputs, uint64_t seed, uint64_t step, char *err, size_t nerr) {
  return interp_run_shard(g, p, inputs, params, outputs, seed, step, 0, err, nerr);
}

int interp_run_shard(const Graph *g, const Program *p, const GrTensor *inputs, const GrTensor *params,
                     GrTensor *outputs, uint64_t seed, uint64_t step, uint64_t shard, char *err,
                     size_t nerr) {
  if (err && nerr) err[0] = 0;
  Interp it = {g, p, inputs, params, seed, step, shard, NULL, err, nerr};
  int n = g->nnodes, rc = 0;
  for (int j = 0; j < g->noutputs; j++) memset(&outputs[j], 0, sizeof outputs[j]);
  it.buf = calloc((size_t)n + 1, sizeof *it.buf);
  char *needed = calloc((size_t)n + 1, 1);
  int *last = calloc((size_t)n + 1, sizeof *last);
  if (!it.buf || !needed || !last) {
    if (err && nerr) snprintf(err, nerr, "interp: out of memory");
    rc = -1;
    goto done;
  }
  for (int j = 0; j < g->noutputs; j++)
    if (g->outputs[j].val < 0 || g->outputs[j].val >= n) {
      if (err && nerr) snprintf(err, nerr, "interp: output %d refers to no node", j);
      rc = -1;
      goto done;
    }
  char vbuf[256]; /* a malformed graph is reported, never run into a crash */
  if (ir_verify(g, p, vbuf, sizeof vbuf)) {
    if (err && nerr) snprintf(err, nerr, "interp: invalid graph: %s", vbuf);
    rc = -1;
    goto done;
  }
  for (int i = 0; i < n; i++) last[i] = -1;
  plan(g, needed, last);
  for (int i = 0; i < n && rc == 0; i++) {
    if (!needed[i]) continue;
    rc = eval_node(&it, i);
    const Node *nd = &g->nodes[i];
    for (int k = 0; k < ir_nin(nd) && rc == 0; k++) /* free inputs whose last reader is i */
      if (last[nd->in[k]] == i && it.buf[nd->in[k]]) {
        gr_free(it.buf[nd->in[k]]);
        it.buf[nd->in[k]] = NULL;
      }
  }
  if (rc == 0) rc = collect_outputs(&it, outputs);
  if (rc != 0)
    for (int j = 0; j < g->noutputs; j++) gr_tensor_free(&outputs[j]);
done:
  if (it.buf)
    for (int i = 0; i < n; i++) gr_free(it.buf[i]);
  free(it.buf);
  free(needed);
  free(last);
  return rc;
}

int interp_init_params(const Program *p, uint64_t seed, GrTensor *params) {
  for (int i = 0; i < p->nparams; i++) memset(&params[i], 0, sizeof params[i]);
  for (int i = 0; i < p->nparams; i++) {
    const Param *pr = &p->params[i];
    GrTensorInfo info;
    memset(&info, 0, sizeof info);
    info.name = pr->name;
    info.dtype = (int32_t)pr->dtype;
    info.rank = pr->shape.rank;
    for (int d = 0; d < pr->shape.rank; d++) info.dims[d] = pr->shape.dims[d];
    info.init = (int32_t)pr->init.kind;
    info.init_a = pr->init.a;
    info.init_b = pr->init.b;
    info.fan_in = pr->init.fan_in;
    info.fan_out = pr->init.fan_out;
    void *buf = gr_alloc((size_t)gr_numel(&info) * dtype_size(pr->dtype));
    if (!buf) {
      for (int k = 0; k < i; k++) gr_tensor_free(&params[k]);
      return -1;
    }
    gr_init_param(&info, i, seed, buf);
    to_tensor(&(Node){.dtype = pr->dtype, .shape = pr->shape}, buf, &params[i]);
  }
  return 0;
}
