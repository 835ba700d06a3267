#!/bin/bash
# The main job of the README: start the container system, serve locally built images from a
# registry on 127.0.0.1 configured as the docker.io mirror, pull alpine:latest through it and
# list what is there. Offline: nothing is contacted but 127.0.0.1 (and the Debian mirror while
# the test images are built).
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${1:-build}
if [ "$(id -u)" != 0 ]; then
        echo "demo: run as root (sudo make demo): it starts the system-wide apiserver" >&2
        exit 1
fi
CLI=$(realpath "$BUILD/src/cli/container")
export CONTAINER_APISERVER=$(realpath "$BUILD/src/apiserver/container-apiserver")
IMAGES=${CM_TEST_IMAGES:-/var/cache/container-machine-test/images}
# The demo's apiserver, registry and machines live in a network namespace of their own
# (cm-demo): its bridge, NAT and DNS forwarder can reach nothing outside this host.
# CM_DEMO_NETNS= (empty) runs them in the host's namespace instead.
NETNS=${CM_DEMO_NETNS-cm-demo}
IN=()
if [ -n "$NETNS" ]; then
        ip netns list | grep -qw "$NETNS" || { ip netns add "$NETNS"; ip -n "$NETNS" link set lo up; }
        IN=(nsenter "--net=/run/netns/$NETNS")
fi
REGDIR=${CM_DEMO_REGISTRY:-/var/lib/container-demo-registry}
PORT=${CM_DEMO_PORT:-5000}

step() { printf '\n\033[1m$ %s\033[0m\n' "$*"; }
run() { step "$*"; "$@"; }

echo "== building the test images (cached after the first run)"
tests/fixtures/build-images.sh "$IMAGES" | sed 's/^/   /'

mkdir -p "$REGDIR"
tests/fixtures/registry.sh stop "$REGDIR" >/dev/null 2>&1 || true
"$CLI" system stop --machines >/dev/null 2>&1 || true   # an earlier run may have started it in another netns
# another registry may already listen on 5000: take the next free port
while "${IN[@]}" /usr/bin/python3 -c "import socket,sys; s=socket.socket(); s.bind(('127.0.0.1', int(sys.argv[1])))" "$PORT" 2>/dev/null; [ $? -ne 0 ]; do
        PORT=$((PORT + 1))
done
echo "== serving them from a local registry on 127.0.0.1:$PORT"
CM_TEST_IMAGES=$IMAGES "${IN[@]}" tests/fixtures/registry.sh start "$REGDIR" "$PORT" | sed 's/^/   /'
CM_TEST_IMAGES=$IMAGES "${IN[@]}" tests/fixtures/registry.sh push "$REGDIR" "$PORT" | sed 's/^/   /'

container() { "${IN[@]}" "$CLI" "$@"; }
run container system start
run container system property set registry.mirrors "http://127.0.0.1:$PORT"
run container image pull alpine:latest
run container image ls

# The machine belongs to whoever creates it: the user who ran sudo, else root.
AS=()
if [ -n "${SUDO_USER:-}" ] && [ "$SUDO_USER" != root ]; then
        getent group container | grep -qw "$SUDO_USER" || usermod -a -G container "$SUDO_USER"
        AS=(runuser -u "$SUDO_USER" --)
        echo "(machine commands run as $SUDO_USER, now in group 'container')"
fi
as_user() { step "container $*"; "${AS[@]}" env CONTAINER_RUN="${CONTAINER_RUN:-}" "$CLI" "$@"; }
"${AS[@]}" "$CLI" machine rm devbox >/dev/null 2>&1 || true
as_user machine create alpine:latest --name devbox
as_user machine ls
as_user machine run -n devbox whoami
as_user machine run -n devbox pwd
as_user machine run -n devbox -- sh -c 'cat /proc/1/comm; uname -r; hostname'
as_user machine stop devbox
as_user machine ls
echo
echo "Try: container machine run -n devbox        (a login shell, as yourself)"
echo "The registry keeps running at 127.0.0.1:$PORT${NETNS:+ in network namespace $NETNS} (stop it: tests/fixtures/registry.sh stop $REGDIR)."
[ -z "$NETNS" ] || echo "Machine IPs are reachable from that namespace: sudo nsenter --net=/run/netns/$NETNS curl http://<IP>/"
