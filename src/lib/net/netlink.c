#include "net/netlink.h"

#include <arpa/inet.h>
#include <errno.h>
#include <linux/if.h>
#include <linux/if_link.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <linux/veth.h>
#include <pthread.h>
#include <sched.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* Requests are small (a veth with its peer is ~150 bytes); replies to dumps are read in
 * chunks the kernel sizes to at most 32 KiB. */
#define NL_REQ_MAX 1024
#define NL_RECV_MAX 65536
#define NL_NEST_MAX 4

struct nl_msg {
        union {
                struct nlmsghdr hdr;
                char buf[NL_REQ_MAX];
        } u;
        struct rtattr *nest[NL_NEST_MAX];
        unsigned depth;
        bool overflow;
};

__attribute__((format(printf, 3, 4))) static int nl_fail(struct nl *nl, int r, const char *fmt, ...) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(nl->error, sizeof(nl->error), fmt, ap);
        va_end(ap);
        return r;
}

static void *msg_tail(struct nl_msg *m) {
        return m->u.buf + NLMSG_ALIGN(m->u.hdr.nlmsg_len);
}

static void msg_init(struct nl_msg *m, uint16_t type, uint16_t flags, const void *fixed, size_t len) {
        memset(m, 0, sizeof(*m));
        m->u.hdr.nlmsg_len = NLMSG_LENGTH(len);
        m->u.hdr.nlmsg_type = type;
        m->u.hdr.nlmsg_flags = NLM_F_REQUEST | flags;
        memcpy(NLMSG_DATA(&m->u.hdr), fixed, len);
}

static struct rtattr *attr_put(struct nl_msg *m, unsigned short type, const void *data, size_t len) {
        size_t at = NLMSG_ALIGN(m->u.hdr.nlmsg_len);
        if (at + RTA_SPACE(len) > sizeof(m->u.buf)) {
                m->overflow = true;
                return NULL;
        }
        struct rtattr *a = msg_tail(m);
        a->rta_type = type;
        a->rta_len = RTA_LENGTH(len);
        if (len)
                memcpy(RTA_DATA(a), data, len);
        m->u.hdr.nlmsg_len = at + RTA_SPACE(len);
        return a;
}

/* Bytes that are not an attribute (the veth peer's struct ifinfomsg). */
static void put_raw(struct nl_msg *m, const void *data, size_t len) {
        size_t at = NLMSG_ALIGN(m->u.hdr.nlmsg_len);
        if (at + NLMSG_ALIGN(len) > sizeof(m->u.buf)) {
                m->overflow = true;
                return;
        }
        memcpy(m->u.buf + at, data, len);
        m->u.hdr.nlmsg_len = at + NLMSG_ALIGN(len);
}

static void attr_u32(struct nl_msg *m, unsigned short type, uint32_t v) {
        attr_put(m, type, &v, sizeof(v));
}
static void attr_str(struct nl_msg *m, unsigned short type, const char *s) {
        attr_put(m, type, s, strlen(s) + 1);
}

static void nest_begin(struct nl_msg *m, unsigned short type) {
        struct rtattr *a = attr_put(m, type, NULL, 0);
        if (m->depth >= NL_NEST_MAX) {
                m->overflow = true;
                return;
        }
        m->nest[m->depth++] = a;
}

static void nest_end(struct nl_msg *m) {
        if (m->depth == 0)
                return;
        struct rtattr *a = m->nest[--m->depth];
        if (a)
                a->rta_len = (unsigned short)((char *)msg_tail(m) - (char *)a);
}

/* Reads the kernel's extended-ACK message, if any, from an NLMSG_ERROR. */
static const char *ack_message(const struct nlmsghdr *h) {
        if (!(h->nlmsg_flags & NLM_F_ACK_TLVS))
                return NULL;
        const struct nlmsgerr *e = NLMSG_DATA(h);
        size_t off = sizeof(*e);
        if (!(h->nlmsg_flags & NLM_F_CAPPED))
                off += e->msg.nlmsg_len - sizeof(struct nlmsghdr);
        if (NLMSG_LENGTH(off) > h->nlmsg_len)
                return NULL;
        const char *p = (const char *)NLMSG_DATA(h) + off;
        int left = (int)(h->nlmsg_len - NLMSG_LENGTH(off));
        for (const struct nlattr *a = (const void *)p;
             left >= (int)sizeof(*a) && a->nla_len >= sizeof(*a) && a->nla_len <= left;
             left -= NLA_ALIGN(a->nla_len), a = (const void *)((const char *)a + NLA_ALIGN(a->nla_len)))
                if ((a->nla_type & NLA_TYPE_MASK) == NLMSGERR_ATTR_MSG && a->nla_len > sizeof(*a)) {
                        const char *s = (const char *)(a + 1);
                        if (memchr(s, 0, a->nla_len - sizeof(*a)))
                                return s;
                }
        return NULL;
}

/* NLMSG_OK without its signed/unsigned comparison */
static bool msg_ok(const struct nlmsghdr *h, int len) {
        return len >= (int)sizeof(*h) && h->nlmsg_len >= sizeof(*h) && h->nlmsg_len <= (unsigned)len;
}

static int reply(struct nl *nl, const struct nl_msg *m, char *buf, int (*fn)(const struct nlmsghdr *h, void *data),
                 void *data, const char *what);

/* Sends m and reads the answer: each data message goes to fn (dumps), and the final ACK or
 * NLMSG_DONE ends it. On failure, nl->error = "<what>: <strerror>[ (<kernel text>)]". */
static int transact(struct nl *nl, struct nl_msg *m, int (*fn)(const struct nlmsghdr *h, void *data), void *data,
                    const char *what) {
        if (m->overflow || m->depth)
                return nl_fail(nl, -ENOBUFS, "%s: request too large", what);
        m->u.hdr.nlmsg_seq = ++nl->seq;
        /* a dump ends with NLMSG_DONE; anything else, even a single GETLINK, with an ACK */
        bool dump = (m->u.hdr.nlmsg_type & 3) == 2 /* RTM_GET* */ && (m->u.hdr.nlmsg_flags & NLM_F_DUMP) == NLM_F_DUMP;
        if (!dump)
                m->u.hdr.nlmsg_flags |= NLM_F_ACK;

        struct sockaddr_nl kernel = {.nl_family = AF_NETLINK};
        ssize_t n;
        do
                n = sendto(nl->fd, m->u.buf, m->u.hdr.nlmsg_len, 0, (struct sockaddr *)&kernel, sizeof(kernel));
        while (n < 0 && errno == EINTR);
        if (n < 0)
                return nl_fail(nl, -errno, "%s: send: %s", what, strerror(errno));

        char *buf = malloc(NL_RECV_MAX); /* not on the stack: threads may have small ones */
        if (!buf)
                return nl_fail(nl, -ENOMEM, "%s: out of memory", what);
        int r = reply(nl, m, buf, fn, data, what);
        free(buf);
        return r;
}

static int reply(struct nl *nl, const struct nl_msg *m, char *buf, int (*fn)(const struct nlmsghdr *h, void *data),
                 void *data, const char *what) {
        int cb_r = 0;
        for (;;) {
                ssize_t n;
                do /* MSG_TRUNC: n is the datagram's real size, so a cut one is seen */
                        n = recv(nl->fd, buf, NL_RECV_MAX, MSG_TRUNC);
                while (n < 0 && errno == EINTR);
                if (n < 0)
                        return nl_fail(nl, -errno, "%s: receive: %s", what, strerror(errno));
                if (n == 0)
                        return nl_fail(nl, -EPIPE, "%s: netlink socket closed", what);
                if (n > NL_RECV_MAX)
                        return nl_fail(nl, -EMSGSIZE, "%s: answer of %zd bytes does not fit", what, n);
                int len = (int)n;
                for (struct nlmsghdr *h = (void *)buf; msg_ok(h, len); h = NLMSG_NEXT(h, len)) {
                        if (h->nlmsg_seq != m->u.hdr.nlmsg_seq || (h->nlmsg_pid && h->nlmsg_pid != nl->portid))
                                continue; /* a late answer to an earlier, abandoned request */
                        if (h->nlmsg_type == NLMSG_DONE)
                                return cb_r;
                        if (h->nlmsg_type == NLMSG_ERROR) {
                                if (h->nlmsg_len < NLMSG_LENGTH(sizeof(struct nlmsgerr)))
                                        return nl_fail(nl, -EBADMSG, "%s: short error message", what);
                                const struct nlmsgerr *e = NLMSG_DATA(h);
                                if (e->error == 0)
                                        return cb_r;
                                const char *kmsg = ack_message(h);
                                return nl_fail(nl, e->error, "%s: %s%s%s%s", what, strerror(-e->error),
                                               kmsg ? " (" : "", kmsg ? kmsg : "", kmsg ? ")" : "");
                        }
                        if (fn && cb_r >= 0) {
                                int r = fn(h, data);
                                if (r < 0) {
                                        cb_r = nl_fail(nl, r, "%s: %s", what, strerror(-r));
                                        /* and read on to the end of the answer */
                                }
                        }
                }
        }
}

int nl_open(struct nl *nl) {
        memset(nl, 0, sizeof(*nl));
        nl->fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
        if (nl->fd < 0)
                return nl_fail(nl, -errno, "netlink socket: %s", strerror(errno));
        int one = 1;
        /* kernel error texts, and errors that do not echo our whole request back */
        (void)setsockopt(nl->fd, SOL_NETLINK, NETLINK_EXT_ACK, &one, sizeof(one));
        (void)setsockopt(nl->fd, SOL_NETLINK, NETLINK_CAP_ACK, &one, sizeof(one));
        struct sockaddr_nl sa = {.nl_family = AF_NETLINK};
        socklen_t sl = sizeof(sa);
        if (bind(nl->fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
            getsockname(nl->fd, (struct sockaddr *)&sa, &sl) < 0) {
                int r = -errno;
                close(nl->fd);
                nl->fd = -1;
                return nl_fail(nl, r, "netlink bind: %s", strerror(-r));
        }
        nl->portid = sa.nl_pid;
        return 0;
}

void nl_close(struct nl *nl) {
        if (nl->fd >= 0)
                close(nl->fd);
        nl->fd = -1;
}

struct netns_open {
        struct nl *nl;
        int netns_fd;
        int r;
};

static void *netns_open_thread(void *p) {
        struct netns_open *o = p;
        if (setns(o->netns_fd, CLONE_NEWNET) < 0) {
                o->r = nl_fail(o->nl, -errno, "enter network namespace: %s", strerror(errno));
                return NULL;
        }
        o->r = nl_open(o->nl);
        return NULL; /* the thread, and its namespace, end here */
}

int nl_open_in_netns(struct nl *nl, int netns_fd) {
        memset(nl, 0, sizeof(*nl));
        nl->fd = -1;
        struct netns_open o = {.nl = nl, .netns_fd = netns_fd, .r = -EINVAL};
        pthread_t t;
        int r = pthread_create(&t, NULL, netns_open_thread, &o);
        if (r)
                return nl_fail(nl, -r, "thread to enter network namespace: %s", strerror(r));
        pthread_join(t, NULL);
        return o.r;
}

/* ---- links ---- */

struct link_get {
        struct nl_link *out;
        int (*fn)(const struct nl_link *l, void *data);
        void *data;
};

static void parse_link(const struct nlmsghdr *h, struct nl_link *l) {
        const struct ifinfomsg *ifi = NLMSG_DATA(h);
        memset(l, 0, sizeof(*l));
        l->index = ifi->ifi_index;
        l->up = ifi->ifi_flags & IFF_UP;
        int len = (int)IFLA_PAYLOAD(h);
        for (const struct rtattr *a = IFLA_RTA(ifi); RTA_OK(a, len); a = RTA_NEXT(a, len)) {
                size_t plen = RTA_PAYLOAD(a);
                switch (a->rta_type) {
                case IFLA_IFNAME:
                        snprintf(l->name, sizeof(l->name), "%.*s", (int)strnlen(RTA_DATA(a), plen),
                                 (const char *)RTA_DATA(a));
                        break;
                case IFLA_MASTER:
                        if (plen >= 4)
                                l->master = (int)*(const uint32_t *)RTA_DATA(a);
                        break;
                case IFLA_MTU:
                        if (plen >= 4)
                                l->mtu = *(const uint32_t *)RTA_DATA(a);
                        break;
                case IFLA_LINKINFO: {
                        int ilen = (int)plen;
                        for (const struct rtattr *i = RTA_DATA(a); RTA_OK(i, ilen); i = RTA_NEXT(i, ilen))
                                if (i->rta_type == IFLA_INFO_KIND)
                                        snprintf(l->kind, sizeof(l->kind), "%.*s",
                                                 (int)strnlen(RTA_DATA(i), RTA_PAYLOAD(i)), (const char *)RTA_DATA(i));
                        break;
                }
                }
        }
}

static int link_cb(const struct nlmsghdr *h, void *data) {
        struct link_get *g = data;
        if (h->nlmsg_type != RTM_NEWLINK || h->nlmsg_len < NLMSG_LENGTH(sizeof(struct ifinfomsg)))
                return 0;
        struct nl_link l;
        parse_link(h, &l);
        if (g->out) {
                *g->out = l;
                return 0;
        }
        return g->fn(&l, g->data);
}

static int valid_ifname(struct nl *nl, const char *name, const char *what) {
        if (!name || !*name || strlen(name) >= NL_IFNAME_MAX)
                return nl_fail(nl, -EINVAL, "%s: invalid interface name \"%s\" (1 to 15 characters)", what,
                               name ? name : "");
        return 0;
}

int nl_link_get(struct nl *nl, const char *name, struct nl_link *ret) {
        char what[64];
        snprintf(what, sizeof(what), "RTM_GETLINK %s", name ? name : "");
        int r = valid_ifname(nl, name, what);
        if (r < 0)
                return r;
        struct ifinfomsg ifi = {.ifi_family = AF_UNSPEC};
        struct nl_msg m;
        msg_init(&m, RTM_GETLINK, 0, &ifi, sizeof(ifi));
        attr_str(&m, IFLA_IFNAME, name);
        attr_u32(&m, IFLA_EXT_MASK, RTEXT_FILTER_SKIP_STATS);
        struct nl_link l = {.index = 0};
        struct link_get g = {.out = &l};
        r = transact(nl, &m, link_cb, &g, what);
        if (r < 0)
                return r;
        if (l.index <= 0)
                return nl_fail(nl, -ENODEV, "%s: no such interface", what);
        *ret = l;
        return 0;
}

int nl_link_dump(struct nl *nl, int (*fn)(const struct nl_link *l, void *data), void *data) {
        struct ifinfomsg ifi = {.ifi_family = AF_UNSPEC};
        struct nl_msg m;
        msg_init(&m, RTM_GETLINK, NLM_F_DUMP, &ifi, sizeof(ifi));
        attr_u32(&m, IFLA_EXT_MASK, RTEXT_FILTER_SKIP_STATS);
        struct link_get g = {.fn = fn, .data = data};
        return transact(nl, &m, link_cb, &g, "RTM_GETLINK dump");
}

int nl_link_add_bridge(struct nl *nl, const char *name, const uint8_t mac[6], unsigned mtu) {
        char what[64];
        snprintf(what, sizeof(what), "RTM_NEWLINK bridge %s", name ? name : "");
        int r = valid_ifname(nl, name, what);
        if (r < 0)
                return r;
        struct ifinfomsg ifi = {.ifi_family = AF_UNSPEC};
        struct nl_msg m;
        msg_init(&m, RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL, &ifi, sizeof(ifi));
        attr_str(&m, IFLA_IFNAME, name);
        if (mac)
                attr_put(&m, IFLA_ADDRESS, mac, 6);
        if (mtu)
                attr_u32(&m, IFLA_MTU, mtu);
        nest_begin(&m, IFLA_LINKINFO);
        attr_str(&m, IFLA_INFO_KIND, "bridge");
        nest_end(&m);
        return transact(nl, &m, NULL, NULL, what);
}

int nl_link_add_veth(struct nl *nl, const char *name, unsigned mtu, const char *peer_name, int peer_netns_fd,
                     const uint8_t peer_mac[6]) {
        char what[80];
        snprintf(what, sizeof(what), "RTM_NEWLINK veth %s peer %s", name ? name : "", peer_name ? peer_name : "");
        int r = valid_ifname(nl, name, what);
        if (r < 0 || (r = valid_ifname(nl, peer_name, what)) < 0)
                return r;
        struct ifinfomsg ifi = {.ifi_family = AF_UNSPEC};
        struct nl_msg m;
        msg_init(&m, RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL, &ifi, sizeof(ifi));
        attr_str(&m, IFLA_IFNAME, name);
        if (mtu)
                attr_u32(&m, IFLA_MTU, mtu);
        nest_begin(&m, IFLA_LINKINFO);
        attr_str(&m, IFLA_INFO_KIND, "veth");
        nest_begin(&m, IFLA_INFO_DATA);
        nest_begin(&m, VETH_INFO_PEER);
        /* the peer's attributes follow its own struct ifinfomsg */
        put_raw(&m, &ifi, sizeof(ifi));
        attr_str(&m, IFLA_IFNAME, peer_name);
        if (mtu)
                attr_u32(&m, IFLA_MTU, mtu);
        if (peer_mac)
                attr_put(&m, IFLA_ADDRESS, peer_mac, 6);
        if (peer_netns_fd >= 0)
                attr_u32(&m, IFLA_NET_NS_FD, (uint32_t)peer_netns_fd);
        nest_end(&m);
        nest_end(&m);
        nest_end(&m);
        return transact(nl, &m, NULL, NULL, what);
}

static int link_set(struct nl *nl, int ifindex, unsigned flags, unsigned change, unsigned short type, const void *v,
                    size_t len, const char *what) {
        struct ifinfomsg ifi = {
                .ifi_family = AF_UNSPEC, .ifi_index = ifindex, .ifi_flags = flags, .ifi_change = change};
        struct nl_msg m;
        msg_init(&m, RTM_SETLINK, 0, &ifi, sizeof(ifi));
        if (v)
                attr_put(&m, type, v, len);
        return transact(nl, &m, NULL, NULL, what);
}

int nl_link_set_up(struct nl *nl, int ifindex, bool up) {
        char what[64];
        snprintf(what, sizeof(what), "RTM_SETLINK index %d %s", ifindex, up ? "up" : "down");
        return link_set(nl, ifindex, up ? IFF_UP : 0, IFF_UP, 0, NULL, 0, what);
}

int nl_link_set_master(struct nl *nl, int ifindex, int master_ifindex) {
        char what[64];
        snprintf(what, sizeof(what), "RTM_SETLINK index %d master %d", ifindex, master_ifindex);
        uint32_t v = (uint32_t)master_ifindex;
        return link_set(nl, ifindex, 0, 0, IFLA_MASTER, &v, sizeof(v), what);
}

int nl_link_set_mtu(struct nl *nl, int ifindex, unsigned mtu) {
        char what[64];
        snprintf(what, sizeof(what), "RTM_SETLINK index %d mtu %u", ifindex, mtu);
        uint32_t v = mtu;
        return link_set(nl, ifindex, 0, 0, IFLA_MTU, &v, sizeof(v), what);
}

int nl_link_set_name(struct nl *nl, int ifindex, const char *name) {
        char what[64];
        snprintf(what, sizeof(what), "RTM_SETLINK index %d name %s", ifindex, name ? name : "");
        int r = valid_ifname(nl, name, what);
        if (r < 0)
                return r;
        return link_set(nl, ifindex, 0, 0, IFLA_IFNAME, name, strlen(name) + 1, what);
}

int nl_link_del(struct nl *nl, int ifindex) {
        char what[64];
        snprintf(what, sizeof(what), "RTM_DELLINK index %d", ifindex);
        struct ifinfomsg ifi = {.ifi_family = AF_UNSPEC, .ifi_index = ifindex};
        struct nl_msg m;
        msg_init(&m, RTM_DELLINK, 0, &ifi, sizeof(ifi));
        return transact(nl, &m, NULL, NULL, what);
}

/* ---- addresses ---- */

static int addr4(struct nl *nl, uint16_t type, uint16_t flags, int ifindex, struct in_addr addr, unsigned prefixlen) {
        char a[INET_ADDRSTRLEN], what[96];
        inet_ntop(AF_INET, &addr, a, sizeof(a));
        snprintf(what, sizeof(what), "%s %s/%u dev index %d", type == RTM_NEWADDR ? "RTM_NEWADDR" : "RTM_DELADDR", a,
                 prefixlen, ifindex);
        if (prefixlen > 32)
                return nl_fail(nl, -EINVAL, "%s: prefix length out of range", what);
        struct ifaddrmsg ifa = {
                .ifa_family = AF_INET,
                .ifa_prefixlen = (uint8_t)prefixlen,
                .ifa_scope = RT_SCOPE_UNIVERSE,
                .ifa_index = (uint32_t)ifindex,
        };
        struct nl_msg m;
        msg_init(&m, type, flags, &ifa, sizeof(ifa));
        attr_put(&m, IFA_LOCAL, &addr, 4);
        attr_put(&m, IFA_ADDRESS, &addr, 4);
        if (type == RTM_NEWADDR && prefixlen < 31) {
                uint32_t mask = prefixlen ? htonl(~0u << (32 - prefixlen)) : 0;
                struct in_addr brd = {addr.s_addr | ~mask};
                attr_put(&m, IFA_BROADCAST, &brd, 4);
        }
        return transact(nl, &m, NULL, NULL, what);
}

int nl_addr4_add(struct nl *nl, int ifindex, struct in_addr addr, unsigned prefixlen) {
        return addr4(nl, RTM_NEWADDR, NLM_F_CREATE | NLM_F_REPLACE, ifindex, addr, prefixlen);
}

int nl_addr4_del(struct nl *nl, int ifindex, struct in_addr addr, unsigned prefixlen) {
        return addr4(nl, RTM_DELADDR, 0, ifindex, addr, prefixlen);
}

struct addr_dump {
        int ifindex;
        int (*fn)(const struct nl_addr4 *a, void *data);
        void *data;
};

static int addr_cb(const struct nlmsghdr *h, void *data) {
        struct addr_dump *d = data;
        if (h->nlmsg_type != RTM_NEWADDR || h->nlmsg_len < NLMSG_LENGTH(sizeof(struct ifaddrmsg)))
                return 0;
        const struct ifaddrmsg *ifa = NLMSG_DATA(h);
        if (ifa->ifa_family != AF_INET || (d->ifindex && (int)ifa->ifa_index != d->ifindex))
                return 0;
        struct nl_addr4 a = {.ifindex = (int)ifa->ifa_index, .prefixlen = ifa->ifa_prefixlen};
        bool have = false;
        int len = (int)IFA_PAYLOAD(h);
        for (const struct rtattr *at = IFA_RTA(ifa); RTA_OK(at, len); at = RTA_NEXT(at, len))
                if ((at->rta_type == IFA_LOCAL || (at->rta_type == IFA_ADDRESS && !have)) && RTA_PAYLOAD(at) >= 4) {
                        memcpy(&a.addr, RTA_DATA(at), 4);
                        have = true;
                }
        return have ? d->fn(&a, d->data) : 0;
}

int nl_addr4_dump(struct nl *nl, int ifindex, int (*fn)(const struct nl_addr4 *a, void *data), void *data) {
        struct ifaddrmsg ifa = {.ifa_family = AF_INET};
        struct nl_msg m;
        msg_init(&m, RTM_GETADDR, NLM_F_DUMP, &ifa, sizeof(ifa));
        struct addr_dump d = {.ifindex = ifindex, .fn = fn, .data = data};
        return transact(nl, &m, addr_cb, &d, "RTM_GETADDR dump");
}

/* ---- routes ---- */

int nl_route4_add(struct nl *nl, struct in_addr dst, unsigned dst_len, struct in_addr gateway, int oif) {
        char d[INET_ADDRSTRLEN], g[INET_ADDRSTRLEN], what[128];
        inet_ntop(AF_INET, &dst, d, sizeof(d));
        inet_ntop(AF_INET, &gateway, g, sizeof(g));
        snprintf(what, sizeof(what), "RTM_NEWROUTE %s/%u via %s dev index %d", d, dst_len, g, oif);
        if (dst_len > 32)
                return nl_fail(nl, -EINVAL, "%s: prefix length out of range", what);
        struct rtmsg rt = {
                .rtm_family = AF_INET,
                .rtm_dst_len = (uint8_t)dst_len,
                .rtm_table = RT_TABLE_MAIN,
                .rtm_protocol = RTPROT_STATIC,
                .rtm_scope = gateway.s_addr ? RT_SCOPE_UNIVERSE : RT_SCOPE_LINK,
                .rtm_type = RTN_UNICAST,
        };
        struct nl_msg m;
        msg_init(&m, RTM_NEWROUTE, NLM_F_CREATE | NLM_F_REPLACE, &rt, sizeof(rt));
        if (dst_len)
                attr_put(&m, RTA_DST, &dst, 4);
        if (gateway.s_addr)
                attr_put(&m, RTA_GATEWAY, &gateway, 4);
        if (oif > 0)
                attr_u32(&m, RTA_OIF, (uint32_t)oif);
        return transact(nl, &m, NULL, NULL, what);
}

struct route_dump {
        int (*fn)(const struct nl_route4 *r, void *data);
        void *data;
};

static int route_cb(const struct nlmsghdr *h, void *data) {
        struct route_dump *d = data;
        if (h->nlmsg_type != RTM_NEWROUTE || h->nlmsg_len < NLMSG_LENGTH(sizeof(struct rtmsg)))
                return 0;
        const struct rtmsg *rt = NLMSG_DATA(h);
        if (rt->rtm_family != AF_INET)
                return 0;
        struct nl_route4 r = {
                .dst_len = rt->rtm_dst_len,
                .table = rt->rtm_table,
                .type = rt->rtm_type,
                .protocol = rt->rtm_protocol,
                .scope = rt->rtm_scope,
        };
        int len = (int)RTM_PAYLOAD(h);
        for (const struct rtattr *a = RTM_RTA(rt); RTA_OK(a, len); a = RTA_NEXT(a, len)) {
                if (RTA_PAYLOAD(a) < 4)
                        continue;
                switch (a->rta_type) {
                case RTA_DST:
                        memcpy(&r.dst, RTA_DATA(a), 4);
                        break;
                case RTA_GATEWAY:
                        memcpy(&r.gateway, RTA_DATA(a), 4);
                        break;
                case RTA_OIF:
                        r.oif = (int)*(const uint32_t *)RTA_DATA(a);
                        break;
                case RTA_TABLE:
                        r.table = *(const uint32_t *)RTA_DATA(a);
                        break;
                }
        }
        return d->fn(&r, d->data);
}

int nl_route4_dump(struct nl *nl, int (*fn)(const struct nl_route4 *r, void *data), void *data) {
        struct rtmsg rt = {.rtm_family = AF_INET};
        struct nl_msg m;
        msg_init(&m, RTM_GETROUTE, NLM_F_DUMP, &rt, sizeof(rt));
        struct route_dump d = {.fn = fn, .data = data};
        return transact(nl, &m, route_cb, &d, "RTM_GETROUTE dump");
}
