/* test_autodiff.c: every op's VJP/JVP rule against finite differences, then whole graphs.
 *
 * The op test walks ops.def: an op without rules fails unless it is a leaf, F_ZEROGRAD
 * or F_NODIFF. Each differentiable op is built in a few shapes (broadcast operands,
 * each reduction axis, transposed matmuls) with inputs drawn inside its domain, and
 * gc_check_entry_opts() compares reverse and forward mode with central differences in
 * f64. The second-order check differentiates the graph out = grad(sum(y * r)) . v again
 * (grad of grad and jvp of grad) and compares with differences of the gradient.
 * Graph-level tests cover the shapes of real losses (MLP, softmax cross-entropy, layer
 * norm, Laplace-kernel MMD on coincident points, a stop_grad target, a time-conditioned
 * net), the defined values at singular points and the user diagnostics.
 */
#include <check.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ad_rules.h"
#include "autodiff.h"
#include "gradcheck.h"
#include "interp.h"
#include "testutil.h"

#define NL SRCLOC_NONE
#define MAXIN 8

/* ---- a graph under test with per-input domains ----------------------------------------- */
typedef struct {
  TuGraph t;
  double range[MAXIN][2];
  int nin;
  ValId x[MAXIN]; /* float inputs, in order */
} Case;

static void case_init(Case *c) {
  memset(c, 0, sizeof *c);
  tu_graph_init(&c->t);
}
static ValId cin(Case *c, Shape s, double lo, double hi) {
  ck_assert_int_lt(c->nin, MAXIN);
  char name[16];
  snprintf(name, sizeof name, "x%d", c->nin);
  c->range[c->nin][0] = lo, c->range[c->nin][1] = hi;
  return c->x[c->nin++] = tu_input(&c->t, name, DT_F64, s);
}
static ValId k0(Graph *g, ValId like) {
  Shape s = ir_node(g, like)->shape;
  return ir_const(g, 0.0, ir_node(g, like)->dtype, &s, NL);
}
/* sum over every axis, as a rank-0 value */
static ValId sum_all(Graph *g, ValId v) {
  Shape s0 = TU_SHAPE0;
  uint32_t all = (1u << ir_node(g, v)->shape.rank) - 1;
  return ir_must(g, ir_reshape(g, ir_must(g, ir_reduce(g, OP_SUM, v, all, NL)), &s0, NL));
}
static ValId dot_all(Graph *g, ValId a, ValId b) {
  return sum_all(g, ir_must(g, ir_binary(g, OP_MUL, a, b, NL)));
}
static int case_check(Case *c, uint64_t seed, double tol) {
  char err[256];
  ck_assert_msg(ir_verify(c->t.g, &c->t.prog, err, sizeof err) == 0, "verify: %s", err);
  GcOptions o = {seed, tol, (const double(*)[2])c->range, c->nin, 0};
  FILE *rep = getenv("AD_VERBOSE") ? stderr : NULL;
  int rc = gc_check_entry_opts(&c->t.ctx, &c->t.prog, c->t.g, &o, rep);
  if (rc < 0) fprintf(stderr, "gradcheck error: %s\n", tu_last_diag(&c->t));
  return rc;
}

/* Input domains per op (uniform ranges that avoid kinks and singularities). */
static void op_domain(Op op, int arg, double *lo, double *hi) {
  *lo = -1.5, *hi = 1.5;
  switch (op) {
  case OP_LOG:
  case OP_SQRT:
  case OP_RSQRT: *lo = 0.3, *hi = 2; break;
  case OP_LOG1P: *lo = -0.5, *hi = 2; break;
  case OP_TAN: *lo = -1.2, *hi = 1.2; break;
  case OP_POW:
    if (arg == 0) *lo = 0.5, *hi = 2;
    break;
  case OP_DIV:
    if (arg == 1) *lo = 0.5, *hi = 2;
    break;
  default: break;
  }
}

/* Integer indices [3, 1, 1, 0, 2] % n (duplicates, so scatter_add accumulates): built
 * from iota because graphs have no integer array constants. */
static ValId test_indices(Graph *g, int64_t n) {
  Shape s = TU_SHAPE(5);
  ValId io = ir_iota(g, DT_F64, &s, 0, NL);                               /* 0 1 2 3 4 */
  ValId sq = ir_binary(g, OP_MUL, io, io, NL);                            /* 0 1 4 9 16 */
  ValId v = ir_binary(g, OP_ADD, sq, ir_const(g, 3, DT_F64, &s, NL), NL); /* 3 4 7 12 19 */
  /* v mod n = v - n floor(v / n) */
  ValId nn = ir_const(g, (double)n, DT_F64, &s, NL);
  ValId q = ir_unary(g, OP_FLOOR, ir_binary(g, OP_DIV, v, nn, NL), NL);
  ValId m = ir_binary(g, OP_SUB, v, ir_binary(g, OP_MUL, q, nn, NL), NL);
  return ir_must(g, ir_cast(g, m, DT_I32, NL));
}

/* Builds variant `var` of a graph exercising `op`; IR_ERR when there is no such variant. */
static ValId build_op_case(Case *c, Op op, int var) {
  Graph *g = c->t.g;
  double lo, hi, lo1, hi1;
  op_domain(op, 0, &lo, &hi);
  op_domain(op, 1, &lo1, &hi1);
  switch (op_info[op].kind) {
  case K_UNARY: {
    if (var > 1 || op == OP_CAST) return IR_ERR;
    ValId x = cin(c, var ? TU_SHAPE(5) : TU_SHAPE(3, 4), lo, hi);
    return ir_unary(g, op, x, NL);
  }
  case K_BINARY: {
    Shape sa[3] = {TU_SHAPE(3, 4), TU_SHAPE(3, 1), TU_SHAPE(2, 3)};
    Shape sb[3] = {TU_SHAPE(3, 4), TU_SHAPE(4), TU_SHAPE0};
    if (var > 2) return IR_ERR;
    ValId a = cin(c, sa[var], lo, hi), b = cin(c, sb[var], lo1, hi1);
    if (ir_broadcast_pair(g, &a, &b, op_name(op), NL)) return IR_ERR;
    return ir_binary(g, op, a, b, NL);
  }
  case K_TERNARY: {
    if (var > 1) return IR_ERR;
    ValId ci = cin(c, TU_SHAPE(3, 4), -1, 1);
    ValId cond = ir_binary(g, OP_GT, ci, k0(g, ci), NL);
    ValId a = cin(c, TU_SHAPE(3, 4), -1.5, 1.5),
          b = cin(c, var ? TU_SHAPE(4) : TU_SHAPE(3, 4), -1.5, 1.5);
    ValId a2 = a;
    if (ir_broadcast_pair(g, &a2, &b, "where", NL)) return IR_ERR;
    return ir_where(g, cond, a2, b, NL);
  }
  case K_REDUCE: {
    static const uint32_t axes[] = {1, 2, 4, 5, 7};
    if (var >= 5) return IR_ERR;
    return ir_reduce(g, op, cin(c, TU_SHAPE(3, 4, 2), -1.5, 1.5), axes[var], NL);
  }
  case K_MATMUL: {
    if (var > 4) return IR_ERR;
    int ta = var & 1, tb = var >> 1 & 1;
    if (var == 4) {
      ValId a = cin(c, TU_SHAPE(2, 3, 4), -1, 1), b = cin(c, TU_SHAPE(2, 4, 5), -1, 1);
      return ir_matmul(g, a, b, 0, 0, NL);
    }
    ValId a = cin(c, ta ? TU_SHAPE(4, 3) : TU_SHAPE(3, 4), -1, 1);
    ValId b = cin(c, tb ? TU_SHAPE(5, 4) : TU_SHAPE(4, 5), -1, 1);
    return ir_matmul(g, a, b, ta, tb, NL);
  }
  case K_SHAPE: break;
  default: return IR_ERR;
  }
  if (var > 1) return IR_ERR;
  switch (op) {
  case OP_BROADCAST: {
    Shape to = var ? TU_SHAPE(2, 3) : TU_SHAPE(3, 4);
    return ir_broadcast(g, cin(c, var ? TU_SHAPE(1, 1) : TU_SHAPE(3, 1), -1, 1), &to, NL);
  }
  case OP_RESHAPE: {
    Shape to = var ? TU_SHAPE(12) : TU_SHAPE(2, 6);
    return ir_reshape(g, cin(c, TU_SHAPE(3, 4), -1, 1), &to, NL);
  }
  case OP_TRANSPOSE: {
    int32_t p0[IR_MAXRANK] = {2, 0, 1}, p1[IR_MAXRANK] = {1, 2, 0};
    return ir_transpose(g, cin(c, TU_SHAPE(2, 3, 4), -1, 1), var ? p1 : p0, NL);
  }
  case OP_SLICE:
    return var ? ir_slice(g, cin(c, TU_SHAPE(5, 3), -1, 1), 1, 0, 2, NL)
               : ir_slice(g, cin(c, TU_SHAPE(5, 3), -1, 1), 0, 1, 4, NL);
  case OP_PAD: return ir_pad(g, cin(c, TU_SHAPE(3, 2), -1, 1), var, 1, 2, NL);
  case OP_CONCAT:
    return var ? ir_concat(g, cin(c, TU_SHAPE(2, 3), -1, 1), cin(c, TU_SHAPE(2, 1), -1, 1), 1, NL)
               : ir_concat(g, cin(c, TU_SHAPE(2, 3), -1, 1), cin(c, TU_SHAPE(4, 3), -1, 1), 0, NL);
  case OP_GATHER:
    return var ? ir_gather(g, cin(c, TU_SHAPE(2, 3), -1, 1), test_indices(g, 3), 1, NL)
               : ir_gather(g, cin(c, TU_SHAPE(4, 3), -1, 1), test_indices(g, 4), 0, NL);
  case OP_SCATTERADD:
    return var ? ir_scatter_add(g, cin(c, TU_SHAPE(2, 5), -1, 1), test_indices(g, 3), 1, 3, NL)
               : ir_scatter_add(g, cin(c, TU_SHAPE(5, 3), -1, 1), test_indices(g, 4), 0, 4, NL);
  default: return IR_ERR;
  }
}

/* out = sum(grad_x(sum(y * r)) . v) over every float input x: differentiating it again is
 * a second-order check (reverse: grad of grad; forward: jvp of grad). */
static ValId second_order(Case *c, ValId y) {
  Graph *g = c->t.g;
  int n = c->nin;
  ValId r = tu_input(&c->t, "r", DT_F64, ir_node(g, y)->shape), grads[MAXIN];
  ck_assert_int_eq(ad_vjp(g, dot_all(g, y, r), IR_ERR, n, c->x, grads, NL), 0);
  ValId out = IR_ERR;
  for (int i = 0; i < n; i++) {
    char name[16];
    snprintf(name, sizeof name, "v%d", i);
    ValId v = tu_input(&c->t, name, DT_F64, ir_node(g, c->x[i])->shape);
    ValId d = dot_all(g, grads[i], v);
    out = out == IR_ERR ? d : ir_must(g, ir_binary(g, OP_ADD, out, d, NL));
  }
  return out;
}

START_TEST(test_every_op_has_rules) {
  for (int op = 0; op < OP_COUNT; op++) {
    const OpInfo *oi = &op_info[op];
    int exempt = oi->kind == K_LEAF || (oi->flags & (F_ZEROGRAD | F_NODIFF));
    ck_assert_msg(exempt || ad_has_rules((Op)op), "op '%s' has no VJP/JVP rule", oi->name);
    if (oi->flags & (F_ZEROGRAD | F_NODIFF))
      ck_assert_msg(oi->diff == 0, "%s: zero-grad op with diff bits", oi->name);
  }
}
END_TEST

/* F_ZEROGRAD ops pass nothing in either mode: the result is one zeros constant. */
START_TEST(test_zerograd_ops_pass_nothing) {
  for (int op = 0; op < OP_COUNT; op++) {
    const OpInfo *oi = &op_info[op];
    if (!(oi->flags & F_ZEROGRAD) || oi->kind == K_LEAF) continue;
    TuGraph t;
    tu_graph_init(&t);
    Graph *g = t.g;
    ValId x = tu_input(&t, "x", DT_F64, TU_SHAPE(3)), y;
    y = oi->kind == K_UNARY ? ir_unary(g, (Op)op, x, NL)
                            : ir_binary(g, (Op)op, x, ir_unary(g, OP_SIN, x, NL), NL);
    ValId L = sum_all(g, ir_binary(g, OP_MUL, y, y, NL)), gr, tl;
    int n0 = g->nnodes;
    ck_assert_int_eq(ad_vjp(g, L, IR_ERR, 1, &x, &gr, NL), 0);
    ck_assert_msg(ir_node(g, gr)->op == OP_CONST && ir_node(g, gr)->attr.scalar == 0, "%s",
                  oi->name);
    ck_assert_msg(g->nnodes - n0 <= 2, "%s: %d nodes emitted", oi->name,
                  g->nnodes - n0); /* seed, zeros */
    ck_assert_int_eq(ad_jvp(g, 1, &x, &x, 1, &L, &tl, NL), 0);
    ck_assert_msg(ir_node(g, tl)->op == OP_CONST && ir_node(g, tl)->attr.scalar == 0, "%s",
                  oi->name);
    tu_graph_free(&t);
  }
}
END_TEST

/* One op (the loop index), every variant, first and second order. */
START_TEST(test_op_rules_vs_finite_differences) {
  Op op = (Op)_i;
  const OpInfo *oi = &op_info[op];
  if (oi->kind == K_LEAF || (oi->flags & (F_ZEROGRAD | F_NODIFF)) || op == OP_CAST) return;
  for (int var = 0;; var++) {
    for (int order = 1; order <= 2; order++) {
      Case c;
      case_init(&c);
      ValId y = build_op_case(&c, op, var);
      if (y == IR_ERR) {
        ck_assert_msg(var > 0, "%s: no test case builds: %s", oi->name, tu_last_diag(&c.t));
        tu_graph_free(&c.t);
        return;
      }
      graph_add_output(c.t.g, "y", order == 1 ? y : second_order(&c, y));
      int rc = case_check(&c, 100 + (uint64_t)var, 1e-6);
      ck_assert_msg(rc == 0,
                    "op %s variant %d order %d: gradcheck %s (AD_VERBOSE=1 shows the table)",
                    oi->name, var, order, rc < 0 ? "error" : "mismatch");
      tu_graph_free(&c.t);
    }
  }
}
END_TEST

/* ---- evaluation helpers for graph-level tests ----------------------------------------- */
static void run_graph(TuGraph *t, Graph *g, GrTensor *in, GrTensor *params, GrTensor *out) {
  char err[256];
  int rc = interp_run(g, &t->prog, in, params, out, 7, 0, err, sizeof err);
  ck_assert_msg(rc == 0, "interp: %s", err);
}
static void free_all(GrTensor *t, int n) {
  for (int i = 0; i < n; i++) gr_tensor_free(&t[i]);
}

/* ---- cast: exact check (differences of an f32 round trip are too noisy) ---------------- */
START_TEST(test_cast_rules) {
  TuGraph t;
  tu_graph_init(&t);
  Graph *g = t.g;
  ValId x = tu_input(&t, "x", DT_F64, TU_SHAPE(3)), w = tu_input(&t, "w", DT_F32, TU_SHAPE(3));
  ValId y = ir_cast(g, ir_binary(g, OP_MUL, ir_cast(g, x, DT_F32, NL), w, NL), DT_F64, NL);
  ValId ct = tu_input(&t, "ct", DT_F64, TU_SHAPE(3)), gx, tx;
  ck_assert_int_eq(ad_vjp(g, y, ct, 1, &x, &gx, NL), 0);
  ck_assert_int_eq(ad_jvp(g, 1, &x, &ct, 1, &y, &tx, NL), 0);
  graph_add_output(g, "gx", gx);
  graph_add_output(g, "tx", tx);
  ck_assert_int_eq(ir_node(g, gx)->dtype, DT_F64);
  double xv[3] = {1, 2, 3}, wv[3] = {0.5, -2, 4}, cv[3] = {1, 3, -1};
  GrTensor in[3] = {tu_tensor_vals(DT_F64, TU_SHAPE(3), xv),
                    tu_tensor_vals(DT_F32, TU_SHAPE(3), wv),
                    tu_tensor_vals(DT_F64, TU_SHAPE(3), cv)},
           out[2];
  run_graph(&t, g, in, NULL, out);
  for (int i = 0; i < 3; i++) {
    ck_assert(tu_get(&out[0], i) == wv[i] * cv[i]);
    ck_assert(tu_get(&out[1], i) == wv[i] * cv[i]);
  }
  free_all(in, 3);
  free_all(out, 2);
  tu_graph_free(&t);
}
END_TEST

/* ---- whole graphs ----------------------------------------------------------------------- */
/* x [8, 3] -> tanh(x W1 + b1) [8, 16] -> W2 + b2 [8, 2]; loss = mean((out - y)^2). */
static ValId mlp_loss(TuGraph *t, ValId x, ValId y) {
  Graph *g = t->g;
  DType dt = ir_node(g, x)->dtype;
  ValId w1 = tu_param(t, "w1", dt, TU_SHAPE(3, 16), INIT_GLOROT, 0, 0);
  ValId b1 = tu_param(t, "b1", dt, TU_SHAPE(16), INIT_NORMAL, 0.1, 0);
  ValId w2 = tu_param(t, "w2", dt, TU_SHAPE(16, 2), INIT_GLOROT, 0, 0);
  ValId b2 = tu_param(t, "b2", dt, TU_SHAPE(2), INIT_ZEROS, 0, 0);
  ValId h = ir_matmul(g, x, w1, 0, 0, NL);
  ck_assert_int_eq(ir_broadcast_pair(g, &h, &b1, "+", NL), 0);
  h = ir_unary(g, OP_TANH, ir_binary(g, OP_ADD, h, b1, NL), NL);
  ValId o = ir_matmul(g, h, w2, 0, 0, NL);
  ck_assert_int_eq(ir_broadcast_pair(g, &o, &b2, "+", NL), 0);
  o = ir_binary(g, OP_ADD, o, b2, NL);
  ValId d = ir_binary(g, OP_SUB, o, y, NL);
  ValId s = sum_all(g, ir_binary(g, OP_MUL, d, d, NL));
  return ir_must(g, ir_binary(g, OP_MUL, s, ir_scalar(g, 1.0 / 16, dt, NL), NL));
}

/* Training runs in f32: the derived entry in f32 agrees with the f64 one (rules build
 * their constants in the node's dtype; nothing is promoted or truncated by accident). */
START_TEST(test_f32_grad_entry_matches_f64) {
  double grads[2][4][48];
  for (int k = 0; k < 2; k++) {
    DType dt = k ? DT_F32 : DT_F64;
    TuGraph t;
    tu_graph_init(&t);
    ValId x = tu_input(&t, "x", dt, TU_SHAPE(8, 3)), y = tu_input(&t, "y", dt, TU_SHAPE(8, 2));
    graph_add_output(t.g, "loss", mlp_loss(&t, x, y));
    Graph *ge = ad_grad_entry(&t.prog, t.g);
    ck_assert_ptr_nonnull(ge);
    for (int v = 0; v < ge->nnodes; v++)
      ck_assert_msg(ir_node(ge, v)->dtype == dt, "node %d is %s", v,
                    dtype_name(ir_node(ge, v)->dtype));
    GrTensor in[2] = {tu_tensor(dt, TU_SHAPE(8, 3)), tu_tensor(dt, TU_SHAPE(8, 2))}, par[4], out[5];
    tu_fill_uniform(&in[0], -1, 1, 1);
    tu_fill_uniform(&in[1], -1, 1, 2);
    interp_init_params(&t.prog, 5, par);
    run_graph(&t, ge, in, par, out);
    for (int p = 0; p < 4; p++)
      for (int64_t i = 0; i < tu_numel(&out[1 + p]); i++) grads[k][p][i] = tu_get(&out[1 + p], i);
    if (k) {
      for (int p = 0; p < 4; p++) {
        char msg[256];
        ck_assert_msg(tu_close_arr(grads[1][p], grads[0][p], tu_numel(&out[1 + p]), 1e-4, 1e-6, msg,
                                   sizeof msg),
                      "param %d: %s", p, msg);
      }
    }
    free_all(in, 2);
    free_all(par, 4);
    free_all(out, 5);
    tu_graph_free(&t);
  }
}
END_TEST

START_TEST(test_mlp_gradcheck_and_grad_entry) {
  TuGraph t;
  tu_graph_init(&t);
  ValId x = tu_input(&t, "x", DT_F64, TU_SHAPE(8, 3)),
        y = tu_input(&t, "y", DT_F64, TU_SHAPE(8, 2));
  graph_add_output(t.g, "loss", mlp_loss(&t, x, y));
  ck_assert_int_eq(gc_check_entry(&t.ctx, &t.prog, t.g, 3, 1e-6, NULL), 0);
  Graph *ge = ad_grad_entry(&t.prog, t.g);
  ck_assert_ptr_nonnull(ge);
  ck_assert_str_eq(ge->name, "test_grad");
  ck_assert_int_eq(ge->noutputs, 5);
  ck_assert_str_eq(ge->outputs[0].name, "loss");
  ck_assert_str_eq(ge->outputs[1].name, "grad:w1");
  ck_assert_str_eq(ge->outputs[4].name, "grad:b2");
  char err[256];
  ck_assert_msg(ir_verify(ge, &t.prog, err, sizeof err) == 0, "%s", err);
  /* the derived entry's gradient of b2 against differences of the loss entry */
  GrTensor in[2] = {tu_tensor(DT_F64, TU_SHAPE(8, 3)), tu_tensor(DT_F64, TU_SHAPE(8, 2))}, par[4],
           out[5], lo[1];
  tu_fill_uniform(&in[0], -1, 1, 1);
  tu_fill_uniform(&in[1], -1, 1, 2);
  interp_init_params(&t.prog, 5, par);
  run_graph(&t, ge, in, par, out);
  for (int e = 0; e < 2; e++) {
    double b = tu_get(&par[3], e), h = 1e-6, lp, lm;
    tu_set(&par[3], e, b + h);
    run_graph(&t, t.g, in, par, lo);
    lp = tu_get(&lo[0], 0);
    gr_tensor_free(&lo[0]);
    tu_set(&par[3], e, b - h);
    run_graph(&t, t.g, in, par, lo);
    lm = tu_get(&lo[0], 0);
    gr_tensor_free(&lo[0]);
    tu_set(&par[3], e, b);
    ck_assert_double_eq_tol(tu_get(&out[4], e), (lp - lm) / (2 * h), 1e-7);
  }
  free_all(in, 2);
  free_all(par, 4);
  free_all(out, 5);
  tu_graph_free(&t);
}
END_TEST

START_TEST(test_grad_entry_needs_scalar) {
  TuGraph t;
  tu_graph_init(&t);
  ValId x = tu_input(&t, "x", DT_F64, TU_SHAPE(3));
  graph_add_output(t.g, "out", ir_unary(t.g, OP_EXP, x, NL));
  ck_assert_ptr_null(ad_grad_entry(&t.prog, t.g));
  ck_assert_ptr_nonnull(strstr(tu_last_diag(&t), "not a float scalar"));
  ck_assert_int_eq(t.prog.nentries, 1);
  tu_graph_free(&t);
}
END_TEST

/* The gradient entry must see the same noise as the loss: L = sum(n * w), dL/dw = n. */
START_TEST(test_grad_entry_keeps_random_streams) {
  TuGraph t;
  tu_graph_init(&t);
  Graph *g = t.g;
  Shape s = TU_SHAPE(4);
  ValId w = tu_param(&t, "w", DT_F64, s, INIT_ONES, 0, 0);
  ValId n1 = ir_random(g, OP_RANDN, DT_F64, &s, NL), n2 = ir_random(g, OP_RANDN, DT_F64, &s, NL);
  ValId L = dot_all(g, n2, w);
  graph_add_output(g, "L", L);
  graph_add_output(g, "noise", n2);
  (void)n1; /* a first draw, so the second one's stream id is not the first id */
  Graph *ge = ad_grad_entry(&t.prog, g);
  ck_assert_ptr_nonnull(ge);
  GrTensor par[1], o1[2], o2[3];
  interp_init_params(&t.prog, 1, par);
  run_graph(&t, g, NULL, par, o1);
  run_graph(&t, ge, NULL, par, o2);
  for (int i = 0; i < 4; i++) {
    ck_assert(tu_get(&o2[2], i) == tu_get(&o1[1], i));
  }
  ck_assert(tu_get(&o2[0], 0) == tu_get(&o1[0], 0));
  free_all(par, 1);
  free_all(o1, 2);
  free_all(o2, 3);
  tu_graph_free(&t);
}
END_TEST

/* logits = x W [6, 4]; loss = -mean over rows of sum(onehot * log_softmax(logits)). */
START_TEST(test_softmax_cross_entropy) {
  Case c;
  case_init(&c);
  Graph *g = c.t.g;
  ValId x = cin(&c, TU_SHAPE(6, 5), -1, 1), lab = cin(&c, TU_SHAPE(6, 4), 0, 1);
  ValId w = tu_param(&c.t, "w", DT_F64, TU_SHAPE(5, 4), INIT_NORMAL, 1, 0);
  ValId lg = ir_matmul(g, x, w, 0, 0, NL);
  ValId m = ir_reduce(g, OP_RMAX, lg, 2, NL);
  Shape s = ir_node(g, lg)->shape;
  ValId z = ir_binary(g, OP_SUB, lg, ir_broadcast(g, m, &s, NL), NL);
  ValId lse = ir_unary(g, OP_LOG, ir_reduce(g, OP_SUM, ir_unary(g, OP_EXP, z, NL), 2, NL), NL);
  ValId logp = ir_binary(g, OP_SUB, z, ir_broadcast(g, lse, &s, NL), NL);
  ValId l = dot_all(g, lab, logp);
  graph_add_output(g, "loss", ir_unary(g, OP_NEG, l, NL));
  ck_assert_int_eq(case_check(&c, 11, 1e-6), 0);
  tu_graph_free(&c.t);
}
END_TEST

/* y = (x - mean) * rsqrt(var + 1e-5) * gamma + beta over the last axis; loss = sum(y * r). */
START_TEST(test_layer_norm) {
  Case c;
  case_init(&c);
  Graph *g = c.t.g;
  ValId x = cin(&c, TU_SHAPE(4, 6), -2, 2), r = cin(&c, TU_SHAPE(4, 6), -1, 1);
  ValId gamma = tu_param(&c.t, "gamma", DT_F64, TU_SHAPE(6), INIT_ONES, 0, 0);
  ValId beta = tu_param(&c.t, "beta", DT_F64, TU_SHAPE(6), INIT_ZEROS, 0, 0);
  Shape s = TU_SHAPE(4, 6), s1 = TU_SHAPE(4, 1);
  ValId inv_d = ir_const(g, 1.0 / 6, DT_F64, &s1, NL);
  ValId mu = ir_binary(g, OP_MUL, ir_reduce(g, OP_SUM, x, 2, NL), inv_d, NL);
  ValId xc = ir_binary(g, OP_SUB, x, ir_broadcast(g, mu, &s, NL), NL);
  ValId var = ir_binary(g, OP_MUL, ir_reduce(g, OP_SUM, ir_binary(g, OP_MUL, xc, xc, NL), 2, NL),
                        inv_d, NL);
  ValId rs =
      ir_unary(g, OP_RSQRT, ir_binary(g, OP_ADD, var, ir_const(g, 1e-5, DT_F64, &s1, NL), NL), NL);
  ValId y = ir_binary(g, OP_MUL, xc, ir_broadcast(g, rs, &s, NL), NL);
  ValId ga = gamma, be = beta;
  ck_assert_int_eq(ir_broadcast_pair(g, &y, &ga, "*", NL), 0);
  y = ir_binary(g, OP_MUL, y, ga, NL);
  ck_assert_int_eq(ir_broadcast_pair(g, &y, &be, "+", NL), 0);
  y = ir_binary(g, OP_ADD, y, be, NL);
  graph_add_output(g, "loss", dot_all(g, y, r));
  ck_assert_int_eq(case_check(&c, 12, 1e-6), 0);
  tu_graph_free(&c.t);
}
END_TEST

/* Pairwise Laplace kernel k_ij = exp(-max(||x_i - x_j||, 1e-8) / h), loss = sum k. The
 * diagonal (and the coincident rows 0 and 1) have distance 0: sqrt'(0) := 0 and the clamp
 * make their contribution exactly 0, so dL/dx_i = sum_{j: d_ij > 1e-8} -2 k_ij (x_i - x_j) / (h
 * d_ij). */
START_TEST(test_laplace_mmd_coincident_points) {
  TuGraph t;
  tu_graph_init(&t);
  Graph *g = t.g;
  const int N = 4, D = 2;
  const double h = 0.7;
  ValId x = tu_input(&t, "x", DT_F64, TU_SHAPE(4, 2));
  Shape s3 = TU_SHAPE(4, 4, 2), sa = TU_SHAPE(4, 1, 2), sb = TU_SHAPE(1, 4, 2), s2 = TU_SHAPE(4, 4);
  ValId xa = ir_broadcast(g, ir_reshape(g, x, &sa, NL), &s3, NL);
  ValId xb = ir_broadcast(g, ir_reshape(g, x, &sb, NL), &s3, NL);
  ValId df = ir_binary(g, OP_SUB, xa, xb, NL);
  ValId d = ir_unary(g, OP_SQRT, ir_reduce(g, OP_SUM, ir_binary(g, OP_MUL, df, df, NL), 4, NL), NL);
  d = ir_reshape(g, d, &s2, NL);
  ValId dc = ir_binary(g, OP_MAX, d, ir_const(g, 1e-8, DT_F64, &s2, NL), NL);
  ValId k = ir_unary(
      g, OP_EXP,
      ir_binary(g, OP_DIV, ir_unary(g, OP_NEG, dc, NL), ir_const(g, h, DT_F64, &s2, NL), NL), NL);
  ValId L = sum_all(g, k), gx;
  ck_assert_int_eq(ad_vjp(g, L, IR_ERR, 1, &x, &gx, NL), 0);
  graph_add_output(g, "gx", gx);
  /* without the clamp, sqrt'(0) := 0 alone gives the same gradient */
  ValId ku = ir_unary(
      g, OP_EXP,
      ir_binary(g, OP_DIV, ir_unary(g, OP_NEG, d, NL), ir_const(g, h, DT_F64, &s2, NL), NL), NL);
  ValId gxu;
  ck_assert_int_eq(ad_vjp(g, sum_all(g, ku), IR_ERR, 1, &x, &gxu, NL), 0);
  graph_add_output(g, "gxu", gxu);
  double xv[8] = {0.3, -0.2, 0.3, -0.2, 1.0, 0.5, -0.7, 0.1};
  GrTensor in[1] = {tu_tensor_vals(DT_F64, TU_SHAPE(4, 2), xv)}, out[2];
  run_graph(&t, g, in, NULL, out);
  for (int i = 0; i < N; i++)
    for (int e = 0; e < D; e++) {
      double want = 0;
      for (int j = 0; j < N; j++) {
        double dx = xv[i * D] - xv[j * D], dy = xv[i * D + 1] - xv[j * D + 1],
               dij = sqrt(dx * dx + dy * dy);
        if (dij <= 1e-8) continue;
        want += -2 * exp(-dij / h) * (xv[i * D + e] - xv[j * D + e]) / (h * dij);
      }
      double got = tu_get(&out[0], i * D + e);
      ck_assert_msg(isfinite(got), "gradient not finite at %d,%d", i, e);
      ck_assert_double_eq_tol(got, want, 1e-12);
      ck_assert_double_eq_tol(tu_get(&out[1], i * D + e), want, 1e-12);
    }
  free_all(in, 1);
  free_all(out, 2);
  tu_graph_free(&t);
}
END_TEST

/* Laplace kernel within groups: a, b [G, M, D] -> exp(-max(||a_i - b_j||, 1e-8) / h) [G, M, M]. */
static ValId laplace_grouped(Graph *g, ValId a, ValId b, double h) {
  const Shape *sa = &ir_node(g, a)->shape;
  int64_t G = sa->dims[0], M = sa->dims[1], D = sa->dims[2];
  Shape s4 = TU_SHAPE(G, M, M, D), ra = TU_SHAPE(G, M, 1, D), rb = TU_SHAPE(G, 1, M, D),
        s3 = TU_SHAPE(G, M, M);
  ValId ai = ir_broadcast(g, ir_reshape(g, a, &ra, NL), &s4, NL);
  ValId bj = ir_broadcast(g, ir_reshape(g, b, &rb, NL), &s4, NL);
  ValId df = ir_binary(g, OP_SUB, ai, bj, NL);
  ValId d = ir_reshape(
      g, ir_unary(g, OP_SQRT, ir_reduce(g, OP_SUM, ir_binary(g, OP_MUL, df, df, NL), 8, NL), NL),
      &s3, NL);
  d = ir_binary(g, OP_MAX, d, ir_const(g, 1e-8, DT_F64, &s3, NL), NL);
  return ir_unary(g, OP_EXP, ir_binary(g, OP_MUL, d, ir_const(g, -1.0 / h, DT_F64, &s3, NL), NL),
                  NL);
}

/* IMM-style grouped MMD: prediction tanh(x Wa), target stop_grad(tanh(x Wt)), both
 * [8, 2] split into 2 groups of 4; loss = mean k(p,p) - 2 mean k(p,t) + mean k(t,t) with
 * the Laplace kernel (coincident points on the k(p,p) diagonal). Wt is used only under
 * stop_grad: its gradient is exactly a zeros constant and no node is spent on it; Wa's
 * gradient matches differences in Wa. */
START_TEST(test_stop_grad_target) {
  TuGraph t;
  tu_graph_init(&t);
  Graph *g = t.g;
  ValId x = tu_input(&t, "x", DT_F64, TU_SHAPE(8, 2));
  ValId wa = tu_param(&t, "wa", DT_F64, TU_SHAPE(2, 2), INIT_GLOROT, 0, 0);
  ValId wt = tu_param(&t, "wt", DT_F64, TU_SHAPE(2, 2), INIT_GLOROT, 0, 0);
  Shape grp = TU_SHAPE(2, 4, 2);
  ValId pred = ir_reshape(g, ir_unary(g, OP_TANH, ir_matmul(g, x, wa, 0, 0, NL), NL), &grp, NL);
  ValId tgt0 = ir_unary(g, OP_TANH, ir_matmul(g, x, wt, 0, 0, NL), NL);
  ValId tgt = ir_reshape(g, ir_unary(g, OP_STOPGRAD, tgt0, NL), &grp, NL);
  ValId kpp = sum_all(g, laplace_grouped(g, pred, pred, 0.5)),
        kpt = sum_all(g, laplace_grouped(g, pred, tgt, 0.5));
  ValId ktt = sum_all(g, laplace_grouped(g, tgt, tgt, 0.5));
  ValId m2 = ir_scalar(g, -2.0, DT_F64, NL), inv = ir_scalar(g, 1.0 / 32, DT_F64, NL);
  ValId L = ir_binary(g, OP_ADD, ir_binary(g, OP_ADD, kpp, ir_binary(g, OP_MUL, m2, kpt, NL), NL),
                      ktt, NL);
  L = ir_binary(g, OP_MUL, L, inv, NL);
  graph_add_output(g, "L", L);
  int n0 = g->nnodes;
  ValId gr[2];
  ck_assert_int_eq(ad_vjp_params(g, &t.prog, L, gr, NL), 0);
  const Node *z = ir_node(g, gr[1]);
  ck_assert_int_eq(z->op, OP_CONST);
  ck_assert(z->attr.scalar == 0.0);
  ck_assert_int_eq(ir_node(g, gr[0])->op != OP_CONST, 1);
  /* nothing is emitted for the target branch: exactly one matmul (x^T G) in the gradient */
  int mms = 0;
  for (int v = n0; v < g->nnodes; v++) mms += ir_node(g, v)->op == OP_MATMUL;
  ck_assert_int_eq(mms, 1);
  /* jvp blocks too */
  ValId tw = tu_input(&t, "tw", DT_F64, TU_SHAPE(2, 2)), jo;
  ck_assert_int_eq(ad_jvp(g, 1, &wt, &tw, 1, &tgt, &jo, NL), 0);
  ck_assert_int_eq(ir_node(g, jo)->op, OP_CONST);
  /* Wa's gradient against central differences in Wa (the target does not move) */
  graph_add_output(g, "gwa", gr[0]);
  GrTensor in[2] = {tu_tensor(DT_F64, TU_SHAPE(8, 2)), tu_tensor(DT_F64, TU_SHAPE(2, 2))}, par[2],
           o[2], lo[2];
  tu_fill_uniform(&in[0], -1, 1, 31);
  interp_init_params(&t.prog, 4, par);
  run_graph(&t, g, in, par, o);
  for (int e = 0; e < 4; e++) {
    double w0 = tu_get(&par[0], e), h = 1e-5, lp, lm;
    tu_set(&par[0], e, w0 + h);
    run_graph(&t, g, in, par, lo);
    lp = tu_get(&lo[0], 0);
    free_all(lo, 2);
    tu_set(&par[0], e, w0 - h);
    run_graph(&t, g, in, par, lo);
    lm = tu_get(&lo[0], 0);
    free_all(lo, 2);
    tu_set(&par[0], e, w0);
    double got = tu_get(&o[1], e);
    ck_assert_msg(isfinite(got), "gradient of wa not finite");
    ck_assert_double_eq_tol(got, (lp - lm) / (2 * h), 1e-8);
  }
  free_all(in, 2);
  free_all(par, 2);
  free_all(o, 2);
  tu_graph_free(&t);
}
END_TEST

/* f(x, t) = tanh([x, sin(3t), cos(3t)] W) [4, 3]; jvp along dt = 1 against differences. */
START_TEST(test_time_conditioned_jvp) {
  TuGraph t;
  tu_graph_init(&t);
  Graph *g = t.g;
  ValId x = tu_input(&t, "x", DT_F64, TU_SHAPE(4, 2)),
        tt = tu_input(&t, "t", DT_F64, TU_SHAPE(4, 1));
  ValId w = tu_param(&t, "w", DT_F64, TU_SHAPE(4, 3), INIT_NORMAL, 1, 0);
  Shape s1 = TU_SHAPE(4, 1);
  ValId a = ir_binary(g, OP_MUL, tt, ir_const(g, 3, DT_F64, &s1, NL), NL);
  ValId feat = ir_concat(g, ir_unary(g, OP_SIN, a, NL), ir_unary(g, OP_COS, a, NL), 1, NL);
  ValId y = ir_unary(g, OP_TANH, ir_matmul(g, ir_concat(g, x, feat, 1, NL), w, 0, 0, NL), NL);
  ValId one = ir_const(g, 1, DT_F64, &s1, NL), ty;
  ck_assert_int_eq(ad_jvp(g, 1, &tt, &one, 1, &y, &ty, NL), 0);
  graph_add_output(g, "y", y);
  graph_add_output(g, "ty", ty);
  GrTensor in[2] = {tu_tensor(DT_F64, TU_SHAPE(4, 2)), tu_tensor(DT_F64, TU_SHAPE(4, 1))}, par[1],
           o[2], op[2], om[2];
  tu_fill_uniform(&in[0], -1, 1, 3);
  tu_fill_uniform(&in[1], 0, 1, 4);
  interp_init_params(&t.prog, 2, par);
  run_graph(&t, g, in, par, o);
  double hstep = 1e-6;
  for (int i = 0; i < 4; i++) tu_set(&in[1], i, tu_get(&in[1], i) + hstep);
  run_graph(&t, g, in, par, op);
  for (int i = 0; i < 4; i++) tu_set(&in[1], i, tu_get(&in[1], i) - 2 * hstep);
  run_graph(&t, g, in, par, om);
  for (int i = 0; i < 12; i++)
    ck_assert_double_eq_tol(tu_get(&o[1], i), (tu_get(&op[0], i) - tu_get(&om[0], i)) / (2 * hstep),
                            1e-8);
  free_all(in, 2);
  free_all(par, 1);
  free_all(o, 2);
  free_all(op, 2);
  free_all(om, 2);
  tu_graph_free(&t);
}
END_TEST

/* Hessian-vector products on the MLP: grad of (grad . v) (reverse over reverse), jvp of
 * grad (forward over reverse) and grad of jvp (reverse over forward) agree, and gradcheck of grad .
 * v passes. */
START_TEST(test_hvp_and_jvp_of_grad) {
  TuGraph t;
  tu_graph_init(&t);
  Graph *g = t.g;
  ValId x = tu_input(&t, "x", DT_F64, TU_SHAPE(8, 3)),
        y = tu_input(&t, "y", DT_F64, TU_SHAPE(8, 2));
  ValId L = mlp_loss(&t, x, y);
  ValId w1 = -1;
  for (int v = 0; v < g->nnodes; v++)
    if (ir_node(g, v)->op == OP_PARAM && ir_node(g, v)->attr.index == 0) w1 = v;
  ValId gw, hv_rev, hv_fwd;
  ck_assert_int_eq(ad_vjp(g, L, IR_ERR, 1, &w1, &gw, NL), 0);
  ValId v = tu_input(&t, "v", DT_F64, TU_SHAPE(3, 16));
  ValId gv = dot_all(g, gw, v);
  ck_assert_int_eq(ad_vjp(g, gv, IR_ERR, 1, &w1, &hv_rev, NL), 0);
  ck_assert_int_eq(ad_jvp(g, 1, &w1, &v, 1, &gw, &hv_fwd, NL), 0);
  ValId jl, hv_rof; /* reverse over forward: grad of (jvp of L along v) */
  ck_assert_int_eq(ad_jvp(g, 1, &w1, &v, 1, &L, &jl, NL), 0);
  ck_assert_int_eq(ad_vjp(g, jl, IR_ERR, 1, &w1, &hv_rof, NL), 0);
  graph_add_output(g, "gv", gv);
  graph_add_output(g, "hv_rev", hv_rev);
  graph_add_output(g, "hv_fwd", hv_fwd);
  graph_add_output(g, "hv_rof", hv_rof);
  GrTensor in[3] = {tu_tensor(DT_F64, TU_SHAPE(8, 3)), tu_tensor(DT_F64, TU_SHAPE(8, 2)),
                    tu_tensor(DT_F64, TU_SHAPE(3, 16))};
  GrTensor par[4], o[4];
  for (int i = 0; i < 3; i++) tu_fill_uniform(&in[i], -1, 1, 20 + (uint64_t)i);
  interp_init_params(&t.prog, 3, par);
  run_graph(&t, g, in, par, o);
  double nrm = 0;
  for (int i = 0; i < 48; i++) {
    ck_assert_double_eq_tol(tu_get(&o[1], i), tu_get(&o[2], i), 1e-12);
    ck_assert_double_eq_tol(tu_get(&o[1], i), tu_get(&o[3], i), 1e-12);
    nrm += fabs(tu_get(&o[1], i));
  }
  ck_assert(nrm > 1e-3);
  free_all(in, 3);
  free_all(par, 4);
  free_all(o, 4);
  /* the whole second-order graph (output gv) against differences */
  g->noutputs = 1;
  ck_assert_int_eq(gc_check_entry(&t.ctx, &t.prog, g, 9, 1e-5, NULL), 0);
  tu_graph_free(&t);
}
END_TEST

/* where(x > 0, log(x), 2x): the log branch's NaN/inf at x <= 0 must not leak. */
START_TEST(test_where_unselected_branch_is_harmless) {
  TuGraph t;
  tu_graph_init(&t);
  Graph *g = t.g;
  Shape s = TU_SHAPE(4);
  ValId x = tu_input(&t, "x", DT_F64, s);
  ValId c = ir_binary(g, OP_GT, x, ir_const(g, 0, DT_F64, &s, NL), NL);
  ValId y = ir_where(g, c, ir_unary(g, OP_LOG, x, NL),
                     ir_binary(g, OP_MUL, x, ir_const(g, 2, DT_F64, &s, NL), NL), NL);
  ValId L = sum_all(g, y), gx, gx2, one = ir_const(g, 1, DT_F64, &s, NL), tx;
  ck_assert_int_eq(ad_vjp(g, L, IR_ERR, 1, &x, &gx, NL), 0);
  ck_assert_int_eq(ad_vjp(g, sum_all(g, gx), IR_ERR, 1, &x, &gx2, NL), 0); /* second order */
  ck_assert_int_eq(ad_jvp(g, 1, &x, &one, 1, &y, &tx, NL), 0);
  graph_add_output(g, "gx", gx);
  graph_add_output(g, "gx2", gx2);
  graph_add_output(g, "tx", tx);
  double xv[4] = {-1, 0, 2, 0.5}, want[4] = {2, 2, 0.5, 2}, want2[4] = {0, 0, -0.25, -4};
  GrTensor in[1] = {tu_tensor_vals(DT_F64, s, xv)}, o[3];
  run_graph(&t, g, in, NULL, o);
  for (int i = 0; i < 4; i++) {
    ck_assert_double_eq_tol(tu_get(&o[0], i), want[i], 1e-15);
    ck_assert_double_eq_tol(tu_get(&o[1], i), want2[i], 1e-15);
    ck_assert_double_eq_tol(tu_get(&o[2], i), want[i], 1e-15);
  }
  free_all(in, 1);
  free_all(o, 3);
  tu_graph_free(&t);
}
END_TEST

/* Defined values at singular points: sqrt'(0) = abs'(0) = relu'(0) = 0, maximum ties
 * split 1/2 and 1/2, max-reduction ties share equally, pow(a <= 0, b): d/db = 0. */
START_TEST(test_singular_points) {
  TuGraph t;
  tu_graph_init(&t);
  Graph *g = t.g;
  Shape s = TU_SHAPE(3);
  ValId x = tu_input(&t, "x", DT_F64, s), b = tu_input(&t, "b", DT_F64, s);
  ValId neg1 = ir_const(g, -1, DT_F64, &s, NL);
  ValId ys[7] = {ir_unary(g, OP_SQRT, x, NL),      ir_unary(g, OP_ABS, x, NL),
                 ir_unary(g, OP_RELU, x, NL),      ir_binary(g, OP_MAX, x, b, NL),
                 ir_reduce(g, OP_RMAX, b, 1, NL),  ir_binary(g, OP_POW, x, b, NL),
                 ir_binary(g, OP_POW, neg1, b, NL)};
  for (int k = 0; k < 7; k++) {
    ValId wrt[2] = {x, b}, gr[2];
    ck_assert_int_eq(ad_vjp(g, sum_all(g, ys[k]), IR_ERR, 2, wrt, gr, NL), 0);
    graph_add_output(g, "gx", gr[0]);
    graph_add_output(g, "gb", gr[1]);
  }
  /* forward mode agrees: for elementwise ops the jvp along ones is the diagonal */
  ValId one = ir_const(g, 1, DT_F64, &s, NL), tb = tu_input(&t, "tb", DT_F64, s);
  for (int k = 0; k < 7; k++) {
    ValId jx, jb;
    ck_assert_int_eq(ad_jvp(g, 1, &x, &one, 1, &ys[k], &jx, NL), 0);
    ck_assert_int_eq(ad_jvp(g, 1, &b, k == 4 ? &tb : &one, 1, &ys[k], &jb, NL), 0);
    graph_add_output(g, "jx", jx);
    graph_add_output(g, "jb", jb);
  }
  double xv[3] = {0, 0, 0}, bv[3] = {0, 2, 2}, tv[3] = {5, 7, 9};
  GrTensor in[3] = {tu_tensor_vals(DT_F64, s, xv), tu_tensor_vals(DT_F64, s, bv),
                    tu_tensor_vals(DT_F64, s, tv)},
           o[28];
  run_graph(&t, g, in, NULL, o);
  const double want[14][3] = {
      {0, 0, 0},   {0, 0, 0},     {0, 0, 0}, {0, 0, 0}, {0, 0, 0}, {0, 0, 0}, /* sqrt abs relu */
      {0.5, 0, 0}, {0.5, 1, 1},                                               /* maximum(0, b) */
      {0, 0, 0},   {0, 0.5, 0.5},                                             /* max(b) ties */
      {0, 0, 0},   {0, 0, 0},                                                 /* pow(0, b) */
      {0, 0, 0},   {0, 0, 0},                                                 /* pow(-1, b): d/db */
  };
  for (int k = 0; k < 14; k++)
    for (int i = 0; i < 3; i++) {
      double got = tu_get(&o[k], i), fwd = k == 8 ? 0 : tu_get(&o[14 + k], k == 9 ? 0 : i);
      double wf = k == 9 ? 8 : want[k][i]; /* max(b) along (5, 7, 9): the tied 7 and 9 average */
      ck_assert_msg(got == want[k][i], "output %d[%d] = %g, want %g", k, i, got, want[k][i]);
      if (k != 8) /* (the jvp of max(b) along x is a [1] zero, not the [3] gradient) */
        ck_assert_msg(fwd == wf, "jvp %d[%d] = %g, want %g", k, i, fwd, wf);
    }
  free_all(in, 3);
  free_all(o, 28);
  tu_graph_free(&t);
}
END_TEST

START_TEST(test_integer_wrt_is_a_diagnostic) {
  TuGraph t;
  tu_graph_init(&t);
  Graph *g = t.g;
  ValId i = tu_input(&t, "i", DT_I32, TU_SHAPE(3));
  ValId y = sum_all(g, ir_cast(g, i, DT_F64, NL)), gr, ti;
  ck_assert_int_eq(ad_vjp(g, y, IR_ERR, 1, &i, &gr, NL), -1);
  ck_assert_str_eq(tu_last_diag(&t), "cannot differentiate with respect to an integer tensor (i32)");
  ck_assert_int_eq(ad_jvp(g, 1, &i, &i, 1, &y, &ti, NL), -1);
  ValId yi = sum_all(g, i), x = tu_input(&t, "x", DT_F64, TU_SHAPE(3));
  ck_assert_int_eq(ad_vjp(g, yi, IR_ERR, 1, &x, &gr, NL), -1);
  ck_assert_str_eq(tu_last_diag(&t), "cannot differentiate an integer tensor (i32)");
  ck_assert_int_eq(t.ctx.ndiags, 3);
  tu_graph_free(&t);
}
END_TEST

START_TEST(test_extern_on_path_is_a_diagnostic) {
  TuGraph t;
  tu_graph_init(&t);
  Graph *g = t.g;
  Extern e = {"erf", "libm.so.6", 1, {DT_F64}, DT_F64, NL};
  int ix = program_add_extern(&t.prog, &e);
  ValId x = tu_input(&t, "x", DT_F64, TU_SHAPE(3));
  ValId ex = ir_extern(g, &t.prog, ix, 1, &x, NL);
  ValId y = sum_all(g, ir_binary(g, OP_MUL, ex, x, NL)), gr, ty;
  ck_assert_int_eq(ad_vjp_in(&t.prog, g, y, IR_ERR, 1, &x, &gr, NL), -1);
  ck_assert_str_eq(tu_last_diag(&t),
                   "extern function 'erf' has no derivative; wrap it in stop_grad");
  ck_assert_int_eq(ad_jvp_in(&t.prog, g, 1, &x, &x, 1, &y, &ty, NL), -1);
  ck_assert_int_eq(ad_vjp(g, y, IR_ERR, 1, &x, &gr, NL), -1); /* no Program: no name */
  ck_assert_str_eq(tu_last_diag(&t),
                   "this extern function call has no derivative; wrap it in stop_grad");
  ck_assert_int_eq(t.ctx.ndiags, 3);
  /* under stop_grad it is fine: d/dx sum(stop_grad(erf(x)) * x) = erf(x) */
  ValId y2 = sum_all(g, ir_binary(g, OP_MUL, ir_unary(g, OP_STOPGRAD, ex, NL), x, NL));
  ck_assert_int_eq(ad_vjp_in(&t.prog, g, y2, IR_ERR, 1, &x, &gr, NL), 0);
  graph_add_output(g, "gr", gr);
  double xv[3] = {0.1, -0.5, 2};
  GrTensor in[1] = {tu_tensor_vals(DT_F64, TU_SHAPE(3), xv)}, o[1];
  run_graph(&t, g, in, NULL, o);
  for (int i = 0; i < 3; i++) ck_assert_double_eq_tol(tu_get(&o[0], i), erf(xv[i]), 1e-15);
  free_all(in, 1);
  free_all(o, 1);
  tu_graph_free(&t);
}
END_TEST

/* Generated nodes carry the location of the node they differentiate; unreached wrt get
 * zeros; only what is asked for is computed (no d/dx when only W is wanted). */
START_TEST(test_locations_and_economy) {
  TuGraph t;
  tu_graph_init(&t);
  Graph *g = t.g;
  SrcLoc lm = {0, 7, 3}, call = {0, 42, 1};
  ValId x = tu_input(&t, "x", DT_F64, TU_SHAPE(5, 3));
  ValId w = tu_param(&t, "w", DT_F64, TU_SHAPE(3, 2), INIT_GLOROT, 0, 0);
  ValId u = tu_input(&t, "u", DT_F64, TU_SHAPE(2));
  ValId mm = ir_matmul(g, x, w, 0, 0, lm);
  Shape s0 = TU_SHAPE0;
  ValId L = ir_reshape(g, ir_reduce(g, OP_SUM, mm, 3, lm), &s0, lm);
  int n0 = g->nnodes;
  ValId wrt[2] = {w, u}, gr[2];
  ck_assert_int_eq(ad_vjp(g, L, IR_ERR, 2, wrt, gr, call), 0);
  int mms = 0;
  for (int v = n0; v < g->nnodes; v++) {
    const Node *n = ir_node(g, v);
    mms += n->op == OP_MATMUL;
    ck_assert_msg(n->loc.line == 7 || n->loc.line == 42, "node %d (%s) at line %d", v,
                  op_name(n->op), n->loc.line);
    if (n->op == OP_MATMUL) ck_assert_int_eq(n->loc.line, 7);
  }
  ck_assert_int_eq(mms, 1);
  ck_assert_int_eq(ir_node(g, gr[1])->op, OP_CONST);
  ck_assert_int_eq(ir_node(g, gr[1])->shape.dims[0], 2);
  char err[256];
  ck_assert_msg(ir_verify(g, &t.prog, err, sizeof err) == 0, "%s", err);
  tu_graph_free(&t);
}
END_TEST

static Suite *autodiff_suite(void) {
  Suite *s = suite_create("autodiff");
  TCase *tc = tcase_create("ops");
  tcase_set_timeout(tc, 120);
  tcase_add_test(tc, test_every_op_has_rules);
  tcase_add_test(tc, test_zerograd_ops_pass_nothing);
  tcase_add_loop_test(tc, test_op_rules_vs_finite_differences, 0, OP_COUNT);
  tcase_add_test(tc, test_cast_rules);
  suite_add_tcase(s, tc);
  TCase *tg = tcase_create("graphs");
  tcase_set_timeout(tg, 60);
  tcase_add_test(tg, test_mlp_gradcheck_and_grad_entry);
  tcase_add_test(tg, test_grad_entry_needs_scalar);
  tcase_add_test(tg, test_f32_grad_entry_matches_f64);
  tcase_add_test(tg, test_grad_entry_keeps_random_streams);
  tcase_add_test(tg, test_softmax_cross_entropy);
  tcase_add_test(tg, test_layer_norm);
  tcase_add_test(tg, test_laplace_mmd_coincident_points);
  tcase_add_test(tg, test_stop_grad_target);
  tcase_add_test(tg, test_time_conditioned_jvp);
  tcase_add_test(tg, test_hvp_and_jvp_of_grad);
  tcase_add_test(tg, test_where_unselected_branch_is_harmless);
  tcase_add_test(tg, test_singular_points);
  tcase_add_test(tg, test_integer_wrt_is_a_diagnostic);
  tcase_add_test(tg, test_extern_on_path_is_a_diagnostic);
  tcase_add_test(tg, test_locations_and_economy);
  suite_add_tcase(s, tg);
  return s;
}

int main(void) {
  SRunner *sr = srunner_create(autodiff_suite());
  srunner_run_all(sr, CK_NORMAL);
  int nf = srunner_ntests_failed(sr);
  srunner_free(sr);
  return nf ? 1 : 0;
}
