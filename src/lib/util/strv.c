#include "util/strv.h"

#include <string.h>

void strv_free(char **l) {
        if (!l)
                return;
        for (char **p = l; *p; p++)
                free(*p);
        free(l);
}

size_t strv_length(char *const *l) {
        size_t n = 0;
        if (l)
                while (l[n])
                        n++;
        return n;
}

int strv_consume(char ***l, char *s) {
        if (!s)
                return -ENOMEM;
        size_t n = strv_length(*l);
        char **nl = realloc(*l, (n + 2) * sizeof(char *));
        if (!nl) {
                free(s);
                return -ENOMEM;
        }
        nl[n] = s;
        nl[n + 1] = NULL;
        *l = nl;
        return 0;
}

int strv_push_dup(char ***l, const char *s) {
        return strv_consume(l, strdup(s));
}

bool strv_contains(char *const *l, const char *s) {
        if (!l)
                return false;
        for (char *const *p = l; *p; p++)
                if (streq(*p, s))
                        return true;
        return false;
}

char **strv_copy(char *const *l) {
        char **r = calloc(1, sizeof(char *));
        if (!r)
                return NULL;
        if (l)
                for (char *const *p = l; *p; p++)
                        if (strv_push_dup(&r, *p) < 0) {
                                strv_free(r);
                                return NULL;
                        }
        return r;
}
