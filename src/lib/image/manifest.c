#include "image/manifest.h"

#include <ctype.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/utsname.h>

#include "util/digest.h"
#include "util/json.h"
#include "util/strv.h"

#define MT_DOCKER_SCHEMA1 "application/vnd.docker.distribution.manifest.v1+json"
#define MT_DOCKER_SCHEMA1_SIGNED "application/vnd.docker.distribution.manifest.v1+prettyjws"
#define ANNOTATION_REF_NAME "org.opencontainers.image.ref.name"

#define QUOTE_MAX 100
#define CTX_MAX 96
#define LIST_PLATFORMS_MAX 32

/* Everything here comes from a registry or an archive and ends up in a message on a terminal:
 * keep control characters and endless strings out. */
typedef char quote_buf[QUOTE_MAX + 4];

static const char *q(const char *s, quote_buf buf) {
        size_t n = 0;
        if (!s)
                return "(null)";
        for (; n < QUOTE_MAX && s[n]; n++)
                buf[n] = ((unsigned char)s[n] < 0x20 || s[n] == 0x7f) ? '?' : s[n];
        if (s[n]) {
                memcpy(buf + n, "...", 3);
                n += 3;
        }
        buf[n] = 0;
        return buf;
}

static int oom(struct cm_error **err) {
        return cm_error_set(err, ENOMEM, "out of memory");
}

static const struct {
        const char *media_type;
        enum layer_compression compression;
} layer_types[] = {
        { MT_OCI_LAYER, LAYER_PLAIN },
        { MT_OCI_LAYER_GZIP, LAYER_GZIP },
        { MT_OCI_LAYER_ZSTD, LAYER_ZSTD },
        { "application/vnd.oci.image.layer.nondistributable.v1.tar", LAYER_PLAIN },
        { "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip", LAYER_GZIP },
        { "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd", LAYER_ZSTD },
        { "application/vnd.docker.image.rootfs.diff.tar", LAYER_PLAIN },
        { MT_DOCKER_LAYER_GZIP, LAYER_GZIP },
        { "application/vnd.docker.image.rootfs.diff.tar.zstd", LAYER_ZSTD },
        { "application/vnd.docker.image.rootfs.foreign.diff.tar", LAYER_PLAIN },
        { "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip", LAYER_GZIP },
};

int oci_layer_compression(const char *media_type, enum layer_compression *ret) {
        if (!media_type)
                return -EPROTONOSUPPORT;
        for (size_t i = 0; i < ELEMENTSOF(layer_types); i++)
                if (streq(media_type, layer_types[i].media_type)) {
                        *ret = layer_types[i].compression;
                        return 0;
                }
        return -EPROTONOSUPPORT;
}

enum doc_kind { KIND_UNKNOWN, KIND_MANIFEST, KIND_INDEX, KIND_SCHEMA1 };

static enum doc_kind kind_of_media_type(const char *mt) {
        if (streq(mt, MT_OCI_MANIFEST) || streq(mt, MT_DOCKER_MANIFEST))
                return KIND_MANIFEST;
        if (streq(mt, MT_OCI_INDEX) || streq(mt, MT_DOCKER_LIST))
                return KIND_INDEX;
        if (streq(mt, MT_DOCKER_SCHEMA1) || streq(mt, MT_DOCKER_SCHEMA1_SIGNED))
                return KIND_SCHEMA1;
        return KIND_UNKNOWN;
}

static int schema1_error(const char *what, struct cm_error **err) {
        return cm_error_set(err, CM_EINVALID,
                            "%s: Docker image manifest schema 1 is not supported (the registry or image is too old)",
                            what);
}

static int load_object(const char *what, const char *data, size_t len, json_t **ret, struct cm_error **err) {
        _cleanup_free_ char *msg = NULL;
        json_t *j = json_parse_buf(data, len, &msg);
        if (!j)
                return cm_error_set(err, CM_EINVALID, "%s: %s", what, msg ? msg : "invalid JSON");
        if (!json_is_object(j)) {
                json_decref(j);
                return cm_error_set(err, CM_EINVALID, "%s: not a JSON object", what);
        }
        *ret = j;
        return 0;
}

static int check_schema_version(const char *what, const json_t *j, struct cm_error **err) {
        json_t *v = json_object_get(j, "schemaVersion");
        if (!v)
                return cm_error_set(err, CM_EINVALID, "%s: missing schemaVersion", what);
        if (!json_is_integer(v))
                return cm_error_set(err, CM_EINVALID, "%s: schemaVersion must be an integer", what);
        if (json_integer_value(v) == 1)
                return schema1_error(what, err);
        if (json_integer_value(v) != 2)
                return cm_error_set(err, CM_EINVALID, "%s: unsupported schemaVersion %lld (expected 2)", what,
                                    (long long)json_integer_value(v));
        return 0;
}

/* Messages name members by their path: "config: config.User must be a string". */
static const char *member_path(const char *parent, const char *key, char buf[static CTX_MAX]) {
        if (!parent)
                return key;
        snprintf(buf, CTX_MAX, "%s.%s", parent, key);
        return buf;
}

/* Optional string member: missing or null yields NULL, any other type is an error. */
static int get_opt_str(const char *ctx, const char *parent, const json_t *obj, const char *key, const char **ret,
                       struct cm_error **err) {
        json_t *v = json_object_get(obj, key);
        char b[CTX_MAX];
        if (!v || json_is_null(v)) {
                *ret = NULL;
                return 0;
        }
        if (!json_is_string(v))
                return cm_error_set(err, CM_EINVALID, "%s: %s must be a string", ctx, member_path(parent, key, b));
        *ret = json_string_value(v);
        return 0;
}

static int get_req_str(const char *ctx, const char *parent, const json_t *obj, const char *key, const char **ret,
                       struct cm_error **err) {
        json_t *v = json_object_get(obj, key);
        char b[CTX_MAX];
        if (!v || json_is_null(v))
                return cm_error_set(err, CM_EINVALID, "%s: missing %s", ctx, member_path(parent, key, b));
        if (!json_is_string(v))
                return cm_error_set(err, CM_EINVALID, "%s: %s must be a string", ctx, member_path(parent, key, b));
        *ret = json_string_value(v);
        return 0;
}

static int dup_opt(const char *s, char **ret, struct cm_error **err) {
        if (!s) {
                *ret = NULL;
                return 0;
        }
        *ret = strdup(s);
        return *ret ? 0 : oom(err);
}

static int parse_platform(const char *ctx, const json_t *j, struct oci_platform *p, struct cm_error **err) {
        const char *os = NULL, *arch = NULL, *variant = NULL;
        int r;

        if (!json_is_object(j))
                return cm_error_set(err, CM_EINVALID, "%s: platform must be an object", ctx);
        if ((r = get_req_str(ctx, "platform", j, "os", &os, err)) < 0 ||
            (r = get_req_str(ctx, "platform", j, "architecture", &arch, err)) < 0 ||
            (r = get_opt_str(ctx, "platform", j, "variant", &variant, err)) < 0)
                return r;
        if (!*os || !*arch)
                return cm_error_set(err, CM_EINVALID, "%s: platform: empty os or architecture", ctx);
        if ((r = dup_opt(os, &p->os, err)) < 0 || (r = dup_opt(arch, &p->architecture, err)) < 0 ||
            (r = dup_opt(variant && *variant ? variant : NULL, &p->variant, err)) < 0)
                return r;
        return 0;
}

/* Fills d; on failure the caller cleans up d with oci_descriptor_done(). */
static int parse_descriptor(const char *ctx, const json_t *j, bool with_platform, struct oci_descriptor *d,
                            struct cm_error **err) {
        const char *mt = NULL, *digest = NULL, *ref_name = NULL;
        quote_buf b;
        int r;

        if (!json_is_object(j))
                return cm_error_set(err, CM_EINVALID, "%s: not a JSON object", ctx);
        if ((r = get_req_str(ctx, NULL, j, "mediaType", &mt, err)) < 0 ||
            (r = get_req_str(ctx, NULL, j, "digest", &digest, err)) < 0)
                return r;
        if (!*mt)
                return cm_error_set(err, CM_EINVALID, "%s: empty mediaType", ctx);
        if (!digest_is_valid(digest))
                return cm_error_set(err, CM_EINVALID, "%s: invalid digest '%s'", ctx, q(digest, b));

        json_t *size = json_object_get(j, "size");
        if (!size)
                return cm_error_set(err, CM_EINVALID, "%s: missing size", ctx);
        if (!json_is_integer(size))
                return cm_error_set(err, CM_EINVALID, "%s: size must be an integer", ctx);
        if (json_integer_value(size) < 0)
                return cm_error_set(err, CM_EINVALID, "%s: invalid size %lld", ctx, (long long)json_integer_value(size));

        json_t *ann = json_object_get(j, "annotations");
        if (ann && !json_is_null(ann)) {
                if (!json_is_object(ann))
                        return cm_error_set(err, CM_EINVALID, "%s: annotations must be an object", ctx);
                if ((r = get_opt_str(ctx, "annotations", ann, ANNOTATION_REF_NAME, &ref_name, err)) < 0)
                        return r;
        }

        if ((r = dup_opt(mt, &d->media_type, err)) < 0 || (r = dup_opt(digest, &d->digest, err)) < 0 ||
            (r = dup_opt(ref_name, &d->ref_name, err)) < 0)
                return r;
        d->size = (int64_t)json_integer_value(size);

        json_t *platform = json_object_get(j, "platform");
        if (with_platform && platform && !json_is_null(platform)) {
                if ((r = parse_platform(ctx, platform, &d->platform, err)) < 0)
                        return r;
        }
        return 0;
}

/* Strips parameters ("; charset=utf-8") and surrounding blanks from a Content-Type. */
static char *media_type_from_hint(const char *hint) {
        while (*hint == ' ' || *hint == '\t')
                hint++;
        size_t n = strcspn(hint, "; \t");
        return strndup(hint, n);
}

int oci_detect_kind(const char *data, size_t len, const char *media_type_hint, int *ret_is_index,
                    struct cm_error **err) {
        _cleanup_json_ json_t *j = NULL;
        const char *mt = NULL;
        quote_buf b;
        int r;

        if ((r = load_object("manifest", data, len, &j, err)) < 0)
                return r;
        if ((r = get_opt_str("manifest", NULL, j, "mediaType", &mt, err)) < 0)
                return r;

        if (mt) {
                switch (kind_of_media_type(mt)) {
                case KIND_MANIFEST: *ret_is_index = 0; return 0;
                case KIND_INDEX: *ret_is_index = 1; return 0;
                case KIND_SCHEMA1: return schema1_error("manifest", err);
                default: return cm_error_set(err, CM_EINVALID, "manifest: unsupported media type '%s'", q(mt, b));
                }
        }

        json_t *v = json_object_get(j, "schemaVersion");
        if (json_is_integer(v) && json_integer_value(v) == 1)
                return schema1_error("manifest", err);

        if (media_type_hint) {
                _cleanup_free_ char *hint = media_type_from_hint(media_type_hint);
                if (!hint)
                        return oom(err);
                switch (kind_of_media_type(hint)) {
                case KIND_MANIFEST: *ret_is_index = 0; return 0;
                case KIND_INDEX: *ret_is_index = 1; return 0;
                case KIND_SCHEMA1: return schema1_error("manifest", err);
                default: break; /* "application/json" and the like say nothing: look at the shape */
                }
        }

        bool has_manifests = json_object_get(j, "manifests");
        bool has_layers = json_object_get(j, "config") || json_object_get(j, "layers");
        if (has_manifests && has_layers)
                return cm_error_set(err, CM_EINVALID,
                                    "manifest: ambiguous document without mediaType: has both 'manifests' and 'layers'/'config'");
        if (!has_manifests && !has_layers)
                return cm_error_set(err, CM_EINVALID, "manifest: neither an image manifest nor an image index");
        *ret_is_index = has_manifests;
        return 0;
}

static void oci_manifest_freep(struct oci_manifest **m) {
        oci_manifest_free(*m);
}

int oci_manifest_parse(const char *data, size_t len, struct oci_manifest **ret, struct cm_error **err) {
        _cleanup_json_ json_t *j = NULL;
        _cleanup_(oci_manifest_freep) struct oci_manifest *m = NULL;
        const char *mt = NULL;
        char ctx[CTX_MAX];
        quote_buf b;
        int r;

        if ((r = load_object("manifest", data, len, &j, err)) < 0)
                return r;
        if ((r = check_schema_version("manifest", j, err)) < 0)
                return r;
        if ((r = get_opt_str("manifest", NULL, j, "mediaType", &mt, err)) < 0)
                return r;
        if (mt) {
                switch (kind_of_media_type(mt)) {
                case KIND_MANIFEST: break;
                case KIND_INDEX:
                        return cm_error_set(err, CM_EINVALID, "manifest: media type '%s' is an image index, not a manifest",
                                            mt);
                case KIND_SCHEMA1: return schema1_error("manifest", err);
                default: return cm_error_set(err, CM_EINVALID, "manifest: unsupported media type '%s'", q(mt, b));
                }
        }
        /* A document that parses as both a manifest and an index could be read differently by
         * different tools; refuse it. */
        if (json_object_get(j, "manifests"))
                return cm_error_set(err, CM_EINVALID, "manifest: unexpected 'manifests' field (an image index?)");

        m = calloc(1, sizeof(*m));
        if (!m)
                return oom(err);
        /* mediaType is optional in OCI manifests */
        if ((r = dup_opt(mt ? mt : MT_OCI_MANIFEST, &m->media_type, err)) < 0)
                return r;

        json_t *config = json_object_get(j, "config");
        if (!config)
                return cm_error_set(err, CM_EINVALID, "manifest: missing config");
        if ((r = parse_descriptor("manifest: config", config, false, &m->config, err)) < 0)
                return r;
        if (!streq(m->config.media_type, MT_OCI_CONFIG) && !streq(m->config.media_type, MT_DOCKER_CONFIG))
                return cm_error_set(err, CM_EINVALID,
                                    "manifest: config: unsupported media type '%s' (not a container image)",
                                    q(m->config.media_type, b));

        json_t *layers = json_object_get(j, "layers");
        if (!layers)
                return cm_error_set(err, CM_EINVALID, "manifest: missing layers");
        if (!json_is_array(layers))
                return cm_error_set(err, CM_EINVALID, "manifest: layers must be an array");
        size_t n = json_array_size(layers);
        if (n > 0) {
                m->layers = calloc(n, sizeof(*m->layers));
                if (!m->layers)
                        return oom(err);
        }
        for (size_t i = 0; i < n; i++) {
                enum layer_compression c;
                snprintf(ctx, sizeof(ctx), "manifest: layers[%zu]", i);
                m->n_layers = i + 1; /* so the free function sees a partially filled entry */
                if ((r = parse_descriptor(ctx, json_array_get(layers, i), false, &m->layers[i], err)) < 0)
                        return r;
                if (oci_layer_compression(m->layers[i].media_type, &c) < 0)
                        return cm_error_set(err, CM_EINVALID, "%s: unsupported layer media type '%s'", ctx,
                                            q(m->layers[i].media_type, b));
        }

        *ret = TAKE_PTR(m);
        return 0;
}

static void oci_index_freep(struct oci_index **i) {
        oci_index_free(*i);
}

int oci_index_parse(const char *data, size_t len, struct oci_index **ret, struct cm_error **err) {
        _cleanup_json_ json_t *j = NULL;
        _cleanup_(oci_index_freep) struct oci_index *idx = NULL;
        const char *mt = NULL;
        char ctx[CTX_MAX];
        quote_buf b;
        int r;

        if ((r = load_object("index", data, len, &j, err)) < 0)
                return r;
        if ((r = check_schema_version("index", j, err)) < 0)
                return r;
        if ((r = get_opt_str("index", NULL, j, "mediaType", &mt, err)) < 0)
                return r;
        if (mt) {
                switch (kind_of_media_type(mt)) {
                case KIND_INDEX: break;
                case KIND_MANIFEST:
                        return cm_error_set(err, CM_EINVALID, "index: media type '%s' is an image manifest, not an index",
                                            mt);
                case KIND_SCHEMA1: return schema1_error("index", err);
                default: return cm_error_set(err, CM_EINVALID, "index: unsupported media type '%s'", q(mt, b));
                }
        }
        if (json_object_get(j, "layers") || json_object_get(j, "config"))
                return cm_error_set(err, CM_EINVALID, "index: unexpected 'layers' or 'config' field (an image manifest?)");

        idx = calloc(1, sizeof(*idx));
        if (!idx)
                return oom(err);
        if ((r = dup_opt(mt ? mt : MT_OCI_INDEX, &idx->media_type, err)) < 0)
                return r;

        json_t *manifests = json_object_get(j, "manifests");
        if (!manifests)
                return cm_error_set(err, CM_EINVALID, "index: missing manifests");
        if (!json_is_array(manifests))
                return cm_error_set(err, CM_EINVALID, "index: manifests must be an array");
        size_t n = json_array_size(manifests);
        if (n > 0) {
                idx->manifests = calloc(n, sizeof(*idx->manifests));
                if (!idx->manifests)
                        return oom(err);
        }
        for (size_t i = 0; i < n; i++) {
                snprintf(ctx, sizeof(ctx), "index: manifests[%zu]", i);
                idx->n_manifests = i + 1;
                if ((r = parse_descriptor(ctx, json_array_get(manifests, i), true, &idx->manifests[i], err)) < 0)
                        return r;
        }

        *ret = TAKE_PTR(idx);
        return 0;
}

/* Array of strings; missing or null yields NULL, an empty array an empty strv. */
static int get_strv(const char *ctx, const char *parent, const json_t *obj, const char *key, char ***ret,
                    struct cm_error **err) {
        json_t *v = json_object_get(obj, key), *e;
        _cleanup_strv_ char **l = NULL;
        char b[CTX_MAX];
        size_t i;

        *ret = NULL;
        if (!v || json_is_null(v))
                return 0;
        if (!json_is_array(v))
                return cm_error_set(err, CM_EINVALID, "%s: %s must be an array of strings", ctx,
                                    member_path(parent, key, b));
        l = calloc(1, sizeof(char *));
        if (!l)
                return oom(err);
        json_array_foreach(v, i, e) {
                if (!json_is_string(e))
                        return cm_error_set(err, CM_EINVALID, "%s: %s[%zu] must be a string", ctx,
                                            member_path(parent, key, b), i);
                if (strv_push_dup(&l, json_string_value(e)) < 0)
                        return oom(err);
        }
        *ret = TAKE_PTR(l);
        return 0;
}

static void oci_config_freep(struct oci_image_config **c) {
        oci_config_free(*c);
}

int oci_config_parse(const char *data, size_t len, struct oci_image_config **ret, struct cm_error **err) {
        _cleanup_json_ json_t *j = NULL;
        _cleanup_(oci_config_freep) struct oci_image_config *c = NULL;
        const char *os = NULL, *arch = NULL, *variant = NULL, *created = NULL;
        quote_buf b;
        int r;

        if ((r = load_object("config", data, len, &j, err)) < 0)
                return r;

        c = calloc(1, sizeof(*c));
        if (!c)
                return oom(err);

        if ((r = get_req_str("config", NULL, j, "architecture", &arch, err)) < 0 ||
            (r = get_req_str("config", NULL, j, "os", &os, err)) < 0 ||
            (r = get_opt_str("config", NULL, j, "variant", &variant, err)) < 0 ||
            (r = get_opt_str("config", NULL, j, "created", &created, err)) < 0)
                return r;
        if (!*arch || !*os)
                return cm_error_set(err, CM_EINVALID, "config: empty os or architecture");
        if ((r = dup_opt(os, &c->platform.os, err)) < 0 || (r = dup_opt(arch, &c->platform.architecture, err)) < 0 ||
            (r = dup_opt(variant && *variant ? variant : NULL, &c->platform.variant, err)) < 0 ||
            (r = dup_opt(created && *created ? created : NULL, &c->created, err)) < 0)
                return r;

        json_t *cfg = json_object_get(j, "config");
        if (cfg && !json_is_null(cfg)) {
                const char *wd = NULL, *user = NULL, *sig = NULL;
                if (!json_is_object(cfg))
                        return cm_error_set(err, CM_EINVALID, "config: config must be an object");
                if ((r = get_strv("config", "config", cfg, "Env", &c->env, err)) < 0 ||
                    (r = get_strv("config", "config", cfg, "Entrypoint", &c->entrypoint, err)) < 0 ||
                    (r = get_strv("config", "config", cfg, "Cmd", &c->cmd, err)) < 0 ||
                    (r = get_opt_str("config", "config", cfg, "WorkingDir", &wd, err)) < 0 ||
                    (r = get_opt_str("config", "config", cfg, "User", &user, err)) < 0 ||
                    (r = get_opt_str("config", "config", cfg, "StopSignal", &sig, err)) < 0)
                        return r;
                if ((r = dup_opt(wd && *wd ? wd : NULL, &c->working_dir, err)) < 0 ||
                    (r = dup_opt(user && *user ? user : NULL, &c->user, err)) < 0 ||
                    (r = dup_opt(sig && *sig ? sig : NULL, &c->stop_signal, err)) < 0)
                        return r;
        }
        if (!c->env) {
                c->env = calloc(1, sizeof(char *));
                if (!c->env)
                        return oom(err);
        }

        json_t *rootfs = json_object_get(j, "rootfs");
        const char *type = NULL;
        if (!rootfs)
                return cm_error_set(err, CM_EINVALID, "config: missing rootfs");
        if (!json_is_object(rootfs))
                return cm_error_set(err, CM_EINVALID, "config: rootfs must be an object");
        if ((r = get_req_str("config", "rootfs", rootfs, "type", &type, err)) < 0)
                return r;
        if (!streq(type, "layers"))
                return cm_error_set(err, CM_EINVALID, "config: rootfs.type: unsupported type '%s' (expected 'layers')",
                                    q(type, b));
        json_t *ids = json_object_get(rootfs, "diff_ids");
        if (!ids)
                return cm_error_set(err, CM_EINVALID, "config: missing rootfs.diff_ids");
        if ((r = get_strv("config", "rootfs", rootfs, "diff_ids", &c->diff_ids, err)) < 0)
                return r;
        if (!c->diff_ids)
                return cm_error_set(err, CM_EINVALID, "config: rootfs.diff_ids must be an array of strings");
        c->n_diff_ids = strv_length(c->diff_ids);
        for (size_t i = 0; i < c->n_diff_ids; i++)
                if (!digest_is_valid(c->diff_ids[i]))
                        return cm_error_set(err, CM_EINVALID, "config: rootfs.diff_ids[%zu]: invalid digest '%s'", i,
                                            q(c->diff_ids[i], b));

        *ret = TAKE_PTR(c);
        return 0;
}

const char *oci_host_arch(void) {
#if defined(__x86_64__)
        return "amd64";
#elif defined(__aarch64__)
        return "arm64";
#elif defined(__arm__)
        return "arm";
#elif defined(__i386__)
        return "386";
#elif defined(__powerpc64__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
        return "ppc64le";
#elif defined(__s390x__)
        return "s390x";
#elif defined(__riscv) && __riscv_xlen == 64
        return "riscv64";
#else
        static __thread struct utsname u;
        if (uname(&u) < 0)
                return "unknown";
        return u.machine;
#endif
}

const char *oci_host_variant(void) {
#if defined(__arm__) && defined(__ARM_ARCH) && __ARM_ARCH >= 7
        return "v7";
#elif defined(__arm__) && defined(__ARM_ARCH) && __ARM_ARCH == 6
        return "v6";
#elif defined(__arm__)
        return "v5";
#else
        return NULL;
#endif
}

/* GOARCH names for the aliases people type and other tools write. */
static const char *normalize_arch(const char *arch, const char **ret_implied_variant) {
        static const struct {
                const char *alias, *arch, *variant;
        } table[] = {
                { "x86_64", "amd64", NULL }, { "x86-64", "amd64", NULL }, { "aarch64", "arm64", NULL },
                { "armhf", "arm", "v7" },    { "armel", "arm", "v6" },    { "i386", "386", NULL },
                { "i686", "386", NULL },     { "x86", "386", NULL },
        };
        *ret_implied_variant = NULL;
        for (size_t i = 0; i < ELEMENTSOF(table); i++)
                if (strcasecmp(arch, table[i].alias) == 0) {
                        *ret_implied_variant = table[i].variant;
                        return table[i].arch;
                }
        return arch;
}

/* Variants compared as containerd does: arm64 is v8 unless said otherwise, arm is v7, and
 * "7" means "v7". Returns the variant number for arm (0 elsewhere), -1 for nonsense. */
static int variant_level(const char *arch, const char *variant) {
        if (streq(arch, "arm") || streq(arch, "arm64")) {
                int def = streq(arch, "arm") ? 7 : 8;
                if (!variant || !*variant)
                        return def;
                if (*variant == 'v' || *variant == 'V')
                        variant++;
                if (strlen(variant) != 1 || variant[0] < '5' || variant[0] > '9')
                        return -1;
                return variant[0] - '0';
        }
        if (streq(arch, "amd64") && variant && strcasecmp(variant, "v1") == 0)
                return 0;
        return variant && *variant ? -1 : 0;
}

/* Score of an index entry for the wanted platform, higher is better, -1 if it cannot run. */
static int platform_score(const struct oci_platform *want, const struct oci_platform *have) {
        const char *implied_w, *implied_h;
        if (!have->os || !have->architecture)
                return -1;
        if (strcasecmp(want->os, have->os) != 0)
                return -1;
        const char *aw = normalize_arch(want->architecture, &implied_w);
        const char *ah = normalize_arch(have->architecture, &implied_h);
        if (strcasecmp(aw, ah) != 0)
                return -1;
        const char *vw = want->variant ? want->variant : implied_w;
        const char *vh = have->variant ? have->variant : implied_h;

        if (streq(aw, "arm")) {
                /* an armv7 host runs v6 and v5 images too; prefer the closest */
                int lw = variant_level(aw, vw), lh = variant_level(ah, vh);
                if (lw < 0 || lh < 0 || lh > lw)
                        return -1;
                return lh;
        }
        if (streq(aw, "arm64") || streq(aw, "amd64")) {
                int lw = variant_level(aw, vw), lh = variant_level(ah, vh);
                if (lw >= 0 && lh >= 0)
                        return lw == lh ? 0 : -1;
        }
        if (!vw && !vh)
                return 0;
        return vw && vh && strcasecmp(vw, vh) == 0 ? 0 : -1;
}

static char *platform_to_string(const struct oci_platform *p) {
        quote_buf b1, b2, b3;
        char *s = NULL;
        if (asprintf(&s, "%s/%s%s%s", q(p->os, b1), q(p->architecture, b2), p->variant ? "/" : "",
                     p->variant ? q(p->variant, b3) : "") < 0)
                return NULL;
        return s;
}

static int no_match_error(const struct oci_index *idx, const struct oci_platform *want, struct cm_error **err) {
        _cleanup_free_ char *wanted = platform_to_string(want);
        _cleanup_strv_ char **seen = calloc(1, sizeof(char *));
        _cleanup_free_ char *list = NULL;
        size_t list_len = 0;
        FILE *f;

        if (!wanted || !seen)
                return oom(err);
        f = open_memstream(&list, &list_len);
        if (!f)
                return oom(err);
        for (size_t i = 0; i < idx->n_manifests; i++) {
                const struct oci_platform *p = &idx->manifests[i].platform;
                if (!p->os || !p->architecture || streq(p->os, "unknown"))
                        continue; /* attestations and the like */
                char *s = platform_to_string(p);
                if (!s || strv_contains(seen, s)) {
                        free(s);
                        continue;
                }
                if (strv_length(seen) == LIST_PLATFORMS_MAX) {
                        fputs(", ...", f);
                        free(s);
                        break;
                }
                fprintf(f, "%s%s", seen[0] ? ", " : "", s);
                if (strv_consume(&seen, s) < 0)
                        break;
        }
        if (fclose(f) != 0 || !list)
                return oom(err);
        if (!seen[0])
                cm_error_set(err, CM_ENOTFOUND, "no image for platform %s: the image index lists no platforms", wanted);
        else
                cm_error_set(err, CM_ENOTFOUND, "no image for platform %s (available: %s)", wanted, list);
        return -ENOENT;
}

int oci_index_select(const struct oci_index *idx, const char *platform, const struct oci_descriptor **ret,
                     struct cm_error **err) {
        struct oci_platform want = {};
        const struct oci_descriptor *best = NULL;
        int best_score = -1, r;

        if (platform) {
                if ((r = oci_platform_parse(platform, &want, err)) < 0)
                        return r;
        } else {
                const char *v = oci_host_variant();
                want.os = strdup("linux");
                want.architecture = strdup(oci_host_arch());
                want.variant = v ? strdup(v) : NULL;
                if (!want.os || !want.architecture || (v && !want.variant)) {
                        oci_platform_done(&want);
                        return oom(err);
                }
        }

        for (size_t i = 0; i < idx->n_manifests; i++) {
                const struct oci_descriptor *d = &idx->manifests[i];
                int s = platform_score(&want, &d->platform);
                if (s > best_score) {
                        best = d;
                        best_score = s;
                }
        }
        /* An index with one entry and no platform information (as in many OCI layouts) means
         * "this is the image"; its config will tell the platform. */
        if (!best && idx->n_manifests == 1 && !idx->manifests[0].platform.os)
                best = &idx->manifests[0];

        if (!best) {
                r = no_match_error(idx, &want, err);
                oci_platform_done(&want);
                return r;
        }
        oci_platform_done(&want);
        *ret = best;
        return 0;
}

static bool platform_component_valid(const char *s) {
        if (!*s)
                return false;
        for (; *s; s++)
                if (!isalnum((unsigned char)*s) && *s != '_' && *s != '-' && *s != '.')
                        return false;
        return true;
}

int oci_platform_parse(const char *s, struct oci_platform *ret, struct cm_error **err) {
        _cleanup_free_ char *buf = NULL;
        char *parts[3] = {};
        size_t n = 0;
        quote_buf b;

        if (!s)
                s = "";
        buf = strdup(s);
        if (!buf)
                return oom(err);
        for (char *p = buf; *p; p++)
                *p = (char)tolower((unsigned char)*p);

        for (char *p = buf, *slash;; p = slash + 1) {
                if (n == ELEMENTSOF(parts))
                        goto invalid;
                parts[n++] = p;
                slash = strchr(p, '/');
                if (!slash)
                        break;
                *slash = 0;
        }
        if (n < 2)
                goto invalid;
        for (size_t i = 0; i < n; i++)
                if (!platform_component_valid(parts[i]))
                        goto invalid;

        const char *implied;
        const char *arch = normalize_arch(parts[1], &implied);
        const char *variant = n == 3 ? parts[2] : implied;
        struct oci_platform p = {
                .os = strdup(parts[0]),
                .architecture = strdup(arch),
                .variant = variant ? strdup(variant) : NULL,
        };
        if (!p.os || !p.architecture || (variant && !p.variant)) {
                oci_platform_done(&p);
                return oom(err);
        }
        *ret = p;
        return 0;

invalid:
        return cm_error_set(err, CM_EINVALID, "invalid platform '%s': expected os/arch[/variant], e.g. linux/arm64",
                            q(s, b));
}

void oci_platform_done(struct oci_platform *p) {
        if (!p)
                return;
        free(p->os);
        free(p->architecture);
        free(p->variant);
        *p = (struct oci_platform){};
}

void oci_descriptor_done(struct oci_descriptor *d) {
        if (!d)
                return;
        free(d->media_type);
        free(d->digest);
        free(d->ref_name);
        oci_platform_done(&d->platform);
        *d = (struct oci_descriptor){};
}

void oci_manifest_free(struct oci_manifest *m) {
        if (!m)
                return;
        free(m->media_type);
        oci_descriptor_done(&m->config);
        for (size_t i = 0; i < m->n_layers; i++)
                oci_descriptor_done(&m->layers[i]);
        free(m->layers);
        free(m);
}

void oci_index_free(struct oci_index *i) {
        if (!i)
                return;
        free(i->media_type);
        for (size_t k = 0; k < i->n_manifests; k++)
                oci_descriptor_done(&i->manifests[k]);
        free(i->manifests);
        free(i);
}

void oci_config_free(struct oci_image_config *c) {
        if (!c)
                return;
        oci_platform_done(&c->platform);
        free(c->created);
        strv_free(c->env);
        strv_free(c->entrypoint);
        strv_free(c->cmd);
        free(c->working_dir);
        free(c->user);
        free(c->stop_signal);
        strv_free(c->diff_ids);
        free(c);
}
