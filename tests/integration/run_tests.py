#!/usr/bin/env python3
"""Integration tests of `kmsrouter run` and `kmsrouter replay`: real processes, real files,
real signals, real HTTP.

    python3 tests/integration/run_tests.py PATH_TO_KMSROUTER [name-filter]

Prints `ok NAME` or `FAIL NAME: reason` per test (lines starting with '#' are notes: timings,
counts), exits 1 if any test failed. Every test works in its own temporary directory, starts the
processes it needs and stops them (by their own pid) before it ends. Python 3 standard library
only. See README.md next to this file for what each test proves.
"""
import copy
import glob
import gzip
import json
import re
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from testlib import Failure, check, free_port, http_get, run_cases  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
EVENTS_DIR = os.path.join(HERE, '..', 'data', 'events')
KR = None  # path of the binary under test (argv[1])



# ---------------------------------------------------------------- events

def _load_templates():
    t = {}
    for path in sorted(glob.glob(os.path.join(EVENTS_DIR, '*.json'))):
        with open(path) as f:
            t[os.path.basename(path)[:-5]] = json.load(f)
    return t


TEMPLATES = _load_templates()
KIND_FILES = {
    'deletion': 'kms-cmk-deletion',
    'rotation': 'kms-cmk-rotation',
    'rotation-on-demand': 'kms-cmk-rotation-on-demand',
    'expiration': 'kms-imported-key-material-expiration',
    'cloudtrail': 'cloudtrail-decrypt-pending-deletion',
    'sns-deletion': 'sns-envelope-kms-cmk-deletion',
}


def make_event(kind, eid, **fields):
    """Returns (what to write, the event the router delivers): a KMS event of one of the shapes
    in tests/data/events with id eid (for the SNS envelope, the inner event's id)."""
    tpl = copy.deepcopy(TEMPLATES[KIND_FILES[kind]])
    if kind == 'sns-deletion':
        inner = json.loads(tpl['Message'])
        inner['id'] = eid
        inner.update(fields)
        tpl['Message'] = json.dumps(inner, separators=(',', ':'))
        tpl['MessageId'] = 'msg-' + eid
        return tpl, inner
    tpl['id'] = eid
    tpl.update(fields)
    return tpl, tpl


def jsonl(objs):
    return ''.join(json.dumps(o) + '\n' for o in objs)


# ---------------------------------------------------------------- files and processes

def read_lines(path):
    """The file's lines (without newlines); [] when it does not exist."""
    try:
        with open(path, 'rb') as f:
            data = f.read()
    except FileNotFoundError:
        return []
    text = data.decode('utf-8', errors='replace')
    lines = text.split('\n')
    if lines and lines[-1] == '':
        lines.pop()
    return lines


def parse_lines(path):
    """Parsed JSON lines of a sink file; fails on any line that is not a JSON value or not
    terminated (a broken or partial line)."""
    try:
        with open(path, 'rb') as f:
            data = f.read()
    except FileNotFoundError:
        return []
    check(not data or data.endswith(b'\n'),
          '%s: last line is not terminated: %r' % (os.path.basename(path), data[-120:]))
    out = []
    for n, line in enumerate(data.decode('utf-8').split('\n')[:-1], 1):
        try:
            out.append(json.loads(line))
        except ValueError as e:
            raise Failure('%s:%d is not one JSON value (%s): %.200s'
                          % (os.path.basename(path), n, e, line))
    return out


def count_lines(path):
    try:
        with open(path, 'rb') as f:
            return f.read().count(b'\n')
    except FileNotFoundError:
        return 0


def ids_of(path):
    return [o.get('id') for o in parse_lines(path)]


def write_json(path, obj):
    tmp = path + '.tmp'
    with open(tmp, 'w') as f:
        json.dump(obj, f, indent=1)
    os.rename(tmp, path)


def append(path, text):
    """Appends text with one write(2), so a follower never sees half of it from us."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        data = text.encode()
        while data:
            n = os.write(fd, data)
            data = data[n:]
    finally:
        os.close(fd)




class Router:
    """One kmsrouter process; stdout and stderr go to files in the test's directory."""

    def __init__(self, t, args, cwd=None, label='kmsrouter', stdin=subprocess.DEVNULL):
        t.nproc += 1
        base = os.path.join(t.dir, '%s-%d' % (label, t.nproc))
        self.out_path, self.err_path = base + '.stdout', base + '.stderr'
        self.args = [KR] + args
        with open(self.out_path, 'wb') as out, open(self.err_path, 'wb') as err:
            self.p = subprocess.Popen(self.args, stdin=stdin, stdout=out,
                                      stderr=err, cwd=cwd or t.dir)
        self.started = time.monotonic()
        self.ended = None
        t.procs.append(self)

    @property
    def pid(self):
        return self.p.pid

    def stderr(self):
        with open(self.err_path, 'rb') as f:
            return f.read().decode('utf-8', errors='replace')

    def stderr_tail(self, n=6):
        return ' | '.join(self.stderr().strip().splitlines()[-n:])

    def running(self):
        return self.p.poll() is None

    def signal(self, sig):
        check(self.running(), 'kmsrouter exited early (status %s): %s'
              % (self.p.returncode, self.stderr_tail()))
        self.p.send_signal(sig)

    def wait(self, timeout, what='kmsrouter to exit'):
        try:
            rc = self.p.wait(timeout)
        except subprocess.TimeoutExpired:
            raise Failure('%s: still running after %.1f s; stderr: %s'
                          % (what, timeout, self.stderr_tail()))
        if self.ended is None:
            self.ended = time.monotonic()
        return rc

    def stop(self):
        """Cleanup: kills this process if it still runs (its own pid only)."""
        if self.p.poll() is None:
            self.p.kill()
            self.p.wait(10)


def wait_for(pred, timeout, what, proc=None, interval=0.02):
    """Polls pred() until it is true; fails after timeout seconds, or at once when proc (a Router
    that should keep running) has exited."""
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if proc is not None and not proc.running():
            raise Failure('kmsrouter exited (status %s) while waiting for %s; stderr: %s'
                          % (proc.p.returncode, what, proc.stderr_tail()))
        if time.monotonic() >= deadline:
            raise Failure('timed out after %.1f s waiting for %s' % (timeout, what))
        time.sleep(interval)


def expect_ids_once(path, expected, label):
    """Every id of expected exactly once in the sink file, and nothing else."""
    got = ids_of(path)
    seen = {}
    for i in got:
        seen[i] = seen.get(i, 0) + 1
    missing = [i for i in expected if i not in seen]
    extra = [i for i in seen if i not in expected]
    dups = [i for i, n in seen.items() if n > 1]
    check(not missing and not extra and not dups,
          '%s: %d lines for %d expected ids; %d missing (e.g. %s), %d unexpected (e.g. %s), '
          '%d duplicated (e.g. %s)' % (label, len(got), len(expected), len(missing),
                                      missing[:3], len(extra), extra[:3], len(dups), dups[:3]))


class T:
    """What a test gets: its directory and a place for notes."""

    def __init__(self, name, folder):
        self.name = name
        self.dir = folder
        self.procs = []
        self.nproc = 0
        self.notes = []

    def path(self, *p):
        return os.path.join(self.dir, *p)

    def note(self, msg):
        self.notes.append(msg)

    def run(self, args, timeout, cwd=None, what=None):
        """Runs kmsrouter to its end; returns (status, stderr text)."""
        r = Router(self, args, cwd=cwd)
        rc = r.wait(timeout, what or 'kmsrouter %s' % args[0])
        return rc, r.stderr()

    def cleanup(self):
        """Stops what the test started, and prints its notes."""
        for p in self.procs:
            try:
                p.stop()
            except Exception:
                pass
        for n in self.notes:
            print('# %s: %s' % (self.name, n))


def log_sink(name, path, **kw):
    d = {'name': name, 'type': 'log', 'path': path}
    d.update(kw)
    return d


def append_batch(t, kind, tag, n):
    """Appends n events of a kind to the test's followed in.jsonl; returns their ids."""
    evs = [make_event(kind, '%s-%03d' % (tag, i))[1] for i in range(n)]
    append(t.path('in.jsonl'), jsonl(evs))
    return [e['id'] for e in evs]


def follow_source(paths, **kw):
    d = {'name': 'in', 'type': 'file', 'paths': paths, 'follow': True, 'poll_interval_ms': 50}
    d.update(kw)
    return d


KMS = {'source': ['aws.kms']}


def by_type(*types):
    return {'source': ['aws.kms'], 'detail-type': list(types)}


# ---------------------------------------------------------------- tests

TESTS = []


def test(fn):
    TESTS.append(fn)
    return fn


@test
def run_delivers_every_event(t):
    """~2,000 events in JSON Lines, pretty-printed concatenated JSON and gzip, found through a
    glob, routed by detail-type to two log sinks: each event exactly once in each sink its rules
    name, none where they do not; exit 0 at the end of the input."""
    os.makedirs(t.path('conf', 'data', 'pretty'))
    os.makedirs(t.path('cwd'))
    kinds = ['deletion', 'rotation', 'rotation-on-demand', 'expiration', 'cloudtrail',
             'sns-deletion']
    written = {'jsonl': [], 'pretty': [], 'gz': []}
    delivered = []  # (kind, event)
    n = 0
    for part, count in (('jsonl', 1000), ('pretty', 500), ('gz', 520)):
        for i in range(count):
            kind = kinds[n % len(kinds)]
            w, ev = make_event(kind, 'ev-%05d-%s' % (n, kind))
            written[part].append(w)
            delivered.append((kind, ev))
            n += 1
    with open(t.path('conf', 'data', 'events.jsonl'), 'w') as f:
        f.write(jsonl(written['jsonl']))
    # pretty-printed objects one after another, split over two files matched by a glob
    half = len(written['pretty']) // 2
    for k, chunk in enumerate((written['pretty'][:half], written['pretty'][half:])):
        with open(t.path('conf', 'data', 'pretty', 'part%d.json' % k), 'w') as f:
            f.write('\n'.join(json.dumps(o, indent=2) for o in chunk) + '\n')
    with gzip.open(t.path('conf', 'data', 'events.jsonl.gz'), 'wt') as f:
        f.write(jsonl(written['gz']))
    cfg = {
        'sources': [{'name': 'in', 'type': 'file',
                     'paths': ['data/events.jsonl', 'data/pretty/*.json', 'data/*.gz']}],
        'sinks': [log_sink('keys-gone', 'out/keys-gone.jsonl'),
                  log_sink('key-changes', 'out/key-changes.jsonl')],
        'rules': [
            {'name': 'deleted', 'pattern': by_type('KMS CMK Deletion'), 'targets': ['keys-gone']},
            {'name': 'rotated', 'pattern': by_type('KMS CMK Rotation'),
             'targets': ['key-changes']},
            {'name': 'expired', 'pattern': by_type('KMS Imported Key Material Expiration'),
             'targets': ['keys-gone', 'key-changes']},
        ],
    }
    os.makedirs(t.path('conf', 'out'))
    write_json(t.path('conf', 'config.json'), cfg)
    # relative paths must resolve against the config's folder, not the working directory
    start = time.monotonic()
    rc, err = t.run(['run', '-c', '../conf/config.json'], timeout=60, cwd=t.path('cwd'))
    t.note('%d events in %.1f s' % (n, time.monotonic() - start))
    check(rc == 0, 'exit status %s, want 0; stderr: %s' % (rc, err.strip()[-500:]))
    gone = [e['id'] for k, e in delivered
            if k in ('deletion', 'sns-deletion', 'expiration')]
    changes = [e['id'] for k, e in delivered if k in ('rotation', 'rotation-on-demand',
                                                      'expiration')]
    expect_ids_once(t.path('conf', 'out', 'keys-gone.jsonl'), gone, 'keys-gone')
    expect_ids_once(t.path('conf', 'out', 'key-changes.jsonl'), changes, 'key-changes')
    # the payload is the event itself (for SNS, the inner event), not a wrapper
    want = {e['id']: e for _, e in delivered}
    for o in parse_lines(t.path('conf', 'out', 'keys-gone.jsonl')):
        check(o == want[o['id']], 'keys-gone: delivered %s differs from the event sent'
              % o['id'])
    check(not os.listdir(t.path('cwd')), 'files created in the working directory: %s'
          % os.listdir(t.path('cwd')))


@test
def unwritable_log_sink_is_retried_then_dead_lettered(t):
    """A log sink whose writes fail (/dev/full: no space left) fails each delivery as
    retryable; after retry.max_attempts (3) it goes to the dead-letter sink with the DLQ
    attributes, exit 0. Without a dead_letter the run exits 1 and logs an error."""
    events = [make_event('deletion', 'dl-%03d' % i)[1] for i in range(20)]
    with open(t.path('events.jsonl'), 'w') as f:
        f.write(jsonl(events))
    retry = {'max_attempts': 3, 'max_event_age_seconds': 60, 'initial_backoff_ms': 10,
             'max_backoff_ms': 40}
    cfg = {
        'sources': [{'name': 'in', 'type': 'file', 'paths': ['events.jsonl']}],
        'sinks': [log_sink('out', '/dev/full', retry=retry, dead_letter='dlq'),
                  log_sink('dlq', 'dlq.jsonl')],
        'rules': [{'name': 'deleted', 'pattern': by_type('KMS CMK Deletion'),
                   'targets': ['out']}],
    }
    write_json(t.path('config.json'), cfg)
    before = time.time()
    rc, err = t.run(['run', '-c', t.path('config.json')], timeout=30)
    after = time.time()
    check(rc == 0, 'with dead_letter: exit status %s, want 0; stderr: %s' % (rc, err[-500:]))
    dlq = parse_lines(t.path('dlq.jsonl'))
    check(len(dlq) == len(events), 'dead-letter file has %d records, want %d'
          % (len(dlq), len(events)))
    by_id = {e['id']: e for e in events}
    seen = set()
    for d in dlq:
        ev = d.get('event')
        check(isinstance(ev, dict) and ev.get('id') in by_id,
              'dead letter without the original event: %.300s' % json.dumps(d))
        check(ev == by_id[ev['id']], 'dead-lettered event %s differs from the one sent'
              % ev['id'])
        seen.add(ev['id'])
        check(d.get('rule') == 'deleted', 'rule is %r, want "deleted"' % d.get('rule'))
        check(d.get('target') == 'out', 'target is %r, want "out"' % d.get('target'))
        check(d.get('attempts') == 3, 'attempts is %r, want 3' % d.get('attempts'))
        check(isinstance(d.get('error_code'), str) and d['error_code'],
              'error_code missing: %r' % d.get('error_code'))
        msg = d.get('error_message') or ''
        check('/dev/full' in msg, 'error_message does not name the path: %r' % msg)
        times = []
        for k in ('first_attempt_time', 'last_attempt_time'):
            v = d.get(k)
            check(isinstance(v, str), '%s missing' % k)
            try:
                ts = time.mktime(time.strptime(v[:19], '%Y-%m-%dT%H:%M:%S')) - time.timezone
            except ValueError:
                raise Failure('%s is not an RFC 3339 time: %r' % (k, v))
            check(before - 2 <= ts <= after + 2, '%s %s is not during the run' % (k, v))
            times.append(v)
        check(times[0] <= times[1], 'first_attempt_time %s after last_attempt_time %s'
              % tuple(times))
    check(len(seen) == len(events), 'dead letters cover %d distinct events, want %d'
          % (len(seen), len(events)))

    # the same without a dead-letter sink: the records cannot be delivered, exit 1, logged
    cfg['sinks'][0].pop('dead_letter')
    cfg['log'] = {'format': 'json', 'level': 'info'}
    write_json(t.path('config-nodlq.json'), cfg)
    rc, err = t.run(['run', '-c', t.path('config-nodlq.json')], timeout=30)
    check(rc == 1, 'without dead_letter: exit status %s, want 1; stderr: %s'
          % (rc, err[-500:]))
    errors = []
    for line in err.splitlines():
        try:
            o = json.loads(line)
        except ValueError:
            continue
        if isinstance(o, dict) and o.get('level') == 'error':
            errors.append(o)
    check(errors, 'no error log line (JSON format) on stderr: %s' % err[-500:])
    check(any(o.get('sink') == 'out' and o.get('attempts') in ('3', 3) for o in errors),
          'no error line naming sink "out" after 3 attempts: %s' % json.dumps(errors[:2]))


@test
def invalid_records_go_to_the_invalid_dead_letter(t):
    """Three broken lines among valid events: each goes to invalid_dead_letter with its raw text,
    the source name and FILE:LINE; every valid event is delivered; exit 0."""
    broken = {
        4: '{"version": "0", "id": "broken-1", "source": aws.kms}',
        9: '{"version": "0", "id": "broken-2", "detail-type": 42, "source": "aws.kms"}',
        15: 'this line is not JSON at all',
    }
    lines, valid = [], []
    for n in range(1, 21):
        if n in broken:
            lines.append(broken[n])
        else:
            ev = make_event('rotation', 'valid-%02d' % n)[1]
            valid.append(ev['id'])
            lines.append(json.dumps(ev))
    with open(t.path('events.jsonl'), 'w') as f:
        f.write('\n'.join(lines) + '\n')
    cfg = {
        'sources': [{'name': 'in', 'type': 'file', 'paths': ['events.jsonl']}],
        'sinks': [log_sink('out', 'out.jsonl'), log_sink('dlq', 'dlq.jsonl')],
        'rules': [{'name': 'all', 'pattern': KMS, 'targets': ['out']}],
        'invalid_dead_letter': 'dlq',
    }
    write_json(t.path('config.json'), cfg)
    rc, err = t.run(['run', '-c', t.path('config.json')], timeout=30)
    check(rc == 0, 'exit status %s, want 0; stderr: %s' % (rc, err[-500:]))
    expect_ids_once(t.path('out.jsonl'), valid, 'out')
    dlq = parse_lines(t.path('dlq.jsonl'))
    check(len(dlq) == 3, 'invalid dead letter has %d records, want 3: %s'
          % (len(dlq), json.dumps(dlq)[:600]))
    problems = []
    by_line = {}
    for d in dlq:
        pos = d.get('position', '')
        fname, _, ln = pos.rpartition(':')
        if not ln.isdigit() or os.path.realpath(os.path.join(t.dir, fname)) != \
                os.path.realpath(t.path('events.jsonl')):
            problems.append('position %r is not events.jsonl:LINE' % pos)
            continue
        by_line[int(ln)] = d
        if d.get('source') != 'in':
            problems.append('line %s: source %r, want "in"' % (ln, d.get('source')))
        if not d.get('error_message'):
            problems.append('line %s: no error_message' % ln)
    check(not problems, '; '.join(problems))
    check(sorted(by_line) == sorted(broken), 'dead letters at lines %s, want lines %s'
          % (sorted(by_line), sorted(broken)))
    for ln, text in sorted(broken.items()):
        rec = by_line[ln].get('record')
        if not isinstance(rec, str) or rec.rstrip('\r\n') != text:
            problems.append('line %d: "record" is %r, want the raw line %r' % (ln, rec, text))
    check(not problems, '; '.join(problems))


@test
def sigterm_mid_stream_drains(t):
    """A follow-mode source on a file the test keeps appending to; every event goes to two
    sinks: "out" (works) and "held" (a symlink into a folder that does not exist until after
    SIGTERM, so those deliveries are in flight, retrying). SIGTERM after some events are delivered, then the folder
    is fixed: exit 0 within the grace period; every event the router read is in both outputs
    exactly once (a gap-free prefix of what was appended), no broken line, and the checkpoint
    says the same."""
    grace = 10
    open(t.path('in.jsonl'), 'w').close()
    os.symlink(os.path.join('held', 'out.jsonl'), t.path('held.jsonl'))
    retry = {'max_attempts': 1000, 'max_event_age_seconds': 300, 'initial_backoff_ms': 20,
             'max_backoff_ms': 100}
    cfg = {
        'sources': [follow_source(['in.jsonl'], checkpoint='cp.json')],
        'sinks': [log_sink('out', 'out.jsonl'), log_sink('held', 'held.jsonl', retry=retry)],
        'rules': [{'name': 'all', 'pattern': KMS, 'targets': ['out', 'held']}],
        'shutdown_grace_seconds': grace,
    }
    write_json(t.path('config.json'), cfg)
    r = Router(t, ['run', '-c', t.path('config.json')])
    appended = []
    stop = threading.Event()
    errors = []

    def writer():
        n = 0
        try:
            while not stop.is_set():
                batch = [make_event('deletion', 'term-%06d' % (n + i))[1] for i in range(5)]
                n += 5
                append(t.path('in.jsonl'), jsonl(batch))
                appended.extend(e['id'] for e in batch)
                stop.wait(0.02)
        except Exception as e:  # reported by the main thread
            errors.append(e)

    w = threading.Thread(target=writer)
    w.start()
    try:
        wait_for(lambda: count_lines(t.path('out.jsonl')) >= 100, 20,
                 '100 events delivered to "out"', proc=r)
        r.signal(signal.SIGTERM)
        sent = time.monotonic()
        delivered_before = count_lines(t.path('out.jsonl'))
        stop.wait(0.3)  # the writer goes on appending while the router drains
    finally:
        stop.set()
        w.join()
    check(not errors, 'writer failed: %s' % errors)
    check(r.running(), 'kmsrouter exited (status %s) with the "held" deliveries still failing'
          % r.p.returncode)
    os.mkdir(t.path('held'))  # the held deliveries can succeed from now on
    rc = r.wait(grace + 5, 'exit after SIGTERM')
    took = r.ended - sent
    err = r.stderr()
    out_ids = ids_of(t.path('out.jsonl'))  # fails on a broken or partial line
    held_ids = ids_of(t.path('held', 'out.jsonl'))
    k = len(out_ids)
    t.note('%d appended, %d delivered before SIGTERM, %d read and delivered in all, %d of them '
           'held in flight at SIGTERM; exit %.2f s after SIGTERM'
           % (len(appended), delivered_before, k, len(held_ids), took))
    check(rc == 0, 'exit status %s, want 0; stderr: %s' % (rc, r.stderr_tail()))
    check(took <= grace + 1, 'took %.1f s to exit, grace period is %d s' % (took, grace))
    check('stopping' in err, 'no "stopping" log line: %s' % r.stderr_tail())
    check('grace period over' not in err,
          'the drain did not finish within the grace period (read records left undelivered): %s'
          % r.stderr_tail())
    check(k >= delivered_before, 'output shrank from %d to %d lines' % (delivered_before, k))
    check(len(set(out_ids)) == k, '%d duplicated events in out' % (k - len(set(out_ids))))
    check(set(out_ids) == set(appended[:k]),
          'out is not the first %d events appended: %d missing from that prefix, %d from '
          'outside it' % (k, len(set(appended[:k]) - set(out_ids)),
                          len(set(out_ids) - set(appended[:k]))))
    check(sorted(held_ids) == sorted(out_ids),
          '"held" has %d events, "out" %d: the deliveries in flight at SIGTERM were not all '
          'finished by the drain (%d missing from held)'
          % (len(held_ids), k, len(set(out_ids) - set(held_ids))))
    with open(t.path('cp.json')) as f:
        cp = json.load(f)
    acked = [i.get('records') for i in cp.get('inputs', [])]
    check(acked == [k], 'checkpoint says %s records done, the output has %d' % (acked, k))


def _hup_and_wait(r, marker):
    """Sends SIGHUP and waits until stderr has one more line containing marker."""
    before = r.stderr().count(marker)
    r.signal(signal.SIGHUP)
    wait_for(lambda: r.stderr().count(marker) > before, 10,
             '"%s" on stderr after SIGHUP' % marker, proc=r)


@test
def sighup_with_broken_config_keeps_the_old_rules(t):
    """SIGHUP with an invalid config file: "reload failed" on stderr and events are still routed
    by the running rules; SIGHUP with a valid config routing elsewhere: new events follow it.
    (And the same invalid file at start is a configuration error: exit 2.)"""
    open(t.path('in.jsonl'), 'w').close()
    cfg = {
        'sources': [follow_source(['in.jsonl'])],
        'sinks': [log_sink('A', 'a.jsonl'), log_sink('B', 'b.jsonl')],
        'rules': [{'name': 'to-a', 'pattern': KMS, 'targets': ['A']}],
    }
    with open(t.path('broken.json'), 'w') as f:
        f.write('{"sources": [ this is not JSON\n')
    rc, err = t.run(['run', '-c', t.path('broken.json')], timeout=10)
    check(rc == 2, 'run with an invalid config: exit status %s, want 2' % rc)
    write_json(t.path('config.json'), cfg)
    r = Router(t, ['run', '-c', t.path('config.json')])

    batch = lambda tag, n=20: append_batch(t, 'rotation', tag, n)

    b1 = batch('first')
    wait_for(lambda: set(b1) <= set(ids_of(t.path('a.jsonl'))), 15, 'first batch in A',
             proc=r)
    with open(t.path('config.json'), 'w') as f:
        f.write('{"sources": [ this is not JSON\n')
    _hup_and_wait(r, 'reload failed')
    b2 = batch('second')
    wait_for(lambda: set(b2) <= set(ids_of(t.path('a.jsonl'))), 15,
             'second batch in A (old rules kept after a failed reload)', proc=r)
    cfg['rules'] = [{'name': 'to-b', 'pattern': KMS, 'targets': ['B']}]
    write_json(t.path('config.json'), cfg)
    _hup_and_wait(r, 'configuration reloaded')
    b3 = batch('third')
    wait_for(lambda: set(b3) <= set(ids_of(t.path('b.jsonl'))), 15,
             'third batch in B (new rules after a good reload)', proc=r)
    r.signal(signal.SIGTERM)
    rc = r.wait(15, 'exit after SIGTERM')
    check(rc == 0, 'exit status %s after SIGTERM, want 0' % rc)
    expect_ids_once(t.path('a.jsonl'), b1 + b2, 'A')
    expect_ids_once(t.path('b.jsonl'), b3, 'B')


@test
def sighup_reopens_the_log_file(t):
    """logrotate: out.jsonl renamed to out.jsonl.1, SIGHUP, new events land in a fresh
    out.jsonl; the same when the reload fails (the sinks are reopened anyway). Stopped with
    SIGINT: exit 0."""
    open(t.path('in.jsonl'), 'w').close()
    cfg = {
        'sources': [follow_source(['in.jsonl'])],
        'sinks': [log_sink('out', 'out.jsonl')],
        'rules': [{'name': 'all', 'pattern': KMS, 'targets': ['out']}],
    }
    write_json(t.path('config.json'), cfg)
    r = Router(t, ['run', '-c', t.path('config.json')])

    batch = lambda tag, n=20: append_batch(t, 'expiration', tag, n)

    b1 = batch('before-rotation')
    wait_for(lambda: len(ids_of(t.path('out.jsonl'))) >= len(b1), 15, 'first batch delivered',
             proc=r)
    os.rename(t.path('out.jsonl'), t.path('out.jsonl.1'))
    _hup_and_wait(r, 'configuration reloaded')
    b2 = batch('after-rotation')
    wait_for(lambda: len(ids_of(t.path('out.jsonl'))) >= len(b2), 15,
             'second batch in a fresh out.jsonl', proc=r)
    # a failed reload reopens the files too
    with open(t.path('config.json'), 'w') as f:
        f.write('{ not json')
    os.rename(t.path('out.jsonl'), t.path('out.jsonl.2'))
    _hup_and_wait(r, 'reload failed')
    b3 = batch('after-failed-reload')
    wait_for(lambda: len(ids_of(t.path('out.jsonl'))) >= len(b3), 15,
             'third batch in a fresh out.jsonl after a failed reload', proc=r)
    r.signal(signal.SIGINT)
    rc = r.wait(15, 'exit after SIGINT')
    check(rc == 0, 'exit status %s after SIGINT, want 0' % rc)
    expect_ids_once(t.path('out.jsonl.1'), b1, 'out.jsonl.1')
    expect_ids_once(t.path('out.jsonl.2'), b2, 'out.jsonl.2')
    expect_ids_once(t.path('out.jsonl'), b3, 'out.jsonl')


@test
def replay_kill_9_resumes_from_the_checkpoint(t):
    """A 100,000-event replay with --checkpoint killed with SIGKILL part way, then started again
    with the same command: exit 0, every event delivered at least once, duplicates (delivered
    before the kill but not yet checkpointed) at most max_in_flight."""
    total, max_in_flight = 100000, 1000
    base = json.dumps(make_event('deletion', '@ID@')[1], separators=(',', ':'))
    head, tail = base.split('@ID@')
    with open(t.path('events.jsonl'), 'w') as f:
        f.write(''.join('%sr-%06d%s\n' % (head, i, tail) for i in range(total)))
    line_size = len(base) + 2
    cfg = {
        'sinks': [log_sink('out', 'out.jsonl')],
        'rules': [{'name': 'all', 'pattern': KMS, 'targets': ['out']}],
        'max_in_flight': max_in_flight,
    }
    write_json(t.path('config.json'), cfg)
    args = ['replay', '-c', t.path('config.json'), '--checkpoint', t.path('cp.json'),
            t.path('events.jsonl')]
    killed_at = None
    for attempt in range(3):
        for p in ('out.jsonl', 'cp.json'):
            if os.path.exists(t.path(p)):
                os.unlink(t.path(p))
        r = Router(t, args)
        threshold = (30000 - attempt * 10000) * line_size  # about a third in
        while r.running():
            try:
                if os.stat(t.path('out.jsonl')).st_size >= threshold:
                    break
            except FileNotFoundError:
                pass
            time.sleep(0.0005)
        r.p.kill()  # SIGKILL, this process only
        rc = r.wait(10)
        if rc == -signal.SIGKILL:
            killed_at = count_lines(t.path('out.jsonl'))
            break
    check(killed_at is not None, 'the replay always finished before it could be killed')
    check(killed_at < total, 'killed after everything was delivered')
    cp_records = 0  # no checkpoint file yet: the resumed replay starts from the beginning
    if os.path.exists(t.path('cp.json')):
        with open(t.path('cp.json')) as f:
            cp_records = sum(i.get('records', 0) for i in json.load(f).get('inputs', []))
    start = time.monotonic()
    rc, err = t.run(args, timeout=60, what='the resumed replay')
    check(rc == 0, 'resumed replay: exit status %s, want 0; stderr: %s' % (rc, err[-500:]))
    with open(t.path('out.jsonl'), 'rb') as f:
        lines = f.read().split(b'\n')
    if lines and lines[-1] == b'':
        lines.pop()
    counts = {}
    broken = 0
    for line in lines:
        try:
            i = json.loads(line)['id']
        except (ValueError, KeyError):
            broken += 1  # a write cut by SIGKILL; that record was not acknowledged
            continue
        counts[i] = counts.get(i, 0) + 1
    missing = total - sum(1 for i in range(total) if ('r-%06d' % i) in counts)
    dups = sum(n - 1 for n in counts.values())
    t.note('killed after %d lines (checkpoint at %d records); resumed in %.1f s; %d duplicates '
           '(max_in_flight %d); %d broken lines' % (killed_at, cp_records,
                                                    time.monotonic() - start, dups,
                                                    max_in_flight, broken))
    summary = [l for l in err.splitlines() if l.startswith('kmsrouter: ')]
    check(summary and 'already done' in summary[-1], 'no summary line on stderr: %s'
          % err[-300:])
    check(missing == 0, '%d events never delivered' % missing)
    check(broken <= 1, '%d broken lines (only the one cut by SIGKILL may be)' % broken)
    check(dups <= max_in_flight, '%d duplicates, more than max_in_flight (%d); killed after %d '
          'lines with the checkpoint at %d records' % (dups, max_in_flight, killed_at,
                                                       cp_records))


@test
def replay_filters_time_and_adds_replay_name(t):
    """--from/--to keep exactly the events whose "time" is in [from, to); --replay-name X adds
    "replay-name": "X" to every event and a rule on {"replay-name": ["X"]} matches; without it
    that rule matches nothing."""
    frm, to = '2024-03-01T00:00:00Z', '2024-03-02T00:00:00Z'
    times = [
        ('2024-02-29T23:59:59Z', False),
        ('2024-02-29T23:59:59.999Z', False),
        ('2024-03-01T00:00:00Z', True),          # from is included
        ('2024-03-01T00:00:00.001Z', True),
        ('2024-03-01T12:34:56Z', True),
        ('2024-03-02T01:30:00+02:00', True),     # 23:30Z
        ('2024-03-01T23:59:59.999Z', True),
        ('2024-03-02T00:00:00Z', False),         # to is excluded
        ('2024-03-01T19:00:00-05:00', False),    # 2024-03-02T00:00Z
        ('2024-03-05T00:00:00Z', False),
        ('2016-08-19T03:23:45Z', False),
    ]
    events, inside = [], []
    for n, (tm, keep) in enumerate(times):
        kind = ('deletion', 'rotation', 'expiration', 'cloudtrail')[n % 4]
        ev = make_event(kind, 'tm-%02d' % n, time=tm)[1]
        events.append(ev)
        if keep:
            inside.append(ev['id'])
    with open(t.path('events.jsonl'), 'w') as f:
        f.write(jsonl(events))
    cfg = {
        'sinks': [log_sink('all', 'all.jsonl'), log_sink('replayed', 'replayed.jsonl')],
        'rules': [{'name': 'all', 'pattern': KMS, 'targets': ['all']},
                  {'name': 'replayed', 'pattern': {'replay-name': ['X']},
                   'targets': ['replayed']}],
    }
    write_json(t.path('config.json'), cfg)
    rc, err = t.run(['replay', '-c', t.path('config.json'), '--from', frm, '--to', to,
                     '--replay-name', 'X', t.path('events.jsonl')], timeout=30)
    check(rc == 0, 'exit status %s, want 0; stderr: %s' % (rc, err[-500:]))
    expect_ids_once(t.path('all.jsonl'), inside, 'all (time filter)')
    expect_ids_once(t.path('replayed.jsonl'), inside, 'replayed (rule on replay-name)')
    orig = {e['id']: e for e in events}
    for o in parse_lines(t.path('all.jsonl')) + parse_lines(t.path('replayed.jsonl')):
        check(o.get('replay-name') == 'X', 'event %s has replay-name %r, want "X"'
              % (o.get('id'), o.get('replay-name')))
        rest = dict(o)
        del rest['replay-name']
        check(rest == orig[o['id']], 'event %s changed beyond replay-name' % o['id'])
    summary = [l for l in err.splitlines() if l.startswith('kmsrouter: ')]
    check(summary, 'no summary line on stderr: %s' % err[-300:])
    s = summary[-1]
    check(s.startswith('kmsrouter: %d records read (%d events, 0 invalid)'
                       % (len(events), len(events))),
          'summary does not say %d records read: %s' % (len(events), s))
    check('%d outside the time range' % (len(events) - len(inside)) in s,
          'summary does not say %d outside the time range: %s' % (len(events) - len(inside), s))
    # without --replay-name the rule on replay-name matches nothing
    for p in ('all.jsonl', 'replayed.jsonl'):
        os.unlink(t.path(p))
    rc, err = t.run(['replay', '-c', t.path('config.json'), t.path('events.jsonl')], timeout=30)
    check(rc == 0, 'replay without options: exit status %s, want 0' % rc)
    expect_ids_once(t.path('all.jsonl'), [e['id'] for e in events], 'all (no filter)')
    check(count_lines(t.path('replayed.jsonl')) == 0,
          'the replay-name rule matched without --replay-name')
    check(all('replay-name' not in o for o in parse_lines(t.path('all.jsonl'))),
          'replay-name added without --replay-name')


@test
def replay_rate_limits(t):
    """200 events with --rate 100 take at least ~1.8 s and are spread over that time."""
    events = [make_event('rotation', 'rate-%03d' % i)[1] for i in range(200)]
    with open(t.path('events.jsonl'), 'w') as f:
        f.write(jsonl(events))
    cfg = {'sinks': [log_sink('out', 'out.jsonl')],
           'rules': [{'name': 'all', 'pattern': KMS, 'targets': ['out']}]}
    write_json(t.path('config.json'), cfg)
    r = Router(t, ['replay', '-c', t.path('config.json'), '--rate', '100',
                   t.path('events.jsonl')])
    at_1s = None
    while r.running():
        el = time.monotonic() - r.started
        if at_1s is None and el >= 1.0:
            at_1s = count_lines(t.path('out.jsonl'))
        if el > 30:
            break
        time.sleep(0.01)
    rc = r.wait(5)
    took = r.ended - r.started
    t.note('200 events at --rate 100: %.2f s, %s delivered after 1 s' % (took, at_1s))
    check(rc == 0, 'exit status %s, want 0; stderr: %s' % (rc, r.stderr_tail()))
    expect_ids_once(t.path('out.jsonl'), [e['id'] for e in events], 'out')
    check(took >= 1.8, 'took %.2f s, want at least 1.8 s' % took)
    check(took < 6, 'took %.2f s for 200 events at 100/s' % took)
    check(at_1s is not None and 40 <= at_1s <= 160,
          '%s events delivered after 1 s, want about 100' % at_1s)


def parse_metrics(text):
    """{(name, frozenset(labels)): value} from Prometheus text."""
    out = {}
    for line in text.splitlines():
        if not line or line.startswith('#'):
            continue
        name_labels, _, value = line.rpartition(' ')
        labels = {}
        name = name_labels
        if '{' in name_labels:
            name, _, rest = name_labels.partition('{')
            rest = rest.rstrip('}')
            for part in rest.split('",'):
                k, _, v = part.partition('=')
                labels[k.strip()] = v.strip().strip('"')
        out[(name, frozenset(labels.items()))] = float(value)
    return out


def metric(m, name, **labels):
    return m.get((name, frozenset(labels.items())))


@test
def metrics_count_what_was_delivered(t):
    """/metrics counts exactly what the test sent: records, invalid records, matches per rule,
    unmatched events, successful deliveries per sink; /healthz and /readyz answer 200."""
    port = free_port()
    open(t.path('in.jsonl'), 'w').close()
    cfg = {
        'sources': [follow_source(['in.jsonl'])],
        'sinks': [log_sink('a', 'a.jsonl'), log_sink('b', 'b.jsonl'),
                  log_sink('um', 'um.jsonl'), log_sink('dlq', 'dlq.jsonl')],
        'rules': [
            {'name': 'deleted', 'pattern': by_type('KMS CMK Deletion'), 'targets': ['a']},
            {'name': 'rotated', 'pattern': by_type('KMS CMK Rotation'), 'targets': ['b']},
            {'name': 'expired', 'pattern': by_type('KMS Imported Key Material Expiration'),
             'targets': ['a', 'b']},
        ],
        'unmatched': 'um',
        'invalid_dead_letter': 'dlq',
        'metrics': {'listen': '127.0.0.1:%d' % port},
    }
    write_json(t.path('config.json'), cfg)
    r = Router(t, ['run', '-c', t.path('config.json')])
    base = 'http://127.0.0.1:%d' % port

    def answers():
        try:
            return http_get(base + '/readyz', timeout=1)[0] == 200
        except OSError:
            return False
    wait_for(answers, 10, '/readyz to answer 200', proc=r, interval=0.05)
    status, _ = http_get(base + '/healthz')
    check(status == 200, '/healthz answered %s' % status)
    sent = {'deletion': 30, 'rotation': 20, 'expiration': 10, 'cloudtrail': 7}
    invalid_lines = ['{"id": "bad-1", "detail-type": 5, "source": "aws.kms"}',
                     '{"id": "bad-2", "source": aws.kms}',
                     '{"id": "bad-3", "detail": "not an object", "source": "aws.kms"}',
                     '[1]']
    lines, n = [], 0
    for kind, cnt in sent.items():
        for i in range(cnt):
            lines.append(json.dumps(make_event(kind, 'm-%s-%02d' % (kind, i))[1]))
            if n < len(invalid_lines):
                lines.append(invalid_lines[n])  # each broken line followed by a valid one
            n += 1
    append(t.path('in.jsonl'), '\n'.join(lines) + '\n')
    valid = sum(sent.values())
    want_lines = {'a.jsonl': sent['deletion'] + sent['expiration'],
                  'b.jsonl': sent['rotation'] + sent['expiration'],
                  'um.jsonl': sent['cloudtrail'], 'dlq.jsonl': len(invalid_lines)}
    wait_for(lambda: all(count_lines(t.path(p)) >= c for p, c in want_lines.items()), 20,
             'all deliveries in the sink files', proc=r)
    want = [
        ('kmsrouter_records_total', {'source': 'in'}, valid + len(invalid_lines)),
        ('kmsrouter_records_invalid_total', {'source': 'in'}, len(invalid_lines)),
        ('kmsrouter_rule_matches_total', {'rule': 'deleted'}, sent['deletion']),
        ('kmsrouter_rule_matches_total', {'rule': 'rotated'}, sent['rotation']),
        ('kmsrouter_rule_matches_total', {'rule': 'expired'}, sent['expiration']),
        ('kmsrouter_events_unmatched_total', {}, sent['cloudtrail']),
        ('kmsrouter_in_flight_records', {}, 0),
    ]
    for sink, f in (('a', 'a.jsonl'), ('b', 'b.jsonl'), ('um', 'um.jsonl'),
                    ('dlq', 'dlq.jsonl')):
        want += [
            ('kmsrouter_deliveries_total', {'sink': sink, 'outcome': 'success'}, want_lines[f]),
            ('kmsrouter_deliveries_total', {'sink': sink, 'outcome': 'retryable'}, 0),
            ('kmsrouter_deliveries_total', {'sink': sink, 'outcome': 'permanent'}, 0),
            ('kmsrouter_retries_total', {'sink': sink}, 0),
            ('kmsrouter_dead_lettered_total', {'sink': sink}, 0),
            ('kmsrouter_delivery_latency_seconds_count', {'sink': sink}, want_lines[f]),
            ('kmsrouter_delivery_latency_seconds_bucket', {'sink': sink, 'le': '+Inf'},
             want_lines[f]),
        ]
    last = {}

    def wrong():
        status, text = http_get(base + '/metrics')
        m = parse_metrics(text) if status == 200 else {}
        last['m'] = m
        return [(name, lb, v, metric(m, name, **lb)) for name, lb, v in want
                if metric(m, name, **lb) != v]
    # metrics are published every 200 ms: give them a few rounds to catch up
    deadline = time.monotonic() + 3
    bad = wrong()
    while bad and time.monotonic() < deadline:
        time.sleep(0.1)
        bad = wrong()
    status, _ = http_get(base + '/readyz')
    check(status == 200, '/readyz answered %s while running' % status)
    r.signal(signal.SIGTERM)
    rc = r.wait(15, 'exit after SIGTERM')
    check(not bad, 'metrics differ from what was sent: ' + '; '.join(
        '%s%s = %s, want %s' % (name, json.dumps(lb, sort_keys=True) if lb else '', got, v)
        for name, lb, v, got in bad))
    check(rc == 0, 'exit status %s after SIGTERM, want 0' % rc)


@test
def input_transformer_and_input_path(t):
    """A target with input_path "$.detail" delivers the detail object; one with an
    input_transformer delivers its template with the variables substituted as the EventBridge
    guide documents (strings quoted and escaped outside quotes, escaped inside them, numbers as
    they are, aws.events.rule-name; a path not in the event does not appear, so its field is left
    out); a plain target delivers the whole event."""
    key_ids = ['1234abcd-12ab-34cd-56ef-1234567890ab', 'key "with" quotes\\and backslash',
               'k\u00e9y-\u00fc']
    events = []
    for i, k in enumerate(key_ids):
        ev = make_event('deletion', 'tr-%d' % i)[1]
        ev['detail'] = {'key-id': k, 'pending-days': 7 + i, 'nested': {'a': [1, 2, i]}}
        events.append(ev)
    with open(t.path('events.jsonl'), 'w') as f:
        f.write(jsonl(events))
    template = ('{"key": "<k>", "type": "<t>", "resource": "<res>", "days": <days>, '
                '"nested": <nested>, "rule": "<aws.events.rule-name>", "missing": <nope>, '
                '"unquoted": <k>, "text": "<k> is <nope>gone"}')
    cfg = {
        'sources': [{'name': 'in', 'type': 'file', 'paths': ['events.jsonl']}],
        'sinks': [log_sink('detail', 'detail.jsonl'), log_sink('templated', 'templated.jsonl'),
                  log_sink('plain', 'plain.jsonl')],
        'rules': [{'name': 'deleted', 'pattern': by_type('KMS CMK Deletion'), 'targets': [
            {'sink': 'detail', 'input_path': '$.detail'},
            {'sink': 'templated', 'input_transformer': {
                'input_paths': {'k': '$.detail.key-id', 't': '$.detail-type',
                                'res': '$.resources[0]', 'days': '$.detail.pending-days',
                                'nested': '$.detail.nested', 'nope': '$.detail.absent'},
                'input_template': template}},
            'plain']}],
    }
    write_json(t.path('config.json'), cfg)
    rc, err = t.run(['run', '-c', t.path('config.json')], timeout=30)
    check(rc == 0, 'exit status %s, want 0; stderr: %s' % (rc, err[-500:]))
    detail = parse_lines(t.path('detail.jsonl'))
    check(sorted(detail, key=json.dumps) == sorted((e['detail'] for e in events),
                                                   key=json.dumps),
          'input_path $.detail delivered %s' % json.dumps(detail)[:400])
    templated = parse_lines(t.path('templated.jsonl'))
    want = [{'key': e['detail']['key-id'], 'type': 'KMS CMK Deletion',
             'resource': e['resources'][0], 'days': e['detail']['pending-days'],
             'nested': e['detail']['nested'], 'rule': 'deleted', 'unquoted': e['detail']['key-id'],
             'text': e['detail']['key-id'] + ' is gone'}
            for e in events]
    check(sorted(templated, key=json.dumps) == sorted(want, key=json.dumps),
          'input_transformer delivered %s, want %s' % (json.dumps(templated)[:400],
                                                       json.dumps(want)[:400]))
    expect_ids_once(t.path('plain.jsonl'), [e['id'] for e in events], 'plain')
    check(sorted(parse_lines(t.path('plain.jsonl')), key=json.dumps) ==
          sorted(events, key=json.dumps), 'the plain target changed the events')


# ---- two more, added for bugs found while writing the ones above (see README.md)

@test
def run_throughput_is_not_throttled_by_sink_concurrency(t):
    """5,000 events through a log sink finish in a few seconds, with the default settings and
    with "concurrency": 16: the engine must not sleep while deliveries wait for a free slot."""
    total, limit = 5000, 10.0
    base = json.dumps(make_event('rotation', '@ID@')[1], separators=(',', ':'))
    head, tail = base.split('@ID@')
    with open(t.path('events.jsonl'), 'w') as f:
        f.write(''.join('%sthr-%05d%s\n' % (head, i, tail) for i in range(total)))
    for label, extra in (('default settings', {}), ('concurrency 16', {'concurrency': 16})):
        out = 'out-%d.jsonl' % len(extra)
        cfg = {'sources': [{'name': 'in', 'type': 'file', 'paths': ['events.jsonl']}],
               'sinks': [log_sink('out', out, **extra)],
               'rules': [{'name': 'all', 'pattern': KMS, 'targets': ['out']}]}
        write_json(t.path('config.json'), cfg)
        r = Router(t, ['run', '-c', t.path('config.json')])
        try:
            rc = r.wait(limit)
        except Failure:
            n = count_lines(t.path(out))
            raise Failure('%s: %d of %d events delivered after %.0f s (%.0f events/s)'
                          % (label, n, total, limit, n / limit))
        took = r.ended - r.started
        t.note('%s: %d events in %.2f s' % (label, total, took))
        check(rc == 0, '%s: exit status %s, want 0; stderr: %s' % (label, rc, r.stderr_tail()))
        check(count_lines(t.path(out)) == total, '%s: %d lines in out, want %d'
              % (label, count_lines(t.path(out)), total))


@test
def max_in_flight_bounds_the_records_read(t):
    """With max_in_flight 100 and a sink that keeps failing (retrying), the router holds at most
    100 records in flight (kmsrouter_in_flight_records and kmsrouter_records_total)."""
    limit = 100
    with open(t.path('events.jsonl'), 'w') as f:
        f.write(jsonl(make_event('deletion', 'mif-%04d' % i)[1] for i in range(3000)))
    port = free_port()
    retry = {'max_attempts': 1000, 'max_event_age_seconds': 300, 'initial_backoff_ms': 100,
             'max_backoff_ms': 200}
    cfg = {'sources': [{'name': 'in', 'type': 'file', 'paths': ['events.jsonl']}],
           'sinks': [log_sink('out', '/dev/full', retry=retry)],
           'rules': [{'name': 'all', 'pattern': KMS, 'targets': ['out']}],
           'max_in_flight': limit, 'shutdown_grace_seconds': 0,
           'metrics': {'listen': '127.0.0.1:%d' % port}}
    write_json(t.path('config.json'), cfg)
    r = Router(t, ['run', '-c', t.path('config.json')])
    url = 'http://127.0.0.1:%d/metrics' % port
    seen = {'in_flight': 0, 'read': 0}

    def scrape():
        try:
            status, text = http_get(url, timeout=1)
        except OSError:
            return False
        m = parse_metrics(text) if status == 200 else {}
        f = metric(m, 'kmsrouter_in_flight_records') or 0
        n = metric(m, 'kmsrouter_records_total', source='in') or 0
        seen['in_flight'] = max(seen['in_flight'], f)
        seen['read'] = max(seen['read'], n)
        return m and metric(m, 'kmsrouter_retries_total', sink='out')
    wait_for(scrape, 10, 'the first retries in /metrics', proc=r, interval=0.05)
    # watch a few publishing rounds (200 ms each) for the limit being passed
    end = time.monotonic() + 1.0
    while time.monotonic() < end:
        scrape()
        time.sleep(0.05)
    r.signal(signal.SIGTERM)
    r.wait(10, 'exit after SIGTERM')
    t.note('max_in_flight %d: up to %d in flight, %d read'
           % (limit, seen['in_flight'], seen['read']))
    check(seen['in_flight'] > 0, 'no record in flight seen')
    check(seen['in_flight'] <= limit and seen['read'] <= limit,
          '%d records in flight and %d read with max_in_flight %d'
          % (seen['in_flight'], seen['read'], limit))


@test
def followed_input_survives_rotation_and_truncation(t):
    """A followed file that is renamed away (logrotate) and replaced, then truncated and written
    again, is read on: every event appended before and after is delivered exactly once."""
    src = t.path('in.jsonl')
    cfg = {'sources': [follow_source([src])],
           'sinks': [log_sink('out', 'out.jsonl')],
           'rules': [{'name': 'all', 'pattern': KMS, 'targets': ['out']}]}
    write_json(t.path('config.json'), cfg)
    batch = lambda tag: [make_event('deletion', '%s-%03d' % (tag, i))[1] for i in range(50)]
    before, after, again = batch('before'), batch('after'), batch('again')
    append(src, jsonl(before))
    r = Router(t, ['run', '-c', t.path('config.json')])
    wait_for(lambda: count_lines(t.path('out.jsonl')) >= 50, 10, 'the first events', proc=r)
    os.rename(src, src + '.1')
    append(src, jsonl(after))
    wait_for(lambda: count_lines(t.path('out.jsonl')) >= 100, 10, 'events after rotation',
             proc=r)
    with open(src, 'w') as f:  # truncate in place and write less than before
        f.write(jsonl(again[:10]))
    wait_for(lambda: count_lines(t.path('out.jsonl')) >= 110, 10, 'events after truncation',
             proc=r)
    r.signal(signal.SIGTERM)
    check(r.wait(10) == 0, 'exit status after SIGTERM')
    expect_ids_once(t.path('out.jsonl'), [e['id'] for e in before + after + again[:10]], 'out')


@test
def unmatched_sink_metadata_and_reserved_variables(t):
    """Events no rule matches go to the "unmatched" sink; a log sink with "metadata" writes
    {rule, sink, received_time, payload}; <aws.events.event> (the event without "detail", as
    EventBridge documents it), <aws.events.event.json> (the whole event) and
    <aws.events.event.ingestion-time> are substituted."""
    matched = [make_event('deletion', 'm-%d' % i)[1] for i in range(5)]
    others = [make_event('rotation', 'u-%d' % i)[1] for i in range(7)]
    with open(t.path('events.jsonl'), 'w') as f:
        f.write(jsonl(matched + others))
    cfg = {'sources': [{'name': 'in', 'type': 'file', 'paths': ['events.jsonl']}],
           'sinks': [log_sink('meta', 'meta.jsonl', metadata=True),
                     log_sink('whole', 'whole.jsonl'), log_sink('rest', 'rest.jsonl')],
           'rules': [{'name': 'deleted', 'pattern': by_type('KMS CMK Deletion'), 'targets': [
               'meta', {'sink': 'whole', 'input_transformer': {'input_template':
                        '{"at": "<aws.events.event.ingestion-time>", "e": <aws.events.event>,'
                        ' "j": <aws.events.event.json>}'}}]}],
           'unmatched': 'rest'}
    write_json(t.path('config.json'), cfg)
    rc, err = t.run(['run', '-c', t.path('config.json')], timeout=30)
    check(rc == 0, 'exit status %s; stderr: %s' % (rc, err[-400:]))
    expect_ids_once(t.path('rest.jsonl'), [e['id'] for e in others], 'unmatched')
    meta = parse_lines(t.path('meta.jsonl'))
    check(len(meta) == 5 and all(set(m) == {'rule', 'sink', 'received_time', 'payload'}
                                 for m in meta), 'metadata lines: %s' % json.dumps(meta)[:300])
    check(all(m['rule'] == 'deleted' and m['sink'] == 'meta' for m in meta), 'rule/sink')
    check(sorted(m['payload']['id'] for m in meta) == sorted(e['id'] for e in matched),
          'metadata payloads')
    check(all(re.match(r'\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d', m['received_time']) for m in meta),
          'received_time: %s' % meta[0]['received_time'])
    whole = parse_lines(t.path('whole.jsonl'))
    check(sorted(json.dumps(w['e'], sort_keys=True) for w in whole) ==
          sorted(json.dumps({k: v for k, v in e.items() if k != 'detail'}, sort_keys=True)
                 for e in matched), '<aws.events.event>')
    check(sorted(json.dumps(w['j'], sort_keys=True) for w in whole) ==
          sorted(json.dumps(e, sort_keys=True) for e in matched), '<aws.events.event.json>')
    check(all(re.match(r'\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$', w['at']) for w in whole),
          'ingestion time: %s' % whole[0]['at'])


@test
def replay_shows_progress_on_a_terminal_and_a_summary_otherwise(t):
    """On a terminal, replay draws a progress bar (share of the input read, counts, rate, ETA);
    otherwise it prints one summary line."""
    import pty
    with open(t.path('events.jsonl'), 'w') as f:
        f.write(jsonl(make_event('deletion', 'p-%04d' % i)[1] for i in range(3000)))
    cfg = {'sinks': [log_sink('out', 'out.jsonl')],
           'rules': [{'name': 'all', 'pattern': KMS, 'targets': ['out']}]}
    write_json(t.path('config.json'), cfg)
    args = [KR, 'replay', '--rate', '2000', '-c', t.path('config.json'), t.path('events.jsonl')]
    master, slave = pty.openpty()
    p = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                         stderr=slave, cwd=t.dir)
    os.close(slave)
    chunks = []
    while True:
        try:
            data = os.read(master, 4096)
        except OSError:
            break
        if not data:
            break
        chunks.append(data)
    os.close(master)
    check(p.wait(30) == 0, 'exit status %s' % p.returncode)
    tty = b''.join(chunks).decode('utf-8', errors='replace')
    frames = [x for x in tty.split('\r') if '%' in x]
    check(frames and re.search(r'\[[#.]{20}\] +\d+%  read \d+  delivered \d+', frames[-1]),
          'no progress bar on the terminal: %r' % tty[-300:])
    check(any('ETA' in x for x in frames), 'no ETA in %r' % frames[-3:])
    check('3000 records read (3000 events' in tty, 'no summary at the end: %r' % tty[-300:])
    rc, err = t.run(['replay', '-c', t.path('config.json'), t.path('events.jsonl')], timeout=30)
    check(rc == 0, 'exit status %s' % rc)
    lines = [x for x in err.splitlines() if x.startswith('kmsrouter: ')]
    check(len(lines) == 1 and '3000 records read (3000 events' in lines[0] and '%' not in err,
          'not a one-line summary: %r' % err[-300:])


# ---------------------------------------------------------------- main

def start(kr):
    global KR
    KR = kr


def main(tests=None, suite='pipeline', doc=__doc__):
    """The runner of this script's TESTS, and of the scripts that use its helpers for theirs."""
    return run_cases(TESTS if tests is None else tests, suite, 'kmsrouter-it-', doc,
                     start=start, case_arg=T, finish=lambda t, keep: t.cleanup())


if __name__ == '__main__':
    sys.exit(main())
