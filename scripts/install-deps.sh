#!/bin/sh
# Installs what kmsrouter needs to build and test on Debian 12, using apt-get only for what is missing.
# Run as root (or with sudo available). Safe to run again.
set -eu
pkgs="build-essential meson ninja-build pkg-config python3 git clang libclang-rt-14-dev valgrind jq time
 libyajl-dev librdkafka-dev kcat libcurl4-openssl-dev libssl-dev zlib1g-dev libcmocka-dev libmicrohttpd-dev
 prometheus debhelper dpkg-dev fakeroot lintian mmdebstrap man-db groff-base bash-completion"
missing=""
for p in $pkgs; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -q
  # shellcheck disable=SC2086
  $SUDO apt-get install -y -q --no-install-recommends $missing
fi
# The AWS integration tests run against moto_server, which Debian does not package: where the
# python3 on PATH lacks it, put moto[server] and boto3 into .venv-aws with pip (the tests use it
# from there). Without the Python package index this fails, and those tests skip (or fail where
# KR_REQUIRE_MOTO=1) saying what to install; python3 -m venv may need Debian's python3-venv.
cd "$(dirname "$0")/.."
if ! { command -v moto_server >/dev/null && python3 -c "import boto3" 2>/dev/null; } &&
   [ ! -x .venv-aws/bin/moto_server ]; then
  if python3 -m venv .venv-aws && .venv-aws/bin/pip install -q --retries 1 --timeout 15 "moto[server]" boto3; then
    echo "installed moto[server] and boto3 in .venv-aws"
  else
    rm -rf .venv-aws
    echo "could not install moto[server] and boto3 (no Python package index?): the AWS tests will skip" >&2
  fi
fi
