/* Batches from a dataset: a subset of its samples, reshuffled each epoch
 * from (seed, epoch) so a run is reproducible, collated on the host and
 * moved to the device. A loader is used from one thread at a time; its
 * worker threads are its own. */
#ifndef PLUGNET_LOADER_H
#define PLUGNET_LOADER_H

#include <stdint.h>
#include <plugnet/data.h>
#include <plugnet/status.h>
#include <plugnet/tensor.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct pn_loader pn_loader;

/* Iterates over `indices` (copied; NULL: all samples) in batches of `batch`.
 * The last batch may be smaller unless drop_last. */
pn_status pn_loader_new(pn_dataset *ds, const int64_t *indices, int64_t n, int64_t batch,
                        int shuffle, uint64_t seed, int drop_last, pn_loader **out);
void pn_loader_free(pn_loader *l);
int64_t pn_loader_batches(const pn_loader *l);
int64_t pn_loader_samples(const pn_loader *l);
/* Restarts at batch `skip` of epoch `epoch` (the order depends on both).
 * Work in flight for the old position is waited for and dropped. */
void pn_loader_start(pn_loader *l, int64_t epoch, int64_t skip);
/* The next batch as new tensors on dev: x f32 [B, x_shape...], y i64
 * [B, y_shape...]. At the end of the epoch *x and *y are NULL. A sample
 * that fails to load fails its batch (the message names it), again on each
 * call until pn_loader_start. */
pn_status pn_loader_next(pn_loader *l, pn_device *dev, pn_tensor **x, pn_tensor **y);

/* Worker threads, each bound to a core (topology.h), fill batches ahead of
 * pn_loader_next; several fill one batch together. `workers`: 0 (the
 * default) one per physical core, 1 none (pn_loader_next reads on the
 * caller's thread). `prefetch`: batches in flight per worker, 0 for the
 * default 2. A batch's content depends only on (seed, epoch, its index),
 * never on these. Threads start at the first pn_loader_next. */
pn_status pn_loader_set_workers(pn_loader *l, int workers, int prefetch);
/* The worker threads pn_loader_next uses (1: it reads on the caller's thread). */
int pn_loader_workers(pn_loader *l);
/* Waits for work in flight and starts no more until the next pn_loader_next,
 * which resumes at the same batch. Call it before changing the dataset (its
 * transforms) in the middle of an epoch: workers read it until then. */
void pn_loader_stop(pn_loader *l);

/* A seeded split of n samples: `valid_fraction` of them (rounded) go to
 * valid, the rest to train, each list ascending. Free both with free(). */
pn_status pn_split(int64_t n, double valid_fraction, uint64_t seed, int64_t **train,
                   int64_t *n_train, int64_t **valid, int64_t *n_valid);

/* As pn_split, each class split in the same proportion: round(fraction *
 * count) of each class go to valid, picked by pn_split's shuffle (targets
 * from the dataset, probed without decoding where it can). */
pn_status pn_split_stratified(pn_dataset *ds, double valid_fraction, uint64_t seed, int64_t **train,
                              int64_t *n_train, int64_t **valid, int64_t *n_valid);

#ifdef __cplusplus
}
#endif
#endif
