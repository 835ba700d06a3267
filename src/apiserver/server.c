/* Connection handling: one thread per connection, one request per connection, the caller's
 * identity from SO_PEERCRED. */
#include "server.h"

#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include "proto/api.h"
#include "util/config.h"
#include "util/json.h"
#include "util/strv.h"

static const struct method *find_method(const char *name) {
        const struct method *tables[] = { system_methods, image_methods, machine_methods };
        for (size_t t = 0; t < ELEMENTSOF(tables); t++)
                for (const struct method *m = tables[t]; m->name; m++)
                        if (streq(m->name, name))
                                return m;
        return NULL;
}

void request_event(struct request *req, json_t *ev) {
        if (req->fd >= 0 && api_send(req->fd, ev) < 0)
                fprintf(stderr, "apiserver: client went away while sending an event\n");
        json_decref(ev);
}

const char *param_str(json_t *params, const char *key) {
        return json_get_str(params, key);
}

void request_progress(void *userdata, const char *id, const char *status, uint64_t current, uint64_t total) {
        struct request *req = userdata;
        request_event(req, json_pack("{s:s,s:s,s:s,s:I,s:I}", "event", "progress", "id", id ? id : "", "status",
                                     status ? status : "", "current", (json_int_t)current, "total",
                                     (json_int_t)total));
}

void request_registry_options(struct request *req, struct registry_options *ret, char **ret_auth_path) {
        struct server *srv = req->srv;
        memset(ret, 0, sizeof *ret);
        pthread_mutex_lock(&srv->lock);
        json_t *m = cm_config_get(srv->config, "registry.mirrors");
        json_t *i = cm_config_get(srv->config, "registry.insecure");
        json_t *t = cm_config_get(srv->config, "registry.timeout");
        pthread_mutex_unlock(&srv->lock);
        ret->mirrors = json_to_strv(m);
        ret->insecure = json_to_strv(i);
        ret->timeout_sec = json_is_integer(t) ? (long)json_integer_value(t) : 30;
        ret->user_agent = "container-machine/" CM_VERSION;
        json_decref(m);
        json_decref(i);
        json_decref(t);
        char *path = NULL;
        if (asprintf(&path, "%s/auth/%u.json", srv->root, (unsigned)req->uid) < 0)
                path = NULL;
        if (path && access(path, R_OK) == 0)
                ret->auth_file = path;
        *ret_auth_path = path;
}

void registry_options_done(struct registry_options *ro, char *auth_path) {
        strv_free(ro->mirrors);
        strv_free(ro->insecure);
        free(auth_path);
}

static void handle(struct request *req) {
        _cleanup_json_ json_t *msg = NULL;
        int r = api_recv_fds(req->fd, &msg, req->fds, 4, &req->n_fds);
        if (r < 0) {
                if (r != -ECONNRESET) {
                        _cleanup_json_ json_t *e = api_error(CM_EINVALID, "malformed request frame");
                        api_send(req->fd, e);
                }
                return;
        }
        const char *method = NULL;
        json_t *params = NULL;
        _cleanup_error_ struct cm_error *err = NULL;
        json_t *result = NULL;
        r = api_parse_request(msg, &method, &params, &err);
        if (r >= 0) {
                const struct method *m = find_method(method);
                _cleanup_json_ json_t *empty = json_object();
                if (!m)
                        r = cm_error_set(&err, CM_EINVALID, "unknown method '%s'", method);
                else if (m->root_only && req->uid != 0)
                        r = cm_error_set(&err, CM_EPERM, "%s: only root may do this", method);
                else
                        r = m->fn(req, params ? params : empty, &result, &err);
        }
        _cleanup_json_ json_t *resp = r < 0 ? api_error_from(err, r) : api_ok(result);
        api_send(req->fd, resp);
}

static void *conn_thread(void *arg) {
        struct request *req = arg;
        struct server *srv = req->srv;
        handle(req);
        for (int i = 0; i < req->n_fds; i++)
                if (req->fds[i] >= 0)
                        close(req->fds[i]);
        close(req->fd);
        free(req);
        pthread_mutex_lock(&srv->lock);
        srv->active--;
        pthread_cond_broadcast(&srv->idle);
        pthread_mutex_unlock(&srv->lock);
        return NULL;
}

int server_run(struct server *srv, int ready_fd) {
        machines_init(srv);
        if (ready_fd >= 0) {
                (void)!write(ready_fd, "", 1);
                close(ready_fd);
        }
        while (!srv->stopping) {
                struct pollfd p = { .fd = srv->listen_fd, .events = POLLIN };
                int n = poll(&p, 1, 500);
                if (n <= 0)
                        continue;
                int cfd = accept4(srv->listen_fd, NULL, NULL, SOCK_CLOEXEC);
                if (cfd < 0)
                        continue;
                struct ucred cred;
                socklen_t len = sizeof cred;
                if (getsockopt(cfd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0) {
                        close(cfd);
                        continue;
                }
                struct request *req = calloc(1, sizeof *req);
                if (!req) {
                        close(cfd);
                        continue;
                }
                *req = (struct request){ .srv = srv, .fd = cfd, .uid = cred.uid, .gid = cred.gid, .pid = cred.pid };
                pthread_attr_t attr;
                pthread_attr_init(&attr);
                pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
                pthread_t th;
                pthread_mutex_lock(&srv->lock);
                srv->active++;
                pthread_mutex_unlock(&srv->lock);
                if (pthread_create(&th, &attr, conn_thread, req) != 0) {
                        close(cfd);
                        free(req);
                        pthread_mutex_lock(&srv->lock);
                        srv->active--;
                        pthread_mutex_unlock(&srv->lock);
                }
                pthread_attr_destroy(&attr);
        }
        /* Let requests in flight finish (a pull being written is not cut in half). */
        pthread_mutex_lock(&srv->lock);
        struct timespec deadline;
        clock_gettime(CLOCK_REALTIME, &deadline);
        deadline.tv_sec += 30;
        while (srv->active > 0)
                if (pthread_cond_timedwait(&srv->idle, &srv->lock, &deadline) != 0)
                        break;
        pthread_mutex_unlock(&srv->lock);
        return 0;
}
