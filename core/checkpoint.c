/* Checkpoints in the safetensors format (see checkpoint.h). The writer never
 * touches the destination until the new file is complete and synced; the
 * reader trusts nothing in the file: every offset, shape and dtype is checked
 * against the file's real length before any tensor is made. */
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include <plugnet/autograd.h>
#include <plugnet/checkpoint.h>
#include <plugnet/log.h>
#include <plugnet/ops.h>

/* Tensor bytes go to and from the file as they lie in memory. */
static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
              "checkpoint.c assumes a little-endian host, as safetensors data is");

#define META_KEY   "__metadata__"
#define MAX_HEADER ((uint64_t)100 << 20)

/* ---- the ordered map */

typedef struct kv {
  char *key;
  char *value;
} kv;

struct pn_tensor_map {
  char **names;
  pn_tensor **t;
  int n, cap;
  kv *meta;
  int n_meta, cap_meta;
};

pn_tensor_map *pn_tensor_map_new(void) {
  pn_tensor_map *m = calloc(1, sizeof *m);
  if (!m) pn_error(PN_ERR_NOMEM, "out of memory");
  return m;
}

void pn_tensor_map_free(pn_tensor_map *m) {
  if (!m) return;
  for (int i = 0; i < m->n; i++) {
    free(m->names[i]);
    pn_tensor_unref(m->t[i]);
  }
  for (int i = 0; i < m->n_meta; i++) {
    free(m->meta[i].key);
    free(m->meta[i].value);
  }
  free(m->names);
  free(m->t);
  free(m->meta);
  free(m);
}

static int find_name(const pn_tensor_map *m, const char *name) {
  for (int i = 0; m && name && i < m->n; i++)
    if (strcmp(m->names[i], name) == 0) return i;
  return -1;
}

static pn_status grow_tensors(pn_tensor_map *m) {
  if (m->n < m->cap) return PN_OK;
  int cap = m->cap ? 2 * m->cap : 16;
  char **names = realloc(m->names, sizeof *names * (size_t)cap);
  if (names) m->names = names;
  pn_tensor **t = names ? realloc(m->t, sizeof *t * (size_t)cap) : NULL;
  if (!t) return pn_error(PN_ERR_NOMEM, "tensor map: out of memory");
  m->t = t;
  m->cap = cap;
  return PN_OK;
}

pn_status pn_tensor_map_put(pn_tensor_map *m, const char *name, pn_tensor *t) {
  if (!m || !name || !t) return pn_error(PN_ERR_INVALID, "pn_tensor_map_put: NULL argument");
  if (!*name || strcmp(name, META_KEY) == 0)
    return pn_error(PN_ERR_INVALID, "tensor map: '%s' cannot name a tensor", name);
  int i = find_name(m, name);
  if (i >= 0) {
    pn_tensor_ref(t);
    pn_tensor_unref(m->t[i]);
    m->t[i] = t;
    return PN_OK;
  }
  PN_TRY(grow_tensors(m));
  if (!(m->names[m->n] = strdup(name))) return pn_error(PN_ERR_NOMEM, "out of memory");
  m->t[m->n++] = pn_tensor_ref(t);
  return PN_OK;
}

pn_tensor *pn_tensor_map_get(const pn_tensor_map *m, const char *name) {
  int i = find_name(m, name);
  return i >= 0 ? m->t[i] : NULL;
}

int pn_tensor_map_count(const pn_tensor_map *m) { return m ? m->n : 0; }

const char *pn_tensor_map_name(const pn_tensor_map *m, int i) {
  return m && i >= 0 && i < m->n ? m->names[i] : NULL;
}

pn_tensor *pn_tensor_map_at(const pn_tensor_map *m, int i) {
  return m && i >= 0 && i < m->n ? m->t[i] : NULL;
}

static int find_meta(const pn_tensor_map *m, const char *key) {
  for (int i = 0; m && key && i < m->n_meta; i++)
    if (strcmp(m->meta[i].key, key) == 0) return i;
  return -1;
}

pn_status pn_tensor_map_set_meta(pn_tensor_map *m, const char *key, const char *value) {
  if (!m || !key || !value)
    return pn_error(PN_ERR_INVALID, "pn_tensor_map_set_meta: NULL argument");
  char *v = strdup(value);
  if (!v) return pn_error(PN_ERR_NOMEM, "out of memory");
  int i = find_meta(m, key);
  if (i >= 0) {
    free(m->meta[i].value);
    m->meta[i].value = v;
    return PN_OK;
  }
  if (m->n_meta == m->cap_meta) {
    int cap = m->cap_meta ? 2 * m->cap_meta : 8;
    kv *grown = realloc(m->meta, sizeof *grown * (size_t)cap);
    if (!grown) {
      free(v);
      return pn_error(PN_ERR_NOMEM, "out of memory");
    }
    m->meta = grown;
    m->cap_meta = cap;
  }
  if (!(m->meta[m->n_meta].key = strdup(key))) {
    free(v);
    return pn_error(PN_ERR_NOMEM, "out of memory");
  }
  m->meta[m->n_meta++].value = v;
  return PN_OK;
}

const char *pn_tensor_map_meta(const pn_tensor_map *m, const char *key) {
  int i = find_meta(m, key);
  return i >= 0 ? m->meta[i].value : NULL;
}

/* ---- dtypes as safetensors spells them */

typedef enum conv { AS_IS, FROM_F16, FROM_BF16, FROM_F64 } conv;

typedef struct st_dtype {
  const char *name;
  size_t size; /* in the file */
  pn_dtype dt; /* in memory */
  conv conv;
} st_dtype;

static const st_dtype st_dtypes[] = {
    {"F32", 4, PN_F32, AS_IS},    {"I32", 4, PN_I32, AS_IS},    {"I64", 8, PN_I64, AS_IS},
    {"U8", 1, PN_U8, AS_IS},      {"F16", 2, PN_F32, FROM_F16}, {"BF16", 2, PN_F32, FROM_BF16},
    {"F64", 8, PN_F32, FROM_F64},
};
#define N_ST_DTYPES ((int)(sizeof st_dtypes / sizeof *st_dtypes))

/* Valid safetensors dtypes that plugnet has no tensor type for. */
static const char *const foreign_dtypes[] = {"BOOL", "I8",      "I16",     "U16", "U32",
                                             "U64",  "F8_E4M3", "F8_E5M2", "C64", NULL};

static const char *st_name(pn_dtype dt) {
  for (int i = 0; i < N_ST_DTYPES; i++)
    if (st_dtypes[i].dt == dt && st_dtypes[i].conv == AS_IS) return st_dtypes[i].name;
  return NULL;
}

static const st_dtype *st_find(const char *name) {
  for (int i = 0; i < N_ST_DTYPES; i++)
    if (strcmp(st_dtypes[i].name, name) == 0) return &st_dtypes[i];
  return NULL;
}

static int is_foreign(const char *name) {
  for (const char *const *f = foreign_dtypes; *f; f++)
    if (strcmp(*f, name) == 0) return 1;
  return 0;
}

static float f32_bits(uint32_t bits) {
  float f;
  memcpy(&f, &bits, sizeof f);
  return f;
}

static float f16_to_f32(uint16_t h) {
  uint32_t sign = (uint32_t)(h >> 15) << 31, exp = (h >> 10) & 0x1fu, man = h & 0x3ffu;
  if (exp == 0x1f) return f32_bits(sign | 0x7f800000u | man << 13); /* inf, nan */
  if (exp) return f32_bits(sign | (exp + 112) << 23 | man << 13);   /* 127 - 15 = 112 */
  float sub = ldexpf((float)man, -24);                              /* subnormal or zero */
  return sign ? -sub : sub;
}

static void convert(conv c, const void *src, float *dst, size_t n) {
  for (size_t i = 0; i < n; i++) {
    if (c == FROM_F16) {
      uint16_t h;
      memcpy(&h, (const char *)src + 2 * i, 2);
      dst[i] = f16_to_f32(h);
    } else if (c == FROM_BF16) {
      uint16_t h;
      memcpy(&h, (const char *)src + 2 * i, 2);
      dst[i] = f32_bits((uint32_t)h << 16);
    } else {
      double d;
      memcpy(&d, (const char *)src + 8 * i, 8);
      dst[i] = (float)d;
    }
  }
}

/* ---- save */

static json_t *tensor_entry(const pn_tensor *t, uint64_t begin, uint64_t end) {
  json_t *shape = json_array(), *offs = json_array(), *e = json_object();
  for (int d = 0; shape && d < t->ndim; d++)
    json_array_append_new(shape, json_integer(t->shape[d]));
  if (offs) {
    json_array_append_new(offs, json_integer((json_int_t)begin));
    json_array_append_new(offs, json_integer((json_int_t)end));
  }
  if (!shape || !offs || !e) {
    json_decref(shape);
    json_decref(offs);
    json_decref(e);
    return NULL;
  }
  json_object_set_new(e, "dtype", json_string(st_name(t->dtype)));
  json_object_set_new(e, "shape", shape);
  json_object_set_new(e, "data_offsets", offs);
  return e;
}

static json_t *meta_object(const pn_tensor_map *m) {
  json_t *o = json_object();
  for (int i = 0; o && i < m->n_meta; i++)
    if (json_object_set_new(o, m->meta[i].key, json_string(m->meta[i].value)) != 0) {
      json_decref(o);
      return NULL;
    }
  return o;
}

/* The data section holds the widest dtypes first, as Python's safetensors
 * does, so that every tensor is aligned to its element size once the header
 * is padded to 8 bytes (readers that map the file depend on it). order[k]
 * is the map index of the k-th tensor in the file. */
static pn_status plan_layout(const pn_tensor_map *m, int *order, uint64_t *begin) {
  int k = 0;
  for (size_t width = 8; width >= 1; width /= 2)
    for (int i = 0; i < m->n; i++)
      if (pn_dtype_size(m->t[i]->dtype) == width) order[k++] = i;
  if (k != m->n) return pn_error(PN_ERR_INTERNAL, "checkpoint: unexpected dtype size");
  uint64_t off = 0;
  for (k = 0; k < m->n; k++) {
    begin[order[k]] = off;
    off += pn_tensor_nbytes(m->t[order[k]]);
  }
  return PN_OK;
}

static char *pad_to_8(char *text, size_t *len) {
  size_t n = strlen(text), padded = (n + 7) & ~(size_t)7;
  char *buf = malloc(padded + 1);
  if (buf) {
    memcpy(buf, text, n);
    memset(buf + n, ' ', padded - n);
    buf[padded] = '\0';
    *len = padded;
  }
  return buf;
}

/* The header JSON lists tensors in the map's order, padded with spaces to a
 * multiple of 8 bytes. jansson refuses strings that are not UTF-8, which is
 * the likely reason for a failure once allocation succeeded. */
static pn_status build_header(const char *path, const pn_tensor_map *m, const uint64_t *begin,
                              char **out, size_t *len) {
  for (int i = 0; i < m->n; i++)
    if (!st_name(m->t[i]->dtype))
      return pn_error(PN_ERR_INVALID, "%s: tensor '%s': cannot save dtype %s", path, m->names[i],
                      pn_dtype_name(m->t[i]->dtype));
  json_t *root = json_object();
  if (!root) return pn_error(PN_ERR_NOMEM, "%s: out of memory building the header", path);
  pn_status s = PN_OK;
  if (m->n_meta && json_object_set_new(root, META_KEY, meta_object(m)) != 0)
    s = pn_error(PN_ERR_INVALID, "%s: metadata keys and values must be UTF-8 text", path);
  for (int i = 0; s == PN_OK && i < m->n; i++) {
    const pn_tensor *t = m->t[i];
    json_t *e = tensor_entry(t, begin[i], begin[i] + pn_tensor_nbytes(t));
    if (!e)
      s = pn_error(PN_ERR_NOMEM, "%s: out of memory building the header", path);
    else if (json_object_set_new(root, m->names[i], e) != 0)
      s = pn_error(PN_ERR_INVALID, "%s: tensor name '%s' is not UTF-8 text", path, m->names[i]);
  }
  char *text = s == PN_OK ? json_dumps(root, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
  json_decref(root);
  if (s != PN_OK) return s;
  *out = text ? pad_to_8(text, len) : NULL;
  free(text);
  if (!*out) return pn_error(PN_ERR_NOMEM, "%s: out of memory building the header", path);
  return PN_OK;
}

static pn_status write_all(int fd, const void *p, size_t n, const char *file) {
  const char *c = p;
  while (n > 0) {
    ssize_t w = write(fd, c, n);
    if (w < 0 && errno == EINTR) continue;
    if (w < 0) return pn_error(PN_ERR_IO, "%s: %s", file, strerror(errno));
    c += w;
    n -= (size_t)w;
  }
  return PN_OK;
}

/* A non-contiguous tensor (a transposed view) is copied first. */
static pn_status write_tensor(int fd, const char *file, const char *name, pn_tensor *t) {
  size_t bytes = pn_tensor_nbytes(t);
  if (bytes == 0) return PN_OK;
  pn_tensor *c = t;
  if (!pn_tensor_is_contiguous(t)) {
    int was = pn_set_grad_enabled(0);
    c = pn_contiguous(t);
    pn_set_grad_enabled(was);
    if (!c) return pn_error_prefix(PN_ERR_INTERNAL, "%s: tensor '%s': ", file, name);
  }
  void *host = malloc(bytes);
  pn_status s = host ? pn_tensor_read(c, host, bytes) : pn_error(PN_ERR_NOMEM, "out of memory");
  if (s != PN_OK)
    pn_error_prefix(s, "%s: tensor '%s': ", file, name);
  else
    s = write_all(fd, host, bytes, file);
  free(host);
  if (c != t) pn_tensor_unref(c);
  return s;
}

static pn_status write_file(int fd, const char *tmp, const char *header, size_t hlen,
                            const pn_tensor_map *m, const int *order) {
  unsigned char len8[8];
  for (int i = 0; i < 8; i++) len8[i] = (unsigned char)((uint64_t)hlen >> (8 * i));
  PN_TRY(write_all(fd, len8, 8, tmp));
  PN_TRY(write_all(fd, header, hlen, tmp));
  for (int k = 0; k < m->n; k++) PN_TRY(write_tensor(fd, tmp, m->names[order[k]], m->t[order[k]]));
  if (fsync(fd) != 0) return pn_error(PN_ERR_IO, "%s: fsync: %s", tmp, strerror(errno));
  return PN_OK;
}

/* Makes the rename itself durable. The new file is in place by then, so a
 * failure here is only worth a warning (filesystems that cannot sync a
 * directory say EINVAL, which is not even that). */
static void sync_dir(const char *path) {
  char *copy = strdup(path);
  if (!copy) return;
  const char *dir = dirname(copy);
  int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0 || (fsync(fd) != 0 && errno != EINVAL))
    PN_WARN("%s: cannot sync directory %s: %s", path, dir, strerror(errno));
  if (fd >= 0) close(fd);
  free(copy);
}

static pn_status save_to(const char *path, const pn_tensor_map *m, const char *header, size_t hlen,
                         const int *order) {
  size_t tlen = strlen(path) + 32;
  char *tmp = malloc(tlen);
  if (!tmp) return pn_error(PN_ERR_NOMEM, "out of memory");
  snprintf(tmp, tlen, "%s.tmp.%ld", path, (long)getpid());
  pn_status s = PN_OK;
  int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0666);
  if (fd < 0) s = pn_error(PN_ERR_IO, "%s: cannot create %s: %s", path, tmp, strerror(errno));
  if (s == PN_OK) s = write_file(fd, tmp, header, hlen, m, order);
  if (fd >= 0 && close(fd) != 0 && s == PN_OK)
    s = pn_error(PN_ERR_IO, "%s: %s", tmp, strerror(errno));
  if (s == PN_OK && rename(tmp, path) != 0)
    s = pn_error(PN_ERR_IO, "%s: rename from %s: %s", path, tmp, strerror(errno));
  if (s != PN_OK && fd >= 0) unlink(tmp);
  if (s == PN_OK) sync_dir(path);
  free(tmp);
  return s;
}

pn_status pn_safetensors_save(const char *path, const pn_tensor_map *m) {
  if (!path || !m) return pn_error(PN_ERR_INVALID, "pn_safetensors_save: NULL argument");
  int *order = malloc(sizeof *order * (size_t)(m->n + 1));
  uint64_t *begin = malloc(sizeof *begin * (size_t)(m->n + 1));
  char *header = NULL;
  size_t hlen = 0;
  pn_status s = order && begin ? plan_layout(m, order, begin)
                               : pn_error(PN_ERR_NOMEM, "%s: out of memory", path);
  if (s == PN_OK) s = build_header(path, m, begin, &header, &hlen);
  if (s == PN_OK) s = save_to(path, m, header, hlen, order);
  free(header);
  free(begin);
  free(order);
  return s;
}

/* ---- load */

typedef struct entry {
  const char *name; /* borrowed from the JSON */
  const st_dtype *dtype;
  int ndim;
  int64_t shape[PN_MAX_DIMS];
  uint64_t begin, end;
} entry;

typedef struct reader {
  const char *path;
  int fd;
  uint64_t data_start, data_len;
  json_t *root;
  entry *e;
  int n;
} reader;

static pn_status bad(const reader *r, const char *name, const char *what) {
  return pn_error(PN_ERR_PARSE, "%s: tensor '%s': %s", r->path, name, what);
}

static pn_status read_at(const reader *r, void *buf, size_t n, uint64_t off) {
  char *p = buf;
  while (n > 0) {
    ssize_t got = pread(r->fd, p, n, (off_t)off);
    if (got < 0 && errno == EINTR) continue;
    if (got < 0) return pn_error(PN_ERR_IO, "%s: %s", r->path, strerror(errno));
    if (got == 0) return pn_error(PN_ERR_PARSE, "%s: unexpected end of file", r->path);
    p += got;
    n -= (size_t)got;
    off += (uint64_t)got;
  }
  return PN_OK;
}

static pn_status read_header(reader *r) {
  struct stat st;
  if (fstat(r->fd, &st) != 0) return pn_error(PN_ERR_IO, "%s: %s", r->path, strerror(errno));
  uint64_t size = (uint64_t)st.st_size;
  if (size < 8)
    return pn_error(PN_ERR_PARSE, "%s: %llu bytes, too short for a safetensors file", r->path,
                    (unsigned long long)size);
  unsigned char len8[8];
  PN_TRY(read_at(r, len8, 8, 0));
  uint64_t n = 0;
  for (int i = 7; i >= 0; i--) n = n << 8 | len8[i];
  if (n > MAX_HEADER)
    return pn_error(PN_ERR_PARSE, "%s: header length %llu exceeds the 100 MB limit", r->path,
                    (unsigned long long)n);
  if (n > size - 8)
    return pn_error(PN_ERR_PARSE, "%s: header length %llu is beyond the file's %llu bytes", r->path,
                    (unsigned long long)n, (unsigned long long)size);
  char *text = malloc(n ? n : 1);
  if (!text) return pn_error(PN_ERR_NOMEM, "%s: out of memory", r->path);
  pn_status s = read_at(r, text, n, 8);
  json_error_t err;
  if (s == PN_OK && !(r->root = json_loadb(text, n, JSON_REJECT_DUPLICATES, &err)))
    s = pn_error(PN_ERR_PARSE, "%s: bad JSON header: %s (line %d, column %d)", r->path, err.text,
                 err.line, err.column);
  free(text);
  if (s == PN_OK && !json_is_object(r->root))
    s = pn_error(PN_ERR_PARSE, "%s: the JSON header is not an object", r->path);
  r->data_start = 8 + n;
  r->data_len = size - 8 - n;
  return s;
}

static int get_uint(const json_t *v, uint64_t *out) {
  if (!json_is_integer(v) || json_integer_value(v) < 0) return 0;
  *out = (uint64_t)json_integer_value(v);
  return 1;
}

static pn_status parse_shape(const reader *r, const char *name, const json_t *shape, entry *e) {
  if (!json_is_array(shape)) return bad(r, name, "shape is missing or not a list");
  if (json_array_size(shape) > PN_MAX_DIMS) return bad(r, name, "shape has more than 8 dimensions");
  e->ndim = (int)json_array_size(shape);
  for (int d = 0; d < e->ndim; d++) {
    uint64_t v = 0;
    if (!get_uint(json_array_get(shape, (size_t)d), &v) || v > INT64_MAX / 2)
      return bad(r, name, "shape holds a negative or non-integer dimension");
    e->shape[d] = (int64_t)v;
  }
  return PN_OK;
}

static pn_status parse_dtype(const reader *r, const char *name, const json_t *dt, entry *e) {
  const char *s = json_string_value(dt);
  if (!s) return bad(r, name, "dtype is missing or not a string");
  if ((e->dtype = st_find(s))) return PN_OK;
  return pn_error(PN_ERR_PARSE,
                  "%s: tensor '%s': %s dtype '%s' (plugnet reads F32, I32, I64, U8, "
                  "and F16, BF16, F64 as F32)",
                  r->path, name, is_foreign(s) ? "unsupported" : "unknown", s);
}

/* The offsets must hold exactly shape * dtype size bytes inside the data. */
static pn_status parse_offsets(const reader *r, const char *name, const json_t *offs, entry *e) {
  if (!json_is_array(offs) || json_array_size(offs) != 2 ||
      !get_uint(json_array_get(offs, 0), &e->begin) || !get_uint(json_array_get(offs, 1), &e->end))
    return bad(r, name, "data_offsets is not a list of two non-negative integers");
  if (e->end < e->begin) return bad(r, name, "data_offsets end before they begin");
  if (e->end > r->data_len)
    return pn_error(PN_ERR_PARSE,
                    "%s: tensor '%s': data_offsets [%llu, %llu] beyond the data section's %llu "
                    "bytes (truncated file?)",
                    r->path, name, (unsigned long long)e->begin, (unsigned long long)e->end,
                    (unsigned long long)r->data_len);
  uint64_t need = e->dtype->size;
  for (int d = 0; d < e->ndim; d++) {
    if (e->shape[d] && need > UINT64_MAX / (uint64_t)e->shape[d])
      return bad(r, name, "shape too large");
    need *= (uint64_t)e->shape[d];
  }
  if (need != e->end - e->begin)
    return pn_error(PN_ERR_PARSE,
                    "%s: tensor '%s': data_offsets [%llu, %llu] hold %llu bytes but its shape and "
                    "dtype %s need %llu",
                    r->path, name, (unsigned long long)e->begin, (unsigned long long)e->end,
                    (unsigned long long)(e->end - e->begin), e->dtype->name,
                    (unsigned long long)need);
  return PN_OK;
}

static pn_status parse_meta(const reader *r, const json_t *meta, pn_tensor_map *m) {
  const char *key;
  json_t *v;
  if (!json_is_object(meta))
    return pn_error(PN_ERR_PARSE, "%s: %s is not an object", r->path, META_KEY);
  json_object_foreach((json_t *)meta, key, v) {
    if (!json_is_string(v))
      return pn_error(PN_ERR_PARSE, "%s: %s: value of '%s' is not a string", r->path, META_KEY,
                      key);
    PN_TRY(pn_tensor_map_set_meta(m, key, json_string_value(v)));
  }
  return PN_OK;
}

static pn_status parse_entries(reader *r, pn_tensor_map *m) {
  size_t n = json_object_size(r->root);
  if (!(r->e = calloc(n ? n : 1, sizeof *r->e)))
    return pn_error(PN_ERR_NOMEM, "%s: out of memory", r->path);
  const char *name;
  json_t *v;
  json_object_foreach(r->root, name, v) {
    if (strcmp(name, META_KEY) == 0) {
      PN_TRY(parse_meta(r, v, m));
      continue;
    }
    entry *e = &r->e[r->n];
    e->name = name;
    if (!*name) return pn_error(PN_ERR_PARSE, "%s: a tensor has an empty name", r->path);
    if (!json_is_object(v)) return bad(r, name, "entry is not an object");
    PN_TRY(parse_dtype(r, name, json_object_get(v, "dtype"), e));
    PN_TRY(parse_shape(r, name, json_object_get(v, "shape"), e));
    PN_TRY(parse_offsets(r, name, json_object_get(v, "data_offsets"), e));
    r->n++;
  }
  return PN_OK;
}

static int by_offset(const void *a, const void *b) {
  const entry *x = *(const entry *const *)a, *y = *(const entry *const *)b;
  if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
  return x->end < y->end ? -1 : x->end > y->end;
}

/* safetensors requires the tensors to tile the data section exactly: in
 * offset order, each begins where the previous one ends. */
static pn_status check_coverage(const reader *r) {
  const entry **order = malloc(sizeof *order * (size_t)(r->n ? r->n : 1));
  if (!order) return pn_error(PN_ERR_NOMEM, "%s: out of memory", r->path);
  for (int i = 0; i < r->n; i++) order[i] = &r->e[i];
  qsort(order, (size_t)r->n, sizeof *order, by_offset);
  pn_status s = PN_OK;
  uint64_t at = 0;
  const char *prev = NULL;
  for (int i = 0; s == PN_OK && i < r->n; i++) {
    const entry *e = order[i];
    if (e->begin < at)
      s = pn_error(PN_ERR_PARSE, "%s: tensor '%s': data_offsets [%llu, %llu] overlap tensor '%s'",
                   r->path, e->name, (unsigned long long)e->begin, (unsigned long long)e->end,
                   prev);
    else if (e->begin > at)
      s = pn_error(PN_ERR_PARSE,
                   "%s: tensor '%s': data_offsets begin at %llu, leaving a gap after "
                   "byte %llu",
                   r->path, e->name, (unsigned long long)e->begin, (unsigned long long)at);
    at = e->end;
    prev = e->name;
  }
  if (s == PN_OK && at != r->data_len)
    s = pn_error(PN_ERR_PARSE, "%s: the data section holds %llu bytes but the tensors cover %llu",
                 r->path, (unsigned long long)r->data_len, (unsigned long long)at);
  free(order);
  return s;
}

static pn_status make_tensor(const reader *r, const entry *e, pn_device *dev, pn_tensor_map *m) {
  size_t bytes = (size_t)(e->end - e->begin);
  int64_t numel = 1;
  for (int d = 0; d < e->ndim; d++) numel *= e->shape[d];
  size_t out_bytes = (size_t)numel * pn_dtype_size(e->dtype->dt);
  void *raw = malloc(bytes ? bytes : 1);
  void *host = e->dtype->conv == AS_IS ? raw : malloc(out_bytes ? out_bytes : 1);
  pn_status s = raw && host
                    ? read_at(r, raw, bytes, r->data_start + e->begin)
                    : pn_error(PN_ERR_NOMEM, "%s: tensor '%s': out of memory", r->path, e->name);
  if (s == PN_OK && host != raw) convert(e->dtype->conv, raw, host, (size_t)numel);
  pn_tensor *t = NULL;
  if (s == PN_OK && !(t = pn_tensor_from_host(dev, e->dtype->dt, e->ndim, e->shape, host)))
    s = pn_error_prefix(PN_ERR_NOMEM, "%s: tensor '%s': ", r->path, e->name);
  if (s == PN_OK) s = pn_tensor_map_put(m, e->name, t);
  pn_tensor_unref(t);
  if (host != raw) free(host);
  free(raw);
  return s;
}

pn_status pn_safetensors_load(const char *path, pn_device *dev, pn_tensor_map **out) {
  if (!path || !out) return pn_error(PN_ERR_INVALID, "pn_safetensors_load: NULL argument");
  *out = NULL;
  reader r = {.path = path, .fd = open(path, O_RDONLY | O_CLOEXEC)};
  if (r.fd < 0)
    return pn_error(errno == ENOENT ? PN_ERR_NOT_FOUND : PN_ERR_IO, "%s: %s", path,
                    strerror(errno));
  pn_tensor_map *m = pn_tensor_map_new();
  pn_status s = m ? read_header(&r) : PN_ERR_NOMEM;
  if (s == PN_OK) s = parse_entries(&r, m);
  if (s == PN_OK) s = check_coverage(&r);
  for (int i = 0; s == PN_OK && i < r.n; i++) s = make_tensor(&r, &r.e[i], dev, m);
  close(r.fd);
  free(r.e);
  json_decref(r.root);
  if (s != PN_OK) {
    pn_tensor_map_free(m);
    return s;
  }
  *out = m;
  return PN_OK;
}
