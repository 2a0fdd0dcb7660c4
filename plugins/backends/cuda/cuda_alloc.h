/* A caching allocator for device memory. cuMemAlloc and cuMemFree cost tens
 * to hundreds of microseconds and cuMemFree synchronises the device, while a
 * training step allocates the same sizes every time; so freed blocks are
 * kept, binned by size class, and handed out again. The driver frees memory
 * only on trim (also tried once when an allocation runs out of memory) and
 * on release.
 *
 * Reuse is safe without events because each device runs all its work on one
 * stream: a block freed while a kernel still reads it is next written by
 * work queued behind that kernel. */
#ifndef PLUGNET_CUDA_ALLOC_H
#define PLUGNET_CUDA_ALLOC_H

#include <pthread.h>
#include <stddef.h>

#include "cuda_driver.h"

/* Classes are 2^k * {1, 1.25, 1.5, 1.75} (at least 512 bytes), so a block
 * wastes under a quarter of its size; one bin per class. */
#define PNI_CUDA_BINS      256
#define PNI_CUDA_MIN_CLASS 512

/* What a device buffer's `mem` points to: the core never dereferences it,
 * so it carries the size class the block returns to. */
typedef struct pni_cuda_block {
  pni_cu_ptr ptr;
  size_t size; /* the size class */
  struct pni_cuda_block *next;
} pni_cuda_block;

typedef struct pni_cuda_alloc_stats {
  size_t live_bytes, cached_bytes, peak_bytes;
  unsigned long driver_allocs, driver_frees, reuses;
} pni_cuda_alloc_stats;

typedef struct pni_cuda_alloc {
  pthread_mutex_t lock;
  const pni_cu_api *api;
  pni_cuda_block *bins[PNI_CUDA_BINS];
  pni_cuda_alloc_stats stats;
} pni_cuda_alloc;

/* The class a request of `bytes` is served from, and its bin. */
size_t pni_cuda_size_class(size_t bytes, int *bin);

void pni_cuda_alloc_init(pni_cuda_alloc *a, const pni_cu_api *api);
/* A block of at least `bytes`; NULL with the error set. The device's
 * context must be current (the driver may be called). */
pni_cuda_block *pni_cuda_alloc_take(pni_cuda_alloc *a, size_t bytes);
/* Back to its bin: no driver call, so any thread may free. */
void pni_cuda_alloc_give(pni_cuda_alloc *a, pni_cuda_block *b);
/* cuMemFree for every cached block (context current). */
void pni_cuda_alloc_trim(pni_cuda_alloc *a);
pni_cuda_alloc_stats pni_cuda_alloc_get_stats(pni_cuda_alloc *a);
/* Trims and destroys the lock; blocks still live are leaked on purpose,
 * since tensors may outlive the plugin at process exit. */
void pni_cuda_alloc_release(pni_cuda_alloc *a);

#endif
