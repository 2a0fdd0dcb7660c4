/* Status codes and the thread-local error message that travels with them. */
#ifndef PLUGNET_STATUS_H
#define PLUGNET_STATUS_H

#ifdef __cplusplus
extern "C" {
#endif

typedef enum pn_status {
  PN_OK = 0,
  PN_ERR_INVALID, /* a bad argument or value */
  PN_ERR_NOMEM,
  PN_ERR_IO,          /* a file could not be read or written */
  PN_ERR_PARSE,       /* malformed YAML, JSON or binary format */
  PN_ERR_NOT_FOUND,   /* unknown feature, key, file or device */
  PN_ERR_ABI,         /* a plugin built for another ABI */
  PN_ERR_PLUGIN,      /* a plugin misbehaved (init failed, disagrees with manifest) */
  PN_ERR_SHAPE,       /* shapes or dtypes that do not fit together */
  PN_ERR_UNSUPPORTED, /* no backend implements what was asked */
  PN_ERR_DEVICE,      /* a device is unavailable or failed */
  PN_ERR_INTERNAL
} pn_status;

#if defined(__GNUC__)
#define PN_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define PN_PRINTF(a, b)
#endif

/* Records a message for the calling thread and returns `code`, so that
 * `return pn_error(PN_ERR_IO, "%s: %s", path, strerror(errno));` reads naturally. */
pn_status pn_error(pn_status code, const char *fmt, ...) PN_PRINTF(2, 3);

/* Prepends context ("loading cpu.yaml: ") to the current message and returns `code`. */
pn_status pn_error_prefix(pn_status code, const char *fmt, ...) PN_PRINTF(2, 3);

/* The last message recorded on this thread ("" when none). */
const char *pn_last_error(void);
void pn_clear_error(void);
const char *pn_status_name(pn_status s);

#define PN_TRY(expr)                                                                               \
  do {                                                                                             \
    pn_status pn_try_s_ = (expr);                                                                  \
    if (pn_try_s_ != PN_OK) return pn_try_s_;                                                      \
  } while (0)

#ifdef __cplusplus
}
#endif
#endif
