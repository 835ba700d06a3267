/* The machine boundary, shared by both runtimes: build the machine's namespaces and mounts,
 * provision the owner's user on first boot, start the image's init as PID 1, run sessions
 * inside the running machine, and stop it through its init's own shutdown.
 *
 * In the ns runtime the container-runtime process calls this directly and is the parent of
 * the machine's PID 1; in the vm runtime vminitd will call the same code inside the guest. */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "util/error.h"

enum sandbox_home { SANDBOX_HOME_RW, SANDBOX_HOME_RO, SANDBOX_HOME_NONE };

struct sandbox_user {
        const char *name;
        uid_t uid;
        gid_t gid;
        const char *home;  /* host home path, mounted at the same path */
        const char *shell; /* NULL: bash where the image has it, else sh */
};

struct sandbox_spec {
        const char *name;               /* machine name, also the hostname */
        const char *machine_id;         /* CONTAINER_MACHINE_ID for create-user.sh */
        const char *const *lowerdirs;   /* image layers, bottom first */
        const char *upperdir, *workdir; /* the machine's own persistent storage */
        const char *rootfs;             /* where the merged root is mounted (an existing empty dir) */
        const char *const *image_env;   /* the image's ENV; container=container-machine is added */
        const char *stop_signal;        /* the image's STOPSIGNAL (e.g. "SIGRTMIN+3") or NULL */
        struct sandbox_user owner;
        enum sandbox_home home;
        unsigned cpus;                  /* 0 = no limit */
        uint64_t memory;                /* bytes, 0 = no limit */
        const char *ip_address;         /* NULL: none yet; else written to /etc/hosts with the name */
        const char *netns_path;         /* NULL: a new network namespace with lo only */
        int console_fd;                 /* pty slave: /dev/console and init's stdio */
        bool provision;                 /* run first-boot user provisioning before init */
};

struct sandbox; /* a running machine */

/* Mounts the root, provisions (if spec->provision), creates the namespaces and cgroup,
 * and execs the image's /sbin/init as PID 1. The caller (the runtime) is init's parent and
 * must reap it. Errors name the step ("provisioning: ...", "mount overlay: ..."). User
 * provisioning failures use the text "container machine failed to create user: <reason>". */
int sandbox_start(const struct sandbox_spec *spec, struct sandbox **ret, struct cm_error **err);
pid_t sandbox_init_pid(const struct sandbox *sb);

struct sandbox_exec {
        char *const *argv;      /* NULL: the user's login shell from the machine's /etc/passwd */
        char *const *env;       /* complete environment (HOME, USER, ... already filled) */
        const char *cwd;        /* must exist inside; else the user's home, else / */
        uid_t uid;
        gid_t gid;              /* supplementary groups from the machine's /etc/group */
        int stdin_fd, stdout_fd, stderr_fd; /* in pty mode all three are the pty slave */
        bool pty;               /* new session + controlling terminal */
};
/* Starts a process inside the running machine (its namespaces and cgroup, so the machine's
 * systemd sees it). Returns its pid as seen by the caller; the caller reaps it. When the
 * command cannot be started, the process exits 127 (not found) or 126 (not executable) after
 * writing "<cmd>: <reason>" to its stderr, as a shell does. */
int sandbox_exec(struct sandbox *sb, const struct sandbox_exec *e, pid_t *ret_pid, struct cm_error **err);

/* A pty pair from the machine's own devpts instance, for pty sessions: inside the machine
 * the slave is /dev/pts/N (a host pty would be "not a tty" there: ttyname() fails). Both fds
 * are close-on-exec; the master stays with the caller, the slave goes to sandbox_exec. */
int sandbox_open_pty(struct sandbox *sb, int *ret_master, int *ret_slave, struct cm_error **err);

/* Looks up a user of the machine by name or uid in its /etc/passwd (home, shell, gid). */
int sandbox_lookup_user(struct sandbox *sb, const char *name_or_uid, uid_t *ret_uid, gid_t *ret_gid,
                        char **ret_home, char **ret_shell, char **ret_name, struct cm_error **err);

/* Asks init to shut down its own way (systemd: SIGRTMIN+3; sysvinit/OpenRC: telinit 0 or
 * SIGINT...; busybox init: SIGUSR2; the image's STOPSIGNAL when set), waits up to timeout_sec
 * for PID 1 to exit, then kills what is left. Returns once init has exited (reaped by the
 * caller's SIGCHLD handling or here, see sandbox_reaped). */
int sandbox_stop(struct sandbox *sb, unsigned timeout_sec);
/* Tells the sandbox that its init was reaped (the runtime's waitpid saw it). */
void sandbox_reaped(struct sandbox *sb, int status);
/* Session processes (from sandbox_exec) that die while sandbox_stop waits are reaped there,
 * because the kernel keeps a dying PID 1 around until every process of its pid namespace is
 * reaped; their status goes to this callback (status as from waitpid). Optional. */
void sandbox_on_session_exit(struct sandbox *sb, void (*cb)(pid_t pid, int status, void *userdata), void *userdata);
/* Unmounts the root and removes the cgroup; safe to call more than once and after a crash
 * (then with sb == NULL and the spec's paths, see sandbox_cleanup_stale). */
void sandbox_free(struct sandbox *sb);
int sandbox_cleanup_stale(const char *name, const char *rootfs);

/* First-boot provisioning on a mounted root (exported for tests). */
int sandbox_provision(int root_fd, const struct sandbox_spec *spec, struct cm_error **err);
