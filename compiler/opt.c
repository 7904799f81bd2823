/* opt.c: the graph passes that run between autodiff and scheduling.
 *
 * Every pass rebuilds the graph: it walks the old nodes in order, decides for each one
 * the value it becomes in the new graph (map[old] = new id), and emits nodes with
 * ir_emit(), which re-infers and re-checks every shape. A pass therefore cannot produce
 * an ill-typed graph without tripping ir_must(), and the old graph stays valid for the
 * caller (tests compare before/after). Passes never look at gradients: they run after
 * autodiff, on the graphs that will be compiled.
 *
 * Contracts (each pass requires a verified graph and returns one with the same inputs,
 * the same outputs in the same order, and the same value for every output):
 *   fold      an elementwise op whose inputs are all constants becomes one constant (a
 *             CONST node is a uniform scalar broadcast to its shape); broadcast, reshape,
 *             transpose, slice of a constant, and max/min reductions of one, too. Random
 *             draws and extern calls are never folded; sums are not (n additions round
 *             differently from one multiplication).
 *   simplify  x+0, 0+x, x-0, x*1, 1*x, x/1 -> x; neg(neg x) -> x; cast to the same dtype
 *             -> x; transpose(transpose x) -> one transpose (or x); broadcast(broadcast x)
 *             -> one broadcast; reshape(reshape x) -> one reshape (or x).
 *   cse       nodes with the same op, dtype, shape, attributes and inputs are merged
 *             (inputs of commutative ops compared as a set, except max/min). Distinct
 *             PARAM indices and distinct random streams have distinct attributes, so they
 *             are never merged; the same stream, op and shape is the same value.
 *   dce       only nodes reachable from the outputs survive.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "codegen.h"

typedef struct {
  const Graph *g;
  Graph *ng;
  ValId *map;
} Rw;

static Graph *rw_begin(Rw *r, const Graph *g) {
  r->g = g;
  r->ng = graph_new(g->ctx, g->name);
  r->ng->cold = g->cold;
  for (int i = 0; i < g->ninputs; i++) graph_add_input(r->ng, g->inputs[i].name, g->inputs[i].dtype, &g->inputs[i].shape);
  r->ng->next_stream = g->next_stream;
  r->map = malloc((size_t)(g->nnodes > 0 ? g->nnodes : 1) * sizeof *r->map);
  return r->ng;
}

static Graph *rw_end(Rw *r) {
  for (int i = 0; i < r->g->noutputs; i++) graph_add_output(r->ng, r->g->outputs[i].name, r->map[r->g->outputs[i].val]);
  free(r->map);
  return r->ng;
}

/* The old node with its inputs mapped into the new graph. */
static Node mapped(const Rw *r, ValId v) {
  Node n = r->g->nodes[v];
  for (int k = 0; k < ir_nin(&n); k++) n.in[k] = r->map[n.in[k]];
  return n;
}

static ValId emit(Rw *r, const Node *n) { return ir_must(r->ng, ir_emit(r->ng, n)); }

static const Node *nn(const Rw *r, ValId v) { return &r->ng->nodes[v]; }

/* ---- fold -------------------------------------------------------------------------------- */
static double round_to(DType t, double v) {
  switch (t) {
  case DT_F32: return (double)(float)v;
  case DT_I32: return (double)(int32_t)(int64_t)v;
  case DT_I64: return (double)(int64_t)v;
  default: return v;
  }
}

static double f_unary(Op op, DType t, double x) {
  int f = t == DT_F32;
  switch (op) {
  case OP_NEG: return -x;
  case OP_EXP: return f ? expf((float)x) : exp(x);
  case OP_LOG: return f ? logf((float)x) : log(x);
  case OP_LOG1P: return f ? log1pf((float)x) : log1p(x);
  case OP_SQRT: return f ? sqrtf((float)x) : sqrt(x);
  case OP_RSQRT: return f ? 1.0f / sqrtf((float)x) : 1.0 / sqrt(x);
  case OP_ABS: return fabs(x);
  case OP_SIGN: return (x > 0) - (x < 0);
  case OP_FLOOR: return floor(x);
  case OP_SIN: return f ? sinf((float)x) : sin(x);
  case OP_COS: return f ? cosf((float)x) : cos(x);
  case OP_TAN: return f ? tanf((float)x) : tan(x);
  case OP_ATAN: return f ? atanf((float)x) : atan(x);
  case OP_TANH: return f ? tanhf((float)x) : tanh(x);
  case OP_SIGMOID: return f ? 1.0f / (1.0f + expf(-(float)x)) : 1.0 / (1.0 + exp(-x));
  case OP_SILU: return f ? (float)x * (1.0f / (1.0f + expf(-(float)x))) : x * (1.0 / (1.0 + exp(-x)));
  case OP_RELU: return x > 0 ? x : 0;
  case OP_SOFTPLUS:
    return f ? fmaxf((float)x, 0) + log1pf(expf(-fabsf((float)x))) : fmax(x, 0) + log1p(exp(-fabs(x)));
  case OP_CAST:
  case OP_STOPGRAD: return x;
  default: return NAN;
  }
}

static int f_binary(Op op, DType t, double a, double b, double *out) {
  int isint = !dtype_is_float(t);
  switch (op) {
  case OP_ADD: *out = a + b; return 1;
  case OP_SUB: *out = a - b; return 1;
  case OP_MUL: *out = a * b; return 1;
  case OP_DIV:
    if (isint) *out = b == 0 ? 0 : (double)((int64_t)a / (int64_t)b);
    else *out = t == DT_F32 ? (double)((float)a / (float)b) : a / b;
    return 1;
  case OP_POW: *out = t == DT_F32 ? (double)powf((float)a, (float)b) : pow(a, b); return 1;
  case OP_MAX: *out = a >= b ? a : b; return 1;
  case OP_MIN: *out = a <= b ? a : b; return 1;
  case OP_SAFEMUL: *out = (a == 0 || b == 0) ? 0 : a * b; return 1;
  case OP_LT: *out = a < b; return 1;
  case OP_LE: *out = a <= b; return 1;
  case OP_GT: *out = a > b; return 1;
  case OP_GE: *out = a >= b; return 1;
  case OP_EQ: *out = a == b; return 1;
  case OP_NE: *out = a != b; return 1;
  default: return 0;
  }
}

static int is_const(const Rw *r, ValId v) { return nn(r, v)->op == OP_CONST; }
static double cval(const Rw *r, ValId v) { return nn(r, v)->attr.scalar; }

static ValId const_like(Rw *r, const Node *n, double v) {
  return ir_must(r->ng, ir_const(r->ng, round_to(n->dtype, v), n->dtype, &n->shape, n->loc));
}

/* The folded value of n (inputs already mapped), or IR_ERR if it does not fold. */
static ValId fold_node(Rw *r, const Node *n) {
  OpKind kind = op_info[n->op].kind;
  for (int k = 0; k < ir_nin(n); k++)
    if (!is_const(r, n->in[k])) return IR_ERR;
  if (ir_nin(n) == 0) return IR_ERR;
  DType it = nn(r, n->in[0])->dtype;
  switch (kind) {
  case K_UNARY:
    if (n->op == OP_CAST && !dtype_is_float(n->dtype)) return const_like(r, n, trunc(cval(r, n->in[0])));
    return const_like(r, n, f_unary(n->op, n->dtype, cval(r, n->in[0])));
  case K_BINARY: {
    double v;
    if (!f_binary(n->op, it, cval(r, n->in[0]), cval(r, n->in[1]), &v)) return IR_ERR;
    return const_like(r, n, v);
  }
  case K_TERNARY: return const_like(r, n, cval(r, n->in[0]) != 0 ? cval(r, n->in[1]) : cval(r, n->in[2]));
  case K_SHAPE:
    if (n->op == OP_BROADCAST || n->op == OP_RESHAPE || n->op == OP_TRANSPOSE || n->op == OP_SLICE)
      return const_like(r, n, cval(r, n->in[0]));
    return IR_ERR;
  case K_REDUCE:
    if (n->op == OP_SUM) return IR_ERR;
    return const_like(r, n, cval(r, n->in[0]));
  default: return IR_ERR;
  }
}

Graph *opt_fold(const Graph *g, const Program *p) {
  (void)p;
  Rw r;
  rw_begin(&r, g);
  for (int v = 0; v < g->nnodes; v++) {
    Node n = mapped(&r, v);
    ValId f = fold_node(&r, &n);
    r.map[v] = f != IR_ERR ? f : emit(&r, &n);
  }
  return rw_end(&r);
}

/* ---- simplify ------------------------------------------------------------------------------ */
static int const_is(const Rw *r, ValId v, double c) { return is_const(r, v) && cval(r, v) == c; }

static ValId simplify_node(Rw *r, Node *n) {
  ValId a = n->in[0], b = n->in[1];
  switch (n->op) {
  case OP_ADD:
    if (const_is(r, b, 0)) return a;
    if (const_is(r, a, 0)) return b;
    break;
  case OP_SUB:
    if (const_is(r, b, 0)) return a;
    break;
  case OP_MUL:
    if (const_is(r, b, 1)) return a;
    if (const_is(r, a, 1)) return b;
    break;
  case OP_DIV:
    if (const_is(r, b, 1)) return a;
    break;
  case OP_NEG:
    if (nn(r, a)->op == OP_NEG) return nn(r, a)->in[0];
    break;
  case OP_CAST:
    if (nn(r, a)->dtype == n->dtype) return a;
    break;
  case OP_TRANSPOSE:
    if (nn(r, a)->op == OP_TRANSPOSE) { /* out[i] = x[p1[p2[i]]] */
      const Node *t = nn(r, a);
      int32_t perm[IR_MAXRANK] = {0};
      int ident = 1;
      for (int i = 0; i < n->shape.rank; i++) {
        perm[i] = t->attr.perm[n->attr.perm[i]];
        ident &= perm[i] == i;
      }
      if (ident) return t->in[0];
      n->in[0] = t->in[0];
      memcpy(n->attr.perm, perm, sizeof perm);
    }
    break;
  case OP_BROADCAST:
    if (nn(r, a)->op == OP_BROADCAST) n->in[0] = nn(r, a)->in[0];
    if (shape_eq(&nn(r, n->in[0])->shape, &n->shape)) return n->in[0];
    break;
  case OP_RESHAPE:
    if (nn(r, a)->op == OP_RESHAPE) n->in[0] = nn(r, a)->in[0];
    if (shape_eq(&nn(r, n->in[0])->shape, &n->shape)) return n->in[0];
    break;
  default: break;
  }
  return IR_ERR;
}

Graph *opt_simplify(const Graph *g, const Program *p) {
  (void)p;
  Rw r;
  rw_begin(&r, g);
  for (int v = 0; v < g->nnodes; v++) {
    Node n = mapped(&r, v);
    ValId s = simplify_node(&r, &n);
    r.map[v] = s != IR_ERR ? s : emit(&r, &n);
  }
  return rw_end(&r);
}

/* ---- CSE --------------------------------------------------------------------------------------- */
static uint64_t fnv(uint64_t h, const void *p, size_t n) {
  const unsigned char *c = p;
  for (size_t i = 0; i < n; i++) h = (h ^ c[i]) * 1099511628211ull;
  return h;
}

static int same_node(const Node *a, const Node *b) {
  if (a->op != b->op || a->dtype != b->dtype || !shape_eq(&a->shape, &b->shape)) return 0;
  for (int k = 0; k < ir_nin(a); k++)
    if (a->in[k] != b->in[k]) return 0;
  return !memcmp(&a->attr, &b->attr, sizeof a->attr);
}

static uint64_t node_hash(const Node *n) {
  uint64_t h = 1469598103934665603ull;
  h = fnv(h, &n->op, sizeof n->op);
  h = fnv(h, &n->dtype, sizeof n->dtype);
  h = fnv(h, &n->shape.rank, sizeof n->shape.rank);
  h = fnv(h, n->shape.dims, (size_t)n->shape.rank * sizeof n->shape.dims[0]);
  h = fnv(h, n->in, (size_t)ir_nin(n) * sizeof n->in[0]);
  return fnv(h, &n->attr, sizeof n->attr);
}

Graph *opt_cse(const Graph *g, const Program *p) {
  (void)p;
  Rw r;
  rw_begin(&r, g);
  size_t cap = 16;
  while (cap < (size_t)g->nnodes * 2 + 2) cap *= 2;
  ValId *tab = malloc(cap * sizeof *tab);
  for (size_t i = 0; i < cap; i++) tab[i] = IR_ERR;
  for (int v = 0; v < g->nnodes; v++) {
    Node n = mapped(&r, v);
    if ((op_info[n.op].flags & F_COMMUTATIVE) && n.op != OP_MAX && n.op != OP_MIN && n.in[0] > n.in[1]) {
      ValId t = n.in[0];
      n.in[0] = n.in[1];
      n.in[1] = t;
    }
    size_t h = (size_t)node_hash(&n) & (cap - 1);
    while (tab[h] != IR_ERR && !same_node(nn(&r, tab[h]), &n)) h = (h + 1) & (cap - 1);
    if (tab[h] != IR_ERR) {
      r.map[v] = tab[h];
      continue;
    }
    r.map[v] = emit(&r, &n);
    /* ir_emit may normalize (e.g. attrs of fewer inputs): hash what was stored */
    size_t h2 = (size_t)node_hash(nn(&r, r.map[v])) & (cap - 1);
    while (tab[h2] != IR_ERR) h2 = (h2 + 1) & (cap - 1);
    tab[h2] = r.map[v];
  }
  free(tab);
  return rw_end(&r);
}

/* ---- DCE --------------------------------------------------------------------------------------- */
Graph *opt_dce(const Graph *g, const Program *p) {
  (void)p;
  char *live = calloc((size_t)(g->nnodes > 0 ? g->nnodes : 1), 1);
  for (int i = 0; i < g->noutputs; i++) live[g->outputs[i].val] = 1;
  for (int v = g->nnodes - 1; v >= 0; v--)
    if (live[v])
      for (int k = 0; k < ir_nin(&g->nodes[v]); k++) live[g->nodes[v].in[k]] = 1;
  Rw r;
  rw_begin(&r, g);
  for (int v = 0; v < g->nnodes; v++) {
    r.map[v] = IR_ERR;
    if (!live[v]) continue;
    Node n = mapped(&r, v);
    r.map[v] = emit(&r, &n);
  }
  free(live);
  return rw_end(&r);
}

/* ---- pipeline ------------------------------------------------------------------------------------ */
static void verify_or_die(const Graph *g, const Program *p, const char *pass) {
#ifndef NDEBUG
  char buf[512];
  if (ir_verify(g, p, buf, sizeof buf)) {
    fprintf(stderr, "gradc: internal: after pass %s: %s\n", pass, buf);
    IR_ASSERT(0 && "a pass produced an invalid graph");
  }
#else
  (void)g, (void)p, (void)pass;
#endif
}

Graph *opt_run(const Graph *g, const Program *p) {
  typedef Graph *(*Pass)(const Graph *, const Program *);
  static const Pass passes[] = {opt_fold, opt_simplify, opt_cse, opt_dce};
  static const char *const names[] = {"fold", "simplify", "cse", "dce"};
  Graph *cur = NULL;
  for (int round = 0; round < 2; round++)
    for (int i = 0; i < 4; i++) {
      Graph *next = passes[i](cur ? cur : g, p);
      verify_or_die(next, p, names[i]);
      graph_free(cur);
      cur = next;
    }
  return cur;
}

int cg_optimize(Ctx *c, Program *p) {
  (void)c;
  for (int i = 0; i < p->nentries; i++) {
    Graph *ng = opt_run(p->entries[i], p);
    graph_free(p->entries[i]);
    p->entries[i] = ng;
  }
  return 0;
}
