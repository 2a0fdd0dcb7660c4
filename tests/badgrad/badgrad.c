/* A layer whose recorded backward is deliberately wrong: forward computes
 * y = 2x but the backward it records returns 3 * gout. `plugnet gradcheck`
 * must report it as FAILED (tests/gradcheck.sh), proving the check can fail. */
#include <plugnet/plugnet.h>

static pn_status build(pn_layer *l, const pn_config *cfg, const pn_shape *in, int n_in,
                       pn_shape *out) {
  (void)l, (void)cfg;
  if (n_in != 1) return pn_error(PN_ERR_INVALID, "badgrad takes one input, got %d", n_in);
  *out = in[0];
  return PN_OK;
}

static pn_status wrong_backward(const pn_backward_ctx *c, pn_tensor *gout, pn_tensor **gin) {
  (void)c;
  gin[0] = pn_scale(gout, 3.0);
  return gin[0] ? PN_OK : PN_ERR_INTERNAL;
}

static pn_status forward(pn_layer *l, pn_tensor *const *in, int n_in, pn_tensor **out) {
  (void)l;
  int was = pn_set_grad_enabled(0); /* only the wrong backward below is recorded */
  pn_tensor *y = pn_scale(in[0], 2.0);
  pn_set_grad_enabled(was);
  if (!y) return PN_ERR_INTERNAL;
  pn_status s = pn_autograd_record("badgrad", in, n_in, y, wrong_backward, NULL, 0, NULL, 0, 0);
  if (s != PN_OK) {
    pn_tensor_unref(y);
    return s;
  }
  *out = y;
  return PN_OK;
}

static const pn_layer_iface iface = {
    .size = sizeof(pn_layer_iface), .build = build, .forward = forward};

static pn_status init(pn_plugin_ctx *ctx) { return pn_plugin_add_layer(ctx, "badgrad", &iface); }

PN_PLUGIN_DEFINE("badgrad", "0.1.0", init, NULL);
