#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include <plugnet/status.h>

#define PN_MSG_MAX 1024

static _Thread_local char last_msg[PN_MSG_MAX];

pn_status pn_error(pn_status code, const char *fmt, ...) {
  /* Format aside first: an argument may be pn_last_error() itself. */
  char msg[PN_MSG_MAX];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  memcpy(last_msg, msg, sizeof msg);
  return code;
}

pn_status pn_error_prefix(pn_status code, const char *fmt, ...) {
  char prefix[PN_MSG_MAX];
  char old[PN_MSG_MAX];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(prefix, sizeof prefix, fmt, ap);
  va_end(ap);
  memcpy(old, last_msg, sizeof old);
  /* Long messages are cut at PN_MSG_MAX on purpose. */
  size_t n = strlen(prefix);
  if (n >= sizeof last_msg) n = sizeof last_msg - 1;
  memcpy(last_msg, prefix, n);
  size_t rest = strnlen(old, sizeof last_msg - 1 - n);
  memcpy(last_msg + n, old, rest);
  last_msg[n + rest] = '\0';
  return code;
}

const char *pn_last_error(void) { return last_msg; }

void pn_clear_error(void) { last_msg[0] = '\0'; }

const char *pn_status_name(pn_status s) {
  static const char *const names[] = {"ok",           "invalid argument", "out of memory",
                                      "I/O error",    "parse error",      "not found",
                                      "ABI mismatch", "plugin error",     "shape error",
                                      "unsupported",  "device error",     "internal error"};
  if ((unsigned)s < sizeof names / sizeof names[0]) return names[s];
  return "unknown status";
}
