/* Datasets: a feature of kind "data" gives random access to samples, decoded
 * on the host into f32 inputs and i64 targets. The core does the rest:
 * splits, shuffling, batching, moving batches to the device (loader.h). */
#ifndef PLUGNET_DATA_H
#define PLUGNET_DATA_H

#include <stdint.h>
#include <plugnet/config.h>
#include <plugnet/image.h>
#include <plugnet/status.h>
#include <plugnet/tensor.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct pn_dataset_info {
  int64_t length;   /* samples */
  pn_shape x_shape; /* one sample's input, e.g. 1x28x28; ndim 0 for images of any size */
  pn_shape y_shape; /* one sample's target: ndim 0 for a class index */
  int n_classes;    /* 0 when not a classification set */
} pn_dataset_info;

typedef struct pn_dataset_iface {
  size_t size;
  /* Paths in cfg are as the pipeline wrote them, already made absolute. */
  pn_status (*open)(const pn_config *cfg, void **ds);
  pn_status (*info)(void *ds, pn_dataset_info *info);
  /* Decodes samples idx[0..n) into x (n * numel(x_shape) floats) and y
   * (n * numel(y_shape) int64, or n class indices). May run on several threads at once. */
  pn_status (*read)(void *ds, const int64_t *idx, int64_t n, float *x, int64_t *y);
  void (*close)(void *ds);
  /* Optional: class names, for tables and predictions (NULL: "0", "1", ...). */
  const char *(*class_name)(void *ds, int k);
  /* Optional, for image sets (x_shape ndim 0), whose samples the core turns
   * into tensors through a pipeline's transforms (transform.h): the stored
   * size and the target of sample idx, without decoding it ... */
  pn_status (*probe)(void *ds, int64_t idx, int *w, int *h, int64_t *y);
  /* ... and its pixels, reduced about `reduce` times when cheaper (image.h).
   * May run on several threads at once. */
  pn_status (*decode)(void *ds, int64_t idx, int reduce, pn_image *img);
  /* Optional: the file behind sample idx, for messages. */
  const char *(*sample_name)(void *ds, int64_t idx);
  void *reserved[5];
} pn_dataset_iface;

typedef struct pn_dataset pn_dataset;
pn_status pn_dataset_open(const char *feature, const pn_config *cfg, pn_dataset **out);
const pn_dataset_info *pn_dataset_get_info(const pn_dataset *d);
pn_status pn_dataset_read(pn_dataset *d, const int64_t *idx, int64_t n, float *x, int64_t *y);
/* As pn_dataset_read, with random transforms keyed by `aug_key` (the
 * loader derives it from the seed and the epoch). */
pn_status pn_dataset_read_aug(pn_dataset *d, const int64_t *idx, int64_t n, uint64_t aug_key,
                              float *x, int64_t *y);
/* The target of sample idx (class index), cheaply where the set can probe. */
pn_status pn_dataset_target(pn_dataset *d, int64_t idx, int64_t *y);
const char *pn_dataset_sample_name(pn_dataset *d, int64_t idx); /* NULL when unknown */

struct pn_transforms;
/* Image sets: samples pass through `t` (borrowed; NULL detaches), whose
 * output size becomes x_shape (3 x H x W, taken from sample 0; a sample
 * that comes out another size is an error naming it). */
pn_status pn_dataset_set_transforms(pn_dataset *d, const struct pn_transforms *t);
int pn_dataset_is_image(const pn_dataset *d);
/* Another handle on the same samples, without transforms (close both). */
pn_dataset *pn_dataset_share(pn_dataset *d);
const char *pn_dataset_class_name(pn_dataset *d, int k, char *buf, size_t n);
void pn_dataset_close(pn_dataset *d);

#ifdef __cplusplus
}
#endif
#endif
