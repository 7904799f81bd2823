/* ir.h: the compile context, diagnostics, and the IR (a flat SSA tensor graph).
 *
 * Every phase of gradc reads and writes the structures declared here:
 *
 *   Ctx       all compile state (arena, source files, diagnostics, options). No globals:
 *             the compiler runs as a library, several times in one process.
 *   SrcLoc    (file, line, col) of the token a node came from. Autodiff and passes copy
 *             it, so every error and every dump points at a line of the user's file.
 *   Graph     one entry point: nodes in topological order (a node's inputs always have
 *             smaller ids), its inputs, its outputs. Values are node ids (ValId).
 *   Program   the parameters shared by all entries of one compiled file, and the entries.
 *
 * Builders (ir_*) infer the result shape from the op table and check it. A shape error is
 * a user error when it comes from the front end: the builder records a diagnostic at the
 * node's location and returns IR_ERR; builders given IR_ERR return IR_ERR, so elaboration
 * can go on and report more errors. Inside autodiff and passes a shape error is a bug:
 * call ir_must() on the result.
 */
#ifndef GRADC_IR_H
#define GRADC_IR_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* ---- ops ----------------------------------------------------------------------------- */
typedef enum {
#define X(id, name, nin, kind, diff, flags) OP_##id,
#include "ops.def"
#undef X
  OP_COUNT
} Op;

typedef enum { K_LEAF, K_UNARY, K_BINARY, K_TERNARY, K_REDUCE, K_SHAPE, K_MATMUL, K_EXTERN } OpKind;

enum {
  F_COMMUTATIVE = 1 << 0,
  F_ZEROGRAD = 1 << 1, /* derivative is zero everywhere it exists (piecewise constant) */
  F_COMPARE = 1 << 2,  /* result is 0 or 1 in the input dtype */
  F_RANDOM = 1 << 3,   /* a random draw: never merged by CSE, never folded */
  F_NODIFF = 1 << 4,   /* no derivative: asking for one through it is a user error */
};

typedef struct {
  const char *name;
  int nin;
  OpKind kind;
  unsigned diff; /* bit i: input i is differentiable */
  unsigned flags;
} OpInfo;

extern const OpInfo op_info[OP_COUNT];
const char *op_name(Op op);
int op_by_name(const char *name); /* -1 if none */
static inline int op_is_elementwise(Op op) {
  return op >= OP_NEG && op <= OP_WHERE;
}

/* ---- dtypes and shapes ---------------------------------------------------------------- */
typedef enum { DT_F32, DT_F64, DT_I32, DT_I64, DT_COUNT } DType;
const char *dtype_name(DType t);
size_t dtype_size(DType t);
static inline int dtype_is_float(DType t) { return t == DT_F32 || t == DT_F64; }

#define IR_MAXRANK 6

typedef struct {
  int rank;
  int64_t dims[IR_MAXRANK];
} Shape;

int64_t shape_numel(const Shape *s);
int shape_eq(const Shape *a, const Shape *b);
/* "[16, 2]" into buf; returns buf. */
char *shape_str(const Shape *s, char *buf, size_t n);

/* ---- arena: one per compilation, freed at once -------------------------------------- */
typedef struct ArenaBlock ArenaBlock;
typedef struct {
  ArenaBlock *head;
} Arena;

void *arena_alloc(Arena *a, size_t n); /* zeroed, 16-byte aligned; aborts on OOM */
char *arena_strdup(Arena *a, const char *s);
char *arena_printf(Arena *a, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void arena_free(Arena *a);

/* Growable array helper for arrays owned by malloc (graphs grow while built). */
void *xrealloc(void *p, size_t n);

/* ---- source locations and diagnostics ------------------------------------------------- */
typedef struct {
  int32_t file; /* index into Ctx.files; -1: no location (generated) */
  int32_t line; /* 1-based */
  int32_t col;  /* 1-based, in bytes */
} SrcLoc;

#define SRCLOC_NONE ((SrcLoc){-1, 0, 0})

typedef struct {
  const char *path; /* as given or as resolved by import */
  const char *text; /* whole file, NUL-terminated */
  size_t len;
} SrcFile;

typedef struct {
  SrcLoc loc;
  const char *msg;
  const char *hint; /* may be NULL */
} Diag;

/* A -D NAME=VALUE override from the command line. */
typedef struct {
  const char *name;
  const char *value;
} Define;

typedef struct Ctx {
  Arena arena;
  SrcFile *files;
  int nfiles, capfiles;
  Diag *diags;
  int ndiags, capdiags;
  int max_errors; /* stop collecting after this many (default 20) */
  /* options */
  const char **incdirs; /* import search path, in order */
  int nincdirs;
  Define *defines;
  int ndefines;
  int verbose;
  int promote_f64; /* elaborate every f32 as f64 (gradcheck, f64 reference runs) */
} Ctx;

void ctx_init(Ctx *c);
void ctx_free(Ctx *c);
/* Registers a source text (copied into the arena); returns its file index. */
int ctx_add_file(Ctx *c, const char *path, const char *text, size_t len);
/* Reads a file into the context; -1 and a diagnostic (at `from`) on failure. */
int ctx_load_file(Ctx *c, const char *path, SrcLoc from);

void diag_error(Ctx *c, SrcLoc loc, const char *hint, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
void diag_verror(Ctx *c, SrcLoc loc, const char *hint, const char *fmt, va_list ap);
static inline int ctx_failed(const Ctx *c) { return c->ndiags > 0; }
/* Prints every diagnostic: "file:line:col: error: msg", the line, a caret, the hint. */
void diag_print_all(const Ctx *c, FILE *out);
/* "did you mean" helper: the candidate closest to `name` by edit distance, or NULL. */
const char *diag_closest(const char *name, const char *const *cands, int n);

/* Broken invariant inside gradc: print file:line and abort. Never for user errors. */
#define IR_ASSERT(cond)                                                                    \
  do {                                                                                     \
    if (!(cond)) ir_panic(__FILE__, __LINE__, #cond);                                      \
  } while (0)
_Noreturn void ir_panic(const char *file, int line, const char *what);

/* ---- initializers for parameters ------------------------------------------------------ */
typedef enum {
  INIT_ZEROS,
  INIT_ONES,
  INIT_CONST,   /* a */
  INIT_NORMAL,  /* std a */
  INIT_UNIFORM, /* [a, b) */
  INIT_GLOROT,  /* uniform, limit sqrt(6 / (fan_in + fan_out)) */
  INIT_HE,      /* normal, std sqrt(2 / fan_in) */
  INIT_COUNT
} InitKind;

typedef struct {
  InitKind kind;
  double a, b;
  int64_t fan_in, fan_out; /* from the shape: see ir_param_fans() */
} Init;

const char *init_name(InitKind k);

/* ---- the IR --------------------------------------------------------------------------- */
typedef int32_t ValId;
#define IR_ERR ((ValId)-1)

typedef union {
  double scalar;                   /* CONST */
  int32_t index;                   /* INPUT, PARAM */
  int32_t axis;                    /* IOTA */
  uint32_t axes;                   /* SUM, RMAX, RMIN: bit i = reduce axis i */
  int32_t perm[IR_MAXRANK];        /* TRANSPOSE */
  struct { int32_t axis; int64_t start, stop; } sl; /* SLICE, PAD, CONCAT(axis), GATHER(axis), SCATTERADD(axis, start=size) */
  struct { int32_t ta, tb; } mm;   /* MATMUL */
  uint64_t stream;                 /* RANDN, RANDU: the stream id of this draw */
  struct { int32_t index, nargs; } ext; /* EXTERN: Program.externs[index] */
} Attr;

typedef struct {
  Op op;
  DType dtype;
  Shape shape;
  ValId in[3];
  Attr attr;
  SrcLoc loc;
} Node;

typedef struct {
  const char *name; /* entry argument name */
  DType dtype;
  Shape shape;
} GInput;

typedef struct {
  const char *name; /* "out" for a single unnamed result, else out0, out1... or given */
  ValId val;
} GOutput;

typedef struct {
  const char *name; /* call path: "net.mlp.linear_1.w" */
  DType dtype;
  Shape shape;
  Init init;
  SrcLoc loc;
} Param;

typedef struct Graph {
  struct Ctx *ctx;
  const char *name; /* entry name */
  Node *nodes;
  int nnodes, capnodes;
  GInput *inputs;
  int ninputs, capinputs;
  GOutput *outputs;
  int noutputs, capoutputs;
  uint64_t next_stream; /* next fresh stream id for random draws */
  int cold;             /* run only by checks (gradcheck twins): codegen skips optimization */
} Graph;

/* `extern "libm.so.6" fn erf(x: f64) -> f64`: applied elementwise to tensors. */
typedef struct {
  const char *name; /* C symbol */
  const char *lib;  /* dlopen() name or path; NULL: already in the process */
  int nargs;        /* 1..3 */
  DType args[3], ret; /* float dtypes */
  SrcLoc loc;
} Extern;

typedef struct Program {
  struct Ctx *ctx;
  Param *params;
  int nparams, capparams;
  Graph **entries;
  int nentries, capentries;
  Extern *externs;
  int nexterns, capexterns;
  /* top-level constants of the main file, exported to executables (e.g. lr, data) */
  struct { const char *name; int is_str; double num; const char *str; } *consts;
  int nconsts, capconsts;
} Program;

void program_init(Program *p, Ctx *c);
void program_free(Program *p); /* frees graphs and arrays, not the ctx arena */
Graph *program_add_entry(Program *p, const char *name);
Graph *program_find_entry(const Program *p, const char *name);
/* Finds or adds a parameter by name; an existing one must have the same dtype/shape
 * (else a diagnostic at loc and -1). Returns its index. */
int program_param(Program *p, const char *name, DType dt, const Shape *s, Init init, SrcLoc loc);

Graph *graph_new(Ctx *c, const char *name);
void graph_free(Graph *g);
int graph_add_input(Graph *g, const char *name, DType dt, const Shape *s);
void graph_add_output(Graph *g, const char *name, ValId v);
static inline const Node *ir_node(const Graph *g, ValId v) { return &g->nodes[v]; }
/* Number of inputs of a node (EXTERN has a variable count). Use this, not op_info.nin. */
static inline int ir_nin(const Node *n) {
  return n->op == OP_EXTERN ? n->attr.ext.nargs : op_info[n->op].nin;
}

/* ---- builders (shape inference + checks; see the comment at the top) ------------------- */
/* Appends a node built from `proto` (op, dtype, in[], attr, loc; shape is inferred unless
 * the op takes it from proto: leaves, BROADCAST, RESHAPE). The generic entry point used by
 * passes and autodiff to copy nodes. */
ValId ir_emit(Graph *g, const Node *proto);

ValId ir_const(Graph *g, double v, DType dt, const Shape *s, SrcLoc loc);
ValId ir_scalar(Graph *g, double v, DType dt, SrcLoc loc); /* rank-0 constant */
ValId ir_input(Graph *g, int index, SrcLoc loc);
ValId ir_param(Graph *g, const Program *p, int index, SrcLoc loc);
ValId ir_iota(Graph *g, DType dt, const Shape *s, int axis, SrcLoc loc);
ValId ir_random(Graph *g, Op op, DType dt, const Shape *s, SrcLoc loc); /* fresh stream */
ValId ir_unary(Graph *g, Op op, ValId a, SrcLoc loc);
ValId ir_cast(Graph *g, ValId a, DType to, SrcLoc loc);
ValId ir_binary(Graph *g, Op op, ValId a, ValId b, SrcLoc loc);   /* equal shapes */
ValId ir_where(Graph *g, ValId c, ValId a, ValId b, SrcLoc loc);
ValId ir_reduce(Graph *g, Op op, ValId a, uint32_t axes, SrcLoc loc); /* keepdims */
ValId ir_broadcast(Graph *g, ValId a, const Shape *to, SrcLoc loc); /* same rank */
ValId ir_reshape(Graph *g, ValId a, const Shape *to, SrcLoc loc);
ValId ir_transpose(Graph *g, ValId a, const int32_t *perm, SrcLoc loc);
ValId ir_slice(Graph *g, ValId a, int axis, int64_t start, int64_t stop, SrcLoc loc);
ValId ir_pad(Graph *g, ValId a, int axis, int64_t before, int64_t after, SrcLoc loc);
ValId ir_concat(Graph *g, ValId a, ValId b, int axis, SrcLoc loc);
ValId ir_gather(Graph *g, ValId x, ValId idx, int axis, SrcLoc loc);
ValId ir_scatter_add(Graph *g, ValId upd, ValId idx, int axis, int64_t size, SrcLoc loc);
ValId ir_matmul(Graph *g, ValId a, ValId b, int ta, int tb, SrcLoc loc);
ValId ir_extern(Graph *g, const Program *p, int index, int nargs, const ValId *args, SrcLoc loc);
int program_add_extern(Program *p, const Extern *e); /* returns its index */

/* Conveniences built on the above (used by the front end and by autodiff). */
/* NumPy broadcasting of two values to their common shape (inserts RESHAPE to add leading
 * 1s, then BROADCAST); a user error names the op spelling `what` in the message. */
int ir_broadcast_pair(Graph *g, ValId *a, ValId *b, const char *what, SrcLoc loc);
ValId ir_broadcast_to(Graph *g, ValId a, const Shape *to, SrcLoc loc); /* NumPy rules */
/* Sums `a` down to shape `to` (the adjoint of ir_broadcast_to): reduces the broadcast
 * axes, then reshapes away added leading axes. */
ValId ir_sum_to(Graph *g, ValId a, const Shape *to, SrcLoc loc);
/* Removes the reduced (size-1) axes in `axes` from a keepdims reduction result. */
ValId ir_squeeze_axes(Graph *g, ValId a, uint32_t axes, SrcLoc loc);

/* Aborts (internal error) if v is IR_ERR: for builders called by autodiff and passes. */
ValId ir_must(const Graph *g, ValId v);

/* ---- utilities ----------------------------------------------------------------------- */
/* Checks the structural invariants of a graph (topological order, shapes agree with the
 * op table, attrs in range). Returns 0, or -1 with a message in buf. */
int ir_verify(const Graph *g, const Program *p, char *buf, size_t n);
void ir_print(const Graph *g, const Program *p, FILE *out);       /* `gradc dump --stage=ir` */
void ir_print_dot(const Graph *g, const Program *p, FILE *out);   /* `gradc dot` */
/* fan_in / fan_out of a weight with this shape (last two dims: [in, out]). */
void ir_param_fans(const Shape *s, int64_t *fan_in, int64_t *fan_out);

#endif
