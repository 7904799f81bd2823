/* gradc_jit_bench.c: the gradc side of the benchmark, through the JIT, in one process.
 *
 * Why this exists next to the AOT executables: it measures gradc's generated training
 * step with nothing else in the way (no process start, no file I/O), and it times each
 * compile stage separately (front end, autodiff, JIT = passes + schedule + LLVM), which
 * an outside stopwatch around `gradc build` cannot. The step it times is the one the
 * training executable runs (runtime/driver.c train_step): copy the batch from the data,
 * call loss_grad, gradient norm, Adam update (gr_opt_step), EMA buffer copy (EMA off).
 * Sampling calls the program's one-step `sample` entry K times from x ~ N(0, sigma_d^2)
 * at t = T over uniform times, as `prog sample --steps K` does.
 *
 * Usage: gradc_jit_bench FILE.grad [-I DIR] [-D NAME=VALUE]... --data FILE.npy
 *          [--mode train|sample] [--sample-steps K] [--T 0.994] [--threads N]
 *          [--steps S] [--blocks 5] [--warmup 3]
 * Prints one JSON line: steps_per_s (median of blocks), all block rates, peak RSS, the
 * compile time of each stage, the workspace size. Exit 1 with a message on any failure.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "autodiff.h"
#include "codegen.h"
#include "frontend.h"
#include "gradrt.h"
#include "interp.h"
#include "ir.h"
#include "optim.h"

typedef struct {
  const char *path, *data, *mode;
  const char *emit_exe, *rt_dir; /* --emit-exe: build the AOT executable and stop */
  int threads, steps, blocks, warmup, sample_steps;
  double T;
} BenchOpts;

typedef struct {
  Program p;
  CgJit *jit;
  GrTensor *params;       /* [nparams] */
  float **grads, **m, **v; /* [nparams] each */
  int64_t *numel;         /* [nparams] */
  GrTensor data;          /* [rows, D] */
  const Graph *g;         /* the entry being timed */
  void **args;            /* inputs, params, outputs of g */
  float *x, *loss;        /* the batch buffer [B, D], the loss */
  float *ts, *ss, *xout;  /* sampling: times [B], output [B, D] */
  int64_t B, D;
} Bench;

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* CPU seconds of this process: compile stages are single-threaded, and on a shared
 * machine CPU time is the stable measure (wall time is reported too). */
static double cpu_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int die(const char *msg, const char *arg) {
  fprintf(stderr, "gradc_jit_bench: %s%s%s\n", msg, arg ? ": " : "", arg ? arg : "");
  return 1;
}

static int parse(BenchOpts *o, Ctx *c, int argc, char **argv) {
  *o = (BenchOpts){.mode = "train", .threads = 1, .steps = 10, .blocks = 5, .warmup = 3,
                   .sample_steps = 1, .T = 0.994};
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (a[0] != '-') {
      o->path = a;
      continue;
    }
    if (!v) return die("missing value after", a);
    i++;
    if (!strcmp(a, "-I")) {
      c->incdirs = xrealloc(c->incdirs, (size_t)(c->nincdirs + 1) * sizeof *c->incdirs);
      c->incdirs[c->nincdirs++] = v;
    } else if (!strcmp(a, "-D")) {
      const char *eq = strchr(v, '=');
      if (!eq || eq == v) return die("-D needs NAME=VALUE", v);
      c->defines = xrealloc(c->defines, (size_t)(c->ndefines + 1) * sizeof *c->defines);
      c->defines[c->ndefines].name = arena_printf(&c->arena, "%.*s", (int)(eq - v), v);
      c->defines[c->ndefines++].value = eq + 1;
    } else if (!strcmp(a, "--data")) o->data = v;
    else if (!strcmp(a, "--emit-exe")) o->emit_exe = v;
    else if (!strcmp(a, "--rt-dir")) o->rt_dir = v;
    else if (!strcmp(a, "--mode")) o->mode = v;
    else if (!strcmp(a, "--threads")) o->threads = atoi(v);
    else if (!strcmp(a, "--steps")) o->steps = atoi(v);
    else if (!strcmp(a, "--blocks")) o->blocks = atoi(v);
    else if (!strcmp(a, "--warmup")) o->warmup = atoi(v);
    else if (!strcmp(a, "--sample-steps")) o->sample_steps = atoi(v);
    else if (!strcmp(a, "--T")) o->T = atof(v);
    else return die("unknown option", a);
  }
  if (!o->path) return die("no .grad file given", NULL);
  if (strcmp(o->mode, "train") && strcmp(o->mode, "sample")) return die("--mode must be train or sample", o->mode);
  if (o->threads < 1 || o->steps < 1 || o->blocks < 1 || o->warmup < 0 || o->sample_steps < 1)
    return die("bad --threads/--steps/--blocks/--warmup/--sample-steps", NULL);
  return 0;
}

/* Allocates the optimizer state and the argument vector of entry g. */
static int setup(Bench *b, const char *entry) {
  Program *p = &b->p;
  b->g = program_find_entry(p, entry);
  if (!b->g) return die("the program has no entry", entry);
  const Graph *g = b->g;
  int np = p->nparams;
  b->grads = calloc((size_t)np + 1, sizeof *b->grads);
  b->m = calloc((size_t)np + 1, sizeof *b->m);
  b->v = calloc((size_t)np + 1, sizeof *b->v);
  b->numel = calloc((size_t)np + 1, sizeof *b->numel);
  b->args = calloc((size_t)(g->ninputs + np + g->noutputs) + 1, sizeof *b->args);
  if (!b->grads || !b->m || !b->v || !b->numel || !b->args) return die("out of memory", NULL);
  if (g->ninputs < 1 || g->inputs[0].shape.rank != 2) return die("entry's first input must be [B, D]", entry);
  b->B = g->inputs[0].shape.dims[0];
  b->D = g->inputs[0].shape.dims[1];
  b->x = gr_alloc((size_t)(b->B * b->D) * 4);
  b->xout = gr_alloc((size_t)(b->B * b->D) * 4);
  b->ts = gr_alloc((size_t)b->B * 4);
  b->ss = gr_alloc((size_t)b->B * 4);
  b->loss = gr_alloc(64);
  int k = 0;
  b->args[k++] = b->x;
  if (g->ninputs == 3) b->args[k++] = b->ts, b->args[k++] = b->ss;
  else if (g->ninputs != 1) return die("entry must take (x) or (x, t, s)", entry);
  for (int i = 0; i < np; i++) {
    b->numel[i] = shape_numel(&p->params[i].shape);
    b->args[k++] = b->params[i].data;
  }
  if (!strcmp(entry, "loss_grad")) {
    if (g->noutputs != 1 + np) return die("loss_grad must return the loss and one gradient per parameter", NULL);
    b->args[k++] = b->loss;
    for (int i = 0; i < np; i++) {
      b->grads[i] = gr_alloc((size_t)b->numel[i] * 4);
      b->m[i] = gr_alloc((size_t)b->numel[i] * 4);
      b->v[i] = gr_alloc((size_t)b->numel[i] * 4);
      if (!b->grads[i] || !b->m[i] || !b->v[i]) return die("out of memory", NULL);
      b->args[k++] = b->grads[i];
    }
  } else {
    if (g->noutputs != 1) return die("sample must return x", NULL);
    b->args[k++] = b->xout;
  }
  return 0;
}

/* One training step, as runtime/driver.c train_step does it (EMA off: a copy). */
static void train_step(Bench *b, int64_t step, float *ema_copy, GrPool *pool) {
  int64_t rows = b->data.dims[0], first = (step * b->B) % rows;
  const float *src = b->data.data;
  for (int64_t r = 0; r < b->B; r++)
    memcpy(b->x + r * b->D, src + ((first + r) % rows) * b->D, (size_t)b->D * 4);
  cg_jit_call(b->jit, "loss_grad", b->args, 0, (uint64_t)step);
  int np = b->p.nparams;
  GrRunCtx rc = {.seed = 0, .step = (uint64_t)step, .pool = pool};
  double gn = gr_grad_norm(&rc, b->grads, b->numel, np);
  (void)gn;
  GrOptConfig oc = {GR_OPT_ADAM, 0.9, 0.999, 1e-8, 0, 0.9};
  for (int i = 0; i < np; i++) {
    gr_opt_step(&rc, &oc, b->params[i].data, b->grads[i], b->m[i], b->v[i], b->numel[i], step + 1, 1e-3);
    memcpy(ema_copy, b->params[i].data, (size_t)b->numel[i] * 4);
  }
}

/* One sampler call: K applications of the one-step entry, uniform times T -> 0. */
static void sample_call(Bench *b, int K, double T) {
  int64_t n = b->B * b->D;
  const float *src = b->data.data;
  for (int64_t i = 0; i < n; i++) b->x[i] = 0.5f * src[i % (b->data.dims[0] * b->D)];
  for (int k = 0; k < K; k++) {
    float t = (float)(T * (1.0 - (double)k / K)), s = (float)(T * (1.0 - (double)(k + 1) / K));
    for (int64_t r = 0; r < b->B; r++) b->ts[r] = t, b->ss[r] = s;
    cg_jit_call(b->jit, "sample", b->args, 0, (uint64_t)k);
    memcpy(b->x, b->xout, (size_t)n * 4);
  }
}

/* 2 M N K summed over the MATMUL nodes of g: the matmul work gradc actually schedules
 * (after the graph passes, so dead gradients are gone), to set against the minimum in
 * docs/performance.md. */
static double matmul_flops(const Graph *g) {
  double f = 0;
  for (int i = 0; i < g->nnodes; i++) {
    const Node *n = &g->nodes[i];
    if (n->op != OP_MATMUL) continue;
    const Shape *a = &g->nodes[n->in[0]].shape;
    int64_t k = n->attr.mm.ta ? a->dims[a->rank - 2] : a->dims[a->rank - 1];
    f += 2.0 * (double)shape_numel(&n->shape) * (double)k;
  }
  return f;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

/* rates: steps per wall second of each block (sorted); cpu: steps per CPU second of the
 * process (all threads), the stable measure for 1-thread runs on a shared machine. */
static int run(Bench *b, const BenchOpts *o, double *rates, double *cpu, GrPool *pool) {
  int train = !strcmp(o->mode, "train");
  int64_t maxn = 0;
  for (int i = 0; i < b->p.nparams; i++) maxn = b->numel[i] > maxn ? b->numel[i] : maxn;
  float *ema = gr_alloc((size_t)(maxn + 1) * 4);
  if (!ema) return die("out of memory", NULL);
  int64_t step = 0;
  for (int w = 0; w < o->warmup; w++, step++) {
    if (train) train_step(b, step, ema, pool);
    else sample_call(b, o->sample_steps, o->T);
  }
  if (train && !isfinite(*b->loss)) {
    gr_free(ema);
    return die("non-finite loss after the warm-up steps", NULL);
  }
  for (int k = 0; k < o->blocks; k++) {
    double t0 = now(), c0 = cpu_now();
    for (int s = 0; s < o->steps; s++, step++) {
      if (train) train_step(b, step, ema, pool);
      else sample_call(b, o->sample_steps, o->T);
    }
    rates[k] = o->steps / (now() - t0);
    cpu[k] = o->steps / fmax(cpu_now() - c0, 1e-9);
  }
  gr_free(ema);
  qsort(rates, (size_t)o->blocks, sizeof *rates, cmp_double);
  qsort(cpu, (size_t)o->blocks, sizeof *cpu, cmp_double);
  return 0;
}

/* --emit-exe PATH [--rt-dir DIR]: what `gradc build` will do (front end, loss_grad,
 * cg_build_executable), so the suite can measure a real training executable's memory
 * before the CLI has the command. Prints {"built": PATH, "build_cpu_s": ..}. */
static int emit_exe(Ctx *c, const BenchOpts *o) {
  Program p;
  double c0 = cpu_now(), t0 = now();
  program_init(&p, c);
  if (fe_compile(c, o->path, &p)) {
    diag_print_all(c, stderr);
    return 1;
  }
  const Graph *loss = program_find_entry(&p, "loss");
  if (loss && !ad_grad_entry(&p, loss)) {
    diag_print_all(c, stderr);
    return 1;
  }
  CgOptions co;
  cg_options_default(&co);
  co.rt_dir = o->rt_dir;
  co.source_name = o->path;
  if (cg_build_executable(c, &p, &co, o->emit_exe)) {
    diag_print_all(c, stderr);
    return 1;
  }
  printf("{\"built\": \"%s\", \"build_cpu_s\": %.4f, \"build_wall_s\": %.4f}\n", o->emit_exe,
         cpu_now() - c0, now() - t0);
  program_free(&p);
  return 0;
}

int main(int argc, char **argv) {
  Ctx c;
  ctx_init(&c);
  BenchOpts o;
  Bench b;
  memset(&b, 0, sizeof b);
  if (parse(&o, &c, argc, argv)) return 1;
  char err[512];
  if (o.emit_exe) return emit_exe(&c, &o);
  if (!o.data) return die("--data FILE.npy is required", NULL);
  if (gr_npy_read(o.data, &b.data, err, sizeof err) || b.data.dtype != GR_F32 || b.data.rank != 2)
    return die("cannot use the data", o.data);
  double t0 = now(), c0 = cpu_now();
  program_init(&b.p, &c);
  if (fe_compile(&c, o.path, &b.p)) {
    diag_print_all(&c, stderr);
    return 1;
  }
  double t1 = now(), c1 = cpu_now();
  int train = !strcmp(o.mode, "train");
  if (train) {
    const Graph *loss = program_find_entry(&b.p, "loss");
    if (!loss) return die("the program has no entry", "loss");
    if (!ad_grad_entry(&b.p, loss)) {
      diag_print_all(&c, stderr);
      return 1;
    }
  }
  double t2 = now(), c2 = cpu_now();
  CgOptions co;
  cg_options_default(&co);
  b.jit = cg_jit_compile(&c, &b.p, &co);
  if (!b.jit) {
    diag_print_all(&c, stderr);
    return 1;
  }
  double t3 = now(), c3 = cpu_now();
  b.params = calloc((size_t)b.p.nparams + 1, sizeof *b.params);
  if (!b.params || interp_init_params(&b.p, 0, b.params)) return die("cannot initialize the parameters", NULL);
  const char *entry = train ? "loss_grad" : "sample";
  if (setup(&b, entry)) return 1;
  Graph *opt = opt_run(b.g, &b.p);
  double mm_ir = matmul_flops(b.g), mm_opt = opt ? matmul_flops(opt) : -1;
  if (opt) graph_free(opt);
  if (b.data.dims[1] != b.D) return die("data rows do not match the entry's D", o.data);
  GrPool *pool = gr_pool_create(o.threads);
  cg_jit_set_pool(b.jit, pool);
  double *rates = calloc((size_t)o.blocks, sizeof *rates), *cpu = calloc((size_t)o.blocks, sizeof *cpu);
  if (!rates || !cpu || run(&b, &o, rates, cpu, pool)) return 1;
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  printf("{\"side\": \"gradc-jit\", \"mode\": \"%s\", \"batch\": %lld, \"dim\": %lld, \"threads\": %d, "
         "\"steps_per_s\": %.6g, \"steps_per_s_all\": [", o.mode, (long long)b.B, (long long)b.D,
         o.threads, rates[o.blocks / 2]);
  for (int k = 0; k < o.blocks; k++) printf("%s%.6g", k ? ", " : "", rates[k]);
  printf("], \"steps_per_cpu_s\": %.6g", cpu[o.blocks / 2]);
  printf(", \"peak_rss_kb\": %ld, \"compile_s\": {\"frontend\": %.4f, \"autodiff\": %.4f, "
         "\"jit\": %.4f, \"total\": %.4f}, \"compile_cpu_s\": {\"frontend\": %.4f, "
         "\"autodiff\": %.4f, \"jit\": %.4f, \"total\": %.4f}, \"workspace_bytes\": %lld, \"loss\": %.6g, "
         "\"timed_steps\": %d, \"matmul_flops_ir\": %.0f, \"matmul_flops_opt\": %.0f}\n",
         ru.ru_maxrss, t1 - t0, t2 - t1, t3 - t2, t3 - t0, c1 - c0, c2 - c1, c3 - c2, c3 - c0,
         (long long)cg_jit_workspace_bytes(b.jit, entry), train ? (double)*b.loss : 0.0,
         o.steps * o.blocks, mm_ir, mm_opt);
  gr_pool_destroy(pool);
  cg_jit_free(b.jit);
  return 0;
}
