/* test_random_graphs.c: random well-typed graphs, compiled vs interpreted.
 *
 * Hand-written cases test each op alone; bugs in a compiler live in the combinations
 * (a broadcast feeding a transpose feeding a reduction, a view of a view returned as an
 * output, a node used by two kernels...). A small seeded generator builds a few hundred
 * random graphs from a pool of values: elementwise ops (with domains kept safe: log and
 * sqrt only see 1 + x*x), broadcasts, reshapes, transposes, slices, pads, concats,
 * reductions, matmuls against parameters, where/compare, random draws. Each graph is
 * compiled (JIT, fast setting, graph passes on) and run against the interpreter; every
 * third graph that has parameters is also differentiated (ad_grad_entry) and its gradient
 * entry compared the same way. A failure prints the seed and the graph;
 *   GRADC_RANDOM_SEED=1234 build/tests/test_random_graphs
 * replays exactly that graph, GRADC_RANDOM_COUNT=N changes how many run.
 */
#include <check.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "autodiff.h"
#include "codegen.h"
#include "interp.h"
#include "testutil.h"

#define L SRCLOC_NONE

typedef struct {
  uint64_t s;
} Rng;

static uint64_t rnext(Rng *r) { /* splitmix64 */
  uint64_t z = (r->s += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}
static int rint_(Rng *r, int n) { return (int)(rnext(r) % (uint64_t)n); }

typedef struct {
  TuGraph t;
  Rng r;
  DType dt;
  ValId pool[96];
  int npool;
  GrTensor in[4];
  int nin, nparams;
} RG;

static Shape rand_shape(RG *g) {
  static const int64_t dims[] = {1, 2, 3, 5, 7, 17};
  Shape s = {1 + rint_(&g->r, 3), {0}};
  for (int i = 0; i < s.rank; i++) s.dims[i] = dims[rint_(&g->r, 6)];
  return s;
}

static void push(RG *g, ValId v) {
  ck_assert_msg(v != IR_ERR, "generator built a bad node: %s", tu_last_diag(&g->t));
  if (g->npool < 96) g->pool[g->npool++] = v;
}

static ValId pick(RG *g) {
  /* prefer recent values so graphs get deep */
  int n = g->npool, k = rint_(&g->r, 3) ? n - 1 - rint_(&g->r, n < 4 ? n : 4) : rint_(&g->r, n);
  return g->pool[k];
}

static const Shape *shp(RG *g, ValId v) { return &g->t.g->nodes[v].shape; }

static ValId safe_pos(RG *g, ValId x) { /* 1 + x*x */
  Graph *gr = g->t.g;
  ValId sq = ir_binary(gr, OP_MUL, x, x, L);
  return ir_binary(gr, OP_ADD, sq, ir_const(gr, 1, g->dt, shp(g, x), L), L);
}

static void step_unary(RG *g) {
  static const Op ops[] = {OP_NEG, OP_SIN, OP_COS, OP_TANH, OP_SIGMOID, OP_SILU, OP_RELU, OP_SOFTPLUS,
                           OP_ATAN, OP_ABS, OP_STOPGRAD, OP_LOG, OP_SQRT, OP_RSQRT, OP_EXP};
  ValId x = pick(g);
  Op op = ops[rint_(&g->r, 15)];
  if (op == OP_LOG || op == OP_SQRT || op == OP_RSQRT) x = safe_pos(g, x);
  if (op == OP_EXP) x = ir_unary(g->t.g, OP_TANH, x, L);
  push(g, ir_unary(g->t.g, op, x, L));
}

static void step_binary(RG *g) {
  static const Op ops[] = {OP_ADD, OP_SUB, OP_MUL, OP_MAX, OP_MIN, OP_DIV, OP_SAFEMUL};
  ValId a = pick(g), b = pick(g);
  Op op = ops[rint_(&g->r, 7)];
  /* NumPy broadcasting when the shapes allow it; else combine with a same-shape value */
  Shape sa = *shp(g, a), sb = *shp(g, b);
  int ok = 1;
  for (int i = 1; i <= sa.rank && i <= sb.rank; i++) {
    int64_t da = sa.dims[sa.rank - i], db = sb.dims[sb.rank - i];
    if (da != db && da != 1 && db != 1) ok = 0;
  }
  if (!ok) b = ir_unary(g->t.g, OP_COS, a, L);
  if (op == OP_DIV) b = safe_pos(g, b);
  ck_assert(ir_broadcast_pair(g->t.g, &a, &b, "op", L) == 0);
  push(g, ir_binary(g->t.g, op, a, b, L));
}

static void step_shape(RG *g) {
  Graph *gr = g->t.g;
  ValId x = pick(g);
  Shape s = *shp(g, x);
  switch (rint_(&g->r, 6)) {
  case 0: { /* broadcast a size-1 dim (or add one) */
    Shape t = s;
    int d = rint_(&g->r, s.rank);
    if (t.dims[d] == 1) t.dims[d] = 1 + rint_(&g->r, 6);
    push(g, ir_broadcast(gr, x, &t, L));
    break;
  }
  case 1: { /* reshape: flatten, or split the element count */
    Shape t = {1, {shape_numel(&s)}};
    if (rint_(&g->r, 2) && s.rank < 4) {
      t = s;
      t.rank++;
      memmove(&t.dims[1], &t.dims[0], (size_t)s.rank * sizeof t.dims[0]);
      t.dims[0] = 1;
    }
    push(g, ir_reshape(gr, x, &t, L));
    break;
  }
  case 2: { /* transpose */
    int32_t perm[IR_MAXRANK] = {0, 1, 2, 3, 4, 5};
    for (int i = s.rank - 1; i > 0; i--) {
      int j = rint_(&g->r, i + 1), t = perm[i];
      perm[i] = perm[j];
      perm[j] = t;
    }
    push(g, ir_transpose(gr, x, perm, L));
    break;
  }
  case 3: { /* slice */
    int ax = rint_(&g->r, s.rank);
    int64_t lo = rint_(&g->r, (int)s.dims[ax]), hi = lo + 1 + rint_(&g->r, (int)(s.dims[ax] - lo));
    push(g, ir_slice(gr, x, ax, lo, hi, L));
    break;
  }
  case 4: push(g, ir_pad(gr, x, rint_(&g->r, s.rank), rint_(&g->r, 3), rint_(&g->r, 3), L)); break;
  default: push(g, ir_concat(gr, x, ir_unary(gr, OP_SIN, x, L), rint_(&g->r, s.rank), L)); break;
  }
}

static void step_reduce(RG *g) {
  static const Op ops[] = {OP_SUM, OP_RMAX, OP_RMIN};
  ValId x = pick(g);
  uint32_t axes = (uint32_t)(1 + rint_(&g->r, (1 << shp(g, x)->rank) - 1));
  push(g, ir_reduce(g->t.g, ops[rint_(&g->r, 3)], x, axes, L));
}

static void step_matmul(RG *g) {
  Graph *gr = g->t.g;
  ValId x = pick(g);
  Shape s = *shp(g, x);
  if (s.rank == 1) {
    Shape t = {2, {1, s.dims[0]}};
    x = ir_reshape(gr, x, &t, L);
    s = t;
  }
  int64_t k = s.dims[s.rank - 1], n = 1 + rint_(&g->r, 9);
  int tb = rint_(&g->r, 2);
  Shape ws = s;
  ws.dims[s.rank - 2] = tb ? n : k;
  ws.dims[s.rank - 1] = tb ? k : n;
  char name[16];
  snprintf(name, sizeof name, "w%d", g->nparams++);
  ValId w = tu_param(&g->t, name, g->dt, ws, INIT_NORMAL, 0.5, 0);
  push(g, ir_matmul(gr, x, w, 0, tb, L));
}

static void step_misc(RG *g) {
  Graph *gr = g->t.g;
  ValId a = pick(g);
  const Shape *s = shp(g, a);
  switch (rint_(&g->r, 3)) {
  case 0: {
    ValId c = ir_binary(gr, OP_GT, a, ir_const(gr, 0.1, g->dt, s, L), L);
    push(g, ir_where(gr, c, a, ir_unary(gr, OP_NEG, a, L), L));
    break;
  }
  case 1: push(g, ir_binary(gr, OP_ADD, a, ir_random(gr, rint_(&g->r, 2) ? OP_RANDN : OP_RANDU, g->dt, s, L), L)); break;
  default: push(g, ir_binary(gr, OP_MUL, a, ir_iota(gr, g->dt, s, rint_(&g->r, s->rank), L), L)); break;
  }
}

/* Builds the graph of `seed`; returns 1 if it has parameters (a gradient makes sense). */
static void build(RG *g, uint64_t seed) {
  memset(g, 0, sizeof *g);
  tu_graph_init(&g->t);
  g->r.s = seed;
  g->dt = rint_(&g->r, 4) ? DT_F64 : DT_F32;
  int nin = 1 + rint_(&g->r, 3);
  for (int i = 0; i < nin; i++) {
    char name[16];
    snprintf(name, sizeof name, "x%d", i);
    Shape s = rand_shape(g);
    push(g, tu_input(&g->t, name, g->dt, s));
    g->in[i] = tu_tensor(g->dt, s);
    tu_fill_uniform(&g->in[i], -1.5, 1.5, seed * 7 + (uint64_t)i);
    g->nin++;
  }
  int nsteps = 3 + rint_(&g->r, 14);
  for (int i = 0; i < nsteps; i++) {
    int k = rint_(&g->r, 10);
    if (k < 3) step_unary(g);
    else if (k < 5) step_binary(g);
    else if (k < 7) step_shape(g);
    else if (k < 8) step_reduce(g);
    else if (k < 9) step_matmul(g);
    else step_misc(g);
  }
  int nout = 1 + rint_(&g->r, 2);
  for (int i = 0; i < nout; i++) {
    char name[16];
    snprintf(name, sizeof name, "o%d", i);
    graph_add_output(g->t.g, name, i == 0 ? g->pool[g->npool - 1] : pick(g));
  }
}

static void rg_free(RG *g) {
  for (int i = 0; i < g->nin; i++) gr_tensor_free(&g->in[i]);
  tu_graph_free(&g->t);
}

/* 0 if entry eg agrees between interpreter and JIT; else a message in msg. */
static int run_entry(RG *g, CgJit *j, const Graph *eg, const GrTensor *params, char *msg, size_t n) {
  int no = eg->noutputs;
  GrTensor want[40], got[40];
  char err[256];
  if (no > 40) return 0;
  if (interp_run(eg, &g->t.prog, g->in, params, want, 3, 1, err, sizeof err)) {
    snprintf(msg, n, "interp: %s", err);
    return -1;
  }
  if (cg_jit_run(j, eg->name, g->in, params, got, 3, 1, err, sizeof err)) {
    snprintf(msg, n, "jit: %s", err);
    return -1;
  }
  int bad = 0;
  for (int k = 0; k < no && !bad; k++) {
    int64_t m = tu_numel(&want[k]);
    double *w = malloc((size_t)(m + 1) * sizeof *w), scale = 1;
    for (int64_t i = 0; i < m; i++) {
      w[i] = tu_get(&want[k], i);
      if (isfinite(w[i]) && fabs(w[i]) > scale) scale = fabs(w[i]);
    }
    double rt = g->dt == DT_F32 ? 2e-4 : 1e-10;
    char cm[200];
    if (!tu_close(&got[k], w, rt, rt * scale, cm, sizeof cm)) {
      snprintf(msg, n, "entry %s output %d: %s", eg->name, k, cm);
      bad = 1;
    }
    free(w);
  }
  for (int k = 0; k < no; k++) {
    gr_tensor_free(&want[k]);
    gr_tensor_free(&got[k]);
  }
  return bad ? -1 : 0;
}

/* Returns 0 or -1 (and prints the seed and the graph). */
static int check_seed(uint64_t seed) {
  RG g;
  build(&g, seed);
  Program *p = &g.t.prog;
  Graph *gg = NULL;
  if (p->nparams && seed % 3 == 0) {
    Graph *lg = g.t.g;
    ValId o = lg->outputs[0].val;
    const Shape *s = shp(&g, o);
    uint32_t all = (1u << s->rank) - 1;
    ValId sq = ir_binary(lg, OP_MUL, o, o, L);
    ValId sum = all ? ir_reduce(lg, OP_SUM, sq, all, L) : sq;
    Shape s0 = {0, {0}};
    lg->noutputs = 0;
    graph_add_output(lg, "loss", ir_reshape(lg, sum, &s0, L));
    gg = ad_grad_entry(p, lg);
  }
  CgOptions o;
  cg_options_default(&o);
  o.opt_level = 0;
  o.no_graph_opt = seed % 5 == 4;
  char msg[512] = "";
  int rc = -1;
  GrTensor params[64];
  CgJit *j = cg_jit_compile(&g.t.ctx, p, &o);
  if (!j) {
    snprintf(msg, sizeof msg, "compile failed");
  } else if (interp_init_params(p, seed, params) == 0) {
    rc = run_entry(&g, j, g.t.g, params, msg, sizeof msg);
    if (!rc && gg) rc = run_entry(&g, j, gg, params, msg, sizeof msg);
    for (int i = 0; i < p->nparams; i++) gr_tensor_free(&params[i]);
  }
  if (rc) {
    fprintf(stderr, "random graph seed %llu failed: %s\n(replay: GRADC_RANDOM_SEED=%llu)\n",
            (unsigned long long)seed, msg, (unsigned long long)seed);
    ir_print(g.t.g, p, stderr);
    diag_print_all(&g.t.ctx, stderr);
  }
  cg_jit_free(j);
  rg_free(&g);
  return rc;
}

START_TEST(random_graphs) {
  const char *one = getenv("GRADC_RANDOM_SEED");
  if (one) {
    ck_assert_int_eq(check_seed(strtoull(one, NULL, 10)), 0);
    return;
  }
  const char *cnt = getenv("GRADC_RANDOM_COUNT");
  int n = cnt ? atoi(cnt) : 300, failed = 0;
  uint64_t first_bad = 0;
  for (int i = 0; i < n; i++)
    if (check_seed((uint64_t)i + 1) && !failed++) first_bad = (uint64_t)i + 1;
  ck_assert_msg(!failed, "%d of %d random graphs disagree; first seed %llu", failed, n,
                (unsigned long long)first_bad);
}
END_TEST

int main(void) {
  Suite *s = suite_create("random_graphs");
  TCase *tc = tcase_create("differential");
  tcase_set_timeout(tc, 120);
  tcase_add_test(tc, random_graphs);
  suite_add_tcase(s, tc);
  SRunner *sr = srunner_create(s);
  srunner_run_all(sr, CK_NORMAL);
  int nf = srunner_ntests_failed(sr);
  srunner_free(sr);
  return nf ? 1 : 0;
}
