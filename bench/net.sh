#!/bin/bash
# Machine networking: TCP connect time, 1-byte request/response latency and bulk throughput
# from the bridge side to a machine's namespace through our bridge + veth (net_bridge_ensure,
# net_machine_link_up), side by side with a bare veth pair between two namespaces (the floor)
# and loopback. Medians of $RUNS runs.
#
#   bench/net.sh      (as root)
#
# Everything runs inside network namespaces that bench/net-bench makes with unshare() and holds
# by fd: the host's namespace is not touched, nothing persists after it exits, and no packet
# leaves the machine. Environment: BUILD (meson build dir, default ./build), RUNS (5),
# NET_BENCH (path of the driver; default $BUILD/bench/net-bench, else built here from libcm.a).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${BUILD:-$ROOT/build}
RUNS=${RUNS:-5}

die() { echo "net.sh: $*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "run as root: it makes network namespaces, a bridge and veths"

bench=${NET_BENCH:-$BUILD/bench/net-bench}
tmp=
trap '[ -n "$tmp" ] && rm -rf "$tmp"' EXIT
if [ ! -x "$bench" ]; then
        lib=$BUILD/src/lib/libcm.a
        [ -f "$lib" ] || die "no $bench and no $lib: build first (ninja -C $BUILD)"
        tmp=$(mktemp -d /tmp/cm-bench-net.XXXXXX)
        bench=$tmp/net-bench
        # shellcheck disable=SC2046
        cc -std=gnu11 -O2 -D_GNU_SOURCE -I"$ROOT/src/lib" "$ROOT/bench/net-bench.c" "$lib" \
                $(pkg-config --libs libarchive libcrypto libcurl jansson) -lpthread -o "$bench"
fi

echo "kernel $(uname -r), $(nproc) CPUs; nothing leaves this process's own network namespaces"
"$bench" "$RUNS"
