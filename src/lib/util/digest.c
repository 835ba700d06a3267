#include "util/digest.h"

#include <errno.h>
#include <openssl/evp.h>
#include <string.h>
#include <unistd.h>

struct digest_ctx {
        EVP_MD_CTX *md;
};

struct digest_ctx *digest_new(void) {
        struct digest_ctx *c = calloc(1, sizeof(*c));
        if (!c)
                return NULL;
        c->md = EVP_MD_CTX_new();
        if (!c->md || EVP_DigestInit_ex(c->md, EVP_sha256(), NULL) != 1) {
                EVP_MD_CTX_free(c->md);
                free(c);
                return NULL;
        }
        return c;
}

void digest_update(struct digest_ctx *c, const void *data, size_t len) {
        EVP_DigestUpdate(c->md, data, len);
}

void digest_final(struct digest_ctx *c, char out[DIGEST_STR_MAX]) {
        unsigned char md[EVP_MAX_MD_SIZE];
        unsigned int n = 0;
        EVP_DigestFinal_ex(c->md, md, &n);
        strcpy(out, "sha256:");
        for (unsigned i = 0; i < n; i++)
                sprintf(out + 7 + 2 * i, "%02x", md[i]);
        digest_free(c);
}

void digest_free(struct digest_ctx *c) {
        if (!c)
                return;
        EVP_MD_CTX_free(c->md);
        free(c);
}

void digest_buffer(const void *data, size_t len, char out[DIGEST_STR_MAX]) {
        struct digest_ctx *c = digest_new();
        digest_update(c, data, len);
        digest_final(c, out);
}

int digest_fd(int fd, char out[DIGEST_STR_MAX], unsigned long long *ret_size) {
        struct digest_ctx *c = digest_new();
        if (!c)
                return -ENOMEM;
        unsigned long long total = 0;
        char buf[65536];
        for (;;) {
                ssize_t r = read(fd, buf, sizeof buf);
                if (r < 0) {
                        if (errno == EINTR)
                                continue;
                        int e = -errno;
                        digest_free(c);
                        return e;
                }
                if (r == 0)
                        break;
                digest_update(c, buf, (size_t)r);
                total += (unsigned long long)r;
        }
        digest_final(c, out);
        if (ret_size)
                *ret_size = total;
        return 0;
}

bool digest_is_valid(const char *s) {
        if (!s || strncmp(s, "sha256:", 7) != 0)
                return false;
        s += 7;
        size_t n = 0;
        for (; s[n]; n++)
                if (!((s[n] >= '0' && s[n] <= '9') || (s[n] >= 'a' && s[n] <= 'f')))
                        return false;
        return n == 64;
}

const char *digest_hex(const char *digest) {
        return digest + 7;
}
