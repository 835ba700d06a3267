/* The machine's network (when it has an address and networking is on): a network namespace
 * of its own, made here before the sandbox starts, with a veth from the host side's bridge
 * configured from outside; torn down when the machine ends.
 *
 * The namespace: a short-lived child unshare()s CLONE_NEWNET and waits; we open its
 * /proc/PID/ns/net and let it go. The fd keeps the namespace alive for as long as this
 * runtime lives (the machine's processes hold it too), and we hand it to the netlink code and
 * to the sandbox as /proc/self/fd/N. Nothing is bind-mounted: a runtime that dies (SIGKILL)
 * leaves no namespace behind, its init dies with it (PDEATHSIG) and the veth pair goes with
 * the namespace; the bridge and NAT table are found again by the next ensure.
 *
 * Host-side changes (bridge, NAT, a port on the bridge) are serialized between runtimes and
 * the apiserver by an flock on ROOT/network.lock. */
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/wait.h>
#include <unistd.h>

#include "runtime.h"

/* A new network namespace, held by the returned fd. */
static int netns_new(void) {
        int go[2], done[2];
        if (pipe2(go, O_CLOEXEC) < 0)
                return -errno;
        if (pipe2(done, O_CLOEXEC) < 0) {
                int r = -errno;
                close(go[0]);
                close(go[1]);
                return r;
        }
        pid_t pid = fork();
        if (pid < 0) {
                int r = -errno;
                close(go[0]), close(go[1]), close(done[0]), close(done[1]);
                return r;
        }
        if (pid == 0) {
                close(go[1]);
                close(done[0]);
                char c = unshare(CLONE_NEWNET) == 0 ? 0 : 1;
                (void)!write(done[1], &c, 1);
                (void)!read(go[0], &c, 1); /* until the parent has opened our namespace */
                _exit(0);
        }
        close(go[0]);
        close(done[1]);
        char c = 1;
        int r = 0, fd = -1;
        if (read(done[0], &c, 1) != 1 || c != 0)
                r = -EPERM;
        else {
                char path[64];
                snprintf(path, sizeof path, "/proc/%d/ns/net", (int)pid);
                fd = open(path, O_RDONLY | O_CLOEXEC);
                if (fd < 0)
                        r = -errno;
        }
        close(go[1]); /* the child reads EOF and exits */
        close(done[0]);
        while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
                ;
        return r < 0 ? r : fd;
}

int machine_net_up(struct runtime *rt, struct cm_error **err) {
        struct machine_config *c = rt->config;
        if (!c->ip_address)
                return 0; /* made before networking: lo only, as before */
        int r = net_settings_load(rt->root, &rt->net, err);
        if (r < 0)
                return r;
        if (!rt->net.enabled)
                return 0;
        char cidr[NET_CIDR_MAX];
        if ((r = net_settings_machine_cidr(&rt->net, c->ip_address, cidr, err)) < 0)
                return r;
        net_host_ifname(rt->name, rt->host_ifname);

        int fd = netns_new();
        if (fd < 0)
                return cm_error_set(err, -fd, "create the machine's network namespace: %s", strerror(-fd));
        rt->netns_fd = fd;
        snprintf(rt->netns_path, sizeof rt->netns_path, "/proc/self/fd/%d", fd);

        int lock = net_state_lock(rt->root);
        if (lock < 0)
                return cm_error_set(err, -lock, "lock %s/network.lock: %s", rt->root, strerror(-lock));
        r = net_host_ensure(rt->net.bridge, rt->net.subnet, err);
        if (r >= 0) {
                r = net_machine_link_up(rt->netns_path, rt->host_ifname, rt->net.bridge, cidr, rt->net.gateway, 1500,
                                        err);
                if (r >= 0)
                        rt->net_up = true;
                else {
                        /* the NAT table goes if no other machine uses it */
                        _cleanup_error_ struct cm_error *e = NULL;
                        (void)net_host_release(rt->net.bridge, &e);
                }
        }
        close(lock);
        if (r < 0)
                cm_error_prefix(err, "network of %s (%s)", rt->name, c->ip_address);
        return r;
}

void machine_net_down(struct runtime *rt) {
        if (rt->net_up) {
                int lock = net_state_lock(rt->root);
                _cleanup_error_ struct cm_error *e = NULL;
                if (net_machine_link_down(rt->host_ifname, &e) < 0)
                        log_msg("network: %s", e && e->message ? e->message : "cannot remove the veth");
                cm_error_free(TAKE_PTR(e));
                if (net_host_release(rt->net.bridge, &e) < 0)
                        log_msg("network: %s", e && e->message ? e->message : "cannot remove the NAT table");
                if (lock >= 0)
                        close(lock);
                rt->net_up = false;
        }
        if (rt->netns_fd >= 0) {
                close(rt->netns_fd);
                rt->netns_fd = -1;
        }
}
