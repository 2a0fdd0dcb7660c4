#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <plugnet/registry.h>

#include "config.h"
#include "featurecfg.h"
#include "internal.h"
#include "modeldef.h"

#define MAX_INCLUDE_DEPTH 8
#define MAX_INPUTS        8

static pn_status nomem(void) { return pn_error(PN_ERR_NOMEM, "out of memory reading a model"); }

/* ------------------------------------------------------------ gathering */

typedef struct src {
  const pni_ydoc *doc;
  char *dir;
} src;

typedef struct named {
  const char *name;
  const pni_ynode *node;
  int src;  /* index into ctx.srcs */
  int used; /* args: some `$name` read it */
} named;

typedef struct list {
  named *v;
  int n, cap;
} list;

/* Everything the description and its includes say, before expansion. */
typedef struct ctx {
  src *srcs;
  int n_srcs;
  pni_ydoc **owned; /* included files */
  int n_owned;
  pni_ynode **made; /* argument overrides given as text */
  int n_made;
  list args, blocks, layers; /* layers: one entry per `layers:` list */
  const pni_ynode *outputs;
  int outputs_src;
  list fresh; /* args first declared beside an included model's layers */
  pni_mdef *out;
} ctx;

static pn_status list_put(list *l, const char *name, const pni_ynode *node, int srci,
                          int replace) {
  for (int i = 0; replace && i < l->n; i++)
    if (strcmp(l->v[i].name, name) == 0) {
      l->v[i].node = node;
      l->v[i].src = srci;
      return PN_OK;
    }
  if (l->n == l->cap) {
    int cap = l->cap ? 2 * l->cap : 16;
    named *v = realloc(l->v, sizeof *v * (size_t)cap);
    if (!v) return nomem();
    l->v = v;
    l->cap = cap;
  }
  l->v[l->n++] = (named){name, node, srci, 0};
  return PN_OK;
}

static const named *list_get(const list *l, const char *name) {
  for (int i = 0; i < l->n; i++)
    if (strcmp(l->v[i].name, name) == 0) return &l->v[i];
  return NULL;
}

static int add_src(ctx *c, const pni_ydoc *doc, const char *dir) {
  src *s = realloc(c->srcs, sizeof *s * (size_t)(c->n_srcs + 1));
  if (!s) return -1;
  c->srcs = s;
  if (!(s[c->n_srcs].dir = strdup(dir))) return -1;
  s[c->n_srcs].doc = doc;
  return c->n_srcs++;
}

/* out = dir/file, when that fits and is readable. */
static int readable(char *out, size_t n, const char *dir, const char *file) {
  int r = dir ? snprintf(out, n, "%s/%s", dir, file) : snprintf(out, n, "%s", file);
  return r >= 0 && (size_t)r < n && access(out, R_OK) == 0;
}

/* Directories holding model files: PLUGNET_MODEL_PATH, then the source
 * tree's share/models when running uninstalled, else the installed one. */
static int find_in_model_path(const char *file, char *out, size_t n) {
  const char *env = getenv("PLUGNET_MODEL_PATH");
  char *path = NULL;
  const char *def = pni_running_uninstalled() ? PN_ABS_SRCDIR "/share/models" : PN_MODELDIR;
  if (asprintf(&path, "%s%s%s", env && *env ? env : "", env && *env ? ":" : "", def) < 0)
    return 0;
  int found = 0;
  for (char *save = NULL, *d = strtok_r(path, ":", &save); d && !found;
       d = strtok_r(NULL, ":", &save))
    found = readable(out, n, d, file);
  free(path);
  return found;
}

/* NAME, NAME.yaml or a path: beside the including file first. */
static int resolve_model_file(const char *name, const char *beside, char *out, size_t n) {
  char file[PATH_MAX];
  const char *dot = strrchr(name, '.');
  int r = snprintf(file, sizeof file, "%s%s", name, dot && strcmp(dot, ".yaml") == 0 ? "" : ".yaml");
  if (r < 0 || (size_t)r >= sizeof file) return 0;
  if (name[0] == '/') return readable(out, n, NULL, name) || readable(out, n, NULL, file);
  if (beside && (readable(out, n, beside, name) || readable(out, n, beside, file))) return 1;
  return !strchr(name, '/') && find_in_model_path(file, out, n);
}

static const char *const model_keys[] = {"model",  "input",  "args",   "include",
                                         "blocks", "layers", "outputs"};

static pn_status gather(ctx *c, const pni_ydoc *doc, const pni_ynode *m, const char *dir,
                        int depth);

static pn_status include_one(ctx *c, const pni_ydoc *doc, const pni_ynode *name, const char *dir,
                             int depth) {
  char path[PATH_MAX];
  if (name->kind != PNI_YSCALAR)
    return pni_yerror(doc, name, PN_ERR_INVALID, "include: expected a model file name");
  if (depth >= MAX_INCLUDE_DEPTH)
    return pni_yerror(doc, name, PN_ERR_INVALID, "include: more than %d levels (a cycle?)",
                      MAX_INCLUDE_DEPTH);
  if (!resolve_model_file(name->text, dir, path, sizeof path))
    return pni_yerror(doc, name, PN_ERR_NOT_FOUND,
                      "include: no model file '%s' beside this file, in PLUGNET_MODEL_PATH or "
                      "in share/models",
                      name->text);
  pni_ydoc *inc = NULL;
  PN_TRY(pni_ydoc_load(path, &inc));
  pni_ydoc **owned = realloc(c->owned, sizeof *owned * (size_t)(c->n_owned + 1));
  if (!owned) {
    pni_ydoc_free(inc);
    return nomem();
  }
  c->owned = owned;
  owned[c->n_owned++] = inc;
  if (!inc->root) return pn_error(PN_ERR_PARSE, "%s: the file is empty", path);
  char *copy = strdup(path);
  if (!copy) return nomem();
  pn_status s = gather(c, inc, inc->root, dirname(copy), depth + 1);
  free(copy);
  return s;
}

static pn_status gather_map(const pni_ydoc *doc, const pni_ynode *m, const char *key, int srci,
                            list *into) {
  const pni_ynode *v = pni_ymap_get(m, key);
  if (!v || pni_yis_null(v)) return PN_OK;
  PN_TRY(pni_yexpect(doc, v, PNI_YMAP, key));
  for (int i = 0; i < v->n; i++)
    PN_TRY(list_put(into, pni_ymap_key(v, i)->text, pni_ymap_value(v, i), srci, 1));
  return PN_OK;
}

static pn_status gather_input(const pni_ydoc *doc, const pni_ynode *in, pn_shape *shape) {
  if (in->kind != PNI_YSEQ || in->n < 1 || in->n > PN_MAX_DIMS - 1)
    return pni_yerror(doc, in, PN_ERR_INVALID,
                      "input must be a list of 1 to %d sizes, e.g. [3, 224, 224]",
                      PN_MAX_DIMS - 1);
  shape->ndim = in->n;
  for (int i = 0; i < in->n; i++) {
    PN_TRY(pni_yint(doc, in->kids[i], "input", &shape->dim[i]));
    if (shape->dim[i] < 1)
      return pni_yerror(doc, in->kids[i], PN_ERR_INVALID, "input sizes must be positive");
  }
  return PN_OK;
}

/* Args given beside an included model (not a library of blocks) are meant
 * for it, unless this file's own layers read them: noted here, checked once
 * everything is expanded, so that a misspelt one is an error rather than
 * silently ignored. */
static pn_status note_fresh_args(ctx *c, const pni_ynode *args, int srci) {
  for (int i = 0; args && args->kind == PNI_YMAP && i < args->n; i++) {
    const pni_ynode *k = pni_ymap_key(args, i);
    if (!list_get(&c->args, k->text)) PN_TRY(list_put(&c->fresh, k->text, k, srci, 0));
  }
  return PN_OK;
}

static pn_status check_fresh_args(ctx *c) {
  for (int i = 0; i < c->fresh.n; i++) {
    const named *f = &c->fresh.v[i], *a = list_get(&c->args, f->name);
    if (a && a->used) continue;
    const char **names = calloc((size_t)c->args.n + 1, sizeof *names);
    if (!names) return nomem();
    int n = 0;
    for (int j = 0; j < c->args.n; j++)
      if (!list_get(&c->fresh, c->args.v[j].name)) names[n++] = c->args.v[j].name;
    const char *near = pn_suggest(f->name, names, n);
    pn_status s = pni_yerror(c->srcs[f->src].doc, f->node, PN_ERR_INVALID,
                             "args: the model has no argument '%s'%s%s%s", f->name,
                             near ? " (did you mean '" : "", near ? near : "", near ? "'?)" : "");
    free(names);
    return s;
  }
  return PN_OK;
}

/* Includes come first, so that what this file says overrides them. */
static pn_status gather(ctx *c, const pni_ydoc *doc, const pni_ynode *m, const char *dir,
                        int depth) {
  PN_TRY(pni_yexpect(doc, m, PNI_YMAP, "model"));
  PN_TRY(pni_ycheck_keys(doc, m, model_keys, (int)(sizeof model_keys / sizeof *model_keys),
                         "model"));
  const pni_ynode *inc = pni_ymap_get(m, "include");
  if (inc && inc->kind == PNI_YSEQ)
    for (int i = 0; i < inc->n; i++) PN_TRY(include_one(c, doc, inc->kids[i], dir, depth));
  else if (inc && !pni_yis_null(inc))
    PN_TRY(include_one(c, doc, inc, dir, depth));
  int srci = add_src(c, doc, dir);
  if (srci < 0) return nomem();
  if (c->layers.n) PN_TRY(note_fresh_args(c, pni_ymap_get(m, "args"), srci));
  PN_TRY(gather_map(doc, m, "args", srci, &c->args));
  PN_TRY(gather_map(doc, m, "blocks", srci, &c->blocks));
  const pni_ynode *in = pni_ymap_get(m, "input"), *layers = pni_ymap_get(m, "layers");
  if (in && !pni_yis_null(in)) PN_TRY(gather_input(doc, in, &c->out->input));
  if (layers && !pni_yis_null(layers)) {
    PN_TRY(pni_yexpect(doc, layers, PNI_YSEQ, "layers"));
    PN_TRY(list_put(&c->layers, "layers", layers, srci, 0));
  }
  const pni_ynode *outs = pni_ymap_get(m, "outputs");
  if (outs && !pni_yis_null(outs)) {
    c->outputs = outs;
    c->outputs_src = srci;
  }
  return PN_OK;
}

/* `key=value` texts replace the value of an arg the description declares. */
static pn_status override_args(ctx *c, char *const *args, int n_args) {
  c->made = calloc((size_t)(n_args ? n_args : 1), sizeof *c->made);
  if (!c->made) return nomem();
  for (int i = 0; i < n_args; i++) {
    const char *eq = strchr(args[i], '=');
    if (!eq) return pn_error(PN_ERR_INVALID, "model argument '%s' is not key=value", args[i]);
    size_t klen = (size_t)(eq - args[i]);
    named *a = NULL;
    for (int k = 0; k < c->args.n && !a; k++)
      if (strlen(c->args.v[k].name) == klen && strncmp(c->args.v[k].name, args[i], klen) == 0)
        a = &c->args.v[k];
    if (!a)
      return pn_error(PN_ERR_NOT_FOUND, "model argument '%.*s' is not one of the model's args",
                      (int)klen, args[i]);
    pni_ynode *v = pni_ynode_scalar(eq + 1);
    if (!v) return nomem();
    v->plain = 1;
    c->made[c->n_made++] = v;
    a->node = v;
  }
  return PN_OK;
}

/* ------------------------------------------------------------ expansion */

typedef struct scope {
  const char *prefix; /* NULL at the top */
  const char *input;  /* the full name feeding `input` */
  list args;          /* resolved values */
  list local;         /* local name -> full name (node field holds nothing) */
  char **fulls;       /* owned full names for `local` */
  int n_fulls;
  char *last; /* the full name of the latest output */
  int src;
} scope;

static void scope_free(scope *s) {
  for (int i = 0; i < s->n_fulls; i++) free(s->fulls[i]);
  free(s->fulls);
  free(s->args.v);
  free(s->local.v);
}

typedef struct subst_ctx {
  ctx *c;
  const scope *s;
} subst_ctx;

static const pni_ynode *subst(void *user, const pni_ynode *v) {
  const subst_ctx *sc = user;
  if (v->kind != PNI_YSCALAR || v->text[0] != '$') return v;
  const named *a = list_get(&sc->s->args, v->text + 1);
  if (a && !sc->s->prefix)
    for (int i = 0; i < sc->c->args.n; i++)
      if (strcmp(sc->c->args.v[i].name, a->name) == 0) sc->c->args.v[i].used = 1;
  if (a) return a->node;
  pni_yerror(sc->c->srcs[sc->s->src].doc, v, PN_ERR_NOT_FOUND, "unknown argument '%s'", v->text);
  return NULL;
}

static pn_status scope_bind(scope *s, const char *local, const char *full) {
  char **f = realloc(s->fulls, sizeof *f * (size_t)(s->n_fulls + 1));
  if (!f) return nomem();
  s->fulls = f;
  if (!(f[s->n_fulls] = strdup(full))) return nomem();
  const char *kept = f[s->n_fulls++];
  PN_TRY(list_put(&s->local, local, (const pni_ynode *)kept, 0, 1));
  free(s->last);
  return (s->last = strdup(full)) ? PN_OK : nomem();
}

static const char *scope_full(const scope *s, const char *local) {
  if (strcmp(local, "input") == 0) return s->input;
  const named *n = list_get(&s->local, local);
  return n ? (const char *)n->node : NULL;
}

static char *join(const char *prefix, const char *name) {
  char *r = NULL;
  if (!prefix) return strdup(name);
  return asprintf(&r, "%s.%s", prefix, name) < 0 ? NULL : r;
}

static pn_status add_node(pni_mdef *d, pni_mnode *n) {
  if (d->n_nodes == d->cap_nodes) {
    int cap = d->cap_nodes ? 2 * d->cap_nodes : 32;
    pni_mnode *v = realloc(d->nodes, sizeof *v * (size_t)cap);
    if (!v) return nomem();
    d->nodes = v;
    d->cap_nodes = cap;
  }
  d->nodes[d->n_nodes++] = *n;
  return PN_OK;
}

/* The full names of a node's `inputs:` (default: the scope's latest). */
static pn_status node_inputs(ctx *c, const scope *s, const pni_ynode *item, char ***out,
                             int *n_out) {
  const pni_ydoc *doc = c->srcs[s->src].doc;
  const pni_ynode *in = pni_ymap_get(item, "inputs");
  int n = in && !pni_yis_null(in) ? (in->kind == PNI_YSEQ ? in->n : 1) : 0;
  if (n > MAX_INPUTS) return pni_yerror(doc, in, PN_ERR_INVALID, "at most %d inputs", MAX_INPUTS);
  *out = calloc((size_t)(n ? n : 1), sizeof **out);
  if (!*out) return nomem();
  *n_out = n ? n : 1;
  for (int i = 0; i < n; i++) {
    const pni_ynode *k = in->kind == PNI_YSEQ ? in->kids[i] : in;
    const char *full = k->kind == PNI_YSCALAR ? scope_full(s, k->text) : NULL;
    if (!full)
      return pni_yerror(doc, k, PN_ERR_NOT_FOUND, "inputs: '%s' is not an earlier node here",
                        k->kind == PNI_YSCALAR ? k->text : "?");
    if (!((*out)[i] = strdup(full))) return nomem();
  }
  if (!n && !((*out)[0] = strdup(s->last ? s->last : s->input))) return nomem();
  return PN_OK;
}

static const char *const layer_reserved[] = {"name", "type", "inputs"};
static const char *const block_keys[] = {"name", "block", "repeat", "args", "first", "inputs"};
static const char *const block_def_keys[] = {"args", "layers", "output"};
static const char *const first_keys[] = {"block", "args"};

static pn_status expand_list(ctx *c, scope *s, const pni_ynode *seq);

static pn_status expand_layer(ctx *c, scope *s, const pni_ynode *item, const char *local) {
  pni_mnode n = {0};
  subst_ctx sc = {c, s};
  pni_feature_src fs = {c->srcs[s->src].doc, c->srcs[s->src].dir, subst, &sc};
  pn_status st = (n.name = join(s->prefix, local)) ? PN_OK : nomem();
  if (st == PN_OK) st = node_inputs(c, s, item, &n.inputs, &n.n_inputs);
  if (st == PN_OK)
    st = pni_feature_config(&fs, item, "layer", n.name, layer_reserved, 3, &n.feature, &n.cfg);
  if (st == PN_OK) st = add_node(c->out, &n);
  if (st != PN_OK) {
    free(n.name), free(n.feature), pn_config_free(n.cfg);
    for (int i = 0; i < n.n_inputs; i++) free(n.inputs[i]);
    free(n.inputs);
    return st;
  }
  return scope_bind(s, local, n.name);
}

/* A block copy's args: its defaults, then the call's, then `first`'s. */
static pn_status bind_args(ctx *c, const scope *caller, const pni_ynode *defs, int def_src,
                           const pni_ynode *const *calls, int n_calls, scope *child) {
  subst_ctx sc = {c, caller};
  if (defs && !pni_yis_null(defs)) {
    PN_TRY(pni_yexpect(c->srcs[def_src].doc, defs, PNI_YMAP, "block args"));
    for (int i = 0; i < defs->n; i++)
      PN_TRY(list_put(&child->args, pni_ymap_key(defs, i)->text, pni_ymap_value(defs, i), 0, 1));
  }
  for (int k = 0; k < n_calls; k++) {
    const pni_ynode *a = calls[k];
    if (!a || pni_yis_null(a)) continue;
    PN_TRY(pni_yexpect(c->srcs[caller->src].doc, a, PNI_YMAP, "args"));
    for (int i = 0; i < a->n; i++) {
      const pni_ynode *key = pni_ymap_key(a, i), *v = subst(&sc, pni_ymap_value(a, i));
      if (!v) return PN_ERR_NOT_FOUND;
      if (!list_get(&child->args, key->text))
        return pni_yerror(c->srcs[caller->src].doc, key, PN_ERR_INVALID,
                          "the block has no argument '%s'", key->text);
      PN_TRY(list_put(&child->args, key->text, v, 0, 1));
    }
  }
  return PN_OK;
}

static pn_status block_def(ctx *c, const scope *s, const pni_ynode *name, const named **out) {
  const pni_ydoc *doc = c->srcs[s->src].doc;
  if (!name || name->kind != PNI_YSCALAR)
    return pni_yerror(doc, name, PN_ERR_INVALID, "block: expected a block name");
  if (!(*out = list_get(&c->blocks, name->text)))
    return pni_yerror(doc, name, PN_ERR_NOT_FOUND, "no block named '%s'", name->text);
  PN_TRY(pni_yexpect(c->srcs[(*out)->src].doc, (*out)->node, PNI_YMAP, name->text));
  return pni_ycheck_keys(c->srcs[(*out)->src].doc, (*out)->node, block_def_keys, 3, name->text);
}

static pn_status expand_copy(ctx *c, scope *s, const pni_ynode *item, const char *prefix,
                             const char *input, int first, char **output) {
  const pni_ynode *fst = first ? pni_ymap_get(item, "first") : NULL;
  if (fst) {
    PN_TRY(pni_yexpect(c->srcs[s->src].doc, fst, PNI_YMAP, "first"));
    PN_TRY(pni_ycheck_keys(c->srcs[s->src].doc, fst, first_keys, 2, "first"));
  }
  const pni_ynode *bname = fst && pni_ymap_get(fst, "block") ? pni_ymap_get(fst, "block")
                                                             : pni_ymap_get(item, "block");
  const named *def = NULL;
  PN_TRY(block_def(c, s, bname, &def));
  scope child = {prefix, input, {0}, {0}, NULL, 0, NULL, def->src};
  const pni_ynode *calls[2] = {pni_ymap_get(item, "args"), fst ? pni_ymap_get(fst, "args") : NULL};
  pn_status st = bind_args(c, s, pni_ymap_get(def->node, "args"), def->src, calls, 2, &child);
  const pni_ynode *layers = pni_ymap_get(def->node, "layers");
  if (st == PN_OK && (!layers || layers->kind != PNI_YSEQ || !layers->n))
    st = pni_yerror(c->srcs[def->src].doc, def->node, PN_ERR_INVALID,
                    "block '%s' needs a list of layers", def->name);
  if (st == PN_OK) st = expand_list(c, &child, layers);
  const pni_ynode *out = pni_ymap_get(def->node, "output");
  const char *full = out && out->kind == PNI_YSCALAR ? scope_full(&child, out->text) : child.last;
  if (st == PN_OK && !full)
    st = pni_yerror(c->srcs[def->src].doc, out, PN_ERR_NOT_FOUND,
                    "output: '%s' is not a node of the block", out->text);
  if (st == PN_OK && !(*output = strdup(full))) st = nomem();
  scope_free(&child);
  free(child.last);
  return st;
}

static pn_status expand_block(ctx *c, scope *s, const pni_ynode *item, const char *local) {
  const pni_ydoc *doc = c->srcs[s->src].doc;
  subst_ctx sc = {c, s};
  PN_TRY(pni_ycheck_keys(doc, item, block_keys, 6, "a block node"));
  int64_t repeat = 0;
  const pni_ynode *rep = pni_ymap_get(item, "repeat");
  if (rep && !(rep = subst(&sc, rep))) return PN_ERR_NOT_FOUND;
  if (rep && (pni_yint(doc, rep, "repeat", &repeat) != PN_OK || repeat < 1))
    return pni_yerror(doc, rep, PN_ERR_INVALID, "repeat must be a positive count");
  char **in = NULL, *full = join(s->prefix, local), *cur = NULL;
  int n_in = 0;
  pn_status st = full ? node_inputs(c, s, item, &in, &n_in) : nomem();
  if (st == PN_OK && n_in != 1)
    st = pni_yerror(doc, item, PN_ERR_INVALID, "a block takes one input");
  if (st == PN_OK) cur = strdup(in[0]);
  for (int64_t k = 0; st == PN_OK && k < (repeat ? repeat : 1); k++) {
    char *prefix = NULL, *next = NULL;
    if (repeat && asprintf(&prefix, "%s.%lld", full, (long long)k) < 0) prefix = NULL;
    if (repeat && !prefix) st = nomem();
    if (st == PN_OK) st = expand_copy(c, s, item, repeat ? prefix : full, cur, k == 0, &next);
    free(prefix);
    free(cur);
    cur = next;
  }
  if (st == PN_OK) st = scope_bind(s, local, cur);
  for (int i = 0; i < n_in; i++) free(in[i]);
  free(in), free(full), free(cur);
  return st;
}

static pn_status expand_list(ctx *c, scope *s, const pni_ynode *seq) {
  const pni_ydoc *doc = c->srcs[s->src].doc;
  for (int i = 0; i < seq->n; i++) {
    const pni_ynode *item = seq->kids[i], *name = NULL;
    char fallback[24];
    PN_TRY(pni_yexpect(doc, item, PNI_YMAP, "a layer"));
    PN_TRY(pni_yopt_scalar(doc, item, "name", &name));
    snprintf(fallback, sizeof fallback, "%d", i); /* nn.Sequential's names */
    const char *local = name ? name->text : fallback;
    if (list_get(&s->local, local) || strcmp(local, "input") == 0)
      return pni_yerror(doc, name ? name : item, PN_ERR_INVALID, "two nodes are named '%s'",
                        local);
    int is_block = pni_ymap_get(item, "block") != NULL;
    if (is_block && pni_ymap_get(item, "type"))
      return pni_yerror(doc, item, PN_ERR_INVALID, "a node has a `type:` or a `block:`, not both");
    PN_TRY(is_block ? expand_block(c, s, item, local) : expand_layer(c, s, item, local));
  }
  return PN_OK;
}

static pn_status expand_outputs(ctx *c, scope *top) {
  const pni_ynode *o = c->outputs;
  if (!o) return PN_OK;
  const pni_ydoc *doc = c->srcs[c->outputs_src].doc;
  int n = o->kind == PNI_YSEQ ? o->n : 1;
  c->out->outputs = calloc((size_t)(n ? n : 1), sizeof *c->out->outputs);
  if (!c->out->outputs) return nomem();
  for (int i = 0; i < n; i++) {
    const pni_ynode *k = o->kind == PNI_YSEQ ? o->kids[i] : o;
    const char *full = k->kind == PNI_YSCALAR ? scope_full(top, k->text) : NULL;
    if (!full || strcmp(full, "input") == 0)
      return pni_yerror(doc, k, PN_ERR_NOT_FOUND, "outputs: '%s' is not a node of the model",
                        k->kind == PNI_YSCALAR ? k->text : "?");
    if (!(c->out->outputs[c->out->n_outputs++] = strdup(full))) return nomem();
  }
  return PN_OK;
}

static pn_status expand_all(ctx *c) {
  scope top = {NULL, "input", {0}, {0}, NULL, 0, NULL, 0};
  pn_status st = PN_OK;
  for (int i = 0; i < c->args.n && st == PN_OK; i++) {
    const named *a = &c->args.v[i];
    st = list_put(&top.args, a->name, a->node, 0, 1);
  }
  for (int i = 0; i < c->layers.n && st == PN_OK; i++) {
    top.src = c->layers.v[i].src;
    st = expand_list(c, &top, c->layers.v[i].node);
  }
  if (st == PN_OK && !c->out->n_nodes)
    st = pn_error(PN_ERR_INVALID, "%s: the model has no layers", c->srcs[0].doc->file);
  if (st == PN_OK) st = expand_outputs(c, &top);
  if (st == PN_OK) st = check_fresh_args(c);
  scope_free(&top);
  free(top.last);
  return st;
}

static void ctx_free(ctx *c) {
  for (int i = 0; i < c->n_srcs; i++) free(c->srcs[i].dir);
  free(c->srcs);
  for (int i = 0; i < c->n_owned; i++) pni_ydoc_free(c->owned[i]);
  free(c->owned);
  for (int i = 0; i < c->n_made; i++) pni_ynode_free(c->made[i]);
  free(c->made);
  free(c->args.v), free(c->blocks.v), free(c->layers.v), free(c->fresh.v);
}

pn_status pni_mdef_expand(const pni_ydoc *doc, const pni_ynode *model, const char *dir,
                          char *const *args, int n_args, pni_mdef *out) {
  ctx c;
  memset(&c, 0, sizeof c);
  memset(out, 0, sizeof *out);
  c.out = out;
  pn_status st = pn_registry_scan();
  if (st == PN_OK) st = gather(&c, doc, model, dir, 0);
  if (st == PN_OK) st = override_args(&c, args, n_args);
  if (st == PN_OK) st = expand_all(&c);
  ctx_free(&c);
  if (st != PN_OK) pni_mdef_clear(out);
  return st;
}

void pni_mdef_clear(pni_mdef *d) {
  for (int i = 0; i < d->n_nodes; i++) {
    pni_mnode *n = &d->nodes[i];
    free(n->name), free(n->feature), pn_config_free(n->cfg);
    for (int k = 0; k < n->n_inputs; k++) free(n->inputs[k]);
    free(n->inputs);
  }
  free(d->nodes);
  for (int i = 0; i < d->n_outputs; i++) free(d->outputs[i]);
  free(d->outputs);
  memset(d, 0, sizeof *d);
}

/* ------------------------------------------------------------ building */

pn_status pni_mdef_build(const pni_mdef *d, const pn_shape *input, pn_model **out) {
  pn_model *m = NULL;
  *out = NULL;
  PN_TRY(pn_model_new(input, &m));
  pn_status st = PN_OK;
  for (int i = 0; i < d->n_nodes && st == PN_OK; i++) {
    const pni_mnode *n = &d->nodes[i];
    st = pn_model_add_node(m, n->name, n->feature, n->cfg, (const char *const *)n->inputs,
                           n->n_inputs);
  }
  if (st == PN_OK && d->n_outputs)
    st = pn_model_set_outputs(m, (const char *const *)d->outputs, d->n_outputs);
  if (st != PN_OK) {
    pn_model_free(m);
    return st;
  }
  *out = m;
  return PN_OK;
}

pn_status pn_model_from_file(const char *name_or_path, char *const *args, int n_args,
                             const pn_shape *input, pn_model **out) {
  char path[PATH_MAX];
  *out = NULL;
  if (!resolve_model_file(name_or_path, ".", path, sizeof path))
    return pn_error(PN_ERR_NOT_FOUND, "no model file '%s' (nor %s.yaml in share/models)",
                    name_or_path, name_or_path);
  pni_ydoc *doc = NULL;
  PN_TRY(pni_ydoc_load(path, &doc));
  char *copy = strdup(path);
  pni_mdef d;
  memset(&d, 0, sizeof d);
  pn_status st = !copy ? nomem()
                 : doc->root
                     ? pni_mdef_expand(doc, doc->root, dirname(copy), args, n_args, &d)
                     : pn_error(PN_ERR_PARSE, "%s: the file is empty", path);
  const pn_shape *in = input && input->ndim ? input : &d.input;
  if (st == PN_OK && !in->ndim)
    st = pn_error(PN_ERR_INVALID, "%s: no input shape (add `input: [C, H, W]`)", path);
  if (st == PN_OK) st = pni_mdef_build(&d, in, out);
  pni_mdef_clear(&d);
  free(copy);
  pni_ydoc_free(doc);
  return st;
}
