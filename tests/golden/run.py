#!/usr/bin/env python3
"""Golden tests for `kmsrouter match`.

Usage: python3 tests/golden/run.py PATH_TO_KMSROUTER

For every input in tests/golden/inputs/ (plus the gzip inputs generated at run
time, see GENERATED below) this runs

    kmsrouter match -c tests/golden/config.json INPUT

and compares stdout, parsed as JSON Lines, in order, with
tests/golden/expected/<input name>.jsonl.  The expected files were derived by
hand from config.json and the events (tests/golden/README.md explains each
line); they are never produced by running kmsrouter.

Every run must also exit 0 (each input matches at least one rule and holds no
invalid record), must not print a `FILE:LINE:` diagnostic, must not die from
a signal and must finish within the timeout.  A few inputs are also fed
through stdin, and all inputs are passed together in one run.

Exits 1 if anything failed, 2 on a usage error.  Standard library only.
"""

import difflib
import gzip
import json
import os
import re
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
CONFIG = os.path.join(HERE, "config.json")
INPUTS = os.path.join(HERE, "inputs")
EXPECTED = os.path.join(HERE, "expected")
TIMEOUT = 20  # seconds per kmsrouter run

# Inputs generated at run time: (name, source input in inputs/, compact?).
# The gzip stream must start with the 1f 8b magic; the name deliberately does
# not always end in .gz, because the format is detected from the magic bytes.
GENERATED = [
    ("all-samples.jsonl.gz", "all-samples.jsonl", False),
    ("array-gzipped.json", "all-samples-array.json", False),
    # CloudTrail delivers its log files as one-line JSON, gzipped.
    ("cloudtrail-log-compact.json.gz", "cloudtrail-log.json", True),
]

# Inputs that are also piped through stdin (file name reported as `-`).
STDIN_INPUTS = ["all-samples-concatenated.json", "array-gzipped.json"]


class Runner:
    def __init__(self, binary):
        self.binary = binary
        self.passed = 0
        self.failed = 0

    def ok(self, name):
        self.passed += 1
        print("ok    %s" % name)

    def fail(self, name, lines):
        self.failed += 1
        print("FAIL  %s" % name)
        for line in lines:
            print("      " + line)


def canon(obj):
    return json.dumps(obj, sort_keys=True, ensure_ascii=False)


def load_expected(name):
    path = os.path.join(EXPECTED, name + ".jsonl")
    with open(path, encoding="utf-8") as f:
        return [json.loads(l) for l in f if l.strip()]


def parse_stdout(data):
    """Return (list of parsed objects, list of problems)."""
    objs, problems = [], []
    text = data.decode("utf-8", errors="replace")
    for i, line in enumerate(text.split("\n"), 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except ValueError as e:
            problems.append("stdout line %d is not JSON (%s): %r" % (i, e, line[:200]))
            continue
        if not isinstance(obj, dict):
            problems.append("stdout line %d is not a JSON object: %r" % (i, line[:200]))
        objs.append(obj)
    return objs, problems


def run(binary, args, stdin_data=None):
    cmd = [binary, "match", "-c", CONFIG] + args
    try:
        p = subprocess.run(cmd, input=stdin_data if stdin_data is not None else b"",
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        return None, cmd
    return p, cmd


def check(r, name, args, expected, file_labels, stdin_data=None):
    p, cmd = run(r.binary, args, stdin_data)
    problems = []
    if p is None:
        r.fail(name, ["timed out after %ds: %s" % (TIMEOUT, " ".join(cmd))])
        return
    if p.returncode < 0:
        problems.append("killed by signal %d" % -p.returncode)
    elif p.returncode != 0:
        problems.append("exit status %d, expected 0" % p.returncode)
    actual, parse_problems = parse_stdout(p.stdout)
    problems += parse_problems
    if [canon(o) for o in actual] != [canon(o) for o in expected]:
        problems.append("stdout differs from expected (parsed JSON, in order):")
        problems += list(difflib.unified_diff(
            [canon(o) for o in expected], [canon(o) for o in actual],
            "expected", "actual", lineterm=""))
    stderr = p.stderr.decode("utf-8", errors="replace")
    for label in file_labels:
        for m in re.finditer(r"^%s:\d+:.*$" % re.escape(label), stderr, re.M):
            problems.append("unexpected diagnostic: %s" % m.group(0))
    if problems:
        problems.insert(0, "command: %s%s" % (" ".join(cmd), " < stdin" if stdin_data is not None else ""))
        if stderr.strip():
            problems.append("stderr:")
            problems += ["  " + l for l in stderr.splitlines()[:40]]
        r.fail(name, problems)
    else:
        r.ok(name)


def main(argv):
    if len(argv) != 2:
        print(__doc__.strip().splitlines()[2], file=sys.stderr)
        return 2
    binary = os.path.abspath(argv[1])
    if not os.access(binary, os.X_OK):
        print("not an executable: %s" % binary, file=sys.stderr)
        return 2
    r = Runner(binary)

    with tempfile.TemporaryDirectory(prefix="kr-golden-") as tmp:
        paths = {}
        for name in sorted(os.listdir(INPUTS)):
            paths[name] = os.path.join(INPUTS, name)
        for name, src, compact in GENERATED:
            with open(os.path.join(INPUTS, src), "rb") as f:
                data = f.read()
            if compact:
                data = json.dumps(json.loads(data), separators=(",", ":")).encode() + b"\n"
            blob = gzip.compress(data, mtime=0)
            assert blob[:2] == b"\x1f\x8b", name
            paths[name] = os.path.join(tmp, name)
            with open(paths[name], "wb") as f:
                f.write(blob)

        # Every input needs an expected file and vice versa.
        exp_names = sorted(n[:-len(".jsonl")] for n in os.listdir(EXPECTED) if n.endswith(".jsonl"))
        for name in sorted(set(exp_names) - set(paths)):
            r.fail("expected/%s.jsonl" % name, ["no input of that name"])
        for name in sorted(set(paths) - set(exp_names)):
            r.fail("inputs/%s" % name, ["no expected/%s.jsonl" % name])
        names = [n for n in sorted(paths) if n in exp_names]

        for name in names:
            check(r, "file  %s" % name, [paths[name]], load_expected(name), [paths[name]])

        for name in STDIN_INPUTS:
            with open(paths[name], "rb") as f:
                data = f.read()
            check(r, "stdin %s" % name, [], load_expected(name), ["-"], stdin_data=data)

        # All inputs in one run: the outputs follow the order of the files.
        all_expected = []
        for name in names:
            all_expected += load_expected(name)
        check(r, "all inputs in one run", [paths[n] for n in names], all_expected,
              [paths[n] for n in names])

    print("golden: %d passed, %d failed" % (r.passed, r.failed))
    return 1 if r.failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
