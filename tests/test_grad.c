/* Every op's backward against central finite differences, on the reference
 * and cpu backends. The loss is L = sum(f(x) * w) for a random w, so each
 * gradient element is checked, not only their sum. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "testutil.h"

typedef enum { IN_ANY, IN_POSITIVE, IN_AWAY_FROM_ZERO, IN_DISTINCT } input_kind;

typedef struct gcase {
  const char *label;
  int n_in;
  int ndim[2];
  int64_t shape[2][4];
  input_kind kind[2];
  pn_tensor *(*f)(const struct gcase *c, pn_tensor **x);
  int op_kind;
  uint32_t axes;
  int keepdim, axis, ta, tb;
} gcase;

static const char *device_name;

/* ------------------------------------------------------------ inputs */

static void make_values(float *v, int64_t n, input_kind kind, uint64_t *st) {
  tu_fill_uniform(v, n, -1.0f, 1.0f, st);
  for (int64_t i = 0; i < n; i++) {
    if (kind == IN_POSITIVE)
      v[i] = 0.5f + fabsf(v[i]);
    else if (kind == IN_AWAY_FROM_ZERO)
      v[i] = v[i] < 0 ? v[i] - 0.2f : v[i] + 0.2f;
  }
  if (kind == IN_DISTINCT) { /* spaced 0.1 apart, so no tie lies within eps */
    for (int64_t i = 0; i < n; i++) v[i] = 0.1f * (float)i - 0.05f * (float)n;
    for (int64_t i = n - 1; i > 0; i--) {
      int64_t j =
          (int64_t)((*st = *st * 6364136223846793005ull + 1442695040888963407ull) >> 33) % (i + 1);
      float t = v[i];
      v[i] = v[j];
      v[j] = t;
    }
  }
}

/* ------------------------------------------------------------ loss */

static double loss_of(const gcase *c, float *const *vals, const float *w, pn_device *dev) {
  pn_tensor *x[2] = {NULL, NULL};
  for (int i = 0; i < c->n_in; i++)
    x[i] = tu_check(pn_tensor_from_host(dev, PN_F32, c->ndim[i], c->shape[i], vals[i]), "input");
  pn_tensor *y = tu_check(c->f(c, x), c->label);
  float *yh = tu_host(y);
  double l = 0.0;
  for (int64_t i = 0; i < pn_tensor_numel(y); i++) l += (double)yh[i] * w[i];
  free(yh);
  pn_tensor_unref(y);
  for (int i = 0; i < c->n_in; i++) pn_tensor_unref(x[i]);
  return l;
}

static void check_case(const gcase *c) {
  pn_device *dev = tu_device(device_name);
  uint64_t st = 42;
  float *vals[2] = {NULL, NULL};
  pn_tensor *x[2] = {NULL, NULL};
  for (int i = 0; i < c->n_in; i++) {
    pn_shape s = pn_shape_make(c->ndim[i], c->shape[i]);
    vals[i] = malloc(sizeof(float) * (size_t)pn_shape_numel(&s));
    make_values(vals[i], pn_shape_numel(&s), c->kind[i], &st);
    x[i] = tu_check(pn_tensor_from_host(dev, PN_F32, c->ndim[i], c->shape[i], vals[i]), "input");
    pn_tensor_set_requires_grad(x[i], 1);
  }
  pn_tensor *y = tu_check(c->f(c, x), c->label);
  int64_t ny = pn_tensor_numel(y);
  float *w = malloc(sizeof *w * (size_t)ny);
  tu_fill_uniform(w, ny, -1.0f, 1.0f, &st);
  pn_tensor *wt = tu_check(pn_tensor_from_host(dev, PN_F32, y->ndim, y->shape, w), "w");
  if (pn_backward(y, wt) != PN_OK) fail_msg("%s: backward: %s", c->label, pn_last_error());
  assert_int_equal(pn_tape_size(), 0);

  int was = pn_set_grad_enabled(0);
  const float eps = 1e-2f;
  for (int i = 0; i < c->n_in; i++) {
    pn_tensor *g = pn_tensor_grad(x[i]);
    if (!g) fail_msg("%s: input %d got no gradient", c->label, i);
    float *gh = tu_host(g);
    for (int64_t j = 0; j < pn_tensor_numel(x[i]); j++) {
      float keep = vals[i][j];
      vals[i][j] = keep + eps;
      double lp = loss_of(c, vals, w, dev);
      vals[i][j] = keep - eps;
      double lm = loss_of(c, vals, w, dev);
      vals[i][j] = keep;
      double num = (lp - lm) / (2.0 * eps);
      double tol = 2e-3 + 2e-2 * fabs(num);
      if (fabs(num - gh[j]) > tol)
        fail_msg("%s on %s: d/dx%d[%lld] analytic %.6f, numeric %.6f", c->label, device_name, i,
                 (long long)j, gh[j], num);
    }
    free(gh);
  }
  pn_set_grad_enabled(was);
  free(w);
  pn_tensor_unref(wt);
  pn_tensor_unref(y);
  for (int i = 0; i < c->n_in; i++) {
    pn_tensor_unref(x[i]);
    free(vals[i]);
  }
}

/* ------------------------------------------------------------ ops under test */

static pn_tensor *f_unary(const gcase *c, pn_tensor **x) {
  if (c->op_kind == PN_UNARY_AFFINE) return pn_affine(x[0], 1.5, -0.3);
  return pn_unary((pn_unary_kind)c->op_kind, x[0]);
}
static pn_tensor *f_binary(const gcase *c, pn_tensor **x) {
  return pn_binary((pn_binary_kind)c->op_kind, x[0], x[1]);
}
static pn_tensor *f_matmul(const gcase *c, pn_tensor **x) {
  return pn_matmul(x[0], x[1], c->ta, c->tb);
}
static pn_tensor *f_reduce(const gcase *c, pn_tensor **x) {
  return pn_reduce((pn_reduce_kind)c->op_kind, x[0], c->axes, c->keepdim);
}
static pn_tensor *f_softmax(const gcase *c, pn_tensor **x) { return pn_softmax(x[0], c->axis); }
static pn_tensor *f_log_softmax(const gcase *c, pn_tensor **x) {
  return pn_log_softmax(x[0], c->axis);
}
static pn_tensor *f_reshape(const gcase *c, pn_tensor **x) {
  (void)c;
  int64_t s[2] = {2, -1};
  return pn_reshape(x[0], 2, s);
}
static pn_tensor *f_transpose(const gcase *c, pn_tensor **x) {
  (void)c;
  return pn_transpose(x[0], 0, 1);
}
static pn_tensor *f_copy(const gcase *c, pn_tensor **x) {
  (void)c;
  return pn_copy(x[0]);
}
static pn_tensor *f_sum_to(const gcase *c, pn_tensor **x) {
  (void)c;
  pn_shape s = {2, {3, 1}};
  return pn_sum_to(x[0], &s);
}
/* A composite, as a layer would write it: tanh(x W^T + b). */
static pn_tensor *f_dense(const gcase *c, pn_tensor **x) {
  (void)c;
  pn_tensor *h = pn_matmul(x[0], x[1], 0, 1);
  pn_tensor *t = pn_tanh(h);
  pn_tensor_unref(h);
  return t;
}

#define SHAPE1(a, ...)                                                                             \
  1, {a, 0}, {                                                                                     \
    { __VA_ARGS__ }                                                                                \
  }
static const gcase unary_cases[] = {
    {"neg", SHAPE1(2, 3, 4), {IN_ANY}, f_unary, PN_UNARY_NEG, 0, 0, 0, 0, 0},
    {"abs", SHAPE1(2, 3, 4), {IN_AWAY_FROM_ZERO}, f_unary, PN_UNARY_ABS, 0, 0, 0, 0, 0},
    {"sign", SHAPE1(2, 3, 4), {IN_AWAY_FROM_ZERO}, f_unary, PN_UNARY_SIGN, 0, 0, 0, 0, 0},
    {"exp", SHAPE1(2, 3, 4), {IN_ANY}, f_unary, PN_UNARY_EXP, 0, 0, 0, 0, 0},
    {"log", SHAPE1(2, 3, 4), {IN_POSITIVE}, f_unary, PN_UNARY_LOG, 0, 0, 0, 0, 0},
    {"sqrt", SHAPE1(2, 3, 4), {IN_POSITIVE}, f_unary, PN_UNARY_SQRT, 0, 0, 0, 0, 0},
    {"square", SHAPE1(2, 3, 4), {IN_ANY}, f_unary, PN_UNARY_SQUARE, 0, 0, 0, 0, 0},
    {"recip", SHAPE1(2, 3, 4), {IN_POSITIVE}, f_unary, PN_UNARY_RECIP, 0, 0, 0, 0, 0},
    {"relu", SHAPE1(2, 3, 4), {IN_AWAY_FROM_ZERO}, f_unary, PN_UNARY_RELU, 0, 0, 0, 0, 0},
    {"step", SHAPE1(2, 3, 4), {IN_AWAY_FROM_ZERO}, f_unary, PN_UNARY_STEP, 0, 0, 0, 0, 0},
    {"sigmoid", SHAPE1(2, 3, 4), {IN_ANY}, f_unary, PN_UNARY_SIGMOID, 0, 0, 0, 0, 0},
    {"tanh", SHAPE1(2, 3, 4), {IN_ANY}, f_unary, PN_UNARY_TANH, 0, 0, 0, 0, 0},
    {"affine", SHAPE1(2, 3, 4), {IN_ANY}, f_unary, PN_UNARY_AFFINE, 0, 0, 0, 0, 0},
};

#define BIN(label, kind, kb, na, nb, sa, sb)                                                       \
  { label, 2, {na, nb}, {sa, sb}, {IN_ANY, kb}, f_binary, kind, 0, 0, 0, 0, 0 }
#define S(...)                                                                                     \
  { __VA_ARGS__ }
static const gcase binary_cases[] = {
    BIN("add same", PN_BINARY_ADD, IN_ANY, 2, 2, S(3, 4), S(3, 4)),
    BIN("add row", PN_BINARY_ADD, IN_ANY, 2, 1, S(3, 4), S(4)),
    BIN("add outer", PN_BINARY_ADD, IN_ANY, 2, 2, S(3, 1), S(1, 4)),
    BIN("sub rank", PN_BINARY_SUB, IN_ANY, 3, 2, S(2, 3, 4), S(3, 1)),
    BIN("sub scalar", PN_BINARY_SUB, IN_ANY, 1, 2, S(1), S(3, 4)),
    BIN("mul same", PN_BINARY_MUL, IN_ANY, 2, 2, S(3, 4), S(3, 4)),
    BIN("mul outer", PN_BINARY_MUL, IN_ANY, 2, 2, S(3, 1), S(1, 4)),
    BIN("div same", PN_BINARY_DIV, IN_POSITIVE, 2, 2, S(3, 4), S(3, 4)),
    BIN("div row", PN_BINARY_DIV, IN_POSITIVE, 2, 1, S(3, 4), S(4)),
    BIN("max same", PN_BINARY_MAX, IN_DISTINCT, 2, 2, S(3, 4), S(3, 4)),
    BIN("max row", PN_BINARY_MAX, IN_DISTINCT, 2, 1, S(3, 4), S(4)),
    BIN("min same", PN_BINARY_MIN, IN_DISTINCT, 2, 2, S(3, 4), S(3, 4)),
    BIN("min outer", PN_BINARY_MIN, IN_DISTINCT, 2, 2, S(3, 1), S(1, 4)),
};

#define MM(label, ta, tb, sa, sb)                                                                  \
  { label, 2, {2, 2}, {sa, sb}, {IN_ANY, IN_ANY}, f_matmul, 0, 0, 0, 0, ta, tb }
static const gcase matmul_cases[] = {
    MM("matmul nn", 0, 0, S(3, 5), S(5, 4)),
    MM("matmul tn", 1, 0, S(5, 3), S(5, 4)),
    MM("matmul nt", 0, 1, S(3, 5), S(4, 5)),
    MM("matmul tt", 1, 1, S(5, 3), S(4, 5)),
    {"dense tanh", 2, {2, 2}, {S(3, 5), S(4, 5)}, {IN_ANY, IN_ANY}, f_dense, 0, 0, 0, 0, 0, 0},
};

#define RED(label, kind, axes, keep)                                                               \
  { label, 1, {3, 0}, {S(2, 3, 4)}, {IN_DISTINCT}, f_reduce, kind, axes, keep, 0, 0, 0 }
static const gcase reduce_cases[] = {
    RED("sum all", PN_REDUCE_SUM, 0, 0),       RED("sum d0", PN_REDUCE_SUM, 1, 0),
    RED("sum d1 keep", PN_REDUCE_SUM, 2, 1),   RED("sum d0d2", PN_REDUCE_SUM, 5, 0),
    RED("mean d2", PN_REDUCE_MEAN, 4, 0),      RED("mean d0d1 keep", PN_REDUCE_MEAN, 3, 1),
    RED("max d2", PN_REDUCE_MAX, 4, 0),        RED("max d0 keep", PN_REDUCE_MAX, 1, 1),
    RED("max all", PN_REDUCE_MAX, 0, 0),       RED("min d1", PN_REDUCE_MIN, 2, 0),
    RED("min d1d2 keep", PN_REDUCE_MIN, 6, 1),
};

#define SM(label, f, axis, n, ...)                                                                 \
  { label, 1, {n, 0}, {S(__VA_ARGS__)}, {IN_ANY}, f, 0, 0, 0, axis, 0, 0 }
static const gcase softmax_cases[] = {
    SM("softmax last", f_softmax, -1, 2, 3, 5),
    SM("softmax d0", f_softmax, 0, 2, 3, 5),
    SM("softmax mid", f_softmax, 1, 3, 2, 3, 4),
    SM("log_softmax last", f_log_softmax, -1, 2, 3, 5),
    SM("log_softmax d0", f_log_softmax, 0, 2, 3, 5),
    SM("log_softmax mid", f_log_softmax, 1, 3, 2, 3, 4),
};

static const gcase layout_cases[] = {
    {"reshape", 1, {2, 0}, {S(3, 4)}, {IN_ANY}, f_reshape, 0, 0, 0, 0, 0, 0},
    {"transpose", 1, {2, 0}, {S(3, 4)}, {IN_ANY}, f_transpose, 0, 0, 0, 0, 0, 0},
    {"copy", 1, {2, 0}, {S(3, 4)}, {IN_ANY}, f_copy, 0, 0, 0, 0, 0, 0},
    {"sum_to", 1, {3, 0}, {S(2, 3, 4)}, {IN_ANY}, f_sum_to, 0, 0, 0, 0, 0, 0},
};

#define RUN_ALL(cases)                                                                             \
  static void test_##cases(void **state) {                                                         \
    (void)state;                                                                                   \
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) check_case(&cases[i]);             \
  }
RUN_ALL(unary_cases)
RUN_ALL(binary_cases)
RUN_ALL(matmul_cases)
RUN_ALL(reduce_cases)
RUN_ALL(softmax_cases)
RUN_ALL(layout_cases)

/* A gradient flowing into one tensor from two consumers adds up. */
static void test_accumulation(void **state) {
  (void)state;
  pn_device *dev = tu_device(device_name);
  float v[3] = {1.0f, 2.0f, 3.0f};
  int64_t s[1] = {3};
  pn_tensor *x = pn_tensor_from_host(dev, PN_F32, 1, s, v);
  pn_tensor_set_requires_grad(x, 1);
  pn_tensor *a = pn_mul(x, x), *b = pn_scale(x, 3.0), *c = pn_add(a, b);
  pn_tensor *l = pn_sum_all(c);
  assert_int_equal(pn_backward(l, NULL), PN_OK);
  float *g = tu_host(pn_tensor_grad(x));
  for (int i = 0; i < 3; i++) assert_float_equal(g[i], 2.0f * v[i] + 3.0f, 1e-5f);
  free(g);
  /* A second pass adds to the stored gradient, as in PyTorch. */
  pn_tensor *l2 = pn_sum_all(x);
  assert_int_equal(pn_backward(l2, NULL), PN_OK);
  g = tu_host(pn_tensor_grad(x));
  assert_float_equal(g[0], 6.0f, 1e-5f);
  free(g);
  pn_tensor *ts[] = {x, a, b, c, l, l2};
  for (int i = 0; i < 6; i++) pn_tensor_unref(ts[i]);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_unary_cases),   cmocka_unit_test(test_binary_cases),
      cmocka_unit_test(test_matmul_cases),  cmocka_unit_test(test_reduce_cases),
      cmocka_unit_test(test_softmax_cases), cmocka_unit_test(test_layout_cases),
      cmocka_unit_test(test_accumulation),
  };
  int failed = 0;
  const char *devices[] = {"reference", "cpu"};
  for (int d = 0; d < 2; d++) {
    device_name = devices[d];
    char group[64];
    snprintf(group, sizeof group, "gradients on %s", device_name);
    failed += _cmocka_run_group_tests(group, tests, sizeof tests / sizeof tests[0], NULL, NULL);
  }
  return failed ? 1 : 0;
}
