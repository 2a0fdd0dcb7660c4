/* Finite-difference gradient checks of any layer or loss feature, third-party
 * ones included (seed 002's technique as a tool). */
#ifndef PLUGNET_GRADCHECK_H
#define PLUGNET_GRADCHECK_H

#include <stdint.h>
#include <plugnet/config.h>
#include <plugnet/status.h>
#include <plugnet/tensor.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct pn_gradcheck_result {
  int64_t checked;    /* gradient elements compared */
  double max_abs_err; /* |analytic - numeric| at the worst element */
  double max_rel_err; /* that error / max(1e-3, |numeric|) */
  char worst[160];    /* which tensor and element, e.g. "fc.weight[3]" */
  int passed;
} pn_gradcheck_result;

/* Builds the feature with cfg (NULL: defaults) on the current default
 * device, for layers on an input of shape `input` (batch first; NULL: a
 * small default), and compares the gradients of a random projection of the
 * output with respect to the input and every trainable parameter with
 * central differences. Returns PN_OK when it could run; r->passed tells. */
pn_status pn_gradcheck(const char *feature, const pn_config *cfg, const pn_shape *input,
                       uint64_t seed, pn_gradcheck_result *r);

/* The same, calling `each` once per checked tensor ("input", "fc.weight"). */
typedef void (*pn_gradcheck_tensor_fn)(const char *tensor, int64_t checked, double max_abs_err,
                                       double max_rel_err, int passed, void *user);
pn_status pn_gradcheck_each(const char *feature, const pn_config *cfg, const pn_shape *input,
                            uint64_t seed, pn_gradcheck_tensor_fn each, void *user,
                            pn_gradcheck_result *r);

#ifdef __cplusplus
}
#endif
#endif
