#!/bin/bash
# Times unpacking one Debian root filesystem layer on a tmpfs: `tar -xzf`, `umoci raw unpack`
# and ours (bench/unpack-bench -> layer_unpack), medians of $RUNS runs with hyperfine.
#
#   bench/unpack.sh [LAYER.tar]      (as root)
#
# Without an argument the layer is built once with mmdebstrap (--variant=apt bookworm, from the
# host's apt sources) and cached in $CACHE with its gzip/zstd forms and an OCI layout for umoci.
# Environment: BUILD (meson build dir, default ./build), RUNS (5), CACHE (/var/tmp/cm-bench),
# UNPACK_BENCH (path of the driver; default $BUILD/bench/unpack-bench, built from libcm.a if
# the build dir does not have it yet).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${BUILD:-$ROOT/build}
RUNS=${RUNS:-5}
CACHE=${CACHE:-/var/tmp/cm-bench}

die() { echo "unpack.sh: $*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "run as root: the layer has device nodes and owners"
for tool in hyperfine umoci gzip zstd jq; do
        command -v "$tool" >/dev/null || die "$tool is not installed"
done
mkdir -p "$CACHE"

# --- the layer, compressed forms, OCI layout ---
if [ $# -ge 1 ]; then
        layer=$(realpath "$1")
        [ -s "$layer" ] || die "$layer: no such layer"
else
        layer=$CACHE/debian-bookworm-apt.tar
        if [ ! -s "$layer" ]; then
                echo "building $layer with mmdebstrap..." >&2
                mmdebstrap --quiet --variant=apt --format=tar bookworm "$layer.part"
                mv "$layer.part" "$layer"
        fi
fi
name=$(basename "$layer" .tar)
gz=$CACHE/$name.tar.gz
zst=$CACHE/$name.tar.zst
oci=$CACHE/$name.oci
if [ ! -s "$gz" ] || [ "$gz" -ot "$layer" ]; then
        gzip -6 -c "$layer" > "$gz.part" && mv "$gz.part" "$gz"
fi
if [ ! -s "$zst" ] || [ "$zst" -ot "$layer" ]; then
        zstd -q -3 -c "$layer" > "$zst.part" && mv "$zst.part" "$zst"
fi
if [ ! -d "$oci" ] || [ "$oci" -ot "$layer" ]; then
        rm -rf "$oci"
        umoci init --layout "$oci"
        umoci new --image "$oci:bench"
        umoci raw add-layer --no-history --image "$oci:bench" "$layer"
fi

# --- scratch tmpfs, inputs copied in ---
scratch=$(mktemp -d /tmp/cm-bench-unpack.XXXXXX)
mounted=
cleanup() {
        if [ -n "$mounted" ]; then
                umount "$scratch" || true
        else
                rm -rf "${scratch:?}"/* || true
        fi
        rmdir "$scratch" 2>/dev/null || true
}
trap cleanup EXIT
if mount -t tmpfs -o size=4g,mode=0755 cm-bench-unpack "$scratch"; then
        mounted=1
else
        echo "cannot mount a tmpfs; using $scratch as it is" >&2
fi
in=$scratch/in
out=$scratch/out
mkdir -p "$in"

# --- our driver ---
bench=${UNPACK_BENCH:-$BUILD/bench/unpack-bench}
if [ ! -x "$bench" ]; then
        # not in the build yet (bench/meson.build needs subdir('bench')): link it to libcm.a here
        lib=$BUILD/src/lib/libcm.a
        [ -f "$lib" ] || die "no $bench and no $lib: build first (ninja -C $BUILD)"
        bench=$in/unpack-bench
        # shellcheck disable=SC2046
        cc -std=gnu11 -O2 -D_GNU_SOURCE -I"$ROOT/src/lib" "$ROOT/bench/unpack-bench.c" "$lib" \
                $(pkg-config --libs libarchive libcrypto libcurl jansson) -lpthread -o "$bench"
fi
cp "$layer" "$in/layer.tar"
cp "$gz" "$in/layer.tar.gz"
cp "$zst" "$in/layer.tar.zst"
cp -a "$oci" "$in/oci"

echo "layer: $layer ($(stat -c %s "$layer") bytes, $(tar -tf "$layer" | wc -l) entries;" \
        "gzip $(stat -c %s "$gz"), zstd $(stat -c %s "$zst"))"
echo "ours:  $("$bench" "$in/layer.tar.gz" "$out")"
echo "want:  sha256:$(sha256sum "$layer" | cut -d' ' -f1)"
# the same tree as GNU tar's (names, types, modes, owners, sizes, mtimes, symlink targets, links)
listing() { (cd "$1" && find . -printf '%p %y %m %U %G %s %T@ %l %n\n' | LC_ALL=C sort); }
mkdir "$scratch/ref"
tar --numeric-owner -xpf "$in/layer.tar" -C "$scratch/ref"
if cmp -s <(listing "$out") <(listing "$scratch/ref"); then
        echo "tree:  same as tar -xpf"
else
        diff <(listing "$out") <(listing "$scratch/ref") | head -20 >&2
        die "the unpacked tree differs from tar's"
fi
rm -rf "$out" "$scratch/ref"

hyperfine --style basic --runs "$RUNS" --warmup 1 --export-json "$scratch/results.json" \
        --prepare "rm -rf $out; mkdir $out" \
        -n 'tar -xzf' "tar -xzf $in/layer.tar.gz -C $out" \
        -n 'umoci raw unpack' "rmdir $out; umoci raw unpack --image $in/oci:bench $out" \
        -n 'layer_unpack (gzip)' "$bench $in/layer.tar.gz $out" \
        -n 'layer_unpack (zstd)' "$bench $in/layer.tar.zst $out" \
        -n 'layer_unpack (plain)' "$bench $in/layer.tar $out" \
        -n 'tar -xf (plain)' "tar -xf $in/layer.tar -C $out" >&2

echo
echo "medians of $RUNS runs on tmpfs:"
jq -r '(.results[] | select(.command == "tar -xzf") | .median) as $ref
        | .results[] | "  \(.command | . + " " * (22 - length)) \(.median * 1000 | floor) ms  \(.median / $ref * 100 | floor / 100)x tar -xzf"' \
        "$scratch/results.json"
rm -rf "$out"
