/* Optimizers and learning-rate schedules: the core side of the "optimizer"
 * and "schedule" feature kinds.
 *
 * The core keeps each parameter's state tensors, so that checkpoints and
 * moving between backends treat every optimizer alike. Each parameter also
 * keeps its own update count, which is what the plugin's step sees: as in
 * PyTorch, a parameter that first gets a gradient late (a layer unfrozen in a
 * later stage) starts with fresh state and bias correction from step 1,
 * instead of inheriting the run's count with zeroed moments. */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <plugnet/autograd.h>
#include <plugnet/device.h>
#include <plugnet/ops.h>
#include <plugnet/optim.h>
#include <plugnet/registry.h>

typedef struct slot {
  pn_tensor *param; /* borrowed: parameters belong to the model */
  double lr_mult;
  int64_t steps; /* updates of this parameter: its next one is step steps + 1 */
  pn_tensor *state[PN_OPTIM_MAX_STATE];
} slot;

struct pn_optimizer {
  char *feature;
  const pn_optim_iface *iface;
  void *ctx;
  double base_lr, base_wd, weight_decay; /* weight_decay: base_wd unless a stage sets it */
  int64_t steps;
  slot *slots;
  int n_slots;
};

struct pn_schedule {
  char *feature;
  const pn_schedule_iface *iface;
  void *ctx;
};

/* Whether a plugin built against an older header knows the slot. */
#define HAS_SLOT(it, type, field) ((it)->size >= offsetof(type, field) + sizeof((it)->field))

/* The caller's config, or the feature's defaults in *own (freed by the
 * caller). A config made for another feature is refused: its keys would be
 * read under the wrong meaning. */
static pn_status resolve_config(const char *feature, const pn_config *cfg, pn_config **own,
                                const pn_config **out) {
  *own = NULL;
  if (cfg) {
    const pn_feature_info *f = pn_config_feature(cfg);
    if (f && strcmp(f->name, feature) != 0)
      return pn_error(PN_ERR_INVALID, "%s: given a config made for '%s'", feature, f->name);
    *out = cfg;
  } else {
    const pn_feature_info *f = pn_registry_find(feature);
    if (!f) return PN_ERR_NOT_FOUND;
    if (!(*own = pn_config_new(f))) return pn_error(PN_ERR_NOMEM, "%s: out of memory", feature);
    *out = *own;
  }
  return pn_config_check(*out);
}

/* ------------------------------------------------------------ optimizer */

static pn_status check_optim_iface(const char *feature, const pn_optim_iface *it) {
  if (!HAS_SLOT(it, pn_optim_iface, step) || !it->create || !it->step)
    return pn_error(PN_ERR_PLUGIN, "optimizer '%s': interface lacks create or step", feature);
  if (it->n_state < 0 || it->n_state > PN_OPTIM_MAX_STATE)
    return pn_error(PN_ERR_PLUGIN, "optimizer '%s': n_state %d is outside 0..%d", feature,
                    it->n_state, PN_OPTIM_MAX_STATE);
  for (int k = 0; k < it->n_state; k++)
    if (!it->state_names[k])
      return pn_error(PN_ERR_PLUGIN, "optimizer '%s': state %d has no name", feature, k);
  return PN_OK;
}

static pn_status read_hyper(pn_optimizer *o, const pn_config *cfg) {
  if (!pn_config_has(cfg, "lr") || !pn_config_has(cfg, "weight_decay"))
    return pn_error(PN_ERR_PLUGIN, "optimizer '%s': its manifest must declare lr and weight_decay",
                    o->feature);
  o->base_lr = pn_config_float(cfg, "lr");
  o->base_wd = o->weight_decay = pn_config_float(cfg, "weight_decay");
  return PN_OK;
}

static pn_status set_params(pn_optimizer *o, pn_tensor *const *params, int n) {
  if (n < 0 || (n > 0 && !params))
    return pn_error(PN_ERR_INVALID, "optimizer '%s': bad parameter list", o->feature);
  o->slots = calloc((size_t)(n ? n : 1), sizeof *o->slots);
  if (!o->slots) return pn_error(PN_ERR_NOMEM, "optimizer '%s': out of memory", o->feature);
  o->n_slots = n;
  for (int i = 0; i < n; i++) {
    if (!params[i])
      return pn_error(PN_ERR_INVALID, "optimizer '%s': parameter %d is NULL", o->feature, i);
    o->slots[i].param = params[i];
    o->slots[i].lr_mult = 1.0;
  }
  return PN_OK;
}

static pn_status optimizer_init(pn_optimizer *o, const pn_config *cfg, pn_tensor *const *params,
                                int n_params) {
  PN_TRY(read_hyper(o, cfg));
  PN_TRY(set_params(o, params, n_params));
  return o->iface->create(cfg, &o->ctx);
}

pn_status pn_optimizer_create(const char *feature, const pn_config *cfg, pn_tensor *const *params,
                              int n_params, pn_optimizer **out) {
  const void *iface = NULL;
  *out = NULL;
  PN_TRY(pn_feature_iface(feature, "optimizer", &iface));
  PN_TRY(check_optim_iface(feature, iface));
  pn_optimizer *o = calloc(1, sizeof *o);
  if (!o || !(o->feature = strdup(feature))) {
    free(o);
    return pn_error(PN_ERR_NOMEM, "out of memory creating optimizer '%s'", feature);
  }
  o->iface = iface;
  pn_config *own = NULL;
  pn_status s = resolve_config(feature, cfg, &own, &cfg);
  if (s == PN_OK) s = optimizer_init(o, cfg, params, n_params);
  pn_config_free(own);
  if (s != PN_OK) {
    pn_error_prefix(s, "optimizer '%s': ", feature);
    pn_optimizer_free(o);
    return s;
  }
  *out = o;
  return PN_OK;
}

static void slot_drop_state(slot *sl) {
  for (int k = 0; k < PN_OPTIM_MAX_STATE; k++) {
    pn_tensor_unref(sl->state[k]);
    sl->state[k] = NULL;
  }
}

void pn_optimizer_free(pn_optimizer *o) {
  if (!o) return;
  if (o->ctx && HAS_SLOT(o->iface, pn_optim_iface, destroy) && o->iface->destroy)
    o->iface->destroy(o->ctx);
  for (int i = 0; i < o->n_slots; i++) slot_drop_state(&o->slots[i]);
  free(o->slots);
  free(o->feature);
  free(o);
}

/* "fc1.weight.exp_avg", or the bare state name for an unnamed parameter. */
static void name_state(const pn_optimizer *o, const slot *sl, int k) {
  const char *sn = o->iface->state_names[k];
  if (!sl->param->name) {
    pn_tensor_set_name(sl->state[k], sn);
    return;
  }
  size_t n = strlen(sl->param->name) + strlen(sn) + 2;
  char *full = malloc(n);
  if (!full) return; /* a name is a convenience: keep the tensor unnamed */
  snprintf(full, n, "%s.%s", sl->param->name, sn);
  pn_tensor_set_name(sl->state[k], full);
  free(full);
}

static int has_state(const pn_optimizer *o, const slot *sl) {
  for (int k = 0; k < o->iface->n_state; k++)
    if (!sl->state[k]) return 0;
  return 1;
}

/* Creates the missing state tensors, zeroed, beside the parameter. */
static pn_status ensure_state(pn_optimizer *o, int i) {
  slot *sl = &o->slots[i];
  pn_device *dev = pn_tensor_device(sl->param);
  for (int k = 0; k < o->iface->n_state; k++) {
    if (sl->state[k]) continue;
    sl->state[k] = pn_full(dev, sl->param->dtype, sl->param->ndim, sl->param->shape, 0.0);
    if (!sl->state[k])
      return pn_error_prefix(PN_ERR_NOMEM,
                             "optimizer '%s': state '%s' of parameter %d: ", o->feature,
                             o->iface->state_names[k], i);
    name_state(o, sl, k);
  }
  return PN_OK;
}

/* Replaces *t by its copy on dev (names are kept by pn_tensor_to). */
static pn_status move_tensor(pn_tensor **t, pn_device *dev) {
  if (!*t || pn_tensor_device(*t) == dev) return PN_OK;
  pn_tensor *moved = pn_tensor_to(*t, dev);
  if (!moved) return PN_ERR_DEVICE;
  pn_tensor_unref(*t);
  *t = moved;
  return PN_OK;
}

/* The state follows a parameter that moved to another device, so that
 * switching backends between steps needs no call beyond moving the model. */
static pn_status follow_param(pn_optimizer *o, slot *sl) {
  pn_device *dev = pn_tensor_device(sl->param);
  for (int k = 0; k < o->iface->n_state; k++) PN_TRY(move_tensor(&sl->state[k], dev));
  return PN_OK;
}

/* The gradient as the op needs it: contiguous and beside the parameter. */
static pn_tensor *usable_grad(const slot *sl, pn_tensor *g) {
  pn_device *dev = pn_tensor_device(sl->param);
  if (pn_tensor_is_contiguous(g) && pn_tensor_device(g) == dev) return pn_tensor_ref(g);
  int was = pn_set_grad_enabled(0);
  pn_tensor *c = pn_tensor_is_contiguous(g) ? pn_tensor_ref(g) : pn_contiguous(g);
  pn_set_grad_enabled(was);
  if (!c || pn_tensor_device(c) == dev) return c;
  pn_tensor *m = pn_tensor_to(c, dev);
  pn_tensor_unref(c);
  return m;
}

static pn_status step_one(pn_optimizer *o, int i, double lr, double momentum) {
  slot *sl = &o->slots[i];
  pn_tensor *g = pn_tensor_grad(sl->param);
  if (!g) return PN_OK;
  pn_shape gs = pn_tensor_shape(g), ps = pn_tensor_shape(sl->param);
  if (!pn_shape_equal(&gs, &ps) || g->dtype != sl->param->dtype)
    return pn_error(PN_ERR_SHAPE, "optimizer '%s': parameter %d's gradient has another shape",
                    o->feature, i);
  PN_TRY(ensure_state(o, i));
  PN_TRY(follow_param(o, sl));
  pn_optim_param p;
  memset(&p, 0, sizeof p);
  p.param = sl->param;
  p.grad = usable_grad(sl, g);
  if (!p.grad)
    return pn_error_prefix(PN_ERR_DEVICE, "optimizer '%s': gradient %d: ", o->feature, i);
  for (int k = 0; k < o->iface->n_state; k++) p.state[k] = sl->state[k];
  p.lr = lr * sl->lr_mult;
  p.weight_decay = o->weight_decay;
  p.momentum = momentum;
  sl->steps++;
  pn_status s = o->iface->step(o->ctx, &p, sl->steps);
  pn_tensor_unref(p.grad);
  if (s != PN_OK) {
    const char *name = sl->param->name ? sl->param->name : "(unnamed)";
    return pn_error_prefix(s, "optimizer '%s': parameter %d (%s): ", o->feature, i, name);
  }
  return PN_OK;
}

pn_status pn_optimizer_step(pn_optimizer *o, double lr, double momentum) {
  o->steps++;
  /* The update must never be recorded, whatever the caller's grad mode. */
  int was = pn_set_grad_enabled(0);
  pn_status s = PN_OK;
  for (int i = 0; i < o->n_slots && s == PN_OK; i++) s = step_one(o, i, lr, momentum);
  pn_set_grad_enabled(was);
  return s;
}

void pn_optimizer_zero_grad(pn_optimizer *o) {
  for (int i = 0; i < o->n_slots; i++) pn_tensor_zero_grad(o->slots[i].param);
}

int64_t pn_optimizer_steps(const pn_optimizer *o) { return o->steps; }

/* A caller that knows only the run's count (every parameter trained from
 * the start) restores the parameters with state to it; one that knows more
 * sets each with pn_optimizer_set_param_steps afterwards. A parameter
 * without state has never been updated: it keeps counting from 0. */
void pn_optimizer_set_steps(pn_optimizer *o, int64_t steps) {
  o->steps = steps;
  for (int i = 0; i < o->n_slots; i++)
    if (has_state(o, &o->slots[i])) o->slots[i].steps = steps;
}

int64_t pn_optimizer_param_steps(const pn_optimizer *o, int param) {
  return param >= 0 && param < o->n_slots ? o->slots[param].steps : 0;
}

void pn_optimizer_set_param_steps(pn_optimizer *o, int param, int64_t steps) {
  if (param >= 0 && param < o->n_slots && steps >= 0) o->slots[param].steps = steps;
}

double pn_optimizer_base_lr(const pn_optimizer *o) { return o->base_lr; }

void pn_optimizer_set_weight_decay(pn_optimizer *o, double wd) { o->weight_decay = wd; }

double pn_optimizer_base_weight_decay(const pn_optimizer *o) { return o->base_wd; }

void pn_optimizer_set_lr_mult(pn_optimizer *o, int param, double mult) {
  if (param >= 0 && param < o->n_slots) o->slots[param].lr_mult = mult;
}

void pn_optimizer_set_param(pn_optimizer *o, int param, pn_tensor *t) {
  if (param >= 0 && param < o->n_slots && t) o->slots[param].param = t;
}

int pn_optimizer_state_count(const pn_optimizer *o) { return o->iface->n_state; }

const char *pn_optimizer_state_name(const pn_optimizer *o, int k) {
  return k >= 0 && k < o->iface->n_state ? o->iface->state_names[k] : NULL;
}

pn_tensor *pn_optimizer_state(pn_optimizer *o, int param, int k) {
  if (param < 0 || param >= o->n_slots || k < 0 || k >= o->iface->n_state) {
    pn_error(PN_ERR_INVALID, "optimizer '%s': no state %d of parameter %d", o->feature, k, param);
    return NULL;
  }
  if (ensure_state(o, param) != PN_OK) return NULL;
  return o->slots[param].state[k];
}

static pn_status check_state(const pn_optimizer *o, int param, int k, const pn_tensor *t) {
  if (param < 0 || param >= o->n_slots || k < 0 || k >= o->iface->n_state || !t)
    return pn_error(PN_ERR_INVALID, "optimizer '%s': cannot set state %d of parameter %d",
                    o->feature, k, param);
  const pn_tensor *p = o->slots[param].param;
  pn_shape ps = pn_tensor_shape(p), ts = pn_tensor_shape(t);
  if (pn_shape_equal(&ps, &ts) && t->dtype == p->dtype) return PN_OK;
  char a[64], b[64];
  return pn_error(PN_ERR_SHAPE, "optimizer '%s': state '%s' of parameter %d is %s %s, not %s %s",
                  o->feature, o->iface->state_names[k], param, pn_dtype_name(t->dtype),
                  pn_shape_str(&ts, a, sizeof a), pn_dtype_name(p->dtype),
                  pn_shape_str(&ps, b, sizeof b));
}

/* Takes the reference even on failure, so that callers never leak it. */
pn_status pn_optimizer_set_state(pn_optimizer *o, int param, int k, pn_tensor *t) {
  pn_status s = check_state(o, param, k, t);
  pn_tensor *own = NULL;
  if (s == PN_OK) {
    /* Kernels write the state in place: a view, or a tensor the caller
     * keeps using, must not be written through. */
    int was = pn_set_grad_enabled(0);
    own = pn_copy(t);
    pn_set_grad_enabled(was);
    if (!own) s = pn_error_prefix(PN_ERR_NOMEM, "optimizer '%s': ", o->feature);
  }
  pn_tensor_unref(t);
  if (s != PN_OK) return s;
  slot *sl = &o->slots[param];
  pn_tensor_unref(sl->state[k]);
  sl->state[k] = own;
  name_state(o, sl, k);
  return PN_OK;
}

pn_status pn_optimizer_to(pn_optimizer *o, pn_device *dev) {
  if (!dev) dev = pn_default_device();
  for (int i = 0; i < o->n_slots; i++)
    for (int k = 0; k < o->iface->n_state; k++) {
      pn_status s = move_tensor(&o->slots[i].state[k], dev);
      if (s != PN_OK)
        return pn_error_prefix(s, "optimizer '%s': moving state to %s: ", o->feature, dev->name);
    }
  return PN_OK;
}

/* ------------------------------------------------------------ schedule */

pn_status pn_schedule_create(const char *feature, const pn_config *cfg, pn_schedule **out) {
  const void *iface = NULL;
  *out = NULL;
  PN_TRY(pn_feature_iface(feature, "schedule", &iface));
  const pn_schedule_iface *si = iface;
  if (!HAS_SLOT(si, pn_schedule_iface, factor) || !si->create || !si->factor)
    return pn_error(PN_ERR_PLUGIN, "schedule '%s': interface lacks create or factor", feature);
  pn_schedule *s = calloc(1, sizeof *s);
  if (!s || !(s->feature = strdup(feature))) {
    free(s);
    return pn_error(PN_ERR_NOMEM, "out of memory creating schedule '%s'", feature);
  }
  s->iface = si;
  pn_config *own = NULL;
  pn_status st = resolve_config(feature, cfg, &own, &cfg);
  if (st == PN_OK) st = si->create(cfg, &s->ctx);
  pn_config_free(own);
  if (st != PN_OK) {
    pn_error_prefix(st, "schedule '%s': ", feature);
    pn_schedule_free(s);
    return st;
  }
  *out = s;
  return PN_OK;
}

double pn_schedule_factor(pn_schedule *s, int64_t step, int64_t total) {
  return s->iface->factor(s->ctx, step, total);
}

double pn_schedule_momentum(pn_schedule *s, int64_t step, int64_t total) {
  if (!HAS_SLOT(s->iface, pn_schedule_iface, momentum) || !s->iface->momentum) return -1.0;
  return s->iface->momentum(s->ctx, step, total);
}

void pn_schedule_free(pn_schedule *s) {
  if (!s) return;
  if (s->ctx && HAS_SLOT(s->iface, pn_schedule_iface, destroy) && s->iface->destroy)
    s->iface->destroy(s->ctx);
  free(s->feature);
  free(s);
}
