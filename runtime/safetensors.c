/* safetensors.c: reading and writing safetensors files (the checkpoint format).
 *
 * Why safetensors: Python's `safetensors` and a 10-line NumPy reader load it, so a user
 * can inspect or plot weights without gradc; the format is a JSON header plus raw bytes,
 * small enough to parse by hand here with no dependency.
 *
 * The reader distrusts everything: the header length must fit the file, the JSON must be
 * well formed (a small recursive-descent parser for the subset safetensors uses: objects,
 * arrays, strings, non-negative integers), every tensor needs a known dtype, a shape whose
 * element count times the dtype size equals end - begin (all checked for overflow), and
 * offsets inside the data section. Any violation is an error naming the file and the
 * tensor. The writer is atomic (temp file in the same folder, fflush, fsync, rename,
 * fsync of the folder), so a crash leaves either the old or the new file.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <dirent.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ckpt.h"

#define ST_MAX_HEADER (100u << 20)

static const char *const st_dtypes[] = {"F32", "F64", "I32", "I64"};

static int st_fail(char *err, size_t nerr, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int st_fail(char *err, size_t nerr, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  if (err && nerr) vsnprintf(err, nerr, fmt, ap);
  va_end(ap);
  return -1;
}

/* ---- writer --------------------------------------------------------------------------- */
typedef struct {
  char *s;
  size_t n, cap;
  int oom;
} Buf;

static void buf_put(Buf *b, const char *s, size_t n) {
  if (b->oom) return;
  if (b->n + n + 1 > b->cap) {
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->n + n + 1) cap *= 2;
    char *p = realloc(b->s, cap);
    if (!p) {
      b->oom = 1;
      return;
    }
    b->s = p;
    b->cap = cap;
  }
  memcpy(b->s + b->n, s, n);
  b->n += n;
  b->s[b->n] = 0;
}

static void buf_printf(Buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void buf_printf(Buf *b, const char *fmt, ...) {
  char tmp[128];
  va_list ap;
  va_start(ap, fmt);
  int k = vsnprintf(tmp, sizeof tmp, fmt, ap);
  va_end(ap);
  if (k > 0) buf_put(b, tmp, (size_t)k < sizeof tmp ? (size_t)k : sizeof tmp - 1);
}

static void buf_json_str(Buf *b, const char *s) {
  buf_put(b, "\"", 1);
  for (; *s; s++) {
    unsigned char c = (unsigned char)*s;
    if (c == '"' || c == '\\') {
      char e[2] = {'\\', (char)c};
      buf_put(b, e, 2);
    } else if (c < 0x20) buf_printf(b, "\\u%04x", c);
    else buf_put(b, (const char *)&c, 1);
  }
  buf_put(b, "\"", 1);
}

static size_t st_nbytes(const GrStTensor *t) {
  size_t n = gr_dtype_size(t->dtype);
  for (int d = 0; d < t->rank; d++) n *= (size_t)t->dims[d];
  return n;
}

static void st_header(Buf *b, const GrStTensor *t, int nt, const GrStMeta *meta, int nmeta) {
  buf_put(b, "{", 1);
  if (nmeta > 0) {
    buf_put(b, "\"__metadata__\":{", 16);
    for (int i = 0; i < nmeta; i++) {
      if (i) buf_put(b, ",", 1);
      buf_json_str(b, meta[i].key);
      buf_put(b, ":", 1);
      buf_json_str(b, meta[i].val);
    }
    buf_put(b, "}", 1);
  }
  size_t off = 0;
  for (int i = 0; i < nt; i++) {
    if (i || nmeta > 0) buf_put(b, ",", 1);
    buf_json_str(b, t[i].name);
    buf_printf(b, ":{\"dtype\":\"%s\",\"shape\":[", st_dtypes[t[i].dtype]);
    for (int d = 0; d < t[i].rank; d++) buf_printf(b, "%s%lld", d ? "," : "", (long long)t[i].dims[d]);
    size_t nb = st_nbytes(&t[i]);
    buf_printf(b, "],\"data_offsets\":[%zu,%zu]}", off, off + nb);
    off += nb;
  }
  buf_put(b, "}", 1);
  while (b->n % 8) buf_put(b, " ", 1);
}

static void dir_of(const char *path, char *dir, size_t n) {
  const char *slash = strrchr(path, '/');
  if (!slash) snprintf(dir, n, ".");
  else if (slash == path) snprintf(dir, n, "/");
  else snprintf(dir, n, "%.*s", (int)(slash - path), path);
}

static int write_all(FILE *f, const void *p, size_t n) { return n == 0 || fwrite(p, 1, n, f) == n; }

int gr_st_write(const char *path, const GrStTensor *t, int nt, const GrStMeta *meta,
                int nmeta, char *err, size_t nerr) {
  Buf h = {0};
  st_header(&h, t, nt, meta, nmeta);
  if (h.oom) {
    free(h.s);
    return st_fail(err, nerr, "%s: out of memory writing the header", path);
  }
  char tmp[4096];
  if (snprintf(tmp, sizeof tmp, "%s.tmp.XXXXXX", path) >= (int)sizeof tmp) {
    free(h.s);
    return st_fail(err, nerr, "%s: path too long", path);
  }
  int fd = mkstemp(tmp);
  if (fd < 0) {
    free(h.s);
    return st_fail(err, nerr, "cannot write checkpoint %s: %s", path, strerror(errno));
  }
  fchmod(fd, 0644);
  FILE *f = fdopen(fd, "wb");
  uint64_t hl = h.n;
  unsigned char le[8];
  for (int i = 0; i < 8; i++) le[i] = (unsigned char)(hl >> (8 * i));
  int ok = f && write_all(f, le, 8) && write_all(f, h.s, h.n);
  for (int i = 0; ok && i < nt; i++) ok = write_all(f, t[i].data, st_nbytes(&t[i]));
  ok = ok && fflush(f) == 0 && fsync(fd) == 0;
  int saved = errno;
  if (f) fclose(f);
  else close(fd);
  free(h.s);
  if (!ok || rename(tmp, path) != 0) {
    if (ok) saved = errno;
    unlink(tmp);
    return st_fail(err, nerr, "cannot write checkpoint %s: %s", path, strerror(saved));
  }
  char dir[4096];
  dir_of(path, dir, sizeof dir);
  int dfd = open(dir, O_RDONLY | O_DIRECTORY);
  if (dfd >= 0) {
    fsync(dfd);
    close(dfd);
  }
  return 0;
}

/* A write killed by SIGKILL (or a power cut) leaves PATH.tmp.XXXXXX behind: complete or
 * not, it was never renamed, so nothing reads it. Training removes such leftovers of its
 * own checkpoint before it starts (names exactly PATH.tmp. + 6 mkstemp characters, regular
 * files only). Returns how many were removed. */
int gr_st_remove_stale(const char *path) {
  char dir[4096];
  dir_of(path, dir, sizeof dir);
  const char *slash = strrchr(path, '/');
  const char *base = slash ? slash + 1 : path;
  size_t bl = strlen(base);
  DIR *d = opendir(dir);
  if (!d) return 0;
  int n = 0;
  struct dirent *e;
  while ((e = readdir(d)) != NULL) {
    const char *nm = e->d_name;
    if (strlen(nm) != bl + 11 || strncmp(nm, base, bl) != 0 || strncmp(nm + bl, ".tmp.", 5) != 0)
      continue;
    char full[8300];
    snprintf(full, sizeof full, "%s/%s", dir, nm);
    struct stat st;
    if (lstat(full, &st) == 0 && S_ISREG(st.st_mode) && unlink(full) == 0) n++;
  }
  closedir(d);
  return n;
}

/* ---- reader: a JSON subset parser ----------------------------------------------------- */
typedef struct {
  const char *p, *end;
  const char *file;
  char *err;
  size_t nerr;
  int failed;
} Js;

static int js_fail(Js *j, const char *what) {
  if (!j->failed) st_fail(j->err, j->nerr, "%s: bad safetensors header: %s", j->file, what);
  j->failed = 1;
  return -1;
}

static void js_ws(Js *j) {
  while (j->p < j->end && (*j->p == ' ' || *j->p == '\n' || *j->p == '\t' || *j->p == '\r')) j->p++;
}

static int js_eat(Js *j, char c) {
  js_ws(j);
  if (j->p < j->end && *j->p == c) {
    j->p++;
    return 1;
  }
  return 0;
}

/* A string into out (malloc'ed). Escapes: \" \\ \/ \b \f \n \r \t \uXXXX (ASCII only). */
static int js_string(Js *j, char **out) {
  js_ws(j);
  if (j->p >= j->end || *j->p != '"') return js_fail(j, "expected a string");
  j->p++;
  size_t cap = 16, n = 0;
  char *s = malloc(cap);
  if (!s) return js_fail(j, "out of memory");
  while (j->p < j->end && *j->p != '"') {
    char c = *j->p++;
    if (c == '\\') {
      if (j->p >= j->end) break;
      char e = *j->p++;
      switch (e) {
      case 'n': c = '\n'; break;
      case 't': c = '\t'; break;
      case 'r': c = '\r'; break;
      case 'b': c = '\b'; break;
      case 'f': c = '\f'; break;
      case 'u': {
        if (j->end - j->p < 4) break;
        unsigned v = 0;
        for (int i = 0; i < 4; i++) {
          char h = *j->p++;
          v = v * 16 + (unsigned)(h >= '0' && h <= '9' ? h - '0' : h >= 'a' && h <= 'f' ? h - 'a' + 10 : h >= 'A' && h <= 'F' ? h - 'A' + 10 : 0);
        }
        c = (char)(v < 0x80 ? v : '?');
        break;
      }
      default: c = e;
      }
    }
    if (n + 2 > cap) {
      char *q = realloc(s, cap *= 2);
      if (!q) {
        free(s);
        return js_fail(j, "out of memory");
      }
      s = q;
    }
    s[n++] = c;
  }
  if (j->p >= j->end) {
    free(s);
    return js_fail(j, "unterminated string");
  }
  j->p++;
  s[n] = 0;
  *out = s;
  return 0;
}

static int js_uint(Js *j, uint64_t *out) {
  js_ws(j);
  if (j->p >= j->end || *j->p < '0' || *j->p > '9') return js_fail(j, "expected a non-negative integer");
  uint64_t v = 0;
  while (j->p < j->end && *j->p >= '0' && *j->p <= '9') {
    uint64_t d = (uint64_t)(*j->p++ - '0');
    if (v > (UINT64_MAX - d) / 10) return js_fail(j, "integer overflow");
    v = v * 10 + d;
  }
  *out = v;
  return 0;
}

/* [u, u, ...] with at most `max` entries */
static int js_uint_array(Js *j, uint64_t *v, int max, int *n) {
  if (!js_eat(j, '[')) return js_fail(j, "expected '['");
  *n = 0;
  if (js_eat(j, ']')) return 0;
  do {
    if (*n >= max) return js_fail(j, "too many entries in an array (shape rank > 6?)");
    if (js_uint(j, &v[(*n)++])) return -1;
  } while (js_eat(j, ','));
  if (!js_eat(j, ']')) return js_fail(j, "expected ']'");
  return 0;
}

typedef struct {
  char *name;
  int dtype;
  int rank;
  uint64_t dims[GR_MAXRANK];
  uint64_t off[2];
  int have_dtype, have_shape, have_off;
} StEntry;

static int st_entry_body(Js *j, StEntry *e) {
  if (!js_eat(j, '{')) return js_fail(j, "expected '{' for a tensor");
  if (js_eat(j, '}')) return 0;
  do {
    char *key;
    if (js_string(j, &key)) return -1;
    if (!js_eat(j, ':')) {
      free(key);
      return js_fail(j, "expected ':'");
    }
    int r = 0;
    if (strcmp(key, "dtype") == 0) {
      char *dt;
      r = js_string(j, &dt);
      if (!r) {
        e->dtype = -1;
        for (int i = 0; i < 4; i++)
          if (strcmp(dt, st_dtypes[i]) == 0) e->dtype = i;
        free(dt);
        e->have_dtype = 1;
      }
    } else if (strcmp(key, "shape") == 0) {
      r = js_uint_array(j, e->dims, GR_MAXRANK, &e->rank);
      e->have_shape = 1;
    } else if (strcmp(key, "data_offsets") == 0) {
      int n = 0;
      r = js_uint_array(j, e->off, 2, &n);
      if (!r && n != 2) r = js_fail(j, "data_offsets needs two numbers");
      e->have_off = 1;
    } else r = js_fail(j, "unknown key in a tensor entry");
    free(key);
    if (r) return -1;
  } while (js_eat(j, ','));
  if (!js_eat(j, '}')) return js_fail(j, "expected '}'");
  return 0;
}

static int st_metadata(Js *j, GrStFile *f, char ***strs, int *nstr) {
  if (!js_eat(j, '{')) return js_fail(j, "__metadata__ must be an object");
  if (js_eat(j, '}')) return 0;
  do {
    char *k, *v;
    if (js_string(j, &k)) return -1;
    if (!js_eat(j, ':')) {
      free(k);
      return js_fail(j, "expected ':' in __metadata__");
    }
    js_ws(j);
    if (j->p >= j->end || *j->p != '"' || js_string(j, &v)) {
      free(k);
      return js_fail(j, "__metadata__ values must be strings");
    }
    GrStMeta *m = realloc(f->meta, (size_t)(f->nmeta + 1) * sizeof *m);
    char **s = realloc(*strs, (size_t)(*nstr + 2) * sizeof *s);
    if (!m || !s) {
      free(k);
      free(v);
      if (m) f->meta = m;
      if (s) *strs = s;
      return js_fail(j, "out of memory");
    }
    f->meta = m;
    *strs = s;
    s[(*nstr)++] = k;
    s[(*nstr)++] = v;
    m[f->nmeta].key = k;
    m[f->nmeta].val = v;
    f->nmeta++;
  } while (js_eat(j, ','));
  if (!js_eat(j, '}')) return js_fail(j, "expected '}' after __metadata__");
  return 0;
}

/* Validates one entry against the data section of `dlen` bytes. */
static int st_check_entry(Js *j, const StEntry *e, uint64_t dlen) {
  char msg[600];
  const char *why = NULL;
  uint64_t bytes = (uint64_t)(e->dtype >= 0 ? gr_dtype_size(e->dtype) : 0);
  if (!e->have_dtype || !e->have_shape || !e->have_off) why = "missing dtype, shape or data_offsets";
  else if (e->dtype < 0) why = "unsupported dtype (F32, F64, I32, I64 only)";
  else {
    for (int d = 0; d < e->rank && !why; d++) {
      if (e->dims[d] != 0 && bytes > UINT64_MAX / e->dims[d]) why = "shape overflows";
      else bytes *= e->dims[d];
    }
    if (!why && e->off[0] > e->off[1]) why = "data_offsets begin > end";
    else if (!why && e->off[1] > dlen) why = "data_offsets beyond the end of the file (truncated?)";
    else if (!why && e->off[1] - e->off[0] != bytes) why = "byte count does not match dtype and shape";
    for (int d = 0; d < e->rank && !why; d++)
      if (e->dims[d] > (uint64_t)INT64_MAX) why = "dimension too large";
  }
  if (!why) return 0;
  snprintf(msg, sizeof msg, "tensor '%.200s': %s", e->name ? e->name : "?", why);
  return js_fail(j, msg);
}

static int st_add(GrStFile *f, const StEntry *e, const unsigned char *data) {
  GrStTensor *t = realloc(f->t, (size_t)(f->nt + 1) * sizeof *t);
  if (!t) return -1;
  f->t = t;
  GrStTensor *x = &t[f->nt++];
  memset(x, 0, sizeof *x);
  x->name = e->name;
  x->dtype = e->dtype;
  x->rank = e->rank;
  for (int d = 0; d < e->rank; d++) x->dims[d] = (int64_t)e->dims[d];
  x->data = data + e->off[0];
  return 0;
}

static int st_parse_header(Js *j, GrStFile *f, const unsigned char *data, uint64_t dlen,
                           char ***strs, int *nstr) {
  if (!js_eat(j, '{')) return js_fail(j, "the header is not a JSON object");
  if (js_eat(j, '}')) return 0;
  do {
    char *key;
    if (js_string(j, &key)) return -1;
    char **s = realloc(*strs, (size_t)(*nstr + 1) * sizeof *s);
    if (!s) {
      free(key);
      return js_fail(j, "out of memory");
    }
    *strs = s;
    s[(*nstr)++] = key;
    if (!js_eat(j, ':')) return js_fail(j, "expected ':'");
    if (strcmp(key, "__metadata__") == 0) {
      if (st_metadata(j, f, strs, nstr)) return -1;
      continue;
    }
    if (gr_st_find(f, key)) return js_fail(j, "duplicate tensor name");
    StEntry e = {.name = key};
    if (st_entry_body(j, &e) || st_check_entry(j, &e, dlen)) return -1;
    if (st_add(f, &e, data)) return js_fail(j, "out of memory");
  } while (js_eat(j, ','));
  if (!js_eat(j, '}')) return js_fail(j, "expected '}' or ','");
  js_ws(j);
  if (j->p != j->end) return js_fail(j, "trailing bytes after the JSON object");
  return 0;
}

/* The owned strings are kept as one array of pointers in f->strings. */
static void st_strings_free(char **s, int n) {
  for (int i = 0; i < n; i++) free(s[i]);
  free(s);
}

typedef struct {
  char **s;
  int n;
} StStrings;

static int st_parse_owned(unsigned char *buf, size_t len, const char *name, GrStFile *f,
                          char *err, size_t nerr) {
  memset(f, 0, sizeof *f);
  f->buf = buf;
  f->len = len;
  if (len < 8) return st_fail(err, nerr, "%s: not a safetensors file (%zu bytes, truncated?)", name, len);
  uint64_t hl = 0;
  for (int i = 0; i < 8; i++) hl |= (uint64_t)buf[i] << (8 * i);
  if (hl > ST_MAX_HEADER) return st_fail(err, nerr, "%s: header length %llu is implausible (not a safetensors file?)", name, (unsigned long long)hl);
  if (hl > len - 8) return st_fail(err, nerr, "%s: header length %llu exceeds the file size %zu (truncated?)", name, (unsigned long long)hl, len);
  if (hl < 2) return st_fail(err, nerr, "%s: empty safetensors header", name);
  Js j = {(const char *)buf + 8, (const char *)buf + 8 + hl, name, err, nerr, 0};
  StStrings ss = {0};
  int r = st_parse_header(&j, f, buf + 8 + hl, len - 8 - hl, &ss.s, &ss.n);
  StStrings *keep = malloc(sizeof *keep);
  if (!keep) {
    st_strings_free(ss.s, ss.n);
    return st_fail(err, nerr, "%s: out of memory", name);
  }
  *keep = ss;
  f->strings = keep;
  return r;
}

int gr_st_parse(const void *buf, size_t len, const char *name, GrStFile *f, char *err,
                size_t nerr) {
  unsigned char *copy = malloc(len ? len : 1);
  if (!copy) {
    memset(f, 0, sizeof *f);
    return st_fail(err, nerr, "%s: out of memory", name);
  }
  memcpy(copy, buf, len);
  int r = st_parse_owned(copy, len, name, f, err, nerr);
  if (r) gr_st_free(f);
  return r;
}

int gr_st_read(const char *path, GrStFile *f, char *err, size_t nerr) {
  memset(f, 0, sizeof *f);
  FILE *fp = fopen(path, "rb");
  if (!fp) return st_fail(err, nerr, "cannot open checkpoint %s: %s", path, strerror(errno));
  struct stat st;
  if (fstat(fileno(fp), &st) != 0 || !S_ISREG(st.st_mode)) {
    fclose(fp);
    return st_fail(err, nerr, "%s: not a regular file", path);
  }
  size_t len = (size_t)st.st_size;
  unsigned char *buf = malloc(len ? len : 1);
  if (!buf) {
    fclose(fp);
    return st_fail(err, nerr, "%s: out of memory (%zu bytes)", path, len);
  }
  size_t got = fread(buf, 1, len, fp);
  fclose(fp);
  if (got != len) {
    free(buf);
    return st_fail(err, nerr, "%s: read error", path);
  }
  int r = st_parse_owned(buf, len, path, f, err, nerr);
  if (r) gr_st_free(f);
  return r;
}

const GrStTensor *gr_st_find(const GrStFile *f, const char *name) {
  for (int i = 0; i < f->nt; i++)
    if (strcmp(f->t[i].name, name) == 0) return &f->t[i];
  return NULL;
}

const char *gr_st_meta(const GrStFile *f, const char *key) {
  for (int i = 0; i < f->nmeta; i++)
    if (strcmp(f->meta[i].key, key) == 0) return f->meta[i].val;
  return NULL;
}

void gr_st_free(GrStFile *f) {
  if (f->strings) {
    StStrings *ss = f->strings;
    st_strings_free(ss->s, ss->n);
    free(ss);
  }
  free(f->buf);
  free(f->t);
  free(f->meta);
  memset(f, 0, sizeof *f);
}
