"""Test images, local registries and test users for the integration tests.

Imported by conftest.py (``from fixtures_images import *``). Fixtures:

  images         (session) Path of the built OCI layouts (tests/fixtures/build-images.sh;
                 cached, so usually instant). See tests/fixtures/README.md.
  registry       (session) "127.0.0.1:PORT" of an anonymous registry holding every test
                 image (library/busybox:latest, library/alpine:latest, library/debian:12,
                 library/debian:13, test/multilayer:latest, test/busybox-zstd:latest,
                 test/multiarch:latest, test/docker-busybox:latest, library/webstack:latest,
                 library/debian-sysvinit:12, library/debian-openrc:12).
  auth_registry  (session) AuthRegistry(address, username, password): the same images on a
                 registry that requires basic auth. str(auth_registry) is the address.
  test_user      (session) User "cmtest", member of group "container".
  outsider       (session) User "cmoutsider", NOT a member of group "container".

Helpers: run_as(user, argv, env=None, **kw), registry_get(address, path, ...),
check_multilayer_tree(root), free_port(), IMAGE_REPOS.
"""
import base64
import dataclasses
import grp
import json
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

import pytest

__all__ = [
    "images", "registry", "auth_registry", "test_user", "outsider",
    "run_as", "registry_get", "check_multilayer_tree", "free_port",
    "User", "AuthRegistry", "IMAGES_DIR", "FIXTURES_DIR", "IMAGE_REPOS",
    "CONTAINER_GROUP",
]

FIXTURES_DIR = Path(__file__).resolve().parent.parent / "fixtures"
IMAGES_DIR = Path(os.environ.get("CM_TEST_IMAGES", "/var/cache/container-machine-test/images"))
CONTAINER_GROUP = "container"

# repository -> tags, as `registry.sh push` lays them out
IMAGE_REPOS = {
    "library/busybox": ["latest"],
    "library/alpine": ["latest"],
    "library/debian": ["12", "13"],
    "test/multilayer": ["latest"],
    "test/busybox-zstd": ["latest"],
    "test/multiarch": ["latest"],
    "test/docker-busybox": ["latest"],
    "library/webstack": ["latest"],
    "library/debian-sysvinit": ["12"],
    "library/debian-openrc": ["12"],
}


@dataclasses.dataclass(frozen=True)
class User:
    name: str
    uid: int
    gid: int
    home: str

    def __str__(self):
        return self.name


@dataclasses.dataclass(frozen=True)
class AuthRegistry:
    address: str   # "127.0.0.1:PORT"
    username: str
    password: str

    def __str__(self):
        return self.address


def _require_root():
    if os.geteuid() != 0:
        pytest.skip("needs root (image layers with other owners, a registry, test users)")


def _run(argv, what, timeout=900, env=None):
    """Run a fixture script; fail the requesting test with its output if it fails."""
    try:
        p = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                           timeout=timeout, env=env)
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"{what}: timed out after {timeout} s\n{e.output or ''}", pytrace=False)
    if p.returncode != 0:
        pytest.fail(f"{what}: exit {p.returncode}\n{p.stdout}", pytrace=False)
    return p.stdout


def free_port():
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def images():
    """Build (or reuse the cached) test images; returns the directory of OCI layouts."""
    _require_root()
    _run([str(FIXTURES_DIR / "build-images.sh"), str(IMAGES_DIR)], "build-images.sh")
    return IMAGES_DIR


def _start_registry(images_dir, name, auth=None):
    """Start a registry (retrying on a port taken meanwhile), push the images.
    Returns (dir, address); the caller must _stop_registry(dir)."""
    env = dict(os.environ, CM_TEST_IMAGES=str(images_dir))
    script = str(FIXTURES_DIR / "registry.sh")
    d = Path(tempfile.mkdtemp(prefix=f"cm-{name}-"))
    last = ""
    for _ in range(5):
        port = free_port()
        argv = [script, "start", str(d), str(port)]
        if auth:
            argv = [script, "start-auth", str(d), str(port), *auth]
        p = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                           env=env, timeout=60)
        if p.returncode == 0:
            break
        last = p.stdout
    else:
        shutil.rmtree(d, ignore_errors=True)
        pytest.fail(f"registry.sh start failed:\n{last}", pytrace=False)
    try:
        _run([script, "push", str(d), str(port)], f"registry.sh push ({name})", timeout=600, env=env)
    except BaseException:
        _stop_registry(d)
        raise
    return d, f"127.0.0.1:{port}"


def _stop_registry(d):
    subprocess.run([str(FIXTURES_DIR / "registry.sh"), "stop", str(d)],
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=60)
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="session")
def registry(images):
    """An anonymous registry on 127.0.0.1 with every test image; yields "127.0.0.1:PORT"."""
    d, address = _start_registry(images, "registry")
    try:
        yield address
    finally:
        _stop_registry(d)


@pytest.fixture(scope="session")
def auth_registry(images):
    """A registry requiring basic auth, with every test image; yields an AuthRegistry."""
    user, password = "cmtester", "cm-test-password"
    d, address = _start_registry(images, "auth-registry", (user, password))
    try:
        yield AuthRegistry(address, user, password)
    finally:
        _stop_registry(d)


def registry_get(address, path, accept=None, auth=None, method="GET"):
    """(status, headers, body bytes) of http://ADDRESS/PATH, never through a proxy.
    auth: (user, password) or an AuthRegistry."""
    if isinstance(auth, AuthRegistry):
        auth = (auth.username, auth.password)
    req = urllib.request.Request(f"http://{address}/{path.lstrip('/')}", method=method)
    if accept:
        req.add_header("Accept", accept if isinstance(accept, str) else ", ".join(accept))
    if auth:
        token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
        req.add_header("Authorization", "Basic " + token)
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(req, timeout=30) as r:
            return r.status, r.headers, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()


# ------------------------------------------------------------------ users

def _ensure_group(name):
    try:
        return grp.getgrnam(name).gr_gid
    except KeyError:
        subprocess.run(["groupadd", "-f", name], check=True)
        return grp.getgrnam(name).gr_gid


def _ensure_user(name):
    try:
        pwd.getpwnam(name)
    except KeyError:
        subprocess.run(["useradd", "-m", "-s", "/bin/bash", "-c", "container-machine test user",
                        name], check=True)
    pw = pwd.getpwnam(name)
    os.makedirs(pw.pw_dir, exist_ok=True)
    return User(pw.pw_name, pw.pw_uid, pw.pw_gid, pw.pw_dir)


def _in_group(user, group):
    return user in grp.getgrnam(group).gr_mem


@pytest.fixture(scope="session")
def test_user():
    """User "cmtest" (created if missing, kept afterwards) in group "container"."""
    _require_root()
    _ensure_group(CONTAINER_GROUP)
    user = _ensure_user("cmtest")
    if not _in_group(user.name, CONTAINER_GROUP):
        subprocess.run(["usermod", "-a", "-G", CONTAINER_GROUP, user.name], check=True)
    return user


@pytest.fixture(scope="session")
def outsider():
    """User "cmoutsider" (created if missing), guaranteed NOT in group "container"."""
    _require_root()
    _ensure_group(CONTAINER_GROUP)
    user = _ensure_user("cmoutsider")
    if _in_group(user.name, CONTAINER_GROUP):
        subprocess.run(["gpasswd", "-d", user.name, CONTAINER_GROUP], check=True,
                       stdout=subprocess.DEVNULL)
    return user


def run_as(user, argv, env=None, **kw):
    """Run argv as USER (a name or User) via `runuser -u USER --`.

    The environment is the current one plus `env` (runuser sets HOME, SHELL, USER and
    LOGNAME for the target user); pass env={"K": None} to remove a variable. The working
    directory defaults to the user's home (the caller's may be unreadable to it).
    Output is captured as text unless stdout/stderr/capture_output are given; other
    keyword arguments go to subprocess.run (check, input, timeout, cwd, ...).
    Returns the subprocess.CompletedProcess."""
    name = str(user)
    full_env = dict(os.environ)
    for k, v in (env or {}).items():
        if v is None:
            full_env.pop(k, None)
        else:
            full_env[k] = v
    kw.setdefault("text", True)
    kw.setdefault("cwd", pwd.getpwnam(name).pw_dir)
    kw.setdefault("timeout", 300)
    if not {"stdout", "stderr", "capture_output"} & kw.keys():
        kw["capture_output"] = True
    return subprocess.run(["runuser", "-u", name, "--", *[str(a) for a in argv]],
                          env=full_env, **kw)


# ------------------------------------------------------------------ image content checks

def _expected_multilayer():
    return json.loads((IMAGES_DIR / "multilayer" / "multilayer.expected.json").read_text())


def check_multilayer_tree(root, expected=None):
    """Compare an unpacked image 'multilayer' under ROOT with multilayer.expected.json.
    Returns a list of differences (empty when the tree is right). Nothing under ROOT is
    followed: symlinks are read, not resolved."""
    import stat as st
    exp = expected or _expected_multilayer()
    root = Path(root)
    errors = []
    types = {"file": st.S_ISREG, "dir": st.S_ISDIR, "symlink": st.S_ISLNK,
             "fifo": st.S_ISFIFO, "chardev": st.S_ISCHR}
    for rel, e in sorted(exp["present"].items()):
        p = root / rel
        try:
            s = os.lstat(p)
        except FileNotFoundError:
            errors.append(f"{rel}: missing")
            continue
        if not types[e["type"]](s.st_mode):
            errors.append(f"{rel}: not a {e['type']} (mode {oct(s.st_mode)})")
            continue
        if e["type"] == "symlink":
            if os.readlink(p) != e["target"]:
                errors.append(f"{rel}: symlink to {os.readlink(p)!r}, want {e['target']!r}")
            continue
        if "mode" in e and st.S_IMODE(s.st_mode) != int(e["mode"], 8):
            errors.append(f"{rel}: mode {oct(st.S_IMODE(s.st_mode))}, want 0o{e['mode']}")
        for k in ("uid", "gid"):
            if k in e and getattr(s, "st_" + k) != e[k]:
                errors.append(f"{rel}: {k} {getattr(s, 'st_' + k)}, want {e[k]}")
        if "mtime" in e and int(s.st_mtime) != e["mtime"]:
            errors.append(f"{rel}: mtime {int(s.st_mtime)}, want {e['mtime']}")
        if "content" in e and p.read_bytes() != e["content"].encode():
            errors.append(f"{rel}: content {p.read_bytes()!r}, want {e['content']!r}")
        if "nlink" in e and s.st_nlink != e["nlink"]:
            errors.append(f"{rel}: {s.st_nlink} links, want {e['nlink']}")
        if "same_inode_as" in e:
            try:
                if os.lstat(root / e["same_inode_as"]).st_ino != s.st_ino:
                    errors.append(f"{rel}: not a hard link of {e['same_inode_as']}")
            except FileNotFoundError:
                pass
        if e["type"] == "chardev" and (os.major(s.st_rdev), os.minor(s.st_rdev)) != (e["major"], e["minor"]):
            errors.append(f"{rel}: device {os.major(s.st_rdev)}:{os.minor(s.st_rdev)}")
        for k, v in e.get("xattrs", {}).items():
            try:
                got = os.getxattr(p, k, follow_symlinks=False)
            except OSError as ex:
                errors.append(f"{rel}: xattr {k}: {ex.strerror}")
                continue
            if got != v.encode():
                errors.append(f"{rel}: xattr {k}={got!r}, want {v!r}")
    for rel in exp["absent"]:
        if os.path.lexists(root / rel):
            errors.append(f"{rel}: should not exist")
    return errors
