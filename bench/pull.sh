#!/bin/bash
# Pull of the Debian test image from a registry on 127.0.0.1: ours against `skopeo copy`
# side by side, medians of $RUNS runs (hyperfine). Stores live on a tmpfs, fresh every run.
#   ours (download)  container image pull, then the time without the unpack is not separable,
#                    so two numbers are reported: ours-full (download+verify+unpack) and
#                    skopeo (download+verify into an OCI layout, no unpack) plus
#                    skopeo+umoci (the same, then umoci raw unpack: the closest full peer).
#   bench/pull.sh          (as root; BUILD=build RUNS=5)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${BUILD:-$ROOT/build}
RUNS=${RUNS:-5}
IMAGES=${CM_TEST_IMAGES:-/var/cache/container-machine-test/images}
die() { echo "pull.sh: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || die "run as root"
for t in hyperfine skopeo umoci; do command -v $t >/dev/null || die "$t is not installed"; done

"$ROOT/tests/fixtures/build-images.sh" "$IMAGES" >/dev/null
W=$(mktemp -d /dev/shm/cm-bench-pull.XXXXXX)
REG=$W/registry
PORT=$(/usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
export CONTAINER_ROOT=$W/root CONTAINER_RUN=$W/run CONTAINER_APISERVER=$BUILD/src/apiserver/container-apiserver
cleanup() {
        "$BUILD/src/cli/container" system stop >/dev/null 2>&1 || true
        "$ROOT/tests/fixtures/registry.sh" stop "$REG" >/dev/null 2>&1 || true
        rm -rf "$W"
}
trap cleanup EXIT
mkdir -p "$REG"
CM_TEST_IMAGES=$IMAGES "$ROOT/tests/fixtures/registry.sh" start "$REG" "$PORT" >/dev/null
CM_TEST_IMAGES=$IMAGES "$ROOT/tests/fixtures/registry.sh" push "$REG" "$PORT" debian >/dev/null
"$BUILD/src/cli/container" system start >/dev/null
REF=127.0.0.1:$PORT/library/debian:12
size=$(du -sb "$IMAGES/debian/blobs" | cut -f1)
echo "image: $REF ($((size / 1024 / 1024)) MiB of blobs)"

hyperfine -N --runs "$RUNS" --style basic --export-markdown "$W/result.md" \
        --prepare "sh -c '$BUILD/src/cli/container image rm $REF >/dev/null 2>&1; rm -rf $W/sk; sync'" \
        -n ours-full "$BUILD/src/cli/container image pull -q $REF" \
        -n skopeo "skopeo copy -q --src-tls-verify=false docker://$REF oci:$W/sk:x" \
        -n skopeo+umoci "sh -c 'skopeo copy -q --src-tls-verify=false docker://$REF oci:$W/sk:x && umoci raw unpack --image $W/sk:x $W/sk/rootfs && rm -rf $W/sk/rootfs'"
cat "$W/result.md"
