/* testutil.c: see testutil.h. Plain C, no Check: every function reports by return value. */
#include "testutil.h"

#include "frontend.h"

#include <ftw.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "philox.h"

Shape tu_shape_of(int rank, const int64_t *dims) {
  Shape s = {rank, {0}};
  for (int i = 0; i < rank && i < IR_MAXRANK; i++) s.dims[i] = dims[i];
  return s;
}

void tu_graph_init(TuGraph *t) {
  ctx_init(&t->ctx);
  program_init(&t->prog, &t->ctx);
  t->g = program_add_entry(&t->prog, "test");
}

void tu_graph_free(TuGraph *t) {
  program_free(&t->prog);
  ctx_free(&t->ctx);
}

ValId tu_input(TuGraph *t, const char *name, DType dt, Shape s) {
  int k = graph_add_input(t->g, name, dt, &s);
  return ir_input(t->g, k, SRCLOC_NONE);
}

ValId tu_param(TuGraph *t, const char *name, DType dt, Shape s, InitKind kind, double a, double b) {
  Init in = {kind, a, b, 0, 0};
  int k = program_param(&t->prog, name, dt, &s, in, SRCLOC_NONE);
  return ir_param(t->g, &t->prog, k, SRCLOC_NONE);
}

const char *tu_last_diag(const TuGraph *t) {
  return t->ctx.ndiags ? t->ctx.diags[t->ctx.ndiags - 1].msg : "";
}

GrTensor tu_tensor(DType dt, Shape s) {
  GrTensor t;
  memset(&t, 0, sizeof t);
  t.dtype = (int32_t)dt;
  t.rank = s.rank;
  for (int i = 0; i < s.rank; i++) t.dims[i] = s.dims[i];
  t.data = gr_alloc((size_t)shape_numel(&s) * dtype_size(dt));
  return t;
}

GrTensor tu_tensor_vals(DType dt, Shape s, const double *vals) {
  GrTensor t = tu_tensor(dt, s);
  for (int64_t i = 0; i < shape_numel(&s); i++) tu_set(&t, i, vals[i]);
  return t;
}

int64_t tu_numel(const GrTensor *t) {
  int64_t n = 1;
  for (int i = 0; i < t->rank; i++) n *= t->dims[i];
  return n;
}

double tu_get(const GrTensor *t, int64_t i) {
  switch (t->dtype) {
  case GR_F32: return ((const float *)t->data)[i];
  case GR_F64: return ((const double *)t->data)[i];
  case GR_I32: return ((const int32_t *)t->data)[i];
  default: return (double)((const int64_t *)t->data)[i];
  }
}

void tu_set(GrTensor *t, int64_t i, double v) {
  switch (t->dtype) {
  case GR_F32: ((float *)t->data)[i] = (float)v; break;
  case GR_F64: ((double *)t->data)[i] = v; break;
  case GR_I32: ((int32_t *)t->data)[i] = (int32_t)v; break;
  default: ((int64_t *)t->data)[i] = (int64_t)v; break;
  }
}

void tu_fill_uniform(GrTensor *t, double lo, double hi, uint64_t seed) {
  for (int64_t i = 0; i < tu_numel(t); i++)
    tu_set(t, i, lo + (hi - lo) * gr_uniform_f64(seed, 0, 0x7E57, (uint64_t)i));
}

int tu_shape_is(const GrTensor *t, Shape s) {
  if (t->rank != s.rank) return 0;
  for (int i = 0; i < s.rank; i++)
    if (t->dims[i] != s.dims[i]) return 0;
  return 1;
}

static int close1(double g, double w, double rtol, double atol) {
  if (isnan(w)) return isnan(g);
  if (isinf(w)) return g == w;
  return fabs(g - w) <= atol + rtol * fabs(w);
}

int tu_close_arr(const double *got, const double *want, int64_t n, double rtol, double atol,
                 char *msg, size_t nmsg) {
  int64_t bad = 0, first = -1;
  for (int64_t i = 0; i < n; i++)
    if (!close1(got[i], want[i], rtol, atol)) {
      if (first < 0) first = i;
      bad++;
    }
  if (!bad) return 1;
  snprintf(msg, nmsg, "element %lld: got %.17g, want %.17g (%lld of %lld elements differ)",
           (long long)first, got[first], want[first], (long long)bad, (long long)n);
  return 0;
}

int tu_close(const GrTensor *got, const double *want, double rtol, double atol, char *msg, size_t nmsg) {
  int64_t n = tu_numel(got);
  double *g = malloc(sizeof(double) * (size_t)(n ? n : 1));
  if (!g) {
    snprintf(msg, nmsg, "out of memory");
    return 0;
  }
  for (int64_t i = 0; i < n; i++) g[i] = tu_get(got, i);
  int ok = tu_close_arr(g, want, n, rtol, atol, msg, nmsg);
  free(g);
  return ok;
}

char *tu_tmpdir(void) {
  const char *base = getenv("TMPDIR");
  if (!base || !*base) base = "/tmp";
  size_t n = strlen(base) + 32;
  char *p = malloc(n);
  if (!p) return NULL;
  snprintf(p, n, "%s/gradc-test-XXXXXX", base);
  if (!mkdtemp(p)) {
    free(p);
    return NULL;
  }
  return p;
}

static int rm_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw) {
  (void)sb, (void)flag, (void)ftw;
  return remove(path);
}

int tu_rmtree(const char *path) { return nftw(path, rm_one, 16, FTW_DEPTH | FTW_PHYS); }

int tu_write_file(const char *path, const void *buf, size_t len) {
  FILE *f = fopen(path, "wb");
  if (!f) return -1;
  size_t w = fwrite(buf, 1, len, f);
  return (fclose(f) == 0 && w == len) ? 0 : -1;
}

int tu_prog_open(TuProg *pg, const char *file, const Define *defs, int ndefs, int promote_f64,
                 uint64_t seed) {
  memset(pg, 0, sizeof *pg);
  ctx_init(&pg->c);
  pg->c.promote_f64 = promote_f64;
  /* ctx_free releases incdirs and defines: give it malloc'ed copies */
  pg->c.incdirs = xrealloc(NULL, sizeof *pg->c.incdirs);
  pg->c.incdirs[0] = "stdlib";
  pg->c.nincdirs = 1;
  if (ndefs > 0) {
    pg->c.defines = xrealloc(NULL, (size_t)ndefs * sizeof *defs);
    memcpy(pg->c.defines, defs, (size_t)ndefs * sizeof *defs);
    pg->c.ndefines = ndefs;
  }
  program_init(&pg->p, &pg->c);
  if (fe_compile(&pg->c, file, &pg->p) != 0) {
    diag_print_all(&pg->c, stderr);
    return -1;
  }
  pg->params = calloc((size_t)pg->p.nparams + 1, sizeof *pg->params);
  return pg->params && interp_init_params(&pg->p, seed, pg->params) == 0 ? 0 : -1;
}

void tu_prog_close(TuProg *pg) {
  for (int i = 0; pg->params && i < pg->p.nparams; i++) gr_tensor_free(&pg->params[i]);
  free(pg->params);
  program_free(&pg->p);
  ctx_free(&pg->c);
}

int tu_gr_main(const GrModuleInfo *m, const char *prog, const char *dir, va_list ap) {
  char *argv[64], bufs[64][600];
  int argc = 0;
  argv[argc++] = (char *)prog;
  for (const char *a; (a = va_arg(ap, const char *)) != NULL && argc < 63;) {
    if (a[0] == '@') snprintf(bufs[argc], sizeof bufs[argc], "%s/%s", dir, a + 1);
    else snprintf(bufs[argc], sizeof bufs[argc], "%s", a);
    argv[argc] = bufs[argc];
    argc++;
  }
  argv[argc] = NULL;
  fflush(stdout);
  return gr_main(m, argc, argv);
}
