/* Losses: a feature of kind "loss" turning predictions and targets into a
 * scalar (1-element) tensor with autograd ops. */
#ifndef PLUGNET_LOSS_H
#define PLUGNET_LOSS_H

#include <plugnet/config.h>
#include <plugnet/status.h>
#include <plugnet/tensor.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct pn_loss_iface {
  size_t size; /* sizeof(pn_loss_iface) the plugin was built with */
  pn_status (*create)(const pn_config *cfg, void **ctx);
  /* pred: [N, C, ...] f32. target: class indices as i64 [N, ...] for
   * classification losses, or f32 shaped like pred for regression. Sets *loss
   * to a new 1-element tensor (the batch mean), recorded for autograd. */
  pn_status (*forward)(void *ctx, pn_tensor *pred, pn_tensor *target, pn_tensor **loss);
  void (*destroy)(void *ctx); /* optional */
  /* Whether targets are class indices (1) or values shaped like pred (0). */
  int target_is_index;
  void *reserved[8];
} pn_loss_iface;

typedef struct pn_loss pn_loss;
pn_status pn_loss_create(const char *feature, const pn_config *cfg, pn_loss **out);
pn_status pn_loss_forward(pn_loss *l, pn_tensor *pred, pn_tensor *target, pn_tensor **loss);
int pn_loss_target_is_index(const pn_loss *l);
void pn_loss_free(pn_loss *l);

#ifdef __cplusplus
}
#endif
#endif
