/* Pipelines: one YAML file says everything a run needs (data, model, loss,
 * optimizer, schedule, training, metrics, checkpoints). Loading resolves
 * every feature's parameters against its manifest, applies `--set a.b=v`
 * overrides, and reports errors as FILE:LINE:COLUMN with the nearest valid
 * key. The fields are the resolved pipeline, every default applied. */
#ifndef PLUGNET_PIPELINE_H
#define PLUGNET_PIPELINE_H

#include <stdint.h>
#include <stdio.h>
#include <plugnet/config.h>
#include <plugnet/status.h>
#include <plugnet/tensor.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct pn_pipeline_feature {
  char *name;    /* layers: the node's full name ("layer1.0.conv1") */
  char *feature; /* the `type:`; NULL when the section is absent */
  pn_config *cfg;
  char **inputs; /* layers: the nodes feeding this one ("input": the model's) */
  int n_inputs;
} pn_pipeline_feature;

/* Transforms for one set, in the order written (data.train.transforms ...). */
typedef struct pn_pipeline_chain {
  pn_pipeline_feature *items;
  int n;
} pn_pipeline_chain;

/* Classes reported together by predict (data.groups: {recyclable: [glass, ...]}). */
typedef struct pn_class_group {
  char *name;
  char **classes;
  int n_classes;
} pn_class_group;

/* Parameter groups (train.groups: {body: [conv1, layer1], head: [head]}),
 * in order. A parameter belongs to the first group with a prefix equal to
 * its name or to its start up to a "." ("layer1" holds layer1.0.conv1.weight);
 * parameters no prefix matches join the last group. */
typedef struct pn_param_group {
  char *name;
  char **prefixes;
  int n_prefixes;
} pn_param_group;

/* One fit of a staged run (train.stages), like one fastai fit_one_cycle
 * call: the schedule restarts over the stage's steps; optimizer state
 * carries over from the stage before. */
typedef struct pn_stage {
  int64_t epochs;
  char **freeze; /* names of the groups frozen during the stage */
  int n_freeze;
  /* The peak rate, replacing optimizer.lr: lr_lo for the first group, lr_hi
   * for the last, geometric in between (fastai's slice(lo, hi)); 0: the
   * optimizer's own. One number sets both. */
  double lr_lo, lr_hi;
  int64_t size;        /* the image size from this stage on; 0: as before */
  pn_config *schedule; /* the schedule with this stage's overrides; NULL: the pipeline's */
  /* Replaces optimizer.weight_decay during the stage when has_weight_decay
   * (0 is a valid value, so it cannot mean unset). */
  int has_weight_decay;
  double weight_decay;
} pn_stage;

typedef struct pn_pipeline {
  char *file; /* as given */
  char *name;
  uint64_t seed;
  char *backend; /* reference | cpu | cuda ... */
  int threads;   /* 0: one per physical core */
  /* data */
  pn_pipeline_feature train_data, test_data;
  pn_pipeline_chain train_transforms;
  pn_pipeline_chain valid_transforms; /* data.valid's, else data.test's */
  pn_pipeline_chain test_transforms;
  double valid_split;   /* fraction of train held out, 0 for none */
  uint64_t valid_seed;  /* the split's seed: data.valid.seed, else the pipeline's */
  int valid_stratify;   /* each class split in the same proportion */
  pn_class_group *groups;
  int n_groups;
  int valid_is_test;  /* `valid: test`: the per-epoch table uses the test set */
  int64_t batch;
  int shuffle;
  int data_workers; /* loader threads: 0 one per physical core, 1 none (no effect on results) */
  /* model */
  pn_shape input; /* ndim 0: taken from the training data */
  pn_pipeline_feature *layers; /* the graph, blocks and includes expanded */
  int n_layers;
  char **outputs; /* n_outputs 0: the last layer */
  int n_outputs;
  pn_pipeline_feature loss, optimizer, schedule;
  /* train */
  int64_t epochs; /* with stages: their sum */
  char *progress; /* auto | bar | lines | off */
  pn_param_group *param_groups;
  int n_param_groups;
  pn_stage *stages; /* n_stages 0: one fit of `epochs`, everything trainable */
  int n_stages;
  int train_bn;   /* frozen groups keep batch-norm weights trainable (fastai's train_bn) */
  char **metrics; /* accuracy, error_rate */
  int n_metrics;
  /* checkpoint */
  char *checkpoint;         /* NULL: none */
  int64_t checkpoint_every; /* epochs */
  /* A hash of what decides the numbers (data, model, loss, optimizer,
   * schedule, seed, backend, and the stages and groups of a staged run),
   * stored in checkpoints. */
  uint64_t hash;
} pn_pipeline;

/* Loads and resolves a pipeline. Each override is "a.b.c=value"; a key into
 * a list is an index or a layer's name ("model.layers.fc1.out=256"); a value
 * in [...] or {...} is parsed as YAML. */
pn_status pn_pipeline_load(const char *path, char *const *overrides, int n_overrides,
                           pn_pipeline **out);
void pn_pipeline_free(pn_pipeline *p);
/* Builds the pipeline's model for samples of shape `input` (NULL or ndim 0:
 * the pipeline's model.input, which must then be set). */
struct pn_model;
pn_status pn_pipeline_build_model(const pn_pipeline *p, const pn_shape *input,
                                  struct pn_model **out);
/* The device to run p on: `backend` (NULL: the pipeline's), probed, given
 * the pipeline's thread count, and made the default device. */
pn_status pn_pipeline_device(const pn_pipeline *p, const char *backend, pn_device **out);
/* A chain as transforms (transform.h); size_scale as pn_transforms_new. */
struct pn_transforms;
pn_status pn_pipeline_transforms(const pn_pipeline_chain *c, double size_scale,
                                 struct pn_transforms **out);
/* The index of the group (train.groups) a parameter belongs to, or -1 when
 * the pipeline has no groups. */
int pn_pipeline_param_group(const pn_pipeline *p, const char *param);
/* Whether the stage freezes the named group. */
int pn_stage_freezes(const pn_stage *st, const char *group);
/* Writes the resolved pipeline as YAML, every default shown. */
void pn_pipeline_print(const pn_pipeline *p, FILE *f);

#ifdef __cplusplus
}
#endif
#endif
