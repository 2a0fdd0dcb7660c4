/* Matrix products through cuBLAS, opened with dlopen at the first matmul
 * so that the plugin needs no CUDA toolkit to build and runs without
 * cuBLAS (matmul then falls back to another backend, logged by the core).
 * cuBLAS attaches to the current context, which is the device's primary
 * context, and queues on the device's stream, so its products are ordered
 * with our kernels. */
#include <dlfcn.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cuda_dev.h"

/* cuBLAS's documented ABI: statuses are int enums (0 = success), handles
 * opaque pointers, cublasOperation_t 0 = N and 1 = T. */
enum { BLAS_SUCCESS = 0, BLAS_OP_N = 0, BLAS_OP_T = 1 };
typedef int (*blas_create_fn)(void **handle);
typedef int (*blas_destroy_fn)(void *handle);
typedef int (*blas_set_stream_fn)(void *handle, pni_cu_stream stream);
typedef int (*blas_sgemm_fn)(void *handle, int transa, int transb, int m, int n, int k,
                             const float *alpha, const float *a, int lda, const float *b, int ldb,
                             const float *beta, float *c, int ldc);

static struct {
  blas_create_fn create;
  blas_destroy_fn destroy;
  blas_set_stream_fn set_stream;
  blas_sgemm_fn sgemm;
  char status[160];
  int usable;
} blas;

static pthread_once_t blas_once = PTHREAD_ONCE_INIT;

static int resolve(void *lib) {
  /* POSIX guarantees that function and data pointers convert this way. */
  void *create = dlsym(lib, "cublasCreate_v2"), *destroy = dlsym(lib, "cublasDestroy_v2");
  void *set_stream = dlsym(lib, "cublasSetStream_v2"), *sgemm = dlsym(lib, "cublasSgemm_v2");
  if (!create || !destroy || !set_stream || !sgemm) return 0;
  memcpy(&blas.create, &create, sizeof create);
  memcpy(&blas.destroy, &destroy, sizeof destroy);
  memcpy(&blas.set_stream, &set_stream, sizeof set_stream);
  memcpy(&blas.sgemm, &sgemm, sizeof sgemm);
  return 1;
}

/* Newest first: a cuBLAS must not be newer than the driver supports, but
 * any installed one is worth a try; cublasCreate reports a mismatch. */
static void open_blas(void) {
  static const char *const names[] = {"libcublas.so.13", "libcublas.so.12", "libcublas.so.11",
                                      "libcublas.so"};
  const char *env = getenv("PLUGNET_LIBCUBLAS");
  snprintf(blas.status, sizeof blas.status, "not found (matmul falls back)");
  for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
    const char *name = env && *env ? env : names[i];
    void *lib = dlopen(name, RTLD_NOW | RTLD_LOCAL);
    if (lib && resolve(lib)) {
      snprintf(blas.status, sizeof blas.status, "%s", name);
      blas.usable = 1;
      return;
    }
    if (lib) dlclose(lib);
    if (env && *env) break;
  }
}

const char *pni_cuda_blas_status(void) {
  pthread_once(&blas_once, open_blas);
  return blas.status;
}

/* One handle per device, made under the device's lock the first time. */
static pn_status device_handle(pni_cuda_dev *d, void **out) {
  pn_status s = PN_OK;
  pthread_mutex_lock(&d->lock);
  if (!d->blas) {
    int r = blas.create(&d->blas);
    if (r == BLAS_SUCCESS) r = blas.set_stream(d->blas, d->stream);
    if (r != BLAS_SUCCESS) {
      if (d->blas) blas.destroy(d->blas);
      d->blas = NULL;
      s = pn_error(PN_ERR_UNSUPPORTED, "cuda: cuBLAS (%s) failed to start: status %d", blas.status,
                   r);
    }
  }
  *out = d->blas;
  pthread_mutex_unlock(&d->lock);
  return s;
}

static int fits_int(const pn_tensor *t) {
  for (int i = 0; i < t->ndim; i++)
    if (t->shape[i] > INT_MAX) return 0;
  return 1;
}

static pn_status check_matmul(const pn_op_args *a) {
  const pn_tensor *x = a->in[0], *y = a->in[1], *o = a->out;
  if (x->dtype != PN_F32 || y->dtype != PN_F32 || o->dtype != PN_F32)
    return pn_error(PN_ERR_UNSUPPORTED, "cuda: matmul: f32 only");
  if (x->ndim != 2 || y->ndim != 2 || o->ndim != 2)
    return pn_error(PN_ERR_SHAPE, "cuda: matmul needs 2-D tensors");
  if (!pn_tensor_is_contiguous(x) || !pn_tensor_is_contiguous(y) || !fits_int(x) || !fits_int(y) ||
      !fits_int(o))
    return pn_error(PN_ERR_UNSUPPORTED, "cuda: matmul: strided or oversized operands");
  int64_t k = a->p.trans_a ? x->shape[0] : x->shape[1];
  int64_t xm = a->p.trans_a ? x->shape[1] : x->shape[0];
  int64_t yk = a->p.trans_b ? y->shape[1] : y->shape[0];
  int64_t yn = a->p.trans_b ? y->shape[0] : y->shape[1];
  if (xm != o->shape[0] || yk != k || yn != o->shape[1])
    return pn_error(PN_ERR_SHAPE, "cuda: matmul: shapes do not fit");
  return PN_OK;
}

/* cuBLAS is column-major: a row-major M x N product is the column-major
 * N x M product with the operands swapped, out^T = op(y)^T op(x)^T, and a
 * row-major matrix read column-major is already its transpose. */
pn_status pni_cuda_matmul(void *dctx, const pn_op_args *a) {
  pni_cuda_dev *d = dctx;
  const pn_tensor *x = a->in[0], *y = a->in[1];
  pn_tensor *o = a->out;
  void *h = NULL;
  PN_TRY(check_matmul(a));
  pni_cuda_blas_status(); /* opens cuBLAS once */
  if (!blas.usable) return pn_error(PN_ERR_UNSUPPORTED, "cuda: matmul: cuBLAS %s", blas.status);
  int m = (int)o->shape[0], n = (int)o->shape[1];
  int k = (int)(a->p.trans_a ? x->shape[0] : x->shape[1]);
  if (m == 0 || n == 0) return PN_OK;
  PN_TRY(pni_cuda_enter(d));
  /* An empty sum; cuBLAS would refuse the zero leading dimensions. */
  if (k == 0) return pni_cuda_memset(d, pni_cuda_tensor_ptr(o), 0, pn_tensor_nbytes(o));
  PN_TRY(device_handle(d, &h));
  const float one = 1.0f, zero = 0.0f;
  const float *xp = (const float *)(uintptr_t)pni_cuda_tensor_ptr(x);
  const float *yp = (const float *)(uintptr_t)pni_cuda_tensor_ptr(y);
  float *op = (float *)(uintptr_t)pni_cuda_tensor_ptr(o);
  int r = blas.sgemm(h, a->p.trans_b ? BLAS_OP_T : BLAS_OP_N, a->p.trans_a ? BLAS_OP_T : BLAS_OP_N,
                     n, m, k, &one, yp, (int)y->shape[1], xp, (int)x->shape[1], &zero, op, n);
  if (r != BLAS_SUCCESS) return pn_error(PN_ERR_DEVICE, "cuda: cublasSgemm failed: status %d", r);
  return PN_OK;
}

void pni_cuda_blas_release(pni_cuda_dev *d) {
  if (d->blas && blas.destroy) blas.destroy(d->blas);
  d->blas = NULL;
}
