"""Smoke tests of the test fixtures themselves: images, registries, users."""
import json
import os
import subprocess
import tarfile
import tempfile
import time
from pathlib import Path

import pytest

from fixtures_images import (FIXTURES_DIR, IMAGE_REPOS, check_multilayer_tree,
                             registry_get, run_as)

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
ALL_MANIFESTS = [OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST,
                 "application/vnd.docker.distribution.manifest.list.v2+json"]
LAYOUTS = ["busybox", "debian", "multilayer", "busybox-zstd", "multiarch", "webstack", "sysvinit",
           "openrc"]


@pytest.fixture
def scratch():
    """A temporary directory removed at the end of the test, whatever happens."""
    with tempfile.TemporaryDirectory(prefix="cm-fixtures-") as d:
        yield Path(d)


def skopeo(*args):
    p = subprocess.run(["skopeo", "--insecure-policy", *args], capture_output=True, text=True,
                       timeout=300)
    assert p.returncode == 0, f"skopeo {' '.join(args)}: {p.stderr}"
    return p.stdout


def manifest(address, repo, ref, accept=ALL_MANIFESTS, auth=None):
    status, headers, body = registry_get(address, f"/v2/{repo}/manifests/{ref}", accept, auth)
    assert status == 200, f"{repo}:{ref}: HTTP {status} {body[:200]!r}"
    return headers.get("Content-Type"), json.loads(body)


@pytest.mark.parametrize("name", LAYOUTS)
def test_layout_readable_by_skopeo(images, name):
    assert (images / name / "oci-layout").is_file()
    assert (images / f"{name}.stamp").is_file()
    raw = json.loads(skopeo("inspect", "--raw", f"oci:{images / name}:latest"))
    assert raw["schemaVersion"] == 2


def test_image_configs(images):
    bb = json.loads(skopeo("inspect", "--config", f"oci:{images / 'busybox'}:latest"))
    assert bb["config"]["Cmd"] == ["/bin/sh"]
    assert any(e.startswith("PATH=") for e in bb["config"]["Env"])
    assert (bb["os"], bb["architecture"]) == ("linux", "amd64")
    for name in ("debian", "webstack"):
        deb = json.loads(skopeo("inspect", "--config", f"oci:{images / name}:latest"))
        assert deb["config"]["Cmd"] == ["/sbin/init"]
        assert "container=oci" in deb["config"]["Env"]
        assert deb["config"]["StopSignal"] == "SIGRTMIN+3"
    for name in ("sysvinit", "openrc"):
        cfg = json.loads(skopeo("inspect", "--config", f"oci:{images / name}:latest"))["config"]
        assert cfg["Cmd"] == ["/sbin/init"]
        assert "container=oci" in cfg["Env"]
        assert "StopSignal" not in cfg  # the runtime uses the init's own shutdown
    ml = json.loads(skopeo("inspect", "--raw", f"oci:{images / 'multilayer'}:latest"))
    assert len(ml["layers"]) == 4  # busybox + 3


def test_cached_rebuild_is_a_no_op(images):
    t = time.monotonic()
    p = subprocess.run([str(FIXTURES_DIR / "build-images.sh"), str(images)],
                       capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr
    assert "building" not in p.stdout, p.stdout
    assert p.stdout.count("up to date") == 9, p.stdout
    assert time.monotonic() - t < 10


def test_archives(images):
    with tarfile.open(images / "busybox-docker-archive.tar") as t:
        man = json.load(t.extractfile("manifest.json"))
        # skopeo writes the tag fully qualified (docker save would write "busybox:latest")
        assert man[0]["RepoTags"] == ["docker.io/library/busybox:latest"]
    with tarfile.open(images / "busybox-oci-archive.tar") as t:
        assert "oci-layout" in [n.lstrip("./") for n in t.getnames()]
        index = json.load(t.extractfile([m for m in t.getmembers()
                                         if m.name.lstrip("./") == "index.json"][0]))
        assert index["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"] \
            == "busybox:latest"
    with tarfile.open(images / "busybox-rootfs.tar.gz") as t:
        init = t.getmember("./sbin/init")
        assert init.issym() and init.linkname == "/bin/busybox"
        assert t.getmember("./etc/inittab").isfile()
    # skopeo (a peer) reads both archives back
    skopeo("inspect", "--raw", f"docker-archive:{images / 'busybox-docker-archive.tar'}")
    skopeo("inspect", "--raw", f"oci-archive:{images / 'busybox-oci-archive.tar'}")


def test_busybox_rootfs_runs(images, scratch):
    root = scratch / "root"
    root.mkdir()
    subprocess.run(["tar", "-xzf", images / "busybox-rootfs.tar.gz", "-C", root], check=True)
    p = subprocess.run(["chroot", root, "/bin/sh", "-c", "readlink /sbin/init; cat /etc/inittab"],
                       capture_output=True, text=True, check=True)
    assert p.stdout.startswith("/bin/busybox\n")
    assert "::sysinit:/etc/init.d/rcS" in p.stdout
    rcs = (root / "etc/init.d/rcS").read_text()
    assert "ip link set lo up" in rcs


def test_registry_catalog(registry):
    status, _, body = registry_get(registry, "/v2/_catalog")
    assert status == 200
    assert sorted(json.loads(body)["repositories"]) == sorted(IMAGE_REPOS)
    for repo, tags in IMAGE_REPOS.items():
        status, _, body = registry_get(registry, f"/v2/{repo}/tags/list")
        assert sorted(json.loads(body)["tags"]) == sorted(tags)
        for tag in tags:
            out = skopeo("inspect", "--tls-verify=false", "--no-creds",
                         f"docker://{registry}/{repo}:{tag}")
            assert json.loads(out)["Os"] == "linux"


def test_registry_serves_oci_only_when_accepted(registry):
    status, _, _ = registry_get(registry, "/v2/library/busybox/manifests/latest",
                                accept=DOCKER_MANIFEST)
    assert status == 404  # docker-registry 2.8 hides OCI manifests from Docker-only clients
    ctype, m = manifest(registry, "library/busybox", "latest")
    assert ctype == OCI_MANIFEST
    assert m["layers"][0]["mediaType"] == "application/vnd.oci.image.layer.v1.tar+gzip"


def test_registry_digests_match_layouts(registry, images):
    """Pushed with --preserve-digests: tags resolve to the layouts' own digests."""
    local = json.loads((images / "busybox" / "index.json").read_text())["manifests"][0]["digest"]
    _, headers, _ = registry_get(registry, "/v2/library/alpine/manifests/latest",
                                 accept=ALL_MANIFESTS, method="HEAD")
    assert headers.get("Docker-Content-Digest") == local


def test_zstd_layer_media_type(registry):
    _, m = manifest(registry, "test/busybox-zstd", "latest")
    assert [l["mediaType"] for l in m["layers"]] == ["application/vnd.oci.image.layer.v1.tar+zstd"]
    digest = m["layers"][0]["digest"]
    status, _, blob = registry_get(registry, f"/v2/test/busybox-zstd/blobs/{digest}")
    assert status == 200 and blob[:4] == b"\x28\xb5\x2f\xfd"  # zstd frame magic


def test_multiarch_index(registry):
    ctype, idx = manifest(registry, "test/multiarch", "latest")
    assert ctype == OCI_INDEX
    assert len(idx["manifests"]) == 2
    platforms = {(d["platform"]["os"], d["platform"]["architecture"]): d["digest"]
                 for d in idx["manifests"]}
    assert set(platforms) == {("linux", "amd64"), ("linux", "arm64")}
    for (_, arch), digest in platforms.items():
        _, m = manifest(registry, "test/multiarch", digest)
        status, _, cfg = registry_get(registry, f"/v2/test/multiarch/blobs/{m['config']['digest']}")
        assert json.loads(cfg)["architecture"] == arch


def test_docker_media_types(registry):
    ctype, m = manifest(registry, "test/docker-busybox", "latest", accept=DOCKER_MANIFEST)
    assert ctype == DOCKER_MANIFEST
    assert m["config"]["mediaType"] == "application/vnd.docker.container.image.v1+json"
    assert m["layers"][0]["mediaType"] == "application/vnd.docker.image.rootfs.diff.tar.gzip"


def test_webstack_image(registry, images):
    """library/webstack:latest is the local layout, and its single layer holds apache2 and
    mariadbd (the networking tests cannot apt-get them inside a machine)."""
    index = json.loads((images / "webstack" / "index.json").read_text())
    _, headers, _ = registry_get(registry, "/v2/library/webstack/manifests/latest",
                                 accept=ALL_MANIFESTS, method="HEAD")
    assert headers.get("Docker-Content-Digest") == index["manifests"][0]["digest"]
    m = json.loads(skopeo("inspect", "--raw", f"oci:{images / 'webstack'}:latest"))
    assert len(m["layers"]) == 1
    blob = images / "webstack" / "blobs" / "sha256" / m["layers"][0]["digest"].split(":")[1]
    want = {"usr/sbin/apache2", "usr/sbin/mariadbd", "usr/sbin/init"}  # /sbin -> usr/sbin
    found, man_pages = {}, []
    with tarfile.open(blob, "r|gz") as t:
        for e in t:
            name = e.name.removeprefix("./")
            if name in want:
                found[name] = "file" if e.isfile() else "symlink" if e.issym() else "other"
            elif name.startswith("usr/share/man/") and e.isfile():
                man_pages.append(name)
    assert found == {"usr/sbin/apache2": "file", "usr/sbin/mariadbd": "file",
                     "usr/sbin/init": "symlink"}
    assert man_pages == []  # dpkg path-exclude keeps the image small


@pytest.mark.parametrize("name,repo,init", [("sysvinit", "library/debian-sysvinit", None),
                                             ("openrc", "library/debian-openrc", "openrc-init")])
def test_rc_images(registry, images, scratch, name, repo, init):
    """debian-sysvinit:12 boots sysvinit's own /sbin/init with sysv-rc; debian-openrc:12 has
    /sbin/init -> openrc-init. Neither has systemd; no gettys in the inittab; no man pages."""
    index = json.loads((images / name / "index.json").read_text())
    _, headers, _ = registry_get(registry, f"/v2/{repo}/manifests/12", accept=ALL_MANIFESTS,
                                 method="HEAD")
    assert headers.get("Docker-Content-Digest") == index["manifests"][0]["digest"]
    subprocess.run(["umoci", "raw", "unpack", "--image", f"{images / name}:latest",
                    scratch / "root"], check=True, capture_output=True)
    root = scratch / "root"
    sbin_init = root / "usr/sbin/init"  # /sbin -> usr/sbin
    dpkg = ["chroot", root, "dpkg-query", "-W", "-f", "${Package} ${db:Status-Status}\n"]
    status = dict(l.split() for l in subprocess.run(
        dpkg + ["systemd", "systemd-sysv", "sysvinit-core", "openrc"],
        capture_output=True, text=True).stdout.splitlines())
    assert status.get("systemd", "not-installed") == "not-installed"
    assert status.get("systemd-sysv", "not-installed") == "not-installed"
    assert not (root / "lib/systemd/systemd").exists()
    assert not list((root / "usr/share/man").rglob("*.gz"))
    if init is None:
        assert sbin_init.is_file() and not sbin_init.is_symlink()
        owner = subprocess.run(["chroot", root, "dpkg-query", "-S", "/sbin/init"],
                               capture_output=True, text=True, check=True).stdout
        assert owner.startswith("sysvinit-core:")
        assert status["sysvinit-core"] == "installed"
        assert (root / "usr/sbin/telinit").is_symlink()  # the runtime's sysvinit detection
        # sysv-rc: /etc/init.d/rc -> /lib/init/rc (absolute: resolved inside the root)
        assert os.readlink(root / "etc/init.d/rc") == "/lib/init/rc"
        assert (root / "usr/lib/init/rc").is_file() and (root / "etc/rc2.d").is_dir()
        inittab = (root / "etc/inittab").read_text().splitlines()
        assert not [l for l in inittab if "getty" in l and not l.startswith("#")]
        assert "si::sysinit:/etc/init.d/rcS" in inittab
        assert "pf::powerwait:/sbin/shutdown -h now" in inittab
        assert not list((root / "etc/rc0.d").glob("K*umountroot"))
    else:
        assert os.readlink(sbin_init) == init
        assert (root / "usr/sbin" / init).is_file()
        assert (root / "usr/sbin/openrc").is_file() and (root / "etc/init.d/rc").is_file()
        assert status["openrc"] == "installed"
        assert status.get("sysvinit-core", "not-installed") == "not-installed"
        assert 'rc_sys="lxc"' in (root / "etc/rc.conf").read_text().splitlines()


def test_multilayer_roundtrip_unpacks_as_expected(registry, scratch):
    """Pulled back from the registry and unpacked by umoci (a peer), the multilayer image
    matches multilayer.expected.json: the expectations others' unpack tests use are right."""
    skopeo("copy", "--quiet", "--src-tls-verify=false", "--src-no-creds",
           f"docker://{registry}/test/multilayer:latest", f"oci:{scratch / 'oci'}:latest")
    subprocess.run(["umoci", "unpack", "--image", f"{scratch / 'oci'}:latest",
                    scratch / "bundle"], check=True, capture_output=True)
    assert check_multilayer_tree(scratch / "bundle" / "rootfs") == []


def test_auth_registry(auth_registry):
    status, headers, _ = registry_get(auth_registry.address, "/v2/")
    assert status == 401 and "Basic" in headers.get("WWW-Authenticate", "")
    status, _, _ = registry_get(auth_registry.address, "/v2/", auth=("cmtester", "wrong"))
    assert status == 401
    status, _, body = registry_get(auth_registry.address, "/v2/_catalog", auth=auth_registry)
    assert status == 200
    assert sorted(json.loads(body)["repositories"]) == sorted(IMAGE_REPOS)
    _, m = manifest(auth_registry.address, "test/busybox-zstd", "latest", auth=auth_registry)
    assert m["layers"][0]["mediaType"].endswith("+zstd")


def test_users(test_user, outsider):
    p = run_as(test_user, ["id", "-un"], check=True)
    assert p.stdout.strip() == "cmtest"
    assert "container" in run_as(test_user, ["id", "-Gn"]).stdout.split()
    assert "container" not in run_as(outsider, ["id", "-Gn"]).stdout.split()
    p = run_as("cmtest", ["sh", "-c", 'echo "$HOME $FOO $PWD"'], env={"FOO": "bar"})
    assert p.stdout.strip() == f"{test_user.home} bar {test_user.home}"
    assert run_as(test_user, ["false"]).returncode == 1
