/* What the fake CUDA driver (fakecuda.c) counts, for tests that dlopen it
 * and read `fakecuda_counts`. */
#ifndef PLUGNET_FAKECUDA_H
#define PLUGNET_FAKECUDA_H

struct fakecuda_counts {
  long mem_alloc, mem_free; /* cuMemAlloc_v2, cuMemFree_v2 */
  long live_bytes;          /* allocated and not freed */
  long htod, dtoh, dtod;    /* copies, synchronous or not */
  long async;               /* copies queued on a stream */
  long memset;              /* cuMemsetD8/D32 */
  long host_alloc;          /* cuMemHostAlloc (pinned) */
  long sync;                /* cuStreamSynchronize */
  long ctx_retain, ctx_release, module_load, launch;
};

extern struct fakecuda_counts fakecuda_counts;

/* Inside the fake: runs kernel `name` (kernels.cu's signature) on host
 * memory; 0 when there is no host version of it. */
int fakecuda_emulate(const char *name, void **params);

#endif
