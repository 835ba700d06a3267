/* Session connections: one channel each. Authorization by SO_PEERCRED (root or the machine's
 * owner), the run policy (identity, environment, working directory), and the relay between the
 * frames and the process's pipes or pty, with credit-based flow control both ways.
 *
 * Output is relayed byte-exact and in order per stream; EXIT goes out only after the process
 * was reaped and its output drained (read until EOF, or until the pipe is empty after the exit:
 * what a background child writes later is not the session's). */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <termios.h>
#include <unistd.h>

#include "runtime.h"
#include "util/json.h"
#include "util/strv.h"

#define OUT_HIGH_WATER (SESSION_WINDOW + (64u << 10))

enum conn_state { C_OPENING, C_RUNNING, C_STOP_WAIT, C_CLOSING };
enum { R_SOCK, R_OUT, R_ERR, R_IN };

struct conn {
        struct conn *next;
        int fd;
        struct ucred cred;
        enum conn_state state;
        uint32_t channel;
        struct session_decoder dec;
        struct session_channel ch;
        struct session_buf out;
        bool peer_gone;

        bool pty;
        pid_t pid;
        bool reaped;
        int status;
        int in_fd;          /* stdin pipe (write end); pty: -1, input goes to out_fd */
        int out_fd, err_fd; /* pipes' read ends; pty: the master, err_fd -1 */
        bool out_done, err_done;
        uint8_t *ibuf;
        size_t ilen;
        bool stdin_eof;    /* EOF frame received */
        bool stdin_closed; /* nothing more goes to the process */
        bool veof_pending;
        bool exit_sent;
        bool hup_sent;
};

static void close_fd(int *fd) {
        if (*fd >= 0)
                close(*fd);
        *fd = -1;
}

static void set_nonblock(int fd) {
        int fl = fcntl(fd, F_GETFL);
        if (fl >= 0)
                (void)fcntl(fd, F_SETFL, fl | O_NONBLOCK);
}

static void conn_free(struct conn *c) {
        close_fd(&c->fd);
        close_fd(&c->in_fd);
        close_fd(&c->out_fd);
        close_fd(&c->err_fd);
        session_decoder_done(&c->dec);
        session_buf_done(&c->out);
        free(c->ibuf);
        free(c);
}

/* The peer broke the protocol or sent something we refuse: tell it, then hang up. */
static void conn_fail(struct conn *c, const char *code, const char *message) {
        if (!c->exit_sent)
                (void)session_buf_error(&c->out, c->channel, code, message);
        c->exit_sent = true;
        c->state = C_CLOSING;
}

static void conn_kill(struct conn *c, int sig) {
        if (c->pid <= 0 || c->reaped)
                return;
        if (c->pty && c->out_fd >= 0) {
                pid_t pg = -1;
                /* the terminal's foreground job: what ^C would hit */
                if (ioctl(c->out_fd, TIOCGPGRP, &pg) == 0 && pg > 0 && kill(-pg, sig) == 0)
                        return;
        }
        (void)kill(c->pid, sig);
}

void conn_accept(struct runtime *rt) {
        for (int i = 0; i < 16; i++) {
                int fd = accept4(rt->listen_fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
                if (fd < 0)
                        return;
                struct ucred cred;
                socklen_t l = sizeof cred;
                if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &l) < 0) {
                        close(fd);
                        continue;
                }
                bool allowed = cred.uid == 0 || (rt->config && cred.uid == rt->config->owner.uid);
                if (!allowed || rt->n_conns >= RUNTIME_MAX_CONNS || rt->init_reaped) {
                        /* As if the machine did not exist (SPEC: others get "not found"). */
                        char msg[160];
                        snprintf(msg, sizeof msg, "container machine with ID %s not found", rt->name);
                        struct session_buf b = {0};
                        if (allowed)
                                (void)session_buf_error(&b, SESSION_CHANNEL_DEFAULT, "not-running",
                                                        rt->init_reaped ? "the machine is stopping"
                                                                        : "too many sessions");
                        else
                                (void)session_buf_error(&b, SESSION_CHANNEL_DEFAULT, "not-found", msg);
                        (void)session_buf_flush(&b, fd); /* a fresh socket has room for it */
                        session_buf_done(&b);
                        shutdown(fd, SHUT_WR);
                        close(fd);
                        continue;
                }
                struct conn *c = calloc(1, sizeof *c);
                if (!c) {
                        close(fd);
                        return;
                }
                c->fd = fd;
                c->cred = cred;
                c->channel = SESSION_CHANNEL_DEFAULT;
                c->in_fd = c->out_fd = c->err_fd = -1;
                session_decoder_init(&c->dec, true);
                session_channel_init(&c->ch, SESSION_ROLE_SERVER);
                c->next = rt->conns;
                rt->conns = c;
                rt->n_conns++;
        }
}

/* ---- policy ---- */

struct identity {
        uid_t uid;
        gid_t gid;
        char *name, *home, *shell;
};

static void identity_done(struct identity *id) {
        free(id->name);
        free(id->home);
        free(id->shell);
}

static bool parse_id(const char *s, uint32_t *ret) {
        if (!s || !*s)
                return false;
        char *end;
        errno = 0;
        unsigned long v = strtoul(s, &end, 10);
        if (errno || *end || v >= UINT32_MAX || s[0] == '-' || s[0] == '+')
                return false;
        *ret = (uint32_t)v;
        return true;
}

static int resolve_identity(struct runtime *rt, struct conn *c, const struct session_open *o, struct identity *id,
                            char **ret_msg) {
        const struct machine_owner *owner = &rt->config->owner;
        _cleanup_free_ char *who = NULL;
        bool explicit_gid = false;
        gid_t gid_override = 0;

        if (o->root)
                who = strdup("0");
        else if (o->user) {
                const char *colon = strchr(o->user, ':');
                who = colon ? strndup(o->user, (size_t)(colon - o->user)) : strdup(o->user);
                if (colon) {
                        uint32_t g;
                        if (!parse_id(colon + 1, &g)) {
                                asprintf(ret_msg, "invalid group '%s'", colon + 1);
                                return -EINVAL;
                        }
                        explicit_gid = true;
                        gid_override = g;
                }
        } else if (o->has_uid) {
                if (asprintf(&who, "%u", (unsigned)o->uid) < 0)
                        who = NULL;
        } else if (c->cred.uid == 0)
                who = strdup("0");
        else
                who = strdup(owner->username ? owner->username : "");
        if (!who)
                return -ENOMEM;
        if (o->has_gid) {
                explicit_gid = true;
                gid_override = o->gid;
        }

        _cleanup_error_ struct cm_error *err = NULL;
        uid_t uid;
        gid_t gid;
        char *home = NULL, *shell = NULL, *name = NULL;
        int r = sandbox_lookup_user(rt->sb, who, &uid, &gid, &home, &shell, &name, &err);
        uint32_t num;
        if (r >= 0) {
                *id = (struct identity){.uid = uid, .gid = gid, .name = name, .home = home, .shell = shell};
        } else if (!o->root && !o->user && !o->has_uid && c->cred.uid != 0) {
                /* the owner, not (yet) in the machine's passwd: what the config knows */
                *id = (struct identity){
                        .uid = owner->uid,
                        .gid = owner->gid,
                        .name = strdup(owner->username ? owner->username : "user"),
                        .home = strdup(owner->home ? owner->home : "/"),
                        .shell = strdup(owner->shell ? owner->shell : "/bin/sh"),
                };
        } else if (parse_id(who, &num)) {
                /* a uid without a passwd entry runs anyway, as docker does */
                *id = (struct identity){
                        .uid = num,
                        .gid = num,
                        .name = strdup(who),
                        .home = strdup("/"),
                        .shell = strdup("/bin/sh"),
                };
        } else {
                asprintf(ret_msg, "unable to find user %s: no matching entries in passwd file", who);
                return -ENOENT;
        }
        if (!id->name || !id->home || !id->shell) {
                identity_done(id);
                return -ENOMEM;
        }
        if (!id->shell[0]) {
                free(id->shell);
                id->shell = strdup("/bin/sh");
        }
        if (explicit_gid)
                id->gid = gid_override;
        return 0;
}

static char *resolve_cwd(struct runtime *rt, const struct session_open *o, const struct identity *id) {
        if (o->workdir) {
                if (o->workdir[0] == '/')
                        return strdup(o->workdir);
                char *p = NULL;
                return asprintf(&p, "%s/%s", id->home, o->workdir) < 0 ? NULL : p;
        }
        const struct machine_config *cfg = rt->config;
        if (o->cwd && cfg->home_mount != HOME_MOUNT_NONE && cfg->owner.home &&
            session_path_inside(o->cwd, cfg->owner.home))
                return strdup(o->cwd);
        return strdup(id->home);
}

/* A pty from the machine's own devpts, so that `tty` inside names it; the host's as a fallback
 * (the session still works, only ttyname() fails inside). */
static int open_session_pty(struct runtime *rt, int *ret_master, int *ret_slave) {
        _cleanup_error_ struct cm_error *err = NULL;
        if (sandbox_open_pty(rt->sb, ret_master, ret_slave, &err) >= 0)
                return 0;
        log_msg("%s; using a host pty", err && err->message ? err->message : "pty");
        int m = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
        if (m < 0)
                return -errno;
        int s = -1;
        if (unlockpt(m) < 0 || (s = ioctl(m, TIOCGPTPEER, O_RDWR | O_NOCTTY | O_CLOEXEC)) < 0) {
                int r = -errno;
                close(m);
                return r;
        }
        *ret_master = m;
        *ret_slave = s;
        return 0;
}

static void conn_reply_status(struct runtime *rt, struct conn *c) {
        json_auto_t *j = json_pack("{s:i,s:I,s:s,s:s}", "status", 0, "initPid", (json_int_t)rt->init_pid, "startedDate",
                                   rt->started, "state", rt->state);
        if (j)
                (void)session_buf_json(&c->out, c->channel, SESSION_EXIT, j);
        c->exit_sent = true;
        c->state = C_CLOSING;
}

static void conn_open(struct runtime *rt, struct conn *c, const struct session_frame *f) {
        _cleanup_session_open_ struct session_open *o = NULL;
        _cleanup_error_ struct cm_error *err = NULL;
        c->channel = f->channel;
        if (session_open_parse(f->payload, f->length, &o, &err) < 0) {
                conn_fail(c, "invalid", err && err->message ? err->message : "invalid request");
                return;
        }
        if (o->kind == SESSION_OPEN_STATUS) {
                conn_reply_status(rt, c);
                return;
        }
        if (o->kind == SESSION_OPEN_STOP) {
                c->state = C_STOP_WAIT;
                if (!rt->stop_requested || o->timeout < rt->stop_timeout)
                        rt->stop_timeout = o->timeout;
                rt->stop_requested = true;
                return;
        }
        if (rt->stop_requested || rt->init_reaped) {
                conn_fail(c, "not-running", "the machine is stopping");
                return;
        }

        struct identity id = {0};
        _cleanup_free_ char *msg = NULL;
        int r = resolve_identity(rt, c, o, &id, &msg);
        if (r < 0) {
                conn_fail(c, r == -ENOENT ? "not-found" : "invalid", msg ? msg : strerror(-r));
                return;
        }
        _cleanup_strv_ char **env = session_exec_env(id.home, id.name, id.shell, o->env);
        _cleanup_free_ char *cwd = resolve_cwd(rt, o, &id);
        if (!env || !cwd) {
                identity_done(&id);
                conn_fail(c, "internal", "out of memory");
                return;
        }

        int child_in = -1, child_out = -1, child_err = -1;
        int p_in[2] = {-1, -1}, p_out[2] = {-1, -1}, p_err[2] = {-1, -1};
        if (o->tty) {
                int m = -1, s = -1;
                r = open_session_pty(rt, &m, &s);
                if (r < 0) {
                        identity_done(&id);
                        conn_fail(c, "internal", "cannot allocate a pty");
                        return;
                }
                struct winsize ws = {.ws_row = (unsigned short)(o->rows ? o->rows : 24),
                                     .ws_col = (unsigned short)(o->cols ? o->cols : 80)};
                (void)ioctl(m, TIOCSWINSZ, &ws);
                (void)fchown(s, id.uid, (gid_t)-1);
                (void)fchmod(s, 0620);
                c->pty = true;
                c->out_fd = m;
                c->err_done = true;
                child_in = child_out = child_err = s;
        } else {
                if (pipe2(p_in, O_CLOEXEC) < 0 || pipe2(p_out, O_CLOEXEC) < 0 || pipe2(p_err, O_CLOEXEC) < 0) {
                        close_fd(&p_in[0]), close_fd(&p_in[1]), close_fd(&p_out[0]), close_fd(&p_out[1]);
                        identity_done(&id);
                        conn_fail(c, "internal", "cannot create pipes");
                        return;
                }
                c->in_fd = p_in[1];
                c->out_fd = p_out[0];
                c->err_fd = p_err[0];
                child_in = p_in[0];
                child_out = p_out[1];
                child_err = p_err[1];
        }

        struct sandbox_exec e = {
                .argv = o->argv,
                .env = env,
                .cwd = cwd,
                .uid = id.uid,
                .gid = id.gid,
                .stdin_fd = child_in,
                .stdout_fd = child_out,
                .stderr_fd = child_err,
                .pty = o->tty,
        };
        pid_t pid = -1;
        r = sandbox_exec(rt->sb, &e, &pid, &err);
        /* the child has its ends; ours must go so that EOF and EIO can happen */
        if (o->tty)
                close(child_in);
        else {
                close(child_in);
                close(child_out);
                close(child_err);
        }
        identity_done(&id);
        if (r < 0) {
                conn_fail(c, "internal", err && err->message ? err->message : strerror(-r));
                return;
        }
        c->pid = pid;
        if (c->in_fd >= 0)
                set_nonblock(c->in_fd);
        set_nonblock(c->out_fd);
        if (c->err_fd >= 0)
                set_nonblock(c->err_fd);
        c->ibuf = malloc(SESSION_WINDOW);
        if (!c->ibuf) {
                conn_kill(c, SIGKILL);
                conn_fail(c, "internal", "out of memory");
                return;
        }
        c->state = C_RUNNING;
}

static void grant_stdin(struct conn *c, size_t n) {
        uint32_t g = session_credit_on_consumed(&c->ch.credit, n);
        if (g > 0)
                (void)session_buf_u32(&c->out, c->channel, SESSION_CREDIT, g);
}

static void stdin_close(struct conn *c) {
        if (c->stdin_closed)
                return;
        c->stdin_closed = true;
        if (c->ilen)
                grant_stdin(c, c->ilen);
        c->ilen = 0;
        close_fd(&c->in_fd);
}

/* Writes buffered stdin to the process. */
static void stdin_pump(struct conn *c) {
        int fd = c->pty ? c->out_fd : c->in_fd;
        while (!c->stdin_closed && c->ilen > 0 && fd >= 0) {
                ssize_t w = write(fd, c->ibuf, c->ilen);
                if (w < 0 && errno == EINTR)
                        continue;
                if (w < 0 && errno == EAGAIN)
                        return;
                if (w <= 0) { /* EPIPE, EIO: the process does not read any more */
                        stdin_close(c);
                        return;
                }
                memmove(c->ibuf, c->ibuf + w, c->ilen - (size_t)w);
                c->ilen -= (size_t)w;
                grant_stdin(c, (size_t)w);
        }
        if (c->stdin_eof && c->ilen == 0 && !c->stdin_closed) {
                if (!c->pty) {
                        stdin_close(c);
                        return;
                }
                /* A terminal has no EOF of its own: the line discipline's EOF character is it. */
                struct termios t;
                if (tcgetattr(c->out_fd, &t) == 0 && (t.c_lflag & ICANON)) {
                        uint8_t ch = t.c_cc[VEOF];
                        if (write(c->out_fd, &ch, 1) < 0 && errno == EAGAIN)
                                return;
                }
                c->stdin_closed = true;
        }
}

/* Reads process output into frames while the client has credit. */
static void output_pump(struct conn *c, int *fdp, bool *done, uint8_t type) {
        uint8_t buf[SESSION_MAX_DATA];
        while (!*done && *fdp >= 0) {
                if (c->ch.credit.send == 0 || session_buf_pending(&c->out) > OUT_HIGH_WATER)
                        return;
                size_t want = c->ch.credit.send < sizeof buf ? c->ch.credit.send : sizeof buf;
                ssize_t n = read(*fdp, buf, want);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0 && errno == EAGAIN) {
                        if (c->reaped)
                                *done = true; /* drained after the exit */
                        return;
                }
                if (n <= 0) { /* EOF; EIO on a pty master: no slave left */
                        *done = true;
                        return;
                }
                if (session_buf_frame(&c->out, c->channel, type, buf, (size_t)n) < 0) {
                        conn_fail(c, "internal", "out of memory");
                        return;
                }
                session_credit_on_sent(&c->ch.credit, (size_t)n);
        }
}

static void conn_frame(struct runtime *rt, struct conn *c, const struct session_frame *f) {
        const char *why = NULL;
        if (session_channel_receive(&c->ch, f, &why) < 0) {
                conn_fail(c, "invalid", why);
                return;
        }
        switch (f->type) {
        case SESSION_OPEN:
                conn_open(rt, c, f);
                return;
        case SESSION_STDIN:
                if (c->state != C_RUNNING || c->stdin_closed) {
                        grant_stdin(c, f->length); /* dropped, but the client may go on */
                        return;
                }
                memcpy(c->ibuf + c->ilen, f->payload, f->length); /* credit bounds ilen by the window */
                c->ilen += f->length;
                stdin_pump(c);
                return;
        case SESSION_EOF:
                c->stdin_eof = true;
                if (c->state == C_RUNNING)
                        stdin_pump(c);
                return;
        case SESSION_RESIZE:
                if (c->pty && c->out_fd >= 0) {
                        struct winsize ws = {.ws_row = session_be16(f->payload),
                                             .ws_col = session_be16(f->payload + 2)};
                        (void)ioctl(c->out_fd, TIOCSWINSZ, &ws);
                }
                return;
        case SESSION_SIGNAL:
                conn_kill(c, (int)session_be32(f->payload));
                return;
        case SESSION_CLOSE:
                c->peer_gone = true;
                return;
        default: /* CREDIT: accounted by session_channel_receive */
                return;
        }
}

static void conn_read(struct runtime *rt, struct conn *c) {
        uint8_t buf[65536];
        for (int i = 0; i < 8 && !c->peer_gone; i++) {
                ssize_t n = read(c->fd, buf, sizeof buf);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0 && errno == EAGAIN)
                        return;
                if (n <= 0) {
                        c->peer_gone = true;
                        return;
                }
                if (c->state == C_CLOSING)
                        continue; /* discard */
                if (session_decoder_feed(&c->dec, buf, (size_t)n) < 0) {
                        conn_fail(c, "invalid", "invalid frame");
                        return;
                }
                struct session_frame f;
                const char *why = NULL;
                int r;
                while (c->state != C_CLOSING && (r = session_decoder_next(&c->dec, &f, &why)) != 0) {
                        if (r < 0) {
                                conn_fail(c, "invalid", why);
                                return;
                        }
                        conn_frame(rt, c, &f);
                }
        }
}

size_t conns_poll_fill(struct runtime *rt, struct pollfd *p, struct conn **owners, uint8_t *roles, size_t max) {
        size_t n = 0;
#define ADD(fd_, ev_, role_)                                                                                           \
        do {                                                                                                           \
                if (n < max) {                                                                                         \
                        p[n] = (struct pollfd){.fd = (fd_), .events = (short)(ev_)};                                   \
                        owners[n] = c;                                                                                 \
                        roles[n] = (role_);                                                                            \
                        n++;                                                                                           \
                }                                                                                                      \
        } while (0)
        for (struct conn *c = rt->conns; c; c = c->next) {
                short ev = 0;
                if (!c->peer_gone)
                        ev |= POLLIN;
                if (session_buf_pending(&c->out) > 0 && !c->peer_gone)
                        ev |= POLLOUT;
                if (ev)
                        ADD(c->fd, ev, R_SOCK);
                bool room = c->ch.credit.send > 0 && session_buf_pending(&c->out) <= OUT_HIGH_WATER;
                if (c->state == C_RUNNING && room && !c->out_done && c->out_fd >= 0)
                        ADD(c->out_fd, POLLIN, R_OUT);
                if (c->state == C_RUNNING && room && !c->err_done && c->err_fd >= 0)
                        ADD(c->err_fd, POLLIN, R_ERR);
                bool want_in = c->state == C_RUNNING && !c->stdin_closed && (c->ilen > 0 || c->stdin_eof);
                int infd = c->pty ? c->out_fd : c->in_fd;
                if (want_in && infd >= 0)
                        ADD(infd, POLLOUT, R_IN);
        }
#undef ADD
        return n;
}

void conn_handle(struct runtime *rt, struct conn *c, uint8_t role, short revents) {
        switch (role) {
        case R_SOCK:
                if (revents & (POLLIN | POLLHUP | POLLERR))
                        conn_read(rt, c);
                if ((revents & POLLOUT) && session_buf_flush(&c->out, c->fd) < 0 && errno != EAGAIN) {
                        /* -EAGAIN leaves data; other errors: the peer is gone */
                }
                break;
        case R_OUT:
                output_pump(c, &c->out_fd, &c->out_done, SESSION_STDOUT);
                break;
        case R_ERR:
                output_pump(c, &c->err_fd, &c->err_done, SESSION_STDERR);
                break;
        case R_IN:
                if (revents & (POLLERR | POLLHUP)) {
                        if (!c->pty)
                                stdin_close(c);
                        else
                                stdin_pump(c);
                } else
                        stdin_pump(c);
                break;
        }
}

bool conns_child_exited(struct runtime *rt, pid_t pid, int status) {
        for (struct conn *c = rt->conns; c; c = c->next)
                if (c->pid == pid && !c->reaped) {
                        c->reaped = true;
                        c->status = session_status_from_wait(status);
                        return true;
                }
        return false;
}

void conns_machine_gone(struct runtime *rt) {
        for (struct conn *c = rt->conns; c; c = c->next) {
                if (c->state == C_OPENING) {
                        conn_fail(c, "not-running", "the machine stopped");
                }
        }
}

static void conn_maybe_finish(struct conn *c) {
        if (c->state != C_RUNNING || !c->reaped)
                return;
        /* after the exit: drain what is left (EAGAIN now means done) */
        if (!c->out_done)
                output_pump(c, &c->out_fd, &c->out_done, SESSION_STDOUT);
        if (!c->err_done)
                output_pump(c, &c->err_fd, &c->err_done, SESSION_STDERR);
        if (!c->out_done || !c->err_done || c->state != C_RUNNING)
                return;
        stdin_close(c);
        close_fd(&c->out_fd);
        close_fd(&c->err_fd);
        (void)session_buf_eof(&c->out, c->channel, SESSION_STREAM_STDOUT);
        if (!c->pty)
                (void)session_buf_eof(&c->out, c->channel, SESSION_STREAM_STDERR);
        (void)session_buf_exit(&c->out, c->channel, c->status);
        c->exit_sent = true;
        c->state = C_CLOSING;
}

void conns_tick(struct runtime *rt) {
        struct conn **pp = &rt->conns;
        while (*pp) {
                struct conn *c = *pp;
                if (((c->state == C_RUNNING && c->peer_gone) || c->state == C_CLOSING) && c->pid > 0 && !c->reaped &&
                    !c->hup_sent) {
                        c->hup_sent = true;
                        /* the client went away: hang the session up, as a closed terminal would */
                        conn_kill(c, SIGHUP);
                        stdin_close(c);
                        close_fd(&c->err_fd);
                        close_fd(&c->out_fd); /* a pty master closing hangs the terminal up */
                        c->out_done = c->err_done = true;
                }
                conn_maybe_finish(c);
                if (session_buf_pending(&c->out) > 0 && !c->peer_gone) {
                        int r = session_buf_flush(&c->out, c->fd);
                        if (r < 0 && r != -EAGAIN)
                                c->peer_gone = true;
                }
                bool finished = (c->state == C_CLOSING && (session_buf_pending(&c->out) == 0 || c->peer_gone)) ||
                                (c->peer_gone && c->state != C_RUNNING && c->state != C_STOP_WAIT) ||
                                (c->peer_gone && c->state == C_RUNNING && c->reaped);
                /* A session whose process still runs is kept until it is reaped. */
                if (finished && (c->pid <= 0 || c->reaped)) {
                        *pp = c->next;
                        rt->n_conns--;
                        conn_free(c);
                        continue;
                }
                pp = &c->next;
        }
}

bool conns_all_done(struct runtime *rt) {
        for (struct conn *c = rt->conns; c; c = c->next)
                if (c->state != C_STOP_WAIT)
                        return false;
        return true;
}

void conns_reply_stopped(struct runtime *rt) {
        for (struct conn *c = rt->conns; c; c = c->next) {
                if (c->state != C_STOP_WAIT || c->peer_gone)
                        continue;
                (void)session_buf_exit(&c->out, c->channel, 0);
                int fl = fcntl(c->fd, F_GETFL);
                if (fl >= 0)
                        (void)fcntl(c->fd, F_SETFL, fl & ~O_NONBLOCK);
                struct timeval tv = {.tv_sec = 1};
                (void)setsockopt(c->fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
                (void)session_buf_flush(&c->out, c->fd);
        }
}

void conns_free(struct runtime *rt) {
        while (rt->conns) {
                struct conn *c = rt->conns;
                rt->conns = c->next;
                conn_free(c);
        }
        rt->n_conns = 0;
}
