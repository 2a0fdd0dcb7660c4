/* The CUDA driver API as the cuda backend uses it: opened with dlopen at
 * first use, so the plugin builds without cuda.h and loads on machines
 * without the NVIDIA driver (it then reports why it cannot run).
 *
 * The types below are the driver API's documented ABI, declared here rather
 * than taken from cuda.h: CUresult is an enum the size of int, CUdevice an
 * int, CUdeviceptr an unsigned 64-bit integer on 64-bit hosts, and contexts,
 * modules, functions, streams and events are opaque pointers. Entry points
 * are resolved by their exported names, which for several functions carry a
 * _v2 suffix (cuda.h maps cuMemAlloc to cuMemAlloc_v2 and so on). */
#ifndef PLUGNET_CUDA_DRIVER_H
#define PLUGNET_CUDA_DRIVER_H

#include <stddef.h>

#include <plugnet/status.h>

typedef int pni_cu_result;
typedef int pni_cu_device;
typedef unsigned long long pni_cu_ptr;
typedef struct pni_cu_opaque_ctx *pni_cu_context;
typedef struct pni_cu_opaque_mod *pni_cu_module;
typedef struct pni_cu_opaque_fn *pni_cu_function;
typedef struct pni_cu_opaque_stream *pni_cu_stream;
typedef struct pni_cu_opaque_event *pni_cu_event;

/* Result codes and flags used here (values from the driver API reference). */
enum {
  PNI_CU_SUCCESS = 0,
  PNI_CU_ERROR_OUT_OF_MEMORY = 2,
  PNI_CU_ERROR_NO_DEVICE = 100,
  PNI_CU_ERROR_NOT_SUPPORTED = 801,
  PNI_CU_STREAM_DEFAULT = 0,
  PNI_CU_EVENT_DISABLE_TIMING = 2,
  PNI_CU_MEMHOSTALLOC_PORTABLE = 1,
  PNI_CU_ATTR_MULTIPROCESSOR_COUNT = 16,
  PNI_CU_ATTR_CC_MAJOR = 75,
  PNI_CU_ATTR_CC_MINOR = 76
};

/* One function pointer per entry point, named after it without "cu". */
typedef struct pni_cu_api {
  pni_cu_result (*Init)(unsigned flags);
  pni_cu_result (*DriverGetVersion)(int *version);
  pni_cu_result (*DeviceGetCount)(int *count);
  pni_cu_result (*DeviceGet)(pni_cu_device *dev, int ordinal);
  pni_cu_result (*DeviceGetName)(char *name, int len, pni_cu_device dev);
  pni_cu_result (*DeviceTotalMem)(size_t *bytes, pni_cu_device dev);
  pni_cu_result (*DeviceGetAttribute)(int *value, int attribute, pni_cu_device dev);
  pni_cu_result (*DeviceGetPCIBusId)(char *bus_id, int len, pni_cu_device dev);
  pni_cu_result (*DevicePrimaryCtxRetain)(pni_cu_context *ctx, pni_cu_device dev);
  pni_cu_result (*DevicePrimaryCtxRelease)(pni_cu_device dev);
  pni_cu_result (*CtxSetCurrent)(pni_cu_context ctx);
  pni_cu_result (*MemAlloc)(pni_cu_ptr *ptr, size_t bytes);
  pni_cu_result (*MemFree)(pni_cu_ptr ptr);
  pni_cu_result (*MemGetInfo)(size_t *free_bytes, size_t *total_bytes);
  pni_cu_result (*MemcpyHtoD)(pni_cu_ptr dst, const void *src, size_t n);
  pni_cu_result (*MemcpyDtoH)(void *dst, pni_cu_ptr src, size_t n);
  pni_cu_result (*MemcpyDtoD)(pni_cu_ptr dst, pni_cu_ptr src, size_t n);
  pni_cu_result (*MemcpyHtoDAsync)(pni_cu_ptr dst, const void *src, size_t n, pni_cu_stream s);
  pni_cu_result (*MemcpyDtoHAsync)(void *dst, pni_cu_ptr src, size_t n, pni_cu_stream s);
  pni_cu_result (*MemcpyDtoDAsync)(pni_cu_ptr dst, pni_cu_ptr src, size_t n, pni_cu_stream s);
  pni_cu_result (*MemsetD8)(pni_cu_ptr dst, unsigned char value, size_t n);
  pni_cu_result (*MemsetD8Async)(pni_cu_ptr dst, unsigned char value, size_t n, pni_cu_stream s);
  pni_cu_result (*MemsetD32Async)(pni_cu_ptr dst, unsigned value, size_t n, pni_cu_stream s);
  pni_cu_result (*MemHostAlloc)(void **p, size_t bytes, unsigned flags);
  pni_cu_result (*MemFreeHost)(void *p);
  pni_cu_result (*StreamCreate)(pni_cu_stream *s, unsigned flags);
  pni_cu_result (*StreamDestroy)(pni_cu_stream s);
  pni_cu_result (*StreamSynchronize)(pni_cu_stream s);
  pni_cu_result (*EventCreate)(pni_cu_event *e, unsigned flags);
  pni_cu_result (*EventRecord)(pni_cu_event e, pni_cu_stream s);
  pni_cu_result (*EventSynchronize)(pni_cu_event e);
  pni_cu_result (*EventDestroy)(pni_cu_event e);
  pni_cu_result (*ModuleLoadData)(pni_cu_module *mod, const void *image);
  pni_cu_result (*ModuleUnload)(pni_cu_module mod);
  pni_cu_result (*ModuleGetFunction)(pni_cu_function *fn, pni_cu_module mod, const char *name);
  pni_cu_result (*LaunchKernel)(pni_cu_function fn, unsigned gx, unsigned gy, unsigned gz,
                                unsigned bx, unsigned by, unsigned bz, unsigned shared_bytes,
                                pni_cu_stream s, void **params, void **extra);
  pni_cu_result (*GetErrorString)(pni_cu_result r, const char **s);
  pni_cu_result (*GetErrorName)(pni_cu_result r, const char **s);
} pni_cu_api;

/* The driver, opened and initialised once per process (thread-safe):
 * NULL when unusable, with the reason in pni_cu_why(). PLUGNET_LIBCUDA
 * names another library file (tests point it at a fake driver). */
const pni_cu_api *pni_cu_get(void);
/* Why pni_cu_get() returned NULL, as one line. */
const char *pni_cu_why(void);
/* The library file that was opened or tried. */
const char *pni_cu_library(void);
/* Devices found by cuDeviceGetCount (0 when the driver is unusable). */
int pni_cu_device_count(void);

/* PN_OK for CUDA_SUCCESS, else PN_ERR_DEVICE with "cuda: WHAT: NAME: string"
 * (NAME as cuGetErrorName gives it, e.g. CUDA_ERROR_OUT_OF_MEMORY). */
pn_status pni_cu_check(pni_cu_result r, const char *what);
/* "NAME: string" for a result, into buf. */
const char *pni_cu_describe(pni_cu_result r, char *buf, size_t n);

#endif
