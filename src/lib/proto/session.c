#include "proto/session.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "util/json.h"
#include "util/strv.h"

static const char *const type_names[_SESSION_TYPE_MAX] = {
        [SESSION_OPEN] = "OPEN",     [SESSION_STDIN] = "STDIN", [SESSION_STDOUT] = "STDOUT",
        [SESSION_STDERR] = "STDERR", [SESSION_EOF] = "EOF",     [SESSION_RESIZE] = "RESIZE",
        [SESSION_SIGNAL] = "SIGNAL", [SESSION_EXIT] = "EXIT",   [SESSION_CLOSE] = "CLOSE",
        [SESSION_CREDIT] = "CREDIT", [SESSION_ERROR] = "ERROR",
};

const char *session_type_to_string(int type) {
        if (type <= 0 || type >= _SESSION_TYPE_MAX)
                return NULL;
        return type_names[type];
}

static void put_be32(uint8_t *p, uint32_t v) {
        p[0] = (uint8_t)(v >> 24);
        p[1] = (uint8_t)(v >> 16);
        p[2] = (uint8_t)(v >> 8);
        p[3] = (uint8_t)v;
}

/* ---- validation ---- */

static uint32_t max_length(uint8_t type) {
        switch (type) {
        case SESSION_OPEN:
                return SESSION_MAX_OPEN;
        case SESSION_EXIT:
                return SESSION_MAX_EXIT;
        default:
                return SESSION_MAX_DATA;
        }
}

const char *session_frame_check(uint32_t channel, uint8_t type, uint32_t length, const uint8_t *payload) {
        (void)channel;
        if (type == 0 || type >= _SESSION_TYPE_MAX)
                return "unknown frame type";
        if (length > max_length(type))
                return "frame too long";
        if (!payload)
                return NULL; /* header-only check */
        switch (type) {
        case SESSION_OPEN:
        case SESSION_STDIN:
        case SESSION_STDOUT:
        case SESSION_STDERR:
        case SESSION_EXIT:
        case SESSION_ERROR:
                if (length == 0)
                        return "empty frame";
                return NULL;
        case SESSION_EOF:
                if (length != 1)
                        return "EOF frame has the wrong length";
                if (payload[0] > SESSION_STREAM_STDERR)
                        return "EOF frame names no stream";
                return NULL;
        case SESSION_RESIZE:
                return length == 4 ? NULL : "RESIZE frame has the wrong length";
        case SESSION_SIGNAL: {
                if (length != 4)
                        return "SIGNAL frame has the wrong length";
                uint32_t s = session_be32(payload);
                return s >= 1 && s <= 64 ? NULL : "SIGNAL frame names no signal";
        }
        case SESSION_CREDIT: {
                if (length != 4)
                        return "CREDIT frame has the wrong length";
                uint32_t c = session_be32(payload);
                return c >= 1 && c <= SESSION_WINDOW ? NULL : "CREDIT frame out of range";
        }
        case SESSION_CLOSE:
                return length == 0 ? NULL : "CLOSE frame has a payload";
        }
        return "unknown frame type";
}

/* ---- decoder ---- */

void session_decoder_init(struct session_decoder *d, bool pin_channel) {
        *d = (struct session_decoder){.pin_channel = pin_channel};
}

void session_decoder_done(struct session_decoder *d) {
        free(d->buf);
        *d = (struct session_decoder){0};
}

int session_decoder_feed(struct session_decoder *d, const void *data, size_t n) {
        if (d->error)
                return d->error;
        if (n == 0)
                return 0;
        /* A drained decoder holds less than one maximal frame. */
        if (d->len > SESSION_HEADER_SIZE + SESSION_MAX_OPEN || n > (64u << 20))
                return -ENOBUFS;
        if (d->start > 0 && d->start + d->len + n > d->cap) {
                memmove(d->buf, d->buf + d->start, d->len);
                d->start = 0;
        }
        if (d->start + d->len + n > d->cap) {
                size_t want = d->len + n;
                size_t cap = d->cap ? d->cap : 4096;
                while (cap < want)
                        cap *= 2;
                uint8_t *nb = realloc(d->buf, cap);
                if (!nb)
                        return -ENOMEM;
                d->buf = nb;
                d->cap = cap;
        }
        memcpy(d->buf + d->start + d->len, data, n);
        d->len += n;
        return 0;
}

int session_decoder_next(struct session_decoder *d, struct session_frame *ret, const char **ret_reason) {
        const char *reason = NULL;
        if (d->error) {
                reason = "stream already invalid";
                goto fail;
        }
        if (d->len < SESSION_HEADER_SIZE) {
                if (d->len == 0 && d->cap > (256u << 10)) {
                        /* give back the memory of a big OPEN */
                        free(d->buf);
                        d->buf = NULL;
                        d->cap = d->start = 0;
                }
                return 0;
        }
        const uint8_t *h = d->buf + d->start;
        uint32_t channel = session_be32(h);
        uint8_t type = h[4];
        uint32_t length = session_be32(h + 5);
        reason = session_frame_check(channel, type, length, NULL);
        if (reason)
                goto fail;
        if (d->pin_channel) {
                if (d->channel == 0 && channel != 0)
                        d->channel = channel;
                if (channel == 0 || channel != d->channel) {
                        reason = "frame on the wrong channel";
                        goto fail;
                }
        }
        if (d->len - SESSION_HEADER_SIZE < length)
                return 0;
        reason = session_frame_check(channel, type, length, h + SESSION_HEADER_SIZE);
        if (reason)
                goto fail;
        *ret = (struct session_frame){
                .channel = channel,
                .type = type,
                .length = length,
                .payload = h + SESSION_HEADER_SIZE,
        };
        d->start += SESSION_HEADER_SIZE + length;
        d->len -= SESSION_HEADER_SIZE + length;
        if (d->len == 0)
                d->start = 0;
        return 1;
fail:
        d->error = -EBADMSG;
        if (ret_reason)
                *ret_reason = reason;
        return -EBADMSG;
}

/* ---- encoder ---- */

void session_buf_done(struct session_buf *b) {
        free(b->data);
        *b = (struct session_buf){0};
}

static int buf_reserve(struct session_buf *b, size_t n) {
        if (b->start > 0 && (b->len == 0 || b->start + b->len + n > b->cap)) {
                memmove(b->data, b->data + b->start, b->len);
                b->start = 0;
        }
        if (b->start + b->len + n <= b->cap)
                return 0;
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->len + n)
                cap *= 2;
        uint8_t *nd = realloc(b->data, cap);
        if (!nd)
                return -ENOMEM;
        b->data = nd;
        b->cap = cap;
        return 0;
}

int session_buf_frame(struct session_buf *b, uint32_t channel, uint8_t type, const void *payload, size_t n) {
        if (type == 0 || type >= _SESSION_TYPE_MAX || n > max_length(type))
                return -EINVAL;
        int r = buf_reserve(b, SESSION_HEADER_SIZE + n);
        if (r < 0)
                return r;
        uint8_t *p = b->data + b->start + b->len;
        put_be32(p, channel);
        p[4] = type;
        put_be32(p + 5, (uint32_t)n);
        if (n)
                memcpy(p + SESSION_HEADER_SIZE, payload, n);
        b->len += SESSION_HEADER_SIZE + n;
        return 0;
}

int session_buf_eof(struct session_buf *b, uint32_t channel, enum session_stream s) {
        uint8_t v = (uint8_t)s;
        return session_buf_frame(b, channel, SESSION_EOF, &v, 1);
}

int session_buf_resize(struct session_buf *b, uint32_t channel, unsigned rows, unsigned cols) {
        if (rows > 0xffff)
                rows = 0xffff;
        if (cols > 0xffff)
                cols = 0xffff;
        uint8_t p[4] = {(uint8_t)(rows >> 8), (uint8_t)rows, (uint8_t)(cols >> 8), (uint8_t)cols};
        return session_buf_frame(b, channel, SESSION_RESIZE, p, sizeof p);
}

int session_buf_u32(struct session_buf *b, uint32_t channel, uint8_t type, uint32_t v) {
        uint8_t p[4];
        put_be32(p, v);
        return session_buf_frame(b, channel, type, p, sizeof p);
}

int session_buf_json(struct session_buf *b, uint32_t channel, uint8_t type, json_t *j) {
        _cleanup_free_ char *s = json_dumps(j, JSON_COMPACT);
        if (!s)
                return -ENOMEM;
        return session_buf_frame(b, channel, type, s, strlen(s));
}

int session_buf_exit(struct session_buf *b, uint32_t channel, int status) {
        char s[32];
        int n = snprintf(s, sizeof s, "{\"status\":%d}", status);
        return session_buf_frame(b, channel, SESSION_EXIT, s, (size_t)n);
}

int session_buf_error(struct session_buf *b, uint32_t channel, const char *code, const char *message) {
        json_auto_t *j = json_pack("{s:s,s:s}", "code", code ? code : "error", "message", message ? message : "");
        if (!j)
                return -ENOMEM;
        _cleanup_free_ char *s = json_dumps(j, JSON_COMPACT);
        if (!s)
                return -ENOMEM;
        size_t n = strlen(s);
        if (n > SESSION_MAX_DATA)
                return session_buf_error(b, channel, code, "error message too long");
        return session_buf_frame(b, channel, SESSION_ERROR, s, n);
}

int session_buf_flush(struct session_buf *b, int fd) {
        while (b->len > 0) {
                ssize_t w = send(fd, b->data + b->start, b->len, MSG_NOSIGNAL);
                if (w < 0 && errno == ENOTSOCK)
                        w = write(fd, b->data + b->start, b->len);
                if (w < 0) {
                        if (errno == EINTR)
                                continue;
                        return errno == EWOULDBLOCK ? -EAGAIN : -errno;
                }
                b->start += (size_t)w;
                b->len -= (size_t)w;
        }
        b->start = 0;
        return 0;
}

int session_send(int fd, uint32_t channel, uint8_t type, const void *payload, size_t n) {
        struct session_buf b = {0};
        int r = session_buf_frame(&b, channel, type, payload, n);
        if (r >= 0)
                r = session_buf_flush(&b, fd);
        session_buf_done(&b);
        return r;
}

/* ---- credit ---- */

void session_credit_init(struct session_credit *c) {
        *c = (struct session_credit){.send = SESSION_WINDOW, .recv = SESSION_WINDOW};
}

int session_credit_on_data(struct session_credit *c, size_t n) {
        if (n > c->recv)
                return -EBADMSG;
        c->recv -= (uint32_t)n;
        return 0;
}

uint32_t session_credit_on_consumed(struct session_credit *c, size_t n) {
        /* Never more than was received: recv + consumed + unconsumed == WINDOW. */
        if (n > SESSION_WINDOW - c->recv - c->consumed)
                n = SESSION_WINDOW - c->recv - c->consumed;
        c->consumed += (uint32_t)n;
        /* Batch grants; a quarter window keeps the sender busy while the grant travels. */
        if (c->consumed < SESSION_WINDOW / 4 && c->recv > 0)
                return 0;
        uint32_t g = c->consumed;
        c->consumed = 0;
        c->recv += g;
        return g;
}

int session_credit_on_grant(struct session_credit *c, uint32_t n) {
        if (n == 0 || n > SESSION_WINDOW - c->send)
                return -EBADMSG;
        c->send += n;
        return 0;
}

void session_credit_on_sent(struct session_credit *c, size_t n) {
        c->send = n > c->send ? 0 : c->send - (uint32_t)n;
}

/* ---- sequencing ---- */

void session_channel_init(struct session_channel *ch, enum session_role role) {
        *ch = (struct session_channel){.role = role};
        session_credit_init(&ch->credit);
}

int session_channel_receive(struct session_channel *ch, const struct session_frame *f, const char **ret_reason) {
        const char *reason = NULL;
        bool server = ch->role == SESSION_ROLE_SERVER;

        if (ch->closed) {
                reason = "frame after CLOSE";
                goto fail;
        }
        if (server && !ch->opened && f->type != SESSION_OPEN && f->type != SESSION_CLOSE) {
                reason = "frame before OPEN";
                goto fail;
        }
        switch (f->type) {
        case SESSION_OPEN:
                if (!server || ch->opened) {
                        reason = "unexpected OPEN";
                        goto fail;
                }
                ch->opened = true;
                return 0;
        case SESSION_STDIN:
        case SESSION_STDOUT:
        case SESSION_STDERR: {
                enum session_stream s = (enum session_stream)(f->type - SESSION_STDIN);
                if (server != (s == SESSION_STREAM_STDIN)) {
                        reason = "data frame in the wrong direction";
                        goto fail;
                }
                if (ch->eof[s] || ch->exited) {
                        reason = "data after EOF";
                        goto fail;
                }
                if (session_credit_on_data(&ch->credit, f->length) < 0) {
                        reason = "data beyond the granted credit";
                        goto fail;
                }
                return 0;
        }
        case SESSION_EOF: {
                uint8_t s = f->payload[0];
                if (server != (s == SESSION_STREAM_STDIN)) {
                        reason = "EOF in the wrong direction";
                        goto fail;
                }
                if (ch->eof[s] || ch->exited) {
                        reason = "EOF twice";
                        goto fail;
                }
                ch->eof[s] = true;
                return 0;
        }
        case SESSION_RESIZE:
        case SESSION_SIGNAL:
                if (!server) {
                        reason = "control frame in the wrong direction";
                        goto fail;
                }
                return 0;
        case SESSION_EXIT:
                if (server || ch->exited) {
                        reason = "unexpected EXIT";
                        goto fail;
                }
                ch->exited = true;
                return 0;
        case SESSION_ERROR:
                if (server) {
                        reason = "unexpected ERROR";
                        goto fail;
                }
                ch->exited = true;
                return 0;
        case SESSION_CREDIT:
                if (session_credit_on_grant(&ch->credit, session_be32(f->payload)) < 0) {
                        reason = "credit beyond the window";
                        goto fail;
                }
                return 0;
        case SESSION_CLOSE:
                ch->closed = true;
                return 0;
        }
        reason = "unknown frame type";
fail:
        if (ret_reason)
                *ret_reason = reason;
        return -EBADMSG;
}

/* ---- JSON payloads ---- */

void session_open_free(struct session_open *o) {
        if (!o)
                return;
        strv_free(o->argv);
        strv_free(o->env);
        free(o->cwd);
        free(o->workdir);
        free(o->user);
        free(o);
}

static int opt_string(json_t *j, const char *key, char **ret, struct cm_error **err) {
        json_t *v = json_object_get(j, key);
        if (!v || json_is_null(v))
                return 0;
        if (!json_is_string(v) || json_string_length(v) == 0 || json_string_length(v) > 4096)
                return cm_error_set(err, CM_EINVALID, "OPEN: \"%s\" must be a non-empty string", key);
        if (strlen(json_string_value(v)) != json_string_length(v))
                return cm_error_set(err, CM_EINVALID, "OPEN: \"%s\" contains NUL", key);
        *ret = strdup(json_string_value(v));
        return *ret ? 0 : -ENOMEM;
}

static int opt_bool(json_t *j, const char *key, bool *ret, struct cm_error **err) {
        json_t *v = json_object_get(j, key);
        if (!v || json_is_null(v))
                return 0;
        if (!json_is_boolean(v))
                return cm_error_set(err, CM_EINVALID, "OPEN: \"%s\" must be true or false", key);
        *ret = json_is_true(v);
        return 0;
}

static int opt_uint(json_t *j, const char *key, uint64_t max, bool *has, uint64_t *ret, struct cm_error **err) {
        json_t *v = json_object_get(j, key);
        if (!v || json_is_null(v))
                return 0;
        if (!json_is_integer(v) || json_integer_value(v) < 0 || (uint64_t)json_integer_value(v) > max)
                return cm_error_set(err, CM_EINVALID, "OPEN: \"%s\" must be an integer from 0 to %llu", key,
                                    (unsigned long long)max);
        if (has)
                *has = true;
        *ret = (uint64_t)json_integer_value(v);
        return 0;
}

static bool env_key_valid(const char *k) {
        if (!*k)
                return false;
        for (const char *p = k; *p; p++)
                if (*p == '=')
                        return false;
        return true;
}

/* Appends K=V, replacing an earlier K in place so the last value wins. */
static int env_set(char ***env, const char *key, const char *value) {
        char *kv = NULL;
        if (asprintf(&kv, "%s=%s", key, value) < 0)
                return -ENOMEM;
        size_t kl = strlen(key);
        for (char **e = *env; e && *e; e++)
                if (strncmp(*e, key, kl) == 0 && (*e)[kl] == '=') {
                        free(*e);
                        *e = kv;
                        return 0;
                }
        return strv_consume(env, kv);
}

static int parse_env(json_t *v, char ***ret, struct cm_error **err) {
        _cleanup_strv_ char **env = NULL;
        if (!v || json_is_null(v))
                return 0;
        if (json_is_object(v)) {
                const char *k;
                json_t *val;
                json_object_foreach(v, k, val) {
                        if (!env_key_valid(k) || !json_is_string(val) ||
                            strlen(json_string_value(val)) != json_string_length(val))
                                return cm_error_set(err, CM_EINVALID, "OPEN: invalid environment entry");
                        if (env_set(&env, k, json_string_value(val)) < 0)
                                return -ENOMEM;
                }
        } else if (json_is_array(v)) {
                size_t i;
                json_t *e;
                json_array_foreach(v, i, e) {
                        const char *s = json_string_value(e);
                        const char *eq = s ? strchr(s, '=') : NULL;
                        if (!eq || eq == s || strlen(s) != json_string_length(e))
                                return cm_error_set(err, CM_EINVALID, "OPEN: invalid environment entry");
                        _cleanup_free_ char *k = strndup(s, (size_t)(eq - s));
                        if (!k || env_set(&env, k, eq + 1) < 0)
                                return -ENOMEM;
                }
        } else
                return cm_error_set(err, CM_EINVALID, "OPEN: \"env\" must be an object");
        *ret = TAKE_PTR(env);
        return 0;
}

int session_open_parse(const void *payload, size_t n, struct session_open **ret, struct cm_error **err) {
        _cleanup_free_ char *perr = NULL;
        json_auto_t *j = json_parse_buf(payload, n, &perr);
        if (!j)
                return cm_error_set(err, CM_EINVALID, "OPEN: %s", perr ? perr : "invalid JSON");
        if (!json_is_object(j))
                return cm_error_set(err, CM_EINVALID, "OPEN: not a JSON object");
        _cleanup_session_open_ struct session_open *o = calloc(1, sizeof *o);
        if (!o)
                return -ENOMEM;
        int r;

        json_t *control = json_object_get(j, "control");
        if (control) {
                const char *c = json_string_value(control);
                if (c && streq(c, "stop")) {
                        uint64_t t = 10;
                        r = opt_uint(j, "timeout", 3600, NULL, &t, err);
                        if (r < 0)
                                return r;
                        o->kind = SESSION_OPEN_STOP;
                        o->timeout = (unsigned)t;
                } else if (c && streq(c, "status"))
                        o->kind = SESSION_OPEN_STATUS;
                else
                        return cm_error_set(err, CM_EINVALID, "OPEN: unknown control request");
                *ret = TAKE_PTR(o);
                return 0;
        }

        o->kind = SESSION_OPEN_EXEC;
        json_t *argv = json_object_get(j, "argv");
        if (argv && !json_is_null(argv)) {
                if (!json_is_array(argv) || json_array_size(argv) == 0)
                        return cm_error_set(err, CM_EINVALID, "OPEN: \"argv\" must be a non-empty array of strings");
                size_t i;
                json_t *a;
                json_array_foreach(argv, i, a) {
                        if (!json_is_string(a) || strlen(json_string_value(a)) != json_string_length(a))
                                return cm_error_set(err, CM_EINVALID, "OPEN: \"argv\" must hold strings");
                }
                if (json_string_length(json_array_get(argv, 0)) == 0)
                        return cm_error_set(err, CM_EINVALID, "OPEN: empty command");
                o->argv = json_to_strv(argv);
                if (!o->argv)
                        return -ENOMEM;
        }
        r = parse_env(json_object_get(j, "env"), &o->env, err);
        if (r < 0)
                return r;
        if ((r = opt_string(j, "cwd", &o->cwd, err)) < 0 || (r = opt_string(j, "workdir", &o->workdir, err)) < 0 ||
            (r = opt_string(j, "user", &o->user, err)) < 0 || (r = opt_bool(j, "root", &o->root, err)) < 0 ||
            (r = opt_bool(j, "tty", &o->tty, err)) < 0)
                return r;
        uint64_t v = 0;
        if ((r = opt_uint(j, "uid", UINT32_MAX - 1, &o->has_uid, &v, err)) < 0)
                return r;
        o->uid = (uid_t)v;
        v = 0;
        if ((r = opt_uint(j, "gid", UINT32_MAX - 1, &o->has_gid, &v, err)) < 0)
                return r;
        o->gid = (gid_t)v;
        v = 0;
        if ((r = opt_uint(j, "rows", 0xffff, NULL, &v, err)) < 0)
                return r;
        o->rows = (unsigned)v;
        v = 0;
        if ((r = opt_uint(j, "cols", 0xffff, NULL, &v, err)) < 0)
                return r;
        o->cols = (unsigned)v;
        *ret = TAKE_PTR(o);
        return 0;
}

int session_exit_parse(const void *payload, size_t n, int *ret_status, json_t **ret_obj) {
        json_auto_t *j = json_parse_buf(payload, n, NULL);
        json_t *s = j ? json_object_get(j, "status") : NULL;
        if (!json_is_integer(s) || json_integer_value(s) < 0 || json_integer_value(s) > 255)
                return -EBADMSG;
        *ret_status = (int)json_integer_value(s);
        if (ret_obj)
                *ret_obj = TAKE_PTR(j);
        return 0;
}

int session_error_parse(const void *payload, size_t n, char **ret_code, char **ret_message) {
        json_auto_t *j = json_parse_buf(payload, n, NULL);
        const char *m = j ? json_get_str(j, "message") : NULL;
        const char *c = j ? json_get_str(j, "code") : NULL;
        if (!m)
                return -EBADMSG;
        _cleanup_free_ char *cc = strdup(c ? c : "error"), *mm = strdup(m);
        if (!cc || !mm)
                return -ENOMEM;
        if (ret_code)
                *ret_code = TAKE_PTR(cc);
        if (ret_message)
                *ret_message = TAKE_PTR(mm);
        return 0;
}

int session_status_from_wait(int wstatus) {
        if (WIFEXITED(wstatus))
                return WEXITSTATUS(wstatus);
        if (WIFSIGNALED(wstatus))
                return 128 + WTERMSIG(wstatus);
        return 255;
}

/* ---- control client ---- */

int session_connect(const char *socket_path) {
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        if (strlen(socket_path) >= sizeof sa.sun_path)
                return -ENAMETOOLONG;
        strcpy(sa.sun_path, socket_path);
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return -errno;
        if (connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
                int r = -errno;
                close(fd);
                return r;
        }
        return fd;
}

static int64_t now_ms(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int code_from_name(const char *c) {
        static const int codes[] = {CM_ENOTFOUND, CM_EINVALID, CM_EPERM, CM_EEXISTS, CM_EINTERNAL};
        for (size_t i = 0; i < ELEMENTSOF(codes); i++)
                if (streq(c, cm_error_code_name(codes[i])))
                        return codes[i];
        return EREMOTEIO;
}

int session_control(const char *socket_path, const char *op, unsigned timeout_sec, int wait_ms, json_t **ret,
                    struct cm_error **err) {
        _cleanup_close_ int fd = session_connect(socket_path);
        if (fd < 0)
                return cm_error_set(err, -fd, "connect to %s: %s", socket_path, strerror(-fd));
        json_auto_t *req = streq(op, "stop") ? json_pack("{s:s,s:I}", "control", op, "timeout", (json_int_t)timeout_sec)
                                             : json_pack("{s:s}", "control", op);
        if (!req)
                return -ENOMEM;
        _cleanup_free_ char *s = json_dumps(req, JSON_COMPACT);
        if (!s)
                return -ENOMEM;
        int r = session_send(fd, SESSION_CHANNEL_DEFAULT, SESSION_OPEN, s, strlen(s));
        /* EPIPE/ECONNRESET: the runtime refused us and hung up; its ERROR frame is still to read */
        if (r < 0 && r != -EPIPE && r != -ECONNRESET)
                return cm_error_set(err, -r, "send to %s: %s", socket_path, strerror(-r));

        struct session_decoder d;
        session_decoder_init(&d, true);
        int64_t deadline = wait_ms < 0 ? -1 : now_ms() + wait_ms;
        for (;;) {
                struct session_frame f;
                const char *why = NULL;
                r = session_decoder_next(&d, &f, &why);
                if (r < 0) {
                        r = cm_error_set(err, EBADMSG, "%s: invalid reply: %s", socket_path, why);
                        break;
                }
                if (r > 0) {
                        if (f.type == SESSION_EXIT) {
                                int status;
                                json_t *obj = NULL;
                                if (session_exit_parse(f.payload, f.length, &status, &obj) < 0) {
                                        r = cm_error_set(err, EBADMSG, "%s: invalid reply", socket_path);
                                        break;
                                }
                                if (ret)
                                        *ret = obj;
                                else
                                        json_decref(obj);
                                r = 0;
                                break;
                        }
                        if (f.type == SESSION_ERROR) {
                                _cleanup_free_ char *code = NULL, *msg = NULL;
                                if (session_error_parse(f.payload, f.length, &code, &msg) < 0)
                                        r = cm_error_set(err, EBADMSG, "%s: invalid reply", socket_path);
                                else
                                        r = cm_error_set(err, code_from_name(code), "%s", msg);
                                break;
                        }
                        continue; /* CREDIT and the like */
                }
                int tmo = -1;
                if (deadline >= 0) {
                        int64_t left = deadline - now_ms();
                        if (left <= 0) {
                                r = cm_error_set(err, ETIMEDOUT, "%s: no reply", socket_path);
                                break;
                        }
                        tmo = (int)left;
                }
                struct pollfd p = {.fd = fd, .events = POLLIN};
                int pr = poll(&p, 1, tmo);
                if (pr < 0 && errno != EINTR) {
                        r = -errno;
                        break;
                }
                if (pr <= 0)
                        continue;
                uint8_t buf[16384];
                ssize_t n = read(fd, buf, sizeof buf);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n <= 0) {
                        r = cm_error_set(err, ECONNRESET, "%s: connection closed without a reply", socket_path);
                        break;
                }
                r = session_decoder_feed(&d, buf, (size_t)n);
                if (r < 0) {
                        r = cm_error_set(err, -r, "%s: %s", socket_path, strerror(-r));
                        break;
                }
        }
        session_decoder_done(&d);
        return r;
}

/* ---- policy helpers ---- */

static bool has_dot_component(const char *p) {
        for (const char *c = p; *c;) {
                while (*c == '/')
                        c++;
                const char *e = strchrnul(c, '/');
                size_t l = (size_t)(e - c);
                if ((l == 1 && c[0] == '.') || (l == 2 && c[0] == '.' && c[1] == '.'))
                        return true;
                c = e;
        }
        return false;
}

bool session_path_inside(const char *path, const char *dir) {
        if (!path || !dir || path[0] != '/' || dir[0] != '/')
                return false;
        if (has_dot_component(path) || has_dot_component(dir))
                return false;
        /* compare component by component, ignoring repeated and trailing slashes */
        const char *p = path, *d = dir;
        for (;;) {
                while (*p == '/')
                        p++;
                while (*d == '/')
                        d++;
                if (!*d)
                        return true;
                const char *pe = strchrnul(p, '/'), *de = strchrnul(d, '/');
                if (pe - p != de - d || memcmp(p, d, (size_t)(pe - p)) != 0)
                        return false;
                p = pe;
                d = de;
        }
}

char **session_exec_env(const char *home, const char *user, const char *shell, char *const *extra) {
        _cleanup_strv_ char **env = NULL;
        if (env_set(&env, "HOME", home) < 0 || env_set(&env, "USER", user) < 0 || env_set(&env, "LOGNAME", user) < 0 ||
            env_set(&env, "SHELL", shell) < 0 || env_set(&env, "PATH", SESSION_PATH) < 0)
                return NULL;
        for (char *const *e = extra; e && *e; e++) {
                const char *eq = strchr(*e, '=');
                if (!eq || eq == *e)
                        continue;
                _cleanup_free_ char *k = strndup(*e, (size_t)(eq - *e));
                if (!k || env_set(&env, k, eq + 1) < 0)
                        return NULL;
        }
        return TAKE_PTR(env);
}
