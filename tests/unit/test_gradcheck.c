/* test_gradcheck.c: the gradient checker itself, on graphs where the answer is known.
 *
 * A checker that always says "ok" is worse than none, so besides passing graphs (with
 * parameters, several outputs, a non-scalar output) these tests feed it graphs whose
 * derivative genuinely differs from finite differences: a fine staircase (floor of a
 * scaled value: AD says 0 by definition, differences see a slope of ~1) and a parameter
 * seen through stop_grad (AD says 0 on purpose, differences see its effect). The report
 * must name the failing value and only it.
 */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "autodiff.h"
#include "frontend.h"
#include "gradcheck.h"
#include "testutil.h"

#define NL SRCLOC_NONE

static ValId sum_all(Graph *g, ValId v) {
  Shape s0 = TU_SHAPE0;
  uint32_t all = (1u << ir_node(g, v)->shape.rank) - 1;
  return ir_must(g, ir_reshape(g, ir_must(g, ir_reduce(g, OP_SUM, v, all, NL)), &s0, NL));
}

/* Runs the checker with its report captured in buf. */
static int check_report_opts(TuGraph *t, const GcOptions *o, char *buf, size_t n) {
  FILE *f = tmpfile();
  ck_assert_ptr_nonnull(f);
  int rc = gc_check_entry_opts(&t->ctx, &t->prog, t->g, o, f);
  rewind(f);
  size_t k = fread(buf, 1, n - 1, f);
  buf[k] = 0;
  fclose(f);
  return rc;
}
static int check_report(TuGraph *t, uint64_t seed, char *buf, size_t n) {
  GcOptions o = {seed, GC_DEFAULT_TOL, NULL, 0, 0};
  return check_report_opts(t, &o, buf, n);
}

/* 1 when the report row of `name` (the line containing it) contains `word`. */
static int row_has(const char *rep, const char *name, const char *word) {
  const char *p = strstr(rep, name);
  ck_assert_msg(p != NULL, "no row for %s in:\n%s", name, rep);
  const char *e = strchr(p, '\n'), *w = strstr(p, word);
  return w && (!e || w < e);
}

/* y = tanh(x W + b) [5, 3] (non-scalar: a random cotangent), plus a scalar second output. */
static void build_net(TuGraph *t) {
  Graph *g = t->g;
  ValId x = tu_input(t, "x", DT_F64, TU_SHAPE(5, 2));
  ValId w = tu_param(t, "w", DT_F64, TU_SHAPE(2, 3), INIT_GLOROT, 0, 0);
  ValId b = tu_param(t, "b", DT_F64, TU_SHAPE(3), INIT_ZEROS, 0, 0);
  ValId h = ir_matmul(g, x, w, 0, 0, NL);
  ck_assert_int_eq(ir_broadcast_pair(g, &h, &b, "+", NL), 0);
  ValId y = ir_unary(g, OP_TANH, ir_binary(g, OP_ADD, h, b, NL), NL);
  graph_add_output(g, "y", y);
  graph_add_output(g, "s", sum_all(g, ir_binary(g, OP_MUL, y, y, NL)));
}

START_TEST(test_passes_on_correct_graph) {
  TuGraph t;
  tu_graph_init(&t);
  build_net(&t);
  char rep[4096];
  int rc = check_report(&t, 1, rep, sizeof rep);
  ck_assert_msg(rc == 0, "report:\n%s\n%s", rep, tu_last_diag(&t));
  ck_assert_ptr_nonnull(strstr(rep, "gradcheck: entry 'test'"));
  ck_assert(row_has(rep, "input  x", "ok"));
  ck_assert(row_has(rep, "param  w", "ok"));
  ck_assert(row_has(rep, "param  b", "ok"));
  ck_assert_ptr_null(strstr(rep, "FAIL"));
  ck_assert_ptr_null(strstr(rep, "warning"));
  /* deterministic: the same seed gives the same report */
  char rep2[4096];
  ck_assert_int_eq(check_report(&t, 1, rep2, sizeof rep2), 0);
  ck_assert_str_eq(rep, rep2);
  tu_graph_free(&t);
}
END_TEST

/* floor(1e6 x) / 1e6 is x up to a staircase of step 1e-6: differences over a wider step
 * see slope 1, AD (floor is F_ZEROGRAD) says 0. Only x fails; z is fine. */
START_TEST(test_fails_on_staircase) {
  TuGraph t;
  tu_graph_init(&t);
  Graph *g = t.g;
  Shape s = TU_SHAPE(4);
  ValId x = tu_input(&t, "x", DT_F64, s), z = tu_input(&t, "z", DT_F64, s);
  ValId st = ir_binary(
      g, OP_MUL,
      ir_unary(g, OP_FLOOR, ir_binary(g, OP_MUL, x, ir_const(g, 1e6, DT_F64, &s, NL), NL), NL),
      ir_const(g, 1e-6, DT_F64, &s, NL), NL);
  graph_add_output(g, "L", sum_all(g, ir_binary(g, OP_ADD, st, ir_unary(g, OP_SIN, z, NL), NL)));
  char rep[4096];
  ck_assert_int_eq(check_report(&t, 2, rep, sizeof rep), 1);
  ck_assert(row_has(rep, "input  x", "FAIL"));
  ck_assert(row_has(rep, "input  z", "ok"));
  tu_graph_free(&t);
}
END_TEST

/* A parameter used only under stop_grad: AD gives exactly 0 by design. By default the
 * checker holds stop_grad values fixed, so the differences agree (the IMM loss, whose
 * target is the same network under stop_grad, is checkable). Seeing through stop_grad,
 * the differences do not agree for wt: the documented way to audit stopped gradients. */
START_TEST(test_stop_grad_held_or_seen_through) {
  TuGraph t;
  tu_graph_init(&t);
  Graph *g = t.g;
  ValId x = tu_input(&t, "x", DT_F64, TU_SHAPE(3, 2));
  ValId wa = tu_param(&t, "wa", DT_F64, TU_SHAPE(2, 2), INIT_GLOROT, 0, 0);
  ValId wt = tu_param(&t, "wt", DT_F64, TU_SHAPE(2, 2), INIT_GLOROT, 0, 0);
  ValId d = ir_binary(g, OP_SUB, ir_matmul(g, x, wa, 0, 0, NL),
                      ir_unary(g, OP_STOPGRAD, ir_matmul(g, x, wt, 0, 0, NL), NL), NL);
  graph_add_output(g, "L", sum_all(g, ir_binary(g, OP_MUL, d, d, NL)));
  char rep[4096];
  ck_assert_int_eq(check_report(&t, 3, rep, sizeof rep), 0);
  ck_assert_ptr_nonnull(strstr(rep, "(1 stop_grad value held fixed in the differences)"));
  ck_assert(row_has(rep, "param  wt", "ok"));
  GcOptions o = {3, GC_DEFAULT_TOL, NULL, 0, 1};
  ck_assert_int_eq(check_report_opts(&t, &o, rep, sizeof rep), 1);
  ck_assert(row_has(rep, "param  wt", "FAIL"));
  ck_assert(row_has(rep, "param  wa", "ok"));
  ck_assert(row_has(rep, "input  x", "FAIL")); /* x feeds the target too */
  tu_graph_free(&t);
}
END_TEST

/* Integer inputs (indices) are held at 0, which is always a valid index. */
START_TEST(test_integer_inputs) {
  TuGraph t;
  tu_graph_init(&t);
  Graph *g = t.g;
  ValId x = tu_input(&t, "x", DT_F64, TU_SHAPE(4, 3)),
        idx = tu_input(&t, "idx", DT_I32, TU_SHAPE(5));
  graph_add_output(g, "L", sum_all(g, ir_unary(g, OP_SIN, ir_gather(g, x, idx, 0, NL), NL)));
  char rep[4096];
  ck_assert_int_eq(check_report(&t, 5, rep, sizeof rep), 0);
  ck_assert_ptr_null(strstr(rep, "idx"));
  tu_graph_free(&t);
}
END_TEST

START_TEST(test_f32_warns) {
  TuGraph t;
  tu_graph_init(&t);
  ValId x = tu_input(&t, "x", DT_F32, TU_SHAPE(3));
  graph_add_output(t.g, "L", sum_all(t.g, ir_unary(t.g, OP_EXP, x, NL)));
  char rep[4096];
  ck_assert_int_ge(check_report(&t, 4, rep, sizeof rep), 0);
  ck_assert_ptr_nonnull(strstr(rep, "warning: not elaborated in f64"));
  tu_graph_free(&t);
}
END_TEST

START_TEST(test_errors_are_diagnostics) {
  TuGraph t;
  tu_graph_init(&t);
  Graph *g = t.g;
  ValId i = tu_input(&t, "i", DT_I32, TU_SHAPE(3));
  graph_add_output(g, "n", sum_all(g, i));
  ck_assert_int_eq(gc_check_entry(&t.ctx, &t.prog, g, 1, GC_DEFAULT_TOL, NULL), -1);
  ck_assert_ptr_nonnull(strstr(tu_last_diag(&t), "no float output"));
  tu_graph_free(&t);

  tu_graph_init(&t);
  g = t.g;
  Extern e = {"erf", "libm.so.6", 1, {DT_F64}, DT_F64, NL};
  int ix = program_add_extern(&t.prog, &e);
  ValId x = tu_input(&t, "x", DT_F64, TU_SHAPE(3));
  graph_add_output(g, "L", sum_all(g, ir_extern(g, &t.prog, ix, 1, &x, NL)));
  ck_assert_int_eq(gc_check_entry(&t.ctx, &t.prog, g, 1, GC_DEFAULT_TOL, NULL), -1);
  ck_assert_ptr_nonnull(strstr(t.ctx.diags[0].msg, "extern function 'erf' has no derivative"));
  tu_graph_free(&t);
}
END_TEST

/* From source: fe_compile in f64, then every entry (one takes grad inside, one jvp) and
 * the derived loss_grad entry (a second-order check of every parameter). */
static const char *src_text =
    "const D = 2\n"
    "const B = 8\n"
    "fn linear(x: f32[N, I], out: int) -> f32[N, out] {\n"
    "  param w: f32[I, out] = glorot()\n"
    "  param b: f32[out] = zeros()\n"
    "  return x @ w + b\n"
    "}\n"
    "model net(x: f32[N, D], t: f32[N, 1], hidden: int = 16) -> f32[N, D] {\n"
    "  let h = concat(x, concat(sin(3 * t), cos(3 * t), axis = 1), axis = 1)\n"
    "  for i in 0..2 {\n"
    "    h = silu(linear(h, hidden))\n"
    "  }\n"
    "  return linear(h, D)\n"
    "}\n"
    "entry loss(x: f32[B, D], t: f32[B, 1]) -> f32 {\n"
    "  let y = net(x, t)\n"
    "  return mean((y - x) ** 2) + 0.1 * mean(sqrt(sqdist(y, y) + 1.0))\n"
    "}\n"
    "entry penalty(x: f32[B, D], t: f32[B, 1]) -> f32 {\n"
    "  let g = grad(mean(net(x, t) ** 2), x)\n"
    "  return sum(g * g)\n"
    "}\n"
    "entry velocity(x: f32[B, D], t: f32[B, 1]) -> f32[B, D] {\n"
    "  return jvp(net(x, t), t, ones([B, 1]))\n"
    "}\n";

START_TEST(test_from_source) {
  char *dir = tu_tmpdir();
  ck_assert_ptr_nonnull(dir);
  char path[512];
  snprintf(path, sizeof path, "%s/m.grad", dir);
  ck_assert_int_eq(tu_write_file(path, src_text, strlen(src_text)), 0);
  Ctx c;
  Program p;
  ctx_init(&c);
  c.promote_f64 = 1;
  program_init(&p, &c);
  int rc = fe_compile(&c, path, &p);
  if (rc) diag_print_all(&c, stderr);
  ck_assert_int_eq(rc, 0);
  ck_assert_int_eq(p.nentries, 3);
  Graph *lg = ad_grad_entry(&p, program_find_entry(&p, "loss"));
  ck_assert_ptr_nonnull(lg);
  for (int i = 0; i < p.nentries; i++) {
    FILE *rep = getenv("AD_VERBOSE") ? stderr : NULL;
    rc = gc_check_entry(&c, &p, p.entries[i], 17, GC_DEFAULT_TOL, rep);
    if (rc < 0) diag_print_all(&c, stderr);
    ck_assert_msg(rc == 0, "entry %s: gradcheck %d", p.entries[i]->name, rc);
  }
  program_free(&p);
  ctx_free(&c);
  tu_rmtree(dir);
  free(dir);
}
END_TEST

/* The shipped programs (IMM variants, flow matching) at small sizes: their loss and the
 * derived loss_grad (second order) check clean, stop_grad targets held fixed. */
static void check_program(const char *file, int grouped) {
  static const Define small[] = {
      {"B", "8"}, {"NS", "4"}, {"hidden", "8"}, {"depth", "2"}, {"M", "4"}};
  int nd = grouped ? 5 : 4;
  Ctx c;
  Program p;
  ctx_init(&c);
  c.promote_f64 = 1;
  c.incdirs = xrealloc(NULL, sizeof *c.incdirs); /* ctx_free frees these */
  c.incdirs[0] = "stdlib";
  c.nincdirs = 1;
  c.defines = xrealloc(NULL, sizeof small);
  memcpy(c.defines, small, sizeof small);
  c.ndefines = nd;
  program_init(&p, &c);
  int rc = fe_compile(&c, file, &p);
  if (rc) diag_print_all(&c, stderr);
  ck_assert_msg(rc == 0, "%s does not compile", file);
  Graph *loss = program_find_entry(&p, "loss");
  ck_assert_ptr_nonnull(loss);
  Graph *lg = ad_grad_entry(&p, loss);
  ck_assert_ptr_nonnull(lg);
  for (uint64_t seed = 1; seed <= 2; seed++) {
    FILE *rep = getenv("AD_VERBOSE") ? stderr : NULL;
    ck_assert_msg(
        gc_check_entry(&c, &p, program_find_entry(&p, "loss"), seed, GC_DEFAULT_TOL, rep) == 0,
        "%s: loss, seed %d", file, (int)seed);
    ck_assert_msg(gc_check_entry(&c, &p, lg, seed, GC_DEFAULT_TOL, rep) == 0,
                  "%s: loss_grad, seed %d", file, (int)seed);
  }
  program_free(&p);
  ctx_free(&c);
}

START_TEST(test_shipped_programs) {
  check_program("graphs/imm_2d.grad", 1);
  check_program("graphs/imm_2d_no_s.grad", 1);
  check_program("graphs/imm_energy_2d.grad", 1);
  check_program("graphs/fm_2d.grad", 0);
}
END_TEST

int main(void) {
  Suite *s = suite_create("gradcheck");
  TCase *tc = tcase_create("gradcheck");
  tcase_set_timeout(tc, 60);
  tcase_add_test(tc, test_passes_on_correct_graph);
  tcase_add_test(tc, test_fails_on_staircase);
  tcase_add_test(tc, test_stop_grad_held_or_seen_through);
  tcase_add_test(tc, test_integer_inputs);
  tcase_add_test(tc, test_f32_warns);
  tcase_add_test(tc, test_errors_are_diagnostics);
  tcase_add_test(tc, test_from_source);
  tcase_add_test(tc, test_shipped_programs);
  suite_add_tcase(s, tc);
  SRunner *sr = srunner_create(s);
  srunner_run_all(sr, CK_NORMAL);
  int nf = srunner_ntests_failed(sr);
  srunner_free(sr);
  return nf ? 1 : 0;
}
