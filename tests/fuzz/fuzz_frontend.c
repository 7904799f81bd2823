/* fuzz_frontend.c: libFuzzer target for the whole front end.
 *
 * The input is split at lines "%%" into up to three files: main.grad, a.grad and
 * b.grad, written into a scratch folder, so `import a` / `import b` (and cycles between
 * them) go through real import resolution; the stdlib folder is on the import path so
 * mutated copies of real programs still reach elaboration and shape checking.
 * fe_compile must return 0, or -1 with at least one diagnostic, and never crash, hang,
 * leak or trip a sanitizer. Printing the diagnostics exercises the caret printer on
 * arbitrary bytes. -D overrides are not fuzzed here (tests/bad covers them).
 */
#include "frontend.h"
#include "fuzz_util.h"

#ifndef FUZZ_STDLIB
#define FUZZ_STDLIB "stdlib"
#endif

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *const fz_names[3] = {"main.grad", "a.grad", "b.grad"};

/* Finds the next "\n%%\n" (or a leading "%%\n") at or after `from`; returns its start or
 * size when there is none, and the length of the separator in *sep. */
static size_t next_sep(const uint8_t *d, size_t size, size_t from, size_t *sep) {
  for (size_t i = from; i + 3 <= size; i++) {
    if (d[i] == '%' && d[i + 1] == '%' && d[i + 2] == '\n' && (i == from || d[i - 1] == '\n')) {
      *sep = 3;
      return i;
    }
  }
  *sep = 0;
  return size;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size > 64 * 1024) return 0; /* big inputs only slow the search down */
  const char *main_path = NULL;
  size_t at = 0;
  for (int k = 0; k < 3; k++) {
    size_t sep, end = k == 2 ? size : next_sep(data, size, at, &sep);
    if (k == 2) sep = 0;
    const char *p = fz_write(k, fz_names[k], data + at, end - at);
    if (k == 0) main_path = p;
    at = end + sep < size ? end + sep : size;
  }
  Ctx c;
  ctx_init(&c);
  const char *inc[1] = {FUZZ_STDLIB};
  c.incdirs = xrealloc(NULL, sizeof inc);
  memcpy(c.incdirs, inc, sizeof inc);
  c.nincdirs = 1;
  Program p;
  program_init(&p, &c);
  int rc = fe_compile(&c, main_path, &p);
  if (rc != 0 && c.ndiags == 0) {
    fprintf(stderr, "fuzz: fe_compile failed without a diagnostic\n");
    abort();
  }
  if (rc == 0 && c.ndiags != 0) {
    fprintf(stderr, "fuzz: fe_compile succeeded with %d diagnostics\n", c.ndiags);
    abort();
  }
  FILE *null = fopen("/dev/null", "w");
  if (null) {
    diag_print_all(&c, null);
    fclose(null);
  }
  program_free(&p);
  ctx_free(&c);
  return 0;
}
