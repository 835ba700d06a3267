/* image_push: content store -> registry. Blobs first (skipping those the registry has),
 * then manifests, then the index, so the registry never holds a name for missing content. */
#include <errno.h>
#include <string.h>
#include <sys/stat.h>

#include "image/image.h"
#include "image/manifest.h"
#include "image/ref.h"
#include "image/registry.h"
#include "image/store.h"

struct push_ctx {
        struct image_store *s;
        struct registry_client *c;
        image_progress_fn progress;
        void *userdata;
};

static void progress(struct push_ctx *p, const char *id, const char *status, uint64_t cur, uint64_t total) {
        if (p->progress)
                p->progress(p->userdata, id, status, cur, total);
}

static int upload_blob(struct push_ctx *p, const struct oci_descriptor *d, struct cm_error **err) {
        uint64_t size = d->size >= 0 ? (uint64_t)d->size : 0;
        int r = registry_blob_exists(p->c, d->digest, err);
        if (r < 0)
                return r;
        if (r > 0) {
                progress(p, d->digest, "exists", size, size);
                return 0;
        }
        _cleanup_close_ int fd = image_store_blob_open(p->s, d->digest);
        if (fd < 0)
                return cm_error_set(err, fd == -ENOENT ? CM_ENOTFOUND : -fd, "%s",
                                    fd == -ENOENT ? "not in the local store" : strerror(-fd));
        struct stat st;
        if (fstat(fd, &st) < 0 || (d->size >= 0 && (uint64_t)st.st_size != size))
                return cm_error_set(err, CM_EDIGEST, "local blob has the wrong size");
        progress(p, d->digest, "pushing", 0, size);
        r = registry_put_blob(p->c, d->digest, fd, (uint64_t)st.st_size, err);
        if (r < 0)
                return r;
        progress(p, d->digest, "done", size, size);
        return 0;
}

static int push_blob(struct push_ctx *p, const struct oci_descriptor *d, const char *kind, struct cm_error **err) {
        int r = upload_blob(p, d, err);
        if (r < 0)
                cm_error_prefix(err, "%s %s", kind, d->digest);
        return r;
}

/* Pushes an image manifest's blobs, then the manifest itself under reference. */
static int push_manifest(struct push_ctx *p, const char *digest, const char *reference, struct cm_error **err) {
        _cleanup_free_ char *data = NULL;
        size_t len;
        int r = image_store_blob_read(p->s, digest, REGISTRY_MANIFEST_MAX, &data, &len, err);
        if (r < 0)
                return r;
        struct oci_manifest *m = NULL;
        r = oci_manifest_parse(data, len, &m, err);
        if (r < 0) {
                cm_error_prefix(err, "manifest %s", digest);
                return r;
        }
        r = push_blob(p, &m->config, "config", err);
        for (size_t i = 0; r >= 0 && i < m->n_layers; i++)
                r = push_blob(p, &m->layers[i], "layer", err);
        if (r >= 0) {
                r = registry_put_manifest(p->c, reference, m->media_type, data, len, err);
                if (r < 0)
                        cm_error_prefix(err, "manifest %s", digest);
        }
        oci_manifest_free(m);
        return r;
}

static bool is_index_type(const char *mt) {
        return mt && (streq(mt, MT_OCI_INDEX) || streq(mt, MT_DOCKER_LIST));
}

static int push_index(struct push_ctx *p, const struct oci_descriptor *d, const char *reference, const char *src,
                      struct cm_error **err) {
        _cleanup_free_ char *data = NULL;
        size_t len;
        int r = image_store_blob_read(p->s, d->digest, REGISTRY_MANIFEST_MAX, &data, &len, err);
        if (r < 0)
                return r;
        struct oci_index *idx = NULL;
        r = oci_index_parse(data, len, &idx, err);
        if (r < 0) {
                cm_error_prefix(err, "index %s", d->digest);
                return r;
        }
        bool all = true;
        for (size_t i = 0; i < idx->n_manifests; i++)
                all = all && image_store_blob_exists(p->s, idx->manifests[i].digest);
        if (all) {
                for (size_t i = 0; r >= 0 && i < idx->n_manifests; i++) {
                        const struct oci_descriptor *m = &idx->manifests[i];
                        r = is_index_type(m->media_type) ? push_index(p, m, m->digest, src, err)
                                                         : push_manifest(p, m->digest, m->digest, err);
                }
                if (r >= 0) {
                        r = registry_put_manifest(p->c, reference, idx->media_type, data, len, err);
                        if (r < 0)
                                cm_error_prefix(err, "index %s", d->digest);
                }
        } else {
                /* A pull keeps only the host's platform of a multi-platform image: push that one
                 * image (as docker does), since the registry would refuse the index. */
                const struct oci_descriptor *sel = NULL;
                r = oci_index_select(idx, NULL, &sel, err);
                if (r >= 0 && !image_store_blob_exists(p->s, sel->digest))
                        r = cm_error_set(err, CM_ENOTFOUND, "%s: no platform of this multi-platform image is stored",
                                         src);
                if (r >= 0)
                        r = push_manifest(p, sel->digest, strncmp(reference, "sha256:", 7) == 0 ? sel->digest : reference,
                                          err);
        }
        oci_index_free(idx);
        return r;
}

int image_push(struct image_store *s, const struct registry_options *ro, const char *src_ref, const char *dst_ref,
               image_progress_fn progress_fn, void *userdata, struct cm_error **err) {
        _cleanup_image_ref_ struct image_ref *src = NULL, *dst = NULL;
        int r = image_ref_parse(src_ref, &src, err);
        if (r < 0)
                return r;
        r = image_ref_parse(dst_ref ? dst_ref : src_ref, &dst, err);
        if (r < 0)
                return r;
        _cleanup_free_ char *display = image_ref_format(dst), *base = image_ref_name(src), *name = NULL;
        if (!display || !base)
                return cm_error_set(err, ENOMEM, "out of memory");

        /* the stored name: name@digest for a pinned reference, else name:tag */
        struct oci_descriptor target = {0};
        r = -ENOENT;
        if (src->digest) {
                if (asprintf(&name, "%s@%s", base, src->digest) < 0)
                        return cm_error_set(err, ENOMEM, "out of memory");
                r = image_store_resolve(s, name, &target);
        }
        if (r == -ENOENT && src->tag) {
                free(name);
                if (asprintf(&name, "%s:%s", base, src->tag) < 0) {
                        name = NULL;
                        return cm_error_set(err, ENOMEM, "out of memory");
                }
                r = image_store_resolve(s, name, &target);
        }
        if (r < 0)
                return cm_error_set(err, r == -ENOENT ? CM_ENOTFOUND : -r, "push %s: image %s not found", display,
                                    name ? name : src_ref);
        if (src->digest && !streq(src->digest, target.digest)) {
                r = cm_error_set(err, CM_EDIGEST, "push %s: %s points at %s", display, name, target.digest);
                oci_descriptor_done(&target);
                return r;
        }
        if (dst->digest && !streq(dst->digest, target.digest)) {
                r = cm_error_set(err, CM_EINVALID, "push %s: the image's digest is %s", display, target.digest);
                oci_descriptor_done(&target);
                return r;
        }

        struct push_ctx p = {.s = s, .progress = progress_fn, .userdata = userdata};
        r = registry_client_new(ro, dst->registry, dst->repository, true, &p.c, err);
        if (r >= 0) {
                const char *reference = dst->tag ? dst->tag : target.digest;
                progress(&p, display, "resolving", 0, 0);
                if (is_index_type(target.media_type))
                        r = push_index(&p, &target, reference, name, err);
                else
                        r = push_manifest(&p, target.digest, reference, err);
        }
        if (r < 0)
                cm_error_prefix(err, "push %s", display);
        else
                progress(&p, display, "done", 0, 0);
        registry_client_free(p.c);
        oci_descriptor_done(&target);
        return r;
}
