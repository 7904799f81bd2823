/* test_frontend.c: the .grad front end (lexer, parser, elaboration to IR).
 *
 * Sources are written to a private temp folder and compiled with fe_compile, as the CLI
 * does. Tests check the resulting graphs (node ops, shapes, parameter names, outputs),
 * the diagnostics of bad programs (message and location), robustness against hostile
 * input (random bytes, deep nesting, huge literals: diagnostics, never a crash), and a
 * few numeric results through the reference interpreter (mean, softmax, sqdist, 1-D
 * matmul), so the compositions of builtins are right and not only well-shaped.
 */
#include <check.h>
#include <sys/stat.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ast.h"
#include "frontend.h"
#include "interp.h"
#include "testutil.h"

typedef struct {
  Ctx c;
  Program p;
  char *dir;
  int rc;
} Fx;

static char *fx_write(Fx *f, const char *name, const char *src, size_t len) {
  char *path = malloc(strlen(f->dir) + strlen(name) + 2);
  sprintf(path, "%s/%s", f->dir, name);
  ck_assert_int_eq(tu_write_file(path, src, len), 0);
  return path;
}

static void fx_open(Fx *f) {
  memset(f, 0, sizeof *f);
  ctx_init(&f->c);
  program_init(&f->p, &f->c);
  f->dir = tu_tmpdir();
  ck_assert_ptr_nonnull(f->dir);
}

/* Compiles `src` as main.grad (plus -D defines given as "NAME=VALUE" strings). */
static int fx_compile(Fx *f, const char *src) {
  char *path = fx_write(f, "main.grad", src, strlen(src));
  f->rc = fe_compile(&f->c, path, &f->p);
  free(path);
  return f->rc;
}

static void fx_close(Fx *f) {
  program_free(&f->p);
  ctx_free(&f->c);
  tu_rmtree(f->dir);
  free(f->dir);
}

static Fx *fx_new(const char *src) {
  Fx *f = malloc(sizeof *f);
  fx_open(f);
  fx_compile(f, src);
  return f;
}

static void fx_free(Fx *f) {
  fx_close(f);
  free(f);
}

static const char *first_msg(const Fx *f) { return f->c.ndiags ? f->c.diags[0].msg : ""; }

static void expect_ok(Fx *f) {
  ck_assert_msg(f->rc == 0, "expected success, got: %s (line %d col %d)", first_msg(f),
                f->c.ndiags ? f->c.diags[0].loc.line : 0, f->c.ndiags ? f->c.diags[0].loc.col : 0);
}

static void expect_err(Fx *f, const char *needle, int line, int col) {
  ck_assert_msg(f->rc != 0, "expected an error containing '%s'", needle);
  ck_assert_msg(strstr(first_msg(f), needle), "message '%s' lacks '%s'", first_msg(f), needle);
  if (line) ck_assert_int_eq(f->c.diags[0].loc.line, line);
  if (col) ck_assert_int_eq(f->c.diags[0].loc.col, col);
}

static int count_op(const Graph *g, Op op) {
  int n = 0;
  for (int i = 0; i < g->nnodes; i++) n += g->nodes[i].op == op;
  return n;
}

static const Shape *out_shape(const Fx *f, int entry, int out) {
  const Graph *g = f->p.entries[entry];
  return &g->nodes[g->outputs[out].val].shape;
}

static int param_index(const Program *p, const char *name) {
  for (int i = 0; i < p->nparams; i++)
    if (!strcmp(p->params[i].name, name)) return i;
  return -1;
}

/* ---- lexer -------------------------------------------------------------------------------- */
static Token *lex_str(Ctx *c, const char *src, int *n) {
  int file = ctx_add_file(c, "t.grad", src, strlen(src));
  return fe_lex(c, file, n);
}

START_TEST(lex_numbers_and_ranges) {
  Ctx c;
  ctx_init(&c);
  int n;
  Token *t = lex_str(&c, "1_000 0.5 1e-3 2. 0..4 x.y", &n);
  ck_assert_ptr_nonnull(t);
  ck_assert_int_eq(t[0].kind, TK_INT);
  ck_assert_int_eq(t[0].ival, 1000);
  ck_assert_int_eq(t[1].kind, TK_FLOAT);
  ck_assert_double_eq(t[1].fval, 0.5);
  ck_assert_double_eq_tol(t[2].fval, 1e-3, 1e-15);
  ck_assert_int_eq(t[3].kind, TK_FLOAT);
  ck_assert_double_eq(t[3].fval, 2.0);
  ck_assert_int_eq(t[4].kind, TK_INT); /* 0..4 is 0 .. 4, not 0. .4 */
  ck_assert_str_eq(t[5].s, "..");
  ck_assert_int_eq(t[6].ival, 4);
  ck_assert_str_eq(t[8].s, ".");
  ck_assert_int_eq(t[8].loc.col, 25);
  ctx_free(&c);
}
END_TEST

START_TEST(lex_newlines_and_strings) {
  Ctx c;
  ctx_init(&c);
  int n;
  /* newline inside ( ) and after '+' is not a statement end; escapes decode */
  Token *t = lex_str(&c, "f(a,\n b) +\n c\n\n\"x\\\"y\\n\" # comment\n", &n);
  ck_assert_ptr_nonnull(t);
  int newlines = 0;
  for (int i = 0; i < n; i++) newlines += t[i].kind == TK_NEWLINE;
  ck_assert_int_eq(newlines, 2);
  ck_assert_int_eq(t[n - 3].kind, TK_STR);
  ck_assert_str_eq(t[n - 3].str, "x\"y\n");
  ck_assert_int_eq(t[n - 3].loc.line, 5);
  ctx_free(&c);
}
END_TEST

START_TEST(lex_errors) {
  static const struct { const char *src; const char *msg; int col; } cases[] = {
      {"x = 99999999999999999999", "integer literal out of range", 5},
      {"x = 9223372036854775807", NULL, 0},
      {"x = 1e400", "float literal out of range", 5},
      {"x = \"abc", "unterminated string", 5},
      {"x = 3$", "unexpected character '$'", 6},
      {"x = 12ab", "invalid number literal", 5},
      {"x = .5", "invalid number literal", 5},
      {"# \xff\n", "invalid UTF-8", 3},
      {"x = \xc3\xa9", "unexpected character", 5},
  };
  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
    Ctx c;
    ctx_init(&c);
    int n;
    Token *t = lex_str(&c, cases[i].src, &n);
    if (!cases[i].msg) {
      ck_assert_ptr_nonnull(t);
    } else {
      ck_assert_msg(!t && c.ndiags == 1, "case %zu should fail", i);
      ck_assert_msg(strstr(c.diags[0].msg, cases[i].msg), "case %zu: %s", i, c.diags[0].msg);
      ck_assert_int_eq(c.diags[0].loc.col, cases[i].col);
    }
    ctx_free(&c);
  }
}
END_TEST

START_TEST(lex_nul_byte) {
  Ctx c;
  ctx_init(&c);
  int file = ctx_add_file(&c, "t.grad", "a\0b", 3);
  int n;
  ck_assert_ptr_null(fe_lex(&c, file, &n));
  ck_assert_ptr_nonnull(strstr(c.diags[0].msg, "control character"));
  ctx_free(&c);
}
END_TEST

/* ---- parser --------------------------------------------------------------------------------- */
START_TEST(parse_every_construct) {
  const char *src =
      "import helper as h\n"
      "const N: int = 4\n"
      "const S = \"s\"; const F = 1.5\n"
      "extern \"libm.so.6\" fn erf(x: f64) -> f64\n"
      "fn f(x: f32[N, D], k: float = 2.0, g: fn = silu) -> (a: f32[N, D], b: f32) {\n"
      "  let y: f32[N, D] = -x ** 2 * k\n"
      "  let (p, q) = (y, y)\n"
      "  y = p @ transpose(q) @ q\n"
      "  param w: f32[D] = normal(0.02)\n"
      "  for i in 0..3 { y = y + i }\n"
      "  for v in [1, 2] { y = y * v }\n"
      "  if N > 2 and not false { y = y } else if N == 1 { y = -y } else { y = y }\n"
      "  h.thing(y, axis = -1) as named\n"
      "  return y[1:, :][0:2, 0], sum(y)\n"
      "}\n"
      "model m(x: f32) -> f32 { return x }\n"
      "entry e(x: f32[4, 2]) -> f32 { return 1 }\n";
  Ctx c;
  ctx_init(&c);
  int file = ctx_add_file(&c, "t.grad", src, strlen(src));
  int n;
  Token *t = fe_lex(&c, file, &n);
  ck_assert_ptr_nonnull(t);
  Module m = {0};
  m.name = "t";
  m.path = "t.grad";
  ck_assert_msg(fe_parse(&c, t, n, &m) == 0, "%s", c.ndiags ? c.diags[0].msg : "");
  ck_assert_int_eq(m.ndecls, 8);
  ck_assert_int_eq(m.decls[0]->kind, D_IMPORT);
  ck_assert_str_eq(m.decls[0]->alias, "h");
  ck_assert_int_eq(m.decls[4]->kind, D_EXTERN);
  Decl *f = m.decls[5];
  ck_assert_int_eq(f->kind, D_FN);
  ck_assert_int_eq(f->nparams, 3);
  ck_assert_ptr_nonnull(f->params[1].def);
  ck_assert_int_eq(f->ret->kind, TY_TUPLE);
  ck_assert_str_eq(f->ret->names[0], "a");
  ck_assert_int_eq(f->body->n, 9);
  Ast *let = f->body->list[0];
  ck_assert_int_eq(let->kind, A_LET);
  /* -x ** 2 * k parses as (-(x ** 2)) * k */
  ck_assert_str_eq(let->a->op, "*");
  ck_assert_str_eq(let->a->a->op, "-");
  ck_assert_str_eq(let->a->a->a->op, "**");
  ck_assert_int_eq(f->body->list[1]->is_tuple, 1);
  ck_assert_int_eq(f->body->list[4]->kind, A_FOR);
  ck_assert_ptr_nonnull(f->body->list[4]->b);
  ck_assert_ptr_null(f->body->list[5]->b);
  ck_assert_ptr_nonnull(f->body->list[6]->els);
  Ast *call = f->body->list[7]->a;
  ck_assert_int_eq(call->kind, A_CALL);
  ck_assert_str_eq(call->name, "named");
  ck_assert_str_eq(call->names[1], "axis");
  ck_assert_int_eq(f->body->list[8]->n, 2);
  ck_assert_int_eq(m.decls[6]->fnkind, FN_MODEL);
  ck_assert_int_eq(m.decls[7]->fnkind, FN_ENTRY);
  ctx_free(&c);
}
END_TEST

START_TEST(parse_errors_recover) {
  /* two broken declarations: both reported, the valid third one parsed */
  Fx *f = fx_new("fn a(x: f32) -> f32 { return x + }\n"
                 "fn b(x: f32) -> f32 { return (x }\n"
                 "entry ok(x: f32) -> f32 { return x }\n");
  ck_assert_int_eq(f->c.ndiags, 2);
  ck_assert_int_eq(f->c.diags[0].loc.line, 1);
  ck_assert_int_eq(f->c.diags[1].loc.line, 2);
  fx_free(f);
}
END_TEST

START_TEST(parse_errors_per_statement) {
  /* three broken statements in one body, an unclosed '(' that must not swallow the next
   * function's newlines, then a valid entry: four errors, nothing else */
  Fx *f = fx_new("fn a(x: f32) -> f32 {\n"
                 "  let y = x +\n"
                 "  let z = (x * 2\n"
                 "  return x $ 1\n"
                 "}\n"
                 "fn b(x: f32) -> f32 {\n"
                 "  let y = exp(x\n"
                 "}\n"
                 "fn c(x: f32) -> f32 {\n"
                 "  let y = x\n"
                 "  return y\n"
                 "}\n");
  ck_assert_int_eq(f->c.ndiags, 1); /* the lexer stops at '$' */
  fx_free(f);
  f = fx_new("fn a(x: f32) -> f32 {\n"
             "  let y = x + )\n"
             "  let = 3\n"
             "  for i in { }\n"
             "  return x\n"
             "}\n"
             "fn b(x: f32) -> f32 {\n"
             "  let y = exp(x\n"
             "}\n"
             "fn c(x: f32) -> f32 {\n"
             "  let y = x\n"
             "  return y\n"
             "}\n");
  ck_assert_int_eq(f->c.ndiags, 4);
  static const int lines[] = {2, 3, 4, 9};
  for (int i = 0; i < 4; i++) ck_assert_int_eq(f->c.diags[i].loc.line, lines[i]);
  fx_free(f);
}
END_TEST

START_TEST(dump_ast_prints_tree) {
  Fx *f = fx_new("");
  char *path = fx_write(f, "d.grad", "const A = 1 + 2\n", 16);
  char *buf = NULL;
  size_t len = 0;
  FILE *out = open_memstream(&buf, &len);
  ck_assert_int_eq(fe_dump_ast(&f->c, path, out), 0);
  fclose(out);
  ck_assert_ptr_nonnull(strstr(buf, "const A"));
  ck_assert_ptr_nonnull(strstr(buf, "binop +"));
  free(buf);
  free(path);
  fx_free(f);
}
END_TEST

/* ---- elaboration ----------------------------------------------------------------------------- */
static const char *doc_example =
    "const D = 2\n"
    "const B = 8\n"
    "fn linear(x: f32[N, I], out: int) -> f32[N, out] {\n"
    "  param w: f32[I, out] = glorot()\n"
    "  param b: f32[out] = zeros()\n"
    "  return x @ w + b\n"
    "}\n"
    "model net(x: f32[N, D], hidden: int = 16) -> f32[N, D] {\n"
    "  let h = x\n"
    "  for i in 0..2 {\n"
    "    h = silu(linear(h, hidden))\n"
    "  }\n"
    "  return linear(h, D)\n"
    "}\n"
    "entry loss(x: f32[B, D]) -> f32 {\n"
    "  let y = net(x)\n"
    "  return mean((y - x) ** 2)\n"
    "}\n"
    "entry twice(x: f32[B, D]) -> (a: f32[B, D], b: f32[B, D]) {\n"
    "  return net(x), net(net(x))\n"
    "}\n";

START_TEST(elab_doc_example) {
  Fx *f = fx_new(doc_example);
  expect_ok(f);
  ck_assert_int_eq(f->p.nentries, 2);
  const Graph *g = f->p.entries[0];
  ck_assert_int_eq(g->ninputs, 1);
  ck_assert_int_eq(count_op(g, OP_MATMUL), 3);
  ck_assert_int_eq(count_op(g, OP_SILU), 2);
  ck_assert_int_eq(g->noutputs, 1);
  ck_assert_str_eq(g->outputs[0].name, "out");
  ck_assert_int_eq(out_shape(f, 0, 0)->rank, 0);
  /* one set of weights: loss calls net once, twice calls it three times */
  ck_assert_int_eq(f->p.nparams, 6);
  ck_assert_int_ge(param_index(&f->p, "net.linear.w"), 0);
  ck_assert_int_ge(param_index(&f->p, "net.linear_1.b"), 0);
  int w2 = param_index(&f->p, "net.linear_2.w");
  ck_assert_int_ge(w2, 0);
  ck_assert_int_eq(f->p.params[w2].shape.dims[0], 16);
  ck_assert_int_eq(f->p.params[w2].shape.dims[1], 2);
  ck_assert_int_eq(f->p.params[w2].init.kind, INIT_GLOROT);
  ck_assert_int_eq(f->p.params[w2].init.fan_in, 16);
  const Graph *t = f->p.entries[1];
  ck_assert_int_eq(t->noutputs, 2);
  ck_assert_str_eq(t->outputs[1].name, "b");
  ck_assert_int_eq(count_op(t, OP_MATMUL), 9);
  ck_assert_int_eq(count_op(t, OP_PARAM), 18);
  /* consts exported */
  ck_assert_int_eq(f->p.nconsts, 2);
  ck_assert_str_eq(f->p.consts[1].name, "B");
  ck_assert_double_eq(f->p.consts[1].num, 8);
  char buf[256];
  for (int i = 0; i < f->p.nentries; i++) ck_assert_int_eq(ir_verify(f->p.entries[i], &f->p, buf, sizeof buf), 0);
  fx_free(f);
}
END_TEST

START_TEST(elab_param_paths) {
  Fx *f = fx_new("fn lin(x: f32[N, I], o: int) -> f32[N, o] {\n"
                 "  param w: f32[I, o] = normal(0.5)\n"
                 "  return x @ w\n"
                 "}\n"
                 "fn block(x: f32[N, I]) -> f32[N, I] { return lin(lin(x, 3), I) }\n"
                 "entry e(x: f32[2, 4]) -> f32[2, 4] {\n"
                 "  param top: f32[4] = constant(0.25)\n"
                 "  let y = block(x) + block(x) + lin(x, 4) as head\n"
                 "  return y * top\n"
                 "}\n");
  expect_ok(f);
  static const char *const names[] = {"top", "block.lin.w", "block.lin_1.w", "block_1.lin.w",
                                      "block_1.lin_1.w", "head.w"};
  ck_assert_int_eq(f->p.nparams, 6);
  for (int i = 0; i < 6; i++) ck_assert_msg(param_index(&f->p, names[i]) >= 0, "no %s", names[i]);
  int top = param_index(&f->p, "top");
  ck_assert_int_eq(f->p.params[top].init.kind, INIT_CONST);
  ck_assert_double_eq(f->p.params[top].init.a, 0.25);
  ck_assert_double_eq(f->p.params[param_index(&f->p, "head.w")].init.a, 0.5);
  fx_free(f);
}
END_TEST

START_TEST(elab_model_shared_across_entries) {
  Fx *f = fx_new("model net(x: f32[N, 2]) -> f32[N, 2] {\n"
                 "  param w: f32[2, 2] = he()\n"
                 "  return x @ w\n"
                 "}\n"
                 "fn twice(x: f32[N, 2]) -> f32[N, 2] { return net(net(x)) }\n"
                 "entry a(x: f32[4, 2]) -> f32[4, 2] { return twice(x) }\n"
                 "entry b(x: f32[3, 2]) -> f32[3, 2] { return net(x) }\n");
  expect_ok(f);
  ck_assert_int_eq(f->p.nparams, 1);
  ck_assert_str_eq(f->p.params[0].name, "net.w");
  ck_assert_int_eq(count_op(f->p.entries[0], OP_PARAM), 2);
  fx_free(f);
}
END_TEST

START_TEST(elab_broadcast_and_weak_typing) {
  Fx *f = fx_new("entry e(x: f64[3, 1], y: f64[4]) -> f64[3, 4] { return x * 2 + y }\n"
                 "entry i(k: i32[5]) -> i32[5] { return k * 3 // 2 }\n"
                 "entry w(x: f64[3]) -> f64[3] { return where(x > 0, 1, 0) + clamp(x, 0, 1) }\n");
  expect_ok(f);
  const Graph *g = f->p.entries[0];
  ck_assert_int_eq(out_shape(f, 0, 0)->dims[0], 3);
  ck_assert_int_eq(out_shape(f, 0, 0)->dims[1], 4);
  for (int i = 0; i < g->nnodes; i++) ck_assert_int_eq(g->nodes[i].dtype, DT_F64);
  ck_assert_int_eq(count_op(g, OP_BROADCAST), 2);
  const Graph *h = f->p.entries[1];
  ck_assert_int_eq(h->nodes[h->outputs[0].val].dtype, DT_I32);
  ck_assert_int_eq(count_op(h, OP_FLOOR), 0); /* integer // is DIV on ints */
  fx_free(f);
  f = fx_new("entry e(a: f32[16, 2], b: f32[16, 3]) -> f32[16, 2] {\n  return a + b\n}\n");
  expect_err(f, "shapes [16, 2] and [16, 3] cannot broadcast in '+'", 2, 12);
  fx_free(f);
}
END_TEST

START_TEST(elab_matmul_shapes) {
  static const struct { const char *a, *b; int rank; int64_t d[4]; } cases[] = {
      {"[3, 4]", "[4, 5]", 2, {3, 5}},    {"[4]", "[4, 5]", 1, {5}},
      {"[3, 4]", "[4]", 1, {3}},          {"[4]", "[4]", 0, {0}},
      {"[2, 3, 4]", "[4, 5]", 3, {2, 3, 5}}, {"[2, 1, 3, 4]", "[5, 4, 2]", 4, {2, 5, 3, 2}},
  };
  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
    char src[256];
    snprintf(src, sizeof src, "entry e(a: f32%s, b: f32%s) -> f32 { return sum(a @ b) }\n"
             "fn r(a: f32[N], b: f32[N]) -> f32 { return a @ b }\n", cases[i].a, cases[i].b);
    Fx *f = fx_new(src);
    expect_ok(f);
    const Graph *g = f->p.entries[0];
    int mm = -1; /* the product, after the squeeze of a promoted 1-D operand */
    for (int k = 0; k < g->nnodes; k++)
      if (g->nodes[k].op == OP_MATMUL) mm = k;
    if (mm >= 0 && mm + 1 < g->nnodes && g->nodes[mm + 1].op == OP_RESHAPE && g->nodes[mm + 1].in[0] == mm)
      mm++;
    ck_assert_int_ge(mm, 0);
    ck_assert_msg(g->nodes[mm].shape.rank == cases[i].rank, "case %zu rank %d", i,
                  g->nodes[mm].shape.rank);
    for (int k = 0; k < cases[i].rank; k++) ck_assert_int_eq(g->nodes[mm].shape.dims[k], cases[i].d[k]);
    fx_free(f);
  }
  Fx *f = fx_new("entry e(a: f32[3, 4], b: f32[5, 6]) -> f32[3, 6] {\n  return a @ b\n}\n");
  expect_err(f, "cannot multiply [3, 4] by [5, 6]", 2, 12);
  fx_free(f);
}
END_TEST

START_TEST(elab_defaults_use_size_vars) {
  Fx *f = fx_new("fn f(x: f32[N, D], k: int = D * 2, n: int = 3, y: f32[n] = zeros([n])) -> f32[N, k] {\n"
                 "  return broadcast(sum(x, axis=1, keepdims=true), [N, k]) + sum(y)\n"
                 "}\n"
                 "entry e(x: f32[4, 3]) -> (f32[4, 6], f32[4, 2]) { return f(x), f(x, k=2, n=5) }\n");
  expect_ok(f);
  ck_assert_int_eq(out_shape(f, 0, 0)->dims[1], 6);
  ck_assert_int_eq(out_shape(f, 0, 1)->dims[1], 2);
  fx_free(f);
}
END_TEST

START_TEST(elab_compile_time_folding) {
  Fx *f = fx_new("const A = max(3, 4)\nconst B = min([5, 2, 9])\nconst C = sum([1, 2, 3])\n"
                 "const D = abs(-3) + clamp(7, 0, 5) + floor(2.7)\nconst E = 7 // 2 + -7 % 3\n"
                 "const F = 3 / 2\nconst G = 2 ** 10\nconst H = len([1, 2] + [3])\n"
                 "const S = \"a\" + \"b\"\nconst T = sqrt(16.0) == 4 and not (1 > 2)\n");
  expect_ok(f);
  static const double want[] = {4, 2, 6, 10, 3 + 2, 1.5, 1024, 3};
  for (int i = 0; i < 8; i++) ck_assert_msg(f->p.consts[i].num == want[i], "const %s = %g", f->p.consts[i].name, f->p.consts[i].num);
  ck_assert_str_eq(f->p.consts[8].str, "ab");
  ck_assert_double_eq(f->p.consts[9].num, 1);
  fx_free(f);
}
END_TEST

START_TEST(elab_slicing_and_shapes) {
  Fx *f = fx_new("entry e(x: f32[8, 6, 4]) -> (a: f32[6, 2], b: f32[2, 3], c: f32[4, 48], d: f32[4, 6, 8], n: f32[5]) {\n"
                 "  let a = x[-1, :, 1:3]\n"
                 "  let b = x[2:4, 3, -3:]\n"
                 "  let c = reshape(transpose(x, [2, 0, 1]), [4, -1])\n"
                 "  let d = transpose(x, [2, 1, 0])\n"
                 "  return a, b, c, d, zeros([dim(x, 0) - 3])\n"
                 "}\n");
  expect_ok(f);
  ck_assert_int_eq(out_shape(f, 0, 0)->dims[1], 2);
  ck_assert_int_eq(out_shape(f, 0, 1)->dims[0], 2);
  ck_assert_int_eq(out_shape(f, 0, 1)->dims[1], 3);
  ck_assert_int_eq(out_shape(f, 0, 2)->dims[1], 48);
  ck_assert_int_eq(count_op(f->p.entries[0], OP_SLICE), 5);
  fx_free(f);
  f = fx_new("entry e(x: f32[8, 3]) -> f32[8, 2] {\n  return x[:, 2:4]\n}\n");
  expect_err(f, "slice [2:4] out of range for axis 1 of size 3", 2, 15);
  fx_free(f);
}
END_TEST

START_TEST(elab_defines) {
  Fx f;
  fx_open(&f);
  Define defs[] = {{"B", "3"}, {"lr", "0.5"}, {"name", "moons"}, {"flag", "false"}};
  f.c.defines = malloc(sizeof defs);
  memcpy(f.c.defines, defs, sizeof defs);
  f.c.ndefines = 4;
  fx_compile(&f, "const B = 1024\nconst lr: float = 1\nconst name = \"x\"\nconst flag = true\n"
                 "entry e(x: f32[B]) -> f32[B] { if flag { return -x } return x * lr }\n");
  expect_ok(&f);
  ck_assert_int_eq(f.p.entries[0]->inputs[0].shape.dims[0], 3);
  ck_assert_int_eq(count_op(f.p.entries[0], OP_NEG), 0);
  ck_assert_double_eq(f.p.consts[1].num, 0.5);
  ck_assert_int_eq(f.p.consts[2].is_str, 1);
  ck_assert_str_eq(f.p.consts[2].str, "moons");
  fx_close(&f);
  fx_open(&f);
  Define bad[] = {{"BB", "3"}};
  f.c.defines = malloc(sizeof bad);
  memcpy(f.c.defines, bad, sizeof bad);
  f.c.ndefines = 1;
  fx_compile(&f, "const B = 1024\n");
  expect_err(&f, "unknown constant 'BB'", 0, 0);
  ck_assert_str_eq(f.c.diags[0].hint, "did you mean `B`?");
  fx_close(&f);
}
END_TEST

START_TEST(elab_imports) {
  Fx f;
  fx_open(&f);
  char *sub = malloc(strlen(f.dir) + 8);
  sprintf(sub, "%s/lib", f.dir);
  ck_assert_int_eq(mkdir(sub, 0700), 0);
  char *h = malloc(strlen(sub) + 16);
  sprintf(h, "%s/helper.grad", sub);
  const char *hs = "import shared\nconst K = shared.K * 2\nfn scale(x: f32[N]) -> f32[N] { return x * K }\n";
  ck_assert_int_eq(tu_write_file(h, hs, strlen(hs)), 0);
  sprintf(h, "%s/shared.grad", sub);
  ck_assert_int_eq(tu_write_file(h, "const K = 3\n", 12), 0);
  f.c.incdirs = malloc(sizeof *f.c.incdirs);
  f.c.incdirs[0] = sub;
  f.c.nincdirs = 1;
  fx_compile(&f, "import helper as hp\nimport shared\n"
                 "entry e(x: f32[shared.K]) -> f32[3] { return hp.scale(x) + hp.K }\n");
  expect_ok(&f);
  ck_assert_int_eq(f.c.nfiles, 3); /* shared.grad parsed once */
  ck_assert_int_eq(f.p.nconsts, 0);
  fx_close(&f);
  fx_open(&f);
  fx_compile(&f, "import nothere\n");
  expect_err(&f, "cannot find module 'nothere'", 1, 8);
  ck_assert_ptr_nonnull(strstr(f.c.diags[0].hint, "nothere.grad"));
  fx_close(&f);
  fx_open(&f);
  free(fx_write(&f, "a.grad", "import b\n", 9));
  free(fx_write(&f, "b.grad", "import a\n", 9));
  fx_compile(&f, "import a\n");
  expect_err(&f, "cyclic import: a -> b -> a", 1, 8);
  fx_close(&f);
  free(sub);
  free(h);
}
END_TEST

START_TEST(elab_errors) {
  static const struct { const char *src, *msg, *hint; int line, col; } cases[] = {
      {"entry e(x: f32) -> f32 {\n  return silu(sulu(x))\n}\n", "unknown name 'sulu'",
       "did you mean `silu`?", 2, 15},
      {"fn f(x: f32) -> f32 { return f(x) }\nentry e(x: f32) -> f32 { return f(x) }\n",
       "recursion is not supported", "call chain: e -> f -> f", 1, 30},
      {"entry e(x: f32[2]) -> f32[2] {\n  if x[0] > 0 { return x }\n  return x\n}\n",
       "`if` needs a compile-time condition", "use where(c, a, b)", 2, 11},
      {"fn f(x: f32, k: int) -> f32 { return x }\nentry e(x: f32) -> f32 { return f(x, j = 1) }\n",
       "'f' has no parameter named 'j'", "signature: f(x: f32, k: int) -> f32", 2, 33},
      {"fn f(x: f32[N], y: f32[N]) -> f32[N] { return x }\n"
       "entry e(x: f32[2], y: f32[3]) -> f32[2] { return f(x, y) }\n",
       "argument 'y' of 'f' must be f32[N], got f32[3]", "N = 2 in this call", 2, 55},
      {"entry e(x: f32[2]) -> f32[3] {\n  return x\n}\n", "the result of 'e' must be f32[3]", NULL, 2, 3},
      {"entry e(x: f32) -> f32 {\n  let y = x\n  for i in 0..10000000 { y = y + 1 }\n  return y\n}\n",
       "program too large", NULL, 3, 3},
  };
  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
    Fx *f = fx_new(cases[i].src);
    expect_err(f, cases[i].msg, cases[i].line, cases[i].col);
    if (cases[i].hint) {
      ck_assert_ptr_nonnull(f->c.diags[0].hint);
      ck_assert_msg(strstr(f->c.diags[0].hint, cases[i].hint), "case %zu hint: %s", i,
                    f->c.diags[0].hint);
    }
    fx_free(f);
  }
}
END_TEST

START_TEST(resolve_uncalled_functions) {
  /* a typo in a function no entry calls, and one in a branch not taken: both found; a
   * correct program with every scoping form gives nothing */
  Fx *f = fx_new("fn unused(x: f32[N]) -> f32[N] { return tanhh(x) }\n"
                 "fn g(x: f32[N], k: int = 0) -> f32[N] {\n"
                 "  if k == 1 { return x * scael }\n"
                 "  return x\n"
                 "}\n"
                 "entry e(x: f32[3]) -> f32[3] { return g(x) }\n");
  ck_assert_int_eq(f->c.ndiags, 2);
  expect_err(f, "unknown name 'tanhh'", 1, 41);
  ck_assert_str_eq(f->c.diags[1].msg, "unknown name 'scael'");
  fx_free(f);
  f = fx_new("const C = 2\n"
             "fn h(x: f32[N, D], w: int = D * C, sz: list = [N]) -> f32[N, D] {\n"
             "  let (a, b) = (x, x)\n"
             "  param p: f32[D] = normal(0.1 * C)\n"
             "  let acc = a\n"
             "  for i in 0..2 { let t = acc * i; acc = t + p }\n"
             "  for v in sz { acc = acc + v + w }\n"
             "  if N > 1 { let q = b; acc = acc + q } else { acc = acc - b }\n"
             "  return acc + pi + dim(x, 0) + len(sz) + cast(arange(D, dtype=i32), f32)\n"
             "}\n"
             "entry e(x: f32[3, 2]) -> f32[3, 2] { return h(x) }\n");
  expect_ok(f);
  fx_free(f);
}
END_TEST

START_TEST(elab_several_errors) {
  Fx *f = fx_new("entry a(x: f32[4]) -> f32[4] { return x + y }\n"
                 "entry b(x: f32[4], z: f32[5]) -> f32[4] { return x * z }\n"
                 "entry c(x: f32[4]) -> f32[4] { return tanhh(x) }\n");
  ck_assert_int_eq(f->c.ndiags, 3);
  fx_free(f);
}
END_TEST

START_TEST(elab_promote_f64_and_extern) {
  Fx f;
  fx_open(&f);
  f.c.promote_f64 = 1;
  fx_compile(&f, "extern \"libm.so.6\" fn erf(x: f64) -> f64\n"
                 "entry e(x: f32[3]) -> f32[3] {\n"
                 "  param w: f32[3] = uniform(-1, 1)\n"
                 "  return x * w + erf(x) + zeros([3])\n"
                 "}\n");
  expect_ok(&f);
  const Graph *g = f.p.entries[0];
  ck_assert_int_eq(g->inputs[0].dtype, DT_F64);
  ck_assert_int_eq(f.p.params[0].dtype, DT_F64);
  ck_assert_double_eq(f.p.params[0].init.b, 1);
  ck_assert_int_eq(f.p.nexterns, 1);
  ck_assert_str_eq(f.p.externs[0].lib, "libm.so.6");
  ck_assert_int_eq(count_op(g, OP_EXTERN), 1);
  fx_close(&f);
}
END_TEST

START_TEST(elab_grad_and_jvp) {
  Fx *f = fx_new("fn sq(a: f32[N]) -> f32[N] { return a * a }\n"
                 "entry e(x: f32[3], v: f32[3]) -> (g: f32[3], y: f32[3], t: f32[3], u: f32[3]) {\n"
                 "  let g = grad(sum(x * x), x)\n"
                 "  let (y, t) = jvp(sq, (x,), (v,))\n"
                 "  return g, y, t, jvp(x * x, x, v)\n"
                 "}\n");
  expect_ok(f);
  ck_assert_int_eq(f->p.entries[0]->noutputs, 4);
  fx_free(f);
}
END_TEST

/* ---- numeric checks through the interpreter -------------------------------------------------- */
static void run1(Fx *f, int entry, const double *in0, const double *in1, double *out, int64_t nout) {
  const Graph *g = f->p.entries[entry];
  GrTensor ins[2];
  const double *vals[2] = {in0, in1};
  for (int i = 0; i < g->ninputs; i++) ins[i] = tu_tensor_vals(g->inputs[i].dtype, g->inputs[i].shape, vals[i]);
  GrTensor o;
  char err[256];
  ck_assert_msg(interp_run(g, &f->p, ins, NULL, &o, 1, 0, err, sizeof err) == 0, "%s", err);
  ck_assert_int_eq(tu_numel(&o), nout);
  for (int64_t i = 0; i < nout; i++) out[i] = tu_get(&o, i);
  gr_tensor_free(&o);
  for (int i = 0; i < g->ninputs; i++) gr_tensor_free(&ins[i]);
}

START_TEST(numeric_builtins) {
  Fx *f = fx_new("entry m(x: f64[2, 3]) -> f64[2] { return mean(x, axis=-1) }\n"
                 "entry s(x: f64[2, 3]) -> f64[2, 3] { return softmax(x) }\n"
                 "entry d(x: f64[2, 3], y: f64[2, 3]) -> f64[2, 2] { return sqdist(x, y) }\n"
                 "entry v(x: f64[2, 3], y: f64[2, 3]) -> f64[2] { return x @ y[0] }\n"
                 "entry l(x: f64[2, 3]) -> f64 { return logsumexp(x) }\n");
  expect_ok(f);
  double x[6] = {1, 2, 3, 4, 5, 9}, y[6] = {0, 1, 0, 2, 2, 2}, o[6];
  run1(f, 0, x, NULL, o, 2);
  ck_assert_double_eq_tol(o[0], 2, 1e-12);
  ck_assert_double_eq_tol(o[1], 6, 1e-12);
  run1(f, 1, x, NULL, o, 6);
  double z = exp(1) + exp(2) + exp(3);
  ck_assert_double_eq_tol(o[2], exp(3) / z, 1e-12);
  run1(f, 2, x, y, o, 4);
  ck_assert_double_eq_tol(o[0], 1 + 1 + 9, 1e-12);  /* |[1,2,3]-[0,1,0]|^2 */
  ck_assert_double_eq_tol(o[1], 1 + 0 + 1, 1e-12);  /* |[1,2,3]-[2,2,2]|^2 */
  run1(f, 3, x, y, o, 2);
  ck_assert_double_eq_tol(o[0], 2, 1e-12);
  ck_assert_double_eq_tol(o[1], 5, 1e-12);
  run1(f, 4, x, NULL, o, 1);
  double s = 0;
  for (int i = 0; i < 6; i++) s += exp(x[i]);
  ck_assert_double_eq_tol(o[0], log(s), 1e-12);
  fx_free(f);
}
END_TEST

/* ---- robustness ---------------------------------------------------------------------------------- */
static int compile_bytes(const char *bytes, size_t len) {
  Fx f;
  fx_open(&f);
  char *path = fx_write(&f, "junk.grad", bytes, len);
  int rc = fe_compile(&f.c, path, &f.p);
  int nd = f.c.ndiags;
  free(path);
  fx_close(&f);
  return rc ? nd : -1; /* a failure must come with a diagnostic */
}

START_TEST(robust_random_bytes) {
  uint64_t s = 0x9E3779B97F4A7C15ull;
  char buf[2048];
  static const char alphabet[] = "fn entry model let param return for in if else ()[]{},:;=+-*/@<>.#\"\n 0123456789xyzN_";
  for (int round = 0; round < 300; round++) {
    size_t len = (size_t)(round * 7 % (int)sizeof buf);
    for (size_t i = 0; i < len; i++) {
      s ^= s << 13, s ^= s >> 7, s ^= s << 17;
      buf[i] = round % 2 ? (char)(s & 0xff) : alphabet[s % (sizeof alphabet - 1)];
    }
    int r = compile_bytes(buf, len);
    ck_assert_msg(r != 0, "round %d: failure without a diagnostic", round);
  }
}
END_TEST

START_TEST(robust_edge_inputs) {
  ck_assert_int_eq(compile_bytes("", 0), -1); /* empty file: valid, no entries */
  size_t n = 1 << 20;
  char *deep = malloc(n);
  memset(deep, '(', n);
  memcpy(deep, "const A = ", 10);
  ck_assert_int_ge(compile_bytes(deep, n), 1);
  memset(deep, '[', n);
  memcpy(deep, "const A = ", 10);
  ck_assert_int_ge(compile_bytes(deep, n), 1);
  memset(deep, '-', n);
  memcpy(deep, "const A = ", 10);
  ck_assert_int_ge(compile_bytes(deep, n), 1);
  memset(deep, '9', n);
  memcpy(deep, "const A = ", 10);
  ck_assert_int_ge(compile_bytes(deep, n), 1);
  free(deep);
  ck_assert_int_ge(compile_bytes("const A = \"abc", 14), 1);
  ck_assert_int_ge(compile_bytes("entry e(", 8), 1);
}
END_TEST

/* Big flat programs stay linear: 50k constants (symbol table), 1001 lets in one body (an
 * error, lookups in a body are linear), loop bodies whose names are recycled. */
START_TEST(robust_big_programs) {
  size_t cap = 2 << 20, n = 0;
  char *src = malloc(cap);
  for (int i = 0; i < 50000; i++) n += (size_t)snprintf(src + n, cap - n, "const c%d = %d\n", i, i);
  n += (size_t)snprintf(src + n, cap - n, "entry e(x: f32[c49999 - 49997]) -> f32[2] { return x }\n");
  Fx *f = fx_new(src);
  expect_ok(f);
  ck_assert_int_eq(f->p.nconsts, 50000);
  fx_free(f);
  n = (size_t)snprintf(src, cap, "entry e(x: f32) -> f32 {\n");
  for (int i = 0; i < 1001; i++) n += (size_t)snprintf(src + n, cap - n, "  let y%d = x\n", i);
  snprintf(src + n, cap - n, "  return x\n}\n");
  f = fx_new(src);
  expect_err(f, "too many names in one body", 1001, 3);
  ck_assert_int_eq(f->c.ndiags, 1);
  fx_free(f);
  f = fx_new("entry e(x: f32) -> f32 {\n  let y = x\n"
             "  for i in 0..20000 { let a = y; let b = a * 1; y = b }\n  return y\n}\n");
  expect_ok(f);
  fx_free(f);
  free(src);
}
END_TEST

static Suite *suite(void) {
  Suite *s = suite_create("frontend");
  TCase *t = tcase_create("lex+parse");
  tcase_add_test(t, lex_numbers_and_ranges);
  tcase_add_test(t, lex_newlines_and_strings);
  tcase_add_test(t, lex_errors);
  tcase_add_test(t, lex_nul_byte);
  tcase_add_test(t, parse_every_construct);
  tcase_add_test(t, parse_errors_recover);
  tcase_add_test(t, parse_errors_per_statement);
  tcase_add_test(t, dump_ast_prints_tree);
  suite_add_tcase(s, t);
  t = tcase_create("elab");
  tcase_add_test(t, elab_doc_example);
  tcase_add_test(t, elab_param_paths);
  tcase_add_test(t, elab_model_shared_across_entries);
  tcase_add_test(t, elab_broadcast_and_weak_typing);
  tcase_add_test(t, elab_matmul_shapes);
  tcase_add_test(t, elab_slicing_and_shapes);
  tcase_add_test(t, elab_defaults_use_size_vars);
  tcase_add_test(t, elab_compile_time_folding);
  tcase_add_test(t, elab_defines);
  tcase_add_test(t, elab_imports);
  tcase_add_test(t, elab_errors);
  tcase_add_test(t, elab_several_errors);
  tcase_add_test(t, resolve_uncalled_functions);
  tcase_add_test(t, elab_promote_f64_and_extern);
  tcase_add_test(t, elab_grad_and_jvp);
  tcase_add_test(t, numeric_builtins);
  suite_add_tcase(s, t);
  t = tcase_create("robust");
  tcase_set_timeout(t, 30);
  tcase_add_test(t, robust_random_bytes);
  tcase_add_test(t, robust_edge_inputs);
  tcase_add_test(t, robust_big_programs);
  suite_add_tcase(s, t);
  return s;
}

int main(void) {
  SRunner *sr = srunner_create(suite());
  srunner_run_all(sr, CK_NORMAL);
  int failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  return failed ? 1 : 0;
}
