#!/usr/bin/env bash
# Benchmark of the Kafka source: `kmsrouter run` consuming a topic of EVENTS KMS events from
# kafka-mock (librdkafka's mock cluster on loopback) through 1,000 rules into a log sink on
# /dev/null, next to kcat merely consuming the same topic in the same run.
#
#   bench/kafka.sh                              1,000,000 events, 3 rounds
#   EVENTS=100000 REPEAT=1 bench/kafka.sh       quick run
#
# The events and rules are bench/match_gen.py's (seeded, the same as bench/match.sh's):
# EventBridge KMS events of the shapes of tests/data/events/*.json, one in ten a ~1.9 KB
# CloudTrail Decrypt event, ~545 bytes on average, and its set of 1,000 rules (one detail-type +
# one key id each, all targeting the sink "out"), which about 48% of the events match, some twice.
# One kafka-mock (BROKERS brokers) holds two topics of PARTITIONS partitions each: kms-events with
# all EVENTS events and kms-events-quarter with the first EVENTS/4, each produced once with
# `kcat -P -l FILE` (no keys, each message to a random partition, batches of up to 1 MB); their
# watermarks are checked (every partition starts at offset 0, the ends add up to the events).
# Then REPEAT rounds, each running in turn, all from the beginning of the topic:
#   kcat -C      kcat -C -o beginning -e: assigns itself every partition, no group, exits at the
#                end of all of them (output to /dev/null)
#   kcat -G      kcat -G GROUP with auto.offset.reset=earliest and -e, a new group each run:
#                joins a consumer group and commits (librdkafka's auto commit), as kmsrouter does;
#                the fair peer, and the one the ratio is taken against
#   kmsrouter    `kmsrouter run` with the kafka source (a new group_id each run, start
#                "earliest", commit_interval_ms 1000) -> the 1,000 rules -> log sink on /dev/null,
#                max_in_flight MAX_IN_FLIGHT; done when its metrics endpoint (polled every 50 ms;
#                it publishes every 200 ms) shows kmsrouter_records_total{source="kafka"} at the
#                topic's size, kmsrouter_in_flight_records 0 (every record routed and delivered)
#                and every kmsrouter_source_input_lag series of the source 0; then SIGTERM (it
#                finishes, commits and exits 0)
# kcat -G and kmsrouter also run on kms-events-quarter, for peak RSS at a quarter of the size.
# Measured per run:
#   wall s       start of the process to the moment it had it all: kcat's last "Reached end of
#                topic" line (its exit after that, closing the consumer, is not counted, as
#                kmsrouter's stop is not), kmsrouter's done (above; up to 0.25 s late, as the
#                metrics are published every 200 ms); events/s = events / wall, the end-to-end
#                rate, the group join (some 3 s in kafka-mock) included; "after join" leaves out
#                the time to the group's assignment (kcat -G: its "rebalanced ... assigned"
#                line; kmsrouter: its "partitions assigned" line)
#   CPU          user + system time of the consumer process alone, per event, and kafka-mock's
#                CPU over the same span (/proc/PID/stat): the two share this machine's CPUs
#   peak RSS     of the consumer process alone: GNU time's %M (its wait4() of the process),
#                so that the RSS of the Python that starts it is not counted (Linux carries a
#                parent's RSS over fork and exec into ru_maxrss)
# Targets (reported, not enforced): kmsrouter's events/s at least 50% of kcat -G's (the ratio is
# taken pair by pair in each round, the median quoted; against kcat -C too), and its peak RSS
# bounded by max_in_flight and librdkafka's queue settings (queued.max.messages.kbytes,
# fetch.max.bytes), not by the topic: the full topic's peak RSS at most 1.25 times the
# quarter's, or no more than kcat -G's grows (librdkafka's own prefetch, which the quarter topic
# fills less long). The RSS growth is also given in bytes per event more (an event is ~545).
# Every kmsrouter run must read every record once: its summary line with EVENTS records read, as
# many matched and deliveries succeeded as the generator expects, none dead-lettered or left
# unacknowledged, exit status 0, and, where kafka-offsets was built next to kafka-mock, its
# group's committed offsets at the end of every partition; every kcat run must reach the end of
# every partition at its high watermark. A run that does not is a failure, not a number.
#
# Why so many partitions: kafka-mock keeps at most 5 MiB (and 100,000 message sets) per
# partition and drops the oldest beyond that (librdkafka's mock, fixed in its code), so a topic
# of 545 MB needs over 104 partitions to be read from the beginning; PARTITIONS=auto (the
# default) takes max(6, the full topic's bytes / 4 MiB), 130 for 1,000,000 events. The mock also
# answers a Fetch with at most one message set per partition, so the producer's batches (1 MB,
# librdkafka's batch.size, as a broker's max.partition.fetch.bytes) set how much a fetch brings.
#
# Environment:
#   EVENTS         events in the full topic (default 1000000; the quarter topic has EVENTS/4)
#   REPEAT         rounds (default 3)
#   PARTITIONS     partitions of each topic (default auto: see above); one too few to hold the
#                  topic is refused
#   BROKERS        kafka-mock brokers (default 3)
#   MAX_IN_FLIGHT  kmsrouter's max_in_flight (default 10000)
#   PROPERTIES     librdkafka consumer properties as a JSON object of strings, given to the
#                  kafka source ("properties") and to both kcat runs (-X), e.g.
#                  '{"queued.max.messages.kbytes":"16384"}' (default none)
#   PERF           1: after the rounds, one more kmsrouter run on the full topic under
#                  `perf record -g` (not counted), and its top symbols (default 0)
#   BENCH_DIR      working folder (default /tmp/kmsrouter-bench; files go to $BENCH_DIR/kafka)
#   KMSROUTER      kmsrouter binary (default build/kmsrouter, relative to the repo root); the
#                  runs use a copy of it in $BENCH_DIR/kafka, so that a rebuild meanwhile does
#                  not matter; kafka-mock (and kafka-offsets) are taken from BUILD/tests/kafka
#                  next to it
# Needs python3, kcat and GNU time (scripts/install-deps.sh), and kafka-mock built
# (librdkafka-dev). The default run takes about two minutes on a 2-CPU VM (12 s of it generating
# the events, the first time; 10 s producing them; the time is printed at the end);
# EVENTS=100000 REPEAT=1 takes about 20 s.
# Exit status: 0 when every run read every record (missed targets are reported, not enforced);
# 1 when a run failed or lost or duplicated records, or kmsrouter is not built or has no kafka
# source; 2 usage error or a tool missing.
set -euo pipefail

caller_pwd=$PWD
cd "$(dirname "$0")/.."

EVENTS=${EVENTS:-1000000}
REPEAT=${REPEAT:-3}
PARTITIONS=${PARTITIONS:-auto}
BROKERS=${BROKERS:-3}
MAX_IN_FLIGHT=${MAX_IN_FLIGHT:-10000}
PROPERTIES=${PROPERTIES:-}
PERF=${PERF:-0}
BENCH_DIR=${BENCH_DIR:-/tmp/kmsrouter-bench}
. bench/lib.sh
bench_kmsrouter

for v in EVENTS REPEAT BROKERS MAX_IN_FLIGHT; do
	case ${!v} in '' | *[!0-9]* | 0*) echo "kafka.sh: $v must be a positive number" >&2; exit 2 ;; esac
done
[ "$EVENTS" -ge 4 ] || { echo "kafka.sh: EVENTS must be at least 4" >&2; exit 2; }
case $PARTITIONS in auto) ;; '' | *[!0-9]* | 0*) echo "kafka.sh: PARTITIONS must be auto or a positive number" >&2; exit 2 ;; esac
case $PERF in 0 | 1) ;; *) echo "kafka.sh: PERF must be 0 or 1" >&2; exit 2 ;; esac
[ "$BROKERS" -le 64 ] || { echo "kafka.sh: BROKERS must be at most 64" >&2; exit 2; }
for tool in python3 kcat; do
	command -v "$tool" >/dev/null || { echo "kafka.sh: $tool not found (scripts/install-deps.sh)" >&2; exit 2; }
done
[ -x /usr/bin/time ] || { echo "kafka.sh: GNU time (/usr/bin/time) not found (scripts/install-deps.sh)" >&2; exit 2; }
[ "$PERF" = 0 ] || command -v perf >/dev/null || { echo "kafka.sh: PERF=1 needs perf (apt-get install linux-perf)" >&2; exit 2; }
[ -x "$kmsrouter" ] || { echo "kafka.sh: $kmsrouter not built (scripts/build.sh)" >&2; exit 1; }
build=$(dirname "$kmsrouter")
mock=$build/tests/kafka/kafka-mock
[ -x "$mock" ] || { echo "kafka.sh: $mock not built (it needs librdkafka-dev: apt-get install librdkafka-dev, then reconfigure)" >&2; exit 2; }

mkdir -p "$BENCH_DIR"
BENCH_DIR=$(cd "$BENCH_DIR" && pwd)
work=$BENCH_DIR/kafka
bench_copy_binary kafka.sh "$work"
help=$("$copy" help config kafka 2>&1 || true)
case $help in
*'source type "kafka": not available'* | *'no source or sink type'*) ;;
*'source type "kafka":'*) help=ok ;;
esac
[ "$help" = ok ] || { echo "kafka.sh: this kmsrouter has no kafka source" >&2; exit 1; }
cp "$mock" "$work/kafka-mock.tmp" && mv "$work/kafka-mock.tmp" "$work/kafka-mock"
offsets=
if [ -x "$build/tests/kafka/kafka-offsets" ]; then
	cp "$build/tests/kafka/kafka-offsets" "$work/kafka-offsets.tmp" && mv "$work/kafka-offsets.tmp" "$work/kafka-offsets"
	offsets=$work/kafka-offsets
fi
echo "kmsrouter: $kmsrouter ($("$copy" --version)), copied to $copy"

# ---------------------------------------------------------------- generate
# match_gen.py's events and rules, its expected counts for the first EVENTS/4 events too
quarter=$((EVENTS / 4))
gen_id=$(sha256sum bench/match_gen.py | cut -c1-16)
data=$work/events-$EVENTS
if [ -f "$data/.complete" ] && [ "$(cat "$data/.complete")" = "$gen_id" ]; then
	echo "events: reusing $data"
else
	echo "events: generating $EVENTS events into $data"
	rm -rf "$data" "$data.tmp"
	python3 bench/match_gen.py "$data.tmp" "$EVENTS" "$quarter"
	echo "$gen_id" >"$data.tmp/.complete"
	mv "$data.tmp" "$data"
fi

exec python3 bench/kafka_run.py "$work" "$data" "$copy" "$work/kafka-mock" "$offsets" "$EVENTS" \
	"$REPEAT" "$PARTITIONS" "$BROKERS" "$MAX_IN_FLIGHT" "$PROPERTIES" "$PERF"
