/* image/unpack: layers built here with libarchive's writer (gzip, zstd, plain) are unpacked and
 * the result checked entry by entry; hostile layers must fail with CM_EUNSAFE and leave nothing
 * outside the destination. Runs as root (owners, devices, trusted.* xattrs). */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <archive.h>
#include <archive_entry.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>

#include "image/unpack.h"
#include "util/digest.h"
#include "util/error.h"
#include "util/fs.h"

/* ---- building layers ---- */

enum { HARDLINK = 1 }; /* a type that is not a file type: the entry is a hardlink to .data */

struct xattr_spec {
        const char *name;
        const void *value;
        size_t size;
};

struct spec {
        const char *name;
        mode_t type; /* AE_IF*, or HARDLINK */
        mode_t perm;
        const char *data; /* file content, symlink target or hardlink target */
        unsigned uid, gid;
        unsigned major, minor;
        time_t mtime;
        long mtime_nsec;
        const struct xattr_spec *xattrs;
        la_int64_t sparse_size; /* a sparse file this big; its data is .data at offset 0 and at 900 KiB */
};

#define FILE_(n, content) {.name = (n), .type = AE_IFREG, .perm = 0644, .data = (content), .mtime = 1000}
#define DIR_(n) {.name = (n), .type = AE_IFDIR, .perm = 0755, .mtime = 1000}
#define LINK_(n, target) {.name = (n), .type = AE_IFLNK, .perm = 0777, .data = (target), .mtime = 1000}
#define HARD_(n, target) {.name = (n), .type = HARDLINK, .data = (target), .mtime = 1000}

enum compression { PLAIN, GZIP, ZSTD };

static void write_layer(const char *path, enum compression c, const struct spec *specs, size_t n) {
        struct archive *a = archive_write_new();
        assert_non_null(a);
        assert_int_equal(archive_write_set_format_pax(a), ARCHIVE_OK);
        if (c == GZIP)
                assert_int_equal(archive_write_add_filter_gzip(a), ARCHIVE_OK);
        else if (c == ZSTD)
                assert_int_equal(archive_write_add_filter_zstd(a), ARCHIVE_OK);
        else
                assert_int_equal(archive_write_add_filter_none(a), ARCHIVE_OK);
        assert_int_equal(archive_write_open_filename(a, path), ARCHIVE_OK);
        for (size_t i = 0; i < n; i++) {
                const struct spec *s = &specs[i];
                struct archive_entry *e = archive_entry_new();
                archive_entry_set_pathname(e, s->name);
                archive_entry_set_uid(e, s->uid);
                archive_entry_set_gid(e, s->gid);
                archive_entry_set_mtime(e, s->mtime, s->mtime_nsec);
                size_t size = 0;
                if (s->type == HARDLINK) {
                        archive_entry_set_filetype(e, AE_IFREG);
                        archive_entry_set_perm(e, 0644);
                        archive_entry_set_hardlink(e, s->data);
                } else {
                        archive_entry_set_filetype(e, s->type);
                        archive_entry_set_perm(e, s->perm);
                        if (s->type == AE_IFREG && s->data)
                                size = strlen(s->data);
                        if (s->type == AE_IFLNK)
                                archive_entry_set_symlink(e, s->data);
                        if (s->type == AE_IFCHR || s->type == AE_IFBLK)
                                archive_entry_set_rdev(e, makedev(s->major, s->minor));
                }
                archive_entry_set_size(e, (la_int64_t)size);
                if (s->sparse_size) {
                        archive_entry_set_size(e, s->sparse_size);
                        archive_entry_sparse_add_entry(e, 0, (la_int64_t)size);
                        archive_entry_sparse_add_entry(e, 900 << 10, (la_int64_t)size);
                }
                for (const struct xattr_spec *x = s->xattrs; x && x->name; x++)
                        archive_entry_xattr_add_entry(e, x->name, x->value, x->size);
                assert_int_equal(archive_write_header(a, e), ARCHIVE_OK);
                if (size && s->sparse_size) {
                        /* the writer takes the logical file, holes included */
                        char *whole = calloc(1, (size_t)s->sparse_size);
                        assert_non_null(whole);
                        memcpy(whole, s->data, size);
                        memcpy(whole + (900 << 10), s->data, size);
                        assert_int_equal(archive_write_data(a, whole, (size_t)s->sparse_size), s->sparse_size);
                        free(whole);
                } else if (size)
                        assert_int_equal(archive_write_data(a, s->data, size), (la_ssize_t)size);
                archive_entry_free(e);
        }
        assert_int_equal(archive_write_close(a), ARCHIVE_OK);
        archive_write_free(a);
}

/* ---- the scene: base/{dest,sentinel/f} ---- */

static char base[64];
static int base_fd = -1, dest_fd = -1;
static char sentinel[128];

static int setup(void **state) {
        strcpy(base, "/tmp/cm-test-unpack-XXXXXX");
        assert_non_null(mkdtemp(base));
        base_fd = open(base, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        assert_true(base_fd >= 0);
        assert_int_equal(mkdirat(base_fd, "dest", 0755), 0);
        assert_int_equal(mkdirat(base_fd, "sentinel", 0755), 0);
        assert_int_equal(fs_write_atomic(base_fd, "sentinel/f", "orig", 4, 0644), 0);
        snprintf(sentinel, sizeof(sentinel), "%s/sentinel", base);
        dest_fd = openat(base_fd, "dest", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        assert_true(dest_fd >= 0);
        return 0;
}

static int teardown(void **state) {
        close(dest_fd);
        close(base_fd);
        assert_int_equal(fs_rm_rf(AT_FDCWD, base), 0);
        return 0;
}

static int unpack_specs(enum compression c, const struct spec *specs, size_t n, struct unpack_stats *st,
                        struct cm_error **err) {
        char path[128];
        snprintf(path, sizeof(path), "%s/layer", base);
        write_layer(path, c, specs, n);
        _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
        assert_true(fd >= 0);
        int r = layer_unpack(fd, dest_fd, "sha256:test", st, err);
        assert_int_equal(unlink(path), 0);
        return r;
}

/* Nothing outside dest: base holds exactly dest and sentinel, sentinel exactly f = "orig". */
static void assert_outside_untouched(void) {
        _cleanup_closedir_ DIR *d = opendir(base);
        assert_non_null(d);
        struct dirent *de;
        int n = 0;
        while ((de = readdir(d))) {
                if (streq(de->d_name, ".") || streq(de->d_name, ".."))
                        continue;
                assert_true(streq(de->d_name, "dest") || streq(de->d_name, "sentinel"));
                n++;
        }
        assert_int_equal(n, 2);
        _cleanup_closedir_ DIR *s = opendir(sentinel);
        assert_non_null(s);
        n = 0;
        while ((de = readdir(s))) {
                if (streq(de->d_name, ".") || streq(de->d_name, ".."))
                        continue;
                assert_string_equal(de->d_name, "f");
                n++;
        }
        assert_int_equal(n, 1);
        _cleanup_free_ char *data = NULL;
        size_t len = 0;
        assert_int_equal(fs_read_all(base_fd, "sentinel/f", 0, &data, &len), 0);
        assert_string_equal(data, "orig");
}

static void assert_unsafe(const struct spec *specs, size_t n) {
        _cleanup_error_ struct cm_error *err = NULL;
        struct unpack_stats st;
        int r = unpack_specs(GZIP, specs, n, &st, &err);
        if (getenv("UNPACK_TEST_VERBOSE"))
                print_message("%s\n", err ? err->message : "(no error)");
        assert_int_equal(r, -CM_EUNSAFE);
        assert_non_null(err);
        assert_int_equal(err->code, CM_EUNSAFE);
        assert_non_null(strstr(err->message, "layer sha256:test: entry '"));
        assert_outside_untouched();
}

static void skip_unless_root(void) {
        if (geteuid() != 0) {
                print_message("not root: owners, devices and trusted.* xattrs need root\n");
                skip();
        }
}

/* ---- names ---- */

static void check_clean(const char *in, const char *want) {
        _cleanup_free_ char *out = NULL;
        _cleanup_error_ struct cm_error *err = NULL;
        int r = unpack_clean_path(in, &out, &err);
        if (!want) {
                assert_int_equal(r, -CM_EUNSAFE);
                assert_non_null(err);
                assert_int_equal(err->code, CM_EUNSAFE);
                assert_null(out);
                return;
        }
        assert_int_equal(r, 0);
        assert_string_equal(out, want);
}

static void test_clean_path(void **state) {
        check_clean("./a//b/", "a/b");
        check_clean("a/./b", "a/b");
        check_clean(".", "");
        check_clean("./", "");
        check_clean("", "");
        check_clean("...", "...");
        check_clean("a/..b/c..", "a/..b/c..");
        check_clean(".wh..wh..opq", ".wh..wh..opq");
        check_clean("/abs", NULL);
        check_clean("//abs", NULL);
        check_clean("..", NULL);
        check_clean("../x", NULL);
        check_clean("a/../b", NULL);
        check_clean("a/../../x", NULL);
        check_clean("a/b/..", NULL);
        check_clean("./../x", NULL);
}

/* ---- a well-formed layer ---- */

/* struct vfs_cap_data, revision 2, CAP_NET_RAW permitted and effective (little endian) */
static const unsigned char cap_net_raw[20] = {0x01, 0x00, 0x00, 0x02, 0x00, 0x20, 0x00, 0x00, 0x00, 0x00,
                                              0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00};
static const struct xattr_spec file_xattrs[] = {
        {"security.capability", cap_net_raw, sizeof(cap_net_raw)},
        {"user.comment", "hi", 2},
        {"trusted.custom", "bin\0ary", 7},
        {"trusted.overlay.redirect", "/elsewhere", 10}, /* must not be taken from the archive */
        {NULL, NULL, 0},
};
static const struct xattr_spec dir_xattrs[] = {
        {"user.dir", "d", 1},
        {NULL, NULL, 0},
};

static const struct spec full_layer[] = {
        {.name = "./", .type = AE_IFDIR, .perm = 0711, .mtime = 1500000000},
        {.name = "etc/", .type = AE_IFDIR, .perm = 0755, .uid = 0, .gid = 0, .mtime = 1600000000},
        {.name = "etc/hello", .type = AE_IFREG, .perm = 0640, .data = "hello\n", .uid = 1000, .gid = 1001,
         .mtime = 1234567890, .mtime_nsec = 500000000},
        {.name = "etc/hello2", .type = HARDLINK, .data = "./etc/hello"},
        {.name = "bin/ping", .type = AE_IFREG, .perm = 04755, .data = "ELF", .uid = 0, .gid = 0,
         .mtime = 1000, .xattrs = file_xattrs},
        {.name = "bin/sg", .type = AE_IFREG, .perm = 02711, .data = "", .uid = 3, .gid = 4, .mtime = 1000},
        {.name = "tmp/", .type = AE_IFDIR, .perm = 01777, .mtime = 1000},
        {.name = "d", .type = AE_IFDIR, .perm = 0750, .uid = 5, .gid = 6, .mtime = 1000000000,
         .xattrs = dir_xattrs},
        {.name = "d/child", .type = AE_IFREG, .perm = 0600, .data = "c", .mtime = 2000000000},
        {.name = "d/sub/", .type = AE_IFDIR, .perm = 0700, .mtime = 1100000000},
        {.name = "d/sub/deeper", .type = AE_IFREG, .perm = 0600, .data = "x", .mtime = 2000000000},
        {.name = "lnk", .type = AE_IFLNK, .perm = 0777, .data = "/etc/hello", .uid = 7, .gid = 8,
         .mtime = 1300000000},
        {.name = "rel", .type = AE_IFLNK, .perm = 0777, .data = "../../../outside", .mtime = 1000},
        {.name = "dev/null", .type = AE_IFCHR, .perm = 0666, .major = 1, .minor = 3, .mtime = 1000},
        {.name = "dev/loop0", .type = AE_IFBLK, .perm = 0660, .major = 7, .minor = 0, .gid = 6, .mtime = 1000},
        {.name = "run/fifo", .type = AE_IFIFO, .perm = 0620, .uid = 9, .mtime = 1000},
        /* whiteouts and opaque directories */
        {.name = "etc/.wh.gone", .type = AE_IFREG, .perm = 0644, .mtime = 1000},
        {.name = "opq/.wh..wh..opq", .type = AE_IFREG, .perm = 0644, .mtime = 1000},
        {.name = "etc/.wh..wh.plnk", .type = AE_IFREG, .perm = 0644, .mtime = 1000},
        /* later entries replace earlier ones; directories merge */
        FILE_("x", "first"),
        LINK_("x", "target"),
        DIR_("m"),
        FILE_("m/a", "a"),
        {.name = "m", .type = AE_IFDIR, .perm = 0700, .uid = 11, .mtime = 1000},
        FILE_("z", "file"),
        DIR_("z"),
        DIR_("w"),
        FILE_("w/inner", "i"),
        FILE_("w", "now a file"),
        FILE_("h1", "one"),
        HARD_("h2", "h1"),
        FILE_("h1", "replaced"),
        FILE_("gone2", "here"),
        {.name = ".wh.gone2", .type = AE_IFREG, .perm = 0644, .mtime = 1000},
};

static void assert_file(const char *path, const char *content, mode_t perm, uid_t uid, gid_t gid) {
        struct stat st;
        assert_int_equal(fstatat(dest_fd, path, &st, AT_SYMLINK_NOFOLLOW), 0);
        assert_true(S_ISREG(st.st_mode));
        assert_int_equal(st.st_mode & 07777, perm);
        assert_int_equal(st.st_uid, uid);
        assert_int_equal(st.st_gid, gid);
        _cleanup_free_ char *data = NULL;
        size_t len = 0;
        assert_int_equal(fs_read_all(dest_fd, path, 0, &data, &len), 0);
        assert_int_equal(len, strlen(content));
        assert_memory_equal(data, content, len);
}

static void assert_xattr(const char *path, const char *name, const void *value, size_t size) {
        char p[256], buf[256];
        snprintf(p, sizeof(p), "%s/dest/%s", base, path);
        ssize_t n = lgetxattr(p, name, buf, sizeof(buf));
        if (!value) {
                assert_int_equal(n, -1);
                assert_int_equal(errno, ENODATA);
                return;
        }
        assert_int_equal(n, (ssize_t)size);
        assert_memory_equal(buf, value, size);
}

static void assert_whiteout(const char *path) {
        struct stat st;
        assert_int_equal(fstatat(dest_fd, path, &st, AT_SYMLINK_NOFOLLOW), 0);
        assert_true(S_ISCHR(st.st_mode));
        assert_int_equal(major(st.st_rdev), 0);
        assert_int_equal(minor(st.st_rdev), 0);
}

static void check_full_layer(enum compression c) {
        skip_unless_root();
        _cleanup_error_ struct cm_error *err = NULL;
        struct unpack_stats st;
        int r = unpack_specs(c, full_layer, ELEMENTSOF(full_layer), &st, &err);
        if (r < 0)
                print_message("%s\n", err ? err->message : "?");
        assert_int_equal(r, 0);
        assert_null(err);
        assert_int_equal(st.entries, ELEMENTSOF(full_layer));
        assert_true(digest_is_valid(st.diff_id));

        /* diff_id and size are those of the uncompressed stream */
        char plain[128], want[DIGEST_STR_MAX];
        snprintf(plain, sizeof(plain), "%s/plain.tar", base);
        write_layer(plain, PLAIN, full_layer, ELEMENTSOF(full_layer));
        _cleanup_close_ int pfd = open(plain, O_RDONLY | O_CLOEXEC);
        unsigned long long size = 0;
        assert_int_equal(digest_fd(pfd, want, &size), 0);
        assert_int_equal(unlink(plain), 0);
        assert_string_equal(st.diff_id, want);
        assert_int_equal(st.bytes, size);

        struct stat s;
        assert_int_equal(fstat(dest_fd, &s), 0);
        assert_int_equal(s.st_mode & 07777, 0711);
        assert_int_equal(s.st_mtim.tv_sec, 1500000000);

        assert_file("etc/hello", "hello\n", 0640, 1000, 1001);
        assert_int_equal(fstatat(dest_fd, "etc/hello", &s, AT_SYMLINK_NOFOLLOW), 0);
        assert_int_equal(s.st_mtim.tv_sec, 1234567890);
        assert_int_equal(s.st_mtim.tv_nsec, 500000000);
        assert_int_equal(s.st_nlink, 2);
        struct stat s2;
        assert_int_equal(fstatat(dest_fd, "etc/hello2", &s2, AT_SYMLINK_NOFOLLOW), 0);
        assert_int_equal(s.st_ino, s2.st_ino);
        assert_int_equal(fstatat(dest_fd, "etc", &s, AT_SYMLINK_NOFOLLOW), 0);
        assert_int_equal(s.st_mtim.tv_sec, 1600000000);

        /* setuid survives chown; capabilities survive chown; overlay xattrs are not taken */
        assert_file("bin/ping", "ELF", 04755, 0, 0);
        assert_xattr("bin/ping", "security.capability", cap_net_raw, sizeof(cap_net_raw));
        assert_xattr("bin/ping", "user.comment", "hi", 2);
        assert_xattr("bin/ping", "trusted.custom", "bin\0ary", 7);
        assert_xattr("bin/ping", "trusted.overlay.redirect", NULL, 0);
        assert_file("bin/sg", "", 02711, 3, 4);
        assert_int_equal(fstatat(dest_fd, "bin", &s, AT_SYMLINK_NOFOLLOW), 0); /* implied parent */
        assert_true(S_ISDIR(s.st_mode));
        assert_int_equal(s.st_mode & 07777, 0755);

        assert_int_equal(fstatat(dest_fd, "tmp", &s, AT_SYMLINK_NOFOLLOW), 0);
        assert_int_equal(s.st_mode & 07777, 01777);
        /* directory times are those of the archive although children were created later */
        assert_int_equal(fstatat(dest_fd, "d", &s, AT_SYMLINK_NOFOLLOW), 0);
        assert_int_equal(s.st_mode & 07777, 0750);
        assert_int_equal(s.st_uid, 5);
        assert_int_equal(s.st_gid, 6);
        assert_int_equal(s.st_mtim.tv_sec, 1000000000);
        assert_xattr("d", "user.dir", "d", 1);
        assert_int_equal(fstatat(dest_fd, "d/sub", &s, AT_SYMLINK_NOFOLLOW), 0);
        assert_int_equal(s.st_mtim.tv_sec, 1100000000);
        assert_int_equal(fstatat(dest_fd, "d/sub/deeper", &s, AT_SYMLINK_NOFOLLOW), 0);
        assert_int_equal(s.st_mtim.tv_sec, 2000000000);

        /* symlinks are stored as they are */
        char target[64];
        ssize_t n = readlinkat(dest_fd, "lnk", target, sizeof(target));
        assert_int_equal(n, 10);
        assert_memory_equal(target, "/etc/hello", 10);
        assert_int_equal(fstatat(dest_fd, "lnk", &s, AT_SYMLINK_NOFOLLOW), 0);
        assert_true(S_ISLNK(s.st_mode));
        assert_int_equal(s.st_uid, 7);
        assert_int_equal(s.st_gid, 8);
        assert_int_equal(s.st_mtim.tv_sec, 1300000000);
        n = readlinkat(dest_fd, "rel", target, sizeof(target));
        assert_int_equal(n, 16);

        assert_int_equal(fstatat(dest_fd, "dev/null", &s, AT_SYMLINK_NOFOLLOW), 0);
        assert_true(S_ISCHR(s.st_mode));
        assert_int_equal(s.st_rdev, makedev(1, 3));
        assert_int_equal(s.st_mode & 07777, 0666);
        assert_int_equal(fstatat(dest_fd, "dev/loop0", &s, AT_SYMLINK_NOFOLLOW), 0);
        assert_true(S_ISBLK(s.st_mode));
        assert_int_equal(s.st_rdev, makedev(7, 0));
        assert_int_equal(s.st_gid, 6);
        assert_int_equal(s.st_mode & 07777, 0660);
        assert_int_equal(fstatat(dest_fd, "run/fifo", &s, AT_SYMLINK_NOFOLLOW), 0);
        assert_true(S_ISFIFO(s.st_mode));
        assert_int_equal(s.st_mode & 07777, 0620);
        assert_int_equal(s.st_uid, 9);

        assert_whiteout("etc/gone");
        assert_int_equal(faccessat(dest_fd, "etc/.wh.gone", F_OK, AT_SYMLINK_NOFOLLOW), -1);
        assert_int_equal(faccessat(dest_fd, "etc/.wh..wh.plnk", F_OK, AT_SYMLINK_NOFOLLOW), -1);
        assert_int_equal(faccessat(dest_fd, "etc/plnk", F_OK, AT_SYMLINK_NOFOLLOW), -1);
        assert_int_equal(fstatat(dest_fd, "opq", &s, AT_SYMLINK_NOFOLLOW), 0);
        assert_true(S_ISDIR(s.st_mode));
        assert_xattr("opq", "trusted.overlay.opaque", "y", 1);
        assert_int_equal(faccessat(dest_fd, "opq/.wh..wh..opq", F_OK, AT_SYMLINK_NOFOLLOW), -1);

        n = readlinkat(dest_fd, "x", target, sizeof(target));
        assert_int_equal(n, 6);
        assert_file("m/a", "a", 0644, 0, 0);
        assert_int_equal(fstatat(dest_fd, "m", &s, AT_SYMLINK_NOFOLLOW), 0);
        assert_int_equal(s.st_mode & 07777, 0700);
        assert_int_equal(s.st_uid, 11);
        assert_int_equal(fstatat(dest_fd, "z", &s, AT_SYMLINK_NOFOLLOW), 0);
        assert_true(S_ISDIR(s.st_mode));
        assert_file("w", "now a file", 0644, 0, 0);
        /* replacing h1 does not write into the inode h2 shares */
        assert_file("h1", "replaced", 0644, 0, 0);
        assert_file("h2", "one", 0644, 0, 0);
        assert_whiteout("gone2");
        assert_outside_untouched();
}

static void test_full_plain(void **state) { check_full_layer(PLAIN); }
static void test_full_gzip(void **state) { check_full_layer(GZIP); }
static void test_full_zstd(void **state) { check_full_layer(ZSTD); }

static void test_large_file(void **state) {
        skip_unless_root();
        size_t size = 5u << 20; /* spans many read blocks and ring slots */
        char *big = malloc(size + 1);
        assert_non_null(big);
        for (size_t i = 0; i < size; i++)
                big[i] = (char)('a' + (i * 7919 % 26));
        big[size] = '\0';
        const struct spec specs[] = {
                {.name = "big", .type = AE_IFREG, .perm = 0644, .data = big, .mtime = 1},
                FILE_("after", "ok"),
        };
        _cleanup_error_ struct cm_error *err = NULL;
        struct unpack_stats st;
        assert_int_equal(unpack_specs(GZIP, specs, ELEMENTSOF(specs), &st, &err), 0);
        assert_file("big", big, 0644, 0, 0);
        assert_file("after", "ok", 0644, 0, 0);
        free(big);
}

/* Incompressible text (no NUL: specs take strings). */
static char *make_noise(size_t size) {
        char *noise = malloc(size + 1);
        assert_non_null(noise);
        uint32_t x = 2463534242u;
        for (size_t i = 0; i < size; i++) {
                x ^= x << 13, x ^= x >> 17, x ^= x << 5;
                noise[i] = (char)('!' + x % 90);
        }
        noise[size] = '\0';
        return noise;
}

static void test_sparse_file(void **state) {
        skip_unless_root();
        const struct spec specs[] = {
                {.name = "sparse", .type = AE_IFREG, .perm = 0644, .data = "DATA", .sparse_size = 1 << 20, .mtime = 1},
        };
        _cleanup_error_ struct cm_error *err = NULL;
        struct unpack_stats st;
        int r = unpack_specs(PLAIN, specs, ELEMENTSOF(specs), &st, &err);
        if (r < 0)
                print_message("%s\n", err ? err->message : "?");
        assert_int_equal(r, 0);
        _cleanup_free_ char *data = NULL;
        size_t len = 0;
        assert_int_equal(fs_read_all(dest_fd, "sparse", 0, &data, &len), 0);
        assert_int_equal(len, 1 << 20);
        assert_memory_equal(data, "DATA", 4);
        assert_memory_equal(data + (900 << 10), "DATA", 4);
        assert_int_equal(data[4], 0);
        assert_int_equal(data[(1 << 20) - 1], 0);
}

static void test_empty_layers(void **state) {
        _cleanup_error_ struct cm_error *err = NULL;
        struct unpack_stats st;
        /* no bytes at all, and a tar of nothing but its end blocks */
        assert_int_equal(unpack_specs(PLAIN, NULL, 0, &st, &err), 0);
        assert_int_equal(st.entries, 0);
        assert_true(st.bytes > 0);
        char path[128];
        snprintf(path, sizeof(path), "%s/layer", base);
        assert_int_equal(fs_write_atomic(base_fd, "layer", "", 0, 0644), 0);
        _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
        assert_int_equal(layer_unpack(fd, dest_fd, "sha256:test", &st, &err), 0);
        assert_int_equal(st.bytes, 0);
        assert_string_equal(st.diff_id, "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
        assert_int_equal(unlink(path), 0);
}

/* A refused entry early in a stream that is still arriving: the unpack must return at once,
 * not wait for the writer to finish. */
struct feeder {
        int fd;
        const char *data;
        size_t len;
        pthread_mutex_t lock;
        pthread_cond_t cond;
        bool done;
};

static void *feed(void *userdata) {
        struct feeder *f = userdata;
        size_t off = 0;
        while (off < f->len) {
                ssize_t n = write(f->fd, f->data + off, f->len - off);
                if (n <= 0)
                        break;
                off += (size_t)n;
        }
        pthread_mutex_lock(&f->lock);
        while (!f->done)
                pthread_cond_wait(&f->cond, &f->lock);
        pthread_mutex_unlock(&f->lock);
        close(f->fd);
        return NULL;
}

static void test_error_while_streaming(void **state) {
        char path[128];
        snprintf(path, sizeof(path), "%s/layer", base);
        char *noise = make_noise(4u << 20);
        const struct spec specs[] = {FILE_("../x", "pwned"), FILE_("noise", noise)};
        write_layer(path, GZIP, specs, ELEMENTSOF(specs));
        free(noise);
        _cleanup_free_ char *data = NULL;
        size_t len = 0;
        assert_int_equal(fs_read_all(base_fd, "layer", 0, &data, &len), 0);
        assert_int_equal(unlink(path), 0);

        int p[2];
        assert_int_equal(pipe2(p, O_CLOEXEC), 0);
        /* the first half only, and the writer keeps the pipe open */
        struct feeder f = {.fd = p[1], .data = data, .len = len / 2,
                           .lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER};
        pthread_t t;
        assert_int_equal(pthread_create(&t, NULL, feed, &f), 0);
        _cleanup_error_ struct cm_error *err = NULL;
        struct unpack_stats st;
        int r = layer_unpack(p[0], dest_fd, "sha256:test", &st, &err);
        close(p[0]); /* the writer may still be blocked writing */
        pthread_mutex_lock(&f.lock);
        f.done = true;
        pthread_cond_signal(&f.cond);
        pthread_mutex_unlock(&f.lock);
        pthread_join(t, NULL);
        assert_int_equal(r, -CM_EUNSAFE);
        assert_outside_untouched();
}

static void test_truncated_gzip(void **state) {
        skip_unless_root();
        char *noise = make_noise(1u << 20);
        const struct spec specs[] = {{.name = "noise", .type = AE_IFREG, .perm = 0644, .data = noise, .mtime = 1}};
        char path[128];
        snprintf(path, sizeof(path), "%s/layer", base);
        write_layer(path, GZIP, specs, 1);
        free(noise);
        struct stat s;
        assert_int_equal(stat(path, &s), 0);
        assert_int_equal(truncate(path, s.st_size / 2), 0);

        _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
        _cleanup_error_ struct cm_error *err = NULL;
        struct unpack_stats st;
        int r = layer_unpack(fd, dest_fd, "sha256:test", &st, &err);
        assert_true(r < 0);
        assert_non_null(err);
        assert_non_null(strstr(err->message, "layer sha256:test"));
        assert_int_equal(unlink(path), 0);
}

static void test_garbage(void **state) {
        char path[128];
        snprintf(path, sizeof(path), "%s/layer", base);
        assert_int_equal(fs_write_atomic(base_fd, "layer", "this is not a tar archive at all", 32, 0644), 0);
        _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
        _cleanup_error_ struct cm_error *err = NULL;
        struct unpack_stats st;
        assert_true(layer_unpack(fd, dest_fd, "sha256:test", &st, &err) < 0);
        assert_non_null(err);
        assert_int_equal(unlink(path), 0);
}

static void test_damaged_header(void **state) {
        const struct spec specs[] = {FILE_("first", "1"), FILE_("second", "2")};
        char path[128];
        snprintf(path, sizeof(path), "%s/layer", base);
        write_layer(path, PLAIN, specs, ELEMENTSOF(specs));
        _cleanup_free_ char *data = NULL;
        size_t len = 0;
        assert_int_equal(fs_read_all(base_fd, "layer", 0, &data, &len), 0);
        /* a header whose checksum no longer matches: libarchive could skip it, we must not */
        size_t off = 0;
        while (off + 512 <= len && !(memcmp(data + off, "second", 6) == 0 && memcmp(data + off + 257, "ustar", 5) == 0))
                off += 512;
        assert_true(off + 512 <= len);
        data[off] = 'S';
        assert_int_equal(fs_write_atomic(base_fd, "layer", data, len, 0644), 0);
        _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
        _cleanup_error_ struct cm_error *err = NULL;
        struct unpack_stats st;
        assert_true(layer_unpack(fd, dest_fd, "sha256:test", &st, &err) < 0);
        assert_non_null(err);
        assert_int_equal(faccessat(dest_fd, "Second", F_OK, AT_SYMLINK_NOFOLLOW), -1);
        assert_int_equal(unlink(path), 0);
}

static void test_double_compression(void **state) {
        char path[128];
        snprintf(path, sizeof(path), "%s/layer", base);
        struct archive *a = archive_write_new();
        assert_int_equal(archive_write_set_format_pax(a), ARCHIVE_OK);
        assert_int_equal(archive_write_add_filter_gzip(a), ARCHIVE_OK);
        assert_int_equal(archive_write_add_filter_gzip(a), ARCHIVE_OK);
        assert_int_equal(archive_write_open_filename(a, path), ARCHIVE_OK);
        assert_int_equal(archive_write_close(a), ARCHIVE_OK);
        archive_write_free(a);
        _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
        _cleanup_error_ struct cm_error *err = NULL;
        struct unpack_stats st;
        assert_true(layer_unpack(fd, dest_fd, "sha256:test", &st, &err) < 0);
        assert_non_null(err);
        assert_non_null(strstr(err->message, "more than once"));
        assert_int_equal(unlink(path), 0);
}

/* ---- attacks ---- */

static void test_attack_dotdot(void **state) {
        const struct spec specs[] = {FILE_("ok", "fine"), FILE_("../x", "pwned")};
        assert_unsafe(specs, ELEMENTSOF(specs));
}

static void test_attack_absolute(void **state) {
        char name[192];
        snprintf(name, sizeof(name), "%s/abs", sentinel);
        const struct spec specs[] = {FILE_(name, "pwned")};
        assert_unsafe(specs, ELEMENTSOF(specs));
}

static void test_attack_dotdot_inside(void **state) {
        const struct spec specs[] = {DIR_("a"), FILE_("a/../../x", "pwned")};
        assert_unsafe(specs, ELEMENTSOF(specs));
}

static void test_attack_symlink_then_write(void **state) {
        skip_unless_root();
        const struct spec specs[] = {LINK_("l", sentinel), FILE_("l/pwned", "pwned")};
        assert_unsafe(specs, ELEMENTSOF(specs));
}

static void test_attack_symlink_then_mkdir(void **state) {
        skip_unless_root();
        const struct spec specs[] = {LINK_("l", sentinel), DIR_("l/sub/")};
        assert_unsafe(specs, ELEMENTSOF(specs));
}

static void test_attack_symlink_then_whiteout(void **state) {
        skip_unless_root();
        const struct spec specs[] = {LINK_("l", sentinel), FILE_("l/.wh.f", "")};
        assert_unsafe(specs, ELEMENTSOF(specs));
}

static void test_attack_symlink_then_opaque(void **state) {
        skip_unless_root();
        const struct spec specs[] = {LINK_("l", sentinel), FILE_("l/.wh..wh..opq", "")};
        assert_unsafe(specs, ELEMENTSOF(specs));
        char buf[8];
        assert_int_equal(getxattr(sentinel, "trusted.overlay.opaque", buf, sizeof(buf)), -1);
}

static void test_attack_nested_symlink(void **state) {
        skip_unless_root();
        const struct spec specs[] = {DIR_("a"), LINK_("a/b", sentinel), FILE_("a/b/c/pwned", "pwned")};
        assert_unsafe(specs, ELEMENTSOF(specs));
}

static void test_attack_symlink_dotdot(void **state) {
        skip_unless_root();
        const struct spec specs[] = {DIR_("a"), LINK_("a/up", ".."), LINK_("a/up2", "../.."),
                                     FILE_("a/up2/pwned", "pwned")};
        assert_unsafe(specs, ELEMENTSOF(specs));
        const struct spec specs2[] = {LINK_("up", ".."), FILE_("up/pwned", "pwned")};
        assert_unsafe(specs2, ELEMENTSOF(specs2));
}

static void test_attack_hardlink_outside(void **state) {
        skip_unless_root();
        struct stat before, after;
        assert_int_equal(stat("/etc/passwd", &before), 0);
        const struct spec specs[] = {HARD_("passwd", "../../etc/passwd")};
        assert_unsafe(specs, ELEMENTSOF(specs));
        const struct spec specs2[] = {HARD_("passwd", "/etc/passwd")};
        assert_unsafe(specs2, ELEMENTSOF(specs2));
        assert_int_equal(stat("/etc/passwd", &after), 0);
        assert_int_equal(before.st_nlink, after.st_nlink);
        assert_int_equal(faccessat(dest_fd, "passwd", F_OK, AT_SYMLINK_NOFOLLOW), -1);
}

static void test_attack_hardlink_through_symlink(void **state) {
        skip_unless_root();
        const struct spec specs[] = {LINK_("l", sentinel), HARD_("h", "l/f")};
        assert_unsafe(specs, ELEMENTSOF(specs));
}

static void test_attack_hardlink_to_symlink(void **state) {
        skip_unless_root();
        char f[192];
        snprintf(f, sizeof(f), "%s/f", sentinel);
        /* h becomes the symlink itself; writing through it must fail */
        const struct spec specs[] = {LINK_("s", sentinel), HARD_("h", "s"), FILE_("h/pwned", "pwned")};
        assert_unsafe(specs, ELEMENTSOF(specs));

        /* a file over such a name replaces the link and never writes to its target */
        assert_int_equal(fs_rm_rf(base_fd, "dest"), 0);
        assert_int_equal(mkdirat(base_fd, "dest", 0755), 0);
        close(dest_fd);
        dest_fd = openat(base_fd, "dest", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        const struct spec specs2[] = {LINK_("s", f), HARD_("h", "s"), FILE_("h", "pwned"), FILE_("s", "pwned")};
        _cleanup_error_ struct cm_error *err = NULL;
        struct unpack_stats st;
        assert_int_equal(unpack_specs(GZIP, specs2, ELEMENTSOF(specs2), &st, &err), 0);
        assert_file("h", "pwned", 0644, 0, 0);
        assert_file("s", "pwned", 0644, 0, 0);
        assert_outside_untouched();
}

static void test_attack_replace_root(void **state) {
        const struct spec specs[] = {LINK_(".", sentinel), FILE_("x", "pwned")};
        assert_unsafe(specs, ELEMENTSOF(specs));
        const struct spec specs2[] = {FILE_(".wh..", "")};
        assert_unsafe(specs2, ELEMENTSOF(specs2));
}

int main(void) {
        signal(SIGPIPE, SIG_IGN);
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_clean_path),
                cmocka_unit_test_setup_teardown(test_full_plain, setup, teardown),
                cmocka_unit_test_setup_teardown(test_full_gzip, setup, teardown),
                cmocka_unit_test_setup_teardown(test_full_zstd, setup, teardown),
                cmocka_unit_test_setup_teardown(test_large_file, setup, teardown),
                cmocka_unit_test_setup_teardown(test_sparse_file, setup, teardown),
                cmocka_unit_test_setup_teardown(test_empty_layers, setup, teardown),
                cmocka_unit_test_setup_teardown(test_error_while_streaming, setup, teardown),
                cmocka_unit_test_setup_teardown(test_truncated_gzip, setup, teardown),
                cmocka_unit_test_setup_teardown(test_garbage, setup, teardown),
                cmocka_unit_test_setup_teardown(test_damaged_header, setup, teardown),
                cmocka_unit_test_setup_teardown(test_double_compression, setup, teardown),
                cmocka_unit_test_setup_teardown(test_attack_dotdot, setup, teardown),
                cmocka_unit_test_setup_teardown(test_attack_absolute, setup, teardown),
                cmocka_unit_test_setup_teardown(test_attack_dotdot_inside, setup, teardown),
                cmocka_unit_test_setup_teardown(test_attack_symlink_then_write, setup, teardown),
                cmocka_unit_test_setup_teardown(test_attack_symlink_then_mkdir, setup, teardown),
                cmocka_unit_test_setup_teardown(test_attack_symlink_then_whiteout, setup, teardown),
                cmocka_unit_test_setup_teardown(test_attack_symlink_then_opaque, setup, teardown),
                cmocka_unit_test_setup_teardown(test_attack_nested_symlink, setup, teardown),
                cmocka_unit_test_setup_teardown(test_attack_symlink_dotdot, setup, teardown),
                cmocka_unit_test_setup_teardown(test_attack_hardlink_outside, setup, teardown),
                cmocka_unit_test_setup_teardown(test_attack_hardlink_through_symlink, setup, teardown),
                cmocka_unit_test_setup_teardown(test_attack_hardlink_to_symlink, setup, teardown),
                cmocka_unit_test_setup_teardown(test_attack_replace_root, setup, teardown),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
