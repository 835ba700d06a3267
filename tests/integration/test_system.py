"""container system: start, stop, status, properties, the socket's permissions."""
import grp
import json
import os
import stat

import pytest

NOT_RUNNING = "Error: container system is not running; start it with 'container system start'"


def test_commands_fail_clearly_when_not_running(cm_factory):
    c = cm_factory()
    p = c.run("image", "ls")
    assert p.returncode == 1
    assert p.stderr.strip() == NOT_RUNNING


def test_start_is_idempotent_and_reports_runtimes(cm_factory):
    c = cm_factory()
    p = c.run("system", "start", "--root", c.root, check=True)
    assert "vm: " in p.stdout and "ns: " in p.stdout
    pid = c.apiserver_pid()
    assert pid
    p = c.run("system", "start", check=True)
    assert "already running" in p.stdout
    assert c.apiserver_pid() == pid
    c.stop()
    assert not c.socket.exists()
    assert c.run("image", "ls").stderr.strip() == NOT_RUNNING
    # a second stop is not an error
    p = c.run("system", "stop", check=True)
    assert "not running" in p.stdout


def test_status_human_and_json(cm):
    out = cm.ok("system", "status")
    assert "apiserver: running" in out
    assert f"root: {cm.root}" in out
    st = json.loads(cm.ok("system", "status", "--format", "json"))
    assert st["status"] == "running"
    assert st["root"] == str(cm.root)
    assert set(st["runtimes"]) == {"vm", "ns"}
    vm = st["runtimes"]["vm"]
    if os.path.exists("/sys/module/kvm_pvm") and not os.path.exists("/sys/module/kvm_intel") \
            and not os.path.exists("/sys/module/kvm_amd"):
        # this workplace: /dev/kvm exists but cannot run ordinary guests
        assert vm["kvm"] is False
        assert "does not run ordinary guests" in vm["kvmReason"]


def test_socket_is_root_container_0660(cm):
    s = os.stat(cm.socket)
    assert stat.S_IMODE(s.st_mode) == 0o660
    assert s.st_uid == 0
    assert s.st_gid == grp.getgrnam("container").gr_gid


def test_group_member_can_use_it(cm, test_user):
    p = cm.run("image", "ls", user=test_user)
    assert p.returncode == 0, p.stderr
    assert p.stdout.startswith("REPOSITORY")


def test_outsider_gets_permission_denied_with_hint(cm, outsider):
    p = cm.run("image", "ls", user=outsider)
    assert p.returncode == 1
    assert p.stderr.startswith("Error: permission denied")
    assert "group 'container'" in p.stderr


def test_non_root_cannot_start(cm_factory, test_user):
    c = cm_factory()
    p = c.run("system", "start", user=test_user)
    assert p.returncode == 1
    assert "needs root" in p.stderr


def test_properties(cm, test_user):
    assert cm.ok("system", "property", "get", "network.subnet").strip() == "192.168.64.0/24"
    cm.ok("system", "property", "set", "registry.insecure", "myreg:5000,other:1")
    assert cm.ok("system", "property", "get", "registry.insecure").strip() == "myreg:5000,other:1"
    assert json.loads((cm.root / "config.json").read_text())["registry.insecure"] == ["myreg:5000", "other:1"]
    ls = cm.ok("system", "property", "ls")
    assert ls.splitlines()[0].split() == ["KEY", "TYPE", "VALUE", "DESCRIPTION"]
    p = cm.run("system", "property", "set", "registry.timeout", "soon")
    assert p.returncode == 1 and "invalid value 'soon'" in p.stderr
    p = cm.run("system", "property", "get", "nope")
    assert p.returncode == 1 and "unknown property 'nope'" in p.stderr
    p = cm.run("system", "property", "set", "registry.insecure", "evil:1", user=test_user)
    assert p.returncode == 1 and "only root" in p.stderr
    cm.ok("system", "property", "set", "registry.insecure", "")
    assert cm.ok("system", "property", "get", "registry.insecure").strip() == ""


@pytest.mark.parametrize("argv", [["image", "pull"], ["image", "ls", "--bogus"], ["image", "frobnicate"],
                                  ["system", "status", "--format", "xml"], ["registry", "login"]])
def test_usage_errors_exit_64(cm, argv):
    p = cm.run(*argv)
    assert p.returncode == 64, (p.stdout, p.stderr)
    assert "Usage:" in p.stderr


def test_help_exits_0(cm):
    for argv in (["--help"], ["image", "--help"], ["image", "pull", "--help"], ["system", "--help"]):
        p = cm.run(*argv)
        assert p.returncode == 0 and "Usage:" in p.stdout, argv
