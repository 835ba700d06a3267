#include "util/error.h"

#include <stdarg.h>
#include <string.h>

int cm_error_set(struct cm_error **err, int code, const char *fmt, ...) {
        if (code < 0)
                code = -code;
        if (err && !*err) {
                struct cm_error *e = calloc(1, sizeof(*e));
                if (e) {
                        va_list ap;
                        va_start(ap, fmt);
                        if (vasprintf(&e->message, fmt, ap) < 0)
                                e->message = NULL;
                        va_end(ap);
                        e->code = code;
                        *err = e;
                }
        }
        return -code;
}

void cm_error_prefix(struct cm_error **err, const char *fmt, ...) {
        if (!err || !*err)
                return;
        _cleanup_free_ char *p = NULL;
        va_list ap;
        va_start(ap, fmt);
        int r = vasprintf(&p, fmt, ap);
        va_end(ap);
        if (r < 0)
                return;
        char *n = NULL;
        if (asprintf(&n, "%s: %s", p, (*err)->message ? (*err)->message : "") < 0)
                return;
        free((*err)->message);
        (*err)->message = n;
}

void cm_error_free(struct cm_error *e) {
        if (!e)
                return;
        free(e->message);
        free(e);
}

const char *cm_error_code_name(int code) {
        switch (code) {
        case CM_ENOTRUNNING: return "not-running";
        case CM_EUSAGE: return "usage";
        case CM_ENOTFOUND: return "not-found";
        case CM_EEXISTS: return "exists";
        case CM_EINVALID: return "invalid";
        case CM_EPERM: return "permission-denied";
        case CM_EREGISTRY: return "registry";
        case CM_EDIGEST: return "digest-mismatch";
        case CM_EUNSAFE: return "unsafe-path";
        case CM_EINTERNAL: return "internal";
        case ENOENT: return "not-found";
        case EEXIST: return "exists";
        case EACCES:
        case EPERM: return "permission-denied";
        case EINVAL: return "invalid";
        default: return "error";
        }
}
