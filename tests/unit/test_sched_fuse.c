/* test_sched_fuse.c: the scheduler recomputes a cheap node inside every reduction that
 * consumes it instead of writing it to memory (compiler/sched.c, RECOMPUTE_REDUCED_MAX).
 *
 * The case that motivated it is the IMM kernel gradient: pairwise differences
 * y[g, i, :] - y[g, j, :] over a [G, M, M, D] grid, scaled, then summed once over i and
 * once over j. Materializing that grid set the workspace peak at D = 784 (12.8 of 42.9
 * MB). The rule must (1) fuse it when every use ends in a reduction and it is cheap,
 * (2) keep it materialized when it is also an output or when it is expensive (a
 * transcendental), and (3) compute the same values as the interpreter either way.
 * (Without the rule, test 1 fails: the grid is stored, as it is used twice.) */
#include <check.h>
#include <math.h>
#include <string.h>

#include "codegen.h"
#include "schedule.h"
#include "testutil.h"

#define L SRCLOC_NONE
enum { G = 3, M = 4, D = 37 };

typedef struct {
  TuGraph t;
  ValId grid;  /* the [G, M, M, D] node under test */
  ValId inner; /* grid = inner + inner: the scaled differences */
} Case;

/* s1 = sum_i(-grid), s2 = sum_j(grid) with grid = 2 (x_i - x_j) c[g, i, j];
 * expensive: grid = exp(x_i - x_j) c instead; as_output: grid is also an output. */
static void build(Case *k, int expensive, int as_output) {
  tu_graph_init(&k->t);
  Graph *g = k->t.g;
  ValId x = tu_input(&k->t, "x", DT_F32, TU_SHAPE(G, M, D));
  ValId c = tu_input(&k->t, "c", DT_F32, TU_SHAPE(G, M, M, 1));
  Shape full = TU_SHAPE(G, M, M, D), sa = TU_SHAPE(G, M, 1, D), sb = TU_SHAPE(G, 1, M, D);
  ValId xa = ir_broadcast(g, ir_reshape(g, x, &sa, L), &full, L);
  ValId xb = ir_broadcast(g, ir_reshape(g, x, &sb, L), &full, L);
  ValId d = ir_binary(g, OP_SUB, xa, xb, L);
  if (expensive) d = ir_unary(g, OP_EXP, d, L);
  ValId y = ir_binary(g, OP_MUL, d, ir_broadcast(g, c, &full, L), L);
  k->inner = y;
  k->grid = ir_binary(g, OP_ADD, y, y, L);
  graph_add_output(g, "s1", ir_reduce(g, OP_SUM, ir_unary(g, OP_NEG, k->grid, L), 1u << 1, L));
  graph_add_output(g, "s2", ir_reduce(g, OP_SUM, k->grid, 1u << 2, L));
  if (as_output) graph_add_output(g, "grid", k->grid);
  ck_assert_msg(k->grid != IR_ERR && g->noutputs == 2 + as_output, "builder: %s", tu_last_diag(&k->t));
}

/* The JIT at -O2 against the interpreter, every output of t's graph, on inputs in. */
static void compare_jit(TuGraph *t, GrTensor *in, double tol) {
  Graph *g = t->g;
  GrTensor want[3], got[3];
  char err[256];
  ck_assert_int_eq(interp_run(g, &t->prog, in, NULL, want, 0, 0, err, sizeof err), 0);
  CgOptions o;
  cg_options_default(&o);
  CgJit *j = cg_jit_compile(&t->ctx, &t->prog, &o);
  ck_assert_msg(j, "jit: %s", tu_last_diag(t));
  ck_assert_int_eq(cg_jit_run(j, g->name, in, NULL, got, 0, 0, err, sizeof err), 0);
  for (int o2 = 0; o2 < g->noutputs; o2++) {
    for (int64_t i = 0; i < tu_numel(&want[o2]); i++) {
      double w = tu_get(&want[o2], i), v = tu_get(&got[o2], i);
      ck_assert_msg(fabs(v - w) <= tol * (1 + fabs(w)), "output %d elem %lld: %g vs %g", o2, (long long)i, v, w);
    }
    gr_tensor_free(&want[o2]);
    gr_tensor_free(&got[o2]);
  }
  cg_jit_free(j);
}

/* The grid case on random inputs. */
static void compare(Case *k) {
  GrTensor in[2] = {tu_tensor(DT_F32, TU_SHAPE(G, M, D)), tu_tensor(DT_F32, TU_SHAPE(G, M, M, 1))};
  tu_fill_uniform(&in[0], -1, 1, 1);
  tu_fill_uniform(&in[1], -1, 1, 2);
  compare_jit(&k->t, in, 1e-5);
  gr_tensor_free(&in[0]);
  gr_tensor_free(&in[1]);
}

START_TEST(cheap_grid_is_fused_into_both_sums) {
  Case k;
  build(&k, 0, 0);
  Sched *s = sched_build(k.t.g, &k.t.prog);
  ck_assert_msg(sched_store(s, k.grid) == IR_ERR && sched_store(s, k.inner) == IR_ERR,
                "the [G, M, M, D] grid was materialized");
  /* nothing of grid's size in the plan: the workspace holds only the small inputs' views */
  ck_assert_msg(s->ws_bytes < (int64_t)G * M * M * D * 4, "workspace %lld", (long long)s->ws_bytes);
  sched_free(s);
  compare(&k);
  tu_graph_free(&k.t);
}
END_TEST

START_TEST(grid_that_is_an_output_is_stored) {
  Case k;
  build(&k, 0, 1);
  Sched *s = sched_build(k.t.g, &k.t.prog);
  ck_assert(sched_store(s, k.grid) == k.grid);
  sched_free(s);
  compare(&k);
  tu_graph_free(&k.t);
}
END_TEST

START_TEST(expensive_grid_is_stored) {
  Case k;
  build(&k, 1, 0);
  Sched *s = sched_build(k.t.g, &k.t.prog);
  /* inner (with exp, used twice) is stored once; grid = inner + inner is then cheap */
  ck_assert_msg(sched_store(s, k.inner) == k.inner, "a grid with exp in it was recomputed per use");
  sched_free(s);
  compare(&k);
  tu_graph_free(&k.t);
}
END_TEST

/* concat(x [5, 40], f(t) [5, 3]) evaluates both operands at every element and selects:
 * an expensive f (sin) is stored once instead of being computed 43 times per row; a
 * cheap one (2 t) stays fused. Both agree with the interpreter. */
static void concat_case(int expensive) {
  TuGraph t;
  tu_graph_init(&t);
  Graph *g = t.g;
  ValId x = tu_input(&t, "x", DT_F32, TU_SHAPE(5, 40));
  ValId tt = tu_input(&t, "t", DT_F32, TU_SHAPE(5, 3));
  ValId f = expensive ? ir_unary(g, OP_SIN, tt, L) : ir_binary(g, OP_ADD, tt, tt, L);
  graph_add_output(g, "y", ir_concat(g, x, f, 1, L));
  Sched *s = sched_build(g, &t.prog);
  ck_assert_msg((sched_store(s, f) == f) == expensive, "expensive=%d: concat operand stored=%d", expensive,
                sched_store(s, f) == f);
  sched_free(s);
  GrTensor in[2] = {tu_tensor(DT_F32, TU_SHAPE(5, 40)), tu_tensor(DT_F32, TU_SHAPE(5, 3))};
  tu_fill_uniform(&in[0], -1, 1, 1);
  tu_fill_uniform(&in[1], -1, 1, 2);
  compare_jit(&t, in, 5e-7); /* <= 1e-6 absolute: |values| <= 1 */
  gr_tensor_free(&in[0]), gr_tensor_free(&in[1]);
  tu_graph_free(&t);
}

START_TEST(expensive_concat_operand_is_stored) {
  concat_case(1);
  concat_case(0);
}
END_TEST

static Suite *suite(void) {
  Suite *s = suite_create("sched_fuse");
  TCase *tc = tcase_create("fuse");
  tcase_set_timeout(tc, 30);
  tcase_add_test(tc, cheap_grid_is_fused_into_both_sums);
  tcase_add_test(tc, grid_that_is_an_output_is_stored);
  tcase_add_test(tc, expensive_grid_is_stored);
  tcase_add_test(tc, expensive_concat_operand_is_stored);
  suite_add_tcase(s, tc);
  return s;
}

int main(void) {
  SRunner *sr = srunner_create(suite());
  srunner_run_all(sr, CK_NORMAL);
  int failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  return failed ? 1 : 0;
}
