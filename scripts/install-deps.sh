#!/bin/sh
# Installs what kmsrouter needs to build and test on Debian 12, using apt-get only for what is missing.
# Run as root (or with sudo available). Safe to run again.
set -eu
pkgs="build-essential meson ninja-build pkg-config python3 git clang libclang-rt-14-dev valgrind jq time
 libyajl-dev librdkafka-dev libcurl4-openssl-dev libssl-dev zlib1g-dev libcmocka-dev libmicrohttpd-dev"
missing=""
for p in $pkgs; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q
# shellcheck disable=SC2086
$SUDO apt-get install -y -q --no-install-recommends $missing
