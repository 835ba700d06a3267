/* Mounts of a machine: the overlay root (in the runtime's own mount namespace), and in the
 * init child the machine's /dev, /proc, /sys, /sys/fs/cgroup, home, console and pivot_root.
 * Also the helpers every file of the sandbox uses to touch files inside the (untrusted)
 * machine root: all of them resolve relative to the root fd with RESOLVE_IN_ROOT. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/openat2.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "sandbox/sandbox-internal.h"
#include "util/fs.h"
#include "util/macro.h"

int sb_openat_root(int root_fd, const char *path, int flags, mode_t mode) {
        struct open_how how = {
                .flags = (uint64_t)(flags | O_CLOEXEC),
                .mode = (flags & (O_CREAT | O_TMPFILE)) ? mode : 0,
                .resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS,
        };
        while (*path == '/')
                path++;
        if (!*path)
                path = ".";
        int fd = (int)syscall(SYS_openat2, root_fd, path, &how, sizeof how);
        return fd < 0 ? -errno : fd;
}

int sb_read_file(int root_fd, const char *path, size_t max, char **ret) {
        _cleanup_close_ int fd = sb_openat_root(root_fd, path, O_RDONLY | O_NOCTTY | O_NONBLOCK, 0);
        if (fd < 0)
                return fd;
        struct stat st;
        if (fstat(fd, &st) < 0)
                return -errno;
        if (!S_ISREG(st.st_mode))
                return -EINVAL;
        return fs_read_fd(fd, max ? max : 16u << 20, ret, NULL);
}

static int split_path(const char *path, char *dir, size_t dirsz, const char **base) {
        const char *slash = strrchr(path, '/');
        const char *b = slash ? slash + 1 : path;
        if (!*b || streq(b, ".") || streq(b, ".."))
                return -EINVAL;
        int n = snprintf(dir, dirsz, "%.*s", slash ? (int)(slash - path) : 0, path);
        if (n < 0 || (size_t)n >= dirsz)
                return -ENAMETOOLONG;
        if (!*dir)
                snprintf(dir, dirsz, "/");
        *base = b;
        return 0;
}

int sb_write_file(int root_fd, const char *path, const char *data, size_t len, mode_t mode, uid_t uid, gid_t gid) {
        char dir[PATH_MAX], tmp[NAME_MAX + 1];
        const char *base;
        int r = split_path(path, dir, sizeof dir, &base);
        if (r < 0)
                return r;
        _cleanup_close_ int dfd = sb_openat_root(root_fd, dir, O_PATH | O_DIRECTORY, 0);
        if (dfd < 0)
                return dfd;
        snprintf(tmp, sizeof tmp, ".#cm.%.200s.%ld", base, (long)getpid());
        unlinkat(dfd, tmp, 0);
        _cleanup_close_ int fd = openat(dfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode);
        if (fd < 0)
                return -errno;
        r = fs_write_all(fd, data, len);
        if (r < 0) {
                errno = -r;
                goto fail;
        }
        if (fchown(fd, uid, gid) < 0 || fchmod(fd, mode) < 0 || fsync(fd) < 0)
                goto fail;
        /* rename replaces a symlink at the name itself, it never writes through it */
        if (renameat(dfd, tmp, dfd, base) < 0)
                goto fail;
        return 0;
fail:
        r = -errno;
        unlinkat(dfd, tmp, 0);
        return r;
}

int sb_mkdir_p_root(int root_fd, const char *path, mode_t mode) {
        char prefix[PATH_MAX];
        size_t plen = 0;
        prefix[0] = 0;
        const char *p = path;
        for (;;) {
                while (*p == '/')
                        p++;
                if (!*p)
                        break;
                size_t n = strcspn(p, "/");
                if (n == 2 && p[0] == '.' && p[1] == '.')
                        return -EINVAL;
                if (plen + n + 2 >= sizeof prefix)
                        return -ENAMETOOLONG;
                char comp[NAME_MAX + 1];
                if (n > NAME_MAX)
                        return -ENAMETOOLONG;
                memcpy(comp, p, n);
                comp[n] = 0;
                _cleanup_close_ int parent = sb_openat_root(root_fd, plen ? prefix : "/", O_PATH | O_DIRECTORY, 0);
                if (parent < 0)
                        return parent;
                if (mkdirat(parent, comp, mode) == 0)
                        (void)fchmodat(parent, comp, mode, 0); /* whatever the runtime's umask */
                else if (errno != EEXIST)
                        return -errno;
                prefix[plen++] = '/';
                memcpy(prefix + plen, p, n);
                plen += n;
                prefix[plen] = 0;
                p += n;
        }
        return sb_openat_root(root_fd, plen ? prefix : "/", O_PATH | O_DIRECTORY, 0);
}

int sb_resolve_in_root(int root_fd, const char *path, char **ret) {
        _cleanup_close_ int fd = sb_openat_root(root_fd, path, O_PATH, 0);
        if (fd < 0)
                return fd;
        char proc[64], target[PATH_MAX], rootp[PATH_MAX];
        snprintf(proc, sizeof proc, "/proc/self/fd/%d", fd);
        ssize_t n = readlink(proc, target, sizeof target - 1);
        if (n < 0)
                return -errno;
        target[n] = 0;
        snprintf(proc, sizeof proc, "/proc/self/fd/%d", root_fd);
        ssize_t m = readlink(proc, rootp, sizeof rootp - 1);
        if (m < 0)
                return -errno;
        rootp[m] = 0;
        const char *rel = target;
        if (m > 1 && strncmp(target, rootp, (size_t)m) == 0 && (target[m] == '/' || target[m] == 0))
                rel = target + m;
        char *s = strdup(*rel ? rel : "/");
        if (!s)
                return -ENOMEM;
        *ret = s;
        return 0;
}

/* ---- the overlay root ---- */

static int overlay_mount_fsapi(const struct sandbox_spec *spec) {
        _cleanup_close_ int fs = fsopen("overlay", FSOPEN_CLOEXEC);
        if (fs < 0)
                return -errno;
        size_t n = 0;
        while (spec->lowerdirs[n])
                n++;
        /* lowerdir+ takes the layers top first, one per call: no escaping, no page limit */
        for (size_t i = n; i > 0; i--)
                if (fsconfig(fs, FSCONFIG_SET_STRING, "lowerdir+", spec->lowerdirs[i - 1], 0) < 0)
                        return -errno;
        if (fsconfig(fs, FSCONFIG_SET_STRING, "upperdir", spec->upperdir, 0) < 0 ||
            fsconfig(fs, FSCONFIG_SET_STRING, "workdir", spec->workdir, 0) < 0 ||
            fsconfig(fs, FSCONFIG_CMD_CREATE, NULL, NULL, 0) < 0)
                return -errno;
        _cleanup_close_ int mnt = fsmount(fs, FSMOUNT_CLOEXEC, 0);
        if (mnt < 0)
                return -errno;
        if (move_mount(mnt, "", AT_FDCWD, spec->rootfs, MOVE_MOUNT_F_EMPTY_PATH) < 0)
                return -errno;
        return 0;
}

static int overlay_mount_legacy(const struct sandbox_spec *spec) {
        size_t cap = 64;
        for (size_t i = 0; spec->lowerdirs[i]; i++)
                cap += strlen(spec->lowerdirs[i]) + 1;
        cap += strlen(spec->upperdir) + strlen(spec->workdir);
        _cleanup_free_ char *opts = malloc(cap);
        if (!opts)
                return -ENOMEM;
        size_t n = 0, len = 0;
        while (spec->lowerdirs[n])
                n++;
        len += (size_t)sprintf(opts, "lowerdir=");
        for (size_t i = n; i > 0; i--) {
                const char *l = spec->lowerdirs[i - 1];
                if (strpbrk(l, ",:\\"))
                        return -EINVAL;
                len += (size_t)sprintf(opts + len, "%s%s", l, i > 1 ? ":" : "");
        }
        sprintf(opts + len, ",upperdir=%s,workdir=%s", spec->upperdir, spec->workdir);
        if (mount("overlay", spec->rootfs, "overlay", 0, opts) < 0)
                return -errno;
        return 0;
}

int sb_mount_overlay(const struct sandbox_spec *spec, struct cm_error **err) {
        int r = overlay_mount_fsapi(spec);
        if (r == -EINVAL || r == -ENOSYS)
                r = overlay_mount_legacy(spec);
        if (r < 0)
                return cm_error_set(err, -r, "mount overlay on %s: %s", spec->rootfs, strerror(-r));
        return 0;
}

/* ---- in the init child ---- */

static int attach(int tree, int dirfd, const char *path) {
        if (move_mount(tree, "", dirfd, path, MOVE_MOUNT_F_EMPTY_PATH | (*path ? 0 : MOVE_MOUNT_T_EMPTY_PATH)) < 0)
                return -errno;
        return 0;
}

/* A new filesystem instance, detached; the caller attaches it. */
static int new_fs(const char *type, const char *const *opts, unsigned attrs) {
        _cleanup_close_ int fs = fsopen(type, FSOPEN_CLOEXEC);
        if (fs < 0)
                return -errno;
        for (size_t i = 0; opts && opts[i]; i += 2)
                if (fsconfig(fs, opts[i + 1] ? FSCONFIG_SET_STRING : FSCONFIG_SET_FLAG, opts[i], opts[i + 1], 0) < 0)
                        return -errno;
        if (fsconfig(fs, FSCONFIG_CMD_CREATE, NULL, NULL, 0) < 0)
                return -errno;
        int mnt = fsmount(fs, FSMOUNT_CLOEXEC, attrs);
        return mnt < 0 ? -errno : mnt;
}

/* Bind dirfd/path over itself read-only (recursively). Missing paths are skipped. */
static int bind_ro(int dirfd, const char *path) {
        _cleanup_close_ int tree = open_tree(dirfd, path, OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_RECURSIVE);
        if (tree < 0)
                return errno == ENOENT ? 0 : -errno;
        struct mount_attr a = {.attr_set =
                                       MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC};
        if (mount_setattr(tree, "", AT_EMPTY_PATH | AT_RECURSIVE, &a, sizeof a) < 0)
                return -errno;
        return attach(tree, dirfd, path);
}

/* Hide a file under /proc behind /dev/null. */
static int mask_file(int procfd, const char *path, int devfd) {
        struct stat st;
        if (fstatat(procfd, path, &st, 0) < 0)
                return 0;
        _cleanup_close_ int tree = open_tree(devfd, "null", OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC);
        if (tree < 0)
                return -errno;
        return attach(tree, procfd, path);
}

static int make_dev_node(int devfd, const char *name, dev_t dev) {
        if (!name)
                return -EINVAL;
        if (mknodat(devfd, name, S_IFCHR | 0666, dev) == 0) {
                (void)fchmodat(devfd, name, 0666, 0);
                return 0;
        }
        /* Without CAP_MKNOD (nested): bind the host's node over an empty file. */
        char host[64];
        snprintf(host, sizeof host, "/dev/%s", name);
        int fd = openat(devfd, name, O_CREAT | O_WRONLY | O_CLOEXEC | O_NOFOLLOW, 0666);
        if (fd < 0)
                return -errno;
        close(fd);
        _cleanup_close_ int tree = open_tree(AT_FDCWD, host, OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC);
        if (tree < 0)
                return -errno;
        return attach(tree, devfd, name);
}

static int setup_dev(int root, int console_fd, const char **step) {
        static const char *const dev_opts[] = {"mode", "0755", "size", "4m", "nr_inodes", "64k", NULL};
        *step = "mount /dev";
        int r = mkdirat(root, "dev", 0755) < 0 && errno != EEXIST ? -errno : 0;
        if (r < 0)
                return r;
        _cleanup_close_ int devmnt = new_fs("tmpfs", dev_opts, MOUNT_ATTR_NOSUID | MOUNT_ATTR_NOEXEC);
        if (devmnt < 0)
                return devmnt;
        _cleanup_close_ int devdir = sb_openat_root(root, "dev", O_PATH | O_DIRECTORY | O_NOFOLLOW, 0);
        if (devdir < 0)
                return devdir;
        if ((r = attach(devmnt, devdir, "")) < 0)
                return r;
        int dev = devmnt; /* the fd now names the attached tmpfs' root */

        static const struct {
                const char *name;
                unsigned ma, mi;
        } nodes[] = {
                {"null", 1, 3}, {"zero", 1, 5}, {"full", 1, 7}, {"random", 1, 8}, {"urandom", 1, 9}, {"tty", 5, 0},
        };
        *step = "create /dev nodes";
        for (size_t i = 0; i < ELEMENTSOF(nodes); i++)
                if ((r = make_dev_node(dev, nodes[i].name, makedev(nodes[i].ma, nodes[i].mi))) < 0)
                        return r;

        *step = "mount /dev/pts";
        static const char *const pts_opts[] = {"newinstance", NULL,  "ptmxmode", "0666", "mode",
                                               "0620",        "gid", "5",        NULL};
        if (mkdirat(dev, "pts", 0755) < 0)
                return -errno;
        _cleanup_close_ int pts = new_fs("devpts", pts_opts, MOUNT_ATTR_NOSUID | MOUNT_ATTR_NOEXEC);
        if (pts < 0)
                return pts;
        if ((r = attach(pts, dev, "pts")) < 0)
                return r;
        if (symlinkat("pts/ptmx", dev, "ptmx") < 0)
                return -errno;

        *step = "mount /dev/shm";
        static const char *const shm_opts[] = {"mode", "01777", NULL};
        if (mkdirat(dev, "shm", 01777) < 0)
                return -errno;
        _cleanup_close_ int shm = new_fs("tmpfs", shm_opts, MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV);
        if (shm < 0)
                return shm;
        if ((r = attach(shm, dev, "shm")) < 0)
                return r;

        *step = "/dev links";
        static const char *const links[][2] = {
                {"/proc/self/fd", "fd"},
                {"/proc/self/fd/0", "stdin"},
                {"/proc/self/fd/1", "stdout"},
                {"/proc/self/fd/2", "stderr"},
        };
        for (size_t i = 0; i < ELEMENTSOF(links); i++)
                if (symlinkat(links[i][0], dev, links[i][1]) < 0)
                        return -errno;

        *step = "bind the console";
        if (console_fd >= 0) {
                /* The pty slave was opened in the host's mount namespace: clone it by the path
                 * it has in ours (the host's devpts is still mounted here), checked by device. */
                struct stat st, st2;
                if (fstat(console_fd, &st) < 0)
                        return -errno;
                if (!S_ISCHR(st.st_mode))
                        return -ENOTTY;
                char path[64];
                snprintf(path, sizeof path, "/dev/pts/%u", minor(st.st_rdev));
                _cleanup_close_ int tree = open_tree(AT_FDCWD, path, OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC);
                if (tree < 0)
                        return -errno;
                if (fstat(tree, &st2) < 0)
                        return -errno;
                if (st2.st_rdev != st.st_rdev)
                        return -ENXIO;
                int fd = openat(dev, "console", O_CREAT | O_WRONLY | O_CLOEXEC | O_NOFOLLOW, 0600);
                if (fd < 0)
                        return -errno;
                close(fd);
                if ((r = attach(tree, dev, "console")) < 0)
                        return r;
        }
        return 0;
}

static int setup_proc(int root, bool own_netns, const char **step) {
        *step = "mount /proc";
        int r = mkdirat(root, "proc", 0555) < 0 && errno != EEXIST ? -errno : 0;
        if (r < 0)
                return r;
        _cleanup_close_ int procmnt = new_fs("proc", NULL, MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC);
        if (procmnt < 0)
                return procmnt;
        _cleanup_close_ int procdir = sb_openat_root(root, "proc", O_PATH | O_DIRECTORY | O_NOFOLLOW, 0);
        if (procdir < 0)
                return procdir;
        if ((r = attach(procmnt, procdir, "")) < 0)
                return r;
        int proc = procmnt;

        *step = "read-only /proc/sys";
        /* With its own network namespace the machine may tune its own network sysctls. */
        _cleanup_close_ int net =
                own_netns ? open_tree(proc, "sys/net", OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_RECURSIVE) : -1;
        static const char *const ro[] = {"sys", "sysrq-trigger", "irq", "bus", "fs", "acpi", "apm", "asound", "scsi"};
        for (size_t i = 0; i < ELEMENTSOF(ro); i++)
                if ((r = bind_ro(proc, ro[i])) < 0)
                        return r;
        if (net >= 0 && (r = attach(net, proc, "sys/net")) < 0)
                return r;

        *step = "mask /proc files";
        _cleanup_close_ int dev = sb_openat_root(root, "dev", O_PATH | O_DIRECTORY | O_NOFOLLOW, 0);
        if (dev < 0)
                return dev;
        static const char *const masked[] = {"kcore", "keys", "timer_list", "sched_debug", "kallsyms"};
        for (size_t i = 0; i < ELEMENTSOF(masked); i++)
                if ((r = mask_file(proc, masked[i], dev)) < 0)
                        return r;
        return 0;
}

/* A fresh /run at every boot, as on a real machine (and as nspawn does): pid files and
 * sockets of the last boot must not survive in the persistent upper dir. An image whose /run
 * is a symlink (to /var/run) keeps it. */
static int setup_run(int root, const char **step) {
        *step = "mount /run";
        if (mkdirat(root, "run", 0755) == 0)
                (void)fchmodat(root, "run", 0755, 0);
        _cleanup_close_ int dir = openat(root, "run", O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (dir < 0)
                return errno == ENOTDIR || errno == ELOOP ? 0 : -errno;
        static const char *const opts[] = {"mode", "0755", "size", "20%", "nr_inodes", "400k", NULL};
        _cleanup_close_ int mnt = new_fs("tmpfs", opts, MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV);
        if (mnt < 0)
                return mnt;
        return attach(mnt, dir, "");
}

static int setup_sys(int root, bool have_cgroup, const char **step) {
        *step = "mount /sys";
        int r = mkdirat(root, "sys", 0555) < 0 && errno != EEXIST ? -errno : 0;
        if (r < 0)
                return r;
        _cleanup_close_ int sysmnt =
                new_fs("sysfs", NULL, MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC);
        if (sysmnt < 0)
                return sysmnt;
        _cleanup_close_ int sysdir = sb_openat_root(root, "sys", O_PATH | O_DIRECTORY | O_NOFOLLOW, 0);
        if (sysdir < 0)
                return sysdir;
        if ((r = attach(sysmnt, sysdir, "")) < 0)
                return r;
        if (!have_cgroup)
                return 0;
        *step = "mount /sys/fs/cgroup";
        /* We are in our cgroup namespace already: this cgroup2 instance shows the machine's
         * own subtree as its root, and systemd finds a pure unified hierarchy. */
        _cleanup_close_ int cg = new_fs("cgroup2", NULL, MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC);
        if (cg < 0)
                return cg;
        return attach(cg, sysmnt, "fs/cgroup");
}

static int setup_home(int root, const struct sandbox_spec *spec, const char **step) {
        if (spec->home == SANDBOX_HOME_NONE || !spec->owner.home || !*spec->owner.home)
                return 0;
        *step = "mount the home directory";
        _cleanup_close_ int tree =
                open_tree(AT_FDCWD, spec->owner.home, OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_RECURSIVE);
        if (tree < 0)
                return -errno;
        if (spec->home == SANDBOX_HOME_RO) {
                struct mount_attr a = {.attr_set = MOUNT_ATTR_RDONLY};
                if (mount_setattr(tree, "", AT_EMPTY_PATH | AT_RECURSIVE, &a, sizeof a) < 0)
                        return -errno;
        }
        /* the mount point was created (resolved in root) by the parent */
        _cleanup_close_ int target = sb_openat_root(root, spec->owner.home, O_PATH | O_DIRECTORY, 0);
        if (target < 0)
                return target;
        return attach(tree, target, "");
}

int sb_setup_mounts_child(const struct sandbox_spec *spec, bool have_cgroup, bool own_netns, const char **step) {
        int r;
        *step = "open the root";
        /* Re-open the root here: fds opened before clone() name mounts of the runtime's
         * namespace, and mounts can only be attached to mounts of our own. */
        _cleanup_close_ int root = open(spec->rootfs, O_PATH | O_DIRECTORY | O_CLOEXEC);
        if (root < 0)
                return -errno;
        if ((r = setup_home(root, spec, step)) < 0)
                return r;
        if ((r = setup_dev(root, spec->console_fd, step)) < 0)
                return r;
        if ((r = setup_proc(root, own_netns, step)) < 0)
                return r;
        if ((r = setup_sys(root, have_cgroup, step)) < 0)
                return r;
        if ((r = setup_run(root, step)) < 0)
                return r;

        *step = "pivot_root";
        if (fchdir(root) < 0)
                return -errno;
        if (syscall(SYS_pivot_root, ".", ".") < 0)
                return -errno;
        /* the old root is now stacked on top of the new one: detach it */
        if (umount2(".", MNT_DETACH) < 0)
                return -errno;
        if (chdir("/") < 0)
                return -errno;
        return 0;
}
