/* The math API of pooling, batch-norm, concatenation and clamping, with
 * their backwards. Semantics follow PyTorch (see ops.h). Each op is one
 * kernel forward; backwards are kernels too (pool, channel statistics) or
 * small ops on [C] tensors, so that they run on any backend. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include <plugnet/autograd.h>
#include <plugnet/ops.h>

#include "internal.h"

static pn_op_params params_kind(int kind) {
  pn_op_params p;
  memset(&p, 0, sizeof p);
  p.kind = kind;
  return p;
}

static pn_tensor *fail(pn_status code, const char *op, const char *why) {
  pn_error(code, "%s: %s", op, why);
  return NULL;
}

/* ------------------------------------------------------------ pooling */

static int64_t floor_div(int64_t a, int64_t b) {
  int64_t q = a / b;
  return (a % b != 0 && (a < 0) != (b < 0)) ? q - 1 : q;
}

/* PyTorch's rule: with ceil_mode a last, partial window counts only when it
 * starts inside the input or its left padding. 0 or less: no output. */
static int64_t pool_out_size(int64_t in, int k, int s, int pad, int ceil_mode) {
  int64_t o = floor_div(in + 2 * (int64_t)pad - k + (ceil_mode ? s - 1 : 0), s) + 1;
  if (ceil_mode && o > 0 && (o - 1) * s >= in + pad) o--;
  return o;
}

static pn_tensor *pool_input_check(pn_tensor *x, const char *op) {
  if (!x || !pni_require_f32(x, op)) return NULL;
  if (x->ndim != 4) return pni_fail_shape(op, x, NULL, "needs a 4-D [N,C,H,W] input");
  if (x->shape[2] < 1 || x->shape[3] < 1)
    return pni_fail_shape(op, x, NULL, "needs a non-empty height and width");
  return x;
}

static int pool_geometry_ok(const pn_pool2d_params *p) {
  for (int i = 0; i < 2; i++) {
    const char *dim = i ? "width" : "height";
    if (p->kernel[i] < 1) {
      pn_error(PN_ERR_INVALID, "pool2d: kernel %s %d must be at least 1", dim, p->kernel[i]);
      return 0;
    }
    if (p->stride[i] < 1) {
      pn_error(PN_ERR_INVALID, "pool2d: stride %s %d must be at least 1", dim, p->stride[i]);
      return 0;
    }
    if (p->padding[i] < 0 || 2 * p->padding[i] > p->kernel[i]) {
      pn_error(PN_ERR_INVALID,
               "pool2d: padding %s %d must be between 0 and half the kernel (%d), as in PyTorch",
               dim, p->padding[i], p->kernel[i]);
      return 0;
    }
  }
  return 1;
}

static pn_status pool_backward(const pn_backward_ctx *c, pn_tensor *g, pn_tensor **gin) {
  pn_tensor *in[2] = {g, c->in[0]};
  pn_shape s = pn_tensor_shape(c->in[0]);
  gin[0] = pni_run_op(PN_OP_POOL2D_GRAD, c->params, in, 2, &s, PN_F32, "pool2d_grad");
  return gin[0] ? PN_OK : PN_ERR_INTERNAL;
}

static pn_tensor *pool_run(pn_tensor *x, const pn_op_params *p, int64_t oh, int64_t ow,
                           const char *name) {
  int64_t dims[4] = {x->shape[0], x->shape[1], oh, ow};
  pn_shape s = pn_shape_make(4, dims);
  pn_tensor *out = pni_run_op(PN_OP_POOL2D, p, &x, 1, &s, PN_F32, name);
  return pni_record(name, &x, 1, out, pool_backward, NULL, 0, p, 0);
}

pn_tensor *pn_pool2d(pn_pool_kind kind, pn_tensor *x, const pn_pool2d_params *p) {
  if (!pool_input_check(x, "pool2d")) return NULL;
  if (kind != PN_POOL_MAX && kind != PN_POOL_AVG)
    return fail(PN_ERR_INVALID, "pool2d", "kind must be max or avg (adaptive kinds: use "
                                          "pn_adaptive_pool2d)");
  if (!p) return fail(PN_ERR_INVALID, "pool2d", "no geometry given");
  if (!pool_geometry_ok(p)) return NULL;
  int64_t o[2];
  for (int i = 0; i < 2; i++) {
    o[i] = pool_out_size(x->shape[2 + i], p->kernel[i], p->stride[i], p->padding[i],
                         p->ceil_mode);
    if (o[i] < 1) {
      pn_error(PN_ERR_SHAPE, "pool2d: kernel %dx%d with padding %d,%d is larger than the %lldx%lld "
                             "input: no output",
               p->kernel[0], p->kernel[1], p->padding[0], p->padding[1],
               (long long)x->shape[2], (long long)x->shape[3]);
      return NULL;
    }
  }
  pn_op_params prm = params_kind(kind);
  pn_pool2d_params g = *p;
  g.ceil_mode = g.ceil_mode != 0;
  g.count_include_pad = g.count_include_pad != 0;
  pn_pool2d_params_pack(&g, &prm);
  return pool_run(x, &prm, o[0], o[1], kind == PN_POOL_MAX ? "max_pool2d" : "avg_pool2d");
}

pn_tensor *pn_adaptive_pool2d(pn_pool_kind kind, pn_tensor *x, int out_h, int out_w) {
  if (!pool_input_check(x, "adaptive_pool2d")) return NULL;
  if (kind == PN_POOL_MAX) kind = PN_POOL_ADAPTIVE_MAX;
  if (kind == PN_POOL_AVG) kind = PN_POOL_ADAPTIVE_AVG;
  if (kind != PN_POOL_ADAPTIVE_MAX && kind != PN_POOL_ADAPTIVE_AVG)
    return fail(PN_ERR_INVALID, "adaptive_pool2d", "unknown pool kind");
  if (out_h < 1 || out_w < 1) {
    pn_error(PN_ERR_INVALID, "adaptive_pool2d: output size %dx%d must be at least 1x1", out_h,
             out_w);
    return NULL;
  }
  pn_op_params prm = params_kind(kind);
  return pool_run(x, &prm, out_h, out_w,
                  kind == PN_POOL_ADAPTIVE_MAX ? "adaptive_max_pool2d" : "adaptive_avg_pool2d");
}

/* ------------------------------------------------------------ batch-norm */

/* Row r of a contiguous [R, C] tensor, as a [C] view. */
static pn_tensor *row_view(pn_tensor *t, int r) {
  int64_t n = pn_tensor_numel(t);
  pn_tensor *v = pn_tensor_view(t, 1, &n);
  if (!v) return NULL;
  v->shape[0] = t->shape[1];
  v->offset += r * t->shape[1];
  return v;
}

static void unref_all(pn_tensor **ts, int n) {
  for (int i = 0; i < n; i++) pn_tensor_unref(ts[i]);
}

enum { BN_WEIGHT = 1, BN_BIAS = 2, BN_TRAINING = 4, BN_RELU = 8 };

/* What the backward keeps: the statistics x was normalised with. */
typedef struct bn_stats {
  pn_tensor *mean, *invstd;
} bn_stats;

/* 1 / sqrt(var + eps), as PyTorch: eps inside the root. */
static pn_tensor *inv_std(pn_tensor *var, double eps) {
  pn_tensor *t = pn_affine(var, 1.0, eps);
  pn_tensor *s = pn_sqrt(t);
  pn_tensor *r = pn_recip(s);
  pn_tensor_unref(t);
  pn_tensor_unref(s);
  return r;
}

static pn_tensor *channel_affine(pn_tensor *const *in, int n, pn_tensor *like, int kind) {
  pn_op_params p = params_kind(kind);
  pn_shape s = pn_tensor_shape(like);
  return pni_run_op(PN_OP_CHANNEL_AFFINE, &p, in, n, &s, PN_F32, "channel_affine");
}

/* y = scale*x + shift with scale = w*invstd and shift = b - mean*scale
 * (then max(y, 0) when relu). */
static pn_tensor *bn_normalise(pn_tensor *x, pn_tensor *w, pn_tensor *b, const bn_stats *st,
                               int relu) {
  pn_tensor *scale = w ? pn_mul(w, st->invstd) : pn_tensor_ref(st->invstd);
  pn_tensor *ms = scale ? pn_mul(st->mean, scale) : NULL;
  pn_tensor *shift = !ms ? NULL : b ? pn_sub(b, ms) : pn_neg(ms);
  pn_tensor *in[3] = {x, scale, shift};
  pn_tensor *y = shift ? channel_affine(in, 3, x, relu ? PN_CHANNEL_RELU : 0) : NULL;
  pn_tensor *tmp[3] = {scale, ms, shift};
  unref_all(tmp, 3);
  return y;
}

/* running = (1-m)*running + m*k*batch, in place. */
static pn_status update_running(pn_tensor *running, pn_tensor *batch, double m, double k) {
  pn_op_params p = params_kind(0);
  p.alpha = 1.0 - m;
  p.beta = m * k;
  pn_tensor *in[2] = {running, batch};
  return pn_op_run_inplace(PN_OP_AXPBY, &p, in, 2, 1u);
}

static int bn_train_stats(pn_tensor *x, pn_tensor *rm, pn_tensor *rv, double momentum, double eps,
                          int64_t count, bn_stats *st) {
  int64_t dims[2] = {2, x->shape[1]};
  pn_shape s = pn_shape_make(2, dims);
  pn_op_params p = params_kind(0);
  pn_tensor *stats = pni_run_op(PN_OP_CHANNEL_STATS, &p, &x, 1, &s, PN_F32, "channel_stats");
  pn_tensor *var = stats ? row_view(stats, 1) : NULL;
  st->mean = stats ? row_view(stats, 0) : NULL;
  st->invstd = var ? inv_std(var, eps) : NULL;
  int ok = st->mean && st->invstd;
  /* The running variance is the unbiased one: n/(n-1) times the batch's. */
  if (ok && rm) ok = update_running(rm, st->mean, momentum, 1.0) == PN_OK;
  if (ok && rv)
    ok = update_running(rv, var, momentum, (double)count / (double)(count - 1)) == PN_OK;
  pn_tensor_unref(var);
  pn_tensor_unref(stats);
  return ok;
}

static int bn_eval_stats(pn_tensor *rm, pn_tensor *rv, double eps, bn_stats *st) {
  /* A copy: a later training step may update the running mean in place
   * before this op's backward runs. */
  st->mean = pn_copy(rm);
  st->invstd = inv_std(rv, eps);
  return st->mean && st->invstd;
}

/* dx = a*dy + b + k*x per channel, the whole of batch-norm's input gradient
 * in training: a = w*invstd, k = -a*invstd^2*sum(dy*(x-mean))/M and
 * b = -a*sum(dy)/M - k*mean. With a ReLU after it, dy is masked by the
 * ReLU's output `mask` (NULL without). */
static pn_tensor *bn_dx_training(pn_tensor *g, pn_tensor *x, pn_tensor *a, pn_tensor *sdy,
                                 pn_tensor *sdyx, const bn_stats *st, double count,
                                 pn_tensor *mask) {
  pn_tensor *i2 = pn_mul(st->invstd, st->invstd);
  pn_tensor *ai2 = i2 ? pn_mul(a, i2) : NULL;
  pn_tensor *t = ai2 ? pn_mul(ai2, sdyx) : NULL;
  pn_tensor *k = t ? pn_scale(t, -1.0 / count) : NULL;
  pn_tensor *km = k ? pn_mul(k, st->mean) : NULL;
  pn_tensor *as = km ? pn_mul(a, sdy) : NULL;
  pn_tensor *as_m = as ? pn_scale(as, -1.0 / count) : NULL;
  pn_tensor *b = as_m ? pn_sub(as_m, km) : NULL;
  pn_tensor *in[6] = {g, a, b, x, k, mask};
  pn_tensor *dx = b ? channel_affine(in, mask ? 6 : 5, x, mask ? PN_CHANNEL_MASK : 0) : NULL;
  pn_tensor *tmp[8] = {i2, ai2, t, k, km, as, as_m, b};
  unref_all(tmp, 8);
  return dx;
}

static pn_tensor *bn_dx_eval(pn_tensor *g, pn_tensor *a, pn_tensor *mask) {
  pn_tensor *zero = pn_zeros_like(a);
  pn_tensor *in[4] = {g, a, zero, mask};
  pn_tensor *dx = zero ? channel_affine(in, mask ? 4 : 3, g, mask ? PN_CHANNEL_MASK : 0) : NULL;
  pn_tensor_unref(zero);
  return dx;
}

static pn_status bn_backward(const pn_backward_ctx *c, pn_tensor *g, pn_tensor **gin) {
  const pn_op_params *p = c->params;
  int flags = p->kind, wi = 1, bi = (flags & BN_WEIGHT) ? 2 : 1;
  pn_tensor *x = c->in[0], *w = (flags & BN_WEIGHT) ? c->in[wi] : NULL;
  bn_stats st = {c->saved[0], c->saved[1]};
  pn_tensor *mask = (flags & BN_RELU) ? c->out : NULL;
  if ((flags & BN_RELU) && !mask)
    return pn_error(PN_ERR_INTERNAL, "batch_norm_relu: the output is gone before the backward");
  int64_t dims[2] = {2, x->shape[1]};
  pn_shape s = pn_shape_make(2, dims);
  pn_op_params q = params_kind(mask ? PN_CHANNEL_MASK : 0);
  pn_tensor *in[4] = {g, x, st.mean, mask};
  pn_tensor *gs = pni_run_op(PN_OP_CHANNEL_GRAD_STATS, &q, in, mask ? 4 : 3, &s, PN_F32,
                             "channel_grad_stats");
  pn_tensor *sdy = gs ? row_view(gs, 0) : NULL;
  pn_tensor *sdyx = gs ? row_view(gs, 1) : NULL;
  pn_tensor *a = !sdyx ? NULL : w ? pn_mul(w, st.invstd) : pn_tensor_ref(st.invstd);
  pn_status rc = a ? PN_OK : PN_ERR_INTERNAL;
  if (rc == PN_OK && c->needs_grad[0]) {
    gin[0] = (flags & BN_TRAINING) ? bn_dx_training(g, x, a, sdy, sdyx, &st, p->alpha, mask)
                                   : bn_dx_eval(g, a, mask);
    if (!gin[0]) rc = PN_ERR_INTERNAL;
  }
  if (rc == PN_OK && (flags & BN_WEIGHT) && c->needs_grad[wi]) {
    gin[wi] = pn_mul(sdyx, st.invstd);
    if (!gin[wi]) rc = PN_ERR_INTERNAL;
  }
  if (rc == PN_OK && (flags & BN_BIAS) && c->needs_grad[bi]) {
    gin[bi] = pn_copy(sdy);
    if (!gin[bi]) rc = PN_ERR_INTERNAL;
  }
  pn_tensor *tmp[4] = {gs, sdy, sdyx, a};
  unref_all(tmp, 4);
  return rc;
}

/* v is NULL (not given) or an f32 [c] tensor. */
static int bn_vector_ok(pn_tensor *v, int64_t c, const char *what) {
  if (!v) return 1;
  if (v->dtype != PN_F32 || v->ndim != 1 || v->shape[0] != c) {
    char sb[96];
    pn_shape s = pn_tensor_shape(v);
    pn_error(PN_ERR_SHAPE, "batch_norm: %s must be an f32 [%lld] tensor (one per channel), got %s %s",
             what, (long long)c, pn_dtype_name(v->dtype), pn_shape_str(&s, sb, sizeof sb));
    return 0;
  }
  return 1;
}

static int bn_check(pn_tensor *x, pn_tensor *w, pn_tensor *b, pn_tensor *rm, pn_tensor *rv,
                    int training, int64_t *count) {
  if (!pni_require_f32(x, "batch_norm")) return 0;
  if (x->ndim < 2) {
    pni_fail_shape("batch_norm", x, NULL, "needs [N,C] or [N,C,...] input");
    return 0;
  }
  int64_t c = x->shape[1];
  if (!bn_vector_ok(w, c, "weight") || !bn_vector_ok(b, c, "bias") ||
      !bn_vector_ok(rm, c, "running_mean") || !bn_vector_ok(rv, c, "running_var"))
    return 0;
  *count = c ? pn_tensor_numel(x) / c : 0;
  if (training && *count < 2) {
    pni_fail_shape("batch_norm", x, NULL,
                   "training needs more than one value per channel (batch of one, 1x1 input?)");
    return 0;
  }
  if (!training && (!rm || !rv)) {
    pn_error(PN_ERR_INVALID, "batch_norm: evaluation needs running_mean and running_var");
    return 0;
  }
  return 1;
}

static pn_tensor *bn_run(pn_tensor *x, pn_tensor *weight, pn_tensor *bias,
                         pn_tensor *running_mean, pn_tensor *running_var, int training,
                         double momentum, double eps, int relu) {
  int64_t count = 0;
  if (!x || !bn_check(x, weight, bias, running_mean, running_var, training, &count)) return NULL;
  if (!(eps >= 0.0)) return fail(PN_ERR_INVALID, "batch_norm", "eps must be non-negative");
  int was = pn_set_grad_enabled(0);
  bn_stats st = {NULL, NULL};
  int ok = training ? bn_train_stats(x, running_mean, running_var, momentum, eps, count, &st)
                    : bn_eval_stats(running_mean, running_var, eps, &st);
  pn_tensor *y = ok ? bn_normalise(x, weight, bias, &st, relu) : NULL;
  pn_set_grad_enabled(was);
  pn_op_params p = params_kind((weight ? BN_WEIGHT : 0) | (bias ? BN_BIAS : 0) |
                               (training ? BN_TRAINING : 0) | (relu ? BN_RELU : 0));
  p.alpha = (double)count;
  pn_tensor *in[3] = {x, NULL, NULL};
  int n = 1;
  if (weight) in[n++] = weight;
  if (bias) in[n++] = bias;
  pn_tensor *saved[2] = {st.mean, st.invstd};
  /* with the ReLU, the output is its mask in the backward */
  y = pni_record(relu ? "batch_norm_relu" : "batch_norm", in, n, y, bn_backward, saved, 2, &p,
                 relu);
  unref_all(saved, 2);
  return y;
}

pn_tensor *pn_batch_norm(pn_tensor *x, pn_tensor *weight, pn_tensor *bias,
                         pn_tensor *running_mean, pn_tensor *running_var, int training,
                         double momentum, double eps) {
  return bn_run(x, weight, bias, running_mean, running_var, training, momentum, eps, 0);
}

/* pn_relu(pn_batch_norm(...)) in one pass forward and one backward. */
pn_tensor *pn_batch_norm_relu(pn_tensor *x, pn_tensor *weight, pn_tensor *bias,
                              pn_tensor *running_mean, pn_tensor *running_var, int training,
                              double momentum, double eps) {
  return bn_run(x, weight, bias, running_mean, running_var, training, momentum, eps, 1);
}

/* ------------------------------------------------------------ concat */

/* t[..., start:start+len, ...] along axis, as a new contiguous tensor. */
static pn_tensor *slice_axis(pn_tensor *t, int axis, int64_t start, int64_t len) {
  pn_tensor *src = pn_contiguous(t);
  pn_tensor *v = src ? pn_tensor_view(src, src->ndim, src->shape) : NULL;
  pn_tensor_unref(src);
  if (!v) return NULL;
  v->offset += start * v->stride[axis];
  v->shape[axis] = len;
  pn_tensor *r = pn_copy(v);
  pn_tensor_unref(v);
  return r;
}

static pn_status concat_backward(const pn_backward_ctx *c, pn_tensor *g, pn_tensor **gin) {
  const pn_op_params *p = c->params;
  int64_t at = 0;
  for (int i = 0; i < c->n_in; i++) {
    int64_t len = c->in[i]->shape[p->axis];
    if (c->needs_grad[i]) {
      gin[i] = slice_axis(g, p->axis, at, len);
      if (!gin[i]) return PN_ERR_INTERNAL;
    }
    at += len;
  }
  return PN_OK;
}

static int concat_shape(pn_tensor *const *xs, int n, int axis, pn_shape *out) {
  *out = pn_tensor_shape(xs[0]);
  for (int i = 1; i < n; i++) {
    int same = xs[i]->ndim == xs[0]->ndim;
    for (int d = 0; same && d < xs[0]->ndim; d++)
      same = d == axis || xs[i]->shape[d] == xs[0]->shape[d];
    if (!same) {
      char why[96];
      snprintf(why, sizeof why, "input %d differs from input 0 outside axis %d", i, axis);
      pni_fail_shape("concat", xs[0], xs[i], why);
      return 0;
    }
    out->dim[axis] += xs[i]->shape[axis];
  }
  return 1;
}

pn_tensor *pn_concat(pn_tensor *const *xs, int n, int axis) {
  if (!xs || n < 1 || n > PN_OP_MAX_INPUTS) {
    pn_error(PN_ERR_INVALID, "concat: %d inputs (1 to %d)", n, PN_OP_MAX_INPUTS);
    return NULL;
  }
  if (pni_any_null(xs, n)) return NULL;
  for (int i = 0; i < n; i++)
    if (!pni_require_f32(xs[i], "concat")) return NULL;
  int a = axis < 0 ? axis + xs[0]->ndim : axis;
  if (a < 0 || a >= xs[0]->ndim) {
    pn_error(PN_ERR_SHAPE, "concat: axis %d out of range for %d-D inputs", axis, xs[0]->ndim);
    return NULL;
  }
  pn_shape s;
  if (!concat_shape(xs, n, a, &s)) return NULL;
  pn_op_params p = params_kind(0);
  p.axis = a;
  pn_tensor *out = pni_run_op(PN_OP_CONCAT, &p, xs, n, &s, PN_F32, "concat");
  return pni_record("concat", xs, n, out, concat_backward, NULL, 0, &p, 0);
}

/* ------------------------------------------------------------ clamp */

static pn_tensor *unary_raw(pn_unary_kind k, pn_tensor *x, double lo, double hi) {
  pn_op_params p = params_kind(k);
  p.alpha = lo;
  p.beta = hi;
  pn_shape s = pn_tensor_shape(x);
  return pni_run_op(PN_OP_UNARY, &p, &x, 1, &s, PN_F32, "unary");
}

/* The gradient passes where lo < x < hi only, as ReLU6 (hardtanh) has it. */
static pn_status clamp_backward(const pn_backward_ctx *c, pn_tensor *g, pn_tensor **gin) {
  const pn_op_params *p = c->params;
  pn_tensor *mask = unary_raw(PN_UNARY_INSIDE, c->in[0], p->alpha, p->beta);
  gin[0] = mask ? pn_mul(g, mask) : NULL;
  pn_tensor_unref(mask);
  return gin[0] ? PN_OK : PN_ERR_INTERNAL;
}

pn_tensor *pn_clamp(pn_tensor *x, double lo, double hi) {
  if (!x || !pni_require_f32(x, "clamp")) return NULL;
  if (isnan(lo) || isnan(hi)) return fail(PN_ERR_INVALID, "clamp", "bounds must not be NaN");
  pn_tensor *out = unary_raw(PN_UNARY_CLAMP, x, lo, hi);
  pn_op_params p = params_kind(PN_UNARY_CLAMP);
  p.alpha = lo;
  p.beta = hi;
  return pni_record("clamp", &x, 1, out, clamp_backward, NULL, 0, &p, 0);
}
