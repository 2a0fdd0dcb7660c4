/* Typed parameter values for a feature, validated against the parameter
 * schema its manifest declares (type, default, range, choices). */
#ifndef PLUGNET_CONFIG_H
#define PLUGNET_CONFIG_H

#include <stdint.h>
#include <plugnet/status.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum pn_param_type {
  PN_PARAM_INT = 0,
  PN_PARAM_FLOAT,
  PN_PARAM_BOOL,
  PN_PARAM_STRING,
  PN_PARAM_ENUM, /* a string from `choices` */
  PN_PARAM_INTS, /* a list of ints, e.g. a kernel size [3, 3] */
  PN_PARAM_PATH, /* a file name: relative ones are taken from the pipeline's directory */
  PN_PARAM_FLOATS /* a list of numbers, e.g. a mean per channel [0.485, 0.456, 0.406] */
} pn_param_type;

typedef struct pn_param_schema {
  char *name;
  pn_param_type type;
  char *default_value; /* as written in the manifest; NULL: required */
  int has_min, has_max;
  double min, max;
  char **choices; /* NULL-terminated, for PN_PARAM_ENUM */
  char *doc;
} pn_param_schema;

typedef struct pn_feature_info pn_feature_info;
typedef struct pn_config pn_config;

/* A config holding every parameter's default. */
pn_config *pn_config_new(const pn_feature_info *feature);
void pn_config_free(pn_config *c);
/* Another config with the same values (NULL when out of memory). */
pn_config *pn_config_clone(const pn_config *c);
/* Sets `key` from its text form, checking type, range and choices. An
 * unknown key is an error suggesting the nearest valid one. */
pn_status pn_config_set(pn_config *c, const char *key, const char *value);
/* Applies "k=v,k=v" (used by tests and --set). */
pn_status pn_config_set_list(pn_config *c, const char *pairs);
/* Checks that every required parameter has a value. */
pn_status pn_config_check(const pn_config *c);

int pn_config_has(const pn_config *c, const char *key);
int64_t pn_config_int(const pn_config *c, const char *key);
double pn_config_float(const pn_config *c, const char *key);
int pn_config_bool(const pn_config *c, const char *key);
const char *pn_config_str(const pn_config *c, const char *key);
/* The value as text, as given or defaulted (NULL when unset). */
const char *pn_config_text(const pn_config *c, const char *key);
/* Copies up to max ints into out; returns how many the value holds. */
int pn_config_ints(const pn_config *c, const char *key, int64_t *out, int max);
/* Copies up to max numbers into out; returns how many the value holds. */
int pn_config_floats(const pn_config *c, const char *key, double *out, int max);
const pn_feature_info *pn_config_feature(const pn_config *c);

#ifdef __cplusplus
}
#endif
#endif
