/* proto/session: frame codec, validation, credit accounting, sequencing, payloads, policy helpers. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <signal.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>

#include "proto/session.h"
#include "util/json.h"
#include "util/strv.h"

static void hdr(uint8_t *p, uint32_t ch, uint8_t type, uint32_t len) {
        p[0] = (uint8_t)(ch >> 24), p[1] = (uint8_t)(ch >> 16), p[2] = (uint8_t)(ch >> 8), p[3] = (uint8_t)ch;
        p[4] = type;
        p[5] = (uint8_t)(len >> 24), p[6] = (uint8_t)(len >> 16), p[7] = (uint8_t)(len >> 8), p[8] = (uint8_t)len;
}

static void test_roundtrip(void **state) {
        (void)state;
        struct session_buf b = {0};
        assert_int_equal(session_buf_frame(&b, 7, SESSION_OPEN, "{\"argv\":[\"true\"]}", 17), 0);
        assert_int_equal(session_buf_frame(&b, 7, SESSION_STDIN, "abc", 3), 0);
        assert_int_equal(session_buf_eof(&b, 7, SESSION_STREAM_STDIN), 0);
        assert_int_equal(session_buf_resize(&b, 7, 40, 120), 0);
        assert_int_equal(session_buf_u32(&b, 7, SESSION_SIGNAL, SIGINT), 0);
        assert_int_equal(session_buf_u32(&b, 7, SESSION_CREDIT, 1000), 0);
        assert_int_equal(session_buf_exit(&b, 7, 130), 0);
        assert_int_equal(session_buf_error(&b, 7, "not-found", "container machine with ID x not found"), 0);
        assert_int_equal(session_buf_frame(&b, 7, SESSION_CLOSE, NULL, 0), 0);

        struct session_decoder d;
        session_decoder_init(&d, true);
        assert_int_equal(session_decoder_feed(&d, b.data + b.start, b.len), 0);
        struct session_frame f;
        const uint8_t want[] = {SESSION_OPEN,   SESSION_STDIN, SESSION_EOF,   SESSION_RESIZE, SESSION_SIGNAL,
                                SESSION_CREDIT, SESSION_EXIT,  SESSION_ERROR, SESSION_CLOSE};
        for (size_t i = 0; i < ELEMENTSOF(want); i++) {
                assert_int_equal(session_decoder_next(&d, &f, NULL), 1);
                assert_int_equal(f.channel, 7);
                assert_int_equal(f.type, want[i]);
                switch (f.type) {
                case SESSION_STDIN:
                        assert_int_equal(f.length, 3);
                        assert_memory_equal(f.payload, "abc", 3);
                        break;
                case SESSION_RESIZE:
                        assert_int_equal(session_be16(f.payload), 40);
                        assert_int_equal(session_be16(f.payload + 2), 120);
                        break;
                case SESSION_SIGNAL:
                        assert_int_equal(session_be32(f.payload), SIGINT);
                        break;
                case SESSION_EXIT: {
                        int st = -1;
                        assert_int_equal(session_exit_parse(f.payload, f.length, &st, NULL), 0);
                        assert_int_equal(st, 130);
                        break;
                }
                case SESSION_ERROR: {
                        char *code = NULL, *msg = NULL;
                        assert_int_equal(session_error_parse(f.payload, f.length, &code, &msg), 0);
                        assert_string_equal(code, "not-found");
                        assert_string_equal(msg, "container machine with ID x not found");
                        free(code);
                        free(msg);
                        break;
                }
                }
        }
        assert_int_equal(session_decoder_next(&d, &f, NULL), 0);
        session_decoder_done(&d);
        session_buf_done(&b);
}

/* Every split of a stream into feeds gives the same frames. */
static void test_partial_feeds(void **state) {
        (void)state;
        struct session_buf b = {0};
        uint8_t big[SESSION_MAX_DATA];
        for (size_t i = 0; i < sizeof big; i++)
                big[i] = (uint8_t)(i * 7);
        assert_int_equal(session_buf_frame(&b, 1, SESSION_STDOUT, big, sizeof big), 0);
        assert_int_equal(session_buf_frame(&b, 1, SESSION_STDERR, "e", 1), 0);
        assert_int_equal(session_buf_exit(&b, 1, 0), 0);
        const uint8_t *stream = b.data + b.start;
        size_t total = b.len;
        const size_t steps[] = {1, 2, 5, 9, 10, 4096, 65545};
        for (size_t s = 0; s < ELEMENTSOF(steps); s++) {
                struct session_decoder d;
                session_decoder_init(&d, true);
                int got = 0;
                for (size_t off = 0; off < total; off += steps[s]) {
                        size_t n = total - off < steps[s] ? total - off : steps[s];
                        assert_int_equal(session_decoder_feed(&d, stream + off, n), 0);
                        struct session_frame f;
                        int r;
                        while ((r = session_decoder_next(&d, &f, NULL)) == 1) {
                                if (got == 0) {
                                        assert_int_equal(f.type, SESSION_STDOUT);
                                        assert_int_equal(f.length, sizeof big);
                                        assert_memory_equal(f.payload, big, sizeof big);
                                } else if (got == 1) {
                                        assert_int_equal(f.type, SESSION_STDERR);
                                        assert_memory_equal(f.payload, "e", 1);
                                } else
                                        assert_int_equal(f.type, SESSION_EXIT);
                                got++;
                        }
                        assert_int_equal(r, 0);
                }
                assert_int_equal(got, 3);
                session_decoder_done(&d);
        }
        session_buf_done(&b);
}

static int decode_one(const uint8_t *p, size_t n, bool pin, const char **why) {
        struct session_decoder d;
        session_decoder_init(&d, pin);
        int r = session_decoder_feed(&d, p, n);
        struct session_frame f;
        if (r >= 0)
                r = session_decoder_next(&d, &f, why);
        if (r == 1)
                r = session_decoder_next(&d, &f, why) < 0 ? -EBADMSG : 1;
        session_decoder_done(&d);
        return r;
}

static void test_invalid_frames(void **state) {
        (void)state;
        uint8_t p[64] = {0};
        const char *why = NULL;

        hdr(p, 1, 0, 0); /* type 0 */
        assert_int_equal(decode_one(p, 9, true, &why), -EBADMSG);
        assert_string_equal(why, "unknown frame type");
        hdr(p, 1, _SESSION_TYPE_MAX, 0);
        assert_int_equal(decode_one(p, 9, true, NULL), -EBADMSG);
        hdr(p, 1, 200, 0);
        assert_int_equal(decode_one(p, 9, true, NULL), -EBADMSG);

        /* oversized: refused from the header alone, before any payload is buffered */
        hdr(p, 1, SESSION_STDOUT, SESSION_MAX_DATA + 1);
        assert_int_equal(decode_one(p, 9, true, &why), -EBADMSG);
        assert_string_equal(why, "frame too long");
        hdr(p, 1, SESSION_OPEN, SESSION_MAX_OPEN + 1);
        assert_int_equal(decode_one(p, 9, true, NULL), -EBADMSG);
        hdr(p, 1, SESSION_EXIT, 0xffffffffu);
        assert_int_equal(decode_one(p, 9, true, NULL), -EBADMSG);

        /* fixed-size payloads */
        hdr(p, 1, SESSION_EOF, 2);
        assert_int_equal(decode_one(p, 11, true, NULL), -EBADMSG);
        hdr(p, 1, SESSION_EOF, 1);
        p[9] = 3;
        assert_int_equal(decode_one(p, 10, true, NULL), -EBADMSG);
        p[9] = 2;
        assert_int_equal(decode_one(p, 10, true, NULL), 1);
        hdr(p, 1, SESSION_RESIZE, 3);
        assert_int_equal(decode_one(p, 12, true, NULL), -EBADMSG);
        hdr(p, 1, SESSION_SIGNAL, 4);
        memset(p + 9, 0, 4);
        assert_int_equal(decode_one(p, 13, true, NULL), -EBADMSG); /* signal 0 */
        p[12] = 65;
        assert_int_equal(decode_one(p, 13, true, NULL), -EBADMSG);
        p[12] = 9;
        assert_int_equal(decode_one(p, 13, true, NULL), 1);
        hdr(p, 1, SESSION_CREDIT, 4);
        memset(p + 9, 0, 4);
        assert_int_equal(decode_one(p, 13, true, NULL), -EBADMSG); /* zero credit */
        p[9] = 0x80;
        assert_int_equal(decode_one(p, 13, true, NULL), -EBADMSG); /* beyond the window */
        hdr(p, 1, SESSION_CLOSE, 1);
        assert_int_equal(decode_one(p, 10, true, NULL), -EBADMSG);
        hdr(p, 1, SESSION_STDIN, 0);
        assert_int_equal(decode_one(p, 9, true, NULL), -EBADMSG); /* empty data */

        /* channel mismatch on a pinned connection; channel 0 is never a session's */
        struct session_buf b = {0};
        session_buf_frame(&b, 1, SESSION_STDIN, "a", 1);
        session_buf_frame(&b, 2, SESSION_STDIN, "b", 1);
        assert_int_equal(decode_one(b.data, b.len, true, &why), -EBADMSG);
        assert_string_equal(why, "frame on the wrong channel");
        assert_int_equal(decode_one(b.data, b.len, false, NULL), 1); /* a multiplexed link: fine */
        session_buf_done(&b);
        hdr(p, 0, SESSION_CLOSE, 0);
        assert_int_equal(decode_one(p, 9, true, NULL), -EBADMSG);

        /* errors are sticky */
        struct session_decoder d;
        session_decoder_init(&d, true);
        hdr(p, 1, 99, 0);
        session_decoder_feed(&d, p, 9);
        struct session_frame f;
        assert_int_equal(session_decoder_next(&d, &f, NULL), -EBADMSG);
        hdr(p, 1, SESSION_CLOSE, 0);
        assert_int_equal(session_decoder_feed(&d, p, 9), -EBADMSG);
        assert_int_equal(session_decoder_next(&d, &f, NULL), -EBADMSG);
        session_decoder_done(&d);

        /* the encoder refuses what the decoder would */
        struct session_buf e = {0};
        static uint8_t huge[SESSION_MAX_DATA + 1];
        assert_int_equal(session_buf_frame(&e, 1, SESSION_STDOUT, huge, sizeof huge), -EINVAL);
        assert_int_equal(session_buf_frame(&e, 1, 0, NULL, 0), -EINVAL);
        session_buf_done(&e);
}

static void test_credit(void **state) {
        (void)state;
        struct session_credit c;
        session_credit_init(&c);
        assert_int_equal(c.send, SESSION_WINDOW);
        assert_int_equal(c.recv, SESSION_WINDOW);

        /* receiving: the peer may not exceed the window */
        assert_int_equal(session_credit_on_data(&c, SESSION_WINDOW - 10), 0);
        assert_int_equal(session_credit_on_data(&c, 11), -EBADMSG);
        assert_int_equal(session_credit_on_data(&c, 10), 0);
        assert_int_equal(session_credit_on_data(&c, 1), -EBADMSG);
        /* the peer has no credit left: any consumption is granted at once (no deadlock) */
        assert_int_equal(session_credit_on_consumed(&c, 100), 100);
        assert_int_equal(c.recv, 100);
        /* else small consumption is batched until a quarter window */
        assert_int_equal(session_credit_on_consumed(&c, 100), 0);
        uint32_t g = session_credit_on_consumed(&c, SESSION_WINDOW / 4);
        assert_int_equal(g, SESSION_WINDOW / 4 + 100);
        assert_int_equal(c.recv, g + 100);
        /* consuming more than was received grants no more than was received */
        g = session_credit_on_consumed(&c, 10 * SESSION_WINDOW);
        assert_int_equal(c.recv, SESSION_WINDOW);
        assert_int_equal(c.consumed, 0);
        /* when all the credit is used up, any consumption is granted at once (no deadlock) */
        struct session_credit d;
        session_credit_init(&d);
        assert_int_equal(session_credit_on_data(&d, SESSION_WINDOW), 0);
        assert_int_equal(session_credit_on_consumed(&d, 1), 1);

        /* sending: grants cannot exceed what we could owe */
        session_credit_init(&c);
        assert_int_equal(session_credit_on_grant(&c, 1), -EBADMSG);
        session_credit_on_sent(&c, 1000);
        assert_int_equal(c.send, SESSION_WINDOW - 1000);
        assert_int_equal(session_credit_on_grant(&c, 1001), -EBADMSG);
        assert_int_equal(session_credit_on_grant(&c, 1000), 0);
        assert_int_equal(c.send, SESSION_WINDOW);
        session_credit_on_sent(&c, 2 * SESSION_WINDOW);
        assert_int_equal(c.send, 0);
}

static struct session_frame mk(uint8_t type, const void *payload, uint32_t len) {
        return (struct session_frame){.channel = 1, .type = type, .length = len, .payload = payload};
}

static void test_sequencing(void **state) {
        (void)state;
        const char *why = NULL;
        static uint8_t data[SESSION_MAX_DATA];
        uint8_t in = 0, out = 1;
        struct session_channel s;
        session_channel_init(&s, SESSION_ROLE_SERVER);
        struct session_frame f = mk(SESSION_STDIN, "x", 1);
        assert_int_equal(session_channel_receive(&s, &f, &why), -EBADMSG);
        assert_string_equal(why, "frame before OPEN");
        session_channel_init(&s, SESSION_ROLE_SERVER);
        f = mk(SESSION_OPEN, "{}", 2);
        assert_int_equal(session_channel_receive(&s, &f, NULL), 0);
        assert_int_equal(session_channel_receive(&s, &f, NULL), -EBADMSG); /* OPEN twice */
        session_channel_init(&s, SESSION_ROLE_SERVER);
        assert_int_equal(session_channel_receive(&s, &f, NULL), 0);
        /* a server gets no output, no EXIT */
        struct session_frame g = mk(SESSION_STDOUT, "x", 1);
        assert_int_equal(session_channel_receive(&s, &g, NULL), -EBADMSG);
        session_channel_init(&s, SESSION_ROLE_SERVER);
        assert_int_equal(session_channel_receive(&s, &f, NULL), 0);
        /* stdin up to the window, then a violation */
        for (unsigned i = 0; i < SESSION_WINDOW / sizeof data; i++) {
                g = mk(SESSION_STDIN, data, sizeof data);
                assert_int_equal(session_channel_receive(&s, &g, NULL), 0);
        }
        g = mk(SESSION_STDIN, "x", 1);
        assert_int_equal(session_channel_receive(&s, &g, &why), -EBADMSG);
        assert_string_equal(why, "data beyond the granted credit");
        /* data after EOF */
        session_channel_init(&s, SESSION_ROLE_SERVER);
        assert_int_equal(session_channel_receive(&s, &f, NULL), 0);
        g = mk(SESSION_EOF, &out, 1);
        assert_int_equal(session_channel_receive(&s, &g, NULL), -EBADMSG); /* server gets stdin EOF only */
        session_channel_init(&s, SESSION_ROLE_SERVER);
        assert_int_equal(session_channel_receive(&s, &f, NULL), 0);
        g = mk(SESSION_EOF, &in, 1);
        assert_int_equal(session_channel_receive(&s, &g, NULL), 0);
        struct session_frame h = mk(SESSION_STDIN, "x", 1);
        assert_int_equal(session_channel_receive(&s, &h, &why), -EBADMSG);
        assert_string_equal(why, "data after EOF");

        /* client: output, EXIT once, nothing after it but CLOSE */
        struct session_channel c;
        session_channel_init(&c, SESSION_ROLE_CLIENT);
        g = mk(SESSION_STDERR, "x", 1);
        assert_int_equal(session_channel_receive(&c, &g, NULL), 0);
        g = mk(SESSION_OPEN, "{}", 2);
        assert_int_equal(session_channel_receive(&c, &g, NULL), -EBADMSG);
        session_channel_init(&c, SESSION_ROLE_CLIENT);
        g = mk(SESSION_EXIT, "{\"status\":0}", 12);
        assert_int_equal(session_channel_receive(&c, &g, NULL), 0);
        h = mk(SESSION_STDOUT, "x", 1);
        assert_int_equal(session_channel_receive(&c, &h, NULL), -EBADMSG);
        session_channel_init(&c, SESSION_ROLE_CLIENT);
        g = mk(SESSION_SIGNAL, "\0\0\0\2", 4);
        assert_int_equal(session_channel_receive(&c, &g, NULL), -EBADMSG);
        /* CREDIT grants are accounted */
        session_channel_init(&c, SESSION_ROLE_CLIENT);
        uint8_t cr[4] = {0, 0, 0x10, 0};
        g = mk(SESSION_CREDIT, cr, 4);
        assert_int_equal(session_channel_receive(&c, &g, NULL), -EBADMSG); /* nothing was sent */
        session_channel_init(&c, SESSION_ROLE_CLIENT);
        session_credit_on_sent(&c.credit, 0x1000);
        assert_int_equal(session_channel_receive(&c, &g, NULL), 0);
        assert_int_equal(c.credit.send, SESSION_WINDOW);
        g = mk(SESSION_CLOSE, NULL, 0);
        assert_int_equal(session_channel_receive(&c, &g, NULL), 0);
        g = mk(SESSION_CREDIT, cr, 4);
        assert_int_equal(session_channel_receive(&c, &g, NULL), -EBADMSG); /* after CLOSE */
}

static struct session_open *parse(const char *s, int *r) {
        struct session_open *o = NULL;
        struct cm_error *err = NULL;
        *r = session_open_parse(s, strlen(s), &o, &err);
        cm_error_free(err);
        return o;
}

static void test_open_parse(void **state) {
        (void)state;
        int r;
        struct session_open *o = parse("{\"argv\":[\"printf\",\"%s|\",\"a b\",\"\"],\"env\":{\"TERM\":\"xterm\","
                                       "\"LANG\":\"C.UTF-8\",\"B\":\"1\"},\"cwd\":\"/home/u/p\",\"workdir\":null,"
                                       "\"user\":\"1000:5\",\"root\":false,\"uid\":7,\"gid\":null,\"tty\":true,"
                                       "\"rows\":40,\"cols\":120}",
                                       &r);
        assert_int_equal(r, 0);
        assert_int_equal(o->kind, SESSION_OPEN_EXEC);
        assert_int_equal(strv_length(o->argv), 4);
        assert_string_equal(o->argv[3], "");
        assert_string_equal(o->env[0], "TERM=xterm");
        assert_string_equal(o->env[2], "B=1");
        assert_string_equal(o->cwd, "/home/u/p");
        assert_null(o->workdir);
        assert_string_equal(o->user, "1000:5");
        assert_true(o->has_uid && o->uid == 7 && !o->has_gid);
        assert_true(o->tty && o->rows == 40 && o->cols == 120);
        session_open_free(o);

        o = parse("{\"argv\":null}", &r);
        assert_int_equal(r, 0);
        assert_null(o->argv);
        session_open_free(o);

        o = parse("{\"control\":\"stop\",\"timeout\":3}", &r);
        assert_int_equal(o->kind, SESSION_OPEN_STOP);
        assert_int_equal(o->timeout, 3);
        session_open_free(o);
        o = parse("{\"control\":\"status\"}", &r);
        assert_int_equal(o->kind, SESSION_OPEN_STATUS);
        session_open_free(o);

        const char *bad[] = {
                "",
                "[]",
                "{\"argv\":[]}",
                "{\"argv\":[1]}",
                "{\"argv\":[\"\"]}",
                "{\"argv\":\"ls\"}",
                "{\"env\":{\"A=B\":\"x\"}}",
                "{\"env\":{\"\":\"x\"}}",
                "{\"env\":{\"A\":1}}",
                "{\"env\":5}",
                "{\"uid\":-1}",
                "{\"uid\":4294967295}",
                "{\"uid\":\"0\"}",
                "{\"root\":1}",
                "{\"rows\":70000}",
                "{\"cwd\":\"\"}",
                "{\"control\":\"reboot\"}",
                "{\"control\":\"stop\",\"timeout\":-2}",
                "{\"argv\":[\"a\\u0000b\"]}",
                "{\"a\":1,\"a\":2}",
        };
        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                o = parse(bad[i], &r);
                if (r >= 0)
                        fail_msg("accepted: %s", bad[i]);
                assert_null(o);
        }
}

static void test_status_and_exit(void **state) {
        (void)state;
        assert_int_equal(session_status_from_wait(7 << 8), 7);
        assert_int_equal(session_status_from_wait(SIGKILL), 128 + SIGKILL);
        int st;
        assert_int_equal(session_exit_parse("{\"status\":300}", 14, &st, NULL), -EBADMSG);
        assert_int_equal(session_exit_parse("{\"status\":\"0\"}", 14, &st, NULL), -EBADMSG);
        assert_int_equal(session_exit_parse("{}", 2, &st, NULL), -EBADMSG);
        assert_int_equal(session_error_parse("{\"code\":\"x\"}", 12, NULL, NULL), -EBADMSG);
}

static void test_path_inside(void **state) {
        (void)state;
        assert_true(session_path_inside("/home/alice", "/home/alice"));
        assert_true(session_path_inside("/home/alice/", "/home/alice"));
        assert_true(session_path_inside("/home/alice/src/x", "/home/alice/"));
        assert_true(session_path_inside("//home//alice/src", "/home/alice"));
        assert_false(session_path_inside("/home/al", "/home/alice"));
        assert_false(session_path_inside("/home/alice", "/home/al"));
        assert_false(session_path_inside("/home/alicex/y", "/home/alice"));
        assert_false(session_path_inside("/home/alice/../bob", "/home/alice"));
        assert_false(session_path_inside("/home/alice/./x", "/home/alice"));
        assert_false(session_path_inside("home/alice", "home/alice"));
        assert_false(session_path_inside("/tmp", "/home/alice"));
        assert_true(session_path_inside("/anything", "/"));
        assert_false(session_path_inside(NULL, "/"));
}

static void test_exec_env(void **state) {
        (void)state;
        char *extra[] = {"TERM=xterm", "LANG=C.UTF-8", "HOME=/elsewhere", "X=1", "X=2", "bad", "=v", NULL};
        _cleanup_strv_ char **e = session_exec_env("/home/u", "u", "/bin/bash", extra);
        assert_non_null(e);
        const char *want[] = {"HOME=/elsewhere",    "USER=u",     "LOGNAME=u",    "SHELL=/bin/bash",
                              ("PATH=" SESSION_PATH), "TERM=xterm", "LANG=C.UTF-8", "X=2"};
        assert_int_equal(strv_length(e), ELEMENTSOF(want));
        for (size_t i = 0; i < ELEMENTSOF(want); i++)
                assert_string_equal(e[i], want[i]);
}

/* The control client against a fake runtime on a socketpair-like listener. */
static void test_control_error(void **state) {
        (void)state;
        char dir[] = "/tmp/test-session-XXXXXX";
        assert_non_null(mkdtemp(dir));
        char path[128];
        snprintf(path, sizeof path, "%s/s.sock", dir);
        int l = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        strcpy(sa.sun_path, path);
        assert_int_equal(bind(l, (struct sockaddr *)&sa, sizeof sa), 0);
        assert_int_equal(listen(l, 4), 0);
        pid_t pid = fork();
        if (pid == 0) {
                for (int i = 0; i < 2; i++) {
                        int c = accept(l, NULL, NULL);
                        struct session_buf b = {0};
                        if (i == 0)
                                session_buf_error(&b, 1, "not-found", "container machine with ID x not found");
                        else {
                                json_t *j = json_pack("{s:i,s:s}", "status", 0, "state", "running");
                                session_buf_json(&b, 1, SESSION_EXIT, j);
                                json_decref(j);
                        }
                        session_buf_flush(&b, c);
                        close(c);
                }
                _exit(0);
        }
        struct cm_error *err = NULL;
        json_t *reply = NULL;
        assert_int_equal(session_control(path, "status", 0, 5000, &reply, &err), -CM_ENOTFOUND);
        assert_string_equal(err->message, "container machine with ID x not found");
        cm_error_free(err);
        err = NULL;
        assert_int_equal(session_control(path, "status", 0, 5000, &reply, &err), 0);
        assert_string_equal(json_get_str(reply, "state"), "running");
        json_decref(reply);
        waitpid(pid, NULL, 0);
        close(l);
        unlink(path);
        rmdir(dir);
        assert_true(session_connect(path) == -ENOENT);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_roundtrip),       cmocka_unit_test(test_partial_feeds),
                cmocka_unit_test(test_invalid_frames),  cmocka_unit_test(test_credit),
                cmocka_unit_test(test_sequencing),      cmocka_unit_test(test_open_parse),
                cmocka_unit_test(test_status_and_exit), cmocka_unit_test(test_path_inside),
                cmocka_unit_test(test_exec_env),        cmocka_unit_test(test_control_error),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
