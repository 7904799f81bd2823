/* driver.c: gr_main, the command line of every training executable.
 *
 * An AOT-compiled program is a table (GrModuleInfo: parameters, constants, entries); this
 * file turns it into a tool: `prog train | sample | eval | gradcheck | data | info`.
 * Defaults come from the program's top-level constants (lr, optimizer, data, ...; see
 * docs/runtime.md), flags override them, and shape-changing settings (batch size) are
 * compile-time, so a flag asking for one explains how to rebuild instead.
 *
 * Training is a pure function of (seed, step): batch `step` is rows [step*B, (step+1)*B)
 * of the data stream, the graph's random draws use RunCtx {seed, step}, and the optimizer
 * state is checkpointed in full, so `--resume` continues bit-identically and the thread
 * count changes nothing. Failures (bad flags, bad data, foreign or corrupt checkpoints,
 * unwritable paths, a non-finite loss) print one clear message and return a non-zero exit
 * status; they never leave a half-written file behind.
 *
 * Data-parallel training (docs/distributed.md) is the same loop on every rank of an MPI
 * job: rank k takes its slice of the global batch and of the graph's noise, the step's
 * loss and gradients are averaged in one fused allreduce (comm.h), and rank 0 alone logs
 * and writes checkpoints. In the default runtime the job is one rank and nothing changes.
 *
 * This file: options, parameter state and checkpoints, train, data, info. Sampling,
 * evaluation and the gradient check live in driver_eval.c.
 */
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "rt.h"

#define CKPT_FORMAT "gradc-ckpt"
#define CKPT_VERSION "1"

int gr_fail(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fprintf(stderr, "error: ");
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
  va_end(ap);
  return 1;
}

/* ---- module table helpers ------------------------------------------------------------ */
static const GrConstInfo *find_const(const GrModuleInfo *m, const char *name) {
  for (int i = 0; i < m->nconsts; i++)
    if (strcmp(m->consts[i].name, name) == 0) return &m->consts[i];
  return NULL;
}

double gr_const_num(const GrModuleInfo *m, const char *name, double dflt) {
  const GrConstInfo *c = find_const(m, name);
  return c && !c->is_str ? c->num : dflt;
}

const char *gr_const_str(const GrModuleInfo *m, const char *name, const char *dflt) {
  const GrConstInfo *c = find_const(m, name);
  return c && c->is_str && c->str ? c->str : dflt;
}

const GrEntryInfo *gr_find_entry(const GrModuleInfo *m, const char *name) {
  for (int i = 0; i < m->nentries; i++)
    if (strcmp(m->entries[i].name, name) == 0) return &m->entries[i];
  return NULL;
}

void gr_call_entry(const GrEntryInfo *e, const GrModuleInfo *m, void *const *inputs,
                   void *const *params, void *const *outputs, void *ws, const GrRunCtx *rc) {
  void *args[256];
  void **a = args;
  size_t n = (size_t)(e->ninputs + m->nparams + e->noutputs);
  if (n > 256) a = malloc(n * sizeof *a);
  if (!a) return;
  int k = 0;
  for (int i = 0; i < e->ninputs; i++) a[k++] = inputs[i];
  for (int i = 0; i < m->nparams; i++) a[k++] = params[i];
  for (int i = 0; i < e->noutputs; i++) a[k++] = outputs[i];
  e->fn(a, ws, rc);
  if (a != args) free(a);
}

/* ---- options --------------------------------------------------------------------------- */
typedef enum { OPT_INT, OPT_NUM, OPT_STR, OPT_FLAG, OPT_U64 } OptKind;
typedef struct {
  const char *name;
  OptKind kind;
  size_t off;
  int *given;
  const char *cmds; /* subcommands it applies to, "" = all */
} OptDef;

#define O(f) offsetof(GrOpts, f)
static const OptDef opt_defs[] = {
    {"--steps", OPT_STR, O(steps_list), NULL, ""},
    {"--lr", OPT_NUM, O(lr), NULL, "train"},
    {"--lr-min", OPT_NUM, O(lr_min), NULL, "train"},
    {"--seed", OPT_U64, O(seed), NULL, ""},
    {"--data", OPT_STR, O(data), NULL, ""},
    {"--eval-data", OPT_STR, O(eval_data), NULL, "eval"},
    {"--ckpt", OPT_STR, O(ckpt), NULL, ""},
    {"--resume", OPT_FLAG, O(resume), NULL, "train"},
    {"--log", OPT_STR, O(log), NULL, "train"},
    {"--every", OPT_INT, O(every), NULL, "train"},
    {"--until", OPT_INT, O(until), NULL, "train"},
    {"--ckpt-every", OPT_INT, O(ckpt_every), NULL, "train"},
    {"--threads", OPT_INT, O(threads), NULL, ""},
    {"--clip", OPT_NUM, O(clip), NULL, "train"},
    {"--ema", OPT_NUM, O(ema), NULL, "train"},
    {"--warmup", OPT_INT, O(warmup), NULL, "train"},
    {"--weight-decay", OPT_NUM, O(weight_decay), NULL, "train"},
    {"--optimizer", OPT_STR, O(opt_name), NULL, "train"},
    {"--schedule", OPT_STR, O(sched_name), NULL, "train"},
    {"--quiet", OPT_FLAG, O(quiet), NULL, ""},
    {"-n", OPT_INT, O(n), NULL, ""},
    {"--out", OPT_STR, O(out), NULL, ""},
    {"--png", OPT_STR, O(png), NULL, ""},
    {"--labels", OPT_STR, O(labels), NULL, "data"},
    {"--no-ema", OPT_FLAG, O(no_ema), NULL, ""},
    {"--restart", OPT_FLAG, O(restart), NULL, ""},
    {"--sampler", OPT_STR, O(sampler), NULL, ""},
    {"--json", OPT_FLAG, O(json), NULL, ""},
    {"--tol", OPT_NUM, O(tol), NULL, "gradcheck"},
};
#undef O

#define USAGE_TEXT \
    "usage: %s COMMAND [options]\n" \
    "commands:\n" \
    "  train      [--steps N] [--lr X] [--seed S] [--data SRC] [--ckpt FILE.safetensors]\n" \
    "             [--resume] [--until M] [--log FILE.csv|.jsonl] [--every N] [--threads N]\n" \
    "             [--ckpt-every K] [--clip C] [--ema D] [--warmup W] [--weight-decay X] [--quiet]\n" \
    "             [--optimizer adam|adamw|sgd|radam] [--schedule constant|cosine|warmup_cosine]\n" \
    "  sample     --ckpt FILE --steps K -n N --out FILE.npy [--png FILE.png] [--seed S]\n" \
    "             [--no-ema] [--restart] [--sampler imm|uniform]\n" \
    "  eval       --ckpt FILE [--steps 1,2,4] [-n N] [--json] [--eval-data SRC] [--no-ema]\n" \
    "             [--png PREFIX.png: PREFIX_K.png per step count K]\n" \
    "  gradcheck  [--ckpt FILE] [-n COORDS] [--tol X] [--seed S]\n" \
    "  data       -n N --out FILE.npy [--labels FILE.npy] [--seed S] [--data SRC]\n" \
    "  info\n" \
    "Defaults come from the program's constants (see `%s info` and docs/runtime.md).\n" \
    "Batch size and shapes are fixed at compile time.\n"

static void usage(FILE *f, const char *prog) { fprintf(f, USAGE_TEXT, prog, prog); }

static void defaults(GrOpts *o, const GrModuleInfo *m) {
  memset(o, 0, sizeof *o);
  o->m = m;
  o->data = gr_const_str(m, "data", "checkerboard");
  o->lr = gr_const_num(m, "lr", 1e-3);
  o->beta1 = gr_const_num(m, "beta1", 0.9);
  o->beta2 = gr_const_num(m, "beta2", 0.999);
  o->adam_eps = gr_const_num(m, "adam_eps", 1e-8);
  o->weight_decay = gr_const_num(m, "weight_decay", 0);
  o->momentum = gr_const_num(m, "momentum", 0.9);
  o->warmup = (int64_t)gr_const_num(m, "warmup", 0);
  o->lr_min = gr_const_num(m, "lr_min", 0);
  o->clip = gr_const_num(m, "clip", 0);
  o->ema = gr_const_num(m, "ema", 0.999);
  o->steps = (int64_t)gr_const_num(m, "steps", 1000);
  o->ckpt_every = (int64_t)gr_const_num(m, "ckpt_every", 1000);
  o->sigma_d = gr_const_num(m, "sigma_d", 0.5);
  o->T = gr_const_num(m, "T", 0.994);
  o->eps = gr_const_num(m, "eps", 0);
  o->sampler = gr_const_str(m, "sampler", "imm");
  o->every = 100;
  o->seed = 0;
  o->threads = (int)sysconf(_SC_NPROCESSORS_ONLN);
  if (o->threads > 16) o->threads = 16;
  o->tol = -1;
}

static int parse_i64(const char *s, int64_t *out) {
  char *e;
  errno = 0;
  long long v = strtoll(s, &e, 10);
  if (errno || e == s || *e) return -1;
  *out = v;
  return 0;
}

/* Flags that change shapes: explain the rebuild instead of a plain "unknown option". */
static int compile_time_flag(const GrModuleInfo *m, const char *flag) {
  const char *name = flag + strspn(flag, "-");
  const char *cname = name;
  if (strcmp(name, "batch") == 0 || strcmp(name, "batch-size") == 0 || strcmp(name, "B") == 0) cname = "B";
  const GrConstInfo *c = find_const(m, cname);
  if (!c && strcmp(cname, "B") != 0) return 0;
  if (strcmp(cname, "B") == 0) {
    if (c) fprintf(stderr, "error: batch size is fixed at compile time (B=%g): rebuild with gradc build -D B=...\n", c->num);
    else fprintf(stderr, "error: batch size is fixed at compile time: rebuild with gradc build -D B=...\n");
    return 1;
  }
  if (c->is_str) fprintf(stderr, "error: %s is a compile-time constant (%s=\"%s\"): rebuild with gradc build -D %s=...\n", cname, cname, c->str, cname);
  else fprintf(stderr, "error: %s is a compile-time constant (%s=%g): rebuild with gradc build -D %s=...\n", cname, cname, c->num, cname);
  return 1;
}

static int applies(const OptDef *d, const char *cmd) {
  if (!*d->cmds) return 1;
  return strstr(d->cmds, cmd) != NULL;
}

static int parse_args(GrOpts *o, int argc, char **argv) {
  for (int i = 2; i < argc; i++) {
    char name[64];
    const char *a = argv[i], *val = NULL;
    const char *eq = strchr(a, '=');
    if (eq && a[0] == '-' && (size_t)(eq - a) < sizeof name) {
      snprintf(name, sizeof name, "%.*s", (int)(eq - a), a);
      val = eq + 1;
    } else snprintf(name, sizeof name, "%s", a);
    const OptDef *d = NULL;
    for (size_t k = 0; k < sizeof opt_defs / sizeof *opt_defs; k++)
      if (strcmp(opt_defs[k].name, name) == 0) d = &opt_defs[k];
    if (strcmp(name, "--help") == 0 || strcmp(name, "-h") == 0) {
      o->help = 1;
      continue;
    }
    if (!d) {
      if (name[0] == '-' && compile_time_flag(o->m, name)) return 1;
      fprintf(stderr, "error: unknown option '%s' for '%s' (see %s --help)\n", a, o->cmd, argv[0]);
      return 1;
    }
    if (!applies(d, o->cmd)) {
      fprintf(stderr, "error: option %s does not apply to '%s'\n", name, o->cmd);
      return 1;
    }
    char *base = (char *)o + d->off;
    if (d->kind == OPT_FLAG) {
      if (val) return gr_fail("option %s takes no value", name);
      *(int *)base = 1;
      continue;
    }
    if (!val) {
      if (i + 1 >= argc) return gr_fail("option %s needs a value", name);
      val = argv[++i];
    }
    int64_t iv;
    char *e;
    switch (d->kind) {
    case OPT_STR: *(const char **)base = val; break;
    case OPT_NUM:
      *(double *)base = strtod(val, &e);
      if (e == val || *e || !isfinite(*(double *)base)) return gr_fail("option %s: '%s' is not a number", name, val);
      break;
    case OPT_U64:
      if (parse_i64(val, &iv) || iv < 0) return gr_fail("option %s: '%s' is not a non-negative integer", name, val);
      *(uint64_t *)base = (uint64_t)iv;
      o->seed_given = 1;
      break;
    default:
      if (parse_i64(val, &iv)) return gr_fail("option %s: '%s' is not an integer", name, val);
      if (d->off == offsetof(GrOpts, threads)) *(int *)base = (int)iv;
      else *(int64_t *)base = iv;
    }
  }
  return 0;
}

/* Resolves names (optimizer, schedule) and --steps (a number for train, a list for eval). */
static int finish_opts(GrOpts *o) {
  const GrModuleInfo *m = o->m;
  const char *on = o->opt_name ? o->opt_name : gr_const_str(m, "optimizer", "adam");
  const char *sn = o->sched_name ? o->sched_name : gr_const_str(m, "schedule", "constant");
  if (gr_opt_parse(on, &o->opt)) return gr_fail("unknown optimizer '%s' (adam, adamw, sgd, radam)", on);
  if (gr_sched_parse(sn, &o->sched)) return gr_fail("unknown schedule '%s' (constant, cosine, warmup_cosine)", sn);
  if (o->steps_list && strcmp(o->cmd, "eval") != 0) {
    int64_t v;
    if (parse_i64(o->steps_list, &v) || v < 0) return gr_fail("--steps: '%s' is not a non-negative integer", o->steps_list);
    o->steps = v;
    o->steps_given = 1;
  }
  if (o->every < 1) return gr_fail("--every must be >= 1");
  if (o->threads < 1) return gr_fail("--threads must be >= 1");
  if (!(o->lr >= 0)) return gr_fail("--lr must be >= 0");
  if (!(o->ema >= 0 && o->ema < 1)) return gr_fail("--ema must be in [0, 1)");
  if (o->ckpt_every < 1) o->ckpt_every = o->steps > 0 ? o->steps : 1;
  if (!o->ckpt) {
    const char *src = m->source_name ? m->source_name : "model";
    const char *b = strrchr(src, '/');
    b = b ? b + 1 : src;
    size_t len = strcspn(b, ".");
    snprintf(o->ckpt_default, sizeof o->ckpt_default, "%.*s.safetensors", (int)len, b);
    o->ckpt = o->ckpt_default;
  }
  return 0;
}

/* ---- parameter state ------------------------------------------------------------------ */
int gr_state_alloc(GrState *s, const GrModuleInfo *m) {
  memset(s, 0, sizeof *s);
  s->m = m;
  s->np = m->nparams;
  size_t np = (size_t)(m->nparams ? m->nparams : 1);
  s->numel = calloc(np, sizeof *s->numel);
  float ***arrs[] = {&s->w, &s->ema, &s->s0, &s->s1, &s->g};
  for (int k = 0; k < 5; k++) *arrs[k] = calloc(np, sizeof(float *));
  if (!s->numel || !s->w || !s->ema || !s->s0 || !s->s1 || !s->g) return -1;
  for (int i = 0; i < m->nparams; i++) {
    if (m->params[i].dtype != GR_F32) return -1;
    s->numel[i] = gr_numel(&m->params[i]);
    size_t b = (size_t)s->numel[i] * 4;
    for (int k = 0; k < 5; k++)
      if (!((*arrs[k])[i] = gr_alloc(b ? b : 4))) return -1;
  }
  return 0;
}

void gr_state_free(GrState *s) {
  float **arrs[] = {s->w, s->ema, s->s0, s->s1, s->g};
  for (int k = 0; k < 5; k++) {
    if (!arrs[k]) continue;
    for (int i = 0; i < s->np; i++) gr_free(arrs[k][i]);
    free(arrs[k]);
  }
  free(s->numel);
  memset(s, 0, sizeof *s);
}

static void state_init(GrState *s, uint64_t seed) {
  for (int i = 0; i < s->np; i++) {
    gr_init_param(&s->m->params[i], i, seed, s->w[i]);
    memcpy(s->ema[i], s->w[i], (size_t)s->numel[i] * 4);
  }
}

static int load_tensor(const GrStFile *f, const char *name, const GrTensorInfo *info,
                       float *dst, const char *path, char *err, size_t nerr) {
  const GrStTensor *t = gr_st_find(f, name);
  if (!t) {
    snprintf(err, nerr, "%s: checkpoint has no tensor '%s'", path, name);
    return -1;
  }
  int same = t->dtype == GR_F32 && t->rank == info->rank;
  for (int d = 0; same && d < t->rank; d++) same = t->dims[d] == info->dims[d];
  if (!same) {
    snprintf(err, nerr, "%s: tensor '%s' has the wrong dtype or shape for this program", path, name);
    return -1;
  }
  memcpy(dst, t->data, (size_t)gr_numel(info) * 4);
  return 0;
}

int gr_state_load(GrState *s, const GrOpts *o, const char *path, int full, uint64_t *seed,
                  char *err, size_t nerr) {
  GrStFile f;
  if (gr_st_read(path, &f, err, nerr)) return -1;
  const GrModuleInfo *m = s->m;
  const char *fmt = gr_st_meta(&f, "format"), *hash = gr_st_meta(&f, "graph_hash");
  const char *step = gr_st_meta(&f, "step"), *sd = gr_st_meta(&f, "seed");
  int r = -1;
  char name[600];
  int64_t v;
  if (!fmt || strcmp(fmt, CKPT_FORMAT) != 0 || !step || !sd || parse_i64(step, &v) || v < 0) {
    snprintf(err, nerr, "%s: not a gradc checkpoint (missing or bad __metadata__ format/step/seed)", path);
    goto out;
  }
  if (!hash || strcmp(hash, m->graph_hash ? m->graph_hash : "") != 0) {
    snprintf(err, nerr, "%s: checkpoint is from another graph (graph hash %.40s, this program is %.40s); "
             "it cannot be loaded into %s", path, hash ? hash : "(none)", m->graph_hash ? m->graph_hash : "(none)",
             m->source_name ? m->source_name : "this program");
    goto out;
  }
  s->step = v;
  const char *gb = gr_st_meta(&f, "global_batch");
  int64_t gbv;
  s->global_batch = gb && parse_i64(gb, &gbv) == 0 && gbv > 0 ? gbv : 0;
  if (seed) {
    int64_t sv;
    if (parse_i64(sd, &sv)) sv = 0;
    *seed = (uint64_t)sv;
  }
  for (int i = 0; i < m->nparams; i++) {
    const GrTensorInfo *p = &m->params[i];
    if (load_tensor(&f, p->name, p, s->w[i], path, err, nerr)) goto out;
    snprintf(name, sizeof name, "ema/%s", p->name);
    if (gr_st_find(&f, name)) {
      if (load_tensor(&f, name, p, s->ema[i], path, err, nerr)) goto out;
    } else memcpy(s->ema[i], s->w[i], (size_t)s->numel[i] * 4);
    if (!full) continue;
    for (int k = 0; k < gr_opt_nstate(o->opt); k++) {
      snprintf(name, sizeof name, "%s/%s", gr_opt_state_name(o->opt, k), p->name);
      if (load_tensor(&f, name, p, k ? s->s1[i] : s->s0[i], path, err, nerr)) {
        const char *was = gr_st_meta(&f, "optimizer");
        snprintf(err, nerr, "%s: no optimizer state '%s' (checkpoint was trained with optimizer '%s', this run uses '%s')",
                 path, name, was ? was : "?", gr_opt_name(o->opt));
        goto out;
      }
    }
  }
  r = 0;
out:
  gr_st_free(&f);
  return r;
}

int gr_check_writable(const char *path, char *err, size_t nerr) {
  struct stat st;
  if (stat(path, &st) == 0 && S_ISDIR(st.st_mode)) {
    snprintf(err, nerr, "cannot write %s: it is a directory", path);
    return -1;
  }
  char tmp[4200];
  snprintf(tmp, sizeof tmp, "%s.tmp.XXXXXX", path);
  int fd = mkstemp(tmp);
  if (fd < 0) {
    snprintf(err, nerr, "cannot write %s: %s", path, strerror(errno));
    return -1;
  }
  close(fd);
  unlink(tmp);
  return 0;
}

/* Rows per optimizer step over the whole job: the compiled (local) batch times the ranks. */
static int64_t global_batch(const GrOpts *o) {
  const GrEntryInfo *e = gr_find_entry(o->m, "loss_grad");
  int64_t b = e && e->ninputs > 0 && e->inputs[0].rank > 0 ? e->inputs[0].dims[0] : 0;
  return b * (o->comm ? o->comm->size : 1);
}

static int save_ckpt(const GrState *s, const GrOpts *o, char *err, size_t nerr) {
  const GrModuleInfo *m = s->m;
  int ns = gr_opt_nstate(o->opt), per = 2 + ns;
  GrStTensor *t = calloc((size_t)(m->nparams * per + 1), sizeof *t);
  char *names = calloc((size_t)(m->nparams * per + 1), 600);
  if (!t || !names) {
    free(t), free(names);
    snprintf(err, nerr, "out of memory writing %s", o->ckpt);
    return -1;
  }
  int nt = 0;
  for (int i = 0; i < m->nparams; i++) {
    const GrTensorInfo *p = &m->params[i];
    const char *pre[4] = {"", "ema/", gr_opt_state_name(o->opt, 0), ns > 1 ? gr_opt_state_name(o->opt, 1) : ""};
    /* --ema 0: the EMA is the weights themselves (train_step keeps no copy) */
    const float *src[4] = {s->w[i], o->ema > 0 ? s->ema[i] : s->w[i], s->s0[i], s->s1[i]};
    for (int k = 0; k < per; k++) {
      char *nm = names + (size_t)nt * 600;
      snprintf(nm, 600, "%s%s%s", pre[k], k >= 2 ? "/" : "", p->name);
      t[nt].name = nm;
      t[nt].dtype = GR_F32;
      t[nt].rank = p->rank;
      memcpy(t[nt].dims, p->dims, sizeof p->dims);
      t[nt].data = src[k];
      nt++;
    }
  }
  char step[32], seed[32], ema[32], rng[96], lr[32], total[32], warm[32], clip[32], ranks[32], gbatch[32];
  snprintf(step, sizeof step, "%lld", (long long)s->step);
  snprintf(ranks, sizeof ranks, "%d", o->comm ? o->comm->size : 1);
  snprintf(gbatch, sizeof gbatch, "%lld", (long long)global_batch(o));
  snprintf(lr, sizeof lr, "%.17g", o->lr);
  snprintf(total, sizeof total, "%lld", (long long)o->steps);
  snprintf(warm, sizeof warm, "%lld", (long long)o->warmup);
  snprintf(clip, sizeof clip, "%.17g", o->clip);
  snprintf(seed, sizeof seed, "%llu", (unsigned long long)o->seed);
  snprintf(ema, sizeof ema, "%.17g", o->ema);
  snprintf(rng, sizeof rng, "philox4x32-10 seed=%llu next_step=%lld", (unsigned long long)o->seed, (long long)s->step);
  GrStMeta meta[] = {{"format", CKPT_FORMAT}, {"format_version", CKPT_VERSION},
                     {"step", step}, {"seed", seed},
                     {"graph_hash", m->graph_hash ? m->graph_hash : ""},
                     {"source", m->source_name ? m->source_name : ""},
                     {"optimizer", gr_opt_name(o->opt)}, {"ema_decay", ema},
                     {"data", o->data}, {"rng", rng},
                     {"lr", lr}, {"schedule", gr_sched_name(o->sched)}, {"steps_total", total},
                     {"warmup", warm}, {"clip", clip}, {"ranks", ranks}, {"global_batch", gbatch}};
  int r = gr_st_write(o->ckpt, t, nt, meta, (int)(sizeof meta / sizeof *meta), err, nerr);
  free(t), free(names);
  return r;
}

/* ---- train ------------------------------------------------------------------------------- */
typedef struct {
  const GrEntryInfo *e;
  int64_t B, row;   /* batch rows, f32 values per row */
  int has_labels;
  void *ws;
  float *x, *loss;
  int32_t *labels;
  void **outs; /* loss, then one gradient per parameter (allocated once) */
  float *fused; /* several ranks: [loss, stop, all gradients], the step's one allreduce */
  int stop;     /* after a step: every rank agreed to stop (Ctrl-C / SIGTERM on any) */
} TrainIO;

static int check_loss_grad(const GrModuleInfo *m, const GrEntryInfo *e, GrData *d, TrainIO *io) {
  if (e->ninputs < 1 || e->inputs[0].dtype != GR_F32 || e->inputs[0].rank < 1)
    return gr_fail("entry loss_grad must take the data batch (f32[B, ...]) as its first input");
  const GrTensorInfo *x = &e->inputs[0];
  io->B = x->dims[0];
  io->row = gr_numel(x) / (io->B ? io->B : 1);
  if (e->ninputs > 2 || (e->ninputs == 2 && (e->inputs[1].dtype != GR_I32 || e->inputs[1].rank != 1 ||
                                             e->inputs[1].dims[0] != io->B)))
    return gr_fail("entry loss_grad takes inputs the trainer cannot fill (it provides the batch and, optionally, i32[B] labels)");
  io->has_labels = e->ninputs == 2;
  if (e->noutputs != 1 + m->nparams || e->outputs[0].rank != 0 || e->outputs[0].dtype != GR_F32)
    return gr_fail("entry loss_grad must return the f32 loss and one gradient per parameter (%d outputs, has %d)",
                1 + m->nparams, e->noutputs);
  for (int i = 0; i < m->nparams; i++)
    if (gr_numel(&e->outputs[1 + i]) != gr_numel(&m->params[i]) || e->outputs[1 + i].dtype != GR_F32)
      return gr_fail("loss_grad output %d does not match parameter '%s'", 1 + i, m->params[i].name);
  if (d->row_elems != io->row)
    return gr_fail("data '%s' has rows of %lld values but the model's input has rows of %lld (shape [%lld, ...])",
                d->name, (long long)d->row_elems, (long long)io->row, (long long)io->B);
  if (io->has_labels && !d->has_labels)
    return gr_fail("the model takes labels but data '%s' has none", d->name);
  return 0;
}

static int train_io_alloc(TrainIO *io, const GrState *s, int size) {
  io->outs = calloc((size_t)s->np + 1, sizeof *io->outs);
  io->ws = gr_alloc((size_t)(io->e->workspace_bytes > 0 ? io->e->workspace_bytes : 64));
  io->x = gr_alloc((size_t)(io->B * io->row) * 4 + 4);
  io->labels = gr_alloc((size_t)io->B * 4 + 4);
  io->loss = gr_alloc(64);
  if (!io->outs || !io->ws || !io->x || !io->labels || !io->loss) return -1;
  if (size > 1) {
    int64_t n = 2;
    for (int i = 0; i < s->np; i++) n += s->numel[i];
    if (!(io->fused = gr_alloc((size_t)n * 4))) return -1;
  }
  io->outs[0] = io->loss;
  for (int i = 0; i < s->np; i++) io->outs[1 + i] = s->g[i];
  return 0;
}

static void train_io_free(TrainIO *io) {
  gr_free(io->ws), gr_free(io->x), gr_free(io->labels), gr_free(io->loss), gr_free(io->fused);
  free(io->outs);
}

static int open_data(GrOpts *o, const char *src, int eval, GrData *d) {
  char err[1024];
  if (gr_data_open(d, src, o->seed, eval, err, sizeof err)) return gr_fail("%s", err);
  return 0;
}

/* Ctrl-C (SIGINT) or SIGTERM during training: finish the current step, write a
 * checkpoint, exit 130. A signal handler can only talk through a global flag; this is
 * the one piece of global state in the runtime, set by the handler, read by the loop. */
static volatile sig_atomic_t gr_stop_requested;

static void on_stop_signal(int sig) {
  (void)sig;
  gr_stop_requested = 1;
}

/* One optimizer step; returns 1 on a non-finite loss or gradient. With several ranks
 * (docs/distributed.md) rank k takes rows [k*B, (k+1)*B) of the global batch `step`
 * (B*size rows), draws its slice of the graph's noise (RunCtx.shard = k), and the
 * gradients and loss are averaged over ranks in one fused allreduce before the (then
 * identical) clip, optimizer and EMA updates. */
static int train_step(GrState *s, GrOpts *o, TrainIO *io, GrData *d, const GrRunCtx *rc0,
                      double *grad_norm, double *lr) {
  char err[512];
  GrRunCtx rc = *rc0;
  rc.step = (uint64_t)s->step;
  GrComm *cm = o->comm;
  int64_t row0 = s->step * io->B * cm->size + (int64_t)cm->rank * io->B;
  if (gr_data_rows(d, row0, io->B, io->x, io->has_labels ? io->labels : NULL, err, sizeof err))
  {
    gr_fail("%s", err);
    return -1;
  }
  void *in[2] = {io->x, io->labels};
  gr_call_entry(io->e, s->m, in, (void *const *)s->w, io->outs, io->ws, &rc);
  io->stop = gr_stop_requested != 0;
  if (gr_comm_average(cm, io->fused, io->loss, s->g, s->numel, s->np, &io->stop)) return -1;
  *grad_norm = gr_grad_norm(&rc, s->g, s->numel, s->np);
  if (!isfinite(*io->loss) || !isfinite(*grad_norm)) return 1;
  gr_clip_scale(&rc, s->g, s->numel, s->np, *grad_norm, o->clip);
  GrSchedule sch = {o->sched, o->lr, o->lr_min, o->warmup, o->steps};
  *lr = gr_sched_lr(&sch, s->step);
  GrOptConfig oc = {o->opt, o->beta1, o->beta2, o->adam_eps, o->weight_decay, o->momentum};
  for (int i = 0; i < s->np; i++) {
    gr_opt_step(&rc, &oc, s->w[i], s->g[i], s->s0[i], s->s1[i], s->numel[i], s->step + 1, *lr);
    if (o->ema > 0) gr_ema_update(&rc, s->ema[i], s->w[i], s->numel[i], o->ema);
  }
  s->step++;
  return 0;
}

/* Checkpoint at the end of a step: rank 0 writes it; with several ranks every rank then
 * learns whether the write worked and checks that the training state is still identical
 * everywhere (a fingerprint of weights, EMA and optimizer state). Returns 0 or 1. */
static int checkpoint(GrState *s, GrOpts *o) {
  GrComm *cm = o->comm;
  char err[1024];
  int ok = 1;
  if (cm->rank == 0 && save_ckpt(s, o, err, sizeof err)) ok = 0, gr_fail("%s", err);
  if (cm->size <= 1) return ok ? 0 : 1;
  if (!gr_comm_all_ok(cm, ok)) return 1;
  uint64_t h = gr_comm_checksum(s->w, s->numel, s->np, 0);
  h = gr_comm_checksum(o->ema > 0 ? s->ema : s->w, s->numel, s->np, h);
  h = gr_comm_checksum(s->s0, s->numel, s->np, h);
  h = gr_comm_checksum(s->s1, s->numel, s->np, h);
  if (gr_comm_same_u64(cm, h)) return 0;
  if (cm->rank == 0)
    gr_fail("the ranks' weights differ at step %lld (the allreduce gave ranks different sums); training stopped",
         (long long)s->step);
  return 1;
}

static int train_loop(GrState *s, GrOpts *o, TrainIO *io, GrData *d, GrPool *pool) {
  char err[1024];
  GrComm *cm = o->comm;
  int lead = cm->rank == 0; /* only rank 0 prints, logs and writes checkpoints */
  int64_t stop = o->until > 0 && o->until < o->steps ? o->until : o->steps;
  GrLog lg;
  int ok = gr_log_open(&lg, lead ? o->log : NULL, o->resume, s->step, o->steps, err, sizeof err) == 0;
  if (!ok) gr_fail("%s", err);
  if (!gr_comm_all_ok(cm, ok)) {
    if (ok) gr_log_close(&lg);
    return 1;
  }
  lg.quiet = o->quiet || !lead;
  if (!lead) lg.tty = 0;
  GrRunCtx rc = {.seed = o->seed, .step = 0, .pool = pool, .shard = (uint64_t)cm->rank};
  int64_t last_ckpt = s->step, since = s->step;
  double t_last = gr_now();
  int rcode = 0;
  while (s->step < stop) {
    double gn = 0, lr = 0;
    int r = train_step(s, o, io, d, &rc, &gn, &lr);
    if (r) {
      gr_log_close(&lg);
      if (r < 0) return gr_comm_abort(cm, 1); /* this rank alone failed: stop the job */
      if (!lead) return 1; /* the averaged loss is the same everywhere: all ranks stop */
      return gr_fail("non-finite %s (%g) at step %lld; training stopped. The last good checkpoint (step %lld) in %s is kept.",
                  isfinite(*io->loss) ? "gradient" : "loss", isfinite(*io->loss) ? gn : (double)*io->loss,
                  (long long)s->step, (long long)last_ckpt, o->ckpt);
    }
    double now = gr_now();
    GrLogRow row = {s->step, *io->loss, lr, gn, (double)(s->step - since) / (now - t_last + 1e-12)};
    if (s->step % o->every == 0 || s->step == stop) {
      gr_log_row(&lg, &row);
      since = s->step;
      t_last = now;
    } else gr_log_progress(&lg, &row);
    int interrupted = cm->size > 1 ? io->stop : gr_stop_requested != 0;
    if (s->step % o->ckpt_every == 0 || s->step == stop || interrupted) {
      if (checkpoint(s, o)) {
        rcode = 1;
        break;
      }
      last_ckpt = s->step;
    }
    if (interrupted) {
      gr_log_close(&lg);
      if (lead)
        fprintf(stderr, "interrupted at step %lld; checkpoint written to %s (continue with --resume)\n",
                (long long)s->step, o->ckpt);
      return 130;
    }
  }
  gr_log_close(&lg);
  return rcode;
}

/* Rank 0's closing line on a distributed run: ranks, batch and the allreduce's share. */
static void print_comm_summary(const GrOpts *o, double seconds, int64_t steps) {
  const GrComm *cm = o->comm;
  if (cm->size <= 1 || cm->rank != 0 || o->quiet || steps <= 0) return;
  double per = 1e3 / (double)(cm->n_comm ? cm->n_comm : 1);
  printf("distributed: %d ranks (%s), global batch %lld, %.3f steps/s, allreduce %.3f ms/step (%.1f%% of the step)",
         cm->size, gr_comm_engine(), (long long)global_batch(o), (double)steps / seconds,
         cm->t_comm * per, 100 * cm->t_comm / seconds);
  if (cm->profile) printf(", waiting for the slowest rank %.3f ms/step", cm->t_wait * per);
  printf("\n");
}

/* Sends stderr into an anonymous in-memory file; returns the saved descriptor of the
 * real stderr (-1: not redirected). */
static int hold_stderr(void) {
  fflush(stderr);
  int mem = memfd_create("gradc-stderr", 0);
  if (mem < 0) return -1;
  int saved = dup(2);
  if (saved < 0 || dup2(mem, 2) < 0) {
    if (saved >= 0) close(saved);
    close(mem);
    return -1;
  }
  close(mem);
  return saved;
}

/* Restores stderr; with `replay`, copies what was held back to it. */
static void release_stderr(int saved, int replay) {
  fflush(stderr);
  int mem = dup(2);
  dup2(saved, 2);
  close(saved);
  if (mem < 0) return;
  char buf[4096];
  ssize_t n;
  if (replay && lseek(mem, 0, SEEK_SET) == 0)
    while ((n = read(mem, buf, sizeof buf)) > 0)
      if (write(2, buf, (size_t)n) != n) break;
  close(mem);
}

/* Everything before the first step: 0 ready, 1 error (printed), 2 nothing to do. */
static int train_setup(GrOpts *o, const GrEntryInfo *e, GrState *s, GrData *d, int *d_open, TrainIO *io) {
  const GrModuleInfo *m = o->m;
  char err[1024];
  uint64_t ck_seed = o->seed;
  if (o->comm->rank == 0 && gr_check_writable(o->ckpt, err, sizeof err)) return gr_fail("%s", err);
  if (o->comm->rank == 0) gr_st_remove_stale(o->ckpt); /* temp files of a write that was killed */
  if (gr_state_alloc(s, m)) return gr_fail("cannot allocate the parameters (only f32 parameters are trainable)");
  if (o->resume) {
    if (gr_state_load(s, o, o->ckpt, 1, &ck_seed, err, sizeof err)) return gr_fail("%s", err);
    if (o->seed_given && ck_seed != o->seed)
      return gr_fail("--seed %llu differs from the checkpoint's seed %llu; resume continues the same run",
                  (unsigned long long)o->seed, (unsigned long long)ck_seed);
    o->seed = ck_seed;
    int64_t gb = global_batch(o);
    if (s->global_batch && s->global_batch != gb)
      return gr_fail("%s was trained with a global batch of %lld rows, this job has %lld (%d rank%s x %lld); "
                  "resume with the same number of ranks", o->ckpt, (long long)s->global_batch, (long long)gb,
                  o->comm->size, o->comm->size > 1 ? "s" : "", (long long)(gb / o->comm->size));
    if (s->step >= o->steps) {
      printf("checkpoint %s is already at step %lld (target %lld): nothing to do\n", o->ckpt,
             (long long)s->step, (long long)o->steps);
      return 2;
    }
  } else state_init(s, o->seed);
  if (open_data(o, o->data, 0, d)) return 1;
  *d_open = 1;
  if (check_loss_grad(m, e, d, io)) return 1;
  if (train_io_alloc(io, s, o->comm->size)) return gr_fail("out of memory (workspace %lld bytes)", (long long)e->workspace_bytes);
  return 0;
}

static int cmd_train(GrOpts *o) {
  const GrEntryInfo *e = gr_find_entry(o->m, "loss_grad");
  if (!e) return gr_fail("this program has no entry 'loss_grad' (is it a trainable program with an 'entry loss'?)");
  GrData d;
  GrState s;
  memset(&s, 0, sizeof s);
  TrainIO io = {.e = e};
  int d_open = 0;
  /* Ranks > 0 hold their setup messages back: most failures (bad data, flags, a foreign
   * checkpoint) happen on every rank alike, and rank 0 has said it once. A rank that
   * failed where rank 0 did not prints its own. Every rank starts, or none. */
  int held = o->comm->rank > 0 ? hold_stderr() : -1;
  int st = train_setup(o, e, &s, &d, &d_open, &io);
  int root_ok = gr_comm_root_i32(o->comm, st != 1);
  if (held >= 0) release_stderr(held, st == 1 && root_ok);
  if (!gr_comm_all_ok(o->comm, st != 1)) st = 1;
  int rc = st == 2 ? 0 : 1;
  if (st == 0) {
    GrPool *pool = gr_pool_create(o->threads);
    struct sigaction sa, old_int, old_term;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_stop_signal;
    sigemptyset(&sa.sa_mask);
    gr_stop_requested = 0;
    sigaction(SIGINT, &sa, &old_int);
    sigaction(SIGTERM, &sa, &old_term);
    int64_t step0 = s.step;
    double t0 = gr_now();
    rc = train_loop(&s, o, &io, &d, pool);
    sigaction(SIGINT, &old_int, NULL);
    sigaction(SIGTERM, &old_term, NULL);
    gr_pool_destroy(pool);
    if (rc == 0 && !o->quiet && o->comm->rank == 0) {
      print_comm_summary(o, gr_now() - t0, s.step - step0);
      printf("trained to step %lld; checkpoint %s\n", (long long)s.step, o->ckpt);
    }
  }
  train_io_free(&io);
  if (d_open) gr_data_close(&d);
  gr_state_free(&s);
  return rc;
}

/* ---- data and info ------------------------------------------------------------------------- */
/* `data -n N --out X.npy [--labels Y.npy]`: rows [0, N) of the training stream (f32
 * [N, row]) and, with --labels, their labels (i32 [N]). */
static int cmd_data(GrOpts *o) {
  char err[1024];
  if (o->n <= 0) return gr_fail("data: -n N (N > 0) is required");
  if (!o->out) return gr_fail("data: --out FILE.npy is required");
  GrData d;
  if (open_data(o, o->data, 0, &d)) return 1;
  if (o->labels && !d.has_labels) {
    gr_data_close(&d);
    return gr_fail("data '%s' has no labels", o->data);
  }
  GrTensor t = {GR_F32, 2, {o->n, d.row_elems}, NULL}, l = {GR_I32, 1, {o->n}, NULL};
  t.data = gr_alloc((size_t)(o->n * d.row_elems) * 4);
  l.data = gr_alloc((size_t)o->n * 4);
  int r = 1;
  if (!t.data || !l.data) gr_fail("out of memory");
  else if (gr_data_rows(&d, 0, o->n, t.data, l.data, err, sizeof err)) gr_fail("%s", err);
  else if (gr_npy_write(o->out, &t, err, sizeof err)) gr_fail("%s", err);
  else if (o->labels && gr_npy_write(o->labels, &l, err, sizeof err)) gr_fail("%s", err);
  else {
    r = 0;
    if (!o->quiet) printf("wrote %lld rows of '%s' to %s\n", (long long)o->n, o->data, o->out);
  }
  gr_free(t.data);
  gr_free(l.data);
  gr_data_close(&d);
  return r;
}

static void print_shape(const GrTensorInfo *t) {
  static const char *dt[] = {"f32", "f64", "i32", "i64"};
  printf("%s[", t->dtype >= 0 && t->dtype < 4 ? dt[t->dtype] : "?");
  for (int d = 0; d < t->rank; d++) printf("%s%lld", d ? ", " : "", (long long)t->dims[d]);
  printf("]");
}

static int cmd_info(GrOpts *o) {
  const GrModuleInfo *m = o->m;
  int64_t total = 0;
  printf("program     %s\ngraph hash  %s\nabi         %d\n", m->source_name ? m->source_name : "?",
         m->graph_hash ? m->graph_hash : "?", m->abi_version);
  printf("distributed %s\n", gr_comm_engine()); /* MPI runtime or not (gradc build --mpi) */
  printf("matmul      f32: %s; f64: OpenBLAS kernels %s (products split over %d thread(s))\n",
         gr_sgemm_use_own() ? "gradc's AVX-512 kernel (N >= 16; narrower: OpenBLAS)" : "OpenBLAS",
         gr_blas_coretype(), o->threads);
  int width = 8;
  for (int i = 0; i < m->nparams; i++) {
    int len = (int)strlen(m->params[i].name);
    if (len > width) width = len;
  }
  printf("\nparameters (%d):\n", m->nparams);
  for (int i = 0; i < m->nparams; i++) {
    int64_t n = gr_numel(&m->params[i]);
    total += n;
    printf("  %-*s ", width, m->params[i].name);
    print_shape(&m->params[i]);
    printf("  %lld\n", (long long)n);
  }
  printf("  total %lld values (%.2f MB f32)\n", (long long)total, (double)total * 4 / 1e6);
  printf("\nentries:\n");
  for (int i = 0; i < m->nentries; i++) {
    const GrEntryInfo *e = &m->entries[i];
    printf("  %-16s workspace %lld bytes, %.4g FLOPs per call\n    inputs:", e->name,
           (long long)e->workspace_bytes, (double)e->flops);
    for (int k = 0; k < e->ninputs; k++) printf(" "), print_shape(&e->inputs[k]);
    printf("\n    outputs:");
    for (int k = 0; k < e->noutputs && k < 4; k++) printf(" "), print_shape(&e->outputs[k]);
    if (e->noutputs > 4) printf(" ... (%d)", e->noutputs);
    printf("\n");
  }
  const GrEntryInfo *lg = gr_find_entry(m, "loss_grad");
  if (lg) printf("\nFLOPs per training step: %.4g\n", (double)lg->flops);
  printf("\nconstants:\n");
  for (int i = 0; i < m->nconsts; i++) {
    if (m->consts[i].is_str) printf("  %-16s \"%s\"\n", m->consts[i].name, m->consts[i].str);
    else printf("  %-16s %.10g\n", m->consts[i].name, m->consts[i].num);
  }
  return 0;
}

/* `prog CMD --help`: the settings this program would run with (constants + flags). */
static void print_config(const GrOpts *o) {
  printf("\nsettings for %s (program constants, then flags):\n", o->m->source_name ? o->m->source_name : "this program");
  printf("  data %s  optimizer %s  lr %g  schedule %s  warmup %lld  lr_min %g\n", o->data,
         gr_opt_name(o->opt), o->lr, gr_sched_name(o->sched), (long long)o->warmup, o->lr_min);
  printf("  beta1 %g  beta2 %g  weight_decay %g  momentum %g  clip %g  ema %g\n", o->beta1, o->beta2,
         o->weight_decay, o->momentum, o->clip, o->ema);
  printf("  steps %lld  ckpt_every %lld  ckpt %s  seed %llu  threads %d\n", (long long)o->steps,
         (long long)o->ckpt_every, o->ckpt, (unsigned long long)o->seed, o->threads);
  printf("  sampler %s  sigma_d %g  T %g  eps %g\n", o->sampler, o->sigma_d, o->T, o->eps);
  const GrEntryInfo *e = gr_find_entry(o->m, "loss_grad");
  if (e && e->ninputs > 0 && e->inputs[0].rank > 0)
    printf("  batch size B = %lld (fixed at compile time)\n", (long long)e->inputs[0].dims[0]);
}

static int run_in_job(GrOpts *o, int which, int *argc, char ***argv);
static int run_command(GrOpts *o, int which);

int gr_main(const GrModuleInfo *m, int argc, char **argv) {
  const char *prog = argc > 0 && argv[0] ? argv[0] : "prog";
  if (!m || m->abi_version != GR_ABI_VERSION) return gr_fail("runtime ABI mismatch (program %d, runtime %d): rebuild", m ? m->abi_version : -1, GR_ABI_VERSION);
  if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "help") == 0) {
    usage(argc < 2 ? stderr : stdout, prog);
    return argc < 2 ? 2 : 0;
  }
  static const char *const cmds[] = {"train", "sample", "eval", "gradcheck", "data", "info"};
  int which = -1;
  for (int i = 0; i < 6; i++)
    if (strcmp(argv[1], cmds[i]) == 0) which = i;
  if (which < 0) {
    fprintf(stderr, "error: unknown command '%s'\n", argv[1]);
    usage(stderr, prog);
    return 2;
  }
  GrOpts o;
  defaults(&o, m);
  o.cmd = cmds[which];
  o.prog = prog;
  int r = parse_args(&o, argc, argv);
  if (r || finish_opts(&o)) return r ? r : 1;
  if (o.help) {
    usage(stdout, prog);
    print_config(&o);
    return 0;
  }
  return run_in_job(&o, which, &argc, &argv);
}

static int run_command(GrOpts *o, int which) {
  gr_blas_setup(o->threads); /* OpenBLAS's kernels and threads (blas.c) */
  switch (which) {
  case 0: return cmd_train(o);
  case 1: return gr_cmd_sample(o);
  case 2: return gr_cmd_eval(o);
  case 3: return gr_cmd_gradcheck(o);
  case 4: return cmd_data(o);
  default: return cmd_info(o);
  }
}

/* Runs the command inside the job: MPI starts for `train` in the MPI build (comm.c);
 * ranks other than 0 print nothing on stdout. */
static int run_in_job(GrOpts *o, int which, int *argc, char ***argv) {
  GrComm comm;
  char err[512];
  if (gr_comm_init(&comm, which == 0, argc, argv, err, sizeof err)) return comm.rank == 0 ? gr_fail("%s", err) : 1;
  o->comm = &comm;
  if (comm.size > 1 && comm.rank > 0 && !freopen("/dev/null", "w", stdout)) o->quiet = 1;
  int r = run_command(o, which);
  fflush(stdout);
  gr_comm_finalize(&comm);
  o->comm = NULL;
  return r;
}
