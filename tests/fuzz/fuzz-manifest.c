/* libFuzzer target for the manifest, index and image config parsers: untrusted JSON from
 * registries and archives. Checks the invariants the rest of the code relies on. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "image/manifest.h"
#include "util/digest.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_descriptor(const struct oci_descriptor *d) {
        if (!d->media_type || !digest_is_valid(d->digest) || d->size < 0)
                abort();
        if ((d->platform.os == NULL) != (d->platform.architecture == NULL))
                abort();
}

static void check_error(int r, struct cm_error *err) {
        if (r >= 0)
                abort();
        if (!err || !err->message)
                abort();
        cm_error_free(err);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        const char *buf = (const char *)data;
        struct cm_error *err = NULL;
        int is_index = -1, r;

        static const char *const hints[] = { NULL, MT_OCI_INDEX, MT_DOCKER_MANIFEST "; charset=utf-8", "text/plain" };
        for (size_t i = 0; i < sizeof(hints) / sizeof(hints[0]); i++) {
                r = oci_detect_kind(buf, size, hints[i], &is_index, &err);
                if (r >= 0) {
                        if (err || (is_index != 0 && is_index != 1))
                                abort();
                } else
                        check_error(r, TAKE_PTR(err));
        }

        struct oci_manifest *m = NULL;
        r = oci_manifest_parse(buf, size, &m, &err);
        if (r >= 0) {
                enum layer_compression c;
                check_descriptor(&m->config);
                for (size_t i = 0; i < m->n_layers; i++) {
                        check_descriptor(&m->layers[i]);
                        if (oci_layer_compression(m->layers[i].media_type, &c) < 0)
                                abort();
                }
                oci_manifest_free(m);
        } else
                check_error(r, TAKE_PTR(err));

        struct oci_index *idx = NULL;
        r = oci_index_parse(buf, size, &idx, &err);
        if (r >= 0) {
                static const char *const platforms[] = { NULL, "linux/amd64", "linux/arm/v7", "linux/arm64/v8",
                                                         "linux/arm/v5", "windows/amd64/v3" };
                for (size_t i = 0; i < idx->n_manifests; i++)
                        check_descriptor(&idx->manifests[i]);
                for (size_t i = 0; i < sizeof(platforms) / sizeof(platforms[0]); i++) {
                        const struct oci_descriptor *d = NULL;
                        r = oci_index_select(idx, platforms[i], &d, &err);
                        if (r >= 0) {
                                if (d < idx->manifests || d >= idx->manifests + idx->n_manifests)
                                        abort();
                        } else
                                check_error(r, TAKE_PTR(err));
                }
                oci_index_free(idx);
        } else
                check_error(r, TAKE_PTR(err));

        struct oci_image_config *c = NULL;
        r = oci_config_parse(buf, size, &c, &err);
        if (r >= 0) {
                if (!c->platform.os || !c->platform.architecture || !c->env || !c->diff_ids)
                        abort();
                for (size_t i = 0; i < c->n_diff_ids; i++)
                        if (!digest_is_valid(c->diff_ids[i]))
                                abort();
                if (c->diff_ids[c->n_diff_ids])
                        abort();
                oci_config_free(c);
        } else
                check_error(r, TAKE_PTR(err));

        /* the platform syntax, on short inputs */
        if (size < 64) {
                char s[64];
                struct oci_platform p = {};
                memcpy(s, data, size);
                s[size] = 0;
                r = oci_platform_parse(s, &p, &err);
                if (r >= 0) {
                        if (!p.os || !p.architecture)
                                abort();
                        oci_platform_done(&p);
                } else
                        check_error(r, TAKE_PTR(err));
        }
        return 0;
}
