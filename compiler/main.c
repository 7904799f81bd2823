/* main.c: the gradc command line.
 *
 * One table of subcommands {name, function, one-line help, usage}: adding a command
 * (run, build, gradcheck...) is one function plus one row. Common options (-I DIR,
 * -D NAME=VALUE, --entry NAME, --f64) are parsed once into Opts by parse_opts(); each
 * command reads what it needs. Diagnostics are collected in the Ctx and printed at the
 * end with diag_print_all, so every command reports all errors of a run, then exits 1.
 *
 * The standard library is found next to the executable (<dir of gradc>/../stdlib) and
 * appended to the import path after every -I. The path is shown relative to the current
 * folder when it lies below it, so messages read the same from any build folder.
 */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <errno.h>
#include <sys/stat.h>
#include <time.h>

#include "autodiff.h"
#include "ckpt.h"
#include "codegen.h"
#include "frontend.h"
#include "gradcheck.h"
#include "interp.h"
#include "rt.h"

#define GRADC_VERSION "0.1.0"

typedef struct {
  const char *files[64];
  int nfiles;
  const char *entry; /* --entry NAME */
  const char *stage; /* --stage=ast|ir|grad|opt|sched|llvm|asm */
  int help;
  /* run, build, gradcheck */
  const char *ins[64]; /* --in NAME=PATH.npy */
  int nins;
  const char *out;     /* run: --out DIR; build: -o PROG */
  const char *params;  /* --params FILE.safetensors */
  const char *cpu;     /* --cpu native|x86-64-v3 */
  uint64_t seed;       /* --seed N */
  double tol;          /* --tol T */
  int interp, ema, time, opt_level; /* --interp, --ema, --time, -O0/-O2 */
  int no_f64;                       /* build: --no-f64-check */
  int mpi;             /* build --mpi: link the MPI runtime (docs/distributed.md) */
} Opts;

typedef int (*CmdFn)(Ctx *c, Opts *o);

typedef struct {
  const char *name;
  CmdFn fn;
  const char *help;  /* one line, for `gradc --help` */
  const char *usage; /* for `gradc help CMD` */
} Command;

static const char common_opts[] =
    "options:\n"
    "  -I DIR            add DIR to the import search path (before the standard library)\n"
    "  -D NAME=VALUE     override the top-level constant NAME of the main file\n"
    "  --entry NAME      only this entry (dump, dot)\n"
    "  --f64             elaborate every f32 as f64\n"
    "  --time            print the time each stage took (stderr)\n";

/* ---- helpers ---------------------------------------------------------------------------- */
static const char *stdlib_dir(Ctx *c) {
  char exe[PATH_MAX];
  ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
  if (n <= 0) return NULL;
  exe[n] = 0;
  char *slash = strrchr(exe, '/'); /* .../build/gradc -> .../build */
  if (!slash) return NULL;
  *slash = 0;
  slash = strrchr(exe, '/'); /* .../build -> ... */
  if (!slash) return NULL;
  *slash = 0;
  const char *dir = arena_printf(&c->arena, "%s/stdlib", exe);
  char cwd[PATH_MAX];
  if (getcwd(cwd, sizeof cwd)) {
    size_t k = strlen(cwd);
    if (!strncmp(dir, cwd, k) && dir[k] == '/') return dir + k + 1;
  }
  return dir;
}

static void add_incdir(Ctx *c, const char *dir) {
  c->incdirs = xrealloc(c->incdirs, (size_t)(c->nincdirs + 1) * sizeof *c->incdirs);
  c->incdirs[c->nincdirs++] = dir;
}

static int add_define(Ctx *c, const char *arg) {
  const char *eq = strchr(arg, '=');
  if (!eq || eq == arg) {
    fprintf(stderr, "gradc: -D needs NAME=VALUE, got '%s'\n", arg);
    return -1;
  }
  c->defines = xrealloc(c->defines, (size_t)(c->ndefines + 1) * sizeof *c->defines);
  c->defines[c->ndefines].name = arena_printf(&c->arena, "%.*s", (int)(eq - arg), arg);
  c->defines[c->ndefines++].value = arena_strdup(&c->arena, eq + 1);
  return 0;
}

/* Gives a fresh context dst the options of c (import path, -D defines, --f64), in
 * malloc'ed copies that ctx_free(dst) releases: a second compilation with c's options. */
static void ctx_copy_options(Ctx *dst, const Ctx *c) {
  dst->incdirs = xrealloc(NULL, (size_t)(c->nincdirs + 1) * sizeof *dst->incdirs);
  if (c->nincdirs) memcpy(dst->incdirs, c->incdirs, (size_t)c->nincdirs * sizeof *dst->incdirs);
  dst->nincdirs = c->nincdirs;
  dst->defines = xrealloc(NULL, (size_t)(c->ndefines + 1) * sizeof *dst->defines);
  if (c->ndefines) memcpy(dst->defines, c->defines, (size_t)c->ndefines * sizeof *dst->defines);
  dst->ndefines = c->ndefines;
  dst->promote_f64 = c->promote_f64;
}

/* Parses argv[i..] into o and c; returns 0 or -1 after a message on stderr. */
static int parse_opts(Ctx *c, Opts *o, int argc, char **argv, int i) {
  for (; i < argc; i++) {
    const char *a = argv[i];
    const char *val = NULL;
    if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
      o->help = 1;
    } else if (!strcmp(a, "--f64")) {
      c->promote_f64 = 1;
    } else if (!strncmp(a, "-I", 2) || !strncmp(a, "-D", 2) || !strcmp(a, "--entry") ||
               !strncmp(a, "--stage", 7)) {
      int two = !strcmp(a, "-I") || !strcmp(a, "-D") || !strcmp(a, "--entry") ||
                !strcmp(a, "--stage");
      if (two) {
        if (i + 1 >= argc) {
          fprintf(stderr, "gradc: %s needs a value\n", a);
          return -1;
        }
        val = argv[++i];
      } else {
        val = a[1] == '-' ? (a[7] == '=' ? a + 8 : NULL) : a + 2;
        if (!val) {
          fprintf(stderr, "gradc: unknown option '%s'\n", a);
          return -1;
        }
      }
      if (a[1] == 'I') add_incdir(c, val);
      else if (a[1] == 'D' && add_define(c, val)) return -1;
      else if (!strcmp(a, "--entry")) o->entry = val;
      else if (!strncmp(a, "--stage", 7)) o->stage = val;
    } else if (!strcmp(a, "--interp")) {
      o->interp = 1;
    } else if (!strcmp(a, "--ema")) {
      o->ema = 1;
    } else if (!strcmp(a, "--no-f64-check")) {
      o->no_f64 = 1;
    } else if (!strcmp(a, "--time")) {
      o->time = 1;
    } else if (!strcmp(a, "--mpi")) {
      o->mpi = 1;
    } else if (!strcmp(a, "-O0") || !strcmp(a, "-O2")) {
      o->opt_level = a[2] - '0';
    } else if (!strncmp(a, "--emit=", 7)) {
      o->stage = a + 7;
    } else if (!strcmp(a, "--in") || !strcmp(a, "--out") || !strcmp(a, "-o") ||
               !strcmp(a, "--params") || !strcmp(a, "--cpu") || !strcmp(a, "--seed") ||
               !strcmp(a, "--tol")) {
      if (i + 1 >= argc) {
        fprintf(stderr, "gradc: %s needs a value\n", a);
        return -1;
      }
      val = argv[++i];
      char *end = NULL;
      if (!strcmp(a, "--in")) {
        if (o->nins == 64 || !strchr(val, '=')) {
          fprintf(stderr, "gradc: --in needs NAME=PATH.npy, got '%s'\n", val);
          return -1;
        }
        o->ins[o->nins++] = val;
      } else if (!strcmp(a, "--out") || !strcmp(a, "-o")) {
        o->out = val;
      } else if (!strcmp(a, "--params")) {
        o->params = val;
      } else if (!strcmp(a, "--cpu")) {
        o->cpu = val;
      } else if (!strcmp(a, "--seed")) {
        errno = 0;
        o->seed = strtoull(val, &end, 10);
        if (errno || *end || val[0] == '-') {
          fprintf(stderr, "gradc: --seed needs a non-negative integer, got '%s'\n", val);
          return -1;
        }
      } else {
        o->tol = strtod(val, &end);
        if (*end || !(o->tol > 0)) {
          fprintf(stderr, "gradc: --tol needs a positive number, got '%s'\n", val);
          return -1;
        }
      }
    } else if (a[0] == '-' && a[1]) {
      fprintf(stderr, "gradc: unknown option '%s' (see gradc --help)\n", a);
      return -1;
    } else if (o->nfiles < 64) {
      o->files[o->nfiles++] = a;
    }
  }
  return 0;
}

static int finish(Ctx *c, int rc) {
  if (ctx_failed(c)) {
    diag_print_all(c, stderr);
    return 1;
  }
  return rc;
}

static int need_one_file(Opts *o, const char *cmd) {
  if (o->nfiles == 1) return 0;
  fprintf(stderr, "gradc %s: expected one .grad file, got %d (see gradc help %s)\n", cmd, o->nfiles,
          cmd);
  return -1;
}

/* Compiles files[0] into p; the graphs are verified by fe_compile. */
static int compile_one(Ctx *c, Opts *o, Program *p) {
  program_init(p, c);
  int rc = fe_compile(c, o->files[0], p);
  size_t n = o->entry ? strlen(o->entry) : 0;
  int derived = n > 5 && !strcmp(o->entry + n - 5, "_grad"); /* made later by pick_entry */
  if (!rc && o->entry && !derived && !program_find_entry(p, o->entry)) {
    fprintf(stderr, "gradc: no entry named '%s' in %s\n", o->entry, o->files[0]);
    return -1;
  }
  return rc;
}

/* ---- commands ----------------------------------------------------------------------------- */
static int cmd_check(Ctx *c, Opts *o) {
  if (o->nfiles == 0) {
    fprintf(stderr, "gradc check: no input files (see gradc help check)\n");
    return 2;
  }
  int bad = 0;
  for (int i = 0; i < o->nfiles; i++) {
    Ctx fc; /* one context per file: each file is its own compilation */
    ctx_init(&fc);
    ctx_copy_options(&fc, c);
    Program p;
    program_init(&p, &fc);
    if (fe_compile(&fc, o->files[i], &p)) {
      diag_print_all(&fc, stderr);
      bad = 1;
    }
    program_free(&p);
    ctx_free(&fc);
  }
  return bad;
}

/* ---- stage timing (--time) ------------------------------------------------------------------ */
static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void stage_time(const Opts *o, const char *stage, double *t0) {
  double t = now_s();
  if (o->time) fprintf(stderr, "time: %-10s %8.1f ms\n", stage, 1e3 * (t - *t0));
  *t0 = t;
}

/* The entry a command works on: --entry NAME, else the only entry, else `loss`. A name
 * "X_grad" that the file does not define is derived from entry X (ad_grad_entry). */
static Graph *pick_entry(Ctx *c, Opts *o, Program *p, const char *cmd) {
  const char *name = o->entry;
  if (!name) name = p->nentries == 1 ? p->entries[0]->name : "loss";
  Graph *g = program_find_entry(p, name);
  size_t n = strlen(name);
  if (!g && n > 5 && !strcmp(name + n - 5, "_grad")) {
    char base[256];
    snprintf(base, sizeof base, "%.*s", (int)(n - 5), name);
    Graph *b = program_find_entry(p, base);
    if (b) g = ad_grad_entry(p, b);
    if (g || ctx_failed(c)) return g;
  }
  if (!g) {
    fprintf(stderr, "gradc %s: no entry '%s' in %s (entries:", cmd, name, o->files[0]);
    for (int i = 0; i < p->nentries; i++) fprintf(stderr, " %s", p->entries[i]->name);
    fprintf(stderr, "); choose one with --entry NAME\n");
  }
  return g;
}

/* Adds `loss_grad` (the training step) when the program has a `loss` entry. */
static int add_training_entry(Ctx *c, Program *p) {
  Graph *loss = program_find_entry(p, "loss");
  if (!loss || program_find_entry(p, "loss_grad")) return 0;
  return ad_grad_entry(p, loss) ? 0 : (ctx_failed(c) ? -1 : 0);
}

static int same_layout(const GrTensor *t, DType dt, const Shape *s) {
  if (t->dtype != (int32_t)dt || t->rank != s->rank) return 0;
  for (int i = 0; i < s->rank; i++)
    if (t->dims[i] != s->dims[i]) return 0;
  return 1;
}

static void layout_str(int32_t dt, int rank, const int64_t *dims, char *buf, size_t n) {
  Shape s = {rank, {0}};
  for (int i = 0; i < rank && i < IR_MAXRANK; i++) s.dims[i] = dims[i];
  char sb[96];
  snprintf(buf, n, "%s%s", dtype_name((DType)dt), shape_str(&s, sb, sizeof sb));
}

static int cmd_dump(Ctx *c, Opts *o) {
  if (need_one_file(o, "dump")) return 2;
  const char *stage = o->stage ? o->stage : "ir";
  if (!strcmp(stage, "ast")) return finish(c, fe_dump_ast(c, o->files[0], stdout) ? 1 : 0);
  static const char *const stages[] = {"ast", "ir", "grad", "opt", "sched", "llvm", "asm"};
  int known = 0;
  for (int i = 0; i < 7; i++) known |= !strcmp(stage, stages[i]);
  if (!known) {
    const char *best = diag_closest(stage, stages, 7);
    fprintf(stderr, "gradc dump: unknown stage '%s'%s%s%s (ast, ir, grad, opt, sched, llvm, asm)\n",
            stage, best ? "; did you mean '" : "", best ? best : "", best ? "'?" : "");
    return 2;
  }
  double t0 = now_s();
  Program p;
  int rc = compile_one(c, o, &p);
  stage_time(o, "frontend", &t0);
  if (!rc && strcmp(stage, "ir")) {
    rc = add_training_entry(c, &p);
    stage_time(o, "autodiff", &t0);
  }
  if (!rc && strcmp(stage, "ir") && strcmp(stage, "grad")) {
    CgOptions co;
    cg_options_default(&co);
    co.opt_level = o->opt_level < 0 ? 2 : o->opt_level;
    co.cpu = o->cpu;
    cg_dump(c, &p, stage, &co, stdout);
    stage_time(o, stage, &t0);
  } else if (!rc) {
    for (int i = 0; i < p.nparams; i++) {
      char sb[96];
      printf("param %s: %s%s = %s(%g, %g)\n", p.params[i].name, dtype_name(p.params[i].dtype),
             shape_str(&p.params[i].shape, sb, sizeof sb), init_name(p.params[i].init.kind),
             p.params[i].init.a, p.params[i].init.b);
    }
    for (int i = 0; i < p.nentries; i++)
      if (!o->entry || !strcmp(o->entry, p.entries[i]->name)) ir_print(p.entries[i], &p, stdout);
  }
  program_free(&p);
  return finish(c, rc ? 1 : 0);
}

static int cmd_dot(Ctx *c, Opts *o) {
  if (need_one_file(o, "dot")) return 2;
  Program p;
  int rc = compile_one(c, o, &p);
  if (!rc) {
    for (int i = 0; i < p.nentries; i++)
      if (!o->entry || !strcmp(o->entry, p.entries[i]->name)) {
        ir_print_dot(p.entries[i], &p, stdout);
        if (!o->entry) break; /* one graph per output: the first entry */
      }
  }
  program_free(&p);
  return finish(c, rc ? 1 : 0);
}

/* Reads each --in NAME=PATH for the inputs of g. 0, or -1 after a message. */
static int load_inputs(const Opts *o, const Graph *g, GrTensor *in) {
  for (int i = 0; i < g->ninputs; i++) {
    const GInput *gi = &g->inputs[i];
    const char *path = NULL;
    size_t n = strlen(gi->name);
    for (int k = 0; k < o->nins; k++)
      if (!strncmp(o->ins[k], gi->name, n) && o->ins[k][n] == '=') path = o->ins[k] + n + 1;
    char want[128], got[128], err[512];
    layout_str(gi->dtype, gi->shape.rank, gi->shape.dims, want, sizeof want);
    if (!path) {
      fprintf(stderr, "gradc run: entry '%s' needs input '%s' (%s): pass --in %s=FILE.npy\n",
              g->name, gi->name, want, gi->name);
      return -1;
    }
    if (gr_npy_read(path, &in[i], err, sizeof err)) {
      fprintf(stderr, "gradc run: %s\n", err);
      return -1;
    }
    if (!same_layout(&in[i], gi->dtype, &gi->shape)) {
      layout_str(in[i].dtype, in[i].rank, in[i].dims, got, sizeof got);
      fprintf(stderr, "gradc run: %s: input '%s' must be %s, the file holds %s\n", path,
              gi->name, want, got);
      return -1;
    }
  }
  for (int k = 0; k < o->nins; k++) {
    int found = 0;
    for (int i = 0; i < g->ninputs; i++) {
      size_t n = strlen(g->inputs[i].name);
      found |= !strncmp(o->ins[k], g->inputs[i].name, n) && o->ins[k][n] == '=';
    }
    if (!found) {
      fprintf(stderr, "gradc run: entry '%s' has no input named in '--in %s'\n", g->name, o->ins[k]);
      return -1;
    }
  }
  return 0;
}

/* Parameters from --params (a checkpoint: the weights, or with --ema their EMA) or
 * initialized from --seed exactly as a training executable would. */
static int load_params(const Opts *o, const Program *p, GrTensor *params) {
  if (interp_init_params(p, o->seed, params)) {
    fprintf(stderr, "gradc run: out of memory initializing parameters\n");
    return -1;
  }
  if (!o->params) return 0;
  GrStFile f;
  char err[512];
  if (gr_st_read(o->params, &f, err, sizeof err)) {
    fprintf(stderr, "gradc run: %s\n", err);
    return -1;
  }
  int rc = 0;
  for (int i = 0; i < p->nparams && !rc; i++) {
    const Param *pa = &p->params[i];
    char name[512], want[128], got[128];
    snprintf(name, sizeof name, "%s%s", o->ema ? "ema/" : "", pa->name);
    const GrStTensor *t = gr_st_find(&f, name);
    layout_str(pa->dtype, pa->shape.rank, pa->shape.dims, want, sizeof want);
    if (!t) {
      fprintf(stderr, "gradc run: %s has no tensor '%s' (a checkpoint of another graph?)\n",
              o->params, name);
      rc = -1;
    } else if (t->dtype != (int32_t)pa->dtype || t->rank != pa->shape.rank ||
               memcmp(t->dims, pa->shape.dims, (size_t)t->rank * sizeof *t->dims)) {
      layout_str(t->dtype, t->rank, t->dims, got, sizeof got);
      fprintf(stderr, "gradc run: %s: '%s' is %s, the program wants %s\n", o->params, name, got, want);
      rc = -1;
    } else {
      memcpy(params[i].data, t->data, (size_t)shape_numel(&pa->shape) * dtype_size(pa->dtype));
    }
  }
  gr_st_free(&f);
  return rc;
}

/* "grad:net.l1.w" -> "grad_net.l1.w": output names become file names. */
static void out_path(const char *dir, const char *name, char *buf, size_t n) {
  int k = snprintf(buf, n, "%s/", dir);
  for (const char *s = name; *s && k + 5 < (int)n; s++) buf[k++] = (*s == ':' || *s == '/') ? '_' : *s;
  snprintf(buf + k, n - (size_t)k, ".npy");
}

static int make_dir(const char *dir) {
  char tmp[4096];
  snprintf(tmp, sizeof tmp, "%s", dir);
  for (char *s = tmp + 1; *s; s++)
    if (*s == '/') {
      *s = 0;
      mkdir(tmp, 0777);
      *s = '/';
    }
  if (mkdir(tmp, 0777) && errno != EEXIST) {
    fprintf(stderr, "gradc run: cannot create '%s': %s\n", dir, strerror(errno));
    return -1;
  }
  return 0;
}

static int cmd_run(Ctx *c, Opts *o) {
  if (need_one_file(o, "run")) return 2;
  if (!o->out) {
    fprintf(stderr, "gradc run: --out DIR is required (see gradc help run)\n");
    return 2;
  }
  double t0 = now_s();
  Program p;
  int rc = compile_one(c, o, &p);
  stage_time(o, "frontend", &t0);
  Graph *g = rc ? NULL : pick_entry(c, o, &p, "run");
  GrTensor *in = NULL, *params = NULL, *outs = NULL;
  CgJit *jit = NULL;
  if (!g) goto done;
  rc = -1;
  in = calloc((size_t)g->ninputs + 1, sizeof *in);
  params = calloc((size_t)p.nparams + 1, sizeof *params);
  outs = calloc((size_t)g->noutputs + 1, sizeof *outs);
  if (load_inputs(o, g, in) || load_params(o, &p, params)) goto done;
  char err[1024] = "";
  if (o->interp) {
    rc = interp_run(g, &p, in, params, outs, o->seed, 0, err, sizeof err);
  } else {
    CgOptions co;
    cg_options_default(&co);
    co.opt_level = o->opt_level < 0 ? 0 : o->opt_level;
    co.cpu = o->cpu;
    jit = cg_jit_compile(c, &p, &co);
    stage_time(o, "codegen", &t0);
    rc = jit ? cg_jit_run(jit, g->name, in, params, outs, o->seed, 0, err, sizeof err) : -1;
  }
  stage_time(o, "run", &t0);
  if (rc) {
    if (err[0]) fprintf(stderr, "gradc run: %s\n", err);
    goto done;
  }
  if (make_dir(o->out)) {
    rc = -1;
    goto done;
  }
  for (int i = 0; i < g->noutputs && !rc; i++) {
    char path[4096];
    out_path(o->out, g->outputs[i].name, path, sizeof path);
    if (gr_npy_write(path, &outs[i], err, sizeof err)) {
      fprintf(stderr, "gradc run: %s\n", err);
      rc = -1;
    }
  }
done:
  for (int i = 0; g && in && i < g->ninputs; i++) gr_tensor_free(&in[i]);
  for (int i = 0; params && i < p.nparams; i++) gr_tensor_free(&params[i]);
  for (int i = 0; g && outs && i < g->noutputs; i++) gr_tensor_free(&outs[i]);
  free(in);
  free(params);
  free(outs);
  if (jit) cg_jit_free(jit);
  program_free(&p);
  return finish(c, rc ? 1 : 0);
}

/* The executable's name: -o PROG, else the file's base name without .grad. */
static const char *exe_name(Ctx *c, const Opts *o) {
  if (o->out) return o->out;
  const char *base = strrchr(o->files[0], '/');
  base = base ? base + 1 : o->files[0];
  const char *dot = strrchr(base, '.');
  return arena_printf(&c->arena, "%.*s", dot ? (int)(dot - base) : (int)strlen(base), base);
}

/* `prog gradcheck` differentiates numerically, which f32 cannot do reliably (relative
 * errors of 1e-2 are noise there). So the executable also carries f64 twins of `loss` and
 * `loss_grad`: the file elaborated again with every f32 as f64 (its own context c64, which
 * the caller keeps alive until code generation is done), and three graphs moved into p:
 * loss_grad_f64, and loss_held_f64/loss_frozen_f64, which let the check hold stop_grad
 * values fixed (gc_add_frozen_entries) and take the place of an f64 `loss`. Their PARAM nodes index p's parameters (same names, same
 * order: elaboration is deterministic) with f64 dtype; the runtime passes f64 copies. */
static int add_f64_twins(Ctx *c, Ctx *c64, Opts *o, Program *p) {
  if (!program_find_entry(p, "loss")) return 0;
  ctx_init(c64);
  ctx_copy_options(c64, c);
  c64->promote_f64 = 1;
  Program p64;
  program_init(&p64, c64);
  int rc = fe_compile(c64, o->files[0], &p64);
  Graph *loss = rc ? NULL : program_find_entry(&p64, "loss");
  Graph *grad = loss ? ad_grad_entry(&p64, loss) : NULL;
  if (grad && p64.nparams == p->nparams) {
    gc_add_frozen_entries(&p64, loss, "loss_held_f64", "loss_frozen_f64");
    grad->name = "loss_grad_f64"; /* the f64 `loss` itself is not needed: frozen replaces it */
    for (int i = 0; i < p64.nentries; i++) {
      Graph *g = p64.entries[i];
      if (strstr(g->name, "_f64") == NULL) continue;
      g->cold = 1;
      if (p->nentries == p->capentries) {
        p->capentries = p->capentries ? 2 * p->capentries : 8;
        p->entries = xrealloc(p->entries, (size_t)p->capentries * sizeof *p->entries);
      }
      p->entries[p->nentries++] = g;
      p64.entries[i] = NULL;
    }
  }
  program_free(&p64);
  if (ctx_failed(c64)) { /* f32 compiled, so this is an internal inconsistency */
    diag_print_all(c64, stderr);
    fprintf(stderr, "gradc build: the f64 gradient-check entries failed; use --no-f64-check\n");
    return -1;
  }
  return 0;
}

static int cmd_build(Ctx *c, Opts *o) {
  if (need_one_file(o, "build")) return 2;
  double t0 = now_s();
  Program p;
  Ctx c64;
  memset(&c64, 0, sizeof c64);
  int rc = compile_one(c, o, &p);
  stage_time(o, "frontend", &t0);
  if (!rc) rc = add_training_entry(c, &p);
  if (!rc && !o->no_f64) rc = add_f64_twins(c, &c64, o, &p);
  stage_time(o, "autodiff", &t0);
  if (!rc) {
    CgOptions co;
    cg_options_default(&co);
    co.opt_level = o->opt_level < 0 ? 2 : o->opt_level;
    co.cpu = o->cpu;
    co.source_name = o->files[0];
    if (o->mpi) {
      co.rt_lib = "gradrt_mpi";
      co.cc = "mpicc";
    }
    rc = cg_build_executable(c, &p, &co, exe_name(c, o));
    stage_time(o, "codegen", &t0);
  }
  program_free(&p);
  ctx_free(&c64);
  return finish(c, rc ? 1 : 0);
}

static int cmd_gradcheck(Ctx *c, Opts *o) {
  if (need_one_file(o, "gradcheck")) return 2;
  c->promote_f64 = 1;
  Program p;
  int rc = compile_one(c, o, &p);
  Graph *g = rc ? NULL : pick_entry(c, o, &p, "gradcheck");
  if (g) rc = gc_check_entry(c, &p, g, o->seed, o->tol > 0 ? o->tol : GC_DEFAULT_TOL, stdout);
  else rc = -1;
  program_free(&p);
  if (rc < 0) return finish(c, 1);
  return rc ? 1 : 0;
}

static const Command commands[] = {
    {"check", cmd_check, "check .grad files: syntax, names, shapes, types",
     "usage: gradc check [options] FILE...\n"
     "Compiles each file up to the IR and prints every error; exit status 0 if all are fine.\n"},
    {"dump", cmd_dump, "print the syntax tree or the IR of a file",
     "usage: gradc dump [--stage=ast|ir|grad|opt|sched|llvm|asm] [--emit=asm] [--entry NAME]\n"
     "                  [-O0|-O2] [--time] [options] FILE\n"
     "ast: the parsed syntax tree; ir (default): the parameters and the elaborated graph of\n"
     "every entry (or of --entry NAME); grad: the same plus the derived loss_grad; opt: after\n"
     "the graph passes; sched: kernels and the memory plan; llvm: the LLVM module after its\n"
     "passes; asm (or --emit=asm): the machine code.\n"},
    {"run", cmd_run, "evaluate an entry on .npy inputs (JIT; --interp: the interpreter)",
     "usage: gradc run FILE [--entry NAME] --in NAME=PATH.npy ... --out DIR\n"
     "                 [--params FILE.safetensors [--ema]] [--seed N] [--interp] [-O0|-O2]\n"
     "Compiles FILE, evaluates the entry (default: the only one, else `loss`; NAME_grad\n"
     "derives the gradient entry of NAME) and writes every output to DIR/<name>.npy\n"
     "(':' in names becomes '_'). Parameters come from a checkpoint (--ema: its EMA) or are\n"
     "initialized from --seed (default 0) as a training executable would. Random draws use\n"
     "--seed at step 0. Runs the JIT at -O0 (fast compile) unless -O2 is given.\n"},
    {"build", cmd_build, "compile FILE into a standalone training executable",
     "usage: gradc build FILE [-o PROG] [-D NAME=VALUE]... [--cpu native|x86-64-v3] [-O0|-O2]\n"
     "                   [--no-f64-check] [--mpi]\n"
     "Derives the training entry loss_grad from `entry loss`, optimizes (-O2 by default),\n"
     "adds f64 twins (loss_grad_f64, loss_held_f64, loss_frozen_f64) so `PROG gradcheck`\n"
     "runs in f64 with stop_grad values held fixed (unless\n"
     "--no-f64-check),\n"
     "emits an object file and links it with libgradrt into PROG (default: the file's base\n"
     "name). Run `PROG --help` for train, sample, eval, gradcheck, data and info.\n"
     "--mpi links the MPI runtime: `mpirun -np N PROG train` trains data-parallel, each rank\n"
     "on the compiled batch B, a global batch of N*B rows (docs/distributed.md).\n"},
    {"gradcheck", cmd_gradcheck, "check derivatives against finite differences (f64)",
     "usage: gradc gradcheck FILE [--entry NAME] [--seed N] [--tol T]\n"
     "Elaborates FILE in f64, draws random inputs and parameters, and compares reverse and\n"
     "forward mode with finite differences per input and parameter. Prints the worst\n"
     "relative error of each; exit status 1 when one exceeds T (default 1e-6).\n"},
    {"dot", cmd_dot, "write an entry's graph in Graphviz format",
     "usage: gradc dot [--entry NAME] [options] FILE > graph.dot\n"
     "Writes the first entry (or --entry NAME) as a Graphviz digraph on stdout.\n"},
};
#define NCOMMANDS ((int)(sizeof commands / sizeof *commands))

static void usage(FILE *out) {
  fprintf(out, "gradc %s: a compiler for .grad graph files\n\nusage: gradc COMMAND [options] "
               "FILE...\n\ncommands:\n", GRADC_VERSION);
  for (int i = 0; i < NCOMMANDS; i++) fprintf(out, "  %-10s %s\n", commands[i].name, commands[i].help);
  fprintf(out, "  %-10s %s\n\n%s", "help", "help on a command: gradc help COMMAND", common_opts);
}

static const Command *find_command(const char *name) {
  for (int i = 0; i < NCOMMANDS; i++)
    if (!strcmp(commands[i].name, name)) return &commands[i];
  return NULL;
}

static int unknown_command(const char *name) {
  const char *names[NCOMMANDS];
  for (int i = 0; i < NCOMMANDS; i++) names[i] = commands[i].name;
  const char *best = diag_closest(name, names, NCOMMANDS);
  fprintf(stderr, "gradc: unknown command '%s'%s%s%s (see gradc --help)\n", name,
          best ? "; did you mean '" : "", best ? best : "", best ? "'?" : "");
  return 2;
}

int main(int argc, char **argv) {
  /* OpenBLAS single-threaded (the interpreter's products; the JIT's go through gr_gemm
   * and the pool): its worker threads otherwise spin in sched_yield for ~0.1 s after
   * start-up, 20 % of the CPU time of a `gradc build` (runtime/blas.c) */
  gr_blas_setup(1);
  if (argc < 2) {
    usage(stderr);
    return 2;
  }
  const char *cmd = argv[1];
  if (!strcmp(cmd, "--help") || !strcmp(cmd, "-h")) return usage(stdout), 0;
  if (!strcmp(cmd, "--version")) return printf("gradc %s\n", GRADC_VERSION), 0;
  if (!strcmp(cmd, "help")) {
    if (argc < 3) return usage(stdout), 0;
    const Command *c = find_command(argv[2]);
    if (!c) return unknown_command(argv[2]);
    printf("%s\n%s", c->usage, common_opts);
    return 0;
  }
  const Command *command = find_command(cmd);
  if (!command) return unknown_command(cmd);
  Ctx c;
  ctx_init(&c);
  Opts o = {0};
  o.opt_level = -1;
  int rc;
  if (parse_opts(&c, &o, argc, argv, 2)) {
    rc = 2;
  } else if (o.help) {
    printf("%s\n%s", command->usage, common_opts);
    rc = 0;
  } else {
    const char *std = stdlib_dir(&c);
    if (std) add_incdir(&c, std);
    rc = command->fn(&c, &o);
  }
  ctx_free(&c);
  return rc;
}
