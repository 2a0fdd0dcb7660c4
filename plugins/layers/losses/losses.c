/* Losses as compositions of ops, so autograd gives their gradients. Both
 * return the mean over the batch (PyTorch's "mean" reduction). */
#include <stdlib.h>
#include <string.h>

#include <plugnet/autograd.h>
#include <plugnet/loss.h>
#include <plugnet/plugnet.h>

static pn_status nomem(const char *loss) {
  return pn_error(PN_ERR_NOMEM, "%s: out of memory", loss);
}

/* ------------------------------------------------------------ cross_entropy */

typedef struct cross_entropy {
  double smoothing;
  int64_t ignore_index;
} cross_entropy;

static pn_status ce_create(const pn_config *cfg, void **ctx) {
  double eps = pn_config_float(cfg, "label_smoothing");
  if (!(eps >= 0.0 && eps < 1.0))
    return pn_error(PN_ERR_INVALID, "cross_entropy: label_smoothing = %g must be in [0, 1)", eps);
  cross_entropy *ce = malloc(sizeof *ce);
  if (!ce) return nomem("cross_entropy");
  ce->smoothing = eps;
  ce->ignore_index = pn_config_int(cfg, "ignore_index");
  *ctx = ce;
  return PN_OK;
}

/* Targets [N, d...] must match logits [N, C, d...] without the class dim. */
static pn_status ce_check_shapes(const pn_tensor *pred, const pn_tensor *target) {
  char a[96], b[96];
  pn_shape sp = pn_tensor_shape(pred), st = pn_tensor_shape(target);
  int ok = pred->ndim >= 2 && target->ndim == pred->ndim - 1 && target->shape[0] == pred->shape[0];
  for (int d = 2; ok && d < pred->ndim; d++) ok = target->shape[d - 1] == pred->shape[d];
  if (!ok)
    return pn_error(PN_ERR_SHAPE,
                    "cross_entropy: logits %s need class-index targets shaped [N, d...] without "
                    "the class dimension, got %s",
                    pn_shape_str(&sp, a, sizeof a), pn_shape_str(&st, b, sizeof b));
  if (pred->dtype != PN_F32)
    return pn_error(PN_ERR_INVALID, "cross_entropy: logits must be f32, got %s",
                    pn_dtype_name(pred->dtype));
  if (target->dtype == PN_F32)
    return pn_error(PN_ERR_INVALID, "cross_entropy: targets must be integer class indices "
                                    "(i64), got f32");
  return PN_OK;
}

/* The labels on the host as int64, whatever their device and integer type. */
static pn_status read_labels(pn_tensor *target, int64_t **out) {
  int64_t n = pn_tensor_numel(target);
  int was = pn_set_grad_enabled(0);
  pn_tensor *t = target->dtype == PN_I64 ? pn_contiguous(target) : pn_cast(target, PN_I64);
  pn_set_grad_enabled(was);
  if (!t) return PN_ERR_INTERNAL;
  int64_t *labels = malloc(sizeof *labels * (size_t)(n ? n : 1));
  pn_status s =
      labels ? pn_tensor_read(t, labels, sizeof *labels * (size_t)n) : nomem("cross_entropy");
  pn_tensor_unref(t);
  if (s != PN_OK) {
    free(labels);
    return s;
  }
  *out = labels;
  return PN_OK;
}

/* The weight each log-probability gets: (1 - eps) on the label plus eps/C on
 * every class (PyTorch's label smoothing), nothing for ignored positions.
 * Row-major [N, C, inner]: position (n, j) has label labels[n * inner + j]. */
static pn_status ce_weights(const cross_entropy *ce, const int64_t *labels, int64_t n,
                            int64_t classes, int64_t inner, float *w, int64_t *count) {
  float uniform = (float)(ce->smoothing / (double)classes);
  float on = (float)(1.0 - ce->smoothing) + uniform;
  *count = 0;
  for (int64_t i = 0; i < n * inner; i++) {
    int64_t y = labels[i], row = i / inner, j = i % inner;
    float *col = w + row * classes * inner + j;
    if (y == ce->ignore_index) continue;
    if (y < 0 || y >= classes) {
      if (inner == 1)
        return pn_error(PN_ERR_INVALID,
                        "cross_entropy: target label %lld in row %lld is outside [0, %lld)",
                        (long long)y, (long long)row, (long long)classes);
      return pn_error(PN_ERR_INVALID,
                      "cross_entropy: target label %lld in row %lld (position %lld) is outside "
                      "[0, %lld)",
                      (long long)y, (long long)row, (long long)j, (long long)classes);
    }
    for (int64_t c = 0; c < classes; c++) col[c * inner] = uniform;
    col[y * inner] = on;
    (*count)++;
  }
  return PN_OK;
}

static pn_tensor *ce_loss(pn_tensor *pred, pn_tensor *weights, int64_t count) {
  pn_tensor *logp = pn_log_softmax(pred, 1);
  pn_tensor *prod = pn_mul(weights, logp);
  pn_tensor *sum = pn_sum_all(prod);
  /* Every position ignored: 0 rather than PyTorch's 0/0, so one such batch
   * cannot poison a run with NaN. */
  pn_tensor *loss = pn_scale(sum, count ? -1.0 / (double)count : 0.0);
  pn_tensor_unref(logp);
  pn_tensor_unref(prod);
  pn_tensor_unref(sum);
  return loss;
}

static pn_status ce_forward(void *ctx, pn_tensor *pred, pn_tensor *target, pn_tensor **loss) {
  const cross_entropy *ce = ctx;
  *loss = NULL;
  PN_TRY(ce_check_shapes(pred, target));
  int64_t n = pred->shape[0], classes = pred->shape[1];
  int64_t inner = classes ? pn_tensor_numel(pred) / (n * classes) : 0;
  int64_t *labels = NULL, count = 0;
  if (n == 0 || classes == 0)
    return pn_error(PN_ERR_SHAPE, "cross_entropy: empty logits [%lld, %lld, ...]", (long long)n,
                    (long long)classes);
  PN_TRY(read_labels(target, &labels));
  float *w = calloc((size_t)pn_tensor_numel(pred), sizeof *w);
  pn_status s = w ? ce_weights(ce, labels, n, classes, inner, w, &count) : nomem("cross_entropy");
  pn_tensor *wt = NULL;
  if (s == PN_OK)
    wt = pn_tensor_from_host(pn_tensor_device(pred), PN_F32, pred->ndim, pred->shape, w);
  if (s == PN_OK && wt) *loss = ce_loss(pred, wt, count);
  if (s == PN_OK && !*loss) s = PN_ERR_INTERNAL;
  pn_tensor_unref(wt);
  free(w);
  free(labels);
  return s;
}

static void ce_destroy(void *ctx) { free(ctx); }

/* ------------------------------------------------------------ mse */

static pn_status mse_create(const pn_config *cfg, void **ctx) {
  (void)cfg;
  *ctx = NULL;
  return PN_OK;
}

static pn_status mse_forward(void *ctx, pn_tensor *pred, pn_tensor *target, pn_tensor **loss) {
  char a[96], b[96];
  (void)ctx;
  *loss = NULL;
  pn_shape sp = pn_tensor_shape(pred), st = pn_tensor_shape(target);
  if (!pn_shape_equal(&sp, &st))
    return pn_error(PN_ERR_SHAPE, "mse: predictions %s and targets %s differ in shape",
                    pn_shape_str(&sp, a, sizeof a), pn_shape_str(&st, b, sizeof b));
  if (pred->dtype != PN_F32 || target->dtype != PN_F32)
    return pn_error(PN_ERR_INVALID, "mse: predictions and targets must be f32, got %s and %s",
                    pn_dtype_name(pred->dtype), pn_dtype_name(target->dtype));
  pn_tensor *d = pn_sub(pred, target);
  pn_tensor *sq = pn_square(d);
  *loss = pn_mean(sq, 0, 0);
  pn_tensor_unref(d);
  pn_tensor_unref(sq);
  return *loss ? PN_OK : PN_ERR_INTERNAL;
}

/* ------------------------------------------------------------ registration */

static const pn_loss_iface cross_entropy_iface = {.size = sizeof(pn_loss_iface),
                                                  .create = ce_create,
                                                  .forward = ce_forward,
                                                  .destroy = ce_destroy,
                                                  .target_is_index = 1};

static const pn_loss_iface mse_iface = {.size = sizeof(pn_loss_iface),
                                        .create = mse_create,
                                        .forward = mse_forward,
                                        .destroy = NULL,
                                        .target_is_index = 0};

static pn_status init(pn_plugin_ctx *ctx) {
  PN_TRY(pn_plugin_add_feature(ctx, "loss", "cross_entropy", &cross_entropy_iface));
  return pn_plugin_add_feature(ctx, "loss", "mse", &mse_iface);
}

PN_PLUGIN_DEFINE("losses", "0.1.0", init, NULL);
