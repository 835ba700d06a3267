/* Outbound NAT: an nftables table of our own, loaded by `nft -f -`.
 *
 * Why the nft program and not libnftables: the ruleset is a few lines loaded once per first
 * machine start, so the cost of an exec does not matter; the nft binary is already a runtime
 * dependency (nftables), and libcm (linked into every program and test) stays free of
 * libnftables and its dependency chain (libnftnl, libmnl, gmp, ...). nft loads a file as one
 * kernel transaction, so "replace the table" is atomic. */
#include "net/net.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <spawn.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>

static const char *nft_path(void) {
        static const char *const paths[] = {"/usr/sbin/nft", "/sbin/nft", "/usr/bin/nft", "/usr/local/sbin/nft"};
        for (size_t i = 0; i < ELEMENTSOF(paths); i++)
                if (access(paths[i], X_OK) == 0)
                        return paths[i];
        return NULL;
}

/* Runs nft with args (args[0] = "nft"), ruleset (may be NULL) on stdin; its output in *ret_out (stdout+stderr,
 * trimmed). Returns nft's exit status (>= 0) or -errno. */
static int run_nft(char *const *args, const char *ruleset, char **ret_out, struct cm_error **err) {
        const char *nft = nft_path();
        if (!nft)
                return cm_error_set(err, ENOENT, "nft is not installed (install the nftables package)");
        _cleanup_close_ int in = memfd_create("cm-nft-in", MFD_CLOEXEC);
        _cleanup_close_ int out = memfd_create("cm-nft-out", MFD_CLOEXEC);
        if (in < 0 || out < 0)
                return cm_error_set(err, errno, "memfd: %m");
        size_t len = ruleset ? strlen(ruleset) : 0;
        if (len && (write(in, ruleset, len) != (ssize_t)len || lseek(in, 0, SEEK_SET) < 0))
                return cm_error_set(err, errno, "memfd: %m");

        posix_spawn_file_actions_t fa;
        posix_spawn_file_actions_init(&fa);
        posix_spawn_file_actions_adddup2(&fa, in, 0);
        posix_spawn_file_actions_adddup2(&fa, out, 1);
        posix_spawn_file_actions_adddup2(&fa, out, 2);
        static char *const env[] = {(char *)"PATH=/usr/sbin:/usr/bin:/sbin:/bin", (char *)"LC_ALL=C", NULL};
        pid_t pid;
        int r = posix_spawn(&pid, nft, &fa, NULL, args, env);
        posix_spawn_file_actions_destroy(&fa);
        if (r)
                return cm_error_set(err, r, "run %s: %s", nft, strerror(r));
        int status;
        while (waitpid(pid, &status, 0) < 0)
                if (errno != EINTR)
                        return cm_error_set(err, errno, "wait for nft: %m");

        off_t size = lseek(out, 0, SEEK_END);
        if (size < 0)
                size = 0;
        if (size > 4096)
                size = 4096;
        char *text = calloc(1, (size_t)size + 1);
        if (!text)
                return cm_error_set(err, ENOMEM, "out of memory");
        ssize_t got = pread(out, text, (size_t)size, 0);
        text[got > 0 ? got : 0] = 0;
        for (size_t k = strlen(text); k && (text[k - 1] == '\n' || text[k - 1] == ' '); k--)
                text[k - 1] = 0;
        for (char *p = text; (p = strchr(p, '\n'));) /* one line for an error message */
                *p = ' ';
        *ret_out = text;
        if (!WIFEXITED(status))
                return cm_error_set(err, EIO, "nft was killed by signal %d", WTERMSIG(status));
        return WEXITSTATUS(status);
}

/* Names go into the ruleset as text: only letters, digits, '_', '-' and '.'. */
static int word_check(const char *s, const char *what, size_t max, struct cm_error **err) {
        if (!s || !*s || strlen(s) > max ||
            strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-.") != strlen(s))
                return cm_error_set(err, EINVAL, "invalid %s name \"%s\"", what, s ? s : "");
        return 0;
}

int nat_ensure(const char *table, const char *subnet, const char *bridge, struct cm_error **err) {
        int r;
        if ((r = word_check(table, "nftables table", 64, err)) < 0 || (r = word_check(bridge, "bridge", 15, err)) < 0)
                return r;
        struct net_prefix p;
        if (net_prefix_parse(subnet, &p) < 0)
                return cm_error_set(err, EINVAL, "invalid subnet \"%s\"", subnet ? subnet : "");
        char net[INET_ADDRSTRLEN];
        struct in_addr na = net_prefix_network(&p);
        inet_ntop(AF_INET, &na, net, sizeof(net));

        /* "table {}" then "delete table" makes the delete safe when the table does not exist;
         * all of it is one transaction, so a reader never sees the table missing or half-made */
        _cleanup_free_ char *rules = NULL;
        if (asprintf(&rules,
                     "table ip %1$s {}\n"
                     "delete table ip %1$s\n"
                     "table ip %1$s {\n"
                     "\tchain postrouting {\n"
                     "\t\ttype nat hook postrouting priority srcnat; policy accept;\n"
                     "\t\tip saddr %2$s/%3$u oifname != \"%4$s\" masquerade\n"
                     "\t}\n"
                     "}\n",
                     table, net, p.len, bridge) < 0)
                return cm_error_set(err, ENOMEM, "out of memory");
        _cleanup_free_ char *out = NULL;
        r = run_nft((char *[]){(char *)"nft", (char *)"-f", (char *)"-", NULL}, rules, &out, err);
        if (r < 0)
                return r;
        if (r > 0)
                return cm_error_set(err, EIO, "nftables table %s: nft -f failed: %s", table,
                                    out && *out ? out : "(no output)");
        return 0;
}

int nat_remove(const char *table, struct cm_error **err) {
        int r = word_check(table, "nftables table", 64, err);
        if (r < 0)
                return r;
        _cleanup_free_ char *rules = NULL;
        if (asprintf(&rules, "table ip %1$s {}\ndelete table ip %1$s\n", table) < 0)
                return cm_error_set(err, ENOMEM, "out of memory");
        _cleanup_free_ char *out = NULL;
        r = run_nft((char *[]){(char *)"nft", (char *)"-f", (char *)"-", NULL}, rules, &out, err);
        if (r < 0)
                return r;
        if (r > 0)
                return cm_error_set(err, EIO, "remove nftables table %s: %s", table, out && *out ? out : "(no output)");
        return 0;
}

int nat_exists(const char *table, struct cm_error **err) {
        int r = word_check(table, "nftables table", 64, err);
        if (r < 0)
                return r;
        _cleanup_free_ char *out = NULL;
        r = run_nft((char *[]){(char *)"nft", (char *)"list", (char *)"tables", (char *)"ip", NULL}, NULL, &out, err);
        if (r < 0)
                return r;
        if (r > 0)
                return cm_error_set(err, EIO, "nft list tables: %s", out && *out ? out : "(no output)");
        /* one "table ip NAME" per line, joined by spaces above */
        _cleanup_free_ char *want = NULL;
        if (asprintf(&want, "table ip %s", table) < 0)
                return cm_error_set(err, ENOMEM, "out of memory");
        for (const char *p = out; (p = strstr(p, want)); p += strlen(want)) {
                char end = p[strlen(want)];
                if ((p == out || p[-1] == ' ') && (end == 0 || end == ' '))
                        return 1;
        }
        return 0;
}
