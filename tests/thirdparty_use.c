/* Run by thirdparty.sh with PLUGNET_PLUGIN_PATH naming the directory where
 * it built the third-party `doubler` plugin: creates the layer, runs it
 * forward and backward and checks y = 2x and dy/dx = 2. Exit 0 on success. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include <plugnet/plugnet.h>

static int fail(const char *what) {
  fprintf(stderr, "thirdparty_use: %s: %s\n", what, pn_last_error());
  return 1;
}

static int check(pn_tensor *x, pn_tensor *y) {
  const float xs[6] = {-1.5f, 0.0f, 0.25f, 2.0f, 3.0f, -7.0f};
  for (int i = 0; i < 6; i++)
    if (fabsf(pn_tensor_get_f32(y, i) - 2.0f * xs[i]) > 1e-6f) {
      fprintf(stderr, "thirdparty_use: y[%d] = %g, expected %g\n", i, pn_tensor_get_f32(y, i),
              2.0 * xs[i]);
      return 1;
    }
  pn_tensor *loss = pn_sum_all(y);
  if (!loss || pn_backward(loss, NULL) != PN_OK) return fail("backward");
  pn_tensor_unref(loss);
  const pn_tensor *g = pn_tensor_grad(x);
  if (!g) return fail("no gradient for x");
  for (int i = 0; i < 6; i++)
    if (fabsf(pn_tensor_get_f32(g, i) - 2.0f) > 1e-6f) {
      fprintf(stderr, "thirdparty_use: dx[%d] = %g, expected 2\n", i, pn_tensor_get_f32(g, i));
      return 1;
    }
  return 0;
}

int main(void) {
  const pn_feature_info *f = pn_registry_find("doubler");
  if (!f) return fail("find");
  printf("doubler from %s (library %s)\n", f->manifest->path, f->manifest->library);
  const int64_t sample[1] = {3}, batch[2] = {2, 3};
  pn_shape in = pn_shape_make(1, sample);
  pn_layer *layer;
  if (pn_layer_create("doubler", "dbl", NULL, &in, 1, &layer) != PN_OK) return fail("create");
  const float xs[6] = {-1.5f, 0.0f, 0.25f, 2.0f, 3.0f, -7.0f};
  pn_tensor *x = pn_tensor_from_host(NULL, PN_F32, 2, batch, xs);
  if (!x) return fail("input");
  pn_tensor_set_requires_grad(x, 1);
  pn_tensor *y;
  if (pn_layer_forward(layer, &x, 1, &y) != PN_OK) return fail("forward");
  int rc = check(x, y);
  pn_tensor_unref(y);
  pn_tensor_unref(x);
  pn_layer_free(layer);
  pn_registry_reset();
  if (rc == 0) printf("thirdparty_use: y = 2x and dx = 2: ok\n");
  return rc;
}
