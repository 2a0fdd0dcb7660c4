/* The math API: shape checks, dispatch, autograd recording, and each op's
 * backward written with the same ops so gradients run on any backend. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <plugnet/autograd.h>
#include <plugnet/device.h>
#include <plugnet/ops.h>

#include "internal.h"

/* ------------------------------------------------------------ dispatch */

static pn_op_params params_kind(int kind) {
  pn_op_params p;
  memset(&p, 0, sizeof p);
  p.kind = kind;
  return p;
}

static pn_device *common_device(pn_tensor *const *in, int n, const char *op) {
  pn_device *dev = in[0]->buf->dev;
  for (int i = 1; i < n; i++) {
    if (in[i]->buf->dev != dev) {
      pn_error(PN_ERR_DEVICE,
               "%s: inputs on different devices (%s and %s); move them with "
               "pn_tensor_to() first",
               op, dev->name, in[i]->buf->dev->name);
      return NULL;
    }
  }
  return dev;
}

/* Runs one op on contiguous inputs into a new output of the given shape. */
pn_tensor *pni_run_op(int op, const pn_op_params *p, pn_tensor *const *in, int n,
                         const pn_shape *shape, pn_dtype dt, const char *name) {
  pn_op_args a;
  pn_tensor *tmp[PN_OP_MAX_INPUTS] = {0};
  pn_device *dev = common_device(in, n, name);
  if (!dev) return NULL;
  memset(&a, 0, sizeof a);
  a.op = op;
  a.n_in = n;
  a.p = *p;
  pn_tensor *out = pni_tensor_alloc(dev, dt, shape);
  int ok = out != NULL;
  for (int i = 0; i < n && ok; i++) {
    if (op != PN_OP_COPY && !pn_tensor_is_contiguous(in[i])) {
      int was = pn_set_grad_enabled(0);
      tmp[i] = pn_contiguous(in[i]);
      pn_set_grad_enabled(was);
      ok = tmp[i] != NULL;
    }
    a.in[i] = tmp[i] ? tmp[i] : in[i];
  }
  if (ok) {
    a.out = out;
    if (pn_op_dispatch(&a) != PN_OK) ok = 0;
  }
  for (int i = 0; i < n; i++) pn_tensor_unref(tmp[i]);
  if (!ok) {
    pn_tensor_unref(out);
    return NULL;
  }
  pni_autograd_forward_hooks(name, in, n, out);
  return out;
}

int pni_any_null(pn_tensor *const *in, int n) {
  for (int i = 0; i < n; i++)
    if (!in[i]) return 1;
  return 0;
}

pn_tensor *pni_fail_shape(const char *op, const pn_tensor *a, const pn_tensor *b,
                             const char *why) {
  char sa[96], sb[96];
  pn_shape x = pn_tensor_shape(a);
  if (!b) {
    pn_error(PN_ERR_SHAPE, "%s: %s (shape %s)", op, why, pn_shape_str(&x, sa, sizeof sa));
    return NULL;
  }
  pn_shape y = pn_tensor_shape(b);
  pn_error(PN_ERR_SHAPE, "%s: %s (shapes %s and %s)", op, why, pn_shape_str(&x, sa, sizeof sa),
           pn_shape_str(&y, sb, sizeof sb));
  return NULL;
}

pn_tensor *pni_require_f32(pn_tensor *x, const char *op) {
  if (x->dtype == PN_F32) return x;
  pn_error(PN_ERR_INVALID, "%s: needs f32 input, got %s (use pn_cast)", op,
           pn_dtype_name(x->dtype));
  return NULL;
}

/* Records out on the tape; on failure drops out and returns NULL. */
pn_tensor *pni_record(const char *name, pn_tensor *const *in, int n, pn_tensor *out,
                         pn_backward_fn bw, pn_tensor *const *saved, int n_saved,
                         const pn_op_params *p, int keep_out) {
  if (!out) return NULL;
  if (pn_autograd_record(name, in, n, out, bw, saved, n_saved, p, sizeof *p, keep_out) != PN_OK) {
    pn_tensor_unref(out);
    return NULL;
  }
  return out;
}

/* Accumulates helper results, dropping intermediates: r = f(a, b) then unref
 * the inputs marked owned. */
static pn_tensor *own2(pn_tensor *r, pn_tensor *x, pn_tensor *y) {
  pn_tensor_unref(x);
  pn_tensor_unref(y);
  return r;
}

/* a * b, dropping b: for products with a temporary. */
static pn_tensor *mul_owned(pn_tensor *a, pn_tensor *b) {
  pn_tensor *r = pn_mul(a, b);
  pn_tensor_unref(b);
  return r;
}

/* ------------------------------------------------------------ plugin ops */

static int check_plugin_op(int op, pn_tensor *const *in, int n_in) {
  if (op < 0 || op >= pn_op_count()) {
    pn_error(PN_ERR_INVALID, "op id %d is not registered", op);
    return 0;
  }
  if (n_in < 0 || n_in > PN_OP_MAX_INPUTS) {
    pn_error(PN_ERR_INVALID, "op '%s': %d inputs (at most %d)", pn_op_name(op), n_in,
             PN_OP_MAX_INPUTS);
    return 0;
  }
  return !pni_any_null(in, n_in);
}

pn_tensor *pn_op_run(int op, const pn_op_params *p, pn_tensor *const *in, int n_in,
                     const pn_shape *shape, pn_dtype dt) {
  if (!check_plugin_op(op, in, n_in)) return NULL;
  if (n_in == 0) {
    pn_error(PN_ERR_INVALID, "op '%s': pn_op_run needs an input to place it", pn_op_name(op));
    return NULL;
  }
  return pni_run_op(op, p, in, n_in, shape, dt, pn_op_name(op));
}

pn_status pn_op_run_inplace(int op, const pn_op_params *p, pn_tensor *const *in, int n_in,
                            uint32_t written) {
  if (!check_plugin_op(op, in, n_in)) return PN_ERR_INVALID;
  if (n_in == 0 || !common_device(in, n_in, pn_op_name(op))) return PN_ERR_INVALID;
  pn_op_args a;
  memset(&a, 0, sizeof a);
  a.op = op;
  a.n_in = n_in;
  a.p = *p;
  a.written = written;
  for (int i = 0; i < n_in; i++) {
    /* Writing through a view would have to scatter back: refuse it. */
    if (!pn_tensor_is_contiguous(in[i]))
      return pn_error(PN_ERR_INVALID, "op '%s': input %d is not contiguous", pn_op_name(op), i);
    a.in[i] = in[i];
  }
  return pn_op_dispatch(&a);
}

/* ------------------------------------------------------------ creation */

static pn_tensor *create(pn_device *dev, pn_dtype dt, int ndim, const int64_t *shape, int op,
                         const pn_op_params *p) {
  pn_tensor *out = pn_tensor_new(dev, dt, ndim, shape);
  if (!out) return NULL;
  pn_op_args a;
  memset(&a, 0, sizeof a);
  a.op = op;
  a.out = out;
  a.p = *p;
  if (pn_op_dispatch(&a) != PN_OK) {
    pn_tensor_unref(out);
    return NULL;
  }
  return out;
}

pn_tensor *pn_full(pn_device *dev, pn_dtype dt, int ndim, const int64_t *shape, double value) {
  pn_op_params p = params_kind(0);
  p.alpha = value;
  return create(dev, dt, ndim, shape, PN_OP_FILL, &p);
}

pn_tensor *pn_zeros(pn_device *dev, int ndim, const int64_t *shape) {
  return pn_full(dev, PN_F32, ndim, shape, 0.0);
}

pn_tensor *pn_ones(pn_device *dev, int ndim, const int64_t *shape) {
  return pn_full(dev, PN_F32, ndim, shape, 1.0);
}

pn_tensor *pn_zeros_like(const pn_tensor *t) {
  return t ? pn_full(t->buf->dev, t->dtype, t->ndim, t->shape, 0.0) : NULL;
}

pn_tensor *pn_ones_like(const pn_tensor *t) {
  return t ? pn_full(t->buf->dev, t->dtype, t->ndim, t->shape, 1.0) : NULL;
}

static pn_tensor *random_tensor(pn_device *dev, int ndim, const int64_t *shape, int kind,
                                double alpha, double beta, uint64_t seed, uint64_t counter) {
  pn_op_params p = params_kind(kind);
  p.alpha = alpha;
  p.beta = beta;
  p.seed = seed;
  p.counter = counter;
  return create(dev, PN_F32, ndim, shape, PN_OP_RANDOM, &p);
}

pn_tensor *pn_rand_uniform(pn_device *dev, int ndim, const int64_t *shape, double lo, double hi,
                           uint64_t seed, uint64_t counter) {
  return random_tensor(dev, ndim, shape, PN_RANDOM_UNIFORM, lo, hi, seed, counter);
}

pn_tensor *pn_rand_normal(pn_device *dev, int ndim, const int64_t *shape, double mean, double std,
                          uint64_t seed, uint64_t counter) {
  return random_tensor(dev, ndim, shape, PN_RANDOM_NORMAL, mean, std, seed, counter);
}

pn_tensor *pn_rand_bernoulli(pn_device *dev, int ndim, const int64_t *shape, double p,
                             uint64_t seed, uint64_t counter) {
  return random_tensor(dev, ndim, shape, PN_RANDOM_BERNOULLI, p, 0.0, seed, counter);
}

/* ------------------------------------------------------------ unary */

static pn_tensor *grad_off_unary(pn_unary_kind k, pn_tensor *x, double alpha, double beta);
static pn_tensor *binary_raw(pn_binary_kind k, pn_tensor *a, pn_tensor *b);

static pn_status unary_backward(const pn_backward_ctx *c, pn_tensor *g, pn_tensor **gin) {
  const pn_op_params *p = c->params;
  pn_tensor *x = c->in[0], *y = c->out, *r = NULL, *t = NULL;
  switch ((pn_unary_kind)p->kind) {
  case PN_UNARY_NEG: r = pn_neg(g); break;
  case PN_UNARY_ABS: r = mul_owned(g, pn_unary(PN_UNARY_SIGN, x)); break;
  case PN_UNARY_EXP: r = pn_mul(g, y); break;
  case PN_UNARY_LOG: r = pn_div(g, x); break;
  case PN_UNARY_SQRT: /* g / (2 y) */
    t = pn_scale(y, 2.0);
    r = own2(pn_div(g, t), t, NULL);
    break;
  case PN_UNARY_SQUARE: r = mul_owned(g, pn_scale(x, 2.0)); break;
  case PN_UNARY_RECIP: /* -g * y^2 */
    t = mul_owned(g, grad_off_unary(PN_UNARY_SQUARE, y, 0, 0));
    r = own2(pn_neg(t), t, NULL);
    break;
  case PN_UNARY_RELU: /* y > 0 iff x > 0; one fused pass, no step-mask temporary */
    r = binary_raw(PN_BINARY_RELU_GRAD, g, y);
    break;
  case PN_UNARY_SIGMOID: /* g * y * (1 - y) */
    t = mul_owned(y, pn_affine(y, -1.0, 1.0));
    r = mul_owned(g, t);
    break;
  case PN_UNARY_TANH: /* g * (1 - y^2) */
    t = grad_off_unary(PN_UNARY_SQUARE, y, 0, 0);
    r = mul_owned(g, own2(pn_affine(t, -1.0, 1.0), t, NULL));
    break;
  case PN_UNARY_AFFINE: r = pn_scale(g, p->alpha); break;
  default: /* sign and step are flat almost everywhere */ r = pn_zeros_like(x); break;
  }
  gin[0] = r;
  return r ? PN_OK : PN_ERR_INTERNAL;
}

static pn_tensor *grad_off_unary(pn_unary_kind k, pn_tensor *x, double alpha, double beta) {
  pn_op_params p = params_kind(k);
  p.alpha = alpha;
  p.beta = beta;
  pn_shape s = pn_tensor_shape(x);
  return pni_run_op(PN_OP_UNARY, &p, &x, 1, &s, PN_F32, "unary");
}

static pn_tensor *unary_op(pn_unary_kind k, pn_tensor *x, double alpha, double beta) {
  if (!x || !pni_require_f32(x, "unary")) return NULL;
  if ((unsigned)k >= PN_UNARY_COUNT) {
    pn_error(PN_ERR_INVALID, "unknown unary op %d", (int)k);
    return NULL;
  }
  pn_tensor *out = grad_off_unary(k, x, alpha, beta);
  int keep = k == PN_UNARY_EXP || k == PN_UNARY_SQRT || k == PN_UNARY_RECIP ||
             k == PN_UNARY_SIGMOID || k == PN_UNARY_TANH || k == PN_UNARY_RELU;
  pn_op_params p = params_kind(k);
  p.alpha = alpha;
  p.beta = beta;
  out = pni_record("unary", &x, 1, out, unary_backward, NULL, 0, &p, keep);
  /* relu's gradient reads its output, which the next layer keeps anyway:
   * its input (a batch-norm's output) need not be kept too */
  if (k == PN_UNARY_RELU) pni_autograd_drop_inputs(out, 1);
  return out;
}

pn_tensor *pn_unary(pn_unary_kind k, pn_tensor *x) { return unary_op(k, x, 0.0, 0.0); }
pn_tensor *pn_neg(pn_tensor *x) { return unary_op(PN_UNARY_NEG, x, 0, 0); }
pn_tensor *pn_abs(pn_tensor *x) { return unary_op(PN_UNARY_ABS, x, 0, 0); }
pn_tensor *pn_exp(pn_tensor *x) { return unary_op(PN_UNARY_EXP, x, 0, 0); }
pn_tensor *pn_log(pn_tensor *x) { return unary_op(PN_UNARY_LOG, x, 0, 0); }
pn_tensor *pn_sqrt(pn_tensor *x) { return unary_op(PN_UNARY_SQRT, x, 0, 0); }
pn_tensor *pn_square(pn_tensor *x) { return unary_op(PN_UNARY_SQUARE, x, 0, 0); }
pn_tensor *pn_recip(pn_tensor *x) { return unary_op(PN_UNARY_RECIP, x, 0, 0); }
pn_tensor *pn_relu(pn_tensor *x) { return unary_op(PN_UNARY_RELU, x, 0, 0); }
pn_tensor *pn_sigmoid(pn_tensor *x) { return unary_op(PN_UNARY_SIGMOID, x, 0, 0); }
pn_tensor *pn_tanh(pn_tensor *x) { return unary_op(PN_UNARY_TANH, x, 0, 0); }
pn_tensor *pn_affine(pn_tensor *x, double alpha, double beta) {
  return unary_op(PN_UNARY_AFFINE, x, alpha, beta);
}
pn_tensor *pn_scale(pn_tensor *x, double alpha) { return unary_op(PN_UNARY_AFFINE, x, alpha, 0); }

/* ------------------------------------------------------------ binary */

pn_status pn_broadcast_shape(const pn_shape *a, const pn_shape *b, pn_shape *out) {
  int n = a->ndim > b->ndim ? a->ndim : b->ndim;
  out->ndim = n;
  for (int i = 0; i < n; i++) {
    int ia = a->ndim - n + i, ib = b->ndim - n + i;
    int64_t da = ia >= 0 ? a->dim[ia] : 1, db = ib >= 0 ? b->dim[ib] : 1;
    if (da != db && da != 1 && db != 1)
      return pn_error(PN_ERR_SHAPE, "dimension %d: %lld and %lld do not broadcast", i,
                      (long long)da, (long long)db);
    out->dim[i] = da == 1 ? db : da;
  }
  return PN_OK;
}

static pn_tensor *binary_raw(pn_binary_kind k, pn_tensor *a, pn_tensor *b) {
  pn_shape sa = pn_tensor_shape(a), sb = pn_tensor_shape(b), so;
  if (pn_broadcast_shape(&sa, &sb, &so) != PN_OK)
    return pni_fail_shape("binary", a, b, pn_last_error());
  pn_op_params p = params_kind(k);
  pn_tensor *in[2] = {a, b};
  return pni_run_op(PN_OP_BINARY, &p, in, 2, &so, PN_F32, "binary");
}

/* Gradient masks for max/min: ties split the gradient evenly. */
static pn_tensor *winner_mask(pn_tensor *x, pn_tensor *other) {
  pn_tensor *gt = binary_raw(PN_BINARY_GT, x, other);
  pn_tensor *eq = binary_raw(PN_BINARY_EQ, x, other);
  pn_tensor *half = eq ? grad_off_unary(PN_UNARY_AFFINE, eq, 0.5, 0.0) : NULL;
  pn_tensor *m = gt && half ? binary_raw(PN_BINARY_ADD, gt, half) : NULL;
  pn_tensor_unref(gt);
  pn_tensor_unref(eq);
  pn_tensor_unref(half);
  return m;
}

static pn_tensor *binary_grad_for(int which, pn_binary_kind k, pn_tensor *a, pn_tensor *b,
                                  pn_tensor *g) {
  pn_tensor *t = NULL, *r = NULL;
  switch (k) {
  case PN_BINARY_ADD: return pn_tensor_ref(g);
  case PN_BINARY_SUB: return which == 0 ? pn_tensor_ref(g) : pn_neg(g);
  case PN_BINARY_MUL: return pn_mul(g, which == 0 ? b : a);
  case PN_BINARY_DIV:
    if (which == 0) return pn_div(g, b);
    t = pn_div(a, b); /* -g * a / b^2 */
    r = own2(pn_div(t, b), t, NULL);
    t = own2(pn_mul(g, r), r, NULL);
    return own2(pn_neg(t), t, NULL);
  case PN_BINARY_RELU_GRAD: /* linear in a through the same mask; flat in b */
    return which == 0 ? binary_raw(PN_BINARY_RELU_GRAD, g, b) : pn_zeros_like(g);
  case PN_BINARY_MAX:
  case PN_BINARY_MIN: {
    pn_tensor *x = which == 0 ? a : b, *y = which == 0 ? b : a;
    /* x wins a max where x > y, a min where y > x */
    t = k == PN_BINARY_MAX ? winner_mask(x, y) : winner_mask(y, x);
    return own2(pn_mul(g, t), t, NULL);
  }
  default: return NULL;
  }
}

static pn_status binary_backward(const pn_backward_ctx *c, pn_tensor *g, pn_tensor **gin) {
  const pn_op_params *p = c->params;
  for (int i = 0; i < 2; i++) {
    if (!c->needs_grad[i]) continue;
    pn_tensor *full = binary_grad_for(i, (pn_binary_kind)p->kind, c->in[0], c->in[1], g);
    gin[i] = full ? pn_sum_to(full, &c->in_shape[i]) : NULL;
    pn_tensor_unref(full);
    if (!gin[i]) return PN_ERR_INTERNAL;
  }
  return PN_OK;
}

pn_tensor *pn_binary(pn_binary_kind k, pn_tensor *a, pn_tensor *b) {
  pn_tensor *in[2] = {a, b};
  if (pni_any_null(in, 2) || !pni_require_f32(a, "binary") || !pni_require_f32(b, "binary")) return NULL;
  if ((unsigned)k >= PN_BINARY_COUNT) {
    pn_error(PN_ERR_INVALID, "unknown binary op %d", (int)k);
    return NULL;
  }
  pn_tensor *out = binary_raw(k, a, b);
  if (k == PN_BINARY_EQ || k == PN_BINARY_GT) return out; /* piecewise constant */
  pn_op_params p = params_kind(k);
  out = pni_record("binary", in, 2, out, binary_backward, NULL, 0, &p, 0);
  /* a sum's gradient needs only the shapes (residual branches stay unkept) */
  if (k == PN_BINARY_ADD || k == PN_BINARY_SUB) pni_autograd_drop_inputs(out, 3);
  return out;
}

pn_tensor *pn_add(pn_tensor *a, pn_tensor *b) { return pn_binary(PN_BINARY_ADD, a, b); }
pn_tensor *pn_sub(pn_tensor *a, pn_tensor *b) { return pn_binary(PN_BINARY_SUB, a, b); }
pn_tensor *pn_mul(pn_tensor *a, pn_tensor *b) { return pn_binary(PN_BINARY_MUL, a, b); }
pn_tensor *pn_div(pn_tensor *a, pn_tensor *b) { return pn_binary(PN_BINARY_DIV, a, b); }
pn_tensor *pn_maximum(pn_tensor *a, pn_tensor *b) { return pn_binary(PN_BINARY_MAX, a, b); }
pn_tensor *pn_minimum(pn_tensor *a, pn_tensor *b) { return pn_binary(PN_BINARY_MIN, a, b); }
pn_tensor *pn_eq(pn_tensor *a, pn_tensor *b) { return pn_binary(PN_BINARY_EQ, a, b); }
pn_tensor *pn_gt(pn_tensor *a, pn_tensor *b) { return pn_binary(PN_BINARY_GT, a, b); }

/* ------------------------------------------------------------ matmul */

static pn_status matmul_backward(const pn_backward_ctx *c, pn_tensor *g, pn_tensor **gin) {
  const pn_op_params *p = c->params;
  pn_tensor *a = c->in[0], *b = c->in[1];
  int ta = p->trans_a, tb = p->trans_b;
  /* d op(A) = g op(B)^T and d op(B) = op(A)^T g, transposed back where stored transposed. */
  if (c->needs_grad[0]) {
    gin[0] = ta ? pn_matmul(b, g, tb, 1) : pn_matmul(g, b, 0, !tb);
    if (!gin[0]) return PN_ERR_INTERNAL;
  }
  if (c->needs_grad[1]) {
    gin[1] = tb ? pn_matmul(g, a, 1, ta) : pn_matmul(a, g, !ta, 0);
    if (!gin[1]) return PN_ERR_INTERNAL;
  }
  return PN_OK;
}

pn_tensor *pn_matmul(pn_tensor *a, pn_tensor *b, int trans_a, int trans_b) {
  pn_tensor *in[2] = {a, b};
  if (pni_any_null(in, 2) || !pni_require_f32(a, "matmul") || !pni_require_f32(b, "matmul")) return NULL;
  if (a->ndim != 2 || b->ndim != 2) return pni_fail_shape("matmul", a, b, "needs 2-D inputs");
  int64_t m = trans_a ? a->shape[1] : a->shape[0], ka = trans_a ? a->shape[0] : a->shape[1];
  int64_t kb = trans_b ? b->shape[1] : b->shape[0], n = trans_b ? b->shape[0] : b->shape[1];
  if (ka != kb) return pni_fail_shape("matmul", a, b, "inner dimensions differ");
  pn_op_params p = params_kind(0);
  p.trans_a = trans_a != 0;
  p.trans_b = trans_b != 0;
  int64_t dims[2] = {m, n};
  pn_shape s = pn_shape_make(2, dims);
  pn_tensor *out = pni_run_op(PN_OP_MATMUL, &p, in, 2, &s, PN_F32, "matmul");
  return pni_record("matmul", in, 2, out, matmul_backward, NULL, 0, &p, 0);
}

/* ------------------------------------------------------------ reduce */

static pn_shape reduced_shape(const pn_tensor *x, uint32_t axes, int keepdim) {
  pn_shape s = {0, {0}};
  for (int d = 0; d < x->ndim; d++) {
    if (!(axes & (1u << d)))
      s.dim[s.ndim++] = x->shape[d];
    else if (keepdim)
      s.dim[s.ndim++] = 1;
  }
  return s;
}

static pn_tensor *reduce_raw(pn_reduce_kind k, pn_tensor *x, uint32_t axes, int keepdim) {
  pn_op_params p = params_kind(k);
  p.axes = axes;
  p.keepdim = keepdim;
  pn_shape s = reduced_shape(x, axes, keepdim);
  return pni_run_op(PN_OP_REDUCE, &p, &x, 1, &s, PN_F32, "reduce");
}

/* g reshaped with the reduced axes kept, then broadcast to x's shape. */
static pn_tensor *expand_back(pn_tensor *g, const pn_tensor *x, uint32_t axes) {
  pn_shape k = reduced_shape(x, axes, 1);
  pn_tensor *gk = pn_reshape(g, k.ndim, k.dim);
  pn_tensor *z = pn_zeros_like(x);
  pn_tensor *r = gk && z ? binary_raw(PN_BINARY_ADD, z, gk) : NULL;
  return own2(r, gk, z);
}

static int64_t reduced_count(const pn_tensor *x, uint32_t axes) {
  int64_t n = 1;
  for (int d = 0; d < x->ndim; d++)
    if (axes & (1u << d)) n *= x->shape[d];
  return n;
}

static pn_status reduce_backward(const pn_backward_ctx *c, pn_tensor *g, pn_tensor **gin) {
  const pn_op_params *p = c->params;
  pn_tensor *x = c->in[0], *r = NULL;
  pn_tensor *ge = expand_back(g, x, p->axes);
  if (!ge) return PN_ERR_INTERNAL;
  if (p->kind == PN_REDUCE_SUM) {
    r = pn_tensor_ref(ge);
  } else if (p->kind == PN_REDUCE_MEAN) {
    r = pn_scale(ge, 1.0 / (double)reduced_count(x, p->axes));
  } else { /* max/min: the gradient goes to the extreme elements, split among ties */
    pn_tensor *ye = expand_back(c->out, x, p->axes);
    pn_tensor *mask = ye ? binary_raw(PN_BINARY_EQ, x, ye) : NULL;
    pn_tensor *cnt = mask ? reduce_raw(PN_REDUCE_SUM, mask, p->axes, 1) : NULL;
    pn_tensor *share = cnt ? binary_raw(PN_BINARY_DIV, mask, cnt) : NULL;
    r = share ? pn_mul(ge, share) : NULL;
    pn_tensor_unref(ye);
    pn_tensor_unref(mask);
    pn_tensor_unref(cnt);
    pn_tensor_unref(share);
  }
  pn_tensor_unref(ge);
  gin[0] = r;
  return r ? PN_OK : PN_ERR_INTERNAL;
}

pn_tensor *pn_reduce(pn_reduce_kind k, pn_tensor *x, uint32_t axes, int keepdim) {
  if (!x || !pni_require_f32(x, "reduce")) return NULL;
  if ((unsigned)k >= PN_REDUCE_COUNT) {
    pn_error(PN_ERR_INVALID, "unknown reduction %d", (int)k);
    return NULL;
  }
  uint32_t all = x->ndim ? (uint32_t)((1u << x->ndim) - 1u) : 0u;
  if (axes & ~all) return pni_fail_shape("reduce", x, NULL, "axis out of range");
  if (axes == 0) axes = all; /* no axes named: reduce over everything, like torch.sum(x) */
  pn_tensor *out = reduce_raw(k, x, axes, keepdim);
  pn_op_params p = params_kind(k);
  p.axes = axes;
  p.keepdim = keepdim;
  return pni_record("reduce", &x, 1, out, reduce_backward, NULL, 0, &p,
                k == PN_REDUCE_MAX || k == PN_REDUCE_MIN);
}

pn_tensor *pn_sum(pn_tensor *x, uint32_t axes, int keepdim) {
  return pn_reduce(PN_REDUCE_SUM, x, axes, keepdim);
}
pn_tensor *pn_mean(pn_tensor *x, uint32_t axes, int keepdim) {
  return pn_reduce(PN_REDUCE_MEAN, x, axes, keepdim);
}
pn_tensor *pn_amax(pn_tensor *x, uint32_t axes, int keepdim) {
  return pn_reduce(PN_REDUCE_MAX, x, axes, keepdim);
}
pn_tensor *pn_amin(pn_tensor *x, uint32_t axes, int keepdim) {
  return pn_reduce(PN_REDUCE_MIN, x, axes, keepdim);
}
pn_tensor *pn_sum_all(pn_tensor *x) { return pn_reduce(PN_REDUCE_SUM, x, 0, 0); }

pn_tensor *pn_sum_to(pn_tensor *x, const pn_shape *shape) {
  if (!x) return NULL;
  uint32_t axes = 0;
  int lead = x->ndim - shape->ndim;
  if (lead < 0) return pni_fail_shape("sum_to", x, NULL, "target has more dimensions");
  for (int d = 0; d < x->ndim; d++) {
    int64_t want = d < lead ? 1 : shape->dim[d - lead];
    if (d < lead || (want == 1 && x->shape[d] != 1))
      axes |= 1u << d;
    else if (want != x->shape[d])
      return pni_fail_shape("sum_to", x, NULL, "shape cannot reduce to target");
  }
  if (axes == 0) return pn_reshape(x, shape->ndim, shape->dim);
  pn_tensor *s = pn_sum(x, axes, 1);
  pn_tensor *r = pn_reshape(s, shape->ndim, shape->dim);
  pn_tensor_unref(s);
  return r;
}

/* ------------------------------------------------------------ softmax */

static int norm_axis(const pn_tensor *x, int axis) {
  if (axis < 0) axis += x->ndim;
  return axis >= 0 && axis < x->ndim ? axis : -1;
}

static pn_status softmax_backward(const pn_backward_ctx *c, pn_tensor *g, pn_tensor **gin) {
  const pn_op_params *p = c->params;
  uint32_t ax = 1u << p->axis;
  pn_tensor *y = c->out, *t, *s, *r;
  if (p->kind == PN_OP_SOFTMAX) { /* y * (g - sum(g*y)) */
    t = pn_mul(g, y);
    s = own2(pn_sum(t, ax, 1), t, NULL);
    t = own2(pn_sub(g, s), s, NULL);
    r = own2(pn_mul(y, t), t, NULL);
  } else { /* g - exp(y) * sum(g) */
    s = pn_sum(g, ax, 1);
    t = pn_exp(y);
    r = own2(pn_mul(t, s), t, s);
    r = own2(pn_sub(g, r), r, NULL);
  }
  gin[0] = r;
  return r ? PN_OK : PN_ERR_INTERNAL;
}

static pn_tensor *softmax_op(int op, pn_tensor *x, int axis) {
  const char *name = op == PN_OP_SOFTMAX ? "softmax" : "log_softmax";
  if (!x || !pni_require_f32(x, name)) return NULL;
  int a = norm_axis(x, axis);
  if (a < 0) return pni_fail_shape(name, x, NULL, "axis out of range");
  pn_op_params p = params_kind(op);
  p.axis = a;
  pn_shape s = pn_tensor_shape(x);
  pn_tensor *out = pni_run_op(op, &p, &x, 1, &s, PN_F32, name);
  return pni_record(name, &x, 1, out, softmax_backward, NULL, 0, &p, 1);
}

pn_tensor *pn_softmax(pn_tensor *x, int axis) { return softmax_op(PN_OP_SOFTMAX, x, axis); }
pn_tensor *pn_log_softmax(pn_tensor *x, int axis) { return softmax_op(PN_OP_LOG_SOFTMAX, x, axis); }

/* ------------------------------------------------------------ shape and layout */

static pn_status reshape_backward(const pn_backward_ctx *c, pn_tensor *g, pn_tensor **gin) {
  gin[0] = pn_reshape(g, c->in[0]->ndim, c->in[0]->shape);
  return gin[0] ? PN_OK : PN_ERR_INTERNAL;
}

pn_tensor *pn_reshape(pn_tensor *x, int ndim, const int64_t *shape) {
  int64_t dims[PN_MAX_DIMS];
  int infer = -1;
  int64_t known = 1;
  if (!x) return NULL;
  if (ndim < 0 || ndim > PN_MAX_DIMS) return pni_fail_shape("reshape", x, NULL, "too many dimensions");
  for (int i = 0; i < ndim; i++) {
    dims[i] = shape[i];
    if (shape[i] == -1 && infer < 0)
      infer = i;
    else
      known *= shape[i];
  }
  if (infer >= 0) dims[infer] = known ? pn_tensor_numel(x) / known : 0;
  pn_tensor *src = pn_tensor_is_contiguous(x) ? pn_tensor_ref(x) : NULL;
  if (!src) {
    int was = pn_set_grad_enabled(0);
    src = pn_contiguous(x);
    pn_set_grad_enabled(was);
    if (!src) return NULL;
  }
  pn_tensor *out = pn_tensor_view(src, ndim, dims);
  pn_tensor_unref(src);
  pn_op_params p = params_kind(0);
  return pni_record("reshape", &x, 1, out, reshape_backward, NULL, 0, &p, 0);
}

static pn_status transpose_backward(const pn_backward_ctx *c, pn_tensor *g, pn_tensor **gin) {
  const pn_op_params *p = c->params;
  gin[0] = pn_transpose(g, p->axis, (int)p->axes);
  return gin[0] ? PN_OK : PN_ERR_INTERNAL;
}

pn_tensor *pn_transpose(pn_tensor *x, int d0, int d1) {
  if (!x) return NULL;
  pn_tensor *out = pn_tensor_transposed(x, d0, d1);
  pn_op_params p = params_kind(0);
  p.axis = d0 < 0 ? d0 + x->ndim : d0;
  p.axes = (uint32_t)(d1 < 0 ? d1 + x->ndim : d1);
  return pni_record("transpose", &x, 1, out, transpose_backward, NULL, 0, &p, 0);
}

static pn_status copy_backward(const pn_backward_ctx *c, pn_tensor *g, pn_tensor **gin) {
  gin[0] = c->in[0]->dtype == g->dtype ? pn_tensor_ref(g) : pn_cast(g, c->in[0]->dtype);
  return gin[0] ? PN_OK : PN_ERR_INTERNAL;
}

pn_tensor *pn_cast(pn_tensor *x, pn_dtype dt) {
  if (!x) return NULL;
  if ((unsigned)dt >= PN_DTYPE_COUNT) {
    pn_error(PN_ERR_INVALID, "cast: unknown dtype %d", (int)dt);
    return NULL;
  }
  pn_op_params p = params_kind(0);
  pn_shape s = pn_tensor_shape(x);
  pn_tensor *out = pni_run_op(PN_OP_COPY, &p, &x, 1, &s, dt, "copy");
  if (x->dtype != PN_F32 || dt != PN_F32) return out; /* integers carry no gradient */
  return pni_record("copy", &x, 1, out, copy_backward, NULL, 0, &p, 0);
}

pn_tensor *pn_copy(pn_tensor *x) { return x ? pn_cast(x, x->dtype) : NULL; }

pn_tensor *pn_contiguous(pn_tensor *x) {
  if (!x) return NULL;
  return pn_tensor_is_contiguous(x) ? pn_tensor_ref(x) : pn_copy(x);
}
