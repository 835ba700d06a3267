/* The ns runtime's machine: the sandbox spec from the machine's config, the console pty (whose
 * master we hold for the machine's whole life: with it closed every console write of systemd
 * retries and halting takes ~30 s) and the console log. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include "runtime.h"
#include "util/fs.h"
#include "util/strv.h"

#define CONSOLE_LOG "console.log"
#define CONSOLE_LOG_OLD "console.log.1"
#define CONSOLE_LOG_MAX (4u << 20)

static int console_log_open(struct runtime *rt) {
        _cleanup_close_ int dfd = open(rt->machine_dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
        if (dfd < 0)
                return -errno;
        int fd = openat(dfd, CONSOLE_LOG, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0640);
        if (fd < 0)
                return -errno;
        struct stat st;
        rt->console_log_size = fstat(fd, &st) == 0 ? (uint64_t)st.st_size : 0;
        if (rt->console_log >= 0)
                close(rt->console_log);
        rt->console_log = fd;
        return 0;
}

static void console_log_rotate(struct runtime *rt) {
        _cleanup_close_ int dfd = open(rt->machine_dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
        if (dfd < 0 || renameat(dfd, CONSOLE_LOG, dfd, CONSOLE_LOG_OLD) < 0) {
                /* cannot rotate: start over rather than grow without bound */
                if (ftruncate(rt->console_log, 0) == 0)
                        rt->console_log_size = 0;
                return;
        }
        if (console_log_open(rt) < 0) {
                close(rt->console_log);
                rt->console_log = -1;
        }
}

int console_open(struct runtime *rt) {
        int m = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
        if (m < 0)
                return -errno;
        if (grantpt(m) < 0 || unlockpt(m) < 0) {
                int r = -errno;
                close(m);
                return r;
        }
        int s = ioctl(m, TIOCGPTPEER, O_RDWR | O_NOCTTY | O_CLOEXEC);
        if (s < 0) {
                char name[64];
                if (ptsname_r(m, name, sizeof name) != 0 || (s = open(name, O_RDWR | O_NOCTTY | O_CLOEXEC)) < 0) {
                        int r = -errno;
                        close(m);
                        return r;
                }
        }
        struct winsize ws = {.ws_row = 24, .ws_col = 80};
        (void)ioctl(m, TIOCSWINSZ, &ws);
        int fl = fcntl(m, F_GETFL);
        (void)fcntl(m, F_SETFL, fl | O_NONBLOCK);
        rt->console_master = m;
        /* We keep a slave open too: the master then never reads EIO while init's side is
         * between owners (agetty's vhangup, a console reopened by systemd). */
        rt->console_slave = s;
        (void)console_log_open(rt);
        return 0;
}

void console_pump(struct runtime *rt) {
        uint8_t buf[16384];
        for (int i = 0; i < 64; i++) {
                ssize_t n = read(rt->console_master, buf, sizeof buf);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0 && errno == EIO) {
                        rt->console_hup = true; /* no slave open at the moment: poll again later */
                        return;
                }
                if (n <= 0)
                        return;
                if (rt->console_log < 0)
                        continue;
                if (rt->console_log_size + (uint64_t)n > CONSOLE_LOG_MAX)
                        console_log_rotate(rt);
                if (rt->console_log < 0)
                        continue;
                ssize_t w = write(rt->console_log, buf, (size_t)n);
                if (w > 0)
                        rt->console_log_size += (uint64_t)w;
        }
}

static void iso_now(char *buf, size_t len) {
        time_t t = time(NULL);
        struct tm tm;
        gmtime_r(&t, &tm);
        strftime(buf, len, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static enum sandbox_home home_of(enum home_mount m) {
        switch (m) {
        case HOME_MOUNT_RO:
                return SANDBOX_HOME_RO;
        case HOME_MOUNT_NONE:
                return SANDBOX_HOME_NONE;
        default:
                return SANDBOX_HOME_RW;
        }
}

static void session_exited(pid_t pid, int status, void *userdata) {
        (void)conns_child_exited(userdata, pid, status);
}

int machine_boot(struct runtime *rt, struct cm_error **err) {
        struct machine_config *c = rt->config;
        _cleanup_free_ char *upper = NULL, *work = NULL, *rootfs = NULL;
        if (asprintf(&upper, "%s/upper", rt->machine_dir) < 0 || asprintf(&work, "%s/work", rt->machine_dir) < 0 ||
            asprintf(&rootfs, "%s/rootfs", rt->run_dir) < 0)
                return cm_error_set(err, ENOMEM, "out of memory");
        int r;
        if ((r = fs_mkdir_p(-1, upper, 0755)) < 0 || (r = fs_mkdir_p(-1, work, 0700)) < 0)
                return cm_error_set(err, -r, "create %s: %s", upper, strerror(-r));
        if (mkdir(rootfs, 0755) < 0 && errno != EEXIST)
                return cm_error_set(err, errno, "create %s: %m", rootfs);
        /* A runtime that crashed may have left its mounts: we hold the lock, so clean them. */
        (void)sandbox_cleanup_stale(rt->name, rootfs);

        if ((r = machine_net_up(rt, err)) < 0)
                return r;

        struct sandbox_spec spec = {
                .name = c->name ? c->name : rt->name,
                .machine_id = c->id,
                .lowerdirs = (const char *const *)c->layers,
                .upperdir = upper,
                .workdir = work,
                .rootfs = rootfs,
                .image_env = (const char *const *)c->env,
                .stop_signal = c->stop_signal,
                .owner =
                        {
                                .name = c->owner.username,
                                .uid = c->owner.uid,
                                .gid = c->owner.gid,
                                .home = c->owner.home,
                                .shell = c->owner.shell,
                        },
                .home = home_of(c->home_mount),
                .cpus = c->cpus,
                .memory = c->memory,
                .ip_address = rt->net_up ? c->ip_address : NULL,
                .netns_path = rt->netns_fd >= 0 ? rt->netns_path : NULL,
                .nameserver = rt->net_up ? rt->net.gateway : NULL, /* the apiserver's forwarder */
                .console_fd = rt->console_slave,
                .provision = !c->provisioned,
        };
        r = sandbox_start(&spec, &rt->sb, err);
        if (r < 0)
                return r;
        rt->init_pid = sandbox_init_pid(rt->sb);
        /* sandbox_stop reaps sessions that die while it waits (a dying PID 1 waits for them) */
        sandbox_on_session_exit(rt->sb, session_exited, rt);
        iso_now(rt->started, sizeof rt->started);

        if (!c->provisioned) {
                /* Re-read so that a concurrent `machine set` is not undone; only our bit changes. */
                _cleanup_machine_config_ struct machine_config *fresh = NULL;
                _cleanup_error_ struct cm_error *e = NULL;
                struct machine_config *target = c;
                if (machine_config_load(rt->machine_dir, &fresh, &e) == 0)
                        target = fresh;
                target->provisioned = true;
                c->provisioned = true;
                if (machine_config_save(rt->machine_dir, target, &e) < 0)
                        log_msg("warning: cannot mark %s provisioned: %s", rt->name, e && e->message ? e->message : "");
        }
        return 0;
}

void machine_stop(struct runtime *rt, unsigned timeout) {
        if (!rt->sb || rt->init_reaped)
                return;
        int r = sandbox_stop(rt->sb, timeout);
        if (r < 0)
                log_msg("stop: %s", strerror(-r));
}

/* comm would say "init" (the name exec'd); the executable's own path names systemd. */
static bool init_is_systemd(pid_t pid) {
        char path[64], exe[PATH_MAX];
        snprintf(path, sizeof path, "/proc/%d/exe", (int)pid);
        ssize_t n = readlink(path, exe, sizeof exe - 1);
        if (n <= 0)
                return false;
        exe[n] = 0;
        const char *base = strrchr(exe, '/');
        return streq(base ? base + 1 : exe, "systemd");
}

pid_t machine_boot_wait(struct runtime *rt) {
        if (!init_is_systemd(rt->init_pid))
                return 0;
        _cleanup_close_ int null = open("/dev/null", O_RDWR | O_CLOEXEC);
        if (null < 0)
                return 0;
        /* Right after exec systemd has no API socket yet and systemctl fails at once: retry
         * until it answers with a state after the boot (the runtime's deadline bounds this). */
        char *argv[] = {"/bin/sh", "-c",
                        "while :; do case $(systemctl is-system-running --wait 2>/dev/null) in "
                        "running|degraded|maintenance|stopping) exit 0;; esac; sleep 0.02; done",
                        NULL};
        char *env[] = {"PATH=" SESSION_PATH, "HOME=/root", "USER=root", "LOGNAME=root", NULL};
        struct sandbox_exec e = {
                .argv = argv,
                .env = env,
                .cwd = "/",
                .uid = 0,
                .gid = 0,
                .stdin_fd = null,
                .stdout_fd = null,
                .stderr_fd = null,
        };
        pid_t pid = 0;
        _cleanup_error_ struct cm_error *err = NULL;
        if (sandbox_exec(rt->sb, &e, &pid, &err) < 0) {
                log_msg("cannot wait for systemd's boot: %s", err && err->message ? err->message : "error");
                return 0;
        }
        return pid;
}
