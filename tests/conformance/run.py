#!/usr/bin/env python3
"""Conformance runner for kmsrouter's EventBridge event-pattern matcher.

Usage:
    python3 tests/conformance/run.py PATH_TO_KMSROUTER [CASES_FILE]

CASES_FILE defaults to cases.jsonl next to this script.  Every line that is
neither blank nor a comment (first non-blank character '#') is one case: a JSON
object with "name", "pattern", "event" and "expected" (true, false or
"error").  The case lines are sent VERBATIM, one per line, to

    PATH_TO_KMSROUTER test-pattern --batch

on stdin.  They are never re-serialized, because number literals such as
3.0e2 or 300.0 must reach the router exactly as written.  The router answers
one line per input line: "true", "false" or "error: MESSAGE".

Exit status: 0 when every case passes, 1 when any case fails or the number of
output lines differs from the number of cases, 2 on a usage or setup problem
(missing binary, unreadable or malformed cases file, timeout).
"""

import json
import os
import subprocess
import sys

TIMEOUT_SECONDS = 60


def usage(message=None):
    if message:
        print("run.py: " + message, file=sys.stderr)
    print("usage: python3 tests/conformance/run.py PATH_TO_KMSROUTER [CASES_FILE]",
          file=sys.stderr)
    return 2


def load_cases(path):
    """Return a list of (line_number, raw_line, name, expected)."""
    cases = []
    problems = []
    seen = {}
    with open(path, "r", encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            raw = line.rstrip("\r\n")
            stripped = raw.strip()
            if not stripped or stripped.startswith("#"):
                continue
            try:
                case = json.loads(raw)
            except ValueError as exc:
                problems.append("line %d: not valid JSON: %s" % (number, exc))
                continue
            if not isinstance(case, dict):
                problems.append("line %d: not a JSON object" % number)
                continue
            name = case.get("name")
            expected = case.get("expected")
            if not isinstance(name, str) or not name:
                problems.append("line %d: missing or empty \"name\"" % number)
                continue
            if "pattern" not in case or "event" not in case:
                problems.append("line %d (%s): needs both \"pattern\" and \"event\"" % (number, name))
                continue
            if expected is not True and expected is not False and expected != "error":
                problems.append("line %d (%s): \"expected\" must be true, false or \"error\"" % (number, name))
                continue
            if "\n" in raw or "\r" in raw:
                problems.append("line %d (%s): embedded line break" % (number, name))
                continue
            if name in seen:
                problems.append("line %d (%s): duplicate name, first seen on line %d" % (number, name, seen[name]))
                continue
            seen[name] = number
            cases.append((number, raw, name, expected))
    return cases, problems


def describe(expected):
    if expected is True:
        return "true"
    if expected is False:
        return "false"
    return "error: ..."


def passes(expected, actual):
    if expected is True:
        return actual == "true"
    if expected is False:
        return actual == "false"
    return actual.startswith("error: ")


def main(argv):
    if len(argv) < 2 or len(argv) > 3 or argv[1] in ("-h", "--help"):
        return usage()
    binary = argv[1]
    if len(argv) == 3:
        cases_path = argv[2]
    else:
        cases_path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "cases.jsonl")

    if not os.path.isfile(binary) or not os.access(binary, os.X_OK):
        return usage("not an executable file: %s" % binary)
    try:
        cases, problems = load_cases(cases_path)
    except OSError as exc:
        return usage("cannot read cases file %s: %s" % (cases_path, exc))
    if problems:
        for problem in problems:
            print("%s: %s" % (cases_path, problem), file=sys.stderr)
        return usage("malformed cases file (%d problem(s))" % len(problems))
    if not cases:
        return usage("no cases found in %s" % cases_path)

    # The raw lines, exactly as written in the file, one per line.
    stdin_text = "".join(raw + "\n" for (_, raw, _, _) in cases)

    try:
        proc = subprocess.run(
            [binary, "test-pattern", "--batch"],
            input=stdin_text.encode("utf-8"),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            timeout=TIMEOUT_SECONDS,
        )
    except subprocess.TimeoutExpired:
        print("run.py: %s test-pattern --batch did not finish within %d s"
              % (binary, TIMEOUT_SECONDS), file=sys.stderr)
        print("%d cases, %d failed" % (len(cases), len(cases)))
        return 1
    except OSError as exc:
        return usage("cannot run %s: %s" % (binary, exc))

    stdout_text = proc.stdout.decode("utf-8", errors="replace")
    outputs = stdout_text.splitlines()
    stderr_text = proc.stderr.decode("utf-8", errors="replace").strip()

    failed = 0
    for index, (number, _, name, expected) in enumerate(cases):
        if index < len(outputs):
            actual = outputs[index].rstrip("\r")
            if passes(expected, actual):
                continue
            shown = actual
        else:
            shown = "<no output line>"
        failed += 1
        print("FAIL %s (cases line %d): expected %s, got %s"
              % (name, number, describe(expected), shown))

    count_mismatch = len(outputs) != len(cases)
    if count_mismatch:
        print("output has %d line(s) for %d case(s)" % (len(outputs), len(cases)))
        for extra in outputs[len(cases):][:5]:
            print("  extra output line: %s" % extra)
    if proc.returncode != 0:
        print("note: %s exited with status %d" % (binary, proc.returncode))
    if stderr_text and (failed or count_mismatch or proc.returncode != 0):
        print("stderr (last lines):")
        for line in stderr_text.splitlines()[-10:]:
            print("  " + line)

    print("%d cases, %d failed" % (len(cases), failed))
    return 1 if (failed or count_mismatch) else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
