/* Basic layers. Each forward is a composition of ops from ops.h, so autograd
 * records it and no layer here needs a hand-written backward. Shapes given to
 * build() are per sample; forward sees the batch as dimension 0. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <plugnet/plugnet.h>

/* Parameter initialisers draw from disjoint Philox counter ranges, so the
 * weight and the bias of one layer never share random numbers. */
#define WEIGHT_COUNTER 0ull
#define BIAS_COUNTER   (1ull << 40)

static pn_status one_input(const char *layer, int n_in) {
  if (n_in == 1) return PN_OK;
  return pn_error(PN_ERR_INVALID, "%s takes one input, got %d", layer, n_in);
}

static pn_status nomem(const char *layer) {
  return pn_error(PN_ERR_NOMEM, "%s: out of memory", layer);
}

/* The result of an op chain: NULL means an op failed and set the message. */
static pn_status result(pn_tensor *t, pn_tensor **out) {
  *out = t;
  return t ? PN_OK : PN_ERR_INTERNAL;
}

static void free_state(pn_layer *l) {
  free(pn_layer_state(l));
  pn_layer_set_state(l, NULL);
}

/* ------------------------------------------------------------ linear */

typedef struct linear {
  int64_t in, out;
  int bias;
} linear;

static pn_tensor *init_weight(pn_layer *l, const char *init, int64_t in, int64_t out) {
  pn_device *dev = pn_layer_device(l);
  int64_t shape[2] = {out, in};
  uint64_t seed = pn_layer_seed(l);
  double fan_in = (double)in, fan_out = (double)out;
  if (strcmp(init, "zeros") == 0) return pn_zeros(dev, 2, shape);
  if (strcmp(init, "kaiming_normal") == 0)
    return pn_rand_normal(dev, 2, shape, 0.0, sqrt(2.0 / fan_in), seed, WEIGHT_COUNTER);
  /* PyTorch's default, kaiming_uniform_(a=sqrt(5)), reduces to 1/sqrt(fan_in). */
  double bound = strcmp(init, "xavier") == 0 ? sqrt(6.0 / (fan_in + fan_out)) : 1.0 / sqrt(fan_in);
  return pn_rand_uniform(dev, 2, shape, -bound, bound, seed, WEIGHT_COUNTER);
}

static pn_tensor *init_bias(pn_layer *l, const char *init, const char *bias_init, int64_t in,
                            int64_t out) {
  pn_device *dev = pn_layer_device(l);
  if (strcmp(bias_init, "zeros") == 0 || strcmp(init, "zeros") == 0) return pn_zeros(dev, 1, &out);
  double bound = 1.0 / sqrt((double)in);
  return pn_rand_uniform(dev, 1, &out, -bound, bound, pn_layer_seed(l), BIAS_COUNTER);
}

static pn_status linear_build(pn_layer *l, const pn_config *cfg, const pn_shape *in, int n_in,
                              pn_shape *out) {
  PN_TRY(one_input("linear", n_in));
  if (in[0].ndim < 1)
    return pn_error(PN_ERR_SHAPE, "linear needs an input with a feature dimension, got a scalar");
  linear *st = malloc(sizeof *st);
  if (!st) return nomem("linear");
  st->in = in[0].dim[in[0].ndim - 1];
  st->out = pn_config_int(cfg, "out");
  st->bias = pn_config_bool(cfg, "bias");
  pn_layer_set_state(l, st);
  if (st->in < 1)
    return pn_error(PN_ERR_SHAPE, "linear: input has %lld features", (long long)st->in);
  const char *init = pn_config_str(cfg, "init");
  pn_tensor *w = init_weight(l, init, st->in, st->out);
  if (!w) return PN_ERR_INTERNAL;
  PN_TRY(pn_layer_add_param(l, "weight", w, 1));
  if (st->bias) {
    pn_tensor *b = init_bias(l, init, pn_config_str(cfg, "bias_init"), st->in, st->out);
    if (!b) return PN_ERR_INTERNAL;
    PN_TRY(pn_layer_add_param(l, "bias", b, 1));
  }
  *out = in[0];
  out->dim[out->ndim - 1] = st->out;
  return PN_OK;
}

/* x [N, ..., in] -> [N, ..., out]: leading dimensions are folded into the
 * rows of one matrix product, as PyTorch does. */
static pn_status linear_forward(pn_layer *l, pn_tensor *const *in, int n_in, pn_tensor **out) {
  (void)n_in;
  const linear *st = pn_layer_state(l);
  pn_tensor *x = in[0];
  if (x->ndim < 2 || x->shape[x->ndim - 1] != st->in)
    return pn_error(PN_ERR_SHAPE, "linear expects [N, ..., %lld] inputs", (long long)st->in);
  int64_t rows_shape[2] = {-1, st->in};
  pn_tensor *rows = x->ndim == 2 ? pn_tensor_ref(x) : pn_reshape(x, 2, rows_shape);
  pn_tensor *y = pn_matmul(rows, pn_layer_param_by_name(l, "weight"), 0, 1);
  pn_tensor_unref(rows);
  if (st->bias && y) {
    pn_tensor *yb = pn_add(y, pn_layer_param_by_name(l, "bias"));
    pn_tensor_unref(y);
    y = yb;
  }
  if (x->ndim == 2 || !y) return result(y, out);
  int64_t shape[PN_MAX_DIMS];
  memcpy(shape, x->shape, sizeof shape);
  shape[x->ndim - 1] = st->out;
  pn_tensor *r = pn_reshape(y, x->ndim, shape);
  pn_tensor_unref(y);
  return result(r, out);
}

/* ------------------------------------------------------------ activations */

static pn_status same_shape_build(pn_layer *l, const pn_config *cfg, const pn_shape *in, int n_in,
                                  pn_shape *out) {
  (void)cfg;
  PN_TRY(one_input(pn_layer_name(l), n_in));
  *out = in[0];
  return PN_OK;
}

static pn_status relu_forward(pn_layer *l, pn_tensor *const *in, int n_in, pn_tensor **out) {
  (void)l, (void)n_in;
  return result(pn_relu(in[0]), out);
}

static pn_status sigmoid_forward(pn_layer *l, pn_tensor *const *in, int n_in, pn_tensor **out) {
  (void)l, (void)n_in;
  return result(pn_sigmoid(in[0]), out);
}

static pn_status tanh_forward(pn_layer *l, pn_tensor *const *in, int n_in, pn_tensor **out) {
  (void)l, (void)n_in;
  return result(pn_tanh(in[0]), out);
}

static pn_status leaky_relu_build(pn_layer *l, const pn_config *cfg, const pn_shape *in, int n_in,
                                  pn_shape *out) {
  PN_TRY(same_shape_build(l, cfg, in, n_in, out));
  double *slope = malloc(sizeof *slope);
  if (!slope) return nomem("leaky_relu");
  *slope = pn_config_float(cfg, "negative_slope");
  pn_layer_set_state(l, slope);
  return PN_OK;
}

/* relu(x) - slope * relu(-x): right for any slope (a maximum would not be
 * for slopes above 1) and differentiable everywhere but at 0. */
static pn_status leaky_relu_forward(pn_layer *l, pn_tensor *const *in, int n_in, pn_tensor **out) {
  (void)n_in;
  const double *slope = pn_layer_state(l);
  pn_tensor *pos = pn_relu(in[0]);
  pn_tensor *neg_in = pn_neg(in[0]);
  pn_tensor *neg = pn_relu(neg_in);
  pn_tensor *neg_scaled = pn_scale(neg, *slope);
  pn_tensor *y = pn_sub(pos, neg_scaled);
  pn_tensor_unref(pos);
  pn_tensor_unref(neg_in);
  pn_tensor_unref(neg);
  pn_tensor_unref(neg_scaled);
  return result(y, out);
}

/* ------------------------------------------------------------ flatten */

static pn_status flatten_build(pn_layer *l, const pn_config *cfg, const pn_shape *in, int n_in,
                               pn_shape *out) {
  PN_TRY(one_input("flatten", n_in));
  int64_t start = pn_config_int(cfg, "start_dim");
  /* start_dim counts the batch as dimension 0, so per sample the merge
   * begins at start - 1. */
  if (start < 1 || start > in[0].ndim)
    return pn_error(PN_ERR_SHAPE, "flatten: start_dim = %lld is out of range for a %d-D input",
                    (long long)start, in[0].ndim + 1);
  int64_t *st = malloc(sizeof *st);
  if (!st) return nomem("flatten");
  *st = start;
  pn_layer_set_state(l, st);
  int first = (int)start - 1;
  out->ndim = first + 1;
  for (int d = 0; d < first; d++) out->dim[d] = in[0].dim[d];
  out->dim[first] = 1;
  for (int d = first; d < in[0].ndim; d++) out->dim[first] *= in[0].dim[d];
  return PN_OK;
}

static pn_status flatten_forward(pn_layer *l, pn_tensor *const *in, int n_in, pn_tensor **out) {
  (void)n_in;
  pn_tensor *x = in[0];
  int start = (int)*(const int64_t *)pn_layer_state(l);
  if (x->ndim <= start)
    return pn_error(PN_ERR_SHAPE, "flatten: a %d-D input has no dimension %d", x->ndim, start);
  int64_t shape[PN_MAX_DIMS];
  for (int d = 0; d < start; d++) shape[d] = x->shape[d];
  shape[start] = -1;
  return result(pn_reshape(x, start + 1, shape), out);
}

/* ------------------------------------------------------------ dropout */

typedef struct dropout {
  double p;
  /* Philox position of the next mask: every call draws fresh numbers, and a
   * run with the same seed draws the same ones. */
  uint64_t counter;
} dropout;

static pn_status dropout_build(pn_layer *l, const pn_config *cfg, const pn_shape *in, int n_in,
                               pn_shape *out) {
  PN_TRY(same_shape_build(l, cfg, in, n_in, out));
  double p = pn_config_float(cfg, "p");
  if (!(p >= 0.0 && p < 1.0))
    return pn_error(PN_ERR_INVALID, "dropout: p = %g must be in [0, 1)", p);
  dropout *st = malloc(sizeof *st);
  if (!st) return nomem("dropout");
  st->p = p;
  st->counter = 0;
  pn_layer_set_state(l, st);
  return PN_OK;
}

static pn_status dropout_forward(pn_layer *l, pn_tensor *const *in, int n_in, pn_tensor **out) {
  (void)n_in;
  dropout *st = pn_layer_state(l);
  pn_tensor *x = in[0];
  if (!pn_layer_training(l) || st->p == 0.0) return result(pn_tensor_ref(x), out);
  double keep = 1.0 - st->p;
  pn_tensor *mask = pn_rand_bernoulli(pn_tensor_device(x), x->ndim, x->shape, keep,
                                      pn_layer_seed(l), st->counter);
  st->counter += (uint64_t)pn_tensor_numel(x);
  /* The mask carries no gradient, so scaling it costs no tape entry. */
  pn_tensor *scaled = pn_scale(mask, 1.0 / keep);
  pn_tensor *y = pn_mul(x, scaled);
  pn_tensor_unref(mask);
  pn_tensor_unref(scaled);
  return result(y, out);
}

/* ------------------------------------------------------------ softmax */

static pn_status softmax_build(pn_layer *l, const pn_config *cfg, const pn_shape *in, int n_in,
                               pn_shape *out) {
  PN_TRY(same_shape_build(l, cfg, in, n_in, out));
  int64_t dim = pn_config_int(cfg, "dim");
  int batched = in[0].ndim + 1;
  if (dim < -batched || dim >= batched)
    return pn_error(PN_ERR_SHAPE, "softmax: dim = %lld is out of range for a %d-D input",
                    (long long)dim, batched);
  int *axis = malloc(sizeof *axis);
  if (!axis) return nomem("softmax");
  *axis = (int)(dim < 0 ? dim + batched : dim);
  pn_layer_set_state(l, axis);
  return PN_OK;
}

static pn_status softmax_forward(pn_layer *l, pn_tensor *const *in, int n_in, pn_tensor **out) {
  (void)n_in;
  return result(pn_softmax(in[0], *(const int *)pn_layer_state(l)), out);
}

/* ------------------------------------------------------------ registration */

#define LAYER(build_, forward_, destroy_)                                                          \
  { .size = sizeof(pn_layer_iface), .build = build_, .forward = forward_, .destroy = destroy_ }

static const pn_layer_iface linear_iface = LAYER(linear_build, linear_forward, free_state);
static const pn_layer_iface relu_iface = LAYER(same_shape_build, relu_forward, NULL);
static const pn_layer_iface leaky_relu_iface =
    LAYER(leaky_relu_build, leaky_relu_forward, free_state);
static const pn_layer_iface sigmoid_iface = LAYER(same_shape_build, sigmoid_forward, NULL);
static const pn_layer_iface tanh_iface = LAYER(same_shape_build, tanh_forward, NULL);
static const pn_layer_iface flatten_iface = LAYER(flatten_build, flatten_forward, free_state);
static const pn_layer_iface dropout_iface = LAYER(dropout_build, dropout_forward, free_state);
static const pn_layer_iface softmax_iface = LAYER(softmax_build, softmax_forward, free_state);

static pn_status init(pn_plugin_ctx *ctx) {
  PN_TRY(pn_plugin_add_layer(ctx, "linear", &linear_iface));
  PN_TRY(pn_plugin_add_layer(ctx, "relu", &relu_iface));
  PN_TRY(pn_plugin_add_layer(ctx, "leaky_relu", &leaky_relu_iface));
  PN_TRY(pn_plugin_add_layer(ctx, "sigmoid", &sigmoid_iface));
  PN_TRY(pn_plugin_add_layer(ctx, "tanh", &tanh_iface));
  PN_TRY(pn_plugin_add_layer(ctx, "flatten", &flatten_iface));
  PN_TRY(pn_plugin_add_layer(ctx, "dropout", &dropout_iface));
  return pn_plugin_add_layer(ctx, "softmax", &softmax_iface);
}

PN_PLUGIN_DEFINE("basic", "0.1.0", init, NULL);
