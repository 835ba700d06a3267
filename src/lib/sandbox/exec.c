/* Sessions inside a running machine.
 *
 * The runtime (resident, so this costs about a plain fork+exec) forks a helper that joins
 * init's cgroup (so the machine's systemd sees the process), then all of init's namespaces
 * through its pidfd. A pid namespace applies to children only, so the helper creates the
 * session process with clone(CLONE_PARENT): the session is the runtime's own child (the
 * runtime waits for it and gets its exit status, no subreaper needed), in the machine's pid
 * namespace. The helper reports the session's pid over a close-on-exec pipe and exits;
 * the session reports setup failures over the same pipe, so the runtime returns only once
 * the command was exec'd (or the shell-style 127/126 path was taken). */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/sched.h>
#include <limits.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "sandbox/sandbox-internal.h"
#include "util/error.h"
#include "util/macro.h"
#include "util/strv.h"

#define DEFAULT_PATH "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

struct pwent {
        char *name, *home, *shell;
        uid_t uid;
        gid_t gid;
};

static void pwent_done(struct pwent *p) {
        free(p->name);
        free(p->home);
        free(p->shell);
}

static int find_passwd(int root_fd, const char *name, long uid, struct pwent *ret) {
        _cleanup_free_ char *data = NULL;
        int r = sb_read_file(root_fd, "/etc/passwd", 0, &data);
        if (r < 0)
                return r;
        char *save = NULL;
        for (char *line = strtok_r(data, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
                char *f[7] = {0};
                char *p = line;
                int n = 0;
                for (; n < 7 && p; n++) {
                        f[n] = p;
                        p = strchr(p, ':');
                        if (p)
                                *p++ = 0;
                }
                if (n < 7 || f[0][0] == '#')
                        continue;
                char *end;
                long u = strtol(f[2], &end, 10);
                if (*end || !*f[2])
                        continue;
                if (name ? !streq(f[0], name) : u != uid)
                        continue;
                ret->name = strdup(f[0]);
                ret->home = strdup(f[5]);
                ret->shell = strdup(*f[6] ? f[6] : "/bin/sh");
                ret->uid = (uid_t)u;
                ret->gid = (gid_t)strtol(f[3], NULL, 10);
                if (!ret->name || !ret->home || !ret->shell) {
                        pwent_done(ret);
                        return -ENOMEM;
                }
                return 0;
        }
        return -ESRCH;
}

int sandbox_lookup_user(struct sandbox *sb, const char *name_or_uid, uid_t *ret_uid, gid_t *ret_gid, char **ret_home,
                        char **ret_shell, char **ret_name, struct cm_error **err) {
        if (!sb || sb->root_fd < 0 || !name_or_uid || !*name_or_uid)
                return cm_error_set(err, CM_EINVALID, "lookup user: no machine or user");
        struct pwent p = {0};
        char *end;
        long uid = strtol(name_or_uid, &end, 10);
        int r = find_passwd(sb->root_fd, *end ? name_or_uid : NULL, uid, &p);
        if (r == -ESRCH)
                return cm_error_set(err, CM_ENOTFOUND, "user %s not found in the machine", name_or_uid);
        if (r < 0)
                return cm_error_set(err, -r, "lookup user %s: /etc/passwd: %s", name_or_uid, strerror(-r));
        if (ret_uid)
                *ret_uid = p.uid;
        if (ret_gid)
                *ret_gid = p.gid;
        if (ret_home)
                *ret_home = TAKE_PTR(p.home);
        if (ret_shell)
                *ret_shell = TAKE_PTR(p.shell);
        if (ret_name)
                *ret_name = TAKE_PTR(p.name);
        pwent_done(&p);
        return 0;
}

/* Supplementary groups of `name` from the machine's /etc/group (plus the primary gid). */
static int machine_groups(int root_fd, const char *name, gid_t gid, gid_t **ret, size_t *ret_n) {
        size_t cap = 16, n = 0;
        gid_t *l = malloc(cap * sizeof *l);
        if (!l)
                return -ENOMEM;
        l[n++] = gid;
        _cleanup_free_ char *data = NULL;
        if (name && sb_read_file(root_fd, "/etc/group", 0, &data) == 0) {
                char *save = NULL;
                for (char *line = strtok_r(data, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
                        char *f[4] = {0};
                        char *p = line;
                        int k = 0;
                        for (; k < 4 && p; k++) {
                                f[k] = p;
                                p = strchr(p, ':');
                                if (p)
                                        *p++ = 0;
                        }
                        if (k < 4 || !*f[2])
                                continue;
                        char *msave = NULL;
                        for (char *m = strtok_r(f[3], ",", &msave); m; m = strtok_r(NULL, ",", &msave)) {
                                if (!streq(m, name))
                                        continue;
                                gid_t g = (gid_t)strtoul(f[2], NULL, 10);
                                bool dup = false;
                                for (size_t i = 0; i < n; i++)
                                        dup |= l[i] == g;
                                if (dup || n >= 1024)
                                        break;
                                if (n == cap) {
                                        gid_t *nl = realloc(l, (cap *= 2) * sizeof *l);
                                        if (!nl) {
                                                free(l);
                                                return -ENOMEM;
                                        }
                                        l = nl;
                                }
                                l[n++] = g;
                                break;
                        }
                }
        }
        *ret = l;
        *ret_n = n;
        return 0;
}

struct report {
        pid_t pid; /* > 0: the session's pid (from the helper) */
        int error; /* errno of a failed step */
        char step[48];
};

static void report_fail(int fd, const char *step, int e) {
        struct report rep = {.pid = 0, .error = e};
        snprintf(rep.step, sizeof rep.step, "%s", step);
        (void)!write(fd, &rep, sizeof rep);
}

static const char *env_get(char *const *env, const char *key) {
        size_t k = strlen(key);
        for (size_t i = 0; env && env[i]; i++)
                if (strncmp(env[i], key, k) == 0 && env[i][k] == '=')
                        return env[i] + k + 1;
        return NULL;
}

/* execvpe with the PATH of the session's own environment, and a shell's diagnostics. */
_Noreturn static void exec_command(const char *file, char *const *argv, char *const *env) {
        int err = ENOENT;
        if (strchr(file, '/')) {
                execve(file, argv, env);
                err = errno;
        } else {
                const char *path = env_get(env, "PATH");
                if (!path)
                        path = DEFAULT_PATH;
                bool eacces = false;
                for (const char *p = path;;) {
                        size_t n = strcspn(p, ":");
                        char full[PATH_MAX];
                        if (n + strlen(file) + 2 < sizeof full) {
                                snprintf(full, sizeof full, "%.*s%s%s", (int)n, n ? p : ".", "/", file);
                                execve(full, argv, env);
                                if (errno == EACCES)
                                        eacces = true;
                                else if (errno != ENOENT && errno != ENOTDIR && errno != ELOOP) {
                                        err = errno;
                                        break;
                                }
                        }
                        if (!p[n])
                                break;
                        p += n + 1;
                }
                if (eacces && err == ENOENT)
                        err = EACCES;
                if (err == ENOENT) {
                        dprintf(2, "%s: command not found\n", file);
                        _exit(127);
                }
        }
        dprintf(2, "%s: %s\n", file, strerror(err));
        _exit(err == ENOENT || err == ENOTDIR ? 127 : 126);
}

struct session_args {
        const struct sandbox_exec *e;
        int pipe_wr;
        gid_t *groups;
        size_t n_groups;
        const char *file; /* what to exec */
        char *const *argv;
        const char *home;
};

_Noreturn static void session_child(struct session_args *s) {
        const struct sandbox_exec *e = s->e;
        int fd = s->pipe_wr, r;
        sb_reset_signals();
        umask(022);
        if (e->pty) {
                if (setsid() < 0) {
                        report_fail(fd, "setsid", errno);
                        _exit(125);
                }
        }
        if ((r = sb_setup_stdio(e->stdin_fd, e->stdout_fd, e->stderr_fd)) < 0) {
                report_fail(fd, "stdio", -r);
                _exit(125);
        }
        if (e->pty && ioctl(0, TIOCSCTTY, 0) < 0) {
                report_fail(fd, "controlling terminal", errno);
                _exit(125);
        }
        /* the machine's bounding set, or root in a session (or sudo) would hold capabilities
         * init does not have, CAP_SYS_MODULE among them */
        if ((r = sb_drop_bounding_set()) < 0) {
                report_fail(fd, "capability bounding set", -r);
                _exit(125);
        }
        if (setgroups(s->n_groups, s->groups) < 0 || setresgid(e->gid, e->gid, e->gid) < 0) {
                report_fail(fd, "set groups", errno);
                _exit(125);
        }
        if (setresuid(e->uid, e->uid, e->uid) < 0) {
                report_fail(fd, "set uid", errno);
                _exit(125);
        }
        /* as the user: their permissions decide whether the directory is usable */
        if (!(e->cwd && chdir(e->cwd) == 0) && !(s->home && chdir(s->home) == 0))
                (void)chdir("/");
        /* the pipe is close-on-exec: EOF tells the runtime the command started (or failed
         * the shell's way, with 127/126 and a message on its stderr) */
        exec_command(s->file, s->argv, e->env);
}

static void prune_sessions(struct sandbox *sb) {
        size_t k = 0;
        for (size_t i = 0; i < sb->n_sessions; i++) {
                struct sandbox_session *x = &sb->sessions[i];
                siginfo_t si = {0};
                /* reaped by the runtime already: waitid says ECHILD */
                if (waitid(P_PIDFD, (id_t)x->pidfd, &si, WEXITED | WNOHANG | WNOWAIT) < 0 && errno == ECHILD) {
                        close(x->pidfd);
                        continue;
                }
                sb->sessions[k++] = *x;
        }
        sb->n_sessions = k;
}

int sandbox_exec(struct sandbox *sb, const struct sandbox_exec *e, pid_t *ret_pid, struct cm_error **err) {
        if (!sb || sb->init_pidfd < 0 || sb->init_exited)
                return cm_error_set(err, CM_ENOTRUNNING, "exec: the machine is not running");
        if (!e || e->stdin_fd < 0 || e->stdout_fd < 0 || e->stderr_fd < 0)
                return cm_error_set(err, CM_EINVALID, "exec: stdin, stdout and stderr are required");
        int r;

        /* Everything that allocates happens here, before the fork. */
        struct pwent pw = {0};
        bool have_pw = find_passwd(sb->root_fd, NULL, (long)e->uid, &pw) == 0;
        _cleanup_free_ gid_t *groups = NULL;
        size_t n_groups = 0;
        if ((r = machine_groups(sb->root_fd, have_pw ? pw.name : NULL, e->gid, &groups, &n_groups)) < 0) {
                pwent_done(&pw);
                return cm_error_set(err, -r, "exec: groups: %s", strerror(-r));
        }
        _cleanup_free_ char *argv0 = NULL;
        char *login_argv[2] = {NULL, NULL};
        struct session_args s = {.e = e, .groups = groups, .n_groups = n_groups, .home = have_pw ? pw.home : NULL};
        if (e->argv && e->argv[0]) {
                s.file = e->argv[0];
                s.argv = e->argv;
        } else {
                /* a login shell: argv[0] is "-" + its name, as login(1) does */
                s.file = have_pw ? pw.shell : "/bin/sh";
                const char *b = strrchr(s.file, '/');
                if (asprintf(&argv0, "-%s", b ? b + 1 : s.file) < 0) {
                        pwent_done(&pw);
                        return cm_error_set(err, ENOMEM, "out of memory");
                }
                login_argv[0] = argv0;
                s.argv = login_argv;
        }
        _cleanup_free_ char *cgroup = NULL;
        (void)sb_cgroup_of_pid(sb->init_pid, &cgroup);
        _cleanup_close_ int cg_fd = cgroup ? open(cgroup, O_RDONLY | O_DIRECTORY | O_CLOEXEC) : -1;
        _cleanup_close_ int procs_fd = cg_fd >= 0 ? openat(cg_fd, "cgroup.procs", O_WRONLY | O_CLOEXEC) : -1;
        cpu_set_t aff;
        CPU_ZERO(&aff);
        bool set_aff = sched_getaffinity(sb->init_pid, sizeof aff, &aff) == 0;

        int p[2];
        if (pipe2(p, O_CLOEXEC) < 0) {
                pwent_done(&pw);
                return cm_error_set(err, errno, "exec: pipe: %m");
        }
        s.pipe_wr = p[1];
        /* the helper starts in init's cgroup (no migration afterwards: cheaper) */
        bool in_cgroup = false;
        pid_t helper = -1;
        if (cg_fd >= 0) {
                struct clone_args ca = {.flags = CLONE_INTO_CGROUP, .exit_signal = SIGCHLD, .cgroup = (uint64_t)cg_fd};
                helper = (pid_t)syscall(SYS_clone3, &ca, sizeof ca);
                in_cgroup = helper >= 0;
        }
        if (helper < 0)
                helper = fork();
        if (helper < 0) {
                r = -errno;
                close(p[0]);
                close(p[1]);
                pwent_done(&pw);
                return cm_error_set(err, -r, "exec: fork: %s", strerror(-r));
        }
        if (helper == 0) {
                close(p[0]);
                sb_cgroup_join_v1(sb->v1_cgroups);
                if (!in_cgroup && procs_fd >= 0 && write(procs_fd, "0", 1) < 0) {
                        report_fail(p[1], "join the machine's cgroup", errno);
                        _exit(125);
                }
                if (set_aff)
                        (void)sched_setaffinity(0, sizeof aff, &aff);
                if (setns(sb->init_pidfd, CLONE_NEWNS | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWNET | CLONE_NEWPID |
                                                  CLONE_NEWCGROUP) < 0) {
                        report_fail(p[1], "join the machine's namespaces", errno);
                        _exit(125);
                }
                pid_t c = (pid_t)syscall(SYS_clone, CLONE_PARENT | SIGCHLD, NULL, NULL, NULL, 0);
                if (c < 0) {
                        report_fail(p[1], "clone", errno);
                        _exit(125);
                }
                if (c == 0)
                        session_child(&s);
                struct report rep = {.pid = c};
                (void)!write(p[1], &rep, sizeof rep);
                _exit(0);
        }
        close(p[1]);
        pwent_done(&pw);

        pid_t pid = 0;
        int fail = 0;
        char step[48] = "";
        struct report rep;
        for (;;) {
                ssize_t n = read(p[0], &rep, sizeof rep);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n != (ssize_t)sizeof rep)
                        break;
                if (rep.pid > 0)
                        pid = rep.pid;
                else if (!fail) {
                        fail = rep.error ? rep.error : EIO;
                        memcpy(step, rep.step, sizeof step);
                        step[sizeof step - 1] = 0;
                }
        }
        close(p[0]);
        /* the helper exits right away; ECHILD if the runtime's SIGCHLD handler got it first */
        while (waitpid(helper, NULL, 0) < 0 && errno == EINTR)
                ;
        if (fail) {
                if (pid > 0)
                        while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
                                ;
                return cm_error_set(err, fail, "exec: %s: %s", step, strerror(fail));
        }
        if (pid <= 0)
                return cm_error_set(err, EIO, "exec: the helper died before starting the command");

        prune_sessions(sb);
        int pfd = (int)syscall(SYS_pidfd_open, pid, 0);
        if (pfd >= 0) {
                struct sandbox_session *n = realloc(sb->sessions, (sb->n_sessions + 1) * sizeof *n);
                if (n) {
                        sb->sessions = n;
                        sb->sessions[sb->n_sessions++] = (struct sandbox_session){.pid = pid, .pidfd = pfd};
                } else
                        close(pfd);
        }
        *ret_pid = pid;
        return 0;
}

int sandbox_open_pty(struct sandbox *sb, int *ret_master, int *ret_slave, struct cm_error **err) {
        if (!sb || sb->init_pid <= 0 || sb->init_exited)
                return cm_error_set(err, CM_ENOTRUNNING, "pty: the machine is not running");
        char p[64];
        snprintf(p, sizeof p, "/proc/%d/root", (int)sb->init_pid);
        _cleanup_close_ int root = open(p, O_PATH | O_DIRECTORY | O_CLOEXEC);
        if (root < 0)
                return cm_error_set(err, errno, "pty: %s: %m", p);
        /* the machine's own devpts instance, reached through init's root */
        _cleanup_close_ int master = sb_openat_root(root, "/dev/pts/ptmx", O_RDWR | O_NOCTTY, 0);
        if (master < 0)
                return cm_error_set(err, -master, "pty: open the machine's /dev/pts/ptmx: %s", strerror(-master));
        int unlock = 0;
        if (ioctl(master, TIOCSPTLCK, &unlock) < 0)
                return cm_error_set(err, errno, "pty: unlock: %m");
        int slave = ioctl(master, TIOCGPTPEER, O_RDWR | O_NOCTTY | O_CLOEXEC);
        if (slave < 0)
                return cm_error_set(err, errno, "pty: open the slave: %m");
        *ret_master = TAKE_FD(master);
        *ret_slave = slave;
        return 0;
}
