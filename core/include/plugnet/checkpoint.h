/* Checkpoints in the safetensors format: an 8-byte little-endian header
 * length, a JSON header {"name": {"dtype", "shape", "data_offsets"}, ...,
 * "__metadata__": {string: string}}, then the raw little-endian data.
 * Files are written to a temporary file in the same directory, synced, and
 * renamed, so an interrupted save never loses the previous checkpoint. */
#ifndef PLUGNET_CHECKPOINT_H
#define PLUGNET_CHECKPOINT_H

#include <plugnet/status.h>
#include <plugnet/tensor.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct pn_tensor_map pn_tensor_map;

/* An ordered name -> tensor map plus string metadata. */
pn_tensor_map *pn_tensor_map_new(void);
void pn_tensor_map_free(pn_tensor_map *m);
/* Adds or replaces (takes a new reference to t). */
pn_status pn_tensor_map_put(pn_tensor_map *m, const char *name, pn_tensor *t);
pn_tensor *pn_tensor_map_get(const pn_tensor_map *m, const char *name); /* borrowed */
int pn_tensor_map_count(const pn_tensor_map *m);
const char *pn_tensor_map_name(const pn_tensor_map *m, int i);
pn_tensor *pn_tensor_map_at(const pn_tensor_map *m, int i);
pn_status pn_tensor_map_set_meta(pn_tensor_map *m, const char *key, const char *value);
const char *pn_tensor_map_meta(const pn_tensor_map *m, const char *key); /* NULL if absent */

/* Writes every tensor (any device) atomically to path. */
pn_status pn_safetensors_save(const char *path, const pn_tensor_map *m);
/* Reads a file onto dev (NULL: default device). Validates the header, the
 * offsets against the file length, dtypes (F32, I32, I64, U8; F16/BF16/F64
 * are converted to f32) and shapes; errors name the file and the tensor. */
pn_status pn_safetensors_load(const char *path, pn_device *dev, pn_tensor_map **out);

#ifdef __cplusplus
}
#endif
#endif
