/* safetensors checkpoints: round trips of every dtype with metadata, the
 * file layout, atomic replacement, conversion of F16/BF16/F64, and corrupt
 * files, each a clear error naming the file (and the tensor at fault). */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "testutil.h"

#include <plugnet/checkpoint.h>
#include <plugnet/plugnet.h>

static const float w_vals[6] = {0.5f, -1.25f, 3.0f, 4.75f, -5.0f, 6.125f};
static const int32_t i32_vals[4] = {1, -2, 3, -2147483647 - 1};
static const int64_t i64_vals[3] = {-1, 0, (int64_t)1 << 40};
static const uint8_t u8_vals[4] = {0, 1, 254, 255};

static pn_tensor *from_host(pn_dtype dt, int ndim, const int64_t *shape, const void *v) {
  pn_tensor *t = pn_tensor_from_host(tu_device("reference"), dt, ndim, shape, v);
  assert_non_null(t);
  return t;
}

/* Puts t in m and drops the caller's reference. */
static void put(pn_tensor_map *m, const char *name, pn_tensor *t) {
  assert_int_equal(pn_tensor_map_put(m, name, t), PN_OK);
  pn_tensor_unref(t);
}

static pn_tensor_map *sample_map(void) {
  pn_tensor_map *m = pn_tensor_map_new();
  assert_non_null(m);
  put(m, "layer1.weight", from_host(PN_F32, 2, (int64_t[]){2, 3}, w_vals));
  put(m, "ints", from_host(PN_I32, 2, (int64_t[]){2, 2}, i32_vals));
  put(m, "step", from_host(PN_I64, 1, (int64_t[]){3}, i64_vals));
  put(m, "mask", from_host(PN_U8, 1, (int64_t[]){4}, u8_vals));
  float one = 1.5f;
  put(m, "scalar", from_host(PN_F32, 0, (int64_t[]){1}, &one));
  put(m, "empty", from_host(PN_F32, 2, (int64_t[]){0, 3}, &one));
  assert_int_equal(pn_tensor_map_set_meta(m, "epoch", "3"), PN_OK);
  assert_int_equal(pn_tensor_map_set_meta(m, "note", "quote \" and \xc3\xa9"), PN_OK);
  return m;
}

static void check_tensor(const pn_tensor_map *m, const char *name, pn_dtype dt, int ndim,
                         const int64_t *shape, const void *vals) {
  pn_tensor *t = pn_tensor_map_get(m, name);
  if (!t) fail_msg("no tensor '%s'", name);
  assert_int_equal(t->dtype, dt);
  assert_int_equal(t->ndim, ndim);
  for (int d = 0; d < ndim; d++) assert_int_equal(t->shape[d], shape[d]);
  size_t n = pn_tensor_nbytes(t);
  void *back = malloc(n ? n : 1);
  assert_int_equal(pn_tensor_read(t, back, n), PN_OK);
  if (n) assert_memory_equal(back, vals, n);
  free(back);
}

static void test_map(void **state) {
  (void)state;
  pn_tensor_map *m = sample_map();
  assert_int_equal(pn_tensor_map_count(m), 6);
  assert_string_equal(pn_tensor_map_name(m, 2), "step");
  float z[6] = {0};
  put(m, "ints", from_host(PN_F32, 1, (int64_t[]){6}, z)); /* replaced in place */
  assert_int_equal(pn_tensor_map_count(m), 6);
  assert_string_equal(pn_tensor_map_name(m, 1), "ints");
  assert_int_equal(pn_tensor_map_at(m, 1)->dtype, PN_F32);
  assert_null(pn_tensor_map_at(m, 6));
  assert_null(pn_tensor_map_get(m, "nope"));
  assert_int_equal(pn_tensor_map_put(m, "__metadata__", pn_tensor_map_at(m, 0)), PN_ERR_INVALID);
  assert_int_equal(pn_tensor_map_set_meta(m, "epoch", "4"), PN_OK);
  assert_string_equal(pn_tensor_map_meta(m, "epoch"), "4");
  assert_null(pn_tensor_map_meta(m, "absent"));
  /* JSON holds UTF-8 only: a bad name is refused, and nothing is written. */
  put(m, "bad\xff", from_host(PN_U8, 1, (int64_t[]){1}, u8_vals));
  assert_int_equal(pn_safetensors_save(tu_path("utf8.safetensors"), m), PN_ERR_INVALID);
  assert_non_null(strstr(pn_last_error(), "not UTF-8"));
  assert_int_equal(access(tu_path("utf8.safetensors"), F_OK), -1);
  pn_tensor_map_free(m);
}

static void test_round_trip(void **state) {
  (void)state;
  pn_tensor_map *m = sample_map();
  /* A transposed view is saved as its values, not its buffer. */
  pn_tensor *t = pn_tensor_transposed(pn_tensor_map_get(m, "layer1.weight"), 0, 1);
  put(m, "transposed", t);
  const char *path = tu_path("rt.safetensors");
  assert_int_equal(pn_safetensors_save(path, m), PN_OK);
  pn_tensor_map_free(m);

  pn_tensor_map *back = NULL;
  assert_int_equal(pn_safetensors_load(path, tu_device("reference"), &back), PN_OK);
  assert_int_equal(pn_tensor_map_count(back), 7);
  const char *order[] = {"layer1.weight", "ints", "step", "mask", "scalar", "empty", "transposed"};
  for (int i = 0; i < 7; i++) assert_string_equal(pn_tensor_map_name(back, i), order[i]);
  check_tensor(back, "layer1.weight", PN_F32, 2, (int64_t[]){2, 3}, w_vals);
  check_tensor(back, "ints", PN_I32, 2, (int64_t[]){2, 2}, i32_vals);
  check_tensor(back, "step", PN_I64, 1, (int64_t[]){3}, i64_vals);
  check_tensor(back, "mask", PN_U8, 1, (int64_t[]){4}, u8_vals);
  float one = 1.5f;
  check_tensor(back, "scalar", PN_F32, 0, NULL, &one);
  check_tensor(back, "empty", PN_F32, 2, (int64_t[]){0, 3}, NULL);
  const float tr[6] = {0.5f, 4.75f, -1.25f, -5.0f, 3.0f, 6.125f};
  check_tensor(back, "transposed", PN_F32, 2, (int64_t[]){3, 2}, tr);
  assert_string_equal(pn_tensor_map_meta(back, "epoch"), "3");
  assert_string_equal(pn_tensor_map_meta(back, "note"), "quote \" and \xc3\xa9");
  pn_tensor_map_free(back);
}

static void test_layout(void **state) {
  (void)state;
  pn_tensor_map *m = pn_tensor_map_new();
  put(m, "b", from_host(PN_U8, 1, (int64_t[]){3}, u8_vals));
  put(m, "a", from_host(PN_F32, 1, (int64_t[]){2}, w_vals));
  assert_int_equal(pn_tensor_map_set_meta(m, "k", "v"), PN_OK);
  const char *path = tu_path("layout.safetensors");
  assert_int_equal(pn_safetensors_save(path, m), PN_OK);
  pn_tensor_map_free(m);
  size_t n = 0;
  char *buf = tu_read_file(path, &n);
  uint64_t hlen = 0;
  for (int i = 7; i >= 0; i--) hlen = hlen << 8 | (unsigned char)buf[i];
  assert_int_equal(hlen % 8, 0);
  assert_int_equal(n, 8 + hlen + 3 + 8);
  char *header = strndup(buf + 8, hlen);
  assert_non_null(strstr(header, "\"__metadata__\":{\"k\":\"v\"}"));
  /* Map order in the header; the wider dtype first in the data. */
  const char *b = strstr(header, "\"b\":{\"dtype\":\"U8\",\"shape\":[3],\"data_offsets\":[8,11]}");
  const char *a = strstr(header, "\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}");
  assert_true(a && b && b < a);
  assert_int_equal(header[hlen - 1] == ' ' || header[hlen - 1] == '}', 1);
  assert_memory_equal(buf + 8 + hlen, w_vals, 8);
  assert_memory_equal(buf + 8 + hlen + 8, u8_vals, 3);
  free(header);
  free(buf);
}

static int leftovers(const char *dir) {
  char cmd[600];
  snprintf(cmd, sizeof cmd, "ls -a '%s' | grep -q '\\.tmp\\.'", dir);
  return system(cmd) == 0;
}

static void test_atomic_save(void **state) {
  (void)state;
  pn_tensor_map *m = sample_map();
  const char *path = tu_path("atomic.safetensors");
  assert_int_equal(pn_safetensors_save(path, m), PN_OK);
  assert_false(leftovers(tu_tmpdir()));

  /* The temporary file cannot be created: a directory sits on its name. */
  char tmp[600];
  snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
  assert_int_equal(mkdir(tmp, 0700), 0);
  pn_tensor_map *other = pn_tensor_map_new();
  put(other, "x", from_host(PN_U8, 1, (int64_t[]){1}, u8_vals));
  assert_int_equal(pn_safetensors_save(path, other), PN_ERR_IO);
  assert_non_null(strstr(pn_last_error(), path));
  assert_int_equal(rmdir(tmp), 0);
  pn_tensor_map *back = NULL;
  assert_int_equal(pn_safetensors_load(path, tu_device("reference"), &back), PN_OK);
  check_tensor(back, "layer1.weight", PN_F32, 2, (int64_t[]){2, 3}, w_vals);
  assert_null(pn_tensor_map_get(back, "x"));
  pn_tensor_map_free(back);

  /* A directory that cannot be written (only meaningful when not root). */
  const char *ro = tu_path("readonly");
  assert_int_equal(mkdir(ro, 0555), 0);
  char inside[600];
  snprintf(inside, sizeof inside, "%s/x.safetensors", ro);
  if (geteuid() != 0) {
    assert_int_equal(pn_safetensors_save(inside, other), PN_ERR_IO);
    assert_non_null(strstr(pn_last_error(), inside));
    assert_int_equal(access(inside, F_OK), -1);
    assert_false(leftovers(ro));
  }
  /* A parent that is not a directory fails for root too. */
  snprintf(inside, sizeof inside, "%s/x.safetensors", path);
  assert_int_equal(pn_safetensors_save(inside, other), PN_ERR_IO);
  assert_non_null(strstr(pn_last_error(), inside));
  assert_false(leftovers(tu_tmpdir()));
  pn_tensor_map_free(other);
  pn_tensor_map_free(m);
}

/* ---- hand-made files */

static const char *write_st(const char *name, const char *header, const void *data, size_t n,
                            uint64_t claimed_len) {
  const char *path = tu_path("%s", name);
  FILE *f = fopen(path, "wb");
  assert_non_null(f);
  uint64_t hlen = claimed_len ? claimed_len : strlen(header);
  unsigned char len8[8];
  for (int i = 0; i < 8; i++) len8[i] = (unsigned char)(hlen >> (8 * i));
  fwrite(len8, 1, 8, f);
  fputs(header, f);
  if (n) fwrite(data, 1, n, f);
  fclose(f);
  return path;
}

static void expect_load_error(const char *path, pn_status want, const char *n1, const char *n2) {
  pn_tensor_map *m = NULL;
  pn_status s = pn_safetensors_load(path, tu_device("reference"), &m);
  const char *msg = pn_last_error();
  if (s != want || !strstr(msg, path) || (n1 && !strstr(msg, n1)) || (n2 && !strstr(msg, n2)))
    fail_msg("%s: status %s, message '%s': wanted %s with '%s' and '%s'", path, pn_status_name(s),
             msg, pn_status_name(want), n1 ? n1 : "", n2 ? n2 : "");
  assert_null(m);
}

static void test_corrupt_files(void **state) {
  (void)state;
  const unsigned char d16[16] = {0};
  /* A good file cut short. */
  pn_tensor_map *m = sample_map();
  const char *path = tu_path("cut.safetensors");
  assert_int_equal(pn_safetensors_save(path, m), PN_OK);
  pn_tensor_map_free(m);
  struct stat st;
  assert_int_equal(stat(path, &st), 0);
  assert_int_equal(truncate(path, st.st_size - 4), 0);
  expect_load_error(path, PN_ERR_PARSE, "tensor 'mask'", "truncated");

  expect_load_error(write_st("beyond.st", "{}", NULL, 0, 1000), PN_ERR_PARSE, "header length 1000",
                    "beyond");
  expect_load_error(write_st("huge.st", "{}", NULL, 0, (uint64_t)200 << 20), PN_ERR_PARSE, "100 MB",
                    NULL);
  tu_write_file(tu_path("tiny.st"), "abc", 3);
  expect_load_error(tu_path("tiny.st"), PN_ERR_PARSE, "too short", NULL);
  expect_load_error(write_st("json.st", "{\"a\": ", NULL, 0, 0), PN_ERR_PARSE, "bad JSON", NULL);
  expect_load_error(write_st("array.st", "[1, 2]", NULL, 0, 0), PN_ERR_PARSE, "not an object",
                    NULL);
  expect_load_error(write_st("range.st",
                             "{\"w\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}",
                             d16, 8, 0),
                    PN_ERR_PARSE, "tensor 'w'", "beyond the data section");
  expect_load_error(write_st("size.st",
                             "{\"w\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}",
                             d16, 8, 0),
                    PN_ERR_PARSE, "tensor 'w'", "need 12");
  expect_load_error(write_st("dtype.st",
                             "{\"w\":{\"dtype\":\"F99\",\"shape\":[2],\"data_offsets\":[0,8]}}",
                             d16, 8, 0),
                    PN_ERR_PARSE, "tensor 'w'", "unknown dtype 'F99'");
  expect_load_error(write_st("bool.st",
                             "{\"w\":{\"dtype\":\"BOOL\",\"shape\":[2],\"data_offsets\":[0,2]}}",
                             d16, 2, 0),
                    PN_ERR_PARSE, "tensor 'w'", "unsupported dtype 'BOOL'");
  expect_load_error(write_st("neg.st",
                             "{\"w\":{\"dtype\":\"U8\",\"shape\":[-2],\"data_offsets\":[0,2]}}",
                             d16, 2, 0),
                    PN_ERR_PARSE, "tensor 'w'", "negative");
  expect_load_error(write_st("overlap.st",
                             "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                             "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}",
                             d16, 12, 0),
                    PN_ERR_PARSE, "tensor 'b'", "overlap tensor 'a'");
  expect_load_error(write_st("gap.st",
                             "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                             "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,12]}}",
                             d16, 12, 0),
                    PN_ERR_PARSE, "tensor 'b'", "gap");
  expect_load_error(write_st("extra.st",
                             "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}",
                             d16, 12, 0),
                    PN_ERR_PARSE, "holds 12 bytes", "cover 4");
  expect_load_error(write_st("meta.st", "{\"__metadata__\":{\"epoch\":3}}", NULL, 0, 0),
                    PN_ERR_PARSE, "epoch", "not a string");
  expect_load_error(write_st("dup.st",
                             "{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]},"
                             "\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[1,2]}}",
                             d16, 2, 0),
                    PN_ERR_PARSE, "bad JSON", "duplicate");
  expect_load_error(tu_path("missing.st"), PN_ERR_NOT_FOUND, "No such file", NULL);
}

static void test_converted_dtypes(void **state) {
  (void)state;
  /* F16: 1, -2.5, 65504, 2^-24 (the smallest subnormal); BF16: 1, -3;
   * F64: 0.1, -1e30. */
  const uint16_t f16[4] = {0x3c00, 0xc100, 0x7bff, 0x0001};
  const uint16_t bf16[2] = {0x3f80, 0xc040};
  const double f64[2] = {0.1, -1e30};
  unsigned char data[32];
  memcpy(data, f16, 8);
  memcpy(data + 8, bf16, 4);
  memcpy(data + 16, f64, 16);
  const char *path = write_st("conv.st",
                              "{\"h\":{\"dtype\":\"F16\",\"shape\":[4],\"data_offsets\":[0,8]},"
                              "\"b\":{\"dtype\":\"BF16\",\"shape\":[2],\"data_offsets\":[8,12]},"
                              "\"p\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[12,16]},"
                              "\"d\":{\"dtype\":\"F64\",\"shape\":[2],\"data_offsets\":[16,32]}}",
                              data, sizeof data, 0);
  pn_tensor_map *m = NULL;
  assert_int_equal(pn_safetensors_load(path, tu_device("reference"), &m), PN_OK);
  const float want_h[4] = {1.0f, -2.5f, 65504.0f, 5.9604645e-8f};
  const float want_b[2] = {1.0f, -3.0f};
  const float want_d[2] = {0.1f, -1e30f};
  check_tensor(m, "h", PN_F32, 1, (int64_t[]){4}, want_h);
  check_tensor(m, "b", PN_F32, 1, (int64_t[]){2}, want_b);
  check_tensor(m, "d", PN_F32, 1, (int64_t[]){2}, want_d);
  check_tensor(m, "p", PN_U8, 1, (int64_t[]){4}, data + 12);
  pn_tensor_map_free(m);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_map),           cmocka_unit_test(test_round_trip),
      cmocka_unit_test(test_layout),        cmocka_unit_test(test_atomic_save),
      cmocka_unit_test(test_corrupt_files), cmocka_unit_test(test_converted_dtypes),
  };
  return cmocka_run_group_tests(tests, tu_tmpdir_setup, tu_tmpdir_teardown);
}
