/* libFuzzer: DNS queries as the machines' forwarder receives them from any machine. */
#include <stddef.h>
#include <stdint.h>

#include "net/dns.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        struct dns_question q;
        if (dns_parse_query(data, size, &q) == 0) {
                uint8_t out[600];
                struct in_addr a = {0x0100007f};
                (void)dns_build_reply(data, &q, DNS_RCODE_NOERROR, &a, 5, out, sizeof out);
                (void)dns_build_reply(data, &q, DNS_RCODE_NXDOMAIN, NULL, 0, out, sizeof out);
        }
        return 0;
}
