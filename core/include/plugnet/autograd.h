/* Reverse-mode autograd on a tape. Ops whose inputs require a gradient are
 * recorded, in order, on the calling thread's tape; pn_backward walks it in
 * reverse, accumulating gradients into leaf tensors (t->grad), then clears
 * it. Gradients are computed with ops, so they run on any backend. */
#ifndef PLUGNET_AUTOGRAD_H
#define PLUGNET_AUTOGRAD_H

#include <plugnet/status.h>
#include <plugnet/tensor.h>

#ifdef __cplusplus
extern "C" {
#endif

void pn_tensor_set_requires_grad(pn_tensor *t, int on);
/* The accumulated gradient of a leaf (borrowed), or NULL. */
pn_tensor *pn_tensor_grad(const pn_tensor *t);
void pn_tensor_zero_grad(pn_tensor *t);

/* Grad mode is per thread and on by default. Returns the previous mode. */
int pn_grad_enabled(void);
int pn_set_grad_enabled(int on);

/* Backpropagates from `out` with seed gradient `gout` (NULL: ones, which is
 * what a scalar loss wants), then clears the tape. */
pn_status pn_backward(pn_tensor *out, pn_tensor *gout);
/* Drops every recorded op (e.g. after an evaluation pass with grad on). */
void pn_tape_clear(void);
int pn_tape_size(void);

/* The backward of a recorded op: given the output gradient, set gin[i] to a
 * new reference to the gradient of input i, or NULL when input i needs none
 * (needs_grad[i] == 0). `saved` holds what the op kept. */
typedef struct pn_backward_ctx {
  pn_tensor *const *in;
  int n_in;
  pn_tensor *out; /* may be NULL if the caller dropped it, unless saved */
  pn_tensor *const *saved;
  int n_saved;
  const int *needs_grad;
  const void *params;       /* copy of the op's parameters */
  const pn_shape *in_shape; /* each input's shape (in[i] may be gone: see ops.c) */
} pn_backward_ctx;
typedef pn_status (*pn_backward_fn)(const pn_backward_ctx *c, pn_tensor *gout, pn_tensor **gin);

/* Records an op so that a plugin's fused kernel gets gradients: a no-op
 * unless grad mode is on and an input requires a gradient. `params` (of
 * `params_size` bytes) is copied. When keep_out is set the output is kept
 * alive for the backward (c->out). */
pn_status pn_autograd_record(const char *name, pn_tensor *const *in, int n_in, pn_tensor *out,
                             pn_backward_fn backward, pn_tensor *const *saved, int n_saved,
                             const void *params, size_t params_size, int keep_out);

/* Hooks. A gradient hook sees the total gradient of t once it is known and
 * may return a replacement (a new reference) or NULL to keep it. */
typedef pn_tensor *(*pn_grad_hook_fn)(pn_tensor *t, pn_tensor *grad, void *user);
pn_status pn_tensor_add_grad_hook(pn_tensor *t, pn_grad_hook_fn fn, void *user);

/* A forward hook sees every op recorded or not, after it ran. */
typedef void (*pn_forward_hook_fn)(const char *op, pn_tensor *const *in, int n_in, pn_tensor *out,
                                   void *user);
int pn_add_forward_hook(pn_forward_hook_fn fn, void *user); /* returns a handle */
void pn_remove_forward_hook(int handle);

#ifdef __cplusplus
}
#endif
#endif
