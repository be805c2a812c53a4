#!/usr/bin/env python3
"""Integration tests of `kmsrouter test` (rule tests as data): the shipped example passes, a
broken rule or a wrong expected payload fails with readable lines and a diff (exit 1), invalid
test files are refused with FILE:LINE:COL (exit 2), input transformers' payloads are compared,
and @FILE events in every form `match` reads work.

    python3 tests/integration/rule_test_test.py PATH_TO_KMSROUTER [name-filter]
    python3 tests/integration/rule_test_test.py --list

Prints `ok NAME` or `FAIL NAME: reason` per case; exit status 1 if any failed.
"""
import json
import os
import re
import shutil
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from testlib import Failure, check, run_cases  # noqa: E402

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
EXAMPLES = os.path.normpath(os.path.join(ROOT, "examples"))
KEY = "1234abcd-12ab-34cd-56ef-1234567890ab"
KR = None
TESTS = []


def test(fn):
    TESTS.append(fn)
    return fn


def run(args, cwd=None):
    p = subprocess.run([KR, "test"] + args, cwd=cwd, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, timeout=60)
    out, err = p.stdout.decode(), p.stderr.decode()
    # a sanitizer report or any other noise on stderr is a failure of its own
    check("ERROR: AddressSanitizer" not in err and "runtime error:" not in err
          and "LeakSanitizer" not in err, "sanitizer report: %s" % err[-2000:])
    return p.returncode, out, err


def strip_comments(text):
    """The JSON text of a file with // and /* */ comments (outside strings) removed."""
    out, i, n = [], 0, len(text)
    while i < n:
        c = text[i]
        if c == '"':
            j = i + 1
            while text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            out.append(text[i:j + 1])
            i = j + 1
        elif text.startswith("//", i):
            i = text.find("\n", i)
            i = n if i < 0 else i
        elif text.startswith("/*", i):
            i = text.index("*/", i) + 2
        else:
            out.append(c)
            i += 1
    return "".join(out)


def load_commented(path):
    with open(path) as f:
        return json.loads(strip_comments(f.read()))


def write(path, obj_or_text):
    with open(path, "w") as f:
        f.write(obj_or_text if isinstance(obj_or_text, str) else json.dumps(obj_or_text, indent=2))
    return path


def linecol(text, offset):
    line = text.count("\n", 0, offset) + 1
    return line, offset - (text.rfind("\n", 0, offset) + 1) + 1


def case_line(path, name):
    """The line of the "{" that opens the test named name in the file at path."""
    with open(path) as f:
        text = f.read()
    at = re.search(r'"name": *%s' % re.escape(json.dumps(name)), text).start()
    return text.count("\n", 0, text.rfind("{", 0, at)) + 1


def example_copy(tmp):
    """A copy of examples/ (config, events, tests) in tmp."""
    dst = os.path.join(tmp, "examples")
    shutil.copytree(EXAMPLES, dst)
    return dst


def event_of(name):
    with open(os.path.join(EXAMPLES, "events", name)) as f:
        return json.load(f)


def summary(out):
    m = re.search(r"^(\d+) passed, (\d+) failed$", out, re.M)
    check(m and out.rstrip("\n").endswith(m.group(0)), "no summary line at the end: %r" % out)
    return int(m.group(1)), int(m.group(2))


def case_block(out, name):
    """The lines of one case's result: its ok/FAIL line and the indented lines under it."""
    lines = out.split("\n")
    for i, l in enumerate(lines):
        if l == "ok " + name or l.startswith("FAIL %s (" % name):
            block = [l]
            for m in lines[i + 1:]:
                if not m.startswith(" "):
                    break
                block.append(m)
            return block
    raise Failure("no result line for %r in:\n%s" % (name, out))


@test
def test_shipped_example_passes(tmp):
    path = os.path.join(EXAMPLES, "kmsrouter.test.json")
    # from another folder: the config and the @FILE events resolve against the test file's
    rc, out, err = run([os.path.abspath(path)], cwd=tmp)
    check(rc == 0, "exit %s: %s%s" % (rc, out, err))
    check(err == "", "stderr: %r" % err)
    tests = load_commented(path)["tests"]
    passed, failed = summary(out)
    check((passed, failed) == (len(tests), 0), "summary %s for %d tests" % ((passed, failed),
                                                                             len(tests)))
    results = out.rstrip("\n").split("\n")[:-1]
    check(results == ["ok " + t["name"] for t in tests], "results: %s" % results)
    # what the brief for the example promises: every example rule in some "rules", at least one
    # not_rules, not_targets, deliveries and inline event
    config = load_commented(os.path.join(EXAMPLES, "kmsrouter.json"))
    covered = {r for t in tests for r in t.get("rules", [])}
    missing = [r["name"] for r in config["rules"] if r["name"] not in covered]
    check(not missing, "example rules no test covers: %s" % missing)
    for key in ("not_rules", "not_targets", "deliveries"):
        check(any(t.get(key) for t in tests), "no example test has %s" % key)
    check(any(isinstance(t["event"], dict) for t in tests), "no example test has an inline event")
    check(any(t["event"].startswith("@") for t in tests if isinstance(t["event"], str)),
          "no example test reads an @FILE event")


@test
def test_a_broken_rule_fails_with_readable_lines(tmp):
    ex = example_copy(tmp)
    cfg_path = os.path.join(ex, "kmsrouter.json")
    with open(cfg_path) as f:
        text = f.read()
    old = '"detail-type": ["KMS CMK Deletion"]'
    check(text.count(old) == 1, "the example config changed: %s not found once" % old)
    write(cfg_path, text.replace(old, '"detail-type": ["KMS CMK Deleted"]'))
    rc, out, err = run([os.path.join(ex, "kmsrouter.test.json")])
    check(rc == 1, "exit %s, want 1: %s%s" % (rc, out, err))
    name = "a key deletion pages on-call and is audited"
    block = case_block(out, name)
    tpath = os.path.join(ex, "kmsrouter.test.json")
    check(block == ["FAIL %s (%s:%d)" % (name, tpath, case_line(tpath, name)),
                    '    rule "key-deleted" did not match',
                    '    exact_rules: matched [], expected ["key-deleted"]',
                    '    sink "page" received nothing',
                    '    sink "audit" received nothing'], "block: %s" % block)
    block = case_block(out, "a key deletion delivered through SNS is routed as the event itself")
    check(block[1:] == ['    rule "key-deleted" did not match',
                        '    delivery of rule "key-deleted" to sink "page": the rule did not '
                        'match, so nothing was delivered'], "SNS block: %s" % block)
    # the other cases still pass
    check(case_block(out, "a scheduled rotation is audited, not paged")[0].startswith("ok "),
          out)
    check(summary(out) == (5, 2), "summary: %s" % (summary(out),))


@test
def test_a_wrong_expected_payload_shows_a_diff(tmp):
    ex = example_copy(tmp)
    ev = event_of("kms-cmk-deletion.json")
    wrong = json.loads(json.dumps(ev))
    wrong["detail"]["key-id"] = "not-the-key"
    wrong["region"] = "eu-west-1"
    tests = {"config": "examples/kmsrouter.json", "tests": [
        {"name": "wrong payload", "event": "@examples/events/kms-cmk-deletion.json",
         "rules": ["key-deleted"],
         "deliveries": [{"rule": "key-deleted", "sink": "audit", "payload": wrong}]},
        {"name": "right payload", "event": "@examples/events/kms-cmk-deletion.json",
         "deliveries": [{"rule": "key-deleted", "sink": "audit", "payload": ev}]},
        {"name": "member order counts", "event": "@examples/events/kms-cmk-deletion.json",
         "deliveries": [{"rule": "key-deleted", "sink": "page",
                         "payload": dict(reversed(list(ev.items())))}]}]}
    path = write(os.path.join(tmp, "t.json"), tests)
    rc, out, err = run([path])
    check(rc == 1, "exit %s, want 1: %s%s" % (rc, out, err))
    check(case_block(out, "right payload") == ["ok right payload"], out)
    block = case_block(out, "wrong payload")
    want = [
        '    delivery of rule "key-deleted" to sink "audit": the payload differs '
        '(- expected, + actual):',
        '      @@ -5,11 +5,11 @@',
        '         "source": "aws.kms",',
        '         "account": "111122223333",',
        '         "time": "2016-08-19T03:23:45Z",',
        '      -  "region": "eu-west-1",',
        '      +  "region": "us-west-2",',
        '         "resources": [',
        '           "arn:aws:kms:us-west-2:111122223333:key/%s"' % KEY,
        '         ],',
        '         "detail": {',
        '      -    "key-id": "not-the-key"',
        '      +    "key-id": "%s"' % KEY,
        '         }',
        '       }']
    check(block[1:] == want, "diff:\n%s\nwant:\n%s" % ("\n".join(block), "\n".join(want)))
    check(block[0] == "FAIL wrong payload (%s:%d)" % (path, case_line(path, "wrong payload")),
          block[0])
    block = case_block(out, "member order counts")
    check(block[0].startswith("FAIL ") and any(l.startswith("      -") for l in block)
          and any(l.startswith("      +") for l in block), "order: %s" % block)
    check(summary(out) == (1, 2), "summary: %s" % (summary(out),))


TRANSFORM_CONFIG = {
    "sinks": [{"name": "page", "type": "log", "path": "-"},
              {"name": "chat", "type": "log", "path": "-"},
              {"name": "archive", "type": "log", "path": "-"}],
    "rules": [{"name": "key-deleted",
               "pattern": {"source": ["aws.kms"], "detail-type": ["KMS CMK Deletion"]},
               "targets": [
                   {"sink": "page", "input_transformer": {
                       "input_paths": {"key": "$.detail.key-id", "account": "$.account"},
                       "input_template": '{"summary": "key <key> deleted", "account": <account>,'
                                         ' "rule": <aws.events.rule-name>,'
                                         ' "at": <aws.events.event.ingestion-time>}'}},
                   {"sink": "chat", "input_transformer": {
                       "input_paths": {"key": "$.detail.key-id"},
                       "input_template": '"KMS key <key> is deleted"'}},
                   {"sink": "archive", "input_path": "$.detail"}]}]}


@test
def test_input_transformer_payloads_pass_and_fail(tmp):
    shutil.copytree(os.path.join(EXAMPLES, "events"), os.path.join(tmp, "events"))
    write(os.path.join(tmp, "cfg.json"), TRANSFORM_CONFIG)
    good_page = {"summary": "key %s deleted" % KEY, "account": "111122223333",
                 "rule": "key-deleted", "at": "2016-08-19T03:23:45Z"}
    tests = {"config": "cfg.json", "tests": [
        {"name": "transformed payloads", "event": "@events/kms-cmk-deletion.json",
         "deliveries": [
             {"rule": "key-deleted", "sink": "page", "payload": good_page},
             {"rule": "key-deleted", "sink": "chat", "payload": '"KMS key %s is deleted"' % KEY},
             {"rule": "key-deleted", "sink": "archive", "payload": {"key-id": KEY}}]},
        {"name": "wrong transformed payloads", "event": "@events/kms-cmk-deletion.json",
         "deliveries": [
             {"rule": "key-deleted", "sink": "page",
              "payload": dict(good_page, summary="key deleted")},
             {"rule": "key-deleted", "sink": "chat", "payload": "KMS key %s is deleted" % KEY},
             {"rule": "key-deleted", "sink": "archive", "payload": {"key-id": KEY, "x": 1}}]}]}
    path = write(os.path.join(tmp, "t.json"), tests)
    rc, out, err = run([path])
    check(rc == 1, "exit %s, want 1: %s%s" % (rc, out, err))
    check(case_block(out, "transformed payloads") == ["ok transformed payloads"], out)
    block = case_block(out, "wrong transformed payloads")
    want = [
        '    delivery of rule "key-deleted" to sink "page": the payload differs '
        '(- expected, + actual):',
        '      @@ -1,5 +1,5 @@',  # 3 lines of context: the closing brace is not shown
        '       {',
        '      -  "summary": "key deleted",',
        '      +  "summary": "key %s deleted",' % KEY,
        '         "account": "111122223333",',
        '         "rule": "key-deleted",',
        '         "at": "2016-08-19T03:23:45Z"',
        '    delivery of rule "key-deleted" to sink "chat": the payload (text) differs '
        '(- expected, + actual):',
        '      @@ -1,1 +1,1 @@',
        '      -KMS key %s is deleted' % KEY,
        '      +"KMS key %s is deleted"' % KEY,
        '    delivery of rule "key-deleted" to sink "archive": the payload differs '
        '(- expected, + actual):',
        '      @@ -1,4 +1,3 @@',
        '       {',
        '      -  "key-id": "%s",' % KEY,
        '      -  "x": 1',
        '      +  "key-id": "%s"' % KEY,
        '       }']
    check(block[1:] == want, "diff:\n%s\nwant:\n%s" % ("\n".join(block), "\n".join(want)))


@test
def test_sns_and_multi_event_files(tmp):
    shutil.copytree(os.path.join(EXAMPLES, "events"), os.path.join(tmp, "events"))
    rot = event_of("kms-cmk-rotation.json")
    sns = {"Type": "Notification", "MessageId": "m-1",
           "TopicArn": "arn:aws:sns:us-west-2:111122223333:kms", "Message": json.dumps(rot),
           "Timestamp": "2016-08-25T21:05:34.000Z"}
    write(os.path.join(tmp, "events", "sns-rotation.json"), sns)
    deletion = event_of("kms-cmk-deletion.json")
    # an array of two events, the second not a rotation
    write(os.path.join(tmp, "events", "two.json"), [rot, deletion])
    tests = {"config": os.path.join(EXAMPLES, "kmsrouter.json"), "tests": [
        {"name": "sns rotation", "event": "@events/sns-rotation.json",
         "rules": ["rotation-audit"], "exact_rules": True, "not_targets": ["page"],
         "deliveries": [{"rule": "rotation-audit", "sink": "audit", "payload": rot}]},
        {"name": "every event of a file", "event": "@events/two.json",
         "rules": ["rotation-audit"], "not_targets": ["page"]},
        {"name": "inline SNS notification", "event": sns, "rules": ["rotation-audit"]}]}
    path = write(os.path.join(tmp, "t.json"), tests)
    rc, out, err = run([path])
    check(rc == 1, "exit %s, want 1: %s%s" % (rc, out, err))
    check(case_block(out, "sns rotation") == ["ok sns rotation"], out)
    check(case_block(out, "inline SNS notification") == ["ok inline SNS notification"], out)
    block = case_block(out, "every event of a file")
    check(block[1:] == ['    event 2 of 2 (id "%s"):' % deletion["id"],
                        '      rule "rotation-audit" did not match',
                        '      sink "page" received a delivery from rule "key-deleted" but '
                        'must not'], "block: %s" % block)
    # a gzip file too, and a CloudTrail log file whose record becomes the API-call event
    import gzip
    with gzip.open(os.path.join(tmp, "events", "rot.json.gz"), "wt") as f:
        json.dump(rot, f)
    ct = event_of("cloudtrail-decrypt-pending-deletion.json")["detail"]
    write(os.path.join(tmp, "events", "trail.json"), {"Records": [ct]})
    tests = {"config": os.path.join(EXAMPLES, "kmsrouter.json"), "tests": [
        {"name": "gzip", "event": "@events/rot.json.gz", "rules": ["rotation-audit"]},
        {"name": "cloudtrail log", "event": "@events/trail.json",
         "rules": ["use-of-key-pending-deletion"], "exact_rules": True}]}
    path = write(os.path.join(tmp, "t2.json"), tests)
    rc, out, err = run([path])
    check(rc == 0, "exit %s: %s%s" % (rc, out, err))
    check(summary(out) == (2, 0), out)


@test
def test_config_option_replaces_the_files_config(tmp):
    ev = event_of("kms-cmk-deletion.json")
    tests = {"config": "does-not-exist.json",
             "tests": [{"name": "a", "event": ev, "rules": ["key-deleted"]}]}
    path = write(os.path.join(tmp, "t.json"), tests)
    rc, out, err = run(["-c", os.path.join(EXAMPLES, "kmsrouter.json"), path])
    check(rc == 0 and out == "ok a\n1 passed, 0 failed\n", "exit %s: %r %r" % (rc, out, err))
    rc, out, err = run([path])
    check(rc == 2 and re.search(r"t\.json:\d+:\d+: \$\.config: .*does-not-exist\.json", err),
          "exit %s: %r %r" % (rc, out, err))
    del tests["config"]
    write(path, tests)
    rc, out, err = run([path])
    check(rc == 2 and "t.json:1:1: $: no configuration to test" in err,
          "exit %s: %r" % (rc, err))


def invalid_cases(tmp):
    """(name, text, the string whose first occurrence is where the error is, message part)."""
    cfg = json.dumps(os.path.join(EXAMPLES, "kmsrouter.json"))
    ev = '"@%s"' % os.path.join(EXAMPLES, "events", "kms-cmk-deletion.json")
    head = '{\n  "config": %s,\n  "tests": [\n    {\n      "name": "x",\n' % cfg
    return [
        ("unknown key", head + '      "event": %s,\n      "rules": ["key-deleted"],\n'
         '      "not_rule": ["rotation-audit"]\n    }\n  ]\n}\n' % ev,
         '"not_rule"', 'unknown key "not_rule" in a test (did you mean "not_rules"?)'),
        ("unknown top-level key", '{"config": %s, "test": []}' % cfg, '"test"',
         'unknown key "test" in a test file (did you mean "tests"?)'),
        ("unknown rule", head + '      "event": %s,\n      // a comment\n'
         '      "rules": ["key-deleted", "key-delete"]\n    }\n  ]\n}\n' % ev,
         '"key-delete"]', 'has no rule named "key-delete" (did you mean "key-deleted"?)'),
        ("unknown sink", head + '      "event": %s,\n      "not_targets": ["pager"]\n'
         '    }\n  ]\n}\n' % ev, '"pager"', 'has no sink named "pager" (did you mean "page"?)'),
        ("unknown delivery sink", head + '      "event": %s,\n      "deliveries": [{"rule": '
         '"rotation-audit", "sink": "page", "payload": {}}]\n    }\n  ]\n}\n' % ev,
         '"page"', 'rule "rotation-audit" has no target entry for sink "page"'),
        ("bad json", head + '      "event": %s,\n      "rules": ["key-deleted"],,\n'
         '    }\n  ]\n}\n' % ev, ',,', 'parse error'),
        ("no expectation", head + '      "event": %s\n    }\n  ]\n}\n' % ev,
         '{\n      "name"', 'expects nothing, so it cannot fail'),
        ("empty lists expect nothing", head + '      "event": %s,\n      "rules": [],\n'
         '      "targets": []\n    }\n  ]\n}\n' % ev,
         '{\n      "name"', 'expects nothing, so it cannot fail'),
        ("missing event file", head + '      "event": "@no/such/events.json",\n'
         '      "rules": ["key-deleted"]\n    }\n  ]\n}\n', '"@no/such',
         'no/such/events.json: No such file or directory'),
        ("duplicate name", head + '      "event": %s,\n      "rules": ["key-deleted"]\n'
         '    },\n    {"name": "x", "event": %s, "rules": ["key-deleted"]}\n  ]\n}\n' % (ev, ev),
         '"x", "event"', 'the name "x" is already the name of the test at line 4'),
        ("wrong type", head + '      "event": %s,\n      "rules": "key-deleted"\n'
         '    }\n  ]\n}\n' % ev, '"key-deleted"\n', 'must be an array of rule names'),
        ("missing event", head + '      "rules": ["key-deleted"]\n    }\n  ]\n}\n',
         '{\n      "name"', 'a test needs an "event"'),
        ("invalid inline event", head + '      "event": [1],\n'
         '      "rules": ["key-deleted"]\n    }\n  ]\n}\n', '[1]', 'not a valid event'),
    ]


@test
def test_invalid_test_files_exit_2_with_file_line_col(tmp):
    for name, text, at, msg in invalid_cases(tmp):
        path = write(os.path.join(tmp, "bad.json"), text)
        rc, out, err = run([path])
        line, col = linecol(text, text.index(at))
        check(rc == 2, "%s: exit %s, want 2: %r %r" % (name, rc, out, err))
        m = re.match(r"kmsrouter test: %s:(\d+):(\d+): " % re.escape(path), err)
        # the JSON parser (yajl) stops a character or two after a syntax error
        slack = 3 if name == "bad json" else 0
        check(m and int(m.group(1)) == line and col <= int(m.group(2)) <= col + slack
              and msg in err and err.count("\n") == 1,
              "%s: stderr %r, want %s:%d:%d: ... %r" % (name, err, path, line, col, msg))
        check(out == "0 passed, 0 failed\n", "%s: tests ran: %r" % (name, out))
    # a file that cannot be read names it
    missing = os.path.join(tmp, "nope.test.json")
    rc, out, err = run([missing])
    check(rc == 2 and err == "kmsrouter test: %s: No such file or directory\n" % missing,
          "missing file: exit %s %r" % (rc, err))
    # an invalid config names its own FILE:LINE:COL
    bad_cfg = write(os.path.join(tmp, "cfg.json"), '{\n  "rules": [{"name": 1}]\n}\n')
    path = write(os.path.join(tmp, "t.json"),
                 '{"config": "cfg.json", "tests": [{"name": "a", "event": {}, "rules": ["r"]}]}')
    rc, out, err = run([path])
    check(rc == 2 and ("%s:2:" % bad_cfg) in err and err.startswith(
        "kmsrouter test: %s:1:12: $.config: " % path), "invalid config: exit %s %r" % (rc, err))
    # no FILE, an unknown option: usage errors
    for args in ([], ["--bogus", path]):
        rc, out, err = run(args)
        check(rc == 2 and "usage: kmsrouter test [-c CONFIG] FILE..." in err,
              "%s: exit %s %r" % (args, rc, err))


@test
def test_an_invalid_file_does_not_stop_the_others(tmp):
    good = write(os.path.join(tmp, "good.json"), {
        "config": os.path.join(EXAMPLES, "kmsrouter.json"),
        "tests": [{"name": "g", "event": event_of("kms-cmk-rotation.json"),
                   "rules": ["rotation-audit"]}]})
    bad = write(os.path.join(tmp, "bad.json"), "{")
    rc, out, err = run([bad, good])
    check(rc == 2 and out == "ok g\n1 passed, 0 failed\n" and err.startswith(
        "kmsrouter test: %s:1:2: $: " % bad), "exit %s: %r %r" % (rc, out, err))


@test
def test_help_and_command_list(tmp):
    p = subprocess.run([KR, "--help"], stdout=subprocess.PIPE, timeout=30)
    check(re.search(r"^  test +\S", p.stdout.decode(), re.M), "test not in kmsrouter --help")
    p = subprocess.run([KR, "test", "--help"], stdout=subprocess.PIPE, timeout=30)
    text = p.stdout.decode()
    check(p.returncode == 0 and text.startswith("usage: kmsrouter test [-c CONFIG] FILE...\n"),
          "test --help: %r" % text[:200])
    for word in ('"not_rules"', '"exact_rules"', '"not_targets"', '"deliveries"', "Exit status"):
        check(word in text, "test --help does not describe %s" % word)


def start(kr):
    global KR
    KR = kr


if __name__ == "__main__":
    sys.exit(run_cases(TESTS, "kmsrouter test", "kr-ruletest-", __doc__, start=start))
