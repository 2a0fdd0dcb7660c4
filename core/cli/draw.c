/* Drawing for the CLI's pictures. The canvas is a pn_image (RGB, rows of
 * w triples); everything clips, so a label or a plot line that runs off the
 * edge is cut rather than written out of bounds. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "draw.h"

/* 5x7 glyphs for ' '..'~', one byte per row, bit 4 the leftmost column.
 * g, p, q and y are drawn DRAW_DESCENT rows lower (their tails below the
 * line), so their rows start at the x-height. */
static const uint8_t font[95][DRAW_GLYPH_H] = {
    {0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00}, /* space */
    {0x04, 0x04, 0x04, 0x04, 0x04, 0x00, 0x04}, /* ! */
    {0x0a, 0x0a, 0x0a, 0x00, 0x00, 0x00, 0x00}, /* " */
    {0x0a, 0x0a, 0x1f, 0x0a, 0x1f, 0x0a, 0x0a}, /* # */
    {0x04, 0x0f, 0x14, 0x0e, 0x05, 0x1e, 0x04}, /* $ */
    {0x18, 0x19, 0x02, 0x04, 0x08, 0x13, 0x03}, /* % */
    {0x0c, 0x12, 0x14, 0x08, 0x15, 0x12, 0x0d}, /* & */
    {0x04, 0x04, 0x08, 0x00, 0x00, 0x00, 0x00}, /* ' */
    {0x02, 0x04, 0x08, 0x08, 0x08, 0x04, 0x02}, /* ( */
    {0x08, 0x04, 0x02, 0x02, 0x02, 0x04, 0x08}, /* ) */
    {0x00, 0x04, 0x15, 0x0e, 0x15, 0x04, 0x00}, /* * */
    {0x00, 0x04, 0x04, 0x1f, 0x04, 0x04, 0x00}, /* + */
    {0x00, 0x00, 0x00, 0x00, 0x0c, 0x04, 0x08}, /* , */
    {0x00, 0x00, 0x00, 0x1f, 0x00, 0x00, 0x00}, /* - */
    {0x00, 0x00, 0x00, 0x00, 0x00, 0x0c, 0x0c}, /* . */
    {0x00, 0x01, 0x02, 0x04, 0x08, 0x10, 0x00}, /* / */
    {0x0e, 0x11, 0x13, 0x15, 0x19, 0x11, 0x0e}, /* 0 */
    {0x04, 0x0c, 0x04, 0x04, 0x04, 0x04, 0x0e}, /* 1 */
    {0x0e, 0x11, 0x01, 0x02, 0x04, 0x08, 0x1f}, /* 2 */
    {0x1f, 0x02, 0x04, 0x02, 0x01, 0x11, 0x0e}, /* 3 */
    {0x02, 0x06, 0x0a, 0x12, 0x1f, 0x02, 0x02}, /* 4 */
    {0x1f, 0x10, 0x1e, 0x01, 0x01, 0x11, 0x0e}, /* 5 */
    {0x06, 0x08, 0x10, 0x1e, 0x11, 0x11, 0x0e}, /* 6 */
    {0x1f, 0x01, 0x02, 0x04, 0x08, 0x08, 0x08}, /* 7 */
    {0x0e, 0x11, 0x11, 0x0e, 0x11, 0x11, 0x0e}, /* 8 */
    {0x0e, 0x11, 0x11, 0x0f, 0x01, 0x02, 0x0c}, /* 9 */
    {0x00, 0x0c, 0x0c, 0x00, 0x0c, 0x0c, 0x00}, /* : */
    {0x00, 0x0c, 0x0c, 0x00, 0x0c, 0x04, 0x08}, /* ; */
    {0x02, 0x04, 0x08, 0x10, 0x08, 0x04, 0x02}, /* < */
    {0x00, 0x00, 0x1f, 0x00, 0x1f, 0x00, 0x00}, /* = */
    {0x08, 0x04, 0x02, 0x01, 0x02, 0x04, 0x08}, /* > */
    {0x0e, 0x11, 0x01, 0x02, 0x04, 0x00, 0x04}, /* ? */
    {0x0e, 0x11, 0x01, 0x0d, 0x15, 0x15, 0x0e}, /* @ */
    {0x0e, 0x11, 0x11, 0x11, 0x1f, 0x11, 0x11}, /* A */
    {0x1e, 0x11, 0x11, 0x1e, 0x11, 0x11, 0x1e}, /* B */
    {0x0e, 0x11, 0x10, 0x10, 0x10, 0x11, 0x0e}, /* C */
    {0x1c, 0x12, 0x11, 0x11, 0x11, 0x12, 0x1c}, /* D */
    {0x1f, 0x10, 0x10, 0x1e, 0x10, 0x10, 0x1f}, /* E */
    {0x1f, 0x10, 0x10, 0x1e, 0x10, 0x10, 0x10}, /* F */
    {0x0e, 0x11, 0x10, 0x17, 0x11, 0x11, 0x0f}, /* G */
    {0x11, 0x11, 0x11, 0x1f, 0x11, 0x11, 0x11}, /* H */
    {0x0e, 0x04, 0x04, 0x04, 0x04, 0x04, 0x0e}, /* I */
    {0x07, 0x02, 0x02, 0x02, 0x02, 0x12, 0x0c}, /* J */
    {0x11, 0x12, 0x14, 0x18, 0x14, 0x12, 0x11}, /* K */
    {0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x1f}, /* L */
    {0x11, 0x1b, 0x15, 0x15, 0x11, 0x11, 0x11}, /* M */
    {0x11, 0x11, 0x19, 0x15, 0x13, 0x11, 0x11}, /* N */
    {0x0e, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0e}, /* O */
    {0x1e, 0x11, 0x11, 0x1e, 0x10, 0x10, 0x10}, /* P */
    {0x0e, 0x11, 0x11, 0x11, 0x15, 0x12, 0x0d}, /* Q */
    {0x1e, 0x11, 0x11, 0x1e, 0x14, 0x12, 0x11}, /* R */
    {0x0f, 0x10, 0x10, 0x0e, 0x01, 0x01, 0x1e}, /* S */
    {0x1f, 0x04, 0x04, 0x04, 0x04, 0x04, 0x04}, /* T */
    {0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0e}, /* U */
    {0x11, 0x11, 0x11, 0x11, 0x11, 0x0a, 0x04}, /* V */
    {0x11, 0x11, 0x11, 0x15, 0x15, 0x15, 0x0a}, /* W */
    {0x11, 0x11, 0x0a, 0x04, 0x0a, 0x11, 0x11}, /* X */
    {0x11, 0x11, 0x11, 0x0a, 0x04, 0x04, 0x04}, /* Y */
    {0x1f, 0x01, 0x02, 0x04, 0x08, 0x10, 0x1f}, /* Z */
    {0x0e, 0x08, 0x08, 0x08, 0x08, 0x08, 0x0e}, /* [ */
    {0x00, 0x10, 0x08, 0x04, 0x02, 0x01, 0x00}, /* backslash */
    {0x0e, 0x02, 0x02, 0x02, 0x02, 0x02, 0x0e}, /* ] */
    {0x04, 0x0a, 0x11, 0x00, 0x00, 0x00, 0x00}, /* ^ */
    {0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x1f}, /* _ */
    {0x08, 0x04, 0x02, 0x00, 0x00, 0x00, 0x00}, /* ` */
    {0x00, 0x00, 0x0e, 0x01, 0x0f, 0x11, 0x0f}, /* a */
    {0x10, 0x10, 0x16, 0x19, 0x11, 0x11, 0x1e}, /* b */
    {0x00, 0x00, 0x0e, 0x10, 0x10, 0x11, 0x0e}, /* c */
    {0x01, 0x01, 0x0d, 0x13, 0x11, 0x11, 0x0f}, /* d */
    {0x00, 0x00, 0x0e, 0x11, 0x1f, 0x10, 0x0e}, /* e */
    {0x06, 0x09, 0x08, 0x1c, 0x08, 0x08, 0x08}, /* f */
    {0x0f, 0x11, 0x11, 0x11, 0x0f, 0x01, 0x0e}, /* g */
    {0x10, 0x10, 0x16, 0x19, 0x11, 0x11, 0x11}, /* h */
    {0x04, 0x00, 0x0c, 0x04, 0x04, 0x04, 0x0e}, /* i */
    {0x02, 0x00, 0x06, 0x02, 0x02, 0x12, 0x0c}, /* j */
    {0x10, 0x10, 0x12, 0x14, 0x18, 0x14, 0x12}, /* k */
    {0x0c, 0x04, 0x04, 0x04, 0x04, 0x04, 0x0e}, /* l */
    {0x00, 0x00, 0x1a, 0x15, 0x15, 0x11, 0x11}, /* m */
    {0x00, 0x00, 0x16, 0x19, 0x11, 0x11, 0x11}, /* n */
    {0x00, 0x00, 0x0e, 0x11, 0x11, 0x11, 0x0e}, /* o */
    {0x1e, 0x11, 0x11, 0x11, 0x1e, 0x10, 0x10}, /* p */
    {0x0f, 0x11, 0x11, 0x11, 0x0f, 0x01, 0x01}, /* q */
    {0x00, 0x00, 0x16, 0x19, 0x10, 0x10, 0x10}, /* r */
    {0x00, 0x00, 0x0e, 0x10, 0x0e, 0x01, 0x1e}, /* s */
    {0x08, 0x08, 0x1c, 0x08, 0x08, 0x09, 0x06}, /* t */
    {0x00, 0x00, 0x11, 0x11, 0x11, 0x13, 0x0d}, /* u */
    {0x00, 0x00, 0x11, 0x11, 0x11, 0x0a, 0x04}, /* v */
    {0x00, 0x00, 0x11, 0x11, 0x15, 0x15, 0x0a}, /* w */
    {0x00, 0x00, 0x11, 0x0a, 0x04, 0x0a, 0x11}, /* x */
    {0x11, 0x11, 0x11, 0x11, 0x0f, 0x01, 0x0e}, /* y */
    {0x00, 0x00, 0x1f, 0x02, 0x04, 0x08, 0x1f}, /* z */
    {0x02, 0x04, 0x04, 0x08, 0x04, 0x04, 0x02}, /* { */
    {0x04, 0x04, 0x04, 0x04, 0x04, 0x04, 0x04}, /* | */
    {0x08, 0x04, 0x04, 0x02, 0x04, 0x04, 0x08}, /* } */
    {0x00, 0x00, 0x08, 0x15, 0x02, 0x00, 0x00}, /* ~ */
};

static void put(pn_image *img, int x, int y, draw_rgb c) {
  if (x < 0 || y < 0 || x >= img->w || y >= img->h) return;
  uint8_t *p = img->data + ((size_t)y * (size_t)img->w + (size_t)x) * 3;
  p[0] = c.r, p[1] = c.g, p[2] = c.b;
}

void draw_fill(pn_image *img, int x, int y, int w, int h, draw_rgb c) {
  int x1 = x + w < img->w ? x + w : img->w, y1 = y + h < img->h ? y + h : img->h;
  for (int j = y < 0 ? 0 : y; j < y1; j++)
    for (int i = x < 0 ? 0 : x; i < x1; i++) put(img, i, j, c);
}

/* Bresenham: every step moves one pixel along the major axis. */
void draw_line(pn_image *img, int x0, int y0, int x1, int y1, draw_rgb c) {
  int dx = x1 > x0 ? x1 - x0 : x0 - x1, sx = x0 < x1 ? 1 : -1;
  int dy = y1 > y0 ? y0 - y1 : y1 - y0, sy = y0 < y1 ? 1 : -1;
  int err = dx + dy;
  for (;;) {
    put(img, x0, y0, c);
    if (x0 == x1 && y0 == y1) return;
    int e2 = 2 * err;
    if (e2 >= dy) err += dy, x0 += sx;
    if (e2 <= dx) err += dx, y0 += sy;
  }
}

static void draw_glyph(pn_image *img, int x, int y, int scale, unsigned char ch, draw_rgb c) {
  const uint8_t *g = font[(ch < ' ' || ch > '~' ? '?' : ch) - ' '];
  if (ch && strchr("gpqy", ch)) y += DRAW_DESCENT * scale;
  for (int row = 0; row < DRAW_GLYPH_H; row++)
    for (int col = 0; col < DRAW_GLYPH_W; col++)
      if (g[row] & (0x10 >> col)) draw_fill(img, x + col * scale, y + row * scale, scale, scale, c);
}

void draw_text(pn_image *img, int x, int y, int scale, const char *s, draw_rgb c) {
  for (; *s; s++, x += DRAW_ADVANCE * scale) draw_glyph(img, x, y, scale, (unsigned char)*s, c);
}

int draw_text_width(const char *s, int scale) {
  size_t n = strlen(s);
  return n ? (int)n * DRAW_ADVANCE * scale - (DRAW_ADVANCE - DRAW_GLYPH_W) * scale : 0;
}

static uint8_t to_byte(double v) {
  if (!(v > 0.0)) return 0; /* NaN too */
  return v >= 1.0 ? 255 : (uint8_t)(v * 255.0 + 0.5);
}

void draw_sample(pn_image *img, int x, int y, const float *chw, int h, int w, const double mean[3],
                 const double std[3]) {
  size_t plane = (size_t)h * (size_t)w;
  for (int j = 0; j < h; j++)
    for (int i = 0; i < w; i++) {
      uint8_t px[3];
      for (int k = 0; k < 3; k++) {
        double v = chw[(size_t)k * plane + (size_t)j * (size_t)w + (size_t)i];
        px[k] = to_byte(mean && std ? v * std[k] + mean[k] : v);
      }
      put(img, x + i, y + j, (draw_rgb){px[0], px[1], px[2]});
    }
}

/* ------------------------------------------------------------ plots */

#define PLOT_W      640
#define PLOT_H      420
#define PLOT_LEFT   80
#define PLOT_RIGHT  (PLOT_W - 24)
#define PLOT_TOP    34
#define PLOT_BOTTOM (PLOT_H - 56)
#define MAX_TICKS   64

static const draw_rgb black = {0, 0, 0}, white = {255, 255, 255}, grid = {225, 225, 225},
                      curve = {31, 119, 180}, marker = {214, 39, 40};

/* One axis: data values map to pixels through lo..hi (log10 values on a
 * log axis), with tick marks at ticks[0..n). */
typedef struct axis {
  int log;
  double lo, hi;
  double ticks[MAX_TICKS];
  int n;
  int decimals; /* for linear tick labels */
} axis;

static double axis_value(const axis *a, double x) { return a->log ? log10(x) : x; }

/* 1, 2 or 5 times a power of ten, the step for about `want` ticks. */
static double nice_step(double range, int want) {
  double raw = range / want, p = pow(10.0, floor(log10(raw))), f = raw / p;
  return p * (f <= 1.0 ? 1.0 : f <= 2.0 ? 2.0 : f <= 5.0 ? 5.0 : 10.0);
}

static void linear_ticks(axis *a, double lo, double hi) {
  if (hi - lo < 1e-12 * (fabs(lo) + 1.0)) { /* one value: room around it */
    double d = lo != 0.0 ? fabs(lo) * 0.1 : 1.0;
    lo -= d, hi += d;
  }
  double step = nice_step(hi - lo, 5);
  a->lo = floor(lo / step) * step, a->hi = ceil(hi / step) * step;
  for (a->n = 0; a->n < MAX_TICKS && a->lo + a->n * step <= a->hi + step * 1e-9; a->n++)
    a->ticks[a->n] = a->lo + a->n * step;
  int d = (int)-floor(log10(step) + 1e-9);
  a->decimals = d < 0 ? 0 : d > 6 ? 6 : d;
}

/* Whole decades, every one up to 8 and thinned beyond. */
static void log_ticks(axis *a, double lo, double hi) {
  a->lo = floor(lo), a->hi = ceil(hi);
  if (a->hi <= a->lo) a->hi = a->lo + 1;
  int every = (int)ceil((a->hi - a->lo) / 8.0);
  for (a->n = 0; a->n < MAX_TICKS && a->lo + a->n * every <= a->hi; a->n++)
    a->ticks[a->n] = a->lo + a->n * every;
}

static int point_ok(int log_x, double x, double y) {
  return isfinite(x) && isfinite(y) && (!log_x || x > 0);
}

/* The axes over every drawable point; 0 when there is none. */
static int fit_axes(axis *ax, axis *ay, const double *xs, const double *ys, int n, int log_x) {
  double xlo = INFINITY, xhi = -INFINITY, ylo = INFINITY, yhi = -INFINITY;
  for (int i = 0; i < n; i++) {
    if (!point_ok(log_x, xs[i], ys[i])) continue;
    double x = log_x ? log10(xs[i]) : xs[i];
    xlo = fmin(xlo, x), xhi = fmax(xhi, x), ylo = fmin(ylo, ys[i]), yhi = fmax(yhi, ys[i]);
  }
  if (xlo > xhi) return 0;
  ax->log = log_x, ay->log = 0;
  if (log_x)
    log_ticks(ax, xlo, xhi);
  else
    linear_ticks(ax, xlo, xhi);
  linear_ticks(ay, ylo, yhi);
  return 1;
}

static void tick_label(const axis *a, double t, char *buf, size_t n) {
  int k = (int)lround(t);
  if (!a->log)
    snprintf(buf, n, "%.*f", a->decimals, fabs(t) < 1e-12 ? 0.0 : t);
  else if (k >= -3 && k <= 3)
    snprintf(buf, n, "%g", pow(10.0, k));
  else
    snprintf(buf, n, "1e%d", k);
}

static int to_px(const axis *a, double t) {
  return PLOT_LEFT + (int)lround((t - a->lo) / (a->hi - a->lo) * (PLOT_RIGHT - PLOT_LEFT));
}

static int to_py(const axis *a, double t) {
  return PLOT_BOTTOM - (int)lround((t - a->lo) / (a->hi - a->lo) * (PLOT_BOTTOM - PLOT_TOP));
}

static void draw_x_axis(pn_image *img, const axis *a, const char *label) {
  char buf[32];
  for (int i = 0; i < a->n; i++) {
    int px = to_px(a, a->ticks[i]);
    draw_line(img, px, PLOT_TOP, px, PLOT_BOTTOM, grid);
    draw_line(img, px, PLOT_BOTTOM, px, PLOT_BOTTOM + 4, black);
    tick_label(a, a->ticks[i], buf, sizeof buf);
    draw_text(img, px - draw_text_width(buf, 1) / 2, PLOT_BOTTOM + 8, 1, buf, black);
  }
  if (label) {
    int mid = (PLOT_LEFT + PLOT_RIGHT) / 2;
    draw_text(img, mid - draw_text_width(label, 2) / 2, PLOT_BOTTOM + 26, 2, label, black);
  }
}

static void draw_y_axis(pn_image *img, const axis *a, const char *label) {
  char buf[32];
  for (int i = 0; i < a->n; i++) {
    int py = to_py(a, a->ticks[i]);
    draw_line(img, PLOT_LEFT, py, PLOT_RIGHT, py, grid);
    draw_line(img, PLOT_LEFT - 4, py, PLOT_LEFT, py, black);
    tick_label(a, a->ticks[i], buf, sizeof buf);
    draw_text(img, PLOT_LEFT - 8 - draw_text_width(buf, 1), py - DRAW_GLYPH_H / 2, 1, buf, black);
  }
  /* Horizontal, above the axis: the font has no rotated glyphs. */
  if (label) draw_text(img, 8, 8, 2, label, black);
}

static void draw_frame(pn_image *img) {
  draw_line(img, PLOT_LEFT, PLOT_TOP, PLOT_RIGHT, PLOT_TOP, black);
  draw_line(img, PLOT_LEFT, PLOT_BOTTOM, PLOT_RIGHT, PLOT_BOTTOM, black);
  draw_line(img, PLOT_LEFT, PLOT_TOP, PLOT_LEFT, PLOT_BOTTOM, black);
  draw_line(img, PLOT_RIGHT, PLOT_TOP, PLOT_RIGHT, PLOT_BOTTOM, black);
}

/* Two pixels thick, so the curve stands out from the grid. */
static void thick_line(pn_image *img, int x0, int y0, int x1, int y1, draw_rgb c) {
  draw_line(img, x0, y0, x1, y1, c);
  draw_line(img, x0, y0 + 1, x1, y1 + 1, c);
}

static void draw_curve(pn_image *img, const axis *ax, const axis *ay, const double *xs,
                       const double *ys, int n) {
  int have = 0, lx = 0, ly = 0;
  for (int i = 0; i < n; i++) {
    if (!point_ok(ax->log, xs[i], ys[i])) continue;
    int px = to_px(ax, axis_value(ax, xs[i])), py = to_py(ay, ys[i]);
    if (have)
      thick_line(img, lx, ly, px, py, curve);
    else
      thick_line(img, px, py, px, py, curve);
    have = 1, lx = px, ly = py;
  }
}

/* Dashed, so it reads as a marker rather than data. */
static void draw_marker(pn_image *img, const axis *ax, double mark_x) {
  if (!point_ok(ax->log, mark_x, 0.0)) return;
  double t = axis_value(ax, mark_x);
  if (t < ax->lo || t > ax->hi) return;
  int px = to_px(ax, t);
  for (int y = PLOT_TOP; y < PLOT_BOTTOM; y += 8) {
    int end = y + 4 < PLOT_BOTTOM ? y + 4 : PLOT_BOTTOM;
    thick_line(img, px, y, px, end, marker);
  }
}

pn_status draw_plot_png(const char *path, const double *xs, const double *ys, int n, int log_x,
                        const char *xlabel, const char *ylabel, double mark_x) {
  axis ax, ay;
  if (n < 1 || !xs || !ys || !fit_axes(&ax, &ay, xs, ys, n, log_x))
    return pn_error(PN_ERR_INVALID, "%s: no points to plot", path);
  pn_image img = {0, 0, NULL};
  PN_TRY(pn_image_alloc(&img, PLOT_W, PLOT_H));
  draw_fill(&img, 0, 0, PLOT_W, PLOT_H, white);
  draw_x_axis(&img, &ax, xlabel);
  draw_y_axis(&img, &ay, ylabel);
  draw_frame(&img);
  draw_marker(&img, &ax, mark_x);
  draw_curve(&img, &ax, &ay, xs, ys, n);
  pn_status s = pn_image_write_png(path, &img);
  pn_image_free(&img);
  return s;
}
