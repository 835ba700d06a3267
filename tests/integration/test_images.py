"""container image: pull (registry, mirror, auth, platforms, compression, digests), load,
save, import, push, tag, rm — and the unpacked trees compared with umoci's."""
import hashlib
import json
import os
import stat
import subprocess
import tarfile
import io
import gzip
import tempfile
from pathlib import Path

import pytest

from fake_registry import EVIL_TARGETS, FakeRegistry, make_tar

# ---------------------------------------------------------------- helpers


def layer_dirs(c, ref):
    """Unpacked layer directories of an image, bottom first."""
    info = json.loads(c.ok("image", "inspect", ref))[0]
    dirs = [Path(l["path"]) for l in info["layers"]]
    for d in dirs:
        assert d.is_dir(), d
    return dirs


class MergedView:
    """The image's root as a machine would see it: a read-only overlay of its layers."""

    def __init__(self, dirs):
        self.dirs = dirs
        self.mnt = None

    def __enter__(self):
        if len(self.dirs) == 1:
            return self.dirs[0]
        self.mnt = tempfile.mkdtemp(prefix="cm-merged-")
        lower = ":".join(str(d) for d in reversed(self.dirs))
        subprocess.run(["mount", "-t", "overlay", "overlay", "-o", f"ro,lowerdir={lower}", self.mnt], check=True)
        return Path(self.mnt)

    def __exit__(self, *exc):
        if self.mnt:
            subprocess.run(["umount", self.mnt], check=False)
            os.rmdir(self.mnt)


def tree(root):
    """relpath -> (type, mode, uid, gid, detail, xattrs) without following anything."""
    out = {}
    root = str(root)
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = os.path.join(dirpath, name)
            rel = os.path.relpath(p, root)
            s = os.lstat(p)
            m = s.st_mode
            if stat.S_ISLNK(m):
                kind, detail = "l", os.readlink(p)
            elif stat.S_ISREG(m):
                with open(p, "rb") as f:
                    kind, detail = "f", hashlib.sha256(f.read()).hexdigest()
            elif stat.S_ISDIR(m):
                kind, detail = "d", ""
            elif stat.S_ISCHR(m) or stat.S_ISBLK(m):
                kind, detail = "c" if stat.S_ISCHR(m) else "b", f"{os.major(s.st_rdev)}:{os.minor(s.st_rdev)}"
            elif stat.S_ISFIFO(m):
                kind, detail = "p", ""
            else:
                kind, detail = "?", ""
            xattrs = {}
            if not stat.S_ISLNK(m):
                for k in os.listxattr(p, follow_symlinks=False):
                    if not k.startswith("trusted.overlay."):
                        xattrs[k] = os.getxattr(p, k, follow_symlinks=False)
            out[rel] = (kind, stat.S_IMODE(m), s.st_uid, s.st_gid, detail, tuple(sorted(xattrs.items())))
    return out


def umoci_tree(layout, tag="latest"):
    d = tempfile.mkdtemp(prefix="cm-umoci-")
    subprocess.run(["umoci", "raw", "unpack", "--image", f"{layout}:{tag}", f"{d}/rootfs"], check=True,
                   capture_output=True)
    try:
        return tree(f"{d}/rootfs")
    finally:
        subprocess.run(["rm", "-rf", d])


def assert_same_tree(ours, theirs):
    missing = sorted(set(theirs) - set(ours))
    extra = sorted(set(ours) - set(theirs))
    differ = sorted(k for k in set(ours) & set(theirs) if ours[k] != theirs[k])
    msg = []
    if missing:
        msg.append(f"missing: {missing[:10]}")
    if extra:
        msg.append(f"extra: {extra[:10]}")
    for k in differ[:10]:
        msg.append(f"{k}: ours {ours[k]} umoci {theirs[k]}")
    assert not msg, "\n".join(msg)


@pytest.fixture
def c(cm_factory):
    """A fresh apiserver and store for a test that needs a clean slate."""
    x = cm_factory()
    x.start()
    return x


# ---------------------------------------------------------------- pull


@pytest.mark.parametrize("name,layout", [("library/busybox:latest", "busybox"),
                                         ("test/multilayer:latest", "multilayer"),
                                         ("library/debian:12", "debian")])
def test_pull_unpacks_like_umoci(cm, registry, images, name, layout):
    ref = f"{registry}/{name}"
    out = cm.ok("image", "pull", ref)
    assert out.strip() == ref
    with MergedView(layer_dirs(cm, ref)) as root:
        assert_same_tree(tree(root), umoci_tree(images / layout))


def test_multilayer_whiteouts_and_metadata(cm, registry):
    from fixtures_images import check_multilayer_tree
    ref = f"{registry}/test/multilayer:latest"
    cm.ok("image", "pull", ref)
    with MergedView(layer_dirs(cm, ref)) as root:
        assert check_multilayer_tree(root) == []


def test_pull_through_mirror_resolves_alpine(c, registry, test_user):
    c.ok("system", "property", "set", "registry.mirrors", f"http://{registry}")
    p = c.run("image", "pull", "alpine:latest", check=True)
    assert p.stdout.strip() == "docker.io/library/alpine:latest"
    ls = c.ok("image", "ls")
    lines = ls.splitlines()
    assert lines[0].split() == ["REPOSITORY", "TAG", "DIGEST", "SIZE", "CREATED"]
    row = [l.split() for l in lines[1:] if l.split()[0] == "alpine"]
    assert row and row[0][1] == "latest"
    assert c.ok("image", "ls", "-q").split() == ["docker.io/library/alpine:latest"]
    js = json.loads(c.ok("image", "ls", "--format", "json"))
    assert js[0]["name"] == "docker.io/library/alpine:latest" and js[0]["digest"].startswith("sha256:")
    # a user in the group sees and uses the same store
    p = c.run("image", "pull", "alpine", user=test_user)
    assert p.returncode == 0, p.stderr
    # and our store is a real OCI layout: a peer reads it
    sk = subprocess.run(["skopeo", "inspect", f"oci:{c.root}/content:docker.io/library/alpine:latest"],
                        capture_output=True, text=True)
    assert sk.returncode == 0, sk.stderr
    assert json.loads(sk.stdout)["Digest"] == js[0]["digest"] or json.loads(sk.stdout)["Layers"]


def test_pull_by_digest_and_tag(cm, registry):
    ref = f"{registry}/library/busybox:latest"
    cm.ok("image", "pull", ref)
    digest = json.loads(cm.ok("image", "inspect", ref))[0]["digest"]
    byd = f"{registry}/library/busybox@{digest}"
    assert cm.ok("image", "pull", byd).strip() == byd
    assert json.loads(cm.ok("image", "inspect", byd))[0]["digest"] == digest
    wrong = f"{registry}/library/busybox@sha256:{'0' * 64}"
    p = cm.run("image", "pull", wrong)
    assert p.returncode == 1 and p.stderr.strip().splitlines()[-1].startswith("Error: ")


def test_pull_zstd_layers(cm, registry):
    ref = f"{registry}/test/busybox-zstd:latest"
    cm.ok("image", "pull", ref)
    info = json.loads(cm.ok("image", "inspect", ref))[0]
    assert any("zstd" in l["mediaType"] for l in info["layers"])
    with MergedView(layer_dirs(cm, ref)) as root:
        assert (root / "bin" / "busybox").exists()


def test_pull_docker_media_types(cm, registry):
    ref = f"{registry}/test/docker-busybox:latest"
    cm.ok("image", "pull", ref)
    with MergedView(layer_dirs(cm, ref)) as root:
        assert (root / "sbin" / "init").is_symlink()


def test_multiplatform_index_picks_host_or_requested(c, registry):
    ref = f"{registry}/test/multiarch:latest"
    c.ok("image", "pull", ref)
    with MergedView(layer_dirs(c, ref)) as root:
        assert (root / "ARCH").read_text().strip() == "amd64"
    c.ok("image", "pull", "--platform", "linux/arm64", ref)
    with MergedView(layer_dirs(c, ref)) as root:
        assert (root / "ARCH").read_text().strip() == "arm64"
    p = c.run("image", "pull", "--platform", "linux/s390x", ref)
    assert p.returncode == 1 and "linux/amd64" in p.stderr  # names what is available


def test_progress_plain_lines_when_not_a_terminal(c, registry):
    p = c.run("image", "pull", f"{registry}/library/debian:12", check=True)
    assert "Pulling" in p.stderr and "\033[" not in p.stderr
    assert "Digest: sha256:" in p.stderr


def test_auth_registry_login_logout(c, auth_registry, test_user):
    ref = f"{auth_registry.address}/library/busybox:latest"
    p = c.run("image", "pull", ref, user=test_user)
    assert p.returncode == 1
    assert "unauthorized" in p.stderr.lower() or "authentication" in p.stderr.lower()
    assert "container registry login" in p.stderr
    p = c.run("registry", "login", "-u", auth_registry.username, "--password-stdin", auth_registry.address,
              input="wrong-password\n", user=test_user)
    assert p.returncode == 1
    p = c.run("registry", "login", "-u", auth_registry.username, "--password-stdin", auth_registry.address,
              input=auth_registry.password + "\n", user=test_user)
    assert p.returncode == 0, p.stderr
    cred = c.root / "auth" / f"{test_user.uid}.json"
    assert stat.S_IMODE(cred.stat().st_mode) == 0o600
    assert auth_registry.password not in cred.read_text()  # encoded, as docker does; never in clear
    p = c.run("image", "pull", ref, user=test_user)
    assert p.returncode == 0, p.stderr
    # credentials are per user: root has not logged in
    c.ok("image", "rm", ref)
    p = c.run("image", "pull", ref)
    assert p.returncode == 1
    c.run("registry", "logout", auth_registry.address, user=test_user, check=True)
    p = c.run("image", "pull", ref, user=test_user)
    assert p.returncode == 1


# ---------------------------------------------------------------- archives


def test_load_docker_archive_written_by_skopeo(c, images):
    p = c.run("image", "load", "-i", images / "busybox-docker-archive.tar", check=True)
    assert "Loaded image: docker.io/library/busybox:latest" in p.stdout
    with MergedView(layer_dirs(c, "busybox")) as root:
        assert_same_tree(tree(root), umoci_tree(images / "busybox"))


def test_load_oci_archive_from_stdin(c, images):
    with open(images / "busybox-oci-archive.tar", "rb") as f:
        p = c.run("image", "load", input=f.read())
    assert p.returncode == 0, p.stderr
    assert b"Loaded image:" in p.stdout


def test_save_rm_load_roundtrip(c, registry, tmp_path):
    ref = f"{registry}/test/multilayer:latest"
    c.ok("image", "pull", ref)
    before = json.loads(c.ok("image", "inspect", ref))[0]
    out = tmp_path / "saved.tar"
    c.ok("image", "save", "-o", out, ref)
    c.ok("image", "rm", ref)
    assert ref not in c.ok("image", "ls", "-q")
    assert not any((c.root / "layers").iterdir())  # garbage-collected
    blobs = list((c.root / "content" / "blobs" / "sha256").iterdir())
    assert blobs == []
    p = c.run("image", "load", "-i", out, check=True)
    assert f"Loaded image: {ref}" in p.stdout
    after = json.loads(c.ok("image", "inspect", ref))[0]
    assert after["digest"] == before["digest"]
    # skopeo reads what we saved
    sk = subprocess.run(["skopeo", "inspect", f"oci-archive:{out}"], capture_output=True, text=True)
    assert sk.returncode == 0, sk.stderr


def test_import_rootfs_tarball(c, images):
    digest = c.ok("image", "import", images / "busybox-rootfs.tar.gz", "local/imported:1").strip()
    assert digest.startswith("sha256:")
    info = json.loads(c.ok("image", "inspect", "local/imported:1"))[0]
    assert len(info["layers"]) == 1
    with MergedView(layer_dirs(c, "local/imported:1")) as root:
        assert (root / "bin" / "busybox").exists()
    # from stdin too
    with open(images / "busybox-rootfs.tar.gz", "rb") as f:
        p = c.run("image", "import", "-", "local/imported:2", input=f.read())
    assert p.returncode == 0, p.stderr


def test_tag_push_and_pull_back(c, registry):
    src = f"{registry}/library/busybox:latest"
    dst = f"{registry}/pushed/busybox:v1"
    c.ok("image", "pull", src)
    c.ok("image", "tag", src, dst)
    c.ok("image", "push", dst)
    digest = json.loads(c.ok("image", "inspect", dst))[0]["digest"]
    c.ok("image", "rm", dst)
    c.ok("image", "rm", src)
    c.ok("image", "pull", dst)
    assert json.loads(c.ok("image", "inspect", dst))[0]["digest"] == digest


def test_rm_unknown_and_inspect_unknown(cm):
    p = cm.run("image", "rm", "no/such:image")
    assert p.returncode == 1 and p.stderr.strip().splitlines()[-1].startswith("Error: ") and "not found" in p.stderr
    p = cm.run("image", "inspect", "no/such:image")
    assert p.returncode == 1 and "not found" in p.stderr


@pytest.mark.parametrize("ref", ["UPPER/case", "a:b:c", "", "x@sha256:123"])
def test_bad_references(cm, ref):
    p = cm.run("image", "pull", ref)
    assert p.returncode in (1, 64)
    assert p.stderr.strip().splitlines()[-1].startswith("Error: ")


# ---------------------------------------------------------------- bad input leaves the store as it was


@pytest.fixture(scope="module")
def fake():
    with FakeRegistry() as f:
        yield f


@pytest.mark.parametrize("repo,words", [
    ("bad/digest", "digest"),
    ("bad/truncated", ""),
    ("bad/missing", ""),
    ("bad/json", "json"),
    ("bad/mediatype", "media type"),
    ("evil/dotdot", ".."),
    ("evil/absolute", ""),
    ("evil/symlink", "escape"),
    ("evil/symlinkdir", "up"),
    ("evil/hardlink", "passwd"),
])
def test_bad_pulls_fail_cleanly(cm, fake, repo, words):
    cm.ok("image", "pull", f"{fake.address}/ok/image:latest")  # the control works
    before = cm.store_snapshot()
    p = cm.run("image", "pull", f"{fake.address}/{repo}:latest", timeout=180)
    assert p.returncode == 1, p.stdout
    assert p.stderr.strip().splitlines()[-1].startswith("Error: ")
    assert words.lower() in p.stderr.lower(), p.stderr
    assert cm.store_snapshot() == before
    for t in EVIL_TARGETS:
        assert not os.path.lexists(t), f"{t} was written outside the root"
    assert not (Path("/etc/passwd").stat().st_nlink > 1)


def test_hanging_registry_times_out(c, fake):
    c.ok("system", "property", "set", "registry.timeout", "2")
    before = c.store_snapshot()
    p = c.run("image", "pull", f"{fake.address}/bad/hang:latest", timeout=120)
    assert p.returncode == 1
    assert "timed out" in p.stderr
    assert c.store_snapshot() == before


@pytest.mark.parametrize("kind", ["dotdot", "absolute", "symlink", "symlinkdir", "hardlink"])
def test_import_refuses_escaping_tarballs(cm, kind, tmp_path):
    from fake_registry import EVIL_LAYERS
    f = tmp_path / "evil.tar"
    f.write_bytes(make_tar(EVIL_LAYERS[kind]))
    before = cm.store_snapshot()
    p = cm.run("image", "import", f, f"local/evil-{kind}:1")
    assert p.returncode == 1 and p.stderr.strip().splitlines()[-1].startswith("Error: ")
    assert cm.store_snapshot() == before
    for t in EVIL_TARGETS:
        assert not os.path.lexists(t)


def test_load_garbage_is_refused(cm, tmp_path):
    f = tmp_path / "garbage.tar"
    f.write_bytes(b"this is not an archive" * 100)
    before = cm.store_snapshot()
    p = cm.run("image", "load", "-i", f)
    assert p.returncode == 1 and p.stderr.strip().splitlines()[-1].startswith("Error: ")
    assert cm.store_snapshot() == before


# ---------------------------------------------------------------- crashes and concurrency


def test_apiserver_killed_mid_pull_leaves_no_half_blob(c, registry):
    import signal
    import time
    ref = f"{registry}/library/debian:12"
    p = subprocess.Popen([str(c.bin.cli), "image", "pull", ref], env=dict(os.environ, **c.env),
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    # wait until a layer is being downloaded, then kill the apiserver hard
    for line in p.stderr:
        if b"downloading" in line:
            break
    os.kill(c.apiserver_pid(), signal.SIGKILL)
    p.communicate(timeout=60)
    assert p.returncode != 0
    blobs = c.root / "content" / "blobs" / "sha256"
    for b in blobs.iterdir():  # whatever is visible is complete and verified
        assert "sha256:" + hashlib.sha256(b.read_bytes()).hexdigest() == "sha256:" + b.name
    c.start()
    assert not any((c.root / "tmp").iterdir())  # leftovers cleaned at start
    c.ok("image", "pull", ref)
    with MergedView(layer_dirs(c, ref)) as root:
        assert (root / "usr" / "bin" / "systemctl").exists()


def test_two_pulls_at_once_share_the_layers(c, registry):
    ref = f"{registry}/library/debian:12"
    env = dict(os.environ, **c.env)
    procs = [subprocess.Popen([str(c.bin.cli), "image", "pull", ref], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    for p in procs:
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
    info = json.loads(c.ok("image", "inspect", ref))[0]
    layers = [l for l in (c.root / "layers").iterdir() if not l.name.startswith(".")]
    assert len(layers) == len(info["layers"])
