/* test_interp.c: the reference interpreter against independent plain-C computations.
 *
 * The interpreter is the oracle for codegen, so it gets its own oracle: for every op of
 * ops.def a case below builds small graphs with the ir_* builders (several shapes, odd
 * sizes, size-1 dims), runs interp_run in f32 and f64, and compares with values computed
 * here by direct loops in double (f64: 1e-12 relative, f32: 1e-6). Where f32 rounding
 * would blur the check (sums, matmul), inputs are multiples of 1/8 so every f32 result is
 * exact. `op_table_covered` walks the whole op table and fails for any op that lacks an
 * interpreter kernel or a case here, so a new op cannot land untested.
 */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "interp.h"
#include "philox.h"
#include "testutil.h"

#define L SRCLOC_NONE

static double tol(DType dt) { return dt == DT_F32 ? 1e-6 : 1e-12; }

/* ---- a graph with inputs, run once ------------------------------------------------------ */
typedef struct {
  TuGraph t;
  GrTensor in[4];
  int nin;
  GrTensor out[2];
  char err[512];
} Case;

static void case_init(Case *c) {
  memset(c, 0, sizeof *c);
  tu_graph_init(&c->t);
}

/* Adds an input with values uniform in [lo, hi); q > 0 rounds them to multiples of q. */
static ValId case_input(Case *c, DType dt, Shape s, double lo, double hi, double q) {
  char name[8];
  snprintf(name, sizeof name, "x%d", c->nin);
  ValId v = tu_input(&c->t, name, dt, s);
  GrTensor *t = &c->in[c->nin];
  *t = tu_tensor(dt, s);
  tu_fill_uniform(t, lo, hi, 1000 + (uint64_t)c->nin * 77 + (uint64_t)s.rank);
  if (q > 0)
    for (int64_t i = 0; i < tu_numel(t); i++) tu_set(t, i, round(tu_get(t, i) / q) * q);
  c->nin++;
  return v;
}

static int case_run_seeded(Case *c, ValId out, uint64_t seed, uint64_t step) {
  ck_assert_msg(out != IR_ERR, "builder failed: %s", tu_last_diag(&c->t));
  graph_add_output(c->t.g, "out", out);
  return interp_run(c->t.g, &c->t.prog, c->in, NULL, c->out, seed, step, c->err, sizeof c->err);
}

static void case_run(Case *c, ValId out) {
  int rc = case_run_seeded(c, out, 1, 0);
  ck_assert_msg(rc == 0, "interp_run failed: %s", c->err);
  ck_assert_int_eq(c->out[0].dtype, c->t.g->nodes[out].dtype);
  ck_assert(tu_shape_is(&c->out[0], c->t.g->nodes[out].shape));
}

static void case_free(Case *c) {
  for (int i = 0; i < c->nin; i++) gr_tensor_free(&c->in[i]);
  for (int i = 0; i < 2; i++) gr_tensor_free(&c->out[i]);
  tu_graph_free(&c->t);
}

static double *alloc_want(int64_t n) { return calloc((size_t)(n ? n : 1), sizeof(double)); }

/* Checks c->out[0] against want with the dtype's tolerance. */
static void expect_close(Case *c, const double *want, DType dt, const char *what) {
  char msg[256];
  ck_assert_msg(tu_close(&c->out[0], want, tol(dt), tol(dt), msg, sizeof msg), "%s (%s): %s", what,
                dtype_name(dt), msg);
}

static void unravel(int64_t i, Shape s, int64_t *c) {
  for (int d = s.rank - 1; d >= 0; d--) {
    c[d] = i % s.dims[d];
    i /= s.dims[d];
  }
}
static int64_t ravel(const int64_t *c, Shape s) {
  int64_t i = 0;
  for (int d = 0; d < s.rank; d++) i = i * s.dims[d] + c[d];
  return i;
}

static const Shape ew_shapes[] = {{0, {0}}, {1, {7}}, {2, {3, 5}}, {2, {1, 4}}, {3, {2, 1, 3}}};
#define NEW_SHAPES ((int)(sizeof ew_shapes / sizeof ew_shapes[0]))

/* ---- independent scalar references --------------------------------------------------------- */
static double ref_unary(Op op, double x) {
  switch (op) {
  case OP_NEG: return -x;
  case OP_EXP: return exp(x);
  case OP_LOG: return log(x);
  case OP_LOG1P: return log1p(x);
  case OP_SQRT: return sqrt(x);
  case OP_RSQRT: return 1.0 / sqrt(x);
  case OP_ABS: return fabs(x);
  case OP_SIGN: return x > 0 ? 1 : x < 0 ? -1 : 0;
  case OP_FLOOR: return floor(x);
  case OP_SIN: return sin(x);
  case OP_COS: return cos(x);
  case OP_TAN: return tan(x);
  case OP_ATAN: return atan(x);
  case OP_TANH: return tanh(x);
  case OP_SIGMOID: return 1.0 / (1.0 + exp(-x));
  case OP_SILU: return x / (1.0 + exp(-x));
  case OP_RELU: return x > 0 ? x : 0;
  case OP_SOFTPLUS: return log(1.0 + exp(x));
  case OP_STOPGRAD: return x;
  default: ck_abort_msg("no reference for %s", op_name(op)); return 0;
  }
}

static double ref_binary(Op op, double a, double b) {
  switch (op) {
  case OP_ADD: return a + b;
  case OP_SUB: return a - b;
  case OP_MUL: return a * b;
  case OP_DIV: return a / b;
  case OP_POW: return pow(a, b);
  case OP_MAX: return a > b ? a : b;
  case OP_MIN: return a < b ? a : b;
  case OP_SAFEMUL: return a * b;
  case OP_LT: return a < b;
  case OP_LE: return a <= b;
  case OP_GT: return a > b;
  case OP_GE: return a >= b;
  case OP_EQ: return a == b;
  case OP_NE: return a != b;
  default: ck_abort_msg("no reference for %s", op_name(op)); return 0;
  }
}

/* ---- elementwise ------------------------------------------------------------------------------- */
static void t_unary(Op op, DType dt) {
  int pos = op == OP_LOG || op == OP_SQRT || op == OP_RSQRT || op == OP_LOG1P;
  for (int k = 0; k < NEW_SHAPES; k++) {
    Case c;
    case_init(&c);
    ValId x = case_input(&c, dt, ew_shapes[k], pos ? 0.1 : -3, pos ? 3 : 3, 0);
    if (op == OP_SIGN) tu_set(&c.in[0], 0, 0.0); /* sign(0) = 0 */
    case_run(&c, ir_unary(c.t.g, op, x, L));
    int64_t n = tu_numel(&c.in[0]);
    double *want = alloc_want(n);
    for (int64_t i = 0; i < n; i++) want[i] = ref_unary(op, tu_get(&c.in[0], i));
    expect_close(&c, want, dt, op_name(op));
    free(want);
    case_free(&c);
  }
}

static void t_binary(Op op, DType dt) {
  int cmp = (op_info[op].flags & F_COMPARE) || op == OP_MAX || op == OP_MIN;
  for (int k = 0; k < NEW_SHAPES; k++) {
    Case c;
    case_init(&c);
    /* comparisons: small integers, so ties occur; pow: positive base; div: b away from 0 */
    ValId a = case_input(&c, dt, ew_shapes[k], op == OP_POW ? 0.1 : -2.5, 2.5, cmp ? 1 : 0);
    ValId b = case_input(&c, dt, ew_shapes[k], op == OP_DIV ? 0.5 : -2.5, 2.5, cmp ? 1 : 0);
    if (op == OP_SAFEMUL) tu_set(&c.in[0], 0, 0.0);
    case_run(&c, ir_binary(c.t.g, op, a, b, L));
    int64_t n = tu_numel(&c.in[0]);
    double *want = alloc_want(n);
    for (int64_t i = 0; i < n; i++) want[i] = ref_binary(op, tu_get(&c.in[0], i), tu_get(&c.in[1], i));
    expect_close(&c, want, dt, op_name(op));
    free(want);
    case_free(&c);
  }
}

/* Integer versions of the ops that make sense on integers, including wrap-around. */
static void t_int_ops(DType it) {
  static const double a_vals[] = {7, -7, 0, 5, -2147483648.0, 2147483647, 3, -1};
  static const double b_vals[] = {2, 2, 3, 0, -1, 1, 3, -1};
  Shape s = TU_SHAPE(8);
  static const Op ops[] = {OP_ADD, OP_SUB, OP_MUL, OP_DIV, OP_MAX, OP_MIN, OP_LT, OP_LE,
                           OP_GT,  OP_GE,  OP_EQ,  OP_NE,  OP_NEG, OP_ABS, OP_SIGN, OP_STOPGRAD};
  for (size_t k = 0; k < sizeof ops / sizeof ops[0]; k++) {
    Op op = ops[k];
    Case c;
    case_init(&c);
    ValId a = tu_input(&c.t, "a", it, s), b = tu_input(&c.t, "b", it, s);
    c.in[0] = tu_tensor_vals(it, s, a_vals);
    c.in[1] = tu_tensor_vals(it, s, b_vals);
    c.nin = 2;
    int unary = op_info[op].kind == K_UNARY;
    case_run(&c, unary ? ir_unary(c.t.g, op, a, L) : ir_binary(c.t.g, op, a, b, L));
    for (int64_t i = 0; i < 8; i++) {
      int64_t x = (int64_t)a_vals[i], y = (int64_t)b_vals[i], w;
      switch (op) {
      case OP_ADD: w = x + y; break;
      case OP_SUB: w = x - y; break;
      case OP_MUL: w = x * y; break;
      case OP_DIV: w = y == 0 ? 0 : x / y; break;
      case OP_NEG: w = -x; break;
      case OP_ABS: w = x < 0 ? -x : x; break;
      default: w = (int64_t)(unary ? ref_unary(op, (double)x) : ref_binary(op, (double)x, (double)y));
      }
      if (it == DT_I32) w = (int32_t)(uint32_t)(uint64_t)w; /* wrap at 32 bits */
      ck_assert_msg(tu_get(&c.out[0], i) == (double)w, "%s %s element %lld: got %.17g want %lld",
                    op_name(op), dtype_name(it), (long long)i, tu_get(&c.out[0], i), (long long)w);
    }
    case_free(&c);
  }
}

START_TEST(integer_ops) {
  t_int_ops(DT_I32);
  t_int_ops(DT_I64);
}
END_TEST

/* The semantics table's corner cases: NaN, infinities, zeros, huge arguments. */
START_TEST(special_values) {
  for (int d = 0; d < 2; d++) {
    DType dt = d ? DT_F64 : DT_F32;
    const double nan = NAN, inf = INFINITY;
    struct { Op op; double a, b, want; } cs[] = {
        {OP_MAX, nan, 1, nan},     {OP_MAX, 1, nan, nan},     {OP_MIN, nan, 1, nan},
        {OP_MIN, 1, nan, nan},     {OP_MAX, -1, 2, 2},        {OP_SAFEMUL, 0, inf, 0},
        {OP_SAFEMUL, inf, 0, 0},   {OP_SAFEMUL, nan, 0, 0},   {OP_SAFEMUL, 2, 3, 6},
        {OP_SIGN, 0, 0, 0},        {OP_SIGN, -0.0, 0, 0},     {OP_SIGN, nan, 0, nan},
        {OP_RELU, 0, 0, 0},        {OP_RELU, -1, 0, 0},       {OP_SIGMOID, -800, 0, 0},
        {OP_SIGMOID, 800, 0, 1},   {OP_SIGMOID, 0, 0, 0.5},   {OP_SILU, -800, 0, 0},
        {OP_SOFTPLUS, 800, 0, 800}, {OP_SOFTPLUS, -800, 0, 0}, {OP_SOFTPLUS, 0, 0, log(2.0)},
        {OP_RSQRT, 4, 0, 0.5},     {OP_LT, 1, 1, 0},          {OP_LE, 1, 1, 1},
        {OP_NE, nan, nan, 1},      {OP_EQ, nan, nan, 0},
    };
    for (size_t k = 0; k < sizeof cs / sizeof cs[0]; k++) {
      Case c;
      case_init(&c);
      Shape s = TU_SHAPE0;
      ValId a = tu_input(&c.t, "a", dt, s), b = tu_input(&c.t, "b", dt, s);
      c.in[0] = tu_tensor_vals(dt, s, &cs[k].a);
      c.in[1] = tu_tensor_vals(dt, s, &cs[k].b);
      c.nin = 2;
      Op op = cs[k].op;
      case_run(&c, op_info[op].kind == K_UNARY ? ir_unary(c.t.g, op, a, L) : ir_binary(c.t.g, op, a, b, L));
      double got = tu_get(&c.out[0], 0), w = cs[k].want;
      if (op == OP_SIGN && cs[k].a == 0) ck_assert(!!signbit(got) == !!signbit(cs[k].a)); /* +-0 kept */
      ck_assert_msg(isnan(w) ? isnan(got) : fabs(got - w) <= tol(dt) * (1 + fabs(w)),
                    "%s(%g, %g) %s: got %.17g want %.17g", op_name(op), cs[k].a, cs[k].b, dtype_name(dt), got, w);
      case_free(&c);
    }
  }
}
END_TEST

static void t_where(Op op, DType dt) {
  for (int k = 0; k < NEW_SHAPES; k++)
    for (int ct = 0; ct < 2; ct++) { /* condition in the branch dtype, then in i32 */
      Case c;
      case_init(&c);
      ValId cond = case_input(&c, ct ? DT_I32 : dt, ew_shapes[k], -1.5, 1.5, 1);
      ValId a = case_input(&c, dt, ew_shapes[k], -3, 3, 0);
      ValId b = case_input(&c, dt, ew_shapes[k], -3, 3, 0);
      if (!ct && dt == DT_F64 && tu_numel(&c.in[0]) > 1) tu_set(&c.in[0], 1, NAN); /* NaN != 0 */
      case_run(&c, ir_where(c.t.g, cond, a, b, L));
      int64_t n = tu_numel(&c.in[0]);
      double *want = alloc_want(n);
      for (int64_t i = 0; i < n; i++) want[i] = tu_get(&c.in[0], i) != 0 ? tu_get(&c.in[1], i) : tu_get(&c.in[2], i);
      expect_close(&c, want, dt, "where");
      free(want);
      case_free(&c);
    }
}

/* ---- leaves ---------------------------------------------------------------------------------- */
static void t_const(Op op, DType dt) {
  for (int k = 0; k < NEW_SHAPES; k++) {
    Case c;
    case_init(&c);
    case_run(&c, ir_const(c.t.g, -2.75, dt, &ew_shapes[k], L));
    int64_t n = shape_numel(&ew_shapes[k]);
    for (int64_t i = 0; i < n; i++) ck_assert(tu_get(&c.out[0], i) == -2.75);
    case_free(&c);
  }
  Case c; /* integer constants truncate toward zero */
  case_init(&c);
  Shape s = TU_SHAPE(3);
  case_run(&c, ir_const(c.t.g, -2.75, dt == DT_F32 ? DT_I32 : DT_I64, &s, L));
  for (int i = 0; i < 3; i++) ck_assert(tu_get(&c.out[0], i) == -2);
  case_free(&c);
}

static void t_input(Op op, DType dt) {
  for (int k = 0; k < NEW_SHAPES; k++) {
    Case c;
    case_init(&c);
    case_run(&c, case_input(&c, dt, ew_shapes[k], -1, 1, 0));
    ck_assert(memcmp(c.out[0].data, c.in[0].data, (size_t)tu_numel(&c.in[0]) * dtype_size(dt)) == 0);
    case_free(&c);
  }
  /* a mismatched input is an error naming the input and both shapes; nothing is returned */
  Case c;
  case_init(&c);
  ValId x = tu_input(&c.t, "images", dt, TU_SHAPE(2, 4));
  c.in[0] = tu_tensor(DT_F64, TU_SHAPE(2, 3));
  c.nin = 1;
  ck_assert_int_eq(case_run_seeded(&c, ir_unary(c.t.g, OP_NEG, x, L), 1, 0), -1);
  ck_assert_msg(strstr(c.err, "images") && strstr(c.err, "[2, 4]") && strstr(c.err, "f64[2, 3]") &&
                    strstr(c.err, dtype_name(dt)),
                "error: %s", c.err);
  ck_assert_ptr_null(c.out[0].data);
  case_free(&c);
}

static void t_param(Op op, DType dt) {
  Case c;
  case_init(&c);
  Shape s = TU_SHAPE(3, 2);
  ValId w = tu_param(&c.t, "net.w", dt, s, INIT_ZEROS, 0, 0);
  graph_add_output(c.t.g, "out", ir_unary(c.t.g, OP_NEG, w, L));
  GrTensor p = tu_tensor(dt, s);
  tu_fill_uniform(&p, -1, 1, 5);
  ck_assert_msg(interp_run(c.t.g, &c.t.prog, NULL, &p, c.out, 0, 0, c.err, sizeof c.err) == 0, "%s", c.err);
  for (int64_t i = 0; i < 6; i++) ck_assert(tu_get(&c.out[0], i) == -tu_get(&p, i));
  gr_tensor_free(&c.out[0]);
  gr_tensor_free(&p);
  p = tu_tensor(dt, TU_SHAPE(2, 3)); /* wrong shape */
  ck_assert_int_eq(interp_run(c.t.g, &c.t.prog, NULL, &p, c.out, 0, 0, c.err, sizeof c.err), -1);
  ck_assert_msg(strstr(c.err, "net.w") && strstr(c.err, "[3, 2]") && strstr(c.err, "[2, 3]"), "%s", c.err);
  gr_tensor_free(&p);
  case_free(&c);
}

static void t_iota(Op op, DType dt) {
  Shape s = TU_SHAPE(3, 1, 4);
  DType dts[2] = {dt, dt == DT_F32 ? DT_I32 : DT_I64};
  for (int j = 0; j < 2; j++)
    for (int ax = 0; ax < 3; ax++) {
      Case c;
      case_init(&c);
      case_run(&c, ir_iota(c.t.g, dts[j], &s, ax, L));
      int64_t co[3];
      for (int64_t i = 0; i < 12; i++) {
        unravel(i, s, co);
        ck_assert(tu_get(&c.out[0], i) == (double)co[ax]);
      }
      case_free(&c);
    }
}

/* Element i of a draw is the documented Philox function of (seed, step, stream, i);
 * draws are reproducible and differ between streams, steps and seeds. */
static void t_random(Op op, DType dt) {
  Shape s = TU_SHAPE(3, 5);
  Case c;
  case_init(&c);
  ValId r1 = ir_random(c.t.g, op, dt, &s, L), r2 = ir_random(c.t.g, op, dt, &s, L);
  uint64_t st1 = c.t.g->nodes[r1].attr.stream, st2 = c.t.g->nodes[r2].attr.stream;
  ck_assert(st1 != st2);
  graph_add_output(c.t.g, "a", r1);
  graph_add_output(c.t.g, "b", r2);
  GrTensor again[2], other[2];
  ck_assert(interp_run(c.t.g, &c.t.prog, NULL, NULL, c.out, 42, 3, c.err, sizeof c.err) == 0);
  ck_assert(interp_run(c.t.g, &c.t.prog, NULL, NULL, again, 42, 3, c.err, sizeof c.err) == 0);
  ck_assert(interp_run(c.t.g, &c.t.prog, NULL, NULL, other, 42, 4, c.err, sizeof c.err) == 0);
  int same_stream = 0, same_step = 0;
  for (int64_t i = 0; i < 15; i++) {
    double want = op == OP_RANDN ? (dt == DT_F32 ? gr_normal_f32(42, 3, st1, (uint64_t)i) : gr_normal_f64(42, 3, st1, (uint64_t)i))
                                 : (dt == DT_F32 ? gr_uniform_f32(42, 3, st1, (uint64_t)i) : gr_uniform_f64(42, 3, st1, (uint64_t)i));
    ck_assert(tu_get(&c.out[0], i) == want);
    ck_assert(tu_get(&again[0], i) == want && tu_get(&again[1], i) == tu_get(&c.out[1], i));
    same_stream += tu_get(&c.out[0], i) == tu_get(&c.out[1], i);
    same_step += tu_get(&c.out[0], i) == tu_get(&other[0], i);
    if (op == OP_RANDU) ck_assert(tu_get(&c.out[0], i) >= 0 && tu_get(&c.out[0], i) < 1);
  }
  ck_assert_int_eq(same_stream, 0);
  ck_assert_int_eq(same_step, 0);
  for (int j = 0; j < 2; j++) gr_tensor_free(&again[j]), gr_tensor_free(&other[j]);
  case_free(&c);
}

/* ---- casts ---------------------------------------------------------------------------------- */
static void t_cast(Op op, DType dt) {
  static const double v[] = {-2.75, -0.5, 0.5, 2.75, NAN, 1e20, -1e20, 3e9, 0.1, -3e9};
  Shape s = TU_SHAPE(10);
  DType other = dt == DT_F32 ? DT_F64 : DT_F32;
  DType tos[3] = {other, DT_I32, DT_I64};
  for (int j = 0; j < 3; j++) {
    Case c;
    case_init(&c);
    ValId x = tu_input(&c.t, "x", dt, s);
    c.in[0] = tu_tensor_vals(dt, s, v);
    c.nin = 1;
    case_run(&c, ir_cast(c.t.g, x, tos[j], L));
    for (int64_t i = 0; i < 10; i++) {
      double in = tu_get(&c.in[0], i), want;
      if (tos[j] == DT_F32)
        want = (float)in;
      else if (tos[j] == DT_F64)
        want = in;
      else {
        double lim = tos[j] == DT_I32 ? 2147483648.0 : 9223372036854775808.0;
        want = isnan(in) ? 0 : in >= lim ? (tos[j] == DT_I32 ? lim - 1 : (double)INT64_MAX) : in <= -lim ? -lim : trunc(in);
      }
      ck_assert_msg(isnan(want) ? isnan(tu_get(&c.out[0], i)) : tu_get(&c.out[0], i) == want,
                    "cast %s->%s of %.17g: got %.17g want %.17g", dtype_name(dt), dtype_name(tos[j]), in,
                    tu_get(&c.out[0], i), want);
    }
    case_free(&c);
  }
  /* integer -> integer wraps, integer -> float rounds */
  Case c;
  case_init(&c);
  Shape s3 = TU_SHAPE(3);
  ValId x = tu_input(&c.t, "x", DT_I64, s3);
  c.in[0] = tu_tensor(DT_I64, s3);
  c.nin = 1;
  int64_t iv[3] = {((int64_t)1 << 32) + 5, (int64_t)1 << 31, -((int64_t)1 << 40) - 1};
  memcpy(c.in[0].data, iv, sizeof iv);
  case_run(&c, ir_cast(c.t.g, x, DT_I32, L));
  ck_assert(tu_get(&c.out[0], 0) == 5 && tu_get(&c.out[0], 1) == -2147483648.0 && tu_get(&c.out[0], 2) == -1);
  case_free(&c);
  case_init(&c);
  x = tu_input(&c.t, "x", DT_I64, s3);
  c.in[0] = tu_tensor(DT_I64, s3);
  c.nin = 1;
  int64_t big[3] = {((int64_t)1 << 53) + 1, -7, 123456789};
  memcpy(c.in[0].data, big, sizeof big);
  case_run(&c, ir_cast(c.t.g, x, dt, L));
  for (int i = 0; i < 3; i++)
    ck_assert(tu_get(&c.out[0], i) == (dt == DT_F32 ? (double)(float)big[i] : (double)big[i]));
  case_free(&c);
}

/* ---- reductions ------------------------------------------------------------------------------- */
static void t_reduce(Op op, DType dt) {
  static const Shape shapes[] = {{1, {5}}, {2, {1, 4}}, {3, {2, 3, 4}}, {3, {3, 1, 2}}};
  for (size_t k = 0; k < sizeof shapes / sizeof shapes[0]; k++) {
    Shape s = shapes[k];
    for (uint32_t axes = 1; axes < (1u << s.rank); axes++) {
      Case c;
      case_init(&c);
      ValId x = case_input(&c, dt, s, -4, 4, 0.125); /* multiples of 1/8: exact f32 sums */
      case_run(&c, ir_reduce(c.t.g, op, x, axes, L));
      Shape os = c.t.g->nodes[c.t.g->outputs[0].val].shape;
      for (int d = 0; d < s.rank; d++) ck_assert(os.dims[d] == (axes >> d & 1 ? 1 : s.dims[d]));
      int64_t no = shape_numel(&os), co[IR_MAXRANK];
      double *want = alloc_want(no);
      for (int64_t o = 0; o < no; o++) {
        int first = 1;
        for (int64_t i = 0; i < shape_numel(&s); i++) { /* every input cell mapping to o */
          unravel(i, s, co);
          for (int d = 0; d < s.rank; d++)
            if (axes >> d & 1) co[d] = 0;
          if (ravel(co, os) != o) continue;
          double x_i = tu_get(&c.in[0], i);
          want[o] = first ? (op == OP_SUM ? x_i : x_i)
                          : op == OP_SUM ? want[o] + x_i : op == OP_RMAX ? fmax(want[o], x_i) : fmin(want[o], x_i);
          first = 0;
        }
      }
      expect_close(&c, want, dt, op_name(op));
      free(want);
      case_free(&c);
    }
  }
  /* integers, and NaN propagation in max/min */
  Case c;
  case_init(&c);
  Shape s = TU_SHAPE(2, 3);
  double iv[6] = {1, -5, 3, 7, 2, -9};
  ValId x = tu_input(&c.t, "x", DT_I32, s);
  c.in[0] = tu_tensor_vals(DT_I32, s, iv);
  c.nin = 1;
  case_run(&c, ir_reduce(c.t.g, op, x, 2, L));
  double wi[3][2] = {{-1, 0}, {3, 7}, {-5, -9}}; /* sum, max, min of each row */
  int row = op == OP_SUM ? 0 : op == OP_RMAX ? 1 : 2;
  ck_assert(tu_get(&c.out[0], 0) == wi[row][0] && tu_get(&c.out[0], 1) == wi[row][1]);
  case_free(&c);
  case_init(&c);
  double fv[3] = {1, NAN, 2};
  x = tu_input(&c.t, "x", dt, TU_SHAPE(3));
  c.in[0] = tu_tensor_vals(dt, TU_SHAPE(3), fv);
  c.nin = 1;
  case_run(&c, ir_reduce(c.t.g, op, x, 1, L));
  ck_assert(isnan(tu_get(&c.out[0], 0)));
  case_free(&c);
  /* an empty reduction gives the identity: 0, -inf, +inf */
  case_init(&c);
  x = tu_input(&c.t, "x", dt, TU_SHAPE(0, 3));
  c.in[0] = tu_tensor(dt, TU_SHAPE(0, 3));
  c.nin = 1;
  case_run(&c, ir_reduce(c.t.g, op, x, 1, L));
  for (int i = 0; i < 3; i++)
    ck_assert(tu_get(&c.out[0], i) == (op == OP_SUM ? 0 : op == OP_RMAX ? -INFINITY : INFINITY));
  case_free(&c);
}

/* ---- data movement -------------------------------------------------------------------------- */
/* NumPy broadcasting through ir_broadcast_pair (RESHAPE + BROADCAST nodes), then add. */
static void t_broadcast(Op op, DType dt) {
  static const Shape pairs[][2] = {{{2, {3, 1}}, {2, {1, 4}}},
                                   {{1, {4}}, {3, {2, 3, 4}}},
                                   {{0, {0}}, {2, {2, 2}}},
                                   {{3, {2, 1, 3}}, {2, {5, 1}}},
                                   {{2, {1, 1}}, {2, {1, 1}}}};
  for (size_t k = 0; k < sizeof pairs / sizeof pairs[0]; k++) {
    Case c;
    case_init(&c);
    ValId a = case_input(&c, dt, pairs[k][0], -1, 1, 0), b = case_input(&c, dt, pairs[k][1], -1, 1, 0);
    ck_assert(ir_broadcast_pair(c.t.g, &a, &b, "+", L) == 0);
    case_run(&c, ir_binary(c.t.g, OP_ADD, a, b, L));
    Shape os = c.t.g->nodes[c.t.g->outputs[0].val].shape;
    int64_t n = shape_numel(&os), co[IR_MAXRANK], ca[IR_MAXRANK];
    double *want = alloc_want(n);
    for (int64_t o = 0; o < n; o++) {
      unravel(o, os, co);
      double v = 0;
      for (int j = 0; j < 2; j++) { /* right-aligned; size-1 dims repeat */
        Shape s = pairs[k][j];
        for (int d = 0; d < s.rank; d++) ca[d] = s.dims[d] == 1 ? 0 : co[d + os.rank - s.rank];
        v += tu_get(&c.in[j], ravel(ca, s));
      }
      want[o] = v;
    }
    expect_close(&c, want, dt, "broadcast");
    free(want);
    case_free(&c);
  }
}

static void t_reshape(Op op, DType dt) {
  static const Shape from[] = {{3, {2, 3, 4}}, {1, {6}}, {2, {1, 5}}, {0, {0}}};
  static const Shape to[] = {{2, {4, 6}}, {3, {1, 6, 1}}, {2, {5, 1}}, {2, {1, 1}}};
  for (int k = 0; k < 4; k++) {
    Case c;
    case_init(&c);
    ValId x = case_input(&c, dt, from[k], -1, 1, 0);
    case_run(&c, ir_reshape(c.t.g, x, &to[k], L));
    ck_assert(memcmp(c.out[0].data, c.in[0].data, (size_t)tu_numel(&c.in[0]) * dtype_size(dt)) == 0);
    case_free(&c);
  }
}

static void t_transpose(Op op, DType dt) {
  static const int32_t perms[][3] = {{0, 1, 2}, {0, 2, 1}, {1, 0, 2}, {1, 2, 0}, {2, 0, 1}, {2, 1, 0}};
  for (int k = 0; k < 7; k++) {
    Case c;
    case_init(&c);
    Shape s = k < 6 ? TU_SHAPE(2, 3, 4) : TU_SHAPE(3, 5);
    int32_t perm[IR_MAXRANK] = {1, 0};
    if (k < 6) memcpy(perm, perms[k], sizeof perms[k]);
    ValId x = case_input(&c, dt, s, -1, 1, 0);
    case_run(&c, ir_transpose(c.t.g, x, perm, L));
    Shape os = c.t.g->nodes[c.t.g->outputs[0].val].shape;
    int64_t n = shape_numel(&os), co[IR_MAXRANK], ci[IR_MAXRANK];
    double *want = alloc_want(n);
    for (int64_t o = 0; o < n; o++) {
      unravel(o, os, co);
      for (int d = 0; d < s.rank; d++) ci[perm[d]] = co[d];
      want[o] = tu_get(&c.in[0], ravel(ci, s));
    }
    expect_close(&c, want, dt, "transpose");
    free(want);
    case_free(&c);
  }
}

/* slice, pad and concat on every axis of a [3, 4, 5] tensor. */
static void t_axis_ops(Op op, DType dt) {
  Shape s = TU_SHAPE(3, 4, 5);
  for (int ax = 0; ax < 3; ax++)
    for (int var = 0; var < 2; var++) {
      Case c;
      case_init(&c);
      ValId x = case_input(&c, dt, s, -1, 1, 0), y;
      int64_t lo = var ? 0 : 1, hi = var ? s.dims[ax] : s.dims[ax] - 1, extra = var ? 1 : 2;
      Shape bs = s;
      bs.dims[ax] = extra;
      if (op == OP_SLICE) y = ir_slice(c.t.g, x, ax, lo, hi, L);
      else if (op == OP_PAD) y = ir_pad(c.t.g, x, ax, lo + var, extra, L);
      else y = ir_concat(c.t.g, x, case_input(&c, dt, bs, -1, 1, 0), ax, L);
      case_run(&c, y);
      Shape os = c.t.g->nodes[y].shape;
      int64_t n = shape_numel(&os), co[IR_MAXRANK];
      double *want = alloc_want(n);
      for (int64_t o = 0; o < n; o++) {
        unravel(o, os, co);
        if (op == OP_SLICE) {
          co[ax] += lo;
          want[o] = tu_get(&c.in[0], ravel(co, s));
        } else if (op == OP_PAD) {
          co[ax] -= lo + var;
          want[o] = co[ax] < 0 || co[ax] >= s.dims[ax] ? 0 : tu_get(&c.in[0], ravel(co, s));
        } else if (co[ax] < s.dims[ax]) {
          want[o] = tu_get(&c.in[0], ravel(co, s));
        } else {
          co[ax] -= s.dims[ax];
          want[o] = tu_get(&c.in[1], ravel(co, bs));
        }
      }
      expect_close(&c, want, dt, op_name(op));
      free(want);
      case_free(&c);
    }
}

/* gather (x.take(idx, axis)) and scatter_add (its adjoint), with i32 and i64 indices and
 * repeated indices; an index out of range is an error, not a read out of bounds. */
static void t_gather_scatter(Op op, DType dt) {
  static const double idx_vals[2][5] = {{3, 0, 0, 2, 1}, {2, 2, 0, 1, 0}};
  for (int ax = 0; ax < 2; ax++)
    for (int it = 0; it < 2; it++) {
      DType idt = it ? DT_I64 : DT_I32;
      Case c;
      case_init(&c);
      Shape xs = op == OP_GATHER ? TU_SHAPE(4, 3) : ax == 0 ? TU_SHAPE(5, 3) : TU_SHAPE(4, 5);
      int64_t size = ax == 0 ? 4 : 3;
      ValId x = case_input(&c, dt, xs, -4, 4, 0.125);
      ValId ix = tu_input(&c.t, "idx", idt, TU_SHAPE(5));
      c.in[c.nin++] = tu_tensor_vals(idt, TU_SHAPE(5), idx_vals[ax]);
      ValId y = op == OP_GATHER ? ir_gather(c.t.g, x, ix, ax, L) : ir_scatter_add(c.t.g, x, ix, ax, size, L);
      case_run(&c, y);
      Shape os = c.t.g->nodes[y].shape;
      int64_t n = shape_numel(&os), co[IR_MAXRANK];
      double *want = alloc_want(n);
      if (op == OP_GATHER) {
        for (int64_t o = 0; o < n; o++) {
          unravel(o, os, co);
          co[ax] = (int64_t)idx_vals[ax][co[ax]];
          want[o] = tu_get(&c.in[0], ravel(co, xs));
        }
      } else {
        for (int64_t i = 0; i < shape_numel(&xs); i++) {
          unravel(i, xs, co);
          co[ax] = (int64_t)idx_vals[ax][co[ax]];
          want[ravel(co, os)] += tu_get(&c.in[0], i);
        }
      }
      expect_close(&c, want, dt, op_name(op));
      free(want);
      case_free(&c);
    }
  for (int bad = 0; bad < 2; bad++) { /* out of range: too large, negative */
    Case c;
    case_init(&c);
    ValId x = case_input(&c, dt, TU_SHAPE(4, 3), -1, 1, 0);
    ValId ix = tu_input(&c.t, "idx", DT_I32, TU_SHAPE(2));
    double iv[2] = {0, bad ? -1 : 4};
    c.in[c.nin++] = tu_tensor_vals(DT_I32, TU_SHAPE(2), iv);
    SrcLoc at = {ctx_add_file(&c.t.ctx, "model.grad", "x\n", 2), 12, 7};
    ValId y = op == OP_GATHER ? ir_gather(c.t.g, x, ix, 0, at) : ir_scatter_add(c.t.g, ir_slice(c.t.g, x, 0, 0, 2, L), ix, 0, 4, at);
    ck_assert_int_eq(case_run_seeded(&c, y, 1, 0), -1);
    ck_assert_msg(strstr(c.err, "out of range"), "%s", c.err);
    ck_assert_msg(strstr(c.err, "model.grad:12:7"), "error does not point at the source: %s", c.err);
    ck_assert_ptr_null(c.out[0].data);
    case_free(&c);
  }
}

/* ---- matmul ------------------------------------------------------------------------------- */
static void t_matmul(Op op, DType dt) {
  static const int64_t mkn[][4] = {{1, 3, 4, 5}, {2, 3, 4, 5}, {1, 1, 1, 1}, {3, 1, 7, 2}, {1, 6, 2, 1}};
  for (size_t k = 0; k < sizeof mkn / sizeof mkn[0]; k++)
    for (int ta = 0; ta < 2; ta++)
      for (int tb = 0; tb < 2; tb++) {
        int64_t B = mkn[k][0], M = mkn[k][1], K = mkn[k][2], N = mkn[k][3];
        int batched = k == 1 || k == 3;
        Shape as = batched ? TU_SHAPE(B, ta ? K : M, ta ? M : K) : TU_SHAPE(ta ? K : M, ta ? M : K);
        Shape bs = batched ? TU_SHAPE(B, tb ? N : K, tb ? K : N) : TU_SHAPE(tb ? N : K, tb ? K : N);
        Case c;
        case_init(&c);
        ValId a = case_input(&c, dt, as, -2, 2, 0.125), b = case_input(&c, dt, bs, -2, 2, 0.125);
        case_run(&c, ir_matmul(c.t.g, a, b, ta, tb, L));
        double *want = alloc_want(B * M * N);
        for (int64_t bt = 0; bt < B; bt++)
          for (int64_t i = 0; i < M; i++)
            for (int64_t j = 0; j < N; j++) {
              double s = 0;
              for (int64_t q = 0; q < K; q++) {
                double av = tu_get(&c.in[0], bt * M * K + (ta ? q * M + i : i * K + q));
                double bv = tu_get(&c.in[1], bt * K * N + (tb ? j * K + q : q * N + j));
                s += av * bv;
              }
              want[(bt * M + i) * N + j] = s;
            }
        expect_close(&c, want, dt, "matmul");
        free(want);
        case_free(&c);
      }
}

/* ---- extern ---------------------------------------------------------------------------------- */
double test_interp_twice(double x); /* found by dlsym in the test binary itself (lib NULL) */
double test_interp_twice(double x) { return 2 * x; }

static int add_ext(TuGraph *t, const char *name, const char *lib, int nargs, DType dt) {
  Extern e;
  memset(&e, 0, sizeof e);
  e.name = name;
  e.lib = lib;
  e.nargs = nargs;
  for (int i = 0; i < nargs; i++) e.args[i] = dt;
  e.ret = dt;
  e.loc = L;
  return program_add_extern(&t->prog, &e);
}

static void t_extern(Op op, DType dt) {
  int f = dt == DT_F32;
  struct { const char *name, *lib; int nargs; } fs[] = {
      {f ? "erff" : "erf", "libm.so.6", 1}, {f ? "hypotf" : "hypot", "libm.so.6", 2},
      {f ? "fmaf" : "fma", "libm.so.6", 3}, {"test_interp_twice", NULL, 1}};
  for (size_t k = 0; k < sizeof fs / sizeof fs[0]; k++) {
    if (!fs[k].lib && f) continue; /* the in-process helper is f64 */
    Case c;
    case_init(&c);
    Shape s = TU_SHAPE(2, 3);
    ValId args[3];
    for (int i = 0; i < fs[k].nargs; i++) args[i] = case_input(&c, dt, s, -2, 2, 0);
    int e = add_ext(&c.t, fs[k].name, fs[k].lib, fs[k].nargs, dt);
    case_run(&c, ir_extern(c.t.g, &c.t.prog, e, fs[k].nargs, args, L));
    double want[6];
    for (int i = 0; i < 6; i++) {
      double x = tu_get(&c.in[0], i), y = fs[k].nargs > 1 ? tu_get(&c.in[1], i) : 0,
             z = fs[k].nargs > 2 ? tu_get(&c.in[2], i) : 0;
      want[i] = k == 0 ? erf(x) : k == 1 ? hypot(x, y) : k == 2 ? x * y + z : 2 * x;
    }
    expect_close(&c, want, dt, fs[k].name);
    case_free(&c);
  }
  for (int bad = 0; bad < 2; bad++) { /* a clear error when the library or symbol is missing */
    Case c;
    case_init(&c);
    ValId x = case_input(&c, dt, TU_SHAPE(2), -1, 1, 0);
    int e = add_ext(&c.t, bad ? "no_such_function_xyz" : "erf", bad ? "libm.so.6" : "libnot-there.so.9", 1, dt);
    ck_assert_int_eq(case_run_seeded(&c, ir_extern(c.t.g, &c.t.prog, e, 1, &x, L), 1, 0), -1);
    ck_assert_msg(strstr(c.err, bad ? "no_such_function_xyz" : "libnot-there.so.9"), "%s", c.err);
    case_free(&c);
  }
}

/* ---- the op table walk ------------------------------------------------------------------------ */
typedef void (*OpTest)(Op op, DType dt);
typedef struct {
  Op op;
  OpTest fn;
} OpCase;

static const OpCase op_cases[] = {
    {OP_CONST, t_const},       {OP_INPUT, t_input},         {OP_PARAM, t_param},
    {OP_IOTA, t_iota},         {OP_RANDN, t_random},        {OP_RANDU, t_random},
    {OP_NEG, t_unary},         {OP_EXP, t_unary},           {OP_LOG, t_unary},
    {OP_LOG1P, t_unary},       {OP_SQRT, t_unary},          {OP_RSQRT, t_unary},
    {OP_ABS, t_unary},         {OP_SIGN, t_unary},          {OP_FLOOR, t_unary},
    {OP_SIN, t_unary},         {OP_COS, t_unary},           {OP_TAN, t_unary},
    {OP_ATAN, t_unary},        {OP_TANH, t_unary},          {OP_SIGMOID, t_unary},
    {OP_SILU, t_unary},        {OP_RELU, t_unary},          {OP_SOFTPLUS, t_unary},
    {OP_CAST, t_cast},         {OP_STOPGRAD, t_unary},      {OP_ADD, t_binary},
    {OP_SUB, t_binary},        {OP_MUL, t_binary},          {OP_DIV, t_binary},
    {OP_POW, t_binary},        {OP_MAX, t_binary},          {OP_MIN, t_binary},
    {OP_SAFEMUL, t_binary},    {OP_LT, t_binary},           {OP_LE, t_binary},
    {OP_GT, t_binary},         {OP_GE, t_binary},           {OP_EQ, t_binary},
    {OP_NE, t_binary},         {OP_WHERE, t_where},         {OP_SUM, t_reduce},
    {OP_RMAX, t_reduce},       {OP_RMIN, t_reduce},         {OP_BROADCAST, t_broadcast},
    {OP_RESHAPE, t_reshape},   {OP_TRANSPOSE, t_transpose}, {OP_SLICE, t_axis_ops},
    {OP_PAD, t_axis_ops},      {OP_CONCAT, t_axis_ops},     {OP_GATHER, t_gather_scatter},
    {OP_SCATTERADD, t_gather_scatter}, {OP_EXTERN, t_extern}, {OP_MATMUL, t_matmul},
};
#define NCASES ((int)(sizeof op_cases / sizeof op_cases[0]))

START_TEST(op_table_covered) {
  for (int op = 0; op < OP_COUNT; op++) {
    int found = 0;
    for (int k = 0; k < NCASES; k++) found |= op_cases[k].op == (Op)op;
    ck_assert_msg(interp_has_kernel((Op)op), "op '%s' has no interpreter kernel", op_name((Op)op));
    ck_assert_msg(found, "op '%s' has no test case in test_interp.c", op_name((Op)op));
  }
}
END_TEST

START_TEST(op_case) {
  op_cases[_i].fn(op_cases[_i].op, DT_F32);
  op_cases[_i].fn(op_cases[_i].op, DT_F64);
}
END_TEST

/* ---- the driver: liveness, shared outputs, dead nodes ----------------------------------------- */
START_TEST(outputs_and_liveness) {
  Case c;
  case_init(&c);
  Shape s = TU_SHAPE(4);
  ValId x = case_input(&c, DT_F64, s, -1, 1, 0);
  ValId e = ir_unary(c.t.g, OP_EXP, x, L);
  ValId dead = ir_gather(c.t.g, x, ir_const(c.t.g, 99, DT_I32, &(Shape){1, {1}}, L), 0, L); /* would fail */
  ck_assert(dead != IR_ERR);
  graph_add_output(c.t.g, "a", e);
  graph_add_output(c.t.g, "b", e); /* the same node twice: two independent buffers */
  ck_assert_msg(interp_run(c.t.g, &c.t.prog, c.in, NULL, c.out, 0, 0, c.err, sizeof c.err) == 0, "%s", c.err);
  ck_assert(c.out[0].data != c.out[1].data);
  for (int i = 0; i < 4; i++) ck_assert(tu_get(&c.out[0], i) == exp(tu_get(&c.in[0], i)) && tu_get(&c.out[1], i) == tu_get(&c.out[0], i));
  gr_tensor_free(&c.out[0]);
  gr_tensor_free(&c.out[1]);
  /* a corrupted graph (input id pointing forward) is an error, not a crash */
  c.t.g->nodes[e].in[0] = e + 5;
  ck_assert_int_eq(interp_run(c.t.g, &c.t.prog, c.in, NULL, c.out, 0, 0, c.err, sizeof c.err), -1);
  ck_assert_msg(strstr(c.err, "invalid graph"), "%s", c.err);
  ck_assert_ptr_null(c.out[0].data);
  case_free(&c);
}
END_TEST

/* Data movement is dtype-blind: the same graph on integer-valued i32/i64 tensors gives
 * exactly the f64 results (broadcast, transpose, slice, pad, concat, gather, scatter_add,
 * where, reshape). */
static ValId int_graph(TuGraph *t, DType dt) {
  Graph *g = t->g;
  ValId a = tu_input(t, "a", dt, TU_SHAPE(3, 1)), b = tu_input(t, "b", dt, TU_SHAPE(4));
  ValId ix = tu_input(t, "ix", DT_I32, TU_SHAPE(5));
  ck_assert(ir_broadcast_pair(g, &a, &b, "+", L) == 0);
  ValId s = ir_binary(g, OP_ADD, a, b, L);                               /* [3, 4] */
  int32_t perm[IR_MAXRANK] = {1, 0};
  ValId tr = ir_transpose(g, s, perm, L);                                /* [4, 3] */
  ValId sl = ir_pad(g, ir_slice(g, tr, 1, 1, 3, L), 0, 1, 2, L);         /* [7, 2] */
  ValId cc2 = ir_concat(g, ir_slice(g, sl, 0, 0, 4, L), tr, 1, L);       /* [4, 5] */
  ValId ga = ir_gather(g, cc2, ix, 1, L);                                /* [4, 5] */
  ValId sc = ir_scatter_add(g, ga, ix, 1, 6, L);                         /* [4, 6] */
  ValId w = ir_where(g, ir_binary(g, OP_GT, sc, ir_const(g, 3, dt, &(Shape){2, {4, 6}}, L), L), sc,
                     ir_unary(g, OP_NEG, sc, L), L);
  Shape flat = TU_SHAPE(24);
  ValId both = ir_concat(g, ir_reshape(g, w, &flat, L), ir_reshape(g, sc, &flat, L), 0, L); /* [48] */
  ck_assert_int_eq(t->ctx.ndiags, 0);
  return both;
}

START_TEST(integer_data_movement) {
  static const double av[3] = {1, -2, 5}, bv[4] = {3, 0, -1, 7}, iv[5] = {4, 0, 0, 2, 1};
  GrTensor res[3];
  DType dts[3] = {DT_F64, DT_I32, DT_I64};
  for (int k = 0; k < 3; k++) {
    TuGraph t;
    tu_graph_init(&t);
    ValId out = int_graph(&t, dts[k]);
    ck_assert_msg(out != IR_ERR, "%s", tu_last_diag(&t));
    graph_add_output(t.g, "out", out);
    GrTensor in[3] = {tu_tensor_vals(dts[k], TU_SHAPE(3, 1), av), tu_tensor_vals(dts[k], TU_SHAPE(4), bv),
                      tu_tensor_vals(DT_I32, TU_SHAPE(5), iv)};
    char err[256];
    ck_assert_msg(interp_run(t.g, &t.prog, in, NULL, &res[k], 0, 0, err, sizeof err) == 0, "%s", err);
    for (int j = 0; j < 3; j++) gr_tensor_free(&in[j]);
    tu_graph_free(&t);
  }
  ck_assert_int_eq(tu_numel(&res[0]), 48);
  double nonzero = 0;
  for (int64_t i = 0; i < 48; i++) {
    ck_assert(tu_get(&res[1], i) == tu_get(&res[0], i) && tu_get(&res[2], i) == tu_get(&res[0], i));
    nonzero += tu_get(&res[0], i) != 0;
  }
  ck_assert(nonzero > 10);
  for (int k = 0; k < 3; k++) gr_tensor_free(&res[k]);
}
END_TEST

/* ---- a 2-layer MLP, end to end --------------------------------------------------------------- */
/* loss = mean((silu(x @ W1 + b1) @ W2 + b2 - y)^2), x [6, 3], W1 [3, 5], W2 [5, 2]. */
START_TEST(mlp_mse) {
  enum { B = 6, D = 3, H = 5, O = 2 };
  Case c;
  case_init(&c);
  Graph *g = c.t.g;
  ValId x = tu_input(&c.t, "x", DT_F64, TU_SHAPE(B, D)), y = tu_input(&c.t, "y", DT_F64, TU_SHAPE(B, O));
  ValId w1 = tu_param(&c.t, "w1", DT_F64, TU_SHAPE(D, H), INIT_GLOROT, 0, 0);
  ValId b1 = tu_param(&c.t, "b1", DT_F64, TU_SHAPE(H), INIT_NORMAL, 0.1, 0);
  ValId w2 = tu_param(&c.t, "w2", DT_F64, TU_SHAPE(H, O), INIT_HE, 0, 0);
  ValId b2 = tu_param(&c.t, "b2", DT_F64, TU_SHAPE(O), INIT_UNIFORM, -0.1, 0.1);
  ValId h = ir_matmul(g, x, w1, 0, 0, L);
  ck_assert(ir_broadcast_pair(g, &h, &b1, "+", L) == 0);
  h = ir_unary(g, OP_SILU, ir_binary(g, OP_ADD, h, b1, L), L);
  ValId o = ir_matmul(g, h, w2, 0, 0, L);
  ck_assert(ir_broadcast_pair(g, &o, &b2, "+", L) == 0);
  ValId d = ir_binary(g, OP_SUB, ir_binary(g, OP_ADD, o, b2, L), y, L);
  ValId sq = ir_reduce(g, OP_SUM, ir_binary(g, OP_MUL, d, d, L), 3, L);
  ValId loss = ir_binary(g, OP_MUL, ir_squeeze_axes(g, sq, 3, L), ir_scalar(g, 1.0 / (B * O), DT_F64, L), L);
  char vbuf[256];
  ck_assert_msg(ir_verify(g, &c.t.prog, vbuf, sizeof vbuf) == 0, "%s", vbuf);

  GrTensor params[4], again[4];
  ck_assert(interp_init_params(&c.t.prog, 2024, params) == 0);
  ck_assert(interp_init_params(&c.t.prog, 2024, again) == 0);
  for (int k = 0; k < 4; k++) { /* deterministic, and the documented Philox formula */
    ck_assert(memcmp(params[k].data, again[k].data, (size_t)tu_numel(&params[k]) * 8) == 0);
    gr_tensor_free(&again[k]);
  }
  double lim = sqrt(6.0 / (D + H));
  for (int64_t i = 0; i < D * H; i++)
    ck_assert(tu_get(&params[0], i) == -lim + 2 * lim * gr_uniform_f64(2024, 0, 0x5EED0000, (uint64_t)i));
  for (int64_t i = 0; i < H; i++)
    ck_assert(tu_get(&params[1], i) == 0.1 * gr_normal_f64(2024, 0, 0x5EED0001, (uint64_t)i));
  for (int64_t i = 0; i < H * O; i++)
    ck_assert(tu_get(&params[2], i) == sqrt(2.0 / H) * gr_normal_f64(2024, 0, 0x5EED0002, (uint64_t)i));
  for (int64_t i = 0; i < O; i++) ck_assert(fabs(tu_get(&params[3], i)) <= 0.1);

  /* inputs travel through .npy files */
  char *dir = tu_tmpdir(), path[512], err[512];
  ck_assert_ptr_nonnull(dir);
  GrTensor xt = tu_tensor(DT_F64, TU_SHAPE(B, D)), yt = tu_tensor(DT_F64, TU_SHAPE(B, O));
  tu_fill_uniform(&xt, -2, 2, 11);
  tu_fill_uniform(&yt, -1, 1, 12);
  snprintf(path, sizeof path, "%s/x.npy", dir);
  ck_assert(gr_npy_write(path, &xt, err, sizeof err) == 0);
  ck_assert_msg(gr_npy_read(path, &c.in[0], err, sizeof err) == 0, "%s", err);
  snprintf(path, sizeof path, "%s/y.npy", dir);
  ck_assert(gr_npy_write(path, &yt, err, sizeof err) == 0);
  ck_assert_msg(gr_npy_read(path, &c.in[1], err, sizeof err) == 0, "%s", err);
  c.nin = 2;
  tu_rmtree(dir);
  free(dir);

  graph_add_output(g, "loss", loss);
  ck_assert_msg(interp_run(g, &c.t.prog, c.in, params, c.out, 0, 0, c.err, sizeof c.err) == 0, "%s", c.err);
  ck_assert_int_eq(c.out[0].rank, 0);

  /* the same computation, written out by hand */
  double want = 0;
  for (int b = 0; b < B; b++) {
    double hid[H];
    for (int j = 0; j < H; j++) {
      double a = tu_get(&params[1], j);
      for (int q = 0; q < D; q++) a += tu_get(&xt, b * D + q) * tu_get(&params[0], q * H + j);
      hid[j] = a / (1 + exp(-a));
    }
    for (int j = 0; j < O; j++) {
      double a = tu_get(&params[3], j);
      for (int q = 0; q < H; q++) a += hid[q] * tu_get(&params[2], q * O + j);
      double e = a - tu_get(&yt, b * O + j);
      want += e * e;
    }
  }
  want /= B * O;
  double got = tu_get(&c.out[0], 0);
  ck_assert_msg(fabs(got - want) <= 1e-12 * fabs(want), "loss %.17g want %.17g", got, want);
  ck_assert(want > 0);
  for (int k = 0; k < 4; k++) gr_tensor_free(&params[k]);
  gr_tensor_free(&xt);
  gr_tensor_free(&yt);
  case_free(&c);
}
END_TEST

/* Every init kind, f32 and f64: element i of parameter k is the documented function of
 * (seed, Philox stream 0x5EED0000 + k, i), computed in double and rounded to the dtype. */
START_TEST(param_init_formulas) {
  TuGraph t;
  tu_graph_init(&t);
  static const struct { InitKind kind; double a, b; } inits[] = {
      {INIT_ZEROS, 0, 0}, {INIT_ONES, 0, 0}, {INIT_CONST, -0.3, 0}, {INIT_NORMAL, 0.02, 0},
      {INIT_UNIFORM, -2, 3}, {INIT_GLOROT, 0, 0}, {INIT_HE, 0, 0}};
  Shape s = TU_SHAPE(2, 3, 5); /* fan_in = 2 * 3, fan_out = 2 * 5 */
  int np = 0;
  for (int d = 0; d < 2; d++)
    for (size_t k = 0; k < sizeof inits / sizeof inits[0]; k++) {
      char name[32];
      snprintf(name, sizeof name, "p%d_%zu", d, k);
      ck_assert(tu_param(&t, name, d ? DT_F64 : DT_F32, s, inits[k].kind, inits[k].a, inits[k].b) != IR_ERR);
      np++;
    }
  ck_assert_int_eq(t.prog.nparams, np);
  GrTensor ps[14], other[14];
  ck_assert(interp_init_params(&t.prog, 77, ps) == 0);
  ck_assert(interp_init_params(&t.prog, 78, other) == 0);
  for (int k = 0; k < np; k++) {
    const Param *pr = &t.prog.params[k];
    ck_assert(pr->init.fan_in == 6 && pr->init.fan_out == 10);
    uint64_t st = 0x5EED0000u + (uint64_t)k;
    int f32 = pr->dtype == DT_F32, differs = 0;
    for (int64_t i = 0; i < 30; i++) {
      uint64_t ui = (uint64_t)i;
      double u = f32 ? (double)gr_uniform_f32(77, 0, st, ui) : gr_uniform_f64(77, 0, st, ui);
      double z = gr_normal_f64(77, 0, st, ui), a = pr->init.a, b = pr->init.b, w = 0;
      switch (pr->init.kind) {
      case INIT_ZEROS: w = 0; break;
      case INIT_ONES: w = 1; break;
      case INIT_CONST: w = a; break;
      case INIT_NORMAL: w = a * z; break;
      case INIT_UNIFORM: w = a + (b - a) * u; break;
      case INIT_GLOROT: w = -sqrt(6.0 / 16) + 2 * sqrt(6.0 / 16) * u; break;
      case INIT_HE: w = sqrt(2.0 / 6) * z; break;
      default: ck_abort();
      }
      if (f32) w = (float)w;
      ck_assert_msg(tu_get(&ps[k], i) == w, "%s element %lld: got %.17g want %.17g", pr->name, (long long)i,
                    tu_get(&ps[k], i), w);
      differs += tu_get(&ps[k], i) != tu_get(&other[k], i);
    }
    int random = pr->init.kind >= INIT_NORMAL;
    ck_assert_msg(random ? differs == 30 : differs == 0, "%s: seed dependence %d", pr->name, differs);
    gr_tensor_free(&ps[k]);
    gr_tensor_free(&other[k]);
  }
  tu_graph_free(&t);
}
END_TEST

/* docs/interpreter.md is the contract codegen implements: its semantics table must name
 * every op of the table (as a whole word on a table row). Tests run from the repository
 * root (tests/run_all.sh, make test). */
static int doc_row_names(const char *doc, const char *name) {
  size_t n = strlen(name);
  for (const char *line = doc; line && *line; line = strchr(line, '\n') ? strchr(line, '\n') + 1 : NULL) {
    if (*line != '|') continue;
    const char *end = strchr(line, '\n');
    const char *cell_end = strchr(line + 1, '|'); /* the first cell names the ops */
    if (!cell_end || (end && cell_end > end)) continue;
    for (const char *q = line + 1; q + n <= cell_end; q++) {
      int before = q == line + 1 || !(q[-1] == '_' || (q[-1] >= 'a' && q[-1] <= 'z'));
      int after = !(q[n] == '_' || (q[n] >= 'a' && q[n] <= 'z'));
      if (before && after && !strncmp(q, name, n)) return 1;
    }
  }
  return 0;
}

START_TEST(doc_covers_every_op) {
  FILE *f = fopen("docs/interpreter.md", "rb");
  ck_assert_msg(f != NULL, "docs/interpreter.md not found: run the tests from the repository root");
  static char doc[1 << 16];
  size_t n = fread(doc, 1, sizeof doc - 1, f);
  fclose(f);
  doc[n] = 0;
  for (int op = 0; op < OP_COUNT; op++)
    ck_assert_msg(doc_row_names(doc, op_name((Op)op)), "docs/interpreter.md has no row for op '%s'",
                  op_name((Op)op));
}
END_TEST

int main(void) {
  Suite *s = suite_create("interp");
  TCase *tc = tcase_create("ops");
  tcase_add_test(tc, op_table_covered);
  tcase_add_test(tc, doc_covers_every_op);
  tcase_add_loop_test(tc, op_case, 0, NCASES);
  tcase_add_test(tc, integer_ops);
  tcase_add_test(tc, special_values);
  tcase_add_test(tc, outputs_and_liveness);
  tcase_add_test(tc, integer_data_movement);
  tcase_add_test(tc, mlp_mse);
  tcase_add_test(tc, param_init_formulas);
  suite_add_tcase(s, tc);
  SRunner *sr = srunner_create(s);
  srunner_run_all(sr, CK_NORMAL);
  int failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
