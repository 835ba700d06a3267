/* libFuzzer target for image/unpack: the input is a layer (tar, gzip or zstd), unpacked into a
 * fresh directory beside a sentinel directory; whatever the layer holds, nothing may appear
 * outside the destination. The input's first line also goes through unpack_clean_path, whose
 * output must be a clean relative path. Run as root (owners, devices, xattrs), e.g.
 *   fuzz-tar -max_total_time=60 -max_len=65536 CORPUS_DIR */
#include <dirent.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>

#include "image/unpack.h"
#include "util/fs.h"

static void check_clean_path(const uint8_t *data, size_t size) {
        size_t len = 0;
        while (len < size && len < 4096 && data[len] != '\n')
                len++;
        char *name = strndup((const char *)data, len);
        if (!name)
                return;
        char *clean = NULL;
        struct cm_error *err = NULL;
        if (unpack_clean_path(name, &clean, &err) == 0) {
                if (clean[0] == '/' || strstr(clean, "//") || (*clean && clean[strlen(clean) - 1] == '/'))
                        __builtin_trap();
                for (char *c = clean; *c;) {
                        size_t n = strcspn(c, "/");
                        if ((n == 1 && c[0] == '.') || (n == 2 && c[0] == '.' && c[1] == '.'))
                                __builtin_trap();
                        c += n;
                        if (*c == '/')
                                c++;
                }
        } else if (!err || err->code != CM_EUNSAFE)
                __builtin_trap();
        free(clean);
        cm_error_free(err);
        free(name);
}

/* base holds exactly "dest" and the empty "sentinel". */
static void check_outside(int base_fd) {
        int fd = openat(base_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
        if (!d)
                __builtin_trap();
        struct dirent *de;
        while ((de = readdir(d)))
                if (!streq(de->d_name, ".") && !streq(de->d_name, "..") && !streq(de->d_name, "dest") &&
                    !streq(de->d_name, "sentinel"))
                        __builtin_trap();
        closedir(d);
        fd = openat(base_fd, "sentinel", O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        d = fd >= 0 ? fdopendir(fd) : NULL;
        if (!d)
                __builtin_trap();
        while ((de = readdir(d)))
                if (!streq(de->d_name, ".") && !streq(de->d_name, ".."))
                        __builtin_trap();
        closedir(d);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        check_clean_path(data, size);

        /* tmpfs when there is one: thousands of runs create and remove trees */
        char base[64];
        strcpy(base, "/dev/shm/cm-fuzz-tar-XXXXXX");
        if (!mkdtemp(base)) {
                strcpy(base, "/tmp/cm-fuzz-tar-XXXXXX");
                if (!mkdtemp(base))
                        abort();
        }
        int base_fd = open(base, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (base_fd < 0 || mkdirat(base_fd, "dest", 0755) < 0 || mkdirat(base_fd, "sentinel", 0755) < 0)
                abort();
        int dest_fd = openat(base_fd, "dest", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        int in = memfd_create("layer", MFD_CLOEXEC);
        if (dest_fd < 0 || in < 0)
                abort();
        for (size_t off = 0; off < size;) {
                ssize_t n = write(in, data + off, size - off);
                if (n <= 0)
                        abort();
                off += (size_t)n;
        }
        lseek(in, 0, SEEK_SET);

        struct unpack_stats st;
        struct cm_error *err = NULL;
        int r = layer_unpack(in, dest_fd, "fuzz", &st, &err);
        if (r < 0 && (!err || !err->message))
                __builtin_trap(); /* every failure says why */
        if (r >= 0 && err)
                __builtin_trap();
        cm_error_free(err);
        check_outside(base_fd);

        close(in);
        close(dest_fd);
        close(base_fd);
        if (fs_rm_rf(AT_FDCWD, base) < 0)
                abort();
        return 0;
}
