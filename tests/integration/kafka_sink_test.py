#!/usr/bin/env python3
"""The kafka sink against librdkafka's mock cluster (tests/kafka/kafka-mock, its own process on
loopback): kmsrouter reads events from files and produces them; kcat consumes them back.

    python3 tests/integration/kafka_sink_test.py PATH_TO_KMSROUTER [name-filter]
    python3 tests/integration/kafka_sink_test.py --list

Skips (exit 77) when kcat or kafka-mock is missing, unless KR_REQUIRE_KAFKA=1. KEEP_TMP=1 keeps
each case's folder. See README.md next to this file for what each case proves.
"""
import collections
import copy
import json
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from testlib import Failure, check, run_cases, sample_events  # noqa: E402
import kafka_harness  # noqa: E402
from kafka_harness import KafkaMock  # noqa: E402

KR = os.path.abspath(sys.argv[1]) if len(sys.argv) > 1 and sys.argv[1] != "--list" else None
KMS = {"source": ["aws.kms"]}
MOCK = None  # the kafka-mock binary


TEMPLATES = sample_events()
# the EventBridge KMS events (detail.key-id); the CloudTrail one has none
KEYED = ["kms-cmk-deletion", "kms-cmk-rotation", "kms-cmk-rotation-on-demand",
         "kms-imported-key-material-expiration"]


def event(i, keys=7, kind=None):
    """A sample KMS event with its own id, of one of keys key ids."""
    ev = copy.deepcopy(TEMPLATES[kind or KEYED[i % len(KEYED)]])
    ev["id"] = "ev-%05d" % i
    if "key-id" in ev.get("detail", {}):
        ev["detail"]["key-id"] = "k%d" % (i % keys)
    return ev


def write_events(d, evs, name="events.jsonl"):
    path = os.path.join(d, name)
    with open(path, "w") as f:
        for ev in evs:
            f.write(json.dumps(ev, separators=(",", ":")) + "\n")
    return path


def kafka_sink(bootstrap, **kw):
    return dict({"name": "k", "type": "kafka", "brokers": bootstrap, "topic": "kms-events",
                 "dead_letter": "dlq"}, **kw)


def config(d, inputs, sink, rules=None, **top):
    return dict({"sources": [{"name": "f", "type": "file", "paths": inputs}],
                 "sinks": [sink, {"name": "dlq", "type": "log",
                                  "path": os.path.join(d, "dlq.jsonl")}],
                 "rules": rules or [{"name": "kms", "pattern": KMS, "targets": ["k"]}]}, **top)


def run(d, cfg, env=None, timeout=60, args=("run",)):
    """kmsrouter run -c (the config written to d): (exit status, stderr, dead letters)."""
    path = os.path.join(d, "kr.json")
    with open(path, "w") as f:
        json.dump(cfg, f, indent=1)
    p = subprocess.run([KR] + list(args) + ["-c", path], cwd=d, env=env or dict(os.environ),
                       stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout)
    dlq = []
    try:
        with open(os.path.join(d, "dlq.jsonl")) as f:
            dlq = [json.loads(x) for x in f if x.strip()]
    except FileNotFoundError:
        pass
    return p.returncode, p.stderr.decode(errors="replace"), dlq


def summary(err):
    import re
    m = re.search(r"(\d+) deliveries succeeded, (\d+) deliveries dead-lettered", err)
    check(m, "no summary line:\n" + err[-2000:])
    return int(m.group(1)), int(m.group(2))


# ---------------------------------------------------------------- cases

def test_sample_events_arrive_once_keyed_by_key_id_in_order_per_key(d):
    """300 EventBridge KMS events of 7 key ids into a topic of 3 partitions: each arrives once,
    byte for byte as sent, keyed by its detail.key-id; one key's events are on one partition in
    the order they were sent."""
    with KafkaMock(MOCK, topics={"kms-events": 3}) as k:
        evs = [event(i) for i in range(300)]
        rc, err, dlq = run(d, config(d, [write_events(d, evs)], kafka_sink(k.bootstrap)))
        check(rc == 0, "exit status %d:\n%s" % (rc, err[-2000:]))
        check(summary(err) == (300, 0), "summary %s" % (summary(err),))
        got = kafka_harness.consume(k.bootstrap, "kms-events", 300, timeout=30)
        check(len(got) == 300, "%d messages consumed, want 300" % len(got))
        sent = {e["id"]: json.dumps(e, separators=(",", ":")) for e in evs}
        ids = collections.Counter(json.loads(m["payload"])["id"] for m in got)
        check(set(ids) == set(sent) and max(ids.values()) == 1,
              "not each event once: %s" % [i for i, n in ids.items() if n > 1][:3])
        for m in got:
            ev = json.loads(m["payload"])
            check(m["payload"] == sent[ev["id"]], "payload changed: %r" % m["payload"][:200])
            check(m["key"] == ev["detail"]["key-id"], "key %r for key id %r"
                  % (m["key"], ev["detail"]["key-id"]))
        parts = collections.defaultdict(set)
        for m in got:
            parts[m["key"]].add(m["partition"])
        check(all(len(p) == 1 for p in parts.values()), "a key on several partitions: %s"
              % dict(parts))
        check(len(set().union(*parts.values())) > 1, "every key on one partition: %s"
              % dict(parts))
        by_key = collections.defaultdict(list)
        for m in sorted(got, key=lambda m: (m["partition"], m["offset"])):
            by_key[m["key"]].append(json.loads(m["payload"])["id"])
        for key, seq in by_key.items():
            check(seq == sorted(seq), "key %s out of order: %s" % (key, seq[:10]))


def test_topic_template_and_an_event_without_its_field_dead_lettered(d):
    """topic "kms-<$.detail.key-id>": each keyed event goes to its key's topic; the CloudTrail
    event, which has no detail.key-id, goes to the dead letter as MissingTopic; exit 0."""
    with KafkaMock(MOCK, topics={"kms-k0": 1, "kms-k1": 1}) as k:
        evs = [event(i, keys=2) for i in range(20)]
        ct = event(99, kind="cloudtrail-decrypt-pending-deletion")
        rc, err, dlq = run(d, config(d, [write_events(d, evs + [ct])],
                                     kafka_sink(k.bootstrap, topic="kms-<$.detail.key-id>")))
        check(rc == 0, "exit status %d:\n%s" % (rc, err[-2000:]))
        for key in ("k0", "k1"):
            got = kafka_harness.consume(k.bootstrap, "kms-" + key, 10, timeout=30)
            ids = sorted(json.loads(m["payload"])["id"] for m in got)
            want = sorted(e["id"] for e in evs if e["detail"]["key-id"] == key)
            check(ids == want, "topic kms-%s holds %s, want %s" % (key, ids, want))
        check(len(dlq) == 1 and dlq[0]["error_code"] == "MissingTopic" and
              dlq[0]["event"]["id"] == ct["id"], "dead letters: %s" % dlq)


def test_broker_errors_are_retried_without_duplicates(d):
    """The mock fails the next 6 Produce requests with REQUEST_TIMED_OUT and NOT_LEADER: the
    idempotent producer retries them; every event arrives exactly once, nothing dead-lettered."""
    with KafkaMock(MOCK, topics={"kms-events": 1}) as k:
        k.command("errors 0 3 7")
        k.command("errors 0 3 6")
        evs = [event(i) for i in range(100)]
        rc, err, dlq = run(d, config(d, [write_events(d, evs)], kafka_sink(k.bootstrap)))
        check(rc == 0, "exit status %d:\n%s" % (rc, err[-2000:]))
        check(dlq == [], "dead letters: %s" % dlq[:2])
        got = kafka_harness.consume(k.bootstrap, "kms-events", 100, timeout=30)
        ids = collections.Counter(json.loads(m["payload"])["id"] for m in got)
        check(sorted(ids) == sorted(e["id"] for e in evs) and max(ids.values()) == 1,
              "consumed %d messages, %d distinct" % (len(got), len(ids)))


def test_broker_down_then_up_the_events_wait_and_arrive(d):
    """The only broker is down when the run starts and comes back 3 s later: the events wait
    (librdkafka's message timeout 20 s, the sink's retry policy behind it) and all arrive."""
    with KafkaMock(MOCK, topics={"kms-events": 1}) as k:
        k.command("broker-down 1")
        evs = [event(i) for i in range(50)]
        path = os.path.join(d, "kr.json")
        with open(path, "w") as f:
            json.dump(config(d, [write_events(d, evs)],
                             kafka_sink(k.bootstrap, timeout_ms=20000)), f)
        p = subprocess.Popen([KR, "run", "-c", path], cwd=d, stdin=subprocess.DEVNULL,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        time.sleep(3)
        check(p.poll() is None, "kmsrouter exited while the broker was down")
        k.command("broker-up 1")
        try:
            _, err = p.communicate(timeout=40)
        except subprocess.TimeoutExpired:
            p.kill()
            raise Failure("kmsrouter still running 40 s after the broker came back")
        err = err.decode(errors="replace")
        check(p.returncode == 0, "exit status %d:\n%s" % (p.returncode, err[-2000:]))
        got = kafka_harness.consume(k.bootstrap, "kms-events", 50, timeout=30)
        check(sorted(json.loads(m["payload"])["id"] for m in got) ==
              sorted(e["id"] for e in evs), "consumed %d of 50" % len(got))


def test_message_too_large_is_dead_lettered_unsent(d):
    """message.max.bytes 2000 through "properties": a 5 KB event goes to the dead letter as
    MSG_SIZE_TOO_LARGE, the others arrive."""
    with KafkaMock(MOCK, topics={"kms-events": 1}) as k:
        evs = [event(i) for i in range(5)]
        big = event(5)
        big["detail"]["padding"] = "x" * 5000
        rc, err, dlq = run(d, config(d, [write_events(d, evs + [big])],
                                     kafka_sink(k.bootstrap,
                                                properties={"message.max.bytes": "2000"})))
        check(rc == 0, "exit status %d:\n%s" % (rc, err[-2000:]))
        check(len(dlq) == 1 and dlq[0]["error_code"] == "MSG_SIZE_TOO_LARGE" and
              dlq[0]["event"]["id"] == big["id"], "dead letters: %s" % dlq)
        got = kafka_harness.consume(k.bootstrap, "kms-events", 5, timeout=30)
        check(sorted(json.loads(m["payload"])["id"] for m in got) ==
              sorted(e["id"] for e in evs), "consumed %s" % got)


def test_check_rejects_bad_properties_at_their_place_and_never_shows_a_secret(d):
    """check: an unknown property, a bad value, a property the sink sets itself,
    plugin.library.paths (as a property and as a secret one), a secret property whose variable
    is unset, and one whose value librdkafka refuses: each rejected at
    FILE:LINE:COL with the option's path; the secret's value is never in the output. With the
    secret set and valid, the run's output does not hold it either."""
    src = write_events(d, [event(0)])
    secret = "s3cr3t-Value-42"
    env = dict(os.environ, KR_KAFKA_SECRET=secret)
    cases = [({"properties": {"no.such.property": "1"}}, "no.such.property"),
             ({"properties": {"linger.ms": "soon"}}, "linger.ms"),
             ({"properties": {"bootstrap.servers": "x:1"}}, "set by the sink"),
             # librdkafka would load it while check reads the config
             ({"properties": {"plugin.library.paths": "/nonexistent/libkrplugin"}},
              "plugin.library.paths\" is refused"),
             ({"secret_properties": {"plugin.library.paths": "KR_KAFKA_SECRET"}},
              "plugin.library.paths\" is refused"),
             ({"secret_properties": {"sasl.password": "KR_KAFKA_UNSET_VAR"}},
              "KR_KAFKA_UNSET_VAR"),
             ({"secret_properties": {"linger.ms": "KR_KAFKA_SECRET"}}, "linger.ms"),
             ({"topic": "kms-<$.detail.>"}, "topic"),
             ({"brokers": ""}, "brokers")]
    for extra, want in cases:
        rc, err, _ = run(d, config(d, [src], kafka_sink("127.0.0.1:9", **extra)), env=env,
                         args=("check",))
        check(rc == 2, "%s: check exit %d, want 2:\n%s" % (extra, rc, err))
        check(want in err and "kr.json:" in err and "$.sinks[0]." in err,
              "%s: the error does not say %r at its place: %s" % (extra, want, err))
        check(secret not in err, "%s: the secret is in the output" % extra)
    with KafkaMock(MOCK, topics={"kms-events": 1}) as k:
        rc, err, _ = run(d, config(d, [src], kafka_sink(
            k.bootstrap, secret_properties={"sasl.password": "KR_KAFKA_SECRET"},
            properties={"debug": "conf"})), env=env)
        check(rc == 0, "exit status %d:\n%s" % (rc, err[-2000:]))
        check(secret not in err, "the secret is in the run's output")


def start(kr):
    global MOCK
    MOCK = kafka_harness.need_kafka(KR)


CASES = [globals()[k] for k in sorted(k for k in globals() if k.startswith("test_"))]


if __name__ == "__main__":
    sys.exit(run_cases(CASES, "kafka sink", "kmsrouter-kafka-", __doc__, start=start))
