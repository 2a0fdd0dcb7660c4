/* The cpu backend's kernels and the device state they share with cpu.c. */
#ifndef PLUGNET_CPU_KERNELS_H
#define PLUGNET_CPU_KERNELS_H

#include <plugnet/op.h>
#include <plugnet/threadpool.h>

/* The device context every kernel receives. */
typedef struct pni_cpu_ctx {
  pn_threadpool *pool; /* NULL: run everything on the calling thread */
  int own_pool;        /* pool was created by set_threads (else it is the global one) */
} pni_cpu_ctx;

/* Reads the cache sizes the kernels tune themselves to; once, from init. */
void pni_cpu_kernels_init(void);

/* Runs fn over [0, n) on the pool, or inline when n is below two grains, so
 * that small ops never pay for waking workers. */
void pni_cpu_parallel(const pni_cpu_ctx *c, int64_t n, int64_t grain, pn_parallel_fn fn, void *arg);

pn_status pni_cpu_fill(void *dctx, const pn_op_args *a);
pn_status pni_cpu_random(void *dctx, const pn_op_args *a);
pn_status pni_cpu_copy(void *dctx, const pn_op_args *a);
pn_status pni_cpu_unary(void *dctx, const pn_op_args *a);
pn_status pni_cpu_binary(void *dctx, const pn_op_args *a);
pn_status pni_cpu_matmul(void *dctx, const pn_op_args *a);
pn_status pni_cpu_reduce(void *dctx, const pn_op_args *a);
pn_status pni_cpu_softmax(void *dctx, const pn_op_args *a);
pn_status pni_cpu_log_softmax(void *dctx, const pn_op_args *a);
/* cpu_conv.c */
pn_status pni_cpu_conv2d(void *dctx, const pn_op_args *a);
pn_status pni_cpu_conv2d_grad_input(void *dctx, const pn_op_args *a);
pn_status pni_cpu_conv2d_grad_weight(void *dctx, const pn_op_args *a);
/* cpu_depthwise.c: depthwise convolutions (groups == C == O), called by
 * cpu_conv.c's kernels once they have checked the shapes. */
typedef struct pni_cpu_dw_geom {
  int64_t n, c, h, w;  /* input */
  int64_t kh, kw;      /* weight [c, 1, kh, kw] */
  int64_t oh, ow;      /* output */
  int64_t sy, sx, py, px, dy, dx;
} pni_cpu_dw_geom;
void pni_cpu_dw_forward(const pni_cpu_ctx *c, const pni_cpu_dw_geom *d, const float *x,
                        const float *w, const float *b, float *y);
void pni_cpu_dw_grad_input(const pni_cpu_ctx *c, const pni_cpu_dw_geom *d, const float *dy,
                           const float *w, float *dx);
pn_status pni_cpu_dw_grad_weight(const pni_cpu_ctx *c, const pni_cpu_dw_geom *d, const float *dy,
                                 const float *x, float *dw);
/* cpu_nn.c */
pn_status pni_cpu_pool2d(void *dctx, const pn_op_args *a);
pn_status pni_cpu_pool2d_grad(void *dctx, const pn_op_args *a);
pn_status pni_cpu_channel_stats(void *dctx, const pn_op_args *a);
pn_status pni_cpu_channel_affine(void *dctx, const pn_op_args *a);
pn_status pni_cpu_channel_grad_stats(void *dctx, const pn_op_args *a);
pn_status pni_cpu_concat(void *dctx, const pn_op_args *a);
pn_status pni_cpu_axpby(void *dctx, const pn_op_args *a);

#endif
