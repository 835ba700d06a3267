#!/bin/sh
# Installs what container-machine needs to build, run and be tested, on Debian 12 / Ubuntu.
# Packages already installed are left as they are (no upgrades), and a mirror that cannot be
# reached is not fatal when everything needed is already there.
set -u
if [ "$(id -u)" != 0 ]; then
        echo "install-deps: run as root (sudo $0)" >&2
        exit 1
fi
export DEBIAN_FRONTEND=noninteractive
PKGS="build-essential meson ninja-build pkg-config git ca-certificates curl
      libcurl4-openssl-dev libarchive-dev libssl-dev libjansson-dev libcmocka-dev
      python3 python3-pytest python3-pexpect
      skopeo umoci docker-registry mmdebstrap busybox-static zstd
      e2fsprogs nftables iproute2 util-linux passwd uidmap apache2-utils
      clang libclang-rt-14-dev cppcheck hyperfine jq"

missing() {
        for p in $PKGS; do
                dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q '^install ok installed$' || echo "$p"
        done
}

[ -z "$(missing)" ] && { echo "install-deps: everything is installed"; exit 0; }
apt-get update -q || echo "install-deps: apt-get update failed; trying with the package lists we have" >&2
# shellcheck disable=SC2086
apt-get install -y -q --no-install-recommends --no-upgrade $PKGS
left=$(missing)
if [ -n "$left" ]; then
        echo "install-deps: could not install:" $left >&2
        exit 1
fi
echo "install-deps: done"
