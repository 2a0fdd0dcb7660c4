/* A third-party layer, built with nothing but an installed plugnet:
 *   cc -shared -fPIC -o doubler.so doubler.c $(pkg-config --cflags --libs plugnet)
 * Its forward is one op from ops.h, so gradients come for free. */
#include <stdlib.h>

#include <plugnet/plugnet.h>

static pn_status build(pn_layer *l, const pn_config *cfg, const pn_shape *in, int n_in,
                       pn_shape *out) {
  if (n_in != 1) return pn_error(PN_ERR_INVALID, "doubler takes one input, not %d", n_in);
  double *factor = malloc(sizeof *factor);
  if (!factor) return pn_error(PN_ERR_NOMEM, "doubler: out of memory");
  *factor = cfg && pn_config_has(cfg, "factor") ? pn_config_float(cfg, "factor") : 2.0;
  pn_layer_set_state(l, factor);
  *out = in[0];
  return PN_OK;
}

static pn_status forward(pn_layer *l, pn_tensor *const *in, int n_in, pn_tensor **out) {
  (void)n_in;
  const double *factor = pn_layer_state(l);
  *out = pn_scale(in[0], *factor);
  return *out ? PN_OK : PN_ERR_INTERNAL;
}

static void destroy(pn_layer *l) {
  free(pn_layer_state(l));
  pn_layer_set_state(l, NULL);
}

static const pn_layer_iface doubler_iface = {sizeof(pn_layer_iface), build, forward, destroy, {0}};

static pn_status init(pn_plugin_ctx *ctx) {
  return pn_plugin_add_layer(ctx, "doubler", &doubler_iface);
}

PN_PLUGIN_DEFINE("doubler", "1.2.3", init, NULL);
