/* container registry: login, logout. Credentials are kept by the apiserver per calling
 * user (mode 0600), never in the CLI's environment. */
#include <getopt.h>
#include <stdio.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

#include "cli.h"
#include "util/json.h"

static const char registry_help[] = "Usage: container registry COMMAND\n"
                                    "\n"
                                    "Commands:\n"
                                    "  login [-u USER] [--password-stdin] SERVER   store credentials for SERVER\n"
                                    "  logout SERVER                               forget them\n";

static char *read_line(FILE *f) {
        char *line = NULL;
        size_t n = 0;
        ssize_t l = getline(&line, &n, f);
        if (l < 0) {
                free(line);
                return NULL;
        }
        while (l > 0 && (line[l - 1] == '\n' || line[l - 1] == '\r'))
                line[--l] = 0;
        return line;
}

static int login_cmd(int argc, char **argv) {
        static const char usage[] = "Usage: container registry login [-u USER] [--password-stdin] SERVER\n"
                                    "  -u, --username USER   user name (asked for when missing)\n"
                                    "  --password-stdin      read the password from standard input\n";
        static const struct option opts[] = { { "username", required_argument, NULL, 'u' },
                                              { "password-stdin", no_argument, NULL, 'P' },
                                              { "help", no_argument, NULL, 'h' }, {} };
        const char *user_opt = NULL;
        bool from_stdin = false;
        int c;
        while ((c = getopt_long(argc, argv, "u:h", opts, NULL)) >= 0) {
                if (c == 'u')
                        user_opt = optarg;
                else if (c == 'P')
                        from_stdin = true;
                else if (c == 'h') {
                        fputs(usage, stdout);
                        return 0;
                } else
                        return cli_usage_error(usage, "invalid option");
        }
        if (argc - optind != 1)
                return cli_usage_error(usage, "login needs exactly one SERVER");
        const char *server = argv[optind];
        _cleanup_free_ char *user = user_opt ? strdup(user_opt) : NULL;
        if (!user) {
                if (from_stdin || !isatty(STDIN_FILENO))
                        return cli_usage_error(usage, "give the user name with -u when the password comes from stdin");
                fprintf(stderr, "Username: ");
                user = read_line(stdin);
                if (!user || !*user)
                        return cli_error("no user name given");
        }
        _cleanup_free_ char *pass = NULL;
        if (from_stdin || !isatty(STDIN_FILENO))
                pass = read_line(stdin);
        else {
                struct termios old, noecho;
                tcgetattr(STDIN_FILENO, &old);
                noecho = old;
                noecho.c_lflag &= ~(tcflag_t)ECHO;
                fprintf(stderr, "Password: ");
                tcsetattr(STDIN_FILENO, TCSAFLUSH, &noecho);
                pass = read_line(stdin);
                tcsetattr(STDIN_FILENO, TCSAFLUSH, &old);
                fputc('\n', stderr);
        }
        if (!pass || !*pass)
                return cli_error("no password given");
        _cleanup_json_ json_t *res = NULL;
        int r = cli_call("registry.login", json_pack("{s:s,s:s,s:s}", "server", server, "username", user, "password", pass),
                         NULL, 0, &res, NULL, NULL);
        explicit_bzero(pass, strlen(pass));
        if (r)
                return r;
        printf("Login Succeeded\n");
        return 0;
}

static int logout_cmd(int argc, char **argv) {
        static const char usage[] = "Usage: container registry logout SERVER\n";
        if (argc == 2 && (streq(argv[1], "--help") || streq(argv[1], "-h"))) {
                fputs(usage, stdout);
                return 0;
        }
        if (argc != 2 || argv[1][0] == '-')
                return cli_usage_error(usage, "logout needs exactly one SERVER");
        _cleanup_json_ json_t *res = NULL;
        if (cli_call("registry.logout", json_pack("{s:s}", "server", argv[1]), NULL, 0, &res, NULL, NULL))
                return 1;
        printf("Removed login credentials for %s\n", argv[1]);
        return 0;
}

int cmd_registry(int argc, char **argv) {
        static const struct verb verbs[] = {
                { "login", NULL, login_cmd, NULL },
                { "logout", NULL, logout_cmd, NULL },
                {},
        };
        return cli_dispatch("registry", registry_help, verbs, argc, argv);
}
