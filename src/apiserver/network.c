/* The apiserver's part of machine networking: the DNS forwarder for machines, and removing
 * the bridge and NAT table at shutdown when no machine uses them.
 *
 * The forwarder is one thread with a UDP socket on the gateway address, port 53, in the
 * apiserver's network namespace (the one the runtimes put the bridge in). It binds at start
 * with IP_FREEBIND, before the bridge (and so the address) exists: a machine's first query,
 * right after the runtime made the bridge, must find it. With network.mode none nothing is
 * bound; changes of the network properties are followed within a second. It answers
 *   <name>.machine and the bare <name>, type A: the address of machine <name> when it belongs
 *     to the owner of the querying machine (the query's source address names the machine);
 *     other types of those names: an empty answer; an unknown <name>.machine: NXDOMAIN;
 * and forwards everything else, unchanged, to the nameservers of the apiserver's own
 * /etc/resolv.conf, one short-lived thread per query (SERVFAIL when none answers in time). */
#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "machine/machine.h"
#include "net/dns.h"
#include "net/settings.h"
#include "server.h"
#include "util/strv.h"

#define DNS_PORT 53
#define DNS_TTL 5
#define FORWARD_TIMEOUT_MS 2000
#define FORWARD_MAX 64
#define UPSTREAMS_MAX 3
#define MACHINE_SUFFIX ".machine"

static pthread_t dns_thread;
static bool dns_running;
static atomic_int forwards_in_flight;

/* ---- who asks, and what they may see ---- */

struct machine_addr {
        bool found;
        uid_t owner;
        struct in_addr addr;
};

static struct machine_addr machine_lookup(struct server *srv, const char *name) {
        struct machine_addr m = {0};
        if (machine_name_validate(name, NULL) < 0)
                return m;
        _cleanup_free_ char *dir = machine_dir(srv->root, name);
        _cleanup_machine_config_ struct machine_config *c = NULL;
        if (!dir || machine_config_load(dir, &c, NULL) < 0 || !c->ip_address ||
            inet_pton(AF_INET, c->ip_address, &m.addr) != 1)
                return m;
        m.found = true;
        m.owner = c->owner.uid;
        return m;
}

/* The machine whose address is src: its owner. */
static bool owner_of_address(struct server *srv, struct in_addr src, uid_t *ret) {
        char dir[4096];
        snprintf(dir, sizeof dir, "%s/machines", srv->root);
        _cleanup_closedir_ DIR *d = opendir(dir);
        if (!d)
                return false;
        struct dirent *de;
        while ((de = readdir(d))) {
                if (de->d_name[0] == '.')
                        continue;
                struct machine_addr m = machine_lookup(srv, de->d_name);
                if (m.found && m.addr.s_addr == src.s_addr) {
                        *ret = m.owner;
                        return true;
                }
        }
        return false;
}

/* ---- forwarding ---- */

struct forward {
        int fd;              /* a dup of the listening socket */
        struct in_addr self; /* our own address: never forward to ourselves */
        struct sockaddr_in client;
        size_t len;
        uint8_t msg[];
};

static void reply_error(int fd, const struct sockaddr_in *to, const uint8_t *msg, size_t len, int rcode) {
        struct dns_question q;
        uint8_t out[600];
        if (dns_parse_query(msg, len, &q) < 0)
                return;
        size_t n = dns_build_reply(msg, &q, rcode, NULL, 0, out, sizeof out);
        if (n)
                (void)sendto(fd, out, n, MSG_DONTWAIT, (const struct sockaddr *)to, sizeof *to);
}

static bool forward_one(const struct forward *f, const struct sockaddr_in *up) {
        _cleanup_close_ int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        if (s < 0 || connect(s, (const struct sockaddr *)up, sizeof *up) < 0 || send(s, f->msg, f->len, 0) < 0)
                return false;
        struct pollfd p = {.fd = s, .events = POLLIN};
        uint8_t buf[4096];
        while (poll(&p, 1, FORWARD_TIMEOUT_MS) > 0) {
                ssize_t n = recv(s, buf, sizeof buf, 0);
                if (n < 0)
                        return false;
                /* the answer to our question: same id */
                if (n >= 12 && buf[0] == f->msg[0] && buf[1] == f->msg[1]) {
                        (void)sendto(f->fd, buf, (size_t)n, MSG_DONTWAIT, (const struct sockaddr *)&f->client,
                                     sizeof f->client);
                        return true;
                }
        }
        return false;
}

static void *forward_thread(void *arg) {
        struct forward *f = arg;
        struct sockaddr_in ups[UPSTREAMS_MAX];
        int n = dns_upstreams_read("/etc/resolv.conf", ups, UPSTREAMS_MAX);
        bool done = false;
        for (int i = 0; i < n && !done; i++)
                if (ups[i].sin_addr.s_addr != f->self.s_addr)
                        done = forward_one(f, &ups[i]);
        if (!done)
                reply_error(f->fd, &f->client, f->msg, f->len, DNS_RCODE_SERVFAIL);
        close(f->fd);
        free(f);
        atomic_fetch_sub(&forwards_in_flight, 1);
        return NULL;
}

static struct in_addr forwarder_addr;

static void forward(int fd, const struct sockaddr_in *client, const uint8_t *msg, size_t len) {
        if (atomic_fetch_add(&forwards_in_flight, 1) >= FORWARD_MAX) {
                atomic_fetch_sub(&forwards_in_flight, 1);
                reply_error(fd, client, msg, len, DNS_RCODE_SERVFAIL);
                return;
        }
        struct forward *f = malloc(sizeof *f + len);
        int dfd = fcntl(fd, F_DUPFD_CLOEXEC, 3);
        pthread_attr_t attr;
        pthread_t th;
        if (f && dfd >= 0 && pthread_attr_init(&attr) == 0) {
                f->fd = dfd;
                f->self = forwarder_addr;
                f->client = *client;
                f->len = len;
                memcpy(f->msg, msg, len);
                pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
                int r = pthread_create(&th, &attr, forward_thread, f);
                pthread_attr_destroy(&attr);
                if (r == 0)
                        return;
        }
        free(f);
        if (dfd >= 0)
                close(dfd);
        atomic_fetch_sub(&forwards_in_flight, 1);
        reply_error(fd, client, msg, len, DNS_RCODE_SERVFAIL);
}

/* ---- one query ---- */

static void handle_query(struct server *srv, int fd, const struct sockaddr_in *client, const uint8_t *msg, size_t len) {
        struct dns_question q;
        int r = dns_parse_query(msg, len, &q);
        if (r == -EOPNOTSUPP) {
                forward(fd, client, msg, len);
                return;
        }
        if (r < 0)
                return; /* not worth an answer */

        /* <name>.machine is ours; a bare <name> may be a machine's, else it goes upstream */
        char name[DNS_NAME_MAX + 1];
        bool ours = false;
        size_t nl = strlen(q.name), sl = strlen(MACHINE_SUFFIX);
        if (nl > sl && streq(q.name + nl - sl, MACHINE_SUFFIX)) {
                ours = true;
                memcpy(name, q.name, nl - sl);
                name[nl - sl] = 0;
        } else if (nl > 0 && !strchr(q.name, '.'))
                strcpy(name, q.name);
        else {
                forward(fd, client, msg, len);
                return;
        }
        uid_t asker;
        struct machine_addr m = {0};
        if (owner_of_address(srv, client->sin_addr, &asker)) {
                m = machine_lookup(srv, name);
                m.found = m.found && m.owner == asker;
        }
        if (!m.found) {
                if (!ours) {
                        forward(fd, client, msg, len);
                        return;
                }
                reply_error(fd, client, msg, len, DNS_RCODE_NXDOMAIN);
                return;
        }
        uint8_t out[600];
        bool a = q.qclass == DNS_CLASS_IN && (q.qtype == DNS_TYPE_A || q.qtype == 255 /* ANY */);
        size_t n = dns_build_reply(msg, &q, DNS_RCODE_NOERROR, a ? &m.addr : NULL, DNS_TTL, out, sizeof out);
        if (n)
                (void)sendto(fd, out, n, MSG_DONTWAIT, (const struct sockaddr *)client, sizeof *client);
}

/* ---- the socket, bound while the bridge exists ---- */

static int bind_gateway(const struct net_settings *ns) {
        int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (fd < 0)
                return -errno;
        int one = 1;
        (void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        /* the gateway address exists only with the bridge, made by the first machine's runtime */
        (void)setsockopt(fd, IPPROTO_IP, IP_FREEBIND, &one, sizeof one);
        struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(DNS_PORT), .sin_addr = ns->gateway_addr};
        if (bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
                int r = -errno;
                close(fd);
                return r;
        }
        return fd;
}

static void *dns_main(void *arg) {
        struct server *srv = arg;
        int fd = -1;
        struct in_addr bound = {0};
        bool warned = false;
        while (!srv->stopping) {
                struct net_settings ns = {0};
                pthread_mutex_lock(&srv->lock);
                int r = net_settings_from_config(srv->config, &ns, NULL);
                pthread_mutex_unlock(&srv->lock);
                bool want = r >= 0 && ns.enabled;
                if (fd >= 0 && (!want || bound.s_addr != ns.gateway_addr.s_addr)) {
                        close(fd);
                        fd = -1;
                }
                if (want && fd < 0) {
                        fd = bind_gateway(&ns);
                        if (fd >= 0) {
                                bound = ns.gateway_addr;
                                forwarder_addr = bound;
                                warned = false;
                                fprintf(stderr, "apiserver: DNS for machines on %s:%d\n", ns.gateway, DNS_PORT);
                        } else if (!warned) {
                                warned = true;
                                fprintf(stderr, "apiserver: cannot serve DNS on %s:%d: %s\n", ns.gateway, DNS_PORT,
                                        strerror(-fd));
                        }
                }
                struct pollfd p = {.fd = fd, .events = POLLIN};
                if (poll(&p, 1, 1000) <= 0 || fd < 0)
                        continue;
                for (int i = 0; i < 64; i++) {
                        uint8_t buf[4096];
                        struct sockaddr_in from;
                        socklen_t fl = sizeof from;
                        ssize_t n = recvfrom(fd, buf, sizeof buf, 0, (struct sockaddr *)&from, &fl);
                        if (n < 0)
                                break;
                        if (fl == sizeof from && from.sin_family == AF_INET)
                                handle_query(srv, fd, &from, buf, (size_t)n);
                }
        }
        if (fd >= 0)
                close(fd);
        return NULL;
}

void network_start(struct server *srv) {
        dns_running = pthread_create(&dns_thread, NULL, dns_main, srv) == 0;
}

void network_shutdown(struct server *srv) {
        if (dns_running)
                pthread_join(dns_thread, NULL);
        dns_running = false;

        struct net_settings ns;
        if (net_settings_from_config(srv->config, &ns, NULL) < 0 || !ns.enabled)
                return;
        /* only where a bridge of ours is: nothing is ever made (or run) in a namespace without */
        if (net_bridge_port_count(ns.bridge, NULL) < 0)
                return;
        int lock = net_state_lock(srv->root);
        _cleanup_error_ struct cm_error *e = NULL;
        int n = net_bridge_port_count(ns.bridge, &e);
        if (n == 0) {
                if (net_host_release(ns.bridge, &e) < 0 || net_bridge_delete(ns.bridge, &e) < 0)
                        fprintf(stderr, "apiserver: network cleanup: %s\n", e && e->message ? e->message : "error");
                else
                        fprintf(stderr, "apiserver: no machine running: removed bridge %s and NAT table %s\n",
                                ns.bridge, NET_NAT_TABLE);
        }
        if (lock >= 0)
                close(lock);
}
