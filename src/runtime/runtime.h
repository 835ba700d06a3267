/* container-runtime: one process per running machine. It is the parent of the machine's init
 * (ns runtime), holds the console pty, and serves the machine's session socket.
 *
 *   main.c      arguments, lock, state files, readiness, the event loop, shutdown
 *   ns.c        the machine itself: sandbox spec from the config, console pty and log
 *   sessions.c  session connections: authorization, policy, relaying a process
 *   network.c   the machine's network namespace, veth and the host side's bridge/NAT */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "machine/machine.h"
#include "net/settings.h"
#include "proto/session.h"
#include "sandbox/sandbox.h"

struct conn;

#define RUNTIME_MAX_CONNS 1024
#define RUNTIME_POLL_PER_CONN 4 /* socket, stdout, stderr, stdin */

struct runtime {
        const char *name, *root, *run;
        char *machine_dir; /* ROOT/machines/NAME */
        char *run_dir;     /* RUN/machines/NAME */
        int run_dir_fd;
        struct machine_config *config;
        struct sandbox *sb;
        pid_t init_pid;
        bool init_reaped;
        char started[32]; /* ISO-8601 UTC */
        const char *state;

        /* console */
        int console_master, console_slave;
        int console_log;
        uint64_t console_log_size;
        bool console_hup; /* master saw EIO: retry later */

        int listen_fd;
        struct conn *conns;
        unsigned n_conns;

        bool stop_requested;
        unsigned stop_timeout;

        /* readiness: written once the machine has booted (systemd: its boot finished) */
        int ready_fd;
        pid_t boot_wait_pid;
        int64_t boot_deadline_ms; /* -1: not waiting */

        /* network (network.c) */
        struct net_settings net;
        int netns_fd;                    /* -1: the sandbox makes a namespace with lo only */
        char netns_path[64];             /* /proc/self/fd/N */
        char host_ifname[NET_IFNAME_MAX];
        bool net_up;                     /* veth made, bridge/NAT ensured: undo at the end */
};

void log_msg(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* ns.c */
int machine_boot(struct runtime *rt, struct cm_error **err);
int console_open(struct runtime *rt);
void console_pump(struct runtime *rt);
void machine_stop(struct runtime *rt, unsigned timeout);
/* systemd reports its boot finished through `systemctl is-system-running --wait`; other inits
 * have no such notion. Returns the waiter's pid, or 0 when there is nothing to wait for. */
pid_t machine_boot_wait(struct runtime *rt);

/* network.c *//* Before sandbox_start: the namespace and the link, when the machine has an address and
 * networking is on (else nothing: rt->netns_fd stays -1). */
int machine_net_up(struct runtime *rt, struct cm_error **err);
/* After the machine is gone (and on a failed boot): veth, NAT table when unused, namespace. */
void machine_net_down(struct runtime *rt);

/* sessions.c */
void conn_accept(struct runtime *rt);
/* Adds the conn's fds to the poll set (the tag says which conn/role). */
struct pollfd;
size_t conns_poll_fill(struct runtime *rt, struct pollfd *p, struct conn **owners, uint8_t *roles, size_t max);
void conn_handle(struct runtime *rt, struct conn *c, uint8_t role, short revents);
/* After a pass: finish exited sessions, flush, drop closed conns. */
void conns_tick(struct runtime *rt);
/* A reaped child: true if it was a session's process. */
bool conns_child_exited(struct runtime *rt, pid_t pid, int status);
/* Init is gone: refuse what was not opened yet, let sessions finish. */
void conns_machine_gone(struct runtime *rt);
bool conns_all_done(struct runtime *rt);
/* The very end, everything cleaned up and the lock released: answer the stop requests. */
void conns_reply_stopped(struct runtime *rt);
void conns_free(struct runtime *rt);
