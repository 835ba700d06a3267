/* sandbox: provisioning on temporary root trees, and real boots of the test images
 * (busybox init, Debian + systemd). Needs root; the boot tests need the cached test images
 * (tests/fixtures/build-images.sh) and umoci. Every test cleans up its mounts, cgroups and
 * processes in its teardown, also when it fails. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "sandbox/sandbox.h"
#include "util/error.h"
#include "util/fs.h"
#include "util/macro.h"

#define IMAGES "/var/cache/container-machine-test/images"
#define USER_NAME "cm.tester"
#define USER_UID 4321
#define USER_GID 4321

static char tmpdir[256];
static struct sandbox *machine;
static int console_master = -1, console_slave = -1;
static pid_t drain_pid = -1;

static double now_s(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static bool skip_unless_root(void) {
        if (geteuid() != 0) {
                print_message("sandbox tests need root: skipped\n");
                return true;
        }
        return false;
}

static void path(char *buf, size_t sz, const char *rel) {
        snprintf(buf, sz, "%s/%s", tmpdir, rel);
}

static void write_file(const char *rel, const char *data, mode_t mode) {
        char p[512];
        path(p, sizeof p, rel);
        FILE *f = fopen(p, "we");
        assert_non_null(f);
        fputs(data, f);
        fclose(f);
        chmod(p, mode);
}

static char *read_rel(const char *rel) {
        char p[2048], *s = NULL;
        path(p, sizeof p, rel);
        if (fs_read_all(AT_FDCWD, p, 0, &s, NULL) < 0)
                return NULL;
        return s;
}

static void mk(const char *rel) {
        char p[512];
        path(p, sizeof p, rel);
        assert_int_equal(fs_mkdir_p(AT_FDCWD, p, 0755), 0);
}

static int setup_tmp(void **state) {
        (void)state;
        snprintf(tmpdir, sizeof tmpdir, "/tmp/cm-sandbox-test.XXXXXX");
        if (!mkdtemp(tmpdir))
                return -1;
        return 0;
}

static void stop_console(void) {
        if (drain_pid > 0) {
                kill(drain_pid, SIGKILL);
                waitpid(drain_pid, NULL, 0);
                drain_pid = -1;
        }
        if (console_master >= 0)
                close(console_master);
        if (console_slave >= 0)
                close(console_slave);
        console_master = console_slave = -1;
}

static int teardown_tmp(void **state) {
        (void)state;
        if (machine) {
                pid_t init = sandbox_init_pid(machine);
                sandbox_stop(machine, 0);
                if (init > 0)
                        waitpid(init, NULL, 0);
                sandbox_free(machine);
                machine = NULL;
        }
        stop_console();
        const char *keep = getenv("CM_SANDBOX_TEST_LOGS");
        if (keep) {
                char cmd[1200];
                snprintf(cmd, sizeof cmd, "cp %s/console.log %s/console-%d.log 2>/dev/null", tmpdir, keep,
                         (int)time(NULL));
                (void)!system(cmd);
        }
        char p[512];
        path(p, sizeof p, "root");
        umount2(p, MNT_DETACH);
        fs_rm_rf(AT_FDCWD, tmpdir);
        return 0;
}

/* unique per test process: concurrent runs must not collide on the machine's cgroup */
static char mname[32];

static struct sandbox_spec base_spec(void) {
        static char rootfs[512], home[512];
        snprintf(mname, sizeof mname, "cmtest%d", (int)getpid());
        path(rootfs, sizeof rootfs, "root");
        path(home, sizeof home, "home/" USER_NAME);
        struct sandbox_spec s = {
                .name = mname,
                .machine_id = "0123456789abcdef0123456789abcdef",
                .rootfs = rootfs,
                .owner = {.name = USER_NAME, .uid = USER_UID, .gid = USER_GID, .home = home},
                .home = SANDBOX_HOME_RW,
                .console_fd = -1,
                .provision = true,
        };
        return s;
}

static int open_root(void) {
        char p[512];
        path(p, sizeof p, "root");
        int fd = open(p, O_PATH | O_DIRECTORY | O_CLOEXEC);
        assert_true(fd >= 0);
        return fd;
}

/* ---- provisioning ---- */

static void make_tree(void) {
        mk("root/etc/sudoers.d");
        mk("root/bin");
        write_file("root/etc/passwd", "root:x:0:0:root:/root:/bin/bash\nusers2:x:100:100::/x:/bin/sh\n", 0644);
        write_file("root/etc/group", "root:x:0:\nusers:x:100:\nwheel:x:10:root," USER_NAME "\n", 0644);
        write_file("root/etc/shadow", "root:*:19000:0:99999:7:::\n", 0640);
        write_file("root/bin/bash", "#!/bin/false\n", 0755);
}

static void test_provision_writes_user(void **state) {
        (void)state;
        if (skip_unless_root())
                skip();
        make_tree();
        struct sandbox_spec s = base_spec();
        _cleanup_close_ int root = open_root();
        _cleanup_error_ struct cm_error *err = NULL;
        assert_int_equal(sandbox_provision(root, &s, &err), 0);

        _cleanup_free_ char *pw = read_rel("root/etc/passwd");
        _cleanup_free_ char *gr = read_rel("root/etc/group");
        _cleanup_free_ char *sh = read_rel("root/etc/shadow");
        _cleanup_free_ char *su = read_rel("root/etc/sudoers.d/cm_tester");
        char want[512];
        snprintf(want, sizeof want, USER_NAME ":x:%d:%d::%s:/bin/bash\n", USER_UID, USER_GID, s.owner.home);
        assert_non_null(strstr(pw, want));
        assert_non_null(strstr(pw, "root:x:0:0:root:/root:/bin/bash\n"));
        assert_non_null(strstr(gr, USER_NAME ":x:4321:\n"));
        assert_non_null(strstr(sh, USER_NAME ":!:"));
        assert_string_equal(su, USER_NAME " ALL=(ALL:ALL) NOPASSWD: ALL\n");
        struct stat st;
        char p[512];
        path(p, sizeof p, "root/etc/sudoers.d/cm_tester");
        assert_int_equal(stat(p, &st), 0);
        assert_int_equal(st.st_mode & 07777, 0440);
        path(p, sizeof p, "root/etc/shadow");
        assert_int_equal(stat(p, &st), 0);
        assert_int_equal(st.st_mode & 07777, 0640);

        /* idempotent */
        assert_int_equal(sandbox_provision(root, &s, &err), 0);
        _cleanup_free_ char *pw2 = read_rel("root/etc/passwd");
        _cleanup_free_ char *gr2 = read_rel("root/etc/group");
        _cleanup_free_ char *sh2 = read_rel("root/etc/shadow");
        assert_string_equal(pw, pw2);
        assert_string_equal(gr, gr2);
        assert_string_equal(sh, sh2);
}

static void test_provision_reuses_entries(void **state) {
        (void)state;
        if (skip_unless_root())
                skip();
        make_tree();
        /* our uid under another name, our gid as "users": reused, not duplicated; sh only */
        write_file("root/etc/passwd", "root:x:0:0:root:/root:/bin/sh\nold:x:4321:100:Old User:/home/old:/bin/sh\n",
                   0644);
        write_file("root/etc/shadow", "root:*:19000:0:99999:7:::\nold:$6$abc:19000:0:99999:7:::\n", 0640);
        write_file("root/etc/group", "root:x:0:\nusers:x:100:\nwheel:x:10:root,old\n", 0644);
        char p[512];
        path(p, sizeof p, "root/bin/bash");
        unlink(p);
        struct sandbox_spec s = base_spec();
        s.owner.gid = 100;
        _cleanup_close_ int root = open_root();
        _cleanup_error_ struct cm_error *err = NULL;
        assert_int_equal(sandbox_provision(root, &s, &err), 0);
        _cleanup_free_ char *pw = read_rel("root/etc/passwd");
        _cleanup_free_ char *gr = read_rel("root/etc/group");
        _cleanup_free_ char *sh = read_rel("root/etc/shadow");
        char want[512];
        snprintf(want, sizeof want, "root:x:0:0:root:/root:/bin/sh\n" USER_NAME ":x:4321:100:Old User:%s:/bin/sh\n",
                 s.owner.home);
        assert_string_equal(pw, want);
        assert_string_equal(gr, "root:x:0:\nusers:x:100:\nwheel:x:10:root," USER_NAME "\n");
        assert_string_equal(sh, "root:*:19000:0:99999:7:::\n" USER_NAME ":$6$abc:19000:0:99999:7:::\n");
        /* no sudoers.d entry unless sudo is there: make_tree created the directory */
        _cleanup_free_ char *su = read_rel("root/etc/sudoers.d/cm_tester");
        assert_non_null(su);
}

static void test_provision_symlink_attack(void **state) {
        (void)state;
        if (skip_unless_root())
                skip();
        make_tree();
        mk("outside/etc");
        write_file("outside/etc/passwd", "host:x:0:0::/:/bin/sh\n", 0644);
        char p[512], target[512];
        path(target, sizeof target, "outside/etc/passwd");
        path(p, sizeof p, "root/etc/passwd");
        unlink(p);
        assert_int_equal(symlink(target, p), 0); /* absolute: would be the host's file */
        path(p, sizeof p, "root/etc/group");
        unlink(p);
        assert_int_equal(symlink("../../outside/etc/group", p), 0);
        path(p, sizeof p, "root/etc/sudoers.d");
        fs_rm_rf(AT_FDCWD, p);
        path(target, sizeof target, "outside");
        assert_int_equal(symlink(target, p), 0);
        /* inside the root the same absolute path names root/<path>: that is where it lands */
        char inner[600];
        snprintf(inner, sizeof inner, "root/%s", target + 1);
        char in_root[2048];
        path(in_root, sizeof in_root, inner);
        assert_int_equal(fs_mkdir_p(AT_FDCWD, in_root, 0755), 0);
        path(p, sizeof p, "root/etc/hosts");
        assert_int_equal(symlink("/../../../outside/hosts", p), 0);
        mk("root/usr/bin");
        write_file("root/usr/bin/sudo", "", 0755);

        struct sandbox_spec s = base_spec();
        _cleanup_close_ int root = open_root();
        _cleanup_error_ struct cm_error *err = NULL;
        int r = sandbox_provision(root, &s, &err);
        if (r < 0)
                print_message("error: %s\n", err->message);
        /* whatever the outcome, nothing outside the root changed */
        _cleanup_free_ char *host = read_rel("outside/etc/passwd");
        assert_string_equal(host, "host:x:0:0::/:/bin/sh\n");
        _cleanup_free_ char *g = read_rel("outside/etc/group");
        assert_null(g);
        _cleanup_free_ char *su = read_rel("outside/cm_tester");
        assert_null(su);
        assert_int_equal(r, 0);
        /* the link was replaced by a file inside the root */
        struct stat st;
        path(p, sizeof p, "root/etc/passwd");
        assert_int_equal(lstat(p, &st), 0);
        assert_true(S_ISREG(st.st_mode));
        _cleanup_free_ char *pw = read_rel("root/etc/passwd");
        assert_non_null(strstr(pw, USER_NAME ":x:4321:"));
        assert_null(strstr(pw, "host:x"));
        char sudo[800];
        snprintf(sudo, sizeof sudo, "%s/cm_tester", inner);
        _cleanup_free_ char *su_in = read_rel(sudo);
        assert_non_null(su_in);
        _cleanup_free_ char *hosts_out = read_rel("outside/hosts");
        assert_null(hosts_out);
}

static bool unpack(const char *image, const char *rel) {
        char dir[512], cmd[1200];
        path(dir, sizeof dir, rel);
        snprintf(cmd, sizeof cmd, "umoci raw unpack --image %s/%s:latest %s >/dev/null 2>&1", IMAGES, image, dir);
        return system(cmd) == 0;
}

static bool have_image(const char *image) {
        char p[512];
        snprintf(p, sizeof p, "%s/%s/index.json", IMAGES, image);
        if (access(p, F_OK) != 0 || system("command -v umoci >/dev/null 2>&1") != 0) {
                print_message("image %s or umoci missing (run tests/fixtures/build-images.sh): skipped\n", image);
                return false;
        }
        return true;
}

static void test_provision_create_user_script(void **state) {
        (void)state;
        if (skip_unless_root())
                skip();
        if (!have_image("busybox"))
                skip();
        assert_true(unpack("busybox", "root"));
        mk("root/etc/machine");
        write_file("root/etc/machine/create-user.sh",
                   "#!/bin/sh\nset -e\n"
                   "echo \"$CONTAINER_USER $CONTAINER_UID $CONTAINER_GID $CONTAINER_HOME $CONTAINER_SHELL "
                   "$CONTAINER_MACHINE_ID $(id -u)\" > /created\n"
                   "test -c /dev/null\n",
                   0755);
        struct sandbox_spec s = base_spec();
        _cleanup_close_ int root = open_root();
        _cleanup_error_ struct cm_error *err = NULL;
        int r = sandbox_provision(root, &s, &err);
        if (r < 0)
                print_message("error: %s\n", err->message);
        assert_int_equal(r, 0);
        _cleanup_free_ char *c = read_rel("root/created");
        assert_non_null(c);
        char want[512];
        snprintf(want, sizeof want, USER_NAME " 4321 4321 %s /bin/sh 0123456789abcdef0123456789abcdef 0\n",
                 s.owner.home);
        assert_string_equal(c, want);
        /* the built-in writer did not run */
        _cleanup_free_ char *pw = read_rel("root/etc/passwd");
        assert_null(strstr(pw, USER_NAME));

        /* a failing script stops provisioning with the reason */
        write_file("root/etc/machine/create-user.sh", "#!/bin/sh\necho 'no space left for users' >&2\nexit 3\n", 0755);
        cm_error_free(err);
        err = NULL;
        assert_true(sandbox_provision(root, &s, &err) < 0);
        assert_non_null(err);
        assert_string_equal(err->message, "container machine failed to create user: /etc/machine/create-user.sh "
                                          "exited with status 3: no space left for users");
}

/* ---- booting the test images ---- */

static void open_console(void) {
        console_master = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
        assert_true(console_master >= 0);
        assert_int_equal(grantpt(console_master), 0);
        assert_int_equal(unlockpt(console_master), 0);
        console_slave = open(ptsname(console_master), O_RDWR | O_NOCTTY | O_CLOEXEC);
        assert_true(console_slave >= 0);
        /* keep draining the console (a full pty blocks the machine's writes); keep a log */
        char logp[512];
        path(logp, sizeof logp, "console.log");
        drain_pid = fork();
        assert_true(drain_pid >= 0);
        if (drain_pid == 0) {
                int log = open(logp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
                char buf[4096];
                for (;;) {
                        ssize_t n = read(console_master, buf, sizeof buf);
                        if (n < 0 && errno == EIO) {
                                usleep(10000); /* hung up (vhangup) or no slave yet */
                                continue;
                        }
                        if (n <= 0)
                                _exit(0);
                        (void)!write(log, buf, (size_t)n);
                }
        }
}

static void start_machine(const char *image, const char *stop_signal, const char *const *env, double *took) {
        mk("upper");
        mk("work");
        mk("root");
        mk("home/" USER_NAME);
        char home[512];
        path(home, sizeof home, "home/" USER_NAME);
        assert_int_equal(chown(home, USER_UID, USER_GID), 0);
        assert_true(unpack(image, "lower"));
        open_console();
        static char lower[512], upper[512], work[512];
        path(lower, sizeof lower, "lower");
        path(upper, sizeof upper, "upper");
        path(work, sizeof work, "work");
        static const char *lowers[2];
        lowers[0] = lower;
        struct sandbox_spec s = base_spec();
        s.lowerdirs = lowers;
        s.upperdir = upper;
        s.workdir = work;
        s.image_env = env;
        s.stop_signal = stop_signal;
        s.console_fd = console_slave;
        s.cpus = 1;
        s.memory = 512ull << 20;
        _cleanup_error_ struct cm_error *err = NULL;
        /* as a daemon's (and the upper dir made under it, as a runtime would): what the
         * machine sees must not depend on the runtime's umask */
        char upper_path[512];
        path(upper_path, sizeof upper_path, "upper");
        chmod(upper_path, 0700);
        mode_t old_umask = umask(077);
        double t0 = now_s();
        int r = sandbox_start(&s, &machine, &err);
        *took = now_s() - t0;
        umask(old_umask);
        if (r < 0)
                print_message("sandbox_start: %s\n", err ? err->message : "?");
        assert_int_equal(r, 0);
}

/* Runs argv in the machine as uid/gid with pipes; returns the exit status, output in *out. */
static const char *stdin_text;

static int run_in(uid_t uid, gid_t gid, char *const *argv, char **out, char **errout) {
        int o[2], e[2], in[2];
        assert_int_equal(pipe2(o, O_CLOEXEC), 0);
        assert_int_equal(pipe2(e, O_CLOEXEC), 0);
        assert_int_equal(pipe2(in, O_CLOEXEC), 0);
        char home[512], envhome[600];
        path(home, sizeof home, "home/" USER_NAME);
        snprintf(envhome, sizeof envhome, "HOME=%s", uid ? home : "/root");
        char *env[] = {(char *)"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", envhome,
                       (char *)"TERM=dumb", NULL};
        struct sandbox_exec x = {
                .argv = argv,
                .env = env,
                .cwd = uid ? home : "/",
                .uid = uid,
                .gid = gid,
                .stdin_fd = in[0],
                .stdout_fd = o[1],
                .stderr_fd = e[1],
        };
        pid_t pid;
        _cleanup_error_ struct cm_error *err = NULL;
        int r = sandbox_exec(machine, &x, &pid, &err);
        close(in[0]);
        if (stdin_text)
                (void)!write(in[1], stdin_text, strlen(stdin_text));
        stdin_text = NULL;
        close(in[1]);
        close(o[1]);
        close(e[1]);
        if (r < 0)
                print_message("sandbox_exec: %s\n", err ? err->message : "?");
        assert_int_equal(r, 0);
        char *bufs[2] = {NULL, NULL};
        int fds[2] = {o[0], e[0]};
        for (int i = 0; i < 2; i++) {
                size_t len = 0, cap = 65536;
                bufs[i] = calloc(1, cap + 1);
                ssize_t n;
                while (len < cap && (n = read(fds[i], bufs[i] + len, cap - len)) > 0)
                        len += (size_t)n;
                close(fds[i]);
        }
        int st;
        assert_int_equal(waitpid(pid, &st, 0), pid);
        if (out)
                *out = bufs[0];
        else
                free(bufs[0]);
        if (errout)
                *errout = bufs[1];
        else
                free(bufs[1]);
        return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

static pid_t session_seen;
static int session_status;

static void on_session_exit(pid_t pid, int status, void *userdata) {
        (void)userdata;
        session_seen = pid;
        session_status = status;
}

static double stop_machine(void) {
        pid_t init = sandbox_init_pid(machine);
        /* a session still running at stop: the machine's shutdown kills it, sandbox_stop reaps it */
        int devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
        char *sleeper[] = {(char *)"sleep", (char *)"1000", NULL};
        char *env[] = {(char *)"PATH=/usr/bin:/bin", NULL};
        struct sandbox_exec x = {.argv = sleeper,
                                 .env = env,
                                 .uid = USER_UID,
                                 .gid = USER_GID,
                                 .stdin_fd = devnull,
                                 .stdout_fd = devnull,
                                 .stderr_fd = devnull};
        pid_t sleep_pid;
        _cleanup_error_ struct cm_error *err = NULL;
        assert_int_equal(sandbox_exec(machine, &x, &sleep_pid, &err), 0);
        close(devnull);
        sandbox_on_session_exit(machine, on_session_exit, NULL);
        session_seen = 0;
        double t0 = now_s();
        assert_int_equal(sandbox_stop(machine, 10), 0);
        int st;
        assert_int_equal(waitpid(init, &st, 0), init);
        double took = now_s() - t0;
        sandbox_reaped(machine, st);
        assert_int_equal(session_seen, sleep_pid);
        assert_true(WIFSIGNALED(session_status));
        sandbox_free(machine);
        machine = NULL;
        return took;
}

static void assert_cleaned_up(void) {
        char root[512];
        path(root, sizeof root, "root");
        _cleanup_free_ char *mi = NULL;
        assert_int_equal(fs_read_all(AT_FDCWD, "/proc/self/mountinfo", 0, &mi, NULL), 0);
        assert_null(strstr(mi, root));
        struct stat st;
        char cg1[128], cg2[128];
        snprintf(cg1, sizeof cg1, "/sys/fs/cgroup/unified/container-machine/%s", mname);
        snprintf(cg2, sizeof cg2, "/sys/fs/cgroup/container-machine/%s", mname);
        assert_true(stat(cg1, &st) < 0 && stat(cg2, &st) < 0);
}

static void test_boot_busybox(void **state) {
        (void)state;
        if (skip_unless_root())
                skip();
        if (!have_image("busybox"))
                skip();
        static const char *const env[] = {"PATH=/usr/sbin:/usr/bin:/sbin:/bin", NULL};
        double t_start;
        start_machine("busybox", NULL, env, &t_start);
        print_message("busybox: sandbox_start %.1f ms\n", t_start * 1000);

        /* the same name again while it runs: refused, the running machine untouched */
        {
                mk("upper2");
                mk("work2");
                mk("root2");
                static char lower[512], upper[512], work[512], root[512];
                path(lower, sizeof lower, "lower");
                path(upper, sizeof upper, "upper2");
                path(work, sizeof work, "work2");
                path(root, sizeof root, "root2");
                const char *lowers[] = {lower, NULL};
                struct sandbox_spec s2 = base_spec();
                s2.lowerdirs = lowers;
                s2.upperdir = upper;
                s2.workdir = work;
                s2.rootfs = root;
                struct sandbox *twin = NULL;
                _cleanup_error_ struct cm_error *err2 = NULL;
                assert_true(sandbox_start(&s2, &twin, &err2) < 0);
                assert_non_null(strstr(err2->message, "already running"));
                assert_int_equal(kill(sandbox_init_pid(machine), 0), 0);
        }

        char *out = NULL, *errout = NULL;
        char *echo[] = {(char *)"echo", (char *)"hi", NULL};
        double t0 = now_s();
        assert_int_equal(run_in(0, 0, echo, &out, NULL), 0);
        print_message("busybox: exec echo hi %.2f ms\n", (now_s() - t0) * 1000);
        assert_string_equal(out, "hi\n");
        free(out);

        char *missing[] = {(char *)"no-such-command", NULL};
        assert_int_equal(run_in(0, 0, missing, &out, &errout), 127);
        assert_string_equal(errout, "no-such-command: command not found\n");
        free(out);
        free(errout);

        char *noexec[] = {(char *)"/etc/passwd", NULL};
        assert_int_equal(run_in(0, 0, noexec, &out, &errout), 126);
        assert_string_equal(errout, "/etc/passwd: Permission denied\n");
        free(out);
        free(errout);

        /* as the provisioned user, in the home, with the machine's name */
        char *who[] = {(char *)"sh", (char *)"-c", (char *)"id -un; id -u; pwd; hostname; cat /proc/1/cmdline", NULL};
        assert_int_equal(run_in(USER_UID, USER_GID, who, &out, NULL), 0);
        char want[1024], home[512];
        path(home, sizeof home, "home/" USER_NAME);
        snprintf(want, sizeof want, USER_NAME "\n4321\n%s\n%s\ninit", home, mname);
        assert_string_equal(out, want);
        free(out);

        /* the home is the host's, shared both ways */
        char *touch[] = {(char *)"sh", (char *)"-c", (char *)"echo shared > $HOME/from-machine", NULL};
        assert_int_equal(run_in(USER_UID, USER_GID, touch, NULL, NULL), 0);
        _cleanup_free_ char *shared = read_rel("home/" USER_NAME "/from-machine");
        assert_non_null(shared);
        assert_string_equal(shared, "shared\n");

        /* a login shell when argv is NULL: the user's shell from the machine's passwd */
        stdin_text = "echo \"$0\"; exit 3\n";
        assert_int_equal(run_in(USER_UID, USER_GID, NULL, &out, NULL), 3);
        assert_string_equal(out, "-sh\n");
        free(out);

        /* a pty session with a pty of the machine's own devpts */
        int master, slave;
        _cleanup_error_ struct cm_error *perr = NULL;
        assert_int_equal(sandbox_open_pty(machine, &master, &slave, &perr), 0);
        char *tty[] = {(char *)"sh", (char *)"-c", (char *)"tty; test -t 0 && echo ctty-ok", NULL};
        char *penv[] = {(char *)"PATH=/bin:/sbin", NULL};
        struct sandbox_exec x = {.argv = tty,
                                 .env = penv,
                                 .uid = 0,
                                 .gid = 0,
                                 .stdin_fd = slave,
                                 .stdout_fd = slave,
                                 .stderr_fd = slave,
                                 .pty = true};
        pid_t pid;
        assert_int_equal(sandbox_exec(machine, &x, &pid, &perr), 0);
        close(slave);
        char tbuf[256];
        size_t tlen = 0;
        ssize_t tn;
        while (tlen < sizeof tbuf - 1 && (tn = read(master, tbuf + tlen, sizeof tbuf - 1 - tlen)) > 0)
                tlen += (size_t)tn;
        tbuf[tlen] = 0;
        close(master);
        int tst;
        assert_int_equal(waitpid(pid, &tst, 0), pid);
        assert_string_equal(tbuf, "/dev/pts/0\r\nctty-ok\r\n");

        char *hosts[] = {(char *)"cat", (char *)"/etc/hosts", NULL};
        assert_int_equal(run_in(0, 0, hosts, &out, NULL), 0);
        char hline[128];
        snprintf(hline, sizeof hline, "127.0.1.1\t%s # container-machine\n", mname);
        assert_non_null(strstr(out, hline));
        free(out);
        char *run[] = {(char *)"sh", (char *)"-c", (char *)"grep -c ' /run tmpfs ' /proc/mounts", NULL};
        assert_int_equal(run_in(0, 0, run, &out, NULL), 0);
        assert_string_equal(out, "1\n");
        free(out);
        char *ro[] = {(char *)"sh", (char *)"-c", (char *)"echo 1 > /proc/sys/kernel/sysrq", NULL};
        assert_int_not_equal(run_in(0, 0, ro, NULL, NULL), 0);

        double t_stop = stop_machine();
        print_message("busybox: stop %.0f ms\n", t_stop * 1000);
        assert_true(t_stop < 3.5);
        assert_cleaned_up();
}

static void test_boot_debian_systemd(void **state) {
        (void)state;
        if (skip_unless_root())
                skip();
        if (!have_image("debian"))
                skip();
        static const char *const env[] = {"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                                          "container=oci", NULL};
        double t_start;
        start_machine("debian", "SIGRTMIN+3", env, &t_start);
        double t0 = now_s() - t_start;
        print_message("debian: sandbox_start %.1f ms\n", t_start * 1000);

        char *state_argv[] = {(char *)"systemctl", (char *)"is-system-running", NULL};
        char *out = NULL;
        bool up = false;
        while (now_s() - t0 < 60) {
                run_in(0, 0, state_argv, &out, NULL);
                if (strncmp(out, "running", 7) == 0 || strncmp(out, "degraded", 8) == 0) {
                        up = true;
                        break;
                }
                free(out);
                out = NULL;
                usleep(20000);
        }
        if (out)
                out[strcspn(out, "\n")] = 0;
        print_message("debian: is-system-running = %s after %.2f s\n", out ? out : "(timeout)", now_s() - t0);
        if (out && strncmp(out, "degraded", 8) == 0) {
                char *failed[] = {(char *)"systemctl", (char *)"--failed", (char *)"--no-legend", NULL};
                char *f = NULL;
                run_in(0, 0, failed, &f, NULL);
                print_message("debian: failed units:\n%s", f);
                free(f);
        }
        free(out);
        assert_true(up);

        char *host[] = {(char *)"hostname", NULL};
        assert_int_equal(run_in(0, 0, host, &out, NULL), 0);
        char hn[64];
        snprintf(hn, sizeof hn, "%s\n", mname);
        assert_string_equal(out, hn);
        free(out);
        char *id[] = {(char *)"id", (char *)USER_NAME, NULL};
        assert_int_equal(run_in(0, 0, id, &out, NULL), 0);
        assert_non_null(strstr(out, "uid=4321(" USER_NAME ")"));
        free(out);
        char *sudo[] = {(char *)"sudo", (char *)"-n", (char *)"id", (char *)"-u", NULL};
        assert_int_equal(run_in(USER_UID, USER_GID, sudo, &out, NULL), 0);
        assert_string_equal(out, "0\n");
        free(out);
        /* sessions live in init's cgroup (init.scope), inside the machine's namespace */
        char *cg[] = {(char *)"cat", (char *)"/proc/self/cgroup", NULL};
        assert_int_equal(run_in(0, 0, cg, &out, NULL), 0);
        assert_non_null(strstr(out, "0::/init.scope\n"));
        assert_null(strstr(out, "/.."));
        free(out);
        /* sessions have init's capability bounding set, not the runtime's */
        char *caps[] = {(char *)"sh", (char *)"-c",
                        (char *)"grep CapBnd /proc/self/status /proc/1/status | cut -f2 | uniq | wc -l", NULL};
        assert_int_equal(run_in(0, 0, caps, &out, NULL), 0);
        assert_string_equal(out, "1\n");
        free(out);
        char *nproc[] = {(char *)"nproc", NULL};
        assert_int_equal(run_in(0, 0, nproc, &out, NULL), 0);
        print_message("debian: nproc = %s", out);
        free(out);

        double t_stop = stop_machine();
        print_message("debian: stop %.0f ms\n", t_stop * 1000);
        assert_true(t_stop < 10);
        assert_cleaned_up();
}

static void test_start_without_init_fails_cleanly(void **state) {
        (void)state;
        if (skip_unless_root())
                skip();
        mk("lower/etc");
        mk("upper");
        mk("work");
        mk("root");
        static char lower[512], upper[512], work[512];
        path(lower, sizeof lower, "lower");
        path(upper, sizeof upper, "upper");
        path(work, sizeof work, "work");
        const char *lowers[] = {lower, NULL};
        struct sandbox_spec s = base_spec();
        s.lowerdirs = lowers;
        s.upperdir = upper;
        s.workdir = work;
        s.provision = false;
        struct sandbox *sb = NULL;
        _cleanup_error_ struct cm_error *err = NULL;
        assert_true(sandbox_start(&s, &sb, &err) < 0);
        assert_null(sb);
        assert_string_equal(err->message, "the image has no /sbin/init: No such file or directory");
        assert_cleaned_up();
}

static void test_cleanup_stale(void **state) {
        (void)state;
        if (skip_unless_root())
                skip();
        const char *v2 =
                access("/sys/fs/cgroup/unified/cgroup.procs", F_OK) == 0 ? "/sys/fs/cgroup/unified" : "/sys/fs/cgroup";
        char dir[512];
        char stale[64];
        snprintf(stale, sizeof stale, "cmstale%d", (int)getpid());
        snprintf(dir, sizeof dir, "%s/container-machine/%s/init.scope", v2, stale);
        if (fs_mkdir_p(AT_FDCWD, dir, 0755) < 0)
                skip();
        /* a leftover process in it, as after a crash */
        pid_t p = fork();
        assert_true(p >= 0);
        if (p == 0) {
                char procs[600];
                snprintf(procs, sizeof procs, "%s/cgroup.procs", dir);
                FILE *f = fopen(procs, "we");
                if (f) {
                        fputs("0", f);
                        fclose(f);
                }
                pause();
                _exit(0);
        }
        usleep(50000);
        assert_int_equal(sandbox_cleanup_stale(stale, NULL), 0);
        int st;
        assert_int_equal(waitpid(p, &st, 0), p);
        assert_true(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
        snprintf(dir, sizeof dir, "%s/container-machine/%s", v2, stale);
        assert_int_not_equal(access(dir, F_OK), 0);
}

int main(void) {
        signal(SIGHUP, SIG_IGN);
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_provision_writes_user, setup_tmp, teardown_tmp),
                cmocka_unit_test_setup_teardown(test_provision_reuses_entries, setup_tmp, teardown_tmp),
                cmocka_unit_test_setup_teardown(test_provision_symlink_attack, setup_tmp, teardown_tmp),
                cmocka_unit_test_setup_teardown(test_provision_create_user_script, setup_tmp, teardown_tmp),
                cmocka_unit_test_setup_teardown(test_start_without_init_fails_cleanly, setup_tmp, teardown_tmp),
                cmocka_unit_test_setup_teardown(test_cleanup_stale, setup_tmp, teardown_tmp),
                cmocka_unit_test_setup_teardown(test_boot_busybox, setup_tmp, teardown_tmp),
                cmocka_unit_test_setup_teardown(test_boot_debian_systemd, setup_tmp, teardown_tmp),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
