/* Tensors, devices and autograd plumbing: moving between backends mid-run,
 * per-op fallback, hooks, random streams and error messages. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "testutil.h"

static void test_host_roundtrip_and_views(void **state) {
  (void)state;
  pn_device *ref = tu_device("reference");
  int32_t v[6] = {1, 2, 3, 4, 5, 6};
  int64_t s[2] = {2, 3};
  pn_tensor *t = tu_check(pn_tensor_from_host(ref, PN_I32, 2, s, v), "from_host");
  int32_t back[6];
  assert_int_equal(pn_tensor_read(t, back, sizeof back), PN_OK);
  assert_memory_equal(v, back, sizeof v);
  assert_int_not_equal(pn_tensor_read(t, back, 4), PN_OK); /* wrong size is refused */

  pn_tensor *tr = tu_check(pn_tensor_transposed(t, 0, 1), "transposed");
  assert_false(pn_tensor_is_contiguous(tr));
  pn_tensor *c = tu_check(pn_contiguous(tr), "contiguous");
  int32_t want[6] = {1, 4, 2, 5, 3, 6};
  assert_int_equal(pn_tensor_read(c, back, sizeof back), PN_OK);
  assert_memory_equal(want, back, sizeof want);

  pn_tensor *f = tu_check(pn_cast(c, PN_F32), "cast");
  assert_float_equal(pn_tensor_get_f32(f, 1), 4.0f, 0.0f);
  pn_tensor *u = tu_check(pn_cast(f, PN_U8), "cast u8");
  uint8_t b[6];
  assert_int_equal(pn_tensor_read(u, b, sizeof b), PN_OK);
  assert_int_equal(b[5], 6);

  int64_t bad[2] = {4, 2};
  assert_null(pn_tensor_view(t, 2, bad));
  assert_non_null(strstr(pn_last_error(), "2x3"));
  pn_tensor *ts[] = {t, tr, c, f, u};
  for (int i = 0; i < 5; i++) pn_tensor_unref(ts[i]);
}

/* One step of a tiny model: loss = sum(softmax(tanh(x W^T)) * target). */
static float step(pn_tensor *x, pn_tensor **w, pn_tensor *target) {
  pn_tensor *h = pn_matmul(x, *w, 0, 1), *a = pn_tanh(h), *p = pn_softmax(a, -1);
  pn_tensor *m = pn_mul(p, target), *l = tu_check(pn_sum_all(m), "loss");
  float loss = pn_tensor_get_f32(l, 0);
  assert_int_equal(pn_backward(l, NULL), PN_OK);
  int was = pn_set_grad_enabled(0);
  pn_tensor *upd = pn_scale(pn_tensor_grad(*w), -0.5);
  pn_tensor *nw = tu_check(pn_add(*w, upd), "update");
  pn_set_grad_enabled(was);
  pn_tensor_set_requires_grad(nw, 1);
  pn_tensor_unref(*w);
  *w = nw;
  pn_tensor *ts[] = {h, a, p, m, l, upd};
  for (int i = 0; i < 6; i++) pn_tensor_unref(ts[i]);
  return loss;
}

static void run_steps(const char *first, const char *then, int switch_at, float *losses, int n) {
  uint64_t st = 7;
  int64_t sx[2] = {4, 6}, sw[2] = {5, 6}, sy[2] = {4, 5};
  pn_device *d = tu_device(first);
  pn_tensor *x = tu_random(d, 2, sx, -1, 1, &st), *w = tu_random(d, 2, sw, -1, 1, &st);
  pn_tensor *y = tu_random(d, 2, sy, 0, 1, &st);
  pn_tensor_set_requires_grad(w, 1);
  for (int i = 0; i < n; i++) {
    if (i == switch_at) { /* move model, data and target to the other backend */
      pn_device *d2 = tu_device(then);
      pn_tensor *moved[3] = {pn_tensor_to(x, d2), pn_tensor_to(w, d2), pn_tensor_to(y, d2)};
      assert_true(pn_tensor_device(moved[1]) == d2);
      assert_true(moved[1]->requires_grad);
      pn_tensor_unref(x);
      pn_tensor_unref(w);
      pn_tensor_unref(y);
      x = moved[0], w = moved[1], y = moved[2];
    }
    losses[i] = step(x, &w, y);
  }
  pn_tensor_unref(x);
  pn_tensor_unref(w);
  pn_tensor_unref(y);
}

static void test_switch_backend_mid_run(void **state) {
  (void)state;
  float stay[6], moved[6], back[6];
  run_steps("reference", "reference", -1, stay, 6);
  run_steps("reference", "cpu", 3, moved, 6);
  run_steps("cpu", "reference", 2, back, 6);
  for (int i = 0; i < 6; i++) {
    assert_true(fabsf(stay[i] - moved[i]) <= 1e-5f * fmaxf(1.0f, fabsf(stay[i])));
    assert_true(fabsf(stay[i] - back[i]) <= 1e-5f * fmaxf(1.0f, fabsf(stay[i])));
  }
  assert_true(stay[5] < stay[0]); /* the steps did descend */
}

static void test_fallback_per_op(void **state) {
  (void)state;
  pn_device *part = tu_device("partial");
  float a[4] = {1, 2, 3, 4}, b[2] = {10, 20};
  int64_t sa[2] = {2, 2}, sb[1] = {2};
  pn_tensor *x = pn_tensor_from_host(part, PN_F32, 2, sa, a);
  pn_tensor *y = pn_tensor_from_host(part, PN_F32, 1, sb, b);
  pn_tensor *z = tu_check(pn_add(x, y), "add falling back");
  assert_true(pn_tensor_device(z) == part); /* the result stays where the inputs live */
  float *h = tu_host(z);
  float want[4] = {11, 22, 13, 24};
  assert_memory_equal(h, want, sizeof want);
  free(h);
  pn_tensor *m = tu_check(pn_matmul(x, x, 0, 1), "matmul falling back");
  assert_float_equal(pn_tensor_get_f32(m, 1), 11.0f, 1e-6f);
  pn_tensor_unref(x);
  pn_tensor_unref(y);
  pn_tensor_unref(z);
  pn_tensor_unref(m);
}

static void test_device_mismatch_is_an_error(void **state) {
  (void)state;
  int64_t s[1] = {3};
  pn_tensor *a = pn_ones(tu_device("reference"), 1, s), *b = pn_ones(tu_device("cpu"), 1, s);
  assert_null(pn_add(a, b));
  assert_non_null(strstr(pn_last_error(), "different devices"));
  pn_tensor_unref(a);
  pn_tensor_unref(b);
}

static int n_forward_seen;
static void count_ops(const char *op, pn_tensor *const *in, int n_in, pn_tensor *out, void *u) {
  (void)in, (void)n_in, (void)out;
  if (strcmp(op, (const char *)u) == 0) n_forward_seen++;
}
static pn_tensor *zero_grad_hook(pn_tensor *t, pn_tensor *g, void *user) {
  (void)t;
  *(float *)user = pn_tensor_get_f32(g, 0);
  return pn_zeros_like(g);
}

static void test_hooks(void **state) {
  (void)state;
  pn_device *d = tu_device("reference");
  int64_t s[1] = {2};
  float v[2] = {1.0f, -2.0f};
  pn_tensor *x = pn_tensor_from_host(d, PN_F32, 1, s, v);
  pn_tensor_set_requires_grad(x, 1);
  int h = pn_add_forward_hook(count_ops, (void *)"unary");
  n_forward_seen = 0;
  pn_tensor *a = pn_scale(x, 3.0), *b = pn_scale(x, 5.0), *c = pn_add(a, b);
  pn_remove_forward_hook(h);
  assert_int_equal(n_forward_seen, 2);
  float seen = 0.0f;
  assert_int_equal(pn_tensor_add_grad_hook(a, zero_grad_hook, &seen), PN_OK);
  pn_tensor *l = pn_sum_all(c);
  assert_int_equal(pn_backward(l, NULL), PN_OK);
  assert_float_equal(seen, 1.0f, 0.0f);                                    /* a's gradient */
  assert_float_equal(pn_tensor_get_f32(pn_tensor_grad(x), 0), 5.0f, 0.0f); /* only b's path */
  assert_int_equal(n_forward_seen, 2); /* backward's own ops are not reported */
  pn_tensor *ts[] = {x, a, b, c, l};
  for (int i = 0; i < 5; i++) pn_tensor_unref(ts[i]);
}

static void test_random_streams(void **state) {
  (void)state;
  int64_t s[1] = {20000};
  pn_tensor *a = pn_rand_normal(tu_device("reference"), 1, s, 0.0, 1.0, 5, 0);
  pn_tensor *b = pn_rand_normal(tu_device("cpu"), 1, s, 0.0, 1.0, 5, 0);
  pn_tensor *c = pn_rand_normal(tu_device("reference"), 1, s, 0.0, 1.0, 5, 20000);
  float *ha = tu_host(a), *hb = tu_host(b), *hc = tu_host(c);
  assert_memory_equal(ha, hb, sizeof(float) * 20000); /* same on every backend */
  double mean = 0, var = 0;
  int same = 0;
  for (int i = 0; i < 20000; i++) {
    mean += ha[i];
    same += ha[i] == hc[i];
  }
  mean /= 20000;
  for (int i = 0; i < 20000; i++) var += (ha[i] - mean) * (ha[i] - mean);
  var /= 20000;
  assert_true(fabs(mean) < 0.03 && fabs(var - 1.0) < 0.05);
  assert_true(same < 5); /* another counter range gives other numbers */
  free(ha), free(hb), free(hc);
  pn_tensor_unref(a), pn_tensor_unref(b), pn_tensor_unref(c);
}

/* Float to integer casts saturate and send NaN to 0 on every backend, where
 * plain C conversion would be undefined. */
static void test_saturating_casts(void **state) {
  (void)state;
  float v[12] = {-1e10f, -300.0f, -1.7f, -0.5f, 0.5f,     1.7f,
                 254.9f, 300.0f,  1e10f, NAN,   INFINITY, -INFINITY};
  uint8_t want_u8[12] = {0, 0, 0, 0, 0, 1, 254, 255, 255, 0, 255, 0};
  int32_t want_i32[12] = {INT32_MIN, -300, -1,        0, 0,         1,
                          254,       300,  INT32_MAX, 0, INT32_MAX, INT32_MIN};
  int64_t s[1] = {12};
  const char *devices[2] = {"reference", "cpu"};
  for (int d = 0; d < 2; d++) {
    pn_tensor *x = tu_check(pn_tensor_from_host(tu_device(devices[d]), PN_F32, 1, s, v), "x");
    pn_tensor *u = tu_check(pn_cast(x, PN_U8), "to u8"),
              *i = tu_check(pn_cast(x, PN_I32), "to i32");
    uint8_t got_u8[12];
    int32_t got_i32[12];
    assert_int_equal(pn_tensor_read(u, got_u8, sizeof got_u8), PN_OK);
    assert_int_equal(pn_tensor_read(i, got_i32, sizeof got_i32), PN_OK);
    assert_memory_equal(got_u8, want_u8, sizeof want_u8);
    assert_memory_equal(got_i32, want_i32, sizeof want_i32);
    pn_tensor_unref(x), pn_tensor_unref(u), pn_tensor_unref(i);
  }
}

static void test_error_messages(void **state) {
  (void)state;
  pn_device *d = tu_device("reference");
  int64_t s1[2] = {2, 3}, s2[2] = {4, 5};
  pn_tensor *a = pn_ones(d, 2, s1), *b = pn_ones(d, 2, s2);
  assert_null(pn_matmul(a, b, 0, 0));
  assert_non_null(strstr(pn_last_error(), "2x3"));
  assert_non_null(strstr(pn_last_error(), "4x5"));
  assert_null(pn_add(a, b));
  assert_non_null(strstr(pn_last_error(), "broadcast"));
  assert_null(pn_add(a, NULL)); /* NULL propagates */
  assert_int_not_equal(pn_backward(a, NULL), PN_OK);
  assert_non_null(strstr(pn_last_error(), "requires_grad"));
  pn_device *none = NULL;
  assert_int_equal(pn_device_get("nosuchbackend", &none), PN_ERR_NOT_FOUND);
  pn_tensor_unref(a);
  pn_tensor_unref(b);
}

int main(void) {
  tu_plugin_path("tests/partial");
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_host_roundtrip_and_views),
      cmocka_unit_test(test_switch_backend_mid_run),
      cmocka_unit_test(test_fallback_per_op),
      cmocka_unit_test(test_device_mismatch_is_an_error),
      cmocka_unit_test(test_hooks),
      cmocka_unit_test(test_random_streams),
      cmocka_unit_test(test_saturating_casts),
      cmocka_unit_test(test_error_messages),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
