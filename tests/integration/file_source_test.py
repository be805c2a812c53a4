#!/usr/bin/env python3
"""The file source's globs and checkpoints, with real `kmsrouter run` and `replay` processes on
real files.

    python3 tests/integration/file_source_test.py PATH_TO_KMSROUTER [name-filter]

Following: a file that starts to match a glob after the start is read from its beginning, once;
a followed glob that matches nothing is warned about once and read when a file appears; without
follow such a glob is an error. Checkpoints: a checkpoint resumes an unchanged or grown input,
and is refused (exit 2, saying what changed) when the file was replaced, truncated or rewritten,
when --from, --to or --replay-name changed, or when it has no identity record (an older
kmsrouter wrote it); --checkpoint-reset starts over. Prints `ok NAME` / `FAIL NAME: reason`, exits
1 if any test failed. Helpers come from run_tests.py next to this file.
"""
import json
import os
import re
import signal
import subprocess
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


def write_events(path, evs):
    """Writes the file anew through a temporary file and a rename: a new inode."""
    with open(path + '.new', 'w') as f:
        f.write(jsonl(evs))
    os.rename(path + '.new', path)


def all_to_out(**kw):
    cfg = {'sinks': [log_sink('out', 'out.jsonl')],
           'rules': [{'name': 'all', 'pattern': KMS, 'targets': ['out']}]}
    cfg.update(kw)
    return cfg


def log_lines(err, level, msg):
    """The log lines of a level whose msg contains msg."""
    return [l for l in err.splitlines() if 'level=%s' % level in l and msg in l]


def already_done(err):
    """The "N already done" of replay's summary line."""
    m = re.search(r'^kmsrouter: \d+ records read \(.*?\), (\d+) already done,', err, re.M)
    check(m, 'no summary line on stderr: %s' % err.strip()[-300:])
    return int(m.group(1))


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
def a_quiet_pipe_on_standard_input_does_not_stop_the_router(t):
    """paths ["-"] on a pipe whose writer stays but sends nothing more: what it sent is
    delivered, and SIGTERM stops the router at once (it waits for the pipe in its event loop,
    not in a read), exit 0, with the writer still there."""
    evs = events('quiet', 5)
    write_json(t.path('config.json'), all_to_out(
        sources=[{'name': 'in', 'type': 'file', 'paths': ['-']}]))
    r = Router(t, ['run', '-c', t.path('config.json')], stdin=subprocess.PIPE)
    try:
        r.p.stdin.write(jsonl(evs).encode())
        r.p.stdin.flush()
        out = t.path('out.jsonl')
        wait_for(lambda: count_lines(out) >= 5, 5, 'the events written to the pipe', proc=r)
        time.sleep(0.2)
        r.signal(signal.SIGTERM)
        rc = r.wait(5, 'kmsrouter to stop on SIGTERM with its standard input quiet')
        check(rc == 0, 'exit status %s, want 0: %s' % (rc, r.stderr_tail()))
        expect_ids_once(out, ids(evs), 'out')
    finally:
        r.p.stdin.close()


@test
def follow_ends_with_standard_input_that_is_a_pipe(t):
    """With follow, "-" on a pipe is followed while its writer is there, through a pause, and
    not past its end (as tail -f): when the writer closes it, the source is done and run exits
    0 by itself, every event delivered once, with an info line saying why."""
    first, second = events('p1', 10), events('p2', 20)
    write_json(t.path('config.json'), all_to_out(sources=[follow_source(['-'])]))
    r = Router(t, ['run', '-c', t.path('config.json')], stdin=subprocess.PIPE)
    out = t.path('out.jsonl')
    try:
        r.p.stdin.write(jsonl(first).encode())
        r.p.stdin.flush()
        wait_for(lambda: count_lines(out) >= 10, 5, 'the first events', proc=r)
        time.sleep(0.3)  # several polls with the pipe quiet and its writer there
        check(r.running(), 'kmsrouter exited while its standard input was still open: %s'
              % r.stderr_tail())
        r.p.stdin.write(jsonl(second).encode())
    finally:
        r.p.stdin.close()
    rc = r.wait(10, 'kmsrouter to finish once its standard input was closed')
    check(rc == 0, 'exit status %s, want 0: %s' % (rc, r.stderr_tail()))
    expect_ids_once(out, ids(first + second), 'out')
    ended = log_lines(r.stderr(), 'info', 'standard input (a pipe or socket) ended')
    check(len(ended) == 1, 'want one info line saying standard input ended, got: %s'
          % r.stderr_tail())


@test
def a_named_fifo_is_read_without_waiting_for_its_writer(t):
    """paths naming a FIFO: with no writer yet the router runs (SIGTERM stops it at once,
    exit 0); a writer that writes in two parts and closes has every event delivered once, and
    the run then ends by itself (the FIFO's end is its input's end)."""
    fifo = t.path('events.fifo')
    os.mkfifo(fifo)
    write_json(t.path('config.json'), all_to_out(
        sources=[{'name': 'in', 'type': 'file', 'paths': ['events.fifo']}]))
    r = Router(t, ['run', '-c', t.path('config.json')])
    time.sleep(0.3)
    check(r.running(), 'kmsrouter exited with no writer on the FIFO: %s' % r.stderr_tail())
    stop(r)
    first, second = events('fifo1', 5), events('fifo2', 7)
    r = Router(t, ['run', '-c', t.path('config.json')])
    with open(fifo, 'w') as w:  # waits for the router to open its end
        w.write(jsonl(first))
        w.flush()
        out = t.path('out.jsonl')
        wait_for(lambda: count_lines(out) >= 5, 5, 'the first part', proc=r)
        w.write(jsonl(second))
    rc = r.wait(10, 'kmsrouter to finish once the FIFO\'s writer closed it')
    check(rc == 0, 'exit status %s, want 0: %s' % (rc, r.stderr_tail()))
    expect_ids_once(out, ids(first + second), 'out')


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


@test
def records_a_truncated_last_record_hid_are_all_delivered_under_backpressure(t):
    """A record cut short at the end of a file swallowed the lines after it: they are found only
    when the input ends. With max_in_flight 1 the engine pauses the parser on the first of them;
    the rest must still be read (they were lost, exit 0, before the fix)."""
    evs = events('ev', 4)
    text = (json.dumps(evs[0]) + '\n' + '{"id": "cut", "source": "aws.kms", "n": [\n' +
            ''.join(json.dumps(e) + ',\n' for e in evs[1:]))
    append(t.path('events.jsonl'), text)
    write_json(t.path('config.json'), all_to_out(
        max_in_flight=1, invalid_dead_letter='bad',
        sinks=[log_sink('out', 'out.jsonl'), log_sink('bad', 'bad.jsonl')],
        sources=[{'name': 'in', 'type': 'file', 'paths': ['events.jsonl']}]))
    rc, err = t.run(['run', '-c', t.path('config.json')], timeout=10)
    check(rc == 0, 'exit status %s; stderr: %s' % (rc, err.strip()[-300:]))
    expect_ids_once(t.path('out.jsonl'), ids(evs), 'out')
    bad = [json.loads(l) for l in open(t.path('bad.jsonl'))]
    check(any('cut' in b['record'] for b in bad), 'the truncated record is not reported')


# ---------------------------------------------------------------- checkpoints

def replay(t, *extra, files=('in.jsonl',), timeout=20):
    args = ['replay', '-c', t.path('config.json'), '--checkpoint', t.path('cp.json')]
    args += list(extra) + [t.path(f) for f in files]
    return t.run(args, timeout=timeout)


def expect_refused(t, rc, err, *needles):
    """Exit 2 with one message that names the checkpoint, each needle, and --checkpoint-reset."""
    check(rc == 2, 'exit status %s, want 2; stderr: %s' % (rc, err.strip()[-400:]))
    lines = [l for l in err.splitlines() if t.path('cp.json') in l and 'no longer fits' in l]
    check(lines, 'no message naming the checkpoint: %s' % err.strip()[-400:])
    for n in needles + ('pass --checkpoint-reset to start over',):
        check(n in lines[0], 'the message does not say %r: %s' % (n, lines[0]))


@test
def replay_resumes_an_unchanged_or_grown_input(t):
    """A finished replay with a checkpoint run again skips every record as already done; after
    the file grew (past the 4 KiB whose hash is kept) it delivers exactly the new records. The
    checkpoint names the file (version 2, device, inode, size, head hash) and no temporary file
    is left."""
    first, more = events('first', 10), events('more', 25)
    append(t.path('in.jsonl'), jsonl(first))
    write_json(t.path('config.json'), all_to_out())
    rc, err = replay(t)
    check(rc == 0, 'first replay: exit status %s; stderr: %s' % (rc, err[-300:]))
    with open(t.path('cp.json')) as f:
        cp = json.load(f)
    st = os.stat(t.path('in.jsonl'))
    entry = cp['inputs'][0]
    check(st.st_size < 4096, 'test setup: the first file is not under 4 KiB')
    check(cp.get('version') == 2 and entry.get('records') == 10 and
          entry.get('inode') == st.st_ino and entry.get('dev') == st.st_dev and
          entry.get('size') == st.st_size and entry.get('head_bytes') == st.st_size and
          isinstance(entry.get('head_fnv1a64'), str),
          'checkpoint %s does not identify the file (inode %d, size %d)'
          % (cp, st.st_ino, st.st_size))
    check(not os.path.exists(t.path('cp.json.tmp')), 'cp.json.tmp left behind')
    rc, err = replay(t)
    check(rc == 0 and already_done(err) == 10, 'unchanged input: exit status %s, want 0 with 10 '
          'already done; stderr: %s' % (rc, err[-300:]))
    append(t.path('in.jsonl'), jsonl(more))
    rc, err = replay(t)
    check(rc == 0 and already_done(err) == 10, 'grown input: exit status %s, want 0 with 10 '
          'already done; stderr: %s' % (rc, err[-300:]))
    expect_ids_once(t.path('out.jsonl'), ids(first + more), 'out')
    rc, err = replay(t)
    check(rc == 0 and already_done(err) == 35, 'after the grown input: exit status %s, want 0 '
          'with 35 already done; stderr: %s' % (rc, err[-300:]))


@test
def replay_refuses_a_checkpoint_of_a_replaced_file(t):
    """The input replaced by another file (new inode), truncated in place, or rewritten in place
    with as many bytes: exit 2, a message naming the checkpoint, the file and what changed, and
    nothing delivered. --checkpoint-reset reads it from the beginning and says so."""
    old, new = events('old', 30), events('new', 20)
    append(t.path('in.jsonl'), jsonl(old))
    write_json(t.path('config.json'), all_to_out())
    rc, err = replay(t)
    check(rc == 0, 'first replay: exit status %s; stderr: %s' % (rc, err[-300:]))
    ino = os.stat(t.path('in.jsonl')).st_ino
    write_events(t.path('in.jsonl'), new)
    rc, err = replay(t)
    expect_refused(t, rc, err, t.path('in.jsonl'), 'the file was replaced (inode %d -> %d)'
                   % (ino, os.stat(t.path('in.jsonl')).st_ino))
    # back to the checkpointed file, then changed in place
    write_events(t.path('in.jsonl'), old)
    rc, err = replay(t, '--checkpoint-reset')
    check(rc == 0 and already_done(err) == 0, 'reset: exit status %s, want 0 with nothing '
          'already done; stderr: %s' % (rc, err[-300:]))
    check(log_lines(err, 'info', 'checkpoint reset'), 'the reset is not logged: %s' % err[-300:])
    size = os.path.getsize(t.path('in.jsonl'))
    with open(t.path('in.jsonl'), 'w') as f:  # truncated in place: same inode
        f.write(jsonl(new))
    rc, err = replay(t)
    expect_refused(t, rc, err, 'the file was truncated (%d -> %d bytes)'
                   % (size, os.path.getsize(t.path('in.jsonl'))))
    with open(t.path('in.jsonl'), 'w') as f:  # as many bytes, other records
        f.write(jsonl(events('odd', 30)))
    check(os.path.getsize(t.path('in.jsonl')) == size, 'test setup: sizes differ')
    rc, err = replay(t)
    expect_refused(t, rc, err, 'the file was rewritten')
    check(count_lines(t.path('out.jsonl')) == 60, 'a refused replay delivered something')
    with open(t.path('in.jsonl'), 'w') as f:
        f.write(jsonl(new))
    rc, err = replay(t, '--checkpoint-reset')
    check(rc == 0 and already_done(err) == 0, 'reset: exit status %s, want 0 with nothing '
          'already done; stderr: %s' % (rc, err[-300:]))
    got = rt.ids_of(t.path('out.jsonl'))
    check(got[60:] == ids(new), 'after the reset: %d records delivered, want the %d of the new '
          'file' % (len(got) - 60, len(new)))
    rc, err = replay(t)
    check(rc == 0 and already_done(err) == 20, 'after the reset the checkpoint fits: exit '
          'status %s, want 0 with 20 already done; stderr: %s' % (rc, err[-300:]))


@test
def replay_refuses_a_checkpoint_of_another_window(t):
    """A checkpoint written with --from A is refused with --from B, without --from, or with a
    --replay-name it did not have (each named with its old and new value); the same options
    resume."""
    evs = events('w', 30, time='2024-03-01T12:00:00Z')
    append(t.path('in.jsonl'), jsonl(evs))
    write_json(t.path('config.json'), all_to_out())
    frm = '2024-03-01T00:00:00Z'
    rc, err = replay(t, '--from', frm)
    check(rc == 0, 'first replay: exit status %s; stderr: %s' % (rc, err[-300:]))
    rc, err = replay(t, '--from', '2024-02-01T00:00:00.250+01:00')
    expect_refused(t, rc, err, '--from changed from %s to 2024-01-31T23:00:00.250Z' % frm)
    rc, err = replay(t)
    expect_refused(t, rc, err, '--from changed from %s to (not set)' % frm)
    rc, err = replay(t, '--from', frm, '--replay-name', 'again', '--to', '2025-01-01T00:00:00Z')
    expect_refused(t, rc, err, '--replay-name changed from (not set) to again',
                   '--to changed from (not set) to 2025-01-01T00:00:00Z')
    check(count_lines(t.path('out.jsonl')) == 30, 'a refused replay delivered something')
    rc, err = replay(t, '--from', '2024-03-01T01:00:00+01:00')  # the same instant
    check(rc == 0 and already_done(err) == 30, 'same window: exit status %s, want 0 with 30 '
          'already done; stderr: %s' % (rc, err[-300:]))


@test
def replay_refuses_a_checkpoint_without_identity(t):
    """A checkpoint as older versions wrote it (path and records only) is not trusted: exit 2,
    saying it has no identity record; --checkpoint-reset delivers everything. The reset flag
    without --checkpoint is a usage error."""
    evs = events('v1', 20)
    append(t.path('in.jsonl'), jsonl(evs))
    write_json(t.path('config.json'), all_to_out())
    write_json(t.path('cp.json'), {'version': 1, 'inputs': [
        {'path': t.path('in.jsonl'), 'records': 12}]})
    rc, err = replay(t)
    expect_refused(t, rc, err, t.path('in.jsonl'), 'the checkpoint has no identity record')
    check(count_lines(t.path('out.jsonl')) == 0, 'a refused replay delivered something')
    rc, err = replay(t, '--checkpoint-reset')
    check(rc == 0 and already_done(err) == 0, 'reset: exit status %s, want 0 with nothing '
          'already done; stderr: %s' % (rc, err[-300:]))
    expect_ids_once(t.path('out.jsonl'), ids(evs), 'out')
    rc, err = t.run(['replay', '-c', t.path('config.json'), '--checkpoint-reset',
                     t.path('in.jsonl')], timeout=10)
    check(rc == 2 and '--checkpoint-reset needs --checkpoint' in err,
          '--checkpoint-reset alone: exit status %s; stderr: %s' % (rc, err.strip()[-200:]))


@test
def run_checkpoint_resumes_a_grown_file_and_reads_a_replaced_one_anew(t):
    """run with follow and a checkpoint: stopped and started again after the file grew, it
    delivers only the new records; after the file was replaced while stopped (logrotate), it
    reads the new file from its beginning and warns naming the change, as for a rotation seen
    while running. Without follow, a replaced file is refused (exit 2, telling to delete the
    checkpoint), and read once the checkpoint is deleted."""
    first, more, other = events('first', 30), events('more', 20), events('other', 10)
    src = t.path('in.jsonl')
    append(src, jsonl(first))
    write_json(t.path('config.json'), all_to_out(
        sources=[follow_source([src], checkpoint='cp.json')]))
    out = t.path('out.jsonl')
    r = Router(t, ['run', '-c', t.path('config.json')])
    wait_for(lambda: count_lines(out) >= 30, 5, 'the first events', proc=r)
    stop(r)
    append(src, jsonl(more))
    r = Router(t, ['run', '-c', t.path('config.json')])
    wait_for(lambda: count_lines(out) >= 50, 5, 'the events appended while stopped', proc=r)
    stop(r)
    expect_ids_once(out, ids(first + more), 'out')
    ino = os.stat(src).st_ino
    write_events(src, other)
    r = Router(t, ['run', '-c', t.path('config.json')])
    wait_for(lambda: count_lines(out) >= 60, 5, 'the events of the replaced file', proc=r)
    stop(r)
    expect_ids_once(out, ids(first + more + other), 'out')
    check('the file changed since the checkpoint; reading it from its beginning' in r.stderr()
          and 'the file was replaced (inode %d -> %d)' % (ino, os.stat(src).st_ino)
          in r.stderr(), 'no warning naming the change: %s' % r.stderr_tail())

    # without follow: refused, until the checkpoint is deleted
    src2, cp2, out2 = t.path('in2.jsonl'), t.path('cp2.json'), t.path('out2.jsonl')
    write_events(src2, first)
    write_json(t.path('once.json'), all_to_out(
        sources=[{'name': 'in', 'type': 'file', 'paths': [src2], 'checkpoint': cp2}],
        sinks=[log_sink('out', out2)]))
    rc, err = t.run(['run', '-c', t.path('once.json')], timeout=10)
    check(rc == 0, 'first run: exit %s: %s' % (rc, err[-300:]))
    ino = os.stat(src2).st_ino
    write_events(src2, other)
    rc, err = t.run(['run', '-c', t.path('once.json')], timeout=10)
    check(rc == 2, 'replaced file: exit status %s, want 2; stderr: %s' % (rc, err[-300:]))
    check('checkpoint %s no longer fits the input: %s: the file was replaced (inode %d -> %d); '
          'delete the checkpoint file to start over' % (cp2, src2, ino, os.stat(src2).st_ino)
          in err, 'unexpected message: %s' % err.strip()[-400:])
    os.unlink(cp2)
    rc, err = t.run(['run', '-c', t.path('once.json')], timeout=10)
    check(rc == 0, 'after deleting the checkpoint: exit %s' % rc)
    expect_ids_once(out2, ids(first + other), 'out2')


def main():
    return rt.main(TESTS, 'file source', __doc__)


if __name__ == '__main__':
    sys.exit(main())
