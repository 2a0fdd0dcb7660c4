#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include <plugnet/plugnet.h>

#include "cli.h"

typedef struct command {
  const char *name;
  int (*run)(int argc, char **argv);
  const char *help;
} command;

static const command commands[] = {
    {"train", pn_cmd_train,
     "[PIPELINE] [--set k=v] [--backend B] [--resume F]: train (default: the MLP)"},
    {"eval", pn_cmd_eval, "PIPELINE --checkpoint F: evaluate a checkpoint"},
    {"lr-find", pn_cmd_lr_find,
     "PIPELINE [--start 1e-7] [--end 10] [--iters 100] [-o F.png]: learning-rate range test"},
    {"predict", pn_cmd_predict, "PIPELINE --checkpoint F [--top K] IMAGE...: classify images"},
    {"show-batch", pn_cmd_show_batch, "PIPELINE [-o F] [--valid] [--epoch N]: a grid of samples"},
    {"plan", pn_cmd_plan, "PIPELINE [--set k=v]: print the resolved pipeline, every default shown"},
    {"summary", pn_cmd_summary,
     "MODEL|PIPELINE [--input 3x224x224] [--set k=v]: layers, output shapes, parameter counts"},
    {"plugins", pn_cmd_plugins, "list every feature from the plugin manifests"},
    {"inspect", pn_cmd_inspect, "FEATURE: its plugin, library, version and parameters"},
    {"backends", pn_cmd_backends, "list compute devices, available or why not"},
    {"topology", pn_cmd_topology, "cores, NUMA nodes and the thread binding chosen"},
    {"gradcheck", pn_cmd_gradcheck,
     "FEATURE [--set k=v] [--input NxD]: check gradients by finite differences"},
};
#define N_COMMANDS (int)(sizeof commands / sizeof commands[0])

int pn_cli_fail(const char *context) {
  if (context)
    fprintf(stderr, "plugnet: %s: %s\n", context, pn_last_error());
  else
    fprintf(stderr, "plugnet: %s\n", pn_last_error());
  return 1;
}

int pn_cli_usage(const char *cmd, const char *synopsis, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fprintf(stderr, "plugnet %s: ", cmd);
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
  va_end(ap);
  if (synopsis) fprintf(stderr, "usage: plugnet %s %s\n", cmd, synopsis);
  return 2;
}

static void usage(FILE *to) {
  fprintf(to, "usage: plugnet COMMAND [ARGS]\n\ncommands:\n");
  for (int i = 0; i < N_COMMANDS; i++)
    fprintf(to, "  %-10s %s\n", commands[i].name, commands[i].help);
  fprintf(to, "\nenvironment: PLUGNET_PLUGIN_PATH, PLUGNET_LOG=debug|info|warn|error, "
              "PLUGNET_THREADS, PLUGNET_BACKEND\n");
}

int main(int argc, char **argv) {
  if (argc < 2) {
    usage(stderr);
    return 2;
  }
  const char *cmd = argv[1];
  if (strcmp(cmd, "-h") == 0 || strcmp(cmd, "--help") == 0 || strcmp(cmd, "help") == 0) {
    usage(stdout);
    return 0;
  }
  if (strcmp(cmd, "--version") == 0 || strcmp(cmd, "version") == 0) {
    printf("plugnet %s (plugin ABI %d.%d)\n", PN_VERSION, PN_ABI_MAJOR, PN_ABI_MINOR);
    return 0;
  }
  const char *names[N_COMMANDS];
  for (int i = 0; i < N_COMMANDS; i++) {
    names[i] = commands[i].name;
    if (strcmp(cmd, commands[i].name) == 0) return commands[i].run(argc - 1, argv + 1);
  }
  const char *near = pn_suggest(cmd, names, N_COMMANDS);
  if (near)
    fprintf(stderr, "plugnet: unknown command '%s' (did you mean '%s'?)\n", cmd, near);
  else
    fprintf(stderr, "plugnet: unknown command '%s'; see 'plugnet --help'\n", cmd);
  return 2;
}
