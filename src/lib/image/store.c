#include "image/store.h"

#include <fcntl.h>
#include <jansson.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>

#include "image/unpack.h"
#include "util/fs.h"
#include "util/json.h"
#include "util/macro.h"

#define OCI_LAYOUT_JSON "{\"imageLayoutVersion\":\"1.0.0\"}"
#define ANNOTATION_REF_NAME "org.opencontainers.image.ref.name"
/* Blobs committed by this process but not yet reachable from a name (a pull between its
 * downloads and its tag) are kept by gc for this long. */
#define FRESH_TTL_SEC (60 * 60)
/* Manifests, indexes and configs are walked by gc; anything larger is not one of them. */
#define WALK_MAX_DOC (16u << 20)

struct fresh_blob {
        char digest[DIGEST_STR_MAX];
        time_t when;
};

struct image_store {
        char *root;
        int root_fd, content_fd, blobs_fd, tmp_fd, layers_fd, lock_fd;
        pthread_mutex_t index_mu; /* with flock(lock_fd): index.json and gc */
        pthread_mutex_t fresh_mu;
        struct fresh_blob *fresh;
        size_t n_fresh;
        int active_ops; /* guarded by fresh_mu */
        bool (*layer_in_use)(const char *diff_id, void *ud);
        void *layer_in_use_ud;
};

struct blob_writer {
        struct image_store *s;
        int fd;
        char *tmp_name; /* NULL: O_TMPFILE, linked into place at commit */
        struct digest_ctx *dc;
        uint64_t size;
        char expected_digest[DIGEST_STR_MAX];
        int64_t expected_size;
};

static bool is_hex64(const char *s) {
        size_t n = 0;
        for (; s[n]; n++)
                if (!((s[n] >= '0' && s[n] <= '9') || (s[n] >= 'a' && s[n] <= 'f')))
                        return false;
        return n == 64;
}

static int open_dir_at(int dirfd, const char *name, int *ret) {
        int r = fs_mkdir_p(dirfd, name, 0755);
        if (r < 0)
                return r;
        int fd = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0)
                return -errno;
        *ret = fd;
        return 0;
}

static int flock_retry(int fd, int op) {
        while (flock(fd, op) < 0) {
                if (errno != EINTR)
                        return -errno;
        }
        return 0;
}

/* Removes what a crashed ingest or unpack left behind; entries still locked by a live
 * writer (of this or another process) are left alone. */
static void clean_tmp_dir(int dir_fd, const char *prefix) {
        int fd = openat(dir_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0)
                return;
        _cleanup_closedir_ DIR *d = fdopendir(fd);
        if (!d) {
                close(fd);
                return;
        }
        struct dirent *de;
        while ((de = readdir(d))) {
                if (streq(de->d_name, ".") || streq(de->d_name, ".."))
                        continue;
                if (prefix && strncmp(de->d_name, prefix, strlen(prefix)) != 0)
                        continue;
                _cleanup_close_ int efd = openat(dirfd(d), de->d_name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
                if (efd >= 0 && flock(efd, LOCK_EX | LOCK_NB) < 0)
                        continue;
                fs_rm_rf(dirfd(d), de->d_name);
        }
}

static int layer_lock(struct image_store *s, const char *hex, bool wait, int *ret_fd);
static void layer_unlock(struct image_store *s, const char *hex, int *fd);

static void clean_layer_tmp(struct image_store *s) {
        int fd = openat(s->layers_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0)
                return;
        _cleanup_closedir_ DIR *d = fdopendir(fd);
        if (!d) {
                close(fd);
                return;
        }
        struct dirent *de;
        while ((de = readdir(d))) {
                /* .tmp-<hex>-<random> */
                if (strncmp(de->d_name, ".tmp-", 5) != 0 || strlen(de->d_name) < 5 + 64)
                        continue;
                char hex[65];
                memcpy(hex, de->d_name + 5, 64);
                hex[64] = 0;
                if (!is_hex64(hex))
                        continue;
                int lfd = -1;
                if (layer_lock(s, hex, false, &lfd) < 0)
                        continue; /* being unpacked right now */
                fs_rm_rf(dirfd(d), de->d_name);
                layer_unlock(s, hex, &lfd);
        }
}

static int index_write(struct image_store *s, json_t *idx) {
        _cleanup_free_ char *text = json_dumps(idx, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
        if (!text)
                return -ENOMEM;
        return fs_write_atomic(s->content_fd, "index.json", text, strlen(text), 0644);
}

static json_t *index_new(void) {
        return json_pack("{s:i, s:s, s:[]}", "schemaVersion", 2, "mediaType", MT_OCI_INDEX, "manifests");
}

/* index.json as written by us or by another OCI tool. Readers need no lock: it is only
 * ever replaced by rename. */
static int index_read(struct image_store *s, json_t **ret, struct cm_error **err) {
        _cleanup_free_ char *data = NULL;
        size_t len = 0;
        int r = fs_read_all(s->content_fd, "index.json", 0, &data, &len);
        if (r == -ENOENT) {
                *ret = index_new();
                return *ret ? 0 : -ENOMEM;
        }
        if (r < 0)
                return cm_error_set(err, -r, "read %s/content/index.json: %s", s->root, strerror(-r));
        _cleanup_free_ char *perr = NULL;
        json_t *j = json_parse_buf(data, len, &perr);
        if (!j)
                return cm_error_set(err, CM_EINTERNAL, "%s/content/index.json: %s", s->root,
                                    perr ? perr : "invalid JSON");
        json_t *m = json_object_get(j, "manifests");
        if (!json_is_object(j) || (m && !json_is_array(m))) {
                json_decref(j);
                return cm_error_set(err, CM_EINTERNAL, "%s/content/index.json: not an OCI index", s->root);
        }
        if (!m)
                json_object_set_new(j, "manifests", json_array());
        *ret = j;
        return 0;
}

static void index_lock(struct image_store *s) {
        pthread_mutex_lock(&s->index_mu);
        flock_retry(s->lock_fd, LOCK_EX);
}

static void index_unlock(struct image_store *s) {
        flock_retry(s->lock_fd, LOCK_UN);
        pthread_mutex_unlock(&s->index_mu);
}

/* oci-layout and an empty index.json for a new store; leftovers of interrupted index writes. */
static int store_init_layout(struct image_store *s) {
        int r = 0;
        index_lock(s);
        _cleanup_free_ char *layout = NULL;
        if (fs_read_all(s->content_fd, "oci-layout", 4096, &layout, NULL) < 0 ||
            !strstr(layout, "imageLayoutVersion"))
                r = fs_write_atomic(s->content_fd, "oci-layout", OCI_LAYOUT_JSON, strlen(OCI_LAYOUT_JSON), 0644);
        if (r >= 0) {
                /* fs_write_atomic's temp files from a crash; nobody writes them without the lock */
                int dfd = openat(s->content_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
                _cleanup_closedir_ DIR *d = dfd >= 0 ? fdopendir(dfd) : NULL;
                struct dirent *de;
                if (!d && dfd >= 0)
                        close(dfd);
                while (d && (de = readdir(d)))
                        if (strncmp(de->d_name, ".#", 2) == 0 && strlen(de->d_name) > 6 &&
                            streq(de->d_name + strlen(de->d_name) - 4, ".tmp"))
                                unlinkat(s->content_fd, de->d_name, 0);
        }
        if (r >= 0 && faccessat(s->content_fd, "index.json", F_OK, AT_SYMLINK_NOFOLLOW) < 0) {
                json_t *idx = index_new();
                r = idx ? index_write(s, idx) : -ENOMEM;
                json_decref(idx);
        }
        index_unlock(s);
        return r;
}

int image_store_open(const char *root, struct image_store **ret, struct cm_error **err) {
        struct image_store *s = calloc(1, sizeof(*s));
        if (!s)
                return -ENOMEM;
        s->root_fd = s->content_fd = s->blobs_fd = s->tmp_fd = s->layers_fd = s->lock_fd = -1;
        pthread_mutex_init(&s->index_mu, NULL);
        pthread_mutex_init(&s->fresh_mu, NULL);
        int r;
        s->root = strdup(root);
        if (!s->root) {
                r = -ENOMEM;
                goto fail;
        }
        r = fs_mkdir_p(AT_FDCWD, root, 0711);
        if (r >= 0 && root[0] != '/') {
                /* layer paths handed to machines must be absolute */
                char *abs = realpath(root, NULL);
                if (!abs)
                        r = -errno;
                else {
                        free(s->root);
                        s->root = abs;
                }
        }
        if (r >= 0) {
                s->root_fd = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
                if (s->root_fd < 0)
                        r = -errno;
        }
        if (r >= 0)
                r = open_dir_at(s->root_fd, "content", &s->content_fd);
        if (r >= 0)
                r = open_dir_at(s->content_fd, "blobs/sha256", &s->blobs_fd);
        if (r >= 0)
                r = open_dir_at(s->root_fd, "tmp", &s->tmp_fd);
        if (r >= 0)
                r = open_dir_at(s->root_fd, "layers", &s->layers_fd);
        if (r >= 0) {
                s->lock_fd = openat(s->content_fd, ".lock", O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
                if (s->lock_fd < 0)
                        r = -errno;
        }
        if (r < 0) {
                cm_error_set(err, -r, "open image store %s: %s", root, strerror(-r));
                goto fail;
        }

        r = store_init_layout(s);
        if (r < 0) {
                cm_error_set(err, -r, "initialize image store %s: %s", root, strerror(-r));
                goto fail;
        }
        clean_tmp_dir(s->tmp_fd, NULL);
        clean_layer_tmp(s);
        *ret = s;
        return 0;
fail:
        image_store_free(s);
        return r;
}

void image_store_free(struct image_store *s) {
        if (!s)
                return;
        int *fds[] = {&s->root_fd, &s->content_fd, &s->blobs_fd, &s->tmp_fd, &s->layers_fd, &s->lock_fd};
        for (size_t i = 0; i < ELEMENTSOF(fds); i++)
                if (*fds[i] >= 0)
                        close(*fds[i]);
        pthread_mutex_destroy(&s->index_mu);
        pthread_mutex_destroy(&s->fresh_mu);
        free(s->fresh);
        free(s->root);
        free(s);
}

const char *image_store_root(const struct image_store *s) {
        return s->root;
}

void image_store_set_layer_in_use(struct image_store *s, bool (*layer_in_use)(const char *diff_id, void *ud),
                                  void *ud) {
        s->layer_in_use = layer_in_use;
        s->layer_in_use_ud = ud;
}

/* ---- fresh blobs ---- */

static void fresh_add(struct image_store *s, const char *digest) {
        time_t now = time(NULL);
        pthread_mutex_lock(&s->fresh_mu);
        for (size_t i = 0; i < s->n_fresh; i++)
                if (streq(s->fresh[i].digest, digest)) {
                        s->fresh[i].when = now;
                        goto out;
                }
        struct fresh_blob *n = realloc(s->fresh, (s->n_fresh + 1) * sizeof(*n));
        if (n) {
                s->fresh = n;
                snprintf(n[s->n_fresh].digest, DIGEST_STR_MAX, "%s", digest);
                n[s->n_fresh].when = now;
                s->n_fresh++;
        }
out:
        pthread_mutex_unlock(&s->fresh_mu);
}

/* Drops fresh entries that are in set (a json object used as a set of digests) or expired. */
static void fresh_settle(struct image_store *s, json_t *reachable) {
        time_t now = time(NULL);
        pthread_mutex_lock(&s->fresh_mu);
        size_t j = 0;
        for (size_t i = 0; i < s->n_fresh; i++) {
                if (now - s->fresh[i].when > FRESH_TTL_SEC)
                        continue;
                if (reachable && json_object_get(reachable, s->fresh[i].digest))
                        continue;
                s->fresh[j++] = s->fresh[i];
        }
        s->n_fresh = j;
        pthread_mutex_unlock(&s->fresh_mu);
}

time_t image_store_op_begin(struct image_store *s) {
        pthread_mutex_lock(&s->fresh_mu);
        s->active_ops++;
        pthread_mutex_unlock(&s->fresh_mu);
        return time(NULL);
}

void image_store_op_end(struct image_store *s, time_t started, bool failed) {
        pthread_mutex_lock(&s->fresh_mu);
        bool alone = --s->active_ops == 0;
        if (failed && alone) {
                /* Nothing else is in flight: what this operation added is no longer protected. */
                size_t j = 0;
                for (size_t i = 0; i < s->n_fresh; i++)
                        if (s->fresh[i].when < started)
                                s->fresh[j++] = s->fresh[i];
                s->n_fresh = j;
        }
        pthread_mutex_unlock(&s->fresh_mu);
        if (failed && alone)
                image_store_gc(s, NULL, NULL, NULL);
}

/* ---- blobs ---- */

bool image_store_blob_exists(struct image_store *s, const char *digest) {
        if (!digest_is_valid(digest))
                return false;
        return faccessat(s->blobs_fd, digest_hex(digest), F_OK, AT_SYMLINK_NOFOLLOW) == 0;
}

int image_store_blob_open(struct image_store *s, const char *digest) {
        if (!digest_is_valid(digest))
                return -EINVAL;
        int fd = openat(s->blobs_fd, digest_hex(digest), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
        return fd < 0 ? -errno : fd;
}

int image_store_blob_read(struct image_store *s, const char *digest, size_t max, char **ret, size_t *ret_len,
                          struct cm_error **err) {
        if (!digest_is_valid(digest))
                return cm_error_set(err, CM_EINVALID, "invalid digest: %s", digest ? digest : "(null)");
        if (max == 0)
                max = 16u << 20;
        _cleanup_free_ char *data = NULL;
        size_t len = 0;
        int r = fs_read_all(s->blobs_fd, digest_hex(digest), max, &data, &len);
        if (r == -ENOENT)
                return cm_error_set(err, CM_ENOTFOUND, "blob %s: not in the store", digest);
        if (r == -EFBIG)
                return cm_error_set(err, EFBIG, "blob %s: larger than %zu bytes", digest, max);
        if (r < 0)
                return cm_error_set(err, -r, "blob %s: %s", digest, strerror(-r));
        char actual[DIGEST_STR_MAX];
        digest_buffer(data, len, actual);
        if (!streq(actual, digest))
                return cm_error_set(err, CM_EDIGEST, "blob %s: digest mismatch (content is %s): store corrupted",
                                    digest, actual);
        *ret = TAKE_PTR(data);
        if (ret_len)
                *ret_len = len;
        return 0;
}

int image_store_blob_put(struct image_store *s, const void *data, size_t len, char ret_digest[DIGEST_STR_MAX],
                         struct cm_error **err) {
        char digest[DIGEST_STR_MAX];
        digest_buffer(data, len, digest);
        fresh_add(s, digest); /* before the check: a concurrent gc must not take it */
        if (image_store_blob_exists(s, digest)) {
                snprintf(ret_digest, DIGEST_STR_MAX, "%s", digest);
                return 0;
        }
        struct blob_writer *w = NULL;
        int r = image_store_blob_begin(s, digest, (int64_t)len, &w, err);
        if (r < 0)
                return r;
        r = blob_writer_write(w, data, len, err);
        if (r < 0) {
                blob_writer_abort(w);
                return r;
        }
        return blob_writer_commit(w, ret_digest, err);
}

static int tmpfile_named(struct image_store *s, char **ret_name) {
        for (int attempt = 0; attempt < 16; attempt++) {
                uint64_t rnd = 0;
                if (getrandom(&rnd, sizeof rnd, 0) < 0)
                        rnd = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32) ^ (uint64_t)attempt;
                char *name = NULL;
                if (asprintf(&name, "blob-%016llx", (unsigned long long)rnd) < 0)
                        return -ENOMEM;
                int fd = openat(s->tmp_fd, name, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0644);
                if (fd < 0) {
                        int e = errno;
                        free(name);
                        if (e == EEXIST)
                                continue;
                        return -e;
                }
                /* Tells a concurrent image_store_open that this file is alive. */
                flock(fd, LOCK_EX | LOCK_NB);
                *ret_name = name;
                return fd;
        }
        return -EEXIST;
}

int image_store_blob_begin(struct image_store *s, const char *expected_digest, int64_t expected_size,
                           struct blob_writer **ret, struct cm_error **err) {
        if (expected_digest && !digest_is_valid(expected_digest))
                return cm_error_set(err, CM_EINVALID, "invalid digest: %s", expected_digest);
        struct blob_writer *w = calloc(1, sizeof(*w));
        if (!w)
                return -ENOMEM;
        w->s = s;
        w->expected_size = expected_size;
        if (expected_digest)
                snprintf(w->expected_digest, sizeof w->expected_digest, "%s", expected_digest);
        w->dc = digest_new();
        if (!w->dc) {
                free(w);
                return -ENOMEM;
        }
        w->fd = openat(s->tmp_fd, ".", O_TMPFILE | O_RDWR | O_CLOEXEC, 0644);
        if (w->fd < 0 && (errno == EOPNOTSUPP || errno == EISDIR || errno == EINVAL))
                w->fd = tmpfile_named(s, &w->tmp_name);
        else if (w->fd < 0)
                w->fd = -errno;
        if (w->fd < 0) {
                int r = w->fd;
                digest_free(w->dc);
                free(w);
                return cm_error_set(err, -r, "create temporary file in %s/tmp: %s", s->root, strerror(-r));
        }
        *ret = w;
        return 0;
}

static const char *writer_label(const struct blob_writer *w) {
        return w->expected_digest[0] ? w->expected_digest : "(new blob)";
}

int blob_writer_write(struct blob_writer *w, const void *data, size_t len, struct cm_error **err) {
        if (w->expected_size >= 0 && w->size + len > (uint64_t)w->expected_size)
                return cm_error_set(err, CM_EDIGEST, "blob %s: more data than the expected %lld bytes",
                                    writer_label(w), (long long)w->expected_size);
        const char *p = data;
        size_t left = len;
        while (left > 0) {
                ssize_t n = write(w->fd, p, left);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        int e = errno;
                        return cm_error_set(err, e, "blob %s: write to %s/tmp: %s", writer_label(w), w->s->root,
                                            strerror(e));
                }
                p += n;
                left -= (size_t)n;
        }
        digest_update(w->dc, data, len);
        w->size += len;
        return 0;
}

uint64_t blob_writer_size(const struct blob_writer *w) {
        return w->size;
}

int blob_writer_reset(struct blob_writer *w) {
        if (ftruncate(w->fd, 0) < 0 || lseek(w->fd, 0, SEEK_SET) < 0)
                return -errno;
        struct digest_ctx *n = digest_new();
        if (!n)
                return -ENOMEM;
        digest_free(w->dc);
        w->dc = n;
        w->size = 0;
        return 0;
}

void blob_writer_abort(struct blob_writer *w) {
        if (!w)
                return;
        if (w->tmp_name)
                unlinkat(w->s->tmp_fd, w->tmp_name, 0);
        if (w->fd >= 0)
                close(w->fd);
        digest_free(w->dc);
        free(w->tmp_name);
        free(w);
}

/* Gives the finished temp file its name in blobs/sha256. An existing blob with that name
 * has the same verified content, so losing the race to it is success. */
static int writer_publish(struct blob_writer *w, const char *hex) {
        struct image_store *s = w->s;
        if (w->tmp_name) {
                if (renameat(s->tmp_fd, w->tmp_name, s->blobs_fd, hex) < 0)
                        return -errno;
                free(w->tmp_name);
                w->tmp_name = NULL;
                return 0;
        }
        if (linkat(w->fd, "", s->blobs_fd, hex, AT_EMPTY_PATH) == 0 || errno == EEXIST)
                return 0;
        char proc[64];
        snprintf(proc, sizeof proc, "/proc/self/fd/%d", w->fd);
        if (linkat(AT_FDCWD, proc, s->blobs_fd, hex, AT_SYMLINK_FOLLOW) == 0 || errno == EEXIST)
                return 0;
        return -errno;
}

int blob_writer_commit(struct blob_writer *w, char ret_digest[DIGEST_STR_MAX], struct cm_error **err) {
        char actual[DIGEST_STR_MAX];
        struct digest_ctx *dc = w->dc;
        w->dc = NULL;
        digest_final(dc, actual);
        int r = 0;
        if (w->expected_size >= 0 && w->size != (uint64_t)w->expected_size)
                r = cm_error_set(err, CM_EDIGEST, "blob %s: size mismatch: got %llu bytes, expected %lld",
                                 writer_label(w), (unsigned long long)w->size, (long long)w->expected_size);
        else if (w->expected_digest[0] && !streq(actual, w->expected_digest))
                r = cm_error_set(err, CM_EDIGEST, "blob %s: digest mismatch (got %s)", w->expected_digest, actual);
        if (r < 0) {
                blob_writer_abort(w);
                return r;
        }
        if (fsync(w->fd) < 0) {
                r = -errno;
                cm_error_set(err, -r, "blob %s: fsync: %s", actual, strerror(-r));
                blob_writer_abort(w);
                return r;
        }
        fresh_add(w->s, actual); /* before it becomes visible to a concurrent gc */
        r = writer_publish(w, digest_hex(actual));
        if (r >= 0)
                r = fs_fsync_dir(w->s->blobs_fd, ".");
        if (r < 0) {
                cm_error_set(err, -r, "blob %s: store in %s/content: %s", actual, w->s->root, strerror(-r));
                blob_writer_abort(w);
                return r;
        }
        blob_writer_abort(w);
        if (ret_digest)
                snprintf(ret_digest, DIGEST_STR_MAX, "%s", actual);
        return 0;
}

/* ---- walking the graph of blobs ---- */

struct walk_item {
        char digest[DIGEST_STR_MAX];
        char *media_type; /* NULL: unknown, sniffed */
        int64_t size;
};

struct walker {
        struct image_store *s;
        json_t *seen;     /* set of digests */
        json_t *diff_ids; /* set of diff_ids found in configs */
        struct walk_item *stack;
        size_t n_stack;
        image_store_walk_fn fn;
        void *ud;
};

static bool mt_is_doc(const char *mt) {
        return streq(mt, MT_OCI_MANIFEST) || streq(mt, MT_OCI_INDEX) || streq(mt, MT_DOCKER_MANIFEST) ||
               streq(mt, MT_DOCKER_LIST) || streq(mt, MT_OCI_CONFIG) || streq(mt, MT_DOCKER_CONFIG);
}

static int walker_push(struct walker *wk, const char *digest, const char *media_type, int64_t size) {
        if (!digest_is_valid(digest) || json_object_get(wk->seen, digest))
                return 0;
        if (json_object_set_new(wk->seen, digest, json_true()) < 0)
                return -ENOMEM;
        struct walk_item *n = realloc(wk->stack, (wk->n_stack + 1) * sizeof(*n));
        if (!n)
                return -ENOMEM;
        wk->stack = n;
        struct walk_item *it = &n[wk->n_stack];
        snprintf(it->digest, sizeof it->digest, "%s", digest);
        it->media_type = media_type ? strdup(media_type) : NULL;
        it->size = size;
        wk->n_stack++;
        return 0;
}

static int walker_push_desc(struct walker *wk, json_t *d) {
        if (!json_is_object(d))
                return 0;
        json_t *sz = json_object_get(d, "size");
        return walker_push(wk, json_get_str(d, "digest"), json_get_str(d, "mediaType"),
                           json_is_integer(sz) ? (int64_t)json_integer_value(sz) : -1);
}

/* Loose on purpose: gc must keep whatever a document refers to, even when the document
 * would not pass the strict parsers. */
static int walker_visit(struct walker *wk, const struct walk_item *it) {
        bool parse;
        if (it->media_type)
                parse = mt_is_doc(it->media_type);
        else {
                struct stat st;
                char first = 0;
                _cleanup_close_ int fd = image_store_blob_open(wk->s, it->digest);
                parse = fd >= 0 && fstat(fd, &st) == 0 && st.st_size > 0 && (uint64_t)st.st_size <= WALK_MAX_DOC &&
                        read(fd, &first, 1) == 1 && first == '{';
        }
        if (!parse)
                return 0;
        _cleanup_free_ char *data = NULL;
        size_t len = 0;
        if (fs_read_all(wk->s->blobs_fd, digest_hex(it->digest), WALK_MAX_DOC, &data, &len) < 0)
                return 0; /* missing (e.g. other platforms of an index) or not a document */
        json_t *j = json_loadb(data, len, 0, NULL);
        if (!json_is_object(j)) {
                json_decref(j);
                return 0;
        }
        int r = 0;
        json_t *v;
        size_t i;
        json_array_foreach(json_object_get(j, "manifests"), i, v) {
                if ((r = walker_push_desc(wk, v)) < 0)
                        break;
        }
        if (r >= 0)
                r = walker_push_desc(wk, json_object_get(j, "config"));
        json_array_foreach(json_object_get(j, "layers"), i, v) {
                if (r < 0 || (r = walker_push_desc(wk, v)) < 0)
                        break;
        }
        json_t *rootfs = json_object_get(j, "rootfs");
        json_array_foreach(json_object_get(rootfs, "diff_ids"), i, v) {
                const char *d = json_string_value(v);
                if (r >= 0 && wk->diff_ids && d && digest_is_valid(d))
                        r = json_object_set_new(wk->diff_ids, d, json_true()) < 0 ? -ENOMEM : 0;
        }
        json_decref(j);
        return r;
}

static int walker_run(struct walker *wk) {
        int r = 0;
        while (wk->n_stack > 0 && r >= 0) {
                struct walk_item it = wk->stack[--wk->n_stack];
                if (wk->fn && image_store_blob_exists(wk->s, it.digest))
                        r = wk->fn(it.digest, it.media_type, it.size, wk->ud);
                if (r >= 0)
                        r = walker_visit(wk, &it);
                free(it.media_type);
        }
        while (wk->n_stack > 0)
                free(wk->stack[--wk->n_stack].media_type);
        return r;
}

static void walker_done(struct walker *wk) {
        while (wk->n_stack > 0)
                free(wk->stack[--wk->n_stack].media_type);
        free(wk->stack);
        json_decref(wk->seen);
        json_decref(wk->diff_ids);
}

int image_store_walk(struct image_store *s, const struct oci_descriptor *target, image_store_walk_fn fn, void *ud,
                     struct cm_error **err) {
        struct walker wk = {.s = s, .seen = json_object(), .fn = fn, .ud = ud};
        if (!wk.seen)
                return -ENOMEM;
        int r = walker_push(&wk, target->digest, target->media_type, target->size);
        if (r >= 0)
                r = walker_run(&wk);
        walker_done(&wk);
        if (r < 0 && err && !*err)
                cm_error_set(err, -r, "walk %s: %s", target->digest, strerror(-r));
        return r;
}

/* ---- names ---- */

static json_t *entry_find(json_t *idx, const char *name, size_t *ret_i) {
        json_t *v;
        size_t i;
        json_array_foreach(json_object_get(idx, "manifests"), i, v) {
                const char *n = json_get_str(json_object_get(v, "annotations"), ANNOTATION_REF_NAME);
                if (n && streq(n, name)) {
                        if (ret_i)
                                *ret_i = i;
                        return v;
                }
        }
        return NULL;
}

static json_t *descriptor_to_json(const struct oci_descriptor *d, const char *name) {
        json_t *j = json_pack("{s:s, s:s, s:I}", "mediaType", d->media_type, "digest", d->digest, "size",
                              (json_int_t)d->size);
        if (!j)
                return NULL;
        if (d->platform.os && d->platform.architecture) {
                json_t *p = json_pack("{s:s, s:s}", "architecture", d->platform.architecture, "os", d->platform.os);
                if (p && d->platform.variant)
                        json_object_set_new(p, "variant", json_string(d->platform.variant));
                json_object_set_new(j, "platform", p);
        }
        json_object_set_new(j, "annotations", json_pack("{s:s}", ANNOTATION_REF_NAME, name));
        return j;
}

static int descriptor_from_json(json_t *e, struct oci_descriptor *ret) {
        const char *mt = json_get_str(e, "mediaType"), *digest = json_get_str(e, "digest");
        json_t *sz = json_object_get(e, "size");
        if (!mt || !digest_is_valid(digest) || !json_is_integer(sz) || json_integer_value(sz) < 0)
                return -EBADMSG;
        struct oci_descriptor d = {0};
        json_t *p = json_object_get(e, "platform");
        const char *name = json_get_str(json_object_get(e, "annotations"), ANNOTATION_REF_NAME);
        d.media_type = strdup(mt);
        d.digest = strdup(digest);
        d.size = (int64_t)json_integer_value(sz);
        bool oom = !d.media_type || !d.digest;
#define DUP_OPT(field, src)                                                                                  \
        do {                                                                                                 \
                const char *_v = (src);                                                                      \
                if (_v && !(field = strdup(_v)))                                                             \
                        oom = true;                                                                          \
        } while (0)
        DUP_OPT(d.platform.os, json_get_str(p, "os"));
        DUP_OPT(d.platform.architecture, json_get_str(p, "architecture"));
        DUP_OPT(d.platform.variant, json_get_str(p, "variant"));
        DUP_OPT(d.ref_name, name);
#undef DUP_OPT
        if (oom) {
                free(d.media_type);
                free(d.digest);
                free(d.platform.os);
                free(d.platform.architecture);
                free(d.platform.variant);
                free(d.ref_name);
                return -ENOMEM;
        }
        *ret = d;
        return 0;
}

static int collect_seen(const char *digest, const char *media_type, int64_t size, void *ud) {
        (void)media_type;
        (void)size;
        return json_object_set_new(ud, digest, json_true()) < 0 ? -ENOMEM : 0;
}

int image_store_tag(struct image_store *s, const char *name, const struct oci_descriptor *target,
                    struct cm_error **err) {
        if (!name || !*name)
                return cm_error_set(err, CM_EINVALID, "empty image name");
        if (!target || !digest_is_valid(target->digest) || !target->media_type || target->size < 0)
                return cm_error_set(err, CM_EINVALID, "tag %s: invalid target descriptor", name);
        if (!image_store_blob_exists(s, target->digest))
                return cm_error_set(err, CM_ENOTFOUND, "tag %s: %s is not in the store", name, target->digest);
        json_t *entry = descriptor_to_json(target, name);
        if (!entry)
                return -ENOMEM;
        index_lock(s);
        json_t *idx = NULL;
        int r = index_read(s, &idx, err);
        if (r >= 0) {
                json_t *arr = json_object_get(idx, "manifests");
                size_t i;
                if (entry_find(idx, name, &i))
                        r = json_array_set_new(arr, i, entry) < 0 ? -ENOMEM : 0;
                else
                        r = json_array_append_new(arr, entry) < 0 ? -ENOMEM : 0;
                entry = NULL;
                if (r >= 0)
                        r = index_write(s, idx);
                if (r < 0)
                        cm_error_set(err, -r, "tag %s: write index.json: %s", name, strerror(-r));
        }
        index_unlock(s);
        json_decref(entry);
        json_decref(idx);
        if (r >= 0) {
                /* What the name reaches is protected by it now. */
                json_t *seen = json_object();
                if (seen && image_store_walk(s, target, collect_seen, seen, NULL) >= 0)
                        fresh_settle(s, seen);
                json_decref(seen);
        }
        return r;
}

int image_store_resolve(struct image_store *s, const char *name, struct oci_descriptor *ret) {
        json_t *idx = NULL;
        int r = index_read(s, &idx, NULL);
        if (r < 0)
                return r;
        json_t *e = entry_find(idx, name, NULL);
        r = e ? descriptor_from_json(e, ret) : -ENOENT;
        json_decref(idx);
        return r;
}

int image_store_untag(struct image_store *s, const char *name, struct cm_error **err) {
        index_lock(s);
        json_t *idx = NULL;
        int r = index_read(s, &idx, err);
        if (r >= 0) {
                size_t i;
                if (!entry_find(idx, name, &i))
                        r = cm_error_set(err, CM_ENOTFOUND, "image not found: %s", name);
                else {
                        json_array_remove(json_object_get(idx, "manifests"), i);
                        r = index_write(s, idx);
                        if (r < 0)
                                cm_error_set(err, -r, "untag %s: write index.json: %s", name, strerror(-r));
                }
        }
        index_unlock(s);
        json_decref(idx);
        return r;
}

void image_store_entries_free(struct image_store_entry *e, size_t n) {
        if (!e)
                return;
        for (size_t i = 0; i < n; i++) {
                free(e[i].name);
                oci_descriptor_done(&e[i].target);
        }
        free(e);
}

int image_store_list(struct image_store *s, struct image_store_entry **ret, size_t *ret_n) {
        json_t *idx = NULL;
        int r = index_read(s, &idx, NULL);
        if (r < 0)
                return r;
        json_t *arr = json_object_get(idx, "manifests");
        struct image_store_entry *list = calloc(json_array_size(arr) + 1, sizeof(*list));
        size_t n = 0;
        if (!list) {
                json_decref(idx);
                return -ENOMEM;
        }
        json_t *v;
        size_t i;
        json_array_foreach(arr, i, v) {
                const char *name = json_get_str(json_object_get(v, "annotations"), ANNOTATION_REF_NAME);
                if (!name)
                        continue;
                struct oci_descriptor d;
                r = descriptor_from_json(v, &d);
                if (r == -EBADMSG)
                        continue; /* an entry some other tool wrote that we cannot use */
                if (r < 0)
                        break;
                list[n].name = strdup(name);
                list[n].target = d;
                n++;
                if (!list[n - 1].name) {
                        r = -ENOMEM;
                        break;
                }
        }
        json_decref(idx);
        if (r < 0 && r != -EBADMSG) {
                image_store_entries_free(list, n);
                return r;
        }
        *ret = list;
        *ret_n = n;
        return 0;
}

/* ---- unpacked layers ---- */

char *image_store_layer_path(struct image_store *s, const char *diff_id) {
        if (!digest_is_valid(diff_id))
                return NULL;
        char *p = NULL;
        if (asprintf(&p, "%s/layers/%s", s->root, digest_hex(diff_id)) < 0)
                return NULL;
        return p;
}

/* Per-layer lock file layers/.<hex>.lock. gc may unlink it (while holding it), so after
 * taking the lock we check the name still refers to the file we locked. */
static int layer_lock(struct image_store *s, const char *hex, bool wait, int *ret_fd) {
        char name[80];
        snprintf(name, sizeof name, ".%s.lock", hex);
        for (;;) {
                _cleanup_close_ int fd = openat(s->layers_fd, name, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
                if (fd < 0)
                        return -errno;
                int r = flock_retry(fd, wait ? LOCK_EX : LOCK_EX | LOCK_NB);
                if (r < 0)
                        return r == -EWOULDBLOCK ? -EBUSY : r;
                struct stat a, b;
                if (fstat(fd, &a) < 0)
                        return -errno;
                if (fstatat(s->layers_fd, name, &b, AT_SYMLINK_NOFOLLOW) == 0 && a.st_ino == b.st_ino &&
                    a.st_dev == b.st_dev) {
                        *ret_fd = TAKE_FD(fd);
                        return 0;
                }
        }
}

/* Releases a layer lock and removes its file: whoever waits on the old file sees the name
 * gone after it gets the lock and starts over (then finds the layer, or retries it). */
static void layer_unlock(struct image_store *s, const char *hex, int *fd) {
        if (*fd < 0)
                return;
        char name[80];
        snprintf(name, sizeof name, ".%s.lock", hex);
        unlinkat(s->layers_fd, name, 0);
        close(*fd);
        *fd = -1;
}


static bool layer_present(struct image_store *s, const char *hex) {
        struct stat st;
        return fstatat(s->layers_fd, hex, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISDIR(st.st_mode);
}

static int layer_unpack_locked(struct image_store *s, const char *blob_digest, const char *diff_id,
                               struct cm_error **err);

int image_store_layer_ensure(struct image_store *s, const char *blob_digest, const char *diff_id,
                             struct cm_error **err) {
        if (!digest_is_valid(blob_digest) || !digest_is_valid(diff_id))
                return cm_error_set(err, CM_EINVALID, "layer %s: invalid digest", blob_digest ? blob_digest : "(null)");
        const char *hex = digest_hex(diff_id);
        /* The directory only ever appears by rename of a complete, verified unpack. */
        if (layer_present(s, hex))
                return 0;
        int lock_fd = -1;
        int r = layer_lock(s, hex, true, &lock_fd);
        if (r < 0)
                return cm_error_set(err, -r, "layer %s: lock: %s", blob_digest, strerror(-r));
        r = layer_unpack_locked(s, blob_digest, diff_id, err);
        layer_unlock(s, hex, &lock_fd);
        return r;
}

static int layer_unpack_locked(struct image_store *s, const char *blob_digest, const char *diff_id,
                               struct cm_error **err) {
        const char *hex = digest_hex(diff_id);
        int r;
        if (layer_present(s, hex))
                return 0; /* somebody else unpacked it while we waited */
        _cleanup_close_ int blob_fd = image_store_blob_open(s, blob_digest);
        if (blob_fd < 0)
                return cm_error_set(err, blob_fd == -ENOENT ? CM_ENOTFOUND : -blob_fd, "layer %s: %s", blob_digest,
                                    blob_fd == -ENOENT ? "blob not in the store" : strerror(-blob_fd));
        uint32_t rnd = 0;
        if (getrandom(&rnd, sizeof rnd, 0) < 0)
                rnd = (uint32_t)getpid();
        char tmp[128];
        snprintf(tmp, sizeof tmp, ".tmp-%s-%08x", hex, rnd);
        if (mkdirat(s->layers_fd, tmp, 0755) < 0) {
                r = -errno;
                return cm_error_set(err, -r, "layer %s: mkdir %s/layers/%s: %s", blob_digest, s->root, tmp,
                                    strerror(-r));
        }
        _cleanup_close_ int dfd = openat(s->layers_fd, tmp, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (dfd < 0) {
                r = -errno;
                fs_rm_rf(s->layers_fd, tmp);
                return cm_error_set(err, -r, "layer %s: open %s: %s", blob_digest, tmp, strerror(-r));
        }
        struct unpack_stats stats = {0};
        r = layer_unpack(blob_fd, dfd, blob_digest, &stats, err);
        if (r < 0) {
                fs_rm_rf(s->layers_fd, tmp);
                if (err && !*err)
                        cm_error_set(err, -r, "layer %s: unpack: %s", blob_digest, strerror(-r));
                return r;
        }
        if (!streq(stats.diff_id, diff_id)) {
                fs_rm_rf(s->layers_fd, tmp);
                return cm_error_set(err, CM_EDIGEST, "layer %s: diff_id mismatch (expected %s, got %s)", blob_digest,
                                    diff_id, stats.diff_id);
        }
        /* The rename is the completion marker: the tree must be on disk before it. */
        if (syncfs(dfd) < 0 || renameat(s->layers_fd, tmp, s->layers_fd, hex) < 0) {
                r = -errno;
                fs_rm_rf(s->layers_fd, tmp);
                return cm_error_set(err, -r, "layer %s: finish %s/layers/%s: %s", blob_digest, s->root, hex,
                                    strerror(-r));
        }
        fs_fsync_dir(s->layers_fd, ".");
        return 0;
}

/* ---- garbage collection ---- */

static int gc_sweep_blobs(struct image_store *s, json_t *marked, struct cm_error **err) {
        int fd = openat(s->blobs_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0)
                return cm_error_set(err, errno, "gc: open blobs: %s", strerror(errno));
        _cleanup_closedir_ DIR *d = fdopendir(fd);
        if (!d) {
                close(fd);
                return -ENOMEM;
        }
        struct dirent *de;
        char digest[DIGEST_STR_MAX];
        while ((de = readdir(d))) {
                if (!is_hex64(de->d_name))
                        continue;
                snprintf(digest, sizeof digest, "sha256:%.64s", de->d_name);
                if (json_object_get(marked, digest))
                        continue;
                if (unlinkat(s->blobs_fd, de->d_name, 0) < 0 && errno != ENOENT)
                        return cm_error_set(err, errno, "gc: remove blob %s: %s", digest, strerror(errno));
        }
        fs_fsync_dir(s->blobs_fd, ".");
        return 0;
}

static int gc_sweep_layers(struct image_store *s, json_t *diff_ids, bool (*in_use)(const char *, void *), void *ud,
                           struct cm_error **err) {
        int fd = openat(s->layers_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0)
                return cm_error_set(err, errno, "gc: open layers: %s", strerror(errno));
        _cleanup_closedir_ DIR *d = fdopendir(fd);
        if (!d) {
                close(fd);
                return -ENOMEM;
        }
        struct dirent *de;
        char hex[65], diff[DIGEST_STR_MAX];
        while ((de = readdir(d))) {
                const char *n = de->d_name;
                bool is_dir = is_hex64(n);
                /* lock files .<hex>.lock of layers that are gone */
                bool is_lock = !is_dir && n[0] == '.' && strlen(n) == 1 + 64 + 5 && streq(n + 65, ".lock");
                if (!is_dir && !is_lock)
                        continue;
                memcpy(hex, is_dir ? n : n + 1, 64);
                hex[64] = 0;
                if (!is_hex64(hex))
                        continue;
                snprintf(diff, sizeof diff, "sha256:%s", hex);
                if (json_object_get(diff_ids, diff))
                        continue;
                if (is_lock && layer_present(s, hex))
                        continue;
                if (is_dir && in_use && in_use(diff, ud))
                        continue;
                _cleanup_close_ int lfd = -1;
                if (layer_lock(s, hex, false, &lfd) < 0)
                        continue; /* being unpacked: a pull in progress wants it */
                if (is_dir) {
                        int r = fs_rm_rf(s->layers_fd, hex);
                        if (r < 0)
                                return cm_error_set(err, -r, "gc: remove %s/layers/%s: %s", s->root, hex,
                                                    strerror(-r));
                }
                char lname[80];
                snprintf(lname, sizeof lname, ".%s.lock", hex);
                unlinkat(s->layers_fd, lname, 0);
        }
        fs_fsync_dir(s->layers_fd, ".");
        return 0;
}

int image_store_gc(struct image_store *s, bool (*layer_in_use)(const char *diff_id, void *ud), void *ud,
                   struct cm_error **err) {
        if (!layer_in_use) {
                layer_in_use = s->layer_in_use;
                ud = s->layer_in_use_ud;
        }
        struct walker wk = {.s = s, .seen = json_object(), .diff_ids = json_object()};
        if (!wk.seen || !wk.diff_ids) {
                walker_done(&wk);
                return -ENOMEM;
        }
        index_lock(s);
        json_t *idx = NULL;
        int r = index_read(s, &idx, err);
        if (r >= 0) {
                /* Every entry counts, named or not: other tools may have put them there. */
                json_t *v;
                size_t i;
                json_array_foreach(json_object_get(idx, "manifests"), i, v) {
                        if ((r = walker_push_desc(&wk, v)) < 0)
                                break;
                }
        }
        if (r >= 0) {
                fresh_settle(s, NULL);
                pthread_mutex_lock(&s->fresh_mu);
                for (size_t i = 0; i < s->n_fresh && r >= 0; i++)
                        r = walker_push(&wk, s->fresh[i].digest, NULL, -1);
                pthread_mutex_unlock(&s->fresh_mu);
        }
        if (r >= 0)
                r = walker_run(&wk);
        if (r < 0 && err && !*err)
                cm_error_set(err, -r, "gc: mark: %s", strerror(-r));
        if (r >= 0)
                r = gc_sweep_blobs(s, wk.seen, err);
        if (r >= 0)
                r = gc_sweep_layers(s, wk.diff_ids, layer_in_use, ud, err);
        index_unlock(s);
        json_decref(idx);
        walker_done(&wk);
        return r;
}
