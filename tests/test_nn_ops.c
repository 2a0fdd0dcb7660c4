/* Pooling, batch-norm, concat and clamp: the cpu backend against the
 * reference (forward and gradients, awkward shapes and geometries, sizes
 * that split over the thread pool), finite-difference gradient checks on
 * the reference, PyTorch's values on small hand-worked examples (computed
 * with torch 2.x and written down here), and the errors of bad calls. */
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

#define TOL      1e-5
#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

static uint64_t rng = 777;

static pn_device *ref_dev(void) { return tu_device("reference"); }
static pn_device *cpu_dev(void) { return tu_device("cpu"); }

/* ------------------------------------------------------------ helpers */

typedef struct tdesc {
  int ndim;
  int64_t d[4];
} tdesc;

static int64_t numel(const tdesc *s) {
  int64_t n = 1;
  for (int i = 0; i < s->ndim; i++) n *= s->d[i];
  return n;
}

static float *random_host(const tdesc *s, float lo, float hi) {
  float *v = malloc(sizeof *v * (size_t)(numel(s) ? numel(s) : 1));
  assert_non_null(v);
  tu_fill_uniform(v, numel(s), lo, hi, &rng);
  return v;
}

/* Values spaced 0.1 apart in shuffled order: no two within a finite
 * difference step of each other, so a max never changes its winner. */
static float *distinct_host(const tdesc *s) {
  int64_t n = numel(s);
  float *v = malloc(sizeof *v * (size_t)(n ? n : 1));
  assert_non_null(v);
  for (int64_t i = 0; i < n; i++) v[i] = 0.1f * (float)i - 0.05f * (float)n + 0.013f;
  for (int64_t i = n - 1; i > 0; i--) {
    int64_t j = (int64_t)((rng = rng * 6364136223846793005ull + 1442695040888963407ull) >> 33) %
                (i + 1);
    float t = v[i];
    v[i] = v[j];
    v[j] = t;
  }
  return v;
}

static pn_tensor *make(pn_device *dev, const tdesc *s, const float *v) {
  return tu_check(pn_tensor_from_host(dev, PN_F32, s->ndim, s->d, v), "from_host");
}

static void expect_close(const pn_tensor *got, const pn_tensor *want, double tol, const char *what) {
  assert_int_equal(got->ndim, want->ndim);
  for (int d = 0; d < got->ndim; d++) assert_int_equal(got->shape[d], want->shape[d]);
  int64_t n = pn_tensor_numel(want);
  float *g = tu_host(got), *w = tu_host(want);
  double err = tu_norm_err(g, w, n);
  if (!(err <= tol)) fail_msg("%s: cpu differs from reference by %g (tol %g)", what, err, tol);
  free(g);
  free(w);
}

static void expect_values(const pn_tensor *t, const float *want, int64_t n, double tol,
                          const char *what) {
  assert_int_equal(pn_tensor_numel(t), n);
  float *g = tu_host(t);
  for (int64_t i = 0; i < n; i++)
    if (!(fabs((double)g[i] - want[i]) <= tol))
      fail_msg("%s[%lld]: got %.7g, want %.7g", what, (long long)i, g[i], want[i]);
  free(g);
}

/* ------------------------------------------------------------ cpu vs reference */

/* An op of up to 4 inputs, run the same way on both devices. */
typedef pn_tensor *(*op_fn)(const void *arg, pn_tensor **x);

typedef struct run_out {
  pn_tensor *y, *grad[4];
} run_out;

static run_out run_on(pn_device *dev, op_fn f, const void *arg, int n, const tdesc *s,
                      float *const *vals, const float *gout) {
  run_out r = {NULL, {NULL}};
  pn_tensor *x[4] = {NULL};
  for (int i = 0; i < n; i++) {
    x[i] = make(dev, &s[i], vals[i]);
    pn_tensor_set_requires_grad(x[i], 1);
  }
  r.y = tu_check(f(arg, x), "op");
  pn_tensor *g = tu_check(pn_tensor_from_host(dev, PN_F32, r.y->ndim, r.y->shape, gout), "gout");
  if (pn_backward(r.y, g) != PN_OK) fail_msg("backward: %s", pn_last_error());
  for (int i = 0; i < n; i++) {
    r.grad[i] = pn_tensor_grad(x[i]) ? pn_tensor_ref(pn_tensor_grad(x[i])) : NULL;
    if (!r.grad[i]) fail_msg("input %d got no gradient", i);
    pn_tensor_unref(x[i]);
  }
  pn_tensor_unref(g);
  return r;
}

static void run_free(run_out *r, int n) {
  pn_tensor_unref(r->y);
  for (int i = 0; i < n; i++) pn_tensor_unref(r->grad[i]);
}

/* The op's output and every input gradient agree between cpu and reference. */
static void compare(op_fn f, const void *arg, int n, const tdesc *s, float *const *vals,
                    double tol, const char *label) {
  pn_tensor *probe[4] = {NULL};
  for (int i = 0; i < n; i++) probe[i] = make(ref_dev(), &s[i], vals[i]);
  pn_tensor *y0 = tu_check(f(arg, probe), label);
  tdesc ys = {y0->ndim, {0}};
  for (int d = 0; d < y0->ndim; d++) ys.d[d] = y0->shape[d];
  pn_tensor_unref(y0);
  for (int i = 0; i < n; i++) pn_tensor_unref(probe[i]);
  float *gout = random_host(&ys, -1.0f, 1.0f);
  run_out r = run_on(ref_dev(), f, arg, n, s, vals, gout);
  run_out c = run_on(cpu_dev(), f, arg, n, s, vals, gout);
  char what[160];
  snprintf(what, sizeof what, "%s: output", label);
  expect_close(c.y, r.y, tol, what);
  for (int i = 0; i < n; i++) {
    snprintf(what, sizeof what, "%s: gradient of input %d", label, i);
    expect_close(c.grad[i], r.grad[i], tol, what);
  }
  run_free(&r, n);
  run_free(&c, n);
  free(gout);
}

/* ------------------------------------------------------------ op wrappers */

typedef struct pool_case {
  const char *label;
  tdesc s;
  pn_pool_kind kind;
  pn_pool2d_params p;
} pool_case;

static pn_tensor *f_pool(const void *arg, pn_tensor **x) {
  const pool_case *c = arg;
  return pn_pool2d(c->kind, x[0], &c->p);
}

/* kernel, stride, padding, ceil_mode, count_include_pad */
#define G(kh, kw, sh, sw, ph, pw, ceil, cip)                                                       \
  { {kh, kw}, {sh, sw}, {ph, pw}, ceil, cip }
#define T4(a, b, c, d)                                                                             \
  {                                                                                                \
    4, { a, b, c, d }                                                                              \
  }

static const pool_case pool_cases[] = {
    {"max 3s2p1", T4(2, 3, 7, 9), PN_POOL_MAX, G(3, 3, 2, 2, 1, 1, 0, 1)},
    {"max 3s2p1 ceil", T4(2, 3, 8, 9), PN_POOL_MAX, G(3, 3, 2, 2, 1, 1, 1, 1)},
    {"max 2s2 ceil odd", T4(1, 2, 5, 7), PN_POOL_MAX, G(2, 2, 2, 2, 0, 0, 1, 1)},
    {"max 3x2 s(2,1) p(1,0)", T4(2, 2, 6, 5), PN_POOL_MAX, G(3, 2, 2, 1, 1, 0, 0, 1)},
    {"max kernel over input ceil", T4(1, 2, 2, 2), PN_POOL_MAX, G(3, 3, 2, 2, 0, 0, 1, 1)},
    {"max 1x1 s2", T4(1, 3, 5, 4), PN_POOL_MAX, G(1, 1, 2, 2, 0, 0, 0, 1)},
    {"avg 3s2p1 ceil pad", T4(2, 3, 8, 5), PN_POOL_AVG, G(3, 3, 2, 2, 1, 1, 1, 1)},
    {"avg 3s2p1 ceil nopad", T4(2, 3, 8, 5), PN_POOL_AVG, G(3, 3, 2, 2, 1, 1, 1, 0)},
    {"avg 3s1p1 nopad", T4(2, 3, 6, 6), PN_POOL_AVG, G(3, 3, 1, 1, 1, 1, 0, 0)},
    {"avg 2s2 ceil odd", T4(1, 2, 5, 7), PN_POOL_AVG, G(2, 2, 2, 2, 0, 0, 1, 1)},
    {"avg 3x2 s(1,2) p(1,1)", T4(1, 3, 7, 6), PN_POOL_AVG, G(3, 2, 1, 2, 1, 1, 0, 0)},
    {"avg 5s3p2 ceil", T4(1, 2, 9, 11), PN_POOL_AVG, G(5, 5, 3, 3, 2, 2, 1, 1)},
    /* Enough planes to be split over the pool. */
    {"max big", T4(4, 16, 33, 35), PN_POOL_MAX, G(3, 3, 2, 2, 1, 1, 0, 1)},
    {"avg big", T4(4, 16, 33, 35), PN_POOL_AVG, G(3, 3, 2, 2, 1, 1, 1, 0)},
};

typedef struct adaptive_case {
  const char *label;
  tdesc s;
  pn_pool_kind kind;
  int oh, ow;
} adaptive_case;

static pn_tensor *f_adaptive(const void *arg, pn_tensor **x) {
  const adaptive_case *c = arg;
  return pn_adaptive_pool2d(c->kind, x[0], c->oh, c->ow);
}

static const adaptive_case adaptive_cases[] = {
    {"adaptive avg 7->3", T4(2, 3, 7, 7), PN_POOL_ADAPTIVE_AVG, 3, 3},
    {"adaptive max 7->3", T4(2, 3, 7, 7), PN_POOL_ADAPTIVE_MAX, 3, 3},
    {"adaptive avg 5x7->2x3", T4(1, 2, 5, 7), PN_POOL_ADAPTIVE_AVG, 2, 3},
    {"adaptive max 5x7->2x3", T4(1, 2, 5, 7), PN_POOL_ADAPTIVE_MAX, 2, 3},
    {"adaptive avg 1->1", T4(2, 2, 1, 1), PN_POOL_ADAPTIVE_AVG, 1, 1},
    {"adaptive max 1->1", T4(2, 2, 1, 1), PN_POOL_ADAPTIVE_MAX, 1, 1},
    {"adaptive avg 3->5 (up)", T4(1, 2, 3, 4), PN_POOL_ADAPTIVE_AVG, 5, 7},
    {"adaptive max 3->5 (up)", T4(1, 2, 3, 4), PN_POOL_ADAPTIVE_MAX, 5, 7},
    {"adaptive avg global big", T4(8, 40, 14, 13), PN_POOL_ADAPTIVE_AVG, 1, 1},
    {"adaptive max global big", T4(8, 40, 14, 13), PN_POOL_ADAPTIVE_MAX, 1, 1},
    {"adaptive via PN_POOL_AVG", T4(1, 2, 6, 6), PN_POOL_AVG, 4, 4},
};

typedef struct bn_case {
  const char *label;
  tdesc s;
  int training, affine;
} bn_case;

/* x, then weight and bias when affine. Running statistics are fixed
 * tensors of the input's device (eval) or absent (training). */
static pn_tensor *f_bn(const void *arg, pn_tensor **x) {
  const bn_case *c = arg;
  int64_t ch = x[0]->shape[1];
  pn_tensor *rm = NULL, *rv = NULL;
  if (!c->training) {
    rm = tu_check(pn_full(pn_tensor_device(x[0]), PN_F32, 1, &ch, 0.3), "rm");
    rv = tu_check(pn_full(pn_tensor_device(x[0]), PN_F32, 1, &ch, 0.7), "rv");
  }
  pn_tensor *y = pn_batch_norm(x[0], c->affine ? x[1] : NULL, c->affine ? x[2] : NULL, rm, rv,
                               c->training, 0.1, 1e-5);
  pn_tensor_unref(rm);
  pn_tensor_unref(rv);
  return y;
}

static const bn_case bn_cases[] = {
    {"bn train 4d", T4(3, 5, 4, 7), 1, 1},
    {"bn train 2d", {2, {6, 3}}, 1, 1},
    {"bn train 3d no affine", {3, {2, 4, 5}}, 1, 0},
    {"bn eval 4d", T4(2, 3, 3, 5), 0, 1},
    {"bn eval 2d", {2, {5, 4}}, 0, 1},
    {"bn train big 4d", T4(8, 24, 17, 19), 1, 1},
    {"bn train big 2d", {2, {700, 130}}, 1, 1},
};

typedef struct concat_case {
  const char *label;
  int axis;
  tdesc s[3];
} concat_case;

static pn_tensor *f_concat(const void *arg, pn_tensor **x) {
  const concat_case *c = arg;
  return pn_concat(x, 3, c->axis);
}

static const concat_case concat_cases[] = {
    {"concat axis 0", 0, {{3, {2, 3, 4}}, {3, {1, 3, 4}}, {3, {3, 3, 4}}}},
    {"concat axis 1", 1, {{3, {2, 3, 4}}, {3, {2, 1, 4}}, {3, {2, 2, 4}}}},
    {"concat axis -1", -1, {{3, {2, 3, 4}}, {3, {2, 3, 1}}, {3, {2, 3, 5}}}},
    {"concat 4d channels", 1, {T4(2, 3, 5, 5), T4(2, 7, 5, 5), T4(2, 1, 5, 5)}},
    {"concat big channels", 1, {T4(16, 32, 14, 14), T4(16, 17, 14, 14), T4(16, 8, 14, 14)}},
};

typedef struct clamp_case {
  const char *label;
  tdesc s;
  double lo, hi;
} clamp_case;

static pn_tensor *f_clamp(const void *arg, pn_tensor **x) {
  const clamp_case *c = arg;
  return pn_clamp(x[0], c->lo, c->hi);
}

static const clamp_case clamp_cases[] = {
    {"clamp relu6", {2, {7, 13}}, 0.0, 6.0},
    {"clamp narrow", {3, {3, 5, 7}}, -0.35, 0.45},
    {"clamp big", {1, {300001}}, -2.5, 3.5},
};

/* ------------------------------------------------------------ cpu vs reference tests */

static void test_pool_cpu_vs_ref(void **state) {
  (void)state;
  for (size_t i = 0; i < COUNT(pool_cases); i++) {
    const pool_case *c = &pool_cases[i];
    float *v = random_host(&c->s, -3.0f, 3.0f);
    compare(f_pool, c, 1, &c->s, &v, TOL, c->label);
    free(v);
  }
  for (size_t i = 0; i < COUNT(adaptive_cases); i++) {
    const adaptive_case *c = &adaptive_cases[i];
    float *v = random_host(&c->s, -3.0f, 3.0f);
    compare(f_adaptive, c, 1, &c->s, &v, TOL, c->label);
    free(v);
  }
}

static void test_bn_cpu_vs_ref(void **state) {
  (void)state;
  for (size_t i = 0; i < COUNT(bn_cases); i++) {
    const bn_case *c = &bn_cases[i];
    tdesc s[3] = {c->s, {1, {c->s.d[1]}}, {1, {c->s.d[1]}}};
    /* An offset mean, as activations have: the variance must not cancel. */
    float *v[3] = {random_host(&s[0], 9.0f, 13.0f), random_host(&s[1], 0.5f, 1.5f),
                   random_host(&s[2], -1.0f, 1.0f)};
    compare(f_bn, c, c->affine ? 3 : 1, s, v, 1e-4, c->label);
    for (int k = 0; k < 3; k++) free(v[k]);
  }
}

static void test_concat_cpu_vs_ref(void **state) {
  (void)state;
  for (size_t i = 0; i < COUNT(concat_cases); i++) {
    const concat_case *c = &concat_cases[i];
    float *v[3];
    for (int k = 0; k < 3; k++) v[k] = random_host(&c->s[k], -1.0f, 1.0f);
    compare(f_concat, c, 3, c->s, v, 0.0, c->label);
    for (int k = 0; k < 3; k++) free(v[k]);
  }
}

static void test_clamp_cpu_vs_ref(void **state) {
  (void)state;
  for (size_t i = 0; i < COUNT(clamp_cases); i++) {
    const clamp_case *c = &clamp_cases[i];
    float *v = random_host(&c->s, -8.0f, 8.0f);
    /* Values on the bounds: clamped to themselves, no gradient (ReLU6). */
    v[0] = (float)c->lo;
    v[1] = (float)c->hi;
    compare(f_clamp, c, 1, &c->s, &v, 0.0, c->label);
    free(v);
  }
}

/* NaN passes through a clamp, infinities are clamped, and lo > hi gives hi
 * (min(max(x, lo), hi)), identically on both backends. */
static void test_clamp_specials(void **state) {
  (void)state;
  float v[6] = {NAN, INFINITY, -INFINITY, 0.5f, -3.0f, 7.0f};
  int64_t n = 6;
  pn_device *devs[2] = {ref_dev(), cpu_dev()};
  for (int d = 0; d < 2; d++) {
    pn_tensor *x = tu_check(pn_tensor_from_host(devs[d], PN_F32, 1, &n, v), "x");
    pn_tensor *y = tu_check(pn_clamp(x, -1.0, 2.0), "clamp");
    float *h = tu_host(y);
    assert_true(isnan(h[0]));
    float want[5] = {2.0f, -1.0f, 0.5f, -1.0f, 2.0f};
    for (int i = 0; i < 5; i++) assert_float_equal(h[i + 1], want[i], 0.0f);
    free(h);
    pn_tensor *z = tu_check(pn_clamp(x, 3.0, 1.0), "clamp lo > hi");
    h = tu_host(z);
    for (int i = 1; i < 6; i++) assert_float_equal(h[i], 1.0f, 0.0f);
    free(h);
    pn_tensor_unref(x);
    pn_tensor_unref(y);
    pn_tensor_unref(z);
  }
}

/* ------------------------------------------------------------ finite differences */

typedef enum { IN_ANY, IN_DISTINCT, IN_POSITIVE } in_kind;

static double loss_of(op_fn f, const void *arg, int n, const tdesc *s, float *const *vals,
                      const float *w) {
  pn_tensor *x[4] = {NULL};
  for (int i = 0; i < n; i++) x[i] = make(ref_dev(), &s[i], vals[i]);
  pn_tensor *y = tu_check(f(arg, x), "op");
  float *yh = tu_host(y);
  double l = 0.0;
  for (int64_t i = 0; i < pn_tensor_numel(y); i++) l += (double)yh[i] * w[i];
  free(yh);
  pn_tensor_unref(y);
  for (int i = 0; i < n; i++) pn_tensor_unref(x[i]);
  return l;
}

/* L = sum(f(x) * w) for a random w: every gradient element is checked. */
static void gradcheck(op_fn f, const void *arg, int n, const tdesc *s, const in_kind *kinds,
                      const char *label) {
  float *vals[4] = {NULL};
  for (int i = 0; i < n; i++) {
    vals[i] = kinds[i] == IN_DISTINCT ? distinct_host(&s[i]) : random_host(&s[i], -1.0f, 1.0f);
    if (kinds[i] == IN_POSITIVE)
      for (int64_t k = 0; k < numel(&s[i]); k++) vals[i][k] = 0.5f + fabsf(vals[i][k]);
  }
  pn_tensor *y0 = NULL, *x0[4] = {NULL};
  for (int i = 0; i < n; i++) x0[i] = make(ref_dev(), &s[i], vals[i]);
  y0 = tu_check(f(arg, x0), label);
  tdesc ys = {y0->ndim, {0}};
  for (int d = 0; d < y0->ndim; d++) ys.d[d] = y0->shape[d];
  pn_tensor_unref(y0);
  for (int i = 0; i < n; i++) pn_tensor_unref(x0[i]);
  float *w = random_host(&ys, -1.0f, 1.0f);
  run_out r = run_on(ref_dev(), f, arg, n, s, vals, w);
  assert_int_equal(pn_tape_size(), 0);
  int was = pn_set_grad_enabled(0);
  const float eps = 1e-2f;
  for (int i = 0; i < n; i++) {
    float *g = tu_host(r.grad[i]);
    for (int64_t j = 0; j < numel(&s[i]); j++) {
      float keep = vals[i][j];
      vals[i][j] = keep + eps;
      double lp = loss_of(f, arg, n, s, vals, w);
      vals[i][j] = keep - eps;
      double lm = loss_of(f, arg, n, s, vals, w);
      vals[i][j] = keep;
      double num = (lp - lm) / (2.0 * eps);
      if (fabs(num - g[j]) > 2e-3 + 2e-2 * fabs(num))
        fail_msg("%s: d/dx%d[%lld] analytic %.6f, numeric %.6f", label, i, (long long)j, g[j], num);
    }
    free(g);
  }
  pn_set_grad_enabled(was);
  run_free(&r, n);
  free(w);
  for (int i = 0; i < n; i++) free(vals[i]);
}

static void test_gradcheck_pool(void **state) {
  (void)state;
  static const in_kind distinct[1] = {IN_DISTINCT};
  static const size_t picks[] = {0, 1, 2, 3, 4, 6, 7, 8, 9, 10, 11};
  for (size_t i = 0; i < COUNT(picks); i++) {
    const pool_case *c = &pool_cases[picks[i]];
    gradcheck(f_pool, c, 1, &c->s, distinct, c->label);
  }
  for (size_t i = 0; i < 8; i++) {
    const adaptive_case *c = &adaptive_cases[i];
    gradcheck(f_adaptive, c, 1, &c->s, distinct, c->label);
  }
}

static void test_gradcheck_bn(void **state) {
  (void)state;
  static const in_kind kinds[3] = {IN_ANY, IN_POSITIVE, IN_ANY};
  for (size_t i = 0; i < 5; i++) {
    const bn_case *c = &bn_cases[i];
    tdesc s[3] = {c->s, {1, {c->s.d[1]}}, {1, {c->s.d[1]}}};
    gradcheck(f_bn, c, c->affine ? 3 : 1, s, kinds, c->label);
  }
}

static void test_gradcheck_concat_clamp(void **state) {
  (void)state;
  static const in_kind any[3] = {IN_ANY, IN_ANY, IN_ANY};
  for (size_t i = 0; i < 4; i++) gradcheck(f_concat, &concat_cases[i], 3, concat_cases[i].s, any,
                                           concat_cases[i].label);
  static const in_kind distinct[1] = {IN_DISTINCT};
  for (size_t i = 0; i < 2; i++)
    gradcheck(f_clamp, &clamp_cases[i], 1, &clamp_cases[i].s, distinct, clamp_cases[i].label);
}

/* ------------------------------------------------------------ PyTorch's values */

static pn_tensor *host_tensor(pn_device *dev, int ndim, const int64_t *shape, const float *v) {
  return tu_check(pn_tensor_from_host(dev, PN_F32, ndim, shape, v), "tensor");
}

static void test_pool_values(void **state) {
  (void)state;
  pn_device *devs[2] = {ref_dev(), cpu_dev()};
  float r16[16], r25[25], r7[7];
  for (int i = 0; i < 25; i++) r25[i] = (float)i;
  for (int i = 0; i < 16; i++) r16[i] = (float)i;
  for (int i = 0; i < 7; i++) r7[i] = (float)i;
  /* F.avg_pool2d(arange(16).view(1,1,4,4), 3, 2, 1, ceil_mode=True, count_include_pad=...) */
  static const float avg_pad[9] = {1.1111112f, 2.6666667f, 1.6666666f, 5.6666665f, 10.0f,
                                   5.5f,       4.1666665f, 7.0f,       3.75f};
  static const float avg_nopad[9] = {2.5f, 4.0f, 5.0f, 8.5f, 10.0f, 11.0f, 12.5f, 14.0f, 15.0f};
  /* F.{max,avg}_pool2d(arange(25).view(1,1,5,5), 2, 2, ceil_mode=True) */
  static const float max5[9] = {6, 8, 9, 16, 18, 19, 21, 23, 24};
  static const float avg5[9] = {3.0f, 5.0f, 6.5f, 13.0f, 15.0f, 16.5f, 20.5f, 22.5f, 24.0f};
  int64_t s4[4] = {1, 1, 4, 4}, s5[4] = {1, 1, 5, 5}, s7[4] = {1, 1, 1, 7};
  for (int d = 0; d < 2; d++) {
    pn_tensor *x4 = host_tensor(devs[d], 4, s4, r16), *x5 = host_tensor(devs[d], 4, s5, r25);
    pn_tensor *x7 = host_tensor(devs[d], 4, s7, r7);
    pn_pool2d_params p = G(3, 3, 2, 2, 1, 1, 1, 1);
    pn_tensor *y = tu_check(pn_pool2d(PN_POOL_AVG, x4, &p), "avg pad");
    assert_int_equal(y->shape[2], 3);
    expect_values(y, avg_pad, 9, 1e-6, "avg count_include_pad");
    pn_tensor_unref(y);
    p.count_include_pad = 0;
    y = tu_check(pn_pool2d(PN_POOL_AVG, x4, &p), "avg nopad");
    expect_values(y, avg_nopad, 9, 1e-6, "avg no pad");
    pn_tensor_unref(y);
    pn_pool2d_params q = G(2, 2, 2, 2, 0, 0, 1, 1);
    y = tu_check(pn_pool2d(PN_POOL_MAX, x5, &q), "max ceil");
    expect_values(y, max5, 9, 0.0, "max ceil_mode");
    pn_tensor_unref(y);
    y = tu_check(pn_pool2d(PN_POOL_AVG, x5, &q), "avg ceil");
    expect_values(y, avg5, 9, 1e-6, "avg ceil_mode");
    pn_tensor_unref(y);
    /* Adaptive 7 -> 3: windows [0,3) [2,5) [4,7). */
    static const float a_avg[3] = {1, 3, 5}, a_max[3] = {2, 4, 6};
    y = tu_check(pn_adaptive_pool2d(PN_POOL_ADAPTIVE_AVG, x7, 1, 3), "adaptive avg");
    expect_values(y, a_avg, 3, 1e-6, "adaptive avg 7->3");
    pn_tensor_unref(y);
    y = tu_check(pn_adaptive_pool2d(PN_POOL_ADAPTIVE_MAX, x7, 1, 3), "adaptive max");
    expect_values(y, a_max, 3, 0.0, "adaptive max 7->3");
    pn_tensor_unref(y);
    pn_tensor_unref(x4);
    pn_tensor_unref(x5);
    pn_tensor_unref(x7);
  }
}

/* With ties the whole gradient goes to the first maximum of each window. */
static void test_max_pool_ties(void **state) {
  (void)state;
  pn_device *devs[2] = {ref_dev(), cpu_dev()};
  float ones[4] = {1, 1, 1, 1};
  int64_t s22[4] = {1, 1, 2, 2}, s13[4] = {1, 1, 1, 3};
  static const float g22[4] = {1, 0, 0, 0}, g13[3] = {1, 1, 0};
  for (int d = 0; d < 2; d++) {
    pn_tensor *x = host_tensor(devs[d], 4, s22, ones);
    pn_tensor_set_requires_grad(x, 1);
    pn_pool2d_params p = G(2, 2, 2, 2, 0, 0, 0, 1);
    pn_tensor *y = tu_check(pn_pool2d(PN_POOL_MAX, x, &p), "max");
    pn_tensor *l = tu_check(pn_sum_all(y), "sum");
    assert_int_equal(pn_backward(l, NULL), PN_OK);
    expect_values(pn_tensor_grad(x), g22, 4, 0.0, "2x2 ties");
    pn_tensor_unref(l);
    pn_tensor_unref(y);
    pn_tensor_unref(x);
    /* Overlapping windows (1x2, stride 1) over [1,1,1]: [1,1,0]. */
    x = host_tensor(devs[d], 4, s13, ones);
    pn_tensor_set_requires_grad(x, 1);
    pn_pool2d_params q = G(1, 2, 1, 1, 0, 0, 0, 1);
    y = tu_check(pn_pool2d(PN_POOL_MAX, x, &q), "max overlap");
    l = tu_check(pn_sum_all(y), "sum");
    assert_int_equal(pn_backward(l, NULL), PN_OK);
    expect_values(pn_tensor_grad(x), g13, 3, 0.0, "overlapping ties");
    pn_tensor_unref(l);
    pn_tensor_unref(y);
    pn_tensor_unref(x);
  }
}

/* x [4,2]: channel 0 = 1,2,3,4 (mean 2.5, var 1.25, unbiased 5/3),
 * channel 1 = 0,0,0,8 (mean 2, var 12, unbiased 16); momentum 0.1 from
 * running (0, 1). Values from F.batch_norm. */
static void test_bn_values(void **state) {
  (void)state;
  pn_device *devs[2] = {ref_dev(), cpu_dev()};
  static const float xv[8] = {1, 0, 2, 0, 3, 0, 4, 8};
  static const float y_train[8] = {-1.3416353f, -0.5773500f, -0.4472117f, -0.5773500f,
                                   0.4472119f,  -0.5773500f, 1.3416355f,  1.7320501f};
  static const float rm_want[2] = {0.25f, 0.2f}, rv_want[2] = {1.0666667f, 2.5f};
  static const float y_eval[8] = {0.5f,       5.4998798f, 1.4999988f, 5.4998798f,
                                  2.4999976f, 5.4998798f, 3.4999964f, 53.498917f};
  int64_t sx[2] = {4, 2}, c = 2;
  for (int d = 0; d < 2; d++) {
    pn_tensor *x = host_tensor(devs[d], 2, sx, xv);
    pn_tensor *rm = tu_check(pn_zeros(devs[d], 1, &c), "rm");
    pn_tensor *rv = tu_check(pn_ones(devs[d], 1, &c), "rv");
    pn_tensor *y = tu_check(pn_batch_norm(x, NULL, NULL, rm, rv, 1, 0.1, 1e-5), "bn train");
    expect_values(y, y_train, 8, 2e-6, "bn training output");
    expect_values(rm, rm_want, 2, 1e-6, "running_mean");
    expect_values(rv, rv_want, 2, 1e-6, "running_var");
    pn_tensor_unref(y);
    /* Evaluation: running statistics, which stay as they are. */
    static const float rm_e[2] = {1, -1}, rv_e[2] = {4, 0.25f}, wv[2] = {2, 3}, bv[2] = {0.5f, -0.5f};
    pn_tensor *m = host_tensor(devs[d], 1, &c, rm_e), *v = host_tensor(devs[d], 1, &c, rv_e);
    pn_tensor *w = host_tensor(devs[d], 1, &c, wv), *b = host_tensor(devs[d], 1, &c, bv);
    y = tu_check(pn_batch_norm(x, w, b, m, v, 0, 0.1, 1e-5), "bn eval");
    expect_values(y, y_eval, 8, 1e-5, "bn eval output");
    expect_values(m, rm_e, 2, 0.0, "eval keeps running_mean");
    expect_values(v, rv_e, 2, 0.0, "eval keeps running_var");
    pn_tensor *ts[] = {x, rm, rv, y, m, v, w, b};
    for (size_t i = 0; i < COUNT(ts); i++) pn_tensor_unref(ts[i]);
  }
}

/* Two training steps on [N,C,H,W]: the running statistics follow
 * (1-m)*r + m*batch with the unbiased variance, computed here by hand. */
static void test_bn_running_4d(void **state) {
  (void)state;
  tdesc s = T4(3, 4, 5, 2);
  int64_t c = 4, per = 3 * 5 * 2;
  pn_device *devs[2] = {ref_dev(), cpu_dev()};
  float *xv = random_host(&s, -2.0f, 5.0f);
  for (int d = 0; d < 2; d++) {
    pn_tensor *x = make(devs[d], &s, xv);
    pn_tensor *rm = tu_check(pn_full(devs[d], PN_F32, 1, &c, 0.5), "rm");
    pn_tensor *rv = tu_check(pn_full(devs[d], PN_F32, 1, &c, 2.0), "rv");
    double em[4], ev[4];
    for (int k = 0; k < 4; k++) em[k] = 0.5, ev[k] = 2.0;
    for (int step = 0; step < 2; step++) {
      pn_tensor *y = tu_check(pn_batch_norm(x, NULL, NULL, rm, rv, 1, 0.25, 1e-5), "bn");
      pn_tensor_unref(y);
      for (int k = 0; k < 4; k++) {
        double sum = 0.0, sq = 0.0;
        for (int n = 0; n < 3; n++)
          for (int i = 0; i < 10; i++) sum += xv[(n * 4 + k) * 10 + i];
        double mean = sum / (double)per;
        for (int n = 0; n < 3; n++)
          for (int i = 0; i < 10; i++) {
            double dv = xv[(n * 4 + k) * 10 + i] - mean;
            sq += dv * dv;
          }
        em[k] = 0.75 * em[k] + 0.25 * mean;
        ev[k] = 0.75 * ev[k] + 0.25 * sq / (double)(per - 1);
      }
    }
    float fm[4], fv[4];
    for (int k = 0; k < 4; k++) fm[k] = (float)em[k], fv[k] = (float)ev[k];
    expect_values(rm, fm, 4, 1e-5, "running_mean after 2 steps");
    expect_values(rv, fv, 4, 1e-5, "running_var after 2 steps");
    pn_tensor_unref(x);
    pn_tensor_unref(rm);
    pn_tensor_unref(rv);
  }
  free(xv);
}

/* ------------------------------------------------------------ errors */

static void expect_error(pn_tensor *t, const char *needle) {
  if (t) fail_msg("expected an error mentioning '%s', got a tensor", needle);
  if (!strstr(pn_last_error(), needle))
    fail_msg("error '%s' does not mention '%s'", pn_last_error(), needle);
}

static void test_errors(void **state) {
  (void)state;
  pn_device *dev = ref_dev();
  int64_t s3[3] = {2, 3, 4}, s4[4] = {1, 2, 5, 5}, c3 = 3, one[2] = {1, 2};
  pn_tensor *x3 = tu_check(pn_zeros(dev, 3, s3), "x3"), *x4 = tu_check(pn_zeros(dev, 4, s4), "x4");
  pn_tensor *v3 = tu_check(pn_zeros(dev, 1, &c3), "v3"), *x1 = tu_check(pn_zeros(dev, 2, one), "x1");
  pn_pool2d_params p = G(3, 3, 1, 1, 2, 2, 0, 1);
  expect_error(pn_pool2d(PN_POOL_MAX, x3, &p), "4-D");
  expect_error(pn_pool2d(PN_POOL_MAX, x4, &p), "half the kernel");
  pn_pool2d_params big = G(7, 7, 1, 1, 0, 0, 0, 1);
  expect_error(pn_pool2d(PN_POOL_AVG, x4, &big), "larger than");
  pn_pool2d_params zero = G(2, 2, 0, 1, 0, 0, 0, 1);
  expect_error(pn_pool2d(PN_POOL_AVG, x4, &zero), "stride");
  expect_error(pn_adaptive_pool2d(PN_POOL_ADAPTIVE_AVG, x4, 0, 2), "at least 1x1");
  expect_error(pn_batch_norm(x4, v3, NULL, NULL, NULL, 1, 0.1, 1e-5), "weight");
  expect_error(pn_batch_norm(x1, NULL, NULL, NULL, NULL, 1, 0.1, 1e-5), "more than one value");
  expect_error(pn_batch_norm(x4, NULL, NULL, NULL, NULL, 0, 0.1, 1e-5), "running_mean");
  pn_tensor *pair[2] = {x3, x4};
  expect_error(pn_concat(pair, 2, 1), "differs");
  pn_tensor *same[2] = {x3, x3};
  expect_error(pn_concat(same, 2, 3), "axis 3 out of range");
  /* A NULL input passes through without an error of its own. */
  assert_null(pn_clamp(NULL, 0, 1));
  pn_tensor *ts[] = {x3, x4, v3, x1};
  for (size_t i = 0; i < COUNT(ts); i++) pn_tensor_unref(ts[i]);
}

int main(void) {
  const char *seed = getenv("PN_TEST_SEED");
  if (seed) rng = strtoull(seed, NULL, 10);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_pool_cpu_vs_ref),   cmocka_unit_test(test_bn_cpu_vs_ref),
      cmocka_unit_test(test_concat_cpu_vs_ref), cmocka_unit_test(test_clamp_cpu_vs_ref),
      cmocka_unit_test(test_clamp_specials),    cmocka_unit_test(test_gradcheck_pool),
      cmocka_unit_test(test_gradcheck_bn),      cmocka_unit_test(test_gradcheck_concat_clamp),
      cmocka_unit_test(test_pool_values),       cmocka_unit_test(test_max_pool_ties),
      cmocka_unit_test(test_bn_values),         cmocka_unit_test(test_bn_running_4d),
      cmocka_unit_test(test_errors),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
