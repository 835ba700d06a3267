/* The content store: an OCI image layout under $CONTAINER_ROOT/content (readable by skopeo
 * as oci:$CONTAINER_ROOT/content:<name>), plus unpacked layers under $CONTAINER_ROOT/layers.
 *
 * Image names in index.json are full normalized references (image_ref_format), stored in the
 * annotation org.opencontainers.image.ref.name. Blobs become visible only once their digest
 * and size are verified. Safe for use by several threads of one process and by several
 * processes (index.json updates are serialized by a lock file). */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#include "image/manifest.h"
#include "util/digest.h"
#include "util/error.h"

struct image_store;
struct blob_writer;

int image_store_open(const char *root, struct image_store **ret, struct cm_error **err);
void image_store_free(struct image_store *s);
const char *image_store_root(const struct image_store *s);

/* Operations that add to the store (pull, load, import) are bracketed by these: when one
 * fails and no other is in flight, the blobs and layers it added that no name references
 * are removed again, so a failed operation leaves the store as it was. (With several in
 * flight, leftovers are unprotected after FRESH_TTL and go at the next gc.) */
time_t image_store_op_begin(struct image_store *s);
void image_store_op_end(struct image_store *s, time_t started, bool failed);

/* ---- blobs ---- */
bool image_store_blob_exists(struct image_store *s, const char *digest);
/* O_RDONLY|O_CLOEXEC fd of a blob, or -ENOENT. */
int image_store_blob_open(struct image_store *s, const char *digest);
/* Reads a (small) blob whole and verifies its digest. max 0 = 16 MiB. */
int image_store_blob_read(struct image_store *s, const char *digest, size_t max, char **ret, size_t *ret_len,
                          struct cm_error **err);
/* Stores bytes we produced ourselves (manifests, configs); returns their digest. */
int image_store_blob_put(struct image_store *s, const void *data, size_t len, char ret_digest[DIGEST_STR_MAX],
                         struct cm_error **err);
/* Streaming ingest. expected_digest/expected_size may be NULL/-1 (then commit computes them).
 * Data goes to a private temp file; commit verifies digest and size, then renames into place
 * (an existing identical blob is fine). abort (or free without commit) removes the temp file. */
int image_store_blob_begin(struct image_store *s, const char *expected_digest, int64_t expected_size,
                           struct blob_writer **ret, struct cm_error **err);
int blob_writer_write(struct blob_writer *w, const void *data, size_t len, struct cm_error **err);
uint64_t blob_writer_size(const struct blob_writer *w);
/* Discards what was written so far (restart of an interrupted download). */
int blob_writer_reset(struct blob_writer *w);
/* commit and abort both consume w (commit frees it on failure too, leaving nothing visible). */
int blob_writer_commit(struct blob_writer *w, char ret_digest[DIGEST_STR_MAX], struct cm_error **err);
void blob_writer_abort(struct blob_writer *w);
/* Blobs committed by this handle stay protected from image_store_gc until a name reaches
 * them (image_store_tag) or an hour has passed: a pull tags only after all its downloads. */

/* ---- names ---- */
/* Points name at a manifest or index descriptor (replacing an older target). */
int image_store_tag(struct image_store *s, const char *name, const struct oci_descriptor *target,
                    struct cm_error **err);
/* -ENOENT when the name is unknown. ret is filled with copies (oci_descriptor_done frees). */
int image_store_resolve(struct image_store *s, const char *name, struct oci_descriptor *ret);
int image_store_untag(struct image_store *s, const char *name, struct cm_error **err);

struct image_store_entry {
        char *name;
        struct oci_descriptor target;
};
int image_store_list(struct image_store *s, struct image_store_entry **ret, size_t *ret_n);
void image_store_entries_free(struct image_store_entry *e, size_t n);

/* Removes blobs and unpacked layers that no name references any more (through indexes,
 * manifests and configs). in_use(diff_id) may protect layers still used by machines. */
int image_store_gc(struct image_store *s, bool (*layer_in_use)(const char *diff_id, void *ud), void *ud,
                   struct cm_error **err);
/* The in_use check gc uses when called without one (e.g. by image_remove): the machine
 * store registers it so layers under machines survive the removal of their image. */
void image_store_set_layer_in_use(struct image_store *s, bool (*layer_in_use)(const char *diff_id, void *ud),
                                  void *ud);

/* Calls fn for target and every blob it reaches that the store can read (an index's
 * manifests that are present, configs, layers), each once. fn returning < 0 stops the walk. */
typedef int (*image_store_walk_fn)(const char *digest, const char *media_type, int64_t size, void *ud);
int image_store_walk(struct image_store *s, const struct oci_descriptor *target, image_store_walk_fn fn, void *ud,
                     struct cm_error **err);

/* ---- unpacked layers ($CONTAINER_ROOT/layers/<diff-id hex>) ---- */
/* Makes sure the layer with this diff_id is unpacked from blob_digest; two callers at once
 * share the work (the second waits for the first). Verifies the unpacked stream's diff_id. */
int image_store_layer_ensure(struct image_store *s, const char *blob_digest, const char *diff_id,
                             struct cm_error **err);
/* Absolute path of an unpacked layer directory (caller frees). */
char *image_store_layer_path(struct image_store *s, const char *diff_id);
