/* Discovery and the feature registry. Manifests are read without opening any
 * library: listing, inspecting and validating need only them. A plugin's
 * library is opened when one of its features is first used, and its
 * descriptor must agree with its manifest.
 *
 * Search order: each directory of PLUGNET_PLUGIN_PATH (colon separated), then
 * the installed plugin directory, or, for an uninstalled build, its own tree. */
#ifndef PLUGNET_REGISTRY_H
#define PLUGNET_REGISTRY_H

#include <plugnet/config.h>
#include <plugnet/status.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct pn_manifest pn_manifest;

struct pn_feature_info {
  char *name;
  char *kind; /* layer, backend, loss, optimizer, schedule, data, transform */
  char *doc;
  pn_param_schema *params;
  int n_params;
  const pn_manifest *manifest;
};

struct pn_manifest {
  char *path;    /* the manifest file */
  char *plugin;  /* the plugin's name */
  char *library; /* absolute path of the shared object */
  int abi_major, abi_minor;
  char *version;
  char *description;
  pn_feature_info *features;
  int n_features;
};

/* Parses one manifest file (no dlopen). Errors carry file:line:column. */
pn_status pn_manifest_load(const char *path, pn_manifest **out);
void pn_manifest_free(pn_manifest *m);

/* Scans the search path once (again after pn_registry_reset). Broken
 * manifests are errors: the first one is returned, the scan stops. */
pn_status pn_registry_scan(void);
void pn_registry_reset(void); /* unloads every plugin (fini, dlclose) */
/* The directories searched, in order, as one colon-separated string. */
const char *pn_registry_search_path(void);

int pn_registry_feature_count(void);
const pn_feature_info *pn_registry_feature_at(int i);
/* NULL with an error listing the nearest known names when unknown. */
const pn_feature_info *pn_registry_find(const char *name);

/* Opens the feature's plugin if needed and returns what it registered for
 * `name` (a pn_layer_iface for layers, ...). Checks `kind`. */
pn_status pn_feature_iface(const char *name, const char *kind, const void **iface);
/* Loads the plugin that provides `name` without fetching an interface. */
pn_status pn_registry_load(const pn_feature_info *f);
int pn_registry_is_loaded(const pn_manifest *m);

/* The edit-distance suggestion used by every "unknown ..." message:
 * returns the candidate nearest to `word`, or NULL if none is close. */
const char *pn_suggest(const char *word, const char *const *candidates, int n);

#ifdef __cplusplus
}
#endif
#endif
