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

#include "frontend.h"

#define GRADC_VERSION "0.1.0"

typedef struct {
  const char *files[64];
  int nfiles;
  const char *entry; /* --entry NAME */
  const char *stage; /* --stage=ast|ir */
  int help;
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
    "  --f64             elaborate every f32 as f64\n";

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
  if (!rc && o->entry && !program_find_entry(p, o->entry)) {
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
    fc.incdirs = c->nincdirs ? xrealloc(NULL, (size_t)c->nincdirs * sizeof *fc.incdirs) : NULL;
    if (c->nincdirs) memcpy(fc.incdirs, c->incdirs, (size_t)c->nincdirs * sizeof *fc.incdirs);
    fc.nincdirs = c->nincdirs;
    fc.defines = c->ndefines ? xrealloc(NULL, (size_t)c->ndefines * sizeof *fc.defines) : NULL;
    if (c->ndefines) memcpy(fc.defines, c->defines, (size_t)c->ndefines * sizeof *fc.defines);
    fc.ndefines = c->ndefines;
    fc.promote_f64 = c->promote_f64;
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

static int cmd_dump(Ctx *c, Opts *o) {
  if (need_one_file(o, "dump")) return 2;
  const char *stage = o->stage ? o->stage : "ir";
  if (!strcmp(stage, "ast")) return finish(c, fe_dump_ast(c, o->files[0], stdout) ? 1 : 0);
  if (strcmp(stage, "ir")) {
    fprintf(stderr, "gradc dump: unknown stage '%s' (ast, ir)\n", stage);
    return 2;
  }
  Program p;
  int rc = compile_one(c, o, &p);
  if (!rc) {
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

static const Command commands[] = {
    {"check", cmd_check, "check .grad files: syntax, names, shapes, types",
     "usage: gradc check [options] FILE...\n"
     "Compiles each file up to the IR and prints every error; exit status 0 if all are fine.\n"},
    {"dump", cmd_dump, "print the syntax tree or the IR of a file",
     "usage: gradc dump [--stage=ast|ir] [--entry NAME] [options] FILE\n"
     "--stage=ast prints the parsed syntax tree; --stage=ir (default) the parameters and the\n"
     "elaborated graph of every entry (or of --entry NAME).\n"},
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
