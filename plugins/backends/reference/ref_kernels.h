/* The reference backend's kernels that live outside reference.c. */
#ifndef PLUGNET_REF_KERNELS_H
#define PLUGNET_REF_KERNELS_H

#include <plugnet/op.h>

/* ref_conv.c */
pn_status pni_ref_conv2d(void *dctx, const pn_op_args *a);
pn_status pni_ref_conv2d_grad_input(void *dctx, const pn_op_args *a);
pn_status pni_ref_conv2d_grad_weight(void *dctx, const pn_op_args *a);
/* ref_nn.c */
pn_status pni_ref_pool2d(void *dctx, const pn_op_args *a);
pn_status pni_ref_pool2d_grad(void *dctx, const pn_op_args *a);
pn_status pni_ref_channel_stats(void *dctx, const pn_op_args *a);
pn_status pni_ref_channel_affine(void *dctx, const pn_op_args *a);
pn_status pni_ref_channel_grad_stats(void *dctx, const pn_op_args *a);
pn_status pni_ref_concat(void *dctx, const pn_op_args *a);
pn_status pni_ref_axpby(void *dctx, const pn_op_args *a);

#endif
