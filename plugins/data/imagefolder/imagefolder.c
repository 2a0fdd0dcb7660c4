/* The `imagefolder` dataset: photos on disk, labelled by the folder they sit
 * in (torchvision's ImageFolder), by a regular expression on their names
 * (fastai's label_from_re), or by a list file of "path label" lines.
 *
 * Everything that can go wrong with a file is found at open: each image's
 * header is read (and by default the whole image decoded once, in
 * parallel), so training never meets a broken file halfway through an
 * epoch. Such files are skipped with a warning each; problems with the set
 * as a whole (no images, an empty class, a bad regex) are errors. The set
 * keeps only paths, sizes and labels: the core decodes samples on demand
 * through the probe and decode slots. */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <libgen.h>
#include <regex.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>
#include <jansson.h>

#include <plugnet/config.h>
#include <plugnet/data.h>
#include <plugnet/image.h>
#include <plugnet/log.h>
#include <plugnet/plugin.h>
#include <plugnet/threadpool.h>

/* Deep enough for any sane photo collection, and a stop for symlink loops. */
#define MAX_DEPTH 16
/* The full check decodes at 1/8 scale: libjpeg still Huffman-decodes every
 * block (where truncation and corruption show), but skips most of the
 * inverse DCT and colour work. */
#define CHECK_REDUCE 8

typedef struct item {
  char *path;
  char *label; /* freed once the class index is known */
  int cls, w, h;
  char *why; /* why the file is skipped; NULL: usable */
} item;

typedef struct scan {
  const char *root, *list, *regex_text;
  const char *where; /* root or list, for messages */
  regex_t re;
  int has_re;
  char **exts;
  int n_exts;
  item *v;
  int64_t n, cap;
  char **classes;
  int n_classes;
} scan;

typedef struct ifolder {
  item *v;
  int64_t n;
  char **classes;
  int n_classes;
} ifolder;

/* ---- small helpers */

static pn_status nomem(void) { return pn_error(PN_ERR_NOMEM, "imagefolder: out of memory"); }

static void free_strings(char **s, int n) {
  for (int i = 0; s && i < n; i++) free(s[i]);
  free(s);
}

static char *join_path(const char *dir, const char *name) {
  char *p = NULL;
  return asprintf(&p, "%s/%s", dir, name) < 0 ? NULL : p;
}

static int is_dir(const char *path) {
  struct stat st;
  return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

/* Splits "a, b,c" into trimmed, non-empty names. */
static pn_status split_list(const char *text, const char *what, char ***out, int *n) {
  *out = NULL, *n = 0;
  int cap = 1;
  for (const char *c = text; *c; c++) cap += *c == ',';
  if (!(*out = calloc((size_t)cap, sizeof **out))) return nomem();
  for (const char *p = text;; p++) {
    const char *end = strchr(p, ',');
    if (!end) end = p + strlen(p);
    const char *b = p, *e = end;
    while (b < e && isspace((unsigned char)*b)) b++;
    while (e > b && isspace((unsigned char)e[-1])) e--;
    if (b == e) return pn_error(PN_ERR_INVALID, "imagefolder: %s: empty name in '%s'", what, text);
    if (!((*out)[(*n)++] = strndup(b, (size_t)(e - b)))) return nomem();
    if (!*(p = end)) break;
  }
  return PN_OK;
}

static int has_image_extension(const scan *s, const char *name) {
  const char *dot = strrchr(name, '.');
  for (int i = 0; dot && i < s->n_exts; i++)
    if (strcasecmp(dot + 1, s->exts[i]) == 0) return 1;
  return 0;
}

/* ".jpg/.jpeg/.png", for the "no images" messages. */
static const char *ext_names(const scan *s, char *buf, size_t cap) {
  size_t used = 0;
  buf[0] = '\0';
  for (int i = 0; i < s->n_exts && used < cap; i++)
    used += (size_t)snprintf(buf + used, cap - used, "%s.%s", i ? "/" : "", s->exts[i]);
  return buf;
}

static pn_status add_item(scan *s, char *path, char *label, char *why) {
  if (!path || (!label && !why)) return free(path), free(label), free(why), nomem();
  if (s->n == s->cap) {
    int64_t cap = s->cap ? 2 * s->cap : 256;
    item *v = realloc(s->v, sizeof *v * (size_t)cap);
    if (!v) return free(path), free(label), free(why), nomem();
    s->v = v, s->cap = cap;
  }
  s->v[s->n++] = (item){.path = path, .label = label, .why = why, .cls = -1};
  return PN_OK;
}

/* ---- reading folders */

static int by_name(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The entries of dir, sorted. Hidden entries are left out: macOS's "._x.jpg"
 * resource forks and Jupyter's .ipynb_checkpoints are not photos. */
static pn_status list_dir(const char *dir, char ***names, int *n) {
  DIR *d = opendir(dir);
  *names = NULL, *n = 0;
  if (!d) return pn_error(PN_ERR_IO, "%s: %s", dir, strerror(errno));
  int cap = 0;
  pn_status s = PN_OK;
  for (struct dirent *e; s == PN_OK && (e = readdir(d));) {
    if (e->d_name[0] == '.') continue;
    if (*n == cap) {
      char **grown = realloc(*names, sizeof *grown * (size_t)(cap = cap ? 2 * cap : 64));
      if (!grown)
        s = nomem();
      else
        *names = grown;
    }
    if (s == PN_OK && !((*names)[(*n)++] = strdup(e->d_name))) s = nomem(), (*n)--;
  }
  closedir(d);
  if (s == PN_OK && *n) qsort(*names, (size_t)*n, sizeof **names, by_name);
  return s;
}

/* The label from the regex's first group, matched against the file name. */
static char *regex_label(const scan *s, const char *name) {
  regmatch_t m[2];
  if (regexec(&s->re, name, 2, m, 0) != 0 || m[1].rm_so < 0 || m[1].rm_eo <= m[1].rm_so)
    return NULL;
  return strndup(name + m[1].rm_so, (size_t)(m[1].rm_eo - m[1].rm_so));
}

static pn_status add_file(scan *s, const char *dir, const char *name, const char *label) {
  char *path = join_path(dir, name), *why = NULL, *lab = NULL;
  if (label)
    lab = strdup(label);
  else if (!(lab = regex_label(s, name)) && path &&
           asprintf(&why, "%s: its name does not match regex '%s'", path, s->regex_text) < 0)
    why = NULL;
  return add_item(s, path, lab, why);
}

/* Adds the images under dir (recursively, in name order) with `label`, or
 * with labels from the regex when label is NULL. */
static pn_status walk(scan *s, const char *dir, const char *label, int depth) {
  char **names = NULL;
  int n = 0;
  pn_status st = list_dir(dir, &names, &n);
  for (int i = 0; st == PN_OK && i < n; i++) {
    char *path = join_path(dir, names[i]);
    if (!path)
      st = nomem();
    else if (is_dir(path))
      st = depth < MAX_DEPTH ? walk(s, path, label, depth + 1) : PN_OK;
    else if (has_image_extension(s, names[i]))
      st = add_file(s, dir, names[i], label);
    free(path);
  }
  free_strings(names, n);
  return st;
}

static pn_status no_images(const scan *s) {
  char ext[128];
  ext_names(s, ext, sizeof ext);
  if (s->has_re)
    return pn_error(PN_ERR_NOT_FOUND, "%s: no images found: no %s files in it or its subfolders",
                    s->root, ext);
  return pn_error(PN_ERR_NOT_FOUND,
                  "%s: no images found: expected one folder per class holding %s files", s->root,
                  ext);
}

static int wanted_class(char *const *classes, int n, const char *name) {
  if (!n) return 1;
  for (int i = 0; i < n; i++)
    if (strcmp(classes[i], name) == 0) return 1;
  return 0;
}

/* One class per subfolder of root; an empty one is an error rather than a
 * class that silently never appears. */
static pn_status scan_class_folders(scan *s, char **wanted, int n_wanted) {
  char **names = NULL;
  int n = 0, empty = -1;
  pn_status st = list_dir(s->root, &names, &n);
  for (int i = 0; st == PN_OK && i < n; i++) {
    char *path = join_path(s->root, names[i]);
    int64_t before = s->n;
    if (!path) st = nomem();
    if (st != PN_OK || !is_dir(path) || !wanted_class(wanted, n_wanted, names[i])) {
      free(path);
      continue;
    }
    st = walk(s, path, names[i], 1);
    if (s->n == before && empty < 0) empty = i;
    free(path);
  }
  if (st == PN_OK && s->n == 0) st = no_images(s);
  if (st == PN_OK && empty >= 0)
    st =
        pn_error(PN_ERR_NOT_FOUND, "%s/%s: this class folder has no images", s->root, names[empty]);
  free_strings(names, n);
  return st;
}

static pn_status scan_regex(scan *s) {
  PN_TRY(walk(s, s->root, NULL, 0));
  if (s->n == 0) return no_images(s);
  for (int64_t i = 0; i < s->n; i++)
    if (s->v[i].label) return PN_OK;
  const char *slash = strrchr(s->v[0].path, '/');
  return pn_error(PN_ERR_NOT_FOUND,
                  "imagefolder: regex '%s' matches no file name under %s (e.g. %s)", s->regex_text,
                  s->root, slash ? slash + 1 : s->v[0].path);
}

/* ---- list files */

/* "relative/path label": the label is the last word, so paths may hold spaces. */
static pn_status parse_list_line(scan *s, const char *dir, char *line, int lineno) {
  char *e = line + strlen(line);
  while (e > line && isspace((unsigned char)e[-1])) *--e = '\0';
  while (isspace((unsigned char)*line)) line++;
  if (!*line || *line == '#') return PN_OK;
  char *sp = e;
  while (sp > line && !isspace((unsigned char)sp[-1])) sp--;
  if (sp == line)
    return pn_error(PN_ERR_PARSE, "%s:%d: expected 'path label', got '%s'", s->list, lineno, line);
  char *label = strdup(sp);
  while (sp > line && isspace((unsigned char)sp[-1])) *--sp = '\0';
  char *path = line[0] == '/' ? strdup(line) : join_path(dir, line);
  return add_item(s, path, label, NULL);
}

static pn_status scan_list(scan *s) {
  FILE *f = fopen(s->list, "r");
  if (!f) return pn_error(PN_ERR_IO, "%s: %s", s->list, strerror(errno));
  char *copy = strdup(s->list), *line = NULL;
  size_t cap = 0;
  pn_status st = copy ? PN_OK : nomem();
  const char *dir = copy ? dirname(copy) : NULL;
  for (int lineno = 1; st == PN_OK && getline(&line, &cap, f) >= 0; lineno++)
    st = parse_list_line(s, dir, line, lineno);
  if (st == PN_OK && ferror(f)) st = pn_error(PN_ERR_IO, "%s: %s", s->list, strerror(errno));
  if (st == PN_OK && s->n == 0)
    st = pn_error(PN_ERR_NOT_FOUND, "%s: lists no images (expected 'path label' lines)", s->list);
  free(line);
  free(copy);
  fclose(f);
  return st;
}

/* ---- classes */

static int is_integer(const char *t) {
  if (!*t) return 0;
  for (; *t; t++)
    if (!isdigit((unsigned char)*t)) return 0;
  return 1;
}

static int numeric_order(const char *a, const char *b) {
  while (*a == '0' && a[1]) a++;
  while (*b == '0' && b[1]) b++;
  size_t la = strlen(a), lb = strlen(b);
  return la != lb ? (la < lb ? -1 : 1) : strcmp(a, b);
}

static int by_number(const void *a, const void *b) {
  return numeric_order(*(char *const *)a, *(char *const *)b);
}

/* The sorted set of labels. Labels that are all integers (a list file's
 * "img.jpg 3") sort as numbers, so 10 follows 9. */
static pn_status classes_from_labels(scan *s) {
  char **all = malloc(sizeof *all * (size_t)(s->n ? s->n : 1));
  if (!all) return nomem();
  int64_t n = 0;
  int numeric = 1;
  for (int64_t i = 0; i < s->n; i++)
    if (s->v[i].label) all[n++] = s->v[i].label, numeric &= is_integer(s->v[i].label);
  qsort(all, (size_t)n, sizeof *all, numeric ? by_number : by_name);
  pn_status st = (s->classes = calloc((size_t)(n ? n : 1), sizeof *s->classes)) ? PN_OK : nomem();
  for (int64_t i = 0; st == PN_OK && i < n; i++) {
    if (i > 0 && strcmp(all[i], all[i - 1]) == 0) continue;
    if (!(s->classes[s->n_classes] = strdup(all[i])))
      st = nomem();
    else
      s->n_classes++;
  }
  free(all);
  return st;
}

typedef struct class_key {
  const char *name;
  int index;
} class_key;

static int by_key(const void *a, const void *b) {
  return strcmp(((const class_key *)a)->name, ((const class_key *)b)->name);
}

/* Gives every item its class index; items of classes left out by the
 * `classes` parameter are dropped. */
static pn_status assign_classes(scan *s) {
  class_key *keys = malloc(sizeof *keys * (size_t)s->n_classes);
  if (!keys) return nomem();
  for (int k = 0; k < s->n_classes; k++) keys[k] = (class_key){s->classes[k], k};
  qsort(keys, (size_t)s->n_classes, sizeof *keys, by_key);
  int64_t kept = 0;
  for (int64_t i = 0; i < s->n; i++) {
    item it = s->v[i];
    class_key want = {it.label, 0},
              *hit = it.label ? bsearch(&want, keys, (size_t)s->n_classes, sizeof *keys, by_key)
                              : NULL;
    if (it.label && !hit) {
      free(it.path), free(it.label), free(it.why);
      continue;
    }
    it.cls = hit ? hit->index : -1;
    s->v[kept++] = it;
  }
  s->n = kept;
  free(keys);
  return PN_OK;
}

/* The first class without items (only usable ones when `usable`); -1: none. */
static int first_empty_class(const scan *s, int usable) {
  int64_t *count = calloc((size_t)s->n_classes + 1, sizeof *count);
  int empty = -1;
  if (!count) return -1;
  for (int64_t i = 0; i < s->n; i++)
    if (s->v[i].cls >= 0 && !(usable && s->v[i].why)) count[s->v[i].cls]++;
  for (int k = 0; empty < 0 && k < s->n_classes; k++)
    if (!count[k]) empty = k;
  free(count);
  return empty;
}

/* Every class named in `classes` must have images somewhere. */
static pn_status check_named_classes(const scan *s) {
  int k = first_empty_class(s, 0);
  if (k < 0) return PN_OK;
  return pn_error(PN_ERR_NOT_FOUND, "imagefolder: classes names '%s', but %s has no images of it",
                  s->classes[k], s->where);
}

static pn_status set_classes(scan *s, char **named, int n_named) {
  if (n_named) {
    s->classes = named, s->n_classes = n_named;
  } else {
    PN_TRY(classes_from_labels(s));
  }
  PN_TRY(assign_classes(s));
  if (s->n == 0)
    return pn_error(PN_ERR_NOT_FOUND, "%s: none of its images is in classes", s->where);
  return check_named_classes(s);
}

/* ---- checking the files */

typedef struct verify_job {
  item *v;
  int full;
  double max_aspect;
} verify_job;

static char *copy_error(void) { return strdup(pn_last_error()); }

static void verify_item(const verify_job *job, item *it) {
  pn_image img = {0, 0, NULL};
  if (pn_image_probe(it->path, &it->w, &it->h) != PN_OK) {
    it->why = copy_error();
    return;
  }
  int lo = it->w < it->h ? it->w : it->h, hi = it->w < it->h ? it->h : it->w;
  if (job->max_aspect > 0 && hi > job->max_aspect * lo) {
    if (asprintf(&it->why, "%s: aspect ratio %.2f (%dx%d) is above max_aspect %g", it->path,
                 (double)hi / lo, it->w, it->h, job->max_aspect) < 0)
      it->why = NULL;
    return;
  }
  if (job->full && pn_image_load(it->path, CHECK_REDUCE, &img) != PN_OK) it->why = copy_error();
  pn_image_free(&img);
}

static void verify_range(void *arg, int64_t begin, int64_t end, int worker) {
  const verify_job *job = arg;
  (void)worker;
  for (int64_t i = begin; i < end; i++)
    if (!job->v[i].why) verify_item(job, &job->v[i]);
}

/* Warnings are printed afterwards, in file order, so runs read the same
 * whatever the threads did. */
static int64_t report_skipped(const scan *s) {
  int64_t skipped = 0;
  for (int64_t i = 0; i < s->n; i++)
    if (s->v[i].why) {
      PN_WARN("imagefolder: skipped %s", s->v[i].why);
      skipped++;
    }
  if (skipped)
    PN_WARN("imagefolder: skipped %lld of %lld files %s %s", (long long)skipped, (long long)s->n,
            s->list ? "listed in" : "under", s->where);
  return skipped;
}

static pn_status verify_all(scan *s, const pn_config *cfg) {
  const char *check = pn_config_str(cfg, "check");
  verify_job job = {s->v, !check || strcmp(check, "header") != 0,
                    pn_config_float(cfg, "max_aspect")};
  pn_threadpool_parallel_for(pn_threadpool_global(), s->n, 4, verify_range, &job);
  int64_t skipped = report_skipped(s);
  if (skipped == s->n)
    return pn_error(PN_ERR_INVALID, "%s: all %lld images were skipped (see the warnings above)",
                    s->where, (long long)s->n);
  return PN_OK;
}

/* A class all of whose files were skipped would leave a class index no
 * sample uses: better said now than found as a dead output later. (With
 * `limit`, small runs may well miss a class; that is their business.) */
static pn_status check_classes_used(const scan *s, int64_t limit) {
  int k = limit > 0 ? -1 : first_empty_class(s, 1);
  if (k < 0) return PN_OK;
  return pn_error(PN_ERR_INVALID, "imagefolder: class '%s' has no usable images (all skipped)",
                  s->classes[k]);
}

/* `limit` keeps N items spread evenly over the sorted list, so that a small
 * run still sees every class in its proportion. */
static void apply_limit(scan *s, int64_t limit) {
  if (limit <= 0 || limit >= s->n) return;
  char *keep = calloc((size_t)s->n, 1);
  if (!keep) return;
  for (int64_t j = 0; j < limit; j++) keep[j * s->n / limit] = 1;
  int64_t kept = 0;
  for (int64_t i = 0; i < s->n; i++) {
    if (keep[i])
      s->v[kept++] = s->v[i];
    else
      free(s->v[i].path), free(s->v[i].label), free(s->v[i].why);
  }
  s->n = kept;
  free(keep);
}

/* ---- the class index file */

static pn_status write_atomically(const char *path, const char *text) {
  char *tmp = NULL;
  if (asprintf(&tmp, "%s.tmp-XXXXXX", path) < 0) return nomem();
  int fd = mkstemp(tmp);
  FILE *f = fd >= 0 && fchmod(fd, 0644) == 0 ? fdopen(fd, "w") : NULL;
  int ok = f && fputs(text, f) >= 0;
  if (f)
    ok = fclose(f) == 0 && ok;
  else if (fd >= 0)
    close(fd);
  ok = ok && rename(tmp, path) == 0;
  pn_status s = ok ? PN_OK : pn_error(PN_ERR_IO, "%s: %s", path, strerror(errno));
  if (!ok && fd >= 0) unlink(tmp);
  free(tmp);
  return s;
}

/* {"0": "cardboard", "1": "glass", ...}, indented by 4 like Python's
 * json.dumps(..., indent=4) in seed 003. */
static pn_status write_class_index(const scan *s, const char *path) {
  json_t *o = json_object();
  int ok = o != NULL;
  for (int k = 0; ok && k < s->n_classes; k++) {
    char key[16];
    snprintf(key, sizeof key, "%d", k);
    ok = json_object_set_new(o, key, json_string(s->classes[k])) == 0;
  }
  char *text = ok ? json_dumps(o, JSON_INDENT(4) | JSON_PRESERVE_ORDER | JSON_ENSURE_ASCII) : NULL;
  json_decref(o);
  if (!text)
    return pn_error(PN_ERR_INVALID, "%s: cannot encode the class names as JSON (not UTF-8?)", path);
  pn_status st = write_atomically(path, text);
  free(text);
  return st;
}

/* ---- open */

static pn_status read_params(scan *s, const pn_config *cfg) {
  s->root = pn_config_str(cfg, "root"), s->list = pn_config_str(cfg, "list");
  s->regex_text = pn_config_str(cfg, "regex");
  int has_root = s->root && *s->root, has_list = s->list && *s->list;
  if (has_root == has_list)
    return pn_error(PN_ERR_INVALID,
                    "imagefolder: give %s root (a folder of class folders) or list "
                    "(a file of 'path label' lines)",
                    has_root ? "only one of" : "either");
  if (has_list && s->regex_text && *s->regex_text)
    return pn_error(PN_ERR_INVALID,
                    "imagefolder: regex labels files under root; a list names its labels");
  s->where = has_root ? s->root : s->list;
  if (!has_root) s->root = NULL;
  if (!has_list) s->list = NULL;
  if (has_root && !is_dir(s->root))
    return pn_error(PN_ERR_NOT_FOUND, "%s: %s", s->root,
                    access(s->root, F_OK) == 0 ? "not a directory" : strerror(errno));
  PN_TRY(split_list(pn_config_str(cfg, "extensions"), "extensions", &s->exts, &s->n_exts));
  for (int i = 0; i < s->n_exts; i++)
    if (s->exts[i][0] == '.') memmove(s->exts[i], s->exts[i] + 1, strlen(s->exts[i]));
  return PN_OK;
}

static pn_status compile_regex(scan *s) {
  if (!s->regex_text || !*s->regex_text) return PN_OK;
  int rc = regcomp(&s->re, s->regex_text, REG_EXTENDED);
  if (rc != 0) {
    char msg[160];
    regerror(rc, &s->re, msg, sizeof msg);
    return pn_error(PN_ERR_INVALID, "imagefolder: regex '%s': %s", s->regex_text, msg);
  }
  s->has_re = 1;
  if (s->re.re_nsub < 1)
    return pn_error(PN_ERR_INVALID,
                    "imagefolder: regex '%s' needs a group, e.g. ^([a-z]+)_[0-9]+, "
                    "whose match is the label",
                    s->regex_text);
  return PN_OK;
}

static pn_status collect(scan *s, const pn_config *cfg) {
  char **named = NULL;
  int n_named = 0;
  const char *classes = pn_config_str(cfg, "classes");
  pn_status st = classes && *classes ? split_list(classes, "classes", &named, &n_named) : PN_OK;
  if (st == PN_OK) st = compile_regex(s);
  if (st == PN_OK)
    st = s->list ? scan_list(s) : s->has_re ? scan_regex(s) : scan_class_folders(s, named, n_named);
  if (st == PN_OK) return set_classes(s, named, n_named);
  free_strings(named, n_named);
  return st;
}

static void scan_free(scan *s) {
  for (int64_t i = 0; i < s->n; i++) free(s->v[i].path), free(s->v[i].label), free(s->v[i].why);
  free(s->v);
  free_strings(s->classes, s->n_classes);
  free_strings(s->exts, s->n_exts);
  if (s->has_re) regfree(&s->re);
}

/* Moves the usable items and the class names from the scan into the set. */
static void keep_usable(scan *s, ifolder *d) {
  int64_t kept = 0;
  for (int64_t i = 0; i < s->n; i++) {
    item it = s->v[i];
    free(it.label);
    if (it.why) {
      free(it.path), free(it.why);
      continue;
    }
    s->v[kept++] = (item){.path = it.path, .cls = it.cls, .w = it.w, .h = it.h};
  }
  d->v = s->v, d->n = kept;
  d->classes = s->classes, d->n_classes = s->n_classes;
  s->v = NULL, s->n = 0, s->classes = NULL, s->n_classes = 0;
}

static void ds_close(void *ds) {
  ifolder *d = ds;
  if (!d) return;
  for (int64_t i = 0; i < d->n; i++) free(d->v[i].path);
  free(d->v);
  free_strings(d->classes, d->n_classes);
  free(d);
}

static pn_status ds_open(const pn_config *cfg, void **out) {
  scan s = {0};
  *out = NULL;
  pn_status st = read_params(&s, cfg);
  if (st == PN_OK) st = collect(&s, cfg);
  if (st == PN_OK) apply_limit(&s, pn_config_int(cfg, "limit"));
  if (st == PN_OK) st = verify_all(&s, cfg);
  if (st == PN_OK) st = check_classes_used(&s, pn_config_int(cfg, "limit"));
  const char *index = pn_config_str(cfg, "class_index");
  if (st == PN_OK && index && *index) st = write_class_index(&s, index);
  ifolder *d = st == PN_OK ? calloc(1, sizeof *d) : NULL;
  if (st == PN_OK && !d) st = nomem();
  if (st == PN_OK) keep_usable(&s, d), *out = d;
  scan_free(&s);
  return st;
}

/* ---- the dataset slots */

static pn_status ds_info(void *ds, pn_dataset_info *info) {
  const ifolder *d = ds;
  memset(info, 0, sizeof *info);
  info->length = d->n;
  info->n_classes = d->n_classes;
  return PN_OK; /* x_shape ndim 0: images of any size, made tensors by transforms */
}

static pn_status ds_read(void *ds, const int64_t *idx, int64_t n, float *x, int64_t *y) {
  (void)ds, (void)idx, (void)n, (void)x, (void)y;
  return pn_error(PN_ERR_UNSUPPORTED, "imagefolder: an image set is read through transforms "
                                      "(give the data section a transforms list)");
}

static const char *ds_class_name(void *ds, int k) {
  const ifolder *d = ds;
  return k >= 0 && k < d->n_classes ? d->classes[k] : NULL;
}

static pn_status ds_probe(void *ds, int64_t idx, int *w, int *h, int64_t *y) {
  const ifolder *d = ds;
  if (idx < 0 || idx >= d->n)
    return pn_error(PN_ERR_INVALID, "imagefolder: sample %lld out of range", (long long)idx);
  *w = d->v[idx].w, *h = d->v[idx].h;
  if (y) *y = d->v[idx].cls;
  return PN_OK;
}

static pn_status ds_decode(void *ds, int64_t idx, int reduce, pn_image *img) {
  const ifolder *d = ds;
  if (idx < 0 || idx >= d->n)
    return pn_error(PN_ERR_INVALID, "imagefolder: sample %lld out of range", (long long)idx);
  return pn_image_load(d->v[idx].path, reduce, img);
}

static const char *ds_sample_name(void *ds, int64_t idx) {
  const ifolder *d = ds;
  return idx >= 0 && idx < d->n ? d->v[idx].path : NULL;
}

static const pn_dataset_iface imagefolder_iface = {.size = sizeof(pn_dataset_iface),
                                                   .open = ds_open,
                                                   .info = ds_info,
                                                   .read = ds_read,
                                                   .close = ds_close,
                                                   .class_name = ds_class_name,
                                                   .probe = ds_probe,
                                                   .decode = ds_decode,
                                                   .sample_name = ds_sample_name};

static pn_status init(pn_plugin_ctx *ctx) {
  return pn_plugin_add_feature(ctx, "data", "imagefolder", &imagefolder_iface);
}

PN_PLUGIN_DEFINE("imagefolder", "0.1.0", init, NULL);
