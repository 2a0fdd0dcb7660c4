/* The op registry: ops are the unit a backend implements. Each op has an id;
 * each backend registers a kernel per op it supports. Dispatch runs an op on
 * the device of its output and falls back, per op, to another backend that
 * has a kernel (logged once at info level, every time at debug level). */
#ifndef PLUGNET_OP_H
#define PLUGNET_OP_H

#include <stdint.h>
#include <plugnet/status.h>
#include <plugnet/tensor.h>

#ifdef __cplusplus
extern "C" {
#endif

#define PN_OP_MAX_INPUTS 8

/* Core ops, pre-registered under the names in pn_op_name(). Plugins add more
 * with pn_op_register(). */
typedef enum pn_core_op {
  PN_OP_FILL = 0,    /* out[i] = p.alpha (any dtype) */
  PN_OP_RANDOM,      /* counter-based: out[i] depends only on (seed, counter + i) */
  PN_OP_COPY,        /* strided in[0] -> contiguous out, casting dtype */
  PN_OP_UNARY,       /* p.kind: pn_unary_kind, f32 */
  PN_OP_BINARY,      /* p.kind: pn_binary_kind, f32, numpy broadcasting */
  PN_OP_MATMUL,      /* 2-D: out = op(a) * op(b), op = transpose when p.trans_* */
  PN_OP_REDUCE,      /* p.kind: pn_reduce_kind over the axes in p.axes */
  PN_OP_SOFTMAX,     /* along p.axis */
  PN_OP_LOG_SOFTMAX, /* along p.axis */
  /* Convolutional networks, NCHW. Geometry travels in p.x: see
   * pn_conv2d_params_pack / pn_pool2d_params_pack below. */
  PN_OP_CONV2D,             /* in: x [N,C,H,W], w [O,C/g,KH,KW], optional b [O] -> [N,O,OH,OW] */
  PN_OP_CONV2D_GRAD_INPUT,  /* in: dy [N,O,OH,OW], w -> dx [N,C,H,W] (out's shape) */
  PN_OP_CONV2D_GRAD_WEIGHT, /* in: dy, x -> dw [O,C/g,KH,KW] (out's shape) */
  PN_OP_POOL2D,             /* p.kind: pn_pool_kind; in: x [N,C,H,W] -> [N,C,OH,OW] */
  PN_OP_POOL2D_GRAD,        /* p.kind: pn_pool_kind; in: dy, x -> dx (max: to the first maximum) */
  PN_OP_CHANNEL_STATS,      /* in: x [N,C,...] -> [2,C]: per-channel mean, biased variance */
  PN_OP_CHANNEL_AFFINE,     /* in: x [N,C,...], a [C], b [C] (, y [N,C,...], c [C]) ->
                             * a[c]*x + b[c] (+ c[c]*y): batch-norm and its input gradient */
  PN_OP_CHANNEL_GRAD_STATS, /* in: dy, x [N,C,...], mean [C] -> [2,C]: per-channel sum of dy,
                             * sum of dy*(x - mean) */
  PN_OP_CONCAT,             /* in[0..n) concatenated along p.axis (other dims equal) */
  PN_OP_AXPBY,              /* in place (written = 1): in[0] = p.alpha*in[0] + p.beta*in[1] */
  PN_OP_CORE_COUNT
} pn_core_op;

typedef enum pn_unary_kind {
  PN_UNARY_NEG = 0,
  PN_UNARY_ABS,
  PN_UNARY_SIGN,
  PN_UNARY_EXP,
  PN_UNARY_LOG,
  PN_UNARY_SQRT,
  PN_UNARY_SQUARE,
  PN_UNARY_RECIP,
  PN_UNARY_RELU,
  PN_UNARY_STEP, /* 1 where x > 0, else 0 (ReLU's derivative) */
  PN_UNARY_SIGMOID,
  PN_UNARY_TANH,
  PN_UNARY_AFFINE, /* p.alpha * x + p.beta */
  PN_UNARY_CLAMP,  /* min(max(x, p.alpha), p.beta) (ReLU6: 0, 6) */
  PN_UNARY_INSIDE, /* 1 where p.alpha < x < p.beta, else 0 (the clamp's derivative) */
  PN_UNARY_COUNT
} pn_unary_kind;

typedef enum pn_binary_kind {
  PN_BINARY_ADD = 0,
  PN_BINARY_SUB,
  PN_BINARY_MUL,
  PN_BINARY_DIV,
  PN_BINARY_MAX,
  PN_BINARY_MIN,
  PN_BINARY_EQ, /* 1 where equal, else 0 */
  PN_BINARY_GT, /* 1 where a > b, else 0 */
  PN_BINARY_RELU_GRAD, /* a where b > 0, else 0: ReLU's backward (dy, x) in one pass */
  PN_BINARY_COUNT
} pn_binary_kind;

typedef enum pn_reduce_kind {
  PN_REDUCE_SUM = 0,
  PN_REDUCE_MEAN,
  PN_REDUCE_MAX,
  PN_REDUCE_MIN,
  PN_REDUCE_COUNT
} pn_reduce_kind;

typedef enum pn_pool_kind {
  PN_POOL_MAX = 0,
  PN_POOL_AVG,
  PN_POOL_ADAPTIVE_MAX, /* output size from out's shape; PyTorch's windows */
  PN_POOL_ADAPTIVE_AVG,
  PN_POOL_COUNT
} pn_pool_kind;

typedef enum pn_random_kind {
  PN_RANDOM_UNIFORM = 0, /* [alpha, beta) */
  PN_RANDOM_NORMAL,      /* mean alpha, std beta */
  PN_RANDOM_BERNOULLI,   /* 1 with probability alpha */
  PN_RANDOM_COUNT
} pn_random_kind;

typedef struct pn_op_params {
  int kind;
  uint32_t axes; /* reduce: bit d set = reduce dimension d */
  int keepdim;   /* reduce: keep reduced dimensions as size 1 */
  int axis;      /* softmax, log_softmax: a non-negative dimension */
  int trans_a, trans_b;
  double alpha, beta;
  uint64_t seed, counter;
  double x[8]; /* further scalars, for ops that plugins add (optimizer steps ...) */
} pn_op_params;

/* What a kernel receives. Inputs are contiguous except for PN_OP_COPY, and
 * all on the kernel's device; `out` is allocated, contiguous, with its final
 * shape. Binary inputs keep their own shapes: broadcast them to out.
 * In-place ops (optimizer steps) have out == NULL and modify the inputs whose
 * bit is set in `written`. */
typedef struct pn_op_args {
  int op;
  int n_in;
  const pn_tensor *in[PN_OP_MAX_INPUTS];
  pn_tensor *out;
  pn_op_params p;
  uint32_t written;
} pn_op_args;

/* A kernel may return PN_ERR_UNSUPPORTED (e.g. for a dtype) to ask for a
 * fallback to another backend. */
typedef pn_status (*pn_kernel_fn)(void *device_ctx, const pn_op_args *a);

/* Convolution geometry, [0] for height and [1] for width. */
typedef struct pn_conv2d_params {
  int stride[2], padding[2], dilation[2], groups;
} pn_conv2d_params;

/* Pooling geometry (the adaptive kinds use none of it). avg: the divisor
 * counts padding when count_include_pad (PyTorch's default), but never the
 * part of a ceil_mode window beyond the padded input. */
typedef struct pn_pool2d_params {
  int kernel[2], stride[2], padding[2], ceil_mode, count_include_pad;
} pn_pool2d_params;

/* Geometry rides in pn_op_params.x so that kernels of every backend, and a
 * recorded op's saved parameters, carry it without a new ABI field. */
static inline void pn_conv2d_params_pack(const pn_conv2d_params *c, pn_op_params *p) {
  for (int i = 0; i < 2; i++) {
    p->x[i] = c->stride[i];
    p->x[2 + i] = c->padding[i];
    p->x[4 + i] = c->dilation[i];
  }
  p->x[6] = c->groups;
}
static inline pn_conv2d_params pn_conv2d_params_unpack(const pn_op_params *p) {
  pn_conv2d_params c;
  for (int i = 0; i < 2; i++) {
    c.stride[i] = (int)p->x[i];
    c.padding[i] = (int)p->x[2 + i];
    c.dilation[i] = (int)p->x[4 + i];
  }
  c.groups = (int)p->x[6];
  return c;
}
static inline void pn_pool2d_params_pack(const pn_pool2d_params *c, pn_op_params *p) {
  for (int i = 0; i < 2; i++) {
    p->x[i] = c->kernel[i];
    p->x[2 + i] = c->stride[i];
    p->x[4 + i] = c->padding[i];
  }
  p->x[6] = c->ceil_mode;
  p->x[7] = c->count_include_pad;
}
static inline pn_pool2d_params pn_pool2d_params_unpack(const pn_op_params *p) {
  pn_pool2d_params c;
  for (int i = 0; i < 2; i++) {
    c.kernel[i] = (int)p->x[i];
    c.stride[i] = (int)p->x[2 + i];
    c.padding[i] = (int)p->x[4 + i];
  }
  c.ceil_mode = (int)p->x[6];
  c.count_include_pad = (int)p->x[7];
  return c;
}

/* Float to integer conversion as PN_OP_COPY defines it on every backend:
 * truncation toward zero, saturating at the destination's range, NaN to 0.
 * (C leaves out-of-range conversions undefined; integer narrowing wraps.) */
static inline int64_t pn_float_to_int(float v, int64_t lo, int64_t hi) {
  if (v != v) return 0;
  if (v <= (float)lo) return lo;
  if (v >= (float)hi) return hi;
  return (int64_t)v;
}

/* Registers an op name (idempotent) and returns its id, or -1 on error. */
int pn_op_register(const char *name);
int pn_op_lookup(const char *name);
const char *pn_op_name(int op);
int pn_op_count(void);

/* Whether the backend has a kernel for op. */
int pn_op_has_kernel(const char *backend, int op);

/* Runs a->op on a->out's device, with per-op fallback. */
pn_status pn_op_dispatch(const pn_op_args *a);

/* Philox-4x32-10, the counter-based generator every backend must use for
 * PN_OP_RANDOM so that results do not depend on the backend or thread count.
 * Fills r[0..3] with the 4 words for block `counter`. */
void pn_philox4x32(uint64_t seed, uint64_t counter, uint32_t r[4]);
/* Element i of PN_OP_RANDOM: the same value on every backend. */
float pn_random_value(int kind, double alpha, double beta, uint64_t seed, uint64_t index);

/* p.kind of PN_OP_CHANNEL_AFFINE and PN_OP_CHANNEL_GRAD_STATS (0: as
 * described above). RELU (affine only): the result is clamped below at 0,
 * batch-norm and its ReLU in one pass. MASK: one more input, last, shaped
 * like x: the first input counts only where it is > 0 (the ReLU's backward
 * folded into batch-norm's, the mask being the ReLU's output). */
typedef enum pn_channel_kind {
  PN_CHANNEL_PLAIN = 0,
  PN_CHANNEL_RELU,
  PN_CHANNEL_MASK,
  PN_CHANNEL_COUNT
} pn_channel_kind;

#ifdef __cplusplus
}
#endif
#endif
