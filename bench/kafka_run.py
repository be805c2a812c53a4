#!/usr/bin/env python3
"""Running, checking and reporting half of bench/kafka.sh (stdlib only; needs kcat and GNU time).

    python3 bench/kafka_run.py WORKDIR DATA_DIR KMSROUTER KAFKA_MOCK KAFKA_OFFSETS EVENTS REPEAT
                               PARTITIONS BROKERS MAX_IN_FLIGHT PROPERTIES PERF

DATA_DIR is bench/match_gen.py's output for EVENTS events with its prefix at EVENTS/4
(events.jsonl, events-head.jsonl, config-1000.json and its expected counts). Starts one
kafka-mock (tests/integration/kafka_harness.py) with the topics kms-events (every event) and
kms-events-quarter (the first EVENTS/4), PARTITIONS partitions each ("auto": enough that no
partition passes the mock's 5 MiB), produces both with `kcat -P -l` and checks their watermarks
(kcat -Q). Then REPEAT rounds of: kcat -C and kcat -G on the full topic, kmsrouter on the full
and the quarter topic, kcat -G on the quarter topic. Every consumer runs under GNU time, whose
%U %S %M are the process's own CPU and peak RSS (its wait4()); kmsrouter is found as time's
child for its SIGTERM. kcat's stderr (without -q) is read as it comes: its "rebalanced ...
assigned" line is the end of its group join, its "Reached end of topic T [P] at offset O" lines
must cover every partition at its high watermark, and the last of them is when it was done.
kmsrouter's metrics endpoint is polled every POLL s: done is the first scrape with every record
read and none in flight; then every input's lag must reach 0 within LAG_WAIT s; its group join
ends at its "partitions assigned" line. Its summary line must match the generator's counts and,
with KAFKA_OFFSETS (the tests' kafka-offsets, where built), its group must have committed the
end of every partition.
kafka-mock's CPU over each run is utime + stime of /proc/PID/stat.
Exit status: 0 when every run read every record; 1 when one did not or failed (missed targets
do not change it); 2 on a usage error.
"""

import calendar
import json
import math
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests",
                                "integration"))
from kafka_harness import KafkaMock, KafkaMockError  # noqa: E402

TOPIC = "kms-events"
QUARTER = "kms-events-quarter"
RULES = 1000
# the targets: kmsrouter's events/s against kcat -G's; the full topic's peak RSS against
# the quarter's
TARGET_RATIO = 0.5
TARGET_RSS_GROWTH = 1.25
MOCK_PARTITION_BYTES = 5 << 20   # what kafka-mock keeps of a partition (librdkafka's mock)
AUTO_PARTITION_BYTES = 4 << 20   # PARTITIONS=auto: the full topic's bytes per partition
PRODUCER = ["-X", "linger.ms=1000", "-X", "batch.size=1000000", "-X", "batch.num.messages=10000",
            "-X", "sticky.partitioning.linger.ms=0", "-X", "queue.buffering.max.messages=2000000",
            "-X", "queue.buffering.max.kbytes=2097151"]
POLL = 0.05          # metrics scrapes; kmsrouter publishes them every 200 ms
STALL = 60           # a run that reads nothing for this long is a failure
START_LIMIT = 30     # the metrics endpoint must answer within this
STOP_LIMIT = 60      # SIGTERM to exit
LAG_WAIT = 10        # after every record is done, how long the lag series may take to reach 0
TIME = "/usr/bin/time"
TICK = os.sysconf("SC_CLK_TCK")
SUMMARY = re.compile(
    r"(\d+) records read \((\d+) events, (\d+) invalid\), (\d+) already done, (\d+) outside the "
    r"time range, (\d+) matched, (\d+) unmatched, (\d+) deliveries succeeded, (\d+) deliveries "
    r"dead-lettered, (\d+) invalid records dead-lettered, (\d+) records left unacknowledged")
END_LINE = re.compile(r"Reached end of topic (\S+) \[(\d+)\] at offset (\d+)")
ASSIGNED = re.compile(r"rebalanced .*assigned: (.*)")


class RunFailed(Exception):
    pass


def fmt_int(n):
    return "{:,}".format(int(round(n)))


def cpu_of(pid):
    """utime + stime of a process (all its threads), in seconds."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Timed:
    """argv under GNU time: .pid is time's, .child() the measured process's; .finish() waits and
    returns (wall s from the start, user s, sys s, peak RSS KiB) of the measured process."""

    def __init__(self, argv, cwd=None, stderr=None):
        self.tf = tempfile.NamedTemporaryFile("r", prefix="kafka-bench-time-")
        self.t0 = time.perf_counter()
        self.proc = subprocess.Popen([TIME, "-f", "%e %U %S %M %x", "-o", self.tf.name] + argv,
                                     cwd=cwd, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=stderr)
        self.pid = self.proc.pid
        self._child = None

    def child(self):
        """The measured process's pid (time's only child), once it exists."""
        if self._child is None:
            path = "/proc/%d/task/%d/children" % (self.pid, self.pid)
            for _ in range(5000):
                try:
                    with open(path) as f:
                        kids = f.read().split()
                except OSError:
                    kids = []
                if kids:
                    self._child = int(kids[0])
                    break
                if self.proc.poll() is not None:
                    raise RunFailed("%s exited at once" % TIME)
                time.sleep(0.001)
            else:
                raise RunFailed("%s started no process" % TIME)
        return self._child

    def finish(self, timeout=None):
        self.proc.wait(timeout)
        wall = time.perf_counter() - self.t0
        fields = self.tf.read().split()
        self.tf.close()
        # time writes "Command exited with non-zero status N" first when it did
        try:
            _, user, sys_, rss, code = fields[-5:]
            return wall, float(user), float(sys_), int(rss), int(code)
        except ValueError:
            raise RunFailed("no figures from %s: %r" % (TIME, fields)) from None


# ------------------------------------------------------------------------------------- topics

def watermarks(bootstrap, topic, partitions):
    """{partition: (low, high)} with kcat -Q (-2: the first offset, -1: the end)."""
    def query(ts):
        argv = ["kcat", "-Q", "-b", bootstrap]
        for p in range(partitions):
            argv += ["-t", "%s:%d:%d" % (topic, p, ts)]
        r = subprocess.run(argv, capture_output=True, text=True, timeout=60)
        out = {}
        for line in r.stdout.splitlines():
            m = re.match(r"\s*(\S+) \[(\d+)\] offset (-?\d+)", line)
            if m and m.group(1) == topic:
                out[int(m.group(2))] = int(m.group(3))
        if r.returncode != 0 or len(out) != partitions:
            raise RunFailed("kcat -Q %s: %s" % (topic, (r.stderr or r.stdout).strip()[-300:]))
        return out
    low, high = query(-2), query(-1)
    return {p: (low[p], high[p]) for p in range(partitions)}


def produce(bootstrap, topic, path, n, partitions):
    """Produces path's lines to topic with kcat -P; returns its seconds; checks that every
    partition still starts at 0 (the mock dropped nothing) and the ends add up to n."""
    t0 = time.perf_counter()
    r = subprocess.run(["kcat", "-P", "-b", bootstrap, "-t", topic, "-l", path] + PRODUCER,
                       capture_output=True, text=True, timeout=1800)
    secs = time.perf_counter() - t0
    if r.returncode != 0:
        raise RunFailed("kcat -P %s exited %d: %s" % (topic, r.returncode, r.stderr[-500:]))
    wm = watermarks(bootstrap, topic, partitions)
    dropped = {p: lo for p, (lo, hi) in wm.items() if lo != 0}
    total = sum(hi for lo, hi in wm.values())
    if dropped:
        raise RunFailed("kafka-mock dropped the first messages of %d partitions of %s (it keeps "
                        "5 MiB a partition): more PARTITIONS" % (len(dropped), topic))
    if total != n:
        raise RunFailed("%s holds %d messages, expected %d" % (topic, total, n))
    return secs, wm


# --------------------------------------------------------------------------------------- kcat

def run_kcat(mock, label, topic, n, wm, extra, group=None):
    """One kcat consumer run from the beginning of topic to the end of every partition."""
    b = mock.bootstrap
    if group:
        argv = ["kcat", "-b", b, "-G", group, "-X", "auto.offset.reset=earliest", "-e"] + extra \
            + [topic]
    else:
        argv = ["kcat", "-C", "-b", b, "-t", topic, "-o", "beginning", "-e"] + extra
    m0 = cpu_of(mock.proc.pid)
    t = Timed(argv, stderr=subprocess.PIPE)
    lines = []

    def read():
        for raw in t.proc.stderr:
            lines.append((time.perf_counter() - t.t0, raw.decode(errors="replace").rstrip()))
    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    limit = 120 + n / 10000.0
    try:
        wall, user, sys_, rss, code = t.finish(timeout=limit)
    except subprocess.TimeoutExpired:
        t.proc.kill()
        t.proc.wait()
        raise RunFailed("%s did not end within %.0f s" % (label, limit)) from None
    reader.join(10)
    mock_cpu = cpu_of(mock.proc.pid) - m0
    problems = []
    if code != 0:
        problems.append("exit status %d" % code)
    ends = {}
    join = last_end = None
    for when, line in lines:
        m = END_LINE.search(line)
        if m and m.group(1) == topic:
            ends[int(m.group(2))] = int(m.group(3))
            last_end = when
        if join is None and ASSIGNED.search(line):
            join = when
    short = [p for p in wm if ends.get(p) != wm[p][1]]
    if short:
        problems.append("did not reach the end of %d partitions (such as %d: %s of %d)"
                        % (len(short), short[0], ends.get(short[0]), wm[short[0]][1]))
    errors = [x for _, x in lines if "ERROR" in x or "FAIL" in x]
    if errors:
        problems.append(errors[0])
    if group and join is None:
        problems.append("no group assignment seen")
    if problems:
        raise RunFailed("%s: %s" % (label, "; ".join(problems)))
    # done: when it had read the end of every partition (its exit after that, closing the
    # consumer, leaving the group and committing, is not counted, as kmsrouter's stop is not)
    return {"label": label, "n": n, "wall": last_end, "exit": wall, "join": join, "user": user,
            "sys": sys_, "cpu": user + sys_, "rss": rss, "mock": mock_cpu}


# ---------------------------------------------------------------------------------- kmsrouter

def scrape(port):
    """(records read, records in flight, {input: lag}) of the kafka source, or None."""
    try:
        with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % port, timeout=2) as r:
            text = r.read().decode()
    except OSError:
        return None
    records = in_flight = None
    lags = {}
    for line in text.splitlines():
        if line.startswith('kmsrouter_records_total{source="kafka"} '):
            records = int(line.rsplit(" ", 1)[1])
        elif line.startswith("kmsrouter_in_flight_records "):
            in_flight = int(line.rsplit(" ", 1)[1])
        elif line.startswith('kmsrouter_source_input_lag{source="kafka",'):
            m = re.search(r'input="([^"]*)"\} (-?\d+)', line)
            if m:
                lags[m.group(1)] = int(m.group(2))
    if records is None or in_flight is None:
        return None
    return records, in_flight, lags


def router_config(mock, topic, group, rules, max_in_flight, properties, port):
    source = {"name": "kafka", "type": "kafka", "brokers": mock.bootstrap, "topics": [topic],
              "group_id": group, "start": "earliest", "commit_interval_ms": 1000}
    if properties:
        source["properties"] = properties
    return {"sources": [source],
            "sinks": [{"name": "out", "type": "log", "path": "/dev/null"}],
            "rules": rules,
            "max_in_flight": max_in_flight,
            "metrics": {"listen": "127.0.0.1:%d" % port}}


def committed(offsets_tool, bootstrap, group, topic):
    """{partition: (committed, high)} of group on topic, from kafka-offsets."""
    r = subprocess.run([offsets_tool, bootstrap, group, topic], capture_output=True, text=True,
                       timeout=60)
    if r.returncode != 0:
        raise RunFailed("kafka-offsets %s %s: %s" % (group, topic, r.stderr.strip()[-300:]))
    out = {}
    for line in r.stdout.splitlines():
        d = json.loads(line)
        out[d["partition"]] = (d["committed"], d["high"])
    return out


def run_router(kr, mock, offsets_tool, workdir, label, topic, n, expected, rules, max_in_flight,
               properties, perf=None):
    """One kmsrouter run over topic; perf: a perf.data path to record the run into."""
    d = os.path.join(workdir, "run-" + label.replace(" ", "-"))
    os.makedirs(d, exist_ok=True)
    group = "bench-%d-%d" % (os.getpid(), int(time.time() * 1000))
    port = free_port()
    with open(os.path.join(d, "cfg.json"), "w") as f:
        json.dump(router_config(mock, topic, group, rules, max_in_flight, properties, port), f)
    errpath = os.path.join(d, "stderr.txt")
    problems = []
    perf_proc = None
    with open(errpath, "wb") as err:
        m0 = cpu_of(mock.proc.pid)
        wall0 = time.time()
        t = Timed([kr, "run", "-c", "cfg.json"], cwd=d, stderr=err)
        pid = t.child()
        if perf:
            # system-wide (-a), read for kmsrouter's pid only: with -p, the threads librdkafka
            # starts after the attach are not sampled
            perf_proc = subprocess.Popen(["perf", "record", "-F", "999", "-g", "-a", "-o", perf],
                                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        first = done = lag0 = None
        last, progress = -1, time.perf_counter()
        state = None
        while True:
            time.sleep(POLL)
            now = time.perf_counter() - t.t0
            if t.proc.poll() is not None:
                problems.append("kmsrouter exited early")
                break
            state = scrape(port)
            if state is None:
                if now > START_LIMIT and first is None:
                    problems.append("no metrics within %d s" % START_LIMIT)
                    break
                continue
            records, in_flight, lags = state
            if records and first is None:
                first = now
            if records != last:
                last, progress = records, time.perf_counter()
            if done is None and records >= n and in_flight == 0:
                done = now
            if done is not None and all(v == 0 for v in lags.values()):
                lag0 = now
                break
            if done is not None and now - done > LAG_WAIT:
                break
            if time.perf_counter() - progress > STALL:
                problems.append("nothing read for %d s (%d of %d records, %d in flight)"
                                % (STALL, records, n, in_flight))
                break
        if perf_proc:
            perf_proc.send_signal(signal.SIGINT)
            perf_proc.wait(60)
        t_stop = time.perf_counter()
        killed = False
        if t.proc.poll() is None:
            os.kill(pid, signal.SIGTERM)
            try:
                t.proc.wait(STOP_LIMIT)
            except subprocess.TimeoutExpired:
                killed = True
                os.kill(pid, signal.SIGKILL)
        stop = time.perf_counter() - t_stop
        _, user, sys_, rss, code = t.finish(timeout=30)
        mock_cpu = cpu_of(mock.proc.pid) - m0
    with open(errpath, errors="replace") as f:
        stderr = f.read()

    if killed:
        problems.append("did not stop within %d s of SIGTERM" % STOP_LIMIT)
    elif code != 0:
        problems.append("exit status %d" % code)
    lags = state[2] if state else {}
    if done is not None and lag0 is None and lags:
        problems.append("input lag not 0 %d s after every record was done: %s" % (
            LAG_WAIT, ", ".join("%s %d" % kv for kv in sorted(lags.items()) if kv[1])[:300]))
    s = SUMMARY.search(stderr)
    if not s:
        problems.append("no summary line")
    else:
        (read, events, invalid, _, _, matched, unmatched, ok, dead, _, unacked) = \
            map(int, s.groups())
        want = (n, expected["matched"], expected["hits"])
        if (read, matched, ok) != want or invalid or dead or unacked:
            problems.append("summary: %d records read (%d invalid), %d matched, %d deliveries "
                            "succeeded, %d dead-lettered, %d left unacknowledged; expected %d "
                            "read, %d matched, %d deliveries" % ((read, invalid, matched, ok,
                                                                   dead, unacked) + want))
    commits = None
    if offsets_tool and not problems:
        c = committed(offsets_tool, mock.bootstrap, group, topic)
        behind = {p: v for p, v in c.items() if v[0] != v[1]}
        if behind:
            p, (cm, hi) = sorted(behind.items())[0]
            problems.append("committed offsets short of the end on %d partitions (such as %d: "
                            "%s of %d)" % (len(behind), p, cm, hi))
        commits = len(c)
    if problems:
        tail = "\n      ".join(stderr.strip().splitlines()[-3:])
        raise RunFailed("%s: %s (%s)\n      %s" % (label, "; ".join(problems), errpath, tail))
    # the group join: to its "partitions assigned" line (its time= is UTC, to the millisecond),
    # else to the first scrape with a record read
    a = re.search(r"^time=(\S+) .*msg=\"partitions assigned\"", stderr, re.M)
    if a:
        when = calendar.timegm(time.strptime(a.group(1)[:19], "%Y-%m-%dT%H:%M:%S")) + \
            float("0" + a.group(1)[19:].rstrip("Z"))
        first = when - wall0
    return {"label": label, "n": n, "wall": done, "exit": None, "join": first, "lag0": lag0,
            "stop": stop, "user": user, "sys": sys_, "cpu": user + sys_, "rss": rss, "mock": mock_cpu,
            "commits": commits, "inputs": len(lags), "pid": pid,
            "warnings": stderr.count("level=warn"), "errors_logged": stderr.count("level=error"),
            "logged": sorted(set(re.findall(r"level=(?:warn|error) .*?msg=(\"[^\"]*\"|\S+)",
                                            stderr)))}


# ------------------------------------------------------------------------------------ report

HEAD = "%-5s %-22s %9s %7s %10s %10s %6s %7s %8s %8s %8s"


def row(rnd, r):
    after = r["n"] / (r["wall"] - r["join"]) if r["join"] is not None else None
    return HEAD % (rnd, r["label"], fmt_int(r["n"]), "%.2f" % r["wall"],
                   fmt_int(r["n"] / r["wall"]), fmt_int(after) if after else "-",
                   "%.2f" % r["join"] if r["join"] is not None else "-", "%.2f" % r["cpu"],
                   "%.2f" % (r["cpu"] / r["n"] * 1e6), "%.1f" % (r["rss"] / 1024.0),
                   "%.2f" % r["mock"])


def med(xs):
    return statistics.median(xs) if xs else float("nan")


def perf_report(path, pid):
    """The top of perf report on pid's samples (percentages of them): by thread, and by library
    and by symbol for all its threads and for its main thread (where the router works; the
    rdk:broker threads are librdkafka's fetchers)."""
    def report(who, sort):
        r = subprocess.run(["perf", "report", "-i", path, who, str(pid), "--percentage",
                            "relative", "--stdio", "--no-children", "-g", "none", "--sort",
                            sort], capture_output=True, text=True, timeout=300)
        rows = []
        for line in r.stdout.splitlines():
            f = line.split()
            if len(f) >= 2 and not line.startswith("#") and f[0].endswith("%"):
                rows.append((float(f[0][:-1]), f[1:]))
        return rows
    out = ["perf, kmsrouter's threads (% of its samples): " + ", ".join(
        "%s %.1f%%" % (" ".join(f), pct) for pct, f in report("--pid", "pid")[:8])]
    for who, label in (("--pid", "all threads"), ("--tid", "main thread")):
        rows = report(who, "dso,sym")
        libs = {}
        for pct, f in rows:
            libs[f[0]] = libs.get(f[0], 0) + pct
        out.append("perf, %s, by library: %s" % (label, ", ".join(
            "%s %.1f%%" % kv for kv in sorted(libs.items(), key=lambda kv: -kv[1])[:6])))
        out.append("perf, %s, top symbols:" % label)
        out += ["  %5.2f%%  %s" % (pct, " ".join(f)) for pct, f in rows[:20]]
    return "\n".join(out)


def main():
    (workdir, data, kr, mock_bin, offsets_tool, nevents, repeat, partitions, brokers,
     max_in_flight, properties, perf) = sys.argv[1:13]
    nevents, repeat, brokers, max_in_flight = map(int, (nevents, repeat, brokers, max_in_flight))
    perf = perf == "1"
    started = time.time()
    try:
        properties = json.loads(properties) if properties else {}
        if not isinstance(properties, dict) or not all(isinstance(v, str)
                                                       for v in properties.values()):
            raise ValueError("not an object of strings")
    except ValueError as e:
        print("kafka_run.py: PROPERTIES: %s" % e, file=sys.stderr)
        return 2
    extra = []
    for k, v in properties.items():
        extra += ["-X", "%s=%s" % (k, v)]

    with open(os.path.join(data, "info.json")) as f:
        info = json.load(f)
    with open(os.path.join(data, "config-%d.json" % RULES)) as f:
        rules = json.load(f)["rules"]
    with open(os.path.join(data, "config-%d.expected.json" % RULES)) as f:
        e = json.load(f)
    quarter = info["prefix_events"]
    expected = {TOPIC: {"matched": e["matched_events"], "hits": e["rule_hits"]},
                QUARTER: {"matched": e["prefix_matched_events"], "hits": e["prefix_rule_hits"]}}
    full_path = os.path.join(data, "events.jsonl")
    quarter_path = os.path.join(data, info["prefix_file"])
    if partitions == "auto":
        partitions = max(6, math.ceil(info["bytes"] / AUTO_PARTITION_BYTES))
    else:
        partitions = int(partitions)
        # each partition holds about bytes / partitions (random partitioning), plus ~2% of
        # batch headers; more than 90% of the mock's 5 MiB on average is refused
        if info["bytes"] * 1.02 / partitions > 0.9 * MOCK_PARTITION_BYTES:
            print("kafka_run.py: %d partitions cannot hold %.0f MB in kafka-mock, which keeps "
                  "5 MiB a partition: PARTITIONS=%d at least (or auto)"
                  % (partitions, info["bytes"] / 1e6,
                     math.ceil(info["bytes"] * 1.02 / (0.9 * MOCK_PARTITION_BYTES))),
                  file=sys.stderr)
            return 2

    results = []   # (round, result)
    failure = None
    perf_text = None
    produced = {}
    mock = None
    try:
        mock = KafkaMock(mock_bin, brokers=brokers,
                         topics={TOPIC: partitions, QUARTER: partitions})
        print("kafka-mock: %d brokers, %s and %s of %d partitions; producing ..."
              % (brokers, TOPIC, QUARTER, partitions), file=sys.stderr, flush=True)
        wms = {}
        for topic, path, n in ((TOPIC, full_path, nevents), (QUARTER, quarter_path, quarter)):
            secs, wms[topic] = produce(mock.bootstrap, topic, path, n, partitions)
            sizes = [hi for lo, hi in wms[topic].values()]
            produced[topic] = (n, secs, min(sizes), max(sizes))
            print("  %s: %s events in %.1f s" % (topic, fmt_int(n), secs), file=sys.stderr,
                  flush=True)
        plan = [("kcat -C", TOPIC), ("kcat -G", TOPIC), ("kmsrouter", TOPIC),
                ("kmsrouter", QUARTER), ("kcat -G", QUARTER)]
        for i in range(1, repeat + 1):
            print("round %d of %d:" % (i, repeat), end="", file=sys.stderr, flush=True)
            for what, topic in plan:
                n = nevents if topic == TOPIC else quarter
                label = "%s %s" % (what, "full" if topic == TOPIC else "quarter")
                if what == "kmsrouter":
                    r = run_router(kr, mock, offsets_tool, workdir, label, topic, n,
                                   expected[topic], rules, max_in_flight, properties)
                else:
                    group = "kcat-%d-%d" % (os.getpid(), int(time.time() * 1000)) \
                        if what == "kcat -G" else None
                    r = run_kcat(mock, label, topic, n, wms[topic], extra, group)
                results.append((i, r))
                print(" %s %.1f s" % (label, r["wall"]), end=",", file=sys.stderr, flush=True)
            print(file=sys.stderr)
        if perf:
            print("perf run ...", file=sys.stderr, flush=True)
            path = os.path.join(workdir, "perf.data")
            r = run_router(kr, mock, offsets_tool, workdir, "kmsrouter perf", TOPIC, nevents,
                           expected[TOPIC], rules, max_in_flight, properties, perf=path)
            perf_text = ("perf run (perf record -a -g, not counted above): %.2f s, %s events/s"
                         "\n" % (r["wall"], fmt_int(nevents / r["wall"]))
                         + perf_report(path, r["pid"]))
    except (RunFailed, KafkaMockError, OSError, subprocess.SubprocessError) as e:
        print(file=sys.stderr)
        failure = str(e)
    finally:
        if mock:
            mock.stop()

    kcat_v = subprocess.run(["kcat", "-V"], capture_output=True, text=True).stdout
    kv = re.search(r"Version (\S+)", kcat_v)
    m = re.search(r"librdkafka ([0-9][^ ]*)", kcat_v)
    print()
    print("input: %s events, %.1f MB (%s), bench/match_gen.py; %d rules, %s of them expected "
          "to match (%s deliveries); quarter: the first %s" % (
              fmt_int(nevents), info["bytes"] / 1e6,
              ", ".join("%s %s" % (k, fmt_int(v)) for k, v in info["counts"].items()
                        if not k.startswith(("rotation-", "ct-"))),
              RULES, fmt_int(expected[TOPIC]["matched"]), fmt_int(expected[TOPIC]["hits"]),
              fmt_int(quarter)))
    print("kafka-mock: %d brokers; %s and %s with %d partitions each, produced once with kcat -P "
          "(no keys, random partitions, 1 MB batches): %s" % (
              brokers, TOPIC, QUARTER, partitions, "; ".join(
                  "%s %.1f s, %s to %s messages a partition" % (t, v[1], fmt_int(v[2]),
                                                                 fmt_int(v[3]))
                  for t, v in produced.items())))
    print("kmsrouter: kafka source (start earliest, commit_interval_ms 1000%s) -> %d rules -> "
          "log sink on /dev/null, max_in_flight %d; kcat %s (librdkafka %s)%s" % (
              ", properties %s" % json.dumps(properties) if properties else "", RULES,
              max_in_flight, kv.group(1) if kv else "?", m.group(1) if m else "?",
              "; kcat -X %s too" % " ".join(extra[1::2]) if extra else ""))
    print("wall: the process's start to its last \"Reached end of topic\" line (kcat) or to "
          "the first metrics scrape with every record read and none in flight (kmsrouter; "
          "published every 200 ms, so up to 0.25 s late); after join: from the group's "
          "assignment (kcat -G: its \"rebalanced ... assigned\" line; kmsrouter: its "
          "\"partitions assigned\" line); CPU, peak RSS: the consumer's own (GNU time), start "
          "to exit; mock CPU: kafka-mock's over the same span")
    print()
    if results:
        print(HEAD % ("round", "consumer, topic", "events", "wall s", "events/s", "after join",
                      "join s", "CPU s", "CPU us/ev", "RSS MiB", "mock CPU"))
        for i, r in results:
            print(row(str(i), r))
        print()
        by = {}
        for i, r in results:
            by.setdefault(r["label"], {})[i] = r

        def rate(label):
            return med([r["n"] / r["wall"] for r in by.get(label, {}).values()])
        kr_full = by.get("kmsrouter full", {})
        for peer in ("kcat -G full", "kcat -C full"):
            pr = by.get(peer, {})
            ratios = [kr_full[i]["wall"] and (pr[i]["wall"] / kr_full[i]["wall"])
                      for i in kr_full if i in pr]
            if not ratios:
                continue
            r = med(ratios)
            print("events/s, full topic, medians: kmsrouter %s, %s %s; ratio kmsrouter/%s per "
                  "round %s, median %.2f%s" % (
                      fmt_int(rate("kmsrouter full")), peer, fmt_int(rate(peer)), peer[:7],
                      ", ".join("%.2f" % x for x in ratios), r,
                      " (target >= %.2f: %s)" % (TARGET_RATIO, "meets" if r >= TARGET_RATIO
                                                 else "misses")
                      if peer.startswith("kcat -G") else ""))
        growths = {}
        for who in ("kcat -G", "kmsrouter"):
            full, q = by.get(who + " full", {}), by.get(who + " quarter", {})
            if full and q:
                rf = med([r["rss"] for r in full.values()]) / 1024.0
                rq = med([r["rss"] for r in q.values()]) / 1024.0
                growth = growths[who] = rf / rq if rq else float("nan")
                verdict = ""
                if who == "kmsrouter":
                    bound = max(TARGET_RSS_GROWTH, growths.get("kcat -G", 0))
                    verdict = " (target <= x%.2f, or kcat -G's: %s)" % (
                        TARGET_RSS_GROWTH, "meets" if growth <= bound else "misses")
                print("peak RSS, %s: full topic %.1f MiB (runs %s), quarter %.1f MiB (runs %s): "
                      "x%.2f for x%.0f the events, %+.0f bytes per event more%s" % (
                          who, rf, "/".join("%.1f" % (r["rss"] / 1024.0) for r in full.values()),
                          rq, "/".join("%.1f" % (r["rss"] / 1024.0) for r in q.values()), growth,
                          nevents / quarter, (rf - rq) * 1048576 / (nevents - quarter),
                          verdict))
        for who in ("kmsrouter full", "kcat -G full", "kcat -C full"):
            rs = list(by.get(who, {}).values())
            if rs:
                print("CPU per event, %s: %s us user + %s us system (median %.2f us); kafka-mock "
                      "%.2f us" % (who, "/".join("%.2f" % (r["user"] / r["n"] * 1e6) for r in rs),
                                   "/".join("%.2f" % (r["sys"] / r["n"] * 1e6) for r in rs),
                                   med([r["cpu"] / r["n"] * 1e6 for r in rs]),
                                   med([r["mock"] / r["n"] * 1e6 for r in rs])))
        kcats = [r for _, r in results if r["label"].startswith("kcat")]
        if kcats:
            print("kcat: its exit after the end of the last partition (closing the consumer, "
                  "not counted): %s s" % "/".join("%.2f" % (r["exit"] - r["wall"])
                                                  for r in kcats))
        krs = [r for _, r in results if r["label"].startswith("kmsrouter")]
        if krs:
            print("kmsrouter: the lag series (%s inputs) at 0 %s s after done; the stop (SIGTERM "
                  "to exit) %s s; committed offsets %s" % (
                      "/".join(str(r["inputs"]) for r in krs),
                      "/".join("%.2f" % (r["lag0"] - r["wall"]) if r["lag0"] is not None
                               else "-" for r in krs),
                      "/".join("%.2f" % r["stop"] for r in krs),
                      "at the end of every partition" if all(r["commits"] for r in krs)
                      else "not checked (kafka-offsets not built)"))
            logged = [(r["warnings"], r["errors_logged"]) for r in krs]
            if any(w or x for w, x in logged):
                print("kmsrouter logged warnings/errors: %s (%s; the last run's stderr: %s)" % (
                    ", ".join("%d/%d" % wx for wx in logged),
                    "; ".join(sorted({m for r in krs for m in r["logged"]})),
                    os.path.join(workdir, "run-kmsrouter-*", "stderr.txt")))
    if perf_text:
        print()
        print(perf_text)
    if failure:
        print("FAILED: %s" % failure)
    print()
    print("benchmark took %.0f s; %s" % (
        time.time() - started,
        "FAILED" if failure else "every run read every record (targets are reported, not "
        "enforced)"))
    return 1 if failure else 0


if __name__ == "__main__":
    sys.exit(main())
