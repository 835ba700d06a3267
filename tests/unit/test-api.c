/* proto/api: framing, fd passing, request validation. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <fcntl.h>
#include <string.h>
#include <sys/socket.h>

#include "proto/api.h"
#include "util/json.h"

static void test_roundtrip_with_fd(void **state) {
        int sv[2];
        assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
        json_t *req = api_request("image.load", json_pack("{s:s}", "x", "y"));
        int devnull = open("/dev/null", O_RDONLY | O_CLOEXEC);
        assert_int_equal(api_send_fds(sv[0], req, &devnull, 1), 0);
        json_decref(req);
        json_t *got = NULL;
        int fds[4], n = 0;
        assert_int_equal(api_recv_fds(sv[1], &got, fds, 4, &n), 0);
        assert_int_equal(n, 1);
        assert_true(fds[0] >= 0 && fds[0] != devnull);
        assert_true(fcntl(fds[0], F_GETFD) & FD_CLOEXEC);
        const char *method;
        json_t *params;
        assert_int_equal(api_parse_request(got, &method, &params, NULL), 0);
        assert_string_equal(method, "image.load");
        assert_string_equal(json_get_str(params, "x"), "y");
        json_decref(got);
        close(fds[0]);
        close(devnull);
        close(sv[0]);
        assert_int_equal(api_recv(sv[1], &got), -ECONNRESET);
        close(sv[1]);
}

static void test_bad_frames(void **state) {
        json_t *j = NULL;
        size_t used = 0;
        unsigned char huge[8] = { 0xff, 0xff, 0xff, 0xff, '{', '}' };
        assert_int_equal(api_decode(huge, sizeof huge, &j, &used), -EBADMSG);
        unsigned char zero[4] = { 0 };
        assert_int_equal(api_decode(zero, 4, &j, &used), -EBADMSG);
        unsigned char partial[6] = { 0, 0, 0, 9, '{', '}' };
        assert_int_equal(api_decode(partial, sizeof partial, &j, &used), -EAGAIN);
        unsigned char notobj[7] = { 0, 0, 0, 3, '[', '1', ']' };
        assert_int_equal(api_decode(notobj, sizeof notobj, &j, &used), -EBADMSG);
        unsigned char ok[6] = { 0, 0, 0, 2, '{', '}' };
        assert_int_equal(api_decode(ok, sizeof ok, &j, &used), 0);
        assert_int_equal(used, 6);
        struct cm_error *err = NULL;
        const char *m;
        json_t *p;
        assert_true(api_parse_request(j, &m, &p, &err) < 0); /* no version */
        assert_non_null(err);
        cm_error_free(err);
        json_decref(j);
        json_t *v2 = json_pack("{s:i,s:s}", "version", 2, "method", "x");
        err = NULL;
        assert_true(api_parse_request(v2, &m, &p, &err) < 0);
        assert_non_null(strstr(err->message, "version 2"));
        cm_error_free(err);
        json_decref(v2);
        json_t *badp = json_pack("{s:i,s:s,s:[]}", "version", 1, "method", "x", "params");
        assert_true(api_parse_request(badp, &m, &p, NULL) < 0);
        json_decref(badp);
}

static void test_error_shape(void **state) {
        json_t *e = api_error(ENOENT, "image not found: x");
        json_t *err = json_object_get(e, "error");
        assert_false(json_is_true(json_object_get(e, "ok")));
        assert_string_equal(json_get_str(err, "code"), "not-found");
        assert_string_equal(json_get_str(err, "message"), "image not found: x");
        json_decref(e);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_roundtrip_with_fd),
                cmocka_unit_test(test_bad_frames),
                cmocka_unit_test(test_error_shape),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
