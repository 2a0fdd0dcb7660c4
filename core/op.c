#include <stdlib.h>
#include <string.h>
#include <pthread.h>

#include <plugnet/device.h>
#include <plugnet/log.h>
#include <plugnet/op.h>

#include "internal.h"

#define MAX_OPS      256
#define MAX_BACKENDS 16

static char *op_names[MAX_OPS];
static int n_ops;
static char *backend_names[MAX_BACKENDS];
static int n_backends;
/* Read on every dispatch without a lock: entries are only written while a
 * plugin's init runs, before any op can reach that backend. */
static pn_kernel_fn kernels[MAX_BACKENDS][MAX_OPS];
static unsigned char fallback_logged[MAX_BACKENDS][MAX_OPS];
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_once_t core_once = PTHREAD_ONCE_INIT;

static const char *const core_names[PN_OP_CORE_COUNT] = {
    "fill",           "random",          "copy",        "unary",          "binary",
    "matmul",         "reduce",          "softmax",     "log_softmax",    "conv2d",
    "conv2d_grad_input", "conv2d_grad_weight", "pool2d", "pool2d_grad", "channel_stats",
    "channel_affine", "channel_grad_stats", "concat", "axpby"};

static void register_core_ops(void) {
  for (int i = 0; i < PN_OP_CORE_COUNT; i++) op_names[i] = strdup(core_names[i]);
  n_ops = PN_OP_CORE_COUNT;
}

void pni_ops_init(void) { pthread_once(&core_once, register_core_ops); }

static int find_op(const char *name) {
  for (int i = 0; i < n_ops; i++)
    if (op_names[i] && strcmp(op_names[i], name) == 0) return i;
  return -1;
}

int pn_op_register(const char *name) {
  pni_ops_init();
  if (!name || !*name) {
    pn_error(PN_ERR_INVALID, "an op needs a name");
    return -1;
  }
  pthread_mutex_lock(&lock);
  int id = find_op(name);
  if (id < 0 && n_ops < MAX_OPS) {
    op_names[n_ops] = strdup(name);
    id = op_names[n_ops] ? n_ops++ : -1;
  }
  pthread_mutex_unlock(&lock);
  if (id < 0) pn_error(PN_ERR_NOMEM, "cannot register op '%s' (at most %d ops)", name, MAX_OPS);
  return id;
}

int pn_op_lookup(const char *name) {
  pni_ops_init();
  pthread_mutex_lock(&lock);
  int id = find_op(name);
  pthread_mutex_unlock(&lock);
  return id;
}

const char *pn_op_name(int op) {
  pni_ops_init();
  return op >= 0 && op < n_ops ? op_names[op] : "?";
}

int pn_op_count(void) {
  pni_ops_init();
  return n_ops;
}

int pni_backend_id(const char *backend) {
  pthread_mutex_lock(&lock);
  int id = -1;
  for (int i = 0; i < n_backends && id < 0; i++)
    if (strcmp(backend_names[i], backend) == 0) id = i;
  if (id < 0 && n_backends < MAX_BACKENDS) {
    backend_names[n_backends] = strdup(backend);
    id = backend_names[n_backends] ? n_backends++ : -1;
  }
  pthread_mutex_unlock(&lock);
  return id;
}

pn_status pni_kernel_add(const char *backend, int op, pn_kernel_fn fn) {
  pni_ops_init();
  int b = pni_backend_id(backend);
  if (b < 0) return pn_error(PN_ERR_NOMEM, "too many backends (at most %d)", MAX_BACKENDS);
  if (op < 0 || op >= n_ops) return pn_error(PN_ERR_INVALID, "kernel for unknown op id %d", op);
  if (!fn) return pn_error(PN_ERR_INVALID, "NULL kernel for op '%s'", op_names[op]);
  kernels[b][op] = fn;
  return PN_OK;
}

void pni_kernels_remove_backend(const char *backend) {
  int b = pni_backend_id(backend);
  if (b < 0) return;
  memset(kernels[b], 0, sizeof kernels[b]);
  memset(fallback_logged[b], 0, sizeof fallback_logged[b]);
}

int pn_op_has_kernel(const char *backend, int op) {
  int b = pni_backend_id(backend);
  return b >= 0 && op >= 0 && op < MAX_OPS && kernels[b][op] != NULL;
}

static pn_device *device_of_backend(int b) {
  for (int i = 0; i < pn_device_count(); i++) {
    pn_device *d = pn_device_at(i);
    if (d->backend_id == b) return d;
  }
  return NULL;
}

/* Copies src's contents into dst, which may live on another device. */
static pn_status copy_into(const pn_tensor *src, pn_tensor *dst) {
  size_t n = pn_tensor_nbytes(src);
  void *tmp = malloc(n ? n : 1);
  if (!tmp) return pn_error(PN_ERR_NOMEM, "out of memory for a %zu-byte fallback copy", n);
  pn_status s = pn_tensor_read(src, tmp, n);
  if (s == PN_OK) s = pn_tensor_write(dst, tmp, n);
  free(tmp);
  return s;
}

static pn_status run_on(pn_device *dev, const pn_op_args *a, pn_op_args *moved) {
  *moved = *a;
  for (int i = 0; i < a->n_in; i++) moved->in[i] = NULL;
  moved->out = NULL;
  pn_status s = PN_OK;
  for (int i = 0; i < a->n_in && s == PN_OK; i++) {
    moved->in[i] = pn_tensor_to((pn_tensor *)a->in[i], dev);
    if (!moved->in[i]) s = PN_ERR_DEVICE;
  }
  if (s == PN_OK && a->out) {
    pn_shape shape = pn_tensor_shape(a->out);
    moved->out = pni_tensor_alloc(dev, a->out->dtype, &shape);
    if (!moved->out) s = PN_ERR_NOMEM;
  }
  if (s == PN_OK) s = kernels[dev->backend_id][a->op](dev->ctx, moved);
  if (s == PN_OK && a->out) s = copy_into(moved->out, a->out);
  for (int i = 0; i < a->n_in && s == PN_OK; i++)
    if (a->written & (1u << i)) s = copy_into(moved->in[i], (pn_tensor *)a->in[i]);
  for (int i = 0; i < a->n_in; i++) pn_tensor_unref((pn_tensor *)moved->in[i]);
  pn_tensor_unref(moved->out);
  return s;
}

static pn_status dispatch_fallback(const pn_op_args *a, pn_device *home) {
  /* A strided copy cannot be moved without itself being a copy. */
  if (a->op == PN_OP_COPY)
    return pn_error(PN_ERR_UNSUPPORTED, "backend '%s' lacks the required copy kernel",
                    home->backend);
  for (int b = 0; b < n_backends; b++) {
    pn_device *dev;
    if (b == home->backend_id || !kernels[b][a->op] || !(dev = device_of_backend(b))) continue;
    if (!fallback_logged[home->backend_id][a->op]) {
      fallback_logged[home->backend_id][a->op] = 1;
      PN_INFO("op '%s' is not implemented by backend '%s'; running it on '%s'", op_names[a->op],
              home->backend, dev->backend);
    }
    PN_DEBUG("fallback: %s on %s instead of %s", op_names[a->op], dev->name, home->name);
    pn_op_args moved;
    pn_status s = run_on(dev, a, &moved);
    if (s != PN_ERR_UNSUPPORTED) return s;
  }
  return pn_error(PN_ERR_UNSUPPORTED, "no loaded backend implements op '%s' for these inputs",
                  pn_op_name(a->op));
}

pn_status pn_op_dispatch(const pn_op_args *a) {
  if (!a->out && a->n_in == 0)
    return pn_error(PN_ERR_INVALID, "op '%s': no tensors", pn_op_name(a->op));
  pn_device *dev = a->out ? a->out->buf->dev : a->in[0]->buf->dev;
  for (int i = 0; i < a->n_in; i++) {
    if (a->in[i]->buf->dev != dev)
      return pn_error(PN_ERR_DEVICE, "op '%s': input %d is on %s but the op runs on %s",
                      pn_op_name(a->op), i, a->in[i]->buf->dev->name, dev->name);
  }
  pn_kernel_fn k = kernels[dev->backend_id][a->op];
  if (k) {
    pn_status s = k(dev->ctx, a);
    if (s != PN_ERR_UNSUPPORTED) return s;
  }
  return dispatch_fallback(a, dev);
}
