/* The cpu backend's special-cased fast paths against the reference, bit
 * for bit: the 2x2 / stride 2 max pool (its own loops, AVX-512 or AVX2 rows
 * where the machine has them) on widths around the 8- and 16-lane vectors, with ties,
 * NaNs and infinities, forward and gradient; and ReLU's fused backward
 * (PN_BINARY_RELU_GRAD) through autograd; convolutions with stride 1 along
 * the width (im2col and col2im by AVX-512 or AVX2 rows) on geometries that
 * test_conv leaves out: a height stride, rows wider than two vectors, and
 * column blocks that start and end inside a row. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "testutil.h"

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

static uint64_t rng = 4242;

static pn_device *ref_dev(void) { return tu_device("reference"); }
static pn_device *cpu_dev(void) { return tu_device("cpu"); }

/* Equal as bits would be too strict for NaN payloads: NaN matches NaN. */
static void expect_same(const pn_tensor *got, const pn_tensor *want, const char *what) {
  int64_t n = pn_tensor_numel(want);
  assert_int_equal(pn_tensor_numel(got), n);
  float *g = tu_host(got), *w = tu_host(want);
  for (int64_t i = 0; i < n; i++) {
    int same = (g[i] != g[i] && w[i] != w[i]) || g[i] == w[i];
    if (!same) fail_msg("%s: element %lld: cpu %g, reference %g", what, (long long)i, g[i], w[i]);
  }
  free(g);
  free(w);
}

/* Small integers (many ties in a window), with a sprinkling of NaN and
 * -inf when `specials`. */
static float *pool_values(int64_t n, int specials) {
  float *v = malloc(sizeof *v * (size_t)n);
  assert_non_null(v);
  tu_fill_uniform(v, n, 0.0f, 4.0f, &rng);
  for (int64_t i = 0; i < n; i++) {
    v[i] = floorf(v[i]);
    if (specials && i % 37 == 5) v[i] = NAN;
    if (specials && i % 41 == 9) v[i] = -INFINITY;
  }
  return v;
}

typedef struct side {
  pn_tensor *x, *y, *dx;
} side;

/* y = maxpool2x2(x), dx = d sum(y * r) / dx for a fixed random r. */
static side pool_side(pn_device *dev, const int64_t *shape, const float *xv, const float *rv) {
  side s;
  s.x = tu_check(pn_tensor_from_host(dev, PN_F32, 4, shape, xv), "x");
  pn_tensor_set_requires_grad(s.x, 1);
  pn_pool2d_params p = {{2, 2}, {2, 2}, {0, 0}, 0, 1};
  s.y = tu_check(pn_pool2d(PN_POOL_MAX, s.x, &p), "max_pool2d");
  pn_tensor *r = tu_check(pn_tensor_from_host(dev, PN_F32, 4, s.y->shape, rv), "r");
  pn_tensor *yr = tu_check(pn_mul(s.y, r), "mul");
  pn_tensor *l = tu_check(pn_sum_all(yr), "sum");
  assert_int_equal(pn_backward(l, NULL), PN_OK);
  s.dx = pn_tensor_grad(s.x);
  assert_non_null(s.dx);
  pn_tensor_unref(l);
  pn_tensor_unref(yr);
  pn_tensor_unref(r);
  return s;
}

static void test_max_pool_2x2(void **state) {
  (void)state;
  /* Output widths around one 16-lane vector and two; odd and even heights. */
  static const int64_t widths[] = {1, 2, 7, 8, 14, 15, 16, 17, 31, 33};
  for (size_t i = 0; i < COUNT(widths); i++)
    for (int specials = 0; specials < 2; specials++) {
      int64_t ow = widths[i], oh = 1 + (int64_t)(i % 3);
      int64_t shape[4] = {2, 3, 2 * oh, 2 * ow};
      int64_t n = 2 * 3 * 4 * oh * ow, no = n / 4;
      float *xv = pool_values(n, specials), *rv = malloc(sizeof *rv * (size_t)no);
      assert_non_null(rv);
      tu_fill_uniform(rv, no, -2.0f, 2.0f, &rng);
      side c = pool_side(cpu_dev(), shape, xv, rv), r = pool_side(ref_dev(), shape, xv, rv);
      char what[64];
      snprintf(what, sizeof what, "2x2 max pool, width %lld%s", (long long)ow,
               specials ? " with NaN and -inf" : "");
      expect_same(c.y, r.y, what);
      expect_same(c.dx, r.dx, what);
      side all[2] = {c, r};
      for (int k = 0; k < 2; k++) {
        pn_tensor_unref(all[k].y);
        pn_tensor_unref(all[k].x);
      }
      free(xv);
      free(rv);
    }
}

/* Enough planes that the pool splits them over the workers. */
static void test_max_pool_2x2_big(void **state) {
  (void)state;
  int64_t shape[4] = {16, 32, 28, 28}, n = 16 * 32 * 28 * 28;
  float *xv = pool_values(n, 1), *rv = malloc(sizeof *rv * (size_t)(n / 4));
  assert_non_null(rv);
  tu_fill_uniform(rv, n / 4, -2.0f, 2.0f, &rng);
  side c = pool_side(cpu_dev(), shape, xv, rv), r = pool_side(ref_dev(), shape, xv, rv);
  expect_same(c.y, r.y, "2x2 max pool 16x32x28x28");
  expect_same(c.dx, r.dx, "2x2 max pool 16x32x28x28 gradient");
  side all[2] = {c, r};
  for (int k = 0; k < 2; k++) {
    pn_tensor_unref(all[k].y);
    pn_tensor_unref(all[k].x);
  }
  free(xv);
  free(rv);
}

/* ReLU's gradient is dy where x > 0 and 0 elsewhere (x = 0 and NaN too,
 * as PyTorch's threshold_backward). */
static void test_relu_grad(void **state) {
  (void)state;
  static const float xv[8] = {-1.5f, 0.0f, 2.0f, NAN, -0.0f, 3.0f, INFINITY, -INFINITY};
  static const float gv[8] = {1, 2, 3, 4, 5, 6, 7, 8};
  static const float want[8] = {0, 0, 3, 0, 0, 6, 7, 0};
  int64_t n = 8;
  pn_device *devs[2] = {ref_dev(), cpu_dev()};
  for (int d = 0; d < 2; d++) {
    pn_tensor *x = tu_check(pn_tensor_from_host(devs[d], PN_F32, 1, &n, xv), "x");
    pn_tensor *g = tu_check(pn_tensor_from_host(devs[d], PN_F32, 1, &n, gv), "g");
    pn_tensor_set_requires_grad(x, 1);
    pn_tensor *y = tu_check(pn_relu(x), "relu");
    assert_int_equal(pn_backward(y, g), PN_OK);
    float *got = tu_host(pn_tensor_grad(x));
    for (int i = 0; i < 8; i++) assert_float_equal(got[i], want[i], 0.0);
    free(got);
    pn_tensor_unref(y);
    pn_tensor_unref(g);
    pn_tensor_unref(x);
  }
}

/* A large one, through the parallel (and streaming) paths. */
static void test_relu_grad_big(void **state) {
  (void)state;
  int64_t n = (int64_t)3 << 20;
  side s[2];
  pn_device *devs[2] = {cpu_dev(), ref_dev()};
  float *xv = malloc(sizeof *xv * (size_t)n), *gv = malloc(sizeof *gv * (size_t)n);
  assert_non_null(xv);
  assert_non_null(gv);
  tu_fill_uniform(xv, n, -1.0f, 1.0f, &rng);
  tu_fill_uniform(gv, n, -1.0f, 1.0f, &rng);
  for (int d = 0; d < 2; d++) {
    s[d].x = tu_check(pn_tensor_from_host(devs[d], PN_F32, 1, &n, xv), "x");
    pn_tensor *g = tu_check(pn_tensor_from_host(devs[d], PN_F32, 1, &n, gv), "g");
    pn_tensor_set_requires_grad(s[d].x, 1);
    s[d].y = tu_check(pn_relu(s[d].x), "relu");
    assert_int_equal(pn_backward(s[d].y, g), PN_OK);
    s[d].dx = pn_tensor_grad(s[d].x);
    pn_tensor_unref(g);
  }
  expect_same(s[0].dx, s[1].dx, "relu gradient, 3M elements");
  for (int d = 0; d < 2; d++) {
    pn_tensor_unref(s[d].y);
    pn_tensor_unref(s[d].x);
  }
  free(xv);
  free(gv);
}

typedef struct conv_case {
  const char *label;
  int64_t n, c, h, w, o, kh, kw;
  pn_conv2d_params p;
} conv_case;

static float norm_err(const pn_tensor *got, const pn_tensor *want) {
  float *g = tu_host(got), *w = tu_host(want);
  double e = tu_norm_err(g, w, pn_tensor_numel(want));
  free(g);
  free(w);
  return (float)e;
}

/* y = conv(x, w); loss sum(y * r): y, dx and dw on both backends. */
static void conv_side(pn_device *dev, const conv_case *k, float *const *v, pn_tensor **res) {
  int64_t xs[4] = {k->n, k->c, k->h, k->w}, ws[4] = {k->o, k->c / k->p.groups, k->kh, k->kw};
  pn_tensor *x = tu_check(pn_tensor_from_host(dev, PN_F32, 4, xs, v[0]), "x");
  pn_tensor *w = tu_check(pn_tensor_from_host(dev, PN_F32, 4, ws, v[1]), "w");
  pn_tensor_set_requires_grad(x, 1);
  pn_tensor_set_requires_grad(w, 1);
  pn_tensor *y = tu_check(pn_conv2d(x, w, NULL, &k->p), "conv2d");
  pn_tensor *r = tu_check(pn_tensor_from_host(dev, PN_F32, 4, y->shape, v[2]), "r");
  pn_tensor *yr = tu_check(pn_mul(y, r), "mul");
  pn_tensor *l = tu_check(pn_sum_all(yr), "sum");
  assert_int_equal(pn_backward(l, NULL), PN_OK);
  res[0] = y;
  res[1] = pn_tensor_ref(pn_tensor_grad(x));
  res[2] = pn_tensor_ref(pn_tensor_grad(w));
  pn_tensor *tmp[5] = {x, w, r, yr, l};
  for (int i = 0; i < 5; i++) pn_tensor_unref(tmp[i]);
}

static void test_conv_stride1_rows(void **state) {
  (void)state;
  static const conv_case cases[] = {
      {"stride (2,1) pad (1,2) dil (1,2)", 2, 3, 9, 40, 4, 3, 3, {{2, 1}, {1, 2}, {1, 2}, 1}},
      {"5x3 pad (2,1), blocks split rows", 1, 2, 40, 37, 3, 5, 3, {{1, 1}, {2, 1}, {1, 1}, 1}},
      {"3x3 pad 1 on 14x14, batch 12", 12, 8, 14, 14, 16, 3, 3, {{1, 1}, {1, 1}, {1, 1}, 1}},
      {"pad wider than the row", 2, 2, 5, 3, 3, 3, 5, {{1, 1}, {2, 4}, {1, 1}, 1}},
  };
  for (size_t i = 0; i < COUNT(cases); i++) {
    const conv_case *k = &cases[i];
    int64_t oh = (k->h + 2 * k->p.padding[0] - k->p.dilation[0] * (k->kh - 1) - 1) / k->p.stride[0] + 1;
    int64_t ow = (k->w + 2 * k->p.padding[1] - k->p.dilation[1] * (k->kw - 1) - 1) / k->p.stride[1] + 1;
    int64_t len[3] = {k->n * k->c * k->h * k->w, k->o * k->c * k->kh * k->kw, k->n * k->o * oh * ow};
    float *v[3];
    for (int j = 0; j < 3; j++) {
      v[j] = malloc(sizeof(float) * (size_t)len[j]);
      assert_non_null(v[j]);
      tu_fill_uniform(v[j], len[j], -1.0f, 1.0f, &rng);
    }
    pn_tensor *c[3], *r[3];
    conv_side(cpu_dev(), k, v, c);
    conv_side(ref_dev(), k, v, r);
    static const char *what[3] = {"output", "input gradient", "weight gradient"};
    for (int j = 0; j < 3; j++) {
      float e = norm_err(c[j], r[j]);
      if (!(e < 2e-5)) fail_msg("%s: %s: cpu differs from reference by %g", k->label, what[j], e);
      pn_tensor_unref(c[j]);
      pn_tensor_unref(r[j]);
      free(v[j]);
    }
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_max_pool_2x2),
      cmocka_unit_test(test_max_pool_2x2_big),
      cmocka_unit_test(test_relu_grad),
      cmocka_unit_test(test_relu_grad_big),
      cmocka_unit_test(test_conv_stride1_rows),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
