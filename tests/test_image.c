/* JPEG and PNG decoding (core/image.c) and the imagefolder data plugin.
 * Images are written here, JPEGs with libjpeg directly and PNGs with
 * pn_image_write_png or libpng's simplified API, into a temporary folder;
 * broken files are made by cutting or flipping bytes. TrashNet is opened
 * from ../shared/data/trashnet beside the source tree when it is there. */
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <jpeglib.h>
#include <png.h>

#include "testutil.h"

#include <plugnet/data.h>
#include <plugnet/image.h>
#include <plugnet/plugnet.h>

/* ---- making images */

/* A smooth RGB pattern (JPEG keeps smooth images close to exact). */
static pn_image gradient(int w, int h) {
  pn_image img;
  assert_int_equal(pn_image_alloc(&img, w, h), PN_OK);
  for (int y = 0; y < h; y++)
    for (int x = 0; x < w; x++) {
      uint8_t *p = img.data + ((size_t)y * w + x) * 3;
      p[0] = (uint8_t)(x * 255 / (w - 1)), p[1] = (uint8_t)(y * 255 / (h - 1)), p[2] = 100;
    }
  return img;
}

/* Values that differ pixel to pixel, for exact (PNG) round trips. */
static pn_image noise(int w, int h) {
  pn_image img;
  assert_int_equal(pn_image_alloc(&img, w, h), PN_OK);
  uint32_t s = 12345;
  for (size_t i = 0; i < (size_t)w * h * 3; i++)
    img.data[i] = (uint8_t)((s = s * 1103515245u + 12345u) >> 23);
  return img;
}

/* comps: 1 grey, 3 RGB, 4 CMYK (with libjpeg's Adobe marker). */
static void write_jpeg(const char *path, const uint8_t *px, int w, int h, int comps) {
  struct jpeg_compress_struct c;
  struct jpeg_error_mgr e;
  c.err = jpeg_std_error(&e);
  jpeg_create_compress(&c);
  FILE *f = fopen(path, "wb");
  assert_non_null(f);
  jpeg_stdio_dest(&c, f);
  c.image_width = (JDIMENSION)w, c.image_height = (JDIMENSION)h, c.input_components = comps;
  c.in_color_space = comps == 1 ? JCS_GRAYSCALE : comps == 4 ? JCS_CMYK : JCS_RGB;
  jpeg_set_defaults(&c);
  jpeg_set_quality(&c, 95, TRUE);
  jpeg_start_compress(&c, TRUE);
  while (c.next_scanline < c.image_height) {
    JSAMPROW row = (JSAMPROW)(px + (size_t)c.next_scanline * w * comps);
    jpeg_write_scanlines(&c, &row, 1);
  }
  jpeg_finish_compress(&c);
  jpeg_destroy_compress(&c);
  assert_int_equal(fclose(f), 0);
}

static const char *jpeg_file(const char *name, int w, int h) {
  pn_image img = gradient(w, h);
  const char *path = tu_path("%s", name);
  write_jpeg(path, img.data, w, h, 3);
  pn_image_free(&img);
  return path;
}

static const char *png_file(const char *name, int w, int h) {
  pn_image img = gradient(w, h);
  const char *path = tu_path("%s", name);
  assert_int_equal(pn_image_write_png(path, &img), PN_OK);
  pn_image_free(&img);
  return path;
}

/* Through libpng's simplified API, for the formats pn_image_write_png
 * does not write (grey, RGBA, 16-bit, palette). */
static void write_png_format(const char *path, int w, int h, png_uint_32 format, const void *px,
                             const void *colormap, int entries) {
  png_image im;
  memset(&im, 0, sizeof im);
  im.version = PNG_IMAGE_VERSION;
  im.width = (png_uint_32)w, im.height = (png_uint_32)h, im.format = format;
  im.colormap_entries = (png_uint_32)entries;
  if (!png_image_write_to_file(&im, path, 0, px, 0, colormap)) fail_msg("libpng: %s", im.message);
}

/* A copy of src cut to `keep` bytes. */
static void truncated_copy(const char *src, const char *dst, double fraction) {
  size_t n;
  unsigned char *b = (unsigned char *)tu_read_file(src, &n);
  tu_write_file(dst, b, (size_t)(n * fraction));
  free(b);
}

/* Flips a byte of the first IDAT chunk: its CRC when crc_field, else a
 * byte of its compressed data (at `offset`). */
static void corrupt_idat(const char *src, const char *dst, int crc_field, size_t offset) {
  size_t n;
  unsigned char *b = (unsigned char *)tu_read_file(src, &n);
  unsigned char *idat = memmem(b, n, "IDAT", 4);
  assert_non_null(idat);
  size_t len = (size_t)idat[-4] << 24 | (size_t)idat[-3] << 16 | (size_t)idat[-2] << 8 | idat[-1];
  assert_true(offset < len);
  idat[4 + (crc_field ? len : offset)] ^= 0x5a;
  tu_write_file(dst, b, n);
  free(b);
}

static void assert_error_has(pn_status s, const char *a, const char *b) {
  const char *msg = pn_last_error();
  if (s == PN_OK) fail_msg("expected an error mentioning '%s'", a);
  if (!strstr(msg, a) || (b && !strstr(msg, b)))
    fail_msg("error '%s' lacks '%s'%s%s", msg, a, b ? " or " : "", b ? b : "");
}

static int max_diff(const pn_image *a, const pn_image *b) {
  int m = 0;
  for (size_t i = 0; i < (size_t)a->w * a->h * 3; i++) {
    int d = abs(a->data[i] - b->data[i]);
    m = d > m ? d : m;
  }
  return m;
}

/* ---- decoding */

static void test_png_round_trip(void **state) {
  (void)state;
  pn_image img = noise(37, 23), back;
  const char *path = tu_path("noise.png");
  assert_int_equal(pn_image_write_png(path, &img), PN_OK);
  int w = 0, h = 0;
  assert_int_equal(pn_image_probe(path, &w, &h), PN_OK);
  assert_int_equal(w, 37);
  assert_int_equal(h, 23);
  assert_int_equal(pn_image_load(path, 1, &back), PN_OK);
  assert_int_equal(back.w, 37);
  assert_int_equal(back.h, 23);
  assert_memory_equal(back.data, img.data, (size_t)37 * 23 * 3);
  pn_image_free(&img);
  pn_image_free(&back);
}

static void test_png_write_is_atomic(void **state) {
  (void)state;
  pn_image img = noise(8, 8);
  assert_int_equal(mkdir(tu_path("atomic"), 0755), 0);
  const char *path = tu_path("atomic/a.png");
  tu_write_file(path, "old", 3);
  assert_int_equal(pn_image_write_png(path, &img), PN_OK);
  struct stat st;
  assert_int_equal(stat(path, &st), 0);
  assert_true(st.st_size > 8);
  int entries = 0;
  char cmd[600];
  snprintf(cmd, sizeof cmd, "ls -A %s | wc -l", tu_path("atomic"));
  FILE *p = popen(cmd, "r");
  assert_non_null(p);
  assert_int_equal(fscanf(p, "%d", &entries), 1);
  pclose(p);
  assert_int_equal(entries, 1); /* no temporary file left behind */
  assert_error_has(pn_image_write_png(tu_path("no/such/dir.png"), &img), "no/such/dir.png", NULL);
  pn_image_free(&img);
}

static void test_jpeg_round_trip(void **state) {
  (void)state;
  const char *path = jpeg_file("grad.jpg", 64, 48);
  pn_image want = gradient(64, 48), got;
  int w = 0, h = 0;
  assert_int_equal(pn_image_probe(path, &w, &h), PN_OK);
  assert_int_equal(w, 64);
  assert_int_equal(h, 48);
  assert_int_equal(pn_image_load(path, 1, &got), PN_OK);
  assert_int_equal(got.w, 64);
  assert_int_equal(got.h, 48);
  assert_true(max_diff(&got, &want) <= 12);
  pn_image_free(&want);
  pn_image_free(&got);
}

/* libjpeg scales while decoding to ceil(size / reduce). */
static void test_jpeg_reduce(void **state) {
  (void)state;
  const char *path = jpeg_file("reduce.jpg", 100, 75);
  static const int want[4][3] = {{1, 100, 75}, {2, 50, 38}, {4, 25, 19}, {8, 13, 10}};
  for (int i = 0; i < 4; i++) {
    pn_image img;
    assert_int_equal(pn_image_load(path, want[i][0], &img), PN_OK);
    assert_int_equal(img.w, want[i][1]);
    assert_int_equal(img.h, want[i][2]);
    assert_true(abs(img.data[2] - 100) <= 6); /* blue is 100 everywhere */
    pn_image_free(&img);
  }
  pn_image img;
  assert_error_has(pn_image_load(path, 3, &img), "reduce must be 1, 2, 4 or 8", NULL);
}

/* PNG reduces by averaging blocks, the edge blocks partial. */
static void test_png_reduce(void **state) {
  (void)state;
  pn_image src = noise(10, 7), img;
  const char *path = tu_path("reduce.png");
  assert_int_equal(pn_image_write_png(path, &src), PN_OK);
  assert_int_equal(pn_image_load(path, 4, &img), PN_OK);
  assert_int_equal(img.w, 3);
  assert_int_equal(img.h, 2);
  /* Output (2, 1) averages source x 8..9, y 4..6 (a 2x3 block). */
  int sum = 0;
  for (int y = 4; y < 7; y++)
    for (int x = 8; x < 10; x++) sum += src.data[((size_t)y * 10 + x) * 3];
  assert_int_equal(img.data[(1 * 3 + 2) * 3], (sum + 3) / 6);
  pn_image_free(&img);
  assert_int_equal(pn_image_load(path, 2, &img), PN_OK);
  assert_int_equal(img.w, 5);
  assert_int_equal(img.h, 4);
  pn_image_free(&img);
  assert_int_equal(pn_image_load(path, 8, &img), PN_OK);
  assert_int_equal(img.w, 2);
  assert_int_equal(img.h, 1);
  pn_image_free(&img);
  pn_image_free(&src);
}

static void assert_pixel(const pn_image *img, int x, int y, int r, int g, int b, int tol) {
  const uint8_t *p = img->data + ((size_t)y * img->w + x) * 3;
  if (abs(p[0] - r) > tol || abs(p[1] - g) > tol || abs(p[2] - b) > tol)
    fail_msg("pixel (%d, %d) is %d %d %d, expected %d %d %d", x, y, p[0], p[1], p[2], r, g, b);
}

static void test_grey_png(void **state) {
  (void)state;
  uint8_t grey[6] = {0, 50, 100, 150, 200, 255};
  write_png_format(tu_path("grey.png"), 3, 2, PNG_FORMAT_GRAY, grey, NULL, 0);
  pn_image img;
  assert_int_equal(pn_image_load(tu_path("grey.png"), 1, &img), PN_OK);
  for (int i = 0; i < 6; i++) assert_pixel(&img, i % 3, i / 3, grey[i], grey[i], grey[i], 0);
  pn_image_free(&img);
  /* 16-bit samples keep their high byte. */
  uint16_t deep[2] = {0x1234, 0xfe01};
  write_png_format(tu_path("grey16.png"), 2, 1, PNG_FORMAT_LINEAR_Y, deep, NULL, 0);
  assert_int_equal(pn_image_load(tu_path("grey16.png"), 1, &img), PN_OK);
  assert_pixel(&img, 0, 0, 0x12, 0x12, 0x12, 0);
  assert_pixel(&img, 1, 0, 0xfe, 0xfe, 0xfe, 0);
  pn_image_free(&img);
}

/* Alpha is composited on black. */
static void test_rgba_png(void **state) {
  (void)state;
  uint8_t rgba[12] = {200, 100, 50, 255, 200, 100, 50, 0, 200, 100, 50, 128};
  write_png_format(tu_path("rgba.png"), 3, 1, PNG_FORMAT_RGBA, rgba, NULL, 0);
  pn_image img;
  assert_int_equal(pn_image_load(tu_path("rgba.png"), 1, &img), PN_OK);
  assert_int_equal(img.w, 3);
  assert_pixel(&img, 0, 0, 200, 100, 50, 0);
  assert_pixel(&img, 1, 0, 0, 0, 0, 0);
  assert_pixel(&img, 2, 0, 100, 50, 25, 0);
  pn_image_free(&img);
}

static void test_palette_png(void **state) {
  (void)state;
  uint8_t cmap[9] = {255, 0, 0, 0, 255, 0, 10, 20, 30}, idx[4] = {0, 1, 2, 1};
  write_png_format(tu_path("pal.png"), 2, 2, PNG_FORMAT_RGB_COLORMAP, idx, cmap, 3);
  pn_image img;
  assert_int_equal(pn_image_load(tu_path("pal.png"), 1, &img), PN_OK);
  assert_pixel(&img, 0, 0, 255, 0, 0, 0);
  assert_pixel(&img, 1, 0, 0, 255, 0, 0);
  assert_pixel(&img, 0, 1, 10, 20, 30, 0);
  pn_image_free(&img);
}

static void test_grey_and_cmyk_jpeg(void **state) {
  (void)state;
  uint8_t grey[16 * 16], cmyk[16 * 16 * 4];
  memset(grey, 90, sizeof grey);
  /* Inverted (Adobe) CMYK, 255 meaning no ink: full magenta only, so 255 0 255. */
  for (int i = 0; i < 16 * 16; i++)
    cmyk[4 * i] = 255, cmyk[4 * i + 1] = 0, cmyk[4 * i + 2] = 255, cmyk[4 * i + 3] = 255;
  write_jpeg(tu_path("grey.jpg"), grey, 16, 16, 1);
  write_jpeg(tu_path("cmyk.jpg"), cmyk, 16, 16, 4);
  pn_image img;
  assert_int_equal(pn_image_load(tu_path("grey.jpg"), 1, &img), PN_OK);
  assert_pixel(&img, 5, 5, 90, 90, 90, 2);
  pn_image_free(&img);
  assert_int_equal(pn_image_load(tu_path("cmyk.jpg"), 1, &img), PN_OK);
  assert_int_equal(img.w, 16);
  assert_pixel(&img, 5, 5, 255, 0, 255, 3);
  pn_image_free(&img);
}

/* ---- bad input: each a one-line error naming the file */

static void test_truncated_jpeg(void **state) {
  (void)state;
  const char *good = jpeg_file("whole.jpg", 120, 90), *bad = tu_path("cut.jpg");
  truncated_copy(good, bad, 0.5);
  int w = 0, h = 0;
  assert_int_equal(pn_image_probe(bad, &w, &h), PN_OK); /* the header is intact */
  assert_int_equal(w, 120);
  pn_image img = {0, 0, NULL};
  assert_error_has(pn_image_load(bad, 1, &img), bad, "Premature end of JPEG file");
  assert_null(img.data);
  assert_error_has(pn_image_load(bad, 8, &img), bad, "Premature end of JPEG file");
  truncated_copy(good, bad, 0.01); /* inside the header */
  assert_error_has(pn_image_probe(bad, &w, &h), bad, "bad JPEG");
}

static void test_bad_crc_png(void **state) {
  (void)state;
  const char *good = png_file("good.png", 40, 30), *bad = tu_path("crc.png");
  pn_image img = {0, 0, NULL};
  corrupt_idat(good, bad, 1, 0);
  assert_error_has(pn_image_load(bad, 1, &img), bad, "IDAT: CRC error");
  assert_null(img.data);
  /* A flipped data byte: zlib or the CRC check catches it, whichever first. */
  corrupt_idat(good, bad, 0, 20);
  assert_error_has(pn_image_load(bad, 1, &img), bad, "bad PNG");
  truncated_copy(good, bad, 0.6);
  assert_error_has(pn_image_load(bad, 1, &img), bad, "truncated");
}

static void test_not_an_image(void **state) {
  (void)state;
  const char *text = tu_path("notes.jpg"), *empty = tu_path("empty.png"), *bin = tu_path("b.png");
  tu_write_file(text, "version https://git-lfs\n", 24);
  tu_write_file(empty, "", 0);
  tu_write_file(bin, "\x00\x01\x02\x03\xff", 5);
  int w, h;
  pn_image img;
  assert_error_has(pn_image_probe(text, &w, &h), text, "not a JPEG or PNG image");
  assert_error_has(pn_image_load(text, 1, &img), "starts with \"version https://", NULL);
  assert_error_has(pn_image_load(empty, 1, &img), empty, "empty file");
  assert_error_has(pn_image_load(bin, 1, &img), "not a JPEG or PNG image", "00 01 02 03 ff");
  assert_error_has(pn_image_load(tu_path("absent.jpg"), 1, &img), "absent.jpg",
                   "No such file or directory");
  assert_error_has(pn_image_load(tu_tmpdir(), 1, &img), tu_tmpdir(), "Is a directory");
}

/* ---- imagefolder */

/* Runs pn_dataset_open with stderr captured into *log (free it). */
static pn_status open_set(pn_config *cfg, pn_dataset **d, char **log) {
  const char *path = tu_path("stderr.txt");
  fflush(stderr);
  int saved = dup(2), fd = open(path, O_CREAT | O_TRUNC | O_WRONLY, 0644);
  assert_true(saved >= 0 && fd >= 0);
  dup2(fd, 2);
  close(fd);
  pn_status s = pn_dataset_open("imagefolder", cfg, d);
  fflush(stderr);
  dup2(saved, 2);
  close(saved);
  pn_config_free(cfg);
  size_t n;
  *log = tu_read_file(path, &n);
  fputs(*log, stderr); /* still in the test's log */
  return s;
}

static pn_config *folder_cfg(const char *root, const char *more) {
  char pairs[2200];
  snprintf(pairs, sizeof pairs, "root=%s%s%s", root, more ? "," : "", more ? more : "");
  return tu_config("imagefolder", pairs);
}

static const char *make_dir(const char *name) {
  const char *p = tu_path("%s", name);
  assert_int_equal(mkdir(p, 0755), 0);
  return p;
}

static int count_lines(const char *log, const char *needle) {
  int n = 0;
  for (const char *p = log; (p = strstr(p, needle)); p++) n++;
  return n;
}

/* cat: a.jpg b.png; dog: x.jpg; emu: e1.png e2.JPG, plus files to ignore. */
static const char *make_tree(const char *name) {
  char sub[256];
  const char *root = make_dir(name);
  static const char *const files[] = {"cat/b.png", "cat/a.jpg", "dog/x.jpg", "emu/e2.JPG",
                                      "emu/e1.png"};
  for (int i = 0; i < 3; i++) {
    snprintf(sub, sizeof sub, "%s/%s", name, (const char *[]){"cat", "dog", "emu"}[i]);
    make_dir(sub);
  }
  for (int i = 0; i < 5; i++) {
    snprintf(sub, sizeof sub, "%s/%s", name, files[i]);
    if (strstr(files[i], ".png"))
      png_file(sub, 20 + i, 16);
    else
      jpeg_file(sub, 20 + i, 16);
  }
  tu_write_file(tu_path("%s/cat/README.txt", name), "not an image", 12);
  tu_write_file(tu_path("%s/dog/._x.jpg", name), "\x00\x05\x16\x07", 4); /* a macOS resource fork */
  return root;
}

static void assert_sample(pn_dataset *d, int64_t i, const char *root, const char *rel, int y) {
  char want[600];
  int64_t got = -1;
  snprintf(want, sizeof want, "%s/%s", root, rel);
  assert_string_equal(pn_dataset_sample_name(d, i), want);
  assert_int_equal(pn_dataset_target(d, i, &got), PN_OK);
  assert_int_equal(got, y);
}

static void assert_counts(pn_dataset *d, int64_t length, int n_classes) {
  assert_int_equal(pn_dataset_get_info(d)->length, length);
  assert_int_equal(pn_dataset_get_info(d)->n_classes, n_classes);
}

static void test_folder_labels(void **state) {
  (void)state;
  const char *root = make_tree("tree"), *index = tu_path("classes.json");
  char more[600], *log = NULL, buf[16];
  snprintf(more, sizeof more, "class_index=%s", index);
  pn_dataset *d = NULL;
  assert_int_equal(open_set(folder_cfg(root, more), &d, &log), PN_OK);
  assert_int_equal(count_lines(log, "warning"), 0);
  const pn_dataset_info *info = pn_dataset_get_info(d);
  assert_int_equal(info->length, 5);
  assert_int_equal(info->n_classes, 3);
  assert_int_equal(info->x_shape.ndim, 0);
  assert_true(pn_dataset_is_image(d));
  assert_string_equal(pn_dataset_class_name(d, 0, buf, sizeof buf), "cat");
  assert_string_equal(pn_dataset_class_name(d, 2, buf, sizeof buf), "emu");
  assert_sample(d, 0, root, "cat/a.jpg", 0);
  assert_sample(d, 1, root, "cat/b.png", 0);
  assert_sample(d, 2, root, "dog/x.jpg", 1);
  assert_sample(d, 3, root, "emu/e1.png", 2);
  assert_sample(d, 4, root, "emu/e2.JPG", 2);
  size_t n;
  char *json = tu_read_file(index, &n);
  assert_string_equal(json, "{\n    \"0\": \"cat\",\n    \"1\": \"dog\",\n    \"2\": \"emu\"\n}");
  free(json);
  float x[3];
  int64_t idx = 0, y;
  assert_error_has(pn_dataset_read(d, &idx, 1, x, &y), "transforms", NULL);
  pn_dataset_close(d);
  free(log);
}

static void test_folder_classes_param(void **state) {
  (void)state;
  const char *root = make_tree("chosen");
  pn_config *cfg = folder_cfg(root, NULL);
  assert_int_equal(pn_config_set(cfg, "classes", "emu, cat"), PN_OK);
  pn_dataset *d = NULL;
  char *log = NULL, buf[16];
  assert_int_equal(open_set(cfg, &d, &log), PN_OK);
  assert_counts(d, 4, 2);
  assert_string_equal(pn_dataset_class_name(d, 0, buf, sizeof buf), "emu");
  assert_sample(d, 0, root, "cat/a.jpg", 1);
  assert_sample(d, 2, root, "emu/e1.png", 0);
  pn_dataset_close(d);
  free(log);
  cfg = folder_cfg(root, NULL);
  assert_int_equal(pn_config_set(cfg, "classes", "cat,cow"), PN_OK);
  assert_error_has(open_set(cfg, &d, &log), "'cow'", root);
  free(log);
}

/* limit keeps N files spread over the sorted list: here 0 and 2 of 5. */
static void test_folder_limit(void **state) {
  (void)state;
  const char *root = make_tree("limited");
  pn_dataset *d = NULL;
  char *log = NULL;
  assert_int_equal(open_set(folder_cfg(root, "limit=2"), &d, &log), PN_OK);
  assert_counts(d, 2, 3);
  assert_sample(d, 0, root, "cat/a.jpg", 0);
  assert_sample(d, 1, root, "dog/x.jpg", 1);
  pn_dataset_close(d);
  free(log);
}

/* One broken file per class: each skipped with a warning naming it. */
static void test_folder_skips_bad_files(void **state) {
  (void)state;
  const char *root = make_tree("bad");
  char a[300], b[300], c[300], *log = NULL;
  snprintf(a, sizeof a, "%s/cat/z_cut.jpg", root);
  snprintf(b, sizeof b, "%s/dog/crc.png", root);
  snprintf(c, sizeof c, "%s/emu/text.jpg", root);
  truncated_copy(jpeg_file("full.jpg", 64, 64), a, 0.5);
  corrupt_idat(png_file("ok.png", 30, 30), b, 1, 0);
  tu_write_file(c, "hello\n", 6);
  pn_dataset *d = NULL;
  assert_int_equal(open_set(folder_cfg(root, NULL), &d, &log), PN_OK);
  assert_int_equal(pn_dataset_get_info(d)->length, 5);
  assert_int_equal(count_lines(log, "warning: imagefolder: skipped"), 4);
  assert_non_null(strstr(log, a));
  assert_non_null(strstr(log, "Premature end of JPEG file"));
  assert_non_null(strstr(log, "IDAT: CRC error"));
  assert_non_null(strstr(log, "text.jpg: not a JPEG or PNG image"));
  assert_non_null(strstr(log, "skipped 3 of 8 files under"));
  pn_dataset_close(d);
  free(log);
  /* Headers only: the cut JPEG and the bad CRC pass, the text file not. */
  assert_int_equal(open_set(folder_cfg(root, "check=header"), &d, &log), PN_OK);
  assert_int_equal(pn_dataset_get_info(d)->length, 7);
  assert_non_null(strstr(log, "skipped 1 of 8 files"));
  pn_dataset_close(d);
  free(log);
}

static void test_folder_max_aspect(void **state) {
  (void)state;
  const char *root = make_tree("aspect");
  char *log = NULL;
  png_file("aspect/dog/long.png", 100, 10);
  pn_dataset *d = NULL;
  assert_int_equal(open_set(folder_cfg(root, NULL), &d, &log), PN_OK);
  assert_int_equal(pn_dataset_get_info(d)->length, 5);
  assert_non_null(strstr(log, "long.png: aspect ratio 10.00 (100x10) is above max_aspect 4"));
  pn_dataset_close(d);
  free(log);
  assert_int_equal(open_set(folder_cfg(root, "max_aspect=0"), &d, &log), PN_OK);
  assert_int_equal(pn_dataset_get_info(d)->length, 6);
  pn_dataset_close(d);
  free(log);
}

static void test_folder_errors(void **state) {
  (void)state;
  pn_dataset *d = NULL;
  char *log = NULL, want[300];
  const char *root = make_tree("holes");
  make_dir("holes/fox");
  snprintf(want, sizeof want, "%s/fox: this class folder has no images", root);
  assert_error_has(open_set(folder_cfg(root, NULL), &d, &log), want, NULL);
  free(log);
  const char *empty = make_dir("nothing");
  make_dir("nothing/a");
  tu_write_file(tu_path("nothing/a/notes.txt"), "x", 1);
  assert_error_has(open_set(folder_cfg(empty, NULL), &d, &log), empty,
                   "no images found: expected one folder per class holding .jpg/.jpeg/.png files");
  free(log);
  assert_error_has(open_set(folder_cfg(tu_path("absent"), NULL), &d, &log), "absent",
                   "No such file or directory");
  free(log);
  tu_write_file(tu_path("plain"), "x", 1);
  assert_error_has(open_set(folder_cfg(tu_path("plain"), NULL), &d, &log), "not a directory", NULL);
  free(log);
  assert_error_has(open_set(tu_config("imagefolder", NULL), &d, &log), "root", "list");
  free(log);
  assert_null(d);
}

static void test_regex_labels(void **state) {
  (void)state;
  make_dir("flat");
  jpeg_file("flat/cat1.jpg", 16, 16);
  png_file("flat/cat22.png", 16, 16);
  jpeg_file("flat/dog7.jpg", 16, 16);
  jpeg_file("flat/zebra.jpg", 16, 16);
  const char *root = tu_path("flat");
  pn_config *cfg = folder_cfg(root, NULL);
  assert_int_equal(pn_config_set(cfg, "regex", "^([a-z]+)[0-9]+\\.(jpg|png)$"), PN_OK);
  pn_dataset *d = NULL;
  char *log = NULL, buf[16];
  assert_int_equal(open_set(cfg, &d, &log), PN_OK);
  assert_counts(d, 3, 2);
  assert_string_equal(pn_dataset_class_name(d, 1, buf, sizeof buf), "dog");
  assert_sample(d, 1, root, "cat22.png", 0);
  assert_sample(d, 2, root, "dog7.jpg", 1);
  assert_non_null(strstr(log, "zebra.jpg: its name does not match regex"));
  pn_dataset_close(d);
  free(log);
  static const char *const bad[][2] = {{"([a-z", "regex '([a-z'"},
                                       {"^[a-z]+", "needs a group"},
                                       {"^(x+)\\.jpg$", "matches no file name"}};
  for (int i = 0; i < 3; i++) {
    cfg = folder_cfg(root, NULL);
    assert_int_equal(pn_config_set(cfg, "regex", bad[i][0]), PN_OK);
    assert_error_has(open_set(cfg, &d, &log), bad[i][1], NULL);
    free(log);
  }
}

static pn_status open_list(const char *name, const char *text, pn_dataset **d) {
  char pairs[600], *log = NULL;
  tu_write_file(tu_path("%s", name), text, strlen(text));
  snprintf(pairs, sizeof pairs, "list=%s", tu_path("%s", name));
  pn_status s = open_set(tu_config("imagefolder", pairs), d, &log);
  free(log);
  return s;
}

static void test_list_file(void **state) {
  (void)state;
  make_dir("listed");
  jpeg_file("listed/a b.jpg", 16, 16);
  png_file("listed/c.png", 16, 16);
  jpeg_file("listed/d.jpg", 16, 16);
  pn_dataset *d = NULL;
  char buf[16];
  assert_int_equal(open_list("list.txt",
                             "# path label\nlisted/a b.jpg  10\n\nlisted/c.png 9\n"
                             "listed/d.jpg\t2\r\n",
                             &d),
                   PN_OK);
  assert_int_equal(pn_dataset_get_info(d)->length, 3);
  /* Integer labels sort as numbers: 2, 9, 10. */
  assert_string_equal(pn_dataset_class_name(d, 2, buf, sizeof buf), "10");
  assert_sample(d, 0, tu_tmpdir(), "listed/a b.jpg", 2);
  assert_sample(d, 2, tu_tmpdir(), "listed/d.jpg", 0);
  pn_dataset_close(d);
  char want[300];
  snprintf(want, sizeof want, "%s:3: expected 'path label'", tu_path("broken.txt"));
  assert_error_has(open_list("broken.txt", "listed/c.png x\n\nlisted/d.jpg\n", &d), want, NULL);
}

/* ---- TrashNet, when the data is beside the source tree */

static void test_trashnet(void **state) {
  (void)state;
  const char *src = getenv("PN_TOP_SRCDIR");
  char root[1024];
  snprintf(root, sizeof root, "%s/../shared/data/trashnet", src ? src : ".");
  if (access(root, R_OK) != 0) {
    skip();
    return;
  }
  pn_dataset *d = NULL;
  char *log = NULL, buf[32];
  assert_int_equal(open_set(folder_cfg(root, NULL), &d, &log), PN_OK);
  assert_int_equal(count_lines(log, "warning"), 0);
  assert_counts(d, 2527, 6);
  static const char *const names[] = {"cardboard", "glass", "metal", "paper", "plastic", "trash"};
  static const int counts[] = {403, 501, 410, 594, 482, 137};
  int seen[6] = {0};
  for (int k = 0; k < 6; k++)
    assert_string_equal(pn_dataset_class_name(d, k, buf, sizeof buf), names[k]);
  for (int64_t i = 0; i < 2527; i++) {
    int64_t y = -1;
    assert_int_equal(pn_dataset_target(d, i, &y), PN_OK);
    assert_true(y >= 0 && y < 6);
    seen[y]++;
  }
  for (int k = 0; k < 6; k++) assert_int_equal(seen[k], counts[k]);
  pn_dataset_close(d);
  free(log);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_png_round_trip),     cmocka_unit_test(test_png_write_is_atomic),
      cmocka_unit_test(test_jpeg_round_trip),    cmocka_unit_test(test_jpeg_reduce),
      cmocka_unit_test(test_png_reduce),         cmocka_unit_test(test_grey_png),
      cmocka_unit_test(test_rgba_png),           cmocka_unit_test(test_palette_png),
      cmocka_unit_test(test_grey_and_cmyk_jpeg), cmocka_unit_test(test_truncated_jpeg),
      cmocka_unit_test(test_bad_crc_png),        cmocka_unit_test(test_not_an_image),
      cmocka_unit_test(test_folder_labels),      cmocka_unit_test(test_folder_classes_param),
      cmocka_unit_test(test_folder_limit),       cmocka_unit_test(test_folder_skips_bad_files),
      cmocka_unit_test(test_folder_max_aspect),  cmocka_unit_test(test_folder_errors),
      cmocka_unit_test(test_regex_labels),       cmocka_unit_test(test_list_file),
      cmocka_unit_test(test_trashnet),
  };
  return cmocka_run_group_tests(tests, tu_tmpdir_setup, tu_tmpdir_teardown);
}
