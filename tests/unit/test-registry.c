/* Registry client: pure parsers, the HTTP layer against a scripted in-process server, and
 * pull/push end to end against Debian's docker-registry on 127.0.0.1 (skipped without it). */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <archive.h>
#include <archive_entry.h>
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "image/image.h"
#include "image/manifest.h"
#include "image/registry.h"
#include "image/store.h"
#include "util/digest.h"
#include "util/fs.h"
#include "util/strv.h"

#define REGISTRY_BIN "/usr/bin/docker-registry"
#define SKOPEO_BIN "/usr/bin/skopeo"

static double now_s(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return ts.tv_sec + ts.tv_nsec / 1e9;
}

static char *xasprintf(const char *fmt, ...) _printf_(1, 2);
static char *xasprintf(const char *fmt, ...) {
        va_list ap;
        va_start(ap, fmt);
        char *s = NULL;
        assert_true(vasprintf(&s, fmt, ap) >= 0);
        va_end(ap);
        return s;
}

static void write_file(const char *path, const void *data, size_t len) {
        int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        assert_true(fd >= 0);
        assert_int_equal(write(fd, data, len), (ssize_t)len);
        close(fd);
}

/* ================= pure parsers ================= */

static void test_challenge_bearer(void **state) {
        struct registry_challenge c;
        assert_int_equal(registry_challenge_parse("Bearer realm=\"https://auth.docker.io/token\",service=\"registry.docker.io\","
                                                  "scope=\"repository:library/alpine:pull,push\"",
                                                  &c),
                         0);
        assert_string_equal(c.scheme, "Bearer");
        assert_string_equal(c.realm, "https://auth.docker.io/token");
        assert_string_equal(c.service, "registry.docker.io");
        assert_string_equal(c.scope, "repository:library/alpine:pull,push");
        assert_null(c.error);
        registry_challenge_done(&c);

        /* spaces, case, unquoted values, escapes, an error parameter */
        assert_int_equal(registry_challenge_parse("  bearer  REALM = \"http://h/t?a=1\" , Service=svc,"
                                                  " error=\"insufficient_scope\", scope=\"a \\\"q\\\" b\"",
                                                  &c),
                         0);
        assert_string_equal(c.scheme, "bearer");
        assert_string_equal(c.realm, "http://h/t?a=1");
        assert_string_equal(c.service, "svc");
        assert_string_equal(c.error, "insufficient_scope");
        assert_string_equal(c.scope, "a \"q\" b");
        registry_challenge_done(&c);
}

static void test_challenge_other(void **state) {
        struct registry_challenge c;
        assert_int_equal(registry_challenge_parse("Basic realm=\"Registry Realm\"", &c), 0);
        assert_string_equal(c.scheme, "Basic");
        assert_string_equal(c.realm, "Registry Realm");
        assert_null(c.service);
        registry_challenge_done(&c);

        /* two challenges in one header: the first one counts */
        assert_int_equal(registry_challenge_parse("Basic realm=\"r1\", Bearer realm=\"r2\"", &c), 0);
        assert_string_equal(c.scheme, "Basic");
        assert_string_equal(c.realm, "r1");
        registry_challenge_done(&c);

        assert_int_equal(registry_challenge_parse("Bearer", &c), 0);
        assert_string_equal(c.scheme, "Bearer");
        assert_null(c.realm);
        registry_challenge_done(&c);

        assert_int_equal(registry_challenge_parse("Bearer realm=\"unterminated", &c), -EINVAL);
        assert_int_equal(registry_challenge_parse("", &c), -EINVAL);
        assert_int_equal(registry_challenge_parse("   ", &c), -EINVAL);
}

static void test_base_url(void **state) {
        char *u;
        char *insecure[] = {"reg.lan:5000", "plain.example", NULL};
        struct {
                const char *in, *out;
        } t[] = {
                {"docker.io", "https://registry-1.docker.io"},
                {"index.docker.io", "https://registry-1.docker.io"},
                {"localhost:5000", "http://localhost:5000"},
                {"localhost", "http://localhost"},
                {"127.0.0.1:5000", "http://127.0.0.1:5000"},
                {"127.9.8.7", "http://127.9.8.7"},
                {"[::1]:5000", "http://[::1]:5000"},
                {"128.0.0.1:5000", "https://128.0.0.1:5000"},
                {"ghcr.io", "https://ghcr.io"},
                {"reg.lan:5000", "http://reg.lan:5000"},
                {"reg.lan:5001", "https://reg.lan:5001"},
                {"plain.example:444", "http://plain.example:444"},
                {"localhost.evil.com", "https://localhost.evil.com"},
        };
        for (size_t i = 0; i < ELEMENTSOF(t); i++) {
                assert_int_equal(registry_base_url(t[i].in, insecure, &u), 0);
                assert_string_equal(u, t[i].out);
                free(u);
        }
        assert_int_equal(registry_base_url("a/b", NULL, &u), -EINVAL);
        assert_int_equal(registry_base_url("", NULL, &u), -EINVAL);
        assert_int_equal(registry_base_url("h@evil", NULL, &u), -EINVAL);
}

static void test_urls(void **state) {
        char *u;
        assert_int_equal(registry_url("http://127.0.0.1:5000", "x/y", "manifests", "1", &u), 0);
        assert_string_equal(u, "http://127.0.0.1:5000/v2/x/y/manifests/1");
        free(u);
        assert_int_equal(registry_url("https://r/", "library/alpine", "blobs",
                                      "sha256:0000000000000000000000000000000000000000000000000000000000000000", &u),
                         0);
        assert_string_equal(u, "https://r/v2/library/alpine/blobs/"
                               "sha256:0000000000000000000000000000000000000000000000000000000000000000");
        free(u);
        assert_int_equal(registry_url("https://r", "../x", "manifests", "1", &u), -EINVAL);
        assert_int_equal(registry_url("https://r", "x", "manifests", "1/../../2", &u), -EINVAL);
        assert_int_equal(registry_url("https://r", "X", "manifests", "1", &u), -EINVAL);
        assert_int_equal(registry_url("https://r", "x", "manifests", "a?b", &u), -EINVAL);

        struct registry_challenge c = {.realm = "https://auth.docker.io/token", .service = "registry.docker.io"};
        assert_int_equal(registry_token_url(&c, "repository:library/alpine:pull", &u), 0);
        assert_string_equal(u, "https://auth.docker.io/token?service=registry.docker.io"
                               "&scope=repository%3Alibrary%2Falpine%3Apull");
        free(u);
        c = (struct registry_challenge){.realm = "http://h/t?x=1", .scope = "repository:a:pull repository:b:pull,push"};
        assert_int_equal(registry_token_url(&c, "ignored", &u), 0);
        assert_string_equal(u, "http://h/t?x=1&scope=repository%3Aa%3Apull&scope=repository%3Ab%3Apull%2Cpush");
        free(u);
        c = (struct registry_challenge){.realm = "file:///etc/passwd"};
        assert_int_equal(registry_token_url(&c, NULL, &u), -EINVAL);
        c = (struct registry_challenge){0};
        assert_int_equal(registry_token_url(&c, NULL, &u), -EINVAL);

        assert_int_equal(registry_resolve_location("http://127.0.0.1:5000/v2/x/blobs/uploads/",
                                                   "/v2/x/blobs/uploads/abc?_state=s%3D", &u),
                         0);
        assert_string_equal(u, "http://127.0.0.1:5000/v2/x/blobs/uploads/abc?_state=s%3D");
        free(u);
        assert_int_equal(registry_resolve_location("http://a/v2/x/blobs/uploads/", "uuid1", &u), 0);
        assert_string_equal(u, "http://a/v2/x/blobs/uploads/uuid1");
        free(u);
        assert_int_equal(registry_resolve_location("http://a/v2/", "https://b/upload?x=1", &u), 0);
        assert_string_equal(u, "https://b/upload?x=1");
        free(u);
}

static void test_auth_lookup(void **state) {
        char dir[] = "/tmp/test-registry-auth-XXXXXX";
        assert_non_null(mkdtemp(dir));
        _cleanup_free_ char *path = xasprintf("%s/auth.json", dir);
        const char *json = "{\"auths\":{\"127.0.0.1:5000\":{\"auth\":\"YWxpY2U6c2VjcmV0\"},"
                           "\"https://index.docker.io/v1/\":{\"auth\":\"aHViOnB3\"},"
                           "\"other:1\":{\"username\":\"u\",\"password\":\"p\"}}}";
        write_file(path, json, strlen(json));
        char *a;
        struct cm_error *err = NULL;
        assert_int_equal(registry_auth_lookup(path, "127.0.0.1:5000", &a, &err), 0);
        assert_string_equal(a, "YWxpY2U6c2VjcmV0");
        free(a);
        assert_int_equal(registry_auth_lookup(path, "docker.io", &a, &err), 0);
        assert_string_equal(a, "aHViOnB3");
        free(a);
        assert_int_equal(registry_auth_lookup(path, "other:1", &a, &err), 0);
        assert_string_equal(a, "dTpw"); /* base64("u:p") */
        free(a);
        assert_int_equal(registry_auth_lookup(path, "127.0.0.1:5001", &a, &err), 0);
        assert_null(a);
        assert_int_equal(registry_auth_lookup(NULL, "x", &a, &err), 0);
        assert_null(a);
        _cleanup_free_ char *missing = xasprintf("%s/nope.json", dir);
        assert_int_equal(registry_auth_lookup(missing, "x", &a, &err), 0);
        assert_null(a);
        write_file(path, "{nope", 5);
        assert_true(registry_auth_lookup(path, "x", &a, &err) < 0);
        assert_non_null(err);
        cm_error_free(err);
        fs_rm_rf(AT_FDCWD, dir);
}

/* ================= a scripted HTTP server ================= */

struct fake;
typedef void (*fake_handler)(struct fake *f, const char *req, int fd);

struct fake {
        int lfd, port;
        pthread_t thread;
        atomic_bool stop;
        fake_handler handler;
        atomic_int requests;
        atomic_int token_requests;
        int mode;
        const char *blob;
        size_t blob_len;
        char blob_digest[DIGEST_STR_MAX];
        bool saw_basic;
};

static void sendall(int fd, const void *data, size_t len) {
        const char *p = data;
        while (len > 0) {
                ssize_t k = send(fd, p, len, MSG_NOSIGNAL);
                if (k <= 0)
                        return;
                p += k;
                len -= (size_t)k;
        }
}

static void reply(int fd, const char *status, const char *headers, const char *body) {
        char *r = xasprintf("HTTP/1.1 %s\r\nConnection: close\r\nContent-Length: %zu\r\n%s\r\n%s", status,
                            strlen(body), headers ? headers : "", body);
        sendall(fd, r, strlen(r));
        free(r);
}

static void *fake_thread(void *p) {
        struct fake *f = p;
        while (!atomic_load(&f->stop)) {
                struct pollfd pfd = {.fd = f->lfd, .events = POLLIN};
                if (poll(&pfd, 1, 50) <= 0)
                        continue;
                int cfd = accept4(f->lfd, NULL, NULL, SOCK_CLOEXEC);
                if (cfd < 0)
                        continue;
                char buf[8192];
                size_t n = 0;
                while (n < sizeof(buf) - 1) {
                        ssize_t k = recv(cfd, buf + n, sizeof(buf) - 1 - n, 0);
                        if (k <= 0)
                                break;
                        n += (size_t)k;
                        buf[n] = 0;
                        if (strstr(buf, "\r\n\r\n"))
                                break;
                }
                buf[n] = 0;
                atomic_fetch_add(&f->requests, 1);
                f->handler(f, buf, cfd);
                close(cfd);
        }
        return NULL;
}

static int listen_any(int *ret_port) {
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        assert_true(fd >= 0);
        struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
        assert_int_equal(listen(fd, 16), 0);
        socklen_t l = sizeof(a);
        assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &l), 0);
        *ret_port = ntohs(a.sin_port);
        return fd;
}

static void fake_start(struct fake *f, fake_handler h) {
        f->lfd = listen_any(&f->port);
        f->handler = h;
        atomic_init(&f->stop, false);
        atomic_init(&f->requests, 0);
        atomic_init(&f->token_requests, 0);
        assert_int_equal(pthread_create(&f->thread, NULL, fake_thread, f), 0);
}

static void fake_stop(struct fake *f) {
        atomic_store(&f->stop, true);
        pthread_join(f->thread, NULL);
        close(f->lfd);
}

static bool starts(const char *s, const char *prefix) { return strncmp(s, prefix, strlen(prefix)) == 0; }

static const char fake_manifest[] = "{\"schemaVersion\":2,\"mediaType\":\"" MT_OCI_MANIFEST "\",\"config\":{}}";

static void bearer_handler(struct fake *f, const char *req, int fd) {
        bool authed = strstr(req, "Authorization: Bearer tok-123\r\n");
        if (starts(req, "GET /token?")) {
                atomic_fetch_add(&f->token_requests, 1);
                if (!strstr(req, "service=fake.svc") || !strstr(req, "scope=repository%3Ax%2Fy%3Apull")) {
                        reply(fd, "400 Bad Request", NULL, "");
                        return;
                }
                f->saw_basic = strstr(req, "Authorization: Basic YWxpY2U6c2VjcmV0\r\n");
                /* some token servers say access_token */
                reply(fd, "200 OK", "Content-Type: application/json\r\n", "{\"access_token\":\"tok-123\"}");
                return;
        }
        if (!authed) {
                char *h = xasprintf("WWW-Authenticate: Bearer realm=\"http://127.0.0.1:%d/token\",service=\"fake.svc\""
                                    "%s\r\nContent-Type: application/json\r\n",
                                    f->port, starts(req, "GET /v2/ ") ? "" : ",scope=\"repository:x/y:pull\"");
                reply(fd, "401 Unauthorized", h,
                      "{\"errors\":[{\"code\":\"UNAUTHORIZED\",\"message\":\"authentication required\"}]}");
                free(h);
                return;
        }
        if (starts(req, "GET /v2/ "))
                reply(fd, "200 OK", NULL, "{}");
        else if (starts(req, "GET /v2/x/y/manifests/1 ")) {
                if (!strstr(req, "Accept: ") || !strstr(req, MT_OCI_MANIFEST) || !strstr(req, MT_DOCKER_LIST))
                        reply(fd, "404 Not Found", NULL, "");
                else
                        reply(fd, "200 OK", "Content-Type: " MT_OCI_MANIFEST "; charset=utf-8\r\n", fake_manifest);
        } else
                reply(fd, "404 Not Found", NULL,
                      "{\"errors\":[{\"code\":\"MANIFEST_UNKNOWN\",\"message\":\"manifest unknown\"}]}");
}

static void test_bearer_flow(void **state) {
        struct fake f = {0};
        fake_start(&f, bearer_handler);
        char dir[] = "/tmp/test-registry-tok-XXXXXX";
        assert_non_null(mkdtemp(dir));
        _cleanup_free_ char *auth = xasprintf("%s/auth.json", dir);
        _cleanup_free_ char *json = xasprintf("{\"auths\":{\"127.0.0.1:%d\":{\"auth\":\"YWxpY2U6c2VjcmV0\"}}}", f.port);
        write_file(auth, json, strlen(json));

        for (int with_creds = 0; with_creds < 2; with_creds++) {
                struct registry_options ro = {.timeout_sec = 5, .auth_file = with_creds ? auth : NULL};
                _cleanup_free_ char *host = xasprintf("127.0.0.1:%d", f.port);
                struct registry_client *c = NULL;
                struct cm_error *err = NULL;
                assert_int_equal(registry_client_new(&ro, host, "x/y", false, &c, &err), 0);
                atomic_store(&f.token_requests, 0);
                char *data = NULL, *mt = NULL;
                size_t len = 0;
                char dg[DIGEST_STR_MAX], want[DIGEST_STR_MAX];
                int r = registry_get_manifest(c, "1", &data, &len, &mt, dg, &err);
                if (r < 0)
                        fail_msg("%s", err->message);
                assert_int_equal(len, strlen(fake_manifest));
                assert_memory_equal(data, fake_manifest, len);
                assert_string_equal(mt, MT_OCI_MANIFEST);
                digest_buffer(fake_manifest, strlen(fake_manifest), want);
                assert_string_equal(dg, want);
                free(data);
                free(mt);
                /* one token, fetched at the ping and reused */
                assert_int_equal(atomic_load(&f.token_requests), 1);
                assert_int_equal(f.saw_basic, with_creds);

                /* by digest: verified */
                assert_int_equal(registry_get_manifest(c, "sha256:0000000000000000000000000000000000000000000000000000000000000000",
                                                       &data, &len, &mt, dg, &err),
                                 -ENOENT);
                assert_string_equal(err->message, "manifest unknown");
                cm_error_free(err);
                registry_client_free(c);
        }
        fake_stop(&f);
        fs_rm_rf(AT_FDCWD, dir);
}

struct memsink {
        char *p;
        size_t n;
        int resets, retries;
};
static void mem_retrying(void *ud, uint64_t cur, uint64_t total) { ((struct memsink *)ud)->retries++; }
static int mem_write(void *ud, const void *d, size_t l, struct cm_error **err) {
        struct memsink *m = ud;
        char *np = realloc(m->p, m->n + l);
        if (!np)
                return -ENOMEM;
        m->p = np;
        memcpy(m->p + m->n, d, l);
        m->n += l;
        return 0;
}
static uint64_t mem_size(void *ud) { return ((struct memsink *)ud)->n; }
static int mem_reset(void *ud) {
        struct memsink *m = ud;
        m->n = 0;
        m->resets++;
        return 0;
}

/* mode 0: cut the first response in the middle, honour Range. 1: cut it, ignore Range.
 * 2: 503 twice, then the blob. */
static void blob_handler(struct fake *f, const char *req, int fd) {
        if (starts(req, "GET /v2/ ")) {
                reply(fd, "200 OK", NULL, "{}");
                return;
        }
        char path[200];
        snprintf(path, sizeof(path), "GET /v2/x/y/blobs/%s ", f->blob_digest);
        if (!starts(req, path)) {
                reply(fd, "404 Not Found", NULL, "");
                return;
        }
        int n = atomic_load(&f->requests); /* 1 was the ping */
        const char *range = strstr(req, "Range: bytes=");
        if (f->mode == 2 && n <= 3) {
                reply(fd, "503 Service Unavailable", NULL, "busy");
                return;
        }
        if (f->mode < 2 && n == 2) {
                char *h = xasprintf("HTTP/1.1 200 OK\r\nContent-Length: %zu\r\n\r\n", f->blob_len);
                sendall(fd, h, strlen(h));
                free(h);
                sendall(fd, f->blob, f->blob_len / 2);
                return; /* connection closes early */
        }
        if (range && f->mode == 0) {
                size_t from = strtoul(range + 13, NULL, 10);
                char *h = xasprintf("HTTP/1.1 206 Partial Content\r\nContent-Length: %zu\r\n"
                                    "Content-Range: bytes %zu-%zu/%zu\r\n\r\n",
                                    f->blob_len - from, from, f->blob_len - 1, f->blob_len);
                sendall(fd, h, strlen(h));
                free(h);
                sendall(fd, f->blob + from, f->blob_len - from);
                return;
        }
        char *h = xasprintf("HTTP/1.1 200 OK\r\nContent-Length: %zu\r\n\r\n", f->blob_len);
        sendall(fd, h, strlen(h));
        free(h);
        sendall(fd, f->blob, f->blob_len);
}

static void test_blob_resume(void **state) {
        size_t len = 3 * 1024 * 1024 + 17;
        char *blob = malloc(len);
        assert_non_null(blob);
        for (size_t i = 0; i < len; i++)
                blob[i] = (char)(i * 7 + i / 4096);
        for (int mode = 0; mode < 3; mode++) {
                struct fake f = {.blob = blob, .blob_len = len, .mode = mode};
                digest_buffer(blob, len, f.blob_digest);
                fake_start(&f, blob_handler);
                _cleanup_free_ char *host = xasprintf("127.0.0.1:%d", f.port);
                struct registry_options ro = {.timeout_sec = 5};
                struct registry_client *c = NULL;
                struct cm_error *err = NULL;
                assert_int_equal(registry_client_new(&ro, host, "x/y", false, &c, &err), 0);
                struct memsink m = {0};
                struct registry_sink sink = {.write = mem_write, .size = mem_size, .reset = mem_reset,
                                             .retrying = mem_retrying, .userdata = &m};
                int r = registry_get_blob(c, f.blob_digest, (int64_t)len, &sink, &err);
                if (r < 0)
                        fail_msg("mode %d: %s", mode, err->message);
                assert_int_equal(m.n, len);
                assert_memory_equal(m.p, blob, len);
                assert_int_equal(m.resets, mode == 1 ? 1 : 0);
                assert_int_equal(m.retries, mode == 2 ? 2 : 1);
                assert_int_equal(atomic_load(&f.requests), mode == 2 ? 4 : 3);
                free(m.p);
                registry_client_free(c);
                fake_stop(&f);
        }
        free(blob);
}

static void test_timeout(void **state) {
        /* listens (the kernel completes the handshake) but nobody ever answers */
        int port;
        int lfd = listen_any(&port);
        _cleanup_free_ char *host = xasprintf("127.0.0.1:%d", port);
        struct registry_options ro = {.timeout_sec = 1};
        struct registry_client *c = NULL;
        struct cm_error *err = NULL;
        assert_int_equal(registry_client_new(&ro, host, "x/y", false, &c, &err), 0);
        char *data, *mt;
        size_t len;
        char dg[DIGEST_STR_MAX];
        double t0 = now_s();
        assert_int_equal(registry_get_manifest(c, "1", &data, &len, &mt, dg, &err), -ETIMEDOUT);
        double dt = now_s() - t0;
        _cleanup_free_ char *want = xasprintf("registry %s timed out", host);
        assert_string_equal(err->message, want);
        assert_true(dt >= 0.9 && dt < 3.5);
        cm_error_free(err);
        registry_client_free(c);
        close(lfd);
}

static void manifest_handler(struct fake *f, const char *req, int fd) {
        if (starts(req, "GET /v2/ "))
                reply(fd, "200 OK", NULL, "{}");
        else if (starts(req, "GET /v2/library/busybox/manifests/latest "))
                reply(fd, "200 OK", "Content-Type: " MT_OCI_MANIFEST "\r\n", fake_manifest);
        else
                reply(fd, "404 Not Found", NULL, "");
}

static void test_mirror_fallback(void **state) {
        /* a mirror that refuses connections, then one that works: docker.io itself is never
         * contacted */
        int dead_port;
        close(listen_any(&dead_port));
        struct fake f = {0};
        fake_start(&f, manifest_handler);
        char *m1 = xasprintf("http://127.0.0.1:%d", dead_port), *m2 = xasprintf("http://127.0.0.1:%d/", f.port);
        char *mirrors[] = {m1, m2, NULL};
        struct registry_options ro = {.timeout_sec = 5, .mirrors = mirrors};
        struct registry_client *c = NULL;
        struct cm_error *err = NULL;
        assert_int_equal(registry_client_new(&ro, "docker.io", "library/busybox", false, &c, &err), 0);
        char *data = NULL, *mt = NULL;
        size_t len;
        char dg[DIGEST_STR_MAX];
        int r = registry_get_manifest(c, "latest", &data, &len, &mt, dg, &err);
        if (r < 0)
                fail_msg("%s", err->message);
        assert_memory_equal(data, fake_manifest, len);
        free(data);
        free(mt);
        registry_client_free(c);
        fake_stop(&f);
        free(m1);
        free(m2);
}

/* ================= end to end against docker-registry ================= */

struct reg {
        pid_t pid;
        int port;
        char *dir;     /* temp dir: config, storage */
        char *storage; /* rootdirectory */
        char *host;    /* 127.0.0.1:port */
};

static int free_port(void) {
        int port;
        close(listen_any(&port));
        return port;
}

static bool port_answers(int port) {
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port),
                                .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        bool ok = connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0;
        close(fd);
        return ok;
}

/* htpasswd line for alice:secret (bcrypt, cost 4: the registry checks it on every request) */
#define HTPASSWD "alice:$2b$04$TDiL/d5bnyJjGzlCw75B6.6GADdRqboBx1fG6veh7CE0VCGQTOIIe\n"

static int reg_start(struct reg *g, bool with_auth) {
        char tmpl[] = "/tmp/test-registry-reg-XXXXXX";
        assert_non_null(mkdtemp(tmpl));
        g->dir = strdup(tmpl);
        g->storage = xasprintf("%s/storage", g->dir);
        g->port = free_port();
        g->host = xasprintf("127.0.0.1:%d", g->port);
        _cleanup_free_ char *htpasswd = xasprintf("%s/htpasswd", g->dir);
        write_file(htpasswd, HTPASSWD, strlen(HTPASSWD));
        _cleanup_free_ char *auth = with_auth ? xasprintf("auth:\n  htpasswd:\n    realm: test\n    path: %s\n", htpasswd)
                                              : strdup("");
        _cleanup_free_ char *cfg = xasprintf("version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n"
                                             "    rootdirectory: %s\nhttp:\n  addr: 127.0.0.1:%d\n%s",
                                             g->storage, g->port, auth);
        _cleanup_free_ char *cfg_path = xasprintf("%s/config.yml", g->dir);
        write_file(cfg_path, cfg, strlen(cfg));
        g->pid = fork();
        assert_true(g->pid >= 0);
        if (g->pid == 0) {
                prctl(PR_SET_PDEATHSIG, SIGTERM);
                int nul = open("/dev/null", O_RDWR);
                dup2(nul, 1);
                dup2(nul, 2);
                execl(REGISTRY_BIN, REGISTRY_BIN, "serve", cfg_path, (char *)NULL);
                _exit(127);
        }
        for (int i = 0; i < 500; i++) {
                if (port_answers(g->port))
                        return 0;
                usleep(10000);
        }
        return -ETIMEDOUT;
}

static void reg_stop(struct reg *g) {
        if (g->pid > 0) {
                kill(g->pid, SIGTERM);
                waitpid(g->pid, NULL, 0);
        }
        if (g->dir)
                fs_rm_rf(AT_FDCWD, g->dir);
        free(g->dir);
        free(g->storage);
        free(g->host);
        *g = (struct reg){0};
}

/* ---- building a small OCI image layout ---- */

struct file_spec {
        const char *path;
        const char *content; /* NULL: directory */
};

struct built_layer {
        char digest[DIGEST_STR_MAX], diff_id[DIGEST_STR_MAX];
        size_t size;
};

static void tar_build(const struct file_spec *files, size_t n, bool gzip, char **ret, size_t *ret_len) {
        size_t cap = 1024 * 1024;
        char *buf = malloc(cap);
        size_t used = 0;
        struct archive *a = archive_write_new();
        archive_write_set_format_pax_restricted(a);
        if (gzip)
                archive_write_add_filter_gzip(a);
        archive_write_set_bytes_in_last_block(a, 1);
        assert_int_equal(archive_write_open_memory(a, buf, cap, &used), ARCHIVE_OK);
        for (size_t i = 0; i < n; i++) {
                struct archive_entry *e = archive_entry_new();
                archive_entry_set_pathname(e, files[i].path);
                archive_entry_set_mtime(e, 1700000000, 0);
                if (files[i].content) {
                        archive_entry_set_filetype(e, AE_IFREG);
                        archive_entry_set_perm(e, 0644);
                        archive_entry_set_size(e, (la_int64_t)strlen(files[i].content));
                } else {
                        archive_entry_set_filetype(e, AE_IFDIR);
                        archive_entry_set_perm(e, 0755);
                }
                assert_int_equal(archive_write_header(a, e), ARCHIVE_OK);
                if (files[i].content)
                        archive_write_data(a, files[i].content, strlen(files[i].content));
                archive_entry_free(e);
        }
        assert_int_equal(archive_write_close(a), ARCHIVE_OK);
        archive_write_free(a);
        *ret = buf;
        *ret_len = used;
}

static void layout_put(const char *layout, const void *data, size_t len, char digest[DIGEST_STR_MAX]) {
        digest_buffer(data, len, digest);
        _cleanup_free_ char *p = xasprintf("%s/blobs/sha256/%s", layout, digest_hex(digest));
        write_file(p, data, len);
}

/* Writes an OCI layout with one image (tag) of the given layers (each a file list); returns the
 * manifest digest. gzip for all but the first layer (which stays a plain tar). */
static void layout_build_arch(const char *layout, const char *tag, const char *arch,
                              const struct file_spec *const *layers, const size_t *n_files, size_t n_layers,
                              char ret_digest[DIGEST_STR_MAX], size_t *ret_size) {
        _cleanup_free_ char *blobs = xasprintf("%s/blobs/sha256", layout);
        assert_int_equal(fs_mkdir_p(AT_FDCWD, blobs, 0755), 0);
        _cleanup_free_ char *ol = xasprintf("%s/oci-layout", layout);
        write_file(ol, "{\"imageLayoutVersion\":\"1.0.0\"}", 30);

        _cleanup_free_ char *layers_json = strdup(""), *diffs_json = strdup("");
        for (size_t i = 0; i < n_layers; i++) {
                struct built_layer bl;
                char *plain, *gz;
                size_t plain_len, gz_len;
                tar_build(layers[i], n_files[i], false, &plain, &plain_len);
                digest_buffer(plain, plain_len, bl.diff_id);
                bool compress = i > 0;
                if (compress) {
                        tar_build(layers[i], n_files[i], true, &gz, &gz_len);
                        layout_put(layout, gz, gz_len, bl.digest);
                        bl.size = gz_len;
                        free(gz);
                } else {
                        layout_put(layout, plain, plain_len, bl.digest);
                        bl.size = plain_len;
                }
                free(plain);
                char *n1 = xasprintf("%s%s{\"mediaType\":\"%s\",\"digest\":\"%s\",\"size\":%zu}", layers_json,
                                     i ? "," : "", compress ? MT_OCI_LAYER_GZIP : MT_OCI_LAYER, bl.digest, bl.size);
                char *n2 = xasprintf("%s%s\"%s\"", diffs_json, i ? "," : "", bl.diff_id);
                free(layers_json);
                free(diffs_json);
                layers_json = n1;
                diffs_json = n2;
        }
        _cleanup_free_ char *config = xasprintf(
                "{\"architecture\":\"%s\",\"os\":\"linux\",\"config\":{\"Cmd\":[\"/bin/sh\"]},"
                "\"rootfs\":{\"type\":\"layers\",\"diff_ids\":[%s]}}",
                arch, diffs_json);
        char cdig[DIGEST_STR_MAX];
        layout_put(layout, config, strlen(config), cdig);
        _cleanup_free_ char *manifest = xasprintf(
                "{\"schemaVersion\":2,\"mediaType\":\"" MT_OCI_MANIFEST "\",\"config\":{\"mediaType\":\"" MT_OCI_CONFIG
                "\",\"digest\":\"%s\",\"size\":%zu},\"layers\":[%s]}",
                cdig, strlen(config), layers_json);
        layout_put(layout, manifest, strlen(manifest), ret_digest);
        if (ret_size)
                *ret_size = strlen(manifest);
        _cleanup_free_ char *index = xasprintf(
                "{\"schemaVersion\":2,\"manifests\":[{\"mediaType\":\"" MT_OCI_MANIFEST "\",\"digest\":\"%s\","
                "\"size\":%zu,\"annotations\":{\"org.opencontainers.image.ref.name\":\"%s\"}}]}",
                ret_digest, strlen(manifest), tag);
        _cleanup_free_ char *ip = xasprintf("%s/index.json", layout);
        write_file(ip, index, strlen(index));
}

static void layout_build(const char *layout, const char *tag, const struct file_spec *const *layers,
                         const size_t *n_files, size_t n_layers, char ret_digest[DIGEST_STR_MAX]) {
        layout_build_arch(layout, tag, oci_host_arch(), layers, n_files, n_layers, ret_digest, NULL);
}

static int run_cmd(const char *const argv[]) {
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
                int nul = open("/dev/null", O_RDWR);
                dup2(nul, 1);
                dup2(nul, 2);
                execv(argv[0], (char *const *)argv);
                _exit(127);
        }
        int st;
        waitpid(pid, &st, 0);
        return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
}

/* skopeo copy oci:LAYOUT:TAG docker://HOST/REPO:TAG */
static void skopeo_push(const char *layout, const char *tag, const char *host, const char *repo, const char *creds) {
        /* --preserve-digests: skopeo would otherwise compress our plain tar layer */
        _cleanup_free_ char *src = xasprintf("oci:%s:%s", layout, tag);
        _cleanup_free_ char *dst = xasprintf("docker://%s/%s:%s", host, repo, tag);
        const char *argv[] = {SKOPEO_BIN, "copy", "-q", "--all", "--preserve-digests", "--dest-tls-verify=false", src, dst, NULL, NULL, NULL, NULL};
        if (creds) {
                argv[8] = "--dest-creds";
                argv[9] = creds;
        }
        assert_int_equal(run_cmd(argv), 0);
}

struct e2e {
        struct reg reg;
        char *tmp;
        char *layout;
        char digest[DIGEST_STR_MAX];     /* x/y:1 */
        char bad_digest[DIGEST_STR_MAX]; /* x/bad:1 */
        char *bad_layer;                 /* digest of x/bad's own layer */
        char multi[DIGEST_STR_MAX];      /* x/multi:1, an index of two platforms */
        char multi_host[DIGEST_STR_MAX], multi_other[DIGEST_STR_MAX];
        const char *other_arch;
};

static const struct file_spec layer0[] = {{"bin/", NULL}, {"etc/", NULL}, {"etc/hello", "hello\n"},
                                          {"etc/os-release", "ID=test\n"}};
static const struct file_spec layer1[] = {{"etc/", NULL}, {"etc/second", "second layer\n"}};
static const struct file_spec layer2[] = {{"etc/", NULL}, {"etc/hello", "hello again\n"}, {"srv/", NULL},
                                          {"srv/data", "some data in the third layer\n"}};
static const struct file_spec bad_layer[] = {{"etc/", NULL}, {"etc/bad", "this layer will be corrupted\n"}};

static int e2e_setup(void **state) {
        if (access(REGISTRY_BIN, X_OK) < 0 || access(SKOPEO_BIN, X_OK) < 0) {
                *state = NULL;
                return 0;
        }
        struct e2e *t = calloc(1, sizeof(*t));
        char tmpl[] = "/tmp/test-registry-e2e-XXXXXX";
        assert_non_null(mkdtemp(tmpl));
        t->tmp = strdup(tmpl);
        t->layout = xasprintf("%s/layout", t->tmp);
        assert_int_equal(reg_start(&t->reg, false), 0);

        const struct file_spec *const ls[] = {layer0, layer1, layer2};
        const size_t ns[] = {ELEMENTSOF(layer0), ELEMENTSOF(layer1), ELEMENTSOF(layer2)};
        layout_build(t->layout, "1", ls, ns, 3, t->digest);
        skopeo_push(t->layout, "1", t->reg.host, "x/y", NULL);

        _cleanup_free_ char *bad_layout = xasprintf("%s/bad-layout", t->tmp);
        const struct file_spec *const bls[] = {layer0, bad_layer};
        const size_t bns[] = {ELEMENTSOF(layer0), ELEMENTSOF(bad_layer)};
        layout_build(bad_layout, "1", bls, bns, 2, t->bad_digest);
        skopeo_push(bad_layout, "1", t->reg.host, "x/bad", NULL);
        /* find the bad image's own layer (the second) */
        _cleanup_free_ char *mp = xasprintf("%s/blobs/sha256/%s", bad_layout, digest_hex(t->bad_digest));
        _cleanup_free_ char *m = NULL;
        size_t ml;
        assert_int_equal(fs_read_all(AT_FDCWD, mp, 0, &m, &ml), 0);
        struct oci_manifest *om = NULL;
        assert_int_equal(oci_manifest_parse(m, ml, &om, NULL), 0);
        t->bad_layer = strdup(om->layers[1].digest);
        oci_manifest_free(om);

        /* a multi-platform index: the host's architecture and another one */
        _cleanup_free_ char *multi = xasprintf("%s/multi-layout", t->tmp);
        t->other_arch = streq(oci_host_arch(), "amd64") ? "arm64" : "amd64";
        const struct file_spec *const mh[] = {layer0, layer1}, *const mo[] = {layer0, layer2};
        const size_t mhn[] = {ELEMENTSOF(layer0), ELEMENTSOF(layer1)}, mon[] = {ELEMENTSOF(layer0), ELEMENTSOF(layer2)};
        size_t sh, so;
        layout_build_arch(multi, "h", oci_host_arch(), mh, mhn, 2, t->multi_host, &sh);
        layout_build_arch(multi, "o", t->other_arch, mo, mon, 2, t->multi_other, &so);
        _cleanup_free_ char *idx = xasprintf(
                "{\"schemaVersion\":2,\"mediaType\":\"" MT_OCI_INDEX "\",\"manifests\":["
                "{\"mediaType\":\"" MT_OCI_MANIFEST "\",\"digest\":\"%s\",\"size\":%zu,"
                "\"platform\":{\"architecture\":\"%s\",\"os\":\"linux\"}},"
                "{\"mediaType\":\"" MT_OCI_MANIFEST "\",\"digest\":\"%s\",\"size\":%zu,"
                "\"platform\":{\"architecture\":\"%s\",\"os\":\"linux\"}}]}",
                t->multi_other, so, t->other_arch, t->multi_host, sh, oci_host_arch());
        layout_put(multi, idx, strlen(idx), t->multi);
        _cleanup_free_ char *top = xasprintf(
                "{\"schemaVersion\":2,\"manifests\":[{\"mediaType\":\"" MT_OCI_INDEX "\",\"digest\":\"%s\","
                "\"size\":%zu,\"annotations\":{\"org.opencontainers.image.ref.name\":\"1\"}}]}",
                t->multi, strlen(idx));
        _cleanup_free_ char *ip = xasprintf("%s/index.json", multi);
        write_file(ip, top, strlen(top));
        skopeo_push(multi, "1", t->reg.host, "x/multi", NULL);
        *state = t;
        return 0;
}

static int e2e_teardown(void **state) {
        struct e2e *t = *state;
        if (!t)
                return 0;
        reg_stop(&t->reg);
        fs_rm_rf(AT_FDCWD, t->tmp);
        free(t->tmp);
        free(t->layout);
        free(t->bad_layer);
        free(t);
        return 0;
}

#define NEED_E2E(t)                                                                                            \
        do {                                                                                                   \
                if (!(t)) {                                                                                    \
                        print_message("skipped: needs " REGISTRY_BIN " and " SKOPEO_BIN " (Debian packages " \
                                      "docker-registry, skopeo)\n");                                           \
                        skip();                                                                                \
                }                                                                                              \
        } while (0)

struct progress_log {
        pthread_mutex_t lock;
        int downloading, exists, unpacking, done, verifying;
};

static void progress_cb(void *ud, const char *id, const char *status, uint64_t cur, uint64_t total) {
        struct progress_log *p = ud;
        pthread_mutex_lock(&p->lock);
        if (streq(status, "downloading"))
                p->downloading++;
        else if (streq(status, "exists"))
                p->exists++;
        else if (streq(status, "unpacking"))
                p->unpacking++;
        else if (streq(status, "done"))
                p->done++;
        else if (streq(status, "verifying"))
                p->verifying++;
        pthread_mutex_unlock(&p->lock);
}

static struct image_store *store_new(const struct e2e *t, const char *name) {
        _cleanup_free_ char *root = xasprintf("%s/%s", t->tmp, name);
        struct image_store *s = NULL;
        struct cm_error *err = NULL;
        if (image_store_open(root, &s, &err) < 0)
                fail_msg("store: %s", err->message);
        return s;
}

static char *layer_file(struct image_store *s, const char *diff_id, const char *rel) {
        _cleanup_free_ char *dir = image_store_layer_path(s, diff_id);
        _cleanup_free_ char *p = xasprintf("%s/%s", dir, rel);
        char *data = NULL;
        size_t len;
        if (fs_read_all(AT_FDCWD, p, 0, &data, &len) < 0)
                return NULL;
        return data;
}

static void test_e2e_pull(void **state) {
        struct e2e *t = *state;
        NEED_E2E(t);
        struct image_store *s = store_new(t, "store-pull");
        struct registry_options ro = {.timeout_sec = 10};
        struct progress_log pl = {.lock = PTHREAD_MUTEX_INITIALIZER};
        struct pull_options po = {.progress = progress_cb, .userdata = &pl, .max_parallel = 3};
        _cleanup_free_ char *ref = xasprintf("%s/x/y:1", t->reg.host);
        char *name = NULL;
        char digest[DIGEST_STR_MAX];
        struct cm_error *err = NULL;
        if (image_pull(s, &ro, ref, &po, &name, digest, &err) < 0)
                fail_msg("%s", err->message);
        assert_string_equal(name, ref);
        assert_string_equal(digest, t->digest);
        free(name);
        assert_true(pl.downloading >= 4); /* config + 3 layers */
        assert_int_equal(pl.unpacking, 3);

        struct oci_descriptor d = {0};
        assert_int_equal(image_store_resolve(s, ref, &d), 0);
        assert_string_equal(d.digest, t->digest);
        assert_string_equal(d.media_type, MT_OCI_MANIFEST);
        oci_descriptor_done(&d);

        /* every layer unpacked, with its content */
        char *cfg;
        size_t cl;
        _cleanup_free_ char *m = NULL;
        size_t ml;
        assert_int_equal(image_store_blob_read(s, t->digest, 0, &m, &ml, &err), 0);
        struct oci_manifest *om = NULL;
        assert_int_equal(oci_manifest_parse(m, ml, &om, NULL), 0);
        assert_int_equal(image_store_blob_read(s, om->config.digest, 0, &cfg, &cl, &err), 0);
        struct oci_image_config *oc = NULL;
        assert_int_equal(oci_config_parse(cfg, cl, &oc, NULL), 0);
        free(cfg);
        char *f = layer_file(s, oc->diff_ids[0], "etc/hello");
        assert_non_null(f);
        assert_string_equal(f, "hello\n");
        free(f);
        f = layer_file(s, oc->diff_ids[2], "srv/data");
        assert_non_null(f);
        assert_string_equal(f, "some data in the third layer\n");
        free(f);
        for (size_t i = 0; i < om->n_layers; i++)
                assert_true(image_store_blob_exists(s, om->layers[i].digest));
        oci_config_free(oc);
        oci_manifest_free(om);

        /* again: everything is there already */
        pl = (struct progress_log){.lock = PTHREAD_MUTEX_INITIALIZER};
        assert_int_equal(image_pull(s, &ro, ref, &po, &name, digest, &err), 0);
        free(name);
        assert_int_equal(pl.exists, 4);
        assert_int_equal(pl.downloading, 0);

        /* by digest: tagged as name@digest */
        _cleanup_free_ char *dref = xasprintf("%s/x/y@%s", t->reg.host, t->digest);
        assert_int_equal(image_pull(s, &ro, dref, NULL, &name, digest, &err), 0);
        assert_string_equal(name, dref);
        free(name);
        assert_int_equal(image_store_resolve(s, dref, &d), 0);
        oci_descriptor_done(&d);

        /* unknown tag */
        _cleanup_free_ char *nref = xasprintf("%s/x/y:nope", t->reg.host);
        assert_true(image_pull(s, &ro, nref, NULL, &name, digest, &err) < 0);
        _cleanup_free_ char *want = xasprintf("pull %s: manifest unknown", nref);
        assert_string_equal(err->message, want);
        cm_error_free(err);
        err = NULL;

        /* a digest that is not the manifest's: the registry has no such manifest */
        _cleanup_free_ char *wref = xasprintf(
                "%s/x/y@sha256:1111111111111111111111111111111111111111111111111111111111111111", t->reg.host);
        assert_true(image_pull(s, &ro, wref, NULL, &name, digest, &err) < 0);
        cm_error_free(err);
        image_store_free(s);
}

static void test_e2e_mirror(void **state) {
        struct e2e *t = *state;
        NEED_E2E(t);
        struct image_store *s = store_new(t, "store-mirror");
        int dead = free_port();
        char *m1 = xasprintf("http://127.0.0.1:%d", dead), *m2 = xasprintf("http://%s", t->reg.host);
        char *mirrors[] = {m1, m2, NULL};
        struct registry_options ro = {.timeout_sec = 10, .mirrors = mirrors};
        char *name = NULL;
        char digest[DIGEST_STR_MAX];
        struct cm_error *err = NULL;
        /* "x/y:1" is docker.io/x/y:1, served by the second mirror */
        if (image_pull(s, &ro, "x/y:1", NULL, &name, digest, &err) < 0)
                fail_msg("%s", err->message);
        assert_string_equal(name, "docker.io/x/y:1");
        assert_string_equal(digest, t->digest);
        free(name);
        free(m1);
        free(m2);
        image_store_free(s);
}

static size_t count_dir(const char *path) {
        DIR *d = opendir(path);
        if (!d)
                return 0;
        size_t n = 0;
        struct dirent *de;
        while ((de = readdir(d)))
                if (de->d_name[0] != '.')
                        n++;
        closedir(d);
        return n;
}

static void test_e2e_digest_mismatch(void **state) {
        struct e2e *t = *state;
        NEED_E2E(t);
        /* flip a byte of the layer in the registry's storage (same size) */
        _cleanup_free_ char *data_path = xasprintf("%s/docker/registry/v2/blobs/sha256/%.2s/%s/data", t->reg.storage,
                                                   digest_hex(t->bad_layer), digest_hex(t->bad_layer));
        int fd = open(data_path, O_RDWR | O_CLOEXEC);
        assert_true(fd >= 0);
        char c;
        assert_int_equal(pread(fd, &c, 1, 100), 1);
        c ^= 0x55;
        assert_int_equal(pwrite(fd, &c, 1, 100), 1);
        close(fd);

        struct image_store *s = store_new(t, "store-bad");
        _cleanup_free_ char *blobs = xasprintf("%s/store-bad/content/blobs/sha256", t->tmp);
        size_t before = count_dir(blobs);
        struct registry_options ro = {.timeout_sec = 10};
        _cleanup_free_ char *ref = xasprintf("%s/x/bad:1", t->reg.host);
        char *name = NULL;
        char digest[DIGEST_STR_MAX];
        struct cm_error *err = NULL;
        assert_true(image_pull(s, &ro, ref, NULL, &name, digest, &err) < 0);
        assert_int_equal(err->code, CM_EDIGEST);
        _cleanup_free_ char *want = xasprintf("pull %s: layer %s: digest mismatch", ref, t->bad_layer);
        if (strncmp(err->message, want, strlen(want)) != 0)
                fail_msg("unexpected error: %s", err->message);
        cm_error_free(err);
        /* nothing of it is visible: no bad blob, no manifest, no name */
        assert_false(image_store_blob_exists(s, t->bad_layer));
        assert_false(image_store_blob_exists(s, t->bad_digest));
        struct oci_descriptor d = {0};
        assert_int_equal(image_store_resolve(s, ref, &d), -ENOENT);
        /* only the verified blobs of the pull (config, good layer) may have landed */
        assert_true(count_dir(blobs) <= before + 2);
        image_store_free(s);
}

static void test_e2e_timeout(void **state) {
        struct e2e *t = *state;
        NEED_E2E(t);
        int port;
        int lfd = listen_any(&port); /* never accepts, never answers */
        struct image_store *s = store_new(t, "store-timeout");
        struct registry_options ro = {.timeout_sec = 1};
        _cleanup_free_ char *ref = xasprintf("127.0.0.1:%d/x/y:1", port);
        char *name = NULL;
        char digest[DIGEST_STR_MAX];
        struct cm_error *err = NULL;
        double t0 = now_s();
        assert_true(image_pull(s, &ro, ref, NULL, &name, digest, &err) < 0);
        double dt = now_s() - t0;
        _cleanup_free_ char *want = xasprintf("pull %s: registry 127.0.0.1:%d timed out", ref, port);
        assert_string_equal(err->message, want);
        assert_true(dt < 3.5);
        cm_error_free(err);
        close(lfd);
        image_store_free(s);
}

static void test_e2e_push(void **state) {
        struct e2e *t = *state;
        NEED_E2E(t);
        struct image_store *s = store_new(t, "store-push");
        struct registry_options ro = {.timeout_sec = 10};
        _cleanup_free_ char *ref = xasprintf("%s/x/y:1", t->reg.host);
        _cleanup_free_ char *dst = xasprintf("%s/pushed/copy:2", t->reg.host);
        char *name = NULL;
        char digest[DIGEST_STR_MAX];
        struct cm_error *err = NULL;
        assert_int_equal(image_pull(s, &ro, ref, NULL, &name, digest, &err), 0);
        free(name);
        struct progress_log pl = {.lock = PTHREAD_MUTEX_INITIALIZER};
        if (image_push(s, &ro, ref, dst, progress_cb, &pl, &err) < 0)
                fail_msg("%s", err->message);
        /* a new repository: each blob uploaded (no cross-repo mount) */
        assert_int_equal(pl.exists, 0);
        /* pushing again finds every blob there */
        pl = (struct progress_log){.lock = PTHREAD_MUTEX_INITIALIZER};
        assert_int_equal(image_push(s, &ro, ref, dst, progress_cb, &pl, &err), 0);
        assert_int_equal(pl.exists, 4);

        /* pull it back into a fresh store: the same manifest, byte for byte */
        struct image_store *s2 = store_new(t, "store-push-back");
        assert_int_equal(image_pull(s2, &ro, dst, NULL, &name, digest, &err), 0);
        assert_string_equal(digest, t->digest);
        free(name);
        image_store_free(s2);

        /* an image that is not in the store */
        _cleanup_free_ char *missing = xasprintf("%s/not/here:1", t->reg.host);
        assert_true(image_push(s, &ro, missing, dst, NULL, NULL, &err) < 0);
        assert_non_null(strstr(err->message, "not found"));
        cm_error_free(err);
        image_store_free(s);
}

static void test_e2e_index(void **state) {
        struct e2e *t = *state;
        NEED_E2E(t);
        struct registry_options ro = {.timeout_sec = 10};
        _cleanup_free_ char *ref = xasprintf("%s/x/multi:1", t->reg.host);
        char *name = NULL;
        char digest[DIGEST_STR_MAX];
        struct cm_error *err = NULL;

        /* host platform: index stored and named, only the host's manifest fetched */
        struct image_store *s = store_new(t, "store-index");
        if (image_pull(s, &ro, ref, NULL, &name, digest, &err) < 0)
                fail_msg("%s", err->message);
        free(name);
        assert_string_equal(digest, t->multi);
        struct oci_descriptor d = {0};
        assert_int_equal(image_store_resolve(s, ref, &d), 0);
        assert_string_equal(d.digest, t->multi);
        assert_string_equal(d.media_type, MT_OCI_INDEX);
        oci_descriptor_done(&d);
        assert_true(image_store_blob_exists(s, t->multi_host));
        assert_false(image_store_blob_exists(s, t->multi_other));

        /* another platform on request */
        struct image_store *s2 = store_new(t, "store-index-other");
        _cleanup_free_ char *plat = xasprintf("linux/%s", t->other_arch);
        struct pull_options po = {.platform = plat};
        assert_int_equal(image_pull(s2, &ro, ref, &po, &name, digest, &err), 0);
        free(name);
        assert_true(image_store_blob_exists(s2, t->multi_other));
        assert_false(image_store_blob_exists(s2, t->multi_host));
        /* the name now means that platform's image */
        assert_string_equal(digest, t->multi_other);
        assert_int_equal(image_store_resolve(s2, ref, &d), 0);
        assert_string_equal(d.digest, t->multi_other);
        oci_descriptor_done(&d);
        image_store_free(s2);

        /* a platform the index does not have */
        struct image_store *s3 = store_new(t, "store-index-none");
        po.platform = "linux/s390x";
        assert_true(image_pull(s3, &ro, ref, &po, &name, digest, &err) < 0);
        assert_non_null(strstr(err->message, "pull "));
        cm_error_free(err);
        err = NULL;
        image_store_free(s3);

        /* push of an index with only one platform present: that image alone */
        _cleanup_free_ char *dst = xasprintf("%s/pushed/multi:1", t->reg.host);
        if (image_push(s, &ro, ref, dst, NULL, NULL, &err) < 0)
                fail_msg("%s", err->message);
        struct image_store *s4 = store_new(t, "store-index-back");
        assert_int_equal(image_pull(s4, &ro, dst, NULL, &name, digest, &err), 0);
        free(name);
        assert_string_equal(digest, t->multi_host);
        image_store_free(s4);
        image_store_free(s);
}

static void test_e2e_auth(void **state) {
        struct e2e *t = *state;
        NEED_E2E(t);
        struct reg g = {0};
        assert_int_equal(reg_start(&g, true), 0);
        skopeo_push(t->layout, "1", g.host, "x/y", "alice:secret");

        _cleanup_free_ char *auth_path = xasprintf("%s/auth.json", t->tmp);
        _cleanup_free_ char *auth = xasprintf("{\"auths\":{\"%s\":{\"auth\":\"YWxpY2U6c2VjcmV0\"}}}", g.host);
        write_file(auth_path, auth, strlen(auth));
        _cleanup_free_ char *ref = xasprintf("%s/x/y:1", g.host);
        char *name = NULL;
        char digest[DIGEST_STR_MAX];
        struct cm_error *err = NULL;

        /* anonymous: refused, with the hint */
        struct image_store *s = store_new(t, "store-auth");
        struct registry_options anon = {.timeout_sec = 10};
        assert_true(image_pull(s, &anon, ref, NULL, &name, digest, &err) < 0);
        _cleanup_free_ char *want = xasprintf("pull %s: unauthorized: authentication required (log in with "
                                              "'container registry login %s')",
                                              ref, g.host);
        assert_string_equal(err->message, want);
        assert_int_equal(err->code, CM_EPERM);
        cm_error_free(err);
        err = NULL;

        /* with the credentials file: pull, push elsewhere, pull back */
        struct registry_options ro = {.timeout_sec = 10, .auth_file = auth_path};
        if (image_pull(s, &ro, ref, NULL, &name, digest, &err) < 0)
                fail_msg("%s", err->message);
        free(name);
        assert_string_equal(digest, t->digest);
        _cleanup_free_ char *dst = xasprintf("%s/other/z:latest", g.host);
        if (image_push(s, &ro, ref, dst, NULL, NULL, &err) < 0)
                fail_msg("%s", err->message);
        struct image_store *s2 = store_new(t, "store-auth-2");
        assert_int_equal(image_pull(s2, &ro, dst, NULL, &name, digest, &err), 0);
        free(name);
        image_store_free(s2);

        /* login check */
        assert_int_equal(registry_login_check(g.host, "alice", "secret", &anon, &err), 0);
        assert_true(registry_login_check(g.host, "alice", "wrong", &anon, &err) < 0);
        _cleanup_free_ char *want2 = xasprintf("login to %s: invalid username or password", g.host);
        assert_string_equal(err->message, want2);
        cm_error_free(err);
        err = NULL;
        /* a registry without auth accepts anything */
        assert_int_equal(registry_login_check(t->reg.host, "x", "y", &anon, &err), 0);

        image_store_free(s);
        reg_stop(&g);
}

int main(void) {
        registry_global_init();
        const struct CMUnitTest pure[] = {
                cmocka_unit_test(test_challenge_bearer), cmocka_unit_test(test_challenge_other),
                cmocka_unit_test(test_base_url),         cmocka_unit_test(test_urls),
                cmocka_unit_test(test_auth_lookup),      cmocka_unit_test(test_bearer_flow),
                cmocka_unit_test(test_blob_resume),      cmocka_unit_test(test_timeout),
                cmocka_unit_test(test_mirror_fallback),
        };
        const struct CMUnitTest e2e[] = {
                cmocka_unit_test(test_e2e_pull),    cmocka_unit_test(test_e2e_mirror),
                cmocka_unit_test(test_e2e_timeout), cmocka_unit_test(test_e2e_push),
                cmocka_unit_test(test_e2e_index),   cmocka_unit_test(test_e2e_auth),
                cmocka_unit_test(test_e2e_digest_mismatch),
        };
        int r = cmocka_run_group_tests_name("registry", pure, NULL, NULL);
        r += cmocka_run_group_tests_name("registry-e2e", e2e, e2e_setup, e2e_teardown);
        return r;
}
