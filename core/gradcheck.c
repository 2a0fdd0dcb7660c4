/* Finite-difference gradient checks of layer and loss features.
 *
 * The checked scalar is L = sum(y * w) for a fixed random w (a loss: L is the
 * loss), summed in double on the host. The analytic gradient of L comes from
 * one pn_backward; the numeric one from central differences with Richardson
 * extrapolation, (4 D(h/2) - D(h)) / 3, whose O(h^4) truncation error lets h
 * be large enough that f32 rounding in the forward stays far below the
 * tolerance.
 *
 * Every forward, analytic or perturbed, runs on a freshly built layer (same
 * name, same seed, parameters written from the host copy). A stochastic
 * layer such as dropout therefore draws the same random numbers in each
 * evaluation: it is checked in training mode, against the mask of that one
 * draw, which is exactly the function whose gradient backward computes. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <plugnet/autograd.h>
#include <plugnet/device.h>
#include <plugnet/gradcheck.h>
#include <plugnet/layer.h>
#include <plugnet/loss.h>
#include <plugnet/ops.h>
#include <plugnet/registry.h>

#define STEP           2e-2 /* h; also h/2 is used */
#define KINK_GAP       0.1  /* inputs stay this far from 0, where relu bends */
#define ABS_TOL        2e-3
#define REL_TOL        2e-2
#define MAX_PER_TENSOR 200 /* elements checked per tensor; larger ones are sampled */
#define KINK_TOL       (ABS_TOL / 2) /* h-to-h/2 disagreement that marks a kink */

typedef struct probe {
  char name[128];
  int param;    /* index among the layer's parameters; -1 for the input */
  float *value; /* host copy, perturbed one element at a time */
  float *grad;  /* analytic gradient */
  int64_t n;
} probe;

typedef struct subject {
  const pn_feature_info *f;
  pn_config *cfg;
  int is_loss;
  pn_device *dev;
  pn_shape in; /* batch first */
  pn_loss *loss;
  pn_tensor *target;
  probe *probes; /* [0] is the input */
  int n_probes;
  double *w; /* the projection, shaped like the output */
  int64_t n_out;
  uint64_t rng;
  double base; /* L at the unperturbed point */
} subject;

/* ------------------------------------------------------------ helpers */

static uint64_t next_u64(uint64_t *s) {
  uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

static double next_unit(uint64_t *s) { return (double)(next_u64(s) >> 11) * 0x1.0p-53; }

/* Values in [-1, -gap] U [gap, 1]. */
static void fill_away_from_zero(float *x, int64_t n, uint64_t *s) {
  for (int64_t i = 0; i < n; i++) {
    double m = KINK_GAP + (1.0 - KINK_GAP) * next_unit(s);
    x[i] = (float)(next_u64(s) & 1 ? m : -m);
  }
}

static pn_status nomem(void) { return pn_error(PN_ERR_NOMEM, "gradcheck: out of memory"); }

static pn_shape per_sample(const pn_shape *batched) {
  pn_shape s = {batched->ndim - 1, {0}};
  for (int d = 1; d < batched->ndim; d++) s.dim[d - 1] = batched->dim[d];
  return s;
}

static pn_status read_f32(pn_tensor *t, float *dst, int64_t n, const char *what) {
  if (t->dtype != PN_F32)
    return pn_error(PN_ERR_INVALID, "gradcheck: %s is %s, not f32", what, pn_dtype_name(t->dtype));
  if (pn_tensor_numel(t) != n)
    return pn_error(PN_ERR_SHAPE, "gradcheck: %s has %lld elements, expected %lld", what,
                    (long long)pn_tensor_numel(t), (long long)n);
  int was = pn_set_grad_enabled(0);
  pn_tensor *c = pn_contiguous(t);
  pn_set_grad_enabled(was);
  if (!c) return PN_ERR_INTERNAL;
  pn_status s = pn_tensor_read(c, dst, sizeof *dst * (size_t)n);
  pn_tensor_unref(c);
  return s;
}

/* A small valid value for a required parameter left unset, so that
 * `gradcheck linear` works without --set out=N. */
static const char *small_value(const pn_param_schema *p, char *buf, size_t n) {
  double v = p->type == PN_PARAM_FLOAT ? 0.5 : 3;
  if (p->has_min && v < p->min) v = p->min;
  if (p->has_max && v > p->max) v = p->max;
  switch (p->type) {
  case PN_PARAM_INT:
  case PN_PARAM_INTS: snprintf(buf, n, "%lld", (long long)v); return buf;
  case PN_PARAM_FLOAT: snprintf(buf, n, "%.17g", v); return buf;
  case PN_PARAM_BOOL: return "true";
  case PN_PARAM_ENUM: return p->choices && p->choices[0] ? p->choices[0] : NULL;
  default: return NULL;
  }
}

/* A copy of `given` (or the defaults), required parameters filled in. */
static pn_status make_config(const pn_feature_info *f, const pn_config *given, pn_config **out) {
  char buf[64];
  pn_config *c = pn_config_new(f);
  if (!c) return nomem();
  for (int i = 0; i < f->n_params; i++) {
    const pn_param_schema *p = &f->params[i];
    const char *text = given && pn_config_has(given, p->name) ? pn_config_str(given, p->name)
                       : pn_config_has(c, p->name)            ? NULL
                                                              : small_value(p, buf, sizeof buf);
    pn_status s = text ? pn_config_set(c, p->name, text) : PN_OK;
    if (s != PN_OK) {
      pn_config_free(c);
      return s;
    }
  }
  *out = c;
  return PN_OK;
}

static pn_status add_probe(subject *s, const char *name, int param, int64_t n) {
  probe *p = realloc(s->probes, sizeof *p * (size_t)(s->n_probes + 1));
  if (!p) return nomem();
  s->probes = p;
  p = &s->probes[s->n_probes];
  memset(p, 0, sizeof *p);
  snprintf(p->name, sizeof p->name, "%s", name);
  p->param = param;
  p->n = n;
  p->value = calloc((size_t)(n ? n : 1), sizeof *p->value);
  p->grad = calloc((size_t)(n ? n : 1), sizeof *p->grad);
  s->n_probes++;
  return p->value && p->grad ? PN_OK : nomem();
}

/* Drops what depends on the input shape. */
static void subject_clear_shape(subject *s) {
  for (int i = 0; i < s->n_probes; i++) {
    free(s->probes[i].value);
    free(s->probes[i].grad);
  }
  free(s->probes);
  free(s->w);
  s->probes = NULL;
  s->n_probes = 0;
  s->w = NULL;
  s->n_out = 0;
}

static void subject_free(subject *s) {
  subject_clear_shape(s);
  pn_tensor_unref(s->target);
  pn_loss_free(s->loss);
  pn_config_free(s->cfg);
}

/* ------------------------------------------------------------ one evaluation */

static pn_status read_grad(pn_tensor *t, probe *p) {
  pn_tensor *g = pn_tensor_grad(t);
  if (!g) {
    memset(p->grad, 0, sizeof *p->grad * (size_t)p->n);
    return PN_OK;
  }
  return read_f32(g, p->grad, p->n, "a gradient");
}

/* L from the output; for the analytic pass also backpropagates w. */
static pn_status finish(subject *s, pn_tensor *y, int analytic, double *L) {
  float *host = malloc(sizeof *host * (size_t)(s->n_out ? s->n_out : 1));
  if (!host) return nomem();
  pn_status st = read_f32(y, host, s->n_out, "the output");
  double sum = 0.0;
  for (int64_t i = 0; st == PN_OK && i < s->n_out; i++) sum += (double)host[i] * s->w[i];
  *L = sum;
  if (st == PN_OK && analytic) {
    for (int64_t i = 0; i < s->n_out; i++) host[i] = (float)s->w[i];
    pn_tensor *gw = pn_tensor_from_host(s->dev, PN_F32, y->ndim, y->shape, host);
    st = gw ? pn_backward(y, gw) : PN_ERR_INTERNAL;
    pn_tensor_unref(gw);
  }
  free(host);
  return st;
}

static pn_status layer_params_load(const subject *s, pn_layer *l) {
  for (int i = 1; i < s->n_probes; i++) {
    const probe *p = &s->probes[i];
    PN_TRY(pn_tensor_write(pn_layer_param(l, p->param), p->value, sizeof *p->value * (size_t)p->n));
  }
  return PN_OK;
}

static pn_status layer_grads_read(subject *s, pn_layer *l, pn_tensor *x) {
  PN_TRY(read_grad(x, &s->probes[0]));
  for (int i = 1; i < s->n_probes; i++)
    PN_TRY(read_grad(pn_layer_param(l, s->probes[i].param), &s->probes[i]));
  return PN_OK;
}

static pn_status run_layer(subject *s, pn_tensor *x, int analytic, double *L) {
  pn_layer *l = NULL;
  pn_tensor *y = NULL;
  pn_shape sample = per_sample(&s->in);
  PN_TRY(pn_layer_create(s->f->name, s->f->name, s->cfg, &sample, 1, &l));
  pn_status st = layer_params_load(s, l);
  if (st == PN_OK) st = pn_layer_forward(l, &x, 1, &y);
  if (st == PN_OK) st = finish(s, y, analytic, L);
  if (st == PN_OK && analytic) st = layer_grads_read(s, l, x);
  pn_tensor_unref(y);
  pn_layer_free(l);
  return st;
}

static pn_status run_loss(subject *s, pn_tensor *x, int analytic, double *L) {
  pn_tensor *y = NULL;
  pn_status st = pn_loss_forward(s->loss, x, s->target, &y);
  if (st == PN_OK) st = finish(s, y, analytic, L);
  if (st == PN_OK && analytic) st = read_grad(x, &s->probes[0]);
  pn_tensor_unref(y);
  return st;
}

static pn_status run(subject *s, int analytic, double *L) {
  probe *in = &s->probes[0];
  pn_tensor *x = pn_tensor_from_host(s->dev, PN_F32, s->in.ndim, s->in.dim, in->value);
  if (!x) return PN_ERR_INTERNAL;
  pn_tensor_set_requires_grad(x, analytic);
  int was = pn_set_grad_enabled(analytic);
  pn_status st = s->is_loss ? run_loss(s, x, analytic, L) : run_layer(s, x, analytic, L);
  pn_set_grad_enabled(was);
  pn_tape_clear(); /* what a failed forward left behind */
  pn_tensor_unref(x);
  return st;
}

/* ------------------------------------------------------------ setup */

static pn_status random_projection(subject *s, int64_t n_out, int ones) {
  s->n_out = n_out;
  s->w = malloc(sizeof *s->w * (size_t)(n_out ? n_out : 1));
  if (!s->w) return nomem();
  for (int64_t i = 0; i < n_out; i++) s->w[i] = ones ? 1.0 : 2.0 * next_unit(&s->rng) - 1.0;
  return PN_OK;
}

/* Builds the layer once to learn its output shape and parameters. */
static pn_status layer_setup_on(subject *s, const pn_shape *in) {
  pn_layer *l = NULL;
  pn_shape sample = per_sample(in);
  PN_TRY(pn_layer_create(s->f->name, s->f->name, s->cfg, &sample, 1, &l));
  s->in = *in;
  pn_shape out = pn_layer_out_shape(l);
  pn_status st = add_probe(s, "input", -1, pn_shape_numel(in));
  for (int i = 0; st == PN_OK && i < pn_layer_param_count(l); i++) {
    pn_tensor *t = pn_layer_param(l, i);
    if (!t->requires_grad || t->dtype != PN_F32) continue;
    st = add_probe(s, t->name ? t->name : "parameter", i, pn_tensor_numel(t));
    if (st == PN_OK)
      st = read_f32(t, s->probes[s->n_probes - 1].value, pn_tensor_numel(t), t->name);
  }
  if (st == PN_OK) st = random_projection(s, in->dim[0] * pn_shape_numel(&out), 0);
  pn_layer_free(l);
  return st;
}

/* Without an input shape, the first of a few common ranks that builds:
 * [N, features], [N, C, H, W], [N, C, L]. */
static pn_status layer_setup(subject *s, const pn_shape *input) {
  static const pn_shape tries[] = {{2, {2, 5}}, {4, {2, 3, 5, 5}}, {3, {2, 3, 6}}};
  if (input) return layer_setup_on(s, input);
  char first[512] = "";
  for (size_t i = 0; i < sizeof tries / sizeof *tries; i++) {
    if (layer_setup_on(s, &tries[i]) == PN_OK) return PN_OK;
    if (i == 0) snprintf(first, sizeof first, "%s", pn_last_error());
    subject_clear_shape(s);
  }
  return pn_error(PN_ERR_SHAPE, "%s (also tried 4-D and 3-D inputs; give one with --input)", first);
}

/* Class indices covering every class once the batch holds that many rows,
 * so that an ignore_index inside [0, C) is always exercised. */
static pn_tensor *index_target(subject *s, const pn_shape *pred) {
  pn_shape ts = {pred->ndim - 1, {pred->dim[0]}};
  for (int d = 2; d < pred->ndim; d++) ts.dim[d - 1] = pred->dim[d];
  int64_t n = pn_shape_numel(&ts), classes = pred->dim[1];
  int64_t *perm = malloc(sizeof *perm * (size_t)classes), *t = malloc(sizeof *t * (size_t)(n + 1));
  pn_tensor *r = NULL;
  if (perm && t) {
    for (int64_t c = 0; c < classes; c++) perm[c] = c;
    for (int64_t c = classes - 1; c > 0; c--) {
      int64_t k = (int64_t)(next_u64(&s->rng) % (uint64_t)(c + 1)), tmp = perm[c];
      perm[c] = perm[k];
      perm[k] = tmp;
    }
    for (int64_t i = 0; i < n; i++) t[i] = perm[i % classes];
    r = pn_tensor_from_host(s->dev, PN_I64, ts.ndim, ts.dim, t);
  } else {
    nomem();
  }
  free(perm);
  free(t);
  return r;
}

static pn_tensor *value_target(subject *s, const pn_shape *pred) {
  int64_t n = pn_shape_numel(pred);
  float *v = malloc(sizeof *v * (size_t)(n ? n : 1));
  if (!v) return nomem(), NULL;
  for (int64_t i = 0; i < n; i++) v[i] = (float)(2.0 * next_unit(&s->rng) - 1.0);
  pn_tensor *r = pn_tensor_from_host(s->dev, PN_F32, pred->ndim, pred->dim, v);
  free(v);
  return r;
}

static pn_status loss_setup(subject *s, const pn_shape *input) {
  static const pn_shape def = {2, {4, 5}};
  const pn_shape *in = input ? input : &def;
  PN_TRY(pn_loss_create(s->f->name, s->cfg, &s->loss));
  int index = pn_loss_target_is_index(s->loss);
  if (index && in->ndim < 2)
    return pn_error(PN_ERR_SHAPE, "gradcheck %s: predictions need a class dimension, e.g. 4x5",
                    s->f->name);
  s->in = *in;
  s->target = index ? index_target(s, in) : value_target(s, in);
  if (!s->target) return PN_ERR_INTERNAL;
  PN_TRY(add_probe(s, "input", -1, pn_shape_numel(in)));
  return random_projection(s, 1, 1);
}

/* ------------------------------------------------------------ comparison */

typedef struct tally {
  int64_t checked;
  double worst_ratio, abs_err, rel_err;
  int64_t worst_index;
  int64_t kinks;
} tally;

/* Central difference at step h, divided by the step actually taken in f32;
 * *bend: the second difference (f(x+h) - 2 f(x) + f(x-h)) / h. */
static pn_status central(subject *s, probe *p, int64_t i, double h, double *d, double *bend) {
  float orig = p->value[i];
  double lp, lm;
  float up = (float)(orig + h), down = (float)(orig - h);
  p->value[i] = up;
  pn_status st = run(s, 0, &lp);
  p->value[i] = down;
  if (st == PN_OK) st = run(s, 0, &lm);
  p->value[i] = orig;
  *d = (lp - lm) / ((double)up - (double)down);
  *bend = (lp - s->base) / ((double)up - orig) - (s->base - lm) / ((double)orig - down);
  return st;
}

/* For a smooth function the steps h and h/2 agree: the central differences
 * to O(h^2), and the bend halves with the step. A kink within the step (a
 * max pool whose maximum changes hands) breaks one or the other, by an
 * amount that bounds the error it would cause; such elements are skipped. */
static pn_status numeric(subject *s, probe *p, int64_t i, double *out, int *kink) {
  double d1, d2, b1, b2;
  PN_TRY(central(s, p, i, STEP, &d1, &b1));
  PN_TRY(central(s, p, i, STEP / 2, &d2, &b2));
  *out = (4.0 * d2 - d1) / 3.0;
  *kink = fabs(d1 - d2) > KINK_TOL || fabs(b1 - 2.0 * b2) > KINK_TOL;
  return PN_OK;
}

static void compare(tally *t, int64_t i, double analytic, double num) {
  double err = fabs(analytic - num);
  double ratio = err / (ABS_TOL + REL_TOL * fabs(num));
  if (isnan(err)) ratio = INFINITY;
  t->checked++;
  if (t->checked == 1 || ratio > t->worst_ratio) {
    t->worst_ratio = ratio;
    t->abs_err = isnan(err) ? INFINITY : err;
    t->rel_err = t->abs_err / fmax(1e-3, fabs(num));
    t->worst_index = i;
  }
}

static pn_status check_probe(subject *s, probe *p, tally *t) {
  int64_t m = p->n < MAX_PER_TENSOR ? p->n : MAX_PER_TENSOR;
  for (int64_t k = 0; k < m; k++) {
    /* Sampled tensors: one element from each of m equal stretches. */
    int64_t lo = k * p->n / m, hi = (k + 1) * p->n / m;
    int64_t i = lo + (int64_t)(next_u64(&s->rng) % (uint64_t)(hi - lo));
    double num;
    int kink;
    PN_TRY(numeric(s, p, i, &num, &kink));
    if (kink) {
      t->kinks++;
      continue;
    }
    compare(t, i, p->grad[i], num);
  }
  return PN_OK;
}

static void merge(pn_gradcheck_result *r, const tally *t, const char *name, double *worst_ratio) {
  r->checked += t->checked;
  if (t->checked && (r->checked == t->checked || t->worst_ratio > *worst_ratio)) {
    *worst_ratio = t->worst_ratio;
    r->max_abs_err = t->abs_err;
    r->max_rel_err = t->rel_err;
    snprintf(r->worst, sizeof r->worst, "%s[%lld]", name, (long long)t->worst_index);
  }
}

static pn_status check_all(subject *s, pn_gradcheck_tensor_fn each, void *user,
                           pn_gradcheck_result *r) {
  double L, worst_ratio = 0.0;
  PN_TRY(run(s, 1, &L));
  s->base = L;
  for (int i = 0; i < s->n_probes; i++) {
    tally t = {0, 0.0, 0.0, 0.0, 0, 0};
    PN_TRY(check_probe(s, &s->probes[i], &t));
    merge(r, &t, s->probes[i].name, &worst_ratio);
    /* Skipping is for the odd element near a kink, not most of a tensor. */
    if (t.kinks > t.checked) worst_ratio = INFINITY;
    if (each) each(s->probes[i].name, t.checked, t.abs_err, t.rel_err, t.worst_ratio <= 1.0, user);
  }
  r->passed = r->checked > 0 && worst_ratio <= 1.0;
  return PN_OK;
}

/* ------------------------------------------------------------ entry points */

pn_status pn_gradcheck_each(const char *feature, const pn_config *cfg, const pn_shape *input,
                            uint64_t seed, pn_gradcheck_tensor_fn each, void *user,
                            pn_gradcheck_result *r) {
  subject s;
  memset(r, 0, sizeof *r);
  memset(&s, 0, sizeof s);
  if (input && (input->ndim < 1 || input->ndim > PN_MAX_DIMS || pn_shape_numel(input) < 1))
    return pn_error(PN_ERR_SHAPE, "gradcheck: the input needs a batch dimension and elements");
  if (!(s.f = pn_registry_find(feature))) return PN_ERR_NOT_FOUND;
  s.is_loss = strcmp(s.f->kind, "loss") == 0;
  if (!s.is_loss && strcmp(s.f->kind, "layer") != 0)
    return pn_error(PN_ERR_INVALID, "gradcheck: '%s' is a %s, neither a layer nor a loss", feature,
                    s.f->kind);
  s.dev = pn_default_device();
  s.rng = seed ^ 0x6A09E667F3BCC909ull;
  pn_config *c = NULL;
  PN_TRY(make_config(s.f, cfg, &c));
  s.cfg = c;
  pn_status st = s.is_loss ? loss_setup(&s, input) : layer_setup(&s, input);
  if (st == PN_OK) {
    fill_away_from_zero(s.probes[0].value, s.probes[0].n, &s.rng);
    st = check_all(&s, each, user, r);
  }
  subject_free(&s);
  if (st != PN_OK) return pn_error_prefix(st, "gradcheck %s: ", feature);
  return PN_OK;
}

pn_status pn_gradcheck(const char *feature, const pn_config *cfg, const pn_shape *input,
                       uint64_t seed, pn_gradcheck_result *r) {
  return pn_gradcheck_each(feature, cfg, input, seed, NULL, NULL, r);
}
