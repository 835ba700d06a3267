/* IPv4 prefixes, and the machines' address allocator (a JSON state file under a flock). */
#include "net/net.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <jansson.h>
#include <libgen.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>

#include "util/fs.h"
#include "util/json.h"

int net_prefix_parse(const char *s, struct net_prefix *ret) {
        if (!s)
                return -EINVAL;
        const char *slash = strchr(s, '/');
        if (!slash || slash == s || (size_t)(slash - s) >= INET_ADDRSTRLEN)
                return -EINVAL;
        char a[INET_ADDRSTRLEN];
        memcpy(a, s, (size_t)(slash - s));
        a[slash - s] = 0;
        struct in_addr addr;
        if (inet_pton(AF_INET, a, &addr) != 1)
                return -EINVAL;
        const char *l = slash + 1;
        if (!*l || strlen(l) > 2 || strspn(l, "0123456789") != strlen(l) || (l[0] == '0' && l[1]))
                return -EINVAL;
        unsigned len = (unsigned)atoi(l);
        if (len > 32)
                return -EINVAL;
        *ret = (struct net_prefix){.addr = addr, .len = len};
        return 0;
}

static uint32_t mask_of(unsigned len) {
        return len ? ~0u << (32 - len) : 0;
}

struct in_addr net_prefix_network(const struct net_prefix *p) {
        return (struct in_addr){htonl(ntohl(p->addr.s_addr) & mask_of(p->len))};
}

bool net_prefix_overlap(const struct net_prefix *a, const struct net_prefix *b) {
        uint32_t m = mask_of(a->len < b->len ? a->len : b->len);
        return (ntohl(a->addr.s_addr) & m) == (ntohl(b->addr.s_addr) & m);
}

bool net_prefix_contains(const struct net_prefix *p, struct in_addr a) {
        uint32_t m = mask_of(p->len);
        return (ntohl(a.s_addr) & m) == (ntohl(p->addr.s_addr) & m);
}

/* A subnet usable for machines: a network address, /8 to /30. */
static int subnet_parse(const char *subnet, struct net_prefix *ret, struct cm_error **err) {
        struct net_prefix p;
        if (net_prefix_parse(subnet, &p) < 0)
                return cm_error_set(err, EINVAL, "invalid subnet \"%s\" (want a.b.c.d/n, like 192.168.64.0/24)",
                                    subnet ? subnet : "");
        if (p.len < 8 || p.len > 30)
                return cm_error_set(err, EINVAL, "subnet %s: the prefix length must be between 8 and 30", subnet);
        if (net_prefix_network(&p).s_addr != p.addr.s_addr) {
                char n[INET_ADDRSTRLEN];
                struct in_addr na = net_prefix_network(&p);
                inet_ntop(AF_INET, &na, n, sizeof(n));
                return cm_error_set(err, EINVAL, "subnet %s: not a network address (did you mean %s/%u?)", subnet, n,
                                    p.len);
        }
        *ret = p;
        return 0;
}

int net_subnet_gateway(const char *subnet, char ret_gateway_cidr[NET_CIDR_MAX], struct in_addr *ret_gateway,
                       struct cm_error **err) {
        struct net_prefix p;
        int r = subnet_parse(subnet, &p, err);
        if (r < 0)
                return r;
        struct in_addr gw = {htonl(ntohl(p.addr.s_addr) + 1)};
        if (ret_gateway_cidr) {
                char a[INET_ADDRSTRLEN];
                inet_ntop(AF_INET, &gw, a, sizeof(a));
                snprintf(ret_gateway_cidr, NET_CIDR_MAX, "%s/%u", a, p.len);
        }
        if (ret_gateway)
                *ret_gateway = gw;
        return 0;
}

/* ---- the state file ---- */

struct ipam {
        int dirfd;
        int lockfd;
        char *base; /* the state file's name in dirfd */
        json_t *state;
        json_t *allocations; /* borrowed from state */
};

static void ipam_done(struct ipam *s) {
        if (s->lockfd >= 0)
                close(s->lockfd); /* drops the flock */
        if (s->dirfd >= 0)
                close(s->dirfd);
        free(s->base);
        json_decref(s->state);
}

/* Opens the state under an exclusive lock (shared for reading), creating an empty one. */
static int ipam_open(struct ipam *s, const char *state_file, bool write, struct cm_error **err) {
        *s = (struct ipam){.dirfd = -1, .lockfd = -1};
        if (!state_file || !*state_file)
                return cm_error_set(err, EINVAL, "no address allocation state file");
        _cleanup_free_ char *d1 = strdup(state_file), *d2 = strdup(state_file);
        if (!d1 || !d2)
                return cm_error_set(err, ENOMEM, "out of memory");
        const char *dir = dirname(d1), *base = basename(d2);
        if (!*base || streq(base, "/") || streq(base, ".") || streq(base, ".."))
                return cm_error_set(err, EINVAL, "invalid state file %s", state_file);
        s->base = strdup(base);
        if (!s->base)
                return cm_error_set(err, ENOMEM, "out of memory");
        s->dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (s->dirfd < 0)
                return cm_error_set(err, errno, "address allocations: open %s: %m", dir);

        /* a lock file beside it: the state file itself is replaced by rename on every write */
        _cleanup_free_ char *lock = NULL;
        if (asprintf(&lock, ".%s.lock", base) < 0)
                return cm_error_set(err, ENOMEM, "out of memory");
        s->lockfd = openat(s->dirfd, lock, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
        if (s->lockfd < 0)
                return cm_error_set(err, errno, "address allocations: open %s/%s: %m", dir, lock);
        while (flock(s->lockfd, write ? LOCK_EX : LOCK_SH) < 0)
                if (errno != EINTR)
                        return cm_error_set(err, errno, "address allocations: lock %s/%s: %m", dir, lock);

        _cleanup_free_ char *data = NULL;
        size_t len = 0;
        int r = fs_read_all(s->dirfd, s->base, 16 << 20, &data, &len);
        if (r == -ENOENT) {
                s->state = json_object();
        } else if (r < 0) {
                return cm_error_set(err, -r, "address allocations: read %s: %s", state_file, strerror(-r));
        } else {
                _cleanup_free_ char *perr = NULL;
                s->state = json_parse_buf(data, len, &perr);
                if (!s->state || !json_is_object(s->state))
                        return cm_error_set(err, CM_EINVALID, "address allocations: %s: %s", state_file,
                                            perr ? perr : "not a JSON object");
        }
        if (!s->state)
                return cm_error_set(err, ENOMEM, "out of memory");
        s->allocations = json_object_get(s->state, "allocations");
        if (!s->allocations) {
                s->allocations = json_object();
                if (!s->allocations || json_object_set_new(s->state, "allocations", s->allocations) < 0)
                        return cm_error_set(err, ENOMEM, "out of memory");
        }
        if (!json_is_object(s->allocations))
                return cm_error_set(err, CM_EINVALID, "address allocations: %s: \"allocations\" is not an object",
                                    state_file);
        return 0;
}

static int ipam_save(struct ipam *s, const char *state_file, struct cm_error **err) {
        _cleanup_free_ char *text = json_dumps(s->state, JSON_INDENT(2) | JSON_SORT_KEYS);
        if (!text)
                return cm_error_set(err, ENOMEM, "out of memory");
        size_t n = strlen(text);
        text[n] = '\n'; /* json_dumps's NUL becomes the final newline */
        int r = fs_write_atomic(s->dirfd, s->base, text, n + 1, 0644);
        if (r < 0)
                return cm_error_set(err, -r, "address allocations: write %s: %s", state_file, strerror(-r));
        return 0;
}

static int name_check(const char *name, struct cm_error **err) {
        if (!name || !*name)
                return cm_error_set(err, EINVAL, "address allocations: no machine name");
        return 0;
}

int ipam_allocate(const char *state_file, const char *subnet, const char *machine_name, char ret_ip[INET_ADDRSTRLEN],
                  struct cm_error **err) {
        struct net_prefix net;
        int r;
        if ((r = name_check(machine_name, err)) < 0 || (r = subnet_parse(subnet, &net, err)) < 0)
                return r;
        _cleanup_(ipam_done) struct ipam s;
        if ((r = ipam_open(&s, state_file, true, err)) < 0)
                return r;

        uint32_t first = ntohl(net.addr.s_addr) + 2; /* + 1 is the gateway */
        uint32_t last = ntohl(net.addr.s_addr) + (uint32_t)((1ull << (32 - net.len)) - 2);
        uint32_t size = last - first + 1;

        /* what is taken inside the subnet; the machine's own address, if it has a valid one */
        _cleanup_free_ uint8_t *used = calloc((size + 7) / 8, 1);
        if (!used)
                return cm_error_set(err, ENOMEM, "out of memory");
        const char *key;
        json_t *v;
        struct in_addr mine = {0};
        unsigned in_use = 0;
        json_object_foreach(s.allocations, key, v) {
                struct in_addr a;
                if (!json_is_string(v) || inet_pton(AF_INET, json_string_value(v), &a) != 1)
                        continue;
                uint32_t h = ntohl(a.s_addr);
                if (h < first || h > last)
                        continue; /* from an earlier subnet: it blocks nothing here */
                if (streq(key, machine_name))
                        mine = a;
                if (!(used[(h - first) / 8] & (1u << ((h - first) % 8))))
                        in_use++;
                used[(h - first) / 8] |= (uint8_t)(1u << ((h - first) % 8));
        }
        if (!mine.s_addr) {
                uint32_t i;
                for (i = 0; i < size; i++)
                        if (!(used[i / 8] & (1u << (i % 8))))
                                break;
                if (i == size)
                        return cm_error_set(
                                err, ENOSPC,
                                "no free address in subnet %s: all %u machine addresses are taken; remove a "
                                "machine or choose a larger subnet (system property network.subnet)",
                                subnet, in_use);
                mine.s_addr = htonl(first + i);
                char a[INET_ADDRSTRLEN];
                inet_ntop(AF_INET, &mine, a, sizeof(a));
                if (json_object_set_new(s.allocations, machine_name, json_string(a)) < 0)
                        return cm_error_set(err, ENOMEM, "out of memory");
                if ((r = ipam_save(&s, state_file, err)) < 0)
                        return r;
        }
        inet_ntop(AF_INET, &mine, ret_ip, INET_ADDRSTRLEN);
        return 0;
}

int ipam_lookup(const char *state_file, const char *machine_name, char ret_ip[INET_ADDRSTRLEN], struct cm_error **err) {
        int r = name_check(machine_name, err);
        if (r < 0)
                return r;
        _cleanup_(ipam_done) struct ipam s;
        if ((r = ipam_open(&s, state_file, false, err)) < 0)
                return r;
        json_t *v = json_object_get(s.allocations, machine_name);
        struct in_addr a;
        if (!json_is_string(v) || inet_pton(AF_INET, json_string_value(v), &a) != 1)
                return cm_error_set(err, ENOENT, "machine %s has no address", machine_name);
        inet_ntop(AF_INET, &a, ret_ip, INET_ADDRSTRLEN);
        return 0;
}

int ipam_release(const char *state_file, const char *machine_name, struct cm_error **err) {
        int r = name_check(machine_name, err);
        if (r < 0)
                return r;
        _cleanup_(ipam_done) struct ipam s;
        if ((r = ipam_open(&s, state_file, true, err)) < 0)
                return r;
        if (!json_object_get(s.allocations, machine_name))
                return 0;
        json_object_del(s.allocations, machine_name);
        if ((r = ipam_save(&s, state_file, err)) < 0)
                return r;
        return 1;
}
