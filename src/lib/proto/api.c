#include "proto/api.h"

#include <arpa/inet.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>

#include "util/json.h"

static int write_all_msg(int fd, const void *hdr, size_t hlen, const char *body, size_t blen, const int *fds,
                         int n_fds) {
        struct iovec iov[2] = { { (void *)hdr, hlen }, { (void *)body, blen } };
        union {
                char buf[CMSG_SPACE(sizeof(int) * 4)];
                struct cmsghdr align;
        } u;
        struct msghdr mh = { .msg_iov = iov, .msg_iovlen = 2 };
        if (n_fds > 0) {
                if (n_fds > 4)
                        return -EINVAL;
                memset(&u, 0, sizeof u);
                mh.msg_control = u.buf;
                mh.msg_controllen = CMSG_SPACE(sizeof(int) * (size_t)n_fds);
                struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
                c->cmsg_level = SOL_SOCKET;
                c->cmsg_type = SCM_RIGHTS;
                c->cmsg_len = CMSG_LEN(sizeof(int) * (size_t)n_fds);
                memcpy(CMSG_DATA(c), fds, sizeof(int) * (size_t)n_fds);
        }
        size_t total = hlen + blen;
        while (total > 0) {
                ssize_t w = sendmsg(fd, &mh, MSG_NOSIGNAL);
                if (w < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                mh.msg_control = NULL;
                mh.msg_controllen = 0;
                total -= (size_t)w;
                while (w > 0 && mh.msg_iovlen > 0) {
                        if ((size_t)w >= mh.msg_iov[0].iov_len) {
                                w -= (ssize_t)mh.msg_iov[0].iov_len;
                                mh.msg_iov++;
                                mh.msg_iovlen--;
                        } else {
                                mh.msg_iov[0].iov_base = (char *)mh.msg_iov[0].iov_base + w;
                                mh.msg_iov[0].iov_len -= (size_t)w;
                                w = 0;
                        }
                }
        }
        return 0;
}

int api_send_fds(int fd, json_t *msg, const int *fds, int n_fds) {
        _cleanup_free_ char *body = json_dumps(msg, JSON_COMPACT);
        if (!body)
                return -ENOMEM;
        size_t len = strlen(body);
        if (len > API_MAX_FRAME)
                return -EMSGSIZE;
        uint32_t hdr = htonl((uint32_t)len);
        return write_all_msg(fd, &hdr, sizeof hdr, body, len, fds, n_fds);
}

int api_send(int fd, json_t *msg) {
        return api_send_fds(fd, msg, NULL, 0);
}

/* Reads exactly len bytes; collects SCM_RIGHTS fds if any arrive. */
static int read_exact(int fd, void *buf, size_t len, int *fds, int max_fds, int *n_fds) {
        char *p = buf;
        size_t got = 0;
        while (got < len) {
                union {
                        char cbuf[CMSG_SPACE(sizeof(int) * 4)];
                        struct cmsghdr align;
                } u;
                struct iovec iov = { p + got, len - got };
                struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.cbuf,
                                     .msg_controllen = sizeof u.cbuf };
                ssize_t r = recvmsg(fd, &mh, MSG_CMSG_CLOEXEC);
                if (r < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
                        if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
                                continue;
                        int k = (int)((c->cmsg_len - CMSG_LEN(0)) / sizeof(int));
                        int tmp[4];
                        if (k > 4)
                                k = 4;
                        memcpy(tmp, CMSG_DATA(c), sizeof(int) * (size_t)k);
                        for (int i = 0; i < k; i++) {
                                if (fds && n_fds && *n_fds < max_fds)
                                        fds[(*n_fds)++] = tmp[i];
                                else
                                        close(tmp[i]);
                        }
                }
                if (r == 0)
                        return got == 0 ? -ECONNRESET : -EPIPE;
                got += (size_t)r;
        }
        return 0;
}

int api_recv_fds(int fd, json_t **ret, int *fds, int max_fds, int *ret_n_fds) {
        int n = 0;
        for (int i = 0; i < max_fds; i++)
                fds[i] = -1;
        uint32_t hdr;
        int r = read_exact(fd, &hdr, sizeof hdr, fds, max_fds, &n);
        if (r >= 0) {
                uint32_t len = ntohl(hdr);
                if (len == 0 || len > API_MAX_FRAME)
                        r = -EBADMSG;
                else {
                        _cleanup_free_ char *body = malloc(len);
                        if (!body)
                                r = -ENOMEM;
                        else if ((r = read_exact(fd, body, len, fds, max_fds, &n)) >= 0) {
                                json_t *j = json_loadb(body, len, JSON_REJECT_DUPLICATES, NULL);
                                if (!j || !json_is_object(j)) {
                                        json_decref(j);
                                        r = -EBADMSG;
                                } else
                                        *ret = j;
                        }
                }
        }
        if (r < 0)
                for (int i = 0; i < n; i++) {
                        close(fds[i]);
                        fds[i] = -1;
                }
        if (ret_n_fds)
                *ret_n_fds = r < 0 ? 0 : n;
        return r;
}

int api_recv(int fd, json_t **ret) {
        int dummy[1];
        return api_recv_fds(fd, ret, dummy, 0, NULL);
}

int api_decode(const void *buf, size_t len, json_t **ret, size_t *ret_used) {
        if (len < 4)
                return -EAGAIN;
        uint32_t hdr;
        memcpy(&hdr, buf, 4);
        uint32_t n = ntohl(hdr);
        if (n == 0 || n > API_MAX_FRAME)
                return -EBADMSG;
        if (len - 4 < n)
                return -EAGAIN;
        json_t *j = json_loadb((const char *)buf + 4, n, JSON_REJECT_DUPLICATES, NULL);
        if (!j || !json_is_object(j)) {
                json_decref(j);
                return -EBADMSG;
        }
        *ret = j;
        if (ret_used)
                *ret_used = 4 + (size_t)n;
        return 0;
}

int api_parse_request(json_t *msg, const char **ret_method, json_t **ret_params, struct cm_error **err) {
        json_t *v = json_object_get(msg, "version");
        if (!json_is_integer(v))
                return cm_error_set(err, CM_EINVALID, "request without a version");
        if (json_integer_value(v) != API_VERSION)
                return cm_error_set(err, CM_EINVALID, "unsupported API version %lld (this apiserver speaks %d)",
                                    (long long)json_integer_value(v), API_VERSION);
        const char *m = json_get_str(msg, "method");
        if (!m || !*m || strlen(m) > 64)
                return cm_error_set(err, CM_EINVALID, "request without a method");
        json_t *p = json_object_get(msg, "params");
        if (p && !json_is_object(p))
                return cm_error_set(err, CM_EINVALID, "params must be an object");
        *ret_method = m;
        *ret_params = p;
        return 0;
}

json_t *api_request(const char *method, json_t *params) {
        return json_pack("{s:i,s:s,s:o}", "version", API_VERSION, "method", method, "params",
                         params ? params : json_object());
}

json_t *api_ok(json_t *result) {
        return json_pack("{s:b,s:o}", "ok", 1, "result", result ? result : json_null());
}

json_t *api_error(int code, const char *message) {
        if (code < 0)
                code = -code;
        return json_pack("{s:b,s:{s:s,s:i,s:s}}", "ok", 0, "error", "code", cm_error_code_name(code), "errno", code,
                         "message", message ? message : strerror(code));
}

json_t *api_error_from(const struct cm_error *e, int r) {
        if (e)
                return api_error(e->code, e->message);
        return api_error(r, strerror(r < 0 ? -r : r));
}
