/* Talking to the apiserver, and printing what it says. */
#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "proto/api.h"
#include "util/config.h"
#include "util/json.h"

int cli_error(const char *fmt, ...) {
        va_list ap;
        va_start(ap, fmt);
        fputs("Error: ", stderr);
        vfprintf(stderr, fmt, ap);
        fputc('\n', stderr);
        va_end(ap);
        return 1;
}

int cli_usage_error(const char *usage, const char *fmt, ...) {
        va_list ap;
        va_start(ap, fmt);
        fputs("Error: ", stderr);
        vfprintf(stderr, fmt, ap);
        fputs("\n\n", stderr);
        fputs(usage, stderr);
        va_end(ap);
        return EXIT_USAGE;
}

int cli_dispatch(const char *group, const char *group_help, const struct verb *verbs, int argc, char **argv) {
        if (argc < 2) {
                fputs(group_help, stderr);
                return EXIT_USAGE;
        }
        const char *v = argv[1];
        if (streq(v, "--help") || streq(v, "-h") || streq(v, "help")) {
                fputs(group_help, stdout);
                return 0;
        }
        for (const struct verb *p = verbs; p->name; p++)
                if (streq(p->name, v) || (p->alias && streq(p->alias, v))) {
                        optind = 0; /* each verb parses its own options from a fresh start */
                        return p->run(argc - 1, argv + 1);
                }
        fprintf(stderr, "Error: unknown command 'container %s %s'\n\n%s", group, v, group_help);
        return EXIT_USAGE;
}

static int connect_api(char **ret_error) {
        const char *path = cm_api_socket_path();
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        if (strlen(path) >= sizeof sa.sun_path) {
                asprintf(ret_error, "socket path too long: %s", path);
                return -ENAMETOOLONG;
        }
        strcpy(sa.sun_path, path);
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return -errno;
        if (connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
                int e = errno;
                close(fd);
                if (e == ENOENT || e == ECONNREFUSED)
                        *ret_error = strdup("container system is not running; start it with 'container system start'");
                else if (e == EACCES || e == EPERM)
                        asprintf(ret_error,
                                 "permission denied: cannot connect to %s. Using container-machine needs membership "
                                 "in the group 'container' (as root: usermod -aG container $USER, then log in "
                                 "again)",
                                 path);
                else
                        asprintf(ret_error, "cannot connect to %s: %s", path, strerror(e));
                return -e;
        }
        return fd;
}

static int call(const char *method, json_t *params, const int *fds, int n_fds, json_t **ret_result,
                cli_event_fn on_event, void *userdata, char **ret_error) {
        _cleanup_close_ int fd = connect_api(ret_error);
        if (fd < 0)
                return fd;
        _cleanup_json_ json_t *req = api_request(method, params);
        int r = api_send_fds(fd, req, fds, n_fds);
        if (r < 0) {
                asprintf(ret_error, "cannot send the request to the apiserver: %s", strerror(-r));
                return r;
        }
        for (;;) {
                _cleanup_json_ json_t *msg = NULL;
                r = api_recv(fd, &msg);
                if (r < 0) {
                        asprintf(ret_error, "the apiserver closed the connection without an answer (%s)",
                                 strerror(-r));
                        return r;
                }
                if (json_object_get(msg, "event")) {
                        if (on_event)
                                on_event(msg, userdata);
                        continue;
                }
                if (json_is_true(json_object_get(msg, "ok"))) {
                        if (ret_result) {
                                json_t *res = json_object_get(msg, "result");
                                *ret_result = res ? json_incref(res) : NULL;
                        }
                        return 0;
                }
                json_t *e = json_object_get(msg, "error");
                const char *m = json_get_str(e, "message");
                *ret_error = strdup(m ? m : "unknown error");
                json_t *code = json_object_get(e, "errno");
                return json_is_integer(code) ? -(int)json_integer_value(code) : -EIO;
        }
}

int cli_call(const char *method, json_t *params, const int *fds, int n_fds, json_t **ret_result,
             cli_event_fn on_event, void *userdata) {
        _cleanup_free_ char *msg = NULL;
        int r = call(method, params, fds, n_fds, ret_result, on_event, userdata, &msg);
        if (r < 0)
                return cli_error("%s", msg ? msg : strerror(-r));
        return 0;
}

int cli_try_call(const char *method, json_t *params, json_t **ret_result, char **ret_error) {
        char *msg = NULL;
        int r = call(method, params, NULL, 0, ret_result, NULL, NULL, &msg);
        if (ret_error)
                *ret_error = msg;
        else
                free(msg);
        return r;
}

void format_size(uint64_t bytes, char *buf, size_t len) {
        static const char units[] = "BKMGTP";
        double v = (double)bytes;
        int u = 0;
        while (v >= 1024 && u < 5) {
                v /= 1024;
                u++;
        }
        if (u == 0)
                snprintf(buf, len, "%lluB", (unsigned long long)bytes);
        else if (v >= 10 || v == (double)(uint64_t)v)
                snprintf(buf, len, "%.0f%c", v, units[u]);
        else {
                snprintf(buf, len, "%.1f%c", v, units[u]);
                /* "2.0K" reads worse than "2K" */
                char *dot = strstr(buf, ".0");
                if (dot)
                        memmove(dot, dot + 2, strlen(dot + 2) + 1);
        }
}

void format_time_iso(const char *iso, char *buf, size_t len) {
        struct tm tm = { 0 };
        if (!iso || !*iso) {
                snprintf(buf, len, "-");
                return;
        }
        const char *end = strptime(iso, "%Y-%m-%dT%H:%M:%S", &tm);
        if (!end) {
                snprintf(buf, len, "-");
                return;
        }
        while (*end == '.' || (*end >= '0' && *end <= '9'))
                end++;
        time_t t = timegm(&tm);
        if (*end == '+' || *end == '-') {
                int hh = 0, mm = 0;
                if (sscanf(end + 1, "%2d:%2d", &hh, &mm) >= 1)
                        t -= (*end == '+' ? 1 : -1) * (hh * 3600 + mm * 60);
        }
        struct tm lt;
        localtime_r(&t, &lt);
        strftime(buf, len, "%Y-%m-%d %H:%M:%S", &lt);
}

struct table {
        size_t ncols, nrows;
        char ***rows; /* rows[0] = headers */
};

struct table *table_new(const char *const *headers, size_t n) {
        struct table *t = calloc(1, sizeof *t);
        t->ncols = n;
        table_add(t, headers);
        return t;
}

void table_add(struct table *t, const char *const *cells) {
        t->rows = realloc(t->rows, (t->nrows + 1) * sizeof(char **));
        t->rows[t->nrows] = calloc(t->ncols, sizeof(char *));
        for (size_t i = 0; i < t->ncols; i++)
                t->rows[t->nrows][i] = strdup(cells[i] && *cells[i] ? cells[i] : "");
        t->nrows++;
}

void table_print(struct table *t) {
        size_t w[32] = { 0 };
        for (size_t r = 0; r < t->nrows; r++)
                for (size_t c = 0; c < t->ncols && c < 32; c++) {
                        size_t l = strlen(t->rows[r][c]);
                        if (l > w[c])
                                w[c] = l;
                }
        for (size_t r = 0; r < t->nrows; r++) {
                /* no trailing blanks: stop after the last non-empty cell */
                size_t last = 0;
                for (size_t c = 0; c < t->ncols; c++)
                        if (t->rows[r][c][0])
                                last = c;
                for (size_t c = 0; c <= last; c++) {
                        if (c == last)
                                printf("%s", t->rows[r][c]);
                        else
                                printf("%-*s  ", (int)w[c], t->rows[r][c]);
                }
                putchar('\n');
        }
}

void table_free(struct table *t) {
        if (!t)
                return;
        for (size_t r = 0; r < t->nrows; r++) {
                for (size_t c = 0; c < t->ncols; c++)
                        free(t->rows[r][c]);
                free(t->rows[r]);
        }
        free(t->rows);
        free(t);
}

void print_json(json_t *j) {
        _cleanup_free_ char *s = json_dumps(j, JSON_INDENT(2) | JSON_SORT_KEYS | JSON_ENCODE_ANY);
        if (s)
                printf("%s\n", s);
}

/* ---- progress ---- */

struct progress_line {
        char *id, *status;
        uint64_t current, total;
        struct timespec first;
};

struct progress {
        bool tty, quiet;
        struct progress_line *lines;
        size_t n, drawn;
};

struct progress *progress_new(bool quiet) {
        struct progress *p = calloc(1, sizeof *p);
        p->tty = isatty(STDERR_FILENO);
        p->quiet = quiet;
        return p;
}

static void short_id(const char *id, char *buf, size_t len) {
        if (strncmp(id, "sha256:", 7) == 0)
                snprintf(buf, len, "%.12s", id + 7);
        else
                snprintf(buf, len, "%s", id);
}

static void draw_line(struct progress_line *l) {
        char id[80], cur[16], tot[16];
        short_id(l->id, id, sizeof id);
        format_size(l->current, cur, sizeof cur);
        format_size(l->total, tot, sizeof tot);
        struct timespec now;
        clock_gettime(CLOCK_MONOTONIC, &now);
        double secs = (double)(now.tv_sec - l->first.tv_sec) + (double)(now.tv_nsec - l->first.tv_nsec) / 1e9;
        if (l->total > 0 && (streq(l->status, "downloading") || streq(l->status, "uploading"))) {
                char rate[16];
                format_size(secs > 0.05 ? (uint64_t)((double)l->current / secs) : 0, rate, sizeof rate);
                fprintf(stderr, "\r\033[K%s: %s %s / %s (%s/s)\n", id, l->status, cur, tot, rate);
        } else if (l->total > 0)
                fprintf(stderr, "\r\033[K%s: %s %s\n", id, l->status, tot);
        else
                fprintf(stderr, "\r\033[K%s: %s\n", id, l->status);
}

void progress_event(json_t *ev, void *userdata) {
        struct progress *p = userdata;
        if (p->quiet)
                return;
        const char *id = json_get_str(ev, "id");
        const char *status = json_get_str(ev, "status");
        if (!id || !status)
                return;
        struct progress_line *l = NULL;
        for (size_t i = 0; i < p->n; i++)
                if (streq(p->lines[i].id, id))
                        l = &p->lines[i];
        bool changed = true;
        if (!l) {
                p->lines = realloc(p->lines, (p->n + 1) * sizeof *p->lines);
                l = &p->lines[p->n++];
                memset(l, 0, sizeof *l);
                l->id = strdup(id);
                clock_gettime(CLOCK_MONOTONIC, &l->first);
        } else {
                changed = !streq(l->status, status);
                free(l->status);
        }
        l->status = strdup(status);
        l->current = (uint64_t)json_integer_value(json_object_get(ev, "current"));
        l->total = (uint64_t)json_integer_value(json_object_get(ev, "total"));
        if (p->tty) {
                if (p->drawn > 0)
                        fprintf(stderr, "\033[%zuA", p->drawn);
                for (size_t i = 0; i < p->n; i++)
                        draw_line(&p->lines[i]);
                p->drawn = p->n;
                fflush(stderr);
        } else if (changed) {
                char sid[80];
                short_id(id, sid, sizeof sid);
                if (l->total > 0)
                        fprintf(stderr, "%s: %s (%llu bytes)\n", sid, status, (unsigned long long)l->total);
                else
                        fprintf(stderr, "%s: %s\n", sid, status);
        }
}

void progress_finish(struct progress *p) {
        if (!p)
                return;
        for (size_t i = 0; i < p->n; i++) {
                free(p->lines[i].id);
                free(p->lines[i].status);
        }
        free(p->lines);
        free(p);
}
