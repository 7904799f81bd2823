/* big_module.c: a training program with a large parameter, for tests/scripts/crash_safety.sh.
 *
 * Crash-safety trials need checkpoint writes that take long enough for a SIGKILL to land
 * inside one. This wraps the hand-written fake denoiser (tests/unit/helpers/fake_module.c)
 * and adds a parameter `big` of BIG_N f32 values with loss term 0.005 * sum(big^2) scaled
 * by the batch loss, so its gradient depends on the data, the step's noise and the
 * weights: gbig = 0.01 * big * (1 + loss). With Adam the checkpoint holds
 * 4 x BIG_N x 4 bytes (weights, EMA, two moments): about 4 MiB for BIG_N = 256K.
 * args of loss_grad: x, W, b, big, loss, gW, gb, gbig.
 */
#include <string.h>

#include "fake_module.h"

#define BIG_N (256 * 1024)

static GrEntryFn inner; /* the fake module's loss_grad (set once in main) */

static const GrTensorInfo params[3] = {
    {"net.w", GR_F32, 2, {2, 2}, GR_INIT_GLOROT, 0, 0, 2, 2},
    {"net.b", GR_F32, 1, {2}, GR_INIT_ZEROS, 0, 0, 2, 2},
    {"big", GR_F32, 1, {BIG_N}, GR_INIT_NORMAL, 0.1, 0, BIG_N, 1},
};
static const GrConstInfo consts[] = {
    {"B", 0, FAKE_B, NULL},     {"D", 0, 2, NULL},         {"data", 1, 0, "checkerboard"},
    {"lr", 0, 0.01, NULL},      {"optimizer", 1, 0, "adam"}, {"ema", 0, 0.9, NULL},
    {"steps", 0, 40, NULL},     {"ckpt_every", 0, 2, NULL},  {"sigma_d", 0, 0.5, NULL},
};
static const GrTensorInfo in_x[1] = {{"x", GR_F32, 2, {FAKE_B, 2}, 0, 0, 0, 0, 0}};
static const GrTensorInfo outs[4] = {{"loss", GR_F32, 0, {0}, 0, 0, 0, 0, 0},
                                     {"d.net.w", GR_F32, 2, {2, 2}, 0, 0, 0, 0, 0},
                                     {"d.net.b", GR_F32, 1, {2}, 0, 0, 0, 0, 0},
                                     {"d.big", GR_F32, 1, {BIG_N}, 0, 0, 0, 0, 0}};

static void loss_grad(void **a, void *ws, const GrRunCtx *rc) {
  void *fa[6] = {a[0], a[1], a[2], a[4], a[5], a[6]};
  inner(fa, ws, rc);
  const float *big = a[3];
  float *g = a[7];
  double scale = 0.01 * (1.0 + *(const float *)a[4]);
  for (int64_t i = 0; i < BIG_N; i++) g[i] = (float)(scale * big[i]);
}

int main(int argc, char **argv) {
  GrModuleInfo fm;
  GrEntryInfo fen[8];
  fake_module_make(&fm, fen, FAKE_PLAIN);
  inner = fen[0].fn;
  GrEntryInfo en[1] = {{"loss_grad", 1, 4, in_x, outs, fen[0].workspace_bytes, 1000, loss_grad}};
  GrModuleInfo m;
  memset(&m, 0, sizeof m);
  m.abi_version = GR_ABI_VERSION;
  m.source_name = "tests/crash/big_module.c";
  m.graph_hash = "c4a5hb16";
  m.nparams = 3;
  m.nconsts = (int32_t)(sizeof consts / sizeof *consts);
  m.nentries = 1;
  m.params = params;
  m.consts = consts;
  m.entries = en;
  return gr_main(&m, argc, argv);
}
