#!/bin/sh
# Installs what container-machine needs to build, run and be tested, on Debian 12 / Ubuntu.
set -eu
if [ "$(id -u)" != 0 ]; then
        echo "install-deps: run as root (sudo $0)" >&2
        exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -y -q --no-install-recommends \
        build-essential meson ninja-build pkg-config git ca-certificates curl \
        libcurl4-openssl-dev libarchive-dev libssl-dev libjansson-dev libcmocka-dev \
        python3 python3-pytest python3-pexpect \
        skopeo umoci docker-registry mmdebstrap busybox-static zstd \
        e2fsprogs nftables iproute2 util-linux passwd uidmap apache2-utils \
        clang libclang-rt-14-dev cppcheck hyperfine jq
