/* Drives layer_unpack() for bench/unpack.sh: unpack-bench LAYER DEST unpacks the layer file into
 * DEST (created; must not exist or be empty) and prints entries, bytes and the diff_id. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "image/unpack.h"

int main(int argc, char **argv) {
        if (argc != 3) {
                fprintf(stderr, "usage: %s LAYER DEST\n", argv[0]);
                return 64;
        }
        _cleanup_close_ int in = open(argv[1], O_RDONLY | O_CLOEXEC);
        if (in < 0) {
                fprintf(stderr, "open %s: %s\n", argv[1], strerror(errno));
                return 1;
        }
        if (mkdir(argv[2], 0755) < 0 && errno != EEXIST) {
                fprintf(stderr, "mkdir %s: %s\n", argv[2], strerror(errno));
                return 1;
        }
        _cleanup_close_ int dest = open(argv[2], O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dest < 0) {
                fprintf(stderr, "open %s: %s\n", argv[2], strerror(errno));
                return 1;
        }
        _cleanup_error_ struct cm_error *err = NULL;
        struct unpack_stats st;
        if (layer_unpack(in, dest, argv[1], &st, &err) < 0) {
                fprintf(stderr, "Error: %s\n", err && err->message ? err->message : "unpack failed");
                return 1;
        }
        printf("%" PRIu64 " entries, %" PRIu64 " bytes, %s\n", st.entries, st.bytes, st.diff_id);
        return 0;
}
