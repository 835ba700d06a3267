"""A registry that misbehaves on purpose, on 127.0.0.1, for the bad-input tests.

Each repository name selects a behaviour:
  ok/image           a valid one-layer image (the control)
  bad/digest         the layer's bytes do not match the digest in the manifest
  bad/truncated      the layer is served shorter than the manifest says
  bad/missing        the manifest names a layer the registry does not have
  bad/json           the manifest is not JSON
  bad/mediatype      the manifest has an unknown media type
  bad/hang           the manifest request is accepted but never answered
  evil/<kind>        a valid image whose layer tries to write outside the root:
                     dotdot, absolute, symlink, hardlink, symlinkdir
"""
import gzip
import hashlib
import io
import json
import tarfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def sha(b):
    return "sha256:" + hashlib.sha256(b).hexdigest()


def make_tar(entries):
    """entries: list of (name, kind, data_or_target)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as t:
        for name, kind, arg in entries:
            ti = tarfile.TarInfo(name)
            ti.mtime = 1700000000
            if kind == "file":
                ti.size = len(arg)
                t.addfile(ti, io.BytesIO(arg))
            elif kind == "dir":
                ti.type = tarfile.DIRTYPE
                ti.mode = 0o755
                t.addfile(ti)
            elif kind == "symlink":
                ti.type = tarfile.SYMTYPE
                ti.linkname = arg
                t.addfile(ti)
            elif kind == "hardlink":
                ti.type = tarfile.LNKTYPE
                ti.linkname = arg
                t.addfile(ti)
    return buf.getvalue()


EVIL_LAYERS = {
    "dotdot": [("etc", "dir", None), ("../../../../tmp/cm-evil-dotdot", "file", b"pwned")],
    "absolute": [("/tmp/cm-evil-absolute", "file", b"pwned")],
    "symlink": [("escape", "symlink", "/tmp"), ("escape/cm-evil-symlink", "file", b"pwned")],
    "symlinkdir": [("up", "symlink", "../../../../../../tmp"), ("up/cm-evil-symlinkdir", "file", b"pwned")],
    "hardlink": [("passwd", "hardlink", "../../../../../../etc/passwd")],
}
EVIL_TARGETS = ["/tmp/cm-evil-dotdot", "/tmp/cm-evil-absolute", "/tmp/cm-evil-symlink",
                "/tmp/cm-evil-symlinkdir"]


class Image:
    def __init__(self, layer_tar, mediatype="application/vnd.oci.image.manifest.v1+json"):
        self.layer = gzip.compress(layer_tar, mtime=0)
        self.diff_id = sha(layer_tar)
        self.config = json.dumps({
            "architecture": "amd64", "os": "linux", "created": "2024-01-01T00:00:00Z",
            "config": {"Env": ["PATH=/bin"]},
            "rootfs": {"type": "layers", "diff_ids": [self.diff_id]},
        }).encode()
        self.manifest = json.dumps({
            "schemaVersion": 2,
            "mediaType": mediatype,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                       "digest": sha(self.config), "size": len(self.config)},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                        "digest": sha(self.layer), "size": len(self.layer)}],
        }).encode()
        self.blobs = {sha(self.config): self.config, sha(self.layer): self.layer}


class FakeRegistry:
    def __init__(self):
        self.repos = {"ok/image": Image(make_tar([("hello", "file", b"hello\n")]))}
        for kind, entries in EVIL_LAYERS.items():
            self.repos[f"evil/{kind}"] = Image(make_tar(entries))
        for kind in ("digest", "truncated", "missing", "json", "mediatype", "hang"):
            self.repos[f"bad/{kind}"] = Image(make_tar([("f", "file", b"x" * 1000)]),
                                              "application/x-unknown" if kind == "mediatype"
                                              else "application/vnd.oci.image.manifest.v1+json")
        self.stop_event = threading.Event()
        reg = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def send(self, code, body=b"", ctype="application/json", length=None):
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body) if length is None else length))
                self.send_header("Docker-Distribution-Api-Version", "registry/2.0")
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            def do_HEAD(self):
                self.do_GET()

            def do_GET(self):
                path = self.path.split("?")[0]
                if path in ("/v2/", "/v2"):
                    return self.send(200, b"{}")
                if not path.startswith("/v2/"):
                    return self.send(404)
                rest = path[4:]
                for sep in ("/manifests/", "/blobs/"):
                    if sep in rest:
                        repo, ref = rest.split(sep, 1)
                        break
                else:
                    return self.send(404)
                img = reg.repos.get(repo)
                if img is None:
                    return self.send(404, b'{"errors":[{"code":"NAME_UNKNOWN","message":"repository name not known"}]}')
                kind = repo.split("/", 1)[1]
                if sep == "/manifests/":
                    if repo == "bad/hang":
                        reg.stop_event.wait(120)
                        return
                    if repo == "bad/json":
                        return self.send(200, b"{not json", "application/vnd.oci.image.manifest.v1+json")
                    mt = json.loads(img.manifest)["mediaType"]
                    return self.send(200, img.manifest, mt)
                blob = img.blobs.get(ref)
                if blob is None or (repo == "bad/missing" and ref != sha(img.config)):
                    return self.send(404, b'{"errors":[{"code":"BLOB_UNKNOWN","message":"blob unknown"}]}')
                if repo == "bad/digest" and ref != sha(img.config):
                    blob = bytearray(blob)
                    blob[len(blob) // 2] ^= 0xFF
                    return self.send(200, bytes(blob), "application/octet-stream")
                if repo == "bad/truncated" and ref != sha(img.config):
                    return self.send(200, blob[: len(blob) // 2], "application/octet-stream")
                return self.send(200, blob, "application/octet-stream")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def address(self):
        return f"127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop_event.set()
        self.server.shutdown()
        self.server.server_close()
        time.sleep(0.05)
