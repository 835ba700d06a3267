/* A small rtnetlink client: links (bridge, veth), IPv4 addresses and routes.
 *
 * Self-contained (libc and the kernel's uapi headers only) so the static guest init can link
 * it too. Every call returns 0 (or a positive value where said) on success and -errno on
 * failure; on failure nl->error names the operation and carries the kernel's extended-ACK
 * text when there is one ("RTM_NEWADDR 192.168.64.2/24 dev eth0: File exists").
 *
 * A socket acts on the network namespace it was created in; nl_open_in_netns() makes one
 * inside another namespace without moving the calling thread. */
#pragma once

#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define NL_IFNAME_MAX 16 /* IFNAMSIZ, with the NUL */

struct nl {
        int fd;
        uint32_t seq;
        uint32_t portid;
        char error[320];
};

int nl_open(struct nl *nl);
/* A socket bound to the network namespace open at netns_fd (made in a helper thread that
 * enters the namespace and exits; the caller's namespace is never changed). */
int nl_open_in_netns(struct nl *nl, int netns_fd);
void nl_close(struct nl *nl);

struct nl_link {
        int index;
        int master; /* 0: none */
        unsigned mtu;
        bool up;
        char name[NL_IFNAME_MAX];
        char kind[16]; /* IFLA_INFO_KIND ("bridge", "veth", ...) or "" */
};

/* -ENODEV when there is no such link. */
int nl_link_get(struct nl *nl, const char *name, struct nl_link *ret);
/* Calls fn for each link; a negative return from fn stops the dump and is returned. */
int nl_link_dump(struct nl *nl, int (*fn)(const struct nl_link *l, void *data), void *data);

/* mac may be NULL (kernel-chosen); mtu 0 = default. -EEXIST when the name is taken. */
int nl_link_add_bridge(struct nl *nl, const char *name, const uint8_t mac[6], unsigned mtu);
/* A veth pair: name here, peer_name inside the namespace open at peer_netns_fd (-1: here). */
int nl_link_add_veth(struct nl *nl, const char *name, unsigned mtu, const char *peer_name, int peer_netns_fd,
                     const uint8_t peer_mac[6]);
/* RTM_SETLINK on one attribute each. */
int nl_link_set_up(struct nl *nl, int ifindex, bool up);
int nl_link_set_master(struct nl *nl, int ifindex, int master_ifindex);
int nl_link_set_mtu(struct nl *nl, int ifindex, unsigned mtu);
int nl_link_set_name(struct nl *nl, int ifindex, const char *name);
/* -ENODEV when missing. */
int nl_link_del(struct nl *nl, int ifindex);

struct nl_addr4 {
        int ifindex;
        struct in_addr addr;
        unsigned prefixlen;
};
/* Adds or replaces (idempotent) addr/prefixlen on ifindex, with the subnet's broadcast. */
int nl_addr4_add(struct nl *nl, int ifindex, struct in_addr addr, unsigned prefixlen);
int nl_addr4_del(struct nl *nl, int ifindex, struct in_addr addr, unsigned prefixlen);
/* IPv4 addresses of ifindex (0: all links). */
int nl_addr4_dump(struct nl *nl, int ifindex, int (*fn)(const struct nl_addr4 *a, void *data), void *data);

struct nl_route4 {
        struct in_addr dst;
        unsigned dst_len;
        struct in_addr gateway; /* 0.0.0.0: none */
        int oif;                /* 0: none (multipath, blackhole, ...) */
        uint32_t table;
        uint8_t type;     /* RTN_* */
        uint8_t protocol; /* RTPROT_* */
        uint8_t scope;
};
/* Adds or replaces a route in the main table; gateway 0.0.0.0 = on-link. */
int nl_route4_add(struct nl *nl, struct in_addr dst, unsigned dst_len, struct in_addr gateway, int oif);
/* Every IPv4 route of every table. */
int nl_route4_dump(struct nl *nl, int (*fn)(const struct nl_route4 *r, void *data), void *data);
