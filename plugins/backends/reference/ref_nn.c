/* The reference backend's pooling, channel-statistics, concatenation and
 * axpby kernels: plain loops, accumulating in double, written to mirror
 * PyTorch's definitions line by line (they are the oracle). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ref_kernels.h"

static pn_status not_f32(const pn_op_args *a, const pn_tensor *t) {
  return pn_error(PN_ERR_UNSUPPORTED, "reference: op %s: dtype %s not supported",
                  pn_op_name(a->op), pn_dtype_name(t->dtype));
}

static pn_status all_f32(const pn_op_args *a) {
  for (int i = 0; i < a->n_in; i++)
    if (a->in[i]->dtype != PN_F32) return not_f32(a, a->in[i]);
  if (a->out && a->out->dtype != PN_F32) return not_f32(a, a->out);
  return PN_OK;
}

static pn_status bad_shape(const pn_op_args *a, const char *why) {
  return pn_error(PN_ERR_SHAPE, "reference: op %s: %s", pn_op_name(a->op), why);
}

static const float *f32_in(const pn_op_args *a, int i) { return pn_tensor_data(a->in[i]); }

/* ------------------------------------------------------------ pooling */

/* One pooling window, clipped to the input, and the avg divisor. */
typedef struct window {
  int64_t h0, h1, w0, w1;
  double divisor;
} window;

static int is_adaptive(int kind) {
  return kind == PN_POOL_ADAPTIVE_MAX || kind == PN_POOL_ADAPTIVE_AVG;
}

static int is_max(int kind) { return kind == PN_POOL_MAX || kind == PN_POOL_ADAPTIVE_MAX; }

/* Adaptive: [floor(i*in/out), ceil((i+1)*in/out)). */
static void adaptive_range(int64_t i, int64_t in, int64_t out, int64_t *b, int64_t *e) {
  *b = i * in / out;
  *e = ((i + 1) * in + out - 1) / out;
}

/* Fixed: the padded window [i*s - pad, +k) cut at in + pad for the divisor
 * with padding (a ceil_mode window's overhang never counts), then at the
 * input's edges. */
static void fixed_range(int64_t i, int64_t in, int k, int s, int pad, int64_t *b, int64_t *e,
                        int64_t *padded) {
  int64_t start = i * s - pad, end = start + k;
  if (end > in + pad) end = in + pad;
  *padded = end - start;
  *b = start < 0 ? 0 : start;
  *e = end > in ? in : end;
}

static window pool_window(const pn_op_params *p, int64_t H, int64_t W, int64_t OH, int64_t OW,
                          int64_t oh, int64_t ow) {
  window w;
  if (is_adaptive(p->kind)) {
    adaptive_range(oh, H, OH, &w.h0, &w.h1);
    adaptive_range(ow, W, OW, &w.w0, &w.w1);
    w.divisor = (double)((w.h1 - w.h0) * (w.w1 - w.w0));
    return w;
  }
  pn_pool2d_params g = pn_pool2d_params_unpack(p);
  int64_t ph, pw;
  fixed_range(oh, H, g.kernel[0], g.stride[0], g.padding[0], &w.h0, &w.h1, &ph);
  fixed_range(ow, W, g.kernel[1], g.stride[1], g.padding[1], &w.w0, &w.w1, &pw);
  w.divisor = g.count_include_pad ? (double)(ph * pw) : (double)((w.h1 - w.h0) * (w.w1 - w.w0));
  return w;
}

/* Index in the plane of the window's maximum: the first one, or the last
 * NaN (PyTorch's scan: replace when greater or NaN). -1 if empty. */
static int64_t window_argmax(const float *x, int64_t W, const window *w) {
  int64_t best = -1;
  float m = -INFINITY;
  for (int64_t h = w->h0; h < w->h1; h++)
    for (int64_t c = w->w0; c < w->w1; c++) {
      float v = x[h * W + c];
      if (best < 0 || v > m || isnan(v)) {
        best = h * W + c;
        m = v;
      }
    }
  return best;
}

static double window_sum(const float *x, int64_t W, const window *w) {
  double s = 0.0;
  for (int64_t h = w->h0; h < w->h1; h++)
    for (int64_t c = w->w0; c < w->w1; c++) s += x[h * W + c];
  return s;
}

static pn_status pool_shapes(const pn_op_args *a, const pn_tensor *x, const pn_tensor *y) {
  if (x->ndim != 4 || y->ndim != 4 || x->shape[0] != y->shape[0] || x->shape[1] != y->shape[1])
    return bad_shape(a, "input and output must be [N,C,H,W] with equal N and C");
  if (a->p.kind < 0 || a->p.kind >= PN_POOL_COUNT) return bad_shape(a, "unknown pool kind");
  return PN_OK;
}

pn_status pni_ref_pool2d(void *dctx, const pn_op_args *a) {
  (void)dctx;
  PN_TRY(all_f32(a));
  const pn_tensor *x = a->in[0];
  pn_tensor *y = a->out;
  PN_TRY(pool_shapes(a, x, y));
  int64_t planes = x->shape[0] * x->shape[1], H = x->shape[2], W = x->shape[3];
  int64_t OH = y->shape[2], OW = y->shape[3];
  const float *xp = f32_in(a, 0);
  float *yp = pn_tensor_data(y);
  for (int64_t pl = 0; pl < planes; pl++) {
    const float *xs = xp + pl * H * W;
    for (int64_t oh = 0; oh < OH; oh++)
      for (int64_t ow = 0; ow < OW; ow++) {
        window w = pool_window(&a->p, H, W, OH, OW, oh, ow);
        float v;
        if (is_max(a->p.kind)) {
          int64_t i = window_argmax(xs, W, &w);
          v = i < 0 ? -INFINITY : xs[i];
        } else {
          v = w.h1 > w.h0 && w.w1 > w.w0 ? (float)(window_sum(xs, W, &w) / w.divisor) : 0.0f;
        }
        yp[(pl * OH + oh) * OW + ow] = v;
      }
  }
  return PN_OK;
}

/* in: dy, x -> dx. Max sends each dy to its window's argmax; avg spreads
 * dy / divisor over the clipped window. */
pn_status pni_ref_pool2d_grad(void *dctx, const pn_op_args *a) {
  (void)dctx;
  PN_TRY(all_f32(a));
  const pn_tensor *dy = a->in[0], *x = a->in[1];
  pn_tensor *dx = a->out;
  PN_TRY(pool_shapes(a, x, dy));
  if (pn_tensor_numel(dx) != pn_tensor_numel(x)) return bad_shape(a, "dx must be shaped like x");
  int64_t planes = x->shape[0] * x->shape[1], H = x->shape[2], W = x->shape[3];
  int64_t OH = dy->shape[2], OW = dy->shape[3];
  const float *dyp = f32_in(a, 0), *xp = f32_in(a, 1);
  float *dxp = pn_tensor_data(dx);
  double *acc = malloc(sizeof *acc * (size_t)(H * W));
  if (!acc) return pn_error(PN_ERR_NOMEM, "reference: pool2d_grad: out of memory");
  for (int64_t pl = 0; pl < planes; pl++) {
    const float *xs = xp + pl * H * W;
    memset(acc, 0, sizeof *acc * (size_t)(H * W));
    for (int64_t oh = 0; oh < OH; oh++)
      for (int64_t ow = 0; ow < OW; ow++) {
        window w = pool_window(&a->p, H, W, OH, OW, oh, ow);
        double g = dyp[(pl * OH + oh) * OW + ow];
        if (is_max(a->p.kind)) {
          int64_t i = window_argmax(xs, W, &w);
          if (i >= 0) acc[i] += g;
          continue;
        }
        for (int64_t h = w.h0; h < w.h1; h++)
          for (int64_t c = w.w0; c < w.w1; c++) acc[h * W + c] += g / w.divisor;
      }
    for (int64_t i = 0; i < H * W; i++) dxp[pl * H * W + i] = (float)acc[i];
  }
  free(acc);
  return PN_OK;
}

/* ------------------------------------------------------------ channel ops */

/* x [N,C,...] seen as N x C planes of `len` values. */
typedef struct planes {
  int64_t n, c, len;
} planes;

static planes planes_of(const pn_tensor *x) {
  planes p = {x->ndim > 0 ? x->shape[0] : 1, x->ndim > 1 ? x->shape[1] : 1, 1};
  for (int d = 2; d < x->ndim; d++) p.len *= x->shape[d];
  return p;
}

static pn_status check_nc(const pn_op_args *a, const pn_tensor *x) {
  if (x->ndim < 2) return bad_shape(a, "needs an [N,C,...] input");
  return PN_OK;
}

static pn_status check_vec(const pn_op_args *a, const pn_tensor *v, int64_t c) {
  if (pn_tensor_numel(v) != c) return bad_shape(a, "per-channel input must have C elements");
  return PN_OK;
}

pn_status pni_ref_channel_stats(void *dctx, const pn_op_args *a) {
  (void)dctx;
  PN_TRY(all_f32(a));
  const pn_tensor *x = a->in[0];
  PN_TRY(check_nc(a, x));
  planes g = planes_of(x);
  if (pn_tensor_numel(a->out) != 2 * g.c) return bad_shape(a, "output must be [2,C]");
  const float *xp = f32_in(a, 0);
  float *o = pn_tensor_data(a->out);
  double count = (double)(g.n * g.len);
  for (int64_t c = 0; c < g.c; c++) {
    double s = 0.0, q = 0.0;
    for (int64_t n = 0; n < g.n; n++)
      for (int64_t i = 0; i < g.len; i++) s += xp[(n * g.c + c) * g.len + i];
    double mean = s / count;
    for (int64_t n = 0; n < g.n; n++)
      for (int64_t i = 0; i < g.len; i++) {
        double d = xp[(n * g.c + c) * g.len + i] - mean;
        q += d * d;
      }
    o[c] = (float)mean;
    o[g.c + c] = (float)(q / count);
  }
  return PN_OK;
}

/* in: x, a, b (, y, c): out = a[c]*x + b[c] (+ c[c]*y). */
/* The mask input of kind PN_CHANNEL_MASK (the last), or NULL. */
static pn_status channel_mask(const pn_op_args *a, int64_t total, int plain_in,
                              const float **m) {
  *m = NULL;
  if (a->p.kind < 0 || a->p.kind >= PN_CHANNEL_COUNT) return bad_shape(a, "unknown channel kind");
  if (a->p.kind != PN_CHANNEL_MASK) return PN_OK;
  if (a->n_in != plain_in + 1 || pn_tensor_numel(a->in[plain_in]) != total)
    return bad_shape(a, "the mask must be a last input shaped like x");
  *m = f32_in(a, plain_in);
  return PN_OK;
}

pn_status pni_ref_channel_affine(void *dctx, const pn_op_args *a) {
  (void)dctx;
  PN_TRY(all_f32(a));
  int masked = a->p.kind == PN_CHANNEL_MASK, plain_in = a->n_in - masked;
  if (plain_in != 3 && plain_in != 5) return bad_shape(a, "needs 3 or 5 inputs (+1 mask)");
  const pn_tensor *x = a->in[0];
  PN_TRY(check_nc(a, x));
  planes g = planes_of(x);
  int64_t total = pn_tensor_numel(x);
  const float *mp;
  PN_TRY(channel_mask(a, total, plain_in, &mp));
  PN_TRY(check_vec(a, a->in[1], g.c));
  PN_TRY(check_vec(a, a->in[2], g.c));
  if (pn_tensor_numel(a->out) != total) return bad_shape(a, "output must be shaped like x");
  int has_y = plain_in == 5;
  if (has_y) {
    if (pn_tensor_numel(a->in[3]) != total) return bad_shape(a, "y must be shaped like x");
    PN_TRY(check_vec(a, a->in[4], g.c));
  }
  const float *xp = f32_in(a, 0), *sa = f32_in(a, 1), *sb = f32_in(a, 2);
  const float *yp = has_y ? f32_in(a, 3) : NULL, *sc = has_y ? f32_in(a, 4) : NULL;
  float *o = pn_tensor_data(a->out);
  for (int64_t n = 0; n < g.n; n++)
    for (int64_t c = 0; c < g.c; c++)
      for (int64_t i = 0; i < g.len; i++) {
        int64_t k = (n * g.c + c) * g.len + i;
        double v = (!mp || mp[k] > 0.0f ? (double)sa[c] * xp[k] : 0.0) + sb[c];
        if (has_y) v += (double)sc[c] * yp[k];
        if (a->p.kind == PN_CHANNEL_RELU && !(v > 0.0)) v = 0.0;
        o[k] = (float)v;
      }
  return PN_OK;
}

/* in: dy, x, mean (, mask) -> [2,C]: sum(dy), sum(dy*(x - mean)) per
 * channel, dy counting only where the mask is > 0. */
pn_status pni_ref_channel_grad_stats(void *dctx, const pn_op_args *a) {
  (void)dctx;
  PN_TRY(all_f32(a));
  const pn_tensor *dy = a->in[0], *x = a->in[1];
  PN_TRY(check_nc(a, x));
  planes g = planes_of(x);
  if (pn_tensor_numel(dy) != pn_tensor_numel(x)) return bad_shape(a, "dy must be shaped like x");
  if (a->p.kind == PN_CHANNEL_RELU) return bad_shape(a, "kind relu is for channel_affine");
  const float *mp;
  PN_TRY(channel_mask(a, pn_tensor_numel(x), 3, &mp));
  PN_TRY(check_vec(a, a->in[2], g.c));
  if (pn_tensor_numel(a->out) != 2 * g.c) return bad_shape(a, "output must be [2,C]");
  const float *dyp = f32_in(a, 0), *xp = f32_in(a, 1), *mean = f32_in(a, 2);
  float *o = pn_tensor_data(a->out);
  for (int64_t c = 0; c < g.c; c++) {
    double s = 0.0, sx = 0.0;
    for (int64_t n = 0; n < g.n; n++)
      for (int64_t i = 0; i < g.len; i++) {
        int64_t k = (n * g.c + c) * g.len + i;
        if (mp && !(mp[k] > 0.0f)) continue;
        s += dyp[k];
        sx += (double)dyp[k] * ((double)xp[k] - mean[c]);
      }
    o[c] = (float)s;
    o[g.c + c] = (float)sx;
  }
  return PN_OK;
}

/* ------------------------------------------------------------ concat, axpby */

pn_status pni_ref_concat(void *dctx, const pn_op_args *a) {
  (void)dctx;
  PN_TRY(all_f32(a));
  const pn_tensor *o = a->out;
  int axis = a->p.axis;
  if (a->n_in < 1 || axis < 0 || axis >= o->ndim) return bad_shape(a, "axis out of range");
  int64_t outer = 1, inner = 1, along = 0;
  for (int d = 0; d < axis; d++) outer *= o->shape[d];
  for (int d = axis + 1; d < o->ndim; d++) inner *= o->shape[d];
  for (int i = 0; i < a->n_in; i++) {
    const pn_tensor *x = a->in[i];
    if (x->ndim != o->ndim || pn_tensor_numel(x) != outer * inner * x->shape[axis])
      return bad_shape(a, "inputs must match the output outside the axis");
    along += x->shape[axis];
  }
  if (along != o->shape[axis]) return bad_shape(a, "input lengths do not add up to the output");
  float *op = pn_tensor_data(a->out);
  for (int64_t r = 0; r < outer; r++)
    for (int i = 0; i < a->n_in; i++) {
      int64_t chunk = a->in[i]->shape[axis] * inner;
      const float *src = f32_in(a, i) + r * chunk;
      for (int64_t k = 0; k < chunk; k++) *op++ = src[k];
    }
  return PN_OK;
}

/* In place: in[0] = alpha*in[0] + beta*in[1]. */
pn_status pni_ref_axpby(void *dctx, const pn_op_args *a) {
  (void)dctx;
  PN_TRY(all_f32(a));
  if (a->n_in != 2 || !(a->written & 1u)) return bad_shape(a, "needs 2 inputs, the first written");
  int64_t n = pn_tensor_numel(a->in[0]);
  if (pn_tensor_numel(a->in[1]) != n) return bad_shape(a, "inputs differ in size");
  float *y = pn_tensor_data(a->in[0]);
  const float *x = f32_in(a, 1);
  for (int64_t i = 0; i < n; i++) y[i] = (float)(a->p.alpha * y[i] + a->p.beta * x[i]);
  return PN_OK;
}
