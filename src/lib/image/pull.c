/* image_pull: registry -> content store, layers downloaded in parallel and verified while
 * they stream into blob writers; nothing becomes visible before its digest is checked. */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <time.h>

#include "image/image.h"
#include "image/manifest.h"
#include "image/ref.h"
#include "image/registry.h"
#include "image/store.h"

#define PROGRESS_INTERVAL_NS (100LL * 1000 * 1000) /* at most ~10 updates a second per blob */

struct pull_ctx {
        struct image_store *s;
        struct registry_client *c;
        const struct pull_options *po;
        pthread_mutex_t progress_lock;

        pthread_mutex_t lock;
        struct blob_job *jobs;
        size_t n_jobs, next; /* guarded by lock */
        struct cm_error *error;
        int error_r;
        atomic_bool failed;
};

struct blob_job {
        struct pull_ctx *ctx;
        const struct oci_descriptor *desc;
        const char *kind; /* "layer", "config" */
        const char *diff_id; /* layers: unpacked as soon as they are downloaded */
        struct blob_writer *w;
        long long last_emit_ns;
};

static long long now_ns(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void progress(struct pull_ctx *ctx, const char *id, const char *status, uint64_t cur, uint64_t total) {
        if (!ctx->po || !ctx->po->progress)
                return;
        /* the caller's callback need not be thread-safe */
        pthread_mutex_lock(&ctx->progress_lock);
        ctx->po->progress(ctx->po->userdata, id, status, cur, total);
        pthread_mutex_unlock(&ctx->progress_lock);
}

static int sink_write(void *ud, const void *data, size_t len, struct cm_error **err) {
        struct blob_job *j = ud;
        return blob_writer_write(j->w, data, len, err);
}

static uint64_t sink_size(void *ud) {
        struct blob_job *j = ud;
        return blob_writer_size(j->w);
}

static int sink_reset(void *ud) {
        struct blob_job *j = ud;
        return blob_writer_reset(j->w);
}

static int sink_progress(void *ud, uint64_t cur, uint64_t total) {
        struct blob_job *j = ud;
        if (atomic_load(&j->ctx->failed))
                return 1; /* another blob failed: stop this one */
        long long t = now_ns();
        if (t - j->last_emit_ns >= PROGRESS_INTERVAL_NS) {
                j->last_emit_ns = t;
                progress(j->ctx, j->desc->digest, "downloading", cur, total);
        }
        return 0;
}

static void sink_retrying(void *ud, uint64_t cur, uint64_t total) {
        struct blob_job *j = ud;
        progress(j->ctx, j->desc->digest, "retrying", cur, total);
}

/* The store says "blob <digest>: digest mismatch (…)"; in a pull the user wants to know
 * which part of the image it was. */
static void error_relabel(struct cm_error **err, const char *kind, const char *digest) {
        if (!err || !*err || !(*err)->message)
                return;
        const char *m = (*err)->message;
        size_t dl = strlen(digest);
        if (strncmp(m, "blob ", 5) == 0 && strncmp(m + 5, digest, dl) == 0 && strncmp(m + 5 + dl, ": ", 2) == 0) {
                char *n = NULL;
                if (asprintf(&n, "%s %s: %s", kind, digest, m + 5 + dl + 2) >= 0) {
                        free((*err)->message);
                        (*err)->message = n;
                }
                return;
        }
        cm_error_prefix(err, "%s %s", kind, digest);
}

static int fetch_blob(struct pull_ctx *ctx, struct blob_job *j, struct cm_error **err) {
        const struct oci_descriptor *d = j->desc;
        uint64_t total = d->size >= 0 ? (uint64_t)d->size : 0;
        if (image_store_blob_exists(ctx->s, d->digest)) {
                progress(ctx, d->digest, "exists", total, total);
                return 0;
        }
        int r = image_store_blob_begin(ctx->s, d->digest, d->size, &j->w, err);
        if (r < 0) {
                error_relabel(err, j->kind, d->digest);
                return r;
        }
        progress(ctx, d->digest, "downloading", 0, total);
        j->last_emit_ns = now_ns();
        struct registry_sink sink = {
                .write = sink_write, .size = sink_size, .reset = sink_reset, .progress = sink_progress,
                .retrying = sink_retrying, .userdata = j};
        r = registry_get_blob(ctx->c, d->digest, d->size, &sink, err);
        if (r < 0) {
                blob_writer_abort(TAKE_PTR(j->w));
                error_relabel(err, j->kind, d->digest);
                return r;
        }
        progress(ctx, d->digest, "verifying", total, total);
        r = blob_writer_commit(TAKE_PTR(j->w), NULL, err);
        if (r < 0) {
                error_relabel(err, j->kind, d->digest);
                return r;
        }
        if (!j->diff_id) /* a layer is done only once unpacked */
                progress(ctx, d->digest, "done", total, total);
        return 0;
}

static int unpack_layer(struct pull_ctx *ctx, struct blob_job *j, struct cm_error **err) {
        uint64_t sz = j->desc->size >= 0 ? (uint64_t)j->desc->size : 0;
        progress(ctx, j->desc->digest, "unpacking", 0, sz);
        int r = image_store_layer_ensure(ctx->s, j->desc->digest, j->diff_id, err);
        if (r < 0)
                return r;
        progress(ctx, j->desc->digest, "done", sz, sz);
        return 0;
}

/* Each worker downloads a layer, then unpacks it while the others still download. */
static void *download_worker(void *p) {
        struct pull_ctx *ctx = p;
        for (;;) {
                pthread_mutex_lock(&ctx->lock);
                struct blob_job *j = NULL;
                if (ctx->next < ctx->n_jobs && !atomic_load(&ctx->failed))
                        j = &ctx->jobs[ctx->next++];
                pthread_mutex_unlock(&ctx->lock);
                if (!j)
                        return NULL;
                struct cm_error *e = NULL;
                int r = fetch_blob(ctx, j, &e);
                if (r >= 0 && j->diff_id && !atomic_load(&ctx->failed))
                        r = unpack_layer(ctx, j, &e);
                if (r < 0) {
                        pthread_mutex_lock(&ctx->lock);
                        /* the first failure is the story; the others were cancelled by it */
                        if (!ctx->error && !(r == -ECANCELED && atomic_load(&ctx->failed))) {
                                ctx->error = e;
                                ctx->error_r = r;
                                e = NULL;
                        }
                        atomic_store(&ctx->failed, true);
                        pthread_mutex_unlock(&ctx->lock);
                        cm_error_free(e);
                }
        }
}

static int download_all(struct pull_ctx *ctx, int max_parallel, struct cm_error **err) {
        size_t n_threads = max_parallel > 0 ? (size_t)max_parallel : 4;
        if (n_threads > ctx->n_jobs)
                n_threads = ctx->n_jobs;
        pthread_t tids[64];
        if (n_threads > ELEMENTSOF(tids))
                n_threads = ELEMENTSOF(tids);
        size_t started = 0;
        /* the calling thread works too */
        for (; n_threads > 1 && started < n_threads - 1; started++)
                if (pthread_create(&tids[started], NULL, download_worker, ctx) != 0)
                        break;
        download_worker(ctx);
        for (size_t i = 0; i < started; i++)
                pthread_join(tids[i], NULL);
        if (atomic_load(&ctx->failed)) {
                int r = ctx->error_r < 0 ? ctx->error_r : -EIO;
                if (err && !*err && ctx->error)
                        *err = TAKE_PTR(ctx->error);
                else
                        cm_error_set(err, -r, "download failed");
                return r;
        }
        return 0;
}

/* Stores bytes we already hold (index, manifest) and checks they are what we expect. */
static int put_verified(struct image_store *s, const char *data, size_t len, const char *digest, const char *kind,
                        struct cm_error **err) {
        char got[DIGEST_STR_MAX];
        int r = image_store_blob_put(s, data, len, got, err);
        if (r < 0)
                return r;
        if (!streq(got, digest))
                return cm_error_set(err, CM_EDIGEST, "%s %s: digest mismatch (got %s)", kind, digest, got);
        return 0;
}

static int pull_resolved(struct pull_ctx *ctx, const struct image_ref *ref, char **ret_name,
                         char ret_digest[DIGEST_STR_MAX], struct cm_error **err) {
        const struct pull_options *po = ctx->po;
        const char *reference = ref->digest ? ref->digest : ref->tag;
        _cleanup_free_ char *top = NULL, *top_mt = NULL, *mdata = NULL, *mmt = NULL, *cdata = NULL;
        _cleanup_free_ char *base = NULL, *name_tag = NULL, *name_dig = NULL;
        size_t top_len = 0, mlen = 0, clen = 0;
        char top_digest[DIGEST_STR_MAX], mdigest[DIGEST_STR_MAX];
        struct oci_index *idx = NULL;
        struct oci_manifest *m = NULL;
        struct oci_image_config *cfg = NULL;
        int is_index = 0, r;

        r = registry_get_manifest(ctx->c, reference, &top, &top_len, &top_mt, top_digest, err);
        if (r < 0)
                return r;
        r = oci_detect_kind(top, top_len, top_mt, &is_index, err);
        if (r < 0)
                return r;

        const char *top_media_type;
        if (is_index) {
                r = oci_index_parse(top, top_len, &idx, err);
                if (r < 0)
                        return r;
                const struct oci_descriptor *sel = NULL;
                r = oci_index_select(idx, po ? po->platform : NULL, &sel, err);
                if (r < 0)
                        goto out;
                r = registry_get_manifest(ctx->c, sel->digest, &mdata, &mlen, &mmt, mdigest, err);
                if (r < 0)
                        goto out;
                if (sel->size >= 0 && (int64_t)mlen != sel->size) {
                        r = cm_error_set(err, CM_EDIGEST, "manifest %s: size mismatch: got %zu bytes, expected %lld",
                                         sel->digest, mlen, (long long)sel->size);
                        goto out;
                }
                top_media_type = idx->media_type;
        } else {
                mdata = TAKE_PTR(top);
                mlen = top_len;
                memcpy(mdigest, top_digest, DIGEST_STR_MAX);
                top_media_type = NULL; /* the manifest's own, below */
        }

        r = oci_manifest_parse(mdata, mlen, &m, err);
        if (r < 0)
                goto out;
        if (!top_media_type)
                top_media_type = m->media_type;
        for (size_t i = 0; i < m->n_layers; i++) {
                enum layer_compression comp;
                if (oci_layer_compression(m->layers[i].media_type, &comp) < 0) {
                        r = cm_error_set(err, CM_EINVALID, "layer %s: unsupported media type '%s'",
                                         m->layers[i].digest, m->layers[i].media_type);
                        goto out;
                }
        }

        /* config first (small, and it names the diff_ids we verify the layers' contents by) */
        struct blob_job cj = {.ctx = ctx, .desc = &m->config, .kind = "config"};
        r = fetch_blob(ctx, &cj, err);
        if (r < 0)
                goto out;
        r = image_store_blob_read(ctx->s, m->config.digest, 0, &cdata, &clen, err);
        if (r < 0)
                goto out;
        r = oci_config_parse(cdata, clen, &cfg, err);
        if (r < 0) {
                cm_error_prefix(err, "config %s", m->config.digest);
                goto out;
        }
        if (cfg->n_diff_ids != m->n_layers) {
                r = cm_error_set(err, CM_EINVALID, "config %s lists %zu layers, the manifest %zu", m->config.digest,
                                 cfg->n_diff_ids, m->n_layers);
                goto out;
        }

        /* layers, each blob once, downloaded and unpacked in parallel */
        ctx->jobs = calloc(m->n_layers ? m->n_layers : 1, sizeof(*ctx->jobs));
        if (!ctx->jobs) {
                r = cm_error_set(err, ENOMEM, "out of memory");
                goto out;
        }
        for (size_t i = 0; i < m->n_layers; i++) {
                bool dup = false;
                for (size_t k = 0; k < ctx->n_jobs; k++)
                        dup = dup || streq(ctx->jobs[k].desc->digest, m->layers[i].digest);
                if (!dup)
                        ctx->jobs[ctx->n_jobs++] = (struct blob_job){
                                .ctx = ctx, .desc = &m->layers[i], .kind = "layer", .diff_id = cfg->diff_ids[i]};
        }
        r = download_all(ctx, po ? po->max_parallel : 0, err);
        if (r < 0)
                goto out;

        /* manifest and index last: a name never points at something half there */
        r = put_verified(ctx->s, mdata, mlen, mdigest, "manifest", err);
        if (r < 0)
                goto out;
        if (is_index) {
                r = put_verified(ctx->s, top, top_len, top_digest, "index", err);
                if (r < 0)
                        goto out;
        }


        /* names: name:tag, and name@digest when the user pinned one */
        base = image_ref_name(ref);
        if (!base || (ref->tag && asprintf(&name_tag, "%s:%s", base, ref->tag) < 0) ||
            (ref->digest && asprintf(&name_dig, "%s@%s", base, ref->digest) < 0)) {
                name_tag = name_dig = NULL;
                r = cm_error_set(err, ENOMEM, "out of memory");
                goto out;
        }
        struct oci_descriptor target = {.media_type = (char *)top_media_type,
                                        .digest = is_index ? top_digest : mdigest,
                                        .size = is_index ? (int64_t)top_len : (int64_t)mlen};
        /* With an explicit --platform the tag names that platform's image (as docker does), so
         * later uses of the name get what was asked for; without, it names the index and each
         * use picks the host platform. name@digest always names what the digest is. */
        struct oci_descriptor chosen = target;
        if (is_index && po && po->platform)
                chosen = (struct oci_descriptor){.media_type = m->media_type, .digest = mdigest, .size = (int64_t)mlen};
        if (name_dig) {
                r = image_store_tag(ctx->s, name_dig, &target, err);
                if (r < 0)
                        goto out;
        }
        if (name_tag) {
                r = image_store_tag(ctx->s, name_tag, &chosen, err);
                if (r < 0)
                        goto out;
        }
        if (ret_digest)
                memcpy(ret_digest, name_tag ? chosen.digest : target.digest, DIGEST_STR_MAX);
        if (ret_name)
                *ret_name = name_dig ? TAKE_PTR(name_dig) : TAKE_PTR(name_tag);
        r = 0;
out:
        oci_config_free(cfg);
        oci_manifest_free(m);
        oci_index_free(idx);
        return r;
}

int image_pull(struct image_store *s, const struct registry_options *ro, const char *ref_str,
               const struct pull_options *po, char **ret_name, char ret_digest[DIGEST_STR_MAX],
               struct cm_error **err) {
        _cleanup_image_ref_ struct image_ref *ref = NULL;
        int r = image_ref_parse(ref_str, &ref, err);
        if (r < 0)
                return r;
        _cleanup_free_ char *display = image_ref_format(ref);
        if (!display)
                return cm_error_set(err, ENOMEM, "out of memory");

        struct pull_ctx ctx = {.s = s, .po = po};
        pthread_mutex_init(&ctx.progress_lock, NULL);
        pthread_mutex_init(&ctx.lock, NULL);
        atomic_init(&ctx.failed, false);

        progress(&ctx, display, "resolving", 0, 0);
        r = registry_client_new(ro, ref->registry, ref->repository, false, &ctx.c, err);
        if (r >= 0)
                r = pull_resolved(&ctx, ref, ret_name, ret_digest, err);
        if (r < 0)
                cm_error_prefix(err, "pull %s", display);
        else
                progress(&ctx, display, "done", 0, 0);

        for (size_t i = 0; i < ctx.n_jobs; i++)
                blob_writer_abort(ctx.jobs[i].w);
        free(ctx.jobs);
        cm_error_free(ctx.error);
        registry_client_free(ctx.c);
        pthread_mutex_destroy(&ctx.lock);
        pthread_mutex_destroy(&ctx.progress_lock);
        return r;
}
