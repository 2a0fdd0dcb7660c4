/* The thread pool splits work exactly, whatever the sizes, and the topology
 * it is built from is sane and honours PLUGNET_THREADS / PLUGNET_BIND. */
#include <sched.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include <plugnet/threadpool.h>
#include <plugnet/topology.h>

#define MAX_N 10007

/* ------------------------------------------------------------ coverage */

typedef struct coverage {
  atomic_int hits[MAX_N];
  atomic_int calls;
  atomic_int too_small; /* slices shorter than the grain while split */
  atomic_int bad_worker;
  atomic_uint workers_seen; /* bit per worker index */
  int64_t grain;
  int size;
} coverage;

static void count_indexes(void *arg, int64_t begin, int64_t end, int worker) {
  coverage *c = arg;
  atomic_fetch_add(&c->calls, 1);
  if (worker < 0 || worker >= c->size)
    atomic_fetch_add(&c->bad_worker, 1);
  else if (atomic_fetch_or(&c->workers_seen, 1u << worker) & (1u << worker))
    atomic_fetch_add(&c->bad_worker, 1); /* the same worker index twice in one call */
  if (end - begin < c->grain) atomic_fetch_add(&c->too_small, 1);
  for (int64_t i = begin; i < end; i++) atomic_fetch_add(&c->hits[i], 1);
}

static void check_coverage(pn_threadpool *p, int size, int64_t n, int64_t grain) {
  static coverage c;
  int64_t g = grain < 1 ? 1 : grain;
  memset(&c, 0, sizeof c);
  c.grain = g;
  c.size = size;
  pn_threadpool_parallel_for(p, n, grain, count_indexes, &c);
  for (int64_t i = 0; i < n; i++) {
    if (atomic_load(&c.hits[i]) != 1)
      fail_msg("size %d n %lld grain %lld: index %lld hit %d times", size, (long long)n,
               (long long)grain, (long long)i, atomic_load(&c.hits[i]));
  }
  if (n == 0)
    assert_int_equal(atomic_load(&c.calls), 0);
  else if (n <= g)
    assert_int_equal(atomic_load(&c.calls), 1);
  assert_true(atomic_load(&c.calls) <= size);
  assert_true(atomic_load(&c.calls) <= (n > g ? n / g : 1));
  assert_int_equal(atomic_load(&c.bad_worker), 0);
  /* Only a single inline slice may be shorter than the grain. */
  if (atomic_load(&c.calls) > 1) assert_int_equal(atomic_load(&c.too_small), 0);
}

static void test_every_index_once(void **state) {
  static const int sizes[] = {1, 2, 3, 4, 7, 8};
  static const int64_t ns[] = {0, 1, 2, 3, 5, 7, 8, 13, 64, 97, 1000, 4099, MAX_N};
  static const int64_t grains[] = {-5, 0, 1, 2, 3, 16, 1000, 20000};
  (void)state;
  for (size_t s = 0; s < sizeof sizes / sizeof *sizes; s++) {
    pn_threadpool *p = NULL;
    assert_int_equal(pn_threadpool_create(sizes[s], 0, &p), PN_OK);
    assert_int_equal(pn_threadpool_size(p), sizes[s]);
    for (size_t i = 0; i < sizeof ns / sizeof *ns; i++)
      for (size_t g = 0; g < sizeof grains / sizeof *grains; g++)
        check_coverage(p, sizes[s], ns[i], grains[g]);
    pn_threadpool_free(p);
  }
}

static void test_uses_several_workers(void **state) {
  static coverage c;
  pn_threadpool *p = NULL;
  (void)state;
  assert_int_equal(pn_threadpool_create(3, 0, &p), PN_OK);
  memset(&c, 0, sizeof c);
  c.grain = 1;
  c.size = 3;
  pn_threadpool_parallel_for(p, 3000, 1, count_indexes, &c);
  assert_int_equal(atomic_load(&c.calls), 3);
  assert_int_equal(atomic_load(&c.workers_seen), 7u);
  pn_threadpool_free(p);
}

static void test_null_pool_runs_inline(void **state) {
  static coverage c;
  (void)state;
  memset(&c, 0, sizeof c);
  c.size = 1;
  c.grain = 1;
  pn_threadpool_parallel_for(NULL, 100, 1, count_indexes, &c);
  assert_int_equal(atomic_load(&c.calls), 1);
  assert_int_equal(pn_threadpool_size(NULL), 1);
  pn_threadpool_free(NULL);
}

/* ------------------------------------------------------------ determinism */

typedef struct wave {
  float *out;
} wave;

static void fill_wave(void *arg, int64_t begin, int64_t end, int worker) {
  wave *w = arg;
  (void)worker;
  for (int64_t i = begin; i < end; i++) w->out[i] = (float)(i % 97) * 0.37f - (float)(i % 13);
}

static void test_results_independent_of_threads(void **state) {
  enum { N = 50021 };
  float *want = calloc(N, sizeof *want), *got = calloc(N, sizeof *got);
  wave w = {want};
  (void)state;
  assert_non_null(want);
  assert_non_null(got);
  fill_wave(&w, 0, N, 0);
  for (int size = 1; size <= 6; size++) {
    pn_threadpool *p = NULL;
    assert_int_equal(pn_threadpool_create(size, 1, &p), PN_OK);
    for (int64_t grain = 1; grain <= 40000; grain *= 7) {
      memset(got, 0, N * sizeof *got);
      w.out = got;
      pn_threadpool_parallel_for(p, N, grain, fill_wave, &w);
      assert_memory_equal(got, want, N * sizeof *got);
    }
    pn_threadpool_free(p);
  }
  free(want);
  free(got);
}

/* ------------------------------------------------------------ nesting */

typedef struct nesting {
  pn_threadpool *pool;
  atomic_int outer_calls;
  atomic_int inner_calls;
  atomic_int inner_not_inline;
  atomic_int inner_hits[256];
} nesting;

typedef struct inner_arg {
  nesting *nest;
  pthread_t outer_thread;
} inner_arg;

static void inner(void *arg, int64_t begin, int64_t end, int worker) {
  inner_arg *a = arg;
  atomic_fetch_add(&a->nest->inner_calls, 1);
  if (!pthread_equal(pthread_self(), a->outer_thread) || worker != 0 || begin != 0 || end != 256)
    atomic_fetch_add(&a->nest->inner_not_inline, 1);
}

static void outer(void *arg, int64_t begin, int64_t end, int worker) {
  nesting *nest = arg;
  inner_arg a = {nest, pthread_self()};
  (void)worker;
  atomic_fetch_add(&nest->outer_calls, 1);
  for (int64_t i = begin; i < end; i++) {
    pn_threadpool_parallel_for(nest->pool, 256, 1, inner, &a);
    atomic_fetch_add(&nest->inner_hits[i], 1);
  }
}

static void test_nested_runs_inline(void **state) {
  static nesting nest;
  (void)state;
  memset(&nest, 0, sizeof nest);
  assert_int_equal(pn_threadpool_create(4, 0, &nest.pool), PN_OK);
  pn_threadpool_parallel_for(nest.pool, 64, 1, outer, &nest);
  assert_int_equal(atomic_load(&nest.outer_calls), 4);
  assert_int_equal(atomic_load(&nest.inner_calls), 64);
  assert_int_equal(atomic_load(&nest.inner_not_inline), 0);
  for (int i = 0; i < 64; i++) assert_int_equal(atomic_load(&nest.inner_hits[i]), 1);
  pn_threadpool_free(nest.pool);
}

/* ------------------------------------------------------------ concurrency */

typedef struct caller_arg {
  pn_threadpool *pool;
  int failures;
} caller_arg;

static void *hammer(void *arg) {
  caller_arg *a = arg;
  coverage *c = calloc(1, sizeof *c);
  if (!c) {
    a->failures = -1;
    return NULL;
  }
  for (int round = 0; round < 200; round++) {
    memset(c, 0, sizeof *c);
    c->grain = 1;
    c->size = pn_threadpool_size(a->pool);
    pn_threadpool_parallel_for(a->pool, 1000 + round, 1, count_indexes, c);
    for (int i = 0; i < 1000 + round; i++)
      if (atomic_load(&c->hits[i]) != 1) a->failures++;
    if (atomic_load(&c->bad_worker)) a->failures++;
  }
  free(c);
  return NULL;
}

/* Application threads sharing one pool: whoever finds it busy runs inline. */
static void test_concurrent_callers(void **state) {
  pn_threadpool *p = NULL;
  pthread_t t[3];
  caller_arg args[3];
  (void)state;
  assert_int_equal(pn_threadpool_create(3, 0, &p), PN_OK);
  for (int i = 0; i < 3; i++) {
    args[i] = (caller_arg){p, 0};
    assert_int_equal(pthread_create(&t[i], NULL, hammer, &args[i]), 0);
  }
  for (int i = 0; i < 3; i++) {
    pthread_join(t[i], NULL);
    assert_int_equal(args[i].failures, 0);
  }
  pn_threadpool_free(p);
}

/* Long enough that every worker gives up spinning and sleeps, so the
 * wake-up path is exercised; no timing is asserted. */
static void test_wakes_sleeping_workers(void **state) {
  static coverage c;
  pn_threadpool *p = NULL;
  struct timespec pause = {0, 3 * 1000 * 1000};
  (void)state;
  assert_int_equal(pn_threadpool_create(4, 0, &p), PN_OK);
  for (int round = 0; round < 5; round++) {
    nanosleep(&pause, NULL);
    memset(&c, 0, sizeof c);
    c.grain = 1;
    c.size = 4;
    pn_threadpool_parallel_for(p, 4000, 1, count_indexes, &c);
    assert_int_equal(atomic_load(&c.calls), 4);
    for (int i = 0; i < 4000; i++) assert_int_equal(atomic_load(&c.hits[i]), 1);
  }
  pn_threadpool_free(p);
}

static void test_fork_child_runs_inline(void **state) {
  pn_threadpool *p = NULL;
  int status = 0;
  pid_t pid;
  (void)state;
  assert_int_equal(pn_threadpool_create(3, 0, &p), PN_OK);
  pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    static coverage c;
    c.grain = 1;
    c.size = 3;
    pn_threadpool_parallel_for(p, 500, 1, count_indexes, &c);
    for (int i = 0; i < 500; i++)
      if (atomic_load(&c.hits[i]) != 1) _exit(1);
    _exit(atomic_load(&c.calls) == 1 ? 0 : 2);
  }
  assert_int_equal(waitpid(pid, &status, 0), pid);
  assert_true(WIFEXITED(status));
  assert_int_equal(WEXITSTATUS(status), 0);
  pn_threadpool_free(p);
}

/* ------------------------------------------------------------ topology */

static void test_global_pool_follows_topology(void **state) {
  pn_topology_info info;
  pn_threadpool *g = pn_threadpool_global();
  static coverage c;
  (void)state;
  assert_int_equal(pn_topology_get(&info), PN_OK);
  assert_non_null(g);
  assert_ptr_equal(pn_threadpool_global(), g);
  assert_int_equal(pn_threadpool_size(g), info.threads);
  c.grain = 1;
  c.size = info.threads;
  pn_threadpool_parallel_for(g, 999, 1, count_indexes, &c);
  for (int i = 0; i < 999; i++) assert_int_equal(atomic_load(&c.hits[i]), 1);
  pn_threadpool_free(g); /* ignored: the global pool lives until exit */
  assert_int_equal(pn_threadpool_size(pn_threadpool_global()), info.threads);
}

static void test_topology_is_sane(void **state) {
  pn_topology_info info;
  char cpus[64];
  char *report = malloc(1 << 16);
  (void)state;
  assert_non_null(report);
  assert_int_equal(pn_topology_get(&info), PN_OK);
  assert_true(info.packages >= 1);
  assert_true(info.numa_nodes >= 1);
  assert_true(info.cores >= 1);
  assert_true(info.pus >= info.cores);
  assert_true(info.threads >= 1);
  assert_true(info.threads <= info.pus);
  assert_true(strlen(info.reason) > 0);
  assert_true(strlen(pn_topology_core_cpus(0, cpus, sizeof cpus)) > 0);
  assert_int_equal(pn_topology_report(report, 1 << 16), PN_OK);
  assert_non_null(strstr(report, "worker 0 -> core 0"));
  assert_non_null(strstr(report, "reason: "));
  assert_non_null(strstr(report, "OpenBLAS"));
  assert_int_not_equal(pn_topology_report(report, 8), PN_OK);
  assert_int_equal(pn_topology_get(NULL), PN_ERR_INVALID);
  free(report);
}

static void with_env(const char *name, const char *value, pn_topology_info *info) {
  if (value)
    setenv(name, value, 1);
  else
    unsetenv(name);
  assert_int_equal(pn_topology_get(info), PN_OK);
}

static void test_threads_override(void **state) {
  pn_topology_info info, plain;
  const char *saved = getenv("PLUGNET_THREADS");
  char *keep = saved ? strdup(saved) : NULL;
  (void)state;
  with_env("PLUGNET_THREADS", NULL, &plain);
  assert_int_equal(plain.threads, plain.cores);

  with_env("PLUGNET_THREADS", "1", &info);
  assert_int_equal(info.threads, 1);
  assert_non_null(strstr(info.reason, "PLUGNET_THREADS=1"));

  with_env("PLUGNET_THREADS", "1000000", &info);
  assert_int_equal(info.threads, info.pus);
  assert_non_null(strstr(info.reason, "clamped"));

  with_env("PLUGNET_THREADS", "two", &info);
  assert_int_equal(info.threads, info.cores);
  assert_non_null(strstr(info.reason, "ignored"));

  with_env("PLUGNET_THREADS", "0", &info);
  assert_int_equal(info.threads, info.cores);

  with_env("PLUGNET_THREADS", keep, &info);
  free(keep);
}

static void test_bind_override(void **state) {
  pn_topology_info info;
  const char *saved = getenv("PLUGNET_BIND");
  char *keep = saved ? strdup(saved) : NULL;
  (void)state;
  with_env("PLUGNET_BIND", "0", &info);
  assert_int_equal(info.bound, 0);
  assert_non_null(strstr(info.reason, "PLUGNET_BIND=0"));
  with_env("PLUGNET_BIND", NULL, &info);
  /* Unbound without the variable only when binding is impossible here. */
  if (!info.bound) assert_non_null(strstr(info.reason, "binding unavailable"));
  with_env("PLUGNET_BIND", keep, &info);
  free(keep);
}

/* Parses hwloc's list syntax ("0", "2,66", "0-3,8") into a cpu_set_t. */
static void parse_cpu_list(const char *s, cpu_set_t *set) {
  CPU_ZERO(set);
  for (;;) {
    char *end;
    long a = strtol(s, &end, 10), b = a;
    if (end == s) return;
    if (*end == '-') b = strtol(end + 1, &end, 10);
    for (long c = a; c <= b && c < CPU_SETSIZE; c++) CPU_SET((int)c, set);
    if (*end != ',') return;
    s = end + 1;
  }
}

static void *bind_and_check(void *arg) {
  int *result = arg;
  cpu_set_t want, have;
  char cpus[256];
  pn_status s = pn_topology_bind_thread(0);
  if (s != PN_OK) {
    /* Containers may forbid binding; the error must say so. */
    *result = strstr(pn_last_error(), "binding") ? 0 : 1;
    return NULL;
  }
  parse_cpu_list(pn_topology_core_cpus(0, cpus, sizeof cpus), &want);
  if (pthread_getaffinity_np(pthread_self(), sizeof have, &have) != 0)
    *result = 2;
  else
    *result = CPU_EQUAL(&want, &have) ? 0 : 3;
  return NULL;
}

static void test_bind_thread(void **state) {
  pthread_t t;
  int result = -1;
  (void)state;
  assert_int_equal(pn_topology_bind_thread(-1), PN_ERR_INVALID);
  assert_int_equal(pthread_create(&t, NULL, bind_and_check, &result), 0);
  pthread_join(t, NULL);
  assert_int_equal(result, 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_global_pool_follows_topology),
      cmocka_unit_test(test_every_index_once),
      cmocka_unit_test(test_uses_several_workers),
      cmocka_unit_test(test_null_pool_runs_inline),
      cmocka_unit_test(test_results_independent_of_threads),
      cmocka_unit_test(test_nested_runs_inline),
      cmocka_unit_test(test_concurrent_callers),
      cmocka_unit_test(test_wakes_sleeping_workers),
      cmocka_unit_test(test_fork_child_runs_inline),
      cmocka_unit_test(test_topology_is_sane),
      cmocka_unit_test(test_threads_override),
      cmocka_unit_test(test_bind_override),
      cmocka_unit_test(test_bind_thread),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
