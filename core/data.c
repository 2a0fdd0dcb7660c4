/* Datasets: thin wrappers over a "data" feature's interface that check what
 * the plugin gives back once, at open, so the loader can trust it. */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>

#include <plugnet/data.h>
#include <plugnet/registry.h>

struct pn_dataset {
  const pn_dataset_iface *iface;
  void *ds;
  pn_dataset_info info;
  const char *feature; /* the registry's copy, alive while the plugin is loaded */
  int has_class_name;  /* the slot is optional and may lie beyond an older iface */
};

static pn_status check_iface(const char *feature, const pn_dataset_iface *di) {
  if (di->size < offsetof(pn_dataset_iface, class_name))
    return pn_error(PN_ERR_PLUGIN, "data '%s': interface too small (%zu bytes)", feature, di->size);
  if (!di->open || !di->info || !di->read || !di->close)
    return pn_error(PN_ERR_PLUGIN, "data '%s': interface lacks open, info, read or close", feature);
  return PN_OK;
}

static pn_status check_info(const char *feature, const pn_dataset_info *in) {
  int bad_x = in->x_shape.ndim < 0 || in->x_shape.ndim > PN_MAX_DIMS;
  int bad_y = in->y_shape.ndim < 0 || in->y_shape.ndim > PN_MAX_DIMS;
  for (int i = 0; !bad_x && i < in->x_shape.ndim; i++) bad_x = in->x_shape.dim[i] < 0;
  for (int i = 0; !bad_y && i < in->y_shape.ndim; i++) bad_y = in->y_shape.dim[i] < 0;
  if (in->length < 0 || in->n_classes < 0 || bad_x || bad_y)
    return pn_error(PN_ERR_PLUGIN, "data '%s': info() gave an invalid length, shape or class count",
                    feature);
  return PN_OK;
}

static pn_status open_with(pn_dataset *d, const pn_feature_info *f, const pn_config *cfg) {
  pn_config *own = NULL;
  if (!cfg && !(cfg = own = pn_config_new(f))) return PN_ERR_INVALID;
  pn_status s = pn_config_check(cfg);
  if (s == PN_OK) s = d->iface->open(cfg, &d->ds);
  if (s == PN_OK && !d->ds) s = pn_error(PN_ERR_PLUGIN, "data '%s': open gave no dataset", f->name);
  pn_config_free(own);
  return s;
}

pn_status pn_dataset_open(const char *feature, const pn_config *cfg, pn_dataset **out) {
  const void *iface = NULL;
  if (!out) return pn_error(PN_ERR_INVALID, "pn_dataset_open: out is NULL");
  *out = NULL;
  if (!feature) return pn_error(PN_ERR_INVALID, "pn_dataset_open: feature is NULL");
  PN_TRY(pn_feature_iface(feature, "data", &iface));
  const pn_feature_info *f = pn_registry_find(feature);
  if (!f) return PN_ERR_NOT_FOUND;
  PN_TRY(check_iface(feature, iface));
  pn_dataset *d = calloc(1, sizeof *d);
  if (!d) return pn_error(PN_ERR_NOMEM, "data '%s': out of memory", feature);
  d->iface = iface;
  d->feature = f->name;
  d->has_class_name = d->iface->size >= offsetof(pn_dataset_iface, class_name) + sizeof(void *) &&
                      d->iface->class_name;
  pn_status s = open_with(d, f, cfg);
  if (s == PN_OK) s = d->iface->info(d->ds, &d->info);
  if (s == PN_OK) s = check_info(feature, &d->info);
  if (s != PN_OK) {
    pn_dataset_close(d);
    return s;
  }
  *out = d;
  return PN_OK;
}

const pn_dataset_info *pn_dataset_get_info(const pn_dataset *d) { return d ? &d->info : NULL; }

pn_status pn_dataset_read(pn_dataset *d, const int64_t *idx, int64_t n, float *x, int64_t *y) {
  if (!d || n < 0 || (n > 0 && !idx))
    return pn_error(PN_ERR_INVALID, "pn_dataset_read: NULL dataset or indices, or n < 0");
  for (int64_t i = 0; i < n; i++)
    if (idx[i] < 0 || idx[i] >= d->info.length)
      return pn_error(PN_ERR_INVALID, "data '%s': sample %lld out of range [0, %lld)", d->feature,
                      (long long)idx[i], (long long)d->info.length);
  if (n == 0) return PN_OK;
  pn_status s = d->iface->read(d->ds, idx, n, x, y);
  if (s != PN_OK) return pn_error_prefix(s, "data '%s': ", d->feature);
  return PN_OK;
}

const char *pn_dataset_class_name(pn_dataset *d, int k, char *buf, size_t n) {
  const char *name = NULL;
  if (d && d->has_class_name && k >= 0 && k < d->info.n_classes)
    name = d->iface->class_name(d->ds, k);
  if (name) return name;
  if (buf && n) snprintf(buf, n, "%d", k);
  return buf;
}

void pn_dataset_close(pn_dataset *d) {
  if (!d) return;
  if (d->ds) d->iface->close(d->ds);
  free(d);
}
