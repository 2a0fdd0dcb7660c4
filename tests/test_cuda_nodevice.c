/* The cuda backend without a GPU. The plugin opens the driver once per
 * process, so each case runs in its own process, named by argv[1] (the
 * shell test tests/cuda_nodevice.sh sets PLUGNET_LIBCUDA for each):
 *
 *   default   PLUGNET_LIBCUDA unset: the system's libcuda.so.1, absent here
 *             (skipped where the driver is installed)
 *   missing   PLUGNET_LIBCUDA names a file that does not exist
 *   nodevice  the fake driver (tests/fakecuda) with cuInit failing
 *   zero      the fake driver reporting no devices
 *   device    the fake driver with two devices over host memory: the
 *             allocator, copies, fills and the kernel path failing cleanly
 *   emulate   the fake driver running kernels as host code: every op the
 *             backend launches against the reference backend
 *   gpu       the same comparisons on a real GPU through the system's
 *             driver (skipped, 77, where cuda:0 is unavailable)
 *
 * In every case the device registers, its probe says why it cannot run in
 * one line, and the cpu backend still works. */
#include <dlfcn.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "cuda_alloc.h"
#include "fakecuda/fakecuda.h"
#include "testutil.h"

static const char *mode;
static struct fakecuda_counts *counts; /* the fake's, in device mode */

static pn_device *device(const char *name) {
  pn_device *d = NULL;
  if (pn_device_get(name, &d) != PN_OK) fail_msg("pn_device_get(%s): %s", name, pn_last_error());
  return d;
}

static pn_status probe(pn_device *d, char *why, size_t n) {
  assert_non_null(d->iface->probe);
  why[0] = '\0';
  return d->iface->probe(d->ctx, why, n);
}

static int have_kernels(void) { return pn_op_has_kernel("cuda", PN_OP_COPY); }

static void expect_contains(const char *text, const char *want) {
  if (!strstr(text, want)) fail_msg("'%s' does not contain '%s'", text, want);
}

/* ------------------------------------------------------------ every mode */

static const char *expected_why(void) {
  if (strcmp(mode, "default") == 0)
    return "no CUDA device: libcuda.so.1 not found (the NVIDIA driver is not installed)";
  if (strcmp(mode, "missing") == 0) return "no CUDA device: ";
  if (strcmp(mode, "nodevice") == 0)
    return "no CUDA device: cuInit failed: CUDA_ERROR_NO_DEVICE: no CUDA-capable device is "
           "detected";
  if (strcmp(mode, "zero") == 0) return "no CUDA device found";
  return have_kernels() ? "" : "built without CUDA kernels (configure found no nvcc)";
}

static void test_registers_and_probes(void **state) {
  (void)state;
  char why[256];
  pn_device *d = device("cuda");
  assert_string_equal(d->name, "cuda:0");
  assert_string_equal(d->backend, "cuda");
  assert_false(pn_device_is_host(d));
  pn_status s = probe(d, why, sizeof why);
  const char *want = expected_why();
  if (!*want) {
    assert_int_equal(s, PN_OK);
    assert_string_equal(why, "");
  } else {
    assert_int_not_equal(s, PN_OK);
    expect_contains(why, want);
    assert_null(strchr(why, '\n'));
  }
  if (strcmp(mode, "missing") == 0) expect_contains(why, "not found (PLUGNET_LIBCUDA)");
}

static void test_describe(void **state) {
  (void)state;
  char buf[256] = "";
  pn_device *d = device("cuda");
  d->iface->describe(d->ctx, buf, sizeof buf);
  if (strcmp(mode, "device") == 0) {
    expect_contains(buf, "Fake CUDA Device 0, sm_80, 4 SMs, 1.0 GiB, PCI 0000:00:00.0");
    expect_contains(buf, have_kernels() ? "PTX compute_" : "no kernels");
  } else {
    expect_contains(buf, "driver API via dlopen(");
  }
}

static void test_cpu_still_works(void **state) {
  (void)state;
  const int64_t shape[] = {3};
  const float x[] = {1, -2, 3};
  pn_tensor *t = tu_check(pn_tensor_from_host(device("cpu"), PN_F32, 1, shape, x), "from_host");
  pn_tensor *r = tu_check(pn_relu(t), "relu");
  assert_float_equal(pn_tensor_get_f32(r, 1), 0.0f, 0.0f);
  assert_float_equal(pn_tensor_get_f32(r, 2), 3.0f, 0.0f);
  pn_tensor_unref(r);
  pn_tensor_unref(t);
}

/* ------------------------------------------------------------ no device */

static void test_alloc_fails_cleanly(void **state) {
  (void)state;
  const int64_t shape[] = {4};
  pn_tensor *t = pn_tensor_new(device("cuda"), PN_F32, 1, shape);
  assert_null(t);
  assert_true(strlen(pn_last_error()) > 0);
  pn_tensor *c = tu_check(pn_zeros(device("cpu"), 1, shape), "zeros");
  assert_null(pn_tensor_to(c, device("cuda")));
  pn_tensor_unref(c);
}

/* ------------------------------------------------------------ fake device */

static void test_two_devices(void **state) {
  (void)state;
  char buf[256] = "";
  pn_device *d1 = device("cuda:1");
  assert_string_equal(d1->backend, "cuda");
  d1->iface->describe(d1->ctx, buf, sizeof buf);
  expect_contains(buf, "Fake CUDA Device 1");
}

static void test_size_classes(void **state) {
  (void)state;
  int bin = -1, seen[PNI_CUDA_BINS] = {0};
  size_t last = 0;
  assert_int_equal(pni_cuda_size_class(1, &bin), PNI_CUDA_MIN_CLASS);
  for (size_t n = 1; n < ((size_t)1 << 26); n += n / 3 + 1) {
    size_t c = pni_cuda_size_class(n, &bin);
    assert_true(c >= n);
    assert_true(c <= PNI_CUDA_MIN_CLASS || c - n < c / 4);
    assert_true(bin >= 0 && bin < PNI_CUDA_BINS);
    if (c != last) {
      assert_int_equal(seen[bin], 0); /* a bin holds one class */
      seen[bin] = 1;
    }
    last = c;
  }
  assert_int_equal(pni_cuda_size_class(SIZE_MAX, &bin), 0);
}

static void *dev_alloc(pn_device *d, size_t n) {
  void *m = d->iface->alloc(d->ctx, n);
  if (!m) fail_msg("alloc(%zu): %s", n, pn_last_error());
  return m;
}

static void test_allocator_reuses_blocks(void **state) {
  (void)state;
  pn_device *d = device("cuda");
  void *a = dev_alloc(d, 1000);
  long allocs = counts->mem_alloc, frees = counts->mem_free;
  d->iface->free(d->ctx, a);
  void *b = dev_alloc(d, 1000);
  assert_ptr_equal(a, b);
  d->iface->free(d->ctx, b);
  void *c = dev_alloc(d, 1010); /* the same class (1024) */
  assert_ptr_equal(a, c);
  assert_int_equal(counts->mem_alloc, allocs);
  void *e = dev_alloc(d, 5000); /* another class: a new block */
  assert_ptr_not_equal(e, c);
  assert_int_equal(counts->mem_alloc, allocs + 1);
  d->iface->free(d->ctx, c);
  d->iface->free(d->ctx, e);
  assert_int_equal(counts->mem_free, frees); /* freed blocks stay cached */
}

/* Out of memory with blocks cached: they go back to the driver and the
 * allocation is retried. */
static void test_allocator_trims_when_out_of_memory(void **state) {
  (void)state;
  char limit[32];
  pn_device *d = device("cuda");
  void *big = dev_alloc(d, 600 << 10);
  d->iface->free(d->ctx, big);
  long frees = counts->mem_free;
  snprintf(limit, sizeof limit, "%ld", counts->live_bytes + (200 << 10));
  setenv("FAKECUDA_MEMLIMIT", limit, 1);
  void *other = d->iface->alloc(d->ctx, 700 << 10);
  unsetenv("FAKECUDA_MEMLIMIT");
  assert_non_null(other);
  assert_true(counts->mem_free > frees);
  d->iface->free(d->ctx, other);
}

static float *pattern(int64_t n) {
  float *x = malloc(sizeof *x * (size_t)n);
  assert_non_null(x);
  for (int64_t i = 0; i < n; i++) x[i] = (float)(i % 1000) * 0.5f - 7.0f;
  return x;
}

/* cpu -> cuda -> cpu; more than two staging buffers' worth, so the copy
 * runs in pipelined chunks. */
static void roundtrip(pn_device *cuda, int64_t n) {
  float *x = pattern(n), *back = malloc(sizeof *back * (size_t)n);
  assert_non_null(back);
  pn_tensor *h = tu_check(pn_tensor_from_host(device("cpu"), PN_F32, 1, &n, x), "from_host");
  pn_tensor *g = tu_check(pn_tensor_to(h, cuda), "to cuda");
  assert_ptr_equal(pn_tensor_device(g), cuda);
  assert_null(pn_tensor_data(g)); /* not host accessible */
  pn_tensor *h2 = tu_check(pn_tensor_to(g, device("cpu")), "to cpu");
  assert_memory_equal(pn_tensor_data(h2), x, sizeof *x * (size_t)n);
  assert_int_equal(pn_tensor_read(g, back, sizeof *back * (size_t)n), PN_OK);
  assert_memory_equal(back, x, sizeof *x * (size_t)n);
  assert_float_equal(pn_tensor_get_f32(g, n - 1), x[n - 1], 0.0f);
  pn_tensor_unref(h2);
  pn_tensor_unref(g);
  pn_tensor_unref(h);
  free(back);
  free(x);
}

static void test_roundtrip_staged(void **state) {
  (void)state;
  long async = counts->async;
  roundtrip(device("cuda"), (int64_t)3 * (1 << 20) + 7);
  assert_true(counts->async - async >= 6); /* 12 MB up and down in 4 MiB chunks */
  assert_true(counts->host_alloc >= 2);
}

/* cuda:1 starts with pinned memory refused: copies are synchronous. */
static void test_roundtrip_unpinned(void **state) {
  (void)state;
  long async = counts->async, htod = counts->htod;
  setenv("FAKECUDA_NOPINNED", "1", 1);
  roundtrip(device("cuda:1"), 1000);
  unsetenv("FAKECUDA_NOPINNED");
  assert_int_equal(counts->async, async);
  assert_true(counts->htod > htod);
}

static void test_roundtrip_i64(void **state) {
  (void)state;
  const int64_t shape[] = {2, 3};
  const int64_t x[] = {-1, 0, 1, INT64_MAX, INT64_MIN, 42};
  int64_t back[6];
  pn_tensor *g = tu_check(pn_tensor_from_host(device("cuda"), PN_I64, 2, shape, x), "from_host");
  assert_int_equal(pn_tensor_read(g, back, sizeof back), PN_OK);
  assert_memory_equal(back, x, sizeof x);
  pn_tensor_unref(g);
}

static void expect_all(pn_tensor *t, float v) {
  float *h = tu_host(t);
  for (int64_t i = 0; i < pn_tensor_numel(t); i++) assert_float_equal(h[i], v, 0.0f);
  free(h);
}

/* Fills that are a repeated byte or word run as driver memsets. */
static void test_fill_by_memset(void **state) {
  (void)state;
  const int64_t shape[] = {5, 7};
  long memsets = counts->memset;
  pn_tensor *z = tu_check(pn_zeros(device("cuda"), 2, shape), "zeros");
  pn_tensor *f = tu_check(pn_full(device("cuda"), PN_F32, 2, shape, 2.5), "full");
  expect_all(z, 0.0f);
  expect_all(f, 2.5f);
  if (have_kernels()) assert_int_equal(counts->memset, memsets + 2);
  pn_tensor_unref(z);
  pn_tensor_unref(f);
}

/* A contiguous copy is a driver memcpy. Built without kernels the backend
 * has no copy at all (and its probe says it cannot run). */
static void test_copy_on_device(void **state) {
  (void)state;
  if (!have_kernels()) skip();
  const int64_t n = 300;
  float *x = pattern(n);
  long dtod = counts->dtod;
  pn_tensor *g = tu_check(pn_tensor_from_host(device("cuda"), PN_F32, 1, &n, x), "from_host");
  pn_tensor *c = tu_check(pn_copy(g), "copy");
  assert_ptr_equal(pn_tensor_device(c), device("cuda"));
  float *h = tu_host(c);
  assert_memory_equal(h, x, sizeof *x * (size_t)n);
  assert_int_equal(counts->dtod, dtod + 1);
  free(h);
  pn_tensor_unref(c);
  pn_tensor_unref(g);
  free(x);
}

/* The fake cannot run kernels: an op that needs one fails with the
 * driver's message, and nothing crashes. */
static void test_kernel_failure_is_an_error(void **state) {
  (void)state;
  if (!have_kernels()) skip();
  const int64_t shape[] = {4};
  long launches = counts->launch;
  pn_tensor *g = tu_check(pn_zeros(device("cuda"), 1, shape), "zeros");
  assert_null(pn_relu(g));
  expect_contains(pn_last_error(), "cuLaunchKernel");
  expect_contains(pn_last_error(), "CUDA_ERROR_NOT_SUPPORTED");
  assert_int_equal(counts->launch, launches + 1);
  pn_tensor_unref(g);
}

static void test_synchronize(void **state) {
  (void)state;
  long syncs = counts->sync;
  assert_int_equal(pn_device_synchronize(device("cuda")), PN_OK);
  assert_true(counts->sync > syncs);
}

/* ------------------------------------------------------------ emulated kernels */

/* With FAKECUDA_EMULATE=1 the fake runs each kernel as host code reading
 * its arguments as kernels.cu declares them: these compare the cuda
 * backend, launchers included, with the reference backend op by op. */

static pn_tensor *on_ref_random(int ndim, const int64_t *shape, float lo, float hi) {
  static uint64_t rng = 99;
  return tu_random(device("reference"), ndim, shape, lo, hi, &rng);
}

static pn_tensor *to_cuda(pn_tensor *t) { return tu_check(pn_tensor_to(t, device("cuda")), "to"); }

/* Exact for integers; for floats NaN equals NaN and the normalised error
 * is at most tol. */
static void expect_close(pn_tensor *got_cuda, pn_tensor *want, double tol, const char *what) {
  pn_shape g = pn_tensor_shape(got_cuda), w = pn_tensor_shape(want);
  assert_ptr_equal(pn_tensor_device(got_cuda), device("cuda"));
  if (!pn_shape_equal(&g, &w) || got_cuda->dtype != want->dtype) fail_msg("%s: shape/dtype", what);
  pn_tensor *back = tu_check(pn_tensor_to(got_cuda, device("reference")), "back");
  const void *a = pn_tensor_data(back), *b = pn_tensor_data(want);
  int64_t n = pn_tensor_numel(want);
  if (want->dtype != PN_F32) {
    if (memcmp(a, b, pn_tensor_nbytes(want)) != 0) fail_msg("%s: integers differ", what);
  } else {
    const float *x = a, *y = b;
    double scale = 1.0, err = 0.0;
    for (int64_t i = 0; i < n; i++) {
      if (isnan(x[i]) && isnan(y[i])) continue;
      if (isnan(x[i]) != isnan(y[i])) fail_msg("%s: NaN at %lld", what, (long long)i);
      err = fmax(err, fabs((double)x[i] - y[i]));
      scale = fmax(scale, fabs((double)y[i]));
    }
    if (err / scale > tol) fail_msg("%s: error %g", what, err / scale);
  }
  pn_tensor_unref(back);
}

static void test_emulated_unary(void **state) {
  (void)state;
  const int64_t shape[] = {5, 41};
  pn_shape s = pn_shape_make(2, shape);
  pn_tensor *x = on_ref_random(2, shape, -3.0f, 3.0f), *xc = to_cuda(x);
  for (int kind = 0; kind < PN_UNARY_COUNT; kind++) {
    char what[32];
    pn_op_params p = {.kind = kind, .alpha = -0.5, .beta = 1.5};
    pn_tensor *want = tu_check(pn_op_run(PN_OP_UNARY, &p, &x, 1, &s, PN_F32), "ref");
    pn_tensor *got = tu_check(pn_op_run(PN_OP_UNARY, &p, &xc, 1, &s, PN_F32), "cuda");
    snprintf(what, sizeof what, "unary kind %d", kind);
    expect_close(got, want, 1e-5, what);
    pn_tensor_unref(got);
    pn_tensor_unref(want);
  }
  pn_tensor_unref(xc);
  pn_tensor_unref(x);
}

/* Same shapes (the flat kernel) and numpy broadcasting (the strided one). */
static void test_emulated_binary(void **state) {
  (void)state;
  static const struct {
    int na, nb;
    int64_t a[3], b[3];
  } cases[] = {
      {2, 2, {4, 5}, {4, 5}},
      {3, 2, {3, 1, 5}, {4, 5}},
      {2, 1, {4, 5}, {1}},
      {1, 2, {5}, {4, 1}},
  };
  for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
    pn_tensor *a = on_ref_random(cases[c].na, cases[c].a, -2.0f, 2.0f);
    pn_tensor *b = on_ref_random(cases[c].nb, cases[c].b, 0.5f, 2.0f);
    pn_tensor *ac = to_cuda(a), *bc = to_cuda(b);
    for (int kind = 0; kind < PN_BINARY_COUNT; kind++) {
      char what[48];
      pn_tensor *want = tu_check(pn_binary(kind, a, b), "ref");
      pn_tensor *got = tu_check(pn_binary(kind, ac, bc), "cuda");
      snprintf(what, sizeof what, "binary kind %d, case %zu", kind, c);
      expect_close(got, want, 1e-6, what);
      pn_tensor_unref(got);
      pn_tensor_unref(want);
    }
    pn_tensor_unref(ac), pn_tensor_unref(bc), pn_tensor_unref(a), pn_tensor_unref(b);
  }
}

/* A transposed view made contiguous, and casts with NaN, out-of-range and
 * negative values (truncation, saturation, wrap-around). */
static void test_emulated_copy(void **state) {
  (void)state;
  const int64_t shape[] = {3, 4, 5}, flat[] = {8};
  const float odd[] = {NAN, 1e10f, -1e10f, -3.7f, 300.5f, 255.9f, -0.5f, 2.0f};
  pn_tensor *x = on_ref_random(3, shape, -5.0f, 5.0f), *xc = to_cuda(x);
  pn_tensor *t = pn_transpose(x, 0, 2), *tc = pn_transpose(xc, 0, 2);
  pn_tensor *want = tu_check(pn_contiguous(t), "ref"), *got = tu_check(pn_contiguous(tc), "cuda");
  expect_close(got, want, 0.0, "transposed copy");
  pn_tensor_unref(want), pn_tensor_unref(got), pn_tensor_unref(t), pn_tensor_unref(tc);
  pn_tensor *o = tu_check(pn_tensor_from_host(device("reference"), PN_F32, 1, flat, odd), "odd");
  pn_tensor *oc = to_cuda(o);
  const pn_dtype chain[] = {PN_I32, PN_I64, PN_U8, PN_F32};
  for (size_t i = 0; i < sizeof chain / sizeof chain[0]; i++) {
    pn_tensor *w = tu_check(pn_cast(o, chain[i]), "ref cast");
    pn_tensor *g = tu_check(pn_cast(oc, chain[i]), "cuda cast");
    expect_close(g, w, 0.0, pn_dtype_name(chain[i]));
    pn_tensor_unref(o), pn_tensor_unref(oc);
    o = w, oc = g; /* the next cast starts from this dtype */
  }
  pn_tensor_unref(o), pn_tensor_unref(oc), pn_tensor_unref(x), pn_tensor_unref(xc);
}

static void test_emulated_fill(void **state) {
  (void)state;
  static const struct {
    pn_dtype dt;
    double v;
  } cases[] = {{PN_F32, 2.5}, {PN_F32, 0.0}, {PN_I32, -3},       {PN_I64, 7},
               {PN_I64, -1},  {PN_U8, 200},  {PN_I64, 1LL << 40}};
  const int64_t shape[] = {3, 11};
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    pn_tensor *w = tu_check(pn_full(device("reference"), cases[i].dt, 2, shape, cases[i].v), "ref");
    pn_tensor *g = tu_check(pn_full(device("cuda"), cases[i].dt, 2, shape, cases[i].v), "cuda");
    expect_close(g, w, 0.0, "fill");
    pn_tensor_unref(w), pn_tensor_unref(g);
  }
}

static void test_emulated_axpby(void **state) {
  (void)state;
  const int64_t shape[] = {7, 13};
  pn_tensor *y = on_ref_random(2, shape, -1.0f, 1.0f), *x = on_ref_random(2, shape, -1.0f, 1.0f);
  pn_tensor *yc = to_cuda(y), *xc = to_cuda(x);
  pn_op_params p = {.alpha = 0.9, .beta = 0.1};
  pn_tensor *in[] = {y, x}, *inc[] = {yc, xc};
  assert_int_equal(pn_op_run_inplace(PN_OP_AXPBY, &p, in, 2, 1u), PN_OK);
  assert_int_equal(pn_op_run_inplace(PN_OP_AXPBY, &p, inc, 2, 1u), PN_OK);
  expect_close(yc, y, 1e-6, "axpby");
  pn_tensor_unref(y), pn_tensor_unref(x), pn_tensor_unref(yc), pn_tensor_unref(xc);
}

/* All four transpose combinations; through cuBLAS where it runs, else the
 * op falls back to the reference backend. */
static void test_emulated_matmul(void **state) {
  (void)state;
  const int64_t m = 7, k = 5, n = 3;
  for (int ta = 0; ta < 2; ta++) {
    for (int tb = 0; tb < 2; tb++) {
      const int64_t as[] = {ta ? k : m, ta ? m : k}, bs[] = {tb ? n : k, tb ? k : n};
      pn_tensor *a = on_ref_random(2, as, -1.0f, 1.0f), *b = on_ref_random(2, bs, -1.0f, 1.0f);
      pn_tensor *ac = to_cuda(a), *bc = to_cuda(b);
      pn_tensor *want = tu_check(pn_matmul(a, b, ta, tb), "ref");
      pn_tensor *got = tu_check(pn_matmul(ac, bc, ta, tb), "cuda");
      expect_close(got, want, 1e-5, "matmul");
      pn_tensor_unref(want), pn_tensor_unref(got), pn_tensor_unref(ac), pn_tensor_unref(bc);
      pn_tensor_unref(a), pn_tensor_unref(b);
    }
  }
}

/* Forward and backward through ops the cuda backend has (relu, binary) and
 * ops it lacks (matmul without cuBLAS, sum), which run on a host backend
 * and come back: the gradient must match the reference backend's. */
static pn_tensor *grad_of_w(pn_tensor *x, pn_tensor *w0) {
  pn_tensor *w = tu_check(pn_tensor_to(w0, pn_tensor_device(x)), "w");
  pn_tensor_set_requires_grad(w, 1);
  pn_tensor *xw = pn_matmul(x, w, 0, 0), *h = pn_relu(xw), *hh = pn_mul(h, h);
  pn_tensor *loss = tu_check(pn_sum_all(hh), "loss");
  assert_int_equal(pn_backward(loss, NULL), PN_OK);
  pn_tensor *g = tu_check(pn_tensor_ref(pn_tensor_grad(w)), "grad");
  pn_tensor_unref(loss), pn_tensor_unref(hh), pn_tensor_unref(h), pn_tensor_unref(xw);
  pn_tensor_unref(w);
  return g;
}

static void test_emulated_backward_with_fallback(void **state) {
  (void)state;
  const int64_t xs[] = {8, 6}, ws[] = {6, 4};
  pn_tensor *x = on_ref_random(2, xs, -1.0f, 1.0f), *w = on_ref_random(2, ws, -1.0f, 1.0f);
  pn_tensor *xc = to_cuda(x);
  pn_tensor *want = grad_of_w(x, w), *got = grad_of_w(xc, w);
  expect_close(got, want, 1e-5, "gradient");
  pn_tensor_unref(want), pn_tensor_unref(got), pn_tensor_unref(x), pn_tensor_unref(xc);
  pn_tensor_unref(w);
}

/* ------------------------------------------------------------ main */

/* Opening the fake here first gives this process and the plugin the same
 * library (dlopen returns the loaded object), so its counters are shared. */
static int open_fake(void) {
  const char *path = getenv("PLUGNET_LIBCUDA");
  void *lib = path ? dlopen(path, RTLD_NOW | RTLD_LOCAL) : NULL;
  counts = lib ? dlsym(lib, "fakecuda_counts") : NULL;
  if (!counts) fprintf(stderr, "test_cuda_nodevice: cannot open the fake driver %s\n", path);
  return counts != NULL;
}

static int run_device_mode(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_registers_and_probes),
      cmocka_unit_test(test_describe),
      cmocka_unit_test(test_two_devices),
      cmocka_unit_test(test_size_classes),
      cmocka_unit_test(test_allocator_reuses_blocks),
      cmocka_unit_test(test_allocator_trims_when_out_of_memory),
      cmocka_unit_test(test_roundtrip_staged),
      cmocka_unit_test(test_roundtrip_unpinned),
      cmocka_unit_test(test_roundtrip_i64),
      cmocka_unit_test(test_fill_by_memset),
      cmocka_unit_test(test_copy_on_device),
      cmocka_unit_test(test_kernel_failure_is_an_error),
      cmocka_unit_test(test_synchronize),
      cmocka_unit_test(test_cpu_still_works),
  };
  if (!open_fake()) return 1;
  return cmocka_run_group_tests_name("cuda (fake device)", tests, NULL, NULL);
}

/* The kernels against the reference backend: emulated by the fake driver,
 * or ("gpu") run by the system's driver on a real device. */
static int run_kernel_mode(int emulated) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_emulated_unary),
      cmocka_unit_test(test_emulated_binary),
      cmocka_unit_test(test_emulated_copy),
      cmocka_unit_test(test_emulated_fill),
      cmocka_unit_test(test_emulated_axpby),
      cmocka_unit_test(test_emulated_matmul),
      cmocka_unit_test(test_emulated_backward_with_fallback),
  };
  char why[256];
  if (emulated && !open_fake()) return 1;
  device("reference"); /* loaded, so ops the cuda backend lacks can fall back */
  if (probe(device("cuda"), why, sizeof why) != PN_OK) {
    printf("cuda:0 is unavailable (%s): nothing to run\n", why);
    return 77;
  }
  return cmocka_run_group_tests_name(emulated ? "cuda kernels, emulated by the fake driver"
                                              : "cuda kernels on the GPU",
                                     tests, NULL, NULL);
}

static int run_no_device_mode(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_registers_and_probes),
      cmocka_unit_test(test_describe),
      cmocka_unit_test(test_alloc_fails_cleanly),
      cmocka_unit_test(test_cpu_still_works),
  };
  return cmocka_run_group_tests_name(mode, tests, NULL, NULL);
}

int main(int argc, char **argv) {
  static const char *const modes[] = {"default", "missing", "nodevice", "zero",
                                      "device",  "emulate", "gpu"};
  mode = argc > 1 ? argv[1] : "";
  int known = 0;
  for (size_t i = 0; i < sizeof modes / sizeof modes[0]; i++) known |= strcmp(mode, modes[i]) == 0;
  if (!known) {
    fprintf(stderr, "usage: test_cuda_nodevice default|missing|nodevice|zero|device|emulate|gpu\n");
    return 2;
  }
  if (strcmp(mode, "default") == 0) {
    void *real = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
    if (real) {
      printf("libcuda.so.1 is installed: the no-driver case cannot be checked here\n");
      dlclose(real);
      return 77;
    }
  }
  if (strcmp(mode, "emulate") == 0 || strcmp(mode, "gpu") == 0)
    return run_kernel_mode(strcmp(mode, "emulate") == 0);
  return strcmp(mode, "device") == 0 ? run_device_mode() : run_no_device_mode();
}
