/* Opens the CUDA driver library at run time (see cuda_driver.h). */
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cuda_driver.h"

#define DEFAULT_LIBRARY "libcuda.so.1"

static struct {
  pni_cu_api api;
  int usable;
  int devices;
  char library[256];
  char why[320];
} drv;

static pthread_once_t drv_once = PTHREAD_ONCE_INIT;

/* Exported names: the _v2 ones are what cuda.h's macros resolve to. */
#define ENTRY(field, symbol)                                                                       \
  { offsetof(pni_cu_api, field), symbol }
static const struct entry {
  size_t offset;
  const char *symbol;
} entries[] = {
    ENTRY(Init, "cuInit"),
    ENTRY(DriverGetVersion, "cuDriverGetVersion"),
    ENTRY(DeviceGetCount, "cuDeviceGetCount"),
    ENTRY(DeviceGet, "cuDeviceGet"),
    ENTRY(DeviceGetName, "cuDeviceGetName"),
    ENTRY(DeviceTotalMem, "cuDeviceTotalMem_v2"),
    ENTRY(DeviceGetAttribute, "cuDeviceGetAttribute"),
    ENTRY(DeviceGetPCIBusId, "cuDeviceGetPCIBusId"),
    ENTRY(DevicePrimaryCtxRetain, "cuDevicePrimaryCtxRetain"),
    ENTRY(DevicePrimaryCtxRelease, "cuDevicePrimaryCtxRelease_v2"),
    ENTRY(CtxSetCurrent, "cuCtxSetCurrent"),
    ENTRY(MemAlloc, "cuMemAlloc_v2"),
    ENTRY(MemFree, "cuMemFree_v2"),
    ENTRY(MemGetInfo, "cuMemGetInfo_v2"),
    ENTRY(MemcpyHtoD, "cuMemcpyHtoD_v2"),
    ENTRY(MemcpyDtoH, "cuMemcpyDtoH_v2"),
    ENTRY(MemcpyDtoD, "cuMemcpyDtoD_v2"),
    ENTRY(MemcpyHtoDAsync, "cuMemcpyHtoDAsync_v2"),
    ENTRY(MemcpyDtoHAsync, "cuMemcpyDtoHAsync_v2"),
    ENTRY(MemcpyDtoDAsync, "cuMemcpyDtoDAsync_v2"),
    ENTRY(MemsetD8, "cuMemsetD8_v2"),
    ENTRY(MemsetD8Async, "cuMemsetD8Async"),
    ENTRY(MemsetD32Async, "cuMemsetD32Async"),
    ENTRY(MemHostAlloc, "cuMemHostAlloc"),
    ENTRY(MemFreeHost, "cuMemFreeHost"),
    ENTRY(StreamCreate, "cuStreamCreate"),
    ENTRY(StreamDestroy, "cuStreamDestroy_v2"),
    ENTRY(StreamSynchronize, "cuStreamSynchronize"),
    ENTRY(EventCreate, "cuEventCreate"),
    ENTRY(EventRecord, "cuEventRecord"),
    ENTRY(EventSynchronize, "cuEventSynchronize"),
    ENTRY(EventDestroy, "cuEventDestroy_v2"),
    ENTRY(ModuleLoadData, "cuModuleLoadData"),
    ENTRY(ModuleUnload, "cuModuleUnload"),
    ENTRY(ModuleGetFunction, "cuModuleGetFunction"),
    ENTRY(LaunchKernel, "cuLaunchKernel"),
    ENTRY(GetErrorString, "cuGetErrorString"),
    ENTRY(GetErrorName, "cuGetErrorName"),
};

/* dlerror() for a missing file ends in "No such file or directory"; any
 * other failure (wrong architecture, a broken install) is worth showing. */
static void explain_dlopen_failure(const char *err) {
  int missing = !err || strstr(err, "No such file") != NULL;
  if (missing && strcmp(drv.library, DEFAULT_LIBRARY) == 0)
    snprintf(drv.why, sizeof drv.why,
             "no CUDA device: " DEFAULT_LIBRARY " not found (the NVIDIA driver is not installed)");
  else if (missing)
    snprintf(drv.why, sizeof drv.why, "no CUDA device: %s not found (PLUGNET_LIBCUDA)",
             drv.library);
  else
    snprintf(drv.why, sizeof drv.why, "no CUDA device: cannot load %s: %s", drv.library, err);
}

/* The handle is kept for the life of the process: the driver keeps threads
 * and state that must not be unmapped under them. */
static int resolve_all(void *lib) {
  for (size_t i = 0; i < sizeof entries / sizeof entries[0]; i++) {
    void *sym = dlsym(lib, entries[i].symbol);
    if (!sym) {
      snprintf(drv.why, sizeof drv.why, "no CUDA device: %s has no %s (driver too old?)",
               drv.library, entries[i].symbol);
      return 0;
    }
    /* POSIX guarantees that function and data pointers convert this way. */
    memcpy((char *)&drv.api + entries[i].offset, &sym, sizeof sym);
  }
  return 1;
}

static void count_devices(void) {
  char msg[200];
  pni_cu_result r = drv.api.Init(0);
  if (r != PNI_CU_SUCCESS) {
    snprintf(drv.why, sizeof drv.why, "no CUDA device: cuInit failed: %s",
             pni_cu_describe(r, msg, sizeof msg));
    return;
  }
  r = drv.api.DeviceGetCount(&drv.devices);
  if (r != PNI_CU_SUCCESS) {
    drv.devices = 0;
    snprintf(drv.why, sizeof drv.why, "no CUDA device: cuDeviceGetCount failed: %s",
             pni_cu_describe(r, msg, sizeof msg));
    return;
  }
  if (drv.devices <= 0) {
    drv.devices = 0;
    snprintf(drv.why, sizeof drv.why, "no CUDA device found");
    return;
  }
  drv.usable = 1;
}

static void load_driver(void) {
  const char *env = getenv("PLUGNET_LIBCUDA");
  snprintf(drv.library, sizeof drv.library, "%s", env && *env ? env : DEFAULT_LIBRARY);
  void *lib = dlopen(drv.library, RTLD_NOW | RTLD_LOCAL);
  if (!lib) {
    explain_dlopen_failure(dlerror());
    return;
  }
  if (!resolve_all(lib)) {
    dlclose(lib);
    return;
  }
  count_devices();
}

const pni_cu_api *pni_cu_get(void) {
  pthread_once(&drv_once, load_driver);
  return drv.usable ? &drv.api : NULL;
}

const char *pni_cu_why(void) {
  pthread_once(&drv_once, load_driver);
  return drv.why;
}

const char *pni_cu_library(void) {
  pthread_once(&drv_once, load_driver);
  return drv.library;
}

int pni_cu_device_count(void) {
  pthread_once(&drv_once, load_driver);
  return drv.usable ? drv.devices : 0;
}

/* Results worth naming when the library cannot (the toolkit's stub answers
 * every call, cuGetErrorName included, with CUDA_ERROR_STUB_LIBRARY). */
static const struct known {
  pni_cu_result code;
  const char *name, *text;
} known_results[] = {
    {34, "CUDA_ERROR_STUB_LIBRARY", "the CUDA toolkit's stub library, not the NVIDIA driver"},
    {100, "CUDA_ERROR_NO_DEVICE", "no CUDA-capable device is detected"},
    {999, "CUDA_ERROR_UNKNOWN", "unknown error"},
};

static void fallback_names(pni_cu_result r, const char **name, const char **text) {
  for (size_t i = 0; i < sizeof known_results / sizeof known_results[0]; i++) {
    if (known_results[i].code != r) continue;
    *name = known_results[i].name;
    *text = known_results[i].text;
  }
}

const char *pni_cu_describe(pni_cu_result r, char *buf, size_t n) {
  const char *name = NULL, *text = NULL;
  if (drv.api.GetErrorName && drv.api.GetErrorName(r, &name) != PNI_CU_SUCCESS) name = NULL;
  if (drv.api.GetErrorString && drv.api.GetErrorString(r, &text) != PNI_CU_SUCCESS) text = NULL;
  if (!name || !text) fallback_names(r, &name, &text);
  if (name && text)
    snprintf(buf, n, "%s: %s", name, text);
  else
    snprintf(buf, n, "CUDA error %d", r);
  return buf;
}

pn_status pni_cu_check(pni_cu_result r, const char *what) {
  char msg[200];
  if (r == PNI_CU_SUCCESS) return PN_OK;
  return pn_error(PN_ERR_DEVICE, "cuda: %s: %s", what, pni_cu_describe(r, msg, sizeof msg));
}
