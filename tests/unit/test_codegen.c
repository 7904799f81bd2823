/* test_codegen.c: compiled code (JIT, fast setting) against the reference interpreter.
 *
 * Every op of ops.def is compiled in f32 and f64 (and i32/i64 where the op allows), on
 * several shapes with odd sizes (1, 7, 17, 33: vector remainders) and size-1 dims, both
 * fused into a consumer and as a kernel root, and the outputs are compared with
 * interp_run on the same inputs: f64 to 1e-12 relative, f32 to 1e-5 relative (both with
 * an absolute floor of the same size times the output's largest magnitude, for sums and
 * products that cancel). Random draws must match runtime/philox.h bit for bit.
 * `op_table_covered` fails for any op that no group below compiles. Further suites check
 * the graph passes' contracts and the memory plan's invariants.
 */
#include <check.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "autodiff.h"
#include "codegen.h"
#include "interp.h"
#include "philox.h"
#include "schedule.h"
#include "testutil.h"

#define L SRCLOC_NONE

typedef struct {
  TuGraph t;
  GrTensor in[12];
  int nin;
} G;

static void g_init(G *c) {
  memset(c, 0, sizeof *c);
  tu_graph_init(&c->t);
}

static void g_free(G *c) {
  for (int i = 0; i < c->nin; i++) gr_tensor_free(&c->in[i]);
  tu_graph_free(&c->t);
}

/* An input uniform in [lo, hi); q > 0 rounds to multiples of q (ints: rounded). */
static ValId gin(G *c, DType dt, Shape s, double lo, double hi, double q) {
  char name[16];
  snprintf(name, sizeof name, "x%d", c->nin);
  ValId v = tu_input(&c->t, name, dt, s);
  GrTensor *t = &c->in[c->nin];
  *t = tu_tensor(dt, s);
  tu_fill_uniform(t, lo, hi, 4242 + (uint64_t)c->nin * 31);
  if (q > 0 || !dtype_is_float(dt))
    for (int64_t i = 0; i < tu_numel(t); i++) {
      double qq = q > 0 ? q : 1;
      tu_set(t, i, round(tu_get(t, i) / qq) * qq);
    }
  c->nin++;
  return v;
}

static void out(G *c, ValId v) {
  ck_assert_msg(v != IR_ERR, "builder failed: %s", tu_last_diag(&c->t));
  char name[16];
  snprintf(name, sizeof name, "o%d", c->t.g->noutputs);
  graph_add_output(c->t.g, name, v);
}

static double tol_of(DType t, double rt32) { return t == DT_F32 ? rt32 : t == DT_F64 ? 1e-12 : 0; }

/* Runs interp and JIT on entry `eg` of c and compares every output. rt32: f32 relative
 * tolerance. */
static void compare_entry(G *c, const Graph *eg, double rt32, const char *what, int opt_level, int graph_opt) {
  Program *p = &c->t.prog;
  GrTensor params[8];
  ck_assert(p->nparams <= 8);
  if (p->nparams) ck_assert_int_eq(interp_init_params(p, 11, params), 0);
  int no = eg->noutputs;
  GrTensor *want = calloc((size_t)no, sizeof *want), *got = calloc((size_t)no, sizeof *got);
  char err[512];
  int rc = interp_run(eg, p, c->in, params, want, 5, 9, err, sizeof err);
  ck_assert_msg(rc == 0, "%s: interp: %s", what, err);
  CgOptions o;
  cg_options_default(&o);
  o.opt_level = opt_level;
  o.no_graph_opt = !graph_opt;
  CgJit *j = cg_jit_compile(&c->t.ctx, p, &o);
  if (!j) diag_print_all(&c->t.ctx, stderr);
  ck_assert_msg(j != NULL, "%s: compile failed", what);
  rc = cg_jit_run(j, eg->name, c->in, params, got, 5, 9, err, sizeof err);
  ck_assert_msg(rc == 0, "%s: jit: %s", what, err);
  for (int k = 0; k < no; k++) {
    DType dt = (DType)want[k].dtype;
    ck_assert_int_eq(got[k].dtype, want[k].dtype);
    ck_assert_int_eq(got[k].rank, want[k].rank);
    int64_t n = tu_numel(&want[k]);
    double *w = malloc((size_t)(n + 1) * sizeof *w), scale = 0;
    for (int64_t i = 0; i < n; i++) {
      w[i] = tu_get(&want[k], i);
      if (isfinite(w[i]) && fabs(w[i]) > scale) scale = fabs(w[i]);
    }
    double rt = tol_of(dt, rt32);
    char msg[256];
    int ok = tu_close(&got[k], w, rt, rt * (scale > 1 ? scale : 1), msg, sizeof msg);
    ck_assert_msg(ok, "%s: output %d (%s): %s", what, k, dtype_name(dt), msg);
    free(w);
    gr_tensor_free(&want[k]);
    gr_tensor_free(&got[k]);
  }
  cg_jit_free(j);
  for (int i = 0; i < p->nparams; i++) gr_tensor_free(&params[i]);
  free(want);
  free(got);
}

static void compare_opt(G *c, double rt32, const char *what, int opt_level, int graph_opt) {
  compare_entry(c, c->t.g, rt32, what, opt_level, graph_opt);
}

static void compare(G *c, double rt32, const char *what) { compare_opt(c, rt32, what, 0, 1); }

static const Shape *shapes(int *n) {
  static Shape s[5];
  s[0] = TU_SHAPE(1);
  s[1] = TU_SHAPE(7);
  s[2] = TU_SHAPE(17, 3);
  s[3] = TU_SHAPE(2, 33);
  s[4] = TU_SHAPE(3, 1, 5);
  *n = 5;
  return s;
}

/* ---- op groups (op_table_covered checks their union) --------------------------------------- */
static const Op unary_ops[] = {OP_NEG, OP_EXP, OP_LOG, OP_LOG1P, OP_SQRT, OP_RSQRT, OP_ABS, OP_SIGN,
                               OP_FLOOR, OP_SIN, OP_COS, OP_TAN, OP_ATAN, OP_TANH, OP_SIGMOID,
                               OP_SILU, OP_RELU, OP_SOFTPLUS, OP_STOPGRAD};
static const Op binary_ops[] = {OP_ADD, OP_SUB, OP_MUL, OP_DIV, OP_POW, OP_MAX, OP_MIN, OP_SAFEMUL,
                                OP_LT, OP_LE, OP_GT, OP_GE, OP_EQ, OP_NE};
static const Op reduce_ops[] = {OP_SUM, OP_RMAX, OP_RMIN};
static const Op other_ops[] = {OP_CONST, OP_INPUT, OP_PARAM, OP_IOTA, OP_RANDN, OP_RANDU, OP_CAST,
                               OP_WHERE, OP_BROADCAST, OP_RESHAPE, OP_TRANSPOSE, OP_SLICE, OP_PAD,
                               OP_CONCAT, OP_GATHER, OP_SCATTERADD, OP_EXTERN, OP_MATMUL};
#define NELEM(a) ((int)(sizeof(a) / sizeof((a)[0])))

static void domain(Op op, double *lo, double *hi) {
  *lo = -3, *hi = 3;
  if (op == OP_LOG || op == OP_SQRT || op == OP_RSQRT || op == OP_POW) *lo = 0.1;
  if (op == OP_LOG1P) *lo = -0.5;
  if (op == OP_TAN) *lo = -1.2, *hi = 1.2;
}

START_TEST(unary_float) {
  Op op = unary_ops[_i];
  for (DType dt = DT_F32; dt <= DT_F64; dt++) {
    G c;
    g_init(&c);
    int ns;
    const Shape *s = shapes(&ns);
    double lo, hi;
    domain(op, &lo, &hi);
    for (int k = 0; k < ns; k++) {
      ValId x = gin(&c, dt, s[k], lo, hi, op == OP_FLOOR || op == OP_SIGN ? 0.25 : 0);
      ValId y = ir_unary(c.t.g, op, x, L);
      out(&c, y);                                         /* kernel root */
      out(&c, ir_binary(c.t.g, OP_MUL, y, x, L));         /* fused into a consumer */
    }
    /* large enough to be vectorized at O2 (libmvec variants, remainder loops) */
    ValId big = gin(&c, dt, TU_SHAPE(4099), lo, hi, 0);
    out(&c, ir_unary(c.t.g, op, big, L));
    char what[64];
    snprintf(what, sizeof what, "%s %s", op_name(op), dtype_name(dt));
    compare(&c, 1e-5, what);
    snprintf(what, sizeof what, "%s %s O2", op_name(op), dtype_name(dt));
    compare_opt(&c, 2e-5, what, 2, 1);
    g_free(&c);
  }
}
END_TEST

START_TEST(unary_int) {
  static const Op ops[] = {OP_NEG, OP_ABS, OP_SIGN, OP_STOPGRAD};
  for (DType dt = DT_I32; dt <= DT_I64; dt++) {
    G c;
    g_init(&c);
    ValId x = gin(&c, dt, TU_SHAPE(5, 7), -9, 9, 0);
    for (int k = 0; k < 4; k++) out(&c, ir_unary(c.t.g, ops[k], x, L));
    compare(&c, 0, dtype_name(dt));
    g_free(&c);
  }
}
END_TEST

START_TEST(binary_all) {
  Op op = binary_ops[_i];
  for (DType dt = DT_F32; dt <= DT_I64; dt++) {
    if (!dtype_is_float(dt) && (op == OP_POW || op == OP_SAFEMUL)) continue;
    G c;
    g_init(&c);
    int ns;
    const Shape *s = shapes(&ns);
    double lo, hi;
    domain(op, &lo, &hi);
    int cmp = (op_info[op].flags & F_COMPARE) || op == OP_MAX || op == OP_MIN || op == OP_SAFEMUL;
    for (int k = 0; k < ns; k++) {
      ValId a = gin(&c, dt, s[k], lo, hi, cmp ? 0.5 : 0);
      ValId b = gin(&c, dt, s[k], op == OP_DIV && dtype_is_float(dt) ? 0.5 : lo, hi, cmp ? 0.5 : 0);
      ValId y = ir_binary(c.t.g, op, a, b, L);
      out(&c, y);
      out(&c, ir_binary(c.t.g, OP_ADD, y, a, L));
    }
    ValId a = gin(&c, dt, TU_SHAPE(4097), lo, hi, cmp ? 0.5 : 0), b = gin(&c, dt, TU_SHAPE(4097), lo, hi, cmp ? 0.5 : 0);
    out(&c, ir_binary(c.t.g, op, a, b, L));
    char what[64];
    snprintf(what, sizeof what, "%s %s", op_name(op), dtype_name(dt));
    compare(&c, 1e-5, what);
    if (dtype_is_float(dt)) {
      snprintf(what, sizeof what, "%s %s O2", op_name(op), dtype_name(dt));
      compare_opt(&c, 2e-5, what, 2, 1);
    }
    g_free(&c);
  }
}
END_TEST

START_TEST(reductions) {
  Op op = reduce_ops[_i];
  for (DType dt = DT_F32; dt <= DT_I64; dt++) {
    G c;
    g_init(&c);
    ValId x = gin(&c, dt, TU_SHAPE(3, 5, 7), -4, 4, dtype_is_float(dt) ? 0 : 1);
    ValId e = dtype_is_float(dt) ? ir_unary(c.t.g, OP_SIN, x, L) : x; /* a fused producer */
    for (uint32_t axes = 1; axes < 8; axes++) out(&c, ir_reduce(c.t.g, op, e, axes, L));
    ValId v = gin(&c, dt, TU_SHAPE(33), -4, 4, 0);
    out(&c, ir_reduce(c.t.g, op, v, 1, L));
    ValId m = gin(&c, dt, TU_SHAPE(17, 1, 9), -4, 4, 0);
    out(&c, ir_reduce(c.t.g, op, m, 5, L));
    out(&c, ir_reduce(c.t.g, op, m, 2, L));
    char what[64];
    snprintf(what, sizeof what, "%s %s", op_name(op), dtype_name(dt));
    compare(&c, 1e-5, what);
    g_free(&c);
  }
}
END_TEST

START_TEST(casts) {
  for (DType from = DT_F32; from < DT_COUNT; from++) {
    G c;
    g_init(&c);
    ValId x = gin(&c, from, TU_SHAPE(4, 9), -50, 50, dtype_is_float(from) ? 0 : 1);
    for (DType to = DT_F32; to < DT_COUNT; to++)
      if (to != from) out(&c, ir_cast(c.t.g, x, to, L));
    compare(&c, 0, dtype_name(from));
    g_free(&c);
  }
}
END_TEST

START_TEST(leaves_and_where) {
  for (DType dt = DT_F32; dt < DT_COUNT; dt++) {
    G c;
    g_init(&c);
    Shape s = TU_SHAPE(3, 17);
    ValId cnd = gin(&c, dt, s, -1, 1, dtype_is_float(dt) ? 0.5 : 1);
    ValId a = gin(&c, dt, s, -5, 5, 0), b = gin(&c, dt, s, -5, 5, 0);
    out(&c, ir_where(c.t.g, cnd, a, b, L));
    out(&c, ir_const(c.t.g, 2.5, dt, &s, L));
    out(&c, ir_iota(c.t.g, dt, &s, 0, L));
    out(&c, ir_binary(c.t.g, OP_ADD, ir_iota(c.t.g, dt, &s, 1, L), a, L));
    ValId w = tu_param(&c.t, "w", dt == DT_F64 ? DT_F64 : DT_F32, TU_SHAPE(3, 17), INIT_NORMAL, 1, 0);
    out(&c, w);
    out(&c, a); /* an input returned directly: a copy kernel */
    compare(&c, 0, dtype_name(dt));
    g_free(&c);
  }
}
END_TEST

START_TEST(random_bits) {
  /* the generated Philox against runtime/philox.h directly, high stream bits included;
   * at -O0 (scalar) and -O2 (the vectorized loop plus its remainder, 4181 elements) */
  G c;
  g_init(&c);
  Shape s = TU_SHAPE(37, 113);
  uint64_t stream = 0x123456789aULL;
  ValId r[4];
  Op ops[4] = {OP_RANDU, OP_RANDU, OP_RANDN, OP_RANDN};
  DType dts[4] = {DT_F32, DT_F64, DT_F32, DT_F64};
  for (int k = 0; k < 4; k++) {
    r[k] = ir_random(c.t.g, ops[k], dts[k], &s, L);
    c.t.g->nodes[r[k]].attr.stream = stream + (uint64_t)k;
    out(&c, r[k]);
  }
  out(&c, ir_binary(c.t.g, OP_MUL, r[2], r[2], L)); /* fused use */
  CgOptions o;
  cg_options_default(&o);
  o.opt_level = _i ? 2 : 0;
  CgJit *j = cg_jit_compile(&c.t.ctx, &c.t.prog, &o);
  ck_assert(j);
  GrTensor got[5];
  char err[256];
  uint64_t seed = 0xfeedbeef12345ULL, step = 77;
  ck_assert_int_eq(cg_jit_run(j, "test", NULL, NULL, got, seed, step, err, sizeof err), 0);
  for (int64_t i = 0; i < 37 * 113; i++) {
    ck_assert(((float *)got[0].data)[i] == gr_uniform_f32(seed, step, stream, (uint64_t)i));
    ck_assert(((double *)got[1].data)[i] == gr_uniform_f64(seed, step, stream + 1, (uint64_t)i));
    ck_assert(((float *)got[2].data)[i] == gr_normal_f32(seed, step, stream + 2, (uint64_t)i));
    ck_assert(((double *)got[3].data)[i] == gr_normal_f64(seed, step, stream + 3, (uint64_t)i));
  }
  for (int k = 0; k < 5; k++) gr_tensor_free(&got[k]);
  cg_jit_free(j);
  g_free(&c);
  /* and through the interpreter, with a fused consumer */
  g_init(&c);
  ValId x = gin(&c, DT_F32, s, -1, 1, 0);
  out(&c, ir_binary(c.t.g, OP_ADD, x, ir_random(c.t.g, OP_RANDN, DT_F32, &s, L), L));
  compare(&c, 0, "randn fused");
  g_free(&c);
}
END_TEST

START_TEST(shape_ops) {
  for (DType dt = DT_F32; dt < DT_COUNT; dt++) {
    G c;
    g_init(&c);
    Graph *g = c.t.g;
    ValId x = gin(&c, dt, TU_SHAPE(3, 1, 5), -3, 3, 0);
    ValId y = gin(&c, dt, TU_SHAPE(4, 7), -3, 3, 0);
    ValId xe = dtype_is_float(dt) ? ir_unary(g, OP_SIN, x, L) : ir_unary(g, OP_NEG, x, L);
    /* broadcast, fused and of a materialized node */
    Shape s365 = TU_SHAPE(3, 6, 5), s214 = TU_SHAPE(2, 14), s74 = TU_SHAPE(7, 4);
    out(&c, ir_broadcast(g, x, &s365, L));
    out(&c, ir_broadcast(g, xe, &s365, L));
    /* reshape: adding 1s, general */
    out(&c, ir_reshape(g, ir_unary(g, OP_NEG, y, L), &s214, L));
    out(&c, ir_unary(g, OP_NEG, ir_reshape(g, y, &s74, L), L));
    /* transposes (rank 3 perms) */
    int32_t p1[IR_MAXRANK] = {2, 0, 1}, p2[IR_MAXRANK] = {1, 0};
    out(&c, ir_transpose(g, xe, p1, L));
    out(&c, ir_unary(g, OP_NEG, ir_transpose(g, y, p2, L), L));
    /* slice, pad, concat */
    out(&c, ir_slice(g, y, 1, 2, 6, L));
    out(&c, ir_unary(g, OP_NEG, ir_slice(g, y, 0, 1, 2, L), L));
    out(&c, ir_pad(g, y, 1, 2, 3, L));
    out(&c, ir_unary(g, OP_NEG, ir_pad(g, y, 0, 0, 1, L), L));
    out(&c, ir_concat(g, y, ir_unary(g, OP_NEG, y, L), 0, L));
    out(&c, ir_concat(g, y, ir_slice(g, y, 1, 0, 3, L), 1, L));
    /* gather and scatter_add (int32 and int64 indices) */
    G *cc = &c;
    ValId i32 = gin(cc, DT_I32, TU_SHAPE(9), 0, 3.49, 1);
    ValId i64 = gin(cc, DT_I64, TU_SHAPE(6), 0, 6.49, 1);
    out(&c, ir_gather(g, y, i32, 0, L));
    out(&c, ir_gather(g, ir_unary(g, OP_NEG, y, L), i64, 1, L));
    ValId upd = gin(cc, dt, TU_SHAPE(9, 7), -2, 2, 0);
    out(&c, ir_scatter_add(g, upd, i32, 0, 5, L));
    out(&c, ir_scatter_add(g, ir_unary(g, OP_NEG, upd, L), ir_cast(g, i32, DT_I64, L), 0, 4, L));
    compare(&c, 0, dtype_name(dt));
    g_free(&c);
  }
}
END_TEST

START_TEST(matmuls) {
  for (DType dt = DT_F32; dt <= DT_F64; dt++)
    for (int ta = 0; ta < 2; ta++)
      for (int tb = 0; tb < 2; tb++) {
        G c;
        g_init(&c);
        Graph *g = c.t.g;
        int64_t M = 7, K = 17, N = 33;
        ValId a = gin(&c, dt, ta ? TU_SHAPE(K, M) : TU_SHAPE(M, K), -1, 1, 0);
        ValId b = gin(&c, dt, tb ? TU_SHAPE(N, K) : TU_SHAPE(K, N), -1, 1, 0);
        out(&c, ir_matmul(g, a, b, ta, tb, L));
        /* transposes folded into flags, of computed operands */
        int32_t sw[IR_MAXRANK] = {1, 0};
        ValId at = ir_transpose(g, ir_unary(g, OP_SIN, a, L), sw, L);
        out(&c, ir_matmul(g, at, b, !ta, tb, L));
        /* batched, rank 3, with a fused consumer */
        ValId a3 = gin(&c, dt, TU_SHAPE(3, 5, 1), -1, 1, 0), b3 = gin(&c, dt, TU_SHAPE(3, 1, 4), -1, 1, 0);
        ValId p3 = ir_matmul(g, a3, b3, 0, 0, L);
        out(&c, ir_unary(g, OP_EXP, p3, L));
        int32_t sw3[IR_MAXRANK] = {0, 2, 1};
        out(&c, ir_matmul(g, ir_transpose(g, b3, sw3, L), ir_transpose(g, a3, sw3, L), 0, 0, L));
        compare(&c, 1e-5, "matmul");
        g_free(&c);
      }
}
END_TEST

START_TEST(externs) {
  G c;
  g_init(&c);
  Program *p = &c.t.prog;
  Extern e1 = {"erf", "libm.so.6", 1, {DT_F64}, DT_F64, L};
  Extern e2 = {"atan2f", "libm.so.6", 2, {DT_F32, DT_F32}, DT_F32, L};
  Extern e3 = {"fma", NULL, 3, {DT_F64, DT_F64, DT_F64}, DT_F64, L};
  int k1 = program_add_extern(p, &e1), k2 = program_add_extern(p, &e2), k3 = program_add_extern(p, &e3);
  ValId x = gin(&c, DT_F64, TU_SHAPE(9), -2, 2, 0);
  ValId a = gin(&c, DT_F32, TU_SHAPE(2, 7), -2, 2, 0), b = gin(&c, DT_F32, TU_SHAPE(2, 7), -2, 2, 0);
  out(&c, ir_extern(c.t.g, p, k1, 1, &x, L));
  out(&c, ir_unary(c.t.g, OP_EXP, ir_extern(c.t.g, p, k2, 2, (ValId[]){a, b}, L), L));
  out(&c, ir_extern(c.t.g, p, k3, 3, (ValId[]){x, x, x}, L));
  compare(&c, 0, "extern");
  g_free(&c);
}
END_TEST

START_TEST(op_table_covered) {
  char seen[OP_COUNT] = {0};
  for (int i = 0; i < NELEM(unary_ops); i++) seen[unary_ops[i]] = 1;
  for (int i = 0; i < NELEM(binary_ops); i++) seen[binary_ops[i]] = 1;
  for (int i = 0; i < NELEM(reduce_ops); i++) seen[reduce_ops[i]] = 1;
  for (int i = 0; i < NELEM(other_ops); i++) seen[other_ops[i]] = 1;
  for (int op = 0; op < OP_COUNT; op++)
    ck_assert_msg(seen[op], "op '%s' has no compiled-vs-interpreter test", op_name((Op)op));
}
END_TEST

/* ---- a small MLP, at both optimization levels ------------------------------------------------- */
static void build_mlp(G *c, DType dt, int64_t B) {
  Graph *g = c->t.g;
  ValId x = gin(c, dt, TU_SHAPE(B, 3), -1, 1, 0);
  ValId h = x;
  int64_t in = 3;
  for (int l = 0; l < 3; l++) {
    char wn[16], bn[16];
    snprintf(wn, sizeof wn, "w%d", l);
    snprintf(bn, sizeof bn, "b%d", l);
    int64_t outd = l == 2 ? 2 : 37;
    ValId w = tu_param(&c->t, wn, dt, TU_SHAPE(in, outd), INIT_GLOROT, 0, 0);
    ValId bb = tu_param(&c->t, bn, dt, TU_SHAPE(outd), INIT_NORMAL, 0.1, 0);
    ValId z = ir_matmul(g, h, w, 0, 0, L);
    ir_broadcast_pair(g, &z, &bb, "+", L);
    z = ir_binary(g, OP_ADD, z, bb, L);
    h = l == 2 ? z : ir_unary(g, OP_SILU, z, L);
    in = outd;
  }
  ValId d = ir_binary(g, OP_SUB, h, ir_slice(g, x, 1, 0, 2, L), L);
  ValId sq = ir_binary(g, OP_MUL, d, d, L);
  ValId s = ir_reduce(g, OP_SUM, sq, 3, L);
  ValId n = ir_const(g, 1.0 / (double)(B * 2), dt, &g->nodes[s].shape, L);
  out(c, ir_binary(g, OP_MUL, s, n, L));
  out(c, h);
}

START_TEST(mlp_levels) {
  for (int lvl = 0; lvl <= 2; lvl += 2)
    for (DType dt = DT_F32; dt <= DT_F64; dt++) {
      G c;
      g_init(&c);
      build_mlp(&c, dt, 65);
      compare_opt(&c, 1e-4, lvl ? "mlp O2" : "mlp O0", lvl, 1);
      g_free(&c);
    }
}
END_TEST

/* The MLP's scalar loss only (ad_grad_entry needs a rank-0 objective). */
static void build_mlp_loss(G *c, DType dt, int64_t B) {
  build_mlp(c, dt, B);
  Graph *g = c->t.g;
  ValId l = g->outputs[0].val;
  g->noutputs = 0;
  out(c, ir_reshape(g, l, &TU_SHAPE0, L));
}

START_TEST(gradients) {
  for (DType dt = DT_F32; dt <= DT_F64; dt++) {
    G c;
    g_init(&c);
    build_mlp_loss(&c, dt, 33);
    Graph *gg = ad_grad_entry(&c.t.prog, c.t.g);
    ck_assert_msg(gg != NULL, "ad_grad_entry: %s", tu_last_diag(&c.t));
    ck_assert_int_eq(gg->noutputs, 1 + c.t.prog.nparams);
    compare_entry(&c, gg, 1e-4, "mlp loss_grad O0", 0, 1);
    compare_entry(&c, gg, 1e-4, "mlp loss_grad O2", 2, 1);
    g_free(&c);
  }
}
END_TEST

/* The pool splits only loops over independent outputs: 1 and 2 threads give the same bits. */
START_TEST(threads_bit_identical) {
  G c;
  g_init(&c);
  build_mlp_loss(&c, DT_F32, 517);
  Graph *gg = ad_grad_entry(&c.t.prog, c.t.g);
  ck_assert(gg);
  Program *p = &c.t.prog;
  GrTensor params[8];
  ck_assert_int_eq(interp_init_params(p, 3, params), 0);
  CgOptions o;
  cg_options_default(&o);
  o.par_grain = 64; /* split even small loops */
  CgJit *j = cg_jit_compile(&c.t.ctx, p, &o);
  ck_assert(j);
  int no = gg->noutputs;
  GrTensor one[8], two[8];
  char err[256];
  ck_assert_int_eq(cg_jit_run(j, gg->name, c.in, params, one, 1, 2, err, sizeof err), 0);
  GrPool *pool = gr_pool_create(2);
  ck_assert(pool);
  cg_jit_set_pool(j, pool);
  for (int rep = 0; rep < 3; rep++) {
    ck_assert_int_eq(cg_jit_run(j, gg->name, c.in, params, two, 1, 2, err, sizeof err), 0);
    for (int k = 0; k < no; k++) {
      size_t bytes = (size_t)tu_numel(&one[k]) * 4;
      ck_assert_msg(!memcmp(one[k].data, two[k].data, bytes), "output %d differs with 2 threads", k);
      gr_tensor_free(&two[k]);
    }
  }
  for (int k = 0; k < no; k++) gr_tensor_free(&one[k]);
  for (int i = 0; i < p->nparams; i++) gr_tensor_free(&params[i]);
  cg_jit_free(j);
  gr_pool_destroy(pool);
  g_free(&c);
}
END_TEST

/* ---- AOT: object file + gr_module, linked with a small C driver, vs the JIT ---------------- */
static const char *aot_driver =
    "#include <stdio.h>\n#include <stdlib.h>\n#include \"gradrt.h\"\n"
    "extern const GrModuleInfo gr_module;\n"
    "int main(void) {\n"
    "  const GrModuleInfo *m = &gr_module;\n"
    "  printf(\"%d %d %d %s\\n\", m->abi_version, m->nparams, m->nentries, m->graph_hash);\n"
    "  for (int e = 0; e < m->nentries; e++) {\n"
    "    const GrEntryInfo *en = &m->entries[e];\n"
    "    void *args[64]; int k = 0;\n"
    "    for (int i = 0; i < en->ninputs; i++) {\n"
    "      int64_t n = gr_numel(&en->inputs[i]); float *x = gr_alloc((size_t)n * 4);\n"
    "      for (int64_t j = 0; j < n; j++) x[j] = (float)((j % 13) * 0.1 - 0.6);\n"
    "      args[k++] = x;\n"
    "    }\n"
    "    for (int i = 0; i < m->nparams; i++) {\n"
    "      void *b = gr_alloc((size_t)gr_numel(&m->params[i]) * 4); gr_init_param(&m->params[i], i, 11, b); args[k++] = b;\n"
    "    }\n"
    "    for (int i = 0; i < en->noutputs; i++) args[k++] = gr_alloc((size_t)gr_numel(&en->outputs[i]) * 4 + 4);\n"
    "    void *ws = gr_alloc((size_t)en->workspace_bytes + 64);\n"
    "    GrRunCtx rc = {.seed = 5, .step = 9, .pool = NULL};\n"
    "    en->fn(args, ws, &rc);\n"
    "    for (int i = 0; i < en->noutputs; i++) {\n"
    "      float *o = args[en->ninputs + m->nparams + i];\n"
    "      for (int64_t j = 0; j < gr_numel(&en->outputs[i]); j++) printf(\"%.9g\\n\", o[j]);\n"
    "    }\n"
    "  }\n"
    "  return 0;\n"
    "}\n";

static int sh(const char *cmd) { return system(cmd); }

/* A libgradrt.a built with sanitizers needs them at link time too. */
#if defined(__SANITIZE_ADDRESS__)
#define SAN_LDFLAGS "-fsanitize=address,undefined"
#else
#define SAN_LDFLAGS ""
#endif

START_TEST(aot_object_matches_jit) {
  G c;
  g_init(&c);
  build_mlp_loss(&c, DT_F32, 9);
  Graph *gg = ad_grad_entry(&c.t.prog, c.t.g);
  ck_assert(gg);
  Program *p = &c.t.prog;
  char *dir = tu_tmpdir();
  ck_assert(dir);
  char obj[512], src[512], exe[512], cmd[2048];
  snprintf(obj, sizeof obj, "%s/m.o", dir);
  snprintf(src, sizeof src, "%s/t.c", dir);
  snprintf(exe, sizeof exe, "%s/t", dir);
  CgOptions o;
  cg_options_default(&o);
  o.cpu = "x86-64-v3";
  o.source_name = "test.grad";
  ck_assert_int_eq(cg_emit_object(&c.t.ctx, p, &o, obj, 0), 0);
  ck_assert_int_eq(tu_write_file(src, aot_driver, strlen(aot_driver)), 0);
  const char *build = getenv("BUILD") ? getenv("BUILD") : "build";
  snprintf(cmd, sizeof cmd, "cc %s -Iruntime -o %s %s %s %s/libgradrt.a -lopenblas -lmvec -lm -lpthread -lz -ldl -lffi",
           SAN_LDFLAGS, exe, src, obj, build);
  ck_assert_int_eq(sh(cmd), 0);
  snprintf(cmd, sizeof cmd, "ASAN_OPTIONS=detect_leaks=0 %s > %s/out.txt", exe, dir); /* the driver frees nothing */
  ck_assert_int_eq(sh(cmd), 0);
  snprintf(cmd, sizeof cmd, "%s/out.txt", dir);
  FILE *f = fopen(cmd, "r");
  ck_assert(f);
  int abi, np, ne;
  char hash[64];
  ck_assert_int_eq(fscanf(f, "%d %d %d %63s", &abi, &np, &ne, hash), 4);
  ck_assert_int_eq(abi, GR_ABI_VERSION);
  ck_assert_int_eq(np, p->nparams);
  ck_assert_int_eq(ne, 2);
  ck_assert_int_eq((int)strlen(hash), 16);
  /* the same calls through the JIT */
  GrTensor params[8];
  ck_assert_int_eq(interp_init_params(p, 11, params), 0);
  GrTensor x = tu_tensor(DT_F32, c.t.g->inputs[0].shape);
  for (int64_t jx = 0; jx < tu_numel(&x); jx++) tu_set(&x, jx, (float)((jx % 13) * 0.1 - 0.6));
  cg_options_default(&o);
  CgJit *j = cg_jit_compile(&c.t.ctx, p, &o);
  ck_assert(j);
  for (int e = 0; e < 2; e++) {
    const Graph *eg = p->entries[e];
    GrTensor outs[8];
    char err[256];
    ck_assert_int_eq(cg_jit_run(j, eg->name, &x, params, outs, 5, 9, err, sizeof err), 0);
    for (int k = 0; k < eg->noutputs; k++) {
      for (int64_t i = 0; i < tu_numel(&outs[k]); i++) {
        double v;
        ck_assert_int_eq(fscanf(f, "%lf", &v), 1);
        double w = tu_get(&outs[k], i);
        ck_assert_msg(fabs(v - w) <= 1e-5 * (1 + fabs(w)), "entry %s output %d[%lld]: aot %g jit %g", eg->name, k,
                      (long long)i, v, w);
      }
      gr_tensor_free(&outs[k]);
    }
  }
  fclose(f);
  cg_jit_free(j);
  gr_tensor_free(&x);
  for (int i = 0; i < p->nparams; i++) gr_tensor_free(&params[i]);
  /* a whole executable: gr_main's `info` reads the table */
  o.rt_dir = build;
  o.ldflags = SAN_LDFLAGS;
  snprintf(exe, sizeof exe, "%s/model", dir);
  ck_assert_int_eq(cg_build_executable(&c.t.ctx, p, &o, exe), 0);
  snprintf(cmd, sizeof cmd, "ASAN_OPTIONS=detect_leaks=0 %s info | grep -q 'graph hash  %s'", exe, hash);
  ck_assert_msg(sh(cmd) == 0, "%s info did not print the graph hash", exe);
  snprintf(cmd, sizeof cmd, "ldd %s | grep -qi llvm", exe);
  ck_assert_msg(sh(cmd) != 0, "the executable loads LLVM");
  tu_rmtree(dir);
  free(dir);
  g_free(&c);
}
END_TEST

START_TEST(dumps) {
  G c;
  g_init(&c);
  build_mlp(&c, DT_F32, 16);
  static const char *const stages[] = {"opt", "sched", "llvm", "asm"};
  static const char *const marks[] = {"= matmul", "gemm", "define void @test(", "gr_gemm"};
  for (int i = 0; i < 4; i++) {
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    CgOptions o;
    cg_options_default(&o);
    cg_dump(&c.t.ctx, &c.t.prog, stages[i], &o, f);
    fclose(f);
    ck_assert_msg(strstr(buf, marks[i]), "dump --stage=%s lacks '%s'", stages[i], marks[i]);
    free(buf);
  }
  ck_assert(!ctx_failed(&c.t.ctx));
  cg_dump(&c.t.ctx, &c.t.prog, "nope", NULL, stderr);
  ck_assert(ctx_failed(&c.t.ctx));
  g_free(&c);
}
END_TEST

START_TEST(reserved_entry_names) {
  static const char *const bad[] = {"exp", "expf", "tanh", "main", "gr_main", "cblas_sgemm"};
  for (int i = 0; i < 6; i++) {
    G c;
    g_init(&c);
    c.t.g->name = bad[i];
    out(&c, gin(&c, DT_F32, TU_SHAPE(3), -1, 1, 0));
    CgJit *j = cg_jit_compile(&c.t.ctx, &c.t.prog, NULL);
    ck_assert_msg(j == NULL && ctx_failed(&c.t.ctx), "entry '%s' was accepted", bad[i]);
    ck_assert(strstr(tu_last_diag(&c.t), "reserved"));
    g_free(&c);
  }
}
END_TEST

/* ---- passes ---------------------------------------------------------------------------------------- */
static int count_op(const Graph *g, Op op) {
  int n = 0;
  for (int i = 0; i < g->nnodes; i++) n += g->nodes[i].op == op;
  return n;
}

START_TEST(pass_contracts) {
  G c;
  g_init(&c);
  Graph *g = c.t.g;
  Shape s = TU_SHAPE(4, 3);
  ValId x = gin(&c, DT_F32, s, -1, 1, 0);
  ValId p0 = tu_param(&c.t, "p0", DT_F32, s, INIT_ZEROS, 0, 0);
  ValId p1 = tu_param(&c.t, "p1", DT_F32, s, INIT_ZEROS, 0, 0);
  ValId r1 = ir_random(g, OP_RANDN, DT_F32, &s, L), r2 = ir_random(g, OP_RANDN, DT_F32, &s, L);
  ValId one = ir_const(g, 1, DT_F32, &s, L), zero = ir_const(g, 0, DT_F32, &s, L);
  ValId k = ir_binary(g, OP_MUL, ir_const(g, 2, DT_F32, &s, L), ir_const(g, 3, DT_F32, &s, L), L);
  ValId t = ir_binary(g, OP_ADD, ir_binary(g, OP_MUL, x, one, L), zero, L);
  ValId a = ir_binary(g, OP_ADD, ir_unary(g, OP_EXP, t, L), ir_unary(g, OP_EXP, x, L), L);
  ValId sum = ir_binary(g, OP_ADD, ir_binary(g, OP_ADD, p0, p1, L), ir_binary(g, OP_ADD, r1, r2, L), L);
  ir_unary(g, OP_LOG, x, L); /* dead */
  out(&c, ir_binary(g, OP_ADD, ir_binary(g, OP_MUL, a, k, L), sum, L));
  Graph *o = opt_run(g, &c.t.prog);
  ck_assert_int_eq(count_op(o, OP_EXP), 1);     /* simplify + CSE merged exp(x*1+0), exp(x) */
  ck_assert_int_eq(count_op(o, OP_PARAM), 2);   /* distinct params never merged */
  ck_assert_int_eq(count_op(o, OP_RANDN), 2);   /* distinct streams never merged */
  ck_assert_int_eq(count_op(o, OP_LOG), 0);     /* dead code removed */
  int k6 = 0;
  for (int i = 0; i < o->nnodes; i++) k6 |= o->nodes[i].op == OP_CONST && o->nodes[i].attr.scalar == 6;
  ck_assert_msg(k6, "2*3 was not folded");
  char buf[256];
  ck_assert_int_eq(ir_verify(o, &c.t.prog, buf, sizeof buf), 0);
  graph_free(o);
  compare_opt(&c, 1e-6, "passes", 0, 1);
  compare_opt(&c, 1e-6, "no passes", 0, 0);
  g_free(&c);
}
END_TEST

START_TEST(memory_plan) {
  /* a long chain of materialized intermediates: buffers must be reused, never overlap */
  G c;
  g_init(&c);
  Graph *g = c.t.g;
  ValId x = gin(&c, DT_F32, TU_SHAPE(64, 64), -1, 1, 0);
  ValId h = x;
  for (int i = 0; i < 8; i++) {
    ValId t = ir_unary(g, OP_TANH, h, L), sg = ir_unary(g, OP_SIGMOID, t, L); /* siblings */
    h = ir_matmul(g, ir_binary(g, OP_MUL, t, sg, L), ir_binary(g, OP_ADD, sg, x, L), 0, 0, L);
  }
  out(&c, h);
  Graph *o = opt_run(g, &c.t.prog);
  Sched *s = sched_build(o, &c.t.prog);
  int64_t one = 64 * 64 * 4;
  ck_assert_msg(s->ws_bytes <= 6 * one, "peak %lld bytes for a chain", (long long)s->ws_bytes);
  int merged = 0;
  for (int i = 0; i < s->nk; i++) merged += s->k[i].nmore;
  ck_assert_msg(merged >= 8, "sibling fusion merged %d kernels", merged);
  for (int i = 0; i < s->nk; i++) {
    const Kernel *k = &s->k[i];
    for (int d = 0; d <= k->nmore; d++) {
      const Buf *dst = d == 0 ? &k->dst : &k->more_dst[d - 1];
      if (dst->kind != BUF_WS) continue;
      for (int r = 0; r < k->nreads; r++) {
        const Buf *b = &s->buf[k->reads[r]];
        if (b->kind != BUF_WS) continue;
        int overlap = dst->offset < b->offset + b->bytes && b->offset < dst->offset + dst->bytes;
        ck_assert_msg(!overlap, "kernel %d writes over its input", i);
      }
      ck_assert_int_eq(dst->offset % 64, 0);
    }
  }
  sched_free(s);
  graph_free(o);
  compare(&c, 1e-4, "chain");
  g_free(&c);
}
END_TEST

int main(void) {
  Suite *s = suite_create("codegen");
  TCase *tc = tcase_create("ops");
  tcase_set_timeout(tc, 60);
  tcase_add_loop_test(tc, unary_float, 0, NELEM(unary_ops));
  tcase_add_test(tc, unary_int);
  tcase_add_loop_test(tc, binary_all, 0, NELEM(binary_ops));
  tcase_add_loop_test(tc, reductions, 0, NELEM(reduce_ops));
  tcase_add_test(tc, casts);
  tcase_add_test(tc, leaves_and_where);
  tcase_add_loop_test(tc, random_bits, 0, 2);
  tcase_add_test(tc, shape_ops);
  tcase_add_test(tc, matmuls);
  tcase_add_test(tc, externs);
  tcase_add_test(tc, op_table_covered);
  suite_add_tcase(s, tc);
  TCase *tp = tcase_create("pipeline");
  tcase_set_timeout(tp, 60);
  tcase_add_test(tp, mlp_levels);
  tcase_add_test(tp, gradients);
  tcase_add_test(tp, threads_bit_identical);
  tcase_add_test(tp, aot_object_matches_jit);
  tcase_add_test(tp, dumps);
  tcase_add_test(tp, reserved_entry_names);
  tcase_add_test(tp, pass_contracts);
  tcase_add_test(tp, memory_plan);
  suite_add_tcase(s, tp);
  SRunner *sr = srunner_create(s);
  srunner_run_all(sr, CK_NORMAL);
  int nf = srunner_ntests_failed(sr);
  srunner_free(sr);
  return nf ? 1 : 0;
}
