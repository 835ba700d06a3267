/* Machine networking: the host bridge, a veth per machine, address allocation, outbound NAT.
 *
 * All of it acts on the network namespace of the calling thread (the apiserver's, which is the
 * host's), except what a function says it does inside a machine's namespace. IPv4 only.
 *
 * How the pieces fit (the apiserver/runtime's order):
 *   create:  ipam_allocate(state, subnet, name)            -> the machine's address, kept
 *   start:   net_host_ensure(bridge, subnet)                = net_subnet_check_free (refuse a
 *                subnet the host routes elsewhere), net_bridge_ensure, forwarding, nat_ensure
 *            (create the machine's netns) net_host_ifname(name); net_machine_link_up(...)
 *            hand the netns path to the sandbox: eth0 is configured before init runs
 *   stop:    net_machine_link_down(host_ifname); net_host_release(bridge): the NAT table goes
 *            with the last machine
 *   rm:      ipam_release(state, name)
 */
#pragma once

#include <netinet/in.h>
#include <stdbool.h>

#include "util/error.h"

#define NET_DEFAULT_BRIDGE "container0"
#define NET_DEFAULT_SUBNET "192.168.64.0/24"
#define NET_NAT_TABLE "container"
#define NET_IFNAME_MAX 16 /* IFNAMSIZ: 15 characters and the NUL */
#define NET_CIDR_MAX 20   /* "255.255.255.255/32" and the NUL */

struct net_prefix {
        struct in_addr addr; /* as written (for an interface address, the host part is kept) */
        unsigned len;
};

/* "a.b.c.d/n" (n = 0..32). */
int net_prefix_parse(const char *s, struct net_prefix *ret);
/* The network address of p (host bits cleared). */
struct in_addr net_prefix_network(const struct net_prefix *p);
bool net_prefix_overlap(const struct net_prefix *a, const struct net_prefix *b);
bool net_prefix_contains(const struct net_prefix *p, struct in_addr a);
/* A subnet for machines ("192.168.64.0/24": network address, /8 to /30) -> its gateway, the
 * first host address, as "a.b.c.d/n" and as an address. Errors name the subnet. */
int net_subnet_gateway(const char *subnet, char ret_gateway_cidr[NET_CIDR_MAX], struct in_addr *ret_gateway,
                       struct cm_error **err);

/* The host end's name for a machine: "cm-" and 12 hex digits of a 64-bit FNV-1a hash of the
 * name; the same name always gives the same interface name. */
void net_host_ifname(const char *machine_name, char ret[NET_IFNAME_MAX]);

/* Creates the bridge if missing (with a fixed MAC derived from its name, so it does not change
 * as ports come and go), makes gateway_cidr ("192.168.64.1/24") its only IPv4 address and sets
 * it up. Idempotent; an existing link of that name that is not a bridge is an error. */
int net_bridge_ensure(const char *name, const char *gateway_cidr, struct cm_error **err);
/* 0 also when it does not exist. */
int net_bridge_delete(const char *name, struct cm_error **err);
/* Number of interfaces enslaved to the bridge (machines attached); -ENODEV if no bridge. */
int net_bridge_port_count(const char *name, struct cm_error **err);

/* Fails (EADDRINUSE, naming the route) when a route of this namespace, in any table, overlaps
 * subnet, unless it goes through our own bridge (the bridge's own connected route, on a
 * restart). Default routes do not count. */
int net_subnet_check_free(const char *subnet, const char *bridge, struct cm_error **err);

/* Gives the machine namespace at netns_path its network, from outside, before anything runs
 * in it: a veth pair whose inside end is created in that namespace as "eth0" (MAC
 * 0a:58:<address>, stable across boots), with addr_cidr ("192.168.64.2/24"), mtu (0 = 1500),
 * a default route via gateway, and lo up; the host end (host_ifname, see net_host_ifname)
 * joins the bridge and goes up. A leftover host end of that name is replaced. On failure
 * nothing is left behind. The calling thread never changes namespace. */
int net_machine_link_up(const char *netns_path, const char *host_ifname, const char *bridge, const char *addr_cidr,
                        const char *gateway, unsigned mtu, struct cm_error **err);
/* Deletes the pair (from the host end); 0 also when it is already gone. */
int net_machine_link_down(const char *host_ifname, struct cm_error **err);

/* /proc/sys/net/ipv4/ip_forward = 1 for this namespace (written only when it is 0). */
int net_ipv4_forwarding_enable(struct cm_error **err);

/* The host side in one call, for the first machine to start: net_subnet_check_free,
 * net_bridge_ensure with the subnet's first address, net_ipv4_forwarding_enable, nat_ensure
 * (NET_NAT_TABLE). Idempotent. */
int net_host_ensure(const char *bridge, const char *subnet, struct cm_error **err);
/* After a machine's net_machine_link_down: with no machine left on the bridge, removes the
 * NAT table (the bridge and IPv4 forwarding stay). 1 when removed, 0 when machines remain.
 * The caller serializes this against net_host_ensure (one lock around both). */
int net_host_release(const char *bridge, struct cm_error **err);

/* Address allocation. state_file is a JSON file ({"allocations": {"<machine>": "a.b.c.d"}})
 * written atomically, with state_file.lock taken (flock) around every read-modify-write, so
 * concurrent processes and threads never hand one address to two machines.
 *
 * allocate: the machine's address if it already has one inside subnet, else the lowest free
 * host address after the gateway (ENOSPC with a clear message when the subnet is full). */
int ipam_allocate(const char *state_file, const char *subnet, const char *machine_name, char ret_ip[INET_ADDRSTRLEN],
                  struct cm_error **err);
/* -ENOENT when the machine has no address. */
int ipam_lookup(const char *state_file, const char *machine_name, char ret_ip[INET_ADDRSTRLEN], struct cm_error **err);
/* 1 when released, 0 when the machine had none. */
int ipam_release(const char *state_file, const char *machine_name, struct cm_error **err);

/* Outbound NAT with nftables, in a table of our own (family ip): masquerade what comes from
 * subnet and leaves by any interface but the bridge. Replaced atomically when called again
 * (one table, whatever the number of calls); nothing outside the table is touched. Drives
 * `nft -f -` in the caller's network namespace. ENOENT if nft is not installed. */
int nat_ensure(const char *table, const char *subnet, const char *bridge, struct cm_error **err);
/* 0 also when the table does not exist. */
int nat_remove(const char *table, struct cm_error **err);
/* 1 when the table exists, 0 when not. */
int nat_exists(const char *table, struct cm_error **err);
