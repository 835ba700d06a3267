/* docker-archive / oci-archive load, oci-archive save, rootfs import.
 *
 * Archive member names are untrusted: they are only ever keys used to find which blob a
 * manifest means. Every member is streamed into the content store, where it is addressed by
 * the digest of its content; nothing is written to a path taken from the archive. */
#include <archive.h>
#include <archive_entry.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "image/image.h"
#include "image/manifest.h"
#include "image/ref.h"
#include "util/digest.h"
#include "util/json.h"
#include "util/macro.h"
#include "util/strv.h"

#define ANNOTATION_REF_NAME "org.opencontainers.image.ref.name"
#define ANNOTATION_CONTAINERD_NAME "io.containerd.image.name"
#define METADATA_MAX (4u << 20)
#define MAX_LINK_DEPTH 16

static void archive_freep(struct archive **a) {
        if (*a)
                archive_read_free(*a);
}
#define _cleanup_archive_read_ _cleanup_(archive_freep)

/* ---- load ---- */

struct member {
        char *name;             /* normalized: no leading "./" or "/", no "." or ".." components */
        char *link;             /* symlink or hardlink target, normalized; NULL otherwise */
        char digest[DIGEST_STR_MAX]; /* regular files stored as blobs */
        int64_t size;
        char *data;             /* metadata files kept in memory */
        size_t len;
        unsigned char magic[4];
        size_t magic_len;
};

struct loader {
        struct image_store *s;
        struct member *m;
        size_t n;
};

static void loader_done(struct loader *l) {
        for (size_t i = 0; i < l->n; i++) {
                free(l->m[i].name);
                free(l->m[i].link);
                free(l->m[i].data);
        }
        free(l->m);
}

/* Lexical normalization of an archive path, relative to base (a directory inside the
 * archive, or NULL). Returns NULL when it would leave the archive root. */
static char *archive_path_join(const char *base, const char *path) {
        _cleanup_free_ char *whole = NULL;
        if (base && path[0] != '/') {
                if (asprintf(&whole, "%s/%s", base, path) < 0)
                        return NULL;
        } else if (!(whole = strdup(path)))
                return NULL;
        char *out = malloc(strlen(whole) + 1);
        if (!out)
                return NULL;
        size_t len = 0;
        char *save = NULL;
        for (char *c = strtok_r(whole, "/", &save); c; c = strtok_r(NULL, "/", &save)) {
                if (streq(c, "."))
                        continue;
                if (streq(c, "..")) {
                        if (len == 0) {
                                free(out);
                                return NULL;
                        }
                        while (len > 0 && out[len - 1] != '/')
                                len--;
                        if (len > 0)
                                len--; /* the slash */
                        continue;
                }
                if (len > 0)
                        out[len++] = '/';
                size_t cl = strlen(c);
                memcpy(out + len, c, cl);
                len += cl;
        }
        out[len] = 0;
        return out;
}

static const struct member *member_find(const struct loader *l, const char *name) {
        for (int depth = 0; name && depth < MAX_LINK_DEPTH; depth++) {
                const struct member *hit = NULL;
                /* the last one wins, as when a tar is extracted */
                for (size_t i = l->n; i > 0; i--)
                        if (streq(l->m[i - 1].name, name)) {
                                hit = &l->m[i - 1];
                                break;
                        }
                if (!hit || !hit->link)
                        return hit;
                name = hit->link;
        }
        return NULL;
}

static bool is_metadata_name(const char *name) {
        return streq(name, "manifest.json") || streq(name, "index.json") || streq(name, "oci-layout") ||
               streq(name, "repositories");
}

/* Files of the legacy docker-archive layout that no manifest refers to. */
static bool is_ignored_name(const char *name) {
        const char *base = strrchr(name, '/');
        return base && (streq(base + 1, "json") || streq(base + 1, "VERSION"));
}

static bool is_hex64(const char *s, size_t n) {
        if (n != 64)
                return false;
        for (size_t i = 0; i < n; i++)
                if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
                        return false;
        return true;
}

/* The digest a member's name claims, if it claims one: blobs/sha256/<hex> or <hex>.json. */
static bool name_claims_digest(const char *name, char out[DIGEST_STR_MAX]) {
        const char *base = strrchr(name, '/');
        base = base ? base + 1 : name;
        size_t n = strlen(base);
        if (strncmp(name, "blobs/sha256/", 13) == 0 && streq(base, name + 13) && is_hex64(base, n)) {
                snprintf(out, DIGEST_STR_MAX, "sha256:%s", base);
                return true;
        }
        if (n == 64 + 5 && streq(base + 64, ".json") && is_hex64(base, 64)) {
                snprintf(out, DIGEST_STR_MAX, "sha256:%.64s", base);
                return true;
        }
        return false;
}

static int read_member_to_blob(struct loader *l, struct archive *a, struct member *m, struct cm_error **err) {
        struct blob_writer *w = NULL;
        int r = image_store_blob_begin(l->s, NULL, -1, &w, err);
        if (r < 0)
                return r;
        char buf[65536];
        for (;;) {
                la_ssize_t n = archive_read_data(a, buf, sizeof buf);
                if (n < 0) {
                        blob_writer_abort(w);
                        return cm_error_set(err, CM_EINVALID, "read %s: %s", m->name, archive_error_string(a));
                }
                if (n == 0)
                        break;
                if (m->magic_len < sizeof m->magic) {
                        size_t take = sizeof m->magic - m->magic_len;
                        if (take > (size_t)n)
                                take = (size_t)n;
                        memcpy(m->magic + m->magic_len, buf, take);
                        m->magic_len += take;
                }
                r = blob_writer_write(w, buf, (size_t)n, err);
                if (r < 0) {
                        blob_writer_abort(w);
                        return r;
                }
        }
        m->size = (int64_t)blob_writer_size(w);
        r = blob_writer_commit(w, m->digest, err);
        if (r < 0)
                return r;
        char claimed[DIGEST_STR_MAX];
        if (name_claims_digest(m->name, claimed) && !streq(claimed, m->digest))
                return cm_error_set(err, CM_EDIGEST, "blob %s: digest mismatch (content is %s)", claimed, m->digest);
        return 0;
}

static int read_member_to_memory(struct archive *a, struct member *m, struct cm_error **err) {
        size_t cap = 4096, len = 0;
        char *buf = malloc(cap + 1);
        if (!buf)
                return -ENOMEM;
        for (;;) {
                if (len == cap) {
                        if (cap >= METADATA_MAX) {
                                free(buf);
                                return cm_error_set(err, CM_EINVALID, "%s: larger than %u bytes", m->name,
                                                    METADATA_MAX);
                        }
                        char *nb = realloc(buf, cap * 2 + 1);
                        if (!nb) {
                                free(buf);
                                return -ENOMEM;
                        }
                        buf = nb;
                        cap *= 2;
                }
                la_ssize_t n = archive_read_data(a, buf + len, cap - len);
                if (n < 0) {
                        free(buf);
                        return cm_error_set(err, CM_EINVALID, "read %s: %s", m->name, archive_error_string(a));
                }
                if (n == 0)
                        break;
                len += (size_t)n;
        }
        buf[len] = 0;
        m->data = buf;
        m->len = len;
        return 0;
}

static int loader_read(struct loader *l, int fd, struct cm_error **err) {
        _cleanup_archive_read_ struct archive *a = archive_read_new();
        if (!a)
                return -ENOMEM;
        archive_read_support_filter_all(a);
        archive_read_support_format_tar(a);
        if (archive_read_open_fd(a, fd, 65536) != ARCHIVE_OK)
                return cm_error_set(err, CM_EINVALID, "not a tar archive: %s", archive_error_string(a));
        struct archive_entry *e;
        int ar;
        while ((ar = archive_read_next_header(a, &e)) == ARCHIVE_OK || ar == ARCHIVE_WARN) {
                const char *path = archive_entry_pathname(e);
                _cleanup_free_ char *name = path ? archive_path_join(NULL, path) : NULL;
                if (!name || !*name)
                        continue; /* outside the root or the root itself: nothing we look up */
                unsigned type = archive_entry_filetype(e);
                const char *hardlink = archive_entry_hardlink(e);
                if (type != AE_IFREG && type != AE_IFLNK && !hardlink)
                        continue;
                if (is_ignored_name(name))
                        continue;
                struct member *nm = realloc(l->m, (l->n + 1) * sizeof(*nm));
                if (!nm)
                        return -ENOMEM;
                l->m = nm;
                struct member *m = &l->m[l->n];
                memset(m, 0, sizeof(*m));
                m->name = TAKE_PTR(name);
                l->n++;
                if (hardlink)
                        m->link = archive_path_join(NULL, hardlink);
                else if (type == AE_IFLNK) {
                        const char *target = archive_entry_symlink(e);
                        char *dir = strdup(m->name);
                        if (!dir)
                                return -ENOMEM;
                        char *slash = strrchr(dir, '/');
                        if (slash)
                                *slash = 0;
                        m->link = target ? archive_path_join(slash ? dir : NULL, target) : NULL;
                        free(dir);
                } else {
                        int r = is_metadata_name(m->name) ? read_member_to_memory(a, m, err)
                                                           : read_member_to_blob(l, a, m, err);
                        if (r < 0)
                                return r;
                }
        }
        if (ar != ARCHIVE_EOF)
                return cm_error_set(err, CM_EINVALID, "%s", archive_error_string(a) ? archive_error_string(a)
                                                                                   : "truncated archive");
        return 0;
}

/* A blob a manifest refers to: stored either from this archive or before. */
static int check_blob(struct loader *l, const char *what, const char *digest, int64_t size, struct cm_error **err) {
        if (!digest_is_valid(digest))
                return cm_error_set(err, CM_EINVALID, "%s: invalid digest", what);
        _cleanup_close_ int fd = image_store_blob_open(l->s, digest);
        if (fd < 0)
                return cm_error_set(err, CM_ENOTFOUND, "%s %s: missing from the archive", what, digest);
        struct stat st;
        if (fstat(fd, &st) < 0)
                return -errno;
        if (size >= 0 && st.st_size != size)
                return cm_error_set(err, CM_EDIGEST, "%s %s: size %lld, but the manifest says %lld", what, digest,
                                    (long long)st.st_size, (long long)size);
        return 0;
}

static int check_manifest(struct loader *l, const char *digest, int64_t size, struct cm_error **err) {
        int r = check_blob(l, "manifest", digest, size, err);
        if (r < 0)
                return r;
        _cleanup_free_ char *data = NULL;
        size_t len;
        r = image_store_blob_read(l->s, digest, 0, &data, &len, err);
        if (r < 0)
                return r;
        struct oci_manifest *m = NULL;
        r = oci_manifest_parse(data, len, &m, err);
        if (r < 0)
                return r;
        r = check_blob(l, "config", m->config.digest, m->config.size, err);
        for (size_t i = 0; r >= 0 && i < m->n_layers; i++)
                r = check_blob(l, "layer", m->layers[i].digest, m->layers[i].size, err);
        oci_manifest_free(m);
        return r;
}

/* The target of a name must be complete: a manifest with its config and layers, or an
 * index with at least one such manifest. */
static int check_target(struct loader *l, const struct oci_descriptor *d, struct cm_error **err) {
        int r = check_blob(l, "manifest", d->digest, d->size, err);
        if (r < 0)
                return r;
        _cleanup_free_ char *data = NULL;
        size_t len;
        r = image_store_blob_read(l->s, d->digest, 0, &data, &len, err);
        if (r < 0)
                return r;
        int is_index = 0;
        r = oci_detect_kind(data, len, d->media_type, &is_index, err);
        if (r < 0)
                return r;
        if (!is_index)
                return check_manifest(l, d->digest, d->size, err);
        struct oci_index *idx = NULL;
        r = oci_index_parse(data, len, &idx, err);
        if (r < 0)
                return r;
        size_t complete = 0;
        for (size_t i = 0; r >= 0 && i < idx->n_manifests; i++) {
                if (!image_store_blob_exists(l->s, idx->manifests[i].digest))
                        continue; /* other platforms may be left out */
                r = check_manifest(l, idx->manifests[i].digest, idx->manifests[i].size, err);
                complete++;
        }
        oci_index_free(idx);
        if (r >= 0 && complete == 0)
                r = cm_error_set(err, CM_ENOTFOUND, "index %s: none of its manifests is in the archive", d->digest);
        return r;
}

static int tag_loaded(struct loader *l, const char *raw_name, const struct oci_descriptor *d, json_t *names,
                      struct cm_error **err) {
        _cleanup_free_ char *name = NULL;
        int r = image_normalize_name(raw_name, &name, err);
        if (r < 0)
                return r;
        _cleanup_image_ref_ struct image_ref *ref = NULL;
        if (image_ref_parse(name, &ref, NULL) >= 0 && ref->digest && !streq(ref->digest, d->digest))
                return cm_error_set(err, CM_EDIGEST, "%s: names digest %s but refers to %s", raw_name, ref->digest,
                                    d->digest);
        r = image_store_tag(l->s, name, d, err);
        if (r < 0)
                return r;
        for (size_t i = 0; i < json_array_size(names); i++)
                if (streq(json_string_value(json_array_get(names, i)), name))
                        return 0;
        return json_array_append_new(names, json_string(name)) < 0 ? -ENOMEM : 0;
}

static int load_oci(struct loader *l, const struct member *index, json_t *names, struct cm_error **err) {
        _cleanup_free_ char *perr = NULL;
        _cleanup_json_ json_t *j = json_parse_buf(index->data, index->len, &perr);
        if (!json_is_object(j) || !json_is_array(json_object_get(j, "manifests")))
                return cm_error_set(err, CM_EINVALID, "index.json: %s", perr ? perr : "not an OCI index");
        json_t *v;
        size_t i;
        json_array_foreach(json_object_get(j, "manifests"), i, v) {
                json_t *ann = json_object_get(v, "annotations");
                /* containerd (and docker save) keep the full name there; ref.name is often a bare tag */
                const char *raw_name = json_get_str(ann, ANNOTATION_CONTAINERD_NAME);
                if (!raw_name)
                        raw_name = json_get_str(ann, ANNOTATION_REF_NAME);
                if (!raw_name)
                        continue;
                json_t *sz = json_object_get(v, "size");
                struct oci_descriptor d = {
                        .media_type = (char *)json_get_str(v, "mediaType"),
                        .digest = (char *)json_get_str(v, "digest"),
                        .size = json_is_integer(sz) ? (int64_t)json_integer_value(sz) : -1,
                };
                if (!d.media_type || !digest_is_valid(d.digest) || d.size < 0)
                        return cm_error_set(err, CM_EINVALID, "index.json: entry %s: invalid descriptor", raw_name);
                int r = check_target(l, &d, err);
                if (r >= 0)
                        r = tag_loaded(l, raw_name, &d, names, err);
                if (r < 0) {
                        cm_error_prefix(err, "image %s", raw_name);
                        return r;
                }
        }
        return 0;
}

static int detect_layer_type(const struct member *m, const char **ret) {
        if (m->magic_len >= 2 && m->magic[0] == 0x1f && m->magic[1] == 0x8b)
                *ret = MT_OCI_LAYER_GZIP;
        else if (m->magic_len >= 4 && m->magic[0] == 0x28 && m->magic[1] == 0xb5 && m->magic[2] == 0x2f &&
                 m->magic[3] == 0xfd)
                *ret = MT_OCI_LAYER_ZSTD;
        else
                *ret = MT_OCI_LAYER;
        return 0;
}

static int load_docker_image(struct loader *l, json_t *item, json_t *names, size_t *n_named,
                             struct cm_error **err) {
        const char *config_name = json_get_str(item, "Config");
        json_t *layers = json_object_get(item, "Layers"), *tags = json_object_get(item, "RepoTags");
        if (!config_name || !json_is_array(layers))
                return cm_error_set(err, CM_EINVALID, "manifest.json: an entry without Config or Layers");
        _cleanup_free_ char *config_key = archive_path_join(NULL, config_name);
        const struct member *cm = config_key ? member_find(l, config_key) : NULL;
        if (!cm || !cm->digest[0])
                return cm_error_set(err, CM_ENOTFOUND, "config %s: missing from the archive", config_name);
        _cleanup_free_ char *config_raw = NULL;
        size_t config_len;
        int r = image_store_blob_read(l->s, cm->digest, 0, &config_raw, &config_len, err);
        if (r < 0)
                return r;
        struct oci_image_config *config = NULL;
        r = oci_config_parse(config_raw, config_len, &config, err);
        if (r < 0) {
                cm_error_prefix(err, "config %s", config_name);
                return r;
        }
        size_t n_layers = json_array_size(layers);
        if (config->n_diff_ids != n_layers) {
                size_t nd = config->n_diff_ids;
                oci_config_free(config);
                return cm_error_set(err, CM_EINVALID, "config %s: %zu diff_ids for %zu layers", config_name, nd,
                                    n_layers);
        }
        json_t *manifest = json_pack("{s:i, s:s, s:{s:s, s:s, s:I}, s:[]}", "schemaVersion", 2, "mediaType",
                                     MT_OCI_MANIFEST, "config", "mediaType", MT_OCI_CONFIG, "digest", cm->digest,
                                     "size", (json_int_t)cm->size, "layers");
        if (!manifest) {
                oci_config_free(config);
                return -ENOMEM;
        }
        for (size_t i = 0; r >= 0 && i < n_layers; i++) {
                const char *lname = json_string_value(json_array_get(layers, i));
                _cleanup_free_ char *key = lname ? archive_path_join(NULL, lname) : NULL;
                const struct member *lm = key ? member_find(l, key) : NULL;
                const char *mt;
                if (!lm || !lm->digest[0]) {
                        r = cm_error_set(err, CM_ENOTFOUND, "layer %s: missing from the archive", lname ? lname : "?");
                        break;
                }
                detect_layer_type(lm, &mt);
                /* An uncompressed layer is its own diff: check it now rather than at unpack. */
                if (streq(mt, MT_OCI_LAYER) && !streq(lm->digest, config->diff_ids[i])) {
                        r = cm_error_set(err, CM_EDIGEST, "layer %s: diff_id mismatch (config says %s, content is %s)",
                                         lname, config->diff_ids[i], lm->digest);
                        break;
                }
                json_array_append_new(json_object_get(manifest, "layers"),
                                      json_pack("{s:s, s:s, s:I}", "mediaType", mt, "digest", lm->digest, "size",
                                                (json_int_t)lm->size));
        }
        oci_config_free(config);
        _cleanup_free_ char *text = r >= 0 ? json_dumps(manifest, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
        json_decref(manifest);
        if (r < 0)
                return r;
        if (!text)
                return -ENOMEM;
        char digest[DIGEST_STR_MAX];
        r = image_store_blob_put(l->s, text, strlen(text), digest, err);
        if (r < 0)
                return r;
        struct oci_descriptor d = {.media_type = (char *)MT_OCI_MANIFEST, .digest = digest,
                                   .size = (int64_t)strlen(text)};
        json_t *t;
        size_t i;
        json_array_foreach(tags, i, t) {
                if (!json_is_string(t))
                        continue;
                r = tag_loaded(l, json_string_value(t), &d, names, err);
                if (r < 0)
                        return r;
                (*n_named)++;
        }
        return 0;
}

static int load_docker(struct loader *l, const struct member *mf, json_t *names, struct cm_error **err) {
        _cleanup_free_ char *perr = NULL;
        _cleanup_json_ json_t *j = json_parse_buf(mf->data, mf->len, &perr);
        if (!json_is_array(j))
                return cm_error_set(err, CM_EINVALID, "manifest.json: %s", perr ? perr : "not an array");
        size_t n_named = 0;
        json_t *item;
        size_t i;
        json_array_foreach(j, i, item) {
                int r = load_docker_image(l, item, names, &n_named, err);
                if (r < 0)
                        return r;
        }
        return 0;
}

int image_load(struct image_store *s, int fd, json_t **ret_names, struct cm_error **err) {
        struct loader l = {.s = s};
        json_t *names = json_array();
        if (!names)
                return -ENOMEM;
        int r = loader_read(&l, fd, err);
        if (r >= 0) {
                const struct member *layout = member_find(&l, "oci-layout"), *index = member_find(&l, "index.json"),
                                    *mf = member_find(&l, "manifest.json");
                if (layout && index && index->data)
                        r = load_oci(&l, index, names, err);
                if (r >= 0 && json_array_size(names) == 0 && mf && mf->data)
                        r = load_docker(&l, mf, names, err);
                else if (r >= 0 && !(layout && index) && !mf)
                        r = cm_error_set(err, CM_EINVALID,
                                         "neither a docker-archive (manifest.json) nor an oci-archive "
                                         "(oci-layout, index.json)");
                if (r >= 0 && json_array_size(names) == 0)
                        r = cm_error_set(err, CM_EINVALID,
                                         "the archive names no image (no RepoTags in manifest.json, no "
                                         "org.opencontainers.image.ref.name in index.json)");
        }
        loader_done(&l);
        /* Every loaded image is unpacked now, so that a layer failing the safety checks is
         * refused here rather than at machine creation; on failure no loaded name remains. */
        for (size_t i = 0; r >= 0 && i < json_array_size(names); i++) {
                struct image_resolved *res = NULL;
                r = image_resolve(s, json_string_value(json_array_get(names, i)), NULL, &res, err);
                image_resolved_free(res);
        }
        if (r < 0)
                for (size_t i = 0; i < json_array_size(names); i++)
                        image_store_untag(s, json_string_value(json_array_get(names, i)), NULL);
        if (r < 0) {
                cm_error_prefix(err, "load");
                json_decref(names);
                return r;
        }
        *ret_names = names;
        return 0;
}

/* ---- save ---- */

static void archive_write_freep(struct archive **a) {
        if (*a)
                archive_write_free(*a);
}

static int write_member(struct archive *a, const char *name, unsigned type, int64_t size) {
        struct archive_entry *e = archive_entry_new();
        if (!e)
                return -ENOMEM;
        archive_entry_set_pathname(e, name);
        archive_entry_set_filetype(e, type);
        archive_entry_set_perm(e, type == AE_IFDIR ? 0755 : 0644);
        archive_entry_set_mtime(e, 0, 0);
        if (type == AE_IFREG)
                archive_entry_set_size(e, size);
        int r = archive_write_header(a, e);
        archive_entry_free(e);
        return r == ARCHIVE_OK ? 0 : -EIO;
}

static int write_data(struct archive *a, const void *data, size_t len) {
        const char *p = data;
        while (len > 0) {
                la_ssize_t n = archive_write_data(a, p, len);
                if (n <= 0)
                        return -EIO;
                p += n;
                len -= (size_t)n;
        }
        return 0;
}

static int write_file(struct archive *a, const char *name, const char *data, size_t len) {
        int r = write_member(a, name, AE_IFREG, (int64_t)len);
        return r < 0 ? r : write_data(a, data, len);
}

static int write_blob(struct image_store *s, struct archive *a, const char *digest, struct cm_error **err) {
        _cleanup_close_ int fd = image_store_blob_open(s, digest);
        struct stat st;
        if (fd < 0 || fstat(fd, &st) < 0)
                return cm_error_set(err, CM_ENOTFOUND, "blob %s: not in the store", digest);
        char name[96];
        snprintf(name, sizeof name, "blobs/sha256/%s", digest_hex(digest));
        if (write_member(a, name, AE_IFREG, st.st_size) < 0)
                return cm_error_set(err, EIO, "write %s: %s", name, archive_error_string(a));
        struct digest_ctx *dc = digest_new();
        if (!dc)
                return -ENOMEM;
        char buf[65536];
        int64_t total = 0;
        for (;;) {
                ssize_t n = read(fd, buf, sizeof buf);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0) {
                        digest_free(dc);
                        return cm_error_set(err, errno, "read blob %s: %s", digest, strerror(errno));
                }
                if (n == 0)
                        break;
                digest_update(dc, buf, (size_t)n);
                total += n;
                if (total > st.st_size || write_data(a, buf, (size_t)n) < 0) {
                        digest_free(dc);
                        return cm_error_set(err, EIO, "write %s: %s", name,
                                            archive_error_string(a) ? archive_error_string(a) : "blob changed");
                }
        }
        char actual[DIGEST_STR_MAX];
        digest_final(dc, actual);
        if (total != st.st_size || !streq(actual, digest))
                return cm_error_set(err, CM_EDIGEST, "blob %s: digest mismatch in the store (content is %s)", digest,
                                    actual);
        return 0;
}

static int collect_blob(const char *digest, const char *media_type, int64_t size, void *ud) {
        (void)media_type;
        (void)size;
        json_t *set = ud;
        if (json_object_get(set, digest))
                return 0;
        return json_object_set_new(set, digest, json_true()) < 0 ? -ENOMEM : 0;
}

int image_save(struct image_store *s, const char *const *refs, size_t n_refs, int out_fd, struct cm_error **err) {
        if (n_refs == 0)
                return cm_error_set(err, CM_EUSAGE, "save: no image given");
        _cleanup_json_ json_t *index = json_pack("{s:i, s:s, s:[]}", "schemaVersion", 2, "mediaType", MT_OCI_INDEX,
                                                 "manifests");
        /* insertion-ordered set of the blobs to write */
        _cleanup_json_ json_t *blobs = json_object();
        if (!index || !blobs)
                return -ENOMEM;
        int r = 0;
        for (size_t i = 0; i < n_refs; i++) {
                _cleanup_free_ char *name = NULL;
                struct oci_descriptor d;
                r = image_lookup(s, refs[i], &name, &d, err);
                if (r < 0)
                        return r;
                json_t *e = json_pack("{s:s, s:s, s:I, s:{s:s, s:s}}", "mediaType", d.media_type, "digest", d.digest,
                                      "size", (json_int_t)d.size, "annotations", ANNOTATION_REF_NAME, name,
                                      ANNOTATION_CONTAINERD_NAME, name);
                if (e && d.platform.os && d.platform.architecture)
                        json_object_set_new(e, "platform", json_pack("{s:s, s:s}", "architecture",
                                                                     d.platform.architecture, "os", d.platform.os));
                r = e ? json_array_append_new(json_object_get(index, "manifests"), e) : -ENOMEM;
                if (r >= 0)
                        r = image_store_walk(s, &d, collect_blob, blobs, err);
                oci_descriptor_done(&d);
                if (r < 0)
                        return r;
        }
        _cleanup_free_ char *index_text = json_dumps(index, JSON_COMPACT | JSON_PRESERVE_ORDER);
        if (!index_text)
                return -ENOMEM;
        _cleanup_(archive_write_freep) struct archive *a = archive_write_new();
        if (!a)
                return -ENOMEM;
        if (archive_write_set_format_pax_restricted(a) != ARCHIVE_OK ||
            archive_write_set_bytes_in_last_block(a, 1) != ARCHIVE_OK || archive_write_open_fd(a, out_fd) != ARCHIVE_OK)
                return cm_error_set(err, EIO, "save: %s", archive_error_string(a));
        static const char layout[] = "{\"imageLayoutVersion\":\"1.0.0\"}";
        if (write_file(a, "oci-layout", layout, strlen(layout)) < 0 ||
            write_file(a, "index.json", index_text, strlen(index_text)) < 0 ||
            write_member(a, "blobs", AE_IFDIR, 0) < 0 || write_member(a, "blobs/sha256", AE_IFDIR, 0) < 0)
                return cm_error_set(err, EIO, "save: %s", archive_error_string(a));
        const char *digest;
        json_t *v;
        json_object_foreach(blobs, digest, v) {
                r = write_blob(s, a, digest, err);
                if (r < 0) {
                        cm_error_prefix(err, "save");
                        return r;
                }
        }
        if (archive_write_close(a) != ARCHIVE_OK)
                return cm_error_set(err, EIO, "save: %s", archive_error_string(a));
        return 0;
}

/* ---- import ---- */

struct import_sink {
        struct blob_writer *w;
        struct cm_error **err;
        int error;
};

static la_ssize_t import_sink_write(struct archive *a, void *ud, const void *buf, size_t len) {
        (void)a;
        struct import_sink *k = ud;
        if (!k->w)
                return (la_ssize_t)len;
        int r = blob_writer_write(k->w, buf, len, k->err);
        if (r < 0) {
                k->error = r;
                return -1;
        }
        return (la_ssize_t)len;
}

/* The first 512 bytes of a tar stream: a header whose checksum adds up. */
static bool looks_like_tar(const unsigned char *h, size_t len) {
        if (len < 512)
                return false;
        unsigned long sum = 0, want = 0;
        for (size_t i = 0; i < 512; i++)
                sum += (i >= 148 && i < 156) ? ' ' : h[i];
        size_t i = 148;
        while (i < 156 && h[i] == ' ')
                i++;
        bool any = false;
        for (; i < 156 && h[i] >= '0' && h[i] <= '7'; i++) {
                want = want * 8 + (unsigned long)(h[i] - '0');
                any = true;
        }
        return any && sum == want;
}

static void now_iso(char buf[32]) {
        time_t t = time(NULL);
        struct tm tm;
        gmtime_r(&t, &tm);
        strftime(buf, 32, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static int import_layer(struct image_store *s, int fd, char diff_id[DIGEST_STR_MAX], char blob_digest[DIGEST_STR_MAX],
                        int64_t *ret_size, struct cm_error **err) {
        _cleanup_archive_read_ struct archive *in = archive_read_new();
        _cleanup_(archive_write_freep) struct archive *out = archive_write_new();
        if (!in || !out)
                return -ENOMEM;
        archive_read_support_filter_all(in);
        archive_read_support_format_raw(in);
        struct archive_entry *e;
        if (archive_read_open_fd(in, fd, 65536) != ARCHIVE_OK || archive_read_next_header(in, &e) != ARCHIVE_OK)
                return cm_error_set(err, CM_EINVALID, "import: cannot read the input: %s",
                                    archive_error_string(in) ? archive_error_string(in) : "empty");
        struct import_sink sink = {.err = err};
        int r = image_store_blob_begin(s, NULL, -1, &sink.w, err);
        if (r < 0)
                return r;
        struct digest_ctx *dc = digest_new();
        if (!dc) {
                blob_writer_abort(sink.w);
                return -ENOMEM;
        }
        struct archive_entry *oe = archive_entry_new();
        if (!oe || archive_write_add_filter_gzip(out) != ARCHIVE_OK || archive_write_set_format_raw(out) != ARCHIVE_OK ||
            archive_write_set_bytes_per_block(out, 0) != ARCHIVE_OK ||
            archive_write_open(out, &sink, NULL, import_sink_write, NULL) != ARCHIVE_OK) {
                r = cm_error_set(err, CM_EINTERNAL, "import: gzip: %s", archive_error_string(out));
                goto fail;
        }
        archive_entry_set_pathname(oe, "layer.tar");
        archive_entry_set_filetype(oe, AE_IFREG);
        archive_entry_set_perm(oe, 0644);
        if (archive_write_header(out, oe) != ARCHIVE_OK) {
                r = cm_error_set(err, CM_EINTERNAL, "import: gzip: %s", archive_error_string(out));
                goto fail;
        }
        unsigned char head[512];
        size_t head_len = 0;
        uint64_t total = 0;
        char buf[65536];
        for (;;) {
                la_ssize_t n = archive_read_data(in, buf, sizeof buf);
                if (n < 0) {
                        r = cm_error_set(err, CM_EINVALID, "import: read: %s", archive_error_string(in));
                        goto fail;
                }
                if (n == 0)
                        break;
                if (head_len < sizeof head) {
                        size_t take = sizeof head - head_len < (size_t)n ? sizeof head - head_len : (size_t)n;
                        memcpy(head + head_len, buf, take);
                        head_len += take;
                        if (head_len == sizeof head && !looks_like_tar(head, head_len)) {
                                r = cm_error_set(err, CM_EINVALID, "import: the input is not a tar archive");
                                goto fail;
                        }
                }
                digest_update(dc, buf, (size_t)n);
                total += (uint64_t)n;
                if (write_data(out, buf, (size_t)n) < 0) {
                        r = sink.error < 0 ? sink.error
                                           : cm_error_set(err, EIO, "import: gzip: %s", archive_error_string(out));
                        goto fail;
                }
        }
        if (total < 512 || !looks_like_tar(head, head_len)) {
                r = cm_error_set(err, CM_EINVALID, "import: the input is not a tar archive");
                goto fail;
        }
        if (archive_write_close(out) != ARCHIVE_OK) {
                r = sink.error < 0 ? sink.error : cm_error_set(err, EIO, "import: gzip: %s", archive_error_string(out));
                goto fail;
        }
        archive_entry_free(oe);
        digest_final(dc, diff_id);
        *ret_size = (int64_t)blob_writer_size(sink.w);
        return blob_writer_commit(sink.w, blob_digest, err);
fail:
        /* the sink discards from now on; closing releases the compressor */
        blob_writer_abort(TAKE_PTR(sink.w));
        archive_write_close(out);
        archive_entry_free(oe);
        digest_free(dc);
        return r;
}

int image_import(struct image_store *s, int fd, const char *ref, char ret_digest[DIGEST_STR_MAX],
                 struct cm_error **err) {
        _cleanup_image_ref_ struct image_ref *parsed = NULL;
        int r = image_ref_parse(ref, &parsed, err);
        if (r < 0)
                return r;
        if (parsed->digest)
                return cm_error_set(err, CM_EINVALID, "import: %s: the new name cannot carry a digest", ref);
        _cleanup_free_ char *name = image_ref_format(parsed);
        if (!name)
                return -ENOMEM;
        char diff_id[DIGEST_STR_MAX], layer[DIGEST_STR_MAX], config_digest[DIGEST_STR_MAX], manifest_digest[DIGEST_STR_MAX];
        int64_t layer_size = 0;
        r = import_layer(s, fd, diff_id, layer, &layer_size, err);
        if (r < 0)
                return r;
        char created[32];
        now_iso(created);
        _cleanup_json_ json_t *config = json_pack(
                "{s:s, s:s, s:s, s:{}, s:{s:s, s:[s]}, s:[{s:s, s:s}]}", "created", created, "architecture",
                oci_host_arch(), "os", "linux", "config", "rootfs", "type", "layers", "diff_ids", diff_id, "history",
                "created", created, "created_by", "container image import");
        if (!config)
                return -ENOMEM;
        if (oci_host_variant())
                json_object_set_new(config, "variant", json_string(oci_host_variant()));
        _cleanup_free_ char *config_text = json_dumps(config, JSON_COMPACT | JSON_PRESERVE_ORDER);
        if (!config_text)
                return -ENOMEM;
        r = image_store_blob_put(s, config_text, strlen(config_text), config_digest, err);
        if (r < 0)
                return r;
        _cleanup_json_ json_t *manifest = json_pack(
                "{s:i, s:s, s:{s:s, s:s, s:I}, s:[{s:s, s:s, s:I}]}", "schemaVersion", 2, "mediaType", MT_OCI_MANIFEST,
                "config", "mediaType", MT_OCI_CONFIG, "digest", config_digest, "size", (json_int_t)strlen(config_text),
                "layers", "mediaType", MT_OCI_LAYER_GZIP, "digest", layer, "size", (json_int_t)layer_size);
        _cleanup_free_ char *manifest_text = manifest ? json_dumps(manifest, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
        if (!manifest_text)
                return -ENOMEM;
        r = image_store_blob_put(s, manifest_text, strlen(manifest_text), manifest_digest, err);
        if (r < 0)
                return r;
        /* Unpack before naming it: a layer that fails the safety checks must not become an image. */
        r = image_store_layer_ensure(s, layer, diff_id, err);
        if (r < 0) {
                cm_error_prefix(err, "import %s", ref);
                return r;
        }
        struct oci_descriptor d = {.media_type = (char *)MT_OCI_MANIFEST, .digest = manifest_digest,
                                   .size = (int64_t)strlen(manifest_text)};
        r = image_store_tag(s, name, &d, err);
        if (r < 0)
                return r;
        if (ret_digest)
                snprintf(ret_digest, DIGEST_STR_MAX, "%s", manifest_digest);
        return 0;
}
