#include <ftw.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>

#include <cmocka.h>

#include "testutil.h"

pn_device *tu_device(const char *name) {
  pn_device *d = NULL;
  if (pn_device_get(name, &d) != PN_OK) fail_msg("device %s: %s", name, pn_last_error());
  return d;
}

static uint64_t next_u64(uint64_t *s) {
  *s += 0x9E3779B97F4A7C15ull;
  uint64_t z = *s;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

void tu_fill_uniform(float *x, int64_t n, float lo, float hi, uint64_t *state) {
  for (int64_t i = 0; i < n; i++)
    x[i] = lo + (hi - lo) * (float)((next_u64(state) >> 40) * (1.0 / 16777216.0));
}

pn_tensor *tu_random(pn_device *dev, int ndim, const int64_t *shape, float lo, float hi,
                     uint64_t *state) {
  int64_t n = 1;
  for (int i = 0; i < ndim; i++) n *= shape[i];
  float *x = malloc(sizeof *x * (size_t)(n ? n : 1));
  assert_non_null(x);
  tu_fill_uniform(x, n, lo, hi, state);
  pn_tensor *t = pn_tensor_from_host(dev, PN_F32, ndim, shape, x);
  free(x);
  return tu_check(t, "tu_random");
}

float *tu_host(const pn_tensor *t) {
  int64_t n = pn_tensor_numel(t);
  float *x = malloc(sizeof *x * (size_t)(n ? n : 1));
  assert_non_null(x);
  pn_tensor *c = pn_contiguous((pn_tensor *)t);
  pn_tensor *f = tu_check(c->dtype == PN_F32 ? pn_tensor_ref(c) : pn_cast(c, PN_F32), "cast");
  if (pn_tensor_read(f, x, sizeof *x * (size_t)n) != PN_OK) fail_msg("read: %s", pn_last_error());
  pn_tensor_unref(f);
  pn_tensor_unref(c);
  return x;
}

double tu_norm_err(const float *a, const float *b, int64_t n) {
  double err = 0.0, scale = 1.0;
  for (int64_t i = 0; i < n; i++) {
    double d = fabs((double)a[i] - (double)b[i]);
    if (d > err || isnan(d)) err = isnan(d) ? INFINITY : d;
    if (fabs((double)b[i]) > scale) scale = fabs((double)b[i]);
  }
  return err / scale;
}

pn_tensor *tu_check(pn_tensor *t, const char *what) {
  if (!t) fail_msg("%s failed: %s", what, pn_last_error());
  return t;
}

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
  (void)st, (void)flag, (void)ftw;
  return remove(path);
}

int tu_rmtree(const char *dir) { return nftw(dir, remove_entry, 8, FTW_DEPTH | FTW_PHYS); }

pn_config *tu_config(const char *feature, const char *pairs) {
  const pn_feature_info *f = pn_registry_find(feature);
  if (!f) fail_msg("%s: %s", feature, pn_last_error());
  pn_config *c = pn_config_new(f);
  assert_non_null(c);
  if (pairs && pn_config_set_list(c, pairs) != PN_OK) fail_msg("%s: %s", pairs, pn_last_error());
  return c;
}

void tu_moments(const pn_tensor *t, double *mean, double *std, double *maxabs) {
  int64_t n = pn_tensor_numel(t);
  float *h = tu_host(t);
  double s = 0, s2 = 0, m = 0;
  for (int64_t i = 0; i < n; i++) {
    s += h[i];
    s2 += (double)h[i] * h[i];
    if (fabs(h[i]) > m) m = fabs(h[i]);
  }
  free(h);
  *mean = s / (double)n;
  *std = sqrt(s2 / (double)n - *mean * *mean);
  *maxabs = m;
}
