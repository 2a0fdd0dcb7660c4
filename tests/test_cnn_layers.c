/* The cnn layers: output shapes by PyTorch's rules, torchvision's parameter
 * names and shapes, initialisation statistics, values against direct
 * computations (a naive convolution, hand-worked pools), batch-norm in
 * training and evaluation, the multi-input joins, and the build errors. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <plugnet/gradcheck.h>

#include "testutil.h"

/* Builds with n_in per-sample inputs all of shape `in`... or the listed ones. */
static pn_status try_layer_n(const char *feature, const char *name, const char *pairs,
                             const pn_shape *in, int n_in, pn_layer **l) {
  pn_config *c = tu_config(feature, pairs);
  pn_status s = pn_layer_create(feature, name, c, in, n_in, l);
  pn_config_free(c);
  return s;
}

static pn_layer *layer_n(const char *feature, const char *name, const char *pairs,
                         const pn_shape *in, int n_in) {
  pn_layer *l = NULL;
  if (try_layer_n(feature, name, pairs, in, n_in, &l) != PN_OK)
    fail_msg("%s: %s", feature, pn_last_error());
  return l;
}

static pn_shape shape3(int64_t c, int64_t h, int64_t w) {
  int64_t d[3] = {c, h, w};
  return pn_shape_make(3, d);
}

static pn_layer *layer3(const char *feature, const char *pairs, int64_t c, int64_t h, int64_t w) {
  pn_shape in = shape3(c, h, w);
  return layer_n(feature, feature, pairs, &in, 1);
}

static void assert_shape(pn_shape s, int ndim, const int64_t *want) {
  assert_int_equal(s.ndim, ndim);
  for (int d = 0; d < ndim; d++) assert_int_equal(s.dim[d], want[d]);
}

static void assert_out3(const pn_layer *l, int64_t c, int64_t h, int64_t w) {
  const int64_t want[3] = {c, h, w};
  assert_shape(pn_layer_out_shape(l), 3, want);
}

static void assert_tensor_shape(const pn_tensor *t, int ndim, const int64_t *want) {
  assert_non_null(t);
  assert_shape(pn_tensor_shape(t), ndim, want);
}

/* Build must fail and the message must hold every fragment given. */
static void expect_error(const char *feature, const char *name, const char *pairs,
                         const pn_shape *in, int n_in, const char *frag1, const char *frag2) {
  pn_layer *l = NULL;
  pn_status s = try_layer_n(feature, name, pairs, in, n_in, &l);
  assert_int_not_equal(s, PN_OK);
  assert_null(l);
  const char *msg = pn_last_error();
  if (!strstr(msg, frag1) || (frag2 && !strstr(msg, frag2)) || !strstr(msg, name))
    fail_msg("%s %s: message '%s' lacks '%s' / '%s' / the layer name", feature, pairs, msg, frag1,
             frag2 ? frag2 : "");
}

static pn_tensor *forward_n(pn_layer *l, pn_tensor *const *x, int n) {
  pn_tensor *y = NULL;
  if (pn_layer_forward(l, x, n, &y) != PN_OK) fail_msg("forward: %s", pn_last_error());
  return y;
}

static pn_tensor *forward(pn_layer *l, pn_tensor *x) { return forward_n(l, &x, 1); }

static pn_tensor *host_f32(int ndim, const int64_t *shape, const float *v) {
  return tu_check(pn_tensor_from_host(NULL, PN_F32, ndim, shape, v), "from_host");
}

static void set_param(pn_layer *l, const char *name, const float *v, size_t n) {
  pn_tensor *t = pn_layer_param_by_name(l, name);
  assert_non_null(t);
  assert_int_equal(pn_tensor_numel(t), (int64_t)n);
  assert_int_equal(pn_tensor_write(t, v, n * sizeof *v), PN_OK);
}

static void assert_close(const pn_tensor *t, const float *want, int64_t n, double tol) {
  assert_int_equal(pn_tensor_numel(t), n);
  float *h = tu_host(t);
  for (int64_t i = 0; i < n; i++)
    if (fabs((double)h[i] - want[i]) > tol * (1.0 + fabs(want[i])))
      fail_msg("element %lld: got %.7g, want %.7g", (long long)i, h[i], want[i]);
  free(h);
}

static int64_t i64_scalar(const pn_tensor *t) {
  int64_t v = -1;
  assert_int_equal(t->dtype, PN_I64);
  assert_int_equal(t->ndim, 0);
  assert_int_equal(pn_tensor_read(t, &v, sizeof v), PN_OK);
  return v;
}

/* ------------------------------------------------------------ shapes */

static void test_conv_shapes_and_params(void **state) {
  (void)state;
  /* ResNet's stem: 3 -> 64, 7x7, stride 2, padding 3, no bias. */
  pn_shape img = shape3(3, 224, 224);
  pn_layer *l = layer_n("conv2d", "conv1", "out=64,kernel=7,stride=2,padding=3,bias=false", &img, 1);
  assert_out3(l, 64, 112, 112);
  assert_int_equal(pn_layer_param_count(l), 1);
  assert_int_equal(pn_layer_buffer_count(l), 0);
  pn_tensor *w = pn_layer_param(l, 0);
  assert_string_equal(w->name, "conv1.weight");
  const int64_t ws[4] = {64, 3, 7, 7};
  assert_tensor_shape(w, 4, ws);
  assert_int_equal(pn_tensor_numel(w), 9408);
  assert_true(w->requires_grad);
  assert_null(pn_layer_param_by_name(l, "bias"));
  pn_layer_free(l);

  /* Grouped, strided, dilated, rectangular, with a bias. */
  l = layer3("conv2d", "out=6,kernel=[1,3],stride=[2,1],dilation=[1,2],groups=2", 4, 7, 9);
  assert_out3(l, 6, 4, 5); /* (7-1)/2+1, (9-2*2-1)/1+1 */
  const int64_t gs[4] = {6, 2, 1, 3};
  assert_tensor_shape(pn_layer_param_by_name(l, "weight"), 4, gs);
  const int64_t bs[1] = {6};
  assert_tensor_shape(pn_layer_param_by_name(l, "bias"), 1, bs);
  assert_string_equal(pn_layer_param(l, 1)->name, "conv2d.bias");
  pn_layer_free(l);

  /* groups=0: depthwise, one group per input channel. */
  l = layer3("conv2d", "out=32,kernel=3,padding=2,dilation=2,groups=0", 32, 10, 10);
  assert_out3(l, 32, 10, 10);
  const int64_t ds[4] = {32, 1, 3, 3};
  assert_tensor_shape(pn_layer_param_by_name(l, "weight"), 4, ds);
  pn_layer_free(l);
}

static void test_conv_width_divisor(void **state) {
  (void)state;
  /* torchvision's _make_divisible(out * width, divisor). */
  static const struct {
    const char *pairs;
    int64_t want;
  } cases[] = {
      {"out=32,kernel=1,width=0.75,divisor=8", 24}, {"out=16,kernel=1,width=0.35,divisor=8", 8},
      {"out=20,kernel=1,divisor=16", 32},           {"out=100,kernel=1,divisor=8", 104},
      {"out=10,kernel=1,width=1.26", 13},           {"out=1280,kernel=1,width=1.4,divisor=8", 1792},
  };
  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
    pn_layer *l = layer3("conv2d", cases[i].pairs, 4, 3, 3);
    assert_out3(l, cases[i].want, 3, 3);
    assert_int_equal(pn_layer_param_by_name(l, "weight")->shape[0], cases[i].want);
    pn_layer_free(l);
  }
}

static void test_pool_shapes(void **state) {
  (void)state;
  pn_layer *l = layer3("max_pool2d", "kernel=3,stride=2,padding=1", 64, 112, 112);
  assert_out3(l, 64, 56, 56);
  assert_int_equal(pn_layer_param_count(l), 0);
  pn_layer_free(l);
  l = layer3("max_pool2d", "kernel=2", 3, 5, 5); /* stride defaults to the kernel */
  assert_out3(l, 3, 2, 2);
  pn_layer_free(l);
  l = layer3("max_pool2d", "kernel=2,ceil_mode=true", 3, 5, 5);
  assert_out3(l, 3, 3, 3);
  pn_layer_free(l);
  /* ceil_mode's last window would start in the right padding: dropped. */
  l = layer3("max_pool2d", "kernel=2,stride=2,padding=1,ceil_mode=true", 3, 5, 5);
  assert_out3(l, 3, 3, 3);
  pn_layer_free(l);
  l = layer3("max_pool2d", "kernel=3,stride=2,ceil_mode=true", 3, 6, 8);
  assert_out3(l, 3, 3, 4);
  pn_layer_free(l);
  l = layer3("avg_pool2d", "kernel=[2,3],stride=[2,1],padding=[1,0]", 3, 4, 6);
  assert_out3(l, 3, 3, 4);
  pn_layer_free(l);
  l = layer3("adaptive_avg_pool2d", NULL, 512, 7, 7);
  assert_out3(l, 512, 1, 1);
  pn_layer_free(l);
  l = layer3("adaptive_max_pool2d", "size=[2,3]", 5, 7, 4);
  assert_out3(l, 5, 2, 3);
  pn_layer_free(l);
  l = layer3("adaptive_concat_pool2d", NULL, 512, 7, 7);
  assert_out3(l, 1024, 1, 1);
  pn_layer_free(l);
  l = layer3("adaptive_concat_pool2d", "size=2", 5, 9, 9);
  assert_out3(l, 10, 2, 2);
  pn_layer_free(l);
}

static void test_join_shapes(void **state) {
  (void)state;
  pn_shape three[3] = {shape3(3, 4, 5), shape3(3, 4, 5), shape3(3, 4, 5)};
  pn_layer *l = layer_n("add", "add", NULL, three, 3);
  assert_out3(l, 3, 4, 5);
  pn_layer_free(l);
  pn_shape parts[3] = {shape3(2, 4, 4), shape3(3, 4, 4), shape3(5, 4, 4)};
  l = layer_n("concat", "cat", NULL, parts, 3);
  assert_out3(l, 10, 4, 4);
  pn_layer_free(l);
  pn_shape wide[2] = {shape3(2, 4, 3), shape3(2, 4, 5)};
  l = layer_n("concat", "cat", "axis=-1", wide, 2);
  assert_out3(l, 2, 4, 8);
  pn_layer_free(l);
  int64_t flat = 7;
  pn_shape vec = pn_shape_make(1, &flat);
  l = layer_n("relu6", "r", NULL, &vec, 1);
  assert_shape(pn_layer_out_shape(l), 1, &flat);
  pn_layer_free(l);
  l = layer3("identity", NULL, 2, 3, 4);
  assert_out3(l, 2, 3, 4);
  pn_layer_free(l);
}

static void test_batch_norm_params_and_buffers(void **state) {
  (void)state;
  pn_shape img = shape3(16, 8, 8);
  pn_layer *l = layer_n("batch_norm", "bn1", NULL, &img, 1);
  assert_out3(l, 16, 8, 8);
  assert_int_equal(pn_layer_param_count(l), 2);
  assert_string_equal(pn_layer_param(l, 0)->name, "bn1.weight");
  assert_string_equal(pn_layer_param(l, 1)->name, "bn1.bias");
  assert_int_equal(pn_layer_buffer_count(l), 3);
  const char *names[3] = {"bn1.running_mean", "bn1.running_var", "bn1.num_batches_tracked"};
  for (int i = 0; i < 3; i++) {
    assert_string_equal(pn_layer_buffer(l, i)->name, names[i]);
    assert_false(pn_layer_buffer(l, i)->requires_grad);
  }
  const int64_t c[1] = {16};
  float ones[16], zeros[16];
  for (int i = 0; i < 16; i++) ones[i] = 1, zeros[i] = 0;
  assert_tensor_shape(pn_layer_buffer_by_name(l, "running_mean"), 1, c);
  assert_close(pn_layer_param_by_name(l, "weight"), ones, 16, 0);
  assert_close(pn_layer_param_by_name(l, "bias"), zeros, 16, 0);
  assert_close(pn_layer_buffer_by_name(l, "running_mean"), zeros, 16, 0);
  assert_close(pn_layer_buffer_by_name(l, "running_var"), ones, 16, 0);
  assert_int_equal(i64_scalar(pn_layer_buffer_by_name(l, "num_batches_tracked")), 0);
  pn_layer_free(l);

  l = layer_n("batch_norm", "bn3", "affine=false", &img, 1);
  assert_int_equal(pn_layer_param_count(l), 0);
  assert_int_equal(pn_layer_buffer_count(l), 3);
  pn_layer_free(l);
  l = layer_n("batch_norm", "bn3", "weight_init=zeros", &img, 1);
  assert_close(pn_layer_param_by_name(l, "weight"), zeros, 16, 0);
  pn_layer_free(l);
}

/* ------------------------------------------------------------ errors */

static void test_bad_configs(void **state) {
  (void)state;
  pn_shape img = shape3(6, 5, 5);
  expect_error("conv2d", "c1", "out=8,kernel=3,groups=4", &img, 1, "groups = 4", "(6)");
  expect_error("conv2d", "c2", "out=8,kernel=3,groups=3", &img, 1, "groups = 3", "(8)");
  expect_error("conv2d", "c3", "out=8,kernel=7", &img, 1, "kernel 7", "5 + 2*0");
  expect_error("conv2d", "c4", "out=8,kernel=3,padding=1,dilation=4", &img, 1, "spans 9",
               "5 + 2*1");
  expect_error("conv2d", "c5", "out=8,kernel=[3,3,3]", &img, 1, "kernel", "one or two");
  int64_t flat[2] = {6, 25};
  pn_shape two_d = pn_shape_make(2, flat);
  expect_error("conv2d", "c6", "out=8,kernel=3", &two_d, 1, "[C, H, W]", "6x25");
  expect_error("conv2d", "c7", "out=8,kernel=3", (pn_shape[]){img, img}, 2, "one input", "2");
  expect_error("max_pool2d", "p1", "kernel=3,padding=2", &img, 1, "padding 2", "kernel 3");
  expect_error("avg_pool2d", "p2", "kernel=7", &img, 1, "kernel 7", "5 + 2*0");
  expect_error("adaptive_avg_pool2d", "p3", NULL, &two_d, 1, "[C, H, W]", NULL);
  pn_shape mixed[2] = {shape3(3, 4, 5), shape3(3, 4, 4)};
  expect_error("add", "a1", NULL, mixed, 2, "input 1 has shape 3x4x4", "input 0 has 3x4x5");
  expect_error("concat", "k1", NULL, mixed, 2, "input 1 has shape 3x4x4", "dimension 1");
  expect_error("concat", "k2", "axis=0", mixed, 1, "axis = 0", "batch");
  expect_error("concat", "k3", "axis=4", mixed, 1, "axis = 4", NULL);
  expect_error("batch_norm", "b1", NULL, (pn_shape[]){{0, {0}}}, 1, "[C]", "scalar");
  /* A value the manifest's range rejects never reaches build. */
  pn_config *c = tu_config("conv2d", NULL);
  assert_int_not_equal(pn_config_set(c, "stride", "[1, 0]"), PN_OK);
  pn_config_free(c);
}

/* ------------------------------------------------------------ init */

static void test_conv_init(void **state) {
  (void)state;
  double mean, std, maxabs;
  /* fan_in = 16*3*3 = 144: U(-1/12, 1/12), std 1/(12 sqrt 3). */
  pn_layer *l = layer3("conv2d", "out=64,kernel=3", 16, 8, 8);
  tu_moments(pn_layer_param_by_name(l, "weight"), &mean, &std, &maxabs);
  assert_true(maxabs <= 1.0 / 12.0 + 1e-7);
  assert_true(maxabs > 0.98 / 12.0);
  assert_true(fabs(mean) < 0.003);
  assert_true(fabs(std - 1.0 / (12.0 * sqrt(3.0))) < 0.002);
  tu_moments(pn_layer_param_by_name(l, "bias"), &mean, &std, &maxabs);
  assert_true(maxabs <= 1.0 / 12.0 + 1e-7);
  assert_true(maxabs > 0.02);
  pn_layer_free(l);

  /* Grouped: fan_in counts C/groups. fan_in = 4*3*3 = 36: bound 1/6. */
  l = layer3("conv2d", "out=64,kernel=3,groups=4", 16, 8, 8);
  tu_moments(pn_layer_param_by_name(l, "weight"), &mean, &std, &maxabs);
  assert_true(maxabs <= 1.0 / 6.0 + 1e-7 && maxabs > 0.98 / 6.0);
  pn_layer_free(l);

  /* fan_out = 64*3*3 = 576: N(0, sqrt(2/576)), zero bias. */
  l = layer3("conv2d", "out=64,kernel=3,init=kaiming_normal", 16, 8, 8);
  tu_moments(pn_layer_param_by_name(l, "weight"), &mean, &std, &maxabs);
  assert_true(fabs(mean) < 0.004);
  assert_true(fabs(std / sqrt(2.0 / 576.0) - 1.0) < 0.05);
  tu_moments(pn_layer_param_by_name(l, "bias"), &mean, &std, &maxabs);
  assert_true(maxabs == 0.0);
  pn_layer_free(l);

  /* Layers named differently draw differently; the same name repeats. */
  pn_shape img = shape3(2, 4, 4);
  pn_layer *a = layer_n("conv2d", "a", "out=2,kernel=1", &img, 1);
  pn_layer *a2 = layer_n("conv2d", "a", "out=2,kernel=1", &img, 1);
  pn_layer *b = layer_n("conv2d", "b", "out=2,kernel=1", &img, 1);
  float *ha = tu_host(pn_layer_param(a, 0)), *ha2 = tu_host(pn_layer_param(a2, 0));
  float *hb = tu_host(pn_layer_param(b, 0));
  assert_memory_equal(ha, ha2, 4 * sizeof *ha);
  assert_memory_not_equal(ha, hb, 4 * sizeof *ha);
  free(ha), free(ha2), free(hb);
  pn_layer_free(a), pn_layer_free(a2), pn_layer_free(b);
}

/* ------------------------------------------------------------ values */

/* Direct NCHW convolution in double: the definition, for comparison. */
typedef struct conv_case {
  int n, c, h, w, o, kh, kw, sh, sw, ph, pw, dh, dw, g;
} conv_case;

static int64_t conv_len(int size, int k, int s, int p, int d) {
  return (size + 2 * p - d * (k - 1) - 1) / s + 1;
}

static void naive_conv(const conv_case *k, const float *x, const float *w, const float *b,
                       float *y) {
  int64_t oh = conv_len(k->h, k->kh, k->sh, k->ph, k->dh);
  int64_t ow = conv_len(k->w, k->kw, k->sw, k->pw, k->dw);
  int cg = k->c / k->g, og = k->o / k->g;
  for (int n = 0; n < k->n; n++)
    for (int o = 0; o < k->o; o++)
      for (int64_t i = 0; i < oh; i++)
        for (int64_t j = 0; j < ow; j++) {
          double acc = b ? b[o] : 0.0;
          for (int ci = 0; ci < cg; ci++)
            for (int u = 0; u < k->kh; u++)
              for (int v = 0; v < k->kw; v++) {
                int64_t r = i * k->sh - k->ph + u * k->dh, s = j * k->sw - k->pw + v * k->dw;
                if (r < 0 || r >= k->h || s < 0 || s >= k->w) continue;
                int ch = (o / og) * cg + ci;
                acc += (double)x[((n * k->c + ch) * k->h + r) * k->w + s] *
                       w[((o * cg + ci) * k->kh + u) * k->kw + v];
              }
          y[((n * k->o + o) * oh + i) * ow + j] = (float)acc;
        }
}

static void check_conv_case(const conv_case *k, int bias) {
  char pairs[256];
  snprintf(pairs, sizeof pairs,
           "out=%d,kernel=[%d,%d],stride=[%d,%d],padding=[%d,%d],dilation=[%d,%d],groups=%d,"
           "bias=%s",
           k->o, k->kh, k->kw, k->sh, k->sw, k->ph, k->pw, k->dh, k->dw, k->g,
           bias ? "true" : "false");
  pn_layer *l = layer3("conv2d", pairs, k->c, k->h, k->w);
  int64_t xs[4] = {k->n, k->c, k->h, k->w};
  uint64_t rng = 42;
  pn_tensor *x = tu_random(NULL, 4, xs, -1, 1, &rng);
  float *hx = tu_host(x), *hw = tu_host(pn_layer_param_by_name(l, "weight"));
  float *hb = bias ? tu_host(pn_layer_param_by_name(l, "bias")) : NULL;
  int64_t oh = conv_len(k->h, k->kh, k->sh, k->ph, k->dh);
  int64_t ow = conv_len(k->w, k->kw, k->sw, k->pw, k->dw);
  int64_t n_out = (int64_t)k->n * k->o * oh * ow;
  float *want = malloc(sizeof *want * (size_t)n_out);
  naive_conv(k, hx, hw, hb, want);
  pn_tensor *y = forward(l, x);
  const int64_t ys[4] = {k->n, k->o, oh, ow};
  assert_tensor_shape(y, 4, ys);
  assert_close(y, want, n_out, 1e-4);
  free(hx), free(hw), free(hb), free(want);
  pn_tensor_unref(y);
  pn_tensor_unref(x);
  pn_layer_free(l);
}

static void test_conv_values(void **state) {
  (void)state;
  const conv_case cases[] = {
      {2, 3, 7, 6, 4, 3, 3, 1, 1, 1, 1, 1, 1, 1},
      {2, 4, 9, 8, 6, 3, 2, 2, 1, 1, 0, 2, 1, 2},
      {1, 6, 5, 5, 6, 3, 3, 1, 2, 1, 1, 1, 1, 6},
      {3, 2, 4, 4, 5, 1, 1, 1, 1, 0, 0, 1, 1, 1},
  };
  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
    check_conv_case(&cases[i], 1);
    check_conv_case(&cases[i], 0);
  }
}

/* x [1, 1, 4, 4] = 0..15. */
static pn_tensor *ramp_4x4(void) {
  float v[16];
  for (int i = 0; i < 16; i++) v[i] = (float)i;
  int64_t s[4] = {1, 1, 4, 4};
  return host_f32(4, s, v);
}

static void check_pool(const char *feature, const char *pairs, pn_tensor *x, const float *want,
                       int64_t n) {
  pn_layer *l = layer3(feature, pairs, x->shape[1], x->shape[2], x->shape[3]);
  pn_tensor *y = forward(l, x);
  pn_shape o = pn_layer_out_shape(l);
  assert_int_equal(y->ndim, 4);
  for (int d = 0; d < 3; d++) assert_int_equal(y->shape[d + 1], o.dim[d]);
  assert_close(y, want, n, 1e-6);
  pn_tensor_unref(y);
  pn_layer_free(l);
}

static void test_pool_values(void **state) {
  (void)state;
  pn_tensor *x = ramp_4x4();
  check_pool("max_pool2d", "kernel=2", x, (const float[]){5, 7, 13, 15}, 4);
  check_pool("avg_pool2d", "kernel=2", x, (const float[]){2.5f, 4.5f, 10.5f, 12.5f}, 4);
  /* Padding 1, kernel 2, stride 2: windows at rows/cols {-1,0},{1,2},{3,4}. */
  check_pool("max_pool2d", "kernel=2,padding=1", x,
             (const float[]){0, 2, 3, 8, 10, 11, 12, 14, 15}, 9);
  check_pool("avg_pool2d", "kernel=2,padding=1", x,
             (const float[]){0, 0.75f, 0.75f, 3, 7.5f, 4.5f, 3, 6.75f, 3.75f}, 9);
  check_pool("avg_pool2d", "kernel=2,padding=1,count_include_pad=false", x,
             (const float[]){0, 1.5f, 3, 6, 7.5f, 9, 12, 13.5f, 15}, 9);
  /* ceil_mode: a 3x3 window, stride 2 on 4 -> 2 windows, the last one cut
   * at the input's edge (and the mean over what remains of it). */
  check_pool("avg_pool2d", "kernel=3,stride=2,ceil_mode=true", x,
             (const float[]){5, 6.5f, 11, 12.5f}, 4);
  check_pool("max_pool2d", "kernel=3,stride=2,ceil_mode=true", x,
             (const float[]){10, 11, 14, 15}, 4);
  check_pool("adaptive_avg_pool2d", NULL, x, (const float[]){7.5f}, 1);
  check_pool("adaptive_max_pool2d", "size=[1,2]", x, (const float[]){13, 15}, 2);
  /* 4 -> 3: windows [0,2), [1,3), [2,4). */
  check_pool("adaptive_avg_pool2d", "size=3", x,
             (const float[]){2.5f, 3.5f, 4.5f, 6.5f, 7.5f, 8.5f, 10.5f, 11.5f, 12.5f}, 9);
  check_pool("adaptive_concat_pool2d", NULL, x, (const float[]){15, 7.5f}, 2);
  pn_tensor_unref(x);

  /* Two channels: the concat pool puts every max before every mean. */
  float v[8] = {1, 2, 3, 4, -1, -2, -3, -4};
  int64_t s[4] = {1, 2, 2, 2};
  x = host_f32(4, s, v);
  check_pool("adaptive_concat_pool2d", NULL, x, (const float[]){4, -1, 2.5f, -2.5f}, 4);
  pn_tensor_unref(x);
}

static void test_relu6_identity(void **state) {
  (void)state;
  float v[6] = {-3, -0.5f, 0.5f, 5.5f, 6.5f, 100};
  int64_t s[2] = {2, 3}, f = 3;
  pn_tensor *x = host_f32(2, s, v);
  pn_tensor_set_requires_grad(x, 1);
  pn_shape in = pn_shape_make(1, &f);
  pn_layer *l = layer_n("relu6", "r6", NULL, &in, 1);
  pn_tensor *y = forward(l, x);
  assert_close(y, (const float[]){0, 0, 0.5f, 5.5f, 6, 6}, 6, 0);
  /* The gradient passes only where 0 < x < 6. */
  assert_int_equal(pn_backward(y, NULL), PN_OK);
  assert_close(pn_tensor_grad(x), (const float[]){0, 0, 1, 1, 0, 0}, 6, 0);
  pn_tensor_unref(y);
  pn_layer_free(l);
  l = layer_n("identity", "id", NULL, &in, 1);
  y = forward(l, x);
  assert_close(y, v, 6, 0);
  pn_tensor_unref(y);
  pn_layer_free(l);
  pn_tensor_unref(x);
}

static void test_add_concat_values(void **state) {
  (void)state;
  int64_t s[4] = {2, 1, 1, 2}, s2[4] = {2, 2, 1, 2};
  pn_tensor *a = host_f32(4, s, (const float[]){1, 2, 3, 4});
  pn_tensor *b = host_f32(4, s, (const float[]){10, 20, 30, 40});
  pn_tensor *c = host_f32(4, s2, (const float[]){-1, -2, -3, -4, -5, -6, -7, -8});
  pn_shape one = shape3(1, 1, 2), two = shape3(2, 1, 2);
  pn_tensor *ab[3] = {a, b, a};
  pn_shape ins[3] = {one, one, one};
  pn_layer *l = layer_n("add", "add", NULL, ins, 3);
  pn_tensor *y = forward_n(l, ab, 3);
  assert_close(y, (const float[]){12, 24, 36, 48}, 4, 0);
  pn_tensor_unref(y);
  /* A batch whose shapes disagree is refused, not broadcast. */
  pn_tensor *ac[2] = {a, c};
  pn_tensor *bad = NULL;
  assert_int_not_equal(pn_layer_forward(l, ac, 2, &bad), PN_OK);
  assert_non_null(strstr(pn_last_error(), "input 1 has shape 2x2x1x2"));
  pn_layer_free(l);

  pn_shape cat_in[3] = {one, two, one};
  pn_tensor *parts[3] = {a, c, b};
  l = layer_n("concat", "cat", NULL, cat_in, 3);
  assert_out3(l, 4, 1, 2);
  y = forward_n(l, parts, 3);
  const int64_t ys[4] = {2, 4, 1, 2};
  assert_tensor_shape(y, 4, ys);
  assert_close(y, (const float[]){1, 2, -1, -2, -3, -4, 10, 20, 3, 4, -5, -6, -7, -8, 30, 40}, 16,
               0);
  pn_tensor_unref(y);
  pn_layer_free(l);
  pn_tensor_unref(a), pn_tensor_unref(b), pn_tensor_unref(c);
}

/* ------------------------------------------------------------ batch_norm */

/* x [4, 2, 1, 3]: channel 0 holds 0..11, channel 1 the same times -2 + 1. */
static pn_tensor *bn_input(float *host) {
  for (int n = 0; n < 4; n++)
    for (int k = 0; k < 3; k++) {
      float v = (float)(n * 3 + k);
      host[(n * 2 + 0) * 3 + k] = v;
      host[(n * 2 + 1) * 3 + k] = -2 * v + 1;
    }
  int64_t s[4] = {4, 2, 1, 3};
  return host_f32(4, s, host);
}

static void test_batch_norm_train_eval(void **state) {
  (void)state;
  float hx[24], want[24];
  pn_tensor *x = bn_input(hx);
  pn_shape in = shape3(2, 1, 3);
  pn_layer *l = layer_n("batch_norm", "bn", "eps=0.001,momentum=0.25", &in, 1);
  const float w[2] = {2, -1}, b[2] = {0.5f, 3};
  set_param(l, "weight", w, 2);
  set_param(l, "bias", b, 2);
  /* Channel 0: 0..11, mean 5.5, biased var 143/12, unbiased 13; channel 1:
   * mean -10, biased var 4*143/12, unbiased 52. */
  const double mean[2] = {5.5, -10}, var[2] = {143.0 / 12, 4 * 143.0 / 12};
  const double unbiased[2] = {13, 52};
  for (int i = 0; i < 24; i++) {
    int ch = (i / 3) % 2;
    want[i] = (float)((hx[i] - mean[ch]) / sqrt(var[ch] + 1e-3) * w[ch] + b[ch]);
  }
  pn_tensor *y = forward(l, x);
  assert_close(y, want, 24, 1e-5);
  pn_tensor_unref(y);
  const float rm1[2] = {(float)(0.25 * mean[0]), (float)(0.25 * mean[1])};
  const float rv1[2] = {(float)(0.75 + 0.25 * unbiased[0]), (float)(0.75 + 0.25 * unbiased[1])};
  assert_close(pn_layer_buffer_by_name(l, "running_mean"), rm1, 2, 1e-5);
  assert_close(pn_layer_buffer_by_name(l, "running_var"), rv1, 2, 1e-5);
  assert_int_equal(i64_scalar(pn_layer_buffer_by_name(l, "num_batches_tracked")), 1);

  y = forward(l, x);
  pn_tensor_unref(y);
  const float rm2[2] = {(float)(0.75 * rm1[0] + 0.25 * mean[0]),
                        (float)(0.75 * rm1[1] + 0.25 * mean[1])};
  const float rv2[2] = {(float)(0.75 * rv1[0] + 0.25 * unbiased[0]),
                        (float)(0.75 * rv1[1] + 0.25 * unbiased[1])};
  assert_close(pn_layer_buffer_by_name(l, "running_mean"), rm2, 2, 1e-5);
  assert_close(pn_layer_buffer_by_name(l, "running_var"), rv2, 2, 1e-5);
  assert_int_equal(i64_scalar(pn_layer_buffer_by_name(l, "num_batches_tracked")), 2);

  /* Evaluation: the running statistics normalise, and nothing updates. */
  pn_layer_set_training(l, 0);
  float *mean_before = tu_host(pn_layer_buffer_by_name(l, "running_mean"));
  float *var_before = tu_host(pn_layer_buffer_by_name(l, "running_var"));
  for (int i = 0; i < 24; i++) {
    int ch = (i / 3) % 2;
    want[i] = (float)((hx[i] - rm2[ch]) / sqrt(rv2[ch] + 1e-3) * w[ch] + b[ch]);
  }
  y = forward(l, x);
  assert_close(y, want, 24, 1e-5);
  pn_tensor_unref(y);
  assert_close(pn_layer_buffer_by_name(l, "running_mean"), mean_before, 2, 0);
  assert_close(pn_layer_buffer_by_name(l, "running_var"), var_before, 2, 0);
  assert_int_equal(i64_scalar(pn_layer_buffer_by_name(l, "num_batches_tracked")), 2);
  free(mean_before);
  free(var_before);
  pn_layer_free(l);
  pn_tensor_unref(x);
}

static void test_batch_norm_1d_and_errors(void **state) {
  (void)state;
  /* [N, C] samples, no affine: each column normalised to mean 0, var 1. */
  int64_t s[2] = {3, 2}, c = 2;
  pn_tensor *x = host_f32(2, s, (const float[]){1, 10, 2, 20, 3, 60});
  pn_shape in = pn_shape_make(1, &c);
  pn_layer *l = layer_n("batch_norm", "bn", "affine=false,eps=0", &in, 1);
  pn_tensor *y = forward(l, x);
  const double r = sqrt(1.5);
  const double d1 = 10 - 30, d2 = 20 - 30, d3 = 60 - 30, sd = sqrt((d1 * d1 + d2 * d2 + d3 * d3) / 3);
  assert_close(y,
               (const float[]){(float)-r, (float)(d1 / sd), 0, (float)(d2 / sd), (float)r,
                               (float)(d3 / sd)},
               6, 1e-5);
  pn_tensor_unref(y);
  pn_tensor_unref(x);

  /* One value per channel cannot be normalised while training. */
  int64_t one[2] = {1, 2};
  x = host_f32(2, one, (const float[]){1, 2});
  assert_int_not_equal(pn_layer_forward(l, &x, 1, &y), PN_OK);
  assert_non_null(strstr(pn_last_error(), "more than one value per channel"));
  pn_layer_set_training(l, 0);
  /* Evaluation is fine, with the running statistics of the first batch:
   * mean 0.1 * [2, 30], variance 0.9 + 0.1 * unbiased [1, 700]. */
  y = forward(l, x);
  assert_close(y, (const float[]){(float)((1 - 0.2) / 1.0), (float)((2 - 3.0) / sqrt(70.9))}, 2,
               1e-5);
  pn_tensor_unref(y);
  pn_tensor_unref(x);
  /* Wrong channel count at forward time. */
  int64_t s3[2] = {2, 3};
  x = host_f32(2, s3, (const float[]){1, 2, 3, 4, 5, 6});
  assert_int_not_equal(pn_layer_forward(l, &x, 1, &y), PN_OK);
  assert_non_null(strstr(pn_last_error(), "2 channels"));
  pn_tensor_unref(x);
  pn_layer_free(l);
}

/* ------------------------------------------------------------ gradients */

static void gradcheck(const char *feature, const char *pairs, int ndim, const int64_t *dims) {
  pn_gradcheck_result r;
  pn_config *c = tu_config(feature, pairs);
  pn_shape in = pn_shape_make(ndim, dims);
  if (pn_gradcheck(feature, c, &in, 3, &r) != PN_OK)
    fail_msg("gradcheck %s %s: %s", feature, pairs ? pairs : "", pn_last_error());
  if (!r.passed)
    fail_msg("gradcheck %s %s: worst %s error %g", feature, pairs ? pairs : "", r.worst,
             r.max_abs_err);
  assert_true(r.checked > 0);
  pn_config_free(c);
}

static void test_gradients(void **state) {
  (void)state;
  const int64_t img[4] = {2, 4, 6, 5}, vec[2] = {5, 3};
  gradcheck("conv2d", "out=4,kernel=3,padding=1,stride=2,groups=2", 4, img);
  gradcheck("conv2d", "out=3,kernel=[2,3],dilation=[2,1],bias=false", 4, img);
  gradcheck("batch_norm", NULL, 4, img);
  gradcheck("batch_norm", "affine=false", 2, vec);
  gradcheck("avg_pool2d", "kernel=2,stride=1,padding=1,count_include_pad=false", 4, img);
  gradcheck("adaptive_avg_pool2d", "size=[2,3]", 4, img);
  gradcheck("relu6", NULL, 4, img);
}

/* Max pools send each output's gradient to its window's first maximum.
 * Finite differences cannot check this on random inputs (two values within
 * the step of each other swap places), so the inputs here are distinct
 * multiples of 1/8 and the expected gradient comes from a direct search. */
static void check_max_grad(const char *feature, const char *pairs, int64_t h, int64_t w) {
  const int64_t n = 2, c = 3, hw = h * w, total = n * c * hw;
  float *xv = malloc(sizeof *xv * (size_t)total), *want = calloc((size_t)total, sizeof *want);
  for (int64_t i = 0; i < total; i++) xv[i] = (float)((i * 37) % total) / 8.0f;
  int64_t xs[4] = {n, c, h, w};
  pn_tensor *x = host_f32(4, xs, xv);
  pn_tensor_set_requires_grad(x, 1);
  pn_layer *l = layer3(feature, pairs, c, h, w);
  pn_tensor *y = forward(l, x);
  int64_t ny = pn_tensor_numel(y), per = ny / (n * c);
  float *g = malloc(sizeof *g * (size_t)ny), *yv = tu_host(y);
  for (int64_t i = 0; i < ny; i++) g[i] = (float)(i % 5) - 1.5f;
  pn_tensor *gy = host_f32(y->ndim, y->shape, g);
  assert_int_equal(pn_backward(y, gy), PN_OK);
  /* Each output value occurs once in its plane: that is where it came from. */
  for (int64_t o = 0; o < ny; o++) {
    const float *plane = xv + (o / per) * hw;
    int64_t at = -1;
    for (int64_t k = 0; k < hw && at < 0; k++)
      if (plane[k] == yv[o]) at = k;
    assert_true(at >= 0);
    want[(o / per) * hw + at] += g[o];
  }
  assert_close(pn_tensor_grad(x), want, total, 1e-6);
  free(xv), free(want), free(g), free(yv);
  pn_tensor_unref(gy), pn_tensor_unref(y), pn_tensor_unref(x);
  pn_layer_free(l);
}

static void test_max_pool_gradients(void **state) {
  (void)state;
  check_max_grad("max_pool2d", "kernel=3,stride=2,padding=1,ceil_mode=true", 6, 5);
  check_max_grad("max_pool2d", "kernel=[2,3],stride=1", 5, 6);
  check_max_grad("adaptive_max_pool2d", "size=[2,3]", 5, 7);
  check_max_grad("adaptive_max_pool2d", "size=4", 3, 3); /* windows overlap */
  /* A tie: all to the first maximum in the window, as PyTorch. */
  const char *features[2] = {"max_pool2d", "adaptive_max_pool2d"};
  for (int f = 0; f < 2; f++) {
    int64_t xs[4] = {1, 1, 2, 2};
    pn_tensor *x = host_f32(4, xs, (const float[]){-1, 2, 2, 2});
    pn_tensor_set_requires_grad(x, 1);
    pn_layer *l = layer3(features[f], f == 0 ? "kernel=2" : NULL, 1, 2, 2);
    pn_tensor *y = forward(l, x);
    assert_int_equal(pn_backward(y, NULL), PN_OK);
    assert_close(pn_tensor_grad(x), (const float[]){0, 1, 0, 0}, 4, 0);
    pn_tensor_unref(y), pn_tensor_unref(x);
    pn_layer_free(l);
  }
}

/* Gradients through the multi-input joins reach every input. */
static void test_join_gradients(void **state) {
  (void)state;
  int64_t s[4] = {2, 1, 1, 2}, s2[4] = {2, 2, 1, 2};
  pn_tensor *a = host_f32(4, s, (const float[]){1, 2, 3, 4});
  pn_tensor *c = host_f32(4, s2, (const float[]){-1, -2, -3, -4, -5, -6, -7, -8});
  pn_tensor_set_requires_grad(a, 1);
  pn_tensor_set_requires_grad(c, 1);
  pn_shape ins[2] = {shape3(1, 1, 2), shape3(2, 1, 2)};
  pn_tensor *parts[3] = {c, a, a};
  pn_shape cat_in[3] = {ins[1], ins[0], ins[0]};
  pn_layer *l = layer_n("concat", "cat", NULL, cat_in, 3);
  pn_tensor *y = forward_n(l, parts, 3);
  float g[16];
  for (int i = 0; i < 16; i++) g[i] = (float)(i + 1);
  pn_tensor *gy = host_f32(4, y->shape, g);
  assert_int_equal(pn_backward(y, gy), PN_OK);
  /* Per sample, y = [c (4 values), a (2), a (2)]; a collects both copies. */
  assert_close(pn_tensor_grad(a), (const float[]){5 + 7, 6 + 8, 13 + 15, 14 + 16}, 4, 0);
  assert_close(pn_tensor_grad(c), (const float[]){1, 2, 3, 4, 9, 10, 11, 12}, 8, 0);
  pn_tensor_unref(gy);
  pn_tensor_unref(y);
  pn_layer_free(l);
  pn_tensor_unref(a);
  pn_tensor_unref(c);
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
      ON("cpu", test_conv_shapes_and_params),
      ON("cpu", test_conv_width_divisor),
      ON("cpu", test_pool_shapes),
      ON("cpu", test_join_shapes),
      ON("cpu", test_batch_norm_params_and_buffers),
      ON("cpu", test_bad_configs),
      BOTH(test_conv_init),
      BOTH(test_conv_values),
      BOTH(test_pool_values),
      BOTH(test_relu6_identity),
      BOTH(test_add_concat_values),
      BOTH(test_batch_norm_train_eval),
      BOTH(test_batch_norm_1d_and_errors),
      BOTH(test_gradients),
      BOTH(test_max_pool_gradients),
      BOTH(test_join_gradients),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
