/* test_runtime_jit.c: gr_main driving REAL generated code.
 *
 * Why: the fake module tests the driver against a hand-written ABI; this suite checks the
 * contract with the compiler itself. It compiles graphs/fm_2d.grad and graphs/imm_2d.grad
 * at a small size (-D overrides), derives loss_grad with autodiff, JIT-compiles every
 * entry, and builds the GrModuleInfo table an AOT executable would carry (parameters with
 * their initializers, constants, entries with the uniform gr_entry_NAME wrappers and the
 * memory plan's workspace). Then gr_main trains, resumes (bit-identical), runs with 1 and 3
 * threads (bit-identical), samples, evaluates and gradient-checks, in-process. Run from
 * the repository root (it reads graphs/ and stdlib/).
 */
#include <check.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "autodiff.h"
#include "codegen.h"
#include "frontend.h"
#include "gradrt.h"
#include "ir.h"
#include "rt.h"
#include "testutil.h"

typedef struct {
  Ctx c;
  Program p;
  CgJit *jit;
  GrModuleInfo m;
  GrTensorInfo *params;
  GrConstInfo *consts;
  GrEntryInfo *entries;
  GrTensorInfo *io; /* inputs and outputs of all entries */
} JitModule;

static void shape_to(GrTensorInfo *t, const char *name, DType dt, const Shape *s) {
  memset(t, 0, sizeof *t);
  t->name = name;
  t->dtype = (int32_t)dt;
  t->rank = s->rank;
  for (int d = 0; d < s->rank; d++) t->dims[d] = s->dims[d];
}

/* Compiles `file` with the defines and fills jm->m like an AOT object's gr_module. */
static void jit_module_open(JitModule *jm, const char *file, const Define *defs, int ndefs) {
  memset(jm, 0, sizeof *jm);
  ctx_init(&jm->c);
  jm->c.incdirs = xrealloc(NULL, sizeof *jm->c.incdirs);
  jm->c.incdirs[0] = "stdlib";
  jm->c.nincdirs = 1;
  jm->c.defines = xrealloc(NULL, (size_t)ndefs * sizeof *defs);
  memcpy(jm->c.defines, defs, (size_t)ndefs * sizeof *defs);
  jm->c.ndefines = ndefs;
  program_init(&jm->p, &jm->c);
  int rc = fe_compile(&jm->c, file, &jm->p);
  Graph *loss = rc == 0 ? program_find_entry(&jm->p, "loss") : NULL;
  if (loss && !ad_grad_entry(&jm->p, loss)) rc = -1;
  CgOptions o;
  cg_options_default(&o);
  o.opt_level = 0; /* fast compile: these tests are about the driver, not speed */
  if (rc == 0 && loss) jm->jit = cg_jit_compile(&jm->c, &jm->p, &o);
  if (!jm->jit) diag_print_all(&jm->c, stderr);
  ck_assert_msg(jm->jit != NULL, "%s does not compile", file);
  const Program *p = &jm->p;
  jm->params = calloc((size_t)p->nparams + 1, sizeof *jm->params);
  for (int i = 0; i < p->nparams; i++) {
    const Param *pr = &p->params[i];
    shape_to(&jm->params[i], pr->name, pr->dtype, &pr->shape);
    jm->params[i].init = (int32_t)pr->init.kind;
    jm->params[i].init_a = pr->init.a;
    jm->params[i].init_b = pr->init.b;
    jm->params[i].fan_in = pr->init.fan_in;
    jm->params[i].fan_out = pr->init.fan_out;
  }
  jm->consts = calloc((size_t)p->nconsts + 1, sizeof *jm->consts);
  for (int i = 0; i < p->nconsts; i++)
    jm->consts[i] = (GrConstInfo){p->consts[i].name, p->consts[i].is_str, p->consts[i].num, p->consts[i].str};
  int nio = 0;
  for (int e = 0; e < p->nentries; e++) nio += p->entries[e]->ninputs + p->entries[e]->noutputs;
  jm->io = calloc((size_t)nio + 1, sizeof *jm->io);
  jm->entries = calloc((size_t)p->nentries + 1, sizeof *jm->entries);
  int k = 0;
  for (int e = 0; e < p->nentries; e++) {
    const Graph *g = p->entries[e];
    GrEntryInfo *en = &jm->entries[e];
    en->name = g->name;
    en->ninputs = g->ninputs;
    en->noutputs = g->noutputs;
    en->inputs = &jm->io[k];
    for (int i = 0; i < g->ninputs; i++) shape_to(&jm->io[k++], g->inputs[i].name, g->inputs[i].dtype, &g->inputs[i].shape);
    en->outputs = &jm->io[k];
    for (int i = 0; i < g->noutputs; i++) {
      const Node *n = &g->nodes[g->outputs[i].val];
      shape_to(&jm->io[k++], g->outputs[i].name, n->dtype, &n->shape);
    }
    en->workspace_bytes = cg_jit_workspace_bytes(jm->jit, g->name);
    en->flops = 0;
    en->fn = cg_jit_entry(jm->jit, g->name);
    ck_assert_ptr_nonnull(en->fn);
  }
  jm->m = (GrModuleInfo){GR_ABI_VERSION, file, "jit-test-hash", p->nparams, p->nconsts, p->nentries,
                         jm->params, jm->consts, jm->entries};
}

static void jit_module_close(JitModule *jm) {
  cg_jit_free(jm->jit);
  free(jm->params), free(jm->consts), free(jm->entries), free(jm->io);
  program_free(&jm->p);
  ctx_free(&jm->c);
}

static char *dir;

static int run(JitModule *jm, ...) {
  va_list ap;
  va_start(ap, jm);
  int rc = tu_gr_main(&jm->m, "jitprog", dir, ap);
  va_end(ap);
  return rc;
}

static int same_file(const char *a, const char *b) {
  char pa[600], pb[600];
  snprintf(pa, sizeof pa, "%s/%s", dir, a);
  snprintf(pb, sizeof pb, "%s/%s", dir, b);
  FILE *fa = fopen(pa, "rb"), *fb = fopen(pb, "rb");
  int same = fa && fb;
  while (same) {
    int x = fgetc(fa), y = fgetc(fb);
    if (x != y) same = 0;
    if (x == EOF || y == EOF) break;
  }
  if (fa) fclose(fa);
  if (fb) fclose(fb);
  return same;
}

/* Mean loss of the first and the last `k` rows of a CSV log. */
static void log_ends(const char *name, int k, double *first, double *last) {
  char path[600], line[256];
  snprintf(path, sizeof path, "%s/%s", dir, name);
  FILE *f = fopen(path, "r");
  ck_assert_ptr_nonnull(f);
  double v[4096];
  int n = 0;
  ck_assert_ptr_nonnull(fgets(line, sizeof line, f));
  while (n < 4096 && fgets(line, sizeof line, f)) {
    long long s;
    ck_assert_int_eq(sscanf(line, "%lld,%lf", &s, &v[n]), 2);
    n++;
  }
  fclose(f);
  ck_assert_int_ge(n, 2 * k);
  *first = *last = 0;
  for (int i = 0; i < k; i++) *first += v[i] / k, *last += v[n - 1 - i] / k;
}

static const Define fm_small[] = {{"B", "128"}, {"NS", "64"}, {"hidden", "32"}, {"depth", "2"}, {"lr", "0.003"}};

START_TEST(fm_train_resume_threads) {
  dir = tu_tmpdir();
  JitModule jm;
  jit_module_open(&jm, "graphs/fm_2d.grad", fm_small, 5);
  /* training makes progress on the real flow-matching loss */
  ck_assert_int_eq(run(&jm, "train", "--steps", "300", "--every", "1", "--ckpt", "@a.safetensors", "--log",
                       "@a.csv", "--schedule", "constant", "--quiet", NULL), 0);
  double first, last;
  log_ends("a.csv", 30, &first, &last);
  ck_assert_msg(last < 0.8 * first, "loss %g -> %g", first, last);
  /* resume and thread count with generated code */
  ck_assert_int_eq(run(&jm, "train", "--steps", "40", "--threads", "1", "--ckpt", "@full.safetensors", "--quiet", NULL), 0);
  ck_assert_int_eq(run(&jm, "train", "--steps", "40", "--until", "20", "--threads", "3", "--ckpt", "@half.safetensors", "--quiet", NULL), 0);
  ck_assert_int_eq(run(&jm, "train", "--steps", "40", "--resume", "--threads", "2", "--ckpt", "@half.safetensors", "--quiet", NULL), 0);
  ck_assert(same_file("full.safetensors", "half.safetensors"));
  /* sampling and evaluation through the entry "sample" */
  ck_assert_int_eq(run(&jm, "sample", "--ckpt", "@a.safetensors", "--steps", "8", "-n", "100", "--out", "@s.npy",
                       "--png", "@s.png", "--quiet", NULL), 0);
  char path[600], err[512];
  snprintf(path, sizeof path, "%s/s.npy", dir);
  GrTensor t;
  ck_assert_msg(gr_npy_read(path, &t, err, sizeof err) == 0, "%s", err);
  ck_assert(t.rank == 2 && t.dims[0] == 100 && t.dims[1] == 2);
  for (int i = 0; i < 200; i++) ck_assert(isfinite(((float *)t.data)[i]));
  gr_tensor_free(&t);
  ck_assert_int_eq(run(&jm, "eval", "--ckpt", "@a.safetensors", "--steps", "1,8", "-n", "128", NULL), 0);
  ck_assert_int_eq(run(&jm, "gradcheck", "--ckpt", "@a.safetensors", "-n", "12", NULL), 0);
  ck_assert_int_eq(run(&jm, "info", NULL), 0);
  jit_module_close(&jm);
  tu_rmtree(dir);
  free(dir);
}
END_TEST

static const Define imm_small[] = {{"B", "64"}, {"NS", "32"}, {"hidden", "32"}, {"depth", "2"}};

START_TEST(imm_trains_and_samples) {
  dir = tu_tmpdir();
  JitModule jm;
  jit_module_open(&jm, "graphs/imm_2d.grad", imm_small, 4);
  ck_assert_int_eq(run(&jm, "train", "--steps", "30", "--threads", "2", "--ckpt", "@a.safetensors", "--quiet", NULL), 0);
  ck_assert_int_eq(run(&jm, "train", "--steps", "30", "--threads", "1", "--ckpt", "@b.safetensors", "--quiet", NULL), 0);
  ck_assert(same_file("a.safetensors", "b.safetensors"));
  ck_assert_int_eq(run(&jm, "sample", "--ckpt", "@a.safetensors", "--steps", "2", "-n", "50", "--out", "@s.npy", "--quiet", NULL), 0);
  ck_assert_int_eq(run(&jm, "sample", "--ckpt", "@a.safetensors", "--steps", "3", "--restart", "-n", "50", "--out", "@r.npy", "--quiet", NULL), 0);
  ck_assert_int_eq(run(&jm, "eval", "--ckpt", "@a.safetensors", "--steps", "1,2", "-n", "64", "--json", NULL), 0);
  jit_module_close(&jm);
  tu_rmtree(dir);
  free(dir);
}
END_TEST

static Suite *suite(void) {
  Suite *s = suite_create("runtime_jit");
  TCase *tc = tcase_create("jit");
  tcase_set_timeout(tc, 120);
  tcase_add_test(tc, fm_train_resume_threads);
  tcase_add_test(tc, imm_trains_and_samples);
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
