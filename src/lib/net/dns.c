/* DNS messages for the machines' forwarder: parse a question, build a short answer. */
#include "net/dns.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "util/macro.h"

#define HDR 12

static uint16_t get16(const uint8_t *p) {
        return (uint16_t)(p[0] << 8 | p[1]);
}

static void put16(uint8_t *p, uint16_t v) {
        p[0] = (uint8_t)(v >> 8);
        p[1] = (uint8_t)v;
}

int dns_parse_query(const uint8_t *msg, size_t len, struct dns_question *ret) {
        if (len < HDR)
                return -EBADMSG;
        if (msg[2] & 0x80) /* a response, not a query */
                return -EBADMSG;
        if (((msg[2] >> 3) & 0x0f) != 0 || get16(msg + 4) != 1)
                return -EOPNOTSUPP;
        struct dns_question q = {0};
        size_t off = HDR, n = 0;
        for (;;) {
                if (off >= len)
                        return -EBADMSG;
                uint8_t l = msg[off++];
                if (l == 0)
                        break;
                if (l & 0xc0) /* compression or extended labels have no place in a question */
                        return -EBADMSG;
                if (off + l > len || n + l + 1 > DNS_NAME_MAX)
                        return -EBADMSG;
                if (n)
                        q.name[n++] = '.';
                for (uint8_t i = 0; i < l; i++) {
                        char c = (char)msg[off + i];
                        if (c == '.' || c == 0)
                                return -EBADMSG; /* a dot inside a label cannot be named here */
                        q.name[n++] = (char)tolower((unsigned char)c);
                }
                off += l;
        }
        q.name[n] = 0;
        if (off + 4 > len)
                return -EBADMSG;
        q.qtype = get16(msg + off);
        q.qclass = get16(msg + off + 2);
        q.end = off + 4;
        *ret = q;
        return 0;
}

size_t dns_build_reply(const uint8_t *query, const struct dns_question *q, int rcode, const struct in_addr *a,
                       uint32_t ttl, uint8_t *out, size_t outsize) {
        size_t need = q->end + (a ? 16 : 0);
        if (outsize < need || q->end < HDR)
                return 0;
        memcpy(out, query, q->end);
        /* QR, the query's opcode and RD kept, AA (answers about our own names), RA; rcode */
        out[2] = (uint8_t)(0x80 | (query[2] & 0x79) | (rcode != DNS_RCODE_SERVFAIL ? 0x04 : 0));
        out[3] = (uint8_t)(0x80 | (rcode & 0x0f));
        put16(out + 4, 1);
        put16(out + 6, a ? 1 : 0);
        put16(out + 8, 0);
        put16(out + 10, 0);
        size_t off = q->end;
        if (a) {
                put16(out + off, 0xc000 | HDR); /* the name: a pointer to the question's */
                put16(out + off + 2, DNS_TYPE_A);
                put16(out + off + 4, DNS_CLASS_IN);
                out[off + 6] = (uint8_t)(ttl >> 24);
                out[off + 7] = (uint8_t)(ttl >> 16);
                out[off + 8] = (uint8_t)(ttl >> 8);
                out[off + 9] = (uint8_t)ttl;
                put16(out + off + 10, 4);
                memcpy(out + off + 12, &a->s_addr, 4);
                off += 16;
        }
        return off;
}

int dns_upstreams_read(const char *path, struct sockaddr_in *ret, int max) {
        FILE *f = fopen(path, "re");
        if (!f)
                return -errno;
        int n = 0;
        char line[512];
        while (n < max && fgets(line, sizeof line, f)) {
                char addr[64];
                struct in_addr a;
                if (sscanf(line, " nameserver %63s", addr) != 1 || inet_pton(AF_INET, addr, &a) != 1)
                        continue;
                ret[n++] = (struct sockaddr_in){.sin_family = AF_INET, .sin_port = htons(53), .sin_addr = a};
        }
        fclose(f);
        return n;
}
