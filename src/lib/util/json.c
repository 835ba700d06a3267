#include "util/json.h"

#include <stdio.h>
#include <string.h>

#include "util/fs.h"
#include "util/strv.h"

const char *json_get_str(const json_t *obj, const char *key) {
        json_t *v = json_object_get(obj, key);
        return json_is_string(v) ? json_string_value(v) : NULL;
}

char **json_to_strv(const json_t *arr) {
        if (!json_is_array(arr))
                return NULL;
        char **l = calloc(1, sizeof(char *));
        if (!l)
                return NULL;
        size_t i;
        json_t *v;
        json_array_foreach(arr, i, v) {
                if (!json_is_string(v) || strv_push_dup(&l, json_string_value(v)) < 0) {
                        strv_free(l);
                        return NULL;
                }
        }
        return l;
}

json_t *json_from_strv(char *const *l) {
        json_t *a = json_array();
        if (l)
                for (char *const *p = l; *p; p++)
                        json_array_append_new(a, json_string(*p));
        return a;
}

json_t *json_parse_buf(const char *data, size_t len, char **ret_error) {
        json_error_t e;
        json_t *j = json_loadb(data, len, JSON_REJECT_DUPLICATES, &e);
        if (!j && ret_error) {
                if (asprintf(ret_error, "invalid JSON at line %d column %d: %s", e.line, e.column, e.text) < 0)
                        *ret_error = NULL;
        }
        return j;
}

int json_write_atomic(int dirfd, const char *name, json_t *j, mode_t mode) {
        _cleanup_free_ char *s = json_dumps(j, JSON_INDENT(2) | JSON_SORT_KEYS);
        if (!s)
                return -ENOMEM;
        size_t len = strlen(s);
        char *t = realloc(s, len + 2);
        if (!t)
                return -ENOMEM;
        s = t;
        s[len] = '\n';
        s[len + 1] = 0;
        return fs_write_atomic(dirfd, name, s, len + 1, mode);
}
