#include "util/config.h"
#include <fcntl.h>

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "util/fs.h"
#include "util/json.h"
#include "util/strv.h"

const struct cm_property cm_properties[] = {
        { "registry.mirrors", "list", "", "mirrors tried first for docker.io images (e.g. http://127.0.0.1:5000)" },
        { "registry.insecure", "list", "", "registries (host[:port]) reached over plain HTTP" },
        { "registry.timeout", "int", "30", "seconds a registry request may stall before it is retried" },
        { "machine.runtime", "string", "auto", "default runtime of new machines: auto, vm or ns" },
        { "machine.cpus", "int", "0", "default CPUs of new machines (0 = automatic)" },
        { "machine.memory", "string", "", "default memory of new machines (empty = automatic)" },
        { "network.subnet", "string", "192.168.64.0/24", "IPv4 subnet of the machines' bridge" },
        { "network.bridge", "string", "container0", "name of the machines' bridge" },
        { "network.mode", "string", "bridge",
          "bridge: machines get an address on the bridge; none: no network (lo only, no address)" },
        { NULL, NULL, NULL, NULL },
};

static const char *env_or(const char *name, const char *def) {
        const char *v = getenv(name);
        return v && *v ? v : def;
}

const char *cm_root_dir(void) { return env_or("CONTAINER_ROOT", CM_DEFAULT_ROOT); }
const char *cm_run_dir(void) { return env_or("CONTAINER_RUN", CM_DEFAULT_RUN); }

const char *cm_api_socket_path(void) {
        static char buf[PATH_MAX];
        snprintf(buf, sizeof buf, "%s/apiserver.sock", cm_run_dir());
        return buf;
}

char *cm_find_program(const char *env_var, const char *name, const char *build_subdir) {
        const char *env = getenv(env_var);
        if (env && *env)
                return strdup(env);
        char self[PATH_MAX];
        ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
        char *p = NULL;
        if (n > 0) {
                self[n] = 0;
                char *slash = strrchr(self, '/');
                if (slash) {
                        *slash = 0;
                        if (asprintf(&p, "%s/%s", self, name) >= 0 && access(p, X_OK) == 0)
                                return p;
                        free(p);
                        p = NULL;
                        if (asprintf(&p, "%s/../%s/%s", self, build_subdir, name) >= 0 && access(p, X_OK) == 0)
                                return p;
                        free(p);
                        p = NULL;
                }
        }
        if (asprintf(&p, "%s/%s", CM_LIBEXECDIR, name) >= 0 && access(p, X_OK) == 0)
                return p;
        free(p);
        return strdup(name);
}

const struct cm_property *cm_property_find(const char *key) {
        for (const struct cm_property *p = cm_properties; p->key; p++)
                if (streq(p->key, key))
                        return p;
        return NULL;
}

int cm_config_load(const char *root, json_t **ret, struct cm_error **err) {
        char path[PATH_MAX];
        snprintf(path, sizeof path, "%s/config.json", root);
        _cleanup_free_ char *data = NULL;
        size_t len = 0;
        int r = fs_read_all(AT_FDCWD, path, 1 << 20, &data, &len);
        if (r == -ENOENT) {
                *ret = json_object();
                return 0;
        }
        if (r < 0)
                return cm_error_set(err, -r, "cannot read %s: %s", path, strerror(-r));
        _cleanup_free_ char *msg = NULL;
        json_t *j = json_parse_buf(data, len, &msg);
        if (!j || !json_is_object(j)) {
                json_decref(j);
                return cm_error_set(err, CM_EINVALID, "%s: %s", path, msg ? msg : "not a JSON object");
        }
        *ret = j;
        return 0;
}

int cm_config_save(const char *root, json_t *cfg, struct cm_error **err) {
        char path[PATH_MAX];
        snprintf(path, sizeof path, "%s/config.json", root);
        int r = json_write_atomic(AT_FDCWD, path, cfg, 0644);
        if (r < 0)
                return cm_error_set(err, -r, "cannot write %s: %s", path, strerror(-r));
        return 0;
}

static json_t *parse_value(const struct cm_property *p, const char *value) {
        if (streq(p->type, "list")) {
                json_t *a = json_array();
                _cleanup_free_ char *copy = strdup(value);
                char *save = NULL;
                for (char *tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
                        while (*tok == ' ')
                                tok++;
                        if (*tok)
                                json_array_append_new(a, json_string(tok));
                }
                return a;
        }
        if (streq(p->type, "int")) {
                char *end = NULL;
                errno = 0;
                long long v = strtoll(value, &end, 10);
                if (errno || !end || *end || end == value || v < 0)
                        return NULL;
                return json_integer(v);
        }
        return json_string(value);
}

json_t *cm_config_get(json_t *cfg, const char *key) {
        const struct cm_property *p = cm_property_find(key);
        if (!p)
                return NULL;
        json_t *v = json_object_get(cfg, key);
        if (v)
                return json_incref(v);
        return parse_value(p, p->default_value);
}

int cm_config_set(json_t *cfg, const char *key, const char *value, struct cm_error **err) {
        const struct cm_property *p = cm_property_find(key);
        if (!p)
                return cm_error_set(err, CM_EINVALID, "unknown property '%s'", key);
        json_t *v = parse_value(p, value);
        if (!v)
                return cm_error_set(err, CM_EINVALID, "invalid value '%s' for %s (expected %s)", value, key, p->type);
        json_object_set_new(cfg, key, v);
        return 0;
}
