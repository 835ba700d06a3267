/* OCI / Docker v2 manifests, indexes and image configs: parsing untrusted JSON. */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "util/error.h"

#define MT_OCI_MANIFEST "application/vnd.oci.image.manifest.v1+json"
#define MT_OCI_INDEX "application/vnd.oci.image.index.v1+json"
#define MT_OCI_CONFIG "application/vnd.oci.image.config.v1+json"
#define MT_OCI_LAYER "application/vnd.oci.image.layer.v1.tar"
#define MT_OCI_LAYER_GZIP "application/vnd.oci.image.layer.v1.tar+gzip"
#define MT_OCI_LAYER_ZSTD "application/vnd.oci.image.layer.v1.tar+zstd"
#define MT_DOCKER_MANIFEST "application/vnd.docker.distribution.manifest.v2+json"
#define MT_DOCKER_LIST "application/vnd.docker.distribution.manifest.list.v2+json"
#define MT_DOCKER_CONFIG "application/vnd.docker.container.image.v1+json"
#define MT_DOCKER_LAYER_GZIP "application/vnd.docker.image.rootfs.diff.tar.gzip"

enum layer_compression { LAYER_PLAIN, LAYER_GZIP, LAYER_ZSTD };

struct oci_platform {
        char *os, *architecture, *variant; /* NULL when absent */
};

struct oci_descriptor {
        char *media_type;
        char *digest;      /* validated "sha256:<64 hex>" */
        int64_t size;      /* >= 0 */
        struct oci_platform platform; /* index entries only */
        char *ref_name;    /* annotation org.opencontainers.image.ref.name, if any */
};

struct oci_manifest {
        char *media_type; /* MT_OCI_MANIFEST or MT_DOCKER_MANIFEST */
        struct oci_descriptor config;
        struct oci_descriptor *layers;
        size_t n_layers;
};

struct oci_index {
        char *media_type; /* MT_OCI_INDEX or MT_DOCKER_LIST */
        struct oci_descriptor *manifests;
        size_t n_manifests;
};

/* Empty strings in the JSON are stored as NULL. */
struct oci_image_config {
        struct oci_platform platform;
        char *created;      /* ISO-8601 or NULL */
        char **env;         /* NULL-terminated, may be empty */
        char **entrypoint;  /* NULL-terminated or NULL */
        char **cmd;         /* NULL-terminated or NULL */
        char *working_dir, *user, *stop_signal;
        char **diff_ids;    /* validated digests, NULL-terminated */
        size_t n_diff_ids;
};

/* What kind of document this is, from its own mediaType field or, when missing, from the
 * hint (e.g. the Content-Type) or its shape. Returns 0 and sets *ret_is_index. */
int oci_detect_kind(const char *data, size_t len, const char *media_type_hint, int *ret_is_index,
                    struct cm_error **err);
int oci_manifest_parse(const char *data, size_t len, struct oci_manifest **ret, struct cm_error **err);
int oci_index_parse(const char *data, size_t len, struct oci_index **ret, struct cm_error **err);
int oci_config_parse(const char *data, size_t len, struct oci_image_config **ret, struct cm_error **err);
/* Picks the manifest for "os/arch[/variant]" (NULL = host platform). -ENOENT with a message
 * listing the available platforms when none matches. Variants compare as containerd does
 * (arm means arm/v7, arm64 means arm64/v8; an arm/v7 request accepts v6 and v5 entries,
 * preferring the closest). An index whose only entry has no platform selects that entry. *ret
 * points into idx. */
int oci_index_select(const struct oci_index *idx, const char *platform, const struct oci_descriptor **ret,
                     struct cm_error **err);
/* Host architecture as a GOARCH name: "amd64", "arm64", "arm", "386", "ppc64le", "s390x",
 * "riscv64" (uname's machine for anything else). */
const char *oci_host_arch(void);
/* Host variant ("v7" on 32-bit arm builds) or NULL. */
const char *oci_host_variant(void);
/* Layer media type -> compression; -EPROTONOSUPPORT for unknown types. */
int oci_layer_compression(const char *media_type, enum layer_compression *ret);
/* "os/arch[/variant]", lowercased, common aliases mapped (x86_64 -> amd64, aarch64 -> arm64,
 * armhf -> arm/v7). Caller releases *ret with oci_platform_done(). */
int oci_platform_parse(const char *s, struct oci_platform *ret, struct cm_error **err);

void oci_descriptor_done(struct oci_descriptor *d);
void oci_manifest_free(struct oci_manifest *m);
void oci_index_free(struct oci_index *i);
void oci_config_free(struct oci_image_config *c);
void oci_platform_done(struct oci_platform *p);
