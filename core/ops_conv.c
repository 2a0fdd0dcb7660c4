/* The math API of convolution: pn_conv2d, its shape rules and its backward
 * (conv2d_grad_input, conv2d_grad_weight, and a sum for the bias). */
#include <string.h>

#include <plugnet/ops.h>

#include "internal.h"

/* Sets the shape error and returns 0 (false), for the checks below. */
static int conv_fail(const char *why, const pn_tensor *t) {
  pni_fail_shape("conv2d", t, NULL, why);
  return 0;
}

static int valid_geometry(const pn_conv2d_params *p) {
  for (int i = 0; i < 2; i++) {
    const char *dim = i ? "width" : "height";
    if (p->stride[i] < 1) {
      pn_error(PN_ERR_INVALID, "conv2d: stride %d for the %s must be >= 1", p->stride[i], dim);
      return 0;
    }
    if (p->dilation[i] < 1) {
      pn_error(PN_ERR_INVALID, "conv2d: dilation %d for the %s must be >= 1", p->dilation[i], dim);
      return 0;
    }
    if (p->padding[i] < 0) {
      pn_error(PN_ERR_INVALID, "conv2d: padding %d for the %s must be >= 0", p->padding[i], dim);
      return 0;
    }
  }
  if (p->groups < 1) {
    pn_error(PN_ERR_INVALID, "conv2d: groups %d must be >= 1", p->groups);
    return 0;
  }
  return 1;
}

/* PyTorch's rule: floor((in + 2p - d(k-1) - 1) / s) + 1, and at least 1. */
static int64_t out_size(int64_t in, int64_t k, const pn_conv2d_params *p, int i) {
  int64_t span = (int64_t)p->dilation[i] * (k - 1) + 1;
  int64_t room = in + 2 * (int64_t)p->padding[i] - span;
  if (room < 0) {
    pn_error(PN_ERR_SHAPE,
             "conv2d: the input %s %lld plus padding 2*%d is smaller than the dilated kernel "
             "%lld (dilation %d, kernel %lld): the output would be empty",
             i ? "width" : "height", (long long)in, p->padding[i], (long long)span, p->dilation[i],
             (long long)k);
    return -1;
  }
  return room / p->stride[i] + 1;
}

static int check_shapes(const pn_tensor *x, const pn_tensor *w, const pn_tensor *b,
                        const pn_conv2d_params *p) {
  if (x->ndim != 4) return conv_fail("input must be 4-D [N,C,H,W]", x);
  if (w->ndim != 4) return conv_fail("weight must be 4-D [O,C/groups,KH,KW]", w);
  int64_t c = x->shape[1], o = w->shape[0];
  if (c % p->groups || o % p->groups) {
    pn_error(PN_ERR_SHAPE,
             "conv2d: groups %d must divide the input channels %lld and the output channels "
             "%lld",
             p->groups, (long long)c, (long long)o);
    return 0;
  }
  if (w->shape[1] * p->groups != c) {
    char sx[96], sw[96];
    pn_shape a = pn_tensor_shape(x), bw = pn_tensor_shape(w);
    pn_error(PN_ERR_SHAPE,
             "conv2d: weight %s expects %lld input channels (%lld per group x %d groups), "
             "input %s has %lld",
             pn_shape_str(&bw, sw, sizeof sw), (long long)(w->shape[1] * p->groups),
             (long long)w->shape[1], p->groups, pn_shape_str(&a, sx, sizeof sx), (long long)c);
    return 0;
  }
  if (b && (b->ndim != 1 || b->shape[0] != o)) {
    char sb[96];
    pn_shape s = pn_tensor_shape(b);
    pn_error(PN_ERR_SHAPE, "conv2d: bias must be [%lld] (one per output channel), got %s",
             (long long)o, pn_shape_str(&s, sb, sizeof sb));
    return 0;
  }
  return 1;
}

static pn_status conv2d_backward(const pn_backward_ctx *c, pn_tensor *g, pn_tensor **gin) {
  const pn_op_params *p = c->params;
  pn_tensor *x = c->in[0], *w = c->in[1];
  if (c->needs_grad[0]) {
    pn_tensor *in[2] = {g, w};
    pn_shape s = pn_tensor_shape(x);
    gin[0] = pni_run_op(PN_OP_CONV2D_GRAD_INPUT, p, in, 2, &s, PN_F32, "conv2d_grad_input");
    if (!gin[0]) return PN_ERR_INTERNAL;
  }
  if (c->needs_grad[1]) {
    pn_tensor *in[2] = {g, x};
    pn_shape s = pn_tensor_shape(w);
    gin[1] = pni_run_op(PN_OP_CONV2D_GRAD_WEIGHT, p, in, 2, &s, PN_F32, "conv2d_grad_weight");
    if (!gin[1]) return PN_ERR_INTERNAL;
  }
  if (c->n_in > 2 && c->needs_grad[2]) {
    gin[2] = pn_sum(g, 1u | 4u | 8u, 0); /* over N, H and W: one per output channel */
    if (!gin[2]) return PN_ERR_INTERNAL;
  }
  return PN_OK;
}

pn_tensor *pn_conv2d(pn_tensor *x, pn_tensor *w, pn_tensor *b, const pn_conv2d_params *p) {
  pn_tensor *in[3] = {x, w, b};
  int n = b ? 3 : 2;
  if (pni_any_null(in, 2)) return NULL;
  if (!p) {
    pn_error(PN_ERR_INVALID, "conv2d: no geometry given (pn_conv2d_params is NULL)");
    return NULL;
  }
  for (int i = 0; i < n; i++)
    if (!pni_require_f32(in[i], "conv2d")) return NULL;
  if (!valid_geometry(p) || !check_shapes(x, w, b, p)) return NULL;
  int64_t oh = out_size(x->shape[2], w->shape[2], p, 0);
  int64_t ow = oh < 0 ? -1 : out_size(x->shape[3], w->shape[3], p, 1);
  if (oh < 0 || ow < 0) return NULL;
  int64_t dims[4] = {x->shape[0], w->shape[0], oh, ow};
  pn_shape s = pn_shape_make(4, dims);
  pn_op_params op;
  memset(&op, 0, sizeof op);
  pn_conv2d_params_pack(p, &op);
  pn_tensor *out = pni_run_op(PN_OP_CONV2D, &op, in, n, &s, PN_F32, "conv2d");
  return pni_record("conv2d", in, n, out, conv2d_backward, NULL, 0, &op, 0);
}
