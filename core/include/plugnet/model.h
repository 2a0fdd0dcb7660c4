/* Models: layers wired in order, each taking the previous output. (Graphs
 * with named inputs and several outputs come with the convolutional models.)
 * Parameters keep PyTorch state_dict names: "<layer>.<param>". */
#ifndef PLUGNET_MODEL_H
#define PLUGNET_MODEL_H

#include <plugnet/checkpoint.h>
#include <plugnet/config.h>
#include <plugnet/layer.h>
#include <plugnet/status.h>
#include <plugnet/tensor.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct pn_model pn_model;

/* An empty model for samples of shape `input` (no batch dimension). */
pn_status pn_model_new(const pn_shape *input, pn_model **out);
void pn_model_free(pn_model *m);
/* Appends a layer of `feature` named `name`, fed by the last layer. */
pn_status pn_model_add(pn_model *m, const char *name, const char *feature, const pn_config *cfg);
/* Batched forward: x [N, input...] -> y [N, output...]. */
pn_status pn_model_forward(pn_model *m, pn_tensor *x, pn_tensor **y);
void pn_model_set_training(pn_model *m, int on);

int pn_model_layer_count(const pn_model *m);
pn_layer *pn_model_layer(const pn_model *m, int i);
pn_shape pn_model_input_shape(const pn_model *m);
pn_shape pn_model_output_shape(const pn_model *m);

/* Every parameter, in layer order (borrowed; the name is t->name). */
int pn_model_param_count(const pn_model *m);
pn_tensor *pn_model_param(const pn_model *m, int i);
int pn_model_param_trainable(const pn_model *m, int i);
int64_t pn_model_param_numel(const pn_model *m);

/* Moves every parameter to dev; pointers from pn_model_param change. */
pn_status pn_model_to(pn_model *m, pn_device *dev);
/* Adds every parameter to `into` under its name. */
pn_status pn_model_state(const pn_model *m, pn_tensor_map *into);
/* Copies parameters from `from` by name; shapes must match. Missing names
 * are errors when `strict`, otherwise skipped. */
pn_status pn_model_load_state(pn_model *m, const pn_tensor_map *from, int strict);

#ifdef __cplusplus
}
#endif
#endif
