"""What the integration test scripts share: their failure type and check, the sample events of
tests/data/events by name (the file's name without .json), a log sink's config, waiting for a
condition, counting a file's lines and printing a note."""
import glob
import json
import os
import sys
import time

EVENTS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "data", "events")


class Failure(AssertionError):
    pass


def check(cond, msg):
    if not cond:
        raise Failure(msg)


def sample_events():
    out = {}
    for path in sorted(glob.glob(os.path.join(EVENTS_DIR, "*.json"))):
        with open(path) as f:
            out[os.path.basename(path)[:-5]] = json.load(f)
    return out


def log_sink(name, path, **kw):
    return dict({"name": name, "type": "log", "path": path}, **kw)


def wait_for(pred, timeout, what, routers=(), interval=0.05):
    """Polls pred() until it is true; fails after timeout seconds, or at once when one of
    routers (which should keep running) has exited."""
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        for r in routers:
            if not r.running():
                raise Failure("%s exited (status %s) while waiting for %s"
                              % (r.name, r.p.returncode, what))
        if time.monotonic() >= deadline:
            raise Failure("timed out after %.0f s waiting for %s" % (timeout, what))
        time.sleep(interval)


def lines(path):
    try:
        with open(path, "rb") as f:
            return f.read().count(b"\n")
    except FileNotFoundError:
        return 0


def note(msg):
    print("# " + msg)
    sys.stdout.flush()
