/* Kernel arguments shared by kernels.cu (compiled by nvcc) and the C code
 * that launches them: plain structs passed by value through cuLaunchKernel,
 * so both compilers must lay them out alike (int then 8-byte arrays: the
 * same padding on x86-64 and nvptx64). */
#ifndef PLUGNET_CUDA_ABI_H
#define PLUGNET_CUDA_ABI_H

#define PNI_CUDA_MAX_DIMS 8
#define PNI_CUDA_BLOCK    256 /* threads per block for every elementwise kernel */

/* dtype codes: equal to pn_dtype (checked in cuda_kernels.c). */
enum { PNI_CUDA_F32 = 0, PNI_CUDA_I32 = 1, PNI_CUDA_I64 = 2, PNI_CUDA_U8 = 3 };

/* A strided view, dims in row-major order (copy's source). */
typedef struct pni_cuda_strided {
  int ndim;
  long long shape[PNI_CUDA_MAX_DIMS];
  long long stride[PNI_CUDA_MAX_DIMS];
} pni_cuda_strided;

/* The output's shape and each input's strides over it (0 where broadcast). */
typedef struct pni_cuda_bcast {
  int ndim;
  long long shape[PNI_CUDA_MAX_DIMS];
  long long sa[PNI_CUDA_MAX_DIMS];
  long long sb[PNI_CUDA_MAX_DIMS];
} pni_cuda_bcast;

#endif
