/* The training loop. One `run` holds everything a pipeline builds; each
 * function does one phase: setup, resume, an epoch, an evaluation, a
 * checkpoint. */
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <plugnet/plugnet.h>

#include "internal.h"

typedef struct run {
  const pn_pipeline *p;
  FILE *out, *prog;
  int bar; /* progress as a redrawn bar (TTY) rather than lines */
  pn_device *dev;
  pn_dataset *train_ds, *test_ds;
  pn_dataset *valid_ds; /* the training files seen through the validation transforms */
  pn_transforms *train_tf, *valid_tf, *test_tf;
  pn_loader *train_ld, *valid_ld, *test_ld;
  pn_model *model;
  pn_loss *loss;
  pn_optimizer *opt;
  pn_schedule *sched;
  int64_t first_epoch, skip_batches;
  /* The split, kept to make the loaders anew when a stage resizes images. */
  int64_t *train_idx, *valid_idx, n_train, n_valid;
  int64_t width0;    /* the training images' width as the transforms say; 0: no images */
  pn_shape x_shape0; /* a training sample's shape before any stage resizes it */
  double size_scale; /* the transforms' current size_scale */
  /* Stages; a run without them is one stage (`whole`) of p->epochs. */
  const pn_stage *stages;
  int n_stages;
  pn_stage whole;
  int stage;                /* the one being trained; -1 before the first */
  int64_t stage_first_step; /* the optimizer step it began at */
  int64_t total_steps;      /* its steps, over which the schedule runs */
  pn_schedule *stage_sched; /* its own schedule (overridden values); NULL: r->sched */
  double peak_lr;           /* its rate for the last group, before the schedule */
  double last_lr;           /* the rate of the last step */
  /* Optimizer slot k is model parameter slot_param[k], of group slot_group[k];
   * slot_bn[k]: it belongs to a batch norm (trainable under train_bn). */
  int *slot_param, *slot_group;
  char *slot_bn;
  int n_slots;
  pn_train_step_fn on_step;
  void *user;
} run;

typedef struct eval_result {
  double loss, accuracy;
  int64_t samples;
} eval_result;

static volatile sig_atomic_t interrupted;

static void on_sigint(int sig) {
  (void)sig;
  interrupted = 1;
}

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void free_loaders(run *r) {
  pn_loader_free(r->train_ld);
  pn_loader_free(r->valid_ld);
  pn_loader_free(r->test_ld);
  r->train_ld = r->valid_ld = r->test_ld = NULL;
}

static void run_free(run *r) {
  free_loaders(r);
  pn_dataset_close(r->train_ds);
  pn_dataset_close(r->valid_ds);
  pn_dataset_close(r->test_ds);
  pn_transforms_free(r->train_tf);
  pn_transforms_free(r->valid_tf);
  pn_transforms_free(r->test_tf);
  pn_optimizer_free(r->opt);
  pn_schedule_free(r->sched);
  pn_schedule_free(r->stage_sched);
  pn_loss_free(r->loss);
  pn_model_free(r->model);
  free(r->train_idx), free(r->valid_idx);
  free(r->slot_param), free(r->slot_group), free(r->slot_bn);
}

/* ------------------------------------------------------------ setup */

static pn_status setup_device(run *r, const char *backend) {
  PN_TRY(pn_pipeline_device(r->p, backend, &r->dev));
  pn_set_seed(r->p->seed);
  return PN_OK;
}

/* The test set is opened on a second thread while the training set opens:
 * decompressing a data set is a good part of a short run. */
typedef struct opener {
  const pn_pipeline_feature *f;
  pn_dataset *ds;
  pn_status s;
  char msg[1024];
} opener;

static void *open_dataset(void *arg) {
  opener *o = arg;
  o->s = pn_dataset_open(o->f->feature, o->f->cfg, &o->ds);
  if (o->s != PN_OK) snprintf(o->msg, sizeof o->msg, "%s", pn_last_error());
  return NULL;
}

static pn_status open_datasets(run *r) {
  const pn_pipeline *p = r->p;
  opener test = {&p->test_data, NULL, PN_OK, ""};
  pthread_t th;
  int threaded = p->test_data.feature && pthread_create(&th, NULL, open_dataset, &test) == 0;
  if (p->test_data.feature && !threaded) open_dataset(&test);
  pn_status s = pn_dataset_open(p->train_data.feature, p->train_data.cfg, &r->train_ds);
  if (threaded) pthread_join(th, NULL);
  r->test_ds = test.ds;
  if (s == PN_OK && test.s != PN_OK) s = pn_error(test.s, "%s", test.msg);
  return s;
}

/* An image set's samples become tensors through its transforms; any other
 * set takes none. */
static pn_status attach(pn_dataset *ds, const pn_pipeline_chain *c, const char *where,
                        double size_scale, pn_transforms **tf) {
  if (!ds) return PN_OK;
  if (!pn_dataset_is_image(ds)) {
    if (!c->n) return PN_OK;
    return pn_error(PN_ERR_INVALID, "%s.transforms: this data set is not an image set", where);
  }
  if (!c->n)
    return pn_error(PN_ERR_INVALID,
                    "%s: image sets need transforms that make every image one size, e.g. "
                    "transforms: [{type: resize, size: 146}, {type: center_crop, size: 128}]",
                    where);
  pn_transforms_free(*tf);
  *tf = NULL;
  PN_TRY(pn_pipeline_transforms(c, size_scale, tf));
  return pn_dataset_set_transforms(ds, *tf);
}

static pn_status attach_transforms(run *r, double size_scale) {
  const pn_pipeline *p = r->p;
  PN_TRY(attach(r->train_ds, &p->train_transforms, "data.train", size_scale, &r->train_tf));
  if (r->valid_ds)
    PN_TRY(attach(r->valid_ds, &p->valid_transforms, "data.valid", size_scale, &r->valid_tf));
  return attach(r->test_ds, &p->test_transforms, "data.test", size_scale, &r->test_tf);
}

static pn_status split(run *r, int64_t **tr, int64_t *n_tr, int64_t **va, int64_t *n_va) {
  const pn_pipeline *p = r->p;
  if (p->valid_stratify)
    return pn_split_stratified(r->train_ds, p->valid_split, p->valid_seed, tr, n_tr, va, n_va);
  int64_t n = pn_dataset_get_info(r->train_ds)->length;
  return pn_split(n, p->valid_split, p->valid_seed, tr, n_tr, va, n_va);
}

static pn_status make_loaders(run *r) {
  const pn_pipeline *p = r->p;
  pn_dataset *vds = r->valid_ds ? r->valid_ds : r->train_ds;
  PN_TRY(pn_loader_new(r->train_ds, r->train_idx, r->n_train, p->batch, p->shuffle, p->seed, 0,
                       &r->train_ld));
  if (r->n_valid > 0)
    PN_TRY(pn_loader_new(vds, r->valid_idx, r->n_valid, p->batch, 0, p->seed, 0, &r->valid_ld));
  if (r->test_ds)
    PN_TRY(pn_loader_new(r->test_ds, NULL, 0, p->batch, 0, p->seed, 0, &r->test_ld));
  if (r->test_ds && p->valid_is_test)
    PN_TRY(pn_loader_new(r->test_ds, NULL, 0, p->batch, 0, p->seed, 0, &r->valid_ld));
  pn_loader *ld[3] = {r->train_ld, r->valid_ld, r->test_ld};
  for (int i = 0; i < 3; i++)
    if (ld[i]) PN_TRY(pn_loader_set_workers(ld[i], p->data_workers, 0));
  return PN_OK;
}

static pn_status setup_data(run *r) {
  PN_TRY(open_datasets(r));
  PN_TRY(split(r, &r->train_idx, &r->n_train, &r->valid_idx, &r->n_valid));
  int image = pn_dataset_is_image(r->train_ds);
  if (r->n_valid > 0 && image && !(r->valid_ds = pn_dataset_share(r->train_ds)))
    return pn_error(PN_ERR_NOMEM, "out of memory");
  PN_TRY(attach_transforms(r, 1.0));
  r->x_shape0 = pn_dataset_get_info(r->train_ds)->x_shape;
  if (image) r->width0 = r->x_shape0.dim[2];
  return make_loaders(r);
}

static pn_status setup_model(run *r) {
  const pn_pipeline *p = r->p;
  pn_shape in = p->input.ndim ? p->input : pn_dataset_get_info(r->train_ds)->x_shape;
  PN_TRY(pn_pipeline_build_model(p, &in, &r->model));
  if (!p->loss.feature) return pn_error(PN_ERR_INVALID, "%s: the pipeline has no loss", p->file);
  return pn_loss_create(p->loss.feature, p->loss.cfg, &r->loss);
}

static void add_slot(run *r, int param, int bn) {
  const char *name = pn_model_param(r->model, param)->name;
  int g = name ? pn_pipeline_param_group(r->p, name) : -1;
  r->slot_param[r->n_slots] = param;
  r->slot_group[r->n_slots] = g < 0 ? 0 : g;
  r->slot_bn[r->n_slots++] = (char)bn;
}

/* The optimizer gets every parameter its layer made trainable; a stage
 * freezes some by turning their gradients off, so slot k stays parameter
 * slot_param[k] whatever is frozen. */
static pn_status map_slots(run *r) {
  const pn_model *m = r->model;
  size_t n = (size_t)pn_model_param_count(m) + 1;
  r->slot_param = calloc(n, sizeof *r->slot_param);
  r->slot_group = calloc(n, sizeof *r->slot_group);
  r->slot_bn = calloc(n, 1);
  if (!r->slot_param || !r->slot_group || !r->slot_bn)
    return pn_error(PN_ERR_NOMEM, "out of memory");
  for (int l = 0, i = 0; l < pn_model_layer_count(m); l++) {
    int bn = strcmp(pn_model_node_feature(m, l), "batch_norm") == 0;
    for (int j = 0; j < pn_layer_param_count(pn_model_layer(m, l)); j++, i++)
      if (pn_model_param_trainable(m, i)) add_slot(r, i, bn);
  }
  return PN_OK;
}

static pn_status setup_optimizer(run *r) {
  const pn_pipeline *p = r->p;
  if (!p->optimizer.feature)
    return pn_error(PN_ERR_INVALID, "%s: the pipeline has no optimizer", p->file);
  PN_TRY(map_slots(r));
  pn_tensor **params = malloc(sizeof *params * (size_t)(r->n_slots + 1));
  if (!params) return pn_error(PN_ERR_NOMEM, "out of memory");
  for (int k = 0; k < r->n_slots; k++) params[k] = pn_model_param(r->model, r->slot_param[k]);
  pn_status s =
      pn_optimizer_create(p->optimizer.feature, p->optimizer.cfg, params, r->n_slots, &r->opt);
  free(params);
  PN_TRY(s);
  if (p->schedule.feature)
    PN_TRY(pn_schedule_create(p->schedule.feature, p->schedule.cfg, &r->sched));
  return PN_OK;
}

/* ------------------------------------------------------------ stages */

static int64_t stage_first_epoch(const run *r, int s) {
  int64_t e = 0;
  for (int i = 0; i < s; i++) e += r->stages[i].epochs;
  return e;
}

/* The stage that trains `epoch` (the last one for epochs past the end). */
static int stage_of(const run *r, int64_t epoch) {
  int s = 0;
  for (int64_t end = r->stages[0].epochs; epoch >= end && s + 1 < r->n_stages;)
    end += r->stages[++s].epochs;
  return s;
}

/* Batch norms stay trainable in frozen groups under train_bn: fastai's
 * default, since their statistics must follow the new data. */
static int slot_frozen(const run *r, const pn_stage *st, int k) {
  if (!st->n_freeze || (r->p->train_bn && r->slot_bn[k])) return 0;
  return pn_stage_freezes(st, r->p->param_groups[r->slot_group[k]].name);
}

/* Frozen parameters stop requiring a gradient: autograd then records no op
 * fed only by them and frozen inputs, so the frozen part costs no backward
 * time, and the optimizer skips them (no update, no weight decay). */
static void apply_freeze(run *r, const pn_stage *st) {
  for (int k = 0; k < r->n_slots; k++) {
    pn_tensor *t = pn_model_param(r->model, r->slot_param[k]);
    pn_tensor_set_requires_grad(t, !slot_frozen(r, st, k));
    pn_tensor_zero_grad(t);
  }
}

/* fastai's slice(lo, hi) over n groups: lo for the first, hi for the last,
 * geometric in between. */
static double group_lr(const pn_stage *st, int g, int n) {
  if (n < 2 || g >= n - 1) return st->lr_hi;
  return st->lr_lo * pow(st->lr_hi / st->lr_lo, (double)g / (double)(n - 1));
}

/* Each step's rate is the last group's (peak_lr times the schedule's
 * factor); the other groups get theirs as multipliers of it. */
static void apply_lrs(run *r, const pn_stage *st) {
  int n = r->p->n_param_groups;
  r->peak_lr = st->lr_hi > 0 ? st->lr_hi : pn_optimizer_base_lr(r->opt);
  for (int k = 0; k < r->n_slots; k++) {
    double lr = st->lr_hi > 0 ? group_lr(st, r->slot_group[k], n) : r->peak_lr;
    pn_optimizer_set_lr_mult(r->opt, k, r->peak_lr > 0 ? lr / r->peak_lr : 1.0);
  }
}

/* Like the rate, a stage's weight decay holds for it alone: a stage
 * without one has the optimizer's. */
static void apply_weight_decay(run *r, const pn_stage *st) {
  double wd = pn_optimizer_base_weight_decay(r->opt);
  pn_optimizer_set_weight_decay(r->opt, st->has_weight_decay ? st->weight_decay : wd);
}

/* A stage without a size keeps the one before it. */
static int64_t stage_size(const run *r, int s) {
  for (; s >= 0; s--)
    if (r->stages[s].size) return r->stages[s].size;
  return 0;
}

/* Progressive resizing: every `size` in the transforms is scaled so that
 * training images come out `size` wide; the loaders are made anew since
 * their batches change shape (a model ending in adaptive pooling takes
 * any size). */
static pn_status apply_size(run *r, int s) {
  int64_t size = stage_size(r, s);
  double scale = size && r->width0 ? (double)size / (double)r->width0 : 1.0;
  if (scale == r->size_scale) return PN_OK;
  free_loaders(r);
  PN_TRY(attach_transforms(r, scale));
  r->size_scale = scale;
  return make_loaders(r);
}

static pn_status stage_schedule(run *r, const pn_stage *st) {
  pn_schedule_free(r->stage_sched);
  r->stage_sched = NULL;
  if (!st->schedule) return PN_OK;
  return pn_schedule_create(r->p->schedule.feature, st->schedule, &r->stage_sched);
}

/* A stage is one fit: the schedule runs over its own steps. */
static pn_status enter_stage(run *r, int s) {
  const pn_stage *st = &r->stages[s];
  int64_t nb = pn_loader_batches(r->train_ld);
  r->stage = s;
  r->stage_first_step = stage_first_epoch(r, s) * nb;
  r->total_steps = st->epochs * nb;
  apply_freeze(r, st);
  apply_lrs(r, st);
  apply_weight_decay(r, st);
  PN_TRY(apply_size(r, s));
  return stage_schedule(r, st);
}

/* Sizes need images; checked before any training so a long first stage
 * does not end in this error. */
static pn_status check_stages(const run *r) {
  for (int s = 0; s < r->n_stages; s++)
    if (r->stages[s].size && !r->width0)
      return pn_error(PN_ERR_INVALID,
                      "%s: train.stages[%d].size: data.train is not an image set, whose "
                      "transforms could change the size",
                      r->p->file, s);
  return PN_OK;
}

/* The updates slot k has had before step `pos`: the steps of the stages
 * that let it train. */
static int64_t slot_steps(const run *r, int k, int64_t pos) {
  int64_t nb = pn_loader_batches(r->train_ld), first = 0, n = 0;
  for (int s = 0; s < r->n_stages && first < pos; s++) {
    int64_t end = first + r->stages[s].epochs * nb;
    if (!slot_frozen(r, &r->stages[s], k)) n += (end < pos ? end : pos) - first;
    first = end;
  }
  return n;
}

/* Only slots trained before `pos` have optimizer state, so a resumed run
 * saves and loads exactly what an uninterrupted one holds, and a slot first
 * unfrozen later starts afresh in both. */
static int slot_trained(const run *r, int k, int64_t pos) { return slot_steps(r, k, pos) > 0; }

/* ------------------------------------------------------------ checkpoints */

static const char *meta(const pn_tensor_map *m, const char *key, const char *file) {
  const char *v = pn_tensor_map_meta(m, key);
  if (!v)
    pn_error(PN_ERR_PARSE, "%s: not a plugnet training checkpoint (no '%s' in __metadata__)", file,
             key);
  return v;
}

static void optim_state_name(const run *r, int slot, int k, char *buf, size_t n) {
  pn_tensor *t = pn_model_param(r->model, r->slot_param[slot]);
  snprintf(buf, n, "optimizer.%s.%s", pn_optimizer_state_name(r->opt, k), t->name);
}

static int64_t position(const run *r, int64_t epoch, int64_t batch) {
  return epoch * pn_loader_batches(r->train_ld) + batch;
}

/* A JSON array of v's texts (NULL: one isn't UTF-8, or out of memory). */
static char *json_texts(const char *const *v, int n) {
  json_t *a = json_array();
  for (int k = 0; a && k < n; k++)
    if (json_array_append_new(a, json_string(v[k])) != 0) {
      json_decref(a);
      a = NULL;
    }
  char *text = a ? json_dumps(a, JSON_COMPACT) : NULL;
  json_decref(a);
  return text;
}

/* The class names, so that predicting needs no training set; NULL when the
 * set has none of its own (only numbers) or they cannot be JSON text. */
static char *classes_meta(run *r) {
  int n = pn_dataset_get_info(r->train_ds)->n_classes;
  if (n < 1 || !pn_dataset_class_name(r->train_ds, 0, NULL, 0)) return NULL;
  const char **names = calloc((size_t)n, sizeof *names);
  for (int k = 0; names && k < n; k++) names[k] = pn_dataset_class_name(r->train_ds, k, NULL, 0);
  char *text = names ? json_texts(names, n) : NULL;
  free(names);
  return text;
}

/* What predicting needs besides the weights, as the training set would tell
 * it: the class names, and a sample's shape at the transforms' own size
 * (the model is built for it; a stage's size is relative to it). */
static pn_status set_data_meta(run *r, pn_tensor_map *m) {
  char shape[256] = "[", *classes = classes_meta(r);
  for (int i = 0; i < r->x_shape0.ndim; i++)
    snprintf(shape + strlen(shape), sizeof shape - strlen(shape), "%s%lld", i ? "," : "",
             (long long)r->x_shape0.dim[i]);
  strcat(shape, "]");
  pn_status s = pn_tensor_map_set_meta(m, "input_shape", shape);
  if (s == PN_OK && classes) s = pn_tensor_map_set_meta(m, "classes", classes);
  free(classes);
  return s;
}

static pn_status save_checkpoint(run *r, const char *path, int64_t epoch, int64_t batch,
                                 pn_train_result *res) {
  char buf[512];
  pn_tensor_map *m = pn_tensor_map_new();
  if (!m) return pn_error(PN_ERR_NOMEM, "out of memory");
  pn_status s = pn_model_state(r->model, m);
  int64_t pos = position(r, epoch, batch);
  for (int i = 0; i < r->n_slots && s == PN_OK; i++) {
    if (!slot_trained(r, i, pos)) continue;
    for (int k = 0; k < pn_optimizer_state_count(r->opt) && s == PN_OK; k++) {
      optim_state_name(r, i, k, buf, sizeof buf);
      s = pn_tensor_map_put(m, buf, pn_optimizer_state(r->opt, i, k));
    }
  }
  struct {
    const char *k;
    char v[64];
  } kv[5] = {{"epoch", ""},
             {"batch", ""},
             {"step", ""},
             {"pipeline_hash", ""},
             {"format", "plugnet-train-1"}};
  snprintf(kv[0].v, sizeof kv[0].v, "%lld", (long long)epoch);
  snprintf(kv[1].v, sizeof kv[1].v, "%lld", (long long)batch);
  snprintf(kv[2].v, sizeof kv[2].v, "%lld", (long long)pn_optimizer_steps(r->opt));
  snprintf(kv[3].v, sizeof kv[3].v, "%016llx", (unsigned long long)r->p->hash);
  for (int i = 0; i < 5 && s == PN_OK; i++) s = pn_tensor_map_set_meta(m, kv[i].k, kv[i].v);
  if (s == PN_OK) s = pn_tensor_map_set_meta(m, "optimizer", r->p->optimizer.feature);
  if (s == PN_OK) s = set_data_meta(r, m);
  if (s == PN_OK) s = pn_safetensors_save(path, m);
  pn_tensor_map_free(m);
  if (s == PN_OK) snprintf(res->checkpoint, sizeof res->checkpoint, "%s", path);
  return s;
}

/* The state of every slot trained before the checkpoint's position. */
static pn_status load_optimizer_state(run *r, const pn_tensor_map *m, const char *file) {
  char buf[512];
  int64_t pos = position(r, r->first_epoch, r->skip_batches);
  for (int i = 0; i < r->n_slots; i++) {
    if (!slot_trained(r, i, pos)) continue;
    for (int k = 0; k < pn_optimizer_state_count(r->opt); k++) {
      optim_state_name(r, i, k, buf, sizeof buf);
      pn_tensor *t = pn_tensor_map_get(m, buf);
      if (!t) return pn_error(PN_ERR_NOT_FOUND, "%s: no optimizer state '%s'", file, buf);
      pn_tensor *moved = pn_tensor_to(t, r->dev);
      if (!moved) return PN_ERR_DEVICE;
      pn_tensor_set_requires_grad(moved, 0);
      PN_TRY(pn_optimizer_set_state(r->opt, i, k, moved));
    }
  }
  return PN_OK;
}

/* Schedules follow the run's count; each slot's own (Adam's bias
 * correction) counts only the stages it trained in, as it did uninterrupted. */
static void restore_steps(run *r, int64_t steps) {
  int64_t pos = position(r, r->first_epoch, r->skip_batches);
  pn_optimizer_set_steps(r->opt, steps);
  for (int k = 0; k < r->n_slots; k++)
    pn_optimizer_set_param_steps(r->opt, k, slot_steps(r, k, pos));
}

static pn_status resume(run *r, const char *file) {
  pn_tensor_map *m = NULL;
  PN_TRY(pn_safetensors_load(file, r->dev, &m));
  const char *epoch = meta(m, "epoch", file), *batch = meta(m, "batch", file);
  const char *step = meta(m, "step", file), *hash = meta(m, "pipeline_hash", file);
  pn_status s = epoch && batch && step && hash ? PN_OK : PN_ERR_PARSE;
  char want[32];
  snprintf(want, sizeof want, "%016llx", (unsigned long long)r->p->hash);
  if (s == PN_OK && strcmp(hash, want) != 0)
    PN_WARN("%s was written by a different pipeline (hash %s, this one %s); continuing", file, hash,
            want);
  if (s == PN_OK) {
    r->first_epoch = strtoll(epoch, NULL, 10);
    r->skip_batches = strtoll(batch, NULL, 10);
  }
  if (s == PN_OK) s = pn_model_load_state(r->model, m, 1);
  if (s == PN_OK) s = load_optimizer_state(r, m, file);
  if (s == PN_OK) restore_steps(r, strtoll(step, NULL, 10));
  pn_tensor_map_free(m);
  return s == PN_OK ? PN_OK : pn_error_prefix(s, "resuming from %s: ", file);
}

/* ------------------------------------------------------------ progress */

static void fmt_time(double s, char *buf, size_t n) {
  int t = (int)(s + 0.5);
  snprintf(buf, n, "%02d:%02d", t / 60, t % 60);
}

static void progress(run *r, int64_t epoch, int64_t b, int64_t nb, double loss, double t0,
                     int64_t samples) {
  double el = now() - t0, rate = el > 0 ? (double)samples / el : 0.0;
  char eta[16];
  fmt_time(b > 0 ? el * (double)(nb - b) / (double)b : 0.0, eta, sizeof eta);
  if (r->bar) {
    int width = 30, done = (int)(width * b / (nb ? nb : 1));
    fprintf(r->prog, "\repoch %lld/%lld [%.*s%*s] %lld/%lld loss %.4f %.0f samples/s ETA %s ",
            (long long)epoch + 1, (long long)r->p->epochs, done,
            "==============================", width - done, "", (long long)b, (long long)nb, loss,
            rate, eta);
    if (b == nb) fputs("\r\033[K", r->prog);
  } else {
    fprintf(r->prog, "epoch %lld/%lld: batch %lld/%lld, loss %.4f, %.0f samples/s, ETA %s\n",
            (long long)epoch + 1, (long long)r->p->epochs, (long long)b, (long long)nb, loss, rate,
            eta);
  }
  fflush(r->prog);
}

/* ------------------------------------------------------------ evaluation */

static int64_t count_correct(pn_tensor *pred, pn_tensor *y) {
  int64_t n = pred->shape[0], c = pred->ndim > 1 ? pn_tensor_numel(pred) / n : 1, ok = 0;
  float *ph = malloc(sizeof *ph * (size_t)(n * c));
  int64_t *yh = malloc(sizeof *yh * (size_t)n);
  if (ph && yh && pn_tensor_read(pred, ph, sizeof *ph * (size_t)(n * c)) == PN_OK &&
      pn_tensor_read(y, yh, sizeof *yh * (size_t)n) == PN_OK) {
    for (int64_t i = 0; i < n; i++) {
      int64_t best = 0;
      for (int64_t k = 1; k < c; k++)
        if (ph[i * c + k] > ph[i * c + best]) best = k;
      ok += best == yh[i];
    }
  }
  free(ph);
  free(yh);
  return ok;
}

static pn_status batch_loss(run *r, pn_tensor *x, pn_tensor *y, pn_tensor **pred, pn_tensor **l) {
  *pred = *l = NULL;
  PN_TRY(pn_model_forward(r->model, x, pred));
  return pn_loss_forward(r->loss, *pred, y, l);
}

static pn_status evaluate(run *r, pn_loader *ld, eval_result *e) {
  double sum = 0.0;
  int64_t correct = 0, n = 0;
  pn_status s = PN_OK;
  int was = pn_set_grad_enabled(0);
  pn_model_set_training(r->model, 0);
  pn_loader_start(ld, 0, 0);
  for (;;) {
    pn_tensor *x, *y, *pred = NULL, *l = NULL;
    if ((s = pn_loader_next(ld, r->dev, &x, &y)) != PN_OK || !x) break;
    s = batch_loss(r, x, y, &pred, &l);
    if (s == PN_OK) {
      sum += (double)pn_tensor_get_f32(l, 0) * (double)x->shape[0];
      if (pn_loss_target_is_index(r->loss)) correct += count_correct(pred, y);
      n += x->shape[0];
    }
    pn_tensor_unref(x), pn_tensor_unref(y), pn_tensor_unref(pred), pn_tensor_unref(l);
    if (s != PN_OK) break;
  }
  pn_set_grad_enabled(was);
  e->loss = n ? sum / (double)n : NAN;
  e->accuracy = n ? (double)correct / (double)n : NAN;
  e->samples = n;
  return s;
}

/* ------------------------------------------------------------ training */

static pn_status nan_stop(run *r, int64_t epoch, int64_t b) {
  const pn_stage *st = &r->stages[r->stage];
  char key[48] = "optimizer.lr";
  if (st->lr_hi > 0) snprintf(key, sizeof key, "train.stages.%d.lr", r->stage);
  return pn_error(PN_ERR_INVALID,
                  "the loss is NaN at step %lld (epoch %lld, batch %lld): try a lower learning "
                  "rate than %s = %g (e.g. --set %s=%g)",
                  (long long)pn_optimizer_steps(r->opt), (long long)epoch + 1, (long long)b + 1,
                  key, r->peak_lr, key, r->peak_lr / 10);
}

/* Forward, backward and one optimizer step at rate lr; *loss_value is NaN
 * or infinite when the step was skipped for it. */
static pn_status fit_batch(run *r, pn_tensor *x, pn_tensor *y, double lr, double mom,
                           double *loss_value) {
  pn_tensor *pred = NULL, *l = NULL;
  pn_status s = batch_loss(r, x, y, &pred, &l);
  if (s == PN_OK) *loss_value = pn_tensor_get_f32(l, 0);
  if (s == PN_OK && isfinite(*loss_value)) s = pn_backward(l, NULL);
  pn_tensor_unref(pred);
  pn_tensor_unref(l);
  pn_tape_clear();
  if (s != PN_OK || !isfinite(*loss_value)) return s;
  s = pn_optimizer_step(r->opt, lr, mom);
  pn_optimizer_zero_grad(r->opt);
  return s;
}

static pn_status train_step(run *r, pn_tensor *x, pn_tensor *y, double *loss_value) {
  int64_t step = pn_optimizer_steps(r->opt) - r->stage_first_step;
  pn_schedule *sched = r->stage_sched ? r->stage_sched : r->sched;
  double f = sched ? pn_schedule_factor(sched, step, r->total_steps) : 1.0;
  double mom = sched ? pn_schedule_momentum(sched, step, r->total_steps) : -1.0;
  r->last_lr = r->peak_lr * f;
  return fit_batch(r, x, y, r->last_lr, mom, loss_value);
}

static void report_step(run *r, int64_t epoch, pn_tensor *x, double loss) {
  if (!r->on_step) return;
  pn_train_step st = {pn_optimizer_steps(r->opt), epoch, r->stage, r->last_lr, loss,
                      pn_tensor_shape(x)};
  r->on_step(&st, r->user);
}

static pn_status train_epoch(run *r, int64_t epoch, double *mean_loss, pn_train_result *res) {
  int64_t nb = pn_loader_batches(r->train_ld), b = r->skip_batches, samples = 0, every = nb / 4;
  double sum = 0.0, t0 = now(), last = 0.0;
  pn_status s = PN_OK;
  pn_model_set_training(r->model, 1);
  pn_loader_start(r->train_ld, epoch, b);
  r->skip_batches = 0;
  while (s == PN_OK && !interrupted) {
    pn_tensor *x, *y;
    double lv = 0.0;
    if ((s = pn_loader_next(r->train_ld, r->dev, &x, &y)) != PN_OK || !x) break;
    s = train_step(r, x, y, &lv);
    if (s == PN_OK && isfinite(lv)) report_step(r, epoch, x, lv);
    samples += x->shape[0];
    pn_tensor_unref(x);
    pn_tensor_unref(y);
    if (s == PN_OK && !isfinite(lv)) s = nan_stop(r, epoch, b);
    if (s != PN_OK) break;
    sum += lv;
    b++;
    /* A terminal redraws at most ten times a second; a log gets four lines an epoch. */
    int due = r->bar ? now() - last >= 0.1 : every && b % every == 0;
    if (due || b == nb) {
      progress(r, epoch, b, nb, sum / (double)b, t0, samples);
      last = now();
    }
  }
  *mean_loss = b ? sum / (double)b : NAN;
  if (s == PN_OK && interrupted) {
    const char *path = r->p->checkpoint ? r->p->checkpoint : "interrupted.safetensors";
    s = save_checkpoint(r, path, epoch, b, res);
    res->interrupted = 1;
    res->epochs_done = epoch; /* the epoch in progress, counted from 0 */
    if (r->bar) fputc('\n', r->prog);
  }
  return s;
}

static void print_header(run *r) {
  fprintf(r->out, "%-6s %-11s %-11s", "epoch", "train_loss", "valid_loss");
  for (int i = 0; i < r->p->n_metrics; i++) fprintf(r->out, " %-10s", r->p->metrics[i]);
  fprintf(r->out, " %s\n", "time");
}

static void print_row(run *r, int64_t epoch, double train, const eval_result *v, double secs) {
  char t[16];
  fmt_time(secs, t, sizeof t);
  fprintf(r->out, "%-6lld %-11.6f ", (long long)epoch, train);
  if (v)
    fprintf(r->out, "%-11.6f", v->loss);
  else
    fprintf(r->out, "%-11s", "#na#");
  for (int i = 0; i < r->p->n_metrics; i++) {
    double acc = v ? v->accuracy : NAN;
    double val = strcmp(r->p->metrics[i], "error_rate") == 0 ? 1.0 - acc : acc;
    if (v)
      fprintf(r->out, " %-10.6f", val);
    else
      fprintf(r->out, " %-10s", "#na#");
  }
  fprintf(r->out, " %s\n", t);
  fflush(r->out);
}

/* 3e-03, 2.5e-04: rates as fastai writes them. */
static void fmt_rate(double v, char *buf, size_t n) {
  if (!(v > 0) || !isfinite(v)) {
    snprintf(buf, n, "%g", v);
    return;
  }
  int e = (int)floor(log10(v));
  double m = v / pow(10.0, e);
  if (m >= 9.995) m /= 10, e++;
  snprintf(buf, n, "%.3ge%c%02d", m, e < 0 ? '-' : '+', abs(e));
}

static void print_stage(run *r, int s) {
  const pn_stage *st = &r->stages[s];
  char lo[32], hi[32];
  fprintf(r->out, "stage %d/%d: %lld epoch%s, ", s + 1, r->n_stages, (long long)st->epochs,
          st->epochs == 1 ? "" : "s");
  for (int k = 0; k < st->n_freeze; k++)
    fprintf(r->out, "%s%s", st->freeze[k], k + 1 < st->n_freeze ? ", " : " frozen");
  if (st->n_freeze && r->p->train_bn) fputs(" (batch norms trainable)", r->out);
  if (!st->n_freeze) fputs("all trainable", r->out);
  fmt_rate(st->lr_lo > 0 ? st->lr_lo : r->peak_lr, lo, sizeof lo);
  fmt_rate(r->peak_lr, hi, sizeof hi);
  fprintf(r->out, ", lr %s%s%s", st->lr_lo != st->lr_hi ? lo : "",
          st->lr_lo != st->lr_hi ? ".." : "", hi);
  if (stage_size(r, s)) fprintf(r->out, ", size %lld", (long long)stage_size(r, s));
  if (st->has_weight_decay) fprintf(r->out, ", weight decay %g", st->weight_decay);
  fputc('\n', r->out);
}

static pn_status train_epochs(run *r, pn_train_result *res) {
  for (int64_t e = r->first_epoch; e < r->p->epochs; e++) {
    double t0 = now(), train_loss;
    eval_result v;
    int s = stage_of(r, e);
    if (s != r->stage) {
      PN_TRY(enter_stage(r, s));
      if (r->p->n_stages) print_stage(r, s);
    }
    PN_TRY(train_epoch(r, e, &train_loss, res));
    if (res->interrupted) return PN_OK;
    if (r->valid_ld) PN_TRY(evaluate(r, r->valid_ld, &v));
    print_row(r, e, train_loss, r->valid_ld ? &v : NULL, now() - t0);
    res->epochs_done = e + 1;
    res->train_loss = train_loss;
    if (r->valid_ld) res->has_valid = 1, res->valid_loss = v.loss, res->valid_accuracy = v.accuracy;
    int due = (e + 1) % r->p->checkpoint_every == 0 || e + 1 == r->p->epochs;
    if (r->p->checkpoint && due) PN_TRY(save_checkpoint(r, r->p->checkpoint, e + 1, 0, res));
  }
  return PN_OK;
}

static void report_test(run *r, const eval_result *t, pn_train_result *res) {
  res->has_test = 1;
  res->test_loss = t->loss;
  res->test_accuracy = t->accuracy;
  fprintf(r->out, "test: loss %.6f", t->loss);
  if (pn_loss_target_is_index(r->loss)) fprintf(r->out, ", accuracy %.4f", t->accuracy);
  fprintf(r->out, " (%lld samples)\n", (long long)t->samples);
}

static void init_run(run *r, const pn_pipeline *p, const pn_train_options *o) {
  memset(r, 0, sizeof *r);
  r->p = p;
  r->whole.epochs = p->epochs;
  r->stages = p->n_stages ? p->stages : &r->whole;
  r->n_stages = p->n_stages ? p->n_stages : 1;
  r->stage = -1;
  r->size_scale = 1.0;
  r->out = o && o->out ? o->out : stdout;
  r->prog = o && o->progress ? o->progress : stderr;
  const char *mode = p->progress;
  r->bar = strcmp(mode, "bar") == 0 || (strcmp(mode, "auto") == 0 && isatty(fileno(r->prog)));
}

static pn_status build(run *r, const char *backend) {
  PN_TRY(setup_device(r, backend ? backend : r->p->backend));
  PN_TRY(setup_data(r));
  PN_TRY(check_stages(r));
  PN_TRY(setup_model(r));
  return setup_optimizer(r);
}

pn_status pn_train(const pn_pipeline *p, const pn_train_options *o, pn_train_result *res) {
  return pn_train_observed(p, o, NULL, NULL, res);
}

pn_status pn_train_observed(const pn_pipeline *p, const pn_train_options *o,
                            pn_train_step_fn on_step, void *user, pn_train_result *res) {
  run r;
  struct sigaction sa, old;
  memset(res, 0, sizeof *res);
  init_run(&r, p, o);
  r.on_step = on_step;
  r.user = user;
  double t0 = now();
  pn_status s = build(&r, o ? o->backend : NULL);
  if (s == PN_OK && o && o->resume) s = resume(&r, o->resume);
  if (s == PN_OK && r.p->progress && strcmp(r.p->progress, "off") == 0)
    r.prog = fopen("/dev/null", "w");
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_sigint;
  interrupted = 0;
  sigaction(SIGINT, &sa, &old);
  if (s == PN_OK) {
    print_header(&r);
    fflush(r.out);
    s = train_epochs(&r, res);
  }
  sigaction(SIGINT, &old, NULL);
  if (s == PN_OK && !res->interrupted && r.test_ld) {
    eval_result t;
    s = evaluate(&r, r.test_ld, &t);
    if (s == PN_OK) report_test(&r, &t, res);
  }
  res->steps = r.opt ? pn_optimizer_steps(r.opt) : 0;
  res->seconds = now() - t0;
  if (r.prog && r.prog != stderr && r.prog != (o ? o->progress : NULL)) fclose(r.prog);
  run_free(&r);
  return s;
}

/* A staged run's checkpoint is evaluated at the image size its last
 * epoch trained at. */
static pn_status checkpoint_size(run *r, const pn_tensor_map *m) {
  const char *epoch = pn_tensor_map_meta(m, "epoch");
  int64_t e = epoch ? strtoll(epoch, NULL, 10) : r->p->epochs;
  if (!r->p->n_stages) return PN_OK;
  PN_TRY(check_stages(r));
  return apply_size(r, stage_of(r, e > 0 ? e - 1 : 0));
}

pn_status pn_evaluate(const pn_pipeline *p, const char *checkpoint, const pn_train_options *o,
                      pn_train_result *res) {
  run r;
  pn_tensor_map *m = NULL;
  memset(res, 0, sizeof *res);
  init_run(&r, p, o);
  double t0 = now();
  pn_status s = setup_device(&r, o && o->backend ? o->backend : p->backend);
  if (s == PN_OK) s = setup_data(&r);
  if (s == PN_OK) s = setup_model(&r);
  if (s == PN_OK) s = pn_safetensors_load(checkpoint, r.dev, &m);
  if (s == PN_OK) s = pn_model_load_state(r.model, m, 1);
  if (s == PN_OK) s = checkpoint_size(&r, m);
  if (s != PN_OK && m) pn_error_prefix(s, "%s: ", checkpoint);
  eval_result e;
  if (s == PN_OK && r.valid_ld && (s = evaluate(&r, r.valid_ld, &e)) == PN_OK) {
    res->has_valid = 1, res->valid_loss = e.loss, res->valid_accuracy = e.accuracy;
    fprintf(r.out, "valid: loss %.6f, accuracy %.4f (%lld samples)\n", e.loss, e.accuracy,
            (long long)e.samples);
  }
  if (s == PN_OK && r.test_ld && (s = evaluate(&r, r.test_ld, &e)) == PN_OK)
    report_test(&r, &e, res);
  res->seconds = now() - t0;
  pn_tensor_map_free(m);
  run_free(&r);
  return s;
}

/* ------------------------------------------------------------ lr find */

/* fastai's smoothing: an exponential average, debiased for its start. */
typedef struct smoother {
  double beta, avg;
  int n;
} smoother;

static double smooth(smoother *sm, double loss) {
  sm->avg = sm->beta * sm->avg + (1.0 - sm->beta) * loss;
  sm->n++;
  return sm->avg / (1.0 - pow(sm->beta, sm->n));
}

/* The next training batch, starting another epoch when one ends. */
static pn_status next_batch(run *r, int64_t *epoch, pn_tensor **x, pn_tensor **y) {
  PN_TRY(pn_loader_next(r->train_ld, r->dev, x, y));
  if (*x) return PN_OK;
  pn_loader_start(r->train_ld, ++*epoch, 0);
  PN_TRY(pn_loader_next(r->train_ld, r->dev, x, y));
  return *x ? PN_OK : pn_error(PN_ERR_INVALID, "%s: the training set is empty", r->p->file);
}

/* The window suggestions are read from: fastai leaves out the first steps
 * (the average is still settling) and the last 5 (the blow-up). */
static void suggestion_window(int n, int *lo, int *hi) {
  *lo = 0, *hi = n;
  if (n >= 25) *lo = n / 10, *hi = n - 5;
}

static void suggest(pn_lr_find_result *res) {
  int lo, hi, steep = -1, best = -1;
  double slope = INFINITY;
  res->lr_steep = res->lr_min = NAN;
  suggestion_window(res->n, &lo, &hi);
  if (hi - lo < 2) return;
  for (int i = lo; i < hi; i++) {
    /* Central differences, one-sided at the ends, as numpy.gradient. */
    int a = i > lo ? i - 1 : i, b = i + 1 < hi ? i + 1 : i;
    double g = (res->losses[b] - res->losses[a]) / (double)(b - a);
    if (g < slope) slope = g, steep = i;
    if (best < 0 || res->losses[i] < res->losses[best]) best = i;
  }
  res->lr_steep = res->lrs[steep];
  res->lr_min = res->lrs[best] / 10.0;
}

static void lr_find_row(FILE *out, int i, double lr, double loss) {
  if (!out) return;
  if (i == 0) fprintf(out, "%-6s %-12s %s\n", "step", "lr", "smoothed_loss");
  fprintf(out, "%-6d %-12.4e %.6f\n", i + 1, lr, loss);
  fflush(out);
}

/* Runs the test; the curve goes into res. */
static pn_status lr_find_run(run *r, const pn_lr_find_options *o, pn_lr_find_result *res) {
  smoother sm = {0.98, 0.0, 0};
  double best = INFINITY;
  int every = o->iters >= 40 ? o->iters / 20 : 1;
  int64_t epoch = 0;
  pn_model_set_training(r->model, 1);
  pn_loader_start(r->train_ld, 0, 0);
  for (int i = 0; i < o->iters && !res->diverged; i++) {
    double lr = o->start * pow(o->end / o->start, (double)i / (double)(o->iters - 1)), loss = NAN;
    pn_tensor *x = NULL, *y = NULL;
    pn_status s = next_batch(r, &epoch, &x, &y);
    if (s == PN_OK) s = fit_batch(r, x, y, lr, -1.0, &loss);
    pn_tensor_unref(x), pn_tensor_unref(y);
    PN_TRY(s);
    double l = isfinite(loss) ? smooth(&sm, loss) : NAN;
    res->diverged = !isfinite(l) || l > 4.0 * best;
    if (!isfinite(l)) break;
    res->lrs[res->n] = lr, res->losses[res->n++] = l;
    if (l < best) best = l;
    if (i % every == 0 || i + 1 == o->iters || res->diverged) lr_find_row(r->out, i, lr, l);
  }
  return PN_OK;
}

static pn_status lr_find_options(const pn_lr_find_options *in, pn_lr_find_options *o) {
  *o = *in;
  if (o->start == 0) o->start = 1e-7;
  if (o->end == 0) o->end = 10.0;
  if (o->iters == 0) o->iters = 100;
  if (!(o->start > 0 && o->end > o->start))
    return pn_error(PN_ERR_INVALID, "lr-find: need 0 < start < end (start %g, end %g)", o->start,
                    o->end);
  if (o->iters < 2) return pn_error(PN_ERR_INVALID, "lr-find: iters = %d, at least 2", o->iters);
  return PN_OK;
}

/* From the fresh model frozen as the first stage says (fastai runs it
 * after freezing), at the first stage's image size and weight decay. */
static pn_status lr_find_setup(run *r, const pn_lr_find_options *o) {
  PN_TRY(build(r, o->backend));
  r->stage = 0;
  apply_freeze(r, &r->stages[0]);
  apply_weight_decay(r, &r->stages[0]);
  return apply_size(r, 0);
}

pn_status pn_lr_find(const pn_pipeline *p, const pn_lr_find_options *opt, pn_lr_find_result *res) {
  pn_lr_find_options o;
  run r;
  memset(res, 0, sizeof *res);
  PN_TRY(lr_find_options(opt, &o));
  res->lrs = calloc((size_t)o.iters, sizeof *res->lrs);
  res->losses = calloc((size_t)o.iters, sizeof *res->losses);
  if (!res->lrs || !res->losses) {
    pn_lr_find_result_free(res);
    return pn_error(PN_ERR_NOMEM, "out of memory");
  }
  init_run(&r, p, NULL);
  r.out = o.out;
  pn_status s = lr_find_setup(&r, &o);
  if (s == PN_OK) s = lr_find_run(&r, &o, res);
  if (s == PN_OK) suggest(res);
  run_free(&r);
  if (s != PN_OK) pn_lr_find_result_free(res);
  return s;
}

void pn_lr_find_result_free(pn_lr_find_result *r) {
  free(r->lrs), free(r->losses);
  r->lrs = r->losses = NULL;
  r->n = 0;
}
