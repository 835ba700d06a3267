/* container system: start, stop, status, property. */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cli.h"
#include "util/config.h"
#include "util/json.h"

static const char system_help[] =
        "Usage: container system COMMAND\n"
        "\n"
        "Commands:\n"
        "  start [--root DIR]       start the apiserver in the background and wait until it answers\n"
        "  stop                     stop the apiserver\n"
        "  status [--format json]   state, version, directories and usable runtimes\n"
        "  property ls|get KEY|set KEY VALUE\n"
        "                           read and write the system configuration ($CONTAINER_ROOT/config.json)\n";

/* The apiserver binary: $CONTAINER_APISERVER, next to this program (installed), in the build
 * tree beside it, or on PATH. */
static char *find_apiserver(void) {
        return cm_find_program("CONTAINER_APISERVER", "container-apiserver", "apiserver");
}

static void print_runtimes(json_t *status) {
        json_t *rts = json_object_get(status, "runtimes");
        const char *names[] = { "vm", "ns" };
        for (size_t i = 0; i < ELEMENTSOF(names); i++) {
                json_t *rt = json_object_get(rts, names[i]);
                if (!rt)
                        continue;
                bool ok = json_is_true(json_object_get(rt, "available"));
                const char *why = json_get_str(rt, "reason");
                if (ok)
                        printf("%s: available%s%s%s\n", names[i], why ? " (" : "", why ? why : "", why ? ")" : "");
                else
                        printf("%s: unavailable (%s)\n", names[i], why ? why : "unknown reason");
        }
}

static int system_start(int argc, char **argv) {
        static const char usage[] = "Usage: container system start [--root DIR]\n"
                                    "  --root DIR   state directory (default $CONTAINER_ROOT or /var/lib/container)\n";
        static const struct option opts[] = { { "root", required_argument, NULL, 'r' },
                                              { "help", no_argument, NULL, 'h' }, {} };
        const char *root = NULL;
        int c;
        while ((c = getopt_long(argc, argv, "h", opts, NULL)) >= 0) {
                if (c == 'r')
                        root = optarg;
                else if (c == 'h') {
                        fputs(usage, stdout);
                        return 0;
                } else
                        return cli_usage_error(usage, "invalid option");
        }
        if (optind < argc)
                return cli_usage_error(usage, "unexpected argument '%s'", argv[optind]);

        _cleanup_json_ json_t *status = NULL;
        if (cli_try_call("system.status", NULL, &status, NULL) >= 0) {
                const char *running_root = json_get_str(status, "root");
                if (root && running_root) {
                        char abs[PATH_MAX];
                        if (realpath(root, abs) && !streq(abs, running_root))
                                return cli_error("container system is already running with root %s; stop it first "
                                                 "to use %s",
                                                 running_root, abs);
                }
                printf("container system is already running (root %s)\n", running_root ? running_root : "?");
                print_runtimes(status);
                return 0;
        }
        if (geteuid() != 0)
                return cli_error("container system start needs root (the apiserver manages mounts, "
                                 "namespaces and the network)");
        _cleanup_free_ char *bin = find_apiserver();
        fprintf(stderr, "Starting container-apiserver...\n");
        pid_t pid = fork();
        if (pid < 0)
                return cli_error("fork: %s", strerror(errno));
        if (pid == 0) {
                if (root)
                        setenv("CONTAINER_ROOT", root, 1);
                execlp(bin, bin, (char *)NULL);
                fprintf(stderr, "Error: cannot run %s: %s\n", bin, strerror(errno));
                _exit(127);
        }
        int ws = 0;
        while (waitpid(pid, &ws, 0) < 0 && errno == EINTR)
                ;
        if (!WIFEXITED(ws) || WEXITSTATUS(ws) != 0)
                return cli_error("the apiserver did not start (see %s/apiserver.log)", cm_run_dir());
        /* The daemon reported readiness; make sure it answers. */
        _cleanup_free_ char *msg = NULL;
        for (int i = 0; i < 100; i++) {
                free(msg);
                msg = NULL;
                if (cli_try_call("system.status", NULL, &status, &msg) >= 0)
                        break;
                poll(NULL, 0, 50);
        }
        if (!status)
                return cli_error("the apiserver started but does not answer: %s", msg ? msg : "?");
        printf("container system started (root %s)\n", json_get_str(status, "root"));
        print_runtimes(status);
        return 0;
}

static int system_stop(int argc, char **argv) {
        static const char usage[] = "Usage: container system stop [--machines]\n"
                                    "  Stops the apiserver. Running machines keep running unless --machines is given.\n"
                                    "  --machines   stop every machine first (graceful, through each machine's init)\n";
        bool machines = false;
        for (int i = 1; i < argc; i++) {
                if (streq(argv[i], "--help") || streq(argv[i], "-h")) {
                        fputs(usage, stdout);
                        return 0;
                }
                if (streq(argv[i], "--machines"))
                        machines = true;
                else
                        return cli_usage_error(usage, "unexpected argument '%s'", argv[i]);
        }
        _cleanup_json_ json_t *res = NULL;
        _cleanup_free_ char *msg = NULL;
        if (machines) {
                _cleanup_json_ json_t *st = NULL;
                if (cli_try_call("machine.stop-all", NULL, &st, &msg) < 0 && msg && !strstr(msg, "not running"))
                        return cli_error("%s", msg);
                size_t i;
                json_t *e;
                json_array_foreach(json_object_get(st, "stopped"), i, e) printf("stopped %s\n", json_string_value(e));
                json_array_foreach(json_object_get(st, "errors"), i, e)
                        fprintf(stderr, "Error: %s\n", json_is_string(e) ? json_string_value(e)
                                                                         : json_get_str(e, "message"));
                free(msg);
                msg = NULL;
        }
        if (cli_try_call("system.stop", NULL, &res, &msg) < 0) {
                if (msg && strstr(msg, "not running")) {
                        printf("container system is not running\n");
                        return 0;
                }
                return cli_error("%s", msg ? msg : "cannot stop the apiserver");
        }
        /* Wait until the socket is gone (in-flight requests are allowed to finish). */
        for (int i = 0; i < 700; i++) {
                struct stat st;
                if (stat(cm_api_socket_path(), &st) < 0)
                        break;
                poll(NULL, 0, 50);
        }
        printf("container system stopped\n");
        return 0;
}

static int system_status(int argc, char **argv) {
        static const char usage[] = "Usage: container system status [--format json|table]\n";
        static const struct option opts[] = { { "format", required_argument, NULL, 'f' },
                                              { "help", no_argument, NULL, 'h' }, {} };
        bool json = false;
        int c;
        while ((c = getopt_long(argc, argv, "h", opts, NULL)) >= 0) {
                if (c == 'f') {
                        if (streq(optarg, "json"))
                                json = true;
                        else if (!streq(optarg, "table"))
                                return cli_usage_error(usage, "unknown format '%s'", optarg);
                } else if (c == 'h') {
                        fputs(usage, stdout);
                        return 0;
                } else
                        return cli_usage_error(usage, "invalid option");
        }
        if (optind < argc)
                return cli_usage_error(usage, "unexpected argument '%s'", argv[optind]);
        _cleanup_json_ json_t *st = NULL;
        _cleanup_free_ char *msg = NULL;
        if (cli_try_call("system.status", NULL, &st, &msg) < 0) {
                if (json) {
                        _cleanup_json_ json_t *j = json_pack("{s:s,s:s}", "status", "stopped", "message",
                                                             msg ? msg : "");
                        print_json(j);
                } else
                        printf("apiserver: not running\n");
                return cli_error("%s", msg ? msg : "container system is not running");
        }
        if (json) {
                print_json(st);
                return 0;
        }
        json_t *net = json_object_get(st, "network");
        printf("apiserver: running (pid %lld)\n", (long long)json_integer_value(json_object_get(st, "pid")));
        printf("version: %s\n", json_get_str(st, "version"));
        printf("root: %s\n", json_get_str(st, "root"));
        printf("run: %s\n", json_get_str(st, "run"));
        printf("host kernel: %s\n", json_get_str(st, "hostKernel"));
        printf("default kernel: none (the vm runtime is not built yet)\n");
        const char *mode = json_get_str(net, "mode");
        if (mode && streq(mode, "none"))
                printf("network: none (network.mode=none: machines have lo only)\n");
        else
                printf("network: %s on %s\n", json_get_str(net, "subnet"), json_get_str(net, "bridge"));
        print_runtimes(st);
        return 0;
}

static void print_value(json_t *v) {
        if (json_is_string(v))
                printf("%s\n", json_string_value(v));
        else if (json_is_integer(v))
                printf("%lld\n", (long long)json_integer_value(v));
        else if (json_is_array(v)) {
                size_t i;
                json_t *e;
                json_array_foreach(v, i, e) printf("%s%s", i ? "," : "", json_string_value(e));
                printf("\n");
        } else
                print_json(v);
}

static int system_property(int argc, char **argv) {
        static const char usage[] = "Usage: container system property ls [--format json]\n"
                                    "       container system property get KEY\n"
                                    "       container system property set KEY VALUE   (lists: comma-separated)\n";
        if (argc < 2)
                return cli_usage_error(usage, "missing property command");
        const char *v = argv[1];
        if (streq(v, "--help") || streq(v, "-h")) {
                fputs(usage, stdout);
                return 0;
        }
        if (streq(v, "ls") || streq(v, "list")) {
                bool json = argc == 4 && streq(argv[2], "--format") && streq(argv[3], "json");
                if (argc != 2 && !json)
                        return cli_usage_error(usage, "unexpected arguments");
                _cleanup_json_ json_t *res = NULL;
                if (cli_call("system.property.list", NULL, NULL, 0, &res, NULL, NULL))
                        return 1;
                if (json) {
                        print_json(res);
                        return 0;
                }
                const char *hdr[] = { "KEY", "TYPE", "VALUE", "DESCRIPTION" };
                struct table *t = table_new(hdr, 4);
                size_t i;
                json_t *e;
                json_array_foreach(res, i, e) {
                        json_t *val = json_object_get(e, "value");
                        char buf[1024] = "";
                        if (json_is_array(val)) {
                                size_t k;
                                json_t *s;
                                json_array_foreach(val, k, s) {
                                        if (k)
                                                strncat(buf, ",", sizeof buf - strlen(buf) - 1);
                                        strncat(buf, json_string_value(s), sizeof buf - strlen(buf) - 1);
                                }
                        } else if (json_is_integer(val))
                                snprintf(buf, sizeof buf, "%lld", (long long)json_integer_value(val));
                        else if (json_is_string(val))
                                snprintf(buf, sizeof buf, "%s", json_string_value(val));
                        const char *row[] = { json_get_str(e, "key"), json_get_str(e, "type"), buf[0] ? buf : "-",
                                              json_get_str(e, "description") };
                        table_add(t, row);
                }
                table_print(t);
                table_free(t);
                return 0;
        }
        if (streq(v, "get")) {
                if (argc != 3)
                        return cli_usage_error(usage, "property get needs exactly one KEY");
                _cleanup_json_ json_t *res = NULL;
                if (cli_call("system.property.get", json_pack("{s:s}", "key", argv[2]), NULL, 0, &res, NULL, NULL))
                        return 1;
                print_value(json_object_get(res, "value"));
                return 0;
        }
        if (streq(v, "set")) {
                if (argc != 4)
                        return cli_usage_error(usage, "property set needs a KEY and a VALUE");
                _cleanup_json_ json_t *res = NULL;
                return cli_call("system.property.set", json_pack("{s:s,s:s}", "key", argv[2], "value", argv[3]), NULL,
                                0, &res, NULL, NULL);
        }
        return cli_usage_error(usage, "unknown property command '%s'", v);
}

int cmd_system(int argc, char **argv) {
        static const struct verb verbs[] = {
                { "start", NULL, system_start, "start the apiserver" },
                { "stop", NULL, system_stop, "stop the apiserver" },
                { "status", NULL, system_status, "show the state" },
                { "property", NULL, system_property, "configuration" },
                {},
        };
        return cli_dispatch("system", system_help, verbs, argc, argv);
}
