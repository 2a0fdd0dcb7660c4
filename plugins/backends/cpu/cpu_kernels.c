/* The cpu backend's kernels. Hot loops are plain C written so that gcc -O3
 * vectorises them (independent lanes, no calls, restrict pointers) and are
 * cloned for AVX-512, AVX2 and baseline x86-64; the loader's ifunc picks the
 * clone once, so one binary runs on every machine at full width. Work is
 * split over the pool only above a size threshold, so that small ops pay
 * nothing for threading (a 1-element op goes straight to its loop). */
#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include <cblas.h>

#include <plugnet/tensor.h>

#include "cpu_kernels.h"

#define HOT    __attribute__((target_clones("avx512f", "avx2", "default")))
#define INLINE static inline __attribute__((always_inline))

/* Elements per slice handed to a worker: large enough that waking it costs
 * far less than the work (memory-bound loops), smaller for loops that are
 * heavy per element (exp, tanh, the counter-based generator). */
enum { ELEM_GRAIN = 1 << 15, MATH_GRAIN = 1 << 12, RANDOM_GRAIN = 1 << 11 };

void pni_cpu_parallel(const pni_cpu_ctx *c, int64_t n, int64_t grain, pn_parallel_fn fn,
                      void *arg) {
  if (grain < 1) grain = 1;
  if (n < 2 * grain || !c || !c->pool || pn_threadpool_size(c->pool) < 2) {
    if (n > 0) fn(arg, 0, n, 0);
    return;
  }
  pn_threadpool_parallel_for(c->pool, n, grain, fn, arg);
}

/* Outputs at least this large are written around the caches (non-temporal
 * stores): they could not stay cached anyway, and skipping the read for
 * ownership of every output line saves a quarter of an add's traffic.
 * movntps is SSE2, part of every x86-64; elsewhere outputs are not streamed. */
#if defined(__SSE2__)
#define HAVE_STREAM 1
#else
#define HAVE_STREAM 0
#endif
static int64_t stream_min_bytes = 8 << 20;
enum { STREAM_BLOCK = 1024 }; /* floats computed in L1 before streaming out */

void pni_cpu_kernels_init(void) {
  long llc = sysconf(_SC_LEVEL3_CACHE_SIZE);
  /* Virtual machines may report the whole host's cache: cap what we trust. */
  if (llc > 64L << 20) llc = 64L << 20;
  if (llc / 2 > stream_min_bytes) stream_min_bytes = llc / 2;
}

static int stream_output(int64_t n_floats) {
  return HAVE_STREAM && n_floats * (int64_t)sizeof(float) >= stream_min_bytes;
}

/* Elements to write normally before dst is 16-byte aligned for movntps. */
static int64_t stream_head(const float *dst, int64_t n) {
  int64_t h = (int64_t)((16 - ((uintptr_t)dst & 15)) & 15) / (int64_t)sizeof(float);
  return h < n ? h : n;
}

static void stream_copy(float *restrict dst, const float *restrict src, int64_t n) {
  int64_t i = stream_head(dst, n);
  memcpy(dst, src, (size_t)i * sizeof *dst);
#if HAVE_STREAM
  for (; i + 4 <= n; i += 4) _mm_stream_ps(dst + i, _mm_loadu_ps(src + i));
#endif
  for (; i < n; i++) dst[i] = src[i];
}

static void stream_fill(float *dst, float v, int64_t n) {
  int64_t i = 0;
  for (; i < stream_head(dst, n); i++) dst[i] = v;
#if HAVE_STREAM
  const __m128 vv = _mm_set1_ps(v);
  for (; i + 4 <= n; i += 4) _mm_stream_ps(dst + i, vv);
#endif
  for (; i < n; i++) dst[i] = v;
}

/* Non-temporal stores are weakly ordered: fence them before the pool
 * reports the slice done, or another thread could read stale data. */
static void stream_fence(void) {
#if HAVE_STREAM
  _mm_sfence();
#endif
}

static int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }

static int64_t max64(int64_t a, int64_t b) { return a > b ? a : b; }

static pn_status unsupported(const pn_op_args *a, const pn_tensor *t) {
  return pn_error(PN_ERR_UNSUPPORTED, "cpu: op %s: dtype %s not supported", pn_op_name(a->op),
                  pn_dtype_name(t->dtype));
}

/* Every input and the output f32; else the op is left to another backend. */
static pn_status require_f32(const pn_op_args *a) {
  for (int i = 0; i < a->n_in; i++)
    if (a->in[i]->dtype != PN_F32) return unsupported(a, a->in[i]);
  if (a->out->dtype != PN_F32) return unsupported(a, a->out);
  return PN_OK;
}

/* ------------------------------------------------------------ math */

INLINE float bits_to_float(uint32_t u) {
  union {
    uint32_t u;
    float f;
  } v = {u};
  return v.f;
}

/* e^x to about 1 ulp, branch-free so that loops calling it vectorise: x =
 * n ln2 + r with |r| <= ln2/2, e^r by its Taylor series to degree 7
 * (truncation error < 1e-8), 2^n applied in two halves so that results near
 * overflow and in the subnormal range come out right. */
INLINE float exp_approx(float x) {
  float xs = x == x ? x : 0.0f;
  xs = xs < -110.0f ? -110.0f : xs;
  xs = xs > 89.0f ? 89.0f : xs;
  /* Adding 1.5 * 2^23 rounds to an integer in the mantissa. */
  float n = (xs * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
  float r = xs - n * 0.693145751953125f; /* ln2's top bits: n * hi is exact */
  r = r - n * 1.42860682030941723e-6f;   /* the rest of ln2 */
  float p = 1.0f / 5040.0f;
  p = p * r + 1.0f / 720.0f;
  p = p * r + 1.0f / 120.0f;
  p = p * r + 1.0f / 24.0f;
  p = p * r + 1.0f / 6.0f;
  p = p * r + 0.5f;
  p = p * r + 1.0f;
  p = p * r + 1.0f;
  int32_t ni = (int32_t)n;
  int32_t half = ni / 2;
  float s1 = bits_to_float((uint32_t)(half + 127) << 23);
  float s2 = bits_to_float((uint32_t)(ni - half + 127) << 23);
  float y = p * s1 * s2;
  return x == x ? y : x;
}

/* tanh from e^(-2|x|) (no cancellation for large |x|), and its odd series
 * near 0, where 1 - t loses the relative precision of small results. */
INLINE float tanh_approx(float x) {
  float ax = fabsf(x);
  float t = exp_approx(-2.0f * ax);
  float big = (1.0f - t) / (1.0f + t);
  float x2 = ax * ax;
  float small = ax * (1.0f + x2 * (-1.0f / 3.0f + x2 * (2.0f / 15.0f + x2 * (-17.0f / 315.0f))));
  return copysignf(ax < 0.0625f ? small : big, x);
}

/* ------------------------------------------------------------ fill */

HOT static void fill_f32(float *restrict p, float v, int64_t n) {
  for (int64_t i = 0; i < n; i++) p[i] = v;
}

HOT static void fill_i32(int32_t *restrict p, int32_t v, int64_t n) {
  for (int64_t i = 0; i < n; i++) p[i] = v;
}

HOT static void fill_i64(int64_t *restrict p, int64_t v, int64_t n) {
  for (int64_t i = 0; i < n; i++) p[i] = v;
}

typedef struct fill_job {
  void *p;
  pn_dtype dt;
  double v;
  int stream;
} fill_job;

static void fill_range(void *arg, int64_t b, int64_t e, int worker) {
  (void)worker;
  const fill_job *j = arg;
  switch (j->dt) {
  case PN_F32:
    if (!j->stream) {
      fill_f32((float *)j->p + b, (float)j->v, e - b);
      break;
    }
    stream_fill((float *)j->p + b, (float)j->v, e - b);
    stream_fence();
    break;
  case PN_I32: fill_i32((int32_t *)j->p + b, (int32_t)j->v, e - b); break;
  case PN_I64: fill_i64((int64_t *)j->p + b, (int64_t)j->v, e - b); break;
  case PN_U8: memset((uint8_t *)j->p + b, (uint8_t)j->v, (size_t)(e - b)); break;
  default: break;
  }
}

pn_status pni_cpu_fill(void *dctx, const pn_op_args *a) {
  pn_tensor *o = a->out;
  if (o->dtype != PN_F32 && o->dtype != PN_I32 && o->dtype != PN_I64 && o->dtype != PN_U8)
    return unsupported(a, o);
  int64_t n = pn_tensor_numel(o);
  fill_job j = {pn_tensor_data(o), o->dtype, a->p.alpha, stream_output(n)};
  pni_cpu_parallel(dctx, n, ELEM_GRAIN, fill_range, &j);
  return PN_OK;
}

/* ------------------------------------------------------------ random */

typedef struct random_job {
  float *p;
  const pn_op_params *prm;
} random_job;

/* Element i's value depends only on (seed, counter + i), so any split of the
 * range over any number of workers gives the same tensor. */
static void random_range(void *arg, int64_t b, int64_t e, int worker) {
  (void)worker;
  const random_job *j = arg;
  const pn_op_params *p = j->prm;
  for (int64_t i = b; i < e; i++)
    j->p[i] = pn_random_value(p->kind, p->alpha, p->beta, p->seed, p->counter + (uint64_t)i);
}

pn_status pni_cpu_random(void *dctx, const pn_op_args *a) {
  if (a->out->dtype != PN_F32) return unsupported(a, a->out);
  random_job j = {pn_tensor_data(a->out), &a->p};
  pni_cpu_parallel(dctx, pn_tensor_numel(a->out), RANDOM_GRAIN, random_range, &j);
  return PN_OK;
}

/* ------------------------------------------------------------ strided walks */

/* Up to two inputs walked in the index order of a contiguous output, with
 * dimensions collapsed so that the innermost one is as long as possible and
 * the per-element work runs in a tight loop. */
typedef struct walk {
  int ndim, n_in;
  int64_t shape[PN_MAX_DIMS];
  int64_t st[2][PN_MAX_DIMS]; /* in elements; 0 for a broadcast dimension */
} walk;

static int walk_mergeable(const walk *w, int outer, int d) {
  for (int i = 0; i < w->n_in; i++)
    if (w->st[i][outer] != w->st[i][d] * w->shape[d]) return 0;
  return 1;
}

/* Drops size-1 dimensions and merges neighbours that are contiguous with
 * each other in every input (the output always is). */
static void walk_collapse(walk *w) {
  int nd = 0;
  for (int d = 0; d < w->ndim; d++) {
    if (w->shape[d] == 1) continue;
    if (nd > 0 && walk_mergeable(w, nd - 1, d)) {
      w->shape[nd - 1] *= w->shape[d];
      for (int i = 0; i < w->n_in; i++) w->st[i][nd - 1] = w->st[i][d];
      continue;
    }
    w->shape[nd] = w->shape[d];
    for (int i = 0; i < w->n_in; i++) w->st[i][nd] = w->st[i][d];
    nd++;
  }
  if (nd == 0) {
    w->shape[0] = 1;
    for (int i = 0; i < w->n_in; i++) w->st[i][0] = 0;
    nd = 1;
  }
  w->ndim = nd;
}

/* Called for each run of `n` output elements that lie along the innermost
 * dimension: out_off is the output's offset, in_off each input's. */
typedef void (*segment_fn)(void *ctx, int64_t out_off, const int64_t *in_off, int64_t n);

static void walk_range(const walk *w, int64_t b, int64_t e, segment_fn seg, void *ctx) {
  int last = w->ndim - 1;
  int64_t idx[PN_MAX_DIMS], off[2] = {0, 0}, rem = b;
  for (int d = last; d >= 0; d--) {
    idx[d] = rem % w->shape[d];
    rem /= w->shape[d];
    for (int i = 0; i < w->n_in; i++) off[i] += idx[d] * w->st[i][d];
  }
  for (int64_t pos = b; pos < e;) {
    int64_t n = min64(w->shape[last] - idx[last], e - pos);
    seg(ctx, pos, off, n);
    pos += n;
    idx[last] += n;
    for (int i = 0; i < w->n_in; i++) off[i] += n * w->st[i][last];
    for (int d = last; d > 0 && idx[d] == w->shape[d]; d--) {
      idx[d] = 0;
      idx[d - 1]++;
      for (int i = 0; i < w->n_in; i++) off[i] += w->st[i][d - 1] - w->shape[d] * w->st[i][d];
    }
  }
}

/* ------------------------------------------------------------ copy and cast */

typedef void (*cast_kernel)(void *restrict dst, const void *restrict src, int64_t stride,
                            int64_t n);

/* One loop per (source, destination) dtype pair, each converting exactly as
 * the reference does: plain C conversion, except float to integer, which
 * saturates (pn_float_to_int) where C would be undefined. */
#define CAST_LOOP(name, ST, DT, CONV)                                                              \
  HOT static void name(void *restrict dst, const void *restrict src, int64_t stride, int64_t n) {  \
    DT *restrict d = dst;                                                                          \
    const ST *restrict s = src;                                                                    \
    if (stride == 1)                                                                               \
      for (int64_t i = 0; i < n; i++) d[i] = CONV(s[i]);                                           \
    else                                                                                           \
      for (int64_t i = 0; i < n; i++) d[i] = CONV(s[i * stride]);                                  \
  }
#define CAST_KERNEL(name, ST, DT) CAST_LOOP(name, ST, DT, (DT))
#define TO_I32(v)                 (int32_t) pn_float_to_int((v), INT32_MIN, INT32_MAX)
#define TO_I64(v)                 pn_float_to_int((v), INT64_MIN, INT64_MAX)
#define TO_U8(v)                  (uint8_t) pn_float_to_int((v), 0, 255)

CAST_KERNEL(cast_f32_f32, float, float)
CAST_LOOP(cast_f32_i32, float, int32_t, TO_I32)
CAST_LOOP(cast_f32_i64, float, int64_t, TO_I64)
CAST_LOOP(cast_f32_u8, float, uint8_t, TO_U8)
CAST_KERNEL(cast_i32_f32, int32_t, float)
CAST_KERNEL(cast_i32_i32, int32_t, int32_t)
CAST_KERNEL(cast_i32_i64, int32_t, int64_t)
CAST_KERNEL(cast_i32_u8, int32_t, uint8_t)
CAST_KERNEL(cast_i64_f32, int64_t, float)
CAST_KERNEL(cast_i64_i32, int64_t, int32_t)
CAST_KERNEL(cast_i64_i64, int64_t, int64_t)
CAST_KERNEL(cast_i64_u8, int64_t, uint8_t)
CAST_KERNEL(cast_u8_f32, uint8_t, float)
CAST_KERNEL(cast_u8_i32, uint8_t, int32_t)
CAST_KERNEL(cast_u8_i64, uint8_t, int64_t)
CAST_KERNEL(cast_u8_u8, uint8_t, uint8_t)

/* Indexed [source dtype][destination dtype] in pn_dtype order. */
static const cast_kernel cast_table[4][4] = {
    {cast_f32_f32, cast_f32_i32, cast_f32_i64, cast_f32_u8},
    {cast_i32_f32, cast_i32_i32, cast_i32_i64, cast_i32_u8},
    {cast_i64_f32, cast_i64_i32, cast_i64_i64, cast_i64_u8},
    {cast_u8_f32, cast_u8_i32, cast_u8_i64, cast_u8_u8},
};

typedef struct copy_job {
  walk w;
  const char *src;
  char *dst;
  size_t src_size, dst_size;
  cast_kernel kern;
} copy_job;

static void copy_segment(void *ctx, int64_t out_off, const int64_t *in_off, int64_t n) {
  const copy_job *j = ctx;
  j->kern(j->dst + (size_t)out_off * j->dst_size, j->src + (size_t)in_off[0] * j->src_size,
          j->w.st[0][j->w.ndim - 1], n);
}

static void copy_range(void *arg, int64_t b, int64_t e, int worker) {
  (void)worker;
  copy_job *j = arg;
  walk_range(&j->w, b, e, copy_segment, j);
}

typedef struct memcpy_job {
  char *dst;
  const char *src;
} memcpy_job;

static void memcpy_range(void *arg, int64_t b, int64_t e, int worker) {
  (void)worker;
  const memcpy_job *j = arg;
  memcpy(j->dst + b, j->src + b, (size_t)(e - b));
}

static int cast_dtype(pn_dtype dt) {
  return dt == PN_F32 || dt == PN_I32 || dt == PN_I64 || dt == PN_U8;
}

pn_status pni_cpu_copy(void *dctx, const pn_op_args *a) {
  const pn_tensor *x = a->in[0];
  pn_tensor *o = a->out;
  if (!cast_dtype(x->dtype)) return unsupported(a, x);
  if (!cast_dtype(o->dtype)) return unsupported(a, o);
  int64_t n = pn_tensor_numel(o);
  if (pn_tensor_numel(x) != n)
    return pn_error(PN_ERR_SHAPE, "cpu: copy: %lld elements into %lld",
                    (long long)pn_tensor_numel(x), (long long)n);
  if (x->dtype == o->dtype && pn_tensor_is_contiguous(x)) {
    memcpy_job m = {pn_tensor_data(o), pn_tensor_data(x)};
    int64_t bytes = n * (int64_t)pn_dtype_size(o->dtype);
    pni_cpu_parallel(dctx, bytes, 4 * ELEM_GRAIN, memcpy_range, &m);
    return PN_OK;
  }
  copy_job j = {.src = pn_tensor_data(x),
                .dst = pn_tensor_data(o),
                .src_size = pn_dtype_size(x->dtype),
                .dst_size = pn_dtype_size(o->dtype),
                .kern = cast_table[x->dtype][o->dtype]};
  j.w.ndim = x->ndim;
  j.w.n_in = 1;
  for (int d = 0; d < x->ndim; d++) {
    j.w.shape[d] = x->shape[d];
    j.w.st[0][d] = x->stride[d];
  }
  walk_collapse(&j.w);
  pni_cpu_parallel(dctx, n, ELEM_GRAIN, copy_range, &j);
  return PN_OK;
}

/* ------------------------------------------------------------ unary */

typedef void (*unary_kernel)(float *restrict o, const float *restrict x, int64_t n, float alpha,
                             float beta);

#define UNARY_KERNEL(name, expr)                                                                   \
  HOT static void name(float *restrict o, const float *restrict in, int64_t n, float alpha,        \
                       float beta) {                                                               \
    (void)alpha;                                                                                   \
    (void)beta;                                                                                    \
    for (int64_t i = 0; i < n; i++) {                                                              \
      float x = in[i];                                                                             \
      o[i] = (expr);                                                                               \
    }                                                                                              \
  }

UNARY_KERNEL(unary_neg, -x)
UNARY_KERNEL(unary_abs, fabsf(x))
UNARY_KERNEL(unary_sign, (float)((x > 0.0f) - (x < 0.0f)))
UNARY_KERNEL(unary_exp, exp_approx(x))
UNARY_KERNEL(unary_log, logf(x))
UNARY_KERNEL(unary_sqrt, sqrtf(x))
UNARY_KERNEL(unary_square, x *x)
UNARY_KERNEL(unary_recip, 1.0f / x)
UNARY_KERNEL(unary_relu, x > 0.0f ? x : 0.0f)
UNARY_KERNEL(unary_step, x > 0.0f ? 1.0f : 0.0f)
UNARY_KERNEL(unary_sigmoid, 1.0f / (1.0f + exp_approx(-x)))
UNARY_KERNEL(unary_tanh, tanh_approx(x))
UNARY_KERNEL(unary_affine, alpha *x + beta)
/* min(max(x, lo), hi) with NaN passed through, as PyTorch's clamp. */
UNARY_KERNEL(unary_clamp, (x < alpha ? alpha : x) > beta ? beta : (x < alpha ? alpha : x))
UNARY_KERNEL(unary_inside, x > alpha && x < beta ? 1.0f : 0.0f)

static const unary_kernel unary_table[PN_UNARY_COUNT] = {
    [PN_UNARY_NEG] = unary_neg,         [PN_UNARY_ABS] = unary_abs,
    [PN_UNARY_SIGN] = unary_sign,       [PN_UNARY_EXP] = unary_exp,
    [PN_UNARY_LOG] = unary_log,         [PN_UNARY_SQRT] = unary_sqrt,
    [PN_UNARY_SQUARE] = unary_square,   [PN_UNARY_RECIP] = unary_recip,
    [PN_UNARY_RELU] = unary_relu,       [PN_UNARY_STEP] = unary_step,
    [PN_UNARY_SIGMOID] = unary_sigmoid, [PN_UNARY_TANH] = unary_tanh,
    [PN_UNARY_AFFINE] = unary_affine,   [PN_UNARY_CLAMP] = unary_clamp,
    [PN_UNARY_INSIDE] = unary_inside,
};

typedef struct unary_job {
  unary_kernel kern;
  float *o;
  const float *x;
  float alpha, beta;
  int stream;
} unary_job;

static void unary_range(void *arg, int64_t b, int64_t e, int worker) {
  (void)worker;
  const unary_job *j = arg;
  if (!j->stream) {
    j->kern(j->o + b, j->x + b, e - b, j->alpha, j->beta);
    return;
  }
  _Alignas(64) float buf[STREAM_BLOCK];
  for (int64_t k = b; k < e; k += STREAM_BLOCK) {
    int64_t len = min64(STREAM_BLOCK, e - k);
    j->kern(buf, j->x + k, len, j->alpha, j->beta);
    stream_copy(j->o + k, buf, len);
  }
  stream_fence();
}

static int unary_is_cheap(int kind) {
  return kind != PN_UNARY_EXP && kind != PN_UNARY_LOG && kind != PN_UNARY_SIGMOID &&
         kind != PN_UNARY_TANH;
}

pn_status pni_cpu_unary(void *dctx, const pn_op_args *a) {
  PN_TRY(require_f32(a));
  int kind = a->p.kind;
  if (kind < 0 || kind >= PN_UNARY_COUNT)
    return pn_error(PN_ERR_UNSUPPORTED, "cpu: unary kind %d unknown", kind);
  int64_t n = pn_tensor_numel(a->out);
  unary_job j = {unary_table[kind], pn_tensor_data(a->out), pn_tensor_data(a->in[0]),
                 (float)a->p.alpha, (float)a->p.beta,       stream_output(n)};
  if (n < 2 * MATH_GRAIN) {
    j.kern(j.o, j.x, n, j.alpha, j.beta);
    return PN_OK;
  }
  pni_cpu_parallel(dctx, n, unary_is_cheap(kind) ? ELEM_GRAIN : MATH_GRAIN, unary_range, &j);
  return PN_OK;
}

/* ------------------------------------------------------------ binary */

/* vv: both inputs run along the output; vs: b is one value; sv: a is. */
typedef void (*binary_kernel)(float *restrict o, const float *restrict a, const float *restrict b,
                              int64_t n);

#define BINARY_KERNELS(name, expr)                                                                 \
  HOT static void name##_vv(float *restrict o, const float *restrict a, const float *restrict b,   \
                            int64_t n) {                                                           \
    for (int64_t i = 0; i < n; i++) {                                                              \
      float x = a[i], y = b[i];                                                                    \
      o[i] = (expr);                                                                               \
    }                                                                                              \
  }                                                                                                \
  HOT static void name##_vs(float *restrict o, const float *restrict a, const float *restrict b,   \
                            int64_t n) {                                                           \
    float y = b[0];                                                                                \
    for (int64_t i = 0; i < n; i++) {                                                              \
      float x = a[i];                                                                              \
      o[i] = (expr);                                                                               \
    }                                                                                              \
  }                                                                                                \
  HOT static void name##_sv(float *restrict o, const float *restrict a, const float *restrict b,   \
                            int64_t n) {                                                           \
    float x = a[0];                                                                                \
    for (int64_t i = 0; i < n; i++) {                                                              \
      float y = b[i];                                                                              \
      o[i] = (expr);                                                                               \
    }                                                                                              \
  }

BINARY_KERNELS(bin_add, x + y)
BINARY_KERNELS(bin_sub, x - y)
BINARY_KERNELS(bin_mul, x *y)
BINARY_KERNELS(bin_div, x / y)
BINARY_KERNELS(bin_max, x > y ? x : y)
BINARY_KERNELS(bin_min, x < y ? x : y)
BINARY_KERNELS(bin_eq, x == y ? 1.0f : 0.0f)
BINARY_KERNELS(bin_gt, x > y ? 1.0f : 0.0f)
BINARY_KERNELS(bin_relu_grad, y > 0.0f ? x : 0.0f)

enum { VV = 0, VS, SV };

/* The same kinds with non-temporal stores, for outputs that do not fit the
 * caches. Computing straight into movntps matters: going through an L1
 * buffer costs a fifth of the bandwidth. n is a multiple of 4 and o is
 * 16-byte aligned; a_runs says whether a advances (else it is one value). */
typedef void (*binary_stream_kernel)(float *o, const float *a, const float *b, int64_t n,
                                     int a_runs, int b_runs);

#if HAVE_STREAM
#define BINARY_STREAM(name, vexpr)                                                                 \
  static void name##_stream(float *o, const float *a, const float *b, int64_t n, int a_runs,       \
                            int b_runs) {                                                          \
    const __m128 one = _mm_set1_ps(1.0f), a0 = _mm_set1_ps(a[0]), b0 = _mm_set1_ps(b[0]);          \
    (void)one;                                                                                     \
    for (int64_t i = 0; i + 4 <= n; i += 4) {                                                      \
      __m128 x = a_runs ? _mm_loadu_ps(a + i) : a0;                                                \
      __m128 y = b_runs ? _mm_loadu_ps(b + i) : b0;                                                \
      _mm_stream_ps(o + i, (vexpr));                                                               \
    }                                                                                              \
  }
/* maxps and minps return the second operand when the comparison fails,
 * exactly as x > y ? x : y and x < y ? x : y do. */
BINARY_STREAM(bin_add, _mm_add_ps(x, y))
BINARY_STREAM(bin_sub, _mm_sub_ps(x, y))
BINARY_STREAM(bin_mul, _mm_mul_ps(x, y))
BINARY_STREAM(bin_div, _mm_div_ps(x, y))
BINARY_STREAM(bin_max, _mm_max_ps(x, y))
BINARY_STREAM(bin_min, _mm_min_ps(x, y))
BINARY_STREAM(bin_eq, _mm_and_ps(_mm_cmpeq_ps(x, y), one))
BINARY_STREAM(bin_gt, _mm_and_ps(_mm_cmpgt_ps(x, y), one))
BINARY_STREAM(bin_relu_grad, _mm_and_ps(_mm_cmpgt_ps(y, _mm_setzero_ps()), x))

static const binary_stream_kernel binary_stream_table[PN_BINARY_COUNT] = {
    [PN_BINARY_ADD] = bin_add_stream, [PN_BINARY_SUB] = bin_sub_stream,
    [PN_BINARY_MUL] = bin_mul_stream, [PN_BINARY_DIV] = bin_div_stream,
    [PN_BINARY_MAX] = bin_max_stream, [PN_BINARY_MIN] = bin_min_stream,
    [PN_BINARY_EQ] = bin_eq_stream,   [PN_BINARY_GT] = bin_gt_stream,
    [PN_BINARY_RELU_GRAD] = bin_relu_grad_stream,
};
#else
static const binary_stream_kernel binary_stream_table[PN_BINARY_COUNT];
#endif

#define BINARY_ROW(name)                                                                           \
  { name##_vv, name##_vs, name##_sv }
static const binary_kernel binary_table[PN_BINARY_COUNT][3] = {
    [PN_BINARY_ADD] = BINARY_ROW(bin_add), [PN_BINARY_SUB] = BINARY_ROW(bin_sub),
    [PN_BINARY_MUL] = BINARY_ROW(bin_mul), [PN_BINARY_DIV] = BINARY_ROW(bin_div),
    [PN_BINARY_MAX] = BINARY_ROW(bin_max), [PN_BINARY_MIN] = BINARY_ROW(bin_min),
    [PN_BINARY_EQ] = BINARY_ROW(bin_eq),   [PN_BINARY_GT] = BINARY_ROW(bin_gt),
    [PN_BINARY_RELU_GRAD] = BINARY_ROW(bin_relu_grad),
};

typedef struct binary_job {
  walk w;
  const binary_kernel *kern; /* the kind's row of binary_table */
  binary_stream_kernel stream_kern;
  float *o;
  const float *a, *b;
  int stream;
} binary_job;

/* a_runs: a advances along the run (else it is one value repeated). */
static void binary_run(const binary_kernel *kern, float *o, const float *a, const float *b,
                       int64_t n, int a_runs, int b_runs) {
  if (n <= 0) return;
  if (a_runs && b_runs)
    kern[VV](o, a, b, n);
  else if (a_runs)
    kern[VS](o, a, b, n);
  else if (b_runs)
    kern[SV](o, a, b, n);
  else {
    kern[VV](o, a, b, 1);
    fill_f32(o + 1, o[0], n - 1);
  }
}

static void binary_segment(void *ctx, int64_t out_off, const int64_t *in_off, int64_t n) {
  const binary_job *j = ctx;
  int last = j->w.ndim - 1;
  int a_runs = j->w.st[0][last] != 0, b_runs = j->w.st[1][last] != 0;
  float *o = j->o + out_off;
  const float *a = j->a + in_off[0], *b = j->b + in_off[1];
  if (!j->stream) {
    binary_run(j->kern, o, a, b, n, a_runs, b_runs);
    return;
  }
  int64_t head = stream_head(o, n), body = (n - head) / 4 * 4, tail = head + body;
  binary_run(j->kern, o, a, b, head, a_runs, b_runs);
  j->stream_kern(o + head, a + (a_runs ? head : 0), b + (b_runs ? head : 0), body, a_runs, b_runs);
  binary_run(j->kern, o + tail, a + (a_runs ? tail : 0), b + (b_runs ? tail : 0), n - tail, a_runs,
             b_runs);
}

static void binary_range(void *arg, int64_t b, int64_t e, int worker) {
  (void)worker;
  binary_job *j = arg;
  walk_range(&j->w, b, e, binary_segment, j);
  if (j->stream) stream_fence();
}

/* Strides of a contiguous input broadcast to `o` (numpy: right-aligned). */
static pn_status broadcast_strides(const pn_tensor *t, const pn_tensor *o, int64_t *st) {
  int shift = o->ndim - t->ndim;
  if (shift < 0) return pn_error(PN_ERR_SHAPE, "cpu: binary: an input has more dims than out");
  int64_t run = 1;
  for (int d = o->ndim - 1; d >= 0; d--) {
    int td = d - shift;
    int64_t size = td >= 0 ? t->shape[td] : 1;
    if (size != 1 && size != o->shape[d])
      return pn_error(PN_ERR_SHAPE, "cpu: binary: an input does not broadcast to the output");
    st[d] = size == 1 ? 0 : run;
    run *= size;
  }
  return PN_OK;
}

pn_status pni_cpu_binary(void *dctx, const pn_op_args *a) {
  PN_TRY(require_f32(a));
  int kind = a->p.kind;
  if (kind < 0 || kind >= PN_BINARY_COUNT)
    return pn_error(PN_ERR_UNSUPPORTED, "cpu: binary kind %d unknown", kind);
  const pn_tensor *x = a->in[0], *y = a->in[1];
  pn_tensor *o = a->out;
  int64_t n = pn_tensor_numel(o), nx = pn_tensor_numel(x), ny = pn_tensor_numel(y);
  float *op = pn_tensor_data(o);
  const float *xp = pn_tensor_data(x), *yp = pn_tensor_data(y);
  /* Same shapes or one scalar (after numpy's rules these are flat loops),
   * small enough for one thread: straight to the kernel. */
  if (n < 2 * ELEM_GRAIN && nx == n && (ny == n || ny == 1)) {
    binary_table[kind][ny == n ? VV : VS](op, xp, yp, n);
    return PN_OK;
  }
  if (n < 2 * ELEM_GRAIN && nx == 1 && ny == n) {
    binary_table[kind][SV](op, xp, yp, n);
    return PN_OK;
  }
  binary_job j = {.kern = binary_table[kind],
                  .o = op,
                  .a = xp,
                  .b = yp,
                  .stream_kern = binary_stream_table[kind],
                  .stream = stream_output(n)};
  j.w.ndim = o->ndim;
  j.w.n_in = 2;
  for (int d = 0; d < o->ndim; d++) j.w.shape[d] = o->shape[d];
  PN_TRY(broadcast_strides(x, o, j.w.st[0]));
  PN_TRY(broadcast_strides(y, o, j.w.st[1]));
  walk_collapse(&j.w);
  pni_cpu_parallel(dctx, n, ELEM_GRAIN, binary_range, &j);
  return PN_OK;
}

/* ------------------------------------------------------------ matmul */

/* A stored 2-D operand as BLAS sees it: row-major with leading dimension
 * ld, possibly read transposed. A column-major view (a transposed tensor)
 * is the same memory read with the transpose flipped. */
static int blas_operand(const pn_tensor *t, int trans, enum CBLAS_TRANSPOSE *op, blasint *ld) {
  if (t->stride[1] == 1 || t->shape[1] == 1) {
    *op = trans ? CblasTrans : CblasNoTrans;
    *ld = (blasint)max64(max64(t->stride[0], t->shape[1]), 1);
    return t->shape[0] == 1 || t->stride[0] >= t->shape[1];
  }
  if (t->stride[0] == 1 || t->shape[0] == 1) {
    *op = trans ? CblasNoTrans : CblasTrans;
    *ld = (blasint)max64(max64(t->stride[1], t->shape[0]), 1);
    return t->stride[1] >= t->shape[0];
  }
  return 0;
}

/* Below this many multiply-adds a product runs on one thread; from the
 * second bound on, OpenBLAS threads it itself. */
#define GEMM_SPLIT_FLOPS        ((int64_t)1 << 18)
#define GEMM_BLAS_THREADS_FLOPS ((int64_t)1 << 26)
#define GEMM_MIN_SLICE   32

typedef struct gemm_job {
  enum CBLAS_TRANSPOSE ta, tb;
  int64_t m, n, k;
  const float *a, *b;
  float *c;
  blasint lda, ldb;
  int split_n; /* slices are columns of C (else rows) */
} gemm_job;

/* C[rows or columns begin..end) of op(A) op(B); a row of op(A) starts at
 * a + r*lda when A is not transposed, at a + r when it is (and likewise for
 * the columns of op(B)). */
static void gemm_slice(void *arg, int64_t begin, int64_t end, int worker) {
  const gemm_job *j = arg;
  (void)worker;
  if (j->split_n) {
    const float *b = j->tb == CblasNoTrans ? j->b + begin : j->b + begin * j->ldb;
    cblas_sgemm(CblasRowMajor, j->ta, j->tb, (blasint)j->m, (blasint)(end - begin), (blasint)j->k,
                1.0f, j->a, j->lda, b, j->ldb, 0.0f, j->c + begin, (blasint)j->n);
  } else {
    const float *a = j->ta == CblasNoTrans ? j->a + begin * j->lda : j->a + begin;
    cblas_sgemm(CblasRowMajor, j->ta, j->tb, (blasint)(end - begin), (blasint)j->n, (blasint)j->k,
                1.0f, a, j->lda, j->b, j->ldb, 0.0f, j->c + begin * j->n, (blasint)j->n);
  }
}

pn_status pni_cpu_matmul(void *dctx, const pn_op_args *a) {
  PN_TRY(require_f32(a));
  const pn_tensor *x = a->in[0], *y = a->in[1];
  pn_tensor *o = a->out;
  if (x->ndim != 2 || y->ndim != 2 || o->ndim != 2)
    return pn_error(PN_ERR_SHAPE, "cpu: matmul needs 2-D tensors");
  int64_t m = o->shape[0], n = o->shape[1];
  int64_t k = a->p.trans_a ? x->shape[0] : x->shape[1];
  if ((a->p.trans_a ? x->shape[1] : x->shape[0]) != m ||
      (a->p.trans_b ? y->shape[1] : y->shape[0]) != k ||
      (a->p.trans_b ? y->shape[0] : y->shape[1]) != n)
    return pn_error(PN_ERR_SHAPE, "cpu: matmul: shapes do not fit");
  if (m > INT_MAX || n > INT_MAX || k > INT_MAX)
    return pn_error(PN_ERR_UNSUPPORTED, "cpu: matmul: a dimension exceeds OpenBLAS's int");
  float *op = pn_tensor_data(o);
  if (m == 0 || n == 0) return PN_OK;
  if (k == 0) {
    memset(op, 0, (size_t)(m * n) * sizeof(float));
    return PN_OK;
  }
  enum CBLAS_TRANSPOSE ta, tb;
  blasint lda, ldb;
  if (!blas_operand(x, a->p.trans_a, &ta, &lda) || !blas_operand(y, a->p.trans_b, &tb, &ldb))
    return pn_error(PN_ERR_UNSUPPORTED, "cpu: matmul: an operand's strides are not BLAS-shaped");
  gemm_job j = {ta, tb, m, n, k, pn_tensor_data(x), pn_tensor_data(y), op, lda, ldb, n >= m};
  int64_t macs = m * n * k;
  const pni_cpu_ctx *c = dctx;
  int threads = c && c->pool ? pn_threadpool_size(c->pool) : 1;
  if (macs < GEMM_SPLIT_FLOPS || threads < 2) {
    gemm_slice(&j, 0, j.split_n ? n : m, 0);
  } else if (macs < GEMM_BLAS_THREADS_FLOPS) {
    /* Mid-sized products (a training step's) are split over the pool with
     * OpenBLAS single-threaded in each worker: OpenBLAS's own workers would
     * otherwise spin between calls, fighting the pool for the cores. */
    pni_cpu_parallel(c, j.split_n ? n : m, GEMM_MIN_SLICE, gemm_slice, &j);
  } else {
    /* Large ones gain from OpenBLAS sharing packed panels between threads. */
    openblas_set_num_threads(threads);
    gemm_slice(&j, 0, j.split_n ? n : m, 0);
    openblas_set_num_threads(1);
  }
  return PN_OK;
}

/* ------------------------------------------------------------ reductions */

/* Sums in 16 independent double lanes: vectorised without reassociating
 * (each lane is its own chain), and as exact as the reference's double sum,
 * whatever the length. Widening costs nothing visible in a loop that is
 * bound by memory bandwidth. */
enum { LANES = 16 };

HOT static double block_sum(const float *restrict x, int64_t n) {
  double acc[LANES] = {0};
  int64_t i = 0;
  for (; i + LANES <= n; i += LANES)
    for (int l = 0; l < LANES; l++) acc[l] += (double)x[i + l];
  double s = 0.0;
  for (int l = 0; l < LANES; l++) s += acc[l];
  for (; i < n; i++) s += (double)x[i];
  return s;
}

HOT static float block_max(const float *restrict x, int64_t n) {
  float acc[LANES];
  for (int l = 0; l < LANES; l++) acc[l] = x[0];
  int64_t i = 0;
  for (; i + LANES <= n; i += LANES)
    for (int l = 0; l < LANES; l++) acc[l] = x[i + l] > acc[l] ? x[i + l] : acc[l];
  float m = acc[0];
  for (int l = 1; l < LANES; l++) m = acc[l] > m ? acc[l] : m;
  for (; i < n; i++) m = x[i] > m ? x[i] : m;
  return m;
}

HOT static float block_min(const float *restrict x, int64_t n) {
  float acc[LANES];
  for (int l = 0; l < LANES; l++) acc[l] = x[0];
  int64_t i = 0;
  for (; i + LANES <= n; i += LANES)
    for (int l = 0; l < LANES; l++) acc[l] = x[i + l] < acc[l] ? x[i + l] : acc[l];
  float m = acc[0];
  for (int l = 1; l < LANES; l++) m = acc[l] < m ? acc[l] : m;
  for (; i < n; i++) m = x[i] < m ? x[i] : m;
  return m;
}

/* A sum is kept in double until the final store; max and min exactly. */
static double reduce_row(int kind, const float *x, int64_t n) {
  if (kind == PN_REDUCE_MAX) return block_max(x, n);
  if (kind == PN_REDUCE_MIN) return block_min(x, n);
  return block_sum(x, n);
}

static double reduce_combine(int kind, double acc, double v) {
  if (kind == PN_REDUCE_MAX) return v > acc ? v : acc;
  if (kind == PN_REDUCE_MIN) return v < acc ? v : acc;
  return acc + v;
}

/* One stage: src viewed as [outer, len, inner] reduced over len into dst
 * [outer, inner]; sums are multiplied by `scale` (1/count for a mean). */
typedef struct reduce_stage {
  const float *src;
  float *dst;
  int64_t outer, len, inner;
  int kind;
  double scale;
  double *partial; /* per chunk, when one long row is split */
} reduce_stage;

enum { COL_CHUNK = 256, ROW_CHUNK = 1 << 16 };

static float reduce_finish(const reduce_stage *s, double v) {
  return (float)(s->kind == PN_REDUCE_MAX || s->kind == PN_REDUCE_MIN ? v : v * s->scale);
}

static void reduce_rows(void *arg, int64_t b, int64_t e, int worker) {
  (void)worker;
  const reduce_stage *s = arg;
  for (int64_t r = b; r < e; r++)
    s->dst[r] = reduce_finish(s, reduce_row(s->kind, s->src + r * s->len, s->len));
}

static void reduce_row_chunks(void *arg, int64_t b, int64_t e, int worker) {
  (void)worker;
  const reduce_stage *s = arg;
  for (int64_t c = b; c < e; c++) {
    int64_t start = c * ROW_CHUNK;
    s->partial[c] = reduce_row(s->kind, s->src + start, min64(ROW_CHUNK, s->len - start));
  }
}

HOT static void column_sum(double *restrict acc, const float *restrict src, int64_t len,
                           int64_t stride, int64_t w) {
  for (int64_t j = 0; j < w; j++) acc[j] = 0.0;
  for (int64_t l = 0; l < len; l++)
    for (int64_t j = 0; j < w; j++) acc[j] += src[l * stride + j];
}

HOT static void column_max(float *restrict acc, const float *restrict src, int64_t len,
                           int64_t stride, int64_t w) {
  for (int64_t j = 0; j < w; j++) acc[j] = src[j];
  for (int64_t l = 1; l < len; l++)
    for (int64_t j = 0; j < w; j++) {
      float v = src[l * stride + j];
      acc[j] = v > acc[j] ? v : acc[j];
    }
}

HOT static void column_min(float *restrict acc, const float *restrict src, int64_t len,
                           int64_t stride, int64_t w) {
  for (int64_t j = 0; j < w; j++) acc[j] = src[j];
  for (int64_t l = 1; l < len; l++)
    for (int64_t j = 0; j < w; j++) {
      float v = src[l * stride + j];
      acc[j] = v < acc[j] ? v : acc[j];
    }
}

/* Items are (outer, chunk of COL_CHUNK columns) pairs. */
static void reduce_columns(void *arg, int64_t b, int64_t e, int worker) {
  (void)worker;
  const reduce_stage *s = arg;
  int64_t chunks = (s->inner + COL_CHUNK - 1) / COL_CHUNK;
  double dacc[COL_CHUNK];
  float facc[COL_CHUNK];
  for (int64_t it = b; it < e; it++) {
    int64_t o = it / chunks, j0 = it % chunks * COL_CHUNK;
    int64_t w = min64(COL_CHUNK, s->inner - j0);
    const float *src = s->src + o * s->len * s->inner + j0;
    float *dst = s->dst + o * s->inner + j0;
    if (s->kind == PN_REDUCE_MAX || s->kind == PN_REDUCE_MIN) {
      if (s->kind == PN_REDUCE_MAX)
        column_max(facc, src, s->len, s->inner, w);
      else
        column_min(facc, src, s->len, s->inner, w);
      for (int64_t j = 0; j < w; j++) dst[j] = facc[j];
    } else {
      column_sum(dacc, src, s->len, s->inner, w);
      for (int64_t j = 0; j < w; j++) dst[j] = (float)(dacc[j] * s->scale);
    }
  }
}

/* Splitting a long row into fixed chunks (whatever the thread count) keeps
 * the result independent of the number of workers. */
static pn_status reduce_long_rows(const pni_cpu_ctx *c, reduce_stage *s) {
  int64_t chunks = (s->len + ROW_CHUNK - 1) / ROW_CHUNK;
  s->partial = malloc((size_t)chunks * sizeof(double));
  if (!s->partial) return pn_error(PN_ERR_NOMEM, "cpu: reduce: out of memory");
  const float *base = s->src;
  for (int64_t r = 0; r < s->outer; r++) {
    s->src = base + r * s->len;
    pni_cpu_parallel(c, chunks, 1, reduce_row_chunks, s);
    double v = s->partial[0];
    for (int64_t i = 1; i < chunks; i++) v = reduce_combine(s->kind, v, s->partial[i]);
    s->dst[r] = reduce_finish(s, v);
  }
  free(s->partial);
  s->src = base;
  return PN_OK;
}

static pn_status reduce_stage_run(const pni_cpu_ctx *c, reduce_stage *s) {
  if (s->inner == 1 && s->len >= 2 * ROW_CHUNK) return reduce_long_rows(c, s);
  if (s->inner == 1) {
    pni_cpu_parallel(c, s->outer, max64(1, ELEM_GRAIN / max64(s->len, 1)), reduce_rows, s);
    return PN_OK;
  }
  int64_t chunks = (s->inner + COL_CHUNK - 1) / COL_CHUNK;
  int64_t per_item = s->len * min64(s->inner, COL_CHUNK);
  pni_cpu_parallel(c, s->outer * chunks, max64(1, ELEM_GRAIN / max64(per_item, 1)), reduce_columns,
                   s);
  return PN_OK;
}

/* Input dimensions with size-1 ones dropped and neighbours of the same kind
 * (reduced or kept) merged: an alternating list of groups. */
typedef struct reduce_groups {
  int n;
  int64_t size[PN_MAX_DIMS];
  int reduced[PN_MAX_DIMS];
} reduce_groups;

static reduce_groups group_dims(const pn_tensor *x, uint32_t axes) {
  reduce_groups g = {0, {0}, {0}};
  for (int d = 0; d < x->ndim; d++) {
    if (x->shape[d] == 1) continue;
    int red = (int)(axes >> d & 1u);
    if (g.n > 0 && g.reduced[g.n - 1] == red) {
      g.size[g.n - 1] *= x->shape[d];
      continue;
    }
    g.size[g.n] = x->shape[d];
    g.reduced[g.n++] = red;
  }
  return g;
}

static void fill_identity(int kind, float *p, int64_t n) {
  float v = kind == PN_REDUCE_SUM    ? 0.0f
            : kind == PN_REDUCE_MEAN ? NAN
            : kind == PN_REDUCE_MAX  ? -INFINITY
                                     : INFINITY;
  fill_f32(p, v, n);
}

/* Reduces the innermost reduced group, then the next, through a scratch
 * buffer, until one remains and writes the output. */
static pn_status reduce_groups_run(const pni_cpu_ctx *c, int kind, reduce_groups g,
                                   const float *src, float *dst, double count) {
  float *scratch = NULL;
  const float *cur = src;
  pn_status st = PN_OK;
  for (;;) {
    int last = -1, n_red = 0;
    for (int i = 0; i < g.n; i++)
      if (g.reduced[i]) last = i, n_red++;
    reduce_stage s = {.src = cur, .outer = 1, .len = g.size[last], .inner = 1, .kind = kind};
    for (int i = 0; i < last; i++) s.outer *= g.size[i];
    for (int i = last + 1; i < g.n; i++) s.inner *= g.size[i];
    int final = n_red == 1;
    int sum_like = kind == PN_REDUCE_SUM || kind == PN_REDUCE_MEAN;
    s.scale = final && kind == PN_REDUCE_MEAN ? 1.0 / count : 1.0;
    s.kind = sum_like ? PN_REDUCE_SUM : kind;
    float *next = dst;
    if (!final) {
      next = malloc((size_t)(s.outer * s.inner) * sizeof(float));
      if (!next) {
        st = pn_error(PN_ERR_NOMEM, "cpu: reduce: out of memory");
        break;
      }
    }
    s.dst = next;
    st = reduce_stage_run(c, &s);
    free(scratch);
    scratch = final ? NULL : next;
    if (st != PN_OK || final) break;
    cur = next;
    g.reduced[last] = 0; /* now size 1: merge it into nothing */
    g.size[last] = 1;
  }
  free(scratch);
  return st;
}

pn_status pni_cpu_reduce(void *dctx, const pn_op_args *a) {
  PN_TRY(require_f32(a));
  int kind = a->p.kind;
  if (kind < 0 || kind >= PN_REDUCE_COUNT)
    return pn_error(PN_ERR_UNSUPPORTED, "cpu: reduce kind %d unknown", kind);
  const pn_tensor *x = a->in[0];
  pn_tensor *o = a->out;
  uint32_t axes = x->ndim >= 32 ? a->p.axes : a->p.axes & ((1u << x->ndim) - 1u);
  int64_t n_out = 1, n = pn_tensor_numel(x);
  for (int d = 0; d < x->ndim; d++)
    if (!(axes >> d & 1u)) n_out *= x->shape[d];
  if (n_out != pn_tensor_numel(o))
    return pn_error(PN_ERR_SHAPE, "cpu: reduce: output has %lld elements, expected %lld",
                    (long long)pn_tensor_numel(o), (long long)n_out);
  const float *xp = pn_tensor_data(x);
  float *op = pn_tensor_data(o);
  if (n == 0) {
    fill_identity(kind, op, n_out);
    return PN_OK;
  }
  reduce_groups g = group_dims(x, axes);
  int any = 0;
  for (int i = 0; i < g.n; i++) any |= g.reduced[i];
  if (!any) { /* only size-1 dimensions reduced: every value is its own result */
    memcpy(op, xp, (size_t)n * sizeof(float));
    return PN_OK;
  }
  return reduce_groups_run(dctx, kind, g, xp, op, (double)(n / n_out));
}

/* ------------------------------------------------------------ softmax */

HOT static void exp_shifted(float *restrict o, const float *restrict x, int64_t n, float m) {
  for (int64_t i = 0; i < n; i++) o[i] = exp_approx(x[i] - m);
}

HOT static void scale_row(float *restrict o, int64_t n, float s) {
  for (int64_t i = 0; i < n; i++) o[i] *= s;
}

HOT static void shift_row(float *restrict o, const float *restrict x, int64_t n, float shift) {
  for (int64_t i = 0; i < n; i++) o[i] = x[i] - shift;
}

typedef struct softmax_job {
  const float *x;
  float *o;
  int64_t outer, len, inner;
  int want_log;
} softmax_job;

static void softmax_rows(void *arg, int64_t b, int64_t e, int worker) {
  (void)worker;
  const softmax_job *j = arg;
  for (int64_t r = b; r < e; r++) {
    const float *x = j->x + r * j->len;
    float *o = j->o + r * j->len;
    float m = block_max(x, j->len);
    exp_shifted(o, x, j->len, m);
    double s = block_sum(o, j->len);
    if (j->want_log)
      shift_row(o, x, j->len, (float)(m + log(s)));
    else
      scale_row(o, j->len, (float)(1.0 / s));
  }
}

/* Softmax over a non-last axis: COL_CHUNK columns at a time, each column a
 * strided run of `len` values, handled as vectors across columns. */
HOT static void softmax_column_block(float *restrict o, const float *restrict x, int64_t len,
                                     int64_t stride, int64_t w, int want_log) {
  float m[COL_CHUNK];
  double s[COL_CHUNK];
  for (int64_t j = 0; j < w; j++) m[j] = x[j], s[j] = 0.0;
  for (int64_t l = 1; l < len; l++)
    for (int64_t j = 0; j < w; j++) m[j] = x[l * stride + j] > m[j] ? x[l * stride + j] : m[j];
  for (int64_t l = 0; l < len; l++)
    for (int64_t j = 0; j < w; j++) {
      float v = exp_approx(x[l * stride + j] - m[j]);
      o[l * stride + j] = v;
      s[j] += v;
    }
  float f[COL_CHUNK];
  for (int64_t j = 0; j < w; j++) f[j] = want_log ? (float)(m[j] + log(s[j])) : (float)(1.0 / s[j]);
  for (int64_t l = 0; l < len; l++)
    for (int64_t j = 0; j < w; j++)
      o[l * stride + j] = want_log ? x[l * stride + j] - f[j] : o[l * stride + j] * f[j];
}

static void softmax_columns(void *arg, int64_t b, int64_t e, int worker) {
  (void)worker;
  const softmax_job *j = arg;
  int64_t chunks = (j->inner + COL_CHUNK - 1) / COL_CHUNK;
  for (int64_t it = b; it < e; it++) {
    int64_t r = it / chunks, c0 = it % chunks * COL_CHUNK;
    int64_t off = r * j->len * j->inner + c0;
    softmax_column_block(j->o + off, j->x + off, j->len, j->inner, min64(COL_CHUNK, j->inner - c0),
                         j->want_log);
  }
}

static pn_status softmax_common(void *dctx, const pn_op_args *a, int want_log) {
  PN_TRY(require_f32(a));
  const pn_tensor *x = a->in[0];
  int axis = a->p.axis;
  if (axis < 0 || axis >= x->ndim)
    return pn_error(PN_ERR_INVALID, "cpu: %s: axis %d out of range for %d dims", pn_op_name(a->op),
                    axis, x->ndim);
  softmax_job j = {pn_tensor_data(x), pn_tensor_data(a->out), 1, x->shape[axis], 1, want_log};
  for (int d = 0; d < axis; d++) j.outer *= x->shape[d];
  for (int d = axis + 1; d < x->ndim; d++) j.inner *= x->shape[d];
  if (j.len == 0 || j.outer * j.inner == 0) return PN_OK;
  if (j.inner == 1) {
    pni_cpu_parallel(dctx, j.outer, max64(1, MATH_GRAIN / j.len), softmax_rows, &j);
    return PN_OK;
  }
  int64_t chunks = (j.inner + COL_CHUNK - 1) / COL_CHUNK;
  int64_t per_item = j.len * min64(j.inner, COL_CHUNK);
  pni_cpu_parallel(dctx, j.outer * chunks, max64(1, MATH_GRAIN / per_item), softmax_columns, &j);
  return PN_OK;
}

pn_status pni_cpu_softmax(void *dctx, const pn_op_args *a) { return softmax_common(dctx, a, 0); }

pn_status pni_cpu_log_softmax(void *dctx, const pn_op_args *a) {
  return softmax_common(dctx, a, 1);
}
