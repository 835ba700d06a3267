"""The per-image checks of container machine, as a matrix: every machine image of the test
registry (busybox init, Debian + systemd, and whatever other Debian init flavours
fixtures_images.IMAGE_REPOS lists at collection time: sysvinit, OpenRC, ...) x the two kinds
of caller (a non-root member of group 'container', and root).

One apiserver for the whole module (fresh CONTAINER_ROOT); machines are created by full
reference (127.0.0.1:PORT/library/...), one per image x caller, shared by the checks of that
pair through a module-scoped fixture, and removed at the end even when a check fails."""
import hashlib
import json
import os
import pwd
import re
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest

from fixtures_images import IMAGE_REPOS, run_as

# ---------------------------------------------------------------- the matrix


def _machine_images():
    """(id, repository:tag, init kind) of every bootable image IMAGE_REPOS has right now."""
    out = []
    for repo, tags in IMAGE_REPOS.items():
        if repo == "library/busybox" and "latest" in tags:
            out.append(("busybox", f"{repo}:latest", "busybox"))
        elif repo == "library/debian" and "12" in tags:
            out.append(("systemd", f"{repo}:12", "systemd"))
        elif repo.startswith("library/debian-") and tags:
            kind = repo.split("-", 1)[1]           # debian-sysvinit -> sysvinit
            tag = "12" if "12" in tags else tags[0]
            out.append((kind, f"{repo}:{tag}", kind))
    return out


IMAGES = _machine_images()
WHO = ["user", "root"]


def _params():
    ps = []
    for img in IMAGES:
        for who in WHO:
            ps.append(pytest.param((img, who), id=f"{img[0]}-{who}"))
    return ps


class M:
    """One machine of the matrix."""

    def __init__(self, c, name, kind, ref, who, user):
        self.c, self.name, self.kind, self.ref, self.who, self.user = c, name, kind, ref, who, user

    @property
    def as_user(self):      # the `user=` argument of Container.run (None = root)
        return None if self.who == "root" else self.user

    @property
    def home(self):
        return "/root" if self.who == "root" else self.user.home

    @property
    def uname(self):
        return "root" if self.who == "root" else self.user.name

    def run(self, *args, **kw):
        kw.setdefault("user", self.as_user)
        return self.c.run("machine", "run", "-n", self.name, *args, **kw)

    def root_run(self, *args, **kw):
        """A command as root inside the machine, whoever the caller."""
        return self.run("--root", *args, **kw)

    def status(self):
        return ls_json(self.c, self.as_user)[self.name]["status"]

    def wait_ready(self):
        if self.kind == "openrc":
            # openrc-init runs the runlevels in the background: wait until the default
            # runlevel is reached and nothing is still starting
            # (no `openrc` process left: the runlevel runner has finished)
            check = ('test "$(cat /run/openrc/softlevel 2>/dev/null)" = default && '
                     'test -z "$(ls -A /run/openrc/starting 2>/dev/null)" && '
                     '! cat /proc/[0-9]*/comm 2>/dev/null | grep -qx openrc')
            deadline = time.monotonic() + 60
            while self.run("sh", "-c", check).returncode != 0:
                if time.monotonic() > deadline:
                    pytest.fail(f"{self.name}: OpenRC did not reach the default runlevel:\n"
                                + self.root_run("rc-status", "-a").stdout, pytrace=False)
                time.sleep(0.1)
            return
        if self.kind != "systemd":
            return
        p = self.run("systemctl", "is-system-running", "--wait", timeout=120)
        state = p.stdout.strip()
        if state != "running":
            failed = self.run("systemctl", "--failed", "--no-legend").stdout
            pytest.fail(f"{self.name}: systemd is {state!r}; failed units:\n{failed}", pytrace=False)


def ls_json(c, user=None):
    p = c.run("machine", "ls", "--format", "json", user=user, check=True)
    return {m["name"]: m for m in json.loads(p.stdout)}


def ls_default(c, user=None):
    """{name: is-default} from the table output of `machine ls`."""
    rows = c.run("machine", "ls", user=user, check=True).stdout.splitlines()[1:]
    return {r.split()[0]: r.rstrip().endswith("*") for r in rows if r.strip()}


def leaks(c, name):
    """What is left of machine NAME on the host: mounts, cgroups, processes (as strings)."""
    out = []
    paths = (f"{c.rundir}/machines/{name}/", f"{c.root}/machines/{name}/",
             f"{c.rundir}/machines/{name} ", f"{c.root}/machines/{name} ")
    pids = ["self"]
    if c.apiserver_pid():
        pids.append(str(c.apiserver_pid()))
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/mountinfo").read_text().splitlines():
                if any(p in line + " " for p in paths):
                    out.append(f"mount (seen by {pid}): {line}")
        except OSError:
            pass
    p = subprocess.run(["find", "/sys/fs/cgroup", "-type", "d", "-name", name], capture_output=True,
                       text=True)
    for d in p.stdout.split():
        try:
            procs = Path(d, "cgroup.procs").read_text().split()
        except OSError as e:
            procs = [str(e)]
        out.append(f"cgroup: {d} (processes: {' '.join(procs) or 'none'})")
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            argv = (d / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if argv and b"container-runtime" in argv[0] and name.encode() in argv:
            out.append(f"process {d.name}: {b' '.join(argv).decode(errors='replace')}")
    return out


def files_left(c, name):
    return [str(p) for p in (c.root / "machines" / name, c.rundir / "machines" / name) if p.exists()]


# ---------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def mx(cm_factory, registry):
    c = cm_factory()
    c.start()
    c.registry = registry
    yield c
    for name in c.run("machine", "ls", "-q").stdout.split():
        c.run("machine", "rm", name)


@pytest.fixture(scope="module")
def fresh_user():
    """A member of group 'container' that never creates a machine."""
    name = "cmmxfresh"
    try:
        pwd.getpwnam(name)
    except KeyError:
        subprocess.run(["useradd", "-m", "-s", "/bin/bash", name], check=True)
    subprocess.run(["usermod", "-a", "-G", "container", name], check=True)
    return name


@pytest.fixture(scope="module", params=_params())
def machine(request, mx, test_user):
    (img_id, ref, kind), who = request.param
    # unique per test process: cgroups (container-machine/NAME) are host-wide, and another
    # run of this module (another CONTAINER_ROOT) may be going on at the same time
    name = f"mx{os.getpid()}-{img_id}-{who}"
    m = M(mx, name, kind, f"{mx.registry}/{ref}", who, test_user)
    had = mx.run("machine", "ls", "-q", user=m.as_user, check=True).stdout.split()
    try:
        t = time.monotonic()
        p = mx.run("machine", "create", m.ref, "--name", name, user=m.as_user, timeout=600)
        assert (p.returncode, p.stdout.strip()) == (0, name), f"create: {p.returncode}\n{p.stdout}\n{p.stderr}"
        m.wait_ready()
        print(f"{name}: create + boot{' + ready' if kind == 'systemd' else ''} "
              f"{time.monotonic() - t:.2f}s")
        m.first = not had
        yield m
    finally:
        for n in (name, f"{name}-ro", f"{name}-none"):
            mx.run("machine", "rm", n)


def only(m, kinds=None, who=None):
    if kinds and m.kind not in kinds:
        pytest.skip(f"not for {m.kind}")
    if who and m.who != who:
        pytest.skip(f"not for {m.who}")


# ---------------------------------------------------------------- per image x caller


def test_created_running_and_default(machine):
    m = machine
    assert m.status() == "running"
    defaults = ls_default(m.c, m.as_user)
    if m.first:
        assert defaults.get(m.name) is True, f"first machine of {m.uname} is not the default: {defaults}"
        assert m.c.run("machine", "run", "whoami", user=m.as_user).stdout == f"{m.uname}\n"


def test_whoami(machine):
    p = machine.run("whoami")
    assert (p.returncode, p.stdout) == (0, f"{machine.uname}\n"), p.stderr


def test_pwd_inside_and_outside_home(machine):
    m = machine
    sub = Path(m.home) / "cm-matrix" / "sub dir"
    sub.mkdir(parents=True, exist_ok=True)
    if m.who == "user":
        for d in (sub, sub.parent):
            os.chown(d, m.user.uid, m.user.gid)
    try:
        p = m.run("pwd", cwd=str(sub))
        assert p.stdout == f"{sub}\n", p.stderr
        p = m.run("pwd", cwd="/tmp")
        assert p.stdout == f"{m.home}\n", p.stderr
    finally:
        shutil.rmtree(sub.parent, ignore_errors=True)


def test_home_shared_both_ways_same_owner(machine):
    m = machine
    uid = 0 if m.who == "root" else m.user.uid
    gid = 0 if m.who == "root" else m.user.gid
    inside = Path(m.home) / f"cm-matrix-in-{m.name}"
    outside = Path(m.home) / f"cm-matrix-out-{m.name}"
    try:
        p = m.run("sh", "-c", f"echo from-inside > '{inside}'")
        assert p.returncode == 0, p.stderr
        assert inside.read_text() == "from-inside\n"
        assert (inside.stat().st_uid, inside.stat().st_gid) == (uid, gid)
        outside.write_text("from-host\n")
        os.chown(outside, uid, gid)
        p = m.run("sh", "-c", f"cat '{outside}'; stat -c '%u:%g' '{outside}'")
        assert p.stdout == f"from-host\n{uid}:{gid}\n", p.stderr
    finally:
        for f in (inside, outside):
            f.unlink(missing_ok=True)


def test_home_mount_ro_and_none(machine):
    m = machine
    only(m, who="user")
    marker = Path(m.home) / "cm-matrix-marker"
    marker.write_text("x\n")
    os.chown(marker, m.user.uid, m.user.gid)
    try:
        for mode in ("ro", "none"):
            n = f"{m.name}-{mode}"
            p = m.c.run("machine", "create", m.ref, "--name", n, "--home-mount", mode, user=m.user)
            assert p.returncode == 0, p.stderr
            try:
                sees = m.c.run("machine", "run", "-n", n, "test", "-e", str(marker), user=m.user).returncode
                w = m.c.run("machine", "run", "-n", n, "sh", "-c", f"echo y > '{m.home}/cm-matrix-w'",
                            user=m.user)
                if mode == "ro":
                    assert sees == 0, "home not visible with --home-mount ro"
                    assert w.returncode != 0, "write into a read-only home succeeded"
                    assert "Read-only" in w.stderr, w.stderr
                else:
                    assert sees != 0, "host home visible with --home-mount none"
                assert not (Path(m.home) / "cm-matrix-w").exists()
            finally:
                m.c.run("machine", "rm", n, user=m.user)
    finally:
        marker.unlink(missing_ok=True)
        (Path(m.home) / "cm-matrix-w").unlink(missing_ok=True)


def test_sudo(machine):
    m = machine
    only(m, who="user")
    if m.run("sh", "-c", "command -v sudo").returncode != 0:
        if m.kind == "busybox":
            pytest.skip("the busybox image has no sudo")
        pytest.fail(f"{m.kind} image has no sudo")
    p = m.run("sudo", "-n", "true")
    assert p.returncode == 0, p.stderr
    assert m.run("sudo", "-n", "id", "-u").stdout == "0\n"


def test_init_is_pid1(machine):
    m = machine
    comm = m.run("cat", "/proc/1/comm").stdout.strip()
    exe = m.root_run("readlink", "/proc/1/exe").stdout.strip()
    init = m.root_run("readlink", "-f", "/sbin/init").stdout.strip()
    print(f"{m.name}: pid 1 comm={comm} exe={exe} /sbin/init -> {init}")
    assert exe and exe == init
    if m.kind == "systemd":
        assert comm == "systemd"
    elif m.kind in ("busybox", "sysvinit"):
        assert comm == "init"
    elif m.kind == "openrc":
        assert comm in ("init", "openrc-init")


def test_systemd_running(machine):
    only(machine, kinds=["systemd"])
    machine.wait_ready()


def test_exit_statuses(machine):
    m = machine
    assert m.run("--", "sh", "-c", "exit 42").returncode == 42
    assert m.run("sh", "-c", "kill -KILL $$").returncode == 137
    p = m.run("cm-no-such-command")
    assert p.returncode == 127 and "not found" in p.stderr, p.stderr


def test_50mb_through_cat(machine):
    data = os.urandom(50 * 1024 * 1024)
    p = machine.run("cat", input=data)
    assert p.returncode == 0, p.stderr[-500:]
    assert len(p.stdout) == len(data)
    assert hashlib.sha256(p.stdout).hexdigest() == hashlib.sha256(data).hexdigest()


def test_20_concurrent_runs(machine):
    m = machine
    res = {}

    def one(n):
        p = m.run("--", "sh", "-c", "echo $0 $1; exit $1", "x", str(n), timeout=120)
        res[n] = (p.returncode, p.stdout, p.stderr)

    ts = [threading.Thread(target=one, args=(n,)) for n in range(1, 21)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    bad = {n: r for n, r in res.items() if r[:2] != (n, f"x {n}\n")}
    assert len(res) == 20 and not bad, bad


SYSV_SCRIPT = """#!/bin/sh
### BEGIN INIT INFO
# Provides:          cmmatrix
# Required-Start:
# Required-Stop:
# Default-Start:     2 3 4 5
# Default-Stop:      0 1 6
# Short-Description: container-machine test service
### END INIT INFO
case "$1" in
start) echo started > /etc/cm-matrix-started ;;
stop) echo stopped > /etc/cm-matrix-stopped ;;
esac
exit 0
"""

OPENRC_SCRIPT = """#!/sbin/openrc-run
description="container-machine test service"
start() { echo started > /etc/cm-matrix-started; }
stop() {
    einfo "cmmatrix: stop"
    echo stopped > /etc/cm-matrix-stopped || ewarn "cmmatrix: cannot write /etc/cm-matrix-stopped"
}
"""


def test_stop_fast_and_state_persists(machine):
    m = machine
    p = m.root_run("sh", "-c", f"echo {m.name} > /etc/cm-matrix-mark")
    assert p.returncode == 0, p.stderr
    if m.kind == "systemd":
        unit = ("[Unit]\nDescription=cm matrix\n[Service]\nType=oneshot\nRemainAfterExit=yes\n"
                "ExecStart=/bin/true\nExecStop=/bin/sh -c 'echo stopped > /etc/cm-matrix-stopped'\n"
                "[Install]\nWantedBy=multi-user.target\n")
        p = m.root_run("sh", "-c", f"printf \"{unit}\" > /etc/systemd/system/cmmatrix.service && "
                                   "systemctl enable --now cmmatrix.service")
        assert p.returncode == 0, p.stderr
    if m.kind in ("sysvinit", "openrc"):
        # a service whose stop action leaves a mark: proof that the init's shutdown ran
        if m.kind == "sysvinit":
            script = SYSV_SCRIPT
            install = "update-rc.d cmmatrix defaults && /etc/init.d/cmmatrix start"
        else:
            script = OPENRC_SCRIPT
            # rc-update -u: OpenRC rebuilds its dependency cache only when a script is newer than
            # the cache by whole seconds; a script written in the boot's second would be missing
            # from it, and `openrc shutdown` silently skips services the cache does not know.
            install = "rc-update -u && rc-update add cmmatrix default && rc-service cmmatrix start"
        p = m.root_run("sh", "-c", f"cat > /etc/init.d/cmmatrix && chmod +x /etc/init.d/cmmatrix && {install}",
                       input=script)
        assert p.returncode == 0, p.stdout + p.stderr
        assert m.run("cat", "/etc/cm-matrix-started").stdout == "started\n"
        if m.kind == "openrc":
            p = m.root_run("rc-service", "cmmatrix", "status")
            assert p.returncode == 0 and "started" in p.stdout, p.stdout + p.stderr
    m.root_run("rm", "-f", "/etc/cm-matrix-stopped", check=True)
    t = time.monotonic()
    p = m.c.run("machine", "stop", m.name, user=m.as_user, timeout=60)
    secs = time.monotonic() - t
    print(f"{m.name}: stop took {secs:.2f}s")
    assert p.returncode == 0, p.stderr
    assert m.status() == "stopped"
    assert secs < 8, f"stop of {m.kind} took {secs:.1f}s"
    p = m.run("cat", "/etc/cm-matrix-mark")
    assert p.stdout == f"{m.name}\n", p.stderr
    if m.kind in ("systemd", "sysvinit", "openrc"):   # the init's own shutdown ran
        p = m.run("cat", "/etc/cm-matrix-stopped")
        if p.stdout != "stopped\n":
            log = m.c.root / "machines" / m.name / "console.log"
            tail = log.read_text(errors="replace")[-3000:] if log.exists() else "(no console.log)"
            pytest.fail(f"{m.kind}: the service's stop action did not run at stop: {p.stderr}\n"
                        f"console.log (tail):\n{tail}", pytrace=False)
    m.wait_ready()
    if m.kind == "systemd":
        p = m.run("systemctl", "is-active", "cmmatrix.service")
        assert p.stdout.strip() == "active", p.stdout + p.stderr


def test_interactive_login_shell(machine):
    m = machine
    only(m, kinds=["systemd"], who="user")
    pexpect = pytest.importorskip("pexpect")
    env = dict(os.environ, **m.c.env)
    child = pexpect.spawn("runuser", ["-u", m.user.name, "--", "env", *[f"{k}={v}" for k, v in m.c.env.items()],
                                      str(m.c.bin.cli), "machine", "run", "-n", m.name],
                          env=env, timeout=20, encoding="utf-8", cwd=m.user.home, dimensions=(24, 80))
    try:
        child.sendline("PS1='cmprompt$ '; echo READY")
        child.expect("READY")
        child.expect_exact("cmprompt$ ")
        child.sendline("tty")
        child.expect(r"/dev/pts/\d+")
        child.expect_exact("cmprompt$ ")
        child.sendline("stty size")
        child.expect(r"24 80")
        child.expect_exact("cmprompt$ ")
        child.setwinsize(40, 132)
        time.sleep(0.3)
        child.sendline("stty size")
        child.expect(r"40 132")
        child.expect_exact("cmprompt$ ")
        child.sendline("sleep 100; echo after-sleep=$?")
        time.sleep(0.5)
        t = time.monotonic()
        child.sendintr()
        child.expect_exact("cmprompt$ ", timeout=5)
        assert time.monotonic() - t < 3
        assert not re.search(r"after-sleep=\d", child.before), child.before
        child.sendline("exit 5")
        child.expect(pexpect.EOF)
    finally:
        child.close()
    assert child.exitstatus == 5


def test_apiserver_kill9_restart(machine):
    m = machine
    c = m.c
    if m.run("test", "-e", "/etc/cm-matrix-mark").returncode != 0:
        m.root_run("sh", "-c", f"echo {m.name} > /etc/cm-matrix-mark", check=True)
    # a stopped machine next to the running one
    other = f"{m.name}-ro"
    c.run("machine", "create", m.ref, "--name", other, "--no-boot", user=m.as_user, check=True)
    try:
        before = {n: j["status"] for n, j in ls_json(c).items()}
        os.kill(c.apiserver_pid(), signal.SIGKILL)
        time.sleep(0.2)
        c.start()
        after = {n: j["status"] for n, j in ls_json(c).items()}
        assert after == before
        assert after[m.name] == "running" and after[other] == "stopped"
        assert m.run("whoami").stdout == f"{m.uname}\n"
        assert m.run("cat", "/etc/cm-matrix-mark").stdout == f"{m.name}\n"
    finally:
        c.run("machine", "rm", other, user=m.as_user)


def _kill_runtime(m):
    """kill -9 the machine's container-runtime; wait until it shows `stopped` and its
    processes are gone. Returns what is left (leaks())."""
    c = m.c
    m.run("true", check=True)
    pid = int((c.rundir / "machines" / m.name / "runtime.pid").read_text())
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 15
    while m.status() != "stopped" and time.monotonic() < deadline:
        time.sleep(0.2)
    assert m.status() == "stopped"
    left = []
    for _ in range(50):     # the runtime's children may need a moment to go
        left = leaks(c, m.name)
        if not left:
            break
        time.sleep(0.1)
    return left


def test_runtime_kill9(machine):
    m = machine
    left = _kill_runtime(m)
    assert not left, "\n".join(left)
    p = m.run("cat", "/etc/hostname")
    assert p.returncode == 0, p.stderr
    assert m.status() == "running"
    m.wait_ready()


def test_zz_rm_leaves_nothing(machine):
    m = machine
    c = m.c
    m.run("true", check=True)
    p = c.run("machine", "rm", m.name, user=m.as_user, timeout=60)
    assert p.returncode == 0, p.stderr
    assert m.name not in ls_json(c)
    assert not leaks(c, m.name), "\n".join(leaks(c, m.name))
    assert not files_left(c, m.name)


# ---------------------------------------------------------------- errors


def test_no_default_for_a_fresh_user(mx, fresh_user):
    p = mx.run("machine", "run", "true", user=fresh_user)
    assert p.returncode == 1
    assert p.stderr.strip() == "Error: no container machine specified and no default set"
