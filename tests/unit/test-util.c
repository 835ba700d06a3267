/* util/: atomic writes, rm -rf that stays on its device, digests, config properties. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "util/config.h"
#include "util/digest.h"
#include "util/error.h"
#include "util/fs.h"
#include "util/json.h"
#include "util/strv.h"

static char tmpdir[64];

static int setup(void **state) {
        strcpy(tmpdir, "/tmp/cm-test-util-XXXXXX");
        assert_non_null(mkdtemp(tmpdir));
        return 0;
}

static int teardown(void **state) {
        assert_int_equal(fs_rm_rf(AT_FDCWD, tmpdir), 0);
        return 0;
}

static void test_atomic_write(void **state) {
        _cleanup_close_ int d = open(tmpdir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        assert_true(d >= 0);
        assert_int_equal(fs_write_atomic(d, "f", "hello", 5, 0600), 0);
        assert_int_equal(fs_write_atomic(d, "f", "bye", 3, 0600), 0);
        _cleanup_free_ char *data = NULL;
        size_t len = 0;
        assert_int_equal(fs_read_all(d, "f", 0, &data, &len), 0);
        assert_int_equal(len, 3);
        assert_string_equal(data, "bye");
        struct stat st;
        assert_int_equal(fstatat(d, "f", &st, 0), 0);
        assert_int_equal(st.st_mode & 07777, 0600);
        /* no temp files left behind */
        assert_int_equal(fs_mkdir_p(d, "sub/dir", 0755), 0);
        assert_int_equal(fs_write_atomic(d, "sub/dir/g", "x", 1, 0644), 0);
        _cleanup_closedir_ DIR *dir = fdopendir(dup(d));
        struct dirent *de;
        int n = 0;
        while ((de = readdir(dir)))
                if (de->d_name[0] != '.')
                        n++;
        assert_int_equal(n, 2);
}

static void test_read_limit(void **state) {
        _cleanup_close_ int d = open(tmpdir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        char big[10000];
        memset(big, 'a', sizeof big);
        assert_int_equal(fs_write_atomic(d, "big", big, sizeof big, 0644), 0);
        char *data = NULL;
        assert_int_equal(fs_read_all(d, "big", 5000, &data, NULL), -EFBIG);
        assert_null(data);
        assert_int_equal(fs_read_all(d, "missing", 0, &data, NULL), -ENOENT);
}

static void test_rm_rf_does_not_follow_symlinks(void **state) {
        _cleanup_close_ int d = open(tmpdir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        assert_int_equal(fs_mkdir_p(d, "keep", 0755), 0);
        assert_int_equal(fs_write_atomic(d, "keep/precious", "x", 1, 0644), 0);
        assert_int_equal(fs_mkdir_p(d, "gone/a/b", 0755), 0);
        char target[128];
        snprintf(target, sizeof target, "%s/keep", tmpdir);
        assert_int_equal(symlinkat(target, d, "gone/a/link"), 0);
        assert_int_equal(fs_rm_rf(d, "gone"), 0);
        assert_int_equal(faccessat(d, "gone", F_OK, AT_SYMLINK_NOFOLLOW), -1);
        assert_int_equal(faccessat(d, "keep/precious", F_OK, 0), 0);
        assert_int_equal(fs_rm_rf(d, "does-not-exist"), 0);
}

static void test_digest(void **state) {
        char out[DIGEST_STR_MAX];
        digest_buffer("", 0, out);
        assert_string_equal(out, "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
        assert_true(digest_is_valid(out));
        assert_false(digest_is_valid("sha256:E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855"));
        assert_false(digest_is_valid("sha256:abc"));
        assert_false(digest_is_valid("sha512:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"));
        assert_false(digest_is_valid("sha256:../../../../etc/passwd/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"));
        assert_false(digest_is_valid(NULL));
        struct digest_ctx *c = digest_new();
        digest_update(c, "ab", 2);
        digest_update(c, "c", 1);
        digest_final(c, out);
        assert_string_equal(out, "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

static void test_config(void **state) {
        json_t *cfg = NULL;
        assert_int_equal(cm_config_load(tmpdir, &cfg, NULL), 0); /* missing file = defaults */
        json_t *v = cm_config_get(cfg, "network.subnet");
        assert_string_equal(json_string_value(v), "192.168.64.0/24");
        json_decref(v);
        struct cm_error *err = NULL;
        assert_int_equal(cm_config_set(cfg, "registry.mirrors", "http://127.0.0.1:5000, http://127.0.0.1:5001", &err), 0);
        assert_true(cm_config_set(cfg, "registry.timeout", "soon", &err) < 0);
        assert_non_null(err);
        assert_non_null(strstr(err->message, "registry.timeout"));
        cm_error_free(err);
        err = NULL;
        assert_true(cm_config_set(cfg, "no.such.key", "1", &err) < 0);
        cm_error_free(err);
        assert_int_equal(cm_config_save(tmpdir, cfg, NULL), 0);
        json_decref(cfg);
        assert_int_equal(cm_config_load(tmpdir, &cfg, NULL), 0);
        v = cm_config_get(cfg, "registry.mirrors");
        assert_int_equal(json_array_size(v), 2);
        assert_string_equal(json_string_value(json_array_get(v, 1)), "http://127.0.0.1:5001");
        json_decref(v);
        json_decref(cfg);
}

static void test_strv_and_errors(void **state) {
        _cleanup_strv_ char **l = NULL;
        assert_int_equal(strv_push_dup(&l, "a"), 0);
        assert_int_equal(strv_push_dup(&l, "b"), 0);
        assert_int_equal(strv_length(l), 2);
        assert_true(strv_contains(l, "b"));
        assert_false(strv_contains(l, "c"));
        struct cm_error *err = NULL;
        assert_int_equal(cm_error_set(&err, ENOENT, "layer %s", "x"), -ENOENT);
        cm_error_prefix(&err, "pull %s", "alpine");
        assert_string_equal(err->message, "pull alpine: layer x");
        /* the first error wins: context is not overwritten by later, less precise ones */
        cm_error_set(&err, EIO, "later");
        assert_string_equal(err->message, "pull alpine: layer x");
        cm_error_free(err);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_atomic_write, setup, teardown),
                cmocka_unit_test_setup_teardown(test_read_limit, setup, teardown),
                cmocka_unit_test_setup_teardown(test_rm_rf_does_not_follow_symlinks, setup, teardown),
                cmocka_unit_test(test_digest),
                cmocka_unit_test_setup_teardown(test_config, setup, teardown),
                cmocka_unit_test(test_strv_and_errors),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
