/* Staged training (train.groups, train.stages) and the learning-rate range
 * test, on a small synthetic IDX set: frozen groups stay bit-identical,
 * per-group rates, the schedule restarting each stage, resuming into a later
 * stage, progressive resizing on a generated PNG folder, errors. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <cmocka.h>

#include "testutil.h"

/* ------------------------------------------------------------ data */

/* 8x8 images of 4 classes: class k brightens quadrant k over noise. */
static void write_idx(const char *name, int n, uint64_t seed) {
  FILE *fi, *fl;
  tu_idx_open(name, n, 8, 8, &fi, &fl);
  for (int i = 0; i < n; i++) {
    uint32_t r[4];
    pn_philox4x32(seed, (uint64_t)i, r);
    unsigned char label = (unsigned char)(r[0] % 4), px[64];
    for (int p = 0; p < 64; p++) {
      pn_philox4x32(seed + 1, (uint64_t)i * 64 + (uint64_t)p, r);
      int quadrant = (p / 8 >= 4) * 2 + (p % 8 >= 4);
      px[p] = (unsigned char)(r[0] % 150 + (quadrant == label ? 100 : 0));
    }
    fwrite(px, 1, 64, fi);
    fwrite(&label, 1, 1, fl);
  }
  fclose(fi);
  fclose(fl);
}

/* The base pipeline; `train` is its train: section, `extra` anything after. */
static void write_pipeline(const char *file, const char *optimizer, const char *train,
                           const char *extra) {
  tu_write_text(tu_path("%s", file),
                "pipeline: stages\n"
                "seed: 7\n"
                "backend: reference\n"
                "data:\n"
                "  train: {type: idx, images: train-images.idx, labels: train-labels.idx}\n"
                "  valid: {split: 0.2}\n"
                "  batch: 32\n"
                "model:\n"
                "  layers:\n"
                "    - {name: flat, type: flatten}\n"
                "    - {name: fc1, type: linear, out: 16}\n"
                "    - {name: bn, type: batch_norm}\n"
                "    - {name: act, type: relu}\n"
                "    - {name: fc2, type: linear, out: 4}\n"
                "loss: {type: cross_entropy}\n"
                "optimizer: %s\n"
                "train:\n"
                "  progress: off\n"
                "%s"
                "%s",
                optimizer, train, extra ? extra : "");
}

/* ------------------------------------------------------------ helpers */

static pn_pipeline *load(const char *file) { return tu_pipeline(file, NULL, 0); }

typedef struct steps {
  pn_train_step s[256];
  int n;
} steps;

static void record(const pn_train_step *s, void *user) {
  steps *st = user;
  if (st->n < 256) st->s[st->n++] = *s;
}

/* Trains; returns the table (free it). `rec` may be NULL. */
static char *train(pn_pipeline *p, const char *resume, steps *rec) {
  char *text = NULL;
  size_t len = 0;
  FILE *out = open_memstream(&text, &len);
  pn_train_options o = {NULL, resume ? tu_path("%s", resume) : NULL, out, NULL};
  pn_train_result r;
  pn_status s = pn_train_observed(p, &o, rec ? record : NULL, rec, &r);
  fclose(out);
  if (s != PN_OK) fail_msg("train %s: %s", p->file, pn_last_error());
  return text;
}

/* The parameters a run starts from: the same seed builds the same model. */
static pn_tensor_map *initial_params(const pn_pipeline *p) {
  pn_model *m = NULL;
  pn_shape in = {3, {1, 8, 8}};
  pn_set_default_device(tu_device("reference"));
  pn_set_seed(p->seed);
  assert_int_equal(pn_pipeline_build_model(p, &in, &m), PN_OK);
  pn_tensor_map *map = pn_tensor_map_new();
  assert_int_equal(pn_model_state(m, map), PN_OK);
  pn_model_free(m);
  return map;
}

static int same_bits(const pn_tensor_map *a, const pn_tensor_map *b, const char *name) {
  pn_tensor *x = pn_tensor_map_get(a, name), *y = pn_tensor_map_get(b, name);
  if (!x || !y) fail_msg("no tensor %s", name);
  return pn_tensor_nbytes(x) == pn_tensor_nbytes(y) &&
         memcmp(pn_tensor_data(x), pn_tensor_data(y), pn_tensor_nbytes(x)) == 0;
}

/* ------------------------------------------------------------ freezing */

static void check_freeze(int train_bn) {
  char section[512];
  snprintf(section, sizeof section,
           "  train_bn: %s\n"
           "  groups: {body: [fc1, bn], head: [fc2]}\n"
           "  stages:\n"
           "    - {epochs: 1, freeze: [body], lr: 1.0e-2}\n",
           train_bn ? "true" : "false");
  /* Decoupled weight decay would move a frozen weight if it were stepped. */
  write_pipeline("freeze.yaml", "{type: adamw, weight_decay: 0.1}", section,
                 "checkpoint: {path: freeze.safetensors}\n");
  pn_pipeline *p = load("freeze.yaml");
  free(train(p, NULL, NULL));
  pn_tensor_map *before = initial_params(p), *after = tu_tensors("freeze.safetensors");
  assert_true(same_bits(before, after, "fc1.weight"));
  assert_true(same_bits(before, after, "fc1.bias"));
  assert_false(same_bits(before, after, "fc2.weight"));
  assert_false(same_bits(before, after, "fc2.bias"));
  assert_int_equal(same_bits(before, after, "bn.weight"), !train_bn);
  assert_int_equal(same_bits(before, after, "bn.bias"), !train_bn);
  /* Frozen parameters were never stepped, so they have no optimizer state. */
  assert_null(pn_tensor_map_get(after, "optimizer.exp_avg.fc1.weight"));
  assert_non_null(pn_tensor_map_get(after, "optimizer.exp_avg.fc2.weight"));
  pn_tensor_map_free(before), pn_tensor_map_free(after);
  pn_pipeline_free(p);
}

static void test_freeze_keeps_frozen_bits(void **state) {
  (void)state;
  check_freeze(1);
  check_freeze(0);
}

/* Autograd records nothing fed only by parameters without gradients, which
 * is what makes a frozen body free in the backward pass. */
static void test_frozen_ops_are_not_recorded(void **state) {
  (void)state;
  write_pipeline("tape.yaml", "{type: sgd}", "", NULL);
  pn_pipeline *p = load("tape.yaml");
  pn_model *m = NULL;
  pn_shape in = {3, {1, 8, 8}};
  int64_t xs[4] = {4, 1, 8, 8};
  uint64_t seed = 1;
  pn_device *dev = tu_device("reference");
  pn_set_default_device(dev);
  assert_int_equal(pn_pipeline_build_model(p, &in, &m), PN_OK);
  pn_tensor *x = tu_random(dev, 4, xs, -1, 1, &seed), *y = NULL;
  pn_model_set_training(m, 1);
  assert_int_equal(pn_model_forward(m, x, &y), PN_OK);
  int all = pn_tape_size();
  pn_tensor_unref(y), pn_tape_clear();
  for (int i = 0; i < 4; i++) pn_tensor_set_requires_grad(pn_model_param(m, i), 0); /* fc1, bn */
  assert_int_equal(pn_model_forward(m, x, &y), PN_OK);
  int frozen = pn_tape_size();
  pn_tensor_unref(y), pn_tape_clear();
  assert_true(frozen > 0 && frozen < all);
  pn_tensor_unref(x);
  pn_model_free(m);
  pn_pipeline_free(p);
}

/* ------------------------------------------------------------ per-group rates */

/* The least-squares factor k with (after_a - before) = k (after_b - before). */
static double update_ratio(const pn_tensor_map *before, const pn_tensor_map *a,
                           const pn_tensor_map *b, const char *name) {
  pn_tensor *t0 = pn_tensor_map_get(before, name), *ta = pn_tensor_map_get(a, name),
            *tb = pn_tensor_map_get(b, name);
  const float *x0 = pn_tensor_data(t0), *xa = pn_tensor_data(ta), *xb = pn_tensor_data(tb);
  double num = 0, den = 0;
  for (int64_t i = 0; i < pn_tensor_numel(t0); i++) {
    double da = (double)xa[i] - x0[i], db = (double)xb[i] - x0[i];
    num += da * db, den += db * db;
  }
  assert_true(den > 0);
  return num / den;
}

/* One SGD step without momentum is -lr * gradient, and both runs take the
 * same first gradient: each group's update scales with its rate. */
static void test_group_rates(void **state) {
  (void)state;
  const char *groups = "  groups: {a: [fc1], b: [bn], c: [fc2]}\n  stages:\n";
  char t1[256], t2[256];
  snprintf(t1, sizeof t1, "%s    - {epochs: 1, lr: [1.0e-3, 1.0e-1]}\n", groups);
  snprintf(t2, sizeof t2, "%s    - {epochs: 1, lr: 1.0e-1}\n", groups);
  /* 32 samples, no validation: one batch, one step. */
  const char *one_step = "checkpoint: {path: %s}\n";
  char e1[128], e2[128];
  snprintf(e1, sizeof e1, one_step, "spread.safetensors");
  snprintf(e2, sizeof e2, one_step, "flat.safetensors");
  write_pipeline("spread.yaml", "{type: sgd, lr: 0.5}", t1, e1);
  write_pipeline("flat.yaml", "{type: sgd, lr: 0.5}", t2, e2);
  char *sets[] = {"data.valid.split=0", "data.train.limit=32"};
  pn_pipeline *p1 = tu_pipeline("spread.yaml", sets, 2), *p2 = tu_pipeline("flat.yaml", sets, 2);
  steps rec = {.n = 0};
  free(train(p1, NULL, &rec));
  free(train(p2, NULL, NULL));
  assert_int_equal(rec.n, 1);
  assert_true(rec.s[0].lr == 0.1); /* the last group's: the stage's hi */
  pn_tensor_map *before = initial_params(p1), *a = tu_tensors("spread.safetensors"),
                *b = tu_tensors("flat.safetensors");
  /* fastai's slice(1e-3, 1e-1) over 3 groups: 1e-3, 1e-2, 1e-1. */
  assert_float_equal(update_ratio(before, a, b, "fc1.weight"), 0.01, 0.01 * 0.02);
  assert_float_equal(update_ratio(before, a, b, "bn.weight"), 0.1, 0.1 * 0.02);
  assert_float_equal(update_ratio(before, a, b, "fc2.weight"), 1.0, 1e-6);
  pn_tensor_map_free(before), pn_tensor_map_free(a), pn_tensor_map_free(b);
  pn_pipeline_free(p1), pn_pipeline_free(p2);
}

/* One SGD step without momentum moves w by -lr (g + wd w): with the same
 * first gradient, a stage's weight decay of 0.2 against the optimizer's
 * 0.05 (which a stage without one keeps) moves w by a further -lr 0.15 w. */
static void test_stage_weight_decay(void **state) {
  (void)state;
  const char *opt = "{type: sgd, lr: 0.5, weight_decay: 0.05}";
  write_pipeline("wd.yaml", opt, "  stages: [{epochs: 1, lr: 0.1, weight_decay: 0.2}]\n",
                 "checkpoint: {path: wd.safetensors}\n");
  write_pipeline("nowd.yaml", opt, "  stages: [{epochs: 1, lr: 0.1}]\n",
                 "checkpoint: {path: nowd.safetensors}\n");
  char *sets[] = {"data.valid.split=0", "data.train.limit=32"};
  pn_pipeline *pa = tu_pipeline("wd.yaml", sets, 2), *pb = tu_pipeline("nowd.yaml", sets, 2);
  char *table = train(pa, NULL, NULL);
  assert_non_null(strstr(table, "stage 1/1: 1 epoch, all trainable, lr 1e-01, weight decay 0.2\n"));
  free(table);
  free(train(pb, NULL, NULL));
  pn_tensor_map *w0 = initial_params(pa), *a = tu_tensors("wd.safetensors"),
                *b = tu_tensors("nowd.safetensors");
  const char *names[] = {"fc1.weight", "fc2.weight", "fc2.bias"};
  for (int i = 0; i < 3; i++) {
    pn_tensor *t0 = pn_tensor_map_get(w0, names[i]), *ta = pn_tensor_map_get(a, names[i]),
              *tb = pn_tensor_map_get(b, names[i]);
    const float *x0 = pn_tensor_data(t0), *xa = pn_tensor_data(ta), *xb = pn_tensor_data(tb);
    for (int64_t j = 0; j < pn_tensor_numel(t0); j++)
      assert_float_equal((double)xa[j] - xb[j], -0.1 * 0.15 * x0[j], 1e-6);
  }
  pn_tensor_map_free(w0), pn_tensor_map_free(a), pn_tensor_map_free(b);
  assert_true(pa->hash != pb->hash);
  pn_pipeline_free(pa), pn_pipeline_free(pb);
}

/* ------------------------------------------------------------ schedules */

static double factor(const char *pairs, int64_t step, int64_t total) {
  pn_schedule *s = NULL;
  pn_config *cfg = tu_config("onecycle", pairs);
  assert_int_equal(pn_schedule_create("onecycle", cfg, &s), PN_OK);
  double f = pn_schedule_factor(s, step, total);
  pn_schedule_free(s), pn_config_free(cfg);
  return f;
}

/* Each stage is one fit: onecycle runs over the stage's own steps, at the
 * stage's rate (or the optimizer's), with the stage's overrides. */
static void test_schedule_restarts(void **state) {
  (void)state;
  write_pipeline("sched.yaml", "{type: sgd, lr: 0.1, momentum: 0.9}",
                 "  stages:\n"
                 "    - {epochs: 2, lr: 0.05}\n"
                 "    - {epochs: 1}\n"
                 "    - {epochs: 1, schedule: {pct_start: 0.5}}\n",
                 "schedule: {type: onecycle}\n");
  pn_pipeline *p = load("sched.yaml");
  assert_int_equal(p->epochs, 4);
  steps rec = {.n = 0};
  char *table = train(p, NULL, &rec);
  int nb = rec.n / 4; /* 205 training samples in batches of 32 */
  assert_int_equal(nb, 7);
  assert_int_equal(rec.n, 4 * nb);
  for (int i = 0; i < rec.n; i++) {
    const pn_train_step *s = &rec.s[i];
    int stage = i < 2 * nb ? 0 : i < 3 * nb ? 1 : 2;
    int64_t first = stage == 0 ? 0 : stage == 1 ? 2 * nb : 3 * nb;
    int64_t total = stage == 0 ? 2 * nb : nb;
    double peak = stage == 0 ? 0.05 : 0.1;
    const char *cfg = stage == 2 ? "pct_start=0.5" : "";
    assert_int_equal(s->stage, stage);
    assert_int_equal(s->epoch, i / nb);
    assert_int_equal(s->step, i + 1);
    assert_float_equal(s->lr, peak * factor(cfg, i - first, total), 1e-15);
  }
  assert_float_equal(rec.s[2 * nb].lr, 0.1 / 25, 1e-15); /* restarted from the bottom */
  assert_non_null(strstr(table, "stage 1/3: 2 epochs, all trainable, lr 5e-02\n"));
  assert_non_null(strstr(table, "stage 3/3: 1 epoch, all trainable, lr 1e-01\n3 "));
  free(table);
  pn_pipeline_free(p);
}

/* ------------------------------------------------------------ resume */

static const char *two_stages = "  groups: {body: [fc1, bn], head: [fc2]}\n"
                                "  train_bn: false\n"
                                "  stages:\n"
                                "    - {epochs: 2, freeze: [body], lr: 3.0e-3}\n"
                                "%s";

/* The first stage alone writes the checkpoint the full run has after it;
 * resuming the full run from it must give the same bits as not stopping. */
static void test_resume_into_second_stage(void **state) {
  (void)state;
  char full[512], short_[512];
  snprintf(full, sizeof full, two_stages, "    - {epochs: 2, lr: [1.0e-4, 1.0e-3]}\n");
  snprintf(short_, sizeof short_, two_stages, "");
  write_pipeline("full.yaml", "{type: adam}", full,
                 "schedule: {type: onecycle}\ncheckpoint: {path: full.safetensors}\n");
  write_pipeline("short.yaml", "{type: adam}", short_,
                 "schedule: {type: onecycle}\ncheckpoint: {path: short.safetensors}\n");
  pn_pipeline *pf = load("full.yaml"), *ps = load("short.yaml");
  char *t = train(pf, NULL, NULL);
  assert_non_null(strstr(t, "stage 1/2: 2 epochs, body frozen, lr 3e-03\n"));
  assert_non_null(strstr(t, "stage 2/2: 2 epochs, all trainable, lr 1e-04..1e-03\n"));
  free(t);
  pn_tensor_map *uninterrupted = tu_tensors("full.safetensors");
  free(train(ps, NULL, NULL));
  t = train(pf, "short.safetensors", NULL);
  assert_null(strstr(t, "stage 1/2"));
  assert_non_null(strstr(t, "stage 2/2"));
  free(t);
  pn_tensor_map *resumed = tu_tensors("full.safetensors");
  tu_assert_same_tensors(uninterrupted, resumed);
  assert_string_equal(pn_tensor_map_meta(resumed, "epoch"), "4");
  pn_tensor_map_free(uninterrupted), pn_tensor_map_free(resumed);
  pn_pipeline_free(pf), pn_pipeline_free(ps);
}

static void copy_file(const char *from, const char *to) {
  size_t n;
  char *data = tu_read_file(tu_path("%s", from), &n);
  tu_write_file(tu_path("%s", to), data, n);
  free(data);
}

/* Keeps the checkpoint written after epoch `epoch` (it is rewritten every
 * epoch): the run's first step of the next epoch comes after it. */
typedef struct keeper {
  int64_t epoch;
  const char *from, *to;
  int kept;
} keeper;

static void keep_checkpoint(const pn_train_step *s, void *user) {
  keeper *k = user;
  if (s->epoch != k->epoch || k->kept) return;
  copy_file(k->from, k->to);
  k->kept = 1;
}

/* Stopped after the first epoch of a two-epoch stage that unfreezes the
 * body: the body has had one epoch of updates, the head three, so each
 * counts its own steps for Adam's bias correction (the run's count would
 * give the body the head's). Resumed, it must match not stopping. */
static void test_resume_inside_unfreezing_stage(void **state) {
  (void)state;
  const char *section = "  groups: {body: [fc1, bn], head: [fc2]}\n"
                        "  train_bn: false\n"
                        "  stages:\n"
                        "    - {epochs: 2, freeze: [body], lr: 3.0e-3}\n"
                        "    - {epochs: 2, lr: [1.0e-3, 1.0e-2]}\n";
  write_pipeline("mid.yaml", "{type: adam}", section,
                 "schedule: {type: onecycle}\ncheckpoint: {path: mid.safetensors, every: 1}\n");
  pn_pipeline *p = load("mid.yaml");
  keeper k = {3, "mid.safetensors", "mid-epoch3.safetensors", 0};
  pn_train_options o = {NULL, NULL, NULL, NULL};
  pn_train_result r;
  FILE *null = fopen("/dev/null", "w");
  o.out = null;
  if (pn_train_observed(p, &o, keep_checkpoint, &k, &r) != PN_OK) fail_msg("%s", pn_last_error());
  fclose(null);
  assert_true(k.kept);
  pn_tensor_map *uninterrupted = tu_tensors("mid.safetensors"), *at3 = tu_tensors(k.to);
  assert_string_equal(pn_tensor_map_meta(at3, "epoch"), "3");
  assert_non_null(pn_tensor_map_get(at3, "optimizer.exp_avg.fc1.weight"));
  pn_tensor_map_free(at3);
  free(train(p, k.to, NULL));
  pn_tensor_map *resumed = tu_tensors("mid.safetensors");
  tu_assert_same_tensors(uninterrupted, resumed);
  pn_tensor_map_free(uninterrupted), pn_tensor_map_free(resumed);
  pn_pipeline_free(p);
}

/* ------------------------------------------------------------ plan, hash, errors */

static char *print_plan(const pn_pipeline *p) {
  char *text = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&text, &len);
  pn_pipeline_print(p, f);
  fclose(f);
  return text;
}

static void test_plan_and_hash(void **state) {
  (void)state;
  char t[512];
  snprintf(t, sizeof t, two_stages,
           "    - {epochs: 3, lr: [1.0e-6, 1.0e-4], schedule: {pct_start: 0.8},\n"
           "       weight_decay: 1e-2}\n");
  write_pipeline("plan.yaml", "{type: adam}", t, "schedule: {type: onecycle}\n");
  write_pipeline("plain.yaml", "{type: adam}", "", "schedule: {type: onecycle}\n");
  write_pipeline("grouped.yaml", "{type: adam}", "  groups: {body: [fc1, bn], head: [fc2]}\n",
                 "schedule: {type: onecycle}\n");
  pn_pipeline *p = load("plan.yaml"), *plain = load("plain.yaml"), *grouped = load("grouped.yaml");
  char *text = print_plan(p);
  assert_non_null(strstr(text, "  epochs: 5  # the stages' sum\n"));
  assert_non_null(
      strstr(text, "  train_bn: false\n  groups:\n    body: [fc1, bn]\n    head: [fc2]\n"));
  assert_non_null(strstr(text, "    - {epochs: 2, freeze: [body], lr: 0.003}\n"));
  assert_non_null(strstr(text, "    - {epochs: 3, lr: [1e-06, 0.0001], weight_decay: 0.01, "
                               "schedule: {pct_start: 0.8}}\n"));
  free(text);
  /* Groups alone decide nothing; stages do. */
  assert_true(plain->hash == grouped->hash);
  assert_true(plain->hash != p->hash);
  char *sets[] = {"train.stages.1.lr=1.0e-3"};
  pn_pipeline *q = tu_pipeline("plan.yaml", sets, 1);
  assert_true(q->hash != p->hash);
  assert_true(q->stages[1].lr_lo == 1e-3 && q->stages[1].lr_hi == 1e-3);
  pn_pipeline_free(p), pn_pipeline_free(plain), pn_pipeline_free(grouped), pn_pipeline_free(q);
}

static void expect_error(const char *section, const char *want1, const char *want2) {
  write_pipeline("bad.yaml", "{type: adam}", section, "schedule: {type: onecycle}\n");
  tu_pipeline_error("bad.yaml", NULL, 0, want1, want2);
}

static void test_stage_errors(void **state) {
  (void)state;
  const char *g = "  groups: {body: [fc1, bn], head: [fc2]}\n";
  char t[512];
  /* train: starts on line 17, so the stage is line 21; 'bdy' is in column 28. */
  snprintf(t, sizeof t, "%s  stages:\n    - {epochs: 1, freeze: [bdy]}\n", g);
  expect_error(t, "bad.yaml:21:28: train.stages[0].freeze: unknown group 'bdy'",
               "did you mean 'body'");
  snprintf(t, sizeof t, "%s  stages:\n    - {epochs: 1, freeze: [xyzzy]}\n", g);
  expect_error(t, "unknown group 'xyzzy' (did you mean 'body'?)", NULL);
  expect_error("  stages:\n    - {epochs: 1, freeze: [body]}\n", "define train.groups first", NULL);
  expect_error("  groups: {body: [fc3]}\n", "bad.yaml:19:19: train.groups: 'fc3' names no node",
               "did you mean 'fc");
  expect_error("  groups: {body: [fc]}\n", "'fc' names no node", NULL);
  snprintf(t, sizeof t, "%s  stages:\n    - {epochs: 1, freeze: [body, head]}\n", g);
  expect_error(t, "every group is frozen", NULL);
  expect_error("  epochs: 3\n  stages:\n    - {epochs: 1}\n", "bad.yaml:19:3",
               "takes its epochs from its stages");
  expect_error("  stages:\n    - {epochs: 1, lr: [1, 2, 3]}\n", "train.stages[0].lr must be", NULL);
  expect_error("  stages:\n    - {epochs: 1, lr: -1}\n", "must be positive", NULL);
  expect_error("  stages:\n    - {lr: 1}\n", "missing required key 'epochs'", NULL);
  expect_error("  stages:\n    - {epochs: 1, frezee: [body]}\n", "did you mean 'freeze'", NULL);
  expect_error("  stages:\n    - {epochs: 1, schedule: {pct_strat: 0.5}}\n",
               "bad.yaml:20:30: train.stages[0].schedule", "did you mean 'pct_start'");
  expect_error("  stages: []\n", "train.stages is empty", NULL);
  expect_error("  stages:\n    - {epochs: 1, weight_decay: -0.1}\n",
               "bad.yaml:20:33: train.stages[0].weight_decay must not be negative", NULL);
  expect_error("  stages:\n    - {epochs: 1, weight_decy: 0.1}\n", "did you mean 'weight_decay'",
               NULL);
}

/* A size needs an image set: said before any training. */
static void test_size_needs_images(void **state) {
  (void)state;
  write_pipeline("size.yaml", "{type: adam}", "  stages:\n    - {epochs: 1, size: 16}\n", NULL);
  pn_pipeline *p = load("size.yaml");
  pn_train_options o = {NULL, NULL, NULL, NULL};
  pn_train_result r;
  FILE *null = fopen("/dev/null", "w");
  o.out = null;
  assert_int_not_equal(pn_train(p, &o, &r), PN_OK);
  assert_non_null(strstr(pn_last_error(), "train.stages[0].size: data.train is not an image set"));
  fclose(null);
  pn_pipeline_free(p);
}

/* ------------------------------------------------------------ resizing */

/* Two classes of 20x20 PNGs, reddish and bluish, under imgs. */
static void write_png_folder(void) {
  const char *classes[2] = {"red", "blue"};
  for (int c = 0; c < 2; c++) {
    mkdir(tu_path("imgs"), 0755);
    mkdir(tu_path("imgs/%s", classes[c]), 0755);
    for (int i = 0; i < 12; i++) {
      pn_image img;
      assert_int_equal(pn_image_alloc(&img, 20, 20), PN_OK);
      for (int k = 0; k < 20 * 20; k++) {
        uint32_t r[4];
        pn_philox4x32((uint64_t)c, (uint64_t)(i * 400 + k), r);
        img.data[3 * k + 0] = (uint8_t)(r[0] % 100 + (c == 0 ? 150 : 0));
        img.data[3 * k + 1] = (uint8_t)(r[1] % 100);
        img.data[3 * k + 2] = (uint8_t)(r[2] % 100 + (c == 1 ? 150 : 0));
      }
      assert_int_equal(pn_image_write_png(tu_path("imgs/%s/%02d.png", classes[c], i), &img), PN_OK);
      pn_image_free(&img);
    }
  }
}

static void write_image_pipeline(const char *file, const char *checkpoint) {
  tu_write_text(tu_path("%s", file),
                "seed: 5\n"
                "backend: reference\n"
                "data:\n"
                "  train:\n"
                "    type: imagefolder\n"
                "    root: imgs\n"
                "    transforms: [{type: resize, size: 16}, {type: center_crop, size: 16}]\n"
                "  valid:\n"
                "    split: 0.25\n"
                "    transforms: [{type: resize, size: 16}, {type: center_crop, size: 16}]\n"
                "  batch: 6\n"
                "model:\n"
                "  layers:\n"
                "    - {name: conv, type: conv2d, out: 4, kernel: 3, padding: 1}\n"
                "    - {name: pool, type: adaptive_avg_pool2d, size: 1}\n"
                "    - {name: flat, type: flatten}\n"
                "    - {name: fc, type: linear, out: 2}\n"
                "loss: {type: cross_entropy}\n"
                "optimizer: {type: adam}\n"
                "train:\n"
                "  progress: off\n"
                "  stages: [{epochs: 1}, {epochs: 2, size: 24}]\n"
                "checkpoint: {path: %s}\n",
                checkpoint);
}

/* The second stage trains on 24-pixel images with the model built for 16
 * (it ends in adaptive pooling), and a resumed run lands at that size. */
static void test_progressive_resizing(void **state) {
  (void)state;
  if (!pn_registry_find("resize") || !pn_registry_find("imagefolder")) skip();
  write_png_folder();
  write_image_pipeline("img.yaml", "img.safetensors");
  pn_pipeline *p = load("img.yaml");
  steps rec = {.n = 0};
  char *table = train(p, NULL, &rec);
  assert_int_equal(rec.n, 3 * 3); /* 18 training images in batches of 6 */
  for (int i = 0; i < rec.n; i++) {
    int64_t side = rec.s[i].stage == 0 ? 16 : 24;
    assert_int_equal(rec.s[i].x_shape.ndim, 4);
    assert_int_equal(rec.s[i].x_shape.dim[2], side);
    assert_int_equal(rec.s[i].x_shape.dim[3], side);
  }
  assert_non_null(strstr(table, "stage 2/2: 2 epochs, all trainable, lr 1e-03, size 24\n"));
  free(table);
  pn_tensor_map *uninterrupted = tu_tensors("img.safetensors");
  /* A checkpoint inside stage 2, after epoch 2, from a run whose stage 2 is
   * one epoch long. */
  write_image_pipeline("img2.yaml", "img2.safetensors");
  char *sets[] = {"train.stages.1.epochs=1"};
  pn_pipeline *q = tu_pipeline("img2.yaml", sets, 1);
  free(train(q, NULL, NULL));
  rec.n = 0;
  free(train(p, "img2.safetensors", &rec));
  assert_int_equal(rec.n, 3);
  assert_int_equal(rec.s[0].x_shape.dim[3], 24);
  assert_int_equal(rec.s[0].stage, 1);
  /* Without a schedule the shorter stage 2 trains its first epoch alike. */
  pn_tensor_map *resumed = tu_tensors("img.safetensors");
  tu_assert_same_tensors(uninterrupted, resumed);
  pn_tensor_map_free(uninterrupted), pn_tensor_map_free(resumed);
  pn_pipeline_free(p), pn_pipeline_free(q);
}

/* ------------------------------------------------------------ lr find */

static void test_lr_find(void **state) {
  (void)state;
  char *sets[] = {"model.layers.bn.type=identity"}; /* batch norm would tame it */
  write_pipeline("find.yaml", "{type: sgd, momentum: 0.9}", "", NULL);
  pn_pipeline *p = tu_pipeline("find.yaml", sets, 1);
  pn_lr_find_options o = {1e-5, 1e4, 60, NULL, NULL};
  pn_lr_find_result r;
  char *text = NULL;
  size_t len = 0;
  o.out = open_memstream(&text, &len);
  assert_int_equal(pn_lr_find(p, &o, &r), PN_OK);
  fclose(o.out);
  assert_true(r.n >= 25 && r.n <= 60);
  assert_float_equal(r.lrs[0], 1e-5, 1e-18);
  for (int i = 1; i < r.n; i++)
    assert_float_equal(r.lrs[i] / r.lrs[i - 1], pow(1e9, 1.0 / 59), 1e-9);
  /* SGD at rates in the thousands blows up: the test stops early. */
  if (!r.diverged) fail_msg("no divergence:\n%s", text);
  assert_true(r.n < 60);
  assert_true(r.lr_steep >= 1e-5 && r.lr_steep <= 1e4);
  assert_true(r.lr_min >= 1e-6 && r.lr_min <= 1e3);
  assert_non_null(strstr(text, "step   lr           smoothed_loss\n1      1.0000e-05 "));
  free(text);
  pn_lr_find_result_free(&r);
  o.start = 1;
  o.end = 0.5;
  assert_int_not_equal(pn_lr_find(p, &o, &r), PN_OK);
  assert_non_null(strstr(pn_last_error(), "start < end"));
  pn_pipeline_free(p);
}

int main(void) {
  if (tu_tmpdir_setup(NULL) != 0) return 1;
  write_idx("train", 256, 11);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_freeze_keeps_frozen_bits),
      cmocka_unit_test(test_frozen_ops_are_not_recorded),
      cmocka_unit_test(test_group_rates),
      cmocka_unit_test(test_stage_weight_decay),
      cmocka_unit_test(test_schedule_restarts),
      cmocka_unit_test(test_resume_into_second_stage),
      cmocka_unit_test(test_resume_inside_unfreezing_stage),
      cmocka_unit_test(test_plan_and_hash),
      cmocka_unit_test(test_stage_errors),
      cmocka_unit_test(test_size_needs_images),
      cmocka_unit_test(test_progressive_resizing),
      cmocka_unit_test(test_lr_find),
  };
  int failed = cmocka_run_group_tests(tests, NULL, NULL);
  tu_tmpdir_teardown(NULL);
  return failed ? 1 : 0;
}
