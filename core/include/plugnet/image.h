/* Images on the host: 8-bit RGB decoded from JPEG (libjpeg-turbo) or PNG
 * (libpng), grey and RGBA converted to RGB, and PNG written back (batch
 * grids, plots). */
#ifndef PLUGNET_IMAGE_H
#define PLUGNET_IMAGE_H

#include <stdint.h>
#include <plugnet/status.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct pn_image {
  int w, h;      /* pixels */
  uint8_t *data; /* h rows of w RGB triples, malloc'd */
} pn_image;

/* The stored size, from the header only. A file that is neither JPEG nor
 * PNG, or whose header is broken, is an error naming the file. */
pn_status pn_image_probe(const char *path, int *w, int *h);
/* Decodes the whole image as RGB. `reduce` (1, 2, 4 or 8) asks for about
 * 1/reduce of each side when that is cheaper (JPEG scales while decoding;
 * PNG is box-filtered after): callers take the size from img. Truncated or
 * corrupt data is an error naming the file, never a partial image. */
pn_status pn_image_load(const char *path, int reduce, pn_image *img);
/* Atomically (temp file + rename). */
pn_status pn_image_write_png(const char *path, const pn_image *img);
pn_status pn_image_alloc(pn_image *img, int w, int h);
void pn_image_free(pn_image *img);

#ifdef __cplusplus
}
#endif
#endif
