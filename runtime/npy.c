/* npy.c: NumPy .npy files, the exchange format between gradc, its executables and Python.
 *
 * A .npy file is: the magic "\x93NUMPY", a version byte pair (1.0, 2.0 or 3.0), the header
 * length (u16 for 1.0, u32 for 2.0/3.0, little-endian), a Python dict literal such as
 *   {'descr': '<f4', 'fortran_order': False, 'shape': (60000, 784), }
 * padded with spaces and a newline, then the raw C-order data.
 *
 * Files come from users and from other programs, so the reader trusts nothing: the header
 * is parsed by a small recursive-descent reader of exactly the dict NumPy writes (three
 * keys, strings, booleans, a tuple of non-negative integers), every size is checked for
 * overflow before it is multiplied, the header must fit in the file and the data must be
 * exactly as long as the shape says. Every failure is a message naming the file and the
 * problem; nothing crashes and nothing leaks.
 *
 * Supported: little-endian f4/f8/i4/i8 ('<f4' ...; '|' or '=' byte orders are not
 * written by NumPy for these types and are rejected), C order. Everything else is a clear
 * error naming the dtype. The host is assumed little-endian (x86-64, AArch64).
 *
 * The writer emits version 1.0 (2.0 if the header would not fit a u16), the header padded
 * so the data starts at a multiple of 64 bytes, into a temporary file in the target's
 * folder that is fsync'ed and renamed over the target: readers never see half a file.
 */
#include "gradrt.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define NPY_MAX_HEADER (1u << 20) /* NumPy itself refuses headers above 10 000 bytes */

typedef struct {
  int32_t dtype;
  int32_t rank;
  int64_t dims[GR_MAXRANK];
  size_t data_off;   /* where the data starts */
  size_t data_bytes; /* numel * element size */
} NpyHeader;

__attribute__((format(printf, 4, 5))) static int npy_err(char *err, size_t nerr, const char *name,
                                                         const char *fmt, ...) {
  if (!err || !nerr) return -1;
  int k = snprintf(err, nerr, "%s: ", name ? name : "(npy)");
  if (k < 0 || (size_t)k >= nerr) return -1;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(err + k, nerr - (size_t)k, fmt, ap);
  va_end(ap);
  return -1;
}

/* ---- the header dict -------------------------------------------------------------------- */
typedef struct {
  const char *s, *end;
  const char *name;
  char *err;
  size_t nerr;
} Lex;

static void skip_ws(Lex *l) {
  while (l->s < l->end && (*l->s == ' ' || *l->s == '\t' || *l->s == '\n' || *l->s == '\r')) l->s++;
}

static int expect(Lex *l, char c, const char *where) {
  skip_ws(l);
  if (l->s >= l->end || *l->s != c)
    return npy_err(l->err, l->nerr, l->name, "malformed header: expected '%c' %s", c, where);
  l->s++;
  return 0;
}

/* A quoted string ('...' or "...") without escapes, copied into buf. */
static int parse_str(Lex *l, char *buf, size_t n) {
  skip_ws(l);
  if (l->s >= l->end || (*l->s != '\'' && *l->s != '"'))
    return npy_err(l->err, l->nerr, l->name, "malformed header: expected a quoted string");
  char q = *l->s++;
  size_t k = 0;
  while (l->s < l->end && *l->s != q) {
    if (*l->s == '\\' || k + 1 >= n)
      return npy_err(l->err, l->nerr, l->name, "malformed header: bad or too long string");
    buf[k++] = *l->s++;
  }
  if (l->s >= l->end) return npy_err(l->err, l->nerr, l->name, "malformed header: unterminated string");
  l->s++;
  buf[k] = 0;
  return 0;
}

static int parse_bool(Lex *l, int *v) {
  skip_ws(l);
  size_t left = (size_t)(l->end - l->s);
  if (left >= 4 && !memcmp(l->s, "True", 4)) {
    *v = 1;
    l->s += 4;
    return 0;
  }
  if (left >= 5 && !memcmp(l->s, "False", 5)) {
    *v = 0;
    l->s += 5;
    return 0;
  }
  return npy_err(l->err, l->nerr, l->name, "malformed header: fortran_order must be True or False");
}

/* (d0, d1, ...) with 0..GR_MAXRANK non-negative decimal integers, optional trailing comma. */
static int parse_shape(Lex *l, NpyHeader *h) {
  if (expect(l, '(', "to open the shape tuple")) return -1;
  h->rank = 0;
  for (;;) {
    skip_ws(l);
    if (l->s < l->end && *l->s == ')') break;
    if (l->s < l->end && *l->s == '-')
      return npy_err(l->err, l->nerr, l->name, "negative dimension in shape");
    if (l->s >= l->end || *l->s < '0' || *l->s > '9')
      return npy_err(l->err, l->nerr, l->name, "malformed header: expected a dimension in the shape");
    int64_t v = 0;
    while (l->s < l->end && *l->s >= '0' && *l->s <= '9') {
      if (v > (INT64_MAX - 9) / 10) return npy_err(l->err, l->nerr, l->name, "dimension too large in shape");
      v = v * 10 + (*l->s++ - '0');
    }
    if (l->s < l->end && (*l->s == 'L' || *l->s == 'l')) l->s++; /* Python 2 longs */
    if (h->rank == GR_MAXRANK)
      return npy_err(l->err, l->nerr, l->name, "rank above %d is not supported", GR_MAXRANK);
    h->dims[h->rank++] = v;
    skip_ws(l);
    if (l->s < l->end && *l->s == ',') {
      l->s++;
      continue;
    }
    skip_ws(l);
    if (l->s < l->end && *l->s == ')') break;
    return npy_err(l->err, l->nerr, l->name, "malformed header: expected ',' or ')' in the shape");
  }
  l->s++;
  return 0;
}

static int parse_descr(Lex *l, NpyHeader *h) {
  char d[32];
  if (parse_str(l, d, sizeof d)) return -1;
  static const struct { const char *s; int32_t t; } known[] = {
      {"<f4", GR_F32}, {"<f8", GR_F64}, {"<i4", GR_I32}, {"<i8", GR_I64}};
  for (size_t i = 0; i < sizeof known / sizeof known[0]; i++)
    if (!strcmp(d, known[i].s)) {
      h->dtype = known[i].t;
      return 0;
    }
  if (d[0] == '>')
    return npy_err(l->err, l->nerr, l->name, "big-endian dtype '%s' is not supported (save as '<%s')", d, d + 1);
  return npy_err(l->err, l->nerr, l->name,
                 "unsupported dtype '%s' (supported: <f4, <f8, <i4, <i8; convert with astype)", d);
}

/* The dict: exactly the keys descr, fortran_order, shape, in any order. */
static int parse_dict(Lex *l, NpyHeader *h) {
  int seen_descr = 0, seen_fo = 0, seen_shape = 0;
  if (expect(l, '{', "at the start of the header")) return -1;
  for (;;) {
    skip_ws(l);
    if (l->s < l->end && *l->s == '}') break;
    char key[32];
    if (parse_str(l, key, sizeof key) || expect(l, ':', "after a key")) return -1;
    if (!strcmp(key, "descr") && !seen_descr) {
      seen_descr = 1;
      if (parse_descr(l, h)) return -1;
    } else if (!strcmp(key, "fortran_order") && !seen_fo) {
      int fo = 0;
      seen_fo = 1;
      if (parse_bool(l, &fo)) return -1;
      if (fo)
        return npy_err(l->err, l->nerr, l->name,
                       "fortran_order arrays are not supported (save with np.ascontiguousarray)");
    } else if (!strcmp(key, "shape") && !seen_shape) {
      seen_shape = 1;
      if (parse_shape(l, h)) return -1;
    } else {
      return npy_err(l->err, l->nerr, l->name, "malformed header: unexpected or repeated key '%s'", key);
    }
    skip_ws(l);
    if (l->s < l->end && *l->s == ',') {
      l->s++;
      continue;
    }
    skip_ws(l);
    if (l->s < l->end && *l->s == '}') break;
    return npy_err(l->err, l->nerr, l->name, "malformed header: expected ',' or '}'");
  }
  l->s++;
  if (!seen_descr || !seen_fo || !seen_shape)
    return npy_err(l->err, l->nerr, l->name, "malformed header: missing key '%s'",
                   !seen_descr ? "descr" : !seen_fo ? "fortran_order" : "shape");
  skip_ws(l);
  if (l->s != l->end) return npy_err(l->err, l->nerr, l->name, "malformed header: text after the dict");
  return 0;
}

/* Parses magic, version, header length and dict from the first `avail` bytes of a file of
 * `total` bytes, and checks sizes against the file length. */
static int parse_header(const unsigned char *b, size_t avail, size_t total, const char *name,
                        NpyHeader *h, char *err, size_t nerr) {
  memset(h, 0, sizeof *h);
  if (avail < 6 || memcmp(b, "\x93NUMPY", 6))
    return npy_err(err, nerr, name, "not a .npy file (bad magic)");
  if (avail < 8) return npy_err(err, nerr, name, "truncated header");
  int major = b[6], minor = b[7];
  if ((major < 1 || major > 3) || minor != 0)
    return npy_err(err, nerr, name, "unsupported .npy version %d.%d (supported: 1.0, 2.0, 3.0)", major, minor);
  size_t pre = major == 1 ? 10 : 12;
  if (avail < pre) return npy_err(err, nerr, name, "truncated header");
  size_t hlen = major == 1 ? (size_t)b[8] | (size_t)b[9] << 8
                           : (size_t)b[8] | (size_t)b[9] << 8 | (size_t)b[10] << 16 | (size_t)b[11] << 24;
  if (hlen > NPY_MAX_HEADER) return npy_err(err, nerr, name, "header length %zu is implausibly large", hlen);
  if (pre + hlen > total)
    return npy_err(err, nerr, name, "header length %zu goes beyond the end of the file (%zu bytes)", hlen, total);
  if (pre + hlen > avail) return npy_err(err, nerr, name, "truncated header");
  if (memchr(b + pre, 0, hlen)) return npy_err(err, nerr, name, "malformed header: NUL byte in the header");
  Lex l = {(const char *)b + pre, (const char *)b + pre + hlen, name, err, nerr};
  if (parse_dict(&l, h)) return -1;
  uint64_t n = gr_dtype_size(h->dtype);
  for (int i = 0; i < h->rank; i++) {
    if (h->dims[i] != 0 && n > (uint64_t)INT64_MAX / (uint64_t)h->dims[i])
      return npy_err(err, nerr, name, "shape is too large (element count overflows)");
    n *= (uint64_t)h->dims[i];
  }
  h->data_off = pre + hlen;
  h->data_bytes = (size_t)n;
  size_t have = total - h->data_off;
  if (n > have)
    return npy_err(err, nerr, name, "data is shorter than the shape says (%zu bytes, need %llu)", have,
                   (unsigned long long)n);
  if (n < have)
    return npy_err(err, nerr, name, "%zu unexpected bytes after the data", have - (size_t)n);
  return 0;
}

static int fill_tensor(const NpyHeader *h, GrTensor *out, const char *name, char *err, size_t nerr) {
  memset(out, 0, sizeof *out);
  out->dtype = h->dtype;
  out->rank = h->rank;
  memcpy(out->dims, h->dims, sizeof h->dims);
  out->data = gr_alloc(h->data_bytes);
  if (!out->data) return npy_err(err, nerr, name, "out of memory (%zu bytes)", h->data_bytes);
  return 0;
}

int gr_npy_read_mem(const void *buf, size_t len, const char *name, GrTensor *out, char *err, size_t nerr) {
  NpyHeader h;
  memset(out, 0, sizeof *out);
  if (parse_header(buf, len, len, name, &h, err, nerr)) return -1;
  if (fill_tensor(&h, out, name, err, nerr)) return -1;
  memcpy(out->data, (const unsigned char *)buf + h.data_off, h.data_bytes);
  return 0;
}

int gr_npy_read(const char *path, GrTensor *out, char *err, size_t nerr) {
  memset(out, 0, sizeof *out);
  /* O_NONBLOCK: opening a FIFO must not hang; regular files ignore the flag. */
  int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) return npy_err(err, nerr, path, "cannot open: %s", strerror(errno));
  FILE *f = fdopen(fd, "rb");
  if (!f) {
    close(fd);
    return npy_err(err, nerr, path, "cannot open: %s", strerror(errno));
  }
  struct stat st;
  unsigned char pre[12] = {0};
  unsigned char *hdr = NULL;
  int rc = -1;
  NpyHeader h;
  if (fstat(fileno(f), &st) || !S_ISREG(st.st_mode)) {
    npy_err(err, nerr, path, "not a regular file");
    goto done;
  }
  size_t total = (size_t)st.st_size, got = fread(pre, 1, sizeof pre, f);
  /* First pass over the preamble only, to learn the header length. */
  if (got < 6 || memcmp(pre, "\x93NUMPY", 6)) {
    npy_err(err, nerr, path, "not a .npy file (bad magic)");
    goto done;
  }
  size_t plen = pre[6] == 1 ? 10 : 12;
  size_t hlen = pre[6] == 1 ? (size_t)pre[8] | (size_t)pre[9] << 8
                            : got < 12 ? 0 : (size_t)pre[8] | (size_t)pre[9] << 8 | (size_t)pre[10] << 16 | (size_t)pre[11] << 24;
  size_t avail = plen + (hlen <= NPY_MAX_HEADER && plen + hlen <= total ? hlen : 0);
  if (avail > total) avail = total; /* parse_header reports the truncation */
  if (!(hdr = malloc(avail))) {
    npy_err(err, nerr, path, "out of memory");
    goto done;
  }
  if (fseek(f, 0, SEEK_SET) || fread(hdr, 1, avail, f) != avail) {
    npy_err(err, nerr, path, "read error");
    goto done;
  }
  if (parse_header(hdr, avail, total, path, &h, err, nerr) || fill_tensor(&h, out, path, err, nerr)) goto done;
  if (fread(out->data, 1, h.data_bytes, f) != h.data_bytes) {
    npy_err(err, nerr, path, "read error in the data");
    gr_tensor_free(out);
    goto done;
  }
  rc = 0;
done:
  free(hdr);
  fclose(f);
  return rc;
}

/* ---- writing ------------------------------------------------------------------------------ */
static const char *descr_of(int32_t dtype) {
  switch (dtype) {
  case GR_F32: return "<f4";
  case GR_F64: return "<f8";
  case GR_I32: return "<i4";
  case GR_I64: return "<i8";
  default: return NULL;
  }
}

/* Builds preamble + padded header into buf (at least 256 bytes); returns its length. */
static size_t build_header(const GrTensor *t, unsigned char *buf, size_t cap) {
  char dict[256];
  int k = snprintf(dict, sizeof dict, "{'descr': '%s', 'fortran_order': False, 'shape': (", descr_of(t->dtype));
  for (int i = 0; i < t->rank; i++)
    k += snprintf(dict + k, sizeof dict - (size_t)k, "%lld,%s", (long long)t->dims[i],
                  t->rank == 1 ? "" : i + 1 < t->rank ? " " : "");
  if (t->rank > 1) k--; /* "(3, 4,)" -> "(3, 4)" */
  k += snprintf(dict + k, sizeof dict - (size_t)k, "), }");
  int v2 = (size_t)k + 1 + 10 > 65535;
  size_t pre = v2 ? 12 : 10;
  size_t total = (pre + (size_t)k + 1 + 63) / 64 * 64; /* data 64-byte aligned */
  size_t hlen = total - pre;
  if (total > cap) return 0;
  memcpy(buf, "\x93NUMPY", 6);
  buf[6] = v2 ? 2 : 1;
  buf[7] = 0;
  for (size_t i = 0; i < (v2 ? 4u : 2u); i++) buf[8 + i] = (unsigned char)(hlen >> (8 * i));
  memcpy(buf + pre, dict, (size_t)k);
  memset(buf + pre + k, ' ', hlen - (size_t)k - 1);
  buf[total - 1] = '\n';
  return total;
}

static int check_writable(const GrTensor *t, const char *path, size_t *bytes, char *err, size_t nerr) {
  if (!descr_of(t->dtype)) return npy_err(err, nerr, path, "cannot write dtype %d", t->dtype);
  if (t->rank < 0 || t->rank > GR_MAXRANK) return npy_err(err, nerr, path, "cannot write rank %d", t->rank);
  uint64_t n = gr_dtype_size(t->dtype);
  for (int i = 0; i < t->rank; i++) {
    if (t->dims[i] < 0) return npy_err(err, nerr, path, "negative dimension %lld", (long long)t->dims[i]);
    if (t->dims[i] && n > (uint64_t)INT64_MAX / (uint64_t)t->dims[i])
      return npy_err(err, nerr, path, "tensor too large");
    n *= (uint64_t)t->dims[i];
  }
  if (n && !t->data) return npy_err(err, nerr, path, "tensor has no data");
  *bytes = (size_t)n;
  return 0;
}

int gr_npy_write(const char *path, const GrTensor *t, char *err, size_t nerr) {
  size_t bytes = 0, hlen;
  unsigned char hdr[512];
  if (check_writable(t, path, &bytes, err, nerr)) return -1;
  if (!(hlen = build_header(t, hdr, sizeof hdr))) return npy_err(err, nerr, path, "header too long");
  size_t plen = strlen(path);
  char *tmp = malloc(plen + 16);
  if (!tmp) return npy_err(err, nerr, path, "out of memory");
  snprintf(tmp, plen + 16, "%s.tmp.XXXXXX", path); /* same folder: rename stays atomic */
  int fd = mkstemp(tmp);
  if (fd < 0) {
    npy_err(err, nerr, path, "cannot create a temporary file next to it: %s", strerror(errno));
    free(tmp);
    return -1;
  }
  if (fchmod(fd, 0644) != 0) { /* mkstemp creates 0600; data files are shared */
    npy_err(err, nerr, path, "cannot set permissions: %s", strerror(errno));
    close(fd);
    unlink(tmp);
    free(tmp);
    return -1;
  }
  FILE *f = fdopen(fd, "wb");
  int ok = f && fwrite(hdr, 1, hlen, f) == hlen && (bytes == 0 || fwrite(t->data, 1, bytes, f) == bytes) &&
           fflush(f) == 0 && fsync(fd) == 0;
  int saved = errno;
  if (f ? fclose(f) != 0 : close(fd) != 0) ok = 0;
  if (ok && rename(tmp, path) != 0) {
    saved = errno;
    ok = 0;
  }
  if (!ok) {
    unlink(tmp);
    npy_err(err, nerr, path, "write failed: %s", strerror(saved));
  }
  free(tmp);
  return ok ? 0 : -1;
}
