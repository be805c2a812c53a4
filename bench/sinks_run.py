#!/usr/bin/env python3
"""Running, checking and reporting half of bench/sinks.sh (needs boto3 and moto_server).

    python3 bench/sinks_run.py WORKDIR KMSROUTER EVENTS SINKS REPEAT CONCURRENCY KEEPALIVE

Writes the events (seeded, so every run of a size has the same ones) and each sink's config
into WORKDIR, starts one moto_server on a free loopback port (tests/integration/aws_harness.py)
and runs `kmsrouter run -c cfg.json` once per sink and round, REPEAT rounds. Before each run moto
is reset (POST /moto-api/reset) and the sink's resources created again, so every run starts
from an empty service. kmsrouter is started directly (no shell) and waited for with os.wait4(),
whose rusage is that process's own user and system time: moto's CPU is not in it.
HTTP requests are counted from moto's request log (one line per request) before and after a run.
moto (werkzeug's development server) answers every request with "Connection: close", so a
client makes a new TCP connection per request, which AWS does not make it do; with KEEPALIVE=1
the sinks talk to moto through aws_harness.FaultProxy instead, a loopback proxy that keeps the
router's connections open (it forwards each request to moto and leaves out moto's Connection
header), so that kmsrouter's CPU is what it would be against AWS's persistent connections.
Before the rounds, each sink runs once over a single event: its fixed cost (start, loading
libcurl and libcrypto, the first connection, stop), which is part of every run's CPU too.
Exit status: 0 when every run delivered every event, 1 when one lost events or failed (missed
targets do not change it), 2 on a usage error.
"""

import http.server
import json
import os
import random
import re
import subprocess
import sys
import threading
import time
import urllib.request
from importlib import metadata

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests",
                                "integration"))
from aws_harness import REGION, FaultProxy, Moto  # noqa: E402

# FaultProxy's server listens with socketserver's backlog of 5: the up to CONCURRENCY
# connections a sink opens at once overflow it, and the kernel resets some of them ("Recv
# failure: Connection reset by peer", retried deliveries). A longer backlog, in this process.
http.server.ThreadingHTTPServer.request_queue_size = 128

# the targets: sink -> (router CPU us per event, HTTP requests per event)
TARGETS = {"sqs": (10.0, 0.1), "sns": (10.0, 0.1),
           "kinesis": (3.0, 0.01), "cloudwatch-logs": (3.0, 0.01)}
REFERENCE = "log"  # the sink the others are compared with
# a few quick attempts: against moto on loopback nothing should need more, and a run that
# dead-letters is a failure anyway
RETRY = {"max_attempts": 5, "initial_backoff_ms": 50, "max_backoff_ms": 1000}
# one line of moto's (werkzeug's) request log: 127.0.0.1 - - [date] "POST / HTTP/1.1" 200 -,
# leaving out the SQS purger's own requests (their URL has PURGER_TAG in its query)
PURGER_TAG = "bench-purger"
REQUEST_LINE = r'"(?:GET|POST|PUT|DELETE|HEAD|PATCH) (?![^" ]*%s)\S+ HTTP/1\.[01]"' % PURGER_TAG
# how often the SQS purger empties the queue during an SQS run
PURGE_INTERVAL = 0.05
SUMMARY = re.compile(r"(\d+) deliveries succeeded, (\d+) deliveries dead-lettered")
UNACKED = re.compile(r"(\d+) records left unacknowledged")

SEED = 20240301
NKEYS = 50
ROT, DEL, EXP = "KMS CMK Rotation", "KMS CMK Deletion", "KMS Imported Key Material Expiration"
REGIONS = ("us-east-1", "us-west-2", "eu-west-1", "eu-central-1", "ap-southeast-2")


class RunFailed(Exception):
    pass


# ------------------------------------------------------------------------------------ events

def uuid_like(rng):
    h = "%032x" % rng.getrandbits(128)
    return "%s-%s-4%s-%x%s-%s" % (h[0:8], h[8:12], h[13:16], 8 | (int(h[16], 16) & 3),
                                  h[17:20], h[20:32])


def generate(path, n, now):
    """n events, one JSON object a line, compact as EventBridge sends them: 9 in 10 KMS events
    (Rotation -- half the scheduled shape, half ON_DEMAND with key-material ids --, Deletion,
    Imported Key Material Expiration) with detail.key-id over NKEYS keys, each key in its own
    account and region; every tenth a CloudTrail Decrypt event (as
    tests/data/events/cloudtrail-decrypt-pending-deletion.json, one in eight of them that
    pending-deletion error), whose key is only in detail.resources. Their times rise over the
    hour before now (CloudWatch Logs refuses events older than 14 days). Returns (bytes, KMS
    events, CloudTrail events)."""
    rng = random.Random(SEED)
    accounts = ["%012d" % rng.randrange(10**11, 10**12) for _ in range(5)]
    keys = [(uuid_like(rng), rng.choice(accounts), rng.choice(REGIONS)) for _ in range(NKEYS)]
    t0 = now - 3600
    size = kms = ct = 0
    with open(path, "w") as f:
        for i in range(n):
            key, account, region = rng.choice(keys)
            arn = "arn:aws:kms:%s:%s:key/%s" % (region, account, key)
            when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t0 + i * 3600 // n))
            ev = {"version": "0", "id": uuid_like(rng), "detail-type": None, "source": "aws.kms",
                  "account": account, "time": when, "region": region, "resources": [arn]}
            if i % 10 == 9:
                ct += 1
                ev["detail-type"] = "AWS API Call via CloudTrail"
                ev["resources"] = []
                role = rng.choice(("app", "order-processor", "payments-api"))
                detail = {
                    "eventVersion": "1.08",
                    "userIdentity": {"type": "AssumedRole", "principalId": "AROAEXAMPLE:" + role,
                                     "arn": "arn:aws:sts::%s:assumed-role/%s/%s"
                                            % (account, role, role),
                                     "accountId": account},
                    "eventTime": when, "eventSource": "kms.amazonaws.com",
                    "eventName": "Decrypt", "awsRegion": region,
                    "sourceIPAddress": "10.0.%d.%d" % (rng.randrange(256), rng.randrange(1, 255)),
                    "userAgent": "aws-sdk-java/1.12.0",
                    "requestParameters": {"encryptionAlgorithm": "SYMMETRIC_DEFAULT"},
                    "responseElements": None,
                    "requestID": uuid_like(rng), "eventID": uuid_like(rng), "readOnly": True,
                    "resources": [{"accountId": account, "type": "AWS::KMS::Key", "ARN": arn}],
                    "eventType": "AwsApiCall", "managementEvent": True,
                    "recipientAccountId": account, "eventCategory": "Management"}
                if rng.random() < 0.125:
                    detail["errorCode"] = "KMSInvalidStateException"
                    detail["errorMessage"] = "%s is pending deletion." % arn
                ev["detail"] = detail
            else:
                kms += 1
                t = rng.choice((ROT, ROT, DEL, DEL, EXP, EXP))
                ev["detail-type"] = t
                detail = {"key-id": key}
                if t == ROT and rng.random() < 0.5:
                    detail.update({"key-origin": "AWS_KMS", "rotation-type": "ON_DEMAND",
                                   "previous-key-material-id": "%064x" % rng.getrandbits(256),
                                   "current-key-material-id": "%064x" % rng.getrandbits(256)})
                ev["detail"] = detail
            line = json.dumps(ev, separators=(",", ":")) + "\n"
            size += len(line)
            f.write(line)
    return size, kms, ct


# ------------------------------------------------------------------------- sinks and moto
# Each sink: setup(moto, folder) creates its resources in a freshly reset moto and returns the
# sink's options, a check(moto, folder, nevents, requests) that lists what did not arrive
# (beyond the summary line, which every run must pass), and None or a start() of something to
# run beside kmsrouter, which returns its stop().

def no_check(m, d, n, requests):
    return []


class Purger(threading.Thread):
    """Empties an SQS queue every PURGE_INTERVAL seconds while kmsrouter fills it. moto's SQS
    costs O(queue length) per message sent (Queue.attributes, read for every message, counts
    the queue's messages): a queue growing to 10,000 messages makes a run take many minutes and
    pushes requests past kmsrouter's timeout, which measures moto, not the sink. PurgeQueue in
    moto only drops the list; it is sent with moto's JSON protocol to the queue's URL with
    PURGER_TAG in the query, so that the request count leaves it out."""

    def __init__(self, m, url):
        super().__init__(daemon=True)
        self.req = urllib.request.Request(
            url + "?" + PURGER_TAG, data=json.dumps({"QueueUrl": url}).encode(),
            headers={"Content-Type": "application/x-amz-json-1.0",
                     "X-Amz-Target": "AmazonSQS.PurgeQueue",
                     # moto picks the service from the credential scope; it checks no signature
                     "Authorization": "AWS4-HMAC-SHA256 Credential=testing/20240301/%s/sqs/"
                                      "aws4_request, SignedHeaders=host, Signature=0" % REGION})
        self.done = threading.Event()
        self.error = None

    def run(self):
        try:
            while not self.done.wait(PURGE_INTERVAL):
                urllib.request.urlopen(self.req, timeout=30).read()
        except Exception as e:  # noqa: BLE001 - reported by stop()
            self.error = e

    def begin(self):
        """Starts purging; returns stop."""
        self.start()
        return self.stop

    def stop(self):
        self.done.set()
        self.join()
        if self.error:
            raise RunFailed("purging the queue failed: %s" % self.error)


def setup_log(m, d):
    out = os.path.join(d, "out.jsonl")
    if os.path.exists(out):
        os.unlink(out)

    def check(m, d, n, requests):
        with open(out, "rb") as f:
            lines = sum(1 for _ in f)
        return [] if lines == n else ["%d lines in out.jsonl, expected %d" % (lines, n)]
    return {"type": "log", "path": "out.jsonl"}, check, None


def setup_sqs(m, d):
    # the queue is purged during the run (Purger), so its messages cannot be counted after it:
    # the summary line (every entry's result in the SendMessageBatch answers) is the check
    url = m.client("sqs").create_queue(QueueName="bench")["QueueUrl"]
    return ({"type": "sqs", "queue_url": url, "region": REGION, "endpoint": m.url}, no_check,
            lambda: Purger(m, url).begin())


def setup_sns(m, d):
    # no subscription: moto would otherwise spend its time delivering to it (the sns sink's
    # deliveries are checked through subscribed queues in tests/integration/aws_sinks_test.py)
    arn = m.client("sns").create_topic(Name="bench")["TopicArn"]
    return {"type": "sns", "topic_arn": arn, "endpoint": m.url}, no_check, None


def setup_lambda(m, d):
    # moto's Lambda without Docker answers every invocation, of any function name, with the
    # payload it got (202 for Event); the setting survives a reset, it is set again anyway
    req = urllib.request.Request(m.url + "/moto-api/config", method="POST",
                                 data=json.dumps({"lambda": {"use_docker": False}}).encode(),
                                 headers={"Content-Type": "application/json"})
    urllib.request.urlopen(req, timeout=10).read()

    def check(m, d, n, requests):
        return [] if requests >= n else ["%d invocations for %d events" % (requests, n)]
    return ({"type": "lambda", "function": "bench", "endpoint": m.url, "region": REGION},
            check, None)


def setup_kinesis(m, d):
    k = m.client("kinesis")
    k.create_stream(StreamName="bench", ShardCount=4)
    k.get_waiter("stream_exists").wait(StreamName="bench", WaiterConfig={"Delay": 0.2})
    return ({"type": "kinesis", "stream_name": "bench", "region": REGION, "endpoint": m.url},
            no_check, None)


def setup_cloudwatch_logs(m, d):
    logs = m.client("logs")
    logs.create_log_group(logGroupName="bench")
    logs.create_log_stream(logGroupName="bench", logStreamName="bench")
    return ({"type": "cloudwatch-logs", "log_group": "bench", "log_stream": "bench",
             "region": REGION, "endpoint": m.url}, no_check, None)


SETUP = {"log": setup_log, "sqs": setup_sqs, "sns": setup_sns, "lambda": setup_lambda,
         "kinesis": setup_kinesis, "cloudwatch-logs": setup_cloudwatch_logs}


def reset(m):
    urllib.request.urlopen(urllib.request.Request(m.url + "/moto-api/reset", method="POST"),
                           timeout=10).read()


def settled_requests(m):
    """moto's request count once its log stops growing (a request's line is written after its
    answer, so the last few may come a moment after kmsrouter has exited)."""
    n = m.requests(REQUEST_LINE)
    for _ in range(50):
        time.sleep(0.1)
        again = m.requests(REQUEST_LINE)
        if again == n:
            return n
        n = again
    return n


def available(kr, sink):
    """Whether this build has the sink (`help config sqs` also speaks of the sqs source, which
    may be missing while the sink is there)."""
    p = subprocess.run([kr, "help", "config", sink], capture_output=True, text=True)
    text = p.stdout + p.stderr
    return (p.returncode == 0 and 'sink type "%s":' % sink in text
            and 'sink type "%s": not available' % sink not in text)


def router_env(d):
    env = dict(os.environ)
    for k in list(env):
        if k.startswith("AWS_"):
            env.pop(k)
    env.update({"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                "AWS_SHARED_CREDENTIALS_FILE": os.path.join(d, "no-credentials"),
                "AWS_CONFIG_FILE": os.path.join(d, "no-config")})
    return env


def run_sink(kr, m, workdir, sink, events, nevents, concurrency, endpoint=None, proxy=None):
    """One run of kmsrouter over events into sink (an AWS sink through endpoint where given,
    instead of moto's URL); returns its measurements or raises RunFailed when it did not
    deliver every event. With the keep-alive proxy, "sent" is what the router sent it: each
    request's (path, body, headers)."""
    d = os.path.join(workdir, sink)
    os.makedirs(d, exist_ok=True)
    if m is not None:
        reset(m)
    opts, check, beside = SETUP[sink](m, d)
    if endpoint and "endpoint" in opts:
        opts["endpoint"] = endpoint
    dlq = os.path.join(d, "dlq.jsonl")
    if os.path.exists(dlq):
        os.unlink(dlq)
    cfg = {"sources": [{"name": "in", "type": "file", "paths": [events]}],
           "sinks": [dict(opts, name="out", concurrency=concurrency, retry=RETRY,
                          dead_letter="dlq"),
                     {"name": "dlq", "type": "log", "path": "dlq.jsonl"}],
           "rules": [{"name": "kms", "pattern": {"source": ["aws.kms"]}, "targets": ["out"]}]}
    with open(os.path.join(d, "cfg.json"), "w") as f:
        json.dump(cfg, f, indent=1)
    aws = sink != "log"
    before = settled_requests(m) if aws else 0
    first = len(proxy.requests) if proxy is not None else 0

    errpath = os.path.join(d, "stderr.txt")
    stop = beside() if beside else None
    with open(errpath, "wb") as err:
        t0 = time.perf_counter()
        p = subprocess.Popen([kr, "run", "-c", "cfg.json"], cwd=d, env=router_env(d),
                             stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err)
        # a run that hangs (a delivery retried for ever) is killed: generous, as moto's Lambda
        # answers some 250 invocations a second on a small VM
        limit = 60 + nevents * 0.05
        killed = []
        timer = threading.Timer(limit, lambda: (killed.append(1), p.kill()))
        timer.start()
        _, status, ru = os.wait4(p.pid, 0)
        wall = time.perf_counter() - t0
        timer.cancel()
        p.returncode = os.waitstatus_to_exitcode(status)
    if stop:
        stop()
    requests = settled_requests(m) - before if aws else None
    with open(errpath, errors="replace") as f:
        stderr = f.read()

    problems = []
    if killed:
        problems.append("killed after %.0f s" % limit)
    elif p.returncode != 0:
        problems.append("exit status %d" % p.returncode)
    s = SUMMARY.search(stderr)
    u = UNACKED.search(stderr)
    if not s or not u:
        problems.append("no summary line")
    else:
        ok, dead, unacked = int(s.group(1)), int(s.group(2)), int(u.group(1))
        if ok != nevents or dead or unacked:
            problems.append("%d deliveries succeeded of %d, %d dead-lettered, %d records left "
                            "unacknowledged" % (ok, nevents, dead, unacked))
    if os.path.exists(dlq) and os.path.getsize(dlq):
        with open(dlq) as f:
            first = json.loads(f.readline())
        problems.append("first dead letter: %s: %s" % (first.get("error_code"),
                                                       first.get("error_message")))
    if not problems:
        problems = check(m, d, nevents, requests)
    if problems:
        tail = "\n      ".join(stderr.strip().splitlines()[-3:])
        raise RunFailed("; ".join(problems) + " (%s)\n      %s" % (errpath, tail))
    cpu = ru.ru_utime + ru.ru_stime
    # attempts that failed and were retried (a slow moto can time requests out): they add
    # requests and CPU, so the report names them
    sent = None
    if aws and proxy is not None:
        with proxy.lock:
            sent = [(path, body, headers) for path, (body, headers)
                    in zip(proxy.paths[first:], proxy.requests[first:])]
    return {"wall": wall, "requests": requests, "user": ru.ru_utime, "sys": ru.ru_stime,
            "cpu": cpu, "us_per_event": cpu / nevents * 1e6,
            "failed_attempts": stderr.count('msg="delivery attempt failed"'), "sent": sent}


# headers curl_peer leaves to libcurl, as the router does
PEER_SKIP = {"host", "content-length", "connection", "expect", "transfer-encoding"}


def run_peer(peer, m, workdir, sink, sent, concurrency, endpoint):
    """bench/curl_peer.c sends the requests the router sent in a run of sink (sent), to the
    same service set up afresh, through the same proxy with the same concurrency: libcurl's
    CPU alone for those requests, the floor under the router's. Returns its CPU in seconds, or
    raises RunFailed."""
    d = os.path.join(workdir, sink)
    reset(m)
    _, _, beside = SETUP[sink](m, d)
    path = os.path.join(d, "requests.peer")
    with open(path, "wb") as f:
        for p, body, headers in sent:
            hs = ["%s: %s" % (k, v) for k, v in headers.items() if k.lower() not in PEER_SKIP]
            f.write(("%s\n%d\n" % (p, len(hs))).encode())
            f.write("".join(h + "\n" for h in hs).encode())
            f.write(b"%d\n" % len(body) + body)
    stop = beside() if beside else None
    p = subprocess.Popen([peer, endpoint, path, str(concurrency)], stdin=subprocess.DEVNULL,
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    out = p.stdout.read().decode(errors="replace").strip()
    _, status, ru = os.wait4(p.pid, 0)
    if stop:
        stop()
    m_ = re.search(r"requests (\d+) answered (\d+) not-2xx (\d+)", out)
    if os.waitstatus_to_exitcode(status) != 0 or not m_ or m_.group(1) != m_.group(2) \
            or int(m_.group(1)) != len(sent):
        raise RunFailed("curl_peer: %s" % out)
    return ru.ru_utime + ru.ru_stime, int(m_.group(3))


def peer_fixed(peer, workdir, endpoint):
    """curl_peer's own fixed cost (start, loading libcurl, stop): the least CPU of three runs
    with no request."""
    path = os.path.join(workdir, "requests.none")
    open(path, "wb").close()
    best = None
    for _ in range(3):
        p = subprocess.Popen([peer, endpoint, path, "1"], stdin=subprocess.DEVNULL,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _, _, ru = os.wait4(p.pid, 0)
        cpu = ru.ru_utime + ru.ru_stime
        best = cpu if best is None else min(best, cpu)
    return best


# ------------------------------------------------------------------------------------ report

def fmt_int(n):
    return "{:,}".format(int(round(n)))


def target_text(sink):
    if sink == REFERENCE:
        return "reference"
    if sink not in TARGETS:
        return "-"
    us, req = TARGETS[sink]
    return "<=%g us, <=%g" % (us, req)


def verdict(sink, r, nevents):
    if sink not in TARGETS:
        return "-"
    us, req = TARGETS[sink]
    missed = []
    if r["us_per_event"] > us:
        missed.append("CPU")
    if r["requests"] / nevents > req:
        missed.append("requests")
    return "misses (%s)" % ", ".join(missed) if missed else "meets"


HEAD = "%-16s %7s %8s %12s %8s %9s %9s %11s  %-17s %-23s %6s"


def table(title, pick, sinks, results, status, nevents, fixed):
    """One row per sink: the run pick() chooses of its runs. "-fixed" is the CPU per event
    without the sink's fixed cost (its one-event run), the part that grows with the events;
    verdicts are on the whole CPU per event."""
    print(title)
    print(HEAD % ("sink", "events", "wall s", "deliveries/s", "requests", "req/event",
                  "CPU us/ev", "(-fixed)", "target", "verdict", "vs log"))
    chosen = {s: pick(results[s]) for s in sinks if status[s] == "ok"}
    ref = chosen.get(REFERENCE)
    for s in sinks:
        if status[s] != "ok":
            print("%-16s %s" % (s, status[s]))
            continue
        r = chosen[s]
        req = r["requests"]
        print(HEAD % (s, fmt_int(nevents), "%.3f" % r["wall"], fmt_int(nevents / r["wall"]),
                      "-" if req is None else fmt_int(req),
                      "-" if req is None else "%.3f" % (req / nevents),
                      "%.2f" % r["us_per_event"],
                      "(%.2f)" % ((r["cpu"] - fixed[s]) / nevents * 1e6),
                      target_text(s), verdict(s, r, nevents),
                      "%.2fx" % (r["us_per_event"] / ref["us_per_event"]) if ref else "n/a"))
    print()


def main():
    workdir, kr, nevents, sinks, repeat, concurrency, keepalive, peer = sys.argv[1:9]
    nevents, repeat, concurrency = int(nevents), int(repeat), int(concurrency)
    keepalive = keepalive == "1"
    sinks = sinks.split()
    unknown = [s for s in sinks if s not in SETUP]
    if unknown or not sinks:
        print("sinks_run.py: unknown sink %s (known: %s)" % (", ".join(unknown) or "(none)",
                                                            " ".join(SETUP)), file=sys.stderr)
        return 2
    started = time.time()

    events = os.path.join(workdir, "events-%d.jsonl" % nevents)
    now = int(time.time())
    size, kms, ct = generate(events, nevents, now)
    one = os.path.join(workdir, "events-1.jsonl")
    generate(one, 1, now)

    status = {s: "ok" if available(kr, s) else "not available in this build" for s in sinks}
    live = [s for s in sinks if status[s] == "ok"]
    m = Moto() if any(s != "log" for s in live) else None
    proxy = FaultProxy(m.port) if m and keepalive else None
    endpoint = proxy.url if proxy else None
    try:
        # each sink's fixed cost, the least of three one-event runs; they also warm the page
        # cache and moto
        fixed = {}
        failures = {}
        print("one-event runs:", end="", file=sys.stderr, flush=True)
        for s in live:
            print(" " + s, end="", file=sys.stderr, flush=True)
            try:
                fixed[s] = min(run_sink(kr, m, workdir, s, one, 1, concurrency,
                                        endpoint, proxy)["cpu"]
                               for _ in range(3))
            except Exception as e:  # noqa: BLE001 - RunFailed, or moto or boto3 failing
                status[s] = "FAILED (one-event run, see below)"
                failures[s] = str(e)
        print(file=sys.stderr)
        # the rounds: every sink once per round, so that a change in the machine's speed
        # hits the reference and the AWS sinks alike
        results = {s: [] for s in sinks}
        for i in range(repeat):
            print("round %d of %d:" % (i + 1, repeat), end="", file=sys.stderr, flush=True)
            for s in sinks:
                if status[s] != "ok":
                    continue
                print(" " + s, end="", file=sys.stderr, flush=True)
                try:
                    r = run_sink(kr, m, workdir, s, events, nevents, concurrency, endpoint,
                                 proxy)
                    # only the last run's requests are kept: curl_peer replays them
                    for old in results[s]:
                        old["sent"] = None
                    results[s].append(r)
                except Exception as e:  # noqa: BLE001 - as above
                    status[s] = "FAILED (see below)"
                    failures[s] = str(e)
            print(file=sys.stderr)
        # libcurl alone, for each AWS sink: its last run's requests sent again by curl_peer
        peers = {}
        aws_ok = [s for s in sinks if s != REFERENCE and status[s] == "ok" and results[s]
                  and results[s][-1]["sent"]]
        if aws_ok and peer != "-":
            pfixed = peer_fixed(peer, workdir, endpoint)
            print("libcurl alone (curl_peer):", end="", file=sys.stderr, flush=True)
            for s in aws_ok:
                print(" " + s, end="", file=sys.stderr, flush=True)
                try:
                    peers[s] = run_peer(peer, m, workdir, s, results[s][-1]["sent"],
                                        concurrency, endpoint)
                except Exception as e:  # noqa: BLE001 - reported, the sink's run stands
                    peers[s] = str(e)
                results[s][-1]["sent"] = None
            print(file=sys.stderr)
    finally:
        if proxy is not None:
            proxy.stop()
        if m is not None:
            m.stop()

    print()
    print("input: %s events, %.1f MB (%s KMS with detail.key-id over %d keys, %s CloudTrail "
          "without); %s" % (fmt_int(nevents), size / 1e6, fmt_int(kms), NKEYS, fmt_int(ct),
                            events))
    print("one rule (source aws.kms) -> the sink under test, concurrency %d; moto %s on "
          "loopback, reset before every run; SNS topic without subscriptions; %d run%s per "
          "sink, interleaved" % (concurrency, metadata.version("moto"), repeat,
                                 "s" if repeat > 1 else ""))
    print("AWS sinks %s" % (
        "through a keep-alive proxy in front of moto (one connection per request when "
        "KEEPALIVE=0)" if keepalive else
        "straight to moto, which closes the connection after every request (KEEPALIVE=0)"))
    print("CPU = user + system time of the kmsrouter process only (not moto's), per event")
    print()
    table("best run (lowest router CPU per event):", lambda rs: min(
        rs, key=lambda r: r["us_per_event"]), sinks, results, status, nevents, fixed)
    if repeat > 1:
        table("median run (by router CPU per event):", lambda rs: sorted(
            rs, key=lambda r: r["us_per_event"])[(len(rs) - 1) // 2], sinks, results, status,
            nevents, fixed)
    ok = [s for s in sinks if status[s] == "ok"]
    if ok:
        best = {s: min(results[s], key=lambda r: r["us_per_event"]) for s in ok}
        # Linux splits a process's CPU time into user and system by sampling at the tick: the
        # sum is exact, the split is coarse
        print("best runs' CPU, user + system, us per event: " + "; ".join(
            "%s %.2f + %.2f" % (s, best[s]["user"] / nevents * 1e6,
                                best[s]["sys"] / nevents * 1e6) for s in ok))
        print("fixed cost (-fixed: the least CPU of three one-event runs: start, loading libcurl "
              "and libcrypto, stop), ms: " + "; ".join("%s %.1f" % (s, fixed[s] * 1e3)
                                                       for s in ok))
        if peers:
            print()
            print("the floor: each AWS sink's requests of its last run sent again by "
                  "bench/curl_peer.c, libcurl alone")
            print("(no events read, matched or prepared, no bodies built, no signing), to "
                  "that service set up afresh,")
            print("through the same proxy with the same concurrency; CPU of curl_peer per "
                  "event of the run, and both without")
            print("their fixed costs (curl_peer's: %.1f ms, the least of three runs with no "
                  "request)" % (pfixed * 1e3))
            print("%-16s %9s %12s %12s %14s %12s %12s %14s" % (
                "sink", "requests", "curl us/ev", "router us/ev", "router / curl",
                "(curl-fixed)", "(router-fx)", "(ratio-fixed)"))
            for s in ok:
                if s not in peers:
                    continue
                last = results[s][-1]
                if isinstance(peers[s], str):
                    print("%-16s FAILED: %s" % (s, peers[s]))
                    continue
                cpu, not2xx = peers[s]
                cv, rv = max(cpu - pfixed, 0.0), max(last["cpu"] - fixed[s], 0.0)
                print("%-16s %9s %12.2f %12.2f %13.2fx %12.2f %12.2f %13.2fx%s" % (
                    s, fmt_int(last["requests"]), cpu / nevents * 1e6, last["us_per_event"],
                    last["cpu"] / cpu if cpu else float("nan"), cv / nevents * 1e6,
                    rv / nevents * 1e6, rv / cv if cv else float("nan"),
                    "  (%d answered other than 2xx)" % not2xx if not2xx else ""))
            print()
        retried = ["%s %s" % (s, "/".join(str(r["failed_attempts"]) for r in results[s]))
                   for s in ok if any(r["failed_attempts"] for r in results[s])]
        print("delivery attempts that failed and were retried, per run: " +
              ("; ".join(retried) if retried else "none"))
    failed = [s for s in sinks if status[s].startswith("FAILED")]
    for s in failed:
        print("%s FAILED: %s" % (s, failures[s]))
    print()
    print("benchmark took %.0f s; %s" % (
        time.time() - started,
        "FAILED: %s lost events or did not run" % ", ".join(failed) if failed else
        "every run delivered all %s events (targets are reported, not enforced)"
        % fmt_int(nevents)))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
