#include "image/ref.h"

#include <arpa/inet.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "util/digest.h"

#define DOCKER_HUB "docker.io"
#define NAME_TOTAL_LENGTH_MAX 255
#define TAG_LENGTH_MAX 128
#define QUOTE_MAX 200

/* References reach error messages that end up on a terminal, and they may come from an API
 * request rather than a command line: keep control characters and megabyte-long strings out. */
static const char *quote_for_message(const char *s, char buf[static QUOTE_MAX + 4]) {
        size_t n = 0;
        /* cppcheck-suppress arrayIndexOutOfBoundsCond ; s is a NUL-terminated string of any length */
        for (; n < QUOTE_MAX && s[n]; n++)
                buf[n] = ((unsigned char)s[n] < 0x20 || s[n] == 0x7f) ? '?' : s[n];
        if (s[n]) {
                memcpy(buf + n, "...", 3);
                n += 3;
        }
        buf[n] = 0;
        return buf;
}

static int invalid(struct cm_error **err, const char *ref, const char *reason) {
        char q[QUOTE_MAX + 4];
        return cm_error_set(err, CM_EINVALID, "invalid reference format '%s': %s", quote_for_message(ref, q),
                            reason);
}

static bool is_lower_alnum(char c) {
        return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

static bool is_alnum(char c) {
        return is_lower_alnum(c) || (c >= 'A' && c <= 'Z');
}

static bool is_digit(char c) {
        return c >= '0' && c <= '9';
}

/* [a-z0-9]+((\.|_|__|-+)[a-z0-9]+)* over s[0..n) */
static bool path_component_valid(const char *s, size_t n) {
        size_t i = 0;
        if (n == 0 || !is_lower_alnum(s[0]))
                return false;
        while (i < n) {
                while (i < n && is_lower_alnum(s[i]))
                        i++;
                if (i == n)
                        return true;
                size_t sep = i;
                if (s[i] == '.')
                        i++;
                else if (s[i] == '_')
                        i += (i + 1 < n && s[i + 1] == '_') ? 2 : 1;
                else if (s[i] == '-')
                        while (i < n && s[i] == '-')
                                i++;
                if (i == sep || i == n || !is_lower_alnum(s[i]))
                        return false;
        }
        return true;
}

/* ([a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9]) separated by '.' */
static bool hostname_valid(const char *s, size_t n) {
        size_t start = 0;
        if (n == 0)
                return false;
        for (size_t i = 0; i <= n; i++) {
                if (i < n && s[i] != '.') {
                        if (!is_alnum(s[i]) && s[i] != '-')
                                return false;
                        continue;
                }
                if (i == start || s[start] == '-' || s[i - 1] == '-')
                        return false;
                start = i + 1;
        }
        return true;
}

static bool port_valid(const char *s, size_t n) {
        unsigned long v = 0;
        if (n == 0 || n > 5)
                return false;
        for (size_t i = 0; i < n; i++) {
                if (!is_digit(s[i]))
                        return false;
                v = v * 10 + (unsigned long)(s[i] - '0');
        }
        return v > 0 && v <= 65535;
}

/* host[:port] where host is a domain name, an IPv4 address or a bracketed IPv6 address. */
static bool registry_valid(const char *s) {
        size_t n = strlen(s);
        const char *host = s;
        size_t host_len = n;

        if (s[0] == '[') {
                const char *close = strchr(s, ']');
                if (!close)
                        return false;
                size_t len = (size_t)(close - s - 1);
                char addr[INET6_ADDRSTRLEN];
                struct in6_addr a6;
                if (len == 0 || len >= sizeof(addr))
                        return false;
                memcpy(addr, s + 1, len);
                addr[len] = 0;
                if (inet_pton(AF_INET6, addr, &a6) != 1)
                        return false;
                if (close[1] == 0)
                        return true;
                return close[1] == ':' && port_valid(close + 2, strlen(close + 2));
        }

        const char *colon = strchr(s, ':');
        if (colon) {
                host_len = (size_t)(colon - s);
                if (!port_valid(colon + 1, n - host_len - 1))
                        return false;
        }
        return hostname_valid(host, host_len);
}

static bool is_hex64(const char *s, size_t n) {
        if (n != 64)
                return false;
        for (size_t i = 0; i < n; i++)
                if (!is_digit(s[i]) && !(s[i] >= 'a' && s[i] <= 'f'))
                        return false;
        return true;
}

static bool tag_valid(const char *s) {
        size_t n = strlen(s);
        if (n == 0 || n > TAG_LENGTH_MAX)
                return false;
        if (!is_alnum(s[0]) && s[0] != '_')
                return false;
        for (size_t i = 1; i < n; i++)
                if (!is_alnum(s[i]) && s[i] != '_' && s[i] != '.' && s[i] != '-')
                        return false;
        return true;
}

static const char *normalize_registry(const char *r) {
        if (streq(r, "index.docker.io") || streq(r, "registry-1.docker.io"))
                return DOCKER_HUB;
        return r;
}

static int check_repository(const char *ref, const char *repo, struct cm_error **err) {
        for (const char *p = repo; *p; p++)
                if (*p >= 'A' && *p <= 'Z')
                        return invalid(err, ref, "repository name must be lowercase");

        for (const char *p = repo;;) {
                const char *slash = strchr(p, '/');
                size_t n = slash ? (size_t)(slash - p) : strlen(p);
                if (n == 0)
                        return invalid(err, ref, "repository name has an empty path component");
                if (!path_component_valid(p, n)) {
                        char q[QUOTE_MAX + 4], r[QUOTE_MAX + 4];
                        _cleanup_free_ char *c = strndup(p, n);
                        if (!c)
                                return cm_error_set(err, ENOMEM, "out of memory");
                        return cm_error_set(err, CM_EINVALID,
                                            "invalid reference format '%s': invalid repository path component '%s' "
                                            "(lowercase letters and digits, separated by '.', '_', '__' or '-')",
                                            quote_for_message(ref, q), quote_for_message(c, r));
                }
                if (!slash)
                        return 0;
                p = slash + 1;
        }
}

int image_ref_parse(const char *s, struct image_ref **ret, struct cm_error **err) {
        if (!s || !*s)
                return invalid(err, s ? s : "", "empty reference");

        _cleanup_free_ char *buf = strdup(s);
        if (!buf)
                return cm_error_set(err, ENOMEM, "out of memory");

        char *digest = NULL, *tag = NULL;
        char *at = strchr(buf, '@');
        if (at) {
                *at = 0;
                digest = at + 1;
                if (!*digest)
                        return invalid(err, s, "empty digest");
                if (strncmp(digest, "sha256:", 7) != 0 && strchr(digest, ':'))
                        return invalid(err, s, "only sha256 digests are supported");
                if (!digest_is_valid(digest))
                        return invalid(err, s, "digest must be sha256: followed by 64 lowercase hex digits");
        }

        /* A ':' after the last '/' starts the tag; one before it belongs to the registry port. */
        char *colon = strrchr(buf, ':');
        char *slash = strrchr(buf, '/');
        if (colon && (!slash || colon > slash)) {
                *colon = 0;
                tag = colon + 1;
                if (!*tag)
                        return invalid(err, s, "empty tag");
                if (!tag_valid(tag))
                        return invalid(err, s,
                                       "invalid tag (up to 128 letters, digits, '_', '.' and '-', not starting "
                                       "with '.' or '-')");
        }

        const char *name = buf;
        if (!*name)
                return invalid(err, s, "empty repository name");

        /* Docker's rule: the first component is a registry if it looks like a host name. */
        const char *registry = DOCKER_HUB, *path = name;
        bool explicit_registry = false;
        char *first_slash = strchr(buf, '/');
        if (first_slash) {
                *first_slash = 0;
                if (strpbrk(buf, ".:") || streq(buf, "localhost") || buf[0] == '[') {
                        if (!registry_valid(buf))
                                return invalid(err, s, "invalid registry host name");
                        registry = normalize_registry(buf);
                        path = first_slash + 1;
                        explicit_registry = true;
                } else
                        *first_slash = '/';
        }

        if (!*path)
                return invalid(err, s, "empty repository name");
        if (!explicit_registry && is_hex64(path, strlen(path)))
                return invalid(err, s, "cannot specify 64-byte hexadecimal strings");

        int r = check_repository(s, path, err);
        if (r < 0)
                return r;

        _cleanup_free_ char *repository = NULL;
        if (streq(registry, DOCKER_HUB) && !strchr(path, '/')) {
                if (asprintf(&repository, "library/%s", path) < 0)
                        return cm_error_set(err, ENOMEM, "out of memory");
        } else {
                repository = strdup(path);
                if (!repository)
                        return cm_error_set(err, ENOMEM, "out of memory");
        }

        if (strlen(registry) + 1 + strlen(repository) > NAME_TOTAL_LENGTH_MAX)
                return invalid(err, s, "repository name must not be more than 255 characters");

        struct image_ref *ref = calloc(1, sizeof(*ref));
        if (!ref)
                return cm_error_set(err, ENOMEM, "out of memory");
        ref->registry = strdup(registry);
        ref->repository = TAKE_PTR(repository);
        ref->tag = tag ? strdup(tag) : digest ? NULL : strdup("latest");
        ref->digest = digest ? strdup(digest) : NULL;
        if (!ref->registry || (!ref->tag && !digest) || (digest && !ref->digest)) {
                image_ref_free(ref);
                return cm_error_set(err, ENOMEM, "out of memory");
        }
        *ret = ref;
        return 0;
}

char *image_ref_format(const struct image_ref *r) {
        char *s = NULL;
        if (asprintf(&s, "%s/%s%s%s%s%s", r->registry, r->repository, r->tag ? ":" : "", r->tag ? r->tag : "",
                     r->digest ? "@" : "", r->digest ? r->digest : "") < 0)
                return NULL;
        return s;
}

char *image_ref_name(const struct image_ref *r) {
        char *s = NULL;
        if (asprintf(&s, "%s/%s", r->registry, r->repository) < 0)
                return NULL;
        return s;
}

char *image_ref_familiar_name(const struct image_ref *r) {
        if (!streq(r->registry, DOCKER_HUB))
                return image_ref_name(r);
        const char *rest = r->repository, *slash = strchr(rest, '/');
        /* a bare 64-hex name would be refused as an image ID */
        if (slash && slash == strrchr(rest, '/') && slash - rest == 7 && memcmp(rest, "library", 7) == 0 &&
            !is_hex64(slash + 1, strlen(rest) - 8))
                return strdup(slash + 1);
        /* "docker.io/example.com/x" shortened would name a different registry */
        size_t first = strcspn(rest, "/");
        if (memchr(rest, '.', first) || (first == 9 && strncmp(rest, "localhost", 9) == 0))
                return image_ref_name(r);
        return strdup(rest);
}

void image_ref_free(struct image_ref *r) {
        if (!r)
                return;
        free(r->registry);
        free(r->repository);
        free(r->tag);
        free(r->digest);
        free(r);
}
