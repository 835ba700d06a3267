/* First-boot provisioning of the owner's user (SPEC "Identity and home inside the machine")
 * and what every boot writes into the machine's /etc (hosts, resolv.conf, machine-id).
 * The image is untrusted: every file is reached through the root fd with RESOLVE_IN_ROOT,
 * and replaced by rename, so a symlink planted in the image is replaced, never followed. */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "sandbox/sandbox-internal.h"
#include "util/error.h"
#include "util/macro.h"
#include "util/strv.h"

#define MARK "# container-machine"
#define PROV_ERR "container machine failed to create user: "

static bool valid_field(const char *s) {
        return s && *s && !strpbrk(s, ":\n\r");
}

static bool valid_user_name(const char *s) {
        if (!s || !*s || strlen(s) > 64 || s[0] == '-' || s[0] == '.')
                return false;
        for (const char *p = s; *p; p++)
                if (!isalnum((unsigned char)*p) && !strchr("._-$", *p))
                        return false;
        return true;
}

static bool is_executable_file(int root_fd, const char *path) {
        _cleanup_close_ int fd = sb_openat_root(root_fd, path, O_PATH, 0);
        struct stat st;
        return fd >= 0 && fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && (st.st_mode & 0111);
}

static const char *default_shell(int root_fd, const struct sandbox_spec *spec) {
        if (spec->owner.shell && *spec->owner.shell)
                return spec->owner.shell;
        if (is_executable_file(root_fd, "/bin/bash"))
                return "/bin/bash";
        if (is_executable_file(root_fd, "/usr/bin/bash"))
                return "/usr/bin/bash";
        return "/bin/sh";
}

/* A colon-separated database (/etc/passwd, /etc/group, /etc/shadow) as lines. */
static int read_lines(int root_fd, const char *path, char ***ret) {
        _cleanup_free_ char *data = NULL;
        int r = sb_read_file(root_fd, path, 0, &data);
        if (r == -ENOENT) {
                *ret = calloc(1, sizeof(char *));
                return *ret ? 0 : -ENOMEM;
        }
        if (r < 0)
                return r;
        char **l = calloc(1, sizeof(char *));
        if (!l)
                return -ENOMEM;
        char *save = NULL;
        for (char *line = strtok_r(data, "\n", &save); line; line = strtok_r(NULL, "\n", &save))
                if ((r = strv_push_dup(&l, line)) < 0) {
                        strv_free(l);
                        return r;
                }
        *ret = l;
        return 0;
}

static char *join_lines(char *const *l) {
        size_t n = 1;
        for (size_t i = 0; l[i]; i++)
                n += strlen(l[i]) + 1;
        char *s = malloc(n), *p = s;
        if (!s)
                return NULL;
        for (size_t i = 0; l[i]; i++)
                p += sprintf(p, "%s\n", l[i]);
        *p = 0;
        return s;
}

/* field i (0-based) of a colon line, copied into buf */
static const char *field(const char *line, int i, char *buf, size_t sz) {
        const char *p = line;
        for (int k = 0; k < i; k++) {
                p = strchr(p, ':');
                if (!p)
                        return NULL;
                p++;
        }
        size_t n = strcspn(p, ":");
        if (n >= sz)
                n = sz - 1;
        memcpy(buf, p, n);
        buf[n] = 0;
        return buf;
}

static long field_num(const char *line, int i) {
        char b[32];
        if (!field(line, i, b, sizeof b) || !*b)
                return -1;
        char *end;
        long v = strtol(b, &end, 10);
        return *end ? -1 : v;
}

static ssize_t find_by(char *const *l, int fld, const char *name, long num) {
        char b[256];
        for (size_t i = 0; l[i]; i++) {
                if (l[i][0] == '#' || !strchr(l[i], ':'))
                        continue;
                if (name ? (field(l[i], fld, b, sizeof b) && streq(b, name)) : field_num(l[i], fld) == num)
                        return (ssize_t)i;
        }
        return -1;
}

/* Writes the file keeping the existing file's mode and owner (shadow is 0640 root:shadow on
 * Debian, 0000 on Fedora). */
static int write_db(int root_fd, const char *path, char *const *l, mode_t def_mode) {
        mode_t mode = def_mode;
        uid_t uid = 0;
        gid_t gid = 0;
        _cleanup_close_ int fd = sb_openat_root(root_fd, path, O_PATH, 0);
        struct stat st;
        if (fd >= 0 && fstat(fd, &st) == 0 && S_ISREG(st.st_mode)) {
                mode = st.st_mode & 07777;
                uid = st.st_uid;
                gid = st.st_gid;
        }
        _cleanup_free_ char *data = join_lines(l);
        if (!data)
                return -ENOMEM;
        return sb_write_file(root_fd, path, data, strlen(data), mode, uid, gid);
}

static int replace_line(char **l, size_t i, char *s) {
        if (!s)
                return -ENOMEM;
        free(l[i]);
        l[i] = s;
        return 0;
}

static int provision_group(int root_fd, const struct sandbox_spec *spec, const char *old_name) {
        _cleanup_strv_ char **g = NULL;
        int r = read_lines(root_fd, "/etc/group", &g);
        if (r < 0)
                return r;
        const char *name = spec->owner.name;
        bool changed = false;
        if (find_by(g, 2, NULL, (long)spec->owner.gid) < 0) {
                ssize_t i = find_by(g, 0, name, 0);
                char *s;
                if (i >= 0) {
                        /* our name with another gid: the name is what the user sees, take it over */
                        char members[4096];
                        if (!field(g[i], 3, members, sizeof members))
                                members[0] = 0;
                        if (asprintf(&s, "%s:x:%u:%s", name, (unsigned)spec->owner.gid, members) < 0)
                                return -ENOMEM;
                        if ((r = replace_line(g, (size_t)i, s)) < 0)
                                return r;
                } else {
                        if (asprintf(&s, "%s:x:%u:", name, (unsigned)spec->owner.gid) < 0)
                                return -ENOMEM;
                        if ((r = strv_consume(&g, s)) < 0)
                                return r;
                }
                changed = true;
        }
        /* a user entry we renamed keeps its group memberships under the new name */
        if (old_name && !streq(old_name, name))
                for (size_t i = 0; g[i]; i++) {
                        char *m = strrchr(g[i], ':');
                        if (!m)
                                continue;
                        _cleanup_strv_ char **mem = NULL;
                        char *copy = strdup(m + 1), *save = NULL;
                        if (!copy)
                                return -ENOMEM;
                        bool hit = false;
                        for (char *t = strtok_r(copy, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
                                hit |= streq(t, old_name);
                                strv_push_dup(&mem, streq(t, old_name) ? name : t);
                        }
                        free(copy);
                        if (!hit)
                                continue;
                        size_t len = (size_t)(m - g[i]) + 2;
                        for (size_t k = 0; mem && mem[k]; k++)
                                len += strlen(mem[k]) + 1;
                        char *s = malloc(len), *p;
                        if (!s)
                                return -ENOMEM;
                        p = s + sprintf(s, "%.*s:", (int)(m - g[i]), g[i]);
                        for (size_t k = 0; mem && mem[k]; k++)
                                p += sprintf(p, "%s%s", k ? "," : "", mem[k]);
                        replace_line(g, i, s);
                        changed = true;
                }
        return changed ? write_db(root_fd, "/etc/group", g, 0644) : 0;
}

static int provision_passwd(int root_fd, const struct sandbox_spec *spec, const char *shell, char **ret_old_name) {
        _cleanup_strv_ char **pw = NULL;
        int r = read_lines(root_fd, "/etc/passwd", &pw);
        if (r < 0)
                return r;
        const struct sandbox_user *u = &spec->owner;
        ssize_t by_name = find_by(pw, 0, u->name, 0);
        ssize_t by_uid = find_by(pw, 2, NULL, (long)u->uid);
        ssize_t i = by_name >= 0 ? by_name : by_uid;
        char gecos[256] = "", cur_shell[PATH_MAX] = "", old_name[256] = "";
        if (i >= 0) {
                /* Reuse the entry: a same-named one (its uid becomes ours), else the one holding
                 * our uid (renamed to our name, so `whoami` answers the host's name). */
                field(pw[i], 0, old_name, sizeof old_name);
                if (!field(pw[i], 4, gecos, sizeof gecos))
                        gecos[0] = 0;
                if (!field(pw[i], 6, cur_shell, sizeof cur_shell))
                        cur_shell[0] = 0;
        }
        const char *sh = *cur_shell && !(spec->owner.shell && *spec->owner.shell) ? cur_shell : shell;
        char *s;
        if (asprintf(&s, "%s:x:%u:%u:%s:%s:%s", u->name, (unsigned)u->uid, (unsigned)u->gid, gecos, u->home, sh) < 0)
                return -ENOMEM;
        if (i >= 0) {
                if (streq(pw[i], s)) {
                        free(s);
                        goto done;
                }
                replace_line(pw, (size_t)i, s);
        } else if ((r = strv_consume(&pw, s)) < 0)
                return r;
        if ((r = write_db(root_fd, "/etc/passwd", pw, 0644)) < 0)
                return r;
done:
        if (*old_name && !streq(old_name, u->name)) {
                char *o = strdup(old_name);
                if (!o)
                        return -ENOMEM;
                *ret_old_name = o;
        }
        return 0;
}

static int provision_shadow(int root_fd, const struct sandbox_spec *spec, const char *old_name) {
        _cleanup_strv_ char **sh = NULL;
        int r = read_lines(root_fd, "/etc/shadow", &sh);
        if (r < 0)
                return r;
        const char *name = spec->owner.name;
        if (find_by(sh, 0, name, 0) >= 0)
                return 0;
        ssize_t i = old_name ? find_by(sh, 0, old_name, 0) : -1;
        char *s;
        if (i >= 0) {
                const char *rest = strchr(sh[i], ':');
                if (asprintf(&s, "%s%s", name, rest) < 0)
                        return -ENOMEM;
                replace_line(sh, (size_t)i, s);
        } else {
                /* "!": no password login; sessions come through the runtime, sudo is NOPASSWD */
                if (asprintf(&s, "%s:!:%ld:0:99999:7:::", name, (long)(time(NULL) / 86400)) < 0)
                        return -ENOMEM;
                if ((r = strv_consume(&sh, s)) < 0)
                        return r;
        }
        return write_db(root_fd, "/etc/shadow", sh, 0640);
}

static int provision_sudo(int root_fd, const struct sandbox_spec *spec) {
        _cleanup_close_ int d = sb_openat_root(root_fd, "/etc/sudoers.d", O_PATH | O_DIRECTORY, 0);
        if (d < 0) {
                if (!is_executable_file(root_fd, "/usr/bin/sudo") && !is_executable_file(root_fd, "/bin/sudo"))
                        return 0;
                d = sb_mkdir_p_root(root_fd, "/etc/sudoers.d", 0750);
                if (d < 0)
                        return d;
        }
        char file[PATH_MAX], body[512];
        /* sudo skips files whose names contain a dot */
        int n = snprintf(file, sizeof file, "/etc/sudoers.d/%s", spec->owner.name);
        for (char *p = file + strlen("/etc/sudoers.d/"); *p; p++)
                if (*p == '.')
                        *p = '_';
        int m = snprintf(body, sizeof body, "%s ALL=(ALL:ALL) NOPASSWD: ALL\n", spec->owner.name);
        if (n < 0 || (size_t)n >= sizeof file || m < 0 || (size_t)m >= sizeof body)
                return -ENAMETOOLONG;
        return sb_write_file(root_fd, file, body, (size_t)m, 0440, 0, 0);
}

static int provision_home(int root_fd, const struct sandbox_spec *spec) {
        if (!spec->owner.home || spec->owner.home[0] != '/')
                return -EINVAL;
        _cleanup_close_ int exists = sb_openat_root(root_fd, spec->owner.home, O_PATH | O_DIRECTORY, 0);
        if (exists >= 0)
                return 0;
        _cleanup_close_ int fd = sb_mkdir_p_root(root_fd, spec->owner.home, 0755);
        if (fd < 0)
                return fd;
        /* a home of its own when the host's is not mounted (home none) */
        char p[64];
        snprintf(p, sizeof p, "/proc/self/fd/%d", fd);
        if (chown(p, spec->owner.uid, spec->owner.gid) < 0)
                return -errno;
        return 0;
}

/* create-user.sh: a child in its own namespaces chrooted (pivot_root) into the machine root
 * with a minimal /dev and /proc, like init will get. Its output is kept for the error. */
static int run_create_user_script(int root_fd, const struct sandbox_spec *spec, const char *shell,
                                  struct cm_error **err) {
        int pipefd[2];
        if (pipe2(pipefd, O_CLOEXEC) < 0)
                return cm_error_set(err, errno, PROV_ERR "pipe: %m");
        _cleanup_close_ int rd = pipefd[0];
        char envbuf[6][PATH_MAX + 32];
        snprintf(envbuf[0], sizeof envbuf[0], "CONTAINER_USER=%s", spec->owner.name);
        snprintf(envbuf[1], sizeof envbuf[1], "CONTAINER_UID=%u", (unsigned)spec->owner.uid);
        snprintf(envbuf[2], sizeof envbuf[2], "CONTAINER_GID=%u", (unsigned)spec->owner.gid);
        snprintf(envbuf[3], sizeof envbuf[3], "CONTAINER_HOME=%s", spec->owner.home);
        snprintf(envbuf[4], sizeof envbuf[4], "CONTAINER_SHELL=%s", shell);
        snprintf(envbuf[5], sizeof envbuf[5], "CONTAINER_MACHINE_ID=%s", spec->machine_id ? spec->machine_id : "");
        char *envp[] = {envbuf[0],
                        envbuf[1],
                        envbuf[2],
                        envbuf[3],
                        envbuf[4],
                        envbuf[5],
                        (char *)"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                        (char *)"container=container-machine",
                        NULL};
        bool exe = is_executable_file(root_fd, "/etc/machine/create-user.sh");
        /* the root's path in our mount namespace, for the child's own one */
        char proc[64], rootpath[PATH_MAX];
        snprintf(proc, sizeof proc, "/proc/self/fd/%d", root_fd);
        ssize_t rl = readlink(proc, rootpath, sizeof rootpath - 1);
        if (rl < 0) {
                close(pipefd[1]);
                return cm_error_set(err, errno, PROV_ERR "the root's path: %m");
        }
        rootpath[rl] = 0;
        pid_t parent = getpid();
        pid_t pid = fork();
        if (pid < 0) {
                close(pipefd[1]);
                return cm_error_set(err, errno, PROV_ERR "fork: %m");
        }
        if (pid == 0) {
                prctl(PR_SET_PDEATHSIG, SIGKILL);
                if (getppid() != parent)
                        _exit(126);
                sb_reset_signals();
                umask(022);
                int devnull = open("/dev/null", O_RDONLY | O_CLOEXEC);
                if (sb_setup_stdio(devnull, pipefd[1], pipefd[1]) < 0)
                        _exit(126);
                if (unshare(CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWIPC | CLONE_NEWUTS | CLONE_NEWNET) < 0) {
                        dprintf(2, "unshare: %m\n");
                        _exit(126);
                }
                pid_t inner = fork();
                if (inner < 0)
                        _exit(126);
                if (inner > 0) {
                        int st;
                        while (waitpid(inner, &st, 0) < 0 && errno == EINTR)
                                ;
                        _exit(WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st));
                }
                prctl(PR_SET_PDEATHSIG, SIGKILL);
                struct sandbox_spec s = *spec;
                s.home = SANDBOX_HOME_NONE;
                s.console_fd = -1;
                s.rootfs = rootpath;
                const char *step = "make the root a mount point";
                /* pivot_root wants a mount point: the root may be a plain directory (tests) */
                int r = mount(NULL, "/", NULL, MS_REC | MS_SLAVE, NULL) < 0 ? -errno : 0;
                if (r == 0 && mount(rootpath, rootpath, NULL, MS_BIND | MS_REC, NULL) < 0)
                        r = -errno;
                if (r == 0)
                        r = sb_setup_mounts_child(&s, false, true, &step);
                if (r < 0) {
                        dprintf(2, "%s: %s\n", step, strerror(-r));
                        _exit(126);
                }
                if (exe)
                        execle("/etc/machine/create-user.sh", "/etc/machine/create-user.sh", (char *)NULL, envp);
                execle("/bin/sh", "sh", "/etc/machine/create-user.sh", (char *)NULL, envp);
                dprintf(2, "/etc/machine/create-user.sh: %m\n");
                _exit(127);
        }
        close(pipefd[1]);
        char out[4096];
        size_t len = 0;
        for (;;) {
                ssize_t n = read(rd, out + len, sizeof out - 1 - len);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n <= 0)
                        break;
                len += (size_t)n;
                if (len == sizeof out - 1) {
                        /* keep the tail: the reason is usually on the last line */
                        memmove(out, out + 2048, len - 2048);
                        len -= 2048;
                }
        }
        out[len] = 0;
        int st = 0;
        while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
                ;
        if (WIFEXITED(st) && WEXITSTATUS(st) == 0)
                return 0;
        while (len > 0 && (out[len - 1] == '\n' || out[len - 1] == ' '))
                out[--len] = 0;
        char *last = strrchr(out, '\n');
        last = last ? last + 1 : out;
        int code = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
        return cm_error_set(err, CM_EINVALID, PROV_ERR "/etc/machine/create-user.sh exited with status %d%s%s", code,
                            *last ? ": " : "", last);
}

int sandbox_provision(int root_fd, const struct sandbox_spec *spec, struct cm_error **err) {
        const struct sandbox_user *u = &spec->owner;
        if (!valid_user_name(u->name))
                return cm_error_set(err, CM_EINVALID, PROV_ERR "invalid user name \"%s\"", u->name ? u->name : "");
        if (!valid_field(u->home) || u->home[0] != '/')
                return cm_error_set(err, CM_EINVALID, PROV_ERR "invalid home directory \"%s\"", u->home ? u->home : "");
        if (u->shell && *u->shell && !valid_field(u->shell))
                return cm_error_set(err, CM_EINVALID, PROV_ERR "invalid shell \"%s\"", u->shell);
        /* A machine created by root is used as root (SPEC), who every image has already:
         * there is no user to add, and rewriting root's entries would only do harm. */
        if (u->uid == 0)
                return 0;
        const char *shell = default_shell(root_fd, spec);

        _cleanup_close_ int script = sb_openat_root(root_fd, "/etc/machine/create-user.sh", O_PATH, 0);
        struct stat st;
        if (script >= 0 && fstat(script, &st) == 0 && S_ISREG(st.st_mode))
                return run_create_user_script(root_fd, spec, shell, err);

        int r;
        _cleanup_free_ char *old_name = NULL;
        if ((r = provision_passwd(root_fd, spec, shell, &old_name)) < 0)
                return cm_error_set(err, -r, PROV_ERR "/etc/passwd: %s", strerror(-r));
        if ((r = provision_group(root_fd, spec, old_name)) < 0)
                return cm_error_set(err, -r, PROV_ERR "/etc/group: %s", strerror(-r));
        if ((r = provision_shadow(root_fd, spec, old_name)) < 0)
                return cm_error_set(err, -r, PROV_ERR "/etc/shadow: %s", strerror(-r));
        if ((r = provision_sudo(root_fd, spec)) < 0)
                return cm_error_set(err, -r, PROV_ERR "/etc/sudoers.d: %s", strerror(-r));
        if ((r = provision_home(root_fd, spec)) < 0)
                return cm_error_set(err, -r, PROV_ERR "home %s: %s", u->home, strerror(-r));
        return 0;
}

/* ---- every boot ---- */

static int update_hosts(int root_fd, const struct sandbox_spec *spec) {
        _cleanup_free_ char *old = NULL;
        int r = sb_read_file(root_fd, "/etc/hosts", 1 << 20, &old);
        if (r < 0 && r != -ENOENT)
                return r;
        const char *base = "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n";
        size_t cap = (old ? strlen(old) : strlen(base)) + strlen(spec->name) + 128;
        _cleanup_free_ char *out = malloc(cap);
        if (!out)
                return -ENOMEM;
        size_t len = 0;
        const char *src = old ? old : base;
        for (const char *p = src; *p;) {
                size_t n = strcspn(p, "\n");
                /* drop our own lines; the user's lines stay as they are */
                size_t ml = strlen(MARK);
                bool ours = n >= ml && memcmp(p + n - ml, MARK, ml) == 0;
                if (!ours) {
                        memcpy(out + len, p, n);
                        len += n;
                        out[len++] = '\n';
                }
                p += n;
                if (*p == '\n')
                        p++;
        }
        len += (size_t)snprintf(out + len, cap - len, "%s\t%s " MARK "\n",
                                spec->ip_address ? spec->ip_address : "127.0.1.1", spec->name);
        if (old && streq(old, out))
                return 0; /* unchanged: no copy-up into the upper dir */
        return sb_write_file(root_fd, "/etc/hosts", out, len, 0644, 0, 0);
}

static bool is_loopback_ns(const char *ip) {
        return strncmp(ip, "127.", 4) == 0 || streq(ip, "::1");
}

static int host_nameservers(char **ret) {
        static const char *const files[] = {"/etc/resolv.conf", "/run/systemd/resolve/resolv.conf"};
        for (size_t f = 0; f < ELEMENTSOF(files); f++) {
                _cleanup_fclose_ FILE *in = fopen(files[f], "re");
                if (!in)
                        continue;
                char *buf = NULL;
                size_t bsz = 0;
                FILE *o = open_memstream(&buf, &bsz);
                if (!o)
                        return -ENOMEM;
                fprintf(o, MARK ": the host's nameservers\n");
                int n = 0;
                char line[512];
                while (fgets(line, sizeof line, in)) {
                        char ns[256];
                        if (sscanf(line, "nameserver %255s", ns) == 1 && !is_loopback_ns(ns)) {
                                fprintf(o, "nameserver %s\n", ns);
                                n++;
                        } else if (strncmp(line, "search ", 7) == 0)
                                fputs(line, o);
                }
                fclose(o);
                if (n > 0) {
                        *ret = buf;
                        return 0;
                }
                free(buf);
        }
        return -ENOENT;
}

static int update_resolv_conf(int root_fd, const struct sandbox_spec *spec) {
        _cleanup_free_ char *old = NULL;
        int r = sb_read_file(root_fd, "/etc/resolv.conf", 1 << 20, &old);
        /* missing, dangling (e.g. into systemd-resolved's /run), or empty: ours to write;
         * one we wrote: refreshed from the host */
        if (r == 0 && !strstr(old, MARK)) {
                for (const char *p = old; *p; p++)
                        if (!isspace((unsigned char)*p))
                                return 0;
        } else if (r < 0 && r != -ENOENT && r != -EINVAL)
                return r;
        _cleanup_free_ char *data = NULL;
        if (spec->nameserver) {
                if (asprintf(&data, MARK ": the machines' resolver\nnameserver %s\n", spec->nameserver) < 0)
                        return -ENOMEM;
        } else if (host_nameservers(&data) < 0)
                return 0;
        if (old && streq(old, data))
                return 0;
        return sb_write_file(root_fd, "/etc/resolv.conf", data, strlen(data), 0644, 0, 0);
}

static int update_machine_id(int root_fd, const struct sandbox_spec *spec) {
        const char *id = spec->machine_id;
        if (!id || strlen(id) != 32 || strspn(id, "0123456789abcdef") != 32)
                return 0;
        _cleanup_free_ char *old = NULL;
        int r = sb_read_file(root_fd, "/etc/machine-id", 4096, &old);
        if (r == 0 && strspn(old, "0123456789abcdef") == 32)
                return 0;
        if (r < 0 && r != -ENOENT)
                return 0;
        /* a persistent machine keeps one id across boots (the journal is keyed by it) */
        char buf[40];
        snprintf(buf, sizeof buf, "%s\n", id);
        return sb_write_file(root_fd, "/etc/machine-id", buf, 33, 0444, 0, 0);
}

/* The UTS name is set before init runs, but sysvinit's hostname.sh and systemd both set it
 * again from /etc/hostname: keep that file saying the machine's name. */
static int update_hostname(int root_fd, const struct sandbox_spec *spec) {
        _cleanup_free_ char *old = NULL;
        int r = sb_read_file(root_fd, "/etc/hostname", 4096, &old);
        if (r < 0 && r != -ENOENT && r != -EINVAL)
                return r;
        char buf[128];
        int n = snprintf(buf, sizeof buf, "%s\n", spec->name);
        if (old && streq(old, buf))
                return 0;
        return sb_write_file(root_fd, "/etc/hostname", buf, (size_t)n, 0644, 0, 0);
}

int sb_prepare_etc(int root_fd, const struct sandbox_spec *spec, struct cm_error **err) {
        int r;
        _cleanup_close_ int etc = sb_mkdir_p_root(root_fd, "/etc", 0755);
        if (etc < 0)
                return cm_error_set(err, -etc, "prepare /etc: %s", strerror(-etc));
        if ((r = update_hosts(root_fd, spec)) < 0)
                return cm_error_set(err, -r, "write /etc/hosts: %s", strerror(-r));
        if ((r = update_hostname(root_fd, spec)) < 0)
                return cm_error_set(err, -r, "write /etc/hostname: %s", strerror(-r));
        if ((r = update_resolv_conf(root_fd, spec)) < 0)
                return cm_error_set(err, -r, "write /etc/resolv.conf: %s", strerror(-r));
        if ((r = update_machine_id(root_fd, spec)) < 0)
                return cm_error_set(err, -r, "write /etc/machine-id: %s", strerror(-r));
        if (spec->home != SANDBOX_HOME_NONE && spec->owner.home && *spec->owner.home) {
                if (spec->owner.home[0] != '/' || strstr(spec->owner.home, "/../"))
                        return cm_error_set(err, CM_EINVALID, "home %s: not an absolute path", spec->owner.home);
                _cleanup_close_ int fd = sb_mkdir_p_root(root_fd, spec->owner.home, 0755);
                if (fd < 0)
                        return cm_error_set(err, -fd, "create the home mount point %s: %s", spec->owner.home,
                                            strerror(-fd));
        }
        return 0;
}
