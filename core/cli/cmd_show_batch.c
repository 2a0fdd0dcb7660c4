/* plugnet show-batch PIPELINE: a PNG grid of samples exactly as training
 * sees them (epoch N's shuffled order, its random transforms), each with its
 * class written under it, like fastai's show_batch / plot_multi. The
 * samples come from the loader itself, so they cannot drift from what
 * `plugnet train` feeds the model. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <plugnet/plugnet.h>

#include "cli.h"
#include "draw.h"

#define MAX_SETS  64
#define MAX_SIDE  32 /* rows or columns */
#define PAD       8  /* pixels around and between cells */
#define MIN_SHOWN 64 /* smaller samples are magnified to about this */

static const char command[] = "show-batch";
static const char synopsis[] =
    "PIPELINE [-o grid.png] [--rows 3] [--cols 3] [--valid] [--epoch N] [--stage N] [--set key=value]";

typedef struct args {
  const char *pipeline, *out;
  int rows, cols, valid;
  long long epoch;
  long long stage; /* 1-based; 0: before any stage's resizing */
  char *sets[MAX_SETS];
  int n_sets;
} args;

/* Where the samples come from: a set seen through one chain of transforms. */
typedef struct source {
  pn_dataset *ds;
  pn_transforms *tf;
  int64_t *idx, n; /* NULL: every sample */
  int shuffle;
  const pn_pipeline_chain *chain;
  const char *where; /* the chain's place in the pipeline, for messages */
} source;

/* The samples as host floats, with what the grid needs to show them. */
typedef struct batch {
  float *x;
  int64_t *y;
  int n, h, w;
  int has_norm;
  double mean[3], std[3];
} batch;

static int parse_count(const char *text, long long lo, long long hi, long long *v) {
  char *end = NULL;
  *v = strtoll(text, &end, 10);
  return end != text && *end == '\0' && *v >= lo && *v <= hi;
}

static int parse_option(int argc, char **argv, int *i, args *a) {
  const char *opt = argv[*i];
  long long v = 0;
  if (*i + 1 >= argc) return pn_cli_usage(command, synopsis, "an option lacks its value");
  char *val = argv[++*i];
  if (strcmp(opt, "-o") == 0 || strcmp(opt, "--output") == 0) {
    a->out = val;
  } else if (strcmp(opt, "--rows") == 0 || strcmp(opt, "--cols") == 0) {
    if (!parse_count(val, 1, MAX_SIDE, &v))
      return pn_cli_usage(command, synopsis, "--rows and --cols want 1 to 32");
    *(opt[2] == 'r' ? &a->rows : &a->cols) = (int)v;
  } else if (strcmp(opt, "--epoch") == 0) {
    if (!parse_count(val, 0, 1LL << 40, &a->epoch))
      return pn_cli_usage(command, synopsis, "--epoch wants a number >= 0");
  } else if (strcmp(opt, "--stage") == 0) {
    if (!parse_count(val, 1, 1 << 20, &a->stage))
      return pn_cli_usage(command, synopsis, "--stage wants a stage number from 1");
  } else if (strcmp(opt, "--set") == 0) {
    if (a->n_sets == MAX_SETS) return pn_cli_usage(command, synopsis, "too many --set options");
    a->sets[a->n_sets++] = val;
  } else {
    return pn_cli_usage(command, synopsis, "unknown option '%s'", opt);
  }
  return 0;
}

static int parse_args(int argc, char **argv, args *a) {
  memset(a, 0, sizeof *a);
  a->out = "show_batch.png", a->rows = a->cols = 3;
  for (int i = 1; i < argc; i++) {
    int rc = 0;
    if (strcmp(argv[i], "--valid") == 0)
      a->valid = 1;
    else if (argv[i][0] == '-' && argv[i][1])
      rc = parse_option(argc, argv, &i, a);
    else if (a->pipeline)
      return pn_cli_usage(command, synopsis, "more than one pipeline given");
    else
      a->pipeline = argv[i];
    if (rc) return rc;
  }
  return a->pipeline ? 0 : pn_cli_usage(command, synopsis, "which pipeline?");
}

/* ------------------------------------------------------------ data */

static void source_free(source *s) {
  pn_dataset_close(s->ds);
  pn_transforms_free(s->tf);
  free(s->idx);
}

/* The training split, or the validation one, as `plugnet train` makes them. */
static pn_status split_train(const pn_pipeline *p, source *s, int valid) {
  int64_t *tr = NULL, *va = NULL, n_tr = 0, n_va = 0;
  if (p->valid_split <= 0) {
    if (!valid) return PN_OK;
    return pn_error(PN_ERR_INVALID, "%s: the pipeline has no validation set (data.valid.split)",
                    p->file);
  }
  pn_status st = p->valid_stratify ? pn_split_stratified(s->ds, p->valid_split, p->valid_seed, &tr,
                                                         &n_tr, &va, &n_va)
                                   : pn_split(pn_dataset_get_info(s->ds)->length, p->valid_split,
                                              p->valid_seed, &tr, &n_tr, &va, &n_va);
  if (st != PN_OK) return st;
  s->idx = valid ? va : tr, s->n = valid ? n_va : n_tr;
  free(valid ? tr : va);
  return PN_OK;
}

static pn_status attach(const pn_pipeline *p, source *s, double size_scale) {
  if (!pn_dataset_is_image(s->ds))
    return pn_error(PN_ERR_INVALID, "%s: show-batch draws image sets (such as imagefolder)",
                    p->file);
  if (!s->chain->n)
    return pn_error(PN_ERR_INVALID, "%s: %s has no transforms to make its images one size", p->file,
                    s->where);
  pn_transforms_free(s->tf);
  s->tf = NULL;
  PN_TRY(pn_pipeline_transforms(s->chain, size_scale, &s->tf));
  return pn_dataset_set_transforms(s->ds, s->tf);
}

/* The validation set is the test set under `valid: test`; otherwise the
 * training files, split, through the training or validation transforms. */
static pn_status open_source(const pn_pipeline *p, int valid, source *s) {
  memset(s, 0, sizeof *s);
  int test = valid && p->valid_is_test && p->test_data.feature;
  const pn_pipeline_feature *f = test ? &p->test_data : &p->train_data;
  s->chain = test ? &p->test_transforms : valid ? &p->valid_transforms : &p->train_transforms;
  s->where = test ? "data.test" : valid ? "data.valid" : "data.train";
  s->shuffle = !valid && p->shuffle;
  if (!f->feature) return pn_error(PN_ERR_INVALID, "%s: the pipeline has no data.train", p->file);
  PN_TRY(pn_dataset_open(f->feature, f->cfg, &s->ds));
  if (!test) PN_TRY(split_train(p, s, valid));
  return attach(p, s, 1.0);
}

/* The chain's normalize transform, if any: its statistics undo it. */
static int find_normalize(const pn_pipeline_chain *c, double mean[3], double std[3]) {
  static const double im_mean[3] = {0.485, 0.456, 0.406}, im_std[3] = {0.229, 0.224, 0.225};
  for (int i = c->n - 1; i >= 0; i--) {
    const pn_pipeline_feature *f = &c->items[i];
    if (!f->feature || strcmp(f->feature, "normalize") != 0) continue;
    const char *preset = pn_config_has(f->cfg, "preset") ? pn_config_str(f->cfg, "preset") : NULL;
    if (preset && strcmp(preset, "imagenet") == 0) {
      memcpy(mean, im_mean, sizeof im_mean), memcpy(std, im_std, sizeof im_std);
      return 1;
    }
    int nm = pn_config_floats(f->cfg, "mean", mean, 3),
        ns = pn_config_floats(f->cfg, "std", std, 3);
    if (nm < 1 || ns < 1) return 0;
    for (int k = nm; k < 3; k++) mean[k] = mean[0]; /* one value for every channel */
    for (int k = ns; k < 3; k++) std[k] = std[0];
    return 1;
  }
  return 0;
}

static pn_status copy_out(pn_tensor *x, pn_tensor *y, batch *b) {
  b->n = (int)x->shape[0], b->h = (int)x->shape[2], b->w = (int)x->shape[3];
  b->x = malloc(pn_tensor_nbytes(x));
  b->y = malloc(pn_tensor_nbytes(y) + sizeof *b->y);
  if (!b->x || !b->y) return pn_error(PN_ERR_NOMEM, "out of memory");
  PN_TRY(pn_tensor_read(x, b->x, pn_tensor_nbytes(x)));
  return pn_tensor_read(y, b->y, pn_tensor_nbytes(y));
}

/* The first `count` samples of the epoch: the loader's first batch. */
static pn_status read_batch(const pn_pipeline *p, source *s, int count, int64_t epoch, batch *b) {
  pn_loader *l = NULL;
  pn_tensor *x = NULL, *y = NULL;
  PN_TRY(pn_loader_new(s->ds, s->idx, s->idx ? s->n : 0, count, s->shuffle, p->seed, 0, &l));
  pn_status st = pn_loader_set_workers(l, 1, 0); /* a few samples: no threads to start */
  if (st == PN_OK) {
    pn_loader_start(l, epoch, 0);
    st = pn_loader_next(l, pn_default_device(), &x, &y);
  }
  if (st == PN_OK && !x) st = pn_error(PN_ERR_INVALID, "%s: %s has no samples", p->file, s->where);
  if (st == PN_OK) st = copy_out(x, y, b);
  pn_tensor_unref(x), pn_tensor_unref(y);
  pn_loader_free(l);
  return st;
}

/* The image size stage `stage` (1-based) trains at, as `plugnet train` sets
 * it (progressive resizing); 0: the transforms' own. */
static pn_status stage_size(const pn_pipeline *p, long long stage, int64_t *size) {
  *size = 0;
  if (stage > p->n_stages)
    return pn_error(PN_ERR_INVALID, "%s: --stage %lld, but the pipeline has %d stage%s", p->file,
                    stage, p->n_stages, p->n_stages == 1 ? "" : "s");
  for (long long k = stage - 1; k >= 0 && !*size; k--) *size = p->stages[k].size;
  return PN_OK;
}

/* Reads the batch again with every transform size scaled, as training
 * does, so that the images come out `size` wide. */
static pn_status resize_batch(const args *a, const pn_pipeline *p, source *s, batch *b) {
  int64_t size;
  PN_TRY(stage_size(p, a->stage, &size));
  if (!size || size == b->w) return PN_OK;
  PN_TRY(attach(p, s, (double)size / (double)b->w));
  free(b->x), free(b->y);
  memset(b, 0, sizeof *b);
  return read_batch(p, s, a->rows * a->cols, a->epoch, b);
}

/* ------------------------------------------------------------ grid */

typedef struct layout {
  int rows, cols;
  int zoom, text_scale;
  int cell_w, cell_h, label_h;
  int w, h;
} layout;

static const char *label_of(pn_dataset *ds, const batch *b, int i, char *buf, size_t n) {
  return pn_dataset_class_name(ds, (int)b->y[i], buf, n);
}

/* Cells fit the widest label; a batch smaller than the grid shrinks it. */
static void plan_grid(const args *a, pn_dataset *ds, const batch *b, layout *g) {
  char buf[32];
  int side = b->w > b->h ? b->w : b->h;
  g->cols = a->cols < b->n ? a->cols : b->n;
  g->rows = (b->n + g->cols - 1) / g->cols;
  g->rows = g->rows < a->rows ? g->rows : a->rows;
  g->zoom = side < MIN_SHOWN ? (MIN_SHOWN + side - 1) / side : 1;
  g->text_scale = b->w * g->zoom >= 96 ? 2 : 1;
  g->label_h = (DRAW_GLYPH_H + DRAW_DESCENT) * g->text_scale + 4;
  g->cell_w = b->w * g->zoom;
  for (int i = 0; i < g->rows * g->cols && i < b->n; i++) {
    int tw = draw_text_width(label_of(ds, b, i, buf, sizeof buf), g->text_scale);
    g->cell_w = tw > g->cell_w ? tw : g->cell_w;
  }
  g->cell_h = b->h * g->zoom + g->label_h;
  g->w = g->cols * g->cell_w + (g->cols + 1) * PAD;
  g->h = g->rows * g->cell_h + (g->rows + 1) * PAD;
}

/* Nearest-neighbour magnification, so small samples stay crisp. */
static float *magnify(const float *chw, int h, int w, int zoom) {
  int zh = h * zoom, zw = w * zoom;
  float *out = malloc(sizeof *out * 3 * (size_t)zh * (size_t)zw);
  if (!out) return NULL;
  for (int c = 0; c < 3; c++)
    for (int j = 0; j < zh; j++)
      for (int i = 0; i < zw; i++)
        out[((size_t)c * zh + j) * zw + i] = chw[((size_t)c * h + j / zoom) * w + i / zoom];
  return out;
}

static pn_status draw_cell(pn_image *img, const layout *g, pn_dataset *ds, const batch *b, int i) {
  static const draw_rgb black = {0, 0, 0};
  char buf[32];
  int x0 = PAD + (i % g->cols) * (g->cell_w + PAD), y0 = PAD + (i / g->cols) * (g->cell_h + PAD);
  int sw = b->w * g->zoom, sh = b->h * g->zoom;
  const float *chw = b->x + (size_t)i * 3 * (size_t)b->h * (size_t)b->w;
  float *big = g->zoom > 1 ? magnify(chw, b->h, b->w, g->zoom) : NULL;
  if (g->zoom > 1 && !big) return pn_error(PN_ERR_NOMEM, "out of memory");
  draw_sample(img, x0 + (g->cell_w - sw) / 2, y0, big ? big : chw, sh, sw,
              b->has_norm ? b->mean : NULL, b->has_norm ? b->std : NULL);
  free(big);
  const char *label = label_of(ds, b, i, buf, sizeof buf);
  int tx = x0 + (g->cell_w - draw_text_width(label, g->text_scale)) / 2;
  draw_text(img, tx, y0 + sh + 4, g->text_scale, label, black);
  return PN_OK;
}

static pn_status write_grid(const char *path, const layout *g, pn_dataset *ds, const batch *b) {
  pn_image img = {0, 0, NULL};
  PN_TRY(pn_image_alloc(&img, g->w, g->h));
  draw_fill(&img, 0, 0, g->w, g->h, (draw_rgb){255, 255, 255});
  pn_status s = PN_OK;
  for (int i = 0; i < g->rows * g->cols && i < b->n && s == PN_OK; i++)
    s = draw_cell(&img, g, ds, b, i);
  if (s == PN_OK) s = pn_image_write_png(path, &img);
  pn_image_free(&img);
  return s;
}

static pn_status show_batch(const args *a, const pn_pipeline *p) {
  source src;
  batch b;
  layout g;
  memset(&b, 0, sizeof b);
  pn_status s = open_source(p, a->valid, &src);
  if (s == PN_OK) s = read_batch(p, &src, a->rows * a->cols, a->epoch, &b);
  if (s == PN_OK) s = resize_batch(a, p, &src, &b);
  if (s == PN_OK) {
    b.has_norm = find_normalize(src.chain, b.mean, b.std);
    plan_grid(a, src.ds, &b, &g);
    s = write_grid(a->out, &g, src.ds, &b);
  }
  if (s == PN_OK && b.n < g.rows * g.cols) /* a set smaller than the grid */
    printf("wrote %s (%d samples in %dx%d, %dx%d)\n", a->out, b.n, g.rows, g.cols, b.w, b.h);
  else if (s == PN_OK)
    printf("wrote %s (%dx%d samples, %dx%d)\n", a->out, g.rows, g.cols, b.w, b.h);
  free(b.x), free(b.y);
  source_free(&src);
  return s;
}

int pn_cmd_show_batch(int argc, char **argv) {
  args a;
  pn_pipeline *p = NULL;
  int rc = parse_args(argc, argv, &a);
  if (rc) return rc;
  if (pn_pipeline_load(a.pipeline, a.sets, a.n_sets, &p) != PN_OK) return pn_cli_fail(NULL);
  pn_status s = show_batch(&a, p);
  pn_pipeline_free(p);
  return s == PN_OK ? 0 : pn_cli_fail(NULL);
}
