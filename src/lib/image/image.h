/* High-level image operations, as the apiserver offers them. Results are jansson objects
 * shaped for the CLI (see docs/api.md). */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "image/store.h"
#include "util/error.h"

/* Progress of long operations. status: "resolving", "downloading", "verifying", "unpacking",
 * "done", "exists" (already present), "retrying". id: a digest or a reference. */
typedef void (*image_progress_fn)(void *userdata, const char *id, const char *status, uint64_t current,
                                  uint64_t total);

/* Registry access settings (from $CONTAINER_ROOT/config.json and the caller's credentials). */
struct registry_options {
        char **mirrors;        /* for docker.io, e.g. "http://127.0.0.1:5000"; NULL-terminated or NULL */
        char **insecure;       /* "host[:port]" allowed over plain HTTP; NULL-terminated or NULL */
        const char *auth_file; /* JSON {"auths":{"host":{"auth":"base64(user:pass)"}}} or NULL */
        long timeout_sec;      /* per request without progress; 0 = 30 */
        const char *user_agent;
};

struct pull_options {
        const char *platform; /* "linux/amd64" or NULL = host */
        image_progress_fn progress;
        void *userdata;
        int max_parallel; /* 0 = 4 */
};

/* Pulls ref (as the user wrote it), stores it under its normalized name, unpacks its layers.
 * Returns the normalized name in ret_name (caller frees) and the manifest digest. */
int image_pull(struct image_store *s, const struct registry_options *ro, const char *ref,
               const struct pull_options *po, char **ret_name, char ret_digest[DIGEST_STR_MAX],
               struct cm_error **err);
int image_push(struct image_store *s, const struct registry_options *ro, const char *src_ref, const char *dst_ref,
               image_progress_fn progress, void *userdata, struct cm_error **err);

/* Archives. load: docker-archive or oci-archive (auto-detected); returns the names loaded
 * (json array of strings). save: oci-archive of the given names. import: a root filesystem
 * tarball (fd, possibly compressed) becomes a one-layer image named ref. */
int image_load(struct image_store *s, int fd, json_t **ret_names, struct cm_error **err);
int image_save(struct image_store *s, const char *const *refs, size_t n_refs, int out_fd, struct cm_error **err);
int image_import(struct image_store *s, int fd, const char *ref, char ret_digest[DIGEST_STR_MAX],
                 struct cm_error **err);

/* ref as the user wrote it ("busybox") -> the full normalized name the store uses. */
int image_normalize_name(const char *ref, char **ret, struct cm_error **err);
/* Finds ref in the store: by its normalized name, or for name@digest by any name of that
 * repository whose target has that digest. CM_ENOTFOUND "image not found: <ref>" otherwise.
 * ret_name (optional) gets the stored name; ret_target is released with oci_descriptor_done. */
int image_lookup(struct image_store *s, const char *ref, char **ret_name, struct oci_descriptor *ret_target,
                 struct cm_error **err);

/* Listing and inspection. list: array of {name, repository, tag, digest, size, created}.
 * inspect: {name, digest, mediaType, manifest, config, size, created, platform, layers}. */
int image_list(struct image_store *s, json_t **ret, struct cm_error **err);
int image_inspect(struct image_store *s, const char *ref, json_t **ret, struct cm_error **err);
int image_tag(struct image_store *s, const char *src, const char *dst, struct cm_error **err);
/* Removes the name and garbage-collects what nothing references any more. */
int image_remove(struct image_store *s, const char *ref, struct cm_error **err);
/* Resolves ref in the store to its image manifest (following an index to the host/given
 * platform), config and the unpacked layer directories (bottom first). Unpacks any missing
 * layer. For machine creation. */
struct image_resolved {
        char *name;
        char manifest_digest[DIGEST_STR_MAX];
        struct oci_manifest *manifest;
        struct oci_image_config *config;
        char **layer_dirs; /* NULL-terminated, bottom layer first */
};
int image_resolve(struct image_store *s, const char *ref, const char *platform, struct image_resolved **ret,
                  struct cm_error **err);
void image_resolved_free(struct image_resolved *r);
