/* testutil.h: small conveniences shared by the unit tests (linked into every test binary).
 *
 * Tests should read like the math they check, so this header hides the bookkeeping:
 *   - TuGraph: a Ctx + Program + one Graph, set up and torn down in one call each;
 *     tu_input() adds an entry argument and returns its INPUT node.
 *   - tensors: allocate (tu_tensor), fill deterministically (tu_fill_uniform, from Philox,
 *     so a failing test fails the same way every run), read/write any dtype as double
 *     (tu_get/tu_set), compare against an expected array with rtol/atol (tu_close).
 *   - shapes: TU_SHAPE(2, 3) builds a Shape; TU_SHAPE0 is the rank-0 shape.
 *   - files: tu_tmpdir() makes a fresh private folder, tu_rmtree() removes it.
 * Nothing here calls Check, so helpers stay usable from any test style; tests turn the
 * return values into ck_assert_msg().
 */
#ifndef GRADC_TESTUTIL_H
#define GRADC_TESTUTIL_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include "gradrt.h"
#include "interp.h"
#include "ir.h"

/* ---- shapes ---------------------------------------------------------------------------- */
Shape tu_shape_of(int rank, const int64_t *dims);
#define TU_SHAPE(...)                                                                      \
  tu_shape_of((int)(sizeof((int64_t[]){__VA_ARGS__}) / sizeof(int64_t)), (int64_t[]){__VA_ARGS__})
#define TU_SHAPE0 ((Shape){0, {0}})

/* ---- a graph under test ---------------------------------------------------------------- */
typedef struct {
  Ctx ctx;
  Program prog;
  Graph *g; /* owned by prog (its first entry, named "test") */
} TuGraph;

void tu_graph_init(TuGraph *t);
void tu_graph_free(TuGraph *t);
/* Adds entry argument `name` (dtype dt, shape s) and returns its INPUT node. */
ValId tu_input(TuGraph *t, const char *name, DType dt, Shape s);
/* Adds parameter `name` with an initializer and returns its PARAM node. */
ValId tu_param(TuGraph *t, const char *name, DType dt, Shape s, InitKind kind, double a, double b);
/* Last diagnostic message of the context, or "" (to explain a failed builder). */
const char *tu_last_diag(const TuGraph *t);

/* ---- tensors ------------------------------------------------------------------------------ */
/* A zeroed tensor of dtype/shape (data from gr_alloc; free with gr_tensor_free). */
GrTensor tu_tensor(DType dt, Shape s);
/* A tensor holding vals[0..numel) converted to dt (C casts). */
GrTensor tu_tensor_vals(DType dt, Shape s, const double *vals);
int64_t tu_numel(const GrTensor *t);
double tu_get(const GrTensor *t, int64_t i);
void tu_set(GrTensor *t, int64_t i, double v);
/* Fills t with uniform values in [lo, hi), a pure function of (seed, element index). */
void tu_fill_uniform(GrTensor *t, double lo, double hi, uint64_t seed);
/* 1 if t has exactly this shape. */
int tu_shape_is(const GrTensor *t, Shape s);
/* 1 if |got[i] - want[i]| <= atol + rtol * |want[i]| for all i (NaN matches NaN, infinities
 * must match exactly). Else 0 and a description of the first mismatch (index, values,
 * count of bad elements) in msg. */
int tu_close(const GrTensor *got, const double *want, double rtol, double atol, char *msg, size_t nmsg);
/* The same on plain arrays of doubles. */
int tu_close_arr(const double *got, const double *want, int64_t n, double rtol, double atol,
                 char *msg, size_t nmsg);

/* ---- files ------------------------------------------------------------------------------- */
/* Creates a fresh folder under $TMPDIR (or /tmp); returns a malloc'ed path, or NULL. */
/* A .grad file compiled for a test (imports from ./stdlib, -D defines), with its
 * parameters initialized from `seed`. tu_prog_open returns 0, or -1 after printing the
 * diagnostics; tu_prog_close frees everything (also after a failed open). */
typedef struct {
  Ctx c;
  Program p;
  GrTensor *params;
} TuProg;
int tu_prog_open(TuProg *pg, const char *file, const Define *defs, int ndefs, int promote_f64,
                 uint64_t seed);
void tu_prog_close(TuProg *pg);

/* Calls gr_main(m, ...) as the program `prog` with the arguments in ap (a NULL-terminated
 * list of strings; "@x" becomes the path dir/x, at most 62 arguments). */
int tu_gr_main(const GrModuleInfo *m, const char *prog, const char *dir, va_list ap);

char *tu_tmpdir(void);
/* Removes a folder and everything in it; returns 0 on success. */
int tu_rmtree(const char *path);
/* Writes len bytes to path; returns 0 on success. */
int tu_write_file(const char *path, const void *buf, size_t len);

#endif
