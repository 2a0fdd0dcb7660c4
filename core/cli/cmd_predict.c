/* plugnet predict PIPELINE --checkpoint F IMAGE...: the top classes of each
 * image, with probabilities, and the pipeline's class groups (data.groups:
 * seed 001's garbage bins). Each image goes through the validation
 * transforms exactly as a validation sample does (core/data.c's read_image),
 * so a prediction here matches what `plugnet eval` measured. The class names
 * and input shape come from the checkpoint, where training saves them, so
 * the training data need not be at hand; older checkpoints take them from
 * the training set. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <plugnet/plugnet.h>

#include "cli.h"

#define MAX_SETS    64
#define NAME_LEN    128
#define MAX_CLASSES 1000000 /* a bound on what a checkpoint may claim */

static const char command[] = "predict";
static const char synopsis[] =
    "PIPELINE --checkpoint F [--top K] [--backend B] [--set key=value] IMAGE...";

typedef struct args {
  const char *pipeline, *checkpoint, *backend;
  int top;
  char *sets[MAX_SETS];
  int n_sets;
  char **images;
  int n_images;
} args;

typedef struct predictor {
  const pn_pipeline *p;
  pn_device *dev;
  pn_transforms *tf; /* the validation transforms, at the trained size */
  pn_model *model;
  int n_classes;
  char (*names)[NAME_LEN];
  int *members; /* the class indices of every group, group after group */
  /* Scratch for one image: a ranking, and each group's probability. */
  int *order;
  double *sums;
} predictor;

static int parse_option(int argc, char **argv, int *i, args *a) {
  const char *opt = argv[*i];
  if (*i + 1 >= argc) return pn_cli_usage(command, synopsis, "an option lacks its value");
  char *val = argv[++*i], *end = NULL;
  if (strcmp(opt, "--checkpoint") == 0) {
    a->checkpoint = val;
  } else if (strcmp(opt, "--backend") == 0) {
    a->backend = val;
  } else if (strcmp(opt, "--top") == 0) {
    long k = strtol(val, &end, 10);
    if (end == val || *end || k < 1 || k > 1000)
      return pn_cli_usage(command, synopsis, "--top wants a number from 1");
    a->top = (int)k;
  } else if (strcmp(opt, "--set") == 0) {
    if (a->n_sets == MAX_SETS) return pn_cli_usage(command, synopsis, "too many --set options");
    a->sets[a->n_sets++] = val;
  } else {
    return pn_cli_usage(command, synopsis, "unknown option '%s'", opt);
  }
  return 0;
}

/* a->images points into a copy the caller frees, even on error. */
static int parse_args(int argc, char **argv, args *a) {
  memset(a, 0, sizeof *a);
  a->top = 3;
  if (!(a->images = calloc((size_t)argc, sizeof *a->images)))
    return pn_cli_usage(command, synopsis, "out of memory");
  for (int i = 1; i < argc; i++) {
    int rc = 0;
    if (argv[i][0] == '-' && argv[i][1])
      rc = parse_option(argc, argv, &i, a);
    else if (!a->pipeline)
      a->pipeline = argv[i];
    else
      a->images[a->n_images++] = argv[i];
    if (rc) return rc;
  }
  if (!a->pipeline) return pn_cli_usage(command, synopsis, "which pipeline?");
  if (!a->checkpoint) return pn_cli_usage(command, synopsis, "which checkpoint? (--checkpoint F)");
  return a->n_images ? 0 : pn_cli_usage(command, synopsis, "which images?");
}

/* ------------------------------------------------------------ setup */

/* The training set, for its class names and the model's input shape (as
 * training built it: sample 0 through the training transforms), when the
 * checkpoint lacks them. An imagefolder only needs its headers read for
 * that, not every image decoded. */
static pn_status open_train(const pn_pipeline *p, pn_dataset **ds, pn_transforms **tf) {
  const pn_pipeline_feature *f = &p->train_data;
  if (!f->feature) return pn_error(PN_ERR_INVALID, "%s: the pipeline has no data.train", p->file);
  pn_config *cfg = pn_config_clone(f->cfg);
  if (!cfg) return pn_error(PN_ERR_NOMEM, "out of memory");
  if (pn_config_has(cfg, "check")) pn_config_set(cfg, "check", "header");
  pn_status s = pn_dataset_open(f->feature, cfg, ds);
  pn_config_free(cfg);
  PN_TRY(s);
  if (!pn_dataset_is_image(*ds))
    return pn_error(PN_ERR_INVALID, "%s: predict classifies images; data.train is not an image set",
                    p->file);
  PN_TRY(pn_pipeline_transforms(&p->train_transforms, 1.0, tf));
  return pn_dataset_set_transforms(*ds, *tf);
}

static pn_status read_names(predictor *pr, pn_dataset *ds) {
  pr->n_classes = pn_dataset_get_info(ds)->n_classes;
  if (pr->n_classes < 1)
    return pn_error(PN_ERR_INVALID, "%s: data.train has no classes", pr->p->file);
  if (!(pr->names = calloc((size_t)pr->n_classes, sizeof *pr->names)))
    return pn_error(PN_ERR_NOMEM, "out of memory");
  for (int k = 0; k < pr->n_classes; k++) {
    char buf[32];
    snprintf(pr->names[k], NAME_LEN, "%s", pn_dataset_class_name(ds, k, buf, sizeof buf));
  }
  return PN_OK;
}

static pn_status from_train_set(predictor *pr, pn_shape *in) {
  pn_dataset *ds = NULL;
  pn_transforms *tf = NULL;
  pn_status s = open_train(pr->p, &ds, &tf);
  if (s == PN_OK) s = read_names(pr, ds);
  if (s == PN_OK) *in = pn_dataset_get_info(ds)->x_shape;
  pn_dataset_close(ds);
  pn_transforms_free(tf);
  return s;
}

static pn_status bad_meta(const char *file, const char *key, const char *want) {
  return pn_error(PN_ERR_PARSE, "%s: __metadata__ '%s' is not %s", file, key, want);
}

/* "classes": a JSON array of names, as training writes it. */
static pn_status names_from_meta(predictor *pr, const char *text, const char *file) {
  const char *want = "a JSON array of class names";
  json_t *a = json_loads(text, 0, NULL);
  size_t n = json_is_array(a) ? json_array_size(a) : 0;
  pn_status s = n > 0 && n <= MAX_CLASSES ? PN_OK : bad_meta(file, "classes", want);
  if (s == PN_OK && !(pr->names = calloc(n, sizeof *pr->names)))
    s = pn_error(PN_ERR_NOMEM, "out of memory");
  for (size_t k = 0; s == PN_OK && k < n; k++) {
    const char *name = json_string_value(json_array_get(a, k));
    if (name)
      snprintf(pr->names[k], NAME_LEN, "%s", name);
    else
      s = bad_meta(file, "classes", want);
  }
  if (s == PN_OK) pr->n_classes = (int)n;
  json_decref(a);
  return s;
}

/* "input_shape": [channels, height, width] of a training sample. */
static pn_status shape_from_meta(const char *text, const char *file, pn_shape *in) {
  const char *want = "[channels, height, width]";
  json_t *a = json_loads(text, 0, NULL);
  pn_status s =
      json_is_array(a) && json_array_size(a) == 3 ? PN_OK : bad_meta(file, "input_shape", want);
  memset(in, 0, sizeof *in);
  in->ndim = 3;
  for (int i = 0; s == PN_OK && i < 3; i++) {
    json_t *d = json_array_get(a, (size_t)i);
    if (json_is_integer(d) && json_integer_value(d) > 0)
      in->dim[i] = json_integer_value(d);
    else
      s = bad_meta(file, "input_shape", want);
  }
  json_decref(a);
  return s;
}

/* What training saved beside the weights; *saved = 0 when the checkpoint
 * predates it (or the training set names no classes). */
static pn_status from_checkpoint(predictor *pr, const pn_tensor_map *m, const char *file,
                                 pn_shape *in, int *saved) {
  const char *classes = pn_tensor_map_meta(m, "classes");
  const char *shape = pn_tensor_map_meta(m, "input_shape");
  *saved = classes && shape;
  if (!*saved) return PN_OK;
  PN_TRY(names_from_meta(pr, classes, file));
  return shape_from_meta(shape, file, in);
}

static int class_index(const predictor *pr, const char *name) {
  for (int k = 0; k < pr->n_classes; k++)
    if (strcmp(pr->names[k], name) == 0) return k;
  return -1;
}

static pn_status unknown_class(const predictor *pr, const pn_class_group *g, const char *name) {
  const char **all = malloc(sizeof *all * (size_t)pr->n_classes);
  const char *near = NULL;
  for (int k = 0; all && k < pr->n_classes; k++) all[k] = pr->names[k];
  if (all) near = pn_suggest(name, all, pr->n_classes);
  pn_status s =
      pn_error(PN_ERR_NOT_FOUND, "%s: data.groups.%s: no class '%s'%s%s%s", pr->p->file, g->name,
               name, near ? " (did you mean '" : "", near ? near : "", near ? "'?)" : "");
  free(all);
  return s;
}

static pn_status resolve_groups(predictor *pr) {
  const pn_pipeline *p = pr->p;
  int total = 0, at = 0;
  for (int g = 0; g < p->n_groups; g++) total += p->groups[g].n_classes;
  int most = pr->n_classes > p->n_groups ? pr->n_classes : p->n_groups;
  pr->members = malloc(sizeof *pr->members * (size_t)(total + 1));
  pr->order = malloc(sizeof *pr->order * (size_t)most);
  pr->sums = malloc(sizeof *pr->sums * (size_t)(p->n_groups + 1));
  if (!pr->members || !pr->order || !pr->sums) return pn_error(PN_ERR_NOMEM, "out of memory");
  for (int g = 0; g < p->n_groups; g++)
    for (int i = 0; i < p->groups[g].n_classes; i++) {
      int k = class_index(pr, p->groups[g].classes[i]);
      if (k < 0) return unknown_class(pr, &p->groups[g], p->groups[g].classes[i]);
      pr->members[at++] = k;
    }
  return PN_OK;
}

/* ------------------------------------------------------------ sizes */

/* The image size of the stage that trained the checkpoint's last epoch (0:
 * the transforms' own), as pn_evaluate picks it. */
static int64_t trained_size(const pn_pipeline *p, const pn_tensor_map *m) {
  const char *text = pn_tensor_map_meta(m, "epoch");
  int64_t done = text ? strtoll(text, NULL, 10) : p->epochs, last = done > 0 ? done - 1 : 0;
  int s = 0;
  for (int64_t first = 0; s < p->n_stages - 1 && first + p->stages[s].epochs <= last; s++)
    first += p->stages[s].epochs;
  for (; s >= 0 && s < p->n_stages; s--)
    if (p->stages[s].size) return p->stages[s].size;
  return 0;
}

/* ------------------------------------------------------------ model */

static pn_status check_outputs(const predictor *pr) {
  pn_shape out = pn_model_output_shape(pr->model);
  if (out.ndim == 1 && out.dim[0] == pr->n_classes) return PN_OK;
  char buf[64];
  return pn_error(PN_ERR_SHAPE,
                  "%s: the model's output shape is %s, not one score for each of the %d "
                  "classes it was trained on",
                  pr->p->file, pn_shape_str(&out, buf, sizeof buf), pr->n_classes);
}

/* The validation transforms, scaled as progressive resizing left them;
 * width0 is the width training images started at. */
static pn_status make_transforms(predictor *pr, const pn_tensor_map *m, int64_t width0) {
  const pn_pipeline *p = pr->p;
  int64_t size = trained_size(p, m);
  double scale = size && width0 ? (double)size / (double)width0 : 1.0;
  if (!p->valid_transforms.n)
    return pn_error(PN_ERR_INVALID,
                    "%s: data.valid (or data.test) has no transforms to size images", p->file);
  return pn_pipeline_transforms(&p->valid_transforms, scale, &pr->tf);
}

static pn_status load_model(predictor *pr, const pn_shape *in, const pn_tensor_map *m,
                            const char *checkpoint) {
  pn_status s = pn_pipeline_build_model(pr->p, pr->p->input.ndim ? &pr->p->input : in, &pr->model);
  if (s == PN_OK) s = check_outputs(pr);
  if (s == PN_OK && (s = pn_model_load_state(pr->model, m, 1)) != PN_OK)
    pn_error_prefix(s, "%s: ", checkpoint);
  if (s == PN_OK) s = make_transforms(pr, m, in->dim[2]);
  if (s == PN_OK) pn_model_set_training(pr->model, 0);
  return s;
}

static pn_status setup(predictor *pr, const args *a) {
  pn_tensor_map *m = NULL;
  pn_shape in;
  int saved = 0;
  PN_TRY(pn_pipeline_device(pr->p, a->backend, &pr->dev));
  PN_TRY(pn_safetensors_load(a->checkpoint, pr->dev, &m));
  pn_status s = from_checkpoint(pr, m, a->checkpoint, &in, &saved);
  if (s == PN_OK && !saved) s = from_train_set(pr, &in);
  if (s == PN_OK) s = resolve_groups(pr);
  if (s == PN_OK) s = load_model(pr, &in, m, a->checkpoint);
  pn_tensor_map_free(m);
  return s;
}

static void predictor_free(predictor *pr) {
  pn_transforms_free(pr->tf);
  pn_model_free(pr->model);
  free(pr->names);
  free(pr->members);
  free(pr->order);
  free(pr->sums);
}

/* ------------------------------------------------------------ one image */

/* As a validation sample: probe, view, decode no finer than needed, resample. */
static pn_status load_sample(const predictor *pr, const char *path, float **x, pn_view *v) {
  int w = 0, h = 0;
  pn_image img = {0, 0, NULL};
  PN_TRY(pn_image_probe(path, &w, &h));
  pn_rng r = pn_rng_make(0, 0);
  pn_transforms_view(pr->tf, w, h, &r, v);
  PN_TRY(pn_image_load(path, pn_view_reduce(v), &img));
  *x = malloc(sizeof **x * 3 * (size_t)v->w * (size_t)v->h);
  if (*x) pn_transforms_finish(pr->tf, v, &img, &r, *x);
  pn_image_free(&img);
  return *x ? PN_OK : pn_error(PN_ERR_NOMEM, "%s: out of memory", path);
}

/* Softmax of the model's scores for one sample (3 x v->h x v->w floats). */
static pn_status forward(const predictor *pr, const float *x, const pn_view *v, double *probs) {
  int64_t shape[4] = {1, 3, v->h, v->w};
  pn_tensor *in = pn_tensor_from_host(pr->dev, PN_F32, 4, shape, x), *y = NULL, *p = NULL;
  float *host = malloc(sizeof *host * (size_t)pr->n_classes);
  int was = pn_set_grad_enabled(0);
  pn_status s = !host ? pn_error(PN_ERR_NOMEM, "out of memory") : in ? PN_OK : PN_ERR_NOMEM;
  if (s == PN_OK) s = pn_model_forward(pr->model, in, &y);
  if (s == PN_OK && !(p = pn_softmax(y, 1))) s = PN_ERR_INTERNAL; /* its message is set */
  pn_set_grad_enabled(was);
  if (s == PN_OK) s = pn_tensor_read(p, host, sizeof *host * (size_t)pr->n_classes);
  for (int k = 0; s == PN_OK && k < pr->n_classes; k++) probs[k] = host[k];
  free(host);
  pn_tensor_unref(in), pn_tensor_unref(y), pn_tensor_unref(p);
  return s;
}

static pn_status classify(const predictor *pr, const char *path, double *probs) {
  float *x = NULL;
  pn_view v;
  PN_TRY(load_sample(pr, path, &x, &v));
  pn_status s = forward(pr, x, &v, probs);
  free(x);
  return s == PN_OK ? PN_OK : pn_error_prefix(s, "%s: ", path);
}

/* The k most probable of probs[0..n), ties in index order. */
static void top_k(const double *probs, int n, int k, int *order) {
  for (int i = 0; i < k; i++) {
    int best = -1;
    for (int c = 0; c < n; c++) {
      int taken = 0;
      for (int j = 0; j < i && !taken; j++) taken = order[j] == c;
      if (!taken && (best < 0 || probs[c] > probs[best])) best = c;
    }
    order[i] = best;
  }
}

static void print_groups(const predictor *pr, const double *probs) {
  const pn_pipeline *p = pr->p;
  double *sums = pr->sums;
  for (int g = 0, at = 0; g < p->n_groups; g++) {
    sums[g] = 0.0;
    for (int i = 0; i < p->groups[g].n_classes; i++) sums[g] += probs[pr->members[at++]];
  }
  top_k(sums, p->n_groups, p->n_groups, pr->order);
  for (int i = 0; i < p->n_groups; i++)
    printf("%s%s %.3f", i ? ", " : " -> ", p->groups[pr->order[i]].name, sums[pr->order[i]]);
}

static void print_prediction(const predictor *pr, const char *path, const double *probs, int top) {
  int k = top < pr->n_classes ? top : pr->n_classes, *order = pr->order;
  top_k(probs, pr->n_classes, k, order);
  printf("%s:", path);
  for (int i = 0; i < k; i++)
    printf("%s %s %.3f", i ? "," : "", pr->names[order[i]], probs[order[i]]);
  print_groups(pr, probs);
  putchar('\n');
}

/* Every image is tried; one that fails gets its line and a non-zero exit. */
static int predict_all(const predictor *pr, const args *a) {
  int failed = 0;
  double *probs = malloc(sizeof *probs * (size_t)pr->n_classes);
  if (!probs) {
    fprintf(stderr, "plugnet: out of memory\n");
    return 1;
  }
  for (int i = 0; i < a->n_images; i++) {
    if (classify(pr, a->images[i], probs) == PN_OK) {
      print_prediction(pr, a->images[i], probs, a->top);
    } else {
      fflush(stdout);
      pn_cli_fail(NULL);
      failed = 1;
    }
  }
  free(probs);
  return failed;
}

int pn_cmd_predict(int argc, char **argv) {
  args a;
  pn_pipeline *p = NULL;
  predictor pr;
  int rc = parse_args(argc, argv, &a);
  if (!rc && pn_pipeline_load(a.pipeline, a.sets, a.n_sets, &p) != PN_OK) rc = pn_cli_fail(NULL);
  if (!rc) {
    memset(&pr, 0, sizeof pr);
    pr.p = p;
    rc = setup(&pr, &a) == PN_OK ? predict_all(&pr, &a) : pn_cli_fail(NULL);
    predictor_free(&pr);
  }
  pn_pipeline_free(p);
  free(a.images);
  return rc;
}
