/* A fixed pool of workers for the cpu backend, built for per-op latency.
 *
 * Hand-off: the caller writes the task, then publishes a new value of the
 * atomic `job` word, (sequence << 16) | slices. Workers spin on that word for
 * a short while and then sleep on a condition variable, so back-to-back ops
 * find them awake and an idle process burns nothing. Worker k runs slice k
 * when k < slices; the caller runs slice 0 and then waits on the atomic
 * `pending` countdown, spinning first and sleeping if the rest take long.
 * Because the slice count travels in the job word, workers with no slice
 * never read the task, and the caller rewrites the task only after every
 * worker that does read it has counted down: the task needs no lock.
 *
 * Worker 0 is the calling thread and is never pinned. Pinning it would be
 * inherited by every thread it starts later (data loaders, a lazily started
 * BLAS pool) and would silently confine them to one core. Workers 1..n-1 pin
 * themselves to cores 1..n-1, leaving core 0 to the caller.
 *
 * A parallel_for issued while the pool is busy (from a worker, from inside
 * slice 0, or from another application thread) runs inline, so nesting and
 * concurrent callers are safe. The `worker` index handed to fn is unique only
 * among the slices of one call; an inline run is always worker 0.
 *
 * After fork() the child has no workers: every pool created before the fork
 * runs inline there. */
#include <errno.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>
#include <time.h>

#include <plugnet/log.h>
#include <plugnet/threadpool.h>
#include <plugnet/topology.h>

#define SLICE_BITS  16
#define SLICE_MASK  ((UINT64_C(1) << SLICE_BITS) - 1)
#define MAX_THREADS 4096
/* Spin with `pause` first (fastest hand-off), then with sched_yield so a
 * BLAS thread sharing the core gets it, then sleep. */
#define PAUSE_SPIN_NS 20000
#define YIELD_SPIN_NS 200000

typedef struct worker {
  pthread_t thread;
  struct pn_threadpool *pool;
  int index;
} worker;

struct pn_threadpool {
  _Alignas(64) atomic_uint_fast64_t job;
  _Alignas(64) atomic_int pending; /* slices other than 0 still running */
  _Alignas(64) struct {
    pn_parallel_fn fn;
    void *arg;
    int64_t n;
  } task;
  atomic_int busy;           /* a parallel_for owns the pool */
  atomic_int sleepers;       /* workers asleep (or about to be) on `wake` */
  atomic_int caller_waiting; /* the caller sleeps on `done` */
  atomic_int stop;
  pthread_mutex_t lock;
  pthread_cond_t wake, done;
  int size, bind, started;
  unsigned fork_epoch;
  worker *workers;
};

static _Thread_local int in_parallel;
static atomic_uint fork_epoch;
static pthread_once_t atfork_once = PTHREAD_ONCE_INIT;
static atomic_int bind_warned;

static void after_fork_in_child(void) { atomic_fetch_add(&fork_epoch, 1); }
static void install_atfork(void) { pthread_atfork(NULL, NULL, after_fork_in_child); }

static inline void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  __asm__ __volatile__("yield");
#endif
}

static int64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* One spin step; returns 0 once the spin budget is spent. */
static int spin_step(unsigned i, int64_t start) {
  int64_t spent;
  if ((i & 63) != 63) {
    cpu_relax();
    return 1;
  }
  spent = now_ns() - start;
  if (spent > YIELD_SPIN_NS) return 0;
  if (spent > PAUSE_SPIN_NS) sched_yield();
  return 1;
}

/* Slices differ by at most one element, so none is smaller than
 * floor(n / slices) >= grain. */
static void slice_bounds(int64_t n, int slices, int k, int64_t *begin, int64_t *end) {
  int64_t q = n / slices, r = n % slices;
  *begin = k * q + (k < r ? k : r);
  *end = *begin + q + (k < r ? 1 : 0);
}

/* ------------------------------------------------------------ workers */

static uint64_t wait_for_job(struct pn_threadpool *p, uint64_t seen) {
  int64_t start = now_ns();
  uint64_t job;
  for (unsigned i = 0;; i++) {
    job = atomic_load_explicit(&p->job, memory_order_acquire);
    if (job != seen || atomic_load_explicit(&p->stop, memory_order_relaxed)) return job;
    if (!spin_step(i, start)) break;
  }
  /* The caller stores `job` then reads `sleepers`; we raise `sleepers` then
   * read `job` (all seq_cst), so one of us sees the other: no lost wake-up. */
  pthread_mutex_lock(&p->lock);
  atomic_fetch_add(&p->sleepers, 1);
  while ((job = atomic_load(&p->job)) == seen && !atomic_load(&p->stop))
    pthread_cond_wait(&p->wake, &p->lock);
  atomic_fetch_sub(&p->sleepers, 1);
  pthread_mutex_unlock(&p->lock);
  return job;
}

static void finish_slice(struct pn_threadpool *p) {
  if (atomic_fetch_sub(&p->pending, 1) != 1) return;
  if (atomic_load(&p->caller_waiting)) {
    pthread_mutex_lock(&p->lock);
    pthread_cond_signal(&p->done);
    pthread_mutex_unlock(&p->lock);
  }
}

static void bind_worker(int index) {
  if (pn_topology_bind_thread(index) == PN_OK) return;
  if (atomic_exchange(&bind_warned, 1) == 0)
    PN_WARN("thread pool: worker %d runs unbound: %s", index, pn_last_error());
}

static void *worker_main(void *arg) {
  worker *w = arg;
  struct pn_threadpool *p = w->pool;
  uint64_t seen = 0;
  in_parallel = 1;
  if (p->bind) bind_worker(w->index);
  for (;;) {
    int64_t begin, end;
    uint64_t job = wait_for_job(p, seen);
    if (atomic_load(&p->stop)) break;
    seen = job;
    if ((uint64_t)w->index >= (job & SLICE_MASK)) continue;
    slice_bounds(p->task.n, (int)(job & SLICE_MASK), w->index, &begin, &end);
    p->task.fn(p->task.arg, begin, end, w->index);
    finish_slice(p);
  }
  return NULL;
}

/* ------------------------------------------------------------ the caller */

static void wait_for_slices(struct pn_threadpool *p) {
  int64_t start = now_ns();
  for (unsigned i = 0;; i++) {
    if (atomic_load_explicit(&p->pending, memory_order_acquire) == 0) return;
    if (!spin_step(i, start)) break;
  }
  pthread_mutex_lock(&p->lock);
  atomic_store(&p->caller_waiting, 1);
  while (atomic_load(&p->pending) != 0) pthread_cond_wait(&p->done, &p->lock);
  atomic_store(&p->caller_waiting, 0);
  pthread_mutex_unlock(&p->lock);
}

static void publish(struct pn_threadpool *p, int slices) {
  uint64_t seq = (atomic_load_explicit(&p->job, memory_order_relaxed) >> SLICE_BITS) + 1;
  atomic_store_explicit(&p->pending, slices - 1, memory_order_relaxed);
  atomic_store(&p->job, (seq << SLICE_BITS) | (uint64_t)slices);
  if (atomic_load(&p->sleepers) > 0) {
    pthread_mutex_lock(&p->lock);
    pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->lock);
  }
}

static int usable(const struct pn_threadpool *p) {
  return p && p->size > 1 && !in_parallel &&
         atomic_load_explicit(&fork_epoch, memory_order_relaxed) == p->fork_epoch;
}

void pn_threadpool_parallel_for(pn_threadpool *p, int64_t n, int64_t grain, pn_parallel_fn fn,
                                void *arg) {
  int64_t most = 0, begin, end;
  int slices;
  if (n <= 0 || !fn) return;
  if (grain < 1) grain = 1;
  if (usable(p)) most = n / grain;
  slices = most < 2 ? 1 : (most < p->size ? (int)most : p->size);
  if (slices == 1 || atomic_exchange_explicit(&p->busy, 1, memory_order_acquire)) {
    fn(arg, 0, n, 0);
    return;
  }
  p->task.fn = fn;
  p->task.arg = arg;
  p->task.n = n;
  publish(p, slices);
  slice_bounds(n, slices, 0, &begin, &end);
  in_parallel = 1;
  fn(arg, begin, end, 0);
  in_parallel = 0;
  wait_for_slices(p);
  atomic_store_explicit(&p->busy, 0, memory_order_release);
}

/* ------------------------------------------------------------ lifetime */

static void stop_workers(struct pn_threadpool *p) {
  atomic_store(&p->stop, 1);
  pthread_mutex_lock(&p->lock);
  pthread_cond_broadcast(&p->wake);
  pthread_mutex_unlock(&p->lock);
  for (int k = 0; k < p->started; k++) pthread_join(p->workers[k].thread, NULL);
  p->started = 0;
}

static void destroy(struct pn_threadpool *p) {
  /* A forked child has none of the parent's threads to join, and the lock
   * may have been held at the fork: leave both alone. */
  if (atomic_load(&fork_epoch) == p->fork_epoch) {
    stop_workers(p);
    pthread_cond_destroy(&p->done);
    pthread_cond_destroy(&p->wake);
    pthread_mutex_destroy(&p->lock);
  }
  free(p->workers);
  free(p);
}

static pn_status start_workers(struct pn_threadpool *p) {
  for (int k = 1; k < p->size; k++) {
    worker *w = &p->workers[k - 1];
    int err;
    w->pool = p;
    w->index = k;
    err = pthread_create(&w->thread, NULL, worker_main, w);
    if (err)
      return pn_error(PN_ERR_NOMEM, "thread pool: starting worker %d of %d failed: %s", k, p->size,
                      strerror(err));
    p->started++;
  }
  return PN_OK;
}

static struct pn_threadpool *allocate(int size, int bind) {
  struct pn_threadpool *p = aligned_alloc(64, sizeof *p);
  if (!p) return NULL;
  memset(p, 0, sizeof *p);
  atomic_init(&p->job, 0);
  atomic_init(&p->pending, 0);
  atomic_init(&p->busy, 0);
  atomic_init(&p->sleepers, 0);
  atomic_init(&p->caller_waiting, 0);
  atomic_init(&p->stop, 0);
  p->size = size;
  p->bind = bind;
  p->fork_epoch = atomic_load(&fork_epoch);
  p->workers = calloc((size_t)size, sizeof *p->workers);
  if (!p->workers) {
    free(p);
    return NULL;
  }
  pthread_mutex_init(&p->lock, NULL);
  pthread_cond_init(&p->wake, NULL);
  pthread_cond_init(&p->done, NULL);
  return p;
}

pn_status pn_threadpool_create(int n_threads, int bind, pn_threadpool **out) {
  struct pn_threadpool *p;
  pn_status s;
  if (!out) return pn_error(PN_ERR_INVALID, "pn_threadpool_create: out is NULL");
  *out = NULL;
  if (n_threads <= 0) {
    pn_topology_info info;
    PN_TRY(pn_topology_get(&info));
    n_threads = info.threads;
  }
  if (n_threads > MAX_THREADS)
    return pn_error(PN_ERR_INVALID, "pn_threadpool_create: %d threads asked, at most %d", n_threads,
                    MAX_THREADS);
  pthread_once(&atfork_once, install_atfork);
  p = allocate(n_threads, bind);
  if (!p) return pn_error(PN_ERR_NOMEM, "thread pool of %d workers: out of memory", n_threads);
  s = start_workers(p);
  if (s != PN_OK) {
    destroy(p);
    return s;
  }
  *out = p;
  return PN_OK;
}

int pn_threadpool_size(const pn_threadpool *p) { return p ? p->size : 1; }

/* ------------------------------------------------------------ the global pool */

/* Never freed: plugins, atexit handlers and other threads may still call
 * parallel_for while the process exits, and sleeping workers cost nothing.
 * The pointer stays reachable, so leak checkers do not report it. */
static pn_threadpool *global_pool;
static pthread_once_t global_once = PTHREAD_ONCE_INIT;

static void create_global(void) {
  pn_topology_info info;
  if (pn_topology_get(&info) != PN_OK) info.threads = 1, info.bound = 0;
  if (pn_threadpool_create(info.threads, info.bound, &global_pool) == PN_OK) return;
  PN_WARN("%s; running on one thread", pn_last_error());
  if (pn_threadpool_create(1, 0, &global_pool) != PN_OK) global_pool = NULL;
}

pn_threadpool *pn_threadpool_global(void) {
  pthread_once(&global_once, create_global);
  return global_pool;
}

void pn_threadpool_free(pn_threadpool *p) {
  if (!p) return;
  if (p == global_pool) {
    PN_DEBUG("pn_threadpool_free: the global pool lives until exit; ignored");
    return;
  }
  destroy(p);
}
