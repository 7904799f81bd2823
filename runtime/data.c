/* data.c: where training rows come from.
 *
 * Every source is a function from a global row index g to a row, so that training is a
 * pure function of (seed, step): batch `step` is rows [step*B, (step+1)*B), a resumed run
 * sees exactly the rows it would have seen, and `prog data -n N` prints rows [0, N).
 *
 * Built-in 2-D sets are generated from Philox draws with counter (seed, k, stream, g)
 * (k numbers the draws of one row). Each follows the flow-matching literature's
 * generator (FFJORD's toy sets, sklearn's moons) and is then centered and scaled by a
 * fixed factor so that the per-coordinate RMS standard deviation is 0.5 (= sigma_d):
 *   checkerboard  x1 = 4u0 - 2, x2 = u1 - 2 floor(2 u2) + (floor(x1) mod 2): the 8 dark
 *                 cells of a 4x4 board on [-2, 2]^2; scale sqrt(3)/4 (uniform std 4/sqrt12)
 *   8gaussians    centre k = floor(8 u0) at 2 sqrt2 (cos k pi/4, sin k pi/4), noise
 *                 N(0, (0.5/sqrt2)^2); scale 0.5/sqrt(4.125)
 *   moons         u0 < 1/2: (cos pi u1, sin pi u1), else (1 - cos pi u1, 0.5 - sin pi u1),
 *                 + N(0, 0.05^2), minus (0.5, 0.25); scale 0.707393
 *   swissroll     t = 1.5 pi (1 + 2 u0), (t cos t + n0, t sin t + n1) / 5 (FFJORD),
 *                 minus its mean (0.4, 0.042441); scale 0.364307
 * (the scales and means were computed by numerical integration; data tests check them).
 * Labels: checkerboard cell 4*row+col (0..15), 8gaussians centre (0..7), moons (0..1),
 * swissroll 0.
 *
 * Finite sets (.npy via mmap, IDX via zlib, so gzipped or not) are shuffled per epoch with
 * a Philox Fisher-Yates permutation (stream GR_STREAM_SHUFFLE + epoch); the current
 * epoch's permutation is cached. Every header is checked against the file's real size.
 */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "rt.h"

#define FMNIST_DIR "/usr/share/datasets/fashion-mnist"

static int d_fail(char *err, size_t nerr, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int d_fail(char *err, size_t nerr, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  if (err && nerr) vsnprintf(err, nerr, fmt, ap);
  va_end(ap);
  return -1;
}

static const char *const builtin_names[] = {"checkerboard", "8gaussians", "moons", "swissroll"};

int gr_data_is_builtin(const char *src) {
  for (int i = 0; i < 4; i++)
    if (strcmp(src, builtin_names[i]) == 0) return 1;
  return 0;
}

/* ---- built-in 2-D sets ------------------------------------------------------------------ */
static void gen_row(const GrData *d, uint64_t g, float *out, int32_t *label) {
  uint64_t s = d->seed, st = d->stream;
  double u0 = gr_uniform_f64(s, 0, st, g), u1 = gr_uniform_f64(s, 1, st, g);
  double u2 = gr_uniform_f64(s, 2, st, g);
  double x = 0, y = 0, sc = 1;
  int lab = 0;
  switch (d->kind) {
  case GR_DS_CHECKER: {
    x = 4 * u0 - 2;
    y = u1 - 2 * floor(2 * u2) + fmod(floor(x) + 4, 2);
    lab = 4 * (int)(floor(y) + 2) + (int)(floor(x) + 2);
    sc = sqrt(3.0) / 4;
    break;
  }
  case GR_DS_8GAUSS: {
    int k = (int)floor(8 * u0);
    double n0 = gr_normal_f64(s, 3, st, g), n1 = gr_normal_f64(s, 4, st, g);
    x = 2 * M_SQRT2 * cos(k * M_PI / 4) + 0.5 / M_SQRT2 * n0;
    y = 2 * M_SQRT2 * sin(k * M_PI / 4) + 0.5 / M_SQRT2 * n1;
    lab = k;
    sc = 0.5 / sqrt(4.125);
    break;
  }
  case GR_DS_MOONS: {
    double n0 = gr_normal_f64(s, 3, st, g), n1 = gr_normal_f64(s, 4, st, g);
    double th = M_PI * u1;
    lab = u0 >= 0.5;
    x = (lab ? 1 - cos(th) : cos(th)) + 0.05 * n0 - 0.5;
    y = (lab ? 0.5 - sin(th) : sin(th)) + 0.05 * n1 - 0.25;
    sc = 0.707393;
    break;
  }
  default: { /* GR_DS_SWISS */
    double n0 = gr_normal_f64(s, 3, st, g), n1 = gr_normal_f64(s, 4, st, g);
    double t = 1.5 * M_PI * (1 + 2 * u0);
    x = (t * cos(t) + n0) / 5 - 0.4;
    y = (t * sin(t) + n1) / 5 - 0.042441;
    sc = 0.364307;
    break;
  }
  }
  if (out) {
    out[0] = (float)(x * sc);
    out[1] = (float)(y * sc);
  }
  if (label) *label = lab;
}

/* ---- .npy via mmap ------------------------------------------------------------------------ */
/* Finds `'key':` in the header dict and returns a pointer after the colon and spaces. */
static const char *npy_key(const char *h, size_t n, const char *key) {
  size_t kl = strlen(key);
  for (size_t i = 0; i + kl + 2 < n; i++)
    if ((h[i] == '\'' || h[i] == '"') && memcmp(h + i + 1, key, kl) == 0 && h[i + 1 + kl] == h[i]) {
      const char *p = h + i + kl + 2;
      while (p < h + n && (*p == ' ' || *p == ':')) p++;
      return p;
    }
  return NULL;
}

static int npy_open(GrData *d, const char *path, char *err, size_t nerr) {
  int fd = open(path, O_RDONLY);
  if (fd < 0) return d_fail(err, nerr, "cannot open data file %s: %s", path, strerror(errno));
  struct stat st;
  if (fstat(fd, &st) != 0 || st.st_size < 10) {
    close(fd);
    return d_fail(err, nerr, "%s: too short to be a .npy file", path);
  }
  size_t len = (size_t)st.st_size;
  void *map = mmap(NULL, len, PROT_READ, MAP_PRIVATE, fd, 0);
  close(fd);
  if (map == MAP_FAILED) return d_fail(err, nerr, "%s: mmap failed: %s", path, strerror(errno));
  d->map = map;
  d->map_len = len;
  const unsigned char *b = map;
  if (memcmp(b, "\x93NUMPY", 6) != 0) return d_fail(err, nerr, "%s: not a .npy file (bad magic)", path);
  size_t hl, off;
  if (b[6] == 1) {
    hl = (size_t)b[8] | (size_t)b[9] << 8;
    off = 10;
  } else if (b[6] == 2 || b[6] == 3) {
    if (len < 12) return d_fail(err, nerr, "%s: truncated .npy header", path);
    hl = (size_t)b[8] | (size_t)b[9] << 8 | (size_t)b[10] << 16 | (size_t)b[11] << 24;
    off = 12;
  } else return d_fail(err, nerr, "%s: unsupported .npy version %d", path, b[6]);
  if (hl > len - off) return d_fail(err, nerr, "%s: .npy header length %zu exceeds the file (truncated?)", path, hl);
  const char *h = (const char *)b + off;
  const char *descr = npy_key(h, hl, "descr"), *fo = npy_key(h, hl, "fortran_order");
  const char *shape = npy_key(h, hl, "shape");
  if (!descr || !fo || !shape) return d_fail(err, nerr, "%s: malformed .npy header", path);
  if (strncmp(descr + 1, "<f4", 3) == 0) d->npy_f64 = 0;
  else if (strncmp(descr + 1, "<f8", 3) == 0) d->npy_f64 = 1;
  else return d_fail(err, nerr, "%s: data must be little-endian float32 or float64 ('<f4'/'<f8')", path);
  if (strncmp(fo, "False", 5) != 0) return d_fail(err, nerr, "%s: Fortran-ordered arrays are not supported", path);
  if (*shape != '(') return d_fail(err, nerr, "%s: malformed shape in the .npy header", path);
  const char *p = shape + 1, *hend = h + hl;
  int64_t dims[8];
  int rank = 0;
  while (p < hend && *p != ')') {
    while (p < hend && (*p == ' ' || *p == ',')) p++;
    if (p < hend && *p == ')') break;
    char *e;
    long long v = strtoll(p, &e, 10);
    if (e == p || v < 0 || rank == 8) return d_fail(err, nerr, "%s: malformed shape in the .npy header", path);
    dims[rank++] = v;
    p = e;
  }
  if (rank < 1) return d_fail(err, nerr, "%s: a data file needs at least one axis (rows)", path);
  uint64_t row = 1;
  for (int i = 1; i < rank; i++) {
    if (dims[i] && row > (1ull << 40) / (uint64_t)dims[i]) return d_fail(err, nerr, "%s: shape too large", path);
    row *= (uint64_t)dims[i];
  }
  uint64_t esz = d->npy_f64 ? 8 : 4, avail = len - off - hl;
  if ((uint64_t)dims[0] > avail || (row && (uint64_t)dims[0] > avail / (row * esz)) || (uint64_t)dims[0] * row * esz > avail)
    return d_fail(err, nerr, "%s: header says %lld rows of %llu values but the file holds only %llu data bytes (truncated?)",
                  path, (long long)dims[0], (unsigned long long)row, (unsigned long long)avail);
  if (dims[0] == 0 || row == 0) return d_fail(err, nerr, "%s: the data file is empty", path);
  if ((uint64_t)dims[0] * row * esz < avail)
    return d_fail(err, nerr, "%s: header says %lld rows of %llu values (%llu bytes) but the file holds %llu data bytes (lying header?)",
                  path, (long long)dims[0], (unsigned long long)row,
                  (unsigned long long)((uint64_t)dims[0] * row * esz), (unsigned long long)avail);
  d->kind = GR_DS_NPY;
  d->npy = b + off + hl;
  d->nrows = dims[0];
  d->row_elems = (int64_t)row;
  return 0;
}

/* ---- IDX (MNIST format), plain or gzip ---------------------------------------------------- */
/* Reads n header bytes; on failure closes z and says whether the header is cut short or
 * the gzip stream is corrupt. */
static int idx_hdr(gzFile z, unsigned char *b, int n, const char *path, char *err, size_t nerr) {
  if (gzread(z, b, (unsigned)n) == n) return 0;
  int zerr = 0;
  const char *zmsg = gzerror(z, &zerr);
  char zbuf[128];
  snprintf(zbuf, sizeof zbuf, "%s", zmsg ? zmsg : "");
  gzclose(z);
  if (zerr < 0 && zerr != Z_BUF_ERROR)
    return d_fail(err, nerr, "%s: corrupt compressed data (%s)", path, zbuf);
  return d_fail(err, nerr, "%s: truncated IDX header", path);
}

int gr_idx_read(const char *path, int *rank, int64_t dims[4], uint8_t **bytes, char *err,
                size_t nerr) {
  *bytes = NULL;
  gzFile z = gzopen(path, "rb");
  if (!z) return d_fail(err, nerr, "cannot open data file %s: %s", path, strerror(errno));
  unsigned char hdr[4];
  if (idx_hdr(z, hdr, 4, path, err, nerr)) return -1;
  if (hdr[0] || hdr[1] || hdr[3] < 1 || hdr[3] > 4) {
    gzclose(z);
    return d_fail(err, nerr, "%s: not an IDX file (bad magic %02x%02x%02x%02x)", path, hdr[0], hdr[1], hdr[2], hdr[3]);
  }
  if (hdr[2] != 0x08) {
    gzclose(z);
    return d_fail(err, nerr, "%s: IDX element type 0x%02x is not unsigned byte (0x08)", path, hdr[2]);
  }
  *rank = hdr[3];
  uint64_t total = 1, span = 1;
  for (int i = 0; i < *rank; i++) {
    unsigned char b[4];
    if (idx_hdr(z, b, 4, path, err, nerr)) return -1;
    dims[i] = (int64_t)((uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 | b[3]);
    /* bound the product of the non-zero dims (checked before multiplying, so it cannot
     * wrap): a zero dim must not let the others overflow row sizes computed later */
    uint64_t di = dims[i] ? (uint64_t)dims[i] : 1;
    int big = span > (1ull << 34) / di;
    span *= di;
    total *= (uint64_t)dims[i];
    if (big) {
      gzclose(z);
      return d_fail(err, nerr, "%s: IDX header claims an implausible size", path);
    }
  }
  /* The buffer grows with the data actually read (doubling, at most `total`), so a
   * header that claims gigabytes over a few bytes of data costs no more than the data. */
  uint64_t cap = total < (1u << 20) ? total : (1u << 20);
  uint8_t *buf = malloc(cap ? cap : 1);
  if (!buf) {
    gzclose(z);
    return d_fail(err, nerr, "%s: out of memory (%llu bytes)", path, (unsigned long long)cap);
  }
  uint64_t got = 0;
  while (got < total) {
    if (got == cap) {
      uint64_t ncap = cap * 2 < total ? cap * 2 : total;
      uint8_t *nb = realloc(buf, ncap);
      if (!nb) {
        free(buf);
        gzclose(z);
        return d_fail(err, nerr, "%s: out of memory (%llu bytes)", path, (unsigned long long)ncap);
      }
      buf = nb, cap = ncap;
    }
    uint64_t want = cap - got;
    unsigned chunk = want > (1u << 30) ? (1u << 30) : (unsigned)want;
    int r = gzread(z, buf + got, chunk);
    if (r <= 0) break;
    got += (uint64_t)r;
  }
  unsigned char extra;
  int more = got == total ? gzread(z, &extra, 1) : 0;
  int zerr = 0;
  const char *zmsg = gzerror(z, &zerr);
  char zbuf[128];
  snprintf(zbuf, sizeof zbuf, "%s", zmsg ? zmsg : "");
  gzclose(z);
  if (zerr < 0 && zerr != Z_BUF_ERROR) {
    free(buf);
    return d_fail(err, nerr, "%s: corrupt compressed data (%s)", path, zbuf);
  }
  if (got < total) {
    free(buf);
    return d_fail(err, nerr, "%s: truncated: the IDX header says %llu bytes of data, the file has %llu",
                  path, (unsigned long long)total, (unsigned long long)got);
  }
  if (more > 0) {
    free(buf);
    return d_fail(err, nerr, "%s: the file is longer than its IDX header says (lying header?)", path);
  }
  *bytes = buf;
  return 0;
}

static int file_exists(const char *p) { return access(p, R_OK) == 0; }

/* path, or path + ".gz" when only that exists. */
static void pick_gz(const char *base, char *out, size_t n) {
  snprintf(out, n, "%s", base);
  if (!file_exists(out)) snprintf(out, n, "%s.gz", base);
}

static int idx_open(GrData *d, const char *images, const char *labels, char *err, size_t nerr) {
  int rank;
  int64_t dims[4];
  uint8_t *px;
  if (gr_idx_read(images, &rank, dims, &px, err, nerr)) return -1;
  d->kind = GR_DS_IDX;
  d->u8 = px;
  d->nrows = dims[0];
  d->row_elems = 1;
  for (int i = 1; i < rank; i++) d->row_elems *= dims[i];
  if (d->nrows == 0 || d->row_elems == 0) return d_fail(err, nerr, "%s: the data file is empty", images);
  if (!labels) return 0;
  int lr;
  int64_t ld[4];
  uint8_t *lb;
  if (gr_idx_read(labels, &lr, ld, &lb, err, nerr)) return -1;
  if (lr != 1 || ld[0] != d->nrows) {
    free(lb);
    return d_fail(err, nerr, "%s: %lld labels for %lld images in %s", labels,
                  (long long)(lr == 1 ? ld[0] : -1), (long long)d->nrows, images);
  }
  d->labels = malloc((size_t)d->nrows * sizeof *d->labels);
  if (!d->labels) {
    free(lb);
    return d_fail(err, nerr, "%s: out of memory", labels);
  }
  for (int64_t i = 0; i < d->nrows; i++) d->labels[i] = lb[i];
  free(lb);
  d->has_labels = 1;
  return 0;
}

static int fmnist_open(GrData *d, int test, char *err, size_t nerr) {
  const char *dir = getenv("GRADC_FASHION_MNIST");
  if (!dir || !*dir) dir = FMNIST_DIR;
  const char *pre = test ? "t10k" : "train";
  char b[1024], im[1100], lb[1100];
  snprintf(b, sizeof b, "%s/%s-images-idx3-ubyte", dir, pre);
  pick_gz(b, im, sizeof im);
  snprintf(b, sizeof b, "%s/%s-labels-idx1-ubyte", dir, pre);
  pick_gz(b, lb, sizeof lb);
  return idx_open(d, im, lb, err, nerr);
}

/* An IDX images path "X-images-idx3-ubyte[.gz]" takes labels from "X-labels-idx1-ubyte[.gz]"
 * when that file exists. */
static int idx_path_open(GrData *d, const char *path, char *err, size_t nerr) {
  const char *m = strstr(path, "-images-idx3-ubyte");
  char lb[1100], base[1024];
  if (m) {
    snprintf(base, sizeof base, "%.*s-labels-idx1-ubyte", (int)(m - path), path);
    pick_gz(base, lb, sizeof lb);
    if (file_exists(lb)) return idx_open(d, path, lb, err, nerr);
  }
  return idx_open(d, path, NULL, err, nerr);
}

static int ends_with(const char *s, const char *suf) {
  size_t a = strlen(s), b = strlen(suf);
  return a >= b && strcmp(s + a - b, suf) == 0;
}

int gr_data_open(GrData *d, const char *src, uint64_t seed, int eval, char *err, size_t nerr) {
  memset(d, 0, sizeof *d);
  snprintf(d->name, sizeof d->name, "%s", src);
  d->seed = seed;
  d->stream = eval ? GR_STREAM_DATA_EVAL : GR_STREAM_DATA;
  d->perm_epoch = -1;
  int r;
  for (int i = 0; i < 4; i++)
    if (strcmp(src, builtin_names[i]) == 0) {
      d->kind = (GrDataKind)i;
      d->row_elems = 2;
      d->has_labels = 1;
      return 0;
    }
  if (strcmp(src, "fashion-mnist") == 0 || strcmp(src, "fashion_mnist") == 0)
    r = fmnist_open(d, eval, err, nerr);
  else if (strcmp(src, "fashion-mnist-test") == 0 || strcmp(src, "fashion_mnist_test") == 0)
    r = fmnist_open(d, 1, err, nerr);
  else if (ends_with(src, ".npy")) r = npy_open(d, src, err, nerr);
  else if (strstr(src, "idx") || ends_with(src, ".gz")) r = idx_path_open(d, src, err, nerr);
  else
    r = d_fail(err, nerr, "unknown data source '%s' (built-in: checkerboard, 8gaussians, moons, "
               "swissroll, fashion-mnist; or a .npy / IDX file path)", src);
  if (r) gr_data_close(d);
  return r;
}

void gr_data_close(GrData *d) {
  if (d->map) munmap(d->map, d->map_len);
  free((void *)d->u8);
  free(d->labels);
  free(d->perm);
  memset(d, 0, sizeof *d);
}

/* Fisher-Yates with j uniform in [0, i] from 64 Philox bits (multiply-high). */
static int make_perm(GrData *d, int64_t epoch) {
  if (!d->perm) {
    d->perm = malloc((size_t)d->nrows * sizeof *d->perm);
    if (!d->perm) return -1;
  }
  int64_t *p = d->perm;
  for (int64_t i = 0; i < d->nrows; i++) p[i] = i;
  uint64_t stream = GR_STREAM_SHUFFLE + (uint64_t)epoch + (d->stream == GR_STREAM_DATA_EVAL ? 0x8000000ull : 0);
  for (int64_t i = d->nrows - 1; i > 0; i--) {
    philox_u32x4 r = gr_philox_block(d->seed, 0, stream, (uint64_t)i);
    uint64_t u = (uint64_t)r.v[0] << 32 | r.v[1];
    int64_t j = (int64_t)(((unsigned __int128)u * (uint64_t)(i + 1)) >> 64);
    int64_t t = p[i];
    p[i] = p[j];
    p[j] = t;
  }
  d->perm_epoch = epoch;
  return 0;
}

static void copy_row(const GrData *d, int64_t r, float *out) {
  int64_t n = d->row_elems;
  if (d->kind == GR_DS_IDX) {
    const uint8_t *s = d->u8 + r * n;
    for (int64_t i = 0; i < n; i++) out[i] = (float)s[i] / 127.5f - 1.0f;
  } else if (d->npy_f64) {
    const unsigned char *s = (const unsigned char *)d->npy + (size_t)(r * n) * 8;
    for (int64_t i = 0; i < n; i++) {
      double v;
      memcpy(&v, s + 8 * i, 8);
      out[i] = (float)v;
    }
  } else memcpy(out, (const unsigned char *)d->npy + (size_t)(r * n) * 4, (size_t)n * 4);
}

int gr_data_rows(GrData *d, int64_t first, int64_t n, float *x, int32_t *labels, char *err,
                 size_t nerr) {
  for (int64_t i = 0; i < n; i++) {
    int64_t g = first + i;
    float *row = x ? x + i * d->row_elems : NULL;
    int32_t *lab = labels ? labels + i : NULL;
    if (d->kind <= GR_DS_SWISS) {
      gen_row(d, (uint64_t)g, row, lab);
      continue;
    }
    int64_t epoch = g / d->nrows;
    if (epoch != d->perm_epoch && make_perm(d, epoch))
      return d_fail(err, nerr, "%s: out of memory for the shuffle", d->name);
    int64_t r = d->perm[g % d->nrows];
    if (row) copy_row(d, r, row);
    if (lab) *lab = d->labels ? d->labels[r] : 0;
  }
  return 0;
}
