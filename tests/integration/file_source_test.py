#!/usr/bin/env python3
"""The file source's globs, with real `kmsrouter run` processes on real files.

    python3 tests/integration/file_source_test.py PATH_TO_KMSROUTER [name-filter]

Following: a file that starts to match a glob after the start is read from its beginning, once;
a followed glob that matches nothing is warned about once and read when a file appears; without
follow such a glob is an error. Prints `ok NAME` / `FAIL NAME: reason`, exits 1 if any test
failed. Helpers come from run_tests.py next to this file.
"""
import json
import os
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import run_tests as rt  # noqa: E402
from run_tests import (KMS, Router, append, check, count_lines, expect_ids_once,  # noqa: E402
                       follow_source, jsonl, log_sink, make_event, wait_for, write_json)

TESTS = []


def test(fn):
    TESTS.append(fn)
    return fn


def events(tag, n, **fields):
    return [make_event('deletion', '%s-%03d' % (tag, i), **fields)[1] for i in range(n)]


def ids(evs):
    return [e['id'] for e in evs]


def all_to_out(**kw):
    cfg = {'sinks': [log_sink('out', 'out.jsonl')],
           'rules': [{'name': 'all', 'pattern': KMS, 'targets': ['out']}]}
    cfg.update(kw)
    return cfg


def log_lines(err, level, msg):
    """The log lines of a level whose msg contains msg."""
    return [l for l in err.splitlines() if 'level=%s' % level in l and msg in l]


def stop(r):
    r.signal(signal.SIGTERM)
    rc = r.wait(10)
    check(rc == 0, 'exit status %s after SIGTERM, want 0; stderr: %s' % (rc, r.stderr_tail()))
    return r.stderr()


# ---------------------------------------------------------------- follow and globs

@test
def follow_reads_files_that_start_to_match_a_glob(t):
    """in/*.jsonl matches a.jsonl at the start; b.jsonl created later is read from its
    beginning, and both go on being followed; a.jsonl deleted and created again is read anew
    (rotation); nothing is read twice; the checkpoint has an entry for b.jsonl."""
    os.makedirs(t.path('in'))
    a1, b1, a2, b2, a3 = (events(tag, n) for tag, n in
                          (('a1', 20), ('b1', 30), ('a2', 10), ('b2', 10), ('a3', 5)))
    append(t.path('in', 'a.jsonl'), jsonl(a1))
    write_json(t.path('config.json'), all_to_out(
        sources=[follow_source(['in/*.jsonl'], checkpoint='cp.json')]))
    r = Router(t, ['run', '-c', t.path('config.json')])
    out = t.path('out.jsonl')
    wait_for(lambda: count_lines(out) >= 20, 5, 'the events of a.jsonl', proc=r)
    append(t.path('in', 'b.jsonl'), jsonl(b1))
    wait_for(lambda: count_lines(out) >= 50, 5, 'the events of b.jsonl, created after the start',
             proc=r)
    append(t.path('in', 'a.jsonl'), jsonl(a2))
    append(t.path('in', 'b.jsonl'), jsonl(b2))
    wait_for(lambda: count_lines(out) >= 70, 5, 'events appended to both files', proc=r)
    os.unlink(t.path('in', 'a.jsonl'))
    time.sleep(0.15)  # a few polls with a.jsonl gone
    append(t.path('in', 'a.jsonl'), jsonl(a3))
    wait_for(lambda: count_lines(out) >= 75, 5, 'the events of a.jsonl created again', proc=r)
    err = stop(r)
    expect_ids_once(out, ids(a1 + b1 + a2 + b2 + a3), 'out')
    news = log_lines(err, 'info', 'a new file matches a followed glob')
    check(len(news) == 1 and 'in/b.jsonl' in news[0],
          'want one info line naming in/b.jsonl, got: %s' % news)
    with open(t.path('cp.json')) as f:
        cp = {os.path.basename(i['path']): i['records'] for i in json.load(f)['inputs']}
    check(cp == {'a.jsonl': 5, 'b.jsonl': 40}, 'checkpoint records %s, want a.jsonl 5 and '
          'b.jsonl 40' % cp)


@test
def follow_warns_once_about_a_glob_that_matches_nothing(t):
    """A followed glob that matches nothing gets one warning naming it, however many polls
    pass (a glob that matches is not warned about); a file that starts to match it later is
    read."""
    os.makedirs(t.path('in'))
    os.makedirs(t.path('other'))
    other = events('other', 5)
    append(t.path('other', 'x.jsonl'), jsonl(other))
    write_json(t.path('config.json'), all_to_out(
        sources=[follow_source(['in/*.jsonl', 'other/*.jsonl'], poll_interval_ms=20)]))
    r = Router(t, ['run', '-c', t.path('config.json')])
    out = t.path('out.jsonl')
    wait_for(lambda: count_lines(out) >= 5, 5, 'the events of other/x.jsonl', proc=r)
    time.sleep(0.5)  # about 25 polls
    warned = log_lines(r.stderr(), 'warn', 'no file matches a followed glob')
    check(len(warned) == 1, 'want one warning, got %d: %s' % (len(warned), warned))
    check('glob=%s' % t.path('in', '*.jsonl') in warned[0],
          'the warning does not name the glob: %s' % warned[0])
    first = events('first', 15)
    append(t.path('in', 'first.jsonl'), jsonl(first))
    wait_for(lambda: count_lines(out) >= 20, 5, 'the events of the first matching file', proc=r)
    err = stop(r)
    expect_ids_once(out, ids(other + first), 'out')
    check(len(log_lines(err, 'warn', 'no file matches')) == 1,
          'the warning was repeated: %s' % log_lines(err, 'warn', 'no file matches'))


@test
def without_follow_a_glob_that_matches_nothing_is_an_error(t):
    """Without follow, a glob that matches nothing is an error naming it (exit 1); the other
    inputs are still read."""
    evs = events('ev', 10)
    append(t.path('events.jsonl'), jsonl(evs))
    write_json(t.path('config.json'), all_to_out(
        sources=[{'name': 'in', 'type': 'file', 'paths': ['nothing/*.jsonl', 'events.jsonl']}]))
    rc, err = t.run(['run', '-c', t.path('config.json')], timeout=10)
    check(rc == 1, 'exit status %s, want 1; stderr: %s' % (rc, err.strip()[-300:]))
    errors = log_lines(err, 'error', 'no file matches a glob')
    check(len(errors) == 1 and 'nothing/*.jsonl' in errors[0],
          'want one error naming the glob, got: %s' % err.strip()[-300:])
    expect_ids_once(t.path('out.jsonl'), ids(evs), 'out')


def main():
    if len(sys.argv) < 2 or sys.argv[1] in ('-h', '--help'):
        print(__doc__.strip())
        return 2
    rt.KR = os.path.abspath(sys.argv[1])
    if not os.access(rt.KR, os.X_OK):
        print('%s is not an executable' % rt.KR, file=sys.stderr)
        return 2
    flt = sys.argv[2] if len(sys.argv) > 2 else ''
    keep = os.environ.get('KEEP_TMP') == '1'
    selected = [fn for fn in TESTS if flt in fn.__name__]
    if not selected:
        print('no test matches %r' % flt, file=sys.stderr)
        return 2
    failed = 0
    t0 = time.monotonic()
    for fn in selected:
        t = rt.T(fn.__name__)
        start = time.monotonic()
        try:
            fn(t)
            result = 'ok %s' % fn.__name__
        except rt.Failure as e:
            failed += 1
            result = 'FAIL %s: %s' % (fn.__name__, e)
        except Exception as e:
            failed += 1
            result = 'FAIL %s: %s: %s' % (fn.__name__, type(e).__name__, e)
        finally:
            t.cleanup(keep)
        print('# %s: %.1f s%s' % (fn.__name__, time.monotonic() - start,
                                  ', files kept in ' + t.dir if keep else ''))
        print(result, flush=True)
    print('# %d tests, %d failed, %.1f s' % (len(selected), failed, time.monotonic() - t0))
    return 1 if failed else 0


if __name__ == '__main__':
    sys.exit(main())
