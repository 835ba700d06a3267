/* machine.* methods. A machine belongs to the uid that created it: only that uid and root
 * see or touch it; to everyone else it does not exist. State is never kept in memory: it is
 * read from $CONTAINER_RUN each time (machine_state_read), so an apiserver restart adopts
 * running machines without doing anything. */
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>

#include "machine/hostprobe.h"
#include "machine/machine.h"
#include "net/settings.h"
#include "proto/session.h"
#include "sandbox/sandbox.h"
#include "server.h"
#include "util/config.h"
#include "util/fs.h"
#include "util/json.h"
#include "util/strv.h"

#define BOOT_TIMEOUT_MS 60000
#define STOP_TIMEOUT_DEFAULT 10
#define RUNTIME_LOG_MAX (1 << 20) /* then it becomes runtime.log.1 at the next boot */

#define NOT_FOUND(err, name) cm_error_set(err, CM_ENOTFOUND, "container machine with ID %s not found", name)

/* ---- paths, locks, ownership ---- */

static char *machines_root(struct server *srv) {
        char *p = NULL;
        if (asprintf(&p, "%s/machines", srv->root) < 0)
                return NULL;
        return p;
}

static int ensure_machines_root(struct server *srv, struct cm_error **err) {
        _cleanup_free_ char *p = machines_root(srv);
        if (!p)
                return cm_error_set(err, ENOMEM, "out of memory");
        int r = fs_mkdir_p(AT_FDCWD, p, 0700);
        if (r < 0)
                return cm_error_set(err, -r, "cannot create %s: %s", p, strerror(-r));
        return 0;
}

/* Exclusive flock on ROOT/machines/NAME/.lock; -ENOENT when the machine is gone. */
static int machine_lock(struct server *srv, const char *name, int *ret_fd) {
        _cleanup_free_ char *dir = machine_dir(srv->root, name);
        _cleanup_free_ char *path = NULL;
        if (!dir || asprintf(&path, "%s/.lock", dir) < 0)
                return -ENOMEM;
        int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
        if (fd < 0)
                return -errno;
        while (flock(fd, LOCK_EX) < 0)
                if (errno != EINTR) {
                        int r = -errno;
                        close(fd);
                        return r;
                }
        /* rm renames the directory away while holding the lock: is ours still the real one? */
        struct stat a, b;
        if (fstat(fd, &a) < 0 || stat(path, &b) < 0 || a.st_ino != b.st_ino || a.st_dev != b.st_dev) {
                close(fd);
                return -ENOENT;
        }
        *ret_fd = fd;
        return 0;
}

static bool may_access(struct request *req, const struct machine_config *c) {
        return req->uid == 0 || c->owner.uid == req->uid;
}

/* Loads the config of a machine the caller may see; anything else is "not found". */
static int load_owned(struct request *req, const char *name, struct machine_config **ret, struct cm_error **err) {
        if (!name || machine_name_validate(name, NULL) < 0)
                return NOT_FOUND(err, name ? name : "");
        _cleanup_free_ char *dir = machine_dir(req->srv->root, name);
        if (!dir)
                return cm_error_set(err, ENOMEM, "out of memory");
        _cleanup_free_ char *cfgpath = NULL;
        if (asprintf(&cfgpath, "%s/config.json", dir) < 0)
                return cm_error_set(err, ENOMEM, "out of memory");
        if (access(cfgpath, F_OK) < 0)
                return NOT_FOUND(err, name);
        struct machine_config *c = NULL;
        int r = machine_config_load(dir, &c, err);
        if (r < 0)
                return r;
        if (!may_access(req, c)) {
                machine_config_free(c);
                return NOT_FOUND(err, name);
        }
        *ret = c;
        return 0;
}

/* Locks the machine, then loads its config (after the lock: rm may have won the race). */
static int lock_owned(struct request *req, const char *name, int *ret_lock, struct machine_config **ret,
                      struct cm_error **err) {
        _cleanup_machine_config_ struct machine_config *c = NULL;
        int r = load_owned(req, name, &c, err);
        if (r < 0)
                return r;
        machine_config_free(TAKE_PTR(c));
        _cleanup_close_ int lfd = -1;
        r = machine_lock(req->srv, name, &lfd);
        if (r == -ENOENT)
                return NOT_FOUND(err, name);
        if (r < 0)
                return cm_error_set(err, -r, "cannot lock machine %s: %s", name, strerror(-r));
        r = load_owned(req, name, &c, err);
        if (r < 0)
                return r;
        *ret_lock = TAKE_FD(lfd);
        *ret = TAKE_PTR(c);
        return 0;
}

/* ---- default machine (per owner) ---- */

static char *default_read(struct server *srv, uid_t uid) {
        _cleanup_free_ char *p = machine_default_path(srv->root, uid);
        _cleanup_free_ char *data = NULL;
        size_t len = 0;
        if (!p || fs_read_all(AT_FDCWD, p, 256, &data, &len) < 0)
                return NULL;
        while (len > 0 && (data[len - 1] == '\n' || data[len - 1] == ' '))
                data[--len] = 0;
        if (len == 0 || machine_name_validate(data, NULL) < 0)
                return NULL;
        return TAKE_PTR(data);
}

static int default_write(struct server *srv, uid_t uid, const char *name, struct cm_error **err) {
        _cleanup_free_ char *p = machine_default_path(srv->root, uid);
        _cleanup_free_ char *line = NULL;
        if (!p || asprintf(&line, "%s\n", name) < 0)
                return cm_error_set(err, ENOMEM, "out of memory");
        int r = fs_write_atomic(AT_FDCWD, p, line, strlen(line), 0644);
        if (r < 0)
                return cm_error_set(err, -r, "cannot write %s: %s", p, strerror(-r));
        return 0;
}

static bool machine_exists(struct server *srv, const char *name) {
        _cleanup_free_ char *dir = machine_dir(srv->root, name);
        _cleanup_free_ char *p = NULL;
        if (!dir || asprintf(&p, "%s/config.json", dir) < 0)
                return false;
        return access(p, F_OK) == 0;
}

/* Removes every owner's default file that names this machine. */
static void default_forget(struct server *srv, const char *name) {
        _cleanup_free_ char *mr = machines_root(srv);
        _cleanup_closedir_ DIR *d = mr ? opendir(mr) : NULL;
        if (!d)
                return;
        struct dirent *de;
        while ((de = readdir(d))) {
                unsigned uid;
                char extra;
                if (sscanf(de->d_name, ".default-%u%c", &uid, &extra) != 1)
                        continue;
                _cleanup_free_ char *cur = default_read(srv, (uid_t)uid);
                if (cur && streq(cur, name))
                        unlinkat(dirfd(d), de->d_name, 0);
        }
}

/* ---- the runtime process ---- */

static char *find_runtime(void) {
        return cm_find_program("CONTAINER_RUNTIME", "container-runtime", "runtime");
}

/* A runtime that died leaves its run directory behind, maybe its mounted root and a cgroup
 * with the machine's processes still in it (an orphaned init): unmount, kill what is left,
 * remove. Only called when no runtime of this machine is alive. */
static void clean_stale_run(struct server *srv, const char *name) {
        _cleanup_free_ char *rd = machine_run_dir(srv->run, name);
        if (!rd)
                return;
        _cleanup_free_ char *rootfs = NULL;
        if (asprintf(&rootfs, "%s/rootfs", rd) >= 0) {
                sandbox_cleanup_stale(name, rootfs);
        }
        fs_rm_rf(AT_FDCWD, rd);
}

static int stale_check(struct server *srv, const char *name) {
        pid_t pid;
        int r = machine_runtime_pid(srv->run, name, &pid);
        if (r == -ESRCH || r == -EINVAL)
                clean_stale_run(srv, name);
        return r;
}

static int read_ready_line(int fd, int timeout_ms, char *buf, size_t size) {
        size_t len = 0;
        struct timespec start, now;
        clock_gettime(CLOCK_MONOTONIC, &start);
        for (;;) {
                clock_gettime(CLOCK_MONOTONIC, &now);
                long elapsed = (now.tv_sec - start.tv_sec) * 1000 + (now.tv_nsec - start.tv_nsec) / 1000000;
                if (elapsed >= timeout_ms)
                        return -ETIMEDOUT;
                struct pollfd p = { .fd = fd, .events = POLLIN };
                int n = poll(&p, 1, (int)(timeout_ms - elapsed));
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0)
                        return -errno;
                if (n == 0)
                        return -ETIMEDOUT;
                ssize_t k = read(fd, buf + len, size - 1 - len);
                if (k < 0 && errno == EINTR)
                        continue;
                if (k < 0)
                        return -errno;
                if (k == 0)
                        break;
                len += (size_t)k;
                buf[len] = 0;
                if (memchr(buf, '\n', len) || len + 1 >= size)
                        break;
        }
        buf[len] = 0;
        char *nl = strchr(buf, '\n');
        if (nl)
                *nl = 0;
        return len > 0 ? 0 : -EPIPE;
}

/* Starts the machine's runtime detached (own session, not our child) and waits for its
 * readiness line. Caller holds the machine lock. */
static int boot(struct server *srv, const char *name, struct cm_error **err) {
        /* A runtime in transition without us (spawned before an apiserver restart, or an init
         * that halted by itself): wait until it settles. */
        enum machine_state s;
        for (int waited = 0;; waited += 50) {
                s = machine_state_read(srv->run, name, NULL);
                if ((s != MACHINE_STARTING && s != MACHINE_STOPPING) || waited >= BOOT_TIMEOUT_MS)
                        break;
                struct timespec ts = { 0, 50 * 1000 * 1000 };
                nanosleep(&ts, NULL);
        }
        if (s == MACHINE_RUNNING)
                return 0;
        if (s != MACHINE_STOPPED)
                return cm_error_set(err, CM_EINTERNAL, "container machine %s is still %s after %d s", name,
                                    machine_state_to_string(s), BOOT_TIMEOUT_MS / 1000);
        stale_check(srv, name);
        clean_stale_run(srv, name);
        _cleanup_free_ char *rd = machine_run_dir(srv->run, name);
        if (!rd)
                return cm_error_set(err, ENOMEM, "out of memory");
        int r = fs_mkdir_p(AT_FDCWD, rd, 0755);
        if (r < 0)
                return cm_error_set(err, -r, "cannot create %s: %s", rd, strerror(-r));

        _cleanup_free_ char *bin = find_runtime();
        _cleanup_free_ char *execfail = NULL;
        if (!bin || asprintf(&execfail, "{\"ok\":false,\"code\":\"internal\",\"message\":\"cannot execute %s: ", bin) < 0)
                return cm_error_set(err, ENOMEM, "out of memory");
        char *const argv[] = { bin, "--root", srv->root, "--run", srv->run, "--ready-fd", "3", (char *)name, NULL };

        /* the runtime's own messages (and any crash report) go to ROOT/machines/NAME/runtime.log */
        _cleanup_free_ char *mdir = machine_dir(srv->root, name), *logpath = NULL;
        if (!mdir || asprintf(&logpath, "%s/runtime.log", mdir) < 0)
                return cm_error_set(err, ENOMEM, "out of memory");
        struct stat lst;
        if (stat(logpath, &lst) == 0 && lst.st_size > RUNTIME_LOG_MAX) {
                _cleanup_free_ char *old = NULL;
                if (asprintf(&old, "%s.1", logpath) >= 0)
                        rename(logpath, old);
        }
        _cleanup_close_ int logfd = open(logpath, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | O_NOFOLLOW, 0600);
        int pfd[2];
        if (pipe2(pfd, O_CLOEXEC) < 0)
                return cm_error_set(err, errno, "pipe: %s", strerror(errno));
        pid_t mid = fork();
        if (mid < 0) {
                r = -errno;
                close(pfd[0]);
                close(pfd[1]);
                return cm_error_set(err, -r, "fork: %s", strerror(-r));
        }
        if (mid == 0) {
                /* only async-signal-safe calls from here: we are a copy of a threaded process */
                setsid();
                pid_t gc = fork();
                if (gc != 0)
                        _exit(gc < 0 ? 1 : 0);
                sigset_t all;
                sigemptyset(&all);
                sigprocmask(SIG_SETMASK, &all, NULL);
                signal(SIGPIPE, SIG_DFL);
                int null = open("/dev/null", O_RDWR | O_CLOEXEC);
                int out = logfd >= 0 ? logfd : null;
                /* move everything we hand on above 3 first, so no dup2 clobbers another */
                int ready = fcntl(pfd[1], F_DUPFD_CLOEXEC, 10);
                int in = null >= 0 ? fcntl(null, F_DUPFD_CLOEXEC, 10) : -1;
                out = out >= 0 ? fcntl(out, F_DUPFD_CLOEXEC, 10) : -1;
                if (ready < 0)
                        _exit(127);
                dup2(ready, 3); /* dup2 clears FD_CLOEXEC on the copy */
                if (in >= 0)
                        dup2(in, 0);
                if (out >= 0) {
                        dup2(out, 1);
                        dup2(out, 2);
                }
                if (chdir("/") < 0) {
                        /* nothing to do about it */
                }
                execvp(bin, argv);
                int e = errno;
                (void)!write(3, execfail, strlen(execfail));
                const char *d = strerrordesc_np(e);
                (void)!write(3, d, strlen(d));
                (void)!write(3, "\"}\n", 3);
                _exit(127);
        }
        close(pfd[1]);
        while (waitpid(mid, NULL, 0) < 0 && errno == EINTR)
                ;
        char line[8192];
        r = read_ready_line(pfd[0], BOOT_TIMEOUT_MS, line, sizeof line);
        close(pfd[0]);
        if (r == -ETIMEDOUT)
                return cm_error_set(err, CM_EINTERNAL,
                                    "container machine %s did not become ready within %d s (see %s)", name,
                                    BOOT_TIMEOUT_MS / 1000, logpath);
        if (r < 0) {
                stale_check(srv, name);
                return cm_error_set(err, CM_EINTERNAL,
                                    "the runtime of container machine %s exited during start-up (see %s)", name,
                                    logpath);
        }
        _cleanup_json_ json_t *j = json_loads(line, 0, NULL);
        if (!json_is_object(j))
                return cm_error_set(err, CM_EINTERNAL, "the runtime of container machine %s said something unexpected: %.200s",
                                    name, line);
        if (!json_is_true(json_object_get(j, "ok"))) {
                const char *m = json_get_str(j, "message");
                stale_check(srv, name);
                return cm_error_set(err, CM_EINTERNAL, "%s", m ? m : "the machine failed to start");
        }
        return 0;
}

static int pidfd_open_(pid_t pid) {
        return (int)syscall(SYS_pidfd_open, pid, 0);
}

/* Waits for a process to exit (pidfd), up to timeout_ms. 1 = gone, 0 = still there. */
static int wait_gone(int pidfd, int timeout_ms) {
        struct pollfd p = { .fd = pidfd, .events = POLLIN };
        for (;;) {
                int n = poll(&p, 1, timeout_ms);
                if (n < 0 && errno == EINTR)
                        continue;
                return n > 0 ? 1 : 0;
        }
}

/* Graceful stop: the runtime runs init's own shutdown on SIGTERM and exits once init is gone
 * (killing what is left after its timeout). Caller holds the machine lock. Idempotent. */
static int stop(struct server *srv, const char *name, unsigned timeout_sec, struct cm_error **err) {
        pid_t pid = 0;
        int r = machine_runtime_pid(srv->run, name, &pid);
        if (r < 0) {
                if (r == -ESRCH || r == -EINVAL)
                        clean_stale_run(srv, name);
                return 0;
        }
        _cleanup_close_ int pfd = pidfd_open_(pid);
        if (pfd < 0) {
                clean_stale_run(srv, name);
                return 0;
        }
        /* the pid is pinned now: check again that it is still that machine's runtime */
        pid_t again = 0;
        if (machine_runtime_pid(srv->run, name, &again) < 0 || again != pid)
                return 0;
        /* ask the runtime over its session socket: it answers once init is gone */
        _cleanup_free_ char *rd0 = machine_run_dir(srv->run, name);
        _cleanup_free_ char *sock = NULL;
        if (rd0 && asprintf(&sock, "%s/session.sock", rd0) >= 0) {
                json_t *reply = NULL;
                int k = session_control(sock, "stop", timeout_sec, (int)(timeout_sec + 10) * 1000, &reply, NULL);
                json_decref(reply);
                if (k >= 0 && wait_gone(pfd, 10000)) {
                        clean_stale_run(srv, name);
                        return 0;
                }
        }
        /* fallback: SIGTERM; tell the runtime how long init may take (it may read this file) */
        _cleanup_free_ char *rd = machine_run_dir(srv->run, name);
        _cleanup_free_ char *tpath = NULL;
        char tbuf[32];
        snprintf(tbuf, sizeof tbuf, "%u\n", timeout_sec);
        if (rd && asprintf(&tpath, "%s/stop-timeout", rd) >= 0)
                fs_write_atomic(AT_FDCWD, tpath, tbuf, strlen(tbuf), 0644);
        if (syscall(SYS_pidfd_send_signal, pfd, SIGTERM, NULL, 0) < 0 && errno != ESRCH)
                return cm_error_set(err, errno, "cannot signal the runtime of %s: %s", name, strerror(errno));
        if (!wait_gone(pfd, (int)(timeout_sec + 10) * 1000)) {
                syscall(SYS_pidfd_send_signal, pfd, SIGKILL, NULL, 0);
                if (!wait_gone(pfd, 5000))
                        return cm_error_set(err, CM_EINTERNAL, "the runtime of %s (pid %ld) does not exit", name,
                                            (long)pid);
        }
        clean_stale_run(srv, name);
        return 0;
}

/* ---- JSON views ---- */

static void iso_time(time_t t, char *buf, size_t len) {
        struct tm tm;
        gmtime_r(&t, &tm);
        strftime(buf, len, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static json_t *str_or_null(const char *s) {
        return s ? json_string(s) : json_null();
}

/* SPEC's inspect object. */
/* A runtime killed outright leaves its run directory and an empty cgroup behind, and nothing
 * is told of its death: whoever looks at the machine next cleans up, unless a start, stop or
 * rm holds the machine's lock right now (then that one does). */
static void clean_if_stale(struct server *srv, const char *name) {
        _cleanup_free_ char *rd = machine_run_dir(srv->run, name);
        if (!rd || access(rd, F_OK) < 0)
                return;
        _cleanup_free_ char *dir = machine_dir(srv->root, name);
        _cleanup_free_ char *path = NULL;
        if (!dir || asprintf(&path, "%s/.lock", dir) < 0)
                return;
        _cleanup_close_ int fd = open(path, O_RDWR | O_CLOEXEC | O_NOFOLLOW);
        if (fd < 0 || flock(fd, LOCK_EX | LOCK_NB) < 0)
                return;
        if (machine_state_read(srv->run, name, NULL) == MACHINE_STOPPED)
                clean_stale_run(srv, name);
}

static json_t *machine_view(struct server *srv, const struct machine_config *c) {
        pid_t pid = 0;
        enum machine_state s = machine_state_read(srv->run, c->name, &pid);
        if (s == MACHINE_STOPPED)
                clean_if_stale(srv, c->name);
        _cleanup_free_ char *dir = machine_dir(srv->root, c->name);
        unsigned long long du = 0;
        _cleanup_free_ char *upper = NULL;
        if (dir && asprintf(&upper, "%s/upper", dir) >= 0)
                fs_disk_usage(AT_FDCWD, upper, &du);
        json_t *j = json_object();
        json_object_set_new(j, "id", json_string(c->name));
        json_object_set_new(j, "status", json_string(machine_state_to_string(s)));
        json_object_set_new(j, "runtime", str_or_null(c->runtime));
        json_object_set_new(j, "image", json_pack("{s:o,s:o}", "reference", str_or_null(c->image_reference), "digest",
                                                  str_or_null(c->image_digest)));
        json_object_set_new(j, "platform", json_pack("{s:o,s:o}", "os", str_or_null(c->platform_os), "architecture",
                                                     str_or_null(c->platform_arch)));
        json_object_set_new(j, "cpus", json_integer(c->cpus));
        json_object_set_new(j, "memory", json_integer((json_int_t)c->memory));
        json_object_set_new(j, "diskSize", json_integer((json_int_t)du));
        json_object_set_new(j, "homeMount", json_string(home_mount_to_string(c->home_mount)));
        json_object_set_new(j, "virtualization", json_boolean(c->virtualization));
        json_object_set_new(j, "kernelPath", str_or_null(c->kernel_path));
        json_object_set_new(j, "ipAddress", str_or_null(c->ip_address));
        json_object_set_new(j, "createdDate", str_or_null(c->created));
        if (s != MACHINE_STOPPED) {
                _cleanup_free_ char *pidpath = NULL;
                struct stat st;
                if (asprintf(&pidpath, "%s/machines/%s/runtime.pid", srv->run, c->name) >= 0 &&
                    stat(pidpath, &st) == 0) {
                        char buf[32];
                        iso_time(st.st_mtime, buf, sizeof buf);
                        json_object_set_new(j, "startedDate", json_string(buf));
                }
        }
        json_object_set_new(j, "userSetup", json_pack("{s:o,s:I,s:I}", "username", str_or_null(c->owner.username), "uid",
                                                      (json_int_t)c->owner.uid, "gid", (json_int_t)c->owner.gid));
        return j;
}

/* ---- parameters ---- */

static int need_name(json_t *params, const char **ret, struct cm_error **err) {
        const char *v = param_str(params, "name");
        if (!v || !*v)
                return cm_error_set(err, CM_EUSAGE, "missing parameter 'name'");
        *ret = v;
        return 0;
}

/* A parameter given as a string (as the user typed it) or a JSON scalar, as text. */
static char *param_text(json_t *params, const char *key) {
        json_t *v = json_object_get(params, key);
        char *s = NULL;
        if (json_is_string(v))
                s = strdup(json_string_value(v));
        else if (json_is_integer(v))
                asprintf(&s, "%lld", (long long)json_integer_value(v));
        else if (json_is_boolean(v))
                s = strdup(json_is_true(v) ? "true" : "false");
        return s;
}

static int check_virtualization(struct cm_error **err) {
        _cleanup_free_ char *reason = NULL;
        int k = host_probe_kvm(3000, &reason);
        if (k <= 0)
                return cm_error_set(err, CM_EINVALID, "nested virtualization is not supported on this host (%s)",
                                    reason ? reason : "KVM is not usable");
        return 0;
}

static int choose_runtime(struct server *srv, const char *requested, char **ret, struct cm_error **err) {
        _cleanup_free_ char *rt = NULL;
        if (requested && *requested)
                rt = strdup(requested);
        else {
                pthread_mutex_lock(&srv->lock);
                json_t *v = cm_config_get(srv->config, "machine.runtime");
                pthread_mutex_unlock(&srv->lock);
                rt = strdup(json_is_string(v) && *json_string_value(v) ? json_string_value(v) : "auto");
                json_decref(v);
        }
        if (!rt)
                return cm_error_set(err, ENOMEM, "out of memory");
        if (streq(rt, "vm")) {
                _cleanup_free_ char *reason = NULL;
                int k = host_probe_kvm(3000, &reason);
                return cm_error_set(err, CM_EINVALID, "the vm runtime is not available on this host (%s)",
                                    k > 0 ? "the vm runtime is not built yet"
                                          : reason ? reason : "KVM is not usable");
        }
        if (!streq(rt, "auto") && !streq(rt, "ns"))
                return cm_error_set(err, CM_EINVALID, "invalid runtime '%s'. Valid options: auto, vm, ns", rt);
        /* auto: the vm runtime is not built yet, so ns */
        _cleanup_free_ char *why = NULL;
        if (host_probe_ns(&why) <= 0)
                return cm_error_set(err, CM_EINVALID, "the ns runtime is not available on this host (%s)",
                                    why ? why : "unknown reason");
        *ret = strdup("ns");
        return *ret ? 0 : cm_error_set(err, ENOMEM, "out of memory");
}

static int owner_of(struct request *req, struct machine_owner *o, struct cm_error **err) {
        struct passwd pw, *res = NULL;
        char buf[16384];
        if (getpwuid_r(req->uid, &pw, buf, sizeof buf, &res) != 0 || !res)
                return cm_error_set(err, CM_EINVALID, "uid %u has no entry in this host's user database",
                                    (unsigned)req->uid);
        o->username = strdup(pw.pw_name);
        o->home = strdup(pw.pw_dir && *pw.pw_dir ? pw.pw_dir : "/");
        o->uid = req->uid;
        o->gid = req->gid;
        o->shell = NULL;
        if (!o->username || !o->home)
                return cm_error_set(err, ENOMEM, "out of memory");
        return 0;
}

static char *random_id(void) {
        unsigned char b[16];
        if (getrandom(b, sizeof b, 0) != sizeof b)
                return NULL;
        char *s = malloc(33);
        if (!s)
                return NULL;
        for (size_t i = 0; i < sizeof b; i++)
                snprintf(s + 2 * i, 3, "%02x", b[i]);
        return s;
}

/* ---- methods ---- */

/* ROOT/network.json: the address allocator's state. */
static char *ipam_state(struct server *srv) {
        char *p = NULL;
        if (asprintf(&p, "%s/network.json", srv->root) < 0)
                return NULL;
        return p;
}

/* The machine's address, before it exists: refused (nothing made) when the subnet overlaps a
 * route of this namespace that is not our bridge's, or when it is full. 0 with *ret_ip NULL
 * when networking is off. */
static int allocate_address(struct server *srv, const char *name, char **ret_ip, struct cm_error **err) {
        struct net_settings ns;
        pthread_mutex_lock(&srv->lock);
        int r = net_settings_from_config(srv->config, &ns, err);
        pthread_mutex_unlock(&srv->lock);
        if (r < 0)
                return r;
        *ret_ip = NULL;
        if (!ns.enabled)
                return 0;
        r = net_subnet_check_free(ns.subnet, ns.bridge, err);
        if (r < 0) {
                cm_error_prefix(err, "cannot give container machine %s an address in network.subnet %s", name,
                                ns.subnet);
                return r;
        }
        _cleanup_free_ char *state = ipam_state(srv);
        if (!state)
                return cm_error_set(err, ENOMEM, "out of memory");
        char ip[INET_ADDRSTRLEN];
        r = ipam_allocate(state, ns.subnet, name, ip, err);
        if (r < 0) {
                cm_error_prefix(err, "cannot create container machine %s", name);
                return r;
        }
        *ret_ip = strdup(ip);
        return *ret_ip ? 0 : cm_error_set(err, ENOMEM, "out of memory");
}

static void release_address(struct server *srv, const char *name) {
        _cleanup_free_ char *state = ipam_state(srv);
        _cleanup_error_ struct cm_error *e = NULL;
        if (state && ipam_release(state, name, &e) < 0)
                fprintf(stderr, "apiserver: release the address of %s: %s\n", name,
                        e && e->message ? e->message : "error");
}

static int create_machine(struct request *req, json_t *params, json_t **ret, bool *ip_held, struct cm_error **err);

/* An address taken for a create that fails goes back (unless another create of the same name
 * won the race: the address, allocated by name, is that machine's). */
static int m_create(struct request *req, json_t *params, json_t **ret, struct cm_error **err) {
        bool ip_held = false;
        int r = create_machine(req, params, ret, &ip_held, err);
        if (r < 0 && ip_held) {
                const char *pname = param_str(params, "name");
                _cleanup_free_ char *name = pname && *pname ? strdup(pname)
                                                           : machine_name_from_image(param_str(params, "image"));
                if (name && !machine_exists(req->srv, name))
                        release_address(req->srv, name);
        }
        return r;
}

static int create_machine(struct request *req, json_t *params, json_t **ret, bool *ip_held, struct cm_error **err) {
        struct server *srv = req->srv;
        const char *image = param_str(params, "image");
        if (!image || !*image)
                return cm_error_set(err, CM_EUSAGE, "missing parameter 'image'");
        const char *pname = param_str(params, "name");
        _cleanup_free_ char *name = pname && *pname ? strdup(pname) : machine_name_from_image(image);
        if (!name)
                return cm_error_set(err, ENOMEM, "out of memory");
        int r = machine_name_validate(name, err);
        if (r < 0)
                return r;

        _cleanup_machine_config_ struct machine_config *c = calloc(1, sizeof *c);
        if (!c)
                return cm_error_set(err, ENOMEM, "out of memory");
        _cleanup_free_ char *cpus = param_text(params, "cpus"), *memory = param_text(params, "memory");
        if (cpus) {
                r = machine_cpus_validate(cpus, &c->cpus, err);
                if (r < 0)
                        return r;
        }
        if (memory) {
                r = machine_memory_validate(memory, &c->memory, err);
                if (r < 0)
                        return r;
        }
        const char *hm = param_str(params, "homeMount");
        c->home_mount = HOME_MOUNT_RW;
        if (hm) {
                r = machine_home_mount_validate(hm, &c->home_mount, err);
                if (r < 0)
                        return r;
        }
        const char *kernel = param_str(params, "kernel");
        if (kernel && *kernel) {
                r = machine_kernel_validate(kernel, err);
                if (r < 0)
                        return r;
                c->kernel_path = strdup(kernel);
        }
        c->virtualization = json_is_true(json_object_get(params, "virtualization"));
        if (c->virtualization && (r = check_virtualization(err)) < 0)
                return r;
        r = choose_runtime(srv, param_str(params, "runtime"), &c->runtime, err);
        if (r < 0)
                return r;
        /* machine defaults from the system configuration, then from the host */
        pthread_mutex_lock(&srv->lock);
        json_t *dc = cm_config_get(srv->config, "machine.cpus"), *dm = cm_config_get(srv->config, "machine.memory");
        pthread_mutex_unlock(&srv->lock);
        if (!c->cpus)
                c->cpus = json_is_integer(dc) && json_integer_value(dc) > 0 ? (unsigned)json_integer_value(dc)
                                                                           : machine_default_cpus();
        if (!c->memory && (!json_is_string(dm) || machine_parse_memory(json_string_value(dm), &c->memory) < 0 ||
                           c->memory < (1ull << 30)))
                c->memory = machine_default_memory();
        json_decref(dc);
        json_decref(dm);

        r = ensure_machines_root(srv, err);
        if (r < 0)
                return r;
        if (machine_exists(srv, name))
                return cm_error_set(err, CM_EEXISTS, "container machine already exists: %s", name);
        r = owner_of(req, &c->owner, err);
        if (r < 0)
                return r;
        r = allocate_address(srv, name, &c->ip_address, err);
        if (r < 0)
                return r;
        *ip_held = c->ip_address != NULL;

        /* the image: pulled when the store does not have it */
        const char *platform = param_str(params, "platform");
        if (platform && !*platform)
                platform = NULL;
        _cleanup_free_ char *stored = NULL;
        struct oci_descriptor found = { 0 };
        bool present = image_lookup(srv->store, image, &stored, &found, NULL) >= 0;
        if (present)
                oci_descriptor_done(&found);
        if (!present) {
                struct registry_options ro;
                char *auth = NULL;
                request_registry_options(req, &ro, &auth);
                struct pull_options po = {
                        .platform = platform,
                        .progress = json_is_true(json_object_get(params, "progress")) ? request_progress : NULL,
                        .userdata = req,
                };
                char digest[DIGEST_STR_MAX] = "";
                time_t op = image_store_op_begin(srv->store);
                r = image_pull(srv->store, &ro, image, &po, &stored, digest, err);
                image_store_op_end(srv->store, op, r < 0);
                registry_options_done(&ro, auth);
                if (r < 0)
                        return r;
        }
        struct image_resolved *img = NULL;
        r = image_resolve(srv->store, stored ? stored : image, platform, &img, err);
        if (r < 0)
                return r;
        r = machine_image_find_init(img->layer_dirs, NULL);
        if (r < 0) {
                r = cm_error_set(err, CM_EINVALID,
                                 "image '%s' has no /sbin/init and cannot boot as a machine; build one with an init "
                                 "system (see docs/images.md)",
                                 img->name);
                image_resolved_free(img);
                /* nothing is left behind: an image this create pulled goes again */
                if (!present && stored)
                        image_remove(srv->store, stored, NULL);
                return r;
        }
        c->name = strdup(name);
        c->id = random_id();
        c->image_reference = strdup(img->name);
        c->image_digest = strdup(img->manifest_digest);
        c->platform_os = strdup(img->config->platform.os ? img->config->platform.os : "linux");
        c->platform_arch = strdup(img->config->platform.architecture ? img->config->platform.architecture
                                                                     : oci_host_arch());
        c->layers = strv_copy(img->layer_dirs);
        c->env = strv_copy(img->config->env ? img->config->env : (char *[]){ NULL });
        c->stop_signal = img->config->stop_signal ? strdup(img->config->stop_signal) : NULL;
        image_resolved_free(img);
        char now[32];
        iso_time(time(NULL), now, sizeof now);
        c->created = strdup(now);
        if (!c->name || !c->id || !c->image_reference || !c->image_digest || !c->platform_os || !c->platform_arch ||
            !c->layers || !c->env || !c->created)
                return cm_error_set(err, ENOMEM, "out of memory");

        /* build it aside, then move it into place: the name is taken atomically, by one */
        _cleanup_free_ char *mr = machines_root(srv);
        _cleanup_free_ char *tmp = NULL, *final = machine_dir(srv->root, name), *cur = NULL;
        if (!mr || !final || asprintf(&tmp, "%s/.tmp-%s-XXXXXX", mr, name) < 0)
                return cm_error_set(err, ENOMEM, "out of memory");
        if (!mkdtemp(tmp))
                return cm_error_set(err, errno, "cannot create %s: %s", tmp, strerror(errno));
        chmod(tmp, 0700);
        _cleanup_close_ int tfd = open(tmp, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (tfd < 0 || mkdirat(tfd, "upper", 0755) < 0 || mkdirat(tfd, "work", 0700) < 0) {
                r = cm_error_set(err, errno, "cannot create the machine's directories in %s: %s", tmp, strerror(errno));
                goto fail;
        }
        int lf = openat(tfd, ".lock", O_RDWR | O_CREAT | O_CLOEXEC, 0600);
        if (lf >= 0)
                close(lf);
        r = machine_config_save(tmp, c, err);
        if (r < 0)
                goto fail;
        fs_fsync_dir(tfd, ".");
        if (renameat2(AT_FDCWD, tmp, AT_FDCWD, final, RENAME_NOREPLACE) < 0) {
                int e = errno;
                if (e == EEXIST || e == ENOTEMPTY) {
                        *ip_held = false;
                        r = cm_error_set(err, CM_EEXISTS, "container machine already exists: %s", name);
                }
                else
                        r = cm_error_set(err, e, "cannot create %s: %s", final, strerror(e));
                goto fail;
        }
        fs_fsync_dir(AT_FDCWD, mr);
        *ip_held = false; /* the machine's now: rm frees it */

        cur = default_read(srv, req->uid);
        if (json_is_true(json_object_get(params, "setDefault")) || !cur || !machine_exists(srv, cur)) {
                r = default_write(srv, req->uid, name, err);
                if (r < 0)
                        return r;
        }
        json_t *res = json_pack("{s:s}", "name", name);
        if (!json_is_true(json_object_get(params, "noBoot"))) {
                _cleanup_close_ int lock = -1;
                _cleanup_error_ struct cm_error *berr = NULL;
                r = machine_lock(srv, name, &lock);
                if (r >= 0)
                        r = boot(srv, name, &berr);
                else
                        cm_error_set(&berr, -r, "cannot lock machine %s: %s", name, strerror(-r));
                json_object_set_new(res, "booted", json_boolean(r >= 0));
                if (r < 0)
                        json_object_set_new(res, "bootError",
                                            json_string(berr && berr->message ? berr->message : "boot failed"));
        }
        *ret = res;
        return 0;
fail:
        fs_rm_rf(AT_FDCWD, tmp);
        return r;
}

static int cmp_names(const void *a, const void *b) {
        return strcmp(*(char *const *)a, *(char *const *)b);
}

static int m_list(struct request *req, json_t *params, json_t **ret, struct cm_error **err) {
        struct server *srv = req->srv;
        _cleanup_free_ char *mr = machines_root(srv);
        json_t *a = json_array();
        _cleanup_closedir_ DIR *d = mr ? opendir(mr) : NULL;
        if (!d) {
                *ret = a;
                return 0;
        }
        _cleanup_free_ char *def = default_read(srv, req->uid);
        _cleanup_strv_ char **names = NULL;
        struct dirent *de;
        while ((de = readdir(d)))
                if (de->d_name[0] != '.' && machine_name_validate(de->d_name, NULL) >= 0)
                        strv_push_dup(&names, de->d_name);
        size_t n = strv_length(names);
        if (n > 1)
                qsort(names, n, sizeof(char *), cmp_names);
        for (size_t i = 0; i < n; i++) {
                _cleanup_machine_config_ struct machine_config *c = NULL;
                if (load_owned(req, names[i], &c, NULL) < 0)
                        continue;
                json_t *v = machine_view(srv, c);
                json_object_set_new(v, "name", json_string(c->name));
                json_object_set_new(v, "default", json_boolean(def && streq(def, c->name)));
                json_array_append_new(a, v);
        }
        *ret = a;
        return 0;
}

static int m_inspect(struct request *req, json_t *params, json_t **ret, struct cm_error **err) {
        const char *name = param_str(params, "name");
        _cleanup_free_ char *def = NULL;
        if (!name || !*name) {
                def = default_read(req->srv, req->uid);
                if (!def)
                        return cm_error_set(err, CM_ENOTFOUND, "no container machine specified and no default set");
                name = def;
        }
        _cleanup_machine_config_ struct machine_config *c = NULL;
        int r = load_owned(req, name, &c, err);
        if (r < 0)
                return r;
        *ret = machine_view(req->srv, c);
        return 0;
}

/* name, or the caller's default */
static int name_or_default(struct request *req, json_t *params, char **ret, struct cm_error **err) {
        const char *name = param_str(params, "name");
        if (name && *name) {
                *ret = strdup(name);
                return *ret ? 0 : cm_error_set(err, ENOMEM, "out of memory");
        }
        *ret = default_read(req->srv, req->uid);
        if (!*ret)
                return cm_error_set(err, CM_ENOTFOUND, "no container machine specified and no default set");
        return 0;
}

static json_t *run_info(struct server *srv, const char *name) {
        enum machine_state s = machine_state_read(srv->run, name, NULL);
        _cleanup_free_ char *rd = machine_run_dir(srv->run, name);
        _cleanup_free_ char *sock = NULL;
        if (!rd || asprintf(&sock, "%s/session.sock", rd) < 0)
                return NULL;
        return json_pack("{s:s,s:s,s:s}", "name", name, "state", machine_state_to_string(s), "socket", sock);
}

static int m_resolve(struct request *req, json_t *params, json_t **ret, struct cm_error **err) {
        _cleanup_free_ char *name = NULL;
        int r = name_or_default(req, params, &name, err);
        if (r < 0)
                return r;
        _cleanup_machine_config_ struct machine_config *c = NULL;
        r = load_owned(req, name, &c, err);
        if (r < 0)
                return r;
        *ret = run_info(req->srv, name);
        return *ret ? 0 : cm_error_set(err, ENOMEM, "out of memory");
}

static int m_start(struct request *req, json_t *params, json_t **ret, struct cm_error **err) {
        _cleanup_free_ char *name = NULL;
        int r = name_or_default(req, params, &name, err);
        if (r < 0)
                return r;
        _cleanup_close_ int lock = -1;
        _cleanup_machine_config_ struct machine_config *c = NULL;
        r = lock_owned(req, name, &lock, &c, err);
        if (r < 0)
                return r;
        r = boot(req->srv, name, err);
        if (r < 0)
                return r;
        *ret = run_info(req->srv, name);
        return 0;
}

static unsigned param_timeout(json_t *params) {
        json_t *t = json_object_get(params, "time");
        if (json_is_integer(t) && json_integer_value(t) >= 0 && json_integer_value(t) < 86400)
                return (unsigned)json_integer_value(t);
        return STOP_TIMEOUT_DEFAULT;
}

static int m_stop(struct request *req, json_t *params, json_t **ret, struct cm_error **err) {
        _cleanup_free_ char *name = NULL;
        int r = name_or_default(req, params, &name, err);
        if (r < 0)
                return r;
        _cleanup_close_ int lock = -1;
        _cleanup_machine_config_ struct machine_config *c = NULL;
        r = lock_owned(req, name, &lock, &c, err);
        if (r < 0)
                return r;
        r = stop(req->srv, name, param_timeout(params), err);
        if (r < 0)
                return r;
        *ret = json_pack("{s:s}", "name", name);
        return 0;
}

static int m_restart(struct request *req, json_t *params, json_t **ret, struct cm_error **err) {
        _cleanup_free_ char *name = NULL;
        int r = name_or_default(req, params, &name, err);
        if (r < 0)
                return r;
        _cleanup_close_ int lock = -1;
        _cleanup_machine_config_ struct machine_config *c = NULL;
        r = lock_owned(req, name, &lock, &c, err);
        if (r < 0)
                return r;
        r = stop(req->srv, name, param_timeout(params), err);
        if (r >= 0)
                r = boot(req->srv, name, err);
        if (r < 0)
                return r;
        *ret = run_info(req->srv, name);
        return 0;
}

static const char *const set_keys[] = { "cpus", "memory", "home-mount", "virtualization", "kernel" };

static int m_set(struct request *req, json_t *params, json_t **ret, struct cm_error **err) {
        _cleanup_free_ char *name = NULL;
        int r = name_or_default(req, params, &name, err);
        if (r < 0)
                return r;
        json_t *settings = json_object_get(params, "settings");
        if (!json_is_object(settings) || json_object_size(settings) == 0)
                return cm_error_set(err, CM_EUSAGE, "nothing to set: give key=value pairs (cpus, memory, home-mount, "
                                                    "virtualization, kernel)");
        /* unknown keys first, all of them named */
        _cleanup_free_ char *unknown = NULL;
        const char *key;
        json_t *val;
        json_object_foreach(settings, key, val) {
                bool known = false;
                for (size_t i = 0; i < ELEMENTSOF(set_keys); i++)
                        known = known || streq(key, set_keys[i]);
                known = known || streq(key, "homeMount");
                if (known)
                        continue;
                char *n = NULL;
                if (asprintf(&n, "%s%s%s", unknown ? unknown : "", unknown ? ", " : "", key) < 0)
                        return cm_error_set(err, ENOMEM, "out of memory");
                free(unknown);
                unknown = n;
        }
        if (unknown)
                return cm_error_set(err, CM_EINVALID,
                                    "unknown fields '%s'. Valid: cpus, memory, home-mount, virtualization, kernel",
                                    unknown);
        _cleanup_close_ int lock = -1;
        _cleanup_machine_config_ struct machine_config *c = NULL;
        r = lock_owned(req, name, &lock, &c, err);
        if (r < 0)
                return r;
        json_t *changed = json_array();
        json_object_foreach(settings, key, val) {
                _cleanup_free_ char *v = param_text(settings, key);
                if (!v) {
                        json_decref(changed);
                        return cm_error_set(err, CM_EINVALID, "invalid value for '%s'", key);
                }
                if (streq(key, "cpus"))
                        r = machine_cpus_validate(v, &c->cpus, err);
                else if (streq(key, "memory"))
                        r = machine_memory_validate(v, &c->memory, err);
                else if (streq(key, "home-mount") || streq(key, "homeMount"))
                        r = machine_home_mount_validate(v, &c->home_mount, err);
                else if (streq(key, "virtualization")) {
                        bool b;
                        if (machine_parse_bool(v, &b) < 0)
                                r = cm_error_set(err, CM_EINVALID,
                                                 "invalid virtualization value '%s'. Valid options: true, false", v);
                        else if (b && (r = check_virtualization(err)) < 0)
                                ;
                        else
                                c->virtualization = b;
                } else if (streq(key, "kernel")) {
                        if (!*v) {
                                free(c->kernel_path);
                                c->kernel_path = NULL;
                        } else if ((r = machine_kernel_validate(v, err)) >= 0) {
                                free(c->kernel_path);
                                c->kernel_path = strdup(v);
                        }
                }
                if (r < 0) {
                        json_decref(changed);
                        return r;
                }
                json_array_append_new(changed, json_string(key));
        }
        _cleanup_free_ char *dir = machine_dir(req->srv->root, name);
        r = machine_config_save(dir, c, err);
        if (r < 0) {
                json_decref(changed);
                return r;
        }
        enum machine_state s = machine_state_read(req->srv->run, name, NULL);
        *ret = json_pack("{s:s,s:o,s:b}", "name", name, "changed", changed, "running", s != MACHINE_STOPPED);
        return 0;
}

static int m_set_default(struct request *req, json_t *params, json_t **ret, struct cm_error **err) {
        const char *name = NULL;
        int r = need_name(params, &name, err);
        if (r < 0)
                return r;
        _cleanup_machine_config_ struct machine_config *c = NULL;
        r = load_owned(req, name, &c, err);
        if (r < 0)
                return r;
        r = default_write(req->srv, req->uid, name, err);
        if (r < 0)
                return r;
        *ret = json_pack("{s:s}", "name", name);
        return 0;
}

static int remove_one(struct request *req, const char *name, struct cm_error **err) {
        struct server *srv = req->srv;
        _cleanup_close_ int lock = -1;
        _cleanup_machine_config_ struct machine_config *c = NULL;
        int r = lock_owned(req, name, &lock, &c, err);
        if (r < 0)
                return r;
        r = stop(srv, name, STOP_TIMEOUT_DEFAULT, err);
        if (r < 0)
                return r;
        _cleanup_free_ char *mr = machines_root(srv), *dir = machine_dir(srv->root, name), *gone = NULL;
        if (!mr || !dir || asprintf(&gone, "%s/.tmp-rm-%s-XXXXXX", mr, name) < 0)
                return cm_error_set(err, ENOMEM, "out of memory");
        if (!mkdtemp(gone))
                return cm_error_set(err, errno, "cannot remove %s: %s", dir, strerror(errno));
        /* the name is free the moment the directory is renamed away; the deletion can take long */
        if (rename(dir, gone) < 0) {
                r = -errno;
                rmdir(gone);
                return cm_error_set(err, -r, "cannot remove %s: %s", dir, strerror(-r));
        }
        fs_fsync_dir(AT_FDCWD, mr);
        default_forget(srv, name);
        clean_stale_run(srv, name);
        release_address(srv, name);
        r = fs_rm_rf(AT_FDCWD, gone);
        if (r < 0)
                return cm_error_set(err, -r, "removing %s: %s", gone, strerror(-r));
        return 0;
}

static int m_rm(struct request *req, json_t *params, json_t **ret, struct cm_error **err) {
        _cleanup_strv_ char **names = json_to_strv(json_object_get(params, "names"));
        if (!names || !names[0])
                return cm_error_set(err, CM_EUSAGE, "rm needs at least one machine name");
        json_t *removed = json_array(), *errors = json_array();
        for (char **n = names; *n; n++) {
                _cleanup_error_ struct cm_error *e = NULL;
                if (remove_one(req, *n, &e) < 0)
                        json_array_append_new(errors, json_pack("{s:s,s:s}", "name", *n, "message",
                                                                e && e->message ? e->message : "cannot remove"));
                else
                        json_array_append_new(removed, json_string(*n));
        }
        *ret = json_pack("{s:o,s:o}", "removed", removed, "errors", errors);
        return 0;
}

/* Replaces bytes that are not UTF-8 so the text can travel as a JSON string. */
static char *utf8_sanitize(const char *s, size_t len) {
        char *out = malloc(len * 3 + 1);
        if (!out)
                return NULL;
        size_t o = 0;
        for (size_t i = 0; i < len;) {
                unsigned char c = (unsigned char)s[i];
                size_t n = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
                bool ok = n > 0 && i + n <= len && !(c == 0);
                for (size_t k = 1; ok && k < n; k++)
                        ok = ((unsigned char)s[i + k] >> 6) == 2;
                if (ok && n == 2 && c < 0xc2)
                        ok = false;
                if (ok) {
                        memcpy(out + o, s + i, n);
                        o += n;
                        i += n;
                } else {
                        if (c != 0) {
                                memcpy(out + o, "\xef\xbf\xbd", 3);
                                o += 3;
                        }
                        i++;
                }
        }
        out[o] = 0;
        return out;
}

static int m_logs(struct request *req, json_t *params, json_t **ret, struct cm_error **err) {
        _cleanup_free_ char *name = NULL;
        int r = name_or_default(req, params, &name, err);
        if (r < 0)
                return r;
        _cleanup_machine_config_ struct machine_config *c = NULL;
        r = load_owned(req, name, &c, err);
        if (r < 0)
                return r;
        bool bootlog = json_is_true(json_object_get(params, "boot"));
        _cleanup_free_ char *dir = machine_dir(req->srv->root, name), *path = NULL;
        if (!dir || asprintf(&path, "%s/%s", dir, bootlog ? "boot.log" : "console.log") < 0)
                return cm_error_set(err, ENOMEM, "out of memory");
        json_t *jl = json_object_get(params, "lines");
        long lines = json_is_integer(jl) ? (long)json_integer_value(jl) : -1;
        json_t *jo = json_object_get(params, "offset");
        long long offset = json_is_integer(jo) ? (long long)json_integer_value(jo) : -1;

        _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
        if (fd < 0) {
                if (errno != ENOENT)
                        return cm_error_set(err, errno, "cannot read %s: %s", path, strerror(errno));
                if (bootlog && streq(c->runtime, "ns"))
                        return cm_error_set(err, CM_EINVALID,
                                            "container machine %s has no boot log: the ns runtime boots no kernel of "
                                            "its own (see 'container machine logs %s')",
                                            name, name);
                *ret = json_pack("{s:s,s:I}", "data", "", "offset", (json_int_t)0);
                return 0;
        }
        struct stat st;
        if (fstat(fd, &st) < 0)
                return cm_error_set(err, errno, "stat %s: %s", path, strerror(errno));
        const off_t window = 4 << 20;
        off_t size = st.st_size, from;
        if (offset >= 0)
                from = offset > size ? 0 /* truncated: start over */ : (off_t)offset;
        else
                from = size > window ? size - window : 0;
        if (size - from > window)
                from = size - window;
        size_t len = (size_t)(size - from);
        _cleanup_free_ char *buf = malloc(len + 1);
        if (!buf)
                return cm_error_set(err, ENOMEM, "out of memory");
        ssize_t got = pread(fd, buf, len, from);
        if (got < 0)
                return cm_error_set(err, errno, "read %s: %s", path, strerror(errno));
        len = (size_t)got;
        buf[len] = 0;
        const char *start = buf;
        if (lines >= 0 && offset < 0) {
                /* the last N lines (a final line without newline counts) */
                size_t end = len;
                if (end > 0 && buf[end - 1] == '\n')
                        end--;
                long seen = 0;
                size_t i = end;
                while (i > 0) {
                        if (buf[i - 1] == '\n' && ++seen == lines)
                                break;
                        i--;
                }
                start = lines == 0 ? buf + len : buf + i;
        }
        _cleanup_free_ char *text = utf8_sanitize(start, len - (size_t)(start - buf));
        if (!text)
                return cm_error_set(err, ENOMEM, "out of memory");
        *ret = json_pack("{s:s,s:I}", "data", text, "offset", (json_int_t)(from + got));
        return 0;
}

/* Root only (system stop --machines): stops every running machine, each under its lock. */
static int m_stop_all(struct request *req, json_t *params, json_t **ret, struct cm_error **err) {
        struct server *srv = req->srv;
        _cleanup_free_ char *mr = machines_root(srv);
        _cleanup_closedir_ DIR *d = mr ? opendir(mr) : NULL;
        json_t *stopped = json_array(), *errors = json_array();
        struct dirent *de;
        while (d && (de = readdir(d))) {
                const char *name = de->d_name;
                if (name[0] == '.' || machine_name_validate(name, NULL) < 0)
                        continue;
                if (machine_state_read(srv->run, name, NULL) == MACHINE_STOPPED)
                        continue;
                _cleanup_close_ int lock = -1;
                _cleanup_error_ struct cm_error *e = NULL;
                int r = machine_lock(srv, name, &lock);
                if (r == -ENOENT)
                        continue;
                if (r >= 0)
                        r = stop(srv, name, param_timeout(params), &e);
                if (r < 0)
                        json_array_append_new(errors, json_pack("{s:s,s:s}", "name", name, "message",
                                                                e && e->message ? e->message : strerror(-r)));
                else
                        json_array_append_new(stopped, json_string(name));
        }
        *ret = json_pack("{s:o,s:o}", "stopped", stopped, "errors", errors);
        return 0;
}

/* Image layers under machines survive `image rm` of their image. */
static bool layer_in_use(const char *diff_id, void *ud) {
        struct server *srv = ud;
        const char *hex = strchr(diff_id, ':');
        hex = hex ? hex + 1 : diff_id;
        _cleanup_free_ char *mr = machines_root(srv);
        _cleanup_closedir_ DIR *d = mr ? opendir(mr) : NULL;
        if (!d)
                return false;
        struct dirent *de;
        while ((de = readdir(d))) {
                if (de->d_name[0] == '.' && strncmp(de->d_name, ".tmp-", 5) != 0)
                        continue;
                if (strncmp(de->d_name, ".tmp-rm-", 8) == 0)
                        continue;
                _cleanup_free_ char *dir = NULL;
                if (asprintf(&dir, "%s/%s", mr, de->d_name) < 0)
                        return true;
                _cleanup_machine_config_ struct machine_config *c = NULL;
                if (machine_config_load(dir, &c, NULL) < 0)
                        continue;
                for (char **l = c->layers; l && *l; l++) {
                        const char *base = strrchr(*l, '/');
                        base = base ? base + 1 : *l;
                        if (streq(base, hex))
                                return true;
                }
        }
        return false;
}

void machines_init(struct server *srv) {
        image_store_set_layer_in_use(srv->store, layer_in_use, srv);
        /* half-made machines and half-deleted ones from before a crash */
        _cleanup_free_ char *mr = machines_root(srv);
        _cleanup_closedir_ DIR *d = mr ? opendir(mr) : NULL;
        if (!d)
                return;
        struct dirent *de;
        while ((de = readdir(d)))
                if (strncmp(de->d_name, ".tmp-", 5) == 0)
                        fs_rm_rf(dirfd(d), de->d_name);
}

const struct method machine_methods[] = {
        { "machine.create", m_create, false },
        { "machine.list", m_list, false },
        { "machine.inspect", m_inspect, false },
        { "machine.resolve", m_resolve, false },
        { "machine.start", m_start, false },
        { "machine.stop", m_stop, false },
        { "machine.restart", m_restart, false },
        { "machine.set", m_set, false },
        { "machine.set-default", m_set_default, false },
        { "machine.rm", m_rm, false },
        { "machine.logs", m_logs, false },
        { "machine.stop-all", m_stop_all, true },
        {},
};
