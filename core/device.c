#include <stdlib.h>
#include <string.h>
#include <pthread.h>

#include <plugnet/device.h>
#include <plugnet/log.h>
#include <plugnet/registry.h>

#include "internal.h"

#define MAX_DEVICES 64

static pn_device *devices[MAX_DEVICES];
static int n_devices;
static pn_device *default_dev;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;

static int iface_ok(const pn_device_iface *f, const char **why) {
  if (f->size < offsetof(pn_device_iface, describe))
    *why = "iface built for an older ABI";
  else if (!f->alloc || !f->free)
    *why = "alloc and free are required";
  else if (!f->host_ptr && (!f->upload || !f->download))
    *why = "upload and download are required when memory is not host accessible";
  else
    return 1;
  return 0;
}

pn_status pni_device_add(const char *name, const char *backend, const pn_device_iface *iface,
                         void *ctx) {
  const char *why = NULL;
  if (!name || !backend || !iface) return pn_error(PN_ERR_INVALID, "device: missing name or iface");
  if (strlen(name) >= sizeof devices[0]->name || strlen(backend) >= sizeof devices[0]->backend)
    return pn_error(PN_ERR_INVALID, "device '%s': name too long", name);
  if (!iface_ok(iface, &why)) return pn_error(PN_ERR_PLUGIN, "device '%s': %s", name, why);
  pthread_mutex_lock(&lock);
  for (int i = 0; i < n_devices; i++) {
    if (strcmp(devices[i]->name, name) == 0) {
      pthread_mutex_unlock(&lock);
      return pn_error(PN_ERR_PLUGIN, "device '%s' registered twice", name);
    }
  }
  if (n_devices == MAX_DEVICES) {
    pthread_mutex_unlock(&lock);
    return pn_error(PN_ERR_NOMEM, "device '%s': more than %d devices", name, MAX_DEVICES);
  }
  pn_device *d = calloc(1, sizeof *d);
  if (!d) {
    pthread_mutex_unlock(&lock);
    return pn_error(PN_ERR_NOMEM, "device '%s': out of memory", name);
  }
  strcpy(d->name, name);
  strcpy(d->backend, backend);
  d->backend_id = pni_backend_id(backend);
  d->iface = iface;
  d->ctx = ctx;
  devices[n_devices++] = d;
  pthread_mutex_unlock(&lock);
  PN_DEBUG("device %s (backend %s) registered", name, backend);
  return PN_OK;
}

void pni_devices_remove_backend(const char *backend) {
  pthread_mutex_lock(&lock);
  int kept = 0;
  for (int i = 0; i < n_devices; i++) {
    pn_device *d = devices[i];
    if (strcmp(d->backend, backend) != 0) {
      devices[kept++] = d;
      continue;
    }
    if (d->iface->destroy) d->iface->destroy(d->ctx);
    if (default_dev == d) default_dev = NULL;
    free(d);
  }
  n_devices = kept;
  pthread_mutex_unlock(&lock);
}

/* "cuda" names the first device of that backend; "cuda:1" one device. */
static pn_device *find_loaded(const char *name) {
  pn_device *found = NULL;
  pthread_mutex_lock(&lock);
  for (int i = 0; i < n_devices && !found; i++)
    if (strcmp(devices[i]->name, name) == 0) found = devices[i];
  for (int i = 0; i < n_devices && !found; i++)
    if (strcmp(devices[i]->backend, name) == 0) found = devices[i];
  pthread_mutex_unlock(&lock);
  return found;
}

/* An op a device backend lacks runs on a loaded backend that has it (op.c);
 * a GPU backend alone would leave nowhere to go, so a host one is loaded
 * beside it, here at setup rather than mid-dispatch. */
static void load_host_fallback(void) {
  static const char *const hosts[] = {"cpu", "reference"};
  pn_device *h;
  for (size_t i = 0; i < sizeof hosts / sizeof *hosts; i++)
    if (pn_device_get(hosts[i], &h) == PN_OK) return;
  PN_WARN("no host backend to run ops the device lacks: %s", pn_last_error());
}

pn_status pn_device_get(const char *name, pn_device **out) {
  char backend[32];
  *out = find_loaded(name);
  if (*out) return PN_OK;
  size_t len = strcspn(name, ":");
  if (len >= sizeof backend) return pn_error(PN_ERR_NOT_FOUND, "unknown device '%s'", name);
  memcpy(backend, name, len);
  backend[len] = '\0';
  PN_TRY(pn_registry_scan());
  const pn_feature_info *f = pn_registry_find(backend);
  if (!f) return pn_error_prefix(PN_ERR_NOT_FOUND, "device '%s': ", name);
  if (strcmp(f->kind, "backend") != 0)
    return pn_error(PN_ERR_INVALID, "'%s' is a %s, not a backend", backend, f->kind);
  PN_TRY(pn_registry_load(f));
  *out = find_loaded(name);
  if (!*out) return pn_error(PN_ERR_NOT_FOUND, "backend '%s' has no device '%s'", backend, name);
  if (!pn_device_is_host(*out)) load_host_fallback();
  return PN_OK;
}

static pn_device *choose_default(void) {
  const char *env = getenv("PLUGNET_BACKEND");
  pn_device *d = NULL;
  if (env && *env) {
    if (pn_device_get(env, &d) == PN_OK) return d;
    PN_WARN("PLUGNET_BACKEND=%s: %s; using the cpu backend", env, pn_last_error());
  }
  if (pn_device_get("cpu", &d) == PN_OK) return d;
  PN_WARN("cpu backend unavailable (%s); using reference", pn_last_error());
  if (pn_device_get("reference", &d) == PN_OK) return d;
  return NULL;
}

pn_device *pn_default_device(void) {
  if (!default_dev) default_dev = choose_default();
  return default_dev;
}

void pn_set_default_device(pn_device *dev) { default_dev = dev; }

int pn_device_is_host(const pn_device *dev) { return dev->iface->host_ptr != NULL; }

pn_status pn_device_synchronize(pn_device *dev) {
  return dev->iface->synchronize ? dev->iface->synchronize(dev->ctx) : PN_OK;
}

int pn_device_count(void) { return n_devices; }

pn_device *pn_device_at(int i) { return i >= 0 && i < n_devices ? devices[i] : NULL; }

pn_buffer *pn_buffer_new(pn_device *dev, size_t bytes) {
  pn_buffer *b = malloc(sizeof *b);
  if (!b) {
    pn_error(PN_ERR_NOMEM, "out of memory for a buffer of %zu bytes", bytes);
    return NULL;
  }
  /* A zero-byte tensor still gets distinct memory so host pointers stay valid. */
  pn_clear_error();
  b->mem = dev->iface->alloc(dev->ctx, bytes ? bytes : 1);
  if (!b->mem) {
    free(b);
    /* A device backend says why (out of device memory, a failed driver call). */
    if (*pn_last_error())
      pn_error_prefix(PN_ERR_NOMEM, "%s: cannot allocate %zu bytes: ", dev->name, bytes);
    else
      pn_error(PN_ERR_NOMEM, "%s: cannot allocate %zu bytes", dev->name, bytes);
    return NULL;
  }
  b->refs = 1;
  b->dev = dev;
  b->bytes = bytes;
  b->host = dev->iface->host_ptr ? dev->iface->host_ptr(dev->ctx, b->mem) : NULL;
  return b;
}

void pn_buffer_unref(pn_buffer *b) {
  if (!b || __atomic_sub_fetch(&b->refs, 1, __ATOMIC_ACQ_REL) != 0) return;
  b->dev->iface->free(b->dev->ctx, b->mem);
  free(b);
}
