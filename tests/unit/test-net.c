/* net/: netlink, bridge, machine veth, subnet check, address allocator, NAT.
 *
 * Every test that touches the network runs in a forked child inside a network namespace of
 * its own (unshare(CLONE_NEWNET)); the "machines" are further namespaces the child makes and
 * holds only by fd. Everything dies with the child, whatever happens: nothing is left on the
 * host, and no packet leaves these namespaces. */
#include <arpa/inet.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <linux/rtnetlink.h>

#include "net/net.h"
#include "net/netlink.h"
#include "util/fs.h"

#define SKIP_CODE 77

#define CHECK(c)                                                                                                       \
        do {                                                                                                           \
                if (!(c)) {                                                                                            \
                        fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #c);                          \
                        return 1;                                                                                      \
                }                                                                                                      \
        } while (0)
#define CHECK_OK(call)                                                                                                 \
        do {                                                                                                           \
                struct cm_error *e_ = NULL;                                                                            \
                int r_ = (call);                                                                                       \
                if (r_ < 0) {                                                                                          \
                        fprintf(stderr, "%s:%d: %s = %d: %s\n", __FILE__, __LINE__, #call, r_,                         \
                                e_ ? e_->message : "(no message)");                                                    \
                        cm_error_free(e_);                                                                             \
                        return 1;                                                                                      \
                }                                                                                                      \
                cm_error_free(e_);                                                                                     \
        } while (0)
/* the call fails with errno code and a message containing text */
#define CHECK_FAILS(call, code, text)                                                                                  \
        do {                                                                                                           \
                struct cm_error *e_ = NULL;                                                                            \
                int r_ = (call);                                                                                       \
                bool ok_ = r_ == -(code) && e_ && e_->message && strstr(e_->message, (text));                          \
                if (!ok_)                                                                                              \
                        fprintf(stderr, "%s:%d: %s = %d (%s), want -%s with \"%s\"\n", __FILE__, __LINE__, #call, r_,  \
                                e_ && e_->message ? e_->message : "-", #code, (text));                                 \
                else                                                                                                   \
                        printf("  expected error: %s\n", e_->message);                                                 \
                cm_error_free(e_);                                                                                     \
                if (!ok_)                                                                                              \
                        return 1;                                                                                      \
        } while (0)

static const char *skip_reason;

/* Runs fn in a child in a fresh network namespace; the test fails if fn returns non-zero. */
static void in_netns(int (*fn)(void)) {
        if (geteuid() != 0) {
                printf("  skipped: needs root (network namespaces, bridges, veths)\n");
                skip();
        }
        fflush(stdout);
        fflush(stderr);
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
                if (unshare(CLONE_NEWNET) < 0) {
                        printf("  skipped: unshare(CLONE_NEWNET): %m\n");
                        fflush(stdout);
                        _exit(SKIP_CODE);
                }
                int r = fn();
                if (r == SKIP_CODE && skip_reason)
                        printf("  skipped: %s\n", skip_reason);
                fflush(stdout);
                fflush(stderr);
                _exit(r);
        }
        int status;
        assert_int_equal(waitpid(pid, &status, 0), pid);
        assert_true(WIFEXITED(status));
        if (WEXITSTATUS(status) == SKIP_CODE)
                skip();
        assert_int_equal(WEXITSTATUS(status), 0);
}

/* A new network namespace, held by the returned fd; the caller stays where it was. */
static int netns_new(void) {
        int self = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
        if (self < 0 || unshare(CLONE_NEWNET) < 0)
                return -1;
        int fd = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
        if (setns(self, CLONE_NEWNET) < 0)
                abort(); /* cannot go on in the wrong namespace */
        close(self);
        return fd;
}

/* A socket of the namespace at nsfd (-1: this one). */
static int socket_in(int nsfd, int type) {
        int self = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
        if (self < 0 || (nsfd >= 0 && setns(nsfd, CLONE_NEWNET) < 0))
                return -1;
        int s = socket(AF_INET, type | SOCK_CLOEXEC, 0);
        if (setns(self, CLONE_NEWNET) < 0)
                abort();
        close(self);
        return s;
}

static struct sockaddr_in sin_of(const char *ip, uint16_t port) {
        struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
        inet_pton(AF_INET, ip, &a.sin_addr);
        return a;
}

static int listen_in(int nsfd, const char *ip, uint16_t port) {
        int s = socket_in(nsfd, SOCK_STREAM);
        int one = 1;
        struct sockaddr_in a = sin_of(ip, port);
        if (s < 0 || setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
            bind(s, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(s, 8) < 0)
                return -1;
        return s;
}

/* connect from namespace nsfd to ip:port where listener l waits (same process), exchange a
 * message both ways; the peer address as the server saw it goes to ret_peer. */
static int tcp_exchange(int nsfd, int l, const char *ip, uint16_t port, char ret_peer[INET_ADDRSTRLEN]) {
        int c = socket_in(nsfd, SOCK_STREAM | SOCK_NONBLOCK);
        if (c < 0)
                return -1;
        struct sockaddr_in a = sin_of(ip, port);
        if (connect(c, (struct sockaddr *)&a, sizeof(a)) < 0 && errno != EINPROGRESS) {
                fprintf(stderr, "connect %s:%u: %m\n", ip, port);
                close(c);
                return -1;
        }
        struct pollfd p = {.fd = l, .events = POLLIN};
        if (poll(&p, 1, 5000) != 1) {
                fprintf(stderr, "no connection to %s:%u within 5 s\n", ip, port);
                close(c);
                return -1;
        }
        struct sockaddr_in peer;
        socklen_t pl = sizeof(peer);
        int s = accept4(l, (struct sockaddr *)&peer, &pl, SOCK_CLOEXEC);
        struct pollfd pc = {.fd = c, .events = POLLOUT};
        int r = -1;
        char buf[16] = "";
        if (s >= 0 && poll(&pc, 1, 5000) == 1 && fcntl(c, F_SETFL, 0) == 0 && write(c, "ping", 4) == 4 &&
            read(s, buf, sizeof(buf)) == 4 && memcmp(buf, "ping", 4) == 0 && write(s, "pong", 4) == 4 &&
            read(c, buf, sizeof(buf)) == 4 && memcmp(buf, "pong", 4) == 0)
                r = 0;
        if (ret_peer)
                inet_ntop(AF_INET, &peer.sin_addr, ret_peer, INET_ADDRSTRLEN);
        if (s >= 0)
                close(s);
        close(c);
        return r;
}

static int udp_exchange(int from_ns, int to_ns, const char *to_ip, uint16_t port) {
        int rx = socket_in(to_ns, SOCK_DGRAM), tx = socket_in(from_ns, SOCK_DGRAM);
        struct sockaddr_in a = sin_of(to_ip, port);
        int r = -1;
        char buf[16];
        struct pollfd p = {.fd = rx, .events = POLLIN};
        if (rx >= 0 && tx >= 0 && bind(rx, (struct sockaddr *)&a, sizeof(a)) == 0 &&
            sendto(tx, "datagram", 8, 0, (struct sockaddr *)&a, sizeof(a)) == 8 && poll(&p, 1, 5000) == 1 &&
            recv(rx, buf, sizeof(buf), 0) == 8 && memcmp(buf, "datagram", 8) == 0)
                r = 0;
        if (rx >= 0)
                close(rx);
        if (tx >= 0)
                close(tx);
        return r;
}

struct addrs {
        struct nl_addr4 a[8];
        int n;
};
static int collect_addr(const struct nl_addr4 *a, void *data) {
        struct addrs *s = data;
        if (s->n < 8)
                s->a[s->n++] = *a;
        return 0;
}

struct routes {
        struct nl_route4 r[32];
        int n;
};
static int collect_route(const struct nl_route4 *r, void *data) {
        struct routes *s = data;
        if (s->n < 32 && r->table == RT_TABLE_MAIN)
                s->r[s->n++] = *r;
        return 0;
}

static bool addr_is(const struct nl_addr4 *a, const char *ip, unsigned len) {
        char s[INET_ADDRSTRLEN];
        inet_ntop(AF_INET, &a->addr, s, sizeof(s));
        return streq(s, ip) && a->prefixlen == len;
}

static bool link_exists(const char *name) {
        struct nl nl;
        struct nl_link l;
        if (nl_open(&nl) < 0)
                return true;
        bool r = nl_link_get(&nl, name, &l) == 0;
        nl_close(&nl);
        return r;
}

/* ---- bridge ---- */

static int bridge_body(void) {
        CHECK_OK(net_bridge_ensure("container0", "192.168.64.1/24", &e_));
        CHECK_OK(net_bridge_ensure("container0", "192.168.64.1/24", &e_)); /* idempotent */
        struct nl nl;
        struct nl_link l;
        CHECK(nl_open(&nl) == 0);
        CHECK(nl_link_get(&nl, "container0", &l) == 0);
        CHECK(streq(l.kind, "bridge"));
        CHECK(l.up);
        struct addrs a = {.n = 0};
        CHECK(nl_addr4_dump(&nl, l.index, collect_addr, &a) == 0);
        CHECK(a.n == 1 && addr_is(&a.a[0], "192.168.64.1", 24));
        int index = l.index;

        /* a changed subnet replaces the address, on the same bridge */
        CHECK_OK(net_bridge_ensure("container0", "192.168.70.1/24", &e_));
        CHECK(nl_link_get(&nl, "container0", &l) == 0 && l.index == index);
        a.n = 0;
        CHECK(nl_addr4_dump(&nl, l.index, collect_addr, &a) == 0);
        CHECK(a.n == 1 && addr_is(&a.a[0], "192.168.70.1", 24));
        CHECK(net_bridge_port_count("container0", NULL) == 0);

        /* a name taken by something else */
        CHECK(nl_link_add_veth(&nl, "notabridge", 0, "notabridge-p", -1, NULL) == 0);
        CHECK_FAILS(net_bridge_ensure("notabridge", "192.168.64.1/24", &e_), EEXIST, "not a bridge");
        CHECK_FAILS(net_bridge_ensure("container0", "192.168.64.1", &e_), EINVAL, "invalid gateway");
        CHECK_FAILS(net_bridge_ensure("a/b", "192.168.64.1/24", &e_), EINVAL, "not a valid interface name");
        CHECK_FAILS(net_bridge_ensure("sixteen-chars-xx", "192.168.64.1/24", &e_), EINVAL,
                    "not a valid interface name");

        CHECK_OK(net_bridge_delete("container0", &e_));
        CHECK(!link_exists("container0"));
        CHECK_OK(net_bridge_delete("container0", &e_)); /* gone already: fine */
        nl_close(&nl);
        return 0;
}
static void test_bridge(void **state) {
        in_netns(bridge_body);
}

/* ---- a machine's link ---- */

static int check_inside(int nsfd, const char *ip) {
        struct nl in;
        struct nl_link eth0, lo;
        CHECK(nl_open_in_netns(&in, nsfd) == 0);
        CHECK(nl_link_get(&in, "eth0", &eth0) == 0);
        CHECK(eth0.up && eth0.mtu == 1500 && streq(eth0.kind, "veth"));
        CHECK(nl_link_get(&in, "lo", &lo) == 0 && lo.up);
        struct addrs a = {.n = 0};
        CHECK(nl_addr4_dump(&in, eth0.index, collect_addr, &a) == 0);
        CHECK(a.n == 1 && addr_is(&a.a[0], ip, 24));
        struct routes rt = {.n = 0};
        CHECK(nl_route4_dump(&in, collect_route, &rt) == 0);
        bool dflt = false;
        for (int i = 0; i < rt.n; i++) {
                char gw[INET_ADDRSTRLEN];
                inet_ntop(AF_INET, &rt.r[i].gateway, gw, sizeof(gw));
                if (rt.r[i].dst_len == 0 && streq(gw, "192.168.64.1") && rt.r[i].oif == eth0.index)
                        dflt = true;
        }
        CHECK(dflt);
        nl_close(&in);
        return 0;
}

static int machine_body(void) {
        CHECK_OK(net_bridge_ensure("container0", "192.168.64.1/24", &e_));
        int b = netns_new(), c = netns_new();
        CHECK(b >= 0 && c >= 0);
        char bpath[64], cpath[64];
        snprintf(bpath, sizeof(bpath), "/proc/self/fd/%d", b);
        snprintf(cpath, sizeof(cpath), "/proc/self/fd/%d", c);
        char hb[NET_IFNAME_MAX], hc[NET_IFNAME_MAX];
        net_host_ifname("machine-b", hb);
        net_host_ifname("machine-c", hc);
        CHECK(strlen(hb) == 15 && strncmp(hb, "cm-", 3) == 0 && !streq(hb, hc));
        char again[NET_IFNAME_MAX];
        net_host_ifname("machine-b", again);
        CHECK(streq(again, hb));

        CHECK_OK(net_machine_link_up(bpath, hb, "container0", "192.168.64.2/24", "192.168.64.1", 0, &e_));
        CHECK_OK(net_machine_link_up(cpath, hc, "container0", "192.168.64.3/24", "192.168.64.1", 1500, &e_));
        CHECK(check_inside(b, "192.168.64.2") == 0);
        CHECK(check_inside(c, "192.168.64.3") == 0);

        struct nl nl;
        struct nl_link br, host;
        CHECK(nl_open(&nl) == 0);
        CHECK(nl_link_get(&nl, "container0", &br) == 0);
        CHECK(nl_link_get(&nl, hb, &host) == 0 && host.master == br.index && host.up);
        CHECK(net_bridge_port_count("container0", NULL) == 2);

        /* bridge side -> machine, machine -> gateway, machine -> machine; TCP and UDP */
        int l = listen_in(b, "0.0.0.0", 7000);
        CHECK(l >= 0);
        char peer[INET_ADDRSTRLEN];
        CHECK(tcp_exchange(-1, l, "192.168.64.2", 7000, peer) == 0);
        CHECK(streq(peer, "192.168.64.1"));
        CHECK(tcp_exchange(c, l, "192.168.64.2", 7000, peer) == 0);
        CHECK(streq(peer, "192.168.64.3"));
        close(l);
        l = listen_in(-1, "192.168.64.1", 7001);
        CHECK(l >= 0);
        CHECK(tcp_exchange(b, l, "192.168.64.1", 7001, peer) == 0);
        CHECK(streq(peer, "192.168.64.2"));
        close(l);
        CHECK(udp_exchange(-1, c, "192.168.64.3", 7002) == 0);
        CHECK(udp_exchange(c, -1, "192.168.64.1", 7003) == 0);

        /* again on a live pair: the leftover is replaced, and it still works */
        CHECK_OK(net_machine_link_up(bpath, hb, "container0", "192.168.64.2/24", "192.168.64.1", 0, &e_));
        CHECK(check_inside(b, "192.168.64.2") == 0);
        CHECK(net_bridge_port_count("container0", NULL) == 2);

        /* down: both ends gone */
        CHECK_OK(net_machine_link_down(hb, &e_));
        CHECK(!link_exists(hb));
        struct nl in;
        struct nl_link eth0;
        CHECK(nl_open_in_netns(&in, b) == 0);
        CHECK(nl_link_get(&in, "eth0", &eth0) == -ENODEV);
        CHECK(strstr(in.error, "RTM_GETLINK eth0") != NULL);
        nl_close(&in);
        CHECK_OK(net_machine_link_down(hb, &e_));
        CHECK(net_bridge_port_count("container0", NULL) == 1);

        /* failures leave nothing behind */
        CHECK_FAILS(net_machine_link_up(bpath, hb, "nobridge", "192.168.64.2/24", "192.168.64.1", 0, &e_), ENODEV,
                    "bridge nobridge does not exist");
        CHECK(!link_exists(hb));
        CHECK_FAILS(
                net_machine_link_up("/nonexistent/netns", hb, "container0", "192.168.64.2/24", "192.168.64.1", 0, &e_),
                ENOENT, "/nonexistent/netns");
        CHECK_FAILS(
                net_machine_link_up("/proc/self/ns/net", hb, "container0", "192.168.64.2/24", "192.168.64.1", 0, &e_),
                EINVAL, "the caller's own network namespace");
        /* a name that is taken by something that is not a veth is not ours to remove */
        CHECK(nl_link_add_bridge(&nl, hb, NULL, 0) == 0);
        CHECK_FAILS(net_machine_link_up(bpath, hb, "container0", "192.168.64.2/24", "192.168.64.1", 0, &e_), EEXIST,
                    "RTM_NEWLINK veth");
        struct nl_link taken;
        CHECK(nl_link_get(&nl, hb, &taken) == 0 && streq(taken.kind, "bridge") && nl_link_del(&nl, taken.index) == 0);
        CHECK(nl_open_in_netns(&in, b) == 0);
        CHECK(nl_link_get(&in, "eth0", &eth0) == -ENODEV);
        nl_close(&in);
        CHECK_FAILS(net_machine_link_up(bpath, hb, "container0", "192.168.64.2/24", "10.1.1.1", 0, &e_), EINVAL,
                    "not another address");
        CHECK_FAILS(net_machine_link_up(bpath, hb, "container0", "192.168.64.2/24", "192.168.64.1", 70000, &e_), EINVAL,
                    "invalid MTU");
        CHECK(!link_exists(hb));
        CHECK(nl_open_in_netns(&in, b) == 0);
        CHECK(nl_link_get(&in, "eth0", &eth0) == -ENODEV);
        nl_close(&in);
        nl_close(&nl);
        close(b);
        close(c);
        return 0;
}
static void test_machine_link(void **state) {
        in_netns(machine_body);
}

/* ---- subnet overlap ---- */

static int overlap_body(void) {
        CHECK_OK(net_subnet_check_free("192.168.64.0/24", "container0", &e_));
        struct nl nl;
        struct nl_link o;
        CHECK(nl_open(&nl) == 0);
        CHECK(nl_link_add_bridge(&nl, "other0", NULL, 0) == 0);
        CHECK(nl_link_get(&nl, "other0", &o) == 0);
        CHECK(nl_link_set_up(&nl, o.index, true) == 0);
        struct in_addr a, gw, any = {0};
        inet_pton(AF_INET, "192.168.65.1", &a);
        inet_pton(AF_INET, "192.168.65.2", &gw);
        CHECK(nl_addr4_add(&nl, o.index, a, 24) == 0);
        /* a default route overlaps everything and does not count */
        CHECK(nl_route4_add(&nl, any, 0, gw, o.index) == 0);
        CHECK_OK(net_subnet_check_free("192.168.64.0/24", "container0", &e_));
        CHECK_FAILS(net_subnet_check_free("192.168.65.128/25", "container0", &e_), EADDRINUSE,
                    "overlaps the host's route 192.168.65.0/24 dev other0");
        /* a wider route through a gateway */
        struct in_addr wide;
        inet_pton(AF_INET, "192.168.0.0", &wide);
        CHECK(nl_route4_add(&nl, wide, 16, gw, o.index) == 0);
        CHECK_FAILS(net_subnet_check_free("192.168.64.0/24", "container0", &e_), EADDRINUSE,
                    "192.168.0.0/16 via 192.168.65.2 dev other0");
        CHECK_OK(net_subnet_check_free("10.10.0.0/16", "container0", &e_));
        /* our own bridge's routes are not a conflict (apiserver restart) */
        CHECK_OK(net_bridge_ensure("container0", "10.10.0.1/16", &e_));
        CHECK_OK(net_subnet_check_free("10.10.0.0/16", "container0", &e_));
        CHECK_FAILS(net_subnet_check_free("10.10.0.0/16", "somethingelse", &e_), EADDRINUSE, "dev container0");
        CHECK_FAILS(net_subnet_check_free("10.10.0.0", "container0", &e_), EINVAL, "invalid subnet");
        nl_close(&nl);
        return 0;
}
static void test_subnet_overlap(void **state) {
        in_netns(overlap_body);
}

/* ---- address allocation ---- */

static char tmpdir[64];
static char state_file[128];

static int ipam_setup(void **state) {
        snprintf(tmpdir, sizeof(tmpdir), "/tmp/cm-test-net.XXXXXX");
        if (!mkdtemp(tmpdir))
                return -1;
        snprintf(state_file, sizeof(state_file), "%s/ipam.json", tmpdir);
        return 0;
}
static int ipam_teardown(void **state) {
        fs_rm_rf(AT_FDCWD, tmpdir);
        return 0;
}

static void test_ipam_concurrent(void **state) {
        enum { N = 20 };
        pid_t pids[N];
        for (int i = 0; i < N; i++) {
                pids[i] = fork();
                assert_true(pids[i] >= 0);
                if (pids[i] == 0) {
                        char name[16], ip[INET_ADDRSTRLEN];
                        snprintf(name, sizeof(name), "m%02d", i);
                        struct cm_error *e = NULL;
                        int r = ipam_allocate(state_file, "192.168.64.0/24", name, ip, &e);
                        if (r < 0)
                                fprintf(stderr, "%s: %s\n", name, e ? e->message : "?");
                        _exit(r < 0);
                }
        }
        for (int i = 0; i < N; i++) {
                int status;
                assert_int_equal(waitpid(pids[i], &status, 0), pids[i]);
                assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
        }
        bool seen[256] = {false};
        for (int i = 0; i < N; i++) {
                char name[16], ip[INET_ADDRSTRLEN], again[INET_ADDRSTRLEN];
                snprintf(name, sizeof(name), "m%02d", i);
                assert_int_equal(ipam_lookup(state_file, name, ip, NULL), 0);
                unsigned a, b, c, d;
                assert_int_equal(sscanf(ip, "%u.%u.%u.%u", &a, &b, &c, &d), 4);
                assert_true(a == 192 && b == 168 && c == 64 && d >= 2 && d < 2 + N);
                assert_false(seen[d]);
                seen[d] = true;
                /* persistent: allocating again gives the same address */
                assert_int_equal(ipam_allocate(state_file, "192.168.64.0/24", name, again, NULL), 0);
                assert_string_equal(ip, again);
        }

        /* release frees; the lowest free address is reused */
        char ip5[INET_ADDRSTRLEN], ip[INET_ADDRSTRLEN];
        assert_int_equal(ipam_lookup(state_file, "m05", ip5, NULL), 0);
        assert_int_equal(ipam_release(state_file, "m05", NULL), 1);
        assert_int_equal(ipam_release(state_file, "m05", NULL), 0);
        struct cm_error *e = NULL;
        assert_int_equal(ipam_lookup(state_file, "m05", ip, &e), -ENOENT);
        assert_non_null(strstr(e->message, "m05 has no address"));
        cm_error_free(e);
        assert_int_equal(ipam_allocate(state_file, "192.168.64.0/24", "newcomer", ip, NULL), 0);
        assert_string_equal(ip, ip5);

        /* a changed subnet: a new address inside it, the old ones block nothing there */
        assert_int_equal(ipam_allocate(state_file, "10.5.0.0/16", "m00", ip, NULL), 0);
        assert_string_equal(ip, "10.5.0.2");
        assert_int_equal(ipam_allocate(state_file, "10.5.0.0/16", "m01", ip, NULL), 0);
        assert_string_equal(ip, "10.5.0.3");
}

static void *allocate_thread(void *p) {
        char name[16], ip[INET_ADDRSTRLEN];
        snprintf(name, sizeof(name), "t%02d", (int)(intptr_t)p);
        return (void *)(intptr_t)ipam_allocate(state_file, "192.168.64.0/24", name, ip, NULL);
}

/* the same from threads of one process: each call takes its own flock */
static void test_ipam_threads(void **state) {
        enum { N = 20 };
        pthread_t t[N];
        for (int i = 0; i < N; i++)
                assert_int_equal(pthread_create(&t[i], NULL, allocate_thread, (void *)(intptr_t)i), 0);
        for (int i = 0; i < N; i++) {
                void *r;
                assert_int_equal(pthread_join(t[i], &r), 0);
                assert_int_equal((int)(intptr_t)r, 0);
        }
        bool seen[256] = {false};
        for (int i = 0; i < N; i++) {
                char name[16], ip[INET_ADDRSTRLEN];
                unsigned d;
                snprintf(name, sizeof(name), "t%02d", i);
                assert_int_equal(ipam_lookup(state_file, name, ip, NULL), 0);
                assert_int_equal(sscanf(ip, "192.168.64.%u", &d), 1);
                assert_true(d >= 2 && d < 2 + N && !seen[d]);
                seen[d] = true;
        }
}

static void test_ipam_exhausted(void **state) {
        char ip[INET_ADDRSTRLEN];
        const char *want[] = {"192.168.64.2", "192.168.64.3", "192.168.64.4", "192.168.64.5", "192.168.64.6"};
        for (unsigned i = 0; i < 5; i++) {
                char name[8];
                snprintf(name, sizeof(name), "x%u", i);
                assert_int_equal(ipam_allocate(state_file, "192.168.64.0/29", name, ip, NULL), 0);
                assert_string_equal(ip, want[i]);
        }
        struct cm_error *e = NULL;
        assert_int_equal(ipam_allocate(state_file, "192.168.64.0/29", "x5", ip, &e), -ENOSPC);
        assert_non_null(e);
        printf("  expected error: %s\n", e->message);
        assert_non_null(strstr(e->message, "no free address in subnet 192.168.64.0/29"));
        cm_error_free(e);
        e = NULL;
        assert_int_equal(ipam_allocate(state_file, "192.168.64.1/24", "y", ip, &e), -EINVAL);
        assert_non_null(strstr(e->message, "did you mean 192.168.64.0/24"));
        cm_error_free(e);
        e = NULL;
        assert_int_equal(ipam_allocate(state_file, "192.168.64.0/31", "y", ip, &e), -EINVAL);
        cm_error_free(e);

        /* the file is JSON, written atomically (no temp files left) */
        struct stat st;
        assert_int_equal(stat(state_file, &st), 0);
        char gw[NET_CIDR_MAX];
        struct in_addr g;
        assert_int_equal(net_subnet_gateway("192.168.64.0/24", gw, &g, NULL), 0);
        assert_string_equal(gw, "192.168.64.1/24");
}

static void test_prefix(void **state) {
        struct net_prefix a, b;
        assert_int_equal(net_prefix_parse("192.168.64.0/24", &a), 0);
        assert_int_equal(a.len, 24);
        assert_int_equal(net_prefix_parse("192.168.0.0/16", &b), 0);
        assert_true(net_prefix_overlap(&a, &b) && net_prefix_overlap(&b, &a));
        assert_int_equal(net_prefix_parse("192.168.65.0/24", &b), 0);
        assert_false(net_prefix_overlap(&a, &b));
        const char *bad[] = {"192.168.64.0", "192.168.64.0/", "192.168.64.0/33", "/24",
                             "x/24",         "1.2.3.4/024",   "1.2.3/8",         ""};
        for (size_t i = 0; i < ELEMENTSOF(bad); i++)
                assert_int_equal(net_prefix_parse(bad[i], &b), -EINVAL);
}

/* ---- NAT ---- */

static int count_tables(const char *name) {
        FILE *f = popen("nft list tables", "r");
        if (!f)
                return -1;
        char line[256], want[128];
        snprintf(want, sizeof(want), "table ip %s\n", name);
        int n = 0;
        while (fgets(line, sizeof(line), f))
                n += streq(line, want);
        pclose(f);
        return n;
}

static int nat_body(void) {
        if (access("/usr/sbin/nft", X_OK) < 0 && access("/sbin/nft", X_OK) < 0) {
                skip_reason = "nft is not installed (apt-get install nftables)";
                return SKIP_CODE;
        }
        CHECK(nat_exists("container", NULL) == 0);
        CHECK_OK(nat_remove("container", &e_)); /* nothing to remove: fine */
        CHECK_OK(nat_ensure("container", "192.168.64.0/24", "container0", &e_));
        CHECK_OK(nat_ensure("container", "192.168.64.0/24", "container0", &e_));
        CHECK(count_tables("container") == 1);
        CHECK(nat_exists("container", NULL) == 1);
        FILE *f = popen("nft list table ip container", "r");
        CHECK(f);
        char text[2048] = "";
        size_t n = fread(text, 1, sizeof(text) - 1, f);
        text[n] = 0;
        pclose(f);
        CHECK(strstr(text, "ip saddr 192.168.64.0/24 oifname != \"container0\" masquerade"));
        CHECK_FAILS(nat_ensure("container", "192.168.64.0/24", "bad\"name", &e_), EINVAL, "invalid bridge name");
        CHECK_FAILS(nat_ensure("x;flush ruleset", "192.168.64.0/24", "container0", &e_), EINVAL,
                    "invalid nftables table");

        /* the rule at work: a machine reaches an "outside" namespace (which has no route back
         * to the machines' subnet) through the bridge side, seen as the bridge side's address */
        CHECK_OK(net_bridge_ensure("container0", "192.168.64.1/24", &e_));
        int m = netns_new(), out = netns_new();
        CHECK(m >= 0 && out >= 0);
        char mpath[64];
        snprintf(mpath, sizeof(mpath), "/proc/self/fd/%d", m);
        CHECK_OK(net_machine_link_up(mpath, "cm-nat", "container0", "192.168.64.2/24", "192.168.64.1", 0, &e_));
        struct nl nl, on;
        struct nl_link up0, oeth, olo;
        struct in_addr a;
        CHECK(nl_open(&nl) == 0 && nl_open_in_netns(&on, out) == 0);
        CHECK(nl_link_add_veth(&nl, "uplink0", 0, "eth0", out, NULL) == 0);
        CHECK(nl_link_get(&nl, "uplink0", &up0) == 0);
        inet_pton(AF_INET, "192.168.65.1", &a);
        CHECK(nl_addr4_add(&nl, up0.index, a, 24) == 0 && nl_link_set_up(&nl, up0.index, true) == 0);
        CHECK(nl_link_get(&on, "eth0", &oeth) == 0 && nl_link_get(&on, "lo", &olo) == 0);
        inet_pton(AF_INET, "192.168.65.2", &a);
        CHECK(nl_addr4_add(&on, oeth.index, a, 24) == 0 && nl_link_set_up(&on, oeth.index, true) == 0);
        CHECK(nl_link_set_up(&on, olo.index, true) == 0);
        CHECK_OK(net_ipv4_forwarding_enable(&e_));
        CHECK_OK(net_ipv4_forwarding_enable(&e_));
        int l = listen_in(out, "192.168.65.2", 8000);
        CHECK(l >= 0);
        char peer[INET_ADDRSTRLEN];
        CHECK(tcp_exchange(m, l, "192.168.65.2", 8000, peer) == 0);
        CHECK(streq(peer, "192.168.65.1"));
        close(l);

        /* the machine is still on the bridge: release keeps the table */
        CHECK(net_host_release("container0", NULL) == 0);
        CHECK(nat_exists("container", NULL) == 1);
        CHECK_OK(net_machine_link_down("cm-nat", &e_));
        CHECK(net_host_release("container0", NULL) == 1);
        CHECK(nat_exists("container", NULL) == 0);
        CHECK_OK(net_host_ensure("container0", "192.168.64.0/24", &e_));
        CHECK_OK(net_host_ensure("container0", "192.168.64.0/24", &e_));
        CHECK(count_tables("container") == 1);
        CHECK_FAILS(net_host_ensure("container0", "192.168.65.0/24", &e_), EADDRINUSE, "dev uplink0");
        CHECK_OK(nat_remove("container", &e_));
        CHECK(count_tables("container") == 0);
        CHECK(nat_exists("container", NULL) == 0);
        CHECK_OK(nat_remove("container", &e_));
        nl_close(&nl);
        nl_close(&on);
        return 0;
}
static void test_nat(void **state) {
        in_netns(nat_body);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_prefix),
                cmocka_unit_test_setup_teardown(test_ipam_concurrent, ipam_setup, ipam_teardown),
                cmocka_unit_test_setup_teardown(test_ipam_threads, ipam_setup, ipam_teardown),
                cmocka_unit_test_setup_teardown(test_ipam_exhausted, ipam_setup, ipam_teardown),
                cmocka_unit_test(test_bridge),
                cmocka_unit_test(test_machine_link),
                cmocka_unit_test(test_subnet_overlap),
                cmocka_unit_test(test_nat),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
