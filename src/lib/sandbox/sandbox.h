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
        const char *nameserver;         /* NULL: resolv.conf gets the host's nameservers; else only this one */
        int console_fd;                 /* pty slave: /dev/console and init's stdio */
        bool provision;                 /* run first-boot user provisioning before init */
};

struct sandbox; /* a running machine */

/* Mounts the root, provisions (if spec->provision), creates the namespaces and cgroup,
 * and execs the image's /sbin/init as PID 1. The caller (the runtime) is init's parent and
 * must reap it. Errors name the step ("provisioning: ...", "mount overlay: ..."). User
 * provisioning failures use the text "container machine failed to create user: <reason>".
 *
 * What it does to and expects of the caller (ns runtime):
 *  - root in the host's user namespace; called once per process;
 *  - it unshares the caller's mount namespace (CLONE_NEWNS, / made rslave) and mounts the
 *    overlay at spec->rootfs there: a runtime that dies leaves no mount behind. Only the
 *    calling thread switches namespace: call it before starting threads;
 *  - init gets PR_SET_PDEATHSIG(SIGKILL): when the thread that called sandbox_start exits,
 *    the whole machine dies. Keep that thread alive as long as the machine;
 *  - it returns once /sbin/init was exec'd (or with the child's error). Do not reap with
 *    waitpid(-1, ...) while sandbox_start or sandbox_exec run (both wait for a helper pid
 *    of their own; ECHILD is tolerated, but the status would be lost to the caller);
 *  - spec->console_fd: the pty slave, opened O_NOCTTY by the caller; it becomes
 *    /dev/console and init's stdio. The caller keeps the master open (and drained) for
 *    the machine's whole life, from a session that ignores SIGHUP (agetty's vhangup);
 *  - cgroup: <cgroup2 mount>/container-machine/<name>; refused while it holds processes.
 *    cpus/memory go to cpu.max/memory.max where v2 has the controllers, else to v1
 *    cgroups of the same name (hybrid hosts); cpus also sets init's CPU affinity to that
 *    many CPUs so that nproc inside says so. */
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
 * systemd sees it). Returns its pid as seen by the caller; the caller reaps it: the process
 * is the caller's own child (created with CLONE_PARENT by a short-lived helper that joined
 * the machine; the helper is reaped here), so waitpid gives the command's own status and
 * kill() reaches it. It lives in init's current cgroup (init.scope under systemd). When the
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

/* Asks init to shut down its own way (the image's STOPSIGNAL when set; else by what
 * /sbin/init resolves to inside the root: systemd SIGRTMIN+3, busybox SIGUSR2, openrc-init
 * SIGTERM, sysvinit a runlevel-0 request on its /run/initctl FIFO, SIGPWR if that fails;
 * unknown inits SIGTERM), waits up to timeout_sec for PID 1 to exit, then SIGKILLs it
 * (which kills its pid namespace) and cgroup.kill's the cgroup. Returns 0 once init has
 * exited, -ETIMEDOUT if even SIGKILL did not end it within 5 s. It never reaps init: it
 * polls init's pidfd (readable once init is a zombie), so the caller's waitpid keeps
 * init's status; call sandbox_reaped afterwards (or earlier: then it returns at once).
 * Sessions that die meanwhile are reaped here (sandbox_on_session_exit), and init gets a
 * SIGCHLD every 100 ms (systemd-shutdown waits for dead sessions only when woken). */
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
