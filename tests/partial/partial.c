/* A test backend that implements only fill and copy, so every other op must
 * fall back to another backend. */
#include <stdlib.h>
#include <string.h>

#include <plugnet/plugin.h>

static void *p_alloc(void *ctx, size_t n) {
  (void)ctx;
  return malloc(n);
}
static void p_free(void *ctx, void *m) {
  (void)ctx;
  free(m);
}
static void *p_host(void *ctx, void *m) {
  (void)ctx;
  return m;
}

static const pn_device_iface iface = {
    .size = sizeof(pn_device_iface), .alloc = p_alloc, .free = p_free, .host_ptr = p_host};

static pn_status fill(void *ctx, const pn_op_args *a) {
  (void)ctx;
  if (a->out->dtype != PN_F32) return PN_ERR_UNSUPPORTED;
  float *o = pn_tensor_data(a->out);
  for (int64_t i = 0; i < pn_tensor_numel(a->out); i++) o[i] = (float)a->p.alpha;
  return PN_OK;
}

static pn_status copy(void *ctx, const pn_op_args *a) {
  (void)ctx;
  const pn_tensor *x = a->in[0];
  if (x->dtype != PN_F32 || a->out->dtype != PN_F32 || x->ndim > 2) return PN_ERR_UNSUPPORTED;
  const float *src = pn_tensor_data(x);
  float *dst = pn_tensor_data(a->out);
  int64_t rows = x->ndim == 2 ? x->shape[0] : 1, cols = x->ndim ? x->shape[x->ndim - 1] : 1;
  int64_t rs = x->ndim == 2 ? x->stride[0] : 0, cs = x->ndim ? x->stride[x->ndim - 1] : 1;
  for (int64_t r = 0; r < rows; r++)
    for (int64_t c = 0; c < cols; c++) dst[r * cols + c] = src[r * rs + c * cs];
  return PN_OK;
}

static pn_status init(pn_plugin_ctx *ctx) {
  PN_TRY(pn_plugin_add_device(ctx, "partial", "partial", &iface, NULL));
  PN_TRY(pn_plugin_add_kernel(ctx, "partial", "fill", fill));
  return pn_plugin_add_kernel(ctx, "partial", "copy", copy);
}

PN_PLUGIN_DEFINE("partial", "0.1.0", init, NULL);
