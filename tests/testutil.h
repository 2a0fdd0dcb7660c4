/* Helpers shared by the C tests. */
#ifndef PLUGNET_TESTUTIL_H
#define PLUGNET_TESTUTIL_H

#include <stdint.h>
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

#endif
