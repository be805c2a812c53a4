#!/bin/sh
# Long fuzzing runs: every libFuzzer target (tests/fuzz/fuzz_*.c) for MINUTES minutes each.
#
#   scripts/fuzz.sh MINUTES [TARGET...]      e.g. scripts/fuzz.sh 60, scripts/fuzz.sh 20 stream
#
# Configures and builds the clang fuzz tree first when it is missing (as scripts/test.sh does),
# then runs the targets, as many at once as there are cores (JOBS), each with its corpus in the
# build tree (tests/fuzz/corpus-<target>-work, kept between runs and shared with `meson test
# --suite fuzz`) after the committed seeds (tests/fuzz/corpus/<target>). Prints for each target
# the executions, coverage (cov: edges, ft: features) and the files of anything it found, which
# go to tests/fuzz/findings/<target>-<time>/ in the build tree. Exits 1 when a target found
# something (a crash, a leak, a timeout, running out of memory) or did not run to its end.
#
# Environment: FUZZ_BUILD the build directory (default build-fuzz), JOBS targets at once
# (default: the number of cores), FUZZ_ARGS more libFuzzer options.
set -eu
cd "$(dirname "$0")/.."
root=$PWD

usage() {
  echo "usage: scripts/fuzz.sh MINUTES [TARGET...]   (targets: $(ls tests/fuzz | sed -n 's/^fuzz_\(.*\)\.c$/\1/p' | tr '\n' ' '))" >&2
  exit 2
}
[ $# -ge 1 ] || usage
minutes=$1
shift
case $minutes in '' | *[!0-9]*) usage ;; esac
[ "$minutes" -gt 0 ] || usage

build=${FUZZ_BUILD:-build-fuzz}
jobs=${JOBS:-$(nproc 2>/dev/null || echo 1)}
[ "$jobs" -ge 1 ] 2>/dev/null || jobs=1

if [ $# -eq 0 ]; then
  set -- $(ls tests/fuzz | sed -n 's/^fuzz_\(.*\)\.c$/\1/p')
fi
for t in "$@"; do
  [ -f "tests/fuzz/fuzz_$t.c" ] || { echo "no fuzz target '$t'" >&2; usage; }
done

if [ ! -f "$build/build.ninja" ]; then
  CC=clang meson setup "$build" --buildtype=debugoptimized -Dfuzz=true \
    -Db_sanitize=address,undefined -Db_lundef=false -Db_lto=false
fi
ninja -C "$build"

fuzzdir=$root/$build/tests/fuzz
stamp=$(date +%Y%m%d-%H%M%S)
export UBSAN_OPTIONS=halt_on_error=1:abort_on_error=1:print_stacktrace=1
export ASAN_OPTIONS=abort_on_error=1:detect_leaks=1

# run TARGET: one libFuzzer run in the background; its output goes to findings/TARGET-STAMP/log
run() {
  t=$1
  out=$fuzzdir/findings/$t-$stamp
  mkdir -p "$out" "$fuzzdir/corpus-$t-work"
  max_len=4096
  [ "$t" = stream ] && max_len=8192
  # shellcheck disable=SC2086 # FUZZ_ARGS is split on purpose
  "$fuzzdir/fuzz_$t" "$fuzzdir/corpus-$t-work" "$root/tests/fuzz/corpus/$t" \
    -max_total_time=$((minutes * 60)) -max_len=$max_len -rss_limit_mb=2048 -timeout=10 \
    -print_final_stats=1 -error_exitcode=1 -timeout_exitcode=1 \
    -artifact_prefix="$out/" ${FUZZ_ARGS:-} >"$out/log" 2>&1 &
}

echo "== fuzzing $* for $minutes min each, $jobs at once (logs and findings: $fuzzdir/findings/)"
pids=
n=0
for t in "$@"; do
  run "$t"
  pids="$pids $!:$t"
  n=$((n + 1))
  if [ "$n" -ge "$jobs" ]; then
    # one batch at a time: the targets all run for the same time
    for pt in $pids; do wait "${pt%%:*}" || echo "$pt" >>"$fuzzdir/findings/.failed-$stamp"; done
    pids=
    n=0
  fi
done
for pt in $pids; do wait "${pt%%:*}" || echo "$pt" >>"$fuzzdir/findings/.failed-$stamp"; done

status=0
for t in "$@"; do
  out=$fuzzdir/findings/$t-$stamp
  # the last status line has the coverage; "Done N runs" ends a run that went to its end
  last=$(grep -E '^#[0-9]+.*cov: [0-9]+ ft: [0-9]+' "$out/log" | tail -n 1 || true)
  ended=$(grep -E '^Done [0-9]+ runs' "$out/log" | tail -n 1 || true)
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$out/log" | tail -n 1)
  cov=$(printf '%s\n' "$last" | sed -n 's/.*cov: \([0-9]*\).*/\1/p')
  ft=$(printf '%s\n' "$last" | sed -n 's/.*ft: \([0-9]*\).*/\1/p')
  corp=$(printf '%s\n' "$last" | sed -n 's/.*corp: \([^ ]*\).*/\1/p')
  printf '%-8s execs %s  cov %s  ft %s  corpus %s\n' "$t" "${execs:-?}" "${cov:-?}" "${ft:-?}" \
    "${corp:-?}"
  findings=$(find "$out" -maxdepth 1 -type f \( -name 'crash-*' -o -name 'leak-*' \
    -o -name 'timeout-*' -o -name 'oom-*' \) | sort)
  if [ -n "$findings" ]; then
    status=1
    printf '%s\n' "$findings" | sed 's/^/  FOUND /'
    grep -E 'ERROR|SUMMARY|deadly signal' "$out/log" | head -n 5 | sed 's/^/    /'
  elif grep -q ":$t\$" "$fuzzdir/findings/.failed-$stamp" 2>/dev/null || [ -z "$ended" ]; then
    status=1
    echo "  did not end normally: see $out/log"
    tail -n 5 "$out/log" | sed 's/^/    /'
  fi
  find "$out" -maxdepth 1 -type f -name 'slow-unit-*' | sed 's/^/  slow input (not a failure) /'
done
rm -f "$fuzzdir/findings/.failed-$stamp"
if [ "$status" -eq 0 ]; then
  echo "== nothing found"
else
  echo "== findings: reproduce with $fuzzdir/fuzz_TARGET FILE; keep the minimised input as tests/fuzz/corpus/TARGET/regress-<what> (tests/fuzz/README.md)"
fi
exit "$status"
