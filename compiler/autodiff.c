/* autodiff.c: the reverse-mode (VJP) and forward-mode (JVP) drivers, and the training
 * entry derived from a scalar loss.
 *
 * Both transforms append ordinary nodes to the graph they differentiate; the per-op
 * rules live in ad_rules.c. A Graph keeps nodes in topological order, so:
 *
 *   reverse: mark the nodes that depend on wrt (forward over ids), then walk ids from y
 *            down, handing each marked node's cotangent to its rule, which adds
 *            contributions to the cotangents of its marked inputs through the one
 *            accumulation helper (ad_accumulate). Only nodes that lie between wrt and y
 *            ever get a cotangent; an input nothing asks for costs nothing.
 *   forward: mark the nodes ys need (backward over ids), then walk ids up from the
 *            smallest wrt, giving each needed node whose inputs carry a tangent its
 *            tangent. Nodes that do not depend on wrt have no tangent (zero, no nodes).
 *
 * Zero is never materialized inside the sweep (IR_ERR stands for it); a wrt that y does
 * not depend on gets one zeros constant at the end. stop_grad and the other F_ZEROGRAD
 * ops stop both sweeps. An EXTERN call on the path is a user error, reported only when a
 * nonzero cotangent or tangent actually has to pass through it.
 */
#include "autodiff.h"

#include "ad_rules.h"

#include <stdlib.h>
#include <string.h>

/* Names the C function when the Program is known (ad_vjp_in / ad_jvp_in). */
static void extern_error(Graph *g, const Program *p, const Node *n) {
  const char *hint = "write its derivative in .grad, or stop the gradient explicitly";
  int ix = n->attr.ext.index;
  if (p && ix >= 0 && ix < p->nexterns)
    diag_error(g->ctx, n->loc, hint, "extern function '%s' has no derivative; wrap it in stop_grad",
               p->externs[ix].name);
  else
    diag_error(g->ctx, n->loc, hint,
               "this extern function call has no derivative; wrap it in stop_grad");
}

/* is_wrt: v is differentiated with respect to (else v is the value differentiated). */
static int check_float(Graph *g, ValId v, int is_wrt, SrcLoc loc) {
  DType t = ir_node(g, v)->dtype;
  if (dtype_is_float(t)) return 0;
  diag_error(g->ctx, loc, "integers have no derivative: cast to f32 or f64 where that makes sense",
             is_wrt ? "cannot differentiate with respect to an integer tensor (%s)"
                    : "cannot differentiate an integer tensor (%s)",
             dtype_name(t));
  return -1;
}

static ValId zeros_like(Graph *g, ValId v, SrcLoc loc) {
  Shape s = ir_node(g, v)->shape;
  return ir_must(g, ir_const(g, 0.0, ir_node(g, v)->dtype, &s, loc));
}

/* dep[v] = 1 when v (a float node) depends on a wrt through differentiable inputs.
 * EXTERN nodes depend on whatever their inputs depend on, so the sweep can report them. */
static uint8_t *mark_dependents(const Graph *g, int n0, int nwrt, const ValId *wrt) {
  uint8_t *dep = calloc((size_t)n0 + 1, 1);
  IR_ASSERT(dep);
  for (int i = 0; i < nwrt; i++) dep[wrt[i]] = 2; /* 2: a wrt itself */
  for (int v = 0; v < n0; v++) {
    const Node *n = ir_node(g, v);
    if (dep[v] || !dtype_is_float(n->dtype) || (op_info[n->op].flags & F_ZEROGRAD)) continue;
    unsigned diff = n->op == OP_EXTERN ? 7u : op_info[n->op].diff;
    for (int i = 0; i < ir_nin(n); i++)
      if ((diff >> i & 1) && dep[n->in[i]]) dep[v] = 1;
  }
  return dep;
}

/* The reverse sweep from y (cotangent ct[y] already set) down to node 0. */
static int reverse_sweep(AdCtx *a, const uint8_t *dep, ValId y) {
  Graph *g = a->g;
  for (ValId v = y; v >= 0; v--) {
    if (!dep[v] || a->ct[v] == IR_ERR) continue;
    Node n = *ir_node(g, v); /* a copy: rules grow the node array */
    if (n.op == OP_EXTERN) {
      extern_error(g, a->p, &n);
      return -1;
    }
    const AdRule *r = ad_rule(n.op);
    unsigned need = 0;
    for (int i = 0; i < ir_nin(&n); i++)
      if ((op_info[n.op].diff >> i & 1) && dep[n.in[i]]) need |= 1u << i;
    if (!need) continue;
    IR_ASSERT(r->vjp);
    a->loc = n.loc;
    r->vjp(a, &n, v, a->ct[v], need);
  }
  return 0;
}

/* Sets up the cotangent of y: cot, or 1 for a one-element y when cot is IR_ERR. */
static ValId seed_cotangent(Graph *g, ValId y, ValId cot, SrcLoc loc) {
  const Node *ny = ir_node(g, y);
  char sb[96], sc[96];
  if (cot == IR_ERR) {
    if (shape_numel(&ny->shape) != 1) {
      diag_error(g->ctx, loc, "reduce it first (sum, mean), or use vjp with a cotangent",
                 "gradient of a non-scalar value of shape %s", shape_str(&ny->shape, sb, 96));
      return IR_ERR;
    }
    Shape s = ny->shape;
    return ir_must(g, ir_const(g, 1.0, ny->dtype, &s, loc));
  }
  const Node *nc = ir_node(g, cot);
  if (!shape_eq(&nc->shape, &ny->shape) || nc->dtype != ny->dtype) {
    diag_error(g->ctx, loc, "the cotangent must have the shape and dtype of the value",
               "cotangent %s%s does not match the value's %s%s", dtype_name(nc->dtype),
               shape_str(&nc->shape, sc, 96), dtype_name(ny->dtype), shape_str(&ny->shape, sb, 96));
    return IR_ERR;
  }
  return cot;
}

static int vjp_core(Graph *g, const Program *p, ValId y, ValId cot, int nwrt, const ValId *wrt,
                    ValId *ct_out, SrcLoc loc) {
  if (y == IR_ERR || check_float(g, y, 0, loc)) return -1;
  for (int i = 0; i < nwrt; i++)
    if (wrt[i] == IR_ERR || check_float(g, wrt[i], 1, loc)) return -1;
  ValId seed = seed_cotangent(g, y, cot, loc);
  if (seed == IR_ERR) return -1;
  int n0 = g->nnodes;
  AdCtx a = {g, p, loc, malloc(sizeof(ValId) * ((size_t)n0 + 1)), n0};
  IR_ASSERT(a.ct);
  for (int i = 0; i < n0; i++) a.ct[i] = IR_ERR;
  uint8_t *dep = mark_dependents(g, n0, nwrt, wrt);
  int rc = 0;
  if (dep[y]) {
    a.ct[y] = seed;
    rc = reverse_sweep(&a, dep, y);
  }
  for (int i = 0; i < nwrt && rc == 0; i++) ct_out[i] = a.ct[wrt[i]];
  free(dep);
  free(a.ct);
  return rc;
}

int ad_vjp_in(const Program *p, Graph *g, ValId y, ValId cot, int nwrt, const ValId *wrt,
              ValId *grads, SrcLoc loc) {
  if (vjp_core(g, p, y, cot, nwrt, wrt, grads, loc)) return -1;
  for (int i = 0; i < nwrt; i++)
    if (grads[i] == IR_ERR) grads[i] = zeros_like(g, wrt[i], loc);
  return 0;
}

int ad_vjp(Graph *g, ValId y, ValId cot, int nwrt, const ValId *wrt, ValId *grads, SrcLoc loc) {
  return ad_vjp_in(NULL, g, y, cot, nwrt, wrt, grads, loc);
}

int ad_vjp_params(Graph *g, const Program *p, ValId y, ValId *grads, SrcLoc loc) {
  int n0 = g->nnodes, nw = 0;
  ValId *wrt = malloc(sizeof(ValId) * ((size_t)n0 + 1));
  ValId *ct = malloc(sizeof(ValId) * ((size_t)n0 + 1));
  IR_ASSERT(wrt && ct);
  for (int v = 0; v < n0; v++) {
    const Node *n = ir_node(g, v);
    if (n->op == OP_PARAM && dtype_is_float(n->dtype)) wrt[nw++] = v;
  }
  int rc = vjp_core(g, p, y, IR_ERR, nw, wrt, ct, loc);
  if (rc == 0) {
    AdCtx a = {g, p, loc, NULL, n0};
    for (int i = 0; i < p->nparams; i++) grads[i] = IR_ERR;
    for (int k = 0; k < nw; k++) {
      const Node *n = ir_node(g, wrt[k]);
      a.loc = n->loc;
      ad_accumulate(&a, &grads[n->attr.index], ct[k]);
    }
    for (int i = 0; i < p->nparams; i++)
      if (grads[i] == IR_ERR) {
        Shape s = p->params[i].shape;
        grads[i] = ir_must(g, ir_const(g, 0.0, p->params[i].dtype, &s, loc));
      }
  }
  free(wrt);
  free(ct);
  return rc;
}

/* ---- forward mode ---------------------------------------------------------------------- */
static int check_tangent(Graph *g, ValId w, ValId t, SrcLoc loc) {
  if (t == IR_ERR) return -1;
  const Node *nw = ir_node(g, w), *nt = ir_node(g, t);
  if (shape_eq(&nw->shape, &nt->shape) && nw->dtype == nt->dtype) return 0;
  char s1[96], s2[96];
  diag_error(g->ctx, loc, "a tangent has the shape and dtype of the value it perturbs",
             "tangent %s%s does not match %s%s", dtype_name(nt->dtype),
             shape_str(&nt->shape, s1, 96), dtype_name(nw->dtype), shape_str(&nw->shape, s2, 96));
  return -1;
}

/* need[v] = 1 when some ys[j] uses v. */
static uint8_t *mark_needed(const Graph *g, int n0, int ny, const ValId *ys) {
  uint8_t *need = calloc((size_t)n0 + 1, 1);
  IR_ASSERT(need);
  for (int j = 0; j < ny; j++) need[ys[j]] = 1;
  for (int v = n0 - 1; v >= 0; v--) {
    if (!need[v]) continue;
    const Node *n = ir_node(g, v);
    for (int i = 0; i < ir_nin(n); i++) need[n->in[i]] = 1;
  }
  return need;
}

/* Tangent of node v from the tangents of its inputs; -1 after a diagnostic. */
static int forward_node(AdCtx *a, ValId *tan, ValId v) {
  Graph *g = a->g;
  Node n = *ir_node(g, v);
  if (!dtype_is_float(n.dtype) || (op_info[n.op].flags & F_ZEROGRAD)) return 0;
  ValId t[3] = {IR_ERR, IR_ERR, IR_ERR};
  int any = 0;
  unsigned diff = n.op == OP_EXTERN ? 7u : op_info[n.op].diff;
  for (int i = 0; i < ir_nin(&n); i++)
    if ((diff >> i & 1) && tan[n.in[i]] != IR_ERR) t[i] = tan[n.in[i]], any = 1;
  if (!any) return 0;
  if (n.op == OP_EXTERN) {
    extern_error(g, a->p, &n);
    return -1;
  }
  const AdRule *r = ad_rule(n.op);
  IR_ASSERT(r->jvp);
  a->loc = n.loc;
  tan[v] = r->jvp(a, &n, v, t);
  return 0;
}

int ad_jvp_in(const Program *p, Graph *g, int nwrt, const ValId *wrt, const ValId *tangents, int ny,
              const ValId *ys, ValId *out, SrcLoc loc) {
  for (int i = 0; i < nwrt; i++)
    if (wrt[i] == IR_ERR || check_float(g, wrt[i], 1, loc) ||
        check_tangent(g, wrt[i], tangents[i], loc))
      return -1;
  for (int j = 0; j < ny; j++)
    if (ys[j] == IR_ERR || check_float(g, ys[j], 0, loc)) return -1;
  int n0 = g->nnodes, rc = 0;
  ValId *tan = malloc(sizeof(ValId) * ((size_t)n0 + 1));
  IR_ASSERT(tan);
  for (int v = 0; v < n0; v++) tan[v] = IR_ERR;
  uint8_t *need = mark_needed(g, n0, ny, ys), *is_wrt = calloc((size_t)n0 + 1, 1);
  IR_ASSERT(is_wrt);
  ValId first = n0;
  for (int i = 0; i < nwrt; i++) {
    tan[wrt[i]] = tangents[i];
    is_wrt[wrt[i]] = 1;
    if (wrt[i] < first) first = wrt[i];
  }
  AdCtx a = {g, p, loc, NULL, n0};
  for (ValId v = first; v < n0 && rc == 0; v++)
    if (need[v] && !is_wrt[v]) rc = forward_node(&a, tan, v);
  for (int j = 0; j < ny && rc == 0; j++)
    out[j] = tan[ys[j]] == IR_ERR ? zeros_like(g, ys[j], loc) : tan[ys[j]];
  free(tan);
  free(need);
  free(is_wrt);
  return rc;
}

int ad_jvp(Graph *g, int nwrt, const ValId *wrt, const ValId *tangents, int ny, const ValId *ys,
           ValId *out, SrcLoc loc) {
  return ad_jvp_in(NULL, g, nwrt, wrt, tangents, ny, ys, out, loc);
}

/* ---- the training entry ---------------------------------------------------------------- */
/* Copies every node of src into dst (ids shift by nothing: dst is empty), keeping the
 * stream ids of random draws so the gradient entry sees the same noise as the loss. */
static void clone_graph(Graph *dst, const Graph *src) {
  for (int i = 0; i < src->ninputs; i++)
    graph_add_input(dst, src->inputs[i].name, src->inputs[i].dtype, &src->inputs[i].shape);
  for (int v = 0; v < src->nnodes; v++) {
    ValId id = ir_must(dst, ir_emit(dst, &src->nodes[v]));
    IR_ASSERT(id == v);
  }
  dst->next_stream = src->next_stream;
}

Graph *ad_grad_entry(Program *p, const Graph *loss) {
  Ctx *c = p->ctx;
  if (loss->noutputs < 1) {
    diag_error(c, SRCLOC_NONE, NULL, "entry '%s' returns nothing to differentiate", loss->name);
    return NULL;
  }
  const Node *out = ir_node(loss, loss->outputs[0].val);
  if (!dtype_is_float(out->dtype) || shape_numel(&out->shape) != 1) {
    char sb[96];
    diag_error(c, out->loc, "the training objective must be one float number (sum or mean it)",
               "entry '%s' returns %s%s as its first output, not a float scalar", loss->name,
               dtype_name(out->dtype), shape_str(&out->shape, sb, sizeof sb));
    return NULL;
  }
  Graph *g = program_add_entry(p, arena_printf(&c->arena, "%s_grad", loss->name));
  clone_graph(g, loss);
  ValId *grads = malloc(sizeof(ValId) * ((size_t)p->nparams + 1));
  IR_ASSERT(grads);
  if (ad_vjp_params(g, p, loss->outputs[0].val, grads, out->loc)) {
    free(grads);
    graph_free(g);
    p->nentries--;
    return NULL;
  }
  for (int i = 0; i < loss->noutputs; i++)
    graph_add_output(g, loss->outputs[i].name, loss->outputs[i].val);
  for (int i = 0; i < p->nparams; i++)
    graph_add_output(g, arena_printf(&c->arena, "grad:%s", p->params[i].name), grads[i]);
  free(grads);
  return g;
}
