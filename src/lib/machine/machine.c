/* Machine configuration, validation of user input and the machine's state as the runtime
 * leaves it in $CONTAINER_RUN. */
#include "machine/machine.h"

#include <ctype.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysinfo.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "util/fs.h"
#include "util/json.h"
#include "util/strv.h"

#define GIB (1024ull * 1024 * 1024)

static bool name_char_ok(char c) {
        return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-';
}

static bool name_end_ok(char c) {
        return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

int machine_name_validate(const char *name, struct cm_error **err) {
        if (!name)
                name = "";
        size_t n = strlen(name);
        if (n > MACHINE_NAME_MAX)
                return cm_error_set(err, CM_EINVALID, "machine name cannot be longer than %d", MACHINE_NAME_MAX);
        bool ok = n > 0 && name_end_ok(name[0]) && name_end_ok(name[n - 1]);
        for (size_t i = 0; ok && i < n; i++)
                ok = name_char_ok(name[i]);
        if (!ok)
                return cm_error_set(err, CM_EINVALID,
                                    "machine name '%s' must start and end with a lowercase letter or digit, and "
                                    "contain only lowercase letters, digits, and hyphens",
                                    name);
        return 0;
}

char *machine_name_from_image(const char *reference) {
        if (!reference)
                return NULL;
        /* name[:tag][@digest]: a digest pins, so its first 12 hex digits stand in for a tag */
        _cleanup_free_ char *ref = strdup(reference);
        if (!ref)
                return NULL;
        const char *tag = NULL;
        char short_digest[13];
        char *at = strchr(ref, '@');
        if (at) {
                *at = 0;
                const char *d = strchr(at + 1, ':');
                d = d ? d + 1 : at + 1;
                snprintf(short_digest, sizeof short_digest, "%.12s", d);
                tag = short_digest;
        }
        char *last = strrchr(ref, '/');
        last = last ? last + 1 : ref;
        char *colon = strchr(last, ':');
        if (colon) {
                *colon = 0;
                if (!tag)
                        tag = colon + 1;
        }
        if (!tag || !*tag)
                tag = "latest";
        char *name = NULL;
        if (asprintf(&name, "%s-%s", last, tag) < 0)
                return NULL;
        for (char *p = name; *p; p++)
                if (!name_char_ok(*p))
                        *p = '-';
        /* trim to a valid name: no leading/trailing '-', at most MACHINE_NAME_MAX */
        size_t start = 0;
        while (name[start] == '-')
                start++;
        memmove(name, name + start, strlen(name + start) + 1);
        size_t n = strlen(name);
        if (n > MACHINE_NAME_MAX)
                n = MACHINE_NAME_MAX;
        while (n > 0 && name[n - 1] == '-')
                n--;
        name[n] = 0;
        if (n == 0) {
                free(name);
                return strdup("machine");
        }
        return name;
}

int machine_parse_memory(const char *s, uint64_t *ret) {
        if (!s)
                return -EINVAL;
        while (isspace((unsigned char)*s))
                s++;
        if (!isdigit((unsigned char)*s) && *s != '.')
                return -EINVAL;
        char *end = NULL;
        errno = 0;
        double v = strtod(s, &end);
        if (errno || end == s || !isfinite(v) || v < 0)
                return -EINVAL;
        /* unit: K/M/G/T (binary), optionally followed by "B" or "iB"; none = bytes */
        double mult = 1;
        const char *u = end;
        switch (tolower((unsigned char)*u)) {
        case 'k': mult = 1024.0; u++; break;
        case 'm': mult = 1024.0 * 1024; u++; break;
        case 'g': mult = 1024.0 * 1024 * 1024; u++; break;
        case 't': mult = 1024.0 * 1024 * 1024 * 1024; u++; break;
        case 'b': break;
        case 0: break;
        default: return -EINVAL;
        }
        if (mult > 1 && tolower((unsigned char)*u) == 'i' && tolower((unsigned char)u[1]) == 'b')
                u += 2;
        else if (tolower((unsigned char)*u) == 'b')
                u++;
        while (isspace((unsigned char)*u))
                u++;
        if (*u)
                return -EINVAL;
        double bytes = v * mult;
        if (bytes >= 18446744073709551615.0)
                return -ERANGE;
        if (mult == 1 && v != (double)(uint64_t)v)
                return -EINVAL; /* fractional bytes */
        *ret = (uint64_t)(bytes + 0.5);
        return 0;
}

int machine_memory_validate(const char *s, uint64_t *ret, struct cm_error **err) {
        uint64_t v = 0;
        if (machine_parse_memory(s, &v) < 0 || v < GIB)
                return cm_error_set(err, CM_EINVALID, "invalid memory value '%s'. Must be greater than 1gb.", s ? s : "");
        *ret = v;
        return 0;
}

int machine_cpus_validate(const char *s, unsigned *ret, struct cm_error **err) {
        const char *p = s ? s : "";
        bool ok = *p != 0;
        for (const char *q = p; ok && *q; q++)
                ok = isdigit((unsigned char)*q);
        unsigned long v = 0;
        if (ok) {
                errno = 0;
                v = strtoul(p, NULL, 10);
                ok = errno == 0 && v > 0 && v <= 4096;
        }
        if (!ok)
                return cm_error_set(err, CM_EINVALID, "invalid CPU count '%s'. Must be a positive integer (e.g., 4).", p);
        *ret = (unsigned)v;
        return 0;
}

int machine_home_mount_validate(const char *s, enum home_mount *ret, struct cm_error **err) {
        if (home_mount_from_string(s, ret) < 0)
                return cm_error_set(err, CM_EINVALID, "invalid home mount option '%s'. Valid options: ro, rw, none",
                                    s ? s : "");
        return 0;
}

int machine_kernel_validate(const char *path, struct cm_error **err) {
        if (!path || path[0] != '/')
                return cm_error_set(err, CM_EINVALID, "kernel binary not found at '%s'", path ? path : "");
        struct stat st;
        if (stat(path, &st) < 0)
                return cm_error_set(err, CM_EINVALID, "kernel binary not found at '%s'", path);
        if (S_ISDIR(st.st_mode))
                return cm_error_set(err, CM_EINVALID, "kernel binary at '%s' is a directory", path);
        if (!S_ISREG(st.st_mode))
                return cm_error_set(err, CM_EINVALID, "kernel binary at '%s' is not a regular file", path);
        if (access(path, R_OK) < 0)
                return cm_error_set(err, CM_EINVALID, "kernel binary at '%s' is not readable", path);
        if (st.st_size == 0)
                return cm_error_set(err, CM_EINVALID, "kernel binary at '%s' is empty", path);
        return 0;
}

int machine_parse_bool(const char *s, bool *ret) {
        if (!s)
                return -EINVAL;
        const char *yes[] = { "true", "yes", "on", "1" }, *no[] = { "false", "no", "off", "0" };
        for (size_t i = 0; i < ELEMENTSOF(yes); i++) {
                if (strcasecmp(s, yes[i]) == 0) {
                        *ret = true;
                        return 0;
                }
                if (strcasecmp(s, no[i]) == 0) {
                        *ret = false;
                        return 0;
                }
        }
        return -EINVAL;
}

static unsigned host_cpus(void) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        return n > 0 ? (unsigned)n : 1;
}

unsigned machine_default_cpus_for(unsigned host) {
        if (host == 0)
                host = 1;
        unsigned half = host / 2;
        unsigned floor4 = host < 4 ? host : 4;
        return half > floor4 ? half : floor4;
}

unsigned machine_default_cpus(void) {
        return machine_default_cpus_for(host_cpus());
}

uint64_t machine_default_memory_for(uint64_t host_bytes) {
        uint64_t gib = host_bytes / 2 / GIB;
        return (gib < 1 ? 1 : gib) * GIB;
}

uint64_t machine_default_memory(void) {
        struct sysinfo si;
        if (sysinfo(&si) < 0)
                return GIB;
        return machine_default_memory_for((uint64_t)si.totalram * si.mem_unit);
}

static const char *const home_mount_names[] = {
        [HOME_MOUNT_RW] = "rw",
        [HOME_MOUNT_RO] = "ro",
        [HOME_MOUNT_NONE] = "none",
};

const char *home_mount_to_string(enum home_mount m) {
        return (unsigned)m < ELEMENTSOF(home_mount_names) ? home_mount_names[m] : "rw";
}

int home_mount_from_string(const char *s, enum home_mount *ret) {
        if (!s)
                return -EINVAL;
        for (size_t i = 0; i < ELEMENTSOF(home_mount_names); i++)
                if (streq(s, home_mount_names[i])) {
                        *ret = (enum home_mount)i;
                        return 0;
                }
        return -EINVAL;
}

static const char *const state_names[] = {
        [MACHINE_STOPPED] = "stopped",
        [MACHINE_STARTING] = "starting",
        [MACHINE_RUNNING] = "running",
        [MACHINE_STOPPING] = "stopping",
};

const char *machine_state_to_string(enum machine_state s) {
        return (unsigned)s < ELEMENTSOF(state_names) ? state_names[s] : "stopped";
}

/* ---- config JSON ---- */

static json_t *str_or_null(const char *s) {
        return s ? json_string(s) : json_null();
}

json_t *machine_config_to_json(const struct machine_config *c) {
        json_t *j = json_object();
        if (!j)
                return NULL;
        json_object_set_new(j, "version", json_integer(1));
        json_object_set_new(j, "name", str_or_null(c->name));
        json_object_set_new(j, "id", str_or_null(c->id));
        json_object_set_new(j, "runtime", str_or_null(c->runtime));
        json_object_set_new(j, "image", json_pack("{s:o,s:o}", "reference", str_or_null(c->image_reference), "digest",
                                                  str_or_null(c->image_digest)));
        json_object_set_new(j, "platform", json_pack("{s:o,s:o}", "os", str_or_null(c->platform_os), "architecture",
                                                     str_or_null(c->platform_arch)));
        json_object_set_new(j, "cpus", json_integer(c->cpus));
        json_object_set_new(j, "memory", json_integer((json_int_t)c->memory));
        json_object_set_new(j, "homeMount", json_string(home_mount_to_string(c->home_mount)));
        json_object_set_new(j, "virtualization", json_boolean(c->virtualization));
        json_object_set_new(j, "kernelPath", str_or_null(c->kernel_path));
        json_object_set_new(j, "ipAddress", str_or_null(c->ip_address));
        json_object_set_new(j, "created", str_or_null(c->created));
        json_object_set_new(j, "owner",
                            json_pack("{s:o,s:I,s:I,s:o,s:o}", "username", str_or_null(c->owner.username), "uid",
                                      (json_int_t)c->owner.uid, "gid", (json_int_t)c->owner.gid, "home",
                                      str_or_null(c->owner.home), "shell", str_or_null(c->owner.shell)));
        json_object_set_new(j, "layers", c->layers ? json_from_strv(c->layers) : json_array());
        json_object_set_new(j, "env", c->env ? json_from_strv(c->env) : json_array());
        json_object_set_new(j, "stopSignal", str_or_null(c->stop_signal));
        json_object_set_new(j, "provisioned", json_boolean(c->provisioned));
        return j;
}

static int dup_opt(const json_t *obj, const char *key, char **ret) {
        json_t *v = json_object_get(obj, key);
        if (!v || json_is_null(v)) {
                *ret = NULL;
                return 0;
        }
        if (!json_is_string(v))
                return -EINVAL;
        *ret = strdup(json_string_value(v));
        return *ret ? 0 : -ENOMEM;
}

static int get_uint(const json_t *obj, const char *key, uint64_t max, uint64_t *ret) {
        json_t *v = json_object_get(obj, key);
        if (!json_is_integer(v) || json_integer_value(v) < 0 || (uint64_t)json_integer_value(v) > max)
                return -EINVAL;
        *ret = (uint64_t)json_integer_value(v);
        return 0;
}

int machine_config_from_json(json_t *j, struct machine_config **ret, struct cm_error **err) {
        if (!json_is_object(j))
                return cm_error_set(err, CM_EINVALID, "machine config: not a JSON object");
        struct machine_config *c = calloc(1, sizeof *c);
        if (!c)
                return cm_error_set(err, ENOMEM, "out of memory");
        const char *bad = NULL;
        json_t *image = json_object_get(j, "image"), *platform = json_object_get(j, "platform"),
               *owner = json_object_get(j, "owner");
        uint64_t u = 0;
#define FIELD(expr, what)                                                                                             \
        do {                                                                                                          \
                if (!bad && (expr) < 0)                                                                               \
                        bad = what;                                                                                   \
        } while (0)
        FIELD(dup_opt(j, "name", &c->name), "name");
        if (!bad && (!c->name || machine_name_validate(c->name, NULL) < 0))
                bad = "name";
        FIELD(dup_opt(j, "id", &c->id), "id");
        FIELD(dup_opt(j, "runtime", &c->runtime), "runtime");
        if (!bad && !c->runtime)
                bad = "runtime";
        FIELD(dup_opt(image, "reference", &c->image_reference), "image.reference");
        FIELD(dup_opt(image, "digest", &c->image_digest), "image.digest");
        FIELD(dup_opt(platform, "os", &c->platform_os), "platform.os");
        FIELD(dup_opt(platform, "architecture", &c->platform_arch), "platform.architecture");
        FIELD(get_uint(j, "cpus", 1u << 20, &u), "cpus");
        c->cpus = (unsigned)u;
        FIELD(get_uint(j, "memory", INT64_MAX, &u), "memory");
        c->memory = u;
        const char *hm = json_get_str(j, "homeMount");
        if (!hm)
                c->home_mount = HOME_MOUNT_RW;
        else
                FIELD(home_mount_from_string(hm, &c->home_mount), "homeMount");
        c->virtualization = json_is_true(json_object_get(j, "virtualization"));
        FIELD(dup_opt(j, "kernelPath", &c->kernel_path), "kernelPath");
        FIELD(dup_opt(j, "ipAddress", &c->ip_address), "ipAddress");
        FIELD(dup_opt(j, "created", &c->created), "created");
        if (!bad && !json_is_object(owner))
                bad = "owner";
        FIELD(dup_opt(owner, "username", &c->owner.username), "owner.username");
        FIELD(get_uint(owner, "uid", UINT32_MAX - 1, &u), "owner.uid");
        c->owner.uid = (uid_t)u;
        FIELD(get_uint(owner, "gid", UINT32_MAX - 1, &u), "owner.gid");
        c->owner.gid = (gid_t)u;
        FIELD(dup_opt(owner, "home", &c->owner.home), "owner.home");
        FIELD(dup_opt(owner, "shell", &c->owner.shell), "owner.shell");
        json_t *layers = json_object_get(j, "layers");
        if (!bad) {
                c->layers = json_to_strv(layers);
                if (!c->layers)
                        bad = "layers";
        }
        json_t *env = json_object_get(j, "env");
        if (!bad) {
                c->env = env ? json_to_strv(env) : calloc(1, sizeof(char *));
                if (!c->env)
                        bad = "env";
        }
        FIELD(dup_opt(j, "stopSignal", &c->stop_signal), "stopSignal");
        c->provisioned = json_is_true(json_object_get(j, "provisioned"));
#undef FIELD
        if (bad) {
                machine_config_free(c);
                return cm_error_set(err, CM_EINVALID, "machine config: missing or invalid field '%s'", bad);
        }
        *ret = c;
        return 0;
}

int machine_config_load(const char *mdir, struct machine_config **ret, struct cm_error **err) {
        _cleanup_free_ char *path = NULL;
        if (asprintf(&path, "%s/config.json", mdir) < 0)
                return cm_error_set(err, ENOMEM, "out of memory");
        _cleanup_free_ char *data = NULL;
        size_t len = 0;
        int r = fs_read_all(AT_FDCWD, path, 4u << 20, &data, &len);
        if (r < 0)
                return cm_error_set(err, -r, "cannot read %s: %s", path, strerror(-r));
        _cleanup_free_ char *msg = NULL;
        _cleanup_json_ json_t *j = json_parse_buf(data, len, &msg);
        if (!j)
                return cm_error_set(err, CM_EINVALID, "%s: %s", path, msg ? msg : "invalid JSON");
        r = machine_config_from_json(j, ret, err);
        if (r < 0)
                cm_error_prefix(err, "%s", path);
        return r;
}

int machine_config_save(const char *mdir, const struct machine_config *c, struct cm_error **err) {
        _cleanup_json_ json_t *j = machine_config_to_json(c);
        if (!j)
                return cm_error_set(err, ENOMEM, "out of memory");
        _cleanup_close_ int dfd = open(mdir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dfd < 0)
                return cm_error_set(err, errno, "cannot open %s: %s", mdir, strerror(errno));
        int r = json_write_atomic(dfd, "config.json", j, 0644);
        if (r < 0)
                return cm_error_set(err, -r, "cannot write %s/config.json: %s", mdir, strerror(-r));
        return 0;
}

void machine_config_free(struct machine_config *c) {
        if (!c)
                return;
        free(c->name);
        free(c->id);
        free(c->runtime);
        free(c->image_reference);
        free(c->image_digest);
        free(c->platform_os);
        free(c->platform_arch);
        free(c->kernel_path);
        free(c->ip_address);
        free(c->created);
        free(c->owner.username);
        free(c->owner.home);
        free(c->owner.shell);
        strv_free(c->layers);
        strv_free(c->env);
        free(c->stop_signal);
        free(c);
}

/* ---- paths ---- */

char *machine_dir(const char *root, const char *name) {
        char *p = NULL;
        if (asprintf(&p, "%s/machines/%s", root, name) < 0)
                return NULL;
        return p;
}

char *machine_run_dir(const char *run, const char *name) {
        char *p = NULL;
        if (asprintf(&p, "%s/machines/%s", run, name) < 0)
                return NULL;
        return p;
}

char *machine_default_path(const char *root, uid_t uid) {
        char *p = NULL;
        if (asprintf(&p, "%s/machines/.default-%u", root, (unsigned)uid) < 0)
                return NULL;
        return p;
}

/* ---- state ---- */

/* A dead process whose parent has not reaped it yet (a zombie) is gone for our purposes. */
static bool is_zombie(pid_t pid) {
        char path[64];
        snprintf(path, sizeof path, "/proc/%ld/stat", (long)pid);
        _cleanup_free_ char *data = NULL;
        size_t len = 0;
        if (fs_read_all(AT_FDCWD, path, 4096, &data, &len) < 0)
                return true;
        const char *rp = strrchr(data, ')'); /* comm may contain anything, but not after the last ')' */
        return !rp || rp[1] != ' ' || rp[2] == 'Z' || rp[2] == 'X';
}

static bool is_runtime_process(pid_t pid) {
        char path[64], buf[256];
        if (is_zombie(pid))
                return false;
        snprintf(path, sizeof path, "/proc/%ld/comm", (long)pid);
        _cleanup_free_ char *comm = NULL;
        size_t len = 0;
        if (fs_read_all(AT_FDCWD, path, 4096, &comm, &len) < 0)
                return false;
        if (len > 0 && comm[len - 1] == '\n')
                comm[len - 1] = 0;
        /* comm is cut at 15 characters: "container-runti" */
        if (strncmp(comm, "container-runtime", strlen(comm) > 0 ? strlen(comm) : 1) == 0)
                return true;
        snprintf(path, sizeof path, "/proc/%ld/cmdline", (long)pid);
        _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                return false;
        ssize_t n = read(fd, buf, sizeof buf - 1);
        if (n <= 0)
                return false;
        buf[n] = 0; /* argv[0] ends at the first NUL */
        const char *base = strrchr(buf, '/');
        base = base ? base + 1 : buf;
        return streq(base, "container-runtime");
}

int machine_runtime_pid(const char *run, const char *name, pid_t *ret) {
        _cleanup_free_ char *path = NULL;
        if (asprintf(&path, "%s/machines/%s/runtime.pid", run, name) < 0)
                return -ENOMEM;
        _cleanup_free_ char *data = NULL;
        size_t len = 0;
        int r = fs_read_all(AT_FDCWD, path, 64, &data, &len);
        if (r < 0)
                return r;
        char *end = NULL;
        long pid = strtol(data, &end, 10);
        if (pid <= 1 || end == data)
                return -EINVAL;
        if (kill((pid_t)pid, 0) < 0 && errno == ESRCH)
                return -ESRCH;
        if (!is_runtime_process((pid_t)pid))
                return -ESRCH;
        *ret = (pid_t)pid;
        return 0;
}

enum machine_state machine_state_read(const char *run, const char *name, pid_t *ret_runtime_pid) {
        pid_t pid = 0;
        if (machine_runtime_pid(run, name, &pid) < 0)
                return MACHINE_STOPPED;
        _cleanup_free_ char *path = NULL;
        if (asprintf(&path, "%s/machines/%s/state", run, name) < 0)
                return MACHINE_STOPPED;
        _cleanup_free_ char *data = NULL;
        size_t len = 0;
        /* a live runtime without a state file is still coming up */
        enum machine_state s = MACHINE_STARTING;
        if (fs_read_all(AT_FDCWD, path, 64, &data, &len) >= 0) {
                while (len > 0 && isspace((unsigned char)data[len - 1]))
                        data[--len] = 0;
                if (streq(data, "running"))
                        s = MACHINE_RUNNING;
                else if (streq(data, "stopping"))
                        s = MACHINE_STOPPING;
                else if (streq(data, "stopped"))
                        s = MACHINE_STOPPING; /* the runtime is still there, on its way out */
        }
        if (ret_runtime_pid)
                *ret_runtime_pid = pid;
        return s;
}

/* ---- the image must boot: /sbin/init inside the layers ---- */

#define OVERLAY_OPAQUE_XATTR "trusted.overlay.opaque"

static bool is_whiteout(const struct stat *st) {
        return S_ISCHR(st->st_mode) && st->st_rdev == makedev(0, 0);
}

static bool is_opaque(const char *dir) {
        char v[4];
        ssize_t n = lgetxattr(dir, OVERLAY_OPAQUE_XATTR, v, sizeof v);
        return n == 1 && v[0] == 'y';
}

/* Looks up one canonical path (its parents are real directories of the merged view) in the
 * layers, top-down, as overlayfs would: returns 1 with the topmost entry's stat (and its
 * symlink target, if it is one), 0 when absent or hidden by a whiteout or opaque directory. */
static int lookup_merged(char *const *layers, size_t n_layers, const char *path, struct stat *ret_st,
                         char **ret_target) {
        /* path is canonical ("/a/b/c", every parent a real directory in the merged view). Walk
         * the layers top-down; a whiteout of the path or of any parent, or an opaque parent,
         * hides everything below. */
        for (size_t li = n_layers; li-- > 0;) {
                const char *root = layers[li];
                /* does this layer hide lower ones for this path? check each parent prefix */
                _cleanup_free_ char *full = NULL;
                if (asprintf(&full, "%s%s", root, path) < 0)
                        return -ENOMEM;
                struct stat st;
                if (lstat(full, &st) == 0) {
                        if (is_whiteout(&st))
                                return 0;
                        *ret_st = st;
                        if (S_ISLNK(st.st_mode)) {
                                char buf[PATH_MAX];
                                ssize_t n = readlink(full, buf, sizeof buf - 1);
                                if (n < 0)
                                        return -errno;
                                buf[n] = 0;
                                *ret_target = strdup(buf);
                                if (!*ret_target)
                                        return -ENOMEM;
                        } else
                                *ret_target = NULL;
                        return 1;
                }
                /* absent here: is a parent whited out or opaque in this layer? */
                _cleanup_free_ char *p = strdup(path);
                if (!p)
                        return -ENOMEM;
                bool hidden = false;
                for (char *slash = strrchr(p, '/'); slash && !hidden; slash = strrchr(p, '/')) {
                        *slash = 0;
                        if (!*p)
                                break; /* the layer's root */
                        _cleanup_free_ char *dir = NULL;
                        if (asprintf(&dir, "%s%s", root, p) < 0)
                                return -ENOMEM;
                        struct stat ds;
                        /* any parent present here that is not a plain directory hides the lower ones */
                        if (lstat(dir, &ds) == 0 && (is_whiteout(&ds) || !S_ISDIR(ds.st_mode) || is_opaque(dir)))
                                hidden = true;
                }
                if (hidden)
                        return 0;
        }
        return 0;
}

/* Resolves path component-wise inside the image, following symlinks (bounded; absolute
 * targets stay inside the image root). *ret is the canonical path, *ret_st its stat. */
static int resolve_in_image(char *const *layers, size_t n_layers, const char *path, int *hops, struct stat *ret_st,
                            char **ret) {
        /* components still to walk, and the canonical prefix built so far */
        _cleanup_free_ char *todo = strdup(path);
        _cleanup_free_ char *cur = strdup("");
        if (!todo || !cur)
                return -ENOMEM;
        struct stat st = { .st_mode = S_IFDIR };
        char *rest = todo;
        for (;;) {
                while (*rest == '/')
                        rest++;
                if (!*rest)
                        break;
                char *slash = strchr(rest, '/');
                size_t clen = slash ? (size_t)(slash - rest) : strlen(rest);
                _cleanup_free_ char *comp = strndup(rest, clen);
                if (!comp)
                        return -ENOMEM;
                rest += clen;
                if (streq(comp, "."))
                        continue;
                if (streq(comp, "..")) {
                        char *s = strrchr(cur, '/');
                        if (s)
                                *s = 0;
                        continue;
                }
                if (!S_ISDIR(st.st_mode))
                        return -ENOTDIR;
                _cleanup_free_ char *next = NULL;
                if (asprintf(&next, "%s/%s", cur, comp) < 0)
                        return -ENOMEM;
                _cleanup_free_ char *target = NULL;
                int r = lookup_merged(layers, n_layers, next, &st, &target);
                if (r < 0)
                        return r;
                if (r == 0)
                        return -ENOENT;
                if (target) {
                        if (++*hops > 40)
                                return -ELOOP;
                        /* absolute targets are relative to the image root; relative ones to cur */
                        _cleanup_free_ char *nt = NULL;
                        if (asprintf(&nt, "%s%s%s%s", target[0] == '/' ? "" : cur, target[0] == '/' ? "" : "/",
                                     target, rest) < 0)
                                return -ENOMEM;
                        free(todo);
                        todo = TAKE_PTR(nt);
                        rest = todo;
                        free(cur);
                        cur = strdup("");
                        if (!cur)
                                return -ENOMEM;
                        st = (struct stat){ .st_mode = S_IFDIR };
                        continue;
                }
                free(cur);
                cur = TAKE_PTR(next);
        }
        *ret_st = st;
        *ret = *cur ? TAKE_PTR(cur) : strdup("/");
        return *ret ? 0 : -ENOMEM;
}

int machine_image_find_init(char *const *layers, char **ret_path) {
        size_t n = strv_length(layers);
        if (n == 0)
                return -ENOENT;
        int hops = 0;
        struct stat st;
        _cleanup_free_ char *p = NULL;
        int r = resolve_in_image(layers, n, "/sbin/init", &hops, &st, &p);
        if (r < 0)
                return r;
        if (!S_ISREG(st.st_mode))
                return -ENOEXEC;
        if (!(st.st_mode & 0111))
                return -EACCES;
        if (ret_path)
                *ret_path = TAKE_PTR(p);
        return 0;
}
