/* Datasets: thin wrappers over a "data" feature's interface that check what
 * the plugin gives back once, at open, so the loader can trust it. */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <plugnet/data.h>
#include <plugnet/registry.h>
#include <plugnet/transform.h>

/* The plugin's dataset, shared by every pn_dataset over it (a validation
 * split sees the training files through other transforms). */
typedef struct shared_ds {
  void *ds;
  int refs;
} shared_ds;

struct pn_dataset {
  const pn_dataset_iface *iface;
  shared_ds *shared;
  void *ds;
  pn_dataset_info info;
  const char *feature; /* the registry's copy, alive while the plugin is loaded */
  int has_class_name;  /* the slot is optional and may lie beyond an older iface */
  int has_image, has_sample_name;
  int image_set; /* samples of any size, made tensors by transforms */
  const pn_transforms *tf;
};

static int has_slot(const pn_dataset_iface *di, size_t offset, const void *fn) {
  return di->size >= offset + sizeof(void *) && fn != NULL;
}

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
  const pn_dataset_iface *di = d->iface;
  d->has_class_name = has_slot(di, offsetof(pn_dataset_iface, class_name), di->class_name);
  d->has_image = has_slot(di, offsetof(pn_dataset_iface, probe), di->probe) &&
                 has_slot(di, offsetof(pn_dataset_iface, decode), di->decode);
  d->has_sample_name = has_slot(di, offsetof(pn_dataset_iface, sample_name), di->sample_name);
  pn_status s = (d->shared = calloc(1, sizeof *d->shared)) ? open_with(d, f, cfg) : PN_ERR_NOMEM;
  if (s == PN_OK) d->shared->ds = d->ds, d->shared->refs = 1;
  if (s == PN_OK) s = d->iface->info(d->ds, &d->info);
  if (s == PN_OK) s = check_info(feature, &d->info);
  if (s == PN_OK && d->info.x_shape.ndim == 0 && !d->has_image)
    s = pn_error(PN_ERR_PLUGIN, "data '%s': samples of any size, but no probe and decode slots",
                 feature);
  d->image_set = d->has_image && d->info.x_shape.ndim == 0;
  if (s != PN_OK) {
    pn_dataset_close(d);
    return s;
  }
  *out = d;
  return PN_OK;
}

const pn_dataset_info *pn_dataset_get_info(const pn_dataset *d) { return d ? &d->info : NULL; }

pn_dataset *pn_dataset_share(pn_dataset *d) {
  pn_dataset *copy = d ? malloc(sizeof *copy) : NULL;
  if (!copy) return NULL;
  *copy = *d;
  copy->tf = NULL;
  copy->shared->refs++;
  return copy;
}

int pn_dataset_is_image(const pn_dataset *d) { return d && d->image_set; }

const char *pn_dataset_sample_name(pn_dataset *d, int64_t idx) {
  if (!d || !d->has_sample_name || idx < 0 || idx >= d->info.length) return NULL;
  return d->iface->sample_name(d->ds, idx);
}

static const char *sample_label(pn_dataset *d, int64_t idx, char *buf, size_t n) {
  const char *name = pn_dataset_sample_name(d, idx);
  if (name) return name;
  snprintf(buf, n, "sample %lld", (long long)idx);
  return buf;
}

/* Probe, transform the view, decode no finer than the view needs, resample. */
static pn_status read_image(pn_dataset *d, int64_t idx, uint64_t key, float *x, int64_t *y) {
  int w = 0, h = 0;
  char buf[64];
  PN_TRY(d->iface->probe(d->ds, idx, &w, &h, y));
  pn_rng r = pn_rng_make(key, (uint64_t)idx);
  pn_view v;
  pn_transforms_view(d->tf, w, h, &r, &v);
  if (v.w != d->info.x_shape.dim[2] || v.h != d->info.x_shape.dim[1])
    return pn_error(PN_ERR_INVALID,
                    "%s comes out %dx%d after the transforms, not %lldx%lld like the first "
                    "sample: end them with a crop to one size (center_crop, random_resized_crop)",
                    sample_label(d, idx, buf, sizeof buf), v.w, v.h,
                    (long long)d->info.x_shape.dim[2], (long long)d->info.x_shape.dim[1]);
  pn_image img = {0, 0, NULL};
  PN_TRY(d->iface->decode(d->ds, idx, pn_view_reduce(&v), &img));
  pn_transforms_finish(d->tf, &v, &img, &r, x);
  pn_image_free(&img);
  return PN_OK;
}

static pn_status read_images(pn_dataset *d, const int64_t *idx, int64_t n, uint64_t key, float *x,
                             int64_t *y) {
  if (!d->tf)
    return pn_error(PN_ERR_INVALID,
                    "its images differ in size: give the set transforms that make them one "
                    "size, e.g. transforms: [{type: resize, size: 146}, {type: center_crop, "
                    "size: 128}]");
  int64_t numel = pn_shape_numel(&d->info.x_shape);
  for (int64_t i = 0; i < n; i++) PN_TRY(read_image(d, idx[i], key, x + i * numel, y + i));
  return PN_OK;
}

pn_status pn_dataset_read_aug(pn_dataset *d, const int64_t *idx, int64_t n, uint64_t aug_key,
                              float *x, int64_t *y) {
  if (!d || n < 0 || (n > 0 && !idx))
    return pn_error(PN_ERR_INVALID, "pn_dataset_read: NULL dataset or indices, or n < 0");
  for (int64_t i = 0; i < n; i++)
    if (idx[i] < 0 || idx[i] >= d->info.length)
      return pn_error(PN_ERR_INVALID, "data '%s': sample %lld out of range [0, %lld)", d->feature,
                      (long long)idx[i], (long long)d->info.length);
  if (n == 0) return PN_OK;
  pn_status s = pn_dataset_is_image(d) ? read_images(d, idx, n, aug_key, x, y)
                                       : d->iface->read(d->ds, idx, n, x, y);
  if (s != PN_OK) return pn_error_prefix(s, "data '%s': ", d->feature);
  return PN_OK;
}

pn_status pn_dataset_read(pn_dataset *d, const int64_t *idx, int64_t n, float *x, int64_t *y) {
  return pn_dataset_read_aug(d, idx, n, 0, x, y);
}

pn_status pn_dataset_target(pn_dataset *d, int64_t idx, int64_t *y) {
  if (!d || idx < 0 || idx >= d->info.length)
    return pn_error(PN_ERR_INVALID, "pn_dataset_target: no dataset or sample out of range");
  if (d->has_image) {
    int w, h;
    return d->iface->probe(d->ds, idx, &w, &h, y);
  }
  int64_t numel = pn_shape_numel(&d->info.x_shape);
  float *x = malloc(sizeof *x * (size_t)(numel ? numel : 1));
  pn_status s = x ? pn_dataset_read(d, &idx, 1, x, y) : PN_ERR_NOMEM;
  free(x);
  return s;
}

pn_status pn_dataset_set_transforms(pn_dataset *d, const pn_transforms *t) {
  if (!d) return pn_error(PN_ERR_INVALID, "pn_dataset_set_transforms: no dataset");
  if (!d->image_set)
    return t ? pn_error(PN_ERR_INVALID, "data '%s' is not an image set: it takes no transforms",
                        d->feature)
             : PN_OK;
  d->tf = t;
  memset(&d->info.x_shape, 0, sizeof d->info.x_shape);
  if (!t || d->info.length == 0) return PN_OK;
  int w = 0, h = 0;
  int64_t y;
  char buf[64];
  pn_status s = d->iface->probe(d->ds, 0, &w, &h, &y);
  if (s != PN_OK) return pn_error_prefix(s, "data '%s': ", d->feature);
  pn_rng r = pn_rng_make(0, 0);
  pn_view v;
  pn_transforms_view(t, w, h, &r, &v);
  if (v.w < 1 || v.h < 1)
    return pn_error(PN_ERR_INVALID, "data '%s': %s comes out empty after the transforms",
                    d->feature, sample_label(d, 0, buf, sizeof buf));
  d->info.x_shape.ndim = 3;
  d->info.x_shape.dim[0] = 3;
  d->info.x_shape.dim[1] = v.h;
  d->info.x_shape.dim[2] = v.w;
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
  if (d->shared && --d->shared->refs <= 0) {
    if (d->shared->ds) d->iface->close(d->shared->ds);
    free(d->shared);
  } else if (!d->shared && d->ds) {
    d->iface->close(d->ds);
  }
  free(d);
}
