/* A loss object: the feature's interface plus the context its create made.
 * Every error is prefixed with the feature's name. */
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <plugnet/loss.h>
#include <plugnet/registry.h>

struct pn_loss {
  const pn_loss_iface *iface;
  void *ctx;
  char *feature;
};

/* The fields the core reads must lie inside what the plugin was built with. */
#define IFACE_MIN_SIZE (offsetof(pn_loss_iface, target_is_index) + sizeof(int))

static pn_status get_iface(const char *feature, const pn_loss_iface **out) {
  const void *iface = NULL;
  PN_TRY(pn_feature_iface(feature, "loss", &iface));
  const pn_loss_iface *li = iface;
  if (li->size < IFACE_MIN_SIZE || !li->create || !li->forward)
    return pn_error(PN_ERR_PLUGIN, "loss '%s': interface lacks create or forward (size %zu)",
                    feature, li->size);
  *out = li;
  return PN_OK;
}

/* Runs the plugin's create on cfg, or on the manifest's defaults. */
static pn_status create_ctx(const pn_loss_iface *li, const char *feature, const pn_config *cfg,
                            void **ctx) {
  pn_config *own = NULL;
  const pn_feature_info *f = pn_config_feature(cfg);
  if (cfg && f && strcmp(f->name, feature) != 0)
    return pn_error(PN_ERR_INVALID, "loss '%s' given the parameters of '%s'", feature, f->name);
  if (!cfg) {
    if (!(f = pn_registry_find(feature))) return PN_ERR_NOT_FOUND;
    if (!(own = pn_config_new(f))) return pn_error(PN_ERR_NOMEM, "out of memory");
    cfg = own;
  }
  pn_status s = pn_config_check(cfg);
  if (s == PN_OK) s = li->create(cfg, ctx);
  pn_config_free(own);
  return s;
}

pn_status pn_loss_create(const char *feature, const pn_config *cfg, pn_loss **out) {
  const pn_loss_iface *li = NULL;
  *out = NULL;
  PN_TRY(get_iface(feature, &li));
  pn_loss *l = calloc(1, sizeof *l);
  if (!l || !(l->feature = strdup(feature))) {
    free(l);
    return pn_error(PN_ERR_NOMEM, "out of memory creating loss '%s'", feature);
  }
  l->iface = li;
  pn_status s = create_ctx(li, feature, cfg, &l->ctx);
  if (s != PN_OK) {
    l->ctx = NULL;
    pn_loss_free(l);
    return pn_error_prefix(s, "loss '%s': ", feature);
  }
  *out = l;
  return PN_OK;
}

pn_status pn_loss_forward(pn_loss *l, pn_tensor *pred, pn_tensor *target, pn_tensor **loss) {
  *loss = NULL;
  if (!pred || !target)
    return pn_error(PN_ERR_INVALID, "loss '%s': %s is NULL", l->feature,
                    pred ? "target" : "prediction");
  pn_status s = l->iface->forward(l->ctx, pred, target, loss);
  if (s == PN_OK && !*loss) s = pn_error(PN_ERR_PLUGIN, "returned no loss");
  if (s == PN_OK && pn_tensor_numel(*loss) != 1) {
    pn_tensor_unref(*loss);
    *loss = NULL;
    s = pn_error(PN_ERR_PLUGIN, "returned a loss of more than one element");
  }
  if (s != PN_OK) return pn_error_prefix(s, "loss '%s': ", l->feature);
  return PN_OK;
}

int pn_loss_target_is_index(const pn_loss *l) { return l->iface->target_is_index; }

void pn_loss_free(pn_loss *l) {
  if (!l) return;
  if (l->ctx && l->iface->destroy) l->iface->destroy(l->ctx);
  free(l->feature);
  free(l);
}
