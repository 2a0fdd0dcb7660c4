/* plugnet lr-find: the learning-rate range test (pn_lr_find), its
 * suggestions and a plot of the smoothed loss against the rate. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <plugnet/plugnet.h>

#include "cli.h"
#include "draw.h"

#define MAX_SETS 64

static const char command[] = "lr-find";
static const char synopsis[] = "PIPELINE [--start 1e-7] [--end 10] [--iters 100] [-o lr_find.png] "
                               "[--set k=v] [--backend B]";

typedef struct args {
  const char *pipeline, *backend, *output;
  double start, end;
  int iters;
  char *sets[MAX_SETS];
  int n_sets;
} args;

static int number(const char *opt, const char *text, double *out) {
  char *end = NULL;
  errno = 0;
  *out = strtod(text, &end);
  if (errno || end == text || *end || !(*out > 0) || !isfinite(*out))
    return pn_cli_usage(command, synopsis, "%s wants a positive number, not '%s'", opt, text);
  return 0;
}

/* One option and its value; returns 0, or the exit status for a bad one. */
static int option(args *a, const char *opt, char *val) {
  if (strcmp(opt, "--set") == 0) {
    if (a->n_sets == MAX_SETS) return pn_cli_usage(command, synopsis, "too many --set options");
    a->sets[a->n_sets++] = val;
  } else if (strcmp(opt, "--backend") == 0) {
    a->backend = val;
  } else if (strcmp(opt, "-o") == 0 || strcmp(opt, "--output") == 0) {
    a->output = val;
  } else if (strcmp(opt, "--start") == 0) {
    return number(opt, val, &a->start);
  } else if (strcmp(opt, "--end") == 0) {
    return number(opt, val, &a->end);
  } else if (strcmp(opt, "--iters") == 0) {
    char *end = NULL;
    long n = strtol(val, &end, 10);
    if (end == val || *end || n < 2 || n > 1000000)
      return pn_cli_usage(command, synopsis, "--iters wants a whole number of steps, at least 2");
    a->iters = (int)n;
  } else {
    return pn_cli_usage(command, synopsis, "unknown option '%s'", opt);
  }
  return 0;
}

static int parse_args(int argc, char **argv, args *a) {
  memset(a, 0, sizeof *a);
  a->output = "lr_find.png";
  for (int i = 1; i < argc; i++) {
    const char *opt = argv[i];
    int rc;
    if (opt[0] == '-' && opt[1]) {
      if (i + 1 >= argc) return pn_cli_usage(command, synopsis, "option '%s' needs a value", opt);
      if ((rc = option(a, opt, argv[++i]))) return rc;
    } else if (!a->pipeline) {
      a->pipeline = opt;
    } else {
      return pn_cli_usage(command, synopsis, "more than one pipeline given");
    }
  }
  return a->pipeline ? 0 : pn_cli_usage(command, synopsis, "no pipeline given");
}

/* Like fastai's plot, without the last 5 points: the blow-up that ends
 * the test would flatten the rest of the curve. */
static int plotted_points(const pn_lr_find_result *r) { return r->n >= 25 ? r->n - 5 : r->n; }

static int report(const args *a, const pn_lr_find_result *r) {
  if (r->diverged) printf("stopped after %d steps: the loss passed 4 times its minimum\n", r->n);
  if (isnan(r->lr_steep)) {
    fprintf(stderr, "plugnet lr-find: only %d steps: too few to suggest a rate (raise --iters)\n",
            r->n);
    return 1;
  }
  printf("suggested lr: %.2e (steepest descent), %.2e (minimum / 10)\n", r->lr_steep, r->lr_min);
  if (draw_plot_png(a->output, r->lrs, r->losses, plotted_points(r), 1, "learning rate",
                    "loss (smoothed)", r->lr_steep) != PN_OK)
    return pn_cli_fail(a->output);
  printf("plot: %s\n", a->output);
  return 0;
}

int pn_cmd_lr_find(int argc, char **argv) {
  args a;
  pn_pipeline *p = NULL;
  pn_lr_find_result r;
  int rc = parse_args(argc, argv, &a);
  if (rc) return rc;
  if (pn_pipeline_load(a.pipeline, a.sets, a.n_sets, &p) != PN_OK) return pn_cli_fail(NULL);
  pn_lr_find_options o = {a.start, a.end, a.iters, a.backend, stdout};
  pn_status s = pn_lr_find(p, &o, &r);
  pn_pipeline_free(p);
  if (s != PN_OK) return pn_cli_fail(NULL);
  rc = report(&a, &r);
  pn_lr_find_result_free(&r);
  return rc;
}
