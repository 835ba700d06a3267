/* network.subnet / network.bridge -> what the apiserver and the runtime need. */
#include "net/settings.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>
#include <stdio.h>
#include <string.h>

#include "util/config.h"
#include "util/strv.h"

bool net_subnet_is_none(const char *subnet) {
        return !subnet || !*subnet || streq(subnet, "none") || streq(subnet, "off");
}

static char *prop_string(json_t *cfg, const char *key) {
        json_t *v = cm_config_get(cfg, key);
        char *s = json_is_string(v) ? strdup(json_string_value(v)) : NULL;
        json_decref(v);
        return s;
}

int net_settings_from_config(json_t *cfg, struct net_settings *ret, struct cm_error **err) {
        struct net_settings s = {0};
        _cleanup_free_ char *subnet = prop_string(cfg, "network.subnet");
        _cleanup_free_ char *bridge = prop_string(cfg, "network.bridge");
        _cleanup_free_ char *mode = prop_string(cfg, "network.mode");
        if (mode && *mode && !streq(mode, "bridge") && !streq(mode, "none"))
                return cm_error_set(err, CM_EINVALID, "network.mode: invalid value '%s'. Valid options: bridge, none",
                                    mode);
        if ((mode && streq(mode, "none")) || net_subnet_is_none(subnet)) {
                *ret = s;
                return 0;
        }
        if (!bridge || !*bridge)
                bridge = strdup(NET_DEFAULT_BRIDGE);
        if (!bridge)
                return cm_error_set(err, ENOMEM, "out of memory");
        if (strlen(bridge) >= NET_IFNAME_MAX || strpbrk(bridge, "/ \t\n:"))
                return cm_error_set(err, CM_EINVALID, "network.bridge: invalid interface name \"%s\"", bridge);
        int r = net_subnet_gateway(subnet, NULL, &s.gateway_addr, err);
        if (r < 0) {
                cm_error_prefix(err, "network.subnet");
                return r;
        }
        struct net_prefix p;
        (void)net_prefix_parse(subnet, &p);
        s.enabled = true;
        s.prefix_len = p.len;
        snprintf(s.subnet, sizeof s.subnet, "%s", subnet);
        snprintf(s.bridge, sizeof s.bridge, "%s", bridge);
        inet_ntop(AF_INET, &s.gateway_addr, s.gateway, sizeof s.gateway);
        *ret = s;
        return 0;
}

int net_settings_load(const char *root, struct net_settings *ret, struct cm_error **err) {
        json_t *cfg = NULL;
        int r = cm_config_load(root, &cfg, err);
        if (r < 0)
                return r;
        r = net_settings_from_config(cfg, ret, err);
        json_decref(cfg);
        return r;
}

int net_settings_machine_cidr(const struct net_settings *s, const char *ip, char ret[NET_CIDR_MAX],
                              struct cm_error **err) {
        struct in_addr a;
        struct net_prefix p;
        if (!s->enabled || !ip || inet_pton(AF_INET, ip, &a) != 1 || net_prefix_parse(s->subnet, &p) < 0)
                return cm_error_set(err, EINVAL, "invalid machine address \"%s\"", ip ? ip : "");
        uint32_t host = ntohl(a.s_addr), net = ntohl(net_prefix_network(&p).s_addr);
        uint32_t bcast = net | (p.len ? ~(~0u << (32 - p.len)) : ~0u);
        if (!net_prefix_contains(&p, a) || host == net || host == bcast || a.s_addr == s->gateway_addr.s_addr)
                return cm_error_set(err, EINVAL,
                                    "the machine's address %s is not a host address of the subnet %s "
                                    "(network.subnet changed since it was created?)",
                                    ip, s->subnet);
        snprintf(ret, NET_CIDR_MAX, "%s/%u", ip, p.len);
        return 0;
}

int net_state_lock(const char *root) {
        char path[4096];
        if ((size_t)snprintf(path, sizeof path, "%s/network.lock", root) >= sizeof path)
                return -ENAMETOOLONG;
        int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
        if (fd < 0)
                return -errno;
        while (flock(fd, LOCK_EX) < 0)
                if (errno != EINTR) {
                        int r = -errno;
                        close(fd);
                        return r;
                }
        return fd;
}
