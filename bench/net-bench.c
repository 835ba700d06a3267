/* Driver for bench/net.sh: TCP connect time, request/response latency and bulk throughput
 * from the bridge side to a machine namespace through our bridge + veth (net_bridge_ensure,
 * net_machine_link_up), against a bare veth pair between two namespaces (the floor) and
 * loopback. Everything happens in network namespaces this process makes and holds by fd; they
 * vanish when it exits, and no packet leaves them.
 *
 *   net-bench [RUNS]     (as root)  -> one line per path and measure: median of RUNS runs,
 *                                     and the time a machine's link takes to come up and go
 *   net-bench serve IP PORT                 servers on IP, ports PORT..PORT+2, in the caller's
 *                                           namespace (for bench/machine-net.sh, inside a machine)
 *   net-bench client NAME IP PORT RUNS      the three measures against them, one line */
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "net/net.h"
#include "net/netlink.h"

#define CONNECTS 1000
#define ROUNDTRIPS 10000
#define BULK_SECONDS 2.0
#define BULK_CHUNK (128 * 1024)

static void die(const char *what) {
        perror(what);
        exit(1);
}

static double now(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int cmp_double(const void *a, const void *b) {
        double x = *(const double *)a, y = *(const double *)b;
        return x < y ? -1 : x > y;
}

static double median(double *v, size_t n) {
        qsort(v, n, sizeof(*v), cmp_double);
        return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static int netns_new(void) {
        int self = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
        if (self < 0 || unshare(CLONE_NEWNET) < 0)
                die("unshare(CLONE_NEWNET)");
        int fd = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
        if (fd < 0 || setns(self, CLONE_NEWNET) < 0)
                die("setns");
        close(self);
        return fd;
}

static int socket_in(int nsfd) {
        int self = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
        if (self < 0 || (nsfd >= 0 && setns(nsfd, CLONE_NEWNET) < 0))
                die("setns");
        int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (s < 0 || setns(self, CLONE_NEWNET) < 0)
                die("socket");
        close(self);
        return s;
}

static struct sockaddr_in sin_of(const char *ip, uint16_t port) {
        struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
        inet_pton(AF_INET, ip, &a.sin_addr);
        return a;
}

static void set_nodelay(int s) {
        int one = 1;
        setsockopt(s, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

static int full_read(int fd, void *buf, size_t n) {
        for (size_t got = 0; got < n;) {
                ssize_t r = read(fd, (char *)buf + got, n - got);
                if (r <= 0)
                        return -1;
                got += (size_t)r;
        }
        return 0;
}

enum mode { ACCEPT_CLOSE, ECHO, SINK };

struct server {
        int listen_fd;
        enum mode mode;
};

static void *serve(void *p) {
        struct server *sv = p;
        char *buf = malloc(BULK_CHUNK);
        if (!buf)
                return NULL;
        for (;;) {
                int c = accept4(sv->listen_fd, NULL, NULL, SOCK_CLOEXEC);
                if (c < 0)
                        continue;
                set_nodelay(c);
                if (sv->mode == ECHO) {
                        ssize_t n;
                        while ((n = read(c, buf, BULK_CHUNK)) > 0)
                                if (write(c, buf, (size_t)n) != n)
                                        break;
                } else if (sv->mode == SINK) {
                        uint64_t total = 0;
                        ssize_t n;
                        while ((n = read(c, buf, BULK_CHUNK)) > 0)
                                total += (uint64_t)n;
                        if (write(c, &total, sizeof(total)) != sizeof(total))
                                perror("sink reply");
                }
                close(c);
        }
        return NULL;
}

/* Three servers (connect, echo, sink) in namespace nsfd on ip, ports base..base+2. */
static void servers_start(int nsfd, const char *ip, uint16_t base) {
        for (int m = ACCEPT_CLOSE; m <= SINK; m++) {
                struct server *sv = calloc(1, sizeof(*sv));
                int one = 1;
                struct sockaddr_in a = sin_of(ip, (uint16_t)(base + m));
                sv->listen_fd = socket_in(nsfd);
                sv->mode = (enum mode)m;
                if (setsockopt(sv->listen_fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
                    bind(sv->listen_fd, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(sv->listen_fd, 128) < 0)
                        die("listen");
                pthread_t t;
                if (pthread_create(&t, NULL, serve, sv) != 0)
                        die("pthread_create");
                pthread_detach(t);
        }
}

static int dial(const char *ip, uint16_t port) {
        int s = socket_in(-1);
        struct sockaddr_in a = sin_of(ip, port);
        if (connect(s, (struct sockaddr *)&a, sizeof(a)) < 0)
                die("connect");
        set_nodelay(s);
        return s;
}

/* median connect() time in microseconds over CONNECTS connections */
static double bench_connect(const char *ip, uint16_t port) {
        static double t[CONNECTS];
        for (int i = 0; i < CONNECTS; i++) {
                int s = socket_in(-1);
                struct linger lg = {.l_onoff = 1, .l_linger = 0}; /* RST: no TIME_WAIT pile-up */
                setsockopt(s, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
                struct sockaddr_in a = sin_of(ip, port);
                double t0 = now();
                if (connect(s, (struct sockaddr *)&a, sizeof(a)) < 0)
                        die("connect");
                t[i] = (now() - t0) * 1e6;
                close(s);
        }
        return median(t, CONNECTS);
}

/* median 1-byte round trip in microseconds */
static double bench_rr(const char *ip, uint16_t port) {
        static double t[ROUNDTRIPS];
        int s = dial(ip, port);
        char b = 'x';
        for (int i = 0; i < ROUNDTRIPS; i++) {
                double t0 = now();
                if (write(s, &b, 1) != 1 || full_read(s, &b, 1) < 0)
                        die("round trip");
                t[i] = (now() - t0) * 1e6;
        }
        close(s);
        return median(t, ROUNDTRIPS);
}

/* Gbit/s of a BULK_SECONDS stream, counted when the server has read all of it */
static double bench_bulk(const char *ip, uint16_t port) {
        static char buf[BULK_CHUNK];
        int s = dial(ip, port);
        uint64_t sent = 0;
        double t0 = now(), t1;
        do {
                ssize_t n = write(s, buf, sizeof(buf));
                if (n <= 0)
                        die("bulk write");
                sent += (uint64_t)n;
        } while (now() - t0 < BULK_SECONDS);
        shutdown(s, SHUT_WR);
        uint64_t got = 0;
        if (full_read(s, &got, sizeof(got)) < 0 || got != sent)
                die("bulk reply");
        t1 = now();
        close(s);
        return (double)sent * 8 / (t1 - t0) / 1e9;
}

struct path {
        const char *name;
        const char *ip;
        uint16_t port;
        double connect_us[64], rr_us[64], gbps[64];
};

static void check(int r, struct cm_error *e, const char *what) {
        if (r < 0) {
                fprintf(stderr, "%s: %s\n", what, e && e->message ? e->message : strerror(-r));
                exit(1);
        }
}

/* bench/machine-net.sh: the servers inside a running machine's namespace (entered by nsenter
 * before exec), and the client from the bridge's side, as separate processes. */
static _Noreturn void serve_only(const char *ip, uint16_t base) {
        servers_start(-1, ip, base);
        printf("ready\n");
        fflush(stdout);
        for (;;)
                pause();
}

static int client_only(const char *name, const char *ip, uint16_t base, int runs) {
        double c[64], rr[64], g[64];
        close(dial(ip, (uint16_t)(base + ECHO)));
        for (int r = 0; r < runs; r++) {
                c[r] = bench_connect(ip, (uint16_t)(base + ACCEPT_CLOSE));
                rr[r] = bench_rr(ip, (uint16_t)(base + ECHO));
                g[r] = bench_bulk(ip, (uint16_t)(base + SINK));
        }
        printf("  %-20s %12.1f %14.1f %12.2f\n", name, median(c, (size_t)runs), median(rr, (size_t)runs),
               median(g, (size_t)runs));
        return 0;
}

int main(int argc, char **argv) {
        if (argc == 4 && streq(argv[1], "serve"))
                serve_only(argv[2], (uint16_t)atoi(argv[3]));
        if (argc == 6 && streq(argv[1], "client")) {
                int n = atoi(argv[5]);
                return client_only(argv[2], argv[3], (uint16_t)atoi(argv[4]), n < 1 || n > 64 ? 5 : n);
        }
        int runs = argc > 1 ? atoi(argv[1]) : 5;
        if (runs < 1 || runs > 64)
                runs = 5;
        if (unshare(CLONE_NEWNET) < 0)
                die("unshare(CLONE_NEWNET) (run as root)");
        struct nl nl;
        struct nl_link lo, fl;
        struct cm_error *e = NULL;
        if (nl_open(&nl) < 0 || nl_link_get(&nl, "lo", &lo) < 0 || nl_link_set_up(&nl, lo.index, true) < 0) {
                fprintf(stderr, "%s\n", nl.error);
                return 1;
        }

        /* ours: bridge side -> machine */
        int machine = netns_new();
        char path[64];
        snprintf(path, sizeof(path), "/proc/self/fd/%d", machine);
        check(net_bridge_ensure("container0", "192.168.64.1/24", &e), e, "bridge");
        check(net_machine_link_up(path, "cm-bench", "container0", "192.168.64.2/24", "192.168.64.1", 1500, &e), e,
              "machine link");
        servers_start(machine, "192.168.64.2", 9000);

        /* floor: a bare veth pair, this namespace -> another */
        int peer = netns_new();
        struct nl in;
        struct nl_link eth0, plo;
        struct in_addr a;
        if (nl_link_add_veth(&nl, "floor0", 1500, "eth0", peer, NULL) < 0 || nl_link_get(&nl, "floor0", &fl) < 0 ||
            (inet_pton(AF_INET, "192.168.66.1", &a), nl_addr4_add(&nl, fl.index, a, 24)) < 0 ||
            nl_link_set_up(&nl, fl.index, true) < 0) {
                fprintf(stderr, "%s\n", nl.error);
                return 1;
        }
        if (nl_open_in_netns(&in, peer) < 0 || nl_link_get(&in, "eth0", &eth0) < 0 ||
            (inet_pton(AF_INET, "192.168.66.2", &a), nl_addr4_add(&in, eth0.index, a, 24)) < 0 ||
            nl_link_set_up(&in, eth0.index, true) < 0 || nl_link_get(&in, "lo", &plo) < 0 ||
            nl_link_set_up(&in, plo.index, true) < 0) {
                fprintf(stderr, "%s\n", in.error);
                return 1;
        }
        servers_start(peer, "192.168.66.2", 9000);

        /* reference: loopback in this namespace */
        servers_start(-1, "127.0.0.1", 9000);

        static struct path paths[] = {
                {.name = "bridge+veth (ours)", .ip = "192.168.64.2", .port = 9000},
                {.name = "bare veth (floor)", .ip = "192.168.66.2", .port = 9000},
                {.name = "loopback", .ip = "127.0.0.1", .port = 9000},
        };
        /* warm-up: neighbour entries, bridge FDB, caches */
        for (size_t p = 0; p < ELEMENTSOF(paths); p++)
                close(dial(paths[p].ip, (uint16_t)(paths[p].port + ECHO)));
        for (int r = 0; r < runs; r++)
                for (size_t p = 0; p < ELEMENTSOF(paths); p++) { /* interleaved: drift hits all alike */
                        paths[p].connect_us[r] = bench_connect(paths[p].ip, paths[p].port + ACCEPT_CLOSE);
                        paths[p].rr_us[r] = bench_rr(paths[p].ip, paths[p].port + ECHO);
                        paths[p].gbps[r] = bench_bulk(paths[p].ip, paths[p].port + SINK);
                }

        /* what a machine start and stop pay: a fresh namespace's link up, then down */
        enum { CYCLES = 50 };
        static double up_ms[CYCLES], down_ms[CYCLES];
        for (int i = 0; i < CYCLES; i++) {
                int ns = netns_new();
                char p2[64];
                snprintf(p2, sizeof(p2), "/proc/self/fd/%d", ns);
                double t0 = now();
                check(net_machine_link_up(p2, "cm-cycle", "container0", "192.168.64.3/24", "192.168.64.1", 1500, &e), e,
                      "machine link");
                double t1 = now();
                check(net_machine_link_down("cm-cycle", &e), e, "machine link down");
                up_ms[i] = (t1 - t0) * 1e3;
                down_ms[i] = (now() - t1) * 1e3;
                close(ns);
        }

        printf("medians of %d runs (connect: median of %d, round trip: median of %d, bulk: %.0f s stream)\n", runs,
               CONNECTS, ROUNDTRIPS, BULK_SECONDS);
        printf("  %-20s %12s %14s %12s\n", "path", "connect us", "round trip us", "bulk Gbit/s");
        for (size_t p = 0; p < ELEMENTSOF(paths); p++)
                printf("  %-20s %12.1f %14.1f %12.2f\n", paths[p].name, median(paths[p].connect_us, (size_t)runs),
                       median(paths[p].rr_us, (size_t)runs), median(paths[p].gbps, (size_t)runs));
        printf("  net_machine_link_up %.2f ms, net_machine_link_down %.2f ms (medians of %d)\n", median(up_ms, CYCLES),
               median(down_ms, CYCLES), CYCLES);
        return 0;
}
