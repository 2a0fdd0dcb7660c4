/* Models: directed acyclic graphs of layers. Each node takes the outputs of
 * earlier nodes (by default the one before it; "input" is the model's
 * input) and the model returns one or more named outputs (by default the
 * last node's). Parameters keep PyTorch state_dict names: "<node>.<param>",
 * node names being dotted paths such as "layer1.0.conv1". Model files
 * (share/models, docs/MODELS.md) describe graphs with blocks, repeats,
 * arguments and includes. */
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
/* Appends a node fed by the named earlier nodes, in order ("input": the
 * model's input); n_inputs 0 means the previous node. */
pn_status pn_model_add_node(pn_model *m, const char *name, const char *feature,
                            const pn_config *cfg, const char *const *inputs, int n_inputs);
/* The nodes whose outputs the model returns, in order (default: the last). */
pn_status pn_model_set_outputs(pn_model *m, const char *const *names, int n);
int pn_model_output_count(const pn_model *m);
const char *pn_model_output_name(const pn_model *m, int i);
/* Batched forward: x [N, input...] -> the first output [N, output...]. */
pn_status pn_model_forward(pn_model *m, pn_tensor *x, pn_tensor **y);
/* Every output; ys has pn_model_output_count() slots, each a new reference. */
pn_status pn_model_forward_all(pn_model *m, pn_tensor *x, pn_tensor **ys);
void pn_model_set_training(pn_model *m, int on);

int pn_model_layer_count(const pn_model *m);
pn_layer *pn_model_layer(const pn_model *m, int i);
/* Index of the node named `name`, or -1. */
int pn_model_find(const pn_model *m, const char *name);
/* The nodes that feed node i, as node indices (-1: the model's input). */
int pn_model_node_inputs(const pn_model *m, int i, const int **inputs);
/* The feature (layer type) node i was made from. */
const char *pn_model_node_feature(const pn_model *m, int i);
pn_shape pn_model_input_shape(const pn_model *m);
pn_shape pn_model_output_shape(const pn_model *m); /* the first output's */

/* Every parameter, in layer order (borrowed; the name is t->name). */
int pn_model_param_count(const pn_model *m);
pn_tensor *pn_model_param(const pn_model *m, int i);
int pn_model_param_trainable(const pn_model *m, int i);
int64_t pn_model_param_numel(const pn_model *m);

/* Buffers (batch-norm running statistics ...): saved and moved, not trained. */
int pn_model_buffer_count(const pn_model *m);
pn_tensor *pn_model_buffer(const pn_model *m, int i);

/* Moves every parameter and buffer to dev; pointers from pn_model_param
 * change. */
pn_status pn_model_to(pn_model *m, pn_device *dev);
/* Adds every parameter and buffer to `into` under its name. */
pn_status pn_model_state(const pn_model *m, pn_tensor_map *into);
/* Copies parameters and buffers from `from` by name; shapes must match.
 * Missing names are errors when `strict`, otherwise skipped. */
pn_status pn_model_load_state(pn_model *m, const pn_tensor_map *from, int strict);

/* Builds a model from a model file: a path, or a name looked up as
 * share/models/NAME.yaml (PLUGNET_MODEL_PATH first). `args` are "key=value"
 * overrides of the file's args; `input` NULL takes the file's input. */
pn_status pn_model_from_file(const char *name_or_path, char *const *args, int n_args,
                             const pn_shape *input, pn_model **out);

#ifdef __cplusplus
}
#endif
#endif
