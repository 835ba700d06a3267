/* Starting a machine: overlay root in the runtime's own mount namespace, provisioning,
 * the machine's cgroup, then clone3() of PID 1 into new pid/mount/uts/ipc/net namespaces
 * directly into its cgroup; the child builds its mounts, enters a cgroup namespace, drops
 * capabilities from the bounding set, pivots into the root and execs /sbin/init.
 *
 * What sandbox_start expects of its caller (the runtime), see also sandbox.h:
 *  - it runs as root in the host's user namespace, from the thread that will live as long as
 *    the machine (PR_SET_PDEATHSIG fires when the *thread* that forked init exits);
 *  - it unshares the caller's mount namespace (CLONE_NEWNS, / made rslave) and mounts the
 *    root there, so a runtime that dies leaves no mount behind. Call it before starting
 *    other threads, or from the only thread that touches mounts;
 *  - init is the caller's child: the caller reaps it (waitpid on sandbox_init_pid()). */
#include <errno.h>
#include <fcntl.h>
#include <linux/capability.h>
#include <linux/sched.h>
#include <net/if.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "sandbox/sandbox-internal.h"
#include "util/error.h"
#include "util/macro.h"
#include "util/strv.h"

void sb_reset_signals(void) {
        struct sigaction sa = {.sa_handler = SIG_DFL};
        for (int s = 1; s < _NSIG; s++)
                if (s != SIGKILL && s != SIGSTOP)
                        (void)sigaction(s, &sa, NULL);
        sigset_t none;
        sigemptyset(&none);
        (void)sigprocmask(SIG_SETMASK, &none, NULL);
}

int sb_setup_stdio(int in, int out, int errfd) {
        int fds[3] = {in, out, errfd};
        /* move fds that sit in 0..2 out of the way first, so dup2 cannot clobber them */
        for (int i = 0; i < 3; i++)
                if (fds[i] >= 0 && fds[i] < 3 && fds[i] != i) {
                        int n = fcntl(fds[i], F_DUPFD_CLOEXEC, 3);
                        if (n < 0)
                                return -errno;
                        int old = fds[i];
                        for (int k = 0; k < 3; k++)
                                if (fds[k] == old)
                                        fds[k] = n;
                }
        for (int i = 0; i < 3; i++) {
                if (fds[i] < 0)
                        continue;
                if (fds[i] == i) {
                        if (fcntl(i, F_SETFD, 0) < 0)
                                return -errno;
                } else if (dup2(fds[i], i) < 0)
                        return -errno;
        }
        /* nothing of the runtime's (sockets, the console master, other machines) leaks in */
        if (close_range(3, ~0U, CLOSE_RANGE_CLOEXEC) < 0)
                return -errno;
        return 0;
}

static int loopback_up(void) {
        _cleanup_close_ int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        if (s < 0)
                return -errno;
        struct ifreq ifr = {0};
        strcpy(ifr.ifr_name, "lo");
        if (ioctl(s, SIOCGIFFLAGS, &ifr) < 0)
                return -errno;
        ifr.ifr_flags |= IFF_UP | IFF_RUNNING;
        if (ioctl(s, SIOCSIFFLAGS, &ifr) < 0)
                return -errno;
        return 0;
}

/* systemd-nspawn's default set, minus CAP_MKNOD (we install no device policy: with mknod,
 * root inside could create a node for the host's disk), plus CAP_NET_ADMIN (the machine
 * always has a network namespace of its own). Dropped, among others: SYS_MODULE, SYS_RAWIO,
 * SYS_TIME, MAC_*, SYSLOG, WAKE_ALARM, BLOCK_SUSPEND, BPF, PERFMON, CHECKPOINT_RESTORE.
 * Kept: SYS_BOOT (reboot() in a child pid namespace only kills its init), SYS_PTRACE (only
 * reaches the machine's own processes), SYS_RESOURCE (this host lacks it anyway). */
static const int kept_caps[] = {
        CAP_AUDIT_CONTROL,   CAP_AUDIT_WRITE,      CAP_CHOWN,         CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH,
        CAP_FOWNER,          CAP_FSETID,           CAP_IPC_OWNER,     CAP_KILL,         CAP_LEASE,
        CAP_LINUX_IMMUTABLE, CAP_NET_BIND_SERVICE, CAP_NET_BROADCAST, CAP_NET_RAW,      CAP_NET_ADMIN,
        CAP_SETFCAP,         CAP_SETGID,           CAP_SETPCAP,       CAP_SETUID,       CAP_SYS_ADMIN,
        CAP_SYS_BOOT,        CAP_SYS_CHROOT,       CAP_SYS_NICE,      CAP_SYS_PTRACE,   CAP_SYS_RESOURCE,
        CAP_SYS_TTY_CONFIG,
};

int sb_drop_bounding_set(void) {
        for (int c = 0; c <= 63; c++) {
                bool keep = false;
                for (size_t i = 0; i < ELEMENTSOF(kept_caps); i++)
                        keep |= kept_caps[i] == c;
                if (keep)
                        continue;
                if (prctl(PR_CAPBSET_DROP, (unsigned long)c, 0, 0, 0) < 0 && errno != EINVAL)
                        return -errno;
        }
        return 0;
}

static char **build_init_env(const struct sandbox_spec *spec) {
        char **env = NULL;
        bool have_path = false;
        for (size_t i = 0; spec->image_env && spec->image_env[i]; i++) {
                const char *e = spec->image_env[i];
                if (strncmp(e, "container=", 10) == 0 || !strchr(e, '='))
                        continue;
                have_path |= strncmp(e, "PATH=", 5) == 0;
                if (strv_push_dup(&env, e) < 0)
                        goto oom;
        }
        if (!have_path && strv_push_dup(&env, "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin") < 0)
                goto oom;
        if (strv_push_dup(&env, "container=container-machine") < 0)
                goto oom;
        return env;
oom:
        strv_free(env);
        return NULL;
}

struct child_args {
        const struct sandbox_spec *spec;
        int errpipe;
        int parent_pidfd;
        int netns_fd;
        bool have_cgroup;
        bool set_affinity;
        cpu_set_t affinity;
        char **v1_cgroups;
        char **env;
};

_Noreturn static void child_fail(int fd, const char *step, int r) {
        dprintf(fd, "%s: %s", step, strerror(r < 0 ? -r : r));
        _exit(127);
}

_Noreturn static void init_child(struct child_args *a) {
        const struct sandbox_spec *spec = a->spec;
        int r;
        /* if the runtime dies, the machine dies with it (SIGKILL of PID 1 kills the pid ns) */
        if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0)
                child_fail(a->errpipe, "PR_SET_PDEATHSIG", errno);
        struct pollfd p = {.fd = a->parent_pidfd, .events = POLLIN};
        if (poll(&p, 1, 0) != 0)
                _exit(127); /* the runtime died before we could notice */
        close(a->parent_pidfd);
        sb_reset_signals();
        umask(022); /* not the runtime's (a daemon's umask is often 077) */

        if (a->netns_fd >= 0) {
                if (setns(a->netns_fd, CLONE_NEWNET) < 0)
                        child_fail(a->errpipe, "join the network namespace", errno);
                close(a->netns_fd);
                (void)loopback_up(); /* the namespace's owner configures the rest */
        } else if ((r = loopback_up()) < 0)
                child_fail(a->errpipe, "bring up lo", r);

        sb_cgroup_join_v1(a->v1_cgroups);
        /* after the move into the machine's cgroup (clone3 put us there): that cgroup
         * becomes the root of the namespace, so systemd sees its own tree */
        if (unshare(CLONE_NEWCGROUP) < 0)
                child_fail(a->errpipe, "cgroup namespace", errno);
        if (sethostname(spec->name, strlen(spec->name)) < 0)
                child_fail(a->errpipe, "sethostname", errno);
        if (a->set_affinity)
                (void)sched_setaffinity(0, sizeof a->affinity, &a->affinity);

        const char *step = NULL;
        if ((r = sb_setup_mounts_child(spec, a->have_cgroup, a->netns_fd < 0, &step)) < 0)
                child_fail(a->errpipe, step, r);

        if (setsid() < 0)
                child_fail(a->errpipe, "setsid", errno);
        if (spec->console_fd >= 0) {
                if ((r = sb_setup_stdio(spec->console_fd, spec->console_fd, spec->console_fd)) < 0)
                        child_fail(a->errpipe, "console as stdio", r);
                (void)ioctl(0, TIOCSCTTY, 0);
        } else {
                int null = open("/dev/null", O_RDWR | O_CLOEXEC);
                if (null < 0 || (r = sb_setup_stdio(null, null, null)) < 0)
                        child_fail(a->errpipe, "/dev/null as stdio", null < 0 ? errno : r);
        }
        /* sb_setup_stdio marked everything above 2 close-on-exec, the error pipe too */
        if ((r = sb_drop_bounding_set()) < 0)
                child_fail(a->errpipe, "capability bounding set", r);

        char *argv[] = {(char *)"/sbin/init", NULL};
        execve("/sbin/init", argv, a->env);
        child_fail(a->errpipe, "exec /sbin/init", errno);
}

static pid_t clone3_into(uint64_t flags, int cgroup_fd, int *ret_pidfd) {
        struct clone_args ca = {
                .flags = flags | CLONE_PIDFD | (cgroup_fd >= 0 ? CLONE_INTO_CGROUP : 0),
                .pidfd = (uint64_t)(uintptr_t)ret_pidfd,
                .exit_signal = SIGCHLD,
                .cgroup = cgroup_fd >= 0 ? (uint64_t)cgroup_fd : 0,
        };
        return (pid_t)syscall(SYS_clone3, &ca, sizeof ca);
}

/* The merged root directory takes its mode and owner from the upper dir. A fresh (empty)
 * upper dir was made by the runtime under its umask (0700 from a daemon's 077): give it the
 * image's root attributes, or no user but root could enter the machine's "/". Later changes
 * made inside the machine (chmod /) are the upper dir's own and stay. */
static void align_fresh_upper(const struct sandbox_spec *spec) {
        _cleanup_close_ int up = open(spec->upperdir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (up < 0)
                return;
        DIR *d = fdopendir(fcntl(up, F_DUPFD_CLOEXEC, 3));
        if (!d)
                return;
        bool empty = true;
        struct dirent *de;
        while (empty && (de = readdir(d)))
                empty = streq(de->d_name, ".") || streq(de->d_name, "..");
        closedir(d);
        size_t n = 0;
        while (spec->lowerdirs[n])
                n++;
        struct stat st;
        if (!empty || n == 0 || stat(spec->lowerdirs[n - 1], &st) < 0)
                return;
        (void)fchown(up, st.st_uid, st.st_gid);
        (void)fchmod(up, st.st_mode & 07777);
}

pid_t sandbox_init_pid(const struct sandbox *sb) {
        return sb ? sb->init_pid : -1;
}

static bool valid_machine_name(const char *s) {
        if (!s || !*s || strlen(s) > 63)
                return false;
        for (const char *p = s; *p; p++)
                if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') || *p == '-' ||
                      *p == '_' || *p == '.'))
                        return false;
        return s[0] != '.' && s[0] != '-';
}

int sandbox_start(const struct sandbox_spec *spec, struct sandbox **ret, struct cm_error **err) {
        int r;
        if (!spec || !valid_machine_name(spec->name))
                return cm_error_set(err, CM_EINVALID, "invalid machine name \"%s\"",
                                    spec && spec->name ? spec->name : "");
        if (!spec->lowerdirs || !spec->lowerdirs[0] || !spec->upperdir || !spec->workdir || !spec->rootfs)
                return cm_error_set(err, CM_EINVALID, "sandbox: layers, upper, work and root directories are required");

        struct sandbox *sb = calloc(1, sizeof *sb);
        if (!sb)
                return cm_error_set(err, ENOMEM, "out of memory");
        sb->root_fd = sb->init_pidfd = -1;
        sb->init_pid = -1;
        _cleanup_close_ int cgfd = -1, errpipe_rd = -1, parent_pidfd = -1, netns_fd = -1;
        _cleanup_strv_ char **env = NULL;
        sb->name = strdup(spec->name);
        sb->rootfs = strdup(spec->rootfs);
        sb->stop_signal = spec->stop_signal ? strdup(spec->stop_signal) : NULL;
        if (!sb->name || !sb->rootfs || (spec->stop_signal && !sb->stop_signal)) {
                r = cm_error_set(err, ENOMEM, "out of memory");
                goto fail;
        }

        /* Our own mount namespace: what we mount dies with us. */
        if (unshare(CLONE_NEWNS) < 0) {
                r = cm_error_set(err, errno, "mount namespace: %m");
                goto fail;
        }
        if (mount(NULL, "/", NULL, MS_REC | MS_SLAVE, NULL) < 0) {
                r = cm_error_set(err, errno, "mount namespace: make / rslave: %m");
                goto fail;
        }
        align_fresh_upper(spec);
        if ((r = sb_mount_overlay(spec, err)) < 0)
                goto fail;
        sb->mounted = true;
        sb->root_fd = open(spec->rootfs, O_PATH | O_DIRECTORY | O_CLOEXEC);
        if (sb->root_fd < 0) {
                r = cm_error_set(err, errno, "open the root %s: %m", spec->rootfs);
                goto fail;
        }
        {
                _cleanup_close_ int init = sb_openat_root(sb->root_fd, "/sbin/init", O_PATH, 0);
                struct stat st;
                if (init < 0 || fstat(init, &st) < 0 || !S_ISREG(st.st_mode)) {
                        r = cm_error_set(err, CM_EINVALID, "the image has no /sbin/init: %s",
                                         init < 0 ? strerror(-init) : "not a regular file");
                        goto fail;
                }
        }
        sb->init_kind = sb_detect_init(sb->root_fd);

        if (spec->provision && (r = sandbox_provision(sb->root_fd, spec, err)) < 0)
                goto fail;
        if ((r = sb_prepare_etc(sb->root_fd, spec, err)) < 0)
                goto fail;
        if ((r = sb_cgroup_create(sb, spec, &cgfd, err)) < 0)
                goto fail;
        if (spec->netns_path) {
                netns_fd = open(spec->netns_path, O_RDONLY | O_CLOEXEC);
                if (netns_fd < 0) {
                        r = cm_error_set(err, errno, "open network namespace %s: %m", spec->netns_path);
                        goto fail;
                }
        }
        env = build_init_env(spec);
        if (!env) {
                r = cm_error_set(err, ENOMEM, "out of memory");
                goto fail;
        }
        parent_pidfd = (int)syscall(SYS_pidfd_open, getpid(), 0);
        int pipefd[2];
        if (parent_pidfd < 0 || pipe2(pipefd, O_CLOEXEC) < 0) {
                r = cm_error_set(err, errno, "start init: %m");
                goto fail;
        }
        errpipe_rd = pipefd[0];

        struct child_args a = {
                .spec = spec,
                .errpipe = pipefd[1],
                .parent_pidfd = parent_pidfd,
                .netns_fd = netns_fd,
                .have_cgroup = cgfd >= 0,
                .v1_cgroups = sb->v1_cgroups,
                .env = env,
        };
        a.set_affinity = sb_cpu_affinity(spec->cpus, &a.affinity) > 0;

        uint64_t flags = CLONE_NEWPID | CLONE_NEWNS | CLONE_NEWUTS | CLONE_NEWIPC | (netns_fd < 0 ? CLONE_NEWNET : 0);
        int pidfd = -1;
        pid_t pid = clone3_into(flags, cgfd, &pidfd);
        if (pid < 0) {
                close(pipefd[1]);
                r = cm_error_set(err, errno, "start init: clone3: %m");
                goto fail;
        }
        if (pid == 0)
                init_child(&a);
        close(pipefd[1]);
        sb->init_pid = pid;
        sb->init_pidfd = pidfd;

        /* EOF without a message: init was exec'd (the pipe is close-on-exec) */
        char msg[512];
        size_t len = 0;
        for (;;) {
                ssize_t n = read(errpipe_rd, msg + len, sizeof msg - 1 - len);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n <= 0)
                        break;
                len += (size_t)n;
                if (len == sizeof msg - 1)
                        break;
        }
        msg[len] = 0;
        if (len > 0) {
                r = cm_error_set(err, CM_EINTERNAL, "start init: %s", msg);
                /* the child exits right after writing; reap it (ECHILD if the runtime did) */
                (void)waitpid(pid, NULL, 0);
                sb->init_exited = true;
                goto fail;
        }
        *ret = sb;
        return 0;
fail:
        sandbox_free(sb);
        return r;
}
