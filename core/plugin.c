/* Opening one plugin: the descriptor is checked against the core and the
 * manifest before any plugin code runs, init registers features through the
 * pn_plugin_add_* calls below, and the result must match the manifest
 * exactly. Every message names the plugin, so a user can tell which
 * third-party library is at fault. */
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <plugnet/log.h>

#include "internal.h"
#include "plugin_internal.h"

typedef struct registration {
  int done;
  const void *iface;
} registration;

struct pn_plugin_ctx {
  pni_plugin *p;
  int in_init;
  char *disagree; /* the first manifest/descriptor disagreement seen during init */
};

struct pni_plugin {
  const pn_manifest *m;
  void *handle;
  const pn_plugin_desc *desc;
  registration *regs; /* parallel to m->features */
  char **foreign;     /* backends, not this plugin's own, that it added kernels to */
  int n_foreign;
  pn_plugin_ctx ctx;
};

/* The descriptor fields a plugin must provide, up to and including fini. */
#define DESC_MIN_SIZE (offsetof(pn_plugin_desc, fini) + sizeof(((pn_plugin_desc *)0)->fini))

static int feature_index(const pn_manifest *m, const char *name) {
  for (int i = 0; name && i < m->n_features; i++)
    if (strcmp(m->features[i].name, name) == 0) return i;
  return -1;
}

static void plugin_free(pni_plugin *p) {
  if (!p) return;
  for (int i = 0; i < p->n_foreign; i++) free(p->foreign[i]);
  free(p->foreign);
  free(p->regs);
  free(p->ctx.disagree);
  free(p);
}

/* ---- registration from init */

/* Remembers the first disagreement (a plugin may ignore our return value and
 * carry on) and returns it as the error. */
static pn_status disagree(pn_plugin_ctx *ctx, const char *detail) {
  const pn_manifest *m = ctx->p->m;
  pn_status s = pn_error(PN_ERR_PLUGIN,
                         "plugin '%s': manifest and descriptor disagree: %s (manifest %s, "
                         "library %s)",
                         m->plugin, detail, m->path, m->library);
  if (!ctx->disagree) ctx->disagree = strdup(pn_last_error());
  return s;
}

static pn_status check_ctx(const pn_plugin_ctx *ctx, const char *fn) {
  if (!ctx) return pn_error(PN_ERR_INVALID, "%s: ctx is NULL", fn);
  if (!ctx->in_init)
    return pn_error(PN_ERR_PLUGIN, "plugin '%s': %s called outside init", ctx->p->m->plugin, fn);
  return PN_OK;
}

/* Finds the manifest feature that a registration names and checks its kind. */
static pn_status claim(pn_plugin_ctx *ctx, const char *feature, const char *kind, int *index) {
  const pn_manifest *m = ctx->p->m;
  if (!feature) return pn_error(PN_ERR_INVALID, "plugin '%s': feature name is NULL", m->plugin);
  int i = feature_index(m, feature);
  char detail[512];
  if (i < 0) {
    snprintf(detail, sizeof detail, "init registers %s '%s', which the manifest does not declare",
             kind, feature);
    return disagree(ctx, detail);
  }
  const char *declared = m->features[i].kind;
  if (strcmp(declared, kind) != 0) {
    snprintf(detail, sizeof detail, "init registers '%s' as a %s, the manifest declares a %s",
             feature, kind, declared);
    return disagree(ctx, detail);
  }
  *index = i;
  return PN_OK;
}

pn_status pn_plugin_add_layer(pn_plugin_ctx *ctx, const char *feature,
                              const pn_layer_iface *iface) {
  PN_TRY(check_ctx(ctx, "pn_plugin_add_layer"));
  int i;
  PN_TRY(claim(ctx, feature, "layer", &i));
  const char *plugin = ctx->p->m->plugin;
  if (!iface || iface->size < offsetof(pn_layer_iface, destroy) + sizeof iface->destroy)
    return pn_error(PN_ERR_PLUGIN, "plugin '%s': layer '%s': %s", plugin, feature,
                    iface ? "pn_layer_iface.size is too small (set it to sizeof(pn_layer_iface))"
                          : "iface is NULL");
  if (!iface->build || !iface->forward)
    return pn_error(PN_ERR_PLUGIN, "plugin '%s': layer '%s' lacks build or forward", plugin,
                    feature);
  if (ctx->p->regs[i].done)
    return pn_error(PN_ERR_PLUGIN, "plugin '%s': layer '%s' registered twice", plugin, feature);
  ctx->p->regs[i].done = 1;
  ctx->p->regs[i].iface = iface;
  return PN_OK;
}

pn_status pn_plugin_add_device(pn_plugin_ctx *ctx, const char *feature, const char *device_name,
                               const pn_device_iface *iface, void *device_ctx) {
  PN_TRY(check_ctx(ctx, "pn_plugin_add_device"));
  int i;
  PN_TRY(claim(ctx, feature, "backend", &i));
  const char *plugin = ctx->p->m->plugin;
  if (!device_name || !iface)
    return pn_error(PN_ERR_PLUGIN, "plugin '%s': backend '%s': device name or iface is NULL",
                    plugin, feature);
  pn_status s = pni_device_add(device_name, feature, iface, device_ctx);
  if (s != PN_OK) return pn_error_prefix(s, "plugin '%s': backend '%s': ", plugin, feature);
  if (!ctx->p->regs[i].done) ctx->p->regs[i].iface = iface;
  ctx->p->regs[i].done = 1;
  return PN_OK;
}

static int own_backend(const pn_manifest *m, const char *backend) {
  int i = feature_index(m, backend);
  return i >= 0 && strcmp(m->features[i].kind, "backend") == 0;
}

static pn_status note_foreign(pni_plugin *p, const char *backend) {
  if (own_backend(p->m, backend)) return PN_OK;
  for (int i = 0; i < p->n_foreign; i++)
    if (strcmp(p->foreign[i], backend) == 0) return PN_OK;
  char **grown = realloc(p->foreign, sizeof *grown * (size_t)(p->n_foreign + 1));
  if (!grown || !(grown[p->n_foreign] = strdup(backend))) {
    if (grown) p->foreign = grown;
    return pn_error(PN_ERR_NOMEM, "plugin '%s': out of memory", p->m->plugin);
  }
  p->foreign = grown;
  p->n_foreign++;
  return PN_OK;
}

pn_status pn_plugin_add_kernel(pn_plugin_ctx *ctx, const char *backend, const char *op,
                               pn_kernel_fn fn) {
  PN_TRY(check_ctx(ctx, "pn_plugin_add_kernel"));
  const char *plugin = ctx->p->m->plugin;
  if (!backend || !op || !fn)
    return pn_error(PN_ERR_PLUGIN,
                    "plugin '%s': pn_plugin_add_kernel: backend, op and fn are "
                    "required",
                    plugin);
  /* By name, so that a kernel may come before (or without) the plugin that
   * defines its op: registering a name is idempotent. */
  int id = pn_op_lookup(op);
  if (id < 0) {
    PN_DEBUG("plugin '%s' adds a kernel for new op '%s'", plugin, op);
    id = pn_op_register(op);
  }
  if (id < 0) return pn_error_prefix(PN_ERR_PLUGIN, "plugin '%s': op '%s': ", plugin, op);
  PN_TRY(note_foreign(ctx->p, backend));
  pn_status s = pni_kernel_add(backend, id, fn);
  if (s != PN_OK)
    return pn_error_prefix(s, "plugin '%s': kernel for '%s' on '%s': ", plugin, op, backend);
  return PN_OK;
}

pn_status pn_plugin_add_feature(pn_plugin_ctx *ctx, const char *kind, const char *feature,
                                const void *iface) {
  PN_TRY(check_ctx(ctx, "pn_plugin_add_feature"));
  const char *plugin = ctx->p->m->plugin;
  if (!kind) return pn_error(PN_ERR_INVALID, "plugin '%s': kind is NULL", plugin);
  if (strcmp(kind, "backend") == 0)
    return pn_error(PN_ERR_PLUGIN,
                    "plugin '%s': register backend '%s' with "
                    "pn_plugin_add_device",
                    plugin, feature ? feature : "(null)");
  int i;
  PN_TRY(claim(ctx, feature, kind, &i));
  if (!iface)
    return pn_error(PN_ERR_PLUGIN, "plugin '%s': %s '%s': iface is NULL", plugin, kind, feature);
  if (ctx->p->regs[i].done)
    return pn_error(PN_ERR_PLUGIN, "plugin '%s': %s '%s' registered twice", plugin, kind, feature);
  ctx->p->regs[i].done = 1;
  ctx->p->regs[i].iface = iface;
  return PN_OK;
}

const char *pn_plugin_ctx_name(const pn_plugin_ctx *ctx) {
  return ctx && ctx->p ? ctx->p->m->plugin : "(no plugin)";
}

/* ---- loading */

static pn_status check_manifest_abi(const pn_manifest *m) {
  if (m->abi_major == PN_ABI_MAJOR && m->abi_minor <= PN_ABI_MINOR) return PN_OK;
  return pn_error(PN_ERR_ABI,
                  "plugin '%s': manifest %s says it was built for ABI %d.%d, this plugnet has "
                  "%d.%d; rebuild the plugin against this plugnet",
                  m->plugin, m->path, m->abi_major, m->abi_minor, PN_ABI_MAJOR, PN_ABI_MINOR);
}

static pn_status open_library(pni_plugin *p) {
  const pn_manifest *m = p->m;
  const pni_manifest *pm = pni_manifest_priv(m);
  if (access(m->library, F_OK) != 0) {
    if (pm->tried[1] && strcmp(pm->tried[0], pm->tried[1]) != 0)
      return pn_error(PN_ERR_NOT_FOUND,
                      "plugin '%s': library not found for manifest %s (tried %s and %s)", m->plugin,
                      m->path, pm->tried[0], pm->tried[1]);
    return pn_error(PN_ERR_NOT_FOUND, "plugin '%s': library not found for manifest %s (tried %s)",
                    m->plugin, m->path, m->library);
  }
  dlerror();
  p->handle = dlopen(m->library, RTLD_NOW | RTLD_LOCAL);
  if (!p->handle) {
    const char *why = dlerror();
    return pn_error(PN_ERR_PLUGIN, "plugin '%s' (manifest %s): cannot load %s: %s", m->plugin,
                    m->path, m->library, why ? why : "unknown dlopen error");
  }
  dlerror();
  p->desc = dlsym(p->handle, PN_PLUGIN_SYMBOL);
  if (!p->desc)
    return pn_error(PN_ERR_PLUGIN,
                    "plugin '%s': %s does not export the symbol '%s' (define it with "
                    "PN_PLUGIN_DEFINE from <plugnet/plugin.h>)",
                    m->plugin, m->library, PN_PLUGIN_SYMBOL);
  return PN_OK;
}

static pn_status disagree_desc(const pn_manifest *m, const char *field, const char *in_manifest,
                               const char *in_library) {
  return pn_error(PN_ERR_PLUGIN,
                  "plugin '%s': manifest and descriptor disagree: manifest %s says %s '%s', "
                  "library %s says '%s'",
                  m->plugin, m->path, field, in_manifest, m->library, in_library);
}

/* Reads only the descriptor's data: no plugin function runs before this
 * has accepted it. */
static pn_status check_descriptor(const pn_manifest *m, const pn_plugin_desc *d) {
  if (d->abi_major != PN_ABI_MAJOR || d->abi_minor > PN_ABI_MINOR)
    return pn_error(PN_ERR_ABI,
                    "plugin '%s': %s was built for ABI %u.%u, this plugnet has %d.%d; rebuild "
                    "the plugin against this plugnet",
                    m->plugin, m->library, d->abi_major, d->abi_minor, PN_ABI_MAJOR, PN_ABI_MINOR);
  if (d->desc_size < DESC_MIN_SIZE)
    return pn_error(PN_ERR_ABI,
                    "plugin '%s': the descriptor in %s is %u bytes, at least %zu expected",
                    m->plugin, m->library, d->desc_size, (size_t)DESC_MIN_SIZE);
  if (!d->name || !d->version)
    return pn_error(PN_ERR_PLUGIN, "plugin '%s': the descriptor in %s has no %s", m->plugin,
                    m->library, d->name ? "version" : "name");
  if (strcmp(d->name, m->plugin) != 0) return disagree_desc(m, "plugin", m->plugin, d->name);
  if (strcmp(d->version, m->version) != 0)
    return disagree_desc(m, "version", m->version, d->version);
  if ((unsigned)m->abi_major != d->abi_major || (unsigned)m->abi_minor != d->abi_minor) {
    char in_m[32], in_d[32];
    snprintf(in_m, sizeof in_m, "%d.%d", m->abi_major, m->abi_minor);
    snprintf(in_d, sizeof in_d, "%u.%u", d->abi_major, d->abi_minor);
    return disagree_desc(m, "abi", in_m, in_d);
  }
  if (!d->init)
    return pn_error(PN_ERR_PLUGIN, "plugin '%s': the descriptor in %s has no init function",
                    m->plugin, m->library);
  return PN_OK;
}

static pn_status check_all_registered(pni_plugin *p) {
  const pn_manifest *m = p->m;
  for (int i = 0; i < m->n_features; i++) {
    if (p->regs[i].done) continue;
    return pn_error(PN_ERR_PLUGIN,
                    "plugin '%s': manifest and descriptor disagree: manifest %s declares %s '%s' "
                    "but init in %s did not register it",
                    m->plugin, m->path, m->features[i].kind, m->features[i].name, m->library);
  }
  return PN_OK;
}

static pn_status run_init(pni_plugin *p) {
  const pn_manifest *m = p->m;
  pni_ops_init();
  pn_clear_error();
  p->ctx.p = p;
  p->ctx.in_init = 1;
  pn_status s = p->desc->init(&p->ctx);
  p->ctx.in_init = 0;
  if (p->ctx.disagree) return pn_error(PN_ERR_PLUGIN, "%s", p->ctx.disagree);
  if (s != PN_OK && !pn_last_error()[0])
    return pn_error(PN_ERR_PLUGIN, "plugin '%s': init failed (%s) without a message", m->plugin,
                    pn_status_name(s));
  if (s != PN_OK)
    return pn_error_prefix(PN_ERR_PLUGIN, "plugin '%s': init failed (%s): ", m->plugin,
                           pn_status_name(s));
  return check_all_registered(p);
}

void pni_plugin_remove_backends(pni_plugin *p) {
  if (!p) return;
  const pn_manifest *m = p->m;
  for (int i = 0; i < m->n_features; i++) {
    if (strcmp(m->features[i].kind, "backend") != 0) continue;
    pni_devices_remove_backend(m->features[i].name);
    pni_kernels_remove_backend(m->features[i].name);
  }
  for (int i = 0; i < p->n_foreign; i++) pni_kernels_remove_backend(p->foreign[i]);
}

/* After a failed init: its own backends go; kernels it added to other
 * backends cannot be removed one by one, so the library stays mapped rather
 * than leave those kernels pointing at unmapped code. */
static void undo_failed_init(pni_plugin *p) {
  const pn_manifest *m = p->m;
  for (int i = 0; i < m->n_features; i++) {
    if (strcmp(m->features[i].kind, "backend") != 0) continue;
    pni_devices_remove_backend(m->features[i].name);
    pni_kernels_remove_backend(m->features[i].name);
  }
  if (p->n_foreign > 0) {
    PN_WARN("plugin '%s' failed after adding kernels to backend '%s'; keeping %s mapped", m->plugin,
            p->foreign[0], m->library);
    p->handle = NULL;
  }
}

pn_status pni_plugin_load(const pn_manifest *m, pni_plugin **out) {
  *out = NULL;
  PN_TRY(check_manifest_abi(m));
  pni_plugin *p = calloc(1, sizeof *p);
  if (p) p->regs = calloc((size_t)m->n_features + 1, sizeof *p->regs);
  if (!p || !p->regs) {
    plugin_free(p);
    return pn_error(PN_ERR_NOMEM, "plugin '%s': out of memory", m->plugin);
  }
  p->m = m;
  pn_status s = open_library(p);
  if (s == PN_OK) s = check_descriptor(m, p->desc);
  if (s == PN_OK) {
    s = run_init(p);
    if (s != PN_OK) undo_failed_init(p);
  }
  if (s != PN_OK) {
    if (p->handle) dlclose(p->handle);
    plugin_free(p);
    return s;
  }
  PN_INFO("loaded plugin %s %s from %s", m->plugin, m->version, m->library);
  *out = p;
  return PN_OK;
}

void pni_plugin_fini(pni_plugin *p) {
  if (p && p->desc->fini) p->desc->fini();
}

void pni_plugin_close(pni_plugin *p) {
  if (!p) return;
  if (p->handle) dlclose(p->handle);
  plugin_free(p);
}

const void *pni_plugin_iface(const pni_plugin *p, const char *feature) {
  int i = p ? feature_index(p->m, feature) : -1;
  return i >= 0 && p->regs[i].done ? p->regs[i].iface : NULL;
}
