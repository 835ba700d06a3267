/* Unpacking one layer (a possibly compressed tar stream) into an overlay-ready directory.
 * Whiteouts (.wh.NAME) become overlayfs whiteouts (character device 0:0), opaque markers
 * (.wh..wh..opq) become the xattr trusted.overlay.opaque="y" on their directory. Entries that
 * would land outside the root are refused and nothing is written outside. */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "util/error.h"

struct unpack_stats {
        /* entries: tar entries read (whiteouts included); bytes: size of the uncompressed stream */
        uint64_t entries, bytes;
        char diff_id[72]; /* sha256 of the uncompressed stream */
};

/* Reads the layer from fd (gzip/zstd/plain auto-detected), writes into dest_dirfd (an empty
 * directory). layer_name is used in errors ("layer sha256:ab12…: entry ../x: ..."). */
int layer_unpack(int fd, int dest_dirfd, const char *layer_name, struct unpack_stats *ret_stats,
                 struct cm_error **err);

/* The check applied to every tar entry name: normalizes ("./a//b/" -> "a/b"), refuses absolute
 * paths and ".." components. Returns 0 and the clean relative path (caller frees), "" for the
 * root itself. */
int unpack_clean_path(const char *name, char **ret, struct cm_error **err);
