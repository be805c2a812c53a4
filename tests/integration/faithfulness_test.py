#!/usr/bin/env python3
"""Integration tests of what `run` and `replay` promise about every record: each target entry is
its own delivery, a sink that can never work stops the start, failed attempts are logged and
counted, the summary and the exit status say what happened.

    python3 tests/integration/faithfulness_test.py PATH_TO_KMSROUTER [name-filter]

Same conventions as run_tests.py (whose helpers it uses): `ok NAME` or `FAIL NAME: reason` per
test, exit 1 if any failed; real processes, real files, real signals.
"""
import json
import os
import re
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import run_tests as rt  # noqa: E402
from run_tests import (KMS, Router, by_type, check, follow_source, http_get, ids_of,  # noqa: E402
                       jsonl, log_sink, make_event, parse_lines, parse_metrics, metric,
                       wait_for, write_json, free_port)

TESTS = []


def test(fn):
    TESTS.append(fn)
    return fn


def json_logs(err):
    """The JSON log lines of a stderr text (config "log": {"format": "json"})."""
    out = []
    for line in err.splitlines():
        try:
            o = json.loads(line)
        except ValueError:
            continue
        if isinstance(o, dict) and 'level' in o:
            out.append(o)
    return out


SUMMARY = re.compile(
    r'^kmsrouter: (\d+) records read \((\d+) events, (\d+) invalid\), (\d+) already done, '
    r'(\d+) outside the time range, (\d+) matched, (\d+) unmatched, (\d+) deliveries '
    r'succeeded, (\d+) deliveries dead-lettered, (\d+) invalid records dead-lettered, '
    r'(\d+) records left unacknowledged, [0-9.]+ s$')
SUMMARY_KEYS = ('records', 'events', 'invalid', 'already_done', 'outside', 'matched',
                'unmatched', 'delivered', 'dead_lettered', 'invalid_dead_lettered', 'unacked')


def summary(err):
    """The counts of the one summary line in a stderr text."""
    lines = [l for l in err.splitlines() if SUMMARY.match(l)]
    check(len(lines) == 1, 'want one summary line, found %d: %s' % (len(lines), err[-600:]))
    return dict(zip(SUMMARY_KEYS, (int(x) for x in SUMMARY.match(lines[0]).groups())))


@test
def each_target_entry_is_its_own_delivery(t):
    """A rule naming one sink three ways (plain, with input_path, plain again) delivers twice:
    the identical third entry is merged, and check says so; a second rule on the same sink
    delivers once more. match lists one target per delivery; run writes them all."""
    events = [make_event('deletion', 'multi-%d' % i)[1] for i in range(5)]
    with open(t.path('events.jsonl'), 'w') as f:
        f.write(jsonl(events))
    cfg = {
        'sources': [{'name': 'in', 'type': 'file', 'paths': ['events.jsonl']}],
        'sinks': [log_sink('out', 'out.jsonl', metadata=True)],
        'rules': [{'name': 'r1', 'pattern': KMS,
                   'targets': ['out', {'sink': 'out', 'input_path': '$.detail'}, 'out']},
                  {'name': 'r2', 'pattern': by_type('KMS CMK Deletion'), 'targets': ['out']}],
    }
    write_json(t.path('config.json'), cfg)
    r = Router(t, ['check', '-c', t.path('config.json')])
    rc = r.wait(10)
    with open(r.out_path) as f:
        out = f.read()
    check(rc == 0, 'check: exit status %s' % rc)
    check('rule r1 -> out out (input_path) [1 identical target entry merged: delivered once]'
          in out, 'check does not list both entries and the merge: %r' % out)
    r = Router(t, ['match', '-c', t.path('config.json'), t.path('events.jsonl')])
    check(r.wait(10) == 0, 'match: exit status %s' % r.p.returncode)
    lines = parse_lines(r.out_path)
    check(len(lines) == 5 and all(l['targets'] == ['out', 'out', 'out'] for l in lines),
          'match targets: %s' % lines[:1])
    rc, err = t.run(['run', '-c', t.path('config.json')], timeout=20)
    check(rc == 0, 'run: exit status %s: %s' % (rc, err[-300:]))
    got = parse_lines(t.path('out.jsonl'))
    check(len(got) == 15, '%d lines in out, want 15 (3 deliveries per event)' % len(got))
    for e in events:
        whole = [g for g in got if g['payload'] == e]
        check(len(whole) == 2 and sorted(g['rule'] for g in whole) == ['r1', 'r2'],
              'event %s: whole deliveries from rules %s, want r1 and r2'
              % (e['id'], [g['rule'] for g in whole]))
    # the sample events share one detail: five deliveries of it, all from r1
    detail = [g for g in got if g['payload'] == events[0]['detail']]
    check(len(detail) == 5 and all(g['rule'] == 'r1' for g in detail),
          '%d deliveries of the detail (input_path), want 5 from r1' % len(detail))
    s = summary(err)
    check(s['delivered'] == 15 and s['matched'] == 5, 'summary: %s' % s)


@test
def dead_letters_name_the_target_entry_and_count_every_error(t):
    """Two entries of one rule on a failing sink (/dev/full) are dead-lettered separately, each
    with its target_index and error_counts (3 attempts, all WriteFailed); the first failure of
    each delivery is logged at warn with its reason, as it happens."""
    events = [make_event('deletion', 'dl-%d' % i)[1] for i in range(3)]
    with open(t.path('events.jsonl'), 'w') as f:
        f.write(jsonl(events))
    retry = {'max_attempts': 3, 'max_event_age_seconds': 60, 'initial_backoff_ms': 10,
             'max_backoff_ms': 20}
    cfg = {
        'sources': [{'name': 'in', 'type': 'file', 'paths': ['events.jsonl']}],
        'sinks': [log_sink('full', '/dev/full', retry=retry, dead_letter='dlq'),
                  log_sink('dlq', 'dlq.jsonl')],
        'rules': [{'name': 'r', 'pattern': KMS,
                   'targets': ['full', {'sink': 'full', 'input_path': '$.detail'}]}],
        'log': {'format': 'json', 'level': 'info'},
    }
    write_json(t.path('config.json'), cfg)
    rc, err = t.run(['run', '-c', t.path('config.json')], timeout=30)
    check(rc == 0, 'exit status %s: %s' % (rc, err[-300:]))
    dlq = parse_lines(t.path('dlq.jsonl'))
    check(len(dlq) == 6, '%d dead letters, want 6' % len(dlq))
    check(sorted(d['target_index'] for d in dlq) == [0, 0, 0, 1, 1, 1],
          'target_index values: %s' % [d.get('target_index') for d in dlq])
    for d in dlq:
        check(d['attempts'] == 3 and d['error_counts'] == {'WriteFailed': 3},
              'attempts %r, error_counts %r' % (d.get('attempts'), d.get('error_counts')))
    logs = json_logs(err)
    firsts = [o for o in logs if o.get('msg') == 'delivery attempt failed'
              and o.get('attempt') == '1']
    check(len(firsts) == 6 and all(o['level'] == 'warn' and o.get('sink') == 'full'
                                   and '/dev/full' in o.get('error', '') for o in firsts),
          '%d first-attempt failure lines, want 6 at warn naming the sink and the reason: %s'
          % (len(firsts), firsts[:2]))
    check(all(o.get('next', '').startswith('retry in') for o in firsts),
          'first failures do not say a retry follows: %s' % firsts[:1])
    s = summary(err)
    check(s['dead_lettered'] == 6 and s['delivered'] == 0 and s['unacked'] == 0,
          'summary: %s' % s)


@test
def a_log_sink_that_cannot_work_fails_the_start(t):
    """A log sink in a folder that does not exist: exit 2 at once, naming the option and the
    folder, instead of retrying in silence; check rejects it too, match does not look."""
    with open(t.path('events.jsonl'), 'w') as f:
        f.write(jsonl([make_event('deletion', 'x')[1]]))
    cfg = {'sources': [{'name': 'in', 'type': 'file', 'paths': ['events.jsonl']}],
           'sinks': [log_sink('out', 'missing/out.jsonl')],
           'rules': [{'name': 'r', 'pattern': KMS, 'targets': ['out']}]}
    write_json(t.path('config.json'), cfg)
    start = time.monotonic()
    rc, err = t.run(['run', '-c', t.path('config.json')], timeout=10)
    took = time.monotonic() - start
    check(rc == 2, 'exit status %s, want 2: %s' % (rc, err[-300:]))
    check(took < 3, 'took %.1f s to fail' % took)
    check(re.search(r'config\.json:\d+:\d+: \$\.sinks\[0\]\.path: ', err)
          and t.path('missing') in err,
          'the error does not name the option and the folder: %s' % err[-300:])
    # check says the same; match, for a config of another machine, does not look
    rc, err2 = t.run(['check', '-c', t.path('config.json')], timeout=10)
    check(rc == 2 and t.path('missing') in err2, 'check: exit %s: %s' % (rc, err2[-300:]))
    rc, _ = t.run(['match', '-c', t.path('config.json'), t.path('events.jsonl')], timeout=10)
    check(rc == 0, 'match on a config whose log folder is elsewhere: exit %s' % rc)
    for bad in ('', 'dir'):
        os.makedirs(t.path('adir'), exist_ok=True)
        cfg['sinks'][0]['path'] = 'adir' if bad else 'events.jsonl/out.jsonl'
        write_json(t.path('config.json'), cfg)
        rc, err = t.run(['run', '-c', t.path('config.json')], timeout=10)
        check(rc == 2, 'path %s: exit status %s, want 2' % (cfg['sinks'][0]['path'], rc))


@test
def signal_during_a_failing_sink_exits_1_and_counts_what_is_left(t):
    """SIGINT while a sink keeps failing (no dead letter): after the grace period the run exits
    1, its summary counts the records left unacknowledged, and a stop line is logged."""
    open(t.path('in.jsonl'), 'w').close()
    retry = {'max_attempts': 1000, 'max_event_age_seconds': 300, 'initial_backoff_ms': 20,
             'max_backoff_ms': 50}
    cfg = {'sources': [follow_source(['in.jsonl'])],
           'sinks': [log_sink('full', '/dev/full', retry=retry)],
           'rules': [{'name': 'r', 'pattern': KMS, 'targets': ['full']}],
           'shutdown_grace_seconds': 1}
    write_json(t.path('config.json'), cfg)
    r = Router(t, ['run', '-c', t.path('config.json')])
    rt.append(t.path('in.jsonl'), jsonl(make_event('deletion', 'f-%d' % i)[1] for i in range(7)))
    wait_for(lambda: r.stderr().count('delivery attempt failed') >= 7, 10,
             'the first failures logged', proc=r)
    r.signal(signal.SIGINT)
    rc = r.wait(10, 'exit after SIGINT')
    err = r.stderr()
    check(rc == 1, 'exit status %s, want 1 (records left undelivered): %s'
          % (rc, r.stderr_tail()))
    s = summary(err)
    check(s['unacked'] == 7 and s['records'] == 7 and s['delivered'] == 0,
          'summary: %s' % s)
    check('grace period over' in err and 'msg=stopped' in err,
          'no grace-period or stop line: %s' % r.stderr_tail())


@test
def run_summary_start_and_stop_lines(t):
    """run logs a start line and ends with the summary: records read, events, invalid,
    matched, unmatched, deliveries; a config without sources is refused."""
    evs = [make_event('deletion', 'm-%d' % i)[1] for i in range(4)]
    evs += [make_event('rotation', 'u-%d' % i)[1] for i in range(3)]
    with open(t.path('events.jsonl'), 'w') as f:
        f.write(jsonl(evs) + '{"broken": \n')
    cfg = {'sources': [{'name': 'in', 'type': 'file', 'paths': ['events.jsonl']}],
           'sinks': [log_sink('out', 'out.jsonl'), log_sink('bad', 'bad.jsonl')],
           'rules': [{'name': 'r', 'pattern': by_type('KMS CMK Deletion'), 'targets': ['out']}],
           'invalid_dead_letter': 'bad'}
    write_json(t.path('config.json'), cfg)
    rc, err = t.run(['run', '-c', t.path('config.json')], timeout=20)
    check(rc == 0, 'exit status %s: %s' % (rc, err[-300:]))
    check('msg=started' in err and 'msg=stopped' in err, 'no start/stop lines: %s' % err)
    s = summary(err)
    want = {'records': 8, 'events': 7, 'invalid': 1, 'matched': 4, 'unmatched': 3,
            'delivered': 4, 'dead_lettered': 0, 'invalid_dead_lettered': 1, 'unacked': 0}
    check(all(s[k] == v for k, v in want.items()), 'summary %s, want %s' % (s, want))
    del cfg['sources']
    write_json(t.path('nosources.json'), cfg)
    rc, err = t.run(['run', '-c', t.path('nosources.json')], timeout=10)
    check(rc == 2 and 'no "sources"' in err, 'no sources: exit %s, %s' % (rc, err[-300:]))


@test
def the_default_run_shows_the_routing(t):
    """`kmsrouter run` with no config: every line says which rule sent which event to which
    sink, and the bundled deletion event reaches both page and audit."""
    rc, err = t.run(['run'], timeout=20)
    check(rc == 0, 'exit status %s: %s' % (rc, err[-300:]))
    out = parse_lines(t.procs[-1].out_path)
    check(out and all({'rule', 'sink', 'payload'} <= set(o) for o in out),
          'lines without rule/sink: %s' % out[:1])
    routes = {(o['rule'], o['sink']) for o in out}
    check(('key-deleted', 'page') in routes and ('key-deleted', 'audit') in routes,
          'routes: %s' % sorted(routes))


@test
def reload_counts_failures_and_warns_about_sources(t):
    """A failed reload is counted in kmsrouter_reloads_total{result="failure"}; a reload that
    changes the sources says they need a restart."""
    open(t.path('in.jsonl'), 'w').close()
    port = free_port()
    cfg = {'sources': [follow_source(['in.jsonl'])],
           'sinks': [log_sink('out', 'out.jsonl')],
           'rules': [{'name': 'r', 'pattern': KMS, 'targets': ['out']}],
           'metrics': {'listen': '127.0.0.1:%d' % port}}
    write_json(t.path('config.json'), cfg)
    r = Router(t, ['run', '-c', t.path('config.json')])
    url = 'http://127.0.0.1:%d/metrics' % port

    def reloads(result):
        try:
            status, text = http_get(url, timeout=1)
        except OSError:
            return None
        return metric(parse_metrics(text), 'kmsrouter_reloads_total', result=result)
    wait_for(lambda: reloads('failure') == 0, 10, 'metrics up', proc=r)
    with open(t.path('config.json'), 'w') as f:
        f.write('{"sinks": [')
    r.signal(signal.SIGHUP)
    wait_for(lambda: reloads('failure') == 1, 10, 'a failed reload counted', proc=r)
    cfg['sources'][0]['paths'] = ['other.jsonl']
    write_json(t.path('config.json'), cfg)
    r.signal(signal.SIGHUP)
    wait_for(lambda: reloads('success') == 1, 10, 'a reload counted', proc=r)
    wait_for(lambda: 'restart kmsrouter to apply' in r.stderr(), 5, 'the sources warning',
             proc=r)
    r.signal(signal.SIGTERM)
    check(r.wait(10) == 0, 'exit status %s' % r.p.returncode)


@test
def a_stdout_reader_that_does_not_keep_up_holds_up_no_other_sink(t):
    """Two log sinks on stdout, a pipe nobody reads for a while, and one on a file: the file
    gets every event while stdout is full (the loop waits for the pipe, it does not stop in a
    write), then the reader gets every line of both stdout sinks whole, none cut by the
    other's, and the run exits 0 with everything delivered."""
    import subprocess
    n = 3000
    evs = [make_event('deletion', 'out-%05d' % i)[1] for i in range(n)]
    with open(t.path('in.jsonl'), 'w') as f:
        f.write(jsonl(evs))
    cfg = {'sources': [{'name': 'in', 'type': 'file', 'paths': ['in.jsonl']}],
           'sinks': [log_sink('a', '-', metadata=True), log_sink('b', '-'),
                     log_sink('f', 'file.jsonl')],
           'rules': [{'name': 'all', 'pattern': KMS, 'targets': ['a', 'b', 'f']}]}
    write_json(t.path('config.json'), cfg)
    err_path = t.path('stderr.txt')
    with open(err_path, 'wb') as err:
        p = subprocess.Popen([rt.KR, 'run', '-c', t.path('config.json')], cwd=t.dir,
                             stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=err)
    try:
        # 2 x 3000 lines are megabytes: far more than a pipe holds, so stdout is full long
        # before the file is written, unless the file's writes go on beside it
        wait_for(lambda: rt.count_lines(t.path('file.jsonl')) >= n, 20,
                 'every event in file.jsonl while nobody reads stdout')
        check(p.poll() is None, 'kmsrouter exited with stdout still full (status %s)'
              % p.returncode)
        out = p.stdout.read()
        rc = p.wait(20)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    with open(err_path) as f:
        err = f.read()
    check(rc == 0, 'exit status %s: %s' % (rc, err[-500:]))
    lines = out.split(b'\n')
    check(lines[-1] == b'', 'stdout does not end with a whole line: %r' % lines[-1][-80:])
    seen = {'a': [], 'b': []}
    for l in lines[:-1]:
        try:
            o = json.loads(l)
        except ValueError:
            raise rt.Failure('a line on stdout is not JSON (cut by another?): %r' % l[:200])
        if 'sink' in o:
            seen['a'].append(o['payload']['id'])
        else:
            seen['b'].append(o['id'])
    want = [e['id'] for e in evs]
    for sink in ('a', 'b'):
        check(sorted(seen[sink]) == want, 'sink %s: %d lines for %d events, %d distinct'
              % (sink, len(seen[sink]), n, len(set(seen[sink]))))
    s = summary(err)
    check(s['delivered'] == 3 * n and s['unacked'] == 0, 'summary: %s' % s)


@test
def a_stdout_whose_reader_is_gone_fails_its_deliveries_for_good(t):
    """A log sink on stdout, a pipe whose reader has closed it: the deliveries fail at once as
    permanent (StdoutClosed, saying the reader is gone), into the dead letter, instead of being
    tried again for a day; the file sink beside it gets every event; exit 0."""
    import subprocess
    n = 20
    evs = [make_event('deletion', 'gone-%03d' % i)[1] for i in range(n)]
    with open(t.path('in.jsonl'), 'w') as f:
        f.write(jsonl(evs))
    cfg = {'sources': [{'name': 'in', 'type': 'file', 'paths': ['in.jsonl']}],
           'sinks': [log_sink('out', '-', dead_letter='dlq'), log_sink('f', 'file.jsonl'),
                     log_sink('dlq', 'dlq.jsonl')],
           'rules': [{'name': 'all', 'pattern': KMS, 'targets': ['out', 'f']}]}
    write_json(t.path('config.json'), cfg)
    r_fd, w_fd = os.pipe()
    os.close(r_fd)  # nobody will ever read it
    try:
        with open(t.path('stderr.txt'), 'wb') as err:
            p = subprocess.Popen([rt.KR, 'run', '-c', t.path('config.json')], cwd=t.dir,
                                 stdin=subprocess.DEVNULL, stdout=w_fd, stderr=err)
    finally:
        os.close(w_fd)
    try:
        rc = p.wait(20)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()
        raise rt.Failure('still running 20 s after start: a closed stdout is tried again')
    with open(t.path('stderr.txt')) as f:
        err = f.read()
    check(rc == 0, 'exit status %s: %s' % (rc, err[-500:]))
    check('StdoutClosed' in err and 'its reader is gone' in err,
          'no StdoutClosed failure saying why: %s' % err[-500:])
    dlq = [json.loads(l) for l in open(t.path('dlq.jsonl')) if l.strip()]
    check(sorted(d['event']['id'] for d in dlq) == sorted(e['id'] for e in evs) and
          all(d['error_code'] == 'StdoutClosed' for d in dlq),
          'dead letters: %s' % [(d['event']['id'], d['error_code']) for d in dlq][:5])
    check(rt.count_lines(t.path('file.jsonl')) == n, 'the file sink got %d of %d'
          % (rt.count_lines(t.path('file.jsonl')), n))
    s = summary(err)
    check(s['delivered'] == n and s['dead_lettered'] == n and s['unacked'] == 0,
          'summary: %s' % s)


@test
def a_log_sink_on_a_fifo_nobody_reads_holds_up_nothing(t):
    """A log sink whose path is a FIFO nobody reads yet: its deliveries fail as retryable
    (OpenFailed, saying why) while the file sink beside it gets every event; once a reader
    opens the FIFO it gets every line once, and the run exits 0."""
    n = 50
    evs = [make_event('deletion', 'fifo-%03d' % i)[1] for i in range(n)]
    with open(t.path('in.jsonl'), 'w') as f:
        f.write(jsonl(evs))
    os.mkfifo(t.path('out.fifo'))
    fast = {'initial_backoff_ms': 50, 'max_backoff_ms': 100}
    cfg = {'sources': [{'name': 'in', 'type': 'file', 'paths': ['in.jsonl']}],
           'sinks': [log_sink('p', 'out.fifo', retry=fast), log_sink('f', 'file.jsonl')],
           'rules': [{'name': 'all', 'pattern': KMS, 'targets': ['p', 'f']}]}
    write_json(t.path('config.json'), cfg)
    r = Router(t, ['run', '-c', t.path('config.json')])
    wait_for(lambda: rt.count_lines(t.path('file.jsonl')) >= n, 10,
             'every event in file.jsonl while nobody reads out.fifo', proc=r)
    wait_for(lambda: 'a FIFO that no process reads' in r.stderr(), 5,
             'the OpenFailed warning saying why', proc=r)
    with open(t.path('out.fifo'), 'rb') as f:
        data = f.read()  # to the end: the router closes its end when it exits
    rc = r.wait(10)
    check(rc == 0, 'exit status %s: %s' % (rc, r.stderr_tail()))
    got = sorted(json.loads(l)['id'] for l in data.split(b'\n') if l)
    check(got == sorted(e['id'] for e in evs), 'the FIFO got %d lines for %d events'
          % (len(got), n))


@test
def metrics_bind_error_names_the_port(t):
    """A metrics port already taken: exit 2, the message names that port and the reason."""
    import socket
    s = socket.socket()
    s.bind(('127.0.0.1', 0))
    s.listen(1)
    port = s.getsockname()[1]
    try:
        cfg = {'sources': [{'name': 'in', 'type': 'file', 'paths': ['/dev/null']}],
               'sinks': [log_sink('out', 'out.jsonl')], 'rules': [],
               'metrics': {'listen': '127.0.0.1:%d' % port}}
        write_json(t.path('config.json'), cfg)
        rc, err = t.run(['run', '-c', t.path('config.json')], timeout=10)
    finally:
        s.close()
    check(rc == 2, 'exit status %s, want 2' % rc)
    check('port %d' % port in err and 'in use' in err,
          'the error does not name port %d and why: %s' % (port, err[-300:]))


@test
def a_pattern_given_as_a_json_string_is_accepted(t):
    """"pattern" as the JSON string `aws events describe-rule` prints works like the object;
    an error inside it is placed at the string."""
    events = [make_event('deletion', 'p-1')[1], make_event('rotation', 'p-2')[1]]
    with open(t.path('events.jsonl'), 'w') as f:
        f.write(jsonl(events))
    cfg = {'sinks': [log_sink('out', 'out.jsonl')],
           'rules': [{'name': 'r', 'pattern': json.dumps(by_type('KMS CMK Deletion')),
                      'targets': ['out']}]}
    write_json(t.path('config.json'), cfg)
    r = Router(t, ['match', '-c', t.path('config.json'), t.path('events.jsonl')])
    check(r.wait(10) == 0, 'match: exit %s: %s' % (r.p.returncode, r.stderr_tail()))
    lines = parse_lines(r.out_path)
    check([l['rules'] for l in lines] == [['r'], []], 'rules: %s' % lines)
    cfg['rules'][0]['pattern'] = '{"source": [1'
    write_json(t.path('config.json'), cfg)
    rc, err = t.run(['check', '-c', t.path('config.json')], timeout=10)
    check(rc == 2 and '$.rules[0].pattern' in err and 'not valid JSON' in err,
          'exit %s: %s' % (rc, err))


@test
def help_config_prints_every_option_from_the_tables(t):
    """`kmsrouter help config` lists every top-level, rule, target, source and sink option with
    its type and default; `help config http` only the http sink's; an unknown type is exit 2."""
    r = Router(t, ['help', 'config'])
    check(r.wait(10) == 0, 'help config: exit %s' % r.p.returncode)
    with open(r.out_path) as f:
        out = f.read()
    for word in ('max_in_flight  (an integer from 1 to 10000000; default 10000)',
                 'input_transformer', 'max_event_age_seconds', 'sink type "log"',
                 'sink type "http"', 'source type "file"', 'api_key_env', 'poll_interval_ms',
                 'fsync_interval_ms', 'method  (one of "POST", "PUT"; default "POST")',
                 'source type "kafka"', 'group_id', 'dead_letter_topic', 'sink type "kafka"', 'secret_properties', 'sink type "lambda"', 'role_arn'):
        check(word in out, 'help config lacks %r' % word)
    r = Router(t, ['help', 'config', 'http'])
    check(r.wait(10) == 0, 'help config http: exit %s' % r.p.returncode)
    with open(r.out_path) as f:
        out = f.read()
    check('url  (a string: a URL with the scheme "http", "https"; required)' in out
          and 'sink type "log"' not in out and 'max_in_flight' not in out,
          'help config http: %s' % out[:400])
    rc, err = t.run(['help', 'config', 'nosuch'], timeout=10)
    check(rc == 2 and 'no source or sink type "nosuch"' in err, 'unknown type: %s %s' % (rc, err))


@test
def check_rejects_what_run_would_with_its_place(t):
    """Values that only the http sink's create used to reject (a URL of another scheme, an
    unknown method, an unset api_key_env) are rejected by check, at FILE:LINE:COL."""
    env_unset = 'KR_IT_SURELY_UNSET_%d' % os.getpid()
    for opts, where, msg in (
            ({'url': 'ftp://x'}, '$.sinks[0].url', 'scheme "http", "https"'),
            ({'url': 'http://x', 'method': 'GET'}, '$.sinks[0].method', 'one of "POST", "PUT"'),
            ({'url': 'http://x', 'api_key_header': 'x-api-key', 'api_key_env': env_unset},
             '$.sinks[0].api_key_env', 'environment variable %s is not set' % env_unset),
            ({'url': 'http://x', 'api_key_header': 'x-api-key'}, '$.sinks[0].api_key_header',
             'go together')):
        sink = {'name': 'h', 'type': 'http'}
        sink.update(opts)
        cfg = {'sources': [{'name': 'in', 'type': 'file', 'paths': ['/dev/null']}],
               'sinks': [sink], 'rules': []}
        write_json(t.path('config.json'), cfg)
        for cmd in ('check', 'run'):
            rc, err = t.run([cmd, '-c', t.path('config.json')], timeout=10)
            check(rc == 2 and re.search(r'config\.json:\d+:\d+: %s: ' % re.escape(where), err)
                  and msg in err, '%s %s: exit %s, %s' % (cmd, opts, rc, err.strip()))
    # match reads a config for another machine: an unset secret is not its business
    with open(t.path('e.jsonl'), 'w') as f:
        f.write(jsonl([make_event('deletion', 'm-1')[1]]))
    cfg['sinks'][0] = {'name': 'h', 'type': 'http', 'url': 'http://x',
                       'api_key_header': 'x-api-key', 'api_key_env': env_unset}
    write_json(t.path('config.json'), cfg)
    rc, err = t.run(['match', '-c', t.path('config.json'), t.path('e.jsonl')], timeout=10)
    check(rc == 1 and 'not set' not in err, 'match: exit %s (want 1: no rule), %s' % (rc, err))


@test
def invalid_records_dead_letter_as_valid_json(t):
    """Invalid records reach the invalid dead letter as valid JSON: bytes that are not UTF-8
    are replaced in "record" and kept exactly in "record_base64"; an oversized record keeps a
    bounded prefix and its size; records in binary garbage come with increasing, exact
    offsets."""
    import base64
    good = json.dumps(make_event('deletion', 'g-1')[1]).encode()
    bad_utf8 = b'{"bad\xff\xfe": 1}'
    big = b'{"id": "' + b'x' * 300000 + b'"}'
    garbage = bytes(range(1, 8)) + b'\n\x80\x81{\n\xfe\xff\n'
    data = good + b'\n' + bad_utf8 + b'\n' + big + b'\n' + garbage + good + b'\n'
    with open(t.path('in.jsonl'), 'wb') as f:
        f.write(data)
    cfg = {'sources': [{'name': 'in', 'type': 'file', 'paths': ['in.jsonl']}],
           'sinks': [log_sink('out', 'out.jsonl'), log_sink('bad', 'bad.jsonl')],
           'rules': [{'name': 'r', 'pattern': KMS, 'targets': ['out']}],
           'invalid_dead_letter': 'bad'}
    write_json(t.path('config.json'), cfg)
    rc, err = t.run(['run', '-c', t.path('config.json')], timeout=30)
    check(rc == 0, 'exit %s: %s' % (rc, err[-300:]))
    with open(t.path('bad.jsonl'), 'rb') as f:
        raw_lines = f.read().split(b'\n')[:-1]
    dl = []
    for line in raw_lines:
        line.decode('utf-8')  # raises on invalid UTF-8
        dl.append(json.loads(line))
    check(len(dl) >= 3, '%d dead letters: %s' % (len(dl), dl))
    first = dl[0]
    check(first['offset'] == len(good) + 1 and first['record_size'] == len(bad_utf8),
          'bad UTF-8 record at %s size %s' % (first.get('offset'), first.get('record_size')))
    check(base64.b64decode(first['record_base64']) == bad_utf8 and '\ufffd' in first['record'],
          'record_base64 does not hold the exact bytes: %s' % first)
    second = dl[1]
    check(second['record_size'] == len(big) and second['record_truncated'] is True
          and 0 < len(second['record']) <= 4096 and 'record_base64' not in second,
          'oversized record: size %s, truncated %s, %d bytes kept'
          % (second.get('record_size'), second.get('record_truncated'), len(second['record'])))
    offsets = [d['offset'] for d in dl]
    check(offsets == sorted(set(offsets)), 'offsets not increasing: %s' % offsets)
    for d in dl[2:]:
        start = d['offset']
        kept = base64.b64decode(d['record_base64']) if 'record_base64' in d \
            else d['record'].encode()
        check(data[start:start + len(kept)] == kept,
              'dead letter at offset %d does not hold the bytes there: %r vs %r'
              % (start, kept, data[start:start + len(kept)]))
    check(ids_of(t.path('out.jsonl')) == ['g-1', 'g-1'], 'good events: %s'
          % ids_of(t.path('out.jsonl')))


def main():
    return rt.main(TESTS, 'faithfulness', __doc__)


if __name__ == '__main__':
    sys.exit(main())
