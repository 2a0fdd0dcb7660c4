#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <plugnet/autograd.h>
#include <plugnet/device.h>
#include <plugnet/ops.h>
#include <plugnet/tensor.h>

#include "internal.h"

static const size_t dtype_sizes[PN_DTYPE_COUNT] = {4, 4, 8, 1};
static const char *const dtype_names[PN_DTYPE_COUNT] = {"f32", "i32", "i64", "u8"};

size_t pn_dtype_size(pn_dtype dt) { return (unsigned)dt < PN_DTYPE_COUNT ? dtype_sizes[dt] : 0; }

const char *pn_dtype_name(pn_dtype dt) {
  return (unsigned)dt < PN_DTYPE_COUNT ? dtype_names[dt] : "?";
}

int pn_dtype_parse(const char *s) {
  for (int i = 0; i < PN_DTYPE_COUNT; i++)
    if (strcmp(s, dtype_names[i]) == 0) return i;
  return -1;
}

pn_shape pn_shape_make(int ndim, const int64_t *dim) {
  pn_shape s = {0, {0}};
  s.ndim = ndim < 0 ? 0 : ndim > PN_MAX_DIMS ? PN_MAX_DIMS : ndim;
  for (int i = 0; i < s.ndim; i++) s.dim[i] = dim[i];
  return s;
}

int64_t pn_shape_numel(const pn_shape *s) {
  int64_t n = 1;
  for (int i = 0; i < s->ndim; i++) n *= s->dim[i];
  return n;
}

int pn_shape_equal(const pn_shape *a, const pn_shape *b) {
  if (a->ndim != b->ndim) return 0;
  for (int i = 0; i < a->ndim; i++)
    if (a->dim[i] != b->dim[i]) return 0;
  return 1;
}

const char *pn_shape_str(const pn_shape *s, char *buf, size_t n) {
  size_t used = 0;
  if (n == 0) return buf;
  buf[0] = '\0';
  if (s->ndim == 0) snprintf(buf, n, "scalar");
  for (int i = 0; i < s->ndim && used < n; i++)
    used += (size_t)snprintf(buf + used, n - used, i ? "x%lld" : "%lld", (long long)s->dim[i]);
  return buf;
}

static int shape_valid(const pn_shape *s) {
  if (s->ndim < 0 || s->ndim > PN_MAX_DIMS) return 0;
  for (int i = 0; i < s->ndim; i++)
    if (s->dim[i] < 0) return 0;
  return 1;
}

static void set_contiguous_strides(pn_tensor *t) {
  int64_t st = 1;
  for (int i = t->ndim - 1; i >= 0; i--) {
    t->stride[i] = st;
    st *= t->shape[i];
  }
}

pn_tensor *pni_tensor_alloc(pn_device *dev, pn_dtype dt, const pn_shape *s) {
  pn_tensor *t = calloc(1, sizeof *t);
  if (!t) {
    pn_error(PN_ERR_NOMEM, "out of memory for a tensor");
    return NULL;
  }
  t->buf = pn_buffer_new(dev, (size_t)pn_shape_numel(s) * pn_dtype_size(dt));
  if (!t->buf) {
    free(t);
    return NULL;
  }
  t->refs = 1;
  t->dtype = dt;
  t->ndim = s->ndim;
  memcpy(t->shape, s->dim, sizeof(int64_t) * (size_t)s->ndim);
  set_contiguous_strides(t);
  return t;
}

pn_tensor *pn_tensor_new_shape(pn_device *dev, pn_dtype dt, const pn_shape *s) {
  char buf[96];
  if (!dev) dev = pn_default_device();
  if (!dev) {
    pn_error(PN_ERR_DEVICE, "no backend could be loaded: %s", pn_last_error());
    return NULL;
  }
  if ((unsigned)dt >= PN_DTYPE_COUNT) {
    pn_error(PN_ERR_INVALID, "unknown dtype %d", (int)dt);
    return NULL;
  }
  if (!shape_valid(s)) {
    pn_error(PN_ERR_SHAPE, "invalid shape %s (ndim %d)", pn_shape_str(s, buf, sizeof buf), s->ndim);
    return NULL;
  }
  return pni_tensor_alloc(dev, dt, s);
}

pn_tensor *pn_tensor_new(pn_device *dev, pn_dtype dt, int ndim, const int64_t *shape) {
  if (ndim < 0 || ndim > PN_MAX_DIMS) {
    pn_error(PN_ERR_SHAPE, "a tensor has at most %d dimensions, not %d", PN_MAX_DIMS, ndim);
    return NULL;
  }
  pn_shape s = pn_shape_make(ndim, shape);
  return pn_tensor_new_shape(dev, dt, &s);
}

pn_tensor *pn_tensor_from_host(pn_device *dev, pn_dtype dt, int ndim, const int64_t *shape,
                               const void *host) {
  pn_tensor *t = pn_tensor_new(dev, dt, ndim, shape);
  if (t && pn_tensor_write(t, host, pn_tensor_nbytes(t)) != PN_OK) {
    pn_tensor_unref(t);
    return NULL;
  }
  return t;
}

pn_tensor *pn_tensor_ref(pn_tensor *t) {
  if (t) __atomic_add_fetch(&t->refs, 1, __ATOMIC_RELAXED);
  return t;
}

void pn_tensor_unref(pn_tensor *t) {
  if (!t || __atomic_sub_fetch(&t->refs, 1, __ATOMIC_ACQ_REL) != 0) return;
  pni_autograd_tensor_freed(t);
  pn_tensor_unref(t->grad);
  pn_buffer_unref(t->buf);
  free(t->name);
  free(t);
}

int64_t pn_tensor_numel(const pn_tensor *t) {
  int64_t n = 1;
  for (int i = 0; i < t->ndim; i++) n *= t->shape[i];
  return n;
}

pn_shape pn_tensor_shape(const pn_tensor *t) { return pn_shape_make(t->ndim, t->shape); }

int pn_tensor_is_contiguous(const pn_tensor *t) {
  int64_t st = 1;
  for (int i = t->ndim - 1; i >= 0; i--) {
    if (t->shape[i] != 1 && t->stride[i] != st) return 0;
    st *= t->shape[i];
  }
  return 1;
}

pn_device *pn_tensor_device(const pn_tensor *t) { return t->buf->dev; }

size_t pn_tensor_nbytes(const pn_tensor *t) {
  return (size_t)pn_tensor_numel(t) * pn_dtype_size(t->dtype);
}

void *pn_tensor_data(const pn_tensor *t) {
  if (!t->buf->host) return NULL;
  return (char *)t->buf->host + (size_t)t->offset * pn_dtype_size(t->dtype);
}

static pn_status check_transfer(const pn_tensor *t, size_t bytes, const char *what) {
  if (!pn_tensor_is_contiguous(t))
    return pn_error(PN_ERR_INVALID, "%s: tensor is not contiguous", what);
  if (bytes != pn_tensor_nbytes(t))
    return pn_error(PN_ERR_INVALID, "%s: %zu bytes given, tensor holds %zu", what, bytes,
                    pn_tensor_nbytes(t));
  return PN_OK;
}

pn_status pn_tensor_read(const pn_tensor *t, void *dst, size_t bytes) {
  PN_TRY(check_transfer(t, bytes, "pn_tensor_read"));
  pn_device *d = t->buf->dev;
  PN_TRY(pn_device_synchronize(d));
  if (t->buf->host) {
    memcpy(dst, pn_tensor_data(t), bytes);
    return PN_OK;
  }
  return d->iface->download(d->ctx, dst, t->buf->mem, (size_t)t->offset * pn_dtype_size(t->dtype),
                            bytes);
}

pn_status pn_tensor_write(pn_tensor *t, const void *src, size_t bytes) {
  PN_TRY(check_transfer(t, bytes, "pn_tensor_write"));
  pn_device *d = t->buf->dev;
  if (t->buf->host) {
    PN_TRY(pn_device_synchronize(d));
    memcpy(pn_tensor_data(t), src, bytes);
    return PN_OK;
  }
  return d->iface->upload(d->ctx, t->buf->mem, (size_t)t->offset * pn_dtype_size(t->dtype), src,
                          bytes);
}

float pn_tensor_get_f32(const pn_tensor *t, int64_t i) {
  float v = 0.0f;
  if (t->dtype != PN_F32 || i < 0 || i >= pn_tensor_numel(t)) return v;
  if (t->buf->host && pn_tensor_is_contiguous(t)) return ((const float *)pn_tensor_data(t))[i];
  pn_device *d = t->buf->dev;
  if (d->iface->download)
    d->iface->download(d->ctx, &v, t->buf->mem, (size_t)(t->offset + i) * sizeof(float), sizeof v);
  return v;
}

static pn_tensor *shallow_view(pn_tensor *t) {
  pn_tensor *v = calloc(1, sizeof *v);
  if (!v) {
    pn_error(PN_ERR_NOMEM, "out of memory for a view");
    return NULL;
  }
  v->refs = 1;
  v->dtype = t->dtype;
  v->ndim = t->ndim;
  memcpy(v->shape, t->shape, sizeof v->shape);
  memcpy(v->stride, t->stride, sizeof v->stride);
  v->offset = t->offset;
  v->buf = t->buf;
  __atomic_add_fetch(&t->buf->refs, 1, __ATOMIC_RELAXED);
  return v;
}

pn_tensor *pn_tensor_view(pn_tensor *t, int ndim, const int64_t *shape) {
  char a[96], b[96];
  if (!t) return NULL;
  pn_shape s = pn_shape_make(ndim, shape);
  pn_shape old = pn_tensor_shape(t);
  if (ndim > PN_MAX_DIMS || !shape_valid(&s) || pn_shape_numel(&s) != pn_tensor_numel(t)) {
    pn_error(PN_ERR_SHAPE, "cannot view %s as %s", pn_shape_str(&old, a, sizeof a),
             pn_shape_str(&s, b, sizeof b));
    return NULL;
  }
  if (!pn_tensor_is_contiguous(t)) {
    pn_error(PN_ERR_SHAPE, "cannot view a non-contiguous %s tensor as %s",
             pn_shape_str(&old, a, sizeof a), pn_shape_str(&s, b, sizeof b));
    return NULL;
  }
  pn_tensor *v = shallow_view(t);
  if (!v) return NULL;
  v->ndim = s.ndim;
  memcpy(v->shape, s.dim, sizeof v->shape);
  set_contiguous_strides(v);
  return v;
}

pn_tensor *pn_tensor_transposed(pn_tensor *t, int d0, int d1) {
  if (!t) return NULL;
  if (d0 < 0) d0 += t->ndim;
  if (d1 < 0) d1 += t->ndim;
  if (d0 < 0 || d1 < 0 || d0 >= t->ndim || d1 >= t->ndim) {
    pn_error(PN_ERR_SHAPE, "transpose: dimensions %d, %d out of range for %d-D tensor", d0, d1,
             t->ndim);
    return NULL;
  }
  pn_tensor *v = shallow_view(t);
  if (!v) return NULL;
  int64_t sh = v->shape[d0], st = v->stride[d0];
  v->shape[d0] = v->shape[d1];
  v->stride[d0] = v->stride[d1];
  v->shape[d1] = sh;
  v->stride[d1] = st;
  return v;
}

static pn_status copy_across(const pn_tensor *src, pn_tensor *dst) {
  size_t n = pn_tensor_nbytes(src);
  if (src->buf->host) return pn_tensor_write(dst, pn_tensor_data(src), n);
  void *tmp = malloc(n ? n : 1);
  if (!tmp) return pn_error(PN_ERR_NOMEM, "out of memory moving %zu bytes", n);
  pn_status s = pn_tensor_read(src, tmp, n);
  if (s == PN_OK) s = pn_tensor_write(dst, tmp, n);
  free(tmp);
  return s;
}

pn_tensor *pn_tensor_to(pn_tensor *t, pn_device *dev) {
  if (!t) return NULL;
  if (!dev) dev = pn_default_device();
  int was = pn_set_grad_enabled(0);
  pn_tensor *src = pn_tensor_is_contiguous(t) ? pn_tensor_ref(t) : pn_contiguous(t);
  pn_set_grad_enabled(was);
  if (!src) return NULL;
  pn_shape s = pn_tensor_shape(t);
  pn_tensor *out = pn_tensor_new_shape(dev, t->dtype, &s);
  if (out && copy_across(src, out) != PN_OK) {
    pn_tensor_unref(out);
    out = NULL;
  }
  pn_tensor_unref(src);
  if (!out) return NULL;
  out->requires_grad = t->requires_grad;
  if (t->name) pn_tensor_set_name(out, t->name);
  return out;
}

void pn_tensor_set_name(pn_tensor *t, const char *name) {
  free(t->name);
  t->name = name ? strdup(name) : NULL;
}
