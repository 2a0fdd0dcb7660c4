/* STUB: to be written. */
#include "ref_kernels.h"

pn_status pni_ref_pool2d(void *dctx, const pn_op_args *a) {
  (void)dctx, (void)a;
  return PN_ERR_UNSUPPORTED;
}

pn_status pni_ref_pool2d_grad(void *dctx, const pn_op_args *a) {
  (void)dctx, (void)a;
  return PN_ERR_UNSUPPORTED;
}

pn_status pni_ref_channel_stats(void *dctx, const pn_op_args *a) {
  (void)dctx, (void)a;
  return PN_ERR_UNSUPPORTED;
}

pn_status pni_ref_channel_affine(void *dctx, const pn_op_args *a) {
  (void)dctx, (void)a;
  return PN_ERR_UNSUPPORTED;
}

pn_status pni_ref_channel_grad_stats(void *dctx, const pn_op_args *a) {
  (void)dctx, (void)a;
  return PN_ERR_UNSUPPORTED;
}

pn_status pni_ref_concat(void *dctx, const pn_op_args *a) {
  (void)dctx, (void)a;
  return PN_ERR_UNSUPPORTED;
}

pn_status pni_ref_axpby(void *dctx, const pn_op_args *a) {
  (void)dctx, (void)a;
  return PN_ERR_UNSUPPORTED;
}

