/* Errors with context for the user. Library functions return -errno and, where a user
 * needs more than an errno, fill a struct cm_error with a message. */
#pragma once

#include "util/macro.h"

struct cm_error {
        int code;     /* positive errno-like value, or one of CM_E* below */
        char *message;
};

/* Stable error codes carried over the API (in addition to errno values). */
enum {
        CM_ENOTRUNNING = 1000, /* apiserver not running */
        CM_EUSAGE,
        CM_ENOTFOUND,
        CM_EEXISTS,
        CM_EINVALID,
        CM_EPERM,
        CM_EREGISTRY,
        CM_EDIGEST,
        CM_EUNSAFE,
        CM_EINTERNAL,
};

/* Sets *err (if err is non-NULL and *err is still empty) and returns -code. When code is an
 * errno value it is returned negated; CM_E* codes are returned as -EINVAL-like -code too. */
int cm_error_set(struct cm_error **err, int code, const char *fmt, ...) _printf_(3, 4);
/* Prepends "prefix: " to an existing message (adds context as the error travels up). */
void cm_error_prefix(struct cm_error **err, const char *fmt, ...) _printf_(2, 3);
void cm_error_free(struct cm_error *e);
const char *cm_error_code_name(int code);
static inline void cm_error_freep(struct cm_error **e) { cm_error_free(*e); }
#define _cleanup_error_ _cleanup_(cm_error_freep)
