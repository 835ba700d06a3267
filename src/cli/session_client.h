/* The CLI's side of the session protocol: `container machine run` on a running machine. */
#pragma once

#include <jansson.h>
#include <stdbool.h>

/* Connects to socket_path, sends open_spec (not stolen) as OPEN and relays the terminal or
 * stdin/stdout/stderr until the process exits. Returns the exit status to exit with (the
 * command's, 128+signal when killed); on an ERROR frame or a failed connection prints
 * "Error: <message>" and returns 1. tty: raw host terminal (restored on every exit path),
 * RESIZE on SIGWINCH; else stdin until EOF, stdout/stderr apart, and SIGINT, SIGTERM, SIGHUP,
 * SIGQUIT, SIGUSR1, SIGUSR2 forwarded as SIGNAL frames. */
int cli_session_run(const char *socket_path, json_t *open_spec, bool tty);
/* The same on a connected socket (taken over and closed). */
int cli_session_run_fd(int fd, json_t *open_spec, bool tty);
