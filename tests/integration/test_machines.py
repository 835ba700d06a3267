"""container machine on the ns runtime: the walkthrough of SPEC.md, as a non-root user in
group 'container' (and as root where that is the point), against images served from a
local registry that is configured as the docker.io mirror."""
import hashlib
import json
import os
import pwd
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest

from fixtures_images import run_as

LS_HEADER = ["NAME", "CREATED", "IP", "CPUS", "MEMORY", "DISK", "STATE", "DEFAULT"]


@pytest.fixture(scope="module")
def mc(cm_factory, registry):
    """An apiserver whose docker.io mirror is the test registry: alpine:latest is the busybox
    image (busybox init), debian:12 is Debian 12 with systemd."""
    c = cm_factory()
    c.start()
    c.ok("system", "property", "set", "registry.mirrors", f"http://{registry}")
    yield c
    # machines are removed by the apiserver's owner... make sure none is left running
    for name in c.ok("machine", "ls", "-q").split():
        c.run("machine", "rm", name)


@pytest.fixture(scope="module")
def second_user():
    """Another member of group 'container' (must not see cmtest's machines)."""
    try:
        pwd.getpwnam("cmtest2")
    except KeyError:
        subprocess.run(["useradd", "-m", "-s", "/bin/bash", "cmtest2"], check=True)
    subprocess.run(["usermod", "-a", "-G", "container", "cmtest2"], check=True)
    return "cmtest2"


def ls_rows(c, user=None):
    out = c.run("machine", "ls", user=user, check=True).stdout.splitlines()
    assert re.split(r"\s{2,}", out[0].strip()) == LS_HEADER
    return out


def ls_json(c, user=None):
    return {m["name"]: m for m in json.loads(c.run("machine", "ls", "--format", "json", user=user,
                                                    check=True).stdout)}


@pytest.fixture(scope="module")
def devbox(mc, test_user):
    p = mc.run("machine", "create", "alpine:latest", "--name", "devbox", user=test_user)
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == "devbox"
    return "devbox"


# ---------------------------------------------------------------- the walkthrough, busybox


def test_ls_shows_the_machine(mc, devbox, test_user):
    rows = ls_rows(mc, test_user)
    row = [r for r in rows[1:] if r.split()[0] == devbox]
    assert row, rows
    cols = row[0].split()
    assert re.match(r"\d{4}-\d\d-\d\d", cols[1]) and re.match(r"\d\d:\d\d:\d\d", cols[2])
    assert "running" in cols and cols[-1] == "*"  # the first machine is the default
    js = ls_json(mc, test_user)[devbox]
    assert js["status"] == "running"


def test_whoami_and_pwd_are_the_callers(mc, devbox, test_user):
    p = mc.run("machine", "run", "-n", devbox, "whoami", user=test_user)
    assert (p.returncode, p.stdout) == (0, "cmtest\n"), p.stderr
    sub = Path(test_user.home) / "proj" / "deep"
    sub.mkdir(parents=True, exist_ok=True)
    os.chown(sub, test_user.uid, test_user.gid)
    os.chown(sub.parent, test_user.uid, test_user.gid)
    p = mc.run("machine", "run", "-n", devbox, "pwd", user=test_user, cwd=str(sub))
    assert p.stdout == f"{sub}\n", p.stderr
    # outside the shared home: the user's home inside the machine
    p = mc.run("machine", "run", "-n", devbox, "pwd", user=test_user, cwd="/tmp")
    assert p.stdout == f"{test_user.home}\n"
    # the default machine is used without -n
    p = mc.run("machine", "run", "id", "-u", user=test_user)
    assert p.stdout.strip() == str(test_user.uid)


def test_home_is_shared_with_same_ownership(mc, devbox, test_user):
    p = mc.run("machine", "run", "-n", devbox, "sh", "-c", "echo from-inside > ~/made-inside", user=test_user)
    assert p.returncode == 0, p.stderr
    f = Path(test_user.home) / "made-inside"
    assert f.read_text() == "from-inside\n"
    assert (f.stat().st_uid, f.stat().st_gid) == (test_user.uid, test_user.gid)
    f.unlink()


def test_argv_is_kept_intact(mc, devbox, test_user):
    p = mc.run("machine", "run", "-n", devbox, "printf", "%s|", "a b", "c'd", "$HOME", "", user=test_user)
    assert p.stdout == "a b|c'd|$HOME||"
    p = mc.run("machine", "run", "-n", devbox, "ls", "-la", "/", user=test_user)
    assert p.returncode == 0 and "bin" in p.stdout


def test_exit_status_and_errors_like_a_shell(mc, devbox, test_user):
    assert mc.run("machine", "run", "-n", devbox, "sh", "-c", "exit 7", user=test_user).returncode == 7
    p = mc.run("machine", "run", "-n", devbox, "no-such-command", user=test_user)
    assert p.returncode == 127 and "not found" in p.stderr
    p = mc.run("machine", "run", "-n", devbox, "/etc/passwd", user=test_user)
    assert p.returncode == 126
    p = mc.run("machine", "run", "-n", devbox, "sh", "-c", "kill -TERM $$", user=test_user)
    assert p.returncode == 128 + signal.SIGTERM


def test_stdin_and_byte_exact_output(mc, devbox, test_user):
    data = os.urandom(3 * 1024 * 1024)
    p = mc.run("machine", "run", "-n", devbox, "cat", user=test_user, input=data)
    assert p.returncode == 0
    assert hashlib.sha256(p.stdout).hexdigest() == hashlib.sha256(data).hexdigest()
    # stdout and stderr stay separate
    p = mc.run("machine", "run", "-n", devbox, "sh", "-c", "echo out; echo err >&2", user=test_user)
    assert (p.stdout, p.stderr) == ("out\n", "err\n")


def test_environment_is_clean_and_options_apply(mc, devbox, test_user):
    envf = Path(test_user.home) / "test.env"  # the user's own file, readable by the user
    envf.write_text("FROMFILE=1\nBOTH=file\n")
    os.chown(envf, test_user.uid, test_user.gid)
    p = mc.run("machine", "run", "-n", devbox, "--env-file", envf, "-e", "BOTH=cli", "-e", "SECRET_HOST_VAR",
               "env", user=test_user, env={"SECRET_HOST_VAR": "copied", "LEAKY": "no", "LANG": "C.UTF-8"})
    env = dict(l.split("=", 1) for l in p.stdout.splitlines() if "=" in l)
    assert env["USER"] == "cmtest" and env["HOME"] == test_user.home and env["LOGNAME"] == "cmtest"
    assert env["FROMFILE"] == "1" and env["BOTH"] == "cli" and env["SECRET_HOST_VAR"] == "copied"
    assert env.get("LANG") == "C.UTF-8"
    assert "LEAKY" not in env
    assert mc.run("machine", "run", "-n", devbox, "--root", "id", "-u", user=test_user).stdout.strip() == "0"
    assert mc.run("machine", "run", "-n", devbox, "-w", "/etc", "pwd", user=test_user).stdout.strip() == "/etc"


def test_others_do_not_see_it(mc, devbox, second_user):
    p = mc.run("machine", "run", "-n", devbox, "true", user=second_user)
    assert p.returncode == 1
    assert p.stderr.strip() == f"Error: container machine with ID {devbox} not found"
    assert devbox not in mc.run("machine", "ls", "-q", user=second_user).stdout.split()
    p = mc.run("machine", "stop", devbox, user=second_user)
    assert p.returncode == 1 and "not found" in p.stderr
    # root sees everything
    assert devbox in mc.ok("machine", "ls", "-q").split()
    assert mc.run("machine", "run", "-n", devbox, "id", "-u").stdout.strip() == "0"


def test_inspect_fields(mc, devbox, test_user):
    info = json.loads(mc.run("machine", "inspect", devbox, user=test_user, check=True).stdout)
    assert isinstance(info, list) and len(info) == 1
    m = info[0]
    for k in ("id", "status", "runtime", "image", "platform", "cpus", "memory", "diskSize", "homeMount",
              "virtualization", "kernelPath", "ipAddress", "createdDate", "startedDate", "userSetup"):
        assert k in m, k
    assert m["runtime"] == "ns" and m["status"] == "running"
    assert m["image"]["reference"] == "docker.io/library/alpine:latest"
    assert m["userSetup"] == {"username": "cmtest", "uid": test_user.uid, "gid": test_user.gid}
    assert m["memory"] >= 1 << 30


def test_stop_and_persistence(mc, devbox, test_user):
    mc.run("machine", "run", "-n", devbox, "--root", "sh", "-c", "echo kept > /var/persist", user=test_user,
           check=True)
    t = time.time()
    mc.run("machine", "stop", devbox, user=test_user, check=True)
    stop_secs = time.time() - t
    assert ls_json(mc, test_user)[devbox]["status"] == "stopped"
    mc.run("machine", "stop", devbox, user=test_user, check=True)  # idempotent
    # run boots a stopped machine
    p = mc.run("machine", "run", "-n", devbox, "cat", "/var/persist", user=test_user)
    assert p.stdout == "kept\n", p.stderr
    print(f"busybox stop took {stop_secs:.2f}s")


def test_apiserver_restart_keeps_machines_running(mc, devbox, test_user):
    mc.run("machine", "run", "-n", devbox, "true", user=test_user, check=True)
    os.kill(mc.apiserver_pid(), signal.SIGKILL)
    time.sleep(0.2)
    mc.start()
    assert ls_json(mc, test_user)[devbox]["status"] == "running"
    assert mc.run("machine", "run", "-n", devbox, "whoami", user=test_user).stdout == "cmtest\n"


def test_set_notes_pending_changes(mc, devbox, test_user):
    p = mc.run("machine", "set", "-n", devbox, "cpus=1", user=test_user)
    assert p.returncode == 0
    assert f"Note: Changes will take effect after stopping and restarting '{devbox}'." in p.stderr
    p = mc.run("machine", "set", "-n", devbox, "colour=blue", user=test_user)
    assert p.returncode == 1
    assert "unknown fields 'colour'. Valid: cpus, memory, home-mount, virtualization, kernel" in p.stderr


def test_logs(mc, devbox, test_user):
    p = mc.run("machine", "logs", devbox, user=test_user)
    assert p.returncode == 0


@pytest.mark.parametrize("args,text", [
    (["--name", "Bad_Name"], "machine name 'Bad_Name' must start and end with a lowercase letter or digit, "
                             "and contain only lowercase letters, digits, and hyphens"),
    (["--name", "a" * 58], "machine name cannot be longer than 57"),
    (["--name", "m1", "--memory", "512M"], "invalid memory value '512M'. Must be greater than 1gb."),
    (["--name", "m1", "--cpus", "zero"], "invalid CPU count 'zero'. Must be a positive integer (e.g., 4)."),
    (["--name", "m1", "--home-mount", "maybe"], "invalid home mount option 'maybe'. Valid options: ro, rw, none"),
])
def test_create_errors(mc, test_user, args, text):
    p = mc.run("machine", "create", "alpine:latest", *args, user=test_user)
    assert p.returncode == 1
    assert p.stderr.strip().splitlines()[-1] == f"Error: {text}"


def test_create_name_taken_and_unknown(mc, devbox, test_user):
    p = mc.run("machine", "create", "alpine:latest", "--name", devbox, "--no-boot", user=test_user)
    assert p.returncode == 1 and f"container machine already exists: {devbox}" in p.stderr
    p = mc.run("machine", "stop", "nosuch", user=test_user)
    assert p.stderr.strip() == "Error: container machine with ID nosuch not found"


def test_image_without_init_is_refused_and_nothing_left(mc, images, test_user, tmp_path):
    import tarfile, io
    f = tmp_path / "noinit.tar"
    with tarfile.open(f, "w") as t:
        ti = tarfile.TarInfo("etc/hostname")
        ti.size = 3
        t.addfile(ti, io.BytesIO(b"no\n"))
    mc.ok("image", "import", f, "local/noinit:1")
    before = sorted(os.listdir(mc.root / "machines")) if (mc.root / "machines").exists() else []
    p = mc.run("machine", "create", "local/noinit:1", "--name", "noinit", user=test_user)
    assert p.returncode == 1
    assert ("image 'docker.io/local/noinit:1' has no /sbin/init and cannot boot as a machine; "
            "build one with an init system (see docs/images.md)") in p.stderr
    after = sorted(os.listdir(mc.root / "machines")) if (mc.root / "machines").exists() else []
    assert after == before


def test_name_derived_from_image(mc, test_user):
    p = mc.run("machine", "create", "alpine:latest", "--no-boot", user=test_user)
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == "alpine-latest"
    mc.run("machine", "rm", "alpine-latest", user=test_user, check=True)
    assert "alpine-latest" not in mc.run("machine", "ls", "-q", user=test_user).stdout.split()


# ---------------------------------------------------------------- Debian with systemd


@pytest.fixture(scope="module")
def devdeb(mc, test_user):
    p = mc.run("machine", "create", "debian:12", "--name", "devdeb", user=test_user, timeout=600)
    assert p.returncode == 0, p.stderr
    return "devdeb"


def test_systemd_is_pid1_and_running(mc, devdeb, test_user):
    deadline = time.time() + 60
    state = ""
    while time.time() < deadline:
        state = mc.run("machine", "run", "-n", devdeb, "systemctl", "is-system-running", user=test_user).stdout.strip()
        if state in ("running", "degraded"):
            break
        time.sleep(0.5)
    failed = mc.run("machine", "run", "-n", devdeb, "systemctl", "--failed", "--no-legend", user=test_user).stdout
    assert state == "running", f"state {state}; failed units:\n{failed}"
    p = mc.run("machine", "run", "-n", devdeb, "sudo", "systemctl", "status", user=test_user)
    assert p.returncode == 0, p.stderr
    assert mc.run("machine", "run", "-n", devdeb, "cat", "/proc/1/comm", user=test_user).stdout == "systemd\n"
    assert mc.run("machine", "run", "-n", devdeb, "hostname", user=test_user).stdout == "devdeb\n"


def test_gnu_script_edited_on_host(mc, devdeb, test_user):
    maint = Path(test_user.home) / "maint"
    maint.mkdir(exist_ok=True)
    script = maint / "report.sh"
    script.write_text('#!/usr/bin/env bash\necho "report for $(date -d yesterday +%F)"\n')
    script.chmod(0o755)
    for p in (maint, script):
        os.chown(p, test_user.uid, test_user.gid)
    p = mc.run("machine", "run", "-n", devdeb, "./report.sh", user=test_user, cwd=str(maint))
    assert p.returncode == 0, p.stderr
    assert re.fullmatch(r"report for \d{4}-\d\d-\d\d\n", p.stdout)


def test_enabled_unit_survives_stop(mc, devdeb, test_user):
    unit = ("[Unit]\nDescription=test\n[Service]\nType=oneshot\nRemainAfterExit=yes\n"
            "ExecStart=/bin/true\n[Install]\nWantedBy=multi-user.target\n")
    p = mc.run("machine", "run", "-n", devdeb, "sudo", "sh", "-c",
               f"printf '{unit}' > /etc/systemd/system/cmtest.service && systemctl enable --now cmtest",
               user=test_user)
    assert p.returncode == 0, p.stderr
    t = time.time()
    mc.run("machine", "stop", devdeb, user=test_user, check=True)
    stop_secs = time.time() - t
    assert stop_secs < 9, f"systemd stop took {stop_secs:.1f}s: was the right signal sent?"
    p = mc.run("machine", "run", "-n", devdeb, "systemctl", "is-active", "cmtest", user=test_user)
    assert p.stdout.strip() == "active", p.stderr


def test_interactive_login_shell(mc, devdeb, test_user):
    pexpect = pytest.importorskip("pexpect")
    env = dict(os.environ, **mc.env)
    child = pexpect.spawn("runuser", ["-u", "cmtest", "--", "env", *[f"{k}={v}" for k, v in mc.env.items()],
                                      str(mc.bin.cli), "machine", "run", "-n", devdeb],
                          env=env, timeout=30, encoding="utf-8")
    child.sendline("echo login=$0 user=$(whoami) tty=$(tty)")
    child.expect(r"login=-?\S*bash user=cmtest tty=/dev/pts/\d+")
    child.sendline("exit 3")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 3


def test_rm_removes_everything(mc, test_user):
    mc.run("machine", "create", "alpine:latest", "--name", "gone", user=test_user, check=True)
    mc.run("machine", "rm", "gone", user=test_user, check=True)
    assert not (mc.root / "machines" / "gone").exists()
    assert not (mc.rundir / "machines" / "gone" / "session.sock").exists()
    assert "gone" not in mc.run("machine", "ls", "-q", user=test_user).stdout.split()
