/* The caching device allocator (see cuda_alloc.h). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <plugnet/log.h>

#include "cuda_alloc.h"

static int floor_log2(size_t n) {
  int k = 0;
  while (n >>= 1) k++;
  return k;
}

size_t pni_cuda_size_class(size_t bytes, int *bin) {
  size_t n = bytes < PNI_CUDA_MIN_CLASS ? PNI_CUDA_MIN_CLASS : bytes;
  int k = floor_log2(n);
  size_t step = ((size_t)1 << k) / 4;
  if (n > SIZE_MAX - step) return 0; /* cannot be served */
  size_t size = (n + step - 1) / step * step;
  /* Rounding up may reach the next power of two: re-derive its exponent. */
  k = floor_log2(size);
  if (bin) *bin = (k * 4 + (int)((size >> (k - 2)) & 3)) % PNI_CUDA_BINS;
  return size;
}

void pni_cuda_alloc_init(pni_cuda_alloc *a, const pni_cu_api *api) {
  memset(a, 0, sizeof *a);
  pthread_mutex_init(&a->lock, NULL);
  a->api = api;
}

static pni_cuda_block *take_cached(pni_cuda_alloc *a, size_t size, int bin) {
  pni_cuda_block **link = &a->bins[bin];
  for (; *link; link = &(*link)->next) {
    if ((*link)->size != size) continue;
    pni_cuda_block *b = *link;
    *link = b->next;
    b->next = NULL;
    a->stats.cached_bytes -= size;
    a->stats.reuses++;
    return b;
  }
  return NULL;
}

static void free_cached_locked(pni_cuda_alloc *a) {
  for (int i = 0; i < PNI_CUDA_BINS; i++) {
    while (a->bins[i]) {
      pni_cuda_block *b = a->bins[i];
      a->bins[i] = b->next;
      pni_cu_result r = a->api->MemFree(b->ptr);
      if (r != PNI_CU_SUCCESS) PN_WARN("cuda: cuMemFree failed (%d); block leaked", r);
      a->stats.cached_bytes -= b->size;
      a->stats.driver_frees++;
      free(b);
    }
  }
}

/* Out of memory with blocks cached in other classes: give them back to the
 * driver and try once more before failing. */
static pni_cu_result driver_alloc(pni_cuda_alloc *a, pni_cu_ptr *ptr, size_t size) {
  pni_cu_result r = a->api->MemAlloc(ptr, size);
  if (r == PNI_CU_ERROR_OUT_OF_MEMORY && a->stats.cached_bytes > 0) {
    PN_INFO("cuda: out of memory for %zu bytes; freeing %zu cached bytes and retrying", size,
            a->stats.cached_bytes);
    free_cached_locked(a);
    r = a->api->MemAlloc(ptr, size);
  }
  if (r == PNI_CU_SUCCESS) a->stats.driver_allocs++;
  return r;
}

static void account_live(pni_cuda_alloc *a, size_t size) {
  a->stats.live_bytes += size;
  if (a->stats.live_bytes > a->stats.peak_bytes) a->stats.peak_bytes = a->stats.live_bytes;
}

pni_cuda_block *pni_cuda_alloc_take(pni_cuda_alloc *a, size_t bytes) {
  int bin = 0;
  size_t size = pni_cuda_size_class(bytes, &bin);
  if (!size) {
    pn_error(PN_ERR_NOMEM, "cuda: %zu bytes cannot be allocated", bytes);
    return NULL;
  }
  pthread_mutex_lock(&a->lock);
  pni_cuda_block *b = take_cached(a, size, bin);
  if (!b && (b = calloc(1, sizeof *b))) {
    pni_cu_result r = driver_alloc(a, &b->ptr, size);
    if (r != PNI_CU_SUCCESS) {
      free(b);
      b = NULL;
      pni_cu_check(r, "cuMemAlloc");
    }
  } else if (!b) {
    pn_error(PN_ERR_NOMEM, "cuda: out of host memory for a block record");
  }
  if (b) {
    b->size = size;
    account_live(a, size);
  }
  pthread_mutex_unlock(&a->lock);
  return b;
}

void pni_cuda_alloc_give(pni_cuda_alloc *a, pni_cuda_block *b) {
  int bin = 0;
  if (!b) return;
  pni_cuda_size_class(b->size, &bin);
  pthread_mutex_lock(&a->lock);
  b->next = a->bins[bin];
  a->bins[bin] = b;
  a->stats.live_bytes -= b->size;
  a->stats.cached_bytes += b->size;
  pthread_mutex_unlock(&a->lock);
}

void pni_cuda_alloc_trim(pni_cuda_alloc *a) {
  pthread_mutex_lock(&a->lock);
  free_cached_locked(a);
  pthread_mutex_unlock(&a->lock);
}

pni_cuda_alloc_stats pni_cuda_alloc_get_stats(pni_cuda_alloc *a) {
  pthread_mutex_lock(&a->lock);
  pni_cuda_alloc_stats s = a->stats;
  pthread_mutex_unlock(&a->lock);
  return s;
}

void pni_cuda_alloc_release(pni_cuda_alloc *a) {
  if (!a->api) return;
  pni_cuda_alloc_trim(a);
  if (a->stats.live_bytes)
    PN_DEBUG("cuda: %zu bytes still in use when the allocator was released", a->stats.live_bytes);
  pthread_mutex_destroy(&a->lock);
  a->api = NULL;
}
