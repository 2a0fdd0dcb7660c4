/* One CUDA device as the plugin holds it, shared by cuda.c (the device
 * interface), cuda_kernels.c and cuda_blas.c. */
#ifndef PLUGNET_CUDA_DEV_H
#define PLUGNET_CUDA_DEV_H

#include <pthread.h>

#include <plugnet/plugin.h>

#include "cuda_alloc.h"
#include "cuda_driver.h"
#include "cuda_xfer.h"

enum {
  PNI_CUDA_K_FILL_I64 = 0,
  PNI_CUDA_K_COPY,
  PNI_CUDA_K_UNARY,
  PNI_CUDA_K_BINARY,
  PNI_CUDA_K_BINARY_BCAST,
  PNI_CUDA_K_AXPBY,
  PNI_CUDA_K_COUNT
};

typedef struct pni_cuda_dev {
  int ordinal; /* -1: the placeholder registered when there is no device */
  pni_cu_device dev;
  char name[96];
  char busid[32]; /* "0000:65:00.0" */
  char near_pus[64];
  size_t total_mem;
  int cc_major, cc_minor, sms;

  /* Started on first use: the context, stream and module. */
  pthread_mutex_t lock;
  int started; /* 0 not yet, 1 ready, -1 failed (start_error says why) */
  char start_error[320];
  pni_cu_context ctx;
  pni_cu_stream stream;
  pni_cu_module module;
  pni_cu_function fn[PNI_CUDA_K_COUNT];
  pni_cuda_alloc alloc;
  pni_cuda_xfer xfer;
  void *blas; /* cuBLAS handle, made at the first matmul */
} pni_cuda_dev;

/* Starts the device if needed and makes its context current on this
 * thread; every entry point that touches the driver calls it first. */
pn_status pni_cuda_enter(pni_cuda_dev *d);
/* Device address of a tensor's element 0. */
pni_cu_ptr pni_cuda_tensor_ptr(const pn_tensor *t);

/* The PTX embedded at build time ("" when configure found no nvcc) and the
 * virtual architecture it was compiled for. */
extern const char pni_cuda_ptx[];
extern const char pni_cuda_ptx_arch[];
int pni_cuda_have_kernels(void);
/* Loads the embedded module and looks up every kernel (context current). */
pn_status pni_cuda_kernels_load(pni_cuda_dev *d);
pn_status pni_cuda_kernels_register(pn_plugin_ctx *ctx);
/* Fills n bytes with `byte` on the device's stream. */
pn_status pni_cuda_memset(pni_cuda_dev *d, pni_cu_ptr dst, unsigned char byte, size_t n);

/* cuBLAS, opened with dlopen at the first matmul (PLUGNET_LIBCUBLAS
 * overrides the file). */
pn_status pni_cuda_matmul(void *dctx, const pn_op_args *a);
/* The library in use, or why there is none, for `plugnet backends`. */
const char *pni_cuda_blas_status(void);
void pni_cuda_blas_release(pni_cuda_dev *d);

/* The PUs nearest a PCI device as an hwloc list ("0-15"); "" and the error
 * set when hwloc does not see it. */
pn_status pni_cuda_near_pus(const char *busid, char *buf, size_t n);
void pni_cuda_topo_release(void);

#endif
