/* The `plugnet` subcommands: each returns the process exit status and
 * reports errors as one line "plugnet: <message>" on stderr. */
#ifndef PLUGNET_CLI_H
#define PLUGNET_CLI_H

#include <plugnet/status.h>

int pn_cmd_plugins(int argc, char **argv);
int pn_cmd_inspect(int argc, char **argv);
int pn_cmd_backends(int argc, char **argv);
int pn_cmd_topology(int argc, char **argv);
int pn_cmd_gradcheck(int argc, char **argv);
int pn_cmd_train(int argc, char **argv);
int pn_cmd_eval(int argc, char **argv);
int pn_cmd_plan(int argc, char **argv);
int pn_cmd_lr_find(int argc, char **argv);
int pn_cmd_summary(int argc, char **argv);
int pn_cmd_predict(int argc, char **argv);
int pn_cmd_show_batch(int argc, char **argv);

/* Prints "plugnet: <message>" for the current error and returns 1. */
int pn_cli_fail(const char *context);

/* Bad arguments: prints "plugnet CMD: <message>" (fmt is printf's) and, when
 * synopsis is not NULL, "usage: plugnet CMD SYNOPSIS"; returns 2. */
int pn_cli_usage(const char *cmd, const char *synopsis, const char *fmt, ...) PN_PRINTF(3, 4);

#endif
