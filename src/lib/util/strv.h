/* NULL-terminated string vectors. */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include "util/macro.h"

void strv_free(char **l);
size_t strv_length(char *const *l);
/* Appends s (taking ownership); on failure s is freed and -ENOMEM returned. */
int strv_consume(char ***l, char *s);
int strv_push_dup(char ***l, const char *s);
bool strv_contains(char *const *l, const char *s);
char **strv_copy(char *const *l);
static inline void strv_freep(char ***l) { strv_free(*l); }
#define _cleanup_strv_ _cleanup_(strv_freep)
