/* container-apiserver: one per host. Owns the state directory and the image store, and
 * answers the CLI over $CONTAINER_RUN/apiserver.sock (root:container 0660). */
#include <fcntl.h>
#include <getopt.h>
#include <grp.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>

#include "image/registry.h"
#include "server.h"
#include "util/config.h"
#include "util/fs.h"

static struct server *the_server;

static void on_signal(int sig) {
        (void)sig;
        if (the_server)
                the_server->stopping = 1;
}

static void usage(FILE *f) {
        fprintf(f, "Usage: container-apiserver [--foreground] [--root DIR] [--run DIR]\n"
                   "\n"
                   "The container-machine API server. Normally started by 'container system start'.\n"
                   "  --foreground   stay in the foreground (for systemd and tests); logs go to stderr\n"
                   "  --root DIR     state directory (default $CONTAINER_ROOT or " CM_DEFAULT_ROOT ")\n"
                   "  --run DIR      runtime directory (default $CONTAINER_RUN or " CM_DEFAULT_RUN ")\n");
}

/* The group whose members may use the socket; created when missing (root only). */
static gid_t container_gid(void) {
        struct group *g = getgrnam("container");
        if (!g && geteuid() == 0) {
                pid_t pid = fork();
                if (pid == 0) {
                        int devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
                        if (devnull >= 0) {
                                dup2(devnull, 1);
                                dup2(devnull, 2);
                        }
                        execlp("groupadd", "groupadd", "--system", "container", (char *)NULL);
                        _exit(127);
                }
                if (pid > 0)
                        waitpid(pid, NULL, 0);
                g = getgrnam("container");
        }
        return g ? g->gr_gid : (gid_t)-1;
}

static int open_listener(const char *path, char **ret_error) {
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        if (strlen(path) >= sizeof sa.sun_path) {
                asprintf(ret_error, "socket path too long: %s", path);
                return -ENAMETOOLONG;
        }
        strcpy(sa.sun_path, path);
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return -errno;
        unlink(path);
        mode_t old = umask(0117);
        int r = bind(fd, (struct sockaddr *)&sa, sizeof sa);
        umask(old);
        if (r < 0 || listen(fd, 128) < 0) {
                int e = -errno;
                asprintf(ret_error, "cannot listen on %s: %s", path, strerror(-e));
                close(fd);
                return e;
        }
        gid_t gid = container_gid();
        if (geteuid() == 0 && gid != (gid_t)-1)
                (void)!chown(path, 0, gid);
        chmod(path, 0660);
        return fd;
}

int main(int argc, char **argv) {
        static const struct option opts[] = {
                { "foreground", no_argument, NULL, 'f' },
                { "root", required_argument, NULL, 'r' },
                { "run", required_argument, NULL, 'R' },
                { "help", no_argument, NULL, 'h' },
                { "version", no_argument, NULL, 'V' },
                {},
        };
        bool foreground = false;
        int c;
        while ((c = getopt_long(argc, argv, "fh", opts, NULL)) >= 0) {
                switch (c) {
                case 'f': foreground = true; break;
                case 'r': setenv("CONTAINER_ROOT", optarg, 1); break;
                case 'R': setenv("CONTAINER_RUN", optarg, 1); break;
                case 'h': usage(stdout); return 0;
                case 'V': printf("container-apiserver %s\n", CM_VERSION); return 0;
                default: usage(stderr); return 64;
                }
        }
        if (optind < argc) {
                usage(stderr);
                return 64;
        }

        char root[PATH_MAX], run[PATH_MAX];
        if (fs_mkdir_p(AT_FDCWD, cm_root_dir(), 0711) < 0 || !realpath(cm_root_dir(), root)) {
                fprintf(stderr, "container-apiserver: cannot create state directory %s: %m\n", cm_root_dir());
                return 1;
        }
        if (fs_mkdir_p(AT_FDCWD, cm_run_dir(), 0755) < 0 || !realpath(cm_run_dir(), run)) {
                fprintf(stderr, "container-apiserver: cannot create runtime directory %s: %m\n", cm_run_dir());
                return 1;
        }
        setenv("CONTAINER_ROOT", root, 1);
        setenv("CONTAINER_RUN", run, 1);

        /* Daemonize with a readiness pipe: the parent exits 0 once the socket answers, or 1 with
         * the child's error text. */
        int ready[2] = { -1, -1 };
        if (!foreground) {
                if (pipe2(ready, O_CLOEXEC) < 0)
                        return 1;
                pid_t pid = fork();
                if (pid < 0)
                        return 1;
                if (pid > 0) {
                        close(ready[1]);
                        char buf[512];
                        ssize_t n = read(ready[0], buf, sizeof buf - 1);
                        if (n == 1 && buf[0] == 0)
                                return 0;
                        if (n > 0) {
                                buf[n] = 0;
                                fprintf(stderr, "container-apiserver: %s\n", buf);
                        } else
                                fprintf(stderr, "container-apiserver: exited during start-up (see %s/apiserver.log)\n", run);
                        return 1;
                }
                close(ready[0]);
                setsid();
                char logpath[PATH_MAX + 32];
                snprintf(logpath, sizeof logpath, "%s/apiserver.log", run);
                int log = open(logpath, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
                int devnull = open("/dev/null", O_RDONLY | O_CLOEXEC);
                if (devnull >= 0)
                        dup2(devnull, 0);
                if (log >= 0) {
                        dup2(log, 1);
                        dup2(log, 2);
                }
                if (chdir("/") < 0)
                        return 1;
        }
#define FAIL(...)                                                                                        \
        do {                                                                                             \
                char _m[PATH_MAX * 3];                                                                            \
                snprintf(_m, sizeof _m, __VA_ARGS__);                                                    \
                if (ready[1] >= 0)                                                                       \
                        (void)!write(ready[1], _m, strlen(_m));                                          \
                fprintf(stderr, "container-apiserver: %s\n", _m);                                        \
                return 1;                                                                                \
        } while (0)

        char pidpath[PATH_MAX + 32];
        snprintf(pidpath, sizeof pidpath, "%s/apiserver.pid", run);
        int pidfd = open(pidpath, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
        if (pidfd < 0)
                FAIL("cannot open %s: %s", pidpath, strerror(errno));
        if (flock(pidfd, LOCK_EX | LOCK_NB) < 0)
                FAIL("another apiserver is already running for %s", run);
        char pidbuf[32];
        int pl = snprintf(pidbuf, sizeof pidbuf, "%ld\n", (long)getpid());
        if (ftruncate(pidfd, 0) < 0 || pwrite(pidfd, pidbuf, (size_t)pl, 0) != pl)
                FAIL("cannot write %s", pidpath);

        signal(SIGPIPE, SIG_IGN);
        struct sigaction sa = { .sa_handler = on_signal };
        sigaction(SIGTERM, &sa, NULL);
        sigaction(SIGINT, &sa, NULL);

        registry_global_init();

        static struct server srv;
        srv.root = root;
        srv.run = run;
        srv.started = time(NULL);
        pthread_mutex_init(&srv.lock, NULL);
        pthread_cond_init(&srv.idle, NULL);
        the_server = &srv;

        _cleanup_error_ struct cm_error *err = NULL;
        if (cm_config_load(root, &srv.config, &err) < 0)
                FAIL("%s", err->message);
        if (image_store_open(root, &srv.store, &err) < 0)
                FAIL("cannot open the image store: %s", err ? err->message : "unknown error");

        char *lerr = NULL;
        srv.listen_fd = open_listener(cm_api_socket_path(), &lerr);
        if (srv.listen_fd < 0)
                FAIL("%s", lerr ? lerr : "cannot create the API socket");

        fprintf(stderr, "container-apiserver %s: listening on %s, state in %s\n", CM_VERSION, cm_api_socket_path(),
                root);
        network_start(&srv);
        server_run(&srv, TAKE_FD(ready[1]));
        network_shutdown(&srv);

        unlink(cm_api_socket_path());
        close(srv.listen_fd);
        image_store_free(srv.store);
        json_decref(srv.config);
        unlink(pidpath);
        close(pidfd);
        fprintf(stderr, "container-apiserver: stopped\n");
        return 0;
}
