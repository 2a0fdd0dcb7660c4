/* The cpu backend's depthwise convolution (groups == C == O), where a GEMM
 * with K = KH*KW would be all overhead.
 *
 * Rows are short (MobileNet's planes are 112 down to 7 wide), so loops
 * along a row waste most of a vector. Instead each plane is first split by
 * stride phase into zero-padded planes sharing one row pitch `wq`: phase
 * (ry, rx) holds padded input pixel (a*sy + ry, b*sx + rx) at a*wq + b.
 * Tap (ky, kx) then reads one phase at a fixed offset for every output
 * (oy, ox) laid out at oy*wq + ox, so each kernel is a handful of long flat
 * loops over whole planes: all taps of a pass accumulate in registers, one
 * load per multiply-add. The padding is zeroed once per worker and call,
 * since every plane has the same geometry; the wq - ow spare columns of each output row
 * are computed and dropped. The gradients run the same taps: grad_input
 * gathers each phase of dx from dy laid out at pitch wq (spare columns zero),
 * grad_weight dots dy with each tap's shifted phase. */
#include <stdlib.h>
#include <string.h>

#include "cpu_kernels.h"

#define HOT __attribute__((target_clones("avx512f", "avx2", "default")))
#define INLINE static inline __attribute__((always_inline))

/* 16 floats: one AVX-512 register, two AVX ones, four SSE ones, as each
 * clone compiles it. */
typedef float v16 __attribute__((vector_size(64)));
typedef float v16u __attribute__((vector_size(64), aligned(4)));
enum { VL = 16, MAX_TAPS = 9, SLACK = 2 * VL };

typedef pni_cpu_dw_geom geom;

/* Macros, not functions: a function returning a vector would change ABI
 * between the clones. */
#define LOAD(p) (*(const v16u *)(p))
#define STORE(p, v) (*(v16u *)(p) = (v))

static int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }
static int64_t max64(int64_t a, int64_t b) { return a > b ? a : b; }
static int64_t round_vl(int64_t n) { return ceil_div(n, VL) * VL; }

/* Outputs ox in [*lo, *hi) read input columns ix = ox*s + off inside [0, len). */
static void valid_range(int64_t off, int64_t s, int64_t len, int64_t n_out, int64_t *lo,
                        int64_t *hi) {
  int64_t l = off >= 0 ? 0 : ceil_div(-off, s);
  int64_t h = len - off <= 0 ? 0 : (len - off - 1) / s + 1;
  *lo = l < n_out ? l : n_out;
  *hi = h < n_out ? h : n_out;
  if (*hi < *lo) *hi = *lo;
}

/* ------------------------------------------------------------ plan */

typedef struct plan {
  const geom *d;
  int64_t wq, hq;     /* pitch and rows of a phase plane */
  int64_t plane;      /* floats of one phase plane, slack included */
  int64_t lead;       /* largest tap offset */
  int64_t ntaps, nph; /* taps kh*kw, phases sy*sx */
  int *phase;         /* tap t reads phase phase[t] ... */
  int64_t *off;       /* ... at offset off[t] */
} plan;

static void plan_free(plan *p) {
  free(p->phase);
  free(p->off);
}

/* wq and hq leave room for every output plus the largest tap offset (and a
 * row for the flat loops' overrun), and for every input pixel's phase. */
static int plan_make(const geom *d, plan *p) {
  memset(p, 0, sizeof *p);
  p->d = d;
  int64_t mqy = (d->kh - 1) * d->dy / d->sy, mqx = (d->kw - 1) * d->dx / d->sx;
  p->wq = max64(d->ow + mqx, ceil_div(d->w + d->px, d->sx));
  p->hq = max64(d->oh + mqy + 1, ceil_div(d->h + d->py, d->sy));
  p->plane = p->hq * p->wq + SLACK;
  p->ntaps = d->kh * d->kw;
  p->nph = d->sy * d->sx;
  p->phase = malloc((size_t)p->ntaps * sizeof *p->phase);
  p->off = malloc((size_t)p->ntaps * sizeof *p->off);
  if (!p->phase || !p->off) return 0;
  for (int64_t ky = 0; ky < d->kh; ky++)
    for (int64_t kx = 0; kx < d->kw; kx++) {
      int64_t t = ky * d->kw + kx, oy = ky * d->dy, ox = kx * d->dx;
      p->phase[t] = (int)(oy % d->sy * d->sx + ox % d->sx);
      p->off[t] = oy / d->sy * p->wq + ox / d->sx;
      p->lead = max64(p->lead, p->off[t]);
    }
  return 1;
}

/* ------------------------------------------------------------ flat loops */

/* q[i] = init + sum_t w[t] * s[t][i] for i < n (a multiple of VL), nt
 * taps: inlined per count so that the weights stay in registers. */
INLINE void taps_n(float *restrict q, int64_t n, const float *const *s, const float *w,
                   const float *init, float bias, const int nt) {
  v16 wv[MAX_TAPS];
  const float *sp[MAX_TAPS];
  for (int t = 0; t < nt; t++) wv[t] = (v16){0} + w[t], sp[t] = s[t];
  for (int64_t i = 0; i < n; i += VL) {
    v16 acc = init ? LOAD(init + i) : (v16){0} + bias;
    for (int t = 0; t < nt; t++) acc += wv[t] * LOAD(sp[t] + i);
    STORE(q + i, acc);
  }
}

HOT static void taps(float *q, int64_t n, const float *const *s, const float *w, int nt,
                     const float *init, float bias) {
  switch (nt) {
  case 1: taps_n(q, n, s, w, init, bias, 1); break;
  case 2: taps_n(q, n, s, w, init, bias, 2); break;
  case 3: taps_n(q, n, s, w, init, bias, 3); break;
  case 4: taps_n(q, n, s, w, init, bias, 4); break;
  case 5: taps_n(q, n, s, w, init, bias, 5); break;
  case 6: taps_n(q, n, s, w, init, bias, 6); break;
  case 7: taps_n(q, n, s, w, init, bias, 7); break;
  case 8: taps_n(q, n, s, w, init, bias, 8); break;
  default: taps_n(q, n, s, w, init, bias, 9); break;
  }
}

/* Runs of this many floats are summed in float lanes before joining the
 * double total, so that long planes keep their precision. */
enum { DOT_RUN = 2048 };

/* sum[t] += sum_i g[i] * s[t][i] for i < n (a multiple of VL). */
INLINE void dots_n(const float *restrict g, int64_t n, const float *const *s, double *sum,
                   const int nt) {
  const float *sp[MAX_TAPS];
  for (int t = 0; t < nt; t++) sp[t] = s[t];
  for (int64_t i0 = 0; i0 < n; i0 += DOT_RUN) {
    int64_t i1 = i0 + DOT_RUN < n ? i0 + DOT_RUN : n;
    v16 acc[MAX_TAPS];
    for (int t = 0; t < nt; t++) acc[t] = (v16){0};
    for (int64_t i = i0; i < i1; i += VL) {
      v16 gv = LOAD(g + i);
      for (int t = 0; t < nt; t++) acc[t] += gv * LOAD(sp[t] + i);
    }
    for (int t = 0; t < nt; t++)
      for (int l = 0; l < VL; l++) sum[t] += acc[t][l];
  }
}

HOT static void dots(const float *g, int64_t n, const float *const *s, double *sum, int nt) {
  switch (nt) {
  case 1: dots_n(g, n, s, sum, 1); break;
  case 2: dots_n(g, n, s, sum, 2); break;
  case 3: dots_n(g, n, s, sum, 3); break;
  case 4: dots_n(g, n, s, sum, 4); break;
  case 5: dots_n(g, n, s, sum, 5); break;
  case 6: dots_n(g, n, s, sum, 6); break;
  case 7: dots_n(g, n, s, sum, 7); break;
  case 8: dots_n(g, n, s, sum, 8); break;
  default: dots_n(g, n, s, sum, 9); break;
  }
}

HOT static void copy_rows(float *restrict dst, int64_t dp, const float *restrict src, int64_t sp,
                          int64_t rows, int64_t cols) {
  for (int64_t r = 0; r < rows; r++)
    for (int64_t c = 0; c < cols; c++) dst[r * dp + c] = src[r * sp + c];
}

typedef int vi16 __attribute__((vector_size(64)));
#define EVENS ((vi16){0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30})
#define ODDS ((vi16){1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31})
#define ZIP_LO ((vi16){0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23})
#define ZIP_HI ((vi16){8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31})

/* Rows of `cols` floats split into their even (e) and odd (o) elements. */
HOT static void split_rows(float *restrict e, float *restrict o, int64_t dp,
                           const float *restrict src, int64_t sp, int64_t rows, int64_t cols) {
  for (int64_t r = 0; r < rows; r++) {
    const float *s = src + r * sp;
    float *er = e + r * dp, *od = o + r * dp;
    int64_t i = 0;
    for (; 2 * i + 2 * VL <= cols; i += VL) {
      v16 lo = LOAD(s + 2 * i), hi = LOAD(s + 2 * i + VL);
      STORE(er + i, __builtin_shuffle(lo, hi, EVENS));
      STORE(od + i, __builtin_shuffle(lo, hi, ODDS));
    }
    for (; 2 * i + 1 < cols; i++) er[i] = s[2 * i], od[i] = s[2 * i + 1];
    if (2 * i < cols) er[i] = s[2 * i];
  }
}

/* The inverse of split_rows. */
HOT static void merge_rows(float *restrict dst, int64_t dp, const float *restrict e,
                           const float *restrict o, int64_t sp, int64_t rows, int64_t cols) {
  for (int64_t r = 0; r < rows; r++) {
    float *d = dst + r * dp;
    const float *er = e + r * sp, *od = o + r * sp;
    int64_t i = 0;
    for (; 2 * i + 2 * VL <= cols; i += VL) {
      v16 ev = LOAD(er + i), ov = LOAD(od + i);
      STORE(d + 2 * i, __builtin_shuffle(ev, ov, ZIP_LO));
      STORE(d + 2 * i + VL, __builtin_shuffle(ev, ov, ZIP_HI));
    }
    for (; 2 * i + 1 < cols; i++) d[2 * i] = er[i], d[2 * i + 1] = od[i];
    if (2 * i < cols) d[2 * i] = er[i];
  }
}

/* Any other stride along x: element by element. */
static void move_strided(const plan *p, float *img, float *ph, int64_t ry, int64_t a0, int64_t a1,
                         int to_phase) {
  const geom *d = p->d;
  for (int64_t rx = 0; rx < d->sx; rx++) {
    int64_t k = ry * d->sx + rx, b0, b1, s = d->sx;
    valid_range(rx - d->px, s, d->w, p->wq, &b0, &b1);
    for (int64_t a = a0; a < a1; a++) {
      float *q = ph + k * p->plane + a * p->wq;
      float *r = img + (a * d->sy + ry - d->py) * d->w + rx - d->px;
      for (int64_t b = b0; b < b1; b++)
        if (to_phase) q[b] = r[b * s];
        else r[b * s] = q[b];
    }
  }
}

/* Between a plane and its phases: `to_phase` copies input pixels into the
 * phase planes, else phase values go back to the input plane. Only the
 * pixels inside the input move; the padding stays as it was. Input rows
 * of one row phase ry are whole rows of its phase planes: a copy for
 * stride 1, an even/odd split for stride 2. */
static void move_phases(const plan *p, float *img, float *ph, int to_phase) {
  const geom *d = p->d;
  for (int64_t ry = 0; ry < d->sy; ry++) {
    int64_t a0, a1;
    valid_range(ry - d->py, d->sy, d->h, p->hq, &a0, &a1);
    if (a1 <= a0) continue;
    float *rows = img + (a0 * d->sy + ry - d->py) * d->w, *q = ph + a0 * p->wq;
    int64_t n = a1 - a0, pitch = d->sy * d->w;
    if (d->sx == 1) {
      q += ry * p->plane + d->px;
      if (to_phase) copy_rows(q, p->wq, rows, pitch, n, d->w);
      else copy_rows(rows, pitch, q, p->wq, n, d->w);
    } else if (d->sx == 2) {
      float *e = q + (ry * 2 + d->px % 2) * p->plane + d->px / 2,
            *o = q + (ry * 2 + (d->px + 1) % 2) * p->plane + (d->px + 1) / 2;
      if (to_phase) split_rows(e, o, p->wq, rows, pitch, n, d->w);
      else merge_rows(rows, pitch, e, o, p->wq, n, d->w);
    } else {
      move_strided(p, img, ph, ry, a0, a1, to_phase);
    }
  }
}

/* dy's rows into buf at pitch wq (its spare columns stay zero). */
static void spread_rows(const plan *p, const float *dy, float *buf) {
  copy_rows(buf, p->wq, dy, p->d->ow, p->d->oh, p->d->ow);
}

/* ------------------------------------------------------------ per plane */

/* Scratch of one worker: the phases of an input plane and a flat buffer
 * at pitch wq (output, dy, or one phase of dx); zeroed where padding. */
typedef struct scratch {
  float *ph, *flat;
} scratch;

static int scratch_get(const plan *p, scratch *s) {
  s->ph = calloc((size_t)(p->nph * p->plane), sizeof(float));
  s->flat = calloc((size_t)(p->lead + p->plane), sizeof(float));
  if (s->ph && s->flat) return 1;
  free(s->ph);
  free(s->flat);
  return 0;
}

static void scratch_put(scratch *s) {
  free(s->ph);
  free(s->flat);
}

/* Tap pointers of taps [t0, t0+nt) into phase planes `ph` (shift +off) or
 * into dy at `base` (shift -off, grad_input). */
static void tap_ptrs(const plan *p, const float *ph, const float *base, const int64_t *ts, int nt,
                     const float **s) {
  for (int i = 0; i < nt; i++)
    s[i] = base ? base - p->off[ts[i]] : ph + p->phase[ts[i]] * p->plane + p->off[ts[i]];
}

static void forward_plane(const plan *p, scratch *sc, const float *x, const float *wc, float b,
                          float *y) {
  const geom *d = p->d;
  int64_t n = round_vl(d->oh * p->wq);
  move_phases(p, (float *)x, sc->ph, 1);
  for (int64_t t0 = 0; t0 < p->ntaps; t0 += MAX_TAPS) {
    int nt = (int)(p->ntaps - t0 < MAX_TAPS ? p->ntaps - t0 : MAX_TAPS);
    int64_t ts[MAX_TAPS];
    const float *s[MAX_TAPS];
    for (int i = 0; i < nt; i++) ts[i] = t0 + i;
    tap_ptrs(p, sc->ph, NULL, ts, nt, s);
    taps(sc->flat, n, s, wc + t0, nt, t0 ? sc->flat : NULL, b);
  }
  copy_rows(y, d->ow, sc->flat, p->wq, d->oh, d->ow);
}

/* Phase k of dx gathers, from dy placed `lead` floats into sc->flat, the
 * taps that land on it; the phase planes serve as dx's phases. */
static void grad_input_plane(const plan *p, scratch *sc, const float *dy, const float *wc,
                             float *dx) {
  float *dyq = sc->flat + p->lead;
  spread_rows(p, dy, dyq);
  int64_t n = round_vl(p->hq * p->wq);
  for (int64_t k = 0; k < p->nph; k++) {
    float *g = sc->ph + k * p->plane;
    int64_t ts[MAX_TAPS];
    int nt = 0, started = 0;
    for (int64_t t = 0; t <= p->ntaps; t++) {
      if (t < p->ntaps && p->phase[t] != k) continue;
      if (t < p->ntaps) ts[nt++] = t;
      if (nt == MAX_TAPS || (t == p->ntaps && nt)) {
        const float *s[MAX_TAPS];
        float w[MAX_TAPS];
        tap_ptrs(p, NULL, dyq, ts, nt, s);
        for (int i = 0; i < nt; i++) w[i] = wc[ts[i]];
        taps(g, n, s, w, nt, started ? g : NULL, 0.0f);
        started = 1, nt = 0;
      }
    }
    if (!started) memset(g, 0, (size_t)n * sizeof *g);
  }
  move_phases(p, dx, sc->ph, 0);
}

static void grad_weight_plane(const plan *p, scratch *sc, const float *dy, const float *x,
                              double *sum) {
  int64_t n = round_vl(p->d->oh * p->wq);
  move_phases(p, (float *)x, sc->ph, 1);
  spread_rows(p, dy, sc->flat);
  for (int64_t t0 = 0; t0 < p->ntaps; t0 += MAX_TAPS) {
    int nt = (int)(p->ntaps - t0 < MAX_TAPS ? p->ntaps - t0 : MAX_TAPS);
    int64_t ts[MAX_TAPS];
    const float *s[MAX_TAPS];
    for (int i = 0; i < nt; i++) ts[i] = t0 + i;
    tap_ptrs(p, sc->ph, NULL, ts, nt, s);
    dots(sc->flat, n, s, sum + t0, nt);
  }
}

/* ------------------------------------------------------------ direct loops */

/* The fallback when scratch space cannot be had: loops along each row. */
typedef struct dw_job {
  const geom *d;
  const plan *p;
  const float *a, *w, *b; /* forward: x; grad_input: dy; grad_weight: dy */
  const float *x;         /* grad_weight's input */
  float *out;
} dw_job;

/* The valid output range of tap kx along a row, and its input offset. */
static void dw_tap_x(const geom *d, int64_t kx, int64_t *lo, int64_t *hi, int64_t *off) {
  *off = kx * d->dx - d->px;
  valid_range(*off, d->sx, d->w, d->ow, lo, hi);
}

/* A whole plane per call, so that the per-clone dispatch is paid once per
 * plane rather than once per short row. Stride 1 gets its own loop: it is
 * the one that vectorises with plain loads. */
HOT static void direct_forward_plane(const geom *d, const float *restrict in,
                                 const float *restrict wc, float b, float *restrict o) {
  int64_t p = d->oh * d->ow;
  for (int64_t i = 0; i < p; i++) o[i] = b;
  for (int64_t oy = 0; oy < d->oh; oy++) {
    float *restrict orow = o + oy * d->ow;
    for (int64_t ky = 0; ky < d->kh; ky++) {
      int64_t iy = oy * d->sy - d->py + ky * d->dy;
      if (iy < 0 || iy >= d->h) continue;
      const float *restrict irow = in + iy * d->w;
      for (int64_t kx = 0; kx < d->kw; kx++) {
        int64_t lo, hi, off, s = d->sx;
        float wv = wc[ky * d->kw + kx];
        dw_tap_x(d, kx, &lo, &hi, &off);
        if (s == 1)
          for (int64_t ox = lo; ox < hi; ox++) orow[ox] += wv * irow[ox + off];
        else
          for (int64_t ox = lo; ox < hi; ox++) orow[ox] += wv * irow[ox * s + off];
      }
    }
  }
}

HOT static void direct_grad_input_plane(const geom *d, const float *restrict go,
                                    const float *restrict wc, float *restrict gi) {
  memset(gi, 0, (size_t)(d->h * d->w) * sizeof *gi);
  for (int64_t oy = 0; oy < d->oh; oy++) {
    const float *restrict orow = go + oy * d->ow;
    for (int64_t ky = 0; ky < d->kh; ky++) {
      int64_t iy = oy * d->sy - d->py + ky * d->dy;
      if (iy < 0 || iy >= d->h) continue;
      float *restrict irow = gi + iy * d->w;
      for (int64_t kx = 0; kx < d->kw; kx++) {
        int64_t lo, hi, off, s = d->sx;
        float wv = wc[ky * d->kw + kx];
        dw_tap_x(d, kx, &lo, &hi, &off);
        if (s == 1)
          for (int64_t ox = lo; ox < hi; ox++) irow[ox + off] += wv * orow[ox];
        else
          for (int64_t ox = lo; ox < hi; ox++) irow[ox * s + off] += wv * orow[ox];
      }
    }
  }
}

/* sum of o[ox] * in[ox*s + off] in 8 independent lanes, so it vectorises
 * without reassociating a single chain. */
HOT static double direct_row_dot(const float *restrict o, const float *restrict in, int64_t lo,
                             int64_t hi, int64_t s, int64_t off) {
  float acc[8] = {0};
  int64_t ox = lo;
  if (s == 1)
    for (; ox + 8 <= hi; ox += 8)
      for (int l = 0; l < 8; l++) acc[l] += o[ox + l] * in[ox + l + off];
  double t = 0.0;
  for (; ox < hi; ox++) t += (double)o[ox] * in[ox * s + off];
  for (int l = 0; l < 8; l++) t += acc[l];
  return t;
}

static void direct_forward_planes(void *arg, int64_t begin, int64_t end, int worker) {
  const dw_job *j = arg;
  const geom *d = j->d;
  (void)worker;
  for (int64_t pl = begin; pl < end; pl++) {
    int64_t ch = pl % d->c;
    direct_forward_plane(d, j->a + pl * d->h * d->w, j->w + ch * d->kh * d->kw, j->b ? j->b[ch] : 0.0f,
                     j->out + pl * d->oh * d->ow);
  }
}

static void direct_grad_input_planes(void *arg, int64_t begin, int64_t end, int worker) {
  const dw_job *j = arg;
  const geom *d = j->d;
  (void)worker;
  for (int64_t pl = begin; pl < end; pl++)
    direct_grad_input_plane(d, j->a + pl * d->oh * d->ow, j->w + (pl % d->c) * d->kh * d->kw,
                        j->out + pl * d->h * d->w);
}

/* Channel by channel, each summing over the whole batch: no partial sums. */
static void direct_grad_weight_channels(void *arg, int64_t begin, int64_t end, int worker) {
  const dw_job *j = arg;
  const geom *d = j->d;
  int64_t p = d->oh * d->ow;
  (void)worker;
  for (int64_t ch = begin; ch < end; ch++)
    for (int64_t ky = 0; ky < d->kh; ky++)
      for (int64_t kx = 0; kx < d->kw; kx++) {
        int64_t lo, hi, off;
        dw_tap_x(d, kx, &lo, &hi, &off);
        double s = 0.0;
        for (int64_t n = 0; n < d->n; n++) {
          const float *go = j->a + (n * d->c + ch) * p, *in = j->x + (n * d->c + ch) * d->h * d->w;
          for (int64_t oy = 0; oy < d->oh; oy++) {
            int64_t iy = oy * d->sy - d->py + ky * d->dy;
            if (iy >= 0 && iy < d->h)
              s += direct_row_dot(go + oy * d->ow, in + iy * d->w, lo, hi, d->sx, off);
          }
        }
        j->out[(ch * d->kh + ky) * d->kw + kx] = (float)s;
      }
}


/* ------------------------------------------------------------ slices */

static void forward_planes(void *arg, int64_t begin, int64_t end, int worker) {
  const dw_job *j = arg;
  const plan *p = j->p;
  const geom *d = p->d;
  scratch sc;
  if (!scratch_get(p, &sc)) {
    direct_forward_planes(arg, begin, end, worker);
    return;
  }
  for (int64_t pl = begin; pl < end; pl++) {
    int64_t ch = pl % d->c;
    forward_plane(p, &sc, j->a + pl * d->h * d->w, j->w + ch * p->ntaps, j->b ? j->b[ch] : 0.0f,
                  j->out + pl * d->oh * d->ow);
  }
  scratch_put(&sc);
}

static void grad_input_planes(void *arg, int64_t begin, int64_t end, int worker) {
  const dw_job *j = arg;
  const plan *p = j->p;
  const geom *d = p->d;
  scratch sc;
  if (!scratch_get(p, &sc)) {
    direct_grad_input_planes(arg, begin, end, worker);
    return;
  }
  for (int64_t pl = begin; pl < end; pl++)
    grad_input_plane(p, &sc, j->a + pl * d->oh * d->ow, j->w + (pl % d->c) * p->ntaps,
                     j->out + pl * d->h * d->w);
  scratch_put(&sc);
}

/* Channel by channel, each summing over the whole batch: no partial sums. */
static void grad_weight_channels(void *arg, int64_t begin, int64_t end, int worker) {
  const dw_job *j = arg;
  const plan *p = j->p;
  const geom *d = p->d;
  scratch sc;
  double *sum = malloc((size_t)p->ntaps * sizeof *sum);
  if (!sum || !scratch_get(p, &sc)) {
    free(sum);
    direct_grad_weight_channels(arg, begin, end, worker);
    return;
  }
  for (int64_t ch = begin; ch < end; ch++) {
    for (int64_t t = 0; t < p->ntaps; t++) sum[t] = 0.0;
    for (int64_t n = 0; n < d->n; n++) {
      int64_t pl = n * d->c + ch;
      grad_weight_plane(p, &sc, j->a + pl * d->oh * d->ow, j->x + pl * d->h * d->w, sum);
    }
    for (int64_t t = 0; t < p->ntaps; t++) j->out[ch * p->ntaps + t] = (float)sum[t];
  }
  free(sum);
  scratch_put(&sc);
}

/* ------------------------------------------------------------ entry points */

/* Planes per slice: about 64K multiply-adds each. */
static int64_t grain(int64_t per) { return per >= 65536 ? 1 : 65536 / (per ? per : 1); }

/* Without the plan's few bytes, or with nothing to compute, the direct
 * loops (j->p NULL in them is never read). */
static void run(const pni_cpu_ctx *c, dw_job *j, int64_t n, int64_t per, pn_parallel_fn fast,
                pn_parallel_fn direct) {
  const geom *d = j->d;
  plan p;
  int ok = 0;
  if (d->oh * d->ow > 0 && !(ok = plan_make(d, &p))) plan_free(&p);
  j->p = ok ? &p : NULL;
  pni_cpu_parallel(c, n, grain(per), ok ? fast : direct, j);
  if (ok) plan_free(&p);
}

void pni_cpu_dw_forward(const pni_cpu_ctx *c, const pni_cpu_dw_geom *d, const float *x,
                        const float *w, const float *b, float *y) {
  dw_job j = {d, NULL, x, w, b, NULL, y};
  run(c, &j, d->n * d->c, d->oh * d->ow * d->kh * d->kw, forward_planes, direct_forward_planes);
}

void pni_cpu_dw_grad_input(const pni_cpu_ctx *c, const pni_cpu_dw_geom *d, const float *dy,
                           const float *w, float *dx) {
  dw_job j = {d, NULL, dy, w, NULL, NULL, dx};
  run(c, &j, d->n * d->c, d->oh * d->ow * d->kh * d->kw, grad_input_planes,
      direct_grad_input_planes);
}

pn_status pni_cpu_dw_grad_weight(const pni_cpu_ctx *c, const pni_cpu_dw_geom *d, const float *dy,
                                 const float *x, float *dw) {
  dw_job j = {d, NULL, dy, NULL, NULL, x, dw};
  run(c, &j, d->c, d->n * d->oh * d->ow * d->kh * d->kw, grad_weight_channels,
      direct_grad_weight_channels);
  return PN_OK;
}
