/* Times plugnet's loader on an image folder: JPEG decode, random resized
 * crop to 224, horizontal flip and ImageNet normalisation, batched into
 * tensors by W worker threads. bench/loading/run.sh runs it beside
 * torchvision's DataLoader on the same cores and prints the ratio.
 *
 *   bench_loading ROOT [WORKERS [BATCH]]     (defaults 2 and 64)
 *
 * A few batches of epoch 0 warm the page cache and the threads up; then
 * epoch 1 is timed whole, from its restart to its last batch. Prints one
 * line: "plugnet: W workers, batch B: N images in S s, R images/s". */
#include <stdio.h>
#include <stdlib.h>

#include <plugnet/plugnet.h>

#include "../benchutil.h"

#define WARM_BATCHES 3

static int die(const char *what) {
  fprintf(stderr, "bench_loading: %s: %s\n", what, pn_last_error());
  return 1;
}

static pn_config *config(const char *feature, const char *pairs) {
  const pn_feature_info *f = pn_registry_find(feature);
  pn_config *c = f ? pn_config_new(f) : NULL;
  if (c && pairs && pn_config_set_list(c, pairs) != PN_OK) {
    pn_config_free(c);
    return NULL;
  }
  return c;
}

/* torchvision's RandomResizedCrop(224) defaults: scale (0.08, 1), ratio (3/4, 4/3). */
static pn_status augment(pn_transforms **t) {
  const char *names[3] = {"random_resized_crop", "hflip", "normalize"};
  pn_config *cfg[3] = {config(names[0], "size=224"), config(names[1], NULL),
                       config(names[2], "preset=imagenet")};
  pn_status s = cfg[0] && cfg[1] && cfg[2] ? PN_OK : PN_ERR_NOT_FOUND;
  if (s == PN_OK) s = pn_transforms_new(names, (const pn_config *const *)cfg, 3, 1.0, t);
  for (int i = 0; i < 3; i++) pn_config_free(cfg[i]);
  return s;
}

/* Header checks only: decoding every image at open would warm the cache
 * far beyond what the peer gets, and open is not what is timed. */
static pn_status open_set(const char *root, pn_dataset **ds) {
  pn_config *cfg = config("imagefolder", "check=header");
  pn_status s = cfg ? pn_config_set(cfg, "root", root) : PN_ERR_NOT_FOUND;
  if (s == PN_OK) s = pn_dataset_open("imagefolder", cfg, ds);
  pn_config_free(cfg);
  return s;
}

static pn_status take(pn_loader *l, pn_device *dev, int64_t most, int64_t *images) {
  for (int64_t b = 0; b < most; b++) {
    pn_tensor *x, *y;
    PN_TRY(pn_loader_next(l, dev, &x, &y));
    if (!x) break;
    /* A wrong shape would make the figure meaningless. */
    int ok = x->ndim == 4 && x->shape[1] == 3 && x->shape[2] == 224 && x->shape[3] == 224;
    *images += x->shape[0];
    pn_tensor_unref(x);
    pn_tensor_unref(y);
    if (!ok) return pn_error(PN_ERR_SHAPE, "batches are not B x 3 x 224 x 224");
  }
  return PN_OK;
}

int main(int argc, char **argv) {
  if (argc < 2 || argc > 4) {
    fprintf(stderr, "usage: bench_loading ROOT [WORKERS [BATCH]]\n");
    return 2;
  }
  int workers = argc > 2 ? atoi(argv[2]) : 2;
  int64_t batch = argc > 3 ? atoll(argv[3]) : 64, images = 0;
  pn_device *dev = pn_default_device();
  pn_dataset *ds = NULL;
  pn_transforms *t = NULL;
  pn_loader *l = NULL;
  if (!dev) return die("device");
  if (open_set(argv[1], &ds) != PN_OK) return die(argv[1]);
  if (augment(&t) != PN_OK) return die("transforms");
  if (pn_dataset_set_transforms(ds, t) != PN_OK) return die("transforms");
  if (pn_loader_new(ds, NULL, 0, batch, 1, 0, 0, &l) != PN_OK) return die("loader");
  if (pn_loader_set_workers(l, workers, 0) != PN_OK) return die("loader");
  if (take(l, dev, WARM_BATCHES, &images) != PN_OK) return die("warm-up");
  pn_loader_start(l, 1, 0);
  images = 0;
  double t0 = bench_now_s();
  if (take(l, dev, INT64_MAX, &images) != PN_OK) return die("epoch");
  double dt = bench_now_s() - t0;
  printf("plugnet: %d workers, batch %lld: %lld images in %.3f s, %.1f images/s\n",
         pn_loader_workers(l), (long long)batch, (long long)images, dt, (double)images / dt);
  pn_loader_free(l);
  pn_dataset_close(ds);
  pn_transforms_free(t);
  return 0;
}
