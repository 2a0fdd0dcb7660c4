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
