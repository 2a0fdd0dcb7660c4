/* The math API of convolution: pn_conv2d, its shape rules and its backward
 * (conv2d_grad_input, conv2d_grad_weight, and a sum for the bias). */
#include <plugnet/ops.h>

#include "internal.h"

pn_tensor *pn_conv2d(pn_tensor *x, pn_tensor *w, pn_tensor *b, const pn_conv2d_params *p) {
  (void)x, (void)w, (void)b, (void)p;
  pn_error(PN_ERR_UNSUPPORTED, "conv2d: not written yet");
  return NULL;
}
