/* ad_rules.c: one VJP and one JVP rule per differentiable op of ops.def.
 *
 * Every rule is written with the ordinary builders, and only with differentiable ops
 * (or with F_ZEROGRAD masks such as gt/eq/sign whose derivative is zero anyway), so a
 * gradient is itself a graph that can be differentiated again: grad of grad, jvp of grad.
 *
 * Elementwise unary ops share one pattern: y = f(x), dy = f'(x) dx. Their table entry
 * names a function building f'(x) from x and y; the VJP is g * f'(x), the JVP t * f'(x).
 * Where f' can be infinite (log at 0, sqrt, rsqrt, tan, div, pow) the product is a
 * SAFEMUL so that a zero cotangent (for instance from the unselected branch of a where)
 * stays exactly zero instead of becoming 0 * inf = NaN. Ordinary products stay MUL.
 *
 * Points where the derivative does not exist get a defined value (docs/autodiff.md):
 * sqrt'(0) = 0, abs'(0) = 0, relu'(0) = 0, maximum/minimum ties split 1/2 and 1/2, RMAX
 * and RMIN ties share equally, pow's d/db = 0 where a == 0. The dispatch table at the
 * bottom is indexed by op; ad_has_rules() reports whether an op has both rules.
 */
#include "ad_rules.h"

#include "autodiff.h"

#include <string.h>

/* ---- small builders bound to the rule's location ------------------------------------ */
static ValId un(AdCtx *a, Op op, ValId x) { return ir_must(a->g, ir_unary(a->g, op, x, a->loc)); }
static ValId bin(AdCtx *a, Op op, ValId x, ValId y) {
  return ir_must(a->g, ir_binary(a->g, op, x, y, a->loc));
}
static ValId add(AdCtx *a, ValId x, ValId y) { return bin(a, OP_ADD, x, y); }
static ValId sub(AdCtx *a, ValId x, ValId y) { return bin(a, OP_SUB, x, y); }
static ValId mul(AdCtx *a, ValId x, ValId y) { return bin(a, OP_MUL, x, y); }
static ValId smul(AdCtx *a, ValId x, ValId y) { return bin(a, OP_SAFEMUL, x, y); }
static ValId neg(AdCtx *a, ValId x) { return un(a, OP_NEG, x); }
/* A constant with the dtype and shape of `like`. */
static ValId kst(AdCtx *a, double v, ValId like) {
  const Node *n = ir_node(a->g, like);
  Shape s = n->shape;
  return ir_must(a->g, ir_const(a->g, v, n->dtype, &s, a->loc));
}
static ValId recip(AdCtx *a, ValId x) { return bin(a, OP_DIV, kst(a, 1, x), x); }
static ValId where(AdCtx *a, ValId c, ValId x, ValId y) {
  return ir_must(a->g, ir_where(a->g, c, x, y, a->loc));
}
/* t, or zeros shaped like `like` when t is the zero tangent. */
static ValId orzero(AdCtx *a, ValId t, ValId like) { return t == IR_ERR ? kst(a, 0, like) : t; }
static void give(AdCtx *a, ValId x, ValId c) { ad_accumulate(a, &a->ct[x], c); }

int ad_is_zero(const Graph *g, ValId v) {
  if (v == IR_ERR) return 1;
  const Node *n = ir_node(g, v);
  return n->op == OP_CONST && n->attr.scalar == 0.0;
}

void ad_accumulate(AdCtx *a, ValId *slot, ValId c) {
  if (ad_is_zero(a->g, c)) return;
  *slot = *slot == IR_ERR ? c : add(a, *slot, c);
}

/* ---- elementwise unary: f'(x) builders ------------------------------------------------ */
typedef ValId (*DerivFn)(AdCtx *a, ValId x, ValId y);

static ValId d_exp(AdCtx *a, ValId x, ValId y) { return y; }
static ValId d_log(AdCtx *a, ValId x, ValId y) { return recip(a, x); }
static ValId d_log1p(AdCtx *a, ValId x, ValId y) { return recip(a, add(a, kst(a, 1, x), x)); }
/* 0.5 / sqrt(x), defined as 0 at x == 0 (the gradient of a distance at 0 is 0). */
static ValId d_sqrt(AdCtx *a, ValId x, ValId y) {
  ValId pos = bin(a, OP_GT, y, kst(a, 0, y));
  ValId safe_y = where(a, pos, y, kst(a, 1, y));
  return where(a, pos, bin(a, OP_DIV, kst(a, 0.5, y), safe_y), kst(a, 0, y));
}
/* d rsqrt(x) = -0.5 x^-3/2 = -0.5 y^3 */
static ValId d_rsqrt(AdCtx *a, ValId x, ValId y) {
  return mul(a, kst(a, -0.5, y), mul(a, mul(a, y, y), y));
}
static ValId d_abs(AdCtx *a, ValId x, ValId y) { return un(a, OP_SIGN, x); } /* sign(0) = 0 */
static ValId d_sin(AdCtx *a, ValId x, ValId y) { return un(a, OP_COS, x); }
static ValId d_cos(AdCtx *a, ValId x, ValId y) { return neg(a, un(a, OP_SIN, x)); }
static ValId d_tan(AdCtx *a, ValId x, ValId y) { return add(a, kst(a, 1, y), mul(a, y, y)); }
static ValId d_atan(AdCtx *a, ValId x, ValId y) {
  return recip(a, add(a, kst(a, 1, x), mul(a, x, x)));
}
static ValId d_tanh(AdCtx *a, ValId x, ValId y) { return sub(a, kst(a, 1, y), mul(a, y, y)); }
static ValId d_sigmoid(AdCtx *a, ValId x, ValId y) { return mul(a, y, sub(a, kst(a, 1, y), y)); }
/* silu = x s(x): s (1 + x (1 - s)) */
static ValId d_silu(AdCtx *a, ValId x, ValId y) {
  ValId s = un(a, OP_SIGMOID, x);
  return mul(a, s, add(a, kst(a, 1, x), mul(a, x, sub(a, kst(a, 1, x), s))));
}
static ValId d_relu(AdCtx *a, ValId x, ValId y) { return bin(a, OP_GT, x, kst(a, 0, x)); }
static ValId d_softplus(AdCtx *a, ValId x, ValId y) { return un(a, OP_SIGMOID, x); }

/* Which f'(x) and whether the product with the cotangent must be a SAFEMUL. */
static const struct {
  DerivFn d;
  int safe;
} unary_deriv[OP_COUNT] = {
    [OP_EXP] = {d_exp, 0},   [OP_LOG] = {d_log, 1},     [OP_LOG1P] = {d_log1p, 1},
    [OP_SQRT] = {d_sqrt, 1}, [OP_RSQRT] = {d_rsqrt, 1}, [OP_ABS] = {d_abs, 0},
    [OP_SIN] = {d_sin, 0},   [OP_COS] = {d_cos, 0},     [OP_TAN] = {d_tan, 1},
    [OP_ATAN] = {d_atan, 0}, [OP_TANH] = {d_tanh, 0},   [OP_SIGMOID] = {d_sigmoid, 0},
    [OP_SILU] = {d_silu, 0}, [OP_RELU] = {d_relu, 0},   [OP_SOFTPLUS] = {d_softplus, 0},
};

static ValId scale_by_deriv(AdCtx *a, const Node *n, ValId v, ValId g) {
  ValId d = unary_deriv[n->op].d(a, n->in[0], v);
  return unary_deriv[n->op].safe ? smul(a, g, d) : mul(a, g, d);
}
static void vjp_unary(AdCtx *a, const Node *n, ValId v, ValId g, unsigned need) {
  give(a, n->in[0], scale_by_deriv(a, n, v, g));
}
static ValId jvp_unary(AdCtx *a, const Node *n, ValId v, const ValId *t) {
  return scale_by_deriv(a, n, v, t[0]);
}

static void vjp_neg(AdCtx *a, const Node *n, ValId v, ValId g, unsigned need) {
  give(a, n->in[0], neg(a, g));
}
static ValId jvp_neg(AdCtx *a, const Node *n, ValId v, const ValId *t) { return neg(a, t[0]); }

/* float -> float casts carry the gradient in the other precision; int ends carry none. */
static void vjp_cast(AdCtx *a, const Node *n, ValId v, ValId g, unsigned need) {
  DType from = ir_node(a->g, n->in[0])->dtype;
  if (dtype_is_float(from)) give(a, n->in[0], ir_must(a->g, ir_cast(a->g, g, from, a->loc)));
}
static ValId jvp_cast(AdCtx *a, const Node *n, ValId v, const ValId *t) {
  if (!dtype_is_float(n->dtype)) return IR_ERR;
  return ir_must(a->g, ir_cast(a->g, t[0], n->dtype, a->loc));
}

/* ---- elementwise binary ------------------------------------------------------------------- */
static void vjp_add(AdCtx *a, const Node *n, ValId v, ValId g, unsigned need) {
  if (need & 1) give(a, n->in[0], g);
  if (need & 2) give(a, n->in[1], g);
}
static ValId jvp_add(AdCtx *a, const Node *n, ValId v, const ValId *t) {
  if (t[0] == IR_ERR) return t[1];
  if (t[1] == IR_ERR) return t[0];
  return add(a, t[0], t[1]);
}
static void vjp_sub(AdCtx *a, const Node *n, ValId v, ValId g, unsigned need) {
  if (need & 1) give(a, n->in[0], g);
  if (need & 2) give(a, n->in[1], neg(a, g));
}
static ValId jvp_sub(AdCtx *a, const Node *n, ValId v, const ValId *t) {
  if (t[1] == IR_ERR) return t[0];
  if (t[0] == IR_ERR) return neg(a, t[1]);
  return sub(a, t[0], t[1]);
}
/* d(ab) = b da + a db; SAFEMUL's derivative uses SAFEMUL again (0 * inf stays 0). */
static void vjp_mul(AdCtx *a, const Node *n, ValId v, ValId g, unsigned need) {
  Op m = n->op;
  if (need & 1) give(a, n->in[0], bin(a, m, g, n->in[1]));
  if (need & 2) give(a, n->in[1], bin(a, m, g, n->in[0]));
}
static ValId jvp_mul(AdCtx *a, const Node *n, ValId v, const ValId *t) {
  Op m = n->op;
  ValId r0 = t[0] == IR_ERR ? IR_ERR : bin(a, m, t[0], n->in[1]);
  ValId r1 = t[1] == IR_ERR ? IR_ERR : bin(a, m, n->in[0], t[1]);
  if (r0 == IR_ERR) return r1;
  if (r1 == IR_ERR) return r0;
  return add(a, r0, r1);
}
/* y = a / b: dy = da / b - y db / b. Products with 1/b are SAFEMUL (b may be 0). */
static void vjp_div(AdCtx *a, const Node *n, ValId v, ValId g, unsigned need) {
  ValId ga = smul(a, g, recip(a, n->in[1])); /* g / b */
  if (need & 1) give(a, n->in[0], ga);
  if (need & 2) give(a, n->in[1], neg(a, smul(a, ga, v)));
}
static ValId jvp_div(AdCtx *a, const Node *n, ValId v, const ValId *t) {
  ValId num = t[0];
  if (t[1] != IR_ERR) {
    ValId ty = mul(a, t[1], v);
    num = num == IR_ERR ? neg(a, ty) : sub(a, num, ty);
  }
  return smul(a, num, recip(a, n->in[1]));
}
/* y = a^b: dy/da = b a^(b-1); dy/db = log(a) y, defined as 0 where a <= 0 (at 0 the
 * limit is 0 for b > 0; below 0 a real derivative in b does not exist). log never sees
 * a <= 0: the base is replaced by 1 under the where, so no inf/NaN exists even unselected. */
static ValId pow_da(AdCtx *a, const Node *n) {
  ValId b = n->in[1];
  return smul(a, b, bin(a, OP_POW, n->in[0], sub(a, b, kst(a, 1, b))));
}
static ValId pow_db(AdCtx *a, const Node *n, ValId v) {
  ValId x = n->in[0];
  ValId nonpos = bin(a, OP_LE, x, kst(a, 0, x));
  ValId logx = un(a, OP_LOG, where(a, nonpos, kst(a, 1, x), x));
  return smul(a, where(a, nonpos, kst(a, 0, x), logx), v);
}
static void vjp_pow(AdCtx *a, const Node *n, ValId v, ValId g, unsigned need) {
  if (need & 1) give(a, n->in[0], smul(a, g, pow_da(a, n)));
  if (need & 2) give(a, n->in[1], smul(a, g, pow_db(a, n, v)));
}
static ValId jvp_pow(AdCtx *a, const Node *n, ValId v, const ValId *t) {
  ValId r0 = t[0] == IR_ERR ? IR_ERR : smul(a, t[0], pow_da(a, n));
  ValId r1 = t[1] == IR_ERR ? IR_ERR : smul(a, t[1], pow_db(a, n, v));
  if (r0 == IR_ERR) return r1;
  if (r1 == IR_ERR) return r0;
  return add(a, r0, r1);
}
/* maximum/minimum: the share of input 0 is 1 where it wins, 1/2 on ties, else 0. */
static ValId minmax_share(AdCtx *a, const Node *n) {
  ValId x = n->in[0], y = n->in[1];
  ValId win = bin(a, n->op == OP_MAX ? OP_GT : OP_LT, x, y);
  return add(a, win, mul(a, bin(a, OP_EQ, x, y), kst(a, 0.5, x)));
}
static void vjp_minmax(AdCtx *a, const Node *n, ValId v, ValId g, unsigned need) {
  ValId s = minmax_share(a, n);
  if (need & 1) give(a, n->in[0], mul(a, g, s));
  if (need & 2) give(a, n->in[1], mul(a, g, sub(a, kst(a, 1, s), s)));
}
static ValId jvp_minmax(AdCtx *a, const Node *n, ValId v, const ValId *t) {
  ValId s = minmax_share(a, n);
  ValId r0 = t[0] == IR_ERR ? IR_ERR : mul(a, t[0], s);
  ValId r1 = t[1] == IR_ERR ? IR_ERR : mul(a, t[1], sub(a, kst(a, 1, s), s));
  if (r0 == IR_ERR) return r1;
  if (r1 == IR_ERR) return r0;
  return add(a, r0, r1);
}

/* ---- where: the cotangent of the unselected branch is an exact 0 --------------------- */
static void vjp_where(AdCtx *a, const Node *n, ValId v, ValId g, unsigned need) {
  ValId c = n->in[0];
  if (need & 2) give(a, n->in[1], where(a, c, g, kst(a, 0, g)));
  if (need & 4) give(a, n->in[2], where(a, c, kst(a, 0, g), g));
}
static ValId jvp_where(AdCtx *a, const Node *n, ValId v, const ValId *t) {
  return where(a, n->in[0], orzero(a, t[1], n->in[1]), orzero(a, t[2], n->in[2]));
}

/* ---- reductions ------------------------------------------------------------------------ */
static ValId bcast(AdCtx *a, ValId x, ValId like) {
  Shape s = ir_node(a->g, like)->shape;
  return ir_must(a->g, ir_broadcast(a->g, x, &s, a->loc));
}
static ValId reduce(AdCtx *a, Op op, ValId x, uint32_t axes) {
  return ir_must(a->g, ir_reduce(a->g, op, x, axes, a->loc));
}
static void vjp_sum(AdCtx *a, const Node *n, ValId v, ValId g, unsigned need) {
  give(a, n->in[0], bcast(a, g, n->in[0]));
}
static ValId jvp_sum(AdCtx *a, const Node *n, ValId v, const ValId *t) {
  return reduce(a, OP_SUM, t[0], n->attr.axes);
}
/* max/min over axes: the elements equal to the result share its gradient equally. */
static ValId argext_weight(AdCtx *a, const Node *n, ValId v) {
  ValId x = n->in[0];
  ValId hit = bin(a, OP_EQ, x, bcast(a, v, x));     /* [in shape] 0/1 */
  ValId cnt = reduce(a, OP_SUM, hit, n->attr.axes); /* [out shape] >= 1 */
  return bin(a, OP_DIV, hit, bcast(a, cnt, x));
}
static void vjp_rext(AdCtx *a, const Node *n, ValId v, ValId g, unsigned need) {
  give(a, n->in[0], mul(a, bcast(a, g, n->in[0]), argext_weight(a, n, v)));
}
static ValId jvp_rext(AdCtx *a, const Node *n, ValId v, const ValId *t) {
  return reduce(a, OP_SUM, mul(a, t[0], argext_weight(a, n, v)), n->attr.axes);
}

/* ---- data movement (all linear: the JVP is the op applied to the tangent) ------------- */
static void vjp_broadcast(AdCtx *a, const Node *n, ValId v, ValId g, unsigned need) {
  Shape s = ir_node(a->g, n->in[0])->shape;
  give(a, n->in[0], ir_must(a->g, ir_sum_to(a->g, g, &s, a->loc)));
}
static ValId jvp_broadcast(AdCtx *a, const Node *n, ValId v, const ValId *t) {
  return bcast(a, t[0], v);
}
static void vjp_reshape(AdCtx *a, const Node *n, ValId v, ValId g, unsigned need) {
  Shape s = ir_node(a->g, n->in[0])->shape;
  give(a, n->in[0], ir_must(a->g, ir_reshape(a->g, g, &s, a->loc)));
}
static ValId jvp_reshape(AdCtx *a, const Node *n, ValId v, const ValId *t) {
  return ir_must(a->g, ir_reshape(a->g, t[0], &n->shape, a->loc));
}
static void vjp_transpose(AdCtx *a, const Node *n, ValId v, ValId g, unsigned need) {
  int32_t inv[IR_MAXRANK] = {0};
  for (int i = 0; i < n->shape.rank; i++) inv[n->attr.perm[i]] = i;
  give(a, n->in[0], ir_must(a->g, ir_transpose(a->g, g, inv, a->loc)));
}
static ValId jvp_transpose(AdCtx *a, const Node *n, ValId v, const ValId *t) {
  return ir_must(a->g, ir_transpose(a->g, t[0], n->attr.perm, a->loc));
}
static void vjp_slice(AdCtx *a, const Node *n, ValId v, ValId g, unsigned need) {
  int ax = n->attr.sl.axis;
  int64_t dim = ir_node(a->g, n->in[0])->shape.dims[ax];
  give(a, n->in[0],
       ir_must(a->g, ir_pad(a->g, g, ax, n->attr.sl.start, dim - n->attr.sl.stop, a->loc)));
}
static ValId jvp_slice(AdCtx *a, const Node *n, ValId v, const ValId *t) {
  return ir_must(a->g,
                 ir_slice(a->g, t[0], n->attr.sl.axis, n->attr.sl.start, n->attr.sl.stop, a->loc));
}
static void vjp_pad(AdCtx *a, const Node *n, ValId v, ValId g, unsigned need) {
  int ax = n->attr.sl.axis;
  int64_t lo = n->attr.sl.start, dim = ir_node(a->g, n->in[0])->shape.dims[ax];
  give(a, n->in[0], ir_must(a->g, ir_slice(a->g, g, ax, lo, lo + dim, a->loc)));
}
static ValId jvp_pad(AdCtx *a, const Node *n, ValId v, const ValId *t) {
  return ir_must(a->g,
                 ir_pad(a->g, t[0], n->attr.sl.axis, n->attr.sl.start, n->attr.sl.stop, a->loc));
}
static void vjp_concat(AdCtx *a, const Node *n, ValId v, ValId g, unsigned need) {
  int ax = n->attr.sl.axis;
  int64_t d0 = ir_node(a->g, n->in[0])->shape.dims[ax], d = n->shape.dims[ax];
  if (need & 1) give(a, n->in[0], ir_must(a->g, ir_slice(a->g, g, ax, 0, d0, a->loc)));
  if (need & 2) give(a, n->in[1], ir_must(a->g, ir_slice(a->g, g, ax, d0, d, a->loc)));
}
static ValId jvp_concat(AdCtx *a, const Node *n, ValId v, const ValId *t) {
  ValId t0 = orzero(a, t[0], n->in[0]), t1 = orzero(a, t[1], n->in[1]);
  return ir_must(a->g, ir_concat(a->g, t0, t1, n->attr.sl.axis, a->loc));
}
static void vjp_gather(AdCtx *a, const Node *n, ValId v, ValId g, unsigned need) {
  int ax = n->attr.sl.axis;
  int64_t dim = ir_node(a->g, n->in[0])->shape.dims[ax];
  give(a, n->in[0], ir_must(a->g, ir_scatter_add(a->g, g, n->in[1], ax, dim, a->loc)));
}
static ValId jvp_gather(AdCtx *a, const Node *n, ValId v, const ValId *t) {
  return ir_must(a->g, ir_gather(a->g, t[0], n->in[1], n->attr.sl.axis, a->loc));
}
static void vjp_scatter(AdCtx *a, const Node *n, ValId v, ValId g, unsigned need) {
  give(a, n->in[0], ir_must(a->g, ir_gather(a->g, g, n->in[1], n->attr.sl.axis, a->loc)));
}
static ValId jvp_scatter(AdCtx *a, const Node *n, ValId v, const ValId *t) {
  return ir_must(a->g,
                 ir_scatter_add(a->g, t[0], n->in[1], n->attr.sl.axis, n->attr.sl.start, a->loc));
}

/* ---- matrix product ---------------------------------------------------------------------
 * C = op(A) op(B), op = transpose when attr.mm.ta/tb. dop(A) = G op(B)^T, dop(B) = op(A)^T G,
 * and the transposes fold into the flags of the new matmuls:
 *   dA = ta ? op(B) G^T : G op(B)^T        dB = tb ? G^T op(A) : op(A)^T G           */
static ValId mm(AdCtx *a, ValId x, ValId y, int tx, int ty) {
  return ir_must(a->g, ir_matmul(a->g, x, y, tx, ty, a->loc));
}
static void vjp_matmul(AdCtx *a, const Node *n, ValId v, ValId g, unsigned need) {
  ValId A = n->in[0], B = n->in[1];
  int ta = n->attr.mm.ta, tb = n->attr.mm.tb;
  if (need & 1) give(a, A, ta ? mm(a, B, g, tb, 1) : mm(a, g, B, 0, !tb));
  if (need & 2) give(a, B, tb ? mm(a, g, A, 1, ta) : mm(a, A, g, !ta, 0));
}
static ValId jvp_matmul(AdCtx *a, const Node *n, ValId v, const ValId *t) {
  int ta = n->attr.mm.ta, tb = n->attr.mm.tb;
  ValId r0 = t[0] == IR_ERR ? IR_ERR : mm(a, t[0], n->in[1], ta, tb);
  ValId r1 = t[1] == IR_ERR ? IR_ERR : mm(a, n->in[0], t[1], ta, tb);
  if (r0 == IR_ERR) return r1;
  if (r1 == IR_ERR) return r0;
  return add(a, r0, r1);
}

/* ---- the table ------------------------------------------------------------------------------ */
static const AdRule rules[OP_COUNT] = {
    [OP_NEG] = {vjp_neg, jvp_neg},
    [OP_EXP] = {vjp_unary, jvp_unary},
    [OP_LOG] = {vjp_unary, jvp_unary},
    [OP_LOG1P] = {vjp_unary, jvp_unary},
    [OP_SQRT] = {vjp_unary, jvp_unary},
    [OP_RSQRT] = {vjp_unary, jvp_unary},
    [OP_ABS] = {vjp_unary, jvp_unary},
    [OP_SIN] = {vjp_unary, jvp_unary},
    [OP_COS] = {vjp_unary, jvp_unary},
    [OP_TAN] = {vjp_unary, jvp_unary},
    [OP_ATAN] = {vjp_unary, jvp_unary},
    [OP_TANH] = {vjp_unary, jvp_unary},
    [OP_SIGMOID] = {vjp_unary, jvp_unary},
    [OP_SILU] = {vjp_unary, jvp_unary},
    [OP_RELU] = {vjp_unary, jvp_unary},
    [OP_SOFTPLUS] = {vjp_unary, jvp_unary},
    [OP_CAST] = {vjp_cast, jvp_cast},
    [OP_ADD] = {vjp_add, jvp_add},
    [OP_SUB] = {vjp_sub, jvp_sub},
    [OP_MUL] = {vjp_mul, jvp_mul},
    [OP_DIV] = {vjp_div, jvp_div},
    [OP_POW] = {vjp_pow, jvp_pow},
    [OP_MAX] = {vjp_minmax, jvp_minmax},
    [OP_MIN] = {vjp_minmax, jvp_minmax},
    [OP_SAFEMUL] = {vjp_mul, jvp_mul},
    [OP_WHERE] = {vjp_where, jvp_where},
    [OP_SUM] = {vjp_sum, jvp_sum},
    [OP_RMAX] = {vjp_rext, jvp_rext},
    [OP_RMIN] = {vjp_rext, jvp_rext},
    [OP_BROADCAST] = {vjp_broadcast, jvp_broadcast},
    [OP_RESHAPE] = {vjp_reshape, jvp_reshape},
    [OP_TRANSPOSE] = {vjp_transpose, jvp_transpose},
    [OP_SLICE] = {vjp_slice, jvp_slice},
    [OP_PAD] = {vjp_pad, jvp_pad},
    [OP_CONCAT] = {vjp_concat, jvp_concat},
    [OP_GATHER] = {vjp_gather, jvp_gather},
    [OP_SCATTERADD] = {vjp_scatter, jvp_scatter},
    [OP_MATMUL] = {vjp_matmul, jvp_matmul},
};

const AdRule *ad_rule(Op op) {
  IR_ASSERT(op < OP_COUNT);
  return &rules[op];
}

int ad_has_rules(Op op) { return op < OP_COUNT && rules[op].vjp && rules[op].jvp; }
