/* autodiff.h: reverse mode (VJP) and forward mode (JVP) as IR -> IR rewrites.
 *
 * Both transforms append ordinary nodes to the graph with the same builders the front
 * end uses, so their results can be differentiated again (grad of grad, jvp of grad,
 * grad through a jvp). Generated nodes keep the source location of the node they come
 * from. Rules per op live in autodiff.c, one entry per op of ops.def; a test walks the
 * table. Users never see these functions: `grad`, `vjp` and `jvp` in .grad source, and
 * the training entry that gradc derives from `loss`, are built on them.
 */
#ifndef GRADC_AUTODIFF_H
#define GRADC_AUTODIFF_H

#include "ir.h"

/* Reverse mode. For each wrt[i]: the gradient of sum(cot * y) with respect to wrt[i]
 * (cot == IR_ERR: y must be a scalar and cot = 1), stored in grads[i]. A wrt that y does
 * not depend on gets zeros of its shape. Returns 0, or -1 after a diagnostic at `loc`
 * (integer-valued y or wrt, an op without a derivative on the path). */
int ad_vjp(Graph *g, ValId y, ValId cot, int nwrt, const ValId *wrt, ValId *grads, SrcLoc loc);

/* Reverse mode with respect to every parameter of the program: grads[i] is the gradient
 * for Program.params[i], summed over every PARAM node with that index (zeros if unused). */
int ad_vjp_params(Graph *g, const Program *p, ValId y, ValId *grads, SrcLoc loc);

/* Forward mode: the directional derivative of each ys[j] at wrt along tangents
 * (tangents[i] has the shape of wrt[i]), stored in out[j]. */
int ad_jvp(Graph *g, int nwrt, const ValId *wrt, const ValId *tangents, int ny, const ValId *ys,
           ValId *out, SrcLoc loc);

/* The training entry derived from a scalar objective: a new entry named "<name>_grad" in
 * p with the same inputs, whose outputs are the objective's outputs followed by one
 * gradient per program parameter (named "grad:<param name>"). NULL after a diagnostic. */
Graph *ad_grad_entry(Program *p, const Graph *loss);

/* ad_vjp / ad_jvp with the Program known, so that a diagnostic about an EXTERN call on
 * the path can name the C function (the plain versions say '?'). */
int ad_vjp_in(const Program *p, Graph *g, ValId y, ValId cot, int nwrt, const ValId *wrt,
              ValId *grads, SrcLoc loc);
int ad_jvp_in(const Program *p, Graph *g, int nwrt, const ValId *wrt, const ValId *tangents,
              int ny, const ValId *ys, ValId *out, SrcLoc loc);

/* 1 when op has both a VJP and a JVP rule (every op except leaves, F_ZEROGRAD and
 * F_NODIFF ops must; tests/unit/test_autodiff.c walks ops.def). */
int ad_has_rules(Op op);

#endif
