#!/bin/bash
# Machines on the ns runtime, measured against the floor the kernel (or the init) sets.
#   (1) run latency: `container machine run -n bb true` on a running busybox machine vs
#       `nsenter -t <init pid> -a true` (entering the same namespaces, nothing else),
#       hyperfine, $RUNS runs each; medians and the ratio (target <= 1.5x).
#   (2) boot of Debian+systemd to `running`: `machine run -n deb systemctl
#       is-system-running --wait` from stopped (start + ready), $BOOT_RUNS runs; next to it
#       systemd-nspawn -b on the same tree until is-system-running answers (if
#       systemd-nspawn is installed; else the boot time systemd itself reports for the
#       same boot, `systemd-analyze` "Startup finished", the floor no runtime can beat).
#   (3) `machine create --no-boot` of an already-pulled busybox, debian and webstack
#       image (must not grow with the image's size).
#   (4) idle RSS (VmRSS) of a machine's container-runtime process, busybox and systemd.
# Everything (apiserver, registry, state) lives in a fresh directory under /dev/shm and is
# removed on exit.
#   bench/machine.sh          (as root; BUILD=build RUNS=100 BOOT_RUNS=10 CREATE_RUNS=20)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${BUILD:-$ROOT/build}
RUNS=${RUNS:-100}
BOOT_RUNS=${BOOT_RUNS:-10}
CREATE_RUNS=${CREATE_RUNS:-20}
IMAGES=${CM_TEST_IMAGES:-/var/cache/container-machine-test/images}
PY=/usr/bin/python3
die() { echo "machine.sh: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || die "run as root"
for t in hyperfine nsenter; do command -v $t >/dev/null || die "$t is not installed"; done
C=$BUILD/src/cli/container
[ -x "$C" ] || die "$C not built (ninja -C $BUILD)"

"$ROOT/tests/fixtures/build-images.sh" "$IMAGES" >/dev/null
W=$(mktemp -d /dev/shm/cm-bench-machine.XXXXXX)
REG=$W/registry
NSPAWN_PID=
export CONTAINER_ROOT=$W/root CONTAINER_RUN=$W/run CONTAINER_APISERVER=$BUILD/src/apiserver/container-apiserver
cleanup() {
	set +e
	[ -n "$NSPAWN_PID" ] && kill -KILL "$NSPAWN_PID" 2>/dev/null
	for m in $("$C" machine ls -q 2>/dev/null); do "$C" machine rm "$m" >/dev/null 2>&1; done
	"$C" system stop >/dev/null 2>&1
	"$ROOT/tests/fixtures/registry.sh" stop "$REG" >/dev/null 2>&1
	rm -rf "$W"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

mkdir -p "$REG"
for _ in 1 2 3 4 5; do
	PORT=$($PY -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
	CM_TEST_IMAGES=$IMAGES "$ROOT/tests/fixtures/registry.sh" start "$REG" "$PORT" >/dev/null 2>&1 && break
done
CM_TEST_IMAGES=$IMAGES "$ROOT/tests/fixtures/registry.sh" push "$REG" "$PORT" busybox debian webstack >/dev/null
"$C" system start >/dev/null 2>&1
# no bridge/NAT in the host's namespace (the property's name depends on the version)
"$C" system property set network.mode none >/dev/null 2>&1 ||
	"$C" system property set network.subnet none >/dev/null 2>&1 || true
R=127.0.0.1:$PORT
BB=$R/library/busybox:latest DEB=$R/library/debian:12 WEB=$R/library/webstack:latest

median() { # hyperfine JSON, command name -> median in ms
	$PY -c 'import json,sys; r={x["command"]: x for x in json.load(open(sys.argv[1]))["results"]}; print("%.2f" % (r[sys.argv[2]]["median"]*1000))' "$1" "$2"
}
init_pid() { # host pid of the machine's PID 1: the runtime's child
	local rpid
	rpid=$(<"$CONTAINER_RUN/machines/$1/runtime.pid")
	ps --ppid "$rpid" -o pid= | head -1 | tr -d ' '
}
rss() { awk '/^VmRSS/ {print $2 " " $3}' "/proc/$1/status"; }

echo "== setup: $(nproc) CPUs, kernel $(uname -r), build $BUILD"
for ref in "$BB" "$DEB" "$WEB"; do "$C" image pull -q "$ref" >/dev/null; done

# ---------------------------------------------------------------- (1) run latency
"$C" machine create "$BB" --name bb >/dev/null
"$C" machine run -n bb true
P1=$(init_pid bb)
[ "$(cat /proc/"$P1"/comm)" = init ] || die "pid $P1 is not the machine's init"
echo
echo "== (1) run latency on a running busybox machine ($RUNS runs each)"
hyperfine -N --warmup 10 --runs "$RUNS" --style basic --export-json "$W/run.json" \
	-n "machine run" "$C machine run -n bb true" \
	-n "nsenter" "nsenter -t $P1 -a true"
m_run=$(median "$W/run.json" "machine run")
m_ns=$(median "$W/run.json" "nsenter")
echo "median: machine run $m_run ms, nsenter -a $m_ns ms, ratio $($PY -c "print('%.2f' % ($m_run/$m_ns))")x (target <= 1.5x)"

# ---------------------------------------------------------------- (4) idle RSS (busybox)
sleep 1
RSS_BB=$(rss "$(<"$CONTAINER_RUN/machines/bb/runtime.pid")")

# ---------------------------------------------------------------- (2) boot to running
echo
echo "== (2) Debian+systemd: from stopped to 'systemctl is-system-running --wait' = running ($BOOT_RUNS runs)"
"$C" machine create "$DEB" --name deb >/dev/null
state=$("$C" machine run -n deb systemctl is-system-running --wait || true)
[ "$state" = running ] || { "$C" machine run -n deb systemctl --failed; die "systemd is '$state', not running"; }
hyperfine -N --runs "$BOOT_RUNS" --style basic --export-json "$W/boot.json" \
	--prepare "$C machine stop deb" \
	-n "machine run (boot+ready)" "$C machine run -n deb systemctl is-system-running --wait"
m_boot=$(median "$W/boot.json" "machine run (boot+ready)")
"$C" machine run -n deb systemctl is-system-running --wait >/dev/null || true
sa=$("$C" machine run -n deb systemd-analyze 2>/dev/null | head -1 || true)
echo "median: machine run boot+ready $m_boot ms; systemd-analyze of the last boot: ${sa:-n/a}"
RSS_DEB=$(rss "$(<"$CONTAINER_RUN/machines/deb/runtime.pid")")

if command -v systemd-nspawn >/dev/null; then
	# the same tree, unpacked with umoci (or from a machine's image), booted by nspawn
	TREE=$W/nspawn/rootfs
	mkdir -p "$W/nspawn"
	cp -a "$IMAGES/debian" "$W/nspawn/oci"
	umoci raw unpack --image "$W/nspawn/oci:latest" "$TREE" >/dev/null
	times=()
	for i in $(seq "$BOOT_RUNS"); do
		t0=$(date +%s%N)
		systemd-nspawn -q -D "$TREE" -M cmbench --register=no --console=pipe -b </dev/null >"$W/nspawn.log" 2>&1 &
		NSPAWN_PID=$!
		until out=$(systemd-run -q -M cmbench --wait --pipe systemctl is-system-running --wait 2>/dev/null) &&
			[ "$out" = running ]; do sleep 0.01; done
		times+=($((($(date +%s%N) - t0) / 1000000)))
		kill -RTMIN+3 "$NSPAWN_PID" 2>/dev/null || true
		wait "$NSPAWN_PID" || true
		NSPAWN_PID=
	done
	echo "systemd-nspawn -b boot+ready (ms): ${times[*]}; median $(printf '%s\n' "${times[@]}" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')"
else
	echo "systemd-nspawn: not installed (and not installable offline): comparison with systemd's own"
	echo "  'Startup finished' time above (the init's work; the rest is ours: setup, mounts, session)"
fi

# ---------------------------------------------------------------- (3) create --no-boot
echo
echo "== (3) machine create --no-boot of an already-pulled image ($CREATE_RUNS runs each)"
"$C" image ls
hyperfine -N --runs "$CREATE_RUNS" --style basic --export-json "$W/create.json" \
	--prepare "sh -c '$C machine rm cx >/dev/null 2>&1 || true'" \
	-n "busybox" "$C machine create $BB --name cx --no-boot" \
	-n "debian" "$C machine create $DEB --name cx --no-boot" \
	-n "webstack" "$C machine create $WEB --name cx --no-boot"
"$C" machine rm cx >/dev/null 2>&1 || true
echo "median: busybox $(median "$W/create.json" busybox) ms, debian $(median "$W/create.json" debian) ms, webstack $(median "$W/create.json" webstack) ms"

# ---------------------------------------------------------------- (4) idle RSS
echo
echo "== (4) idle RSS (VmRSS) of container-runtime: busybox machine $RSS_BB, Debian+systemd machine $RSS_DEB;" \
	"apiserver $(rss "$(<"$CONTAINER_RUN/apiserver.pid")")"
