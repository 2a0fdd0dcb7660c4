#include <ftw.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

/* ---- the temporary folder */

static char tmpdir[1024];

int tu_tmpdir_setup(void **state) {
  (void)state;
  const char *base = getenv("TMPDIR");
  snprintf(tmpdir, sizeof tmpdir, "%s/pn-test-XXXXXX", base && *base ? base : "/tmp");
  return mkdtemp(tmpdir) ? 0 : -1;
}

int tu_tmpdir_teardown(void **state) {
  (void)state;
  if (tu_rmtree(tmpdir) == 0) return 0;
  fprintf(stderr, "could not remove %s\n", tmpdir);
  return -1;
}

void tu_tmpdir_use(const char *dir) { snprintf(tmpdir, sizeof tmpdir, "%s", dir); }

const char *tu_tmpdir(void) { return tmpdir; }

const char *tu_path(const char *fmt, ...) {
  static char ring[256][2048];
  static int next;
  char *p = ring[next++ % 256];
  int at = snprintf(p, sizeof ring[0], "%s/", tmpdir);
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(p + at, sizeof ring[0] - (size_t)at, fmt, ap);
  va_end(ap);
  return p;
}

/* ---- files */

char *tu_read_file(const char *path, size_t *n) {
  FILE *f = fopen(path, "rb");
  if (!f) fail_msg("%s: cannot open", path);
  fseek(f, 0, SEEK_END);
  *n = (size_t)ftell(f);
  rewind(f);
  char *b = malloc(*n + 1);
  assert_non_null(b);
  assert_int_equal(fread(b, 1, *n, f), *n);
  fclose(f);
  b[*n] = '\0';
  return b;
}

void tu_write_file(const char *path, const void *data, size_t n) {
  FILE *f = fopen(path, "wb");
  if (!f) fail_msg("%s: cannot create", path);
  assert_int_equal(fwrite(data, 1, n, f), n);
  assert_int_equal(fclose(f), 0);
}

void tu_write_text(const char *path, const char *fmt, ...) {
  FILE *f = fopen(path, "w");
  if (!f) fail_msg("%s: cannot create", path);
  va_list ap;
  va_start(ap, fmt);
  vfprintf(f, fmt, ap);
  va_end(ap);
  assert_int_equal(fclose(f), 0);
}

static void put_be32(FILE *f, uint32_t v) {
  unsigned char b[4] = {(unsigned char)(v >> 24), (unsigned char)(v >> 16), (unsigned char)(v >> 8),
                        (unsigned char)v};
  fwrite(b, 1, 4, f);
}

void tu_idx_open(const char *name, int n, int rows, int cols, FILE **images, FILE **labels) {
  *images = fopen(tu_path("%s-images.idx", name), "wb");
  *labels = fopen(tu_path("%s-labels.idx", name), "wb");
  if (!*images || !*labels) fail_msg("%s: cannot create the IDX files", name);
  put_be32(*images, 0x803), put_be32(*images, (uint32_t)n);
  put_be32(*images, (uint32_t)rows), put_be32(*images, (uint32_t)cols);
  put_be32(*labels, 0x801), put_be32(*labels, (uint32_t)n);
}

/* ---- pipelines and checkpoints */

pn_pipeline *tu_pipeline(const char *file, char **sets, int n) {
  const char *path = tu_path("%s", file);
  pn_pipeline *p = NULL;
  if (pn_pipeline_load(path, sets, n, &p) != PN_OK) fail_msg("load %s: %s", path, pn_last_error());
  return p;
}

void tu_pipeline_error(const char *file, char **sets, int n, const char *want1, const char *want2) {
  pn_pipeline *p = NULL;
  assert_int_not_equal(pn_pipeline_load(tu_path("%s", file), sets, n, &p), PN_OK);
  assert_null(p);
  if (!strstr(pn_last_error(), want1) || (want2 && !strstr(pn_last_error(), want2)))
    fail_msg("expected '%s' and '%s' in: %s", want1, want2 ? want2 : "", pn_last_error());
}

pn_tensor_map *tu_tensors(const char *file) {
  const char *path = tu_path("%s", file);
  pn_tensor_map *m = NULL;
  if (pn_safetensors_load(path, tu_device("reference"), &m) != PN_OK)
    fail_msg("%s: %s", path, pn_last_error());
  return m;
}

void tu_assert_same_tensors(const pn_tensor_map *a, const pn_tensor_map *b) {
  assert_int_equal(pn_tensor_map_count(a), pn_tensor_map_count(b));
  for (int i = 0; i < pn_tensor_map_count(a); i++) {
    const char *name = pn_tensor_map_name(a, i);
    pn_tensor *x = pn_tensor_map_at(a, i), *y = pn_tensor_map_get(b, name);
    if (!y) fail_msg("no tensor %s", name);
    if (pn_tensor_nbytes(x) != pn_tensor_nbytes(y) ||
        memcmp(pn_tensor_data(x), pn_tensor_data(y), pn_tensor_nbytes(x)) != 0)
      fail_msg("tensor %s differs", name);
  }
}

void tu_plugin_path(const char *dir) {
  char path[4096];
  const char *top = getenv("PN_TOP_BUILDDIR");
  snprintf(path, sizeof path, "%s/%s", top ? top : ".", dir);
  setenv("PLUGNET_PLUGIN_PATH", path, 1);
}
