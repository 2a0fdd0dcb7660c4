/* conv2d: the reference kernel against a hand-computed cross-correlation,
 * its gradients against central finite differences, the cpu kernels
 * (forward, input and weight gradients) against the reference on awkward
 * shapes and thread counts, and the errors bad shapes get. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "testutil.h"

typedef struct ccase {
  const char *label;
  int64_t n, c, h, w, o, kh, kw;
  int sy, sx, py, px, dy, dx, groups, bias;
} ccase;

static pn_conv2d_params geometry(const ccase *k) {
  pn_conv2d_params p = {{k->sy, k->sx}, {k->py, k->px}, {k->dy, k->dx}, k->groups};
  return p;
}

static int64_t out_len(int64_t in, int64_t k, int s, int p, int d) {
  return (in + 2 * p - d * (k - 1) - 1) / s + 1;
}

/* ------------------------------------------------------------ semantics */

/* Cross-correlation, not convolution: the kernel is not flipped. */
static void test_reference_by_hand(void **state) {
  (void)state;
  pn_device *dev = tu_device("reference");
  float xv[9] = {1, 2, 3, 4, 5, 6, 7, 8, 9}, wv[4] = {1, 2, 3, 4}, bv[1] = {0.5f};
  int64_t xs[4] = {1, 1, 3, 3}, ws[4] = {1, 1, 2, 2}, bs[1] = {1};
  pn_tensor *x = tu_check(pn_tensor_from_host(dev, PN_F32, 4, xs, xv), "x");
  pn_tensor *w = tu_check(pn_tensor_from_host(dev, PN_F32, 4, ws, wv), "w");
  pn_tensor *b = tu_check(pn_tensor_from_host(dev, PN_F32, 1, bs, bv), "b");
  pn_conv2d_params p = {{1, 1}, {0, 0}, {1, 1}, 1};
  pn_tensor *y = tu_check(pn_conv2d(x, w, b, &p), "conv2d");
  assert_int_equal(y->ndim, 4);
  assert_int_equal(y->shape[2], 2);
  assert_int_equal(y->shape[3], 2);
  const float want[4] = {37.5f, 47.5f, 67.5f, 77.5f};
  for (int i = 0; i < 4; i++) assert_float_equal(pn_tensor_get_f32(y, i), want[i], 1e-5);
  pn_tensor_unref(y);
  /* Padding 1, stride 2: corners see one row and column of zeros. */
  pn_conv2d_params q = {{2, 2}, {1, 1}, {1, 1}, 1};
  y = tu_check(pn_conv2d(x, w, NULL, &q), "conv2d padded");
  assert_int_equal(y->shape[2], 2);
  assert_int_equal(y->shape[3], 2);
  /* out[0,0] = w[1,1]*x[0,0]; out[0,1] = w[1,0]*x[0,1] + w[1,1]*x[0,2];
   * out[1,0] = w[0,1]*x[1,0] + w[1,1]*x[2,0]; out[1,1] = the 2x2 at (1,1). */
  const float padded[4] = {4 * 1, 3 * 2 + 4 * 3, 2 * 4 + 4 * 7, 1 * 5 + 2 * 6 + 3 * 8 + 4 * 9};
  for (int i = 0; i < 4; i++) assert_float_equal(pn_tensor_get_f32(y, i), padded[i], 1e-5);
  pn_tensor *ts[] = {x, w, b, y};
  for (int i = 0; i < 4; i++) pn_tensor_unref(ts[i]);
}

static void test_output_sizes(void **state) {
  (void)state;
  pn_device *dev = tu_device("reference");
  /* {H, k, stride, pad, dilation, expected} computed by PyTorch's rule. */
  const int rows[][6] = {{7, 3, 2, 1, 1, 4}, {10, 3, 2, 0, 2, 3}, {224, 7, 2, 3, 1, 112},
                         {5, 5, 1, 0, 1, 1}, {6, 1, 2, 0, 1, 3},  {9, 3, 3, 1, 2, 3},
                         {2, 3, 1, 1, 1, 2}};
  for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
    const int *r = rows[i];
    int64_t xs[4] = {1, 1, r[0], r[0] + 1}, ws[4] = {1, 1, r[1], r[1]};
    pn_tensor *x = tu_check(pn_zeros(dev, 4, xs), "x"), *w = tu_check(pn_zeros(dev, 4, ws), "w");
    pn_conv2d_params p = {{r[2], r[2]}, {r[3], r[3]}, {r[4], r[4]}, 1};
    pn_tensor *y = tu_check(pn_conv2d(x, w, NULL, &p), "conv2d");
    assert_int_equal(y->shape[2], r[5]);
    assert_int_equal(y->shape[3], out_len(r[0] + 1, r[1], r[2], r[3], r[4]));
    pn_tensor_unref(x);
    pn_tensor_unref(w);
    pn_tensor_unref(y);
  }
}

/* ------------------------------------------------------------ errors */

static void expect_error(pn_device *dev, const int64_t *xs, const int64_t *ws, int64_t bias,
                         pn_conv2d_params p, int xdim, const char *needle) {
  pn_tensor *x = tu_check(pn_zeros(dev, xdim, xs), "x"), *w = tu_check(pn_zeros(dev, 4, ws), "w");
  int64_t bs[1] = {bias};
  pn_tensor *b = bias ? tu_check(pn_zeros(dev, 1, bs), "b") : NULL;
  pn_tensor *y = pn_conv2d(x, w, b, &p);
  if (y) fail_msg("conv2d accepted a bad input (expected '%s')", needle);
  if (!strstr(pn_last_error(), needle))
    fail_msg("error '%s' does not mention '%s'", pn_last_error(), needle);
  assert_true(strstr(pn_last_error(), "conv2d") != NULL);
  pn_tensor_unref(x);
  pn_tensor_unref(w);
  pn_tensor_unref(b);
}

static void test_errors(void **state) {
  (void)state;
  pn_device *dev = tu_device("reference");
  pn_conv2d_params ok = {{1, 1}, {0, 0}, {1, 1}, 1};
  int64_t x4[4] = {2, 3, 8, 8}, w4[4] = {4, 3, 3, 3};
  int64_t x3[3] = {3, 8, 8};
  expect_error(dev, x3, w4, 0, ok, 3, "3x8x8");
  int64_t wc[4] = {4, 2, 3, 3};
  expect_error(dev, x4, wc, 0, ok, 4, "4x2x3x3");
  expect_error(dev, x4, w4, 5, ok, 4, "bias must be [4]");
  pn_conv2d_params g2 = ok;
  g2.groups = 2;
  expect_error(dev, x4, w4, 0, g2, 4, "groups 2");
  int64_t wbig[4] = {4, 3, 9, 3};
  expect_error(dev, x4, wbig, 0, ok, 4, "height 8");
  pn_conv2d_params dil = ok;
  dil.dilation[1] = 4; /* 3x3 dilated by 4 spans 9 columns > 8 */
  expect_error(dev, x4, w4, 0, dil, 4, "width 8");
  pn_conv2d_params s0 = ok;
  s0.stride[0] = 0;
  expect_error(dev, x4, w4, 0, s0, 4, "stride 0");
  pn_conv2d_params neg = ok;
  neg.padding[1] = -1;
  expect_error(dev, x4, w4, 0, neg, 4, "padding -1");
}

/* ------------------------------------------------------------ finite differences */

/* L = sum(conv(x, w, b) * r): each gradient element is checked. */
static double loss_of(const ccase *k, pn_device *dev, float *const *vals, const float *r) {
  int64_t xs[4] = {k->n, k->c, k->h, k->w}, ws[4] = {k->o, k->c / k->groups, k->kh, k->kw};
  int64_t bs[1] = {k->o};
  pn_tensor *x = tu_check(pn_tensor_from_host(dev, PN_F32, 4, xs, vals[0]), "x");
  pn_tensor *w = tu_check(pn_tensor_from_host(dev, PN_F32, 4, ws, vals[1]), "w");
  pn_tensor *b = k->bias ? tu_check(pn_tensor_from_host(dev, PN_F32, 1, bs, vals[2]), "b") : NULL;
  pn_conv2d_params p = geometry(k);
  pn_tensor *y = tu_check(pn_conv2d(x, w, b, &p), k->label);
  float *yh = tu_host(y);
  double l = 0.0;
  for (int64_t i = 0; i < pn_tensor_numel(y); i++) l += (double)yh[i] * r[i];
  free(yh);
  pn_tensor_unref(x);
  pn_tensor_unref(w);
  pn_tensor_unref(b);
  pn_tensor_unref(y);
  return l;
}

static void check_fd(const ccase *k) {
  pn_device *dev = tu_device("reference");
  uint64_t st = 7;
  int64_t shapes[3][4] = {{k->n, k->c, k->h, k->w}, {k->o, k->c / k->groups, k->kh, k->kw}, {k->o}};
  int ndims[3] = {4, 4, 1}, n_in = k->bias ? 3 : 2;
  float *vals[3] = {NULL, NULL, NULL};
  pn_tensor *t[3] = {NULL, NULL, NULL};
  for (int i = 0; i < n_in; i++) {
    pn_shape s = pn_shape_make(ndims[i], shapes[i]);
    vals[i] = malloc(sizeof(float) * (size_t)pn_shape_numel(&s));
    tu_fill_uniform(vals[i], pn_shape_numel(&s), -1.0f, 1.0f, &st);
    t[i] = tu_check(pn_tensor_from_host(dev, PN_F32, ndims[i], shapes[i], vals[i]), "input");
    pn_tensor_set_requires_grad(t[i], 1);
  }
  pn_conv2d_params p = geometry(k);
  pn_tensor *y = tu_check(pn_conv2d(t[0], t[1], t[2], &p), k->label);
  int64_t ny = pn_tensor_numel(y);
  float *r = malloc(sizeof *r * (size_t)ny);
  tu_fill_uniform(r, ny, -1.0f, 1.0f, &st);
  pn_tensor *rt = tu_check(pn_tensor_from_host(dev, PN_F32, 4, y->shape, r), "r");
  if (pn_backward(y, rt) != PN_OK) fail_msg("%s: backward: %s", k->label, pn_last_error());
  const char *names[3] = {"dx", "dw", "db"};
  const float eps = 1e-2f;
  for (int i = 0; i < n_in; i++) {
    pn_tensor *g = pn_tensor_grad(t[i]);
    if (!g) fail_msg("%s: %s missing", k->label, names[i]);
    float *gh = tu_host(g);
    for (int64_t j = 0; j < pn_tensor_numel(t[i]); j++) {
      float keep = vals[i][j];
      vals[i][j] = keep + eps;
      double lp = loss_of(k, dev, vals, r);
      vals[i][j] = keep - eps;
      double lm = loss_of(k, dev, vals, r);
      vals[i][j] = keep;
      double num = (lp - lm) / (2.0 * eps);
      if (fabs(num - gh[j]) > 1e-3 + 1e-3 * fabs(num))
        fail_msg("%s: %s[%lld] analytic %.6f, numeric %.6f", k->label, names[i], (long long)j,
                 gh[j], num);
    }
    free(gh);
  }
  free(r);
  pn_tensor_unref(rt);
  pn_tensor_unref(y);
  for (int i = 0; i < n_in; i++) {
    pn_tensor_unref(t[i]);
    free(vals[i]);
  }
}

/* label, n c h w, o kh kw, sy sx py px dy dx, groups, bias */
static const ccase fd_cases[] = {
    {"3x3 pad 1", 2, 3, 5, 4, 4, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1},
    {"stride 2x1 dil 2x1 groups 2", 1, 4, 7, 5, 2, 3, 2, 2, 1, 1, 0, 2, 1, 2, 1},
    {"depthwise stride 2", 2, 3, 5, 6, 3, 3, 3, 2, 2, 1, 1, 1, 1, 3, 1},
    {"1x1 no bias", 2, 3, 3, 3, 2, 1, 1, 1, 1, 0, 0, 1, 1, 1, 0},
    {"5x5 stride 3 pad 2", 1, 2, 6, 7, 3, 5, 5, 3, 3, 2, 2, 1, 1, 1, 1},
};

static void test_finite_differences(void **state) {
  (void)state;
  for (size_t i = 0; i < sizeof fd_cases / sizeof fd_cases[0]; i++) check_fd(&fd_cases[i]);
}

/* ------------------------------------------------------------ cpu vs reference */

static const ccase cmp_cases[] = {
    {"1x1", 3, 5, 9, 7, 17, 1, 1, 1, 1, 0, 0, 1, 1, 1, 1},
    {"1x1 stride 2", 3, 17, 9, 7, 5, 1, 1, 2, 2, 0, 0, 1, 1, 1, 0},
    {"1x1 big", 3, 64, 20, 20, 48, 1, 1, 1, 1, 0, 0, 1, 1, 1, 1},
    {"3x3 pad 1", 3, 3, 11, 13, 5, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1},
    {"3x3 pad 1 wide", 1, 17, 33, 31, 33, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1},
    {"7x7 stride 2 pad 3", 3, 3, 29, 30, 17, 7, 7, 2, 2, 3, 3, 1, 1, 1, 0},
    {"dilation 2", 3, 5, 15, 14, 5, 3, 3, 1, 1, 2, 2, 2, 2, 1, 1},
    {"groups 2", 3, 6, 12, 11, 10, 3, 3, 1, 1, 1, 1, 1, 1, 2, 1},
    {"depthwise 3x3", 3, 17, 12, 13, 17, 3, 3, 1, 1, 1, 1, 1, 1, 17, 1},
    {"depthwise stride 2", 3, 5, 13, 12, 5, 3, 3, 2, 2, 1, 1, 1, 1, 5, 0},
    {"depthwise 5x5 dil 2", 1, 3, 16, 17, 3, 5, 5, 1, 1, 4, 4, 2, 2, 3, 1},
    {"channel multiplier", 3, 3, 9, 9, 6, 3, 3, 1, 1, 1, 1, 1, 1, 3, 1},
    {"stride 2 odd", 3, 5, 15, 13, 17, 3, 3, 2, 2, 1, 1, 1, 1, 1, 1},
    {"stride 2 odd no pad", 1, 1, 9, 11, 3, 3, 3, 2, 2, 0, 0, 1, 1, 1, 1},
    {"asymmetric", 3, 3, 10, 13, 5, 2, 5, 1, 3, 0, 2, 2, 1, 1, 1},
    {"small planes, batch 16", 16, 17, 5, 5, 32, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1},
    {"7x7 planes, batch 3", 3, 64, 7, 7, 64, 3, 3, 1, 1, 1, 1, 1, 1, 1, 0},
    {"1x1 small planes", 16, 32, 4, 4, 48, 1, 1, 1, 1, 0, 0, 1, 1, 1, 1},
    {"1x1 8x8 planes, batch 40, groups 4", 40, 64, 8, 8, 64, 1, 1, 1, 1, 0, 0, 1, 1, 4, 1},
    {"1x1 stride 2, batch 33", 33, 20, 15, 15, 30, 1, 1, 2, 2, 0, 0, 1, 1, 1, 1},
    {"kernel larger than stride pad", 1, 3, 4, 4, 2, 3, 3, 1, 1, 2, 2, 1, 1, 1, 1},
    /* depthwise: stride-phase planes, even/odd row splits with a vector
     * body and scalar tails, tap groups over 9, long planes, wide padding */
    {"depthwise stride 2 wide", 2, 3, 9, 70, 3, 3, 3, 2, 2, 1, 1, 1, 1, 3, 1},
    {"depthwise stride 2 odd no pad", 2, 4, 11, 67, 4, 3, 3, 2, 2, 0, 0, 1, 1, 4, 1},
    {"depthwise stride 3", 2, 3, 13, 17, 3, 3, 3, 3, 3, 1, 1, 1, 1, 3, 1},
    {"depthwise 1x1 stride 2", 2, 3, 9, 8, 3, 1, 1, 2, 2, 0, 0, 1, 1, 3, 1},
    {"depthwise 5x5 stride 2", 2, 3, 15, 18, 3, 5, 5, 2, 2, 2, 2, 1, 1, 3, 0},
    {"depthwise long planes", 2, 2, 50, 50, 2, 3, 3, 1, 1, 1, 1, 1, 1, 2, 1},
    {"depthwise strides 2x1", 2, 3, 12, 9, 3, 3, 2, 2, 1, 1, 0, 1, 2, 3, 1},
    {"depthwise strides 1x2 dil 2", 2, 3, 12, 21, 3, 3, 3, 1, 2, 2, 1, 2, 2, 3, 1},
    {"depthwise pad 2 small", 3, 5, 2, 3, 5, 3, 3, 1, 1, 2, 2, 1, 1, 5, 1},
    {"depthwise 7x7 planes", 16, 24, 7, 7, 24, 3, 3, 1, 1, 1, 1, 1, 1, 24, 0},
    /* im2col's vector rows: under 4 columns (whole samples), and blocks that
     * split 6-column rows into 3 + 3 (stride 1 along x, padded borders) */
    {"3x3 planes, batch 4", 4, 8, 3, 3, 8, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1},
    {"6-wide planes, blocks split rows", 1, 64, 31, 6, 8, 3, 3, 1, 1, 1, 1, 1, 1, 1, 0},
};

static pn_tensor *on(pn_device *dev, const float *v, int ndim, const int64_t *shape) {
  return tu_check(pn_tensor_from_host(dev, PN_F32, ndim, shape, v), "from_host");
}

static void compare(const char *label, const char *what, pn_tensor *got, pn_tensor *want) {
  assert_int_equal(pn_tensor_numel(got), pn_tensor_numel(want));
  float *a = tu_host(got), *b = tu_host(want);
  double e = tu_norm_err(a, b, pn_tensor_numel(want));
  free(a);
  free(b);
  if (!(e < 2e-5)) fail_msg("%s: %s: cpu differs from reference by %g", label, what, e);
}

/* The three kernels on each device, called through pn_op_run. */
static void run_ops(const ccase *k, pn_device *dev, float *const *v, pn_tensor **res) {
  int64_t xs[4] = {k->n, k->c, k->h, k->w}, ws[4] = {k->o, k->c / k->groups, k->kh, k->kw};
  int64_t bs[1] = {k->o};
  int64_t ys[4] = {k->n, k->o, out_len(k->h, k->kh, k->sy, k->py, k->dy),
                   out_len(k->w, k->kw, k->sx, k->px, k->dx)};
  pn_tensor *x = on(dev, v[0], 4, xs), *w = on(dev, v[1], 4, ws), *b = on(dev, v[2], 1, bs);
  pn_tensor *gy = on(dev, v[3], 4, ys);
  pn_conv2d_params g = geometry(k);
  pn_op_params p;
  memset(&p, 0, sizeof p);
  pn_conv2d_params_pack(&g, &p);
  pn_tensor *in_f[3] = {x, w, b}, *in_gi[2] = {gy, w}, *in_gw[2] = {gy, x};
  pn_shape sy = pn_shape_make(4, ys), sx = pn_shape_make(4, xs), sw = pn_shape_make(4, ws);
  res[0] = tu_check(pn_op_run(PN_OP_CONV2D, &p, in_f, k->bias ? 3 : 2, &sy, PN_F32), "conv2d");
  res[1] = tu_check(pn_op_run(PN_OP_CONV2D_GRAD_INPUT, &p, in_gi, 2, &sx, PN_F32), "grad_input");
  res[2] = tu_check(pn_op_run(PN_OP_CONV2D_GRAD_WEIGHT, &p, in_gw, 2, &sw, PN_F32), "grad_weight");
  pn_tensor *ts[] = {x, w, b, gy};
  for (int i = 0; i < 4; i++) pn_tensor_unref(ts[i]);
}

static void compare_case(const ccase *k, pn_device *cpu, pn_device *ref, uint64_t *st) {
  int64_t oh = out_len(k->h, k->kh, k->sy, k->py, k->dy),
          ow = out_len(k->w, k->kw, k->sx, k->px, k->dx);
  int64_t len[4] = {k->n * k->c * k->h * k->w, k->o * (k->c / k->groups) * k->kh * k->kw, k->o,
                    k->n * k->o * oh * ow};
  float *v[4];
  for (int i = 0; i < 4; i++) {
    v[i] = malloc(sizeof(float) * (size_t)len[i]);
    tu_fill_uniform(v[i], len[i], -1.0f, 1.0f, st);
  }
  pn_tensor *a[3], *b[3];
  run_ops(k, cpu, v, a);
  run_ops(k, ref, v, b);
  const char *what[3] = {"forward", "grad_input", "grad_weight"};
  for (int i = 0; i < 3; i++) {
    compare(k->label, what[i], a[i], b[i]);
    pn_tensor_unref(a[i]);
    pn_tensor_unref(b[i]);
  }
  for (int i = 0; i < 4; i++) free(v[i]);
}

static void test_cpu_matches_reference(void **state) {
  (void)state;
  pn_device *cpu = tu_device("cpu"), *ref = tu_device("reference");
  uint64_t st = 11;
  /* 1 thread, then an odd count that splits work unevenly, then the default. */
  const int threads[] = {1, 3, 0};
  for (int t = 0; t < 3; t++) {
    if (cpu->iface->set_threads)
      assert_int_equal(cpu->iface->set_threads(cpu->ctx, threads[t]), PN_OK);
    for (size_t i = 0; i < sizeof cmp_cases / sizeof cmp_cases[0]; i++)
      compare_case(&cmp_cases[i], cpu, ref, &st);
  }
}

/* pn_conv2d's backward through autograd on cpu equals the reference's. */
static void test_cpu_autograd(void **state) {
  (void)state;
  pn_device *devs[2] = {tu_device("cpu"), tu_device("reference")};
  const ccase *k = &cmp_cases[12];
  int64_t xs[4] = {k->n, k->c, k->h, k->w}, ws[4] = {k->o, k->c / k->groups, k->kh, k->kw};
  int64_t bs[1] = {k->o};
  float *grads[2][3];
  for (int d = 0; d < 2; d++) {
    uint64_t st = 5;
    pn_tensor *x = tu_random(devs[d], 4, xs, -1, 1, &st),
              *w = tu_random(devs[d], 4, ws, -1, 1, &st);
    pn_tensor *b = tu_random(devs[d], 1, bs, -1, 1, &st);
    pn_tensor *t[3] = {x, w, b};
    for (int i = 0; i < 3; i++) pn_tensor_set_requires_grad(t[i], 1);
    pn_conv2d_params p = geometry(k);
    pn_tensor *y = tu_check(pn_conv2d(x, w, b, &p), "conv2d");
    pn_tensor *sq = tu_check(pn_square(y), "square");
    pn_tensor *l = tu_check(pn_sum_all(sq), "sum");
    assert_int_equal(pn_backward(l, NULL), PN_OK);
    for (int i = 0; i < 3; i++) grads[d][i] = tu_host(tu_check(pn_tensor_grad(t[i]), "grad"));
    pn_tensor *ts[] = {x, w, b, y, sq, l};
    for (int i = 0; i < 6; i++) pn_tensor_unref(ts[i]);
  }
  int64_t n[3] = {xs[0] * xs[1] * xs[2] * xs[3], ws[0] * ws[1] * ws[2] * ws[3], bs[0]};
  for (int i = 0; i < 3; i++) {
    double e = tu_norm_err(grads[0][i], grads[1][i], n[i]);
    if (!(e < 2e-5)) fail_msg("gradient %d: cpu differs from reference by %g", i, e);
    free(grads[0][i]);
    free(grads[1][i]);
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_reference_by_hand),
      cmocka_unit_test(test_output_sizes),
      cmocka_unit_test(test_errors),
      cmocka_unit_test(test_finite_differences),
      cmocka_unit_test(test_cpu_matches_reference),
      cmocka_unit_test(test_cpu_autograd),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
