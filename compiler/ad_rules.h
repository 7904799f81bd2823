/* ad_rules.h: the private interface between the autodiff drivers (autodiff.c) and the
 * per-op derivative rules (ad_rules.c).
 *
 * A rule sees one node of the primal graph and emits new nodes with the ordinary builders
 * (ir_unary, ir_binary, ...), so its output can be differentiated again. All state of
 * one transform lives in an AdCtx (no globals). Zero is represented by IR_ERR in the
 * cotangent and tangent arrays: rules never materialize zeros unless an op needs a
 * concrete operand (e.g. concat of a tangent and nothing).
 */
#ifndef GRADC_AD_RULES_H
#define GRADC_AD_RULES_H

#include "ir.h"

typedef struct AdCtx {
  Graph *g;
  const Program *p; /* may be NULL: only used to name externs in diagnostics */
  SrcLoc loc;       /* location given to every node emitted now (the primal node's) */
  ValId *ct;        /* [n0] reverse mode: cotangent per primal node; IR_ERR = zero */
  int n0;           /* number of primal nodes (rules only index ct below it) */
} AdCtx;

/* VJP of node `n` (id v, a copy: the node array may move while rules emit): for every
 * input i with bit i of `need`, adds its contribution of cotangent g to ct[n->in[i]]. */
typedef void (*AdVjpFn)(AdCtx *a, const Node *n, ValId v, ValId g, unsigned need);
/* JVP of node `n`: t[i] is the tangent of input i (IR_ERR = zero; at least one is set).
 * Returns the tangent of v, or IR_ERR when it is identically zero. */
typedef ValId (*AdJvpFn)(AdCtx *a, const Node *n, ValId v, const ValId *t);

typedef struct {
  AdVjpFn vjp;
  AdJvpFn jvp;
} AdRule;

/* The rule for op (both NULL for leaves, F_ZEROGRAD and F_NODIFF ops). */
const AdRule *ad_rule(Op op);

/* Fan-in accumulation: the one place where contributions are summed. A zero contribution
 * (IR_ERR or a constant 0) is skipped. */
void ad_accumulate(AdCtx *a, ValId *slot, ValId contribution);

/* 1 when v is known to be identically zero (IR_ERR or a CONST 0). */
int ad_is_zero(const Graph *g, ValId v);

#endif
