/* The apiserver's shared state and the request context handed to each method. */
#pragma once

#include <jansson.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <sys/types.h>
#include <time.h>

#include "image/image.h"
#include "util/error.h"

struct server {
        char *root, *run;
        struct image_store *store;
        json_t *config; /* guarded by lock */
        pthread_mutex_t lock;
        int listen_fd;
        volatile sig_atomic_t stopping;
        time_t started;
        int active; /* requests in flight, guarded by lock */
        pthread_cond_t idle;
};

struct request {
        struct server *srv;
        int fd;
        uid_t uid;
        gid_t gid;
        pid_t pid;
        int fds[4];
        int n_fds;
};

typedef int (*method_fn)(struct request *req, json_t *params, json_t **ret_result, struct cm_error **err);

struct method {
        const char *name;
        method_fn fn;
        bool root_only;
};

/* Tables of the method groups (NULL-terminated by name). */
extern const struct method system_methods[];
extern const struct method image_methods[];
extern const struct method machine_methods[];

/* Registers the machines' layers with the image store's gc and removes leftovers of
 * interrupted creates and removals. Called once before serving. */
void machines_init(struct server *srv);

/* network.c: the machines' DNS forwarder (a thread, stopped by srv->stopping), and at
 * shutdown the bridge and NAT table go when no machine is attached. */
void network_start(struct server *srv);
void network_shutdown(struct server *srv);

/* Streams an event (e.g. progress) to the caller before the response. Steals ev. */
void request_event(struct request *req, json_t *ev);
/* Registry options for this caller (mirrors, insecure, credentials). free with
 * registry_options_done. */
void request_registry_options(struct request *req, struct registry_options *ret, char **ret_auth_path);
void registry_options_done(struct registry_options *ro, char *auth_path);
/* A string parameter or NULL. */
const char *param_str(json_t *params, const char *key);
/* Progress callback forwarding to request_event. userdata = struct request. */
void request_progress(void *userdata, const char *id, const char *status, uint64_t current, uint64_t total);

int server_run(struct server *srv, int ready_fd);
