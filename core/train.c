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
  int64_t first_epoch, skip_batches, total_steps;
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

static void run_free(run *r) {
  pn_loader_free(r->train_ld);
  pn_loader_free(r->valid_ld);
  pn_loader_free(r->test_ld);
  pn_dataset_close(r->train_ds);
  pn_dataset_close(r->valid_ds);
  pn_dataset_close(r->test_ds);
  pn_transforms_free(r->train_tf);
  pn_transforms_free(r->valid_tf);
  pn_transforms_free(r->test_tf);
  pn_optimizer_free(r->opt);
  pn_schedule_free(r->sched);
  pn_loss_free(r->loss);
  pn_model_free(r->model);
}

/* ------------------------------------------------------------ setup */

static pn_status setup_device(run *r, const char *backend) {
  PN_TRY(pn_device_get(backend, &r->dev));
  char why[256] = "";
  if (r->dev->iface->probe && r->dev->iface->probe(r->dev->ctx, why, sizeof why) != PN_OK)
    return pn_error(PN_ERR_DEVICE, "backend '%s' is unavailable: %s", backend, why);
  if (r->p->threads > 0 && r->dev->iface->set_threads)
    PN_TRY(r->dev->iface->set_threads(r->dev->ctx, r->p->threads));
  pn_set_default_device(r->dev);
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

static pn_status setup_data(run *r) {
  const pn_pipeline *p = r->p;
  int64_t *tr = NULL, *va = NULL, n_tr = 0, n_va = 0;
  PN_TRY(open_datasets(r));
  PN_TRY(split(r, &tr, &n_tr, &va, &n_va));
  pn_dataset *vds = r->train_ds;
  if (n_va > 0 && pn_dataset_is_image(r->train_ds)) vds = r->valid_ds = pn_dataset_share(vds);
  pn_status s = vds ? attach_transforms(r, 1.0) : pn_error(PN_ERR_NOMEM, "out of memory");
  if (s == PN_OK)
    s = pn_loader_new(r->train_ds, tr, n_tr, p->batch, p->shuffle, p->seed, 0, &r->train_ld);
  if (s == PN_OK && n_va > 0)
    s = pn_loader_new(vds, va, n_va, p->batch, 0, p->seed, 0, &r->valid_ld);
  free(tr);
  free(va);
  PN_TRY(s);
  if (!r->test_ds) return PN_OK;
  PN_TRY(pn_loader_new(r->test_ds, NULL, 0, p->batch, 0, p->seed, 0, &r->test_ld));
  if (!p->valid_is_test) return PN_OK;
  return pn_loader_new(r->test_ds, NULL, 0, p->batch, 0, p->seed, 0, &r->valid_ld);
}

static pn_status setup_model(run *r) {
  const pn_pipeline *p = r->p;
  pn_shape in = p->input.ndim ? p->input : pn_dataset_get_info(r->train_ds)->x_shape;
  PN_TRY(pn_pipeline_build_model(p, &in, &r->model));
  if (!p->loss.feature) return pn_error(PN_ERR_INVALID, "%s: the pipeline has no loss", p->file);
  return pn_loss_create(p->loss.feature, p->loss.cfg, &r->loss);
}

static pn_status setup_optimizer(run *r) {
  const pn_pipeline *p = r->p;
  if (!p->optimizer.feature)
    return pn_error(PN_ERR_INVALID, "%s: the pipeline has no optimizer", p->file);
  int n = pn_model_param_count(r->model), k = 0;
  pn_tensor **params = malloc(sizeof *params * (size_t)(n ? n : 1));
  if (!params) return pn_error(PN_ERR_NOMEM, "out of memory");
  for (int i = 0; i < n; i++)
    if (pn_model_param_trainable(r->model, i)) params[k++] = pn_model_param(r->model, i);
  pn_status s = pn_optimizer_create(p->optimizer.feature, p->optimizer.cfg, params, k, &r->opt);
  free(params);
  PN_TRY(s);
  if (p->schedule.feature)
    PN_TRY(pn_schedule_create(p->schedule.feature, p->schedule.cfg, &r->sched));
  r->total_steps = p->epochs * pn_loader_batches(r->train_ld);
  return PN_OK;
}

/* ------------------------------------------------------------ checkpoints */

static const char *meta(const pn_tensor_map *m, const char *key, const char *file) {
  const char *v = pn_tensor_map_meta(m, key);
  if (!v)
    pn_error(PN_ERR_PARSE, "%s: not a plugnet training checkpoint (no '%s' in __metadata__)", file,
             key);
  return v;
}

static pn_status optim_state_name(const run *r, int param, int k, char *buf, size_t n) {
  pn_tensor *t = pn_model_param(r->model, param);
  snprintf(buf, n, "optimizer.%s.%s", pn_optimizer_state_name(r->opt, k), t->name);
  return PN_OK;
}

static pn_status save_checkpoint(run *r, const char *path, int64_t epoch, int64_t batch,
                                 pn_train_result *res) {
  char buf[512];
  pn_tensor_map *m = pn_tensor_map_new();
  if (!m) return pn_error(PN_ERR_NOMEM, "out of memory");
  pn_status s = pn_model_state(r->model, m);
  int trainable = 0;
  for (int i = 0; i < pn_model_param_count(r->model) && s == PN_OK; i++) {
    if (!pn_model_param_trainable(r->model, i)) continue;
    for (int k = 0; k < pn_optimizer_state_count(r->opt) && s == PN_OK; k++) {
      optim_state_name(r, i, k, buf, sizeof buf);
      s = pn_tensor_map_put(m, buf, pn_optimizer_state(r->opt, trainable, k));
    }
    trainable++;
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
  if (s == PN_OK) s = pn_safetensors_save(path, m);
  pn_tensor_map_free(m);
  if (s == PN_OK) snprintf(res->checkpoint, sizeof res->checkpoint, "%s", path);
  return s;
}

static pn_status load_optimizer_state(run *r, const pn_tensor_map *m, const char *file) {
  char buf[512];
  int trainable = 0;
  for (int i = 0; i < pn_model_param_count(r->model); i++) {
    if (!pn_model_param_trainable(r->model, i)) continue;
    for (int k = 0; k < pn_optimizer_state_count(r->opt); k++) {
      optim_state_name(r, i, k, buf, sizeof buf);
      pn_tensor *t = pn_tensor_map_get(m, buf);
      if (!t) return pn_error(PN_ERR_NOT_FOUND, "%s: no optimizer state '%s'", file, buf);
      pn_tensor *moved = pn_tensor_to(t, r->dev);
      if (!moved) return PN_ERR_DEVICE;
      pn_tensor_set_requires_grad(moved, 0);
      PN_TRY(pn_optimizer_set_state(r->opt, trainable, k, moved));
    }
    trainable++;
  }
  return PN_OK;
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
  if (s == PN_OK) s = pn_model_load_state(r->model, m, 1);
  if (s == PN_OK) s = load_optimizer_state(r, m, file);
  if (s == PN_OK) {
    r->first_epoch = strtoll(epoch, NULL, 10);
    r->skip_batches = strtoll(batch, NULL, 10);
    pn_optimizer_set_steps(r->opt, strtoll(step, NULL, 10));
  }
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
  return pn_error(PN_ERR_INVALID,
                  "the loss is NaN at step %lld (epoch %lld, batch %lld): try a lower learning "
                  "rate than optimizer.lr = %g (e.g. --set optimizer.lr=%g)",
                  (long long)pn_optimizer_steps(r->opt), (long long)epoch + 1, (long long)b + 1,
                  pn_optimizer_base_lr(r->opt), pn_optimizer_base_lr(r->opt) / 10);
}

static pn_status train_step(run *r, pn_tensor *x, pn_tensor *y, double *loss_value) {
  pn_tensor *pred = NULL, *l = NULL;
  pn_status s = batch_loss(r, x, y, &pred, &l);
  if (s == PN_OK) *loss_value = pn_tensor_get_f32(l, 0);
  if (s == PN_OK && isfinite(*loss_value)) s = pn_backward(l, NULL);
  pn_tensor_unref(pred);
  pn_tensor_unref(l);
  pn_tape_clear();
  if (s != PN_OK || !isfinite(*loss_value)) return s;
  int64_t step = pn_optimizer_steps(r->opt);
  double f = r->sched ? pn_schedule_factor(r->sched, step, r->total_steps) : 1.0;
  double mom = r->sched ? pn_schedule_momentum(r->sched, step, r->total_steps) : -1.0;
  s = pn_optimizer_step(r->opt, pn_optimizer_base_lr(r->opt) * f, mom);
  pn_optimizer_zero_grad(r->opt);
  return s;
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

static pn_status train_epochs(run *r, pn_train_result *res) {
  for (int64_t e = r->first_epoch; e < r->p->epochs; e++) {
    double t0 = now(), train_loss;
    eval_result v;
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
  r->out = o && o->out ? o->out : stdout;
  r->prog = o && o->progress ? o->progress : stderr;
  const char *mode = p->progress;
  r->bar = strcmp(mode, "bar") == 0 || (strcmp(mode, "auto") == 0 && isatty(fileno(r->prog)));
}

static pn_status build(run *r, const pn_train_options *o) {
  PN_TRY(setup_device(r, o && o->backend ? o->backend : r->p->backend));
  PN_TRY(setup_data(r));
  PN_TRY(setup_model(r));
  return setup_optimizer(r);
}

pn_status pn_train(const pn_pipeline *p, const pn_train_options *o, pn_train_result *res) {
  run r;
  struct sigaction sa, old;
  memset(res, 0, sizeof *res);
  init_run(&r, p, o);
  double t0 = now();
  pn_status s = build(&r, o);
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
