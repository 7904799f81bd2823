/* resolve.c: static name check of every function body, called or not.
 *
 * Elaboration only sees the code an entry reaches, with concrete shapes: a typo in a
 * library function no entry calls yet, or in a branch of an `if` that this configuration
 * does not take, would go unnoticed until someone calls it. This pass walks every fn,
 * model and entry body once, with the same scoping rules as elaboration (parameters and
 * size variables of the signature, `let` names from their statement to the end of their
 * block, loop variables inside the loop), and reports names that resolve to nothing and
 * members that a module does not have. The messages are the ones elaboration would give
 * at the same place, so the two never disagree and duplicates merge.
 */
#include <stdlib.h>
#include <string.h>

#include "elab.h"

typedef struct {
  Ctx *c;
  Module *m;
  const char **names; /* the scope stack */
  int n, cap;
  int overflow; /* too many names: stop checking this function (elaboration limits it) */
} Res;

static void push(Res *R, const char *name) {
  if (R->n >= FE_MAX_LOCALS * 4) {
    R->overflow = 1;
    return;
  }
  if (R->n == R->cap) {
    R->cap = R->cap ? 2 * R->cap : 64;
    R->names = xrealloc(R->names, (size_t)R->cap * sizeof *R->names);
  }
  R->names[R->n++] = name;
}

static int is_local(const Res *R, const char *name) {
  for (int i = R->n - 1; i >= 0; i--)
    if (!strcmp(R->names[i], name)) return 1;
  return 0;
}

static int is_global(const Res *R, const char *name) {
  static const char *const fixed[] = {"f32", "f64", "i32", "i64", "pi"};
  for (int i = 0; i < 5; i++)
    if (!strcmp(name, fixed[i])) return 1;
  return fe_module_sym(R->m, name) || fe_builtin_find(name) >= 0;
}

static void unknown(Res *R, const char *name, SrcLoc loc) {
  int n = 0, cap = R->n + R->m->ndecls + fe_builtin_count() + 1;
  const char **cands = xrealloc(NULL, (size_t)cap * sizeof *cands);
  for (int i = R->n - 1; i >= 0; i--) cands[n++] = R->names[i];
  for (int i = 0; i < R->m->ndecls; i++)
    cands[n++] = R->m->decls[i]->kind == D_IMPORT ? R->m->decls[i]->alias : R->m->decls[i]->name;
  for (int i = 0; i < fe_builtin_count(); i++) cands[n++] = fe_builtin_name(i);
  const char *best = diag_closest(name, cands, n);
  free(cands);
  diag_error(R->c, loc, best ? arena_printf(&R->c->arena, "did you mean `%s`?", best) : NULL,
             "unknown name '%s'", name);
}

static void expr(Res *R, const Ast *a);

static void member(Res *R, const Ast *a) {
  const Ast *base = a->a;
  if (base->kind != A_NAME || is_local(R, base->name)) {
    expr(R, base);
    return;
  }
  ModSym *s = fe_module_sym(R->m, base->name);
  if (!s) {
    expr(R, base);
    return;
  }
  if (s->decl->kind != D_IMPORT || !s->decl->mod) return;
  Module *mod = s->decl->mod;
  if (fe_module_sym(mod, a->name)) return;
  int n = 0;
  const char **cands = xrealloc(NULL, (size_t)(mod->ndecls + 1) * sizeof *cands);
  for (int i = 0; i < mod->ndecls; i++)
    cands[n++] = mod->decls[i]->kind == D_IMPORT ? mod->decls[i]->alias : mod->decls[i]->name;
  const char *best = diag_closest(a->name, cands, n);
  free(cands);
  diag_error(R->c, a->loc, best ? arena_printf(&R->c->arena, "did you mean `%s`?", best) : NULL,
             "module '%s' has no member '%s'", mod->name, a->name);
}

static void expr(Res *R, const Ast *a) {
  if (!a || R->overflow) return;
  switch (a->kind) {
  case A_NAME:
    if (!is_local(R, a->name) && !is_global(R, a->name)) unknown(R, a->name, a->loc);
    return;
  case A_MEMBER: member(R, a); return;
  default: break;
  }
  expr(R, a->a);
  expr(R, a->b);
  for (int i = 0; i < a->n && a->list; i++) expr(R, a->list[i]);
}

static void block(Res *R, const Ast *b);

static void stmt(Res *R, const Ast *s) {
  switch (s->kind) {
  case A_LET:
    expr(R, s->a);
    for (int i = 0; i < s->n; i++) push(R, s->names[i]);
    return;
  case A_ASSIGN:
    expr(R, s->a);
    if (!is_local(R, s->name))
      diag_error(R->c, s->loc, arena_printf(&R->c->arena, "declare it first: let %s = ...", s->name),
                 "assignment to undeclared name '%s'", s->name);
    return;
  case A_PARAM:
    for (int i = 0; i < s->type->rank; i++) expr(R, s->type->dims[i]);
    if (s->a->kind == A_CALL) /* the initializer's name is not a value: check its arguments */
      for (int i = 0; i < s->a->n; i++) expr(R, s->a->list[i]);
    push(R, s->name);
    return;
  case A_FOR: {
    expr(R, s->a);
    expr(R, s->b);
    int mark = R->n;
    push(R, s->name);
    block(R, s->body);
    R->n = mark;
    return;
  }
  case A_IF:
    expr(R, s->a);
    block(R, s->body);
    if (s->els) block(R, s->els);
    return;
  case A_BLOCK: block(R, s); return;
  default: /* return, expression statements */
    expr(R, s->a);
    for (int i = 0; i < s->n && s->list; i++) expr(R, s->list[i]);
    return;
  }
}

static void block(Res *R, const Ast *b) {
  int mark = R->n;
  for (int i = 0; i < b->n && !R->overflow; i++) stmt(R, b->list[i]);
  R->n = mark;
}

/* The signature's names: parameters and size variables (any name in a parameter type),
 * all in scope for defaults and the body, as in elaboration's binding order. */
static void function(Res *R, const Decl *d) {
  R->n = 0;
  R->overflow = 0;
  for (int i = 0; i < d->nparams; i++) {
    push(R, d->params[i].name);
    const TypeExpr *t = d->params[i].type;
    for (int k = 0; t->kind == TY_TENSOR && k < t->rank; k++)
      if (t->dims[k]->kind == A_NAME) push(R, t->dims[k]->name);
  }
  for (int i = 0; i < d->nparams; i++) expr(R, d->params[i].def);
  block(R, d->body);
}

void fe_resolve_module(Ctx *c, Module *m) {
  Res R = {c, m, NULL, 0, 0, 0};
  for (int i = 0; i < m->ndecls; i++)
    if (m->decls[i]->kind == D_FN && m->decls[i]->body) function(&R, m->decls[i]);
  free(R.names);
}
