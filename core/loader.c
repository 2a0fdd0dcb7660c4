/* Batches from a dataset, filled by worker threads ahead of the caller.
 *
 * A ring of `depth` slots holds the batches in flight: batch b of the epoch
 * lives in slot b % depth while head <= b < issued. Workers take chunks of
 * samples from the oldest batch that has some left (`cursor`), so all of
 * them work first on the batch the caller will ask for next, then on the
 * ones after it while the caller computes. A slot no batch is issued to
 * belongs to the caller's thread: it gives the slot its memory before
 * issuing (the batch's own tensors when the device's memory is host memory,
 * so workers decode straight into them; staging buffers otherwise), and
 * takes the batch out once every chunk is done. The mutex orders both
 * hand-overs against the workers.
 *
 * A batch's content is a function of (seed, epoch, its index): the order and
 * aug_key change only in pn_loader_start, after every chunk in flight has
 * finished (busy == 0) and none can be taken (issued == cursor), so no
 * worker reads them while they change, and the worker count never matters. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <plugnet/device.h>
#include <plugnet/loader.h>
#include <plugnet/log.h>
#include <plugnet/op.h>
#include <plugnet/topology.h>

#define MSG_MAX          1024
#define DEFAULT_PREFETCH 2
#define MAX_WORKERS      1024
#define MAX_PREFETCH     64

typedef struct slot {
  int64_t batch;            /* its index in the epoch */
  int64_t n;                /* samples */
  int64_t handed, done;     /* samples given to workers, and read */
  pn_shape xs, ys;          /* the batch's shapes, [n, sample...] */
  int64_t x_numel, y_numel; /* per sample */
  pn_tensor *tx, *ty;       /* the batch itself, on a device with host memory */
  float *sx;                /* staging for other devices */
  int64_t *sy;
  int64_t sx_cap, sy_cap; /* elements */
  float *x;               /* where workers write: tx's data or sx */
  int64_t *y;
  pn_status status;
  int64_t err_at; /* first sample of the failing chunk */
  char msg[MSG_MAX];
} slot;

typedef struct worker {
  struct pn_loader *l;
  int index;
  pthread_t thread;
} worker;

struct pn_loader {
  pn_dataset *ds;
  int64_t *base;  /* the subset, in dataset order */
  int64_t *order; /* this epoch's order */
  int64_t n, batch;
  uint64_t aug_key; /* random transforms: a function of (seed, epoch) */
  int shuffle, drop_last;
  uint64_t seed;
  /* the caller's thread only */
  int64_t head;                    /* the batch pn_loader_next returns next */
  pn_device *dev;                  /* where batches go: issued slots get tensors there */
  int primed;                      /* batches from head on are issued */
  int want_workers, want_prefetch; /* as set; resolved by setup() */
  int workers, depth, bind;        /* workers 1: no threads, one slot */
  int64_t chunk;
  slot *slots;
  worker *threads;
  int started;
  /* shared with the workers, under lock */
  pthread_mutex_t lock;
  pthread_cond_t work, done; /* a chunk to take; a chunk read */
  int64_t issued, cursor;
  int busy; /* chunks being read */
  int stop;
};

/* Fisher-Yates driven by Philox, so the order is a pure function of
 * (seed, epoch) and never of the platform's rand(). */
static void shuffle_indices(int64_t *v, int64_t n, uint64_t seed, uint64_t epoch) {
  for (int64_t i = n - 1; i > 0; i--) {
    uint32_t r[4];
    pn_philox4x32(seed ^ 0x5EEDF00Dull, (epoch << 40) + (uint64_t)i, r);
    uint64_t word = ((uint64_t)r[0] << 32) | r[1];
    int64_t j = (int64_t)(word % (uint64_t)(i + 1));
    int64_t t = v[i];
    v[i] = v[j];
    v[j] = t;
  }
}

/* ------------------------------------------------------------ splits */

/* The order both splits draw valid samples from. */
static int64_t *split_order(int64_t n, uint64_t seed) {
  int64_t *perm = malloc(sizeof *perm * (size_t)(n ? n : 1));
  if (!perm) return NULL;
  for (int64_t i = 0; i < n; i++) perm[i] = i;
  shuffle_indices(perm, n, seed, 0xFFFFF);
  return perm;
}

static pn_status lists_from_mask(const char *is_valid, int64_t n, int64_t n_va, int64_t **train,
                                 int64_t *n_train, int64_t **valid, int64_t *n_valid) {
  *n_valid = n_va;
  *n_train = n - n_va;
  *train = malloc(sizeof **train * (size_t)(*n_train ? *n_train : 1));
  *valid = malloc(sizeof **valid * (size_t)(*n_valid ? *n_valid : 1));
  if (!*train || !*valid) {
    free(*train), free(*valid);
    *train = *valid = NULL;
    return pn_error(PN_ERR_NOMEM, "out of memory splitting %lld samples", (long long)n);
  }
  int64_t t = 0, v = 0;
  for (int64_t i = 0; i < n; i++) {
    if (is_valid[i])
      (*valid)[v++] = i;
    else
      (*train)[t++] = i;
  }
  return PN_OK;
}

static pn_status check_fraction(double valid_fraction) {
  if (valid_fraction >= 0.0 && valid_fraction < 1.0) return PN_OK;
  return pn_error(PN_ERR_INVALID, "valid split %g is not in [0, 1)", valid_fraction);
}

pn_status pn_split(int64_t n, double valid_fraction, uint64_t seed, int64_t **train,
                   int64_t *n_train, int64_t **valid, int64_t *n_valid) {
  PN_TRY(check_fraction(valid_fraction));
  int64_t *perm = split_order(n, seed);
  char *is_valid = calloc((size_t)(n ? n : 1), 1);
  pn_status s = perm && is_valid ? PN_OK : pn_error(PN_ERR_NOMEM, "out of memory splitting");
  int64_t n_va = (int64_t)(valid_fraction * (double)n + 0.5);
  for (int64_t i = 0; s == PN_OK && i < n_va; i++) is_valid[perm[i]] = 1;
  if (s == PN_OK) s = lists_from_mask(is_valid, n, n_va, train, n_train, valid, n_valid);
  free(perm);
  free(is_valid);
  return s;
}

static pn_status read_targets(pn_dataset *ds, int64_t n, int classes, int64_t *y) {
  char buf[32];
  for (int64_t i = 0; i < n; i++) {
    PN_TRY(pn_dataset_target(ds, i, &y[i]));
    if (y[i] < 0 || y[i] >= classes) {
      const char *name = pn_dataset_sample_name(ds, i);
      if (!name) snprintf(buf, sizeof buf, "sample %lld", (long long)i), name = buf;
      return pn_error(PN_ERR_INVALID,
                      "stratified split: %s has target %lld, not a class in [0, %d)", name,
                      (long long)y[i], classes);
    }
  }
  return PN_OK;
}

/* Walking pn_split's shuffled order, each class gives valid its first
 * round(fraction * count) members met. */
static int64_t mark_stratified(const int64_t *y, const int64_t *perm, int64_t n, int classes,
                               double fraction, int64_t *quota, char *is_valid) {
  int64_t n_va = 0;
  for (int64_t i = 0; i < n; i++) quota[y[i]]++;
  for (int c = 0; c < classes; c++) quota[c] = (int64_t)(fraction * (double)quota[c] + 0.5);
  for (int64_t i = 0; i < n; i++) {
    int64_t k = perm[i];
    if (quota[y[k]] == 0) continue;
    quota[y[k]]--;
    is_valid[k] = 1;
    n_va++;
  }
  return n_va;
}

pn_status pn_split_stratified(pn_dataset *ds, double valid_fraction, uint64_t seed, int64_t **train,
                              int64_t *n_train, int64_t **valid, int64_t *n_valid) {
  const pn_dataset_info *info = pn_dataset_get_info(ds);
  if (!info) return pn_error(PN_ERR_INVALID, "pn_split_stratified: no dataset");
  PN_TRY(check_fraction(valid_fraction));
  if (info->n_classes < 1 || info->y_shape.ndim != 0)
    return pn_error(PN_ERR_INVALID, "a stratified split needs a classification set (one class "
                                    "index a sample); use stratify: false");
  int64_t n = info->length, n_va = 0;
  int k = info->n_classes;
  int64_t *y = malloc(sizeof *y * (size_t)(n ? n : 1)), *perm = split_order(n, seed);
  int64_t *quota = calloc((size_t)k, sizeof *quota);
  char *is_valid = calloc((size_t)(n ? n : 1), 1);
  pn_status s =
      y && perm && quota && is_valid ? PN_OK : pn_error(PN_ERR_NOMEM, "out of memory splitting");
  if (s == PN_OK) s = read_targets(ds, n, k, y);
  if (s == PN_OK) n_va = mark_stratified(y, perm, n, k, valid_fraction, quota, is_valid);
  if (s == PN_OK) s = lists_from_mask(is_valid, n, n_va, train, n_train, valid, n_valid);
  free(y), free(perm), free(quota), free(is_valid);
  return s;
}

/* ------------------------------------------------------------ slots */

static int64_t batch_rows(const pn_loader *l, int64_t b) {
  int64_t left = l->n - b * l->batch;
  return left < l->batch ? left : l->batch;
}

/* Chunks fail independently; the batch reports the first failing sample,
 * as a read on one thread would. */
static void set_failure(slot *s, pn_status st, int64_t at, const char *msg) {
  if (s->status != PN_OK && s->err_at <= at) return;
  s->status = st;
  s->err_at = at;
  snprintf(s->msg, sizeof s->msg, "%s", msg);
}

static pn_status with_rows(const pn_shape *sample, int64_t n, pn_shape *out) {
  if (sample->ndim >= PN_MAX_DIMS)
    return pn_error(PN_ERR_SHAPE, "samples of %d dimensions leave none for the batch (at most %d)",
                    sample->ndim, PN_MAX_DIMS);
  out->ndim = sample->ndim + 1;
  out->dim[0] = n;
  memcpy(out->dim + 1, sample->dim, sizeof(int64_t) * (size_t)sample->ndim);
  return PN_OK;
}

static int tensor_fits(const pn_tensor *t, const pn_device *dev, const pn_shape *s) {
  if (!t || pn_tensor_device(t) != dev) return 0;
  pn_shape ts = pn_tensor_shape(t);
  return pn_shape_equal(&ts, s);
}

/* Workers decode straight into the batch's own tensors, which the caller
 * then gets without a copy; those of a batch dropped by a restart are
 * reused when they fit. */
static pn_status slot_tensors(pn_loader *l, slot *s) {
  pn_tensor **t[2] = {&s->tx, &s->ty};
  const pn_shape *shape[2] = {&s->xs, &s->ys};
  const pn_dtype dt[2] = {PN_F32, PN_I64};
  for (int i = 0; i < 2; i++) {
    if (tensor_fits(*t[i], l->dev, shape[i])) continue;
    pn_tensor_unref(*t[i]);
    *t[i] = pn_tensor_new_shape(l->dev, dt[i], shape[i]);
    if (!*t[i])
      return pn_error(PN_ERR_NOMEM, "a batch of %lld samples: %s", (long long)s->n,
                      pn_last_error());
  }
  s->x = pn_tensor_data(s->tx);
  s->y = pn_tensor_data(s->ty);
  return PN_OK;
}

static pn_status slot_staging(slot *s) {
  int64_t nx = pn_shape_numel(&s->xs), ny = pn_shape_numel(&s->ys);
  if (nx > s->sx_cap) {
    float *p = realloc(s->sx, sizeof *p * (size_t)nx);
    if (!p) return pn_error(PN_ERR_NOMEM, "out of memory for a batch of %lld", (long long)s->n);
    s->sx = p, s->sx_cap = nx;
  }
  if (ny > s->sy_cap) {
    int64_t *p = realloc(s->sy, sizeof *p * (size_t)ny);
    if (!p) return pn_error(PN_ERR_NOMEM, "out of memory for a batch of %lld", (long long)s->n);
    s->sy = p, s->sy_cap = ny;
  }
  s->x = s->sx;
  s->y = s->sy;
  return PN_OK;
}

static pn_status slot_memory(pn_loader *l, slot *s) {
  const pn_dataset_info *info = pn_dataset_get_info(l->ds);
  PN_TRY(with_rows(&info->x_shape, s->n, &s->xs));
  PN_TRY(with_rows(&info->y_shape, s->n, &s->ys));
  s->x_numel = pn_shape_numel(&info->x_shape);
  s->y_numel = pn_shape_numel(&info->y_shape);
  s->x = NULL, s->y = NULL;
  if (pn_device_is_host(l->dev)) PN_TRY(slot_tensors(l, s));
  if (s->x && s->y) return PN_OK;
  /* Device memory without a host address: staged, and copied by deliver(). */
  pn_tensor_unref(s->tx), pn_tensor_unref(s->ty);
  s->tx = s->ty = NULL;
  return slot_staging(s);
}

/* On the caller's thread, the slot idle. Shapes come from the dataset now:
 * its transforms (and so x_shape) may change between epochs. A slot that
 * cannot be set up carries the error to its turn in pn_loader_next. */
static void slot_prepare(pn_loader *l, slot *s, int64_t b) {
  s->batch = b;
  s->n = batch_rows(l, b);
  s->handed = s->done = 0;
  s->status = PN_OK;
  s->msg[0] = '\0';
  pn_status st = slot_memory(l, s);
  if (st == PN_OK) return;
  set_failure(s, st, 0, pn_last_error());
  s->handed = s->done = s->n;
}

static void slot_free(slot *s) {
  pn_tensor_unref(s->tx);
  pn_tensor_unref(s->ty);
  free(s->sx);
  free(s->sy);
}

static pn_status read_chunk(pn_loader *l, slot *s, int64_t begin, int64_t k) {
  const int64_t *idx = l->order + s->batch * l->batch + begin;
  return pn_dataset_read_aug(l->ds, idx, k, l->aug_key, s->x + begin * s->x_numel,
                             s->y + begin * s->y_numel);
}

/* The batch as tensors on dev: the slot's own when they are there already,
 * else copies of its host memory (staging, or tensors of another device). */
static pn_status deliver(slot *s, pn_device *dev, pn_tensor **x, pn_tensor **y) {
  if (s->status != PN_OK) return pn_error(s->status, "%s", s->msg);
  if (s->tx && pn_tensor_device(s->tx) == dev) {
    *x = s->tx, *y = s->ty;
    s->tx = s->ty = NULL;
    return PN_OK;
  }
  *x = pn_tensor_new_shape(dev, PN_F32, &s->xs);
  *y = pn_tensor_new_shape(dev, PN_I64, &s->ys);
  pn_status st = *x && *y ? PN_OK : PN_ERR_NOMEM;
  if (st == PN_OK) st = pn_tensor_write(*x, s->x, pn_tensor_nbytes(*x));
  if (st == PN_OK) st = pn_tensor_write(*y, s->y, pn_tensor_nbytes(*y));
  if (st == PN_OK) return PN_OK;
  pn_tensor_unref(*x), pn_tensor_unref(*y);
  *x = *y = NULL;
  return st;
}

/* ------------------------------------------------------------ workers */

typedef struct job {
  slot *s;
  int64_t begin, k;
} job;

/* Under lock: the next chunk of the oldest issued batch with samples left. */
static int claim(pn_loader *l, job *j) {
  for (; l->cursor < l->issued; l->cursor++) {
    slot *s = &l->slots[l->cursor % l->depth];
    if (s->handed >= s->n) continue;
    j->s = s;
    j->begin = s->handed;
    j->k = s->n - s->handed < l->chunk ? s->n - s->handed : l->chunk;
    s->handed += j->k;
    return 1;
  }
  return 0;
}

/* Under lock. pn_last_error is per thread: the message travels in the slot. */
static void finish(pn_loader *l, const job *j, pn_status st, const char *msg) {
  if (st != PN_OK) set_failure(j->s, st, j->begin, msg);
  j->s->done += j->k;
  l->busy--;
  if (j->s->done == j->s->n || l->busy == 0) pthread_cond_broadcast(&l->done);
}

/* Worker k goes to core k + 1 (wrapping): core 0 is where the compute
 * pool's caller runs, so a loader with fewer workers than cores leaves it. */
static void bind_worker(int index) {
  if (pn_topology_bind_thread(index + 1) != PN_OK)
    PN_DEBUG("loader: worker %d runs unbound: %s", index, pn_last_error());
}

static void *worker_main(void *arg) {
  worker *w = arg;
  pn_loader *l = w->l;
  char msg[MSG_MAX] = "";
  if (l->bind) bind_worker(w->index);
  pthread_mutex_lock(&l->lock);
  for (;;) {
    job j;
    while (!l->stop && !claim(l, &j)) pthread_cond_wait(&l->work, &l->lock);
    if (l->stop) break;
    l->busy++;
    pthread_mutex_unlock(&l->lock);
    pn_status st = read_chunk(l, j.s, j.begin, j.k);
    if (st != PN_OK) snprintf(msg, sizeof msg, "%s", pn_last_error());
    pthread_mutex_lock(&l->lock);
    finish(l, &j, st, msg);
  }
  pthread_mutex_unlock(&l->lock);
  return NULL;
}

/* ------------------------------------------------------------ the caller's side */

/* Waits for the chunks being read and lets no more be taken. */
static void drain(pn_loader *l) {
  l->primed = 0;
  if (!l->started) return;
  pthread_mutex_lock(&l->lock);
  l->issued = l->cursor = l->head;
  while (l->busy > 0) pthread_cond_wait(&l->done, &l->lock);
  pthread_mutex_unlock(&l->lock);
}

static void teardown(pn_loader *l) {
  drain(l);
  pthread_mutex_lock(&l->lock);
  l->stop = 1;
  pthread_cond_broadcast(&l->work);
  pthread_mutex_unlock(&l->lock);
  for (int i = 0; i < l->started; i++) pthread_join(l->threads[i].thread, NULL);
  l->started = l->stop = 0;
  free(l->threads);
  l->threads = NULL;
  for (int i = 0; l->slots && i < l->depth; i++) slot_free(&l->slots[i]);
  free(l->slots);
  l->slots = NULL;
}

/* 0: one per physical core, as topology.h counts those this process may use. */
static int resolve_workers(const pn_loader *l, int *bind) {
  pn_topology_info info;
  *bind = 0;
  if (l->want_workers == 1) return 1;
  if (pn_topology_get(&info) != PN_OK) return l->want_workers ? l->want_workers : 1;
  *bind = info.bound;
  return l->want_workers ? l->want_workers : info.cores;
}

static pn_status start_threads(pn_loader *l) {
  l->threads = calloc((size_t)l->workers, sizeof *l->threads);
  if (!l->threads) return pn_error(PN_ERR_NOMEM, "out of memory for loader threads");
  for (int i = 0; i < l->workers; i++) {
    worker *w = &l->threads[i];
    w->l = l;
    w->index = i;
    int err = pthread_create(&w->thread, NULL, worker_main, w);
    if (err)
      return pn_error(PN_ERR_NOMEM, "loader: starting worker %d of %d failed: %s", i + 1,
                      l->workers, strerror(err));
    l->started++;
  }
  return PN_OK;
}

static pn_status setup(pn_loader *l) {
  if (l->slots) return PN_OK;
  l->workers = resolve_workers(l, &l->bind);
  if (l->workers < 1) l->workers = 1;
  int per = l->want_prefetch ? l->want_prefetch : DEFAULT_PREFETCH;
  l->depth = l->workers > 1 ? l->workers * per : 1;
  /* As many chunks as workers: together they finish the awaited batch first. */
  l->chunk = (l->batch + l->workers - 1) / l->workers;
  l->issued = l->cursor = l->head;
  l->slots = calloc((size_t)l->depth, sizeof *l->slots);
  if (!l->slots) return pn_error(PN_ERR_NOMEM, "out of memory for %d loader slots", l->depth);
  pn_status s = l->workers > 1 ? start_threads(l) : PN_OK;
  if (s != PN_OK) teardown(l);
  return s;
}

/* Issues batches from head on, up to the prefetch depth. */
static void prime(pn_loader *l) {
  int64_t end = l->head + l->depth, nb = pn_loader_batches(l);
  if (end > nb) end = nb;
  for (int64_t b = l->head; b < end; b++) slot_prepare(l, &l->slots[b % l->depth], b);
  pthread_mutex_lock(&l->lock);
  l->cursor = l->head;
  l->issued = end;
  pthread_cond_broadcast(&l->work);
  pthread_mutex_unlock(&l->lock);
  l->primed = 1;
}

/* The cursor moves past the slot, so no worker looks at it again until it
 * is issued anew, after the caller has reset it unlocked. */
static void wait_ready(pn_loader *l, slot *s) {
  pthread_mutex_lock(&l->lock);
  while (s->done < s->n) pthread_cond_wait(&l->done, &l->lock);
  if (l->cursor <= s->batch) l->cursor = s->batch + 1;
  pthread_mutex_unlock(&l->lock);
}

static void issue(pn_loader *l, slot *s, int64_t b) {
  slot_prepare(l, s, b);
  pthread_mutex_lock(&l->lock);
  l->issued = b + 1;
  pthread_cond_broadcast(&l->work);
  pthread_mutex_unlock(&l->lock);
}

static pn_status next_threaded(pn_loader *l, pn_device *dev, pn_tensor **x, pn_tensor **y) {
  if (!l->primed) prime(l);
  slot *s = &l->slots[l->head % l->depth];
  wait_ready(l, s);
  PN_TRY(deliver(s, dev, x, y));
  int64_t b = l->head++ + l->depth;
  if (b < pn_loader_batches(l)) issue(l, s, b);
  return PN_OK;
}

static pn_status next_sync(pn_loader *l, pn_device *dev, pn_tensor **x, pn_tensor **y) {
  slot *s = &l->slots[0];
  slot_prepare(l, s, l->head);
  pn_status st = s->status == PN_OK ? read_chunk(l, s, 0, s->n) : PN_OK;
  if (st != PN_OK) set_failure(s, st, 0, pn_last_error());
  PN_TRY(deliver(s, dev, x, y));
  l->head++;
  return PN_OK;
}

pn_status pn_loader_next(pn_loader *l, pn_device *dev, pn_tensor **x, pn_tensor **y) {
  *x = *y = NULL;
  if (!dev && !(dev = pn_default_device()))
    return pn_error(PN_ERR_DEVICE, "no device for the batch: %s", pn_last_error());
  if (l->head >= pn_loader_batches(l)) return PN_OK;
  PN_TRY(setup(l));
  l->dev = dev;
  return l->workers > 1 ? next_threaded(l, dev, x, y) : next_sync(l, dev, x, y);
}

/* ------------------------------------------------------------ lifetime */

pn_status pn_loader_new(pn_dataset *ds, const int64_t *indices, int64_t n, int64_t batch,
                        int shuffle, uint64_t seed, int drop_last, pn_loader **out) {
  const pn_dataset_info *info = pn_dataset_get_info(ds);
  if (!info) return pn_error(PN_ERR_INVALID, "pn_loader_new: no dataset");
  if (batch < 1)
    return pn_error(PN_ERR_INVALID, "batch size %lld must be at least 1", (long long)batch);
  if (!indices) n = info->length;
  pn_loader *l = calloc(1, sizeof *l);
  if (!l) return pn_error(PN_ERR_NOMEM, "out of memory creating a loader");
  pthread_mutex_init(&l->lock, NULL);
  pthread_cond_init(&l->work, NULL);
  pthread_cond_init(&l->done, NULL);
  l->ds = ds;
  l->n = n;
  l->batch = batch;
  l->shuffle = shuffle;
  l->drop_last = drop_last;
  l->seed = seed;
  l->base = malloc(sizeof *l->base * (size_t)(n ? n : 1));
  l->order = malloc(sizeof *l->order * (size_t)(n ? n : 1));
  if (!l->base || !l->order) {
    pn_loader_free(l);
    return pn_error(PN_ERR_NOMEM, "out of memory for a loader of %lld samples", (long long)n);
  }
  for (int64_t i = 0; i < n; i++) l->base[i] = indices ? indices[i] : i;
  pn_loader_start(l, 0, 0);
  *out = l;
  return PN_OK;
}

void pn_loader_free(pn_loader *l) {
  if (!l) return;
  teardown(l);
  pthread_cond_destroy(&l->done);
  pthread_cond_destroy(&l->work);
  pthread_mutex_destroy(&l->lock);
  free(l->base), free(l->order);
  free(l);
}

int64_t pn_loader_batches(const pn_loader *l) {
  return l->drop_last ? l->n / l->batch : (l->n + l->batch - 1) / l->batch;
}

int64_t pn_loader_samples(const pn_loader *l) { return l->n; }

void pn_loader_start(pn_loader *l, int64_t epoch, int64_t skip) {
  drain(l);
  memcpy(l->order, l->base, sizeof *l->order * (size_t)l->n);
  if (l->shuffle) shuffle_indices(l->order, l->n, l->seed, (uint64_t)epoch);
  l->head = skip > 0 ? skip : 0;
  uint32_t r[4];
  pn_philox4x32(l->seed ^ 0xA06E7A11ull, (uint64_t)epoch, r);
  l->aug_key = ((uint64_t)r[0] << 32) | r[1];
}

void pn_loader_stop(pn_loader *l) {
  if (l) drain(l);
}

pn_status pn_loader_set_workers(pn_loader *l, int workers, int prefetch) {
  if (!l) return pn_error(PN_ERR_INVALID, "pn_loader_set_workers: no loader");
  if (workers < 0 || workers > MAX_WORKERS)
    return pn_error(PN_ERR_INVALID, "loader workers %d: 0 (one per physical core), 1 (none) .. %d",
                    workers, MAX_WORKERS);
  if (prefetch < 0 || prefetch > MAX_PREFETCH)
    return pn_error(PN_ERR_INVALID,
                    "loader prefetch %d: 0 (the default, %d) .. %d batches a worker", prefetch,
                    DEFAULT_PREFETCH, MAX_PREFETCH);
  teardown(l);
  l->want_workers = workers;
  l->want_prefetch = prefetch;
  return PN_OK;
}

int pn_loader_workers(pn_loader *l) {
  int bind;
  if (l->slots) return l->workers;
  int w = resolve_workers(l, &bind);
  return w > 1 ? w : 1;
}
