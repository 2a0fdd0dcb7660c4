/* `plugnet topology`: the machine as hwloc sees it and the thread placement
 * the cpu backend will use. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <plugnet/status.h>
#include <plugnet/topology.h>

#include "cli.h"

/* A machine with hundreds of cores needs tens of kilobytes; grow until the
 * report fits rather than guess a bound. */
static char *build_report(void) {
  for (size_t n = 16384; n <= ((size_t)1 << 24); n *= 4) {
    char *buf = malloc(n);
    if (!buf) return NULL;
    if (pn_topology_report(buf, n) == PN_OK) return buf;
    free(buf);
  }
  return NULL;
}

int pn_cmd_topology(int argc, char **argv) {
  pn_topology_info info;
  char *report;
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
      printf("usage: plugnet topology\n"
             "Shows the packages, NUMA nodes, cores and PUs this process may use, and how the\n"
             "cpu backend places its workers. PLUGNET_THREADS sets the worker count,\n"
             "PLUGNET_BIND=0 turns binding off.\n");
      return 0;
    }
    fprintf(stderr, "plugnet: topology: unexpected argument '%s' (try --help)\n", argv[i]);
    return 2;
  }
  if (pn_topology_get(&info) != PN_OK || !(report = build_report())) {
    return pn_cli_fail("topology");
  }
  fputs(report, stdout);
  free(report);
  return 0;
}
