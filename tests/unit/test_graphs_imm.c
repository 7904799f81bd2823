/* test_graphs_imm.c: every trainable program in graphs/ compiles, differentiates and runs.
 *
 * Why: the graphs/ programs are what users build into executables, and their conventions are a
 * contract with the runtime (entry loss(x) -> f32 with a derived loss_grad, entry
 * sample(x, t, s) -> one sampler step, known top-level constants). This suite compiles
 * each one at a small size (-D overrides), derives loss_grad with ad_grad_entry, runs it
 * and one sampler step in the interpreter, and checks that the loss and every parameter
 * gradient are finite and that gradients reach every parameter. It also checks the
 * constants the runtime reads. Run from the repository root.
 */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "autodiff.h"
#include "frontend.h"
#include "gradrt.h"
#include "interp.h"
#include "ir.h"

typedef struct {
  Ctx c;
  Program p;
  GrTensor *params;
} Prog;

static void prog_open(Prog *pg, const char *file, const Define *defs, int ndefs) {
  memset(pg, 0, sizeof *pg);
  ctx_init(&pg->c);
  pg->c.incdirs = xrealloc(NULL, sizeof *pg->c.incdirs); /* ctx_free frees these */
  pg->c.incdirs[0] = "stdlib";
  pg->c.nincdirs = 1;
  pg->c.defines = xrealloc(NULL, (size_t)ndefs * sizeof *defs);
  memcpy(pg->c.defines, defs, (size_t)ndefs * sizeof *defs);
  pg->c.ndefines = ndefs;
  program_init(&pg->p, &pg->c);
  int rc = fe_compile(&pg->c, file, &pg->p);
  if (rc != 0) diag_print_all(&pg->c, stderr);
  ck_assert_msg(rc == 0, "%s does not compile", file);
  pg->params = calloc((size_t)pg->p.nparams + 1, sizeof *pg->params);
  ck_assert_int_eq(interp_init_params(&pg->p, 11, pg->params), 0);
}

static void prog_close(Prog *pg) {
  for (int i = 0; i < pg->p.nparams; i++) gr_tensor_free(&pg->params[i]);
  free(pg->params);
  program_free(&pg->p);
  ctx_free(&pg->c);
}

/* Inputs of g filled deterministically: floats in (-1, 1) (times in (0, T)), ints mod 10. */
static void fill_inputs(const Graph *g, GrTensor *in) {
  for (int i = 0; i < g->ninputs; i++) {
    const GInput *gi = &g->inputs[i];
    int64_t n = shape_numel(&gi->shape);
    in[i].dtype = (int32_t)gi->dtype;
    in[i].rank = gi->shape.rank;
    for (int d = 0; d < gi->shape.rank; d++) in[i].dims[d] = gi->shape.dims[d];
    in[i].data = gr_alloc((size_t)n * dtype_size(gi->dtype));
    for (int64_t e = 0; e < n; e++) {
      double v = sin(0.37 * (double)e + i);
      if (!strcmp(gi->name, "t")) v = 0.9;
      if (!strcmp(gi->name, "s")) v = 0.3;
      switch (gi->dtype) {
      case DT_F32: ((float *)in[i].data)[e] = (float)v; break;
      case DT_F64: ((double *)in[i].data)[e] = v; break;
      case DT_I32: ((int32_t *)in[i].data)[e] = (int32_t)(e % 10); break;
      default: ((int64_t *)in[i].data)[e] = e % 10; break;
      }
    }
  }
}

static double get(const GrTensor *t, int64_t e) {
  return t->dtype == GR_F64 ? ((double *)t->data)[e] : ((float *)t->data)[e];
}

static int64_t numel(const GrTensor *t) {
  int64_t n = 1;
  for (int d = 0; d < t->rank; d++) n *= t->dims[d];
  return n;
}

static double const_num(const Program *p, const char *name, int *found) {
  for (int i = 0; i < p->nconsts; i++)
    if (!strcmp(p->consts[i].name, name)) return *found = 1, p->consts[i].num;
  return *found = 0, 0;
}

static const char *const_str(const Program *p, const char *name) {
  for (int i = 0; i < p->nconsts; i++)
    if (!strcmp(p->consts[i].name, name) && p->consts[i].is_str) return p->consts[i].str;
  return NULL;
}

/* Compiles graph `file` small, runs loss_grad and (if present) sample. */
static void check_graph(const char *file, int has_sample) {
  static const Define small[] = {{"B", "16"}, {"NS", "8"}, {"hidden", "16"}, {"depth", "2"}};
  Prog pg;
  char err[256];
  prog_open(&pg, file, small, has_sample ? 4 : 2);
  int found;
  ck_assert_msg(const_str(&pg.p, "data") != NULL, "%s: no `const data`", file);
  ck_assert_msg(const_str(&pg.p, "optimizer") != NULL, "%s: no `const optimizer`", file);
  ck_assert(const_num(&pg.p, "lr", &found) > 0 && found);
  ck_assert(const_num(&pg.p, "steps", &found) > 0 && found);
  Graph *loss = program_find_entry(&pg.p, "loss");
  ck_assert_msg(loss != NULL, "%s: no entry loss", file);
  Graph *lg = ad_grad_entry(&pg.p, loss);
  if (!lg) diag_print_all(&pg.c, stderr);
  ck_assert(lg != NULL);
  GrTensor in[4], *out = calloc((size_t)lg->noutputs, sizeof *out);
  fill_inputs(lg, in);
  int rc = interp_run(lg, &pg.p, in, pg.params, out, 5, 1, err, sizeof err);
  ck_assert_msg(rc == 0, "%s: %s", file, err);
  ck_assert_msg(isfinite(get(&out[0], 0)), "%s: loss %g", file, get(&out[0], 0));
  for (int i = 0; i < pg.p.nparams; i++) {
    double amax = 0;
    for (int64_t e = 0; e < numel(&out[1 + i]); e++) {
      double v = get(&out[1 + i], e);
      ck_assert_msg(isfinite(v), "%s: gradient of %s not finite", file, pg.p.params[i].name);
      amax = fmax(amax, fabs(v));
    }
    ck_assert_msg(amax > 0, "%s: no gradient reaches %s", file, pg.p.params[i].name);
  }
  for (int j = 0; j < lg->noutputs; j++) gr_tensor_free(&out[j]);
  for (int i = 0; i < lg->ninputs; i++) gr_tensor_free(&in[i]);
  free(out);
  if (has_sample) {
    const Graph *sg = program_find_entry(&pg.p, "sample");
    ck_assert_msg(sg != NULL && sg->ninputs == 3 && sg->noutputs == 1, "%s: sample(x, t, s)", file);
    GrTensor so[1];
    fill_inputs(sg, in);
    rc = interp_run(sg, &pg.p, in, pg.params, so, 5, 1, err, sizeof err);
    ck_assert_msg(rc == 0, "%s: %s", file, err);
    ck_assert_int_eq(numel(&so[0]), numel(&in[0]));
    for (int64_t e = 0; e < numel(&so[0]); e++) ck_assert(isfinite(get(&so[0], e)));
    gr_tensor_free(&so[0]);
    for (int i = 0; i < sg->ninputs; i++) gr_tensor_free(&in[i]);
  }
  prog_close(&pg);
}

START_TEST(graph_imm_2d) { check_graph("graphs/imm_2d.grad", 1); }
END_TEST
START_TEST(graph_imm_2d_no_s) { check_graph("graphs/imm_2d_no_s.grad", 1); }
END_TEST
START_TEST(graph_imm_energy_2d) { check_graph("graphs/imm_energy_2d.grad", 1); }
END_TEST
START_TEST(graph_fm_2d) { check_graph("graphs/fm_2d.grad", 1); }
END_TEST
START_TEST(graph_imm_fashion) { check_graph("graphs/imm_fashion.grad", 1); }
END_TEST
START_TEST(graph_fashion_classifier) { check_graph("graphs/fashion_classifier.grad", 0); }
END_TEST

/* The no-s ablation is one flag: its network has no s branch, so fewer parameters. */
START_TEST(no_s_has_no_s_branch) {
  static const Define small[] = {{"B", "16"}, {"NS", "8"}, {"hidden", "16"}, {"depth", "2"}};
  Prog a, b;
  prog_open(&a, "graphs/imm_2d.grad", small, 4);
  prog_open(&b, "graphs/imm_2d_no_s.grad", small, 4);
  int sa = 0, sb = 0;
  for (int i = 0; i < a.p.nparams; i++) sa += strstr(a.p.params[i].name, "s_embed") != NULL;
  for (int i = 0; i < b.p.nparams; i++) sb += strstr(b.p.params[i].name, "s_embed") != NULL;
  ck_assert_int_gt(sa, 0);
  ck_assert_int_eq(sb, 0);
  ck_assert_int_eq(a.p.nparams, b.p.nparams + sa);
  prog_close(&a);
  prog_close(&b);
}
END_TEST

static Suite *graphs_suite(void) {
  Suite *s = suite_create("graphs_imm");
  TCase *tc = tcase_create("graphs");
  tcase_set_timeout(tc, 120);
  tcase_add_test(tc, graph_imm_2d);
  tcase_add_test(tc, graph_imm_2d_no_s);
  tcase_add_test(tc, graph_imm_energy_2d);
  tcase_add_test(tc, graph_fm_2d);
  tcase_add_test(tc, graph_imm_fashion);
  tcase_add_test(tc, graph_fashion_classifier);
  tcase_add_test(tc, no_s_has_no_s_branch);
  suite_add_tcase(s, tc);
  return s;
}

int main(void) {
  SRunner *sr = srunner_create(graphs_suite());
  srunner_run_all(sr, CK_NORMAL);
  int nf = srunner_ntests_failed(sr);
  srunner_free(sr);
  return nf == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
