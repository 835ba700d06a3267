/* system.* methods: ping, status, stop, properties. */
#include <stdio.h>
#include <string.h>
#include <sys/utsname.h>

#include "machine/hostprobe.h"
#include "net/settings.h"
#include "server.h"
#include "util/config.h"
#include "util/json.h"

static int m_ping(struct request *req, json_t *params, json_t **ret, struct cm_error **err) {
        *ret = json_pack("{s:s,s:I}", "version", CM_VERSION, "uid", (json_int_t)req->uid);
        return 0;
}

/* What each runtime needs and whether this host has it. */
json_t *system_runtimes(void);
json_t *system_runtimes(void) {
        json_t *rts = json_object();

        _cleanup_free_ char *kvm_reason = NULL;
        int kvm = host_probe_kvm(3000, &kvm_reason);
        _cleanup_free_ char *qemu = host_find_qemu();
        json_t *vm = json_object();
        json_object_set_new(vm, "kvm", json_boolean(kvm > 0));
        if (kvm <= 0)
                json_object_set_new(vm, "kvmReason", json_string(kvm_reason ? kvm_reason : strerror(-kvm)));
        json_object_set_new(vm, "qemu", qemu ? json_string(qemu) : json_null());
        /* The vm runtime itself arrives with its own issue; until then it is never usable. */
        json_object_set_new(vm, "available", json_false());
        char reason[512];
        if (kvm > 0)
                snprintf(reason, sizeof reason, "KVM runs a probe guest; the vm runtime is not built yet");
        else
                snprintf(reason, sizeof reason, "%s; TCG %s; the vm runtime is not built yet",
                         kvm_reason ? kvm_reason : "KVM unusable", qemu ? "possible" : "needs qemu-system");
        json_object_set_new(vm, "reason", json_string(reason));
        json_object_set_new(rts, "vm", vm);

        _cleanup_free_ char *ns_reason = NULL;
        int ns = host_probe_ns(&ns_reason);
        json_t *nsj = json_object();
        json_object_set_new(nsj, "available", json_boolean(ns > 0));
        if (ns <= 0)
                json_object_set_new(nsj, "reason", json_string(ns_reason ? ns_reason : "unknown"));
        json_object_set_new(rts, "ns", nsj);
        return rts;
}

static int m_status(struct request *req, json_t *params, json_t **ret, struct cm_error **err) {
        struct server *srv = req->srv;
        struct utsname u;
        uname(&u);
        pthread_mutex_lock(&srv->lock);
        json_t *subnet = cm_config_get(srv->config, "network.subnet");
        json_t *bridge = cm_config_get(srv->config, "network.bridge");
        json_t *mode = cm_config_get(srv->config, "network.mode");
        pthread_mutex_unlock(&srv->lock);
        *ret = json_pack("{s:s,s:s,s:s,s:s,s:I,s:I,s:o,s:s,s:{s:o,s:o,s:o}}", "status", "running", "version", CM_VERSION,
                         "root", srv->root, "run", srv->run, "pid", (json_int_t)getpid(), "startedAt",
                         (json_int_t)srv->started, "runtimes", system_runtimes(), "hostKernel", u.release, "network",
                         "subnet", subnet, "bridge", bridge, "mode", mode);
        return 0;
}

static int m_stop(struct request *req, json_t *params, json_t **ret, struct cm_error **err) {
        req->srv->stopping = 1;
        *ret = json_pack("{s:I}", "pid", (json_int_t)getpid());
        return 0;
}

static int m_property_list(struct request *req, json_t *params, json_t **ret, struct cm_error **err) {
        struct server *srv = req->srv;
        json_t *a = json_array();
        pthread_mutex_lock(&srv->lock);
        for (const struct cm_property *p = cm_properties; p->key; p++)
                json_array_append_new(a, json_pack("{s:s,s:s,s:o,s:s,s:b}", "key", p->key, "type", p->type, "value",
                                                   cm_config_get(srv->config, p->key), "description",
                                                   p->description, "set",
                                                   json_object_get(srv->config, p->key) != NULL));
        pthread_mutex_unlock(&srv->lock);
        *ret = a;
        return 0;
}

static int m_property_get(struct request *req, json_t *params, json_t **ret, struct cm_error **err) {
        const char *key = param_str(params, "key");
        if (!key || !cm_property_find(key))
                return cm_error_set(err, CM_EINVALID, "unknown property '%s'", key ? key : "");
        pthread_mutex_lock(&req->srv->lock);
        *ret = json_pack("{s:s,s:o}", "key", key, "value", cm_config_get(req->srv->config, key));
        pthread_mutex_unlock(&req->srv->lock);
        return 0;
}

static int m_property_set(struct request *req, json_t *params, json_t **ret, struct cm_error **err) {
        const char *key = param_str(params, "key");
        const char *value = param_str(params, "value");
        if (!key || !value)
                return cm_error_set(err, CM_EINVALID, "property set needs a key and a value");
        struct server *srv = req->srv;
        pthread_mutex_lock(&srv->lock);
        json_t *copy = json_deep_copy(srv->config);
        int r = cm_config_set(copy, key, value, err);
        struct net_settings ns;
        if (r >= 0 && strncmp(key, "network.", 8) == 0)
                r = net_settings_from_config(copy, &ns, err); /* "none" or a usable subnet and name */
        if (r >= 0)
                r = cm_config_save(srv->root, copy, err);
        if (r >= 0) {
                json_decref(srv->config);
                srv->config = copy;
                *ret = json_pack("{s:s,s:o}", "key", key, "value", cm_config_get(srv->config, key));
        } else
                json_decref(copy);
        pthread_mutex_unlock(&srv->lock);
        return r;
}

const struct method system_methods[] = {
        { "system.ping", m_ping, false },
        { "system.status", m_status, false },
        { "system.stop", m_stop, false },
        { "system.property.list", m_property_list, false },
        { "system.property.get", m_property_get, false },
        { "system.property.set", m_property_set, true },
        {},
};
