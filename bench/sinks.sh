#!/usr/bin/env bash
# Benchmark of the AWS sinks: `kmsrouter run` with the file source over EVENTS KMS events, one rule
# (source aws.kms) targeting the sink under test, against moto_server on loopback.
#
#   bench/sinks.sh                         10,000 events through each sink, 3 runs each
#   EVENTS=2000 REPEAT=1 bench/sinks.sh    quick run
#   SINKS="log sqs" bench/sinks.sh         only these sinks
#
# Generates (bench/sinks_run.py, seeded) a JSON Lines stream of EventBridge KMS events -- the
# shapes of tests/data/events/*.json: KMS CMK Rotation (both shapes), KMS CMK Deletion, KMS
# Imported Key Material Expiration over 50 key ids, and every tenth event an "AWS API Call via
# CloudTrail" Decrypt event without detail.key-id; their times fall in the last hour (CloudWatch
# Logs takes no events older than 14 days). Every event matches the rule once, so each run makes
# EVENTS deliveries. For each sink, per run: moto is reset (POST /moto-api/reset) and
# its resources created with boto3 (an SQS queue; an SNS topic with no subscription, so that
# moto's fan-out does not dominate; Lambda in moto's Docker-less echo mode, which answers any
# function name with its payload; a Kinesis stream of 4 shards; a CloudWatch Logs group and
# stream), then kmsrouter runs until the input is delivered. Measured:
#   wall s         start of kmsrouter to its exit (config load and libcurl/libcrypto loading
#                  included), and deliveries/s = EVENTS / wall
#   requests       HTTP requests moto logged during the run, and requests per event
#                  (targets: SNS, SQS <= 0.1 thanks to batching; Kinesis, CloudWatch Logs <= 0.01)
#   router CPU     user + system CPU of the kmsrouter process alone (os.wait4 on it; moto's is
#                  not counted, so that moto's speed does not hide ours), per event
#                  (targets: SNS, SQS <= 10 us; Kinesis, CloudWatch Logs <= 3 us; SigV4 signing
#                  and JSON building included); "(-fixed)" is the same without the sink's fixed
#                  cost (start, loading libcurl and libcrypto, stop: a one-event run of each
#                  sink before the others), the part that grows with the events
# and compares each sink's CPU per event with the log sink's (writing a file) in the same run.
# The floor under an AWS sink's CPU, also in the same run: the requests the router sent in the
# sink's last run (the keep-alive proxy records them) are sent again by bench/curl_peer.c,
# libcurl alone on curl multi with the same concurrency and no other work, to the service set
# up afresh; its CPU per event, and router / curl, with and without each one's fixed cost. On a
# 2-CPU VM, where waking up for each answer costs tens of microseconds, that floor alone is
# 15 to 35 us per event for SQS and SNS (10 messages per request at most), above their 10 us.
# moto's SQS costs O(queue length) per message it takes, so during an SQS run the queue is
# purged every 0.05 s (those PurgeQueue requests are not counted); without it 10,000 messages
# take many minutes and requests time out in moto. moto also answers every request with
# "Connection: close", so by default (KEEPALIVE=1) the AWS sinks reach moto through a loopback
# proxy (tests/integration/aws_harness.py FaultProxy) that keeps their connections open, as AWS
# does: a new TCP connection per request adds 100 to 200 us of router CPU per request on a 2-CPU
# VM (so per event: that much for Lambda, a tenth of it for SQS and SNS).
# The runs are interleaved (every sink once, REPEAT rounds) so that a change in the machine's
# speed hits the log sink and the AWS sinks alike; one table gives each sink's best run (lowest
# CPU per event), one its median run.
# Every run must deliver every event: the summary line must say EVENTS deliveries succeeded and
# 0 dead-lettered and the exit status be 0; where it can be seen, what arrived must add up too
# (the log sink's lines, one Lambda invocation per event). A run that loses events is a failure,
# not a number. Sinks this build does not have (`kmsrouter help config TYPE` says "not available
# in this build") are reported as such.
#
# Environment:
#   EVENTS       number of events (default 10000)
#   SINKS        sinks to measure, in this order
#                (default "log sqs sns lambda kinesis cloudwatch-logs")
#   REPEAT       runs of each sink (default 3)
#   CONCURRENCY  the sinks' "concurrency" (default 16; for the batching sinks, SQS, SNS, Kinesis
#                and CloudWatch Logs: requests in flight)
#   KEEPALIVE    1 (default): through the keep-alive proxy; 0: straight to moto, a connection
#                per request
#   BENCH_DIR    working folder (default /tmp/kmsrouter-bench; files go to $BENCH_DIR/sinks)
#   KMSROUTER    kmsrouter binary (default build/kmsrouter, relative to the repo root); the runs
#                use a copy of it in $BENCH_DIR/sinks, so that a rebuild meanwhile does not matter
# Needs python3 with boto3, and moto_server (scripts/install-deps.sh; its .venv-aws is used
# where the python3 on PATH lacks them), and cc with libcurl's headers for bench/curl_peer.c. A
# whole run takes about five and a half minutes on a 2-CPU VM, half of it moto answering 40,000
# Lambda invocations (the router's and curl_peer's) and most of the rest moto's SQS (the time is
# printed at the end; EVENTS=2000 takes about a minute).
# Exit status: 0 when every run delivered every event (missed targets are reported, not
# enforced); 1 when a run lost events or a sink failed to run, or kmsrouter is not built;
# 2 usage error or moto/boto3 missing.
set -euo pipefail

caller_pwd=$PWD
cd "$(dirname "$0")/.."

EVENTS=${EVENTS:-10000}
SINKS=${SINKS:-log sqs sns lambda kinesis cloudwatch-logs}
REPEAT=${REPEAT:-3}
CONCURRENCY=${CONCURRENCY:-16}
KEEPALIVE=${KEEPALIVE:-1}
BENCH_DIR=${BENCH_DIR:-/tmp/kmsrouter-bench}
. bench/lib.sh
bench_kmsrouter

for v in EVENTS REPEAT CONCURRENCY; do
	case ${!v} in '' | *[!0-9]* | 0*) echo "sinks.sh: $v must be a positive number" >&2; exit 2 ;; esac
done
case $KEEPALIVE in 0 | 1) ;; *) echo "sinks.sh: KEEPALIVE must be 0 or 1" >&2; exit 2 ;; esac
[ -x "$kmsrouter" ] || { echo "sinks.sh: $kmsrouter not built (scripts/build.sh)" >&2; exit 1; }

bench_aws_python sinks.sh

bench_copy_binary sinks.sh "$BENCH_DIR/sinks"
echo "kmsrouter: $kmsrouter ($("$copy" --version)), copied to $copy"
# libcurl alone, the floor under the AWS sinks' CPU (bench/curl_peer.c); through the keep-alive
# proxy only, which records the requests it replays
peer=-
if [ "$KEEPALIVE" = 1 ]; then
	peer=$BENCH_DIR/sinks/curl_peer
	cc -O2 bench/curl_peer.c -lcurl -o "$peer" || { echo "sinks.sh: cannot build bench/curl_peer.c (libcurl's headers: scripts/install-deps.sh)" >&2; exit 1; }
fi
exec "$python" bench/sinks_run.py "$BENCH_DIR/sinks" "$copy" "$EVENTS" "$SINKS" "$REPEAT" "$CONCURRENCY" "$KEEPALIVE" "$peer"
