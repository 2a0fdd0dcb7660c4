/* Staged host <-> device copies (see cuda_xfer.h). */
#include <string.h>

#include <plugnet/log.h>

#include "cuda_xfer.h"

void pni_cuda_xfer_init(pni_cuda_xfer *x, const pni_cu_api *api, pni_cu_stream stream) {
  memset(x, 0, sizeof *x);
  pthread_mutex_init(&x->lock, NULL);
  x->api = api;
  x->stream = stream;
}

static void free_pinned(pni_cuda_xfer *x) {
  for (int i = 0; i < 2; i++) {
    if (x->pinned[i]) x->api->MemFreeHost(x->pinned[i]);
    if (x->done[i]) x->api->EventDestroy(x->done[i]);
    x->pinned[i] = NULL;
    x->done[i] = NULL;
  }
}

/* Pinned memory is a limited resource (it cannot be swapped); without it
 * copies still work, only slower, so a failure is logged, not returned. */
static void setup_pinned(pni_cuda_xfer *x) {
  char msg[200];
  pni_cu_result r = PNI_CU_SUCCESS;
  for (int i = 0; i < 2 && r == PNI_CU_SUCCESS; i++) {
    r = x->api->MemHostAlloc(&x->pinned[i], PNI_CUDA_STAGE_BYTES, PNI_CU_MEMHOSTALLOC_PORTABLE);
    if (r == PNI_CU_SUCCESS) r = x->api->EventCreate(&x->done[i], PNI_CU_EVENT_DISABLE_TIMING);
  }
  if (r == PNI_CU_SUCCESS) {
    x->pinned_state = 1;
    return;
  }
  PN_INFO("cuda: no pinned staging buffers (%s); copies will be synchronous",
          pni_cu_describe(r, msg, sizeof msg));
  free_pinned(x);
  x->pinned_state = -1;
}

static int staging_ready(pni_cuda_xfer *x) {
  if (x->pinned_state == 0) setup_pinned(x);
  return x->pinned_state > 0;
}

static size_t chunk_of(size_t left) {
  return left < PNI_CUDA_STAGE_BYTES ? left : PNI_CUDA_STAGE_BYTES;
}

static pn_status staged_upload(pni_cuda_xfer *x, pni_cu_ptr dst, const char *src, size_t n) {
  const pni_cu_api *cu = x->api;
  for (size_t off = 0; off < n;) {
    size_t len = chunk_of(n - off);
    int i = x->next;
    x->next ^= 1;
    /* The buffer's previous copy must have left it before we refill it. */
    PN_TRY(pni_cu_check(cu->EventSynchronize(x->done[i]), "cuEventSynchronize"));
    memcpy(x->pinned[i], src + off, len);
    PN_TRY(pni_cu_check(cu->MemcpyHtoDAsync(dst + off, x->pinned[i], len, x->stream),
                        "cuMemcpyHtoDAsync"));
    PN_TRY(pni_cu_check(cu->EventRecord(x->done[i], x->stream), "cuEventRecord"));
    off += len;
  }
  return PN_OK;
}

/* Chunk k+1 is in flight while chunk k is copied out of its buffer. */
static pn_status staged_download(pni_cuda_xfer *x, char *dst, pni_cu_ptr src, size_t n) {
  const pni_cu_api *cu = x->api;
  int ready = -1;
  size_t ready_off = 0, ready_len = 0, off = 0;
  while (off < n || ready >= 0) {
    int issued = -1;
    size_t len = 0;
    if (off < n) {
      issued = x->next;
      x->next ^= 1;
      len = chunk_of(n - off);
      PN_TRY(pni_cu_check(cu->EventSynchronize(x->done[issued]), "cuEventSynchronize"));
      PN_TRY(pni_cu_check(cu->MemcpyDtoHAsync(x->pinned[issued], src + off, len, x->stream),
                          "cuMemcpyDtoHAsync"));
      PN_TRY(pni_cu_check(cu->EventRecord(x->done[issued], x->stream), "cuEventRecord"));
    }
    if (ready >= 0) {
      PN_TRY(pni_cu_check(cu->EventSynchronize(x->done[ready]), "cuEventSynchronize"));
      memcpy(dst + ready_off, x->pinned[ready], ready_len);
    }
    ready = issued;
    ready_off = off;
    ready_len = len;
    off += len;
  }
  return PN_OK;
}

/* The stream is created blocking (CU_STREAM_DEFAULT), so the driver's
 * synchronous copies on the legacy stream still wait for our queued work. */
pn_status pni_cuda_upload(pni_cuda_xfer *x, pni_cu_ptr dst, const void *src, size_t n) {
  pn_status s;
  if (n == 0) return PN_OK;
  pthread_mutex_lock(&x->lock);
  if (staging_ready(x))
    s = staged_upload(x, dst, src, n);
  else
    s = pni_cu_check(x->api->MemcpyHtoD(dst, src, n), "cuMemcpyHtoD");
  pthread_mutex_unlock(&x->lock);
  return s;
}

pn_status pni_cuda_download(pni_cuda_xfer *x, void *dst, pni_cu_ptr src, size_t n) {
  pn_status s;
  if (n == 0) return PN_OK;
  pthread_mutex_lock(&x->lock);
  if (staging_ready(x))
    s = staged_download(x, dst, src, n);
  else
    s = pni_cu_check(x->api->MemcpyDtoH(dst, src, n), "cuMemcpyDtoH");
  pthread_mutex_unlock(&x->lock);
  return s;
}

int pni_cuda_xfer_pinned(const pni_cuda_xfer *x) { return x->pinned_state > 0; }

void pni_cuda_xfer_release(pni_cuda_xfer *x) {
  if (!x->api) return;
  if (x->pinned_state > 0) {
    x->api->StreamSynchronize(x->stream);
    free_pinned(x);
  }
  pthread_mutex_destroy(&x->lock);
  x->api = NULL;
}
