#include <stdlib.h>
#include <string.h>

#include <plugnet/autograd.h>
#include <plugnet/model.h>
#include <plugnet/ops.h>

struct pn_model {
  pn_shape input;
  pn_layer **layers;
  int n_layers, cap_layers;
};

pn_status pn_model_new(const pn_shape *input, pn_model **out) {
  *out = calloc(1, sizeof **out);
  if (!*out) return pn_error(PN_ERR_NOMEM, "out of memory creating a model");
  (*out)->input = *input;
  return PN_OK;
}

void pn_model_free(pn_model *m) {
  if (!m) return;
  for (int i = 0; i < m->n_layers; i++) pn_layer_free(m->layers[i]);
  free(m->layers);
  free(m);
}

pn_shape pn_model_input_shape(const pn_model *m) { return m->input; }

pn_shape pn_model_output_shape(const pn_model *m) {
  return m->n_layers ? pn_layer_out_shape(m->layers[m->n_layers - 1]) : m->input;
}

pn_status pn_model_add(pn_model *m, const char *name, const char *feature, const pn_config *cfg) {
  for (int i = 0; i < m->n_layers; i++)
    if (strcmp(pn_layer_name(m->layers[i]), name) == 0)
      return pn_error(PN_ERR_INVALID, "two layers are named '%s'", name);
  if (m->n_layers == m->cap_layers) {
    int cap = m->cap_layers ? 2 * m->cap_layers : 8;
    pn_layer **l = realloc(m->layers, sizeof *l * (size_t)cap);
    if (!l) return pn_error(PN_ERR_NOMEM, "out of memory adding layer '%s'", name);
    m->layers = l;
    m->cap_layers = cap;
  }
  pn_shape in = pn_model_output_shape(m);
  pn_layer *l = NULL;
  PN_TRY(pn_layer_create(feature, name, cfg, &in, 1, &l));
  m->layers[m->n_layers++] = l;
  return PN_OK;
}

pn_status pn_model_forward(pn_model *m, pn_tensor *x, pn_tensor **y) {
  pn_tensor *cur = pn_tensor_ref(x);
  for (int i = 0; i < m->n_layers; i++) {
    pn_tensor *next = NULL;
    pn_status s = pn_layer_forward(m->layers[i], &cur, 1, &next);
    pn_tensor_unref(cur);
    if (s != PN_OK) return s;
    cur = next;
  }
  *y = cur;
  return PN_OK;
}

void pn_model_set_training(pn_model *m, int on) {
  for (int i = 0; i < m->n_layers; i++) pn_layer_set_training(m->layers[i], on);
}

int pn_model_layer_count(const pn_model *m) { return m->n_layers; }
pn_layer *pn_model_layer(const pn_model *m, int i) {
  return i >= 0 && i < m->n_layers ? m->layers[i] : NULL;
}

/* Parameter i of the model, as (layer, index within the layer). */
static int locate(const pn_model *m, int i, int *j) {
  for (int l = 0; l < m->n_layers; l++) {
    int n = pn_layer_param_count(m->layers[l]);
    if (i < n) {
      *j = i;
      return l;
    }
    i -= n;
  }
  return -1;
}

int pn_model_param_count(const pn_model *m) {
  int n = 0;
  for (int l = 0; l < m->n_layers; l++) n += pn_layer_param_count(m->layers[l]);
  return n;
}

pn_tensor *pn_model_param(const pn_model *m, int i) {
  int j, l = locate(m, i, &j);
  return l < 0 ? NULL : pn_layer_param(m->layers[l], j);
}

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
  for (int l = 0; l < m->n_layers; l++) PN_TRY(pn_layer_to(m->layers[l], dev));
  return PN_OK;
}

pn_status pn_model_state(const pn_model *m, pn_tensor_map *into) {
  for (int i = 0; i < pn_model_param_count(m); i++) {
    pn_tensor *t = pn_model_param(m, i);
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
  for (int i = 0; i < pn_model_param_count(m); i++) {
    pn_tensor *dst = pn_model_param(m, i), *src = pn_tensor_map_get(from, dst->name);
    if (!src) {
      if (strict) return pn_error(PN_ERR_NOT_FOUND, "parameter '%s' is missing", dst->name);
      continue;
    }
    PN_TRY(copy_param(dst, src));
  }
  return PN_OK;
}
