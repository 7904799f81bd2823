/* tensor.c: runtime memory for tensors and deterministic parameter initialization.
 *
 * Every buffer the runtime or the interpreter hands out comes from gr_alloc: 64-byte
 * aligned (one cache line, the widest AVX-512 vector) and zeroed, so generated code may
 * use aligned vector loads and a fresh tensor is a valid all-zero value.
 *
 * Parameter initialization is a pure function of (seed, parameter index, element index)
 * (design rule 7): element i of parameter k draws from the Philox stream 0x5EED0000 + k
 * at step 0 and counter i. The gradc interpreter and every compiled executable call this
 * one function, so a model initialized by either starts from bit-identical weights.
 */
#include "gradrt.h"
#include "philox.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

void *gr_alloc(size_t n) {
  size_t sz = (n + 63) & ~(size_t)63;
  if (sz < n) return NULL; /* overflow */
  if (sz == 0) sz = 64;    /* a valid, freeable pointer even for empty tensors */
  void *p = aligned_alloc(64, sz);
  if (p) memset(p, 0, sz);
  return p;
}

void gr_free(void *p) { free(p); }

void gr_tensor_free(GrTensor *t) {
  if (!t) return;
  gr_free(t->data);
  t->data = NULL;
}

size_t gr_dtype_size(int32_t dtype) {
  switch (dtype) {
  case GR_F32: return 4;
  case GR_F64: return 8;
  case GR_I32: return 4;
  case GR_I64: return 8;
  default: return 0;
  }
}

int64_t gr_numel(const GrTensorInfo *t) {
  int64_t n = 1;
  for (int i = 0; i < t->rank; i++) n *= t->dims[i];
  return n;
}

/* Stores v into element i of buf in the given dtype. Float -> int follows the IR's cast
 * rule (truncate toward zero, saturate, NaN -> 0). */
static void store_elem(void *buf, int32_t dtype, int64_t i, double v) {
  switch (dtype) {
  case GR_F32: ((float *)buf)[i] = (float)v; break;
  case GR_F64: ((double *)buf)[i] = v; break;
  case GR_I32:
    ((int32_t *)buf)[i] = isnan(v) ? 0 : v >= 2147483647.0 ? INT32_MAX : v <= -2147483648.0 ? INT32_MIN : (int32_t)v;
    break;
  case GR_I64:
    ((int64_t *)buf)[i] = isnan(v) ? 0 : v >= 9223372036854775807.0 ? INT64_MAX
                                     : v <= -9223372036854775808.0 ? INT64_MIN : (int64_t)v;
    break;
  default: break;
  }
}

/* The value of element i of a parameter (computed in double, rounded by the caller):
 *   zeros 0, ones 1, const a,
 *   normal   a * z               z = gr_normal_f64(seed, 0, stream, i)
 *   uniform  a + (b - a) * u     u = gr_uniform_f32 for f32 params, gr_uniform_f64 else
 *   glorot   uniform on [-L, L), L = sqrt(6 / (fan_in + fan_out))
 *   he       normal with std sqrt(2 / fan_in)                                         */
static double init_value(const GrTensorInfo *info, uint64_t seed, uint64_t stream, int64_t i) {
  uint64_t ui = (uint64_t)i;
  double u = info->dtype == GR_F32 ? (double)gr_uniform_f32(seed, 0, stream, ui)
                                   : gr_uniform_f64(seed, 0, stream, ui);
  switch (info->init) {
  case GR_INIT_ZEROS: return 0.0;
  case GR_INIT_ONES: return 1.0;
  case GR_INIT_CONST: return info->init_a;
  case GR_INIT_NORMAL: return info->init_a * gr_normal_f64(seed, 0, stream, ui);
  case GR_INIT_UNIFORM: return info->init_a + (info->init_b - info->init_a) * u;
  case GR_INIT_GLOROT: {
    double fans = (double)(info->fan_in + info->fan_out);
    double lim = fans > 0 ? sqrt(6.0 / fans) : 0.0;
    return -lim + 2.0 * lim * u;
  }
  case GR_INIT_HE: {
    double std = info->fan_in > 0 ? sqrt(2.0 / (double)info->fan_in) : 0.0;
    return std * gr_normal_f64(seed, 0, stream, ui);
  }
  default: return 0.0;
  }
}

void gr_init_param(const GrTensorInfo *info, int param_index, uint64_t seed, void *buf) {
  uint64_t stream = 0x5EED0000u + (uint64_t)(uint32_t)param_index;
  int64_t n = gr_numel(info);
  for (int64_t i = 0; i < n; i++) store_elem(buf, info->dtype, i, init_value(info, seed, stream, i));
}
