/* The `plugnet` subcommands: each returns the process exit status and
 * reports errors as one line "plugnet: <message>" on stderr. */
#ifndef PLUGNET_CLI_H
#define PLUGNET_CLI_H

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

#endif
