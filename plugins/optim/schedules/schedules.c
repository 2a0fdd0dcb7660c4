/* Learning-rate schedules: factors of the optimizer's configured lr, as a
 * function of the optimizer step (from 0) and the run's total steps.
 *
 * Every schedule but onecycle takes `warmup` steps: during them the factor
 * rises linearly to the schedule's starting value, reaching it on the last
 * warmup step ((t + 1) / warmup, as seed 001's build_lr does, so no step is
 * wasted at rate 0); the schedule itself then runs over the remaining
 * total - warmup steps, its clock starting at 0 after the warmup. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>

#include <plugnet/optim.h>
#include <plugnet/plugin.h>

#define MAX_MILESTONES 64

typedef enum kind { CONSTANT, STEP, COSINE, POLY, ONECYCLE } kind;

typedef struct sched {
  kind kind;
  int64_t warmup;
  double min_factor; /* cosine, poly */
  double power;      /* poly */
  int64_t step_size; /* step */
  double gamma;      /* step */
  int64_t milestones[MAX_MILESTONES];
  int n_milestones;
  double pct_start, div_factor, final_div; /* onecycle */
  double max_mom, base_mom;
  int cycle_momentum;
} sched;

/* t / span clamped to [0, 1]; an empty span counts as finished. */
static double progress(int64_t t, int64_t span) {
  if (span <= 0) return 1.0;
  double x = (double)t / (double)span;
  return x < 0 ? 0 : x > 1 ? 1 : x;
}

static double step_factor(const sched *s, int64_t t) {
  int64_t drops = 0;
  if (s->n_milestones > 0) {
    for (int i = 0; i < s->n_milestones; i++) drops += t >= s->milestones[i];
  } else {
    drops = t / s->step_size;
  }
  return pow(s->gamma, (double)drops);
}

/* The schedule on its own clock: t from 0 over total steps. */
static double main_factor(const sched *s, int64_t t, int64_t total) {
  switch (s->kind) {
  case STEP: return step_factor(s, t < 0 ? 0 : t);
  case COSINE: {
    if (total <= 0) return 1.0;
    double c = 0.5 * (1.0 + cos(M_PI * progress(t, total)));
    return s->min_factor + (1.0 - s->min_factor) * c;
  }
  case POLY: {
    if (total <= 0) return 1.0;
    return s->min_factor + (1.0 - s->min_factor) * pow(1.0 - progress(t, total), s->power);
  }
  default: return 1.0;
  }
}

/* torch.optim.lr_scheduler.OneCycleLR's two cosine phases: from 1/div to 1
 * ending on step pct_start * total - 1, then down to 1/(div * final_div)
 * on the last step, total - 1. The same fraction drives momentum. */
typedef struct phase {
  int second;
  double pct;
} phase;

static double cos_anneal(double from, double to, double pct) {
  return to + (from - to) / 2.0 * (cos(M_PI * pct) + 1.0);
}

static phase onecycle_phase(const sched *s, int64_t t, int64_t total) {
  double end1 = s->pct_start * (double)total - 1.0, end2 = (double)total - 1.0;
  double x = (double)t;
  phase p = {0, 1.0};
  if (x <= end1) {
    p.pct = end1 > 0 ? x / end1 : 1.0;
  } else {
    p.second = 1;
    p.pct = end2 > end1 ? (x - end1) / (end2 - end1) : 1.0;
  }
  if (p.pct < 0) p.pct = 0;
  if (p.pct > 1) p.pct = 1;
  return p;
}

static double onecycle_factor(const sched *s, int64_t t, int64_t total) {
  double start = 1.0 / s->div_factor, end = start / s->final_div;
  phase p = onecycle_phase(s, t, total);
  return p.second ? cos_anneal(1.0, end, p.pct) : cos_anneal(start, 1.0, p.pct);
}

static double factor(void *ctx, int64_t t, int64_t total) {
  const sched *s = ctx;
  if (s->kind == ONECYCLE) return onecycle_factor(s, t, total);
  if (t < s->warmup)
    return main_factor(s, 0, total - s->warmup) * (double)(t + 1) / (double)s->warmup;
  return main_factor(s, t - s->warmup, total - s->warmup);
}

static double momentum(void *ctx, int64_t t, int64_t total) {
  const sched *s = ctx;
  if (s->kind != ONECYCLE || !s->cycle_momentum) return -1.0;
  phase p = onecycle_phase(s, t, total);
  return p.second ? cos_anneal(s->base_mom, s->max_mom, p.pct)
                  : cos_anneal(s->max_mom, s->base_mom, p.pct);
}

/* ------------------------------------------------------------ creation */

static pn_status read_step(sched *s, const pn_config *cfg) {
  s->gamma = pn_config_float(cfg, "gamma");
  s->step_size = pn_config_int(cfg, "step_size");
  int n = pn_config_ints(cfg, "milestones", s->milestones, MAX_MILESTONES);
  if (n > MAX_MILESTONES)
    return pn_error(PN_ERR_INVALID, "step: %d milestones (at most %d)", n, MAX_MILESTONES);
  s->n_milestones = n;
  if (n == 0 && s->step_size <= 0)
    return pn_error(PN_ERR_INVALID, "step: set step_size (> 0) or milestones");
  if (n > 0 && s->step_size > 0)
    return pn_error(PN_ERR_INVALID, "step: set step_size or milestones, not both");
  for (int i = 1; i < n; i++)
    if (s->milestones[i] <= s->milestones[i - 1])
      return pn_error(PN_ERR_INVALID, "step: milestones must increase");
  return PN_OK;
}

static pn_status read_onecycle(sched *s, const pn_config *cfg) {
  s->pct_start = pn_config_float(cfg, "pct_start");
  s->div_factor = pn_config_float(cfg, "div_factor");
  s->final_div = pn_config_float(cfg, "final_div_factor");
  s->max_mom = pn_config_float(cfg, "max_momentum");
  s->base_mom = pn_config_float(cfg, "base_momentum");
  s->cycle_momentum = pn_config_bool(cfg, "cycle_momentum");
  if (s->div_factor <= 0 || s->final_div <= 0)
    return pn_error(PN_ERR_INVALID, "onecycle: div_factor and final_div_factor must be positive");
  return PN_OK;
}

static pn_status read_config(sched *s, const pn_config *cfg) {
  if (s->kind != ONECYCLE) s->warmup = pn_config_int(cfg, "warmup");
  switch (s->kind) {
  case STEP: return read_step(s, cfg);
  case COSINE: s->min_factor = pn_config_float(cfg, "min_factor"); return PN_OK;
  case POLY:
    s->min_factor = pn_config_float(cfg, "min_factor");
    s->power = pn_config_float(cfg, "power");
    return PN_OK;
  case ONECYCLE: return read_onecycle(s, cfg);
  default: return PN_OK;
  }
}

static pn_status create(kind k, const pn_config *cfg, void **ctx) {
  sched *s = calloc(1, sizeof *s);
  if (!s) return pn_error(PN_ERR_NOMEM, "out of memory");
  s->kind = k;
  pn_status st = read_config(s, cfg);
  if (st != PN_OK) {
    free(s);
    return st;
  }
  *ctx = s;
  return PN_OK;
}

static pn_status create_constant(const pn_config *c, void **ctx) {
  return create(CONSTANT, c, ctx);
}
static pn_status create_step(const pn_config *c, void **ctx) { return create(STEP, c, ctx); }
static pn_status create_cosine(const pn_config *c, void **ctx) { return create(COSINE, c, ctx); }
static pn_status create_poly(const pn_config *c, void **ctx) { return create(POLY, c, ctx); }
static pn_status create_onecycle(const pn_config *c, void **ctx) {
  return create(ONECYCLE, c, ctx);
}

#define IFACE(create_fn, momentum_fn)                                                              \
  {                                                                                                \
    .size = sizeof(pn_schedule_iface), .create = (create_fn), .factor = factor,                    \
    .momentum = (momentum_fn), .destroy = free                                                     \
  }

static const pn_schedule_iface ifaces[] = {
    IFACE(create_constant, NULL), IFACE(create_step, NULL),         IFACE(create_cosine, NULL),
    IFACE(create_poly, NULL),     IFACE(create_onecycle, momentum),
};
static const char *const names[] = {"constant", "step", "cosine", "poly", "onecycle"};

static pn_status init(pn_plugin_ctx *ctx) {
  for (size_t i = 0; i < sizeof names / sizeof *names; i++)
    PN_TRY(pn_plugin_add_feature(ctx, "schedule", names[i], &ifaces[i]));
  return PN_OK;
}

PN_PLUGIN_DEFINE("schedules", "0.1.0", init, NULL);
