/* gradcheck.c: reverse and forward mode against central finite differences.
 *
 * Why a product feature and not only a test: users write new objectives as graphs and
 * never write gradients, so the one thing they must be able to trust is the derivative
 * gradc builds from their graph. `gradc gradcheck` gives them a direct check.
 *
 * Method. The entry's float outputs are folded into one scalar L = sum_j sum(out_j * r_j)
 * with random cotangents r_j (extra graph inputs; 1 for a scalar output), so one reverse
 * sweep checks every output at once. Two graphs are built from a copy of the entry: one
 * computing L only (for the differences) and one computing L, dL/dx for every checked
 * value x (ad_vjp) and, per x, the directional derivative of L along a random tangent
 * t_x (ad_jvp; the tangents are extra inputs as well). Every checked value is an entry
 * input or a parameter, so perturbing it is a change to one buffer, and the interpreter
 * runs both graphs. Random draws inside the entry keep their stream ids and the step is
 * fixed, so L is a deterministic function of the buffers.
 *
 * Differences use the fourth-order central stencil (4 evaluations, error O(h^4)).
 *
 * Errors. err(a, b) = |a - b| / max(|a|, |b|, floor), floor = GC_FLOOR * max(1, |L|):
 * the rounding error of a central difference is about eps |L| / h, which the floor keeps
 * far below tol in f64; a gradient that is tiny compared with L is checked in absolute
 * terms. In f32 the differences are meaningless at tol 1e-6; the report says so.
 */
#include "gradcheck.h"

#include "autodiff.h"
#include "gradrt.h"
#include "interp.h"
#include "philox.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define GC_STEP 1e-5  /* relative finite-difference step */
#define GC_FLOOR 1e-3 /* see the essay above */
#define GC_SAMPLES 8  /* elements per value checked one by one */
#define GC_STREAM 0x6C000000u

typedef struct {
  const char *name;
  int is_param, index; /* entry input index or Program.params index */
  DType dtype;
  Shape shape;
  ValId node; /* the canonical INPUT/PARAM node in the derivative graph */
  double err_rev, err_fwd;
} GcItem;

typedef struct {
  Ctx *c;
  Program *p;
  const Graph *src;
  uint64_t seed;
  const GcOptions *opt;
  GcItem *items;
  int nitems, ncot;
  int *cot_out; /* [ncot] which src output each cotangent belongs to */
  int nheld;    /* stop_grad nodes held fixed in the differences (0: see through) */
  Graph *fg, *dg;
  GrTensor *inputs;  /* [dg->ninputs]: src inputs, cotangents, tangents */
  GrTensor *finputs; /* [fg->ninputs]: src inputs, cotangents (shared), held values */
  GrTensor *params;  /* [p->nparams] */
  char err[512];
} GcRun;

/* ---- tensors ----------------------------------------------------------------------------- */
static GrTensor tensor_new(DType dt, const Shape *s) {
  GrTensor t;
  memset(&t, 0, sizeof t);
  t.dtype = (int32_t)dt;
  t.rank = s->rank;
  for (int i = 0; i < s->rank; i++) t.dims[i] = s->dims[i];
  t.data = gr_alloc((size_t)shape_numel(s) * dtype_size(dt) + 8);
  return t;
}
static int64_t tensor_numel(const GrTensor *t) {
  int64_t n = 1;
  for (int i = 0; i < t->rank; i++) n *= t->dims[i];
  return n;
}
static double tget(const GrTensor *t, int64_t i) {
  switch (t->dtype) {
  case GR_F32: return ((const float *)t->data)[i];
  case GR_F64: return ((const double *)t->data)[i];
  case GR_I32: return ((const int32_t *)t->data)[i];
  default: return (double)((const int64_t *)t->data)[i];
  }
}
static void tset(GrTensor *t, int64_t i, double v) {
  switch (t->dtype) {
  case GR_F32: ((float *)t->data)[i] = (float)v; break;
  case GR_F64: ((double *)t->data)[i] = v; break;
  case GR_I32: ((int32_t *)t->data)[i] = (int32_t)v; break;
  default: ((int64_t *)t->data)[i] = (int64_t)v; break;
  }
}
static void fill_normal(GcRun *r, GrTensor *t, uint64_t stream, double scale, int add) {
  if (t->dtype != GR_F32 && t->dtype != GR_F64) return; /* integers stay 0 */
  for (int64_t i = 0, n = tensor_numel(t); i < n; i++) {
    double z = scale * gr_normal_f64(r->seed, 0, GC_STREAM + stream, (uint64_t)i);
    tset(t, i, add ? tget(t, i) + z : z);
  }
}

static void fill_uniform(GcRun *r, GrTensor *t, uint64_t stream, const double *lohi) {
  if (t->dtype != GR_F32 && t->dtype != GR_F64) return;
  for (int64_t i = 0, n = tensor_numel(t); i < n; i++)
    tset(t, i,
         lohi[0] +
             (lohi[1] - lohi[0]) * gr_uniform_f64(r->seed, 2, GC_STREAM + stream, (uint64_t)i));
}

/* ---- the two graphs --------------------------------------------------------------------- */
static void collect_items(GcRun *r) {
  const Graph *s = r->src;
  uint8_t *used = calloc((size_t)r->p->nparams + 1, 1);
  IR_ASSERT(used);
  for (int v = 0; v < s->nnodes; v++)
    if (s->nodes[v].op == OP_PARAM) used[s->nodes[v].attr.index] = 1;
  r->items = calloc((size_t)(s->ninputs + r->p->nparams) + 1, sizeof *r->items);
  IR_ASSERT(r->items);
  for (int i = 0; i < s->ninputs; i++)
    if (dtype_is_float(s->inputs[i].dtype))
      r->items[r->nitems++] =
          (GcItem){s->inputs[i].name, 0, i, s->inputs[i].dtype, s->inputs[i].shape, IR_ERR, 0, 0};
  for (int i = 0; i < r->p->nparams; i++)
    if (used[i] && dtype_is_float(r->p->params[i].dtype))
      r->items[r->nitems++] = (GcItem){r->p->params[i].name,  1,      i, r->p->params[i].dtype,
                                       r->p->params[i].shape, IR_ERR, 0, 0};
  free(used);
  if (!r->opt->see_through_stop_grad)
    for (int v = 0; v < s->nnodes; v++) r->nheld += s->nodes[v].op == OP_STOPGRAD;
  r->cot_out = calloc((size_t)s->noutputs + 1, sizeof(int));
  IR_ASSERT(r->cot_out);
  for (int j = 0; j < s->noutputs; j++)
    if (dtype_is_float(ir_node(s, s->outputs[j].val)->dtype)) r->cot_out[r->ncot++] = j;
}

/* Copies src into w with one INPUT/PARAM node per entry input/parameter (so each checked
 * value is one node), then builds L. Returns L's id. held == NULL: every stop_grad node
 * becomes a new input (its value held fixed); else held[k] receives the copy of the k-th
 * stop_grad node, whose value fills that input. */
static ValId build_objective(GcRun *r, Graph *w, ValId *pnode, ValId *held) {
  const Graph *s = r->src;
  SrcLoc nl = SRCLOC_NONE;
  for (int i = 0; i < s->ninputs; i++)
    graph_add_input(w, s->inputs[i].name, s->inputs[i].dtype, &s->inputs[i].shape);
  for (int j = 0; j < r->ncot; j++) {
    const Node *o = ir_node(s, s->outputs[r->cot_out[j]].val);
    graph_add_input(w, arena_printf(&r->c->arena, "gc:cot%d", j), o->dtype, &o->shape);
  }
  ValId *map = malloc(sizeof(ValId) * ((size_t)s->nnodes + 1)),
        *inode = malloc(sizeof(ValId) * ((size_t)s->ninputs + 1));
  IR_ASSERT(map && inode);
  for (int i = 0; i < s->ninputs; i++) inode[i] = ir_must(w, ir_input(w, i, nl));
  for (int i = 0; i < r->p->nparams; i++) pnode[i] = IR_ERR;
  for (int k = 0; k < r->nitems; k++)
    if (r->items[k].is_param)
      pnode[r->items[k].index] = ir_must(w, ir_param(w, r->p, r->items[k].index, nl));
  for (int v = 0; v < s->nnodes; v++) {
    Node n = s->nodes[v];
    if (n.op == OP_INPUT) {
      map[v] = inode[n.attr.index];
      continue;
    }
    if (n.op == OP_PARAM && pnode[n.attr.index] != IR_ERR) {
      map[v] = pnode[n.attr.index];
      continue;
    }
    if (n.op == OP_STOPGRAD && r->nheld && !held) {
      int k = graph_add_input(w, arena_printf(&r->c->arena, "gc:held%d", v), n.dtype, &n.shape);
      map[v] = ir_must(w, ir_input(w, k, nl));
      continue;
    }
    for (int i = 0; i < ir_nin(&n); i++) n.in[i] = map[n.in[i]];
    map[v] = ir_must(w, ir_emit(w, &n));
    if (n.op == OP_STOPGRAD && held) *held++ = map[v];
  }
  w->next_stream = s->next_stream;
  Shape scalar = {0, {0}};
  ValId L = IR_ERR;
  for (int j = 0; j < r->ncot; j++) {
    ValId o = map[s->outputs[r->cot_out[j]].val];
    ValId cot = ir_must(w, ir_input(w, s->ninputs + j, nl));
    ValId prod = ir_must(w, ir_binary(w, OP_MUL, o, cot, nl));
    uint32_t all = (1u << ir_node(w, prod)->shape.rank) - 1;
    ValId t =
        ir_must(w, ir_reshape(w, ir_must(w, ir_reduce(w, OP_SUM, prod, all, nl)), &scalar, nl));
    L = L == IR_ERR ? t : ir_must(w, ir_binary(w, OP_ADD, L, t, nl));
  }
  for (int k = 0; k < r->nitems; k++)
    if (!r->items[k].is_param)
      r->items[k].node = inode[r->items[k].index];
    else
      r->items[k].node = pnode[r->items[k].index];
  free(map);
  free(inode);
  return L;
}

static int build_graphs(GcRun *r) {
  ValId *pnode = malloc(sizeof(ValId) * ((size_t)r->p->nparams + 1));
  IR_ASSERT(pnode);
  ValId *held = malloc(sizeof(ValId) * ((size_t)r->nheld + 1));
  IR_ASSERT(held);
  r->fg = graph_new(r->c, "gradcheck_f");
  graph_add_output(r->fg, "L", build_objective(r, r->fg, pnode, NULL));
  r->dg = graph_new(r->c, "gradcheck_d");
  ValId L = build_objective(r, r->dg, pnode, held);
  free(pnode);
  for (int k = 0; k < r->nitems; k++)
    graph_add_input(r->dg, arena_printf(&r->c->arena, "gc:tan%d", k), r->items[k].dtype,
                    &r->items[k].shape);
  ValId *wrt = malloc(sizeof(ValId) * ((size_t)r->nitems + 1)),
        *gr = malloc(sizeof(ValId) * ((size_t)r->nitems + 1));
  IR_ASSERT(wrt && gr);
  for (int k = 0; k < r->nitems; k++) wrt[k] = r->items[k].node;
  int rc = ad_vjp_in(r->p, r->dg, L, IR_ERR, r->nitems, wrt, gr, SRCLOC_NONE);
  graph_add_output(r->dg, "L", L);
  for (int k = 0; k < r->nitems && rc == 0; k++) graph_add_output(r->dg, "grad", gr[k]);
  for (int k = 0; k < r->nitems && rc == 0; k++) {
    ValId t = ir_must(r->dg, ir_input(r->dg, r->src->ninputs + r->ncot + k, SRCLOC_NONE)), jv;
    rc = ad_jvp_in(r->p, r->dg, 1, &wrt[k], &t, 1, &L, &jv, SRCLOC_NONE);
    if (rc == 0) graph_add_output(r->dg, "jvp", jv);
  }
  for (int k = 0; k < r->nheld && rc == 0; k++) graph_add_output(r->dg, "held", held[k]);
  free(held);
  free(wrt);
  free(gr);
  char vb[256]; /* what autodiff emitted must be well formed (an internal invariant) */
  if (rc == 0 && ir_verify(r->dg, r->p, vb, sizeof vb)) {
    fprintf(stderr, "gradc: internal: gradcheck graph: %s\n", vb);
    IR_ASSERT(!"autodiff produced an ill-formed graph");
  }
  return rc;
}

/* ---- evaluation ---------------------------------------------------------------------------- */
static int eval_L(GcRun *r, double *L) {
  GrTensor out;
  if (interp_run(r->fg, r->p, r->finputs, r->params, &out, r->seed, 0, r->err, sizeof r->err))
    return -1;
  *L = tget(&out, 0);
  gr_tensor_free(&out);
  return 0;
}

static GrTensor *item_buf(GcRun *r, const GcItem *it) {
  return it->is_param ? &r->params[it->index] : &r->inputs[it->index];
}

static double rel_err(double a, double b, double floor) {
  double d = fmax(fmax(fabs(a), fabs(b)), floor);
  double e = fabs(a - b) / d;
  return isnan(e) ? INFINITY : e;
}

/* Fourth-order central difference of L along direction dir (NULL: the unit vector at
 * element e): (L(-2h) - 8 L(-h) + 8 L(h) - L(2h)) / 12h. Its truncation error is O(h^4),
 * so curved functions (time embeddings with high frequencies) do not fail spuriously. */
static int central_diff(GcRun *r, GrTensor *x, const GrTensor *dir, int64_t e, double *out) {
  static const double off[4] = {-2, -1, 1, 2}, wt[4] = {1, -8, 8, -1};
  int64_t n = tensor_numel(x);
  double *save = malloc(sizeof(double) * (size_t)n), scale = 1, acc = 0, l = 0;
  IR_ASSERT(save);
  for (int64_t i = 0; i < n; i++) save[i] = tget(x, i);
  if (dir) {
    for (int64_t i = 0; i < n; i++) scale = fmax(scale, fabs(save[i]));
  } else {
    scale = fmax(1, fabs(save[e]));
  }
  double h = GC_STEP * scale;
  int rc = 0;
  for (int k = 0; k < 4 && rc == 0; k++) {
    if (dir)
      for (int64_t i = 0; i < n; i++) tset(x, i, save[i] + off[k] * h * tget(dir, i));
    else
      tset(x, e, save[e] + off[k] * h);
    rc = eval_L(r, &l);
    acc += wt[k] * l;
  }
  for (int64_t i = 0; i < n; i++) tset(x, i, save[i]);
  free(save);
  *out = acc / (12 * h);
  return rc;
}

/* Fills items[k].err_rev / err_fwd from the derivative run's outputs. */
static int check_item(GcRun *r, int k, const GrTensor *outs, double floor) {
  GcItem *it = &r->items[k];
  GrTensor *x = item_buf(r, it);
  const GrTensor *grad = &outs[1 + k], *tan = &r->inputs[r->src->ninputs + r->ncot + k];
  double fd, dot = 0, jv = tget(&outs[1 + r->nitems + k], 0);
  int64_t n = tensor_numel(x);
  if (central_diff(r, x, tan, 0, &fd)) return -1;
  for (int64_t i = 0; i < n; i++) dot += tget(grad, i) * tget(tan, i);
  it->err_rev = rel_err(dot, fd, floor);
  it->err_fwd = rel_err(jv, fd, floor);
  int ns = n < GC_SAMPLES ? (int)n : GC_SAMPLES;
  for (int s = 0; s < ns; s++) {
    int64_t e = n <= GC_SAMPLES
                    ? s
                    : (int64_t)(gr_uniform_f64(r->seed, 1, GC_STREAM + (uint64_t)k, (uint64_t)s) *
                                (double)n);
    if (central_diff(r, x, NULL, e, &fd)) return -1;
    it->err_rev = fmax(it->err_rev, rel_err(tget(grad, e), fd, floor));
  }
  return 0;
}

static void fill_data(GcRun *r) {
  const Graph *d = r->dg;
  r->inputs = calloc((size_t)d->ninputs + 1, sizeof(GrTensor));
  r->params = calloc((size_t)r->p->nparams + 1, sizeof(GrTensor));
  IR_ASSERT(r->inputs && r->params);
  for (int i = 0; i < d->ninputs; i++) {
    r->inputs[i] = tensor_new(d->inputs[i].dtype, &d->inputs[i].shape);
    int scalar_cot = i >= r->src->ninputs && i < r->src->ninputs + r->ncot &&
                     shape_numel(&d->inputs[i].shape) == 1;
    if (scalar_cot)
      tset(&r->inputs[i], 0, 1.0);
    else if (r->opt->range && i < r->opt->nrange && i < r->src->ninputs)
      fill_uniform(r, &r->inputs[i], (uint64_t)i, r->opt->range[i]);
    else
      fill_normal(r, &r->inputs[i], (uint64_t)i, 1.0, 0);
  }
  interp_init_params(r->p, r->seed, r->params);
  for (int i = 0; i < r->p->nparams; i++)
    fill_normal(r, &r->params[i], 0x1000u + (uint64_t)i, 0.1, 1);
}

static void print_report(const GcRun *r, double L, double tol, FILE *out) {
  int f64 = 1;
  for (int k = 0; k < r->nitems; k++) f64 &= r->items[k].dtype == DT_F64;
  fprintf(out, "gradcheck: entry '%s', seed %llu, tol %.1e, L = %.10g\n", r->src->name,
          (unsigned long long)r->seed, tol, L);
  if (!f64)
    fprintf(out,
            "warning: not elaborated in f64: finite differences are too coarse for this tol\n");
  if (r->nheld)
    fprintf(out, "  (%d stop_grad value%s held fixed in the differences)\n", r->nheld,
            r->nheld == 1 ? "" : "s");
  fprintf(out, "  %-6s %-32s %-14s %12s %12s  %s\n", "kind", "name", "shape", "reverse", "forward",
          "status");
  for (int k = 0; k < r->nitems; k++) {
    const GcItem *it = &r->items[k];
    char sb[96];
    int bad = !(it->err_rev <= tol) || !(it->err_fwd <= tol);
    fprintf(out, "  %-6s %-32s %-14s %12.3e %12.3e  %s\n", it->is_param ? "param" : "input",
            it->name, shape_str(&it->shape, sb, sizeof sb), it->err_rev, it->err_fwd,
            bad ? "FAIL" : "ok");
  }
}

static void run_free(GcRun *r) {
  if (r->inputs && r->dg)
    for (int i = 0; i < r->dg->ninputs; i++) gr_tensor_free(&r->inputs[i]);
  if (r->finputs && r->fg) /* the first ones share r->inputs' buffers */
    for (int i = r->src->ninputs + r->ncot; i < r->fg->ninputs; i++) gr_tensor_free(&r->finputs[i]);
  free(r->finputs);
  if (r->params)
    for (int i = 0; i < r->p->nparams; i++) gr_tensor_free(&r->params[i]);
  free(r->inputs);
  free(r->params);
  free(r->items);
  free(r->cot_out);
  graph_free(r->fg);
  graph_free(r->dg);
}

/* The inputs of the differences graph: the entry's inputs and cotangents (shared buffers,
 * so perturbations are seen), then the stop_grad values at the base point (moved out of
 * the derivative run's outputs). */
static void hold_values(GcRun *r, GrTensor *outs) {
  int nshared = r->src->ninputs + r->ncot;
  r->finputs = calloc((size_t)r->fg->ninputs + 1, sizeof(GrTensor));
  IR_ASSERT(r->finputs && r->fg->ninputs == nshared + r->nheld);
  for (int i = 0; i < nshared; i++) r->finputs[i] = r->inputs[i];
  for (int k = 0; k < r->nheld; k++) {
    GrTensor *o = &outs[1 + 2 * r->nitems + k];
    r->finputs[nshared + k] = *o;
    o->data = NULL;
  }
}

static int check_all(GcRun *r, double tol, FILE *report) {
  GrTensor *outs = calloc((size_t)r->dg->noutputs + 1, sizeof(GrTensor));
  IR_ASSERT(outs);
  if (interp_run(r->dg, r->p, r->inputs, r->params, outs, r->seed, 0, r->err, sizeof r->err)) {
    free(outs);
    return -1;
  }
  hold_values(r, outs);
  double L = tget(&outs[0], 0), floor = GC_FLOOR * fmax(1, fabs(L));
  int rc = 0;
  for (int k = 0; k < r->nitems && rc == 0; k++) rc = check_item(r, k, outs, floor);
  for (int i = 0; i < r->dg->noutputs; i++) gr_tensor_free(&outs[i]);
  free(outs);
  if (rc) return -1;
  if (report) print_report(r, L, tol, report);
  for (int k = 0; k < r->nitems; k++)
    if (!(r->items[k].err_rev <= tol) || !(r->items[k].err_fwd <= tol)) return 1;
  return 0;
}

int gc_check_entry(Ctx *c, Program *p, Graph *g, uint64_t seed, double tol, FILE *report) {
  GcOptions o = {seed, tol, NULL, 0, 0};
  return gc_check_entry_opts(c, p, g, &o, report);
}

int gc_check_entry_opts(Ctx *c, Program *p, Graph *g, const GcOptions *o, FILE *report) {
  GcRun r;
  double tol = o->tol > 0 ? o->tol : GC_DEFAULT_TOL;
  memset(&r, 0, sizeof r);
  r.c = c, r.p = p, r.src = g, r.seed = o->seed, r.opt = o;
  collect_items(&r);
  int rc = -1;
  if (r.ncot == 0) {
    diag_error(c, SRCLOC_NONE, "gradcheck differentiates float outputs",
               "entry '%s' has no float output to check", g->name);
  } else if (r.nitems == 0) {
    diag_error(c, SRCLOC_NONE, NULL, "entry '%s' has no float input or parameter to check",
               g->name);
  } else if (build_graphs(&r) == 0) {
    fill_data(&r);
    rc = check_all(&r, tol, report);
    if (rc < 0) diag_error(c, SRCLOC_NONE, NULL, "gradcheck: %s", r.err);
  }
  run_free(&r);
  return rc;
}

/* ---- entries for numeric checks in executables ---------------------------------------------
 * A training executable checks its compiled gradient by finite differences of the loss
 * (`prog gradcheck`). The gradient gradc derives treats stop_grad values as constants,
 * while a plain difference of the loss sees them move (IMM's target branch is the same
 * network under stop_grad), so the two disagree by design. These two entries let the
 * executable hold the stop_grad values fixed, exactly as gc_check_entry does:
 *   HELD(inputs...)            -> (outputs..., "held:K"...)   the stop_grad values
 *   FROZEN(inputs..., held...) -> outputs...                   stop_grad nodes read inputs */
int gc_add_frozen_entries(Program *p, const Graph *src, const char *held_name,
                          const char *frozen_name) {
  Graph *held = program_add_entry(p, held_name), *frozen = program_add_entry(p, frozen_name);
  for (int i = 0; i < src->ninputs; i++) {
    const GInput *in = &src->inputs[i];
    graph_add_input(held, in->name, in->dtype, &in->shape);
    graph_add_input(frozen, in->name, in->dtype, &in->shape);
  }
  ValId *mh = malloc(sizeof(ValId) * ((size_t)src->nnodes + 1));
  ValId *mf = malloc(sizeof(ValId) * ((size_t)src->nnodes + 1));
  IR_ASSERT(mh && mf);
  int nheld = 0;
  for (int v = 0; v < src->nnodes; v++) {
    Node a = src->nodes[v], b = src->nodes[v];
    for (int i = 0; i < ir_nin(&a); i++) a.in[i] = mh[a.in[i]], b.in[i] = mf[b.in[i]];
    mh[v] = ir_must(held, ir_emit(held, &a));
    if (a.op == OP_STOPGRAD) {
      const char *name = arena_printf(&p->ctx->arena, "held:%d", nheld++);
      graph_add_output(held, name, mh[v]);
      int k = graph_add_input(frozen, name, a.dtype, &a.shape);
      mf[v] = ir_must(frozen, ir_input(frozen, k, a.loc));
    } else {
      mf[v] = ir_must(frozen, ir_emit(frozen, &b));
    }
  }
  /* outputs first: the runtime reads the loss as output 0 of HELD */
  GOutput *extra = malloc(sizeof *extra * ((size_t)held->noutputs + 1));
  IR_ASSERT(extra);
  memcpy(extra, held->outputs, sizeof *extra * (size_t)held->noutputs);
  int nextra = held->noutputs;
  held->noutputs = 0;
  for (int j = 0; j < src->noutputs; j++) {
    graph_add_output(held, src->outputs[j].name, mh[src->outputs[j].val]);
    graph_add_output(frozen, src->outputs[j].name, mf[src->outputs[j].val]);
  }
  for (int j = 0; j < nextra; j++) graph_add_output(held, extra[j].name, extra[j].val);
  held->next_stream = frozen->next_stream = src->next_stream;
  free(extra);
  free(mh);
  free(mf);
  return nheld;
}
