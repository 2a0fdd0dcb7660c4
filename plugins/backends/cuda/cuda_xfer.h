/* Host <-> device copies through pinned staging buffers on the device's
 * stream. Copies from pageable memory are staged by the driver anyway and
 * block the host; with our own two pinned buffers an upload returns as soon
 * as its bytes are staged (the caller may then reuse its memory) and the DMA
 * of one chunk overlaps the memcpy of the next. When pinned memory cannot be
 * had, copies fall back to the driver's synchronous ones. */
#ifndef PLUGNET_CUDA_XFER_H
#define PLUGNET_CUDA_XFER_H

#include <pthread.h>
#include <stddef.h>

#include "cuda_driver.h"

#define PNI_CUDA_STAGE_BYTES ((size_t)4 << 20)

typedef struct pni_cuda_xfer {
  pthread_mutex_t lock;
  const pni_cu_api *api;
  pni_cu_stream stream;
  void *pinned[2];
  pni_cu_event done[2]; /* recorded after the last copy that used pinned[i] */
  int pinned_state;     /* 0: not tried yet, 1: ready, -1: unavailable */
  int next;
} pni_cuda_xfer;

void pni_cuda_xfer_init(pni_cuda_xfer *x, const pni_cu_api *api, pni_cu_stream stream);
/* The device's context must be current for all of these. */
pn_status pni_cuda_upload(pni_cuda_xfer *x, pni_cu_ptr dst, const void *src, size_t n);
/* Returns once the bytes are in dst (waits for the stream). */
pn_status pni_cuda_download(pni_cuda_xfer *x, void *dst, pni_cu_ptr src, size_t n);
/* Whether staging buffers are in use (for `plugnet backends`). */
int pni_cuda_xfer_pinned(const pni_cuda_xfer *x);
void pni_cuda_xfer_release(pni_cuda_xfer *x);

#endif
