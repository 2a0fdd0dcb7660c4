/* Optimizers against a host-side double implementation of PyTorch's update
 * rules (torch.optim.SGD, Adam, AdamW), on the reference and cpu backends;
 * the core's bookkeeping (state, multipliers, steps, moving); schedules. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "testutil.h"

static uint64_t rng = 12345;

/* ------------------------------------------------------------ helpers */

static pn_config *config(const char *feature, const char *pairs) {
  const pn_feature_info *f = pn_registry_find(feature);
  if (!f) fail_msg("feature %s: %s", feature, pn_last_error());
  pn_config *c = pn_config_new(f);
  assert_non_null(c);
  if (pairs && pn_config_set_list(c, pairs) != PN_OK)
    fail_msg("%s: %s: %s", feature, pairs, pn_last_error());
  return c;
}

static pn_optimizer *optimizer(const char *feature, const char *pairs, pn_tensor **params, int n) {
  pn_config *c = config(feature, pairs);
  pn_optimizer *o = NULL;
  if (pn_optimizer_create(feature, c, params, n, &o) != PN_OK)
    fail_msg("optimizer %s: %s", feature, pn_last_error());
  pn_config_free(c);
  return o;
}

static pn_schedule *schedule(const char *feature, const char *pairs) {
  pn_config *c = config(feature, pairs);
  pn_schedule *s = NULL;
  if (pn_schedule_create(feature, c, &s) != PN_OK)
    fail_msg("schedule %s: %s", feature, pn_last_error());
  pn_config_free(c);
  return s;
}

static pn_tensor *param_from(pn_device *dev, const char *name, int ndim, const int64_t *shape,
                             const double *host) {
  pn_shape sh = pn_shape_make(ndim, shape);
  int64_t n = pn_shape_numel(&sh);
  float *f = malloc(sizeof *f * (size_t)n);
  assert_non_null(f);
  for (int64_t i = 0; i < n; i++) f[i] = (float)host[i];
  pn_tensor *t = tu_check(pn_tensor_from_host(dev, PN_F32, ndim, shape, f), "param");
  free(f);
  pn_tensor_set_requires_grad(t, 1);
  pn_tensor_set_name(t, name);
  return t;
}

/* Gives p the gradient g through autograd: d/dp sum(p * g) = g exactly. */
static void set_grad(pn_tensor *p, const double *g) {
  int64_t n = pn_tensor_numel(p);
  float *f = malloc(sizeof *f * (size_t)n);
  assert_non_null(f);
  for (int64_t i = 0; i < n; i++) f[i] = (float)g[i];
  pn_tensor *gt =
      tu_check(pn_tensor_from_host(pn_tensor_device(p), PN_F32, p->ndim, p->shape, f), "grad");
  free(f);
  pn_tensor *prod = tu_check(pn_mul(p, gt), "mul");
  pn_tensor *loss = tu_check(pn_sum_all(prod), "sum");
  if (pn_backward(loss, NULL) != PN_OK) fail_msg("backward: %s", pn_last_error());
  pn_tensor_unref(loss);
  pn_tensor_unref(prod);
  pn_tensor_unref(gt);
}

/* Rounds like the float tensors do, so the host starts where the device does. */
static void fill(double *x, int64_t n, double lo, double hi) {
  float *f = malloc(sizeof *f * (size_t)n);
  assert_non_null(f);
  tu_fill_uniform(f, n, (float)lo, (float)hi, &rng);
  for (int64_t i = 0; i < n; i++) x[i] = f[i];
  free(f);
}

static double max_rel_err(const pn_tensor *t, const double *want, int64_t n) {
  float *got = tu_host(t);
  double err = 0, scale = 1;
  for (int64_t i = 0; i < n; i++) {
    double d = fabs((double)got[i] - want[i]);
    if (!(d <= err)) err = d;
    if (fabs(want[i]) > scale) scale = fabs(want[i]);
  }
  free(got);
  return err / scale;
}

static void expect_close(const pn_tensor *t, const double *want, int64_t n, double tol,
                         const char *what) {
  double e = max_rel_err(t, want, n);
  if (!(e <= tol)) fail_msg("%s: max relative error %g > %g", what, e, tol);
}

/* ------------------------------------------------------------ PyTorch, in double */

typedef struct ocase {
  const char *name;
  const char *feature; /* sgd, adam, adamw */
  double lr, wd;
  double momentum, dampening; /* sgd */
  int nesterov;
  double beta1, beta2, eps; /* adam, adamw */
  double override;          /* the momentum argument of the step, < 0: none */
} ocase;

typedef struct hstate {
  double *w, *s0, *s1; /* s0: momentum_buffer or exp_avg; s1: exp_avg_sq */
  int64_t n, t;        /* t: this parameter's updates so far */
} hstate;

static void host_sgd(const ocase *c, hstate *h, const double *g, double lr) {
  double mom = c->override >= 0 ? c->override : c->momentum;
  h->t++;
  for (int64_t i = 0; i < h->n; i++) {
    double d = g[i] + c->wd * h->w[i];
    if (mom != 0) {
      h->s0[i] = h->t == 1 ? d : mom * h->s0[i] + (1 - c->dampening) * d;
      d = c->nesterov ? d + mom * h->s0[i] : h->s0[i];
    }
    h->w[i] -= lr * d;
  }
}

static void host_adam(const ocase *c, hstate *h, const double *g, double lr) {
  int decoupled = strcmp(c->feature, "adamw") == 0;
  double b1 = c->override >= 0 ? c->override : c->beta1, b2 = c->beta2;
  h->t++;
  double bc1 = 1 - pow(b1, (double)h->t), bc2 = 1 - pow(b2, (double)h->t);
  for (int64_t i = 0; i < h->n; i++) {
    double d = g[i];
    if (decoupled)
      h->w[i] *= 1 - lr * c->wd;
    else
      d += c->wd * h->w[i];
    h->s0[i] = b1 * h->s0[i] + (1 - b1) * d;
    h->s1[i] = b2 * h->s1[i] + (1 - b2) * d * d;
    h->w[i] -= lr / bc1 * h->s0[i] / (sqrt(h->s1[i]) / sqrt(bc2) + c->eps);
  }
}

static void host_step(const ocase *c, hstate *h, const double *g, double lr) {
  if (strcmp(c->feature, "sgd") == 0)
    host_sgd(c, h, g, lr);
  else
    host_adam(c, h, g, lr);
}

static void config_text(const ocase *c, char *buf, size_t n) {
  if (strcmp(c->feature, "sgd") == 0)
    snprintf(buf, n, "lr=%.17g,weight_decay=%.17g,momentum=%.17g,dampening=%.17g,nesterov=%s",
             c->lr, c->wd, c->momentum, c->dampening, c->nesterov ? "true" : "false");
  else
    snprintf(buf, n, "lr=%.17g,weight_decay=%.17g,beta1=%.17g,beta2=%.17g,eps=%.17g", c->lr, c->wd,
             c->beta1, c->beta2, c->eps);
}

static hstate hstate_new(int64_t n) {
  hstate h = {calloc((size_t)n, sizeof(double)), calloc((size_t)n, sizeof(double)),
              calloc((size_t)n, sizeof(double)), n, 0};
  assert_true(h.w && h.s0 && h.s1);
  return h;
}

static void hstate_free(hstate *h) {
  free(h->w);
  free(h->s0);
  free(h->s1);
}

/* The learning rate of step t: varies, so that the lr argument is honoured. */
static double lr_at(const ocase *c, int t) { return c->lr * (1.0 - 0.1 * t); }

/* Runs `steps` steps of case c on dev over params shaped as given and
 * compares the parameters and every state tensor with the host. */
static void run_case(const ocase *c, pn_device *dev, const int64_t (*shapes)[2], int n_params,
                     int steps, double tol) {
  enum { MAXP = 4 };
  assert_true(n_params <= MAXP);
  pn_tensor *p[MAXP];
  hstate h[MAXP];
  for (int k = 0; k < n_params; k++) {
    int64_t n = shapes[k][0] * (shapes[k][1] ? shapes[k][1] : 1);
    int ndim = shapes[k][1] ? 2 : 1;
    h[k] = hstate_new(n);
    fill(h[k].w, n, -1, 1);
    char name[32];
    snprintf(name, sizeof name, "p%d.weight", k);
    p[k] = param_from(dev, name, ndim, shapes[k], h[k].w);
  }
  char text[512];
  config_text(c, text, sizeof text);
  pn_optimizer *o = optimizer(c->feature, text, p, n_params);
  for (int t = 0; t < steps; t++) {
    pn_optimizer_zero_grad(o);
    for (int k = 0; k < n_params; k++) {
      double *g = malloc(sizeof *g * (size_t)h[k].n);
      assert_non_null(g);
      fill(g, h[k].n, -1, 1);
      set_grad(p[k], g);
      host_step(c, &h[k], g, lr_at(c, t));
      free(g);
    }
    if (pn_optimizer_step(o, lr_at(c, t), c->override) != PN_OK)
      fail_msg("%s on %s: step %d: %s", c->name, dev->name, t, pn_last_error());
  }
  assert_int_equal(pn_optimizer_steps(o), steps);
  char what[128];
  for (int k = 0; k < n_params; k++) {
    snprintf(what, sizeof what, "%s on %s: param %d", c->name, dev->name, k);
    expect_close(p[k], h[k].w, h[k].n, tol, what);
    double *want[2] = {h[k].s0, h[k].s1};
    for (int s = 0; s < pn_optimizer_state_count(o); s++) {
      /* Plain SGD keeps a buffer it never uses, as PyTorch keeps none. */
      int unused = strcmp(c->feature, "sgd") == 0 && c->momentum == 0 && c->override < 0;
      if (unused) continue;
      snprintf(what, sizeof what, "%s on %s: param %d state %s", c->name, dev->name, k,
               pn_optimizer_state_name(o, s));
      expect_close(pn_optimizer_state(o, k, s), want[s], h[k].n, tol, what);
    }
    pn_tensor_unref(p[k]);
    hstate_free(&h[k]);
  }
  pn_optimizer_free(o);
}

static const ocase cases[] = {
    {"sgd", "sgd", 0.1, 0, 0, 0, 0, 0, 0, 0, -1},
    {"sgd momentum", "sgd", 0.1, 0, 0.9, 0, 0, 0, 0, 0, -1},
    {"sgd momentum dampening", "sgd", 0.1, 0, 0.9, 0.3, 0, 0, 0, 0, -1},
    {"sgd nesterov", "sgd", 0.05, 0, 0.9, 0, 1, 0, 0, 0, -1},
    {"sgd weight decay", "sgd", 0.1, 0.01, 0.5, 0, 0, 0, 0, 0, -1},
    {"sgd momentum override", "sgd", 0.1, 0, 0.9, 0, 0, 0, 0, 0, 0.8},
    {"adam", "adam", 1e-2, 0, 0, 0, 0, 0.9, 0.999, 1e-8, -1},
    {"adam weight decay", "adam", 1e-2, 0.1, 0, 0, 0, 0.9, 0.999, 1e-8, -1},
    {"adam betas eps", "adam", 3e-2, 0, 0, 0, 0, 0.8, 0.99, 1e-3, -1},
    {"adam beta1 override", "adam", 1e-2, 0, 0, 0, 0, 0.9, 0.999, 1e-8, 0.85},
    {"adamw", "adamw", 1e-2, 0.01, 0, 0, 0, 0.9, 0.999, 1e-8, -1},
    {"adamw strong decay", "adamw", 5e-2, 0.5, 0, 0, 0, 0.9, 0.999, 1e-8, -1},
};

static const char *const devices[] = {"reference", "cpu"};

static void test_against_pytorch_rules(void **state) {
  (void)state;
  static const int64_t shapes[2][2] = {{7, 5}, {13, 0}};
  for (size_t d = 0; d < sizeof devices / sizeof *devices; d++)
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++)
      run_case(&cases[i], tu_device(devices[d]), shapes, 2, 5, 1e-5);
}

/* Above the cpu kernels' threading threshold, with a length that is no
 * multiple of any vector width or slice size. */
static void test_large_tensor(void **state) {
  (void)state;
  static const int64_t shapes[1][2] = {{100003, 0}};
  for (size_t d = 0; d < sizeof devices / sizeof *devices; d++) {
    run_case(&cases[1], tu_device(devices[d]), shapes, 1, 3, 1e-5);  /* sgd momentum */
    run_case(&cases[3], tu_device(devices[d]), shapes, 1, 3, 1e-5);  /* nesterov */
    run_case(&cases[7], tu_device(devices[d]), shapes, 1, 3, 1e-5);  /* adam */
    run_case(&cases[10], tu_device(devices[d]), shapes, 1, 3, 1e-5); /* adamw */
  }
}

/* The cpu kernel (float, vectorised, threaded) against the reference's. */
static void test_cpu_equals_reference(void **state) {
  (void)state;
  const int64_t n = 100003;
  pn_device *ref = tu_device("reference"), *cpu = tu_device("cpu");
  double *w = malloc(sizeof *w * (size_t)n), *g = malloc(sizeof *g * (size_t)n);
  assert_true(w && g);
  fill(w, n, -2, 2);
  const char *features[] = {"adam", "adamw", "sgd"};
  const char *cfgs[] = {"lr=0.01,weight_decay=0.1", "lr=0.01", "lr=0.1,momentum=0.9,nesterov=true"};
  for (int f = 0; f < 3; f++) {
    pn_tensor *pr = param_from(ref, "w", 1, &n, w), *pc = param_from(cpu, "w", 1, &n, w);
    pn_optimizer *orf = optimizer(features[f], cfgs[f], &pr, 1);
    pn_optimizer *ocp = optimizer(features[f], cfgs[f], &pc, 1);
    for (int t = 0; t < 4; t++) {
      fill(g, n, -1, 1);
      pn_optimizer_zero_grad(orf);
      pn_optimizer_zero_grad(ocp);
      set_grad(pr, g);
      set_grad(pc, g);
      assert_int_equal(pn_optimizer_step(orf, 0.01, -1), PN_OK);
      assert_int_equal(pn_optimizer_step(ocp, 0.01, -1), PN_OK);
    }
    float *a = tu_host(pc), *b = tu_host(pr);
    double e = tu_norm_err(a, b, n);
    if (!(e <= 1e-6)) fail_msg("%s: cpu differs from reference by %g", features[f], e);
    free(a);
    free(b);
    for (int s = 0; s < pn_optimizer_state_count(ocp); s++) {
      a = tu_host(pn_optimizer_state(ocp, 0, s));
      b = tu_host(pn_optimizer_state(orf, 0, s));
      e = tu_norm_err(a, b, n);
      if (!(e <= 1e-6)) fail_msg("%s: state %d differs by %g", features[f], s, e);
      free(a);
      free(b);
    }
    pn_optimizer_free(orf);
    pn_optimizer_free(ocp);
    pn_tensor_unref(pr);
    pn_tensor_unref(pc);
  }
  free(w);
  free(g);
}

/* ------------------------------------------------------------ bookkeeping */

static void test_state_tensors(void **state) {
  (void)state;
  static const int64_t shape[2] = {4, 3};
  double w[12], g[12];
  fill(w, 12, -1, 1);
  fill(g, 12, -1, 1);
  pn_device *dev = tu_device("cpu");
  pn_tensor *p = param_from(dev, "fc1.weight", 2, shape, w);
  pn_optimizer *o = optimizer("adam", NULL, &p, 1);
  assert_int_equal(pn_optimizer_state_count(o), 2);
  assert_string_equal(pn_optimizer_state_name(o, 0), "exp_avg");
  assert_string_equal(pn_optimizer_state_name(o, 1), "exp_avg_sq");
  assert_null(pn_optimizer_state_name(o, 2));
  set_grad(p, g);
  assert_int_equal(pn_optimizer_step(o, 1e-3, -1), PN_OK);
  for (int k = 0; k < 2; k++) {
    pn_tensor *s = pn_optimizer_state(o, 0, k);
    assert_non_null(s);
    assert_int_equal(s->ndim, 2);
    assert_int_equal(s->shape[0], 4);
    assert_int_equal(s->shape[1], 3);
    assert_int_equal(s->dtype, PN_F32);
    assert_ptr_equal(pn_tensor_device(s), dev);
    char want[64];
    snprintf(want, sizeof want, "fc1.weight.%s", pn_optimizer_state_name(o, k));
    assert_string_equal(s->name, want);
  }
  assert_null(pn_optimizer_state(o, 1, 0));
  pn_optimizer_free(o);

  o = optimizer("sgd", NULL, &p, 1);
  assert_int_equal(pn_optimizer_state_count(o), 1);
  assert_string_equal(pn_optimizer_state_name(o, 0), "momentum_buffer");
  pn_optimizer_free(o);
  pn_tensor_unref(p);
}

static void test_defaults_and_base_lr(void **state) {
  (void)state;
  pn_tensor *p = param_from(tu_device("reference"), "w", 1, (int64_t[]){3}, (double[]){1, 2, 3});
  const struct {
    const char *f;
    double lr;
  } want[] = {{"sgd", 0.01}, {"adam", 1e-3}, {"adamw", 1e-3}};
  for (int i = 0; i < 3; i++) {
    pn_optimizer *o = NULL;
    assert_int_equal(pn_optimizer_create(want[i].f, NULL, &p, 1, &o), PN_OK);
    assert_true(fabs(pn_optimizer_base_lr(o) - want[i].lr) < 1e-15);
    pn_optimizer_free(o);
  }
  pn_optimizer *o = optimizer("adam", "lr=5e-4", &p, 1);
  assert_true(fabs(pn_optimizer_base_lr(o) - 5e-4) < 1e-15);
  pn_optimizer_free(o);

  /* AdamW's default decay is 0.01: one step with a zero gradient and
   * lr 0.1 only decays the weights by 1 - 0.001. */
  o = optimizer("adamw", "lr=0.1", &p, 1);
  set_grad(p, (double[]){0, 0, 0});
  assert_int_equal(pn_optimizer_step(o, 0.1, -1), PN_OK);
  expect_close(p, (double[]){0.999, 1.998, 2.997}, 3, 1e-6, "adamw default decay");
  pn_optimizer_free(o);
  pn_tensor_unref(p);
}

static void test_config_errors(void **state) {
  (void)state;
  pn_tensor *p = param_from(tu_device("reference"), "w", 1, (int64_t[]){2}, (double[]){1, 2});
  pn_optimizer *o = NULL;
  pn_config *c = config("sgd", "nesterov=true");
  assert_int_equal(pn_optimizer_create("sgd", c, &p, 1, &o), PN_ERR_INVALID);
  assert_non_null(strstr(pn_last_error(), "nesterov"));
  assert_null(o);
  /* A config made for another feature is refused, not misread. */
  assert_int_equal(pn_optimizer_create("adam", c, &p, 1, &o), PN_ERR_INVALID);
  assert_non_null(strstr(pn_last_error(), "sgd"));
  pn_config_free(c);
  assert_int_equal(pn_optimizer_create("adamm", NULL, &p, 1, &o), PN_ERR_NOT_FOUND);
  assert_non_null(strstr(pn_last_error(), "adam"));
  /* A schedule is not an optimizer. */
  assert_int_not_equal(pn_optimizer_create("cosine", NULL, &p, 1, &o), PN_OK);
  c = config("step", NULL);
  pn_schedule *s = NULL;
  assert_int_equal(pn_schedule_create("step", c, &s), PN_ERR_INVALID);
  assert_non_null(strstr(pn_last_error(), "step_size"));
  pn_config_free(c);
  pn_tensor_unref(p);
}

static void test_lr_multiplier(void **state) {
  (void)state;
  pn_device *dev = tu_device("cpu");
  double w[5], g[5];
  fill(w, 5, -1, 1);
  fill(g, 5, -1, 1);
  pn_tensor *p[2] = {param_from(dev, "a", 1, (int64_t[]){5}, w),
                     param_from(dev, "b", 1, (int64_t[]){5}, w)};
  pn_optimizer *o = optimizer("sgd", NULL, p, 2);
  pn_optimizer_set_lr_mult(o, 1, 0.25);
  set_grad(p[0], g);
  set_grad(p[1], g);
  assert_int_equal(pn_optimizer_step(o, 0.2, -1), PN_OK);
  double want[2][5];
  for (int i = 0; i < 5; i++) {
    want[0][i] = w[i] - 0.2 * g[i];
    want[1][i] = w[i] - 0.05 * g[i];
  }
  expect_close(p[0], want[0], 5, 1e-6, "multiplier 1");
  expect_close(p[1], want[1], 5, 1e-6, "multiplier 0.25");
  pn_optimizer_free(o);
  pn_tensor_unref(p[0]);
  pn_tensor_unref(p[1]);
}

/* A parameter without a gradient is left alone (frozen layers); when it
 * first gets one, its Adam state starts fresh, bias correction from step 1,
 * as PyTorch's per-parameter state does. */
static void test_param_without_grad(void **state) {
  (void)state;
  pn_device *dev = tu_device("cpu");
  const ocase *c = &cases[6]; /* adam */
  hstate h[2] = {hstate_new(6), hstate_new(6)};
  fill(h[0].w, 6, -1, 1);
  fill(h[1].w, 6, -1, 1);
  pn_tensor *p[2] = {param_from(dev, "a", 1, (int64_t[]){6}, h[0].w),
                     param_from(dev, "frozen", 1, (int64_t[]){6}, h[1].w)};
  pn_optimizer *o = optimizer("adam", "lr=0.01", p, 2);
  double g[6];
  for (int t = 0; t < 4; t++) {
    pn_optimizer_zero_grad(o);
    assert_null(pn_tensor_grad(p[0]));
    for (int k = 0; k < (t < 2 ? 1 : 2); k++) {
      fill(g, 6, -1, 1);
      set_grad(p[k], g);
      host_step(c, &h[k], g, 0.01);
    }
    assert_int_equal(pn_optimizer_step(o, 0.01, -1), PN_OK);
    if (t < 2) expect_close(p[1], h[1].w, 6, 0, "untouched while it has no gradient");
  }
  expect_close(p[0], h[0].w, 6, 1e-6, "updated every step");
  expect_close(p[1], h[1].w, 6, 1e-6, "updated from step 3");
  assert_int_equal(pn_optimizer_steps(o), 4);
  assert_int_equal(pn_optimizer_param_steps(o, 0), 4);
  assert_int_equal(pn_optimizer_param_steps(o, 1), 2);
  pn_optimizer_free(o);
  for (int k = 0; k < 2; k++) {
    pn_tensor_unref(p[k]);
    hstate_free(&h[k]);
  }
}

static void test_set_state(void **state) {
  (void)state;
  pn_device *dev = tu_device("reference");
  pn_tensor *p = param_from(dev, "w", 1, (int64_t[]){4}, (double[]){1, 2, 3, 4});
  pn_optimizer *o = optimizer("sgd", "momentum=0.5", &p, 1);
  pn_tensor *bad = tu_check(pn_zeros(dev, 1, (int64_t[]){5}), "zeros");
  /* The reference is taken even on failure, so callers never leak it. */
  assert_int_equal(pn_optimizer_set_state(o, 0, 0, bad), PN_ERR_SHAPE);
  assert_int_equal(pn_optimizer_set_state(o, 0, 1, pn_tensor_ref(p)), PN_ERR_INVALID);
  assert_int_equal(p->refs, 1);
  float b[4] = {1, 1, 1, 1};
  pn_tensor *buf = tu_check(pn_tensor_from_host(dev, PN_F32, 1, (int64_t[]){4}, b), "buf");
  assert_int_equal(pn_optimizer_set_state(o, 0, 0, buf), PN_OK);
  /* A restored run resumes: the buffer is not reset to the gradient. */
  pn_optimizer_set_steps(o, 10);
  set_grad(p, (double[]){2, 2, 2, 2});
  assert_int_equal(pn_optimizer_step(o, 0.1, -1), PN_OK);
  assert_int_equal(pn_optimizer_steps(o), 11);
  /* buf = 0.5 * 1 + 2 = 2.5; w -= 0.1 * 2.5 */
  expect_close(pn_optimizer_state(o, 0, 0), (double[]){2.5, 2.5, 2.5, 2.5}, 4, 1e-7, "buffer");
  expect_close(p, (double[]){0.75, 1.75, 2.75, 3.75}, 4, 1e-7, "param");
  assert_string_equal(pn_optimizer_state(o, 0, 0)->name, "w.momentum_buffer");
  pn_optimizer_free(o);
  pn_tensor_unref(p);
}

/* A restored parameter continues from its own count, not the run's: Adam's
 * bias correction of the next step uses it. The host parameter takes two
 * steps; the optimizer gets its state and count and takes the third. */
static void test_restore_param_steps(void **state) {
  (void)state;
  pn_device *dev = tu_device("reference");
  const ocase *c = &cases[6]; /* adam */
  hstate h = hstate_new(5);
  double g[5];
  fill(h.w, 5, -1, 1);
  for (int t = 0; t < 2; t++) {
    fill(g, 5, -1, 1);
    host_step(c, &h, g, 0.01);
  }
  pn_tensor *p = param_from(dev, "w", 1, (int64_t[]){5}, h.w);
  pn_optimizer *o = optimizer("adam", "lr=0.01", &p, 1);
  pn_tensor *s0 = param_from(dev, "m", 1, (int64_t[]){5}, h.s0);
  pn_tensor *s1 = param_from(dev, "v", 1, (int64_t[]){5}, h.s1);
  pn_tensor_set_requires_grad(s0, 0), pn_tensor_set_requires_grad(s1, 0);
  assert_int_equal(pn_optimizer_set_state(o, 0, 0, s0), PN_OK);
  assert_int_equal(pn_optimizer_set_state(o, 0, 1, s1), PN_OK);
  pn_optimizer_set_steps(o, 9); /* the run's: the parameter was frozen for 7 */
  assert_int_equal(pn_optimizer_param_steps(o, 0), 9);
  pn_optimizer_set_param_steps(o, 0, 2);
  fill(g, 5, -1, 1);
  set_grad(p, g);
  host_step(c, &h, g, 0.01);
  assert_int_equal(pn_optimizer_step(o, 0.01, -1), PN_OK);
  assert_int_equal(pn_optimizer_steps(o), 10);
  assert_int_equal(pn_optimizer_param_steps(o, 0), 3);
  expect_close(p, h.w, 5, 1e-6, "third step with its own count");
  pn_optimizer_free(o);
  pn_tensor_unref(p);
  hstate_free(&h);
}

/* A stage's weight decay replaces the config's until set back: plain SGD
 * moves w by -lr (g + wd w). */
static void test_set_weight_decay(void **state) {
  (void)state;
  pn_device *dev = tu_device("reference");
  pn_tensor *p = param_from(dev, "w", 1, (int64_t[]){2}, (double[]){1, -2});
  pn_optimizer *o = optimizer("sgd", "momentum=0,weight_decay=0.5", &p, 1);
  assert_true(pn_optimizer_base_weight_decay(o) == 0.5);
  pn_optimizer_set_weight_decay(o, 0.25);
  assert_true(pn_optimizer_base_weight_decay(o) == 0.5);
  set_grad(p, (double[]){1, 1});
  assert_int_equal(pn_optimizer_step(o, 0.1, -1), PN_OK);
  /* 1 - 0.1 (1 + 0.25); -2 - 0.1 (1 - 0.5) */
  expect_close(p, (double[]){0.875, -2.05}, 2, 1e-7, "stage's decay");
  pn_optimizer_zero_grad(o);
  pn_optimizer_set_weight_decay(o, pn_optimizer_base_weight_decay(o));
  set_grad(p, (double[]){1, 1});
  assert_int_equal(pn_optimizer_step(o, 0.1, -1), PN_OK);
  /* 0.875 - 0.1 (1 + 0.4375); -2.05 - 0.1 (1 - 1.025) */
  expect_close(p, (double[]){0.73125, -2.0475}, 2, 1e-7, "config's decay");
  pn_optimizer_free(o);
  pn_tensor_unref(p);
}

/* Moving between backends between steps gives the same trajectory. */
static void test_move_between_backends(void **state) {
  (void)state;
  pn_device *cpu = tu_device("cpu"), *ref = tu_device("reference");
  const ocase *c = &cases[10]; /* adamw */
  hstate h = hstate_new(9);
  fill(h.w, 9, -1, 1);
  pn_tensor *p = param_from(cpu, "w", 1, (int64_t[]){9}, h.w);
  char text[256];
  config_text(c, text, sizeof text);
  pn_optimizer *o = optimizer("adamw", text, &p, 1);
  double g[9];
  for (int t = 0; t < 6; t++) {
    if (t == 2) {
      assert_int_equal(pn_optimizer_to(o, ref), PN_OK);
      assert_ptr_equal(pn_tensor_device(pn_optimizer_state(o, 0, 0)), ref);
      assert_ptr_equal(pn_tensor_device(p), cpu); /* parameters belong to the model */
      pn_tensor *moved = tu_check(pn_tensor_to(p, ref), "to");
      pn_tensor_unref(p);
      p = moved;
      pn_optimizer_set_param(o, 0, p);
    }
    if (t == 4) { /* only the model moves: the state follows it */
      pn_tensor *moved = tu_check(pn_tensor_to(p, cpu), "to");
      pn_tensor_unref(p);
      p = moved;
      pn_optimizer_set_param(o, 0, p);
    }
    pn_optimizer_zero_grad(o);
    fill(g, 9, -1, 1);
    set_grad(p, g);
    host_step(c, &h, g, c->lr);
    assert_int_equal(pn_optimizer_step(o, c->lr, -1), PN_OK);
  }
  assert_ptr_equal(pn_tensor_device(pn_optimizer_state(o, 0, 1)), cpu);
  expect_close(p, h.w, 9, 1e-6, "after moving");
  expect_close(pn_optimizer_state(o, 0, 1), h.s1, 9, 1e-6, "exp_avg_sq after moving");
  pn_optimizer_free(o);
  pn_tensor_unref(p);
  hstate_free(&h);
}

/* Adam with a cosine-annealed rate drives a quadratic to its minimum. */
static void test_adam_converges(void **state) {
  (void)state;
  pn_device *dev = tu_device("cpu");
  double w0[16], target[16];
  fill(w0, 16, -3, 3);
  fill(target, 16, -1, 1);
  pn_tensor *w = param_from(dev, "w", 1, (int64_t[]){16}, w0);
  float tf[16];
  for (int i = 0; i < 16; i++) tf[i] = (float)target[i];
  pn_tensor *c = tu_check(pn_tensor_from_host(dev, PN_F32, 1, (int64_t[]){16}, tf), "target");
  pn_optimizer *o = optimizer("adam", "lr=0.1", &w, 1);
  pn_schedule *s = schedule("cosine", NULL);
  const int total = 600;
  double loss_v = INFINITY;
  for (int t = 0; t < total; t++) {
    pn_optimizer_zero_grad(o);
    pn_tensor *d = tu_check(pn_sub(w, c), "sub");
    pn_tensor *sq = tu_check(pn_square(d), "square");
    pn_tensor *loss = tu_check(pn_sum_all(sq), "sum");
    loss_v = pn_tensor_get_f32(loss, 0);
    assert_int_equal(pn_backward(loss, NULL), PN_OK);
    pn_tensor_unref(loss);
    pn_tensor_unref(sq);
    pn_tensor_unref(d);
    double lr = pn_optimizer_base_lr(o) * pn_schedule_factor(s, t, total);
    assert_int_equal(pn_optimizer_step(o, lr, pn_schedule_momentum(s, t, total)), PN_OK);
  }
  if (!(loss_v < 1e-4)) fail_msg("loss %g after %d steps", loss_v, total);
  pn_schedule_free(s);
  pn_optimizer_free(o);
  pn_tensor_unref(c);
  pn_tensor_unref(w);
}

/* ------------------------------------------------------------ schedules */

static void expect_factor(pn_schedule *s, int64_t t, int64_t total, double want) {
  double got = pn_schedule_factor(s, t, total);
  if (!(fabs(got - want) <= 1e-12 + 1e-9 * fabs(want)))
    fail_msg("factor at step %lld of %lld: %.17g, want %.17g", (long long)t, (long long)total, got,
             want);
}

static void expect_momentum(pn_schedule *s, int64_t t, int64_t total, double want) {
  double got = pn_schedule_momentum(s, t, total);
  if (!(fabs(got - want) <= 1e-12))
    fail_msg("momentum at step %lld of %lld: %.17g, want %.17g", (long long)t, (long long)total,
             got, want);
}

static void test_schedule_constant_and_warmup(void **state) {
  (void)state;
  pn_schedule *s = schedule("constant", NULL);
  expect_factor(s, 0, 100, 1);
  expect_factor(s, 99, 100, 1);
  expect_momentum(s, 0, 100, -1);
  pn_schedule_free(s);
  s = schedule("constant", "warmup=10");
  expect_factor(s, 0, 100, 0.1);
  expect_factor(s, 4, 100, 0.5);
  expect_factor(s, 9, 100, 1);
  expect_factor(s, 10, 100, 1);
  expect_factor(s, 60, 100, 1);
  pn_schedule_free(s);
  /* After the warmup the schedule runs over the remaining steps. */
  s = schedule("cosine", "warmup=10");
  expect_factor(s, 4, 110, 0.5);
  expect_factor(s, 10, 110, 1);
  expect_factor(s, 60, 110, 0.5);
  expect_factor(s, 110, 110, 0);
  pn_schedule_free(s);
}

static void test_schedule_step(void **state) {
  (void)state;
  pn_schedule *s = schedule("step", "step_size=10");
  expect_factor(s, 0, 100, 1);
  expect_factor(s, 9, 100, 1);
  expect_factor(s, 10, 100, 0.1);
  expect_factor(s, 25, 100, 0.01);
  pn_schedule_free(s);
  s = schedule("step", "milestones=[5, 8],gamma=0.5");
  expect_factor(s, 4, 100, 1);
  expect_factor(s, 5, 100, 0.5);
  expect_factor(s, 7, 100, 0.5);
  expect_factor(s, 8, 100, 0.25);
  expect_factor(s, 99, 100, 0.25);
  pn_schedule_free(s);
}

static void test_schedule_cosine_poly(void **state) {
  (void)state;
  pn_schedule *s = schedule("cosine", NULL);
  expect_factor(s, 0, 100, 1);
  expect_factor(s, 50, 100, 0.5);
  expect_factor(s, 100, 100, 0);
  expect_factor(s, 25, 100, 0.5 * (1 + cos(M_PI / 4)));
  pn_schedule_free(s);
  s = schedule("cosine", "min_factor=0.1");
  expect_factor(s, 50, 100, 0.55);
  expect_factor(s, 100, 100, 0.1);
  pn_schedule_free(s);
  s = schedule("poly", "power=2");
  expect_factor(s, 0, 100, 1);
  expect_factor(s, 50, 100, 0.25);
  expect_factor(s, 100, 100, 0);
  pn_schedule_free(s);
  s = schedule("poly", NULL);
  expect_factor(s, 25, 100, 0.75);
  pn_schedule_free(s);
  /* Seed 001's square decay with warmup: lr_end + (max - end) * frac^2. */
  s = schedule("poly", "power=2,min_factor=0.01,warmup=5");
  expect_factor(s, 0, 105, 0.2);
  expect_factor(s, 55, 105, 0.01 + 0.99 * 0.25);
  pn_schedule_free(s);
}

static void test_schedule_onecycle(void **state) {
  (void)state;
  pn_schedule *s = schedule("onecycle", NULL);
  const double div = 25, final_div = 1e4;
  expect_factor(s, 0, 100, 1 / div);
  expect_factor(s, 24, 100, 1); /* the peak: step pct_start * total - 1 */
  expect_factor(s, 99, 100, 1 / (div * final_div));
  expect_factor(s, 12, 100, 1 / div + (1 - 1 / div) * 0.5 * (1 - cos(M_PI * 12 / 24)));
  expect_momentum(s, 0, 100, 0.95);
  expect_momentum(s, 24, 100, 0.85);
  expect_momentum(s, 99, 100, 0.95);
  /* Rising, then falling, never past the ends. */
  for (int t = 1; t < 100; t++) {
    double a = pn_schedule_factor(s, t - 1, 100), b = pn_schedule_factor(s, t, 100);
    assert_true(t <= 24 ? b > a : b < a);
  }
  pn_schedule_free(s);
  s = schedule("onecycle", "pct_start=0.5,div_factor=10,cycle_momentum=false");
  expect_factor(s, 0, 200, 0.1);
  expect_factor(s, 99, 200, 1);
  expect_momentum(s, 50, 200, -1);
  pn_schedule_free(s);
}

int main(void) {
  const char *seed = getenv("PN_TEST_SEED");
  if (seed) rng = strtoull(seed, NULL, 10);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_against_pytorch_rules),
      cmocka_unit_test(test_large_tensor),
      cmocka_unit_test(test_cpu_equals_reference),
      cmocka_unit_test(test_state_tensors),
      cmocka_unit_test(test_defaults_and_base_lr),
      cmocka_unit_test(test_config_errors),
      cmocka_unit_test(test_lr_multiplier),
      cmocka_unit_test(test_param_without_grad),
      cmocka_unit_test(test_set_state),
      cmocka_unit_test(test_restore_param_steps),
      cmocka_unit_test(test_set_weight_decay),
      cmocka_unit_test(test_move_between_backends),
      cmocka_unit_test(test_adam_converges),
      cmocka_unit_test(test_schedule_constant_and_warmup),
      cmocka_unit_test(test_schedule_step),
      cmocka_unit_test(test_schedule_cosine_poly),
      cmocka_unit_test(test_schedule_onecycle),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
