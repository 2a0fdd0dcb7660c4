/* Which host cores sit nearest a GPU: the threads that feed it (copies,
 * data loading) belong there, since DMA and pinned memory on the other
 * socket cross the inter-socket link. hwloc sees PCI devices only when I/O
 * discovery is on, which the core's topology leaves off (it costs a PCI
 * scan on every start), so the plugin loads its own, once, when it first
 * meets a device. */
#include <pthread.h>
#include <stdio.h>

#include <hwloc.h>

#include "cuda_dev.h"

static hwloc_topology_t topo;
static char topo_error[96];
static pthread_once_t topo_once = PTHREAD_ONCE_INIT;

static void load_topology(void) {
  if (hwloc_topology_init(&topo) != 0) {
    topo = NULL;
    snprintf(topo_error, sizeof topo_error, "hwloc_topology_init failed");
    return;
  }
  hwloc_topology_set_io_types_filter(topo, HWLOC_TYPE_FILTER_KEEP_IMPORTANT);
  if (hwloc_topology_load(topo) != 0) {
    hwloc_topology_destroy(topo);
    topo = NULL;
    snprintf(topo_error, sizeof topo_error, "hwloc_topology_load failed");
  }
}

pn_status pni_cuda_near_pus(const char *busid, char *buf, size_t n) {
  if (n) buf[0] = '\0';
  pthread_once(&topo_once, load_topology);
  if (!topo) return pn_error(PN_ERR_DEVICE, "cuda: nearest cores of %s: %s", busid, topo_error);
  hwloc_obj_t pci = hwloc_get_pcidev_by_busidstring(topo, busid);
  if (!pci) return pn_error(PN_ERR_NOT_FOUND, "cuda: hwloc does not see PCI device %s", busid);
  /* PCI objects have no cpuset; their first non-I/O ancestor (a package or
   * NUMA node's parent) carries the set of PUs local to the bus. */
  hwloc_obj_t near = hwloc_get_non_io_ancestor_obj(topo, pci);
  if (!near || !near->cpuset)
    return pn_error(PN_ERR_NOT_FOUND, "cuda: no CPU set for PCI device %s", busid);
  hwloc_bitmap_list_snprintf(buf, n, near->cpuset);
  return PN_OK;
}

/* Runs from the plugin's fini: no device is in use any more. */
void pni_cuda_topo_release(void) {
  if (topo) hwloc_topology_destroy(topo);
  topo = NULL;
}
