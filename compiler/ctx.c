/* ctx.c: the compile context, the arena, source files and diagnostics.
 *
 * Diagnostics are collected, never printed or exit()ed where they arise (design rule 5):
 * the CLI prints them all at the end, tests compare them with golden files. The caret
 * line reproduces tabs of the source line so the caret lands under the culprit.
 */
#include "ir.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

struct ArenaBlock {
  ArenaBlock *next;
  size_t used, cap;
  _Alignas(16) unsigned char data[];
};

void *xrealloc(void *p, size_t n) {
  void *q = realloc(p, n ? n : 1);
  if (!q) {
    fprintf(stderr, "gradc: out of memory (%zu bytes)\n", n);
    abort();
  }
  return q;
}

void *arena_alloc(Arena *a, size_t n) {
  n = (n + 15) & ~(size_t)15;
  ArenaBlock *b = a->head;
  if (!b || b->used + n > b->cap) {
    size_t cap = n > 65536 ? n : 65536;
    b = calloc(1, sizeof *b + cap);
    if (!b) {
      fprintf(stderr, "gradc: out of memory (%zu bytes)\n", cap);
      abort();
    }
    b->cap = cap;
    b->next = a->head;
    a->head = b;
  }
  void *p = b->data + b->used;
  b->used += n;
  return p;
}

char *arena_strdup(Arena *a, const char *s) {
  size_t n = strlen(s) + 1;
  char *d = arena_alloc(a, n);
  memcpy(d, s, n);
  return d;
}

char *arena_printf(Arena *a, const char *fmt, ...) {
  va_list ap, ap2;
  va_start(ap, fmt);
  va_copy(ap2, ap);
  int n = vsnprintf(NULL, 0, fmt, ap);
  va_end(ap);
  char *d = arena_alloc(a, (size_t)n + 1);
  vsnprintf(d, (size_t)n + 1, fmt, ap2);
  va_end(ap2);
  return d;
}

void arena_free(Arena *a) {
  for (ArenaBlock *b = a->head, *next; b; b = next) {
    next = b->next;
    free(b);
  }
  a->head = NULL;
}

_Noreturn void ir_panic(const char *file, int line, const char *what) {
  fprintf(stderr, "gradc: internal error at %s:%d: %s\n", file, line, what);
  abort();
}

void ctx_init(Ctx *c) {
  memset(c, 0, sizeof *c);
  c->max_errors = 20;
}

void ctx_free(Ctx *c) {
  free(c->files);
  free(c->diags);
  free(c->incdirs);
  free(c->defines);
  arena_free(&c->arena);
  memset(c, 0, sizeof *c);
}

int ctx_add_file(Ctx *c, const char *path, const char *text, size_t len) {
  if (c->nfiles == c->capfiles) {
    c->capfiles = c->capfiles ? 2 * c->capfiles : 8;
    c->files = xrealloc(c->files, (size_t)c->capfiles * sizeof *c->files);
  }
  char *t = arena_alloc(&c->arena, len + 1);
  memcpy(t, text, len);
  t[len] = 0;
  c->files[c->nfiles] = (SrcFile){arena_strdup(&c->arena, path), t, len};
  return c->nfiles++;
}

int ctx_load_file(Ctx *c, const char *path, SrcLoc from) {
  FILE *f = fopen(path, "rb");
  if (!f) {
    diag_error(c, from, NULL, "cannot open '%s': %s", path, strerror(errno));
    return -1;
  }
  size_t cap = 4096, len = 0;
  char *buf = xrealloc(NULL, cap);
  size_t got;
  while ((got = fread(buf + len, 1, cap - len, f)) > 0) {
    len += got;
    if (len == cap) buf = xrealloc(buf, cap *= 2);
  }
  int bad = ferror(f);
  fclose(f);
  if (bad) {
    free(buf);
    diag_error(c, from, NULL, "cannot read '%s'", path);
    return -1;
  }
  int id = ctx_add_file(c, path, buf, len);
  free(buf);
  return id;
}

void diag_verror(Ctx *c, SrcLoc loc, const char *hint, const char *fmt, va_list ap) {
  if (c->ndiags >= c->max_errors) return;
  if (c->ndiags == c->capdiags) {
    c->capdiags = c->capdiags ? 2 * c->capdiags : 8;
    c->diags = xrealloc(c->diags, (size_t)c->capdiags * sizeof *c->diags);
  }
  char msg[1024];
  vsnprintf(msg, sizeof msg, fmt, ap);
  c->diags[c->ndiags++] =
      (Diag){loc, arena_strdup(&c->arena, msg), hint ? arena_strdup(&c->arena, hint) : NULL};
}

void diag_error(Ctx *c, SrcLoc loc, const char *hint, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  diag_verror(c, loc, hint, fmt, ap);
  va_end(ap);
}

/* Prints source line `line` of file f and a caret under column col. Bytes that are not
 * printable ASCII (binary junk, non-UTF-8) are shown as '?' so the terminal stays sane;
 * valid UTF-8 multi-byte sequences pass through. */
static void print_line(const SrcFile *f, int line, int col, FILE *out) {
  const char *p = f->text, *end = f->text + f->len;
  for (int l = 1; l < line && p < end; p++)
    if (*p == '\n') l++;
  const char *e = p;
  while (e < end && *e != '\n' && e - p < 200) e++;
  fputs("  ", out);
  for (const char *q = p; q < e; q++) {
    unsigned char ch = (unsigned char)*q;
    fputc((ch == '\t' || (ch >= 32 && ch < 127) || ch >= 0x80) && ch != 0 ? ch : '?', out);
  }
  fputs("\n  ", out);
  for (int i = 1; i < col && p + i - 1 < e; i++) fputc(p[i - 1] == '\t' ? '\t' : ' ', out);
  fputs("^\n", out);
}

void diag_print_all(const Ctx *c, FILE *out) {
  for (int i = 0; i < c->ndiags; i++) {
    const Diag *d = &c->diags[i];
    if (d->loc.file >= 0 && d->loc.file < c->nfiles) {
      const SrcFile *f = &c->files[d->loc.file];
      fprintf(out, "%s:%d:%d: error: %s\n", f->path, d->loc.line, d->loc.col, d->msg);
      if (d->loc.line > 0) print_line(f, d->loc.line, d->loc.col, out);
    } else {
      fprintf(out, "gradc: error: %s\n", d->msg);
    }
    if (d->hint) fprintf(out, "  hint: %s\n", d->hint);
  }
  if (c->ndiags >= c->max_errors)
    fprintf(out, "gradc: too many errors; stopped after %d\n", c->max_errors);
}

static int edit_distance(const char *a, const char *b) {
  int la = (int)strlen(a), lb = (int)strlen(b);
  if (la > 64 || lb > 64) return 1 << 20;
  int row[65];
  for (int j = 0; j <= lb; j++) row[j] = j;
  for (int i = 1; i <= la; i++) {
    int prev = row[0];
    row[0] = i;
    for (int j = 1; j <= lb; j++) {
      int cur = row[j];
      int sub = prev + (a[i - 1] != b[j - 1]);
      int del = row[j] + 1, ins = row[j - 1] + 1;
      row[j] = sub < del ? (sub < ins ? sub : ins) : (del < ins ? del : ins);
      prev = cur;
    }
  }
  return row[lb];
}

const char *diag_closest(const char *name, const char *const *cands, int n) {
  const char *best = NULL;
  int bestd = 1 << 20;
  int limit = (int)strlen(name) / 3 + 1; /* "silu" vs "sulu": 1 edit; avoid wild guesses */
  for (int i = 0; i < n; i++) {
    int d = edit_distance(name, cands[i]);
    if (d < bestd) bestd = d, best = cands[i];
  }
  return bestd <= limit ? best : NULL;
}
