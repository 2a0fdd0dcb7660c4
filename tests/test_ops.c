/* Every core op on the cpu backend against the reference backend (the
 * oracle), on random inputs and awkward shapes: 1, primes, lengths that are
 * not a multiple of the vector width, tensors large enough to be split over
 * the thread pool, and numpy broadcasting corners. Inputs are made on the
 * reference device and moved with pn_tensor_to(); both sides then run the
 * same public op, and the results are compared by normalised error
 * max|cpu - ref| / max(1, max|ref|), or exactly where the op is exact. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "testutil.h"

#define TOL 1e-5
#define BIG (1 << 17) /* above every threading threshold of the cpu backend */
/* Outputs of 32 MiB and more are written with non-temporal stores. */
#define HUGE     ((9 << 20) + 5)
#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

typedef struct shape {
  int ndim;
  int64_t d[4];
} shape;

/* One input, on both devices. */
typedef struct pair {
  pn_tensor *ref, *cpu;
} pair;

static uint64_t rng = 12345;

static pn_device *ref_dev(void) { return tu_device("reference"); }
static pn_device *cpu_dev(void) { return tu_device("cpu"); }

static const char *shape_str(const shape *s, char *buf, size_t n) {
  pn_shape ps = pn_shape_make(s->ndim, s->d);
  return pn_shape_str(&ps, buf, n);
}

static int64_t numel(const shape *s) {
  int64_t n = 1;
  for (int i = 0; i < s->ndim; i++) n *= s->d[i];
  return n;
}

static pair pair_from_host(pn_dtype dt, const shape *s, const void *host) {
  pair p;
  p.ref = tu_check(pn_tensor_from_host(ref_dev(), dt, s->ndim, s->d, host), "from_host");
  p.cpu = tu_check(pn_tensor_to(p.ref, cpu_dev()), "pn_tensor_to(cpu)");
  assert_ptr_equal(pn_tensor_device(p.cpu), cpu_dev());
  return p;
}

static pair pair_random(const shape *s, float lo, float hi) {
  int64_t n = numel(s);
  float *x = malloc(sizeof *x * (size_t)(n ? n : 1));
  assert_non_null(x);
  tu_fill_uniform(x, n, lo, hi, &rng);
  pair p = pair_from_host(PN_F32, s, x);
  free(x);
  return p;
}

static void pair_free(pair p) {
  pn_tensor_unref(p.ref);
  pn_tensor_unref(p.cpu);
}

static void expect_same_shape(const pn_tensor *got, const pn_tensor *want, const char *what) {
  pn_shape g = pn_tensor_shape(got), w = pn_tensor_shape(want);
  if (!pn_shape_equal(&g, &w) || got->dtype != want->dtype) {
    char gs[64], ws[64];
    fail_msg("%s: cpu gave %s %s, reference %s %s", what, pn_dtype_name(got->dtype),
             pn_shape_str(&g, gs, sizeof gs), pn_dtype_name(want->dtype),
             pn_shape_str(&w, ws, sizeof ws));
  }
}

/* Takes both references. */
static void expect_close(pn_tensor *got, pn_tensor *want, double tol, const char *what) {
  tu_check(got, what);
  tu_check(want, what);
  assert_ptr_equal(pn_tensor_device(got), cpu_dev());
  assert_ptr_equal(pn_tensor_device(want), ref_dev());
  expect_same_shape(got, want, what);
  int64_t n = pn_tensor_numel(want);
  float *g = tu_host(got), *w = tu_host(want);
  double err = tu_norm_err(g, w, n);
  if (!(err <= tol)) fail_msg("%s: normalised error %.3g > %.3g", what, err, tol);
  free(g);
  free(w);
  pn_tensor_unref(got);
  pn_tensor_unref(want);
}

/* Bit-for-bit, in the tensors' own dtype. Takes both references. */
static void expect_exact(pn_tensor *got, pn_tensor *want, const char *what) {
  tu_check(got, what);
  tu_check(want, what);
  expect_same_shape(got, want, what);
  size_t bytes = pn_tensor_nbytes(want);
  unsigned char *g = malloc(bytes + 1), *w = malloc(bytes + 1);
  assert_non_null(g);
  assert_non_null(w);
  assert_int_equal(pn_tensor_read(got, g, bytes), PN_OK);
  assert_int_equal(pn_tensor_read(want, w, bytes), PN_OK);
  size_t es = pn_dtype_size(want->dtype);
  for (size_t i = 0; i < bytes; i += es)
    if (memcmp(g + i, w + i, es) != 0) fail_msg("%s: element %zu differs", what, i / es);
  free(g);
  free(w);
  pn_tensor_unref(got);
  pn_tensor_unref(want);
}

/* ------------------------------------------------------------ fill, random */

static void test_fill(void **state) {
  (void)state;
  static const shape shapes[] = {{1, {1}}, {2, {7, 13}}, {3, {97, 31, 13}}, {1, {BIG + 3}}};
  static const double values[] = {0.0, 1.0, 7.0, 42.75, 200.0};
  for (size_t s = 0; s < COUNT(shapes); s++)
    for (int dt = 0; dt < PN_DTYPE_COUNT; dt++)
      for (size_t v = 0; v < COUNT(values); v++) {
        char what[96], sh[32];
        snprintf(what, sizeof what, "fill %s %s with %g", pn_dtype_name(dt),
                 shape_str(&shapes[s], sh, sizeof sh), values[v]);
        const shape *x = &shapes[s];
        expect_exact(pn_full(cpu_dev(), dt, x->ndim, x->d, values[v]),
                     pn_full(ref_dev(), dt, x->ndim, x->d, values[v]), what);
      }
  /* Negative values, for the signed types. */
  const shape *x = &shapes[1];
  for (int dt = 0; dt < PN_U8; dt++)
    expect_exact(pn_full(cpu_dev(), dt, x->ndim, x->d, -3.5),
                 pn_full(ref_dev(), dt, x->ndim, x->d, -3.5), "fill -3.5");
}

static pn_tensor *random_of(pn_device *dev, int kind, const shape *s, uint64_t seed,
                            uint64_t counter) {
  switch (kind) {
  case PN_RANDOM_UNIFORM: return pn_rand_uniform(dev, s->ndim, s->d, -2.0, 3.0, seed, counter);
  case PN_RANDOM_NORMAL: return pn_rand_normal(dev, s->ndim, s->d, 0.5, 2.0, seed, counter);
  default: return pn_rand_bernoulli(dev, s->ndim, s->d, 0.3, seed, counter);
  }
}

static void test_random(void **state) {
  (void)state;
  static const shape shapes[] = {{1, {1}}, {1, {13}}, {2, {31, 97}}, {1, {3 * BIG + 1}}};
  for (size_t s = 0; s < COUNT(shapes); s++)
    for (int kind = 0; kind < PN_RANDOM_COUNT; kind++) {
      char what[64], sh[32];
      snprintf(what, sizeof what, "random kind %d %s", kind, shape_str(&shapes[s], sh, sizeof sh));
      expect_exact(random_of(cpu_dev(), kind, &shapes[s], 7 + s, 1000 * s),
                   random_of(ref_dev(), kind, &shapes[s], 7 + s, 1000 * s), what);
    }
}

/* The result may not depend on how many workers produced it. */
static void test_random_thread_count(void **state) {
  (void)state;
  pn_device *cpu = cpu_dev();
  assert_non_null(cpu->iface->set_threads);
  static const shape s = {1, {4 * BIG + 17}};
  assert_int_equal(cpu->iface->set_threads(cpu->ctx, 1), PN_OK);
  assert_int_equal(cpu->iface->threads(cpu->ctx), 1);
  pn_tensor *one = tu_check(random_of(cpu, PN_RANDOM_NORMAL, &s, 99, 5), "random, 1 thread");
  assert_int_equal(cpu->iface->set_threads(cpu->ctx, 2), PN_OK);
  assert_int_equal(cpu->iface->threads(cpu->ctx), 2);
  pn_tensor *two = tu_check(random_of(cpu, PN_RANDOM_NORMAL, &s, 99, 5), "random, 2 threads");
  expect_exact(two, one, "random on 1 and 2 threads");
  assert_int_equal(cpu->iface->set_threads(cpu->ctx, 0), PN_OK);
}

/* ------------------------------------------------------------ copy, cast */

static void test_copy_strided(void **state) {
  (void)state;
  static const struct {
    shape s;
    int d0, d1;
  } cases[] = {
      {{2, {97, 31}}, 0, 1},      {{3, {7, 13, 31}}, 0, 2}, {{3, {7, 13, 31}}, 1, 2},
      {{3, {7, 13, 31}}, 0, 1},   {{2, {1, 13}}, 0, 1},     {{2, {512, 300}}, 0, 1},
      {{4, {3, 5, 17, 9}}, 1, 3},
  };
  for (size_t i = 0; i < COUNT(cases); i++) {
    char what[64], sh[32];
    snprintf(what, sizeof what, "contiguous(transpose(%s, %d, %d))",
             shape_str(&cases[i].s, sh, sizeof sh), cases[i].d0, cases[i].d1);
    pair x = pair_random(&cases[i].s, -100.0f, 100.0f);
    pn_tensor *tc = tu_check(pn_transpose(x.cpu, cases[i].d0, cases[i].d1), what);
    pn_tensor *tr = tu_check(pn_transpose(x.ref, cases[i].d0, cases[i].d1), what);
    expect_exact(pn_contiguous(tc), pn_contiguous(tr), what);
    expect_exact(pn_copy(tc), pn_copy(tr), what);
    pn_tensor_unref(tc);
    pn_tensor_unref(tr);
    pair_free(x);
  }
}

/* Values every dtype holds (0..250), with fractions so that float to
 * integer conversion truncates. */
static pair pair_castable(pn_dtype dt, const shape *s) {
  int64_t n = numel(s);
  float *v = malloc(sizeof *v * (size_t)n);
  assert_non_null(v);
  tu_fill_uniform(v, n, 0.0f, 250.0f, &rng);
  pair f = pair_from_host(PN_F32, s, v);
  free(v);
  if (dt == PN_F32) return f;
  pair p = {tu_check(pn_cast(f.ref, dt), "cast input"), NULL};
  p.cpu = tu_check(pn_tensor_to(p.ref, cpu_dev()), "pn_tensor_to(cpu)");
  pair_free(f);
  return p;
}

static void test_cast(void **state) {
  (void)state;
  static const shape shapes[] = {{1, {1}}, {2, {13, 31}}, {1, {BIG + 7}}};
  for (size_t s = 0; s < COUNT(shapes); s++)
    for (int from = 0; from < PN_DTYPE_COUNT; from++)
      for (int to = 0; to < PN_DTYPE_COUNT; to++) {
        char what[64], sh[32];
        snprintf(what, sizeof what, "cast %s -> %s %s", pn_dtype_name(from), pn_dtype_name(to),
                 shape_str(&shapes[s], sh, sizeof sh));
        pair x = pair_castable(from, &shapes[s]);
        expect_exact(pn_cast(x.cpu, to), pn_cast(x.ref, to), what);
        if (shapes[s].ndim == 2) { /* a strided source */
          pn_tensor *tc = pn_transpose(x.cpu, 0, 1), *tr = pn_transpose(x.ref, 0, 1);
          expect_exact(pn_cast(tc, to), pn_cast(tr, to), what);
          pn_tensor_unref(tc);
          pn_tensor_unref(tr);
        }
        pair_free(x);
      }
}

/* ------------------------------------------------------------ unary */

static void unary_domain(int kind, float *lo, float *hi) {
  *lo = -5.0f;
  *hi = 5.0f;
  if (kind == PN_UNARY_LOG || kind == PN_UNARY_SQRT) *lo = 0.01f, *hi = 50.0f;
  if (kind == PN_UNARY_RECIP) *lo = 0.05f, *hi = 20.0f;
  if (kind == PN_UNARY_EXP) *lo = -80.0f, *hi = 80.0f;
  if (kind == PN_UNARY_SIGMOID || kind == PN_UNARY_TANH) *lo = -30.0f, *hi = 30.0f;
}

static pn_tensor *unary_of(int kind, pn_tensor *x) {
  return kind == PN_UNARY_AFFINE ? pn_affine(x, 2.5, -0.75) : pn_unary(kind, x);
}

static void check_unary(int kind, const shape *s, float lo, float hi) {
  char what[64], sh[32];
  snprintf(what, sizeof what, "unary kind %d %s in [%g, %g]", kind, shape_str(s, sh, sizeof sh), lo,
           hi);
  pair x = pair_random(s, lo, hi);
  if (kind == PN_UNARY_SIGN || kind == PN_UNARY_STEP)
    expect_exact(unary_of(kind, x.cpu), unary_of(kind, x.ref), what);
  else
    expect_close(unary_of(kind, x.cpu), unary_of(kind, x.ref), TOL, what);
  pair_free(x);
}

static void test_unary(void **state) {
  (void)state;
  static const shape shapes[] = {{1, {1}}, {1, {7}}, {2, {13, 31}}, {2, {97, 13}}, {1, {BIG + 5}}};
  for (int kind = 0; kind < PN_UNARY_COUNT; kind++) {
    float lo, hi;
    unary_domain(kind, &lo, &hi);
    for (size_t s = 0; s < COUNT(shapes); s++) check_unary(kind, &shapes[s], lo, hi);
  }
  /* Where approximations are weakest: tiny arguments and the edges of
   * float's range. */
  static const shape s = {2, {31, 17}};
  check_unary(PN_UNARY_TANH, &s, -0.1f, 0.1f);
  check_unary(PN_UNARY_SIGMOID, &s, -100.0f, 100.0f);
  check_unary(PN_UNARY_EXP, &s, -110.0f, -80.0f);
  check_unary(PN_UNARY_EXP, &s, 85.0f, 88.7f);
  check_unary(PN_UNARY_SIGN, &s, -1e-3f, 1e-3f);
}

/* Specials must survive: infinities and NaN in, the same class out. */
static void test_unary_specials(void **state) {
  (void)state;
  const float v[] = {0.0f, -0.0f, INFINITY, -INFINITY, NAN, 1e-30f, -1e-30f, 88.8f, -120.0f};
  const shape s = {1, {COUNT(v)}};
  pair x = pair_from_host(PN_F32, &s, v);
  static const int kinds[] = {PN_UNARY_EXP,  PN_UNARY_SIGMOID, PN_UNARY_TANH, PN_UNARY_RELU,
                              PN_UNARY_STEP, PN_UNARY_SIGN,    PN_UNARY_ABS};
  for (size_t k = 0; k < COUNT(kinds); k++) {
    pn_tensor *gc = tu_check(pn_unary(kinds[k], x.cpu), "unary");
    pn_tensor *wr = tu_check(pn_unary(kinds[k], x.ref), "unary");
    float *g = tu_host(gc), *w = tu_host(wr);
    for (size_t i = 0; i < COUNT(v); i++) {
      if (isnan(w[i]) || isinf(w[i]) || w[i] == 0.0f) {
        if (!(isnan(g[i]) == isnan(w[i]) && (isnan(w[i]) || g[i] == w[i])))
          fail_msg("unary kind %d of %g: cpu %g, reference %g", kinds[k], v[i], g[i], w[i]);
      } else if (fabsf(g[i] - w[i]) > 1e-6f * fmaxf(1.0f, fabsf(w[i]))) {
        fail_msg("unary kind %d of %g: cpu %g, reference %g", kinds[k], v[i], g[i], w[i]);
      }
    }
    free(g);
    free(w);
    pn_tensor_unref(gc);
    pn_tensor_unref(wr);
  }
  pair_free(x);
}

/* ------------------------------------------------------------ binary */

typedef struct shape_pair {
  shape a, b;
} shape_pair;

static const shape_pair binary_shapes[] = {
    {{1, {7}}, {1, {7}}},                  /* same shape, shorter than a vector */
    {{1, {1}}, {1, {97}}},                 /* scalar on the left */
    {{1, {97}}, {1, {1}}},                 /* scalar on the right */
    {{2, {13, 1}}, {2, {1, 31}}},          /* outer product */
    {{2, {31, 13}}, {1, {13}}},            /* row broadcast [N,C] + [C] */
    {{1, {13}}, {2, {31, 13}}},            /* ... mirrored */
    {{2, {31, 13}}, {2, {31, 1}}},         /* column broadcast */
    {{4, {2, 3, 5, 7}}, {2, {5, 1}}},      /* rank mismatch */
    {{3, {5, 1, 7}}, {2, {3, 1}}},         /* both broadcast */
    {{2, {1, 1}}, {1, {1}}},               /* all ones */
    {{3, {3, 1, 1}}, {3, {1, 4, 1}}},      /* ones in between */
    {{2, {97, 31}}, {2, {97, 31}}},        /* primes */
    {{2, {300, 1001}}, {1, {1001}}},       /* large row broadcast */
    {{2, {300, 1001}}, {2, {300, 1}}},     /* large column broadcast */
    {{1, {BIG + 3}}, {1, {1}}},            /* large scalar */
    {{1, {BIG + 3}}, {1, {BIG + 3}}},      /* large same shape */
    {{3, {64, 3, 1001}}, {3, {64, 1, 1}}}, /* large, inner broadcast */
};

/* EQ and GT need ties and both orders: draw from a few integers. */
static pair binary_input(int kind, const shape *s, int which) {
  if (kind == PN_BINARY_EQ || kind == PN_BINARY_GT) {
    int64_t n = numel(s);
    float *v = malloc(sizeof *v * (size_t)n);
    assert_non_null(v);
    tu_fill_uniform(v, n, 0.0f, 3.0f, &rng);
    for (int64_t i = 0; i < n; i++) v[i] = floorf(v[i]);
    pair p = pair_from_host(PN_F32, s, v);
    free(v);
    return p;
  }
  if (kind == PN_BINARY_DIV && which == 1) return pair_random(s, 0.5f, 4.0f);
  return pair_random(s, -10.0f, 10.0f);
}

static void test_binary(void **state) {
  (void)state;
  for (int kind = 0; kind < PN_BINARY_COUNT; kind++)
    for (size_t i = 0; i < COUNT(binary_shapes); i++) {
      char what[96], as[32], bs[32];
      snprintf(what, sizeof what, "binary kind %d %s x %s", kind,
               shape_str(&binary_shapes[i].a, as, sizeof as),
               shape_str(&binary_shapes[i].b, bs, sizeof bs));
      pair a = binary_input(kind, &binary_shapes[i].a, 0);
      pair b = binary_input(kind, &binary_shapes[i].b, 1);
      pn_tensor *got = pn_binary(kind, a.cpu, b.cpu), *want = pn_binary(kind, a.ref, b.ref);
      if (kind == PN_BINARY_EQ || kind == PN_BINARY_GT)
        expect_exact(got, want, what);
      else
        expect_close(got, want, TOL, what);
      pair_free(a);
      pair_free(b);
    }
}

/* Outputs too large for the caches take the streaming-store path. */
static void test_huge_outputs(void **state) {
  (void)state;
  static const shape flat = {1, {HUGE}}, one = {1, {1}};
  static const shape rows = {2, {(HUGE + 1000) / 1001, 1001}}, row = {1, {1001}};
  for (int kind = 0; kind < PN_BINARY_COUNT; kind++) {
    char what[64];
    snprintf(what, sizeof what, "huge binary kind %d", kind);
    pair x = binary_input(kind, &flat, 0), y = binary_input(kind, &flat, 1);
    expect_exact(pn_binary(kind, x.cpu, y.cpu), pn_binary(kind, x.ref, y.ref), what);
    pair_free(x);
    pair_free(y);
  }
  pair a = pair_random(&flat, -3.0f, 3.0f), s = pair_random(&one, -3.0f, 3.0f);
  expect_close(pn_mul(a.cpu, s.cpu), pn_mul(a.ref, s.ref), TOL, "huge mul by scalar");
  expect_close(pn_sub(s.cpu, a.cpu), pn_sub(s.ref, a.ref), TOL, "huge scalar minus");
  expect_close(pn_exp(a.cpu), pn_exp(a.ref), TOL, "huge exp");
  expect_exact(pn_unary(PN_UNARY_STEP, a.cpu), pn_unary(PN_UNARY_STEP, a.ref), "huge step");
  expect_exact(pn_full(cpu_dev(), PN_F32, 1, flat.d, 0.25),
               pn_full(ref_dev(), PN_F32, 1, flat.d, 0.25), "huge fill");
  pair_free(a);
  pair_free(s);
  pair m = pair_random(&rows, -3.0f, 3.0f), r = pair_random(&row, -3.0f, 3.0f);
  expect_close(pn_add(m.cpu, r.cpu), pn_add(m.ref, r.ref), TOL, "huge row broadcast");
  pair_free(m);
  pair_free(r);
}

/* ------------------------------------------------------------ matmul */

static void test_matmul(void **state) {
  (void)state;
  static const int64_t mkn[][3] = {{1, 1, 1},  {7, 13, 31},   {97, 31, 13},   {1, 97, 1},
                                   {31, 1, 7}, {64, 128, 96}, {257, 129, 65}, {5, 300, 2}};
  for (size_t i = 0; i < COUNT(mkn); i++)
    for (int ta = 0; ta < 2; ta++)
      for (int tb = 0; tb < 2; tb++) {
        int64_t m = mkn[i][0], k = mkn[i][1], n = mkn[i][2];
        shape sa = {2, {ta ? k : m, ta ? m : k}}, sb = {2, {tb ? n : k, tb ? k : n}};
        char what[96];
        snprintf(what, sizeof what, "matmul m=%lld k=%lld n=%lld trans %d %d", (long long)m,
                 (long long)k, (long long)n, ta, tb);
        pair a = pair_random(&sa, -1.0f, 1.0f), b = pair_random(&sb, -1.0f, 1.0f);
        expect_close(pn_matmul(a.cpu, b.cpu, ta, tb), pn_matmul(a.ref, b.ref, ta, tb),
                     1e-4 * sqrt((double)k), what);
        pair_free(a);
        pair_free(b);
      }
}

/* Views that BLAS reads in place (a transposed operand). */
static void test_matmul_views(void **state) {
  (void)state;
  shape sa = {2, {31, 7}}, sb = {2, {13, 31}};
  pair a = pair_random(&sa, -1.0f, 1.0f), b = pair_random(&sb, -1.0f, 1.0f);
  pn_tensor *act = pn_transpose(a.cpu, 0, 1), *art = pn_transpose(a.ref, 0, 1);
  pn_tensor *bct = pn_transpose(b.cpu, 0, 1), *brt = pn_transpose(b.ref, 0, 1);
  expect_close(pn_matmul(act, bct, 0, 0), pn_matmul(art, brt, 0, 0), 1e-4 * sqrt(31.0),
               "matmul of transposed views");
  pn_tensor *ts[] = {act, art, bct, brt};
  for (size_t i = 0; i < COUNT(ts); i++) pn_tensor_unref(ts[i]);
  pair_free(a);
  pair_free(b);
}

/* ------------------------------------------------------------ reduce */

static void check_reduce(const shape *s, uint32_t axes, float lo, float hi) {
  pair x = pair_random(s, lo, hi);
  for (int kind = 0; kind < PN_REDUCE_COUNT; kind++)
    for (int keep = 0; keep < 2; keep++) {
      char what[96], sh[32];
      snprintf(what, sizeof what, "reduce kind %d of %s axes 0x%x keepdim %d", kind,
               shape_str(s, sh, sizeof sh), axes, keep);
      pn_tensor *got = pn_reduce(kind, x.cpu, axes, keep);
      pn_tensor *want = pn_reduce(kind, x.ref, axes, keep);
      if (kind == PN_REDUCE_MAX || kind == PN_REDUCE_MIN)
        expect_exact(got, want, what);
      else
        expect_close(got, want, TOL, what);
    }
  pair_free(x);
}

static void test_reduce(void **state) {
  (void)state;
  static const shape small = {3, {7, 13, 31}};
  for (uint32_t axes = 1; axes < 8; axes++) check_reduce(&small, axes, -1.0f, 1.0f);
  static const shape four = {4, {3, 5, 4, 6}};
  for (uint32_t axes = 1; axes < 16; axes++) check_reduce(&four, axes, -1.0f, 1.0f);
  static const struct {
    shape s;
    uint32_t axes;
  } cases[] = {
      {{1, {1}}, 1},          {{1, {97}}, 1},          {{2, {1, 13}}, 1},
      {{2, {13, 1}}, 2},      {{2, {300, 1001}}, 1},   {{2, {300, 1001}}, 2},
      {{2, {300, 1001}}, 3},  {{2, {1, 300007}}, 2},   {{2, {3, 300007}}, 3},
      {{3, {64, 33, 65}}, 5}, {{3, {2, 70001, 3}}, 2}, {{4, {16, 8, 30, 30}}, 13},
  };
  for (size_t i = 0; i < COUNT(cases); i++) check_reduce(&cases[i].s, cases[i].axes, -1.0f, 1.0f);
  /* A mean of values far from zero: the sum is large, the result is not. */
  static const shape offset = {2, {17, 50001}};
  check_reduce(&offset, 2, 999.0f, 1001.0f);
}

/* ------------------------------------------------------------ softmax */

static void check_softmax(const shape *s, int axis, float lo, float hi) {
  pair x = pair_random(s, lo, hi);
  char what[96], sh[32];
  snprintf(what, sizeof what, "softmax of %s axis %d in [%g, %g]", shape_str(s, sh, sizeof sh),
           axis, lo, hi);
  expect_close(pn_softmax(x.cpu, axis), pn_softmax(x.ref, axis), TOL, what);
  snprintf(what, sizeof what, "log_softmax of %s axis %d in [%g, %g]", shape_str(s, sh, sizeof sh),
           axis, lo, hi);
  expect_close(pn_log_softmax(x.cpu, axis), pn_log_softmax(x.ref, axis), TOL, what);
  pair_free(x);
}

static void test_softmax(void **state) {
  (void)state;
  static const shape small = {3, {7, 13, 31}};
  for (int axis = 0; axis < 3; axis++) check_softmax(&small, axis, -10.0f, 10.0f);
  check_softmax(&small, -1, -10.0f, 10.0f);
  static const struct {
    shape s;
    int axis;
  } cases[] = {
      {{1, {1}}, 0},          {{2, {1, 97}}, 1},     {{2, {97, 1}}, 1},
      {{2, {97, 1}}, 0},      {{2, {512, 1000}}, 1}, {{2, {512, 1000}}, 0},
      {{3, {4, 300, 70}}, 1}, {{2, {2, 70001}}, 1},  {{4, {8, 10, 17, 17}}, 1},
  };
  for (size_t i = 0; i < COUNT(cases); i++)
    check_softmax(&cases[i].s, cases[i].axis, -10.0f, 10.0f);
  /* Large logits: only a max-shifted softmax stays finite. */
  static const shape wide = {2, {13, 31}};
  check_softmax(&wide, 1, 500.0f, 1000.0f);
  check_softmax(&wide, 0, -1000.0f, -500.0f);
}

int main(void) {
  /* Another input stream, to shake out rare disagreements: PN_TEST_SEED=n. */
  const char *seed = getenv("PN_TEST_SEED");
  if (seed) rng = strtoull(seed, NULL, 10);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_fill),
      cmocka_unit_test(test_random),
      cmocka_unit_test(test_random_thread_count),
      cmocka_unit_test(test_copy_strided),
      cmocka_unit_test(test_cast),
      cmocka_unit_test(test_unary),
      cmocka_unit_test(test_unary_specials),
      cmocka_unit_test(test_binary),
      cmocka_unit_test(test_huge_outputs),
      cmocka_unit_test(test_matmul),
      cmocka_unit_test(test_matmul_views),
      cmocka_unit_test(test_reduce),
      cmocka_unit_test(test_softmax),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
