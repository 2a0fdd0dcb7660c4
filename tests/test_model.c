/* DAG models: named inputs, several outputs, gradients through a residual
 * branch, buffers in the state but not among the parameters, and model
 * files built through pn_model_from_file. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "testutil.h"

static void add_node(pn_model *m, const char *name, const char *feature, const char *pairs,
                     const char *const *inputs, int n_inputs) {
  pn_config *c = tu_config(feature, pairs);
  if (pn_model_add_node(m, name, feature, c, inputs, n_inputs) != PN_OK)
    fail_msg("%s: %s", name, pn_last_error());
  pn_config_free(c);
}

static void set_param(pn_model *m, const char *node, const char *name, const float *v, size_t n) {
  pn_tensor *t = pn_layer_param_by_name(pn_model_layer(m, pn_model_find(m, node)), name);
  assert_non_null(t);
  assert_int_equal(pn_tensor_write(t, v, n * sizeof *v), PN_OK);
}

/* y = relu(W x + b) + x, and the first output is y, the second W x + b. */
static pn_model *residual(void) {
  int64_t d = 2;
  pn_shape in = pn_shape_make(1, &d);
  pn_model *m = NULL;
  assert_int_equal(pn_model_new(&in, &m), PN_OK);
  const char *fc_in[] = {"input"}, *sum_in[] = {"act", "input"};
  add_node(m, "fc", "linear", "out=2", fc_in, 1);
  add_node(m, "act", "relu", NULL, NULL, 0);
  add_node(m, "sum", "add", NULL, sum_in, 2);
  const char *outs[] = {"sum", "fc"};
  assert_int_equal(pn_model_set_outputs(m, outs, 2), PN_OK);
  const float w[4] = {1, 2, -1, 0.5f}, b[2] = {0.5f, -3};
  set_param(m, "fc", "weight", w, 4);
  set_param(m, "fc", "bias", b, 2);
  return m;
}

static void test_residual_forward_and_outputs(void **state) {
  (void)state;
  pn_model *m = residual();
  const int64_t xs[2] = {1, 2};
  const float x[2] = {1, 2};
  pn_tensor *xt = tu_check(pn_tensor_from_host(NULL, PN_F32, 2, xs, x), "x");
  pn_tensor *ys[2] = {NULL, NULL};
  assert_int_equal(pn_model_output_count(m), 2);
  assert_string_equal(pn_model_output_name(m, 1), "fc");
  assert_int_equal(pn_model_forward_all(m, xt, ys), PN_OK);
  float *y0 = tu_host(ys[0]), *y1 = tu_host(ys[1]);
  /* fc: [1+4+0.5, -1+1-3] = [5.5, -3]; relu: [5.5, 0]; + x: [6.5, 2] */
  assert_float_equal(y1[0], 5.5f, 1e-6);
  assert_float_equal(y1[1], -3.0f, 1e-6);
  assert_float_equal(y0[0], 6.5f, 1e-6);
  assert_float_equal(y0[1], 2.0f, 1e-6);
  free(y0), free(y1);
  pn_tensor_unref(ys[0]), pn_tensor_unref(ys[1]);
  pn_tensor_unref(xt);
  pn_model_free(m);
}

/* The gradient of sum(y) flows through both branches: d/dx = W^T relu'(.) + 1. */
static void test_residual_gradient(void **state) {
  (void)state;
  pn_model *m = residual();
  const int64_t xs[2] = {1, 2};
  const float x[2] = {1, 2};
  pn_tensor *xt = tu_check(pn_tensor_from_host(NULL, PN_F32, 2, xs, x), "x");
  pn_tensor_set_requires_grad(xt, 1);
  pn_tensor *y = NULL;
  assert_int_equal(pn_model_forward(m, xt, &y), PN_OK);
  pn_tensor *loss = tu_check(pn_sum_all(y), "sum");
  assert_int_equal(pn_backward(loss, NULL), PN_OK);
  float *g = tu_host(pn_tensor_grad(xt));
  /* only the first fc row is active: W[0] = [1, 2], plus the identity */
  assert_float_equal(g[0], 2.0f, 1e-6);
  assert_float_equal(g[1], 3.0f, 1e-6);
  free(g);
  pn_tensor_unref(loss), pn_tensor_unref(y), pn_tensor_unref(xt);
  pn_model_free(m);
}

static void test_bad_graphs(void **state) {
  (void)state;
  int64_t d = 2;
  pn_shape in = pn_shape_make(1, &d);
  pn_model *m = NULL;
  assert_int_equal(pn_model_new(&in, &m), PN_OK);
  pn_config *c = tu_config("relu", NULL);
  const char *later[] = {"later"};
  assert_int_not_equal(pn_model_add_node(m, "a", "relu", c, later, 1), PN_OK);
  assert_non_null(strstr(pn_last_error(), "'later' is not an earlier node"));
  assert_int_equal(pn_model_add_node(m, "a", "relu", c, NULL, 0), PN_OK);
  assert_int_not_equal(pn_model_add_node(m, "a", "relu", c, NULL, 0), PN_OK);
  assert_non_null(strstr(pn_last_error(), "two nodes are named 'a'"));
  assert_int_not_equal(pn_model_add_node(m, "input", "relu", c, NULL, 0), PN_OK);
  const char *none[] = {"nope"};
  assert_int_not_equal(pn_model_set_outputs(m, none, 1), PN_OK);
  assert_non_null(strstr(pn_last_error(), "'nope'"));
  pn_config_free(c);
  pn_model_free(m);
}

/* Batch-norm's running statistics travel with the state, not the optimizer. */
static void test_buffers_in_state(void **state) {
  (void)state;
  int64_t d[3] = {3, 4, 4};
  pn_shape in = pn_shape_make(3, d);
  pn_model *m = NULL;
  assert_int_equal(pn_model_new(&in, &m), PN_OK);
  add_node(m, "bn", "batch_norm", NULL, NULL, 0);
  assert_int_equal(pn_model_param_count(m), 2);
  assert_int_equal(pn_model_buffer_count(m), 3);
  assert_int_equal(pn_model_param_numel(m), 6);
  pn_tensor_map *map = pn_tensor_map_new();
  assert_non_null(map);
  assert_int_equal(pn_model_state(m, map), PN_OK);
  assert_non_null(pn_tensor_map_get(map, "bn.running_mean"));
  assert_non_null(pn_tensor_map_get(map, "bn.num_batches_tracked"));
  assert_int_equal(pn_model_load_state(m, map, 1), PN_OK);
  pn_tensor_map_free(map);
  pn_model_free(m);
}

static void test_model_file(void **state) {
  (void)state;
  char path[1024];
  snprintf(path, sizeof path, "%s/tests/fixtures/models/tiny.yaml", getenv("PN_TOP_SRCDIR"));
  char *args[] = {"classes=5"};
  pn_model *m = NULL;
  if (pn_model_from_file(path, args, 1, NULL, &m) != PN_OK) fail_msg("%s", pn_last_error());
  pn_shape out = pn_model_output_shape(m);
  assert_int_equal(out.ndim, 1);
  assert_int_equal(out.dim[0], 5);
  assert_true(pn_model_find(m, "body.1.fc") >= 0);
  const int *ins = NULL;
  int both = pn_model_find(m, "both");
  assert_int_equal(pn_model_node_inputs(m, both, &ins), 2);
  assert_int_equal(ins[0], pn_model_find(m, "stem.act"));
  assert_int_equal(ins[1], pn_model_find(m, "wide.1.act"));
  pn_model_free(m);
}

int main(void) {
  unsetenv("PLUGNET_PLUGIN_PATH");
  if (!getenv("PN_TOP_SRCDIR")) setenv("PN_TOP_SRCDIR", ".", 1);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_residual_forward_and_outputs),
      cmocka_unit_test(test_residual_gradient),
      cmocka_unit_test(test_bad_graphs),
      cmocka_unit_test(test_buffers_in_state),
      cmocka_unit_test(test_model_file),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
