/* fuzz_compile.c: libFuzzer target for the middle of the compiler on fuzzed programs.
 *
 * fuzz_frontend stops at the elaborated graph; this target takes every program the front
 * end accepts further, the way `gradc build` does up to the LLVM boundary: for every
 * entry (not only `loss`) it derives the gradient entry (ad_grad_entry: reverse mode
 * over the parameters), then runs the graph passes and the scheduler on all entries
 * (cg_plan: fold, simplify, CSE, DCE, fusion, memory plan). Every graph it produces must
 * pass ir_verify; a rejected gradient (an entry that is not a scalar objective) must come
 * with a diagnostic, which is then dropped so the remaining entries still go on. LLVM itself is not
 * run (milliseconds per input would starve the search). Input format as fuzz_frontend:
 * files separated by "%%" lines; programs without entries are skipped quickly.
 */
#include "autodiff.h"
#include "frontend.h"
#include "fuzz_util.h"
#include "lower.h"

#ifndef FUZZ_STDLIB
#define FUZZ_STDLIB "stdlib"
#endif

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *const fz_names[3] = {"main.grad", "a.grad", "b.grad"};

static size_t next_sep(const uint8_t *d, size_t size, size_t from) {
  for (size_t i = from; i + 3 <= size; i++)
    if (d[i] == '%' && d[i + 1] == '%' && d[i + 2] == '\n' && (i == from || d[i - 1] == '\n'))
      return i;
  return size;
}

static void verify_or_die(const Graph *g, const Program *p, const char *what) {
  char buf[512];
  if (ir_verify(g, p, buf, sizeof buf)) {
    fprintf(stderr, "fuzz: %s graph '%s' fails verification: %s\n", what, g->name, buf);
    abort();
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size > 16 * 1024) return 0;
  const char *main_path = NULL;
  size_t at = 0;
  for (int k = 0; k < 3; k++) {
    size_t end = k == 2 ? size : next_sep(data, size, at);
    const char *p = fz_write(k, fz_names[k], data + at, end - at);
    if (k == 0) main_path = p;
    at = end + 3 < size ? end + 3 : size;
  }
  Ctx c;
  ctx_init(&c);
  const char *inc[1] = {FUZZ_STDLIB};
  c.incdirs = xrealloc(NULL, sizeof inc);
  memcpy(c.incdirs, inc, sizeof inc);
  c.nincdirs = 1;
  Program p;
  program_init(&p, &c);
  if (fe_compile(&c, main_path, &p) == 0) {
    int n = p.nentries;
    for (int i = 0; i < n; i++) {
      int before = c.ndiags;
      Graph *g = ad_grad_entry(&p, p.entries[i]);
      if (g) {
        verify_or_die(g, &p, "gradient");
      } else {
        if (c.ndiags == before) {
          fprintf(stderr, "fuzz: ad_grad_entry failed without a diagnostic\n");
          abort();
        }
        c.ndiags = before; /* a non-scalar entry has no gradient: expected, go on */
      }
    }
    if (!ctx_failed(&c)) {
      CgOptions co;
      cg_options_default(&co);
      CgPlan plan;
      if (cg_plan(&c, &p, &co, &plan) == 0) {
        for (int i = 0; i < plan.n; i++) verify_or_die(plan.g[i], &p, "optimized");
        cg_plan_free(&plan);
      } else if (!ctx_failed(&c)) {
        fprintf(stderr, "fuzz: cg_plan failed without a diagnostic\n");
        abort();
      }
    }
  }
  program_free(&p);
  ctx_free(&c);
  return 0;
}
