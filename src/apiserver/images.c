/* image.* and registry.* methods. Files (load, save, import) arrive as fds opened by the
 * caller with the caller's own permissions: the apiserver never opens a path a user names. */
#include <fcntl.h>
#include <limits.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "image/ref.h"
#include "image/registry.h"
#include "server.h"
#include "util/fs.h"
#include "util/json.h"
#include "util/strv.h"

static int need_str(json_t *params, const char *key, const char **ret, struct cm_error **err) {
        const char *v = param_str(params, key);
        if (!v || !*v)
                return cm_error_set(err, CM_EUSAGE, "missing parameter '%s'", key);
        *ret = v;
        return 0;
}

static int need_fd(struct request *req, struct cm_error **err) {
        if (req->n_fds < 1 || req->fds[0] < 0)
                return cm_error_set(err, CM_EUSAGE, "this request needs a file descriptor");
        return req->fds[0];
}

static int m_pull(struct request *req, json_t *params, json_t **ret, struct cm_error **err) {
        const char *ref = NULL;
        int r = need_str(params, "reference", &ref, err);
        if (r < 0)
                return r;
        struct registry_options ro;
        char *auth = NULL;
        request_registry_options(req, &ro, &auth);
        struct pull_options po = {
                .platform = param_str(params, "platform"),
                .progress = json_is_true(json_object_get(params, "progress")) ? request_progress : NULL,
                .userdata = req,
        };
        _cleanup_free_ char *name = NULL;
        char digest[DIGEST_STR_MAX] = "";
        time_t op = image_store_op_begin(req->srv->store);
        r = image_pull(req->srv->store, &ro, ref, &po, &name, digest, err);
        image_store_op_end(req->srv->store, op, r < 0);
        registry_options_done(&ro, auth);
        if (r < 0)
                return r;
        *ret = json_pack("{s:s,s:s}", "name", name, "digest", digest);
        return 0;
}

static int m_push(struct request *req, json_t *params, json_t **ret, struct cm_error **err) {
        const char *src = NULL;
        int r = need_str(params, "reference", &src, err);
        if (r < 0)
                return r;
        const char *dst = param_str(params, "destination");
        struct registry_options ro;
        char *auth = NULL;
        request_registry_options(req, &ro, &auth);
        r = image_push(req->srv->store, &ro, src, dst ? dst : src,
                       json_is_true(json_object_get(params, "progress")) ? request_progress : NULL, req, err);
        registry_options_done(&ro, auth);
        if (r < 0)
                return r;
        *ret = json_pack("{s:s}", "destination", dst ? dst : src);
        return 0;
}

static int m_list(struct request *req, json_t *params, json_t **ret, struct cm_error **err) {
        return image_list(req->srv->store, ret, err);
}

static int m_inspect(struct request *req, json_t *params, json_t **ret, struct cm_error **err) {
        const char *ref = NULL;
        int r = need_str(params, "reference", &ref, err);
        if (r < 0)
                return r;
        return image_inspect(req->srv->store, ref, ret, err);
}

static int m_rm(struct request *req, json_t *params, json_t **ret, struct cm_error **err) {
        const char *ref = NULL;
        int r = need_str(params, "reference", &ref, err);
        if (r < 0)
                return r;
        r = image_remove(req->srv->store, ref, err);
        if (r < 0)
                return r;
        *ret = json_pack("{s:s}", "removed", ref);
        return 0;
}

static int m_tag(struct request *req, json_t *params, json_t **ret, struct cm_error **err) {
        const char *src = NULL, *dst = NULL;
        int r = need_str(params, "source", &src, err);
        if (r >= 0)
                r = need_str(params, "target", &dst, err);
        if (r < 0)
                return r;
        r = image_tag(req->srv->store, src, dst, err);
        if (r < 0)
                return r;
        *ret = json_pack("{s:s,s:s}", "source", src, "target", dst);
        return 0;
}

static int m_load(struct request *req, json_t *params, json_t **ret, struct cm_error **err) {
        int fd = need_fd(req, err);
        if (fd < 0)
                return fd;
        json_t *names = NULL;
        time_t op = image_store_op_begin(req->srv->store);
        int r = image_load(req->srv->store, fd, &names, err);
        image_store_op_end(req->srv->store, op, r < 0);
        if (r < 0)
                return r;
        *ret = json_pack("{s:o}", "names", names);
        return 0;
}

static int m_save(struct request *req, json_t *params, json_t **ret, struct cm_error **err) {
        int fd = need_fd(req, err);
        if (fd < 0)
                return fd;
        _cleanup_strv_ char **refs = json_to_strv(json_object_get(params, "references"));
        if (!refs || !refs[0])
                return cm_error_set(err, CM_EUSAGE, "save needs at least one image");
        int r = image_save(req->srv->store, (const char *const *)refs, strv_length(refs), fd, err);
        if (r < 0)
                return r;
        *ret = json_pack("{s:i}", "images", (int)strv_length(refs));
        return 0;
}

static int m_import(struct request *req, json_t *params, json_t **ret, struct cm_error **err) {
        const char *ref = NULL;
        int r = need_str(params, "reference", &ref, err);
        if (r < 0)
                return r;
        int fd = need_fd(req, err);
        if (fd < 0)
                return fd;
        char digest[DIGEST_STR_MAX] = "";
        time_t op = image_store_op_begin(req->srv->store);
        r = image_import(req->srv->store, fd, ref, digest, err);
        image_store_op_end(req->srv->store, op, r < 0);
        if (r < 0)
                return r;
        *ret = json_pack("{s:s,s:s}", "name", ref, "digest", digest);
        return 0;
}

/* ---- registry credentials, stored per calling uid, 0600 ---- */

static char *auth_path(struct request *req) {
        char *p = NULL;
        if (asprintf(&p, "%s/auth/%u.json", req->srv->root, (unsigned)req->uid) < 0)
                return NULL;
        return p;
}

static int auth_update(struct request *req, const char *host, const char *b64, struct cm_error **err) {
        char dir[PATH_MAX];
        snprintf(dir, sizeof dir, "%s/auth", req->srv->root);
        int r = fs_mkdir_p(AT_FDCWD, dir, 0700);
        if (r < 0)
                return cm_error_set(err, -r, "cannot create %s: %s", dir, strerror(-r));
        _cleanup_free_ char *path = auth_path(req);
        pthread_mutex_lock(&req->srv->lock);
        _cleanup_free_ char *data = NULL;
        size_t len = 0;
        json_t *doc = NULL;
        if (fs_read_all(AT_FDCWD, path, 1 << 20, &data, &len) >= 0)
                doc = json_loadb(data, len, 0, NULL);
        if (!json_is_object(doc)) {
                json_decref(doc);
                doc = json_object();
        }
        json_t *auths = json_object_get(doc, "auths");
        if (!json_is_object(auths)) {
                auths = json_object();
                json_object_set_new(doc, "auths", auths);
        }
        if (b64)
                json_object_set_new(auths, host, json_pack("{s:s}", "auth", b64));
        else if (json_object_del(auths, host) < 0) {
                pthread_mutex_unlock(&req->srv->lock);
                json_decref(doc);
                return cm_error_set(err, CM_ENOTFOUND, "not logged in to %s", host);
        }
        _cleanup_free_ char *s = json_dumps(doc, JSON_INDENT(2) | JSON_SORT_KEYS);
        json_decref(doc);
        r = s ? fs_write_atomic(AT_FDCWD, path, s, strlen(s), 0600) : -ENOMEM;
        pthread_mutex_unlock(&req->srv->lock);
        if (r < 0)
                return cm_error_set(err, -r, "cannot write %s: %s", path, strerror(-r));
        return 0;
}

static int m_login(struct request *req, json_t *params, json_t **ret, struct cm_error **err) {
        const char *server = NULL, *user = NULL, *pass = NULL;
        int r = need_str(params, "server", &server, err);
        if (r >= 0)
                r = need_str(params, "username", &user, err);
        if (r >= 0)
                r = need_str(params, "password", &pass, err);
        if (r < 0)
                return r;
        if (strchr(user, ':'))
                return cm_error_set(err, CM_EINVALID, "user names cannot contain ':'");
        struct registry_options ro;
        char *auth = NULL;
        request_registry_options(req, &ro, &auth);
        r = registry_login_check(server, user, pass, &ro, err);
        registry_options_done(&ro, auth);
        if (r < 0)
                return r;
        _cleanup_free_ char *plain = NULL;
        if (asprintf(&plain, "%s:%s", user, pass) < 0)
                return cm_error_set(err, ENOMEM, "out of memory");
        size_t n = strlen(plain);
        _cleanup_free_ unsigned char *b64 = malloc(4 * ((n + 2) / 3) + 1);
        if (!b64)
                return cm_error_set(err, ENOMEM, "out of memory");
        EVP_EncodeBlock(b64, (unsigned char *)plain, (int)n);
        explicit_bzero(plain, n);
        r = auth_update(req, server, (char *)b64, err);
        if (r < 0)
                return r;
        *ret = json_pack("{s:s,s:s}", "server", server, "username", user);
        return 0;
}

static int m_logout(struct request *req, json_t *params, json_t **ret, struct cm_error **err) {
        const char *server = NULL;
        int r = need_str(params, "server", &server, err);
        if (r < 0)
                return r;
        r = auth_update(req, server, NULL, err);
        if (r < 0)
                return r;
        *ret = json_pack("{s:s}", "server", server);
        return 0;
}

const struct method image_methods[] = {
        { "image.pull", m_pull, false },
        { "image.push", m_push, false },
        { "image.list", m_list, false },
        { "image.inspect", m_inspect, false },
        { "image.rm", m_rm, false },
        { "image.tag", m_tag, false },
        { "image.load", m_load, false },
        { "image.save", m_save, false },
        { "image.import", m_import, false },
        { "registry.login", m_login, false },
        { "registry.logout", m_logout, false },
        {},
};
