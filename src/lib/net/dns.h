/* The few pieces of DNS the machines' forwarder needs (RFC 1035): read the question of a
 * query, answer it with an address, an empty answer or an error code, and find the upstream
 * servers of a resolv.conf. Everything else is forwarded as it came. */
#pragma once

#include <netinet/in.h>
#include <stddef.h>
#include <stdint.h>

#define DNS_NAME_MAX 255
#define DNS_TYPE_A 1
#define DNS_TYPE_AAAA 28
#define DNS_CLASS_IN 1
#define DNS_RCODE_NOERROR 0
#define DNS_RCODE_FORMERR 1
#define DNS_RCODE_SERVFAIL 2
#define DNS_RCODE_NXDOMAIN 3
#define DNS_RCODE_REFUSED 5

struct dns_question {
        char name[DNS_NAME_MAX + 1]; /* lower case, dotted, no trailing dot ("" = the root) */
        uint16_t qtype, qclass;
        size_t end; /* offset just after the question in the message */
};

/* A standard query (QR=0, OPCODE=0) with exactly one question, no compression in it.
 * -EBADMSG for anything malformed, -EOPNOTSUPP for other opcodes/question counts. */
int dns_parse_query(const uint8_t *msg, size_t len, struct dns_question *ret);

/* The reply to a query into out (the header and question copied, RA set): rcode, and when
 * a is not NULL one A record (TTL ttl) for the question's name. Returns its length, or 0
 * when out is too small. Additional records of the query (EDNS) are not echoed. */
size_t dns_build_reply(const uint8_t *query, const struct dns_question *q, int rcode, const struct in_addr *a,
                       uint32_t ttl, uint8_t *out, size_t outsize);

/* The nameserver lines of a resolv.conf (IPv4 only, port 53), at most max. Returns how many;
 * -errno when the file cannot be read. */
int dns_upstreams_read(const char *path, struct sockaddr_in *ret, int max);
