/* conv2d forward on the cpu backend, on ResNet-18/50 layer shapes, beside
 * cblas_sgemm of the same M, N, K as the convolution's im2col product
 * (M = out channels, N = batch * OH * OW, K = C * KH * KW: one GEMM over the
 * whole batch, with OpenBLAS threading itself on as many threads as the
 * pool has), measured in the same run. The target is a ratio of at
 * least 60 %.
 *
 *   make bench-conv           (or: make bench/bench_conv && bench/bench_conv)
 *   bench/bench_conv [batch [threads]]   (defaults 16 and 2)
 *
 * Each figure is the best of REPS repetitions; ours and the peer run back to
 * back in every one, and the median of the per-repetition ratios is given
 * too, which is what to trust on a shared, noisy machine. Depthwise rows
 * (MobileNetV2) have no GEMM peer: they are memory-bound loops. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cblas.h>

#include <plugnet/plugnet.h>

#include "benchutil.h"

#define REPS 5

typedef struct shape {
  const char *label;
  int64_t c, h, w, o, k;
  int stride, pad, groups;
} shape;

static const shape shapes[] = {
    {"stem 3x224x224 7x7/2", 3, 224, 224, 64, 7, 2, 3, 1},
    {"64x56x56 3x3", 64, 56, 56, 64, 3, 1, 1, 1},
    {"64x56x56 3x3/2 ->128", 64, 56, 56, 128, 3, 2, 1, 1},
    {"128x28x28 3x3", 128, 28, 28, 128, 3, 1, 1, 1},
    {"256x14x14 3x3", 256, 14, 14, 256, 3, 1, 1, 1},
    {"512x7x7 3x3", 512, 7, 7, 512, 3, 1, 1, 1},
    {"1x1 64x56x56 ->256", 64, 56, 56, 256, 1, 1, 0, 1},
    {"1x1 256x56x56 ->64", 256, 56, 56, 64, 1, 1, 0, 1},
    {"1x1 256x56x56/2 ->512", 256, 56, 56, 512, 1, 2, 0, 1},
    {"1x1 512x28x28 ->128", 512, 28, 28, 128, 1, 1, 0, 1},
    {"1x1 1024x14x14 ->256", 1024, 14, 14, 256, 1, 1, 0, 1},
    {"1x1 2048x7x7 ->512", 2048, 7, 7, 512, 1, 1, 0, 1},
    {"1x1 512x7x7 ->2048", 512, 7, 7, 2048, 1, 1, 0, 1},
    {"dw 96x112x112 3x3/2", 96, 112, 112, 96, 3, 2, 1, 96},
    {"dw 144x56x56 3x3", 144, 56, 56, 144, 3, 1, 1, 144},
};

static void die(const char *what) {
  fprintf(stderr, "bench_conv: %s: %s\n", what, pn_last_error());
  exit(1);
}

static pn_tensor *check(pn_tensor *t, const char *what) {
  if (!t) die(what);
  return t;
}

static float *random_floats(size_t n) {
  float *p = aligned_alloc(64, (n * sizeof(float) + 63) / 64 * 64);
  if (!p) die("out of memory");
  for (size_t i = 0; i < n; i++) p[i] = (float)((i * 2654435761u) % 1000) * 1e-3f - 0.5f;
  return p;
}

/* The peer: one GEMM of the im2col product's size, on fixed operands. */
static double time_sgemm(int64_t m, int64_t n, int64_t k, const float *a, const float *b, float *c,
                         int inner) {
  double t0 = bench_now_s();
  for (int i = 0; i < inner; i++)
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (blasint)m, (blasint)n, (blasint)k, 1.0f,
                a, (blasint)k, b, (blasint)n, 0.0f, c, (blasint)n);
  return (bench_now_s() - t0) / inner;
}

static double time_conv(pn_tensor *x, pn_tensor *w, const pn_conv2d_params *p, int inner) {
  double t0 = bench_now_s();
  for (int i = 0; i < inner; i++) pn_tensor_unref(check(pn_conv2d(x, w, NULL, p), "conv2d"));
  return (bench_now_s() - t0) / inner;
}

static void bench_shape(pn_device *cpu, const shape *s, int64_t batch, int threads) {
  int64_t oh = (s->h + 2 * s->pad - s->k) / s->stride + 1,
          ow = (s->w + 2 * s->pad - s->k) / s->stride + 1;
  int64_t xs[4] = {batch, s->c, s->h, s->w}, ws[4] = {s->o, s->c / s->groups, s->k, s->k};
  pn_tensor *x = check(pn_rand_uniform(cpu, 4, xs, -1, 1, 1, 0), "rand");
  pn_tensor *w = check(pn_rand_uniform(cpu, 4, ws, -1, 1, 2, 0), "rand");
  pn_conv2d_params p = {{s->stride, s->stride}, {s->pad, s->pad}, {1, 1}, s->groups};
  int64_t m = s->o / s->groups, n = batch * oh * ow, k = s->c / s->groups * s->k * s->k;
  double flops = 2.0 * (double)s->groups * (double)m * (double)n * (double)k;
  int inner = flops < 2e9 ? (int)(2e9 / flops) : 1;
  pn_tensor_unref(check(pn_conv2d(x, w, NULL, &p), "conv2d")); /* warm up */
  double ours[REPS], peer[REPS];
  float *a = NULL, *b = NULL, *c = NULL;
  if (s->groups == 1) {
    a = random_floats((size_t)(m * k));
    b = random_floats((size_t)(k * n));
    c = random_floats((size_t)(m * n));
  }
  for (int r = 0; r < REPS; r++) {
    /* OpenBLAS's threads spin for about 2^28 cycles after the peer's last
     * call; let them sleep so they do not take the cores from our pool. */
    if (r) nanosleep(&(struct timespec){.tv_nsec = 200000000}, NULL);
    ours[r] = time_conv(x, w, &p, inner);
    if (!a) continue;
    openblas_set_num_threads(threads);
    peer[r] = time_sgemm(m, n, k, a, b, c, inner);
    openblas_set_num_threads(1);
  }
  double g = flops * 1e-9 / bench_best(ours, REPS);
  if (a) {
    double gp = flops * 1e-9 / bench_best(peer, REPS);
    printf("  %-24s %6lld %6lld %5lld  %8.1f GFLOP/s  %8.1f GFLOP/s  %5.1f %% (median %5.1f %%)\n",
           s->label, (long long)m, (long long)n, (long long)k, g, gp, 100.0 * g / gp,
           100.0 * bench_median_ratio(ours, peer, REPS));
  } else {
    printf("  %-24s %20s  %8.1f GFLOP/s  (depthwise: no GEMM peer)\n", s->label, "", g);
  }
  free(a);
  free(b);
  free(c);
  pn_tensor_unref(x);
  pn_tensor_unref(w);
}

int main(int argc, char **argv) {
  int64_t batch = argc > 1 ? atoll(argv[1]) : 16;
  /* Through the environment, so that the cpu backend's pool and the
   * OpenBLAS peer use the same number of threads. */
  setenv("PLUGNET_THREADS", argc > 2 ? argv[2] : "2", 1);
  pn_device *cpu = NULL;
  if (pn_device_get("cpu", &cpu) != PN_OK) die("cpu device");
  int threads = cpu->iface->threads ? cpu->iface->threads(cpu->ctx) : 1;
  pn_set_grad_enabled(0);
  printf("conv2d forward, batch %lld, cpu backend on %d threads; peer: cblas_sgemm with %d "
         "OpenBLAS threads, M = out channels, N = batch*OH*OW, K = C*KH*KW\n\n",
         (long long)batch, threads, threads);
  printf("  %-24s %6s %6s %5s  %16s  %16s  %s\n", "layer", "M", "N", "K", "conv2d", "cblas_sgemm",
         "ratio (target >= 60 %)");
  for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++)
    bench_shape(cpu, &shapes[i], batch, threads);
  return 0;
}
