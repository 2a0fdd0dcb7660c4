/* Transform chains (core/transform.c) and the bundled transforms plugin:
 * the random stream, view composition, the resampling pass against a plain
 * double-precision bilinear reference (every padding mode, both the
 * separable and the per-pixel paths, reduced decodes), the reduce factor,
 * and each transform's geometry on images whose pixels are known. */
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

#include <plugnet/plugnet.h>
#include <plugnet/transform.h>

#define MAX_CHAIN 8

/* ---- helpers */

/* Pixels from a small LCG: every pixel differs from its neighbours. */
static pn_image noise_image(int w, int h, uint32_t seed) {
  pn_image img = {0, 0, NULL};
  assert_int_equal(pn_image_alloc(&img, w, h), PN_OK);
  for (size_t i = 0; i < (size_t)w * h * 3; i++) {
    seed = seed * 1664525u + 1013904223u;
    img.data[i] = (uint8_t)(seed >> 24);
  }
  return img;
}

/* Black but for one pixel at (x, y). */
static pn_image dot_image(int w, int h, int x, int y) {
  pn_image img = {0, 0, NULL};
  assert_int_equal(pn_image_alloc(&img, w, h), PN_OK);
  memset(img.data, 0, (size_t)w * h * 3);
  memset(img.data + ((size_t)y * w + x) * 3, 255, 3);
  return img;
}

static uint8_t px(const pn_image *img, int x, int y, int c) {
  return img->data[((size_t)y * img->w + x) * 3 + c];
}

/* features[i] with "k=v" pairs[i] (NULL: defaults). */
static pn_transforms *chain_scaled(int n, const char *const *features, const char *const *pairs,
                                   double scale) {
  pn_config *cfgs[MAX_CHAIN] = {0};
  for (int i = 0; i < n; i++) cfgs[i] = tu_config(features[i], pairs[i]);
  pn_transforms *t = NULL;
  pn_status s = pn_transforms_new(features, (const pn_config *const *)cfgs, n, scale, &t);
  for (int i = 0; i < n; i++) pn_config_free(cfgs[i]);
  if (s != PN_OK) fail_msg("chain: %s", pn_last_error());
  return t;
}

static pn_transforms *chain1(const char *feature, const char *pairs) {
  return chain_scaled(1, &feature, &pairs, 1.0);
}

/* The view t draws for a w x h image from stream (key, stream). */
static pn_view view_of(const pn_transforms *t, int w, int h, uint64_t key, uint64_t stream) {
  pn_rng r = pn_rng_make(key, stream);
  pn_view v;
  pn_transforms_view(t, w, h, &r, &v);
  return v;
}

/* The sample of stream (key, stream) through t; free() it. */
static float *run(const pn_transforms *t, const pn_image *img, uint64_t key, uint64_t stream,
                  pn_view *v) {
  pn_rng r = pn_rng_make(key, stream);
  pn_transforms_view(t, img->w, img->h, &r, v);
  float *out = malloc(sizeof *out * 3 * (size_t)v->w * v->h);
  assert_non_null(out);
  pn_transforms_finish(t, v, img, &r, out);
  return out;
}

static float at(const float *out, const pn_view *v, int c, int x, int y) {
  return out[((size_t)c * v->h + y) * v->w + x];
}

/* Where the view takes output point (x, y) from, in source coordinates. */
static void map_point(const pn_view *v, double x, double y, double *sx, double *sy) {
  const double *m = v->m;
  double z = m[6] * x + m[7] * y + m[8];
  *sx = (m[0] * x + m[1] * y + m[2]) / z;
  *sy = (m[3] * x + m[4] * y + m[5]) / z;
}

/* ---- the reference resampler, written from the contract in transform.h:
 * bilinear between pixel centres on the area [0, n], edge pixels in its
 * outer half pixel, padding beyond. */

static int ref_axis(double x, int n, pn_padding pad, double *out) {
  if (x < 0 || x > n) {
    if (pad == PN_PAD_ZEROS) return 0;
    if (pad == PN_PAD_BORDER) x = x < 0 ? 0 : n;
    while (pad == PN_PAD_REFLECTION && (x < 0 || x > n)) x = x < 0 ? -x : 2.0 * n - x;
  }
  *out = fmin(fmax(x - 0.5, 0), n - 1);
  return 1;
}

static double ref_sample(const pn_image *img, double x, double y, pn_padding pad, int c) {
  double fx, fy;
  if (!ref_axis(x, img->w, pad, &fx) || !ref_axis(y, img->h, pad, &fy)) return 0;
  int x0 = (int)floor(fx), y0 = (int)floor(fy);
  int x1 = x0 + 1 < img->w ? x0 + 1 : x0, y1 = y0 + 1 < img->h ? y0 + 1 : y0;
  double ax = fx - x0, ay = fy - y0;
  double top = px(img, x0, y0, c) * (1 - ax) + px(img, x1, y0, c) * ax;
  double bottom = px(img, x0, y1, c) * (1 - ax) + px(img, x1, y1, c) * ax;
  return (top * (1 - ay) + bottom * ay) / 255;
}

/* Largest difference between finish(v) on img and the reference on full
 * (the same picture; img may be a reduced decode of it). */
static double ref_error(const pn_view *v, const pn_image *img) {
  float *out = malloc(sizeof *out * 3 * (size_t)v->w * v->h);
  assert_non_null(out);
  pn_transforms_finish(NULL, v, img, NULL, out);
  double kx = (double)img->w / v->src_w, ky = (double)img->h / v->src_h, worst = 0;
  for (int y = 0; y < v->h; y++)
    for (int x = 0; x < v->w; x++) {
      double sx, sy;
      map_point(v, x + 0.5, y + 0.5, &sx, &sy);
      for (int c = 0; c < 3; c++)
        worst = fmax(worst,
                     fabs(at(out, v, c, x, y) - ref_sample(img, sx * kx, sy * ky, v->padding, c)));
    }
  free(out);
  return worst;
}

static void rotate_about_centre(pn_view *v, double degrees) {
  double a = degrees * M_PI / 180, c = cos(a), s = sin(a), cx = 0.5 * v->w, cy = 0.5 * v->h;
  const double m[9] = {c, -s, cx - c * cx + s * cy, s, c, cy - s * cx - c * cy, 0, 0, 1};
  pn_view_then(v, m, v->w, v->h);
}

/* ---- the random stream */

static void test_rng(void **state) {
  (void)state;
  pn_rng a = pn_rng_make(42, 7), b = pn_rng_make(42, 7), c = pn_rng_make(42, 8);
  pn_rng d = pn_rng_make(43, 7);
  int same_c = 0, same_d = 0;
  double sum = 0, lo = 1, hi = 0;
  for (int i = 0; i < 100000; i++) {
    double x = pn_rng_uniform(&a);
    assert_true(x == pn_rng_uniform(&b));
    same_c += x == pn_rng_uniform(&c);
    same_d += x == pn_rng_uniform(&d);
    assert_true(x >= 0 && x < 1);
    sum += x;
    lo = fmin(lo, x);
    hi = fmax(hi, x);
  }
  assert_int_equal(same_c, 0);
  assert_int_equal(same_d, 0);
  assert_true(fabs(sum / 100000 - 0.5) < 0.005);
  assert_true(lo < 1e-4 && hi > 1 - 1e-4);
  for (int i = 0; i < 1000; i++) {
    double x = pn_rng_range(&a, -3, 2);
    assert_true(x >= -3 && x < 2);
  }
}

/* ---- views and resampling */

static void test_identity_is_exact(void **state) {
  (void)state;
  pn_image img = noise_image(37, 23, 1);
  pn_view v;
  pn_view_init(&v, img.w, img.h);
  float *out = malloc(sizeof *out * 3 * 37 * 23);
  assert_non_null(out);
  pn_transforms_finish(NULL, &v, &img, NULL, out);
  for (int y = 0; y < 23; y++)
    for (int x = 0; x < 37; x++)
      for (int c = 0; c < 3; c++)
        assert_true(fabsf(at(out, &v, c, x, y) - px(&img, x, y, c) / 255.0f) < 1e-6f);
  free(out);
  pn_image_free(&img);
}

static void test_crop_then_flip(void **state) {
  (void)state;
  pn_image img = noise_image(8, 6, 2);
  pn_view v;
  pn_view_init(&v, 8, 6);
  pn_view_crop(&v, 2, 1, 4, 3, 4, 3);
  const double flip[9] = {-1, 0, 4, 0, 1, 0, 0, 0, 1};
  pn_view_then(&v, flip, 4, 3);
  float out[3 * 4 * 3];
  pn_transforms_finish(NULL, &v, &img, NULL, out);
  for (int y = 0; y < 3; y++)
    for (int x = 0; x < 4; x++)
      for (int c = 0; c < 3; c++)
        assert_true(fabsf(at(out, &v, c, x, y) - px(&img, 2 + 3 - x, 1 + y, c) / 255.0f) < 1e-6f);
  pn_image_free(&img);
}

/* Resizes, crops beyond the edges and flips (the separable path), rotations
 * and warps (the per-pixel path), in every padding mode. */
static void test_against_reference(void **state) {
  (void)state;
  pn_image img = noise_image(29, 19, 3);
  for (int pad = PN_PAD_ZEROS; pad <= PN_PAD_BORDER; pad++) {
    pn_view v;
    pn_view_init(&v, img.w, img.h);
    v.padding = (pn_padding)pad;
    pn_view_crop(&v, -5.5, -3.25, 40, 27, 57, 23); /* up in x, down in y, beyond every edge */
    assert_true(ref_error(&v, &img) < 1e-5);
    const double flip[9] = {-1, 0, 57, 0, -1, 23, 0, 0, 1};
    pn_view_then(&v, flip, 57, 23);
    assert_true(ref_error(&v, &img) < 1e-5);
    pn_view_init(&v, img.w, img.h);
    v.padding = (pn_padding)pad;
    pn_view_crop(&v, 0, 0, 29, 19, 13, 31);
    rotate_about_centre(&v, 33);
    assert_true(ref_error(&v, &img) < 1e-5);
    const double warp[9] = {1.1, 0.05, -2, -0.1, 0.9, 1, 0.004, -0.003, 1};
    pn_view_then(&v, warp, 17, 11);
    assert_true(ref_error(&v, &img) < 1e-5);
  }
  pn_image_free(&img);
}

static void test_padding_modes(void **state) {
  (void)state;
  pn_image img = noise_image(16, 16, 4);
  memset(img.data, 200, 16 * 16 * 3);
  const pn_padding pads[3] = {PN_PAD_ZEROS, PN_PAD_REFLECTION, PN_PAD_BORDER};
  for (int k = 0; k < 3; k++) {
    pn_view v;
    pn_view_init(&v, 16, 16);
    v.padding = pads[k];
    rotate_about_centre(&v, 45);
    float out[3 * 16 * 16];
    pn_transforms_finish(NULL, &v, &img, NULL, out);
    /* The corners look beyond the rotated square's edges; the centre never. */
    float expect = pads[k] == PN_PAD_ZEROS ? 0.0f : 200 / 255.0f;
    assert_true(fabsf(at(out, &v, 1, 0, 0) - expect) < 1e-6f);
    assert_true(fabsf(at(out, &v, 2, 15, 15) - expect) < 1e-6f);
    assert_true(fabsf(at(out, &v, 0, 8, 8) - 200 / 255.0f) < 1e-6f);
  }
  /* A ramp shifted half its width left: border repeats the last column,
   * reflection mirrors the ramp back. */
  for (int x = 0; x < 16; x++)
    for (int y = 0; y < 16; y++) memset(img.data + ((size_t)y * 16 + x) * 3, 10 * x, 3);
  for (int k = 1; k < 3; k++) {
    pn_view v;
    pn_view_init(&v, 16, 16);
    v.padding = pads[k];
    pn_view_crop(&v, 8, 0, 16, 16, 16, 16);
    float out[3 * 16 * 16];
    pn_transforms_finish(NULL, &v, &img, NULL, out);
    for (int x = 8; x < 16; x++) {
      int src = pads[k] == PN_PAD_BORDER ? 15 : 31 - (x + 8);
      assert_true(fabsf(at(out, &v, 0, x, 3) - 10 * src / 255.0f) < 1e-6f);
    }
  }
  pn_image_free(&img);
}

/* A half-size decode sampled at the same points gives the full-size result
 * where the picture is linear (box filtering keeps a ramp a ramp). */
static void test_reduced_source(void **state) {
  (void)state;
  pn_image full = noise_image(64, 48, 5), half = noise_image(32, 24, 5);
  for (int y = 0; y < 48; y++)
    for (int x = 0; x < 64; x++) memset(full.data + ((size_t)y * 64 + x) * 3, 3 * x + y, 3);
  for (int y = 0; y < 24; y++)
    for (int x = 0; x < 32; x++)
      memset(half.data + ((size_t)y * 32 + x) * 3, 3 * (2 * x) + 2 * y + 2, 3);
  pn_view v;
  pn_view_init(&v, 64, 48);
  pn_view_crop(&v, 8, 6, 48, 36, 20, 15);
  rotate_about_centre(&v, 10);
  float a[3 * 20 * 15], b[3 * 20 * 15];
  pn_transforms_finish(NULL, &v, &full, NULL, a);
  pn_transforms_finish(NULL, &v, &half, NULL, b);
  for (size_t i = 0; i < sizeof a / sizeof *a; i++) assert_true(fabsf(a[i] - b[i]) < 1e-5f);
  pn_image_free(&full);
  pn_image_free(&half);
}

static void test_reduce_factor(void **state) {
  (void)state;
  const int sizes[5] = {100, 250, 300, 600, 2000}, expect[5] = {8, 4, 2, 1, 1};
  for (int k = 0; k < 5; k++) {
    pn_view v;
    pn_view_init(&v, 1000, 800);
    pn_view_crop(&v, 0, 0, 1000, 800, sizes[k], sizes[k] * 4 / 5);
    assert_int_equal(pn_view_reduce(&v), expect[k]);
    rotate_about_centre(&v, 30); /* rotations do not change the scale */
    assert_int_equal(pn_view_reduce(&v), expect[k]);
  }
  /* The least-stretched direction decides: 10x along x, 3x along y. */
  pn_view v;
  pn_view_init(&v, 1000, 900);
  pn_view_crop(&v, 0, 0, 1000, 900, 100, 300);
  assert_int_equal(pn_view_reduce(&v), 2);
  /* A perspective map: the corner stretched least decides. */
  pn_view_init(&v, 1000, 1000);
  pn_view_crop(&v, 0, 0, 1000, 1000, 100, 100);
  /* Source x = 10 x / (1 + 0.002 x): the centre alone would allow 8, the
   * right-hand corners stretch about 6.5 times. */
  const double persp[9] = {1, 0, 0, 0, 1, 0, 0.002, 0, 1};
  pn_view_then(&v, persp, 100, 100);
  assert_int_equal(pn_view_reduce(&v), 4);
}

/* ---- the transforms */

static void test_resize(void **state) {
  (void)state;
  pn_image img = noise_image(256, 192, 6);
  pn_transforms *t = chain1("resize", "size=128");
  pn_view v;
  float *out = run(t, &img, 0, 0, &v);
  assert_int_equal(v.w, 170); /* torchvision truncates 128 * 256 / 192 */
  assert_int_equal(v.h, 128);
  free(out);
  pn_transforms_free(t);
  pn_image_free(&img);
  img = noise_image(30, 50, 6);
  t = chain1("resize", "size=[20, 40]");
  out = run(t, &img, 0, 0, &v);
  assert_int_equal(v.w, 40);
  assert_int_equal(v.h, 20);
  /* Output pixel (1, 0), centre (1.5, 0.5), is source point (1.125, 1.25):
   * pixel columns 0 and 1 weighed 0.375 and 0.625, rows 0 and 1 0.25 and 0.75. */
  double top = px(&img, 0, 0, 0) * 0.375 + px(&img, 1, 0, 0) * 0.625;
  double bottom = px(&img, 0, 1, 0) * 0.375 + px(&img, 1, 1, 0) * 0.625;
  double expect = (top * 0.25 + bottom * 0.75) / 255;
  assert_true(fabs(at(out, &v, 0, 1, 0) - expect) < 1e-5);
  free(out);
  pn_transforms_free(t);
  pn_image_free(&img);
}

static void test_center_crop(void **state) {
  (void)state;
  struct {
    int w, h;
    const char *size;
    int ow, oh, dx, dy;
  } cases[] = {
      {10, 8, "size=4", 4, 4, 3, 2},
      {9, 7, "size=[4, 4]", 4, 4, 2, 2},  /* round(2.5) = 2, round(1.5) = 2: ties to even */
      {4, 4, "size=6", 6, 6, -1, -1},     /* padded by one all round */
      {4, 9, "size=[3, 7]", 7, 3, -1, 3}, /* padded across, cropped along */
  };
  for (size_t k = 0; k < sizeof cases / sizeof *cases; k++) {
    pn_image img = noise_image(cases[k].w, cases[k].h, 7);
    pn_transforms *t = chain1("center_crop", cases[k].size);
    pn_view v;
    float *out = run(t, &img, 0, 0, &v);
    assert_int_equal(v.w, cases[k].ow);
    assert_int_equal(v.h, cases[k].oh);
    for (int y = 0; y < v.h; y++)
      for (int x = 0; x < v.w; x++) {
        int sx = x + cases[k].dx, sy = y + cases[k].dy;
        int inside = sx >= 0 && sx < img.w && sy >= 0 && sy < img.h;
        float expect = inside ? px(&img, sx, sy, 1) / 255.0f : 0.0f;
        assert_true(fabsf(at(out, &v, 1, x, y) - expect) < 1e-6f);
      }
    free(out);
    pn_transforms_free(t);
    pn_image_free(&img);
  }
}

static void test_flips(void **state) {
  (void)state;
  pn_image img = dot_image(7, 5, 1, 3);
  const char *features[4] = {"hflip", "vflip", "hflip", "vflip"};
  const char *pairs[4] = {"p=1", "p=1", "p=0", "p=0"};
  const int where[4][2] = {{5, 3}, {1, 1}, {1, 3}, {1, 3}};
  for (int k = 0; k < 4; k++) {
    pn_transforms *t = chain1(features[k], pairs[k]);
    pn_view v;
    float *out = run(t, &img, 9, (uint64_t)k, &v);
    for (int y = 0; y < 5; y++)
      for (int x = 0; x < 7; x++)
        assert_true(fabsf(at(out, &v, 0, x, y) -
                          (x == where[k][0] && y == where[k][1] ? 1.0f : 0.0f)) < 1e-6f);
    free(out);
    pn_transforms_free(t);
  }
  /* p = 0.5 flips about half the samples. */
  pn_transforms *t = chain1("hflip", NULL);
  int flipped = 0;
  for (uint64_t s = 0; s < 1000; s++) {
    pn_view v = view_of(t, 7, 5, 1, s);
    flipped += v.m[0] < 0;
  }
  assert_true(flipped > 430 && flipped < 570);
  pn_transforms_free(t);
  pn_image_free(&img);
}

static void test_random_resized_crop(void **state) {
  (void)state;
  pn_transforms *t = chain1("random_resized_crop", "size=[24, 32], scale=[0.2, 0.9]");
  const double W = 256, H = 192, lo = 0.75, hi = 4.0 / 3;
  double least = 1, most = 0;
  for (uint64_t s = 0; s < 2000; s++) {
    pn_view v = view_of(t, 256, 192, 5, s);
    assert_int_equal(v.w, 32);
    assert_int_equal(v.h, 24);
    double x0 = v.m[2], y0 = v.m[5], cw = v.m[0] * 32, ch = v.m[4] * 24;
    assert_true(v.m[1] == 0 && v.m[3] == 0 && v.m[6] == 0 && v.m[7] == 0);
    assert_true(x0 >= 0 && y0 >= 0 && x0 + cw <= W + 1e-9 && y0 + ch <= H + 1e-9);
    assert_true(x0 == floor(x0) && y0 == floor(y0));
    /* Within the bounds up to the rounding of w and h to pixels. */
    assert_true((cw + 0.5) * (ch + 0.5) >= 0.2 * W * H && (cw - 0.5) * (ch - 0.5) <= 0.9 * W * H);
    assert_true((cw + 0.5) / (ch - 0.5) >= lo && (cw - 0.5) / (ch + 0.5) <= hi);
    least = fmin(least, cw * ch / (W * H));
    most = fmax(most, cw * ch / (W * H));
  }
  assert_true(least < 0.25 && most > 0.8);
  pn_transforms_free(t);
  /* No area fits a 1:10 strip at ratios near 1: the central fallback. */
  t = chain1("random_resized_crop", "size=8, scale=[0.9, 1.0], ratio=[1.0, 1.0]");
  pn_view v = view_of(t, 10, 100, 5, 0);
  assert_true(v.m[0] * 8 == 10 && v.m[4] * 8 == 10 && v.m[2] == 0 && v.m[5] == 45);
  pn_transforms_free(t);
}

static void test_affine_rotation(void **state) {
  (void)state;
  pn_transforms *t = chain1("affine", "p=1, rotate=30, zoom=1, warp=0");
  int positive = 0;
  for (uint64_t s = 0; s < 200; s++) {
    pn_view v = view_of(t, 64, 48, 2, s);
    assert_int_equal(v.padding, PN_PAD_REFLECTION);
    double cx, cy, angle = atan2(v.m[3], v.m[0]) * 180 / M_PI;
    map_point(&v, 32, 24, &cx, &cy);
    assert_true(fabs(cx - 32) < 1e-9 && fabs(cy - 24) < 1e-9);
    assert_true(fabs(v.m[0] - v.m[4]) < 1e-12 && fabs(v.m[1] + v.m[3]) < 1e-12);
    assert_true(fabs(v.m[0] * v.m[0] + v.m[3] * v.m[3] - 1) < 1e-12);
    assert_true(fabs(angle) <= 30);
    positive += angle > 0;
  }
  assert_true(positive > 70 && positive < 130);
  pn_transforms_free(t);
}

/* A zoom of z shows 1/z of each side, somewhere inside the image. */
static void test_affine_zoom(void **state) {
  (void)state;
  pn_transforms *t = chain1("affine", "p=1, rotate=0, zoom=[2, 2], warp=0, padding=zeros");
  for (uint64_t s = 0; s < 200; s++) {
    pn_view v = view_of(t, 64, 48, 3, s);
    assert_int_equal(v.padding, PN_PAD_ZEROS);
    assert_true(fabs(v.m[0] - 0.5) < 1e-12 && fabs(v.m[4] - 0.5) < 1e-12);
    double x0, y0, x1, y1;
    map_point(&v, 0, 0, &x0, &y0);
    map_point(&v, 64, 48, &x1, &y1);
    assert_true(x0 >= -1e-9 && y0 >= -1e-9 && x1 <= 64 + 1e-9 && y1 <= 48 + 1e-9);
  }
  pn_transforms_free(t);
}

/* The warp moves the output's corners to a symmetric quadrilateral: each
 * by at most warp half-sizes, all four about the centre. */
static void test_affine_warp(void **state) {
  (void)state;
  pn_transforms *t = chain1("affine", "p=1, rotate=0, zoom=1, warp=0.3, padding=border");
  int projective = 0;
  for (uint64_t s = 0; s < 200; s++) {
    pn_view v = view_of(t, 60, 40, 4, s);
    const double cx[4] = {0, 60, 60, 0}, cy[4] = {0, 0, 40, 40};
    double sum_x = 0, sum_y = 0, qx[4], qy[4];
    for (int k = 0; k < 4; k++) {
      map_point(&v, cx[k], cy[k], &qx[k], &qy[k]);
      assert_true(fabs(qx[k] - cx[k]) <= 0.3 * 30 + 1e-9 && fabs(qy[k] - cy[k]) <= 0.3 * 20 + 1e-9);
      sum_x += qx[k];
      sum_y += qy[k];
    }
    assert_true(fabs(sum_x - 120) < 1e-9 && fabs(sum_y - 80) < 1e-9);
    /* Top-left and top-right move apart by the same x as the bottom ones close. */
    assert_true(fabs((qx[1] - qx[0]) + (qx[2] - qx[3]) - 120) < 1e-9);
    projective += v.m[6] != 0 || v.m[7] != 0;
  }
  assert_true(projective > 150);
  pn_transforms_free(t);
  /* p = 0 changes nothing but the padding. */
  t = chain1("affine", "p=0, padding=border");
  pn_view v = view_of(t, 60, 40, 4, 0);
  const double id[9] = {1, 0, 0, 0, 1, 0, 0, 0, 1};
  assert_memory_equal(v.m, id, sizeof id);
  assert_int_equal(v.padding, PN_PAD_BORDER);
  pn_transforms_free(t);
}

static double logit(double x) { return log(x / (1 - x)); }

static void test_lighting(void **state) {
  (void)state;
  pn_image img = noise_image(4, 4, 8);
  memset(img.data, 128, 4 * 4 * 3);
  img.data[0] = 64;
  img.data[1] = 0;
  img.data[2] = 255;
  const double x = 128 / 255.0, y = 64 / 255.0;
  pn_transforms *t = chain1("lighting", "p=1, brightness=0.4, contrast=0");
  for (uint64_t s = 0; s < 100; s++) {
    pn_view v;
    float *out = run(t, &img, 6, s, &v);
    /* One shift b in logit space for every value. */
    double b = logit(at(out, &v, 0, 1, 0)) - logit(x);
    assert_true(b >= logit(0.3) - 1e-4 && b <= logit(0.7) + 1e-4);
    assert_true(fabs(logit(at(out, &v, 0, 0, 0)) - logit(y) - b) < 1e-3);
    assert_true(at(out, &v, 1, 0, 0) > 0 && at(out, &v, 2, 0, 0) <= 1);
    free(out);
  }
  pn_transforms_free(t);
  t = chain1("lighting", "p=1, brightness=0, contrast=0.5");
  for (uint64_t s = 0; s < 100; s++) {
    pn_view v;
    float *out = run(t, &img, 6, s, &v);
    /* One factor c in logit space, within [1 - 0.5, 1 / (1 - 0.5)]. */
    double c = logit(at(out, &v, 0, 0, 0)) / logit(y);
    assert_true(c >= 0.5 - 1e-4 && c <= 2 + 1e-4);
    assert_true(fabs(logit(at(out, &v, 0, 1, 0)) - c * logit(x)) < 1e-3);
    assert_true(at(out, &v, 1, 0, 0) >= 0 && at(out, &v, 2, 0, 0) <= 1);
    free(out);
  }
  pn_transforms_free(t);
  pn_image_free(&img);
}

static void test_normalize(void **state) {
  (void)state;
  pn_image img = noise_image(3, 2, 9);
  memset(img.data, 51, 3 * 2 * 3); /* 0.2 */
  const struct {
    const char *pairs;
    double mean[3], std[3];
  } cases[] = {
      {"preset=imagenet", {0.485, 0.456, 0.406}, {0.229, 0.224, 0.225}},
      {"mean=0.5, std=0.25", {0.5, 0.5, 0.5}, {0.25, 0.25, 0.25}},
      {"mean=[0.1, 0.2, 0.3], std=[1, 2, 4]", {0.1, 0.2, 0.3}, {1, 2, 4}},
      {NULL, {0, 0, 0}, {1, 1, 1}},
  };
  for (size_t k = 0; k < sizeof cases / sizeof *cases; k++) {
    pn_transforms *t = chain1("normalize", cases[k].pairs);
    pn_view v;
    float *out = run(t, &img, 0, 0, &v);
    for (int c = 0; c < 3; c++)
      assert_true(fabs(at(out, &v, c, 2, 1) - (0.2 - cases[k].mean[c]) / cases[k].std[c]) < 1e-6);
    free(out);
    pn_transforms_free(t);
  }
  pn_image_free(&img);
}

/* ---- chains */

static void test_size_scale(void **state) {
  (void)state;
  const char *features[3] = {"resize", "center_crop", "normalize"};
  const char *pairs[3] = {"size=146", "size=128", NULL};
  const double scales[3] = {1, 2, 0.5};
  const int sides[3] = {128, 256, 64};
  for (int k = 0; k < 3; k++) {
    pn_transforms *t = chain_scaled(3, features, pairs, scales[k]);
    pn_view v = view_of(t, 300, 200, 0, 0);
    assert_int_equal(v.w, sides[k]);
    assert_int_equal(v.h, sides[k]);
    pn_transforms_free(t);
  }
  const char *rrc = "random_resized_crop", *size = "size=[100, 51]";
  pn_transforms *t = chain_scaled(1, &rrc, &size, 1.5);
  pn_view v = view_of(t, 300, 200, 0, 0);
  assert_int_equal(v.h, 150);
  assert_int_equal(v.w, 77); /* 76.5 rounds away from zero */
  pn_transforms_free(t);
}

/* The same (key, stream) gives the same sample, whatever ran before. */
static void test_deterministic(void **state) {
  (void)state;
  const char *features[5] = {"random_resized_crop", "hflip", "affine", "lighting", "normalize"};
  const char *pairs[5] = {"size=32", NULL, "warp=0.3", NULL, "preset=imagenet"};
  pn_transforms *t = chain_scaled(5, features, pairs, 1.0);
  pn_image img = noise_image(80, 60, 10);
  pn_view va, vb, vc;
  float *a = run(t, &img, 11, 3, &va);
  float *c = run(t, &img, 11, 4, &vc);
  float *b = run(t, &img, 11, 3, &vb);
  assert_memory_equal(a, b, sizeof *a * 3 * 32 * 32);
  assert_memory_not_equal(a, c, sizeof *a * 3 * 32 * 32);
  free(a);
  free(b);
  free(c);
  pn_transforms_free(t);
  pn_image_free(&img);
}

static void expect_error(const char *feature, const char *pairs, const char *needle) {
  pn_config *cfg = tu_config(feature, pairs);
  pn_transforms *t = NULL;
  const pn_config *cfgs[1] = {cfg};
  assert_int_not_equal(pn_transforms_new(&feature, cfgs, 1, 1.0, &t), PN_OK);
  assert_null(t);
  if (!strstr(pn_last_error(), needle)) fail_msg("'%s' lacks '%s'", pn_last_error(), needle);
  pn_config_free(cfg);
}

static void test_errors(void **state) {
  (void)state;
  expect_error("resize", "size=[1, 2, 3]", "size");
  expect_error("normalize", "mean=[1, 2]", "mean");
  expect_error("normalize", "std=[1, 0, 1]", "std");
  expect_error("random_resized_crop", "size=3, scale=[0.9, 0.2]", "scale");
  expect_error("relu", NULL, "not a transform");
  const char *unknown = "rezise";
  pn_transforms *t = NULL;
  assert_int_not_equal(pn_transforms_new(&unknown, NULL, 1, 1.0, &t), PN_OK);
  assert_non_null(strstr(pn_last_error(), "resize"));
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_rng),
      cmocka_unit_test(test_identity_is_exact),
      cmocka_unit_test(test_crop_then_flip),
      cmocka_unit_test(test_against_reference),
      cmocka_unit_test(test_padding_modes),
      cmocka_unit_test(test_reduced_source),
      cmocka_unit_test(test_reduce_factor),
      cmocka_unit_test(test_resize),
      cmocka_unit_test(test_center_crop),
      cmocka_unit_test(test_flips),
      cmocka_unit_test(test_random_resized_crop),
      cmocka_unit_test(test_affine_rotation),
      cmocka_unit_test(test_affine_zoom),
      cmocka_unit_test(test_affine_warp),
      cmocka_unit_test(test_lighting),
      cmocka_unit_test(test_normalize),
      cmocka_unit_test(test_size_scale),
      cmocka_unit_test(test_deterministic),
      cmocka_unit_test(test_errors),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
