/* Optimizers and learning-rate schedules.
 *
 * The core owns the optimizer's per-parameter state tensors (named like
 * PyTorch's: "exp_avg", "exp_avg_sq", "momentum_buffer"), so checkpoints and
 * moving between backends handle every optimizer the same way. A plugin's
 * step updates one parameter in place, usually through a fused op it
 * registers with kernels per backend (pn_op_run_inplace). */
#ifndef PLUGNET_OPTIM_H
#define PLUGNET_OPTIM_H

#include <stdint.h>
#include <plugnet/config.h>
#include <plugnet/status.h>
#include <plugnet/tensor.h>

#ifdef __cplusplus
extern "C" {
#endif

#define PN_OPTIM_MAX_STATE 4

typedef struct pn_optim_param {
  pn_tensor *param;                     /* updated in place */
  pn_tensor *grad;                      /* never NULL when step is called */
  pn_tensor *state[PN_OPTIM_MAX_STATE]; /* n_state tensors shaped like param, zeroed at first */
  double lr;                            /* after the schedule and the group's multiplier */
  double weight_decay;                  /* the group's */
  double momentum;                      /* the schedule's override of beta1/momentum, or < 0 */
} pn_optim_param;

typedef struct pn_optim_iface {
  size_t size;
  int n_state;
  const char *state_names[PN_OPTIM_MAX_STATE];
  pn_status (*create)(const pn_config *cfg, void **ctx);
  /* One update of one parameter; step counts from 1 (Adam's bias correction). */
  pn_status (*step)(void *ctx, pn_optim_param *p, int64_t step);
  void (*destroy)(void *ctx); /* optional */
  void *reserved[8];
} pn_optim_iface;

/* A schedule maps progress to a learning-rate multiplier of the base rate
 * (1 = the configured lr). step counts from 0; total is the run's total. */
typedef struct pn_schedule_iface {
  size_t size;
  pn_status (*create)(const pn_config *cfg, void **ctx);
  double (*factor)(void *ctx, int64_t step, int64_t total);
  /* Optional: a momentum (beta1) for this step, or < 0 for the optimizer's
   * own (one-cycle cycles momentum inversely to the rate). */
  double (*momentum)(void *ctx, int64_t step, int64_t total);
  void (*destroy)(void *ctx); /* optional */
  void *reserved[8];
} pn_schedule_iface;

typedef struct pn_optimizer pn_optimizer;
typedef struct pn_schedule pn_schedule;

/* params: the trainable tensors (borrowed; they must outlive the optimizer
 * unless replaced with pn_optimizer_set_param). */
pn_status pn_optimizer_create(const char *feature, const pn_config *cfg, pn_tensor *const *params,
                              int n_params, pn_optimizer **out);
void pn_optimizer_free(pn_optimizer *o);
/* Updates every parameter that has a gradient with learning rate lr. */
pn_status pn_optimizer_step(pn_optimizer *o, double lr, double momentum);
void pn_optimizer_zero_grad(pn_optimizer *o);
/* The run's step count (what schedules follow). Setting it also gives each
 * parameter that has state that count as its own. */
int64_t pn_optimizer_steps(const pn_optimizer *o);
void pn_optimizer_set_steps(pn_optimizer *o, int64_t steps);
/* A parameter's own count: its updates so far, the `step` its next update
 * passes to the plugin minus one. A parameter that first gets a gradient
 * late (unfrozen in a later stage) counts from its first update, as in
 * PyTorch; a resumed run restores each count. */
int64_t pn_optimizer_param_steps(const pn_optimizer *o, int param);
void pn_optimizer_set_param_steps(pn_optimizer *o, int param, int64_t steps);
double pn_optimizer_base_lr(const pn_optimizer *o); /* the config's "lr" */
/* The weight decay every update uses from now on (a stage's own), and the
 * config's "weight_decay" to return to. */
void pn_optimizer_set_weight_decay(pn_optimizer *o, double wd);
double pn_optimizer_base_weight_decay(const pn_optimizer *o);
/* Per-parameter learning-rate multiplier (discriminative rates); default 1. */
void pn_optimizer_set_lr_mult(pn_optimizer *o, int param, double mult);
void pn_optimizer_set_param(pn_optimizer *o, int param, pn_tensor *t);
/* State tensors, for checkpoints and moving: created zeroed on first use. */
int pn_optimizer_state_count(const pn_optimizer *o);
const char *pn_optimizer_state_name(const pn_optimizer *o, int k);
pn_tensor *pn_optimizer_state(pn_optimizer *o, int param, int k); /* borrowed */
pn_status pn_optimizer_set_state(pn_optimizer *o, int param, int k, pn_tensor *t); /* takes ref */
pn_status pn_optimizer_to(pn_optimizer *o, pn_device *dev);

pn_status pn_schedule_create(const char *feature, const pn_config *cfg, pn_schedule **out);
double pn_schedule_factor(pn_schedule *s, int64_t step, int64_t total);
double pn_schedule_momentum(pn_schedule *s, int64_t step, int64_t total);
void pn_schedule_free(pn_schedule *s);

#ifdef __cplusplus
}
#endif
#endif
