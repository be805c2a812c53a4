#!/usr/bin/env python3
"""The sqs source against moto_server (real processes on loopback): kmsrouter receives from a
moto queue that boto3 fills and inspects, and delivers to log sinks or to a loopback HTTP server
the test controls.

    python3 tests/integration/sqs_source_test.py PATH_TO_KMSROUTER [name-filter]
    python3 tests/integration/sqs_source_test.py --list

Skips (exit 77) when moto_server or boto3 is missing, unless KR_REQUIRE_MOTO=1. KEEP_TMP=1
keeps each case's folder (configs, sink files, each router's stderr). See README.md
next to this file for what each case proves. Every wait polls a condition with a deadline.
"""
import collections
import copy
import http.server
import json
import os
import random
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from testlib import (Failure, check, sample_events, log_sink, wait_for, lines, note,  # noqa: E402
                     run_cases, router_hooks)
import aws_harness  # noqa: E402
from aws_harness import FaultProxy, Moto, Served  # noqa: E402

KR = os.path.abspath(sys.argv[1]) if len(sys.argv) > 1 and sys.argv[1] != "--list" else None
ACCOUNT = "123456789012"  # moto's
KMS = {"source": ["aws.kms"]}
# retries for sinks the tests make fail for a while: short waits, never given up
PATIENT = {"max_attempts": 10000, "initial_backoff_ms": 100, "max_backoff_ms": 400}


# ---------------------------------------------------------------- events

TEMPLATES = sample_events()
RAW_KINDS = ["kms-cmk-deletion", "kms-cmk-rotation", "kms-cmk-rotation-on-demand",
             "kms-imported-key-material-expiration", "cloudtrail-decrypt-pending-deletion"]


def event(i, prefix="ev", **detail):
    """A sample event of one of the raw shapes (tests/data/events), with its own id."""
    ev = copy.deepcopy(TEMPLATES[RAW_KINDS[i % len(RAW_KINDS)]])
    ev["id"] = "%s-%05d" % (prefix, i)
    ev["detail"].update(detail)
    return ev


def sns_envelope(ev):
    """ev as an SNS notification (a subscription without raw message delivery), shaped as
    tests/data/events/sns-envelope-kms-cmk-deletion.json."""
    env = copy.deepcopy(TEMPLATES["sns-envelope-kms-cmk-deletion"])
    env["Message"] = json.dumps(ev, separators=(",", ":"))
    env["MessageId"] = "sns-" + ev["id"]
    return env


# ---------------------------------------------------------------- queues

def send_bodies(sqs, url, bodies, fifo_groups=None):
    """Sends each body as one message (SendMessageBatch, 10 a request); fifo_groups: the group
    id of each body. Returns the message ids in the order of bodies."""
    ids = []
    for start in range(0, len(bodies), 10):
        entries = []
        for k, body in enumerate(bodies[start:start + 10]):
            e = {"Id": str(k), "MessageBody": body}
            if fifo_groups is not None:
                e["MessageGroupId"] = fifo_groups[start + k]
                e["MessageDeduplicationId"] = "d-%d" % (start + k)
            entries.append(e)
        r = sqs.send_message_batch(QueueUrl=url, Entries=entries)
        check(not r.get("Failed"), "SendMessageBatch failed: %s" % r.get("Failed"))
        by_id = {x["Id"]: x["MessageId"] for x in r["Successful"]}
        ids += [by_id[str(k)] for k in range(len(entries))]
    return ids


def send_paced(sqs, url, bodies, routers, backlog=40):
    """send_bodies, 10 at a time, each time once no more than backlog messages wait visible in
    the queue: moto 5.2.1's ReceiveMessage costs O(messages in the queue) per message received
    (0.5 s for 10 out of 940), so a queue kept short keeps the tests short."""
    ids = []
    for start in range(0, len(bodies), 10):
        wait_for(lambda: counts(sqs, url)[0] <= backlog, 60,
                 "the queue's backlog to fall to %d" % backlog, routers, 0.02)
        ids += send_bodies(sqs, url, bodies[start:start + 10])
    return ids


def counts(sqs, url):
    """(visible, not visible) messages of the queue, as GetQueueAttributes says."""
    a = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=[
        "ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"])["Attributes"]
    return int(a["ApproximateNumberOfMessages"]), int(a["ApproximateNumberOfMessagesNotVisible"])


def drain(sqs, url, expect):
    """Receives (and deletes) every message of the queue: up to expect, or until it stays empty."""
    got, empty = [], 0
    while len(got) < expect and empty < 3:
        msgs = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=0,
                                   MessageSystemAttributeNames=["All"]).get("Messages", [])
        empty = 0 if msgs else empty + 1
        got += msgs
        if msgs:
            sqs.delete_message_batch(QueueUrl=url, Entries=[
                {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(msgs)])
    return got


def source(endpoint, url, **kw):
    """An sqs source "q" of url through endpoint (a Moto or a WireLog)."""
    return dict({"name": "q", "type": "sqs", "queue_url": url, "region": aws_harness.REGION,
                 "endpoint": endpoint.url, "wait_time_seconds": 1}, **kw)


class WireLog:
    """A transparent TCP relay in front of moto that keeps every answer moto sent, to count how
    many times moto handed out each message. moto 5.2.1 sometimes hands one message to two
    ReceiveMessage calls that it serves at once (nothing serialises them; SQS never does this
    within the visibility timeout): such a message is rightly delivered twice, and the checks
    of exactly once count deliveries against what moto handed out. The relay changes nothing
    on the wire (moto still closes each connection after its answer)."""

    def __init__(self, target_port):
        self.target = target_port
        self.lock = threading.Lock()
        self.answers = []  # bytearray per connection: what moto sent back
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.url = "http://127.0.0.1:%d" % self.sock.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            try:
                u = socket.create_connection(("127.0.0.1", self.target))
            except OSError:
                c.close()
                continue
            buf = bytearray()
            with self.lock:
                self.answers.append(buf)
            threading.Thread(target=self._pipe, args=(c, u, None), daemon=True).start()
            threading.Thread(target=self._pipe, args=(u, c, buf), daemon=True).start()

    def _pipe(self, a, b, keep):
        try:
            while True:
                data = a.recv(65536)
                if not data:
                    break
                if keep is not None:
                    with self.lock:
                        keep += data
                b.sendall(data)
        except OSError:
            pass
        for x, how in ((b, socket.SHUT_WR), (a, socket.SHUT_RD)):
            try:
                x.shutdown(how)
            except OSError:
                pass

    def handed_out(self):
        """How many ReceiveMessage answers held each MessageId."""
        c = collections.Counter()
        with self.lock:
            answers = [bytes(b) for b in self.answers]
        for data in answers:
            while data:
                head, sep, rest = data.partition(b"\r\n\r\n")
                m = re.search(rb"(?im)^content-length:\s*(\d+)", head)
                if not sep or not m or len(rest) < int(m.group(1)):
                    break
                body, data = rest[:int(m.group(1))], rest[int(m.group(1)):]
                if b'"Messages"' in body:
                    c.update(x["MessageId"] for x in json.loads(body).get("Messages", []))
        return c

    def stop(self):
        self.sock.close()


def ids_in(body):
    """The event ids a message body holds (an event, an SNS notification, an array of events,
    or events one a line)."""
    try:
        docs = [json.loads(body)]
    except ValueError:
        docs = [json.loads(x) for x in body.splitlines() if x.strip()]
    out = []
    for doc in docs:
        for ev in doc if isinstance(doc, list) else [doc]:
            if ev.get("Type") == "Notification":
                ev = json.loads(ev["Message"])
            out.append(ev["id"])
    return out


def as_handed_out(got_ids, wire, events_of, label):
    """Each event of events_of (MessageId: event ids) delivered exactly as many times as moto
    handed its message to the router (once, unless moto handed it out twice), nothing else.
    Returns how many more events that made (0 when moto handed out each message once)."""
    handed = wire.handed_out()
    want = collections.Counter()
    for mid, ids in events_of.items():
        for i in ids:
            want[i] += handed.get(mid, 0)
    got = collections.Counter(got_ids)
    never = [i for ids in events_of.values() for i in ids if not want[i]]
    check(not never, "%s: moto never handed out %d events, e.g. %s" % (label, len(never),
                                                                        never[:3]))
    diff = {i: (got.get(i, 0), want.get(i, 0)) for i in set(got) | set(want)
            if got.get(i, 0) != want.get(i, 0)}
    check(not diff, "%s: %d events delivered a number of times other than moto handed out "
          "their message (id: (delivered, handed out)), e.g. %s" % (label, len(diff),
                                                                     sorted(diff.items())[:4]))
    twice = {mid: n for mid, n in handed.items() if mid in events_of and n > 1}
    if twice:
        note("%s: moto handed out %d message(s) more than once; each copy was delivered"
             % (label, len(twice)))
    return sum((n - 1) * len(events_of[mid]) for mid, n in twice.items())


def config(src, sinks, rules, **top):
    return dict({"sources": [src], "sinks": sinks, "rules": rules}, **top)


# ---------------------------------------------------------------- processes and files

ROUTERS = []  # every kmsrouter a test started, for its diagnostics and its cleanup


def base_env(d, akid="testing", secret="testing"):
    env = dict(os.environ)
    for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE",
              "AWS_REGION", "AWS_DEFAULT_REGION", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_SQS",
              "AWS_ROLE_ARN", "AWS_WEB_IDENTITY_TOKEN_FILE"):
        env.pop(k, None)
    env["AWS_SHARED_CREDENTIALS_FILE"] = os.path.join(d, "no-credentials")
    env["AWS_CONFIG_FILE"] = os.path.join(d, "no-config")
    env["AWS_EC2_METADATA_DISABLED"] = "true"
    env["AWS_ACCESS_KEY_ID"] = akid
    env["AWS_SECRET_ACCESS_KEY"] = secret
    return env


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
                                      env=env or base_env(d), stdin=subprocess.DEVNULL,
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
            raise Failure("%s still running %d s after SIGTERM" % (self.name, timeout))

    def kill9(self):
        self.p.kill()
        self.p.wait(10)

    def summary(self):
        m = re.search(r"^kmsrouter: (\d+) records read \((\d+) events, (\d+) invalid\).*?"
                      r"(\d+) deliveries succeeded, (\d+) deliveries dead-lettered, "
                      r"(\d+) invalid records dead-lettered, (\d+) records left unacknowledged",
                      self.stderr(), re.M)
        check(m, "%s: no summary line on stderr" % self.name)
        keys = ("records", "events", "invalid", "delivered", "dead_lettered",
                "invalid_dead_lettered", "unacked")
        return dict(zip(keys, map(int, m.groups())))


def read_jsonl(path, allow_cut=False):
    """The JSON lines of a sink's file ([] when it does not exist). allow_cut: a last line that a
    kill -9 cut short is dropped (returned as the second value)."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        return ([], b"") if allow_cut else []
    cut = b""
    if data and not data.endswith(b"\n"):
        check(allow_cut, "%s: the last line is not terminated: %r" % (path, data[-100:]))
        data, _, cut = data.rpartition(b"\n")
        data += b"\n" if data else b""
    out = [json.loads(line) for line in data.decode().splitlines() if line.strip()]
    return (out, cut) if allow_cut else out


def once_each(got_ids, want_ids, label):
    """Every id of want_ids exactly once in got_ids, nothing else."""
    c = collections.Counter(got_ids)
    missing = [i for i in want_ids if i not in c]
    extra = [i for i in c if i not in set(want_ids)]
    dups = {i: n for i, n in c.items() if n > 1}
    check(not missing and not extra and not dups,
          "%s: %d delivered for %d sent; %d missing (e.g. %s), %d unexpected (e.g. %s), %d "
          "delivered more than once (e.g. %s)" % (label, len(got_ids), len(want_ids),
                                                   len(missing), missing[:3], len(extra),
                                                   extra[:3], len(dups), list(dups.items())[:3]))


def metric(port, name, **labels):
    """One sample of the router's /metrics (None when absent)."""
    with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % port, timeout=2) as r:
        text = r.read().decode()
    want = name + ("{%s}" % ",".join('%s="%s"' % kv for kv in labels.items()) if labels else "")
    for line in text.splitlines():
        if line.startswith(want + " "):
            return float(line.split()[-1])
    return None


class Recorder:
    """A loopback HTTP endpoint for an http sink: answer(body) gives the status (after the
    handler's own delay); .ok keeps each body answered 200, in the order the answers went."""

    def __init__(self, answer, delay=lambda body: 0):
        self.lock = threading.Lock()
        self.ok, self.failed = [], 0
        outer = self

        class H(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                d = delay(body)
                if d:
                    time.sleep(d)  # the endpoint's own latency, not a wait of the test
                status = answer(body)
                with outer.lock:
                    if status == 200:
                        outer.ok.append(json.loads(body))
                    else:
                        outer.failed += 1
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *a):
                pass

        self.served = Served(H)
        self.url = self.served.url + "/events"

    def oks(self):
        with self.lock:
            return list(self.ok)

    def stop(self):
        self.served.stop()


# ---------------------------------------------------------------- tests

def test_every_event_delivered_once_raw_sns_and_batched_bodies_then_queue_empty(d):
    """1,000 events: 500 as SNS notifications, 400 raw, 60 in arrays of 3 and 40 as two
    concatenated events per body, in 940 messages: each delivered exactly once, as sent; the
    queue empty after SIGTERM; exit 0 and a summary that counts them."""
    m = Moto()
    w = WireLog(m.port)
    try:
        sqs = m.client("sqs")
        url = sqs.create_queue(QueueName="kms")["QueueUrl"]
        evs = [event(i) for i in range(1000)]
        bodies = [json.dumps(sns_envelope(e)) for e in evs[0::2]]
        odd = evs[1::2]
        bodies += [json.dumps(odd[k:k + 3]) for k in range(0, 60, 3)]
        bodies += [json.dumps(odd[k]) + "\n" + json.dumps(odd[k + 1]) for k in range(60, 100, 2)]
        bodies += [json.dumps(e) for e in odd[100:]]
        random.Random(1).shuffle(bodies)
        r = Router(d, config(source(w, url), [log_sink("out", "out.jsonl")],
                             [{"name": "kms", "pattern": KMS, "targets": ["out"]}]))
        t0 = time.monotonic()
        mids = send_paced(sqs, url, bodies, [r])
        note("sent %d messages in %.1f s" % (len(bodies), time.monotonic() - t0))
        wait_for(lambda: lines(os.path.join(d, "out.jsonl")) >= 1000, 90,
                 "1,000 deliveries", [r])
        note("1,000 events delivered %.1f s after the first was sent" % (time.monotonic() - t0))
        rc = r.stop()
        check(rc == 0, "exit status %d" % rc)
        got = read_jsonl(os.path.join(d, "out.jsonl"))
        extra = as_handed_out([e["id"] for e in got], w, dict(zip(mids, map(ids_in, bodies))),
                              "out")
        by_id = {e["id"]: e for e in evs}
        bad = [e["id"] for e in got if e != by_id[e["id"]]]
        check(not bad, "%d payloads differ from the events sent, e.g. %s" % (len(bad), bad[:2]))
        s = r.summary()
        check((s["events"], s["invalid"], s["delivered"], s["unacked"]) ==
              (1000 + extra, 0, 1000 + extra, 0), "summary: %s" % s)
        check(counts(sqs, url) == (0, 0), "left in the queue (visible, not visible): %s"
              % (counts(sqs, url),))
    finally:
        w.stop()
        m.stop()


def test_heartbeats_hold_messages_while_the_sink_fails_longer_than_the_visibility(d):
    """visibility_timeout 2 and an http sink that answers 503 for 6 s, then 200: the messages
    stay invisible the whole time (heartbeats), each is delivered successfully exactly once,
    then deleted. The lag metric shows the age of the oldest message held, and 0 at the end."""
    m = Moto()
    w = WireLog(m.port)
    fail_until = []

    def answer(body):
        if not fail_until:
            fail_until.append(time.monotonic() + 6)
        return 503 if time.monotonic() < fail_until[0] else 200

    srv = Recorder(answer)
    try:
        sqs = m.client("sqs")
        url = sqs.create_queue(QueueName="kms")["QueueUrl"]
        evs = [event(i) for i in range(20)]
        mids = send_bodies(sqs, url, [json.dumps(e) for e in evs])
        port = aws_harness.free_port()
        r = Router(d, config(source(w, url, visibility_timeout=2),
                             [{"name": "api", "type": "http", "url": srv.url, "retry": PATIENT}],
                             [{"name": "kms", "pattern": KMS, "targets": ["api"]}],
                             metrics={"listen": "127.0.0.1:%d" % port}))
        wait_for(lambda: counts(sqs, url) == (0, 20), 15, "all 20 messages received", [r])
        # the failing starts with the sink's first answer, which may come after the receives
        wait_for(lambda: srv.failed > 0, 15, "the sink's first failed answer", [r])
        # while the sink fails (3 visibility timeouts), nothing becomes visible again
        seen_visible, max_lag = 0, 0.0
        while fail_until and time.monotonic() < fail_until[0] - 0.3:
            seen_visible = max(seen_visible, counts(sqs, url)[0])
            max_lag = max(max_lag, metric(port, "kmsrouter_source_lag_seconds", source="q") or 0)
            time.sleep(0.1)
        check(srv.failed > 0, "the sink was never tried")
        check(seen_visible == 0, "%d messages became visible again while the sink failed "
              "(heartbeats did not keep them)" % seen_visible)
        wait_for(lambda: len({e["id"] for e in srv.oks()}) >= 20, 30,
                 "20 successful deliveries", [r])
        wait_for(lambda: counts(sqs, url) == (0, 0), 15, "the queue to be empty", [r])
        wait_for(lambda: metric(port, "kmsrouter_source_lag_seconds", source="q") == 0, 5,
                 "kmsrouter_source_lag_seconds 0 once nothing is held", [r])
        rc = r.stop()
        as_handed_out([e["id"] for e in srv.oks()], w,
                      {mid: [e["id"]] for mid, e in zip(mids, evs)}, "successful deliveries")
        check(max_lag >= 4, "kmsrouter_source_lag_seconds reached only %.1f while 20 messages "
              "were held for 6 s" % max_lag)
        check(rc == 0, "exit status %d" % rc)
        note("%d answers 503; lag up to %.1f s" % (srv.failed, max_lag))
    finally:
        srv.stop()
        w.stop()
        m.stop()


def test_kill_9_mid_stream_then_restart_loses_nothing(d):
    """300 events, visibility_timeout 2: the first run is killed with SIGKILL after some were
    delivered, the same config run again: every event delivered at least once across both runs,
    the queue empty, exit 0. Duplicates (delivered but not deleted before the kill) are
    counted."""
    m = Moto()
    try:
        sqs = m.client("sqs")
        url = sqs.create_queue(QueueName="kms")["QueueUrl"]
        evs = [event(i) for i in range(300)]
        send_bodies(sqs, url, [json.dumps(e) for e in evs])
        cfg = config(source(m, url, visibility_timeout=2, max_messages=2, concurrency=1),
                     [log_sink("out", "out.jsonl")],
                     [{"name": "kms", "pattern": KMS, "targets": ["out"]}])
        out = os.path.join(d, "out.jsonl")
        r1 = Router(d, cfg, "run1")
        wait_for(lambda: lines(out) >= 60, 30, "60 deliveries", [r1], interval=0.01)
        r1.kill9()
        first, cut = read_jsonl(out, allow_cut=True)
        os.rename(out, os.path.join(d, "run1.jsonl"))
        check(len(first) < 300, "the first run delivered all %d before the kill" % len(first))
        r2 = Router(d, cfg, "run2")
        want = {e["id"] for e in evs}
        seen = lambda: {e["id"] for e in first} | {e["id"] for e in read_jsonl(out)}  # noqa
        wait_for(lambda: seen() >= want and counts(sqs, url) == (0, 0), 60,
                 "every event delivered and the queue empty", [r2])
        rc = r2.stop()
        second = read_jsonl(out)
        both = [e["id"] for e in first + second]
        missing = want - set(both)
        check(not missing, "%d events never delivered, e.g. %s" % (len(missing),
                                                                   sorted(missing)[:3]))
        check(set(both) <= want, "unexpected ids: %s" % (set(both) - want))
        check(rc == 0, "second run: exit status %d" % rc)
        dups = len(both) - len(want)
        note("first run: %d delivered before SIGKILL%s; second run: %d; %d delivered twice "
             "(delivered by the first run but not yet deleted when it was killed)"
             % (len(first), " (and one line cut)" if cut else "", len(second), dups))
    finally:
        m.stop()


POISON_TYPES = {"version": "0", "id": "poison-types", "detail-type": 5, "source": "aws.kms",
                "account": "111122223333", "time": "2024-03-01T12:00:00Z",
                "region": "us-west-2", "resources": [], "detail": {}}


def poison_bodies():
    """Message bodies that cannot be parsed: not JSON, over 256 KiB (a valid event padded to
    300 KiB), a detail-type that is not a string."""
    big = event(0, "poison-big", padding="x" * (300 * 1024))
    return ["{not json at all", json.dumps(big), json.dumps(POISON_TYPES)]


def test_poison_messages_left_go_to_the_queue_dlq_by_redrive(d):
    """on_invalid leave, invalid_backoff_seconds 1, a queue whose redrive policy sends a message
    to its DLQ after 2 receives: the 3 poison messages (bad JSON, 300 KiB, detail-type 5) end up
    in the DLQ with their bodies intact, the 10 good ones are delivered once, the main queue is
    empty. The poison records count as failed: exit 1."""
    m = Moto()
    w = WireLog(m.port)
    try:
        sqs = m.client("sqs")
        dlq_url = sqs.create_queue(QueueName="kms-dlq")["QueueUrl"]
        dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])[
            "Attributes"]["QueueArn"]
        url = sqs.create_queue(QueueName="kms", Attributes={"RedrivePolicy": json.dumps(
            {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": "2"})})["QueueUrl"]
        good = [event(i) for i in range(10)]
        poison = poison_bodies()
        bodies = [json.dumps(e) for e in good[:5]] + poison + [json.dumps(e) for e in good[5:]]
        mids = send_bodies(sqs, url, bodies)
        r = Router(d, config(source(w, url, visibility_timeout=5, on_invalid="leave",
                                    invalid_backoff_seconds=1),
                             [log_sink("out", "out.jsonl")],
                             [{"name": "kms", "pattern": KMS, "targets": ["out"]}]))
        wait_for(lambda: counts(sqs, dlq_url)[0] == 3 and counts(sqs, url) == (0, 0), 30,
                 "3 messages in the DLQ and the main queue empty", [r])
        rc = r.stop()
        as_handed_out([e["id"] for e in read_jsonl(os.path.join(d, "out.jsonl"))], w,
                      {mid: ids_in(b) for mid, b in zip(mids, bodies) if b not in poison}, "out")
        moved = drain(sqs, dlq_url, 3)
        check(sorted(x["Body"] for x in moved) == sorted(poison),
              "the DLQ holds %d messages whose bodies are not the poison ones (sizes %s)"
              % (len(moved), sorted(len(x["Body"]) for x in moved)))
        err = r.stderr()
        check(err.count('msg="invalid record"') >= 6,
              "each poison message should be reported invalid at each of its 2 receives: %d"
              % err.count('msg="invalid record"'))
        check(rc == 1, "exit status %d (poison records failed with no dead letter: 1)" % rc)
        note("exit %d; %s" % (rc, r.summary()))
    finally:
        w.stop()
        m.stop()


def test_poison_messages_dead_lettered_with_sqs_metadata_and_deleted(d):
    """on_invalid dead_letter with a log sink: the 3 poison messages are written there as the
    invalid-record dead letter ({record, source, position, error_message}) with their
    "kmsrouter": {"sqs": {...}} metadata (MessageId, ApproximateReceiveCount 1, SentTimestamp as
    numbers), and deleted; the good ones delivered; the queue empty; exit 0."""
    m = Moto()
    w = WireLog(m.port)
    try:
        sqs = m.client("sqs")
        url = sqs.create_queue(QueueName="kms")["QueueUrl"]
        good = [event(i) for i in range(10)]
        poison = poison_bodies()
        before_ms = int(time.time() * 1000) - 1000
        ids = send_bodies(sqs, url, poison + [json.dumps(e) for e in good])
        after_ms = int(time.time() * 1000) + 1000
        r = Router(d, config(source(w, url, visibility_timeout=5, on_invalid="dead_letter",
                                    dead_letter="dlq"),
                             [log_sink("out", "out.jsonl"), log_sink("dlq", "dlq.jsonl")],
                             [{"name": "kms", "pattern": KMS, "targets": ["out"]}]))
        wait_for(lambda: lines(os.path.join(d, "dlq.jsonl")) >= 3 and
                 lines(os.path.join(d, "out.jsonl")) >= 10 and counts(sqs, url) == (0, 0), 30,
                 "3 dead letters, 10 deliveries and an empty queue", [r])
        rc = r.stop()
        check(rc == 0, "exit status %d" % rc)
        extra = as_handed_out([e["id"] for e in read_jsonl(os.path.join(d, "out.jsonl"))], w,
                              {mid: [e["id"]] for mid, e in zip(ids[3:], good)}, "out")
        dl = read_jsonl(os.path.join(d, "dlq.jsonl"))
        handed = w.handed_out()
        want_dl = sum(handed[mid] for mid in ids[:3])
        check(len(dl) == want_dl, "%d dead letters for the 3 poison messages, which moto handed "
              "out %d times" % (len(dl), want_dl))
        sqs_meta = lambda x: x.get("kmsrouter", {}).get("sqs", {})  # noqa: E731
        # each message's first dead letter (the one of its first receive)
        by_msg = {sqs_meta(x).get("MessageId"): x for x in
                  sorted(dl, key=lambda x: -sqs_meta(x).get("ApproximateReceiveCount", 0))}
        check(set(by_msg) == set(ids[:3]), "dead letters' MessageIds %s, want the poison "
              "messages' %s" % (sorted(map(str, by_msg)), sorted(ids[:3])))
        for mid, body in zip(ids[:3], poison):
            x = by_msg[mid]
            rec = x.get("record") or ""
            if len(body) > 256 * 1024:  # an oversized record keeps a bounded prefix
                check(x.get("record_truncated") is True and x.get("record_size") == len(body)
                      and rec and body.startswith(rec), "%s: the 300 KiB body's record: %d "
                      "chars, record_size %r, record_truncated %r" % (
                          mid, len(rec), x.get("record_size"), x.get("record_truncated")))
            else:
                check(rec == body and x.get("record_truncated") is False,
                      "%s: record %r, want the body %r" % (mid, rec[:80], body[:80]))
            check(x.get("source") == "q" and str(x.get("position")).startswith(url) and
                  x.get("error_message"), "%s: source, position, error_message: %s"
                  % (mid, {k: v for k, v in x.items() if k != "record"}))
            meta = x["kmsrouter"]["sqs"]
            check(meta.get("ApproximateReceiveCount") == 1, "%s: metadata %s" % (mid, meta))
            check(isinstance(meta.get("SentTimestamp"), int) and
                  before_ms <= meta["SentTimestamp"] <= after_ms, "%s: SentTimestamp %r"
                  % (mid, meta.get("SentTimestamp")))
        check(counts(sqs, url) == (0, 0), "left in the queue: %s" % (counts(sqs, url),))
        s = r.summary()
        check((s["events"], s["invalid"], s["invalid_dead_lettered"], s["unacked"]) ==
              (10 + extra, want_dl, want_dl, 0), "summary: %s" % s)
    finally:
        w.stop()
        m.stop()


def test_two_routers_share_a_queue_and_lose_nothing(d):
    """Two kmsrouter processes on one queue with 2,000 events: every event delivered; the
    duplicates (competing consumers, at-least-once) are counted and printed, not failed on."""
    m = Moto()
    w = WireLog(m.port)
    try:
        sqs = m.client("sqs")
        url = sqs.create_queue(QueueName="kms")["QueueUrl"]
        rules = [{"name": "kms", "pattern": KMS, "targets": ["out"]}]
        ra = Router(d, config(source(w, url), [log_sink("out", "a.jsonl")], rules), "a")
        rb = Router(d, config(source(w, url), [log_sink("out", "b.jsonl")], rules), "b")
        evs = [event(i) for i in range(2000)]
        t0 = time.monotonic()
        mids = send_paced(sqs, url, [json.dumps(e) for e in evs], [ra, rb])
        want = {e["id"] for e in evs}

        def done():
            got = read_jsonl(os.path.join(d, "a.jsonl")) + read_jsonl(os.path.join(d, "b.jsonl"))
            return {e["id"] for e in got} >= want and counts(sqs, url) == (0, 0)

        wait_for(done, 100, "2,000 events delivered and the queue empty", [ra, rb], 0.2)
        note("2,000 events sent and delivered in %.1f s" % (time.monotonic() - t0))
        rca, rcb = ra.stop(), rb.stop()
        a = [e["id"] for e in read_jsonl(os.path.join(d, "a.jsonl"))]
        b = [e["id"] for e in read_jsonl(os.path.join(d, "b.jsonl"))]
        missing = want - set(a) - set(b)
        check(not missing, "%d events lost, e.g. %s" % (len(missing), sorted(missing)[:3]))
        check(rca == 0 and rcb == 0, "exit statuses %d, %d" % (rca, rcb))
        dups = len(a) + len(b) - len(want)
        handed = w.handed_out()
        twice = sum(handed[mid] - 1 for mid in mids if handed[mid] > 1)
        note("router a delivered %d, router b %d; %d duplicates, %d of them messages moto handed "
             "out more than once (two receives it served at once: moto's race, not SQS "
             "behaviour), %d messages received again after their visibility lapsed (delivered "
             "but not deleted in time: at-least-once)" % (len(a), len(b), dups, twice,
                                                         dups - twice))
    finally:
        w.stop()
        m.stop()


def test_fifo_groups_keep_their_order_through_a_concurrent_sink(d):
    """A FIFO queue, 5 groups x 24 messages sent interleaved, an http sink with concurrency 16
    whose endpoint answers each request after a random 0-30 ms: each group's events are answered
    in their sequence order (one message of a group in the pipeline at a time), each once; a rule
    on kmsrouter.sqs.MessageGroupId selects exactly one group."""
    m = Moto()
    rnd = random.Random(7)
    srv = Recorder(lambda body: 200, delay=lambda body: rnd.random() * 0.03)
    try:
        sqs = m.client("sqs")
        url = sqs.create_queue(QueueName="kms.fifo", Attributes={"FifoQueue": "true"})["QueueUrl"]
        evs, groups = [], []
        for seq in range(24):
            for g in range(5):
                evs.append(event(len(evs), "g%d-%02d" % (g, seq), group="g%d" % g, seq=seq))
                groups.append("g%d" % g)
        send_bodies(sqs, url, [json.dumps(e) for e in evs], fifo_groups=groups)
        # one receive in flight: moto 5.2.1 may hand one group's messages to two concurrent
        # ReceiveMessage calls (each checks the groups in flight once, when it starts, and
        # nothing serialises them), which SQS never does; with concurrency 2 that showed up as
        # a group's messages answered out of order or twice
        r = Router(d, config(source(m, url, visibility_timeout=10, concurrency=1),
                             [{"name": "api", "type": "http", "url": srv.url, "concurrency": 16},
                              log_sink("g3", "g3.jsonl")],
                             [{"name": "kms", "pattern": KMS, "targets": ["api"]},
                              {"name": "g3", "targets": ["g3"],
                               "pattern": {"kmsrouter": {"sqs": {"MessageGroupId": ["g3"]}}}}]))
        t0 = time.monotonic()
        wait_for(lambda: len(srv.oks()) >= 120 and counts(sqs, url) == (0, 0), 90,
                 "120 deliveries and an empty queue", [r], 0.1)
        note("120 FIFO messages delivered in %.1f s" % (time.monotonic() - t0))
        rc = r.stop()
        got = srv.oks()
        once_each([e["id"] for e in got], [e["id"] for e in evs], "api")
        for g in range(5):
            seqs = [e["detail"]["seq"] for e in got if e["detail"]["group"] == "g%d" % g]
            check(seqs == list(range(24)), "group g%d answered out of order: %s" % (g, seqs))
        g3 = [e["id"] for e in read_jsonl(os.path.join(d, "g3.jsonl"))]
        once_each(g3, [e["id"] for e in evs if e["detail"]["group"] == "g3"],
                  "rule on MessageGroupId g3")
        check(rc == 0, "exit status %d" % rc)
    finally:
        srv.stop()
        m.stop()


def iam_user(moto, name, actions, resource):
    iam = moto.client("iam")
    iam.create_user(UserName=name)
    key = iam.create_access_key(UserName=name)["AccessKey"]
    iam.put_user_policy(UserName=name, PolicyName="least-privilege", PolicyDocument=json.dumps(
        {"Version": "2012-10-17",
         "Statement": [{"Effect": "Allow", "Action": actions, "Resource": resource}]}))
    return key["AccessKeyId"], key["SecretAccessKey"]


# What the source calls. AWS authorizes DeleteMessageBatch as sqs:DeleteMessage and
# ChangeMessageVisibilityBatch as sqs:ChangeMessageVisibility; moto 5.2.1 asks for the batch
# actions' own names (and denies the calls with only the AWS names).
SOURCE_ACTIONS_MOTO = ["sqs:ReceiveMessage", "sqs:DeleteMessageBatch",
                       "sqs:ChangeMessageVisibilityBatch", "sqs:GetQueueAttributes"]
# create_user, create_access_key, put_user_policy for two users, and create_queue
SETUP_CALLS = 7


def test_signed_least_privilege_receives_and_deletes_wrong_secret_takes_nothing(d):
    """SigV4 and IAM checks on: a user allowed only ReceiveMessage, DeleteMessageBatch,
    ChangeMessageVisibilityBatch and GetQueueAttributes on the queue (no visibility_timeout, so
    the queue's is read): the 8 good events are delivered and deleted, a poison message is made
    visible again (received twice), no AccessDenied. With a wrong secret: nothing delivered, the
    signature error logged, no secret in the output, the messages still in the queue, exit 1."""
    m = Moto(auth_after=SETUP_CALLS)
    w = WireLog(m.port)
    try:
        akid, secret = iam_user(m, "router", SOURCE_ACTIONS_MOTO,
                                "arn:aws:sqs:us-east-1:%s:kms" % ACCOUNT)
        reader = m.client("sqs", *iam_user(m, "reader", ["sqs:*"], "*"))
        url = m.client("sqs").create_queue(QueueName="kms")["QueueUrl"]
        good = [event(i) for i in range(8)]
        ids = send_bodies(reader, url, [json.dumps(e) for e in good] + ["{poison"])
        d1 = os.path.join(d, "signed")
        os.mkdir(d1)
        r = Router(d1, config(source(w, url, invalid_backoff_seconds=1),
                              [log_sink("out", "out.jsonl")],
                              [{"name": "kms", "pattern": KMS, "targets": ["out"]}]),
                   env=base_env(d1, akid, secret))
        wait_for(lambda: lines(os.path.join(d1, "out.jsonl")) >= 8 and
                 counts(reader, url)[0] + counts(reader, url)[1] == 1 and
                 r.stderr().count("message_id=%s " % ids[8]) >= 2, 20,
                 "8 deliveries, the 8 deleted and the poison message received twice", [r])
        rc = r.stop()
        as_handed_out([e["id"] for e in read_jsonl(os.path.join(d1, "out.jsonl"))], w,
                      {mid: [e["id"]] for mid, e in zip(ids, good)}, "out")
        err = r.stderr()
        check("AccessDenied" not in err and "not authorized" not in err,
              "a call was denied: %s" % [x for x in err.splitlines() if "AccessDenied" in x][:2])
        check(secret not in err, "the secret appears in the output")
        check(rc == 1, "exit status %d (the poison record failed with no dead letter: 1)" % rc)

        # a wrong secret: every call refused
        d2 = os.path.join(d, "wrong")
        os.mkdir(d2)
        wrong = "WRONG" + secret[5:]
        before = counts(reader, url)
        more = [event(i, "w") for i in range(5)]
        send_bodies(reader, url, [json.dumps(e) for e in more])
        r = Router(d2, config(source(w, url), [log_sink("out", "out.jsonl")],
                              [{"name": "kms", "pattern": KMS, "targets": ["out"]}]),
                   env=base_env(d2, akid, wrong))
        wait_for(lambda: "SignatureDoesNotMatch" in r.stderr(), 15,
                 "the signature error in the log", [r])
        rc = r.stop()
        err = r.stderr()
        check(lines(os.path.join(d2, "out.jsonl")) == 0, "delivered with a wrong secret")
        check(wrong not in err and secret not in err, "a secret appears in the output")
        check(sum(counts(reader, url)) == sum(before) + 5,
              "the queue holds %s, want the %d messages" % (counts(reader, url),
                                                            sum(before) + 5))
        check(rc == 1, "exit status %d with every call refused (want 1)" % rc)
    finally:
        w.stop()
        m.stop()


def test_rules_match_the_sqs_metadata_receive_count_and_message_id(d):
    """A message received once by boto3 and not deleted (its visibility lapses), and one never
    received: a rule on kmsrouter.sqs.ApproximateReceiveCount > 1 matches only the first, a rule
    on kmsrouter.sqs.MessageId only the second; the delivered events carry no "kmsrouter"."""
    m = Moto()
    w = WireLog(m.port)
    try:
        sqs = m.client("sqs")
        url = sqs.create_queue(QueueName="kms")["QueueUrl"]
        evs = [event(0, "seen"), event(1, "fresh")]
        ids = send_bodies(sqs, url, [json.dumps(evs[0])])
        got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=1, VisibilityTimeout=1)
        check(len(got.get("Messages", [])) == 1, "boto3 received nothing")
        ids += send_bodies(sqs, url, [json.dumps(evs[1])])
        wait_for(lambda: counts(sqs, url) == (2, 0), 10, "the first message visible again")
        r = Router(d, config(source(w, url),
                             [log_sink("out", "out.jsonl"), log_sink("again", "again.jsonl"),
                              log_sink("byid", "byid.jsonl")],
                             [{"name": "all", "pattern": KMS, "targets": ["out"]},
                              {"name": "again", "targets": ["again"], "pattern": {
                                  "kmsrouter": {"sqs": {"ApproximateReceiveCount": [
                                      {"numeric": [">", 1]}]}}}},
                              {"name": "byid", "targets": ["byid"], "pattern": {
                                  "kmsrouter": {"sqs": {"MessageId": [ids[1]]}}}}]))
        wait_for(lambda: lines(os.path.join(d, "out.jsonl")) >= 2 and
                 counts(sqs, url) == (0, 0), 15, "2 deliveries and an empty queue", [r])
        rc = r.stop()
        check(rc == 0, "exit status %d" % rc)
        out = read_jsonl(os.path.join(d, "out.jsonl"))
        as_handed_out([e["id"] for e in out], w, {ids[0]: [evs[0]["id"]],
                                                  ids[1]: [evs[1]["id"]]}, "out")
        check(all("kmsrouter" not in e for e in out), "a delivered event carries kmsrouter")
        handed = w.handed_out()  # by the router's receives (boto3's went to moto directly)
        again = [e["id"] for e in read_jsonl(os.path.join(d, "again.jsonl"))]
        check(again == [evs[0]["id"]] * handed[ids[0]],
              "ApproximateReceiveCount > 1 matched %s, want %s" % (again, [evs[0]["id"]]))
        byid = [e["id"] for e in read_jsonl(os.path.join(d, "byid.jsonl"))]
        check(byid == [evs[1]["id"]] * handed[ids[1]],
              "MessageId matched %s, want %s" % (byid, [evs[1]["id"]]))
    finally:
        w.stop()
        m.stop()


def test_sigterm_hands_back_received_messages_not_yet_read(d):
    """One FIFO group of 10 messages, visibility_timeout 30: the first is in the pipeline (its
    sink fails until SIGTERM), the 9 after it are received and waiting. On SIGTERM those 9 are
    made visible again at once, the first is delivered (the sink recovers) and deleted; exit 0."""
    m = Moto()
    stopping = threading.Event()
    srv = Recorder(lambda body: 200 if stopping.is_set() else 503)
    try:
        sqs = m.client("sqs")
        url = sqs.create_queue(QueueName="kms.fifo", Attributes={"FifoQueue": "true"})["QueueUrl"]
        evs = [event(i, "fifo", seq=i) for i in range(10)]
        send_bodies(sqs, url, [json.dumps(e) for e in evs], fifo_groups=["g"] * 10)
        r = Router(d, config(source(m, url, visibility_timeout=30, concurrency=1),
                             [{"name": "api", "type": "http", "url": srv.url, "retry": PATIENT}],
                             [{"name": "kms", "pattern": KMS, "targets": ["api"]}]))
        wait_for(lambda: counts(sqs, url) == (0, 10) and srv.failed >= 2, 15,
                 "10 messages received and the first delivery failing", [r])
        stopping.set()
        t0 = time.monotonic()
        rc = r.stop()
        note("stopped in %.1f s" % (time.monotonic() - t0))
        check(rc == 0, "exit status %d" % rc)
        check([e["id"] for e in srv.oks()] == [evs[0]["id"]],
              "delivered %s, want only the first" % [e["id"] for e in srv.oks()])
        check(counts(sqs, url) == (9, 0), "the queue holds (visible, not visible) %s, want the 9 "
              "unread ones visible at once" % (counts(sqs, url),))
        back = drain(sqs, url, 9)
        check(sorted(json.loads(x["Body"])["id"] for x in back) ==
              [e["id"] for e in evs[1:]], "the messages given back are not the 9 unread ones")
    finally:
        srv.stop()
        m.stop()


def test_sigterm_while_deletes_fail_exits_1_and_the_messages_stay(d):
    """A proxy in front of moto answers every DeleteMessageBatch 500, shutdown_grace_seconds 1:
    the 5 events are delivered, SIGTERM ends the run once the grace period is over with exit 1
    and a warning that the source's acknowledgements were not all done (the summary's "0
    unacknowledged" is about the engine's records); the 5 messages are still in the queue."""
    m = Moto()
    proxy = None
    try:
        sqs = m.client("sqs")
        url = sqs.create_queue(QueueName="kms")["QueueUrl"]
        evs = [event(i, "del") for i in range(5)]
        send_bodies(sqs, url, [json.dumps(e) for e in evs])

        def fault(n, body):
            if b'"Entries"' in body and b"VisibilityTimeout" not in body:
                return (500, {"Content-Type": "application/x-amz-json-1.0"},
                        b'{"__type": "InternalError", "message": "injected"}')
            return None
        proxy = FaultProxy(m.port, fault)
        out = os.path.join(d, "out.jsonl")
        r = Router(d, config(source(proxy, url, visibility_timeout=30), [log_sink("log", out)],
                             [{"name": "kms", "pattern": KMS, "targets": ["log"]}],
                             shutdown_grace_seconds=1))
        wait_for(lambda: lines(out) == 5 and proxy.answered >= 1, 15,
                 "5 deliveries and a failed delete", [r])
        t0 = time.monotonic()
        rc = r.stop()
        took = time.monotonic() - t0
        check(rc == 1, "exit status %d, want 1 (deletes not done)" % rc)
        check(took >= 0.9, "stopped after %.1f s, before the grace period of 1 s was over" % took)
        check("acknowledgements (deletes, commits) were not all done" in r.stderr(),
              "no warning that the deletes were not done:\n    " + r.tail())
        check("DeleteMessageBatch failed; retrying" in r.stderr(),
              "the failed delete was not logged:\n    " + r.tail())
        check(sum(counts(sqs, url)) == 5, "the queue holds %s (visible, not visible), want the 5 "
              "messages whose delete failed" % (counts(sqs, url),))
        once_each([e["id"] for e in read_jsonl(out)], [e["id"] for e in evs], "log sink")
    finally:
        if proxy:
            proxy.stop()
        m.stop()


def test_grace_period_over_with_deliveries_in_flight_exits_1_and_the_messages_stay(d):
    """An http sink that answers 503 to everything (patient retries), shutdown_grace_seconds 1:
    3 messages received, their deliveries retrying. SIGTERM ends the run once the grace period
    is over with exit 1 and the 3 records counted as left unacknowledged; the 3 messages are
    still in the queue (not deleted); under ASan a leak report would change the exit status."""
    m = Moto()
    srv = Recorder(lambda body: 503)
    try:
        sqs = m.client("sqs")
        url = sqs.create_queue(QueueName="kms")["QueueUrl"]
        evs = [event(i, "grace") for i in range(3)]
        send_bodies(sqs, url, [json.dumps(e) for e in evs])
        r = Router(d, config(source(m, url, visibility_timeout=30),
                             [{"name": "api", "type": "http", "url": srv.url, "retry": PATIENT}],
                             [{"name": "kms", "pattern": KMS, "targets": ["api"]}],
                             shutdown_grace_seconds=1))
        wait_for(lambda: srv.failed >= 6, 15, "the 3 deliveries failing", [r])
        rc = r.stop()
        check(rc == 1, "exit status %d, want 1 (deliveries left in flight):\n    %s"
              % (rc, r.tail()))
        check("3 records left unacknowledged" in r.stderr(),
              "the summary does not count 3 records left unacknowledged:\n    " + r.tail())
        check(sum(counts(sqs, url)) == 3, "the queue holds %s (visible, not visible), want the 3 "
              "messages whose deliveries did not end" % (counts(sqs, url),))
    finally:
        srv.stop()
        m.stop()


def test_receive_answers_escaped_broken_or_without_a_receipt_handle(d):
    """A proxy in front of moto rewrites the ReceiveMessage answers that hold messages: the first
    it cuts in half (not JSON), in the second the first message loses its ReceiptHandle, and
    every other one it writes again with every non-ASCII character and every '/' escaped
    (\\uXXXX, surrogate pairs for what is past U+FFFF, \\/), as a JSON writer may. The two bad
    answers are logged and their messages come back after the visibility timeout; every event
    arrives once, exactly as sent (its text decoded), and the queue ends empty."""
    m = Moto()
    proxy = None
    try:
        sqs = m.client("sqs")
        url = sqs.create_queue(QueueName="kms")["QueueUrl"]
        evs = [event(i, "esc", note="caf\u00e9 \u2713 \U0001F511 /a/b \"q\" \\ \t%d" % i)
               for i in range(30)]
        send_bodies(sqs, url, [json.dumps(e, ensure_ascii=False) for e in evs])
        seen = []

        def rewrite(n, status, body):
            if status != 200 or b'"Messages"' not in body:
                return body
            seen.append(n)
            if len(seen) == 1:
                return body[:len(body) // 2]
            answer = json.loads(body)
            if len(seen) == 2:
                del answer["Messages"][0]["ReceiptHandle"]
            return json.dumps(answer, ensure_ascii=True).replace("/", "\\/").encode()
        proxy = FaultProxy(m.port, rewrite=rewrite)
        out = os.path.join(d, "out.jsonl")
        r = Router(d, config(source(proxy, url, visibility_timeout=2, max_messages=5,
                                    concurrency=1),
                             [log_sink("log", out)],
                             [{"name": "kms", "pattern": KMS, "targets": ["log"]}]))
        wait_for(lambda: lines(out) >= 30 and counts(sqs, url) == (0, 0), 30,
                 "30 deliveries and an empty queue", [r])
        rc = r.stop()
        check(rc == 0, "exit status %d" % rc)
        got = read_jsonl(out)
        once_each([e["id"] for e in got], [e["id"] for e in evs], "log sink")
        sent = {e["id"]: e for e in evs}
        changed = [e["id"] for e in got if e != sent[e["id"]]]
        check(not changed, "events not as sent: %s, e.g. %r" % (
            changed[:3], [e["detail"]["note"] for e in got if e["id"] in changed[:1]]))
        err = r.stderr()
        check("a ReceiveMessage answer could not be read" in err,
              "the cut answer was not logged:\n    " + r.tail())
        check("a received message has no receipt handle, id or body" in err,
              "the message without a receipt handle was not logged:\n    " + r.tail())
    finally:
        if proxy:
            proxy.stop()
        m.stop()


diagnose, finish = router_hooks(ROUTERS)
CASES = [globals()[k] for k in sorted(k for k in globals() if k.startswith("test_"))]


if __name__ == "__main__":
    sys.exit(run_cases(CASES, "sqs source", "kmsrouter-sqs-", __doc__,
                       start=lambda kr: aws_harness.need_moto(), diagnose=diagnose,
                       finish=finish))
