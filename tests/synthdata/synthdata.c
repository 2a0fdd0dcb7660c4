/* A data set whose samples are computed from their index, so a test can
 * check any batch against the indices it should hold, make one index fail,
 * and slow reads down so that threads overlap. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <plugnet/config.h>
#include <plugnet/data.h>
#include <plugnet/plugin.h>

typedef struct synth {
  pn_dataset_info info;
  int64_t fail_at, delay_us;
  int classes;
} synth;

static pn_status s_open(const pn_config *cfg, void **out) {
  synth *d = calloc(1, sizeof *d);
  if (!d) return pn_error(PN_ERR_NOMEM, "synthdata: out of memory");
  d->info.length = pn_config_int(cfg, "length");
  d->classes = d->info.n_classes = (int)pn_config_int(cfg, "classes");
  if (!pn_config_bool(cfg, "image")) {
    d->info.x_shape.ndim = 1;
    d->info.x_shape.dim[0] = pn_config_int(cfg, "dim");
  }
  d->fail_at = pn_config_int(cfg, "fail_at");
  d->delay_us = pn_config_int(cfg, "delay_us");
  *out = d;
  return PN_OK;
}

static pn_status s_info(void *ds, pn_dataset_info *info) {
  *info = ((synth *)ds)->info;
  return PN_OK;
}

/* Class k takes k + 1 consecutive places in each run of 1 + 2 + ... + classes,
 * so classes differ in size and a split must round each one. */
static int64_t target(const synth *d, int64_t idx) {
  int64_t r = idx % ((int64_t)d->classes * (d->classes + 1) / 2), k = 0;
  while (r > k) r -= ++k;
  return k;
}

static pn_status visit(const synth *d, int64_t idx) {
  if (d->delay_us) {
    struct timespec ts = {0, (long)d->delay_us * 1000};
    nanosleep(&ts, NULL);
  }
  if (idx == d->fail_at)
    return pn_error(PN_ERR_IO, "synthdata: sample %lld is broken", (long long)idx);
  return PN_OK;
}

static pn_status s_read(void *ds, const int64_t *idx, int64_t n, float *x, int64_t *y) {
  const synth *d = ds;
  int64_t dim = d->info.x_shape.dim[0];
  for (int64_t i = 0; i < n; i++) {
    if (visit(d, idx[i]) != PN_OK) return PN_ERR_IO;
    for (int64_t j = 0; j < dim; j++) x[i * dim + j] = (float)(1000 * idx[i] + j);
    y[i] = target(d, idx[i]);
  }
  return PN_OK;
}

static void s_close(void *ds) { free(ds); }

static void image_size(int64_t idx, int *w, int *h) {
  *w = 16 + (int)(idx % 5);
  *h = 12 + (int)(idx % 3);
}

static pn_status s_probe(void *ds, int64_t idx, int *w, int *h, int64_t *y) {
  image_size(idx, w, h);
  *y = target(ds, idx);
  return PN_OK;
}

static pn_status s_decode(void *ds, int64_t idx, int reduce, pn_image *img) {
  int w, h;
  (void)reduce; /* decoding whole is always allowed */
  PN_TRY(visit(ds, idx));
  image_size(idx, &w, &h);
  PN_TRY(pn_image_alloc(img, w, h));
  for (int i = 0; i < w * h * 3; i++) img->data[i] = (uint8_t)((idx * 7 + i * 13) % 256);
  return PN_OK;
}

static const pn_dataset_iface iface = {.size = sizeof(pn_dataset_iface),
                                       .open = s_open,
                                       .info = s_info,
                                       .read = s_read,
                                       .close = s_close,
                                       .probe = s_probe,
                                       .decode = s_decode};

static pn_status init(pn_plugin_ctx *ctx) {
  return pn_plugin_add_feature(ctx, "data", "synthdata", &iface);
}

PN_PLUGIN_DEFINE("synthdata", "0.1.0", init, NULL);
