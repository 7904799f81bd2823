/* parse.c: tokens -> syntax tree (recursive descent, chibicc style).
 *
 * Each function parses one grammar rule, written in the comment above it; the grammar
 * as a whole is in docs/language.md. A syntax error records a diagnostic and unwinds
 * (longjmp, the jmp_buf lives in the parser struct, not in a global) to the declaration
 * loop, which skips to the next line that starts a declaration and goes on, so one run
 * reports the syntax errors of several declarations. Nesting is limited to
 * FE_MAX_NESTING levels so that hostile input (10 MB of "(((") gets an error instead of
 * a stack overflow.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "ast.h"

typedef struct {
  Ctx *c;
  Token *t; /* current token */
  Token *end;
  int depth;
  jmp_buf fail;
} Parser;

/* ---- helpers ---------------------------------------------------------------------------- */
static _Noreturn void fail_at(Parser *P, SrcLoc loc, const char *hint, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static _Noreturn void fail_at(Parser *P, SrcLoc loc, const char *hint, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  diag_verror(P->c, loc, hint, fmt, ap);
  va_end(ap);
  longjmp(P->fail, 1);
}

static const char *tok_desc(Parser *P, const Token *t) {
  if (t->kind == TK_EOF) return "end of file";
  if (t->kind == TK_NEWLINE) return "end of line";
  if (t->kind == TK_STR) return "a string";
  return arena_printf(&P->c->arena, "'%s'", t->s);
}

static int is(const Token *t, const char *s) {
  return (t->kind == TK_PUNCT || t->kind == TK_KEYWORD) && !strcmp(t->s, s);
}

static int accept(Parser *P, const char *s) {
  if (!is(P->t, s)) return 0;
  P->t++;
  return 1;
}

static Token *expect(Parser *P, const char *s) {
  if (!is(P->t, s)) fail_at(P, P->t->loc, NULL, "expected '%s' but found %s", s, tok_desc(P, P->t));
  return P->t++;
}

/* A closing bracket: the hint points back at the one it should close. */
static void expect_close(Parser *P, const char *s, const Token *open) {
  if (is(P->t, s)) {
    P->t++;
    return;
  }
  const char *hint = arena_printf(&P->c->arena, "to close the '%s' at line %d, column %d", open->s,
                                  open->loc.line, open->loc.col);
  fail_at(P, P->t->loc, hint, "expected '%s' but found %s", s, tok_desc(P, P->t));
}

static const char *expect_name(Parser *P, const char *what) {
  if (P->t->kind != TK_IDENT)
    fail_at(P, P->t->loc, P->t->kind == TK_KEYWORD ? "keywords cannot be used as names" : NULL,
            "expected %s but found %s", what, tok_desc(P, P->t));
  return (P->t++)->s;
}

static void skip_newlines(Parser *P) {
  while (P->t->kind == TK_NEWLINE || is(P->t, ";")) P->t++;
}

static void enter(Parser *P) {
  if (++P->depth > FE_MAX_NESTING)
    fail_at(P, P->t->loc, "split the expression with let", "nesting too deep (more than %d levels)",
            FE_MAX_NESTING);
}

static Ast *new_ast(Parser *P, AstKind k, SrcLoc loc) {
  Ast *a = arena_alloc(&P->c->arena, sizeof *a);
  a->kind = k;
  a->loc = loc;
  return a;
}

/* A growable list of pointers in malloc memory, copied into the arena when done. */
typedef struct {
  void **v;
  int n, cap;
  Arena *arena;
} PList;

/* Grows in the arena (the old array is simply abandoned), so a longjmp leaks nothing. */
static void plist_push(PList *l, void *x) {
  if (l->n == l->cap) {
    int cap = l->cap ? 2 * l->cap : 8;
    void **v = arena_alloc(l->arena, (size_t)cap * sizeof *v);
    if (l->n) memcpy(v, l->v, (size_t)l->n * sizeof *v);
    l->v = v;
    l->cap = cap;
  }
  l->v[l->n++] = x;
}

static void *plist_done(Parser *P, PList *l) {
  if (!l->v) l->v = arena_alloc(&P->c->arena, sizeof *l->v);
  return l->v;
}

static Ast *expr(Parser *P);
static Ast *block(Parser *P);
static TypeExpr *type(Parser *P);

/* ---- expressions ------------------------------------------------------------------------- */
/* args = [ arg { "," arg } ] ; arg = [ NAME "=" ] expr */
static void args(Parser *P, Ast *call, const Token *open) {
  PList vals = {.arena = &P->c->arena}, names = {.arena = &P->c->arena};
  while (!is(P->t, ")")) {
    const char *kw = NULL;
    if (P->t->kind == TK_IDENT && is(P->t + 1, "=")) {
      kw = P->t->s;
      P->t += 2;
    }
    plist_push(&vals, expr(P));
    plist_push(&names, (void *)kw);
    if (!accept(P, ",")) break;
  }
  call->n = vals.n;
  call->list = plist_done(P, &vals);
  call->names = plist_done(P, &names);
  expect_close(P, ")", open);
}

/* index = expr | [ expr ] ":" [ expr ] */
static Ast *index_item(Parser *P) {
  SrcLoc loc = P->t->loc;
  Ast *lo = NULL;
  if (!is(P->t, ":")) lo = expr(P);
  if (!accept(P, ":")) return lo;
  Ast *s = new_ast(P, A_SLICE, loc);
  s->a = lo;
  if (!is(P->t, ",") && !is(P->t, "]")) s->b = expr(P);
  return s;
}

/* primary = NUMBER | STRING | "true" | "false" | NAME | "(" expr { "," expr } ")"
 *         | "[" [ expr { "," expr } ] "]" */
static Ast *primary(Parser *P) {
  Token *t = P->t;
  if (t->kind == TK_INT || t->kind == TK_FLOAT) {
    Ast *a = new_ast(P, t->kind == TK_INT ? A_INT : A_FLOAT, t->loc);
    a->ival = t->ival;
    a->fval = t->fval;
    P->t++;
    return a;
  }
  if (t->kind == TK_STR) {
    Ast *a = new_ast(P, A_STR, t->loc);
    a->str = t->str;
    P->t++;
    return a;
  }
  if (is(t, "true") || is(t, "false")) {
    Ast *a = new_ast(P, A_BOOL, t->loc);
    a->ival = is(t, "true");
    P->t++;
    return a;
  }
  if (t->kind == TK_IDENT) {
    Ast *a = new_ast(P, A_NAME, t->loc);
    a->name = t->s;
    P->t++;
    return a;
  }
  if (is(t, "(") || is(t, "[")) {
    int paren = is(t, "(");
    P->t++;
    enter(P);
    PList l = {.arena = &P->c->arena};
    int trailing_comma = 0;
    while (!is(P->t, paren ? ")" : "]")) {
      plist_push(&l, expr(P));
      trailing_comma = 0;
      if (!accept(P, ",")) break;
      trailing_comma = 1;
    }
    expect_close(P, paren ? ")" : "]", t);
    P->depth--;
    if (paren && l.n == 1 && !trailing_comma) {
      return l.v[0];
    }
    Ast *a = new_ast(P, paren ? A_TUPLE : A_LIST, t->loc);
    a->n = l.n;
    a->list = plist_done(P, &l);
    return a;
  }
  fail_at(P, t->loc, NULL, "expected an expression but found %s", tok_desc(P, t));
}

/* postfix = primary { "(" args ")" [ "as" NAME ] | "[" index { "," index } "]" | "." NAME } */
static Ast *postfix(Parser *P) {
  Ast *a = primary(P);
  for (int k = 0;; k++) {
    if (k > FE_MAX_NESTING)
      fail_at(P, P->t->loc, "split the expression with let", "expression too long (more than %d postfix operations)", FE_MAX_NESTING);
    Token *t = P->t;
    if (accept(P, "(")) {
      Ast *c = new_ast(P, A_CALL, t->loc);
      c->a = a;
      c->loc = a->kind == A_NAME || a->kind == A_MEMBER ? a->loc : t->loc;
      enter(P);
      args(P, c, t);
      P->depth--;
      if (accept(P, "as")) c->name = expect_name(P, "a call label after 'as'");
      a = c;
    } else if (accept(P, "[")) {
      Ast *x = new_ast(P, A_INDEX, t->loc);
      x->a = a;
      enter(P);
      PList l = {.arena = &P->c->arena};
      do plist_push(&l, index_item(P));
      while (accept(P, ","));
      expect_close(P, "]", t);
      P->depth--;
      x->n = l.n;
      x->list = plist_done(P, &l);
      a = x;
    } else if (accept(P, ".")) {
      Ast *m = new_ast(P, A_MEMBER, t->loc);
      m->a = a;
      m->loc = P->t->loc;
      m->name = expect_name(P, "a member name after '.'");
      a = m;
    } else {
      return a;
    }
  }
}

static Ast *binop(Parser *P, Token *t, Ast *l, Ast *r) {
  Ast *a = new_ast(P, A_BINOP, t->loc);
  a->op = t->s;
  a->a = l;
  a->b = r;
  return a;
}

static Ast *unary(Parser *P);

/* power = postfix [ "**" unary ] */
static Ast *power(Parser *P) {
  Ast *a = postfix(P);
  Token *t = P->t;
  if (accept(P, "**")) {
    enter(P);
    a = binop(P, t, a, unary(P));
    P->depth--;
  }
  return a;
}

/* unary = ("-"|"+") unary | power */
static Ast *unary(Parser *P) {
  Token *t = P->t;
  if (is(t, "-") || is(t, "+")) {
    P->t++;
    enter(P);
    Ast *a = new_ast(P, A_UNOP, t->loc);
    a->op = t->s;
    a->a = unary(P);
    P->depth--;
    return a;
  }
  return power(P);
}

/* mul = unary { ("*"|"/"|"//"|"%"|"@") unary } */
static Ast *mul(Parser *P) {
  Ast *a = unary(P);
  for (;;) {
    Token *t = P->t;
    if (is(t, "*") || is(t, "/") || is(t, "//") || is(t, "%") || is(t, "@")) {
      P->t++;
      a = binop(P, t, a, unary(P));
    } else {
      return a;
    }
  }
}

/* add = mul { ("+"|"-") mul } */
static Ast *add(Parser *P) {
  Ast *a = mul(P);
  for (;;) {
    Token *t = P->t;
    if (is(t, "+") || is(t, "-")) {
      P->t++;
      a = binop(P, t, a, mul(P));
    } else {
      return a;
    }
  }
}

/* cmp = add [ ("<"|"<="|">"|">="|"=="|"!=") add ] */
static Ast *cmp(Parser *P) {
  Ast *a = add(P);
  Token *t = P->t;
  if (is(t, "<") || is(t, "<=") || is(t, ">") || is(t, ">=") || is(t, "==") || is(t, "!=")) {
    P->t++;
    a = binop(P, t, a, add(P));
    if (is(P->t, "<") || is(P->t, "<=") || is(P->t, ">") || is(P->t, ">=") || is(P->t, "==") ||
        is(P->t, "!="))
      fail_at(P, P->t->loc, "write (a < b) and (b < c)", "comparisons cannot be chained");
  }
  return a;
}

/* not = [ "not" ] cmp */
static Ast *not_expr(Parser *P) {
  Token *t = P->t;
  if (accept(P, "not")) {
    enter(P);
    Ast *a = new_ast(P, A_UNOP, t->loc);
    a->op = "not";
    a->a = not_expr(P);
    P->depth--;
    return a;
  }
  return cmp(P);
}

/* and = not { "and" not } */
static Ast *and_expr(Parser *P) {
  Ast *a = not_expr(P);
  for (Token *t = P->t; accept(P, "and"); t = P->t) a = binop(P, t, a, not_expr(P));
  return a;
}

/* expr = or ; or = and { "or" and } */
static Ast *expr(Parser *P) {
  enter(P);
  Ast *a = and_expr(P);
  for (Token *t = P->t; accept(P, "or"); t = P->t) a = binop(P, t, a, and_expr(P));
  P->depth--;
  return a;
}

/* ---- types ------------------------------------------------------------------------------- */
static int dtype_of_name(const char *s) {
  static const char *const names[] = {"f32", "f64", "i32", "i64"};
  for (int i = 0; i < 4; i++)
    if (!strcmp(s, names[i])) return i;
  return -1;
}

/* type  = ttype | ctype | "fn"
 * ttype = DTYPE [ "[" dim { "," dim } "]" ]      dim = expr
 * ctype = "int" | "float" | "bool" | "str" | "list" */
static TypeExpr *type(Parser *P) {
  TypeExpr *ty = arena_alloc(&P->c->arena, sizeof *ty);
  ty->loc = P->t->loc;
  if (accept(P, "fn")) {
    ty->kind = TY_FN;
    return ty;
  }
  const char *name = expect_name(P, "a type (f32[..], f64, i32, i64, int, float, bool, str, list, fn)");
  static const char *const ctypes[] = {"int", "float", "bool", "str", "list"};
  for (int i = 0; i < 5; i++)
    if (!strcmp(name, ctypes[i])) {
      ty->kind = (TypeKind)(TY_INT + i);
      return ty;
    }
  int dt = dtype_of_name(name);
  if (dt < 0)
    fail_at(P, ty->loc, "types: f32[..], f64[..], i32[..], i64[..], int, float, bool, str, list, fn",
            "unknown type '%s'", name);
  ty->kind = TY_TENSOR;
  ty->dtype = (DType)dt;
  if (accept(P, "[")) {
    PList l = {.arena = &P->c->arena};
    if (!is(P->t, "]")) {
      do plist_push(&l, expr(P));
      while (accept(P, ","));
    }
    expect(P, "]");
    if (l.n > IR_MAXRANK) {
      fail_at(P, ty->loc, NULL, "tensor rank above the maximum of %d", IR_MAXRANK);
    }
    ty->rank = l.n;
    ty->dims = plist_done(P, &l);
  }
  return ty;
}

/* rtype = type | "(" [ NAME ":" ] type { "," [ NAME ":" ] type } ")" */
static TypeExpr *rtype(Parser *P) {
  if (!is(P->t, "(")) return type(P);
  TypeExpr *ty = arena_alloc(&P->c->arena, sizeof *ty);
  ty->kind = TY_TUPLE;
  ty->loc = P->t->loc;
  P->t++;
  PList el = {.arena = &P->c->arena}, nm = {.arena = &P->c->arena};
  do {
    const char *name = NULL;
    if (P->t->kind == TK_IDENT && is(P->t + 1, ":")) {
      name = P->t->s;
      P->t += 2;
    }
    plist_push(&nm, (void *)name);
    plist_push(&el, type(P));
  } while (accept(P, ","));
  expect(P, ")");
  ty->nelems = el.n;
  ty->elems = plist_done(P, &el);
  ty->names = plist_done(P, &nm);
  return ty;
}

/* ---- statements --------------------------------------------------------------------------- */
static void end_stmt(Parser *P) {
  if (P->t->kind == TK_NEWLINE || is(P->t, ";")) {
    skip_newlines(P);
    return;
  }
  if (is(P->t, "}")) return;
  fail_at(P, P->t->loc, NULL, "expected the end of the statement but found %s", tok_desc(P, P->t));
}

/* "let" target [ ":" type ] "=" expr ;  target = NAME | "(" NAME { "," NAME } ")" */
static Ast *let_stmt(Parser *P, SrcLoc loc) {
  Ast *s = new_ast(P, A_LET, loc);
  PList l = {.arena = &P->c->arena};
  if (accept(P, "(")) {
    s->is_tuple = 1;
    do plist_push(&l, (void *)expect_name(P, "a name"));
    while (accept(P, ","));
    expect(P, ")");
  } else {
    plist_push(&l, (void *)expect_name(P, "a name after 'let'"));
  }
  s->n = l.n;
  s->names = plist_done(P, &l);
  if (accept(P, ":")) s->type = type(P);
  expect(P, "=");
  s->a = expr(P);
  return s;
}

/* "for" NAME "in" expr [ ".." expr ] block */
static Ast *for_stmt(Parser *P, SrcLoc loc) {
  Ast *s = new_ast(P, A_FOR, loc);
  s->name = expect_name(P, "a loop variable after 'for'");
  expect(P, "in");
  s->a = expr(P);
  if (accept(P, "..")) s->b = expr(P);
  s->body = block(P);
  return s;
}

/* "if" expr block [ "else" ( block | if-stmt ) ] */
static Ast *if_stmt(Parser *P, SrcLoc loc) {
  Ast *s = new_ast(P, A_IF, loc);
  s->a = expr(P);
  s->body = block(P);
  Token *save = P->t;
  skip_newlines(P);
  if (accept(P, "else")) {
    Token *t = P->t;
    if (accept(P, "if")) {
      Ast *b = new_ast(P, A_BLOCK, t->loc);
      b->n = 1;
      b->list = arena_alloc(&P->c->arena, sizeof *b->list);
      enter(P);
      b->list[0] = if_stmt(P, t->loc);
      P->depth--;
      s->els = b;
    } else {
      s->els = block(P);
    }
  } else {
    P->t = save;
  }
  return s;
}

/* stmt = "let" ... | NAME "=" expr | "param" NAME ":" ttype "=" expr
 *      | "return" expr { "," expr } | "for" ... | "if" ... | expr (a call) */
static Ast *stmt(Parser *P) {
  Token *t = P->t;
  Ast *s;
  if (accept(P, "let")) {
    s = let_stmt(P, t->loc);
  } else if (accept(P, "param")) {
    s = new_ast(P, A_PARAM, t->loc);
    s->name = expect_name(P, "a parameter name");
    expect(P, ":");
    s->type = type(P);
    expect(P, "=");
    s->a = expr(P);
  } else if (accept(P, "return")) {
    s = new_ast(P, A_RETURN, t->loc);
    PList l = {.arena = &P->c->arena};
    do plist_push(&l, expr(P));
    while (accept(P, ","));
    s->n = l.n;
    s->list = plist_done(P, &l);
  } else if (accept(P, "for")) {
    enter(P);
    s = for_stmt(P, t->loc);
    P->depth--;
    return s;
  } else if (accept(P, "if")) {
    enter(P);
    s = if_stmt(P, t->loc);
    P->depth--;
    return s;
  } else if (t->kind == TK_IDENT && is(t + 1, "=")) {
    s = new_ast(P, A_ASSIGN, t->loc);
    s->name = t->s;
    P->t += 2;
    s->a = expr(P);
  } else {
    s = new_ast(P, A_EXPR, t->loc);
    s->a = expr(P);
    if (is(P->t, "=")) fail_at(P, P->t->loc, "only names can be assigned: NAME = expr",
                               "cannot assign to this expression");
    if (s->a->kind != A_CALL)
      fail_at(P, t->loc,
              t->kind == TK_PUNCT ? "to continue the previous line, end it with the operator"
                                  : "bind it with let, or return it",
              "this expression is computed and then dropped");
  }
  end_stmt(P);
  return s;
}

static int starts_decl(const Token *t);

/* After a syntax error in a statement: skips to its end (a newline or ';' outside nested
 * braces, or the '}' closing the block). Returns 1 if the block cannot go on (end of
 * file, or a declaration keyword at the start of a line). */
static int skip_stmt(Parser *P) {
  int braces = 0;
  for (;; P->t++) {
    const Token *t = P->t;
    if (starts_decl(t)) return 1;
    if (braces == 0 && (t->kind == TK_NEWLINE || is(t, ";"))) return 0;
    if (is(t, "{")) braces++;
    if (is(t, "}") && braces-- == 0) return 0;
  }
}

/* block = "{" { stmt } "}"
 * A syntax error in one statement is reported and parsing resumes at the next one, so a
 * body with several mistakes reports them all. */
static Ast *block(Parser *P) {
  if (P->t->kind == TK_NEWLINE && is(P->t + 1, "{")) P->t++; /* brace on its own line */
  Token *t = expect(P, "{");
  enter(P);
  Ast *b = new_ast(P, A_BLOCK, t->loc);
  PList l = {.arena = &P->c->arena};
  skip_newlines(P);
  while (!is(P->t, "}")) {
    if (P->t->kind == TK_EOF) {
      fail_at(P, t->loc, "add the closing '}'", "unclosed '{'");
    }
    jmp_buf outer;
    memcpy(outer, P->fail, sizeof outer);
    int depth = P->depth;
    Ast *volatile s = NULL;
    if (!setjmp(P->fail)) {
      s = stmt(P);
    } else {
      P->depth = depth;
      if (skip_stmt(P)) {
        memcpy(P->fail, outer, sizeof outer);
        longjmp(P->fail, 1); /* give up on this declaration */
      }
    }
    memcpy(P->fail, outer, sizeof outer);
    if (s) plist_push(&l, s);
    skip_newlines(P);
  }
  P->t++;
  P->depth--;
  b->n = l.n;
  b->list = plist_done(P, &l);
  return b;
}

/* ---- declarations ------------------------------------------------------------------------- */
/* params = [ param { "," param } ] ; param = NAME ":" type [ "=" expr ] */
static void params(Parser *P, Decl *d) {
  expect(P, "(");
  int cap = 4, n = 0;
  AParam *ps = arena_alloc(&P->c->arena, (size_t)cap * sizeof *ps);
  while (!is(P->t, ")")) {
    if (n == cap) {
      AParam *bigger = arena_alloc(&P->c->arena, (size_t)(cap *= 2) * sizeof *ps);
      memcpy(bigger, ps, (size_t)n * sizeof *ps);
      ps = bigger;
    }
    AParam *p = &ps[n++];
    p->loc = P->t->loc;
    p->name = expect_name(P, "a parameter name");
    for (int i = 0; i < n - 1; i++)
      if (!strcmp(ps[i].name, p->name))
        fail_at(P, p->loc, NULL, "duplicate parameter '%s'", p->name);
    expect(P, ":");
    p->type = type(P);
    if (accept(P, "=")) p->def = expr(P);
    if (!accept(P, ",")) break;
  }
  expect(P, ")");
  d->params = ps;
  d->nparams = n;
}

/* fn    = ("fn" | "model") NAME "(" params ")" [ "->" rtype ] block
 * entry = "entry" NAME "(" params ")" "->" rtype block */
static Decl *fn_decl(Parser *P, Decl *d, FnKind k) {
  d->kind = D_FN;
  d->fnkind = k;
  d->loc = P->t->loc;
  d->name = expect_name(P, "a function name");
  params(P, d);
  if (accept(P, "->")) d->ret = rtype(P);
  else if (k == FN_ENTRY)
    fail_at(P, P->t->loc, "e.g. entry loss(x: f32[B, D]) -> f32 { ... }",
            "an entry needs a result type ('->' type)");
  d->body = block(P);
  return d;
}

/* file = { import | const | fn | model | entry | extern } EOF */
static Decl *decl(Parser *P) {
  Decl *d = arena_alloc(&P->c->arena, sizeof *d);
  Token *t = P->t;
  d->loc = t->loc;
  if (accept(P, "import")) {
    /* import = "import" NAME [ "as" NAME ] { "," NAME [ "as" NAME ] } handled by caller */
    d->kind = D_IMPORT;
    d->loc = P->t->loc;
    d->name = d->alias = expect_name(P, "a module name after 'import'");
    if (accept(P, "as")) d->alias = expect_name(P, "a name after 'as'");
    return d;
  }
  if (accept(P, "const")) {
    /* const = "const" NAME [ ":" ctype ] "=" expr */
    d->kind = D_CONST;
    d->loc = P->t->loc;
    d->name = expect_name(P, "a constant name");
    if (accept(P, ":")) d->ctype = type(P);
    expect(P, "=");
    d->value = expr(P);
    return d;
  }
  if (accept(P, "fn")) return fn_decl(P, d, FN_FN);
  if (accept(P, "model")) return fn_decl(P, d, FN_MODEL);
  if (accept(P, "entry")) return fn_decl(P, d, FN_ENTRY);
  if (accept(P, "extern")) {
    /* extern = "extern" STRING "fn" NAME "(" params ")" "->" ttype */
    d->kind = D_EXTERN;
    if (P->t->kind != TK_STR)
      fail_at(P, P->t->loc, "e.g. extern \"libm.so.6\" fn erf(x: f64) -> f64",
              "expected the library name as a string but found %s", tok_desc(P, P->t));
    d->lib = (P->t++)->str;
    expect(P, "fn");
    d->loc = P->t->loc;
    d->name = expect_name(P, "a function name");
    params(P, d);
    expect(P, "->");
    d->ret = type(P);
    return d;
  }
  fail_at(P, t->loc, "a file holds import, const, fn, model, entry and extern declarations",
          "expected a declaration but found %s", tok_desc(P, t));
}

static int starts_decl(const Token *t) {
  return t->kind == TK_EOF ||
         (t->loc.col == 1 && (is(t, "import") || is(t, "const") || is(t, "fn") ||
                              is(t, "model") || is(t, "entry") || is(t, "extern")));
}

/* The parser state lives in the arena, not in fe_parse's frame: after the longjmp back
 * into fe_parse every field is read from memory, as setjmp requires. */
int fe_parse(Ctx *c, Token *toks, int ntok, Module *m) {
  Parser *P = arena_alloc(&c->arena, sizeof *P);
  P->c = c;
  P->t = toks;
  P->end = toks + ntok;
  PList *l = arena_alloc(&c->arena, sizeof *l);
  l->arena = &c->arena;
  int *failed = arena_alloc(&c->arena, sizeof *failed);
  int before = c->ndiags; /* statement-level recovery reports without unwinding here */
  for (;;) {
    if (setjmp(P->fail)) {
      *failed = 1;
      P->depth = 0;
      if (P->t->kind != TK_EOF) P->t++;
      while (!starts_decl(P->t)) P->t++;
    }
    skip_newlines(P);
    if (P->t->kind == TK_EOF) break;
    Decl *d = decl(P);
    plist_push(l, d);
    while (d->kind == D_IMPORT && accept(P, ",")) { /* import a, b as c */
      Decl *e = arena_alloc(&c->arena, sizeof *e);
      e->kind = D_IMPORT;
      e->loc = P->t->loc;
      e->name = e->alias = expect_name(P, "a module name");
      if (accept(P, "as")) e->alias = expect_name(P, "a name after 'as'");
      plist_push(l, e);
    }
    if (P->t->kind != TK_NEWLINE && !is(P->t, ";") && !starts_decl(P->t))
      fail_at(P, P->t->loc, NULL, "expected the end of the declaration but found %s",
              tok_desc(P, P->t));
  }
  m->ndecls = l->n;
  m->decls = (Decl **)plist_done(P, l);
  return *failed || c->ndiags > before ? -1 : 0;
}

/* ---- printing (`gradc dump --stage=ast`, signatures in hints) ------------------------------ */
static void expr_str(Ctx *c, const Ast *a, char *buf, size_t n, size_t *k);

static void put(char *buf, size_t n, size_t *k, const char *s) {
  size_t l = strlen(s);
  if (*k + l + 1 > n) l = *k + 1 < n ? n - *k - 1 : 0;
  memcpy(buf + *k, s, l);
  *k += l;
  buf[*k] = 0;
}

static void expr_str(Ctx *c, const Ast *a, char *buf, size_t n, size_t *k) {
  char tmp[64];
  if (!a) return;
  switch (a->kind) {
  case A_INT: snprintf(tmp, sizeof tmp, "%lld", (long long)a->ival); put(buf, n, k, tmp); break;
  case A_FLOAT: snprintf(tmp, sizeof tmp, "%g", a->fval); put(buf, n, k, tmp); break;
  case A_BOOL: put(buf, n, k, a->ival ? "true" : "false"); break;
  case A_STR: put(buf, n, k, "\""); put(buf, n, k, a->str); put(buf, n, k, "\""); break;
  case A_NAME: put(buf, n, k, a->name); break;
  case A_MEMBER: expr_str(c, a->a, buf, n, k); put(buf, n, k, "."); put(buf, n, k, a->name); break;
  case A_BINOP:
    expr_str(c, a->a, buf, n, k);
    put(buf, n, k, " ");
    put(buf, n, k, a->op);
    put(buf, n, k, " ");
    expr_str(c, a->b, buf, n, k);
    break;
  case A_UNOP:
    put(buf, n, k, a->op);
    if (!strcmp(a->op, "not")) put(buf, n, k, " ");
    expr_str(c, a->a, buf, n, k);
    break;
  default: put(buf, n, k, "..."); break;
  }
}

const char *fe_type_str(Ctx *c, const TypeExpr *t) {
  static const char *const names[] = {"", "int", "float", "bool", "str", "list", "fn", ""};
  if (!t) return "?";
  if (t->kind == TY_TENSOR) {
    char buf[256];
    size_t k = 0;
    buf[0] = 0;
    put(buf, sizeof buf, &k, dtype_name(t->dtype));
    if (t->rank) {
      put(buf, sizeof buf, &k, "[");
      for (int i = 0; i < t->rank; i++) {
        if (i) put(buf, sizeof buf, &k, ", ");
        expr_str(c, t->dims[i], buf, sizeof buf, &k);
      }
      put(buf, sizeof buf, &k, "]");
    }
    return arena_strdup(&c->arena, buf);
  }
  if (t->kind == TY_TUPLE) {
    const char *s = "(";
    for (int i = 0; i < t->nelems; i++)
      s = arena_printf(&c->arena, "%s%s%s%s%s", s, i ? ", " : "", t->names[i] ? t->names[i] : "",
                       t->names[i] ? ": " : "", fe_type_str(c, t->elems[i]));
    return arena_printf(&c->arena, "%s)", s);
  }
  return names[t->kind];
}

static void print_ast(const Ctx *c, const Ast *a, int ind, FILE *out);

static void print_list(const Ctx *c, Ast **l, int n, int ind, FILE *out) {
  for (int i = 0; i < n; i++) print_ast(c, l[i], ind, out);
}

static void print_ast(const Ctx *c, const Ast *a, int ind, FILE *out) {
  Ctx *mc = (Ctx *)c; /* type strings are built in the arena */
  fprintf(out, "%*s", 2 * ind, "");
  if (!a) {
    fprintf(out, "(none)\n");
    return;
  }
  switch (a->kind) {
  case A_INT: fprintf(out, "int %lld\n", (long long)a->ival); return;
  case A_FLOAT: fprintf(out, "float %.17g\n", a->fval); return;
  case A_STR: fprintf(out, "str \"%s\"\n", a->str); return;
  case A_BOOL: fprintf(out, "bool %s\n", a->ival ? "true" : "false"); return;
  case A_NAME: fprintf(out, "name %s\n", a->name); return;
  case A_TUPLE: fprintf(out, "tuple\n"); break;
  case A_LIST: fprintf(out, "list\n"); break;
  case A_BINOP: fprintf(out, "binop %s\n", a->op); break;
  case A_UNOP: fprintf(out, "unop %s\n", a->op); break;
  case A_CALL:
    fprintf(out, "call%s%s\n", a->name ? " as " : "", a->name ? a->name : "");
    print_ast(c, a->a, ind + 1, out);
    for (int i = 0; i < a->n; i++) {
      if (a->names[i]) fprintf(out, "%*s%s =\n", 2 * ind + 2, "", a->names[i]);
      print_ast(c, a->list[i], ind + 1 + (a->names[i] != NULL), out);
    }
    return;
  case A_INDEX: fprintf(out, "index\n"); break;
  case A_SLICE:
    fprintf(out, "slice\n");
    print_ast(c, a->a, ind + 1, out);
    print_ast(c, a->b, ind + 1, out);
    return;
  case A_MEMBER: fprintf(out, "member .%s\n", a->name); break;
  case A_LET:
    fprintf(out, "let");
    for (int i = 0; i < a->n; i++) fprintf(out, "%s%s", i ? ", " : " ", a->names[i]);
    if (a->type) fprintf(out, ": %s", fe_type_str(mc, a->type));
    fprintf(out, "\n");
    break;
  case A_ASSIGN: fprintf(out, "assign %s\n", a->name); break;
  case A_PARAM: fprintf(out, "param %s: %s\n", a->name, fe_type_str(mc, a->type)); break;
  case A_RETURN: fprintf(out, "return\n"); break;
  case A_FOR:
    fprintf(out, "for %s\n", a->name);
    print_ast(c, a->a, ind + 1, out);
    if (a->b) print_ast(c, a->b, ind + 1, out);
    print_ast(c, a->body, ind + 1, out);
    return;
  case A_IF:
    fprintf(out, "if\n");
    print_ast(c, a->a, ind + 1, out);
    print_ast(c, a->body, ind + 1, out);
    if (a->els) {
      fprintf(out, "%*selse\n", 2 * ind, "");
      print_ast(c, a->els, ind + 1, out);
    }
    return;
  case A_EXPR: fprintf(out, "expr\n"); break;
  case A_BLOCK: fprintf(out, "block\n"); break;
  }
  if (a->a) print_ast(c, a->a, ind + 1, out);
  if (a->b) print_ast(c, a->b, ind + 1, out);
  print_list(c, a->list, a->n * (a->kind != A_LET), ind + 1, out);
}

void fe_print_module(const Ctx *c, const Module *m, FILE *out) {
  Ctx *mc = (Ctx *)c;
  fprintf(out, "module %s (%s)\n", m->name, m->path);
  static const char *const kinds[] = {"fn", "model", "entry"};
  for (int i = 0; i < m->ndecls; i++) {
    const Decl *d = m->decls[i];
    switch (d->kind) {
    case D_IMPORT: fprintf(out, "  import %s as %s\n", d->name, d->alias); break;
    case D_CONST:
      fprintf(out, "  const %s%s%s\n", d->name, d->ctype ? ": " : "",
              d->ctype ? fe_type_str(mc, d->ctype) : "");
      print_ast(c, d->value, 2, out);
      break;
    case D_EXTERN:
    case D_FN:
      if (d->kind == D_EXTERN) fprintf(out, "  extern \"%s\" fn %s(", d->lib, d->name);
      else fprintf(out, "  %s %s(", kinds[d->fnkind], d->name);
      for (int k = 0; k < d->nparams; k++)
        fprintf(out, "%s%s: %s", k ? ", " : "", d->params[k].name,
                fe_type_str(mc, d->params[k].type));
      fprintf(out, ")");
      if (d->ret) fprintf(out, " -> %s", fe_type_str(mc, d->ret));
      fprintf(out, "\n");
      for (int k = 0; k < d->nparams; k++)
        if (d->params[k].def) {
          fprintf(out, "    default %s\n", d->params[k].name);
          print_ast(c, d->params[k].def, 3, out);
        }
      if (d->body) print_ast(c, d->body, 2, out);
      break;
    }
  }
}
