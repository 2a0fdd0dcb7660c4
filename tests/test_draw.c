/* The CLI's drawing (core/cli/draw.c): glyph pixels where the font puts
 * them, clipping at the canvas edges, samples un-normalised, and plots that
 * read back as PNG. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include <plugnet/plugnet.h>

#include "cli/draw.h"

static const draw_rgb black = {0, 0, 0}, white = {255, 255, 255};

static pn_image canvas(int w, int h) {
  pn_image img = {0, 0, NULL};
  assert_int_equal(pn_image_alloc(&img, w, h), PN_OK);
  draw_fill(&img, 0, 0, w, h, white);
  return img;
}

static const uint8_t *pixel(const pn_image *img, int x, int y) {
  return img->data + ((size_t)y * (size_t)img->w + (size_t)x) * 3;
}

static int is_black(const pn_image *img, int x, int y) {
  const uint8_t *p = pixel(img, x, y);
  return p[0] == 0 && p[1] == 0 && p[2] == 0;
}

static int count_black(const pn_image *img) {
  int n = 0;
  for (int y = 0; y < img->h; y++)
    for (int x = 0; x < img->w; x++) n += is_black(img, x, y);
  return n;
}

/* '1' is 00100 01100 00100 00100 00100 00100 01110. */
static void test_text_pixels(void **state) {
  (void)state;
  pn_image img = canvas(12, 12);
  draw_text(&img, 1, 2, 1, "1", black);
  assert_true(is_black(&img, 3, 2));  /* the top of the stem */
  assert_false(is_black(&img, 1, 2)); /* left of it */
  assert_true(is_black(&img, 2, 3));  /* the flag */
  assert_true(is_black(&img, 3, 7));  /* the stem */
  assert_false(is_black(&img, 2, 7));
  for (int x = 2; x <= 4; x++) assert_true(is_black(&img, x, 8)); /* the foot */
  assert_false(is_black(&img, 1, 8));
  assert_false(is_black(&img, 5, 8));
  assert_false(is_black(&img, 3, 9)); /* below the glyph */
  assert_int_equal(count_black(&img), 10);
  pn_image_free(&img);
}

/* '-' is one full row (the 4th): at scale 2 a 10x2 bar. */
static void test_text_scale(void **state) {
  (void)state;
  pn_image img = canvas(20, 20);
  draw_text(&img, 0, 0, 2, "-", black);
  assert_int_equal(count_black(&img), 20);
  for (int x = 0; x < 10; x++) assert_true(is_black(&img, x, 6) && is_black(&img, x, 7));
  assert_false(is_black(&img, 10, 6));
  assert_false(is_black(&img, 0, 5));
  pn_image_free(&img);
}

/* The second character starts one advance (6 pixels) to the right. */
static void test_text_advance_and_width(void **state) {
  (void)state;
  pn_image img = canvas(20, 10);
  draw_text(&img, 0, 0, 1, "--", black);
  assert_true(is_black(&img, 4, 3));
  assert_false(is_black(&img, 5, 3)); /* the gap */
  assert_true(is_black(&img, 6, 3));
  assert_true(is_black(&img, 10, 3));
  assert_false(is_black(&img, 11, 3));
  assert_int_equal(draw_text_width("", 1), 0);
  assert_int_equal(draw_text_width("a", 1), 5);
  assert_int_equal(draw_text_width("ab", 1), 11);
  assert_int_equal(draw_text_width("ab", 3), 33);
  pn_image_free(&img);
}

/* 'p' hangs DRAW_DESCENT rows low: its bowl starts at the x-height, as 'o's
 * does, and its stem reaches below the line. */
static void test_text_descender(void **state) {
  (void)state;
  pn_image img = canvas(12, 12);
  draw_text(&img, 0, 0, 1, "op", black);
  assert_true(is_black(&img, 1, 2) && is_black(&img, 6, 2)); /* both tops on row 2 */
  assert_false(is_black(&img, 6, 1));
  assert_false(is_black(&img, 0, 7)); /* 'o' ends on row 6 */
  assert_true(is_black(&img, 6, 8));  /* the stem of 'p' ends on row 8 */
  assert_false(is_black(&img, 6, 9));
  pn_image_free(&img);
}

static void test_text_unprintable_is_question_mark(void **state) {
  (void)state;
  pn_image a = canvas(8, 8), b = canvas(8, 8);
  draw_text(&a, 0, 0, 1, "\x01", black);
  draw_text(&b, 0, 0, 1, "?", black);
  assert_true(count_black(&a) > 0);
  assert_memory_equal(a.data, b.data, 8 * 8 * 3);
  pn_image_free(&a), pn_image_free(&b);
}

/* Drawing off every edge must not write outside the canvas (ASan checks). */
static void test_clipping(void **state) {
  (void)state;
  pn_image img = canvas(6, 5);
  draw_text(&img, -3, -3, 2, "W", black);
  draw_text(&img, 4, 3, 3, "Hello", black);
  draw_line(&img, -10, -10, 20, 20, black);
  draw_fill(&img, -5, -5, 3, 3, black); /* wholly outside */
  draw_fill(&img, -5, -5, 100, 100, black);
  assert_int_equal(count_black(&img), 30);
  pn_image_free(&img);
}

static void test_line(void **state) {
  (void)state;
  pn_image img = canvas(10, 10);
  draw_line(&img, 0, 0, 4, 4, black);
  assert_int_equal(count_black(&img), 5);
  for (int i = 0; i <= 4; i++) assert_true(is_black(&img, i, i));
  draw_line(&img, 9, 2, 9, 7, black); /* vertical, drawn bottom-up too */
  draw_line(&img, 8, 9, 8, 9, black); /* one point */
  assert_int_equal(count_black(&img), 5 + 6 + 1);
  pn_image_free(&img);
}

/* x * std + mean per channel, clamped, rounded to bytes. */
static void test_sample_unnormalised(void **state) {
  (void)state;
  const double mean[3] = {0.5, 0.0, 0.25}, std[3] = {0.25, 1.0, 0.5};
  const float chw[3 * 2] = {0.0f, 2.0f, 0.5f, -1.0f, 1.5f, -0.5f}; /* 3 x 1 x 2 */
  pn_image img = canvas(4, 3);
  draw_sample(&img, 1, 1, chw, 1, 2, mean, std);
  const uint8_t *a = pixel(&img, 1, 1), *b = pixel(&img, 2, 1);
  assert_int_equal(a[0], 128);                    /* 0 * .25 + .5 */
  assert_int_equal(b[0], 255);                    /* 1.0 */
  assert_int_equal(a[1], 128);                    /* .5 */
  assert_int_equal(b[1], 0);                      /* clamped */
  assert_int_equal(a[2], 255);                    /* 1.0 */
  assert_int_equal(b[2], 0);                      /* 0 */
  assert_int_equal(pixel(&img, 0, 1)[0], 255);    /* untouched */
  draw_sample(&img, 0, 0, chw, 1, 2, NULL, NULL); /* values as they are */
  assert_int_equal(pixel(&img, 0, 0)[0], 0);
  assert_int_equal(pixel(&img, 1, 0)[0], 255);
  assert_int_equal(pixel(&img, 0, 0)[1], 128);
  pn_image_free(&img);
}

static int count_colour(const pn_image *img, uint8_t r, uint8_t g, uint8_t b) {
  int n = 0;
  for (int y = 0; y < img->h; y++)
    for (int x = 0; x < img->w; x++) {
      const uint8_t *p = pixel(img, x, y);
      n += p[0] == r && p[1] == g && p[2] == b;
    }
  return n;
}

/* An lr-find-like curve on a log axis reads back as a PNG with the curve,
 * the marker and dark text on white. */
static void test_plot_png(void **state) {
  (void)state;
  char dir[] = "/tmp/pn-draw.XXXXXX", path[64];
  assert_non_null(mkdtemp(dir));
  snprintf(path, sizeof path, "%s/plot.png", dir);
  double xs[100], ys[100];
  for (int i = 0; i < 100; i++) {
    xs[i] = 1e-7 * pow(1e8, i / 99.0);
    ys[i] = 2.0 - exp(-pow((i - 60) / 20.0, 2.0));
  }
  ys[10] = NAN, xs[20] = -1.0; /* left out */
  assert_int_equal(draw_plot_png(path, xs, ys, 100, 1, "learning rate", "loss", 1e-3), PN_OK);
  pn_image img = {0, 0, NULL};
  assert_int_equal(pn_image_load(path, 1, &img), PN_OK);
  assert_true(img.w >= 320 && img.h >= 200);
  assert_int_equal(pixel(&img, 0, 0)[0], 255);
  assert_true(count_colour(&img, 31, 119, 180) > 200); /* the curve */
  assert_true(count_colour(&img, 214, 39, 40) > 50);   /* the marker */
  assert_true(count_black(&img) > 500);                /* axes and labels */
  pn_image_free(&img);
  /* A linear axis and a single point work too. */
  double one_x = 3.0, one_y = 0.5;
  assert_int_equal(draw_plot_png(path, &one_x, &one_y, 1, 0, "x", "y", NAN), PN_OK);
  assert_int_equal(pn_image_load(path, 1, &img), PN_OK);
  pn_image_free(&img);
  unlink(path);
  rmdir(dir);
}

static void test_plot_nothing_to_draw(void **state) {
  (void)state;
  double xs[2] = {-1.0, 0.0}, ys[2] = {1.0, NAN};
  assert_int_equal(draw_plot_png("/tmp/pn-never.png", xs, ys, 2, 1, "x", "y", NAN), PN_ERR_INVALID);
  assert_non_null(strstr(pn_last_error(), "pn-never.png"));
  assert_int_equal(draw_plot_png("/tmp/pn-never.png", xs, ys, 0, 0, "x", "y", NAN), PN_ERR_INVALID);
  assert_int_equal(access("/tmp/pn-never.png", F_OK), -1);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_text_pixels),
      cmocka_unit_test(test_text_scale),
      cmocka_unit_test(test_text_advance_and_width),
      cmocka_unit_test(test_text_descender),
      cmocka_unit_test(test_text_unprintable_is_question_mark),
      cmocka_unit_test(test_clipping),
      cmocka_unit_test(test_line),
      cmocka_unit_test(test_sample_unnormalised),
      cmocka_unit_test(test_plot_png),
      cmocka_unit_test(test_plot_nothing_to_draw),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
