#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <string.h>

#include "image/ref.h"

#define HEX64 "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
#define DIGEST "sha256:" HEX64

struct good_case {
        const char *in, *registry, *repository, *tag, *digest, *formatted, *familiar;
};

static const struct good_case good[] = {
        { "alpine", "docker.io", "library/alpine", "latest", NULL, "docker.io/library/alpine:latest", "alpine" },
        { "alpine:3.22", "docker.io", "library/alpine", "3.22", NULL, "docker.io/library/alpine:3.22", "alpine" },
        { "user/app", "docker.io", "user/app", "latest", NULL, "docker.io/user/app:latest", "user/app" },
        { "docker.io/alpine", "docker.io", "library/alpine", "latest", NULL, "docker.io/library/alpine:latest",
          "alpine" },
        { "docker.io/library/alpine:edge", "docker.io", "library/alpine", "edge", NULL,
          "docker.io/library/alpine:edge", "alpine" },
        { "index.docker.io/library/debian:12", "docker.io", "library/debian", "12", NULL,
          "docker.io/library/debian:12", "debian" },
        { "registry-1.docker.io/foo/bar", "docker.io", "foo/bar", "latest", NULL, "docker.io/foo/bar:latest",
          "foo/bar" },
        { "library/a/b", "docker.io", "library/a/b", "latest", NULL, "docker.io/library/a/b:latest",
          "library/a/b" },
        { "localhost/x", "localhost", "x", "latest", NULL, "localhost/x:latest", "localhost/x" },
        { "localhost:5000/x", "localhost:5000", "x", "latest", NULL, "localhost:5000/x:latest",
          "localhost:5000/x" },
        { "127.0.0.1:5000/a/b:tag", "127.0.0.1:5000", "a/b", "tag", NULL, "127.0.0.1:5000/a/b:tag",
          "127.0.0.1:5000/a/b" },
        { "registry.example.com/x/y@" DIGEST, "registry.example.com", "x/y", NULL, DIGEST,
          "registry.example.com/x/y@" DIGEST, "registry.example.com/x/y" },
        { "name:tag@" DIGEST, "docker.io", "library/name", "tag", DIGEST, "docker.io/library/name:tag@" DIGEST,
          "name" },
        { "alpine@" DIGEST, "docker.io", "library/alpine", NULL, DIGEST, "docker.io/library/alpine@" DIGEST,
          "alpine" },
        { "127.0.0.1:5000/x/y:1@" DIGEST, "127.0.0.1:5000", "x/y", "1", DIGEST,
          "127.0.0.1:5000/x/y:1@" DIGEST, "127.0.0.1:5000/x/y" },
        { "[::1]:5000/img:v1", "[::1]:5000", "img", "v1", NULL, "[::1]:5000/img:v1", "[::1]:5000/img" },
        { "Registry.Example.COM/ns/img", "Registry.Example.COM", "ns/img", "latest", NULL,
          "Registry.Example.COM/ns/img:latest", "Registry.Example.COM/ns/img" },
        { "my-registry:443/a.b/c__d/e-f--g", "my-registry:443", "a.b/c__d/e-f--g", "latest", NULL,
          "my-registry:443/a.b/c__d/e-f--g:latest", "my-registry:443/a.b/c__d/e-f--g" },
        { "app:_under.Score-1", "docker.io", "library/app", "_under.Score-1", NULL,
          "docker.io/library/app:_under.Score-1", "app" },
        { "docker.io/example.com/x", "docker.io", "example.com/x", "latest", NULL,
          "docker.io/example.com/x:latest", "docker.io/example.com/x" },
        { "docker.io/localhost/x", "docker.io", "localhost/x", "latest", NULL, "docker.io/localhost/x:latest",
          "docker.io/localhost/x" },
        { "docker.io/localhostx/x", "docker.io", "localhostx/x", "latest", NULL, "docker.io/localhostx/x:latest",
          "localhostx/x" },
        { "docker.io/" HEX64, "docker.io", "library/" HEX64, "latest", NULL, "docker.io/library/" HEX64 ":latest",
          "library/" HEX64 },
        /* no '/' after it: "localhost:5000" is the image localhost with tag 5000, as in Docker */
        { "localhost:5000", "docker.io", "library/localhost", "5000", NULL, "docker.io/library/localhost:5000",
          "localhost" },
};

static void test_good(void **state) {
        (void)state;
        for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
                const struct good_case *c = &good[i];
                struct cm_error *err = NULL;
                struct image_ref *r = NULL;
                print_message("%s\n", c->in);
                assert_int_equal(image_ref_parse(c->in, &r, &err), 0);
                assert_null(err);
                assert_string_equal(r->registry, c->registry);
                assert_string_equal(r->repository, c->repository);
                if (c->tag)
                        assert_string_equal(r->tag, c->tag);
                else
                        assert_null(r->tag);
                if (c->digest)
                        assert_string_equal(r->digest, c->digest);
                else
                        assert_null(r->digest);

                char *s = image_ref_format(r);
                assert_string_equal(s, c->formatted);

                /* the formatted form is a fixed point */
                struct image_ref *r2 = NULL;
                assert_int_equal(image_ref_parse(s, &r2, NULL), 0);
                char *s2 = image_ref_format(r2);
                assert_string_equal(s2, s);
                free(s2);
                image_ref_free(r2);
                free(s);

                s = image_ref_familiar_name(r);
                assert_string_equal(s, c->familiar);
                free(s);

                s = image_ref_name(r);
                size_t n = strlen(c->registry);
                assert_memory_equal(s, c->registry, n);
                assert_string_equal(s + n + 1, c->repository);
                free(s);
                image_ref_free(r);
        }
}

struct bad_case {
        const char *in, *reason;
};

static const struct bad_case bad[] = {
        { "", "empty reference" },
        { "Alpine", "must be lowercase" },
        { "user/App", "must be lowercase" },
        { "docker.io/Library/alpine", "must be lowercase" },
        { "alpine:", "empty tag" },
        { "alpine:-x", "invalid tag" },
        { "alpine:.x", "invalid tag" },
        { "alpine:a/b", "registry" }, /* a ':' before the '/' belongs to a registry port */
        { "alpine@", "empty digest" },
        { "alpine@sha256:abc", "digest" },
        { "alpine@sha256:" "0123456789ABCDEF0123456789abcdef0123456789abcdef0123456789abcdef", "digest" },
        { "alpine@sha512:" HEX64 HEX64, "only sha256" },
        { "alpine@" HEX64, "digest" },
        { "alpine@" DIGEST "x", "digest" },
        { "alpine@" DIGEST "@" DIGEST, "digest" },
        { ":tag", "empty repository name" },
        { "@" DIGEST, "empty repository name" },
        { "/alpine", "empty path component" },
        { "alpine/", "empty path component" },
        { "a//b", "empty path component" },
        { "localhost:5000/", "empty repository name" },
        { "localhost:0/x", "registry" },
        { "localhost:99999/x", "registry" },
        { "localhost:/x", "registry" },
        { "-bad.example.com/x", "registry" },
        { "bad..example.com/x", "registry" },
        { "[::1/x", "registry" },
        { "[zz::1]:5000/x", "registry" },
        { "a_/b", "path component" },
        { "a--/b", "path component" },
        { "_a/b", "path component" },
        { "x/a.-b/c", "path component" },
        { "a___b", "path component" },
        { "a b", "path component" },
        { "a\nb", "path component" },
        { HEX64, "64-byte hexadecimal" },
};

static void test_bad(void **state) {
        (void)state;
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
                const struct bad_case *c = &bad[i];
                struct cm_error *err = NULL;
                struct image_ref *r = NULL;
                print_message("%s\n", c->in);
                assert_int_equal(image_ref_parse(c->in, &r, &err), -CM_EINVALID);
                assert_null(r);
                assert_non_null(err);
                assert_int_equal(err->code, CM_EINVALID);
                assert_non_null(strstr(err->message, "invalid reference format '"));
                if (c->reason && !strstr(err->message, c->reason))
                        fail_msg("'%s': message '%s' lacks '%s'", c->in, err->message, c->reason);
                /* control characters never reach the message */
                for (const char *p = err->message; *p; p++)
                        assert_true((unsigned char)*p >= 0x20);
                cm_error_free(err);
        }
}

static void test_null_and_err_optional(void **state) {
        (void)state;
        struct image_ref *r = NULL;
        assert_int_equal(image_ref_parse(NULL, &r, NULL), -CM_EINVALID);
        assert_int_equal(image_ref_parse("UPPER", &r, NULL), -CM_EINVALID);
        assert_null(r);
        image_ref_free(NULL);
}

static void test_exact_message(void **state) {
        (void)state;
        struct cm_error *err = NULL;
        struct image_ref *r = NULL;
        assert_int_equal(image_ref_parse("Alpine:latest", &r, &err), -CM_EINVALID);
        assert_string_equal(err->message, "invalid reference format 'Alpine:latest': repository name must be lowercase");
        cm_error_free(err);
}

static void test_length(void **state) {
        (void)state;
        char name[300];
        struct image_ref *r = NULL;
        struct cm_error *err = NULL;

        /* docker.io/library/ + 237 = 255: the limit */
        memset(name, 'a', 237);
        name[237] = 0;
        assert_int_equal(image_ref_parse(name, &r, NULL), 0);
        assert_int_equal(strlen(r->registry) + 1 + strlen(r->repository), 255);
        image_ref_free(r);
        r = NULL;

        name[237] = 'a';
        name[238] = 0;
        assert_int_equal(image_ref_parse(name, &r, &err), -CM_EINVALID);
        assert_non_null(strstr(err->message, "must not be more than 255 characters"));
        /* the message shows a shortened reference */
        assert_true(strlen(err->message) < 400);
        cm_error_free(err);

        /* tags up to 128 characters */
        char tagged[200] = "alpine:";
        memset(tagged + 7, 't', 128);
        tagged[7 + 128] = 0;
        assert_int_equal(image_ref_parse(tagged, &r, NULL), 0);
        image_ref_free(r);
        r = NULL;
        tagged[7 + 128] = 't';
        tagged[7 + 129] = 0;
        assert_int_equal(image_ref_parse(tagged, &r, NULL), -CM_EINVALID);
        assert_null(r);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_good),
                cmocka_unit_test(test_bad),
                cmocka_unit_test(test_null_and_err_optional),
                cmocka_unit_test(test_exact_message),
                cmocka_unit_test(test_length),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
