#include "image/image.h"

#include <string.h>
#include <unistd.h>

#include "image/manifest.h"
#include "image/ref.h"
#include "util/json.h"
#include "util/macro.h"
#include "util/strv.h"

int image_normalize_name(const char *ref, char **ret, struct cm_error **err) {
        _cleanup_image_ref_ struct image_ref *r = NULL;
        int k = image_ref_parse(ref, &r, err);
        if (k < 0)
                return k;
        char *full = image_ref_format(r);
        if (!full)
                return -ENOMEM;
        *ret = full;
        return 0;
}

/* Does the stored name belong to repository repo ("registry/repository")? */
static bool name_in_repo(const char *name, const char *repo) {
        size_t n = strlen(repo);
        return strncmp(name, repo, n) == 0 && (name[n] == ':' || name[n] == '@');
}

static const char *name_tag(const char *name, const char *repo) {
        /* "repo:tag" or "repo:tag@digest" -> tag start; NULL for "repo@digest" */
        const char *p = name + strlen(repo);
        return *p == ':' ? p + 1 : NULL;
}

int image_lookup(struct image_store *s, const char *ref, char **ret_name, struct oci_descriptor *ret_target,
                 struct cm_error **err) {
        _cleanup_image_ref_ struct image_ref *r = NULL;
        int k = image_ref_parse(ref, &r, err);
        if (k < 0)
                return k;
        _cleanup_free_ char *full = image_ref_format(r);
        if (!full)
                return -ENOMEM;
        struct oci_descriptor d;
        k = image_store_resolve(s, full, &d);
        if (k >= 0) {
                if (ret_name)
                        *ret_name = TAKE_PTR(full);
                *ret_target = d;
                return 0;
        }
        if (k != -ENOENT)
                return cm_error_set(err, -k, "image %s: read the store: %s", ref, strerror(-k));
        if (r->digest) {
                /* name@digest: any name of that repository pointing at the digest; with a tag
                 * too (name:tag@digest) the tag must match. */
                _cleanup_free_ char *repo = image_ref_name(r);
                struct image_store_entry *list = NULL;
                size_t n = 0;
                if (!repo)
                        return -ENOMEM;
                k = image_store_list(s, &list, &n);
                if (k < 0)
                        return cm_error_set(err, -k, "image %s: read the store: %s", ref, strerror(-k));
                for (size_t i = 0; i < n; i++) {
                        struct image_store_entry *e = &list[i];
                        if (!name_in_repo(e->name, repo) || !streq(e->target.digest, r->digest))
                                continue;
                        const char *t = name_tag(e->name, repo);
                        if (r->tag && (!t || strncmp(t, r->tag, strlen(r->tag)) != 0 ||
                                       (t[strlen(r->tag)] != 0 && t[strlen(r->tag)] != '@')))
                                continue;
                        if (ret_name)
                                *ret_name = TAKE_PTR(e->name);
                        *ret_target = e->target;
                        memset(&e->target, 0, sizeof e->target);
                        image_store_entries_free(list, n);
                        return 0;
                }
                image_store_entries_free(list, n);
        }
        return cm_error_set(err, CM_ENOTFOUND, "image not found: %s", ref);
}

static bool mt_is_index(const char *mt) {
        return mt && (streq(mt, MT_OCI_INDEX) || streq(mt, MT_DOCKER_LIST));
}

static bool mt_is_manifest(const char *mt) {
        return mt && (streq(mt, MT_OCI_MANIFEST) || streq(mt, MT_DOCKER_MANIFEST));
}

/* The image manifest behind a name: the target itself, or the platform's entry of an index. */
struct platform_image {
        char manifest_digest[DIGEST_STR_MAX];
        char *manifest_raw, *config_raw;
        size_t manifest_len, config_len;
        struct oci_manifest *manifest;
        struct oci_image_config *config;
};

static void platform_image_done(struct platform_image *p) {
        free(p->manifest_raw);
        free(p->config_raw);
        oci_manifest_free(p->manifest);
        oci_config_free(p->config);
        memset(p, 0, sizeof(*p));
}

static int platform_image_load(struct image_store *s, const char *name, const struct oci_descriptor *target,
                               const char *platform, struct platform_image *ret, struct cm_error **err) {
        struct platform_image p = {0};
        int r = image_store_blob_read(s, target->digest, 0, &p.manifest_raw, &p.manifest_len, err);
        if (r < 0)
                goto fail;
        int is_index = mt_is_index(target->media_type);
        if (!is_index && !mt_is_manifest(target->media_type)) {
                r = oci_detect_kind(p.manifest_raw, p.manifest_len, target->media_type, &is_index, err);
                if (r < 0)
                        goto fail;
        }
        snprintf(p.manifest_digest, sizeof p.manifest_digest, "%s", target->digest);
        if (is_index) {
                struct oci_index *idx = NULL;
                const struct oci_descriptor *sel = NULL;
                r = oci_index_parse(p.manifest_raw, p.manifest_len, &idx, err);
                if (r >= 0)
                        r = oci_index_select(idx, platform, &sel, err);
                if (r >= 0) {
                        snprintf(p.manifest_digest, sizeof p.manifest_digest, "%s", sel->digest);
                        if (!image_store_blob_exists(s, sel->digest))
                                r = cm_error_set(err, CM_ENOTFOUND,
                                                 "the manifest for platform %s/%s (%s) is not in the store; pull it "
                                                 "with --platform",
                                                 sel->platform.os ? sel->platform.os : "?",
                                                 sel->platform.architecture ? sel->platform.architecture : "?",
                                                 sel->digest);
                }
                oci_index_free(idx);
                if (r < 0)
                        goto fail;
                free(p.manifest_raw);
                p.manifest_raw = NULL;
                r = image_store_blob_read(s, p.manifest_digest, 0, &p.manifest_raw, &p.manifest_len, err);
                if (r < 0)
                        goto fail;
        }
        r = oci_manifest_parse(p.manifest_raw, p.manifest_len, &p.manifest, err);
        if (r >= 0)
                r = image_store_blob_read(s, p.manifest->config.digest, 0, &p.config_raw, &p.config_len, err);
        if (r >= 0)
                r = oci_config_parse(p.config_raw, p.config_len, &p.config, err);
        if (r < 0)
                goto fail;
        if (platform && !is_index) {
                struct oci_platform want = {0};
                r = oci_platform_parse(platform, &want, err);
                if (r < 0)
                        goto fail;
                const struct oci_platform *have = &p.config->platform;
                bool ok = (!have->os || streq(want.os, have->os)) &&
                          (!have->architecture || streq(want.architecture, have->architecture));
                oci_platform_done(&want);
                if (!ok) {
                        r = cm_error_set(err, CM_ENOTFOUND, "image is for %s/%s, not %s",
                                         have->os ? have->os : "?", have->architecture ? have->architecture : "?",
                                         platform);
                        goto fail;
                }
        }
        *ret = p;
        return 0;
fail:
        cm_error_prefix(err, "image %s", name);
        platform_image_done(&p);
        return r;
}

static uint64_t platform_image_size(const struct platform_image *p) {
        uint64_t size = (uint64_t)p->manifest->config.size;
        for (size_t i = 0; i < p->manifest->n_layers; i++)
                size += (uint64_t)p->manifest->layers[i].size;
        return size;
}

static int entry_cmp(const void *a, const void *b) {
        const struct image_store_entry *x = a, *y = b;
        return strcmp(x->name, y->name);
}

int image_list(struct image_store *s, json_t **ret, struct cm_error **err) {
        struct image_store_entry *list = NULL;
        size_t n = 0;
        int r = image_store_list(s, &list, &n);
        if (r < 0)
                return cm_error_set(err, -r, "list images: %s", strerror(-r));
        qsort(list, n, sizeof(*list), entry_cmp);
        json_t *arr = json_array();
        if (!arr) {
                image_store_entries_free(list, n);
                return -ENOMEM;
        }
        for (size_t i = 0; i < n; i++) {
                struct image_store_entry *e = &list[i];
                _cleanup_image_ref_ struct image_ref *ref = NULL;
                _cleanup_free_ char *familiar = NULL;
                if (image_ref_parse(e->name, &ref, NULL) >= 0)
                        familiar = image_ref_familiar_name(ref);
                json_t *o = json_pack("{s:s, s:s?, s:s?, s:s}", "name", e->name, "repository", familiar ? familiar : e->name,
                                      "tag", ref ? ref->tag : NULL, "digest", e->target.digest);
                if (!o)
                        continue;
                /* A half-present image still lists, with what is unknown as null. */
                struct platform_image p;
                if (platform_image_load(s, e->name, &e->target, NULL, &p, NULL) >= 0) {
                        json_object_set_new(o, "size", json_integer((json_int_t)platform_image_size(&p)));
                        json_object_set_new(o, "created", p.config->created ? json_string(p.config->created) : json_null());
                        platform_image_done(&p);
                } else {
                        json_object_set_new(o, "size", json_null());
                        json_object_set_new(o, "created", json_null());
                }
                json_array_append_new(arr, o);
        }
        image_store_entries_free(list, n);
        *ret = arr;
        return 0;
}

int image_inspect(struct image_store *s, const char *ref, json_t **ret, struct cm_error **err) {
        _cleanup_free_ char *name = NULL;
        struct oci_descriptor target;
        int r = image_lookup(s, ref, &name, &target, err);
        if (r < 0)
                return r;
        struct platform_image p;
        r = platform_image_load(s, name, &target, NULL, &p, err);
        if (r < 0) {
                oci_descriptor_done(&target);
                return r;
        }
        json_t *manifest = json_loadb(p.manifest_raw, p.manifest_len, 0, NULL);
        json_t *config = json_loadb(p.config_raw, p.config_len, 0, NULL);
        json_t *platform = json_pack("{s:s?, s:s?}", "os", p.config->platform.os, "architecture",
                                     p.config->platform.architecture);
        if (platform && p.config->platform.variant)
                json_object_set_new(platform, "variant", json_string(p.config->platform.variant));
        json_t *layers = json_array();
        for (size_t i = 0; layers && i < p.manifest->n_layers; i++) {
                const struct oci_descriptor *l = &p.manifest->layers[i];
                const char *diff_id = i < p.config->n_diff_ids ? p.config->diff_ids[i] : NULL;
                /* Where the layer lies unpacked, when it does (machines use these directories). */
                _cleanup_free_ char *path = diff_id ? image_store_layer_path(s, diff_id) : NULL;
                if (path && access(path, F_OK) < 0) {
                        free(path);
                        path = NULL;
                }
                json_array_append_new(layers, json_pack("{s:s, s:s, s:I, s:s?, s:s?}", "digest", l->digest,
                                                        "mediaType", l->media_type, "size", (json_int_t)l->size,
                                                        "diffId", diff_id, "path", path));
        }
        json_t *o = json_pack("{s:s, s:s, s:s, s:s, s:o, s:o, s:I, s:s?, s:o, s:o}", "name", name, "digest",
                              target.digest, "manifestDigest", p.manifest_digest, "mediaType", target.media_type,
                              "manifest", manifest ? manifest : json_null(), "config", config ? config : json_null(),
                              "size", (json_int_t)platform_image_size(&p), "created", p.config->created, "platform",
                              platform ? platform : json_null(), "layers", layers ? layers : json_null());
        platform_image_done(&p);
        oci_descriptor_done(&target);
        if (!o)
                return -ENOMEM;
        *ret = o;
        return 0;
}

int image_tag(struct image_store *s, const char *src, const char *dst, struct cm_error **err) {
        struct oci_descriptor target;
        int r = image_lookup(s, src, NULL, &target, err);
        if (r < 0)
                return r;
        _cleanup_image_ref_ struct image_ref *d = NULL;
        _cleanup_free_ char *dst_name = NULL;
        r = image_ref_parse(dst, &d, err);
        if (r >= 0 && d->digest)
                r = cm_error_set(err, CM_EINVALID, "tag %s: a new name cannot carry a digest", dst);
        if (r >= 0 && !(dst_name = image_ref_format(d)))
                r = -ENOMEM;
        if (r >= 0)
                r = image_store_tag(s, dst_name, &target, err);
        oci_descriptor_done(&target);
        return r;
}

int image_remove(struct image_store *s, const char *ref, struct cm_error **err) {
        _cleanup_free_ char *name = NULL;
        struct oci_descriptor target;
        int r = image_lookup(s, ref, &name, &target, err);
        if (r < 0)
                return r;
        oci_descriptor_done(&target);
        r = image_store_untag(s, name, err);
        if (r == -CM_ENOTFOUND) {
                /* removed concurrently: report it under the name the user gave */
                if (err && *err) {
                        cm_error_free(*err);
                        *err = NULL;
                }
                return cm_error_set(err, CM_ENOTFOUND, "image not found: %s", ref);
        }
        if (r < 0)
                return r;
        r = image_store_gc(s, NULL, NULL, err);
        if (r < 0)
                cm_error_prefix(err, "remove %s", name);
        return r;
}

void image_resolved_free(struct image_resolved *r) {
        if (!r)
                return;
        free(r->name);
        oci_manifest_free(r->manifest);
        oci_config_free(r->config);
        strv_free(r->layer_dirs);
        free(r);
}

int image_resolve(struct image_store *s, const char *ref, const char *platform, struct image_resolved **ret,
                  struct cm_error **err) {
        _cleanup_free_ char *name = NULL;
        struct oci_descriptor target;
        int r = image_lookup(s, ref, &name, &target, err);
        if (r < 0)
                return r;
        struct platform_image p;
        r = platform_image_load(s, name, &target, platform, &p, err);
        oci_descriptor_done(&target);
        if (r < 0)
                return r;
        struct image_resolved *res = calloc(1, sizeof(*res));
        if (!res) {
                platform_image_done(&p);
                return -ENOMEM;
        }
        res->name = TAKE_PTR(name);
        snprintf(res->manifest_digest, sizeof res->manifest_digest, "%s", p.manifest_digest);
        res->manifest = TAKE_PTR(p.manifest);
        res->config = TAKE_PTR(p.config);
        platform_image_done(&p);
        if (res->config->n_diff_ids != res->manifest->n_layers) {
                r = cm_error_set(err, CM_EINVALID, "image %s: %zu layers but %zu diff_ids in its config", res->name,
                                 res->manifest->n_layers, res->config->n_diff_ids);
                goto fail;
        }
        res->layer_dirs = calloc(res->manifest->n_layers + 1, sizeof(char *));
        if (!res->layer_dirs) {
                r = -ENOMEM;
                goto fail;
        }
        for (size_t i = 0; i < res->manifest->n_layers; i++) {
                const char *diff_id = res->config->diff_ids[i];
                r = image_store_layer_ensure(s, res->manifest->layers[i].digest, diff_id, err);
                if (r < 0) {
                        cm_error_prefix(err, "image %s", res->name);
                        goto fail;
                }
                res->layer_dirs[i] = image_store_layer_path(s, diff_id);
                if (!res->layer_dirs[i]) {
                        r = -ENOMEM;
                        goto fail;
                }
        }
        *ret = res;
        return 0;
fail:
        image_resolved_free(res);
        return r;
}
