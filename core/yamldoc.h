/* A small read-only YAML tree built with libyaml's document API, for
 * manifests and pipeline files. Every node keeps its 1-based line and column
 * so that errors can say "FILE:LINE:COL: ...". Aliases are expanded; mapping
 * keys must be scalars and unique. */
#ifndef PLUGNET_YAMLDOC_H
#define PLUGNET_YAMLDOC_H

#include <stddef.h>
#include <stdint.h>
#include <plugnet/status.h>

typedef enum pni_ykind { PNI_YSCALAR = 0, PNI_YSEQ, PNI_YMAP } pni_ykind;

typedef struct pni_ynode pni_ynode;
struct pni_ynode {
  pni_ykind kind;
  int line, col;
  char *text;       /* scalars only */
  int plain;        /* scalar written without quotes: `~`, `null` mean null */
  int n;            /* sequence: items; mapping: pairs */
  pni_ynode **kids; /* sequence: n items; mapping: key0, value0, key1, ... */
};

typedef struct pni_ydoc {
  char *file;      /* the name used in messages */
  pni_ynode *root; /* NULL for an empty document */
} pni_ydoc;

/* Parses the first (and only) document of a file. Syntax errors are
 * PN_ERR_PARSE "FILE:LINE:COL: problem"; an unreadable file is PN_ERR_IO. */
pn_status pni_ydoc_load(const char *path, pni_ydoc **out);
/* The same for text in memory; `name` stands for the file in messages. */
pn_status pni_ydoc_parse(const char *name, const char *text, size_t len, pni_ydoc **out);
void pni_ydoc_free(pni_ydoc *d);

const char *pni_ykind_name(pni_ykind k); /* "a scalar", "a sequence", "a mapping" */

/* Mapping access; NULL when `map` is not a mapping or lacks the key. */
pni_ynode *pni_ymap_get(const pni_ynode *map, const char *key);
pni_ynode *pni_ymap_key_node(const pni_ynode *map, const char *key);
static inline pni_ynode *pni_ymap_key(const pni_ynode *m, int i) { return m->kids[2 * i]; }
static inline pni_ynode *pni_ymap_value(const pni_ynode *m, int i) { return m->kids[2 * i + 1]; }

/* Whether a scalar means null (plain `~`, `null`, `Null`, `NULL` or empty). */
int pni_yis_null(const pni_ynode *n);

/* Sets the error "FILE:LINE:COL: message" for node n (the file alone when n
 * is NULL) and returns code. */
pn_status pni_yerror(const pni_ydoc *d, const pni_ynode *n, pn_status code, const char *fmt, ...)
    PN_PRINTF(4, 5);

/* Checks that n has the kind wanted: "FILE:L:C: `what` must be a mapping". */
pn_status pni_yexpect(const pni_ydoc *d, const pni_ynode *n, pni_ykind kind, const char *what);

/* Every key of `map` must be in `allowed`; otherwise "unknown key 'x' in
 * <where> (did you mean 'y'?)" at the key's position. */
pn_status pni_ycheck_keys(const pni_ydoc *d, const pni_ynode *map, const char *const *allowed,
                          int n_allowed, const char *where);

/* Fetches a required scalar value: missing key or another kind is an error. */
pn_status pni_yreq_scalar(const pni_ydoc *d, const pni_ynode *map, const char *key,
                          const char *where, const pni_ynode **out);
/* An optional scalar: *out = NULL when absent or null. */
pn_status pni_yopt_scalar(const pni_ydoc *d, const pni_ynode *map, const char *key,
                          const pni_ynode **out);

/* Text conversions shared by YAML and command-line values: 1 on success,
 * 0 when `s` is not entirely a base-10 integer / a finite number / a boolean
 * (true/false, yes/no, on/off, 1/0, any case). */
int pni_text_int(const char *s, int64_t *out);
int pni_text_double(const char *s, double *out);
int pni_text_bool(const char *s, int *out);

/* Scalar conversions with a located error naming `what` when the text is not
 * a number (or boolean). */
pn_status pni_yint(const pni_ydoc *d, const pni_ynode *n, const char *what, int64_t *out);
pn_status pni_ydouble(const pni_ydoc *d, const pni_ynode *n, const char *what, double *out);
pn_status pni_ybool(const pni_ydoc *d, const pni_ynode *n, const char *what, int *out);

/* A sequence of scalars (the caller has checked) as the text "[a, b, c]",
 * the form pn_config_set accepts for lists; NULL when out of memory. */
char *pni_yseq_text(const pni_ynode *seq);

/* Edits, for command-line overrides. New nodes have line 0 (no position);
 * pni_ymap_put takes `value`, replacing the key's value or appending it. */
pni_ynode *pni_ynode_scalar(const char *text);
pni_ynode *pni_ynode_map(void);
void pni_ynode_free(pni_ynode *n);
pni_ynode *pni_ydoc_take_root(pni_ydoc *d);
pn_status pni_ymap_put(pni_ynode *map, const char *key, pni_ynode *value);

#endif
