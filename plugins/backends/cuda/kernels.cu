// The cuda backend's kernels, compiled by nvcc to PTX at build time and
// embedded in the plugin (see Makefile.am); cuda_kernels.c launches them.
// Every kernel is a grid-stride loop over n elements, so any grid size is
// correct. Semantics follow the reference backend (the oracle): the same
// value formulas, and float-to-integer copies truncating toward zero,
// saturating, NaN to 0.
#include <plugnet/op.h>

#include "cuda_abi.h"

#define FOR_EACH(i, n)                                                                             \
  for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < (n);                    \
       i += (long long)blockDim.x * gridDim.x)

extern "C" __global__ void pn_fill_i64(long long *out, long long value, long long n) {
  FOR_EACH(i, n) out[i] = value;
}

// ------------------------------------------------------------ copy

// A value on its way between dtypes: integers travel as 64-bit integers and
// floats as float, so each conversion is the single C conversion src -> dst.
struct scalar {
  bool is_float;
  float f;
  long long i;
};

__device__ static scalar load(int dt, const void *p, long long off) {
  scalar s = {false, 0.0f, 0};
  switch (dt) {
  case PNI_CUDA_F32:
    s.is_float = true;
    s.f = ((const float *)p)[off];
    break;
  case PNI_CUDA_I32: s.i = ((const int *)p)[off]; break;
  case PNI_CUDA_I64: s.i = ((const long long *)p)[off]; break;
  case PNI_CUDA_U8: s.i = ((const unsigned char *)p)[off]; break;
  }
  return s;
}

__device__ static long long float_to_int(float v, long long lo, long long hi) {
  if (v != v) return 0;
  if (v <= (float)lo) return lo;
  if (v >= (float)hi) return hi;
  return (long long)v;
}

__device__ static void store(int dt, void *p, long long off, scalar s) {
  switch (dt) {
  case PNI_CUDA_F32: ((float *)p)[off] = s.is_float ? s.f : (float)s.i; break;
  case PNI_CUDA_I32:
    ((int *)p)[off] =
        s.is_float ? (int)float_to_int(s.f, -2147483647LL - 1, 2147483647LL) : (int)s.i;
    break;
  case PNI_CUDA_I64:
    ((long long *)p)[off] =
        s.is_float ? float_to_int(s.f, -9223372036854775807LL - 1, 9223372036854775807LL) : s.i;
    break;
  case PNI_CUDA_U8:
    ((unsigned char *)p)[off] =
        s.is_float ? (unsigned char)float_to_int(s.f, 0, 255) : (unsigned char)s.i;
    break;
  }
}

// Offset of row-major element i of a strided view.
__device__ static long long strided_offset(const pni_cuda_strided &g, long long i) {
  long long off = 0;
  for (int d = g.ndim - 1; d >= 0; d--) {
    long long q = i / g.shape[d];
    off += (i - q * g.shape[d]) * g.stride[d];
    i = q;
  }
  return off;
}

extern "C" __global__ void pn_copy(const void *src, int src_dtype, void *dst, int dst_dtype,
                                   long long n, pni_cuda_strided g) {
  FOR_EACH(i, n) store(dst_dtype, dst, i, load(src_dtype, src, strided_offset(g, i)));
}

// ------------------------------------------------------------ unary

__device__ static float unary_value(int kind, float x, float alpha, float beta) {
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
  case PN_UNARY_CLAMP: { // NaN stays NaN; hi wins when lo > hi
    float t = x < alpha ? alpha : x;
    return t > beta ? beta : t;
  }
  case PN_UNARY_INSIDE: return x > alpha && x < beta ? 1.0f : 0.0f;
  default: return __int_as_float(0x7fc00000); // NaN
  }
}

extern "C" __global__ void pn_unary_f32(const float *x, float *out, long long n, int kind,
                                        float alpha, float beta) {
  FOR_EACH(i, n) out[i] = unary_value(kind, x[i], alpha, beta);
}

// ------------------------------------------------------------ binary

__device__ static float binary_value(int kind, float x, float y) {
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
  default: return __int_as_float(0x7fc00000);
  }
}

// Inputs with the output's shape: no index arithmetic.
extern "C" __global__ void pn_binary_f32(const float *x, const float *y, float *out, long long n,
                                         int kind) {
  FOR_EACH(i, n) out[i] = binary_value(kind, x[i], y[i]);
}

extern "C" __global__ void pn_binary_bcast_f32(const float *x, const float *y, float *out,
                                               long long n, int kind, pni_cuda_bcast g) {
  FOR_EACH(i, n) {
    long long rest = i, xo = 0, yo = 0;
    for (int d = g.ndim - 1; d >= 0; d--) {
      long long q = rest / g.shape[d], k = rest - q * g.shape[d];
      xo += k * g.sa[d];
      yo += k * g.sb[d];
      rest = q;
    }
    out[i] = binary_value(kind, x[xo], y[yo]);
  }
}

// ------------------------------------------------------------ axpby

// In place: y = alpha*y + beta*x (running statistics, optimizer state).
extern "C" __global__ void pn_axpby_f32(float *y, const float *x, long long n, float alpha,
                                        float beta) {
  FOR_EACH(i, n) y[i] = alpha * y[i] + beta * x[i];
}
