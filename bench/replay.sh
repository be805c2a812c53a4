#!/usr/bin/env bash
# Benchmark of the pipeline: `kmsrouter replay` with the full acknowledgement machinery (records,
# deliveries, per-input ordered acks, a log sink that writes before completing) against
# `kmsrouter match` on the same input, in the same run.
#
#   bench/replay.sh                   1,000,000 events through 1,000 rules
#   EVENTS=100000 bench/replay.sh     quick run
#
# Uses the events and rule sets of bench/match.sh (bench/match_gen.py, cached in $BENCH_DIR); the
# replay's log sink writes to /dev/null, match's output goes there too. Prints events/s and peak
# RSS of both, the ratio (target: replay >= 80% of match), and replay's peak RSS on the input and
# on the input twice over (target: < 128 MiB, not growing with the input).
# Environment: EVENTS, BENCH_DIR, KMSROUTER, REPEAT (as bench/match.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
EVENTS=${EVENTS:-1000000}
BENCH_DIR=${BENCH_DIR:-/tmp/kmsrouter-bench}
REPEAT=${REPEAT:-3}
kmsrouter=${KMSROUTER:-build/kmsrouter}
case $kmsrouter in /*) ;; *) kmsrouter=$PWD/$kmsrouter ;; esac
[ -x "$kmsrouter" ] || { echo "replay.sh: $kmsrouter not built (scripts/build.sh)" >&2; exit 1; }
mkdir -p "$BENCH_DIR"
gen_id=$(sha256sum bench/match_gen.py | cut -c1-16)
data=$BENCH_DIR/events-$EVENTS
if ! { [ -f "$data/.complete" ] && [ "$(cat "$data/.complete")" = "$gen_id" ]; }; then
	echo "events: generating $EVENTS events into $data"
	rm -rf "$data" "$data.tmp"
	python3 bench/match_gen.py "$data.tmp" "$EVENTS" 100000
	echo "$gen_id" >"$data.tmp/.complete"
	mv "$data.tmp" "$data"
fi
exec python3 - "$kmsrouter" "$data" "$REPEAT" <<'PY'
import json, os, re, subprocess, sys, tempfile, time
kr, data, repeat = sys.argv[1], sys.argv[2], int(sys.argv[3])
events = os.path.join(data, "events.jsonl")
n = sum(1 for _ in open(events, "rb"))
# the generated config's log sink writes to stdout; for replay it writes to /dev/null itself,
# so neither run pays for a pipe
with open(os.path.join(data, "config-1000.json")) as f:
    cfg = json.load(f)
for s in cfg["sinks"]:
    s["path"] = "/dev/null"
tmp = tempfile.NamedTemporaryFile("w", suffix=".json", delete=False)
json.dump(cfg, tmp)
tmp.close()
match_cfg = os.path.join(data, "config-1000.json")

def run_once(cmd):
    start = time.time()
    p = subprocess.run(["/usr/bin/time", "-f", "%M"] + cmd, stdout=subprocess.DEVNULL,
                       stderr=subprocess.PIPE)
    secs = time.time() - start
    if p.returncode not in (0, 1):
        sys.exit("failed: %s\n%s" % (" ".join(cmd), p.stderr.decode()[-2000:]))
    err = p.stderr.decode()
    return secs, int(err.strip().splitlines()[-1]), err

def deliveries(err):
    m = re.search(r"(\d+) deliveries", err)
    return int(m.group(1)) if m else -1

# the runs are interleaved (match, replay, replay x2, again...) and the fastest of each kept, so
# that a change in the machine's speed during the benchmark hits all of them alike
# the input twice: the same file under a second name (a path given twice is read once)
again = os.path.join(tempfile.mkdtemp(), "events-again.jsonl")
os.symlink(events, again)
cmds = [[kr, "match", "-c", match_cfg, events], [kr, "replay", "-c", tmp.name, events],
        [kr, "replay", "-c", tmp.name, events, again]]
best = [None, None, None]
for _ in range(repeat):
    for i, cmd in enumerate(cmds):
        res = run_once(cmd)
        if best[i] is None or res[0] < best[i][0]:
            best[i] = res
m, r, r2 = best
os.unlink(tmp.name)
os.unlink(again)
os.rmdir(os.path.dirname(again))
print("%-44s %10s %9s %12s %9s" % ("run", "events", "seconds", "events/s", "RSS MiB"))
for name, (secs, rss, _), count in (("kmsrouter match (1,000 rules)", m, n),
                                    ("kmsrouter replay -> log sink (1,000 rules)", r, n),
                                    ("kmsrouter replay, the input twice", r2, 2 * n)):
    print("%-44s %10d %9.3f %12.0f %9.1f" % (name, count, secs, count / secs, rss / 1024))
ratio = m[0] / r[0]
print()
print("replay / match throughput   %.3f   target >= 0.80   %s" % (ratio, "PASS" if ratio >= 0.8 else "FAIL"))
print("replay peak RSS             %.1f MiB (input x2: %.1f MiB)   target < 128 MiB, flat   %s" % (
    r[1] / 1024, r2[1] / 1024, "PASS" if max(r[1], r2[1]) < 128 * 1024 and r2[1] < r[1] * 1.25 + 4096 else "FAIL"))
d1, d2 = deliveries(r[2]), deliveries(r2[2])
print("deliveries written          %d (input x2: %d)   %s" % (d1, d2, "PASS" if d1 > 0 and d2 == 2 * d1 else "FAIL"))
PY
