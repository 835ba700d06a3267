/* Session frames: the protocol between the CLI and a machine's runtime (and, multiplexed, between
 * the vm runtime and vminitd).
 *
 *   frame = u32 channel | u8 type | u32 length | payload[length]      (all integers big-endian)
 *
 *   OPEN    JSON exec spec (client -> server), see struct session_open; also control requests
 *   STDIN   data                (client -> server)
 *   STDOUT  data                (server -> client)
 *   STDERR  data                (server -> client)
 *   EOF     u8 stream (0 stdin, 1 stdout, 2 stderr): no more data on that stream
 *   RESIZE  u16 rows, u16 cols  (client -> server)
 *   SIGNAL  u32 signo (1..64)   (client -> server)
 *   EXIT    JSON {"status": N}  N = exit code or 128+signal; control replies add fields
 *   CLOSE   empty: the channel is gone (multiplexed links)
 *   CREDIT  u32 bytes: the receiver consumed that many data bytes; the sender may send more
 *   ERROR   JSON {"code": "...", "message": "..."}; ends the channel
 *
 * Flow control: each direction of each channel starts with SESSION_WINDOW bytes of credit for
 * data payloads (STDIN one way, STDOUT+STDERR together the other way). A sender sends data only
 * within its credit; a receiver that gets more than it granted sees a protocol error. Receivers
 * grant credit back as they consume (write to the process or the terminal), so one flooding
 * channel never makes a multiplexed link stall the others.
 *
 * Everything here validates: the runtime is root and decodes frames from users. */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "util/error.h"

#define SESSION_HEADER_SIZE 9u
#define SESSION_MAX_DATA (64u << 10) /* data, ERROR payloads */
#define SESSION_MAX_OPEN (1u << 20)  /* OPEN carries argv and env: larger */
#define SESSION_MAX_EXIT 4096u
#define SESSION_WINDOW (256u << 10) /* initial credit per channel per direction */
#define SESSION_CHANNEL_DEFAULT 1u  /* a CLI connection carries this one channel */

enum session_type {
        SESSION_OPEN = 1,
        SESSION_STDIN,
        SESSION_STDOUT,
        SESSION_STDERR,
        SESSION_EOF,
        SESSION_RESIZE,
        SESSION_SIGNAL,
        SESSION_EXIT,
        SESSION_CLOSE,
        SESSION_CREDIT,
        SESSION_ERROR,
        _SESSION_TYPE_MAX,
};

enum session_stream { SESSION_STREAM_STDIN = 0, SESSION_STREAM_STDOUT = 1, SESSION_STREAM_STDERR = 2 };

const char *session_type_to_string(int type);

struct session_frame {
        uint32_t channel;
        uint8_t type;
        uint32_t length;
        const uint8_t *payload; /* points into the decoder's buffer: valid until the next feed */
};

/* Small typed payloads, decoded from a validated frame. */
static inline uint32_t session_be32(const uint8_t *p) {
        return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}
static inline uint16_t session_be16(const uint8_t *p) {
        return (uint16_t)(p[0] << 8 | p[1]);
}

/* ---- incremental decoder ---- */

struct session_decoder {
        uint8_t *buf;
        size_t start, len, cap; /* unconsumed bytes are buf[start .. start+len) */
        uint32_t channel;       /* with pin_channel: every frame must carry it */
        bool pin_channel;
        int error; /* sticky: once invalid, always invalid */
};

/* pin_channel: the first frame's channel becomes the only one accepted (a CLI connection).
 * Without it (a multiplexed link) any channel passes. */
void session_decoder_init(struct session_decoder *d, bool pin_channel);
void session_decoder_done(struct session_decoder *d);
/* Appends bytes. Callers drain with session_decoder_next() after every feed; at most
 * one frame plus one feed is buffered (-ENOBUFS when a caller does not drain). */
int session_decoder_feed(struct session_decoder *d, const void *data, size_t n);
/* 1 and *ret: a complete, valid frame; 0: need more bytes; -EBADMSG: invalid (sticky),
 * with a reason in *ret_reason (static string) when ret_reason is non-NULL. */
int session_decoder_next(struct session_decoder *d, struct session_frame *ret, const char **ret_reason);
/* Validates a header's fields (used by the decoder; exported for tests). NULL = valid. */
const char *session_frame_check(uint32_t channel, uint8_t type, uint32_t length, const uint8_t *payload);

/* ---- encoder: a growable output buffer of frames ---- */

struct session_buf {
        uint8_t *data;
        size_t start, len, cap;
};

void session_buf_done(struct session_buf *b);
static inline size_t session_buf_pending(const struct session_buf *b) {
        return b->len;
}
int session_buf_frame(struct session_buf *b, uint32_t channel, uint8_t type, const void *payload, size_t n);
int session_buf_eof(struct session_buf *b, uint32_t channel, enum session_stream s);
int session_buf_resize(struct session_buf *b, uint32_t channel, unsigned rows, unsigned cols);
int session_buf_u32(struct session_buf *b, uint32_t channel, uint8_t type, uint32_t v); /* SIGNAL, CREDIT */
int session_buf_json(struct session_buf *b, uint32_t channel, uint8_t type, json_t *j);
int session_buf_exit(struct session_buf *b, uint32_t channel, int status);
int session_buf_error(struct session_buf *b, uint32_t channel, const char *code, const char *message);
/* Writes what it can (a non-blocking fd returns -EAGAIN with data left; a blocking one
 * writes everything). 0 when empty. Never raises SIGPIPE on sockets. */
int session_buf_flush(struct session_buf *b, int fd);
/* One frame written to a blocking fd. */
int session_send(int fd, uint32_t channel, uint8_t type, const void *payload, size_t n);

/* ---- flow control ---- */

struct session_credit {
        uint32_t send;     /* data bytes we may still send */
        uint32_t recv;     /* data bytes the peer may still send us */
        uint32_t consumed; /* received and consumed, not yet granted back */
};

void session_credit_init(struct session_credit *c);
/* Peer sent n data bytes: -EBADMSG when beyond what we granted. */
int session_credit_on_data(struct session_credit *c, size_t n);
/* We consumed n received bytes: returns the credit to grant now (0: wait to batch). */
uint32_t session_credit_on_consumed(struct session_credit *c, size_t n);
/* Peer granted n: -EBADMSG when it grants more than it could owe us. */
int session_credit_on_grant(struct session_credit *c, uint32_t n);
/* We sent n data bytes (n <= c->send). */
void session_credit_on_sent(struct session_credit *c, size_t n);

/* ---- per-channel sequencing: which frames may arrive when ---- */

enum session_role { SESSION_ROLE_SERVER, SESSION_ROLE_CLIENT }; /* who receives */

struct session_channel {
        enum session_role role;
        bool opened, exited, closed;
        bool eof[3]; /* EOF received per stream */
        struct session_credit credit;
};

void session_channel_init(struct session_channel *ch, enum session_role role);
/* Checks that f may arrive now and does the credit accounting of received data and grants.
 * -EBADMSG with a static reason otherwise. */
int session_channel_receive(struct session_channel *ch, const struct session_frame *f, const char **ret_reason);

/* ---- JSON payloads ---- */

enum session_open_kind { SESSION_OPEN_EXEC, SESSION_OPEN_STOP, SESSION_OPEN_STATUS };

struct session_open {
        enum session_open_kind kind;
        char **argv;   /* NULL: login shell */
        char **env;    /* "K=V" in the order given */
        char *cwd;     /* caller's host cwd or NULL */
        char *workdir; /* explicit --cwd or NULL */
        char *user;    /* NULL, "name", "uid" or "uid:gid" */
        bool root;
        bool has_uid, has_gid;
        uid_t uid;
        gid_t gid;
        bool tty;
        unsigned rows, cols;
        unsigned timeout; /* stop: seconds */
};

/* {"argv":[..]|null,"env":{..},"cwd":..,"workdir":..,"user":..,"root":b,"uid":..,"gid":..,
 *  "tty":b,"rows":n,"cols":n}  or  {"control":"stop","timeout":N} / {"control":"status"} */
int session_open_parse(const void *payload, size_t n, struct session_open **ret, struct cm_error **err);
void session_open_free(struct session_open *o);
static inline void session_open_freep(struct session_open **o) {
        session_open_free(*o);
}
#define _cleanup_session_open_ _cleanup_(session_open_freep)

/* EXIT payload: status and the whole object (control replies carry more); ERROR payload. */
int session_exit_parse(const void *payload, size_t n, int *ret_status, json_t **ret_obj);
int session_error_parse(const void *payload, size_t n, char **ret_code, char **ret_message);

/* Exit status as a shell reports it: the code, or 128+signal. */
int session_status_from_wait(int wstatus);

/* ---- a blocking client for control requests (apiserver, CLI) ---- */

/* Connects to a session socket: fd or -errno (-ENOENT, -ECONNREFUSED: no runtime). */
int session_connect(const char *socket_path);
/* Sends {"control": op [, "timeout": timeout_sec]} and waits up to wait_ms (-1: forever) for the
 * reply: the EXIT object (status 0 plus, for "status": initPid, startedDate, state). An ERROR
 * frame fills *err with its message and returns -err->code (CM_ENOTFOUND, CM_EINVALID, ...). */
int session_control(const char *socket_path, const char *op, unsigned timeout_sec, int wait_ms, json_t **ret,
                    struct cm_error **err);

/* ---- policy helpers of the runtime (here so that tests reach them) ---- */

/* Component-wise: /home/al is not inside /home/alice; dir itself is inside. Paths with "." or
 * ".." components are never inside. */
bool session_path_inside(const char *path, const char *dir);
/* The session's environment: HOME, USER, LOGNAME, SHELL, the standard PATH, then extra ("K=V",
 * in order; a later K replaces an earlier one in place). */
char **session_exec_env(const char *home, const char *user, const char *shell, char *const *extra);
#define SESSION_PATH "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
