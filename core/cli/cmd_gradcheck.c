/* `plugnet gradcheck FEATURE`: finite-difference gradient check of any layer
 * or loss feature, third-party ones included. Exit status: 0 passed,
 * 1 failed or could not run, 2 bad usage. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <plugnet/device.h>
#include <plugnet/gradcheck.h>
#include <plugnet/layer.h>
#include <plugnet/registry.h>

#include "cli.h"

#define USAGE "FEATURE [--set param=value ...] [--input 2x5] [--backend NAME] [--seed N]"

typedef struct options {
  const char *feature;
  const char *sets[64];
  int n_sets;
  pn_shape input;
  int has_input;
  const char *backend;
  uint64_t seed;
} options;

static int usage_error(const char *fmt, const char *arg) {
  fprintf(stderr, "plugnet: gradcheck: ");
  fprintf(stderr, fmt, arg);
  fprintf(stderr, " (usage: plugnet gradcheck " USAGE ")\n");
  return 2;
}

static void help(void) {
  printf("usage: plugnet gradcheck " USAGE "\n"
         "Compares the gradients autograd gives a layer or loss with central differences:\n"
         "for a layer, of a random projection of its output with respect to the input and\n"
         "every trainable parameter; for a loss, with respect to the predictions.\n"
         "  --set k=v      a parameter of the feature (repeatable; k=v,k2=v2 also works);\n"
         "                 required ones left unset get a small value (3 for an int)\n"
         "  --input NxD    the batched input shape (default 2x5 for layers, trying 4-D and\n"
         "                 3-D shapes if that does not build; 4x5 predictions for losses)\n"
         "  --backend NAME the device to run on (default: the default device)\n"
         "  --seed N       seeds the input, the projection and parameter init (default 1)\n"
         "Passes when |analytic - numeric| <= 2e-3 + 2e-2 |numeric| for every element.\n"
         "Stochastic layers (dropout) are checked in training mode with one fixed draw.\n");
}

/* "2x5" or "2,3,4,4". */
static int parse_shape(const char *text, pn_shape *s) {
  const char *p = text;
  s->ndim = 0;
  while (*p) {
    char *end;
    errno = 0;
    long long v = strtoll(p, &end, 10);
    if (end == p || errno || v < 1 || s->ndim == PN_MAX_DIMS) return 0;
    s->dim[s->ndim++] = v;
    if (*end == '\0') return 1;
    if (*end != 'x' && *end != 'X' && *end != ',') return 0;
    p = end + 1;
  }
  return 0;
}

static int parse_seed(const char *text, uint64_t *seed) {
  char *end;
  errno = 0;
  unsigned long long v = strtoull(text, &end, 10);
  if (end == text || *end || errno || text[0] == '-') return 0;
  *seed = v;
  return 1;
}

/* Returns -1 to go on, else the exit status. */
static int parse_args(int argc, char **argv, options *o) {
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    int has_value = i + 1 < argc;
    if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
      help();
      return 0;
    } else if (strcmp(a, "--set") == 0 && has_value) {
      if (o->n_sets == (int)(sizeof o->sets / sizeof *o->sets))
        return usage_error("too many --set options%s", "");
      o->sets[o->n_sets++] = argv[++i];
    } else if (strcmp(a, "--input") == 0 && has_value) {
      if (!parse_shape(argv[++i], &o->input)) return usage_error("bad --input '%s'", argv[i]);
      o->has_input = 1;
    } else if (strcmp(a, "--backend") == 0 && has_value) {
      o->backend = argv[++i];
    } else if (strcmp(a, "--seed") == 0 && has_value) {
      if (!parse_seed(argv[++i], &o->seed)) return usage_error("bad --seed '%s'", argv[i]);
    } else if (a[0] == '-' || o->feature) {
      return usage_error("unexpected argument '%s'", a);
    } else {
      o->feature = a;
    }
  }
  if (!o->feature) return usage_error("no FEATURE given%s", "");
  return -1;
}

/* The feature's config with every --set applied; exit status 2 on a bad one. */
static int build_config(const options *o, const pn_feature_info *f, pn_config **out) {
  pn_config *cfg = pn_config_new(f);
  if (!cfg) return pn_cli_fail("gradcheck");
  for (int i = 0; i < o->n_sets; i++) {
    if (pn_config_set_list(cfg, o->sets[i]) != PN_OK) {
      fprintf(stderr, "plugnet: gradcheck %s: --set %s: %s\n", f->name, o->sets[i],
              pn_last_error());
      pn_config_free(cfg);
      return 2;
    }
  }
  *out = cfg;
  return -1;
}

static void print_tensor(const char *tensor, int64_t checked, double abs_err, double rel_err,
                         int passed, void *user) {
  (void)user;
  printf("  %-24s %6" PRId64 " elements  max error %.3g (relative %.3g)  %s\n", tensor, checked,
         abs_err, rel_err, passed ? "ok" : "WRONG");
}

static int select_backend(const char *name) {
  pn_device *dev = NULL;
  if (!name) return -1;
  if (pn_device_get(name, &dev) != PN_OK) {
    fprintf(stderr, "plugnet: gradcheck: --backend %s: %s\n", name, pn_last_error());
    return 2;
  }
  pn_set_default_device(dev);
  return -1;
}

static int run_check(const options *o, const pn_feature_info *f, const pn_config *cfg) {
  pn_gradcheck_result r;
  pn_set_seed(o->seed);
  printf("gradcheck %s (%s) on %s:\n", f->name, f->kind, pn_default_device()->name);
  if (pn_gradcheck_each(f->name, cfg, o->has_input ? &o->input : NULL, o->seed, print_tensor, NULL,
                        &r) != PN_OK)
    return pn_cli_fail(NULL);
  if (r.passed) {
    printf("gradcheck %s: passed (%lld elements, max error %.3g)\n", f->name, (long long)r.checked,
           r.max_abs_err);
    return 0;
  }
  printf("gradcheck %s: FAILED (%lld elements, worst %s: error %.3g, relative %.3g)\n", f->name,
         (long long)r.checked, r.worst, r.max_abs_err, r.max_rel_err);
  return 1;
}

int pn_cmd_gradcheck(int argc, char **argv) {
  options o;
  memset(&o, 0, sizeof o);
  o.seed = 1;
  int rc = parse_args(argc, argv, &o);
  if (rc >= 0) return rc;
  if (pn_registry_scan() != PN_OK) return pn_cli_fail(NULL);
  const pn_feature_info *f = pn_registry_find(o.feature);
  if (!f) {
    fprintf(stderr, "plugnet: gradcheck: %s\n", pn_last_error());
    return 2;
  }
  if (strcmp(f->kind, "layer") != 0 && strcmp(f->kind, "loss") != 0) {
    fprintf(stderr, "plugnet: gradcheck: '%s' is a %s, neither a layer nor a loss\n", f->name,
            f->kind);
    return 2;
  }
  if ((rc = select_backend(o.backend)) >= 0) return rc;
  pn_config *cfg = NULL;
  if ((rc = build_config(&o, f, &cfg)) >= 0) return rc;
  rc = run_check(&o, f, cfg);
  pn_config_free(cfg);
  return rc;
}
