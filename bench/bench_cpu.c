/* The cpu backend beside its peers, measured in the same run on the same
 * threads, each figure with the ratio to its peer:
 *   - pn_matmul against cblas_sgemm called directly (512^3, 2048^3);
 *   - an elementwise add of 10 M floats against memcpy, in GB/s of bytes
 *     moved (add reads two arrays and writes one, memcpy reads one and
 *     writes one);
 *   - pn_add on 1-element tensors (creating and freeing the result) against
 *     a direct function call doing the same add.
 *
 *   make bench                   (or: make bench/bench_cpu && bench/bench_cpu)
 *   bench/bench_cpu [threads]    (default 2; sets PLUGNET_THREADS)
 *
 * Each figure is the best of several repetitions, which is what the
 * hardware can do. Ours and the peer run back to back in every repetition,
 * and the ratio is given twice: of the best figures, and the median of the
 * per-repetition ratios, which is what to trust on a shared, noisy machine. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cblas.h>

#include <plugnet/plugnet.h>

#include "benchutil.h"

#define REPS     7
#define MAX_REPS BENCH_MAX_REPS

static void die(const char *what) {
  fprintf(stderr, "bench_cpu: %s: %s\n", what, pn_last_error());
  exit(1);
}

static pn_tensor *check(pn_tensor *t, const char *what) {
  if (!t) die(what);
  return t;
}

/* work: bytes or flops per run, so that figure = work / time. */
static void row(const char *what, const char *unit, double work, const double *ours,
                double peer_work, const double *peer, const char *peer_name, int n) {
  double o = work / bench_best(ours, n), p = peer_work / bench_best(peer, n);
  double med[MAX_REPS];
  for (int i = 0; i < n; i++) med[i] = ours[i] / work * peer_work;
  printf("  %-30s %8.2f %-7s  %-22s %8.2f %-7s  ratio %5.1f %% (median %5.1f %%)\n", what, o, unit,
         peer_name, p, unit, 100.0 * o / p, 100.0 * bench_median_ratio(med, peer, n));
}

/* ------------------------------------------------------------ matmul */

static void bench_matmul(pn_device *cpu, int64_t n) {
  int64_t shape[2] = {n, n};
  pn_tensor *a = check(pn_rand_uniform(cpu, 2, shape, -1, 1, 1, 0), "rand");
  pn_tensor *b = check(pn_rand_uniform(cpu, 2, shape, -1, 1, 2, 0), "rand");
  float *c = aligned_alloc(64, (size_t)(n * n) * sizeof(float));
  if (!c) die("out of memory");
  double flops = 2.0 * (double)n * (double)n * (double)n;
  int inner = n <= 512 ? 20 : 1;
  double ours[REPS], blas[REPS];
  for (int r = 0; r < REPS; r++) {
    double t0 = bench_now_s();
    for (int i = 0; i < inner; i++) pn_tensor_unref(check(pn_matmul(a, b, 0, 0), "matmul"));
    /* The peer: OpenBLAS with its own threads, as a user would call it (the
     * cpu backend runs it single-threaded inside its pool instead). */
    openblas_set_num_threads(pn_threadpool_size(pn_threadpool_global()));
    double t1 = bench_now_s();
    for (int i = 0; i < inner; i++)
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (blasint)n, (blasint)n, (blasint)n,
                  1.0f, pn_tensor_data(a), (blasint)n, pn_tensor_data(b), (blasint)n, 0.0f, c,
                  (blasint)n);
    double t2 = bench_now_s();
    openblas_set_num_threads(1);
    ours[r] = (t1 - t0) / inner;
    blas[r] = (t2 - t1) / inner;
  }
  char what[64];
  snprintf(what, sizeof what, "pn_matmul %lld^3", (long long)n);
  row(what, "GFLOP/s", flops * 1e-9, ours, flops * 1e-9, blas, "cblas_sgemm direct", REPS);
  free(c);
  pn_tensor_unref(a);
  pn_tensor_unref(b);
}

/* ------------------------------------------------------------ bandwidth */

typedef struct copy_job {
  char *dst;
  const char *src;
} copy_job;

static void copy_slice(void *arg, int64_t b, int64_t e, int worker) {
  (void)worker;
  const copy_job *j = arg;
  memcpy(j->dst + b, j->src + b, (size_t)(e - b));
}

/* One elementwise op through the dispatcher into an output allocated once,
 * which is what the kernel costs; pn_add also pays for a fresh output. */
static pn_status add_into(pn_tensor *a, pn_tensor *b, pn_tensor *out) {
  pn_op_args args;
  memset(&args, 0, sizeof args);
  args.op = PN_OP_BINARY;
  args.n_in = 2;
  args.in[0] = a;
  args.in[1] = b;
  args.out = out;
  args.p.kind = PN_BINARY_ADD;
  return pn_op_dispatch(&args);
}

static void bench_add(pn_device *cpu, pn_threadpool *pool) {
  int64_t n = 10 * 1000 * 1000, shape[1] = {n};
  size_t bytes = (size_t)n * sizeof(float);
  pn_tensor *a = check(pn_rand_uniform(cpu, 1, shape, -1, 1, 3, 0), "rand");
  pn_tensor *b = check(pn_rand_uniform(cpu, 1, shape, -1, 1, 4, 0), "rand");
  pn_tensor *o = check(pn_zeros(cpu, 1, shape), "zeros");
  char *dst = aligned_alloc(64, bytes);
  if (!dst) die("out of memory");
  memset(dst, 1, bytes);
  copy_job job = {dst, pn_tensor_data(a)};
  enum { R = 4 * REPS };
  double t_add[R], t_new[R], t_cpy[R], t_cpy1[R];
  /* Memory bandwidth on a shared machine swings from run to run: many
   * interleaved repetitions, so both sides see the same good moments. */
  for (int r = 0; r < R; r++) {
    double t0 = bench_now_s();
    if (add_into(a, b, o) != PN_OK) die("add");
    double t1 = bench_now_s();
    pn_tensor_unref(check(pn_add(a, b), "pn_add"));
    double t2 = bench_now_s();
    pn_threadpool_parallel_for(pool, (int64_t)bytes, 1 << 16, copy_slice, &job);
    double t3 = bench_now_s();
    memcpy(dst, pn_tensor_data(a), bytes);
    double t4 = bench_now_s();
    t_add[r] = t1 - t0;
    t_new[r] = t2 - t1;
    t_cpy[r] = t3 - t2;
    t_cpy1[r] = t4 - t3;
  }
  double add_gb = 3e-9 * (double)bytes, cpy_gb = 2e-9 * (double)bytes;
  row("add 10M, preallocated out", "GB/s", add_gb, t_add, cpy_gb, t_cpy, "memcpy, same threads", R);
  row("pn_add 10M (allocates out)", "GB/s", add_gb, t_new, cpy_gb, t_cpy, "memcpy, same threads",
      R);
  printf("  (memcpy on one thread: %.2f GB/s)\n", cpy_gb / bench_best(t_cpy1, R));
  free(dst);
  pn_tensor_unref(a);
  pn_tensor_unref(b);
  pn_tensor_unref(o);
}

/* ------------------------------------------------------------ dispatch */

__attribute__((noinline)) static void add_one(float *o, const float *a, const float *b) {
  o[0] = a[0] + b[0];
  __asm__ __volatile__("" ::: "memory");
}

static void bench_dispatch(pn_device *cpu) {
  int64_t shape[1] = {1};
  float one = 1.0f, two = 2.0f;
  pn_tensor *a = check(pn_tensor_from_host(cpu, PN_F32, 1, shape, &one), "from_host");
  pn_tensor *b = check(pn_tensor_from_host(cpu, PN_F32, 1, shape, &two), "from_host");
  const int iters = 1000000;
  double t_op = INFINITY, t_call = INFINITY, t_malloc = INFINITY;
  float o;
  for (int r = 0; r < REPS; r++) {
    double t0 = bench_now_s();
    for (int i = 0; i < iters; i++) pn_tensor_unref(pn_add(a, b));
    double t1 = bench_now_s();
    for (int i = 0; i < iters; i++) add_one(&o, &one, &two);
    double t2 = bench_now_s();
    for (int i = 0; i < iters; i++) {
      float *p = malloc(sizeof *p);
      add_one(p, &one, &two);
      free(p);
    }
    double t3 = bench_now_s();
    t_op = fmin(t_op, (t1 - t0) / iters);
    t_call = fmin(t_call, (t2 - t1) / iters);
    t_malloc = fmin(t_malloc, (t3 - t2) / iters);
  }
  pn_tensor *c = check(pn_add(a, b), "pn_add");
  if (pn_tensor_get_f32(c, 0) != 3.0f) die("1 + 2 != 3");
  pn_tensor_unref(c);
  printf("  %-30s %8.1f ns       %-22s %8.1f ns       (target <= 1000 ns)\n",
         "pn_add, 1 element, new result", t_op * 1e9, "direct call", t_call * 1e9);
  printf("  %-30s %8s          %-22s %8.1f ns\n", "", "", "malloc + call + free", t_malloc * 1e9);
  pn_tensor_unref(a);
  pn_tensor_unref(b);
}

int main(int argc, char **argv) {
  /* Through the environment, so that the cpu backend and the memcpy peer
   * share the one process-wide pool (and OpenBLAS gets the same count). */
  setenv("PLUGNET_THREADS", argc > 1 ? argv[1] : "2", 1);
  pn_device *cpu = NULL;
  if (pn_device_get("cpu", &cpu) != PN_OK) die("cpu device");
  pn_threadpool *pool = pn_threadpool_global();
  char desc[512] = "";
  if (cpu->iface->describe) cpu->iface->describe(cpu->ctx, desc, sizeof desc);
  printf("cpu backend: %s\n", desc);
  printf("pool threads: %d, cpu backend threads: %d (OpenBLAS single-threaded in each); "
         "the cblas_sgemm peer runs with %d OpenBLAS threads\n\n",
         pn_threadpool_size(pool), cpu->iface->threads ? cpu->iface->threads(cpu->ctx) : -1,
         pn_threadpool_size(pool));
  bench_matmul(cpu, 512);
  bench_matmul(cpu, 2048);
  bench_add(cpu, pool);
  bench_dispatch(cpu);
  return 0;
}
