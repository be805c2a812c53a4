#!/usr/bin/env python3
"""Checks the Kafka test harness itself (kafka_harness.py and kafka-mock) before the Kafka sink
tests rely on it: kcat produces keyed messages to the mock and reads them back, and the mock's
injected errors are retried by librdkafka.

    python3 tests/integration/kafka_harness_selftest.py PATH_TO_KAFKA_MOCK

Prints `ok NAME` or `FAIL NAME: reason` per check and exits 1 if any failed. Skips (exit 77)
when kcat or kafka-mock is missing, unless KR_REQUIRE_KAFKA=1.
"""
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import kafka_harness  # noqa: E402
from kafka_harness import KafkaMock, KafkaMockError, consume, produce  # noqa: E402

TOPIC = "events"
PARTITIONS = 3
KEYS = 20  # 100 messages, 5 per key: enough keys to reach every partition


class Failed(Exception):
    pass


def check(cond, msg):
    if not cond:
        raise Failed(msg)


def keyed_messages(n, first=0):
    return [("key-%02d" % (i % KEYS), '{"seq": %d}' % i) for i in range(first, first + n)]


def test_keyed_messages_round_trip(mock):
    t = time.time()
    produce(mock.bootstrap, TOPIC, keyed_messages(100))
    got = consume(mock.bootstrap, TOPIC, 100)
    print("# produced and consumed 100 messages in %.2f s" % (time.time() - t))
    check(len(got) == 100, "consumed %d of 100 messages" % len(got))
    sent = dict((v, k) for k, v in keyed_messages(100))
    check(sorted(m["payload"] for m in got) == sorted(sent), "payloads differ from those sent")
    check(all(m["key"] == sent[m["payload"]] for m in got), "a message lost its key")

    partition_of = {}
    for m in got:
        p = partition_of.setdefault(m["key"], m["partition"])
        check(p == m["partition"], "%s is in partitions %d and %d" % (m["key"], p, m["partition"]))
    used = sorted(set(partition_of.values()))
    check(used == list(range(PARTITIONS)), "%d keys used only partitions %s" % (KEYS, used))

    # One key's messages are in one partition, so in the order they were sent.
    for key in partition_of:
        seqs = [int(m["payload"][8:-1]) for m in sorted(got, key=lambda m: m["offset"])
                if m["key"] == key]
        check(seqs == sorted(seqs), "%s out of order: %s" % (key, seqs))


def test_injected_error_reaches_the_producer(mock):
    # Without this, the retry test below would also pass if `errors` did nothing.
    mock.command("errors 0 1 29")  # TOPIC_AUTHORIZATION_FAILED: not retried
    try:
        produce(mock.bootstrap, TOPIC, [("key-00", '{"seq": -1}')])
    except RuntimeError as e:
        check("authorization" in str(e), "kcat failed otherwise: %s" % e)
    else:
        raise Failed("a Produce request failed with 29 was delivered")


def test_produce_is_retried_after_not_leader(mock):
    check(mock.command("errors 0 3 6") == "ok", "errors command not acknowledged")
    produce(mock.bootstrap, TOPIC, keyed_messages(10, first=100))
    got = consume(mock.bootstrap, TOPIC, 110)
    new = [m for m in got if int(m["payload"][8:-1]) >= 100]
    check(not any(m["payload"] == '{"seq": -1}' for m in got), "the refused message arrived")
    check(len(got) == 110, "consumed %d of 110 messages" % len(got))
    check(len(new) == 10, "%d of the 10 retried messages arrived" % len(new))


def test_bad_command_is_an_error(mock):
    try:
        mock.command("rtt 99 10")  # no broker 99
    except KafkaMockError as e:
        check("Broker" in str(e), "unexpected error text: %s" % e)
    else:
        raise Failed("rtt for an unknown broker was accepted")
    check(mock.command("topic other 2") == "ok", "the mock stopped answering after an error")


def sigterm_exits_0(binary):
    mock = KafkaMock(binary)
    mock.proc.terminate()
    try:
        rc = mock.proc.wait(5)
    finally:
        mock.stop()
    check(rc == 0, "kafka-mock exited %s on SIGTERM" % rc)


TESTS = [test_keyed_messages_round_trip, test_injected_error_reaches_the_producer,
         test_produce_is_retried_after_not_leader, test_bad_command_is_an_error]


def main():
    if len(sys.argv) != 2:
        print("usage: kafka_harness_selftest.py PATH_TO_KAFKA_MOCK", file=sys.stderr)
        sys.exit(2)
    kafka_harness.need_kcat()
    binary = os.path.abspath(sys.argv[1])
    if not os.access(binary, os.X_OK):
        kafka_harness.missing("kafka-mock not found at %s" % binary)

    failed = 0
    with KafkaMock(binary, topics={TOPIC: PARTITIONS}) as mock:
        for test in TESTS:
            name = test.__name__[len("test_"):]
            try:
                test(mock)
                print("ok   %s" % name)
            except Exception as e:  # noqa: BLE001 - any failure is reported, not raised
                failed += 1
                print("FAIL %s: %s" % (name, e))
        mock.stop()
        rc = mock.proc.returncode
    if rc != 0:
        failed += 1
        print("FAIL quit_exits_0: kafka-mock exited %s" % rc)
    else:
        print("ok   quit_exits_0")
    try:
        sigterm_exits_0(binary)
        print("ok   sigterm_exits_0")
    except Exception as e:  # noqa: BLE001 - any failure is reported, not raised
        failed += 1
        print("FAIL sigterm_exits_0: %s" % e)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
