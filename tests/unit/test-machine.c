/* machine/: names, memory and other user input with SPEC's error texts, defaults, config JSON
 * round trip, state from $CONTAINER_RUN, and the /sbin/init lookup through image layers. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>

#include "machine/machine.h"
#include "util/fs.h"
#include "util/json.h"
#include "util/strv.h"

#define GIB (1024ull * 1024 * 1024)

static char tmpdir[64];

static int setup(void **state) {
        strcpy(tmpdir, "/tmp/cm-test-machine-XXXXXX");
        assert_non_null(mkdtemp(tmpdir));
        return 0;
}

static int teardown(void **state) {
        assert_int_equal(fs_rm_rf(AT_FDCWD, tmpdir), 0);
        return 0;
}

static void assert_name_error(const char *name, const char *text) {
        struct cm_error *err = NULL;
        assert_true(machine_name_validate(name, &err) < 0);
        assert_non_null(err);
        assert_string_equal(err->message, text);
        cm_error_free(err);
}

static void test_names(void **state) {
        const char *good[] = { "a", "0", "devbox", "alpine-latest", "a-b-c", "debian-13", "x1y2" };
        for (size_t i = 0; i < ELEMENTSOF(good); i++)
                assert_int_equal(machine_name_validate(good[i], NULL), 0);
        char max[MACHINE_NAME_MAX + 2];
        memset(max, 'a', MACHINE_NAME_MAX);
        max[MACHINE_NAME_MAX] = 0;
        assert_int_equal(machine_name_validate(max, NULL), 0);
        max[MACHINE_NAME_MAX] = 'a';
        max[MACHINE_NAME_MAX + 1] = 0;
        assert_name_error(max, "machine name cannot be longer than 57");

        assert_name_error("Bad_Name", "machine name 'Bad_Name' must start and end with a lowercase letter or digit, "
                                      "and contain only lowercase letters, digits, and hyphens");
        const char *bad[] = { "", "-a", "a-", "A", "a.b", "a b", "a/b", "..", "a_b", "é" };
        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                char text[256];
                snprintf(text, sizeof text,
                         "machine name '%s' must start and end with a lowercase letter or digit, and contain only "
                         "lowercase letters, digits, and hyphens",
                         bad[i]);
                assert_name_error(bad[i], text);
        }
}

static void test_name_from_image(void **state) {
        struct {
                const char *ref, *name;
        } cases[] = {
                { "alpine:latest", "alpine-latest" },
                { "alpine", "alpine-latest" },
                { "alpine:3.22", "alpine-3-22" },
                { "debian:13", "debian-13" },
                { "local/ubuntu-machine:latest", "ubuntu-machine-latest" },
                { "docker.io/library/busybox:1.36", "busybox-1-36" },
                { "localhost:5000/test/multilayer", "multilayer-latest" },
                { "localhost:5000/img:v1_x", "img-v1-x" },
                { "busybox@sha256:ce4f5975596f72f05bd78cd2552bf991413beee05f77fa43ae62ad17bebb771b", "busybox-ce4f5975596f" },
                { "my_image:_tag_", "my-image--tag" },
        };
        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                _cleanup_free_ char *n = machine_name_from_image(cases[i].ref);
                assert_non_null(n);
                assert_string_equal(n, cases[i].name);
                assert_int_equal(machine_name_validate(n, NULL), 0);
        }
        /* long names are cut to a valid name */
        char ref[200];
        memset(ref, 'x', 100);
        strcpy(ref + 100, ":latest");
        _cleanup_free_ char *n = machine_name_from_image(ref);
        assert_int_equal(strlen(n), MACHINE_NAME_MAX);
        assert_int_equal(machine_name_validate(n, NULL), 0);
        /* nothing usable left */
        _cleanup_free_ char *n2 = machine_name_from_image("___:___");
        assert_int_equal(machine_name_validate(n2, NULL), 0);
}

static void test_memory(void **state) {
        struct {
                const char *s;
                uint64_t v;
        } ok[] = {
                { "512M", 512ull << 20 }, { "8G", 8 * GIB },     { "1.5G", 3 * GIB / 2 }, { "1g", GIB },
                { "2GiB", 2 * GIB },      { "1024MB", GIB },     { "1T", 1024 * GIB },    { "1073741824", GIB },
                { "4096K", 4ull << 20 },  { "0.5G", GIB / 2 },
        };
        for (size_t i = 0; i < ELEMENTSOF(ok); i++) {
                uint64_t v = 0;
                assert_int_equal(machine_parse_memory(ok[i].s, &v), 0);
                assert_int_equal(v, ok[i].v);
        }
        const char *bad[] = { "", "G", "abc", "1X", "-1G", "1.5", "1GG", "1 G x" };
        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                uint64_t v = 0;
                assert_true(machine_parse_memory(bad[i], &v) < 0);
        }
        const char *too_small[] = { "512M", "1023M", "0", "abc" };
        for (size_t i = 0; i < ELEMENTSOF(too_small); i++) {
                struct cm_error *err = NULL;
                uint64_t v = 0;
                assert_true(machine_memory_validate(too_small[i], &v, &err) < 0);
                char text[128];
                snprintf(text, sizeof text, "invalid memory value '%s'. Must be greater than 1gb.", too_small[i]);
                assert_string_equal(err->message, text);
                cm_error_free(err);
        }
        uint64_t v = 0;
        assert_int_equal(machine_memory_validate("1G", &v, NULL), 0);
        assert_int_equal(v, GIB);
}

static void test_cpus_home_kernel(void **state) {
        unsigned n = 0;
        assert_int_equal(machine_cpus_validate("4", &n, NULL), 0);
        assert_int_equal(n, 4);
        const char *bad[] = { "0", "zero", "-1", "1.5", "", "4x" };
        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                struct cm_error *err = NULL;
                assert_true(machine_cpus_validate(bad[i], &n, &err) < 0);
                char text[128];
                snprintf(text, sizeof text, "invalid CPU count '%s'. Must be a positive integer (e.g., 4).", bad[i]);
                assert_string_equal(err->message, text);
                cm_error_free(err);
        }
        enum home_mount hm;
        assert_int_equal(machine_home_mount_validate("ro", &hm, NULL), 0);
        assert_int_equal(hm, HOME_MOUNT_RO);
        assert_string_equal(home_mount_to_string(HOME_MOUNT_NONE), "none");
        struct cm_error *err = NULL;
        assert_true(machine_home_mount_validate("maybe", &hm, &err) < 0);
        assert_string_equal(err->message, "invalid home mount option 'maybe'. Valid options: ro, rw, none");
        cm_error_free(err);

        err = NULL;
        assert_true(machine_kernel_validate("/nonexistent/vmlinuz", &err) < 0);
        assert_string_equal(err->message, "kernel binary not found at '/nonexistent/vmlinuz'");
        cm_error_free(err);
        err = NULL;
        assert_true(machine_kernel_validate(tmpdir, &err) < 0);
        assert_non_null(strstr(err->message, "is a directory"));
        cm_error_free(err);
        char path[128];
        snprintf(path, sizeof path, "%s/empty-kernel", tmpdir);
        assert_int_equal(fs_write_atomic(AT_FDCWD, path, "", 0, 0644), 0);
        err = NULL;
        assert_true(machine_kernel_validate(path, &err) < 0);
        assert_non_null(strstr(err->message, "is empty"));
        cm_error_free(err);
        assert_int_equal(fs_write_atomic(AT_FDCWD, path, "MZ", 2, 0644), 0);
        assert_int_equal(machine_kernel_validate(path, NULL), 0);

        bool b = false;
        assert_int_equal(machine_parse_bool("true", &b), 0);
        assert_true(b);
        assert_int_equal(machine_parse_bool("off", &b), 0);
        assert_false(b);
        assert_true(machine_parse_bool("perhaps", &b) < 0);
}

static void test_defaults(void **state) {
        assert_int_equal(machine_default_cpus_for(1), 1);
        assert_int_equal(machine_default_cpus_for(2), 2);
        assert_int_equal(machine_default_cpus_for(4), 4);
        assert_int_equal(machine_default_cpus_for(6), 4);
        assert_int_equal(machine_default_cpus_for(8), 4);
        assert_int_equal(machine_default_cpus_for(16), 8);
        assert_int_equal(machine_default_memory_for(24 * GIB), 12 * GIB);
        assert_int_equal(machine_default_memory_for(24 * GIB - 4096), 11 * GIB);
        assert_int_equal(machine_default_memory_for(GIB), GIB);
        assert_int_equal(machine_default_memory_for(3 * GIB), GIB);
        assert_true(machine_default_cpus() >= 1);
        assert_true(machine_default_memory() >= GIB);
        assert_int_equal(machine_default_memory() % GIB, 0);
}

static struct machine_config *sample_config(void) {
        struct machine_config *c = calloc(1, sizeof *c);
        c->name = strdup("devbox");
        c->id = strdup("0123456789abcdef0123456789abcdef");
        c->runtime = strdup("ns");
        c->image_reference = strdup("docker.io/library/alpine:latest");
        c->image_digest = strdup("sha256:ce4f5975596f72f05bd78cd2552bf991413beee05f77fa43ae62ad17bebb771b");
        c->platform_os = strdup("linux");
        c->platform_arch = strdup("amd64");
        c->cpus = 3;
        c->memory = 3 * GIB / 2;
        c->home_mount = HOME_MOUNT_RO;
        c->virtualization = true;
        c->kernel_path = NULL;
        c->ip_address = strdup("192.168.64.2");
        c->created = strdup("2026-01-02T03:04:05Z");
        c->owner.username = strdup("alice");
        c->owner.uid = 1000;
        c->owner.gid = 1001;
        c->owner.home = strdup("/home/alice");
        c->owner.shell = NULL;
        c->layers = NULL;
        strv_push_dup(&c->layers, "/var/lib/container/layers/aa");
        strv_push_dup(&c->layers, "/var/lib/container/layers/bb");
        c->env = NULL;
        strv_push_dup(&c->env, "PATH=/usr/bin:/bin");
        c->stop_signal = strdup("SIGRTMIN+3");
        c->provisioned = true;
        return c;
}

static void test_config_round_trip(void **state) {
        _cleanup_machine_config_ struct machine_config *c = sample_config();
        char dir[128];
        snprintf(dir, sizeof dir, "%s/machines/devbox", tmpdir);
        assert_int_equal(fs_mkdir_p(AT_FDCWD, dir, 0700), 0);
        assert_int_equal(machine_config_save(dir, c, NULL), 0);
        _cleanup_machine_config_ struct machine_config *l = NULL;
        assert_int_equal(machine_config_load(dir, &l, NULL), 0);
        assert_string_equal(l->name, "devbox");
        assert_string_equal(l->id, c->id);
        assert_string_equal(l->runtime, "ns");
        assert_string_equal(l->image_reference, c->image_reference);
        assert_string_equal(l->image_digest, c->image_digest);
        assert_string_equal(l->platform_os, "linux");
        assert_string_equal(l->platform_arch, "amd64");
        assert_int_equal(l->cpus, 3);
        assert_int_equal(l->memory, 3 * GIB / 2);
        assert_int_equal(l->home_mount, HOME_MOUNT_RO);
        assert_true(l->virtualization);
        assert_null(l->kernel_path);
        assert_string_equal(l->ip_address, "192.168.64.2");
        assert_string_equal(l->created, c->created);
        assert_string_equal(l->owner.username, "alice");
        assert_int_equal(l->owner.uid, 1000);
        assert_int_equal(l->owner.gid, 1001);
        assert_string_equal(l->owner.home, "/home/alice");
        assert_null(l->owner.shell);
        assert_int_equal(strv_length(l->layers), 2);
        assert_string_equal(l->layers[1], "/var/lib/container/layers/bb");
        assert_string_equal(l->env[0], "PATH=/usr/bin:/bin");
        assert_string_equal(l->stop_signal, "SIGRTMIN+3");
        assert_true(l->provisioned);
        /* and the JSON is the same after another trip */
        _cleanup_json_ json_t *a = machine_config_to_json(c), *b = machine_config_to_json(l);
        assert_true(json_equal(a, b));
        char path[160];
        snprintf(path, sizeof path, "%s/config.json", dir);
        struct stat st;
        assert_int_equal(stat(path, &st), 0);
        assert_int_equal(st.st_mode & 0777, 0644);
}

static void test_config_invalid(void **state) {
        const char *docs[] = {
                "[]",
                "{}",
                "{\"name\":\"Bad\",\"runtime\":\"ns\",\"cpus\":1,\"memory\":1,\"owner\":{\"uid\":0,\"gid\":0},\"layers\":[]}",
                "{\"name\":\"ok\",\"runtime\":\"ns\",\"cpus\":-1,\"memory\":1,\"owner\":{\"uid\":0,\"gid\":0},\"layers\":[]}",
                "{\"name\":\"ok\",\"runtime\":\"ns\",\"cpus\":1,\"memory\":1,\"owner\":{\"uid\":0,\"gid\":0},\"layers\":[1]}",
                "{\"name\":\"ok\",\"runtime\":\"ns\",\"cpus\":1,\"memory\":1,\"homeMount\":\"x\",\"owner\":{\"uid\":0,\"gid\":0},\"layers\":[]}",
                "{\"name\":\"ok\",\"runtime\":\"ns\",\"cpus\":1,\"memory\":1,\"layers\":[]}",
        };
        for (size_t i = 0; i < ELEMENTSOF(docs); i++) {
                _cleanup_json_ json_t *j = json_loads(docs[i], 0, NULL);
                assert_non_null(j);
                struct machine_config *c = NULL;
                struct cm_error *err = NULL;
                assert_true(machine_config_from_json(j, &c, &err) < 0);
                assert_null(c);
                assert_non_null(err);
                cm_error_free(err);
        }
        _cleanup_json_ json_t *j = json_loads("{\"name\":\"ok\",\"runtime\":\"ns\",\"cpus\":1,\"memory\":1073741824,"
                                              "\"owner\":{\"uid\":5,\"gid\":6},\"layers\":[\"/l\"]}",
                                              0, NULL);
        _cleanup_machine_config_ struct machine_config *c = NULL;
        assert_int_equal(machine_config_from_json(j, &c, NULL), 0);
        assert_int_equal(c->home_mount, HOME_MOUNT_RW);
        assert_int_equal(strv_length(c->env), 0);
}

static void test_paths_and_state(void **state) {
        _cleanup_free_ char *d = machine_dir("/r", "m"), *rd = machine_run_dir("/run/x", "m"),
                            *def = machine_default_path("/r", 1000);
        assert_string_equal(d, "/r/machines/m");
        assert_string_equal(rd, "/run/x/machines/m");
        assert_string_equal(def, "/r/machines/.default-1000");

        char run[128], p[192];
        snprintf(run, sizeof run, "%s/run", tmpdir);
        snprintf(p, sizeof p, "%s/machines/m", run);
        assert_int_equal(fs_mkdir_p(AT_FDCWD, p, 0755), 0);
        assert_int_equal(machine_state_read(run, "m", NULL), MACHINE_STOPPED);
        /* a pid file naming a live process that is not a runtime: stale */
        char pid[32];
        snprintf(pid, sizeof pid, "%ld\n", (long)getpid());
        snprintf(p, sizeof p, "%s/machines/m/runtime.pid", run);
        assert_int_equal(fs_write_atomic(AT_FDCWD, p, pid, strlen(pid), 0644), 0);
        snprintf(p, sizeof p, "%s/machines/m/state", run);
        assert_int_equal(fs_write_atomic(AT_FDCWD, p, "running\n", 8, 0644), 0);
        assert_int_equal(machine_state_read(run, "m", NULL), MACHINE_STOPPED);
        pid_t rp;
        assert_int_equal(machine_runtime_pid(run, "m", &rp), -ESRCH);
        assert_string_equal(machine_state_to_string(MACHINE_RUNNING), "running");
        assert_string_equal(machine_state_to_string(MACHINE_STOPPING), "stopping");
}

/* ---- /sbin/init through layers ---- */

static void mk(const char *layer, const char *path, const char *kind, const char *arg) {
        char full[512];
        snprintf(full, sizeof full, "%s/%s/%s", tmpdir, layer, path);
        char *slash = strrchr(full, '/');
        *slash = 0;
        assert_int_equal(fs_mkdir_p(AT_FDCWD, full, 0755), 0);
        *slash = '/';
        if (streq(kind, "file")) {
                assert_int_equal(fs_write_atomic(AT_FDCWD, full, "#!", 2, arg ? (mode_t)strtol(arg, NULL, 8) : 0755), 0);
        } else if (streq(kind, "link")) {
                assert_int_equal(symlink(arg, full), 0);
        } else if (streq(kind, "dir")) {
                assert_int_equal(fs_mkdir_p(AT_FDCWD, full, 0755), 0);
        } else if (streq(kind, "whiteout")) {
                assert_int_equal(mknod(full, S_IFCHR, makedev(0, 0)), 0);
        } else if (streq(kind, "opaque")) {
                assert_int_equal(fs_mkdir_p(AT_FDCWD, full, 0755), 0);
                assert_int_equal(setxattr(full, "trusted.overlay.opaque", "y", 1, 0), 0);
        }
}

static int find_init(const char *const *layer_names, char **ret) {
        char **layers = NULL;
        for (const char *const *l = layer_names; *l; l++) {
                char *p = NULL;
                assert_true(asprintf(&p, "%s/%s", tmpdir, *l) > 0);
                assert_int_equal(fs_mkdir_p(AT_FDCWD, p, 0755), 0);
                strv_consume(&layers, p);
        }
        int r = machine_image_find_init(layers, ret);
        strv_free(layers);
        return r;
}

static void test_find_init(void **state) {
        if (geteuid() != 0)
                skip(); /* whiteouts (mknod) and trusted.overlay.* xattrs need root */
        char *p = NULL;
        /* plain file */
        mk("a1", "sbin/init", "file", NULL);
        assert_int_equal(find_init((const char *[]){ "a1", NULL }, &p), 0);
        assert_string_equal(p, "/sbin/init");
        free(p);
        /* absolute symlink, resolved in the image, not on the host */
        mk("b1", "bin/busybox", "file", NULL);
        mk("b1", "sbin/init", "link", "/bin/busybox");
        assert_int_equal(find_init((const char *[]){ "b1", NULL }, &p), 0);
        assert_string_equal(p, "/bin/busybox");
        free(p);
        /* merged /usr: /sbin -> usr/sbin, init -> ../lib/systemd/systemd across layers */
        mk("c1", "sbin", "link", "usr/sbin");
        mk("c1", "usr/sbin/x", "file", NULL);
        mk("c2", "usr/lib/systemd/systemd", "file", NULL);
        mk("c2", "usr/sbin/init", "link", "../lib/systemd/systemd");
        assert_int_equal(find_init((const char *[]){ "c1", "c2", NULL }, &p), 0);
        assert_string_equal(p, "/usr/lib/systemd/systemd");
        free(p);
        /* a target outside the image does not escape: /../../../bin/sh stays at /bin/sh */
        mk("d1", "sbin/init", "link", "../../../../../../nonexistent-on-host/sh");
        assert_int_equal(find_init((const char *[]){ "d1", NULL }, NULL), -ENOENT);
        /* whited out in an upper layer */
        mk("e2", "sbin/init", "whiteout", NULL);
        assert_int_equal(find_init((const char *[]){ "a1", "e2", NULL }, NULL), -ENOENT);
        /* parent whited out */
        mk("f2", "sbin", "whiteout", NULL);
        assert_int_equal(find_init((const char *[]){ "a1", "f2", NULL }, NULL), -ENOENT);
        /* opaque /sbin above hides the lower init; one in the opaque dir itself counts */
        mk("g2", "sbin", "opaque", NULL);
        assert_int_equal(find_init((const char *[]){ "a1", "g2", NULL }, NULL), -ENOENT);
        mk("g3", "sbin/init", "file", NULL);
        assert_int_equal(find_init((const char *[]){ "a1", "g2", "g3", NULL }, NULL), 0);
        /* an opaque ancestor above a plain directory also hides */
        mk("h2", "usr", "opaque", NULL);
        mk("h2", "usr/sbin/other", "file", NULL);
        assert_int_equal(find_init((const char *[]){ "c1", "c2", "h2", NULL }, NULL), -ENOENT);
        /* loops and dangling links */
        mk("i1", "sbin/init", "link", "/sbin/init2");
        mk("i1", "sbin/init2", "link", "/sbin/init");
        assert_int_equal(find_init((const char *[]){ "i1", NULL }, NULL), -ELOOP);
        /* not executable, a directory */
        mk("j1", "sbin/init", "file", "0644");
        assert_int_equal(find_init((const char *[]){ "j1", NULL }, NULL), -EACCES);
        mk("k1", "sbin/init", "dir", NULL);
        assert_int_equal(find_init((const char *[]){ "k1", NULL }, NULL), -ENOEXEC);
        /* nothing at all */
        mk("l1", "etc/hostname", "file", NULL);
        assert_int_equal(find_init((const char *[]){ "l1", NULL }, NULL), -ENOENT);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_names),
                cmocka_unit_test(test_name_from_image),
                cmocka_unit_test(test_memory),
                cmocka_unit_test(test_cpus_home_kernel),
                cmocka_unit_test(test_defaults),
                cmocka_unit_test(test_config_round_trip),
                cmocka_unit_test(test_config_invalid),
                cmocka_unit_test(test_paths_and_state),
                cmocka_unit_test(test_find_init),
        };
        return cmocka_run_group_tests(tests, setup, teardown);
}
