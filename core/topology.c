/* The machine as hwloc sees it, and where plugnet's workers go.
 *
 * The topology is loaded once per process (pthread_once) and never changed
 * afterwards, so every query below is a read of immutable data and safe from
 * any thread; hwloc documents its binding calls as thread-safe on a loaded
 * topology. Only the environment (PLUGNET_THREADS, PLUGNET_BIND) is read on
 * each pn_topology_get, so a test or a long-lived host can change it.
 *
 * Nothing here fails hard: a container may forbid sched_setaffinity or hide
 * /sys, and plugnet must still run, unbound, saying why. */
#include <errno.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>
#include <unistd.h>

#include <hwloc.h>

#include <plugnet/log.h>
#include <plugnet/topology.h>

typedef struct core_slot {
  hwloc_bitmap_t cpus;  /* the core's PUs this process may use */
  hwloc_bitmap_t nodes; /* the NUMA nodes local to the core */
} core_slot;

static struct {
  hwloc_topology_t topo; /* NULL when hwloc could not load one */
  char load_error[128];
  hwloc_bitmap_t allowed; /* PUs this process may run on */
  core_slot *cores;
  int n_cores, n_pus, n_packages, n_numa;
  int can_bind;
  char bind_error[128]; /* why binding is unavailable */
} T;

static pthread_once_t load_once = PTHREAD_ONCE_INIT;
static atomic_int membind_warned;

/* ------------------------------------------------------------ loading */

static void load_fallback(const char *what, int err) {
  long n = sysconf(_SC_NPROCESSORS_ONLN);
  snprintf(T.load_error, sizeof T.load_error, "%s: %s", what, strerror(err));
  T.n_pus = T.n_cores = n > 0 ? (int)n : 1;
  T.n_packages = T.n_numa = 1;
  T.can_bind = 0;
  snprintf(T.bind_error, sizeof T.bind_error, "hwloc unusable (%.100s)", T.load_error);
}

/* The PUs this process may use: hwloc's allowed set (cgroups) narrowed to the
 * process's affinity mask (taskset, numactl, a batch scheduler). */
static void compute_allowed(void) {
  hwloc_bitmap_t mask = hwloc_bitmap_alloc();
  T.allowed = hwloc_bitmap_dup(hwloc_topology_get_allowed_cpuset(T.topo));
  hwloc_bitmap_and(T.allowed, T.allowed, hwloc_topology_get_topology_cpuset(T.topo));
  if (mask && hwloc_get_cpubind(T.topo, mask, HWLOC_CPUBIND_PROCESS) == 0 &&
      hwloc_bitmap_intersects(mask, T.allowed))
    hwloc_bitmap_and(T.allowed, T.allowed, mask);
  hwloc_bitmap_free(mask);
}

static void add_core(hwloc_obj_t obj) {
  core_slot *c = &T.cores[T.n_cores];
  if (!hwloc_bitmap_intersects(obj->cpuset, T.allowed)) return;
  c->cpus = hwloc_bitmap_dup(obj->cpuset);
  hwloc_bitmap_and(c->cpus, c->cpus, T.allowed);
  c->nodes = hwloc_bitmap_dup(obj->nodeset);
  T.n_cores++;
}

/* Cores are the unit of placement; a platform where hwloc reports no Core
 * objects gets one slot per PU instead. */
static int collect_cores(void) {
  hwloc_obj_type_t type = HWLOC_OBJ_CORE;
  int n = hwloc_get_nbobjs_by_type(T.topo, type);
  if (n <= 0) {
    type = HWLOC_OBJ_PU;
    n = hwloc_get_nbobjs_by_type(T.topo, type);
  }
  T.cores = calloc(n > 0 ? (size_t)n : 1, sizeof *T.cores);
  if (!T.cores) return -1;
  for (int i = 0; i < n; i++) add_core(hwloc_get_obj_by_type(T.topo, type, (unsigned)i));
  return T.n_cores > 0 ? 0 : -1;
}

static int count_intersecting(hwloc_obj_type_t type) {
  int n = 0;
  for (hwloc_obj_t o = NULL; (o = hwloc_get_next_obj_by_type(T.topo, type, o));)
    if (!o->cpuset || hwloc_bitmap_iszero(o->cpuset) ||
        hwloc_bitmap_intersects(o->cpuset, T.allowed))
      n++;
  return n > 0 ? n : 1;
}

/* Binding the calling thread to the set it already has changes nothing, but
 * tells us whether the kernel (or a seccomp filter) lets us bind at all. */
static void probe_binding(void) {
  const struct hwloc_topology_support *s = hwloc_topology_get_support(T.topo);
  hwloc_bitmap_t mine = hwloc_bitmap_alloc();
  T.can_bind = 0;
  if (!s->cpubind->set_thisthread_cpubind || !s->cpubind->get_thisthread_cpubind)
    snprintf(T.bind_error, sizeof T.bind_error, "hwloc reports no thread binding support here");
  else if (!mine || hwloc_get_cpubind(T.topo, mine, HWLOC_CPUBIND_THREAD) != 0)
    snprintf(T.bind_error, sizeof T.bind_error, "reading this thread's binding failed: %s",
             strerror(errno));
  else if (hwloc_set_cpubind(T.topo, mine, HWLOC_CPUBIND_THREAD) != 0)
    snprintf(T.bind_error, sizeof T.bind_error, "setting a thread's binding failed: %s",
             strerror(errno));
  else
    T.can_bind = 1;
  hwloc_bitmap_free(mine);
}

static void load(void) {
  if (hwloc_topology_init(&T.topo) != 0) {
    T.topo = NULL;
    load_fallback("hwloc_topology_init", errno);
    return;
  }
  if (hwloc_topology_load(T.topo) != 0) {
    int err = errno;
    hwloc_topology_destroy(T.topo);
    T.topo = NULL;
    load_fallback("hwloc_topology_load", err);
    return;
  }
  compute_allowed();
  if (!T.allowed || collect_cores() != 0) {
    hwloc_topology_destroy(T.topo);
    T.topo = NULL;
    load_fallback("finding this process's cores", ENOMEM);
    return;
  }
  T.n_pus = hwloc_bitmap_weight(T.allowed);
  if (T.n_pus < T.n_cores) T.n_pus = T.n_cores;
  T.n_packages = count_intersecting(HWLOC_OBJ_PACKAGE);
  T.n_numa = count_intersecting(HWLOC_OBJ_NUMANODE);
  probe_binding();
}

static void ensure_loaded(void) { pthread_once(&load_once, load); }

/* ------------------------------------------------------------ the choice */

/* PLUGNET_THREADS: a positive count, clamped to the PUs this process may
 * use (more workers than hardware threads only makes spinning workers
 * fight over them). Returns the count and writes why into `why`. */
static int choose_threads(char *why, size_t n) {
  const char *env = getenv("PLUGNET_THREADS");
  char *end = NULL;
  long v;
  if (!env || !*env) {
    snprintf(why, n,
             "one worker per physical core (cores %d, PUs %d): GEMM and vector "
             "kernels saturate a core's FPUs",
             T.n_cores, T.n_pus);
    return T.n_cores;
  }
  errno = 0;
  v = strtol(env, &end, 10);
  if (errno || *end || v < 1) {
    snprintf(why, n,
             "PLUGNET_THREADS='%.20s' is not a positive integer, ignored; one "
             "worker per physical core (%d)",
             env, T.n_cores);
    return T.n_cores;
  }
  if (v > T.n_pus) {
    snprintf(why, n, "PLUGNET_THREADS=%ld clamped to %d, the PUs this process may use", v, T.n_pus);
    return T.n_pus;
  }
  snprintf(why, n, "PLUGNET_THREADS=%ld (%d physical cores)", v, T.n_cores);
  return (int)v;
}

static int choose_binding(int threads, char *why, size_t n) {
  const char *env = getenv("PLUGNET_BIND");
  if (env && strcmp(env, "0") == 0) {
    snprintf(why, n, "; not bound (PLUGNET_BIND=0)");
    return 0;
  }
  if (!T.can_bind) {
    snprintf(why, n, "; binding unavailable: %s", T.bind_error);
    return 0;
  }
  if (threads == 1)
    snprintf(why, n, "; one thread, nothing to bind");
  else if (threads > T.n_cores)
    snprintf(why, n, "; bound to cores, some shared (more workers than cores)");
  else
    snprintf(why, n, "; each worker bound to its own core");
  return 1;
}

pn_status pn_topology_get(pn_topology_info *info) {
  size_t used;
  if (!info) return pn_error(PN_ERR_INVALID, "pn_topology_get: info is NULL");
  ensure_loaded();
  memset(info, 0, sizeof *info);
  info->packages = T.n_packages;
  info->numa_nodes = T.n_numa;
  info->cores = T.n_cores;
  info->pus = T.n_pus;
  info->threads = choose_threads(info->reason, sizeof info->reason);
  used = strlen(info->reason);
  info->bound = choose_binding(info->threads, info->reason + used, sizeof info->reason - used);
  return PN_OK;
}

/* ------------------------------------------------------------ binding */

static void bind_memory(int core) {
  const core_slot *c = &T.cores[core];
  char nodes[64];
  if (!c->nodes || hwloc_bitmap_iszero(c->nodes)) return;
  if (hwloc_set_membind(T.topo, c->nodes, HWLOC_MEMBIND_BIND,
                        HWLOC_MEMBIND_THREAD | HWLOC_MEMBIND_BYNODESET) == 0)
    return;
  hwloc_bitmap_list_snprintf(nodes, sizeof nodes, c->nodes);
  /* One node means all memory is local anyway; only a multi-node machine
   * loses anything, and it still runs (first touch places most pages). */
  if (T.n_numa <= 1)
    PN_DEBUG("memory binding to NUMA node %s failed (single node, harmless): %s", nodes,
             strerror(errno));
  else if (atomic_exchange(&membind_warned, 1) == 0)
    pn_log_write(PN_LOG_WARN, "memory binding to NUMA node %s failed, memory stays unbound: %s",
                 nodes, strerror(errno));
}

/* Indexes past the core count wrap round, so worker k of an oversubscribed
 * pool shares core k mod cores: the report shows the same mapping. */
pn_status pn_topology_bind_thread(int index) {
  char cpus[64];
  int core;
  ensure_loaded();
  if (index < 0)
    return pn_error(PN_ERR_INVALID, "pn_topology_bind_thread: core index %d < 0", index);
  if (!T.can_bind) return pn_error(PN_ERR_DEVICE, "binding unavailable: %s", T.bind_error);
  core = index % T.n_cores;
  if (hwloc_set_cpubind(T.topo, T.cores[core].cpus, HWLOC_CPUBIND_THREAD) != 0) {
    hwloc_bitmap_list_snprintf(cpus, sizeof cpus, T.cores[core].cpus);
    return pn_error(PN_ERR_DEVICE, "binding a thread to core %d (PUs %s) failed: %s", core, cpus,
                    strerror(errno));
  }
  bind_memory(core);
  return PN_OK;
}

const char *pn_topology_core_cpus(int index, char *buf, size_t n) {
  if (!buf || n == 0) return buf;
  buf[0] = '\0';
  ensure_loaded();
  if (index < 0) return buf;
  if (!T.topo) {
    snprintf(buf, n, "%d", index % T.n_cores);
    return buf;
  }
  hwloc_bitmap_list_snprintf(buf, n, T.cores[index % T.n_cores].cpus);
  return buf;
}

/* ------------------------------------------------------------ the report */

typedef struct text {
  char *buf;
  size_t cap, len; /* len may exceed cap: the report was truncated */
} text;

static void put(text *t, const char *fmt, ...) PN_PRINTF(2, 3);
static void put(text *t, const char *fmt, ...) {
  va_list ap;
  size_t room = t->len < t->cap ? t->cap - t->len : 0;
  int w;
  va_start(ap, fmt);
  w = vsnprintf(room ? t->buf + t->len : NULL, room, fmt, ap);
  va_end(ap);
  if (w > 0) t->len += (size_t)w;
}

static const char *plural(int n, const char *one, const char *many) { return n == 1 ? one : many; }

static void report_numa(text *t) {
  char pus[128];
  hwloc_bitmap_t set = hwloc_bitmap_alloc();
  for (hwloc_obj_t o = NULL; (o = hwloc_get_next_obj_by_type(T.topo, HWLOC_OBJ_NUMANODE, o));) {
    pus[0] = '\0';
    if (set && o->cpuset) {
      hwloc_bitmap_and(set, o->cpuset, T.allowed);
      hwloc_bitmap_list_snprintf(pus, sizeof pus, set);
    }
    if (o->attr->numanode.local_memory)
      put(t, "  NUMA node %u: %llu MiB, PUs %s\n", o->os_index,
          (unsigned long long)(o->attr->numanode.local_memory >> 20), *pus ? pus : "none");
    else
      put(t, "  NUMA node %u: memory size unknown, PUs %s\n", o->os_index, *pus ? pus : "none");
  }
  hwloc_bitmap_free(set);
}

static void report_machine(text *t) {
  char allowed[128], all[128];
  put(t, "machine: %d %s, %d NUMA %s, %d physical %s, %d %s usable by this process\n", T.n_packages,
      plural(T.n_packages, "package", "packages"), T.n_numa, plural(T.n_numa, "node", "nodes"),
      T.n_cores, plural(T.n_cores, "core", "cores"), T.n_pus,
      plural(T.n_pus, "PU (hardware thread)", "PUs (hardware threads)"));
  if (!T.topo) {
    put(t, "  hwloc could not read the topology (%s); counts from sysconf\n", T.load_error);
    return;
  }
  hwloc_bitmap_list_snprintf(allowed, sizeof allowed, T.allowed);
  hwloc_bitmap_list_snprintf(all, sizeof all, hwloc_topology_get_topology_cpuset(T.topo));
  put(t, "  allowed PUs: %s (machine: %s)\n", allowed, all);
  report_numa(t);
  for (int i = 0; i < T.n_cores; i++) {
    char cpus[64];
    put(t, "  core %d: PUs %s\n", i, pn_topology_core_cpus(i, cpus, sizeof cpus));
  }
}

static void report_worker(text *t, int k, int bound) {
  char cpus[64], nodes[64] = "0";
  int core = k % T.n_cores;
  pn_topology_core_cpus(core, cpus, sizeof cpus);
  if (T.topo && T.cores[core].nodes)
    hwloc_bitmap_list_snprintf(nodes, sizeof nodes, T.cores[core].nodes);
  if (k == 0)
    put(t,
        "  worker 0 -> core %d (PUs %s), NUMA node %s: the calling thread, left unpinned "
        "(threads it starts would inherit a pin)\n",
        core, cpus, nodes);
  else
    put(t, "  worker %d -> core %d (PUs %s), NUMA node %s%s\n", k, core, cpus, nodes,
        bound ? "" : " (not bound)");
}

/* NVIDIA GPUs on the PCI bus and the PUs nearest each, where the threads
 * that feed one belong (`plugnet backends` shows which cuda:N has which bus
 * id). hwloc sees PCI devices only with I/O discovery, which the placement
 * topology leaves off (a PCI scan on every start), so the report loads a
 * second topology of its own. */
static void report_gpus(text *t) {
  hwloc_topology_t io;
  int found = 0;
  if (hwloc_topology_init(&io) != 0) return;
  hwloc_topology_set_io_types_filter(io, HWLOC_TYPE_FILTER_KEEP_IMPORTANT);
  int loaded = hwloc_topology_load(io) == 0;
  for (hwloc_obj_t o = NULL; loaded && (o = hwloc_get_next_pcidev(io, o));) {
    const struct hwloc_pcidev_attr_s *pci = &o->attr->pcidev;
    if (pci->vendor_id != 0x10de || pci->class_id >> 8 != 0x03) continue; /* NVIDIA display */
    hwloc_obj_t near = hwloc_get_non_io_ancestor_obj(io, o);
    char pus[128] = "unknown";
    if (near && near->cpuset) hwloc_bitmap_list_snprintf(pus, sizeof pus, near->cpuset);
    put(t, "GPU %04x:%02x:%02x.%x (NVIDIA): nearest PUs %s\n", (unsigned)pci->domain,
        (unsigned)pci->bus, (unsigned)pci->dev, (unsigned)pci->func, pus);
    found++;
  }
  if (!found) put(t, "GPUs: no CUDA device (no NVIDIA GPU on the PCI bus)\n");
  hwloc_topology_destroy(io);
}

pn_status pn_topology_report(char *buf, size_t n) {
  pn_topology_info info;
  text t = {buf, n, 0};
  if (!buf || n == 0) return pn_error(PN_ERR_INVALID, "pn_topology_report: no buffer");
  buf[0] = '\0';
  PN_TRY(pn_topology_get(&info));
  report_machine(&t);
  if (info.threads == 1)
    put(&t, "placement: 1 worker, the calling thread alone (nothing to bind)\n");
  else
    put(&t, "placement: %d workers, %s\n", info.threads,
        info.bound ? "bound to cores, memory to their NUMA node" : "unbound");
  for (int k = 0; k < info.threads; k++) report_worker(&t, k, info.bound);
  if (!T.can_bind) put(&t, "  binding unavailable: %s\n", T.bind_error);
  put(&t,
      "OpenBLAS: single-threaded inside the %d %s, which split each large matrix product, so "
      "BLAS and the pool never compete for cores\n",
      info.threads, plural(info.threads, "worker", "workers"));
  put(&t, "reason: %s\n", info.reason);
  report_gpus(&t);
  if (t.len >= n)
    return pn_error(PN_ERR_INVALID, "pn_topology_report: %zu bytes needed, buffer holds %zu",
                    t.len + 1, n);
  return PN_OK;
}
