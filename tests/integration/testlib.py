"""What the integration test scripts share: their failure type and check, and the sample events
of tests/data/events by name (the file's name without .json)."""
import glob
import json
import os

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
