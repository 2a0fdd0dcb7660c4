/* Transforms: features of kind "transform", composed in a pipeline's data
 * section, that turn a stored image into a training sample.
 *
 * Geometric transforms (resize, crops, flips, affine) do not touch pixels:
 * each composes a map into the sample's view, and the core resamples the
 * source once, at the end, straight from the (possibly reduced) decoded
 * image. Photometric transforms (lighting, normalize) then run, in the
 * order written, on the resampled C x H x W floats, whose values start in
 * [0, 1]. Randomness comes from a Philox stream keyed by (seed, epoch,
 * sample), so a run is the same on any number of threads. */
#ifndef PLUGNET_TRANSFORM_H
#define PLUGNET_TRANSFORM_H

#include <stdint.h>
#include <plugnet/config.h>
#include <plugnet/image.h>
#include <plugnet/status.h>

#ifdef __cplusplus
extern "C" {
#endif

/* A counter-based random stream (Philox 4x32). */
typedef struct pn_rng {
  uint64_t key, counter;
  uint32_t buf[4];
  int avail;
} pn_rng;
pn_rng pn_rng_make(uint64_t key, uint64_t stream);
double pn_rng_uniform(pn_rng *r); /* [0, 1) */
double pn_rng_range(pn_rng *r, double lo, double hi);

typedef enum pn_padding { PN_PAD_ZEROS = 0, PN_PAD_REFLECTION, PN_PAD_BORDER } pn_padding;

/* Where each output pixel comes from. Coordinates are continuous with pixel
 * centres at +0.5; m maps (x, y, 1) of the output to homogeneous source
 * coordinates (row-major 3x3). */
typedef struct pn_view {
  int src_w, src_h; /* the stored image */
  int w, h;         /* the output so far */
  double m[9];
  pn_padding padding;
} pn_view;

void pn_view_init(pn_view *v, int src_w, int src_h);
/* Makes the output w x h, its point p taken from a·p of the previous output. */
void pn_view_then(pn_view *v, const double a[9], int w, int h);
/* Output pixel (x, y) from the previous output's rectangle (x0, y0, cw, ch),
 * scaled to w x h: the common case of resizes and crops. */
void pn_view_crop(pn_view *v, double x0, double y0, double cw, double ch, int w, int h);

typedef struct pn_transform_iface {
  size_t size;
  pn_status (*create)(const pn_config *cfg, void **ctx);
  /* One of the two, the other NULL. */
  void (*geometry)(void *ctx, pn_view *v, pn_rng *r);
  void (*pixels)(void *ctx, float *chw, int c, int h, int w, pn_rng *r);
  void (*destroy)(void *ctx); /* optional */
  void *reserved[8];
} pn_transform_iface;

/* A chain of transforms, as a pipeline lists them. */
typedef struct pn_transforms pn_transforms;
/* features[i] with cfgs[i]; size_scale != 1 multiplies every `size`
 * parameter (progressive resizing: a stage at a new image size). */
pn_status pn_transforms_new(const char *const *features, const pn_config *const *cfgs, int n,
                            double size_scale, pn_transforms **out);
void pn_transforms_free(pn_transforms *t);
/* The sample's view after every geometric transform. */
void pn_transforms_view(const pn_transforms *t, int src_w, int src_h, pn_rng *r, pn_view *v);
/* The reduce factor (1, 2, 4, 8) a decoder may apply without losing detail
 * the view samples. */
int pn_view_reduce(const pn_view *v);
/* Resamples img (which may be a reduced decode of the view's source)
 * bilinearly into out (3 x v->h x v->w, values in [0, 1]), then runs the
 * photometric transforms. */
void pn_transforms_finish(const pn_transforms *t, const pn_view *v, const pn_image *img,
                          pn_rng *r, float *out);

#ifdef __cplusplus
}
#endif
#endif
