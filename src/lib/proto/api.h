/* The API between the CLI and the apiserver: length-prefixed JSON messages over a unix socket.
 *   frame    = u32 big-endian length, then that many bytes of UTF-8 JSON (max API_MAX_FRAME)
 *   request  = {"version":1,"method":"image.pull","params":{...}}
 *   event    = {"event":"progress",...}           zero or more, before the response
 *   response = {"ok":true,"result":...} | {"ok":false,"error":{"code":"not-found","message":"..."}}
 * Fd passing (SCM_RIGHTS) accompanies requests that stream files (image.load/save/import). */
#pragma once

#include <jansson.h>

#include "util/error.h"

#define API_VERSION 1
#define API_MAX_FRAME (16u << 20)

int api_send(int fd, json_t *msg);
/* Sends msg with file descriptors attached (n_fds <= 4). */
int api_send_fds(int fd, json_t *msg, const int *fds, int n_fds);
/* -ECONNRESET on clean EOF before a frame; -EBADMSG for an oversized/invalid frame. */
int api_recv(int fd, json_t **ret);
/* Receives a frame and any attached fds (up to max_fds, *ret_n_fds set, unused = -1). */
int api_recv_fds(int fd, json_t **ret, int *fds, int max_fds, int *ret_n_fds);

/* Validates a decoded request; method and params point into msg. */
int api_parse_request(json_t *msg, const char **ret_method, json_t **ret_params, struct cm_error **err);
/* Decodes one frame from a buffer (fuzzing and tests): consumed bytes in *ret_used. */
int api_decode(const void *buf, size_t len, json_t **ret, size_t *ret_used);

json_t *api_request(const char *method, json_t *params /* stolen, may be NULL */);
json_t *api_ok(json_t *result /* stolen, may be NULL */);
json_t *api_error(int code, const char *message);
json_t *api_error_from(const struct cm_error *e, int r);
