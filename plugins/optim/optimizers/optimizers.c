/* SGD, Adam and AdamW with PyTorch's exact update rules.
 *
 * Each update is one fused op this plugin registers ("sgd_step",
 * "adam_step"), so a parameter is read and written once per step instead of
 * once per elementary op. Kernels: "reference" (double arithmetic, the
 * oracle) and "cpu" (float, vectorised through target_clones, split over the
 * global thread pool for large tensors). Any other backend falls back to one
 * of these through the core's dispatcher.
 *
 * The ops' scalars, so that another backend can implement them alone:
 *   sgd_step  in {param, grad[, momentum_buffer]}; p.alpha lr, p.beta weight
 *             decay, x[0] momentum, x[1] dampening, x[2] nesterov (0/1),
 *             x[3] first (1: the buffer starts as the gradient, as
 *             PyTorch's does). Without the buffer input: plain SGD.
 *   adam_step in {param, grad, exp_avg, exp_avg_sq}; p.alpha lr, p.beta
 *             weight decay, x[0] beta1, x[1] beta2, x[2] eps, x[3] step
 *             (from 1), x[4] decoupled (1: AdamW's decay of the weights,
 *             0: Adam's decay added to the gradient). */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <plugnet/optim.h>
#include <plugnet/ops.h>
#include <plugnet/plugin.h>
#include <plugnet/threadpool.h>

#define HOT __attribute__((target_clones("avx512f", "avx2", "default")))

/* Below PAR_MIN elements one thread does the whole update: waking workers
 * would cost more than the few microseconds of work. */
enum { PAR_MIN = 1 << 16, GRAIN = 1 << 14 };

static int op_sgd = -1, op_adam = -1;

/* ------------------------------------------------------------ kernels */

static pn_status check_inputs(const pn_op_args *a, int min_in, int max_in) {
  if (a->n_in < min_in || a->n_in > max_in || a->out)
    return pn_error(PN_ERR_INVALID, "op %s: expected %d to %d inputs updated in place",
                    pn_op_name(a->op), min_in, max_in);
  int64_t n = pn_tensor_numel(a->in[0]);
  for (int i = 0; i < a->n_in; i++) {
    if (a->in[i]->dtype != PN_F32)
      return pn_error(PN_ERR_UNSUPPORTED, "op %s: input %d is %s, only f32 is supported",
                      pn_op_name(a->op), i, pn_dtype_name(a->in[i]->dtype));
    if (pn_tensor_numel(a->in[i]) != n)
      return pn_error(PN_ERR_SHAPE, "op %s: input %d has %lld elements, the parameter %lld",
                      pn_op_name(a->op), i, (long long)pn_tensor_numel(a->in[i]), (long long)n);
    if (!pn_tensor_data(a->in[i]))
      return pn_error(PN_ERR_UNSUPPORTED, "op %s: input %d is not in host memory",
                      pn_op_name(a->op), i);
  }
  return PN_OK;
}

static float *f32(const pn_op_args *a, int i) {
  return a->n_in > i ? (float *)pn_tensor_data(a->in[i]) : NULL;
}

/* SGD's coefficients, branch-free: buf = keep*buf + take*g, then the step
 * direction is dir_g*g + dir_b*buf. On the first step keep = 0, take = 1
 * (the buffer is the gradient); without Nesterov the direction is the
 * buffer. Products with 0 and 1 are exact, so this equals the branches. */
typedef struct sgd_coef {
  double lr, wd, keep, take, dir_g, dir_b;
  int has_buf;
} sgd_coef;

static sgd_coef sgd_coefs(const pn_op_params *p, int has_buf) {
  sgd_coef c = {p->alpha, p->beta, 0, 0, 1, 0, has_buf};
  if (!has_buf) return c;
  double mom = p->x[0], damp = p->x[1];
  int first = p->x[3] != 0;
  c.keep = first ? 0.0 : mom;
  c.take = first ? 1.0 : 1.0 - damp;
  c.dir_g = p->x[2] != 0 ? 1.0 : 0.0;
  c.dir_b = p->x[2] != 0 ? mom : 1.0;
  return c;
}

/* Adam's per-step constants, bias corrections included. */
typedef struct adam_coef {
  double b1, b2, eps, step_size, inv_bc2_sqrt, decay, coupled_wd;
} adam_coef;

static adam_coef adam_coefs(const pn_op_params *p) {
  adam_coef c;
  double lr = p->alpha, wd = p->beta, t = p->x[3] < 1 ? 1 : p->x[3];
  int decoupled = p->x[4] != 0;
  c.b1 = p->x[0];
  c.b2 = p->x[1];
  c.eps = p->x[2];
  c.step_size = lr / (1.0 - pow(c.b1, t));
  c.inv_bc2_sqrt = 1.0 / sqrt(1.0 - pow(c.b2, t));
  c.decay = decoupled ? 1.0 - lr * wd : 1.0;
  c.coupled_wd = decoupled ? 0.0 : wd;
  return c;
}

/* ---- reference: one thread, double arithmetic */

static pn_status ref_sgd(void *dev, const pn_op_args *a) {
  (void)dev;
  PN_TRY(check_inputs(a, 2, 3));
  sgd_coef c = sgd_coefs(&a->p, a->n_in == 3);
  float *w = f32(a, 0), *g = f32(a, 1), *buf = f32(a, 2);
  int64_t n = pn_tensor_numel(a->in[0]);
  for (int64_t i = 0; i < n; i++) {
    double d = (double)g[i] + c.wd * (double)w[i];
    if (c.has_buf) {
      double b = c.keep * (double)buf[i] + c.take * d;
      buf[i] = (float)b;
      d = c.dir_g * d + c.dir_b * b;
    }
    w[i] = (float)((double)w[i] - c.lr * d);
  }
  return PN_OK;
}

static pn_status ref_adam(void *dev, const pn_op_args *a) {
  (void)dev;
  PN_TRY(check_inputs(a, 4, 4));
  adam_coef c = adam_coefs(&a->p);
  float *w = f32(a, 0), *g = f32(a, 1), *m = f32(a, 2), *v = f32(a, 3);
  int64_t n = pn_tensor_numel(a->in[0]);
  for (int64_t i = 0; i < n; i++) {
    double wi = w[i], gi = (double)g[i] + c.coupled_wd * wi;
    wi *= c.decay;
    double mi = c.b1 * (double)m[i] + (1.0 - c.b1) * gi;
    double vi = c.b2 * (double)v[i] + (1.0 - c.b2) * gi * gi;
    m[i] = (float)mi;
    v[i] = (float)vi;
    w[i] = (float)(wi - c.step_size * mi / (sqrt(vi) * c.inv_bc2_sqrt + c.eps));
  }
  return PN_OK;
}

/* ---- cpu: float, vectorised, threaded above PAR_MIN */

typedef struct job {
  float *w, *g, *s0, *s1;
  sgd_coef sgd;
  adam_coef adam;
} job;

HOT static void sgd_plain_f32(float *restrict w, const float *restrict g, int64_t n, float lr,
                              float wd) {
  for (int64_t i = 0; i < n; i++) w[i] -= lr * (g[i] + wd * w[i]);
}

HOT static void sgd_momentum_f32(float *restrict w, const float *restrict g, float *restrict buf,
                                 int64_t n, const sgd_coef *c) {
  const float lr = (float)c->lr, wd = (float)c->wd, keep = (float)c->keep, take = (float)c->take;
  const float dg = (float)c->dir_g, db = (float)c->dir_b;
  for (int64_t i = 0; i < n; i++) {
    float d = g[i] + wd * w[i];
    float b = keep * buf[i] + take * d;
    buf[i] = b;
    w[i] -= lr * (dg * d + db * b);
  }
}

HOT static void adam_f32(float *restrict w, const float *restrict g, float *restrict m,
                         float *restrict v, int64_t n, const adam_coef *c) {
  const float b1 = (float)c->b1, nb1 = (float)(1.0 - c->b1);
  const float b2 = (float)c->b2, nb2 = (float)(1.0 - c->b2);
  const float eps = (float)c->eps, step = (float)c->step_size, inv = (float)c->inv_bc2_sqrt;
  const float decay = (float)c->decay, cwd = (float)c->coupled_wd;
  for (int64_t i = 0; i < n; i++) {
    float gi = g[i] + cwd * w[i];
    float mi = b1 * m[i] + nb1 * gi;
    float vi = b2 * v[i] + nb2 * gi * gi;
    m[i] = mi;
    v[i] = vi;
    w[i] = w[i] * decay - step * mi / (sqrtf(vi) * inv + eps);
  }
}

static void sgd_range(void *arg, int64_t b, int64_t e, int worker) {
  (void)worker;
  const job *j = arg;
  if (j->sgd.has_buf)
    sgd_momentum_f32(j->w + b, j->g + b, j->s0 + b, e - b, &j->sgd);
  else
    sgd_plain_f32(j->w + b, j->g + b, e - b, (float)j->sgd.lr, (float)j->sgd.wd);
}

static void adam_range(void *arg, int64_t b, int64_t e, int worker) {
  (void)worker;
  const job *j = arg;
  adam_f32(j->w + b, j->g + b, j->s0 + b, j->s1 + b, e - b, &j->adam);
}

static void run_range(int64_t n, pn_parallel_fn fn, job *j) {
  if (n < PAR_MIN)
    fn(j, 0, n, 0);
  else
    pn_threadpool_parallel_for(pn_threadpool_global(), n, GRAIN, fn, j);
}

static pn_status cpu_sgd(void *dev, const pn_op_args *a) {
  (void)dev;
  PN_TRY(check_inputs(a, 2, 3));
  job j = {.w = f32(a, 0), .g = f32(a, 1), .s0 = f32(a, 2), .sgd = sgd_coefs(&a->p, a->n_in == 3)};
  run_range(pn_tensor_numel(a->in[0]), sgd_range, &j);
  return PN_OK;
}

static pn_status cpu_adam(void *dev, const pn_op_args *a) {
  (void)dev;
  PN_TRY(check_inputs(a, 4, 4));
  job j = {
      .w = f32(a, 0), .g = f32(a, 1), .s0 = f32(a, 2), .s1 = f32(a, 3), .adam = adam_coefs(&a->p)};
  run_range(pn_tensor_numel(a->in[0]), adam_range, &j);
  return PN_OK;
}

/* ------------------------------------------------------------ features */

typedef struct sgd_cfg {
  double momentum, dampening;
  int nesterov;
} sgd_cfg;

typedef struct adam_cfg {
  double beta1, beta2, eps;
  int decoupled;
} adam_cfg;

static pn_status sgd_create(const pn_config *cfg, void **ctx) {
  sgd_cfg c = {pn_config_float(cfg, "momentum"), pn_config_float(cfg, "dampening"),
               pn_config_bool(cfg, "nesterov")};
  /* PyTorch refuses this too: Nesterov needs momentum and no dampening. */
  if (c.nesterov && (c.momentum <= 0 || c.dampening != 0))
    return pn_error(PN_ERR_INVALID, "sgd: nesterov = true needs momentum > 0 and dampening = 0");
  sgd_cfg *s = malloc(sizeof *s);
  if (!s) return pn_error(PN_ERR_NOMEM, "sgd: out of memory");
  *s = c;
  *ctx = s;
  return PN_OK;
}

static pn_status adam_create_common(const pn_config *cfg, int decoupled, void **ctx) {
  adam_cfg c = {pn_config_float(cfg, "beta1"), pn_config_float(cfg, "beta2"),
                pn_config_float(cfg, "eps"), decoupled};
  /* A beta of 1 would divide by a zero bias correction. */
  if (c.beta1 >= 1.0) return pn_error(PN_ERR_INVALID, "beta1 = %g must be below 1", c.beta1);
  if (c.beta2 >= 1.0) return pn_error(PN_ERR_INVALID, "beta2 = %g must be below 1", c.beta2);
  adam_cfg *a = malloc(sizeof *a);
  if (!a) return pn_error(PN_ERR_NOMEM, "out of memory");
  *a = c;
  *ctx = a;
  return PN_OK;
}

static pn_status adam_create(const pn_config *cfg, void **ctx) {
  return adam_create_common(cfg, 0, ctx);
}

static pn_status adamw_create(const pn_config *cfg, void **ctx) {
  return adam_create_common(cfg, 1, ctx);
}

static pn_status sgd_step(void *ctx, pn_optim_param *p, int64_t step) {
  const sgd_cfg *c = ctx;
  double mom = p->momentum >= 0 ? p->momentum : c->momentum;
  pn_op_params op;
  memset(&op, 0, sizeof op);
  op.alpha = p->lr;
  op.beta = p->weight_decay;
  op.x[0] = mom;
  op.x[1] = c->dampening;
  op.x[2] = c->nesterov;
  op.x[3] = step <= 1;
  pn_tensor *in[3] = {p->param, p->grad, p->state[0]};
  /* Plain SGD never touches the buffer, as PyTorch never creates one. */
  int n = mom != 0 ? 3 : 2;
  return pn_op_run_inplace(op_sgd, &op, in, n, n == 3 ? 0x5u : 0x1u);
}

static pn_status adam_step(void *ctx, pn_optim_param *p, int64_t step) {
  const adam_cfg *c = ctx;
  pn_op_params op;
  memset(&op, 0, sizeof op);
  op.alpha = p->lr;
  op.beta = p->weight_decay;
  op.x[0] = p->momentum >= 0 ? p->momentum : c->beta1;
  op.x[1] = c->beta2;
  op.x[2] = c->eps;
  op.x[3] = (double)step;
  op.x[4] = c->decoupled;
  pn_tensor *in[4] = {p->param, p->grad, p->state[0], p->state[1]};
  return pn_op_run_inplace(op_adam, &op, in, 4, 0xDu);
}

static const pn_optim_iface sgd_iface = {.size = sizeof(pn_optim_iface),
                                         .n_state = 1,
                                         .state_names = {"momentum_buffer"},
                                         .create = sgd_create,
                                         .step = sgd_step,
                                         .destroy = free};

static const pn_optim_iface adam_iface = {.size = sizeof(pn_optim_iface),
                                          .n_state = 2,
                                          .state_names = {"exp_avg", "exp_avg_sq"},
                                          .create = adam_create,
                                          .step = adam_step,
                                          .destroy = free};

static const pn_optim_iface adamw_iface = {.size = sizeof(pn_optim_iface),
                                           .n_state = 2,
                                           .state_names = {"exp_avg", "exp_avg_sq"},
                                           .create = adamw_create,
                                           .step = adam_step,
                                           .destroy = free};

static pn_status init(pn_plugin_ctx *ctx) {
  op_sgd = pn_op_register("sgd_step");
  op_adam = pn_op_register("adam_step");
  if (op_sgd < 0 || op_adam < 0) return pn_error_prefix(PN_ERR_PLUGIN, "registering ops: ");
  PN_TRY(pn_plugin_add_kernel(ctx, "reference", "sgd_step", ref_sgd));
  PN_TRY(pn_plugin_add_kernel(ctx, "reference", "adam_step", ref_adam));
  PN_TRY(pn_plugin_add_kernel(ctx, "cpu", "sgd_step", cpu_sgd));
  PN_TRY(pn_plugin_add_kernel(ctx, "cpu", "adam_step", cpu_adam));
  PN_TRY(pn_plugin_add_feature(ctx, "optimizer", "sgd", &sgd_iface));
  PN_TRY(pn_plugin_add_feature(ctx, "optimizer", "adam", &adam_iface));
  return pn_plugin_add_feature(ctx, "optimizer", "adamw", &adamw_iface);
}

PN_PLUGIN_DEFINE("optimizers", "0.1.0", init, NULL);
