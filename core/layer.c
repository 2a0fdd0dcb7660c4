#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <plugnet/autograd.h>
#include <plugnet/device.h>
#include <plugnet/layer.h>
#include <plugnet/registry.h>

typedef struct param {
  char *short_name;
  pn_tensor *t;
  int trainable;
} param;

typedef struct param_list {
  param *v;
  int n, cap;
} param_list;

struct pn_layer {
  char *name;
  const pn_layer_iface *iface;
  pn_shape out;
  int training;
  void *state;
  param_list params, buffers;
  pn_device *dev;
};

static uint64_t run_seed;

void pn_set_seed(uint64_t seed) { run_seed = seed; }

/* splitmix64 over the name's FNV-1a hash: well-mixed, stable across runs. */
uint64_t pn_layer_seed(const pn_layer *l) {
  uint64_t h = 1469598103934665603ull;
  for (const char *c = l->name; *c; c++) h = (h ^ (unsigned char)*c) * 1099511628211ull;
  uint64_t z = h + run_seed + 0x9E3779B97F4A7C15ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

static pn_status build(pn_layer *l, const char *feature, const pn_config *cfg, const pn_shape *in,
                       int n_in) {
  pn_config *own = NULL;
  if (!cfg) {
    const pn_feature_info *f = pn_registry_find(feature);
    if (!f || !(own = pn_config_new(f))) return PN_ERR_NOT_FOUND;
    cfg = own;
  }
  pn_status s = pn_config_check(cfg);
  if (s == PN_OK) s = l->iface->build(l, cfg, in, n_in, &l->out);
  if (s != PN_OK) pn_error_prefix(s, "layer '%s' (%s): ", l->name, feature);
  pn_config_free(own);
  return s;
}

pn_status pn_layer_create(const char *feature, const char *name, const pn_config *cfg,
                          const pn_shape *in, int n_in, pn_layer **out) {
  const void *iface = NULL;
  *out = NULL;
  PN_TRY(pn_feature_iface(feature, "layer", &iface));
  const pn_layer_iface *li = iface;
  if (li->size < offsetof(pn_layer_iface, destroy) || !li->build || !li->forward)
    return pn_error(PN_ERR_PLUGIN, "layer '%s': interface lacks build or forward", feature);
  pn_layer *l = calloc(1, sizeof *l);
  if (!l || !(l->name = strdup(name ? name : feature))) {
    free(l);
    return pn_error(PN_ERR_NOMEM, "out of memory creating layer '%s'", feature);
  }
  l->iface = li;
  l->training = 1;
  l->dev = pn_default_device();
  pn_status s = build(l, feature, cfg, in, n_in);
  if (s != PN_OK) {
    pn_layer_free(l);
    return s;
  }
  *out = l;
  return PN_OK;
}

static void free_list(param_list *list) {
  for (int i = 0; i < list->n; i++) {
    free(list->v[i].short_name);
    pn_tensor_unref(list->v[i].t);
  }
  free(list->v);
}

void pn_layer_free(pn_layer *l) {
  if (!l) return;
  if (l->iface->destroy) l->iface->destroy(l);
  free_list(&l->params);
  free_list(&l->buffers);
  free(l->name);
  free(l);
}

pn_status pn_layer_forward(pn_layer *l, pn_tensor *const *in, int n_in, pn_tensor **out) {
  *out = NULL;
  for (int i = 0; i < n_in; i++)
    if (!in[i]) return pn_error(PN_ERR_INVALID, "layer '%s': input %d is NULL", l->name, i);
  pn_status s = l->iface->forward(l, in, n_in, out);
  if (s == PN_OK && !*out) s = pn_error(PN_ERR_PLUGIN, "layer '%s' returned no output", l->name);
  if (s != PN_OK) return pn_error_prefix(s, "layer '%s': ", l->name);
  return PN_OK;
}

const char *pn_layer_name(const pn_layer *l) { return l->name; }
pn_shape pn_layer_out_shape(const pn_layer *l) { return l->out; }
int pn_layer_training(const pn_layer *l) { return l->training; }
void pn_layer_set_training(pn_layer *l, int on) { l->training = on != 0; }
pn_device *pn_layer_device(const pn_layer *l) { return l->dev; }
void *pn_layer_state(const pn_layer *l) { return l->state; }
void pn_layer_set_state(pn_layer *l, void *state) { l->state = state; }

static pn_status add_entry(pn_layer *l, param_list *list, const char *short_name, pn_tensor *t,
                           int trainable) {
  char full[256];
  if (!t) return pn_error(PN_ERR_INVALID, "layer '%s': tensor '%s' is NULL", l->name, short_name);
  if (list->n == list->cap) {
    int cap = list->cap ? list->cap * 2 : 4;
    param *v = realloc(list->v, sizeof *v * (size_t)cap);
    if (!v) return pn_error(PN_ERR_NOMEM, "out of memory adding '%s'", short_name);
    list->v = v;
    list->cap = cap;
  }
  param *p = &list->v[list->n];
  if (!(p->short_name = strdup(short_name))) return pn_error(PN_ERR_NOMEM, "out of memory");
  snprintf(full, sizeof full, "%s.%s", l->name, short_name);
  pn_tensor_set_name(t, full);
  pn_tensor_set_requires_grad(t, trainable);
  p->t = t;
  p->trainable = trainable;
  list->n++;
  return PN_OK;
}

static pn_tensor *entry_by_name(const param_list *list, const char *short_name) {
  for (int i = 0; i < list->n; i++)
    if (strcmp(list->v[i].short_name, short_name) == 0) return list->v[i].t;
  return NULL;
}

pn_status pn_layer_add_param(pn_layer *l, const char *short_name, pn_tensor *t, int trainable) {
  return add_entry(l, &l->params, short_name, t, trainable);
}

int pn_layer_param_count(const pn_layer *l) { return l->params.n; }

pn_tensor *pn_layer_param(const pn_layer *l, int i) {
  return i >= 0 && i < l->params.n ? l->params.v[i].t : NULL;
}

pn_tensor *pn_layer_param_by_name(const pn_layer *l, const char *short_name) {
  return entry_by_name(&l->params, short_name);
}

pn_status pn_layer_add_buffer(pn_layer *l, const char *short_name, pn_tensor *t) {
  return add_entry(l, &l->buffers, short_name, t, 0);
}

int pn_layer_buffer_count(const pn_layer *l) { return l->buffers.n; }

pn_tensor *pn_layer_buffer(const pn_layer *l, int i) {
  return i >= 0 && i < l->buffers.n ? l->buffers.v[i].t : NULL;
}

pn_tensor *pn_layer_buffer_by_name(const pn_layer *l, const char *short_name) {
  return entry_by_name(&l->buffers, short_name);
}

static pn_status move_list(pn_layer *l, param_list *list, pn_device *dev) {
  for (int i = 0; i < list->n; i++) {
    pn_tensor *moved = pn_tensor_to(list->v[i].t, dev);
    if (!moved)
      return pn_error_prefix(PN_ERR_DEVICE, "moving layer '%s' to %s: ", l->name, dev->name);
    pn_tensor_unref(list->v[i].t);
    list->v[i].t = moved;
  }
  return PN_OK;
}

pn_status pn_layer_to(pn_layer *l, pn_device *dev) {
  PN_TRY(move_list(l, &l->params, dev));
  PN_TRY(move_list(l, &l->buffers, dev));
  l->dev = dev;
  return PN_OK;
}
