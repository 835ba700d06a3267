/* container-runtime --root ROOT --run RUN [--ready-fd N] NAME
 *
 * Boots machine NAME and stays with it until its init exits. The apiserver starts it detached
 * (own session) and reads one JSON line from the ready fd:
 *   {"ok":true,"pid":<init pid>}  or  {"ok":false,"code":"...","message":"..."}
 * Files: RUN/machines/NAME/{runtime.lock, runtime.pid, state, session.sock, rootfs/},
 *        ROOT/machines/NAME/{console.log, console.log.1, upper/, work/}. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <grp.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "runtime.h"
#include "util/fs.h"
#include "util/json.h"

static const char *log_name = "?";
static FILE *log_file;     /* ROOT/machines/NAME/runtime.log */
static bool log_to_stderr; /* unless stderr is /dev/null (started by the apiserver) */

void log_msg(const char *fmt, ...) {
        va_list ap;
        if (log_file) {
                char ts[32];
                time_t t = time(NULL);
                struct tm tm;
                gmtime_r(&t, &tm);
                strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%SZ", &tm);
                fprintf(log_file, "%s [%d] ", ts, (int)getpid());
                va_start(ap, fmt);
                vfprintf(log_file, fmt, ap);
                va_end(ap);
                fputc('\n', log_file);
                fflush(log_file);
        }
        if (log_to_stderr) {
                fprintf(stderr, "container-runtime[%s]: ", log_name);
                va_start(ap, fmt);
                vfprintf(stderr, fmt, ap);
                va_end(ap);
                fputc('\n', stderr);
        }
}

static void log_open(const char *machine_dir) {
        struct stat st;
        log_to_stderr = !(fstat(STDERR_FILENO, &st) == 0 && S_ISCHR(st.st_mode) && st.st_rdev == makedev(1, 3));
        _cleanup_close_ int dfd = open(machine_dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
        if (dfd < 0)
                return;
        int fd = openat(dfd, "runtime.log", O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0640);
        if (fd < 0)
                return;
        struct stat lst;
        if (fstat(fd, &lst) == 0 && fstat(STDERR_FILENO, &st) == 0 && st.st_dev == lst.st_dev &&
            st.st_ino == lst.st_ino) {
                close(fd); /* the launcher already sends our stderr there */
                return;
        }
        /* one boot's worth is what matters: start over when it grew large */
        if (fstat(fd, &st) == 0 && st.st_size > (1 << 20))
                (void)ftruncate(fd, 0);
        log_file = fdopen(fd, "a");
        if (!log_file)
                close(fd);
}

/* ---- signals: handlers writing to a self-pipe. Not signalfd: a blocked mask (or ignored
 * dispositions) would be inherited by init and by every session process. */

static int sig_pipe[2] = {-1, -1};
static volatile sig_atomic_t got_term, got_chld;

static void on_signal(int sig) {
        int saved = errno;
        if (sig == SIGTERM || sig == SIGINT)
                got_term = 1;
        else if (sig == SIGCHLD)
                got_chld = 1;
        if (sig != SIGHUP && sig != SIGPIPE && sig_pipe[1] >= 0) {
                char b = 0;
                (void)!write(sig_pipe[1], &b, 1);
        }
        errno = saved;
}

static int signals_setup(void) {
        if (pipe2(sig_pipe, O_CLOEXEC | O_NONBLOCK) < 0)
                return -errno;
        struct sigaction sa = {.sa_handler = on_signal, .sa_flags = SA_RESTART};
        sigemptyset(&sa.sa_mask);
        /* SIGHUP: the console's vhangup (agetty) must not end us. SIGPIPE: EPIPE instead. */
        int sigs[] = {SIGTERM, SIGINT, SIGCHLD, SIGHUP, SIGPIPE};
        for (size_t i = 0; i < ELEMENTSOF(sigs); i++)
                if (sigaction(sigs[i], &sa, NULL) < 0)
                        return -errno;
        return 0;
}

/* ---- state files ---- */

static void write_file(struct runtime *rt, const char *name, const char *text) {
        int r = fs_write_atomic(rt->run_dir_fd, name, text, strlen(text), 0644);
        if (r < 0)
                log_msg("write %s: %s", name, strerror(-r));
}

static void set_state(struct runtime *rt, const char *state) {
        rt->state = state;
        char buf[32];
        snprintf(buf, sizeof buf, "%s\n", state);
        write_file(rt, "state", buf);
}

static void ready(int *fd, json_t *j) {
        if (*fd < 0)
                return;
        _cleanup_free_ char *s = json_dumps(j, JSON_COMPACT);
        if (s) {
                size_t n = strlen(s);
                (void)!write(*fd, s, n);
                (void)!write(*fd, "\n", 1);
        }
        close(*fd);
        *fd = -1;
}

static void ready_error(int *fd, int code, const char *message) {
        json_auto_t *j = json_pack("{s:b,s:s,s:s}", "ok", 0, "code", cm_error_code_name(code), "message",
                                   message ? message : "error");
        if (j)
                ready(fd, j);
        log_msg("%s", message ? message : "error");
}

static int listen_socket(struct runtime *rt) {
        _cleanup_free_ char *path = NULL;
        if (asprintf(&path, "%s/session.sock", rt->run_dir) < 0)
                return -ENOMEM;
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        if (strlen(path) >= sizeof sa.sun_path)
                return -ENAMETOOLONG;
        strcpy(sa.sun_path, path);
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (fd < 0)
                return -errno;
        (void)unlink(path); /* a stale one: we hold the lock */
        mode_t old = umask(0077);
        int r = bind(fd, (struct sockaddr *)&sa, sizeof sa);
        umask(old);
        if (r < 0 || listen(fd, 128) < 0) {
                r = -errno;
                close(fd);
                return r;
        }
        struct group *g = getgrnam("container");
        if ((g && chown(path, 0, g->gr_gid) < 0) || chmod(path, g ? 0660 : 0666) < 0) {
                r = -errno;
                close(fd);
                return r;
        }
        rt->listen_fd = fd;
        return 0;
}

#define BOOT_WAIT_MS 30000

static int64_t now_ms(void);

static void booted(struct runtime *rt) {
        rt->boot_deadline_ms = -1;
        rt->boot_wait_pid = 0;
        if (rt->init_reaped || rt->stop_requested)
                return;
        set_state(rt, "running");
        log_msg("running");
        json_auto_t *j = json_pack("{s:b,s:I}", "ok", 1, "pid", (json_int_t)rt->init_pid);
        if (j)
                ready(&rt->ready_fd, j);
}

static void reap(struct runtime *rt) {
        for (;;) {
                int status;
                pid_t pid = waitpid(-1, &status, WNOHANG);
                if (pid <= 0)
                        return;
                if (rt->sb && pid == rt->init_pid && !rt->init_reaped) {
                        rt->init_reaped = true;
                        sandbox_reaped(rt->sb, status);
                        log_msg("init exited with status %d", session_status_from_wait(status));
                        continue;
                }
                if (pid == rt->boot_wait_pid) {
                        booted(rt);
                        continue;
                }
                (void)conns_child_exited(rt, pid, status);
        }
}

static int64_t now_ms(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void remove_run_files(struct runtime *rt) {
        (void)unlinkat(rt->run_dir_fd, "session.sock", 0);
        (void)unlinkat(rt->run_dir_fd, "state", 0);
        (void)unlinkat(rt->run_dir_fd, "runtime.pid", 0);
        (void)unlinkat(rt->run_dir_fd, "stop-timeout", 0);
        (void)unlinkat(rt->run_dir_fd, "rootfs", AT_REMOVEDIR);
}

static void stop_machine(struct runtime *rt) {
        log_msg("stopping (timeout %u s)", rt->stop_timeout);
        set_state(rt, "stopping");
        /* what the sessions have so far goes out before we block in the stop */
        conns_tick(rt);
        machine_stop(rt, rt->stop_timeout);
        reap(rt);
        if (!rt->init_reaped) {
                /* sandbox_stop reaped it itself, or it is a zombie we collect now */
                int status;
                pid_t p = waitpid(rt->init_pid, &status, 0);
                if (p == rt->init_pid)
                        sandbox_reaped(rt->sb, status);
                rt->init_reaped = true;
        }
}

/* SIGTERM: the apiserver may have left how long init may take in RUN/machines/NAME/stop-timeout. */
static unsigned stop_timeout_file(struct runtime *rt) {
        _cleanup_free_ char *text = NULL;
        if (fs_read_all(rt->run_dir_fd, "stop-timeout", 64, &text, NULL) < 0)
                return 10;
        char *end;
        unsigned long v = strtoul(text, &end, 10);
        if (end == text || (*end && *end != '\n') || v > 3600)
                return 10;
        return (unsigned)v;
}

static int event_loop(struct runtime *rt) {
        enum { MAXP = 3 + RUNTIME_MAX_CONNS * RUNTIME_POLL_PER_CONN };
        static struct pollfd p[MAXP];
        static struct conn *owners[MAXP];
        static uint8_t roles[MAXP];
        int64_t deadline = -1;
        bool gone_handled = false;

        for (;;) {
                if (got_chld) {
                        got_chld = 0;
                        reap(rt);
                }
                if (got_term && !rt->stop_requested) {
                        got_term = 0;
                        rt->stop_requested = true;
                        rt->stop_timeout = stop_timeout_file(rt);
                }
                if (rt->stop_requested && !rt->init_reaped)
                        stop_machine(rt);
                if (rt->boot_deadline_ms >= 0 && now_ms() >= rt->boot_deadline_ms) {
                        log_msg("systemd did not finish booting within %d s; ready anyway", BOOT_WAIT_MS / 1000);
                        (void)kill(rt->boot_wait_pid, SIGKILL);
                        booted(rt);
                }
                if (rt->ready_fd >= 0 && (rt->init_reaped || rt->stop_requested))
                        ready_error(&rt->ready_fd, CM_EINTERNAL,
                                    rt->init_reaped ? "the machine's init exited during boot (see its console log)"
                                                    : "the machine was stopped during boot");
                if (rt->init_reaped && !gone_handled) {
                        gone_handled = true;
                        set_state(rt, "stopping");
                        if (rt->listen_fd >= 0) {
                                (void)unlinkat(rt->run_dir_fd, "session.sock", 0);
                                close(rt->listen_fd);
                                rt->listen_fd = -1;
                        }
                        conns_machine_gone(rt);
                        deadline = now_ms() + 3000;
                }
                conns_tick(rt);
                if (rt->init_reaped && (conns_all_done(rt) || now_ms() >= deadline))
                        return 0;

                size_t n = 0;
                p[n++] = (struct pollfd){.fd = sig_pipe[0], .events = POLLIN};
                size_t console_at = n;
                p[n++] = (struct pollfd){.fd = rt->console_hup ? -1 : rt->console_master, .events = POLLIN};
                size_t listen_at = n;
                p[n++] = (struct pollfd){.fd = rt->listen_fd, .events = POLLIN};
                size_t base = n;
                n += conns_poll_fill(rt, p + base, owners + base, roles + base, MAXP - base);

                int timeout = -1;
                if (rt->console_hup)
                        timeout = 250;
                if (rt->boot_deadline_ms >= 0) {
                        int64_t left = rt->boot_deadline_ms - now_ms();
                        if (timeout < 0 || left < timeout)
                                timeout = left < 0 ? 0 : (int)left;
                }
                if (deadline >= 0)
                        timeout = 50;
                int r = poll(p, (nfds_t)n, timeout);
                if (r < 0) {
                        if (errno == EINTR)
                                continue;
                        log_msg("poll: %m");
                        return -errno;
                }
                if (p[0].revents) {
                        char buf[64];
                        while (read(sig_pipe[0], buf, sizeof buf) > 0)
                                ;
                }
                if (rt->console_hup) {
                        rt->console_hup = false; /* try again */
                        console_pump(rt);
                } else if (p[console_at].revents)
                        console_pump(rt);
                if (p[listen_at].revents & POLLIN)
                        conn_accept(rt);
                for (size_t i = base; i < n; i++)
                        if (p[i].revents)
                                conn_handle(rt, owners[i], roles[i], p[i].revents);
        }
}

static void usage(void) {
        fprintf(stderr, "Usage: container-runtime --root ROOT --run RUN [--ready-fd N] NAME\n");
}

int main(int argc, char **argv) {
        static const struct option opts[] = {
                {"root", required_argument, NULL, 'r'},
                {"run", required_argument, NULL, 'R'},
                {"ready-fd", required_argument, NULL, 'f'},
                {"help", no_argument, NULL, 'h'},
                {},
        };
        struct runtime rt = {
                .run_dir_fd = -1,
                .console_master = -1,
                .console_slave = -1,
                .console_log = -1,
                .listen_fd = -1,
                .state = "starting",
                .ready_fd = -1,
                .boot_deadline_ms = -1,
                .netns_fd = -1,
        };
        int c;
        while ((c = getopt_long(argc, argv, "h", opts, NULL)) >= 0) {
                switch (c) {
                case 'r':
                        rt.root = optarg;
                        break;
                case 'R':
                        rt.run = optarg;
                        break;
                case 'f': {
                        char *end;
                        long v = strtol(optarg, &end, 10);
                        if (*end || v < 0 || v > 65535) {
                                usage();
                                return 64;
                        }
                        rt.ready_fd = (int)v;
                        /* init and sessions must not inherit it: the reader waits for EOF */
                        if (fcntl(rt.ready_fd, F_SETFD, FD_CLOEXEC) < 0)
                                rt.ready_fd = -1;
                        break;
                }
                case 'h':
                        usage();
                        return 0;
                default:
                        usage();
                        return 64;
                }
        }
        if (!rt.root || !rt.run || optind != argc - 1) {
                usage();
                return 64;
        }
        rt.name = argv[optind];
        log_name = rt.name;
        _cleanup_error_ struct cm_error *err = NULL;
        if (machine_name_validate(rt.name, &err) < 0) {
                ready_error(&rt.ready_fd, CM_EINVALID, err && err->message ? err->message : "invalid machine name");
                return 1;
        }
        rt.machine_dir = machine_dir(rt.root, rt.name);
        rt.run_dir = machine_run_dir(rt.run, rt.name);
        if (!rt.machine_dir || !rt.run_dir)
                return 1;
        log_open(rt.machine_dir);

        int r = fs_mkdir_p(-1, rt.run_dir, 0755);
        if (r < 0 || (rt.run_dir_fd = open(rt.run_dir, O_PATH | O_DIRECTORY | O_CLOEXEC)) < 0) {
                char msg[512];
                snprintf(msg, sizeof msg, "create %s: %s", rt.run_dir, strerror(r < 0 ? -r : errno));
                ready_error(&rt.ready_fd, CM_EINTERNAL, msg);
                return 1;
        }
        _cleanup_close_ int lock_fd =
                openat(rt.run_dir_fd, "runtime.lock", O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
        if (lock_fd < 0 || flock(lock_fd, LOCK_EX | LOCK_NB) < 0) {
                char msg[256];
                snprintf(msg, sizeof msg, "container machine %s is already running", rt.name);
                ready_error(&rt.ready_fd, errno == EWOULDBLOCK ? CM_EEXISTS : CM_EINTERNAL, msg);
                return 1;
        }
        if (machine_config_load(rt.machine_dir, &rt.config, &err) < 0) {
                char msg[256];
                snprintf(msg, sizeof msg, "container machine with ID %s not found", rt.name);
                ready_error(&rt.ready_fd, CM_ENOTFOUND, msg);
                return 1;
        }

        r = signals_setup();
        if (r >= 0)
                r = console_open(&rt);
        if (r < 0) {
                char msg[256];
                snprintf(msg, sizeof msg, "console: %s", strerror(-r));
                ready_error(&rt.ready_fd, CM_EINTERNAL, msg);
                return 1;
        }
        char pid[32];
        snprintf(pid, sizeof pid, "%d\n", (int)getpid());
        write_file(&rt, "runtime.pid", pid);
        set_state(&rt, "starting");

        if (machine_boot(&rt, &err) < 0) {
                ready_error(&rt.ready_fd, err ? err->code : CM_EINTERNAL,
                            err && err->message ? err->message : "cannot start the machine");
                if (rt.sb) {
                        sandbox_free(rt.sb);
                        rt.sb = NULL;
                }
                machine_net_down(&rt);
                remove_run_files(&rt);
                return 1;
        }
        log_msg("init is pid %d", (int)rt.init_pid);
        r = listen_socket(&rt);
        if (r < 0) {
                char msg[256];
                snprintf(msg, sizeof msg, "session socket: %s", strerror(-r));
                ready_error(&rt.ready_fd, CM_EINTERNAL, msg);
                rt.stop_requested = true;
                rt.stop_timeout = 10;
        } else {
                rt.boot_wait_pid = machine_boot_wait(&rt);
                if (rt.boot_wait_pid > 0)
                        rt.boot_deadline_ms = now_ms() + BOOT_WAIT_MS;
                else
                        booted(&rt);
        }
        got_chld = 1; /* init may have died before the handler was in place: look */

        r = event_loop(&rt);

        console_pump(&rt);
        sandbox_free(rt.sb);
        rt.sb = NULL;
        machine_net_down(&rt);
        if (rt.listen_fd >= 0)
                close(rt.listen_fd);
        remove_run_files(&rt);
        if (rt.console_master >= 0)
                close(rt.console_master);
        if (rt.console_slave >= 0)
                close(rt.console_slave);
        if (rt.console_log >= 0)
                close(rt.console_log);
        /* stop requests return once a new runtime may start: after the lock is gone */
        close(lock_fd);
        lock_fd = -1;
        conns_reply_stopped(&rt);
        conns_free(&rt);
        machine_config_free(rt.config);
        close(rt.run_dir_fd);
        free(rt.machine_dir);
        free(rt.run_dir);
        log_msg("machine stopped");
        if (log_file)
                fclose(log_file);
        return r < 0 ? 1 : 0;
}
