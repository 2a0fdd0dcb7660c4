/* Layers: a feature that turns input tensors into an output with autograd
 * ops, owning named parameters (PyTorch-style names such as "fc1.weight"). */
#ifndef PLUGNET_LAYER_H
#define PLUGNET_LAYER_H

#include <plugnet/config.h>
#include <plugnet/status.h>
#include <plugnet/tensor.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct pn_layer pn_layer;

typedef struct pn_layer_iface {
  size_t size; /* sizeof(pn_layer_iface) the plugin was built with */
  /* Reads the config, creates parameters with pn_layer_add_param and sets
   * *out to the output shape (per sample, no batch dimension). */
  pn_status (*build)(pn_layer *l, const pn_config *cfg, const pn_shape *in, int n_in,
                     pn_shape *out);
  /* Batched forward with ops from ops.h, so autograd records it. */
  pn_status (*forward)(pn_layer *l, pn_tensor *const *in, int n_in, pn_tensor **out);
  void (*destroy)(pn_layer *l); /* optional: frees pn_layer_state() */
  void *reserved[8];
} pn_layer_iface;

/* Creates a layer of the named feature (loading its plugin on first use).
 * `cfg` may be NULL for all defaults; `name` prefixes parameter names. */
pn_status pn_layer_create(const char *feature, const char *name, const pn_config *cfg,
                          const pn_shape *in, int n_in, pn_layer **out);
void pn_layer_free(pn_layer *l);
pn_status pn_layer_forward(pn_layer *l, pn_tensor *const *in, int n_in, pn_tensor **out);

const char *pn_layer_name(const pn_layer *l);
pn_shape pn_layer_out_shape(const pn_layer *l);
int pn_layer_training(const pn_layer *l);
void pn_layer_set_training(pn_layer *l, int on);
pn_device *pn_layer_device(const pn_layer *l);
/* A seed for parameter initialisation: the run's seed mixed with the layer
 * name, so adding a layer does not change the others' initial values. */
uint64_t pn_layer_seed(const pn_layer *l);
void pn_set_seed(uint64_t seed);
void *pn_layer_state(const pn_layer *l);
void pn_layer_set_state(pn_layer *l, void *state);

/* Adds a parameter (takes the reference) named "<layer>.<short>". */
pn_status pn_layer_add_param(pn_layer *l, const char *short_name, pn_tensor *t, int trainable);
int pn_layer_param_count(const pn_layer *l);
pn_tensor *pn_layer_param(const pn_layer *l, int i); /* borrowed */
pn_tensor *pn_layer_param_by_name(const pn_layer *l, const char *short_name);
/* Adds a buffer (takes the reference): state that checkpoints save and
 * pn_layer_to moves, but that is neither trained nor counted among the
 * parameters, like batch-norm's running statistics (PyTorch's buffers). */
pn_status pn_layer_add_buffer(pn_layer *l, const char *short_name, pn_tensor *t);
int pn_layer_buffer_count(const pn_layer *l);
pn_tensor *pn_layer_buffer(const pn_layer *l, int i); /* borrowed */
pn_tensor *pn_layer_buffer_by_name(const pn_layer *l, const char *short_name);
/* Moves every parameter and buffer to dev. */
pn_status pn_layer_to(pn_layer *l, pn_device *dev);

#ifdef __cplusplus
}
#endif
#endif
