/* The cuda backend declares the driver API itself (cuda_driver.h) so that it
 * builds without the toolkit. Where the toolkit's cuda.h exists, this file
 * checks those declarations against it at compile time: `make check` builds
 * it and fails if they disagree. Nothing runs. */
#include <cuda.h>

#include "cuda_driver.h"

#define SAME_TYPE(value, type) _Generic((value), type : 1, default : 0)
/* Enumerators of different enums compare only after conversion. */
#define EQ(a, b) ((int)(a) == (int)(b))

_Static_assert(sizeof(CUresult) == sizeof(pni_cu_result), "CUresult is int-sized");
_Static_assert(SAME_TYPE((CUdevice)0, pni_cu_device), "CUdevice is int");
_Static_assert(SAME_TYPE((CUdeviceptr)0, pni_cu_ptr), "CUdeviceptr is unsigned long long");
_Static_assert(sizeof(CUcontext) == sizeof(pni_cu_context) && sizeof(CUstream) == sizeof(void *),
               "handles are pointers");

_Static_assert(EQ(CUDA_SUCCESS, PNI_CU_SUCCESS), "result code");
_Static_assert(EQ(CUDA_ERROR_OUT_OF_MEMORY, PNI_CU_ERROR_OUT_OF_MEMORY), "result code");
_Static_assert(EQ(CUDA_ERROR_NO_DEVICE, PNI_CU_ERROR_NO_DEVICE), "result code");
_Static_assert(EQ(CUDA_ERROR_NOT_SUPPORTED, PNI_CU_ERROR_NOT_SUPPORTED), "result code");
_Static_assert(EQ(CU_STREAM_DEFAULT, PNI_CU_STREAM_DEFAULT), "stream flag");
_Static_assert(EQ(CU_EVENT_DISABLE_TIMING, PNI_CU_EVENT_DISABLE_TIMING), "event flag");
_Static_assert(EQ(CU_MEMHOSTALLOC_PORTABLE, PNI_CU_MEMHOSTALLOC_PORTABLE), "host alloc flag");
_Static_assert(EQ(CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT, PNI_CU_ATTR_MULTIPROCESSOR_COUNT),
               "attribute");
_Static_assert(EQ(CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR, PNI_CU_ATTR_CC_MAJOR), "attribute");
_Static_assert(EQ(CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR, PNI_CU_ATTR_CC_MINOR), "attribute");

/* Each resolved name must be declared by cuda.h (cuda.h maps the unsuffixed
 * names to these _v2 ones), and each table slot must take what the real
 * function takes: calling through the slot's type with arguments of cuda.h's
 * types compiles only if the parameters convert without warnings. */
static void check_calls(pni_cu_api *api, CUstream s, CUdeviceptr p, CUdevice dev) {
  void *v = NULL;
  size_t n = 0;
  int i = 0;
  char name[8];
  CUcontext ctx = NULL;
  CUmodule mod = NULL;
  CUfunction fn = NULL;
  CUevent ev = NULL;
  (void)api->DeviceTotalMem(&n, dev);
  (void)api->DeviceGetName(name, (int)sizeof name, dev);
  (void)api->DeviceGetAttribute(&i, CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT, dev);
  (void)api->DevicePrimaryCtxRetain((pni_cu_context *)&ctx, dev);
  (void)api->MemAlloc(&p, n);
  (void)api->MemcpyHtoDAsync(p, v, n, (pni_cu_stream)s);
  (void)api->MemcpyDtoHAsync(v, p, n, (pni_cu_stream)s);
  (void)api->MemsetD32Async(p, 0u, n, (pni_cu_stream)s);
  (void)api->ModuleGetFunction((pni_cu_function *)&fn, (pni_cu_module)mod, name);
  (void)api->EventRecord((pni_cu_event)ev, (pni_cu_stream)s);
  (void)api->LaunchKernel((pni_cu_function)fn, 1, 1, 1, 1, 1, 1, 0, (pni_cu_stream)s, &v, NULL);
}

static const void *const declared[] = {
    (const void *)cuInit,
    (const void *)cuDriverGetVersion,
    (const void *)cuDeviceGetCount,
    (const void *)cuDeviceGet,
    (const void *)cuDeviceGetName,
    (const void *)cuDeviceTotalMem_v2,
    (const void *)cuDeviceGetAttribute,
    (const void *)cuDeviceGetPCIBusId,
    (const void *)cuDevicePrimaryCtxRetain,
    (const void *)cuDevicePrimaryCtxRelease_v2,
    (const void *)cuCtxSetCurrent,
    (const void *)cuMemAlloc_v2,
    (const void *)cuMemFree_v2,
    (const void *)cuMemGetInfo_v2,
    (const void *)cuMemcpyHtoD_v2,
    (const void *)cuMemcpyDtoH_v2,
    (const void *)cuMemcpyDtoD_v2,
    (const void *)cuMemcpyHtoDAsync_v2,
    (const void *)cuMemcpyDtoHAsync_v2,
    (const void *)cuMemcpyDtoDAsync_v2,
    (const void *)cuMemsetD8_v2,
    (const void *)cuMemsetD8Async,
    (const void *)cuMemsetD32Async,
    (const void *)cuMemHostAlloc,
    (const void *)cuMemFreeHost,
    (const void *)cuStreamCreate,
    (const void *)cuStreamDestroy_v2,
    (const void *)cuStreamSynchronize,
    (const void *)cuEventCreate,
    (const void *)cuEventRecord,
    (const void *)cuEventSynchronize,
    (const void *)cuEventDestroy_v2,
    (const void *)cuModuleLoadData,
    (const void *)cuModuleUnload,
    (const void *)cuModuleGetFunction,
    (const void *)cuLaunchKernel,
    (const void *)cuGetErrorString,
    (const void *)cuGetErrorName,
};

int main(void) {
  (void)check_calls;
  return sizeof declared / sizeof declared[0] == 38 ? 0 : 1;
}
