/* The threaded loader: the same batches whatever the worker count and
 * prefetch depth, over epochs, restarts with a skip and restarts while
 * workers are busy; a sample that fails mid-epoch fails its batch with the
 * worker's message; stratified splits exact per class. The data set is
 * tests/synthdata, whose samples are computed from their index. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "testutil.h"

#include <plugnet/plugnet.h>

#define DIM 4

static pn_device *dev;

static pn_dataset *open_synth(const char *pairs) {
  pn_config *cfg = tu_config("synthdata", pairs);
  pn_dataset *d = NULL;
  if (pn_dataset_open("synthdata", cfg, &d) != PN_OK) fail_msg("synthdata: %s", pn_last_error());
  pn_config_free(cfg);
  return d;
}

/* Every batch of the epoch as the loader is positioned now, appended to
 * x/y; rows[b] the size of batch b. Returns the batch count. */
typedef struct batches {
  int64_t nb, rows[64], samples;
  float x[1024 * DIM];
  int64_t y[1024];
} batches;

static void take(pn_loader *l, batches *out, int64_t most) {
  for (int64_t b = 0; b < most; b++) {
    pn_tensor *x = NULL, *y = NULL;
    if (pn_loader_next(l, dev, &x, &y) != PN_OK) fail_msg("next: %s", pn_last_error());
    if (!x) break;
    int64_t r = x->shape[0];
    assert_true(out->samples + r <= 1024 && out->nb < 64);
    assert_int_equal(pn_tensor_read(x, out->x + out->samples * DIM, sizeof(float) * DIM * r),
                     PN_OK);
    assert_int_equal(pn_tensor_read(y, out->y + out->samples, sizeof(int64_t) * r), PN_OK);
    out->rows[out->nb++] = r;
    out->samples += r;
    pn_tensor_unref(x);
    pn_tensor_unref(y);
  }
}

static void assert_same(const batches *a, const batches *b) {
  assert_int_equal(a->nb, b->nb);
  assert_memory_equal(a->rows, b->rows, sizeof(int64_t) * (size_t)a->nb);
  assert_memory_equal(a->x, b->x, sizeof(float) * DIM * (size_t)a->samples);
  assert_memory_equal(a->y, b->y, sizeof(int64_t) * (size_t)a->samples);
}

/* Each sample is whole and from the subset, each at most once. */
static void assert_consistent(const batches *a, pn_dataset *d, const int64_t *subset, int64_t n) {
  char *seen = calloc((size_t)n, 1);
  for (int64_t i = 0; i < a->samples; i++) {
    int64_t idx = (int64_t)a->x[i * DIM] / 1000, want_y = -1, k = 0;
    while (k < n && subset[k] != idx) k++;
    assert_true(k < n);
    assert_false(seen[k]);
    seen[k] = 1;
    for (int j = 0; j < DIM; j++) assert_true(a->x[i * DIM + j] == (float)(1000 * idx + j));
    assert_int_equal(pn_dataset_target(d, idx, &want_y), PN_OK);
    assert_int_equal(a->y[i], want_y);
  }
  free(seen);
}

static pn_loader *loader(pn_dataset *d, const int64_t *subset, int64_t n, int drop_last,
                         int workers, int prefetch) {
  pn_loader *l = NULL;
  assert_int_equal(pn_loader_new(d, subset, n, 10, 1, 42, drop_last, &l), PN_OK);
  assert_int_equal(pn_loader_set_workers(l, workers, prefetch), PN_OK);
  assert_int_equal(pn_loader_workers(l), workers);
  return l;
}

/* Epochs 0 and 1 whole, then epoch 1 from batch 4 after a restart while
 * workers were busy with epoch 0. */
static void run_schedule(pn_loader *l, batches out[3]) {
  memset(out, 0, sizeof(batches) * 3);
  pn_loader_start(l, 0, 0);
  take(l, &out[0], 100);
  pn_loader_start(l, 1, 0);
  take(l, &out[1], 100);
  batches scratch = {0};
  pn_loader_start(l, 0, 0);
  take(l, &scratch, 2);
  pn_loader_start(l, 1, 4);
  take(l, &out[2], 100);
}

static void check_workers(const char *pairs, int drop_last) {
  pn_dataset *d = open_synth(pairs);
  int64_t subset[97];
  for (int64_t i = 0; i < 97; i++) subset[i] = 3 * i % 101; /* not in order, not all */
  static batches want[3], got[3];
  pn_loader *l = loader(d, subset, 97, drop_last, 1, 0);
  run_schedule(l, want);
  pn_loader_free(l);
  assert_int_equal(want[0].nb, drop_last ? 9 : 10);
  assert_int_equal(want[0].rows[want[0].nb - 1], drop_last ? 10 : 7);
  assert_int_equal(want[2].nb, want[1].nb - 4);
  assert_memory_equal(want[2].x, want[1].x + 40 * DIM, sizeof(float) * DIM * 40);
  assert_consistent(&want[0], d, subset, 97);
  assert_consistent(&want[1], d, subset, 97);
  assert_memory_not_equal(want[0].x, want[1].x, sizeof(float) * DIM * 10); /* reshuffled */
  const int cases[][2] = {{2, 0}, {3, 0}, {2, 1}, {3, 5}, {16, 0}};
  for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
    l = loader(d, subset, 97, drop_last, cases[c][0], cases[c][1]);
    run_schedule(l, got);
    for (int e = 0; e < 3; e++) assert_same(&want[e], &got[e]);
    pn_loader_free(l);
  }
  pn_dataset_close(d);
}

static void test_same_batches(void **state) {
  (void)state;
  check_workers("length=101", 0);
  check_workers("length=101", 1);
  /* Slow reads: restarts find chunks in flight. */
  check_workers("length=101,delay_us=300", 0);
}

/* Stopping mid-epoch, and changing the worker count, resume at the same batch. */
static void test_stop_and_resume(void **state) {
  (void)state;
  pn_dataset *d = open_synth("length=60,delay_us=200");
  static batches want, got;
  memset(&want, 0, sizeof want), memset(&got, 0, sizeof got);
  pn_loader *l = loader(d, NULL, 0, 0, 1, 0);
  take(l, &want, 100);
  pn_loader_free(l);
  l = loader(d, NULL, 0, 0, 3, 0);
  take(l, &got, 2);
  pn_loader_stop(l);
  take(l, &got, 1);
  assert_int_equal(pn_loader_set_workers(l, 2, 1), PN_OK);
  take(l, &got, 1);
  assert_int_equal(pn_loader_set_workers(l, 1, 0), PN_OK);
  take(l, &got, 1);
  assert_int_equal(pn_loader_set_workers(l, 4, 0), PN_OK);
  take(l, &got, 100);
  assert_same(&want, &got);
  pn_loader_free(l);
  pn_dataset_close(d);
}

static void test_worker_settings(void **state) {
  (void)state;
  pn_dataset *d = open_synth("length=5");
  pn_loader *l = NULL;
  assert_int_equal(pn_loader_new(d, NULL, 0, 2, 0, 1, 0, &l), PN_OK);
  pn_topology_info info;
  assert_int_equal(pn_topology_get(&info), PN_OK);
  assert_int_equal(pn_loader_workers(l), info.cores > 1 ? info.cores : 1); /* the default */
  assert_int_equal(pn_loader_set_workers(l, -1, 0), PN_ERR_INVALID);
  assert_non_null(strstr(pn_last_error(), "workers -1"));
  assert_int_equal(pn_loader_set_workers(l, 2, -3), PN_ERR_INVALID);
  assert_non_null(strstr(pn_last_error(), "prefetch -3"));
  assert_int_equal(pn_loader_set_workers(l, 8, 0), PN_OK); /* more workers than samples */
  static batches got;
  memset(&got, 0, sizeof got);
  take(l, &got, 100);
  assert_int_equal(got.nb, 3);
  assert_int_equal(got.samples, 5);
  assert_int_equal(pn_loader_set_workers(l, 1, 0), PN_OK);
  assert_int_equal(pn_loader_workers(l), 1);
  pn_loader_free(l);
  pn_dataset_close(d);
}

/* The batch holding sample `bad` fails, with the reading thread's message,
 * on every call until a restart; the batches before it are unharmed. */
static void check_error(pn_dataset *d, int workers, int64_t *bad_batch) {
  pn_loader *l = loader(d, NULL, 0, 0, workers, 0);
  pn_loader_start(l, 1, 0);
  pn_tensor *x = NULL, *y = NULL;
  int64_t b = 0;
  pn_status s;
  while ((s = pn_loader_next(l, dev, &x, &y)) == PN_OK && x) {
    pn_tensor_unref(x), pn_tensor_unref(y);
    b++;
  }
  assert_int_equal(s, PN_ERR_IO);
  assert_null(x);
  assert_null(y);
  assert_non_null(strstr(pn_last_error(), "data 'synthdata': synthdata: sample 37 is broken"));
  if (*bad_batch < 0) *bad_batch = b;
  assert_int_equal(b, *bad_batch);
  pn_clear_error();
  assert_int_equal(pn_loader_next(l, dev, &x, &y), PN_ERR_IO);
  assert_non_null(strstr(pn_last_error(), "sample 37 is broken"));
  pn_loader_start(l, 1, b + 1);
  static batches rest;
  memset(&rest, 0, sizeof rest);
  take(l, &rest, 100);
  assert_int_equal(rest.nb, pn_loader_batches(l) - b - 1);
  pn_loader_free(l);
}

static void test_error_mid_epoch(void **state) {
  (void)state;
  pn_dataset *d = open_synth("length=100,fail_at=37,delay_us=100");
  int64_t bad_batch = -1;
  for (int w = 1; w <= 3; w++) check_error(d, w, &bad_batch);
  assert_true(bad_batch > 0 && bad_batch < 9); /* mid-epoch, for this seed */
  pn_dataset_close(d);
}

/* length 100, 3 classes in parts 1:2:3 -> 17, 34 and 49 samples. */
static void test_stratified_split(void **state) {
  (void)state;
  pn_dataset *d = open_synth("length=100");
  int64_t *tr = NULL, *va = NULL, ntr = 0, nva = 0, count[3] = {0}, y;
  assert_int_equal(pn_split_stratified(d, 0.2, 7, &tr, &ntr, &va, &nva), PN_OK);
  const int64_t want[3] = {3, 7, 10}; /* round(0.2 * 17, 0.2 * 34, 0.2 * 49) */
  assert_int_equal(nva, 20);
  assert_int_equal(ntr, 80);
  for (int64_t i = 0; i < nva; i++) {
    assert_int_equal(pn_dataset_target(d, va[i], &y), PN_OK);
    count[y]++;
    if (i) assert_true(va[i] > va[i - 1]);
  }
  assert_memory_equal(count, want, sizeof want);
  char seen[100] = {0};
  for (int64_t i = 0; i < nva; i++) seen[va[i]]++;
  for (int64_t i = 0; i < ntr; i++) seen[tr[i]]++, assert_true(!i || tr[i] > tr[i - 1]);
  for (int i = 0; i < 100; i++) assert_int_equal(seen[i], 1);
  int64_t *tr2, *va2, ntr2, nva2;
  assert_int_equal(pn_split_stratified(d, 0.2, 7, &tr2, &ntr2, &va2, &nva2), PN_OK);
  assert_int_equal(nva2, nva);
  assert_memory_equal(va2, va, sizeof *va * (size_t)nva);
  free(tr2), free(va2);
  assert_int_equal(pn_split_stratified(d, 0.2, 8, &tr2, &ntr2, &va2, &nva2), PN_OK);
  assert_memory_not_equal(va2, va, sizeof *va * (size_t)nva);
  free(tr2), free(va2), free(tr), free(va);
  assert_int_equal(pn_split_stratified(d, 1.0, 7, &tr, &ntr, &va, &nva), PN_ERR_INVALID);
  assert_int_equal(pn_split_stratified(d, 0.0, 7, &tr, &ntr, &va, &nva), PN_OK);
  assert_int_equal(nva, 0);
  assert_int_equal(ntr, 100);
  free(tr), free(va);
  pn_dataset_close(d);
}

/* Random transforms keyed by (seed, epoch, sample) give the same images on
 * any number of threads; skipped while the transforms are not built. */
static pn_transforms *augment(void) {
  const char *names[3] = {"random_resized_crop", "hflip", "normalize"};
  if (!pn_registry_find(names[0])) return NULL;
  pn_config *cfg[3] = {tu_config(names[0], "size=8"), tu_config(names[1], NULL),
                       tu_config(names[2], "preset=imagenet")};
  pn_transforms *t = NULL;
  if (pn_transforms_new(names, (const pn_config *const *)cfg, 3, 1.0, &t) != PN_OK) t = NULL;
  for (int i = 0; i < 3; i++) pn_config_free(cfg[i]);
  return t;
}

static void image_epoch(pn_dataset *d, int workers, int64_t epoch, float *x) {
  pn_loader *l = loader(d, NULL, 0, 0, workers, 0);
  pn_loader_start(l, epoch, 0);
  int64_t off = 0;
  pn_tensor *bx, *by;
  while (pn_loader_next(l, dev, &bx, &by) == PN_OK && bx) {
    size_t n = pn_tensor_nbytes(bx);
    assert_int_equal(pn_tensor_read(bx, x + off, n), PN_OK);
    off += (int64_t)(n / sizeof(float));
    pn_tensor_unref(bx), pn_tensor_unref(by);
  }
  assert_int_equal(off, 37 * 3 * 8 * 8);
  pn_loader_free(l);
}

static void test_augmented_images(void **state) {
  (void)state;
  pn_transforms *t = augment();
  if (!t) skip();
  pn_dataset *d = open_synth("length=37,image=true");
  assert_int_equal(pn_dataset_set_transforms(d, t), PN_OK);
  static float a[37 * 3 * 8 * 8], b[37 * 3 * 8 * 8];
  image_epoch(d, 1, 3, a);
  for (int w = 2; w <= 3; w++) {
    image_epoch(d, w, 3, b);
    assert_memory_equal(a, b, sizeof a);
  }
  image_epoch(d, 2, 4, b); /* another epoch, other crops */
  assert_memory_not_equal(a, b, sizeof a);
  pn_dataset_close(d);
  pn_transforms_free(t);
}

int main(void) {
  tu_plugin_path("tests/synthdata");
  dev = tu_device("reference");
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_same_batches),     cmocka_unit_test(test_stop_and_resume),
      cmocka_unit_test(test_worker_settings),  cmocka_unit_test(test_error_mid_epoch),
      cmocka_unit_test(test_stratified_split), cmocka_unit_test(test_augmented_images),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
