"""What the integration test scripts share: their failure type and check, the sample events of
tests/data/events by name (the file's name without .json), a log sink's config, waiting for a
condition, counting a file's lines and printing a note."""
import glob
import json
import os
import socket
import urllib.error
import urllib.request
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


def free_port():
    """A TCP port on 127.0.0.1 that is free now."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def http_get(url, timeout=2.0):
    """(status, body text) of a GET, also for an error status."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()
