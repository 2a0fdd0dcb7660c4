/* Tensors: a dtype, a shape of up to PN_MAX_DIMS dimensions, strides in
 * elements, and a refcounted buffer owned by exactly one device. */
#ifndef PLUGNET_TENSOR_H
#define PLUGNET_TENSOR_H

#include <stddef.h>
#include <stdint.h>
#include <plugnet/status.h>

#ifdef __cplusplus
extern "C" {
#endif

#define PN_MAX_DIMS 8

typedef enum pn_dtype { PN_F32 = 0, PN_I32, PN_I64, PN_U8, PN_DTYPE_COUNT } pn_dtype;

typedef struct pn_device pn_device;
typedef struct pn_buffer pn_buffer;
typedef struct pn_node pn_node;
typedef struct pn_hook pn_hook;

typedef struct pn_shape {
  int ndim;
  int64_t dim[PN_MAX_DIMS];
} pn_shape;

/* Fields are public so kernels can read them without calls; change them only
 * through the functions below. */
typedef struct pn_tensor {
  int refs;
  pn_dtype dtype;
  int ndim;
  int64_t shape[PN_MAX_DIMS];
  int64_t stride[PN_MAX_DIMS]; /* in elements */
  int64_t offset;              /* in elements, into buf */
  pn_buffer *buf;
  /* autograd */
  int requires_grad;
  struct pn_tensor *grad;
  pn_node *node; /* the recorded op that produced it, while on the tape */
  pn_hook *hooks;
  char *name;
} pn_tensor;

size_t pn_dtype_size(pn_dtype dt);
const char *pn_dtype_name(pn_dtype dt);
/* Parses "f32", "i32", "i64", "u8"; returns -1 when unknown. */
int pn_dtype_parse(const char *s);

pn_shape pn_shape_make(int ndim, const int64_t *dim);
int64_t pn_shape_numel(const pn_shape *s);
int pn_shape_equal(const pn_shape *a, const pn_shape *b);
/* Writes "2x3x4" (or "scalar") into buf. */
const char *pn_shape_str(const pn_shape *s, char *buf, size_t n);

/* New uninitialised contiguous tensor on `dev` (NULL: the default device).
 * Returns NULL and sets the error message on failure. */
pn_tensor *pn_tensor_new(pn_device *dev, pn_dtype dt, int ndim, const int64_t *shape);
pn_tensor *pn_tensor_new_shape(pn_device *dev, pn_dtype dt, const pn_shape *s);
/* New tensor filled from host memory holding numel elements of dt. */
pn_tensor *pn_tensor_from_host(pn_device *dev, pn_dtype dt, int ndim, const int64_t *shape,
                               const void *host);

pn_tensor *pn_tensor_ref(pn_tensor *t);
void pn_tensor_unref(pn_tensor *t);

int64_t pn_tensor_numel(const pn_tensor *t);
pn_shape pn_tensor_shape(const pn_tensor *t);
int pn_tensor_is_contiguous(const pn_tensor *t);
pn_device *pn_tensor_device(const pn_tensor *t);
size_t pn_tensor_nbytes(const pn_tensor *t);

/* Host address of element 0, or NULL when the device memory is not host
 * accessible (use pn_tensor_read/write then). */
void *pn_tensor_data(const pn_tensor *t);
/* Copies between host memory and a tensor, which must be contiguous. */
pn_status pn_tensor_read(const pn_tensor *t, void *dst, size_t bytes);
pn_status pn_tensor_write(pn_tensor *t, const void *src, size_t bytes);
/* Convenience for tests and tools: element i of a contiguous f32 tensor. */
float pn_tensor_get_f32(const pn_tensor *t, int64_t i);

/* Views share the buffer: no data is copied. They are not recorded by
 * autograd; use pn_reshape/pn_transpose in ops.h for that. */
pn_tensor *pn_tensor_view(pn_tensor *t, int ndim, const int64_t *shape);
pn_tensor *pn_tensor_transposed(pn_tensor *t, int d0, int d1);

/* A copy of t on another device (moving between backends at run time).
 * The copy is a new leaf: it keeps requires_grad and the name. */
pn_tensor *pn_tensor_to(pn_tensor *t, pn_device *dev);

void pn_tensor_set_name(pn_tensor *t, const char *name);

#ifdef __cplusplus
}
#endif
#endif
