/* Locations ($CONTAINER_ROOT, $CONTAINER_RUN) and the system configuration
 * ($CONTAINER_ROOT/config.json), read and written by `container system property`. */
#pragma once

#include <jansson.h>

#include "util/error.h"

#define CM_DEFAULT_ROOT "/var/lib/container"
#define CM_DEFAULT_RUN "/run/container"

/* $CONTAINER_ROOT or the default; never NULL. */
const char *cm_root_dir(void);
const char *cm_run_dir(void);
/* $CONTAINER_RUN/apiserver.sock (static buffer). */
const char *cm_api_socket_path(void);

/* Finds one of our programs: $ENV_VAR when set, next to the running program (installed),
 * ../<build_subdir>/NAME beside it (the build tree), the libexec dir, else NAME for a PATH
 * lookup. Caller frees. */
char *cm_find_program(const char *env_var, const char *name, const char *build_subdir);

/* Known properties with their types and defaults. */
struct cm_property {
        const char *key;        /* "registry.mirrors" */
        const char *type;       /* "string", "list", "int" */
        const char *default_value; /* as text; lists comma-separated */
        const char *description;
};
extern const struct cm_property cm_properties[];
const struct cm_property *cm_property_find(const char *key);

/* Loads config.json under root (missing file = defaults = empty object). */
int cm_config_load(const char *root, json_t **ret, struct cm_error **err);
int cm_config_save(const char *root, json_t *cfg, struct cm_error **err);
/* Value of a property (configured or default) as JSON: string, integer or array of strings. */
json_t *cm_config_get(json_t *cfg, const char *key);
/* Sets from text: lists are comma-separated, "" clears. Validates the key and type. */
int cm_config_set(json_t *cfg, const char *key, const char *value, struct cm_error **err);
