/* The cpu backend's pooling, channel-statistics, concatenation and axpby
 * kernels. Work is split over N*C planes (each plane's output is its own,
 * so workers never share a write); inner loops run along output rows so
 * that gcc vectorises them, cloned per ISA as in cpu_kernels.c. Sums that
 * feed statistics are kept in independent double lanes, then combined
 * across planes in double (Chan's formula for the variance), so the result
 * matches the reference's double two-pass sums. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <plugnet/tensor.h>

#include "cpu_kernels.h"

#define HOT __attribute__((target_clones("avx512f", "avx2", "default")))

/* Elements a worker's slice should cover at least: waking one costs a few
 * microseconds, so smaller ops stay on the calling thread. */
enum { GRAIN = 1 << 15, LANES = 16 };

static int64_t max64(int64_t a, int64_t b) { return a > b ? a : b; }
static int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }

static pn_status all_f32(const pn_op_args *a) {
  for (int i = 0; i < a->n_in; i++)
    if (a->in[i]->dtype != PN_F32)
      return pn_error(PN_ERR_UNSUPPORTED, "cpu: op %s: dtype %s not supported",
                      pn_op_name(a->op), pn_dtype_name(a->in[i]->dtype));
  if (a->out && a->out->dtype != PN_F32)
    return pn_error(PN_ERR_UNSUPPORTED, "cpu: op %s: dtype %s not supported", pn_op_name(a->op),
                    pn_dtype_name(a->out->dtype));
  return PN_OK;
}

static pn_status bad_shape(const pn_op_args *a, const char *why) {
  return pn_error(PN_ERR_SHAPE, "cpu: op %s: %s", pn_op_name(a->op), why);
}

static pn_status no_memory(const pn_op_args *a) {
  return pn_error(PN_ERR_NOMEM, "cpu: op %s: out of memory", pn_op_name(a->op));
}

/* ------------------------------------------------------------ pooling */

/* Window bounds along one axis for each output index: [b, e) clipped to
 * the input, d the divisor's factor; [lo, hi) the outputs whose window lies
 * wholly inside the input (fixed pools only), done by the strided loops. */
typedef struct axis_plan {
  int64_t *b, *e, *d;
  int64_t lo, hi;
  int k, s, pad;
} axis_plan;

static int is_adaptive(int kind) {
  return kind == PN_POOL_ADAPTIVE_MAX || kind == PN_POOL_ADAPTIVE_AVG;
}

static int is_max(int kind) { return kind == PN_POOL_MAX || kind == PN_POOL_ADAPTIVE_MAX; }

static int plan_axis(axis_plan *ap, int kind, const pn_pool2d_params *g, int ax, int64_t in,
                     int64_t out) {
  ap->b = malloc(sizeof(int64_t) * (size_t)(3 * out));
  if (!ap->b) return 0;
  ap->e = ap->b + out;
  ap->d = ap->e + out;
  ap->lo = ap->hi = 0;
  ap->k = g->kernel[ax], ap->s = g->stride[ax], ap->pad = g->padding[ax];
  for (int64_t i = 0; i < out; i++) {
    if (is_adaptive(kind)) { /* [floor(i*in/out), ceil((i+1)*in/out)) */
      ap->b[i] = i * in / out;
      ap->e[i] = ((i + 1) * in + out - 1) / out;
      ap->d[i] = ap->e[i] - ap->b[i];
      continue;
    }
    /* A ceil_mode window's part beyond the padded input never counts. */
    int64_t start = i * ap->s - ap->pad, end = min64(start + ap->k, in + ap->pad);
    ap->b[i] = max64(start, 0);
    ap->e[i] = min64(end, in);
    ap->d[i] = g->count_include_pad ? end - start : ap->e[i] - ap->b[i];
  }
  if (!is_adaptive(kind)) {
    ap->lo = min64((ap->pad + ap->s - 1) / ap->s, out);
    int64_t room = in + ap->pad - ap->k;
    ap->hi = room < 0 ? 0 : min64(room / ap->s + 1, out);
    if (ap->hi < ap->lo) ap->hi = ap->lo;
  }
  return 1;
}

typedef struct pool_job {
  const float *x, *dy;
  float *y, *dx;
  int64_t H, W, OH, OW;
  int kind;
  axis_plan ph, pw;
  int nomem;
  int tiles2; /* max pool 2x2, stride 2, no padding, windows tiling the input */
  int lanes;  /* tiles2 rows by vectors: 16 (AVX-512), 8 (AVX2), 0 (scalar) */
} pool_job;

/* The 2x2 / stride 2 max pool (VGG-style stages, the small CNNs) gets its
 * own loops: the four taps are read side by side and compared in PyTorch's
 * scan order (row by row; replace when greater or NaN), so a plane costs one
 * pass instead of one strided pass per tap, and its gradient writes every
 * input element once, with no zero-fill first. Its rows are short (14 or 7
 * outputs in a 28x28 network), too short for gcc's vector loops, so on
 * AVX-512 a row is done 16 outputs at a time with masked loads and stores,
 * on AVX2 8 at a time. */
static int better(float v, float m) { return v > m || v != v; }

static void max2x2_row(float *restrict y, const float *restrict r0, const float *restrict r1,
                       int64_t ow) {
  for (int64_t i = 0; i < ow; i++) {
    float m = r0[2 * i];
    m = better(r0[2 * i + 1], m) ? r0[2 * i + 1] : m;
    m = better(r1[2 * i], m) ? r1[2 * i] : m;
    y[i] = better(r1[2 * i + 1], m) ? r1[2 * i + 1] : m;
  }
}

static void max2x2_grad_row(float *restrict d0, float *restrict d1, const float *restrict r0,
                            const float *restrict r1, const float *restrict g, int64_t ow) {
  for (int64_t i = 0; i < ow; i++) {
    float m = r0[2 * i];
    int at = better(r0[2 * i + 1], m);
    m = at ? r0[2 * i + 1] : m;
    int k2 = better(r1[2 * i], m);
    m = k2 ? r1[2 * i] : m;
    at = better(r1[2 * i + 1], m) ? 3 : k2 ? 2 : at;
    d0[2 * i] = at == 0 ? g[i] : 0.0f;
    d0[2 * i + 1] = at == 1 ? g[i] : 0.0f;
    d1[2 * i] = at == 2 ? g[i] : 0.0f;
    d1[2 * i + 1] = at == 3 ? g[i] : 0.0f;
  }
}

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define HAVE_POOL512 1
#define AVX512 __attribute__((target("avx512f")))

/* Lanes where v replaces m in the scan: greater, or NaN. */
AVX512 static inline __mmask16 better512(__m512 v, __m512 m) {
  return _mm512_cmp_ps_mask(v, m, _CMP_GT_OQ) | _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q);
}

/* The 2n inputs of n outputs (n <= 16) lie in two vectors: masks for each. */
static __mmask16 low_lanes(int64_t n) {
  return n >= 16 ? (__mmask16)0xFFFF : n <= 0 ? (__mmask16)0 : (__mmask16)((1u << n) - 1);
}

typedef struct taps512 {
  __m512 t[4]; /* (0,0) (0,1) (1,0) (1,1) of 16 windows */
} taps512;

AVX512 static inline taps512 load_taps(const float *r0, const float *r1, int64_t n) {
  const __m512i ev = _mm512_set_epi32(30, 28, 26, 24, 22, 20, 18, 16, 14, 12, 10, 8, 6, 4, 2, 0);
  const __m512i od = _mm512_set_epi32(31, 29, 27, 25, 23, 21, 19, 17, 15, 13, 11, 9, 7, 5, 3, 1);
  __mmask16 ka = low_lanes(2 * n), kb = low_lanes(2 * n - 16);
  __m512 a0 = _mm512_maskz_loadu_ps(ka, r0), b0 = _mm512_maskz_loadu_ps(kb, r0 + 16);
  __m512 a1 = _mm512_maskz_loadu_ps(ka, r1), b1 = _mm512_maskz_loadu_ps(kb, r1 + 16);
  taps512 t = {{_mm512_permutex2var_ps(a0, ev, b0), _mm512_permutex2var_ps(a0, od, b0),
                _mm512_permutex2var_ps(a1, ev, b1), _mm512_permutex2var_ps(a1, od, b1)}};
  return t;
}

AVX512 static void max2x2_row512(float *y, const float *r0, const float *r1, int64_t ow) {
  for (int64_t i = 0; i < ow; i += 16) {
    int64_t n = ow - i < 16 ? ow - i : 16;
    taps512 t = load_taps(r0 + 2 * i, r1 + 2 * i, n);
    __m512 m = t.t[0];
    for (int k = 1; k < 4; k++) m = _mm512_mask_blend_ps(better512(t.t[k], m), m, t.t[k]);
    _mm512_mask_storeu_ps(y + i, low_lanes(n), m);
  }
}

/* Interleaves e and o back into 32 floats and stores the first 2n. */
AVX512 static inline void store_pairs(float *d, __m512 e, __m512 o, int64_t n) {
  const __m512i lo = _mm512_set_epi32(23, 7, 22, 6, 21, 5, 20, 4, 19, 3, 18, 2, 17, 1, 16, 0);
  const __m512i hi = _mm512_set_epi32(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8);
  _mm512_mask_storeu_ps(d, low_lanes(2 * n), _mm512_permutex2var_ps(e, lo, o));
  _mm512_mask_storeu_ps(d + 16, low_lanes(2 * n - 16), _mm512_permutex2var_ps(e, hi, o));
}

AVX512 static void max2x2_grad_row512(float *d0, float *d1, const float *r0, const float *r1,
                                      const float *g, int64_t ow) {
  for (int64_t i = 0; i < ow; i += 16) {
    int64_t n = ow - i < 16 ? ow - i : 16;
    taps512 t = load_taps(r0 + 2 * i, r1 + 2 * i, n);
    __m512 m = t.t[0];
    __mmask16 k1 = better512(t.t[1], m);
    m = _mm512_mask_blend_ps(k1, m, t.t[1]);
    __mmask16 k2 = better512(t.t[2], m);
    m = _mm512_mask_blend_ps(k2, m, t.t[2]);
    __mmask16 k3 = better512(t.t[3], m);
    /* the last tap that replaced the running maximum is the winner */
    __mmask16 w2 = k2 & ~k3, w1 = k1 & ~k2 & ~k3, w0 = ~(k1 | k2 | k3);
    __m512 gv = _mm512_maskz_loadu_ps(low_lanes(n), g + i);
    store_pairs(d0 + 2 * i, _mm512_maskz_mov_ps(w0, gv), _mm512_maskz_mov_ps(w1, gv), n);
    store_pairs(d1 + 2 * i, _mm512_maskz_mov_ps(w2, gv), _mm512_maskz_mov_ps(k3, gv), n);
  }
}

/* The same rows 8 outputs at a time for AVX2 machines (most AMD and
 * desktop Intel parts), where the scalar loop made pooling a tenth of a
 * small CNN's step. Only tails are masked: loads by vmaskmovps, stores
 * through a buffer, since masked stores are microcoded on AMD. */
#define AVX2 __attribute__((target("avx2")))

AVX2 static inline __m256i lanes256(int64_t n) {
  return _mm256_cmpgt_epi32(_mm256_set1_epi32((int)(n < 8 ? n : 8)),
                            _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

AVX2 static inline __m256 better256(__m256 v, __m256 m) {
  return _mm256_or_ps(_mm256_cmp_ps(v, m, _CMP_GT_OQ), _mm256_cmp_ps(v, v, _CMP_UNORD_Q));
}

/* 16 floats from p (2n of them real; the rest read as zero). */
AVX2 static inline void load16(const float *p, int64_t n, __m256 *a, __m256 *b) {
  if (n >= 8) {
    *a = _mm256_loadu_ps(p), *b = _mm256_loadu_ps(p + 8);
  } else {
    *a = _mm256_maskload_ps(p, lanes256(2 * n));
    *b = _mm256_maskload_ps(p + 8, lanes256(2 * n - 8));
  }
}

/* Even and odd elements of the 16 in a, b, in order. */
AVX2 static inline __m256 evens(__m256 a, __m256 b) {
  __m256d v = _mm256_castps_pd(_mm256_shuffle_ps(a, b, _MM_SHUFFLE(2, 0, 2, 0)));
  return _mm256_castpd_ps(_mm256_permute4x64_pd(v, _MM_SHUFFLE(3, 1, 2, 0)));
}

AVX2 static inline __m256 odds(__m256 a, __m256 b) {
  __m256d v = _mm256_castps_pd(_mm256_shuffle_ps(a, b, _MM_SHUFFLE(3, 1, 3, 1)));
  return _mm256_castpd_ps(_mm256_permute4x64_pd(v, _MM_SHUFFLE(3, 1, 2, 0)));
}

typedef struct taps256 {
  __m256 t[4]; /* (0,0) (0,1) (1,0) (1,1) of 8 windows */
} taps256;

AVX2 static inline taps256 load_taps256(const float *r0, const float *r1, int64_t n) {
  __m256 a0, b0, a1, b1;
  load16(r0, n, &a0, &b0);
  load16(r1, n, &a1, &b1);
  taps256 t = {{evens(a0, b0), odds(a0, b0), evens(a1, b1), odds(a1, b1)}};
  return t;
}

AVX2 static inline void store_n(float *d, __m256 v, int64_t n) {
  if (n >= 8) {
    _mm256_storeu_ps(d, v);
    return;
  }
  float buf[8];
  _mm256_storeu_ps(buf, v);
  memcpy(d, buf, sizeof *d * (size_t)n);
}

AVX2 static void max2x2_row256(float *y, const float *r0, const float *r1, int64_t ow) {
  for (int64_t i = 0; i < ow; i += 8) {
    int64_t n = ow - i < 8 ? ow - i : 8;
    taps256 t = load_taps256(r0 + 2 * i, r1 + 2 * i, n);
    __m256 m = t.t[0];
    for (int k = 1; k < 4; k++) m = _mm256_blendv_ps(m, t.t[k], better256(t.t[k], m));
    store_n(y + i, m, n);
  }
}

/* Interleaves e and o back into 16 floats and stores the first 2n. */
AVX2 static inline void store_pairs256(float *d, __m256 e, __m256 o, int64_t n) {
  __m256 lo = _mm256_unpacklo_ps(e, o), hi = _mm256_unpackhi_ps(e, o);
  store_n(d, _mm256_permute2f128_ps(lo, hi, 0x20), 2 * n);
  if (n > 4) store_n(d + 8, _mm256_permute2f128_ps(lo, hi, 0x31), 2 * n - 8);
}

AVX2 static void max2x2_grad_row256(float *d0, float *d1, const float *r0, const float *r1,
                                    const float *g, int64_t ow) {
  for (int64_t i = 0; i < ow; i += 8) {
    int64_t n = ow - i < 8 ? ow - i : 8;
    taps256 t = load_taps256(r0 + 2 * i, r1 + 2 * i, n);
    __m256 m = t.t[0];
    __m256 k1 = better256(t.t[1], m);
    m = _mm256_blendv_ps(m, t.t[1], k1);
    __m256 k2 = better256(t.t[2], m);
    m = _mm256_blendv_ps(m, t.t[2], k2);
    __m256 k3 = better256(t.t[3], m);
    /* the last tap that replaced the running maximum is the winner */
    __m256 w2 = _mm256_andnot_ps(k3, k2), w1 = _mm256_andnot_ps(_mm256_or_ps(k2, k3), k1);
    __m256 w0 = _mm256_xor_ps(_mm256_or_ps(k1, _mm256_or_ps(k2, k3)),
                              _mm256_castsi256_ps(_mm256_set1_epi32(-1)));
    __m256 gv = n >= 8 ? _mm256_loadu_ps(g + i) : _mm256_maskload_ps(g + i, lanes256(n));
    store_pairs256(d0 + 2 * i, _mm256_and_ps(w0, gv), _mm256_and_ps(w1, gv), n);
    store_pairs256(d1 + 2 * i, _mm256_and_ps(w2, gv), _mm256_and_ps(k3, gv), n);
  }
}

static int has_avx512(void) { return __builtin_cpu_supports("avx512f"); }
static int has_avx2(void) { return __builtin_cpu_supports("avx2"); }
#else
#define HAVE_POOL512 0
static int has_avx512(void) { return 0; }
static int has_avx2(void) { return 0; }
#endif

static int tiles_2x2(const pn_pool2d_params *g, int kind, int64_t h, int64_t w, int64_t oh,
                     int64_t ow) {
  return kind == PN_POOL_MAX && g->kernel[0] == 2 && g->kernel[1] == 2 && g->stride[0] == 2 &&
         g->stride[1] == 2 && g->padding[0] == 0 && g->padding[1] == 0 && h == 2 * oh &&
         w == 2 * ow;
}

HOT static void max_strided(float *restrict acc, const float *restrict src, int64_t n, int64_t s) {
  for (int64_t i = 0; i < n; i++) {
    float v = src[i * s];
    acc[i] = (v > acc[i] || v != v) ? v : acc[i];
  }
}

HOT static void sum_strided(double *restrict acc, const float *restrict src, int64_t n,
                            int64_t s) {
  for (int64_t i = 0; i < n; i++) acc[i] += (double)src[i * s];
}

/* One input row's contribution to a row of max outputs. */
static void max_row(const pool_job *j, float *acc, const float *row) {
  const axis_plan *p = &j->pw;
  for (int kw = 0; kw < p->k && p->hi > p->lo; kw++)
    max_strided(acc + p->lo, row + p->lo * p->s - p->pad + kw, p->hi - p->lo, p->s);
  for (int64_t ow = 0; ow < j->OW; ow++) {
    if (ow == p->lo) ow = p->hi;
    if (ow >= j->OW) break;
    float m = acc[ow];
    for (int64_t iw = p->b[ow]; iw < p->e[ow]; iw++) m = (row[iw] > m || row[iw] != row[iw]) ? row[iw] : m;
    acc[ow] = m;
  }
}

static void sum_row(const pool_job *j, double *acc, const float *row) {
  const axis_plan *p = &j->pw;
  for (int kw = 0; kw < p->k && p->hi > p->lo; kw++)
    sum_strided(acc + p->lo, row + p->lo * p->s - p->pad + kw, p->hi - p->lo, p->s);
  for (int64_t ow = 0; ow < j->OW; ow++) {
    if (ow == p->lo) ow = p->hi;
    if (ow >= j->OW) break;
    double s = 0.0;
    for (int64_t iw = p->b[ow]; iw < p->e[ow]; iw++) s += row[iw];
    acc[ow] += s;
  }
}

static void pool_plane(const pool_job *j, const float *x, float *y, void *scratch) {
  int mx = is_max(j->kind);
  float *fa = scratch;
  double *da = scratch;
  for (int64_t oh = 0; oh < j->OH; oh++) {
    for (int64_t ow = 0; ow < j->OW; ow++) {
      if (mx)
        fa[ow] = -INFINITY;
      else
        da[ow] = 0.0;
    }
    for (int64_t h = j->ph.b[oh]; h < j->ph.e[oh]; h++) {
      if (mx)
        max_row(j, fa, x + h * j->W);
      else
        sum_row(j, da, x + h * j->W);
    }
    float *yr = y + oh * j->OW;
    for (int64_t ow = 0; ow < j->OW; ow++) {
      double div = (double)(j->ph.d[oh] * j->pw.d[ow]);
      yr[ow] = mx ? fa[ow] : div > 0 ? (float)(da[ow] / div) : 0.0f;
    }
  }
}

static void pool_planes(void *arg, int64_t b, int64_t e, int worker) {
  (void)worker;
  pool_job *j = arg;
  if (j->tiles2) {
    for (int64_t pl = b; pl < e; pl++)
      for (int64_t oh = 0; oh < j->OH; oh++) {
        const float *r0 = j->x + (pl * j->H + 2 * oh) * j->W;
        float *y = j->y + (pl * j->OH + oh) * j->OW;
#if HAVE_POOL512
        if (j->lanes) {
          (j->lanes == 16 ? max2x2_row512 : max2x2_row256)(y, r0, r0 + j->W, j->OW);
          continue;
        }
#endif
        max2x2_row(y, r0, r0 + j->W, j->OW);
      }
    return;
  }
  void *scratch = malloc(sizeof(double) * (size_t)j->OW);
  if (!scratch) {
    j->nomem = 1;
    return;
  }
  for (int64_t pl = b; pl < e; pl++)
    pool_plane(j, j->x + pl * j->H * j->W, j->y + pl * j->OH * j->OW, scratch);
  free(scratch);
}

HOT static void argmax_strided(float *restrict m, int32_t *restrict best,
                               const float *restrict src, int64_t n, int64_t s, int32_t at) {
  for (int64_t i = 0; i < n; i++) {
    float v = src[i * s];
    int take = (v > m[i]) | (v != v);
    m[i] = take ? v : m[i];
    best[i] = take ? at + (int32_t)(i * s) : best[i];
  }
}

/* Where each window of output row oh has its maximum: the first one, or
 * the last NaN, exactly as PyTorch's scan (replace when greater or NaN;
 * an all -inf window gives its first element). Interior windows are
 * scanned a window element at a time across the row, as the forward does,
 * so the compares vectorise instead of forming one long chain. */
static void row_argmax(const pool_job *j, const float *x, int64_t oh, int32_t *best, float *m) {
  const axis_plan *p = &j->pw;
  for (int64_t ow = 0; ow < j->OW; ow++) {
    m[ow] = -INFINITY;
    best[ow] = (int32_t)(j->ph.b[oh] * j->W + p->b[ow]);
  }
  for (int64_t h = j->ph.b[oh]; h < j->ph.e[oh]; h++) {
    const float *row = x + h * j->W;
    for (int kw = 0; kw < p->k && p->hi > p->lo; kw++) {
      int64_t w = p->lo * p->s - p->pad + kw;
      argmax_strided(m + p->lo, best + p->lo, row + w, p->hi - p->lo, p->s,
                     (int32_t)(h * j->W + w));
    }
    for (int64_t ow = 0; ow < j->OW; ow++) {
      if (ow == p->lo) ow = p->hi;
      if (ow >= j->OW) break;
      for (int64_t w = p->b[ow]; w < p->e[ow]; w++) {
        float v = row[w];
        if (v > m[ow] || v != v) m[ow] = v, best[ow] = (int32_t)(h * j->W + w);
      }
    }
  }
}

static void pool_grad_plane(const pool_job *j, const float *x, const float *dy, float *dx,
                            int32_t *best, float *m) {
  memset(dx, 0, sizeof *dx * (size_t)(j->H * j->W));
  for (int64_t oh = 0; oh < j->OH; oh++) {
    const float *g = dy + oh * j->OW;
    if (is_max(j->kind)) {
      row_argmax(j, x, oh, best, m);
      for (int64_t ow = 0; ow < j->OW; ow++)
        if (j->pw.e[ow] > j->pw.b[ow] && j->ph.e[oh] > j->ph.b[oh]) dx[best[ow]] += g[ow];
      continue;
    }
    int64_t h0 = j->ph.b[oh], h1 = j->ph.e[oh];
    for (int64_t ow = 0; ow < j->OW; ow++) {
      int64_t w0 = j->pw.b[ow], w1 = j->pw.e[ow];
      double div = (double)(j->ph.d[oh] * j->pw.d[ow]);
      float share = div > 0 ? (float)(g[ow] / div) : 0.0f;
      for (int64_t h = h0; h < h1; h++)
        for (int64_t w = w0; w < w1; w++) dx[h * j->W + w] += share;
    }
  }
}

static void pool_grad_planes(void *arg, int64_t b, int64_t e, int worker) {
  (void)worker;
  pool_job *j = arg;
  if (j->tiles2) {
    for (int64_t pl = b; pl < e; pl++)
      for (int64_t oh = 0; oh < j->OH; oh++) {
        int64_t off = (pl * j->H + 2 * oh) * j->W;
        const float *g = j->dy + (pl * j->OH + oh) * j->OW;
#if HAVE_POOL512
        if (j->lanes) {
          (j->lanes == 16 ? max2x2_grad_row512 : max2x2_grad_row256)(
              j->dx + off, j->dx + off + j->W, j->x + off, j->x + off + j->W, g, j->OW);
          continue;
        }
#endif
        max2x2_grad_row(j->dx + off, j->dx + off + j->W, j->x + off, j->x + off + j->W, g,
                        j->OW);
      }
    return;
  }
  int32_t *best = malloc(sizeof *best * (size_t)j->OW);
  float *m = malloc(sizeof *m * (size_t)j->OW);
  if (!best || !m) j->nomem = 1;
  for (int64_t pl = b; pl < e && best && m; pl++)
    pool_grad_plane(j, j->x + pl * j->H * j->W, j->dy + pl * j->OH * j->OW,
                    j->dx + pl * j->H * j->W, best, m);
  free(best);
  free(m);
}

static pn_status pool_setup(const pn_op_args *a, const pn_tensor *x, const pn_tensor *y,
                            pool_job *j) {
  PN_TRY(all_f32(a));
  if (x->ndim != 4 || y->ndim != 4 || x->shape[0] != y->shape[0] || x->shape[1] != y->shape[1])
    return bad_shape(a, "input and output must be [N,C,H,W] with equal N and C");
  if (a->p.kind < 0 || a->p.kind >= PN_POOL_COUNT) return bad_shape(a, "unknown pool kind");
  pn_pool2d_params g = pn_pool2d_params_unpack(&a->p);
  if (!is_adaptive(a->p.kind) && (g.kernel[0] < 1 || g.kernel[1] < 1 || g.stride[0] < 1 ||
                                  g.stride[1] < 1 || g.padding[0] < 0 || g.padding[1] < 0))
    return bad_shape(a, "kernel and stride must be at least 1, padding at least 0");
  memset(j, 0, sizeof *j);
  j->H = x->shape[2], j->W = x->shape[3], j->OH = y->shape[2], j->OW = y->shape[3];
  j->kind = a->p.kind;
  j->tiles2 = tiles_2x2(&g, j->kind, j->H, j->W, j->OH, j->OW);
  j->lanes = !j->tiles2 ? 0 : has_avx512() ? 16 : has_avx2() ? 8 : 0;
  if (!plan_axis(&j->ph, j->kind, &g, 0, j->H, j->OH)) return no_memory(a);
  if (!plan_axis(&j->pw, j->kind, &g, 1, j->W, j->OW)) {
    free(j->ph.b);
    return no_memory(a);
  }
  return PN_OK;
}

static void pool_free(pool_job *j) {
  free(j->ph.b);
  free(j->pw.b);
}

pn_status pni_cpu_pool2d(void *dctx, const pn_op_args *a) {
  pool_job j;
  PN_TRY(pool_setup(a, a->in[0], a->out, &j));
  j.x = pn_tensor_data(a->in[0]);
  j.y = pn_tensor_data(a->out);
  int64_t planes = a->in[0]->shape[0] * a->in[0]->shape[1];
  pni_cpu_parallel(dctx, planes, max64(1, GRAIN / max64(1, j.H * j.W)), pool_planes, &j);
  pool_free(&j);
  return j.nomem ? no_memory(a) : PN_OK;
}

/* in: dy, x -> dx (x's shape). */
pn_status pni_cpu_pool2d_grad(void *dctx, const pn_op_args *a) {
  pool_job j;
  if (pn_tensor_numel(a->out) != pn_tensor_numel(a->in[1]))
    return bad_shape(a, "dx must be shaped like x");
  if (a->in[1]->ndim == 4 && a->in[1]->shape[2] * a->in[1]->shape[3] > INT32_MAX)
    return PN_ERR_UNSUPPORTED; /* window indices are 32-bit; the reference has none */
  PN_TRY(pool_setup(a, a->in[1], a->in[0], &j));
  j.dy = pn_tensor_data(a->in[0]);
  j.x = pn_tensor_data(a->in[1]);
  j.dx = pn_tensor_data(a->out);
  int64_t planes = a->in[1]->shape[0] * a->in[1]->shape[1];
  pni_cpu_parallel(dctx, planes, max64(1, GRAIN / max64(1, j.H * j.W)), pool_grad_planes, &j);
  pool_free(&j);
  return j.nomem ? no_memory(a) : PN_OK;
}

/* ------------------------------------------------------------ channel ops */

HOT static double lane_sum(const float *restrict x, int64_t n) {
  double acc[LANES] = {0};
  int64_t i = 0;
  for (; i + LANES <= n; i += LANES)
    for (int l = 0; l < LANES; l++) acc[l] += (double)x[i + l];
  double s = 0.0;
  for (int l = 0; l < LANES; l++) s += acc[l];
  for (; i < n; i++) s += (double)x[i];
  return s;
}

/* sum((x - m)^2) */
HOT static double lane_sqdev(const float *restrict x, int64_t n, double m) {
  double acc[LANES] = {0};
  int64_t i = 0;
  for (; i + LANES <= n; i += LANES)
    for (int l = 0; l < LANES; l++) {
      double d = (double)x[i + l] - m;
      acc[l] += d * d;
    }
  double s = 0.0;
  for (int l = 0; l < LANES; l++) s += acc[l];
  for (; i < n; i++) s += ((double)x[i] - m) * ((double)x[i] - m);
  return s;
}

/* sum(dy * (x - m)) */
HOT static double lane_dot_dev(const float *restrict dy, const float *restrict x, int64_t n,
                               double m) {
  double acc[LANES] = {0};
  int64_t i = 0;
  for (; i + LANES <= n; i += LANES)
    for (int l = 0; l < LANES; l++) acc[l] += (double)dy[i + l] * ((double)x[i + l] - m);
  double s = 0.0;
  for (int l = 0; l < LANES; l++) s += acc[l];
  for (; i < n; i++) s += (double)dy[i] * ((double)x[i] - m);
  return s;
}

/* dy where mask > 0, else 0. The select comes first and alone, on loaded
 * values, so that gcc vectorises it (a select around arithmetic or a load
 * stays scalar: the arithmetic might trap). */
HOT static void masked_copy(float *restrict o, const float *restrict dy,
                            const float *restrict mask, int64_t n) {
  for (int64_t i = 0; i < n; i++) {
    float d = dy[i];
    o[i] = mask[i] > 0.0f ? d : 0.0f;
  }
}

HOT static void affine_plane(float *restrict o, const float *restrict x, int64_t n, float a,
                             float b) {
  for (int64_t i = 0; i < n; i++) o[i] = a * x[i] + b;
}

HOT static void affine_relu_plane(float *restrict o, const float *restrict x, int64_t n, float a,
                                  float b) {
  for (int64_t i = 0; i < n; i++) {
    float v = a * x[i] + b;
    o[i] = v > 0.0f ? v : 0.0f;
  }
}

/* a*x + b (+ c*y), x counting only where mask > 0 (selected before any
 * arithmetic, as in masked_copy). */
HOT static void affine_masked_plane(float *restrict o, const float *restrict x,
                                    const float *restrict y, const float *restrict mask,
                                    int64_t n, float a, float b, float c) {
  for (int64_t i = 0; i < n; i++) {
    float v = x[i];
    v = mask[i] > 0.0f ? v : 0.0f;
    o[i] = y ? a * v + c * y[i] + b : a * v + b;
  }
}

HOT static void affine2_plane(float *restrict o, const float *restrict x, const float *restrict y,
                              int64_t n, float a, float b, float c) {
  for (int64_t i = 0; i < n; i++) o[i] = a * x[i] + c * y[i] + b;
}

/* x [N,C,...] as N*C planes of len values; plane i is channel i % C. */
typedef struct chan_job {
  const float *x, *y, *a, *b, *c, *mean;
  const float *mask; /* kind PN_CHANNEL_MASK */
  int kind;
  float *o;
  int64_t C, len;
  double *p0, *p1; /* per plane partial results */
} chan_job;

static pn_status chan_setup(const pn_op_args *a, const pn_tensor *x, chan_job *j) {
  PN_TRY(all_f32(a));
  if (x->ndim < 2) return bad_shape(a, "needs an [N,C,...] input");
  memset(j, 0, sizeof *j);
  j->C = x->shape[1];
  j->len = 1;
  for (int d = 2; d < x->ndim; d++) j->len *= x->shape[d];
  return PN_OK;
}

static int64_t plane_grain(const chan_job *j) { return max64(1, GRAIN / max64(1, j->len)); }

/* Each plane's sum and sum of squares about its own mean: one read from
 * memory, the second pass from cache. */
static void stats_planes(void *arg, int64_t b, int64_t e, int worker) {
  (void)worker;
  const chan_job *j = arg;
  for (int64_t i = b; i < e; i++) {
    const float *x = j->x + i * j->len;
    double s = lane_sum(x, j->len);
    j->p0[i] = s;
    j->p1[i] = lane_sqdev(x, j->len, s / (double)j->len);
  }
}

/* Chan et al.: M2 = sum over planes of (m2_p + len*(mean_p - mean)^2). */
static void stats_combine(const chan_job *j, int64_t n) {
  double count = (double)(n * j->len);
  for (int64_t c = 0; c < j->C; c++) {
    double s = 0.0, q = 0.0;
    for (int64_t k = 0; k < n; k++) s += j->p0[k * j->C + c];
    double mean = s / count;
    for (int64_t k = 0; k < n; k++) {
      double d = j->p0[k * j->C + c] / (double)j->len - mean;
      q += j->p1[k * j->C + c] + (double)j->len * d * d;
    }
    j->o[c] = (float)mean;
    j->o[j->C + c] = (float)(q / count);
  }
}

pn_status pni_cpu_channel_stats(void *dctx, const pn_op_args *a) {
  chan_job j;
  const pn_tensor *x = a->in[0];
  PN_TRY(chan_setup(a, x, &j));
  if (pn_tensor_numel(a->out) != 2 * j.C) return bad_shape(a, "output must be [2,C]");
  int64_t n = x->shape[0], planes = n * j.C;
  j.x = pn_tensor_data(x);
  j.o = pn_tensor_data(a->out);
  if (planes == 0 || j.len == 0) { /* no values: 0/0, as the reference */
    for (int64_t c = 0; c < 2 * j.C; c++) j.o[c] = NAN;
    return PN_OK;
  }
  j.p0 = malloc(sizeof(double) * (size_t)(2 * planes));
  if (!j.p0) return no_memory(a);
  j.p1 = j.p0 + planes;
  pni_cpu_parallel(dctx, planes, plane_grain(&j), stats_planes, &j);
  stats_combine(&j, n);
  free(j.p0);
  return PN_OK;
}

static void affine_planes(void *arg, int64_t b, int64_t e, int worker) {
  (void)worker;
  const chan_job *j = arg;
  for (int64_t i = b; i < e; i++) {
    int64_t c = i % j->C, off = i * j->len;
    if (j->mask)
      affine_masked_plane(j->o + off, j->x + off, j->y ? j->y + off : NULL, j->mask + off, j->len,
                          j->a[c], j->b[c], j->y ? j->c[c] : 0.0f);
    else if (j->kind == PN_CHANNEL_RELU)
      affine_relu_plane(j->o + off, j->x + off, j->len, j->a[c], j->b[c]);
    else if (j->y)
      affine2_plane(j->o + off, j->x + off, j->y + off, j->len, j->a[c], j->b[c], j->c[c]);
    else
      affine_plane(j->o + off, j->x + off, j->len, j->a[c], j->b[c]);
  }
}

/* The last input of kind PN_CHANNEL_MASK, shaped like x, or NULL. */
static pn_status chan_mask(const pn_op_args *a, int plain_in, chan_job *j) {
  if (a->p.kind < 0 || a->p.kind >= PN_CHANNEL_COUNT) return bad_shape(a, "unknown channel kind");
  j->kind = a->p.kind;
  if (j->kind != PN_CHANNEL_MASK) return PN_OK;
  if (a->n_in != plain_in + 1 || pn_tensor_numel(a->in[plain_in]) != pn_tensor_numel(a->in[0]))
    return bad_shape(a, "the mask must be a last input shaped like x");
  j->mask = pn_tensor_data(a->in[plain_in]);
  return PN_OK;
}

/* in: x, a, b (, y, c) (, mask): out = a[c]*x + b[c] (+ c[c]*y), see
 * pn_channel_kind for the mask and the ReLU. */
pn_status pni_cpu_channel_affine(void *dctx, const pn_op_args *a) {
  chan_job j;
  const pn_tensor *x = a->in[0];
  PN_TRY(chan_setup(a, x, &j));
  int plain_in = a->n_in - (a->p.kind == PN_CHANNEL_MASK);
  if (plain_in != 3 && plain_in != 5) return bad_shape(a, "needs 3 or 5 inputs (+1 mask)");
  PN_TRY(chan_mask(a, plain_in, &j));
  int64_t total = pn_tensor_numel(x);
  for (int i = 1; i < plain_in; i++) {
    int64_t want = i == 3 ? total : j.C;
    if (pn_tensor_numel(a->in[i]) != want) return bad_shape(a, "an input has the wrong size");
  }
  if (pn_tensor_numel(a->out) != total) return bad_shape(a, "output must be shaped like x");
  j.x = pn_tensor_data(x);
  j.a = pn_tensor_data(a->in[1]);
  j.b = pn_tensor_data(a->in[2]);
  if (plain_in == 5) {
    j.y = pn_tensor_data(a->in[3]);
    j.c = pn_tensor_data(a->in[4]);
  }
  j.o = pn_tensor_data(a->out);
  pni_cpu_parallel(dctx, x->shape[0] * j.C, plane_grain(&j), affine_planes, &j);
  return PN_OK;
}

/* Plain loops for the masked sums, when no buffer could be had. */
static void masked_sums_scalar(const chan_job *j, int64_t i) {
  const float *dy = j->y + i * j->len, *x = j->x + i * j->len, *m = j->mask + i * j->len;
  double s = 0.0, sx = 0.0, mean = (double)j->mean[i % j->C];
  for (int64_t k = 0; k < j->len; k++)
    if (m[k] > 0.0f) s += (double)dy[k], sx += (double)dy[k] * ((double)x[k] - mean);
  j->p0[i] = s;
  j->p1[i] = sx;
}

static void grad_stats_planes(void *arg, int64_t b, int64_t e, int worker) {
  (void)worker;
  const chan_job *j = arg;
  /* with a mask: each plane's masked dy, then the plain vectorised sums */
  float *masked = j->mask ? malloc(sizeof *masked * (size_t)j->len) : NULL;
  for (int64_t i = b; i < e; i++) {
    int64_t off = i * j->len;
    const float *dy = j->y + off;
    if (j->mask && !masked) {
      masked_sums_scalar(j, i);
      continue;
    }
    if (j->mask) {
      masked_copy(masked, dy, j->mask + off, j->len);
      dy = masked;
    }
    j->p0[i] = lane_sum(dy, j->len);
    j->p1[i] = lane_dot_dev(dy, j->x + off, j->len, (double)j->mean[i % j->C]);
  }
  free(masked);
}

/* in: dy, x, mean (, mask) -> [2,C]: sum(dy), sum(dy*(x - mean)) per
 * channel, dy counting only where the mask is > 0. */
pn_status pni_cpu_channel_grad_stats(void *dctx, const pn_op_args *a) {
  chan_job j;
  const pn_tensor *x = a->in[1];
  PN_TRY(chan_setup(a, x, &j));
  if (pn_tensor_numel(a->in[0]) != pn_tensor_numel(x))
    return bad_shape(a, "dy must be shaped like x");
  if (a->p.kind == PN_CHANNEL_RELU) return bad_shape(a, "kind relu is for channel_affine");
  PN_TRY(chan_mask(a, 3, &j));
  if (pn_tensor_numel(a->in[2]) != j.C) return bad_shape(a, "mean must have C elements");
  if (pn_tensor_numel(a->out) != 2 * j.C) return bad_shape(a, "output must be [2,C]");
  int64_t n = x->shape[0], planes = n * j.C;
  j.y = pn_tensor_data(a->in[0]);
  j.x = pn_tensor_data(x);
  j.mean = pn_tensor_data(a->in[2]);
  j.o = pn_tensor_data(a->out);
  j.p0 = malloc(sizeof(double) * (size_t)max64(1, 2 * planes));
  if (!j.p0) return no_memory(a);
  j.p1 = j.p0 + planes;
  pni_cpu_parallel(dctx, planes, plane_grain(&j), grad_stats_planes, &j);
  for (int64_t c = 0; c < j.C; c++) {
    double s = 0.0, sx = 0.0;
    for (int64_t k = 0; k < n; k++) s += j.p0[k * j.C + c], sx += j.p1[k * j.C + c];
    j.o[c] = (float)s;
    j.o[j.C + c] = (float)sx;
  }
  free(j.p0);
  return PN_OK;
}

/* ------------------------------------------------------------ concat */

typedef struct concat_job {
  const pn_op_args *a;
  int64_t inner, row; /* row: output elements per outer index */
  float *o;
} concat_job;

static void concat_rows(void *arg, int64_t b, int64_t e, int worker) {
  (void)worker;
  const concat_job *j = arg;
  int axis = j->a->p.axis;
  for (int64_t r = b; r < e; r++) {
    float *dst = j->o + r * j->row;
    for (int i = 0; i < j->a->n_in; i++) {
      int64_t chunk = j->a->in[i]->shape[axis] * j->inner;
      const float *src = pn_tensor_data(j->a->in[i]);
      memcpy(dst, src + r * chunk, sizeof(float) * (size_t)chunk);
      dst += chunk;
    }
  }
}

pn_status pni_cpu_concat(void *dctx, const pn_op_args *a) {
  PN_TRY(all_f32(a));
  const pn_tensor *o = a->out;
  int axis = a->p.axis;
  if (a->n_in < 1 || axis < 0 || axis >= o->ndim) return bad_shape(a, "axis out of range");
  int64_t outer = 1, along = 0;
  concat_job j = {a, 1, 0, pn_tensor_data(a->out)};
  for (int d = 0; d < axis; d++) outer *= o->shape[d];
  for (int d = axis + 1; d < o->ndim; d++) j.inner *= o->shape[d];
  for (int i = 0; i < a->n_in; i++) {
    const pn_tensor *x = a->in[i];
    if (x->ndim != o->ndim || pn_tensor_numel(x) != outer * j.inner * x->shape[axis])
      return bad_shape(a, "inputs must match the output outside the axis");
    along += x->shape[axis];
  }
  if (along != o->shape[axis]) return bad_shape(a, "input lengths do not add up to the output");
  j.row = along * j.inner;
  pni_cpu_parallel(dctx, outer, max64(1, 4 * GRAIN / max64(1, j.row)), concat_rows, &j);
  return PN_OK;
}

/* ------------------------------------------------------------ axpby */

typedef struct axpby_job {
  float *y;
  const float *x;
  float alpha, beta;
} axpby_job;

HOT static void axpby_loop(float *restrict y, const float *restrict x, int64_t n, float alpha,
                           float beta) {
  for (int64_t i = 0; i < n; i++) y[i] = alpha * y[i] + beta * x[i];
}

static void axpby_range(void *arg, int64_t b, int64_t e, int worker) {
  (void)worker;
  const axpby_job *j = arg;
  axpby_loop(j->y + b, j->x + b, e - b, j->alpha, j->beta);
}

/* In place: in[0] = alpha*in[0] + beta*in[1]. */
pn_status pni_cpu_axpby(void *dctx, const pn_op_args *a) {
  PN_TRY(all_f32(a));
  if (a->n_in != 2 || !(a->written & 1u)) return bad_shape(a, "needs 2 inputs, the first written");
  int64_t n = pn_tensor_numel(a->in[0]);
  if (pn_tensor_numel(a->in[1]) != n) return bad_shape(a, "inputs differ in size");
  axpby_job j = {pn_tensor_data(a->in[0]), pn_tensor_data(a->in[1]), (float)a->p.alpha,
                 (float)a->p.beta};
  pni_cpu_parallel(dctx, n, GRAIN, axpby_range, &j);
  return PN_OK;
}
