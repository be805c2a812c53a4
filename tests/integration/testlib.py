"""What the integration test scripts share: their case runner (run_cases), failure type and
check, the sample events of tests/data/events by name (the file's name without .json), a log
sink's config, waiting for a condition, counting a file's lines and printing a note."""
import glob
import json
import os
import shutil
import socket
import tempfile
import traceback
import urllib.error
import urllib.request
import sys
import time

EVENTS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "data", "events")


class Failure(AssertionError):
    pass


class Skip(Exception):
    """A case that cannot run here (a tool it needs is missing): skipped, not failed."""


SKIP_STATUS = 77  # meson's "skipped"


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


def run_cases(cases, suite, tmp_prefix, doc="", start=None, case_arg=None, diagnose=None,
              finish=None):
    """The main() of an integration script; returns its exit status.

    `SCRIPT --list` prints the cases' names, one a line (meson registers each as a test of its
    own); `SCRIPT KMSROUTER [FILTER]` runs the case named FILTER, else every case whose name
    contains it (all without FILTER), each in a new folder (kept, and named, with KEEP_TMP=1),
    printing `ok NAME (S s)`, `skip NAME: why` or `FAIL NAME (S s): why` per case and a summary
    line. Exit status: 0 every case passed, 1 one failed, 2 usage error, 77 (meson's skip) one
    was skipped and none failed.
      start(kmsrouter)        once before the cases, with the binary's absolute path
      case_arg(name, folder)  what a case is called with (default: its folder)
      diagnose()              after a failure: lines that help (a router's stderr)
      finish(arg, keep)       after each case, whatever became of it (stop what it started)
    """
    argv = sys.argv
    if len(argv) < 2 or argv[1] in ("-h", "--help"):
        print(doc.strip())
        return 2
    if argv[1] == "--list":
        print("\n".join(fn.__name__ for fn in cases))
        return 0
    kr = os.path.abspath(argv[1])
    if not os.access(kr, os.X_OK):
        print("%s is not an executable" % kr, file=sys.stderr)
        return 2
    flt = argv[2] if len(argv) > 2 else ""
    selected = [fn for fn in cases if fn.__name__ == flt] or \
        [fn for fn in cases if flt in fn.__name__]
    if not selected:
        print("no case matches %r" % flt, file=sys.stderr)
        return 2
    if start:
        start(kr)
    keep = os.environ.get("KEEP_TMP") == "1"
    failed = skipped = 0
    t_all = time.monotonic()
    for fn in selected:
        name = fn.__name__
        folder = tempfile.mkdtemp(prefix=tmp_prefix)
        arg = case_arg(name, folder) if case_arg else folder
        t0 = time.monotonic()
        try:
            fn(arg)
            print("ok %s (%.1f s)" % (name, time.monotonic() - t0))
        except Skip as e:
            skipped += 1
            print("skip %s: %s" % (name, e))
        except Exception as e:  # noqa: BLE001 - every failure is reported, and the run goes on
            failed += 1
            if isinstance(e, Failure):
                print("FAIL %s (%.1f s): %s" % (name, time.monotonic() - t0, e))
            else:  # a defect of the script itself: where it is
                print("FAIL %s (%.1f s): %s: %s" % (name, time.monotonic() - t0,
                                                    type(e).__name__, e))
                traceback.print_exc(file=sys.stdout)
            for line in diagnose() if diagnose else ():
                print("  " + line)
        finally:
            if finish:
                finish(arg, keep)
            if keep:
                print("# %s: files kept in %s" % (name, folder))
            else:
                shutil.rmtree(folder, ignore_errors=True)
        sys.stdout.flush()
    print("%s: %d passed, %d failed, %d skipped (%.1f s)"
          % (suite, len(selected) - failed - skipped, failed, skipped, time.monotonic() - t_all))
    return 1 if failed else SKIP_STATUS if skipped else 0


def router_hooks(routers):
    """run_cases' diagnose and finish for a script that lists in routers the kmsrouter processes
    a case starts (objects with name, p, running(), tail() and kill9()): after a failure the
    stderr tail of each; after every case each one still running killed, and the list emptied."""
    def diagnose():
        for r in routers:
            status = "running" if r.running() else "exit %s" % r.p.returncode
            yield "%s (%s) stderr tail:\n    %s" % (r.name, status, r.tail())

    def finish(arg, keep):
        for r in routers:
            if r.running():
                r.kill9()
        del routers[:]
    return diagnose, finish
