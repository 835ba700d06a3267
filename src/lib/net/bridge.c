/* The host bridge and the machines' veth pairs, over our netlink module. */
#include "net/net.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <linux/rtnetlink.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "net/netlink.h"

static void nl_closep(struct nl *nl) {
        nl_close(nl);
}
#define _cleanup_nl_ _cleanup_(nl_closep)

static uint64_t fnv1a64(const char *s) {
        uint64_t h = 0xcbf29ce484222325ULL;
        for (; *s; s++) {
                h ^= (unsigned char)*s;
                h *= 0x100000001b3ULL;
        }
        return h;
}

void net_host_ifname(const char *machine_name, char ret[NET_IFNAME_MAX]) {
        snprintf(ret, NET_IFNAME_MAX, "cm-%012llx", (unsigned long long)(fnv1a64(machine_name) & 0xffffffffffffULL));
}

static int ifname_check(const char *name, const char *what, struct cm_error **err) {
        if (!name || !*name || strlen(name) >= NET_IFNAME_MAX || strchr(name, '/') || strpbrk(name, " \t\n:") ||
            streq(name, ".") || streq(name, ".."))
                return cm_error_set(
                        err, EINVAL,
                        "%s name \"%s\" is not a valid interface name (1 to 15 characters, no '/', ':' or spaces)",
                        what, name ? name : "");
        return 0;
}

static int open_nl(struct nl *nl, struct cm_error **err) {
        int r = nl_open(nl);
        if (r < 0)
                return cm_error_set(err, -r, "%s", nl->error);
        return 0;
}

struct addr_list {
        struct nl_addr4 a[16];
        unsigned n;
};

static int collect_addr(const struct nl_addr4 *a, void *data) {
        struct addr_list *l = data;
        if (l->n < ELEMENTSOF(l->a))
                l->a[l->n++] = *a;
        return 0;
}

int net_bridge_ensure(const char *name, const char *gateway_cidr, struct cm_error **err) {
        int r = ifname_check(name, "bridge", err);
        if (r < 0)
                return r;
        struct net_prefix gw;
        if (net_prefix_parse(gateway_cidr, &gw) < 0 || gw.len == 0 || gw.len > 30)
                return cm_error_set(err, EINVAL, "bridge %s: invalid gateway address \"%s\" (want a.b.c.d/n)", name,
                                    gateway_cidr ? gateway_cidr : "");

        _cleanup_nl_ struct nl nl = {.fd = -1};
        if ((r = open_nl(&nl, err)) < 0)
                return r;

        struct nl_link link;
        r = nl_link_get(&nl, name, &link);
        if (r == -ENODEV) {
                /* locally administered, from the name: the bridge would otherwise take the lowest
                 * MAC of its ports and change it as machines come and go */
                uint64_t h = fnv1a64(name);
                uint8_t mac[6] = {0x02, 0x63, (uint8_t)(h >> 24), (uint8_t)(h >> 16), (uint8_t)(h >> 8), (uint8_t)h};
                r = nl_link_add_bridge(&nl, name, mac, 0);
                if (r < 0 && r != -EEXIST) /* EEXIST: someone made it meanwhile; check it below */
                        return cm_error_set(err, -r, "create bridge: %s", nl.error);
                r = nl_link_get(&nl, name, &link);
        }
        if (r < 0)
                return cm_error_set(err, -r, "bridge %s: %s", name, nl.error);
        if (!streq(link.kind, "bridge"))
                return cm_error_set(err, EEXIST,
                                    "bridge %s: an interface of that name exists and is not a bridge (kind \"%s\")",
                                    name, link.kind);

        /* exactly one IPv4 address: a changed network.subnet replaces the old one */
        struct addr_list have = {.n = 0};
        r = nl_addr4_dump(&nl, link.index, collect_addr, &have);
        if (r < 0)
                return cm_error_set(err, -r, "bridge %s: %s", name, nl.error);
        for (unsigned i = 0; i < have.n; i++)
                if (have.a[i].addr.s_addr != gw.addr.s_addr || have.a[i].prefixlen != gw.len) {
                        r = nl_addr4_del(&nl, link.index, have.a[i].addr, have.a[i].prefixlen);
                        if (r < 0 && r != -EADDRNOTAVAIL)
                                return cm_error_set(err, -r, "bridge %s: remove old address: %s", name, nl.error);
                }
        r = nl_addr4_add(&nl, link.index, gw.addr, gw.len);
        if (r < 0)
                return cm_error_set(err, -r, "bridge %s: %s", name, nl.error);
        if (!link.up && (r = nl_link_set_up(&nl, link.index, true)) < 0)
                return cm_error_set(err, -r, "bridge %s: %s", name, nl.error);
        return 0;
}

int net_bridge_delete(const char *name, struct cm_error **err) {
        int r = ifname_check(name, "bridge", err);
        if (r < 0)
                return r;
        _cleanup_nl_ struct nl nl = {.fd = -1};
        if ((r = open_nl(&nl, err)) < 0)
                return r;
        struct nl_link link;
        r = nl_link_get(&nl, name, &link);
        if (r == -ENODEV)
                return 0;
        if (r < 0)
                return cm_error_set(err, -r, "%s", nl.error);
        if (!streq(link.kind, "bridge"))
                return cm_error_set(err, EINVAL, "delete bridge %s: it is not a bridge (kind \"%s\")", name, link.kind);
        r = nl_link_del(&nl, link.index);
        if (r < 0 && r != -ENODEV)
                return cm_error_set(err, -r, "delete bridge %s: %s", name, nl.error);
        return 0;
}

struct port_count {
        int master;
        int n;
};

static int count_port(const struct nl_link *l, void *data) {
        struct port_count *c = data;
        if (l->master == c->master)
                c->n++;
        return 0;
}

int net_bridge_port_count(const char *name, struct cm_error **err) {
        int r = ifname_check(name, "bridge", err);
        if (r < 0)
                return r;
        _cleanup_nl_ struct nl nl = {.fd = -1};
        if ((r = open_nl(&nl, err)) < 0)
                return r;
        struct nl_link link;
        if ((r = nl_link_get(&nl, name, &link)) < 0)
                return cm_error_set(err, -r, "%s", nl.error);
        struct port_count c = {.master = link.index};
        if ((r = nl_link_dump(&nl, count_port, &c)) < 0)
                return cm_error_set(err, -r, "%s", nl.error);
        return c.n;
}

/* ---- the subnet against the host's routes ---- */

struct overlap {
        struct net_prefix subnet;
        int bridge_index;
        struct nl_route4 hit;
        bool found;
};

static int check_route(const struct nl_route4 *r, void *data) {
        struct overlap *o = data;
        if (o->found || r->dst_len == 0)
                return 0;
        /* broadcast/multicast entries of the local table only mirror addresses and connected
         * routes, which are checked as such */
        if (r->type == RTN_BROADCAST || r->type == RTN_MULTICAST || r->type == RTN_ANYCAST)
                return 0;
        if (o->bridge_index > 0 && r->oif == o->bridge_index)
                return 0;
        struct net_prefix p = {.addr = r->dst, .len = r->dst_len};
        if (net_prefix_overlap(&p, &o->subnet)) {
                o->hit = *r;
                o->found = true;
        }
        return 0;
}

struct link_name {
        int index;
        char name[NET_IFNAME_MAX];
};

static int find_name(const struct nl_link *l, void *data) {
        struct link_name *b = data;
        if (l->index == b->index)
                snprintf(b->name, sizeof(b->name), "%s", l->name);
        return 0;
}

static const char *route_type_name(uint8_t t) {
        switch (t) {
        case RTN_LOCAL:
                return "local ";
        case RTN_BLACKHOLE:
                return "blackhole ";
        case RTN_UNREACHABLE:
                return "unreachable ";
        case RTN_PROHIBIT:
                return "prohibit ";
        default:
                return "";
        }
}

int net_subnet_check_free(const char *subnet, const char *bridge, struct cm_error **err) {
        struct overlap o = {.bridge_index = 0};
        if (net_prefix_parse(subnet, &o.subnet) < 0)
                return cm_error_set(err, EINVAL, "invalid subnet \"%s\" (want a.b.c.d/n)", subnet ? subnet : "");
        _cleanup_nl_ struct nl nl = {.fd = -1};
        int r = open_nl(&nl, err);
        if (r < 0)
                return r;
        struct nl_link link;
        if (bridge && nl_link_get(&nl, bridge, &link) == 0)
                o.bridge_index = link.index;
        if ((r = nl_route4_dump(&nl, check_route, &o)) < 0)
                return cm_error_set(err, -r, "check subnet %s: %s", subnet, nl.error);
        if (!o.found)
                return 0;

        char dst[INET_ADDRSTRLEN], via[INET_ADDRSTRLEN + 5] = "", dev[NET_IFNAME_MAX + 5] = "", table[24] = "";
        inet_ntop(AF_INET, &o.hit.dst, dst, sizeof(dst));
        if (o.hit.gateway.s_addr) {
                strcpy(via, " via ");
                inet_ntop(AF_INET, &o.hit.gateway, via + 5, INET_ADDRSTRLEN);
        }
        if (o.hit.oif > 0) {
                struct link_name b = {.index = o.hit.oif};
                (void)nl_link_dump(&nl, find_name, &b); /* only on this error path */
                snprintf(dev, sizeof(dev), " dev %s", *b.name ? b.name : "?");
        }
        if (o.hit.table == RT_TABLE_LOCAL)
                snprintf(table, sizeof(table), " table local");
        else if (o.hit.table != RT_TABLE_MAIN)
                snprintf(table, sizeof(table), " table %u", (unsigned)o.hit.table);
        return cm_error_set(err, EADDRINUSE,
                            "subnet %s overlaps the host's route %s%s/%u%s%s%s; choose another subnet (system property "
                            "network.subnet)",
                            subnet, route_type_name(o.hit.type), dst, o.hit.dst_len, via, dev, table);
}

/* ---- a machine's veth pair ---- */

int net_machine_link_up(const char *netns_path, const char *host_ifname, const char *bridge, const char *addr_cidr,
                        const char *gateway, unsigned mtu, struct cm_error **err) {
        int r;
        if ((r = ifname_check(host_ifname, "host interface", err)) < 0 || (r = ifname_check(bridge, "bridge", err)) < 0)
                return r;
        struct net_prefix addr;
        struct in_addr gw;
        if (net_prefix_parse(addr_cidr, &addr) < 0 || addr.len == 0 || addr.len > 30)
                return cm_error_set(err, EINVAL, "invalid machine address \"%s\" (want a.b.c.d/n)",
                                    addr_cidr ? addr_cidr : "");
        if (!gateway || inet_pton(AF_INET, gateway, &gw) != 1)
                return cm_error_set(err, EINVAL, "invalid gateway \"%s\"", gateway ? gateway : "");
        if (!net_prefix_contains(&addr, gw) || gw.s_addr == addr.addr.s_addr)
                return cm_error_set(err, EINVAL, "gateway %s is not another address of %s", gateway, addr_cidr);
        if (mtu == 0)
                mtu = 1500;
        if (mtu < 68 || mtu > 65535)
                return cm_error_set(err, EINVAL, "invalid MTU %u", mtu);

        _cleanup_close_ int nsfd = open(netns_path, O_RDONLY | O_CLOEXEC);
        if (nsfd < 0)
                return cm_error_set(err, errno, "open network namespace %s: %m", netns_path);
        /* eth0 is replaced in the target namespace: never let that be the host's own */
        struct stat target, self;
        if (fstat(nsfd, &target) < 0 || stat("/proc/thread-self/ns/net", &self) < 0)
                return cm_error_set(err, errno, "network namespace %s: %m", netns_path);
        if (target.st_dev == self.st_dev && target.st_ino == self.st_ino)
                return cm_error_set(err, EINVAL, "%s is the caller's own network namespace, not a machine's",
                                    netns_path);

        _cleanup_nl_ struct nl nl = {.fd = -1};
        _cleanup_nl_ struct nl inner = {.fd = -1};
        if ((r = open_nl(&nl, err)) < 0)
                return r;
        if ((r = nl_open_in_netns(&inner, nsfd)) < 0)
                return cm_error_set(err, -r, "%s: %s", netns_path, inner.error);

        struct nl_link br, host, eth0, lo;
        if ((r = nl_link_get(&nl, bridge, &br)) == -ENODEV)
                return cm_error_set(err, ENODEV, "bridge %s does not exist", bridge);
        if (r < 0)
                return cm_error_set(err, -r, "bridge %s: %s", bridge, nl.error);
        if (!streq(br.kind, "bridge"))
                return cm_error_set(err, EINVAL, "%s is not a bridge", bridge);

        /* A leftover veth from a runtime that died with the namespace still alive: the name is
         * ours. Anything else of that name is not, and is left alone (creating fails below). */
        if (nl_link_get(&nl, host_ifname, &host) == 0 && streq(host.kind, "veth") &&
            (r = nl_link_del(&nl, host.index)) < 0 && r != -ENODEV)
                return cm_error_set(err, -r, "remove leftover %s: %s", host_ifname, nl.error);
        if (nl_link_get(&inner, "eth0", &eth0) == 0 && streq(eth0.kind, "veth") &&
            (r = nl_link_del(&inner, eth0.index)) < 0 && r != -ENODEV)
                return cm_error_set(err, -r, "%s: remove leftover eth0: %s", netns_path, inner.error);

        uint8_t mac[6] = {0x0a, 0x58};
        memcpy(mac + 2, &addr.addr, 4);
        if ((r = nl_link_add_veth(&nl, host_ifname, mtu, "eth0", nsfd, mac)) < 0)
                return cm_error_set(err, -r, "%s", nl.error);

        /* from here on, a failure deletes the pair (both ends go with the host end) */
        struct nl *failed = &nl;
        const char *step;
        if ((r = nl_link_get(&nl, host_ifname, &host)) < 0) {
                step = "host end";
                goto fail_noindex;
        }
        step = "inside";
        failed = &inner;
        if ((r = nl_link_get(&inner, "lo", &lo)) < 0 || (r = nl_link_set_up(&inner, lo.index, true)) < 0 ||
            (r = nl_link_get(&inner, "eth0", &eth0)) < 0 ||
            (r = nl_addr4_add(&inner, eth0.index, addr.addr, addr.len)) < 0 ||
            (r = nl_link_set_up(&inner, eth0.index, true)) < 0 ||
            (r = nl_route4_add(&inner, (struct in_addr){0}, 0, gw, eth0.index)) < 0)
                goto fail;
        step = "host end";
        failed = &nl;
        if ((r = nl_link_set_master(&nl, host.index, br.index)) < 0 || (r = nl_link_set_up(&nl, host.index, true)) < 0)
                goto fail;
        return 0;

fail:
        cm_error_set(err, -r, "%s %s: %s", host_ifname, step, failed->error);
        (void)nl_link_del(&nl, host.index);
        return r;
fail_noindex:
        cm_error_set(err, -r, "%s %s: %s", host_ifname, step, failed->error);
        if (nl_link_get(&nl, host_ifname, &host) == 0)
                (void)nl_link_del(&nl, host.index);
        return r;
}

int net_machine_link_down(const char *host_ifname, struct cm_error **err) {
        int r = ifname_check(host_ifname, "host interface", err);
        if (r < 0)
                return r;
        _cleanup_nl_ struct nl nl = {.fd = -1};
        if ((r = open_nl(&nl, err)) < 0)
                return r;
        struct nl_link l;
        r = nl_link_get(&nl, host_ifname, &l);
        if (r == -ENODEV)
                return 0;
        if (r < 0)
                return cm_error_set(err, -r, "%s", nl.error);
        r = nl_link_del(&nl, l.index);
        if (r < 0 && r != -ENODEV)
                return cm_error_set(err, -r, "%s", nl.error);
        return 0;
}

int net_ipv4_forwarding_enable(struct cm_error **err) {
        static const char path[] = "/proc/sys/net/ipv4/ip_forward";
        _cleanup_close_ int fd = open(path, O_RDWR | O_CLOEXEC);
        if (fd < 0)
                return cm_error_set(err, errno, "open %s: %m", path);
        char c = 0;
        if (pread(fd, &c, 1, 0) == 1 && c == '1')
                return 0;
        if (pwrite(fd, "1\n", 2, 0) != 2)
                return cm_error_set(err, errno, "enable IPv4 forwarding (%s): %m", path);
        return 0;
}

int net_host_ensure(const char *bridge, const char *subnet, struct cm_error **err) {
        char gw[NET_CIDR_MAX];
        int r;
        if ((r = net_subnet_gateway(subnet, gw, NULL, err)) < 0 ||
            (r = net_subnet_check_free(subnet, bridge, err)) < 0 || (r = net_bridge_ensure(bridge, gw, err)) < 0 ||
            (r = net_ipv4_forwarding_enable(err)) < 0 || (r = nat_ensure(NET_NAT_TABLE, subnet, bridge, err)) < 0)
                return r;
        return 0;
}

int net_host_release(const char *bridge, struct cm_error **err) {
        struct cm_error *e = NULL;
        int n = net_bridge_port_count(bridge, &e);
        if (n == -ENODEV) /* no bridge, no machines; the table may still be there */
                n = 0;
        if (n < 0) {
                if (err && !*err)
                        *err = TAKE_PTR(e);
                cm_error_free(e);
                return n;
        }
        cm_error_free(e);
        if (n > 0)
                return 0;
        int r = nat_remove(NET_NAT_TABLE, err);
        return r < 0 ? r : 1;
}
