/* net/dns.c (the forwarder's messages) and net/settings.c (network.* properties). Pure
 * functions: no socket, no namespace. */
#include <arpa/inet.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "net/dns.h"
#include "net/settings.h"
#include "util/config.h"

/* A query for name (dotted), type qtype, id 0x1234, RD set. */
static size_t make_query(uint8_t *buf, const char *name, uint16_t qtype) {
        uint8_t hdr[12] = {0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0};
        memcpy(buf, hdr, 12);
        size_t off = 12;
        const char *p = name;
        while (*p) {
                size_t l = strcspn(p, ".");
                buf[off++] = (uint8_t)l;
                memcpy(buf + off, p, l);
                off += l;
                p += l;
                if (*p == '.')
                        p++;
        }
        buf[off++] = 0;
        buf[off++] = (uint8_t)(qtype >> 8);
        buf[off++] = (uint8_t)qtype;
        buf[off++] = 0;
        buf[off++] = 1;
        return off;
}

static void test_parse(void **state) {
        uint8_t q[512];
        size_t n = make_query(q, "Web.Machine", DNS_TYPE_A);
        struct dns_question dq;
        assert_int_equal(dns_parse_query(q, n, &dq), 0);
        assert_string_equal(dq.name, "web.machine");
        assert_int_equal(dq.qtype, DNS_TYPE_A);
        assert_int_equal(dq.qclass, DNS_CLASS_IN);
        assert_int_equal(dq.end, n);

        /* truncated anywhere: refused */
        for (size_t cut = 0; cut < n; cut++)
                assert_int_equal(dns_parse_query(q, cut, &dq), -EBADMSG);
        /* a response is not a query; two questions are not ours to parse */
        q[2] |= 0x80;
        assert_int_equal(dns_parse_query(q, n, &dq), -EBADMSG);
        q[2] &= 0x7f;
        q[5] = 2;
        assert_int_equal(dns_parse_query(q, n, &dq), -EOPNOTSUPP);
        q[5] = 1;
        /* a compression pointer in the question */
        q[12] = 0xc0;
        assert_int_equal(dns_parse_query(q, n, &dq), -EBADMSG);
}

static void test_reply(void **state) {
        uint8_t q[512], out[512];
        size_t n = make_query(q, "beta", DNS_TYPE_A);
        struct dns_question dq;
        assert_int_equal(dns_parse_query(q, n, &dq), 0);
        struct in_addr a;
        inet_pton(AF_INET, "192.168.64.7", &a);
        size_t m = dns_build_reply(q, &dq, DNS_RCODE_NOERROR, &a, 5, out, sizeof out);
        assert_int_equal(m, n + 16);
        assert_int_equal(out[0], 0x12);
        assert_int_equal(out[1], 0x34);
        assert_true(out[2] & 0x80);         /* QR */
        assert_true(out[2] & 0x01);         /* RD kept */
        assert_int_equal(out[3] & 0x0f, 0); /* NOERROR */
        assert_int_equal(out[7], 1);        /* one answer */
        assert_memory_equal(out + n + 12, &a.s_addr, 4);
        assert_int_equal(out[n + 9], 5); /* TTL */

        m = dns_build_reply(q, &dq, DNS_RCODE_NXDOMAIN, NULL, 0, out, sizeof out);
        assert_int_equal(m, n);
        assert_int_equal(out[3] & 0x0f, DNS_RCODE_NXDOMAIN);
        assert_int_equal(out[7], 0);
        /* too small a buffer: nothing */
        assert_int_equal(dns_build_reply(q, &dq, DNS_RCODE_NOERROR, &a, 5, out, n + 15), 0);
}

static void test_upstreams(void **state) {
        char path[] = "/tmp/test-dns-resolv.XXXXXX";
        int fd = mkstemp(path);
        assert_true(fd >= 0);
        const char *text = "# comment\nsearch example\nnameserver 10.1.2.3\nnameserver ::1\nnameserver 127.0.0.53\n";
        assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
        close(fd);
        struct sockaddr_in ups[3];
        assert_int_equal(dns_upstreams_read(path, ups, 3), 2);
        assert_int_equal(ntohs(ups[0].sin_port), 53);
        char a[INET_ADDRSTRLEN];
        assert_string_equal(inet_ntop(AF_INET, &ups[1].sin_addr, a, sizeof a), "127.0.0.53");
        assert_int_equal(dns_upstreams_read(path, ups, 1), 1);
        unlink(path);
        assert_true(dns_upstreams_read(path, ups, 3) < 0);
}

static void test_settings(void **state) {
        json_t *cfg = json_object();
        struct net_settings s;
        assert_int_equal(net_settings_from_config(cfg, &s, NULL), 0); /* the defaults */
        assert_true(s.enabled);
        assert_string_equal(s.subnet, "192.168.64.0/24");
        assert_string_equal(s.bridge, "container0");
        assert_string_equal(s.gateway, "192.168.64.1");
        assert_int_equal(s.prefix_len, 24);

        char cidr[NET_CIDR_MAX];
        assert_int_equal(net_settings_machine_cidr(&s, "192.168.64.9", cidr, NULL), 0);
        assert_string_equal(cidr, "192.168.64.9/24");
        struct cm_error *e = NULL;
        assert_true(net_settings_machine_cidr(&s, "10.0.0.2", cidr, &e) < 0);
        assert_non_null(strstr(e->message, "192.168.64.0/24"));
        cm_error_free(e);
        e = NULL;
        assert_true(net_settings_machine_cidr(&s, "192.168.64.1", cidr, NULL) < 0);   /* the gateway */
        assert_true(net_settings_machine_cidr(&s, "192.168.64.255", cidr, NULL) < 0); /* broadcast */

        assert_int_equal(cm_config_set(cfg, "network.mode", "none", NULL), 0);
        assert_int_equal(net_settings_from_config(cfg, &s, NULL), 0);
        assert_false(s.enabled);
        assert_int_equal(cm_config_set(cfg, "network.mode", "nat", NULL), 0);
        assert_true(net_settings_from_config(cfg, &s, &e) < 0);
        assert_non_null(strstr(e->message, "network.mode"));
        cm_error_free(e);
        e = NULL;
        assert_int_equal(cm_config_set(cfg, "network.mode", "bridge", NULL), 0);
        assert_int_equal(cm_config_set(cfg, "network.subnet", "10.0.0.1/24", NULL), 0);
        assert_true(net_settings_from_config(cfg, &s, &e) < 0);
        assert_non_null(strstr(e->message, "network.subnet"));
        cm_error_free(e);
        assert_int_equal(cm_config_set(cfg, "network.subnet", "10.9.0.0/29", NULL), 0);
        assert_int_equal(net_settings_from_config(cfg, &s, NULL), 0);
        assert_string_equal(s.gateway, "10.9.0.1");
        json_decref(cfg);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_parse),
                cmocka_unit_test(test_reply),
                cmocka_unit_test(test_upstreams),
                cmocka_unit_test(test_settings),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
