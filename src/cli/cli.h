/* The container CLI: shared plumbing for the command groups. */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "util/macro.h"

#define EXIT_USAGE 64

struct verb {
        const char *name;
        const char *alias;
        int (*run)(int argc, char **argv);
        const char *summary;
};

/* Runs the verb named by argv[1] of a group; prints the group's help on --help or no verb. */
int cli_dispatch(const char *group, const char *group_help, const struct verb *verbs, int argc, char **argv);

/* Calls the apiserver. Events (progress) go to on_event. On failure prints "Error: <message>"
 * and returns 1 (the exit status); on success 0 and *ret_result (may be NULL). */
typedef void (*cli_event_fn)(json_t *ev, void *userdata);
int cli_call(const char *method, json_t *params /* stolen */, const int *fds, int n_fds, json_t **ret_result,
             cli_event_fn on_event, void *userdata);
/* Like cli_call but without printing; returns the apiserver error code name in *ret_code. */
int cli_try_call(const char *method, json_t *params, json_t **ret_result, char **ret_error);

int cli_error(const char *fmt, ...) _printf_(1, 2);          /* "Error: ...", returns 1 */
int cli_usage_error(const char *usage, const char *fmt, ...) _printf_(2, 3); /* returns 64 */

/* "8G", "1.5G", "512M", "12K", "0B" */
void format_size(uint64_t bytes, char *buf, size_t len);
/* Local time "YYYY-MM-DD HH:MM:SS" of an ISO-8601 or epoch string; "-" when unknown. */
void format_time_iso(const char *iso, char *buf, size_t len);

/* Table output: columns separated by at least two spaces, left-aligned. */
struct table;
struct table *table_new(const char *const *headers, size_t n);
void table_add(struct table *t, const char *const *cells);
void table_print(struct table *t);
void table_free(struct table *t);

/* Prints JSON pretty (indent 2, sorted keys) with a trailing newline. */
void print_json(json_t *j);

/* Renders pull/push progress events: live per-id lines on a terminal, plain lines otherwise. */
struct progress;
struct progress *progress_new(bool quiet);
void progress_event(json_t *ev, void *userdata /* struct progress* */);
void progress_finish(struct progress *p);

int cmd_system(int argc, char **argv);
int cmd_image(int argc, char **argv);
int cmd_registry(int argc, char **argv);
int cmd_machine(int argc, char **argv);
