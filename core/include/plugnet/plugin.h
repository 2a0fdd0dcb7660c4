/* The plugin ABI: what a third-party plugin author includes.
 *
 * A plugin is a shared object plus a YAML manifest. It exports exactly one
 * symbol, the data object `pn_plugin_descriptor` (use PN_PLUGIN_DEFINE). The
 * loader reads and checks it (ABI version, size, required fields) before any
 * plugin code runs, then calls init(), which registers every feature the
 * manifest declares, and nothing else. See docs/PLUGINS.md. */
#ifndef PLUGNET_PLUGIN_H
#define PLUGNET_PLUGIN_H

#include <stddef.h>
#include <stdint.h>
#include <plugnet/device.h>
#include <plugnet/layer.h>
#include <plugnet/op.h>
#include <plugnet/status.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Same major required; a plugin's minor must not exceed the core's. */
#define PN_ABI_MAJOR 1
#define PN_ABI_MINOR 0

#define PN_PLUGIN_SYMBOL "pn_plugin_descriptor"

#if defined(__GNUC__)
#define PN_EXPORT __attribute__((visibility("default")))
#else
#define PN_EXPORT
#endif

typedef struct pn_plugin_ctx pn_plugin_ctx;

typedef struct pn_plugin_desc {
  uint32_t abi_major;
  uint32_t abi_minor;
  uint32_t desc_size; /* sizeof(pn_plugin_desc) the plugin was built with */
  uint32_t reserved0;
  const char *name;    /* must equal the manifest's `plugin:` */
  const char *version; /* must equal the manifest's `version:` */
  pn_status (*init)(pn_plugin_ctx *ctx);
  void (*fini)(void); /* optional: undo init before dlclose */
  const void *reserved[8];
} pn_plugin_desc;

#define PN_PLUGIN_DEFINE(name_, version_, init_, fini_)                                            \
  PN_EXPORT const pn_plugin_desc pn_plugin_descriptor = {PN_ABI_MAJOR,                             \
                                                         PN_ABI_MINOR,                             \
                                                         (uint32_t)sizeof(pn_plugin_desc),         \
                                                         0,                                        \
                                                         (name_),                                  \
                                                         (version_),                               \
                                                         (init_),                                  \
                                                         (fini_),                                  \
                                                         {0}}

/* Registration, only from init. `feature` must be declared in the manifest
 * with the matching kind. */
pn_status pn_plugin_add_layer(pn_plugin_ctx *ctx, const char *feature, const pn_layer_iface *iface);
pn_status pn_plugin_add_device(pn_plugin_ctx *ctx, const char *feature, const char *device_name,
                               const pn_device_iface *iface, void *device_ctx);
/* Kernels for a backend (the plugin's own or another's); op by name, so a
 * plugin can add kernels for ops it registers with pn_op_register(). */
pn_status pn_plugin_add_kernel(pn_plugin_ctx *ctx, const char *backend, const char *op,
                               pn_kernel_fn fn);
/* Any other kind (optimizer, loss, data ...): iface is kept and handed back
 * by pn_feature_iface(). */
pn_status pn_plugin_add_feature(pn_plugin_ctx *ctx, const char *kind, const char *feature,
                                const void *iface);
/* The plugin's name, for messages. */
const char *pn_plugin_ctx_name(const pn_plugin_ctx *ctx);

#ifdef __cplusplus
}
#endif
#endif
