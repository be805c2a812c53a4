#!/usr/bin/env python3
"""Endurance: a daemon that runs for years must neither lose, duplicate nor grow while its
configuration is reloaded under steady load.

    python3 tests/integration/endurance_test.py PATH_TO_KMSROUTER [CASE]

reloads_under_load_lose_nothing_duplicate_nothing_and_do_not_grow
    `kmsrouter run` follows a file the test appends to (about 1,600 events a second, in batches
    every 50 ms, each with an id of its own) for 16 s, while SIGHUP every 0.5 s switches between
    two valid configurations with the same source. They differ in their rules' names and how the
    rules split the events and their targets, in the http sink's headers, in whether one log
    sink writes metadata and in another's fsync interval; but both deliver every aws.kms event
    exactly once to each of the three sinks (two log sinks, one http sink served by a loopback
    HTTP/1.1 keep-alive server in this script), so what each sink must hold does not depend on
    which configuration handled an event. Meanwhile /metrics is scraped every second (200
    each time) and the process's VmRSS, open fds and threads are sampled every 0.5 s.
    Checks: after the load every id reaches each sink exactly once (the file source never
    delivers again); both configurations did route events; kmsrouter_reloads_total counts
    every SIGHUP as a success and none as a failure; SIGTERM exits 0 with a summary of 0
    dead-lettered and 0 left unacknowledged; the http sink's requests go over a few kept
    connections; open fds (sockets apart), and threads, after the
    first 3 s stay within a small constant of their count at 3 s; RSS in the last third of the
    load stays within 4 MiB of the second third's (not checked under a sanitizer, whose
    allocator keeps freed memory in quarantine). The samples are printed as notes.

Same conventions as run_tests.py (whose helpers it uses): `ok NAME`, `FAIL NAME: reason`,
notes on lines starting with '#'; exit status 1 when a case failed. Python 3 standard library
only. About 20 s, in a release build as with ASan.
"""
import collections
import http.server
import json
import os
import signal
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import run_tests as rt  # noqa: E402
from run_tests import (Router, append, check, metric, parse_metrics, wait_for,  # noqa: E402
                       write_json)
from faithfulness_test import summary  # noqa: E402
from testlib import Failure, free_port, http_get, note, sample_events  # noqa: E402

TESTS = []


def test(fn):
    TESTS.append(fn)
    return fn


# ---------------------------------------------------------------- the load and its schedule

LOAD_SECONDS = 16.0     # appending, reloading, scraping and sampling go on this long
BATCH_EVERY = 0.05      # an append of BATCH events this often: 1,600 events a second, 4,800
BATCH = 80              # deliveries, which the ASan build also keeps up with on 2 CPUs
RELOAD_EVERY = 0.5
SAMPLE_EVERY = 0.5
SCRAPE_EVERY = 1.0
BASELINE_AT = 3.0       # fds and threads are compared with their sample at this point
DRAIN_TIMEOUT = 45.0    # for the last events to reach every sink once the appending stops
HTTP_CONCURRENCY = 8    # the http sink's requests in flight: enough for the rate, and few, so
                        # that the connections curl keeps vary little (SOCKET_MARGIN)

# Growth allowed after 3 s. Each check compares the least count a later sample saw (over its
# 0.5 s, read every 50 ms or sooner; Sampler) with the most the sample at 3 s saw, so that only
# what stays through a whole 0.5 s counts, and a dip at 3 s does not make the base too low.
# fds other than sockets: the steady set (stdio, the followed file, the two log files, the
# epoll fd, the signalfd) is open by 3 s. A reload retires a generation with its own two log
# files, which stay open until its last delivery ends: within milliseconds, but a slow moment
# of the http server (this script's, sharing 2 CPUs) can keep it, and the one retired 0.5 s
# later, alive through a sample: +2 each, 4. Leaking the log files of each reload (+50 by the
# end) or one fd per reload (+25) or per scrape (+13) goes past it.
FD_MARGIN = 4
# sockets: the metrics listener and libmicrohttpd's own, and curl's kept connections to the
# http sink, one per request in flight (HTTP/1.1), so up to HTTP_CONCURRENCY. At a reload the
# retired generation's requests still hold theirs while the new one's take others from curl's
# cache (shared by the generations) or open new ones: up to HTTP_CONCURRENCY more per
# generation alive, two of them. A connection leaked per reload (+25) or per request goes past
# it.
SOCKET_MARGIN = 2 * HTTP_CONCURRENCY
# connections the http sink opens in all: curl keeps as many open as requests were in flight at
# once (twice that), so the whole load goes over a few; a cache that closes connections as a
# burst drains opens hundreds (one per 50 requests was seen).
MOST_CONNECTIONS = 3 * HTTP_CONCURRENCY
# threads: kmsrouter's loop and libmicrohttpd's thread serving /metrics; libcurl may start a
# resolver thread for a moment (not needed for 127.0.0.1) and a sanitizer runtime may start a
# background one: 2. A thread left behind by each reload (+25) or scrape (+13) goes past it.
THREAD_MARGIN = 2
# RSS: glibc's malloc grows and trims its heap in steps (128 KiB of top pad, 1 MiB heaps in a
# thread's arena, a trim only past 128 KiB free at the top), transparent huge pages can back a
# region with 2 MiB at once, and the records in flight at a sample vary by some hundred KiB: a
# couple of such steps, 4 MiB. A third of the load is 8,500 events (25,600 deliveries) and 10
# reloads: memory kept at a rate of about 500 bytes per event or 400 KiB per reload goes past
# it (the ASan build's leak check at exit finds memory that is lost rather than kept).
RSS_MARGIN_KIB = 4 * 1024

SANITIZER_LIBS = ('libasan', 'libtsan', 'libmsan', 'liblsan', 'libclang_rt.asan',
                  'libclang_rt.tsan', 'libclang_rt.msan', 'libclang_rt.lsan')
SANITIZER_SYMBOLS = (b'__asan_init', b'__tsan_init', b'__msan_init', b'__lsan_init')


def sanitizer(binary, pid):
    """The sanitizer runtime the router runs with (one whose allocator holds on to freed memory
    and maps shadow memory, so that RSS says nothing about leaks), or None. Two ways, so that
    both gcc's and clang's builds are seen: the shared libraries the running process mapped
    (/proc/PID/maps: gcc links libasan.so dynamically), then the runtime's entry symbols in the
    binary itself (clang links its runtime statically; a gcc build also names __asan_init as
    a dynamic symbol it imports). The string "AddressSanitizer" is not a sign: it is in
    libasan.so, not in a gcc-built binary."""
    try:
        with open('/proc/%d/maps' % pid) as f:
            maps = f.read()
    except OSError:
        maps = ''
    for lib in SANITIZER_LIBS:
        if '/' + lib in maps:
            return lib
    with open(binary, 'rb') as f:
        data = f.read()
    for sym in SANITIZER_SYMBOLS:
        if sym in data:
            return sym.decode()
    return None


# ---------------------------------------------------------------- events

def event_templates():
    """One JSON line per sample event (tests/data/events), with @ID@ where its id goes (the
    inner event's for the SNS envelope, which the router unwraps)."""
    out = []
    for name, ev in sorted(sample_events().items()):
        ev = dict(ev)
        if 'Message' in ev:
            inner = json.loads(ev['Message'])
            inner['id'] = '@ID@'
            ev['Message'] = json.dumps(inner, separators=(',', ':'))
            ev['MessageId'] = 'msg-@ID@'
        else:
            ev['id'] = '@ID@'
        check(json.loads(ev['Message'])['source'] == 'aws.kms' if 'Message' in ev
              else ev['source'] == 'aws.kms', 'sample event %s is not aws.kms' % name)
        out.append(json.dumps(ev, separators=(',', ':')) + '\n')
    return out


def event_id(n):
    return 'end-%06d' % n


# ---------------------------------------------------------------- the http sink's server

class Server:
    """A loopback HTTP/1.1 server with kept connections that answers 200 to every POST and
    records each body with the configuration header it came with."""

    def __init__(self):
        self.lock = threading.Lock()
        self.requests = []  # (body bytes, X-Kr-Config, client port)
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = 'HTTP/1.1'
            # the status line and headers go in one write, the body in another: with Nagle's
            # algorithm the body waits for the client's delayed ACK (40 ms) once a kept
            # connection has left quick-ack mode, which caps each connection at 25 requests a
            # second and makes the router fall behind for the test's own fault
            disable_nagle_algorithm = True

            def do_POST(self):
                n = int(self.headers.get('Content-Length', 0))
                body = self.rfile.read(n)
                with outer.lock:
                    outer.requests.append((body, self.headers.get('X-Kr-Config'),
                                           self.client_address[1]))
                try:
                    self.send_response(200)
                    self.send_header('Content-Length', '2')
                    self.end_headers()
                    self.wfile.write(b'ok')
                except OSError:
                    pass

            def log_message(self, *a):
                pass

        self.httpd = http.server.ThreadingHTTPServer(('127.0.0.1', 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def count(self):
        with self.lock:
            return len(self.requests)

    def received(self):
        """[(body, X-Kr-Config)] of every request so far."""
        with self.lock:
            return [(b, h) for b, h, _ in self.requests]

    def connections(self):
        with self.lock:
            return set(c for _, _, c in self.requests)

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(10)


# ---------------------------------------------------------------- the two configurations

def config(variant, http_port, metrics_port):
    """Configuration A or B. Both deliver every aws.kms event exactly once to each of meta,
    plain and hook, through differently named and split rules; their sinks differ in options.
    The source is the same (a changed source would need a restart)."""
    kms = {'source': ['aws.kms']}
    deletion = {'source': ['aws.kms'], 'detail-type': ['KMS CMK Deletion']}
    not_deletion = {'source': ['aws.kms'],
                    'detail-type': [{'anything-but': 'KMS CMK Deletion'}]}
    if variant == 'A':
        rules = [{'name': 'a-deletions', 'pattern': deletion, 'targets': ['meta', 'plain', 'hook']},
                 {'name': 'a-the-rest', 'pattern': not_deletion,
                  'targets': ['hook', 'meta', 'plain']}]
    else:
        rules = [{'name': 'b-logs', 'pattern': kms, 'targets': ['plain', 'meta']},
                 {'name': 'b-http', 'pattern': {'source': [{'prefix': 'aws.'}],
                                                'account': [{'exists': True}]},
                  'targets': ['hook']}]
    return {
        'sources': [{'name': 'in', 'type': 'file', 'paths': ['in.jsonl'], 'follow': True,
                     'poll_interval_ms': 50}],
        'sinks': [
            {'name': 'meta', 'type': 'log', 'path': 'meta.jsonl', 'metadata': True,
             'fsync_interval_ms': 1000 if variant == 'A' else 500},
            {'name': 'plain', 'type': 'log', 'path': 'plain.jsonl', 'metadata': variant == 'B'},
            # a generous timeout: a request retried after a slow answer from this script's
            # server would show as a duplicate that is no fault of the router
            {'name': 'hook', 'type': 'http', 'url': 'http://127.0.0.1:%d/hook' % http_port,
             'headers': {'X-Kr-Config': variant}, 'timeout_ms': 30000,
             'concurrency': HTTP_CONCURRENCY},
        ],
        'rules': rules,
        'metrics': {'listen': '127.0.0.1:%d' % metrics_port},
    }


# ---------------------------------------------------------------- the process

Sample = collections.namedtuple('Sample', 'when rss files files_max sockets sockets_max threads '
                                           'threads_max appended at_meta')


class Sampler:
    """The router's VmRSS, open fds (sockets apart from the rest) and threads. fds and threads
    are read at every step of the test's loop (every 50 ms or sooner); each sample (every
    SAMPLE_EVERY) keeps the least and the most of them since the one before, and RSS once. The
    checks compare the least of later samples with the most of the one at BASELINE_AT: a leaked
    fd or thread is there at every read, whereas what comes and goes as designed is not (a
    reload's new log files open next to those of the generation it retires until its last
    delivery ends, a scrape's connection, curl closing a kept connection and opening another)."""

    def __init__(self, pid):
        self.pid = pid
        self.samples = []
        self.reads = []  # (files, sockets, threads) since the last sample

    def peek(self):
        fd_dir = '/proc/%d/fd' % self.pid
        try:
            with open('/proc/%d/status' % self.pid) as f:
                status = f.read()
            files = sockets = 0
            for fd in os.listdir(fd_dir):
                try:
                    target = os.readlink(os.path.join(fd_dir, fd))
                except FileNotFoundError:  # closed since the listing
                    continue
                if target.startswith('socket:'):
                    sockets += 1
                else:
                    files += 1
        except OSError as e:
            raise Failure('cannot read /proc/%d (did kmsrouter exit?): %s' % (self.pid, e))
        fields = dict(line.split(':', 1) for line in status.splitlines() if ':' in line)
        self.reads.append((files, sockets, int(fields['Threads'])))
        return int(fields['VmRSS'].split()[0])

    def sample(self, when, appended, at_meta):
        rss = self.peek()
        files, sockets, threads = zip(*self.reads)
        self.samples.append(Sample(when, rss, min(files), max(files), min(sockets),
                                   max(sockets), min(threads), max(threads), appended, at_meta))
        self.reads = []

    def series(self, field, most=None):
        if most:
            return ' '.join('%.1f:%s-%s' % (x.when, getattr(x, field), getattr(x, most))
                            for x in self.samples)
        return ' '.join('%.1f:%s' % (x.when, getattr(x, field)) for x in self.samples)


class LineCounter:
    """The lines of a file that only grows, counted as it grows (reading only what is new)."""

    def __init__(self, path):
        self.path, self.offset, self.n = path, 0, 0

    def __call__(self):
        try:
            with open(self.path, 'rb') as f:
                f.seek(self.offset)
                data = f.read()
        except FileNotFoundError:
            return 0
        self.offset += len(data)
        self.n += data.count(b'\n')
        return self.n


def http_id(body):
    """The id of the event an http request carried (a body that is not one says so)."""
    try:
        return json.loads(body).get('id')
    except (ValueError, AttributeError):
        return 'not an event: %.60r' % body


def delivered_ids(lines):
    """The event ids of a log sink's lines, whether written with metadata or not; and the
    (rule, sink) pairs of those with metadata."""
    ids, routes = [], []
    for o in lines:
        if isinstance(o, dict) and 'payload' in o and 'received_time' in o:
            routes.append((o.get('rule'), o.get('sink')))
            o = o['payload']
        ids.append(o.get('id') if isinstance(o, dict) else None)
    return ids, routes


def once_each(label, got, n):
    """What is wrong with got, the ids a sink received, against every id event_id(0..n-1) once
    and nothing else; None when nothing is."""
    seen = collections.Counter(got)
    want = set(event_id(k) for k in range(n))
    missing = sorted(want - set(seen))
    extra = sorted((i for i in seen if i not in want), key=str)
    dups = sorted(i for i, c in seen.items() if c > 1 and i in want)
    if not missing and not extra and not dups:
        return None
    return ('%s: %d deliveries of %d events, want each once: %d missing (first: %s), %d '
            'duplicated (first: %s), %d unexpected ids (first: %s)'
            % (label, len(got), n, len(missing), missing[:5], len(dups),
               ['%s x%d' % (i, seen[i]) for i in dups[:5]], len(extra), extra[:5]))


def complete_lines(path):
    """The JSON values of a sink file's complete lines (for a diagnosis while it is written)."""
    try:
        with open(path, 'rb') as f:
            data = f.read()
    except FileNotFoundError:
        return []
    out = []
    for line in data.split(b'\n')[:-1]:
        try:
            out.append(json.loads(line))
        except ValueError:
            out.append(None)
    return out


@test
def reloads_under_load_lose_nothing_duplicate_nothing_and_do_not_grow(t):
    templates = event_templates()
    metrics_port = free_port()
    srv = Server()
    try:
        _run(t, templates, srv, metrics_port)
    finally:
        for p in t.procs:  # the router first, so that it does not talk to a closed server
            p.stop()
        srv.stop()


def _run(t, templates, srv, metrics_port):
    cfg_path, in_path = t.path('config.json'), t.path('in.jsonl')
    meta_path, plain_path = t.path('meta.jsonl'), t.path('plain.jsonl')
    at_meta, at_plain = LineCounter(meta_path), LineCounter(plain_path)
    open(in_path, 'w').close()
    write_json(cfg_path, config('A', srv.port, metrics_port))
    r = Router(t, ['run', '-c', cfg_path])
    url = 'http://127.0.0.1:%d/metrics' % metrics_port

    def scrape():
        try:
            return http_get(url, timeout=2)
        except OSError as e:
            return None, str(e)

    wait_for(lambda: scrape()[0] == 200, 15, 'the metrics endpoint', proc=r)
    san = sanitizer(rt.KR, r.pid)
    proc = Sampler(r.pid)
    total = 0

    def append_events(k):
        nonlocal total
        append(in_path, ''.join(templates[(total + i) % len(templates)]
                                .replace('@ID@', event_id(total + i)) for i in range(k)))
        total += k

    # the load: every step does what is due, then sleeps until the next thing is (<= 50 ms)
    hups = scrapes = 0
    variant = 'A'
    t0 = time.monotonic()
    next_batch = next_sample = 0.0
    next_reload, next_scrape = RELOAD_EVERY, SCRAPE_EVERY
    while True:
        now = time.monotonic() - t0
        if now >= LOAD_SECONDS:
            break
        check(r.running(), 'kmsrouter exited (status %s) %.1f s into the load: %s'
              % (r.p.returncode, now, r.stderr_tail()))
        proc.peek()
        if now >= next_batch:
            # a batch per BATCH_EVERY that passed, so the rate holds after a late step
            late = int((now - next_batch) / BATCH_EVERY) + 1
            append_events(BATCH * min(late, 4))
            next_batch += late * BATCH_EVERY
        if now >= next_reload:
            variant = 'B' if variant == 'A' else 'A'
            write_json(cfg_path, config(variant, srv.port, metrics_port))  # renamed into place
            r.signal(signal.SIGHUP)
            hups += 1
            next_reload += RELOAD_EVERY
        if now >= next_sample:
            proc.sample(now, total, at_meta())
            next_sample += SAMPLE_EVERY
        if now >= next_scrape:
            status, body = scrape()
            check(status == 200, 'GET /metrics %.1f s into the load answered %s, want 200: %.200s'
                  % (now, status, body))
            scrapes += 1
            next_scrape += SCRAPE_EVERY
        wake = min(next_batch, next_reload, next_sample, next_scrape, now + 0.05)
        time.sleep(max(0.0, wake - (time.monotonic() - t0)))
    load_took = time.monotonic() - t0
    note('%d events appended in %.1f s (%.0f/s), %d SIGHUPs, %d scrapes; %d events not yet at '
         'meta when the appending stopped' % (total, load_took, total / load_took, hups, scrapes,
                                              total - at_meta()))

    # every event at every sink
    def counts():
        return at_meta(), at_plain(), srv.count()
    drain0 = time.monotonic()
    try:
        wait_for(lambda: min(counts()) >= total, DRAIN_TIMEOUT, 'every event at every sink',
                 proc=r, interval=0.1)
    except Failure as e:
        problems = [once_each('meta', delivered_ids(complete_lines(meta_path))[0], total),
                    once_each('plain', delivered_ids(complete_lines(plain_path))[0], total),
                    once_each('hook (http)', [http_id(b) for b, _ in srv.received()], total)]
        raise Failure('%s: of %d events, meta has %d lines, plain %d, the http server got %d; %s'
                      % ((e, total) + counts() + ('; '.join(x for x in problems if x),)))
    note('the backlog drained in %.1f s' % (time.monotonic() - drain0))
    for _ in range(5):  # the drained router, read like the others
        proc.peek()
        time.sleep(0.05)
    proc.sample(time.monotonic() - t0, total, at_meta())

    # what the process looked like, before a check can fail
    note('RSS KiB (time:value) %s' % proc.series('rss'))
    note('open fds but sockets (time:least-most) %s' % proc.series('files', 'files_max'))
    note('sockets (time:least-most) %s' % proc.series('sockets', 'sockets_max'))
    note('threads (time:least-most) %s' % proc.series('threads', 'threads_max'))
    note('backlog (time:appended but not yet at meta) %s'
         % ' '.join('%.1f:%d' % (x.when, x.appended - x.at_meta) for x in proc.samples))
    note('the http sink made %d requests over %d connections'
         % (srv.count(), len(srv.connections())))
    check(len(srv.connections()) <= MOST_CONNECTIONS,
          'the http sink made %d requests over %d connections, want at most %d: kept '
          'connections are not being reused' % (srv.count(), len(srv.connections()),
                                                 MOST_CONNECTIONS))

    # every SIGHUP counted as a successful reload, none as a failed one
    got = {}

    def reloads_settled():
        status, text = scrape()
        if status != 200:
            return False
        m = parse_metrics(text)
        got['success'] = metric(m, 'kmsrouter_reloads_total', result='success')
        got['failure'] = metric(m, 'kmsrouter_reloads_total', result='failure')
        return got['success'] is not None and got['success'] >= hups
    try:
        wait_for(reloads_settled, 10, 'kmsrouter_reloads_total{result="success"} to reach %d'
                 % hups, proc=r, interval=0.2)
    except Failure as e:
        raise Failure('%s: it is %s (failures: %s)' % (e, got.get('success'), got.get('failure')))
    check(got['success'] == hups and got['failure'] == 0,
          'kmsrouter_reloads_total: success %s, failure %s; want %d (the SIGHUPs sent) and 0'
          % (got['success'], got['failure'], hups))

    r.signal(signal.SIGTERM)
    rc = r.wait(30, 'kmsrouter to exit after SIGTERM')
    err = r.stderr()
    check(rc == 0, 'exit status %s after SIGTERM, want 0: %s' % (rc, r.stderr_tail()))
    check('reload failed' not in err, 'a reload failed: %s' % r.stderr_tail())
    sm = summary(err)
    want = {'records': total, 'events': total, 'invalid': 0, 'matched': total,
            'unmatched': 0, 'delivered': 3 * total, 'dead_lettered': 0, 'unacked': 0}
    check(all(sm[k] == v for k, v in want.items()),
          'summary %s, want %s' % ({k: sm[k] for k in want}, want))

    # exactly once at each sink (read after the exit: nothing more can come)
    meta_ids, meta_routes = delivered_ids(rt.parse_lines(meta_path))
    plain_ids, plain_routes = delivered_ids(rt.parse_lines(plain_path))
    received = srv.received()
    http_ids = [http_id(b) for b, _ in received]
    headers = collections.Counter(h for _, h in received)
    problems = [once_each('meta', meta_ids, total), once_each('plain', plain_ids, total),
                once_each('hook (http)', http_ids, total)]
    check(not any(problems), '; '.join(x for x in problems if x))

    # both configurations routed events, each through its own rules and sinks
    to_meta = {'a-deletions', 'a-the-rest', 'b-logs'}
    wrong = sorted(set(x for x in meta_routes if x[1] != 'meta' or x[0] not in to_meta))
    check(len(meta_routes) == total and not wrong,
          'meta: %d of %d lines with metadata, want all; lines naming other rules or sinks: %s'
          % (len(meta_routes), total, wrong[:5]))
    meta_by_rule = collections.Counter(ru for ru, _ in meta_routes)
    check(set(meta_by_rule) == to_meta,
          'meta got events from the rules %s, want from each of %s (did the reloads take?)'
          % (sorted(meta_by_rule), sorted(to_meta)))
    wrong = sorted(set(x for x in plain_routes if x != ('b-logs', 'plain')))
    check(0 < len(plain_routes) < total and not wrong,
          'plain: %d of %d lines with metadata, want some (config B) but not all (config A); '
          'lines naming other rules or sinks than b-logs, plain: %s'
          % (len(plain_routes), total, wrong[:5]))
    check(set(headers) == {'A', 'B'},
          'the http requests carried X-Kr-Config %s, want both A and B' % dict(headers))
    note('deliveries at meta per rule: %s; http requests per config: %s; lines with metadata at '
         'plain (config B): %d of %d' % (dict(meta_by_rule), dict(headers), len(plain_routes),
                                         total))

    # growth: fds and threads, the least of each later sample against the most of the one at
    # 3 s (see FD_MARGIN)
    base = next((x for x in proc.samples if x.when >= BASELINE_AT), None)
    check(base is not None, 'no sample after %.0f s' % BASELINE_AT)
    later = [x for x in proc.samples if x.when > base.when]
    for field, margin, what in (('files', FD_MARGIN, 'open fds other than sockets'),
                                ('sockets', SOCKET_MARGIN, 'open sockets'),
                                ('threads', THREAD_MARGIN, 'threads')):
        most = field + '_max'
        worst = max(later, key=lambda x: getattr(x, field))
        check(getattr(worst, field) <= getattr(base, most) + margin,
              '%s grew from at most %d at %.1f s to at least %d at %.1f s (at most +%d allowed); '
              'each sample (time:least-most): %s'
              % (what, getattr(base, most), base.when, getattr(worst, field), worst.when,
                 margin, proc.series(field, most)))

    # growth: RSS, the last third of the load against the second
    if san:
        note('RSS not checked: kmsrouter runs with a sanitizer runtime (%s), whose allocator '
             'keeps freed memory in quarantine' % san)
        return
    thirds = [[x.rss for x in proc.samples if k * LOAD_SECONDS / 3 <= x.when
               < (k + 1) * LOAD_SECONDS / 3] for k in (1, 2)]
    check(all(thirds), 'too few RSS samples: %s' % proc.series('rss'))
    check(max(thirds[1]) <= max(thirds[0]) + RSS_MARGIN_KIB,
          'RSS grew: at most %d KiB over %.1f-%.1f s of the load, then up to %d KiB over '
          '%.1f-%.1f s (at most +%d KiB allowed); RSS KiB (time:value) %s'
          % (max(thirds[0]), LOAD_SECONDS / 3, 2 * LOAD_SECONDS / 3, max(thirds[1]),
             2 * LOAD_SECONDS / 3, LOAD_SECONDS, RSS_MARGIN_KIB, proc.series('rss')))
    note('RSS: at most %d KiB in the second third of the load, %d KiB in the last (+%d KiB '
         'allowed)' % (max(thirds[0]), max(thirds[1]), RSS_MARGIN_KIB))


def main():
    return rt.main(TESTS, 'endurance', __doc__)


if __name__ == '__main__':
    sys.exit(main())
