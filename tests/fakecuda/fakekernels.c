/* Host versions of the cuda backend's kernels for the fake driver
 * (FAKECUDA_EMULATE=1). Each reads cuLaunchKernel's argument array exactly
 * as kernels.cu declares the kernel's parameters, so a launcher that packs
 * the wrong type, order or stride shows up as a wrong result against the
 * reference backend. The arithmetic mirrors kernels.cu; what this cannot
 * check is kernels.cu itself, which only a GPU runs. */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include <plugnet/op.h>

#include "cuda_abi.h"
#include "fakecuda.h"

/* Argument i of a launch, as the type the kernel declares. */
#define ARG(params, i, type) (*(type *)(params)[i])

static void *mem(unsigned long long p) { return (void *)(uintptr_t)p; }

static void fill_i64(void **a) {
  long long *out = mem(ARG(a, 0, unsigned long long));
  long long v = ARG(a, 1, long long), n = ARG(a, 2, long long);
  for (long long i = 0; i < n; i++) out[i] = v;
}

/* ------------------------------------------------------------ copy */

typedef struct scalar {
  int is_float;
  float f;
  long long i;
} scalar;

static scalar load(int dt, const void *p, long long off) {
  scalar s = {0, 0.0f, 0};
  if (dt == PNI_CUDA_F32) s.is_float = 1, s.f = ((const float *)p)[off];
  if (dt == PNI_CUDA_I32) s.i = ((const int32_t *)p)[off];
  if (dt == PNI_CUDA_I64) s.i = ((const int64_t *)p)[off];
  if (dt == PNI_CUDA_U8) s.i = ((const uint8_t *)p)[off];
  return s;
}

static void store(int dt, void *p, long long off, scalar s) {
  if (dt == PNI_CUDA_F32) ((float *)p)[off] = s.is_float ? s.f : (float)s.i;
  if (dt == PNI_CUDA_I32)
    ((int32_t *)p)[off] =
        s.is_float ? (int32_t)pn_float_to_int(s.f, INT32_MIN, INT32_MAX) : (int32_t)s.i;
  if (dt == PNI_CUDA_I64)
    ((int64_t *)p)[off] = s.is_float ? pn_float_to_int(s.f, INT64_MIN, INT64_MAX) : s.i;
  if (dt == PNI_CUDA_U8)
    ((uint8_t *)p)[off] = s.is_float ? (uint8_t)pn_float_to_int(s.f, 0, 255) : (uint8_t)s.i;
}

static long long strided_offset(const pni_cuda_strided *g, long long i) {
  long long off = 0;
  for (int d = g->ndim - 1; d >= 0; d--) {
    long long q = i / g->shape[d];
    off += (i - q * g->shape[d]) * g->stride[d];
    i = q;
  }
  return off;
}

static void copy(void **a) {
  const void *src = mem(ARG(a, 0, unsigned long long));
  int sdt = ARG(a, 1, int);
  void *dst = mem(ARG(a, 2, unsigned long long));
  int ddt = ARG(a, 3, int);
  long long n = ARG(a, 4, long long);
  const pni_cuda_strided *g = a[5];
  for (long long i = 0; i < n; i++) store(ddt, dst, i, load(sdt, src, strided_offset(g, i)));
}

/* ------------------------------------------------------------ elementwise */

static float unary_value(int kind, float x, float alpha, float beta) {
  switch (kind) {
  case PN_UNARY_NEG: return -x;
  case PN_UNARY_ABS: return fabsf(x);
  case PN_UNARY_SIGN: return (float)((x > 0.0f) - (x < 0.0f));
  case PN_UNARY_EXP: return expf(x);
  case PN_UNARY_LOG: return logf(x);
  case PN_UNARY_SQRT: return sqrtf(x);
  case PN_UNARY_SQUARE: return x * x;
  case PN_UNARY_RECIP: return 1.0f / x;
  case PN_UNARY_RELU: return x > 0.0f ? x : 0.0f;
  case PN_UNARY_STEP: return x > 0.0f ? 1.0f : 0.0f;
  case PN_UNARY_SIGMOID: return 1.0f / (1.0f + expf(-x));
  case PN_UNARY_TANH: return tanhf(x);
  case PN_UNARY_AFFINE: return alpha * x + beta;
  case PN_UNARY_CLAMP: {
    float t = x < alpha ? alpha : x;
    return t > beta ? beta : t;
  }
  case PN_UNARY_INSIDE: return x > alpha && x < beta ? 1.0f : 0.0f;
  default: return NAN;
  }
}

static float binary_value(int kind, float x, float y) {
  switch (kind) {
  case PN_BINARY_ADD: return x + y;
  case PN_BINARY_SUB: return x - y;
  case PN_BINARY_MUL: return x * y;
  case PN_BINARY_DIV: return x / y;
  case PN_BINARY_MAX: return x > y ? x : y;
  case PN_BINARY_MIN: return x < y ? x : y;
  case PN_BINARY_EQ: return x == y ? 1.0f : 0.0f;
  case PN_BINARY_GT: return x > y ? 1.0f : 0.0f;
  case PN_BINARY_RELU_GRAD: return y > 0.0f ? x : 0.0f;
  default: return NAN;
  }
}

static void unary(void **a) {
  const float *x = mem(ARG(a, 0, unsigned long long));
  float *out = mem(ARG(a, 1, unsigned long long));
  long long n = ARG(a, 2, long long);
  int kind = ARG(a, 3, int);
  float alpha = ARG(a, 4, float), beta = ARG(a, 5, float);
  for (long long i = 0; i < n; i++) out[i] = unary_value(kind, x[i], alpha, beta);
}

static void binary(void **a) {
  const float *x = mem(ARG(a, 0, unsigned long long)), *y = mem(ARG(a, 1, unsigned long long));
  float *out = mem(ARG(a, 2, unsigned long long));
  long long n = ARG(a, 3, long long);
  int kind = ARG(a, 4, int);
  for (long long i = 0; i < n; i++) out[i] = binary_value(kind, x[i], y[i]);
}

static void binary_bcast(void **a) {
  const float *x = mem(ARG(a, 0, unsigned long long)), *y = mem(ARG(a, 1, unsigned long long));
  float *out = mem(ARG(a, 2, unsigned long long));
  long long n = ARG(a, 3, long long);
  int kind = ARG(a, 4, int);
  const pni_cuda_bcast *g = a[5];
  for (long long i = 0; i < n; i++) {
    long long rest = i, xo = 0, yo = 0;
    for (int d = g->ndim - 1; d >= 0; d--) {
      long long q = rest / g->shape[d], k = rest - q * g->shape[d];
      xo += k * g->sa[d];
      yo += k * g->sb[d];
      rest = q;
    }
    out[i] = binary_value(kind, x[xo], y[yo]);
  }
}

static void axpby(void **a) {
  float *y = mem(ARG(a, 0, unsigned long long));
  const float *x = mem(ARG(a, 1, unsigned long long));
  long long n = ARG(a, 2, long long);
  float alpha = ARG(a, 3, float), beta = ARG(a, 4, float);
  for (long long i = 0; i < n; i++) y[i] = alpha * y[i] + beta * x[i];
}

int fakecuda_emulate(const char *name, void **params) {
  static const struct {
    const char *name;
    void (*run)(void **params);
  } kernels[] = {
      {"pn_fill_i64", fill_i64},
      {"pn_copy", copy},
      {"pn_unary_f32", unary},
      {"pn_binary_f32", binary},
      {"pn_binary_bcast_f32", binary_bcast},
      {"pn_axpby_f32", axpby},
  };
  for (size_t i = 0; i < sizeof kernels / sizeof kernels[0]; i++) {
    if (strcmp(kernels[i].name, name) != 0) continue;
    kernels[i].run(params);
    return 1;
  }
  return 0;
}
