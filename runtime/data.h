/* data.h: the data sources a training executable reads (data.c).
 *
 * A source yields rows of `row_elems` f32 values (and an i32 label per row). Row g of the
 * training stream is a pure function of (seed, g), so batch `step` = rows
 * [step*B, (step+1)*B) is the same whether training was resumed or not, and `prog data`
 * prints exactly the rows training sees.
 *   built-in 2-D sets (checkerboard, 8gaussians, moons, swissroll): each row drawn
 *     from Philox with counter (seed, draw, stream, g);
 *   finite sets (.npy files, IDX files, "fashion-mnist"): row g is element g mod nrows
 *     of the permutation of epoch g / nrows, a Philox Fisher-Yates shuffle with stream
 *     GR_STREAM_SHUFFLE + epoch.
 * The held-out stream (eval) uses another Philox stream for built-in sets and the test
 * file for fashion-mnist (see docs/runtime.md).
 */
#ifndef GRADC_DATA_H
#define GRADC_DATA_H

#include <stddef.h>
#include <stdint.h>

typedef enum { GR_DS_CHECKER, GR_DS_8GAUSS, GR_DS_MOONS, GR_DS_SWISS, GR_DS_NPY, GR_DS_IDX } GrDataKind;

typedef struct {
  GrDataKind kind;
  char name[512];     /* as given, for messages */
  int64_t row_elems;  /* f32 values per row */
  int64_t nrows;      /* finite sets; 0 for generated ones */
  int has_labels;
  uint64_t seed, stream;
  /* finite sets */
  const uint8_t *u8;  /* IDX pixels [nrows, row_elems] (owned) */
  const void *npy;    /* mmap'ed .npy payload */
  int npy_f64;        /* payload is <f8 instead of <f4 */
  void *map;
  size_t map_len;
  int32_t *labels;    /* [nrows] or NULL (owned) */
  /* the current epoch's permutation */
  int64_t *perm;
  int64_t perm_epoch;
} GrData;

/* Opens a source by name: a built-in set, "fashion-mnist" / "fashion-mnist-test", a
 * path ending in .npy, or an IDX file (optionally .gz). eval != 0 picks the held-out
 * stream. Returns -1 with a message in err. */
int gr_data_open(GrData *d, const char *src, uint64_t seed, int eval, char *err, size_t nerr);
void gr_data_close(GrData *d);
/* Rows [first, first + n) of the stream into x [n, row_elems] and labels [n] (either may
 * be NULL). Returns -1 (with err) only when memory runs out. */
int gr_data_rows(GrData *d, int64_t first, int64_t n, float *x, int32_t *labels, char *err,
                 size_t nerr);
/* IDX reader (plain or gzip): dims and raw bytes; unsigned-byte data only. */
int gr_idx_read(const char *path, int *rank, int64_t dims[4], uint8_t **bytes, char *err,
                size_t nerr);
/* Is `src` one of the built-in generated sets? */
int gr_data_is_builtin(const char *src);

#endif
