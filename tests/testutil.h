/* Helpers shared by the C tests. */
#ifndef PLUGNET_TESTUTIL_H
#define PLUGNET_TESTUTIL_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <plugnet/plugnet.h>

/* The named device; fails the test when it cannot be loaded. */
pn_device *tu_device(const char *name);
/* Uniform values in [lo, hi) from a small deterministic host generator. */
void tu_fill_uniform(float *x, int64_t n, float lo, float hi, uint64_t *state);
pn_tensor *tu_random(pn_device *dev, int ndim, const int64_t *shape, float lo, float hi,
                     uint64_t *state);
/* A host copy of a tensor as floats (contiguous); free() it. */
float *tu_host(const pn_tensor *t);
/* max|a-b| / max(1, max|b|) over n elements. */
double tu_norm_err(const float *a, const float *b, int64_t n);
/* Removes a directory tree (a test's temporary files); 0 on success. */
int tu_rmtree(const char *dir);
/* Fails with the op name and error when t is NULL. */
pn_tensor *tu_check(pn_tensor *t, const char *what);

/* A feature's config with "k=v,k=v" set, failing the test on error. */
pn_config *tu_config(const char *feature, const char *pairs);

/* Mean, standard deviation and largest magnitude of a tensor's values. */
void tu_moments(const pn_tensor *t, double *mean, double *std, double *maxabs);

/* ---- a test program's temporary folder */

/* cmocka group fixtures: a fresh folder under $TMPDIR (or /tmp) for the
 * helpers below, then its removal with all it holds. */
int tu_tmpdir_setup(void **state);
int tu_tmpdir_teardown(void **state);
/* Points the helpers below at an existing folder instead (kept). */
void tu_tmpdir_use(const char *dir);
const char *tu_tmpdir(void);
/* A path in the folder, from a printf format. It lives in a ring of
 * buffers, so it stays valid until 255 more have been made. */
const char *tu_path(const char *fmt, ...) PN_PRINTF(1, 2);

/* ---- files (any error fails the test) */

/* The whole file, with a NUL after its *n bytes; free() it. */
char *tu_read_file(const char *path, size_t *n);
void tu_write_file(const char *path, const void *data, size_t n);
void tu_write_text(const char *path, const char *fmt, ...) PN_PRINTF(2, 3);
/* NAME-images.idx and NAME-labels.idx in the folder, their headers written
 * for n images of rows x cols bytes and n one-byte labels: the caller
 * writes the samples and closes both. */
void tu_idx_open(const char *name, int n, int rows, int cols, FILE **images, FILE **labels);

/* ---- pipelines and checkpoints in the folder */

/* The folder's pipeline `file` with n --set overrides. */
pn_pipeline *tu_pipeline(const char *file, char **sets, int n);
/* Fails unless the folder's pipeline `file` (with n overrides) fails to load
 * with an error that holds want1 and, unless it is NULL, want2. */
void tu_pipeline_error(const char *file, char **sets, int n, const char *want1, const char *want2);
/* The folder's safetensors `file`, on the reference device. */
pn_tensor_map *tu_tensors(const char *file);
/* Fails unless a and b hold the same names with bit-identical contents. */
void tu_assert_same_tensors(const pn_tensor_map *a, const pn_tensor_map *b);

/* Points PLUGNET_PLUGIN_PATH at a folder of the build tree ("tests/partial"). */
void tu_plugin_path(const char *dir);

#endif
