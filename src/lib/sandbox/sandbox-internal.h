/* Internals shared by the sandbox's files (not part of the boundary other modules use). */
#pragma once

#include <stdbool.h>
#include <sched.h>
#include <sys/types.h>

#include "sandbox/sandbox.h"

enum sandbox_init_kind { INIT_UNKNOWN, INIT_SYSTEMD, INIT_BUSYBOX, INIT_SYSVINIT, INIT_OPENRC };

struct sandbox_session {
        pid_t pid;
        int pidfd;
};

struct sandbox {
        char *name;
        char *rootfs;
        int root_fd; /* O_PATH, the merged root in the runtime's mount namespace */
        pid_t init_pid;
        int init_pidfd;
        bool init_exited;
        int init_status;
        enum sandbox_init_kind init_kind;
        char *stop_signal;
        char *cgroup_path; /* host path of the machine's v2 cgroup, NULL if none */
        char **v1_cgroups; /* host paths of v1 cgroups we created (cpu, memory) */
        bool mounted;
        struct sandbox_session *sessions;
        size_t n_sessions;
        void (*on_session_exit)(pid_t pid, int status, void *userdata);
        void *on_session_exit_userdata;
};

/* Files inside the machine root: every lookup is RESOLVE_IN_ROOT of root_fd. */
int sb_openat_root(int root_fd, const char *path, int flags, mode_t mode);
int sb_read_file(int root_fd, const char *path, size_t max, char **ret);
/* Writes path inside the root atomically (temp file + rename in the resolved parent). */
int sb_write_file(int root_fd, const char *path, const char *data, size_t len, mode_t mode, uid_t uid, gid_t gid);
/* mkdir -p inside the root; returns an O_PATH fd of the final directory. */
int sb_mkdir_p_root(int root_fd, const char *path, mode_t mode);
/* The target of a path inside the root, fully resolved within it, as a path from the root. */
int sb_resolve_in_root(int root_fd, const char *path, char **ret);

/* mount.c */
int sb_mount_overlay(const struct sandbox_spec *spec, struct cm_error **err);
/* In the init child, after it entered its namespaces: /dev, /proc, /sys, cgroup, home,
 * console, then pivot_root. On failure returns -errno and names the step in *step. */
int sb_setup_mounts_child(const struct sandbox_spec *spec, bool have_cgroup, bool own_netns, const char **step);

/* cgroup.c */
int sb_cgroup_create(struct sandbox *sb, const struct sandbox_spec *spec, int *ret_dirfd, struct cm_error **err);
/* In the child: join the v1 cgroups (cpu, memory limits on hybrid hosts). */
void sb_cgroup_join_v1(char *const *v1_paths);
int sb_cgroup_remove(const char *path);
/* Removes the v1 limit cgroups of machine `name` (hybrid hosts). */
void sb_cgroup_remove_v1(const char *name);
int sb_cgroup_v2_root(char **ret);
int sb_cgroup_of_pid(pid_t pid, char **ret);
int sb_cpu_affinity(unsigned cpus, cpu_set_t *ret);

/* provision.c */
int sb_prepare_etc(int root_fd, const struct sandbox_spec *spec, struct cm_error **err);

/* stop.c */
enum sandbox_init_kind sb_detect_init(int root_fd);

/* The machine's capability bounding set (init's and every session's). */
int sb_drop_bounding_set(void);
/* Resets signal dispositions and the mask inherited from the runtime. */
void sb_reset_signals(void);
/* Puts fds into 0, 1, 2 (handles overlaps); all other fds become close-on-exec. */
int sb_setup_stdio(int in, int out, int errfd);
