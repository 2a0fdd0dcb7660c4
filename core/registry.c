/* The feature registry: which manifests exist (a scan of the search path)
 * and which plugins are open. One recursive mutex guards it all: a plugin's
 * init may itself look features up or open another plugin. */
#include <dirent.h>
#include <dlfcn.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <plugnet/log.h>

#include "config.h"
#include "internal.h"
#include "plugin_internal.h"

#ifndef PN_PLUGINDIR
#error "PN_PLUGINDIR (the installed plugin directory) must be defined by the build"
#endif

/* Deep enough for plugins/<group>/<name>/<name>.yaml below a search
 * directory, shallow enough that a PLUGNET_PLUGIN_PATH of $HOME stays cheap. */
#define MAX_SCAN_DEPTH 3

typedef struct entry {
  pn_manifest *m;
  pni_plugin *plugin;
  int loading;  /* init is running: catches a plugin that needs itself */
  int load_seq; /* order of loading, so reset unloads in reverse */
} entry;

static struct {
  int scanned;
  entry *entries;
  int n_entries;
  const pn_feature_info **features; /* every feature, in scan order */
  int n_features;
  char *search_path;
  int next_seq;
} R;

static pthread_mutex_t lock;
static pthread_once_t lock_once = PTHREAD_ONCE_INIT;

static void lock_init(void) {
  pthread_mutexattr_t a;
  pthread_mutexattr_init(&a);
  pthread_mutexattr_settype(&a, PTHREAD_MUTEX_RECURSIVE);
  pthread_mutex_init(&lock, &a);
  pthread_mutexattr_destroy(&a);
}

static void enter(void) {
  pthread_once(&lock_once, lock_init);
  pthread_mutex_lock(&lock);
}

static void leave(void) { pthread_mutex_unlock(&lock); }

/* ---- the search path */

static int is_below(const char *path, const char *dir) {
  size_t n = strlen(dir);
  return strncmp(path, dir, n) == 0 && (path[n] == '/' || path[n] == '\0');
}

/* Whether this libplugnet is the one in the build tree (tests, running
 * uninstalled): then plugins and share/ files come from the trees, never
 * from an older installed set. */
int pni_running_uninstalled(void) {
  Dl_info info;
  char lib[PATH_MAX], build[PATH_MAX];
  return dladdr((void *)&pn_registry_scan, &info) && info.dli_fname &&
         realpath(info.dli_fname, lib) && realpath(PN_ABS_BUILDDIR, build) &&
         is_below(lib, build);
}

static char *default_dir(void) {
  char *dir = NULL;
  if (pni_running_uninstalled()) {
    if (asprintf(&dir, "%s/plugins", PN_ABS_BUILDDIR) < 0) dir = NULL;
    return dir;
  }
  return strdup(PN_PLUGINDIR);
}

static const char *search_path_locked(void) {
  if (R.search_path) return R.search_path;
  const char *env = getenv("PLUGNET_PLUGIN_PATH");
  char *def = default_dir();
  if (!def) return "";
  char *s = NULL;
  if (env && *env) {
    if (asprintf(&s, "%s:%s", env, def) < 0) s = NULL;
    free(def);
  } else {
    s = def;
  }
  R.search_path = s;
  return s ? s : "";
}

const char *pn_registry_search_path(void) {
  enter();
  const char *s = search_path_locked();
  leave();
  return s;
}

/* ---- scanning */

static const pn_feature_info *find_feature(const char *name) {
  for (int i = 0; i < R.n_features; i++)
    if (strcmp(R.features[i]->name, name) == 0) return R.features[i];
  return NULL;
}

static pn_status add_manifest(pn_manifest *m) {
  for (int i = 0; i < m->n_features; i++) {
    const pn_feature_info *other = find_feature(m->features[i].name);
    if (other)
      return pn_error(PN_ERR_PLUGIN, "feature '%s' is declared twice: in %s and in %s",
                      m->features[i].name, other->manifest->path, m->path);
  }
  entry *e = realloc(R.entries, sizeof *e * (size_t)(R.n_entries + 1));
  if (!e) return pn_error(PN_ERR_NOMEM, "out of memory");
  R.entries = e;
  const pn_feature_info **f =
      realloc(R.features, sizeof *f * (size_t)(R.n_features + m->n_features));
  if (!f) return pn_error(PN_ERR_NOMEM, "out of memory");
  R.features = f;
  for (int i = 0; i < m->n_features; i++) R.features[R.n_features++] = &m->features[i];
  R.entries[R.n_entries++] = (entry){m, NULL, 0, 0};
  return PN_OK;
}

static pn_status scan_file(const char *path) {
  char real[PATH_MAX];
  if (!realpath(path, real)) return PN_OK; /* vanished while scanning */
  for (int i = 0; i < R.n_entries; i++)
    if (strcmp(R.entries[i].m->path, real) == 0) return PN_OK; /* the same file twice */
  pn_manifest *m;
  PN_TRY(pn_manifest_load(real, &m));
  PN_DEBUG("manifest %s: plugin %s, %d feature(s)", real, m->plugin, m->n_features);
  pn_status s = add_manifest(m);
  if (s != PN_OK) pn_manifest_free(m);
  return s;
}

static int has_suffix(const char *s, const char *suffix) {
  size_t n = strlen(s), k = strlen(suffix);
  return n > k && strcmp(s + n - k, suffix) == 0;
}

static pn_status scan_dir(const char *dir, int depth) {
  struct dirent **names;
  int n = scandir(dir, &names, NULL, alphasort); /* sorted: the same order everywhere */
  if (n < 0) {
    PN_DEBUG("plugin directory %s: not readable, skipped", dir);
    return PN_OK;
  }
  pn_status s = PN_OK;
  for (int i = 0; i < n; i++) {
    const char *name = names[i]->d_name;
    char *path = NULL;
    /* Hidden entries include libtool's .libs and automake's .deps. */
    if (s == PN_OK && name[0] != '.' && asprintf(&path, "%s/%s", dir, name) >= 0) {
      struct stat st;
      if (stat(path, &st) == 0 && S_ISDIR(st.st_mode) && depth < MAX_SCAN_DEPTH)
        s = scan_dir(path, depth + 1);
      else if (stat(path, &st) == 0 && S_ISREG(st.st_mode) && has_suffix(name, ".yaml"))
        s = scan_file(path);
    }
    free(path);
    free(names[i]);
  }
  free(names);
  return s;
}

static void forget_all(void) {
  for (int i = 0; i < R.n_entries; i++) pn_manifest_free(R.entries[i].m);
  free(R.entries);
  free(R.features);
  free(R.search_path);
  memset(&R, 0, sizeof R);
}

static pn_status scan_locked(void) {
  if (R.scanned) return PN_OK;
  char *path = strdup(search_path_locked());
  if (!path) return pn_error(PN_ERR_NOMEM, "out of memory");
  pn_status s = PN_OK;
  char *save = NULL;
  for (char *dir = strtok_r(path, ":", &save); dir && s == PN_OK; dir = strtok_r(NULL, ":", &save))
    s = scan_dir(dir, 0);
  free(path);
  if (s != PN_OK) {
    /* Nothing half-scanned survives: the next call retries, and fails the
     * same way until the manifest is fixed. */
    forget_all();
    return s;
  }
  R.scanned = 1;
  return PN_OK;
}

pn_status pn_registry_scan(void) {
  enter();
  pn_status s = scan_locked();
  leave();
  return s;
}

/* ---- unloading */

static int by_load_seq_desc(const void *a, const void *b) {
  const entry *x = *(entry *const *)a, *y = *(entry *const *)b;
  return (y->load_seq > x->load_seq) - (y->load_seq < x->load_seq);
}

void pn_registry_reset(void) {
  enter();
  entry **loaded = calloc((size_t)R.n_entries + 1, sizeof *loaded);
  int n = 0;
  for (int i = 0; loaded && i < R.n_entries; i++)
    if (R.entries[i].plugin) loaded[n++] = &R.entries[i];
  if (loaded) qsort(loaded, (size_t)n, sizeof *loaded, by_load_seq_desc);
  /* Every fini runs before any backend disappears and before any library is
   * unmapped, since a plugin's fini may still use what another provides. */
  for (int i = 0; i < n; i++) pni_plugin_fini(loaded[i]->plugin);
  for (int i = 0; i < n; i++) pni_plugin_remove_backends(loaded[i]->plugin);
  for (int i = 0; i < n; i++) pni_plugin_close(loaded[i]->plugin);
  free(loaded);
  forget_all();
  leave();
}

/* ---- lookups */

int pn_registry_feature_count(void) {
  enter();
  int n = scan_locked() == PN_OK ? R.n_features : 0;
  leave();
  return n;
}

const pn_feature_info *pn_registry_feature_at(int i) {
  enter();
  const pn_feature_info *f =
      scan_locked() == PN_OK && i >= 0 && i < R.n_features ? R.features[i] : NULL;
  leave();
  return f;
}

static pn_status unknown_feature(const char *name) {
  if (R.n_features == 0)
    return pn_error(PN_ERR_NOT_FOUND, "unknown feature '%s': no plugins found (search path: %s)",
                    name, search_path_locked());
  const char **names = calloc((size_t)(unsigned)R.n_features + 1, sizeof *names);
  size_t len = 1;
  for (int i = 0; i < R.n_features; i++) len += strlen(R.features[i]->name) + 2;
  char *list = calloc(1, len);
  if (!names || !list) {
    free(names);
    free(list);
    return pn_error(PN_ERR_NOT_FOUND, "unknown feature '%s'", name);
  }
  for (int i = 0; i < R.n_features; i++) {
    names[i] = R.features[i]->name;
    if (i) strcat(list, ", ");
    strcat(list, names[i]);
  }
  const char *near = pn_suggest(name, names, R.n_features);
  pn_status s =
      near ? pn_error(PN_ERR_NOT_FOUND, "unknown feature '%s' (did you mean '%s'?); known: %s",
                      name, near, list)
           : pn_error(PN_ERR_NOT_FOUND, "unknown feature '%s'; known: %s", name, list);
  free(names);
  free(list);
  return s;
}

static pn_status find_locked(const char *name, const pn_feature_info **out) {
  *out = NULL;
  if (!name) return pn_error(PN_ERR_INVALID, "feature name is NULL");
  PN_TRY(scan_locked());
  *out = find_feature(name);
  return *out ? PN_OK : unknown_feature(name);
}

const pn_feature_info *pn_registry_find(const char *name) {
  enter();
  const pn_feature_info *f;
  find_locked(name, &f);
  leave();
  return f;
}

static entry *entry_of(const pn_manifest *m) {
  for (int i = 0; m && i < R.n_entries; i++)
    if (R.entries[i].m == m) return &R.entries[i];
  return NULL;
}

static pn_status load_locked(const pn_feature_info *f, entry **out) {
  entry *e = f ? entry_of(f->manifest) : NULL;
  if (!e)
    return pn_error(PN_ERR_INVALID, "feature '%s' is not from the current registry scan",
                    f && f->name ? f->name : "(null)");
  *out = e;
  if (e->plugin) return PN_OK;
  if (e->loading)
    return pn_error(PN_ERR_PLUGIN, "plugin '%s': its init needs its own feature '%s'", e->m->plugin,
                    f->name);
  e->loading = 1;
  pni_plugin *p;
  pn_status s = pni_plugin_load(e->m, &p);
  /* e stays valid across init, even if init opens other plugins: entries
   * are only reallocated by a scan, and the registry is already scanned. */
  e->loading = 0;
  if (s != PN_OK) return s;
  e->plugin = p;
  e->load_seq = ++R.next_seq;
  return PN_OK;
}

pn_status pn_registry_load(const pn_feature_info *f) {
  enter();
  entry *e;
  pn_status s = load_locked(f, &e);
  leave();
  return s;
}

int pn_registry_is_loaded(const pn_manifest *m) {
  enter();
  const entry *e = entry_of(m);
  int loaded = e && e->plugin;
  leave();
  return loaded;
}

pn_status pn_feature_iface(const char *name, const char *kind, const void **iface) {
  if (!iface) return pn_error(PN_ERR_INVALID, "pn_feature_iface: iface is NULL");
  *iface = NULL;
  enter();
  const pn_feature_info *f;
  entry *e = NULL;
  pn_status s = find_locked(name, &f);
  if (s == PN_OK && kind && strcmp(f->kind, kind) != 0)
    s = pn_error(PN_ERR_INVALID, "feature '%s' is a %s, not a %s (plugin '%s', %s)", name, f->kind,
                 kind, f->manifest->plugin, f->manifest->path);
  if (s == PN_OK) s = load_locked(f, &e);
  if (s == PN_OK) {
    *iface = pni_plugin_iface(e->plugin, name);
    if (!*iface)
      s = pn_error(PN_ERR_PLUGIN, "plugin '%s': nothing registered for feature '%s'",
                   f->manifest->plugin, name);
  }
  leave();
  return s;
}
