/* Functions shared between core objects but not part of the public API.
 * The pni_ prefix keeps them out of libplugnet's exported symbols. */
#ifndef PLUGNET_INTERNAL_H
#define PLUGNET_INTERNAL_H

#include <plugnet/device.h>
#include <plugnet/layer.h>
#include <plugnet/op.h>

/* device.c: called by plugin.c while a backend plugin's init runs. */
pn_status pni_device_add(const char *name, const char *backend, const pn_device_iface *iface,
                         void *ctx);
/* device.c: drops the devices of a backend whose plugin is unloaded. */
void pni_devices_remove_backend(const char *backend);
/* op.c: the kernel table. */
int pni_backend_id(const char *backend); /* registers the name if new */
pn_status pni_kernel_add(const char *backend, int op, pn_kernel_fn fn);
void pni_kernels_remove_backend(const char *backend);
/* op.c: registers the core ops' names; idempotent. */
void pni_ops_init(void);

/* autograd.c: a tensor on the tape is being freed. */
void pni_autograd_tensor_freed(pn_tensor *t);
/* autograd.c: runs forward hooks after an op. */
void pni_autograd_forward_hooks(const char *op, pn_tensor *const *in, int n_in, pn_tensor *out);
/* autograd.c: out's node stops holding the inputs in `mask` (bit i = input
 * i), keeping only where their gradients go: for ops whose backward needs
 * no input values (add, or relu computed from its output), so activations
 * are not kept twice. Leaves are always kept. */
void pni_autograd_drop_inputs(pn_tensor *out, uint32_t mask);
/* tensor.c: a new contiguous tensor shaped like s on dev, without autograd state. */
pn_tensor *pni_tensor_alloc(pn_device *dev, pn_dtype dt, const pn_shape *s);


/* registry.c: whether this library runs from its build tree. */
int pni_running_uninstalled(void);

/* ops.c: the pieces every math-API file (ops.c, ops_conv.c, ops_nn.c) builds
 * its ops from. pni_run_op runs one op on contiguous copies of its inputs
 * into a new output of `shape`; pni_record puts it on the tape (dropping out
 * on failure); the others set the error message and return NULL / 1. */
#include <plugnet/autograd.h>
pn_tensor *pni_run_op(int op, const pn_op_params *p, pn_tensor *const *in, int n,
                      const pn_shape *shape, pn_dtype dt, const char *name);
pn_tensor *pni_record(const char *name, pn_tensor *const *in, int n, pn_tensor *out,
                      pn_backward_fn bw, pn_tensor *const *saved, int n_saved,
                      const pn_op_params *p, int keep_out);
int pni_any_null(pn_tensor *const *in, int n);
pn_tensor *pni_fail_shape(const char *op, const pn_tensor *a, const pn_tensor *b, const char *why);
pn_tensor *pni_require_f32(pn_tensor *x, const char *op);

#endif
