/* container machine (alias m): create, run, ls, inspect, start, restart, stop, set,
 * set-default, logs, rm. */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "util/json.h"
#include "util/strv.h"

#if __has_include("session_client.h")
#include "session_client.h"
#else
int cli_session_run(const char *socket_path, json_t *open_spec, bool tty);
#endif
/* Resolved at link time when the session client is built in; checked before use. */
#pragma weak cli_session_run

extern char **environ;

static const char machine_help[] =
        "Usage: container machine COMMAND   (alias: container m)\n"
        "\n"
        "Persistent Linux machines that boot their image's own init, with you, your home\n"
        "directory and your current directory inside.\n"
        "\n"
        "Commands:\n"
        "  create [OPTIONS] IMAGE         create a machine from an image (pulled if needed) and boot it\n"
        "  run [-n NAME] [OPTIONS] [CMD [ARG...]]\n"
        "                                 run CMD (default: your login shell) in a machine, as yourself\n"
        "  ls [-q] [--format json]        list your machines (alias: list)\n"
        "  inspect [NAME]                 details of a machine as JSON\n"
        "  start [NAME]                   boot a machine\n"
        "  stop [--time N] [NAME]         shut a machine down through its init\n"
        "  restart [--time N] [NAME]      stop, then start\n"
        "  set [-n NAME] KEY=VALUE...     change cpus, memory, home-mount, virtualization, kernel\n"
        "  set-default NAME               the machine used when no name is given\n"
        "  logs [--boot] [-f] [-n N] [NAME]\n"
        "                                 the machine's console output (init's messages)\n"
        "  rm NAME...                     stop and delete machines and everything in them (alias: delete)\n"
        "\n"
        "Without NAME, commands use your default machine (the first one you created, or the one\n"
        "set with set-default). Run 'container machine COMMAND --help' for a command's options.\n";

/* ---- helpers ---- */

/* "8G", "1.5G", "512M": binary units; whole numbers without decimals, else one decimal. */
static void format_mem(uint64_t bytes, char *buf, size_t len) {
        static const char units[] = "KMGTP";
        int u = -1;
        uint64_t div = 1;
        while (u < 4 && bytes >= div * 1024) {
                div *= 1024;
                u++;
        }
        if (u < 0) {
                snprintf(buf, len, "%lluB", (unsigned long long)bytes);
                return;
        }
        if (bytes % div == 0) {
                snprintf(buf, len, "%llu%c", (unsigned long long)(bytes / div), units[u]);
                return;
        }
        snprintf(buf, len, "%.1f%c", (double)bytes / (double)div, units[u]);
        char *dot = strstr(buf, ".0");
        if (dot)
                memmove(dot, dot + 2, strlen(dot + 2) + 1);
}

/* Handles -h/--help and usage errors the same way for every verb: returns 0 to go on, or the
 * exit status (0 after help, 64 after a usage error) with *done set. */
static int opt_common(int c, const char *usage, bool *done) {
        if (c == 'h') {
                fputs(usage, stdout);
                *done = true;
                return 0;
        }
        fputc('\n', stderr);
        fputs(usage, stderr);
        *done = true;
        return EXIT_USAGE;
}

static char *absolute_path(const char *p) {
        if (!p || !*p || p[0] == '/')
                return strdup(p ? p : "");
        char cwd[PATH_MAX];
        if (!getcwd(cwd, sizeof cwd))
                return strdup(p);
        char *r = NULL;
        if (asprintf(&r, "%s/%s", cwd, p) < 0)
                return NULL;
        return r;
}

/* ---- create ---- */

static int machine_create(int argc, char **argv) {
        static const char usage[] =
                "Usage: container machine create [OPTIONS] IMAGE\n"
                "\n"
                "Creates a machine from IMAGE (pulled when not in the store; it must have /sbin/init),\n"
                "boots it and prints its name. Your first machine becomes your default.\n"
                "\n"
                "Options:\n"
                "  -n, --name NAME          machine name (default: from the image, e.g. alpine-latest)\n"
                "      --cpus N             CPUs (default: half the host's, at least min(4, host CPUs))\n"
                "      --memory SIZE        memory, e.g. 4G, 1.5G, 2048M; at least 1G (default: half the host's)\n"
                "      --home-mount MODE    your home directory inside: rw (default), ro or none\n"
                "      --runtime RUNTIME    auto (default), vm or ns\n"
                "      --virtualization     nested virtualization (/dev/kvm inside the machine)\n"
                "      --kernel PATH        guest kernel for the vm runtime\n"
                "      --set-default        make it your default machine\n"
                "      --no-boot            create it but do not boot it\n"
                "      --platform OS/ARCH   image platform to use (default: the host's)\n"
                "  -q, --quiet              no pull progress\n";
        static const struct option opts[] = {
                { "name", required_argument, NULL, 'n' },      { "cpus", required_argument, NULL, 'c' },
                { "memory", required_argument, NULL, 'm' },    { "home-mount", required_argument, NULL, 'H' },
                { "runtime", required_argument, NULL, 'r' },   { "virtualization", no_argument, NULL, 'V' },
                { "kernel", required_argument, NULL, 'k' },    { "set-default", no_argument, NULL, 'D' },
                { "no-boot", no_argument, NULL, 'B' },         { "platform", required_argument, NULL, 'p' },
                { "quiet", no_argument, NULL, 'q' },           { "help", no_argument, NULL, 'h' },
                {},
        };
        _cleanup_json_ json_t *params = json_object();
        bool quiet = false, done = false;
        int c;
        while ((c = getopt_long(argc, argv, "n:qh", opts, NULL)) >= 0) {
                switch (c) {
                case 'n': json_object_set_new(params, "name", json_string(optarg)); break;
                case 'c': json_object_set_new(params, "cpus", json_string(optarg)); break;
                case 'm': json_object_set_new(params, "memory", json_string(optarg)); break;
                case 'H': json_object_set_new(params, "homeMount", json_string(optarg)); break;
                case 'r': json_object_set_new(params, "runtime", json_string(optarg)); break;
                case 'V': json_object_set_new(params, "virtualization", json_true()); break;
                case 'k': {
                        _cleanup_free_ char *abs = absolute_path(optarg);
                        json_object_set_new(params, "kernel", json_string(abs ? abs : optarg));
                        break;
                }
                case 'D': json_object_set_new(params, "setDefault", json_true()); break;
                case 'B': json_object_set_new(params, "noBoot", json_true()); break;
                case 'p': json_object_set_new(params, "platform", json_string(optarg)); break;
                case 'q': quiet = true; break;
                default: {
                        int r = opt_common(c, usage, &done);
                        if (done)
                                return r;
                }
                }
        }
        if (argc - optind != 1)
                return cli_usage_error(usage, argc - optind < 1 ? "create needs an image" : "create takes one image");
        json_object_set_new(params, "image", json_string(argv[optind]));
        json_object_set_new(params, "progress", json_boolean(!quiet));
        struct progress *p = progress_new(quiet);
        _cleanup_json_ json_t *res = NULL;
        int r = cli_call("machine.create", json_incref(params), NULL, 0, &res, progress_event, p);
        progress_finish(p);
        if (r)
                return r;
        printf("%s\n", json_get_str(res, "name"));
        const char *berr = json_get_str(res, "bootError");
        if (berr)
                return cli_error("%s", berr);
        return 0;
}

/* ---- run ---- */

static void env_set(json_t *env, const char *kv) {
        const char *eq = strchr(kv, '=');
        if (eq) {
                _cleanup_free_ char *k = strndup(kv, (size_t)(eq - kv));
                if (k && *k)
                        json_object_set_new(env, k, json_string(eq + 1));
        } else {
                /* a bare name copies the host's value, when there is one */
                const char *v = getenv(kv);
                if (v && *kv)
                        json_object_set_new(env, kv, json_string(v));
        }
}

static int env_file(json_t *env, const char *path) {
        _cleanup_fclose_ FILE *f = fopen(path, "re");
        if (!f)
                return cli_error("cannot read env file %s: %s", path, strerror(errno));
        char *line = NULL;
        size_t cap = 0;
        ssize_t n;
        while ((n = getline(&line, &cap, f)) >= 0) {
                while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
                        line[--n] = 0;
                const char *s = line;
                while (*s == ' ' || *s == '\t')
                        s++;
                if (!*s || *s == '#')
                        continue;
                env_set(env, s);
        }
        free(line);
        return 0;
}

static bool is_uint(const char *s) {
        if (!s || !*s)
                return false;
        for (; *s; s++)
                if (*s < '0' || *s > '9')
                        return false;
        return true;
}

/* Boots the machine when needed; returns its name and session socket. */
static int run_prepare(const char *name, char **ret_name, char **ret_socket) {
        json_t *params = json_object();
        if (name)
                json_object_set_new(params, "name", json_string(name));
        _cleanup_json_ json_t *res = NULL;
        int r = cli_call("machine.resolve", params, NULL, 0, &res, NULL, NULL);
        if (r)
                return r;
        const char *state = json_get_str(res, "state");
        if (!state || !streq(state, "running")) {
                json_t *p2 = json_pack("{s:s}", "name", json_get_str(res, "name"));
                json_decref(res);
                res = NULL;
                r = cli_call("machine.start", p2, NULL, 0, &res, NULL, NULL);
                if (r)
                        return r;
        }
        const char *n = json_get_str(res, "name"), *sock = json_get_str(res, "socket");
        if (!n || !sock)
                return cli_error("the apiserver did not say where the machine's session socket is");
        *ret_name = strdup(n);
        *ret_socket = strdup(sock);
        return 0;
}

static int machine_run(int argc, char **argv) {
        static const char usage[] =
                "Usage: container machine run [-n NAME] [OPTIONS] [CMD [ARG...]]\n"
                "\n"
                "Runs CMD with its arguments untouched (no shell in between: use 'sh -c' for shell syntax)\n"
                "in the machine, as you, in your current directory when the machine shares it. Without\n"
                "CMD, your login shell. Boots the machine first when it is stopped. Exits with CMD's status.\n"
                "Options end at the first word that is not an option, or at '--'.\n"
                "\n"
                "Options:\n"
                "  -n, --name NAME          the machine (default: your default machine)\n"
                "      --root               run as root\n"
                "  -u, --user USER          run as USER (name or uid[:gid]) of the machine\n"
                "      --uid UID            run with this uid\n"
                "      --gid GID            run with this gid\n"
                "  -w, --cwd, --workdir DIR working directory inside the machine\n"
                "  -e, --env KEY=VALUE      set a variable (-e KEY copies your value of KEY)\n"
                "      --env-file FILE      read KEY=VALUE lines from FILE (before -e)\n"
                "  -t, --tty                allocate a terminal even when not on one\n"
                "  -T, --no-tty             never allocate a terminal\n"
                "  -d, --detach             only boot the machine, print its name and exit\n";
        static const struct option opts[] = {
                { "name", required_argument, NULL, 'n' },    { "root", no_argument, NULL, 'R' },
                { "user", required_argument, NULL, 'u' },    { "uid", required_argument, NULL, 'U' },
                { "gid", required_argument, NULL, 'G' },     { "cwd", required_argument, NULL, 'w' },
                { "workdir", required_argument, NULL, 'w' }, { "env", required_argument, NULL, 'e' },
                { "env-file", required_argument, NULL, 'E' }, { "tty", no_argument, NULL, 't' },
                { "no-tty", no_argument, NULL, 'T' },        { "detach", no_argument, NULL, 'd' },
                { "help", no_argument, NULL, 'h' },          {},
        };
        const char *name = NULL, *user = NULL, *workdir = NULL, *uid = NULL, *gid = NULL;
        bool root = false, force_tty = false, no_tty = false, detach = false, done = false;
        _cleanup_strv_ char **envs = NULL, **env_files = NULL;
        int c;
        while ((c = getopt_long(argc, argv, "+n:u:w:e:tTdh", opts, NULL)) >= 0) {
                switch (c) {
                case 'n': name = optarg; break;
                case 'R': root = true; break;
                case 'u': user = optarg; break;
                case 'U': uid = optarg; break;
                case 'G': gid = optarg; break;
                case 'w': workdir = optarg; break;
                case 'e': strv_push_dup(&envs, optarg); break;
                case 'E': strv_push_dup(&env_files, optarg); break;
                case 't': force_tty = true; break;
                case 'T': no_tty = true; break;
                case 'd': detach = true; break;
                default: {
                        int r = opt_common(c, usage, &done);
                        if (done)
                                return r;
                }
                }
        }
        if (uid && !is_uint(uid))
                return cli_usage_error(usage, "--uid needs a number, not '%s'", uid);
        if (gid && !is_uint(gid))
                return cli_usage_error(usage, "--gid needs a number, not '%s'", gid);

        /* environment: the host's terminal and locale, then --env-file, then -e */
        _cleanup_json_ json_t *env = json_object();
        for (char **e = environ; e && *e; e++)
                if (strncmp(*e, "TERM=", 5) == 0 || strncmp(*e, "LANG=", 5) == 0 || strncmp(*e, "LC_", 3) == 0)
                        env_set(env, *e);
        for (char **f = env_files; f && *f; f++) {
                int r = env_file(env, *f);
                if (r)
                        return r;
        }
        for (char **e = envs; e && *e; e++)
                env_set(env, *e);

        _cleanup_free_ char *mname = NULL, *sock = NULL;
        int r = run_prepare(name, &mname, &sock);
        if (r)
                return r;
        if (detach) {
                printf("%s\n", mname);
                return 0;
        }
        if (!cli_session_run)
                return cli_error("this build of container has no session client");

        bool tty = !no_tty && (force_tty || (isatty(STDIN_FILENO) && isatty(STDOUT_FILENO)));
        _cleanup_json_ json_t *spec = json_object();
        json_t *args = json_null();
        if (optind < argc) {
                args = json_array();
                for (int i = optind; i < argc; i++)
                        json_array_append_new(args, json_string(argv[i]));
        }
        json_object_set_new(spec, "argv", args);
        json_object_set_new(spec, "env", json_incref(env));
        char cwd[PATH_MAX];
        json_object_set_new(spec, "cwd", getcwd(cwd, sizeof cwd) ? json_string(cwd) : json_null());
        json_object_set_new(spec, "workdir", workdir ? json_string(workdir) : json_null());
        json_object_set_new(spec, "user", user ? json_string(user) : json_null());
        json_object_set_new(spec, "root", json_boolean(root));
        if (uid)
                json_object_set_new(spec, "uid", json_integer(strtoll(uid, NULL, 10)));
        if (gid)
                json_object_set_new(spec, "gid", json_integer(strtoll(gid, NULL, 10)));
        json_object_set_new(spec, "tty", json_boolean(tty));
        struct winsize ws = { 0 };
        if (tty && (ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 || ioctl(STDIN_FILENO, TIOCGWINSZ, &ws) == 0)) {
                json_object_set_new(spec, "rows", json_integer(ws.ws_row));
                json_object_set_new(spec, "cols", json_integer(ws.ws_col));
        }
        fflush(stdout);
        return cli_session_run(sock, spec, tty);
}

/* ---- ls, inspect ---- */

static int cmp_by_name(const void *a, const void *b) {
        const char *x = json_get_str(*(json_t *const *)a, "name"), *y = json_get_str(*(json_t *const *)b, "name");
        return strcmp(x ? x : "", y ? y : "");
}

static int machine_ls(int argc, char **argv) {
        static const char usage[] = "Usage: container machine ls [-q] [--format json|table]   (alias: list)\n"
                                    "\n"
                                    "Lists your machines (root sees everyone's).\n"
                                    "  -q, --quiet       only the names\n"
                                    "      --format F    table (default) or json\n";
        static const struct option opts[] = { { "quiet", no_argument, NULL, 'q' },
                                              { "format", required_argument, NULL, 'f' },
                                              { "help", no_argument, NULL, 'h' }, {} };
        bool quiet = false, json = false, done = false;
        int c;
        while ((c = getopt_long(argc, argv, "qh", opts, NULL)) >= 0) {
                if (c == 'q')
                        quiet = true;
                else if (c == 'f') {
                        if (streq(optarg, "json"))
                                json = true;
                        else if (!streq(optarg, "table"))
                                return cli_usage_error(usage, "unknown format '%s'", optarg);
                } else {
                        int r = opt_common(c, usage, &done);
                        if (done)
                                return r;
                }
        }
        if (optind < argc)
                return cli_usage_error(usage, "unexpected argument '%s'", argv[optind]);
        _cleanup_json_ json_t *res = NULL;
        int r = cli_call("machine.list", NULL, NULL, 0, &res, NULL, NULL);
        if (r)
                return r;
        size_t n = json_array_size(res);
        _cleanup_free_ json_t **items = calloc(n + 1, sizeof(json_t *));
        for (size_t i = 0; i < n; i++)
                items[i] = json_array_get(res, i);
        qsort(items, n, sizeof(json_t *), cmp_by_name);
        if (json) {
                _cleanup_json_ json_t *sorted = json_array();
                for (size_t i = 0; i < n; i++)
                        json_array_append(sorted, items[i]);
                print_json(sorted);
                return 0;
        }
        if (quiet) {
                for (size_t i = 0; i < n; i++)
                        printf("%s\n", json_get_str(items[i], "name"));
                return 0;
        }
        static const char *const headers[] = { "NAME", "CREATED", "IP", "CPUS", "MEMORY", "DISK", "STATE", "DEFAULT" };
        struct table *t = table_new(headers, ELEMENTSOF(headers));
        for (size_t i = 0; i < n; i++) {
                json_t *m = items[i];
                char created[32], cpus[16] = "-", mem[16] = "-", disk[16] = "-";
                format_time_iso(json_get_str(m, "createdDate"), created, sizeof created);
                json_t *v = json_object_get(m, "cpus");
                if (json_is_integer(v))
                        snprintf(cpus, sizeof cpus, "%lld", (long long)json_integer_value(v));
                v = json_object_get(m, "memory");
                if (json_is_integer(v))
                        format_mem((uint64_t)json_integer_value(v), mem, sizeof mem);
                v = json_object_get(m, "diskSize");
                if (json_is_integer(v))
                        format_mem((uint64_t)json_integer_value(v), disk, sizeof disk);
                const char *ip = json_get_str(m, "ipAddress"), *st = json_get_str(m, "status");
                const char *cells[] = { json_get_str(m, "name"), created, ip ? ip : "-", cpus, mem, disk,
                                        st ? st : "-", json_is_true(json_object_get(m, "default")) ? "*" : "" };
                table_add(t, cells);
        }
        table_print(t);
        table_free(t);
        return 0;
}

/* Verbs that take at most one optional NAME and no options of their own (besides --help). */
static int name_only_opts(int argc, char **argv, const char *usage, const char **ret_name, int *ret_exit) {
        static const struct option opts[] = { { "help", no_argument, NULL, 'h' }, {} };
        bool done = false;
        int c;
        while ((c = getopt_long(argc, argv, "h", opts, NULL)) >= 0) {
                *ret_exit = opt_common(c, usage, &done);
                if (done)
                        return -1;
        }
        if (argc - optind > 1) {
                *ret_exit = cli_usage_error(usage, "too many arguments");
                return -1;
        }
        *ret_name = optind < argc ? argv[optind] : NULL;
        return 0;
}

static json_t *name_params(const char *name) {
        json_t *p = json_object();
        if (name)
                json_object_set_new(p, "name", json_string(name));
        return p;
}

static int machine_inspect(int argc, char **argv) {
        static const char usage[] = "Usage: container machine inspect [NAME]\n"
                                    "\n"
                                    "Prints a JSON array with the machine's details (default: your default machine).\n";
        const char *name = NULL;
        int ex = 0;
        if (name_only_opts(argc, argv, usage, &name, &ex) < 0)
                return ex;
        _cleanup_json_ json_t *res = NULL;
        int r = cli_call("machine.inspect", name_params(name), NULL, 0, &res, NULL, NULL);
        if (r)
                return r;
        _cleanup_json_ json_t *a = json_array();
        json_array_append(a, res);
        print_json(a);
        return 0;
}

/* ---- lifecycle ---- */

static int machine_start(int argc, char **argv) {
        static const char usage[] = "Usage: container machine start [NAME]\n"
                                    "\n"
                                    "Boots the machine (default: your default machine); nothing happens when it runs.\n";
        const char *name = NULL;
        int ex = 0;
        if (name_only_opts(argc, argv, usage, &name, &ex) < 0)
                return ex;
        _cleanup_json_ json_t *res = NULL;
        int r = cli_call("machine.start", name_params(name), NULL, 0, &res, NULL, NULL);
        if (r)
                return r;
        printf("%s\n", json_get_str(res, "name"));
        return 0;
}

static int stop_like(int argc, char **argv, const char *method, const char *usage) {
        static const struct option opts[] = { { "time", required_argument, NULL, 't' },
                                              { "help", no_argument, NULL, 'h' }, {} };
        bool done = false;
        long timeout = -1;
        int c;
        while ((c = getopt_long(argc, argv, "t:h", opts, NULL)) >= 0) {
                if (c == 't') {
                        char *end = NULL;
                        timeout = strtol(optarg, &end, 10);
                        if (!*optarg || *end || timeout < 0 || timeout > 86399)
                                return cli_usage_error(usage, "--time needs a number of seconds, not '%s'", optarg);
                } else {
                        int r = opt_common(c, usage, &done);
                        if (done)
                                return r;
                }
        }
        if (argc - optind > 1)
                return cli_usage_error(usage, "too many arguments");
        json_t *params = name_params(optind < argc ? argv[optind] : NULL);
        if (timeout >= 0)
                json_object_set_new(params, "time", json_integer(timeout));
        _cleanup_json_ json_t *res = NULL;
        int r = cli_call(method, params, NULL, 0, &res, NULL, NULL);
        if (r)
                return r;
        printf("%s\n", json_get_str(res, "name"));
        return 0;
}

static int machine_stop(int argc, char **argv) {
        static const char usage[] =
                "Usage: container machine stop [--time N] [NAME]\n"
                "\n"
                "Shuts the machine down through its own init (services stop cleanly), then stops what is\n"
                "left after N seconds (default 10). Nothing happens when it is already stopped.\n"
                "  -t, --time N   seconds to wait for init's shutdown\n";
        return stop_like(argc, argv, "machine.stop", usage);
}

static int machine_restart(int argc, char **argv) {
        static const char usage[] = "Usage: container machine restart [--time N] [NAME]\n"
                                    "\n"
                                    "Stops the machine (as 'stop' does) and boots it again.\n"
                                    "  -t, --time N   seconds to wait for init's shutdown\n";
        return stop_like(argc, argv, "machine.restart", usage);
}

static int machine_set(int argc, char **argv) {
        static const char usage[] =
                "Usage: container machine set [-n NAME] KEY=VALUE...\n"
                "\n"
                "Changes the machine's settings; they take effect at its next boot.\n"
                "  cpus=N                 number of CPUs\n"
                "  memory=SIZE            e.g. 4G, 1.5G; at least 1G\n"
                "  home-mount=rw|ro|none  how your home directory is shared\n"
                "  virtualization=true|false  nested virtualization\n"
                "  kernel=PATH            guest kernel of the vm runtime ('kernel=' goes back to the default)\n"
                "Options:\n"
                "  -n, --name NAME        the machine (default: your default machine)\n";
        static const struct option opts[] = { { "name", required_argument, NULL, 'n' },
                                              { "help", no_argument, NULL, 'h' }, {} };
        const char *name = NULL;
        bool done = false;
        int c;
        while ((c = getopt_long(argc, argv, "n:h", opts, NULL)) >= 0) {
                if (c == 'n')
                        name = optarg;
                else {
                        int r = opt_common(c, usage, &done);
                        if (done)
                                return r;
                }
        }
        if (optind >= argc)
                return cli_usage_error(usage, "set needs at least one KEY=VALUE");
        json_t *settings = json_object();
        for (int i = optind; i < argc; i++) {
                const char *eq = strchr(argv[i], '=');
                if (!eq || eq == argv[i]) {
                        json_decref(settings);
                        return cli_usage_error(usage, "'%s' is not KEY=VALUE", argv[i]);
                }
                _cleanup_free_ char *k = strndup(argv[i], (size_t)(eq - argv[i]));
                const char *v = eq + 1;
                _cleanup_free_ char *abs = NULL;
                if (streq(k, "kernel") && *v)
                        v = abs = absolute_path(v);
                json_object_set_new(settings, k, json_string(v ? v : ""));
        }
        json_t *params = name_params(name);
        json_object_set_new(params, "settings", settings);
        _cleanup_json_ json_t *res = NULL;
        int r = cli_call("machine.set", params, NULL, 0, &res, NULL, NULL);
        if (r)
                return r;
        if (json_is_true(json_object_get(res, "running")))
                fprintf(stderr, "Note: Changes will take effect after stopping and restarting '%s'.\n",
                        json_get_str(res, "name"));
        return 0;
}

static int machine_set_default(int argc, char **argv) {
        static const char usage[] = "Usage: container machine set-default NAME\n"
                                    "\n"
                                    "Makes NAME the machine that commands use when no name is given.\n";
        const char *name = NULL;
        int ex = 0;
        if (name_only_opts(argc, argv, usage, &name, &ex) < 0)
                return ex;
        if (!name)
                return cli_usage_error(usage, "set-default needs a machine name");
        _cleanup_json_ json_t *res = NULL;
        return cli_call("machine.set-default", name_params(name), NULL, 0, &res, NULL, NULL);
}

static volatile sig_atomic_t interrupted;
static void on_interrupt(int sig) {
        (void)sig;
        interrupted = 1;
}

static int machine_logs(int argc, char **argv) {
        static const char usage[] =
                "Usage: container machine logs [--boot] [-f] [-n N] [NAME]\n"
                "\n"
                "Prints the machine's console output: what its init and services write to the console.\n"
                "  --boot          the VM's kernel and agent log instead (vm runtime)\n"
                "  -f, --follow    keep printing new output until interrupted\n"
                "  -n, --lines N   only the last N lines\n";
        static const struct option opts[] = { { "boot", no_argument, NULL, 'b' },
                                              { "follow", no_argument, NULL, 'f' },
                                              { "lines", required_argument, NULL, 'n' },
                                              { "help", no_argument, NULL, 'h' }, {} };
        bool boot = false, follow = false, done = false;
        long lines = -1;
        int c;
        while ((c = getopt_long(argc, argv, "fn:h", opts, NULL)) >= 0) {
                if (c == 'b')
                        boot = true;
                else if (c == 'f')
                        follow = true;
                else if (c == 'n') {
                        char *end = NULL;
                        lines = strtol(optarg, &end, 10);
                        if (!*optarg || *end || lines < 0)
                                return cli_usage_error(usage, "-n needs a number of lines, not '%s'", optarg);
                } else {
                        int r = opt_common(c, usage, &done);
                        if (done)
                                return r;
                }
        }
        if (argc - optind > 1)
                return cli_usage_error(usage, "too many arguments");
        const char *name = optind < argc ? argv[optind] : NULL;
        json_int_t offset = -1;
        if (follow) {
                struct sigaction sa = { .sa_handler = on_interrupt };
                sigaction(SIGINT, &sa, NULL);
                sigaction(SIGTERM, &sa, NULL);
        }
        do {
                json_t *params = name_params(name);
                if (boot)
                        json_object_set_new(params, "boot", json_true());
                if (offset >= 0)
                        json_object_set_new(params, "offset", json_integer(offset));
                else if (lines >= 0)
                        json_object_set_new(params, "lines", json_integer(lines));
                _cleanup_json_ json_t *res = NULL;
                int r = cli_call("machine.logs", params, NULL, 0, &res, NULL, NULL);
                if (r)
                        return r;
                const char *data = json_get_str(res, "data");
                if (data)
                        fputs(data, stdout);
                fflush(stdout);
                offset = json_integer_value(json_object_get(res, "offset"));
                if (follow && !interrupted) {
                        struct timespec ts = { 0, 300 * 1000 * 1000 };
                        nanosleep(&ts, NULL);
                }
        } while (follow && !interrupted);
        return 0;
}

static int machine_rm(int argc, char **argv) {
        static const char usage[] = "Usage: container machine rm NAME...   (alias: delete)\n"
                                    "\n"
                                    "Stops the machines and deletes them with everything written inside them.\n";
        static const struct option opts[] = { { "force", no_argument, NULL, 'f' },
                                              { "help", no_argument, NULL, 'h' }, {} };
        bool done = false;
        int c;
        while ((c = getopt_long(argc, argv, "fh", opts, NULL)) >= 0) {
                if (c == 'f')
                        continue; /* accepted for habit's sake: rm never needs it */
                int r = opt_common(c, usage, &done);
                if (done)
                        return r;
        }
        if (optind >= argc)
                return cli_usage_error(usage, "rm needs at least one machine name");
        json_t *names = json_array();
        for (int i = optind; i < argc; i++)
                json_array_append_new(names, json_string(argv[i]));
        _cleanup_json_ json_t *res = NULL;
        int r = cli_call("machine.rm", json_pack("{s:o}", "names", names), NULL, 0, &res, NULL, NULL);
        if (r)
                return r;
        size_t i;
        json_t *v;
        json_array_foreach(json_object_get(res, "removed"), i, v) printf("%s\n", json_string_value(v));
        int ret = 0;
        json_array_foreach(json_object_get(res, "errors"), i, v) ret = cli_error("%s", json_get_str(v, "message"));
        return ret;
}

static const struct verb machine_verbs[] = {
        { "create", NULL, machine_create, "create a machine" },
        { "run", NULL, machine_run, "run a command in a machine" },
        { "ls", "list", machine_ls, "list machines" },
        { "inspect", NULL, machine_inspect, "details as JSON" },
        { "start", NULL, machine_start, "boot a machine" },
        { "stop", NULL, machine_stop, "stop a machine" },
        { "restart", NULL, machine_restart, "stop and boot a machine" },
        { "set", NULL, machine_set, "change settings" },
        { "set-default", NULL, machine_set_default, "choose the default machine" },
        { "logs", NULL, machine_logs, "console output" },
        { "rm", "delete", machine_rm, "delete machines" },
        {},
};

int cmd_machine(int argc, char **argv) {
        return cli_dispatch("machine", machine_help, machine_verbs, argc, argv);
}
