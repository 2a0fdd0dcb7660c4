#include <stdlib.h>
#include <string.h>

#include <plugnet/loader.h>
#include <plugnet/op.h>

struct pn_loader {
  pn_dataset *ds;
  int64_t *base;  /* the subset, in dataset order */
  int64_t *order; /* this epoch's order */
  int64_t n, batch, pos;
  uint64_t aug_key; /* random transforms: a function of (seed, epoch) */
  int shuffle, drop_last;
  uint64_t seed;
  float *x;
  int64_t *y;
  int64_t x_numel, y_numel;
};

/* Fisher-Yates driven by Philox, so the order is a pure function of
 * (seed, epoch) and never of the platform's rand(). */
static void shuffle_indices(int64_t *v, int64_t n, uint64_t seed, uint64_t epoch) {
  for (int64_t i = n - 1; i > 0; i--) {
    uint32_t r[4];
    pn_philox4x32(seed ^ 0x5EEDF00Dull, (epoch << 40) + (uint64_t)i, r);
    uint64_t word = ((uint64_t)r[0] << 32) | r[1];
    int64_t j = (int64_t)(word % (uint64_t)(i + 1));
    int64_t t = v[i];
    v[i] = v[j];
    v[j] = t;
  }
}

pn_status pn_split(int64_t n, double valid_fraction, uint64_t seed, int64_t **train,
                   int64_t *n_train, int64_t **valid, int64_t *n_valid) {
  if (!(valid_fraction >= 0.0 && valid_fraction < 1.0))
    return pn_error(PN_ERR_INVALID, "valid split %g is not in [0, 1)", valid_fraction);
  int64_t *perm = malloc(sizeof *perm * (size_t)(n ? n : 1));
  char *is_valid = calloc((size_t)(n ? n : 1), 1);
  *n_valid = (int64_t)(valid_fraction * (double)n + 0.5);
  *n_train = n - *n_valid;
  *train = malloc(sizeof **train * (size_t)(*n_train ? *n_train : 1));
  *valid = malloc(sizeof **valid * (size_t)(*n_valid ? *n_valid : 1));
  if (!perm || !is_valid || !*train || !*valid) {
    free(perm), free(is_valid), free(*train), free(*valid);
    return pn_error(PN_ERR_NOMEM, "out of memory splitting %lld samples", (long long)n);
  }
  for (int64_t i = 0; i < n; i++) perm[i] = i;
  shuffle_indices(perm, n, seed, 0xFFFFF);
  for (int64_t i = 0; i < *n_valid; i++) is_valid[perm[i]] = 1;
  int64_t t = 0, v = 0;
  for (int64_t i = 0; i < n; i++) {
    if (is_valid[i])
      (*valid)[v++] = i;
    else
      (*train)[t++] = i;
  }
  free(perm);
  free(is_valid);
  return PN_OK;
}

pn_status pn_loader_new(pn_dataset *ds, const int64_t *indices, int64_t n, int64_t batch,
                        int shuffle, uint64_t seed, int drop_last, pn_loader **out) {
  const pn_dataset_info *info = pn_dataset_get_info(ds);
  if (batch < 1)
    return pn_error(PN_ERR_INVALID, "batch size %lld must be at least 1", (long long)batch);
  if (!indices) n = info->length;
  pn_loader *l = calloc(1, sizeof *l);
  if (!l) return pn_error(PN_ERR_NOMEM, "out of memory creating a loader");
  l->ds = ds;
  l->n = n;
  l->batch = batch;
  l->shuffle = shuffle;
  l->drop_last = drop_last;
  l->seed = seed;
  l->x_numel = pn_shape_numel(&info->x_shape);
  l->y_numel = pn_shape_numel(&info->y_shape);
  l->base = malloc(sizeof *l->base * (size_t)(n ? n : 1));
  l->order = malloc(sizeof *l->order * (size_t)(n ? n : 1));
  l->x = malloc(sizeof *l->x * (size_t)(batch * l->x_numel));
  l->y = malloc(sizeof *l->y * (size_t)(batch * l->y_numel));
  if (!l->base || !l->order || !l->x || !l->y) {
    pn_loader_free(l);
    return pn_error(PN_ERR_NOMEM, "out of memory for batches of %lld", (long long)batch);
  }
  for (int64_t i = 0; i < n; i++) l->base[i] = indices ? indices[i] : i;
  pn_loader_start(l, 0, 0);
  *out = l;
  return PN_OK;
}

void pn_loader_free(pn_loader *l) {
  if (!l) return;
  free(l->base), free(l->order), free(l->x), free(l->y);
  free(l);
}

int64_t pn_loader_batches(const pn_loader *l) {
  return l->drop_last ? l->n / l->batch : (l->n + l->batch - 1) / l->batch;
}

int64_t pn_loader_samples(const pn_loader *l) { return l->n; }

void pn_loader_start(pn_loader *l, int64_t epoch, int64_t skip) {
  memcpy(l->order, l->base, sizeof *l->order * (size_t)l->n);
  if (l->shuffle) shuffle_indices(l->order, l->n, l->seed, (uint64_t)epoch);
  l->pos = skip * l->batch;
  uint32_t r[4];
  pn_philox4x32(l->seed ^ 0xA06E7A11ull, (uint64_t)epoch, r);
  l->aug_key = ((uint64_t)r[0] << 32) | r[1];
}

/* Decodes straight into the batch tensors when the device's memory is host
 * memory, through the staging buffers otherwise. */
pn_status pn_loader_next(pn_loader *l, pn_device *dev, pn_tensor **x, pn_tensor **y) {
  *x = *y = NULL;
  int64_t b = l->n - l->pos < l->batch ? l->n - l->pos : l->batch;
  if (b <= 0 || (l->drop_last && b < l->batch)) return PN_OK;
  const pn_dataset_info *info = pn_dataset_get_info(l->ds);
  int64_t xs[PN_MAX_DIMS + 1] = {b}, ys[PN_MAX_DIMS + 1] = {b};
  memcpy(xs + 1, info->x_shape.dim, sizeof(int64_t) * (size_t)info->x_shape.ndim);
  memcpy(ys + 1, info->y_shape.dim, sizeof(int64_t) * (size_t)info->y_shape.ndim);
  *x = pn_tensor_new(dev, PN_F32, info->x_shape.ndim + 1, xs);
  *y = pn_tensor_new(dev, PN_I64, info->y_shape.ndim + 1, ys);
  pn_status s = *x && *y ? PN_OK : PN_ERR_NOMEM;
  float *xd = s == PN_OK ? pn_tensor_data(*x) : NULL;
  int64_t *yd = s == PN_OK ? pn_tensor_data(*y) : NULL;
  if (s == PN_OK) s = pn_dataset_read_aug(l->ds, l->order + l->pos, b, l->aug_key, xd ? xd : l->x,
                                         yd ? yd : l->y);
  if (s == PN_OK && !xd) s = pn_tensor_write(*x, l->x, pn_tensor_nbytes(*x));
  if (s == PN_OK && !yd) s = pn_tensor_write(*y, l->y, pn_tensor_nbytes(*y));
  if (s == PN_OK) {
    l->pos += b;
    return PN_OK;
  }
  pn_tensor_unref(*x);
  pn_tensor_unref(*y);
  *x = *y = NULL;
  return s;
}

pn_status pn_split_stratified(pn_dataset *ds, double valid_fraction, uint64_t seed,
                              int64_t **train, int64_t *n_train, int64_t **valid,
                              int64_t *n_valid) {
  /* STUB (issue 6): not stratified yet. */
  return pn_split(pn_dataset_get_info(ds)->length, valid_fraction, seed, train, n_train, valid,
                  n_valid);
}
