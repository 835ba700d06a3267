#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "image/manifest.h"

#define H1 "1111111111111111111111111111111111111111111111111111111111111111"
#define H2 "2222222222222222222222222222222222222222222222222222222222222222"
#define H3 "3333333333333333333333333333333333333333333333333333333333333333"
#define H4 "4444444444444444444444444444444444444444444444444444444444444444"
#define D1 "sha256:" H1
#define D2 "sha256:" H2
#define D3 "sha256:" H3
#define D4 "sha256:" H4

#define DESC(mt, d, sz) "{\"mediaType\":\"" mt "\",\"digest\":\"" d "\",\"size\":" #sz "}"

static const char oci_manifest[] =
        "{\"schemaVersion\":2,\"mediaType\":\"" MT_OCI_MANIFEST "\","
        "\"config\":" DESC(MT_OCI_CONFIG, D1, 1234) ","
        "\"layers\":[" DESC(MT_OCI_LAYER_GZIP, D2, 100) "," DESC(MT_OCI_LAYER_ZSTD, D3, 0) ","
        "{\"mediaType\":\"" MT_OCI_LAYER "\",\"digest\":\"" D4 "\",\"size\":9007199254740993,"
        "\"annotations\":{\"x\":\"y\"},\"urls\":[\"https://example.com\"]}],"
        "\"annotations\":{\"org.opencontainers.image.created\":\"2024-01-01T00:00:00Z\"}}";

static const char docker_manifest[] =
        "{\n  \"schemaVersion\": 2,\n  \"mediaType\": \"" MT_DOCKER_MANIFEST "\",\n"
        "  \"config\": " DESC(MT_DOCKER_CONFIG, D1, 1469) ",\n"
        "  \"layers\": [ " DESC(MT_DOCKER_LAYER_GZIP, D2, 3408729) " ]\n}\n";

/* Parses s, expects failure with a message containing want. */
static void expect_manifest_error(const char *s, const char *want) {
        struct cm_error *err = NULL;
        struct oci_manifest *m = NULL;
        int r = oci_manifest_parse(s, strlen(s), &m, &err);
        if (r >= 0)
                fail_msg("parsed, expected error '%s': %s", want, s);
        assert_null(m);
        assert_non_null(err);
        assert_int_equal(err->code, CM_EINVALID);
        if (!strstr(err->message, want))
                fail_msg("message '%s' lacks '%s'", err->message, want);
        cm_error_free(err);
}

static void expect_index_error(const char *s, const char *want) {
        struct cm_error *err = NULL;
        struct oci_index *i = NULL;
        if (oci_index_parse(s, strlen(s), &i, &err) >= 0)
                fail_msg("parsed, expected error '%s': %s", want, s);
        assert_null(i);
        if (!strstr(err->message, want))
                fail_msg("message '%s' lacks '%s'", err->message, want);
        cm_error_free(err);
}

static void expect_config_error(const char *s, const char *want) {
        struct cm_error *err = NULL;
        struct oci_image_config *c = NULL;
        if (oci_config_parse(s, strlen(s), &c, &err) >= 0)
                fail_msg("parsed, expected error '%s': %s", want, s);
        assert_null(c);
        if (!strstr(err->message, want))
                fail_msg("message '%s' lacks '%s'", err->message, want);
        cm_error_free(err);
}

static void test_oci_manifest(void **state) {
        (void)state;
        struct oci_manifest *m = NULL;
        struct cm_error *err = NULL;
        enum layer_compression c;

        assert_int_equal(oci_manifest_parse(oci_manifest, strlen(oci_manifest), &m, &err), 0);
        assert_null(err);
        assert_string_equal(m->media_type, MT_OCI_MANIFEST);
        assert_string_equal(m->config.media_type, MT_OCI_CONFIG);
        assert_string_equal(m->config.digest, D1);
        assert_int_equal(m->config.size, 1234);
        assert_int_equal(m->n_layers, 3);
        assert_string_equal(m->layers[0].digest, D2);
        assert_int_equal(m->layers[0].size, 100);
        assert_int_equal(m->layers[1].size, 0);
        assert_true(m->layers[2].size == INT64_C(9007199254740993));
        assert_int_equal(oci_layer_compression(m->layers[0].media_type, &c), 0);
        assert_int_equal(c, LAYER_GZIP);
        assert_int_equal(oci_layer_compression(m->layers[1].media_type, &c), 0);
        assert_int_equal(c, LAYER_ZSTD);
        assert_int_equal(oci_layer_compression(m->layers[2].media_type, &c), 0);
        assert_int_equal(c, LAYER_PLAIN);
        assert_null(m->layers[0].ref_name);
        assert_null(m->layers[0].platform.os);
        oci_manifest_free(m);
}

static void test_docker_manifest(void **state) {
        (void)state;
        struct oci_manifest *m = NULL;
        int is_index = -1;

        assert_int_equal(oci_manifest_parse(docker_manifest, strlen(docker_manifest), &m, NULL), 0);
        assert_string_equal(m->media_type, MT_DOCKER_MANIFEST);
        assert_string_equal(m->config.media_type, MT_DOCKER_CONFIG);
        assert_int_equal(m->n_layers, 1);
        assert_int_equal(m->layers[0].size, 3408729);
        oci_manifest_free(m);

        assert_int_equal(oci_detect_kind(docker_manifest, strlen(docker_manifest), NULL, &is_index, NULL), 0);
        assert_int_equal(is_index, 0);
}

static void test_manifest_optional_parts(void **state) {
        (void)state;
        struct oci_manifest *m = NULL;
        /* mediaType is optional in OCI; no layers is allowed (scratch images) */
        const char *s = "{\"schemaVersion\":2,\"config\":" DESC(MT_OCI_CONFIG, D1, 2) ",\"layers\":[]}";
        assert_int_equal(oci_manifest_parse(s, strlen(s), &m, NULL), 0);
        assert_string_equal(m->media_type, MT_OCI_MANIFEST);
        assert_int_equal(m->n_layers, 0);
        oci_manifest_free(m);
        oci_manifest_free(NULL);
}

static void test_manifest_invalid(void **state) {
        (void)state;
        expect_manifest_error("", "manifest: invalid JSON");
        expect_manifest_error("{\"schemaVersion\":2,", "manifest: invalid JSON at line 1");
        expect_manifest_error("[1,2]", "manifest: not a JSON object");
        expect_manifest_error("\"x\"", "invalid JSON");
        expect_manifest_error("{}", "manifest: missing schemaVersion");
        expect_manifest_error("{\"schemaVersion\":\"2\"}", "schemaVersion must be an integer");
        expect_manifest_error("{\"schemaVersion\":1,\"name\":\"x\",\"fsLayers\":[]}", "schema 1 is not supported");
        expect_manifest_error("{\"schemaVersion\":3}", "unsupported schemaVersion 3");
        expect_manifest_error("{\"schemaVersion\":2,\"mediaType\":\"application/x-foo\",\"config\":" DESC(
                                      MT_OCI_CONFIG, D1, 1) ",\"layers\":[]}",
                              "manifest: unsupported media type 'application/x-foo'");
        expect_manifest_error("{\"schemaVersion\":2,\"mediaType\":7}", "manifest: mediaType must be a string");
        expect_manifest_error("{\"schemaVersion\":2,\"mediaType\":\"" MT_OCI_INDEX "\",\"manifests\":[]}",
                              "is an image index, not a manifest");
        expect_manifest_error("{\"schemaVersion\":2,\"config\":" DESC(MT_OCI_CONFIG, D1, 1) ",\"layers\":[],"
                              "\"manifests\":[]}",
                              "unexpected 'manifests'");
        expect_manifest_error("{\"schemaVersion\":2,\"layers\":[]}", "manifest: missing config");
        expect_manifest_error("{\"schemaVersion\":2,\"config\":" DESC(MT_OCI_CONFIG, D1, 1) "}",
                              "manifest: missing layers");
        expect_manifest_error("{\"schemaVersion\":2,\"config\":" DESC(MT_OCI_CONFIG, D1, 1) ",\"layers\":{}}",
                              "manifest: layers must be an array");
        expect_manifest_error("{\"schemaVersion\":2,\"config\":[],\"layers\":[]}", "manifest: config: not a JSON object");
        expect_manifest_error("{\"schemaVersion\":2,\"config\":" DESC("application/vnd.cncf.helm.config.v1+json", D1,
                                                                      1) ",\"layers\":[]}",
                              "manifest: config: unsupported media type 'application/vnd.cncf.helm.config.v1+json'");
        expect_manifest_error("{\"schemaVersion\":2,\"config\":{\"digest\":\"" D1 "\",\"size\":1},\"layers\":[]}",
                              "manifest: config: missing mediaType");
        expect_manifest_error("{\"schemaVersion\":2,\"config\":{\"mediaType\":\"" MT_OCI_CONFIG "\",\"size\":1},"
                              "\"layers\":[]}",
                              "manifest: config: missing digest");
        expect_manifest_error("{\"schemaVersion\":2,\"config\":{\"mediaType\":\"" MT_OCI_CONFIG "\",\"digest\":\"" D1
                              "\"},\"layers\":[]}",
                              "manifest: config: missing size");
        expect_manifest_error("{\"schemaVersion\":2,\"config\":" DESC(MT_OCI_CONFIG, D1, 1) ",\"layers\":["
                              DESC(MT_OCI_LAYER_GZIP, D2, 1) "," DESC(MT_OCI_LAYER_GZIP, D3, 1) ","
                              DESC(MT_OCI_LAYER_GZIP, "sha256:xyz", 1) "]}",
                              "manifest: layers[2]: invalid digest 'sha256:xyz'");
        expect_manifest_error("{\"schemaVersion\":2,\"config\":" DESC(MT_OCI_CONFIG, "sha256:" H1 "0", 1) ",\"layers\":[]}",
                              "manifest: config: invalid digest");
        expect_manifest_error("{\"schemaVersion\":2,\"config\":" DESC(MT_OCI_CONFIG, "sha512:" H1 H1, 1) ",\"layers\":[]}",
                              "invalid digest");
        expect_manifest_error("{\"schemaVersion\":2,\"config\":" DESC(MT_OCI_CONFIG, "SHA256:" H1, 1) ",\"layers\":[]}",
                              "invalid digest");
        expect_manifest_error("{\"schemaVersion\":2,\"config\":" DESC(MT_OCI_CONFIG, D1, 1) ",\"layers\":["
                              DESC(MT_OCI_LAYER_GZIP, D2, -1) "]}",
                              "manifest: layers[0]: invalid size -1");
        expect_manifest_error("{\"schemaVersion\":2,\"config\":" DESC(MT_OCI_CONFIG, D1, 1.5) ",\"layers\":[]}",
                              "manifest: config: size must be an integer");
        expect_manifest_error("{\"schemaVersion\":2,\"config\":" DESC(MT_OCI_CONFIG, D1, "1") ",\"layers\":[]}",
                              "size must be an integer");
        expect_manifest_error("{\"schemaVersion\":2,\"config\":" DESC(MT_OCI_CONFIG, D1, 1) ",\"layers\":["
                              DESC("application/vnd.example.weird", D2, 1) "]}",
                              "manifest: layers[0]: unsupported layer media type 'application/vnd.example.weird'");
        expect_manifest_error("{\"schemaVersion\":2,\"config\":" DESC(MT_OCI_CONFIG, D1, 1) ",\"layers\":[7]}",
                              "manifest: layers[0]: not a JSON object");
        expect_manifest_error("{\"schemaVersion\":2,\"config\":" DESC(MT_OCI_CONFIG, D1, 1) ",\"layers\":[],"
                              "\"layers\":[]}",
                              "duplicate");
        /* strings with NUL bytes are refused by the JSON parser */
        expect_manifest_error("{\"schemaVersion\":2,\"mediaType\":\"a\\u0000b\"}", "invalid JSON");
        /* control characters in untrusted values do not reach the message */
        struct cm_error *err = NULL;
        struct oci_manifest *m = NULL;
        const char *s = "{\"schemaVersion\":2,\"mediaType\":\"\\u001b[31mred\"}";
        assert_true(oci_manifest_parse(s, strlen(s), &m, &err) < 0);
        assert_null(strchr(err->message, '\033'));
        cm_error_free(err);
        /* err may be NULL */
        assert_true(oci_manifest_parse("{}", 2, &m, NULL) < 0);
        assert_null(m);
}

static void test_layer_compression(void **state) {
        (void)state;
        static const struct {
                const char *mt;
                enum layer_compression c;
        } known[] = {
                { MT_OCI_LAYER, LAYER_PLAIN },
                { MT_OCI_LAYER_GZIP, LAYER_GZIP },
                { MT_OCI_LAYER_ZSTD, LAYER_ZSTD },
                { MT_DOCKER_LAYER_GZIP, LAYER_GZIP },
                { "application/vnd.oci.image.layer.nondistributable.v1.tar", LAYER_PLAIN },
                { "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip", LAYER_GZIP },
                { "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd", LAYER_ZSTD },
                { "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip", LAYER_GZIP },
        };
        enum layer_compression c;
        for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++) {
                c = (enum layer_compression)-1;
                assert_int_equal(oci_layer_compression(known[i].mt, &c), 0);
                assert_int_equal(c, known[i].c);
        }
        assert_int_equal(oci_layer_compression("application/vnd.oci.image.layer.v1.tar+bzip2", &c), -EPROTONOSUPPORT);
        assert_int_equal(oci_layer_compression(MT_OCI_CONFIG, &c), -EPROTONOSUPPORT);
        assert_int_equal(oci_layer_compression("", &c), -EPROTONOSUPPORT);
        assert_int_equal(oci_layer_compression(NULL, &c), -EPROTONOSUPPORT);
}

#define PDESC(mt, d, os, arch, variant_json)                                                                   \
        "{\"mediaType\":\"" mt "\",\"digest\":\"" d "\",\"size\":500,\"platform\":{\"architecture\":\"" arch \
        "\",\"os\":\"" os "\"" variant_json "}}"

static const char oci_index[] =
        "{\"schemaVersion\":2,\"mediaType\":\"" MT_OCI_INDEX "\",\"manifests\":["
        PDESC(MT_OCI_MANIFEST, D1, "linux", "amd64", "") ","
        PDESC(MT_OCI_MANIFEST, D2, "linux", "arm", ",\"variant\":\"v7\"") ","
        PDESC(MT_OCI_MANIFEST, D3, "linux", "arm64", ",\"variant\":\"v8\"") ","
        PDESC(MT_OCI_MANIFEST, D4, "unknown", "unknown", "") ","
        PDESC(MT_OCI_MANIFEST, D4, "linux", "s390x", "") ","
        PDESC(MT_OCI_MANIFEST, D4, "linux", "riscv64", "") ","
        PDESC(MT_OCI_MANIFEST, D4, "linux", "ppc64le", "") ","
        PDESC(MT_OCI_MANIFEST, D4, "linux", "386", "") "]}";

static const char docker_list[] =
        "{\"schemaVersion\":2,\"mediaType\":\"" MT_DOCKER_LIST "\",\"manifests\":["
        PDESC(MT_DOCKER_MANIFEST, D1, "linux", "amd64", "") ","
        PDESC(MT_DOCKER_MANIFEST, D2, "linux", "arm", ",\"variant\":\"v6\"") ","
        PDESC(MT_DOCKER_MANIFEST, D3, "linux", "arm", ",\"variant\":\"v5\"") ","
        PDESC(MT_DOCKER_MANIFEST, D4, "windows", "amd64", ",\"os.version\":\"10.0.17763.1\"") "]}";

static void test_index(void **state) {
        (void)state;
        struct oci_index *idx = NULL;
        struct cm_error *err = NULL;
        int is_index = -1;

        assert_int_equal(oci_index_parse(oci_index, strlen(oci_index), &idx, &err), 0);
        assert_null(err);
        assert_string_equal(idx->media_type, MT_OCI_INDEX);
        assert_int_equal(idx->n_manifests, 8);
        assert_string_equal(idx->manifests[1].platform.os, "linux");
        assert_string_equal(idx->manifests[1].platform.architecture, "arm");
        assert_string_equal(idx->manifests[1].platform.variant, "v7");
        assert_null(idx->manifests[0].platform.variant);
        assert_int_equal(idx->manifests[0].size, 500);
        oci_index_free(idx);

        assert_int_equal(oci_index_parse(docker_list, strlen(docker_list), &idx, NULL), 0);
        assert_string_equal(idx->media_type, MT_DOCKER_LIST);
        assert_string_equal(idx->manifests[3].platform.os, "windows");
        oci_index_free(idx);
        oci_index_free(NULL);

        assert_int_equal(oci_detect_kind(oci_index, strlen(oci_index), NULL, &is_index, NULL), 0);
        assert_int_equal(is_index, 1);
        assert_int_equal(oci_detect_kind(docker_list, strlen(docker_list), MT_DOCKER_MANIFEST, &is_index, NULL), 0);
        assert_int_equal(is_index, 1); /* the document's own mediaType wins over the hint */
}

static void test_index_oci_layout(void **state) {
        (void)state;
        /* index.json of an OCI layout, as skopeo writes it: no mediaType, no platform, a ref name */
        const char *s = "{\"schemaVersion\":2,\"manifests\":[{\"mediaType\":\"" MT_OCI_MANIFEST "\",\"digest\":\"" D1
                        "\",\"size\":7143,\"annotations\":{\"org.opencontainers.image.ref.name\":\"3.22\"}}]}";
        struct oci_index *idx = NULL;
        const struct oci_descriptor *d = NULL;

        assert_int_equal(oci_index_parse(s, strlen(s), &idx, NULL), 0);
        assert_string_equal(idx->media_type, MT_OCI_INDEX);
        assert_string_equal(idx->manifests[0].ref_name, "3.22");
        assert_null(idx->manifests[0].platform.os);
        /* a single entry without a platform is the image, whatever we ask for */
        assert_int_equal(oci_index_select(idx, NULL, &d, NULL), 0);
        assert_ptr_equal(d, &idx->manifests[0]);
        assert_int_equal(oci_index_select(idx, "linux/s390x", &d, NULL), 0);
        oci_index_free(idx);

        s = "{\"schemaVersion\":2,\"manifests\":[]}";
        assert_int_equal(oci_index_parse(s, strlen(s), &idx, NULL), 0);
        assert_int_equal(idx->n_manifests, 0);
        struct cm_error *err = NULL;
        assert_int_equal(oci_index_select(idx, NULL, &d, &err), -ENOENT);
        assert_int_equal(err->code, CM_ENOTFOUND);
        assert_non_null(strstr(err->message, "lists no platforms"));
        cm_error_free(err);
        oci_index_free(idx);
}

static void test_index_invalid(void **state) {
        (void)state;
        expect_index_error("nope", "index: invalid JSON");
        expect_index_error("{\"schemaVersion\":2}", "index: missing manifests");
        expect_index_error("{\"manifests\":[]}", "index: missing schemaVersion");
        expect_index_error("{\"schemaVersion\":2,\"manifests\":{}}", "index: manifests must be an array");
        expect_index_error("{\"schemaVersion\":2,\"mediaType\":\"" MT_OCI_MANIFEST "\",\"manifests\":[]}",
                           "is an image manifest, not an index");
        expect_index_error("{\"schemaVersion\":2,\"mediaType\":\"application/vnd.foo+json\",\"manifests\":[]}",
                           "index: unsupported media type 'application/vnd.foo+json'");
        expect_index_error("{\"schemaVersion\":2,\"manifests\":[],\"layers\":[]}", "unexpected 'layers'");
        expect_index_error("{\"schemaVersion\":2,\"manifests\":[" DESC(MT_OCI_MANIFEST, D1, 1) ","
                           DESC(MT_OCI_MANIFEST, "sha256:1234", 1) "]}",
                           "index: manifests[1]: invalid digest 'sha256:1234'");
        expect_index_error("{\"schemaVersion\":2,\"manifests\":[" DESC(MT_OCI_MANIFEST, D1, -5) "]}",
                           "index: manifests[0]: invalid size -5");
        expect_index_error("{\"schemaVersion\":2,\"manifests\":[{\"mediaType\":\"" MT_OCI_MANIFEST "\",\"digest\":\"" D1
                           "\",\"size\":1,\"platform\":{\"os\":\"linux\"}}]}",
                           "index: manifests[0]: missing platform.architecture");
        expect_index_error("{\"schemaVersion\":2,\"manifests\":[{\"mediaType\":\"" MT_OCI_MANIFEST "\",\"digest\":\"" D1
                           "\",\"size\":1,\"platform\":\"linux/amd64\"}]}",
                           "platform must be an object");
        expect_index_error("{\"schemaVersion\":2,\"manifests\":[{\"mediaType\":\"" MT_OCI_MANIFEST "\",\"digest\":\"" D1
                           "\",\"size\":1,\"platform\":{\"os\":\"linux\",\"architecture\":\"arm\",\"variant\":7}}]}",
                           "index: manifests[0]: platform.variant must be a string");
        expect_index_error("{\"schemaVersion\":2,\"manifests\":[{\"mediaType\":\"" MT_OCI_MANIFEST "\",\"digest\":\"" D1
                           "\",\"size\":1,\"annotations\":[]}]}",
                           "annotations must be an object");
        expect_index_error("{\"schemaVersion\":2,\"manifests\":[{\"mediaType\":\"" MT_OCI_MANIFEST "\",\"digest\":\"" D1
                           "\",\"size\":1,\"annotations\":{\"org.opencontainers.image.ref.name\":1}}]}",
                           "annotations.org.opencontainers.image.ref.name must be a string");
}

static void expect_select(const char *index, const char *platform, const char *want_digest) {
        struct oci_index *idx = NULL;
        const struct oci_descriptor *d = NULL;
        struct cm_error *err = NULL;
        assert_int_equal(oci_index_parse(index, strlen(index), &idx, NULL), 0);
        int r = oci_index_select(idx, platform, &d, &err);
        if (r < 0)
                fail_msg("select %s: %s", platform ? platform : "(host)", err ? err->message : "?");
        assert_string_equal(d->digest, want_digest);
        oci_index_free(idx);
}

static void test_index_select(void **state) {
        (void)state;
        expect_select(oci_index, "linux/amd64", D1);
        expect_select(oci_index, "linux/x86_64", D1);
        expect_select(oci_index, "linux/arm/v7", D2);
        expect_select(oci_index, "linux/arm", D2);
        expect_select(oci_index, "linux/armhf", D2);
        expect_select(oci_index, "linux/arm64", D3);
        expect_select(oci_index, "linux/arm64/v8", D3);
        expect_select(oci_index, "linux/aarch64", D3);
        expect_select(oci_index, "LINUX/ARM64", D3);
        expect_select(oci_index, "linux/s390x", D4);

        /* armv7 runs v6 and v5 images; the closest wins */
        expect_select(docker_list, "linux/arm/v7", D2);
        expect_select(docker_list, "linux/arm/v6", D2);
        expect_select(docker_list, "linux/arm/v5", D3);
        expect_select(docker_list, "windows/amd64", D4);
        expect_select(docker_list, "linux/amd64", D1);

        /* the host default is whatever this test runs on */
        const char *arch = oci_host_arch();
        assert_non_null(arch);
        if (strcmp(arch, "amd64") == 0)
                expect_select(oci_index, NULL, D1);
        else if (strcmp(arch, "arm64") == 0)
                expect_select(oci_index, NULL, D3);
        else
                print_message("host architecture %s: default selection not checked\n", arch);
}

static void test_index_select_errors(void **state) {
        (void)state;
        struct oci_index *idx = NULL;
        const struct oci_descriptor *d = NULL;
        struct cm_error *err = NULL;

        assert_int_equal(oci_index_parse(docker_list, strlen(docker_list), &idx, NULL), 0);
        assert_int_equal(oci_index_select(idx, "linux/arm64", &d, &err), -ENOENT);
        assert_null(d);
        assert_int_equal(err->code, CM_ENOTFOUND);
        assert_string_equal(err->message, "no image for platform linux/arm64 (available: linux/amd64, linux/arm/v6, "
                                          "linux/arm/v5, windows/amd64)");
        cm_error_free(err);
        err = NULL;

        /* v6 cannot run v7 */
        oci_index_free(idx);
        assert_int_equal(oci_index_parse(oci_index, strlen(oci_index), &idx, NULL), 0);
        assert_int_equal(oci_index_select(idx, "linux/arm/v6", &d, &err), -ENOENT);
        /* attestation entries (unknown/unknown) are not offered as platforms */
        assert_null(strstr(err->message, "unknown"));
        assert_non_null(strstr(err->message, "linux/arm/v7"));
        cm_error_free(err);
        err = NULL;

        assert_int_equal(oci_index_select(idx, "linux/amd64/v3", &d, &err), -ENOENT);
        cm_error_free(err);
        err = NULL;

        assert_int_equal(oci_index_select(idx, "linux", &d, &err), -CM_EINVALID);
        assert_non_null(strstr(err->message, "invalid platform 'linux'"));
        cm_error_free(err);
        oci_index_free(idx);
}

static void test_platform_parse(void **state) {
        (void)state;
        struct oci_platform p = {};
        struct cm_error *err = NULL;

        assert_int_equal(oci_platform_parse("linux/arm/v7", &p, NULL), 0);
        assert_string_equal(p.os, "linux");
        assert_string_equal(p.architecture, "arm");
        assert_string_equal(p.variant, "v7");
        oci_platform_done(&p);
        assert_null(p.os);

        assert_int_equal(oci_platform_parse("linux/amd64", &p, NULL), 0);
        assert_string_equal(p.architecture, "amd64");
        assert_null(p.variant);
        oci_platform_done(&p);

        assert_int_equal(oci_platform_parse("Linux/X86_64", &p, NULL), 0);
        assert_string_equal(p.os, "linux");
        assert_string_equal(p.architecture, "amd64");
        oci_platform_done(&p);

        assert_int_equal(oci_platform_parse("linux/armhf", &p, NULL), 0);
        assert_string_equal(p.architecture, "arm");
        assert_string_equal(p.variant, "v7");
        oci_platform_done(&p);

        static const char *const bad[] = { "", "linux", "linux/", "/amd64", "linux//v7", "linux/arm/v7/x",
                                           "linux/arm/", "linux/am d64", "linux/arm\n" };
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
                p = (struct oci_platform){};
                if (oci_platform_parse(bad[i], &p, &err) != -CM_EINVALID)
                        fail_msg("'%s' accepted", bad[i]);
                assert_null(p.os);
                assert_non_null(strstr(err->message, "expected os/arch[/variant]"));
                cm_error_free(err);
                err = NULL;
        }
        oci_platform_done(NULL);
}

static void test_detect_kind(void **state) {
        (void)state;
        int is_index = -1;
        struct cm_error *err = NULL;
        const char *s;

        s = "{\"schemaVersion\":2,\"manifests\":[]}";
        assert_int_equal(oci_detect_kind(s, strlen(s), NULL, &is_index, NULL), 0);
        assert_int_equal(is_index, 1);
        s = "{\"schemaVersion\":2,\"config\":{},\"layers\":[]}";
        assert_int_equal(oci_detect_kind(s, strlen(s), NULL, &is_index, NULL), 0);
        assert_int_equal(is_index, 0);

        /* the hint decides when the document does not say; parameters are ignored */
        s = "{\"schemaVersion\":2}";
        assert_int_equal(oci_detect_kind(s, strlen(s), MT_OCI_INDEX "; charset=utf-8", &is_index, NULL), 0);
        assert_int_equal(is_index, 1);
        assert_int_equal(oci_detect_kind(s, strlen(s), " " MT_DOCKER_MANIFEST, &is_index, NULL), 0);
        assert_int_equal(is_index, 0);
        assert_int_equal(oci_detect_kind(s, strlen(s), "application/json", &is_index, &err), -CM_EINVALID);
        assert_non_null(strstr(err->message, "neither an image manifest nor an image index"));
        cm_error_free(err);
        err = NULL;

        s = "{\"schemaVersion\":2,\"manifests\":[],\"layers\":[]}";
        assert_int_equal(oci_detect_kind(s, strlen(s), NULL, &is_index, &err), -CM_EINVALID);
        assert_non_null(strstr(err->message, "ambiguous"));
        cm_error_free(err);
        err = NULL;

        s = "{\"schemaVersion\":2,\"mediaType\":\"text/html\"}";
        assert_int_equal(oci_detect_kind(s, strlen(s), MT_OCI_MANIFEST, &is_index, &err), -CM_EINVALID);
        assert_string_equal(err->message, "manifest: unsupported media type 'text/html'");
        cm_error_free(err);
        err = NULL;

        s = "{\"schemaVersion\":1,\"name\":\"x\"}";
        assert_int_equal(oci_detect_kind(s, strlen(s), NULL, &is_index, &err), -CM_EINVALID);
        assert_non_null(strstr(err->message, "schema 1"));
        cm_error_free(err);
        err = NULL;

        s = "<html>";
        assert_int_equal(oci_detect_kind(s, strlen(s), MT_OCI_MANIFEST, &is_index, &err), -CM_EINVALID);
        assert_non_null(strstr(err->message, "invalid JSON"));
        cm_error_free(err);
}

static const char docker_config[] =
        "{\"architecture\":\"amd64\",\"os\":\"linux\",\"created\":\"2024-05-22T18:18:12.052034407Z\","
        "\"config\":{\"Env\":[\"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\"],"
        "\"Cmd\":[\"/bin/sh\"],\"Entrypoint\":null,\"WorkingDir\":\"\",\"User\":\"1000:1000\","
        "\"StopSignal\":\"SIGRTMIN+3\",\"Labels\":null,\"OnBuild\":null},"
        "\"container_config\":{\"Cmd\":[\"/bin/sh\",\"-c\",\"#(nop) CMD [\\\"/bin/sh\\\"]\"]},"
        "\"history\":[{\"created\":\"2024-05-22T18:18:11Z\",\"created_by\":\"ADD file:x in / \"}],"
        "\"rootfs\":{\"type\":\"layers\",\"diff_ids\":[\"" D1 "\",\"" D2 "\"]}}";

static void test_config(void **state) {
        (void)state;
        struct oci_image_config *c = NULL;
        struct cm_error *err = NULL;

        assert_int_equal(oci_config_parse(docker_config, strlen(docker_config), &c, &err), 0);
        assert_null(err);
        assert_string_equal(c->platform.os, "linux");
        assert_string_equal(c->platform.architecture, "amd64");
        assert_null(c->platform.variant);
        assert_string_equal(c->created, "2024-05-22T18:18:12.052034407Z");
        assert_non_null(c->env);
        assert_string_equal(c->env[0], "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
        assert_null(c->env[1]);
        assert_null(c->entrypoint);
        assert_string_equal(c->cmd[0], "/bin/sh");
        assert_null(c->cmd[1]);
        assert_null(c->working_dir);
        assert_string_equal(c->user, "1000:1000");
        assert_string_equal(c->stop_signal, "SIGRTMIN+3");
        assert_int_equal(c->n_diff_ids, 2);
        assert_string_equal(c->diff_ids[0], D1);
        assert_string_equal(c->diff_ids[1], D2);
        assert_null(c->diff_ids[2]);
        oci_config_free(c);
        oci_config_free(NULL);

        /* minimal OCI config: no config section, arm64 with a variant, no layers */
        const char *s = "{\"architecture\":\"arm64\",\"variant\":\"v8\",\"os\":\"linux\","
                        "\"rootfs\":{\"type\":\"layers\",\"diff_ids\":[]}}";
        assert_int_equal(oci_config_parse(s, strlen(s), &c, NULL), 0);
        assert_string_equal(c->platform.variant, "v8");
        assert_null(c->created);
        assert_non_null(c->env);
        assert_null(c->env[0]);
        assert_null(c->cmd);
        assert_null(c->entrypoint);
        assert_null(c->working_dir);
        assert_int_equal(c->n_diff_ids, 0);
        oci_config_free(c);

        s = "{\"architecture\":\"amd64\",\"os\":\"linux\",\"config\":{\"Entrypoint\":[],\"WorkingDir\":\"/srv\"},"
            "\"rootfs\":{\"type\":\"layers\",\"diff_ids\":[\"" D3 "\"]}}";
        assert_int_equal(oci_config_parse(s, strlen(s), &c, NULL), 0);
        assert_non_null(c->entrypoint);
        assert_null(c->entrypoint[0]);
        assert_string_equal(c->working_dir, "/srv");
        oci_config_free(c);
}

#define ROOTFS_OK ",\"rootfs\":{\"type\":\"layers\",\"diff_ids\":[\"" D1 "\"]}"

static void test_config_invalid(void **state) {
        (void)state;
        expect_config_error("{", "config: invalid JSON");
        expect_config_error("[]", "config: not a JSON object");
        expect_config_error("{\"os\":\"linux\"" ROOTFS_OK "}", "config: missing architecture");
        expect_config_error("{\"architecture\":\"amd64\"" ROOTFS_OK "}", "config: missing os");
        expect_config_error("{\"architecture\":1,\"os\":\"linux\"" ROOTFS_OK "}", "config: architecture must be a string");
        expect_config_error("{\"architecture\":\"\",\"os\":\"linux\"" ROOTFS_OK "}", "empty os or architecture");
        expect_config_error("{\"architecture\":\"amd64\",\"os\":\"linux\",\"created\":5" ROOTFS_OK "}",
                            "config: created must be a string");
        expect_config_error("{\"architecture\":\"amd64\",\"os\":\"linux\"}", "config: missing rootfs");
        expect_config_error("{\"architecture\":\"amd64\",\"os\":\"linux\",\"rootfs\":[]}", "rootfs must be an object");
        expect_config_error("{\"architecture\":\"amd64\",\"os\":\"linux\",\"rootfs\":{\"diff_ids\":[]}}",
                            "config: missing rootfs.type");
        expect_config_error("{\"architecture\":\"amd64\",\"os\":\"linux\",\"rootfs\":{\"type\":\"tarball\",\"diff_ids\":[]}}",
                            "unsupported type 'tarball'");
        expect_config_error("{\"architecture\":\"amd64\",\"os\":\"linux\",\"rootfs\":{\"type\":\"layers\"}}",
                            "config: missing rootfs.diff_ids");
        expect_config_error("{\"architecture\":\"amd64\",\"os\":\"linux\",\"rootfs\":{\"type\":\"layers\",\"diff_ids\":null}}",
                            "config: rootfs.diff_ids must be an array of strings");
        expect_config_error("{\"architecture\":\"amd64\",\"os\":\"linux\",\"rootfs\":{\"type\":\"layers\",\"diff_ids\":{}}}",
                            "config: rootfs.diff_ids must be an array of strings");
        expect_config_error("{\"architecture\":\"amd64\",\"os\":\"linux\",\"rootfs\":{\"type\":\"layers\",\"diff_ids\":[\"" D1
                            "\",\"sha256:nothex\"]}}",
                            "config: rootfs.diff_ids[1]: invalid digest 'sha256:nothex'");
        expect_config_error("{\"architecture\":\"amd64\",\"os\":\"linux\",\"rootfs\":{\"type\":\"layers\",\"diff_ids\":[3]}}",
                            "config: rootfs.diff_ids[0] must be a string");
        expect_config_error("{\"architecture\":\"amd64\",\"os\":\"linux\",\"config\":7" ROOTFS_OK "}",
                            "config: config must be an object");
        expect_config_error("{\"architecture\":\"amd64\",\"os\":\"linux\",\"config\":{\"Env\":\"A=b\"}" ROOTFS_OK "}",
                            "config: config.Env must be an array of strings");
        expect_config_error("{\"architecture\":\"amd64\",\"os\":\"linux\",\"config\":{\"Cmd\":[\"a\",1]}" ROOTFS_OK "}",
                            "config: config.Cmd[1] must be a string");
        expect_config_error("{\"architecture\":\"amd64\",\"os\":\"linux\",\"config\":{\"User\":0}" ROOTFS_OK "}",
                            "config: config.User must be a string");
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_oci_manifest),
                cmocka_unit_test(test_docker_manifest),
                cmocka_unit_test(test_manifest_optional_parts),
                cmocka_unit_test(test_manifest_invalid),
                cmocka_unit_test(test_layer_compression),
                cmocka_unit_test(test_index),
                cmocka_unit_test(test_index_oci_layout),
                cmocka_unit_test(test_index_invalid),
                cmocka_unit_test(test_index_select),
                cmocka_unit_test(test_index_select_errors),
                cmocka_unit_test(test_platform_parse),
                cmocka_unit_test(test_detect_kind),
                cmocka_unit_test(test_config),
                cmocka_unit_test(test_config_invalid),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
