/* Stopping a machine through its init's own shutdown, and cleaning up after it.
 *
 * Each init has its own request: systemd halts on SIGRTMIN+3; busybox init powers off on
 * SIGUSR2 (and ignores SIGRTMIN+3); openrc-init shuts down on SIGTERM (SIGINT would reboot);
 * sysvinit takes a runlevel-0 request on its /run/initctl FIFO (its SIGINT is the
 * ctrl-alt-del action, a reboot on Debian). The image's STOPSIGNAL overrides the signal.
 * After the timeout PID 1 gets SIGKILL, which takes its whole pid namespace with it. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "sandbox/sandbox-internal.h"
#include "util/macro.h"
#include "util/strv.h"

enum sandbox_init_kind sb_detect_init(int root_fd) {
        _cleanup_free_ char *target = NULL;
        if (sb_resolve_in_root(root_fd, "/sbin/init", &target) < 0)
                return INIT_UNKNOWN;
        const char *base = strrchr(target, '/');
        base = base ? base + 1 : target;
        if (streq(base, "systemd") || strstr(target, "/systemd/"))
                return INIT_SYSTEMD;
        if (streq(base, "busybox"))
                return INIT_BUSYBOX;
        if (streq(base, "openrc-init"))
                return INIT_OPENRC;
        if (streq(base, "init")) {
                /* a real /sbin/init: sysvinit keeps its FIFO in /run/initctl (or /dev/initctl) */
                _cleanup_close_ int fd = sb_openat_root(root_fd, "/sbin/telinit", O_PATH, 0);
                if (fd >= 0)
                        return INIT_SYSVINIT;
        }
        return INIT_UNKNOWN;
}

/* "SIGRTMIN+3", "RTMIN+3", "SIGTERM", "TERM", "15" */
static int parse_signal(const char *s) {
        static const struct {
                const char *name;
                int sig;
        } names[] = {
                {"HUP", SIGHUP},   {"INT", SIGINT},   {"QUIT", SIGQUIT}, {"KILL", SIGKILL},
                {"USR1", SIGUSR1}, {"USR2", SIGUSR2}, {"TERM", SIGTERM}, {"PWR", SIGPWR},
                {"ALRM", SIGALRM}, {"CONT", SIGCONT}, {"STOP", SIGSTOP}, {"WINCH", SIGWINCH},
        };
        if (!s || !*s)
                return -EINVAL;
        if (strncmp(s, "SIG", 3) == 0)
                s += 3;
        char *end;
        long v = strtol(s, &end, 10);
        if (!*end && end != s)
                return v > 0 && v < _NSIG ? (int)v : -EINVAL;
        for (size_t i = 0; i < ELEMENTSOF(names); i++)
                if (streq(s, names[i].name))
                        return names[i].sig;
        if (strncmp(s, "RTMIN", 5) == 0) {
                long off = 0;
                if (s[5] == '+')
                        off = strtol(s + 6, &end, 10);
                else if (s[5] == 0)
                        end = (char *)s + 5;
                else
                        return -EINVAL;
                if (*end || SIGRTMIN + off > SIGRTMAX)
                        return -EINVAL;
                return SIGRTMIN + (int)off;
        }
        if (strncmp(s, "RTMAX", 5) == 0) {
                long off = 0;
                if (s[5] == '-')
                        off = strtol(s + 6, &end, 10);
                else if (s[5] == 0)
                        end = (char *)s + 5;
                else
                        return -EINVAL;
                if (*end || SIGRTMAX - off < SIGRTMIN)
                        return -EINVAL;
                return SIGRTMAX - (int)off;
        }
        return -EINVAL;
}

static int send_signal(struct sandbox *sb, int sig) {
        if (syscall(SYS_pidfd_send_signal, sb->init_pidfd, sig, NULL, 0) < 0)
                return -errno;
        return 0;
}

/* sysvinit's initctl protocol: struct init_request, 384 bytes, runlevel '0' */
static int sysvinit_halt(struct sandbox *sb) {
        char p[64];
        snprintf(p, sizeof p, "/proc/%d/root", (int)sb->init_pid);
        _cleanup_close_ int root = open(p, O_PATH | O_DIRECTORY | O_CLOEXEC);
        if (root < 0)
                return -errno;
        /* init's root in init's mount namespace: its /run, resolved inside it */
        static const char *const fifos[] = {"/run/initctl", "/dev/initctl"};
        for (size_t i = 0; i < ELEMENTSOF(fifos); i++) {
                _cleanup_close_ int fd = sb_openat_root(root, fifos[i], O_WRONLY | O_NONBLOCK | O_NOCTTY, 0);
                if (fd < 0)
                        continue;
                unsigned char req[384] = {0};
                int magic = 0x03091969, cmd = 1 /* INIT_CMD_RUNLVL */, runlevel = '0', sleeptime = 5;
                memcpy(req, &magic, 4);
                memcpy(req + 4, &cmd, 4);
                memcpy(req + 8, &runlevel, 4);
                memcpy(req + 12, &sleeptime, 4);
                if (write(fd, req, sizeof req) == (ssize_t)sizeof req)
                        return 0;
        }
        return -ENOENT;
}

static void reap_sessions(struct sandbox *sb) {
        /* While PID 1 exits, the kernel waits until every process of its pid namespace is
         * reaped, sessions (our children) included: reap those that died here, or init never
         * goes away while the runtime sits in sandbox_stop. */
        for (size_t i = 0; i < sb->n_sessions; i++) {
                struct sandbox_session *x = &sb->sessions[i];
                if (x->pidfd < 0)
                        continue;
                siginfo_t si = {0};
                int r = waitid(P_PIDFD, (id_t)x->pidfd, &si, WEXITED | WNOHANG);
                if (r < 0 && errno == ECHILD) {
                        close(x->pidfd);
                        x->pidfd = -1;
                } else if (r == 0 && si.si_pid > 0) {
                        int status = si.si_code == CLD_EXITED ? (si.si_status & 0xff) << 8 : si.si_status & 0x7f;
                        if (sb->on_session_exit)
                                sb->on_session_exit(x->pid, status, sb->on_session_exit_userdata);
                        close(x->pidfd);
                        x->pidfd = -1;
                }
        }
}

static bool wait_init(struct sandbox *sb, long ms) {
        struct timespec start;
        clock_gettime(CLOCK_MONOTONIC, &start);
        for (unsigned tick = 0;; tick++) {
                if (sb->init_exited)
                        return true;
                struct pollfd p = {.fd = sb->init_pidfd, .events = POLLIN};
                int r = poll(&p, 1, 20);
                if (r > 0)
                        return true;
                reap_sessions(sb);
                /* systemd-shutdown (and others) wait for the processes they killed in
                 * sigtimedwait(SIGCHLD), checking kill(pid, 0) only when woken: sessions are
                 * not their children, so no SIGCHLD comes when one dies and they would sit out
                 * their whole timeout (90 s). Nudge them; harmless to every init. */
                if (tick % 5 == 4)
                        (void)send_signal(sb, SIGCHLD);
                struct timespec now;
                clock_gettime(CLOCK_MONOTONIC, &now);
                long el = (now.tv_sec - start.tv_sec) * 1000 + (now.tv_nsec - start.tv_nsec) / 1000000;
                if (el >= ms)
                        return false;
        }
}

int sandbox_stop(struct sandbox *sb, unsigned timeout_sec) {
        if (!sb || sb->init_pidfd < 0 || sb->init_exited)
                return 0;
        int r = -EINVAL, sig = sb->stop_signal ? parse_signal(sb->stop_signal) : -EINVAL;
        if (sig > 0)
                r = send_signal(sb, sig);
        else
                switch (sb->init_kind) {
                case INIT_SYSTEMD:
                        r = send_signal(sb, SIGRTMIN + 3);
                        break;
                case INIT_BUSYBOX:
                        r = send_signal(sb, SIGUSR2);
                        break;
                case INIT_OPENRC:
                        r = send_signal(sb, SIGTERM);
                        break;
                case INIT_SYSVINIT:
                        r = sysvinit_halt(sb);
                        if (r < 0)
                                r = send_signal(sb, SIGPWR);
                        break;
                default:
                        r = send_signal(sb, SIGTERM);
                        break;
                }
        if (r == -ESRCH)
                return 0;
        if (r >= 0 && wait_init(sb, (long)timeout_sec * 1000))
                return 0;
        (void)send_signal(sb, SIGKILL);
        if (sb->cgroup_path) {
                char p[PATH_MAX];
                snprintf(p, sizeof p, "%s/cgroup.kill", sb->cgroup_path);
                int fd = open(p, O_WRONLY | O_CLOEXEC);
                if (fd >= 0) {
                        (void)!write(fd, "1", 1);
                        close(fd);
                }
        }
        if (!wait_init(sb, 5000))
                return -ETIMEDOUT;
        return 0;
}

void sandbox_reaped(struct sandbox *sb, int status) {
        if (!sb)
                return;
        sb->init_exited = true;
        sb->init_status = status;
}

void sandbox_on_session_exit(struct sandbox *sb, void (*cb)(pid_t pid, int status, void *userdata), void *userdata) {
        if (!sb)
                return;
        sb->on_session_exit = cb;
        sb->on_session_exit_userdata = userdata;
}

void sandbox_free(struct sandbox *sb) {
        if (!sb)
                return;
        if (sb->init_pidfd >= 0) {
                /* still running: the machine does not outlive its handle */
                struct pollfd p = {.fd = sb->init_pidfd, .events = POLLIN};
                if (!sb->init_exited && poll(&p, 1, 0) == 0) {
                        (void)send_signal(sb, SIGKILL);
                        (void)wait_init(sb, 5000);
                }
                close(sb->init_pidfd);
        }
        for (size_t i = 0; i < sb->n_sessions; i++)
                if (sb->sessions[i].pidfd >= 0)
                        close(sb->sessions[i].pidfd);
        free(sb->sessions);
        if (sb->root_fd >= 0)
                close(sb->root_fd);
        if (sb->mounted)
                (void)umount2(sb->rootfs, MNT_DETACH);
        (void)sb_cgroup_remove(sb->cgroup_path);
        /* also the shared parent under the runtime's own v1 cgroup, if no other machine
         * uses it: whoever manages the runtime's cgroup must be able to remove it */
        if (sb->v1_cgroups)
                sb_cgroup_remove_v1(sb->name);
        strv_free(sb->v1_cgroups);
        free(sb->cgroup_path);
        free(sb->name);
        free(sb->rootfs);
        free(sb->stop_signal);
        free(sb);
}

int sandbox_cleanup_stale(const char *name, const char *rootfs) {
        int r = 0;
        if (rootfs && umount2(rootfs, MNT_DETACH) < 0 && errno != EINVAL && errno != ENOENT)
                r = -errno;
        if (!name || !*name || strchr(name, '/') || streq(name, ".") || streq(name, ".."))
                return r ? r : -EINVAL;
        _cleanup_free_ char *root = NULL;
        if (sb_cgroup_v2_root(&root) == 0) {
                char p[PATH_MAX];
                snprintf(p, sizeof p, "%s/container-machine/%s", root, name);
                int k = sb_cgroup_remove(p); /* kills what is left through cgroup.kill */
                if (k < 0 && r == 0)
                        r = k;
        }
        sb_cgroup_remove_v1(name);
        return r;
}
