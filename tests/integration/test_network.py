"""Machine networking (issue 4): addresses, the bridge, veths, NAT, DNS by name, the web stack.

Everything runs inside a network namespace this module creates (`ip netns add cmit-XXXX`,
lo up, nothing else): the apiserver is started in it with `nsenter --net=...` (not `ip netns
exec`, which remounts /sys and hides /sys/fs/cgroup), so the bridge, the NAT table, the veths
and the DNS forwarder all live there, and the namespace has no route to anywhere: nothing is
ever sent outside this machine, and the forwarder's upstream servers (those of the host's
resolv.conf) are unreachable from it (queries for other names get SERVFAIL). Images come from
OCI archives made from the test images with skopeo (`container image load`), so no registry
is needed. The CLI talks to the apiserver over its unix socket, which works across
namespaces; "the host side" below is the test namespace (where the bridge is).
"""
import concurrent.futures
import json
import os
import re
import secrets
import signal
import subprocess
import tempfile
import time
import shutil
from pathlib import Path

import pytest

NS_DIR = Path("/run/netns")
BRIDGE = "container0"
GATEWAY = "192.168.64.1"


def sh(argv, check=True, timeout=120, **kw):
    p = subprocess.run([str(a) for a in argv], capture_output=True, text=True, timeout=timeout, **kw)
    if check and p.returncode != 0:
        raise AssertionError(f"{' '.join(map(str, argv))} exited {p.returncode}\n{p.stdout}\n{p.stderr}")
    return p


class Netns:
    def __init__(self, name):
        self.name = name
        self.path = NS_DIR / name

    def run(self, *argv, check=True, timeout=120, **kw):
        return sh(["nsenter", f"--net={self.path}", *argv], check=check, timeout=timeout, **kw)

    def links(self):
        return set(re.findall(r"^\d+: ([^:@]+)", self.run("ip", "-o", "link").stdout, re.M))

    def veths(self):
        return {l for l in self.links() if l.startswith("cm-")}

    def nft_tables(self):
        return self.run("nft", "list", "tables").stdout.split("\n")

    def http_get(self, url, timeout=10):
        """Body of url fetched from the namespace (the bridge's side), never through a proxy."""
        p = self.run("curl", "-s", "--noproxy", "*", "--max-time", str(timeout), url, check=False,
                     timeout=timeout + 10)
        return p.returncode, p.stdout


@pytest.fixture(scope="module")
def netns():
    if os.geteuid() != 0:
        pytest.skip("needs root (network namespaces)")
    for tool in ("ip", "nsenter", "nft", "curl", "skopeo"):
        if not shutil.which(tool):
            pytest.skip(f"needs {tool}")
    ns = Netns(f"cmit-{secrets.token_hex(4)}")
    sh(["ip", "netns", "add", ns.name])
    try:
        ns.run("ip", "link", "set", "lo", "up")
        yield ns
    finally:
        # whatever is left in it (a veth, the bridge) goes with the namespace
        sh(["ip", "netns", "del", ns.name], check=False)


@pytest.fixture(scope="module")
def archives(images):
    """OCI archives of the busybox and webstack test images, for `container image load`."""
    d = Path(tempfile.mkdtemp(prefix="cm-net-images-"))
    try:
        for name in ("busybox", "webstack"):
            sh(["skopeo", "--insecure-policy", "copy", "-q", f"oci:{images}/{name}:latest",
                f"oci-archive:{d}/{name}.tar:{name}:latest"], timeout=300)
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


def start_in(c, ns):
    """`container system start` inside the namespace (the apiserver inherits it)."""
    p = ns.run(c.bin.cli, "system", "start", "--root", c.root, env=dict(os.environ, **c.env), timeout=60,
               check=False)
    assert p.returncode == 0, p.stdout + p.stderr


@pytest.fixture(scope="module")
def net(cm_factory, netns, archives):
    """An apiserver inside the test namespace with networking on (the default subnet) and the
    images busybox:latest and webstack:latest loaded."""
    c = cm_factory()
    start_in(c, netns)
    try:
        assert c.ok("system", "property", "get", "network.mode").strip() == "bridge"
        for name in ("busybox", "webstack"):
            c.ok("image", "load", "-i", archives / f"{name}.tar", timeout=300)
        c.netns = netns
        yield c
    finally:
        for name in c.run("machine", "ls", "-q").stdout.split():
            c.run("machine", "rm", name)
        c.run("system", "stop", "--machines", timeout=120)
        c.stop()


def ls_ips(c, user=None):
    rows = json.loads(c.ok("machine", "ls", "--format", "json", user=user))
    return {r["name"]: r["ipAddress"] for r in rows}


def allocations(c):
    try:
        return json.loads((c.root / "network.json").read_text())["allocations"]
    except FileNotFoundError:
        return {}


def mrun(c, name, *argv, user=None, root=False, check=True, timeout=120):
    args = ["machine", "run", "-n", name, *(["--root"] if root else []), *argv]
    return c.run(*args, user=user, check=check, timeout=timeout)


def rm(c, *names, user=None):
    c.run("machine", "rm", *names, user=user, timeout=300)


# ------------------------------------------------------------------ the seed's web stack


def test_webstack_as_user(net, test_user):
    c, ns, u = net, net.netns, test_user
    c.ok("machine", "create", "webstack:latest", "--name", "web", user=u, timeout=300)
    try:
        ip = ls_ips(c, u)["web"]
        assert re.fullmatch(r"192\.168\.64\.\d+", ip), ip
        # ls shows it in the IP column, inspect as ipAddress
        line = next(l for l in c.ok("machine", "ls", user=u).splitlines() if l.startswith("web "))
        assert line.split()[3] == ip
        assert json.loads(c.ok("machine", "inspect", "web", user=u))[0]["ipAddress"] == ip

        out = mrun(c, "web", "sudo", "systemctl", "enable", "--now", "apache2", "mariadb", user=u).stdout
        code, page = ns.http_get(f"http://{ip}/")
        assert code == 0 and "Apache2 Debian Default Page" in page, (code, page[:300], out)

        # inside: /etc/hosts names the machine, resolv.conf points at the forwarder
        hosts = mrun(c, "web", "cat", "/etc/hosts", user=u).stdout
        assert re.search(rf"^{re.escape(ip)}\s+web\b", hosts, re.M), hosts
        resolv = mrun(c, "web", "cat", "/etc/resolv.conf", user=u).stdout
        assert f"nameserver {GATEWAY}" in resolv, resolv

        c.ok("machine", "stop", "web", user=u, timeout=60)
        mrun(c, "web", "true", user=u)
        st = mrun(c, "web", "systemctl", "is-active", "apache2", "mariadb", user=u, check=None).stdout.split()
        assert st == ["active", "active"], st
        assert ls_ips(c, u)["web"] == ip  # the same address after stop + start
        code, page = ns.http_get(f"http://{ip}/")
        assert code == 0 and "Apache2 Debian Default Page" in page
        # MariaDB was shut down cleanly by `machine stop`: no crash recovery at its next start
        log = mrun(c, "web", "sudo", "journalctl", "-u", "mariadb", "--no-pager", user=u).stdout
        assert "Starting MariaDB" in log and log.count("Starting MariaDB") >= 2, log[-2000:]
        assert "Normal shutdown" in log
        assert "crash recovery" not in log.lower(), log[-3000:]
    finally:
        rm(c, "web", user=u)


# ------------------------------------------------------------------ machines, gateway, names


def serve(c, name, text, user=None):
    """busybox httpd on port 8080 of a machine, serving text at /."""
    mrun(c, name, "sh", "-c", f"mkdir -p /www && echo {text} > /www/index.html && httpd -p 8080 -h /www",
         root=True, user=user)


def http_from(c, machine, host, port=8080, user=None):
    """Body of http://host:port/ fetched inside a machine with busybox nc (busybox wget
    segfaults on some of httpd's answers)."""
    p = mrun(c, machine, "sh", "-c", f'printf "GET / HTTP/1.0\\r\\n\\r\\n" | nc -w 5 {host} {port}',
             user=user, check=None)
    if "200 OK" not in p.stdout:
        return f"<no answer: {p.stdout!r} {p.stderr!r}>"
    return re.split(r"\r?\n\r?\n", p.stdout, maxsplit=1)[-1].strip()


def test_two_machines_reach_each_other_by_ip_and_name(net, test_user):
    c, ns, u = net, net.netns, test_user
    for n in ("alpha", "beta"):
        c.ok("machine", "create", "busybox:latest", "--name", n, user=u, timeout=120)
    try:
        ips = ls_ips(c, u)
        assert ips["alpha"] != ips["beta"]
        serve(c, "beta", "hello-from-beta", user=u)
        serve(c, "alpha", "hello-from-alpha", user=u)
        for host in (ips["beta"], "beta.machine", "beta"):
            assert http_from(c, "alpha", host, user=u) == "hello-from-beta", host
        assert http_from(c, "beta", "alpha.machine", user=u) == "hello-from-alpha"
        # the forwarder answers with the machine's address
        p = mrun(c, "alpha", "nslookup", "beta.machine", GATEWAY, user=u, check=None)
        assert ips["beta"] in p.stdout, p.stdout + p.stderr
        # the gateway answers a machine; the host side reaches every machine
        p = mrun(c, "alpha", "ping", "-c", "1", "-W", "3", GATEWAY, root=True, user=u, check=None)
        assert p.returncode == 0 and "1 packets received" in p.stdout, p.stdout + p.stderr
        for n in ("alpha", "beta"):
            code, body = ns.http_get(f"http://{ips[n]}:8080/")
            assert code == 0 and body.strip() == f"hello-from-{n}"
        # other names go upstream, which is unreachable here: SERVFAIL, quickly
        t = time.monotonic()
        p = mrun(c, "alpha", "nslookup", "example.com", GATEWAY, user=u, check=None)
        assert p.returncode != 0 and "SERVFAIL" in (p.stdout + p.stderr), p.stdout + p.stderr
        assert time.monotonic() - t < 15
    finally:
        rm(c, "alpha", "beta", user=u)


def test_names_are_per_owner(net, test_user):
    """root's machine does not learn the address of cmtest's machine, and vice versa."""
    c, u = net, test_user
    c.ok("machine", "create", "busybox:latest", "--name", "mine", user=u)
    c.ok("machine", "create", "busybox:latest", "--name", "theirs")
    try:
        p = mrun(c, "theirs", "nslookup", "mine.machine", GATEWAY, root=True, check=None)
        assert p.returncode != 0 and "NXDOMAIN" in (p.stdout + p.stderr), p.stdout + p.stderr
        p = mrun(c, "mine", "nslookup", "mine.machine", GATEWAY, user=u, check=None)
        assert ls_ips(c, u)["mine"] in p.stdout
    finally:
        rm(c, "mine", user=u)
        rm(c, "theirs")


# ------------------------------------------------------------------ addresses


def test_address_stable_across_stop_start_and_apiserver_kill(net):
    c, ns = net, net.netns
    c.ok("machine", "create", "busybox:latest", "--name", "stable")
    try:
        ip = ls_ips(c)["stable"]
        serve(c, "stable", "still-here")
        c.ok("machine", "stop", "stable")
        assert ns.veths() == set()  # a stopped machine has no veth
        mrun(c, "stable", "true")
        assert ls_ips(c)["stable"] == ip
        # kill -9 the apiserver: the machine keeps running and its address, a new one adopts it
        pid = c.apiserver_pid()
        os.kill(pid, signal.SIGKILL)
        for _ in range(100):
            try:
                os.kill(pid, 0)
                time.sleep(0.05)
            except ProcessLookupError:
                break
        start_in(c, ns)
        serve(c, "stable", "still-here")
        assert ls_ips(c)["stable"] == ip
        code, body = ns.http_get(f"http://{ip}:8080/")
        assert code == 0 and body.strip() == "still-here"
        c.ok("machine", "stop", "stable")
        mrun(c, "stable", "true")
        assert ls_ips(c)["stable"] == ip
        assert allocations(c)["stable"] == ip
    finally:
        rm(c, "stable")


def test_twenty_concurrent_creates_get_distinct_addresses(net):
    c = net
    names = [f"conc-{i:02d}" for i in range(20)]

    def create(n):
        return c.run("machine", "create", "busybox:latest", "--no-boot", "--name", n, timeout=300)

    try:
        with concurrent.futures.ThreadPoolExecutor(20) as ex:
            results = list(ex.map(create, names))
        for n, p in zip(names, results):
            assert p.returncode == 0, (n, p.stderr)
        ips = ls_ips(c)
        got = [ips[n] for n in names]
        assert all(got) and len(set(got)) == 20, got
        alloc = allocations(c)
        assert {n: alloc[n] for n in names} == {n: ips[n] for n in names}
    finally:
        rm(c, *names)
    alloc = allocations(c)
    assert not set(names) & set(alloc), alloc


def test_rm_frees_the_address_and_removes_the_veth(net):
    c, ns = net, net.netns
    before = ns.veths()
    c.ok("machine", "create", "busybox:latest", "--name", "gone")
    ip = ls_ips(c)["gone"]
    assert len(ns.veths() - before) == 1
    rm(c, "gone")
    assert ns.veths() == before
    assert "gone" not in allocations(c)
    # the freed address is the lowest free one again: the next machine gets it
    c.ok("machine", "create", "busybox:latest", "--no-boot", "--name", "next")
    try:
        assert ls_ips(c)["next"] == ip
    finally:
        rm(c, "next")


# ------------------------------------------------------------------ bad input


def set_prop(c, key, value):
    c.ok("system", "property", "set", key, value)


def test_subnet_overlapping_a_route_is_refused(net):
    c, ns = net, net.netns
    ns.run("ip", "route", "add", "10.99.7.0/24", "dev", "lo")  # (this kernel has no dummy links)
    try:
        set_prop(c, "network.subnet", "10.99.0.0/16")
        before = ns.links()
        p = c.run("machine", "create", "busybox:latest", "--name", "overlap")
        assert p.returncode == 1
        assert "10.99.0.0/16" in p.stderr and "10.99.7.0/24" in p.stderr, p.stderr
        assert "overlap" not in c.ok("machine", "ls", "-q").split()
        assert "overlap" not in allocations(c)
        assert ns.links() == before
    finally:
        set_prop(c, "network.subnet", "192.168.64.0/24")
        ns.run("ip", "route", "del", "10.99.7.0/24", "dev", "lo", check=False)


def test_exhausted_subnet_is_a_clear_error(net):
    c, ns = net, net.netns
    set_prop(c, "network.subnet", "10.98.0.0/29")  # gateway .1, machines .2 to .6
    made = []
    try:
        for i in range(5):
            c.ok("machine", "create", "busybox:latest", "--no-boot", "--name", f"full-{i}")
            made.append(f"full-{i}")
        assert sorted(ls_ips(c)[n] for n in made) == [f"10.98.0.{i}" for i in range(2, 7)]
        p = c.run("machine", "create", "busybox:latest", "--name", "one-too-many")
        assert p.returncode == 1
        assert "10.98.0.0/29" in p.stderr and "one-too-many" in p.stderr, p.stderr
        assert "one-too-many" not in c.ok("machine", "ls", "-q").split()
        assert "one-too-many" not in allocations(c)
        assert not (c.root / "machines" / "one-too-many").exists()
        # a machine of a full subnet still boots
        mrun(c, "full-0", "true")
        assert "10.98.0.2" in mrun(c, "full-0", "ip", "addr", root=True).stdout
    finally:
        rm(c, *made)
        set_prop(c, "network.subnet", "192.168.64.0/24")


def test_invalid_network_properties(net):
    c = net
    p = c.run("system", "property", "set", "network.subnet", "10.0.0.1/24")
    assert p.returncode == 1 and "not a network address" in p.stderr
    p = c.run("system", "property", "set", "network.mode", "nat")
    assert p.returncode == 1 and "network.mode" in p.stderr
    assert c.ok("system", "property", "get", "network.subnet").strip() == "192.168.64.0/24"


def test_mode_none_gives_lo_only(net):
    """network.mode none (what the host-namespace tests use): no address, no veth, lo only;
    machines made before keep their address."""
    c, ns = net, net.netns
    c.ok("machine", "create", "busybox:latest", "--no-boot", "--name", "had-ip")
    set_prop(c, "network.mode", "none")
    try:
        before = ns.veths()
        c.ok("machine", "create", "busybox:latest", "--name", "no-ip")
        line = next(l for l in c.ok("machine", "ls").splitlines() if l.startswith("no-ip "))
        assert line.split()[3] == "-"
        assert json.loads(c.ok("machine", "inspect", "no-ip"))[0]["ipAddress"] is None
        links = mrun(c, "no-ip", "ip", "-o", "link", root=True).stdout
        assert re.findall(r"^\d+: ([^:@]+)", links, re.M) == ["lo"], links
        assert ns.veths() == before
        assert "no-ip" not in allocations(c)
        assert ls_ips(c)["had-ip"]
    finally:
        set_prop(c, "network.mode", "bridge")
        rm(c, "no-ip", "had-ip")


# ------------------------------------------------------------------ shutdown


def test_system_stop_machines_leaves_no_network_behind(net):
    c, ns = net, net.netns
    for n in ("last-a", "last-b"):
        c.ok("machine", "create", "busybox:latest", "--name", n)
    try:
        assert len(ns.veths()) == 2 and BRIDGE in ns.links()
        assert "table ip container" in ns.nft_tables()
        c.ok("system", "stop", "--machines", timeout=120)
        for _ in range(100):
            if not c.socket.exists():
                break
            time.sleep(0.05)
        assert ns.veths() == set()
        assert BRIDGE not in ns.links()
        assert "table ip container" not in ns.nft_tables()
    finally:
        if not c.socket.exists():
            start_in(c, ns)
        rm(c, "last-a", "last-b")
