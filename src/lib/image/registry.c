/* Registry client: Docker Registry HTTP API v2 over libcurl. See registry.h. */
#include "image/registry.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "util/fs.h"
#include "util/json.h"
#include "util/strv.h"

#define MAX_TRIES 4
#define POOL_MAX 8
#define ERROR_BODY_MAX (64u * 1024)
#define TOKEN_BODY_MAX (1u * 1024 * 1024)
#define DOCKER_HUB_HOST "registry-1.docker.io"

static const char manifest_accept[] = "Accept: " MT_OCI_MANIFEST ", " MT_OCI_INDEX ", " MT_DOCKER_MANIFEST
                                      ", " MT_DOCKER_LIST;

/* ---- global init ---- */

static pthread_once_t global_once = PTHREAD_ONCE_INIT;
static CURLcode global_result = CURLE_OK;

static void global_init_once(void) {
        global_result = curl_global_init(CURL_GLOBAL_DEFAULT);
}

int registry_global_init(void) {
        pthread_once(&global_once, global_init_once);
        return global_result == CURLE_OK ? 0 : -EIO;
}

/* ---- small string helpers ---- */

static char *strdup_trim(const char *s, size_t n) {
        while (n > 0 && isspace((unsigned char)*s)) {
                s++;
                n--;
        }
        while (n > 0 && isspace((unsigned char)s[n - 1]))
                n--;
        return strndup(s, n);
}

static bool is_docker_hub(const char *registry) {
        return streq(registry, "docker.io") || streq(registry, "index.docker.io") ||
               streq(registry, "registry-1.docker.io");
}

/* Percent-encodes everything outside RFC 3986's unreserved set. */
static char *url_escape(const char *s) {
        static const char hex[] = "0123456789ABCDEF";
        size_t n = strlen(s);
        char *out = malloc(3 * n + 1), *p = out;
        if (!out)
                return NULL;
        for (const unsigned char *c = (const unsigned char *)s; *c; c++) {
                if (isalnum(*c) || *c == '-' || *c == '.' || *c == '_' || *c == '~')
                        *p++ = (char)*c;
                else {
                        *p++ = '%';
                        *p++ = hex[*c >> 4];
                        *p++ = hex[*c & 15];
                }
        }
        *p = 0;
        return out;
}

static char *base64_encode(const void *data, size_t len) {
        char *out = malloc(4 * ((len + 2) / 3) + 1);
        if (!out)
                return NULL;
        EVP_EncodeBlock((unsigned char *)out, data, (int)len);
        return out;
}

/* ---- WWW-Authenticate ---- */

void registry_challenge_done(struct registry_challenge *c) {
        if (!c)
                return;
        free(c->scheme);
        free(c->realm);
        free(c->service);
        free(c->scope);
        free(c->error);
        *c = (struct registry_challenge){0};
}

static bool is_token_char(char c) {
        return c && !isspace((unsigned char)c) && c != ',' && c != '=' && c != '"';
}

int registry_challenge_parse(const char *h, struct registry_challenge *ret) {
        struct registry_challenge ch = {0};
        const char *p = h;

        while (isspace((unsigned char)*p))
                p++;
        const char *s = p;
        while (is_token_char(*p))
                p++;
        if (p == s)
                return -EINVAL;
        ch.scheme = strndup(s, p - s);
        if (!ch.scheme)
                return -ENOMEM;

        for (;;) {
                while (isspace((unsigned char)*p) || *p == ',')
                        p++;
                if (!*p)
                        break;
                const char *k = p;
                while (is_token_char(*p))
                        p++;
                size_t klen = p - k;
                const char *q = p;
                while (isspace((unsigned char)*q))
                        q++;
                if (klen == 0 || *q != '=')
                        break; /* the start of another challenge: we keep the first */
                p = q + 1;
                while (isspace((unsigned char)*p))
                        p++;

                char *v;
                if (*p == '"') {
                        p++;
                        v = malloc(strlen(p) + 1);
                        if (!v) {
                                registry_challenge_done(&ch);
                                return -ENOMEM;
                        }
                        size_t n = 0;
                        while (*p && *p != '"') {
                                if (*p == '\\' && p[1])
                                        p++;
                                v[n++] = *p++;
                        }
                        v[n] = 0;
                        if (*p != '"') {
                                free(v);
                                registry_challenge_done(&ch);
                                return -EINVAL;
                        }
                        p++;
                } else {
                        const char *vs = p;
                        while (*p && *p != ',' && !isspace((unsigned char)*p))
                                p++;
                        v = strndup(vs, p - vs);
                        if (!v) {
                                registry_challenge_done(&ch);
                                return -ENOMEM;
                        }
                }

                char **slot = NULL;
                if (klen == 5 && strncasecmp(k, "realm", 5) == 0)
                        slot = &ch.realm;
                else if (klen == 7 && strncasecmp(k, "service", 7) == 0)
                        slot = &ch.service;
                else if (klen == 5 && strncasecmp(k, "scope", 5) == 0)
                        slot = &ch.scope;
                else if (klen == 5 && strncasecmp(k, "error", 5) == 0)
                        slot = &ch.error;
                if (slot) {
                        free(*slot);
                        *slot = v;
                } else
                        free(v);
        }

        *ret = ch;
        return 0;
}

/* ---- URLs ---- */

static int split_host(const char *hostport, char *buf, size_t bufsz) {
        /* "[::1]:5000" -> "::1", "host:5000" -> "host", "::1" stays */
        const char *start = hostport, *end;
        if (*hostport == '[') {
                start++;
                end = strchr(start, ']');
                if (!end)
                        return -EINVAL;
        } else {
                end = strchr(hostport, ':');
                if (end && strchr(end + 1, ':'))
                        end = NULL; /* bare IPv6 literal */
                if (!end)
                        end = hostport + strlen(hostport);
        }
        if ((size_t)(end - start) >= bufsz)
                return -ENAMETOOLONG;
        memcpy(buf, start, end - start);
        buf[end - start] = 0;
        return 0;
}

bool registry_host_is_insecure(const char *host, char *const *insecure) {
        char h[256];
        if (split_host(host, h, sizeof(h)) < 0)
                return false;
        if (strcasecmp(h, "localhost") == 0 || streq(h, "::1"))
                return true;
        struct in_addr a;
        if (inet_pton(AF_INET, h, &a) == 1 && (ntohl(a.s_addr) >> 24) == 127)
                return true;
        for (char *const *i = insecure; i && *i; i++) {
                const char *e = *i;
                if (strncmp(e, "http://", 7) == 0)
                        e += 7;
                else if (strncmp(e, "https://", 8) == 0)
                        e += 8;
                size_t n = strcspn(e, "/");
                if ((strlen(host) == n && strncasecmp(host, e, n) == 0) ||
                    (strlen(h) == n && strncasecmp(h, e, n) == 0))
                        return true;
        }
        return false;
}

int registry_base_url(const char *registry, char *const *insecure, char **ret) {
        char *u;
        if (!registry || !*registry || strpbrk(registry, "/?#@ \t\r\n"))
                return -EINVAL;
        if (is_docker_hub(registry))
                u = strdup("https://" DOCKER_HUB_HOST);
        else if (asprintf(&u, "%s://%s", registry_host_is_insecure(registry, insecure) ? "http" : "https",
                          registry) < 0)
                u = NULL;
        if (!u)
                return -ENOMEM;
        *ret = u;
        return 0;
}

static bool valid_repository(const char *s) {
        if (!*s || *s == '/' || strstr(s, "//") || strstr(s, ".."))
                return false;
        for (; *s; s++)
                if (!(islower((unsigned char)*s) || isdigit((unsigned char)*s) || strchr("._-/", *s)))
                        return false;
        return true;
}

static bool valid_reference(const char *s) {
        if (!*s || strlen(s) > 200)
                return false;
        for (; *s; s++)
                if (!(isalnum((unsigned char)*s) || strchr("._-:", *s)))
                        return false;
        return true;
}

int registry_url(const char *base, const char *repository, const char *kind, const char *reference, char **ret) {
        if (!valid_repository(repository) || !valid_reference(reference))
                return -EINVAL;
        size_t bl = strlen(base);
        while (bl > 0 && base[bl - 1] == '/')
                bl--;
        char *u;
        if (asprintf(&u, "%.*s/v2/%s/%s/%s", (int)bl, base, repository, kind, reference) < 0)
                return -ENOMEM;
        *ret = u;
        return 0;
}

int registry_token_url(const struct registry_challenge *ch, const char *fallback_scope, char **ret) {
        if (!ch->realm || (strncmp(ch->realm, "https://", 8) != 0 && strncmp(ch->realm, "http://", 7) != 0))
                return -EINVAL;
        char *u = strdup(ch->realm);
        if (!u)
                return -ENOMEM;
        char sep = strchr(u, '?') ? '&' : '?';

        const char *scopes = ch->scope ? ch->scope : fallback_scope;
        if (ch->service) {
                _cleanup_free_ char *e = url_escape(ch->service);
                char *n;
                if (!e || asprintf(&n, "%s%cservice=%s", u, sep, e) < 0) {
                        free(u);
                        return -ENOMEM;
                }
                free(u);
                u = n;
                sep = '&';
        }
        for (const char *p = scopes ? scopes : ""; *p;) {
                size_t n = strcspn(p, " ");
                if (n > 0) {
                        _cleanup_free_ char *one = strndup(p, n);
                        _cleanup_free_ char *e = one ? url_escape(one) : NULL;
                        char *nu;
                        if (!e || asprintf(&nu, "%s%cscope=%s", u, sep, e) < 0) {
                                free(u);
                                return -ENOMEM;
                        }
                        free(u);
                        u = nu;
                        sep = '&';
                }
                p += n;
                while (*p == ' ')
                        p++;
        }
        *ret = u;
        return 0;
}

int registry_resolve_location(const char *request_url, const char *location, char **ret) {
        registry_global_init();
        CURLU *u = curl_url();
        if (!u)
                return -ENOMEM;
        char *out = NULL;
        int r = 0;
        if (curl_url_set(u, CURLUPART_URL, request_url, 0) != CURLUE_OK ||
            curl_url_set(u, CURLUPART_URL, location, 0) != CURLUE_OK ||
            curl_url_get(u, CURLUPART_URL, &out, 0) != CURLUE_OK)
                r = -EINVAL;
        curl_url_cleanup(u);
        if (r < 0)
                return r;
        *ret = strdup(out);
        curl_free(out);
        return *ret ? 0 : -ENOMEM;
}

/* ---- credentials ---- */

static bool auth_key_matches(const char *key, const char *host) {
        if (strncmp(key, "https://", 8) == 0)
                key += 8;
        else if (strncmp(key, "http://", 7) == 0)
                key += 7;
        size_t n = strcspn(key, "/");
        if (strlen(host) == n && strncasecmp(key, host, n) == 0)
                return true;
        if (is_docker_hub(host)) {
                _cleanup_free_ char *k = strndup(key, n);
                return k && is_docker_hub(k);
        }
        return false;
}

int registry_auth_lookup(const char *auth_file, const char *host, char **ret, struct cm_error **err) {
        *ret = NULL;
        if (!auth_file)
                return 0;
        _cleanup_free_ char *data = NULL;
        size_t len;
        int r = fs_read_all(AT_FDCWD, auth_file, 1024 * 1024, &data, &len);
        if (r == -ENOENT)
                return 0;
        if (r < 0)
                return cm_error_set(err, -r, "cannot read credentials %s: %s", auth_file, strerror(-r));
        _cleanup_free_ char *perr = NULL;
        _cleanup_json_ json_t *root = json_parse_buf(data, len, &perr);
        if (!root)
                return cm_error_set(err, CM_EINVALID, "credentials %s: %s", auth_file, perr ? perr : "invalid JSON");
        json_t *auths = json_object_get(root, "auths");
        const char *key;
        json_t *v;
        json_object_foreach(auths, key, v) {
                if (!auth_key_matches(key, host))
                        continue;
                const char *a = json_get_str(v, "auth");
                if (a && *a) {
                        *ret = strdup(a);
                        return *ret ? 0 : -ENOMEM;
                }
                const char *u = json_get_str(v, "username"), *p = json_get_str(v, "password");
                if (u && p) {
                        _cleanup_free_ char *up = NULL;
                        if (asprintf(&up, "%s:%s", u, p) < 0)
                                return -ENOMEM;
                        *ret = base64_encode(up, strlen(up));
                        return *ret ? 0 : -ENOMEM;
                }
        }
        return 0;
}

/* ---- the client ---- */

struct endpoint {
        char *base;       /* "https://registry-1.docker.io", "http://127.0.0.1:5000" */
        char *host;       /* for messages: "registry-1.docker.io", "127.0.0.1:5000" */
        char *login_name; /* what to pass to `container registry login` */
        bool is_mirror;
        char *basic; /* base64(user:pass) or NULL */
        pthread_mutex_t lock;
        char *auth_header; /* guarded by lock */
        bool pinged;       /* guarded by lock */
};

struct registry_client {
        struct endpoint *eps;
        size_t n_eps;
        size_t active; /* guarded by lock: the endpoint that served the manifest */
        char *repository;
        char *scope;
        long timeout;
        char *user_agent;
        pthread_mutex_t lock;
        CURL *pool[POOL_MAX]; /* guarded by lock */
        size_t n_pool;
};

static void endpoint_done(struct endpoint *e) {
        free(e->base);
        free(e->host);
        free(e->login_name);
        free(e->basic);
        free(e->auth_header);
        pthread_mutex_destroy(&e->lock);
}

void registry_client_free(struct registry_client *c) {
        if (!c)
                return;
        for (size_t i = 0; i < c->n_eps; i++)
                endpoint_done(&c->eps[i]);
        free(c->eps);
        for (size_t i = 0; i < c->n_pool; i++)
                curl_easy_cleanup(c->pool[i]);
        free(c->repository);
        free(c->scope);
        free(c->user_agent);
        pthread_mutex_destroy(&c->lock);
        free(c);
}

static int endpoint_add(struct registry_client *c, const char *base, bool is_mirror, const char *login_name,
                        const char *auth_file, struct cm_error **err) {
        struct endpoint *n = realloc(c->eps, (c->n_eps + 1) * sizeof(*n));
        if (!n)
                return -ENOMEM;
        c->eps = n;
        struct endpoint *e = &c->eps[c->n_eps];
        *e = (struct endpoint){0};
        pthread_mutex_init(&e->lock, NULL);
        c->n_eps++;

        size_t bl = strlen(base);
        while (bl > 0 && base[bl - 1] == '/')
                bl--;
        e->base = strndup(base, bl);
        const char *h = strstr(base, "://");
        h = h ? h + 3 : base;
        e->host = strndup(h, strcspn(h, "/"));
        e->login_name = strdup(login_name ? login_name : e->host ? e->host : "");
        e->is_mirror = is_mirror;
        if (!e->base || !e->host || !e->login_name)
                return -ENOMEM;
        if (strncmp(e->base, "http://", 7) != 0 && strncmp(e->base, "https://", 8) != 0)
                return cm_error_set(err, CM_EINVALID, "invalid registry mirror URL '%s'", base);
        return registry_auth_lookup(auth_file, login_name && is_docker_hub(login_name) ? login_name : e->host,
                                    &e->basic, err);
}

static int client_alloc(const struct registry_options *ro, struct registry_client **ret) {
        int r = registry_global_init();
        if (r < 0)
                return r;
        struct registry_client *c = calloc(1, sizeof(*c));
        if (!c)
                return -ENOMEM;
        pthread_mutex_init(&c->lock, NULL);
        c->timeout = ro && ro->timeout_sec > 0 ? ro->timeout_sec : 30;
        c->user_agent = strdup(ro && ro->user_agent ? ro->user_agent : "container-machine/" CM_VERSION);
        if (!c->user_agent) {
                registry_client_free(c);
                return -ENOMEM;
        }
        *ret = c;
        return 0;
}

int registry_client_new(const struct registry_options *ro, const char *registry, const char *repository, bool push,
                        struct registry_client **ret, struct cm_error **err) {
        _cleanup_registry_client_ struct registry_client *c = NULL;
        int r = client_alloc(ro, &c);
        if (r < 0)
                return cm_error_set(err, -r, "cannot set up HTTP client: %s", strerror(-r));

        if (!valid_repository(repository))
                return cm_error_set(err, CM_EINVALID, "invalid repository name '%s'", repository);
        c->repository = strdup(repository);
        if (!c->repository || asprintf(&c->scope, "repository:%s:%s", repository, push ? "pull,push" : "pull") < 0)
                return cm_error_set(err, ENOMEM, "out of memory");

        if (!push && is_docker_hub(registry) && ro)
                for (char **m = ro->mirrors; m && *m; m++) {
                        r = endpoint_add(c, *m, true, NULL, ro->auth_file, err);
                        if (r < 0)
                                return cm_error_set(err, -r, "registry mirror %s: %s", *m, strerror(-r));
                }
        _cleanup_free_ char *base = NULL;
        r = registry_base_url(registry, ro ? ro->insecure : NULL, &base);
        if (r < 0)
                return cm_error_set(err, CM_EINVALID, "invalid registry name '%s'", registry);
        r = endpoint_add(c, base, false, is_docker_hub(registry) ? "docker.io" : registry, ro ? ro->auth_file : NULL,
                         err);
        if (r < 0)
                return cm_error_set(err, -r, "registry %s: %s", registry, strerror(-r));
        *ret = TAKE_PTR(c);
        return 0;
}

static CURL *handle_get(struct registry_client *c) {
        CURL *h = NULL;
        pthread_mutex_lock(&c->lock);
        if (c->n_pool > 0)
                h = c->pool[--c->n_pool];
        pthread_mutex_unlock(&c->lock);
        return h ? h : curl_easy_init();
}

static void handle_put(struct registry_client *c, CURL *h) {
        if (!h)
                return;
        curl_easy_reset(h); /* keeps the connection cache: the next request reuses it */
        pthread_mutex_lock(&c->lock);
        if (c->n_pool < POOL_MAX) {
                c->pool[c->n_pool++] = h;
                h = NULL;
        }
        pthread_mutex_unlock(&c->lock);
        if (h)
                curl_easy_cleanup(h);
}

/* ---- one HTTP exchange ---- */

struct xfer {
        /* request */
        const char *method; /* GET HEAD POST PUT */
        const char *url;
        const char *extra_header; /* Accept or Content-Type */
        const char *auth_override; /* "Authorization: ..." instead of the endpoint's */
        bool no_auth;
        const void *body;
        size_t body_len;
        int body_fd; /* -1 */
        uint64_t body_pos;
        const struct registry_sink *sink;
        int64_t expected_size;
        size_t max_buf;

        /* response, reset before each attempt */
        long status;
        char *content_type, *location, *content_range, *docker_digest;
        char **www_auth;
        char *buf;
        size_t len;
        bool overflow;
        bool body_started;
        bool bad_range;
        uint64_t range_from;
        uint64_t received;
        int sink_r;
        struct cm_error *sink_err;
        char errbuf[CURL_ERROR_SIZE];
};

static void xfer_reset_response(struct xfer *x) {
        x->status = 0;
        free(x->content_type);
        free(x->location);
        free(x->content_range);
        free(x->docker_digest);
        x->content_type = x->location = x->content_range = x->docker_digest = NULL;
        strv_free(x->www_auth);
        x->www_auth = NULL;
        free(x->buf);
        x->buf = NULL;
        x->len = 0;
        x->overflow = false;
        x->body_started = false;
        x->bad_range = false;
        x->received = 0;
        x->body_pos = 0;
        x->errbuf[0] = 0;
}

static void xfer_done(struct xfer *x) {
        xfer_reset_response(x);
        cm_error_free(x->sink_err);
        x->sink_err = NULL;
}

static size_t header_cb(char *data, size_t size, size_t n, void *ud) {
        struct xfer *x = ud;
        size_t len = size * n;
        if (len >= 5 && strncmp(data, "HTTP/", 5) == 0) {
                /* a new response (after a redirect or 100-continue): forget the previous one's headers */
                char *ct = NULL;
                long st = 0;
                const char *sp = memchr(data, ' ', len);
                if (sp)
                        st = strtol(sp + 1, &ct, 10);
                free(x->content_type);
                free(x->location);
                free(x->content_range);
                free(x->docker_digest);
                x->content_type = x->location = x->content_range = x->docker_digest = NULL;
                strv_free(x->www_auth);
                x->www_auth = NULL;
                x->status = st;
                return len;
        }
        const char *colon = memchr(data, ':', len);
        if (!colon)
                return len;
        size_t kl = colon - data;
        char **slot = NULL;
        if (kl == 12 && strncasecmp(data, "content-type", 12) == 0)
                slot = &x->content_type;
        else if (kl == 8 && strncasecmp(data, "location", 8) == 0)
                slot = &x->location;
        else if (kl == 13 && strncasecmp(data, "content-range", 13) == 0)
                slot = &x->content_range;
        else if (kl == 21 && strncasecmp(data, "docker-content-digest", 21) == 0)
                slot = &x->docker_digest;
        char *v = strdup_trim(colon + 1, len - kl - 1);
        if (!v)
                return 0;
        if (kl == 16 && strncasecmp(data, "www-authenticate", 16) == 0) {
                if (strv_consume(&x->www_auth, v) < 0)
                        return 0;
        } else if (slot) {
                free(*slot);
                *slot = v;
        } else
                free(v);
        return len;
}

static int sink_begin_body(struct xfer *x) {
        /* First body bytes of a blob response: decide between appending and restarting. */
        if (x->range_from == 0)
                return 0;
        if (x->status == 206) {
                unsigned long long from = 0;
                if (x->content_range && sscanf(x->content_range, "bytes %llu-", &from) == 1 &&
                    from == x->range_from)
                        return 0;
                x->bad_range = true;
                return -EIO;
        }
        x->range_from = 0;
        return x->sink->reset(x->sink->userdata);
}

static size_t write_cb(char *data, size_t size, size_t n, void *ud) {
        struct xfer *x = ud;
        size_t len = size * n;
        if (x->status >= 300 && x->status < 400)
                return len; /* body of a redirect being followed */
        if (x->sink && (x->status == 200 || x->status == 206)) {
                if (!x->body_started) {
                        x->body_started = true;
                        int r = sink_begin_body(x);
                        if (r < 0) {
                                if (!x->bad_range)
                                        x->sink_r = cm_error_set(&x->sink_err, -r, "cannot restart download: %s",
                                                                 strerror(-r));
                                return 0;
                        }
                }
                int r = x->sink->write(x->sink->userdata, data, len, &x->sink_err);
                if (r < 0) {
                        x->sink_r = r;
                        return 0;
                }
                x->received += len;
                return len;
        }
        if (x->len + len > x->max_buf) {
                x->overflow = true;
                return 0;
        }
        char *nb = realloc(x->buf, x->len + len + 1);
        if (!nb)
                return 0;
        memcpy(nb + x->len, data, len);
        x->buf = nb;
        x->len += len;
        x->buf[x->len] = 0;
        x->received += len;
        return len;
}

static size_t read_cb(char *buf, size_t size, size_t n, void *ud) {
        struct xfer *x = ud;
        size_t want = size * n;
        if (x->body_fd >= 0) {
                ssize_t k = pread(x->body_fd, buf, want, (off_t)x->body_pos);
                if (k < 0)
                        return CURL_READFUNC_ABORT;
                x->body_pos += (uint64_t)k;
                return (size_t)k;
        }
        size_t left = x->body_len - x->body_pos;
        if (want > left)
                want = left;
        memcpy(buf, (const char *)x->body + x->body_pos, want);
        x->body_pos += want;
        return want;
}

static int xferinfo_cb(void *ud, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal, curl_off_t ulnow) {
        struct xfer *x = ud;
        if (!x->sink || !x->sink->progress)
                return 0;
        uint64_t total = x->expected_size >= 0 ? (uint64_t)x->expected_size : 0;
        return x->sink->progress(x->sink->userdata, x->sink->size(x->sink->userdata), total);
}

static char *endpoint_auth_header(struct endpoint *e) {
        pthread_mutex_lock(&e->lock);
        char *h = e->auth_header ? strdup(e->auth_header) : NULL;
        pthread_mutex_unlock(&e->lock);
        return h;
}

static CURLcode xfer_perform_once(struct registry_client *c, struct endpoint *e, struct xfer *x) {
        CURL *h = handle_get(c);
        if (!h)
                return CURLE_OUT_OF_MEMORY;
        struct curl_slist *hdrs = NULL, *t;
        _cleanup_free_ char *auth = NULL, *range = NULL;
        CURLcode cc = CURLE_OUT_OF_MEMORY;

        if (x->auth_override)
                auth = strdup(x->auth_override);
        else if (!x->no_auth)
                auth = endpoint_auth_header(e);
        if (auth && !(t = curl_slist_append(hdrs, auth)))
                goto out;
        else if (auth)
                hdrs = t;
        if (x->extra_header) {
                if (!(t = curl_slist_append(hdrs, x->extra_header)))
                        goto out;
                hdrs = t;
        }
        if (!(t = curl_slist_append(hdrs, "Expect:")))
                goto out;
        hdrs = t;
        if (x->sink && x->range_from > 0) {
                if (asprintf(&range, "Range: bytes=%" PRIu64 "-", x->range_from) < 0) {
                        range = NULL;
                        goto out;
                }
                if (!(t = curl_slist_append(hdrs, range)))
                        goto out;
                hdrs = t;
        }

        curl_easy_setopt(h, CURLOPT_URL, x->url);
        curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
        curl_easy_setopt(h, CURLOPT_USERAGENT, c->user_agent);
        curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
        curl_easy_setopt(h, CURLOPT_REDIR_PROTOCOLS_STR, strncmp(x->url, "https:", 6) == 0 ? "https" : "http,https");
        curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT, c->timeout);
        curl_easy_setopt(h, CURLOPT_LOW_SPEED_LIMIT, 1L);
        curl_easy_setopt(h, CURLOPT_LOW_SPEED_TIME, c->timeout);
        curl_easy_setopt(h, CURLOPT_ERRORBUFFER, x->errbuf);
        curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, header_cb);
        curl_easy_setopt(h, CURLOPT_HEADERDATA, x);
        curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, write_cb);
        curl_easy_setopt(h, CURLOPT_WRITEDATA, x);
        if (x->sink && x->sink->progress) {
                curl_easy_setopt(h, CURLOPT_NOPROGRESS, 0L);
                curl_easy_setopt(h, CURLOPT_XFERINFOFUNCTION, xferinfo_cb);
                curl_easy_setopt(h, CURLOPT_XFERINFODATA, x);
        }
        if (streq(x->method, "GET") || streq(x->method, "HEAD")) {
                curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 1L);
                curl_easy_setopt(h, CURLOPT_MAXREDIRS, 5L);
                if (streq(x->method, "HEAD"))
                        curl_easy_setopt(h, CURLOPT_NOBODY, 1L);
        } else if (streq(x->method, "POST")) {
                curl_easy_setopt(h, CURLOPT_POST, 1L);
                curl_easy_setopt(h, CURLOPT_POSTFIELDS, "");
                curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE, 0L);
        } else if (streq(x->method, "PUT")) {
                curl_easy_setopt(h, CURLOPT_UPLOAD, 1L);
                curl_easy_setopt(h, CURLOPT_READFUNCTION, read_cb);
                curl_easy_setopt(h, CURLOPT_READDATA, x);
                curl_easy_setopt(h, CURLOPT_INFILESIZE_LARGE,
                                 (curl_off_t)(x->body_fd >= 0 ? (uint64_t)x->expected_size : x->body_len));
        } else
                curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, x->method);

        cc = curl_easy_perform(h);
        if (cc == CURLE_OK) {
                curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &x->status);
                if (x->location) {
                        /* relative Location headers are relative to where the request ended up */
                        char *eff = NULL;
                        curl_easy_getinfo(h, CURLINFO_EFFECTIVE_URL, &eff);
                        char *abs = NULL;
                        if (registry_resolve_location(eff ? eff : x->url, x->location, &abs) == 0) {
                                free(x->location);
                                x->location = abs;
                        }
                }
        }
out:
        curl_slist_free_all(hdrs);
        handle_put(c, h);
        return cc;
}

static bool curl_transient(CURLcode cc) {
        switch (cc) {
        case CURLE_RECV_ERROR:
        case CURLE_SEND_ERROR:
        case CURLE_GOT_NOTHING:
        case CURLE_PARTIAL_FILE:
        case CURLE_HTTP2:
        case CURLE_HTTP2_STREAM:
        case CURLE_SSL_CONNECT_ERROR:
                return true;
        default:
                return false;
        }
}

static void backoff(int attempt) {
        struct timespec ts = {.tv_sec = 0, .tv_nsec = 250L * 1000 * 1000};
        for (int i = 0; i < attempt; i++) {
                ts.tv_nsec *= 2;
                if (ts.tv_nsec >= 1000L * 1000 * 1000) {
                        ts.tv_sec += ts.tv_nsec / (1000L * 1000 * 1000);
                        ts.tv_nsec %= 1000L * 1000 * 1000;
                }
        }
        nanosleep(&ts, NULL);
}

static int curl_error(struct endpoint *e, struct xfer *x, CURLcode cc, struct cm_error **err) {
        const char *why = x->errbuf[0] ? x->errbuf : curl_easy_strerror(cc);
        switch (cc) {
        case CURLE_OPERATION_TIMEDOUT:
                return cm_error_set(err, ETIMEDOUT, "registry %s timed out", e->host);
        case CURLE_COULDNT_CONNECT:
                return cm_error_set(err, ECONNREFUSED, "cannot connect to registry %s: %s", e->host, why);
        case CURLE_COULDNT_RESOLVE_HOST:
                return cm_error_set(err, CM_EREGISTRY, "cannot resolve registry host %s", e->host);
        case CURLE_OUT_OF_MEMORY:
                return cm_error_set(err, ENOMEM, "out of memory");
        case CURLE_TOO_MANY_REDIRECTS:
                return cm_error_set(err, CM_EREGISTRY, "registry %s: too many redirects", e->host);
        default:
                return cm_error_set(err, CM_EREGISTRY, "registry %s: %s", e->host, why);
        }
}

static int authenticate(struct registry_client *c, struct endpoint *e, char **challenges, struct cm_error **err);

static void notify_retry(struct xfer *x) {
        if (x->sink && x->sink->retrying)
                x->sink->retrying(x->sink->userdata, x->sink->size(x->sink->userdata),
                                  x->expected_size >= 0 ? (uint64_t)x->expected_size : 0);
}

/* Performs x against endpoint e with retries and authentication. Returns 0 with x->status
 * set for any HTTP answer the caller must interpret; < 0 with err for transport failures. */
static int request(struct registry_client *c, struct endpoint *e, struct xfer *x, struct cm_error **err) {
        bool auth_done = x->no_auth || x->auth_override;
        int attempt = 0;
        for (;;) {
                xfer_reset_response(x);
                if (x->sink)
                        x->range_from = x->sink->size(x->sink->userdata);
                CURLcode cc = xfer_perform_once(c, e, x);

                if (x->sink_r < 0) {
                        int r = x->sink_r;
                        if (err && !*err && x->sink_err) {
                                *err = TAKE_PTR(x->sink_err);
                                return r;
                        }
                        return cm_error_set(err, -r, "%s", strerror(-r));
                }
                if (cc == CURLE_ABORTED_BY_CALLBACK)
                        return cm_error_set(err, ECANCELED, "cancelled");
                if (cc != CURLE_OK) {
                        bool transient = curl_transient(cc) || x->bad_range ||
                                         (cc == CURLE_OPERATION_TIMEDOUT && x->received > 0);
                        if (x->bad_range && x->sink && x->sink->reset(x->sink->userdata) < 0)
                                transient = false;
                        if (transient && ++attempt < MAX_TRIES) {
                                notify_retry(x);
                                backoff(attempt - 1);
                                continue;
                        }
                        return curl_error(e, x, cc, err);
                }
                if (x->status == 401 && !auth_done) {
                        auth_done = true;
                        int r = authenticate(c, e, x->www_auth, err);
                        if (r < 0)
                                return r;
                        continue;
                }
                if ((x->status >= 500 || x->status == 429) && ++attempt < MAX_TRIES) {
                        notify_retry(x);
                        backoff(attempt - 1);
                        continue;
                }
                return 0;
        }
}

/* Message from a registry error body {"errors":[{"code":…,"message":…}]} */
static char *error_body_message(const struct xfer *x) {
        if (!x->buf || x->len == 0)
                return NULL;
        _cleanup_json_ json_t *j = json_loadb(x->buf, x->len, 0, NULL);
        json_t *e0 = json_array_get(json_object_get(j, "errors"), 0);
        const char *m = json_get_str(e0, "message");
        if (!m || !*m)
                m = json_get_str(e0, "code");
        if (!m || !*m)
                m = json_get_str(j, "details");
        return m && *m ? strdup(m) : NULL;
}

static int status_error(struct endpoint *e, const struct xfer *x, const char *what, struct cm_error **err) {
        _cleanup_free_ char *m = error_body_message(x);
        switch (x->status) {
        case 401:
        case 403:
                if (e->basic)
                        return cm_error_set(err, CM_EPERM,
                                            "unauthorized: %s: the stored credentials for %s were rejected (log in "
                                            "with 'container registry login %s')",
                                            m ? m : "authentication required", e->login_name, e->login_name);
                return cm_error_set(err, CM_EPERM, "unauthorized: %s (log in with 'container registry login %s')",
                                    m ? m : "authentication required", e->login_name);
        case 404:
                if (m)
                        return cm_error_set(err, ENOENT, "%s", m);
                return cm_error_set(err, ENOENT, "%s unknown", what);
        default:
                return cm_error_set(err, CM_EREGISTRY, "registry %s: HTTP %ld%s%s", e->host, x->status, m ? ": " : "",
                                    m ? m : "");
        }
}

static int fetch_token(struct registry_client *c, struct endpoint *e, const struct registry_challenge *ch,
                       struct cm_error **err) {
        _cleanup_free_ char *url = NULL;
        if (registry_token_url(ch, c ? c->scope : NULL, &url) < 0)
                return cm_error_set(err, CM_EREGISTRY, "registry %s: unusable authentication realm '%s'", e->host,
                                    ch->realm ? ch->realm : "");
        _cleanup_free_ char *basic = NULL;
        if (e->basic && asprintf(&basic, "Authorization: Basic %s", e->basic) < 0)
                return cm_error_set(err, ENOMEM, "out of memory");
        struct xfer x = {.method = "GET", .url = url, .body_fd = -1, .max_buf = TOKEN_BODY_MAX, .expected_size = -1,
                         .auth_override = basic, .no_auth = !basic};
        int r = request(c, e, &x, err);
        if (r < 0) {
                xfer_done(&x);
                return r;
        }
        if (x.status != 200) {
                if (x.status == 401 || x.status == 403) {
                        _cleanup_free_ char *m = error_body_message(&x);
                        r = cm_error_set(err, CM_EPERM,
                                         "unauthorized: %s (log in with 'container registry login %s')",
                                         e->basic ? "invalid username or password"
                                                  : (m ? m : "authentication required"),
                                         e->login_name);
                } else
                        r = cm_error_set(err, CM_EREGISTRY, "token server for %s: HTTP %ld", e->host, x.status);
                xfer_done(&x);
                return r;
        }
        _cleanup_json_ json_t *j = json_loadb(x.buf ? x.buf : "", x.len, 0, NULL);
        xfer_done(&x);
        const char *tok = json_get_str(j, "token");
        if (!tok || !*tok)
                tok = json_get_str(j, "access_token");
        if (!tok || !*tok || strpbrk(tok, "\r\n"))
                return cm_error_set(err, CM_EREGISTRY, "token server for %s sent no token", e->host);
        char *h;
        if (asprintf(&h, "Authorization: Bearer %s", tok) < 0)
                return cm_error_set(err, ENOMEM, "out of memory");
        pthread_mutex_lock(&e->lock);
        free(e->auth_header);
        e->auth_header = h;
        pthread_mutex_unlock(&e->lock);
        return 0;
}

static int authenticate(struct registry_client *c, struct endpoint *e, char **challenges, struct cm_error **err) {
        struct registry_challenge bearer = {0}, basic = {0};
        for (char **i = challenges; i && *i; i++) {
                struct registry_challenge ch;
                if (registry_challenge_parse(*i, &ch) < 0)
                        continue;
                if (strcasecmp(ch.scheme, "bearer") == 0 && !bearer.scheme)
                        bearer = ch;
                else if (strcasecmp(ch.scheme, "basic") == 0 && !basic.scheme)
                        basic = ch;
                else
                        registry_challenge_done(&ch);
        }
        int r;
        if (bearer.scheme)
                r = fetch_token(c, e, &bearer, err);
        else if (basic.scheme && e->basic) {
                char *h;
                if (asprintf(&h, "Authorization: Basic %s", e->basic) < 0)
                        r = cm_error_set(err, ENOMEM, "out of memory");
                else {
                        pthread_mutex_lock(&e->lock);
                        free(e->auth_header);
                        e->auth_header = h;
                        pthread_mutex_unlock(&e->lock);
                        r = 0;
                }
        } else
                r = cm_error_set(err, CM_EPERM, "unauthorized: authentication required (log in with 'container registry login %s')",
                                 e->login_name);
        registry_challenge_done(&bearer);
        registry_challenge_done(&basic);
        return r;
}

/* GET /v2/ once per endpoint: learns how to authenticate before the first real request. */
static int endpoint_ping(struct registry_client *c, struct endpoint *e, struct cm_error **err) {
        pthread_mutex_lock(&e->lock);
        bool done = e->pinged;
        pthread_mutex_unlock(&e->lock);
        if (done)
                return 0;
        _cleanup_free_ char *url = NULL;
        if (asprintf(&url, "%s/v2/", e->base) < 0)
                return cm_error_set(err, ENOMEM, "out of memory");
        struct xfer x = {.method = "GET", .url = url, .body_fd = -1, .max_buf = ERROR_BODY_MAX, .expected_size = -1};
        int r = request(c, e, &x, err);
        if (r >= 0 && x.status != 200) {
                if (x.status == 404)
                        r = cm_error_set(err, CM_EREGISTRY, "%s is not a registry (no /v2/ API)", e->base);
                else
                        r = status_error(e, &x, "registry", err);
        }
        xfer_done(&x);
        if (r < 0)
                return r;
        pthread_mutex_lock(&e->lock);
        e->pinged = true;
        pthread_mutex_unlock(&e->lock);
        return 0;
}

/* Runs fn on the endpoints from the active one on; for docker.io with mirrors, a failing
 * mirror hands over to the next and the error names every endpoint tried. */
typedef int (*endpoint_fn)(struct registry_client *c, struct endpoint *e, void *ud, struct cm_error **err);

static int with_endpoints(struct registry_client *c, endpoint_fn fn, void *ud, bool set_active, struct cm_error **err) {
        pthread_mutex_lock(&c->lock);
        size_t first = c->active;
        pthread_mutex_unlock(&c->lock);

        _cleanup_free_ char *combined = NULL;
        int last_r = -EIO, last_code = CM_EREGISTRY;
        for (size_t i = first; i < c->n_eps; i++) {
                struct endpoint *e = &c->eps[i];
                struct cm_error *e_err = NULL;
                int r = endpoint_ping(c, e, &e_err);
                if (r >= 0)
                        r = fn(c, e, ud, &e_err);
                if (r >= 0) {
                        cm_error_free(e_err);
                        if (set_active) {
                                pthread_mutex_lock(&c->lock);
                                c->active = i;
                                pthread_mutex_unlock(&c->lock);
                        }
                        return r;
                }
                if (c->n_eps - first == 1 || r == -ECANCELED) {
                        if (err && !*err)
                                *err = e_err;
                        else
                                cm_error_free(e_err);
                        return r;
                }
                char *n = NULL;
                const char *msg = e_err && e_err->message ? e_err->message : strerror(-r);
                if (asprintf(&n, "%s%s%s %s: %s", combined ? combined : "", combined ? "; " : "",
                             e->is_mirror ? "mirror" : "registry", e->is_mirror ? e->base : e->host, msg) < 0)
                        n = NULL;
                free(combined);
                combined = n;
                last_r = r;
                last_code = e_err ? e_err->code : -r;
                cm_error_free(e_err);
        }
        cm_error_set(err, last_code, "%s", combined ? combined : "no registry endpoint");
        return last_r;
}

/* ---- manifests ---- */

struct manifest_req {
        const char *reference;
        char *data;
        size_t len;
        char *media_type;
        char digest[DIGEST_STR_MAX];
};

static int get_manifest_ep(struct registry_client *c, struct endpoint *e, void *ud, struct cm_error **err) {
        struct manifest_req *m = ud;
        _cleanup_free_ char *url = NULL;
        if (registry_url(e->base, c->repository, "manifests", m->reference, &url) < 0)
                return cm_error_set(err, CM_EINVALID, "invalid reference '%s'", m->reference);
        struct xfer x = {.method = "GET", .url = url, .extra_header = manifest_accept, .body_fd = -1,
                         .max_buf = REGISTRY_MANIFEST_MAX, .expected_size = -1};
        int r = request(c, e, &x, err);
        if (r < 0) {
                if (x.overflow) {
                        cm_error_free(err ? TAKE_PTR(*err) : NULL);
                        r = cm_error_set(err, CM_EREGISTRY, "manifest %s is larger than %u bytes", m->reference,
                                         REGISTRY_MANIFEST_MAX);
                }
                xfer_done(&x);
                return r;
        }
        if (x.status != 200) {
                r = status_error(e, &x, "manifest", err);
                xfer_done(&x);
                return r;
        }
        digest_buffer(x.buf ? x.buf : "", x.len, m->digest);
        if (strncmp(m->reference, "sha256:", 7) == 0 && !streq(m->reference, m->digest)) {
                r = cm_error_set(err, CM_EDIGEST, "manifest %s: digest mismatch (got %s)", m->reference, m->digest);
                xfer_done(&x);
                return r;
        }
        const char *ct = x.content_type ? x.content_type : "";
        m->media_type = strndup(ct, strcspn(ct, "; \t"));
        m->data = x.buf ? TAKE_PTR(x.buf) : strdup("");
        m->len = x.len;
        xfer_done(&x);
        if (!m->media_type || !m->data) {
                free(m->media_type);
                free(m->data);
                return cm_error_set(err, ENOMEM, "out of memory");
        }
        return 0;
}

int registry_get_manifest(struct registry_client *c, const char *reference, char **ret_data, size_t *ret_len,
                          char **ret_media_type, char ret_digest[DIGEST_STR_MAX], struct cm_error **err) {
        struct manifest_req m = {.reference = reference};
        if (!valid_reference(reference))
                return cm_error_set(err, CM_EINVALID, "invalid tag or digest '%s'", reference);
        int r = with_endpoints(c, get_manifest_ep, &m, true, err);
        if (r < 0)
                return r;
        *ret_data = m.data;
        if (ret_len)
                *ret_len = m.len;
        if (ret_media_type)
                *ret_media_type = m.media_type;
        else
                free(m.media_type);
        if (ret_digest)
                memcpy(ret_digest, m.digest, DIGEST_STR_MAX);
        return 0;
}

/* ---- blobs ---- */

struct blob_req {
        const char *digest;
        int64_t size;
        const struct registry_sink *sink;
        int fd;
};

static int get_blob_ep(struct registry_client *c, struct endpoint *e, void *ud, struct cm_error **err) {
        struct blob_req *b = ud;
        _cleanup_free_ char *url = NULL;
        if (registry_url(e->base, c->repository, "blobs", b->digest, &url) < 0)
                return cm_error_set(err, CM_EINVALID, "invalid digest '%s'", b->digest);
        struct xfer x = {.method = "GET", .url = url, .body_fd = -1, .max_buf = ERROR_BODY_MAX, .sink = b->sink,
                         .expected_size = b->size};
        int r = request(c, e, &x, err);
        if (r >= 0 && x.status != 200 && x.status != 206)
                r = status_error(e, &x, "blob", err);
        xfer_done(&x);
        return r;
}

int registry_get_blob(struct registry_client *c, const char *digest, int64_t size, const struct registry_sink *sink,
                      struct cm_error **err) {
        if (!digest_is_valid(digest))
                return cm_error_set(err, CM_EINVALID, "invalid digest '%s'", digest);
        struct blob_req b = {.digest = digest, .size = size, .sink = sink, .fd = -1};
        return with_endpoints(c, get_blob_ep, &b, false, err);
}

static int blob_exists_ep(struct registry_client *c, struct endpoint *e, void *ud, struct cm_error **err) {
        struct blob_req *b = ud;
        _cleanup_free_ char *url = NULL;
        if (registry_url(e->base, c->repository, "blobs", b->digest, &url) < 0)
                return cm_error_set(err, CM_EINVALID, "invalid digest '%s'", b->digest);
        struct xfer x = {.method = "HEAD", .url = url, .body_fd = -1, .max_buf = ERROR_BODY_MAX, .expected_size = -1};
        int r = request(c, e, &x, err);
        if (r >= 0) {
                if (x.status == 200)
                        r = 1;
                else if (x.status == 404)
                        r = 0;
                else
                        r = status_error(e, &x, "blob", err);
        }
        xfer_done(&x);
        return r;
}

int registry_blob_exists(struct registry_client *c, const char *digest, struct cm_error **err) {
        if (!digest_is_valid(digest))
                return cm_error_set(err, CM_EINVALID, "invalid digest '%s'", digest);
        struct blob_req b = {.digest = digest, .fd = -1};
        return with_endpoints(c, blob_exists_ep, &b, false, err);
}

static int put_blob_ep(struct registry_client *c, struct endpoint *e, void *ud, struct cm_error **err) {
        struct blob_req *b = ud;
        _cleanup_free_ char *url = NULL, *put_url = NULL, *edig = NULL;
        if (asprintf(&url, "%s/v2/%s/blobs/uploads/", e->base, c->repository) < 0)
                return cm_error_set(err, ENOMEM, "out of memory");
        struct xfer x = {.method = "POST", .url = url, .body_fd = -1, .max_buf = ERROR_BODY_MAX, .expected_size = -1};
        int r = request(c, e, &x, err);
        if (r >= 0 && x.status != 202)
                r = status_error(e, &x, "upload", err);
        if (r >= 0 && !x.location)
                r = cm_error_set(err, CM_EREGISTRY, "registry %s: upload started without a Location", e->host);
        if (r < 0) {
                xfer_done(&x);
                return r;
        }
        edig = url_escape(b->digest);
        if (!edig || asprintf(&put_url, "%s%cdigest=%s", x.location, strchr(x.location, '?') ? '&' : '?', edig) < 0) {
                xfer_done(&x);
                return cm_error_set(err, ENOMEM, "out of memory");
        }
        xfer_done(&x);

        struct xfer p = {.method = "PUT", .url = put_url, .extra_header = "Content-Type: application/octet-stream",
                         .body_fd = b->fd, .expected_size = b->size, .max_buf = ERROR_BODY_MAX};
        r = request(c, e, &p, err);
        if (r >= 0 && p.status != 201 && p.status != 204)
                r = status_error(e, &p, "upload", err);
        xfer_done(&p);
        return r;
}

int registry_put_blob(struct registry_client *c, const char *digest, int fd, uint64_t size, struct cm_error **err) {
        if (!digest_is_valid(digest))
                return cm_error_set(err, CM_EINVALID, "invalid digest '%s'", digest);
        struct blob_req b = {.digest = digest, .size = (int64_t)size, .fd = fd};
        return with_endpoints(c, put_blob_ep, &b, false, err);
}

struct put_manifest_req {
        const char *reference, *media_type;
        const void *data;
        size_t len;
};

static int put_manifest_ep(struct registry_client *c, struct endpoint *e, void *ud, struct cm_error **err) {
        struct put_manifest_req *m = ud;
        _cleanup_free_ char *url = NULL, *ct = NULL;
        if (registry_url(e->base, c->repository, "manifests", m->reference, &url) < 0)
                return cm_error_set(err, CM_EINVALID, "invalid reference '%s'", m->reference);
        if (asprintf(&ct, "Content-Type: %s", m->media_type) < 0)
                return cm_error_set(err, ENOMEM, "out of memory");
        struct xfer x = {.method = "PUT", .url = url, .extra_header = ct, .body = m->data, .body_len = m->len,
                         .body_fd = -1, .max_buf = ERROR_BODY_MAX, .expected_size = -1};
        int r = request(c, e, &x, err);
        if (r >= 0 && x.status != 201 && x.status != 200 && x.status != 204)
                r = status_error(e, &x, "manifest", err);
        xfer_done(&x);
        return r;
}

int registry_put_manifest(struct registry_client *c, const char *reference, const char *media_type, const void *data,
                          size_t len, struct cm_error **err) {
        if (!media_type || !*media_type || strpbrk(media_type, "\r\n"))
                return cm_error_set(err, CM_EINVALID, "manifest without a media type");
        struct put_manifest_req m = {.reference = reference, .media_type = media_type, .data = data, .len = len};
        return with_endpoints(c, put_manifest_ep, &m, false, err);
}

/* ---- login ---- */

int registry_login_check(const char *host, const char *user, const char *password, const struct registry_options *ro,
                         struct cm_error **err) {
        _cleanup_registry_client_ struct registry_client *c = NULL;
        int r = client_alloc(ro, &c);
        if (r < 0)
                return cm_error_set(err, -r, "cannot set up HTTP client: %s", strerror(-r));

        _cleanup_free_ char *base = NULL, *up = NULL, *url = NULL;
        if (registry_base_url(host, ro ? ro->insecure : NULL, &base) < 0)
                return cm_error_set(err, CM_EINVALID, "invalid registry name '%s'", host);
        r = endpoint_add(c, base, false, is_docker_hub(host) ? "docker.io" : host, NULL, err);
        if (r < 0)
                return cm_error_set(err, -r, "registry %s: %s", host, strerror(-r));
        struct endpoint *e = &c->eps[0];
        if (asprintf(&up, "%s:%s", user, password) < 0 || !(e->basic = base64_encode(up, strlen(up))) ||
            asprintf(&url, "%s/v2/", e->base) < 0)
                return cm_error_set(err, ENOMEM, "out of memory");

        /* Unauthenticated ping; on 401 request() authenticates the registry's way (token
         * endpoint with the credentials, or Basic) and asks again. */
        struct xfer x = {.method = "GET", .url = url, .body_fd = -1, .max_buf = ERROR_BODY_MAX, .expected_size = -1};
        struct cm_error *e_err = NULL;
        r = request(c, e, &x, &e_err);
        if (r >= 0) {
                if (x.status == 200)
                        r = 0;
                else if (x.status == 401 || x.status == 403)
                        r = cm_error_set(&e_err, CM_EPERM, "x");
                else if (x.status == 404)
                        r = cm_error_set(&e_err, CM_EREGISTRY, "%s is not a registry (no /v2/ API)", e->base);
                else
                        r = status_error(e, &x, "registry", &e_err);
        }
        xfer_done(&x);
        if (r < 0 && e_err && e_err->code == CM_EPERM) {
                cm_error_free(e_err);
                return cm_error_set(err, CM_EPERM, "login to %s: invalid username or password", host);
        }
        if (r < 0) {
                if (err && !*err)
                        *err = e_err;
                else
                        cm_error_free(e_err);
        }
        return r;
}
