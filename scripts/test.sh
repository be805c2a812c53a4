#!/bin/sh
# The whole test suite, as CI runs it (.ci/run):
#   1. release build: unit tests, conformance table and the recorded event-ruler cases, golden
#      and bad-input suites, integration tests;
#   2. the same under AddressSanitizer + UndefinedBehaviorSanitizer (gcc); this build and the
#      clang one below treat every warning as an error (-Dwerror=true);
#   3. the bad-input corpus under valgrind;
#   4. the unit tests again under clang's ASan + UBSan (it checks some things gcc does not,
#      such as pointer arithmetic that overflows), then each libFuzzer target for a short
#      bounded time (clang);
#   5. the Debian package, built, run through lintian and installed in a clean Debian 12 root
#      (scripts/package-check.sh; needs root: skipped with a note when not root).
# Installs what is missing first (scripts/install-deps.sh). Exits non-zero on the first failure.
set -eu
cd "$(dirname "$0")/.."
sh scripts/build.sh

echo "== release build"
meson test -C build --print-errorlogs --no-suite fuzz

echo "== ASan + UBSan"
if [ ! -f build-asan/build.ninja ]; then
  meson setup build-asan --buildtype=debugoptimized -Dwerror=true \
    -Db_sanitize=address,undefined -Db_lundef=false -Db_lto=false
fi
ninja -C build-asan
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
  meson test -C build-asan --print-errorlogs --no-suite fuzz

echo "== valgrind"
KR_VALGRIND=1 python3 tests/badinput/run.py build/kmsrouter

echo "== clang sanitizers and fuzz"
if [ ! -f build-fuzz/build.ninja ]; then
  CC=clang meson setup build-fuzz --buildtype=debugoptimized -Dfuzz=true -Dwerror=true \
    -Db_sanitize=address,undefined -Db_lundef=false -Db_lto=false
fi
ninja -C build-fuzz
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
  meson test -C build-fuzz --print-errorlogs --suite unit
meson test -C build-fuzz --print-errorlogs --suite fuzz

echo "== Debian package: build, lintian, install in a clean Debian 12 root"
if [ "$(id -u)" -eq 0 ]; then
  sh scripts/package-check.sh
else
  echo "not root: scripts/package-check.sh skipped (it needs root for mmdebstrap and chroot)"
fi
echo "== all tests passed"
