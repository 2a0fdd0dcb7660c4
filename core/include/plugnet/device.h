/* Devices and buffers. A backend plugin registers one device per piece of
 * hardware it drives, as an object {iface, ctx}. Optional slots may be NULL. */
#ifndef PLUGNET_DEVICE_H
#define PLUGNET_DEVICE_H

#include <stddef.h>
#include <plugnet/status.h>
#include <plugnet/tensor.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct pn_device_iface {
  size_t size; /* sizeof(pn_device_iface) the plugin was built with */
  /* PN_OK when usable; otherwise a status and the reason in `why`. */
  pn_status (*probe)(void *ctx, char *why, size_t why_len);
  void *(*alloc)(void *ctx, size_t bytes);
  void (*free)(void *ctx, void *mem);
  /* Host address of device memory, or NULL if not host accessible.
   * A NULL slot means the memory is not host accessible. */
  void *(*host_ptr)(void *ctx, void *mem);
  /* Needed only when host_ptr is NULL. */
  pn_status (*upload)(void *ctx, void *dst, size_t dst_off, const void *src, size_t n);
  pn_status (*download)(void *ctx, void *dst, const void *src, size_t src_off, size_t n);
  pn_status (*synchronize)(void *ctx);        /* optional */
  pn_status (*set_threads)(void *ctx, int n); /* optional */
  int (*threads)(void *ctx);                  /* optional */
  /* One line for `plugnet backends`, e.g. the BLAS and the threads. Optional. */
  void (*describe)(void *ctx, char *buf, size_t n);
  void (*destroy)(void *ctx); /* optional, on unload */
  void *reserved[8];
} pn_device_iface;

struct pn_device {
  char name[32];    /* "cpu", "cuda:0" */
  char backend[32]; /* "cpu", "cuda": kernels are registered per backend */
  int backend_id;   /* index into the kernel tables, set by the core */
  const pn_device_iface *iface;
  void *ctx;
};

struct pn_buffer {
  int refs;
  pn_device *dev;
  void *mem;
  void *host; /* iface->host_ptr(mem), cached */
  size_t bytes;
};

/* Looks a device up by name ("cpu", "reference", "cuda:0"; a backend name
 * alone means its first device), loading its plugin on first use. Loading a
 * device without host memory (a GPU) loads a host backend too, where ops the
 * device lacks run. */
pn_status pn_device_get(const char *name, pn_device **out);
/* The device new tensors go to when none is given. Initially "cpu" when it
 * loads, else "reference". PLUGNET_BACKEND overrides the initial choice. */
pn_device *pn_default_device(void);
void pn_set_default_device(pn_device *dev);
int pn_device_is_host(const pn_device *dev);
pn_status pn_device_synchronize(pn_device *dev);

/* Devices known so far (those of loaded backend plugins). Backend plugins
 * add theirs with pn_plugin_add_device() in plugin.h. */
int pn_device_count(void);
pn_device *pn_device_at(int i);

pn_buffer *pn_buffer_new(pn_device *dev, size_t bytes);
void pn_buffer_unref(pn_buffer *b);

#ifdef __cplusplus
}
#endif
#endif
