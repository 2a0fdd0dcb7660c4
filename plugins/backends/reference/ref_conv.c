/* STUB: to be written. */
#include "ref_kernels.h"

pn_status pni_ref_conv2d(void *dctx, const pn_op_args *a) {
  (void)dctx, (void)a;
  return PN_ERR_UNSUPPORTED;
}

pn_status pni_ref_conv2d_grad_input(void *dctx, const pn_op_args *a) {
  (void)dctx, (void)a;
  return PN_ERR_UNSUPPORTED;
}

pn_status pni_ref_conv2d_grad_weight(void *dctx, const pn_op_args *a) {
  (void)dctx, (void)a;
  return PN_ERR_UNSUPPORTED;
}

