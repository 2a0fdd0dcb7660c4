/* The cuda backend: NVIDIA GPUs through the CUDA driver API, opened with
 * dlopen so that the plugin builds and loads everywhere. With no driver or
 * no GPU it still registers one device, cuda:0, whose probe says why it
 * cannot run; `plugnet backends` lists it as unavailable and a pipeline run
 * with --backend cuda stops with that line.
 *
 * A device starts on first use (probe, allocation, copy or kernel): its
 * primary context (the one the runtime and cuBLAS share), one stream on
 * which all its work is queued in order, and the kernel module embedded at
 * build time. Memory is not host accessible; tensors move with upload and
 * download through pinned staging buffers. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <plugnet/log.h>
#include <plugnet/plugin.h>

#include "cuda_dev.h"

/* The context current on this thread, so that a run of ops on one device
 * costs no driver call to switch. */
static _Thread_local pni_cu_context tls_current;

/* ------------------------------------------------------------ starting */

static void stop_device(pni_cuda_dev *d) {
  const pni_cu_api *cu = pni_cu_get();
  if (!cu || !d->ctx) return;
  cu->CtxSetCurrent(d->ctx);
  tls_current = d->ctx;
  pni_cuda_blas_release(d);
  pni_cuda_xfer_release(&d->xfer);
  pni_cuda_alloc_release(&d->alloc);
  if (d->module) cu->ModuleUnload(d->module);
  if (d->stream) cu->StreamDestroy(d->stream);
  cu->DevicePrimaryCtxRelease(d->dev);
  cu->CtxSetCurrent(NULL);
  tls_current = NULL;
  d->module = NULL;
  d->stream = NULL;
  d->ctx = NULL;
}

static pn_status start_device(pni_cuda_dev *d) {
  const pni_cu_api *cu = pni_cu_get();
  if (!cu) return pn_error(PN_ERR_DEVICE, "%s", pni_cu_why());
  if (d->ordinal < 0) return pn_error(PN_ERR_DEVICE, "no CUDA device found");
  PN_TRY(pni_cu_check(cu->DevicePrimaryCtxRetain(&d->ctx, d->dev), "cuDevicePrimaryCtxRetain"));
  PN_TRY(pni_cu_check(cu->CtxSetCurrent(d->ctx), "cuCtxSetCurrent"));
  tls_current = d->ctx;
  PN_TRY(pni_cu_check(cu->StreamCreate(&d->stream, PNI_CU_STREAM_DEFAULT), "cuStreamCreate"));
  pni_cuda_alloc_init(&d->alloc, cu);
  pni_cuda_xfer_init(&d->xfer, cu, d->stream);
  if (pni_cuda_have_kernels()) PN_TRY(pni_cuda_kernels_load(d));
  return PN_OK;
}

static void start_once(pni_cuda_dev *d) {
  pthread_mutex_lock(&d->lock);
  if (d->started == 0) {
    pn_status s = start_device(d);
    if (s == PN_OK) {
      PN_DEBUG("cuda:%d started (%s)", d->ordinal, d->name);
    } else {
      snprintf(d->start_error, sizeof d->start_error, "%s", pn_last_error());
      stop_device(d);
    }
    __atomic_store_n(&d->started, s == PN_OK ? 1 : -1, __ATOMIC_RELEASE);
  }
  pthread_mutex_unlock(&d->lock);
}

pn_status pni_cuda_enter(pni_cuda_dev *d) {
  if (__atomic_load_n(&d->started, __ATOMIC_ACQUIRE) == 0) start_once(d);
  if (d->started < 0) return pn_error(PN_ERR_DEVICE, "%s", d->start_error);
  if (tls_current == d->ctx) return PN_OK;
  PN_TRY(pni_cu_check(pni_cu_get()->CtxSetCurrent(d->ctx), "cuCtxSetCurrent"));
  tls_current = d->ctx;
  return PN_OK;
}

pni_cu_ptr pni_cuda_tensor_ptr(const pn_tensor *t) {
  const pni_cuda_block *b = t->buf->mem;
  return b->ptr + (pni_cu_ptr)t->offset * pn_dtype_size(t->dtype);
}

/* ------------------------------------------------------------ device iface */

static pn_status cuda_probe(void *ctx, char *why, size_t why_len) {
  pni_cuda_dev *d = ctx;
  char buf[320] = "";
  pn_status s = PN_OK;
  if (!pni_cu_get()) {
    snprintf(buf, sizeof buf, "%s", pni_cu_why());
    s = PN_ERR_DEVICE;
  } else if (!pni_cuda_have_kernels()) {
    snprintf(buf, sizeof buf, "built without CUDA kernels (configure found no nvcc)");
    s = PN_ERR_UNSUPPORTED;
  } else if ((s = pni_cuda_enter(d)) != PN_OK) {
    snprintf(buf, sizeof buf, "%s", pn_last_error());
  }
  if (why && why_len) snprintf(why, why_len, "%s", buf);
  return s;
}

/* The core replaces an allocation failure's message with its own, so the
 * reason is logged here. */
static void *cuda_alloc(void *ctx, size_t bytes) {
  pni_cuda_dev *d = ctx;
  pni_cuda_block *b = NULL;
  if (pni_cuda_enter(d) == PN_OK) b = pni_cuda_alloc_take(&d->alloc, bytes);
  if (!b)
    PN_WARN("cuda:%d: allocating %zu bytes: %s", d->ordinal < 0 ? 0 : d->ordinal, bytes,
            pn_last_error());
  return b;
}

static void cuda_free(void *ctx, void *mem) {
  pni_cuda_dev *d = ctx;
  if (mem) pni_cuda_alloc_give(&d->alloc, mem);
}

static pn_status cuda_upload(void *ctx, void *dst, size_t dst_off, const void *src, size_t n) {
  pni_cuda_dev *d = ctx;
  const pni_cuda_block *b = dst;
  PN_TRY(pni_cuda_enter(d));
  if (dst_off > b->size || n > b->size - dst_off)
    return pn_error(PN_ERR_INVALID, "cuda: upload of %zu bytes at %zu overruns a %zu-byte block", n,
                    dst_off, b->size);
  return pni_cuda_upload(&d->xfer, b->ptr + dst_off, src, n);
}

static pn_status cuda_download(void *ctx, void *dst, const void *src, size_t src_off, size_t n) {
  pni_cuda_dev *d = ctx;
  const pni_cuda_block *b = src;
  PN_TRY(pni_cuda_enter(d));
  if (src_off > b->size || n > b->size - src_off)
    return pn_error(PN_ERR_INVALID, "cuda: download of %zu bytes at %zu overruns a %zu-byte block",
                    n, src_off, b->size);
  return pni_cuda_download(&d->xfer, dst, b->ptr + src_off, n);
}

static pn_status cuda_synchronize(void *ctx) {
  pni_cuda_dev *d = ctx;
  if (__atomic_load_n(&d->started, __ATOMIC_ACQUIRE) <= 0) return PN_OK; /* nothing queued */
  PN_TRY(pni_cuda_enter(d));
  return pni_cu_check(pni_cu_get()->StreamSynchronize(d->stream), "cuStreamSynchronize");
}

static void cuda_describe(void *ctx, char *buf, size_t n) {
  const pni_cuda_dev *d = ctx;
  char kernels[64];
  if (pni_cuda_have_kernels())
    snprintf(kernels, sizeof kernels, "PTX %s", pni_cuda_ptx_arch);
  else
    snprintf(kernels, sizeof kernels, "no kernels");
  if (d->ordinal < 0) {
    snprintf(buf, n, "driver API via dlopen(%s), %s", pni_cu_library(), kernels);
    return;
  }
  snprintf(buf, n, "%s, sm_%d%d, %d SMs, %.1f GiB, PCI %s%s%s%s, %s, cuBLAS: %s", d->name,
           d->cc_major, d->cc_minor, d->sms, (double)d->total_mem / (1 << 30), d->busid,
           *d->near_pus ? " (near PUs " : "", d->near_pus, *d->near_pus ? ")" : "", kernels,
           pni_cuda_blas_status());
}

static void cuda_destroy(void *ctx) {
  pni_cuda_dev *d = ctx;
  if (d->started > 0) stop_device(d);
  pthread_mutex_destroy(&d->lock);
  free(d);
}

static const pn_device_iface cuda_iface = {
    .size = sizeof(pn_device_iface),
    .probe = cuda_probe,
    .alloc = cuda_alloc,
    .free = cuda_free,
    .upload = cuda_upload,
    .download = cuda_download,
    .synchronize = cuda_synchronize,
    .describe = cuda_describe,
    .destroy = cuda_destroy,
};

/* ------------------------------------------------------------ plugin */

/* What `plugnet backends` shows needs no context: names, memory and
 * attributes come straight from the device. */
static void read_device_info(const pni_cu_api *cu, pni_cuda_dev *d) {
  if (cu->DeviceGet(&d->dev, d->ordinal) != PNI_CU_SUCCESS) return;
  if (cu->DeviceGetName(d->name, (int)sizeof d->name, d->dev) != PNI_CU_SUCCESS)
    snprintf(d->name, sizeof d->name, "CUDA device %d", d->ordinal);
  cu->DeviceTotalMem(&d->total_mem, d->dev);
  cu->DeviceGetAttribute(&d->cc_major, PNI_CU_ATTR_CC_MAJOR, d->dev);
  cu->DeviceGetAttribute(&d->cc_minor, PNI_CU_ATTR_CC_MINOR, d->dev);
  cu->DeviceGetAttribute(&d->sms, PNI_CU_ATTR_MULTIPROCESSOR_COUNT, d->dev);
  if (d->sms <= 0) d->sms = 1;
  if (cu->DeviceGetPCIBusId(d->busid, (int)sizeof d->busid, d->dev) != PNI_CU_SUCCESS)
    snprintf(d->busid, sizeof d->busid, "unknown");
  else if (pni_cuda_near_pus(d->busid, d->near_pus, sizeof d->near_pus) != PN_OK)
    PN_DEBUG("cuda:%d: %s", d->ordinal, pn_last_error());
}

static pn_status add_device(pn_plugin_ctx *ctx, int ordinal) {
  char name[32];
  pni_cuda_dev *d = calloc(1, sizeof *d);
  if (!d) return pn_error(PN_ERR_NOMEM, "cuda: out of memory");
  d->ordinal = ordinal;
  pthread_mutex_init(&d->lock, NULL);
  if (ordinal >= 0) read_device_info(pni_cu_get(), d);
  snprintf(name, sizeof name, "cuda:%d", ordinal < 0 ? 0 : ordinal);
  pn_status s = pn_plugin_add_device(ctx, "cuda", name, &cuda_iface, d);
  if (s != PN_OK) {
    pthread_mutex_destroy(&d->lock);
    free(d);
  }
  return s;
}

static pn_status cuda_init(pn_plugin_ctx *ctx) {
  int count = pni_cu_device_count();
  if (!pni_cu_get()) PN_DEBUG("cuda: %s", pni_cu_why());
  if (count == 0) PN_TRY(add_device(ctx, -1));
  for (int i = 0; i < count; i++) PN_TRY(add_device(ctx, i));
  if (pni_cuda_have_kernels()) PN_TRY(pni_cuda_kernels_register(ctx));
  return PN_OK;
}

/* Devices are destroyed (cuda_destroy) before fini runs. */
static void cuda_fini(void) { pni_cuda_topo_release(); }

PN_PLUGIN_DEFINE("cuda", "0.1.0", cuda_init, cuda_fini);
