/* STUB: being written (issue 6). */
#include <stdlib.h>
#include <plugnet/image.h>

pn_status pn_image_probe(const char *path, int *w, int *h) {
  (void)w, (void)h;
  return pn_error(PN_ERR_UNSUPPORTED, "%s: image decoding is not built yet", path);
}
pn_status pn_image_load(const char *path, int reduce, pn_image *img) {
  (void)reduce, (void)img;
  return pn_error(PN_ERR_UNSUPPORTED, "%s: image decoding is not built yet", path);
}
pn_status pn_image_write_png(const char *path, const pn_image *img) {
  (void)img;
  return pn_error(PN_ERR_UNSUPPORTED, "%s: PNG writing is not built yet", path);
}
pn_status pn_image_alloc(pn_image *img, int w, int h) {
  img->w = w, img->h = h;
  img->data = malloc((size_t)w * (size_t)h * 3);
  return img->data ? PN_OK : PN_ERR_NOMEM;
}
void pn_image_free(pn_image *img) {
  free(img->data);
  img->data = NULL;
}
