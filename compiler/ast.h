/* ast.h: tokens and the syntax tree of .grad files (front end internal).
 *
 * The lexer turns a whole file into an array of tokens; the parser (chibicc style: one
 * function per grammar rule, the rule written above it) builds the tree below. Every node
 * keeps the location of its representative token, so elaboration errors point at the
 * operator or call that caused them. All of it lives in the compile arena: nothing is
 * freed one by one.
 *
 * Expressions and statements share one node type (Ast); declarations are Decl; a parsed
 * file is a Module. Types in annotations are TypeExpr: dims stay expressions because they
 * may name constants or size variables that only elaboration can resolve.
 */
#ifndef GRADC_AST_H
#define GRADC_AST_H

#include "ir.h"

/* ---- tokens -------------------------------------------------------------------------- */
typedef enum { TK_EOF, TK_NEWLINE, TK_IDENT, TK_KEYWORD, TK_INT, TK_FLOAT, TK_STR, TK_PUNCT } TokKind;

typedef struct {
  TokKind kind;
  const char *s; /* spelling (identifier, keyword, punctuator), NUL-terminated */
  SrcLoc loc;
  int64_t ival;
  double fval;
  const char *str; /* TK_STR: the decoded string */
} Token;

/* Tokenizes file `file` of c. Returns the token array (ending in TK_EOF) and its length,
 * or NULL after a located diagnostic. */
Token *fe_lex(Ctx *c, int file, int *ntok);

/* ---- types in annotations ------------------------------------------------------------ */
typedef enum { TY_TENSOR, TY_INT, TY_FLOAT, TY_BOOL, TY_STR, TY_LIST, TY_FN, TY_TUPLE } TypeKind;

typedef struct Ast Ast;
typedef struct TypeExpr TypeExpr;
struct TypeExpr {
  TypeKind kind;
  SrcLoc loc;
  DType dtype;       /* TY_TENSOR */
  Ast **dims;        /* TY_TENSOR: rank expressions */
  int rank;
  TypeExpr **elems;  /* TY_TUPLE */
  const char **names; /* TY_TUPLE: element names or NULL */
  int nelems;
};

/* ---- expressions and statements --------------------------------------------------------- */
typedef enum {
  /* expressions */
  A_INT, A_FLOAT, A_STR, A_BOOL, A_NAME, A_TUPLE, A_LIST,
  A_BINOP,  /* op: token spelling in `op`; a, b */
  A_UNOP,   /* "-", "+", "not"; a */
  A_CALL,   /* a = callee; list = args; names[i] = keyword or NULL; name = `as` label */
  A_INDEX,  /* a = base; list = index items (A_SLICE or expressions) */
  A_SLICE,  /* a = start or NULL, b = stop or NULL */
  A_MEMBER, /* a.name */
  /* statements */
  A_LET,    /* names/n (targets; tuple if `n > 1` or is_tuple), type, a = value */
  A_ASSIGN, /* name = a */
  A_PARAM,  /* name: type = a (initializer call) */
  A_RETURN, /* list = values */
  A_FOR,    /* name in a .. b (b NULL: iterate over the list a); body */
  A_IF,     /* a = cond, body = then block, els = else block or NULL */
  A_EXPR,   /* a */
  A_BLOCK,  /* list = statements */
} AstKind;

struct Ast {
  AstKind kind;
  SrcLoc loc;
  const char *op;
  const char *name;
  int64_t ival;
  double fval;
  const char *str;
  Ast *a, *b;
  Ast **list;
  const char **names;
  int n;
  int is_tuple;
  TypeExpr *type;
  Ast *body, *els;
};

/* ---- declarations and modules ----------------------------------------------------------- */
typedef enum { D_IMPORT, D_CONST, D_FN, D_EXTERN } DeclKind;
typedef enum { FN_FN, FN_MODEL, FN_ENTRY } FnKind;

typedef struct {
  const char *name;
  TypeExpr *type;
  Ast *def; /* default value or NULL */
  SrcLoc loc;
} AParam;

typedef struct Module Module;
typedef struct Decl {
  DeclKind kind;
  SrcLoc loc;
  const char *name;  /* fn/const/extern name; import: the module's file name */
  const char *alias; /* import: local name */
  FnKind fnkind;
  AParam *params;
  int nparams;
  TypeExpr *ret; /* may be NULL for fn */
  Ast *body;     /* A_BLOCK */
  Ast *value;    /* const */
  TypeExpr *ctype; /* const: declared type or NULL */
  const char *lib; /* extern */
  Module *mod;     /* import: the loaded module (set by the loader) */
} Decl;

struct Module {
  const char *name; /* file name without folder and .grad */
  const char *path; /* as given or joined by import (shown in messages) */
  const char *key;  /* realpath: each file is loaded once */
  int file;
  Decl **decls;
  int ndecls;
  int state; /* 0 new, 1 loading, 2 done */
  struct Binding *consts; /* evaluated top-level constants, in order (elab) */
  struct ModSym *syms;    /* top-level names: open-addressing hash, symcap slots */
  int symcap;
};

/* A top-level name of a module: its declaration and, for a constant, its value once
 * evaluated (NULL before: a constant is visible only after its declaration). */
typedef struct ModSym {
  const char *name;
  Decl *decl;
  struct Binding *val;
} ModSym;

/* The symbol `name` of m, or NULL. */
ModSym *fe_module_sym(const Module *m, const char *name);

/* Parses tokens of one file into m (decls). Returns 0, or -1 after diagnostics. */
int fe_parse(Ctx *c, Token *toks, int ntok, Module *m);
/* Prints the tree of m (`gradc dump --stage=ast`). */
void fe_print_module(const Ctx *c, const Module *m, FILE *out);
const char *fe_type_str(Ctx *c, const TypeExpr *t);

#define FE_MAX_NESTING 256

#endif
