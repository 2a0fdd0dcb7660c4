/* The cpu backend's convolution. The general path lowers each block of
 * output columns to a GEMM: im2col copies the input patches a block reads
 * into a [C/g*KH*KW, columns] matrix, OpenBLAS multiplies the group's
 * weights by it, and the gradients run the same product transposed (col2im
 * scatters the input gradient back; at stride 1 along x both move rows by
 * AVX-512 or AVX2 vectors, not libc calls per piece). Blocks are spread
 * over the pool with OpenBLAS single-threaded in each worker, as
 * pni_cpu_matmul does, so that OpenBLAS's own spinning threads never fight
 * the pool for the cores.
 * Three shapes skip the lowering: 1x1 unpadded convolutions on small planes
 * gather the whole batch into one matrix (see "batched 1x1"), other 1x1
 * stride-1 unpadded ones are a GEMM on the input as it lies, and depthwise
 * ones (groups == C == O) go to cpu_depthwise.c, where a GEMM with
 * K = KH*KW would be all overhead. */
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include <cblas.h>

#include <plugnet/tensor.h>

#include "cpu_kernels.h"

#define HOT __attribute__((target_clones("avx512f", "avx2", "default")))

/* Columns of one lowered block: enough that OpenBLAS's packing of the
 * weights is amortised, few enough that the column matrix (k rows) stays
 * in L2 between im2col writing it and the GEMM reading it: COL_FLOATS is
 * about a quarter of a MiB. */
enum { BLOCK_MAX = 1024, BLOCK_MIN = 64, COL_FLOATS = 1 << 16 };
/* Below this many multiply-adds a convolution runs on the calling thread. */
#define CONV_SPLIT_MACS ((int64_t)1 << 18)

typedef struct conv_dims {
  int64_t n, c, h, w;   /* input */
  int64_t o, kh, kw;    /* weight [o, c/groups, kh, kw] */
  int64_t oh, ow, p;    /* output, p = oh*ow */
  int64_t g, cg, og, k; /* groups, channels per group, k = cg*kh*kw */
  int sy, sx, py, px, dy, dx;
  /* Column blocking: a block is `nb` whole samples, or (nb == 1) a run of
   * at most `bw` columns of one sample. */
  int64_t nb, bps, bw, groups_of_samples;
  /* im2col rows by vectors where the stride along x is 1: 16 (AVX-512
   * masked moves), 8 (AVX2), 0 (memcpy and memset per piece) */
  int row_lanes;
} conv_dims;

static int row_lanes(void);

/* ------------------------------------------------------------ geometry */

static pn_status read_dims(const pn_op_args *a, const pn_tensor *x, const pn_tensor *w,
                           const pn_tensor *y, conv_dims *d) {
  for (int i = 0; i <= a->n_in; i++) {
    const pn_tensor *t = i < a->n_in ? a->in[i] : a->out;
    if (t->dtype != PN_F32)
      return pn_error(PN_ERR_UNSUPPORTED, "cpu: %s: dtype %s not supported", pn_op_name(a->op),
                      pn_dtype_name(t->dtype));
  }
  if (x->ndim != 4 || w->ndim != 4 || y->ndim != 4)
    return pn_error(PN_ERR_SHAPE, "cpu: %s needs 4-D tensors", pn_op_name(a->op));
  pn_conv2d_params q = pn_conv2d_params_unpack(&a->p);
  memset(d, 0, sizeof *d);
  d->n = x->shape[0], d->c = x->shape[1], d->h = x->shape[2], d->w = x->shape[3];
  d->o = w->shape[0], d->kh = w->shape[2], d->kw = w->shape[3];
  d->oh = y->shape[2], d->ow = y->shape[3], d->p = d->oh * d->ow;
  d->g = q.groups;
  d->sy = q.stride[0], d->sx = q.stride[1], d->py = q.padding[0], d->px = q.padding[1];
  d->dy = q.dilation[0], d->dx = q.dilation[1];
  int bias_ok = a->op != PN_OP_CONV2D || a->n_in < 3 || pn_tensor_numel(a->in[2]) == d->o;
  if (d->g < 1 || d->c % d->g || d->o % d->g || w->shape[1] * d->g != d->c || y->shape[0] != d->n ||
      y->shape[1] != d->o || !bias_ok || d->sy < 1 || d->sx < 1)
    return pn_error(PN_ERR_SHAPE, "cpu: %s: shapes do not fit", pn_op_name(a->op));
  d->cg = d->c / d->g, d->og = d->o / d->g, d->k = d->cg * d->kh * d->kw;
  d->row_lanes = d->sx == 1 ? row_lanes() : 0;
  if (d->k > INT_MAX || d->og > INT_MAX || d->p > INT_MAX)
    return pn_error(PN_ERR_UNSUPPORTED, "cpu: %s: a dimension exceeds OpenBLAS's int",
                    pn_op_name(a->op));
  return PN_OK;
}

static int pool_threads(const pni_cpu_ctx *c) {
  return c && c->pool ? pn_threadpool_size(c->pool) : 1;
}

static int64_t macs(const conv_dims *d) { return d->n * d->o * d->p * d->k; }

static int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

/* Blocks no wider than BLOCK_MAX, and narrow enough that the pool gets a
 * few per thread when the batch is small. */
static void plan_blocks(conv_dims *d, int threads) {
  int64_t cols = d->n * d->p;
  int64_t want = cols * d->g / (2 * (int64_t)threads);
  int64_t cached = COL_FLOATS / (d->k ? d->k : 1);
  if (want > cached) want = cached;
  int64_t b = want < BLOCK_MIN ? BLOCK_MIN : want > BLOCK_MAX ? BLOCK_MAX : want;
  if (d->p >= b) {
    d->nb = 1;
    d->bps = ceil_div(d->p, b);
    d->bw = ceil_div(d->p, d->bps);
  } else {
    d->nb = b / d->p;
    d->bps = 1;
    d->bw = d->p;
  }
  d->groups_of_samples = ceil_div(d->n, d->nb);
}

/* Block `blk` of sample group `s`: samples [n0, n1), columns [p0, p1) of
 * each; its columns are laid out sample after sample. */
typedef struct block {
  int64_t n0, n1, p0, p1, cols;
} block;

static block block_of(const conv_dims *d, int64_t s, int64_t blk) {
  block b;
  b.n0 = s * d->nb;
  b.n1 = b.n0 + d->nb < d->n ? b.n0 + d->nb : d->n;
  b.p0 = blk * d->bw;
  b.p1 = b.p0 + d->bw < d->p ? b.p0 + d->bw : d->p;
  b.cols = (b.n1 - b.n0) * (b.p1 - b.p0);
  return b;
}

static int direct_pointwise(const conv_dims *d) {
  return d->kh == 1 && d->kw == 1 && d->sy == 1 && d->sx == 1 && d->py == 0 && d->px == 0;
}

static int depthwise(const conv_dims *d) { return d->g == d->c && d->g == d->o && d->g > 1; }

/* Outputs ox in [*lo, *hi) read input columns ix = ox*s + off inside [0, len). */
static void valid_range(int64_t off, int64_t s, int64_t len, int64_t n_out, int64_t *lo,
                        int64_t *hi) {
  int64_t l = off >= 0 ? 0 : ceil_div(-off, s);
  int64_t h = len - off <= 0 ? 0 : (len - off - 1) / s + 1;
  *lo = l < n_out ? l : n_out;
  *hi = h < n_out ? h : n_out;
  if (*hi < *lo) *hi = *lo;
}

/* ------------------------------------------------------------ im2col */

HOT static void gather_row(float *restrict dst, const float *restrict src, int64_t n, int64_t s) {
  if (s == 1) {
    memcpy(dst, src, (size_t)n * sizeof *dst);
    return;
  }
  for (int64_t i = 0; i < n; i++) dst[i] = src[i * s];
}

HOT static void scatter_add_row(float *restrict dst, const float *restrict src, int64_t n,
                                int64_t s) {
  for (int64_t i = 0; i < n; i++) dst[i * s] += src[i];
}

/* Copies (or, when `add`, accumulates back) the patch values of output
 * positions [p0, p1) of one input plane for tap (ky, kx) into a row of the
 * column matrix. */
static void patch_row(const conv_dims *d, float *plane, float *row, int64_t p0, int64_t p1,
                      int64_t ky, int64_t kx, int add) {
  int64_t offx = kx * d->dx - d->px, lo, hi;
  valid_range(offx, d->sx, d->w, d->ow, &lo, &hi);
  for (int64_t p = p0; p < p1;) {
    int64_t oy = p / d->ow, ox0 = p % d->ow;
    int64_t ox1 = (p1 - p) < (d->ow - ox0) ? ox0 + (p1 - p) : d->ow;
    int64_t iy = oy * d->sy - d->py + ky * d->dy;
    float *r = row + (p - p0);
    int inside = iy >= 0 && iy < d->h;
    int64_t a = lo > ox0 ? lo : ox0, b = hi < ox1 ? hi : ox1;
    if (!inside || a >= b) {
      if (!add) memset(r, 0, (size_t)(ox1 - ox0) * sizeof *r);
    } else {
      float *src = plane + iy * d->w + a * d->sx + offx;
      if (add) {
        scatter_add_row(src, r + (a - ox0), b - a, d->sx);
      } else {
        memset(r, 0, (size_t)(a - ox0) * sizeof *r);
        gather_row(r + (a - ox0), src, b - a, d->sx);
        memset(r + (b - ox0), 0, (size_t)(ox1 - b) * sizeof *r);
      }
    }
    p += ox1 - ox0;
  }
}

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define HAVE_LOWER_SIMD 1
#define AVX512          __attribute__((target("avx512f")))

static __mmask16 low_lanes(int64_t n) {
  return n >= 16 ? (__mmask16)0xFFFF : n <= 0 ? (__mmask16)0 : (__mmask16)((1u << n) - 1);
}

/* src + off as an address only: lanes outside the row are masked off and
 * never read, but the pointer to them may lie outside the plane. */
static float *shifted(float *src, int64_t off) {
  return (float *)((uintptr_t)src + (uintptr_t)(off * (int64_t)sizeof(float)));
}

/* patch_row for stride 1 along x: an output row segment [ox0, ox1) reads
 * input row iy at ox + offx. Rows are short (7 to 56 columns in these
 * networks), so libc's memcpy and memset per piece cost more than the
 * copy; here each 16 columns are one masked load (zeros where the window
 * hangs over the border) and one masked store. */
AVX512 static void patch_row_s1(const conv_dims *d, float *plane, float *row, int64_t p0,
                                int64_t p1, int64_t ky, int64_t offx, int64_t lo, int64_t hi,
                                int add) {
  int64_t oy = p0 / d->ow, ox0 = p0 % d->ow;
  float *r = row - ox0; /* r[ox] is column ox of output row oy */
  for (int64_t p = p0; p < p1; oy++, r += d->ow) {
    int64_t ox1 = (p1 - p) < (d->ow - ox0) ? ox0 + (p1 - p) : d->ow;
    int64_t iy = oy * d->sy - d->py + ky * d->dy;
    int inside = iy >= 0 && iy < d->h;
    float *src = shifted(plane, iy * d->w + offx); /* src[ox] feeds column ox */
    for (int64_t c = ox0; c < ox1; c += 16) {
      __mmask16 out = low_lanes(ox1 - c);
      __mmask16 valid = inside ? out & low_lanes(hi - c) & (__mmask16)~low_lanes(lo - c) : 0;
      if (add) {
        __m512 v = _mm512_maskz_loadu_ps(valid, shifted(src, c));
        v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(valid, r + c));
        _mm512_mask_storeu_ps(shifted(src, c), valid, v);
      } else {
        _mm512_mask_storeu_ps(r + c, out, _mm512_maskz_loadu_ps(valid, shifted(src, c)));
      }
    }
    p += ox1 - ox0;
    ox0 = 0;
  }
}

/* Stride 1, no dilation, a block of whole samples: each input plane is
 * first copied into a zero-bordered plane (`pad`, (H+2py) x (W+2px)), so
 * that every row of every tap is a plain run of ow values at a fixed
 * offset: no border tests, no per-row geometry. With `add`, the reverse:
 * the taps are summed into the bordered plane, whose inside is then added
 * to x. */
AVX512 static void plane_taps(const conv_dims *d, float *plane, float *pad, float *rows,
                              int64_t stride, int add) {
  int64_t wp = d->w + 2 * d->px, hp = d->h + 2 * d->py;
  float *inner = pad + d->py * wp + d->px;
  if (add)
    memset(pad, 0, (size_t)(hp * wp) * sizeof *pad);
  else
    for (int64_t iy = 0; iy < d->h; iy++)
      memcpy(inner + iy * wp, plane + iy * d->w, (size_t)d->w * sizeof *pad);
  for (int64_t ky = 0; ky < d->kh; ky++)
    for (int64_t kx = 0; kx < d->kw; kx++) {
      float *r = rows + (ky * d->kw + kx) * stride;
      for (int64_t oy = 0; oy < d->oh; oy++, r += d->ow) {
        float *src = pad + (oy + ky) * wp + kx;
        for (int64_t c = 0; c < d->ow; c += 16) {
          __mmask16 m = low_lanes(d->ow - c);
          if (add) {
            __m512 v =
                _mm512_add_ps(_mm512_maskz_loadu_ps(m, src + c), _mm512_maskz_loadu_ps(m, r + c));
            _mm512_mask_storeu_ps(src + c, m, v);
          } else {
            _mm512_mask_storeu_ps(r + c, m, _mm512_maskz_loadu_ps(m, src + c));
          }
        }
      }
    }
  if (add)
    for (int64_t iy = 0; iy < d->h; iy++) {
      float *dst = plane + iy * d->w, *src = inner + iy * wp;
      for (int64_t c = 0; c < d->w; c += 16) {
        __mmask16 m = low_lanes(d->w - c);
        __m512 v =
            _mm512_add_ps(_mm512_maskz_loadu_ps(m, dst + c), _mm512_maskz_loadu_ps(m, src + c));
        _mm512_mask_storeu_ps(dst + c, m, v);
      }
    }
}

/* The same two paths 8 columns at a time for AVX2 machines (AMD's EPYC
 * and Ryzen among them). Masked stores are microcoded on AMD, so none are
 * used: a run's last vector overlaps the one before it instead, and runs
 * under 8 columns go 4 at a time, then one by one. */
#define AVX2 __attribute__((target("avx2,fma")))

/* acc[i] = acc[i] + v[i], i < n (n < 8). */
AVX2 static void add_short(float *acc, const float *v, int64_t n) {
  if (n < 4) {
    for (int64_t i = 0; i < n; i++) acc[i] = acc[i] + v[i];
    return;
  }
  __m128 a = _mm_add_ps(_mm_loadu_ps(acc), _mm_loadu_ps(v));
  __m128 t = _mm_add_ps(_mm_loadu_ps(acc + n - 4), _mm_loadu_ps(v + n - 4));
  _mm_storeu_ps(acc, a);
  _mm_storeu_ps(acc + n - 4, t);
}

/* acc[i] = acc[i] + v[i], i < n. The last two vectors may overlap: both
 * are loaded before either is stored, so no lane gets v twice. */
AVX2 static void add_run8(float *acc, const float *v, int64_t n) {
  if (n < 8) {
    add_short(acc, v, n);
    return;
  }
  int64_t c = 0;
  for (; c + 16 <= n; c += 8)
    _mm256_storeu_ps(acc + c, _mm256_add_ps(_mm256_loadu_ps(acc + c), _mm256_loadu_ps(v + c)));
  __m256 a = _mm256_add_ps(_mm256_loadu_ps(acc + c), _mm256_loadu_ps(v + c));
  __m256 t = _mm256_add_ps(_mm256_loadu_ps(acc + n - 8), _mm256_loadu_ps(v + n - 8));
  _mm256_storeu_ps(acc + c, a);
  _mm256_storeu_ps(acc + n - 8, t);
}

AVX2 static void copy_short(float *dst, const float *src, int64_t n) {
  if (n < 4) {
    for (int64_t i = 0; i < n; i++) dst[i] = src[i];
    return;
  }
  _mm_storeu_ps(dst, _mm_loadu_ps(src));
  _mm_storeu_ps(dst + n - 4, _mm_loadu_ps(src + n - 4));
}

AVX2 static void copy_run8(float *dst, const float *src, int64_t n) {
  if (n < 8) {
    copy_short(dst, src, n);
    return;
  }
  for (int64_t c = 0; c + 8 < n; c += 8) _mm256_storeu_ps(dst + c, _mm256_loadu_ps(src + c));
  _mm256_storeu_ps(dst + n - 8, _mm256_loadu_ps(src + n - 8));
}

/* `rows` rows of n columns, `pitch` apart in src, to one run at r. Under 8
 * columns a row is one masked load and one whole store: the lanes past the
 * row land where later rows go and are overwritten, so only the rows whose
 * store would leave the run are copied exactly. */
AVX2 static void copy_rows8(float *r, const float *src, int64_t pitch, int64_t n, int64_t rows) {
  int64_t y = 0;
  if (n < 4) {
    __m128i m = _mm_cmpgt_epi32(_mm_set1_epi32((int)n), _mm_setr_epi32(0, 1, 2, 3));
    for (; y * n + 4 <= rows * n; y++)
      _mm_storeu_ps(r + y * n, _mm_maskload_ps(src + y * pitch, m));
  } else if (n < 8) {
    __m256i m =
        _mm256_cmpgt_epi32(_mm256_set1_epi32((int)n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
    for (; y * n + 8 <= rows * n; y++)
      _mm256_storeu_ps(r + y * n, _mm256_maskload_ps(src + y * pitch, m));
  }
  for (; y < rows; y++) copy_run8(r + y * n, src + y * pitch, n);
}

/* One tap's row segments for output positions [p0, p1) of one sample,
 * starting at row oy, column ox0: `src` is the bordered plane shifted to
 * the tap, so each segment is a plain run. */
AVX2 static void tap_rows8(const conv_dims *d, float *src, float *r, int64_t p0, int64_t p1,
                           int64_t oy, int64_t ox0, int add) {
  int64_t step = d->sy * (d->w + 2 * d->px);
  for (int64_t p = p0; p < p1; oy++, ox0 = 0) {
    int64_t len = p1 - p < d->ow - ox0 ? p1 - p : d->ow - ox0;
    float *s = src + oy * step + ox0;
    if (add)
      add_run8(s, r, len);
    else
      copy_run8(r, s, len);
    r += len;
    p += len;
  }
}

/* patch_row_s1's work on AVX2, all taps of one plane at once: the input
 * rows that positions [p0, p1) read are copied into the bordered plane (a
 * zero border, as in plane_taps), so that no row segment needs border
 * tests, which cost more than the copy on rows this short. With `add`,
 * the rows are x's, the taps are summed into them one by one as
 * patch_row_s1 sums them into x, and the rows go back; the border
 * collects sums nobody reads. */
AVX2 static void block_taps8(const conv_dims *d, float *plane, float *pad, float *rows,
                             int64_t stride, int64_t p0, int64_t p1, int add) {
  int64_t wp = d->w + 2 * d->px, oy0 = p0 / d->ow, oy1 = (p1 - 1) / d->ow;
  int64_t y0 = oy0 * d->sy - d->py, y1 = oy1 * d->sy - d->py + (d->kh - 1) * d->dy + 1;
  y0 = y0 < 0 ? 0 : y0;
  y1 = y1 > d->h ? d->h : y1;
  float *inner = pad + d->py * wp + d->px;
  for (int64_t iy = y0; iy < y1; iy++) copy_run8(inner + iy * wp, plane + iy * d->w, d->w);
  for (int64_t ky = 0; ky < d->kh; ky++)
    for (int64_t kx = 0; kx < d->kw; kx++)
      tap_rows8(d, pad + ky * d->dy * wp + kx * d->dx, rows + (ky * d->kw + kx) * stride, p0, p1,
                oy0, p0 - oy0 * d->ow, add);
  if (add)
    for (int64_t iy = y0; iy < y1; iy++) copy_run8(plane + iy * d->w, inner + iy * wp, d->w);
}

/* plane_taps on AVX2. */
AVX2 static void plane_taps8(const conv_dims *d, float *plane, float *pad, float *rows,
                             int64_t stride, int add) {
  int64_t wp = d->w + 2 * d->px, hp = d->h + 2 * d->py;
  float *inner = pad + d->py * wp + d->px;
  if (add)
    memset(pad, 0, (size_t)(hp * wp) * sizeof *pad);
  else
    for (int64_t iy = 0; iy < d->h; iy++) copy_run8(inner + iy * wp, plane + iy * d->w, d->w);
  for (int64_t ky = 0; ky < d->kh; ky++)
    for (int64_t kx = 0; kx < d->kw; kx++) {
      float *r = rows + (ky * d->kw + kx) * stride, *src = pad + ky * wp + kx;
      if (!add) {
        copy_rows8(r, src, wp, d->ow, d->oh);
        continue;
      }
      for (int64_t oy = 0; oy < d->oh; oy++, r += d->ow, src += wp) add_run8(src, r, d->ow);
    }
  if (add)
    for (int64_t iy = 0; iy < d->h; iy++) add_run8(plane + iy * d->w, inner + iy * wp, d->w);
}

static int row_lanes(void) {
  if (__builtin_cpu_supports("avx512f")) return 16;
  return __builtin_cpu_supports("avx2") ? 8 : 0;
}
#else
#define HAVE_LOWER_SIMD 0
static int row_lanes(void) { return 0; }
#endif

/* Scratch per chunk: the column matrix, a block of dy or y (tmp), and the
 * bordered plane of the stride-1 path. */
static size_t scratch_size(const conv_dims *d) {
  return (size_t)((d->k + d->og) * d->nb * d->bw + (d->h + 2 * d->py) * (d->w + 2 * d->px));
}

static float *pad_area(const conv_dims *d, float *scratch) {
  return scratch + (d->k + d->og) * d->nb * d->bw;
}

#if HAVE_LOWER_SIMD
typedef void taps_fn(const conv_dims *, float *, float *, float *, int64_t, int);

/* lower for a block of whole samples at stride 1 without dilation. */
static void lower_planes(const conv_dims *d, float *x, int64_t g, const block *b, float *col,
                         float *pad, int add) {
  taps_fn *taps = d->row_lanes == 16 ? plane_taps : plane_taps8;
  int64_t n_taps = d->kh * d->kw, width = b->p1 - b->p0;
  /* the border stays zero: plane_taps rewrites only the inside */
  if (!add) memset(pad, 0, (size_t)((d->h + 2 * d->py) * (d->w + 2 * d->px)) * sizeof *pad);
  for (int64_t ci = 0; ci < d->cg; ci++)
    for (int64_t n = b->n0; n < b->n1; n++)
      taps(d, x + ((n * d->c + g * d->cg + ci) * d->h) * d->w, pad,
           col + ci * n_taps * b->cols + (n - b->n0) * width, b->cols, add);
}

/* lower for any other block at stride 1 along x. */
static void lower_rows(const conv_dims *d, float *x, int64_t g, const block *b, float *col,
                       int add) {
  int64_t width = b->p1 - b->p0;
  for (int64_t ci = 0; ci < d->cg; ci++)
    for (int64_t ky = 0; ky < d->kh; ky++)
      for (int64_t kx = 0; kx < d->kw; kx++) {
        float *row = col + ((ci * d->kh + ky) * d->kw + kx) * b->cols;
        int64_t offx = kx * d->dx - d->px, lo, hi;
        valid_range(offx, 1, d->w, d->ow, &lo, &hi);
        for (int64_t n = b->n0; n < b->n1; n++) {
          float *plane = x + ((n * d->c + g * d->cg + ci) * d->h) * d->w;
          patch_row_s1(d, plane, row + (n - b->n0) * width, b->p0, b->p1, ky, offx, lo, hi, add);
        }
      }
}

/* lower_rows on AVX2, plane by plane through the bordered plane. */
static void lower_blocks8(const conv_dims *d, float *x, int64_t g, const block *b, float *col,
                          float *pad, int add) {
  int64_t n_taps = d->kh * d->kw, width = b->p1 - b->p0, wp = d->w + 2 * d->px;
  /* the bordered rows the block reads: a zero border for the copies, and
   * no stale values for the sums */
  int64_t r0 = b->p0 / d->ow * d->sy, r1 = (b->p1 - 1) / d->ow * d->sy + (d->kh - 1) * d->dy + 1;
  memset(pad + r0 * wp, 0, (size_t)((r1 - r0) * wp) * sizeof *pad);
  for (int64_t ci = 0; ci < d->cg; ci++)
    for (int64_t n = b->n0; n < b->n1; n++)
      block_taps8(d, x + ((n * d->c + g * d->cg + ci) * d->h) * d->w, pad,
                  col + ci * n_taps * b->cols + (n - b->n0) * width, b->cols, b->p0, b->p1, add);
}
#endif

/* col[(ci*kh + ky)*kw + kx][column] for block b of group g; with `add`,
 * the reverse: the column matrix is summed into x (col2im). */
static void lower(const conv_dims *d, float *x, int64_t g, const block *b, float *col, float *pad,
                  int add) {
#if HAVE_LOWER_SIMD
  if (d->row_lanes && d->sy == 1 && d->dy == 1 && d->dx == 1 && b->p0 == 0 && b->p1 == d->p) {
    lower_planes(d, x, g, b, col, pad, add);
    return;
  }
  if (d->row_lanes == 16) {
    lower_rows(d, x, g, b, col, add);
    return;
  }
  if (d->row_lanes == 8) {
    lower_blocks8(d, x, g, b, col, pad, add);
    return;
  }
#else
  (void)pad;
#endif
  int64_t width = b->p1 - b->p0;
  for (int64_t ci = 0; ci < d->cg; ci++)
    for (int64_t ky = 0; ky < d->kh; ky++)
      for (int64_t kx = 0; kx < d->kw; kx++) {
        float *row = col + ((ci * d->kh + ky) * d->kw + kx) * b->cols;
        for (int64_t n = b->n0; n < b->n1; n++) {
          float *plane = x + ((n * d->c + g * d->cg + ci) * d->h) * d->w;
          patch_row(d, plane, row + (n - b->n0) * width, b->p0, b->p1, ky, kx, add);
        }
      }
}

/* ------------------------------------------------------------ chunks */

/* Work split into `chunks` fixed pieces, each with its own scratch, so
 * that results (and partial-sum order) do not depend on which worker ran
 * which piece. */
typedef void (*chunk_fn)(void *job, int64_t chunk, float *scratch);

typedef struct chunk_run {
  chunk_fn fn;
  void *job;
  float **scratch;
} chunk_run;

static void chunk_slice(void *arg, int64_t begin, int64_t end, int worker) {
  const chunk_run *r = arg;
  (void)worker;
  for (int64_t i = begin; i < end; i++) r->fn(r->job, i, r->scratch[i]);
}

/* Runs fn over chunks [0, n) on the pool; when one chunk gets all the work
 * but the pool has threads to spare, OpenBLAS gets them instead. */
static pn_status run_chunks(const pni_cpu_ctx *c, int64_t n, size_t scratch_floats, chunk_fn fn,
                            void *job, int blas_threads) {
  float **scratch = calloc((size_t)n, sizeof *scratch);
  pn_status s = scratch ? PN_OK : PN_ERR_NOMEM;
  for (int64_t i = 0; i < n && s == PN_OK && scratch_floats; i++)
    if (!(scratch[i] = malloc(scratch_floats * sizeof(float)))) s = PN_ERR_NOMEM;
  if (s == PN_OK) {
    chunk_run r = {fn, job, scratch};
    if (blas_threads > 1) openblas_set_num_threads(blas_threads);
    pni_cpu_parallel(c, n, 1, chunk_slice, &r);
    if (blas_threads > 1) openblas_set_num_threads(1);
  }
  for (int64_t i = 0; scratch && i < n; i++) free(scratch[i]);
  free(scratch);
  return s == PN_OK ? PN_OK : pn_error(s, "cpu: conv2d: out of memory for the column matrix");
}

/* How many chunks for `units` independent pieces of work, and whether the
 * lone chunk should let OpenBLAS thread itself. */
static int64_t plan_chunks(const pni_cpu_ctx *c, const conv_dims *d, int64_t units,
                           int *blas_threads) {
  int threads = pool_threads(c);
  *blas_threads = 1;
  if (macs(d) < CONV_SPLIT_MACS || threads < 2 || units < 1) return units < 1 ? 0 : 1;
  if (units < threads) {
    *blas_threads = threads;
    return 1;
  }
  return threads;
}

/* ------------------------------------------------------------ batched 1x1 */

/* A 1x1 unpadded convolution on small planes: the batch is seen as one
 * [channels, n*oh*ow] matrix, so that a product has N (or K) = n*oh*ow
 * instead of one sample's oh*ow (49 on a 7x7 plane), for which OpenBLAS
 * repacks the whole weight matrix every 49 columns. Each piece of columns
 * is gathered from NCHW (at the stride's positions), multiplied, and the
 * result scattered back. Pieces are at least PW_COLS_MIN columns wide, for
 * the same packing reason, and at most PW_COLS_MAX, to bound the scratch.
 * From 28x28 planes on, one sample's product is long enough and the gather
 * costs more than it saves (measured on the ResNet-50 shapes), hence
 * PW_PLANE_MAX. */
enum { PW_PLANE_MAX = 256, PW_COLS_MIN = 256, PW_COLS_MAX = 1024 };

static int batched_pointwise(const conv_dims *d) {
  return d->kh == 1 && d->kw == 1 && d->py == 0 && d->px == 0 && d->n > 1 && d->p > 0 &&
         d->p < PW_PLANE_MAX;
}

/* The NCHW tensor a piece is read from or written to: `rows` channels of
 * h x w planes, output position (oy, ox) at plane element (oy*sy, ox*sx). */
typedef struct pw_side {
  int64_t rows, h, w, sy, sx;
} pw_side;

static pw_side input_side(const conv_dims *d) {
  pw_side s = {d->c, d->h, d->w, d->sy, d->sx};
  return s;
}

static pw_side output_side(const conv_dims *d) {
  pw_side s = {d->o, d->oh, d->ow, 1, 1};
  return s;
}

/* Sets the piece width d->bw and returns the number of pieces: at least one
 * per thread where the columns allow pieces of PW_COLS_MIN. */
static int64_t pw_plan(conv_dims *d, int threads) {
  int64_t cols = d->n * d->p;
  int64_t pieces = ceil_div(cols, PW_COLS_MAX);
  int64_t spread = cols / PW_COLS_MIN < threads ? cols / PW_COLS_MIN : threads;
  if (pieces < spread) pieces = spread;
  d->bw = ceil_div(cols, pieces);
  return ceil_div(cols, d->bw);
}

HOT static void scatter_row(float *restrict dst, const float *restrict src, int64_t n, int64_t s,
                            float add) {
  for (int64_t i = 0; i < n; i++) dst[i * s] = src[i] + add;
}

/* Moves output positions [q, q + len) of one plane into the matrix row
 * segment m, or with `out` the other way (plus `add`), output row by row. */
static void pw_segment(const conv_dims *d, const pw_side *s, float *plane, int64_t q, int64_t len,
                       float *m, int out, float add) {
  if (s->sy == 1 && s->sx == 1 && s->w == d->ow) { /* one contiguous run */
    if (out)
      scatter_row(plane + q, m, len, 1, add);
    else
      memcpy(m, plane + q, (size_t)len * sizeof *m);
    return;
  }
  for (int64_t end = q + len; q < end;) {
    int64_t oy = q / d->ow, ox = q % d->ow;
    int64_t run = end - q < d->ow - ox ? end - q : d->ow - ox;
    float *at = plane + oy * s->sy * s->w + ox * s->sx;
    if (out)
      scatter_row(at, m, run, s->sx, add);
    else
      gather_row(m, at, run, s->sx);
    m += run, q += run;
  }
}

/* Columns [j0, j1) of side s's batched matrix: copied from t into m
 * (leading dimension j1 - j0), or with `out` from m into t, plus bias. */
static void pw_move(const conv_dims *d, const pw_side *s, float *t, int64_t j0, int64_t j1,
                    float *m, int out, const float *bias) {
  int64_t ld = j1 - j0;
  for (int64_t r = 0; r < s->rows; r++)
    for (int64_t j = j0; j < j1;) {
      int64_t n = j / d->p, q = j % d->p;
      int64_t len = j1 - j < d->p - q ? j1 - j : d->p - q;
      float *plane = t + (n * s->rows + r) * s->h * s->w;
      pw_segment(d, s, plane, q, len, m + r * ld + (j - j0), out, bias ? bias[r] : 0.0f);
      j += len;
    }
}

typedef struct pw_job pw_job;
/* One piece: columns [j0, j1) of the batch, run by chunk `chunk`, whose
 * scratch holds (c + o) rows of j1 - j0 floats. */
typedef void (*piece_fn)(const pw_job *j, int64_t chunk, int64_t j0, int64_t j1, float *scratch);

struct pw_job {
  const conv_dims *d;
  piece_fn piece;
  float *x, *w, *y; /* y: the output, or dy for the gradients */
  const float *b;
  float **partial; /* grad_weight: one dw per chunk */
  int64_t units, chunks;
};

/* A chunk runs a fixed run of consecutive pieces. */
static void pw_chunk(void *job, int64_t chunk, float *scratch) {
  const pw_job *j = job;
  int64_t cols = j->d->n * j->d->p, bw = j->d->bw;
  int64_t u0 = chunk * j->units / j->chunks, u1 = (chunk + 1) * j->units / j->chunks;
  for (int64_t u = u0; u < u1; u++)
    j->piece(j, chunk, u * bw, (u + 1) * bw < cols ? (u + 1) * bw : cols, scratch);
}

/* y = W x (+ bias), group by group. */
static void pw_forward_piece(const pw_job *j, int64_t chunk, int64_t j0, int64_t j1,
                             float *scratch) {
  (void)chunk;
  const conv_dims *d = j->d;
  pw_side in = input_side(d), out = output_side(d);
  int64_t cols = j1 - j0;
  float *xm = scratch, *ym = scratch + d->c * cols;
  pw_move(d, &in, j->x, j0, j1, xm, 0, NULL);
  for (int64_t g = 0; g < d->g; g++)
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (blasint)d->og, (blasint)cols,
                (blasint)d->cg, 1.0f, j->w + g * d->og * d->cg, (blasint)d->cg,
                xm + g * d->cg * cols, (blasint)cols, 0.0f, ym + g * d->og * cols, (blasint)cols);
  pw_move(d, &out, j->y, j0, j1, ym, 1, j->b);
}

/* dx = W^T dy; where a stride skips positions, dx was zeroed first. */
static void pw_grad_input_piece(const pw_job *j, int64_t chunk, int64_t j0, int64_t j1,
                                float *scratch) {
  (void)chunk;
  const conv_dims *d = j->d;
  pw_side in = input_side(d), out = output_side(d);
  int64_t cols = j1 - j0;
  float *ym = scratch, *xm = scratch + d->o * cols;
  pw_move(d, &out, j->y, j0, j1, ym, 0, NULL);
  for (int64_t g = 0; g < d->g; g++)
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (blasint)d->cg, (blasint)cols,
                (blasint)d->og, 1.0f, j->w + g * d->og * d->cg, (blasint)d->cg,
                ym + g * d->og * cols, (blasint)cols, 0.0f, xm + g * d->cg * cols, (blasint)cols);
  pw_move(d, &in, j->x, j0, j1, xm, 1, NULL);
}

/* The chunk's dw += dy x^T, with K = the piece's columns (samples and
 * positions together) instead of one sample's positions. */
static void pw_grad_weight_piece(const pw_job *j, int64_t chunk, int64_t j0, int64_t j1,
                                 float *scratch) {
  const conv_dims *d = j->d;
  pw_side in = input_side(d), out = output_side(d);
  int64_t cols = j1 - j0;
  float *ym = scratch, *xm = scratch + d->o * cols;
  float *dw = j->partial[chunk];
  pw_move(d, &out, j->y, j0, j1, ym, 0, NULL);
  pw_move(d, &in, j->x, j0, j1, xm, 0, NULL);
  for (int64_t g = 0; g < d->g; g++)
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (blasint)d->og, (blasint)d->cg,
                (blasint)cols, 1.0f, ym + g * d->og * cols, (blasint)cols, xm + g * d->cg * cols,
                (blasint)cols, 1.0f, dw + g * d->og * d->cg, (blasint)d->cg);
}

/* Plans the pieces and the chunks that run them; returns the scratch a
 * chunk needs, in floats. */
static size_t pw_plan_job(const pni_cpu_ctx *c, conv_dims *d, pw_job *j, int *blas) {
  j->units = pw_plan(d, pool_threads(c));
  j->chunks = plan_chunks(c, d, j->units, blas);
  return (size_t)((d->c + d->o) * d->bw);
}

static pn_status pw_run(const pni_cpu_ctx *c, conv_dims *d, pw_job *j) {
  int blas;
  size_t scratch = pw_plan_job(c, d, j, &blas);
  return run_chunks(c, j->chunks, scratch, pw_chunk, j, blas);
}

/* ------------------------------------------------------------ forward */

typedef struct fwd_job {
  const conv_dims *d;
  const float *x, *w, *b;
  float *y;
  int64_t units, chunks;
} fwd_job;

HOT static void add_bias_rows(float *restrict y, int64_t rows, int64_t len, int64_t ld,
                              const float *restrict b) {
  for (int64_t r = 0; r < rows; r++)
    for (int64_t i = 0; i < len; i++) y[r * ld + i] += b[r];
}

HOT static void copy_rows(float *restrict dst, const float *restrict src, int64_t rows, int64_t len,
                          int64_t ld_dst, int64_t ld_src, const float *restrict b) {
  for (int64_t r = 0; r < rows; r++) {
    float v = b ? b[r] : 0.0f;
    for (int64_t i = 0; i < len; i++) dst[r * ld_dst + i] = src[r * ld_src + i] + v;
  }
}

/* One block of one group: y[block] = W_g * col (+ bias). A block inside
 * one sample is written in place; one spanning samples goes through tmp
 * (after col in the scratch) and is copied out sample by sample. */
static void forward_unit(const fwd_job *j, int64_t u, float *scratch) {
  const conv_dims *d = j->d;
  int64_t g = u % d->g, blk = u / d->g % d->bps, s = u / d->g / d->bps;
  block b = block_of(d, s, blk);
  const float *bias = j->b ? j->b + g * d->og : NULL;
  const float *col = scratch;
  int64_t ldb = b.cols;
  if (b.n1 - b.n0 == 1 && direct_pointwise(d)) {
    col = j->x + (b.n0 * d->c + g * d->cg) * d->p + b.p0;
    ldb = d->p;
  } else {
    lower(d, (float *)j->x, g, &b, scratch, pad_area(d, scratch), 0);
  }
  const float *wg = j->w + g * d->og * d->k;
  float *yg = j->y + (b.n0 * d->o + g * d->og) * d->p + b.p0;
  int single = b.n1 - b.n0 == 1;
  float *c = single ? yg : scratch + d->k * d->nb * d->bw;
  int64_t ldc = single ? d->p : b.cols;
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (blasint)d->og, (blasint)b.cols,
              (blasint)d->k, 1.0f, wg, (blasint)d->k, col, (blasint)ldb, 0.0f, c, (blasint)ldc);
  if (single) {
    if (bias) add_bias_rows(yg, d->og, b.cols, d->p, bias);
    return;
  }
  for (int64_t n = b.n0; n < b.n1; n++)
    copy_rows(j->y + (n * d->o + g * d->og) * d->p, c + (n - b.n0) * d->p, d->og, d->p, d->p,
              b.cols, bias);
}

static void forward_chunk(void *job, int64_t chunk, float *scratch) {
  const fwd_job *j = job;
  int64_t u0 = chunk * j->units / j->chunks, u1 = (chunk + 1) * j->units / j->chunks;
  for (int64_t u = u0; u < u1; u++) forward_unit(j, u, scratch);
}

/* ------------------------------------------------------------ depthwise */

/* Depthwise convolutions run in cpu_depthwise.c; this hands it the geometry. */
static pni_cpu_dw_geom dw_geom(const conv_dims *d) {
  pni_cpu_dw_geom g = {d->n,  d->c,  d->h,  d->w,  d->kh, d->kw, d->oh,
                       d->ow, d->sy, d->sx, d->py, d->px, d->dy, d->dx};
  return g;
}

/* ------------------------------------------------------------ kernels */

pn_status pni_cpu_conv2d(void *dctx, const pn_op_args *a) {
  conv_dims d;
  PN_TRY(read_dims(a, a->in[0], a->in[1], a->out, &d));
  const float *b = a->n_in > 2 ? pn_tensor_data(a->in[2]) : NULL;
  if (d.n == 0 || d.o == 0) return PN_OK;
  if (d.k == 0) { /* no input channels: the bias alone */
    float *y = pn_tensor_data(a->out);
    for (int64_t i = 0; i < pn_tensor_numel(a->out); i++) y[i] = b ? b[i / d.p % d.o] : 0.0f;
    return PN_OK;
  }
  if (depthwise(&d)) {
    pni_cpu_dw_geom g = dw_geom(&d);
    pni_cpu_dw_forward(dctx, &g, pn_tensor_data(a->in[0]), pn_tensor_data(a->in[1]), b,
                       pn_tensor_data(a->out));
    return PN_OK;
  }
  if (batched_pointwise(&d)) {
    pw_job j = {.d = &d,
                .piece = pw_forward_piece,
                .x = pn_tensor_data(a->in[0]),
                .w = pn_tensor_data(a->in[1]),
                .y = pn_tensor_data(a->out),
                .b = b};
    return pw_run(dctx, &d, &j);
  }
  plan_blocks(&d, pool_threads(dctx));
  int blas;
  fwd_job j = {&d, pn_tensor_data(a->in[0]), pn_tensor_data(a->in[1]),
               b,  pn_tensor_data(a->out),   d.groups_of_samples * d.bps * d.g,
               0};
  j.chunks = plan_chunks(dctx, &d, j.units, &blas);
  size_t scratch = scratch_size(&d);
  return run_chunks(dctx, j.chunks, scratch, forward_chunk, &j, blas);
}

/* ------------------------------------------------------------ grad input */

typedef struct gin_job {
  const conv_dims *d;
  const float *dy, *w;
  float *dx;
  int64_t units, chunks;
} gin_job;

/* dy of block b, group g, as a [og, cols] matrix: in place for one sample,
 * else gathered into tmp. */
static const float *block_dy(const conv_dims *d, const float *dy, int64_t g, const block *b,
                             float *tmp, int64_t *ld) {
  if (b->n1 - b->n0 == 1) {
    *ld = d->p;
    return dy + (b->n0 * d->o + g * d->og) * d->p + b->p0;
  }
  for (int64_t n = b->n0; n < b->n1; n++)
    copy_rows(tmp + (n - b->n0) * d->p, dy + (n * d->o + g * d->og) * d->p, d->og, d->p, b->cols,
              d->p, NULL);
  *ld = b->cols;
  return tmp;
}

/* Whole samples of one group: their dx channels belong to this unit alone,
 * so col2im's overlapping windows never race. */
static void grad_input_unit(const gin_job *j, int64_t u, float *scratch) {
  const conv_dims *d = j->d;
  int64_t g = u % d->g, s = u / d->g;
  float *col = scratch, *tmp = scratch + d->k * d->nb * d->bw;
  const float *wg = j->w + g * d->og * d->k;
  block first = block_of(d, s, 0);
  int pointwise = first.n1 - first.n0 == 1 && direct_pointwise(d);
  for (int64_t n = first.n0; n < first.n1 && !pointwise; n++)
    memset(j->dx + (n * d->c + g * d->cg) * d->h * d->w, 0,
           (size_t)(d->cg * d->h * d->w) * sizeof(float));
  for (int64_t blk = 0; blk < d->bps; blk++) {
    block b = block_of(d, s, blk);
    int64_t ldg;
    const float *gy = block_dy(d, j->dy, g, &b, tmp, &ldg);
    float *c = pointwise ? j->dx + (b.n0 * d->c + g * d->cg) * d->p + b.p0 : col;
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (blasint)d->k, (blasint)b.cols,
                (blasint)d->og, 1.0f, wg, (blasint)d->k, gy, (blasint)ldg, 0.0f, c,
                (blasint)(pointwise ? d->p : b.cols));
    if (!pointwise) lower(d, j->dx, g, &b, col, pad_area(d, scratch), 1);
  }
}

static void grad_input_chunk(void *job, int64_t chunk, float *scratch) {
  const gin_job *j = job;
  int64_t u0 = chunk * j->units / j->chunks, u1 = (chunk + 1) * j->units / j->chunks;
  for (int64_t u = u0; u < u1; u++) grad_input_unit(j, u, scratch);
}

pn_status pni_cpu_conv2d_grad_input(void *dctx, const pn_op_args *a) {
  conv_dims d;
  PN_TRY(read_dims(a, a->out, a->in[1], a->in[0], &d));
  float *dx = pn_tensor_data(a->out);
  if (d.n == 0 || d.c == 0) return PN_OK;
  if (d.o == 0 || d.k == 0) {
    memset(dx, 0, (size_t)pn_tensor_numel(a->out) * sizeof *dx);
    return PN_OK;
  }
  if (depthwise(&d)) {
    pni_cpu_dw_geom g = dw_geom(&d);
    pni_cpu_dw_grad_input(dctx, &g, pn_tensor_data(a->in[0]), pn_tensor_data(a->in[1]), dx);
    return PN_OK;
  }
  if (batched_pointwise(&d)) {
    if (d.sy > 1 || d.sx > 1) /* the stride skips positions no piece writes */
      memset(dx, 0, (size_t)pn_tensor_numel(a->out) * sizeof *dx);
    pw_job j = {.d = &d,
                .piece = pw_grad_input_piece,
                .x = dx,
                .w = pn_tensor_data(a->in[1]),
                .y = pn_tensor_data(a->in[0])};
    return pw_run(dctx, &d, &j);
  }
  plan_blocks(&d, pool_threads(dctx));
  int blas;
  gin_job j = {&d, pn_tensor_data(a->in[0]),  pn_tensor_data(a->in[1]),
               dx, d.groups_of_samples * d.g, 0};
  j.chunks = plan_chunks(dctx, &d, j.units, &blas);
  size_t scratch = scratch_size(&d);
  return run_chunks(dctx, j.chunks, scratch, grad_input_chunk, &j, blas);
}

/* ------------------------------------------------------------ grad weight */

typedef struct gw_job {
  const conv_dims *d;
  const float *dy, *x;
  float **partial; /* one dw per chunk; partial[0] is the output */
  int64_t chunks;
} gw_job;

/* dw_g += dy_block * col_block^T for every block of sample group s. */
static void grad_weight_group(const gw_job *j, int64_t s, float *dw, float *scratch) {
  const conv_dims *d = j->d;
  float *col = scratch, *tmp = scratch + d->k * d->nb * d->bw;
  for (int64_t blk = 0; blk < d->bps; blk++)
    for (int64_t g = 0; g < d->g; g++) {
      block b = block_of(d, s, blk);
      int64_t ldg, ldx = b.cols;
      const float *gy = block_dy(d, j->dy, g, &b, tmp, &ldg);
      const float *xc = col;
      if (b.n1 - b.n0 == 1 && direct_pointwise(d)) {
        xc = j->x + (b.n0 * d->c + g * d->cg) * d->p + b.p0;
        ldx = d->p;
      } else {
        lower(d, (float *)j->x, g, &b, col, pad_area(d, scratch), 0);
      }
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (blasint)d->og, (blasint)d->k,
                  (blasint)b.cols, 1.0f, gy, (blasint)ldg, xc, (blasint)ldx, 1.0f,
                  dw + g * d->og * d->k, (blasint)d->k);
    }
}

static void grad_weight_chunk(void *job, int64_t chunk, float *scratch) {
  const gw_job *j = job;
  int64_t n = j->d->groups_of_samples;
  int64_t s0 = chunk * n / j->chunks, s1 = (chunk + 1) * n / j->chunks;
  for (int64_t s = s0; s < s1; s++) grad_weight_group(j, s, j->partial[chunk], scratch);
}

HOT static void add_into(float *restrict dst, const float *restrict src, int64_t n) {
  for (int64_t i = 0; i < n; i++) dst[i] += src[i];
}

/* Runs fn over `chunks` chunks, chunk i summing into partial[i] (partial[0]
 * is dw itself, the others zeroed scratch), then adds them up in chunk
 * order, so that the sum does not depend on which worker ran what. */
static pn_status run_partials(const pni_cpu_ctx *c, int64_t chunks, size_t scratch, chunk_fn fn,
                              void *job, float ***partial, float *dw, int64_t len, int blas) {
  float **p = calloc((size_t)chunks, sizeof *p);
  pn_status s = p ? PN_OK : PN_ERR_NOMEM;
  for (int64_t i = 0; i < chunks && s == PN_OK; i++)
    if (!(p[i] = i ? calloc((size_t)len, sizeof(float)) : dw)) s = PN_ERR_NOMEM;
  *partial = p;
  if (s == PN_OK)
    s = run_chunks(c, chunks, scratch, fn, job, blas);
  else
    pn_error(s, "cpu: conv2d_grad_weight: out of memory for partial sums");
  for (int64_t i = 1; p && i < chunks; i++) {
    if (s == PN_OK) add_into(dw, p[i], len);
    free(p[i]);
  }
  free(p);
  *partial = NULL;
  return s;
}

static pn_status pw_grad_weight(const pni_cpu_ctx *c, conv_dims *d, const pn_op_args *a, float *dw,
                                int64_t len) {
  int blas;
  pw_job j = {.d = d,
              .piece = pw_grad_weight_piece,
              .x = pn_tensor_data(a->in[1]),
              .y = pn_tensor_data(a->in[0])};
  size_t scratch = pw_plan_job(c, d, &j, &blas);
  return run_partials(c, j.chunks, scratch, pw_chunk, &j, &j.partial, dw, len, blas);
}

pn_status pni_cpu_conv2d_grad_weight(void *dctx, const pn_op_args *a) {
  conv_dims d;
  PN_TRY(read_dims(a, a->in[1], a->out, a->in[0], &d));
  float *dw = pn_tensor_data(a->out);
  int64_t len = pn_tensor_numel(a->out);
  memset(dw, 0, (size_t)len * sizeof *dw);
  if (d.n == 0 || len == 0) return PN_OK;
  if (depthwise(&d)) {
    pni_cpu_dw_geom g = dw_geom(&d);
    return pni_cpu_dw_grad_weight(dctx, &g, pn_tensor_data(a->in[0]), pn_tensor_data(a->in[1]),
                                  dw);
  }
  if (batched_pointwise(&d)) return pw_grad_weight(dctx, &d, a, dw, len);
  plan_blocks(&d, pool_threads(dctx));
  int blas;
  gw_job j = {&d, pn_tensor_data(a->in[0]), pn_tensor_data(a->in[1]), NULL, 0};
  j.chunks = plan_chunks(dctx, &d, d.groups_of_samples, &blas);
  return run_partials(dctx, j.chunks, scratch_size(&d), grad_weight_chunk, &j, &j.partial, dw, len,
                      blas);
}
