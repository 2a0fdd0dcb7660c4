/* Pipeline files: YAML -> overrides -> validated, resolved pn_pipeline. */
#include <libgen.h>
#include <stdlib.h>
#include <string.h>

#include <plugnet/device.h>
#include <plugnet/model.h>
#include <plugnet/pipeline.h>
#include <plugnet/registry.h>
#include <plugnet/transform.h>

#include "featurecfg.h"
#include "modeldef.h"
#include "yamldoc.h"

#define COUNT(a) ((int)(sizeof(a) / sizeof *(a)))

static const char *const top_keys[] = {"pipeline", "seed",  "backend", "threads",
                                       "data",     "model", "loss",    "optimizer",
                                       "schedule", "train", "metrics", "checkpoint"};
static const char *const data_keys[] = {"train",   "test",   "valid",  "batch",
                                        "shuffle", "groups", "workers"};
static const char *const valid_keys[] = {"split", "seed", "stratify", "transforms"};
static const char *const train_keys[] = {"epochs", "progress", "train_bn", "groups", "stages"};
static const char *const stage_keys[] = {"epochs", "freeze",   "lr",
                                         "size",   "schedule", "weight_decay"};
static const char *const checkpoint_keys[] = {"path", "every"};
static const char *const progress_modes[] = {"auto", "bar", "lines", "off"};
static const char *const metric_names[] = {"accuracy", "error_rate"};

typedef struct ctx {
  pni_ydoc *doc;
  char *dir; /* the pipeline's directory, for relative paths */
  pn_pipeline *p;
  int valid_seed_set;
} ctx;

/* ------------------------------------------------------------ small helpers */

static pn_status nomem(void) { return pn_error(PN_ERR_NOMEM, "out of memory reading a pipeline"); }

static pn_status dup_into(char **dst, const char *src) {
  free(*dst);
  *dst = src ? strdup(src) : NULL;
  return !src || *dst ? PN_OK : nomem();
}

static pn_status opt_int(ctx *c, const pni_ynode *map, const char *key, int64_t min, int64_t *out) {
  const pni_ynode *n = NULL;
  PN_TRY(pni_yopt_scalar(c->doc, map, key, &n));
  if (!n) return PN_OK;
  PN_TRY(pni_yint(c->doc, n, key, out));
  if (*out < min)
    return pni_yerror(c->doc, n, PN_ERR_INVALID, "%s = %lld is below the minimum %lld", key,
                      (long long)*out, (long long)min);
  return PN_OK;
}

static pn_status opt_choice(ctx *c, const pni_ynode *map, const char *key,
                            const char *const *choices, int n_choices, char **out) {
  const pni_ynode *n = NULL;
  PN_TRY(pni_yopt_scalar(c->doc, map, key, &n));
  if (!n) return PN_OK;
  for (int i = 0; i < n_choices; i++)
    if (strcmp(n->text, choices[i]) == 0) return dup_into(out, n->text);
  const char *near = pn_suggest(n->text, choices, n_choices);
  return pni_yerror(c->doc, n, PN_ERR_INVALID, "%s: '%s' is not one of the choices%s%s%s", key,
                    n->text, near ? " (did you mean '" : "", near ? near : "", near ? "'?)" : "");
}

/* `{type: FEATURE, k: v ...}`: the feature must exist and be of `kind`; the
 * other keys (all but `reserved`) are its parameters. */
static pn_status parse_feature(ctx *c, const pni_ynode *node, const char *kind, const char *where,
                               const char *const *reserved, int n_reserved,
                               pn_pipeline_feature *out) {
  pni_feature_src src = {c->doc, c->dir, NULL, NULL};
  return pni_feature_config(&src, node, kind, where, reserved, n_reserved, &out->feature,
                            &out->cfg);
}

static void free_names(char **names, int n) {
  for (int k = 0; k < n; k++) free(names[k]);
  free(names);
}

static void feature_clear(pn_pipeline_feature *f) {
  free_names(f->inputs, f->n_inputs);
  free(f->name);
  free(f->feature);
  pn_config_free(f->cfg);
  memset(f, 0, sizeof *f);
}

/* ------------------------------------------------------------ sections */

static const char *const feature_reserved[] = {"type"};
static const char *const dataset_reserved[] = {"type", "transforms"};

static void chain_clear(pn_pipeline_chain *ch) {
  for (int i = 0; i < ch->n; i++) feature_clear(&ch->items[i]);
  free(ch->items);
  memset(ch, 0, sizeof *ch);
}

/* `transforms: [{type: resize, size: 146}, ...]` beside a dataset. */
static pn_status parse_chain(ctx *c, const pni_ynode *map, const char *where,
                             pn_pipeline_chain *out) {
  const pni_ynode *seq = map && map->kind == PNI_YMAP ? pni_ymap_get(map, "transforms") : NULL;
  if (!seq || pni_yis_null(seq)) return PN_OK;
  char what[64];
  snprintf(what, sizeof what, "%s.transforms", where);
  PN_TRY(pni_yexpect(c->doc, seq, PNI_YSEQ, what));
  if (!(out->items = calloc((size_t)seq->n + 1, sizeof *out->items))) return nomem();
  for (int i = 0; i < seq->n; i++, out->n++) {
    snprintf(what, sizeof what, "%s.transforms[%d]", where, i);
    PN_TRY(parse_feature(c, seq->kids[i], "transform", what, feature_reserved, 1,
                         &out->items[i]));
  }
  return PN_OK;
}

static pn_status parse_names(ctx *c, const pni_ynode *seq, const char *what, char ***out,
                             int *n) {
  PN_TRY(pni_yexpect(c->doc, seq, PNI_YSEQ, what));
  if (!(*out = calloc((size_t)seq->n + 1, sizeof **out))) return nomem();
  for (int i = 0; i < seq->n; i++, (*n)++) {
    PN_TRY(pni_yexpect(c->doc, seq->kids[i], PNI_YSCALAR, what));
    PN_TRY(dup_into(&(*out)[i], seq->kids[i]->text));
  }
  return PN_OK;
}

/* A scalar or a sequence of scalars, as a list of names. */
static pn_status parse_name_or_names(ctx *c, const pni_ynode *n, const char *what, char ***out,
                                     int *count) {
  if (n->kind != PNI_YSCALAR) return parse_names(c, n, what, out, count);
  if (!(*out = calloc(2, sizeof **out))) return nomem();
  *count = 1;
  return dup_into(&(*out)[0], n->text);
}

/* Entry i of a mapping of names to lists of names (`{a: [x, y], b: [z]}`,
 * and `b: z` too when one_ok). */
static pn_status parse_named_list(ctx *c, const pni_ynode *map, int i, const char *what, int one_ok,
                                  char **name, char ***names, int *n) {
  const pni_ynode *v = pni_ymap_value(map, i);
  PN_TRY(dup_into(name, pni_ymap_key(map, i)->text));
  return one_ok ? parse_name_or_names(c, v, what, names, n) : parse_names(c, v, what, names, n);
}

/* `groups: {recyclable: [glass, metal], other: [trash]}`. */
static pn_status parse_groups(ctx *c, const pni_ynode *g) {
  pn_pipeline *p = c->p;
  if (!g || pni_yis_null(g)) return PN_OK;
  PN_TRY(pni_yexpect(c->doc, g, PNI_YMAP, "data.groups"));
  if (!(p->groups = calloc((size_t)g->n + 1, sizeof *p->groups))) return nomem();
  for (int i = 0; i < g->n; i++) {
    /* Counted before it is filled, so that a failure frees what it holds. */
    pn_class_group *grp = &p->groups[p->n_groups++];
    PN_TRY(parse_named_list(c, g, i, "data.groups: a group's classes", 0, &grp->name, &grp->classes,
                            &grp->n_classes));
  }
  return PN_OK;
}

static pn_status parse_valid(ctx *c, const pni_ynode *valid) {
  pn_pipeline *p = c->p;
  const pni_ynode *split = NULL, *seed = NULL, *strat = NULL;
  if (valid->kind != PNI_YMAP)
    return pni_yerror(c->doc, valid, PN_ERR_INVALID,
                      "data.valid must be {split: FRACTION} or 'test' (validate on the test set)");
  PN_TRY(pni_ycheck_keys(c->doc, valid, valid_keys, COUNT(valid_keys), "data.valid"));
  PN_TRY(pni_yopt_scalar(c->doc, valid, "split", &split));
  if (split) PN_TRY(pni_ydouble(c->doc, split, "split", &p->valid_split));
  if (split && !(p->valid_split >= 0.0 && p->valid_split < 1.0))
    return pni_yerror(c->doc, split, PN_ERR_INVALID, "split = %s must be in [0, 1)", split->text);
  PN_TRY(pni_yopt_scalar(c->doc, valid, "seed", &seed));
  int64_t v = 0;
  if (seed) PN_TRY(pni_yint(c->doc, seed, "seed", &v));
  if (seed) p->valid_seed = (uint64_t)v, c->valid_seed_set = 1;
  PN_TRY(pni_yopt_scalar(c->doc, valid, "stratify", &strat));
  if (strat) PN_TRY(pni_ybool(c->doc, strat, "stratify", &p->valid_stratify));
  return parse_chain(c, valid, "data.valid", &p->valid_transforms);
}

static pn_status copy_chain(const pn_pipeline_chain *from, pn_pipeline_chain *to) {
  if (!from->n || to->n) return PN_OK;
  if (!(to->items = calloc((size_t)from->n, sizeof *to->items))) return nomem();
  for (int i = 0; i < from->n; i++, to->n++) {
    const pn_pipeline_feature *f = &from->items[i];
    PN_TRY(dup_into(&to->items[i].feature, f->feature));
    if (!(to->items[i].cfg = pn_config_clone(f->cfg))) return nomem();
  }
  return PN_OK;
}

static pn_status parse_data(ctx *c, const pni_ynode *data) {
  pn_pipeline *p = c->p;
  if (!data) return pni_yerror(c->doc, c->doc->root, PN_ERR_INVALID, "missing section 'data'");
  PN_TRY(pni_yexpect(c->doc, data, PNI_YMAP, "data"));
  PN_TRY(pni_ycheck_keys(c->doc, data, data_keys, COUNT(data_keys), "data"));
  const pni_ynode *train = pni_ymap_get(data, "train"), *test = pni_ymap_get(data, "test");
  if (!train) return pni_yerror(c->doc, data, PN_ERR_INVALID, "data: missing key 'train'");
  PN_TRY(parse_feature(c, train, "data", "data.train", dataset_reserved, 2, &p->train_data));
  PN_TRY(parse_chain(c, train, "data.train", &p->train_transforms));
  if (test && !pni_yis_null(test)) {
    PN_TRY(parse_feature(c, test, "data", "data.test", dataset_reserved, 2, &p->test_data));
    PN_TRY(parse_chain(c, test, "data.test", &p->test_transforms));
  }
  const pni_ynode *valid = pni_ymap_get(data, "valid");
  if (valid && valid->kind == PNI_YSCALAR && strcmp(valid->text, "test") == 0) {
    if (!p->test_data.feature)
      return pni_yerror(c->doc, valid, PN_ERR_INVALID,
                        "data.valid: test, but data.test is not set");
    p->valid_is_test = 1;
  } else if (valid && !pni_yis_null(valid)) {
    PN_TRY(parse_valid(c, valid));
  }
  PN_TRY(copy_chain(&p->test_transforms, &p->valid_transforms));
  PN_TRY(parse_groups(c, pni_ymap_get(data, "groups")));
  PN_TRY(opt_int(c, data, "batch", 1, &p->batch));
  int64_t workers = p->data_workers;
  PN_TRY(opt_int(c, data, "workers", 0, &workers));
  p->data_workers = (int)workers;
  const pni_ynode *sh = NULL;
  PN_TRY(pni_yopt_scalar(c->doc, data, "shuffle", &sh));
  return sh ? pni_ybool(c->doc, sh, "shuffle", &p->shuffle) : PN_OK;
}

/* The model section is a model description (core/modeldef.c): blocks,
 * includes and args are expanded here, so the pipeline holds the flat graph. */
static pn_status take_graph(pn_pipeline *p, pni_mdef *d) {
  if (!(p->layers = calloc((size_t)d->n_nodes, sizeof *p->layers))) return nomem();
  for (int i = 0; i < d->n_nodes; i++) {
    pni_mnode *n = &d->nodes[i];
    p->layers[i] = (pn_pipeline_feature){n->name, n->feature, n->cfg, n->inputs, n->n_inputs};
    memset(n, 0, sizeof *n);
  }
  p->n_layers = d->n_nodes;
  p->outputs = d->outputs;
  p->n_outputs = d->n_outputs;
  d->outputs = NULL;
  d->n_outputs = 0;
  return PN_OK;
}

static pn_status parse_model(ctx *c, const pni_ynode *model) {
  if (!model) return pni_yerror(c->doc, c->doc->root, PN_ERR_INVALID, "missing section 'model'");
  pni_mdef d;
  PN_TRY(pni_mdef_expand(c->doc, model, c->dir, NULL, 0, &d));
  /* A model file's input is only its default: the data decides otherwise. */
  const pni_ynode *in = pni_ymap_get(model, "input");
  if (in && !pni_yis_null(in)) c->p->input = d.input;
  pn_status s = take_graph(c->p, &d);
  pni_mdef_clear(&d);
  return s;
}

static pn_status parse_metrics(ctx *c, const pni_ynode *m) {
  if (!m || pni_yis_null(m)) return PN_OK;
  if (m->kind != PNI_YSEQ)
    return pni_yerror(c->doc, m, PN_ERR_INVALID, "metrics must be a list, e.g. [accuracy]");
  c->p->metrics = calloc((size_t)m->n + 1, sizeof *c->p->metrics);
  if (!c->p->metrics) return nomem();
  for (int i = 0; i < m->n; i++) {
    const pni_ynode *k = m->kids[i];
    int known = k->kind == PNI_YSCALAR &&
                (strcmp(k->text, metric_names[0]) == 0 || strcmp(k->text, metric_names[1]) == 0);
    if (!known) {
      const char *near = k->kind == PNI_YSCALAR ? pn_suggest(k->text, metric_names, 2) : NULL;
      return pni_yerror(c->doc, k, PN_ERR_INVALID,
                        "unknown metric%s%s%s; known: accuracy, error_rate",
                        near ? " (did you mean '" : "", near ? near : "", near ? "'?)" : "");
    }
    PN_TRY(dup_into(&c->p->metrics[c->p->n_metrics++], k->text));
  }
  return PN_OK;
}

/* ------------------------------------------------------------ train: groups and stages */

/* Whether `prefix` is `name` or its start up to a "." ("layer1" of
 * "layer1.0.conv1.weight", not of "layer10.weight"). */
static int prefix_of(const char *prefix, const char *name) {
  size_t n = strlen(prefix);
  return strncmp(prefix, name, n) == 0 && (name[n] == '\0' || name[n] == '.');
}

int pn_pipeline_param_group(const pn_pipeline *p, const char *param) {
  for (int g = 0; g < p->n_param_groups; g++)
    for (int k = 0; k < p->param_groups[g].n_prefixes; k++)
      if (prefix_of(p->param_groups[g].prefixes[k], param)) return g;
  return p->n_param_groups - 1;
}

/* A prefix naming no node (nor a parameter inside one) is a typo: a group
 * that silently holds nothing would leave the layers meant for it trainable. */
static pn_status check_prefix(ctx *c, const pni_ynode *at, const char *prefix) {
  const pn_pipeline *p = c->p;
  for (int i = 0; i < p->n_layers; i++)
    if (prefix_of(prefix, p->layers[i].name) || prefix_of(p->layers[i].name, prefix)) return PN_OK;
  const char **names = calloc((size_t)p->n_layers + 1, sizeof *names);
  if (!names) return nomem();
  for (int i = 0; i < p->n_layers; i++) names[i] = p->layers[i].name;
  const char *near = pn_suggest(prefix, names, p->n_layers);
  pn_status s =
      pni_yerror(c->doc, at, PN_ERR_INVALID, "train.groups: '%s' names no node of the model%s%s%s",
                 prefix, near ? " (did you mean '" : "", near ? near : "", near ? "'?)" : "");
  free(names);
  return s;
}

/* `groups: {body: [conv1, layer1], head: [head]}`, in order. */
static pn_status parse_param_groups(ctx *c, const pni_ynode *g) {
  pn_pipeline *p = c->p;
  if (!g || pni_yis_null(g)) return PN_OK;
  PN_TRY(pni_yexpect(c->doc, g, PNI_YMAP, "train.groups"));
  if (!(p->param_groups = calloc((size_t)g->n + 1, sizeof *p->param_groups))) return nomem();
  for (int i = 0; i < g->n; i++) {
    /* Counted before it is filled, so that a failure frees what it holds. */
    pn_param_group *grp = &p->param_groups[p->n_param_groups++];
    const pni_ynode *v = pni_ymap_value(g, i);
    PN_TRY(parse_named_list(c, g, i, "train.groups: a group's node names", 1, &grp->name,
                            &grp->prefixes, &grp->n_prefixes));
    for (int k = 0; k < grp->n_prefixes; k++)
      PN_TRY(check_prefix(c, v->kind == PNI_YSEQ ? v->kids[k] : v, grp->prefixes[k]));
  }
  return PN_OK;
}

int pn_stage_freezes(const pn_stage *st, const char *group) {
  for (int k = 0; k < st->n_freeze; k++)
    if (strcmp(st->freeze[k], group) == 0) return 1;
  return 0;
}

static int group_index(const pn_pipeline *p, const char *name) {
  for (int g = 0; g < p->n_param_groups; g++)
    if (strcmp(p->param_groups[g].name, name) == 0) return g;
  return -1;
}

static pn_status unknown_group(ctx *c, const pni_ynode *at, const char *where, const char *name) {
  const pn_pipeline *p = c->p;
  if (!p->n_param_groups)
    return pni_yerror(c->doc, at, PN_ERR_INVALID,
                      "%s.freeze: '%s' is not a group: define train.groups first, e.g. "
                      "groups: {body: [conv1, layer1], head: [fc]}",
                      where, name);
  const char **names = calloc((size_t)p->n_param_groups, sizeof *names);
  if (!names) return nomem();
  for (int g = 0; g < p->n_param_groups; g++) names[g] = p->param_groups[g].name;
  const char *near = pn_suggest(name, names, p->n_param_groups);
  if (!near) near = names[0]; /* the nearest valid name, even when far */
  pn_status s = pni_yerror(c->doc, at, PN_ERR_INVALID,
                           "%s.freeze: unknown group '%s' (did you mean '%s'?)", where, name, near);
  free(names);
  return s;
}

static pn_status parse_freeze(ctx *c, const pni_ynode *n, const char *where, pn_stage *st) {
  if (!n || pni_yis_null(n)) return PN_OK;
  PN_TRY(parse_name_or_names(c, n, "a stage's freeze", &st->freeze, &st->n_freeze));
  for (int k = 0; k < st->n_freeze; k++)
    if (group_index(c->p, st->freeze[k]) < 0)
      return unknown_group(c, n->kind == PNI_YSEQ ? n->kids[k] : n, where, st->freeze[k]);
  /* Freezing every group would leave nothing to train (batch-norm aside). */
  int open = 0;
  for (int g = 0; g < c->p->n_param_groups; g++)
    open += !pn_stage_freezes(st, c->p->param_groups[g].name);
  if (st->n_freeze && !open)
    return pni_yerror(c->doc, n, PN_ERR_INVALID,
                      "%s.freeze: every group is frozen: nothing would train", where);
  return PN_OK;
}

/* `lr: 1e-3` or `lr: [1e-6, 1e-4]` (fastai's slice(lo, hi)). */
static pn_status parse_stage_lr(ctx *c, const pni_ynode *n, const char *where, pn_stage *st) {
  char what[64];
  snprintf(what, sizeof what, "%s.lr", where);
  if (!n || pni_yis_null(n)) return PN_OK;
  int pair = n->kind == PNI_YSEQ && n->n == 2 && n->kids[0]->kind == PNI_YSCALAR &&
             n->kids[1]->kind == PNI_YSCALAR;
  if (n->kind == PNI_YSCALAR) {
    PN_TRY(pni_ydouble(c->doc, n, what, &st->lr_hi));
    st->lr_lo = st->lr_hi;
  } else if (pair) {
    PN_TRY(pni_ydouble(c->doc, n->kids[0], what, &st->lr_lo));
    PN_TRY(pni_ydouble(c->doc, n->kids[1], what, &st->lr_hi));
  } else {
    return pni_yerror(c->doc, n, PN_ERR_INVALID,
                      "%s must be a rate or [lo, hi] (lo for the first group, hi for the last)",
                      what);
  }
  if (!(st->lr_lo > 0 && st->lr_hi > 0))
    return pni_yerror(c->doc, n, PN_ERR_INVALID, "%s must be positive", what);
  return PN_OK;
}

static pn_status parse_stage_wd(ctx *c, const pni_ynode *map, const char *where, pn_stage *st) {
  const pni_ynode *n = NULL;
  char what[64];
  snprintf(what, sizeof what, "%s.weight_decay", where);
  PN_TRY(pni_yopt_scalar(c->doc, map, "weight_decay", &n));
  if (!n) return PN_OK;
  PN_TRY(pni_ydouble(c->doc, n, what, &st->weight_decay));
  if (!(st->weight_decay >= 0))
    return pni_yerror(c->doc, n, PN_ERR_INVALID, "%s must not be negative", what);
  st->has_weight_decay = 1;
  return PN_OK;
}

static char *node_text(const pni_ynode *v) {
  return v->kind == PNI_YSEQ ? pni_yseq_text(v) : v->kind == PNI_YSCALAR ? strdup(v->text) : NULL;
}

/* `schedule: {pct_start: 0.8}`: the pipeline's schedule with other values
 * for this stage, checked now so a typo is reported where it was written. */
static pn_status parse_stage_schedule(ctx *c, const pni_ynode *n, const char *where, pn_stage *st) {
  if (!n || pni_yis_null(n)) return PN_OK;
  if (!c->p->schedule.feature)
    return pni_yerror(c->doc, n, PN_ERR_INVALID,
                      "%s.schedule: the pipeline has no schedule to adjust", where);
  PN_TRY(pni_yexpect(c->doc, n, PNI_YMAP, "a stage's schedule"));
  if (!(st->schedule = pn_config_clone(c->p->schedule.cfg))) return nomem();
  for (int i = 0; i < n->n; i++) {
    const pni_ynode *k = pni_ymap_key(n, i), *v = pni_ymap_value(n, i);
    char *text = node_text(v);
    pn_status s = text ? pn_config_set(st->schedule, k->text, text) : PN_ERR_INVALID;
    free(text);
    if (s != PN_OK) {
      char msg[512];
      snprintf(msg, sizeof msg, "%s", v->kind == PNI_YMAP ? "expected a value" : pn_last_error());
      return pni_yerror(c->doc, k, PN_ERR_INVALID, "%s.schedule: %s", where, msg);
    }
  }
  return PN_OK;
}

static pn_status parse_stage(ctx *c, const pni_ynode *n, int i, pn_stage *st) {
  char where[48];
  const pni_ynode *e = NULL;
  snprintf(where, sizeof where, "train.stages[%d]", i);
  PN_TRY(pni_yexpect(c->doc, n, PNI_YMAP, where));
  PN_TRY(pni_ycheck_keys(c->doc, n, stage_keys, COUNT(stage_keys), where));
  PN_TRY(pni_yreq_scalar(c->doc, n, "epochs", where, &e));
  PN_TRY(opt_int(c, n, "epochs", 1, &st->epochs));
  PN_TRY(opt_int(c, n, "size", 1, &st->size));
  PN_TRY(parse_freeze(c, pni_ymap_get(n, "freeze"), where, st));
  PN_TRY(parse_stage_lr(c, pni_ymap_get(n, "lr"), where, st));
  PN_TRY(parse_stage_wd(c, n, where, st));
  return parse_stage_schedule(c, pni_ymap_get(n, "schedule"), where, st);
}

static pn_status parse_stages(ctx *c, const pni_ynode *t) {
  pn_pipeline *p = c->p;
  const pni_ynode *seq = pni_ymap_get(t, "stages"), *ep = pni_ymap_key_node(t, "epochs");
  if (!seq || pni_yis_null(seq)) return PN_OK;
  PN_TRY(pni_yexpect(c->doc, seq, PNI_YSEQ, "train.stages"));
  if (!seq->n) return pni_yerror(c->doc, seq, PN_ERR_INVALID, "train.stages is empty");
  if (ep)
    return pni_yerror(c->doc, ep, PN_ERR_INVALID,
                      "train.epochs: a staged run takes its epochs from its stages; remove it "
                      "or set train.stages.N.epochs");
  if (!(p->stages = calloc((size_t)seq->n, sizeof *p->stages))) return nomem();
  p->epochs = 0;
  for (int i = 0; i < seq->n; i++) {
    p->n_stages++; /* counted first: freed on failure */
    PN_TRY(parse_stage(c, seq->kids[i], i, &p->stages[i]));
    p->epochs += p->stages[i].epochs;
  }
  return PN_OK;
}

static pn_status parse_train(ctx *c, const pni_ynode *t) {
  const pni_ynode *bn = NULL;
  if (!t || pni_yis_null(t)) return PN_OK;
  PN_TRY(pni_yexpect(c->doc, t, PNI_YMAP, "train"));
  PN_TRY(pni_ycheck_keys(c->doc, t, train_keys, COUNT(train_keys), "train"));
  PN_TRY(opt_int(c, t, "epochs", 1, &c->p->epochs));
  PN_TRY(opt_choice(c, t, "progress", progress_modes, COUNT(progress_modes), &c->p->progress));
  PN_TRY(pni_yopt_scalar(c->doc, t, "train_bn", &bn));
  if (bn) PN_TRY(pni_ybool(c->doc, bn, "train_bn", &c->p->train_bn));
  PN_TRY(parse_param_groups(c, pni_ymap_get(t, "groups")));
  return parse_stages(c, t);
}

static pn_status parse_checkpoint(ctx *c, const pni_ynode *k) {
  const pni_ynode *path = NULL;
  if (!k || pni_yis_null(k)) return PN_OK;
  PN_TRY(pni_yexpect(c->doc, k, PNI_YMAP, "checkpoint"));
  PN_TRY(pni_ycheck_keys(c->doc, k, checkpoint_keys, COUNT(checkpoint_keys), "checkpoint"));
  PN_TRY(opt_int(c, k, "every", 1, &c->p->checkpoint_every));
  PN_TRY(pni_yopt_scalar(c->doc, k, "path", &path));
  if (!path) return PN_OK;
  if (path->text[0] == '/') return dup_into(&c->p->checkpoint, path->text);
  if (asprintf(&c->p->checkpoint, "%s/%s", c->dir, path->text) < 0) {
    c->p->checkpoint = NULL;
    return nomem();
  }
  return PN_OK;
}

static pn_status parse_optional_feature(ctx *c, const char *key, const char *kind,
                                        pn_pipeline_feature *out) {
  const pni_ynode *n = pni_ymap_get(c->doc->root, key);
  if (!n || pni_yis_null(n)) return PN_OK;
  return parse_feature(c, n, kind, key, feature_reserved, 1, out);
}

static pn_status parse_top(ctx *c) {
  pn_pipeline *p = c->p;
  const pni_ynode *root = c->doc->root, *n = NULL;
  int64_t v;
  if (!root) return pn_error(PN_ERR_PARSE, "%s: the pipeline is empty", c->doc->file);
  PN_TRY(pni_yexpect(c->doc, root, PNI_YMAP, "a pipeline"));
  PN_TRY(pni_ycheck_keys(c->doc, root, top_keys, COUNT(top_keys), "the pipeline"));
  PN_TRY(pni_yopt_scalar(c->doc, root, "pipeline", &n));
  if (n) PN_TRY(dup_into(&p->name, n->text));
  PN_TRY(pni_yopt_scalar(c->doc, root, "backend", &n));
  if (n) PN_TRY(dup_into(&p->backend, n->text));
  v = (int64_t)p->seed;
  PN_TRY(opt_int(c, root, "seed", 0, &v));
  p->seed = (uint64_t)v;
  v = p->threads;
  PN_TRY(opt_int(c, root, "threads", 0, &v));
  p->threads = (int)v;
  PN_TRY(parse_data(c, pni_ymap_get(root, "data")));
  PN_TRY(parse_model(c, pni_ymap_get(root, "model")));
  PN_TRY(parse_optional_feature(c, "loss", "loss", &p->loss));
  PN_TRY(parse_optional_feature(c, "optimizer", "optimizer", &p->optimizer));
  PN_TRY(parse_optional_feature(c, "schedule", "schedule", &p->schedule));
  PN_TRY(parse_train(c, pni_ymap_get(root, "train")));
  PN_TRY(parse_metrics(c, pni_ymap_get(root, "metrics")));
  return parse_checkpoint(c, pni_ymap_get(root, "checkpoint"));
}

/* ------------------------------------------------------------ overrides */

static pni_ynode *item_named(const pni_ynode *seq, const char *seg) {
  int64_t idx;
  if (pni_text_int(seg, &idx)) return idx >= 0 && idx < seq->n ? seq->kids[idx] : NULL;
  for (int i = 0; i < seq->n; i++) {
    const pni_ynode *name = pni_ymap_get(seq->kids[i], "name");
    if (name && name->kind == PNI_YSCALAR && strcmp(name->text, seg) == 0) return seq->kids[i];
  }
  return NULL;
}

static pni_ynode *parse_value_node(const char *text) {
  if (text[0] != '[' && text[0] != '{') return pni_ynode_scalar(text);
  pni_ydoc *d = NULL;
  if (pni_ydoc_parse("--set", text, strlen(text), &d) != PN_OK) return NULL;
  pni_ynode *r = pni_ydoc_take_root(d);
  pni_ydoc_free(d);
  return r;
}

/* Walks "a.b.c" from the root, creating mappings for missing keys. */
static pn_status apply_override(pni_ydoc *d, const char *arg) {
  const char *eq = strchr(arg, '=');
  if (!eq || eq == arg) return pn_error(PN_ERR_INVALID, "--set '%s': expected KEY.PATH=VALUE", arg);
  char *path = strndup(arg, (size_t)(eq - arg)), *save = NULL;
  if (!path) return nomem();
  if (!d->root && !(d->root = pni_ynode_map())) return free(path), nomem();
  pni_ynode *node = d->root;
  pn_status s = PN_OK;
  char *seg = strtok_r(path, ".", &save);
  while (seg && s == PN_OK) {
    char *next = strtok_r(NULL, ".", &save);
    if (node->kind == PNI_YSEQ) {
      pni_ynode *item = item_named(node, seg);
      if (!item)
        s = pn_error(PN_ERR_NOT_FOUND, "--set %s: no list item '%s'", arg, seg);
      else if (!next)
        s = pn_error(PN_ERR_INVALID, "--set %s: name a key inside item '%s'", arg, seg);
      else
        node = item;
    } else if (node->kind != PNI_YMAP) {
      s = pn_error(PN_ERR_INVALID, "--set %s: '%s' is inside a plain value", arg, seg);
    } else if (!next) {
      pni_ynode *val = parse_value_node(eq + 1);
      s = val ? pni_ymap_put(node, seg, val) : pn_error_prefix(PN_ERR_PARSE, "--set %s: ", arg);
    } else {
      pni_ynode *child = pni_ymap_get(node, seg);
      if (!child && (child = pni_ynode_map()) && pni_ymap_put(node, seg, child) != PN_OK)
        child = NULL;
      if (!child) s = nomem();
      node = child;
    }
    seg = next;
  }
  free(path);
  return s;
}

/* ------------------------------------------------------------ printing */

static void print_text(FILE *f, const char *s) {
  int plain = s[0] != '\0' && strcspn(s, ":,[]{}#&*!|>'\"%@` ") == strlen(s);
  if (plain) {
    fputs(s, f);
    return;
  }
  fputc('"', f);
  for (; *s; s++) {
    if (*s == '"' || *s == '\\') fputc('\\', f);
    fputc(*s, f);
  }
  fputc('"', f);
}

/* A node's inputs, unless it takes just the node before it (`prev`). */
static void print_inputs(FILE *f, const pn_pipeline_feature *x, const char *prev) {
  if (x->n_inputs == 0 || (x->n_inputs == 1 && strcmp(x->inputs[0], prev) == 0)) return;
  fputs(", inputs: [", f);
  for (int i = 0; i < x->n_inputs; i++) fprintf(f, "%s%s", i ? ", " : "", x->inputs[i]);
  fputc(']', f);
}

static void print_feature(FILE *f, const pn_pipeline_feature *x, const char *name,
                          const char *prev);

static void print_chain(FILE *f, const char *indent, const pn_pipeline_chain *ch) {
  if (!ch->n) return;
  fprintf(f, "%stransforms:\n", indent);
  for (int i = 0; i < ch->n; i++) {
    fprintf(f, "%s  - ", indent);
    print_feature(f, &ch->items[i], NULL, NULL);
  }
}

static void print_groups(FILE *f, const pn_pipeline *p) {
  if (!p->n_groups) return;
  fputs("  groups:\n", f);
  for (int i = 0; i < p->n_groups; i++) {
    fprintf(f, "    %s: [", p->groups[i].name);
    for (int k = 0; k < p->groups[i].n_classes; k++)
      fprintf(f, "%s%s", k ? ", " : "", p->groups[i].classes[k]);
    fputs("]\n", f);
  }
}

static void print_feature(FILE *f, const pn_pipeline_feature *x, const char *name,
                          const char *prev) {
  const pn_feature_info *info = pn_config_feature(x->cfg);
  fputc('{', f);
  if (name) fprintf(f, "name: %s, ", name);
  fprintf(f, "type: %s", x->feature);
  if (prev) print_inputs(f, x, prev);
  for (int i = 0; i < info->n_params; i++) {
    const char *v = pn_config_text(x->cfg, info->params[i].name);
    if (!v) continue;
    fprintf(f, ", %s: ", info->params[i].name);
    if (info->params[i].type == PN_PARAM_INTS || info->params[i].type == PN_PARAM_FLOATS)
      fputs(v, f);
    else
      print_text(f, v);
  }
  fputs("}\n", f);
}

/* What decides the numbers: everything but train, metrics and checkpoint. */
static void print_model_part(const pn_pipeline *p, FILE *f) {
  fprintf(f, "seed: %llu\nbackend: %s\nthreads: %d\ndata:\n  train: ", (unsigned long long)p->seed,
          p->backend, p->threads);
  print_feature(f, &p->train_data, NULL, NULL);
  print_chain(f, "    ", &p->train_transforms);
  fputs("  test: ", f);
  if (p->test_data.feature)
    print_feature(f, &p->test_data, NULL, NULL);
  else
    fputs("~\n", f);
  print_chain(f, "    ", &p->test_transforms);
  if (p->valid_is_test)
    fputs("  valid: test\n", f);
  else
    fprintf(f, "  valid:\n    split: %g\n    seed: %llu\n    stratify: %s\n", p->valid_split,
            (unsigned long long)p->valid_seed, p->valid_stratify ? "true" : "false");
  if (!p->valid_is_test) print_chain(f, "    ", &p->valid_transforms);
  print_groups(f, p);
  fprintf(f, "  batch: %lld\n  shuffle: %s\n  workers: %d%s\nmodel:\n  input: ",
          (long long)p->batch, p->shuffle ? "true" : "false", p->data_workers,
          p->data_workers == 0 ? "  # one per physical core" : "");
  if (p->input.ndim == 0) fputs("~  # from the data\n", f);
  for (int i = 0; i < p->input.ndim; i++)
    fprintf(f, "%s%lld%s", i ? ", " : "[", (long long)p->input.dim[i],
            i + 1 == p->input.ndim ? "]\n" : "");
  fputs("  layers:\n", f);
  for (int i = 0; i < p->n_layers; i++) {
    fputs("    - ", f);
    print_feature(f, &p->layers[i], p->layers[i].name, i ? p->layers[i - 1].name : "input");
  }
  if (p->n_outputs) fputs("  outputs: [", f);
  for (int i = 0; i < p->n_outputs; i++)
    fprintf(f, "%s%s", p->outputs[i], i + 1 < p->n_outputs ? ", " : "]\n");
  const pn_pipeline_feature *secs[3] = {&p->loss, &p->optimizer, &p->schedule};
  const char *names[3] = {"loss", "optimizer", "schedule"};
  for (int i = 0; i < 3; i++) {
    fprintf(f, "%s: ", names[i]);
    if (secs[i]->feature)
      print_feature(f, secs[i], NULL, NULL);
    else
      fputs("~\n", f);
  }
}

static void print_names(FILE *f, char *const *names, int n) {
  fputc('[', f);
  for (int i = 0; i < n; i++) {
    if (i) fputs(", ", f);
    print_text(f, names[i]);
  }
  fputc(']', f);
}

/* The stage's schedule values that differ from the pipeline's. */
static void print_stage_schedule(FILE *f, const pn_pipeline *p, const pn_config *cfg) {
  const pn_feature_info *info = pn_config_feature(cfg);
  int n = 0;
  fputs(", schedule: {", f);
  for (int i = 0; i < info->n_params; i++) {
    const char *key = info->params[i].name, *v = pn_config_text(cfg, key);
    const char *base = pn_config_text(p->schedule.cfg, key);
    if (!v || (base && strcmp(v, base) == 0)) continue;
    fprintf(f, "%s%s: %s", n++ ? ", " : "", key, v);
  }
  fputc('}', f);
}

static void print_stage(FILE *f, const pn_pipeline *p, const pn_stage *st) {
  fprintf(f, "    - {epochs: %lld", (long long)st->epochs);
  if (st->n_freeze) fputs(", freeze: ", f), print_names(f, st->freeze, st->n_freeze);
  if (st->lr_hi > 0 && st->lr_lo == st->lr_hi) fprintf(f, ", lr: %.9g", st->lr_hi);
  if (st->lr_hi > 0 && st->lr_lo != st->lr_hi)
    fprintf(f, ", lr: [%.9g, %.9g]", st->lr_lo, st->lr_hi);
  if (st->size) fprintf(f, ", size: %lld", (long long)st->size);
  if (st->has_weight_decay) fprintf(f, ", weight_decay: %.9g", st->weight_decay);
  if (st->schedule) print_stage_schedule(f, p, st->schedule);
  fputs("}\n", f);
}

/* Groups and stages: part of the hash when there are stages, since they
 * decide what trains when and at which rate. */
static void print_staging(const pn_pipeline *p, FILE *f) {
  fprintf(f, "  train_bn: %s\n", p->train_bn ? "true" : "false");
  if (p->n_param_groups) fputs("  groups:\n", f);
  for (int g = 0; g < p->n_param_groups; g++) {
    fprintf(f, "    %s: ", p->param_groups[g].name);
    print_names(f, p->param_groups[g].prefixes, p->param_groups[g].n_prefixes);
    fputc('\n', f);
  }
  if (p->n_stages) fputs("  stages:\n", f);
  for (int i = 0; i < p->n_stages; i++) print_stage(f, p, &p->stages[i]);
}

static void print_train(const pn_pipeline *p, FILE *f) {
  if (!p->n_stages && !p->n_param_groups) {
    fprintf(f, "train: {epochs: %lld, progress: %s}\n", (long long)p->epochs, p->progress);
    return;
  }
  fprintf(f, "train:\n  epochs: %lld%s\n  progress: %s\n", (long long)p->epochs,
          p->n_stages ? "  # the stages' sum" : "", p->progress);
  print_staging(p, f);
}

void pn_pipeline_print(const pn_pipeline *p, FILE *f) {
  fprintf(f, "# %s, resolved with every default\npipeline: %s\n", p->file, p->name);
  print_model_part(p, f);
  print_train(p, f);
  fputs("metrics: [", f);
  for (int i = 0; i < p->n_metrics; i++) fprintf(f, "%s%s", i ? ", " : "", p->metrics[i]);
  fputs("]\ncheckpoint: ", f);
  if (!p->checkpoint)
    fputs("~\n", f);
  else {
    fputs("{path: ", f);
    print_text(f, p->checkpoint);
    fprintf(f, ", every: %lld}\n", (long long)p->checkpoint_every);
  }
}

static uint64_t fnv1a(const char *s, size_t n) {
  uint64_t h = 1469598103934665603ull;
  for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)s[i]) * 1099511628211ull;
  return h;
}

static pn_status compute_hash(pn_pipeline *p) {
  char *buf = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&buf, &len);
  if (!f) return nomem();
  print_model_part(p, f);
  if (p->n_stages) print_staging(p, f);
  fclose(f);
  p->hash = fnv1a(buf, len);
  free(buf);
  return PN_OK;
}

/* ------------------------------------------------------------ load */

static pn_status set_defaults(pn_pipeline *p, const char *path) {
  char *copy = strdup(path);
  if (!copy) return nomem();
  char *base = basename(copy), *dot = strrchr(base, '.');
  if (dot) *dot = '\0';
  pn_status s = dup_into(&p->name, base);
  free(copy);
  if (s == PN_OK) s = dup_into(&p->backend, "cpu");
  if (s == PN_OK) s = dup_into(&p->progress, "auto");
  if (s == PN_OK) s = dup_into(&p->file, path);
  p->batch = 64;
  p->shuffle = 1;
  p->epochs = 1;
  p->train_bn = 1;
  p->checkpoint_every = 1;
  return s;
}

pn_status pn_pipeline_load(const char *path, char *const *overrides, int n_overrides,
                           pn_pipeline **out) {
  ctx c = {NULL, NULL, NULL, 0};
  *out = NULL;
  PN_TRY(pn_registry_scan());
  PN_TRY(pni_ydoc_load(path, &c.doc));
  pn_status s = (c.p = calloc(1, sizeof *c.p)) ? set_defaults(c.p, path) : nomem();
  char *copy = s == PN_OK ? strdup(path) : NULL;
  if (s == PN_OK && !(copy && (c.dir = realpath(dirname(copy), NULL))))
    s = pn_error(PN_ERR_IO, "%s: cannot resolve its directory", path);
  free(copy);
  for (int i = 0; i < n_overrides && s == PN_OK; i++) s = apply_override(c.doc, overrides[i]);
  if (s == PN_OK) s = parse_top(&c);
  if (s == PN_OK && !c.valid_seed_set) c.p->valid_seed = c.p->seed;
  if (s == PN_OK) s = compute_hash(c.p);
  pni_ydoc_free(c.doc);
  free(c.dir);
  if (s != PN_OK) {
    pn_pipeline_free(c.p);
    return s;
  }
  *out = c.p;
  return PN_OK;
}

pn_status pn_pipeline_build_model(const pn_pipeline *p, const pn_shape *input, pn_model **out) {
  const pn_shape *in = input && input->ndim ? input : &p->input;
  pn_model *m = NULL;
  *out = NULL;
  if (!in->ndim) return pn_error(PN_ERR_INVALID, "%s: model.input is not set", p->file);
  PN_TRY(pn_model_new(in, &m));
  pn_status s = PN_OK;
  for (int i = 0; i < p->n_layers && s == PN_OK; i++)
    s = pn_model_add_node(m, p->layers[i].name, p->layers[i].feature, p->layers[i].cfg,
                          (const char *const *)p->layers[i].inputs, p->layers[i].n_inputs);
  if (s == PN_OK && p->n_outputs)
    s = pn_model_set_outputs(m, (const char *const *)p->outputs, p->n_outputs);
  if (s != PN_OK) {
    pn_model_free(m);
    return s;
  }
  *out = m;
  return PN_OK;
}

pn_status pn_pipeline_device(const pn_pipeline *p, const char *backend, pn_device **out) {
  char why[256] = "";
  if (!backend) backend = p->backend;
  PN_TRY(pn_device_get(backend, out));
  pn_device *d = *out;
  if (d->iface->probe && d->iface->probe(d->ctx, why, sizeof why) != PN_OK)
    return pn_error(PN_ERR_DEVICE, "backend '%s' is unavailable: %s", backend, why);
  if (p->threads > 0 && d->iface->set_threads) PN_TRY(d->iface->set_threads(d->ctx, p->threads));
  pn_set_default_device(d);
  return PN_OK;
}

pn_status pn_pipeline_transforms(const pn_pipeline_chain *c, double size_scale,
                                 pn_transforms **out) {
  const char **names = calloc((size_t)c->n + 1, sizeof *names);
  const pn_config **cfgs = calloc((size_t)c->n + 1, sizeof *cfgs);
  pn_status s = names && cfgs ? PN_OK : nomem();
  for (int i = 0; i < c->n && s == PN_OK; i++) {
    names[i] = c->items[i].feature;
    cfgs[i] = c->items[i].cfg;
  }
  if (s == PN_OK) s = pn_transforms_new(names, cfgs, c->n, size_scale, out);
  free(names);
  free(cfgs);
  return s;
}

static void groups_free(pn_pipeline *p) {
  for (int i = 0; i < p->n_groups; i++) {
    free_names(p->groups[i].classes, p->groups[i].n_classes);
    free(p->groups[i].name);
  }
  free(p->groups);
}

static void staging_free(pn_pipeline *p) {
  for (int g = 0; g < p->n_param_groups; g++) {
    free_names(p->param_groups[g].prefixes, p->param_groups[g].n_prefixes);
    free(p->param_groups[g].name);
  }
  free(p->param_groups);
  for (int i = 0; i < p->n_stages; i++) {
    free_names(p->stages[i].freeze, p->stages[i].n_freeze);
    pn_config_free(p->stages[i].schedule);
  }
  free(p->stages);
}

void pn_pipeline_free(pn_pipeline *p) {
  if (!p) return;
  feature_clear(&p->train_data);
  feature_clear(&p->test_data);
  chain_clear(&p->train_transforms);
  chain_clear(&p->valid_transforms);
  chain_clear(&p->test_transforms);
  groups_free(p);
  for (int i = 0; i < p->n_layers; i++) feature_clear(&p->layers[i]);
  free(p->layers);
  free_names(p->outputs, p->n_outputs);
  feature_clear(&p->loss);
  feature_clear(&p->optimizer);
  feature_clear(&p->schedule);
  free_names(p->metrics, p->n_metrics);
  staging_free(p);
  free(p->file), free(p->name), free(p->backend), free(p->progress), free(p->checkpoint);
  free(p);
}
