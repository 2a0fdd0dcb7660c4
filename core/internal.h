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
/* tensor.c: a new contiguous tensor shaped like s on dev, without autograd state. */
pn_tensor *pni_tensor_alloc(pn_device *dev, pn_dtype dt, const pn_shape *s);

#endif
