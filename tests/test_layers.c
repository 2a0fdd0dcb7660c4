/* The basic layers and the losses against hand computations, init
 * statistics, dropout's masks, and the loss error messages. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <plugnet/gradcheck.h>
#include <plugnet/loss.h>

#include "testutil.h"

/* A layer for per-sample input [d0, d1...] (ndim dims). */
static pn_layer *layer(const char *feature, const char *name, const char *pairs, int ndim,
                       const int64_t *dims) {
  pn_config *c = tu_config(feature, pairs);
  pn_shape in = pn_shape_make(ndim, dims);
  pn_layer *l = NULL;
  if (pn_layer_create(feature, name, c, &in, 1, &l) != PN_OK)
    fail_msg("%s: %s", feature, pn_last_error());
  pn_config_free(c);
  return l;
}

static pn_tensor *forward(pn_layer *l, pn_tensor *x) {
  pn_tensor *y = NULL;
  if (pn_layer_forward(l, &x, 1, &y) != PN_OK) fail_msg("forward: %s", pn_last_error());
  return y;
}

static pn_tensor *host_f32(int ndim, const int64_t *shape, const float *v) {
  return tu_check(pn_tensor_from_host(NULL, PN_F32, ndim, shape, v), "from_host");
}

static pn_tensor *host_i64(int64_t n, const int64_t *v) {
  return tu_check(pn_tensor_from_host(NULL, PN_I64, 1, &n, v), "from_host i64");
}

static void set_param(pn_layer *l, const char *name, const float *v, size_t n) {
  pn_tensor *t = pn_layer_param_by_name(l, name);
  assert_non_null(t);
  assert_int_equal(pn_tensor_write(t, v, n * sizeof *v), PN_OK);
}

/* ------------------------------------------------------------ linear */

static void test_linear_by_hand(void **state) {
  (void)state;
  int64_t in = 3, xs[2] = {2, 3};
  pn_layer *l = layer("linear", "fc", "out=2", 1, &in);
  const float w[6] = {1, 2, 3, -1, 0.5f, 0}, b[2] = {0.25f, -2};
  const float x[6] = {1, 0, -1, 2, 4, 0.5f};
  set_param(l, "weight", w, 6);
  set_param(l, "bias", b, 2);
  pn_tensor *xt = host_f32(2, xs, x);
  pn_tensor *y = forward(l, xt);
  assert_int_equal(y->ndim, 2);
  assert_int_equal(y->shape[0], 2);
  assert_int_equal(y->shape[1], 2);
  float *h = tu_host(y);
  /* row r, out o: sum_i x[r,i] w[o,i] + b[o] */
  const float want[4] = {1 - 3 + 0.25f, -1 + 0 - 2, 2 + 8 + 1.5f + 0.25f, -2 + 2 - 2};
  for (int i = 0; i < 4; i++) assert_float_equal(h[i], want[i], 1e-5);
  free(h);
  pn_tensor_unref(y);
  pn_tensor_unref(xt);
  pn_layer_free(l);
}

static void test_linear_leading_dims_and_no_bias(void **state) {
  (void)state;
  int64_t in = 2, xs[3] = {2, 2, 2};
  pn_layer *l = layer("linear", "proj", "out=1,bias=false", 1, &in);
  assert_int_equal(pn_layer_param_count(l), 1);
  assert_null(pn_layer_param_by_name(l, "bias"));
  const float w[2] = {2, -1}, x[8] = {1, 1, 2, 0, 0, 3, -1, -1};
  set_param(l, "weight", w, 2);
  pn_tensor *xt = host_f32(3, xs, x);
  pn_tensor *y = forward(l, xt);
  assert_int_equal(y->ndim, 3);
  assert_int_equal(y->shape[2], 1);
  float *h = tu_host(y);
  const float want[4] = {1, 4, -3, -1};
  for (int i = 0; i < 4; i++) assert_float_equal(h[i], want[i], 1e-6);
  free(h);
  pn_tensor_unref(y);
  pn_tensor_unref(xt);
  pn_layer_free(l);
}

static void test_parameter_names(void **state) {
  (void)state;
  int64_t in = 4;
  pn_layer *l = layer("linear", "fc1", "out=3", 1, &in);
  assert_int_equal(pn_layer_param_count(l), 2);
  assert_string_equal(pn_layer_param(l, 0)->name, "fc1.weight");
  assert_string_equal(pn_layer_param(l, 1)->name, "fc1.bias");
  pn_tensor *w = pn_layer_param_by_name(l, "weight");
  assert_int_equal(w->ndim, 2);
  assert_int_equal(w->shape[0], 3); /* [out, in], as PyTorch stores it */
  assert_int_equal(w->shape[1], 4);
  assert_true(w->requires_grad);
  pn_shape out = pn_layer_out_shape(l);
  assert_int_equal(out.ndim, 1);
  assert_int_equal(out.dim[0], 3);
  pn_layer_free(l);
}

static void test_init_kaiming_normal(void **state) {
  (void)state;
  int64_t in = 512;
  pn_layer *l = layer("linear", "he", "out=256,init=kaiming_normal", 1, &in);
  double mean, std, m, want = sqrt(2.0 / 512.0);
  tu_moments(pn_layer_param_by_name(l, "weight"), &mean, &std, &m);
  assert_true(fabs(std - want) <= 0.05 * want);
  assert_true(fabs(mean) <= 0.05 * want);
  pn_layer_free(l);
}

static void test_init_uniform_bounds(void **state) {
  (void)state;
  int64_t in = 512;
  double mean, std, m, bound = 1.0 / sqrt(512.0);
  pn_layer *l = layer("linear", "fc", "out=256", 1, &in); /* kaiming_uniform, PyTorch's default */
  tu_moments(pn_layer_param_by_name(l, "weight"), &mean, &std, &m);
  assert_true(m <= bound);
  assert_true(m >= 0.99 * bound);                             /* fills the interval */
  assert_true(fabs(std - bound / sqrt(3.0)) <= 0.05 * bound); /* uniform's std */
  tu_moments(pn_layer_param_by_name(l, "bias"), &mean, &std, &m);
  assert_true(m <= bound);
  assert_true(m >= 0.9 * bound);
  pn_layer_free(l);

  l = layer("linear", "gl", "out=256,init=xavier", 1, &in);
  double xb = sqrt(6.0 / (512.0 + 256.0));
  tu_moments(pn_layer_param_by_name(l, "weight"), &mean, &std, &m);
  assert_true(m <= xb && m >= 0.99 * xb);
  pn_layer_free(l);
}

static void test_init_zeros_and_seeds(void **state) {
  (void)state;
  int64_t in = 8;
  double mean, std, m;
  pn_layer *l = layer("linear", "z", "out=4,init=zeros", 1, &in);
  tu_moments(pn_layer_param_by_name(l, "weight"), &mean, &std, &m);
  assert_true(m == 0.0);
  tu_moments(pn_layer_param_by_name(l, "bias"), &mean, &std, &m);
  assert_true(m == 0.0);
  pn_layer_free(l);
  l = layer("linear", "zb", "out=4,bias_init=zeros", 1, &in);
  tu_moments(pn_layer_param_by_name(l, "weight"), &mean, &std, &m);
  assert_true(m > 0.0);
  tu_moments(pn_layer_param_by_name(l, "bias"), &mean, &std, &m);
  assert_true(m == 0.0);
  pn_layer_free(l);

  /* The same name and seed give the same weights; another name does not. */
  pn_layer *a = layer("linear", "fc", "out=4", 1, &in), *b = layer("linear", "fc", "out=4", 1, &in);
  pn_layer *c = layer("linear", "fc2", "out=4", 1, &in);
  float *ha = tu_host(pn_layer_param(a, 0)), *hb = tu_host(pn_layer_param(b, 0));
  float *hc = tu_host(pn_layer_param(c, 0));
  assert_memory_equal(ha, hb, 32 * sizeof *ha);
  assert_memory_not_equal(ha, hc, 32 * sizeof *ha);
  free(ha);
  free(hb);
  free(hc);
  pn_layer_free(a);
  pn_layer_free(b);
  pn_layer_free(c);
}

/* ------------------------------------------------------------ activations, shapes */

static void test_activations(void **state) {
  (void)state;
  int64_t in = 4, xs[2] = {1, 4};
  const float x[4] = {-2, -0.5f, 0.5f, 3};
  pn_tensor *xt = host_f32(2, xs, x);
  pn_layer *l = layer("leaky_relu", "act", "negative_slope=0.2", 1, &in);
  pn_tensor *y = forward(l, xt);
  float *h = tu_host(y);
  const float want[4] = {-0.4f, -0.1f, 0.5f, 3};
  for (int i = 0; i < 4; i++) assert_float_equal(h[i], want[i], 1e-6);
  free(h);
  pn_tensor_unref(y);
  pn_layer_free(l);

  l = layer("sigmoid", "s", NULL, 1, &in);
  y = forward(l, xt);
  h = tu_host(y);
  for (int i = 0; i < 4; i++) assert_float_equal(h[i], 1.0 / (1.0 + exp(-x[i])), 1e-6);
  free(h);
  pn_tensor_unref(y);
  pn_layer_free(l);

  l = layer("softmax", "sm", NULL, 1, &in);
  y = forward(l, xt);
  h = tu_host(y);
  double z = 0;
  for (int i = 0; i < 4; i++) z += exp(x[i]);
  for (int i = 0; i < 4; i++) assert_float_equal(h[i], exp(x[i]) / z, 1e-6);
  free(h);
  pn_tensor_unref(y);
  pn_layer_free(l);
  pn_tensor_unref(xt);
}

static void test_flatten(void **state) {
  (void)state;
  int64_t in[3] = {2, 3, 4}, xs[4] = {5, 2, 3, 4};
  pn_layer *l = layer("flatten", "flat", NULL, 3, in);
  pn_shape o = pn_layer_out_shape(l);
  assert_int_equal(o.ndim, 1);
  assert_int_equal(o.dim[0], 24);
  pn_tensor *x = tu_check(pn_zeros(NULL, 4, xs), "zeros");
  pn_tensor *y = forward(l, x);
  assert_int_equal(y->ndim, 2);
  assert_int_equal(y->shape[0], 5);
  assert_int_equal(y->shape[1], 24);
  pn_tensor_unref(y);
  pn_layer_free(l);

  l = layer("flatten", "flat2", "start_dim=2", 3, in);
  o = pn_layer_out_shape(l);
  assert_int_equal(o.ndim, 2);
  assert_int_equal(o.dim[0], 2);
  assert_int_equal(o.dim[1], 12);
  pn_layer_free(l);

  pn_config *c = tu_config("flatten", "start_dim=4");
  pn_shape s = pn_shape_make(3, in);
  assert_int_not_equal(pn_layer_create("flatten", "bad", c, &s, 1, &l), PN_OK);
  assert_non_null(strstr(pn_last_error(), "start_dim"));
  pn_config_free(c);
  pn_tensor_unref(x);
}

/* ------------------------------------------------------------ dropout */

static float *dropout_run(pn_layer *l, pn_tensor *x) {
  pn_tensor *y = forward(l, x);
  float *h = tu_host(y);
  pn_tensor_unref(y);
  return h;
}

static void test_dropout(void **state) {
  (void)state;
  enum { N = 100000 };
  int64_t in = 1000, xs[2] = {100, 1000};
  float *x = malloc(N * sizeof *x);
  assert_non_null(x);
  for (int i = 0; i < N; i++) x[i] = 1.0f + (float)(i % 7);
  pn_tensor *xt = host_f32(2, xs, x);
  pn_layer *l = layer("dropout", "drop", "p=0.3", 1, &in);

  pn_layer_set_training(l, 0); /* evaluation: the identity */
  float *h = dropout_run(l, xt);
  assert_memory_equal(h, x, N * sizeof *x);
  free(h);

  pn_layer_set_training(l, 1);
  float *m1 = dropout_run(l, xt), *m2 = dropout_run(l, xt);
  int zeros = 0, same = 0;
  for (int i = 0; i < N; i++) {
    if (m1[i] == 0.0f)
      zeros++;
    else
      assert_float_equal(m1[i], x[i] / 0.7f, 1e-5 * x[i]);
    same += (m1[i] == 0.0f) == (m2[i] == 0.0f);
  }
  assert_true(fabs((double)zeros / N - 0.3) < 0.01);
  assert_true(same < N * 0.7); /* a fresh mask per call: ~58 % agreement */

  /* A new layer with the same name and seed replays the same masks. */
  pn_layer *again = layer("dropout", "drop", "p=0.3", 1, &in);
  float *r1 = dropout_run(again, xt), *r2 = dropout_run(again, xt);
  assert_memory_equal(r1, m1, N * sizeof *x);
  assert_memory_equal(r2, m2, N * sizeof *x);
  pn_set_seed(99);
  pn_layer *other = layer("dropout", "drop", "p=0.3", 1, &in);
  float *o1 = dropout_run(other, xt);
  assert_memory_not_equal(o1, m1, N * sizeof *x);
  pn_set_seed(0);

  free(o1);
  free(r1);
  free(r2);
  free(m1);
  free(m2);
  free(x);
  pn_layer_free(other);
  pn_layer_free(again);
  pn_layer_free(l);
  pn_tensor_unref(xt);

  pn_config *c = tu_config("dropout", "p=1");
  pn_shape s = pn_shape_make(1, &in);
  assert_int_not_equal(pn_layer_create("dropout", "d", c, &s, 1, &l), PN_OK);
  assert_non_null(strstr(pn_last_error(), "[0, 1)"));
  pn_config_free(c);
}

/* ------------------------------------------------------------ losses */

static pn_loss *loss(const char *feature, const char *pairs) {
  pn_config *c = pairs ? tu_config(feature, pairs) : NULL;
  pn_loss *l = NULL;
  if (pn_loss_create(feature, c, &l) != PN_OK) fail_msg("%s: %s", feature, pn_last_error());
  pn_config_free(c);
  return l;
}

static double loss_value(pn_loss *l, pn_tensor *pred, pn_tensor *target) {
  pn_tensor *v = NULL;
  if (pn_loss_forward(l, pred, target, &v) != PN_OK) fail_msg("loss: %s", pn_last_error());
  assert_int_equal(pn_tensor_numel(v), 1);
  float *h = tu_host(v);
  double r = h[0];
  free(h);
  pn_tensor_unref(v);
  return r;
}

/* -log softmax(row)[c] in double. */
static double nll(const float *row, int classes, int c) {
  double m = row[0], z = 0;
  for (int k = 1; k < classes; k++) m = row[k] > m ? row[k] : m;
  for (int k = 0; k < classes; k++) z += exp(row[k] - m);
  return -(row[c] - m - log(z));
}

static const float logits[12] = {1, 2, 0.5f, -1, 0, 3, 0.2f, 0.1f, -0.3f, 2, 2, 2};
static const int64_t labels[4] = {1, 2, 0, 2};

static void test_cross_entropy_by_hand(void **state) {
  (void)state;
  int64_t ps[2] = {4, 3};
  pn_tensor *pred = host_f32(2, ps, logits), *target = host_i64(4, labels);
  pn_loss *l = loss("cross_entropy", NULL);
  assert_int_equal(pn_loss_target_is_index(l), 1);
  double want = 0;
  for (int r = 0; r < 4; r++) want += nll(logits + 3 * r, 3, (int)labels[r]) / 4;
  assert_float_equal(loss_value(l, pred, target), want, 1e-5);
  const uint8_t small[4] = {1, 2, 0, 2}; /* any integer dtype holds class indices */
  int64_t n = 4;
  pn_tensor *t8 = tu_check(pn_tensor_from_host(NULL, PN_U8, 1, &n, small), "u8 labels");
  assert_float_equal(loss_value(l, pred, t8), want, 1e-5);
  pn_tensor_unref(t8);
  pn_loss_free(l);

  /* Smoothing eps: (1 - eps) * nll(label) + eps / C * sum_c nll(c). */
  l = loss("cross_entropy", "label_smoothing=0.1");
  want = 0;
  for (int r = 0; r < 4; r++) {
    double u = 0;
    for (int c = 0; c < 3; c++) u += nll(logits + 3 * r, 3, c);
    want += (0.9 * nll(logits + 3 * r, 3, (int)labels[r]) + 0.1 / 3 * u) / 4;
  }
  assert_float_equal(loss_value(l, pred, target), want, 1e-5);
  pn_loss_free(l);

  /* Rows labelled ignore_index drop out of the sum and of the mean. */
  l = loss("cross_entropy", "ignore_index=2");
  want = (nll(logits, 3, 1) + nll(logits + 6, 3, 0)) / 2;
  assert_float_equal(loss_value(l, pred, target), want, 1e-5);
  pn_loss_free(l);
  pn_tensor_unref(pred);
  pn_tensor_unref(target);
}

static void test_cross_entropy_gradient(void **state) {
  (void)state;
  int64_t ps[2] = {4, 3};
  pn_tensor *pred = host_f32(2, ps, logits), *target = host_i64(4, labels);
  pn_tensor_set_requires_grad(pred, 1);
  pn_loss *l = loss("cross_entropy", NULL);
  pn_tensor *v = NULL;
  assert_int_equal(pn_loss_forward(l, pred, target, &v), PN_OK);
  assert_int_equal(pn_backward(v, NULL), PN_OK);
  float *g = tu_host(pn_tensor_grad(pred));
  for (int r = 0; r < 4; r++)
    for (int c = 0; c < 3; c++) {
      double p = exp(-nll(logits + 3 * r, 3, c));
      assert_float_equal(g[3 * r + c], (p - (c == labels[r])) / 4, 1e-6);
    }
  free(g);
  pn_tensor_unref(v);
  pn_loss_free(l);
  pn_tensor_unref(pred);
  pn_tensor_unref(target);
}

static void test_cross_entropy_stable_and_spatial(void **state) {
  (void)state;
  int64_t ps[2] = {2, 3}, ts = 2;
  const float big[6] = {1e4f, -1e4f, 0, -1e4f, 1e4f, 1e4f};
  const int64_t lab[2] = {1, 0};
  pn_tensor *pred = host_f32(2, ps, big), *target = host_i64(ts, lab);
  pn_loss *l = loss("cross_entropy", NULL);
  double v = loss_value(l, pred, target);
  assert_true(isfinite(v));
  assert_float_equal(v, 2e4 + log(2.0) / 2, 1.0); /* nll 2e4 and 2e4 + log 2 */
  pn_tensor_unref(pred);
  pn_tensor_unref(target);

  /* [N, C, L] logits with [N, L] targets: the class dimension is 1. */
  int64_t ks[3] = {1, 3, 2}, kt[2] = {1, 2};
  const float kx[6] = {1, 0, 2, 0, 3, 0}; /* position 0: (1,2,3); position 1: (0,0,0) */
  const int64_t klab[2] = {2, 1};
  pred = host_f32(3, ks, kx);
  target = tu_check(pn_tensor_from_host(NULL, PN_I64, 2, kt, klab), "targets");
  const float p0[3] = {1, 2, 3}, p1[3] = {0, 0, 0};
  assert_float_equal(loss_value(l, pred, target), (nll(p0, 3, 2) + nll(p1, 3, 1)) / 2, 1e-5);
  pn_tensor_unref(pred);
  pn_tensor_unref(target);
  pn_loss_free(l);
}

static void test_cross_entropy_errors(void **state) {
  (void)state;
  int64_t ps[2] = {4, 3};
  const int64_t bad[4] = {1, 2, 7, 0};
  pn_tensor *pred = host_f32(2, ps, logits), *target = host_i64(4, bad), *v = NULL;
  pn_loss *l = loss("cross_entropy", NULL);
  assert_int_equal(pn_loss_forward(l, pred, target, &v), PN_ERR_INVALID);
  assert_null(v);
  assert_non_null(strstr(pn_last_error(), "label 7 in row 2"));
  assert_non_null(strstr(pn_last_error(), "cross_entropy"));
  pn_tensor_unref(target);

  target = host_i64(3, bad); /* 3 labels for 4 rows */
  assert_int_equal(pn_loss_forward(l, pred, target, &v), PN_ERR_SHAPE);
  pn_tensor_unref(target);
  int64_t rows = 4;
  target = host_f32(1, &rows, logits); /* floats are not class indices */
  assert_int_equal(pn_loss_forward(l, pred, target, &v), PN_ERR_INVALID);
  assert_non_null(strstr(pn_last_error(), "class indices"));
  pn_tensor_unref(target);
  pn_loss_free(l);
  pn_tensor_unref(pred);

  pn_config *c = tu_config("cross_entropy", "label_smoothing=1");
  assert_int_not_equal(pn_loss_create("cross_entropy", c, &l), PN_OK);
  assert_non_null(strstr(pn_last_error(), "label_smoothing"));
  pn_config_free(c);
  assert_int_equal(pn_loss_create("no_such_loss", NULL, &l), PN_ERR_NOT_FOUND);
  assert_int_not_equal(pn_loss_create("linear", NULL, &l), PN_OK); /* a layer, not a loss */
}

static void test_mse(void **state) {
  (void)state;
  int64_t s[2] = {2, 2};
  const float p[4] = {1, 2, 3, 4}, t[4] = {0, 2, 5, 3.5f};
  pn_tensor *pred = host_f32(2, s, p), *target = host_f32(2, s, t), *v = NULL;
  pn_loss *l = loss("mse", NULL);
  assert_int_equal(pn_loss_target_is_index(l), 0);
  assert_float_equal(loss_value(l, pred, target), (1 + 0 + 4 + 0.25) / 4, 1e-6);
  int64_t n = 4;
  pn_tensor *flat = host_f32(1, &n, t);
  assert_int_equal(pn_loss_forward(l, pred, flat, &v), PN_ERR_SHAPE);
  assert_non_null(strstr(pn_last_error(), "mse"));
  pn_tensor_unref(flat);
  pn_tensor_unref(pred);
  pn_tensor_unref(target);
  pn_loss_free(l);
}

/* ------------------------------------------------------------ gradcheck API */

static void test_gradcheck_api(void **state) {
  (void)state;
  pn_gradcheck_result r;
  pn_config *c = tu_config("linear", "out=4");
  int64_t d[2] = {3, 6};
  pn_shape in = pn_shape_make(2, d);
  assert_int_equal(pn_gradcheck("linear", c, &in, 5, &r), PN_OK);
  assert_true(r.passed);
  assert_int_equal(r.checked, 18 + 24 + 4); /* input, weight, bias */
  assert_true(r.max_abs_err < 2e-3);
  assert_non_null(strchr(r.worst, '['));
  pn_config_free(c);
  assert_int_equal(pn_gradcheck("cross_entropy", NULL, NULL, 5, &r), PN_OK);
  assert_true(r.passed);
  assert_int_equal(r.checked, 20);
  assert_int_equal(pn_gradcheck("cpu", NULL, NULL, 5, &r), PN_ERR_INVALID);
  assert_non_null(strstr(pn_last_error(), "neither a layer nor a loss"));
}

static int setup_device(void **state) {
  const char *name = *state;
  pn_set_default_device(tu_device(name));
  pn_set_seed(0);
  return 0;
}

#define ON(backend, test)                                                                          \
  cmocka_unit_test_prestate_setup_teardown(test, setup_device, NULL, backend)
#define BOTH(test) ON("reference", test), ON("cpu", test)

int main(void) {
  unsetenv("PLUGNET_PLUGIN_PATH");
  const struct CMUnitTest tests[] = {
      BOTH(test_linear_by_hand),
      BOTH(test_linear_leading_dims_and_no_bias),
      ON("cpu", test_parameter_names),
      BOTH(test_init_kaiming_normal),
      BOTH(test_init_uniform_bounds),
      ON("cpu", test_init_zeros_and_seeds),
      BOTH(test_activations),
      ON("cpu", test_flatten),
      BOTH(test_dropout),
      BOTH(test_cross_entropy_by_hand),
      BOTH(test_cross_entropy_gradient),
      BOTH(test_cross_entropy_stable_and_spatial),
      ON("cpu", test_cross_entropy_errors),
      BOTH(test_mse),
      ON("reference", test_gradcheck_api),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
