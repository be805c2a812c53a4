#!/usr/bin/env bash
# Benchmark of `kmsrouter match -c CONFIG FILE`.
#
#   bench/match.sh                    1,000,000 events (~545 MB)
#   EVENTS=20000 bench/match.sh       quick run
#
# Generates (bench/match_gen.py, cached in $BENCH_DIR) a JSON Lines stream of
# EventBridge KMS events -- the shapes of tests/data/events/*.json: KMS CMK
# Rotation (both shapes), KMS CMK Deletion, KMS Imported Key Material
# Expiration, and one event in ten a ~1.9 KB CloudTrail "AWS API Call via
# CloudTrail" Decrypt event -- over 5,000 random key ids, and rule sets of 10,
# 1,000 and 10,000 rules (one detail-type + one key id each; about half of the
# events match at least one rule with each set).  Then times, on that file
# (bench/match_run.py):
#   yajl-only   bench/yajl_parse.c: yajl's callback parser alone, the ceiling
#               of a yajl-based router
#   jq          the same classification with an object lookup, 1,000 rules
#   kmsrouter   `kmsrouter match` with 10, 1,000 and 10,000 rules
# and prints events/s, MB/s and peak RSS of each, the ratios against their
# targets, and checks kmsrouter's and jq's outputs against the counts the
# generator expects.
#
# Environment:
#   EVENTS     number of events (default 1000000)
#   BENCH_DIR  cache of generated files and yajl_parse (default /tmp/kmsrouter-bench)
#   KMSROUTER  kmsrouter binary (default build/kmsrouter, relative to the repo root)
#   REPEAT     runs of yajl-only and of each kmsrouter rule set, interleaved; the
#              fastest is reported (default 15: this kind of VM drifts by 20% and more
#              between minutes, and with fewer runs one program often misses the quiet
#              moments the other had; a whole run takes about two minutes)
#   JQ_EVENTS  "all" (default) runs jq on the whole file; "head" runs it on the
#              first 100,000 events only, for when jq is too slow
# Needs python3, jq, cc and libyajl-dev (scripts/install-deps.sh).
# Exit status: 0 when all correctness checks pass, 1 otherwise (also when
# kmsrouter is missing); speed targets are reported, not enforced.
set -euo pipefail

caller_pwd=$PWD
cd "$(dirname "$0")/.."

EVENTS=${EVENTS:-1000000}
BENCH_DIR=${BENCH_DIR:-/tmp/kmsrouter-bench}
REPEAT=${REPEAT:-15}
JQ_EVENTS=${JQ_EVENTS:-all}
. bench/lib.sh
bench_kmsrouter

case $EVENTS in '' | *[!0-9]* | 0*) echo "match.sh: EVENTS must be a positive number" >&2; exit 2 ;; esac
case $JQ_EVENTS in all | head) ;; *) echo "match.sh: JQ_EVENTS must be all or head" >&2; exit 2 ;; esac
for tool in python3 jq cc; do
	command -v "$tool" >/dev/null || { echo "match.sh: $tool not found (scripts/install-deps.sh)" >&2; exit 2; }
done

mkdir -p "$BENCH_DIR"
BENCH_DIR=$(cd "$BENCH_DIR" && pwd)

# ---------------------------------------------------------------- generate
gen_id=$(sha256sum bench/match_gen.py | cut -c1-16)
data=$BENCH_DIR/events-$EVENTS
if [ -f "$data/.complete" ] && [ "$(cat "$data/.complete")" = "$gen_id" ]; then
	echo "events: reusing $data ($(python3 -c 'import json,sys; i=json.load(open(sys.argv[1])); print("%.1f MB, generated in %.1f s" % (i["bytes"]/1e6, i["generation_seconds"]))' "$data/info.json"))"
else
	echo "events: generating $EVENTS events into $data"
	rm -rf "$data" "$data.tmp"
	python3 bench/match_gen.py "$data.tmp" "$EVENTS" 100000
	echo "$gen_id" >"$data.tmp/.complete"
	mv "$data.tmp" "$data"
fi

# ---------------------------------------------------------------- yajl_parse
cc -O2 bench/yajl_parse.c -lyajl -o "$BENCH_DIR/yajl_parse"

# ---------------------------------------------------------------- run
exec python3 bench/match_run.py "$data" "$BENCH_DIR/yajl_parse" "$kmsrouter" "$REPEAT" "$JQ_EVENTS"
