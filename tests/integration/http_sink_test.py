#!/usr/bin/env python3
"""The http sink against a test HTTP server on loopback (python3's http.server), real processes.

    python3 tests/integration/http_sink_test.py PATH_TO_KMSROUTER [name-filter]

Each scenario starts a server that answers in one way, runs `kmsrouter run` over a file of
events with a dead-letter log sink, and checks what the server received, what was
dead-lettered (with the reason), the exit status, and that the API key never reaches the logs.
"""
import http.server
import json
import os
import socket
import subprocess
import sys
import threading
import time
from testlib import check, free_port, run_cases  # noqa: E402

KR = os.path.abspath(sys.argv[1]) if len(sys.argv) > 1 and sys.argv[1] != "--list" else None
SECRET = "s3cret-api-key-value"
EVENTS = 20


class Server:
    """A loopback HTTP server whose answers come from a function of the request number."""

    def __init__(self, answer):
        self.answer = answer
        self.requests = []  # (number, body, headers)
        self.lock = threading.Lock()
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):
                n = int(self.headers.get("Content-Length", 0))
                body = self.rfile.read(n)
                with outer.lock:
                    outer.requests.append((body, dict(self.headers)))
                    num = len(outer.requests)
                code, headers, delay = outer.answer(num, body)
                if delay:
                    time.sleep(delay)
                payload = b"reason from the server"
                try:
                    self.send_response(code)
                    for k, v in headers.items():
                        self.send_header(k, v)
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                except OSError:
                    pass

            def log_message(self, *a):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()

    def bodies(self):
        with self.lock:
            return [json.loads(b) for b, _ in self.requests]



def write_events(d):
    path = os.path.join(d, "events.jsonl")
    with open(path, "w") as f:
        for i in range(EVENTS):
            f.write(json.dumps({
                "version": "0", "id": "ev-%03d" % i, "detail-type": "KMS CMK Deletion",
                "source": "aws.kms", "account": "111122223333",
                "time": "2024-03-01T12:00:00Z", "region": "us-west-2",
                "resources": ["arn:aws:kms:us-west-2:111122223333:key/k%d" % i],
                "detail": {"key-id": "k%d" % i}}) + "\n")
    return path


def run(d, port, retry, timeout_ms=10000, dead_letter=True, extra_env=None, sink_extra=None):
    sink = {"name": "hook", "type": "http", "url": "http://127.0.0.1:%d/hook" % port,
            "api_key_header": "x-api-key", "api_key_env": "KR_TEST_HOOK_KEY",
            "retry": retry, "timeout_ms": timeout_ms}
    if dead_letter:
        sink["dead_letter"] = "dlq"
    sink.update(sink_extra or {})
    cfg = {"sources": [{"name": "in", "type": "file", "paths": [write_events(d)]}],
           "sinks": [sink, {"name": "dlq", "type": "log", "path": "dlq.jsonl"}],
           "rules": [{"name": "deleted", "pattern": {"detail-type": ["KMS CMK Deletion"]},
                      "targets": ["hook"]}]}
    with open(os.path.join(d, "cfg.json"), "w") as f:
        json.dump(cfg, f)
    env = dict(os.environ)
    env["KR_TEST_HOOK_KEY"] = SECRET
    env.update(extra_env or {})
    start = time.time()
    p = subprocess.run([KR, "run", "-c", os.path.join(d, "cfg.json")], cwd=d, env=env,
                       capture_output=True, text=True, timeout=90)
    elapsed = time.time() - start
    dlq_path = os.path.join(d, "dlq.jsonl")
    dlq = []
    if os.path.exists(dlq_path):
        with open(dlq_path) as f:
            dlq = [json.loads(line) for line in f if line.strip()]
    return p, dlq, elapsed


def ids(events):
    return sorted(e["id"] for e in events)


ALL = ["ev-%03d" % i for i in range(EVENTS)]
FAST = {"max_attempts": 4, "initial_backoff_ms": 20, "max_backoff_ms": 100}


def no_secret(p):
    check(SECRET not in p.stdout and SECRET not in p.stderr, "the API key appears in the output")


def test_success_delivers_every_event_with_the_api_key(d):
    srv = Server(lambda n, b: (200, {}, 0))
    try:
        p, dlq, _ = run(d, srv.port, FAST)
        check(p.returncode == 0, "exit %d: %s" % (p.returncode, p.stderr[-500:]))
        check(ids(srv.bodies()) == ALL, "server got %s" % ids(srv.bodies()))
        check(all(h.get("x-api-key") == SECRET for _, h in srv.requests), "api key header missing")
        check(all(h.get("Content-Type") == "application/json" for _, h in srv.requests),
              "content type")
        check(dlq == [], "dead letters: %s" % dlq)
        no_secret(p)
    finally:
        srv.stop()


def test_429_with_retry_after_is_honoured(d):
    # the first request of every event is refused with 429 and Retry-After: 1
    seen = set()
    lock = threading.Lock()

    def answer(n, body):
        key = json.loads(body)["id"]
        with lock:
            first = key not in seen
            seen.add(key)
        return (429, {"Retry-After": "1"}, 0) if first else (200, {}, 0)

    srv = Server(answer)
    try:
        p, dlq, elapsed = run(d, srv.port, FAST)
        check(p.returncode == 0, "exit %d: %s" % (p.returncode, p.stderr[-500:]))
        check(sorted(set(ids(srv.bodies()))) == ALL, "not every event arrived")
        check(len(srv.requests) == 2 * EVENTS, "requests: %d" % len(srv.requests))
        check(elapsed >= 0.95, "Retry-After ignored: done in %.2f s" % elapsed)
        check(dlq == [], "dead letters: %s" % dlq)
    finally:
        srv.stop()


def test_500_for_a_while_then_recovery_loses_nothing(d):
    srv = Server(lambda n, b: (500, {}, 0) if n <= 30 else (200, {}, 0))
    try:
        p, dlq, _ = run(d, srv.port, {"max_attempts": 10, "initial_backoff_ms": 20,
                                      "max_backoff_ms": 100})
        check(p.returncode == 0, "exit %d: %s" % (p.returncode, p.stderr[-500:]))
        ok = [json.loads(b)["id"] for b, _ in srv.requests[30:]]
        check(sorted(set(ok)) == ALL, "delivered after recovery: %s" % sorted(set(ok)))
        check(dlq == [], "dead letters: %s" % dlq)
    finally:
        srv.stop()


def test_400_goes_straight_to_the_dead_letter_sink(d):
    srv = Server(lambda n, b: (400, {}, 0))
    try:
        p, dlq, _ = run(d, srv.port, FAST)
        check(p.returncode == 0, "exit %d (the source must be acknowledged)" % p.returncode)
        check(len(srv.requests) == EVENTS, "a permanent failure was retried: %d requests"
              % len(srv.requests))
        check(ids([x["event"] for x in dlq]) == ALL, "dead letters: %s" % dlq)
        for x in dlq:
            check(x["rule"] == "deleted" and x["target"] == "hook", "rule/target: %s" % x)
            check(x["error_code"] == "HTTP400" and "reason from the server" in x["error_message"],
                  "reason: %s" % x)
            check(x["attempts"] == 1, "attempts: %s" % x["attempts"])
            check(x["first_attempt_time"] and x["last_attempt_time"], "times")
        no_secret(p)
    finally:
        srv.stop()


def test_server_that_never_answers_times_out_then_dead_letters(d):
    srv = Server(lambda n, b: (200, {}, 5))  # answers after 5 s, the sink waits 300 ms
    try:
        p, dlq, _ = run(d, srv.port, {"max_attempts": 2, "initial_backoff_ms": 20,
                                      "max_backoff_ms": 50}, timeout_ms=300,
                        sink_extra={"concurrency": EVENTS})
        check(p.returncode == 0, "exit %d: %s" % (p.returncode, p.stderr[-500:]))
        check(ids([x["event"] for x in dlq]) == ALL, "dead letters: %d" % len(dlq))
        check(all(x["error_code"] == "Timeout" and x["attempts"] == 2 for x in dlq),
              "reasons: %s" % dlq[:1])
    finally:
        srv.stop()


def test_connection_refused_is_retried_then_dead_lettered(d):
    port = free_port()  # nothing listens there
    p, dlq, _ = run(d, port, FAST)
    check(p.returncode == 0, "exit %d: %s" % (p.returncode, p.stderr[-500:]))
    check(ids([x["event"] for x in dlq]) == ALL, "dead letters: %d" % len(dlq))
    check(all(x["error_code"] == "ConnectionError" and x["attempts"] == 4 for x in dlq),
          "reasons: %s" % dlq[:1])


def test_without_a_dead_letter_sink_the_record_is_not_acknowledged(d):
    port = free_port()
    p, dlq, _ = run(d, port, FAST, dead_letter=False)
    check(p.returncode == 1, "exit %d, expected 1" % p.returncode)
    check("not acknowledged" in p.stderr, "no error logged: %s" % p.stderr[-300:])
    no_secret(p)


def test_missing_api_key_variable_is_a_startup_error(d):
    srv = Server(lambda n, b: (200, {}, 0))
    try:
        p, _, _ = run(d, srv.port, FAST, extra_env={"KR_TEST_HOOK_KEY": ""})
        check(p.returncode == 2, "exit %d, expected 2" % p.returncode)
        check("KR_TEST_HOOK_KEY" in p.stderr, "message: %s" % p.stderr)
        check(srv.requests == [], "requests were sent")
    finally:
        srv.stop()


def test_rate_limit_spaces_the_requests(d):
    # 20 events at 8 requests/s: a burst of 8, the other 12 over about 1.5 s
    srv = Server(lambda n, b: (200, {}, 0))
    try:
        p, dlq, elapsed = run(d, srv.port, FAST, sink_extra={"rate_limit": 8})
        check(p.returncode == 0, "exit %d: %s" % (p.returncode, p.stderr[-500:]))
        check(ids(srv.bodies()) == ALL, "not every event arrived")
        check(elapsed >= 1.3, "rate limit ignored: %d requests in %.2f s" % (EVENTS, elapsed))
        check(elapsed < 10, "far too slow: %.2f s" % elapsed)
    finally:
        srv.stop()


CASES = [globals()[k] for k in sorted(k for k in globals() if k.startswith("test_"))]


if __name__ == "__main__":
    sys.exit(run_cases(CASES, "http sink", "kmsrouter-http-", __doc__))
