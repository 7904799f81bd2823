/* ir.c: the op table, graphs and programs, and the builders.
 *
 * Shape inference lives in exactly one place: infer() below, driven by the op kind from
 * ops.def. Every builder funnels into ir_emit(), which infers and checks the result shape
 * and records a diagnostic (at the node's source location) when the inputs do not fit.
 * The front end turns NumPy broadcasting into explicit RESHAPE/BROADCAST nodes with
 * ir_broadcast_pair(), so elementwise ops only ever see identical shapes: the interpreter,
 * autodiff and codegen never have to think about broadcasting rules.
 */
#include "ir.h"

#include <stdlib.h>
#include <string.h>

const OpInfo op_info[OP_COUNT] = {
#define X(id, nm, n, k, d, f) [OP_##id] = {nm, n, k, d, f},
#include "ops.def"
#undef X
};

const char *op_name(Op op) { return op < OP_COUNT ? op_info[op].name : "?"; }

int op_by_name(const char *name) {
  for (int i = 0; i < OP_COUNT; i++)
    if (!strcmp(op_info[i].name, name)) return i;
  return -1;
}

static const char *const dtype_names[DT_COUNT] = {"f32", "f64", "i32", "i64"};
static const size_t dtype_sizes[DT_COUNT] = {4, 8, 4, 8};
const char *dtype_name(DType t) { return t < DT_COUNT ? dtype_names[t] : "?"; }
size_t dtype_size(DType t) { return t < DT_COUNT ? dtype_sizes[t] : 0; }

static const char *const init_names[INIT_COUNT] = {"zeros",   "ones",   "const", "normal",
                                                   "uniform", "glorot", "he"};
const char *init_name(InitKind k) { return k < INIT_COUNT ? init_names[k] : "?"; }

int64_t shape_numel(const Shape *s) {
  int64_t n = 1;
  for (int i = 0; i < s->rank; i++) n *= s->dims[i];
  return n;
}

int shape_eq(const Shape *a, const Shape *b) {
  if (a->rank != b->rank) return 0;
  for (int i = 0; i < a->rank; i++)
    if (a->dims[i] != b->dims[i]) return 0;
  return 1;
}

char *shape_str(const Shape *s, char *buf, size_t n) {
  size_t k = (size_t)snprintf(buf, n, "[");
  for (int i = 0; i < s->rank && k < n; i++)
    k += (size_t)snprintf(buf + k, n - k, i ? ", %lld" : "%lld", (long long)s->dims[i]);
  if (k < n) snprintf(buf + k, n - k, "]");
  return buf;
}

void ir_param_fans(const Shape *s, int64_t *fan_in, int64_t *fan_out) {
  if (s->rank == 0) {
    *fan_in = *fan_out = 1;
  } else if (s->rank == 1) {
    *fan_in = *fan_out = s->dims[0];
  } else {
    int64_t rest = 1;
    for (int i = 0; i < s->rank - 2; i++) rest *= s->dims[i];
    *fan_in = s->dims[s->rank - 2] * rest;
    *fan_out = s->dims[s->rank - 1] * rest;
  }
}

/* ---- programs and graphs ---------------------------------------------------------------- */
#define GROW(arr, n, cap)                                                                 \
  do {                                                                                    \
    if ((n) == (cap)) {                                                                   \
      (cap) = (cap) ? 2 * (cap) : 16;                                                     \
      (arr) = xrealloc((arr), (size_t)(cap) * sizeof *(arr));                             \
    }                                                                                     \
  } while (0)

void program_init(Program *p, Ctx *c) {
  memset(p, 0, sizeof *p);
  p->ctx = c;
}

void program_free(Program *p) {
  for (int i = 0; i < p->nentries; i++) graph_free(p->entries[i]);
  free(p->entries);
  free(p->params);
  free(p->consts);
  free(p->externs);
  memset(p, 0, sizeof *p);
}

Graph *program_add_entry(Program *p, const char *name) {
  GROW(p->entries, p->nentries, p->capentries);
  return p->entries[p->nentries++] = graph_new(p->ctx, name);
}

Graph *program_find_entry(const Program *p, const char *name) {
  for (int i = 0; i < p->nentries; i++)
    if (!strcmp(p->entries[i]->name, name)) return p->entries[i];
  return NULL;
}

int program_param(Program *p, const char *name, DType dt, const Shape *s, Init init,
                  SrcLoc loc) {
  for (int i = 0; i < p->nparams; i++) {
    if (strcmp(p->params[i].name, name)) continue;
    if (p->params[i].dtype != dt || !shape_eq(&p->params[i].shape, s)) {
      char a[96], b[96];
      diag_error(p->ctx, loc, "parameters are named by the path of calls that create them",
                 "parameter '%s' declared again as %s%s, first as %s%s", name, dtype_name(dt),
                 shape_str(s, a, sizeof a), dtype_name(p->params[i].dtype),
                 shape_str(&p->params[i].shape, b, sizeof b));
      return -1;
    }
    return i;
  }
  GROW(p->params, p->nparams, p->capparams);
  ir_param_fans(s, &init.fan_in, &init.fan_out);
  p->params[p->nparams] = (Param){arena_strdup(&p->ctx->arena, name), dt, *s, init, loc};
  return p->nparams++;
}

Graph *graph_new(Ctx *c, const char *name) {
  Graph *g = xrealloc(NULL, sizeof *g);
  memset(g, 0, sizeof *g);
  g->ctx = c;
  g->name = arena_strdup(&c->arena, name);
  g->next_stream = 1;
  return g;
}

void graph_free(Graph *g) {
  if (!g) return;
  free(g->nodes);
  free(g->inputs);
  free(g->outputs);
  free(g);
}

int graph_add_input(Graph *g, const char *name, DType dt, const Shape *s) {
  GROW(g->inputs, g->ninputs, g->capinputs);
  g->inputs[g->ninputs] = (GInput){arena_strdup(&g->ctx->arena, name), dt, *s};
  return g->ninputs++;
}

void graph_add_output(Graph *g, const char *name, ValId v) {
  GROW(g->outputs, g->noutputs, g->capoutputs);
  g->outputs[g->noutputs++] = (GOutput){arena_strdup(&g->ctx->arena, name), v};
}

/* ---- shape inference ------------------------------------------------------------------- */
/* Fills n->shape/dtype from its inputs. Returns NULL on success or an error message
 * (static or in buf) describing why the inputs do not fit. */
static const char *infer(Graph *g, Node *n, char *buf, size_t bn) {
  const OpInfo *oi = &op_info[n->op];
  int nin = ir_nin(n);
  const Node *a = nin > 0 ? &g->nodes[n->in[0]] : NULL;
  const Node *b = nin > 1 ? &g->nodes[n->in[1]] : NULL;
  char s1[96], s2[96];
  switch (oi->kind) {
  case K_LEAF:
    if (n->op == OP_IOTA && (n->attr.axis < 0 || n->attr.axis >= n->shape.rank))
      return "iota axis out of range";
    return NULL;
  case K_UNARY:
    n->shape = a->shape;
    if (n->op != OP_CAST) n->dtype = a->dtype;
    if (!dtype_is_float(n->dtype) && n->op != OP_CAST && n->op != OP_NEG &&
        n->op != OP_ABS && n->op != OP_SIGN && n->op != OP_STOPGRAD)
      return arena_printf(&g->ctx->arena, "'%s' needs a float tensor, got %s",
                          op_name(n->op), dtype_name(a->dtype));
    return NULL;
  case K_BINARY:
    if (!shape_eq(&a->shape, &b->shape)) {
      snprintf(buf, bn, "shapes %s and %s differ in '%s'", shape_str(&a->shape, s1, 96),
               shape_str(&b->shape, s2, 96), op_name(n->op));
      return buf;
    }
    if (a->dtype != b->dtype) {
      snprintf(buf, bn, "dtypes %s and %s differ in '%s'", dtype_name(a->dtype),
               dtype_name(b->dtype), op_name(n->op));
      return buf;
    }
    n->shape = a->shape;
    n->dtype = a->dtype;
    if (!dtype_is_float(n->dtype) &&
        (n->op == OP_POW || n->op == OP_SAFEMUL))
      return arena_printf(&g->ctx->arena, "'%s' needs float tensors", op_name(n->op));
    return NULL;
  case K_TERNARY: {
    const Node *c = &g->nodes[n->in[2]];
    if (!shape_eq(&a->shape, &b->shape) || !shape_eq(&a->shape, &c->shape)) return "where: shapes differ";
    if (b->dtype != c->dtype) return "where: the two branches have different dtypes";
    n->shape = b->shape;
    n->dtype = b->dtype;
    return NULL;
  }
  case K_REDUCE:
    n->shape = a->shape;
    n->dtype = a->dtype;
    if (n->attr.axes >> a->shape.rank) return "reduction axis out of range";
    for (int i = 0; i < a->shape.rank; i++)
      if (n->attr.axes >> i & 1) n->shape.dims[i] = 1;
    return NULL;
  case K_SHAPE:
    n->dtype = a->dtype;
    switch (n->op) {
    case OP_BROADCAST:
      if (n->shape.rank != a->shape.rank) return "broadcast: rank differs";
      for (int i = 0; i < a->shape.rank; i++)
        if (a->shape.dims[i] != 1 && a->shape.dims[i] != n->shape.dims[i]) {
          snprintf(buf, bn, "cannot broadcast %s to %s", shape_str(&a->shape, s1, 96),
                   shape_str(&n->shape, s2, 96));
          return buf;
        }
      return NULL;
    case OP_RESHAPE:
      if (shape_numel(&n->shape) != shape_numel(&a->shape)) {
        snprintf(buf, bn, "cannot reshape %s (%lld elements) to %s (%lld elements)",
                 shape_str(&a->shape, s1, 96), (long long)shape_numel(&a->shape),
                 shape_str(&n->shape, s2, 96), (long long)shape_numel(&n->shape));
        return buf;
      }
      return NULL;
    case OP_TRANSPOSE: {
      unsigned seen = 0;
      n->shape.rank = a->shape.rank;
      for (int i = 0; i < a->shape.rank; i++) {
        int p = n->attr.perm[i];
        if (p < 0 || p >= a->shape.rank || (seen >> p & 1)) return "transpose: not a permutation";
        seen |= 1u << p;
        n->shape.dims[i] = a->shape.dims[p];
      }
      return NULL;
    }
    case OP_SLICE:
    case OP_PAD: {
      int ax = n->attr.sl.axis;
      if (ax < 0 || ax >= a->shape.rank) return "axis out of range";
      n->shape = a->shape;
      int64_t lo = n->attr.sl.start, hi = n->attr.sl.stop;
      if (n->op == OP_SLICE) {
        if (lo < 0 || hi > a->shape.dims[ax] || lo > hi) {
          snprintf(buf, bn, "slice [%lld:%lld] out of range for axis %d of size %lld",
                   (long long)lo, (long long)hi, ax, (long long)a->shape.dims[ax]);
          return buf;
        }
        n->shape.dims[ax] = hi - lo;
      } else {
        if (lo < 0 || hi < 0) return "pad: negative padding";
        n->shape.dims[ax] += lo + hi;
      }
      return NULL;
    }
    case OP_CONCAT: {
      int ax = n->attr.sl.axis;
      if (a->shape.rank != b->shape.rank || ax < 0 || ax >= a->shape.rank) goto concat_bad;
      for (int i = 0; i < a->shape.rank; i++)
        if (i != ax && a->shape.dims[i] != b->shape.dims[i]) goto concat_bad;
      if (a->dtype != b->dtype) return "concat: dtypes differ";
      n->shape = a->shape;
      n->shape.dims[ax] += b->shape.dims[ax];
      return NULL;
    concat_bad:
      snprintf(buf, bn, "cannot concatenate %s and %s along axis %d",
               shape_str(&a->shape, s1, 96), shape_str(&b->shape, s2, 96), ax);
      return buf;
    }
    case OP_GATHER:
    case OP_SCATTERADD: {
      int ax = n->attr.sl.axis;
      if (ax < 0 || ax >= a->shape.rank) return "axis out of range";
      if (b->shape.rank != 1 || dtype_is_float(b->dtype)) return "indices must be a 1-D integer tensor";
      n->shape = a->shape;
      if (n->op == OP_GATHER) {
        n->shape.dims[ax] = b->shape.dims[0];
      } else {
        if (a->shape.dims[ax] != b->shape.dims[0]) return "scatter_add: index length differs";
        n->shape.dims[ax] = n->attr.sl.start;
      }
      return NULL;
    }
    default:
      return "unknown shape op";
    }
  case K_EXTERN:
    if (nin < 1 || nin > 3) return "extern call: 1 to 3 arguments";
    for (int i = 1; i < nin; i++)
      if (!shape_eq(&g->nodes[n->in[i]].shape, &a->shape)) return "extern call: argument shapes differ";
    n->shape = a->shape; /* dtype: set by the builder from the declaration */
    return NULL;
  case K_MATMUL: {
    int r = a->shape.rank;
    if (r < 2 || b->shape.rank != r) goto mm_bad;
    for (int i = 0; i < r - 2; i++)
      if (a->shape.dims[i] != b->shape.dims[i]) goto mm_bad;
    int64_t m = a->shape.dims[r - 2 + n->attr.mm.ta], ka = a->shape.dims[r - 1 - n->attr.mm.ta];
    int64_t kb = b->shape.dims[r - 2 + n->attr.mm.tb], nn = b->shape.dims[r - 1 - n->attr.mm.tb];
    if (ka != kb) goto mm_bad;
    if (a->dtype != b->dtype || !dtype_is_float(a->dtype)) return "matmul needs two float tensors of one dtype";
    n->dtype = a->dtype;
    n->shape = a->shape;
    n->shape.dims[r - 2] = m;
    n->shape.dims[r - 1] = nn;
    return NULL;
  mm_bad:
    snprintf(buf, bn, "cannot multiply matrices %s%s and %s%s", shape_str(&a->shape, s1, 96),
             n->attr.mm.ta ? "^T" : "", shape_str(&b->shape, s2, 96), n->attr.mm.tb ? "^T" : "");
    return buf;
  }
  }
  return "bad op kind";
}

ValId ir_emit(Graph *g, const Node *proto) {
  int nin = ir_nin(proto);
  for (int i = 0; i < nin; i++) {
    if (proto->in[i] == IR_ERR) return IR_ERR;
    IR_ASSERT(proto->in[i] >= 0 && proto->in[i] < g->nnodes);
  }
  Node n = *proto;
  for (int i = nin; i < 3; i++) n.in[i] = IR_ERR;
  char buf[512];
  const char *err = infer(g, &n, buf, sizeof buf);
  if (err) {
    diag_error(g->ctx, n.loc, NULL, "%s", err);
    return IR_ERR;
  }
  GROW(g->nodes, g->nnodes, g->capnodes);
  g->nodes[g->nnodes] = n;
  return g->nnodes++;
}

ValId ir_must(const Graph *g, ValId v) {
  if (v == IR_ERR) {
    const Ctx *c = g->ctx;
    if (c->ndiags) fprintf(stderr, "gradc: internal: %s\n", c->diags[c->ndiags - 1].msg);
    ir_panic(__FILE__, __LINE__, "builder failed inside a transform");
  }
  return v;
}

/* ---- builders ---------------------------------------------------------------------------- */
static Node proto(Op op, SrcLoc loc) {
  Node n;
  memset(&n, 0, sizeof n);
  n.op = op;
  n.loc = loc;
  n.in[0] = n.in[1] = n.in[2] = IR_ERR;
  return n;
}

ValId ir_const(Graph *g, double v, DType dt, const Shape *s, SrcLoc loc) {
  Node n = proto(OP_CONST, loc);
  n.dtype = dt;
  n.shape = *s;
  n.attr.scalar = v;
  return ir_emit(g, &n);
}

ValId ir_scalar(Graph *g, double v, DType dt, SrcLoc loc) {
  Shape s = {0, {0}};
  return ir_const(g, v, dt, &s, loc);
}

ValId ir_input(Graph *g, int index, SrcLoc loc) {
  IR_ASSERT(index >= 0 && index < g->ninputs);
  Node n = proto(OP_INPUT, loc);
  n.dtype = g->inputs[index].dtype;
  n.shape = g->inputs[index].shape;
  n.attr.index = index;
  return ir_emit(g, &n);
}

ValId ir_param(Graph *g, const Program *p, int index, SrcLoc loc) {
  if (index < 0) return IR_ERR;
  IR_ASSERT(index < p->nparams);
  Node n = proto(OP_PARAM, loc);
  n.dtype = p->params[index].dtype;
  n.shape = p->params[index].shape;
  n.attr.index = index;
  return ir_emit(g, &n);
}

ValId ir_iota(Graph *g, DType dt, const Shape *s, int axis, SrcLoc loc) {
  Node n = proto(OP_IOTA, loc);
  n.dtype = dt;
  n.shape = *s;
  n.attr.axis = axis;
  return ir_emit(g, &n);
}

ValId ir_random(Graph *g, Op op, DType dt, const Shape *s, SrcLoc loc) {
  IR_ASSERT(op == OP_RANDN || op == OP_RANDU);
  Node n = proto(op, loc);
  n.dtype = dt;
  n.shape = *s;
  n.attr.stream = g->next_stream++;
  return ir_emit(g, &n);
}

ValId ir_unary(Graph *g, Op op, ValId a, SrcLoc loc) {
  IR_ASSERT(op_info[op].kind == K_UNARY && op != OP_CAST);
  Node n = proto(op, loc);
  n.in[0] = a;
  return ir_emit(g, &n);
}

ValId ir_cast(Graph *g, ValId a, DType to, SrcLoc loc) {
  if (a == IR_ERR) return IR_ERR;
  if (g->nodes[a].dtype == to) return a;
  Node n = proto(OP_CAST, loc);
  n.in[0] = a;
  n.dtype = to;
  return ir_emit(g, &n);
}

ValId ir_binary(Graph *g, Op op, ValId a, ValId b, SrcLoc loc) {
  IR_ASSERT(op_info[op].kind == K_BINARY);
  Node n = proto(op, loc);
  n.in[0] = a;
  n.in[1] = b;
  return ir_emit(g, &n);
}

ValId ir_where(Graph *g, ValId c, ValId a, ValId b, SrcLoc loc) {
  Node n = proto(OP_WHERE, loc);
  n.in[0] = c;
  n.in[1] = a;
  n.in[2] = b;
  return ir_emit(g, &n);
}

ValId ir_reduce(Graph *g, Op op, ValId a, uint32_t axes, SrcLoc loc) {
  IR_ASSERT(op_info[op].kind == K_REDUCE);
  if (a == IR_ERR) return IR_ERR;
  if (axes == 0) return a;
  Node n = proto(op, loc);
  n.in[0] = a;
  n.attr.axes = axes;
  return ir_emit(g, &n);
}

ValId ir_broadcast(Graph *g, ValId a, const Shape *to, SrcLoc loc) {
  if (a == IR_ERR) return IR_ERR;
  if (shape_eq(&g->nodes[a].shape, to)) return a;
  Node n = proto(OP_BROADCAST, loc);
  n.in[0] = a;
  n.shape = *to;
  return ir_emit(g, &n);
}

ValId ir_reshape(Graph *g, ValId a, const Shape *to, SrcLoc loc) {
  if (a == IR_ERR) return IR_ERR;
  if (shape_eq(&g->nodes[a].shape, to)) return a;
  Node n = proto(OP_RESHAPE, loc);
  n.in[0] = a;
  n.shape = *to;
  return ir_emit(g, &n);
}

ValId ir_transpose(Graph *g, ValId a, const int32_t *perm, SrcLoc loc) {
  Node n = proto(OP_TRANSPOSE, loc);
  n.in[0] = a;
  memcpy(n.attr.perm, perm, sizeof n.attr.perm);
  return ir_emit(g, &n);
}

static ValId axis_op(Graph *g, Op op, ValId a, ValId b, int axis, int64_t start, int64_t stop,
                     SrcLoc loc) {
  Node n = proto(op, loc);
  n.in[0] = a;
  n.in[1] = b;
  n.attr.sl.axis = axis;
  n.attr.sl.start = start;
  n.attr.sl.stop = stop;
  return ir_emit(g, &n);
}

ValId ir_slice(Graph *g, ValId a, int axis, int64_t start, int64_t stop, SrcLoc loc) {
  return axis_op(g, OP_SLICE, a, IR_ERR, axis, start, stop, loc);
}
ValId ir_pad(Graph *g, ValId a, int axis, int64_t before, int64_t after, SrcLoc loc) {
  return axis_op(g, OP_PAD, a, IR_ERR, axis, before, after, loc);
}
ValId ir_concat(Graph *g, ValId a, ValId b, int axis, SrcLoc loc) {
  return axis_op(g, OP_CONCAT, a, b, axis, 0, 0, loc);
}
ValId ir_gather(Graph *g, ValId x, ValId idx, int axis, SrcLoc loc) {
  return axis_op(g, OP_GATHER, x, idx, axis, 0, 0, loc);
}
ValId ir_scatter_add(Graph *g, ValId upd, ValId idx, int axis, int64_t size, SrcLoc loc) {
  return axis_op(g, OP_SCATTERADD, upd, idx, axis, size, 0, loc);
}

ValId ir_matmul(Graph *g, ValId a, ValId b, int ta, int tb, SrcLoc loc) {
  Node n = proto(OP_MATMUL, loc);
  n.in[0] = a;
  n.in[1] = b;
  n.attr.mm.ta = ta;
  n.attr.mm.tb = tb;
  return ir_emit(g, &n);
}

/* ---- broadcasting conveniences ---------------------------------------------------------- */
static ValId lift_rank(Graph *g, ValId a, int rank, SrcLoc loc) {
  const Shape *s = &g->nodes[a].shape;
  if (s->rank == rank) return a;
  Shape t = {rank, {0}};
  int pad = rank - s->rank;
  for (int i = 0; i < rank; i++) t.dims[i] = i < pad ? 1 : s->dims[i - pad];
  return ir_reshape(g, a, &t, loc);
}

int ir_broadcast_pair(Graph *g, ValId *a, ValId *b, const char *what, SrcLoc loc) {
  if (*a == IR_ERR || *b == IR_ERR) return -1;
  Shape sa = g->nodes[*a].shape, sb = g->nodes[*b].shape;
  int rank = sa.rank > sb.rank ? sa.rank : sb.rank;
  Shape out = {rank, {0}};
  for (int i = 0; i < rank; i++) {
    int ia = i - (rank - sa.rank), ib = i - (rank - sb.rank);
    int64_t da = ia >= 0 ? sa.dims[ia] : 1, db = ib >= 0 ? sb.dims[ib] : 1;
    if (da != db && da != 1 && db != 1) {
      char s1[96], s2[96];
      diag_error(g->ctx, loc, "NumPy rules: trailing dimensions must be equal or 1",
                 "shapes %s and %s cannot broadcast in '%s'", shape_str(&sa, s1, 96),
                 shape_str(&sb, s2, 96), what);
      return -1;
    }
    out.dims[i] = da == 1 ? db : da;
  }
  *a = ir_broadcast(g, lift_rank(g, *a, rank, loc), &out, loc);
  *b = ir_broadcast(g, lift_rank(g, *b, rank, loc), &out, loc);
  return (*a == IR_ERR || *b == IR_ERR) ? -1 : 0;
}

ValId ir_broadcast_to(Graph *g, ValId a, const Shape *to, SrcLoc loc) {
  if (a == IR_ERR) return IR_ERR;
  const Shape *s = &g->nodes[a].shape;
  if (s->rank > to->rank) {
    char s1[96], s2[96];
    diag_error(g->ctx, loc, NULL, "cannot broadcast %s to %s", shape_str(s, s1, 96),
               shape_str(to, s2, 96));
    return IR_ERR;
  }
  return ir_broadcast(g, lift_rank(g, a, to->rank, loc), to, loc);
}

ValId ir_sum_to(Graph *g, ValId a, const Shape *to, SrcLoc loc) {
  if (a == IR_ERR) return IR_ERR;
  const Shape s = g->nodes[a].shape;
  IR_ASSERT(s.rank >= to->rank);
  int pad = s.rank - to->rank;
  uint32_t axes = 0;
  for (int i = 0; i < s.rank; i++)
    if (i < pad || (to->dims[i - pad] == 1 && s.dims[i] != 1)) axes |= 1u << i;
  ValId r = ir_reduce(g, OP_SUM, a, axes, loc);
  return ir_reshape(g, r, to, loc);
}

ValId ir_squeeze_axes(Graph *g, ValId a, uint32_t axes, SrcLoc loc) {
  if (a == IR_ERR) return IR_ERR;
  const Shape *s = &g->nodes[a].shape;
  Shape t = {0, {0}};
  for (int i = 0; i < s->rank; i++)
    if (!(axes >> i & 1)) t.dims[t.rank++] = s->dims[i];
  return ir_reshape(g, a, &t, loc);
}

/* ---- verifier ---------------------------------------------------------------------------- */
int ir_verify(const Graph *g, const Program *p, char *buf, size_t n) {
  Graph tmp = *g; /* infer() only reads other nodes and the arena */
  for (int i = 0; i < g->nnodes; i++) {
    const Node *nd = &g->nodes[i];
    if (nd->op >= OP_COUNT) {
      snprintf(buf, n, "%%%d: bad op %d", i, nd->op);
      return -1;
    }
    const OpInfo *oi = &op_info[nd->op];
    for (int k = 0; k < ir_nin(nd); k++)
      if (nd->in[k] < 0 || nd->in[k] >= i) {
        snprintf(buf, n, "%%%d (%s): input %d is %%%d, not an earlier node", i, oi->name, k,
                 nd->in[k]);
        return -1;
      }
    if (nd->op == OP_PARAM && (!p || nd->attr.index < 0 || nd->attr.index >= p->nparams)) {
      snprintf(buf, n, "%%%d: bad parameter index", i);
      return -1;
    }
    if (nd->op == OP_INPUT && (nd->attr.index < 0 || nd->attr.index >= g->ninputs)) {
      snprintf(buf, n, "%%%d: bad input index", i);
      return -1;
    }
    Node copy = *nd;
    char eb[256];
    const char *err = infer(&tmp, &copy, eb, sizeof eb);
    if (err || !shape_eq(&copy.shape, &nd->shape) || copy.dtype != nd->dtype) {
      snprintf(buf, n, "%%%d (%s): %s", i, oi->name, err ? err : "shape/dtype disagree with the op table");
      return -1;
    }
  }
  for (int i = 0; i < g->noutputs; i++)
    if (g->outputs[i].val < 0 || g->outputs[i].val >= g->nnodes) {
      snprintf(buf, n, "output %d refers to no node", i);
      return -1;
    }
  return 0;
}

/* ---- printing ------------------------------------------------------------------------------ */
static void print_attr(const Graph *g, const Program *p, const Node *nd, FILE *out) {
  switch (nd->op) {
  case OP_CONST: fprintf(out, " %.17g", nd->attr.scalar); break;
  case OP_INPUT: fprintf(out, " %s", g->inputs[nd->attr.index].name); break;
  case OP_PARAM: fprintf(out, " %s", p ? p->params[nd->attr.index].name : "?"); break;
  case OP_IOTA: fprintf(out, " axis=%d", nd->attr.axis); break;
  case OP_RANDN:
  case OP_RANDU: fprintf(out, " stream=%llu", (unsigned long long)nd->attr.stream); break;
  case OP_SUM:
  case OP_RMAX:
  case OP_RMIN:
    fprintf(out, " axes=");
    for (int i = 0, first = 1; i < IR_MAXRANK; i++)
      if (nd->attr.axes >> i & 1) fprintf(out, first ? "%d" : ",%d", i), first = 0;
    break;
  case OP_TRANSPOSE:
    fprintf(out, " perm=");
    for (int i = 0; i < nd->shape.rank; i++) fprintf(out, i ? ",%d" : "%d", nd->attr.perm[i]);
    break;
  case OP_SLICE:
  case OP_PAD:
    fprintf(out, " axis=%d %lld:%lld", nd->attr.sl.axis, (long long)nd->attr.sl.start,
            (long long)nd->attr.sl.stop);
    break;
  case OP_CONCAT:
  case OP_GATHER:
  case OP_SCATTERADD: fprintf(out, " axis=%d", nd->attr.sl.axis); break;
  case OP_EXTERN: fprintf(out, " %s", p ? p->externs[nd->attr.ext.index].name : "?"); break;
  case OP_MATMUL:
    if (nd->attr.mm.ta || nd->attr.mm.tb) fprintf(out, " ta=%d tb=%d", nd->attr.mm.ta, nd->attr.mm.tb);
    break;
  default: break;
  }
}

void ir_print(const Graph *g, const Program *p, FILE *out) {
  fprintf(out, "entry %s(", g->name);
  for (int i = 0; i < g->ninputs; i++) {
    char sb[96];
    fprintf(out, "%s%s: %s%s", i ? ", " : "", g->inputs[i].name, dtype_name(g->inputs[i].dtype),
            shape_str(&g->inputs[i].shape, sb, sizeof sb));
  }
  fprintf(out, ")\n");
  const Ctx *c = g->ctx;
  for (int i = 0; i < g->nnodes; i++) {
    const Node *nd = &g->nodes[i];
    char sb[96];
    fprintf(out, "  %%%d = %s", i, op_name(nd->op));
    for (int k = 0; k < ir_nin(nd); k++) fprintf(out, k ? ", %%%d" : " %%%d", nd->in[k]);
    print_attr(g, p, nd, out);
    fprintf(out, " : %s%s", dtype_name(nd->dtype), shape_str(&nd->shape, sb, sizeof sb));
    if (nd->loc.file >= 0 && nd->loc.file < c->nfiles)
      fprintf(out, "  # %s:%d:%d", c->files[nd->loc.file].path, nd->loc.line, nd->loc.col);
    fputc('\n', out);
  }
  for (int i = 0; i < g->noutputs; i++)
    fprintf(out, "  return %s = %%%d\n", g->outputs[i].name, g->outputs[i].val);
}

void ir_print_dot(const Graph *g, const Program *p, FILE *out) {
  fprintf(out, "digraph \"%s\" {\n  rankdir=TB;\n  node [shape=box, fontname=\"monospace\"];\n", g->name);
  for (int i = 0; i < g->nnodes; i++) {
    const Node *nd = &g->nodes[i];
    char sb[96];
    fprintf(out, "  n%d [label=\"%%%d %s", i, i, op_name(nd->op));
    if (nd->op == OP_PARAM && p) fprintf(out, " %s", p->params[nd->attr.index].name);
    if (nd->op == OP_INPUT) fprintf(out, " %s", g->inputs[nd->attr.index].name);
    if (nd->op == OP_CONST) fprintf(out, " %g", nd->attr.scalar);
    fprintf(out, "\\n%s%s\"%s];\n", dtype_name(nd->dtype), shape_str(&nd->shape, sb, sizeof sb),
            op_info[nd->op].kind == K_LEAF ? ", style=filled, fillcolor=\"#e8f0ff\"" : "");
    for (int k = 0; k < ir_nin(nd); k++) fprintf(out, "  n%d -> n%d;\n", nd->in[k], i);
  }
  for (int i = 0; i < g->noutputs; i++)
    fprintf(out, "  out%d [label=\"%s\", shape=ellipse];\n  n%d -> out%d;\n", i,
            g->outputs[i].name, g->outputs[i].val, i);
  fprintf(out, "}\n");
}

ValId ir_extern(Graph *g, const Program *p, int index, int nargs, const ValId *args, SrcLoc loc) {
  IR_ASSERT(index >= 0 && index < p->nexterns && nargs == p->externs[index].nargs);
  Node n = proto(OP_EXTERN, loc);
  for (int i = 0; i < nargs; i++) n.in[i] = args[i];
  n.attr.ext.index = index;
  n.attr.ext.nargs = nargs;
  n.dtype = p->externs[index].ret;
  return ir_emit(g, &n);
}

int program_add_extern(Program *p, const Extern *e) {
  for (int i = 0; i < p->nexterns; i++)
    if (!strcmp(p->externs[i].name, e->name)) return i;
  GROW(p->externs, p->nexterns, p->capexterns);
  p->externs[p->nexterns] = *e;
  return p->nexterns++;
}
