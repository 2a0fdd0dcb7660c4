/* cli_images DIR: a tiny image-classification task for the shell tests of
 * `plugnet show-batch` and `plugnet predict`: DIR/imgs/CLASS/NN.png (four
 * classes told apart by colour, in three sizes so the transforms matter),
 * DIR/p.yaml (a small CNN pipeline over them with a validation split and
 * class groups), and broken files in DIR/bad/. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <plugnet/plugnet.h>

#define PER_CLASS 12

static const char *const classes[4] = {"glass", "metal", "paper", "trash"};
static const uint8_t colours[4][3] = {{200, 40, 40}, {40, 200, 40}, {40, 40, 200}, {128, 128, 128}};

static uint32_t next_random(uint64_t *s) {
  *s = *s * 6364136223846793005ull + 1442695040888963407ull;
  return (uint32_t)(*s >> 33);
}

static int write_image(const char *path, int k, int w, int h, uint64_t *seed) {
  pn_image img = {0, 0, NULL};
  if (pn_image_alloc(&img, w, h) != PN_OK) return -1;
  for (int i = 0; i < w * h; i++)
    for (int c = 0; c < 3; c++) {
      int v = colours[k][c] + (int)(next_random(seed) % 41) - 20;
      img.data[i * 3 + c] = (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
    }
  pn_status s = pn_image_write_png(path, &img);
  pn_image_free(&img);
  if (s != PN_OK) fprintf(stderr, "cli_images: %s\n", pn_last_error());
  return s == PN_OK ? 0 : -1;
}

static int write_classes(const char *dir) {
  static const int sizes[3][2] = {{20, 16}, {16, 20}, {24, 24}};
  char path[1024];
  uint64_t seed = 42;
  snprintf(path, sizeof path, "%s/imgs", dir);
  mkdir(path, 0755);
  for (int k = 0; k < 4; k++) {
    snprintf(path, sizeof path, "%s/imgs/%s", dir, classes[k]);
    mkdir(path, 0755);
    for (int i = 0; i < PER_CLASS; i++) {
      snprintf(path, sizeof path, "%s/imgs/%s/%02d.png", dir, classes[k], i);
      if (write_image(path, k, sizes[i % 3][0], sizes[i % 3][1], &seed)) return -1;
    }
  }
  return 0;
}

static int write_text(const char *path, const char *text, size_t n) {
  FILE *f = fopen(path, "wb");
  if (!f) return -1;
  size_t done = fwrite(text, 1, n, f);
  return fclose(f) == 0 && done == n ? 0 : -1;
}

/* A PNG cut short, and a text file named like a JPEG. */
static int write_bad(const char *dir) {
  char path[1024], from[1024], buf[4096];
  snprintf(path, sizeof path, "%s/bad", dir);
  mkdir(path, 0755);
  snprintf(from, sizeof from, "%s/imgs/glass/00.png", dir);
  FILE *f = fopen(from, "rb");
  size_t n = f ? fread(buf, 1, sizeof buf, f) : 0;
  if (f) fclose(f);
  snprintf(path, sizeof path, "%s/bad/truncated.png", dir);
  if (n < 100 || write_text(path, buf, n / 2)) return -1;
  snprintf(path, sizeof path, "%s/bad/text.jpg", dir);
  return write_text(path, "this is not an image\n", 21);
}

static int write_pipeline(const char *dir) {
  char path[1024];
  snprintf(path, sizeof path, "%s/p.yaml", dir);
  FILE *f = fopen(path, "w");
  if (!f) return -1;
  fputs("pipeline: cli-images\n"
        "seed: 3\n"
        "backend: cpu\n"
        "data:\n"
        "  train:\n"
        "    type: imagefolder\n"
        "    root: imgs\n"
        "    transforms:\n"
        "      - {type: random_resized_crop, size: 16, scale: [0.5, 1.0]}\n"
        "      - {type: hflip}\n"
        "      - {type: normalize, preset: imagenet}\n"
        "  valid:\n"
        "    split: 0.25\n"
        "    seed: 2\n"
        "    stratify: true\n"
        "    transforms:\n"
        "      - {type: resize, size: 18}\n"
        "      - {type: center_crop, size: 16}\n"
        "      - {type: normalize, preset: imagenet}\n"
        "  groups: {recyclable: [glass, metal, paper], other: [trash]}\n"
        "  batch: 8\n"
        "model:\n"
        "  layers:\n"
        "    - {name: conv1, type: conv2d, out: 8, kernel: 3, padding: 1}\n"
        "    - {name: bn1, type: batch_norm}\n"
        "    - {name: act1, type: relu}\n"
        "    - {name: pool, type: adaptive_avg_pool2d, size: 1}\n"
        "    - {name: flat, type: flatten}\n"
        "    - {name: fc, type: linear, out: 4}\n"
        "loss: {type: cross_entropy}\n"
        "optimizer: {type: adam, lr: 1.0e-2}\n"
        "train: {epochs: 1, progress: off}\n"
        "checkpoint: {path: ck.safetensors}\n",
        f);
  return fclose(f) == 0 ? 0 : -1;
}

int main(int argc, char **argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: cli_images DIR\n");
    return 2;
  }
  if (write_classes(argv[1]) || write_bad(argv[1]) || write_pipeline(argv[1])) {
    fprintf(stderr, "cli_images: could not write the files in %s\n", argv[1]);
    return 1;
  }
  return 0;
}
