/* The plugin loader against broken fixtures (tests/fixtures/<case>/, one
 * PLUGNET_PLUGIN_PATH at a time), manifests written on the fly, parameter
 * validation and suggestions. Every refusal must give the exact status and
 * a message carrying the facts a user needs: the plugin, the files, the
 * position in the file, the nearest valid name. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <plugnet/plugnet.h>

static char tmpdir[PATH_MAX];

/* Status and substrings of the message; on failure the whole message is
 * printed so that the reason is visible in the test log. */
static void expect_error_(pn_status got, pn_status want, const char *const *needles, int n,
                          const char *file, int line) {
  const char *msg = pn_last_error();
  int ok = got == want;
  for (int i = 0; i < n && ok; i++) ok = strstr(msg, needles[i]) != NULL;
  if (!ok) {
    print_error("%s:%d: got %s, wanted %s; message: %s\n", file, line, pn_status_name(got),
                pn_status_name(want), msg);
    for (int i = 0; i < n; i++)
      if (!strstr(msg, needles[i])) print_error("  missing: \"%s\"\n", needles[i]);
    fail();
  }
}
#define EXPECT_ERROR(got, want, ...)                                                               \
  do {                                                                                             \
    const char *const needles_[] = {__VA_ARGS__};                                                  \
    expect_error_((got), (want), needles_, (int)(sizeof needles_ / sizeof *needles_), __FILE__,    \
                  __LINE__);                                                                       \
  } while (0)

static const char *builddir(void) {
  const char *d = getenv("PN_TOP_BUILDDIR");
  return d ? d : ".";
}

static void use_dir(const char *dir) {
  pn_registry_reset();
  setenv("PLUGNET_PLUGIN_PATH", dir, 1);
}

static void use_case(const char *name) {
  char dir[PATH_MAX];
  snprintf(dir, sizeof dir, "%s/tests/fixtures/%s", builddir(), name);
  use_dir(dir);
}

/* The absolute path of a fixture file, as the loader reports it. Rotating
 * buffers let one assertion use several. */
static const char *fixture_file(const char *name, const char *file) {
  static char bufs[4][PATH_MAX];
  static int next;
  char *real = bufs[next++ % 4];
  char path[PATH_MAX];
  snprintf(path, sizeof path, "%s/tests/fixtures/%s/%s", builddir(), name, file);
  if (!realpath(path, real)) snprintf(real, PATH_MAX, "%s", path);
  return real;
}

static pn_status load(const char *feature) {
  const void *iface = NULL;
  pn_status s = pn_feature_iface(feature, NULL, &iface);
  if (s != PN_OK) assert_null(iface);
  return s;
}

/* ---- pn_suggest */

static void test_suggest(void **state) {
  (void)state;
  const char *const names[] = {"linear", "relu", "conv2d", "batch_norm"};
  assert_string_equal(pn_suggest("lenear", names, 4), "linear");
  assert_string_equal(pn_suggest("batchnorm", names, 4), "batch_norm");
  assert_string_equal(pn_suggest("rel", names, 4), "relu");
  assert_string_equal(pn_suggest("relu", names, 4), "relu");
  assert_null(pn_suggest("softmax", names, 4));
  assert_null(pn_suggest("x", NULL, 0));
  /* 2 edits are always allowed; a long word allows len/3. */
  const char *const longer[] = {"interpolation_mode"};
  assert_non_null(pn_suggest("interpolatoin_mdoe", longer, 1)); /* 4 edits, len 18 */
  assert_null(pn_suggest("interpolate", longer, 1));            /* 7 edits, len 11 */
  const char *const holes[] = {NULL, "abc", "abd"};
  assert_string_equal(pn_suggest("abx", holes, 3), "abc"); /* first of equals */
}

/* ---- fixtures that load */

static void test_good_plugin(void **state) {
  (void)state;
  use_case("good");
  assert_int_equal(pn_registry_scan(), PN_OK);
  const pn_feature_info *f = pn_registry_find("fixture_scale");
  assert_non_null(f);
  assert_string_equal(f->kind, "layer");
  assert_string_equal(f->manifest->plugin, "good");
  assert_string_equal(f->manifest->path, fixture_file("good", "good.yaml"));
  assert_int_equal(f->manifest->library[0], '/');
  assert_non_null(strstr(f->manifest->library, "good.so"));
  assert_false(pn_registry_is_loaded(f->manifest)); /* listing opens nothing */

  const void *iface = NULL;
  assert_int_equal(pn_feature_iface("fixture_scale", "layer", &iface), PN_OK);
  const pn_layer_iface *layer = iface;
  assert_non_null(layer);
  assert_int_equal(layer->size, sizeof(pn_layer_iface));
  assert_non_null(layer->build);
  assert_non_null(layer->forward);
  assert_true(pn_registry_is_loaded(f->manifest));

  /* The same plugin's other feature, through pn_plugin_add_feature. */
  assert_int_equal(pn_feature_iface("fixture_loss", "loss", &iface), PN_OK);
  assert_int_equal(*(const int *)iface, 0x600d);

  EXPECT_ERROR(pn_feature_iface("fixture_scale", "loss", &iface), PN_ERR_INVALID,
               "'fixture_scale' is a layer, not a loss", "good.yaml");

  pn_registry_reset();
  f = pn_registry_find("fixture_scale");
  assert_non_null(f);
  assert_false(pn_registry_is_loaded(f->manifest));
}

static void test_search_path(void **state) {
  (void)state;
  use_case("good");
  char want_default[PATH_MAX + 16], real[PATH_MAX];
  assert_non_null(realpath(builddir(), real));
  snprintf(want_default, sizeof want_default, ":%s/plugins", real);
  const char *path = pn_registry_search_path();
  /* First the environment, then this build tree's plugins (the test runs an
   * uninstalled libplugnet). */
  assert_non_null(strstr(path, "tests/fixtures/good:"));
  size_t n = strlen(path), k = strlen(want_default);
  assert_true(n > k);
  assert_string_equal(path + n - k, want_default);
  /* The bundled backends sit two levels below plugins/. */
  assert_non_null(pn_registry_find("reference"));
}

static void test_unknown_feature(void **state) {
  (void)state;
  use_case("good");
  assert_null(pn_registry_find("fixture_scal"));
  EXPECT_ERROR(
      load("fixture_scal"), PN_ERR_NOT_FOUND,
      "unknown feature 'fixture_scal' (did you mean 'fixture_scale'?); known: ", "fixture_loss");
  EXPECT_ERROR(load("zzzzzzzzzzzzzz"), PN_ERR_NOT_FOUND,
               "unknown feature 'zzzzzzzzzzzzzz'; known: ", "fixture_scale");
}

/* ---- fixtures refused at load time */

static void test_abi_major(void **state) {
  (void)state;
  use_case("abi_major");
  EXPECT_ERROR(load("fixture_abi_major"), PN_ERR_ABI, "plugin 'abi_major'",
               "built for ABI 2.0, this plugnet has 1.0", "abi_major.so");
}

static void test_abi_minor(void **state) {
  (void)state;
  use_case("abi_minor");
  EXPECT_ERROR(load("fixture_abi_minor"), PN_ERR_ABI, "plugin 'abi_minor'",
               "built for ABI 1.3, this plugnet has 1.0");
}

static void test_no_symbol(void **state) {
  (void)state;
  use_case("no_symbol");
  EXPECT_ERROR(load("fixture_no_symbol"), PN_ERR_PLUGIN, "plugin 'no_symbol'",
               "does not export the symbol 'pn_plugin_descriptor'", "no_symbol.so");
}

static void test_wrong_name(void **state) {
  (void)state;
  use_case("wrong_name");
  EXPECT_ERROR(load("fixture_wrong_name"), PN_ERR_PLUGIN, "manifest and descriptor disagree",
               "'wrong_name'", "'other_name'", fixture_file("wrong_name", "wrong_name.yaml"),
               "wrong_name.so");
}

static void test_wrong_version(void **state) {
  (void)state;
  use_case("wrong_version");
  EXPECT_ERROR(load("fixture_wrong_version"), PN_ERR_PLUGIN, "plugin 'wrong_version'",
               "manifest and descriptor disagree", "version '0.1.0'", "'0.2.0'",
               "wrong_version.yaml", "wrong_version.so");
}

static void test_missing_feature(void **state) {
  (void)state;
  use_case("missing_feature");
  /* Even the feature init did register must not be handed out. */
  EXPECT_ERROR(load("fixture_mf_one"), PN_ERR_PLUGIN, "plugin 'missing_feature'",
               "manifest and descriptor disagree", "'fixture_mf_two'", "did not register",
               "missing_feature.yaml", "missing_feature.so");
  const pn_feature_info *f = pn_registry_find("fixture_mf_one");
  assert_non_null(f);
  assert_false(pn_registry_is_loaded(f->manifest));
}

static void test_extra_feature(void **state) {
  (void)state;
  use_case("extra_feature");
  EXPECT_ERROR(load("fixture_ef_one"), PN_ERR_PLUGIN, "plugin 'extra_feature'",
               "manifest and descriptor disagree", "'fixture_ef_two'",
               "the manifest does not declare", "extra_feature.yaml", "extra_feature.so");
}

static void test_init_fails(void **state) {
  (void)state;
  use_case("init_fail");
  for (int attempt = 0; attempt < 2; attempt++) /* a retry fails the same way */
    EXPECT_ERROR(load("fixture_init_fail"), PN_ERR_PLUGIN, "plugin 'init_fail'", "init failed",
                 "no widget attached");
  const pn_feature_info *f = pn_registry_find("fixture_init_fail");
  assert_non_null(f);
  assert_false(pn_registry_is_loaded(f->manifest));
}

static void test_missing_library(void **state) {
  (void)state;
  use_case("missing_so");
  /* Listing works without the library ... */
  assert_int_equal(pn_registry_scan(), PN_OK);
  assert_non_null(pn_registry_find("fixture_missing_so"));
  /* ... loading names the manifest and every path tried. */
  EXPECT_ERROR(load("fixture_missing_so"), PN_ERR_NOT_FOUND, "plugin 'missing_so'",
               fixture_file("missing_so", "missing_so.yaml"), "/missing_so.so",
               "/.libs/missing_so.so");
}

/* ---- fixtures refused at scan time */

static void test_bad_yaml(void **state) {
  (void)state;
  use_case("bad_yaml");
  char where[PATH_MAX + 16];
  snprintf(where, sizeof where, "%s:8:4: ", fixture_file("bad_yaml", "bad_yaml.yaml"));
  EXPECT_ERROR(pn_registry_scan(), PN_ERR_PARSE, where);
  /* Every entry point reports it, and nothing half-scanned is left. */
  EXPECT_ERROR(load("fixture_bad_yaml"), PN_ERR_PARSE, "bad_yaml.yaml:8:4: ");
  assert_int_equal(pn_registry_feature_count(), 0);
}

static void test_unknown_key(void **state) {
  (void)state;
  use_case("unknown_key");
  EXPECT_ERROR(pn_registry_scan(), PN_ERR_PARSE, "unknown_key.yaml:11:9: ", "unknown key 'defualt'",
               "parameter 'width' of feature 'fixture_unknown_key'", "(did you mean 'default'?)");
}

static void test_duplicate_feature(void **state) {
  (void)state;
  use_case("duplicate");
  EXPECT_ERROR(pn_registry_scan(), PN_ERR_PLUGIN, "feature 'fixture_dup' is declared twice",
               fixture_file("duplicate", "dup_a.yaml"), fixture_file("duplicate", "dup_b.yaml"));
}

/* ---- manifests written by the test */

static const char *write_file(const char *name, const char *text) {
  static char path[PATH_MAX + 64];
  snprintf(path, sizeof path, "%s/%s", tmpdir, name);
  FILE *f = fopen(path, "w");
  assert_non_null(f);
  fputs(text, f);
  fclose(f);
  return path;
}

#define HEAD "plugin: t\nversion: 0.1.0\nabi: 1.0\nlibrary: t.so\n"

static pn_status load_text(const char *text) {
  pn_manifest *m = NULL;
  pn_status s = pn_manifest_load(write_file("m.yaml", text), &m);
  if (s == PN_OK)
    assert_non_null(m);
  else
    assert_null(m);
  pn_manifest_free(m);
  return s;
}

static void test_manifest_errors(void **state) {
  (void)state;
  EXPECT_ERROR(load_text("version: 1\n"), PN_ERR_PARSE,
               "m.yaml:1:1: ", "missing required key 'plugin'");
  EXPECT_ERROR(load_text(""), PN_ERR_PARSE, "m.yaml: empty manifest");
  EXPECT_ERROR(load_text("- a\n- b\n"), PN_ERR_PARSE, "m.yaml:1:1: ", "must be a mapping");
  EXPECT_ERROR(load_text(HEAD "libary: x\nfeatures: [{name: a, kind: layer}]\n"), PN_ERR_PARSE,
               "m.yaml:5:1: ", "unknown key 'libary' in manifest (did you mean 'library'?)");
  EXPECT_ERROR(load_text("plugin: t\nversion: 0.1.0\nabi: one\nlibrary: t.so\n"
                         "features: [{name: a, kind: layer}]\n"),
               PN_ERR_PARSE, "m.yaml:3:6: ", "abi 'one' is not MAJOR.MINOR");
  EXPECT_ERROR(load_text(HEAD "features: []\n"), PN_ERR_PARSE,
               "m.yaml:5:11: ", "at least one feature");
  EXPECT_ERROR(load_text(HEAD "features:\n  - {name: a, kind: layr}\n"), PN_ERR_PARSE,
               "m.yaml:6:21: ", "unknown kind 'layr'", "(did you mean 'layer'?)");
  EXPECT_ERROR(load_text(HEAD "features:\n  - {name: a}\n"), PN_ERR_PARSE,
               "m.yaml:6:5: ", "missing required key 'kind' in feature 'a'");
  EXPECT_ERROR(load_text(HEAD "features:\n  - {name: a, kind: layer}\n"
                              "  - {name: a, kind: loss}\n"),
               PN_ERR_PARSE, "m.yaml:7:12: ", "duplicate feature 'a' (first at line 6)");
  EXPECT_ERROR(load_text(HEAD "features:\n  - {name: a, kind: layer, doc: x, doc: y}\n"),
               PN_ERR_PARSE, "m.yaml:6:36: ", "duplicate key 'doc'");
}

static void test_manifest_param_errors(void **state) {
  (void)state;
#define FEAT HEAD "features:\n  - name: a\n    kind: layer\n    params:\n"
  EXPECT_ERROR(load_text(FEAT "      - {name: n, type: int, default: 0, min: 1}\n"), PN_ERR_PARSE,
               "m.yaml:9:39: ", "bad default for parameter 'n' of feature 'a'",
               "n = 0 is below the minimum 1");
  EXPECT_ERROR(load_text(FEAT "      - {name: n, type: float, default: 7.5, max: 2}\n"),
               PN_ERR_PARSE, "7.5 is above the maximum 2");
  EXPECT_ERROR(load_text(FEAT "      - {name: m, type: enum, choices: [x, y], default: z}\n"),
               PN_ERR_PARSE, "m.yaml:9:", "m = 'z' is not one of: x, y");
  EXPECT_ERROR(load_text(FEAT "      - {name: m, type: enum}\n"), PN_ERR_PARSE,
               "missing required key 'choices'");
  EXPECT_ERROR(load_text(FEAT "      - {name: m, type: int, choices: [1]}\n"), PN_ERR_PARSE,
               "'choices' does not apply");
  EXPECT_ERROR(load_text(FEAT "      - {name: b, type: bool, min: 0}\n"), PN_ERR_PARSE,
               "'min' does not apply to parameter 'b'");
  EXPECT_ERROR(load_text(FEAT "      - {name: k, type: ints, default: [3, 0], min: 1}\n"),
               PN_ERR_PARSE, "k = [3, 0] has 0 below the minimum 1");
  EXPECT_ERROR(load_text(FEAT "      - {name: k, type: integer}\n"), PN_ERR_PARSE,
               "unknown type 'integer'");
  EXPECT_ERROR(load_text(FEAT "      - {name: n, type: int}\n      - {name: n, type: float}\n"),
               PN_ERR_PARSE, "m.yaml:10:16: ", "parameter 'n' of feature 'a' is declared twice");
  EXPECT_ERROR(load_text(FEAT "      - {name: n, type: int, min: 5, max: 1}\n"), PN_ERR_PARSE,
               "min 5 is above max 1");
  EXPECT_ERROR(load_text(FEAT "      - {name: n, type: int, default: 1.5}\n"), PN_ERR_PARSE,
               "n = '1.5' is not an integer");
  EXPECT_ERROR(load_text(FEAT "      - {name: n, type: int, defalt: 1}\n"), PN_ERR_PARSE,
               "m.yaml:9:30: ", "unknown key 'defalt'", "(did you mean 'default'?)");
#undef FEAT
}

static void test_yaml_robustness(void **state) {
  (void)state;
  /* Malformed YAML: libyaml's own position and problem. */
  EXPECT_ERROR(load_text("plugin: [a, b\n"), PN_ERR_PARSE, "m.yaml:2:1: ");
  EXPECT_ERROR(load_text("a: 'unterminated\n"), PN_ERR_PARSE, "m.yaml:", "quoted scalar");
  EXPECT_ERROR(load_text(HEAD "features: [{name: a, kind: layer}]\n---\nplugin: u\n"), PN_ERR_PARSE,
               "m.yaml:6:1: ", "only one YAML document");
  /* Aliases expanding to a billion nodes must fail fast, not hang. */
  EXPECT_ERROR(load_text("a: &a [x, x, x, x, x, x, x, x, x, x]\n"
                         "b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
                         "c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]\n"
                         "d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]\n"
                         "e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d]\n"
                         "f: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e, *e]\n"
                         "g: &g [*f, *f, *f, *f, *f, *f, *f, *f, *f, *f]\n"
                         "h: &h [*g, *g, *g, *g, *g, *g, *g, *g, *g, *g]\n"
                         "i: &i [*h, *h, *h, *h, *h, *h, *h, *h, *h, *h]\n"),
               PN_ERR_PARSE, "nodes once aliases are expanded");
  char deep[600] = "";
  for (int i = 0; i < 100; i++) strcat(deep, "[");
  for (int i = 0; i < 100; i++) strcat(deep, "]");
  strcat(deep, "\n");
  EXPECT_ERROR(load_text(deep), PN_ERR_PARSE, "nested deeper than");
  pn_manifest *m = NULL;
  EXPECT_ERROR(pn_manifest_load("/nonexistent/x.yaml", &m), PN_ERR_IO, "/nonexistent/x.yaml");
  assert_null(m);
}

static void test_manifest_parsed(void **state) {
  (void)state;
  pn_manifest *m = NULL;
  const char *text = "# comment\n"
                     "plugin: t\nversion: 0.1.0\nabi: 1.0\nlibrary: sub/t.so\n"
                     "description: 'A test'\n"
                     "features:\n"
                     "  - name: a\n    kind: layer\n    doc: the doc\n    params:\n"
                     "      - {name: n, type: int, default: 3, min: 1, max: 9, doc: count}\n"
                     "      - {name: k, type: ints, default: [3, 3]}\n"
                     "      - {name: e, type: enum, choices: [p, q]}\n"
                     "      - {name: s, type: string, default: ''}\n"
                     "  - {name: b, kind: optimizer}\n";
  assert_int_equal(pn_manifest_load(write_file("m.yaml", text), &m), PN_OK);
  assert_string_equal(m->plugin, "t");
  assert_string_equal(m->version, "0.1.0");
  assert_int_equal(m->abi_major, 1);
  assert_int_equal(m->abi_minor, 0);
  assert_string_equal(m->description, "A test");
  char want[PATH_MAX + 16], real[PATH_MAX];
  assert_non_null(realpath(tmpdir, real));
  snprintf(want, sizeof want, "%s/sub/t.so", real); /* missing: the first candidate */
  assert_string_equal(m->library, want);
  assert_int_equal(m->n_features, 2);
  const pn_feature_info *a = &m->features[0];
  assert_string_equal(a->name, "a");
  assert_string_equal(a->doc, "the doc");
  assert_ptr_equal(a->manifest, m);
  assert_int_equal(a->n_params, 4);
  assert_int_equal(a->params[0].type, PN_PARAM_INT);
  assert_string_equal(a->params[0].default_value, "3");
  assert_true(a->params[0].has_min && a->params[0].has_max);
  assert_true(a->params[0].min == 1.0 && a->params[0].max == 9.0);
  assert_string_equal(a->params[0].doc, "count");
  assert_int_equal(a->params[1].type, PN_PARAM_INTS);
  assert_string_equal(a->params[1].default_value, "[3, 3]");
  assert_int_equal(a->params[2].type, PN_PARAM_ENUM);
  assert_null(a->params[2].default_value); /* required */
  assert_string_equal(a->params[2].choices[1], "q");
  assert_null(a->params[2].choices[2]);
  assert_string_equal(a->params[3].default_value, "");
  assert_string_equal(m->features[1].kind, "optimizer");
  assert_int_equal(m->features[1].n_params, 0);
  pn_manifest_free(m);
}

/* A library found in .libs/ beside its manifest, but not a real one: the
 * dlopen error reaches the user with the plugin's name. Also a manifest
 * claiming a newer ABI, refused before its library is even opened. */
static void test_dlopen_failures(void **state) {
  (void)state;
  char sub[PATH_MAX + 8], libs[PATH_MAX + 16];
  snprintf(sub, sizeof sub, "%s/p", tmpdir);
  snprintf(libs, sizeof libs, "%s/.libs", sub);
  assert_int_equal(mkdir(sub, 0755), 0);
  assert_int_equal(mkdir(libs, 0755), 0);
  write_file("p/.libs/junk.so", "not an ELF file\n");
  write_file("p/junk.yaml", "plugin: junk\nversion: 0.1.0\nabi: 1.0\nlibrary: junk.so\n"
                            "features: [{name: fixture_junk, kind: layer}]\n");
  write_file("p/newer.yaml", "plugin: newer\nversion: 0.1.0\nabi: 1.7\nlibrary: junk.so\n"
                             "features: [{name: fixture_newer, kind: layer}]\n");
  use_dir(sub);
  const pn_feature_info *f = pn_registry_find("fixture_junk");
  assert_non_null(f);
  assert_non_null(strstr(f->manifest->library, "/p/.libs/junk.so"));
  EXPECT_ERROR(load("fixture_junk"), PN_ERR_PLUGIN, "plugin 'junk'", "junk.yaml", "cannot load",
               "junk.so");
  EXPECT_ERROR(load("fixture_newer"), PN_ERR_ABI, "plugin 'newer'", "newer.yaml",
               "built for ABI 1.7, this plugnet has 1.0");
  pn_registry_reset(); /* the files go in teardown */
}

/* ---- configs */

static pn_config *scale_config(void) {
  use_case("good");
  const pn_feature_info *f = pn_registry_find("fixture_scale");
  assert_non_null(f);
  pn_config *c = pn_config_new(f);
  assert_non_null(c);
  assert_ptr_equal(pn_config_feature(c), f);
  return c;
}

static void test_config_defaults(void **state) {
  (void)state;
  pn_config *c = scale_config();
  assert_int_equal(pn_config_int(c, "out"), 4);
  assert_true(pn_config_float(c, "alpha") == 1.5);
  assert_true(pn_config_bool(c, "bias"));
  assert_string_equal(pn_config_str(c, "mode"), "fast");
  assert_string_equal(pn_config_str(c, "label"), "x");
  int64_t k[4] = {0};
  assert_int_equal(pn_config_ints(c, "kernel", k, 4), 2);
  assert_int_equal(k[0], 3);
  assert_int_equal(k[1], 3);
  assert_false(pn_config_has(c, "units"));
  assert_false(pn_config_has(c, "nonexistent"));
  EXPECT_ERROR(pn_config_check(c), PN_ERR_INVALID, "fixture_scale",
               "missing required parameter 'units'");
  assert_int_equal(pn_config_set(c, "units", "2"), PN_OK);
  assert_int_equal(pn_config_check(c), PN_OK);
  pn_config_free(c);
}

static void test_config_set(void **state) {
  (void)state;
  pn_config *c = scale_config();
  EXPECT_ERROR(pn_config_set(c, "out", "-3"), PN_ERR_INVALID,
               "fixture_scale: out = -3 is below the minimum 1");
  EXPECT_ERROR(pn_config_set(c, "out", "5000"), PN_ERR_INVALID, "above the maximum 4096");
  EXPECT_ERROR(pn_config_set(c, "out", "four"), PN_ERR_INVALID, "out = 'four' is not an integer");
  EXPECT_ERROR(pn_config_set(c, "alpha", "11"), PN_ERR_INVALID,
               "alpha = 11 is above the maximum 10");
  EXPECT_ERROR(pn_config_set(c, "alpha", "nan"), PN_ERR_INVALID, "is not a number");
  EXPECT_ERROR(pn_config_set(c, "bias", "maybe"), PN_ERR_INVALID, "is not a boolean");
  EXPECT_ERROR(pn_config_set(c, "mode", "fsat"), PN_ERR_INVALID,
               "mode = 'fsat' is not one of: fast, exact (did you mean 'fast'?)");
  EXPECT_ERROR(pn_config_set(c, "kernel", "[3, x]"), PN_ERR_INVALID, "not a list of integers");
  EXPECT_ERROR(pn_config_set(c, "outt", "3"), PN_ERR_NOT_FOUND,
               "fixture_scale: unknown parameter 'outt' (did you mean 'out'?)", "known: out, ");
  /* Refused values leave the old ones. */
  assert_int_equal(pn_config_int(c, "out"), 4);
  assert_string_equal(pn_config_str(c, "mode"), "fast");

  assert_int_equal(pn_config_set_list(c, " out=8, kernel=[5,7], mode = exact,bias=off,units=1,"
                                         "alpha=0.25"),
                   PN_OK);
  assert_int_equal(pn_config_int(c, "out"), 8);
  int64_t k[4];
  assert_int_equal(pn_config_ints(c, "kernel", k, 4), 2);
  assert_int_equal(k[1], 7);
  assert_string_equal(pn_config_str(c, "mode"), "exact");
  assert_false(pn_config_bool(c, "bias"));
  assert_true(pn_config_float(c, "alpha") == 0.25);
  assert_int_equal(pn_config_ints(c, "out", k, 4), 1); /* an int reads as a list of one */
  assert_int_equal(k[0], 8);
  assert_int_equal(pn_config_set(c, "kernel", "2"), PN_OK);
  assert_int_equal(pn_config_ints(c, "kernel", k, 4), 1);
  EXPECT_ERROR(pn_config_set_list(c, "out=2,units"), PN_ERR_INVALID, "'units' is not KEY=VALUE");
  EXPECT_ERROR(pn_config_set_list(c, "kernel=[3,0]"), PN_ERR_INVALID,
               "kernel = [3,0] has 0 below the minimum 1");
  pn_config_free(c);
}

static int setup_tmp(void **state) {
  (void)state;
  const char *base = getenv("TMPDIR");
  snprintf(tmpdir, sizeof tmpdir, "%s/pn-loader-XXXXXX", base && *base ? base : "/tmp");
  return mkdtemp(tmpdir) ? 0 : -1;
}

static int teardown_tmp(void **state) {
  (void)state;
  pn_registry_reset();
  char cmd[PATH_MAX + 16];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
  return system(cmd) == 0 ? 0 : -1;
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_suggest),         cmocka_unit_test(test_good_plugin),
      cmocka_unit_test(test_search_path),     cmocka_unit_test(test_unknown_feature),
      cmocka_unit_test(test_abi_major),       cmocka_unit_test(test_abi_minor),
      cmocka_unit_test(test_no_symbol),       cmocka_unit_test(test_wrong_name),
      cmocka_unit_test(test_wrong_version),   cmocka_unit_test(test_missing_feature),
      cmocka_unit_test(test_extra_feature),   cmocka_unit_test(test_init_fails),
      cmocka_unit_test(test_missing_library), cmocka_unit_test(test_bad_yaml),
      cmocka_unit_test(test_unknown_key),     cmocka_unit_test(test_duplicate_feature),
      cmocka_unit_test(test_manifest_errors), cmocka_unit_test(test_manifest_param_errors),
      cmocka_unit_test(test_yaml_robustness), cmocka_unit_test(test_manifest_parsed),
      cmocka_unit_test(test_dlopen_failures), cmocka_unit_test(test_config_defaults),
      cmocka_unit_test(test_config_set),
  };
  return cmocka_run_group_tests(tests, setup_tmp, teardown_tmp);
}
