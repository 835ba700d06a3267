#!/bin/bash
# Machine networking end to end: TCP connect time, 1-byte round trip and bulk throughput from
# the bridge's side to a machine booted by the real apiserver + runtime (its veth, bridge and
# NAT table made by them), side by side with the library-level paths of bench/net.sh (a bare
# veth pair between two namespaces = the floor, our bridge + veth without a machine, loopback).
#
#   bench/machine-net.sh      (as root; the test images must be built: tests/fixtures/build-images.sh)
#
# Everything happens inside a network namespace made here (ip netns add cmbench-XXXX, removed
# at exit with everything in it): the apiserver runs in it (nsenter --net), so the bridge and
# the machines are there, and nothing is sent outside this machine. The servers inside the
# machine are bench/net-bench's, entered into the machine's network namespace (the network
# path measured is the machine's own). Environment: BUILD (default ./build), RUNS (5),
# CM_TEST_IMAGES (default /var/cache/container-machine-test/images).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${BUILD:-$ROOT/build}
RUNS=${RUNS:-5}
IMAGES=${CM_TEST_IMAGES:-/var/cache/container-machine-test/images}
CLI=$BUILD/src/cli/container
BENCH=$BUILD/bench/net-bench

die() { echo "machine-net.sh: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || die "run as root"
[ -x "$CLI" ] && [ -x "$BENCH" ] || die "build first (ninja -C $BUILD)"
[ -f "$IMAGES/busybox-oci-archive.tar" ] || die "no $IMAGES/busybox-oci-archive.tar: run tests/fixtures/build-images.sh"

NS=cmbench-$$-$RANDOM
TMP=$(mktemp -d /tmp/cm-bench-mnet.XXXXXX)
chmod 755 "$TMP"
export CONTAINER_ROOT=$TMP/root CONTAINER_RUN=$TMP/run CONTAINER_APISERVER=$BUILD/src/apiserver/container-apiserver
SERVERS=()
cleanup() {
        set +e
        for pid in "${SERVERS[@]}"; do kill "$pid" 2>/dev/null; done
        if [ -S "$CONTAINER_RUN/apiserver.sock" ]; then
                "$CLI" machine rm bench >/dev/null 2>&1
                "$CLI" system stop --machines >/dev/null 2>&1
        fi
        ip netns del "$NS" 2>/dev/null
        ip netns del "$NS-floor" 2>/dev/null
        rm -rf "$TMP"
}
trap cleanup EXIT
inns() { nsenter --net=/run/netns/"$NS" "$@"; }

ip netns add "$NS"
inns ip link set lo up
inns "$CLI" system start --root "$CONTAINER_ROOT" >/dev/null 2>&1 || die "system start failed"
"$CLI" image load -i "$IMAGES/busybox-oci-archive.tar" >/dev/null
t0=$(date +%s.%N)
"$CLI" machine create busybox:latest --name bench >/dev/null
t1=$(date +%s.%N)
IP=$("$CLI" machine inspect bench | sed -n 's/.*"ipAddress": "\([0-9.]*\)".*/\1/p')
[ -n "$IP" ] || die "the machine has no address"
RPID=$(cat "$CONTAINER_RUN/machines/bench/runtime.pid")
INIT=$(cut -d' ' -f1 /proc/"$RPID"/task/"$RPID"/children)
[ -n "$INIT" ] || die "cannot find the machine's init"

printf 'kernel %s, %s CPUs; machine "bench" (busybox) at %s, create + boot %.3f s\n' "$(uname -r)" "$(nproc)" "$IP" \
        "$(echo "$t1 - $t0" | bc)"

# serve NETNS_PATH IP: net-bench's servers on IP:9000-9002 in that namespace, in the background
serve() {
        local fifo=$TMP/ready.$RANDOM line
        mkfifo "$fifo"
        nsenter --net="$1" "$BENCH" serve "$2" 9000 >"$fifo" &
        SERVERS+=($!)
        read -r line <"$fifo"
        [ "$line" = ready ] || die "the server in $1 did not start"
}

# the floor, measured the same way: a bare veth pair from this namespace to another one
ip netns add "$NS-floor"
inns ip link add cmb-floor0 type veth peer name eth0 netns "$NS-floor"
inns ip addr add 10.231.0.1/24 dev cmb-floor0
inns ip link set cmb-floor0 up
ip -n "$NS-floor" addr add 10.231.0.2/24 dev eth0
ip -n "$NS-floor" link set eth0 up
ip -n "$NS-floor" link set lo up

serve /proc/"$INIT"/ns/net "$IP"
serve /run/netns/"$NS-floor" 10.231.0.2
echo "medians of $RUNS runs, client in the bridge's namespace (the apiserver's), servers in separate processes:"
printf '  %-20s %12s %14s %12s\n' "path" "connect us" "round trip us" "bulk Gbit/s"
for r in 1 2; do # interleaved: drift hits both alike
        inns "$BENCH" client "machine (runtime) #$r" "$IP" 9000 "$RUNS"
        inns "$BENCH" client "bare veth (floor) #$r" 10.231.0.2 9000 "$RUNS"
done
echo
echo "library level, bench/net.sh (one process, namespaces of its own):"
BUILD=$BUILD RUNS=$RUNS "$ROOT/bench/net.sh"
