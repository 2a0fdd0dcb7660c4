#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <plugnet/registry.h>

#include "featurecfg.h"

static pn_status nomem(void) { return pn_error(PN_ERR_NOMEM, "out of memory reading a feature"); }

/* A value as config text: a scalar, or a list of scalars as "[a, b]". */
static pn_status value_text(const pni_ydoc *doc, const pni_ynode *n, const char *key, char **out) {
  if (n->kind == PNI_YSCALAR) return (*out = strdup(n->text)) ? PN_OK : nomem();
  if (n->kind != PNI_YSEQ)
    return pni_yerror(doc, n, PN_ERR_INVALID, "%s must be a value or a list, not a mapping", key);
  for (int i = 0; i < n->n; i++)
    if (n->kids[i]->kind != PNI_YSCALAR)
      return pni_yerror(doc, n->kids[i], PN_ERR_INVALID, "%s: lists hold plain values", key);
  return (*out = pni_yseq_text(n)) ? PN_OK : nomem();
}

static int is_reserved(const char *key, const char *const *reserved, int n) {
  for (int i = 0; i < n; i++)
    if (strcmp(key, reserved[i]) == 0) return 1;
  return 0;
}

static const pn_param_schema *schema_of(const pn_feature_info *f, const char *key) {
  for (int i = 0; i < f->n_params; i++)
    if (strcmp(f->params[i].name, key) == 0) return &f->params[i];
  return NULL;
}

static pn_status set_param(const pni_feature_src *src, pn_config *cfg, const pn_feature_info *f,
                           const char *key, const pni_ynode *val) {
  char *text = NULL;
  if (src->subst && !(val = src->subst(src->user, val))) return PN_ERR_INVALID;
  PN_TRY(value_text(src->doc, val, key, &text));
  const pn_param_schema *ps = schema_of(f, key);
  if (ps && ps->type == PN_PARAM_PATH && text[0] && text[0] != '/' && src->dir) {
    char *abs = NULL;
    if (asprintf(&abs, "%s/%s", src->dir, text) < 0) abs = NULL;
    free(text);
    if (!(text = abs)) return nomem();
  }
  pn_status s = pn_config_set(cfg, key, text);
  free(text);
  return s == PN_OK ? PN_OK : pni_yerror(src->doc, val, s, "%s", pn_last_error());
}

static pn_status fill_config(const pni_feature_src *src, const pni_ynode *node,
                             const pn_feature_info *f, const char *where,
                             const char *const *reserved, int n_reserved, pn_config *cfg) {
  for (int i = 0; i < node->n; i++) {
    const pni_ynode *k = pni_ymap_key(node, i);
    if (is_reserved(k->text, reserved, n_reserved)) continue;
    if (!schema_of(f, k->text)) {
      pn_config_set(cfg, k->text, ""); /* only for its "did you mean" message */
      return pni_yerror(src->doc, k, PN_ERR_INVALID, "%s: %s", where, pn_last_error());
    }
    PN_TRY(set_param(src, cfg, f, k->text, pni_ymap_value(node, i)));
  }
  if (pn_config_check(cfg) != PN_OK)
    return pni_yerror(src->doc, node, PN_ERR_INVALID, "%s: %s", where, pn_last_error());
  return PN_OK;
}

pn_status pni_feature_config(const pni_feature_src *src, const pni_ynode *node, const char *kind,
                             const char *where, const char *const *reserved, int n_reserved,
                             char **feature, pn_config **cfg) {
  const pni_ynode *type = NULL;
  PN_TRY(pni_yexpect(src->doc, node, PNI_YMAP, where));
  PN_TRY(pni_yreq_scalar(src->doc, node, "type", where, &type));
  const pn_feature_info *f = pn_registry_find(type->text);
  if (!f) return pni_yerror(src->doc, type, PN_ERR_NOT_FOUND, "%s", pn_last_error());
  if (strcmp(f->kind, kind) != 0)
    return pni_yerror(src->doc, type, PN_ERR_INVALID, "%s: '%s' is a %s, not a %s", where,
                      type->text, f->kind, kind);
  pn_config *c = pn_config_new(f);
  if (!c) return pni_yerror(src->doc, node, PN_ERR_INVALID, "%s", pn_last_error());
  pn_status s = fill_config(src, node, f, where, reserved, n_reserved, c);
  char *name = s == PN_OK ? strdup(f->name) : NULL;
  if (s == PN_OK && !name) s = nomem();
  if (s != PN_OK) {
    pn_config_free(c);
    return s;
  }
  *feature = name;
  *cfg = c;
  return PN_OK;
}
