/* test_shard.c: random draws of a data-parallel shard (GrRunCtx.shard, docs/distributed.md).
 *
 * The promise of distributed training is that N ranks, each running the program built
 * for the local batch B/N, draw exactly the noise the single process draws for the
 * global batch B: a draw of rank >= 1 is split along its leading axis, rank k holding
 * rows [k*R, (k+1)*R). So a graph with draws [R, 3] (per row), [G] (per group) and a
 * scalar is built twice, with local sizes (R, G) and global sizes (2R, 2G); shards 0 and
 * 1 of the local graph must equal the two halves of the global graph, bit for bit, in
 * the compiled code (serial and on a thread pool, fused with a consumer) and in the
 * interpreter; rank-0 draws (scalars) are the same on every shard; and shard 0 is the
 * old numbering (every existing draw unchanged).
 */
#include <check.h>
#include <string.h>

#include "codegen.h"
#include "interp.h"
#include "philox.h"
#include "testutil.h"

#define L SRCLOC_NONE
#define NOUT 4

/* Outputs: randn f32 [R, 3] * 2 (fused), randu f64 [G], randn f32 [R, 3], randn f32 []. */
static void build(TuGraph *t, int64_t R, int64_t G) {
  tu_graph_init(t);
  Graph *g = t->g;
  Shape sr = TU_SHAPE(R, 3), sg = TU_SHAPE(G), s0 = TU_SHAPE0;
  ValId a = ir_random(g, OP_RANDN, DT_F32, &sr, L);
  ValId b = ir_random(g, OP_RANDU, DT_F64, &sg, L);
  ValId c = ir_random(g, OP_RANDN, DT_F32, &sr, L);
  ValId d = ir_random(g, OP_RANDN, DT_F32, &s0, L);
  /* the same streams in both graphs (fresh ids count up identically) */
  graph_add_output(g, "a2", ir_binary(g, OP_MUL, a, ir_const(g, 2, DT_F32, &sr, L), L));
  graph_add_output(g, "b", b);
  graph_add_output(g, "c", c);
  graph_add_output(g, "d", d);
}

static size_t esize(const GrTensor *t) { return t->dtype == GR_F64 ? 8 : 4; }
static int64_t numel(const GrTensor *t) {
  int64_t n = 1;
  for (int i = 0; i < t->rank; i++) n *= t->dims[i];
  return n;
}

/* Runs entry "test" of the JIT with a given shard, through the uniform wrapper. */
static void jit_run(CgJit *j, const TuGraph *t, uint64_t shard, GrPool *pool, GrTensor *outs) {
  const Graph *g = t->g;
  void *args[NOUT];
  for (int k = 0; k < NOUT; k++) {
    const Shape *s = &g->nodes[g->outputs[k].val].shape;
    outs[k] = tu_tensor(g->nodes[g->outputs[k].val].dtype, *s);
    args[k] = outs[k].data;
  }
  int64_t wsb = cg_jit_workspace_bytes(j, "test");
  void *ws = gr_alloc((size_t)(wsb > 0 ? wsb : 64));
  GrRunCtx rc = {.seed = 0xabcdef1234ULL, .step = 41, .pool = pool, .shard = shard};
  GrEntryFn fn = cg_jit_entry(j, "test");
  ck_assert(fn);
  fn(args, ws, &rc);
  gr_free(ws);
}

/* local shard k of output o equals the k-th half of the global output (rank >= 1), or
 * all of it (rank 0). */
static void check_halves(GrTensor loc[2][NOUT], const GrTensor *glob, const char *what) {
  for (int o = 0; o < NOUT; o++) {
    size_t bytes = (size_t)numel(&loc[0][o]) * esize(&loc[0][o]);
    for (int k = 0; k < 2; k++) {
      const char *gp = (const char *)glob[o].data + (glob[o].rank > 0 ? (size_t)k * bytes : 0);
      ck_assert_msg(memcmp(loc[k][o].data, gp, bytes) == 0, "%s: output %d of shard %d differs", what, o, k);
    }
  }
}

static void free_outs(GrTensor *o) {
  for (int k = 0; k < NOUT; k++) gr_tensor_free(&o[k]);
}

START_TEST(shards_are_slices_of_the_global_draw) {
  TuGraph loc, glob;
  build(&loc, 5, 3);
  build(&glob, 10, 6);
  CgOptions co;
  cg_options_default(&co);
  co.opt_level = 0;
  co.par_grain = 1; /* many chunks on the pool */
  CgJit *jl = cg_jit_compile(&loc.ctx, &loc.prog, &co), *jg = cg_jit_compile(&glob.ctx, &glob.prog, &co);
  ck_assert(jl && jg);
  GrPool *pool = gr_pool_create(3);
  GrPool *pools[2] = {NULL, pool};
  GrTensor gout[NOUT], lout[2][NOUT];
  for (int p = 0; p < 2; p++) {
    jit_run(jg, &glob, 0, pools[p], gout);
    for (int k = 0; k < 2; k++) jit_run(jl, &loc, (uint64_t)k, pools[p], lout[k]);
    check_halves(lout, gout, p ? "jit, pool" : "jit, serial");
    /* shard 0 keeps the old numbering: counter = flat index */
    const float *c = gout[2].data;
    for (int64_t i = 0; i < 30; i++) ck_assert(c[i] == gr_normal_f32(0xabcdef1234ULL, 41, glob.g->nodes[glob.g->outputs[2].val].attr.stream, (uint64_t)i));
    free_outs(gout), free_outs(lout[0]), free_outs(lout[1]);
  }
  /* the interpreter agrees with the same rule */
  char err[256];
  GrTensor iout[NOUT], ilout[2][NOUT];
  ck_assert_int_eq(interp_run(glob.g, &glob.prog, NULL, NULL, iout, 0xabcdef1234ULL, 41, err, sizeof err), 0);
  for (int k = 0; k < 2; k++)
    ck_assert_int_eq(interp_run_shard(loc.g, &loc.prog, NULL, NULL, ilout[k], 0xabcdef1234ULL, 41, (uint64_t)k, err, sizeof err), 0);
  check_halves(ilout, iout, "interp");
  jit_run(jl, &loc, 1, NULL, lout[1]);
  for (int o = 1; o < NOUT; o++) /* a2 is x*2 in both: identical bits too */
    ck_assert(memcmp(lout[1][o].data, ilout[1][o].data, (size_t)numel(&lout[1][o]) * esize(&lout[1][o])) == 0);
  free_outs(iout), free_outs(ilout[0]), free_outs(ilout[1]), free_outs(lout[1]);
  gr_pool_destroy(pool);
  cg_jit_free(jl), cg_jit_free(jg);
  tu_graph_free(&loc), tu_graph_free(&glob);
}
END_TEST

int main(void) {
  Suite *s = suite_create("shard");
  TCase *tc = tcase_create("random");
  tcase_set_timeout(tc, 60);
  tcase_add_test(tc, shards_are_slices_of_the_global_draw);
  suite_add_tcase(s, tc);
  SRunner *sr = srunner_create(s);
  srunner_run_all(sr, CK_NORMAL);
  int nf = srunner_ntests_failed(sr);
  srunner_free(sr);
  return nf != 0;
}
