/* `container machine run`: the client side of a session. One connection, one channel. The
 * socket is blocking (the runtime never stops reading it, credit bounds what we send), and the
 * host's stdin/stdout are used as they are: making them non-blocking would change them for
 * every process sharing them (the user's shell). */
#include "session_client.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <termios.h>
#include <unistd.h>

#include "cli.h"
#include "proto/session.h"
#include "util/fs.h"

static int sig_pipe[2] = {-1, -1};

static struct termios saved_tio;
static volatile sig_atomic_t tio_saved;

static void tty_restore(void) {
        if (tio_saved) {
                (void)tcsetattr(STDIN_FILENO, TCSADRAIN, &saved_tio);
                tio_saved = 0;
        }
}

static void on_forward(int sig) {
        int saved = errno;
        unsigned char b = (unsigned char)sig;
        (void)!write(sig_pipe[1], &b, 1);
        errno = saved;
}

/* A crash must not leave the user's terminal raw. SA_RESETHAND: the re-raise kills us. */
static void on_fatal(int sig) {
        tty_restore();
        raise(sig);
}

static const int forwarded[] = {SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2};
static const int fatal[] = {SIGSEGV, SIGBUS, SIGABRT, SIGFPE, SIGILL};

static struct sigaction saved_forwarded[ELEMENTSOF(forwarded)], saved_fatal[ELEMENTSOF(fatal)], saved_winch;

/* The caller's dispositions are put back afterwards (nohup's ignored SIGHUP stays ignored). */
static void signals_install(bool tty) {
        struct sigaction sa = { .sa_handler = on_forward, .sa_flags = SA_RESTART };
        sigemptyset(&sa.sa_mask);
        for (size_t i = 0; i < ELEMENTSOF(forwarded); i++)
                (void)sigaction(forwarded[i], &sa, &saved_forwarded[i]);
        if (tty) {
                (void)sigaction(SIGWINCH, &sa, &saved_winch);
                struct sigaction fa = { .sa_handler = on_fatal, .sa_flags = SA_RESETHAND | SA_NODEFER };
                sigemptyset(&fa.sa_mask);
                for (size_t i = 0; i < ELEMENTSOF(fatal); i++)
                        (void)sigaction(fatal[i], &fa, &saved_fatal[i]);
        }
}

static void signals_restore(bool tty) {
        for (size_t i = 0; i < ELEMENTSOF(forwarded); i++)
                (void)sigaction(forwarded[i], &saved_forwarded[i], NULL);
        if (tty) {
                (void)sigaction(SIGWINCH, &saved_winch, NULL);
                for (size_t i = 0; i < ELEMENTSOF(fatal); i++)
                        (void)sigaction(fatal[i], &saved_fatal[i], NULL);
        }
}

static void tty_make_raw(void) {
        static bool atexit_done;
        if (!isatty(STDIN_FILENO) || tcgetattr(STDIN_FILENO, &saved_tio) < 0)
                return;
        if (!atexit_done) {
                atexit(tty_restore);
                atexit_done = true;
        }
        struct termios raw = saved_tio;
        cfmakeraw(&raw);
        tio_saved = 1;
        if (tcsetattr(STDIN_FILENO, TCSADRAIN, &raw) < 0)
                tio_saved = 0;
}

static int window_size(unsigned *rows, unsigned *cols) {
        struct winsize ws;
        if (ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) < 0 && ioctl(STDIN_FILENO, TIOCGWINSZ, &ws) < 0)
                return -errno;
        *rows = ws.ws_row;
        *cols = ws.ws_col;
        return 0;
}

static int write_all(int fd, const uint8_t *p, size_t n) {
        return fs_write_all(fd, p, n);
}

struct client {
        int fd;
        bool tty;
        struct session_decoder dec;
        struct session_channel ch;
        struct session_buf out;
        bool stdin_eof;
        bool stdout_broken, stderr_broken;
        int status; /* >= 0: EXIT received */
        char *error;
};

/* 1: the session ended (status or error set), 0: go on, <0: protocol or connection error. */
static int client_frame(struct client *c, const struct session_frame *f) {
        const char *why = NULL;
        if (session_channel_receive(&c->ch, f, &why) < 0) {
                if (asprintf(&c->error, "invalid reply from the machine: %s", why) < 0)
                        c->error = NULL;
                return -EBADMSG;
        }
        switch (f->type) {
        case SESSION_STDOUT:
        case SESSION_STDERR: {
                int fd = f->type == SESSION_STDOUT ? STDOUT_FILENO : STDERR_FILENO;
                bool *broken = f->type == SESSION_STDOUT ? &c->stdout_broken : &c->stderr_broken;
                if (!*broken && write_all(fd, f->payload, f->length) < 0)
                        *broken = true; /* keep consuming: the process must not stall on us */
                uint32_t g = session_credit_on_consumed(&c->ch.credit, f->length);
                if (g > 0)
                        return session_buf_u32(&c->out, SESSION_CHANNEL_DEFAULT, SESSION_CREDIT, g);
                return 0;
        }
        case SESSION_EXIT:
                if (session_exit_parse(f->payload, f->length, &c->status, NULL) < 0) {
                        c->error = strdup("invalid exit status from the machine");
                        return -EBADMSG;
                }
                return 1;
        case SESSION_ERROR: {
                _cleanup_free_ char *code = NULL;
                if (session_error_parse(f->payload, f->length, &code, &c->error) < 0)
                        c->error = strdup("invalid error from the machine");
                return 1;
        }
        case SESSION_CLOSE:
                c->error = strdup("the machine closed the session");
                return 1;
        default:
                return 0;
        }
}

static int send_stdin(struct client *c) {
        uint8_t buf[SESSION_MAX_DATA];
        size_t want = c->ch.credit.send < sizeof buf ? c->ch.credit.send : sizeof buf;
        ssize_t n = read(STDIN_FILENO, buf, want);
        if (n < 0 && (errno == EINTR || errno == EAGAIN))
                return 0;
        if (n <= 0) {
                c->stdin_eof = true;
                return session_buf_eof(&c->out, SESSION_CHANNEL_DEFAULT, SESSION_STREAM_STDIN);
        }
        session_credit_on_sent(&c->ch.credit, (size_t)n);
        return session_buf_frame(&c->out, SESSION_CHANNEL_DEFAULT, SESSION_STDIN, buf, (size_t)n);
}

static int handle_signals(struct client *c) {
        unsigned char sigs[64];
        ssize_t n = read(sig_pipe[0], sigs, sizeof sigs);
        bool winch = false;
        for (ssize_t i = 0; i < n; i++) {
                if (sigs[i] == SIGWINCH) {
                        winch = true;
                        continue;
                }
                int r = session_buf_u32(&c->out, SESSION_CHANNEL_DEFAULT, SESSION_SIGNAL, sigs[i]);
                if (r < 0)
                        return r;
        }
        unsigned rows, cols;
        if (winch && window_size(&rows, &cols) == 0)
                return session_buf_resize(&c->out, SESSION_CHANNEL_DEFAULT, rows, cols);
        return 0;
}

static int relay(struct client *c, json_t *open_spec) {
        _cleanup_free_ char *spec = json_dumps(open_spec, JSON_COMPACT);
        if (!spec)
                return -ENOMEM;
        int r = session_buf_frame(&c->out, SESSION_CHANNEL_DEFAULT, SESSION_OPEN, spec, strlen(spec));
        if (r < 0) {
                c->error = strdup(r == -EINVAL ? "the command and its environment are too long" : strerror(-r));
                return r;
        }
        unsigned rows, cols;
        if (c->tty && window_size(&rows, &cols) == 0)
                (void)session_buf_resize(&c->out, SESSION_CHANNEL_DEFAULT, rows, cols);
        if (fcntl(STDIN_FILENO, F_GETFD) < 0) /* no stdin at all */
                c->stdin_eof = true;

        bool write_broken = false;
        for (;;) {
                if (!write_broken && session_buf_flush(&c->out, c->fd) < 0)
                        /* The runtime may have refused us and hung up: its ERROR is still to read. */
                        write_broken = true;
                if (write_broken)
                        session_buf_done(&c->out);
                struct pollfd p[3] = {
                        {.fd = c->fd, .events = POLLIN},
                        {.fd = sig_pipe[0], .events = POLLIN},
                        {.fd = (!c->stdin_eof && !write_broken && c->ch.credit.send > 0) ? STDIN_FILENO : -1,
                         .events = POLLIN},
                };
                if (poll(p, 3, -1) < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                if (p[1].revents && (r = handle_signals(c)) < 0)
                        return r;
                if (p[2].revents && (r = send_stdin(c)) < 0)
                        return r;
                if (p[0].revents) {
                        uint8_t buf[65536 + 64];
                        ssize_t n = read(c->fd, buf, sizeof buf);
                        if (n < 0 && errno == EINTR)
                                continue;
                        if (n <= 0)
                                goto lost;
                        r = session_decoder_feed(&c->dec, buf, (size_t)n);
                        if (r < 0)
                                return r;
                        struct session_frame f;
                        const char *why = NULL;
                        while ((r = session_decoder_next(&c->dec, &f, &why)) != 0) {
                                if (r < 0) {
                                        if (asprintf(&c->error, "invalid reply from the machine: %s", why) < 0)
                                                c->error = NULL;
                                        return r;
                                }
                                r = client_frame(c, &f);
                                if (r != 0)
                                        return r;
                        }
                }
        }
lost:
        if (!c->error)
                c->error = strdup("the connection to the machine was lost");
        return -ECONNRESET;
}

int cli_session_run_fd(int fd, json_t *open_spec, bool tty) {
        struct client c = {.fd = fd, .tty = tty, .status = -1};
        session_decoder_init(&c.dec, true);
        session_channel_init(&c.ch, SESSION_ROLE_CLIENT);

        if (sig_pipe[0] < 0 && pipe2(sig_pipe, O_CLOEXEC | O_NONBLOCK) < 0) {
                close(fd);
                return cli_error("pipe: %s", strerror(errno));
        }
        signals_install(tty);
        if (tty)
                tty_make_raw();

        int r = relay(&c, open_spec);

        tty_restore();
        signals_restore(tty);
        close(fd);
        session_decoder_done(&c.dec);
        session_buf_done(&c.out);
        int ret;
        if (c.status >= 0 && !c.error)
                ret = c.status;
        else {
                ret = cli_error("%s", c.error ? c.error : r < 0 ? strerror(-r) : "session failed");
        }
        free(c.error);
        return ret;
}

int cli_session_run(const char *socket_path, json_t *open_spec, bool tty) {
        int fd = session_connect(socket_path);
        if (fd < 0) {
                if (fd == -ENOENT || fd == -ECONNREFUSED)
                        return cli_error("the machine is not running (no session at %s)", socket_path);
                return cli_error("cannot connect to %s: %s", socket_path, strerror(-fd));
        }
        return cli_session_run_fd(fd, open_spec, tty);
}
