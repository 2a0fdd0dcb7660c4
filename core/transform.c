/* STUB: being written (issue 6). */
#include <stdlib.h>
#include <string.h>
#include <plugnet/transform.h>

pn_rng pn_rng_make(uint64_t key, uint64_t stream) {
  pn_rng r = {key, stream << 32, {0}, 0};
  return r;
}
double pn_rng_uniform(pn_rng *r) { (void)r; return 0.5; }
double pn_rng_range(pn_rng *r, double lo, double hi) { return lo + (hi - lo) * pn_rng_uniform(r); }
void pn_view_init(pn_view *v, int src_w, int src_h) {
  memset(v, 0, sizeof *v);
  v->src_w = v->w = src_w, v->src_h = v->h = src_h;
  v->m[0] = v->m[4] = v->m[8] = 1;
}
void pn_view_then(pn_view *v, const double a[9], int w, int h) { (void)a; v->w = w, v->h = h; }
void pn_view_crop(pn_view *v, double x0, double y0, double cw, double ch, int w, int h) {
  (void)x0, (void)y0, (void)cw, (void)ch;
  v->w = w, v->h = h;
}
pn_status pn_transforms_new(const char *const *features, const pn_config *const *cfgs, int n,
                            double size_scale, pn_transforms **out) {
  (void)features, (void)cfgs, (void)n, (void)size_scale, (void)out;
  return pn_error(PN_ERR_UNSUPPORTED, "transforms are not built yet");
}
void pn_transforms_free(pn_transforms *t) { (void)t; }
void pn_transforms_view(const pn_transforms *t, int src_w, int src_h, pn_rng *r, pn_view *v) {
  (void)t, (void)r;
  pn_view_init(v, src_w, src_h);
}
int pn_view_reduce(const pn_view *v) { (void)v; return 1; }
void pn_transforms_finish(const pn_transforms *t, const pn_view *v, const pn_image *img, pn_rng *r,
                          float *out) {
  (void)t, (void)v, (void)img, (void)r, (void)out;
}
