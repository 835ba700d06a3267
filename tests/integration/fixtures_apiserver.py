"""An apiserver of our own for each test module, with its own CONTAINER_ROOT and
CONTAINER_RUN, so that tests never touch the host's state.

Fixtures:
  cm_bin      paths of the built binaries (from $CM_BUILD_DIR or ./build)
  cm_factory  makes Container instances (not started); every one is stopped at the end
  cm          (module) a started Container
Container.run(*args, user=None, input=None, check=None) runs the real CLI, as root or as
USER through runuser, and returns the CompletedProcess (text).
"""
import os
import shutil
import signal
import stat
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from fixtures_images import run_as

__all__ = ["cm_bin", "cm_factory", "cm", "Container", "BUILD_DIR"]

REPO = Path(__file__).resolve().parent.parent.parent
BUILD_DIR = Path(os.environ.get("CM_BUILD_DIR", REPO / "build"))


class Binaries:
    def __init__(self, build):
        self.cli = build / "src" / "cli" / "container"
        self.apiserver = build / "src" / "apiserver" / "container-apiserver"
        for p in (self.cli, self.apiserver):
            if not p.exists():
                pytest.fail(f"{p} not built: run 'make' first", pytrace=False)


@pytest.fixture(scope="session")
def cm_bin():
    b = Binaries(BUILD_DIR)
    # The test users must be able to run the CLI from the build tree.
    p = b.cli
    while p != p.parent:
        mode = p.stat().st_mode
        if not mode & stat.S_IXOTH:
            os.chmod(p, mode | stat.S_IXOTH | (stat.S_IROTH if p.is_file() else 0))
        p = p.parent
    return b


class Container:
    def __init__(self, binaries, base):
        self.bin = binaries
        self.base = Path(base)
        self.root = self.base / "root"
        self.rundir = self.base / "run"
        self.base.mkdir(parents=True, exist_ok=True)
        os.chmod(self.base, 0o755)
        self.env = {"CONTAINER_ROOT": str(self.root), "CONTAINER_RUN": str(self.rundir),
                    "CONTAINER_APISERVER": str(self.bin.apiserver)}

    @property
    def socket(self):
        return self.rundir / "apiserver.sock"

    def run(self, *args, user=None, input=None, check=None, timeout=600, env=None, cwd=None):
        argv = [str(self.bin.cli), *[str(a) for a in args]]
        e = dict(self.env, **(env or {}))
        if user is None:
            full = dict(os.environ, **e)
            p = subprocess.run(argv, env=full, input=input, text=isinstance(input, str) or input is None,
                               capture_output=True, timeout=timeout, cwd=cwd)
        else:
            kw = {"cwd": cwd} if cwd else {}
            p = run_as(user, argv, env=e, input=input, timeout=timeout,
                       text=isinstance(input, str) or input is None, **kw)
        if check is True and p.returncode != 0:
            raise AssertionError(f"{' '.join(map(str, args))} exited {p.returncode}\n"
                                 f"stdout: {p.stdout}\nstderr: {p.stderr}")
        if check is False and p.returncode == 0:
            raise AssertionError(f"{' '.join(map(str, args))} unexpectedly succeeded\nstdout: {p.stdout}")
        return p

    def ok(self, *args, **kw):
        """stdout of a command that must succeed."""
        return self.run(*args, check=True, **kw).stdout

    def start(self):
        self.run("system", "start", "--root", self.root, check=True, timeout=60)
        # No machine network (bridge, NAT) in the host's namespace: only test_network.py,
        # inside a namespace of its own, turns it on.
        self.run("system", "property", "set", "network.mode", "none", check=True)

    def apiserver_pid(self):
        try:
            return int((self.rundir / "apiserver.pid").read_text().strip())
        except (FileNotFoundError, ValueError):
            return None

    def stop(self):
        pid = self.apiserver_pid()
        if self.socket.exists():
            self.run("system", "stop", timeout=60)
        if pid:
            for _ in range(100):
                try:
                    os.kill(pid, 0)
                except ProcessLookupError:
                    break
                time.sleep(0.05)
            else:
                os.kill(pid, signal.SIGKILL)

    def store_snapshot(self):
        """Names of every file under content/ and layers/ (to prove nothing changed)."""
        out = set()
        for sub in ("content", "layers"):
            d = self.root / sub
            if d.exists():
                for p in d.rglob("*"):
                    if p.name != ".lock":
                        out.add(str(p.relative_to(self.root)))
        return out

    def cleanup(self):
        self.stop()
        shutil.rmtree(self.base, ignore_errors=True)


@pytest.fixture(scope="module")
def cm_factory(cm_bin):
    made = []

    def make():
        c = Container(cm_bin, tempfile.mkdtemp(prefix="cm-it-", dir="/tmp"))
        made.append(c)
        return c

    yield make
    for c in made:
        c.cleanup()


@pytest.fixture(scope="module")
def cm(cm_factory):
    c = cm_factory()
    c.start()
    return c
