/* The machine as hwloc sees it, and the thread placement plugnet chooses:
 * one worker per physical core, bound to it, memory bound to its NUMA node. */
#ifndef PLUGNET_TOPOLOGY_H
#define PLUGNET_TOPOLOGY_H

#include <stddef.h>
#include <plugnet/status.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct pn_topology_info {
  int packages;
  int numa_nodes;
  int cores;        /* physical cores usable by this process */
  int pus;          /* hardware threads usable by this process */
  int threads;      /* workers chosen (PLUGNET_THREADS overrides) */
  int bound;        /* whether workers are bound to cores */
  char reason[160]; /* why this count and binding */
} pn_topology_info;

pn_status pn_topology_get(pn_topology_info *info);
/* Binds the calling thread to physical core `index` (of those usable; indexes
 * at or above the core count wrap round) and its memory to that core's NUMA
 * node. */
pn_status pn_topology_bind_thread(int index);
/* The cpuset of core `index` as a list string, e.g. "0" or "2,66". */
const char *pn_topology_core_cpus(int index, char *buf, size_t n);
/* Writes the human report shown by `plugnet topology`. */
pn_status pn_topology_report(char *buf, size_t n);

#ifdef __cplusplus
}
#endif
#endif
