/* The idx dataset through the core's pn_dataset API: values, normalisation,
 * limit, gzip found by its magic bytes, class names, concurrent reads, and
 * broken files (each a one-line error naming the file, never a crash). The
 * real Fashion-MNIST train set is checked when it is installed. */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#include <cmocka.h>

#include "testutil.h"

#include <plugnet/data.h>
#include <plugnet/plugnet.h>

#define FASHION "/usr/share/datasets/fashion-mnist"
#define N       5
#define H       2
#define W       3

/* ---- writing IDX files */

static size_t idx_bytes(unsigned char *out, int type, int ndim, const uint32_t *dims,
                        const unsigned char *payload, size_t n) {
  unsigned char *p = out;
  *p++ = 0;
  *p++ = 0;
  *p++ = (unsigned char)type;
  *p++ = (unsigned char)ndim;
  for (int i = 0; i < ndim; i++) {
    *p++ = (unsigned char)(dims[i] >> 24);
    *p++ = (unsigned char)(dims[i] >> 16);
    *p++ = (unsigned char)(dims[i] >> 8);
    *p++ = (unsigned char)dims[i];
  }
  memcpy(p, payload, n);
  return (size_t)(p - out) + n;
}

static size_t gzip_bytes(const unsigned char *in, size_t n, unsigned char *out, size_t cap) {
  z_stream zs = {0};
  assert_int_equal(deflateInit2(&zs, 9, Z_DEFLATED, 16 + MAX_WBITS, 8, Z_DEFAULT_STRATEGY), Z_OK);
  zs.next_in = (unsigned char *)in;
  zs.avail_in = (uInt)n;
  zs.next_out = out;
  zs.avail_out = (uInt)cap;
  assert_int_equal(deflate(&zs, Z_FINISH), Z_STREAM_END);
  size_t len = zs.total_out;
  deflateEnd(&zs);
  return len;
}

/* keep: bytes of the (possibly compressed) file to write; 0 means all. */
static const char *write_idx(const char *name, int type, int ndim, const uint32_t *dims,
                             const unsigned char *payload, size_t n, int gz, size_t keep) {
  unsigned char raw[4096], zipped[4096];
  size_t len = idx_bytes(raw, type, ndim, dims, payload, n);
  const unsigned char *data = raw;
  if (gz) {
    len = gzip_bytes(raw, len, zipped, sizeof zipped);
    data = zipped;
  }
  const char *path = tu_path("%s", name);
  tu_write_file(path, data, keep && keep < len ? keep : len);
  return path;
}

static unsigned char pixel(int i) { return (unsigned char)(i * 37 % 256); }
static const unsigned char labels_u8[N] = {3, 1, 4, 1, 5};

static const char *images_file(const char *name, int gz) {
  unsigned char px[N * H * W];
  for (int i = 0; i < N * H * W; i++) px[i] = pixel(i);
  const uint32_t dims[3] = {N, H, W};
  return write_idx(name, 0x08, 3, dims, px, sizeof px, gz, 0);
}

static const char *labels_file(const char *name, int gz) {
  const uint32_t dims[1] = {N};
  return write_idx(name, 0x08, 1, dims, labels_u8, N, gz, 0);
}

/* ---- opening */

static pn_status open_idx(const char *images, const char *labels, const char *extra,
                          pn_dataset **out) {
  const pn_feature_info *f = pn_registry_find("idx");
  assert_non_null(f);
  pn_config *cfg = pn_config_new(f);
  assert_non_null(cfg);
  assert_int_equal(pn_config_set(cfg, "images", images), PN_OK);
  assert_int_equal(pn_config_set(cfg, "labels", labels), PN_OK);
  /* A class list holds commas, which pn_config_set_list would split. */
  if (extra && strncmp(extra, "classes=", 8) == 0)
    assert_int_equal(pn_config_set(cfg, "classes", extra + 8), PN_OK);
  else if (extra)
    assert_int_equal(pn_config_set_list(cfg, extra), PN_OK);
  pn_status s = pn_dataset_open("idx", cfg, out);
  pn_config_free(cfg);
  if (s == PN_OK) assert_non_null(*out);
  return s;
}

static void check_samples(pn_dataset *d, double scale, double mean, double sd) {
  int64_t idx[3] = {3, 0, 2}, y[3];
  float x[3 * H * W];
  assert_int_equal(pn_dataset_read(d, idx, 3, x, y), PN_OK);
  for (int s = 0; s < 3; s++) {
    assert_int_equal(y[s], labels_u8[idx[s]]);
    for (int j = 0; j < H * W; j++) {
      double want = (pixel((int)idx[s] * H * W + j) / scale - mean) / sd;
      assert_float_equal(x[s * H * W + j], want, 1e-5);
    }
  }
}

static void test_raw_values(void **state) {
  (void)state;
  pn_dataset *d = NULL;
  assert_int_equal(open_idx(images_file("i.idx", 0), labels_file("l.idx", 0), NULL, &d), PN_OK);
  const pn_dataset_info *info = pn_dataset_get_info(d);
  assert_int_equal(info->length, N);
  assert_int_equal(info->x_shape.ndim, 3);
  assert_int_equal(info->x_shape.dim[0], 1);
  assert_int_equal(info->x_shape.dim[1], H);
  assert_int_equal(info->x_shape.dim[2], W);
  assert_int_equal(info->y_shape.ndim, 0);
  assert_int_equal(info->n_classes, 6); /* max label 5 */
  check_samples(d, 255, 0, 1);
  char buf[16];
  assert_string_equal(pn_dataset_class_name(d, 4, buf, sizeof buf), "4");
  pn_dataset_close(d);
}

static void test_normalisation(void **state) {
  (void)state;
  pn_dataset *d = NULL;
  assert_int_equal(
      open_idx(images_file("i.idx", 0), labels_file("l.idx", 0), "scale=2,mean=0.5,std=0.25", &d),
      PN_OK);
  check_samples(d, 2, 0.5, 0.25);
  pn_dataset_close(d);
  assert_int_equal(open_idx(tu_path("i.idx"), tu_path("l.idx"), "std=0", &d), PN_ERR_INVALID);
  assert_non_null(strstr(pn_last_error(), "std"));
  assert_int_equal(open_idx(tu_path("i.idx"), tu_path("l.idx"), "scale=0", &d), PN_ERR_INVALID);
  assert_non_null(strstr(pn_last_error(), "scale"));
}

static void test_limit(void **state) {
  (void)state;
  pn_dataset *d = NULL;
  assert_int_equal(open_idx(images_file("i.idx", 0), labels_file("l.idx", 0), "limit=3", &d),
                   PN_OK);
  assert_int_equal(pn_dataset_get_info(d)->length, 3);
  assert_int_equal(pn_dataset_get_info(d)->n_classes, 6); /* from every label, not the first 3 */
  int64_t idx = 3, y;
  float x[H * W];
  assert_int_equal(pn_dataset_read(d, &idx, 1, x, &y), PN_ERR_INVALID);
  assert_non_null(strstr(pn_last_error(), "out of range"));
  idx = 2;
  assert_int_equal(pn_dataset_read(d, &idx, 1, x, &y), PN_OK);
  assert_int_equal(y, labels_u8[2]);
  pn_dataset_close(d);
  assert_int_equal(open_idx(tu_path("i.idx"), tu_path("l.idx"), "limit=100", &d), PN_OK);
  assert_int_equal(pn_dataset_get_info(d)->length, N);
  pn_dataset_close(d);
}

/* The names lie on purpose: content decides. */
static void test_gzip_by_magic(void **state) {
  (void)state;
  pn_dataset *d = NULL;
  const char *im = images_file("images-not-compressed.gz", 0);
  const char *lb = labels_file("labels.plain", 1);
  assert_int_equal(open_idx(im, lb, NULL, &d), PN_OK);
  check_samples(d, 255, 0, 1);
  pn_dataset_close(d);
  assert_int_equal(open_idx(images_file("images.idx", 1), lb, "limit=4", &d), PN_OK);
  assert_int_equal(pn_dataset_get_info(d)->length, 4);
  check_samples(d, 255, 0, 1);
  pn_dataset_close(d);
}

/* Two gzip members, as `cat a.gz b.gz` makes, are one stream. */
static void test_gzip_members(void **state) {
  (void)state;
  unsigned char raw[256], part1[512], part2[512], both[1024];
  unsigned char px[N * H * W];
  for (int i = 0; i < N * H * W; i++) px[i] = pixel(i);
  const uint32_t dims[3] = {N, H, W};
  size_t len = idx_bytes(raw, 0x08, 3, dims, px, sizeof px);
  size_t a = gzip_bytes(raw, 10, part1, sizeof part1);
  size_t b = gzip_bytes(raw + 10, len - 10, part2, sizeof part2);
  memcpy(both, part1, a);
  memcpy(both + a, part2, b);
  tu_write_file(tu_path("members.gz"), both, a + b);
  pn_dataset *d = NULL;
  assert_int_equal(open_idx(tu_path("members.gz"), labels_file("l.idx", 0), NULL, &d), PN_OK);
  check_samples(d, 255, 0, 1);
  pn_dataset_close(d);
}

static void test_class_names(void **state) {
  (void)state;
  pn_dataset *d = NULL;
  char buf[16];
  assert_int_equal(open_idx(images_file("i.idx", 0), labels_file("l.idx", 0),
                            "classes=zero, one ,two,three,four,five,six", &d),
                   PN_OK);
  assert_int_equal(pn_dataset_get_info(d)->n_classes, 7);
  assert_string_equal(pn_dataset_class_name(d, 1, buf, sizeof buf), "one");
  assert_string_equal(pn_dataset_class_name(d, 6, buf, sizeof buf), "six");
  assert_string_equal(pn_dataset_class_name(d, 9, buf, sizeof buf), "9");
  pn_dataset_close(d);
  assert_int_equal(open_idx(tu_path("i.idx"), tu_path("l.idx"), "classes=a,b,c", &d),
                   PN_ERR_INVALID);
  assert_non_null(strstr(pn_last_error(), "label 5"));
}

typedef struct job {
  pn_dataset *d;
  int64_t first;
  int ok;
} job;

static void *read_many(void *arg) {
  job *j = arg;
  float x[H * W];
  int64_t y;
  j->ok = 1;
  for (int rep = 0; rep < 2000; rep++) {
    int64_t i = (j->first + rep) % N;
    if (pn_dataset_read(j->d, &i, 1, x, &y) != PN_OK || y != labels_u8[i]) j->ok = 0;
    for (int k = 0; k < H * W; k++)
      if (x[k] != (float)(pixel((int)i * H * W + k) / 255.0)) j->ok = 0;
  }
  return NULL;
}

static void test_concurrent_reads(void **state) {
  (void)state;
  pn_dataset *d = NULL;
  assert_int_equal(open_idx(images_file("i.idx", 1), labels_file("l.idx", 1), NULL, &d), PN_OK);
  pthread_t th[4];
  job jobs[4];
  for (int t = 0; t < 4; t++) {
    jobs[t] = (job){d, t, 0};
    assert_int_equal(pthread_create(&th[t], NULL, read_many, &jobs[t]), 0);
  }
  for (int t = 0; t < 4; t++) {
    pthread_join(th[t], NULL);
    assert_true(jobs[t].ok);
  }
  pn_dataset_close(d);
}

/* ---- broken files */

static void expect_error(const char *images, const char *labels, const char *file,
                         const char *needle) {
  pn_dataset *d = NULL;
  pn_status s = open_idx(images, labels, NULL, &d);
  const char *msg = pn_last_error();
  if ((s != PN_ERR_PARSE && s != PN_ERR_IO) || !strstr(msg, file) || !strstr(msg, needle) ||
      strchr(msg, '\n'))
    fail_msg("status %s, message '%s': wanted PARSE or IO naming %s with '%s'", pn_status_name(s),
             msg, file, needle);
  assert_null(d);
}

static void test_truncated_images(void **state) {
  (void)state;
  unsigned char px[N * H * W] = {0};
  const uint32_t dims[3] = {N, H, W};
  const char *lb = labels_file("l.idx", 0);
  const char *im = write_idx("short.idx", 0x08, 3, dims, px, 20, 0, 0);
  expect_error(im, lb, im, "truncated: header says 5x2x3 = 30 bytes, file holds 20");
  im = write_idx("long.idx", 0x08, 3, dims, px, sizeof px, 0, 0);
  FILE *f = fopen(im, "ab");
  fputs("extra", f);
  fclose(f);
  expect_error(im, lb, im, "file holds 35 (trailing data)");
  im = write_idx("short.gz", 0x08, 3, dims, px, 20, 1, 0);
  expect_error(im, lb, im, "file holds 20 after decompression");
  im = write_idx("header.idx", 0x08, 3, dims, px, 0, 0, 10);
  expect_error(im, lb, im, "truncated header");
}

static void test_broken_gzip(void **state) {
  (void)state;
  unsigned char px[N * H * W];
  for (int i = 0; i < N * H * W; i++) px[i] = pixel(i);
  const uint32_t dims[3] = {N, H, W};
  const char *lb = labels_file("l.idx", 0);
  const char *im = write_idx("cut.gz", 0x08, 3, dims, px, sizeof px, 1, 30);
  expect_error(im, lb, im, "gzip: unexpected end");
  /* A damaged CRC: zlib's own message. */
  unsigned char raw[256], zipped[512];
  size_t len = gzip_bytes(raw, idx_bytes(raw, 0x08, 3, dims, px, sizeof px), zipped, sizeof zipped);
  zipped[len - 6] ^= 0xff;
  tu_write_file(tu_path("crc.gz"), zipped, len);
  expect_error(tu_path("crc.gz"), lb, tu_path("crc.gz"), "gzip: incorrect data check");
}

static void test_bad_headers(void **state) {
  (void)state;
  unsigned char px[N * H * W] = {0};
  const uint32_t dims[3] = {N, H, W};
  const char *lb = labels_file("l.idx", 0);
  const char *im = images_file("i.idx", 0);
  const char *p = write_idx("float.idx", 0x0D, 3, dims, px, sizeof px, 0, 0);
  expect_error(p, lb, p, "element type 0x0d (float) is not supported");
  unsigned char junk[40] = {0x12, 0x34, 0x08, 0x03};
  tu_write_file(tu_path("junk.idx"), junk, sizeof junk);
  expect_error(tu_path("junk.idx"), lb, tu_path("junk.idx"), "not an IDX file");
  tu_write_file(tu_path("empty.idx"), junk, 0);
  expect_error(tu_path("empty.idx"), lb, tu_path("empty.idx"), "empty file");
  expect_error(im, tu_path("empty.idx"), tu_path("empty.idx"), "empty file");
  expect_error(im, im, im, "expected a labels file");
  expect_error(lb, lb, lb, "expected an images file");
  const uint32_t zero[3] = {N, 0, W};
  p = write_idx("zero.idx", 0x08, 3, zero, px, 0, 0, 0);
  expect_error(p, lb, p, "dimension 1 is 0");
}

static void test_count_mismatch(void **state) {
  (void)state;
  const uint32_t four[1] = {4};
  const char *im = images_file("i.idx", 0);
  const char *lb = write_idx("l4.idx", 0x08, 1, four, labels_u8, 4, 1, 0);
  expect_error(im, lb, lb, "5 images");
  assert_non_null(strstr(pn_last_error(), im));
  assert_non_null(strstr(pn_last_error(), "4 labels"));
}

static void test_missing_files(void **state) {
  (void)state;
  const char *lb = labels_file("l.idx", 0);
  expect_error(tu_path("nope.idx"), lb, tu_path("nope.idx"), "No such file or directory");
  assert_null(strstr(pn_last_error(), "dataset-fashion-mnist"));
  expect_error(FASHION "/no-such-images.gz", lb, FASHION "/no-such-images.gz",
               "No such file or directory (install the Debian package dataset-fashion-mnist)");
}

static void test_config_errors(void **state) {
  (void)state;
  pn_dataset *d = NULL;
  assert_int_equal(pn_dataset_open("idx", NULL, &d), PN_ERR_INVALID);
  assert_non_null(strstr(pn_last_error(), "images"));
  assert_null(d);
  assert_int_not_equal(pn_dataset_open("reference", NULL, &d), PN_OK); /* a backend */
  assert_int_equal(pn_dataset_open("idxx", NULL, &d), PN_ERR_NOT_FOUND);
  assert_non_null(strstr(pn_last_error(), "idx"));
}

static void test_fashion_mnist(void **state) {
  (void)state;
  if (access(FASHION "/train-images-idx3-ubyte.gz", R_OK) != 0) {
    skip();
    return;
  }
  pn_dataset *d = NULL;
  assert_int_equal(open_idx(FASHION "/train-images-idx3-ubyte.gz",
                            FASHION "/train-labels-idx1-ubyte.gz", NULL, &d),
                   PN_OK);
  const pn_dataset_info *info = pn_dataset_get_info(d);
  assert_int_equal(info->length, 60000);
  assert_int_equal(info->x_shape.ndim, 3);
  assert_int_equal(info->x_shape.dim[0], 1);
  assert_int_equal(info->x_shape.dim[1], 28);
  assert_int_equal(info->x_shape.dim[2], 28);
  assert_int_equal(info->n_classes, 10);
  int64_t idx[2] = {0, 59999}, y[2];
  float *x = malloc(sizeof *x * 2 * 784);
  assert_int_equal(pn_dataset_read(d, idx, 2, x, y), PN_OK);
  assert_int_equal(y[0], 9); /* an ankle boot */
  float lo = 1, hi = 0;
  for (int i = 0; i < 2 * 784; i++) {
    lo = x[i] < lo ? x[i] : lo;
    hi = x[i] > hi ? x[i] : hi;
  }
  assert_true(lo >= 0 && hi <= 1 && hi > 0.5);
  free(x);
  pn_dataset_close(d);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_raw_values),
      cmocka_unit_test(test_normalisation),
      cmocka_unit_test(test_limit),
      cmocka_unit_test(test_gzip_by_magic),
      cmocka_unit_test(test_gzip_members),
      cmocka_unit_test(test_class_names),
      cmocka_unit_test(test_concurrent_reads),
      cmocka_unit_test(test_truncated_images),
      cmocka_unit_test(test_broken_gzip),
      cmocka_unit_test(test_bad_headers),
      cmocka_unit_test(test_count_mismatch),
      cmocka_unit_test(test_missing_files),
      cmocka_unit_test(test_config_errors),
      cmocka_unit_test(test_fashion_mnist),
  };
  return cmocka_run_group_tests(tests, tu_tmpdir_setup, tu_tmpdir_teardown);
}
