/* The machines' network as the system configuration describes it (network.mode,
 * network.subnet, network.bridge), read the same way by the apiserver and the runtime.
 * network.mode "none" (or network.subnet "none") turns machine networking off: machines get no
 * address and a private network namespace with lo only (as before networking existed; the
 * integration tests that run the apiserver in the host's namespace set it so that no bridge
 * or NAT table is ever made there). */
#pragma once

#include <jansson.h>
#include <netinet/in.h>
#include <stdbool.h>

#include "net/net.h"

struct net_settings {
        bool enabled;
        char subnet[NET_CIDR_MAX];     /* "192.168.64.0/24" */
        char bridge[NET_IFNAME_MAX];   /* "container0" */
        char gateway[INET_ADDRSTRLEN]; /* "192.168.64.1" */
        struct in_addr gateway_addr;
        unsigned prefix_len; /* 24 */
};

/* true for the values that disable networking ("none", "off", ""). */
bool net_subnet_is_none(const char *subnet);
/* From a loaded system configuration (cm_config_load). An invalid subnet or bridge name is
 * an error naming the property. */
int net_settings_from_config(json_t *cfg, struct net_settings *ret, struct cm_error **err);
/* The same from $ROOT/config.json. */
int net_settings_load(const char *root, struct net_settings *ret, struct cm_error **err);
/* "a.b.c.d/len" of a machine address in these settings; -EINVAL (with a message) when the
 * address is not a host address of the subnet (a machine made under another subnet). */
int net_settings_machine_cidr(const struct net_settings *s, const char *ip, char ret[NET_CIDR_MAX],
                              struct cm_error **err);

/* Serializes changes of the host side (bridge, NAT, bridge ports) between the runtimes and
 * the apiserver: an exclusive flock on ROOT/network.lock. Returns the fd to close, or -errno. */
int net_state_lock(const char *root);
