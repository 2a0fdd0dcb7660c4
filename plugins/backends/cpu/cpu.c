/* The cpu backend: host memory, OpenBLAS for GEMM, own vectorised kernels
 * for the rest, and a pool of workers bound to physical cores. OpenBLAS is
 * told to use as many threads as the pool so that the two never
 * oversubscribe the cores between them. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cblas.h>

#include <plugnet/plugin.h>
#include <plugnet/threadpool.h>
#include <plugnet/topology.h>

#include "cpu_kernels.h"

static pni_cpu_ctx cpu_state;

static pn_status cpu_probe(void *ctx, char *why, size_t why_len) {
  (void)ctx;
  if (why && why_len) why[0] = '\0';
  return PN_OK;
}

/* ------------------------------------------------------------ memory */

/* Every block starts with a 64-byte header holding its size, so the data
 * stays aligned to a cache line and one AVX-512 vector. */
enum { HEADER = 64, CACHE_SLOTS = 32 };

/* Large blocks come from mmap, and each fresh one costs a page fault per
 * 4 KiB on first touch, more than the op that fills it. A training step
 * allocates the same large sizes every time (a batch of 128 MNIST images is
 * 400 KB), so freed blocks from 64 KiB up are kept for reuse (bounded: 32
 * blocks, 256 MiB). */
#define CACHE_MIN_BYTES ((size_t)64 << 10)
#define CACHE_MAX_BYTES ((size_t)256 << 20)

static struct {
  pthread_mutex_t lock;
  void *base[CACHE_SLOTS];
  size_t total;
} block_cache = {PTHREAD_MUTEX_INITIALIZER, {NULL}, 0};

static size_t block_size(const void *base) {
  size_t n;
  memcpy(&n, base, sizeof n);
  return n;
}

/* The smallest cached block that holds `size` without wasting a third. */
static void *cache_take(size_t size) {
  pthread_mutex_lock(&block_cache.lock);
  int best = -1;
  for (int i = 0; i < CACHE_SLOTS; i++) {
    void *b = block_cache.base[i];
    if (!b || block_size(b) < size || block_size(b) > size + size / 2) continue;
    if (best < 0 || block_size(b) < block_size(block_cache.base[best])) best = i;
  }
  void *b = NULL;
  if (best >= 0) {
    b = block_cache.base[best];
    block_cache.base[best] = NULL;
    block_cache.total -= block_size(b);
  }
  pthread_mutex_unlock(&block_cache.lock);
  return b;
}

/* Keeps a large block, dropping cached ones until it fits the budget. */
static int cache_put(void *base) {
  size_t size = block_size(base);
  if (size < CACHE_MIN_BYTES || size > CACHE_MAX_BYTES) return 0;
  pthread_mutex_lock(&block_cache.lock);
  int slot = -1;
  for (int i = 0; i < CACHE_SLOTS && slot < 0; i++)
    if (!block_cache.base[i]) slot = i;
  for (int i = 0; i < CACHE_SLOTS && (slot < 0 || block_cache.total + size > CACHE_MAX_BYTES);
       i++) {
    if (!block_cache.base[i]) continue;
    block_cache.total -= block_size(block_cache.base[i]);
    free(block_cache.base[i]);
    block_cache.base[i] = NULL;
    if (slot < 0) slot = i;
  }
  block_cache.base[slot] = base;
  block_cache.total += size;
  pthread_mutex_unlock(&block_cache.lock);
  return 1;
}

static void cache_clear(void) {
  pthread_mutex_lock(&block_cache.lock);
  for (int i = 0; i < CACHE_SLOTS; i++) {
    free(block_cache.base[i]);
    block_cache.base[i] = NULL;
  }
  block_cache.total = 0;
  pthread_mutex_unlock(&block_cache.lock);
}

static void *cpu_alloc(void *ctx, size_t bytes) {
  (void)ctx;
  if (bytes > SIZE_MAX - 2 * HEADER) return NULL;
  size_t size = (bytes + 63) / 64 * 64 + HEADER;
  char *base = size >= CACHE_MIN_BYTES ? cache_take(size) : NULL;
  if (!base) {
    base = aligned_alloc(64, size);
    if (!base) return NULL;
    memcpy(base, &size, sizeof size);
  }
  return base + HEADER;
}

static void cpu_free(void *ctx, void *mem) {
  (void)ctx;
  if (!mem) return;
  char *base = (char *)mem - HEADER;
  if (!cache_put(base)) free(base);
}

static void *cpu_host_ptr(void *ctx, void *mem) {
  (void)ctx;
  return mem;
}

static int cpu_threads(void *ctx) {
  const pni_cpu_ctx *c = ctx;
  return c->pool ? pn_threadpool_size(c->pool) : 1;
}

static void cpu_release_pool(pni_cpu_ctx *c) {
  if (c->own_pool) pn_threadpool_free(c->pool);
  c->pool = NULL;
  c->own_pool = 0;
}

/* n <= 0: back to the process-wide pool (one worker per physical core,
 * or PLUGNET_THREADS). Otherwise an own pool of n, placed as the topology
 * says; the old pool goes only once the new one exists, so a failure leaves
 * the device as it was. Not to be called while ops run on the device. */
static pn_status cpu_set_threads(void *ctx, int n) {
  pni_cpu_ctx *c = ctx;
  pn_threadpool *pool = NULL;
  if (n <= 0) {
    pool = pn_threadpool_global();
  } else {
    pn_topology_info info;
    int bind = pn_topology_get(&info) == PN_OK && info.bound;
    pn_status st = pn_threadpool_create(n, bind, &pool);
    if (st != PN_OK) return pn_error_prefix(st, "cpu: set_threads(%d): ", n);
  }
  cpu_release_pool(c);
  c->pool = pool;
  c->own_pool = n > 0;
  return PN_OK;
}

/* openblas_get_config() reads "OpenBLAS 0.3.21 DYNAMIC_ARCH NO_AFFINITY
 * Zen MAX_THREADS=64": the first two words are the name and version. */
static void split_blas_config(char *version, size_t vn, const char **rest) {
  const char *cfg = openblas_get_config();
  const char *sp = cfg ? strchr(cfg, ' ') : NULL;
  if (sp) sp = strchr(sp + 1, ' ');
  size_t len = sp ? (size_t)(sp - cfg) : (cfg ? strlen(cfg) : 0);
  snprintf(version, vn, "%.*s", (int)len, cfg ? cfg : "");
  *rest = sp ? sp + 1 : "";
}

/* The pool pins workers 1..n-1 to cores 1..n-1; worker 0 is the calling
 * thread, left unpinned so that threads it starts later are not confined. */
static void describe_cores(char *buf, size_t n, int threads) {
  size_t used = strlen(buf);
  for (int i = 1; i < threads && used + 1 < n; i++) {
    char cpus[64];
    if (!pn_topology_core_cpus(i, cpus, sizeof cpus)) break;
    snprintf(buf + used, n - used, "%s%s", i > 1 ? " " : "", cpus);
    used = strlen(buf);
  }
  if (used + 1 < n) snprintf(buf + used, n - used, " (worker 0 is the caller, unpinned)");
}

static void cpu_describe(void *ctx, char *buf, size_t n) {
  if (!n) return;
  int threads = cpu_threads(ctx);
  char version[64];
  const char *rest;
  split_blas_config(version, sizeof version, &rest);
  pn_topology_info info;
  int bound = threads > 1 && pn_topology_get(&info) == PN_OK && info.bound;
  snprintf(buf, n, "%s (%s) inside each worker, %d thread%s%s", version, rest, threads,
           threads == 1 ? "" : "s",
           bound         ? " bound to cores "
           : threads > 1 ? ", not bound to cores"
                         : "");
  if (bound) describe_cores(buf, n, threads);
}

static void cpu_destroy(void *ctx) {
  cpu_release_pool(ctx);
  cache_clear();
}

static const pn_device_iface cpu_iface = {
    .size = sizeof(pn_device_iface),
    .probe = cpu_probe,
    .alloc = cpu_alloc,
    .free = cpu_free,
    .host_ptr = cpu_host_ptr,
    .set_threads = cpu_set_threads,
    .threads = cpu_threads,
    .describe = cpu_describe,
    .destroy = cpu_destroy,
};

static pn_status cpu_init(pn_plugin_ctx *ctx) {
  static const struct {
    int op;
    pn_kernel_fn fn;
  } kernels[] = {
      {PN_OP_FILL, pni_cpu_fill},
      {PN_OP_RANDOM, pni_cpu_random},
      {PN_OP_COPY, pni_cpu_copy},
      {PN_OP_UNARY, pni_cpu_unary},
      {PN_OP_BINARY, pni_cpu_binary},
      {PN_OP_MATMUL, pni_cpu_matmul},
      {PN_OP_REDUCE, pni_cpu_reduce},
      {PN_OP_SOFTMAX, pni_cpu_softmax},
      {PN_OP_LOG_SOFTMAX, pni_cpu_log_softmax},
      {PN_OP_CONV2D, pni_cpu_conv2d},
      {PN_OP_CONV2D_GRAD_INPUT, pni_cpu_conv2d_grad_input},
      {PN_OP_CONV2D_GRAD_WEIGHT, pni_cpu_conv2d_grad_weight},
      {PN_OP_POOL2D, pni_cpu_pool2d},
      {PN_OP_POOL2D_GRAD, pni_cpu_pool2d_grad},
      {PN_OP_CHANNEL_STATS, pni_cpu_channel_stats},
      {PN_OP_CHANNEL_AFFINE, pni_cpu_channel_affine},
      {PN_OP_CHANNEL_GRAD_STATS, pni_cpu_channel_grad_stats},
      {PN_OP_CONCAT, pni_cpu_concat},
      {PN_OP_AXPBY, pni_cpu_axpby},
  };
  memset(&cpu_state, 0, sizeof cpu_state);
  pni_cpu_kernels_init();
  /* The process-wide pool by default; set_threads replaces it with an own. */
  cpu_state.pool = pn_threadpool_global();
  /* Matrix products are split over the pool; OpenBLAS works inside it. */
  openblas_set_num_threads(1);
  PN_TRY(pn_plugin_add_device(ctx, "cpu", "cpu", &cpu_iface, &cpu_state));
  for (size_t i = 0; i < sizeof kernels / sizeof kernels[0]; i++)
    PN_TRY(pn_plugin_add_kernel(ctx, "cpu", pn_op_name(kernels[i].op), kernels[i].fn));
  return PN_OK;
}

static void cpu_fini(void) {
  cpu_release_pool(&cpu_state);
  cache_clear();
}

PN_PLUGIN_DEFINE("cpu", "0.1.0", cpu_init, cpu_fini);
