/* The bundled image transforms (transform.h). Geometric ones compose a map
 * into the sample's view and never touch pixels; the core resamples once.
 * Their geometry follows torchvision (resize, center_crop,
 * random_resized_crop, flips: sizes, rounding and crop positions as
 * torchvision computes them) and fastai (affine, lighting), so models and
 * recipes carry over. Contexts are read-only after create: one chain serves
 * every loader thread. Every random draw comes from the sample's stream. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <plugnet/plugin.h>
#include <plugnet/transform.h>

#define PI 3.14159265358979323846

typedef struct tf {
  int size[2]; /* [h, w]; the short side in both when n_size is 1 */
  int n_size;
  double scale[2], log_ratio[2]; /* random_resized_crop */
  double p;                      /* flips, affine, lighting */
  double rotate, zoom[2], warp, translate;
  pn_padding padding;
  double brightness, contrast;
  float mean[3], inv_std[3];
} tf;

/* ---------------------------------------------------------------- configs */

static const char *text_of(const pn_config *cfg, const char *key) {
  const char *s = pn_config_text(cfg, key);
  return s ? s : "";
}

static pn_status read_size(const pn_config *cfg, tf *t) {
  int64_t v[2];
  int n = pn_config_ints(cfg, "size", v, 2);
  if (n < 1 || n > 2)
    return pn_error(PN_ERR_INVALID, "size = '%s': give one value or two ([height, width])",
                    text_of(cfg, "size"));
  for (int k = 0; k < n; k++) {
    if (v[k] < 1 || v[k] > 65535)
      return pn_error(PN_ERR_INVALID, "size = '%s': %lld is outside [1, 65535]",
                      text_of(cfg, "size"), (long long)v[k]);
    t->size[k] = (int)v[k];
  }
  if (n == 1) t->size[1] = t->size[0];
  t->n_size = n;
  return PN_OK;
}

/* A [min, max] pair; with `single`, one value means min = max. */
static pn_status read_range(const pn_config *cfg, const char *key, int single, double out[2]) {
  int n = pn_config_floats(cfg, key, out, 2);
  if (n == 1 && single) out[1] = out[0];
  if (n != 2 && !(n == 1 && single))
    return pn_error(PN_ERR_INVALID, "%s = '%s': give [min, max]%s", key, text_of(cfg, key),
                    single ? " or one value" : "");
  if (!(out[0] <= out[1]))
    return pn_error(PN_ERR_INVALID, "%s = '%s': min is above max", key, text_of(cfg, key));
  return PN_OK;
}

/* One value for every channel, or three. */
static pn_status read_channels(const pn_config *cfg, const char *key, double out[3]) {
  int n = pn_config_floats(cfg, key, out, 3);
  if (n != 1 && n != 3)
    return pn_error(PN_ERR_INVALID, "%s = '%s': give one value or three (one per channel)", key,
                    text_of(cfg, key));
  if (n == 1) out[1] = out[2] = out[0];
  return PN_OK;
}

static pn_status read_crop(const pn_config *cfg, tf *t) {
  PN_TRY(read_size(cfg, t));
  double ratio[2];
  PN_TRY(read_range(cfg, "scale", 0, t->scale));
  PN_TRY(read_range(cfg, "ratio", 0, ratio));
  if (!(t->scale[1] > 0) || !(ratio[0] > 0))
    return pn_error(PN_ERR_INVALID, "scale and ratio need values above 0 (scale '%s', ratio '%s')",
                    text_of(cfg, "scale"), text_of(cfg, "ratio"));
  t->log_ratio[0] = log(ratio[0]);
  t->log_ratio[1] = log(ratio[1]);
  return PN_OK;
}

static pn_status read_affine(const pn_config *cfg, tf *t) {
  t->p = pn_config_float(cfg, "p");
  t->rotate = pn_config_float(cfg, "rotate") * PI / 180;
  t->warp = pn_config_float(cfg, "warp");
  t->translate = pn_config_float(cfg, "translate");
  PN_TRY(read_range(cfg, "zoom", 1, t->zoom));
  if (!(t->zoom[0] > 0))
    return pn_error(PN_ERR_INVALID, "zoom = '%s': zooms are above 0", text_of(cfg, "zoom"));
  const char *pad = pn_config_str(cfg, "padding");
  t->padding = strcmp(pad, "zeros") == 0    ? PN_PAD_ZEROS
               : strcmp(pad, "border") == 0 ? PN_PAD_BORDER
                                            : PN_PAD_REFLECTION;
  return PN_OK;
}

static pn_status read_lighting(const pn_config *cfg, tf *t) {
  t->p = pn_config_float(cfg, "p");
  t->brightness = pn_config_float(cfg, "brightness");
  t->contrast = pn_config_float(cfg, "contrast");
  if (t->brightness >= 1 || t->contrast >= 1)
    return pn_error(PN_ERR_INVALID, "brightness and contrast are below 1 (fastai's max_lighting)");
  return PN_OK;
}

static pn_status read_normalize(const pn_config *cfg, tf *t) {
  static const double imagenet_mean[3] = {0.485, 0.456, 0.406};
  static const double imagenet_std[3] = {0.229, 0.224, 0.225};
  double mean[3], std[3];
  if (strcmp(pn_config_str(cfg, "preset"), "imagenet") == 0) {
    memcpy(mean, imagenet_mean, sizeof mean);
    memcpy(std, imagenet_std, sizeof std);
  } else {
    PN_TRY(read_channels(cfg, "mean", mean));
    PN_TRY(read_channels(cfg, "std", std));
  }
  for (int c = 0; c < 3; c++) {
    if (!(std[c] > 0))
      return pn_error(PN_ERR_INVALID, "std = '%s': every value must be above 0",
                      text_of(cfg, "std"));
    t->mean[c] = (float)mean[c];
    t->inv_std[c] = (float)(1 / std[c]);
  }
  return PN_OK;
}

typedef enum kind {
  RESIZE,
  CENTER_CROP,
  RANDOM_CROP,
  HFLIP,
  VFLIP,
  AFFINE,
  LIGHTING,
  NORMALIZE
} kind;

static pn_status read_config(kind k, const pn_config *cfg, tf *t) {
  switch (k) {
  case RESIZE:
  case CENTER_CROP: return read_size(cfg, t);
  case RANDOM_CROP: return read_crop(cfg, t);
  case HFLIP:
  case VFLIP: t->p = pn_config_float(cfg, "p"); return PN_OK;
  case AFFINE: return read_affine(cfg, t);
  case LIGHTING: return read_lighting(cfg, t);
  case NORMALIZE: return read_normalize(cfg, t);
  }
  return pn_error(PN_ERR_INTERNAL, "unknown transform kind %d", (int)k);
}

static pn_status create(kind k, const pn_config *cfg, void **ctx) {
  tf *t = calloc(1, sizeof *t);
  if (!t) return pn_error(PN_ERR_NOMEM, "out of memory");
  pn_status s = read_config(k, cfg, t);
  if (s != PN_OK) {
    free(t);
    return s;
  }
  *ctx = t;
  return PN_OK;
}

/* ---------------------------------------------------------------- resizes and crops */

static void resize_geometry(void *ctx, pn_view *v, pn_rng *r) {
  (void)r;
  const tf *t = ctx;
  int w = t->size[1], h = t->size[0];
  if (t->n_size == 1) {
    /* torchvision: the long side is truncated, not rounded. */
    int portrait = v->w <= v->h;
    double s = t->size[0], shorter = portrait ? v->w : v->h, longer = portrait ? v->h : v->w;
    int other = (int)(s * longer / shorter);
    if (other < 1) other = 1;
    w = portrait ? t->size[0] : other;
    h = portrait ? other : t->size[0];
  }
  pn_view_crop(v, 0, 0, v->w, v->h, w, h);
}

/* torchvision's offset of a centred crop of `want` pixels out of `have`:
 * Python's round (ties to even) when it fits, else the left/top padding. */
static double center_offset(int have, int want) {
  if (want > have) return -(double)((want - have) / 2);
  return nearbyint((have - want) / 2.0);
}

static void center_crop_geometry(void *ctx, pn_view *v, pn_rng *r) {
  (void)r;
  const tf *t = ctx;
  int w = t->size[1], h = t->size[0];
  pn_view_crop(v, center_offset(v->w, w), center_offset(v->h, h), w, h, w, h);
}

/* torchvision's RandomResizedCrop.get_params: [x, y, w, h] in pixels. */
static void random_crop_box(const tf *t, int width, int height, pn_rng *r, int box[4]) {
  double area = (double)width * height;
  for (int attempt = 0; attempt < 10; attempt++) {
    double target = area * pn_rng_range(r, t->scale[0], t->scale[1]);
    double aspect = exp(pn_rng_range(r, t->log_ratio[0], t->log_ratio[1]));
    int w = (int)nearbyint(sqrt(target * aspect)), h = (int)nearbyint(sqrt(target / aspect));
    if (w > 0 && w <= width && h > 0 && h <= height) {
      box[1] = (int)(pn_rng_uniform(r) * (height - h + 1));
      box[0] = (int)(pn_rng_uniform(r) * (width - w + 1));
      box[2] = w;
      box[3] = h;
      return;
    }
  }
  /* The whole image, trimmed to the nearest allowed ratio. */
  double in_ratio = (double)width / height, lo = exp(t->log_ratio[0]), hi = exp(t->log_ratio[1]);
  int w = width, h = height;
  if (in_ratio < lo) h = (int)nearbyint(w / lo);
  if (in_ratio > hi) w = (int)nearbyint(h * hi);
  box[0] = (width - w) / 2;
  box[1] = (height - h) / 2;
  box[2] = w;
  box[3] = h;
}

static void random_crop_geometry(void *ctx, pn_view *v, pn_rng *r) {
  const tf *t = ctx;
  int box[4];
  random_crop_box(t, v->w, v->h, r, box);
  pn_view_crop(v, box[0], box[1], box[2], box[3], t->size[1], t->size[0]);
}

static void hflip_geometry(void *ctx, pn_view *v, pn_rng *r) {
  const tf *t = ctx;
  if (pn_rng_uniform(r) >= t->p) return;
  const double a[9] = {-1, 0, v->w, 0, 1, 0, 0, 0, 1};
  pn_view_then(v, a, v->w, v->h);
}

static void vflip_geometry(void *ctx, pn_view *v, pn_rng *r) {
  const tf *t = ctx;
  if (pn_rng_uniform(r) >= t->p) return;
  const double a[9] = {1, 0, 0, 0, -1, v->h, 0, 0, 1};
  pn_view_then(v, a, v->w, v->h);
}

/* ---------------------------------------------------------------- affine */

/* The homography taking the unit square's corners (0,0), (1,0), (1,1),
 * (0,1) to q[0..3] (Heckbert's closed form). */
static void square_to_quad(const double q[4][2], double m[9]) {
  double sx = q[0][0] - q[1][0] + q[2][0] - q[3][0], sy = q[0][1] - q[1][1] + q[2][1] - q[3][1];
  double dx1 = q[1][0] - q[2][0], dx2 = q[3][0] - q[2][0];
  double dy1 = q[1][1] - q[2][1], dy2 = q[3][1] - q[2][1];
  double den = dx1 * dy2 - dx2 * dy1;
  double g = (sx * dy2 - dx2 * sy) / den, h = (dx1 * sy - sx * dy1) / den;
  m[0] = q[1][0] - q[0][0] + g * q[1][0];
  m[1] = q[3][0] - q[0][0] + h * q[3][0];
  m[2] = q[0][0];
  m[3] = q[1][1] - q[0][1] + g * q[1][1];
  m[4] = q[3][1] - q[0][1] + h * q[3][1];
  m[5] = q[0][1];
  m[6] = g;
  m[7] = h;
  m[8] = 1;
}

/* fastai's symmetric perspective warp: in coordinates where the image spans
 * [-1, 1], the output's corners see the source's corners moved by dx along
 * x and dy along y, outwards on one side and inwards on the other. */
static void warp_matrix(double dx, double dy, double w, double h, double m[9]) {
  const double n[4][2] = {
      {-1 - dx, -1 - dy}, {1 + dx, -1 + dy}, {1 - dx, 1 - dy}, {-1 + dx, 1 + dy}};
  double q[4][2], sq[9];
  for (int k = 0; k < 4; k++) {
    q[k][0] = (n[k][0] + 1) * 0.5 * w;
    q[k][1] = (n[k][1] + 1) * 0.5 * h;
  }
  square_to_quad(q, sq);
  /* Output pixels to the unit square first. */
  const double to_unit[9] = {1 / w, 0, 0, 0, 1 / h, 0, 0, 0, 1};
  for (int i = 0; i < 3; i++)
    for (int j = 0; j < 3; j++)
      m[3 * i + j] =
          sq[3 * i] * to_unit[j] + sq[3 * i + 1] * to_unit[3 + j] + sq[3 * i + 2] * to_unit[6 + j];
}

static int happens(const tf *t, pn_rng *r) { return pn_rng_uniform(r) < t->p; }

/* Rotation, zoom and translation about the centre, as an affine map from
 * output to input points. fastai places the zoomed window at a random
 * centre that keeps it inside the image. */
static void similarity_matrix(const tf *t, double w, double h, pn_rng *r, double m[9]) {
  double angle = t->rotate > 0 && happens(t, r) ? pn_rng_range(r, -t->rotate, t->rotate) : 0;
  double zoom = 1, zx = 0.5, zy = 0.5, tx = 0, ty = 0;
  if ((t->zoom[0] != 1 || t->zoom[1] != 1) && happens(t, r)) {
    zoom = pn_rng_range(r, t->zoom[0], t->zoom[1]);
    zx = pn_rng_uniform(r);
    zy = pn_rng_uniform(r);
  }
  if (t->translate > 0 && happens(t, r)) {
    tx = pn_rng_range(r, -t->translate, t->translate) * w;
    ty = pn_rng_range(r, -t->translate, t->translate) * h;
  }
  double k = 1 / zoom, c = k * cos(angle), s = k * sin(angle);
  double cx = 0.5 * w, cy = 0.5 * h;
  /* Where the output's centre lands: the zoom's offset is fastai's
   * (1 - 1/zoom) * (2 * pct - 1) in half-sizes. */
  double ox = cx + (1 - k) * (2 * zx - 1) * cx + tx, oy = cy + (1 - k) * (2 * zy - 1) * cy + ty;
  const double a[9] = {c, -s, ox - c * cx + s * cy, s, c, oy - s * cx - c * cy, 0, 0, 1};
  memcpy(m, a, sizeof a);
}

static void affine_geometry(void *ctx, pn_view *v, pn_rng *r) {
  const tf *t = ctx;
  double w = v->w, h = v->h, warp[9] = {1, 0, 0, 0, 1, 0, 0, 0, 1}, sim[9];
  if (t->warp > 0 && happens(t, r)) {
    double dx = pn_rng_range(r, -t->warp, t->warp), dy = pn_rng_range(r, -t->warp, t->warp);
    warp_matrix(dx, dy, w, h, warp);
  }
  similarity_matrix(t, w, h, r, sim);
  /* The warp acts on output points first, then the similarity. */
  double a[9];
  for (int i = 0; i < 3; i++)
    for (int j = 0; j < 3; j++)
      a[3 * i + j] =
          sim[3 * i] * warp[j] + sim[3 * i + 1] * warp[3 + j] + sim[3 * i + 2] * warp[6 + j];
  v->padding = t->padding;
  pn_view_then(v, a, v->w, v->h);
}

/* ---------------------------------------------------------------- photometric */

#define CURVE_STEPS 1024

/* fastai's lighting on one value: sigmoid(e logit(x) + logit(b)) =
 * 1 / (1 + K ((1 - x) / x)^e) with K = (1 - b) / b, x clamped as fastai's
 * logit clamps it. */
static double lighting_curve(double x, double K, double e) {
  x = fmin(fmax(x, 1e-7), 1 - 1e-7);
  return 1 / (1 + K * pow((1 - x) / x, e));
}

/* The curve is smooth and the same for every value of a sample: a table
 * with linear interpolation costs a power per entry instead of one per
 * value, within 1e-4 of the curve (5e-4 on the steep steps next to 0 and 1)
 * at fastai's max_lighting 0.2, 2e-3 at the extremes. */
static void lighting_pixels(void *ctx, float *x, int c, int h, int w, pn_rng *r) {
  const tf *t = ctx;
  double K = 1, e = 1;
  if (t->brightness > 0 && happens(t, r)) {
    double b = pn_rng_range(r, 0.5 * (1 - t->brightness), 0.5 * (1 + t->brightness));
    K = (1 - b) / b;
  }
  if (t->contrast > 0 && happens(t, r)) {
    double lim = -log(1 - t->contrast);
    e = exp(pn_rng_range(r, -lim, lim));
  }
  if (K == 1 && e == 1) return;
  float table[CURVE_STEPS + 2];
  for (int k = 0; k <= CURVE_STEPS; k++)
    table[k] = (float)lighting_curve((double)k / CURVE_STEPS, K, e);
  table[CURVE_STEPS + 1] = table[CURVE_STEPS];
  size_t n = (size_t)c * (size_t)h * (size_t)w;
  for (size_t i = 0; i < n; i++) {
    /* Comparisons, not fminf, which is a call where NaN rules apply. */
    float v = x[i] > 0 ? x[i] : 0;
    v = (v < 1 ? v : 1) * CURVE_STEPS;
    int k = (int)v;
    x[i] = table[k] + (table[k + 1] - table[k]) * (v - (float)k);
  }
}

static void normalize_pixels(void *ctx, float *x, int c, int h, int w, pn_rng *r) {
  (void)r;
  const tf *t = ctx;
  size_t plane = (size_t)h * (size_t)w;
  for (int k = 0; k < c; k++) {
    float m = t->mean[k % 3], s = t->inv_std[k % 3], *p = x + (size_t)k * plane;
    for (size_t i = 0; i < plane; i++) p[i] = (p[i] - m) * s;
  }
}

/* ---------------------------------------------------------------- registration */

static pn_status create_resize(const pn_config *c, void **ctx) { return create(RESIZE, c, ctx); }
static pn_status create_center_crop(const pn_config *c, void **ctx) {
  return create(CENTER_CROP, c, ctx);
}
static pn_status create_random_crop(const pn_config *c, void **ctx) {
  return create(RANDOM_CROP, c, ctx);
}
static pn_status create_hflip(const pn_config *c, void **ctx) { return create(HFLIP, c, ctx); }
static pn_status create_vflip(const pn_config *c, void **ctx) { return create(VFLIP, c, ctx); }
static pn_status create_affine(const pn_config *c, void **ctx) { return create(AFFINE, c, ctx); }
static pn_status create_lighting(const pn_config *c, void **ctx) {
  return create(LIGHTING, c, ctx);
}
static pn_status create_normalize(const pn_config *c, void **ctx) {
  return create(NORMALIZE, c, ctx);
}

#define GEOMETRY(create_fn, fn)                                                                    \
  { .size = sizeof(pn_transform_iface), .create = (create_fn), .geometry = (fn), .destroy = free }
#define PIXELS(create_fn, fn)                                                                      \
  { .size = sizeof(pn_transform_iface), .create = (create_fn), .pixels = (fn), .destroy = free }

static const pn_transform_iface ifaces[] = {
    GEOMETRY(create_resize, resize_geometry),
    GEOMETRY(create_center_crop, center_crop_geometry),
    GEOMETRY(create_random_crop, random_crop_geometry),
    GEOMETRY(create_hflip, hflip_geometry),
    GEOMETRY(create_vflip, vflip_geometry),
    GEOMETRY(create_affine, affine_geometry),
    PIXELS(create_lighting, lighting_pixels),
    PIXELS(create_normalize, normalize_pixels),
};
static const char *const names[] = {"resize",   "center_crop", "random_resized_crop",
                                    "hflip",    "vflip",       "affine",
                                    "lighting", "normalize"};

static pn_status init(pn_plugin_ctx *ctx) {
  for (size_t i = 0; i < sizeof names / sizeof *names; i++)
    PN_TRY(pn_plugin_add_feature(ctx, "transform", names[i], &ifaces[i]));
  return PN_OK;
}

PN_PLUGIN_DEFINE("transforms", "0.1.0", init, NULL);
