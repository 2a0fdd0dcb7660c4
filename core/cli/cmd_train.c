/* plugnet train | eval | plan: running pipelines. */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <plugnet/plugnet.h>

#include "cli.h"
#include "config.h"

#define DEFAULT_PIPELINE "fashion-mnist-mlp.yaml"
#define MAX_SETS         64

typedef struct args {
  const char *pipeline, *backend, *resume, *checkpoint;
  char *sets[MAX_SETS];
  int n_sets;
} args;

/* Run from the build tree, the default pipeline is the source tree's. */
static const char *default_pipeline(char *buf, size_t n) {
  char exe[PATH_MAX], build[PATH_MAX];
  ssize_t len = readlink("/proc/self/exe", exe, sizeof exe - 1);
  if (len > 0) exe[len] = '\0';
  int uninstalled =
      len > 0 && realpath(PN_ABS_BUILDDIR, build) && strncmp(exe, build, strlen(build)) == 0;
  snprintf(buf, n, "%s/%s", uninstalled ? PN_ABS_SRCDIR "/share/pipelines" : PN_PIPELINEDIR,
           DEFAULT_PIPELINE);
  return buf;
}

static int parse_args(const char *cmd, int argc, char **argv, args *a) {
  memset(a, 0, sizeof *a);
  for (int i = 1; i < argc; i++) {
    const char *opt = argv[i];
    int has_value = i + 1 < argc;
    if (strcmp(opt, "--set") == 0 && has_value) {
      if (a->n_sets == MAX_SETS) return pn_cli_usage(cmd, NULL, "too many --set options");
      a->sets[a->n_sets++] = argv[++i];
    } else if (strcmp(opt, "--backend") == 0 && has_value) {
      a->backend = argv[++i];
    } else if (strcmp(opt, "--resume") == 0 && has_value) {
      a->resume = argv[++i];
    } else if (strcmp(opt, "--checkpoint") == 0 && has_value) {
      a->checkpoint = argv[++i];
    } else if (opt[0] == '-' && opt[1]) {
      return pn_cli_usage(cmd, NULL, "unknown or incomplete option '%s'", opt);
    } else if (!a->pipeline) {
      a->pipeline = opt;
    } else {
      return pn_cli_usage(cmd, NULL, "more than one pipeline given");
    }
  }
  return 0;
}

static int load(const args *a, char *buf, size_t n, pn_pipeline **p) {
  const char *file = a->pipeline ? a->pipeline : default_pipeline(buf, n);
  if (pn_pipeline_load(file, a->sets, a->n_sets, p) != PN_OK) return pn_cli_fail(NULL);
  return 0;
}

int pn_cmd_train(int argc, char **argv) {
  args a;
  char buf[PATH_MAX];
  pn_pipeline *p = NULL;
  pn_train_result r;
  int rc = parse_args("train", argc, argv, &a);
  if (rc || (rc = load(&a, buf, sizeof buf, &p))) return rc;
  pn_train_options o = {a.backend, a.resume, stdout, stderr};
  pn_status s = pn_train(p, &o, &r);
  pn_pipeline_free(p);
  if (s != PN_OK) return pn_cli_fail(NULL);
  if (r.interrupted) {
    fprintf(
        stderr,
        "plugnet: interrupted in epoch %lld; checkpoint saved to %s (continue with --resume %s)\n",
        (long long)r.epochs_done, r.checkpoint, r.checkpoint);
    return 130;
  }
  if (r.checkpoint[0]) printf("checkpoint: %s\n", r.checkpoint);
  printf("time: %.2f s\n", r.seconds);
  return 0;
}

int pn_cmd_eval(int argc, char **argv) {
  args a;
  char buf[PATH_MAX];
  pn_pipeline *p = NULL;
  pn_train_result r;
  int rc = parse_args("eval", argc, argv, &a);
  if (rc) return rc;
  if (!a.checkpoint)
    return pn_cli_usage("eval", NULL, "usage: plugnet eval PIPELINE --checkpoint FILE");
  if ((rc = load(&a, buf, sizeof buf, &p))) return rc;
  pn_train_options o = {a.backend, NULL, stdout, stderr};
  pn_status s = pn_evaluate(p, a.checkpoint, &o, &r);
  pn_pipeline_free(p);
  return s == PN_OK ? 0 : pn_cli_fail(NULL);
}

int pn_cmd_plan(int argc, char **argv) {
  args a;
  char buf[PATH_MAX];
  pn_pipeline *p = NULL;
  int rc = parse_args("plan", argc, argv, &a);
  if (rc || (rc = load(&a, buf, sizeof buf, &p))) return rc;
  pn_pipeline_print(p, stdout);
  pn_pipeline_free(p);
  return 0;
}
