/* A feature's parameter values, checked against its manifest schema. Every
 * value keeps the text it was given (for `plugnet plan` and messages) next
 * to its parsed form. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "plugin_internal.h"
#include "yamldoc.h"

typedef struct param_value {
  int has;
  char *text;
  int64_t i;
  double f;
  int b;
  int64_t *ints;
  int n_ints;
  double *floats;
  int n_floats;
} param_value;

struct pn_config {
  const pn_feature_info *feature;
  param_value *v; /* one per schema parameter, same order */
};

static void value_clear(param_value *v) {
  free(v->text);
  free(v->ints);
  free(v->floats);
  memset(v, 0, sizeof *v);
}

/* "[3, 3]", "3,3", "3 3" and "3" all give a list; `as_float` reads numbers
 * into *fout instead of integers into *out. */
static int parse_list(const char *text, int as_float, int64_t **out, double **fout, int *n) {
  if (out) *out = NULL;
  if (fout) *fout = NULL;
  *n = 0;
  char *s = strdup(text), *p = s;
  if (!s) return 0;
  while (*p == ' ' || *p == '\t') p++;
  int bracket = *p == '[';
  if (bracket) p++;
  char *end = p + strlen(p);
  while (end > p && (end[-1] == ' ' || end[-1] == '\t')) end--;
  if (bracket) {
    if (end == p || end[-1] != ']') return free(s), 0;
    end--;
  }
  *end = '\0';
  size_t cap = strlen(p) / 2 + 1;
  int64_t *vals = as_float ? NULL : malloc(sizeof *vals * cap);
  double *fvals = as_float ? malloc(sizeof *fvals * cap) : NULL;
  int ok = vals || fvals, count = 0;
  for (char *save = NULL, *tok = strtok_r(p, ", \t", &save); ok && tok;
       tok = strtok_r(NULL, ", \t", &save), count++)
    ok = as_float ? pni_text_double(tok, &fvals[count]) : pni_text_int(tok, &vals[count]);
  free(s);
  if (!ok) return free(vals), free(fvals), 0;
  if (out) *out = vals;
  if (fout) *fout = fvals;
  *n = count;
  return 1;
}

static int parse_ints(const char *text, int64_t **out, int *n) {
  return parse_list(text, 0, out, NULL, n);
}

static pn_status check_range(const pn_param_schema *p, const char *text, double x,
                             const char *elem) {
  const char *sep = elem ? " has " : " ";
  const char *what = elem ? elem : "is";
  if (p->has_min && x < p->min)
    return pn_error(PN_ERR_INVALID, "%s = %s%s%s below the minimum %.15g", p->name, text, sep, what,
                    p->min);
  if (p->has_max && x > p->max)
    return pn_error(PN_ERR_INVALID, "%s = %s%s%s above the maximum %.15g", p->name, text, sep, what,
                    p->max);
  return PN_OK;
}

static pn_status check_choice(const pn_param_schema *p, const char *text) {
  int n = 0;
  size_t len = 1;
  for (; p->choices && p->choices[n]; n++) {
    if (strcmp(p->choices[n], text) == 0) return PN_OK;
    len += strlen(p->choices[n]) + 2;
  }
  char *list = calloc(1, len);
  for (int i = 0; list && i < n; i++) {
    if (i) strcat(list, ", ");
    strcat(list, p->choices[i]);
  }
  const char *near = pn_suggest(text, (const char *const *)p->choices, n);
  pn_status s = near ? pn_error(PN_ERR_INVALID, "%s = '%s' is not one of: %s (did you mean '%s'?)",
                                p->name, text, list ? list : "?", near)
                     : pn_error(PN_ERR_INVALID, "%s = '%s' is not one of: %s", p->name, text,
                                list ? list : "?");
  free(list);
  return s;
}

static pn_status check_ints(const pn_param_schema *p, const char *text, param_value *v) {
  int64_t *vals;
  int n;
  if (!parse_ints(text, &vals, &n))
    return pn_error(PN_ERR_INVALID, "%s = '%s' is not a list of integers (e.g. [3, 3])", p->name,
                    text);
  pn_status s = PN_OK;
  for (int k = 0; k < n && s == PN_OK; k++) {
    char elem[32];
    snprintf(elem, sizeof elem, "%lld", (long long)vals[k]);
    s = check_range(p, text, (double)vals[k], elem);
  }
  if (s != PN_OK || !v) return free(vals), s;
  v->ints = vals;
  v->n_ints = n;
  v->i = n ? vals[0] : 0;
  v->f = (double)v->i;
  return PN_OK;
}

static pn_status check_floats(const pn_param_schema *p, const char *text, param_value *v) {
  double *vals;
  int n;
  if (!parse_list(text, 1, NULL, &vals, &n))
    return pn_error(PN_ERR_INVALID, "%s = '%s' is not a list of numbers (e.g. [0.5, 1])", p->name,
                    text);
  pn_status s = PN_OK;
  for (int k = 0; k < n && s == PN_OK; k++) {
    char elem[32];
    snprintf(elem, sizeof elem, "%g", vals[k]);
    s = check_range(p, text, vals[k], elem);
  }
  if (s != PN_OK || !v) return free(vals), s;
  v->floats = vals;
  v->n_floats = n;
  v->f = n ? vals[0] : 0;
  v->i = (int64_t)v->f;
  return PN_OK;
}

/* Parses text as p's type into v (which may be NULL to check only). */
static pn_status parse_value(const pn_param_schema *p, const char *text, param_value *v) {
  param_value tmp = {0};
  if (!v) v = &tmp;
  switch (p->type) {
  case PN_PARAM_INT:
    if (!pni_text_int(text, &v->i))
      return pn_error(PN_ERR_INVALID, "%s = '%s' is not an integer", p->name, text);
    v->f = (double)v->i;
    return check_range(p, text, (double)v->i, NULL);
  case PN_PARAM_FLOAT:
    if (!pni_text_double(text, &v->f))
      return pn_error(PN_ERR_INVALID, "%s = '%s' is not a number", p->name, text);
    v->i = (int64_t)v->f;
    return check_range(p, text, v->f, NULL);
  case PN_PARAM_BOOL:
    if (!pni_text_bool(text, &v->b))
      return pn_error(PN_ERR_INVALID, "%s = '%s' is not a boolean (true or false)", p->name, text);
    v->i = v->b;
    v->f = v->b;
    return PN_OK;
  case PN_PARAM_STRING:
  case PN_PARAM_PATH: return PN_OK;
  case PN_PARAM_ENUM: return check_choice(p, text);
  case PN_PARAM_INTS: return check_ints(p, text, v == &tmp ? NULL : v);
  case PN_PARAM_FLOATS: return check_floats(p, text, v == &tmp ? NULL : v);
  }
  return pn_error(PN_ERR_INTERNAL, "%s: unknown parameter type %d", p->name, (int)p->type);
}

pn_status pni_param_check(const pn_param_schema *p, const char *text) {
  return parse_value(p, text, NULL);
}

static pn_status store(pn_config *c, int k, const char *text) {
  const pn_param_schema *p = &c->feature->params[k];
  param_value v = {0};
  pn_status s = parse_value(p, text, &v);
  if (s != PN_OK) {
    value_clear(&v);
    return pn_error_prefix(s, "%s: ", c->feature->name);
  }
  if (!(v.text = strdup(text))) {
    value_clear(&v);
    return pn_error(PN_ERR_NOMEM, "%s: out of memory", c->feature->name);
  }
  v.has = 1;
  value_clear(&c->v[k]);
  c->v[k] = v;
  return PN_OK;
}

pn_config *pn_config_new(const pn_feature_info *feature) {
  if (!feature) {
    pn_error(PN_ERR_INVALID, "pn_config_new: feature is NULL");
    return NULL;
  }
  pn_config *c = calloc(1, sizeof *c);
  if (c) c->v = calloc((size_t)feature->n_params + 1, sizeof *c->v);
  if (!c || !c->v) {
    free(c);
    pn_error(PN_ERR_NOMEM, "%s: out of memory", feature->name);
    return NULL;
  }
  c->feature = feature;
  for (int k = 0; k < feature->n_params; k++) {
    const char *def = feature->params[k].default_value;
    if (def && store(c, k, def) != PN_OK) {
      pn_error_prefix(PN_ERR_INVALID, "bad default in %s: ",
                      feature->manifest ? feature->manifest->path : "manifest");
      pn_config_free(c);
      return NULL;
    }
  }
  return c;
}

pn_config *pn_config_clone(const pn_config *c) {
  pn_config *copy = c ? pn_config_new(c->feature) : NULL;
  for (int i = 0; copy && i < c->feature->n_params; i++) {
    if (!c->v[i].has || !c->v[i].text) continue;
    if (pn_config_set(copy, c->feature->params[i].name, c->v[i].text) != PN_OK) {
      pn_config_free(copy);
      return NULL;
    }
  }
  return copy;
}

void pn_config_free(pn_config *c) {
  if (!c) return;
  for (int k = 0; k < c->feature->n_params; k++) value_clear(&c->v[k]);
  free(c->v);
  free(c);
}

static int find(const pn_config *c, const char *key) {
  if (!c || !key) return -1;
  for (int k = 0; k < c->feature->n_params; k++)
    if (strcmp(c->feature->params[k].name, key) == 0) return k;
  return -1;
}

static pn_status unknown_key(const pn_config *c, const char *key) {
  const pn_feature_info *f = c->feature;
  const char **names = calloc((size_t)f->n_params + 1, sizeof *names);
  size_t len = 1;
  for (int k = 0; k < f->n_params; k++) len += strlen(f->params[k].name) + 2;
  char *list = calloc(1, len);
  for (int k = 0; names && list && k < f->n_params; k++) {
    names[k] = f->params[k].name;
    if (k) strcat(list, ", ");
    strcat(list, names[k]);
  }
  const char *near = names ? pn_suggest(key, names, f->n_params) : NULL;
  pn_status s;
  if (f->n_params == 0)
    s = pn_error(PN_ERR_NOT_FOUND, "%s: unknown parameter '%s' (%s takes no parameters)", f->name,
                 key, f->name);
  else if (near)
    s = pn_error(PN_ERR_NOT_FOUND, "%s: unknown parameter '%s' (did you mean '%s'?); known: %s",
                 f->name, key, near, list ? list : "?");
  else
    s = pn_error(PN_ERR_NOT_FOUND, "%s: unknown parameter '%s'; known: %s", f->name, key,
                 list ? list : "?");
  free(names);
  free(list);
  return s;
}

pn_status pn_config_set(pn_config *c, const char *key, const char *text) {
  if (!c || !key || !text) return pn_error(PN_ERR_INVALID, "pn_config_set: NULL argument");
  int k = find(c, key);
  if (k < 0) return unknown_key(c, key);
  return store(c, k, text);
}

static char *trim(char *s) {
  while (*s == ' ' || *s == '\t') s++;
  char *e = s + strlen(s);
  while (e > s && (e[-1] == ' ' || e[-1] == '\t')) *--e = '\0';
  return s;
}

/* Splits at commas outside brackets, so "kernel=[3,3],stride=2" works. */
pn_status pn_config_set_list(pn_config *c, const char *pairs) {
  if (!c || !pairs) return pn_error(PN_ERR_INVALID, "pn_config_set_list: NULL argument");
  char *buf = strdup(pairs);
  if (!buf) return pn_error(PN_ERR_NOMEM, "out of memory");
  pn_status s = PN_OK;
  char *start = buf;
  int depth = 0;
  for (char *p = buf; s == PN_OK; p++) {
    if (*p == '[') depth++;
    if (*p == ']' && depth > 0) depth--;
    if (*p && (*p != ',' || depth > 0)) continue;
    int last = *p == '\0';
    *p = '\0';
    char *item = trim(start), *eq = strchr(item, '=');
    if (*item && !eq)
      s = pn_error(PN_ERR_INVALID, "%s: '%s' is not KEY=VALUE", c->feature->name, item);
    else if (*item) {
      *eq = '\0';
      s = pn_config_set(c, trim(item), trim(eq + 1));
    }
    if (last) break;
    start = p + 1;
  }
  free(buf);
  return s;
}

pn_status pn_config_check(const pn_config *c) {
  if (!c) return pn_error(PN_ERR_INVALID, "pn_config_check: config is NULL");
  for (int k = 0; k < c->feature->n_params; k++) {
    const pn_param_schema *p = &c->feature->params[k];
    if (!c->v[k].has)
      return pn_error(PN_ERR_INVALID, "%s: missing required parameter '%s' (%s%s%s)",
                      c->feature->name, p->name, pni_param_type_name(p->type), p->doc ? ": " : "",
                      p->doc ? p->doc : "");
  }
  return PN_OK;
}

static const param_value *get(const pn_config *c, const char *key) {
  int k = find(c, key);
  return k >= 0 && c->v[k].has ? &c->v[k] : NULL;
}

int pn_config_has(const pn_config *c, const char *key) { return get(c, key) != NULL; }

int64_t pn_config_int(const pn_config *c, const char *key) {
  const param_value *v = get(c, key);
  return v ? v->i : 0;
}

double pn_config_float(const pn_config *c, const char *key) {
  const param_value *v = get(c, key);
  return v ? v->f : 0.0;
}

int pn_config_bool(const pn_config *c, const char *key) {
  const param_value *v = get(c, key);
  return v ? (v->b || v->i != 0) : 0;
}

const char *pn_config_str(const pn_config *c, const char *key) {
  const param_value *v = get(c, key);
  return v ? v->text : NULL;
}

int pn_config_ints(const pn_config *c, const char *key, int64_t *out, int max) {
  const param_value *v = get(c, key);
  if (!v) return 0;
  if (!v->ints) { /* an int parameter read as a list of one */
    if (max > 0 && out) out[0] = v->i;
    return 1;
  }
  for (int k = 0; k < v->n_ints && k < max && out; k++) out[k] = v->ints[k];
  return v->n_ints;
}

int pn_config_floats(const pn_config *c, const char *key, double *out, int max) {
  const param_value *v = get(c, key);
  if (!v) return 0;
  if (!v->floats) { /* a number read as a list of one */
    if (max > 0 && out) out[0] = v->f;
    return 1;
  }
  for (int k = 0; k < v->n_floats && k < max && out; k++) out[k] = v->floats[k];
  return v->n_floats;
}

const char *pn_config_text(const pn_config *c, const char *key) {
  int k = find(c, key);
  return k >= 0 && c->v[k].has ? c->v[k].text : NULL;
}

const pn_feature_info *pn_config_feature(const pn_config *c) { return c ? c->feature : NULL; }
