/* container: the command-line interface of container-machine. */
#include <stdio.h>
#include <string.h>

#include "cli.h"

static const char main_help[] =
        "Usage: container [--version] [--help] COMMAND [ARGS...]\n"
        "\n"
        "Persistent Linux machines from OCI images.\n"
        "\n"
        "Commands:\n"
        "  machine    create, run in, list, stop and delete machines (alias: m)\n"
        "  system     start, stop and inspect the container system (apiserver)\n"
        "  image      pull, list, inspect, load, save, import, tag, push and remove images\n"
        "  registry   log in to and out of registries\n"
        "\n"
        "Run 'container COMMAND --help' for the options of a command.\n"
        "Environment: CONTAINER_ROOT (state, default /var/lib/container),\n"
        "             CONTAINER_RUN (sockets, default /run/container).\n";

int main(int argc, char **argv) {
        if (argc < 2) {
                fputs(main_help, stderr);
                return EXIT_USAGE;
        }
        const char *cmd = argv[1];
        if (streq(cmd, "--help") || streq(cmd, "-h") || streq(cmd, "help")) {
                fputs(main_help, stdout);
                return 0;
        }
        if (streq(cmd, "--version") || streq(cmd, "version")) {
                printf("container %s\n", CM_VERSION);
                return 0;
        }
        if (streq(cmd, "system") || streq(cmd, "s"))
                return cmd_system(argc - 1, argv + 1);
        if (streq(cmd, "image") || streq(cmd, "i") || streq(cmd, "images"))
                return cmd_image(argc - 1, argv + 1);
        if (streq(cmd, "machine") || streq(cmd, "m") || streq(cmd, "machines"))
                return cmd_machine(argc - 1, argv + 1);
        if (streq(cmd, "registry"))
                return cmd_registry(argc - 1, argv + 1);
        fprintf(stderr, "Error: unknown command '%s'\n\n%s", cmd, main_help);
        return EXIT_USAGE;
}
