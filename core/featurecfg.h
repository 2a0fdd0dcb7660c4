/* A feature written in YAML, `{type: FEATURE, key: value ...}`, turned into
 * a checked pn_config: shared by pipelines and model files. */
#ifndef PLUGNET_FEATURECFG_H
#define PLUGNET_FEATURECFG_H

#include <plugnet/config.h>

#include "yamldoc.h"

/* Model files replace `$arg` values: given a value node, return the node
 * to use instead (the node itself when it is no reference), or NULL with
 * the error set. */
typedef const pni_ynode *(*pni_subst_fn)(void *user, const pni_ynode *value);

typedef struct pni_feature_src {
  const pni_ydoc *doc; /* for FILE:LINE:COL messages */
  const char *dir;     /* relative `path` parameters are resolved against it */
  pni_subst_fn subst;  /* may be NULL */
  void *user;
} pni_feature_src;

/* Reads `node`: the feature named by its `type` must exist and be of
 * `kind`; every key but `reserved` must be one of its parameters. Sets
 * *feature (malloc'd) and *cfg. */
pn_status pni_feature_config(const pni_feature_src *src, const pni_ynode *node, const char *kind,
                             const char *where, const char *const *reserved, int n_reserved,
                             char **feature, pn_config **cfg);

#endif
