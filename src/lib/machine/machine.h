/* A machine's persistent configuration and its place on disk.
 *
 *   $CONTAINER_ROOT/machines/<name>/config.json   this struct, written atomically
 *   $CONTAINER_ROOT/machines/<name>/upper/        the machine's own files (overlay upper dir)
 *   $CONTAINER_ROOT/machines/<name>/work/         overlay work dir
 *   $CONTAINER_ROOT/machines/<name>/console.log   init's console output (written by the runtime)
 *   $CONTAINER_ROOT/machines/<name>/runtime.log   the runtime's stdout/stderr (apiserver opens it; .1 = previous)
 *   $CONTAINER_ROOT/machines/<name>/.lock         flock: every mutation of the machine holds it (apiserver;
 *                                                 held while waiting for the runtime's ready line, so the
 *                                                 runtime must not wait for it)
 *   $CONTAINER_ROOT/machines/.default-<uid>       that owner's default machine's name (a file)
 *   $CONTAINER_ROOT/machines/.tmp-<name>-XXXXXX   a machine being created (renamed into place)
 *   $CONTAINER_RUN/machines/<name>/session.sock   the runtime's session socket (root:container 0660)
 *   $CONTAINER_RUN/machines/<name>/runtime.pid    the runtime's pid
 *   $CONTAINER_RUN/machines/<name>/state          "starting" | "running" | "stopping" (absent = stopped)
 *   $CONTAINER_RUN/machines/<name>/stop-timeout   seconds init may take, written before a SIGTERM stop
 *   $CONTAINER_RUN/machines/<name>/rootfs/        mount point of the machine's root (ns runtime)
 */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "util/error.h"

#define MACHINE_NAME_MAX 57

enum home_mount { HOME_MOUNT_RW, HOME_MOUNT_RO, HOME_MOUNT_NONE };
enum machine_state { MACHINE_STOPPED, MACHINE_STARTING, MACHINE_RUNNING, MACHINE_STOPPING };

struct machine_owner {
        char *username;
        uid_t uid;
        gid_t gid;
        char *home;  /* host home directory, shared at the same path */
        char *shell; /* NULL: chosen inside the machine at provisioning (bash where present, else sh) */
};

struct machine_config {
        char *name;
        char *id;              /* random 32 hex chars, also CONTAINER_MACHINE_ID */
        char *runtime;         /* "ns" or "vm" */
        char *image_reference; /* normalized name the machine was created from */
        char *image_digest;    /* manifest digest */
        char *platform_os, *platform_arch;
        unsigned cpus;
        uint64_t memory;    /* bytes */
        enum home_mount home_mount;
        bool virtualization; /* nested virtualization requested (vm runtime only) */
        char *kernel_path;   /* NULL: default kernel */
        char *ip_address;    /* NULL until networking assigns one */
        char *created;       /* ISO-8601 UTC */
        struct machine_owner owner;
        char **layers;      /* unpacked image layer dirs, bottom first (NULL-terminated) */
        char **env;         /* the image's ENV (NULL-terminated) */
        char *stop_signal;  /* the image's STOPSIGNAL or NULL */
        bool provisioned;   /* first-boot user setup done */
        /* Pending settings (machine set on a running machine) are applied by writing the
         * config; the runtime reads it only at boot, so they take effect at the next boot. */
};

/* Validates a name; the error texts are SPEC's. */
int machine_name_validate(const char *name, struct cm_error **err);
/* Name derived from an image reference: last path component, '-', tag; every character
 * outside [a-z0-9-] becomes '-', trimmed to a valid name. */
char *machine_name_from_image(const char *reference);

/* Parse user input: "512M", "8G", "1.5G", "2GiB", "1024MB" (binary units; no unit = bytes)
 * -> bytes (>= 1 GiB required by the caller). -EINVAL when malformed. */
int machine_parse_memory(const char *s, uint64_t *ret);
/* The same with SPEC's error text, also for < 1 GiB. */
int machine_memory_validate(const char *s, uint64_t *ret, struct cm_error **err);
/* Positive integer with SPEC's error text. */
int machine_cpus_validate(const char *s, unsigned *ret, struct cm_error **err);
/* rw|ro|none with SPEC's error text. */
int machine_home_mount_validate(const char *s, enum home_mount *ret, struct cm_error **err);
/* An absolute path to a readable, non-empty regular file, with SPEC's error texts. */
int machine_kernel_validate(const char *path, struct cm_error **err);
/* true/false/yes/no/on/off/1/0. */
int machine_parse_bool(const char *s, bool *ret);
/* SPEC defaults: cpus = half the host CPUs but at least min(4, host CPUs); memory = half the
 * host RAM in whole GiB, at least 1 GiB. */
unsigned machine_default_cpus(void);
uint64_t machine_default_memory(void);
/* The same rules for a given host (tests). */
unsigned machine_default_cpus_for(unsigned host_cpus);
uint64_t machine_default_memory_for(uint64_t host_bytes);

const char *home_mount_to_string(enum home_mount m);
int home_mount_from_string(const char *s, enum home_mount *ret);
const char *machine_state_to_string(enum machine_state s);

int machine_config_load(const char *machine_dir, struct machine_config **ret, struct cm_error **err);
int machine_config_save(const char *machine_dir, const struct machine_config *c, struct cm_error **err);
json_t *machine_config_to_json(const struct machine_config *c);
int machine_config_from_json(json_t *j, struct machine_config **ret, struct cm_error **err);
void machine_config_free(struct machine_config *c);
static inline void machine_config_freep(struct machine_config **c) { machine_config_free(*c); }
#define _cleanup_machine_config_ _cleanup_(machine_config_freep)

/* Paths (caller frees). */
char *machine_dir(const char *root, const char *name);
char *machine_run_dir(const char *run, const char *name);
/* $CONTAINER_ROOT/machines/.default-<uid>: each owner has their own default machine. */
char *machine_default_path(const char *root, uid_t uid);

/* The machine's state as seen from $CONTAINER_RUN: a live runtime (pid file + process that is
 * a container-runtime) in the state its state file says, else STOPPED. */
enum machine_state machine_state_read(const char *run, const char *name, pid_t *ret_runtime_pid);
/* The live runtime's pid from RUN/machines/NAME/runtime.pid: -ENOENT without a pid file,
 * -ESRCH when that process is gone or is not a container-runtime (a stale file). */
int machine_runtime_pid(const char *run, const char *name, pid_t *ret);

/* Whether an image can boot: /sbin/init, looked up in the unpacked layers (bottom first) as
 * the merged overlay would show it (whiteouts, opaque directories), following symlinks inside
 * the image (absolute targets relative to the image root, at most 40 hops). 0 and the
 * resolved path (optional) when it is an executable regular file; -ENOENT, -ELOOP, -ENOTDIR,
 * -ENOEXEC (not a regular file), -EACCES (not executable) otherwise. */
int machine_image_find_init(char *const *layers, char **ret_path);
