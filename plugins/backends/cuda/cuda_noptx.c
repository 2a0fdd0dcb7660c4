/* Built in place of the generated cuda_ptx.c when configure found no nvcc:
 * the plugin then has no kernels, and its probe says so. */
#include "cuda_dev.h"

const char pni_cuda_ptx[] = "";
const char pni_cuda_ptx_arch[] = "none";
