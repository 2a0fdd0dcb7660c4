/* `plugnet plugins` and `plugnet inspect`: both read manifests only, so they
 * work even where a plugin's library is missing or broken. */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <plugnet/plugin.h>
#include <plugnet/registry.h>

#include "cli.h"

#define DOC_WIDTH 72

/* The first line of a doc, shortened to fit a listing. */
static void one_line(const char *doc, char *out, size_t n) {
  if (!doc) doc = "";
  size_t len = strcspn(doc, "\n");
  if (len < n && doc[len] == '\0') {
    memcpy(out, doc, len + 1);
    return;
  }
  if (len > n - 4) len = n - 4;
  memcpy(out, doc, len);
  strcpy(out + len, "...");
}

static int usage_error(const char *cmd, const char *usage) {
  fprintf(stderr, "plugnet: usage: plugnet %s %s\n", cmd, usage);
  return 2;
}

int pn_cmd_plugins(int argc, char **argv) {
  const char *kind = NULL;
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--kind") == 0 && i + 1 < argc)
      kind = argv[++i];
    else if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
      printf("usage: plugnet plugins [--kind KIND]\n"
             "Lists every feature the plugin manifests declare (no library is opened).\n");
      return 0;
    } else
      return usage_error(argv[0], "[--kind KIND]");
  }
  if (pn_registry_scan() != PN_OK) return pn_cli_fail(NULL);
  int n = pn_registry_feature_count();
  int wname = 7, wkind = 4, wplugin = 6, wversion = 7;
  for (int i = 0; i < n; i++) {
    const pn_feature_info *f = pn_registry_feature_at(i);
    int l;
    if ((l = (int)strlen(f->name)) > wname) wname = l;
    if ((l = (int)strlen(f->kind)) > wkind) wkind = l;
    if ((l = (int)strlen(f->manifest->plugin)) > wplugin) wplugin = l;
    if ((l = (int)strlen(f->manifest->version)) > wversion) wversion = l;
  }
  printf("%-*s  %-*s  %-*s  %-*s  %s\n", wname, "FEATURE", wkind, "KIND", wplugin, "PLUGIN",
         wversion, "VERSION", "DESCRIPTION");
  int shown = 0;
  for (int i = 0; i < n; i++) {
    const pn_feature_info *f = pn_registry_feature_at(i);
    if (kind && strcmp(f->kind, kind) != 0) continue;
    char doc[DOC_WIDTH + 1];
    one_line(f->doc, doc, sizeof doc);
    printf("%-*s  %-*s  %-*s  %-*s  %s\n", wname, f->name, wkind, f->kind, wplugin,
           f->manifest->plugin, wversion, f->manifest->version, doc);
    shown++;
  }
  if (kind && !shown) fprintf(stderr, "plugnet: no feature of kind '%s'\n", kind);
  return 0;
}

static void range_text(const pn_param_schema *p, char *out, size_t n) {
  if (p->choices) {
    out[0] = '\0';
    for (char **c = p->choices; *c; c++) {
      size_t used = strlen(out);
      snprintf(out + used, n - used, "%s%s", c == p->choices ? "" : "|", *c);
    }
  } else if (p->has_min && p->has_max)
    snprintf(out, n, "[%.15g, %.15g]", p->min, p->max);
  else if (p->has_min)
    snprintf(out, n, ">= %.15g", p->min);
  else if (p->has_max)
    snprintf(out, n, "<= %.15g", p->max);
  else
    snprintf(out, n, "-");
}

static const char *type_text(pn_param_type t) {
  static const char *const names[] = {"int", "float", "bool", "string",
                                      "enum", "ints",  "path", "floats"};
  return (int)t >= 0 && (int)t < 8 ? names[t] : "?";
}

static void print_feature(const pn_feature_info *f) {
  printf("\nFeature %s (%s)\n", f->name, f->kind);
  if (f->doc) printf("  %s\n", f->doc);
  if (f->n_params == 0) {
    printf("  No parameters.\n");
    return;
  }
  int wname = 4, wtype = 4, wdef = 7, wrange = 13;
  char range[256];
  for (int i = 0; i < f->n_params; i++) {
    const pn_param_schema *p = &f->params[i];
    int l;
    range_text(p, range, sizeof range);
    if ((l = (int)strlen(p->name)) > wname) wname = l;
    if ((l = (int)strlen(type_text(p->type))) > wtype) wtype = l;
    if (p->default_value && (l = (int)strlen(p->default_value)) > wdef) wdef = l;
    if (!p->default_value && wdef < 10) wdef = 10;
    if ((l = (int)strlen(range)) > wrange) wrange = l;
  }
  printf("  Parameters:\n");
  printf("    %-*s  %-*s  %-*s  %-*s  %s\n", wname, "NAME", wtype, "TYPE", wdef, "DEFAULT", wrange,
         "RANGE/CHOICES", "DOC");
  for (int i = 0; i < f->n_params; i++) {
    const pn_param_schema *p = &f->params[i];
    range_text(p, range, sizeof range);
    printf("    %-*s  %-*s  %-*s  %-*s  %s\n", wname, p->name, wtype, type_text(p->type), wdef,
           p->default_value ? p->default_value : "(required)", wrange, range, p->doc ? p->doc : "");
  }
}

static void print_plugin(const pn_manifest *m) {
  printf("Plugin       %s\n", m->plugin);
  printf("Version      %s\n", m->version);
  if (m->description) printf("Description  %s\n", m->description);
  printf("Library      %s%s\n", m->library, access(m->library, F_OK) == 0 ? "" : " (missing)");
  printf("Manifest     %s\n", m->path);
  printf("ABI          %d.%d (this plugnet: %d.%d)\n", m->abi_major, m->abi_minor, PN_ABI_MAJOR,
         PN_ABI_MINOR);
  printf("Loaded       %s\n", pn_registry_is_loaded(m) ? "yes" : "no");
}

/* A plugin name (rather than a feature) shows every feature it provides. */
static const pn_manifest *find_plugin(const char *name) {
  int n = pn_registry_feature_count();
  for (int i = 0; i < n; i++) {
    const pn_manifest *m = pn_registry_feature_at(i)->manifest;
    if (strcmp(m->plugin, name) == 0) return m;
  }
  return NULL;
}

int pn_cmd_inspect(int argc, char **argv) {
  if (argc == 2 && (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0)) {
    printf("usage: plugnet inspect FEATURE|PLUGIN\n"
           "Shows a plugin's version, library, manifest and ABI, and each feature's "
           "parameters.\n");
    return 0;
  }
  if (argc != 2) return usage_error(argv[0], "FEATURE|PLUGIN");
  if (pn_registry_scan() != PN_OK) return pn_cli_fail(NULL);
  const pn_feature_info *f = pn_registry_find(argv[1]);
  if (f) {
    print_plugin(f->manifest);
    print_feature(f);
    return 0;
  }
  const pn_manifest *m = find_plugin(argv[1]);
  if (!m) return pn_cli_fail(NULL); /* the message from pn_registry_find */
  print_plugin(m);
  for (int i = 0; i < m->n_features; i++) print_feature(&m->features[i]);
  return 0;
}
