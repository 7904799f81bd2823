/* sched.c: fusion, kernel order and the memory plan of one entry.
 *
 * Why this shape: the training step is dominated by a few matrix products and by long
 * chains of cheap elementwise ops between them. The products go to BLAS; everything else
 * is memory-bound, so what matters is touching memory once. We therefore decide, per
 * node, whether it owns storage ("materialized") or is recomputed by index arithmetic
 * inside every kernel that reads it ("fused"). A node is materialized when
 *   - it is an entry input or a parameter (storage is given),
 *   - it is a reduction, a matrix product or a scatter_add (kernel roots by nature),
 *   - it is an operand of a matrix product (BLAS needs memory; a transpose of the last
 *     two axes of a materialized node is folded into the ta/tb flags instead),
 *   - it is an entry output,
 *   - it is an operand of a concat or a pad and is not cheap: those kernels evaluate
 *     every operand at every element and select (branch-free loops vectorize), so a
 *     fused sin(t f) [B, 16] inside concat(x, sin(t f)) [B, 816] would be computed 51
 *     times per value (measured: the sampler at D = 784 spent 11 % of its time there),
 *   - it is used more than once and is not cheap (unless every use ends in a reduction
 *     and it is still fairly cheap: see RECOMPUTE_REDUCED_MAX), or it feeds a broadcast
 *     that enlarges it and is not free (else it would be recomputed once per broadcast copy). The cost
 *     of recomputing a node is the arithmetic of its fused subtree (index moves and
 *     constants 0, add/mul/compare 1, div/sqrt 4, transcendentals 20); up to
 *     RECOMPUTE_MAX it is cheaper to recompute in every consumer than to write and
 *     re-read a buffer (z = x @ w + b feeding both sigmoid(z) and z * sigmoid(z)).
 * A reshape or stop_grad of a materialized node is a view: same bytes, no kernel.
 * Every other node is fused. Each materialized node gets one kernel, emitted in node
 * (topological) order, so the order is fixed and deterministic.
 *
 * Memory plan: intermediates live in one workspace arena. A buffer is allocated when its
 * kernel runs and released after the last kernel that reads it (first fit over a sorted
 * free list, 64-byte aligned). A kernel's destination is allocated before its inputs are
 * released, so no kernel ever writes over memory it reads.
 */
#include "schedule.h"

#include <stdlib.h>
#include <string.h>

static int is_reduce(Op op) { return op == OP_SUM || op == OP_RMAX || op == OP_RMIN; }

/* A transpose that swaps the last two axes and keeps the others. */
static int swaps_last_two(const Node *n) {
  int r = n->shape.rank;
  if (n->op != OP_TRANSPOSE || r < 2) return 0;
  for (int i = 0; i < r - 2; i++)
    if (n->attr.perm[i] != i) return 0;
  return n->attr.perm[r - 2] == r - 1 && n->attr.perm[r - 1] == r - 2;
}

/* ---- materialization ----------------------------------------------------------------- */
typedef struct {
  char *need;        /* must own storage (or be a view) */
  char *feeds_expand;/* consumed by a broadcast that enlarges it */
  char *feeds_select;/* an operand of a concat or pad (evaluated at every element) */
  int *cost;         /* arithmetic to recompute it (its fused subtree) */
  char *into_reduce; /* every use ends in a reduction through elementwise ops / index moves */
} Marks;

#define RECOMPUTE_MAX 2
/* A node all of whose uses end in reductions is recomputed inside each of them (at most
 * RECOMPUTE_REDUCED_USES) when its subtree costs up to RECOMPUTE_REDUCED_MAX: such nodes
 * are large (the [G, M, M, D] pairwise differences of the IMM kernel gradient, read by
 * one sum over each M axis), and writing then re-reading them costs more memory traffic
 * than a few adds per element, and their buffer set the workspace peak. */
#define RECOMPUTE_REDUCED_MAX 8
#define RECOMPUTE_REDUCED_USES 3

static int op_cost(Op op) {
  switch (op) {
  case OP_CONST: case OP_IOTA: case OP_INPUT: case OP_PARAM: case OP_STOPGRAD:
  case OP_BROADCAST: case OP_RESHAPE: case OP_TRANSPOSE: case OP_SLICE:
    return 0;
  case OP_NEG: case OP_ADD: case OP_SUB: case OP_MUL: case OP_MAX: case OP_MIN: case OP_ABS:
  case OP_RELU: case OP_SIGN: case OP_FLOOR: case OP_CAST: case OP_WHERE: case OP_SAFEMUL:
  case OP_LT: case OP_LE: case OP_GT: case OP_GE: case OP_EQ: case OP_NE: case OP_PAD:
  case OP_CONCAT: case OP_GATHER:
    return 1;
  case OP_DIV: case OP_SQRT: case OP_RSQRT:
    return 4;
  default:
    return 20;
  }
}

/* A use of v by c is "into a reduction" when c is a reduction, or an elementwise op or a
 * non-enlarging index move whose own uses are all into reductions. Reverse topological
 * order sees every consumer before its inputs. */
static int passes_through(Op op) {
  return op_is_elementwise(op) || op == OP_RESHAPE || op == OP_TRANSPOSE || op == OP_SLICE ||
         op == OP_STOPGRAD;
}

static void mark_into_reduce(const Sched *s, Marks *m) {
  const Graph *g = s->g;
  char *bad = calloc((size_t)(g->nnodes > 0 ? g->nnodes : 1), 1);
  for (int j = 0; j < g->noutputs; j++) bad[g->outputs[j].val] = 1;
  for (int c = g->nnodes - 1; c >= 0; c--) {
    const Node *n = &g->nodes[c];
    m->into_reduce[c] = !bad[c] && s->nuses[c] > 0;
    int ok = is_reduce(n->op) || (passes_through(n->op) && m->into_reduce[c]);
    for (int k = 0; k < ir_nin(n); k++)
      if (!ok) bad[n->in[k]] = 1;
  }
  free(bad);
}

static void mark_needs(Sched *s, Marks *m) {
  const Graph *g = s->g;
  for (int v = 0; v < g->nnodes; v++) {
    const Node *n = &g->nodes[v];
    for (int k = 0; k < ir_nin(n); k++) s->nuses[n->in[k]]++;
    if (n->op == OP_MATMUL || is_reduce(n->op) || n->op == OP_SCATTERADD) m->need[v] = 1;
    if (n->op == OP_MATMUL)
      for (int k = 0; k < 2; k++) {
        const Node *o = &g->nodes[n->in[k]];
        m->need[swaps_last_two(o) ? o->in[0] : n->in[k]] = 1;
      }
    if (n->op == OP_BROADCAST &&
        shape_numel(&n->shape) > shape_numel(&g->nodes[n->in[0]].shape))
      m->feeds_expand[n->in[0]] = 1;
    if (n->op == OP_CONCAT || n->op == OP_PAD)
      for (int k = 0; k < ir_nin(n); k++) m->feeds_select[n->in[k]] = 1;
  }
  for (int j = 0; j < g->noutputs; j++) {
    m->need[g->outputs[j].val] = 1;
    s->nuses[g->outputs[j].val]++;
  }
  mark_into_reduce(s, m);
}

static void decide_storage(Sched *s, Marks *m) {
  const Graph *g = s->g;
  for (int v = 0; v < g->nnodes; v++) {
    const Node *n = &g->nodes[v];
    s->store[v] = IR_ERR;
    if (n->op == OP_INPUT || n->op == OP_PARAM) {
      s->store[v] = v;
      s->buf[v] = (Buf){n->op == OP_INPUT ? BUF_INPUT : BUF_PARAM, n->attr.index, 0,
                        shape_numel(&n->shape) * (int64_t)dtype_size(n->dtype)};
      continue;
    }
    if ((n->op == OP_RESHAPE || n->op == OP_STOPGRAD) && s->store[n->in[0]] != IR_ERR) {
      s->store[v] = s->store[n->in[0]]; /* a view */
      continue;
    }
    int cost = op_cost(n->op);
    for (int k = 0; k < ir_nin(n); k++)
      if (s->store[n->in[k]] == IR_ERR) cost += m->cost[n->in[k]];
    m->cost[v] = cost > 1000 ? 1000 : cost;
    int shared = s->nuses[v] > 1 && cost > RECOMPUTE_MAX &&
                 !(m->into_reduce[v] && cost <= RECOMPUTE_REDUCED_MAX &&
                   s->nuses[v] <= RECOMPUTE_REDUCED_USES);
    if (m->need[v] || shared || (m->feeds_expand[v] && cost > 0) ||
        (m->feeds_select[v] && cost > RECOMPUTE_MAX)) {
      s->store[v] = v;
      s->buf[v] = (Buf){BUF_WS, 0, 0, shape_numel(&n->shape) * (int64_t)dtype_size(n->dtype)};
    }
  }
}

/* ---- kernels --------------------------------------------------------------------------- */
static void add_read(Kernel *k, ValId st) {
  for (int i = 0; i < k->nreads; i++)
    if (k->reads[i] == st) return;
  k->reads = xrealloc(k->reads, (size_t)(k->nreads + 1) * sizeof *k->reads);
  k->reads[k->nreads++] = st;
}

/* Walks the fused tree below v (v itself included), recording the storage it reads. */
static void collect_reads(Sched *s, Kernel *k, ValId v, char *seen) {
  if (seen[v]) return;
  seen[v] = 1;
  if (s->store[v] != IR_ERR) {
    add_read(k, s->store[v]);
    return;
  }
  const Node *n = &s->g->nodes[v];
  k->nfused++;
  for (int i = 0; i < ir_nin(n); i++) collect_reads(s, k, n->in[i], seen);
}

static int reduce_needs_mem_acc(const Node *red, const Shape *in) {
  int last_kept = -1, first_red = IR_MAXRANK;
  for (int d = 0; d < in->rank; d++) {
    if (in->dims[d] == 1) continue;
    if (red->attr.axes >> d & 1) {
      if (d < first_red) first_red = d;
    } else {
      last_kept = d;
    }
  }
  return first_red < last_kept;
}

static Kernel *new_kernel(Sched *s, KernKind kind, ValId root) {
  s->k = xrealloc(s->k, (size_t)(s->nk + 1) * sizeof *s->k);
  Kernel *k = &s->k[s->nk++];
  memset(k, 0, sizeof *k);
  k->kind = kind;
  k->root = root;
  k->mm_a = k->mm_b = IR_ERR;
  return k;
}

/* The node whose value lies in memory as the operand (o, or the input of a folded
 * transpose), and the effective transpose flag. */
static ValId mm_operand(Sched *s, ValId o, int t, int *tout) {
  const Node *n = &s->g->nodes[o];
  if (s->store[o] == IR_ERR && swaps_last_two(n) && s->store[n->in[0]] != IR_ERR) {
    *tout = !t;
    return n->in[0];
  }
  *tout = t;
  IR_ASSERT(s->store[o] != IR_ERR);
  return o;
}

static void build_kernel(Sched *s, ValId v, char *seen) {
  const Node *n = &s->g->nodes[v];
  KernKind kind = n->op == OP_MATMUL ? KN_MATMUL
                  : is_reduce(n->op) ? KN_REDUCE
                  : n->op == OP_SCATTERADD ? KN_SCATTER : KN_LOOP;
  Kernel *k = new_kernel(s, kind, v);
  k->dst = s->buf[v];
  memset(seen, 0, (size_t)s->g->nnodes);
  seen[v] = 1;
  if (kind == KN_MATMUL) {
    k->mm_a = mm_operand(s, n->in[0], n->attr.mm.ta, &k->mm_ta);
    k->mm_b = mm_operand(s, n->in[1], n->attr.mm.tb, &k->mm_tb);
    add_read(k, s->store[k->mm_a]);
    add_read(k, s->store[k->mm_b]);
    int r = n->shape.rank;
    int64_t kk = s->g->nodes[n->in[0]].shape.dims[n->attr.mm.ta ? r - 2 : r - 1];
    s->flops += 2 * shape_numel(&n->shape) * kk;
    s->mm_flops += 2 * shape_numel(&n->shape) * kk;
    return;
  }
  for (int i = 0; i < ir_nin(n); i++) collect_reads(s, k, n->in[i], seen);
  k->nfused++;
  if (kind == KN_REDUCE) {
    const Shape *in = &s->g->nodes[n->in[0]].shape;
    k->mem_acc = reduce_needs_mem_acc(n, in);
    s->flops += shape_numel(in) * k->nfused;
  } else {
    s->flops += shape_numel(&n->shape) * k->nfused;
  }
}

/* Outputs: the producing kernel writes straight into the output buffer when it can. */
static void assign_outputs(Sched *s, char *seen) {
  const Graph *g = s->g;
  for (int j = 0; j < g->noutputs; j++) {
    ValId v = g->outputs[j].val;
    const Node *n = &g->nodes[v];
    ValId st = s->store[v]; /* v itself, or the node v is a view of */
    if (st != IR_ERR && s->buf[st].kind == BUF_WS) {
      s->buf[st].kind = BUF_OUTPUT;
      s->buf[st].index = j;
      continue;
    }
    Kernel *k = new_kernel(s, KN_LOOP, v);
    k->copy = 1;
    k->dst = (Buf){BUF_OUTPUT, j, 0, shape_numel(&n->shape) * (int64_t)dtype_size(n->dtype)};
    memset(seen, 0, (size_t)g->nnodes);
    collect_reads(s, k, v, seen);
  }
  for (int i = 0; i < s->nk; i++)
    if (!s->k[i].copy) s->k[i].dst = s->buf[s->k[i].root];
}

/* ---- sibling fusion ------------------------------------------------------------------------
 * Consecutive loop kernels over the same shape become one loop computing several roots
 * (sigmoid(z) and z * sigmoid(z) read z once) when each later root reads the earlier
 * ones only through elementwise ops at the loop's own index: the value is then still in
 * a register (lower.c memoizes it), never re-loaded from the buffer being written. */
static int in_group(const Kernel *k, ValId st) {
  if (st == k->root) return 1;
  for (int j = 0; j < k->nmore; j++)
    if (k->more[j] == st) return 1;
  return 0;
}

/* 1 if the fused tree below v reads group storage only at identity index (ident: the
 * path from the root so far is elementwise and v has the root's shape). */
static int reads_ok(const Sched *s, const Kernel *grp, ValId v, int ident, const Shape *sh) {
  const Node *n = &s->g->nodes[v];
  if (s->store[v] != IR_ERR) return !in_group(grp, s->store[v]) || (ident && shape_eq(&n->shape, sh));
  int keep = ident && (op_is_elementwise(n->op) || n->op == OP_EXTERN);
  for (int i = 0; i < ir_nin(n); i++)
    if (!reads_ok(s, grp, n->in[i], keep, sh)) return 0;
  return 1;
}

static int can_join(const Sched *s, const Kernel *grp, const Kernel *k) {
  const Node *a = &s->g->nodes[grp->root], *b = &s->g->nodes[k->root];
  if (grp->kind != KN_LOOP || k->kind != KN_LOOP || grp->copy || k->copy || grp->nmore >= KN_MAXMORE) return 0;
  if (!shape_eq(&a->shape, &b->shape) || a->shape.rank == 0) return 0;
  for (int i = 0; i < ir_nin(b); i++)
    if (!reads_ok(s, grp, b->in[i], op_is_elementwise(b->op) || b->op == OP_EXTERN, &b->shape)) return 0;
  return 1;
}

static void join(Sched *s, Kernel *grp, Kernel *k) {
  grp->more[grp->nmore] = k->root;
  grp->more_dst[grp->nmore++] = k->dst;
  grp->nfused += k->nfused;
  for (int r = 0; r < k->nreads; r++)
    if (!in_group(grp, k->reads[r])) add_read(grp, k->reads[r]);
  free(k->reads);
  (void)s;
}

static void merge_siblings(Sched *s) {
  int out = 0;
  for (int i = 0; i < s->nk; i++) {
    if (out > 0 && can_join(s, &s->k[out - 1], &s->k[i])) {
      join(s, &s->k[out - 1], &s->k[i]);
      continue;
    }
    s->k[out++] = s->k[i];
  }
  s->nk = out;
}

/* ---- memory plan ------------------------------------------------------------------------ */
typedef struct {
  int64_t off, len;
} Span;

typedef struct {
  Span *free;
  int nfree;
  int64_t top, peak;
} Arena64;

static int64_t align64(int64_t n) { return (n + 63) & ~(int64_t)63; }

static int64_t plan_alloc(Arena64 *a, int64_t bytes) {
  bytes = align64(bytes > 0 ? bytes : 1);
  for (int i = 0; i < a->nfree; i++)
    if (a->free[i].len >= bytes) {
      int64_t off = a->free[i].off;
      a->free[i].off += bytes;
      a->free[i].len -= bytes;
      if (!a->free[i].len) memmove(&a->free[i], &a->free[i + 1], (size_t)(--a->nfree - i) * sizeof(Span));
      return off;
    }
  int64_t off = a->top;
  a->top += bytes;
  if (a->top > a->peak) a->peak = a->top;
  return off;
}

static void plan_release(Arena64 *a, int64_t off, int64_t bytes) {
  bytes = align64(bytes > 0 ? bytes : 1);
  a->free = xrealloc(a->free, (size_t)(a->nfree + 1) * sizeof(Span));
  int i = 0;
  while (i < a->nfree && a->free[i].off < off) i++;
  memmove(&a->free[i + 1], &a->free[i], (size_t)(a->nfree - i) * sizeof(Span));
  a->free[i] = (Span){off, bytes};
  a->nfree++;
  /* merge neighbours */
  for (int j = a->nfree - 1; j > 0; j--)
    if (a->free[j - 1].off + a->free[j - 1].len == a->free[j].off) {
      a->free[j - 1].len += a->free[j].len;
      memmove(&a->free[j], &a->free[j + 1], (size_t)(a->nfree - j - 1) * sizeof(Span));
      a->nfree--;
    }
  if (a->nfree && a->free[a->nfree - 1].off + a->free[a->nfree - 1].len == a->top) {
    a->top = a->free[a->nfree - 1].off;
    a->nfree--;
  }
}

/* The roots a kernel writes: root, then the sibling-fused ones. */
static int kernel_roots(const Kernel *k, ValId *roots) {
  if (k->copy) return 0;
  roots[0] = k->root;
  for (int j = 0; j < k->nmore; j++) roots[1 + j] = k->more[j];
  return 1 + k->nmore;
}

static void plan_memory(Sched *s) {
  const Graph *g = s->g;
  int *last = malloc((size_t)g->nnodes * sizeof *last);
  for (int v = 0; v < g->nnodes; v++) last[v] = -1;
  for (int i = 0; i < s->nk; i++)
    for (int r = 0; r < s->k[i].nreads; r++) last[s->k[i].reads[r]] = i;
  Arena64 a = {0};
  for (int i = 0; i < s->nk; i++) {
    Kernel *k = &s->k[i];
    ValId roots[1 + KN_MAXMORE];
    int nr = kernel_roots(k, roots);
    for (int j = 0; j < nr; j++) {
      ValId rt = roots[j];
      if (s->buf[rt].kind != BUF_WS) continue;
      s->buf[rt].offset = plan_alloc(&a, s->buf[rt].bytes);
      if (last[rt] < i) last[rt] = i; /* unused after this kernel: free right away */
    }
    if (nr) k->dst = s->buf[k->root];
    for (int j = 0; j + 1 < nr; j++) k->more_dst[j] = s->buf[roots[1 + j]];
    for (int r = 0; r < k->nreads; r++) {
      ValId st = k->reads[r];
      if (last[st] == i && s->buf[st].kind == BUF_WS) plan_release(&a, s->buf[st].offset, s->buf[st].bytes);
    }
    for (int j = 0; j < nr; j++) {
      ValId rt = roots[j];
      int read_self = 0;
      for (int r = 0; r < k->nreads; r++) read_self |= k->reads[r] == rt;
      if (s->buf[rt].kind == BUF_WS && last[rt] == i && !read_self) plan_release(&a, s->buf[rt].offset, s->buf[rt].bytes);
    }
  }
  s->ws_bytes = a.peak;
  free(a.free);
  free(last);
}

Sched *sched_build(const Graph *g, const Program *p) {
  Sched *s = calloc(1, sizeof *s);
  s->g = g;
  s->p = p;
  int n = g->nnodes > 0 ? g->nnodes : 1;
  s->store = calloc((size_t)n, sizeof *s->store);
  s->buf = calloc((size_t)n, sizeof *s->buf);
  s->nuses = calloc((size_t)n, sizeof *s->nuses);
  Marks m = {.need = calloc((size_t)n, 1), .feeds_expand = calloc((size_t)n, 1),
             .feeds_select = calloc((size_t)n, 1), .cost = calloc((size_t)n, sizeof(int)),
             .into_reduce = calloc((size_t)n, 1)};
  mark_needs(s, &m);
  decide_storage(s, &m);
  char *seen = calloc((size_t)n, 1);
  for (int v = 0; v < g->nnodes; v++) {
    const Node *nd = &g->nodes[v];
    if (s->store[v] == v && nd->op != OP_INPUT && nd->op != OP_PARAM) build_kernel(s, v, seen);
  }
  assign_outputs(s, seen);
  merge_siblings(s);
  plan_memory(s);
  free(seen);
  free(m.need);
  free(m.feeds_expand);
  free(m.feeds_select);
  free(m.cost);
  free(m.into_reduce);
  return s;
}

void sched_free(Sched *s) {
  if (!s) return;
  for (int i = 0; i < s->nk; i++) free(s->k[i].reads);
  free(s->k);
  free(s->store);
  free(s->buf);
  free(s->nuses);
  free(s);
}

/* ---- dump -------------------------------------------------------------------------------- */
static void print_buf(const Buf *b, FILE *out) {
  switch (b->kind) {
  case BUF_INPUT: fprintf(out, "in%d", b->index); break;
  case BUF_PARAM: fprintf(out, "param%d", b->index); break;
  case BUF_OUTPUT: fprintf(out, "out%d", b->index); break;
  case BUF_WS: fprintf(out, "ws+%lld", (long long)b->offset); break;
  default: fprintf(out, "?"); break;
  }
}

void sched_print(const Sched *s, FILE *out) {
  static const char *const kinds[] = {"loop", "reduce", "gemm", "scatter"};
  fprintf(out, "schedule %s: %d kernels, workspace %lld bytes, %lld flops/call (%lld in matrix products)\n",
          s->g->name, s->nk, (long long)s->ws_bytes, (long long)s->flops, (long long)s->mm_flops);
  for (int i = 0; i < s->nk; i++) {
    const Kernel *k = &s->k[i];
    const Node *n = &s->g->nodes[k->root];
    char sb[96];
    fprintf(out, "  k%d %s%s %%%d %s %s%s -> ", i, kinds[k->kind], k->copy ? "(copy)" : "",
            k->root, op_name(n->op), dtype_name(n->dtype), shape_str(&n->shape, sb, sizeof sb));
    print_buf(&k->dst, out);
    if (k->kind == KN_MATMUL)
      fprintf(out, "  A=%%%d%s B=%%%d%s", k->mm_a, k->mm_ta ? "^T" : "", k->mm_b, k->mm_tb ? "^T" : "");
    else
      fprintf(out, "  fused=%d%s", k->nfused, k->mem_acc ? " mem-acc" : "");
    for (int j = 0; j < k->nmore; j++) {
      fprintf(out, "  +%%%d %s -> ", k->more[j], op_name(s->g->nodes[k->more[j]].op));
      print_buf(&k->more_dst[j], out);
    }
    fprintf(out, "  reads");
    for (int r = 0; r < k->nreads; r++) {
      fprintf(out, " %%%d@", k->reads[r]);
      print_buf(&s->buf[k->reads[r]], out);
    }
    fputc('\n', out);
  }
}
