#!/usr/bin/env bash
# Benchmark of the SQS source: `kmsrouter run` with the sqs source over a queue of EVENTS
# messages (one KMS event each) in moto_server on loopback, one rule (source aws.kms) into a log
# sink writing a file.
#
#   bench/sqs.sh                           20,000 messages, 3 runs
#   EVENTS=2000 REPEAT=1 bench/sqs.sh      quick run
#
# The events are bench/sinks_run.py's (seeded): EventBridge KMS events of the shapes of
# tests/data/events/*.json, every tenth a CloudTrail Decrypt event, each sent as one message
# with boto3's SendMessageBatch. Per run: moto is reset (POST /moto-api/reset), the queue created
# (standard, moto's default visibility timeout of 30 s) and kmsrouter started with the sqs
# source's defaults (max_messages 10, wait_time_seconds 20) but "concurrency"; once the log
# file holds every message's event id, it gets SIGTERM (it stops receiving, finishes its
# deletes, prints its summary line and exits 0). Measured:
#   wall s         start of kmsrouter to the last message in the log file (config load and
#                  libcurl/libcrypto loading included), and messages/s = EVENTS / wall
#   requests       kmsrouter's requests to SQS by action, counted at a loopback proxy from
#                  their X-Amz-Target (moto's request log does not name the action, and logs a
#                  long poll only when it ends, up to 20 s after the run), per message:
#                  ReceiveMessage + DeleteMessageBatch + ChangeMessageVisibilityBatch (target
#                  <= 0.25; 0.2 is the floor with batches of 10), beside GetQueueAttributes
#                  (once a run, for the visibility timeout); and how full the receives were
#   router CPU     user + system CPU of the kmsrouter process alone (os.wait4 on it), per message
#                  (target <= 10 us; SigV4 signing, JSON parsing and the log sink included);
#                  "(-fixed)" is the same without the fixed cost (start, loading libcurl and
#                  libcrypto, GetQueueAttributes, stop: the least of three one-message runs),
#                  the part that grows with the messages
#   moto CPU       user + system CPU of moto_server over the same span (/proc/PID/stat), per
#                  message, and its ratio to kmsrouter's: the figure is our cost, not moto's
# The queue is filled in parts, as it drains, not prefilled: moto's SQS costs O(queue length)
# per message sent and more per message received (for each message it hands out, moto reads the
# queue's attributes, which count every message, in flight included: some 90 us per queued
# message on a 2-CPU VM), so 20,000 messages prefilled would take hours to send and as long to
# drain, and moto's time would be all the benchmark shows. So 20 x CONCURRENCY messages are sent
# before kmsrouter starts, and feeder threads (2 x CONCURRENCY, at least 4; straight to moto, not
# counted) send the rest whenever fewer than that are sent and not yet delivered: about as many
# visible as kmsrouter holds, so that every receive finds 10 messages, and no more, so that moto
# stays at tens of milliseconds per receive. moto's CPU includes serving those sends, and moto
# is the bottleneck all the same (its CPU is some 90% of the wall time), so messages/s is
# moto's speed; kmsrouter's CPU per message is the figure that is ours. Receives that found
# fewer than 10 (the feeders falling behind) and the long polls left open at the stop (on the
# empty queue; kmsrouter leaves them at its stop) are reported beside the requests per message.
# moto answers every request with "Connection: close"; kmsrouter reaches moto through the
# counting proxy, which by default (KEEPALIVE=1) keeps its connections open as AWS does;
# KEEPALIVE=0 closes them after every answer, as moto would. The proxy sends each answer in one
# write (head and body in two would wake kmsrouter twice, which AWS does not make it do).
# Every run must deliver every message: every event id in the log file, none more often than
# the queue handed it out (the proxy sees each receive's messages: moto's receives are not
# atomic across its threads, and two at once now and then hand out the same message, some 1 in
# 2,000, which is reported, as SQS standard queues deliver at least once too), the summary line
# saying as many records read and deliveries succeeded, none dead-lettered or left
# unacknowledged, exit status 0, and the queue empty afterwards (no message visible, in flight or
# delayed). A run that loses a message, or delivers one twice that it received once, is a
# failure, not a number.
#
# Environment:
#   EVENTS       number of messages (default 20000)
#   REPEAT       runs (default 3)
#   CONCURRENCY  the sqs source's "concurrency": receive requests in flight (default 2, the
#                source's default)
#   KEEPALIVE    1 (default): kmsrouter's connections kept open; 0: a connection per request
#   BENCH_DIR    working folder (default /tmp/kmsrouter-bench; files go to $BENCH_DIR/sqs)
#   KMSROUTER    kmsrouter binary (default build/kmsrouter, relative to the repo root); the runs
#                use a copy of it in $BENCH_DIR/sqs, so that a rebuild meanwhile does not matter
# Needs python3 with boto3, and moto_server (scripts/install-deps.sh; its .venv-aws is used
# where the python3 on PATH lacks them). A whole run takes about five minutes on a 2-CPU VM,
# nearly all of it moto (the time is printed at the end; EVENTS=2000 REPEAT=1 takes about 15 s).
# Exit status: 0 when every run delivered every message and left the queue empty (missed targets
# are reported, not enforced); 1 when a run lost messages, delivered one twice that it received
# once, or failed, or kmsrouter is not built or has no sqs source; 2 usage error or moto/boto3
# missing.
set -euo pipefail

caller_pwd=$PWD
cd "$(dirname "$0")/.."

EVENTS=${EVENTS:-20000}
REPEAT=${REPEAT:-3}
CONCURRENCY=${CONCURRENCY:-2}
KEEPALIVE=${KEEPALIVE:-1}
BENCH_DIR=${BENCH_DIR:-/tmp/kmsrouter-bench}
. bench/lib.sh
bench_kmsrouter

for v in EVENTS REPEAT CONCURRENCY; do
	case ${!v} in '' | *[!0-9]* | 0*) echo "sqs.sh: $v must be a positive number" >&2; exit 2 ;; esac
done
[ "$CONCURRENCY" -le 64 ] || { echo "sqs.sh: CONCURRENCY must be at most 64" >&2; exit 2; }
case $KEEPALIVE in 0 | 1) ;; *) echo "sqs.sh: KEEPALIVE must be 0 or 1" >&2; exit 2 ;; esac
[ -x "$kmsrouter" ] || { echo "sqs.sh: $kmsrouter not built (scripts/build.sh)" >&2; exit 1; }

bench_aws_python sqs.sh

bench_copy_binary sqs.sh "$BENCH_DIR/sqs"
help=$("$copy" help config sqs 2>&1 || true)
case $help in
*'source type "sqs": not available'* | *'no source or sink type'*) ;;
*'source type "sqs":'*) help=ok ;;
esac
[ "$help" = ok ] || { echo "sqs.sh: this kmsrouter has no sqs source" >&2; exit 1; }
echo "kmsrouter: $kmsrouter ($("$copy" --version)), copied to $copy"
exec "$python" bench/sqs_run.py "$BENCH_DIR/sqs" "$copy" "$EVENTS" "$REPEAT" "$CONCURRENCY" "$KEEPALIVE"
