/* frontend.c: the front end's driver: files, imports, constants, entries.
 *
 * fe_compile loads the main file, then its imports depth first (each file parsed once,
 * looked up by real path; a module still being loaded when it is imported again is a
 * cycle), evaluates every module's top-level constants in order (the main file's with -D
 * overrides applied), and expands each entry of the main file into a Graph. The graphs
 * are checked with ir_verify: a failure there is a bug in gradc, reported as an internal
 * error rather than blamed on the user's program.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "elab.h"
#include "frontend.h"

void fe_elab_entry(Elab *E, Module *m, Decl *d);

typedef struct {
  Ctx *c;
  Module **mods; /* every module loaded, in completion order (imports first) */
  int nmods, capmods;
  Module **stack; /* modules being loaded, for cycle messages */
  int nstack, capstack;
} Loader;

static int file_exists(const char *path) {
  struct stat st;
  return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

static const char *dir_of(Ctx *c, const char *path) {
  const char *slash = strrchr(path, '/');
  if (!slash) return ".";
  if (slash == path) return "/";
  return arena_printf(&c->arena, "%.*s", (int)(slash - path), path);
}

static const char *base_name(Ctx *c, const char *path) {
  const char *slash = strrchr(path, '/');
  const char *b = slash ? slash + 1 : path;
  size_t n = strlen(b);
  if (n > 5 && !strcmp(b + n - 5, ".grad")) n -= 5;
  return arena_printf(&c->arena, "%.*s", (int)n, b);
}

static const char *join(Ctx *c, const char *dir, const char *name) {
  if (!strcmp(dir, ".")) return arena_printf(&c->arena, "%s.grad", name);
  return arena_printf(&c->arena, "%s/%s.grad", dir, name);
}

static void push_mod(Module ***arr, int *n, int *cap, Module *m) {
  if (*n == *cap) {
    *cap = *cap ? 2 * *cap : 8;
    *arr = xrealloc(*arr, (size_t)*cap * sizeof **arr);
  }
  (*arr)[(*n)++] = m;
}

static Module *load(Loader *L, const char *path, SrcLoc from);

static int load_imports(Loader *L, Module *m) {
  int rc = 0;
  for (int i = 0; i < m->ndecls; i++) {
    Decl *d = m->decls[i];
    if (d->kind != D_IMPORT) continue;
    int n = 0, cap = L->c->nincdirs + 1;
    const char **cands = arena_alloc(&L->c->arena, (size_t)cap * sizeof *cands);
    cands[n++] = join(L->c, dir_of(L->c, m->path), d->name);
    for (int k = 0; k < L->c->nincdirs; k++) cands[n++] = join(L->c, L->c->incdirs[k], d->name);
    const char *found = NULL;
    for (int k = 0; k < n && !found; k++)
      if (file_exists(cands[k])) found = cands[k];
    if (!found) {
      const char *hint = "searched:";
      for (int k = 0; k < n; k++) hint = arena_printf(&L->c->arena, "%s %s", hint, cands[k]);
      diag_error(L->c, d->loc, hint, "cannot find module '%s'", d->name);
      rc = -1;
      continue;
    }
    d->mod = load(L, found, d->loc);
    if (!d->mod) rc = -1;
  }
  return rc;
}

static Module *load(Loader *L, const char *path, SrcLoc from) {
  char *rp = realpath(path, NULL);
  const char *key = arena_strdup(&L->c->arena, rp ? rp : path);
  free(rp);
  for (int i = 0; i < L->nstack; i++)
    if (!strcmp(L->stack[i]->key, key)) {
      const char *cycle = L->stack[i]->name;
      for (int k = i + 1; k < L->nstack; k++)
        cycle = arena_printf(&L->c->arena, "%s -> %s", cycle, L->stack[k]->name);
      diag_error(L->c, from, "move what both modules need into a third module",
                 "cyclic import: %s -> %s", cycle, L->stack[i]->name);
      return NULL;
    }
  for (int i = 0; i < L->nmods; i++)
    if (!strcmp(L->mods[i]->key, key)) return L->mods[i];
  int file = ctx_load_file(L->c, path, from);
  if (file < 0) return NULL;
  Module *m = arena_alloc(&L->c->arena, sizeof *m);
  m->name = base_name(L->c, path);
  m->path = L->c->files[file].path;
  m->key = key;
  m->file = file;
  int ntok = 0;
  Token *toks = fe_lex(L->c, file, &ntok);
  int rc = toks ? fe_parse(L->c, toks, ntok, m) : -1;
  push_mod(&L->stack, &L->nstack, &L->capstack, m);
  if (load_imports(L, m)) rc = -1;
  L->nstack--;
  push_mod(&L->mods, &L->nmods, &L->capmods, m);
  m->state = rc ? -1 : 2;
  return m;
}

/* ---- constants ------------------------------------------------------------------------- */
static int parse_define(Elab *E, Decl *d, const char *text, Value cur, Value *out) {
  char *end = NULL;
  TypeKind k = d->ctype ? d->ctype->kind
               : cur.k == V_INT   ? TY_INT
               : cur.k == V_FLOAT ? TY_FLOAT
               : cur.k == V_BOOL  ? TY_BOOL
               : cur.k == V_STR   ? TY_STR
                                  : TY_TENSOR;
  errno = 0;
  switch (k) {
  case TY_INT: {
    long long v = strtoll(text, &end, 10);
    if (*text && !*end && !errno) return *out = v_int(v), 0;
    break;
  }
  case TY_FLOAT: {
    double v = strtod(text, &end);
    if (*text && !*end && !errno) return *out = v_float(v), 0;
    break;
  }
  case TY_BOOL:
    if (!strcmp(text, "true") || !strcmp(text, "false"))
      return *out = v_bool(!strcmp(text, "true")), 0;
    break;
  case TY_STR: return *out = (Value){.k = V_STR, .s = text, .t = IR_ERR}, 0;
  default:
    diag_error(E->c, d->loc, NULL, "constant '%s' holds a %s and cannot be set with -D", d->name,
               v_kind_name(&cur));
    return -1;
  }
  static const char *const kn[] = {"", "an int", "a float", "a bool (true or false)", ""};
  diag_error(E->c, d->loc, arena_printf(&E->c->arena, "-D %s=VALUE needs %s", d->name, kn[k]),
             "invalid value '%s' for constant '%s' in -D", text, d->name);
  return -1;
}

static void eval_consts(Elab *E, Module *m, int is_main) {
  Frame f = {0};
  f.mod = m;
  f.path = "";
  E->top = &f;
  E->g = NULL;
  Binding **tail = &m->consts;
  for (int i = 0; i < m->ndecls; i++) {
    Decl *d = m->decls[i];
    if (d->kind != D_CONST) continue;
    Value v = elab_expr(E, d->value);
    if (d->ctype && v.k != V_ERR) {
      if (d->ctype->kind == TY_TENSOR || d->ctype->kind == TY_FN || d->ctype->kind == TY_TUPLE ||
          d->ctype->kind == TY_LIST) {
        diag_error(E->c, d->ctype->loc, NULL, "a constant's declared type is int, float, bool or str");
        v = v_err();
      } else if (d->ctype->kind == TY_FLOAT && v.k == V_INT) {
        v = v_float((double)v.i);
      } else if ((d->ctype->kind == TY_INT && v.k != V_INT) ||
                 (d->ctype->kind == TY_FLOAT && v.k != V_FLOAT) ||
                 (d->ctype->kind == TY_BOOL && v.k != V_BOOL) ||
                 (d->ctype->kind == TY_STR && v.k != V_STR)) {
        diag_error(E->c, d->value->loc, NULL, "constant '%s' is declared %s but its value is %s",
                   d->name, fe_type_str(E->c, d->ctype), v_describe(E, &v));
        v = v_err();
      }
    }
    for (int k = 0; is_main && v.k != V_ERR && k < E->c->ndefines; k++)
      if (!strcmp(E->c->defines[k].name, d->name)) {
        Value nv;
        if (!parse_define(E, d, E->c->defines[k].value, v, &nv)) v = nv;
      }
    ModSym *sym = fe_module_sym(m, d->name);
    if (!sym || sym->decl != d) continue; /* a duplicate, reported by index_module */
    Binding *b = arena_alloc(&E->c->arena, sizeof *b);
    b->name = d->name;
    b->v = v;
    *tail = b; /* declaration order, for export */
    tail = &b->next;
    sym->val = b;
  }
  E->top = NULL;
}

static void check_defines(Elab *E, Module *m) {
  for (int k = 0; k < E->c->ndefines; k++) {
    const char *name = E->c->defines[k].name;
    int found = 0, n = 0;
    for (int i = 0; i < m->ndecls; i++)
      if (m->decls[i]->kind == D_CONST) found |= !strcmp(m->decls[i]->name, name), n++;
    if (found) continue;
    const char **names = arena_alloc(&E->c->arena, (size_t)(n ? n : 1) * sizeof *names);
    n = 0;
    for (int i = 0; i < m->ndecls; i++)
      if (m->decls[i]->kind == D_CONST) names[n++] = m->decls[i]->name;
    const char *best = diag_closest(name, names, n);
    diag_error(E->c, SRCLOC_NONE,
               best ? arena_printf(&E->c->arena, "did you mean `%s`?", best)
                    : "-D sets a top-level `const` of the main file",
               "unknown constant '%s' in -D %s=%s", name, name, E->c->defines[k].value);
  }
}

static void export_consts(Elab *E, Module *m) {
  Program *p = E->p;
  for (Binding *b = m->consts; b; b = b->next) {
    if (!v_is_num(&b->v) && b->v.k != V_STR) continue;
    if (p->nconsts == p->capconsts) {
      p->capconsts = p->capconsts ? 2 * p->capconsts : 16;
      p->consts = xrealloc(p->consts, (size_t)p->capconsts * sizeof *p->consts);
    }
    p->consts[p->nconsts].name = b->name;
    p->consts[p->nconsts].is_str = b->v.k == V_STR;
    p->consts[p->nconsts].num = b->v.k == V_STR ? 0 : v_num(&b->v);
    p->consts[p->nconsts].str = b->v.k == V_STR ? b->v.s : NULL;
    p->nconsts++;
  }
}

static uint64_t name_hash(const char *s) {
  uint64_t h = 1469598103934665603ull;
  for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ull;
  return h;
}

ModSym *fe_module_sym(const Module *m, const char *name) {
  if (!m->symcap) return NULL;
  for (uint64_t i = name_hash(name);; i++) {
    ModSym *s = &m->syms[i & (uint64_t)(m->symcap - 1)];
    if (!s->name) return NULL;
    if (!strcmp(s->name, name)) return s;
  }
}

/* Builds m's symbol table; a name declared twice is an error (the first one counts). */
static void index_module(Ctx *c, Module *m) {
  int cap = 16;
  while (cap < 2 * m->ndecls + 2) cap *= 2;
  m->syms = arena_alloc(&c->arena, (size_t)cap * sizeof *m->syms);
  m->symcap = cap;
  for (int i = 0; i < m->ndecls; i++) {
    Decl *d = m->decls[i];
    const char *name = d->kind == D_IMPORT ? d->alias : d->name;
    for (uint64_t h = name_hash(name);; h++) {
      ModSym *s = &m->syms[h & (uint64_t)(cap - 1)];
      if (!s->name) {
        s->name = name;
        s->decl = d;
        break;
      }
      if (strcmp(s->name, name)) continue;
      if (d->kind == D_CONST && s->decl->kind == D_CONST)
        diag_error(c, d->loc, NULL, "constant '%s' declared twice", name);
      else
        diag_error(c, d->loc, NULL, "'%s' is already declared at line %d", name, s->decl->loc.line);
      break;
    }
  }
}

/* A function body is expanded at every call, so one mistake in it would be reported once
 * per call (per loop iteration, per entry). Keep the first of identical diagnostics. */
int fe_dedupe_diags(Ctx *c, int from) {
  int k = from;
  for (int i = from; i < c->ndiags; i++) {
    const Diag *d = &c->diags[i];
    int dup = 0;
    for (int j = 0; j < k && !dup; j++) {
      const Diag *e = &c->diags[j];
      dup = e->loc.file == d->loc.file && e->loc.line == d->loc.line && e->loc.col == d->loc.col &&
            !strcmp(e->msg, d->msg);
    }
    if (!dup) c->diags[k++] = *d;
  }
  int removed = c->ndiags - k;
  c->ndiags = k;
  return removed;
}

/* Diagnostics in source order (file, line, column), whichever pass found them; stable,
 * so errors without a location keep their place at the front. */
static void sort_diags(Ctx *c) {
  for (int i = 1; i < c->ndiags; i++) {
    Diag d = c->diags[i];
    int j = i;
    for (; j > 0; j--) {
      const SrcLoc *a = &c->diags[j - 1].loc, *b = &d.loc;
      int after = a->file != b->file ? a->file > b->file
                  : a->line != b->line ? a->line > b->line
                                       : a->col > b->col;
      if (!after) break;
      c->diags[j] = c->diags[j - 1];
    }
    c->diags[j] = d;
  }
}

int fe_compile(Ctx *c, const char *path, Program *p) {
  Loader L = {0};
  L.c = c;
  Module *main = load(&L, path, SRCLOC_NONE);
  free(L.stack);
  if (!main) {
    free(L.mods);
    return -1;
  }
  Elab E = {0};
  E.c = c;
  E.p = p;
  E.main = main;
  for (int i = 0; i < L.nmods; i++) {
    index_module(c, L.mods[i]);
    eval_consts(&E, L.mods[i], L.mods[i] == main);
  }
  check_defines(&E, main);
  export_consts(&E, main);
  if (ctx_failed(c)) {
    free(L.mods);
    sort_diags(c);
    return -1;
  }
  for (int i = 0; i < L.nmods; i++) fe_resolve_module(c, L.mods[i]);
  free(L.mods);
  for (int i = 0; i < main->ndecls; i++) {
    Decl *d = main->decls[i];
    if (d->kind != D_FN || d->fnkind != FN_ENTRY) continue;
    int before = c->ndiags;
    fe_elab_entry(&E, main, d);
    fe_dedupe_diags(c, 0);
    char buf[512];
    if (c->ndiags == before && ir_verify(E.g, p, buf, sizeof buf))
      diag_error(c, d->loc, "this is a bug in gradc, not in your program",
                 "internal error: the graph of entry '%s' fails verification: %s", d->name, buf);
  }
  sort_diags(c);
  return ctx_failed(c) ? -1 : 0;
}

int fe_dump_ast(Ctx *c, const char *path, FILE *out) {
  Loader L = {0};
  L.c = c;
  int file = ctx_load_file(c, path, SRCLOC_NONE);
  if (file < 0) return -1;
  Module m = {0};
  m.name = base_name(c, path);
  m.path = c->files[file].path;
  int ntok = 0;
  Token *toks = fe_lex(c, file, &ntok);
  if (!toks || fe_parse(c, toks, ntok, &m)) return -1;
  fe_print_module(c, &m, out);
  (void)L;
  return 0;
}
