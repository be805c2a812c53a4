#!/usr/bin/env python3
"""Running, checking and reporting half of bench/sqs.sh (needs boto3 and moto_server).

    python3 bench/sqs_run.py WORKDIR KMSROUTER EVENTS REPEAT CONCURRENCY KEEPALIVE

Writes the events (bench/sinks_run.py's generator, seeded: one event a message) into WORKDIR,
starts one moto_server on a free loopback port (tests/integration/aws_harness.py) and a counting
proxy in front of it, and runs `kmsrouter run -c cfg.json` (the sqs source -> a log sink) REPEAT
times. Before each run moto is reset (POST /moto-api/reset), the queue created again and the
first backlog_for(CONCURRENCY) messages sent; while kmsrouter runs, feeder threads (boto3
SendMessageBatch, straight to moto) send the rest, whenever fewer than that are sent and not yet
in the log file: moto's SQS costs O(messages in the queue) per message sent and, more, per
message received (each one reads the queue's attributes, which count every message, in flight
included), so a queue prefilled with 20,000 messages would take hours to fill and to drain. The
log file is read as it grows; once every message's event id is in it, kmsrouter gets SIGTERM
and is waited for with os.wait4(), whose rusage is that process's own user and system time.
moto's CPU over the same span (kmsrouter's start to its exit) is utime + stime of
/proc/PID/stat; it includes the feeders' SendMessageBatch requests, which moto must serve too.
The proxy counts kmsrouter's requests by X-Amz-Target as they arrive, so a long poll that
kmsrouter leaves open at its stop (answered by moto up to 20 s later) counts in its own run,
and it sees every receive's answer: which messages each handed out, so that a message
delivered twice is told apart as handed out twice by the queue (moto's receives are not
atomic across its threads) or delivered twice by kmsrouter (a failure). It keeps kmsrouter's
connections open (KEEPALIVE=1), as AWS does, or closes each after its answer (KEEPALIVE=0), as
moto does; either way it sends an answer in one write, as a server would. Before the runs,
three one-message runs give the fixed cost (start, loading libcurl and libcrypto,
GetQueueAttributes, the first connections, stop).
Exit status: 0 when every run delivered every message, none more often than the queue handed
it out, and left the queue empty; 1 when one did not (missed targets do not change it); 2 on a
usage error.
"""

import collections
import http.client
import http.server
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from importlib import metadata

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests",
                                "integration"))
from aws_harness import REGION, Moto, Served  # noqa: E402
from sinks_run import fmt_int, generate, router_env  # noqa: E402

# the up to CONCURRENCY + 2 connections kmsrouter opens at once overflow socketserver's
# backlog of 5 (the kernel then resets some of them)
http.server.ThreadingHTTPServer.request_queue_size = 128

# the targets: SQS requests per message (receive + delete + visibility changes; 0.2 is
# the floor with batches of 10) and router CPU per message
TARGET_REQUESTS = 0.25
TARGET_US = 10.0
ACTIONS = ("ReceiveMessage", "DeleteMessageBatch", "ChangeMessageVisibilityBatch",
           "GetQueueAttributes")
SUMMARY = re.compile(r"(\d+) records read \((\d+) events, (\d+) invalid\).*?(\d+) deliveries "
                     r"succeeded, (\d+) deliveries dead-lettered.*?(\d+) records left "
                     r"unacknowledged")
POLL = 0.005         # how often the log file is read
STALL = 60           # a run that delivers nothing for this long is a failure
TICK = os.sysconf("SC_CLK_TCK")


class RunFailed(Exception):
    pass


def backlog_for(concurrency):
    """Messages kept sent but not yet delivered: about 10 x concurrency held by kmsrouter
    (received, in the pipeline or waiting for their delete) and as many visible, so that each
    of its receives finds 10; no more, as every message in the queue costs moto time for every
    message sent and received (twice as many make moto half as fast)."""
    return 20 * concurrency


def cpu_of(pid):
    """utime + stime of a process (all its threads), in seconds."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


# ------------------------------------------------------------------------------------ proxy

class Counts:
    """What one run's requests were: by action, messages per receive answer, entries of the
    batch requests, answers other than 200 and entries that failed."""

    def __init__(self):
        self.actions = collections.Counter()
        self.per_receive = []
        self.handed = collections.Counter()  # event id -> times a receive answer held it
        self.message_ids = {}                # event id -> the MessageIds it came with
        self.entries = collections.Counter()
        self.statuses = collections.Counter()
        self.failed_entries = collections.Counter()
        self.errors = []     # the proxy's own failures while the run was on
        self.late = 0        # answers after kmsrouter's exit (long polls it left at its stop)
        self.over = False


class CountingProxy(Served):
    """A loopback HTTP proxy in front of moto that counts kmsrouter's requests (X-Amz-Target)
    into the current run's Counts, taken when each request arrives. keepalive: keep the
    client's connection open (moto answers every request with "Connection: close"; AWS keeps
    connections); else close it after every answer, as moto does."""

    def __init__(self, target_port, keepalive):
        self.counts = Counts()
        self.lock = threading.Lock()
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # an answer goes out in one write, head and body, as a server's would (unbuffered,
            # the head and the body are two segments: two wakeups of kmsrouter, not AWS's)
            wbufsize = 1 << 20

            def do_POST(self):
                run = outer.counts
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                action = self.headers.get("X-Amz-Target", "?").rpartition(".")[2]
                with outer.lock:
                    run.actions[action] += 1
                    if action.endswith("Batch"):
                        try:
                            run.entries[action] += len(json.loads(body).get("Entries", []))
                        except ValueError:
                            pass
                try:
                    c = http.client.HTTPConnection("127.0.0.1", target_port, timeout=60)
                    c.request("POST", self.path, body=body, headers=dict(self.headers))
                    r = c.getresponse()
                    payload = r.read()
                    headers = [(k, v) for k, v in r.getheaders()
                               if k.lower() not in ("content-length", "transfer-encoding",
                                                    "connection", "server", "date")]
                    c.close()
                except OSError as e:
                    with outer.lock:
                        if run.over:
                            run.late += 1
                        else:
                            run.errors.append("%s: %s" % (action, e))
                    self.close_connection = True
                    return
                try:
                    answer = json.loads(payload) if r.status == 200 else {}
                except ValueError:
                    answer = {}
                with outer.lock:
                    if run.over:
                        # a long poll kmsrouter left at its stop, answered after its exit
                        run.late += 1
                        answer = {}
                    run.statuses[r.status] += 1
                    if action == "ReceiveMessage" and r.status == 200 and not run.over:
                        got = answer.get("Messages", [])
                        run.per_receive.append(len(got))
                        for msg in got:
                            try:
                                i = json.loads(msg["Body"])["id"]
                            except (ValueError, KeyError, TypeError):
                                i = None
                            run.handed[i] += 1
                            run.message_ids.setdefault(i, []).append(
                                (msg.get("MessageId"), time.perf_counter()))
                    for f in answer.get("Failed", []) if isinstance(answer, dict) else []:
                        run.failed_entries["%s %s" % (action, f.get("Code"))] += 1
                try:
                    self.send_response(r.status)
                    for k, v in headers:
                        self.send_header(k, v)
                    self.send_header("Content-Length", str(len(payload)))
                    if not keepalive:
                        self.send_header("Connection", "close")
                        self.close_connection = True
                    self.end_headers()
                    self.wfile.write(payload)
                except OSError as e:
                    with outer.lock:
                        if run.over:
                            run.late += 1
                        else:
                            run.errors.append("%s answer: %s" % (action, e))
                    self.close_connection = True

            def log_message(self, *a):
                pass

        super().__init__(Handler)

    def begin(self):
        """A new run's Counts."""
        with self.lock:
            self.counts = Counts()
            return self.counts


# ------------------------------------------------------------------------------------- runs

def reset(m):
    urllib.request.urlopen(urllib.request.Request(m.url + "/moto-api/reset", method="POST"),
                           timeout=30).read()


def sqs_clients(m, n):
    """n boto3 SQS clients of moto, which send a request once (a send tried again could put a
    message in the queue twice)."""
    import boto3
    from botocore.config import Config
    return [boto3.client("sqs", region_name=REGION, endpoint_url=m.url,
                         aws_access_key_id="testing", aws_secret_access_key="testing",
                         config=Config(retries={"total_max_attempts": 1}))
            for _ in range(n)]


def send(sqs, url, bodies):
    """One SendMessageBatch of up to 10 bodies; every entry must be taken."""
    r = sqs.send_message_batch(QueueUrl=url, Entries=[
        {"Id": str(i), "MessageBody": b} for i, b in enumerate(bodies)])
    if r.get("Failed") or len(r.get("Successful", [])) != len(bodies):
        raise RunFailed("SendMessageBatch failed: %s" % r.get("Failed"))


def feeders_for(concurrency):
    """Sending threads: a SendMessageBatch waits for moto (one thread at a time holds its
    GIL) as long as a receive does, so the senders must outnumber kmsrouter's receives for the
    queue to stay ahead of it."""
    return max(4, 2 * concurrency)


class Feeder:
    """Sends bodies[start:] in batches of 10, one thread per client, while fewer than backlog
    messages are sent and not yet delivered (delivered() is the log reader's count)."""

    def __init__(self, clients, url, bodies, start, backlog, delivered):
        self.url, self.bodies = url, bodies
        self.next = self.sent = start
        self.backlog, self.delivered = backlog, delivered
        self.requests = 0
        self.lock = threading.Lock()
        self.done = threading.Event()
        self.error = None
        self.threads = [threading.Thread(target=self.run, args=(c,), daemon=True)
                        for c in clients]

    def start(self):
        for t in self.threads:
            t.start()

    def join(self, timeout):
        for t in self.threads:
            t.join(timeout)

    def run(self, sqs):
        try:
            while not self.done.is_set() and not self.error:
                with self.lock:
                    if self.next >= len(self.bodies):
                        return
                    if self.next - self.delivered() >= self.backlog:
                        batch = None
                    else:
                        batch = self.bodies[self.next:self.next + 10]
                        self.next += len(batch)
                if batch is None:
                    time.sleep(0.002)
                    continue
                send(sqs, self.url, batch)
                with self.lock:
                    self.requests += 1
                    self.sent += len(batch)
        except Exception as e:  # noqa: BLE001 - reported by the run
            self.error = e


class LogReader:
    """Reads the log sink's file as it grows: the event ids delivered, with their counts."""

    def __init__(self, path, expected):
        self.path = path
        self.expected = expected
        self.found = 0  # expected ids seen at least once
        self.f = None
        self.rest = b""
        self.ids = collections.Counter()
        self.lines = 0
        self.bad = 0

    def read(self):
        if self.f is None:
            if not os.path.exists(self.path):
                return
            self.f = open(self.path, "rb")
        data = self.f.read()
        if not data:
            return
        *lines, self.rest = (self.rest + data).split(b"\n")
        for line in lines:
            self.lines += 1
            try:
                i = json.loads(line)["id"]
            except (ValueError, KeyError, TypeError):
                self.bad += 1
                continue
            self.ids[i] += 1
            if self.ids[i] == 1 and i in self.expected:
                self.found += 1

    def close(self):
        if self.f is not None:
            self.f.close()


def run_once(kr, m, proxy, clients, workdir, bodies, ids, concurrency, backlog):
    """One run over bodies (one message each); returns its measurements, or raises RunFailed
    when a message was lost or delivered twice, or the queue is not empty after it."""
    n = len(bodies)
    d = os.path.join(workdir, "run")
    os.makedirs(d, exist_ok=True)
    out = os.path.join(d, "out.jsonl")
    if os.path.exists(out):
        os.unlink(out)
    reset(m)
    sqs = clients[0]
    url = sqs.create_queue(QueueName="bench")["QueueUrl"]
    first = min(n, backlog)
    for i in range(0, first, 10):
        send(sqs, url, bodies[i:min(i + 10, first)])
    cfg = {"sources": [{"name": "q", "type": "sqs", "queue_url": url, "region": REGION,
                        "endpoint": proxy.url, "concurrency": concurrency}],
           "sinks": [{"name": "out", "type": "log", "path": "out.jsonl"}],
           "rules": [{"name": "kms", "pattern": {"source": ["aws.kms"]}, "targets": ["out"]}]}
    with open(os.path.join(d, "cfg.json"), "w") as f:
        json.dump(cfg, f, indent=1)

    log = LogReader(out, set(ids))
    feeder = Feeder(clients, url, bodies, first, backlog, lambda: log.found)
    counts = proxy.begin()
    errpath = os.path.join(d, "stderr.txt")
    problems = []
    with open(errpath, "wb") as err:
        moto0 = cpu_of(m.proc.pid)
        t0 = time.perf_counter()
        p = subprocess.Popen([kr, "run", "-c", "cfg.json"], cwd=d, env=router_env(d),
                             stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err)
        feeder.start()
        last, progress = 0, t0
        ended = None  # (status, rusage) of a kmsrouter that exited by itself
        while True:
            time.sleep(POLL)
            log.read()
            now = time.perf_counter()
            if log.found == n:
                break
            if log.lines != last:
                last, progress = log.lines, now
            pid, status, ru = os.wait4(p.pid, os.WNOHANG)
            if pid:
                ended = status, ru
                p.returncode = os.waitstatus_to_exitcode(status)
                problems.append("kmsrouter exited early (status %d)" % p.returncode)
                break
            if feeder.error:
                problems.append("the feeder failed: %s" % feeder.error)
                break
            if now - progress > STALL:
                problems.append("nothing delivered for %d s" % STALL)
                break
        t1 = time.perf_counter()
        feeder.done.set()
        killed = []
        if ended:
            status, ru = ended
        else:
            os.kill(p.pid, signal.SIGTERM)
            timer = threading.Timer(60, lambda: (killed.append(1), os.kill(p.pid,
                                                                           signal.SIGKILL)))
            timer.start()
            _, status, ru = os.wait4(p.pid, 0)
            timer.cancel()
            p.returncode = os.waitstatus_to_exitcode(status)
        t2 = time.perf_counter()
        moto1 = cpu_of(m.proc.pid)
        code = os.waitstatus_to_exitcode(status)
    with proxy.lock:
        counts.over = True
    feeder.join(60)
    log.read()
    log.close()
    with open(errpath, errors="replace") as f:
        stderr = f.read()

    if killed:
        problems.append("did not stop within 60 s of SIGTERM")
    elif code != 0:
        problems.append("exit status %d" % code)
    missing = [i for i in ids if i not in log.ids]
    if missing:
        problems.append("%d of %d messages not delivered" % (len(missing), n))
    # a message delivered twice: the queue handed it out twice (moto's receives are not atomic
    # across its threads: two at once can both take a message; SQS standard queues are
    # at-least-once too), or kmsrouter delivered what it received once twice (a failure)
    twice = {i: c for i, c in log.ids.items() if c > 1}
    ours = {i: c for i, c in twice.items() if c > counts.handed[i]}
    redelivered = [(i, counts.message_ids[i]) for i in twice if i not in ours]
    if ours:
        problems.append("%d messages delivered more often than the queue handed them out "
                        "(such as %s: %d times, handed out %d)" % (
                            len(ours), next(iter(ours)), next(iter(ours.values())),
                            counts.handed[next(iter(ours))]))
    unknown = len(set(log.ids) - set(ids))
    if unknown or log.bad:
        problems.append("%d lines with an unknown id, %d not events" % (unknown, log.bad))
    extra = sum(log.ids.values()) - len(log.ids)
    s = SUMMARY.search(stderr)
    if not s:
        problems.append("no summary line")
    else:
        read, events, invalid, ok, dead, unacked = map(int, s.groups())
        if read != n + extra or ok != n + extra or invalid or dead or unacked:
            problems.append("summary: %d records read (%d invalid), %d deliveries succeeded, %d "
                            "dead-lettered, %d left unacknowledged; expected %d"
                            % (read, invalid, ok, dead, unacked, n + extra))
    attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    left = {k: int(attrs[k]) for k in ("ApproximateNumberOfMessages",
                                       "ApproximateNumberOfMessagesNotVisible",
                                       "ApproximateNumberOfMessagesDelayed")}
    if any(left.values()):
        problems.append("the queue is not empty afterwards: %s" % ", ".join(
            "%s %d" % (k[len("ApproximateNumberOf"):], v) for k, v in left.items() if v))
    if counts.entries["DeleteMessageBatch"] < n:
        problems.append("%d messages in DeleteMessageBatch requests, expected %d"
                        % (counts.entries["DeleteMessageBatch"], n))
    if problems:
        tail = "\n      ".join(stderr.strip().splitlines()[-3:])
        raise RunFailed("; ".join(problems) + " (%s)\n      %s" % (errpath, tail))
    cpu = ru.ru_utime + ru.ru_stime
    return {"n": n, "wall": t1 - t0, "stop": t2 - t1, "user": ru.ru_utime, "sys": ru.ru_stime,
            "cpu": cpu, "us": cpu / n * 1e6, "moto": moto1 - moto0,
            "moto_us": (moto1 - moto0) / n * 1e6, "counts": counts,
            "requests": sum(counts.actions.values()), "fed": feeder.requests,
            "redelivered": redelivered,
            "warnings": stderr.count("level=warn"), "errors_logged": stderr.count("level=error")}


# ------------------------------------------------------------------------------------ report

HEAD = "%-7s %7s %10s %8s %8s %8s %8s %8s %8s %9s %8s %7s  %s"


def rdv(r):
    """Receives, deletes and visibility changes per message: what the target is about."""
    a = r["counts"].actions
    return sum(a[x] for x in ACTIONS[:3]) / r["n"]


def row(label, r, fixed):
    n = r["n"]
    a = r["counts"].actions
    return HEAD % (label, "%.1f" % r["wall"], fmt_int(n / r["wall"]), fmt_int(r["requests"]),
                   "%.4f" % (a["ReceiveMessage"] / n), "%.4f" % (a["DeleteMessageBatch"] / n),
                   "%.4f" % (a["ChangeMessageVisibilityBatch"] / n), "%.4f" % rdv(r),
                   "%.2f" % r["us"], "(%.2f)" % ((r["cpu"] - fixed) / n * 1e6),
                   fmt_int(r["moto_us"]),
                   "%.0fx" % (r["moto"] / r["cpu"]) if r["cpu"] else "-", verdict(r))


def verdict(r):
    missed = []
    if r["us"] > TARGET_US:
        missed.append("CPU")
    if rdv(r) > TARGET_REQUESTS:
        missed.append("requests")
    return "misses (%s)" % ", ".join(missed) if missed else "meets"


def main():
    workdir, kr, nevents, repeat, concurrency, keepalive = sys.argv[1:7]
    nevents, repeat, concurrency = int(nevents), int(repeat), int(concurrency)
    keepalive = keepalive == "1"
    started = time.time()
    backlog = backlog_for(concurrency)

    events = os.path.join(workdir, "events-%d.jsonl" % nevents)
    size, kms, ct = generate(events, nevents, int(time.time()))
    with open(events) as f:
        bodies = [line.rstrip("\n") for line in f]
    ids = [json.loads(b)["id"] for b in bodies]
    if len(set(ids)) != len(ids):
        print("sqs_run.py: the generated event ids are not unique", file=sys.stderr)
        return 2

    m = Moto()
    proxy = CountingProxy(m.port, keepalive)
    clients = sqs_clients(m, feeders_for(concurrency))
    failure = None
    results = []
    try:
        print("one-message runs", end="", file=sys.stderr, flush=True)
        fixed = []
        for _ in range(3):
            fixed.append(run_once(kr, m, proxy, clients, workdir, bodies[:1], ids[:1],
                                  concurrency,
                                  backlog)["cpu"])
            print(".", end="", file=sys.stderr, flush=True)
        fixed = min(fixed)
        print(file=sys.stderr)
        for i in range(repeat):
            print("run %d of %d: %s messages ..." % (i + 1, repeat, fmt_int(nevents)), end="",
                  file=sys.stderr, flush=True)
            r = run_once(kr, m, proxy, clients, workdir, bodies, ids, concurrency, backlog)
            results.append(r)
            print(" %.1f s" % r["wall"], file=sys.stderr, flush=True)
    except Exception as e:  # noqa: BLE001 - RunFailed, or moto or boto3 failing
        print(file=sys.stderr)
        failure = str(e)
    finally:
        proxy.stop()
        m.stop()

    print()
    print("input: %s events, %.1f MB (%s KMS, %s CloudTrail), one a message; %s"
          % (fmt_int(nevents), size / 1e6, fmt_int(kms), fmt_int(ct), events))
    print("sqs source (concurrency %d, max_messages 10, wait_time_seconds 20, the queue's "
          "visibility timeout) -> one rule -> log sink; moto %s on loopback, reset before "
          "every run" % (concurrency, metadata.version("moto")))
    print("the queue is fed as it drains (%d threads), kept at %d messages sent and not yet "
          "delivered (moto's SQS costs O(queue length) per message); kmsrouter %s" % (
              len(clients), backlog,
              "through a keep-alive proxy (KEEPALIVE=0: a connection per request)" if keepalive
              else "through a proxy that closes every connection, as moto does (KEEPALIVE=0)"))
    print("CPU: user + system time of the kmsrouter process alone and of moto_server "
          "(/proc), each from kmsrouter's start to its exit, per message")
    print()
    if results:
        print("per message: requests (ReceiveMessage, DeleteMessageBatch, "
              "ChangeMessageVisibilityBatch, their sum: target <= %g), CPU us of kmsrouter "
              "(target <= %g) and of moto" % (TARGET_REQUESTS, TARGET_US))
        print(HEAD % ("run", "wall s", "messages/s", "requests", "receive", "delete",
                      "visibil.", "sum", "CPU us", "(-fixed)", "moto us", "moto/kr",
                      "verdict"))
        for i, r in enumerate(results, 1):
            print(row("%d" % i, r, fixed))
        by_cpu = sorted(results, key=lambda r: r["us"])
        if len(results) > 1:
            print(row("best", by_cpu[0], fixed))
            print(row("median", by_cpu[(len(by_cpu) - 1) // 2], fixed))
        print()
        print("wall: kmsrouter's start to the last message in the log file (messages/s = "
              "messages / wall); the stop after it (SIGTERM to exit): %s s" % ", ".join(
                  "%.2f" % r["stop"] for r in results))
        print("CPU per message, user + system, us: " + "; ".join(
            "%.2f + %.2f" % (r["user"] / r["n"] * 1e6, r["sys"] / r["n"] * 1e6)
            for r in results))
        print("fixed cost (-fixed: the least CPU of three one-message runs: start, libcurl and "
              "libcrypto, GetQueueAttributes, stop): %.1f ms" % (fixed * 1e3))
        print("moto's CPU (it serves the feeder's SendMessageBatch too): %s s, %s of the wall "
              "time" % (", ".join("%.1f" % r["moto"] for r in results),
                        ", ".join("%.0f%%" % (100 * r["moto"] / (r["wall"] + r["stop"]))
                                  for r in results)))
        for i, r in enumerate(results, 1):
            c = r["counts"]
            pr = c.per_receive
            full = sum(1 for x in pr if x == 10)
            print("run %d: %s; receives answered while kmsrouter ran %d: %d with 10 messages, "
                  "%d fewer, %d empty (mean %.2f), %d long polls open at its stop; entries: %s"
                  % (i, ", ".join("%s %d" % (a, c.actions[a]) for a in ACTIONS),
                     len(pr), full, sum(1 for x in pr if 0 < x < 10),
                     sum(1 for x in pr if x == 0), sum(pr) / len(pr) if pr else 0,
                     c.actions["ReceiveMessage"] - len(pr),
                     ", ".join("%s %d" % kv for kv in sorted(c.entries.items())) or "none"))
            other = {k: v for k, v in c.actions.items() if k not in ACTIONS}
            notes = []
            if other:
                notes.append("other requests: %s" % other)
            if set(c.statuses) - {200}:
                notes.append("answers: %s" % dict(c.statuses))
            if c.failed_entries:
                notes.append("failed entries: %s" % dict(c.failed_entries))
            if r["redelivered"]:
                gaps = [(h[1][1] - h[0][1]) * 1e3 for _, h in r["redelivered"] if len(h) > 1]
                notes.append("%d messages delivered twice, each handed out twice by moto (%s; "
                             "the second %s ms after the first, within the 30 s visibility "
                             "timeout: moto's concurrent receives took the same message)" % (
                                 len(r["redelivered"]),
                                 "same MessageId" if all(len({x[0] for x in h}) == 1
                                                         for _, h in r["redelivered"])
                                 else "MessageIds differ",
                                 "/".join("%.0f" % g for g in gaps[:5])))
            if c.errors:
                notes.append("proxy errors: %d (%s)" % (len(c.errors), c.errors[0]))
            if r["warnings"] or r["errors_logged"]:
                notes.append("kmsrouter logged %d warnings, %d errors" % (r["warnings"],
                                                                          r["errors_logged"]))
            if notes:
                print("       " + "; ".join(notes))
    if failure:
        print("FAILED: %s" % failure)
    print()
    twice = sum(len(r["redelivered"]) for r in results)
    print("benchmark took %.0f s; %s" % (
        time.time() - started,
        "FAILED" if failure else
        "every run delivered all %s messages %s and left the queue empty (targets are "
        "reported, not enforced)" % (fmt_int(nevents), "exactly once" if not twice else
                                     "(%d twice, handed out twice by moto)" % twice)))
    return 1 if failure else 0


if __name__ == "__main__":
    sys.exit(main())
