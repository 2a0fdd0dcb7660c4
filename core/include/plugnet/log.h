/* Levelled logging to stderr. The level comes from PLUGNET_LOG
 * (error, warn, info, debug); the default is warn. */
#ifndef PLUGNET_LOG_H
#define PLUGNET_LOG_H

#include <plugnet/status.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum pn_log_level { PN_LOG_ERROR = 0, PN_LOG_WARN, PN_LOG_INFO, PN_LOG_DEBUG } pn_log_level;

void pn_log_write(pn_log_level level, const char *fmt, ...) PN_PRINTF(2, 3);
int pn_log_enabled(pn_log_level level);
void pn_log_set_level(pn_log_level level);

#define PN_LOG_ERR(...) pn_log_write(PN_LOG_ERROR, __VA_ARGS__)
#define PN_WARN(...)    pn_log_write(PN_LOG_WARN, __VA_ARGS__)
#define PN_INFO(...)    pn_log_write(PN_LOG_INFO, __VA_ARGS__)
#define PN_DEBUG(...)                                                                              \
  do {                                                                                             \
    if (pn_log_enabled(PN_LOG_DEBUG)) pn_log_write(PN_LOG_DEBUG, __VA_ARGS__);                     \
  } while (0)

#ifdef __cplusplus
}
#endif
#endif
