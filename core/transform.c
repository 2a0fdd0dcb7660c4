/* Transform chains: random streams, sample views, and the one resampling
 * pass that turns a decoded image into a C x H x W sample.
 *
 * Every geometric transform only composes a map (pn_view), so a sample is
 * interpolated once, from the decoded pixels, however many resizes, crops,
 * flips and warps the pipeline lists. That pass is the hot loop of image
 * loading; it has a separable path for axis-aligned maps (resizes, crops,
 * flips: almost every validation sample and most training ones), and a
 * per-pixel path for rotations and warps. */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <plugnet/op.h>
#include <plugnet/registry.h>
#include <plugnet/transform.h>

/* ---------------------------------------------------------------- random */

pn_rng pn_rng_make(uint64_t key, uint64_t stream) {
  /* The low 32 counter bits number the blocks of one stream; streams beyond
   * 2^32 (never sample indices in practice) fold into the key instead of
   * overlapping. */
  pn_rng r = {key ^ (stream >> 32) * 0x9E3779B97F4A7C15ull, stream << 32, {0}, 0};
  return r;
}

static uint32_t next_word(pn_rng *r) {
  if (r->avail == 0) {
    pn_philox4x32(r->key, r->counter++, r->buf);
    r->avail = 4;
  }
  return r->buf[4 - r->avail--];
}

double pn_rng_uniform(pn_rng *r) {
  /* 53 bits: every double of the form k / 2^53, so 1.0 never comes out. */
  uint32_t hi = next_word(r) >> 5, lo = next_word(r) >> 6;
  return ((double)hi * 67108864.0 + (double)lo) * (1.0 / 9007199254740992.0);
}

double pn_rng_range(pn_rng *r, double lo, double hi) { return lo + (hi - lo) * pn_rng_uniform(r); }

/* ---------------------------------------------------------------- views */

void pn_view_init(pn_view *v, int src_w, int src_h) {
  memset(v, 0, sizeof *v);
  v->src_w = v->w = src_w;
  v->src_h = v->h = src_h;
  v->m[0] = v->m[4] = v->m[8] = 1;
  v->padding = PN_PAD_ZEROS; /* torchvision pads crops larger than the image with zeros */
}

static void mat3_mul(const double a[9], const double b[9], double out[9]) {
  for (int i = 0; i < 3; i++)
    for (int j = 0; j < 3; j++)
      out[3 * i + j] = a[3 * i] * b[j] + a[3 * i + 1] * b[3 + j] + a[3 * i + 2] * b[6 + j];
}

void pn_view_then(pn_view *v, const double a[9], int w, int h) {
  double m[9];
  mat3_mul(v->m, a, m);
  memcpy(v->m, m, sizeof m);
  v->w = w;
  v->h = h;
}

void pn_view_crop(pn_view *v, double x0, double y0, double cw, double ch, int w, int h) {
  const double a[9] = {cw / w, 0, x0, 0, ch / h, y0, 0, 0, 1};
  pn_view_then(v, a, w, h);
}

/* The least source distance one output pixel step covers at (x, y): the
 * smaller singular value of the map's Jacobian there. */
static double min_stretch(const double *m, double x, double y) {
  double q0 = m[0] * x + m[1] * y + m[2], q1 = m[3] * x + m[4] * y + m[5];
  double q2 = m[6] * x + m[7] * y + m[8];
  if (!(q2 > 1e-12)) return INFINITY; /* beyond the horizon: samples nothing */
  double sx = q0 / q2, sy = q1 / q2;
  double a = (m[0] - sx * m[6]) / q2, b = (m[1] - sx * m[7]) / q2;
  double c = (m[3] - sy * m[6]) / q2, d = (m[4] - sy * m[7]) / q2;
  double s = a * a + b * b + c * c + d * d, det = fabs(a * d - b * c);
  double big = sqrt(0.5 * (s + sqrt(fmax(0, s * s - 4 * det * det))));
  return big > 0 ? det / big : 0;
}

int pn_view_reduce(const pn_view *v) {
  /* A projective map stretches least at the centre or a corner. */
  const double px[5] = {0.5 * v->w, 0, v->w, 0, v->w}, py[5] = {0.5 * v->h, 0, 0, v->h, v->h};
  double least = INFINITY;
  for (int k = 0; k < 5; k++) least = fmin(least, min_stretch(v->m, px[k], py[k]));
  int r = 1;
  while (r < 8 && 2.0 * r <= least) r *= 2;
  return r;
}

/* ---------------------------------------------------------------- chains */

typedef struct step {
  const pn_transform_iface *iface;
  void *ctx;
  pn_config *own; /* a scaled or default config the step may still read */
} step;

struct pn_transforms {
  int n;
  step *steps;
};

static const pn_param_schema *size_param(const pn_config *cfg) {
  const pn_feature_info *f = pn_config_feature(cfg);
  for (int k = 0; f && k < f->n_params; k++)
    if (strcmp(f->params[k].name, "size") == 0 &&
        (f->params[k].type == PN_PARAM_INTS || f->params[k].type == PN_PARAM_INT))
      return &f->params[k];
  return NULL;
}

/* A copy of cfg with every `size` value times `scale` (progressive resizing). */
static pn_status scaled_config(const pn_config *cfg, double scale, pn_config **out) {
  int64_t vals[16];
  int n = pn_config_ints(cfg, "size", vals, 16);
  if (n > 16) return pn_error(PN_ERR_INVALID, "size has %d values", n);
  int is_list = size_param(cfg)->type == PN_PARAM_INTS;
  char text[16 * 24 + 4] = "";
  if (is_list) strcat(text, "[");
  for (int k = 0; k < n; k++) {
    long long s = llround((double)vals[k] * scale);
    size_t len = strlen(text);
    snprintf(text + len, sizeof text - len, "%s%lld", k ? ", " : "", s < 1 ? 1 : s);
  }
  if (is_list) strcat(text, "]");
  pn_config *c = pn_config_clone(cfg);
  if (!c) return pn_error(PN_ERR_NOMEM, "out of memory");
  pn_status s = n > 0 ? pn_config_set(c, "size", text) : PN_OK;
  if (s != PN_OK) {
    pn_config_free(c);
    return pn_error_prefix(s, "scaling the size by %g: ", scale);
  }
  *out = c;
  return PN_OK;
}

static pn_status default_config(const char *name, pn_config **out) {
  const pn_feature_info *f = pn_registry_find(name);
  if (!f) return PN_ERR_NOT_FOUND; /* pn_registry_find said why */
  *out = pn_config_new(f);
  return *out ? PN_OK : PN_ERR_NOMEM;
}

static pn_status step_create(const char *name, const pn_config *cfg, double size_scale, step *st) {
  const void *p;
  PN_TRY(pn_feature_iface(name, "transform", &p));
  const pn_transform_iface *iface = p;
  if (iface->size < offsetof(pn_transform_iface, destroy) || !iface->create ||
      !iface->geometry == !iface->pixels)
    return pn_error(PN_ERR_PLUGIN,
                    "its interface is incomplete (needs create and one of geometry or pixels)");
  pn_status s = PN_OK;
  if (!cfg)
    s = default_config(name, &st->own);
  else if (size_scale != 1.0 && size_param(cfg))
    s = scaled_config(cfg, size_scale, &st->own);
  if (s == PN_OK) s = iface->create(st->own ? st->own : cfg, &st->ctx);
  if (s == PN_OK) st->iface = iface;
  return s;
}

pn_status pn_transforms_new(const char *const *features, const pn_config *const *cfgs, int n,
                            double size_scale, pn_transforms **out) {
  if (!out || n < 0 || (n > 0 && !features))
    return pn_error(PN_ERR_INVALID, "pn_transforms_new: NULL argument or n < 0");
  *out = NULL;
  if (!(size_scale > 0))
    return pn_error(PN_ERR_INVALID, "transforms: size scale %g is not positive", size_scale);
  pn_transforms *t = calloc(1, sizeof *t);
  if (t) t->steps = calloc((size_t)n + 1, sizeof *t->steps);
  if (!t || !t->steps) {
    free(t);
    return pn_error(PN_ERR_NOMEM, "out of memory");
  }
  for (int i = 0; i < n; i++, t->n++) {
    pn_status s = step_create(features[i], cfgs ? cfgs[i] : NULL, size_scale, &t->steps[i]);
    if (s != PN_OK) {
      pn_config_free(t->steps[i].own);
      pn_transforms_free(t);
      return pn_error_prefix(s, "transform '%s': ", features[i]);
    }
  }
  *out = t;
  return PN_OK;
}

void pn_transforms_free(pn_transforms *t) {
  if (!t) return;
  for (int i = 0; i < t->n; i++) {
    if (t->steps[i].iface->destroy) t->steps[i].iface->destroy(t->steps[i].ctx);
    pn_config_free(t->steps[i].own);
  }
  free(t->steps);
  free(t);
}

void pn_transforms_view(const pn_transforms *t, int src_w, int src_h, pn_rng *r, pn_view *v) {
  pn_view_init(v, src_w, src_h);
  for (int i = 0; t && i < t->n; i++)
    if (t->steps[i].iface->geometry) t->steps[i].iface->geometry(t->steps[i].ctx, v, r);
}

/* ---------------------------------------------------------------- resampling
 *
 * The source is a function on its area [0, w] x [0, h]: bilinear between
 * pixel centres, the nearest edge pixel in the outer half pixel (as
 * torchvision's resize). Outside the area the padding mode decides:
 * zeros, the nearest edge point, or the mirror image (grid_sample's
 * reflection with align_corners=False). */

static double reflect(double x, double n) {
  double period = 2 * n;
  x = fmod(x, period);
  if (x < 0) x += period;
  return x > n ? period - x : x;
}

/* The two pixel indices and the weight of the second for coordinate x on
 * an axis of n pixels; 0 where the sample is padding zero. */
static inline int taps(double x, int n, pn_padding pad, int *i0, int *i1, double *frac) {
  if (!(x >= 0 && x <= n)) {
    if (pad == PN_PAD_ZEROS || !isfinite(x)) return 0;
    x = pad == PN_PAD_BORDER ? (x < 0 ? 0 : n) : reflect(x, n);
  }
  double f = x - 0.5;
  if (f <= 0 || f >= n - 1) {
    *i0 = *i1 = f <= 0 ? 0 : n - 1;
    *frac = 0;
    return 1;
  }
  int k = (int)f;
  *i0 = k;
  *i1 = k + 1;
  *frac = f - k;
  return 1;
}

/* u8 / 255: a load instead of a conversion per tap. */
static float unit_byte[256];
static pthread_once_t unit_byte_once = PTHREAD_ONCE_INIT;
static void unit_byte_init(void) {
  for (int i = 0; i < 256; i++) unit_byte[i] = (float)(i / 255.0);
}

/* Output index i of one axis of a separable map: byte offsets of its two
 * taps and their weights (both 0 for padding zero). */
typedef struct axis {
  int *off0, *off1;
  float *w0, *w1;
} axis;

static void axis_fill(axis *a, int n_out, double scale, double shift, int n_src, int stride,
                      pn_padding pad) {
  for (int i = 0; i < n_out; i++) {
    int i0 = 0, i1 = 0;
    double frac = 0;
    int live = taps(scale * (i + 0.5) + shift, n_src, pad, &i0, &i1, &frac);
    a->off0[i] = i0 * stride;
    a->off1[i] = i1 * stride;
    a->w0[i] = live ? (float)(1 - frac) : 0.0f;
    a->w1[i] = live ? (float)frac : 0.0f;
  }
}

/* Source row `row` resampled along x into three planes of w floats. */
static void row_pass(const uint8_t *row, const axis *cols, int w, float *dst) {
  float *r = dst, *g = dst + w, *b = dst + 2 * w;
  const float *u = unit_byte;
  for (int j = 0; j < w; j++) {
    const uint8_t *p = row + cols->off0[j], *q = row + cols->off1[j];
    float w0 = cols->w0[j], w1 = cols->w1[j];
    r[j] = u[p[0]] * w0 + u[q[0]] * w1;
    g[j] = u[p[1]] * w0 + u[q[1]] * w1;
    b[j] = u[p[2]] * w0 + u[q[2]] * w1;
  }
}

/* The last two source rows resampled along x: output rows mostly reuse
 * one or both. */
typedef struct row_cache {
  int key[2];
  float *buf[2];
} row_cache;

static const float *cached_row(row_cache *c, const pn_image *img, const axis *cols, int w, int k,
                               int keep) {
  for (int s = 0; s < 2; s++)
    if (c->key[s] == k) return c->buf[s];
  int s = c->key[0] == keep ? 1 : 0;
  row_pass(img->data + (size_t)k * 3 * (size_t)img->w, cols, w, c->buf[s]);
  c->key[s] = k;
  return c->buf[s];
}

/* In blocks of 8 so that -O2's cheap vectoriser, which adds no remainder
 * loops, takes them. */
static void blend_rows(const float *restrict a, const float *restrict b, float wa, float wb, int w,
                       float *restrict out, size_t plane) {
  for (int c = 0; c < 3; c++) {
    const float *pa = a + c * w, *pb = b + c * w;
    float *o = out + c * plane;
    int j = 0;
    for (; j + 8 <= w; j += 8)
      for (int k = 0; k < 8; k++) o[j + k] = pa[j + k] * wa + pb[j + k] * wb;
    for (; j < w; j++) o[j] = pa[j] * wa + pb[j] * wb;
  }
}

/* m maps output to img coordinates with m[1] = m[3] = m[6] = m[7] = 0 and
 * m[8] = 1. Returns 0 when out of memory (the caller falls back). */
static int resample_separable(const pn_image *img, const double *m, pn_padding pad, int w, int h,
                              float *out) {
  int *ints = malloc(sizeof *ints * 2 * ((size_t)w + (size_t)h));
  float *fl = malloc(sizeof *fl * (2 * ((size_t)w + (size_t)h) + 6 * (size_t)w));
  if (!ints || !fl) {
    free(ints);
    free(fl);
    return 0;
  }
  axis cols = {ints, ints + w, fl, fl + w};
  axis rows = {ints + 2 * w, ints + 2 * w + h, fl + 2 * w, fl + 2 * w + h};
  float *bufs = fl + 2 * ((size_t)w + (size_t)h);
  row_cache cache = {{-1, -1}, {bufs, bufs + 3 * (size_t)w}};
  /* Columns index bytes, rows pixels. */
  axis_fill(&cols, w, m[0], m[2], img->w, 3, pad);
  axis_fill(&rows, h, m[4], m[5], img->h, 1, pad);
  size_t plane = (size_t)w * (size_t)h;
  for (int i = 0; i < h; i++) {
    float *o = out + (size_t)i * w;
    if (rows.w0[i] == 0 && rows.w1[i] == 0) {
      for (int c = 0; c < 3; c++) memset(o + c * plane, 0, sizeof *o * (size_t)w);
      continue;
    }
    int y0 = rows.off0[i], y1 = rows.off1[i];
    const float *a = cached_row(&cache, img, &cols, w, y0, y1);
    const float *b = cached_row(&cache, img, &cols, w, y1, y0);
    blend_rows(a, b, rows.w0[i], rows.w1[i], w, o, plane);
  }
  free(ints);
  free(fl);
  return 1;
}

/* The careful path: any point, with clamping and padding. */
static inline void sample(const pn_image *img, double x, double y, pn_padding pad, float *o,
                          size_t plane) {
  int x0, x1, y0, y1;
  double fx, fy;
  if (!taps(x, img->w, pad, &x0, &x1, &fx) || !taps(y, img->h, pad, &y0, &y1, &fy)) {
    o[0] = o[plane] = o[2 * plane] = 0;
    return;
  }
  size_t stride = 3 * (size_t)img->w;
  const uint8_t *r0 = img->data + (size_t)y0 * stride, *r1 = img->data + (size_t)y1 * stride;
  float gx = (float)fx, gy = (float)fy, k = 1.0f / 255.0f;
  float w00 = (1 - gx) * (1 - gy) * k, w01 = gx * (1 - gy) * k;
  float w10 = (1 - gx) * gy * k, w11 = gx * gy * k;
  for (int c = 0; c < 3; c++)
    o[c * plane] =
        r0[3 * x0 + c] * w00 + r0[3 * x1 + c] * w01 + r1[3 * x0 + c] * w10 + r1[3 * x1 + c] * w11;
}

/* One output row of any map, from the source points (bx + j dx, by + j dy)
 * divided, for projective maps, by bz + j dz. Most points of a rotation or
 * warp have all four taps inside the image: a float path without clamping
 * or padding; the rest go through sample(). */
static void general_row(const pn_image *img, const double b[3], const double d[3], int affine,
                        pn_padding pad, int w, float *o, size_t plane) {
  const float lim_x = (float)(img->w - 1), lim_y = (float)(img->h - 1);
  const size_t stride = 3 * (size_t)img->w;
  const float *u = unit_byte;
  for (int j = 0; j < w; j++) {
    double x = b[0] + d[0] * j, y = b[1] + d[1] * j;
    if (!affine) {
      double z = b[2] + d[2] * j;
      x = z > 1e-12 ? x / z : NAN;
      y = z > 1e-12 ? y / z : NAN;
    }
    float fx = (float)x - 0.5f, fy = (float)y - 0.5f;
    if (!(fx >= 0 && fx < lim_x && fy >= 0 && fy < lim_y)) {
      sample(img, x, y, pad, o + j, plane);
      continue;
    }
    int x0 = (int)fx, y0 = (int)fy;
    float ax = fx - (float)x0, ay = fy - (float)y0;
    float w00 = (1 - ax) * (1 - ay), w01 = ax * (1 - ay), w10 = (1 - ax) * ay, w11 = ax * ay;
    const uint8_t *p = img->data + (size_t)y0 * stride + 3 * (size_t)x0, *q = p + stride;
    o[j] = u[p[0]] * w00 + u[p[3]] * w01 + u[q[0]] * w10 + u[q[3]] * w11;
    o[j + plane] = u[p[1]] * w00 + u[p[4]] * w01 + u[q[1]] * w10 + u[q[4]] * w11;
    o[j + 2 * plane] = u[p[2]] * w00 + u[p[5]] * w01 + u[q[2]] * w10 + u[q[5]] * w11;
  }
}

/* Any map: rotations, zooms and warps. Affine maps need no division. */
static void resample_general(const pn_image *img, const double *m, pn_padding pad, int w, int h,
                             float *out) {
  const double d[3] = {m[0], m[3], m[6]};
  int affine = m[6] == 0 && m[7] == 0;
  for (int i = 0; i < h; i++) {
    double y = i + 0.5;
    const double b[3] = {m[0] * 0.5 + m[1] * y + m[2], m[3] * 0.5 + m[4] * y + m[5],
                         m[6] * 0.5 + m[7] * y + m[8]};
    general_row(img, b, d, affine, pad, w, out + (size_t)i * w, (size_t)w * (size_t)h);
  }
}

void pn_transforms_finish(const pn_transforms *t, const pn_view *v, const pn_image *img, pn_rng *r,
                          float *out) {
  int w = v->w, h = v->h;
  if (!img || !img->data || img->w < 1 || img->h < 1 || v->src_w < 1 || v->src_h < 1) {
    memset(out, 0, sizeof *out * 3 * (size_t)w * (size_t)h);
  } else {
    /* To img's pixels (a reduced decode covers the same area), and m[8] = 1
     * for affine maps so they need no division. */
    double kx = (double)img->w / v->src_w, ky = (double)img->h / v->src_h, m[9];
    double norm = v->m[6] == 0 && v->m[7] == 0 && v->m[8] != 0 ? 1 / v->m[8] : 1;
    for (int k = 0; k < 3; k++) {
      m[k] = v->m[k] * kx * norm;
      m[3 + k] = v->m[3 + k] * ky * norm;
      m[6 + k] = v->m[6 + k] * norm;
    }
    pthread_once(&unit_byte_once, unit_byte_init);
    int separable = m[1] == 0 && m[3] == 0 && m[6] == 0 && m[7] == 0;
    if (!separable || !resample_separable(img, m, v->padding, w, h, out))
      resample_general(img, m, v->padding, w, h, out);
  }
  for (int i = 0; t && i < t->n; i++)
    if (t->steps[i].iface->pixels) t->steps[i].iface->pixels(t->steps[i].ctx, out, 3, h, w, r);
}
