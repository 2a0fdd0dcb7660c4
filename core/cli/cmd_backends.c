/* `plugnet backends`: every backend plugin the registry knows, loaded, with
 * each of its devices probed. A plugin that fails to load is listed with its
 * error; it does not stop the listing. */
#include <stdio.h>
#include <string.h>

#include <plugnet/device.h>
#include <plugnet/registry.h>
#include <plugnet/status.h>

#include "cli.h"

static void print_device(const pn_device *d) {
  char why[256] = "", desc[256] = "";
  pn_status s = PN_OK;
  if (d->iface->probe) s = d->iface->probe(d->ctx, why, sizeof why);
  if (d->iface->describe) d->iface->describe(d->ctx, desc, sizeof desc);
  if (s == PN_OK)
    printf("%-12s %-10s available    %s\n", d->name, d->backend, desc);
  else
    printf("%-12s %-10s unavailable: %s%s%s\n", d->name, d->backend, *why ? why : pn_status_name(s),
           *desc ? "; " : "", desc);
}

static void list_backend(const pn_feature_info *f) {
  pn_device *first = NULL;
  int shown = 0;
  if (pn_device_get(f->name, &first) != PN_OK) {
    printf("%-12s %-10s unavailable: plugin failed to load: %s\n", "-", f->name, pn_last_error());
    return;
  }
  /* One plugin may drive several devices (cuda:0, cuda:1). */
  for (int i = 0; i < pn_device_count(); i++) {
    const pn_device *d = pn_device_at(i);
    if (d && strcmp(d->backend, f->name) == 0) {
      print_device(d);
      shown++;
    }
  }
  if (!shown) print_device(first);
}

int pn_cmd_backends(int argc, char **argv) {
  int found = 0;
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
      printf("usage: plugnet backends\n"
             "Loads every backend plugin and shows its devices: available or why not.\n");
      return 0;
    }
    fprintf(stderr, "plugnet: backends: unexpected argument '%s' (try --help)\n", argv[i]);
    return 2;
  }
  if (pn_registry_scan() != PN_OK) return pn_cli_fail(NULL);
  for (int i = 0; i < pn_registry_feature_count(); i++) {
    const pn_feature_info *f = pn_registry_feature_at(i);
    if (!f || !f->kind || strcmp(f->kind, "backend") != 0) continue;
    if (found++ == 0) printf("%-12s %-10s %s\n", "DEVICE", "BACKEND", "STATUS");
    list_backend(f);
  }
  if (!found) {
    fprintf(stderr, "plugnet: no backend plugins found (searched %s)\n", pn_registry_search_path());
    return 1;
  }
  return 0;
}
