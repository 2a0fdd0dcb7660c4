/* Images: JPEG through libjpeg-turbo and PNG through libpng, decoded to
 * 8-bit RGB. Both libraries report fatal errors by calling back, and their
 * callbacks here longjmp out after recording the message, so a broken file
 * comes back as a pn_status naming it. The setjmp calls live in tiny
 * functions (jpeg_guarded, png_guarded, ...) whose own locals never change
 * after setjmp; all state sits in a job struct reached through a pointer.
 *
 * EXIF orientation is not applied, as PIL's Image.open (and so torchvision's
 * and fastai's loaders) do not apply it either. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jpeglib.h>
#include <jerror.h>
#include <png.h>

#include <plugnet/image.h>

/* A sanity bound on a header's claims, so a corrupt size field cannot ask
 * for terabytes: 2^28 pixels is 16384 x 16384, far above any training photo. */
#define MAX_PIXELS ((int64_t)1 << 28)

typedef enum img_format { FMT_JPEG, FMT_PNG } img_format;

static pn_status io_error(const char *path) {
  return pn_error(PN_ERR_IO, "%s: %s", path, strerror(errno));
}

static pn_status check_size(const char *path, int64_t w, int64_t h) {
  if (w < 1 || h < 1 || w * h > MAX_PIXELS)
    return pn_error(PN_ERR_PARSE, "%s: unusable image size %lldx%lld", path, (long long)w,
                    (long long)h);
  return PN_OK;
}

/* ---- format detection, from the first bytes whatever the file is called */

/* A hint for the "not an image" message: text is quoted (an HTML error page
 * or a Git LFS pointer saved as .jpg is the usual culprit), anything else
 * shown as hex. */
static int is_text(const unsigned char *b, size_t n) {
  for (size_t i = 0; i < n; i++)
    if ((b[i] < 0x20 || b[i] >= 0x7f) && b[i] != '\n' && b[i] != '\r' && b[i] != '\t') return 0;
  return 1;
}

static void describe_start(const unsigned char *b, size_t n, char *out, size_t cap) {
  int text = is_text(b, n);
  size_t used = (size_t)snprintf(out, cap, text ? "it starts with \"" : "it starts with bytes");
  for (size_t i = 0; i < n && used + 8 < cap; i++) {
    const char *esc = b[i] == '\n' ? "\\n" : b[i] == '\r' ? "\\r" : b[i] == '\t' ? "\\t" : NULL;
    if (!text)
      used += (size_t)snprintf(out + used, cap - used, " %02x", b[i]);
    else if (esc)
      used += (size_t)snprintf(out + used, cap - used, "%s", esc);
    else
      out[used++] = (char)b[i], out[used] = '\0';
  }
  if (text) snprintf(out + used, cap - used, "\", text?");
}

static pn_status sniff(FILE *f, const char *path, img_format *fmt) {
  static const unsigned char png_sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
  unsigned char b[16];
  size_t n = fread(b, 1, sizeof b, f);
  if (ferror(f) || fseek(f, 0, SEEK_SET) != 0) return io_error(path);
  if (n == 0) return pn_error(PN_ERR_PARSE, "%s: empty file, not a JPEG or PNG image", path);
  if (n >= 3 && b[0] == 0xff && b[1] == 0xd8 && b[2] == 0xff) {
    *fmt = FMT_JPEG;
    return PN_OK;
  }
  if (n >= 8 && memcmp(b, png_sig, 8) == 0) {
    *fmt = FMT_PNG;
    return PN_OK;
  }
  char what[96];
  describe_start(b, n, what, sizeof what);
  return pn_error(PN_ERR_PARSE, "%s: not a JPEG or PNG image (%s)", path, what);
}

/* ---- JPEG */

typedef struct jpeg_job {
  struct jpeg_decompress_struct cinfo;
  struct jpeg_error_mgr mgr;
  jmp_buf jb;
  char msg[JMSG_LENGTH_MAX];
  FILE *f;
  int reduce, header_only;
  pn_image *img;
  JSAMPLE *cmyk; /* one CMYK scanline, converted to RGB by hand */
  pn_status status;
} jpeg_job;

static void jpeg_fail(j_common_ptr c) {
  jpeg_job *j = c->client_data;
  c->err->format_message(c, j->msg);
  longjmp(j->jb, 1);
}

/* libjpeg only warns about damaged data and fills the gap with grey; a
 * training set must not learn from such half images, so these warnings fail
 * the decode. Extraneous bytes before a marker are left alone: cameras
 * write them often and the pixels are whole (PIL ignores them too). */
static int corrupt_warning(int code) {
  switch (code) {
  case JWRN_JPEG_EOF:
  case JWRN_HIT_MARKER:
  case JWRN_MUST_RESYNC:
  case JWRN_HUFF_BAD_CODE:
  case JWRN_ARITH_BAD_CODE:
  case JWRN_BOGUS_PROGRESSION:
  case JWRN_NOT_SEQUENTIAL:
  case JWRN_TOO_MUCH_DATA: return 1;
  default: return 0;
  }
}

/* Trace messages and benign warnings are dropped rather than printed by
 * libjpeg's default handler, which would write to stderr from any thread. */
static void jpeg_emit(j_common_ptr c, int level) {
  if (level < 0 && corrupt_warning(c->err->msg_code)) jpeg_fail(c);
}

/* Adobe's CMYK JPEGs store inverted values (255 = no ink), which is what
 * Photoshop writes and what PIL assumes when the Adobe marker is present. */
static void cmyk_to_rgb(const JSAMPLE *in, uint8_t *out, int w, int inverted) {
  for (int x = 0; x < w; x++, in += 4, out += 3) {
    int k = inverted ? in[3] : 255 - in[3];
    for (int c = 0; c < 3; c++) {
      int v = inverted ? in[c] : 255 - in[c];
      out[c] = (uint8_t)((v * k + 127) / 255);
    }
  }
}

static void jpeg_read_rows(jpeg_job *j) {
  struct jpeg_decompress_struct *ci = &j->cinfo;
  int w = (int)ci->output_width, cmyk = ci->out_color_space == JCS_CMYK;
  while (ci->output_scanline < ci->output_height) {
    uint8_t *row = j->img->data + (size_t)ci->output_scanline * (size_t)w * 3;
    JSAMPROW dst = cmyk ? j->cmyk : row;
    if (jpeg_read_scanlines(ci, &dst, 1) != 1) ERREXIT(ci, JERR_INPUT_EOF);
    if (cmyk) cmyk_to_rgb(j->cmyk, row, w, ci->saw_Adobe_marker);
  }
}

static void jpeg_run(jpeg_job *j) {
  struct jpeg_decompress_struct *ci = &j->cinfo;
  jpeg_create_decompress(ci);
  ci->client_data = j;
  jpeg_stdio_src(ci, j->f);
  jpeg_read_header(ci, TRUE);
  if (j->header_only) return;
  int cmyk = ci->jpeg_color_space == JCS_CMYK || ci->jpeg_color_space == JCS_YCCK;
  ci->out_color_space = cmyk ? JCS_CMYK : JCS_RGB;
  ci->scale_num = 1;
  ci->scale_denom = (unsigned)j->reduce;
  jpeg_start_decompress(ci);
  int w = (int)ci->output_width, h = (int)ci->output_height;
  /* pn_image_alloc's message (size out of range, out of memory) stays. */
  if ((j->status = pn_image_alloc(j->img, w, h)) != PN_OK) return;
  if (cmyk && !(j->cmyk = malloc((size_t)w * 4))) {
    j->status = pn_error(PN_ERR_NOMEM, "out of memory");
    return;
  }
  jpeg_read_rows(j);
  jpeg_finish_decompress(ci);
}

static int jpeg_guarded(jpeg_job *j) {
  if (setjmp(j->jb)) return 0;
  jpeg_run(j);
  return 1;
}

/* img NULL: the header only, its size into *w, *h. */
static pn_status jpeg_decode(FILE *f, const char *path, int reduce, pn_image *img, int *w, int *h) {
  jpeg_job *j = calloc(1, sizeof *j);
  if (!j) return pn_error(PN_ERR_NOMEM, "%s: out of memory", path);
  j->f = f, j->reduce = reduce, j->img = img, j->header_only = img == NULL;
  j->cinfo.err = jpeg_std_error(&j->mgr);
  j->mgr.error_exit = jpeg_fail;
  j->mgr.emit_message = jpeg_emit;
  j->cinfo.client_data = j;
  pn_status s = PN_OK;
  if (!jpeg_guarded(j))
    s = pn_error(PN_ERR_PARSE, "%s: bad JPEG: %s", path, j->msg);
  else if (j->status != PN_OK)
    s = pn_error_prefix(j->status, "%s: ", path);
  if (s == PN_OK && w) *w = (int)j->cinfo.image_width, *h = (int)j->cinfo.image_height;
  jpeg_destroy_decompress(&j->cinfo);
  free(j->cmyk);
  free(j);
  return s;
}

/* ---- PNG */

typedef struct png_job {
  png_structp png;
  png_infop info;
  char msg[200];
  FILE *f;
  const char *path;
  pn_image *img; /* NULL: the header only */
  uint8_t *rgba; /* the decoded rows when the file has alpha */
  png_bytep *rows;
  int w, h, nomem;
} png_job;

static void png_fail(png_structp p, png_const_charp msg) {
  png_job *j = png_get_error_ptr(p);
  snprintf(j->msg, sizeof j->msg, "%s", msg);
  png_longjmp(p, 1);
}

/* libpng warns about harmless ancillary-chunk quirks (an sRGB profile it
 * knows to be off, say); the pixels are fine, so stay quiet. */
static void png_warn(png_structp p, png_const_charp msg) { (void)p, (void)msg; }

/* libpng's stdio reader says only "Read Error" at the end of the file. */
static void png_read_bytes(png_structp p, png_bytep out, size_t n) {
  png_job *j = png_get_io_ptr(p);
  if (fread(out, 1, n, j->f) == n) return;
  png_error(p, ferror(j->f) ? strerror(errno) : "unexpected end of file (truncated?)");
}

/* Everything arrives as 8-bit RGB or RGBA. 16-bit samples keep their high
 * byte, as PIL does (libpng's simplified API would instead treat them as
 * linear light and gamma-encode them). */
static int png_setup_transforms(png_structp png, png_infop info) {
  int type = png_get_color_type(png, info), depth = png_get_bit_depth(png, info);
  if (type == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(png);
  if (type == PNG_COLOR_TYPE_GRAY && depth < 8) png_set_expand_gray_1_2_4_to_8(png);
  if (png_get_valid(png, info, PNG_INFO_tRNS)) png_set_tRNS_to_alpha(png);
  if (depth == 16) png_set_strip_16(png);
  if (!(type & PNG_COLOR_MASK_COLOR)) png_set_gray_to_rgb(png);
  png_set_interlace_handling(png);
  png_read_update_info(png, info);
  return png_get_channels(png, info);
}

/* Alpha is composited on black: transparent pixels are most often stored
 * as (0, 0, 0, 0), so this agrees with PIL's convert('RGB'), which drops
 * alpha, on both fully opaque and such fully transparent pixels. */
static void composite_on_black(const uint8_t *rgba, uint8_t *rgb, size_t n) {
  for (size_t i = 0; i < n; i++, rgba += 4, rgb += 3)
    for (int c = 0; c < 3; c++) rgb[c] = (uint8_t)((rgba[c] * rgba[3] + 127) / 255);
}

static void png_alloc_rows(png_job *j, int channels) {
  size_t stride = (size_t)j->w * (size_t)channels;
  j->nomem = pn_image_alloc(j->img, j->w, j->h) != PN_OK ||
             !(j->rows = malloc(sizeof *j->rows * (size_t)j->h)) ||
             (channels == 4 && !(j->rgba = malloc(stride * (size_t)j->h)));
  if (j->nomem) png_error(j->png, "out of memory");
  uint8_t *base = channels == 4 ? j->rgba : j->img->data;
  for (int y = 0; y < j->h; y++) j->rows[y] = base + (size_t)y * stride;
}

static void png_run(png_job *j) {
  png_set_read_fn(j->png, j, png_read_bytes);
  png_read_info(j->png, j->info);
  j->w = (int)png_get_image_width(j->png, j->info);
  j->h = (int)png_get_image_height(j->png, j->info);
  if (!j->img) return;
  if ((int64_t)j->w * j->h > MAX_PIXELS) png_error(j->png, "image too large");
  int channels = png_setup_transforms(j->png, j->info);
  if (channels != 3 && channels != 4) png_error(j->png, "unexpected channel count");
  png_alloc_rows(j, channels);
  png_read_image(j->png, j->rows);
  /* Reading on to IEND checks the remaining chunks' CRCs and that the file
   * is whole. */
  png_read_end(j->png, NULL);
  if (channels == 4) composite_on_black(j->rgba, j->img->data, (size_t)j->w * (size_t)j->h);
}

static int png_guarded(png_job *j) {
  if (setjmp(png_jmpbuf(j->png))) return 0;
  png_run(j);
  return 1;
}

static pn_status png_decode(FILE *f, const char *path, pn_image *img, int *w, int *h) {
  png_job j = {.f = f, .path = path, .img = img};
  j.png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &j, png_fail, png_warn);
  if (j.png) j.info = png_create_info_struct(j.png);
  pn_status s = PN_OK;
  if (!j.png || !j.info)
    s = pn_error(PN_ERR_NOMEM, "%s: out of memory", path);
  else if (!png_guarded(&j))
    s = pn_error(j.nomem ? PN_ERR_NOMEM : PN_ERR_PARSE, "%s: bad PNG: %s", path, j.msg);
  if (s == PN_OK && w) *w = j.w, *h = j.h;
  png_destroy_read_struct(&j.png, j.info ? &j.info : NULL, NULL);
  free(j.rows);
  free(j.rgba);
  return s;
}

/* Averages each r x r block (the last row and column of blocks may be
 * partial): PNG has no cheaper reduced decode, but callers still want the
 * smaller image to resample from. */
static pn_status box_reduce(pn_image *img, int r) {
  pn_image out;
  if (r == 1) return PN_OK;
  PN_TRY(pn_image_alloc(&out, (img->w + r - 1) / r, (img->h + r - 1) / r));
  for (int oy = 0; oy < out.h; oy++)
    for (int ox = 0; ox < out.w; ox++) {
      int y1 = oy * r + r < img->h ? oy * r + r : img->h,
          x1 = ox * r + r < img->w ? ox * r + r : img->w;
      int n = (y1 - oy * r) * (x1 - ox * r);
      for (int c = 0; c < 3; c++) {
        int sum = 0;
        for (int y = oy * r; y < y1; y++)
          for (int x = ox * r; x < x1; x++) sum += img->data[((size_t)y * img->w + x) * 3 + c];
        out.data[((size_t)oy * out.w + ox) * 3 + c] = (uint8_t)((sum + n / 2) / n);
      }
    }
  pn_image_free(img);
  *img = out;
  return PN_OK;
}

/* ---- the public functions */

static pn_status open_image(const char *path, FILE **f, img_format *fmt) {
  if (!path) return pn_error(PN_ERR_INVALID, "image: no path");
  if (!(*f = fopen(path, "rb"))) return io_error(path);
  pn_status s = sniff(*f, path, fmt);
  if (s != PN_OK) fclose(*f), *f = NULL;
  return s;
}

pn_status pn_image_probe(const char *path, int *w, int *h) {
  FILE *f = NULL;
  img_format fmt;
  if (!w || !h) return pn_error(PN_ERR_INVALID, "pn_image_probe: w or h is NULL");
  PN_TRY(open_image(path, &f, &fmt));
  pn_status s =
      fmt == FMT_JPEG ? jpeg_decode(f, path, 1, NULL, w, h) : png_decode(f, path, NULL, w, h);
  fclose(f);
  if (s == PN_OK) s = check_size(path, *w, *h);
  return s;
}

pn_status pn_image_load(const char *path, int reduce, pn_image *img) {
  FILE *f = NULL;
  img_format fmt;
  if (!img) return pn_error(PN_ERR_INVALID, "pn_image_load: img is NULL");
  img->w = img->h = 0, img->data = NULL;
  if (reduce != 1 && reduce != 2 && reduce != 4 && reduce != 8)
    return pn_error(PN_ERR_INVALID, "%s: reduce must be 1, 2, 4 or 8, not %d", path, reduce);
  PN_TRY(open_image(path, &f, &fmt));
  pn_status s = fmt == FMT_JPEG ? jpeg_decode(f, path, reduce, img, NULL, NULL)
                                : png_decode(f, path, img, NULL, NULL);
  fclose(f);
  if (s == PN_OK && fmt == FMT_PNG) s = box_reduce(img, reduce);
  if (s != PN_OK) pn_image_free(img);
  return s;
}

/* ---- writing */

typedef struct png_out {
  png_structp png;
  png_infop info;
  FILE *f;
  const pn_image *img;
  char msg[200];
} png_out;

static void png_write_fail(png_structp p, png_const_charp msg) {
  png_out *o = png_get_error_ptr(p);
  snprintf(o->msg, sizeof o->msg, "%s", msg);
  png_longjmp(p, 1);
}

static void png_write_run(png_out *o) {
  const pn_image *img = o->img;
  png_init_io(o->png, o->f);
  png_set_IHDR(o->png, o->info, (png_uint_32)img->w, (png_uint_32)img->h, 8, PNG_COLOR_TYPE_RGB,
               PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
  png_write_info(o->png, o->info);
  for (int y = 0; y < img->h; y++) png_write_row(o->png, img->data + (size_t)y * img->w * 3);
  png_write_end(o->png, o->info);
}

static int png_write_guarded(png_out *o) {
  if (setjmp(png_jmpbuf(o->png))) return 0;
  png_write_run(o);
  return 1;
}

static pn_status encode_png(FILE *f, const char *path, const pn_image *img) {
  png_out o = {.f = f, .img = img};
  o.png = png_create_write_struct(PNG_LIBPNG_VER_STRING, &o, png_write_fail, png_warn);
  if (o.png) o.info = png_create_info_struct(o.png);
  pn_status s = PN_OK;
  if (!o.png || !o.info)
    s = pn_error(PN_ERR_NOMEM, "%s: out of memory", path);
  else if (!png_write_guarded(&o))
    s = pn_error(PN_ERR_IO, "%s: writing PNG: %s", path, o.msg);
  png_destroy_write_struct(&o.png, o.info ? &o.info : NULL);
  return s;
}

/* Written beside the target and renamed over it, so a reader (or a crash)
 * never sees half a file. mkstemp makes the file 0600; images are for
 * looking at, so they get the usual 0644. */
pn_status pn_image_write_png(const char *path, const pn_image *img) {
  if (!path || !img || !img->data || img->w < 1 || img->h < 1)
    return pn_error(PN_ERR_INVALID, "%s: no image to write", path ? path : "pn_image_write_png");
  char *tmp = NULL;
  if (asprintf(&tmp, "%s.tmp-XXXXXX", path) < 0)
    return pn_error(PN_ERR_NOMEM, "%s: out of memory", path);
  int fd = mkstemp(tmp);
  if (fd < 0) {
    pn_status s =
        pn_error(PN_ERR_IO, "%s: cannot create a temporary file: %s", path, strerror(errno));
    free(tmp);
    return s;
  }
  FILE *f = fchmod(fd, 0644) == 0 ? fdopen(fd, "wb") : NULL;
  pn_status s = f ? encode_png(f, path, img) : io_error(path);
  if (!f) close(fd);
  if (f && fclose(f) != 0 && s == PN_OK) s = io_error(path);
  if (s == PN_OK && rename(tmp, path) != 0) s = io_error(path);
  if (s != PN_OK) unlink(tmp);
  free(tmp);
  return s;
}

pn_status pn_image_alloc(pn_image *img, int w, int h) {
  if (!img) return pn_error(PN_ERR_INVALID, "pn_image_alloc: img is NULL");
  img->w = w, img->h = h, img->data = NULL;
  if (w < 1 || h < 1 || (int64_t)w * h > MAX_PIXELS)
    return pn_error(PN_ERR_INVALID, "image size %dx%d is out of range", w, h);
  img->data = malloc((size_t)w * (size_t)h * 3);
  return img->data ? PN_OK : pn_error(PN_ERR_NOMEM, "out of memory for a %dx%d image", w, h);
}

void pn_image_free(pn_image *img) {
  if (!img) return;
  free(img->data);
  img->data = NULL;
}
