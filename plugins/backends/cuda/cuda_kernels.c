/* The launching side of the cuda backend's kernels (kernels.cu): each op
 * checks its arguments as the reference backend does, packs them, and
 * queues one kernel on the device's stream. Work the driver can do alone
 * (fills with a repeated byte or 32-bit word, contiguous copies) uses
 * memset and memcpy instead. Dtypes and kinds without a kernel return
 * PN_ERR_UNSUPPORTED, so the core runs that op on another backend. */
#include <limits.h>
#include <string.h>

#include <plugnet/plugin.h>

#include "cuda_abi.h"
#include "cuda_dev.h"

_Static_assert((int)PNI_CUDA_F32 == (int)PN_F32 && (int)PNI_CUDA_I32 == (int)PN_I32 &&
                   (int)PNI_CUDA_I64 == (int)PN_I64 && (int)PNI_CUDA_U8 == (int)PN_U8,
               "kernels.cu's dtype codes must equal pn_dtype");
_Static_assert(PNI_CUDA_MAX_DIMS == PN_MAX_DIMS, "kernel shapes hold PN_MAX_DIMS dims");

/* Entry names in kernels.cu (extern "C", so unmangled), by PNI_CUDA_K_*. */
static const char *const kernel_names[PNI_CUDA_K_COUNT] = {
    "pn_fill_i64",         "pn_copy",      "pn_unary_f32", "pn_binary_f32",
    "pn_binary_bcast_f32", "pn_axpby_f32",
};

int pni_cuda_have_kernels(void) { return pni_cuda_ptx[0] != '\0'; }

/* The driver compiles the PTX for the device here; a driver older than the
 * nvcc that made it refuses it (CUDA_ERROR_UNSUPPORTED_PTX_VERSION). */
pn_status pni_cuda_kernels_load(pni_cuda_dev *d) {
  const pni_cu_api *cu = pni_cu_get();
  pn_status s = pni_cu_check(cu->ModuleLoadData(&d->module, pni_cuda_ptx), "cuModuleLoadData");
  if (s != PN_OK)
    return pn_error_prefix(
        s, "loading kernels built for %s (is the driver older than nvcc?): ", pni_cuda_ptx_arch);
  for (int k = 0; k < PNI_CUDA_K_COUNT; k++) {
    s = pni_cu_check(cu->ModuleGetFunction(&d->fn[k], d->module, kernel_names[k]),
                     "cuModuleGetFunction");
    if (s != PN_OK) return pn_error_prefix(s, "kernel %s: ", kernel_names[k]);
  }
  return PN_OK;
}

/* ------------------------------------------------------------ launching */

/* Grid-stride kernels: enough blocks to fill every SM several times over,
 * no more, so huge tensors do not pay for millions of tiny blocks. */
static pn_status launch(pni_cuda_dev *d, int k, long long n, void **params) {
  long long blocks = (n + PNI_CUDA_BLOCK - 1) / PNI_CUDA_BLOCK;
  long long cap = (long long)d->sms * 16;
  if (blocks > cap) blocks = cap;
  if (blocks < 1) blocks = 1;
  pni_cu_result r = pni_cu_get()->LaunchKernel(d->fn[k], (unsigned)blocks, 1, 1, PNI_CUDA_BLOCK, 1,
                                               1, 0, d->stream, params, NULL);
  if (r == PNI_CU_SUCCESS) return PN_OK;
  return pn_error_prefix(pni_cu_check(r, "cuLaunchKernel"), "%s: ", kernel_names[k]);
}

static pn_status unsupported(const pn_op_args *a, const pn_tensor *t) {
  return pn_error(PN_ERR_UNSUPPORTED, "cuda: op %s: dtype %s not supported", pn_op_name(a->op),
                  pn_dtype_name(t->dtype));
}

static int is_f32(const pn_tensor *t) { return t->dtype == PN_F32; }

pn_status pni_cuda_memset(pni_cuda_dev *d, pni_cu_ptr dst, unsigned char byte, size_t n) {
  PN_TRY(pni_cuda_enter(d));
  return pni_cu_check(pni_cu_get()->MemsetD8Async(dst, byte, n, d->stream), "cuMemsetD8Async");
}

/* ------------------------------------------------------------ fill */

static int all_bytes_equal(const void *p, size_t n) {
  const unsigned char *b = p;
  for (size_t i = 1; i < n; i++)
    if (b[i] != b[0]) return 0;
  return 1;
}

/* The value as the reference backend converts it, in the tensor's dtype. */
static int fill_pattern(pn_dtype dt, double v, unsigned char bytes[8]) {
  float f = (float)v;
  int32_t i32 = (int32_t)v;
  int64_t i64 = (int64_t)v;
  uint8_t u8 = (uint8_t)v;
  switch (dt) {
  case PN_F32: memcpy(bytes, &f, 4); return 4;
  case PN_I32: memcpy(bytes, &i32, 4); return 4;
  case PN_I64: memcpy(bytes, &i64, 8); return 8;
  case PN_U8: bytes[0] = u8; return 1;
  default: return 0;
  }
}

static pn_status cuda_fill(void *dctx, const pn_op_args *a) {
  pni_cuda_dev *d = dctx;
  pn_tensor *o = a->out;
  unsigned char bytes[8];
  int width = fill_pattern(o->dtype, a->p.alpha, bytes);
  size_t n = (size_t)pn_tensor_numel(o);
  if (!width) return unsupported(a, o);
  if (n == 0) return PN_OK;
  PN_TRY(pni_cuda_enter(d));
  pni_cu_ptr dst = pni_cuda_tensor_ptr(o);
  const pni_cu_api *cu = pni_cu_get();
  if (all_bytes_equal(bytes, (size_t)width))
    return pni_cuda_memset(d, dst, bytes[0], n * (size_t)width);
  unsigned word;
  memcpy(&word, bytes, 4);
  if (width == 4)
    return pni_cu_check(cu->MemsetD32Async(dst, word, n, d->stream), "cuMemsetD32Async");
  if (memcmp(bytes, bytes + 4, 4) == 0) /* an int64 whose halves agree, e.g. -1 */
    return pni_cu_check(cu->MemsetD32Async(dst, word, 2 * n, d->stream), "cuMemsetD32Async");
  long long value, count = (long long)n;
  memcpy(&value, bytes, 8);
  void *params[] = {&dst, &value, &count};
  return launch(d, PNI_CUDA_K_FILL_I64, count, params);
}

/* ------------------------------------------------------------ copy */

static int known_dtype(pn_dtype dt) {
  return dt == PN_F32 || dt == PN_I32 || dt == PN_I64 || dt == PN_U8;
}

static pn_status cuda_copy(void *dctx, const pn_op_args *a) {
  pni_cuda_dev *d = dctx;
  const pn_tensor *x = a->in[0];
  pn_tensor *o = a->out;
  if (!known_dtype(x->dtype)) return unsupported(a, x);
  if (!known_dtype(o->dtype)) return unsupported(a, o);
  long long n = pn_tensor_numel(o);
  if (pn_tensor_numel(x) != n)
    return pn_error(PN_ERR_SHAPE, "cuda: copy: %lld elements into %lld",
                    (long long)pn_tensor_numel(x), n);
  if (n == 0) return PN_OK;
  PN_TRY(pni_cuda_enter(d));
  pni_cu_ptr src = pni_cuda_tensor_ptr(x), dst = pni_cuda_tensor_ptr(o);
  if (x->dtype == o->dtype && pn_tensor_is_contiguous(x))
    return pni_cu_check(pni_cu_get()->MemcpyDtoDAsync(dst, src, pn_tensor_nbytes(o), d->stream),
                        "cuMemcpyDtoDAsync");
  pni_cuda_strided g = {.ndim = x->ndim};
  for (int i = 0; i < x->ndim; i++) {
    g.shape[i] = x->shape[i];
    g.stride[i] = x->stride[i];
  }
  int sdt = x->dtype, ddt = o->dtype;
  void *params[] = {&src, &sdt, &dst, &ddt, &n, &g};
  return launch(d, PNI_CUDA_K_COPY, n, params);
}

/* ------------------------------------------------------------ unary, axpby */

static pn_status cuda_unary(void *dctx, const pn_op_args *a) {
  pni_cuda_dev *d = dctx;
  const pn_tensor *x = a->in[0];
  pn_tensor *o = a->out;
  if (!is_f32(x)) return unsupported(a, x);
  if (!is_f32(o)) return unsupported(a, o);
  if (a->p.kind < 0 || a->p.kind >= PN_UNARY_COUNT)
    return pn_error(PN_ERR_UNSUPPORTED, "cuda: unary kind %d unknown", a->p.kind);
  long long n = pn_tensor_numel(o);
  if (pn_tensor_numel(x) != n) return pn_error(PN_ERR_SHAPE, "cuda: unary: sizes differ");
  if (n == 0) return PN_OK;
  PN_TRY(pni_cuda_enter(d));
  pni_cu_ptr src = pni_cuda_tensor_ptr(x), dst = pni_cuda_tensor_ptr(o);
  int kind = a->p.kind;
  float alpha = (float)a->p.alpha, beta = (float)a->p.beta;
  void *params[] = {&src, &dst, &n, &kind, &alpha, &beta};
  return launch(d, PNI_CUDA_K_UNARY, n, params);
}

/* In place: in[0] = alpha*in[0] + beta*in[1]. */
static pn_status cuda_axpby(void *dctx, const pn_op_args *a) {
  pni_cuda_dev *d = dctx;
  if (a->n_in != 2 || !(a->written & 1u))
    return pn_error(PN_ERR_SHAPE, "cuda: axpby needs 2 inputs, the first written");
  if (!is_f32(a->in[0])) return unsupported(a, a->in[0]);
  if (!is_f32(a->in[1])) return unsupported(a, a->in[1]);
  long long n = pn_tensor_numel(a->in[0]);
  if (pn_tensor_numel(a->in[1]) != n) return pn_error(PN_ERR_SHAPE, "cuda: axpby: sizes differ");
  if (n == 0) return PN_OK;
  PN_TRY(pni_cuda_enter(d));
  pni_cu_ptr y = pni_cuda_tensor_ptr(a->in[0]), x = pni_cuda_tensor_ptr(a->in[1]);
  float alpha = (float)a->p.alpha, beta = (float)a->p.beta;
  void *params[] = {&y, &x, &n, &alpha, &beta};
  return launch(d, PNI_CUDA_K_AXPBY, n, params);
}

/* ------------------------------------------------------------ binary */

/* Strides of `t` over the output's dimensions (numpy rules: right-aligned,
 * size-1 and missing dimensions repeat). */
static pn_status broadcast_strides(const pn_tensor *t, const pn_tensor *o, long long *st) {
  int shift = o->ndim - t->ndim;
  if (shift < 0) return pn_error(PN_ERR_SHAPE, "cuda: binary: an input has more dims than out");
  for (int d = 0; d < o->ndim; d++) {
    int td = d - shift;
    st[d] = 0;
    if (td < 0 || t->shape[td] == 1) continue;
    if (t->shape[td] != o->shape[d])
      return pn_error(PN_ERR_SHAPE, "cuda: binary: an input does not broadcast to the output");
    st[d] = t->stride[td];
  }
  return PN_OK;
}

static int same_shape(const pn_tensor *t, const pn_tensor *o) {
  if (t->ndim != o->ndim) return 0;
  for (int d = 0; d < o->ndim; d++)
    if (t->shape[d] != o->shape[d]) return 0;
  return 1;
}

static pn_status cuda_binary(void *dctx, const pn_op_args *a) {
  pni_cuda_dev *d = dctx;
  const pn_tensor *x = a->in[0], *y = a->in[1];
  pn_tensor *o = a->out;
  if (!is_f32(x)) return unsupported(a, x);
  if (!is_f32(y)) return unsupported(a, y);
  if (!is_f32(o)) return unsupported(a, o);
  if (a->p.kind < 0 || a->p.kind >= PN_BINARY_COUNT)
    return pn_error(PN_ERR_UNSUPPORTED, "cuda: binary kind %d unknown", a->p.kind);
  pni_cuda_bcast g = {.ndim = o->ndim};
  PN_TRY(broadcast_strides(x, o, g.sa));
  PN_TRY(broadcast_strides(y, o, g.sb));
  long long n = pn_tensor_numel(o);
  if (n == 0) return PN_OK;
  PN_TRY(pni_cuda_enter(d));
  pni_cu_ptr xp = pni_cuda_tensor_ptr(x), yp = pni_cuda_tensor_ptr(y), op = pni_cuda_tensor_ptr(o);
  int kind = a->p.kind;
  if (same_shape(x, o) && same_shape(y, o)) {
    void *params[] = {&xp, &yp, &op, &n, &kind};
    return launch(d, PNI_CUDA_K_BINARY, n, params);
  }
  for (int i = 0; i < o->ndim; i++) g.shape[i] = o->shape[i];
  void *params[] = {&xp, &yp, &op, &n, &kind, &g};
  return launch(d, PNI_CUDA_K_BINARY_BCAST, n, params);
}

/* ------------------------------------------------------------ registration */

pn_status pni_cuda_kernels_register(pn_plugin_ctx *ctx) {
  static const struct {
    int op;
    pn_kernel_fn fn;
  } kernels[] = {
      {PN_OP_FILL, cuda_fill},     {PN_OP_COPY, cuda_copy},   {PN_OP_UNARY, cuda_unary},
      {PN_OP_BINARY, cuda_binary}, {PN_OP_AXPBY, cuda_axpby}, {PN_OP_MATMUL, pni_cuda_matmul},
  };
  for (size_t i = 0; i < sizeof kernels / sizeof kernels[0]; i++)
    PN_TRY(pn_plugin_add_kernel(ctx, "cuda", pn_op_name(kernels[i].op), kernels[i].fn));
  return PN_OK;
}
