/* The math API. Each function dispatches one op to the device of its inputs
 * and, when an input requires a gradient and grad mode is on, records the op
 * on the autograd tape. All return a new reference, or NULL with the error
 * message set; a NULL input yields NULL without touching the message, so a
 * chain of calls can be checked once at its end. */
#ifndef PLUGNET_OPS_H
#define PLUGNET_OPS_H

#include <plugnet/op.h>
#include <plugnet/tensor.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Creation (never recorded). dev NULL: the default device. */
pn_tensor *pn_full(pn_device *dev, pn_dtype dt, int ndim, const int64_t *shape, double value);
pn_tensor *pn_zeros(pn_device *dev, int ndim, const int64_t *shape);
pn_tensor *pn_ones(pn_device *dev, int ndim, const int64_t *shape);
pn_tensor *pn_zeros_like(const pn_tensor *t);
pn_tensor *pn_ones_like(const pn_tensor *t);
pn_tensor *pn_rand_uniform(pn_device *dev, int ndim, const int64_t *shape, double lo, double hi,
                           uint64_t seed, uint64_t counter);
pn_tensor *pn_rand_normal(pn_device *dev, int ndim, const int64_t *shape, double mean, double std,
                          uint64_t seed, uint64_t counter);
pn_tensor *pn_rand_bernoulli(pn_device *dev, int ndim, const int64_t *shape, double p,
                             uint64_t seed, uint64_t counter);

/* Elementwise. */
pn_tensor *pn_unary(pn_unary_kind kind, pn_tensor *x);
pn_tensor *pn_neg(pn_tensor *x);
pn_tensor *pn_abs(pn_tensor *x);
pn_tensor *pn_exp(pn_tensor *x);
pn_tensor *pn_log(pn_tensor *x);
pn_tensor *pn_sqrt(pn_tensor *x);
pn_tensor *pn_square(pn_tensor *x);
pn_tensor *pn_recip(pn_tensor *x);
pn_tensor *pn_relu(pn_tensor *x);
pn_tensor *pn_sigmoid(pn_tensor *x);
pn_tensor *pn_tanh(pn_tensor *x);
pn_tensor *pn_affine(pn_tensor *x, double alpha, double beta); /* alpha*x + beta */
pn_tensor *pn_scale(pn_tensor *x, double alpha);

pn_tensor *pn_binary(pn_binary_kind kind, pn_tensor *a, pn_tensor *b);
pn_tensor *pn_add(pn_tensor *a, pn_tensor *b);
pn_tensor *pn_sub(pn_tensor *a, pn_tensor *b);
pn_tensor *pn_mul(pn_tensor *a, pn_tensor *b);
pn_tensor *pn_div(pn_tensor *a, pn_tensor *b);
pn_tensor *pn_maximum(pn_tensor *a, pn_tensor *b);
pn_tensor *pn_minimum(pn_tensor *a, pn_tensor *b);
pn_tensor *pn_eq(pn_tensor *a, pn_tensor *b); /* no gradient */
pn_tensor *pn_gt(pn_tensor *a, pn_tensor *b); /* no gradient */

/* 2-D matrix product op(a) * op(b). */
pn_tensor *pn_matmul(pn_tensor *a, pn_tensor *b, int trans_a, int trans_b);

/* Reductions over the dimensions set in `axes` (bit d = dimension d). */
pn_tensor *pn_reduce(pn_reduce_kind kind, pn_tensor *x, uint32_t axes, int keepdim);
pn_tensor *pn_sum(pn_tensor *x, uint32_t axes, int keepdim);
pn_tensor *pn_mean(pn_tensor *x, uint32_t axes, int keepdim);
pn_tensor *pn_amax(pn_tensor *x, uint32_t axes, int keepdim);
pn_tensor *pn_amin(pn_tensor *x, uint32_t axes, int keepdim);
pn_tensor *pn_sum_all(pn_tensor *x);
/* Sums the broadcast dimensions of x away so that it has `shape` (the
 * gradient of broadcasting). */
pn_tensor *pn_sum_to(pn_tensor *x, const pn_shape *shape);

/* axis may be negative (counted from the end). */
pn_tensor *pn_softmax(pn_tensor *x, int axis);
pn_tensor *pn_log_softmax(pn_tensor *x, int axis);

/* Convolutional networks (NCHW, f32). b may be NULL. Output sizes follow
 * PyTorch: (H + 2*pad - dilation*(k-1) - 1) / stride + 1, rounded down, or
 * up for ceil_mode pooling (a last window must start inside the input). */
pn_tensor *pn_conv2d(pn_tensor *x, pn_tensor *w, pn_tensor *b, const pn_conv2d_params *p);
pn_tensor *pn_pool2d(pn_pool_kind kind, pn_tensor *x, const pn_pool2d_params *p);
pn_tensor *pn_adaptive_pool2d(pn_pool_kind kind, pn_tensor *x, int out_h, int out_w);
/* Batch-norm over the channel dimension 1 of x [N,C] or [N,C,...]. weight
 * and bias may be NULL (no affine). Training normalises with the batch's
 * statistics and, when running_mean/var are given, updates them in place
 * (running = (1-momentum)*running + momentum*batch, unbiased variance), as
 * PyTorch does; evaluation normalises with the running statistics. */
pn_tensor *pn_batch_norm(pn_tensor *x, pn_tensor *weight, pn_tensor *bias,
                         pn_tensor *running_mean, pn_tensor *running_var, int training,
                         double momentum, double eps);
/* pn_relu(pn_batch_norm(...)) as one op: one pass forward, ReLU's mask
 * folded into batch-norm's backward. */
pn_tensor *pn_batch_norm_relu(pn_tensor *x, pn_tensor *weight, pn_tensor *bias,
                              pn_tensor *running_mean, pn_tensor *running_var, int training,
                              double momentum, double eps);
/* Up to PN_OP_MAX_INPUTS tensors joined along axis (may be negative). */
pn_tensor *pn_concat(pn_tensor *const *xs, int n, int axis);
pn_tensor *pn_clamp(pn_tensor *x, double lo, double hi);

/* Shape and layout. */
pn_tensor *pn_reshape(pn_tensor *x, int ndim, const int64_t *shape); /* one -1 allowed */
pn_tensor *pn_transpose(pn_tensor *x, int d0, int d1);               /* a view */
pn_tensor *pn_contiguous(pn_tensor *x);
pn_tensor *pn_cast(pn_tensor *x, pn_dtype dt);
pn_tensor *pn_copy(pn_tensor *x);

/* Ops that plugins register (pn_op_register). pn_op_run makes a new tensor of
 * the given shape and dtype (record it with pn_autograd_record for a
 * gradient); pn_op_run_inplace modifies the contiguous inputs whose bit is set
 * in `written` (optimizer steps) and is never recorded. */
pn_tensor *pn_op_run(int op, const pn_op_params *p, pn_tensor *const *in, int n_in,
                     const pn_shape *shape, pn_dtype dt);
pn_status pn_op_run_inplace(int op, const pn_op_params *p, pn_tensor *const *in, int n_in,
                            uint32_t written);

/* Broadcast shape of a and b by numpy rules; PN_ERR_SHAPE when they clash. */
pn_status pn_broadcast_shape(const pn_shape *a, const pn_shape *b, pn_shape *out);

#ifdef __cplusplus
}
#endif
#endif
