/* test_imm_golden.c: the IMM and flow-matching standard library against an independent
 * PyTorch reference (tests/golden/imm, see its README.md).
 *
 * Why: the IMM loss has several published pitfalls (which time is the target, the
 * V-statistic diagonal, the stop-gradient branch, r in f64). Matching an independent
 * implementation tensor by tensor, in f64 to ~1e-9 and in f32 to 1e-4, pins every one of
 * them down, the way llm.c checks itself against a PyTorch dump. The .grad programs
 * (golden_imm.grad, golden_fm.grad) are written with the stdlib, so this exercises the
 * front end, the interpreter and autodiff (loss gradients via ad_grad_entry, d loss/d y_t
 * via ad_vjp) on the real library code. Every check runs four ways (loop index = mode):
 * f32 and f64, in the interpreter and through the compiled pipeline (cg_jit: graph passes,
 * scheduling, LLVM), so the compiled IMM training step is pinned to the reference too.
 *
 * The reference stores weights as W (out, in) and computes h W^T + b; our nn.linear keeps
 * w as [in, out], so W is transposed on load and the gradients are transposed back.
 * Tests run from the repository root (paths below are relative to it).
 */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "autodiff.h"
#include "codegen.h"
#include "frontend.h"
#include "gradrt.h"
#include "interp.h"
#include "ir.h"

#define GOLD "tests/golden/imm"
#define NLAYERS 5

typedef struct {
  Ctx c;
  Program p;
  int f64;               /* promote_f64 */
  int jit;               /* run through the compiled pipeline (cg_jit) instead of interp */
  CgJit *j;              /* compiled lazily at the first run, after graphs are final */
  GrTensor *params;      /* one per Program.params */
  int layer[64], is_w[64]; /* param i -> reference layer index and W/b */
} Golden;

/* ---- tensors ---------------------------------------------------------------------- */

static double tget(const GrTensor *t, int64_t i) {
  return t->dtype == GR_F64 ? ((const double *)t->data)[i] : (double)((const float *)t->data)[i];
}

static int64_t tnumel(const GrTensor *t) {
  int64_t n = 1;
  for (int i = 0; i < t->rank; i++) n *= t->dims[i];
  return n;
}

/* Reads a .npy file and converts it to dtype dt (f32/f64); transpose swaps a matrix. */
static void load_as(const char *path, int dt, int transpose, GrTensor *out) {
  GrTensor raw;
  char err[256];
  int rc = gr_npy_read(path, &raw, err, sizeof err);
  ck_assert_msg(rc == 0, "%s", err);
  *out = raw;
  out->dtype = dt;
  out->data = gr_alloc((size_t)tnumel(&raw) * gr_dtype_size(dt));
  ck_assert(out->data != NULL);
  int64_t rows = raw.rank == 2 ? raw.dims[0] : 1, cols = raw.rank == 2 ? raw.dims[1] : tnumel(&raw);
  if (transpose) {
    ck_assert_int_eq(raw.rank, 2);
    out->dims[0] = cols;
    out->dims[1] = rows;
  }
  for (int64_t i = 0; i < rows; i++)
    for (int64_t j = 0; j < cols; j++) {
      double v = tget(&raw, i * cols + j);
      int64_t k = transpose ? j * rows + i : i * cols + j;
      if (dt == GR_F64) ((double *)out->data)[k] = v;
      else ((float *)out->data)[k] = (float)v;
    }
  gr_tensor_free(&raw);
}

/* max |got - want| / max |want|; `transpose` compares got^T (2-D) with want. */
static double rel_err(const GrTensor *got, const GrTensor *want, int transpose) {
  ck_assert_int_eq(tnumel(got), tnumel(want));
  int64_t rows = want->rank == 2 ? want->dims[0] : 1;
  int64_t cols = want->rank == 2 ? want->dims[1] : tnumel(want);
  double md = 0, mv = 0;
  for (int64_t i = 0; i < rows; i++)
    for (int64_t j = 0; j < cols; j++) {
      double w = tget(want, i * cols + j);
      double g = tget(got, transpose ? j * rows + i : i * cols + j);
      if (fabs(g - w) > md || isnan(g)) md = isnan(g) ? INFINITY : fabs(g - w);
      if (fabs(w) > mv) mv = fabs(w);
    }
  return mv > 0 ? md / mv : md;
}

static void expect_close(const GrTensor *got, const Golden *gd, const char *name, int transpose) {
  char path[256];
  GrTensor want;
  snprintf(path, sizeof path, "%s/%s/%s.npy", GOLD, gd->f64 ? "expected" : "expected_f32", name);
  load_as(path, GR_F64, 0, &want);
  double tol = gd->f64 ? 1e-9 : 1e-4;
  double e = rel_err(got, &want, transpose);
  ck_assert_msg(e <= tol, "%s (%s, %s): relative error %.3g > %.0e", name, gd->f64 ? "f64" : "f32",
                gd->jit ? "compiled" : "interpreter", e, tol);
  gr_tensor_free(&want);
}

/* ---- programs and parameters ---------------------------------------------------------- */

/* "net.velocity_mlp.mlp.linear_3.w" -> layer 3, is_w 1; -1 if not an mlp layer. */
static int param_layer(const char *name, int *is_w) {
  const char *dot = strrchr(name, '.');
  if (!dot) return -1;
  *is_w = strcmp(dot + 1, "w") == 0;
  if (!*is_w && strcmp(dot + 1, "b") != 0) return -1;
  const char *seg = dot;
  while (seg > name && seg[-1] != '.') seg--;
  if (strncmp(seg, "linear", 6) != 0) return -1;
  if (seg + 6 == dot) return 0;
  if (seg[6] != '_') return -1;
  return atoi(seg + 7);
}

/* mode: MODE_F64 (promote every f32 to f64) and/or MODE_JIT (compiled code) */
enum { MODE_F64 = 1, MODE_JIT = 2 };

static void golden_open(Golden *gd, const char *file, const char *pdir, int mode) {
  char path[256];
  memset(gd, 0, sizeof *gd);
  int f64 = (mode & MODE_F64) != 0;
  gd->f64 = f64;
  gd->jit = (mode & MODE_JIT) != 0;
  ctx_init(&gd->c);
  gd->c.promote_f64 = f64;
  gd->c.incdirs = xrealloc(NULL, sizeof *gd->c.incdirs); /* ctx_free frees it */
  gd->c.incdirs[0] = "stdlib";
  gd->c.nincdirs = 1;
  program_init(&gd->p, &gd->c);
  snprintf(path, sizeof path, "%s/%s", GOLD, file);
  int rc = fe_compile(&gd->c, path, &gd->p);
  if (rc != 0) diag_print_all(&gd->c, stderr);
  ck_assert_msg(rc == 0, "%s does not compile", path);
  ck_assert_int_eq(gd->p.nparams, 2 * NLAYERS);
  gd->params = calloc((size_t)gd->p.nparams, sizeof *gd->params);
  for (int i = 0; i < gd->p.nparams; i++) {
    const Param *pr = &gd->p.params[i];
    int L = param_layer(pr->name, &gd->is_w[i]);
    ck_assert_msg(L >= 0 && L < NLAYERS, "unexpected parameter %s", pr->name);
    gd->layer[i] = L;
    snprintf(path, sizeof path, "%s/%s/%s%d.npy", GOLD, pdir, gd->is_w[i] ? "W" : "b", L);
    load_as(path, pr->dtype == DT_F64 ? GR_F64 : GR_F32, gd->is_w[i], &gd->params[i]);
    ck_assert_int_eq(gd->params[i].rank, pr->shape.rank);
    for (int d = 0; d < pr->shape.rank; d++)
      ck_assert_int_eq(gd->params[i].dims[d], pr->shape.dims[d]);
  }
}

static void golden_close(Golden *gd) {
  if (gd->j) cg_jit_free(gd->j);
  for (int i = 0; i < gd->p.nparams; i++) gr_tensor_free(&gd->params[i]);
  free(gd->params);
  program_free(&gd->p);
  ctx_free(&gd->c);
}

/* Runs entry g on the .npy inputs `files` (relative to GOLD, converted to each input's
 * dtype); outputs[] receive g's outputs. */
static void run(Golden *gd, const Graph *g, const char *const *files, GrTensor *outputs) {
  GrTensor in[8];
  char path[256], err[256];
  ck_assert(g != NULL);
  ck_assert_int_le(g->ninputs, 8);
  for (int i = 0; i < g->ninputs; i++) {
    snprintf(path, sizeof path, "%s/%s.npy", GOLD, files[i]);
    load_as(path, g->inputs[i].dtype == DT_F64 ? GR_F64 : GR_F32, 0, &in[i]);
  }
  int rc;
  if (gd->jit) {
    if (!gd->j) {
      CgOptions o;
      cg_options_default(&o);
      o.opt_level = 0; /* graph passes on, LLVM passes off: fast enough for a unit test */
      gd->j = cg_jit_compile(&gd->c, &gd->p, &o);
      if (!gd->j) diag_print_all(&gd->c, stderr);
      ck_assert_msg(gd->j != NULL, "cg_jit_compile failed");
    }
    rc = cg_jit_run(gd->j, g->name, in, gd->params, outputs, 1, 0, err, sizeof err);
  } else {
    rc = interp_run(g, &gd->p, in, gd->params, outputs, 1, 0, err, sizeof err);
  }
  ck_assert_msg(rc == 0, "%s: %s", g->name, err);
  for (int i = 0; i < g->ninputs; i++) gr_tensor_free(&in[i]);
}

static int out_index(const Graph *g, const char *name) {
  for (int j = 0; j < g->noutputs; j++)
    if (strcmp(g->outputs[j].name, name) == 0) return j;
  ck_abort_msg("entry %s has no output %s", g->name, name);
  return -1;
}

static void free_outputs(const Graph *g, GrTensor *outs) {
  for (int j = 0; j < g->noutputs; j++) gr_tensor_free(&outs[j]);
}

/* ---- IMM ------------------------------------------------------------------------------------ */

static const char *const imm_inputs[] = {"x", "eps", "t", "s", "r"};

static void check_imm_parts(int mode) {
  Golden gd;
  GrTensor out[8];
  static const char *const names[] = {"loss", "x_t", "x_r", "y_t", "y_r", "wk", "mmd", "w"};
  golden_open(&gd, "golden_imm.grad", "params", mode);
  const Graph *g = program_find_entry(&gd.p, "parts");
  run(&gd, g, imm_inputs, out);
  for (int k = 0; k < 8; k++) expect_close(&out[out_index(g, names[k])], &gd, names[k], 0);
  free_outputs(g, out);
  golden_close(&gd);
}

/* _i = mode: 0 f32, 1 f64 (interpreter), 2 f32, 3 f64 (compiled) */
START_TEST(imm_parts) { check_imm_parts(_i); }
END_TEST

/* loss and every parameter gradient, from the entry gradc derives for training */
static void check_imm_grads(const char *file, const char *pdir, const char *const *inputs,
                            const char *loss_name, const char *prefix, int mode) {
  Golden gd;
  GrTensor out[2 + 2 * NLAYERS];
  char name[64];
  golden_open(&gd, file, pdir, mode);
  Graph *lg = program_find_entry(&gd.p, "loss");
  ck_assert(lg != NULL);
  Graph *gg = ad_grad_entry(&gd.p, lg);
  if (!gg) diag_print_all(&gd.c, stderr);
  ck_assert(gg != NULL);
  ck_assert_int_eq(gg->noutputs, 1 + gd.p.nparams);
  run(&gd, gg, inputs, out);
  expect_close(&out[0], &gd, loss_name, 0);
  for (int i = 0; i < gd.p.nparams; i++) {
    snprintf(name, sizeof name, "%sgrad_%s%d", prefix, gd.is_w[i] ? "W" : "b", gd.layer[i]);
    expect_close(&out[1 + i], &gd, name, gd.is_w[i]);
  }
  free_outputs(gg, out);
  golden_close(&gd);
}

/* _i = mode: 0 f32, 1 f64 (interpreter), 2 f32, 3 f64 (compiled) */
START_TEST(imm_grads) { check_imm_grads("golden_imm.grad", "params", imm_inputs, "loss", "", _i); }
END_TEST

/* d loss / d y_t through ad_vjp on the loss written as a function of the particles */
static void check_grad_y_t(int mode) {
  Golden gd;
  GrTensor out[2];
  static const char *const f64_in[] = {"expected/y_t", "expected/y_r", "t", "s"};
  static const char *const f32_in[] = {"expected_f32/y_t", "expected_f32/y_r", "t", "s"};
  golden_open(&gd, "golden_imm.grad", "params", mode);
  Graph *g = program_find_entry(&gd.p, "loss_of_y");
  ck_assert(g != NULL && g->noutputs == 1);
  ValId wrt[4], grads[4];
  int nw = 0;
  for (ValId v = 0; v < g->nnodes; v++)
    if (g->nodes[v].op == OP_INPUT && g->nodes[v].attr.index == 0 && nw < 4) wrt[nw++] = v;
  ck_assert_int_ge(nw, 1);
  ck_assert_int_eq(ad_vjp(g, g->outputs[0].val, IR_ERR, nw, wrt, grads, SRCLOC_NONE), 0);
  ValId total = grads[0];
  for (int i = 1; i < nw; i++) total = ir_must(g, ir_binary(g, OP_ADD, total, grads[i], SRCLOC_NONE));
  graph_add_output(g, "grad_y_t", total);
  run(&gd, g, gd.f64 ? f64_in : f32_in, out);
  expect_close(&out[0], &gd, "loss", 0);
  expect_close(&out[1], &gd, "grad_y_t", 0);
  free_outputs(g, out);
  golden_close(&gd);
}

/* _i = mode: 0 f32, 1 f64 (interpreter), 2 f32, 3 f64 (compiled) */
START_TEST(imm_grad_y_t) { check_grad_y_t(_i); }
END_TEST

/* r(s, t) in f64 from (t, s), against the reference's r */
START_TEST(imm_r_of_t) {
  Golden gd;
  GrTensor out[1], want;
  static const char *const in[] = {"t", "s"};
  golden_open(&gd, "golden_imm.grad", "params", MODE_F64);
  const Graph *g = program_find_entry(&gd.p, "r_from");
  run(&gd, g, in, out);
  load_as(GOLD "/r.npy", GR_F64, 0, &want);
  double e = rel_err(&out[0], &want, 0);
  ck_assert_msg(e < 1e-12, "r: relative error %.3g", e);
  gr_tensor_free(&want);
  free_outputs(g, out);
  golden_close(&gd);
}
END_TEST

static void check_samplers(const char *file, const char *pdir, const char *prefix, int mode) {
  Golden gd;
  GrTensor out[1];
  char entry[32], name[64];
  static const char *const in[] = {"z"};
  static const int steps[] = {1, 2, 4};
  golden_open(&gd, file, pdir, mode);
  for (int i = 0; i < 3; i++) {
    snprintf(entry, sizeof entry, "sample_%d", steps[i]);
    snprintf(name, sizeof name, "%s_sample_%d", prefix, steps[i]);
    const Graph *g = program_find_entry(&gd.p, entry);
    run(&gd, g, in, out);
    expect_close(&out[0], &gd, name, 0);
    free_outputs(g, out);
  }
  golden_close(&gd);
}

/* _i = mode: 0 f32, 1 f64 (interpreter), 2 f32, 3 f64 (compiled) */
START_TEST(imm_samplers) { check_samplers("golden_imm.grad", "params", "imm", _i); }
END_TEST

/* ---- flow matching ---------------------------------------------------------------------- */

static const char *const fm_inputs[] = {"x", "eps", "t_fm"};

/* _i = mode: 0 f32, 1 f64 (interpreter), 2 f32, 3 f64 (compiled) */
START_TEST(fm_grads) { check_imm_grads("golden_fm.grad", "params_fm", fm_inputs, "fm_loss", "fm_", _i); }
END_TEST

/* _i = mode: 0 f32, 1 f64 (interpreter), 2 f32, 3 f64 (compiled) */
START_TEST(fm_samplers) { check_samplers("golden_fm.grad", "params_fm", "fm", _i); }
END_TEST

static Suite *golden_suite(void) {
  Suite *s = suite_create("imm_golden");
  TCase *tc = tcase_create("imm");
  tcase_set_timeout(tc, 60);
  tcase_add_loop_test(tc, imm_parts, 0, 4);
  tcase_add_loop_test(tc, imm_grads, 0, 4);
  tcase_add_loop_test(tc, imm_grad_y_t, 0, 4);
  tcase_add_test(tc, imm_r_of_t);
  tcase_add_loop_test(tc, imm_samplers, 0, 4);
  suite_add_tcase(s, tc);
  TCase *fm = tcase_create("fm");
  tcase_set_timeout(fm, 60);
  tcase_add_loop_test(fm, fm_grads, 0, 4);
  tcase_add_loop_test(fm, fm_samplers, 0, 4);
  suite_add_tcase(s, fm);
  return s;
}

int main(void) {
  SRunner *sr = srunner_create(golden_suite());
  srunner_run_all(sr, CK_NORMAL);
  int nf = srunner_ntests_failed(sr);
  srunner_free(sr);
  return nf == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
