/* Plugin manifests: the registry reads these, never the libraries, to list,
 * inspect and validate. The format (every key is checked; an unknown one is
 * an error with the nearest valid key suggested):
 *
 *   plugin: cpu              # required; must equal the descriptor's name
 *   version: 0.1.0           # required; must equal the descriptor's version
 *   abi: 1.0                 # required; MAJOR.MINOR the library was built for
 *   library: cpu.so          # required; relative to this file's directory, where
 *                            # .libs/ (an uninstalled libtool build) is also tried
 *   description: ...         # optional
 *   features:                # required, at least one
 *     - name: cpu            # required, unique across every manifest found
 *       kind: backend        # required: layer|backend|loss|optimizer|schedule|data|transform
 *       doc: ...             # optional, one line for `plugnet plugins`
 *       params:              # optional
 *         - name: threads    # required, unique in the feature
 *           type: int        # required: int|float|bool|string|enum|ints
 *           default: 0       # optional; without one the parameter is required.
 *                            # ints take a list ([3, 3]) or one integer
 *           min: 0           # optional, int|float|ints only (each element for ints)
 *           max: 4096        # optional, likewise
 *           choices: [a, b]  # enum only, and required there
 *           doc: "..."       # optional
 *
 * A default must satisfy its own type, range and choices. A library that
 * does not exist is not an error here: it is reported when the plugin is
 * loaded, so that listing still works in a half-built tree. */
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "plugin_internal.h"
#include "yamldoc.h"

const char *const pni_feature_kinds[] = {"layer",    "backend", "loss",     "optimizer",
                                         "schedule", "data",    "transform"};
const int pni_n_feature_kinds = (int)(sizeof pni_feature_kinds / sizeof *pni_feature_kinds);

static const char *const type_names[] = {"int",  "float", "bool",  "string",
                                            "enum", "ints",  "path", "floats"};
#define N_TYPES ((int)(sizeof type_names / sizeof *type_names))

static const char *const top_keys[] = {"plugin",  "version",     "abi",
                                       "library", "description", "features"};
static const char *const feature_keys[] = {"name", "kind", "doc", "params"};
static const char *const param_keys[] = {"name", "type", "default", "min", "max", "choices", "doc"};
#define COUNT(a) ((int)(sizeof(a) / sizeof *(a)))

const char *pni_param_type_name(pn_param_type t) {
  return (int)t >= 0 && (int)t < N_TYPES ? type_names[t] : "?";
}

static pn_status nomem(const pni_ydoc *d) {
  return pn_error(PN_ERR_NOMEM, "%s: out of memory", d->file);
}

static pn_status dup_text(const pni_ydoc *d, const pni_ynode *n, char **out) {
  *out = NULL;
  if (!n) return PN_OK;
  *out = strdup(n->text);
  return *out ? PN_OK : nomem(d);
}

static void param_free(pn_param_schema *p) {
  free(p->name);
  free(p->default_value);
  for (char **c = p->choices; c && *c; c++) free(*c);
  free(p->choices);
  free(p->doc);
}

static void feature_free(pn_feature_info *f) {
  for (int i = 0; i < f->n_params; i++) param_free(&f->params[i]);
  free(f->params);
  free(f->name);
  free(f->kind);
  free(f->doc);
}

void pn_manifest_free(pn_manifest *m) {
  if (!m) return;
  pni_manifest *pm = (pni_manifest *)m;
  for (int i = 0; i < m->n_features; i++) feature_free(&m->features[i]);
  free(m->features);
  free(m->path);
  free(m->plugin);
  free(m->library);
  free(m->version);
  free(m->description);
  free(pm->tried[0]);
  free(pm->tried[1]);
  free(pm);
}

/* ---- parameters */

static pn_status parse_type(const pni_ydoc *d, const pni_ynode *n, const char *where,
                            pn_param_type *out) {
  for (int t = 0; t < N_TYPES; t++)
    if (strcmp(n->text, type_names[t]) == 0) return *out = (pn_param_type)t, PN_OK;
  const char *near = pn_suggest(n->text, type_names, N_TYPES);
  return pni_yerror(d, n, PN_ERR_PARSE,
                    "unknown type '%s' for %s%s%s%s (types: int, float, bool, string, enum, "
                    "ints, path, floats)",
                    n->text, where, near ? " (did you mean '" : "", near ? near : "",
                    near ? "'?)" : "");
}

static pn_status parse_choices(const pni_ydoc *d, const pni_ynode *n, const char *where,
                               pn_param_schema *p) {
  PN_TRY(pni_yexpect(d, n, PNI_YSEQ, "choices"));
  if (n->n == 0) return pni_yerror(d, n, PN_ERR_PARSE, "choices of %s is empty", where);
  p->choices = calloc((size_t)n->n + 1, sizeof *p->choices);
  if (!p->choices) return nomem(d);
  for (int i = 0; i < n->n; i++) {
    const pni_ynode *c = n->kids[i];
    PN_TRY(pni_yexpect(d, c, PNI_YSCALAR, "a choice"));
    for (int j = 0; j < i; j++)
      if (strcmp(p->choices[j], c->text) == 0)
        return pni_yerror(d, c, PN_ERR_PARSE, "choice '%s' of %s is listed twice", c->text, where);
    PN_TRY(dup_text(d, c, &p->choices[i]));
  }
  return PN_OK;
}

/* An ints default may be written as a YAML list; it is kept as "[3, 3]",
 * the text form pn_config_set accepts. */
static pn_status default_text(const pni_ydoc *d, const pni_ynode *n, const pn_param_schema *p,
                              const char *where, char **out) {
  *out = NULL;
  if (pni_yis_null(n)) return PN_OK;
  if (n->kind == PNI_YSCALAR) return dup_text(d, n, out);
  if ((p->type != PN_PARAM_INTS && p->type != PN_PARAM_FLOATS) || n->kind != PNI_YSEQ)
    return pni_yerror(d, n, PN_ERR_PARSE, "the default of %s must be a scalar, not %s", where,
                      pni_ykind_name(n->kind));
  for (int i = 0; i < n->n; i++)
    PN_TRY(pni_yexpect(d, n->kids[i], PNI_YSCALAR, "an element of an ints default"));
  return (*out = pni_yseq_text(n)) ? PN_OK : nomem(d);
}

static pn_status parse_bound(const pni_ydoc *d, const pni_ynode *map, const char *key,
                             const pn_param_schema *p, const char *where, int *has, double *v) {
  const pni_ynode *n = pni_ymap_get(map, key);
  if (!n || pni_yis_null(n)) return PN_OK;
  if (p->type != PN_PARAM_INT && p->type != PN_PARAM_FLOAT && p->type != PN_PARAM_INTS &&
      p->type != PN_PARAM_FLOATS)
    return pni_yerror(d, pni_ymap_key_node(map, key), PN_ERR_PARSE,
                      "'%s' does not apply to %s (type %s): only numbers and lists of them have a range",
                      key, where, type_names[p->type]);
  PN_TRY(pni_ydouble(d, n, key, v));
  *has = 1;
  return PN_OK;
}

static pn_status check_param_shape(const pni_ydoc *d, const pni_ynode *map,
                                   const pn_param_schema *p, const char *where) {
  if (p->has_min && p->has_max && p->min > p->max)
    return pni_yerror(d, pni_ymap_get(map, "min"), PN_ERR_PARSE,
                      "min %.15g is above max %.15g for %s", p->min, p->max, where);
  const pni_ynode *choices = pni_ymap_get(map, "choices");
  if (p->type == PN_PARAM_ENUM && (!choices || pni_yis_null(choices)))
    return pni_yerror(d, map, PN_ERR_PARSE, "missing required key 'choices' in %s (type enum)",
                      where);
  if (p->type != PN_PARAM_ENUM && choices)
    return pni_yerror(d, pni_ymap_key_node(map, "choices"), PN_ERR_PARSE,
                      "'choices' does not apply to %s (type %s): only enum has choices", where,
                      type_names[p->type]);
  return PN_OK;
}

static pn_status parse_param(const pni_ydoc *d, const pni_ynode *map, const char *feature,
                             pn_param_schema *p) {
  char where[256];
  snprintf(where, sizeof where, "a parameter of feature '%s'", feature);
  PN_TRY(pni_yexpect(d, map, PNI_YMAP, where));
  const pni_ynode *name, *type, *doc;
  PN_TRY(pni_yreq_scalar(d, map, "name", where, &name));
  PN_TRY(dup_text(d, name, &p->name));
  snprintf(where, sizeof where, "parameter '%s' of feature '%s'", p->name, feature);
  PN_TRY(pni_ycheck_keys(d, map, param_keys, COUNT(param_keys), where));
  PN_TRY(pni_yreq_scalar(d, map, "type", where, &type));
  PN_TRY(parse_type(d, type, where, &p->type));
  PN_TRY(pni_yopt_scalar(d, map, "doc", &doc));
  PN_TRY(dup_text(d, doc, &p->doc));
  PN_TRY(parse_bound(d, map, "min", p, where, &p->has_min, &p->min));
  PN_TRY(parse_bound(d, map, "max", p, where, &p->has_max, &p->max));
  PN_TRY(check_param_shape(d, map, p, where));
  const pni_ynode *choices = pni_ymap_get(map, "choices");
  if (choices) PN_TRY(parse_choices(d, choices, where, p));
  const pni_ynode *def = pni_ymap_get(map, "default");
  if (def) PN_TRY(default_text(d, def, p, where, &p->default_value));
  if (p->default_value && pni_param_check(p, p->default_value) != PN_OK)
    return pni_yerror(d, def, PN_ERR_PARSE, "bad default for %s: %s", where, pn_last_error());
  return PN_OK;
}

static pn_status parse_params(const pni_ydoc *d, const pni_ynode *seq, pn_feature_info *f) {
  if (!seq || pni_yis_null(seq)) return PN_OK;
  char what[256];
  snprintf(what, sizeof what, "params of feature '%s'", f->name);
  PN_TRY(pni_yexpect(d, seq, PNI_YSEQ, what));
  f->params = calloc((size_t)(seq->n ? seq->n : 1), sizeof *f->params);
  if (!f->params) return nomem(d);
  for (int i = 0; i < seq->n; i++) {
    f->n_params = i + 1;
    PN_TRY(parse_param(d, seq->kids[i], f->name, &f->params[i]));
    for (int j = 0; j < i; j++)
      if (strcmp(f->params[j].name, f->params[i].name) == 0)
        return pni_yerror(d, pni_ymap_get(seq->kids[i], "name"), PN_ERR_PARSE,
                          "parameter '%s' of feature '%s' is declared twice", f->params[i].name,
                          f->name);
  }
  return PN_OK;
}

/* ---- features */

static pn_status parse_kind(const pni_ydoc *d, const pni_ynode *n, const char *feature,
                            char **out) {
  for (int k = 0; k < pni_n_feature_kinds; k++)
    if (strcmp(n->text, pni_feature_kinds[k]) == 0) return dup_text(d, n, out);
  const char *near = pn_suggest(n->text, pni_feature_kinds, pni_n_feature_kinds);
  return pni_yerror(d, n, PN_ERR_PARSE,
                    "unknown kind '%s' for feature '%s'%s%s%s (kinds: layer, backend, loss, "
                    "optimizer, schedule, data, transform)",
                    n->text, feature, near ? " (did you mean '" : "", near ? near : "",
                    near ? "'?)" : "");
}

static pn_status parse_feature(const pni_ydoc *d, const pni_ynode *map, pn_manifest *m,
                               pn_feature_info *f) {
  f->manifest = m;
  PN_TRY(pni_yexpect(d, map, PNI_YMAP, "a feature"));
  const pni_ynode *name, *kind, *doc;
  PN_TRY(pni_yreq_scalar(d, map, "name", "a feature", &name));
  PN_TRY(dup_text(d, name, &f->name));
  char where[256];
  snprintf(where, sizeof where, "feature '%s'", f->name);
  PN_TRY(pni_ycheck_keys(d, map, feature_keys, COUNT(feature_keys), where));
  PN_TRY(pni_yreq_scalar(d, map, "kind", where, &kind));
  PN_TRY(parse_kind(d, kind, f->name, &f->kind));
  PN_TRY(pni_yopt_scalar(d, map, "doc", &doc));
  PN_TRY(dup_text(d, doc, &f->doc));
  return parse_params(d, pni_ymap_get(map, "params"), f);
}

static pn_status parse_features(const pni_ydoc *d, const pni_ynode *root, pn_manifest *m) {
  const pni_ynode *seq = pni_ymap_get(root, "features");
  if (!seq || pni_yis_null(seq))
    return pni_yerror(d, seq ? seq : root, PN_ERR_PARSE,
                      "missing required key 'features' in manifest");
  PN_TRY(pni_yexpect(d, seq, PNI_YSEQ, "features"));
  if (seq->n == 0)
    return pni_yerror(d, seq, PN_ERR_PARSE, "features must list at least one feature");
  m->features = calloc((size_t)seq->n, sizeof *m->features);
  if (!m->features) return nomem(d);
  for (int i = 0; i < seq->n; i++) {
    m->n_features = i + 1;
    PN_TRY(parse_feature(d, seq->kids[i], m, &m->features[i]));
    for (int j = 0; j < i; j++)
      if (strcmp(m->features[j].name, m->features[i].name) == 0)
        return pni_yerror(d, pni_ymap_get(seq->kids[i], "name"), PN_ERR_PARSE,
                          "duplicate feature '%s' (first at line %d)", m->features[i].name,
                          pni_ymap_get(seq->kids[j], "name")->line);
  }
  return PN_OK;
}

/* ---- the top level */

static pn_status parse_abi(const pni_ydoc *d, const pni_ynode *n, pn_manifest *m) {
  int major, minor, used = 0;
  if (sscanf(n->text, "%d.%d%n", &major, &minor, &used) != 2 || n->text[used] || major < 0 ||
      minor < 0 || n->text[0] < '0' || n->text[0] > '9')
    return pni_yerror(d, n, PN_ERR_PARSE, "abi '%s' is not MAJOR.MINOR (e.g. %d.%d)", n->text,
                      PN_ABI_MAJOR, PN_ABI_MINOR);
  m->abi_major = major;
  m->abi_minor = minor;
  return PN_OK;
}

static char *join_path(const char *dir, const char *sub, const char *file) {
  char *s = NULL;
  if (asprintf(&s, "%s%s%s/%s", dir, sub[0] ? "/" : "", sub, file) < 0) return NULL;
  return s;
}

/* The library is resolved now, beside the manifest, then in .libs/ beside it
 * (an uninstalled libtool module). When neither exists the first candidate
 * is kept, and the load reports both. */
static pn_status resolve_library(const pni_ydoc *d, const pni_ynode *n, pni_manifest *pm) {
  const char *lib = n->text;
  char *mdir_copy = strdup(d->file), *lib_copy = strdup(lib), *lib_copy2 = strdup(lib);
  char *base = NULL;
  pn_status s = PN_OK;
  if (!mdir_copy || !lib_copy || !lib_copy2) {
    s = nomem(d);
    goto out;
  }
  char mdir[PATH_MAX];
  if (lib[0] == '/') {
    strcpy(mdir, "");
  } else if (!realpath(dirname(mdir_copy), mdir)) {
    s = pni_yerror(d, NULL, PN_ERR_IO, "cannot resolve the manifest's directory");
    goto out;
  }
  const char *ldir = dirname(lib_copy); /* "." for a bare file name */
  base = basename(lib_copy2);
  char *dir = NULL;
  int here = strcmp(ldir, ".") == 0;
  if (asprintf(&dir, "%s%s%s", mdir, lib[0] == '/' || here ? "" : "/", here ? "" : ldir) < 0) {
    s = nomem(d);
    goto out;
  }
  pm->tried[0] = join_path(dir, "", base);
  pm->tried[1] = join_path(dir, ".libs", base);
  free(dir);
  if (!pm->tried[0] || !pm->tried[1]) {
    s = nomem(d);
    goto out;
  }
  char real[PATH_MAX];
  for (int i = 0; i < 2 && !pm->pub.library; i++)
    if (access(pm->tried[i], F_OK) == 0 && realpath(pm->tried[i], real))
      pm->pub.library = strdup(real);
  if (!pm->pub.library) pm->pub.library = strdup(pm->tried[0]);
  if (!pm->pub.library) s = nomem(d);
out:
  free(mdir_copy);
  free(lib_copy);
  free(lib_copy2);
  return s;
}

static pn_status parse_manifest(const pni_ydoc *d, pni_manifest *pm) {
  pn_manifest *m = &pm->pub;
  const pni_ynode *root = d->root;
  if (!root) return pni_yerror(d, NULL, PN_ERR_PARSE, "empty manifest");
  PN_TRY(pni_yexpect(d, root, PNI_YMAP, "a manifest"));
  PN_TRY(pni_ycheck_keys(d, root, top_keys, COUNT(top_keys), "manifest"));
  const pni_ynode *plugin, *version, *abi, *library, *description;
  PN_TRY(pni_yreq_scalar(d, root, "plugin", "manifest", &plugin));
  PN_TRY(dup_text(d, plugin, &m->plugin));
  PN_TRY(pni_yreq_scalar(d, root, "version", "manifest", &version));
  PN_TRY(dup_text(d, version, &m->version));
  PN_TRY(pni_yreq_scalar(d, root, "abi", "manifest", &abi));
  PN_TRY(parse_abi(d, abi, m));
  PN_TRY(pni_yreq_scalar(d, root, "library", "manifest", &library));
  PN_TRY(pni_yopt_scalar(d, root, "description", &description));
  PN_TRY(dup_text(d, description, &m->description));
  PN_TRY(parse_features(d, root, m));
  return resolve_library(d, library, pm);
}

pn_status pn_manifest_load(const char *path, pn_manifest **out) {
  if (!out) return pn_error(PN_ERR_INVALID, "pn_manifest_load: out is NULL");
  *out = NULL;
  if (!path) return pn_error(PN_ERR_INVALID, "pn_manifest_load: path is NULL");
  pni_ydoc *d;
  PN_TRY(pni_ydoc_load(path, &d));
  pni_manifest *pm = calloc(1, sizeof *pm);
  pn_status s = pm && (pm->pub.path = strdup(path)) ? parse_manifest(d, pm) : nomem(d);
  pni_ydoc_free(d);
  if (s != PN_OK) {
    if (pm) pn_manifest_free(&pm->pub);
    return s;
  }
  *out = &pm->pub;
  return PN_OK;
}
