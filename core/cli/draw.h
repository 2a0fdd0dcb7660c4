/* Drawing on an RGB pn_image for the CLI's pictures (show-batch grids,
 * lr-find plots): rectangles, lines, a built-in 5x7 font, samples, and a
 * line plot written as PNG. Not library API: the CLI links it in. Every
 * function clips to the canvas, so callers need not. */
#ifndef PLUGNET_CLI_DRAW_H
#define PLUGNET_CLI_DRAW_H

#include <stdint.h>

#include <plugnet/image.h>
#include <plugnet/status.h>

typedef struct draw_rgb {
  uint8_t r, g, b;
} draw_rgb;

#define DRAW_GLYPH_W 5
#define DRAW_GLYPH_H 7
/* g, p, q and y reach this many rows below the others. */
#define DRAW_DESCENT 2
/* A character advances this many pixels (times the scale): glyph + gap. */
#define DRAW_ADVANCE 6

void draw_fill(pn_image *img, int x, int y, int w, int h, draw_rgb c);
void draw_line(pn_image *img, int x0, int y0, int x1, int y1, draw_rgb c);
/* Text with its top-left corner at (x, y), each font pixel a scale x scale
 * square; characters outside ' '..'~' are drawn as '?'. */
void draw_text(pn_image *img, int x, int y, int scale, const char *s, draw_rgb c);
/* The drawn width in pixels (0 for ""); the height is DRAW_GLYPH_H * scale,
 * and (DRAW_GLYPH_H + DRAW_DESCENT) * scale with a descender. */
int draw_text_width(const char *s, int scale);
/* A sample (3 x h x w floats) un-normalised with mean/std (per channel; NULL
 * for none) into the canvas at (x, y), values clamped to [0, 1]. */
void draw_sample(pn_image *img, int x, int y, const float *chw, int h, int w, const double mean[3],
                 const double std[3]);
/* A line plot of ys against xs (log x axis when log_x) with axes, tick
 * labels, axis labels and an optional vertical marker at mark_x (NAN: none),
 * written as PNG. Points that are not finite (or x <= 0 on a log axis) are
 * left out; at least one must remain. */
pn_status draw_plot_png(const char *path, const double *xs, const double *ys, int n, int log_x,
                        const char *xlabel, const char *ylabel, double mark_x);

#endif
