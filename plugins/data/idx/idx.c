/* The `idx` dataset: an IDX images file and its labels file (the MNIST
 * family's format), raw or gzip-compressed. Both files are loaded whole at
 * open, as bytes, and checked against their headers exactly; read() only
 * converts bytes to floats through a 256-entry table, so it is cheap and
 * safe to call from several threads at once. */
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <libdeflate.h>
#include <zlib.h>

#include <plugnet/config.h>
#include <plugnet/data.h>
#include <plugnet/plugin.h>

#define FASHION_DIR  "/usr/share/datasets/fashion-mnist/"
#define IDX_MAX_DIMS 4
#define CHUNK        (1u << 16)
/* Payload reads go through zlib's 32-bit avail_out. */
#define MAX_READ ((size_t)1 << 30)

/* ---- a byte source: a plain file, or a gzip stream inflated on the fly */

typedef struct source {
  const char *path;
  FILE *f;
  unsigned char *mem; /* the whole decompressed file, when the fast path worked */
  size_t mem_len, mem_pos;
  int gz, z_ready, z_done;
  z_stream zs;
  unsigned char in[CHUNK];
} source;

static pn_status open_error(const char *path) {
  int e = errno;
  int hint = e == ENOENT && strncmp(path, FASHION_DIR, strlen(FASHION_DIR)) == 0;
  return pn_error(PN_ERR_IO, "%s: %s%s", path, strerror(e),
                  hint ? " (install the Debian package dataset-fashion-mnist)" : "");
}

/* Decompresses every gzip member of `in` with libdeflate, about three
 * times faster than zlib's streaming inflate (a third of a short training
 * run went to zlib). Returns 0 on any failure: zlib then reads the file
 * again and says precisely what is wrong. */
static int deflate_members(const unsigned char *in, size_t n, unsigned char **out, size_t *len) {
  struct libdeflate_decompressor *d = libdeflate_alloc_decompressor();
  /* The last member's trailer holds its size mod 2^32: exact for one member. */
  size_t cap = n >= 4 ? (size_t)in[n - 4] | (size_t)in[n - 3] << 8 | (size_t)in[n - 2] << 16 |
                            (size_t)in[n - 1] << 24
                      : 0;
  if (cap < n) cap = 4 * n + 64;
  unsigned char *buf = malloc(cap);
  size_t pos = 0, have = 0;
  int ok = d && buf;
  while (ok && pos + 1 < n && in[pos] == 0x1f && in[pos + 1] == 0x8b) {
    size_t used = 0, got = 0;
    enum libdeflate_result r =
        libdeflate_gzip_decompress_ex(d, in + pos, n - pos, buf + have, cap - have, &used, &got);
    if (r == LIBDEFLATE_INSUFFICIENT_SPACE) {
      unsigned char *bigger = realloc(buf, cap * 2);
      ok = bigger != NULL;
      if (ok) buf = bigger, cap *= 2;
      continue;
    }
    ok = r == LIBDEFLATE_SUCCESS;
    pos += used;
    have += got;
  }
  libdeflate_free_decompressor(d);
  if (!ok || pos == 0) {
    free(buf);
    return 0;
  }
  *out = buf;
  *len = have;
  return 1;
}

static pn_status inflate_whole(source *s) {
  long size = fseek(s->f, 0, SEEK_END) == 0 ? ftell(s->f) : -1;
  if (size <= 0 || fseek(s->f, 0, SEEK_SET) != 0) return PN_ERR_IO;
  unsigned char *in = malloc((size_t)size);
  int ok = in && fread(in, 1, (size_t)size, s->f) == (size_t)size &&
           deflate_members(in, (size_t)size, &s->mem, &s->mem_len);
  free(in);
  if (ok) return PN_OK;
  clearerr(s->f);
  return fseek(s->f, 0, SEEK_SET) == 0 ? PN_ERR_PARSE : PN_ERR_IO;
}

/* gzip is recognised by its magic bytes, whatever the file is called. */
static pn_status src_open(source *s, const char *path) {
  s->path = path;
  if (!(s->f = fopen(path, "rb"))) return open_error(path);
  unsigned char m[2] = {0, 0};
  size_t got = fread(m, 1, 2, s->f);
  if (ferror(s->f) || fseek(s->f, 0, SEEK_SET) != 0)
    return pn_error(PN_ERR_IO, "%s: %s", path, strerror(errno));
  s->gz = got == 2 && m[0] == 0x1f && m[1] == 0x8b;
  if (!s->gz) return PN_OK;
  if (inflate_whole(s) == PN_OK) return PN_OK;
  /* 16 + MAX_WBITS: a gzip wrapper, whose CRC and length zlib checks. */
  if (inflateInit2(&s->zs, 16 + MAX_WBITS) != Z_OK)
    return pn_error(PN_ERR_NOMEM, "%s: gzip: %s", path, s->zs.msg ? s->zs.msg : "init failed");
  s->z_ready = 1;
  return PN_OK;
}

static void src_close(source *s) {
  free(s->mem);
  if (s->z_ready) inflateEnd(&s->zs);
  if (s->f) fclose(s->f);
}

static pn_status refill(source *s, int *eof) {
  size_t r = fread(s->in, 1, CHUNK, s->f);
  if (r == 0 && ferror(s->f)) return pn_error(PN_ERR_IO, "%s: %s", s->path, strerror(errno));
  s->zs.next_in = s->in;
  s->zs.avail_in = (uInt)r;
  *eof = r == 0;
  return PN_OK;
}

/* After one gzip member ends, another may follow (as `cat a.gz b.gz`
 * makes); anything else after it is ignored, as gzip itself does. */
static pn_status next_member(source *s) {
  int eof = 0;
  if (s->zs.avail_in == 0) PN_TRY(refill(s, &eof));
  if (eof || s->zs.next_in[0] != 0x1f) {
    s->z_done = 1;
    return PN_OK;
  }
  inflateReset(&s->zs);
  return PN_OK;
}

static pn_status gz_read(source *s, unsigned char *buf, size_t n, size_t *got) {
  s->zs.next_out = buf;
  s->zs.avail_out = (uInt)n;
  while (s->zs.avail_out > 0 && !s->z_done) {
    if (s->zs.avail_in == 0) {
      int eof = 0;
      PN_TRY(refill(s, &eof));
      if (eof)
        return pn_error(PN_ERR_PARSE,
                        "%s: gzip: unexpected end of compressed data after %zu decompressed bytes "
                        "(truncated file?)",
                        s->path, (size_t)s->zs.total_out);
    }
    int z = inflate(&s->zs, Z_NO_FLUSH);
    if (z == Z_STREAM_END)
      PN_TRY(next_member(s));
    else if (z == Z_MEM_ERROR)
      return pn_error(PN_ERR_NOMEM, "%s: gzip: out of memory", s->path);
    else if (z != Z_OK && z != Z_BUF_ERROR)
      return pn_error(PN_ERR_PARSE, "%s: gzip: %s", s->path, s->zs.msg ? s->zs.msg : zError(z));
  }
  *got = n - s->zs.avail_out;
  return PN_OK;
}

/* Reads up to n bytes; fewer only at the end of the data. */
static pn_status src_read(source *s, void *buf, size_t n, size_t *got) {
  *got = 0;
  while (*got < n) {
    size_t want = n - *got < MAX_READ ? n - *got : MAX_READ, r = 0;
    unsigned char *p = (unsigned char *)buf + *got;
    if (s->mem) {
      r = s->mem_len - s->mem_pos < want ? s->mem_len - s->mem_pos : want;
      memcpy(p, s->mem + s->mem_pos, r);
      s->mem_pos += r;
    } else if (s->gz)
      PN_TRY(gz_read(s, p, want, &r));
    else {
      r = fread(p, 1, want, s->f);
      if (r < want && ferror(s->f)) return pn_error(PN_ERR_IO, "%s: %s", s->path, strerror(errno));
    }
    *got += r;
    if (r < want) break;
  }
  return PN_OK;
}

/* Bytes left in the source, counted by reading them. */
static pn_status src_count_rest(source *s, size_t *rest) {
  unsigned char scratch[4096];
  size_t r = 0;
  *rest = 0;
  do {
    PN_TRY(src_read(s, scratch, sizeof scratch, &r));
    *rest += r;
  } while (r == sizeof scratch);
  return PN_OK;
}

/* ---- the IDX format: 00 00 TYPE NDIMS, NDIMS big-endian u32 sizes, data */

typedef struct idx_array {
  int ndim;
  int64_t dim[IDX_MAX_DIMS];
  size_t bytes; /* the payload, the product of the dimensions */
  unsigned char *data;
} idx_array;

static const char *type_name(int t) {
  switch (t) {
  case 0x08: return "unsigned byte";
  case 0x09: return "signed byte";
  case 0x0B: return "short";
  case 0x0C: return "int";
  case 0x0D: return "float";
  case 0x0E: return "double";
  default: return "not an IDX type";
  }
}

static const char *dims_str(const idx_array *a, char *buf, size_t n) {
  size_t used = 0;
  buf[0] = '\0';
  for (int i = 0; i < a->ndim && used < n; i++)
    used += (size_t)snprintf(buf + used, n - used, "%s%lld", i ? "x" : "", (long long)a->dim[i]);
  return buf;
}

static pn_status check_magic(const char *path, const unsigned char h[4], size_t got, int labels) {
  if (got == 0) return pn_error(PN_ERR_PARSE, "%s: empty file (expected an IDX header)", path);
  if (got < 4)
    return pn_error(PN_ERR_PARSE, "%s: truncated: %zu bytes, too short for an IDX header", path,
                    got);
  if (h[0] != 0 || h[1] != 0)
    return pn_error(PN_ERR_PARSE,
                    "%s: not an IDX file: magic bytes %02x %02x %02x %02x, expected 00 00 08 NN",
                    path, h[0], h[1], h[2], h[3]);
  if (h[2] != 0x08)
    return pn_error(PN_ERR_PARSE,
                    "%s: IDX element type 0x%02x (%s) is not supported; only 0x08 "
                    "(unsigned byte) is",
                    path, h[2], type_name(h[2]));
  if (labels && h[3] != 1)
    return pn_error(PN_ERR_PARSE, "%s: expected a labels file (1 dimension), found %d dimensions%s",
                    path, h[3], h[3] >= 2 ? " (an images file?)" : "");
  if (!labels && (h[3] < 2 || h[3] > IDX_MAX_DIMS))
    return pn_error(PN_ERR_PARSE, "%s: expected an images file (2 to %d dimensions), found %d%s",
                    path, IDX_MAX_DIMS, h[3], h[3] == 1 ? " (a labels file?)" : "");
  return PN_OK;
}

static pn_status read_dims(source *s, idx_array *a) {
  unsigned char b[4 * IDX_MAX_DIMS];
  size_t need = 4 * (size_t)a->ndim, got = 0;
  PN_TRY(src_read(s, b, need, &got));
  if (got < need)
    return pn_error(PN_ERR_PARSE, "%s: truncated header: %d dimensions need %zu bytes, found %zu",
                    s->path, a->ndim, need, got);
  a->bytes = 1;
  for (int i = 0; i < a->ndim; i++) {
    const unsigned char *p = b + 4 * i;
    a->dim[i] = (int64_t)((uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3]);
    if (a->dim[i] == 0) return pn_error(PN_ERR_PARSE, "%s: dimension %d is 0", s->path, i);
    if (a->bytes > SIZE_MAX / 2 / (size_t)a->dim[i])
      return pn_error(PN_ERR_PARSE, "%s: dimensions too large", s->path);
    a->bytes *= (size_t)a->dim[i];
  }
  return PN_OK;
}

static pn_status size_error(const source *s, const idx_array *a, size_t found, int more) {
  char d[96];
  return pn_error(PN_ERR_PARSE, "%s: %sheader says %s = %zu bytes, file holds %zu%s%s", s->path,
                  more ? "" : "truncated: ", dims_str(a, d, sizeof d), a->bytes, found,
                  s->gz ? " after decompression" : "", more ? " (trailing data)" : "");
}

/* A plain file's size is known up front, so a lying header is caught before
 * its payload is allocated. */
static pn_status check_raw_size(const source *s, const idx_array *a) {
  struct stat st;
  if (fstat(fileno(s->f), &st) != 0) return pn_error(PN_ERR_IO, "%s: %s", s->path, strerror(errno));
  size_t header = 4 + 4 * (size_t)a->ndim;
  size_t payload = (size_t)st.st_size - header;
  if (S_ISREG(st.st_mode) && payload != a->bytes)
    return size_error(s, a, payload, payload > a->bytes);
  return PN_OK;
}

/* A gzip stream's size is not, so the buffer grows as data arrives instead
 * of trusting the header with one huge allocation. */
static pn_status read_payload(source *s, idx_array *a) {
  size_t have = 0, cap = 0;
  while (have < a->bytes) {
    size_t next = cap ? cap * 2 : (size_t)1 << 20;
    cap = next < a->bytes ? next : a->bytes;
    unsigned char *grown = realloc(a->data, cap);
    if (!grown) return pn_error(PN_ERR_NOMEM, "%s: out of memory for %zu bytes", s->path, cap);
    a->data = grown;
    size_t got = 0;
    PN_TRY(src_read(s, a->data + have, cap - have, &got));
    have += got;
    if (have < cap) return size_error(s, a, have, 0);
  }
  size_t rest = 0;
  PN_TRY(src_count_rest(s, &rest));
  if (rest) return size_error(s, a, a->bytes + rest, 1);
  return PN_OK;
}

static pn_status load_idx(source *s, int labels, idx_array *a) {
  unsigned char h[4];
  size_t got = 0;
  PN_TRY(src_read(s, h, 4, &got));
  PN_TRY(check_magic(s->path, h, got, labels));
  a->ndim = h[3];
  PN_TRY(read_dims(s, a));
  if (!s->gz) PN_TRY(check_raw_size(s, a));
  return read_payload(s, a);
}

static pn_status idx_load(const char *path, int labels, idx_array *a) {
  source *s = calloc(1, sizeof *s);
  if (!s) return pn_error(PN_ERR_NOMEM, "%s: out of memory", path);
  pn_status st = src_open(s, path);
  if (st == PN_OK) st = load_idx(s, labels, a);
  src_close(s);
  free(s);
  if (st != PN_OK) {
    free(a->data);
    a->data = NULL;
  }
  return st;
}

/* ---- the dataset */

typedef struct idx_ds {
  idx_array images, labels;
  pn_dataset_info info;
  size_t sample;          /* bytes per image */
  float scale, mean, std; /* x = (byte / scale - mean) / std */
  char **names;
  int n_names;
} idx_ds;

static void ds_free(idx_ds *d) {
  if (!d) return;
  free(d->images.data);
  free(d->labels.data);
  for (int i = 0; i < d->n_names; i++) free(d->names[i]);
  free(d->names);
  free(d);
}

static pn_status parse_classes(idx_ds *d, const char *list) {
  if (!list || !*list) return PN_OK;
  int n = 1;
  for (const char *c = list; *c; c++) n += *c == ',';
  if (!(d->names = calloc((size_t)n, sizeof *d->names)))
    return pn_error(PN_ERR_NOMEM, "idx: out of memory");
  const char *p = list;
  for (int i = 0; i < n; i++) {
    const char *end = strchr(p, ',');
    if (!end) end = p + strlen(p);
    const char *b = p, *e = end;
    while (b < e && (*b == ' ' || *b == '\t')) b++;
    while (e > b && (e[-1] == ' ' || e[-1] == '\t')) e--;
    if (b == e) return pn_error(PN_ERR_INVALID, "idx: classes: name %d is empty in '%s'", i, list);
    if (!(d->names[i] = strndup(b, (size_t)(e - b))))
      return pn_error(PN_ERR_NOMEM, "idx: out of memory");
    d->n_names = i + 1;
    p = end + 1;
  }
  return PN_OK;
}

static pn_status set_classes(idx_ds *d, const char *labels_path, const char *classes) {
  int max = 0;
  for (size_t i = 0; i < d->labels.bytes; i++)
    if (d->labels.data[i] > max) max = d->labels.data[i];
  PN_TRY(parse_classes(d, classes));
  if (d->n_names && max >= d->n_names)
    return pn_error(PN_ERR_INVALID, "%s: holds label %d but classes names only %d classes",
                    labels_path, max, d->n_names);
  d->info.n_classes = d->n_names ? d->n_names : max + 1;
  return PN_OK;
}

static pn_status set_normalisation(idx_ds *d, const pn_config *cfg) {
  double scale = pn_config_float(cfg, "scale"), mean = pn_config_float(cfg, "mean");
  double sd = pn_config_float(cfg, "std");
  if (scale == 0 || !isfinite(scale))
    return pn_error(PN_ERR_INVALID, "idx: scale must be finite and non-zero, got %g", scale);
  if (sd == 0 || !isfinite(sd))
    return pn_error(PN_ERR_INVALID, "idx: std must be finite and non-zero, got %g", sd);
  d->scale = (float)scale;
  d->mean = (float)mean;
  d->std = (float)sd;
  return PN_OK;
}

static void set_shapes(idx_ds *d, int64_t limit) {
  const idx_array *im = &d->images;
  int64_t n = im->dim[0];
  d->info.length = limit > 0 && limit < n ? limit : n;
  /* N x H x W images become 1 x H x W: one channel, as convolutions expect. */
  pn_shape *x = &d->info.x_shape;
  x->ndim = 0;
  if (im->ndim == 3) x->dim[x->ndim++] = 1;
  for (int i = 1; i < im->ndim; i++) x->dim[x->ndim++] = im->dim[i];
  d->info.y_shape.ndim = 0;
  d->sample = im->bytes / (size_t)n;
}

static pn_status ds_open(const pn_config *cfg, void **out) {
  const char *ip = pn_config_str(cfg, "images"), *lp = pn_config_str(cfg, "labels");
  *out = NULL;
  if (!ip || !lp) return pn_error(PN_ERR_INVALID, "idx: both images and labels are required");
  idx_ds *d = calloc(1, sizeof *d);
  if (!d) return pn_error(PN_ERR_NOMEM, "idx: out of memory");
  pn_status s = set_normalisation(d, cfg);
  if (s == PN_OK) s = idx_load(ip, 0, &d->images);
  if (s == PN_OK) s = idx_load(lp, 1, &d->labels);
  if (s == PN_OK && d->images.dim[0] != d->labels.dim[0])
    s = pn_error(PN_ERR_PARSE, "idx: %s holds %lld images but %s holds %lld labels", ip,
                 (long long)d->images.dim[0], lp, (long long)d->labels.dim[0]);
  if (s == PN_OK) s = set_classes(d, lp, pn_config_str(cfg, "classes"));
  if (s != PN_OK) {
    ds_free(d);
    return s;
  }
  set_shapes(d, pn_config_int(cfg, "limit"));
  *out = d;
  return PN_OK;
}

static pn_status ds_info(void *ds, pn_dataset_info *info) {
  *info = ((const idx_ds *)ds)->info;
  return PN_OK;
}

/* Arithmetic rather than a 256-entry table: gcc vectorises it (a lookup per
 * byte it cannot), which matters at 100 K pixels a batch. Dividing, not
 * multiplying by reciprocals, keeps v / 255 exactly what PyTorch computes. */
__attribute__((target_clones("avx512f", "avx2", "default"))) static void
bytes_to_floats(float *restrict dst, const unsigned char *restrict src, size_t n, float scale,
                float mean, float std) {
  for (size_t j = 0; j < n; j++) dst[j] = ((float)src[j] / scale - mean) / std;
}

/* Shuffled samples sit at random places in a buffer far larger than the
 * caches, so each one's first touch would stall on memory: fetching the
 * sample after next while converting this one hides that (profiles showed
 * most of the conversion's time on its loads). */
static void prefetch_sample(const idx_ds *d, const int64_t *idx, int64_t i, int64_t n) {
  if (i >= n || idx[i] < 0 || idx[i] >= d->info.length) return;
  const unsigned char *p = d->images.data + (size_t)idx[i] * d->sample;
  for (size_t off = 0; off < d->sample; off += 64) __builtin_prefetch(p + off);
}

static pn_status ds_read(void *ds, const int64_t *idx, int64_t n, float *x, int64_t *y) {
  const idx_ds *d = ds;
  if (x) prefetch_sample(d, idx, 0, n);
  if (x) prefetch_sample(d, idx, 1, n);
  for (int64_t i = 0; i < n; i++) {
    int64_t k = idx[i];
    if (k < 0 || k >= d->info.length)
      return pn_error(PN_ERR_INVALID, "idx: sample %lld out of range [0, %lld)", (long long)k,
                      (long long)d->info.length);
    if (x) {
      prefetch_sample(d, idx, i + 2, n);
      const unsigned char *src = d->images.data + (size_t)k * d->sample;
      float *dst = x + (size_t)i * d->sample;
      bytes_to_floats(dst, src, d->sample, d->scale, d->mean, d->std);
    }
    if (y) y[i] = d->labels.data[k];
  }
  return PN_OK;
}

static void ds_close(void *ds) { ds_free(ds); }

static const char *ds_class_name(void *ds, int k) {
  const idx_ds *d = ds;
  return k >= 0 && k < d->n_names ? d->names[k] : NULL;
}

static const pn_dataset_iface idx_iface = {.size = sizeof(pn_dataset_iface),
                                           .open = ds_open,
                                           .info = ds_info,
                                           .read = ds_read,
                                           .close = ds_close,
                                           .class_name = ds_class_name};

static pn_status init(pn_plugin_ctx *ctx) {
  return pn_plugin_add_feature(ctx, "data", "idx", &idx_iface);
}

PN_PLUGIN_DEFINE("idx", "0.1.0", init, NULL);
