#!/bin/sh
# Installs missing Debian packages (scripts/install-deps.sh), then configures and builds
# kmsrouter into build/ (release, -Wall -Wextra). Extra arguments go to `meson setup`.
set -eu
cd "$(dirname "$0")/.."
sh scripts/install-deps.sh
if [ ! -f build/build.ninja ]; then
  meson setup build --buildtype=release "$@"
fi
ninja -C build
