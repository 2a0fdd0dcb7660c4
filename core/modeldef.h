/* Model descriptions in YAML (model files in share/models, and a pipeline's
 * model section) expanded into a flat graph: blocks instantiated with their
 * arguments, repeats unrolled, includes pulled in, node names made into
 * dotted paths (torchvision's state_dict prefixes). docs/MODELS.md has the
 * format. */
#ifndef PLUGNET_MODELDEF_H
#define PLUGNET_MODELDEF_H

#include <plugnet/config.h>
#include <plugnet/model.h>

#include "yamldoc.h"

typedef struct pni_mnode {
  char *name, *feature;
  pn_config *cfg;
  char **inputs; /* full node names, or "input"; n_inputs 0: the node before */
  int n_inputs;
} pni_mnode;

typedef struct pni_mdef {
  pn_shape input; /* ndim 0 when no description gave one */
  pni_mnode *nodes;
  int n_nodes, cap_nodes;
  char **outputs; /* n_outputs 0: the last node */
  int n_outputs;
} pni_mdef;

/* Expands the mapping `model` of `doc` (a file in `dir`). `args` are
 * "key=value" texts that override the description's args. */
pn_status pni_mdef_expand(const pni_ydoc *doc, const pni_ynode *model, const char *dir,
                          char *const *args, int n_args, pni_mdef *out);
void pni_mdef_clear(pni_mdef *d);
/* Builds the graph for samples of shape `input`. */
pn_status pni_mdef_build(const pni_mdef *d, const pn_shape *input, pn_model **out);

#endif
