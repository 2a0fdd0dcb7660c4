/* YAML files as a small tree of located nodes (see yamldoc.h). libyaml's
 * document API does the parsing; this file only copies its node graph into
 * a tree that owns its strings and knows where each node was written. */
#include "yamldoc.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <yaml.h>

#include <plugnet/registry.h>

/* Aliases are expanded into copies, so a few lines of anchors could ask for
 * billions of nodes (and a self-referencing anchor for infinitely many):
 * both limits turn such input into a parse error instead of a hang. */
#define MAX_DEPTH 64
#define MAX_NODES 200000

typedef struct conv {
  yaml_document_t *doc;
  pni_ydoc *d;
  int count;
} conv;

const char *pni_ykind_name(pni_ykind k) {
  switch (k) {
  case PNI_YSCALAR: return "a scalar";
  case PNI_YSEQ: return "a sequence";
  case PNI_YMAP: return "a mapping";
  }
  return "?";
}

static void node_free(pni_ynode *n) {
  if (!n) return;
  int kids = n->kind == PNI_YMAP ? 2 * n->n : n->kind == PNI_YSEQ ? n->n : 0;
  for (int i = 0; i < kids; i++) node_free(n->kids[i]);
  free(n->kids);
  free(n->text);
  free(n);
}

void pni_ydoc_free(pni_ydoc *d) {
  if (!d) return;
  node_free(d->root);
  free(d->file);
  free(d);
}

pn_status pni_yerror(const pni_ydoc *d, const pni_ynode *n, pn_status code, const char *fmt, ...) {
  char *msg = NULL;
  va_list ap;
  va_start(ap, fmt);
  int len = vasprintf(&msg, fmt, ap);
  va_end(ap);
  if (len < 0) return pn_error(code, "%s: (message lost: out of memory)", d->file);
  /* Nodes made by --set have no position in the file. */
  pn_status s = n && n->line ? pn_error(code, "%s:%d:%d: %s", d->file, n->line, n->col, msg)
                : n          ? pn_error(code, "%s (--set): %s", d->file, msg)
                             : pn_error(code, "%s: %s", d->file, msg);
  free(msg);
  return s;
}

static int cmp_key_index(const void *a, const void *b, void *kids_) {
  pni_ynode **kids = kids_;
  int ia = *(const int *)a, ib = *(const int *)b;
  int c = strcmp(kids[2 * ia]->text, kids[2 * ib]->text);
  return c ? c : (ia > ib) - (ia < ib);
}

/* Sorting the key indices finds duplicates in n log n, which matters for
 * fuzzed input with huge mappings. */
static pn_status check_unique_keys(const pni_ydoc *d, const pni_ynode *m) {
  if (m->n < 2) return PN_OK;
  int *idx = malloc(sizeof *idx * (size_t)m->n);
  if (!idx) return pn_error(PN_ERR_NOMEM, "%s: out of memory", d->file);
  for (int i = 0; i < m->n; i++) idx[i] = i;
  qsort_r(idx, (size_t)m->n, sizeof *idx, cmp_key_index, m->kids);
  pn_status s = PN_OK;
  for (int i = 1; i < m->n && s == PN_OK; i++) {
    const pni_ynode *first = m->kids[2 * idx[i - 1]], *again = m->kids[2 * idx[i]];
    if (strcmp(first->text, again->text) == 0)
      s = pni_yerror(d, again, PN_ERR_PARSE, "duplicate key '%s' (first at line %d)", again->text,
                     first->line);
  }
  free(idx);
  return s;
}

static pn_status convert(conv *c, yaml_node_t *yn, int depth, pni_ynode **out);

static pn_status convert_kids(conv *c, pni_ynode *n, const yaml_node_item_t *items, int count,
                              int depth) {
  n->kids = calloc((size_t)(count ? count : 1), sizeof *n->kids);
  if (!n->kids) return pn_error(PN_ERR_NOMEM, "%s: out of memory", c->d->file);
  for (int i = 0; i < count; i++) {
    yaml_node_t *kid = yaml_document_get_node(c->doc, items[i]);
    PN_TRY(convert(c, kid, depth + 1, &n->kids[i]));
  }
  return PN_OK;
}

static pn_status convert_map(conv *c, pni_ynode *n, yaml_node_t *yn, int depth) {
  int pairs = (int)(yn->data.mapping.pairs.top - yn->data.mapping.pairs.start);
  yaml_node_item_t *items = calloc((size_t)(2 * pairs + 1), sizeof *items);
  if (!items) return pn_error(PN_ERR_NOMEM, "%s: out of memory", c->d->file);
  for (int i = 0; i < pairs; i++) {
    items[2 * i] = yn->data.mapping.pairs.start[i].key;
    items[2 * i + 1] = yn->data.mapping.pairs.start[i].value;
  }
  n->n = pairs; /* before converting, so that a failure frees what was made */
  pn_status s = convert_kids(c, n, items, 2 * pairs, depth);
  free(items);
  if (s != PN_OK) return s;
  for (int i = 0; i < pairs; i++) {
    const pni_ynode *k = pni_ymap_key(n, i);
    if (k->kind != PNI_YSCALAR)
      return pni_yerror(c->d, k, PN_ERR_PARSE, "a mapping key must be a scalar, not %s",
                        pni_ykind_name(k->kind));
  }
  return check_unique_keys(c->d, n);
}

static pn_status convert(conv *c, yaml_node_t *yn, int depth, pni_ynode **out) {
  *out = NULL;
  if (!yn) return pn_error(PN_ERR_PARSE, "%s: broken YAML node graph", c->d->file);
  pni_ynode *n = calloc(1, sizeof *n);
  if (!n) return pn_error(PN_ERR_NOMEM, "%s: out of memory", c->d->file);
  *out = n;
  n->line = (int)yn->start_mark.line + 1;
  n->col = (int)yn->start_mark.column + 1;
  if (depth > MAX_DEPTH)
    return pni_yerror(c->d, n, PN_ERR_PARSE, "nested deeper than %d levels", MAX_DEPTH);
  if (++c->count > MAX_NODES)
    return pni_yerror(c->d, n, PN_ERR_PARSE, "more than %d nodes once aliases are expanded",
                      MAX_NODES);
  switch (yn->type) {
  case YAML_SCALAR_NODE:
    n->kind = PNI_YSCALAR;
    n->plain = yn->data.scalar.style == YAML_PLAIN_SCALAR_STYLE;
    n->text = strndup((const char *)yn->data.scalar.value, yn->data.scalar.length);
    return n->text ? PN_OK : pn_error(PN_ERR_NOMEM, "%s: out of memory", c->d->file);
  case YAML_SEQUENCE_NODE:
    n->kind = PNI_YSEQ;
    n->n = (int)(yn->data.sequence.items.top - yn->data.sequence.items.start);
    return convert_kids(c, n, yn->data.sequence.items.start, n->n, depth);
  case YAML_MAPPING_NODE: n->kind = PNI_YMAP; return convert_map(c, n, yn, depth);
  default: return pni_yerror(c->d, n, PN_ERR_PARSE, "unexpected YAML node type %d", (int)yn->type);
  }
}

static pn_status parser_error(const char *file, const yaml_parser_t *p) {
  if (p->error == YAML_MEMORY_ERROR)
    return pn_error(PN_ERR_NOMEM, "%s: out of memory while parsing", file);
  const char *problem = p->problem ? p->problem : "malformed YAML";
  /* Reader errors (bad encoding) carry a byte offset, not a mark; the
   * parser's current mark is where reading stopped. */
  yaml_mark_t at = p->error == YAML_READER_ERROR ? p->mark : p->problem_mark;
  if (p->context)
    return pn_error(PN_ERR_PARSE, "%s:%zu:%zu: %s (%s at line %zu, column %zu)", file, at.line + 1,
                    at.column + 1, problem, p->context, p->context_mark.line + 1,
                    p->context_mark.column + 1);
  return pn_error(PN_ERR_PARSE, "%s:%zu:%zu: %s", file, at.line + 1, at.column + 1, problem);
}

/* A second document is refused: pipeline and manifest files are one each,
 * and a stray `---` usually means two files were pasted together. */
static pn_status refuse_second_document(pni_ydoc *d, yaml_parser_t *p) {
  yaml_document_t next;
  if (!yaml_parser_load(p, &next)) return parser_error(d->file, p);
  yaml_node_t *root = yaml_document_get_root_node(&next);
  pn_status s = PN_OK;
  if (root)
    s = pn_error(PN_ERR_PARSE, "%s:%zu:%zu: only one YAML document is allowed per file", d->file,
                 next.start_mark.line + 1, next.start_mark.column + 1);
  yaml_document_delete(&next);
  return s;
}

static pn_status load_from(yaml_parser_t *p, const char *name, pni_ydoc **out) {
  *out = NULL;
  pni_ydoc *d = calloc(1, sizeof *d);
  if (!d || !(d->file = strdup(name))) {
    free(d);
    return pn_error(PN_ERR_NOMEM, "%s: out of memory", name);
  }
  yaml_document_t doc;
  if (!yaml_parser_load(p, &doc)) {
    pn_status s = parser_error(name, p);
    pni_ydoc_free(d);
    return s;
  }
  yaml_node_t *root = yaml_document_get_root_node(&doc);
  pn_status s = PN_OK;
  if (root) {
    conv c = {&doc, d, 0};
    s = convert(&c, root, 0, &d->root);
  }
  yaml_document_delete(&doc);
  if (s == PN_OK) s = refuse_second_document(d, p);
  if (s != PN_OK) {
    pni_ydoc_free(d);
    return s;
  }
  *out = d;
  return PN_OK;
}

pn_status pni_ydoc_load(const char *path, pni_ydoc **out) {
  *out = NULL;
  FILE *f = fopen(path, "rb");
  if (!f) return pn_error(PN_ERR_IO, "%s: %s", path, strerror(errno));
  yaml_parser_t p;
  if (!yaml_parser_initialize(&p)) {
    fclose(f);
    return pn_error(PN_ERR_NOMEM, "%s: cannot initialise the YAML parser", path);
  }
  yaml_parser_set_input_file(&p, f);
  pn_status s = load_from(&p, path, out);
  yaml_parser_delete(&p);
  fclose(f);
  return s;
}

pn_status pni_ydoc_parse(const char *name, const char *text, size_t len, pni_ydoc **out) {
  *out = NULL;
  yaml_parser_t p;
  if (!yaml_parser_initialize(&p))
    return pn_error(PN_ERR_NOMEM, "%s: cannot initialise the YAML parser", name);
  yaml_parser_set_input_string(&p, (const unsigned char *)text, len);
  pn_status s = load_from(&p, name, out);
  yaml_parser_delete(&p);
  return s;
}

pni_ynode *pni_ymap_key_node(const pni_ynode *map, const char *key) {
  if (!map || map->kind != PNI_YMAP) return NULL;
  for (int i = 0; i < map->n; i++)
    if (strcmp(pni_ymap_key(map, i)->text, key) == 0) return pni_ymap_key(map, i);
  return NULL;
}

pni_ynode *pni_ymap_get(const pni_ynode *map, const char *key) {
  if (!map || map->kind != PNI_YMAP) return NULL;
  for (int i = 0; i < map->n; i++)
    if (strcmp(pni_ymap_key(map, i)->text, key) == 0) return pni_ymap_value(map, i);
  return NULL;
}

int pni_yis_null(const pni_ynode *n) {
  if (!n || n->kind != PNI_YSCALAR || !n->plain) return 0;
  static const char *const nulls[] = {"", "~", "null", "Null", "NULL"};
  for (size_t i = 0; i < sizeof nulls / sizeof *nulls; i++)
    if (strcmp(n->text, nulls[i]) == 0) return 1;
  return 0;
}

pn_status pni_yexpect(const pni_ydoc *d, const pni_ynode *n, pni_ykind kind, const char *what) {
  if (n && n->kind == kind) return PN_OK;
  if (!n) return pni_yerror(d, NULL, PN_ERR_PARSE, "%s must be %s", what, pni_ykind_name(kind));
  return pni_yerror(d, n, PN_ERR_PARSE, "%s must be %s, not %s", what, pni_ykind_name(kind),
                    pni_ykind_name(n->kind));
}

pn_status pni_ycheck_keys(const pni_ydoc *d, const pni_ynode *map, const char *const *allowed,
                          int n_allowed, const char *where) {
  for (int i = 0; i < map->n; i++) {
    const pni_ynode *k = pni_ymap_key(map, i);
    int known = 0;
    for (int j = 0; j < n_allowed && !known; j++) known = strcmp(k->text, allowed[j]) == 0;
    if (known) continue;
    const char *near = pn_suggest(k->text, allowed, n_allowed);
    if (near)
      return pni_yerror(d, k, PN_ERR_PARSE, "unknown key '%s' in %s (did you mean '%s'?)", k->text,
                        where, near);
    return pni_yerror(d, k, PN_ERR_PARSE, "unknown key '%s' in %s", k->text, where);
  }
  return PN_OK;
}

pn_status pni_yreq_scalar(const pni_ydoc *d, const pni_ynode *map, const char *key,
                          const char *where, const pni_ynode **out) {
  *out = NULL;
  const pni_ynode *v = pni_ymap_get(map, key);
  if (!v || pni_yis_null(v))
    return pni_yerror(d, v ? v : map, PN_ERR_PARSE, "missing required key '%s' in %s", key, where);
  if (v->kind != PNI_YSCALAR)
    return pni_yerror(d, v, PN_ERR_PARSE, "'%s' in %s must be a scalar, not %s", key, where,
                      pni_ykind_name(v->kind));
  *out = v;
  return PN_OK;
}

pn_status pni_yopt_scalar(const pni_ydoc *d, const pni_ynode *map, const char *key,
                          const pni_ynode **out) {
  *out = NULL;
  const pni_ynode *v = pni_ymap_get(map, key);
  if (!v || pni_yis_null(v)) return PN_OK;
  if (v->kind != PNI_YSCALAR)
    return pni_yerror(d, v, PN_ERR_PARSE, "'%s' must be a scalar, not %s", key,
                      pni_ykind_name(v->kind));
  *out = v;
  return PN_OK;
}

int pni_text_int(const char *s, int64_t *out) {
  if (!s || !*s || (*s != '-' && *s != '+' && (*s < '0' || *s > '9'))) return 0;
  char *end;
  errno = 0;
  long long v = strtoll(s, &end, 10);
  if (errno || *end) return 0;
  *out = (int64_t)v;
  return 1;
}

int pni_text_double(const char *s, double *out) {
  if (!s || !*s || !(*s == '-' || *s == '+' || *s == '.' || (*s >= '0' && *s <= '9'))) return 0;
  char *end;
  errno = 0;
  double v = strtod(s, &end);
  if (errno == ERANGE && fabs(v) > 1.0) return 0;
  if (*end || !isfinite(v)) return 0;
  *out = v;
  return 1;
}

int pni_text_bool(const char *s, int *out) {
  static const char *const yes[] = {"true", "yes", "on", "1"};
  static const char *const no[] = {"false", "no", "off", "0"};
  if (!s) return 0;
  for (int i = 0; i < 4; i++) {
    if (strcasecmp(s, yes[i]) == 0) return *out = 1, 1;
    if (strcasecmp(s, no[i]) == 0) return *out = 0, 1;
  }
  return 0;
}

pn_status pni_yint(const pni_ydoc *d, const pni_ynode *n, const char *what, int64_t *out) {
  PN_TRY(pni_yexpect(d, n, PNI_YSCALAR, what));
  if (pni_text_int(n->text, out)) return PN_OK;
  return pni_yerror(d, n, PN_ERR_PARSE, "%s: '%s' is not an integer", what, n->text);
}

pn_status pni_ydouble(const pni_ydoc *d, const pni_ynode *n, const char *what, double *out) {
  PN_TRY(pni_yexpect(d, n, PNI_YSCALAR, what));
  if (pni_text_double(n->text, out)) return PN_OK;
  return pni_yerror(d, n, PN_ERR_PARSE, "%s: '%s' is not a number", what, n->text);
}

pn_status pni_ybool(const pni_ydoc *d, const pni_ynode *n, const char *what, int *out) {
  PN_TRY(pni_yexpect(d, n, PNI_YSCALAR, what));
  if (pni_text_bool(n->text, out)) return PN_OK;
  return pni_yerror(d, n, PN_ERR_PARSE, "%s: '%s' is not a boolean (true or false)", what, n->text);
}

/* ------------------------------------------------------------ edits (--set) */

void pni_ynode_free(pni_ynode *n) { node_free(n); }

pni_ynode *pni_ynode_scalar(const char *text) {
  pni_ynode *n = calloc(1, sizeof *n);
  if (n && !(n->text = strdup(text))) {
    free(n);
    n = NULL;
  }
  if (n) n->plain = 1;
  return n;
}

pni_ynode *pni_ynode_map(void) {
  pni_ynode *n = calloc(1, sizeof *n);
  if (n) n->kind = PNI_YMAP;
  return n;
}

pni_ynode *pni_ydoc_take_root(pni_ydoc *d) {
  pni_ynode *r = d->root;
  d->root = NULL;
  return r;
}

pn_status pni_ymap_put(pni_ynode *map, const char *key, pni_ynode *value) {
  for (int i = 0; i < map->n; i++) {
    if (strcmp(map->kids[2 * i]->text, key) == 0) {
      /* Keep the old position so later errors still point into the file. */
      if (!value->line)
        value->line = map->kids[2 * i + 1]->line, value->col = map->kids[2 * i + 1]->col;
      node_free(map->kids[2 * i + 1]);
      map->kids[2 * i + 1] = value;
      return PN_OK;
    }
  }
  pni_ynode **kids = realloc(map->kids, sizeof *kids * (size_t)(2 * map->n + 2));
  pni_ynode *k = pni_ynode_scalar(key);
  if (!kids || !k) {
    if (kids) map->kids = kids;
    free(k);
    return pn_error(PN_ERR_NOMEM, "out of memory applying an override");
  }
  map->kids = kids;
  kids[2 * map->n] = k;
  kids[2 * map->n + 1] = value;
  map->n++;
  return PN_OK;
}

char *pni_yseq_text(const pni_ynode *seq) {
  size_t cap = 3;
  for (int i = 0; i < seq->n; i++) cap += strlen(seq->kids[i]->text) + 2;
  char *s = malloc(cap);
  if (!s) return NULL;
  strcpy(s, "[");
  for (int i = 0; i < seq->n; i++) {
    if (i) strcat(s, ", ");
    strcat(s, seq->kids[i]->text);
  }
  strcat(s, "]");
  return s;
}
