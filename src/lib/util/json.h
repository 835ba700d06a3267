/* jansson helpers. */
#pragma once

#include <jansson.h>
#include <sys/types.h>

#include "util/macro.h"

/* jansson provides json_decrefp and json_auto_t */
#define _cleanup_json_ _cleanup_(json_decrefp)

/* String member or NULL when missing / not a string. */
const char *json_get_str(const json_t *obj, const char *key);
/* Array of strings -> NULL-terminated strv (NULL if not an array of strings). */
char **json_to_strv(const json_t *arr);
json_t *json_from_strv(char *const *l);
/* Writes j (pretty, sorted keys, trailing newline) to dirfd/name atomically. -errno. */
int json_write_atomic(int dirfd, const char *name, json_t *j, mode_t mode);
/* Parse with a clear error ("invalid JSON at line L column C: ..."). */
json_t *json_parse_buf(const char *data, size_t len, char **ret_error);
