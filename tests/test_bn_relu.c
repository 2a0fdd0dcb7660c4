/* pn_batch_norm_relu (batch-norm with its ReLU fused: channel_affine kind
 * relu forward, kind mask in the backward) against pn_relu(pn_batch_norm())
 * on both backends: outputs, running statistics and the gradients of the
 * input, weight and bias, in training and in evaluation. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "testutil.h"

#define TOL 1e-5

typedef struct bn_case {
  int64_t shape[4];
  int ndim, training, affine;
} bn_case;

/* One run's results, on the host. */
typedef struct bn_result {
  float *y, *dx, *dw, *db, *rm, *rv;
} bn_result;

typedef struct bn_inputs {
  float *x, *w, *b, *r; /* r: the weights of the loss sum(y * r) */
} bn_inputs;

static int64_t numel(const bn_case *c) {
  int64_t n = 1;
  for (int i = 0; i < c->ndim; i++) n *= c->shape[i];
  return n;
}

static pn_tensor *leaf(pn_device *dev, int ndim, const int64_t *shape, const float *v, int grad) {
  pn_tensor *t = tu_check(pn_tensor_from_host(dev, PN_F32, ndim, shape, v), "from_host");
  t->requires_grad = grad;
  return t;
}

static float *host_grad(pn_tensor *t) {
  assert_non_null(t->grad);
  return tu_host(t->grad);
}

static bn_result run(pn_device *dev, const bn_case *c, const bn_inputs *in, int fused) {
  int64_t ch = c->shape[1];
  float rm0[64], rv0[64];
  for (int64_t i = 0; i < ch; i++) rm0[i] = 0.1f * (float)i, rv0[i] = 0.5f + 0.2f * (float)i;
  pn_tensor *x = leaf(dev, c->ndim, c->shape, in->x, 1);
  pn_tensor *w = c->affine ? leaf(dev, 1, &ch, in->w, 1) : NULL;
  pn_tensor *b = c->affine ? leaf(dev, 1, &ch, in->b, 1) : NULL;
  pn_tensor *rm = leaf(dev, 1, &ch, rm0, 0), *rv = leaf(dev, 1, &ch, rv0, 0);
  pn_tensor *r = leaf(dev, c->ndim, c->shape, in->r, 0);
  pn_tensor *y;
  if (fused) {
    y = tu_check(pn_batch_norm_relu(x, w, b, rm, rv, c->training, 0.1, 1e-5), "bn_relu");
  } else {
    pn_tensor *z = tu_check(pn_batch_norm(x, w, b, rm, rv, c->training, 0.1, 1e-5), "bn");
    y = tu_check(pn_relu(z), "relu");
    pn_tensor_unref(z);
  }
  pn_tensor *yr = tu_check(pn_mul(y, r), "mul");
  pn_tensor *loss = tu_check(pn_sum(yr, (1u << c->ndim) - 1u, 0), "sum");
  assert_int_equal(pn_backward(loss, NULL), PN_OK);
  bn_result o = {tu_host(y), host_grad(x), NULL, NULL, tu_host(rm), tu_host(rv)};
  if (c->affine) o.dw = host_grad(w), o.db = host_grad(b);
  pn_tensor *ts[] = {x, w, b, rm, rv, r, y, yr, loss};
  for (size_t i = 0; i < sizeof ts / sizeof ts[0]; i++) pn_tensor_unref(ts[i]);
  return o;
}

static void expect_close(const float *got, const float *want, int64_t n, const char *what) {
  double err = tu_norm_err(got, want, n);
  if (err > TOL) fail_msg("%s: error %g", what, err);
}

static void free_result(bn_result *r) {
  free(r->y), free(r->dx), free(r->dw), free(r->db), free(r->rm), free(r->rv);
}

static void check_case(const char *backend, const bn_case *c) {
  static uint64_t rng = 4242;
  pn_device *dev = tu_device(backend);
  int64_t n = numel(c), ch = c->shape[1];
  bn_inputs in = {malloc(sizeof(float) * (size_t)n), malloc(sizeof(float) * (size_t)ch),
                  malloc(sizeof(float) * (size_t)ch), malloc(sizeof(float) * (size_t)n)};
  assert_true(in.x && in.w && in.b && in.r);
  tu_fill_uniform(in.x, n, -2.0f, 3.0f, &rng);
  tu_fill_uniform(in.w, ch, 0.5f, 1.5f, &rng);
  tu_fill_uniform(in.b, ch, -0.5f, 0.5f, &rng);
  tu_fill_uniform(in.r, n, -1.0f, 1.0f, &rng);
  bn_result want = run(dev, c, &in, 0), got = run(dev, c, &in, 1);
  int zeros = 0;
  for (int64_t i = 0; i < n; i++) zeros += got.y[i] == 0.0f;
  assert_true(zeros > 0 && zeros < n); /* the ReLU cuts some values, not all */
  expect_close(got.y, want.y, n, "y");
  expect_close(got.dx, want.dx, n, "dx");
  expect_close(got.rm, want.rm, ch, "running_mean");
  expect_close(got.rv, want.rv, ch, "running_var");
  if (c->affine) {
    expect_close(got.dw, want.dw, ch, "dweight");
    expect_close(got.db, want.db, ch, "dbias");
  }
  free_result(&want);
  free_result(&got);
  free(in.x), free(in.w), free(in.b), free(in.r);
}

static const bn_case cases[] = {
    {{4, 3, 5, 7}, 4, 1, 1},   {{4, 3, 5, 7}, 4, 0, 1},  {{2, 5, 6, 1}, 4, 1, 0},
    {{6, 4, 0, 0}, 2, 1, 1},   {{6, 4, 0, 0}, 2, 0, 0},  {{16, 32, 14, 14}, 4, 1, 1},
    {{16, 32, 14, 14}, 4, 0, 1},
};

static void test_backend(const char *backend) {
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) check_case(backend, &cases[i]);
}

static void test_reference(void **state) {
  (void)state;
  test_backend("reference");
}

static void test_cpu(void **state) {
  (void)state;
  test_backend("cpu");
}

/* The kernels refuse a mask of the wrong size and relu on grad stats. */
static void test_kernel_errors(void **state) {
  (void)state;
  const char *backends[] = {"reference", "cpu"};
  for (int k = 0; k < 2; k++) {
    pn_device *dev = tu_device(backends[k]);
    int64_t xs[2] = {4, 3}, cs = 3, ms = 5, os[2] = {2, 3};
    pn_tensor *x = tu_check(pn_zeros(dev, 2, xs), "x"), *v = tu_check(pn_zeros(dev, 1, &cs), "v");
    pn_tensor *m = tu_check(pn_zeros(dev, 1, &ms), "m");
    pn_op_params p;
    memset(&p, 0, sizeof p);
    p.kind = PN_CHANNEL_MASK;
    pn_tensor *in[4] = {x, v, v, m};
    pn_shape s = pn_tensor_shape(x);
    assert_null(pn_op_run(PN_OP_CHANNEL_AFFINE, &p, in, 4, &s, PN_F32));
    pn_shape s2 = pn_shape_make(2, os);
    pn_tensor *gin[4] = {x, x, v, m};
    assert_null(pn_op_run(PN_OP_CHANNEL_GRAD_STATS, &p, gin, 4, &s2, PN_F32));
    p.kind = PN_CHANNEL_RELU;
    assert_null(pn_op_run(PN_OP_CHANNEL_GRAD_STATS, &p, gin, 3, &s2, PN_F32));
    pn_tensor_unref(x), pn_tensor_unref(v), pn_tensor_unref(m);
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_reference),
      cmocka_unit_test(test_cpu),
      cmocka_unit_test(test_kernel_errors),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
