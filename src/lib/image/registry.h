/* Docker Registry HTTP API v2 / OCI distribution client over libcurl.
 *
 * A registry_client talks to one repository of one registry (with, for docker.io, the
 * configured mirrors tried first). It handles the anonymous bearer-token flow, basic auth
 * from the credentials file, retries with backoff and resumption of interrupted blob
 * downloads. A client may be used by several threads at once (each request takes its own
 * curl handle from a small pool); the token is shared. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "image/image.h"
#include "util/digest.h"
#include "util/error.h"

#define REGISTRY_MANIFEST_MAX (4u * 1024 * 1024)

/* curl_global_init, once per process. Call early, before threads start (the apiserver does
 * at start). Clients call it too (through pthread_once), so forgetting it is harmless. */
int registry_global_init(void);

struct registry_client;

/* registry: as in a parsed reference ("docker.io", "127.0.0.1:5000"). push: ask for
 * pull+push access, and never use mirrors. */
int registry_client_new(const struct registry_options *ro, const char *registry, const char *repository, bool push,
                        struct registry_client **ret, struct cm_error **err);
void registry_client_free(struct registry_client *c);
static inline void registry_client_freep(struct registry_client **c) { registry_client_free(*c); }
#define _cleanup_registry_client_ _cleanup_(registry_client_freep)

/* Fetches a manifest or index by tag or digest (at most REGISTRY_MANIFEST_MAX bytes).
 * ret_digest is always the digest of the exact bytes received; when reference is a digest it
 * must match (CM_EDIGEST otherwise). ret_media_type: the Content-Type without parameters
 * (may be an empty string when the registry sends none). */
int registry_get_manifest(struct registry_client *c, const char *reference, char **ret_data, size_t *ret_len,
                          char **ret_media_type, char ret_digest[DIGEST_STR_MAX], struct cm_error **err);

/* Where a blob download goes. write/size/reset let an interrupted download resume (Range)
 * or restart. progress (optional) returning non-zero cancels the transfer (-ECANCELED);
 * retrying (optional) is told before each new attempt after a transient failure. */
struct registry_sink {
        int (*write)(void *userdata, const void *data, size_t len, struct cm_error **err);
        uint64_t (*size)(void *userdata);
        int (*reset)(void *userdata);
        int (*progress)(void *userdata, uint64_t current, uint64_t total);
        void (*retrying)(void *userdata, uint64_t current, uint64_t total); /* optional */
        void *userdata;
};
/* Streams a blob (following redirects) into sink. Verification of digest and size is the
 * sink's business (a blob_writer does it at commit). */
int registry_get_blob(struct registry_client *c, const char *digest, int64_t size, const struct registry_sink *sink,
                      struct cm_error **err);

/* 1 when the registry has the blob, 0 when not. */
int registry_blob_exists(struct registry_client *c, const char *digest, struct cm_error **err);
/* Monolithic upload (POST /blobs/uploads/, then PUT ?digest=) of size bytes read from fd at
 * offset 0. */
int registry_put_blob(struct registry_client *c, const char *digest, int fd, uint64_t size,
                      struct cm_error **err);
/* PUT a manifest or index under a tag or its digest, with its media type. */
int registry_put_manifest(struct registry_client *c, const char *reference, const char *media_type,
                          const void *data, size_t len, struct cm_error **err);

/* Checks credentials against a registry ("docker.io", "127.0.0.1:5000"): 0 when they work
 * (or the registry needs none), CM_EPERM "invalid username or password" otherwise. For
 * `container registry login`. */
int registry_login_check(const char *host, const char *user, const char *password, const struct registry_options *ro,
                         struct cm_error **err);

/* ---- pieces, exposed for tests ---- */

/* One challenge from a WWW-Authenticate header, e.g.
 * Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:x:pull" */
struct registry_challenge {
        char *scheme; /* "Bearer", "Basic" (as sent) */
        char *realm, *service, *scope, *error;
};
int registry_challenge_parse(const char *header, struct registry_challenge *ret);
void registry_challenge_done(struct registry_challenge *c);

/* "https://registry-1.docker.io" for "docker.io"; http:// for localhost, 127.0.0.0/8, ::1 and
 * hosts listed in insecure. */
int registry_base_url(const char *registry, char *const *insecure, char **ret);
bool registry_host_is_insecure(const char *host, char *const *insecure);
/* base + "/v2/" + repository + "/" + kind + "/" + reference (kind "manifests" or "blobs"). */
int registry_url(const char *base, const char *repository, const char *kind, const char *reference, char **ret);
/* Token endpoint URL: realm?service=…&scope=… (scope may hold several, space-separated). */
int registry_token_url(const struct registry_challenge *ch, const char *fallback_scope, char **ret);
/* Resolves a Location header (absolute, or relative to the request URL). */
int registry_resolve_location(const char *request_url, const char *location, char **ret);
/* Looks up base64(user:pass) for host in a docker config.json-style file. ret = NULL when the
 * file or the entry is missing. */
int registry_auth_lookup(const char *auth_file, const char *host, char **ret, struct cm_error **err);
