#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>

#include <plugnet/log.h>

static int level = -1;
static pthread_once_t level_once = PTHREAD_ONCE_INIT;

static void read_level_from_env(void) {
  static const char *const names[] = {"error", "warn", "info", "debug"};
  const char *env = getenv("PLUGNET_LOG");
  level = PN_LOG_WARN;
  if (!env || !*env) return;
  for (int i = 0; i < 4; i++)
    if (strcmp(env, names[i]) == 0) level = i;
}

int pn_log_enabled(pn_log_level l) {
  pthread_once(&level_once, read_level_from_env);
  return (int)l <= level;
}

void pn_log_set_level(pn_log_level l) {
  pthread_once(&level_once, read_level_from_env);
  level = (int)l;
}

void pn_log_write(pn_log_level l, const char *fmt, ...) {
  static const char *const tags[] = {"error", "warning", "info", "debug"};
  char line[1024];
  va_list ap;
  if (!pn_log_enabled(l)) return;
  va_start(ap, fmt);
  vsnprintf(line, sizeof line, fmt, ap);
  va_end(ap);
  /* One fprintf per line, so lines from several threads do not interleave. */
  fprintf(stderr, "plugnet %s: %s\n", tags[l], line);
}
