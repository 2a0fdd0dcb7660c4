/* The C side of tests/safetensors_interop.sh:
 *   st_interop write FILE   saves the tensors and metadata below
 *   st_interop check FILE   loads a file Python wrote and checks the same
 *                           values, plus an F16 and an F64 tensor read as F32.
 * Both sides agree on these values (see safetensors_interop.py). */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include <plugnet/checkpoint.h>
#include <plugnet/plugnet.h>

static const float weight[6] = {0.5f, -1.25f, 3.0f, 4.75f, -5.0f, 6.125f};
static const int32_t counts[4] = {1, -2, 3, -4};
static const int64_t ids[3] = {-1, 0, (int64_t)1 << 40};
static const uint8_t mask[4] = {0, 1, 254, 255};

static int failures;

static void fail(const char *what) {
  fprintf(stderr, "st_interop: %s%s%s\n", what, *pn_last_error() ? ": " : "", pn_last_error());
  failures++;
}

static void put(pn_tensor_map *m, const char *name, pn_dtype dt, int ndim, const int64_t *shape,
                const void *v) {
  pn_tensor *t = pn_tensor_from_host(NULL, dt, ndim, shape, v);
  if (!t || pn_tensor_map_put(m, name, t) != PN_OK) fail(name);
  pn_tensor_unref(t);
}

static int do_write(const char *path) {
  pn_tensor_map *m = pn_tensor_map_new();
  put(m, "weight", PN_F32, 2, (int64_t[]){2, 3}, weight);
  put(m, "counts", PN_I32, 2, (int64_t[]){2, 2}, counts);
  put(m, "ids", PN_I64, 1, (int64_t[]){3}, ids);
  put(m, "mask", PN_U8, 1, (int64_t[]){4}, mask);
  pn_tensor_map_set_meta(m, "epoch", "5");
  pn_tensor_map_set_meta(m, "written_by", "plugnet");
  if (pn_safetensors_save(path, m) != PN_OK) fail("save");
  pn_tensor_map_free(m);
  return failures != 0;
}

static void expect(const pn_tensor_map *m, const char *name, pn_dtype dt, int ndim,
                   const int64_t *shape, const void *v) {
  pn_tensor *t = pn_tensor_map_get(m, name);
  char buf[256];
  unsigned char back[64];
  snprintf(buf, sizeof buf, "tensor '%s' missing or with the wrong dtype, shape or values", name);
  int ok = t && t->dtype == dt && t->ndim == ndim && pn_tensor_nbytes(t) <= sizeof back;
  for (int d = 0; ok && d < ndim; d++) ok = t->shape[d] == shape[d];
  ok = ok && pn_tensor_read(t, back, pn_tensor_nbytes(t)) == PN_OK &&
       memcmp(back, v, pn_tensor_nbytes(t)) == 0;
  if (!ok) fail(buf);
}

static int do_check(const char *path) {
  pn_tensor_map *m = NULL;
  if (pn_safetensors_load(path, NULL, &m) != PN_OK) {
    fail("load");
    return 1;
  }
  expect(m, "weight", PN_F32, 2, (int64_t[]){2, 3}, weight);
  expect(m, "counts", PN_I32, 2, (int64_t[]){2, 2}, counts);
  expect(m, "ids", PN_I64, 1, (int64_t[]){3}, ids);
  expect(m, "mask", PN_U8, 1, (int64_t[]){4}, mask);
  expect(m, "half", PN_F32, 1, (int64_t[]){3}, (const float[]){1.0f, -2.5f, 0.099975586f});
  expect(m, "double", PN_F32, 1, (int64_t[]){2}, (const float[]){0.1f, 1e30f});
  const char *epoch = pn_tensor_map_meta(m, "epoch"), *by = pn_tensor_map_meta(m, "written_by");
  if (!epoch || strcmp(epoch, "7") != 0 || !by || strcmp(by, "python") != 0) fail("metadata");
  pn_tensor_map_free(m);
  return failures != 0;
}

int main(int argc, char **argv) {
  if (argc == 3 && strcmp(argv[1], "write") == 0) return do_write(argv[2]);
  if (argc == 3 && strcmp(argv[1], "check") == 0) return do_check(argv[2]);
  fprintf(stderr, "usage: st_interop write|check FILE\n");
  return 2;
}
