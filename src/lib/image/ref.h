/* Image references as Docker writes them, normalized:
 *   alpine                      -> docker.io/library/alpine:latest
 *   127.0.0.1:5000/x/y:1@sha256:… -> registry 127.0.0.1:5000, repository x/y, tag 1, digest pinned
 */
#pragma once

#include "util/error.h"

struct image_ref {
        char *registry;   /* "docker.io", "localhost:5000", "127.0.0.1:5000" */
        char *repository; /* "library/alpine", "x/y" */
        char *tag;        /* "latest" when neither tag nor digest was given; NULL if only a digest */
        char *digest;     /* "sha256:<hex>" or NULL */
};

/* Parses and normalizes. Errors (CM_EINVALID) name the reference and what is wrong. */
int image_ref_parse(const char *s, struct image_ref **ret, struct cm_error **err);
/* Full normalized name: "registry/repository:tag", "registry/repository@digest" or
 * "registry/repository:tag@digest". Caller frees. */
char *image_ref_format(const struct image_ref *r);
/* "registry/repository" */
char *image_ref_name(const struct image_ref *r);
/* Short form for display, as docker shows it: docker.io/library/ dropped ("alpine"),
 * docker.io/ dropped ("user/app"), others unchanged. Repository only, no tag. Unlike docker,
 * docker.io/ stays when dropping it would make the name read as another registry
 * ("docker.io/example.com/x"): the familiar name always parses back to the same image. */
char *image_ref_familiar_name(const struct image_ref *r);
void image_ref_free(struct image_ref *r);
static inline void image_ref_freep(struct image_ref **r) { image_ref_free(*r); }
#define _cleanup_image_ref_ _cleanup_(image_ref_freep)
