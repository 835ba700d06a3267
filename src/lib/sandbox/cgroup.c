/* The machine's cgroup: <v2 mount>/container-machine/<name>, found wherever the host mounts
 * cgroup2 (/sys/fs/cgroup on pure-v2 hosts, /sys/fs/cgroup/unified on hybrid ones). Limits go
 * to the v2 controllers where the host has them there; on hybrid hosts where cpu/memory are
 * bound to v1 hierarchies, to v1 cgroups of the same name under the runtime's own ones. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "sandbox/sandbox-internal.h"
#include "util/fs.h"
#include "util/macro.h"
#include "util/strv.h"

#define CGROUP_PARENT "container-machine"

/* Mount point of the cgroup2 hierarchy (want == NULL) or of the v1 hierarchy carrying the
 * controller `want`, from /proc/self/mountinfo. */
static int find_cgroup_mount(const char *want, char **ret) {
        _cleanup_fclose_ FILE *f = fopen("/proc/self/mountinfo", "re");
        if (!f)
                return -errno;
        _cleanup_free_ char *line = NULL;
        size_t sz = 0;
        while (getline(&line, &sz, f) > 0) {
                /* id parent maj:min root mountpoint opts [optional...] - fstype source superopts */
                char *sep = strstr(line, " - ");
                if (!sep)
                        continue;
                char mp[PATH_MAX], fstype[64], source[256], super[1024];
                if (sscanf(line, "%*s %*s %*s %*s %4095s", mp) != 1)
                        continue;
                if (sscanf(sep + 3, "%63s %255s %1023s", fstype, source, super) != 3)
                        continue;
                bool match = false;
                if (!want)
                        match = streq(fstype, "cgroup2");
                else if (streq(fstype, "cgroup")) {
                        char *save = NULL;
                        for (char *t = strtok_r(super, ",", &save); t; t = strtok_r(NULL, ",", &save))
                                if (streq(t, want))
                                        match = true;
                }
                if (match && !strchr(mp, '\\')) {
                        char *s = strdup(mp);
                        if (!s)
                                return -ENOMEM;
                        *ret = s;
                        return 0;
                }
        }
        return -ENOENT;
}

int sb_cgroup_v2_root(char **ret) {
        return find_cgroup_mount(NULL, ret);
}

/* The runtime's own cgroup in the v1 hierarchy of `controller` ("/process_api/…"). */
static int own_v1_cgroup(const char *controller, char **ret) {
        _cleanup_fclose_ FILE *f = fopen("/proc/self/cgroup", "re");
        if (!f)
                return -errno;
        _cleanup_free_ char *line = NULL;
        size_t sz = 0;
        while (getline(&line, &sz, f) > 0) {
                line[strcspn(line, "\n")] = 0;
                char *c1 = strchr(line, ':');
                char *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
                if (!c2)
                        continue;
                *c2 = 0;
                char *save = NULL;
                for (char *t = strtok_r(c1 + 1, ",", &save); t; t = strtok_r(NULL, ",", &save))
                        if (streq(t, controller)) {
                                char *s = strdup(c2 + 1);
                                if (!s)
                                        return -ENOMEM;
                                *ret = s;
                                return 0;
                        }
        }
        return -ENOENT;
}

int sb_cgroup_of_pid(pid_t pid, char **ret) {
        char p[64];
        snprintf(p, sizeof p, "/proc/%d/cgroup", (int)pid);
        _cleanup_fclose_ FILE *f = fopen(p, "re");
        if (!f)
                return -errno;
        _cleanup_free_ char *line = NULL;
        size_t sz = 0;
        while (getline(&line, &sz, f) > 0) {
                if (strncmp(line, "0::", 3) != 0)
                        continue;
                line[strcspn(line, "\n")] = 0;
                _cleanup_free_ char *root = NULL;
                int r = sb_cgroup_v2_root(&root);
                if (r < 0)
                        return r;
                char *s;
                if (asprintf(&s, "%s%s", root, line + 3) < 0)
                        return -ENOMEM;
                *ret = s;
                return 0;
        }
        return -ENOENT;
}

static int write_str(const char *dir, const char *file, const char *value) {
        char p[PATH_MAX];
        snprintf(p, sizeof p, "%s/%s", dir, file);
        _cleanup_close_ int fd = open(p, O_WRONLY | O_CLOEXEC);
        if (fd < 0)
                return -errno;
        if (write(fd, value, strlen(value)) < 0)
                return -errno;
        return 0;
}

static bool has_word(const char *list, const char *word) {
        size_t n = strlen(word);
        for (const char *p = list; (p = strstr(p, word)); p += n)
                if ((p == list || p[-1] == ' ' || p[-1] == '\n') && (p[n] == 0 || p[n] == ' ' || p[n] == '\n'))
                        return true;
        return false;
}

/* <v1 mount of controller><runtime's own v1 cgroup>/container-machine/<name>; 0 if the host
 * has no such v1 hierarchy. */
static int v1_dir(const char *controller, const char *name, char **ret) {
        _cleanup_free_ char *mnt = NULL, *own = NULL;
        if (find_cgroup_mount(controller, &mnt) < 0 || own_v1_cgroup(controller, &own) < 0)
                return 0;
        if (asprintf(ret, "%s%s/%s/%s", mnt, streq(own, "/") ? "" : own, CGROUP_PARENT, name) < 0)
                return -ENOMEM;
        return 1;
}

void sb_cgroup_remove_v1(const char *name) {
        static const char *const controllers[] = {"cpu", "memory"};
        for (size_t i = 0; i < ELEMENTSOF(controllers); i++) {
                _cleanup_free_ char *dir = NULL;
                if (v1_dir(controllers[i], name, &dir) <= 0)
                        continue;
                (void)sb_cgroup_remove(dir);
                char *slash = strrchr(dir, '/');
                if (!slash)
                        continue;
                *slash = 0;
                (void)rmdir(dir); /* the shared parent, when no other machine uses it */
        }
}

static int v1_limit(struct sandbox *sb, const char *controller, const char *file, const char *value) {
        _cleanup_free_ char *dir = NULL;
        int r = v1_dir(controller, sb->name, &dir);
        if (r <= 0)
                return r; /* no such v1 hierarchy: nothing to do */
        r = fs_mkdir_p(AT_FDCWD, dir, 0755);
        if (r < 0)
                return r;
        if (streq(controller, "cpu"))
                (void)write_str(dir, "cpu.cfs_period_us", "100000");
        if ((r = write_str(dir, file, value)) < 0) {
                sb_cgroup_remove(dir);
                return r;
        }
        return strv_consume(&sb->v1_cgroups, TAKE_PTR(dir));
}

int sb_cgroup_create(struct sandbox *sb, const struct sandbox_spec *spec, int *ret_dirfd, struct cm_error **err) {
        _cleanup_free_ char *root = NULL, *parent = NULL, *dir = NULL;
        int r = sb_cgroup_v2_root(&root);
        if (r < 0) {
                *ret_dirfd = -1; /* a pure-v1 host: the machine shares the runtime's cgroups */
                return 0;
        }
        if (asprintf(&parent, "%s/%s", root, CGROUP_PARENT) < 0 || asprintf(&dir, "%s/%s", parent, spec->name) < 0)
                return cm_error_set(err, ENOMEM, "cgroup: out of memory");
        if (mkdir(parent, 0755) < 0 && errno != EEXIST)
                return cm_error_set(err, errno, "cgroup: create %s: %m", parent);
        /* A cgroup that still holds processes belongs to a machine that runs: never take
         * it over (its processes would be killed below). An empty one is left over from a
         * runtime that died (its machine died with it, PDEATHSIG). */
        _cleanup_free_ char *events = NULL;
        char ep[PATH_MAX];
        snprintf(ep, sizeof ep, "%s/cgroup.events", dir);
        if (fs_read_all(AT_FDCWD, ep, 0, &events, NULL) == 0 && strstr(events, "populated 1"))
                return cm_error_set(err, CM_EEXISTS, "cgroup %s: machine %s is already running", dir, spec->name);
        (void)sb_cgroup_remove(dir);
        if (mkdir(dir, 0755) < 0 && errno != EEXIST)
                return cm_error_set(err, errno, "cgroup: create %s: %m", dir);

        /* Delegate what the host's v2 hierarchy has of cpu, memory, pids. */
        _cleanup_free_ char *avail = NULL;
        char p[PATH_MAX];
        snprintf(p, sizeof p, "%s/cgroup.controllers", root);
        if (fs_read_all(AT_FDCWD, p, 0, &avail, NULL) == 0) {
                static const char *const want[] = {"cpu", "memory", "pids"};
                for (size_t i = 0; i < ELEMENTSOF(want); i++) {
                        if (!has_word(avail, want[i]))
                                continue;
                        char v[32];
                        snprintf(v, sizeof v, "+%s", want[i]);
                        (void)write_str(root, "cgroup.subtree_control", v);
                        (void)write_str(parent, "cgroup.subtree_control", v);
                }
        }
        char v[64];
        bool cpu_done = false, mem_done = false;
        if (spec->cpus > 0) {
                snprintf(v, sizeof v, "%u 100000", spec->cpus * 100000u);
                cpu_done = write_str(dir, "cpu.max", v) == 0;
        }
        if (spec->memory > 0) {
                snprintf(v, sizeof v, "%" PRIu64, spec->memory);
                mem_done = write_str(dir, "memory.max", v) == 0;
        }
        /* Hybrid host: cpu and memory live in v1 hierarchies. */
        if (spec->cpus > 0 && !cpu_done) {
                snprintf(v, sizeof v, "%u", spec->cpus * 100000u);
                if ((r = v1_limit(sb, "cpu", "cpu.cfs_quota_us", v)) < 0)
                        return cm_error_set(err, -r, "cgroup: cpu limit: %s", strerror(-r));
        }
        if (spec->memory > 0 && !mem_done) {
                snprintf(v, sizeof v, "%" PRIu64, spec->memory);
                if ((r = v1_limit(sb, "memory", "memory.limit_in_bytes", v)) < 0)
                        return cm_error_set(err, -r, "cgroup: memory limit: %s", strerror(-r));
        }

        int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0)
                return cm_error_set(err, errno, "cgroup: open %s: %m", dir);
        sb->cgroup_path = TAKE_PTR(dir);
        *ret_dirfd = fd;
        return 0;
}

void sb_cgroup_join_v1(char *const *v1_paths) {
        for (size_t i = 0; v1_paths && v1_paths[i]; i++)
                (void)write_str(v1_paths[i], "cgroup.procs", "0");
}

static int rmdir_tree(int parentfd, const char *name) {
        _cleanup_close_ int fd = openat(parentfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0)
                return errno == ENOENT ? 0 : -errno;
        DIR *d = fdopendir(fd);
        if (!d)
                return -errno;
        fd = -1;
        int r = 0;
        struct dirent *de;
        while ((de = readdir(d))) {
                if (de->d_type != DT_DIR || streq(de->d_name, ".") || streq(de->d_name, ".."))
                        continue;
                int k = rmdir_tree(dirfd(d), de->d_name);
                if (k < 0 && r == 0)
                        r = k;
        }
        closedir(d);
        if (unlinkat(parentfd, name, AT_REMOVEDIR) < 0 && errno != ENOENT)
                return -errno;
        return r;
}

/* Depth first (systemd inside leaves its own cgroups behind); retried briefly because
 * processes that were just killed leave their cgroup a moment after their parent sees them die. */
int sb_cgroup_remove(const char *path) {
        if (!path)
                return 0;
        int r = 0;
        for (int i = 0; i < 100; i++) {
                r = rmdir_tree(AT_FDCWD, path);
                if (r != -EBUSY)
                        return r;
                if (i == 0)
                        (void)write_str(path, "cgroup.kill", "1");
                struct timespec ts = {0, 10 * 1000 * 1000};
                nanosleep(&ts, NULL);
        }
        return r;
}

int sb_cpu_affinity(unsigned cpus, cpu_set_t *ret) {
        cpu_set_t all;
        if (sched_getaffinity(0, sizeof all, &all) < 0)
                return -errno;
        if (cpus == 0 || (unsigned)CPU_COUNT(&all) <= cpus)
                return 0;
        CPU_ZERO(ret);
        unsigned n = 0;
        for (int c = 0; c < CPU_SETSIZE && n < cpus; c++)
                if (CPU_ISSET(c, &all)) {
                        CPU_SET(c, ret);
                        n++;
                }
        return 1;
}
