/* plugnet summary MODEL|PIPELINE: every layer with its output shape and
 * parameter count, then the totals, as fastai's learn.summary() prints. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <plugnet/plugnet.h>

#include "cli.h"

#define MAX_SETS 64

static const char command[] = "summary";
static const char synopsis[] = "MODEL|PIPELINE [--input 3x224x224] [--set key=value]";

typedef struct args {
  const char *target;
  pn_shape input;
  char *sets[MAX_SETS];
  int n_sets;
} args;

/* "3x224x224" -> [3, 224, 224] */
static int parse_shape(const char *text, pn_shape *s) {
  memset(s, 0, sizeof *s);
  for (const char *p = text; *p;) {
    char *end = NULL;
    long long v = strtoll(p, &end, 10);
    if (end == p || v < 1 || s->ndim == PN_MAX_DIMS - 1) return 0;
    s->dim[s->ndim++] = v;
    if (*end == 'x' || *end == 'X') end++;
    else if (*end) return 0;
    p = end;
  }
  return s->ndim > 0;
}

static int parse_args(int argc, char **argv, args *a) {
  memset(a, 0, sizeof *a);
  for (int i = 1; i < argc; i++) {
    int has_value = i + 1 < argc;
    if (strcmp(argv[i], "--input") == 0 && has_value) {
      if (!parse_shape(argv[++i], &a->input))
        return pn_cli_usage(command, synopsis, "--input wants sizes like 3x224x224");
    } else if (strcmp(argv[i], "--set") == 0 && has_value) {
      if (a->n_sets == MAX_SETS) return pn_cli_usage(command, synopsis, "too many --set options");
      a->sets[a->n_sets++] = argv[++i];
    } else if (argv[i][0] == '-' || a->target) {
      return pn_cli_usage(command, synopsis, "unexpected argument");
    } else {
      a->target = argv[i];
    }
  }
  return a->target ? 0 : pn_cli_usage(command, synopsis, "which model or pipeline?");
}

/* A pipeline names its data; a model file does not. */
static int is_pipeline(const char *path) {
  FILE *f = fopen(path, "r");
  char line[512];
  int found = 0;
  while (f && !found && fgets(line, sizeof line, f))
    found = strncmp(line, "data:", 5) == 0 || strncmp(line, "pipeline:", 9) == 0;
  if (f) fclose(f);
  return found;
}

static pn_status pipeline_model(const args *a, pn_model **m) {
  pn_pipeline *p = NULL;
  PN_TRY(pn_pipeline_load(a->target, a->sets, a->n_sets, &p));
  pn_shape in = a->input.ndim ? a->input : p->input;
  pn_status s = PN_OK;
  if (!in.ndim) { /* the training data's sample shape */
    pn_dataset *ds = NULL;
    s = pn_dataset_open(p->train_data.feature, p->train_data.cfg, &ds);
    if (s == PN_OK) in = pn_dataset_get_info(ds)->x_shape;
    pn_dataset_close(ds);
  }
  if (s == PN_OK) s = pn_pipeline_build_model(p, &in, m);
  pn_pipeline_free(p);
  return s;
}

static void print_shape(char *buf, size_t n, const pn_shape *s) {
  int k = snprintf(buf, n, "[-1");
  for (int i = 0; i < s->ndim && k > 0 && (size_t)k < n; i++)
    k += snprintf(buf + k, n - (size_t)k, ", %lld", (long long)s->dim[i]);
  if (k > 0 && (size_t)k < n) snprintf(buf + k, n - (size_t)k, "]");
}

/* 11689512 -> "11,689,512" */
static const char *grouped(int64_t v, char *buf, size_t n) {
  char digits[32];
  int len = snprintf(digits, sizeof digits, "%lld", (long long)v), k = 0;
  for (int i = 0; i < len && (size_t)k + 2 < n; i++) {
    if (i && (len - i) % 3 == 0) buf[k++] = ',';
    buf[k++] = digits[i];
  }
  buf[k] = '\0';
  return buf;
}

static void print_layer(const pn_model *m, int i, int64_t *total, int64_t *trainable) {
  pn_layer *l = pn_model_layer(m, i);
  int64_t count = 0, train = 0;
  for (int k = 0; k < pn_layer_param_count(l); k++) {
    pn_tensor *t = pn_layer_param(l, k);
    count += pn_tensor_numel(t);
    if (t->requires_grad) train += pn_tensor_numel(t);
  }
  char shape[128], num[32];
  pn_shape out = pn_layer_out_shape(l);
  print_shape(shape, sizeof shape, &out);
  char name[160];
  snprintf(name, sizeof name, "%s (%s)", pn_layer_name(l), pn_model_node_feature(m, i));
  printf("%-44s %-22s %12s  %s\n", name, shape, grouped(count, num, sizeof num),
         count == 0 ? "" : train == count ? "True" : train == 0 ? "False" : "partly");
  *total += count;
  *trainable += train;
}

static void print_summary(const char *title, const pn_model *m) {
  char shape[128], a[32], b[32], c[32];
  int64_t total = 0, trainable = 0;
  pn_shape in = pn_model_input_shape(m);
  print_shape(shape, sizeof shape, &in);
  printf("%s\nInput: %s\n\n%-44s %-22s %12s  %s\n", title, shape, "Layer (type)", "Output Shape",
         "Param #", "Trainable");
  for (int i = 0; i < 44 + 22 + 12 + 13; i++) putchar('=');
  putchar('\n');
  for (int i = 0; i < pn_model_layer_count(m); i++) print_layer(m, i, &total, &trainable);
  for (int i = 0; i < 44 + 22 + 12 + 13; i++) putchar('=');
  printf("\nTotal params: %s\nTotal trainable params: %s\nTotal non-trainable params: %s\n",
         grouped(total, a, sizeof a), grouped(trainable, b, sizeof b),
         grouped(total - trainable, c, sizeof c));
  for (int k = 0; k < pn_model_output_count(m); k++)
    printf("%s%s", k ? ", " : "Outputs: ", pn_model_output_name(m, k));
  putchar('\n');
}

int pn_cmd_summary(int argc, char **argv) {
  args a;
  int rc = parse_args(argc, argv, &a);
  if (rc) return rc;
  pn_model *m = NULL;
  pn_status s = is_pipeline(a.target)
                    ? pipeline_model(&a, &m)
                    : pn_model_from_file(a.target, a.sets, a.n_sets, &a.input, &m);
  if (s != PN_OK) return pn_cli_fail(a.target);
  print_summary(a.target, m);
  pn_model_free(m);
  return 0;
}
