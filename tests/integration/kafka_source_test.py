#!/usr/bin/env python3
"""The kafka source against librdkafka's mock cluster (tests/kafka/kafka-mock, its own process on
loopback): kcat produces into topics, kmsrouter consumes them in a consumer group and delivers to
log sinks, a loopback HTTP endpoint or a dead-letter topic; kafka-offsets (tests/kafka, built
next to kafka-mock) reads what the group committed and the partitions' watermarks.

    python3 tests/integration/kafka_source_test.py PATH_TO_KMSROUTER [name-filter]
    python3 tests/integration/kafka_source_test.py --list

Skips (exit 77) when kcat, kafka-mock or kafka-offsets is missing, unless KR_REQUIRE_KAFKA=1.
KEEP_TMP=1 keeps each case's folder (configs, sink files, each router's stderr). On a failure
the tail of every router's stderr is printed. Every wait polls a condition with a deadline; see
README.md next to this file for what each case proves.

Mock cluster facts the cases are built on (librdkafka 2.0.2, src/rdkafka_mock_cgrp.c): the first
join of a group waits 3 s for more members; a join into a running group, or a member leaving or
timing out, waits session.timeout.ms - 1000 for the members to join again (the routers here use
session.timeout.ms 4000: 3 s); a member is timed out when it has not been heard of for
session.timeout.ms (checked every second); a downed broker keeps its partitions, so the failover
case has one broker.
"""
import collections
import copy
import http.server
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from testlib import Failure, check, sample_events, log_sink, wait_for, lines, note  # noqa: E402
import kafka_harness  # noqa: E402
from kafka_harness import KafkaMock, consume, produce  # noqa: E402
from testlib import free_port, run_cases, router_hooks  # noqa: E402

KR = os.path.abspath(sys.argv[1]) if len(sys.argv) > 1 and sys.argv[1] != "--list" else None
KMS = {"source": ["aws.kms"]}
TOPIC = "kms-events"
MOCK = None     # the kafka-mock binary
OFFSETS = None  # the kafka-offsets binary
# a short session: a group without a member notices within 4 s, a rebalance waits 3 s
GROUP_PROPS = {"session.timeout.ms": "4000", "heartbeat.interval.ms": "500"}
# retries for a sink the tests make fail for a while: short waits, never given up
PATIENT = {"max_attempts": 100000, "initial_backoff_ms": 100, "max_backoff_ms": 400}


# ---------------------------------------------------------------- events

TEMPLATES = sample_events()
# the EventBridge KMS events (detail.key-id); the CloudTrail one has none
KEYED = ["kms-cmk-deletion", "kms-cmk-rotation", "kms-cmk-rotation-on-demand",
         "kms-imported-key-material-expiration"]


def event(i, prefix="ev", keys=60):
    """A sample KMS event with its own id PREFIX-NNNNN, of one of keys key ids."""
    ev = copy.deepcopy(TEMPLATES[KEYED[i % len(KEYED)]])
    ev["id"] = "%s-%05d" % (prefix, i)
    ev["detail"]["key-id"] = "k%d" % (i % keys)
    return ev


def events(start, n, prefix="ev", keys=60):
    return [event(i, prefix, keys) for i in range(start, start + n)]


def num(ev_id):
    return int(ev_id.rsplit("-", 1)[1])


def dump(ev):
    return json.dumps(ev, separators=(",", ":"))


BY_KEY_ID = object()


def produce_events(bootstrap, evs, topic=TOPIC, key=BY_KEY_ID, extra=()):
    """Produces each event as one message keyed by its detail.key-id (or by key; None: a null
    key), in one kcat call."""
    produce(bootstrap, topic, [(ev["detail"]["key-id"] if key is BY_KEY_ID else key, dump(ev))
                               for ev in evs], extra=list(extra))


def placed(bootstrap, topic, count):
    """{event id: (partition, offset)} of the topic's first count messages (read back)."""
    got = consume(bootstrap, topic, count, timeout=30)
    check(len(got) == count, "%s holds %d messages, want %d" % (topic, len(got), count))
    return {json.loads(m["payload"])["id"]: (m["partition"], m["offset"]) for m in got}


# ---------------------------------------------------------------- offsets

def offsets(bootstrap, group, topic=TOPIC):
    """{partition: {"committed": C or None, "low": L, "high": H}} as kafka-offsets reports."""
    r = subprocess.run([OFFSETS, bootstrap, group, topic, "10000"], capture_output=True,
                       text=True, timeout=30)
    check(r.returncode == 0, "kafka-offsets exited %d: %s" % (r.returncode, r.stderr[-500:]))
    out = {}
    for line in r.stdout.splitlines():
        x = json.loads(line)
        out[x["partition"]] = x
    return out


def at_end(offs):
    """Every partition's committed offset is its high watermark (an empty partition may have
    none)."""
    return all(x["committed"] == x["high"] or (x["high"] == 0 and x["committed"] is None)
               for x in offs.values())


def show(offs):
    return " ".join("%d:%s/%d" % (p, x["committed"], x["high"]) for p, x in sorted(offs.items()))


def wait_committed_to_end(bootstrap, group, routers=(), topic=TOPIC, timeout=20):
    last = []

    def done():
        last[:] = [offsets(bootstrap, group, topic)]
        return at_end(last[0])
    try:
        wait_for(done, timeout, "group %s's committed offsets to reach the end of %s"
                 % (group, topic), routers, 0.2)
    except Failure as e:
        raise Failure("%s (partition:committed/high %s)" % (e, show(last[0]))) from None


# ---------------------------------------------------------------- configuration

def kafka_source(bootstrap, group="kmsrouter", topics=(TOPIC,), name="kafka", **kw):
    return dict({"name": name, "type": "kafka", "brokers": bootstrap, "topics": list(topics),
                 "group_id": group, "commit_interval_ms": 500,
                 "properties": dict(GROUP_PROPS)}, **kw)


def config(sources, sinks, rules, **top):
    return dict({"sources": sources if isinstance(sources, list) else [sources],
                 "sinks": sinks, "rules": rules}, **top)


def simple(src, out="out.jsonl", **top):
    """src to one log sink "out" (every KMS event)."""
    return config(src, [log_sink("out", out)],
                  [{"name": "kms", "pattern": KMS, "targets": ["out"]}], **top)



# ---------------------------------------------------------------- processes and files

ROUTERS = []  # every kmsrouter a test started, for its diagnostics and its cleanup


class Router:
    """kmsrouter run -c NAME.json in d (the config written there); stderr to NAME.stderr."""

    def __init__(self, d, cfg, name="kr", env=None):
        self.name = name
        self.cfg_path = os.path.join(d, name + ".json")
        with open(self.cfg_path, "w") as f:
            json.dump(cfg, f, indent=1)
        self.err_path = os.path.join(d, name + ".stderr")
        with open(self.err_path, "wb") as err, open(os.path.join(d, name + ".stdout"), "wb") as out:
            self.p = subprocess.Popen([KR, "run", "-c", self.cfg_path], cwd=d,
                                      env=env or dict(os.environ), stdin=subprocess.DEVNULL,
                                      stdout=out, stderr=err)
        ROUTERS.append(self)

    def stderr(self):
        with open(self.err_path, "rb") as f:
            return f.read().decode("utf-8", errors="replace")

    def tail(self, n=12):
        return "\n    ".join(self.stderr().strip().splitlines()[-n:])

    def running(self):
        return self.p.poll() is None

    def stop(self, timeout=40):
        """SIGTERM, then its exit status (fails when it does not exit in time)."""
        check(self.running(), "%s exited early (status %s)" % (self.name, self.p.returncode))
        self.p.send_signal(signal.SIGTERM)
        try:
            return self.p.wait(timeout)
        except subprocess.TimeoutExpired:
            raise Failure("%s still running %d s after SIGTERM" % (self.name, timeout)) from None

    def kill9(self):
        self.p.kill()
        self.p.wait(10)

    def summary(self):
        m = re.search(r"^kmsrouter: (\d+) records read \((\d+) events, (\d+) invalid\).*?"
                      r"(\d+) deliveries succeeded, (\d+) deliveries dead-lettered, "
                      r"(\d+) invalid records dead-lettered, (\d+) records left unacknowledged",
                      self.stderr(), re.M)
        check(m, "%s: no summary line on stderr:\n    %s" % (self.name, self.tail()))
        keys = ("records", "events", "invalid", "delivered", "dead_lettered",
                "invalid_dead_lettered", "unacked")
        return dict(zip(keys, map(int, m.groups())))


def read_jsonl(path, allow_cut=False):
    """The JSON lines of a sink's file ([] when it does not exist). allow_cut: a last line that a
    kill -9 cut short is dropped."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        return []
    if data and not data.endswith(b"\n"):
        check(allow_cut, "%s: the last line is not terminated: %r" % (path, data[-100:]))
        data = data[:data.rfind(b"\n") + 1]
    return [json.loads(line) for line in data.decode().splitlines() if line.strip()]


def ids_of(path, allow_cut=False):
    return [e["id"] for e in read_jsonl(path, allow_cut)]


def once_each(got_ids, want_ids, label):
    """Every id of want_ids exactly once in got_ids, nothing else."""
    c = collections.Counter(got_ids)
    want = set(want_ids)
    missing = sorted(i for i in want if i not in c)
    extra = sorted(i for i in c if i not in want)
    dups = sorted((i, n) for i, n in c.items() if n > 1)
    check(not missing and not extra and not dups,
          "%s: %d delivered for %d expected; %d missing (e.g. %s), %d unexpected (e.g. %s), %d "
          "delivered more than once (e.g. %s)" % (label, len(got_ids), len(want), len(missing),
                                                   missing[:3], len(extra), extra[:3],
                                                   len(dups), dups[:3]))


def metrics(port):
    """[(name, {label: value}, value)] of the router's /metrics."""
    with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % port, timeout=2) as r:
        text = r.read().decode()
    out = []
    for line in text.splitlines():
        m = re.match(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$", line)
        if m:
            labels = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m.group(2) or ""))
            out.append((m.group(1), labels, float(m.group(3))))
    return out


def metric(port, name, **labels):
    """One sample of /metrics (None when absent)."""
    for n, ls, v in metrics(port):
        if n == name and ls == labels:
            return v
    return None


def input_lags(port, source="kafka"):
    """{input: lag} of kmsrouter_source_input_lag for source."""
    return {ls.get("input"): v for n, ls, v in metrics(port)
            if n == "kmsrouter_source_input_lag" and ls.get("source") == source}


class Recorder:
    """A loopback HTTP endpoint for an http sink: answer(event) gives the status; .ok keeps the
    id of each event answered 200, in the order of the answers; .failed counts the others."""

    def __init__(self, answer):
        self.lock = threading.Lock()
        self.ok, self.failed = [], 0
        outer = self

        class H(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                ev = json.loads(body)
                status = answer(ev)
                with outer.lock:  # recorded before the answer leaves: a superset of delivered
                    if status == 200:
                        outer.ok.append(ev["id"])
                    else:
                        outer.failed += 1
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *a):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.httpd.daemon_threads = True
        self.url = "http://127.0.0.1:%d/events" % self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def oks(self):
        with self.lock:
            return list(self.ok)

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()


class Feeder(threading.Thread):
    """Produces events PREFIX-NNNNN in batches of per_batch every interval seconds until
    stopped; .batches keeps (time.monotonic() when produced, ids)."""

    def __init__(self, bootstrap, prefix="live", per_batch=20, interval=0.1):
        super().__init__(daemon=True)
        self.bootstrap, self.prefix = bootstrap, prefix
        self.per_batch, self.interval = per_batch, interval
        self.batches, self.error = [], None
        self.halt = threading.Event()

    def run(self):
        i = 0
        try:
            while not self.halt.is_set():
                evs = events(i, self.per_batch, self.prefix)
                produce_events(self.bootstrap, evs)
                self.batches.append((time.monotonic(), [e["id"] for e in evs]))
                i += self.per_batch
                self.halt.wait(self.interval)
        except Exception as e:  # noqa: BLE001 - reported by stop()
            self.error = e

    def stop(self):
        self.halt.set()
        self.join(30)
        check(self.error is None, "producing failed: %s" % self.error)
        return [i for _, ids in self.batches for i in ids]


# ---------------------------------------------------------------- cases

def test_10000_events_over_6_partitions_delivered_once_and_committed_to_the_end(d):
    """10,000 sample KMS events of 60 key ids in 6 partitions on 3 brokers, half produced before
    the router starts and half while it runs, to one log sink: each event is delivered exactly
    once, as produced (no "kmsrouter" key); the group's committed offsets reach the high
    watermark of every partition while the router runs (commit_interval_ms 500) and are still
    there after SIGTERM; /metrics counts 10,000 records and shows kmsrouter_source_input_lag 0
    for each of the 6 partitions; exit 0 and the summary counts 10,000 deliveries."""
    with KafkaMock(MOCK, brokers=3, topics={TOPIC: 6}) as k:
        evs = events(0, 10000)
        produce_events(k.bootstrap, evs[:5000])
        port = free_port()
        out = os.path.join(d, "out.jsonl")
        t0 = time.monotonic()
        r = Router(d, simple(kafka_source(k.bootstrap),
                             metrics={"listen": "127.0.0.1:%d" % port}))
        produce_events(k.bootstrap, evs[5000:])
        offs = offsets(k.bootstrap, "kmsrouter")
        check(sum(x["high"] for x in offs.values()) == 10000 and
              all(x["high"] > 0 for x in offs.values()),
              "the 10,000 events are not spread over the 6 partitions: %s" % show(offs))
        wait_for(lambda: lines(out) >= 10000, 120, "10,000 deliveries", [r], 0.1)
        note("10,000 events delivered %.1f s after the start (a group join takes ~3.5 s)"
             % (time.monotonic() - t0))
        wait_committed_to_end(k.bootstrap, "kmsrouter", [r])
        want_inputs = {"%s/%d" % (TOPIC, p) for p in range(6)}
        wait_for(lambda: input_lags(port) == {i: 0 for i in want_inputs}, 10,
                 "kmsrouter_source_input_lag 0 for the 6 partitions", [r], 0.2)
        check(metric(port, "kmsrouter_records_total", source="kafka") == 10000,
              "kmsrouter_records_total{source=\"kafka\"} %s, want 10000"
              % metric(port, "kmsrouter_records_total", source="kafka"))
        rc = r.stop()
        check(rc == 0, "exit status %d:\n    %s" % (rc, r.tail()))
        offs = offsets(k.bootstrap, "kmsrouter")
        check(at_end(offs), "after SIGTERM, committed/high: %s" % show(offs))
        got = read_jsonl(out)
        once_each([e["id"] for e in got], [e["id"] for e in evs], "log sink")
        by_id = {e["id"]: e for e in evs}
        bad = [e["id"] for e in got if e != by_id[e["id"]]]
        check(not bad, "%d delivered events differ from the ones produced, e.g. %s: %s"
              % (len(bad), bad[:2], dump(next(e for e in got if e["id"] in bad))[:300]
                 if bad else ""))
        s = r.summary()
        check((s["records"], s["events"], s["invalid"], s["delivered"], s["dead_lettered"],
               s["unacked"]) == (10000, 10000, 0, 10000, 0, 0), "summary: %s" % s)


def test_failing_sink_holds_back_the_commit_at_the_first_undelivered_record(d):
    """An http sink (retrying for ever, no dead letter) in front of a loopback endpoint: the
    first 90 events are delivered and committed; then 210 more are produced while the endpoint
    answers 500 to every event whose number is not a multiple of 3 (and 200 to the others, so
    each partition has delivered records after undelivered ones). Sampled every 0.25 s for 4 s,
    each partition's committed offset never passes the offset of its earliest record that was
    not yet answered 200 (the commit waits for every earlier record, not for the highest one
    done), never goes back, and kmsrouter_source_input_lag is > 0 on each partition holding an
    undelivered record. Once the endpoint answers 200, every event is answered 200 exactly once,
    the committed offsets reach the end, the lag is 0, exit 0."""
    mode = ["ok"]
    srv = Recorder(lambda ev: 500 if mode[0] == "outage" and num(ev["id"]) % 3 else 200)
    try:
        with KafkaMock(MOCK, brokers=1, topics={TOPIC: 3}) as k:
            evs = events(0, 300, keys=30)
            produce_events(k.bootstrap, evs[:90])
            port = free_port()
            r = Router(d, config(
                kafka_source(k.bootstrap, commit_interval_ms="500ms"),
                [{"name": "api", "type": "http", "url": srv.url, "retry": PATIENT,
                  "timeout_ms": 5000}],
                [{"name": "kms", "pattern": KMS, "targets": ["api"]}],
                metrics={"listen": "127.0.0.1:%d" % port}))
            wait_for(lambda: len(set(srv.oks())) >= 90, 30, "the first 90 deliveries", [r], 0.1)
            wait_committed_to_end(k.bootstrap, "kmsrouter", [r])
            before = offsets(k.bootstrap, "kmsrouter")
            mode[0] = "outage"
            produce_events(k.bootstrap, evs[90:])
            where = placed(k.bootstrap, TOPIC, 300)
            wait_for(lambda: srv.failed >= 10, 15, "the endpoint's first failed answers", [r])
            end = time.monotonic() + 4
            samples, gaps, last, max_lag = 0, set(), before, collections.Counter()
            while time.monotonic() < end:
                offs = offsets(k.bootstrap, "kmsrouter")  # first the offsets, then what was
                ok = set(srv.oks())                        # delivered: a sound comparison
                lags = input_lags(port)
                for p, x in offs.items():
                    undelivered = [o for i, (q, o) in where.items() if q == p and i not in ok]
                    first = min(undelivered) if undelivered else x["high"]
                    c = x["committed"] or 0  # None: nothing committed yet
                    check(c <= first,
                          "partition %d: committed offset %s while its record at offset %d is "
                          "not delivered (committed/high %s)" % (p, c, first, show(offs)))
                    check(c >= (last[p]["committed"] or 0), "partition %d: committed offset "
                          "went back from %s to %s" % (p, last[p]["committed"], c))
                    if any(q == p and o > first and i in ok for i, (q, o) in where.items()):
                        gaps.add(p)
                    if undelivered:
                        max_lag[p] = max(max_lag[p], lags.get("%s/%d" % (TOPIC, p), 0))
                last = offs
                samples += 1
                time.sleep(0.25)
            check(gaps, "no partition had a record delivered after an undelivered one: the "
                  "check proved nothing")
            holding = {p for i, (p, o) in where.items() if num(i) >= 90 and num(i) % 3}
            check(all(max_lag[p] > 0 for p in holding), "kmsrouter_source_input_lag stayed 0 "
                  "on a partition with undelivered records: %s" % dict(max_lag))
            note("%d samples during the outage; %d answers 500; partitions with a gap: %s; "
                 "committed/high at its end: %s" % (samples, srv.failed, sorted(gaps),
                                                    show(last)))
            mode[0] = "ok"
            wait_for(lambda: set(srv.oks()) >= set(where), 60, "every event delivered", [r],
                     0.1)
            wait_committed_to_end(k.bootstrap, "kmsrouter", [r])
            wait_for(lambda: input_lags(port) == {"%s/%d" % (TOPIC, p): 0 for p in range(3)},
                     10, "kmsrouter_source_input_lag 0 on the 3 partitions", [r], 0.2)
            rc = r.stop()
            check(rc == 0, "exit status %d:\n    %s" % (rc, r.tail()))
            once_each(srv.oks(), [e["id"] for e in evs], "answered 200")
            check(at_end(offsets(k.bootstrap, "kmsrouter")), "after SIGTERM, committed/high %s"
                  % show(offsets(k.bootstrap, "kmsrouter")))
    finally:
        srv.stop()


def test_kill_9_of_one_of_two_group_members_moves_its_partitions_duplicates_bounded(d):
    """Two routers A and B in one group (1 broker, 6 partitions, session.timeout.ms 4000,
    commit_interval_ms 500, max_in_flight 500) while events are produced at ~200/s. Once B has
    its share and both deliver, A is killed with SIGKILL; B takes over A's partitions (it
    delivers from all 6) and every event produced is delivered at least once (A's output and
    B's together). The duplicates are bounded by the uncommitted window: with C(p) the group's
    committed offset of partition p read right after the kill, every event delivered twice is
    one A delivered at an offset >= C(p) of its partition (W), so duplicates <= |W| <= A's
    deliveries; and |W| <= max_in_flight + the events produced in the last 1.5 s before the kill
    (two commit intervals and a round trip: A keeps up with the producer). Neither router
    delivers an event twice itself. B exits 0 on SIGTERM; the committed offsets reach the
    end. The bound is about the kill: B's join comes first, and when its rebalances overlap
    (a slow machine) A's commit of the partitions it gives up can be refused
    (REBALANCE_IN_PROGRESS) and B reads them again from an older offset; those duplicates lie
    below the offsets committed once the group is steady (read before the kill), and are
    counted apart."""
    with KafkaMock(MOCK, brokers=1, topics={TOPIC: 6}) as k:
        cfg_a = simple(kafka_source(k.bootstrap, group="pair"), out="a.jsonl", max_in_flight=500)
        cfg_b = simple(kafka_source(k.bootstrap, group="pair"), out="b.jsonl", max_in_flight=500)
        a_out, b_out = os.path.join(d, "a.jsonl"), os.path.join(d, "b.jsonl")
        feed = Feeder(k.bootstrap)
        feed.start()
        try:
            ra = Router(d, cfg_a, "a")
            wait_for(lambda: lines(a_out) > 0, 30, "A's first delivery", [ra], 0.1)
            rb = Router(d, cfg_b, "b")
            t0 = time.monotonic()
            wait_for(lambda: lines(b_out) > 0, 40, "B's first delivery (its share)", [ra, rb],
                     0.1)
            note("B delivered its first event %.1f s after it started" % (time.monotonic() - t0))
            n_a = lines(a_out)
            wait_for(lambda: lines(a_out) > n_a + 20 and lines(b_out) > 20, 20,
                     "both routers delivering", [ra, rb], 0.1)
            time.sleep(1)  # a steady group: a commit interval or two of both delivering
            c_steady = offsets(k.bootstrap, "pair")
            t_kill = time.monotonic()
            ra.kill9()
            # A's last commit request may still be on its way to the broker: wait it out; B
            # gets nothing of A's before A's session times out (4 s)
            time.sleep(0.5)
            c_kill = offsets(k.bootstrap, "pair")
            t1 = time.monotonic()
            a_ids = ids_of(a_out, allow_cut=True)
            wait_for(lambda: len(partitions_of(ids_of(b_out), feed)) == 6, 40,
                     "B to deliver from all 6 partitions", [rb], 0.2)
            note("B took over A's partitions %.1f s after the kill" % (time.monotonic() - t1))
            time.sleep(0.5)
        finally:
            produced = feed.stop()
        where = placed(k.bootstrap, TOPIC, len(produced))
        wait_for(lambda: set(a_ids) | set(ids_of(b_out)) >= set(produced), 40,
                 "every event produced delivered", [rb], 0.2)
        wait_committed_to_end(k.bootstrap, "pair", [rb])
        rc = rb.stop()
        check(rc == 0, "B: exit status %d:\n    %s" % (rc, rb.tail()))
        b_ids = ids_of(b_out)
        for label, got in (("A", a_ids), ("B", b_ids)):
            twice = [i for i, n in collections.Counter(got).items() if n > 1]
            check(not twice, "%s delivered %d events more than once itself, e.g. %s"
                  % (label, len(twice), twice[:3]))
        missing = set(produced) - set(a_ids) - set(b_ids)
        check(not missing, "%d events never delivered, e.g. %s" % (len(missing),
                                                                   sorted(missing)[:3]))
        check(set(a_ids) | set(b_ids) <= set(produced), "unexpected ids delivered")
        window = {i for i in a_ids
                  if c_kill[where[i][0]]["committed"] is None or
                  where[i][1] >= c_kill[where[i][0]]["committed"]}
        dups = set(a_ids) & set(b_ids)
        at_join = {i for i in dups if c_steady[where[i][0]]["committed"] is not None and
                   where[i][1] < c_steady[where[i][0]]["committed"]}
        if at_join:
            note("%d duplicates from B's join, below the offsets committed once the group was "
                 "steady (%s)" % (len(at_join), show(c_steady)))
            # only a refused commit of the partitions A gave up explains them
            err_a = ra.stderr()
            at = err_a.find("partitions revoked")
            check(at >= 0 and "an offset commit failed" in err_a[at:],
                  "%d events delivered by both below the offsets committed once the group was "
                  "steady, and A logged no refused commit after its revoke: the revoked "
                  "partitions were not committed" % len(at_join))
        outside = sorted(dups - window - at_join, key=lambda i: where[i])
        check(not outside, "%d events delivered by both that A had committed before it was "
              "killed (not in its uncommitted window), e.g. %s at (partition, offset) %s; "
              "committed at the kill: %s" % (len(outside), outside[:3],
                                             [where[i] for i in outside[:3]], show(c_kill)))
        recent = sum(len(ids) for t, ids in feed.batches if t_kill - 1.5 <= t <= t_kill)
        bound = 500 + recent
        check(len(window) <= bound, "A had %d deliveries not committed at the kill, more than "
              "max_in_flight 500 + %d produced in the 1.5 s before it" % (len(window), recent))
        note("%d produced; A delivered %d, B %d; %d duplicates (%d from the join); A's "
             "uncommitted window %d (bound %d)" % (len(produced), len(a_ids), len(b_ids),
                                                    len(dups), len(at_join), len(window),
                                                    bound))


def test_a_member_whose_assignment_was_lost_resumes_where_it_got_not_at_the_commit(d):
    """One router (commit_interval_ms one hour: nothing is committed while it runs) delivers
    300 events, then is stopped with SIGSTOP for longer than session.timeout.ms: the group
    drops it, and on SIGCONT librdkafka finds its assignment lost and rejoins. Given its
    partitions back, it resumes after the last message it read of each, not at the group's
    committed offsets (none): the 300 events are not delivered again, 200 produced meanwhile
    and after are delivered once each, and SIGTERM commits the end."""
    with KafkaMock(MOCK, brokers=1, topics={TOPIC: 3}) as k:
        first, more = events(0, 300, "lost"), events(300, 200, "lost")
        produce_events(k.bootstrap, first)
        out = os.path.join(d, "out.jsonl")
        r = Router(d, simple(kafka_source(k.bootstrap, group="lost",
                                          commit_interval_ms=3600000)))
        wait_for(lambda: lines(out) >= 300, 30, "300 deliveries", [r], 0.1)
        offs = offsets(k.bootstrap, "lost")
        check(all(x["committed"] is None for x in offs.values()),
              "offsets committed before the loss (the case needs none): %s" % show(offs))
        os.kill(r.p.pid, signal.SIGSTOP)
        try:
            time.sleep(6)  # session.timeout.ms 4000: the mock drops the member
            produce_events(k.bootstrap, more[:100])
        finally:
            os.kill(r.p.pid, signal.SIGCONT)
        wait_for(lambda: "partitions lost" in r.stderr(), 20, "the assignment lost", [r], 0.1)
        wait_for(lambda: r.stderr().count("resumes where this member got to") == 3, 30,
                 "the 3 partitions given back and resumed", [r], 0.1)
        produce_events(k.bootstrap, more[100:])
        wait_for(lambda: lines(out) >= 500, 30, "500 deliveries", [r], 0.1)
        time.sleep(0.5)
        rc = r.stop()
        check(rc == 0, "exit status %d:\n    %s" % (rc, r.tail()))
        once_each(ids_of(out), [e["id"] for e in first + more], "log sink")
        offs = offsets(k.bootstrap, "lost")
        check(at_end(offs), "after SIGTERM, committed/high: %s" % show(offs))


def partitions_of(ids, feed):
    """The partitions of the feeder's events ids: each key id's partition, read from the topic
    until every key id met is known (the producer puts one key on one partition)."""
    if not hasattr(feed, "key_part"):
        feed.key_part = {}
    keys = {"k%d" % (num(i) % 60) for i in ids}
    if not keys <= set(feed.key_part):
        for m in consume(feed.bootstrap, TOPIC, 100000, timeout=10):
            feed.key_part[m["key"]] = m["partition"]
    return {feed.key_part[x] for x in keys if x in feed.key_part}


POISON = [
    # (key, value, kcat headers): not JSON; not UTF-8 with a null key; JSON but not an event
    ("pk-1", b"{not json at all", ["-H", "tenant=a", "-H", "trace=t1"]),
    (None, b"\xff\xfe\x01binary, not text", []),
    ("pk-3", b'{"detail-type": 5, "source": "aws.kms"}', ["-H", "dup=v1", "-H", "dup=v2",
                                                          "-H", "flag"]),
]


def kcat_headers(extra):
    """The (name, value) pairs of kcat -H arguments (a header without = has a null value)."""
    out = []
    for k, v in zip(extra[0::2], extra[1::2]):
        if k == "-H":
            name, eq, value = v.partition("=")
            out.append((name, value if eq else None))
    return out


def produce_poison_between_good(bootstrap, topic, prefix, partition=0):
    """On one partition: 5 good events, the 3 POISON records, 5 good events. Returns the good
    events and the poison records' offsets."""
    good = events(0, 10, prefix)
    p = ["-p", str(partition)]
    produce_events(bootstrap, good[:5], topic, extra=p)
    for key, value, hdrs in POISON:
        produce(bootstrap, topic, [(key, value)], extra=p + hdrs)
    produce_events(bootstrap, good[5:], topic, extra=p)
    got = consume(bootstrap, topic, 13, timeout=30)
    check(len(got) == 13, "%s holds %d messages, want 13" % (topic, len(got)))
    poison_offsets = [m["offset"] for m in got if m["partition"] == partition][5:8]
    check(poison_offsets == [5, 6, 7], "the poison records are at offsets %s" % poison_offsets)
    return good, poison_offsets


def test_poison_records_go_to_the_dead_letter_topic_with_their_headers(d):
    """dead_letter_topic: 3 poison records (not JSON with headers; non-UTF-8 bytes with a null
    key; JSON that is not an event, with a repeated header and one without value) between 5 and
    5 good events on partition 0 (and 5 good ones on partition 1). The dead-letter topic gets
    each poison record once: its value byte for byte, its key (null stays null), its headers
    in their order, plus kmsrouter.error (a message), kmsrouter.topic, kmsrouter.partition and
    kmsrouter.offset (its offset, decimal). The 15 good events are delivered once each (those
    after the poison on the same partition too), the committed offsets reach the end, exit 0."""
    with KafkaMock(MOCK, brokers=1, topics={TOPIC: 2, TOPIC + ".dlq": 1}) as k:
        good, poison_offsets = produce_poison_between_good(k.bootstrap, TOPIC, "good")
        more = events(100, 5, "good")
        produce_events(k.bootstrap, more, extra=["-p", "1"])
        out = os.path.join(d, "out.jsonl")
        r = Router(d, simple(kafka_source(k.bootstrap, dead_letter_topic=TOPIC + ".dlq")))
        dlq = []

        def dead_letters():
            dlq[:] = consume(k.bootstrap, TOPIC + ".dlq", 10, timeout=10)
            return len(dlq) >= 3
        wait_for(lambda: lines(out) >= 15, 30, "15 deliveries", [r], 0.1)
        wait_for(dead_letters, 30, "3 records in the dead-letter topic", [r], 0.2)
        wait_committed_to_end(k.bootstrap, "kmsrouter", [r])
        rc = r.stop()
        check(rc == 0, "exit status %d:\n    %s" % (rc, r.tail()))
        once_each(ids_of(out), [e["id"] for e in good + more], "log sink")
        dlq = consume(k.bootstrap, TOPIC + ".dlq", 10, timeout=10)
        check(len(dlq) == 3, "the dead-letter topic holds %d records, want 3" % len(dlq))
        for (key, value, hdrs), off, m in zip(POISON, poison_offsets, dlq):
            label = "dead letter of offset %d" % off
            payload = m["payload"].encode("utf-8", "surrogateescape") if m["payload"] else b""
            check(payload == value, "%s: value %r, want %r" % (label, payload[:80], value))
            check(m["key"] == key, "%s: key %r, want %r" % (label, m["key"], key))
            own = [h for h in m["headers"] if not h[0].startswith("kmsrouter.")]
            check(own == kcat_headers(hdrs), "%s: original headers %s, want %s"
                  % (label, own, kcat_headers(hdrs)))
            ours = [h for h in m["headers"] if h[0].startswith("kmsrouter.")]
            names = sorted(h[0] for h in ours)
            check(names == ["kmsrouter.error", "kmsrouter.offset", "kmsrouter.partition",
                            "kmsrouter.topic"], "%s: kmsrouter headers %s" % (label, ours))
            h = dict(ours)
            check(h["kmsrouter.topic"] == TOPIC and h["kmsrouter.partition"] == "0" and
                  h["kmsrouter.offset"] == str(off) and h["kmsrouter.error"],
                  "%s: kmsrouter headers %s" % (label, ours))
        note("error messages: %s" % [dict(m["headers"]).get("kmsrouter.error") for m in dlq])


def test_poison_records_go_to_the_dead_letter_sink_or_are_counted_and_skipped(d):
    """Two kafka sources in one router, each a topic with 3 poison records between good events
    (as in the dead-letter topic case). Source "dl" has dead_letter (a log sink): each poison
    record is there once as {record, error_message, source "dl", kmsrouter.kafka {topic,
    partition 0, offset, key, headers}} (the record's text for the UTF-8 ones). Source "plain"
    has neither dead letter: its poison records are counted invalid
    (kmsrouter_records_invalid_total 3) and acknowledged. Both topics' good events are delivered
    once each, both groups' committed offsets reach the end, the summary counts 6 invalid
    records of which 3 dead-lettered, exit 0."""
    with KafkaMock(MOCK, brokers=1, topics={"t-dl": 1, "t-plain": 1}) as k:
        good_dl, offs_dl = produce_poison_between_good(k.bootstrap, "t-dl", "dl")
        good_plain, _ = produce_poison_between_good(k.bootstrap, "t-plain", "plain")
        port = free_port()
        out, dlq_path = os.path.join(d, "out.jsonl"), os.path.join(d, "dlq.jsonl")
        r = Router(d, config(
            [kafka_source(k.bootstrap, "g-dl", ["t-dl"], "dl", dead_letter="dlq"),
             kafka_source(k.bootstrap, "g-plain", ["t-plain"], "plain")],
            [log_sink("out", "out.jsonl"), log_sink("dlq", "dlq.jsonl")],
            [{"name": "kms", "pattern": KMS, "targets": ["out"]}],
            metrics={"listen": "127.0.0.1:%d" % port}))
        wait_for(lambda: lines(out) >= 20 and lines(dlq_path) >= 3, 30,
                 "20 deliveries and 3 dead letters", [r], 0.1)
        wait_committed_to_end(k.bootstrap, "g-dl", [r], "t-dl")
        wait_committed_to_end(k.bootstrap, "g-plain", [r], "t-plain")
        check(metric(port, "kmsrouter_records_invalid_total", source="plain") == 3,
              "kmsrouter_records_invalid_total{source=\"plain\"} %s, want 3"
              % metric(port, "kmsrouter_records_invalid_total", source="plain"))
        rc = r.stop()
        check(rc == 0, "exit status %d:\n    %s" % (rc, r.tail()))
        once_each(ids_of(out), [e["id"] for e in good_dl + good_plain], "log sink")
        dl = read_jsonl(dlq_path)
        check(len(dl) == 3, "%d dead letters, want the 3 of source dl: %s" % (len(dl), dl))
        for (key, value, hdrs), off, x in zip(POISON, offs_dl, sorted(
                dl, key=lambda x: x.get("kmsrouter", {}).get("kafka", {}).get("offset", -1))):
            label = "dead letter of offset %d" % off
            meta = x.get("kmsrouter", {}).get("kafka", {})
            check(x.get("source") == "dl" and x.get("error_message"), "%s: %s" % (label, x))
            if value.startswith(b"{"):
                check(x.get("record") == value.decode(), "%s: record %r, want %r"
                      % (label, x.get("record"), value))
            want_h = {}
            for name, v in kcat_headers(hdrs):
                want_h[name] = [want_h[name], v] if name in want_h else v
            check((meta.get("topic"), meta.get("partition"), meta.get("offset"), meta.get("key"),
                   meta.get("headers") or {}) == ("t-dl", 0, off, key, want_h),
                  "%s: kmsrouter.kafka %s, want topic t-dl, partition 0, offset %d, key %r, "
                  "headers %s" % (label, meta, off, key, want_h))
            check(isinstance(meta.get("timestamp"), int), "%s: timestamp %r"
                  % (label, meta.get("timestamp")))
        s = r.summary()
        check((s["events"], s["invalid"], s["invalid_dead_lettered"], s["delivered"],
               s["unacked"]) == (20, 6, 3, 20, 0), "summary: %s" % s)


def test_rules_match_headers_key_partition_offset_and_topic(d):
    """topics ["^kms-(events|audit)$"] (a regex subscription) over kms-events (3 partitions) and
    kms-audit: events with header tenant=a, with tenant=b plus a repeated header dup=v1,v2 and a
    header flag without value, with the key "special", with a null key on partition 2, and on
    kms-audit. Rules on kmsrouter.kafka route them: headers.tenant ["a"], headers.dup ["v2"] (one
    value of a repeated header), headers.flag [null], key ["special"], key [null], partition [2]
    of kms-events, topic ["kms-audit"], offset < 5 on partition 0 of kms-events. Each sink holds
    exactly the events whose metadata (read back with kcat) matches its rule, once; the
    catch-all sink holds every event once, as produced."""
    with KafkaMock(MOCK, brokers=1, topics={TOPIC: 3, "kms-audit": 1}) as k:
        b = k.bootstrap
        t_a, t_b, special = events(0, 20, "ta"), events(0, 20, "tb"), events(0, 5, "sp")
        p2, audit = events(0, 10, "p2"), events(0, 5, "au")
        produce_events(b, t_a, extra=["-H", "tenant=a"])
        produce_events(b, t_b, extra=["-H", "tenant=b", "-H", "dup=v1", "-H", "dup=v2",
                                      "-H", "flag"])
        produce_events(b, special, key="special")
        produce_events(b, p2, key=None, extra=["-p", "2"])
        produce_events(b, audit, "kms-audit")
        meta = {}
        for topic, n in ((TOPIC, 55), ("kms-audit", 5)):
            got = consume(b, topic, n, timeout=30)
            check(len(got) == n, "%s holds %d messages, want %d" % (topic, len(got), n))
            for m in got:
                meta[json.loads(m["payload"])["id"]] = dict(m, topic=topic,
                                                            headers=dict(m["headers"]))
        kafka = lambda **x: {"kmsrouter": {"kafka": x}}  # noqa: E731
        rules = {
            "tenant_a": (kafka(headers={"tenant": ["a"]}),
                         lambda m: m["headers"].get("tenant") == "a"),
            "dup_v2": (kafka(headers={"dup": ["v2"]}), lambda m: "dup" in m["headers"]),
            "flag_null": (kafka(headers={"flag": [None]}), lambda m: "flag" in m["headers"]),
            "special": (kafka(key=["special"]), lambda m: m["key"] == "special"),
            "null_key": (kafka(key=[None]), lambda m: m["key"] is None),
            "p2": (kafka(topic=[TOPIC], partition=[2]),
                   lambda m: m["topic"] == TOPIC and m["partition"] == 2),
            "audit": (kafka(topic=["kms-audit"]), lambda m: m["topic"] == "kms-audit"),
            "early": (kafka(topic=[TOPIC], partition=[0], offset=[{"numeric": ["<", 5]}]),
                      lambda m: m["topic"] == TOPIC and m["partition"] == 0 and m["offset"] < 5),
        }
        sinks = [log_sink("all", "all.jsonl")] + [log_sink(n, n + ".jsonl") for n in rules]
        cfg = config(kafka_source(b, topics=["^kms-(events|audit)$"]), sinks,
                     [{"name": "all", "pattern": KMS, "targets": ["all"]}] +
                     [{"name": n, "pattern": p, "targets": [n]} for n, (p, _) in rules.items()])
        r = Router(d, cfg)
        wait_for(lambda: lines(os.path.join(d, "all.jsonl")) >= 60, 30, "60 deliveries", [r], 0.1)
        wait_committed_to_end(b, "kmsrouter", [r])
        wait_committed_to_end(b, "kmsrouter", [r], "kms-audit")
        rc = r.stop()
        check(rc == 0, "exit status %d:\n    %s" % (rc, r.tail()))
        sent = {e["id"]: e for e in t_a + t_b + special + p2 + audit}
        got = read_jsonl(os.path.join(d, "all.jsonl"))
        once_each([e["id"] for e in got], list(sent), "all")
        bad = [e["id"] for e in got if e != sent[e["id"]]]
        check(not bad, "%d delivered events differ from the ones produced, e.g. %s"
              % (len(bad), bad[:2]))
        for n, (_, pred) in rules.items():
            want = [i for i, m in meta.items() if pred(m)]
            check(want, "rule %s: no event should match it, the case proves nothing" % n)
            once_each(ids_of(os.path.join(d, n + ".jsonl")), want, "rule %s" % n)


def test_restart_resumes_at_the_committed_offsets_and_latest_skips_the_backlog(d):
    """100 events, a router (group g1) delivers them and stops on SIGTERM (exit 0, committed at
    the end); 50 more are produced while no router runs. Then, together, the same group g1
    restarts and a new group g2 starts with start "latest". Probe events are produced on each
    of the 3 partitions until g2 delivers one from each (g2 has joined and found its starting
    points), then 30 more. g1's second run delivers the 50, the probes and the 30, each once,
    and none of the first 100 (which its first run delivered once each); g2 delivers the 30 and
    none of the 150 produced before it started (only probes besides). Both exit 0 with their
    committed offsets at the end."""
    with KafkaMock(MOCK, brokers=1, topics={TOPIC: 3}) as k:
        b = k.bootstrap
        first, backlog, after = events(0, 100, "a"), events(0, 50, "b"), events(0, 30, "c")
        produce_events(b, first)
        out1 = os.path.join(d, "run1.jsonl")
        r1 = Router(d, simple(kafka_source(b, group="g1"), out="run1.jsonl"), "run1")
        wait_for(lambda: lines(out1) >= 100, 30, "100 deliveries", [r1], 0.1)
        wait_committed_to_end(b, "g1", [r1])
        rc = r1.stop()
        check(rc == 0, "run1: exit status %d:\n    %s" % (rc, r1.tail()))
        once_each(ids_of(out1), [e["id"] for e in first], "run1")
        check(at_end(offsets(b, "g1")), "after run1: committed/high %s" % show(offsets(b, "g1")))
        produce_events(b, backlog)
        out2, out3 = os.path.join(d, "run2.jsonl"), os.path.join(d, "latest.jsonl")
        r2 = Router(d, simple(kafka_source(b, group="g1"), out="run2.jsonl"), "run2")
        r3 = Router(d, simple(kafka_source(b, group="g2", start="latest"), out="latest.jsonl"),
                    "latest")
        probes, n = [], 0
        t0 = time.monotonic()
        while True:
            got = set(ids_of(out3))
            if all(any(i in got for i in ids) for ids in probe_parts(probes)):
                break
            check(time.monotonic() - t0 < 40, "g2 delivered probes of only %d partitions in 40 s"
                  % sum(any(i in got for i in ids) for ids in probe_parts(probes)))
            for r in (r2, r3):
                check(r.running(), "%s exited (status %s)" % (r.name, r.p.returncode))
            for p in range(3):
                ev = event(n, "probe")
                produce_events(b, [ev], extra=["-p", str(p)])
                probes.append((p, ev["id"]))
                n += 1
            time.sleep(0.3)
        note("g2 read every partition %.1f s after it started (%d probes)"
             % (time.monotonic() - t0, len(probes)))
        produce_events(b, after)
        probe_ids = [i for _, i in probes]
        want2 = [e["id"] for e in backlog + after] + probe_ids
        wait_for(lambda: set(ids_of(out2)) >= set(want2) and
                 set(ids_of(out3)) >= {e["id"] for e in after}, 30,
                 "g1 to deliver the 50, the probes and the 30, g2 the 30", [r2, r3], 0.1)
        wait_committed_to_end(b, "g1", [r2, r3])
        wait_committed_to_end(b, "g2", [r2, r3])
        rc2, rc3 = r2.stop(), r3.stop()
        check(rc2 == 0, "run2: exit status %d:\n    %s" % (rc2, r2.tail()))
        check(rc3 == 0, "latest: exit status %d:\n    %s" % (rc3, r3.tail()))
        once_each(ids_of(out2), want2, "g1's second run")
        got3 = ids_of(out3)
        old = [i for i in got3 if i in {e["id"] for e in first + backlog}]
        check(not old, "g2 (start latest) delivered %d events produced before it started, e.g. "
              "%s" % (len(old), old[:3]))
        once_each([i for i in got3 if not i.startswith("probe-")], [e["id"] for e in after],
                  "g2 (start latest)")
        check(len(got3) == len(set(got3)), "g2 delivered an event twice")


def probe_parts(probes):
    """The probe ids of each of the 3 partitions (empty lists before any probe)."""
    return [[i for p, i in probes if p == q] for q in range(3)] if probes else [[], [], []]


def test_check_rejects_bad_options_at_their_place(d):
    """check: a valid kafka source passes (exit 0); without group_id, with an unknown librdkafka
    property, with enable.auto.commit or group.id in properties (the source sets them itself),
    with a secret property whose variable is unset, with start "middle", with
    commit_interval_ms "soon" and with no topics, it exits 2 with FILE:LINE:COL, the option's
    path under $.sources[0] and the option's name. The secret's value is never in the output."""
    secret = "s3cr3t-Kafka-Value-42"
    env = dict(os.environ, KR_KAFKA_SECRET=secret)
    env.pop("KR_KAFKA_UNSET_VAR", None)
    path = os.path.join(d, "kr.json")

    def check_cfg(src):
        with open(path, "w") as f:
            json.dump(simple(src), f, indent=1)
        p = subprocess.run([KR, "check", "-c", path], cwd=d, env=env, capture_output=True,
                           text=True, timeout=30)
        return p.returncode, p.stdout + p.stderr

    good = kafka_source("127.0.0.1:9", secret_properties={"sasl.password": "KR_KAFKA_SECRET"},
                        dead_letter_topic="kms-events.dlq", revoke_timeout_ms=10000)
    rc, out = check_cfg(good)
    check(rc == 0, "a valid kafka source: check exit %d:\n%s" % (rc, out))
    check(secret not in out, "the secret is in check's output")
    no_group = kafka_source("127.0.0.1:9")
    del no_group["group_id"]
    cases = [(no_group, "group_id"),
             (kafka_source("127.0.0.1:9", properties={"no.such.property": "1"}),
              "no.such.property"),
             (kafka_source("127.0.0.1:9", properties={"enable.auto.commit": "true"}),
              "enable.auto.commit"),
             (kafka_source("127.0.0.1:9", properties={"group.id": "other"}), "group.id"),
             (kafka_source("127.0.0.1:9", secret_properties={"sasl.password":
                                                             "KR_KAFKA_UNSET_VAR"}),
              "KR_KAFKA_UNSET_VAR"),
             (kafka_source("127.0.0.1:9", start="middle"), "start"),
             (kafka_source("127.0.0.1:9", commit_interval_ms="soon"), "commit_interval_ms"),
             (kafka_source("127.0.0.1:9", topics=[]), "topics")]
    for src, want in cases:
        rc, out = check_cfg(src)
        label = {k: v for k, v in src.items() if k not in ("name", "type", "brokers")}
        check(rc == 2, "%s: check exit %d, want 2:\n%s" % (label, rc, out))
        check(want in out and "kr.json:" in out and "$.sources[0]" in out,
              "%s: the error does not name %r at its place (kr.json:LINE:COL: $.sources[0]...): "
              "%s" % (label, want, out))
        check(secret not in out, "%s: the secret is in the output" % label)


def start(kr):
    global MOCK, OFFSETS
    MOCK = kafka_harness.need_kafka(KR)
    OFFSETS = os.path.join(os.path.dirname(MOCK), "kafka-offsets")
    if not os.access(OFFSETS, os.X_OK):
        kafka_harness.missing("kafka-offsets was not built next to %s" % MOCK)


diagnose, finish = router_hooks(ROUTERS)
CASES = [globals()[k] for k in sorted(k for k in globals() if k.startswith("test_"))]


if __name__ == "__main__":
    sys.exit(run_cases(CASES, "kafka source", "kmsrouter-kafka-src-", __doc__, start=start,
                       diagnose=diagnose, finish=finish))
