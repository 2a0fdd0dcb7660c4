/* The math API of pooling, batch-norm, concatenation and clamping, with
 * their backwards. */
#include <plugnet/ops.h>

#include "internal.h"

static pn_tensor *unwritten(const char *op) {
  pn_error(PN_ERR_UNSUPPORTED, "%s: not written yet", op);
  return NULL;
}

pn_tensor *pn_pool2d(pn_pool_kind kind, pn_tensor *x, const pn_pool2d_params *p) {
  (void)kind, (void)x, (void)p;
  return unwritten("pool2d");
}

pn_tensor *pn_adaptive_pool2d(pn_pool_kind kind, pn_tensor *x, int out_h, int out_w) {
  (void)kind, (void)x, (void)out_h, (void)out_w;
  return unwritten("adaptive_pool2d");
}

pn_tensor *pn_batch_norm(pn_tensor *x, pn_tensor *weight, pn_tensor *bias,
                         pn_tensor *running_mean, pn_tensor *running_var, int training,
                         double momentum, double eps) {
  (void)x, (void)weight, (void)bias, (void)running_mean, (void)running_var, (void)training;
  (void)momentum, (void)eps;
  return unwritten("batch_norm");
}

pn_tensor *pn_concat(pn_tensor *const *xs, int n, int axis) {
  (void)xs, (void)n, (void)axis;
  return unwritten("concat");
}

pn_tensor *pn_clamp(pn_tensor *x, double lo, double hi) {
  (void)x, (void)lo, (void)hi;
  return unwritten("clamp");
}
