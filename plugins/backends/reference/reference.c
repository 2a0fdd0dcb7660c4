/* The reference backend: plain C loops on one thread, written to be
 * obviously right rather than fast. Every other backend is tested against
 * it, op by op, so it favours clarity and accumulates in double. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <plugnet/plugin.h>

#include "ref_kernels.h"

/* ------------------------------------------------------------ device */

static pn_status ref_probe(void *ctx, char *why, size_t why_len) {
  (void)ctx;
  if (why && why_len) why[0] = '\0';
  return PN_OK;
}

static void *ref_alloc(void *ctx, size_t bytes) {
  (void)ctx;
  /* aligned_alloc wants a size that is a multiple of the alignment, and a
   * zero-size tensor still needs a distinct, freeable pointer. */
  size_t rounded = (bytes + 63) / 64 * 64;
  return aligned_alloc(64, rounded ? rounded : 64);
}

static void ref_free(void *ctx, void *mem) {
  (void)ctx;
  free(mem);
}

static void *ref_host_ptr(void *ctx, void *mem) {
  (void)ctx;
  return mem;
}

static int ref_threads(void *ctx) {
  (void)ctx;
  return 1;
}

static void ref_describe(void *ctx, char *buf, size_t n) {
  (void)ctx;
  if (n) snprintf(buf, n, "plain C loops, 1 thread (the oracle)");
}

static const pn_device_iface ref_iface = {
    .size = sizeof(pn_device_iface),
    .probe = ref_probe,
    .alloc = ref_alloc,
    .free = ref_free,
    .host_ptr = ref_host_ptr,
    .threads = ref_threads,
    .describe = ref_describe,
};

/* ------------------------------------------------------------ helpers */

static pn_status unsupported(const pn_op_args *a, const pn_tensor *t) {
  return pn_error(PN_ERR_UNSUPPORTED, "reference: op %s: dtype %s not supported", pn_op_name(a->op),
                  pn_dtype_name(t->dtype));
}

/* Advances a multi-index over `shape` in row-major order. */
static void next_index(int ndim, const int64_t *shape, int64_t *idx) {
  for (int d = ndim - 1; d >= 0; d--) {
    if (++idx[d] < shape[d]) return;
    idx[d] = 0;
  }
}

/* Offset in elements of `t` at the index of an `out_ndim`-dimensional
 * tensor it is broadcast to (numpy rules: right-aligned, size-1 repeats). */
static int64_t broadcast_offset(const pn_tensor *t, int out_ndim, const int64_t *idx) {
  int64_t off = 0;
  int shift = out_ndim - t->ndim;
  for (int d = 0; d < t->ndim; d++)
    if (t->shape[d] != 1) off += idx[d + shift] * t->stride[d];
  return off;
}

static int64_t strided_offset(const pn_tensor *t, const int64_t *idx) {
  int64_t off = 0;
  for (int d = 0; d < t->ndim; d++) off += idx[d] * t->stride[d];
  return off;
}

/* ------------------------------------------------------------ fill, random */

static pn_status ref_fill(void *dctx, const pn_op_args *a) {
  (void)dctx;
  pn_tensor *o = a->out;
  int64_t n = pn_tensor_numel(o);
  double v = a->p.alpha;
  void *p = pn_tensor_data(o);
  for (int64_t i = 0; i < n; i++) {
    switch (o->dtype) {
    case PN_F32: ((float *)p)[i] = (float)v; break;
    case PN_I32: ((int32_t *)p)[i] = (int32_t)v; break;
    case PN_I64: ((int64_t *)p)[i] = (int64_t)v; break;
    case PN_U8: ((uint8_t *)p)[i] = (uint8_t)v; break;
    default: return unsupported(a, o);
    }
  }
  return PN_OK;
}

static pn_status ref_random(void *dctx, const pn_op_args *a) {
  (void)dctx;
  pn_tensor *o = a->out;
  if (o->dtype != PN_F32) return unsupported(a, o);
  float *p = pn_tensor_data(o);
  int64_t n = pn_tensor_numel(o);
  for (int64_t i = 0; i < n; i++)
    p[i] = pn_random_value(a->p.kind, a->p.alpha, a->p.beta, a->p.seed, a->p.counter + (uint64_t)i);
  return PN_OK;
}

/* ------------------------------------------------------------ copy */

/* A value on its way between dtypes: integers travel as int64 and floats as
 * float, so that each conversion is the single C conversion src -> dst. */
typedef struct scalar {
  int is_float;
  float f;
  int64_t i;
} scalar;

static scalar load(pn_dtype dt, const void *p, int64_t off) {
  scalar s = {0, 0.0f, 0};
  switch (dt) {
  case PN_F32:
    s.is_float = 1;
    s.f = ((const float *)p)[off];
    break;
  case PN_I32: s.i = ((const int32_t *)p)[off]; break;
  case PN_I64: s.i = ((const int64_t *)p)[off]; break;
  case PN_U8: s.i = ((const uint8_t *)p)[off]; break;
  default: break;
  }
  return s;
}

static void store(pn_dtype dt, void *p, int64_t off, scalar s) {
  switch (dt) {
  case PN_F32: ((float *)p)[off] = s.is_float ? s.f : (float)s.i; break;
  case PN_I32:
    ((int32_t *)p)[off] =
        s.is_float ? (int32_t)pn_float_to_int(s.f, INT32_MIN, INT32_MAX) : (int32_t)s.i;
    break;
  case PN_I64:
    ((int64_t *)p)[off] = s.is_float ? pn_float_to_int(s.f, INT64_MIN, INT64_MAX) : s.i;
    break;
  case PN_U8:
    ((uint8_t *)p)[off] = s.is_float ? (uint8_t)pn_float_to_int(s.f, 0, 255) : (uint8_t)s.i;
    break;
  default: break;
  }
}

static int known_dtype(pn_dtype dt) {
  return dt == PN_F32 || dt == PN_I32 || dt == PN_I64 || dt == PN_U8;
}

static pn_status ref_copy(void *dctx, const pn_op_args *a) {
  (void)dctx;
  const pn_tensor *x = a->in[0];
  pn_tensor *o = a->out;
  if (!known_dtype(x->dtype)) return unsupported(a, x);
  if (!known_dtype(o->dtype)) return unsupported(a, o);
  if (pn_tensor_numel(x) != pn_tensor_numel(o))
    return pn_error(PN_ERR_SHAPE, "reference: copy: %lld elements into %lld",
                    (long long)pn_tensor_numel(x), (long long)pn_tensor_numel(o));
  const void *src = pn_tensor_data(x);
  void *dst = pn_tensor_data(o);
  int64_t n = pn_tensor_numel(o);
  int64_t idx[PN_MAX_DIMS] = {0};
  for (int64_t i = 0; i < n; i++) {
    store(o->dtype, dst, i, load(x->dtype, src, strided_offset(x, idx)));
    next_index(x->ndim, x->shape, idx);
  }
  return PN_OK;
}

/* ------------------------------------------------------------ unary */

static double unary_value(int kind, double x, double alpha, double beta) {
  switch (kind) {
  case PN_UNARY_NEG: return -x;
  case PN_UNARY_ABS: return fabs(x);
  case PN_UNARY_SIGN: return (x > 0) - (x < 0);
  case PN_UNARY_EXP: return exp(x);
  case PN_UNARY_LOG: return log(x);
  case PN_UNARY_SQRT: return sqrt(x);
  case PN_UNARY_SQUARE: return x * x;
  case PN_UNARY_RECIP: return 1.0 / x;
  case PN_UNARY_RELU: return x > 0 ? x : 0.0;
  case PN_UNARY_STEP: return x > 0 ? 1.0 : 0.0;
  case PN_UNARY_SIGMOID: return 1.0 / (1.0 + exp(-x));
  case PN_UNARY_TANH: return tanh(x);
  case PN_UNARY_AFFINE: return alpha * x + beta;
  /* Bounds in f32, as PyTorch converts them to the tensor's dtype. */
  case PN_UNARY_CLAMP: { /* min(max(x, lo), hi): NaN stays NaN, hi wins when lo > hi */
    double t = x < (float)alpha ? (float)alpha : x;
    return t > (float)beta ? (float)beta : t;
  }
  case PN_UNARY_INSIDE: return x > (float)alpha && x < (float)beta ? 1.0 : 0.0;
  default: return NAN;
  }
}

static pn_status ref_unary(void *dctx, const pn_op_args *a) {
  (void)dctx;
  const pn_tensor *x = a->in[0];
  pn_tensor *o = a->out;
  if (x->dtype != PN_F32) return unsupported(a, x);
  if (o->dtype != PN_F32) return unsupported(a, o);
  if (a->p.kind < 0 || a->p.kind >= PN_UNARY_COUNT)
    return pn_error(PN_ERR_UNSUPPORTED, "reference: unary kind %d unknown", a->p.kind);
  const float *xp = pn_tensor_data(x);
  float *op = pn_tensor_data(o);
  int64_t n = pn_tensor_numel(o);
  for (int64_t i = 0; i < n; i++)
    op[i] = (float)unary_value(a->p.kind, xp[i], a->p.alpha, a->p.beta);
  return PN_OK;
}

/* ------------------------------------------------------------ binary */

/* In float, so that EQ, GT, MAX and MIN compare exactly what they are given. */
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

static pn_status check_broadcast(const pn_tensor *t, const pn_tensor *o) {
  int shift = o->ndim - t->ndim;
  int ok = shift >= 0;
  for (int d = 0; ok && d < t->ndim; d++)
    ok = t->shape[d] == 1 || t->shape[d] == o->shape[d + shift];
  if (ok) return PN_OK;
  return pn_error(PN_ERR_SHAPE, "reference: binary: an input does not broadcast to the output");
}

static pn_status ref_binary(void *dctx, const pn_op_args *a) {
  (void)dctx;
  const pn_tensor *x = a->in[0], *y = a->in[1];
  pn_tensor *o = a->out;
  if (x->dtype != PN_F32) return unsupported(a, x);
  if (y->dtype != PN_F32) return unsupported(a, y);
  if (o->dtype != PN_F32) return unsupported(a, o);
  if (a->p.kind < 0 || a->p.kind >= PN_BINARY_COUNT)
    return pn_error(PN_ERR_UNSUPPORTED, "reference: binary kind %d unknown", a->p.kind);
  PN_TRY(check_broadcast(x, o));
  PN_TRY(check_broadcast(y, o));
  const float *xp = pn_tensor_data(x), *yp = pn_tensor_data(y);
  float *op = pn_tensor_data(o);
  int64_t n = pn_tensor_numel(o);
  int64_t idx[PN_MAX_DIMS] = {0};
  for (int64_t i = 0; i < n; i++) {
    float xv = xp[broadcast_offset(x, o->ndim, idx)];
    float yv = yp[broadcast_offset(y, o->ndim, idx)];
    op[i] = binary_value(a->p.kind, xv, yv);
    next_index(o->ndim, o->shape, idx);
  }
  return PN_OK;
}

/* ------------------------------------------------------------ matmul */

static pn_status ref_matmul(void *dctx, const pn_op_args *a) {
  (void)dctx;
  const pn_tensor *x = a->in[0], *y = a->in[1];
  pn_tensor *o = a->out;
  if (x->dtype != PN_F32) return unsupported(a, x);
  if (y->dtype != PN_F32) return unsupported(a, y);
  if (o->dtype != PN_F32) return unsupported(a, o);
  if (x->ndim != 2 || y->ndim != 2 || o->ndim != 2)
    return pn_error(PN_ERR_SHAPE, "reference: matmul needs 2-D tensors");
  int64_t m = o->shape[0], n = o->shape[1];
  int64_t k = a->p.trans_a ? x->shape[0] : x->shape[1];
  int64_t xm = a->p.trans_a ? x->shape[1] : x->shape[0];
  int64_t yk = a->p.trans_b ? y->shape[1] : y->shape[0];
  int64_t yn = a->p.trans_b ? y->shape[0] : y->shape[1];
  if (xm != m || yk != k || yn != n)
    return pn_error(PN_ERR_SHAPE, "reference: matmul: shapes do not fit");
  const float *xp = pn_tensor_data(x), *yp = pn_tensor_data(y);
  float *op = pn_tensor_data(o);
  for (int64_t i = 0; i < m; i++) {
    for (int64_t j = 0; j < n; j++) {
      double acc = 0.0;
      for (int64_t l = 0; l < k; l++) {
        double xv = a->p.trans_a ? xp[l * x->stride[0] + i * x->stride[1]]
                                 : xp[i * x->stride[0] + l * x->stride[1]];
        double yv = a->p.trans_b ? yp[j * y->stride[0] + l * y->stride[1]]
                                 : yp[l * y->stride[0] + j * y->stride[1]];
        acc += xv * yv;
      }
      op[i * n + j] = (float)acc;
    }
  }
  return PN_OK;
}

/* ------------------------------------------------------------ reduce */

typedef struct reduce_acc {
  double sum, best;
  int64_t count;
} reduce_acc;

static void reduce_add(reduce_acc *r, int kind, double v) {
  if (r->count == 0)
    r->best = v;
  else if (kind == PN_REDUCE_MAX && v > r->best)
    r->best = v;
  else if (kind == PN_REDUCE_MIN && v < r->best)
    r->best = v;
  r->sum += v;
  r->count++;
}

static float reduce_result(const reduce_acc *r, int kind) {
  switch (kind) {
  case PN_REDUCE_SUM: return (float)r->sum;
  case PN_REDUCE_MEAN: return r->count ? (float)(r->sum / (double)r->count) : NAN;
  case PN_REDUCE_MAX: return r->count ? (float)r->best : -INFINITY;
  default: return r->count ? (float)r->best : INFINITY;
  }
}

/* Linear index into the (contiguous) output of an input index: the reduced
 * dimensions drop out. With or without keepdim the layout is the same. */
static int64_t reduce_out_index(const pn_tensor *x, uint32_t axes, const int64_t *idx) {
  int64_t lin = 0;
  for (int d = 0; d < x->ndim; d++)
    if (!(axes >> d & 1u)) lin = lin * x->shape[d] + idx[d];
  return lin;
}

static pn_status ref_reduce(void *dctx, const pn_op_args *a) {
  (void)dctx;
  const pn_tensor *x = a->in[0];
  pn_tensor *o = a->out;
  if (x->dtype != PN_F32) return unsupported(a, x);
  if (o->dtype != PN_F32) return unsupported(a, o);
  if (a->p.kind < 0 || a->p.kind >= PN_REDUCE_COUNT)
    return pn_error(PN_ERR_UNSUPPORTED, "reference: reduce kind %d unknown", a->p.kind);
  uint32_t axes = x->ndim >= 32 ? a->p.axes : a->p.axes & ((1u << x->ndim) - 1u);
  int64_t n_out = 1;
  for (int d = 0; d < x->ndim; d++)
    if (!(axes >> d & 1u)) n_out *= x->shape[d];
  if (n_out != pn_tensor_numel(o))
    return pn_error(PN_ERR_SHAPE, "reference: reduce: output has %lld elements, expected %lld",
                    (long long)pn_tensor_numel(o), (long long)n_out);
  reduce_acc *acc = calloc((size_t)(n_out ? n_out : 1), sizeof *acc);
  if (!acc) return pn_error(PN_ERR_NOMEM, "reference: reduce: out of memory");
  const float *xp = pn_tensor_data(x);
  int64_t n = pn_tensor_numel(x);
  int64_t idx[PN_MAX_DIMS] = {0};
  for (int64_t i = 0; i < n; i++) {
    reduce_add(&acc[reduce_out_index(x, axes, idx)], a->p.kind, xp[strided_offset(x, idx)]);
    next_index(x->ndim, x->shape, idx);
  }
  float *op = pn_tensor_data(o);
  for (int64_t i = 0; i < n_out; i++) op[i] = reduce_result(&acc[i], a->p.kind);
  free(acc);
  return PN_OK;
}

/* ------------------------------------------------------------ softmax */

static pn_status softmax_common(const pn_op_args *a, int want_log) {
  const pn_tensor *x = a->in[0];
  pn_tensor *o = a->out;
  if (x->dtype != PN_F32) return unsupported(a, x);
  if (o->dtype != PN_F32) return unsupported(a, o);
  int axis = a->p.axis;
  if (axis < 0 || axis >= x->ndim)
    return pn_error(PN_ERR_INVALID, "reference: %s: axis %d out of range for %d dims",
                    pn_op_name(a->op), axis, x->ndim);
  int64_t outer = 1, inner = 1, len = x->shape[axis];
  for (int d = 0; d < axis; d++) outer *= x->shape[d];
  for (int d = axis + 1; d < x->ndim; d++) inner *= x->shape[d];
  const float *xp = pn_tensor_data(x);
  float *op = pn_tensor_data(o);
  for (int64_t i = 0; i < outer; i++) {
    for (int64_t j = 0; j < inner; j++) {
      const float *row = xp + i * len * inner + j;
      float *out = op + i * len * inner + j;
      double m = -INFINITY, s = 0.0;
      for (int64_t l = 0; l < len; l++)
        if (row[l * inner] > m) m = row[l * inner];
      for (int64_t l = 0; l < len; l++) s += exp(row[l * inner] - m);
      for (int64_t l = 0; l < len; l++) {
        double z = row[l * inner] - m;
        out[l * inner] = (float)(want_log ? z - log(s) : exp(z) / s);
      }
    }
  }
  return PN_OK;
}

static pn_status ref_softmax(void *dctx, const pn_op_args *a) {
  (void)dctx;
  return softmax_common(a, 0);
}

static pn_status ref_log_softmax(void *dctx, const pn_op_args *a) {
  (void)dctx;
  return softmax_common(a, 1);
}

/* ------------------------------------------------------------ plugin */

static pn_status ref_init(pn_plugin_ctx *ctx) {
  static const struct {
    int op;
    pn_kernel_fn fn;
  } kernels[] = {
      {PN_OP_FILL, ref_fill},
      {PN_OP_RANDOM, ref_random},
      {PN_OP_COPY, ref_copy},
      {PN_OP_UNARY, ref_unary},
      {PN_OP_BINARY, ref_binary},
      {PN_OP_MATMUL, ref_matmul},
      {PN_OP_REDUCE, ref_reduce},
      {PN_OP_SOFTMAX, ref_softmax},
      {PN_OP_LOG_SOFTMAX, ref_log_softmax},
      {PN_OP_CONV2D, pni_ref_conv2d},
      {PN_OP_CONV2D_GRAD_INPUT, pni_ref_conv2d_grad_input},
      {PN_OP_CONV2D_GRAD_WEIGHT, pni_ref_conv2d_grad_weight},
      {PN_OP_POOL2D, pni_ref_pool2d},
      {PN_OP_POOL2D_GRAD, pni_ref_pool2d_grad},
      {PN_OP_CHANNEL_STATS, pni_ref_channel_stats},
      {PN_OP_CHANNEL_AFFINE, pni_ref_channel_affine},
      {PN_OP_CHANNEL_GRAD_STATS, pni_ref_channel_grad_stats},
      {PN_OP_CONCAT, pni_ref_concat},
      {PN_OP_AXPBY, pni_ref_axpby},
  };
  PN_TRY(pn_plugin_add_device(ctx, "reference", "reference", &ref_iface, NULL));
  for (size_t i = 0; i < sizeof kernels / sizeof kernels[0]; i++)
    PN_TRY(pn_plugin_add_kernel(ctx, "reference", pn_op_name(kernels[i].op), kernels[i].fn));
  return PN_OK;
}

PN_PLUGIN_DEFINE("reference", "0.1.0", ref_init, NULL);
