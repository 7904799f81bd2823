/* lower_ops.c: the scalar LLVM IR of every op, one function per op kind.
 *
 * Kernels (lower.c) decide WHERE a value is computed (which loop, which index); this file
 * decides HOW: the arithmetic of each op in each dtype. Float arithmetic carries the
 * `contract` fast-math flag (so a*b+c becomes an FMA); only reduction accumulators also
 * get `reassoc` (so they vectorize; results then depend on the vector width, never on the
 * thread count). sqrt, fabs and floor are LLVM intrinsics (single instructions); exp, log,
 * sin, cos, pow, tan, atan, tanh, log1p are libm calls declared memory(none), which the
 * loop vectorizer replaces by glibc's libmvec variants (-vector-library=LIBMVEC-X86).
 * The random draws replay runtime/philox.h instruction for instruction, without fast-math
 * flags, so generated code and the runtime agree bit for bit; the Box-Muller log and
 * cos(2 pi u) are philox.h's libm-free gr_log_f64 / gr_cos2pi_f64 (plain arithmetic, bit
 * casts, selects), emitted inline so the draw loop vectorizes.
 */
#include <string.h>

#include "lower.h"
#include "philox.h"

LLVMTypeRef low_type(Low *L, DType t) {
  switch (t) {
  case DT_F32: return L->f32;
  case DT_F64: return L->f64;
  case DT_I32: return L->i32;
  default: return L->i64;
  }
}

LLVMValueRef low_const(Low *L, DType t, double v) {
  if (dtype_is_float(t)) return LLVMConstReal(low_type(L, t), v);
  return LLVMConstInt(low_type(L, t), (unsigned long long)(long long)v, 1);
}

LLVMValueRef low_func(Low *L, const char *name, LLVMTypeRef ret, LLVMTypeRef *args, int n) {
  LLVMValueRef f = LLVMGetNamedFunction(L->m, name);
  if (f) return f;
  return LLVMAddFunction(L->m, name, LLVMFunctionType(ret, args, (unsigned)n, 0));
}

static LLVMValueRef contract(LLVMValueRef v) {
  if (LLVMCanValueUseFastMathFlags(v)) LLVMSetFastMathFlags(v, LLVMFastMathAllowContract);
  return v;
}

/* llvm.NAME.f32/f64 */
static LLVMValueRef intrin(Low *L, const char *name, LLVMTypeRef t, LLVMValueRef *args, int n) {
  unsigned id = LLVMLookupIntrinsicID(name, strlen(name));
  LLVMValueRef f = LLVMGetIntrinsicDeclaration(L->m, id, &t, 1);
  LLVMTypeRef ft = LLVMIntrinsicGetType(L->cx, id, &t, 1);
  return contract(LLVMBuildCall2(L->b, ft, f, args, (unsigned)n, ""));
}

/* A libm function declared as clang does under -fno-math-errno (memory(none), nounwind,
 * willreturn): only then may the loop vectorizer call libmvec's variant
 * (-vector-library=LIBMVEC-X86 maps the libm names, not the llvm.* intrinsics). */
static LLVMValueRef libm_fn(Low *L, const char *name, LLVMTypeRef ft) {
  LLVMValueRef f = LLVMGetNamedFunction(L->m, name);
  if (f) return f;
  f = LLVMAddFunction(L->m, name, ft);
  static const char *const attrs[] = {"nounwind", "willreturn", "nosync", "nofree", "memory"};
  for (int i = 0; i < 5; i++) {
    unsigned kind = LLVMGetEnumAttributeKindForName(attrs[i], strlen(attrs[i]));
    LLVMAddAttributeAtIndex(f, LLVMAttributeFunctionIndex, LLVMCreateEnumAttribute(L->cx, kind, 0));
  }
  return f;
}

/* NAME(x) or NAME(x, y) in dtype t: "exp" -> expf / exp. */
static LLVMValueRef libm(Low *L, const char *name64, DType t, LLVMValueRef *x, int n) {
  char nm[32];
  snprintf(nm, sizeof nm, "%s%s", name64, t == DT_F32 ? "f" : "");
  LLVMTypeRef ty = low_type(L, t), at[2] = {ty, ty};
  LLVMTypeRef ft = LLVMFunctionType(ty, at, (unsigned)n, 0);
  return contract(LLVMBuildCall2(L->b, ft, libm_fn(L, nm, ft), x, (unsigned)n, ""));
}

static LLVMValueRef libm1(Low *L, const char *name64, DType t, LLVMValueRef x) { return libm(L, name64, t, &x, 1); }

static LLVMValueRef fop(LLVMValueRef v) { return contract(v); }

/* e = exp(-|x|); x >= 0 ? 1/(1+e) : e/(1+e): one exp, never overflows, and the same
 * value as the interpreter's two-branch formula. */
static LLVMValueRef sigmoid(Low *L, DType t, LLVMValueRef x) {
  LLVMTypeRef ty = low_type(L, t);
  LLVMValueRef ax = intrin(L, "llvm.fabs", ty, &x, 1);
  LLVMValueRef e = libm1(L, "exp", t, fop(LLVMBuildFNeg(L->b, ax, "")));
  LLVMValueRef d = fop(LLVMBuildFAdd(L->b, LLVMConstReal(ty, 1.0), e, ""));
  LLVMValueRef pos = LLVMBuildFCmp(L->b, LLVMRealOGE, x, LLVMConstReal(ty, 0.0), "");
  LLVMValueRef num = LLVMBuildSelect(L->b, pos, LLVMConstReal(ty, 1.0), e, "");
  return fop(LLVMBuildFDiv(L->b, num, d, ""));
}

static LLVMValueRef cast(Low *L, DType to, DType from, LLVMValueRef x) {
  LLVMTypeRef ty = low_type(L, to);
  if (to == from) return x;
  if (dtype_is_float(to) && dtype_is_float(from))
    return to == DT_F64 ? LLVMBuildFPExt(L->b, x, ty, "") : LLVMBuildFPTrunc(L->b, x, ty, "");
  if (dtype_is_float(to)) return LLVMBuildSIToFP(L->b, x, ty, "");
  if (dtype_is_float(from)) { /* truncate toward zero, saturate, NaN -> 0 */
    unsigned id = LLVMLookupIntrinsicID("llvm.fptosi.sat", 15);
    LLVMTypeRef ts[2] = {ty, low_type(L, from)};
    return LLVMBuildCall2(L->b, LLVMIntrinsicGetType(L->cx, id, ts, 2), LLVMGetIntrinsicDeclaration(L->m, id, ts, 2), &x, 1, "");
  }
  return to == DT_I64 ? LLVMBuildSExt(L->b, x, ty, "") : LLVMBuildTrunc(L->b, x, ty, "");
}

static LLVMValueRef int_unary(Low *L, Op op, DType t, LLVMValueRef x) {
  LLVMValueRef z = low_const(L, t, 0);
  switch (op) {
  case OP_NEG: return LLVMBuildSub(L->b, z, x, "");
  case OP_ABS: return LLVMBuildSelect(L->b, LLVMBuildICmp(L->b, LLVMIntSLT, x, z, ""), LLVMBuildSub(L->b, z, x, ""), x, "");
  case OP_SIGN: {
    LLVMValueRef pos = LLVMBuildZExt(L->b, LLVMBuildICmp(L->b, LLVMIntSGT, x, z, ""), low_type(L, t), "");
    LLVMValueRef neg = LLVMBuildZExt(L->b, LLVMBuildICmp(L->b, LLVMIntSLT, x, z, ""), low_type(L, t), "");
    return LLVMBuildSub(L->b, pos, neg, "");
  }
  default: return x; /* STOPGRAD */
  }
}

LLVMValueRef low_unary(Low *L, Op op, DType to, DType from, LLVMValueRef x) {
  if (op == OP_CAST) return cast(L, to, from, x);
  if (op == OP_STOPGRAD) return x;
  if (!dtype_is_float(to)) return int_unary(L, op, to, x);
  LLVMTypeRef ty = low_type(L, to);
  LLVMValueRef one = LLVMConstReal(ty, 1.0), zero = LLVMConstReal(ty, 0.0);
  LLVMBuilderRef b = L->b;
  switch (op) {
  case OP_NEG: return fop(LLVMBuildFNeg(b, x, ""));
  case OP_EXP: return libm1(L, "exp", to, x);
  case OP_LOG: return libm1(L, "log", to, x);
  case OP_LOG1P: return libm1(L, "log1p", to, x);
  case OP_SQRT: return intrin(L, "llvm.sqrt", ty, &x, 1);
  case OP_RSQRT: return fop(LLVMBuildFDiv(b, one, intrin(L, "llvm.sqrt", ty, &x, 1), ""));
  case OP_ABS: return intrin(L, "llvm.fabs", ty, &x, 1);
  case OP_SIGN: { /* NaN and +-0 pass through */
    LLVMValueRef r = LLVMBuildSelect(b, LLVMBuildFCmp(b, LLVMRealOLT, x, zero, ""), LLVMConstReal(ty, -1.0), x, "");
    return LLVMBuildSelect(b, LLVMBuildFCmp(b, LLVMRealOGT, x, zero, ""), one, r, "");
  }
  case OP_FLOOR: return intrin(L, "llvm.floor", ty, &x, 1);
  case OP_SIN: return libm1(L, "sin", to, x);
  case OP_COS: return libm1(L, "cos", to, x);
  case OP_TAN: return libm1(L, "tan", to, x);
  case OP_ATAN: return libm1(L, "atan", to, x);
  case OP_TANH: return libm1(L, "tanh", to, x);
  case OP_SIGMOID: return sigmoid(L, to, x);
  case OP_SILU: return fop(LLVMBuildFMul(b, x, sigmoid(L, to, x), ""));
  case OP_RELU: return LLVMBuildSelect(b, LLVMBuildFCmp(b, LLVMRealOGT, x, zero, ""), x, zero, "");
  case OP_SOFTPLUS: { /* max(x, 0) + log1p(exp(-|x|)): no overflow */
    LLVMValueRef ax = intrin(L, "llvm.fabs", ty, &x, 1);
    LLVMValueRef e = libm1(L, "exp", to, fop(LLVMBuildFNeg(b, ax, "")));
    LLVMValueRef mx = LLVMBuildSelect(b, LLVMBuildFCmp(b, LLVMRealOGT, x, zero, ""), x, zero, "");
    return fop(LLVMBuildFAdd(b, mx, libm1(L, "log1p", to, e), ""));
  }
  default: IR_ASSERT(0 && "not a unary op");
  }
  return NULL;
}

static LLVMValueRef bool_to(Low *L, DType t, LLVMValueRef c) {
  return dtype_is_float(t) ? LLVMBuildUIToFP(L->b, c, low_type(L, t), "")
                           : LLVMBuildZExt(L->b, c, low_type(L, t), "");
}

/* a > b ? a : b (max), NaN in either -> a + b (NaN), as the interpreter. */
static LLVMValueRef fminmax(Low *L, int max, LLVMValueRef a, LLVMValueRef c) {
  LLVMBuilderRef b = L->b;
  LLVMValueRef pick = LLVMBuildSelect(b, LLVMBuildFCmp(b, max ? LLVMRealOGT : LLVMRealOLT, a, c, ""), a, c, "");
  return LLVMBuildSelect(b, LLVMBuildFCmp(b, LLVMRealUNO, a, c, ""), LLVMBuildFAdd(b, a, c, ""), pick, "");
}

static LLVMValueRef int_binary(Low *L, Op op, DType t, LLVMValueRef a, LLVMValueRef c) {
  LLVMBuilderRef b = L->b;
  LLVMValueRef z = low_const(L, t, 0);
  switch (op) {
  case OP_ADD: return LLVMBuildAdd(b, a, c, "");
  case OP_SUB: return LLVMBuildSub(b, a, c, "");
  case OP_MUL: return LLVMBuildMul(b, a, c, "");
  case OP_DIV: { /* x/0 = 0 and x/-1 = -x (wrapping): never a trap */
    LLVMValueRef isz = LLVMBuildICmp(b, LLVMIntEQ, c, z, "");
    LLVMValueRef ism = LLVMBuildICmp(b, LLVMIntEQ, c, low_const(L, t, -1), "");
    LLVMValueRef safe = LLVMBuildSelect(b, LLVMBuildOr(b, isz, ism, ""), low_const(L, t, 1), c, "");
    LLVMValueRef q = LLVMBuildSDiv(b, a, safe, "");
    return LLVMBuildSelect(b, isz, z, LLVMBuildSelect(b, ism, LLVMBuildSub(b, z, a, ""), q, ""), "");
  }
  case OP_MAX: return LLVMBuildSelect(b, LLVMBuildICmp(b, LLVMIntSGT, a, c, ""), a, c, "");
  case OP_MIN: return LLVMBuildSelect(b, LLVMBuildICmp(b, LLVMIntSLT, a, c, ""), a, c, "");
  case OP_LT: return bool_to(L, t, LLVMBuildICmp(b, LLVMIntSLT, a, c, ""));
  case OP_LE: return bool_to(L, t, LLVMBuildICmp(b, LLVMIntSLE, a, c, ""));
  case OP_GT: return bool_to(L, t, LLVMBuildICmp(b, LLVMIntSGT, a, c, ""));
  case OP_GE: return bool_to(L, t, LLVMBuildICmp(b, LLVMIntSGE, a, c, ""));
  case OP_EQ: return bool_to(L, t, LLVMBuildICmp(b, LLVMIntEQ, a, c, ""));
  case OP_NE: return bool_to(L, t, LLVMBuildICmp(b, LLVMIntNE, a, c, ""));
  default: IR_ASSERT(0 && "integer binary op");
  }
  return NULL;
}

LLVMValueRef low_binary(Low *L, Op op, DType t, LLVMValueRef a, LLVMValueRef c) {
  if (!dtype_is_float(t)) return int_binary(L, op, t, a, c);
  LLVMBuilderRef b = L->b;
  LLVMTypeRef ty = low_type(L, t);
  LLVMValueRef zero = LLVMConstReal(ty, 0.0);
  switch (op) {
  case OP_ADD: return fop(LLVMBuildFAdd(b, a, c, ""));
  case OP_SUB: return fop(LLVMBuildFSub(b, a, c, ""));
  case OP_MUL: return fop(LLVMBuildFMul(b, a, c, ""));
  case OP_DIV: return fop(LLVMBuildFDiv(b, a, c, ""));
  case OP_POW: return libm(L, "pow", t, (LLVMValueRef[]){a, c}, 2);
  case OP_MAX:
  case OP_MIN: return fminmax(L, op == OP_MAX, a, c);
  case OP_SAFEMUL: {
    LLVMValueRef za = LLVMBuildFCmp(b, LLVMRealOEQ, a, zero, "");
    LLVMValueRef zb = LLVMBuildFCmp(b, LLVMRealOEQ, c, zero, "");
    return LLVMBuildSelect(b, LLVMBuildOr(b, za, zb, ""), zero, fop(LLVMBuildFMul(b, a, c, "")), "");
  }
  case OP_LT: return bool_to(L, t, LLVMBuildFCmp(b, LLVMRealOLT, a, c, ""));
  case OP_LE: return bool_to(L, t, LLVMBuildFCmp(b, LLVMRealOLE, a, c, ""));
  case OP_GT: return bool_to(L, t, LLVMBuildFCmp(b, LLVMRealOGT, a, c, ""));
  case OP_GE: return bool_to(L, t, LLVMBuildFCmp(b, LLVMRealOGE, a, c, ""));
  case OP_EQ: return bool_to(L, t, LLVMBuildFCmp(b, LLVMRealOEQ, a, c, ""));
  case OP_NE: return bool_to(L, t, LLVMBuildFCmp(b, LLVMRealUNE, a, c, ""));
  default: IR_ASSERT(0 && "binary op");
  }
  return NULL;
}

LLVMValueRef low_where(Low *L, DType ct, LLVMValueRef c, LLVMValueRef a, LLVMValueRef x) {
  LLVMValueRef nz = dtype_is_float(ct)
                        ? LLVMBuildFCmp(L->b, LLVMRealUNE, c, low_const(L, ct, 0), "")
                        : LLVMBuildICmp(L->b, LLVMIntNE, c, low_const(L, ct, 0), "");
  return LLVMBuildSelect(L->b, nz, a, x, "");
}

/* ---- Philox-4x32-10 (runtime/philox.h) ------------------------------------------------ */
/* i64 gr_philox_w01(i64 seed, i64 step, i64 stream, i64 idx): words 0 and 1 as w0<<32|w1 */
static LLVMValueRef philox_fn(Low *L) {
  LLVMValueRef f = LLVMGetNamedFunction(L->m, "gr_philox_w01");
  if (f) return f;
  LLVMTypeRef a[4] = {L->i64, L->i64, L->i64, L->i64};
  f = low_func(L, "gr_philox_w01", L->i64, a, 4);
  LLVMSetLinkage(f, LLVMInternalLinkage);
  unsigned kind = LLVMGetEnumAttributeKindForName("alwaysinline", 12);
  LLVMAddAttributeAtIndex(f, LLVMAttributeFunctionIndex, LLVMCreateEnumAttribute(L->cx, kind, 0));
  LLVMBuilderRef save = L->b;
  LLVMBuilderRef b = LLVMCreateBuilderInContext(L->cx);
  LLVMPositionBuilderAtEnd(b, LLVMAppendBasicBlockInContext(L->cx, f, "e"));
  LLVMValueRef seed = LLVMGetParam(f, 0), step = LLVMGetParam(f, 1), stream = LLVMGetParam(f, 2),
               idx = LLVMGetParam(f, 3);
  LLVMValueRef c32 = LLVMConstInt(L->i64, 32, 0);
#define LO(x) LLVMBuildTrunc(b, (x), L->i32, "")
#define HI(x) LLVMBuildTrunc(b, LLVMBuildLShr(b, (x), c32, ""), L->i32, "")
  LLVMValueRef c[4] = {LO(idx), HI(idx), LO(stream), LO(step)};
  LLVMValueRef k0 = LO(seed), k1 = LLVMBuildXor(b, HI(seed), HI(stream), "");
  LLVMValueRef m0 = LLVMConstInt(L->i64, 0xD2511F53u, 0), m1 = LLVMConstInt(L->i64, 0xCD9E8D57u, 0);
  for (int r = 0; r < 10; r++) {
    LLVMValueRef p0 = LLVMBuildMul(b, m0, LLVMBuildZExt(b, c[0], L->i64, ""), "");
    LLVMValueRef p1 = LLVMBuildMul(b, m1, LLVMBuildZExt(b, c[2], L->i64, ""), "");
    LLVMValueRef n0 = LLVMBuildXor(b, LLVMBuildXor(b, HI(p1), c[1], ""), k0, "");
    LLVMValueRef n2 = LLVMBuildXor(b, LLVMBuildXor(b, HI(p0), c[3], ""), k1, "");
    c[0] = n0;
    c[1] = LO(p1);
    c[2] = n2;
    c[3] = LO(p0);
    k0 = LLVMBuildAdd(b, k0, LLVMConstInt(L->i32, 0x9E3779B9u, 0), "");
    k1 = LLVMBuildAdd(b, k1, LLVMConstInt(L->i32, 0xBB67AE85u, 0), "");
  }
#undef LO
#undef HI
  LLVMValueRef w = LLVMBuildOr(b, LLVMBuildShl(b, LLVMBuildZExt(b, c[0], L->i64, ""), c32, ""),
                               LLVMBuildZExt(b, c[1], L->i64, ""), "");
  LLVMBuildRet(b, w);
  LLVMDisposeBuilder(b);
  L->b = save;
  return f;
}

/* gr_log_f64 (runtime/philox.h), operation for operation, no fast-math flags. */
static LLVMValueRef rng_log(Low *L, LLVMValueRef x) {
  LLVMBuilderRef b = L->b;
  LLVMValueRef bits = LLVMBuildBitCast(b, x, L->i64, "");
  LLVMValueRef e = LLVMBuildSub(b, LLVMBuildLShr(b, bits, LLVMConstInt(L->i64, 52, 0), ""),
                                LLVMConstInt(L->i64, 1023, 0), "");
  LLVMValueRef mb = LLVMBuildOr(b, LLVMBuildAnd(b, bits, LLVMConstInt(L->i64, 0x000FFFFFFFFFFFFFull, 0), ""),
                                LLVMConstInt(L->i64, 0x3FF0000000000000ull, 0), "");
  LLVMValueRef m = LLVMBuildBitCast(b, mb, L->f64, "");
  LLVMValueRef big = LLVMBuildFCmp(b, LLVMRealOGT, m, LLVMConstReal(L->f64, GR_SQRT2), "");
  m = LLVMBuildSelect(b, big, LLVMBuildFMul(b, m, LLVMConstReal(L->f64, 0.5), ""), m, "");
  e = LLVMBuildSelect(b, big, LLVMBuildAdd(b, e, LLVMConstInt(L->i64, 1, 0), ""), e, "");
  LLVMValueRef f = LLVMBuildFSub(b, m, LLVMConstReal(L->f64, 1.0), "");
  LLVMValueRef s = LLVMBuildFDiv(b, f, LLVMBuildFAdd(b, LLVMConstReal(L->f64, 2.0), f, ""), "");
  LLVMValueRef z = LLVMBuildFMul(b, s, s, "");
  LLVMValueRef p = LLVMConstReal(L->f64, 1.0 / 19.0);
  for (int j = 1; j < GR_LOG_DEG; j++)
    p = LLVMBuildFAdd(b, LLVMBuildFMul(b, p, z, ""), LLVMConstReal(L->f64, 1.0 / (double)(19 - 2 * j)), "");
  LLVMValueRef h = LLVMBuildFMul(b, s, p, "");
  LLVMValueRef de = LLVMBuildSIToFP(b, e, L->f64, "");
  LLVMValueRef r = LLVMBuildFAdd(b, LLVMBuildFMul(b, de, LLVMConstReal(L->f64, GR_LN2_LO), ""),
                                 LLVMBuildFAdd(b, h, h, ""), "");
  return LLVMBuildFAdd(b, LLVMBuildFMul(b, de, LLVMConstReal(L->f64, GR_LN2_HI), ""), r, "");
}

/* gr_cos2pi_f64 (runtime/philox.h): cos(2 pi u), u in [0, 1). */
static LLVMValueRef rng_cos2pi(Low *L, LLVMValueRef u) {
  static const double cc[GR_TRIG_DEG] = GR_COS_C, sc[GR_TRIG_DEG] = GR_SIN_S;
  LLVMBuilderRef b = L->b;
  LLVMValueRef t = LLVMBuildFMul(b, u, LLVMConstReal(L->f64, 4.0), "");
  LLVMValueRef k = LLVMBuildFPToSI(b, LLVMBuildFAdd(b, t, LLVMConstReal(L->f64, 0.5), ""), L->i32, "");
  LLVMValueRef f = LLVMBuildFSub(b, t, LLVMBuildSIToFP(b, k, L->f64, ""), "");
  LLVMValueRef y = LLVMBuildFMul(b, f, f, "");
  LLVMValueRef c = LLVMConstReal(L->f64, cc[GR_TRIG_DEG - 1]), sn = LLVMConstReal(L->f64, sc[GR_TRIG_DEG - 1]);
  for (int j = GR_TRIG_DEG - 2; j >= 0; j--) {
    c = LLVMBuildFAdd(b, LLVMBuildFMul(b, c, y, ""), LLVMConstReal(L->f64, cc[j]), "");
    sn = LLVMBuildFAdd(b, LLVMBuildFMul(b, sn, y, ""), LLVMConstReal(L->f64, sc[j]), "");
  }
  sn = LLVMBuildFMul(b, f, sn, "");
  LLVMValueRef q = LLVMBuildAnd(b, k, LLVMConstInt(L->i32, 3, 0), "");
  LLVMValueRef odd = LLVMBuildICmp(b, LLVMIntNE, LLVMBuildAnd(b, q, LLVMConstInt(L->i32, 1, 0), ""),
                                   LLVMConstInt(L->i32, 0, 0), "");
  LLVMValueRef v = LLVMBuildSelect(b, odd, sn, c, "");
  LLVMValueRef neg = LLVMBuildOr(b, LLVMBuildICmp(b, LLVMIntEQ, q, LLVMConstInt(L->i32, 1, 0), ""),
                                 LLVMBuildICmp(b, LLVMIntEQ, q, LLVMConstInt(L->i32, 2, 0), ""), "");
  return LLVMBuildSelect(b, neg, LLVMBuildFNeg(b, v, ""), v, "");
}

LLVMValueRef low_random(Low *L, Op op, DType t, LLVMValueRef seed, LLVMValueRef step,
                        uint64_t stream, LLVMValueRef idx) {
  LLVMValueRef f = philox_fn(L);
  LLVMTypeRef a[4] = {L->i64, L->i64, L->i64, L->i64};
  LLVMValueRef args[4] = {seed, step, LLVMConstInt(L->i64, stream, 0), idx};
  LLVMBuilderRef b = L->b;
  LLVMValueRef w = LLVMBuildCall2(b, LLVMFunctionType(L->i64, a, 4, 0), f, args, 4, "");
  LLVMValueRef w0 = LLVMBuildTrunc(b, LLVMBuildLShr(b, w, LLVMConstInt(L->i64, 32, 0), ""), L->i32, "");
  LLVMValueRef w1 = LLVMBuildTrunc(b, w, L->i32, "");
  if (op == OP_RANDU) {
    if (t == DT_F32)
      return LLVMBuildFMul(b, LLVMBuildUIToFP(b, LLVMBuildLShr(b, w0, LLVMConstInt(L->i32, 8, 0), ""), L->f32, ""),
                           LLVMConstReal(L->f32, 1.0 / 16777216.0), "");
    LLVMValueRef u = LLVMBuildFMul(b, LLVMBuildUIToFP(b, LLVMBuildLShr(b, w, LLVMConstInt(L->i64, 11, 0), ""), L->f64, ""),
                                   LLVMConstReal(L->f64, 1.0 / 9007199254740992.0), "");
    return t == DT_F64 ? u : cast(L, t, DT_F64, u);
  }
  LLVMValueRef u1 = LLVMBuildFMul(b, LLVMBuildFAdd(b, LLVMBuildUIToFP(b, w0, L->f64, ""), LLVMConstReal(L->f64, 1.0), ""),
                                  LLVMConstReal(L->f64, 1.0 / 4294967296.0), "");
  LLVMValueRef u2 = LLVMBuildFMul(b, LLVMBuildUIToFP(b, w1, L->f64, ""), LLVMConstReal(L->f64, 1.0 / 4294967296.0), "");
  unsigned sid = LLVMLookupIntrinsicID("llvm.sqrt", 9);
  LLVMTypeRef ft = LLVMFunctionType(L->f64, &L->f64, 1, 0);
  LLVMValueRef r = LLVMBuildFMul(b, LLVMConstReal(L->f64, -2.0), rng_log(L, u1), "");
  LLVMValueRef sq = LLVMBuildCall2(b, ft, LLVMGetIntrinsicDeclaration(L->m, sid, &L->f64, 1), &r, 1, "");
  LLVMValueRef cs = rng_cos2pi(L, u2);
  LLVMValueRef z = LLVMBuildFMul(b, sq, cs, "");
  return t == DT_F64 ? z : cast(L, t, DT_F64, z);
}

LLVMValueRef low_extern(Low *L, int ext, const DType *argt, LLVMValueRef *args) {
  const Extern *e = &L->p->externs[ext];
  LLVMTypeRef at[3];
  LLVMValueRef av[3];
  for (int i = 0; i < e->nargs; i++) {
    at[i] = low_type(L, e->args[i]);
    av[i] = cast(L, e->args[i], argt[i], args[i]);
  }
  LLVMValueRef f = low_func(L, e->name, low_type(L, e->ret), at, e->nargs);
  LLVMTypeRef ft = LLVMFunctionType(low_type(L, e->ret), at, (unsigned)e->nargs, 0);
  return LLVMBuildCall2(L->b, ft, f, av, (unsigned)e->nargs, "");
}

LLVMValueRef low_reduce_init(Low *L, Op op, DType t) {
  if (op == OP_SUM) return low_const(L, t, 0);
  if (dtype_is_float(t)) return LLVMConstReal(low_type(L, t), op == OP_RMAX ? -__builtin_inf() : __builtin_inf());
  long long big = t == DT_I32 ? 2147483647LL : 9223372036854775807LL;
  return LLVMConstInt(low_type(L, t), (unsigned long long)(op == OP_RMAX ? -big - 1 : big), 1);
}

LLVMValueRef low_reduce_step(Low *L, Op op, DType t, LLVMValueRef acc, LLVMValueRef x) {
  LLVMBuilderRef b = L->b;
  if (op == OP_SUM) {
    if (!dtype_is_float(t)) return LLVMBuildAdd(b, acc, x, "");
    LLVMValueRef v = LLVMBuildFAdd(b, acc, x, "");
    LLVMSetFastMathFlags(v, LLVMFastMathAllowReassoc | LLVMFastMathAllowContract);
    return v;
  }
  if (!dtype_is_float(t))
    return LLVMBuildSelect(b, LLVMBuildICmp(b, op == OP_RMAX ? LLVMIntSGT : LLVMIntSLT, x, acc, ""), x, acc, "");
  return fminmax(L, op == OP_RMAX, acc, x);
}
