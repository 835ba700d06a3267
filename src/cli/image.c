/* container image: pull, push, ls, inspect, rm, tag, load, save, import. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"
#include "util/json.h"

static const char image_help[] =
        "Usage: container image COMMAND\n"
        "\n"
        "Commands:\n"
        "  pull [--platform OS/ARCH] [-q] REF      download an image (and its layers) from a registry\n"
        "  push [-q] REF [DEST]                    upload an image to a registry\n"
        "  ls [-q] [--format json|table]           list images (alias: list)\n"
        "  inspect REF...                          details as JSON\n"
        "  rm REF...                               remove images (and whatever nothing else uses)\n"
        "  tag SOURCE TARGET                       give an image another name\n"
        "  load [-i FILE]                          load a docker-archive or oci-archive (default: stdin)\n"
        "  save -o FILE REF...                     write images as an oci-archive (default: stdout)\n"
        "  import FILE|- REF                       make a one-layer image from a root filesystem tarball\n"
        "\n"
        "References are written as Docker writes them: alpine = docker.io/library/alpine:latest.\n";

/* Parses only --help and the given short/long options; returns the index of the first operand,
 * or -1 after printing help (exit 0), or -2 on a usage error (exit 64). */
static int simple_opts(int argc, char **argv, const char *usage, const char *shortopts, const struct option *longopts,
                       void (*on_opt)(int c, const char *arg, void *ud), void *ud) {
        int c;
        while ((c = getopt_long(argc, argv, shortopts, longopts, NULL)) >= 0) {
                if (c == 'h') {
                        fputs(usage, stdout);
                        return -1;
                }
                if (c == '?' || c == ':') {
                        fputc('\n', stderr);
                        fputs(usage, stderr);
                        return -2;
                }
                on_opt(c, optarg, ud);
        }
        return optind;
}
#define OPTS_OR_RETURN(i)                                                                                             \
        do {                                                                                                          \
                if ((i) == -1)                                                                                        \
                        return 0;                                                                                     \
                if ((i) == -2)                                                                                        \
                        return EXIT_USAGE;                                                                            \
        } while (0)

struct pull_args {
        const char *platform;
        bool quiet;
};
static void pull_opt(int c, const char *arg, void *ud) {
        struct pull_args *a = ud;
        if (c == 'p')
                a->platform = arg;
        else if (c == 'q')
                a->quiet = true;
}

static int image_pull_cmd(int argc, char **argv) {
        static const char usage[] = "Usage: container image pull [--platform OS/ARCH[/VARIANT]] [-q] REF\n"
                                    "  --platform   pick this platform from a multi-platform image (default: the host's)\n"
                                    "  -q, --quiet  no progress output\n";
        static const struct option opts[] = { { "platform", required_argument, NULL, 'p' },
                                              { "quiet", no_argument, NULL, 'q' },
                                              { "help", no_argument, NULL, 'h' }, {} };
        struct pull_args a = { 0 };
        int i = simple_opts(argc, argv, usage, "+qh", opts, pull_opt, &a);
        OPTS_OR_RETURN(i);
        if (argc - i != 1)
                return cli_usage_error(usage, "pull needs exactly one image reference");
        json_t *params = json_pack("{s:s,s:b}", "reference", argv[i], "progress", !a.quiet);
        if (a.platform)
                json_object_set_new(params, "platform", json_string(a.platform));
        if (!a.quiet)
                fprintf(stderr, "Pulling %s\n", argv[i]);
        struct progress *p = progress_new(a.quiet);
        _cleanup_json_ json_t *res = NULL;
        int r = cli_call("image.pull", params, NULL, 0, &res, progress_event, p);
        progress_finish(p);
        if (r)
                return r;
        if (!a.quiet)
                fprintf(stderr, "Digest: %s\n", json_get_str(res, "digest"));
        printf("%s\n", json_get_str(res, "name"));
        return 0;
}

static int image_push_cmd(int argc, char **argv) {
        static const char usage[] = "Usage: container image push [-q] REF [DESTINATION]\n"
                                    "  Uploads the image REF to its registry, or under the name DESTINATION.\n";
        static const struct option opts[] = { { "quiet", no_argument, NULL, 'q' },
                                              { "help", no_argument, NULL, 'h' }, {} };
        struct pull_args a = { 0 };
        int i = simple_opts(argc, argv, usage, "+qh", opts, pull_opt, &a);
        OPTS_OR_RETURN(i);
        if (argc - i < 1 || argc - i > 2)
                return cli_usage_error(usage, "push needs an image reference (and optionally a destination)");
        json_t *params = json_pack("{s:s,s:b}", "reference", argv[i], "progress", !a.quiet);
        if (argc - i == 2)
                json_object_set_new(params, "destination", json_string(argv[i + 1]));
        struct progress *p = progress_new(a.quiet);
        _cleanup_json_ json_t *res = NULL;
        int r = cli_call("image.push", params, NULL, 0, &res, progress_event, p);
        progress_finish(p);
        if (r)
                return r;
        printf("%s\n", json_get_str(res, "destination"));
        return 0;
}

struct ls_args {
        bool quiet, json;
        const char *bad_format;
};
static void ls_opt(int c, const char *arg, void *ud) {
        struct ls_args *a = ud;
        if (c == 'q')
                a->quiet = true;
        else if (c == 'f') {
                if (streq(arg, "json"))
                        a->json = true;
                else if (!streq(arg, "table"))
                        a->bad_format = arg;
        }
}

static int image_ls_cmd(int argc, char **argv) {
        static const char usage[] = "Usage: container image ls [-q] [--format json|table]\n"
                                    "  -q, --quiet   only the references\n";
        static const struct option opts[] = { { "quiet", no_argument, NULL, 'q' },
                                              { "format", required_argument, NULL, 'f' },
                                              { "help", no_argument, NULL, 'h' }, {} };
        struct ls_args a = { 0 };
        int i = simple_opts(argc, argv, usage, "qh", opts, ls_opt, &a);
        OPTS_OR_RETURN(i);
        if (a.bad_format)
                return cli_usage_error(usage, "unknown format '%s'", a.bad_format);
        if (i < argc)
                return cli_usage_error(usage, "unexpected argument '%s'", argv[i]);
        _cleanup_json_ json_t *res = NULL;
        if (cli_call("image.list", NULL, NULL, 0, &res, NULL, NULL))
                return 1;
        if (a.json) {
                print_json(res);
                return 0;
        }
        size_t k;
        json_t *e;
        if (a.quiet) {
                json_array_foreach(res, k, e) printf("%s\n", json_get_str(e, "name"));
                return 0;
        }
        const char *hdr[] = { "REPOSITORY", "TAG", "DIGEST", "SIZE", "CREATED" };
        struct table *t = table_new(hdr, 5);
        json_array_foreach(res, k, e) {
                const char *digest = json_get_str(e, "digest");
                char dig[32] = "-", size[16] = "-", created[32];
                if (digest && strncmp(digest, "sha256:", 7) == 0)
                        snprintf(dig, sizeof dig, "%.12s", digest + 7);
                json_t *sz = json_object_get(e, "size");
                if (json_is_integer(sz))
                        format_size((uint64_t)json_integer_value(sz), size, sizeof size);
                format_time_iso(json_get_str(e, "created"), created, sizeof created);
                const char *tag = json_get_str(e, "tag");
                const char *row[] = { json_get_str(e, "repository"), tag ? tag : "<none>", dig, size, created };
                table_add(t, row);
        }
        table_print(t);
        table_free(t);
        return 0;
}

static void no_opt(int c, const char *arg, void *ud) {}

static int image_inspect_cmd(int argc, char **argv) {
        static const char usage[] = "Usage: container image inspect REF...\n";
        static const struct option opts[] = { { "help", no_argument, NULL, 'h' }, {} };
        int i = simple_opts(argc, argv, usage, "+h", opts, no_opt, NULL);
        OPTS_OR_RETURN(i);
        if (i >= argc)
                return cli_usage_error(usage, "inspect needs at least one image reference");
        _cleanup_json_ json_t *all = json_array();
        int ret = 0;
        for (; i < argc; i++) {
                json_t *res = NULL;
                if (cli_call("image.inspect", json_pack("{s:s}", "reference", argv[i]), NULL, 0, &res, NULL, NULL))
                        ret = 1;
                else
                        json_array_append_new(all, res);
        }
        if (json_array_size(all) > 0)
                print_json(all);
        return ret;
}

static int image_rm_cmd(int argc, char **argv) {
        static const char usage[] = "Usage: container image rm REF...\n";
        static const struct option opts[] = { { "help", no_argument, NULL, 'h' }, {} };
        int i = simple_opts(argc, argv, usage, "+h", opts, no_opt, NULL);
        OPTS_OR_RETURN(i);
        if (i >= argc)
                return cli_usage_error(usage, "rm needs at least one image reference");
        int ret = 0;
        for (; i < argc; i++) {
                _cleanup_json_ json_t *res = NULL;
                if (cli_call("image.rm", json_pack("{s:s}", "reference", argv[i]), NULL, 0, &res, NULL, NULL))
                        ret = 1;
                else
                        printf("%s\n", argv[i]);
        }
        return ret;
}

static int image_tag_cmd(int argc, char **argv) {
        static const char usage[] = "Usage: container image tag SOURCE TARGET\n";
        static const struct option opts[] = { { "help", no_argument, NULL, 'h' }, {} };
        int i = simple_opts(argc, argv, usage, "+h", opts, no_opt, NULL);
        OPTS_OR_RETURN(i);
        if (argc - i != 2)
                return cli_usage_error(usage, "tag needs a SOURCE and a TARGET");
        _cleanup_json_ json_t *res = NULL;
        return cli_call("image.tag", json_pack("{s:s,s:s}", "source", argv[i], "target", argv[i + 1]), NULL, 0, &res,
                        NULL, NULL);
}

struct file_args {
        const char *file;
};
static void file_opt(int c, const char *arg, void *ud) {
        ((struct file_args *)ud)->file = arg;
}

static int image_load_cmd(int argc, char **argv) {
        static const char usage[] = "Usage: container image load [-i FILE]\n"
                                    "  Loads a docker-archive (docker save) or oci-archive, plain or gzip-compressed.\n"
                                    "  -i, --input FILE   read FILE instead of standard input\n";
        static const struct option opts[] = { { "input", required_argument, NULL, 'i' },
                                              { "help", no_argument, NULL, 'h' }, {} };
        struct file_args a = { 0 };
        int i = simple_opts(argc, argv, usage, "i:h", opts, file_opt, &a);
        OPTS_OR_RETURN(i);
        if (i < argc)
                return cli_usage_error(usage, "unexpected argument '%s'", argv[i]);
        _cleanup_close_ int fd = -1;
        if (a.file && !streq(a.file, "-")) {
                fd = open(a.file, O_RDONLY | O_CLOEXEC);
                if (fd < 0)
                        return cli_error("cannot open %s: %s", a.file, strerror(errno));
        } else if (isatty(STDIN_FILENO))
                return cli_usage_error(usage, "refusing to read an archive from a terminal; use -i FILE");
        int pass = fd >= 0 ? fd : STDIN_FILENO;
        _cleanup_json_ json_t *res = NULL;
        if (cli_call("image.load", NULL, &pass, 1, &res, NULL, NULL))
                return 1;
        size_t k;
        json_t *e;
        json_array_foreach(json_object_get(res, "names"), k, e) printf("Loaded image: %s\n", json_string_value(e));
        return 0;
}

static int image_save_cmd(int argc, char **argv) {
        static const char usage[] = "Usage: container image save [-o FILE] REF...\n"
                                    "  Writes the images as one oci-archive.\n"
                                    "  -o, --output FILE   write FILE instead of standard output\n";
        static const struct option opts[] = { { "output", required_argument, NULL, 'o' },
                                              { "help", no_argument, NULL, 'h' }, {} };
        struct file_args a = { 0 };
        int i = simple_opts(argc, argv, usage, "o:h", opts, file_opt, &a);
        OPTS_OR_RETURN(i);
        if (i >= argc)
                return cli_usage_error(usage, "save needs at least one image reference");
        _cleanup_close_ int fd = -1;
        _cleanup_free_ char *tmp = NULL;
        if (a.file && !streq(a.file, "-")) {
                /* Write beside the target and rename on success: a failed save leaves no partial file. */
                if (asprintf(&tmp, "%s.tmp-%ld", a.file, (long)getpid()) < 0)
                        return cli_error("out of memory");
                fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
                if (fd < 0)
                        return cli_error("cannot create %s: %s", a.file, strerror(errno));
        } else if (isatty(STDOUT_FILENO))
                return cli_usage_error(usage, "refusing to write an archive to a terminal; use -o FILE");
        int pass = fd >= 0 ? fd : STDOUT_FILENO;
        json_t *refs = json_array();
        for (; i < argc; i++)
                json_array_append_new(refs, json_string(argv[i]));
        _cleanup_json_ json_t *res = NULL;
        int r = cli_call("image.save", json_pack("{s:o}", "references", refs), &pass, 1, &res, NULL, NULL);
        if (tmp) {
                if (r == 0 && (fsync(fd) < 0 || rename(tmp, a.file) < 0))
                        r = cli_error("cannot write %s: %s", a.file, strerror(errno));
                if (r)
                        unlink(tmp);
        }
        return r;
}

static int image_import_cmd(int argc, char **argv) {
        static const char usage[] = "Usage: container image import FILE|- REF\n"
                                    "  Makes a one-layer image named REF from a root filesystem tarball\n"
                                    "  (plain, gzip or zstd), like 'docker import'.\n";
        static const struct option opts[] = { { "help", no_argument, NULL, 'h' }, {} };
        int i = simple_opts(argc, argv, usage, "+h", opts, no_opt, NULL);
        OPTS_OR_RETURN(i);
        if (argc - i != 2)
                return cli_usage_error(usage, "import needs a FILE (or -) and a REF");
        _cleanup_close_ int fd = -1;
        if (!streq(argv[i], "-")) {
                fd = open(argv[i], O_RDONLY | O_CLOEXEC);
                if (fd < 0)
                        return cli_error("cannot open %s: %s", argv[i], strerror(errno));
        } else if (isatty(STDIN_FILENO))
                return cli_usage_error(usage, "refusing to read a tarball from a terminal");
        int pass = fd >= 0 ? fd : STDIN_FILENO;
        _cleanup_json_ json_t *res = NULL;
        if (cli_call("image.import", json_pack("{s:s}", "reference", argv[i + 1]), &pass, 1, &res, NULL, NULL))
                return 1;
        printf("%s\n", json_get_str(res, "digest"));
        return 0;
}

int cmd_image(int argc, char **argv) {
        static const struct verb verbs[] = {
                { "pull", NULL, image_pull_cmd, NULL },
                { "push", NULL, image_push_cmd, NULL },
                { "ls", "list", image_ls_cmd, NULL },
                { "inspect", NULL, image_inspect_cmd, NULL },
                { "rm", "delete", image_rm_cmd, NULL },
                { "tag", NULL, image_tag_cmd, NULL },
                { "load", NULL, image_load_cmd, NULL },
                { "save", NULL, image_save_cmd, NULL },
                { "import", NULL, image_import_cmd, NULL },
                {},
        };
        return cli_dispatch("image", image_help, verbs, argc, argv);
}
