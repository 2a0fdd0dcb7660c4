/* Thread pool latency against OpenMP, measured in the same run on the same
 * thread count: an elementwise add at sizes from "tiny" (runs inline) to
 * 256K floats, and the bare cost of handing out two empty slices.
 *
 *   make bench/bench_threadpool CFLAGS='-O2 -fopenmp'
 *   PLUGNET_THREADS=2 bench/bench_threadpool
 *
 * Built without -fopenmp it prints the pool's figures alone. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#include <plugnet/threadpool.h>

#define GRAIN 4096

typedef struct vecs {
  float *a, *b, *c;
} vecs;

static void add_slice(void *arg, int64_t begin, int64_t end, int worker) {
  const vecs *v = arg;
  const float *restrict a = v->a, *restrict b = v->b;
  float *restrict c = v->c;
  (void)worker;
  for (int64_t i = begin; i < end; i++) c[i] = a[i] + b[i];
}

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* The best of five trials: a shared machine's noise only ever adds time. */
static double time_pool(pn_threadpool *p, vecs *v, int64_t n, int reps) {
  double best = 1e30;
  for (int r = 0; r < reps / 10 + 1; r++) pn_threadpool_parallel_for(p, n, GRAIN, add_slice, v);
  for (int trial = 0; trial < 5; trial++) {
    double t0 = now_s();
    for (int r = 0; r < reps; r++) pn_threadpool_parallel_for(p, n, GRAIN, add_slice, v);
    if (now_s() - t0 < best) best = now_s() - t0;
  }
  return best / reps * 1e6;
}

#ifdef _OPENMP
/* The same split rule as the pool: no more threads than n / GRAIN. */
static double time_omp(vecs *v, int64_t n, int threads, int reps) {
  int64_t most = n / GRAIN;
  int t = most < 1 ? 1 : (most < threads ? (int)most : threads);
  const float *restrict a = v->a, *restrict b = v->b;
  float *restrict c = v->c;
  double best = 1e30;
  for (int trial = -1; trial < 5; trial++) {
    double t0 = now_s();
    for (int r = 0; r < reps; r++) {
#pragma omp parallel for num_threads(t) schedule(static)
      for (int64_t i = 0; i < n; i++) c[i] = a[i] + b[i];
    }
    if (trial >= 0 && now_s() - t0 < best) best = now_s() - t0;
  }
  return best / reps * 1e6;
}
#endif

int main(void) {
  static const int64_t sizes[] = {16, 4096, 16384, 65536, 262144};
  enum { N_SIZES = sizeof sizes / sizeof *sizes };
  double mine[N_SIZES] = {0}, peer[N_SIZES] = {0};
  const int64_t max_n = 262144;
  pn_threadpool *pool = pn_threadpool_global();
  int threads = pn_threadpool_size(pool);
  vecs v = {malloc(max_n * sizeof(float)), malloc(max_n * sizeof(float)),
            malloc(max_n * sizeof(float))};
  if (!v.a || !v.b || !v.c) return 1;
  for (int64_t i = 0; i < max_n; i++) v.a[i] = (float)i, v.b[i] = 1.0f;
  printf("threads: %d, grain %d floats\n", threads, GRAIN);
  printf("%10s %12s %12s %8s\n", "n", "plugnet us", "openmp us", "ratio");
  /* All pool figures first, then OpenMP's: each runtime's workers keep
   * spinning for a while after a loop and would slow the other down. */
  for (size_t s = 0; s < N_SIZES; s++)
    mine[s] = time_pool(pool, &v, sizes[s], (int)(20000000 / (sizes[s] + 1000)));
#ifdef _OPENMP
  for (size_t s = 0; s < N_SIZES; s++)
    peer[s] = time_omp(&v, sizes[s], threads, (int)(20000000 / (sizes[s] + 1000)));
#endif
  for (size_t s = 0; s < N_SIZES; s++) {
    if (peer[s] > 0)
      printf("%10lld %12.3f %12.3f %8.2f\n", (long long)sizes[s], mine[s], peer[s],
             mine[s] / peer[s]);
    else
      printf("%10lld %12.3f %12s %8s\n", (long long)sizes[s], mine[s], "-", "-");
  }
  {
    int reps = 1000000;
    double t0 = now_s();
    for (int r = 0; r < reps; r++) pn_threadpool_parallel_for(pool, 2, 1, add_slice, &v);
    printf("two empty slices: %.3f us per parallel_for\n", (now_s() - t0) / reps * 1e6);
  }
  free(v.a);
  free(v.b);
  free(v.c);
  return 0;
}
