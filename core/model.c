#include <stdlib.h>
#include <string.h>

#include <plugnet/autograd.h>
#include <plugnet/model.h>
#include <plugnet/ops.h>

#define MAX_NODE_INPUTS 8

typedef struct node {
  pn_layer *layer;
  char *feature;
  int inputs[MAX_NODE_INPUTS]; /* node indices; -1 is the model's input */
  int n_inputs;
  int last_use; /* the last node that reads this one's output */
} node;

struct pn_model {
  pn_shape input;
  node *nodes;
  int n_nodes, cap_nodes;
  int *outputs; /* NULL: the last node */
  int n_outputs;
};

pn_status pn_model_new(const pn_shape *input, pn_model **out) {
  *out = calloc(1, sizeof **out);
  if (!*out) return pn_error(PN_ERR_NOMEM, "out of memory creating a model");
  (*out)->input = *input;
  return PN_OK;
}

void pn_model_free(pn_model *m) {
  if (!m) return;
  for (int i = 0; i < m->n_nodes; i++) {
    pn_layer_free(m->nodes[i].layer);
    free(m->nodes[i].feature);
  }
  free(m->nodes);
  free(m->outputs);
  free(m);
}

pn_shape pn_model_input_shape(const pn_model *m) { return m->input; }

static int output_node(const pn_model *m, int i) {
  return m->outputs ? m->outputs[i] : m->n_nodes - 1;
}

static pn_shape node_shape(const pn_model *m, int i) {
  return i < 0 ? m->input : pn_layer_out_shape(m->nodes[i].layer);
}

pn_shape pn_model_output_shape(const pn_model *m) { return node_shape(m, output_node(m, 0)); }

int pn_model_find(const pn_model *m, const char *name) {
  for (int i = 0; i < m->n_nodes; i++)
    if (strcmp(pn_layer_name(m->nodes[i].layer), name) == 0) return i;
  return -1;
}

static pn_status resolve_inputs(const pn_model *m, const char *name, const char *const *inputs,
                                int n_inputs, node *nd) {
  if (n_inputs > MAX_NODE_INPUTS)
    return pn_error(PN_ERR_INVALID, "node '%s': %d inputs, at most %d", name, n_inputs,
                    MAX_NODE_INPUTS);
  nd->n_inputs = n_inputs ? n_inputs : 1;
  if (!n_inputs) nd->inputs[0] = m->n_nodes - 1;
  for (int k = 0; k < n_inputs; k++) {
    int j = strcmp(inputs[k], "input") == 0 ? -1 : pn_model_find(m, inputs[k]);
    if (j < 0 && strcmp(inputs[k], "input") != 0)
      return pn_error(PN_ERR_NOT_FOUND, "node '%s': input '%s' is not an earlier node", name,
                      inputs[k]);
    nd->inputs[k] = j;
  }
  return PN_OK;
}

static pn_status grow(pn_model *m) {
  if (m->n_nodes < m->cap_nodes) return PN_OK;
  int cap = m->cap_nodes ? 2 * m->cap_nodes : 16;
  node *v = realloc(m->nodes, sizeof *v * (size_t)cap);
  if (!v) return pn_error(PN_ERR_NOMEM, "out of memory adding a node");
  m->nodes = v;
  m->cap_nodes = cap;
  return PN_OK;
}

pn_status pn_model_add_node(pn_model *m, const char *name, const char *feature,
                            const pn_config *cfg, const char *const *inputs, int n_inputs) {
  if (pn_model_find(m, name) >= 0) return pn_error(PN_ERR_INVALID, "two nodes are named '%s'", name);
  if (strcmp(name, "input") == 0)
    return pn_error(PN_ERR_INVALID, "'input' names the model's input; rename the node");
  PN_TRY(grow(m));
  node nd = {0};
  PN_TRY(resolve_inputs(m, name, inputs, n_inputs, &nd));
  pn_shape shapes[MAX_NODE_INPUTS];
  for (int k = 0; k < nd.n_inputs; k++) shapes[k] = node_shape(m, nd.inputs[k]);
  if (!(nd.feature = strdup(feature))) return pn_error(PN_ERR_NOMEM, "out of memory");
  pn_status s = pn_layer_create(feature, name, cfg, shapes, nd.n_inputs, &nd.layer);
  if (s != PN_OK) {
    free(nd.feature);
    return s;
  }
  nd.last_use = -1;
  for (int k = 0; k < nd.n_inputs; k++)
    if (nd.inputs[k] >= 0) m->nodes[nd.inputs[k]].last_use = m->n_nodes;
  m->nodes[m->n_nodes++] = nd;
  return PN_OK;
}

pn_status pn_model_add(pn_model *m, const char *name, const char *feature, const pn_config *cfg) {
  return pn_model_add_node(m, name, feature, cfg, NULL, 0);
}

pn_status pn_model_set_outputs(pn_model *m, const char *const *names, int n) {
  int *idx = malloc(sizeof *idx * (size_t)(n ? n : 1));
  if (!idx) return pn_error(PN_ERR_NOMEM, "out of memory");
  for (int i = 0; i < n; i++) {
    if ((idx[i] = pn_model_find(m, names[i])) < 0) {
      free(idx);
      return pn_error(PN_ERR_NOT_FOUND, "output '%s' is not a node of the model", names[i]);
    }
  }
  free(m->outputs);
  m->outputs = n ? idx : NULL;
  m->n_outputs = n;
  if (!n) free(idx);
  return PN_OK;
}

int pn_model_output_count(const pn_model *m) { return m->outputs ? m->n_outputs : 1; }

const char *pn_model_output_name(const pn_model *m, int i) {
  if (i < 0 || i >= pn_model_output_count(m) || !m->n_nodes) return NULL;
  return pn_layer_name(m->nodes[output_node(m, i)].layer);
}

static int is_output(const pn_model *m, int i) {
  for (int k = 0; k < pn_model_output_count(m); k++)
    if (output_node(m, k) == i) return 1;
  return 0;
}

/* Runs node i, reading earlier values; -1 reads x. */
static pn_status run_node(pn_model *m, int i, pn_tensor *x, pn_tensor **vals) {
  node *nd = &m->nodes[i];
  pn_tensor *in[MAX_NODE_INPUTS];
  for (int k = 0; k < nd->n_inputs; k++) in[k] = nd->inputs[k] < 0 ? x : vals[nd->inputs[k]];
  return pn_layer_forward(nd->layer, in, nd->n_inputs, &vals[i]);
}

/* Values are dropped after their last reader, so a forward holds only the
 * live activations (and what autograd keeps). */
pn_status pn_model_forward_all(pn_model *m, pn_tensor *x, pn_tensor **ys) {
  if (!m->n_nodes) return pn_error(PN_ERR_INVALID, "the model has no layers");
  pn_tensor **vals = calloc((size_t)m->n_nodes, sizeof *vals);
  if (!vals) return pn_error(PN_ERR_NOMEM, "out of memory running the model");
  pn_status s = PN_OK;
  for (int i = 0; i < m->n_nodes && s == PN_OK; i++) {
    s = run_node(m, i, x, vals);
    for (int k = 0; k < m->nodes[i].n_inputs && s == PN_OK; k++) {
      int j = m->nodes[i].inputs[k];
      if (j >= 0 && m->nodes[j].last_use == i && !is_output(m, j)) {
        pn_tensor_unref(vals[j]);
        vals[j] = NULL;
      }
    }
  }
  for (int k = 0; k < pn_model_output_count(m); k++)
    ys[k] = s == PN_OK ? pn_tensor_ref(vals[output_node(m, k)]) : NULL;
  for (int i = 0; i < m->n_nodes; i++) pn_tensor_unref(vals[i]);
  free(vals);
  return s;
}

pn_status pn_model_forward(pn_model *m, pn_tensor *x, pn_tensor **y) {
  int n = pn_model_output_count(m);
  pn_tensor *one[1], **ys = n == 1 ? one : calloc((size_t)n, sizeof *ys);
  if (!ys) return pn_error(PN_ERR_NOMEM, "out of memory running the model");
  pn_status s = pn_model_forward_all(m, x, ys);
  *y = ys[0];
  for (int k = 1; k < n; k++) pn_tensor_unref(ys[k]);
  if (ys != one) free(ys);
  return s;
}

void pn_model_set_training(pn_model *m, int on) {
  for (int i = 0; i < m->n_nodes; i++) pn_layer_set_training(m->nodes[i].layer, on);
}

int pn_model_layer_count(const pn_model *m) { return m->n_nodes; }
pn_layer *pn_model_layer(const pn_model *m, int i) {
  return i >= 0 && i < m->n_nodes ? m->nodes[i].layer : NULL;
}

int pn_model_node_inputs(const pn_model *m, int i, const int **inputs) {
  if (i < 0 || i >= m->n_nodes) return 0;
  *inputs = m->nodes[i].inputs;
  return m->nodes[i].n_inputs;
}

const char *pn_model_node_feature(const pn_model *m, int i) {
  return i >= 0 && i < m->n_nodes ? m->nodes[i].feature : NULL;
}

/* Tensor i of the model's parameters (or buffers), as (node, index). */
static pn_tensor *nth(const pn_model *m, int i, int buffers) {
  for (int l = 0; l < m->n_nodes && i >= 0; l++) {
    pn_layer *ly = m->nodes[l].layer;
    int n = buffers ? pn_layer_buffer_count(ly) : pn_layer_param_count(ly);
    if (i < n) return buffers ? pn_layer_buffer(ly, i) : pn_layer_param(ly, i);
    i -= n;
  }
  return NULL;
}

static int count(const pn_model *m, int buffers) {
  int n = 0;
  for (int l = 0; l < m->n_nodes; l++)
    n += buffers ? pn_layer_buffer_count(m->nodes[l].layer)
                 : pn_layer_param_count(m->nodes[l].layer);
  return n;
}

int pn_model_param_count(const pn_model *m) { return count(m, 0); }
pn_tensor *pn_model_param(const pn_model *m, int i) { return nth(m, i, 0); }
int pn_model_buffer_count(const pn_model *m) { return count(m, 1); }
pn_tensor *pn_model_buffer(const pn_model *m, int i) { return nth(m, i, 1); }

int pn_model_param_trainable(const pn_model *m, int i) {
  pn_tensor *t = pn_model_param(m, i);
  return t && t->requires_grad;
}

int64_t pn_model_param_numel(const pn_model *m) {
  int64_t n = 0;
  for (int i = 0; i < pn_model_param_count(m); i++) n += pn_tensor_numel(pn_model_param(m, i));
  return n;
}

pn_status pn_model_to(pn_model *m, pn_device *dev) {
  for (int l = 0; l < m->n_nodes; l++) PN_TRY(pn_layer_to(m->nodes[l].layer, dev));
  return PN_OK;
}

/* Parameters, then buffers: the order of a checkpoint's tensors. */
static pn_tensor *state_tensor(const pn_model *m, int i) {
  int np = pn_model_param_count(m);
  return i < np ? pn_model_param(m, i) : pn_model_buffer(m, i - np);
}

static int state_count(const pn_model *m) {
  return pn_model_param_count(m) + pn_model_buffer_count(m);
}

pn_status pn_model_state(const pn_model *m, pn_tensor_map *into) {
  for (int i = 0; i < state_count(m); i++) {
    pn_tensor *t = state_tensor(m, i);
    PN_TRY(pn_tensor_map_put(into, t->name, t));
  }
  return PN_OK;
}

static pn_status copy_param(pn_tensor *dst, pn_tensor *src) {
  char a[96], b[96];
  pn_shape sd = pn_tensor_shape(dst), ss = pn_tensor_shape(src);
  if (!pn_shape_equal(&sd, &ss) || dst->dtype != src->dtype)
    return pn_error(PN_ERR_SHAPE, "parameter '%s': the model has %s %s, the file %s %s", dst->name,
                    pn_dtype_name(dst->dtype), pn_shape_str(&sd, a, sizeof a),
                    pn_dtype_name(src->dtype), pn_shape_str(&ss, b, sizeof b));
  pn_tensor *moved = pn_tensor_to(src, pn_tensor_device(dst));
  if (!moved) return PN_ERR_DEVICE;
  size_t n = pn_tensor_nbytes(moved);
  void *tmp = malloc(n ? n : 1);
  pn_status s = tmp ? pn_tensor_read(moved, tmp, n) : pn_error(PN_ERR_NOMEM, "out of memory");
  if (s == PN_OK) s = pn_tensor_write(dst, tmp, n);
  free(tmp);
  pn_tensor_unref(moved);
  return s;
}

pn_status pn_model_load_state(pn_model *m, const pn_tensor_map *from, int strict) {
  for (int i = 0; i < state_count(m); i++) {
    pn_tensor *dst = state_tensor(m, i), *src = pn_tensor_map_get(from, dst->name);
    if (!src) {
      if (strict) return pn_error(PN_ERR_NOT_FOUND, "parameter '%s' is missing", dst->name);
      continue;
    }
    PN_TRY(copy_param(dst, src));
  }
  return PN_OK;
}
