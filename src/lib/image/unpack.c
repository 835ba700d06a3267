/* Layer unpacking. libarchive only parses: one handle decompresses the layer (filters, "raw"
 * format) in a worker thread, a second one reads the tar stream from it. Everything that touches
 * the file system is here, and every name from the archive is resolved beneath the layer root
 * without following any symlink: a layer can only ever write inside its own directory. */
#include "image/unpack.h"

#include <archive.h>
#include <archive_entry.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>

#include "util/digest.h"
#include "util/fs.h"

#define WHITEOUT_PREFIX ".wh."
#define WHITEOUT_META_PREFIX ".wh..wh."
#define WHITEOUT_OPAQUE ".wh..wh..opq"
#define OVERLAY_OPAQUE_XATTR "trusted.overlay.opaque"

/* Compressed reads are large; decompressed data travels in a small ring of slots so the
 * decompressing thread and the extracting thread overlap. */
#define INPUT_BUF_SIZE (1u << 20)
#define SLOT_SIZE (256u << 10)
#define SLOT_COUNT 16u

/* ---- names ---- */

/* Returns NULL if name is acceptable, else why not. *ret gets the cleaned name. */
static const char *clean_path(const char *name, char **ret) {
        if (name[0] == '/')
                return "absolute path";
        size_t len = strlen(name);
        char *out = malloc(len + 1);
        if (!out)
                return "out of memory";
        size_t o = 0;
        const char *p = name;
        for (;;) {
                while (*p == '/')
                        p++;
                if (!*p)
                        break;
                const char *start = p;
                while (*p && *p != '/')
                        p++;
                size_t n = (size_t)(p - start);
                if (n == 1 && start[0] == '.')
                        continue;
                if (n == 2 && start[0] == '.' && start[1] == '.') {
                        free(out);
                        return "'..' component";
                }
                if (o > 0)
                        out[o++] = '/';
                memcpy(out + o, start, n);
                o += n;
        }
        out[o] = '\0';
        *ret = out;
        return NULL;
}

/* Names from archives go into error messages that end up on terminals: escape them. */
static char *printable(const char *s) {
        enum { MAX_SHOWN = 256 };
        if (!s)
                return strdup("(no name)");
        size_t len = strnlen(s, MAX_SHOWN + 1);
        bool cut = len > MAX_SHOWN;
        if (cut)
                len = MAX_SHOWN;
        char *out = malloc(len * 4 + 4);
        if (!out)
                return NULL;
        char *o = out;
        for (size_t i = 0; i < len; i++) {
                unsigned char c = (unsigned char)s[i];
                if (c < 0x20 || c == 0x7f || c == '\\' || c == '\'')
                        o += sprintf(o, "\\x%02x", c);
                else
                        *o++ = (char)c;
        }
        if (cut)
                o = stpcpy(o, "...");
        *o = '\0';
        return out;
}

int unpack_clean_path(const char *name, char **ret, struct cm_error **err) {
        if (!name)
                return cm_error_set(err, CM_EUNSAFE, "entry without a name");
        char *clean = NULL;
        const char *why = clean_path(name, &clean);
        if (why) {
                _cleanup_free_ char *shown = printable(name);
                return cm_error_set(err, CM_EUNSAFE, "entry '%s': %s", shown ? shown : "?", why);
        }
        *ret = clean;
        return 0;
}

/* ARCHIVE_RETRY (a damaged header libarchive could skip) is a failure too: a layer is taken
 * whole or not at all. */
static bool archive_ok(int r) {
        return r == ARCHIVE_OK || r == ARCHIVE_WARN;
}

/* ---- the decompressed stream ---- */

struct stream {
        int fd;
        int cancel_fd; /* eventfd: wakes the producer out of a blocking read */
        struct archive *raw;
        char *input;
        char *slots[SLOT_COUNT];
        size_t lens[SLOT_COUNT];

        pthread_mutex_t lock;
        pthread_cond_t filled, freed;
        unsigned head, count; /* filled slots: head .. head+count-1 */
        bool held;            /* the tar reader still uses slots[head] */
        bool eof, cancelled, failed;
        char error[512]; /* why the producer failed; written once, before failed is set */

        struct digest_ctx *digest; /* consumer side: sees every byte once, in order */
        uint64_t bytes;
};

static la_ssize_t stream_read_input(struct archive *a, void *userdata, const void **ret) {
        struct stream *s = userdata;
        for (;;) {
                struct pollfd p[2] = {{.fd = s->fd, .events = POLLIN}, {.fd = s->cancel_fd, .events = POLLIN}};
                if (poll(p, 2, -1) < 0) {
                        if (errno == EINTR)
                                continue;
                        archive_set_error(a, errno, "poll: %s", strerror(errno));
                        return -1;
                }
                if (p[1].revents) {
                        archive_set_error(a, ECANCELED, "cancelled");
                        return -1;
                }
                ssize_t n = read(s->fd, s->input, INPUT_BUF_SIZE);
                if (n < 0) {
                        if (errno == EINTR || errno == EAGAIN)
                                continue;
                        archive_set_error(a, errno, "read: %s", strerror(errno));
                        return -1;
                }
                *ret = s->input;
                return n;
        }
}

static void stream_fail(struct stream *s, const char *msg) {
        pthread_mutex_lock(&s->lock);
        snprintf(s->error, sizeof(s->error), "%s", msg && *msg ? msg : "decompression failed");
        s->failed = true;
        pthread_cond_signal(&s->filled);
        pthread_mutex_unlock(&s->lock);
}

static void *stream_produce(void *userdata) {
        struct stream *s = userdata;
        struct archive_entry *e;
        int r = archive_read_next_header(s->raw, &e);
        if (r == ARCHIVE_EOF) {
                pthread_mutex_lock(&s->lock);
                s->eof = true;
                pthread_cond_signal(&s->filled);
                pthread_mutex_unlock(&s->lock);
                return NULL;
        }
        if (!archive_ok(r)) {
                stream_fail(s, archive_error_string(s->raw));
                return NULL;
        }
        for (;;) {
                /* blocks as the decompressor makes them: a slot is handed on as soon as it has
                 * data, so a layer still arriving is unpacked as it arrives */
                const void *buf;
                size_t size;
                la_int64_t offset;
                r = archive_read_data_block(s->raw, &buf, &size, &offset);
                if (r == ARCHIVE_EOF)
                        break;
                if (!archive_ok(r)) {
                        stream_fail(s, archive_error_string(s->raw));
                        return NULL;
                }
                while (size > 0) {
                        pthread_mutex_lock(&s->lock);
                        while (s->count == SLOT_COUNT && !s->cancelled)
                                pthread_cond_wait(&s->freed, &s->lock);
                        bool cancelled = s->cancelled;
                        unsigned idx = (s->head + s->count) % SLOT_COUNT;
                        pthread_mutex_unlock(&s->lock);
                        if (cancelled)
                                return NULL;

                        size_t n = size < SLOT_SIZE ? size : SLOT_SIZE;
                        memcpy(s->slots[idx], buf, n);
                        buf = (const char *)buf + n;
                        size -= n;
                        pthread_mutex_lock(&s->lock);
                        s->lens[idx] = n;
                        s->count++;
                        pthread_cond_signal(&s->filled);
                        pthread_mutex_unlock(&s->lock);
                }
        }
        pthread_mutex_lock(&s->lock);
        s->eof = true;
        pthread_cond_signal(&s->filled);
        pthread_mutex_unlock(&s->lock);
        return NULL;
}

/* Next block of the decompressed stream, valid until the next call: >0 bytes, 0 at the end,
 * -1 if decompression failed or was cancelled (s->error says why). */
static ssize_t stream_next(struct stream *s, const void **ret) {
        pthread_mutex_lock(&s->lock);
        if (s->held) {
                s->head = (s->head + 1) % SLOT_COUNT;
                s->count--;
                s->held = false;
                pthread_cond_signal(&s->freed);
        }
        while (s->count == 0 && !s->eof && !s->failed && !s->cancelled)
                pthread_cond_wait(&s->filled, &s->lock);
        if (s->count == 0) {
                bool failed = s->failed || (s->cancelled && !s->eof);
                if (failed && !s->failed)
                        snprintf(s->error, sizeof(s->error), "cancelled");
                pthread_mutex_unlock(&s->lock);
                return failed ? -1 : 0;
        }
        unsigned idx = s->head;
        s->held = true;
        pthread_mutex_unlock(&s->lock);

        size_t n = s->lens[idx];
        digest_update(s->digest, s->slots[idx], n);
        s->bytes += n;
        *ret = s->slots[idx];
        return (ssize_t)n;
}

static bool stream_failed(struct stream *s) {
        pthread_mutex_lock(&s->lock);
        bool failed = s->failed;
        pthread_mutex_unlock(&s->lock);
        return failed;
}

static la_ssize_t stream_read_tar(struct archive *a, void *userdata, const void **ret) {
        struct stream *s = userdata;
        ssize_t n = stream_next(s, ret);
        if (n < 0)
                archive_set_error(a, EIO, "%s", s->error);
        return n;
}

static int stream_init(struct stream *s, int fd) {
        *s = (struct stream){.fd = fd, .cancel_fd = -1};
        pthread_mutex_init(&s->lock, NULL);
        pthread_cond_init(&s->filled, NULL);
        pthread_cond_init(&s->freed, NULL);
        s->cancel_fd = eventfd(0, EFD_CLOEXEC);
        if (s->cancel_fd < 0)
                return -errno;
        s->digest = digest_new();
        s->input = malloc(INPUT_BUF_SIZE);
        s->slots[0] = malloc((size_t)SLOT_SIZE * SLOT_COUNT);
        s->raw = archive_read_new();
        if (!s->digest || !s->input || !s->slots[0] || !s->raw)
                return -ENOMEM;
        for (unsigned i = 1; i < SLOT_COUNT; i++)
                s->slots[i] = s->slots[0] + (size_t)i * SLOT_SIZE;
        /* ARCHIVE_WARN means "through an external program": still works, accept it. */
        if (archive_read_support_filter_gzip(s->raw) < ARCHIVE_WARN ||
            archive_read_support_filter_zstd(s->raw) < ARCHIVE_WARN ||
            archive_read_support_filter_none(s->raw) < ARCHIVE_WARN ||
            archive_read_support_format_raw(s->raw) < ARCHIVE_WARN ||
            archive_read_support_format_empty(s->raw) < ARCHIVE_WARN) /* a layer of no bytes at all */
                return -ENOTSUP;
        return 0;
}

static void stream_cancel(struct stream *s) {
        pthread_mutex_lock(&s->lock);
        s->cancelled = true;
        pthread_cond_signal(&s->freed);
        pthread_mutex_unlock(&s->lock);
        (void)eventfd_write(s->cancel_fd, 1);
}

static void stream_done(struct stream *s) {
        if (s->raw)
                archive_read_free(s->raw);
        digest_free(s->digest);
        free(s->input);
        free(s->slots[0]);
        if (s->cancel_fd >= 0)
                close(s->cancel_fd);
        pthread_cond_destroy(&s->filled);
        pthread_cond_destroy(&s->freed);
        pthread_mutex_destroy(&s->lock);
}

/* ---- writing entries ---- */

struct dir_times {
        char *path;
        struct timespec ts[2];
};

struct unpacker {
        int root_fd;
        const char *layer;
        struct archive *tar;
        struct cm_error **err;
        const char *entry; /* raw name of the entry being unpacked, for errors */

        char *cached_parent; /* last parent directory resolved, and its fd */
        int cached_fd;

        struct dir_times *dirs; /* directory times are set last: children change them */
        size_t n_dirs, cap_dirs;
};

static int fail(struct unpacker *u, int code, const char *fmt, ...) _printf_(3, 4);
static int fail(struct unpacker *u, int code, const char *fmt, ...) {
        _cleanup_free_ char *reason = NULL, *shown = printable(u->entry);
        va_list ap;
        va_start(ap, fmt);
        if (vasprintf(&reason, fmt, ap) < 0)
                reason = NULL;
        va_end(ap);
        return cm_error_set(u->err, code, "layer %s: entry '%s': %s", u->layer, shown ? shown : "?",
                            reason ? reason : "out of memory");
}

static int fail_errno(struct unpacker *u, int error, const char *what) {
        return fail(u, error, "%s: %s", what, strerror(error));
}

static void drop_cached_parent(struct unpacker *u) {
        free(u->cached_parent);
        u->cached_parent = NULL;
        if (u->cached_fd >= 0)
                close(u->cached_fd);
        u->cached_fd = -1;
}

static int open_beneath(int dirfd, const char *path, int flags) {
        struct open_how how = {
                .flags = (uint64_t)(flags | O_CLOEXEC),
                .resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV,
        };
        for (int tries = 0;; tries++) {
                long fd = syscall(SYS_openat2, dirfd, path, &how, sizeof(how));
                if (fd >= 0)
                        return (int)fd;
                if (errno != EAGAIN || tries >= 8)
                        return -errno;
        }
}

/* Opens the directory at path (clean, relative, not "") beneath the root, one component at a
 * time, never following a symlink; creates missing directories if asked. Used when the single
 * openat2() fails: it says which component is wrong, and works without openat2. what names the
 * path in errors ("" for the entry's own). */
static int walk_dirs(struct unpacker *u, const char *path, bool create, const char *what) {
        _cleanup_close_ int cur = -1;
        _cleanup_free_ char *copy = strdup(path);
        if (!copy)
                return fail_errno(u, ENOMEM, "resolve");
        char *save = NULL;
        for (char *c = strtok_r(copy, "/", &save); c; c = strtok_r(NULL, "/", &save)) {
                int at = cur >= 0 ? cur : u->root_fd;
                int fd = openat(at, c, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
                if (fd < 0 && errno == ENOENT && create) {
                        if (mkdirat(at, c, 0755) < 0 && errno != EEXIST)
                                return fail_errno(u, errno, "create parent directory");
                        fd = openat(at, c, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
                        /* mkdirat() honours the umask; implied parents get what tar gives them */
                        if (fd >= 0 && fchmod(fd, 0755) < 0) {
                                int e = errno;
                                close(fd);
                                return fail_errno(u, e, "create parent directory");
                        }
                }
                if (fd < 0) {
                        int e = errno;
                        _cleanup_free_ char *shown = printable(c);
                        if (!shown)
                                return fail_errno(u, ENOMEM, "resolve");
                        struct stat st;
                        if ((e == ELOOP || e == ENOTDIR) && fstatat(at, c, &st, AT_SYMLINK_NOFOLLOW) == 0) {
                                if (S_ISLNK(st.st_mode))
                                        return fail(u, CM_EUNSAFE, "%spath component '%s' is a symlink", what, shown);
                                return fail(u, ENOTDIR, "%spath component '%s' is not a directory", what, shown);
                        }
                        if (e == ENOENT)
                                return fail(u, ENOENT, "%sdirectory '%s' does not exist", what, shown);
                        return fail(u, e, "%sopen directory '%s': %s", what, shown, strerror(e));
                }
                if (cur >= 0)
                        close(cur);
                cur = fd;
        }
        return TAKE_FD(cur);
}

/* fd of the directory path (clean; "" is the root). The returned fd is borrowed: it belongs to
 * the unpacker and stays valid until the next call or until something is removed. */
static int get_dir(struct unpacker *u, const char *path, bool create) {
        if (!*path)
                return u->root_fd;
        if (u->cached_parent && streq(u->cached_parent, path))
                return u->cached_fd;
        drop_cached_parent(u);
        int fd = open_beneath(u->root_fd, path, O_RDONLY | O_DIRECTORY);
        if (fd < 0) {
                /* errors from openat2() are not specific; the walk explains or creates */
                fd = walk_dirs(u, path, create, "");
                if (fd < 0)
                        return fd;
        }
        u->cached_parent = strdup(path);
        if (!u->cached_parent) {
                close(fd);
                return fail_errno(u, ENOMEM, "resolve");
        }
        u->cached_fd = fd;
        return fd;
}

/* Makes room for a new entry: 1 if an existing directory should be kept (and merged), 0 if the
 * name is free now. */
static int remove_existing(struct unpacker *u, int dir_fd, const char *name, bool keep_dir) {
        struct stat st;
        if (fstatat(dir_fd, name, &st, AT_SYMLINK_NOFOLLOW) < 0) {
                if (errno == ENOENT)
                        return 0;
                return fail_errno(u, errno, "replace existing entry");
        }
        if (S_ISDIR(st.st_mode)) {
                if (keep_dir)
                        return 1;
                /* the cached directory may be inside what goes away, unless it is dir_fd */
                if (dir_fd != u->cached_fd)
                        drop_cached_parent(u);
                int r = fs_rm_rf(dir_fd, name);
                if (r < 0)
                        return fail_errno(u, -r, "replace existing directory");
                return 0;
        }
        if (unlinkat(dir_fd, name, 0) < 0 && errno != ENOENT)
                return fail_errno(u, errno, "replace existing entry");
        return 0;
}

static int ids(struct unpacker *u, struct archive_entry *e, uid_t *uid, gid_t *gid) {
        la_int64_t u_id = archive_entry_uid(e), g_id = archive_entry_gid(e);
        /* (uid_t)-1 would mean "leave unchanged" to chown() */
        if (u_id < 0 || u_id >= (la_int64_t)UINT32_MAX || g_id < 0 || g_id >= (la_int64_t)UINT32_MAX)
                return fail(u, CM_EINVALID, "invalid owner %lld:%lld", (long long)u_id, (long long)g_id);
        *uid = (uid_t)u_id;
        *gid = (gid_t)g_id;
        return 0;
}

static void entry_times(struct archive_entry *e, struct timespec ts[2]) {
        if (archive_entry_mtime_is_set(e))
                ts[1] = (struct timespec){archive_entry_mtime(e), archive_entry_mtime_nsec(e)};
        else
                ts[1] = (struct timespec){0, UTIME_OMIT};
        if (archive_entry_atime_is_set(e))
                ts[0] = (struct timespec){archive_entry_atime(e), archive_entry_atime_nsec(e)};
        else
                ts[0] = ts[1];
        for (int i = 0; i < 2; i++)
                if (ts[i].tv_nsec != UTIME_OMIT && (ts[i].tv_nsec < 0 || ts[i].tv_nsec >= 1000000000L))
                        ts[i].tv_nsec = 0;
}

static bool has_prefix(const char *s, const char *prefix) {
        return strncmp(s, prefix, strlen(prefix)) == 0;
}

/* xattrs onto fd, or onto dir_fd/name (no following) when fd < 0. Overlay's own attributes are
 * never taken from an archive: a layer must not forge redirects, metacopy or opaque markers
 * other than through whiteout files. Failures are errors, except where the destination cannot
 * hold the attribute at all (namespace unsupported here, user.* on a symlink or device). */
static int apply_xattrs(struct unpacker *u, struct archive_entry *e, int fd, int dir_fd, const char *name) {
        if (archive_entry_xattr_reset(e) == 0)
                return 0;
        _cleanup_free_ char *path = NULL;
        const char *key;
        const void *value;
        size_t size;
        while (archive_entry_xattr_next(e, &key, &value, &size) == ARCHIVE_OK) {
                if (!key || !*key || has_prefix(key, "trusted.overlay.") || has_prefix(key, "user.overlay."))
                        continue;
                int r;
                if (fd >= 0)
                        r = fsetxattr(fd, key, value, size, 0);
                else {
                        /* no lsetxattrat(): reach the entry through our own directory fd */
                        if (!path && asprintf(&path, "/proc/self/fd/%d/%s", dir_fd, name) < 0) {
                                path = NULL;
                                return fail_errno(u, ENOMEM, "set xattr");
                        }
                        r = lsetxattr(path, key, value, size, 0);
                }
                if (r == 0)
                        continue;
                int e2 = errno;
                if ((e2 == EOPNOTSUPP || e2 == ENOTSUP) && !has_prefix(key, "security."))
                        continue;
                if (e2 == EPERM && fd < 0 && has_prefix(key, "user."))
                        continue;
                _cleanup_free_ char *shown = printable(key);
                return fail(u, e2, "set xattr '%s': %s", shown ? shown : "?", strerror(e2));
        }
        return 0;
}

/* Owner, then mode (chown clears setuid/setgid), then xattrs (chown clears file capabilities). */
static int apply_metadata_fd(struct unpacker *u, struct archive_entry *e, int fd) {
        uid_t uid;
        gid_t gid;
        int r = ids(u, e, &uid, &gid);
        if (r < 0)
                return r;
        if (fchown(fd, uid, gid) < 0)
                return fail_errno(u, errno, "chown");
        if (fchmod(fd, archive_entry_perm(e) & 07777) < 0)
                return fail_errno(u, errno, "chmod");
        return apply_xattrs(u, e, fd, -1, NULL);
}

static int pwrite_all(int fd, const char *buf, size_t len, off_t off) {
        while (len > 0) {
                ssize_t n = pwrite(fd, buf, len, off);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                buf += n;
                len -= (size_t)n;
                off += n;
        }
        return 0;
}

static int unpack_file(struct unpacker *u, struct archive_entry *e, int dir_fd, const char *name) {
        _cleanup_close_ int fd = -1;
        for (int attempt = 0;; attempt++) {
                /* O_EXCL: a name that exists (say, a symlink) is replaced, never written through */
                fd = openat(dir_fd, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
                if (fd >= 0)
                        break;
                if (errno != EEXIST || attempt > 0)
                        return fail_errno(u, errno, "create file");
                int r = remove_existing(u, dir_fd, name, false);
                if (r < 0)
                        return r;
        }

        off_t end = 0;
        for (;;) {
                const void *buf;
                size_t size;
                la_int64_t off;
                int r = archive_read_data_block(u->tar, &buf, &size, &off);
                if (r == ARCHIVE_EOF)
                        break;
                if (!archive_ok(r))
                        return fail(u, CM_EINVALID, "read: %s", archive_error_string(u->tar));
                if (size == 0)
                        continue;
                if (off < 0)
                        return fail(u, CM_EINVALID, "read: bad data offset");
                r = pwrite_all(fd, buf, size, (off_t)off);
                if (r < 0)
                        return fail_errno(u, -r, "write");
                end = (off_t)off + (off_t)size;
        }
        la_int64_t size = archive_entry_size(e);
        if (archive_entry_size_is_set(e) && size > end && ftruncate(fd, (off_t)size) < 0) /* sparse tail */
                return fail_errno(u, errno, "write");

        int r = apply_metadata_fd(u, e, fd);
        if (r < 0)
                return r;
        struct timespec ts[2];
        entry_times(e, ts);
        if (futimens(fd, ts) < 0)
                return fail_errno(u, errno, "set times");
        return 0;
}

static int remember_dir_times(struct unpacker *u, const char *path, struct archive_entry *e) {
        if (u->n_dirs == u->cap_dirs) {
                size_t cap = u->cap_dirs ? u->cap_dirs * 2 : 256;
                struct dir_times *d = realloc(u->dirs, cap * sizeof(*d));
                if (!d)
                        return fail_errno(u, ENOMEM, "directory");
                u->dirs = d;
                u->cap_dirs = cap;
        }
        char *p = strdup(path);
        if (!p)
                return fail_errno(u, ENOMEM, "directory");
        u->dirs[u->n_dirs].path = p;
        entry_times(e, u->dirs[u->n_dirs].ts);
        u->n_dirs++;
        return 0;
}

static int unpack_dir(struct unpacker *u, struct archive_entry *e, int dir_fd, const char *name, const char *path) {
        _cleanup_close_ int fd = -1;
        if (!*path) /* the layer root itself ("./") */
                fd = openat(u->root_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        else {
                for (int attempt = 0;; attempt++) {
                        if (mkdirat(dir_fd, name, 0700) == 0)
                                break;
                        if (errno != EEXIST || attempt > 0)
                                return fail_errno(u, errno, "create directory");
                        int r = remove_existing(u, dir_fd, name, true);
                        if (r < 0)
                                return r;
                        if (r > 0)
                                break; /* merge into the existing directory */
                }
                fd = openat(dir_fd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        }
        if (fd < 0)
                return fail_errno(u, errno, "open directory");
        int r = apply_metadata_fd(u, e, fd);
        if (r < 0)
                return r;
        return remember_dir_times(u, path, e);
}

/* Metadata of an entry we cannot open (symlink, device, fifo) through its directory. */
static int apply_metadata_at(struct unpacker *u, struct archive_entry *e, int dir_fd, const char *name, bool symlink) {
        uid_t uid;
        gid_t gid;
        int r = ids(u, e, &uid, &gid);
        if (r < 0)
                return r;
        if (fchownat(dir_fd, name, uid, gid, AT_SYMLINK_NOFOLLOW) < 0)
                return fail_errno(u, errno, "chown");
        if (!symlink && fchmodat(dir_fd, name, archive_entry_perm(e) & 07777, AT_SYMLINK_NOFOLLOW) < 0)
                return fail_errno(u, errno, "chmod");
        r = apply_xattrs(u, e, -1, dir_fd, name);
        if (r < 0)
                return r;
        struct timespec ts[2];
        entry_times(e, ts);
        if (utimensat(dir_fd, name, ts, AT_SYMLINK_NOFOLLOW) < 0)
                return fail_errno(u, errno, "set times");
        return 0;
}

static int unpack_symlink(struct unpacker *u, struct archive_entry *e, int dir_fd, const char *name) {
        const char *target = archive_entry_symlink(e);
        if (!target || !*target)
                return fail(u, CM_EINVALID, "symlink without a target");
        for (int attempt = 0;; attempt++) {
                /* the target is stored as it is: it only means something inside the machine */
                if (symlinkat(target, dir_fd, name) == 0)
                        break;
                if (errno != EEXIST || attempt > 0)
                        return fail_errno(u, errno, "create symlink");
                int r = remove_existing(u, dir_fd, name, false);
                if (r < 0)
                        return r;
        }
        return apply_metadata_at(u, e, dir_fd, name, true);
}

static int make_node(struct unpacker *u, int dir_fd, const char *name, mode_t mode, dev_t dev) {
        for (int attempt = 0;; attempt++) {
                if (mknodat(dir_fd, name, mode, dev) == 0)
                        return 0;
                if (errno != EEXIST || attempt > 0)
                        return fail_errno(u, errno, "create node");
                int r = remove_existing(u, dir_fd, name, false);
                if (r < 0)
                        return r;
        }
}

static int unpack_node(struct unpacker *u, struct archive_entry *e, int dir_fd, const char *name) {
        mode_t type = archive_entry_filetype(e);
        dev_t dev = 0;
        if (type == AE_IFCHR || type == AE_IFBLK)
                dev = makedev(archive_entry_rdevmajor(e), archive_entry_rdevminor(e));
        int r = make_node(u, dir_fd, name, type | 0600, dev);
        if (r < 0)
                return r;
        return apply_metadata_at(u, e, dir_fd, name, false);
}

static void split_path(char *path, const char **parent, const char **name) {
        char *slash = strrchr(path, '/');
        if (slash) {
                *slash = '\0';
                *parent = path;
                *name = slash + 1;
        } else {
                *parent = "";
                *name = path;
        }
}

static int unpack_hardlink(struct unpacker *u, const char *raw_target, int dir_fd, const char *name, const char *path) {
        _cleanup_free_ char *target = NULL;
        const char *why = clean_path(raw_target, &target);
        if (why) {
                _cleanup_free_ char *shown = printable(raw_target);
                return fail(u, CM_EUNSAFE, "hardlink target '%s': %s", shown ? shown : "?", why);
        }
        if (!*target)
                return fail(u, CM_EUNSAFE, "hardlink to the layer root");
        if (streq(target, path))
                return 0;

        const char *tparent, *tname;
        split_path(target, &tparent, &tname);
        /* resolved like any other name (beneath the root, no symlinks), not cached: rare */
        _cleanup_close_ int tdir = -1;
        if (*tparent) {
                tdir = open_beneath(u->root_fd, tparent, O_RDONLY | O_DIRECTORY);
                if (tdir < 0) {
                        tdir = walk_dirs(u, tparent, false, "hardlink target: ");
                        if (tdir < 0)
                                return tdir;
                }
        }
        for (int attempt = 0;; attempt++) {
                /* flags 0: a symlink target is linked itself, never followed */
                if (linkat(tdir >= 0 ? tdir : u->root_fd, tname, dir_fd, name, 0) == 0)
                        return 0;
                if (errno == ENOENT) {
                        _cleanup_free_ char *shown = printable(raw_target);
                        return fail(u, CM_EINVALID, "hardlink target '%s' does not exist in this layer",
                                    shown ? shown : "?");
                }
                if (errno != EEXIST || attempt > 0)
                        return fail_errno(u, errno, "create hardlink");
                int r = remove_existing(u, dir_fd, name, false);
                if (r < 0)
                        return r;
        }
}

static int unpack_whiteout(struct unpacker *u, int dir_fd, const char *name) {
        if (streq(name, WHITEOUT_OPAQUE)) {
                if (fsetxattr(dir_fd, OVERLAY_OPAQUE_XATTR, "y", 1, 0) < 0)
                        return fail_errno(u, errno, "mark directory opaque");
                return 0;
        }
        if (has_prefix(name, WHITEOUT_META_PREFIX))
                return 0; /* other aufs metadata (.wh..wh.plnk, ...) means nothing to overlayfs */
        const char *hidden = name + strlen(WHITEOUT_PREFIX);
        if (!*hidden || streq(hidden, ".") || streq(hidden, ".."))
                return fail(u, CM_EUNSAFE, "whiteout of an invalid name");
        return make_node(u, dir_fd, hidden, S_IFCHR, makedev(0, 0)); /* mode 0, like overlayfs' own */
}

static int unpack_entry(struct unpacker *u, struct archive_entry *e) {
        const char *raw = archive_entry_pathname(e);
        if (!raw)
                raw = archive_entry_pathname_utf8(e);
        u->entry = raw;
        if (!raw)
                return fail(u, CM_EINVALID, "entry without a name");

        _cleanup_free_ char *path = NULL;
        const char *why = clean_path(raw, &path);
        if (why)
                return fail(u, CM_EUNSAFE, "%s", why);

        const char *hardlink = archive_entry_hardlink(e);
        mode_t type = archive_entry_filetype(e);
        if (!*path) {
                if (type != AE_IFDIR || hardlink)
                        return fail(u, CM_EUNSAFE, "would replace the layer root");
                return unpack_dir(u, e, u->root_fd, ".", "");
        }

        _cleanup_free_ char *parent_buf = strdup(path);
        if (!parent_buf)
                return fail_errno(u, ENOMEM, "entry");
        const char *parent, *name;
        split_path(parent_buf, &parent, &name);
        int dir_fd = get_dir(u, parent, true);
        if (dir_fd < 0)
                return dir_fd;

        if (has_prefix(name, WHITEOUT_PREFIX))
                return unpack_whiteout(u, dir_fd, name);
        if (hardlink)
                return unpack_hardlink(u, hardlink, dir_fd, name, path);
        switch (type) {
        case AE_IFREG:
                return unpack_file(u, e, dir_fd, name);
        case AE_IFDIR:
                return unpack_dir(u, e, dir_fd, name, path);
        case AE_IFLNK:
                return unpack_symlink(u, e, dir_fd, name);
        case AE_IFCHR:
        case AE_IFBLK:
        case AE_IFIFO:
        case AE_IFSOCK:
                return unpack_node(u, e, dir_fd, name);
        default:
                return fail(u, CM_EINVALID, "unsupported entry type 0%o", (unsigned)type);
        }
}

static int set_dir_times(struct unpacker *u) {
        for (size_t i = 0; i < u->n_dirs; i++) {
                struct dir_times *d = &u->dirs[i];
                _cleanup_close_ int fd = *d->path ? open_beneath(u->root_fd, d->path, O_RDONLY | O_DIRECTORY)
                                                  : openat(u->root_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
                if (fd < 0)
                        continue; /* replaced or removed by a later entry: nothing to do */
                if (futimens(fd, d->ts) < 0) {
                        u->entry = d->path;
                        return fail_errno(u, errno, "set times");
                }
        }
        return 0;
}

static void unpacker_done(struct unpacker *u) {
        drop_cached_parent(u);
        for (size_t i = 0; i < u->n_dirs; i++)
                free(u->dirs[i].path);
        free(u->dirs);
}

int layer_unpack(int fd, int dest_dirfd, const char *layer_name, struct unpack_stats *ret_stats,
                 struct cm_error **err) {
        const char *layer = layer_name ? layer_name : "(unnamed)";
        _cleanup_close_ int root_fd = openat(dest_dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (root_fd < 0)
                return cm_error_set(err, errno, "layer %s: open destination: %s", layer, strerror(errno));

        struct stream s;
        int r = stream_init(&s, fd);
        if (r < 0) {
                stream_done(&s);
                return cm_error_set(err, -r, "layer %s: set up reading: %s", layer, strerror(-r));
        }
        /* detects the compression: reads the first block in this thread */
        if (archive_read_open(s.raw, &s, NULL, stream_read_input, NULL) != ARCHIVE_OK) {
                r = cm_error_set(err, CM_EINVALID, "layer %s: %s", layer, archive_error_string(s.raw));
                stream_done(&s);
                return r;
        }
        /* our reader plus at most one decompressor: the diff_id is over the once-decompressed
         * stream, and a layer compressed twice is not a tar stream */
        if (archive_filter_count(s.raw) > 2) {
                r = cm_error_set(err, CM_EINVALID, "layer %s: compressed more than once", layer);
                stream_done(&s);
                return r;
        }
        pthread_t producer;
        r = -pthread_create(&producer, NULL, stream_produce, &s);
        if (r < 0) {
                stream_done(&s);
                return cm_error_set(err, -r, "layer %s: start decompression: %s", layer, strerror(-r));
        }

        struct unpacker u = {.root_fd = root_fd, .layer = layer, .err = err, .cached_fd = -1};
        uint64_t entries = 0;
        u.tar = archive_read_new();
        if (!u.tar) {
                r = cm_error_set(err, ENOMEM, "layer %s: out of memory", layer);
                goto finish;
        }
        archive_read_support_format_tar(u.tar);
        archive_read_support_format_empty(u.tar);
        if (archive_read_open(u.tar, &s, NULL, stream_read_tar, NULL) != ARCHIVE_OK) {
                if (stream_failed(&s)) /* the message is the decompressor's */
                        r = cm_error_set(err, CM_EINVALID, "layer %s: %s", layer, archive_error_string(u.tar));
                else
                        r = cm_error_set(err, CM_EINVALID, "layer %s: not a tar stream: %s", layer,
                                         archive_error_string(u.tar));
                goto finish;
        }
        for (;;) {
                struct archive_entry *e;
                int ar = archive_read_next_header(u.tar, &e);
                if (ar == ARCHIVE_EOF)
                        break;
                if (!archive_ok(ar)) {
                        r = cm_error_set(err, CM_EINVALID, "layer %s: %s", layer, archive_error_string(u.tar));
                        goto finish;
                }
                entries++;
                r = unpack_entry(&u, e);
                if (r < 0)
                        goto finish;
        }
        /* what follows the end-of-archive blocks is part of the layer digest too */
        for (;;) {
                const void *buf;
                ssize_t n = stream_next(&s, &buf);
                if (n == 0)
                        break;
                if (n < 0) {
                        r = cm_error_set(err, CM_EINVALID, "layer %s: %s", layer, s.error);
                        goto finish;
                }
        }
        r = set_dir_times(&u);

finish:
        if (r < 0)
                stream_cancel(&s);
        if (u.tar)
                archive_read_free(u.tar);
        pthread_join(producer, NULL);
        unpacker_done(&u);
        if (r >= 0 && ret_stats) {
                struct unpack_stats st = {.entries = entries, .bytes = s.bytes};
                digest_final(TAKE_PTR(s.digest), st.diff_id);
                *ret_stats = st;
        }
        stream_done(&s);
        return r < 0 ? r : 0;
}
