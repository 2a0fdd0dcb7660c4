/* A fake CUDA driver for tests on machines without a GPU: the entry points
 * the cuda backend resolves, over host memory. Device memory is malloc'd,
 * copies are memcpy, streams and events are dummies that are always done,
 * modules load anything, and kernels cannot run (cuLaunchKernel fails), so
 * the backend's plumbing (probe, allocator, copies, fills by memset) can be
 * tested and its kernel path fails cleanly. On request the kernels run as
 * host code, to test how the backend packs their arguments.
 *
 * Environment:
 *   FAKECUDA_MODE=nodevice   cuInit fails with CUDA_ERROR_NO_DEVICE (100)
 *   FAKECUDA_DEVICES=N       devices to report (default 1; 0 is allowed)
 *   FAKECUDA_BUSID=ID        PCI bus id of every device (default 0000:00:00.0)
 *   FAKECUDA_MEMLIMIT=BYTES  cuMemAlloc fails (out of memory) past this many live bytes
 *   FAKECUDA_NOPINNED=1      cuMemHostAlloc fails (no pinned memory)
 *   FAKECUDA_EMULATE=1       kernels run, as host code (fakekernels.c)
 * Calls are counted in the exported `fakecuda_counts`. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The entry points are the driver's, declared by cuda.h, which the tests do
 * not include: their definitions here need no prototypes of our own. */
#pragma GCC diagnostic ignored "-Wmissing-prototypes"

#include "fakecuda.h"

typedef int CUresult;
typedef int CUdevice;
typedef unsigned long long CUdeviceptr;
typedef void *CUhandle; /* contexts, modules, functions, streams, events */

enum {
  SUCCESS = 0,
  INVALID_VALUE = 1,
  OUT_OF_MEMORY = 2,
  NOT_INITIALIZED = 3,
  NO_DEVICE = 100,
  INVALID_DEVICE = 101,
  NOT_FOUND = 500,
  NOT_SUPPORTED = 801,
};

/* Each block carries its size before the data, for the live-bytes limit. */
#define HEADER 16

struct fakecuda_counts fakecuda_counts;

static int initialised;
static char dummy_object[5]; /* addresses handed out as handles */

static const char *env(const char *name) {
  const char *v = getenv(name);
  return v && *v ? v : NULL;
}

static int device_count(void) {
  return env("FAKECUDA_DEVICES") ? atoi(env("FAKECUDA_DEVICES")) : 1;
}

static int valid_device(CUdevice dev) { return initialised && dev >= 0 && dev < device_count(); }

/* ------------------------------------------------------------ errors */

static const struct {
  CUresult code;
  const char *name, *text;
} errors[] = {
    {SUCCESS, "CUDA_SUCCESS", "no error"},
    {INVALID_VALUE, "CUDA_ERROR_INVALID_VALUE", "invalid argument"},
    {OUT_OF_MEMORY, "CUDA_ERROR_OUT_OF_MEMORY", "out of memory"},
    {NOT_INITIALIZED, "CUDA_ERROR_NOT_INITIALIZED", "initialization error"},
    {NO_DEVICE, "CUDA_ERROR_NO_DEVICE", "no CUDA-capable device is detected"},
    {INVALID_DEVICE, "CUDA_ERROR_INVALID_DEVICE", "invalid device ordinal"},
    {NOT_FOUND, "CUDA_ERROR_NOT_FOUND", "named symbol not found"},
    {NOT_SUPPORTED, "CUDA_ERROR_NOT_SUPPORTED",
     "operation not supported (fake driver: kernels cannot run)"},
};

static int error_index(CUresult r) {
  for (size_t i = 0; i < sizeof errors / sizeof errors[0]; i++)
    if (errors[i].code == r) return (int)i;
  return -1;
}

CUresult cuGetErrorName(CUresult r, const char **s) {
  int i = error_index(r);
  if (i < 0) return INVALID_VALUE;
  *s = errors[i].name;
  return SUCCESS;
}

CUresult cuGetErrorString(CUresult r, const char **s) {
  int i = error_index(r);
  if (i < 0) return INVALID_VALUE;
  *s = errors[i].text;
  return SUCCESS;
}

/* ------------------------------------------------------------ devices */

CUresult cuInit(unsigned flags) {
  const char *mode = env("FAKECUDA_MODE");
  if (flags != 0) return INVALID_VALUE;
  if (mode && strcmp(mode, "nodevice") == 0) return NO_DEVICE;
  initialised = 1;
  return SUCCESS;
}

CUresult cuDriverGetVersion(int *v) {
  *v = 13000;
  return SUCCESS;
}

CUresult cuDeviceGetCount(int *n) {
  if (!initialised) return NOT_INITIALIZED;
  *n = device_count();
  return SUCCESS;
}

CUresult cuDeviceGet(CUdevice *dev, int ordinal) {
  if (!valid_device(ordinal)) return INVALID_DEVICE;
  *dev = ordinal;
  return SUCCESS;
}

CUresult cuDeviceGetName(char *name, int len, CUdevice dev) {
  if (!valid_device(dev)) return INVALID_DEVICE;
  snprintf(name, (size_t)len, "Fake CUDA Device %d", dev);
  return SUCCESS;
}

CUresult cuDeviceTotalMem_v2(size_t *bytes, CUdevice dev) {
  if (!valid_device(dev)) return INVALID_DEVICE;
  *bytes = (size_t)1 << 30;
  return SUCCESS;
}

/* 16: multiprocessors, 75/76: compute capability. */
CUresult cuDeviceGetAttribute(int *value, int attribute, CUdevice dev) {
  if (!valid_device(dev)) return INVALID_DEVICE;
  *value = attribute == 16 ? 4 : attribute == 75 ? 8 : 0;
  return SUCCESS;
}

CUresult cuDeviceGetPCIBusId(char *id, int len, CUdevice dev) {
  if (!valid_device(dev)) return INVALID_DEVICE;
  snprintf(id, (size_t)len, "%s", env("FAKECUDA_BUSID") ? env("FAKECUDA_BUSID") : "0000:00:00.0");
  return SUCCESS;
}

CUresult cuDevicePrimaryCtxRetain(CUhandle *ctx, CUdevice dev) {
  if (!valid_device(dev)) return INVALID_DEVICE;
  *ctx = &dummy_object[0];
  fakecuda_counts.ctx_retain++;
  return SUCCESS;
}

CUresult cuDevicePrimaryCtxRelease_v2(CUdevice dev) {
  if (!valid_device(dev)) return INVALID_DEVICE;
  fakecuda_counts.ctx_release++;
  return SUCCESS;
}

CUresult cuCtxSetCurrent(CUhandle ctx) {
  (void)ctx;
  return initialised ? SUCCESS : NOT_INITIALIZED;
}

/* ------------------------------------------------------------ memory */

static void *host_of(CUdeviceptr p) { return (void *)(uintptr_t)p; }

CUresult cuMemAlloc_v2(CUdeviceptr *ptr, size_t bytes) {
  const char *limit = env("FAKECUDA_MEMLIMIT");
  if (bytes == 0) return INVALID_VALUE;
  if (limit && (size_t)fakecuda_counts.live_bytes + bytes > (size_t)strtoull(limit, NULL, 10))
    return OUT_OF_MEMORY;
  char *block = malloc(bytes + HEADER);
  if (!block) return OUT_OF_MEMORY;
  memcpy(block, &bytes, sizeof bytes);
  fakecuda_counts.live_bytes += (long)bytes;
  fakecuda_counts.mem_alloc++;
  *ptr = (CUdeviceptr)(uintptr_t)(block + HEADER);
  return SUCCESS;
}

CUresult cuMemFree_v2(CUdeviceptr ptr) {
  size_t bytes;
  if (!ptr) return SUCCESS;
  char *block = (char *)host_of(ptr) - HEADER;
  memcpy(&bytes, block, sizeof bytes);
  fakecuda_counts.live_bytes -= (long)bytes;
  fakecuda_counts.mem_free++;
  free(block);
  return SUCCESS;
}

CUresult cuMemGetInfo_v2(size_t *free_bytes, size_t *total) {
  *total = (size_t)1 << 30;
  *free_bytes = *total - (size_t)fakecuda_counts.live_bytes;
  return SUCCESS;
}

CUresult cuMemHostAlloc(void **p, size_t bytes, unsigned flags) {
  (void)flags;
  if (env("FAKECUDA_NOPINNED")) return OUT_OF_MEMORY;
  *p = malloc(bytes);
  if (!*p) return OUT_OF_MEMORY;
  fakecuda_counts.host_alloc++;
  return SUCCESS;
}

CUresult cuMemFreeHost(void *p) {
  free(p);
  return SUCCESS;
}

/* ------------------------------------------------------------ copies */

CUresult cuMemcpyHtoD_v2(CUdeviceptr dst, const void *src, size_t n) {
  memcpy(host_of(dst), src, n);
  fakecuda_counts.htod++;
  return SUCCESS;
}

CUresult cuMemcpyDtoH_v2(void *dst, CUdeviceptr src, size_t n) {
  memcpy(dst, host_of(src), n);
  fakecuda_counts.dtoh++;
  return SUCCESS;
}

CUresult cuMemcpyDtoD_v2(CUdeviceptr dst, CUdeviceptr src, size_t n) {
  memmove(host_of(dst), host_of(src), n);
  fakecuda_counts.dtod++;
  return SUCCESS;
}

CUresult cuMemcpyHtoDAsync_v2(CUdeviceptr dst, const void *src, size_t n, CUhandle s) {
  (void)s;
  fakecuda_counts.async++;
  return cuMemcpyHtoD_v2(dst, src, n);
}

CUresult cuMemcpyDtoHAsync_v2(void *dst, CUdeviceptr src, size_t n, CUhandle s) {
  (void)s;
  fakecuda_counts.async++;
  return cuMemcpyDtoH_v2(dst, src, n);
}

CUresult cuMemcpyDtoDAsync_v2(CUdeviceptr dst, CUdeviceptr src, size_t n, CUhandle s) {
  (void)s;
  fakecuda_counts.async++;
  return cuMemcpyDtoD_v2(dst, src, n);
}

CUresult cuMemsetD8_v2(CUdeviceptr dst, unsigned char value, size_t n) {
  memset(host_of(dst), value, n);
  fakecuda_counts.memset++;
  return SUCCESS;
}

CUresult cuMemsetD8Async(CUdeviceptr dst, unsigned char value, size_t n, CUhandle s) {
  (void)s;
  return cuMemsetD8_v2(dst, value, n);
}

CUresult cuMemsetD32Async(CUdeviceptr dst, unsigned value, size_t n, CUhandle s) {
  (void)s;
  unsigned *p = host_of(dst);
  for (size_t i = 0; i < n; i++) p[i] = value;
  fakecuda_counts.memset++;
  return SUCCESS;
}

/* ------------------------------------------------------------ streams, events */

CUresult cuStreamCreate(CUhandle *s, unsigned flags) {
  (void)flags;
  *s = &dummy_object[1];
  return SUCCESS;
}

CUresult cuStreamDestroy_v2(CUhandle s) {
  (void)s;
  return SUCCESS;
}

CUresult cuStreamSynchronize(CUhandle s) {
  (void)s;
  fakecuda_counts.sync++;
  return SUCCESS;
}

CUresult cuEventCreate(CUhandle *e, unsigned flags) {
  (void)flags;
  *e = &dummy_object[2];
  return SUCCESS;
}

CUresult cuEventRecord(CUhandle e, CUhandle s) {
  (void)e, (void)s;
  return SUCCESS;
}

CUresult cuEventSynchronize(CUhandle e) {
  (void)e;
  return SUCCESS;
}

CUresult cuEventDestroy_v2(CUhandle e) {
  (void)e;
  return SUCCESS;
}

/* ------------------------------------------------------------ modules, kernels */

/* A function handle is the kernel's name. A module that looks like PTX must
 * define the kernel asked for (".entry NAME("), which catches a launcher
 * asking for a name kernels.cu does not define; anything else loads. */
#define MAX_FUNCTIONS 32
static char functions[MAX_FUNCTIONS][64];
static const char *module_text;

CUresult cuModuleLoadData(CUhandle *mod, const void *image) {
  if (!image) return INVALID_VALUE;
  module_text = image;
  *mod = &dummy_object[3];
  fakecuda_counts.module_load++;
  return SUCCESS;
}

CUresult cuModuleUnload(CUhandle mod) {
  (void)mod;
  module_text = NULL;
  return SUCCESS;
}

static int module_defines(const char *name) {
  char entry[80];
  if (!module_text || !strstr(module_text, ".entry")) return 1;
  snprintf(entry, sizeof entry, ".entry %s(", name);
  return strstr(module_text, entry) != NULL;
}

CUresult cuModuleGetFunction(CUhandle *fn, CUhandle mod, const char *name) {
  if (!mod || !name || strlen(name) >= sizeof functions[0]) return INVALID_VALUE;
  if (!module_defines(name)) return NOT_FOUND;
  for (int i = 0; i < MAX_FUNCTIONS; i++) {
    if (functions[i][0] && strcmp(functions[i], name) != 0) continue;
    snprintf(functions[i], sizeof functions[i], "%s", name);
    *fn = functions[i];
    return SUCCESS;
  }
  return OUT_OF_MEMORY;
}

/* Kernels cannot run here, unless FAKECUDA_EMULATE=1 asks for the host
 * versions in fakekernels.c, which read the arguments as kernels.cu
 * declares them (so the launching side's packing is tested). */
CUresult cuLaunchKernel(CUhandle fn, unsigned gx, unsigned gy, unsigned gz, unsigned bx,
                        unsigned by, unsigned bz, unsigned shared, CUhandle s, void **params,
                        void **extra) {
  (void)gy, (void)gz, (void)by, (void)bz, (void)shared, (void)s, (void)extra;
  fakecuda_counts.launch++;
  if (!fn || !params || gx == 0 || bx == 0) return INVALID_VALUE;
  if (!env("FAKECUDA_EMULATE")) return NOT_SUPPORTED;
  return fakecuda_emulate(fn, params) ? SUCCESS : NOT_FOUND;
}
