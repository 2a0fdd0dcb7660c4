/* Training end to end on a small synthetic IDX data set: accuracy reached,
 * determinism, exact resumption, checkpoint contents, NaN handling and the
 * pipeline loader's error messages. `test_train --make-data DIR` only writes
 * the data set (for tests/train_interrupt.sh). */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "testutil.h"

/* ------------------------------------------------------------ the data set */

/* Class k lights row k of an 10x10 image, over uniform noise, so a linear
 * model can learn it but not instantly. */
static void write_split(const char *name, int n, uint64_t seed) {
  FILE *fi, *fl;
  tu_idx_open(name, n, 10, 10, &fi, &fl);
  for (int i = 0; i < n; i++) {
    uint32_t r[4];
    pn_philox4x32(seed, (uint64_t)i * 101, r);
    unsigned char label = (unsigned char)(r[0] % 10), img[100];
    for (int p = 0; p < 100; p++) {
      pn_philox4x32(seed, (uint64_t)i * 101 + 1 + (uint64_t)p, r);
      img[p] = (unsigned char)(r[0] % 160 + (p / 10 == label ? 90 : 0));
    }
    fwrite(img, 1, 100, fi);
    fwrite(&label, 1, 1, fl);
  }
  fclose(fi);
  fclose(fl);
}

static void write_pipeline(const char *file, const char *extra) {
  tu_write_text(tu_path("%s", file),
                "pipeline: synthetic\n"
                "seed: 7\n"
                "backend: reference\n"
                "data:\n"
                "  train: {type: idx, images: train-images.idx, labels: train-labels.idx}\n"
                "  test: {type: idx, images: test-images.idx, labels: test-labels.idx}\n"
                "  valid: {split: 0.2}\n"
                "  batch: 32\n"
                "model:\n"
                "  layers:\n"
                "    - {name: flat, type: flatten}\n"
                "    - {name: fc1, type: linear, out: 32}\n"
                "    - {name: act, type: relu}\n"
                "    - {name: fc2, type: linear, out: 10}\n"
                "loss: {type: cross_entropy}\n"
                "optimizer: {type: adam, lr: 3.0e-3}\n"
                "train: {epochs: 3, progress: off}\n"
                "metrics: [accuracy, error_rate]\n"
                "%s",
                extra ? extra : "");
}

static void make_data(void) {
  write_split("train", 800, 1);
  write_split("test", 200, 2);
  write_pipeline("p.yaml", NULL);
}

/* ------------------------------------------------------------ helpers */

/* Trains, capturing the table; returns it (free it). */
static char *train(pn_pipeline *p, const char *resume, pn_train_result *r, pn_status *st) {
  char *text = NULL;
  size_t len = 0;
  FILE *out = open_memstream(&text, &len);
  FILE *null = fopen("/dev/null", "w");
  pn_train_options o = {NULL, resume, out, null};
  *st = pn_train(p, &o, r);
  fclose(out);
  fclose(null);
  return text;
}

/* ------------------------------------------------------------ tests */

static void test_learns_the_task(void **state) {
  (void)state;
  pn_train_result r;
  pn_status st;
  pn_pipeline *p = tu_pipeline("p.yaml", NULL, 0);
  char *table = train(p, NULL, &r, &st);
  assert_int_equal(st, PN_OK);
  assert_true(r.has_test && r.has_valid);
  assert_true(r.test_accuracy > 0.9);
  assert_int_equal(r.epochs_done, 3);
  assert_int_equal(r.steps, 3 * 20); /* 640 training samples in batches of 32 */
  assert_non_null(strstr(table, "epoch  train_loss  valid_loss  accuracy   error_rate"));
  assert_non_null(strstr(table, "test: loss"));
  free(table);
  pn_pipeline_free(p);
}

static void test_same_seed_same_numbers(void **state) {
  (void)state;
  pn_train_result r1, r2;
  pn_status st;
  char *sets[] = {"backend=cpu"};
  pn_pipeline *p = tu_pipeline("p.yaml", sets, 1);
  char *t1 = train(p, NULL, &r1, &st), *t2 = train(p, NULL, &r2, &st);
  assert_true(r1.train_loss == r2.train_loss && r1.test_loss == r2.test_loss);
  /* The tables differ only in their time column. */
  assert_int_equal(strlen(t1), strlen(t2));
  free(t1), free(t2);
  pn_pipeline_free(p);
}

static void test_resume_is_exact(void **state) {
  (void)state;
  pn_train_result r;
  pn_status st;
  char *two[] = {"train.epochs=2", "checkpoint.path=two.safetensors"};
  char *one[] = {"train.epochs=1", "checkpoint.path=one.safetensors"};
  char *more[] = {"train.epochs=2", "checkpoint.path=resumed.safetensors"};
  pn_pipeline *p2 = tu_pipeline("p.yaml", two, 2), *p1 = tu_pipeline("p.yaml", one, 2),
              *pr = tu_pipeline("p.yaml", more, 2);
  free(train(p2, NULL, &r, &st));
  assert_int_equal(st, PN_OK);
  double loss_two = r.train_loss;
  free(train(p1, NULL, &r, &st));
  assert_int_equal(st, PN_OK);
  free(train(pr, tu_path("one.safetensors"), &r, &st));
  assert_int_equal(st, PN_OK);
  assert_true(r.train_loss == loss_two);
  pn_tensor_map *a = tu_tensors("two.safetensors"), *b = tu_tensors("resumed.safetensors");
  tu_assert_same_tensors(a, b);
  /* PyTorch-style names, optimizer state and run metadata. */
  assert_non_null(pn_tensor_map_get(a, "fc1.weight"));
  assert_non_null(pn_tensor_map_get(a, "fc2.bias"));
  assert_non_null(pn_tensor_map_get(a, "optimizer.exp_avg.fc1.weight"));
  assert_string_equal(pn_tensor_map_meta(a, "epoch"), "2");
  assert_string_equal(pn_tensor_map_meta(a, "step"), "40");
  assert_string_equal(pn_tensor_map_meta(a, "pipeline_hash"),
                      pn_tensor_map_meta(b, "pipeline_hash"));
  pn_tensor_map_free(a), pn_tensor_map_free(b);
  pn_pipeline_free(p2), pn_pipeline_free(p1), pn_pipeline_free(pr);
}

static void test_nan_stops_with_advice(void **state) {
  (void)state;
  pn_train_result r;
  pn_status st;
  char *sets[] = {"optimizer={type: sgd, lr: 1.0e30}"};
  pn_pipeline *p = tu_pipeline("p.yaml", sets, 1);
  free(train(p, NULL, &r, &st));
  assert_int_not_equal(st, PN_OK);
  assert_non_null(strstr(pn_last_error(), "NaN at step"));
  assert_non_null(strstr(pn_last_error(), "lower learning rate"));
  pn_pipeline_free(p);
}

static void expect_load_error(const char *extra, char **sets, int n, const char *want1,
                              const char *want2) {
  write_pipeline("bad.yaml", extra);
  tu_pipeline_error("bad.yaml", sets, n, want1, want2);
}

static void test_pipeline_errors(void **state) {
  (void)state;
  expect_load_error("sheduler: {type: cosine}\n", NULL, 0, "bad.yaml:19:1",
                    "did you mean 'schedule'");
  char *s1[] = {"model.layers.fc1.type=lineer"};
  expect_load_error(NULL, s1, 1, "unknown feature 'lineer'", "did you mean 'linear'");
  char *s2[] = {"model.layers.fc1.outt=3"};
  expect_load_error(NULL, s2, 1, "unknown parameter 'outt'", "did you mean 'out'");
  char *s3[] = {"optimizer.lr=fast"};
  expect_load_error(NULL, s3, 1, "lr = 'fast' is not a number", NULL);
  char *s4[] = {"loss.type=relu"};
  expect_load_error(NULL, s4, 1, "'relu' is a layer, not a loss", NULL);
  char *s5[] = {"model.layers.nosuch.out=3"};
  expect_load_error(NULL, s5, 1, "no list item 'nosuch'", NULL);
  char *s6[] = {"train.epochs=0"};
  expect_load_error(NULL, s6, 1, "bad.yaml:17:17", "below the minimum 1");
  char *s7[] = {"metrics=[acuracy]"};
  expect_load_error(NULL, s7, 1, "did you mean 'accuracy'", NULL);
  expect_load_error("  - oops: [\n", NULL, 0, "bad.yaml:", NULL); /* malformed YAML */
}

static void test_plan_and_overrides(void **state) {
  (void)state;
  char *sets[] = {"model.layers.fc1.out=48", "data.batch=16", "model.layers.1.bias=false"};
  pn_pipeline *p = tu_pipeline("p.yaml", sets, 3);
  char *text = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&text, &len);
  pn_pipeline_print(p, f);
  fclose(f);
  /* Every default shows, and overrides by layer name or index apply. */
  assert_non_null(strstr(text, "{name: fc1, type: linear, out: 48, bias: false"));
  assert_non_null(strstr(text, "batch: 16"));
  assert_non_null(strstr(text, "scale: 255"));
  assert_non_null(strstr(text, "beta2: 0.999"));
  assert_non_null(strstr(text, "/train-images.idx")); /* relative paths resolved */
  free(text);
  pn_pipeline *q = tu_pipeline("p.yaml", NULL, 0);
  assert_true(p->hash != q->hash);
  pn_pipeline_free(p), pn_pipeline_free(q);
}

static void test_missing_dataset_file(void **state) {
  (void)state;
  pn_train_result r;
  pn_status st;
  char *sets[] = {"data.train.images=/usr/share/datasets/fashion-mnist/nope.gz"};
  pn_pipeline *p = tu_pipeline("p.yaml", sets, 1);
  free(train(p, NULL, &r, &st));
  assert_int_not_equal(st, PN_OK);
  assert_non_null(strstr(pn_last_error(), "nope.gz"));
  assert_non_null(strstr(pn_last_error(), "dataset-fashion-mnist"));
  pn_pipeline_free(p);
}

int main(int argc, char **argv) {
  if (argc == 3 && strcmp(argv[1], "--make-data") == 0) {
    tu_tmpdir_use(argv[2]);
    make_data();
    return 0;
  }
  if (tu_tmpdir_setup(NULL) != 0) return 1;
  make_data();
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_learns_the_task),      cmocka_unit_test(test_same_seed_same_numbers),
      cmocka_unit_test(test_resume_is_exact),      cmocka_unit_test(test_nan_stops_with_advice),
      cmocka_unit_test(test_pipeline_errors),      cmocka_unit_test(test_plan_and_overrides),
      cmocka_unit_test(test_missing_dataset_file),
  };
  int failed = cmocka_run_group_tests(tests, NULL, NULL);
  tu_tmpdir_teardown(NULL);
  return failed ? 1 : 0;
}
