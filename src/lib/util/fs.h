/* File system helpers. Paths relative to a directory fd; state files written atomically. */
#pragma once

#include <stddef.h>
#include <sys/types.h>

/* Write data to dirfd/name atomically: temp file, fsync, rename, fsync dir. */
int fs_write_atomic(int dirfd, const char *name, const void *data, size_t len, mode_t mode);
/* Read a whole file (max bytes, 0 = 64 MiB) into a NUL-terminated buffer; -EFBIG past max. */
int fs_read_fd(int fd, size_t max, char **ret, size_t *ret_len);
int fs_read_all(int dirfd, const char *name, size_t max, char **ret, size_t *ret_len);
/* mkdir -p relative to dirfd (absolute paths ignore dirfd). */
int fs_mkdir_p(int dirfd, const char *path, mode_t mode);
/* rm -rf of dirfd/name, never following symlinks or crossing mounts. Missing = 0. */
int fs_rm_rf(int dirfd, const char *name);
/* fsync a directory by fd or path. */
int fs_fsync_dir(int dirfd, const char *name);
/* Bytes really allocated (st_blocks*512) by a tree, not following symlinks. */
int fs_disk_usage(int dirfd, const char *name, unsigned long long *ret);
/* Writes all of data (retrying short writes and EINTR); -errno. */
int fs_write_all(int fd, const void *data, size_t len);
/* Copy all bytes from fd in to fd out. */
int fs_copy_fd(int in, int out);
