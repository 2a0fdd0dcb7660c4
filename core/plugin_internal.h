/* Shared between the loader's files (manifest, registry, plugin, config);
 * none of it is exported. */
#ifndef PLUGNET_PLUGIN_INTERNAL_H
#define PLUGNET_PLUGIN_INTERNAL_H

#include <plugnet/config.h>
#include <plugnet/plugin.h>
#include <plugnet/registry.h>

/* manifest.c allocates every pn_manifest inside this, so that the loader can
 * say which library paths it tried without re-deriving them. */
typedef struct pni_manifest {
  pn_manifest pub;
  char *tried[2]; /* absolute candidates for the library, in order; [1] may be NULL */
} pni_manifest;

static inline const pni_manifest *pni_manifest_priv(const pn_manifest *m) {
  return (const pni_manifest *)m;
}

/* The feature kinds a manifest may declare, and a parameter type's name. */
extern const char *const pni_feature_kinds[];
extern const int pni_n_feature_kinds;
const char *pni_param_type_name(pn_param_type t);

/* config.c: checks `text` as a value of parameter p (type, range, choices).
 * The message reads "KEY = VALUE is below the minimum 1"; callers prefix
 * the owner (feature name, or manifest position). */
pn_status pni_param_check(const pn_param_schema *p, const char *text);

/* plugin.c: one opened plugin. */
typedef struct pni_plugin pni_plugin;
/* Opens m's library, checks its descriptor against the core and the
 * manifest, runs init and checks what it registered. On failure nothing
 * stays registered and *out is NULL. */
pn_status pni_plugin_load(const pn_manifest *m, pni_plugin **out);
/* Unloading is split so that the registry can run every fini before any
 * library goes away (a plugin's fini may still use another's devices). */
void pni_plugin_fini(pni_plugin *p);
void pni_plugin_remove_backends(pni_plugin *p);
void pni_plugin_close(pni_plugin *p);
/* What init registered for `feature` (NULL if nothing). */
const void *pni_plugin_iface(const pni_plugin *p, const char *feature);

#endif
