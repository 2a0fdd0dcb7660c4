/* Datasets: a feature of kind "data" gives random access to samples, decoded
 * on the host into f32 inputs and i64 targets. The core does the rest:
 * splits, shuffling, batching, moving batches to the device (loader.h). */
#ifndef PLUGNET_DATA_H
#define PLUGNET_DATA_H

#include <stdint.h>
#include <plugnet/config.h>
#include <plugnet/status.h>
#include <plugnet/tensor.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct pn_dataset_info {
  int64_t length;   /* samples */
  pn_shape x_shape; /* one sample's input, e.g. 1x28x28 */
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
  void *reserved[8];
} pn_dataset_iface;

typedef struct pn_dataset pn_dataset;
pn_status pn_dataset_open(const char *feature, const pn_config *cfg, pn_dataset **out);
const pn_dataset_info *pn_dataset_get_info(const pn_dataset *d);
pn_status pn_dataset_read(pn_dataset *d, const int64_t *idx, int64_t n, float *x, int64_t *y);
const char *pn_dataset_class_name(pn_dataset *d, int k, char *buf, size_t n);
void pn_dataset_close(pn_dataset *d);

#ifdef __cplusplus
}
#endif
#endif
