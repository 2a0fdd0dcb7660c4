/* Convolutional-network layers. Every forward is a composition of ops from
 * ops.h, so autograd records it and none needs a hand-written backward.
 * build() sees per-sample shapes ([C, H, W] images) and checks each
 * configuration there, so a model fails when it is put together, naming the
 * values at fault, rather than at its first batch. */
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <plugnet/plugnet.h>

/* Disjoint Philox counter ranges: a layer's weight and bias never share
 * random numbers. */
#define WEIGHT_COUNTER 0ull
#define BIAS_COUNTER   (1ull << 40)

/* Geometry values travel as ints in the op parameters. */
#define MAX_GEOMETRY (1 << 24)

static pn_status one_input(const char *feature, int n_in) {
  if (n_in == 1) return PN_OK;
  return pn_error(PN_ERR_INVALID, "%s takes one input, got %d", feature, n_in);
}

static pn_status nomem(const char *feature) {
  return pn_error(PN_ERR_NOMEM, "%s: out of memory", feature);
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

static void *new_state(pn_layer *l, size_t size) {
  void *st = calloc(1, size);
  if (st) pn_layer_set_state(l, st);
  return st;
}

static const char *shape_text(const pn_shape *s, char *buf, size_t n) {
  return pn_shape_str(s, buf, n);
}

static pn_status need_image(const char *feature, const pn_shape *in) {
  char buf[128];
  if (in->ndim == 3 && in->dim[0] >= 1 && in->dim[1] >= 1 && in->dim[2] >= 1) return PN_OK;
  return pn_error(PN_ERR_SHAPE, "%s expects [C, H, W] samples, got %s", feature,
                  shape_text(in, buf, sizeof buf));
}

/* Batched [N, C, H, W] with the C the layer was built for. */
static pn_status need_batch_of(const char *feature, const pn_tensor *x, int64_t channels) {
  if (x->ndim == 4 && x->shape[1] == channels) return PN_OK;
  pn_shape s = pn_tensor_shape(x);
  char buf[128];
  return pn_error(PN_ERR_SHAPE, "%s expects [N, %lld, H, W] inputs, got %s", feature,
                  (long long)channels, shape_text(&s, buf, sizeof buf));
}

/* An ints parameter given as k or [kh, kw]; an empty list leaves out[]
 * untouched (the caller's default). */
static pn_status read_pair(const pn_config *cfg, const char *feature, const char *key, int out[2]) {
  int64_t v[3];
  int n = pn_config_ints(cfg, key, v, 3);
  if (n == 0) return PN_OK;
  if (n > 2)
    return pn_error(PN_ERR_INVALID, "%s: %s = %s has %d values; give one or two (height, width)",
                    feature, key, pn_config_text(cfg, key), n);
  for (int i = 0; i < n; i++)
    if (v[i] > MAX_GEOMETRY || v[i] < -MAX_GEOMETRY)
      return pn_error(PN_ERR_INVALID, "%s: %s = %lld is too large", feature, key,
                      (long long)v[i]);
  out[0] = (int)v[0];
  out[1] = (int)v[n - 1];
  return PN_OK;
}

/* ------------------------------------------------------------ conv2d */

typedef struct conv {
  pn_conv2d_params p;
  int64_t in, out;
  int bias;
} conv;

/* torchvision's _make_divisible: the nearest multiple of divisor, at least
 * divisor, never more than 10% below v. */
static int64_t make_divisible(double v, int64_t divisor) {
  int64_t r = (int64_t)(v + (double)divisor / 2.0) / divisor * divisor;
  if (r < divisor) r = divisor;
  if ((double)r < 0.9 * v) r += divisor;
  return r;
}

static pn_status conv_channels(const pn_config *cfg, const pn_shape *in, conv *st) {
  st->in = in->dim[0];
  int64_t out = pn_config_int(cfg, "out"), divisor = pn_config_int(cfg, "divisor");
  double width = pn_config_float(cfg, "width");
  if (!(width > 0.0))
    return pn_error(PN_ERR_INVALID, "conv2d: width = %g must be above 0", width);
  st->out = width == 1.0 && divisor == 1 ? out : make_divisible((double)out * width, divisor);
  int64_t groups = pn_config_int(cfg, "groups");
  if (groups == 0) groups = st->in;
  if (st->in % groups || st->out % groups)
    return pn_error(PN_ERR_SHAPE,
                    "conv2d: groups = %lld must divide both the input channels (%lld) and the "
                    "output channels (%lld)",
                    (long long)groups, (long long)st->in, (long long)st->out);
  if (st->out > MAX_GEOMETRY || groups > MAX_GEOMETRY)
    return pn_error(PN_ERR_INVALID, "conv2d: %lld output channels is too many",
                    (long long)st->out);
  st->p.groups = (int)groups;
  return PN_OK;
}

/* PyTorch's size: (H + 2p - d(k-1) - 1) / s + 1, rounded down. */
static pn_status conv_extent(const char *feature, const char *axis, int64_t size, int k, int s,
                             int p, int d, int64_t *out) {
  int64_t span = (int64_t)d * (k - 1) + 1, padded = size + 2 * (int64_t)p;
  if (padded < span)
    return pn_error(PN_ERR_SHAPE,
                    "%s: kernel %d with dilation %d spans %lld, more than the padded input %s "
                    "%lld + 2*%d = %lld",
                    feature, k, d, (long long)span, axis, (long long)size, p, (long long)padded);
  *out = (padded - span) / s + 1;
  return PN_OK;
}

static pn_status conv_geometry(const pn_config *cfg, conv *st) {
  pn_conv2d_params *p = &st->p;
  for (int i = 0; i < 2; i++) p->stride[i] = p->dilation[i] = 1, p->padding[i] = 0;
  PN_TRY(read_pair(cfg, "conv2d", "stride", p->stride));
  PN_TRY(read_pair(cfg, "conv2d", "padding", p->padding));
  PN_TRY(read_pair(cfg, "conv2d", "dilation", p->dilation));
  return PN_OK;
}

static pn_status conv_init_params(pn_layer *l, const pn_config *cfg, const conv *st,
                                  const int kernel[2]) {
  pn_device *dev = pn_layer_device(l);
  uint64_t seed = pn_layer_seed(l);
  int64_t shape[4] = {st->out, st->in / st->p.groups, kernel[0], kernel[1]};
  double fan_in = (double)(shape[1] * shape[2] * shape[3]);
  double fan_out = (double)(shape[0] * shape[2] * shape[3]);
  int normal = strcmp(pn_config_str(cfg, "init"), "kaiming_normal") == 0;
  /* kaiming_uniform_(a=sqrt(5)): gain sqrt(1/3) * sqrt(3/fan_in) = 1/sqrt(fan_in). */
  double bound = 1.0 / sqrt(fan_in);
  pn_tensor *w = normal ? pn_rand_normal(dev, 4, shape, 0.0, sqrt(2.0 / fan_out), seed,
                                         WEIGHT_COUNTER)
                        : pn_rand_uniform(dev, 4, shape, -bound, bound, seed, WEIGHT_COUNTER);
  if (!w) return PN_ERR_INTERNAL;
  PN_TRY(pn_layer_add_param(l, "weight", w, 1));
  if (!st->bias) return PN_OK;
  pn_tensor *b = normal ? pn_zeros(dev, 1, &st->out)
                        : pn_rand_uniform(dev, 1, &st->out, -bound, bound, seed, BIAS_COUNTER);
  if (!b) return PN_ERR_INTERNAL;
  return pn_layer_add_param(l, "bias", b, 1);
}

static pn_status conv_build(pn_layer *l, const pn_config *cfg, const pn_shape *in, int n_in,
                            pn_shape *out) {
  PN_TRY(one_input("conv2d", n_in));
  PN_TRY(need_image("conv2d", in));
  conv *st = new_state(l, sizeof *st);
  if (!st) return nomem("conv2d");
  st->bias = pn_config_bool(cfg, "bias");
  int kernel[2] = {0, 0};
  PN_TRY(read_pair(cfg, "conv2d", "kernel", kernel));
  if (kernel[0] < 1 || kernel[1] < 1)
    return pn_error(PN_ERR_INVALID, "conv2d: kernel = %s must be positive",
                    pn_config_text(cfg, "kernel"));
  PN_TRY(conv_channels(cfg, in, st));
  PN_TRY(conv_geometry(cfg, st));
  int64_t oh = 0, ow = 0;
  PN_TRY(conv_extent("conv2d", "height", in->dim[1], kernel[0], st->p.stride[0],
                     st->p.padding[0], st->p.dilation[0], &oh));
  PN_TRY(conv_extent("conv2d", "width", in->dim[2], kernel[1], st->p.stride[1], st->p.padding[1],
                     st->p.dilation[1], &ow));
  PN_TRY(conv_init_params(l, cfg, st, kernel));
  int64_t dims[3] = {st->out, oh, ow};
  *out = pn_shape_make(3, dims);
  return PN_OK;
}

static pn_status conv_forward(pn_layer *l, pn_tensor *const *in, int n_in, pn_tensor **out) {
  (void)n_in;
  const conv *st = pn_layer_state(l);
  PN_TRY(need_batch_of("conv2d", in[0], st->in));
  pn_tensor *b = st->bias ? pn_layer_param_by_name(l, "bias") : NULL;
  return result(pn_conv2d(in[0], pn_layer_param_by_name(l, "weight"), b, &st->p), out);
}

/* ------------------------------------------------------------ batch_norm */

typedef struct norm {
  int64_t channels;
  int sample_ndim;
  int affine;
  int relu; /* act: relu, fused into the normalisation */
  double eps, momentum;
} norm;

static pn_status norm_add_tensors(pn_layer *l, const pn_config *cfg, int64_t c) {
  pn_device *dev = pn_layer_device(l);
  if (pn_config_bool(cfg, "affine")) {
    int zero = strcmp(pn_config_str(cfg, "weight_init"), "zeros") == 0;
    PN_TRY(pn_layer_add_param(l, "weight", zero ? pn_zeros(dev, 1, &c) : pn_ones(dev, 1, &c), 1));
    PN_TRY(pn_layer_add_param(l, "bias", pn_zeros(dev, 1, &c), 1));
  }
  PN_TRY(pn_layer_add_buffer(l, "running_mean", pn_zeros(dev, 1, &c)));
  PN_TRY(pn_layer_add_buffer(l, "running_var", pn_ones(dev, 1, &c)));
  /* PyTorch keeps the count as an i64 scalar; checkpoints carry it. */
  return pn_layer_add_buffer(l, "num_batches_tracked", pn_full(dev, PN_I64, 0, NULL, 0.0));
}

static pn_status norm_build(pn_layer *l, const pn_config *cfg, const pn_shape *in, int n_in,
                            pn_shape *out) {
  char buf[128];
  PN_TRY(one_input("batch_norm", n_in));
  if (in->ndim < 1 || in->dim[0] < 1)
    return pn_error(PN_ERR_SHAPE, "batch_norm expects [C], [C, L] or [C, H, W] samples, got %s",
                    shape_text(in, buf, sizeof buf));
  norm *st = new_state(l, sizeof *st);
  if (!st) return nomem("batch_norm");
  st->channels = in->dim[0];
  st->sample_ndim = in->ndim;
  st->affine = pn_config_bool(cfg, "affine");
  st->relu = strcmp(pn_config_str(cfg, "act"), "relu") == 0;
  st->eps = pn_config_float(cfg, "eps");
  st->momentum = pn_config_float(cfg, "momentum");
  PN_TRY(norm_add_tensors(l, cfg, st->channels));
  *out = *in;
  return PN_OK;
}

static pn_status count_batch(pn_layer *l) {
  pn_tensor *n = pn_layer_buffer_by_name(l, "num_batches_tracked");
  int64_t v = 0;
  PN_TRY(pn_tensor_read(n, &v, sizeof v));
  v++;
  return pn_tensor_write(n, &v, sizeof v);
}

static pn_status norm_check_input(const norm *st, const pn_tensor *x, int training) {
  char buf[128];
  pn_shape s = pn_tensor_shape(x);
  if (x->ndim != st->sample_ndim + 1 || x->shape[1] != st->channels)
    return pn_error(PN_ERR_SHAPE, "batch_norm built for %lld channels in %d-D samples got %s",
                    (long long)st->channels, st->sample_ndim, shape_text(&s, buf, sizeof buf));
  /* One value per channel has no variance (PyTorch refuses it too). */
  if (training && pn_tensor_numel(x) == st->channels)
    return pn_error(PN_ERR_SHAPE,
                    "batch_norm: training needs more than one value per channel, got input %s",
                    shape_text(&s, buf, sizeof buf));
  return PN_OK;
}

static pn_status norm_forward(pn_layer *l, pn_tensor *const *in, int n_in, pn_tensor **out) {
  (void)n_in;
  const norm *st = pn_layer_state(l);
  int training = pn_layer_training(l);
  PN_TRY(norm_check_input(st, in[0], training));
  pn_tensor *w = st->affine ? pn_layer_param_by_name(l, "weight") : NULL;
  pn_tensor *b = st->affine ? pn_layer_param_by_name(l, "bias") : NULL;
  pn_tensor *y = (st->relu ? pn_batch_norm_relu : pn_batch_norm)(
      in[0], w, b, pn_layer_buffer_by_name(l, "running_mean"),
      pn_layer_buffer_by_name(l, "running_var"), training, st->momentum, st->eps);
  if (!y) return PN_ERR_INTERNAL;
  pn_status s = training ? count_batch(l) : PN_OK;
  if (s != PN_OK) {
    pn_tensor_unref(y);
    return s;
  }
  *out = y;
  return PN_OK;
}

/* ------------------------------------------------------------ pooling */

typedef struct pool {
  const char *feature; /* for messages */
  pn_pool_kind kind;
  pn_pool2d_params p;
  int64_t channels;
  int size[2]; /* adaptive output */
} pool;

/* PyTorch's pooling_output_shape: with ceil_mode the last window must still
 * start inside the input or its left padding. */
static pn_status pool_extent(const char *feature, const char *axis, int64_t size, int k, int s,
                             int p, int ceil_mode, int64_t *out) {
  if (p > k / 2)
    return pn_error(PN_ERR_INVALID, "%s: padding %d is more than half the kernel %d (%s)", feature,
                    p, k, axis);
  int64_t room = size + 2 * (int64_t)p - k;
  if (room < 0)
    return pn_error(PN_ERR_SHAPE, "%s: kernel %d is larger than the padded input %s %lld + 2*%d",
                    feature, k, axis, (long long)size, p);
  int64_t n = (room + (ceil_mode ? s - 1 : 0)) / s + 1;
  if (ceil_mode && (n - 1) * s >= size + p) n--;
  *out = n;
  return PN_OK;
}

static pn_status pool_geometry(const pn_config *cfg, const char *feature, pn_pool2d_params *p) {
  memset(p, 0, sizeof *p);
  PN_TRY(read_pair(cfg, feature, "kernel", p->kernel));
  if (p->kernel[0] < 1 || p->kernel[1] < 1)
    return pn_error(PN_ERR_INVALID, "%s: kernel = %s must be positive", feature,
                    pn_config_text(cfg, "kernel"));
  p->stride[0] = p->kernel[0];
  p->stride[1] = p->kernel[1];
  PN_TRY(read_pair(cfg, feature, "stride", p->stride));
  PN_TRY(read_pair(cfg, feature, "padding", p->padding));
  p->ceil_mode = pn_config_bool(cfg, "ceil_mode");
  p->count_include_pad = pn_config_has(cfg, "count_include_pad") &&
                         pn_config_bool(cfg, "count_include_pad");
  return PN_OK;
}

static pn_status pool_build_kind(pn_layer *l, const pn_config *cfg, const pn_shape *in, int n_in,
                                 pn_shape *out, pn_pool_kind kind, const char *feature) {
  PN_TRY(one_input(feature, n_in));
  PN_TRY(need_image(feature, in));
  pool *st = new_state(l, sizeof *st);
  if (!st) return nomem(feature);
  st->feature = feature;
  st->kind = kind;
  st->channels = in->dim[0];
  PN_TRY(pool_geometry(cfg, feature, &st->p));
  const pn_pool2d_params *p = &st->p;
  int64_t dims[3] = {in->dim[0], 0, 0};
  PN_TRY(pool_extent(feature, "height", in->dim[1], p->kernel[0], p->stride[0], p->padding[0],
                     p->ceil_mode, &dims[1]));
  PN_TRY(pool_extent(feature, "width", in->dim[2], p->kernel[1], p->stride[1], p->padding[1],
                     p->ceil_mode, &dims[2]));
  *out = pn_shape_make(3, dims);
  return PN_OK;
}

static pn_status max_pool_build(pn_layer *l, const pn_config *cfg, const pn_shape *in, int n_in,
                                pn_shape *out) {
  return pool_build_kind(l, cfg, in, n_in, out, PN_POOL_MAX, "max_pool2d");
}

static pn_status avg_pool_build(pn_layer *l, const pn_config *cfg, const pn_shape *in, int n_in,
                                pn_shape *out) {
  return pool_build_kind(l, cfg, in, n_in, out, PN_POOL_AVG, "avg_pool2d");
}

static pn_status pool_forward(pn_layer *l, pn_tensor *const *in, int n_in, pn_tensor **out) {
  (void)n_in;
  const pool *st = pn_layer_state(l);
  PN_TRY(need_batch_of(st->feature, in[0], st->channels));
  return result(pn_pool2d(st->kind, in[0], &st->p), out);
}

/* Adaptive pools: `kind` is PN_POOL_ADAPTIVE_MAX or _AVG, or PN_POOL_COUNT
 * for the concatenation of both. */
static pn_status adaptive_build_kind(pn_layer *l, const pn_config *cfg, const pn_shape *in,
                                     int n_in, pn_shape *out, pn_pool_kind kind,
                                     const char *feature) {
  PN_TRY(one_input(feature, n_in));
  PN_TRY(need_image(feature, in));
  pool *st = new_state(l, sizeof *st);
  if (!st) return nomem(feature);
  st->feature = feature;
  st->kind = kind;
  st->channels = in->dim[0];
  PN_TRY(read_pair(cfg, feature, "size", st->size));
  if (st->size[0] < 1 || st->size[1] < 1)
    return pn_error(PN_ERR_INVALID, "%s: size = %s must be positive", feature,
                    pn_config_text(cfg, "size"));
  int64_t dims[3] = {kind == PN_POOL_COUNT ? 2 * in->dim[0] : in->dim[0], st->size[0],
                     st->size[1]};
  *out = pn_shape_make(3, dims);
  return PN_OK;
}

static pn_status adaptive_avg_build(pn_layer *l, const pn_config *cfg, const pn_shape *in,
                                    int n_in, pn_shape *out) {
  return adaptive_build_kind(l, cfg, in, n_in, out, PN_POOL_ADAPTIVE_AVG, "adaptive_avg_pool2d");
}

static pn_status adaptive_max_build(pn_layer *l, const pn_config *cfg, const pn_shape *in,
                                    int n_in, pn_shape *out) {
  return adaptive_build_kind(l, cfg, in, n_in, out, PN_POOL_ADAPTIVE_MAX, "adaptive_max_pool2d");
}

static pn_status adaptive_concat_build(pn_layer *l, const pn_config *cfg, const pn_shape *in,
                                       int n_in, pn_shape *out) {
  return adaptive_build_kind(l, cfg, in, n_in, out, PN_POOL_COUNT, "adaptive_concat_pool2d");
}

static pn_status adaptive_forward(pn_layer *l, pn_tensor *const *in, int n_in, pn_tensor **out) {
  (void)n_in;
  const pool *st = pn_layer_state(l);
  PN_TRY(need_batch_of(st->feature, in[0], st->channels));
  if (st->kind != PN_POOL_COUNT)
    return result(pn_adaptive_pool2d(st->kind, in[0], st->size[0], st->size[1]), out);
  /* fastai's order: max first, then average. */
  pn_tensor *both[2] = {
      pn_adaptive_pool2d(PN_POOL_ADAPTIVE_MAX, in[0], st->size[0], st->size[1]),
      pn_adaptive_pool2d(PN_POOL_ADAPTIVE_AVG, in[0], st->size[0], st->size[1])};
  pn_tensor *y = both[0] && both[1] ? pn_concat(both, 2, 1) : NULL;
  pn_tensor_unref(both[0]);
  pn_tensor_unref(both[1]);
  return result(y, out);
}

/* ------------------------------------------------------------ relu6, identity */

static pn_status same_shape_build(pn_layer *l, const pn_config *cfg, const pn_shape *in, int n_in,
                                  pn_shape *out) {
  (void)cfg;
  PN_TRY(one_input(pn_layer_name(l), n_in));
  *out = in[0];
  return PN_OK;
}

static pn_status relu6_forward(pn_layer *l, pn_tensor *const *in, int n_in, pn_tensor **out) {
  (void)l, (void)n_in;
  return result(pn_clamp(in[0], 0.0, 6.0), out);
}

static pn_status identity_forward(pn_layer *l, pn_tensor *const *in, int n_in, pn_tensor **out) {
  (void)l, (void)n_in;
  return result(pn_tensor_ref(in[0]), out);
}

/* ------------------------------------------------------------ add */

static pn_status add_build(pn_layer *l, const pn_config *cfg, const pn_shape *in, int n_in,
                           pn_shape *out) {
  (void)l, (void)cfg;
  char a[128], b[128];
  if (n_in < 1) return pn_error(PN_ERR_INVALID, "add needs at least one input");
  for (int i = 1; i < n_in; i++)
    if (!pn_shape_equal(&in[i], &in[0]))
      return pn_error(PN_ERR_SHAPE, "add: input %d has shape %s but input 0 has %s", i,
                      shape_text(&in[i], a, sizeof a), shape_text(&in[0], b, sizeof b));
  *out = in[0];
  return PN_OK;
}

/* The shapes were checked per sample; this catches a batch of another size
 * or a caller that bypassed build, which pn_add would silently broadcast. */
static pn_status same_batched_shapes(pn_tensor *const *in, int n_in) {
  char a[128], b[128];
  pn_shape s0 = pn_tensor_shape(in[0]);
  for (int i = 1; i < n_in; i++) {
    pn_shape si = pn_tensor_shape(in[i]);
    if (!pn_shape_equal(&si, &s0))
      return pn_error(PN_ERR_SHAPE, "add: input %d has shape %s but input 0 has %s", i,
                      shape_text(&si, a, sizeof a), shape_text(&s0, b, sizeof b));
  }
  return PN_OK;
}

static pn_status add_forward(pn_layer *l, pn_tensor *const *in, int n_in, pn_tensor **out) {
  (void)l;
  PN_TRY(same_batched_shapes(in, n_in));
  pn_tensor *sum = pn_tensor_ref(in[0]);
  for (int i = 1; i < n_in && sum; i++) {
    pn_tensor *next = pn_add(sum, in[i]);
    pn_tensor_unref(sum);
    sum = next;
  }
  return result(sum, out);
}

/* ------------------------------------------------------------ concat */

/* axis counts the batch as dimension 0; stored per sample. */
static pn_status concat_axis(const pn_config *cfg, int sample_ndim, int *axis) {
  int64_t a = pn_config_int(cfg, "axis");
  int batched = sample_ndim + 1;
  int64_t b = a < 0 ? a + batched : a;
  if (b < 1 || b >= batched)
    return pn_error(PN_ERR_SHAPE,
                    "concat: axis = %lld is not a sample dimension of a %d-D batched input "
                    "(0 is the batch)",
                    (long long)a, batched);
  *axis = (int)b - 1;
  return PN_OK;
}

static pn_status concat_build(pn_layer *l, const pn_config *cfg, const pn_shape *in, int n_in,
                              pn_shape *out) {
  char a[128], b[128];
  if (n_in < 1 || n_in > PN_OP_MAX_INPUTS)
    return pn_error(PN_ERR_INVALID, "concat takes 1 to %d inputs, got %d", PN_OP_MAX_INPUTS, n_in);
  int *axis = new_state(l, sizeof *axis);
  if (!axis) return nomem("concat");
  PN_TRY(concat_axis(cfg, in[0].ndim, axis));
  *out = in[0];
  for (int i = 1; i < n_in; i++) {
    int same = in[i].ndim == in[0].ndim;
    for (int d = 0; same && d < in[0].ndim; d++) same = d == *axis || in[i].dim[d] == in[0].dim[d];
    if (!same)
      return pn_error(PN_ERR_SHAPE,
                      "concat: input %d has shape %s, input 0 %s; they may differ only in "
                      "dimension %d (counting the batch)",
                      i, shape_text(&in[i], a, sizeof a), shape_text(&in[0], b, sizeof b),
                      *axis + 1);
    out->dim[*axis] += in[i].dim[*axis];
  }
  return PN_OK;
}

static pn_status concat_forward(pn_layer *l, pn_tensor *const *in, int n_in, pn_tensor **out) {
  if (n_in == 1) return result(pn_tensor_ref(in[0]), out);
  return result(pn_concat(in, n_in, *(const int *)pn_layer_state(l) + 1), out);
}

/* ------------------------------------------------------------ registration */

#define LAYER(build_, forward_, destroy_)                                                          \
  { .size = sizeof(pn_layer_iface), .build = build_, .forward = forward_, .destroy = destroy_ }

static const pn_layer_iface conv_iface = LAYER(conv_build, conv_forward, free_state);
static const pn_layer_iface norm_iface = LAYER(norm_build, norm_forward, free_state);
static const pn_layer_iface max_pool_iface = LAYER(max_pool_build, pool_forward, free_state);
static const pn_layer_iface avg_pool_iface = LAYER(avg_pool_build, pool_forward, free_state);
static const pn_layer_iface adaptive_avg_iface =
    LAYER(adaptive_avg_build, adaptive_forward, free_state);
static const pn_layer_iface adaptive_max_iface =
    LAYER(adaptive_max_build, adaptive_forward, free_state);
static const pn_layer_iface adaptive_concat_iface =
    LAYER(adaptive_concat_build, adaptive_forward, free_state);
static const pn_layer_iface relu6_iface = LAYER(same_shape_build, relu6_forward, NULL);
static const pn_layer_iface add_iface = LAYER(add_build, add_forward, NULL);
static const pn_layer_iface concat_iface = LAYER(concat_build, concat_forward, free_state);
static const pn_layer_iface identity_iface = LAYER(same_shape_build, identity_forward, NULL);

static pn_status init(pn_plugin_ctx *ctx) {
  PN_TRY(pn_plugin_add_layer(ctx, "conv2d", &conv_iface));
  PN_TRY(pn_plugin_add_layer(ctx, "batch_norm", &norm_iface));
  PN_TRY(pn_plugin_add_layer(ctx, "max_pool2d", &max_pool_iface));
  PN_TRY(pn_plugin_add_layer(ctx, "avg_pool2d", &avg_pool_iface));
  PN_TRY(pn_plugin_add_layer(ctx, "adaptive_avg_pool2d", &adaptive_avg_iface));
  PN_TRY(pn_plugin_add_layer(ctx, "adaptive_max_pool2d", &adaptive_max_iface));
  PN_TRY(pn_plugin_add_layer(ctx, "adaptive_concat_pool2d", &adaptive_concat_iface));
  PN_TRY(pn_plugin_add_layer(ctx, "relu6", &relu6_iface));
  PN_TRY(pn_plugin_add_layer(ctx, "add", &add_iface));
  PN_TRY(pn_plugin_add_layer(ctx, "concat", &concat_iface));
  return pn_plugin_add_layer(ctx, "identity", &identity_iface);
}

PN_PLUGIN_DEFINE("cnn", "0.1.0", init, NULL);
