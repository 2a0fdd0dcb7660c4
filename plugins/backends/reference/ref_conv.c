/* The reference convolution: direct loops over every output (or gradient)
 * element, summed in double. Written as the definition reads, it is the
 * oracle the cpu backend's im2col and GEMM kernels are tested against. */
#include "ref_kernels.h"

/* Sizes of one convolution, from the tensors, plus its geometry. */
typedef struct conv_dims {
  int64_t n, c, h, w; /* input */
  int64_t o, kh, kw;  /* weight [o, c/groups, kh, kw] */
  int64_t oh, ow;     /* output */
  int64_t cg, og;     /* channels per group, in and out */
  pn_conv2d_params p;
} conv_dims;

static pn_status read_dims(const pn_op_args *a, const pn_tensor *x, const pn_tensor *w,
                           const pn_tensor *y, conv_dims *d) {
  for (int i = 0; i <= a->n_in; i++) {
    const pn_tensor *t = i < a->n_in ? a->in[i] : a->out;
    if (t->dtype != PN_F32)
      return pn_error(PN_ERR_UNSUPPORTED, "reference: %s: dtype %s not supported",
                      pn_op_name(a->op), pn_dtype_name(t->dtype));
  }
  if (x->ndim != 4 || w->ndim != 4 || y->ndim != 4)
    return pn_error(PN_ERR_SHAPE, "reference: %s needs 4-D tensors", pn_op_name(a->op));
  d->p = pn_conv2d_params_unpack(&a->p);
  d->n = x->shape[0], d->c = x->shape[1], d->h = x->shape[2], d->w = x->shape[3];
  d->o = w->shape[0], d->kh = w->shape[2], d->kw = w->shape[3];
  d->oh = y->shape[2], d->ow = y->shape[3];
  int g = d->p.groups;
  int bias_ok = a->op != PN_OP_CONV2D || a->n_in < 3 || pn_tensor_numel(a->in[2]) == d->o;
  if (g < 1 || d->c % g || d->o % g || w->shape[1] * g != d->c || y->shape[0] != d->n ||
      y->shape[1] != d->o || !bias_ok)
    return pn_error(PN_ERR_SHAPE, "reference: %s: shapes do not fit", pn_op_name(a->op));
  d->cg = d->c / g;
  d->og = d->o / g;
  return PN_OK;
}

/* Input coordinate read by output coordinate `o` through kernel tap `k`
 * along dimension i (0: height, 1: width); may fall in the padding. */
static int64_t tap(const conv_dims *d, int i, int64_t o, int64_t k) {
  return o * d->p.stride[i] - d->p.padding[i] + k * d->p.dilation[i];
}

static double out_element(const conv_dims *d, const float *x, const float *w, int64_t n, int64_t o,
                          int64_t oy, int64_t ox) {
  int64_t g = o / d->og;
  double s = 0.0;
  for (int64_t ci = 0; ci < d->cg; ci++) {
    int64_t c = g * d->cg + ci;
    for (int64_t ky = 0; ky < d->kh; ky++) {
      int64_t iy = tap(d, 0, oy, ky);
      if (iy < 0 || iy >= d->h) continue;
      for (int64_t kx = 0; kx < d->kw; kx++) {
        int64_t ix = tap(d, 1, ox, kx);
        if (ix < 0 || ix >= d->w) continue;
        s += (double)x[((n * d->c + c) * d->h + iy) * d->w + ix] *
             (double)w[((o * d->cg + ci) * d->kh + ky) * d->kw + kx];
      }
    }
  }
  return s;
}

pn_status pni_ref_conv2d(void *dctx, const pn_op_args *a) {
  (void)dctx;
  conv_dims d;
  PN_TRY(read_dims(a, a->in[0], a->in[1], a->out, &d));
  const float *x = pn_tensor_data(a->in[0]), *w = pn_tensor_data(a->in[1]);
  const float *b = a->n_in > 2 ? pn_tensor_data(a->in[2]) : NULL;
  float *y = pn_tensor_data(a->out);
  for (int64_t n = 0; n < d.n; n++)
    for (int64_t o = 0; o < d.o; o++)
      for (int64_t oy = 0; oy < d.oh; oy++)
        for (int64_t ox = 0; ox < d.ow; ox++) {
          double s = out_element(&d, x, w, n, o, oy, ox) + (b ? (double)b[o] : 0.0);
          y[((n * d.o + o) * d.oh + oy) * d.ow + ox] = (float)s;
        }
  return PN_OK;
}

/* Output coordinate whose tap k reads input coordinate `in`, or -1 when
 * none does (stride skips it, or it lies outside the output). */
static int64_t source(const conv_dims *d, int i, int64_t in, int64_t k, int64_t out_len) {
  int64_t t = in + d->p.padding[i] - k * d->p.dilation[i];
  if (t < 0 || t % d->p.stride[i]) return -1;
  t /= d->p.stride[i];
  return t < out_len ? t : -1;
}

/* dx[n,c,y,x] = sum of dy[n,o,oy,ox] * w[o,c,ky,kx] over every (o, ky, kx)
 * whose tap lands on (y, x): the convolution read backwards. */
static double grad_input_element(const conv_dims *d, const float *dy, const float *w, int64_t n,
                                 int64_t c, int64_t iy, int64_t ix) {
  int64_t g = c / d->cg, ci = c % d->cg;
  double s = 0.0;
  for (int64_t oi = 0; oi < d->og; oi++) {
    int64_t o = g * d->og + oi;
    for (int64_t ky = 0; ky < d->kh; ky++) {
      int64_t oy = source(d, 0, iy, ky, d->oh);
      if (oy < 0) continue;
      for (int64_t kx = 0; kx < d->kw; kx++) {
        int64_t ox = source(d, 1, ix, kx, d->ow);
        if (ox < 0) continue;
        s += (double)dy[((n * d->o + o) * d->oh + oy) * d->ow + ox] *
             (double)w[((o * d->cg + ci) * d->kh + ky) * d->kw + kx];
      }
    }
  }
  return s;
}

pn_status pni_ref_conv2d_grad_input(void *dctx, const pn_op_args *a) {
  (void)dctx;
  conv_dims d;
  PN_TRY(read_dims(a, a->out, a->in[1], a->in[0], &d));
  const float *dy = pn_tensor_data(a->in[0]), *w = pn_tensor_data(a->in[1]);
  float *dx = pn_tensor_data(a->out);
  for (int64_t n = 0; n < d.n; n++)
    for (int64_t c = 0; c < d.c; c++)
      for (int64_t iy = 0; iy < d.h; iy++)
        for (int64_t ix = 0; ix < d.w; ix++)
          dx[((n * d.c + c) * d.h + iy) * d.w + ix] =
              (float)grad_input_element(&d, dy, w, n, c, iy, ix);
  return PN_OK;
}

/* dw[o,ci,ky,kx] = sum over n, oy, ox of dy[n,o,oy,ox] * x[n,c,tap(oy),tap(ox)]. */
static double grad_weight_element(const conv_dims *d, const float *dy, const float *x, int64_t o,
                                  int64_t ci, int64_t ky, int64_t kx) {
  int64_t c = (o / d->og) * d->cg + ci;
  double s = 0.0;
  for (int64_t n = 0; n < d->n; n++)
    for (int64_t oy = 0; oy < d->oh; oy++) {
      int64_t iy = tap(d, 0, oy, ky);
      if (iy < 0 || iy >= d->h) continue;
      for (int64_t ox = 0; ox < d->ow; ox++) {
        int64_t ix = tap(d, 1, ox, kx);
        if (ix < 0 || ix >= d->w) continue;
        s += (double)dy[((n * d->o + o) * d->oh + oy) * d->ow + ox] *
             (double)x[((n * d->c + c) * d->h + iy) * d->w + ix];
      }
    }
  return s;
}

pn_status pni_ref_conv2d_grad_weight(void *dctx, const pn_op_args *a) {
  (void)dctx;
  conv_dims d;
  PN_TRY(read_dims(a, a->in[1], a->out, a->in[0], &d));
  const float *dy = pn_tensor_data(a->in[0]), *x = pn_tensor_data(a->in[1]);
  float *dw = pn_tensor_data(a->out);
  for (int64_t o = 0; o < d.o; o++)
    for (int64_t ci = 0; ci < d.cg; ci++)
      for (int64_t ky = 0; ky < d.kh; ky++)
        for (int64_t kx = 0; kx < d.kw; kx++)
          dw[((o * d.cg + ci) * d.kh + ky) * d.kw + kx] =
              (float)grad_weight_element(&d, dy, x, o, ci, ky, kx);
  return PN_OK;
}
