#!/usr/bin/env python3
"""Bad-input tests for `kmsrouter match`.

Usage: python3 tests/badinput/run.py PATH_TO_KMSROUTER [CASE_NAME_SUBSTRING...]

Each case writes an input file into a temporary directory (big inputs are
generated here, never committed) and runs, from that directory,

    kmsrouter match -c tests/badinput/config.json case.jsonl

Most cases are JSON Lines holding two valid sample events, then one bad
record starting on line 3, then two more valid events.  For each case the
runner asserts:

  * the exit status (1 when a record was invalid or nothing matched; 0 for the
    control cases that sit just inside the limits; 2 for usage errors);
  * the valid events before and after the bad record are still printed, in
    order, with the right ids, rules and targets (stdout is compared as parsed
    JSON, never as text);
  * stderr has a line `FILE:LINE: message` naming the bad record's first line,
    and the message says what is wrong (a keyword such as UTF-8, NUL,
    nest/depth, size/exceeds, detail-type, detail, object, JSON/parse);
  * no diagnostic names the line of a valid event;
  * no crash (no death by signal) and the run ends within 20 seconds.

With KR_VALGRIND=1 every case is run a second time under
`valgrind --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite`
(timeout KR_VALGRIND_TIMEOUT, default 600 s); exit status 99 fails the case,
and the checks above are applied to that run too.

The expected outputs below were derived by hand from config.json; they are
not produced by running kmsrouter.  Standard library only.
"""

import gzip
import json
import os
import re
import shutil
import concurrent.futures
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
CONFIG = os.path.join(HERE, "config.json")
EVENTS = os.path.join(ROOT, "tests", "data", "events")
TIMEOUT = 20
VALGRIND = os.environ.get("KR_VALGRIND") == "1"
VALGRIND_TIMEOUT = int(os.environ.get("KR_VALGRIND_TIMEOUT", "600"))
VALGRIND_CMD = ["valgrind", "--error-exitcode=99", "--leak-check=full",
                "--errors-for-leak-kinds=definite"]

MAX_RECORD = 262144
MAX_DEPTH = 64

# --------------------------------------------------------------------------
# Valid events and what config.json makes of them (derived by hand).


def load_event(name):
    with open(os.path.join(EVENTS, name), encoding="utf-8") as f:
        return json.load(f)


def compact(obj):
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def pretty(obj):
    return json.dumps(obj, indent=2, ensure_ascii=False).encode("utf-8")


DELETION = load_event("kms-cmk-deletion.json")
ROTATION = load_event("kms-cmk-rotation-on-demand.json")
EXPIRATION = load_event("kms-imported-key-material-expiration.json")
CT_DECRYPT = load_event("cloudtrail-decrypt-pending-deletion.json")

OUT_DELETION = {"id": "e9ce3425-7d22-412a-a699-e7a5fc3fbc9a", "rules": ["deletion"], "targets": ["page"]}
OUT_ROTATION = {"id": "6a7e8feb-b491-4cf7-a9f1-bf3703467718", "rules": ["rotation"], "targets": ["audit"]}
OUT_EXPIRATION = {"id": "9da9af57-9253-4406-87cb-7cc400e43465", "rules": ["expiration"],
                  "targets": ["page", "audit"]}
OUT_CT_DECRYPT = {"id": "3c5ab6d1-0b0e-4f55-9a8e-8c3f2a7e9b11", "rules": ["decrypt-invalid-state"],
                  "targets": ["page"]}

BEFORE = [compact(DELETION), compact(ROTATION)]
AFTER = [compact(EXPIRATION), compact(CT_DECRYPT)]
OUT_BEFORE = [OUT_DELETION, OUT_ROTATION]
OUT_AFTER = [OUT_EXPIRATION, OUT_CT_DECRYPT]

KEY_ARN = "arn:aws:kms:us-west-2:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab"


def ct_record(event_id, name, **extra):
    rec = {
        "eventVersion": "1.08",
        "userIdentity": {"type": "AssumedRole", "principalId": "AROAEXAMPLE:app",
                         "arn": "arn:aws:sts::111122223333:assumed-role/app/app",
                         "accountId": "111122223333"},
        "eventTime": "2024-03-01T12:00:00Z",
        "eventSource": "kms.amazonaws.com",
        "eventName": name,
        "awsRegion": "us-west-2",
        "sourceIPAddress": "192.0.2.0",
        "userAgent": "aws-sdk-java/1.12.0",
    }
    rec.update(extra)
    rec.update({
        "eventID": event_id,
        "readOnly": False,
        "resources": [{"accountId": "111122223333", "type": "AWS::KMS::Key", "ARN": KEY_ARN}],
        "eventType": "AwsApiCall",
        "managementEvent": True,
        "recipientAccountId": "111122223333",
        "eventCategory": "Management",
    })
    return rec


CT_R1 = ct_record("bd000001-0000-4000-8000-000000000001", "Decrypt",
                  errorCode="KMSInvalidStateException",
                  errorMessage=KEY_ARN + " is pending deletion.")
CT_R2 = ct_record("bd000002-0000-4000-8000-000000000002", "GenerateDataKey")
CT_R3 = ct_record("bd000003-0000-4000-8000-000000000003", "ScheduleKeyDeletion",
                  requestParameters={"keyId": KEY_ARN, "pendingWindowInDays": 7})
OUT_CT_R1 = {"id": "bd000001-0000-4000-8000-000000000001", "rules": ["decrypt-invalid-state"],
             "targets": ["page"]}
OUT_CT_R2 = {"id": "bd000002-0000-4000-8000-000000000002", "rules": [], "targets": []}
OUT_CT_R3 = {"id": "bd000003-0000-4000-8000-000000000003", "rules": ["schedule-deletion"],
             "targets": ["audit"]}
CT_R4 = ct_record("bd000004-0000-4000-8000-000000000004", "Encrypt")
CT_R5 = ct_record("bd000005-0000-4000-8000-000000000005", "DisableKey")
OUT_CT_R4 = {"id": "bd000004-0000-4000-8000-000000000004", "rules": [], "targets": []}

# --------------------------------------------------------------------------
# Message keywords (case-insensitive regular expressions).

KW_JSON = (r"json|pars|syntax|unexpected|expected|truncat|unterminated|end of|"
           r"control char|invalid (token|literal|character|value)|incomplete|malformed")
KW_UTF8 = r"utf-?8"
KW_NUL = r"\bnul\b|nul (byte|char)|\\0\b|0x00|\\u0000"
KW_DEPTH = r"nest|depth"
KW_SIZE = r"size|exceed|too (large|big|long)"
KW_DETAIL_TYPE = r"detail-type"
KW_DETAIL = r"\bdetail\b(?!-type)"
KW_OBJECT = r"object"

# --------------------------------------------------------------------------
# Case construction.


class Case:
    """One input file and what kmsrouter must make of it.

    files:    {name: bytes} written into the case directory
    args:     file arguments (relative to the case directory)
    stdin:    bytes fed on stdin, or None
    rc:       expected exit status
    out:      expected stdout objects, in order; or, when the contract allows
              more than one reading, a list of such lists (any one passes)
    diags:    [(file label, line, keyword regex)] that must appear on stderr;
              line may be a tuple of lines when the contract allows several
    good:     [(file label, line)] start lines of valid records, which no
              diagnostic may name
    """

    def __init__(self, name, files, out, rc=1, diags=(), good=(), args=None, stdin=None,
                 no_diags=False, check_output=True):
        self.name = name
        self.files = files
        self.args = list(files) if args is None else args
        self.stdin = stdin
        self.rc = rc
        self.out = out
        self.alternatives = bool(out) and isinstance(out[0], list)
        self.diags = list(diags)
        self.good = list(good)
        self.no_diags = no_diags
        self.check_output = check_output


def sandwich(name, bad, keyword, fname="case.jsonl", transform=None, stdin=False, eol=b"\n",
             rc=1):
    """Two valid events, the bad record (starting on line 3), two valid events."""
    bad_lines = bad.count(b"\n") + 1
    data = eol.join(BEFORE + [bad] + AFTER) + eol
    if transform:
        data = transform(data)
    label = "-" if stdin else fname
    good = [(label, 1), (label, 2), (label, 3 + bad_lines), (label, 4 + bad_lines)]
    if stdin:
        return Case(name, {}, OUT_BEFORE + OUT_AFTER, rc=rc, diags=[(label, 3, keyword)],
                    good=good, args=[], stdin=data)
    return Case(name, {fname: data}, OUT_BEFORE + OUT_AFTER, rc=rc,
                diags=[(label, 3, keyword)], good=good)


def event_with(base, new_id, **fields):
    ev = dict(base)
    ev["id"] = new_id
    for k, v in fields.items():
        ev[k.replace("_", "-")] = v
    return ev


def raw_event(new_id, detail_raw, detail_type=b'"KMS CMK Deletion"'):
    """A deletion event whose detail is given as raw bytes."""
    return (b'{"version":"0","id":"' + new_id.encode() + b'","detail-type":' + detail_type +
            b',"source":"aws.kms","account":"111122223333","time":"2016-08-19T03:23:45Z",'
            b'"region":"us-west-2","resources":["' + KEY_ARN.encode() + b'"],"detail":' +
            detail_raw + b'}')


def key_id_event(new_id, raw_value):
    """A deletion event whose detail.key-id string holds raw_value as raw bytes."""
    return raw_event(new_id, b'{"key-id":"' + raw_value + b'"}')


def padded_event(new_id, total_size):
    """A valid deletion event of exactly total_size bytes (ASCII padding in detail)."""
    def build(n):
        ev = event_with(DELETION, new_id)
        ev["detail"] = {"key-id": DELETION["detail"]["key-id"], "padding": "p" * n}
        return compact(ev)
    base = len(build(0))
    data = build(total_size - base)
    assert len(data) == total_size, (len(data), total_size)
    return data


def nested_detail_event(new_id, levels):
    """A deletion event whose detail holds `levels` more nested objects.

    Nesting depth: top-level object (1) + detail (1) + levels."""
    inner = b'{"a":' * levels + b'1' + b'}' * levels
    return raw_event(new_id, b'{"key-id":"k","nested":' + inner + b'}')


def build_cases():
    cases = []
    add = cases.append

    # ---- malformed / truncated JSON ------------------------------------
    add(sandwich("truncated-mid-string",
                 b'{"version":"0","id":"bad-trunc-1","detail-type":"KMS CMK Del', KW_JSON))
    # The next line's `{` would be read as the value of "key-id"; recovery
    # must restart at line 4 anyway, so both following events are printed.
    add(sandwich("truncated-mid-object",
                 b'{"version":"0","id":"bad-trunc-2","detail-type":"KMS CMK Deletion",'
                 b'"source":"aws.kms","detail":{"key-id":', KW_JSON))
    add(sandwich("truncated-after-comma",
                 b'{"version":"0","id":"bad-trunc-3",', KW_JSON))
    add(sandwich("missing-colon",
                 b'{"version":"0","id" "bad-colon","detail-type":"KMS CMK Deletion",'
                 b'"source":"aws.kms","detail":{}}', KW_JSON))
    add(sandwich("trailing-comma-object",
                 b'{"version":"0","id":"bad-comma-1","detail-type":"KMS CMK Deletion",'
                 b'"source":"aws.kms","detail":{},}', KW_JSON))
    add(sandwich("trailing-comma-array",
                 b'{"version":"0","id":"bad-comma-2","detail-type":"KMS CMK Deletion",'
                 b'"source":"aws.kms","resources":["' + KEY_ARN.encode() + b'",],"detail":{}}',
                 KW_JSON))
    add(sandwich("bare-word",
                 b'{"version":"0","id":"bad-bare","detail-type":KMS,"source":"aws.kms","detail":{}}',
                 KW_JSON))
    add(sandwich("misspelled-literal",
                 b'{"version":"0","id":"bad-literal","detail-type":"KMS CMK Deletion",'
                 b'"source":"aws.kms","detail":{"x":tru}}', KW_JSON))
    # `{...}}`: either the whole line is one malformed record (JSON Lines
    # reading) or a complete event followed by a stray `}` (concatenated
    # reading); the contract allows both, but line 3 must be reported.
    c = sandwich("unbalanced-close",
                 b'{"version":"0","id":"bad-close","detail-type":"KMS CMK Deletion",'
                 b'"source":"aws.kms","detail":{}}}', KW_JSON)
    c.out = [OUT_BEFORE + OUT_AFTER,
             OUT_BEFORE + [{"id": "bad-close", "rules": ["deletion"], "targets": ["page"]}] + OUT_AFTER]
    c.alternatives = True
    add(c)

    # ---- nesting depth -------------------------------------------------
    add(sandwich("deep-object-10000", b'{"a":' * 10000 + b'1' + b'}' * 10000, KW_DEPTH))
    add(sandwich("deep-array-10000-top-level", b'[' * 10000 + b']' * 10000,
                 KW_DEPTH + "|" + KW_OBJECT))
    add(sandwich("deep-array-10000-in-detail",
                 raw_event("bad-deep-array", b'{"x":' + b'[' * 10000 + b']' * 10000 + b'}'),
                 KW_DEPTH))
    add(sandwich("deep-object-unclosed-10000", b'{"a":' * 10000, KW_DEPTH + "|" + KW_JSON))
    add(sandwich("depth-72-over-limit", nested_detail_event("bad-depth-72", 70), KW_DEPTH))
    # Control: depth 60 is within the default limit of 64.
    ok_deep = nested_detail_event("ok-depth-60", 58)
    c = sandwich("control-depth-60-accepted", ok_deep, KW_DEPTH, rc=0)
    c.out = OUT_BEFORE + [{"id": "ok-depth-60", "rules": ["deletion"], "targets": ["page"]}] + OUT_AFTER
    c.diags = []
    c.good.append(("case.jsonl", 3))
    add(c)

    # ---- record size ---------------------------------------------------
    big = event_with(DELETION, "bad-10mib-string")
    big["detail"] = {"key-id": "x" * (10 * 1024 * 1024)}
    add(sandwich("string-10MiB", compact(big), KW_SIZE))
    many = event_with(DELETION, "bad-many-fields")
    many["detail"] = {"field%05d" % i: "v" * 20 for i in range(10000)}  # ~330 KiB
    assert len(compact(many)) > MAX_RECORD
    add(sandwich("record-330KiB-many-fields", compact(many), KW_SIZE))
    add(sandwich("record-262145-bytes", padded_event("bad-size-262145", MAX_RECORD + 1), KW_SIZE))
    # Pretty-printed oversized record spanning many lines.
    pbig = event_with(DELETION, "bad-pretty-big")
    pbig["detail"] = {"field%05d" % i: "v" * 20 for i in range(10000)}
    add(sandwich("record-over-limit-pretty", pretty(pbig), KW_SIZE))
    # Control: 262143 bytes plus the newline is 262144, within the limit
    # whether or not the line terminator is counted.
    c = sandwich("control-262143-bytes-accepted", padded_event("ok-size-262143", MAX_RECORD - 1),
                 KW_SIZE, rc=0)
    c.out = OUT_BEFORE + [{"id": "ok-size-262143", "rules": ["deletion"], "targets": ["page"]}] + OUT_AFTER
    c.diags = []
    c.good.append(("case.jsonl", 3))
    add(c)

    # ---- invalid UTF-8 inside strings ----------------------------------
    add(sandwich("utf8-overlong-2byte", key_id_event("bad-utf8-1", b"ab\xc0\xafcd"), KW_UTF8))
    add(sandwich("utf8-overlong-3byte", key_id_event("bad-utf8-2", b"ab\xe0\x80\xafcd"), KW_UTF8))
    add(sandwich("utf8-lone-continuation", key_id_event("bad-utf8-3", b"ab\x80cd"), KW_UTF8))
    add(sandwich("utf8-truncated-sequence", key_id_event("bad-utf8-4", b"ab\xe2\x82"), KW_UTF8))
    add(sandwich("utf8-truncated-sequence-mid", key_id_event("bad-utf8-5", b"ab\xe2\x82cd"), KW_UTF8))
    add(sandwich("utf8-surrogate-d800", key_id_event("bad-utf8-6", b"ab\xed\xa0\x80cd"), KW_UTF8))
    add(sandwich("utf8-surrogate-dfff", key_id_event("bad-utf8-7", b"ab\xed\xbf\xbfcd"), KW_UTF8))
    add(sandwich("utf8-above-10ffff", key_id_event("bad-utf8-8", b"ab\xf4\x90\x80\x80cd"), KW_UTF8))
    add(sandwich("utf8-byte-ff", key_id_event("bad-utf8-9", b"ab\xffcd"), KW_UTF8))
    add(sandwich("utf8-invalid-in-key",
                 raw_event("bad-utf8-10", b'{"ke\x80y":"1234abcd"}'), KW_UTF8))

    # ---- NUL bytes -----------------------------------------------------
    add(sandwich("nul-inside-string", key_id_event("bad-nul-1", b"1234\x00abcd"), KW_NUL))
    add(sandwich("nul-outside-string",
                 b'{"version":"0",\x00"id":"bad-nul-2","detail-type":"KMS CMK Deletion",'
                 b'"source":"aws.kms","detail":{}}', KW_NUL))

    # ---- top-level values that are not objects -------------------------
    add(sandwich("top-level-number", b'42', KW_OBJECT))
    add(sandwich("top-level-string", b'"KMS CMK Deletion"', KW_OBJECT))
    add(sandwich("top-level-array-of-numbers", b'[1, 2, 3]', KW_OBJECT))
    add(sandwich("top-level-null", b'null', KW_OBJECT))

    # ---- wrong types for detail-type / detail --------------------------
    add(sandwich("detail-type-number",
                 compact(event_with(DELETION, "bad-dt-1", detail_type=5)), KW_DETAIL_TYPE))
    add(sandwich("detail-type-array",
                 compact(event_with(DELETION, "bad-dt-2", detail_type=["KMS CMK Deletion"])),
                 KW_DETAIL_TYPE))
    add(sandwich("detail-type-null",
                 compact(event_with(DELETION, "bad-dt-3", detail_type=None)), KW_DETAIL_TYPE))
    add(sandwich("detail-string",
                 compact(event_with(DELETION, "bad-detail-1", detail="x")), KW_DETAIL))
    add(sandwich("detail-array",
                 compact(event_with(DELETION, "bad-detail-2", detail=[1])), KW_DETAIL))
    add(sandwich("detail-number",
                 compact(event_with(DELETION, "bad-detail-3", detail=7)), KW_DETAIL))
    add(sandwich("detail-null",
                 compact(event_with(DELETION, "bad-detail-4", detail=None)), KW_DETAIL))

    # ---- empty and near-empty files -------------------------------------
    add(Case("empty-file", {"case.jsonl": b""}, [], rc=1, no_diags=True))
    add(Case("whitespace-only-file", {"case.jsonl": b"  \n\n\t \r\n   \n"}, [], rc=1, no_diags=True))
    add(Case("only-truncated-record",
             {"case.jsonl": b'{"version":"0","id":"bad-only","detail-type":"KMS CMK Deletion",'
                            b'"source":"aws.km'},
             [], rc=1, diags=[("case.jsonl", 1, KW_JSON)]))
    pd = pretty(event_with(DELETION, "bad-only-pretty")).split(b"\n")
    add(Case("only-truncated-pretty-record", {"case.json": b"\n".join(pd[:6]) + b"\n"},
             [], rc=1, diags=[("case.json", 1, KW_JSON)]))

    # ---- CloudTrail log files -------------------------------------------
    text = pretty({"Records": [CT_R1, 42, CT_R3]})
    lines = text.split(b"\n")
    bad_line = lines.index(b"    42,") + 1
    r1_line = lines.index(b"    {") + 1
    r3_line = [i for i, l in enumerate(lines, 1) if l == b"    {"][1]
    add(Case("cloudtrail-record-not-object", {"case.json": text + b"\n"},
             [OUT_CT_R1, OUT_CT_R3], rc=1,
             diags=[("case.json", bad_line, KW_OBJECT + "|" + KW_DETAIL)],
             good=[("case.json", r1_line), ("case.json", r3_line)]))
    # Three one-line CloudTrail log files, the middle one cut short inside
    # its second record.  Whether the complete first record of the cut log
    # (R4) is still emitted is not fixed by the contract: both are accepted.
    log1 = compact({"Records": [CT_R1, CT_R2]})
    log2 = compact({"Records": [CT_R4, CT_R5]})
    log2 = log2[:log2.index(b'"eventName":"DisableKey"') + len(b'"eventName":"Disa')]
    log3 = compact({"Records": [CT_R3]})
    add(Case("cloudtrail-logs-one-truncated",
             {"case.jsonl": log1 + b"\n" + log2 + b"\n" + log3 + b"\n"},
             [[OUT_CT_R1, OUT_CT_R2, OUT_CT_R3], [OUT_CT_R1, OUT_CT_R2, OUT_CT_R4, OUT_CT_R3]], rc=1,
             diags=[("case.jsonl", 2, KW_JSON)], good=[("case.jsonl", 1), ("case.jsonl", 3)]))
    # A one-line CloudTrail log cut short in the middle of JSON Lines events:
    # the events on the following lines must still be read as events.
    for name, bad, may_emit_r4 in [
            ("cloudtrail-log-truncated-open-array", b'{"Records":[', False),
            ("cloudtrail-log-truncated-after-element", b'{"Records":[' + compact(CT_R4), True),
            ("cloudtrail-log-truncated-after-comma", b'{"Records":[' + compact(CT_R4) + b',', True)]:
        c = sandwich(name, bad, KW_JSON)
        if may_emit_r4:
            c.out = [OUT_BEFORE + OUT_AFTER, OUT_BEFORE + [OUT_CT_R4] + OUT_AFTER]
            c.alternatives = True
        add(c)
    # A pretty-printed CloudTrail log cut inside its second record, followed
    # by pretty-printed events.
    ct_lines = pretty({"Records": [CT_R1, CT_R4]}).split(b"\n")
    r4_line = [i for i, l in enumerate(ct_lines, 1) if l == b"    {"][1]
    cut = r4_line + 4
    ct_text = b"\n".join(ct_lines[:cut])
    rest = [pretty(EXPIRATION), pretty(CT_DECRYPT)]
    starts = [1 + ct_text.count(b"\n") + 1]
    starts.append(starts[0] + rest[0].count(b"\n") + 1)
    add(Case("cloudtrail-pretty-log-truncated",
             {"case.json": b"\n".join([ct_text] + rest) + b"\n"},
             [OUT_AFTER, [OUT_CT_R1] + OUT_AFTER], rc=1,
             # the log starts on line 1, the cut record on r4_line: either
             # may be named as the record that starts the bad input.
             diags=[("case.json", (1, r4_line), KW_JSON)],
             good=[("case.json", s) for s in starts]))

    # ---- pretty-printed input: recovery at the next line starting with { --
    def pretty_case(name, mangle, keyword):
        recs = [pretty(DELETION), pretty(ROTATION), None, pretty(EXPIRATION), pretty(CT_DECRYPT)]
        recs[2] = mangle(pretty(event_with(DELETION, "bad-pretty")))
        starts, line = [], 1
        for r in recs:
            starts.append(line)
            line += r.count(b"\n") + 1
        data = b"\n".join(recs) + b"\n"
        return Case(name, {"case.json": data}, OUT_BEFORE + OUT_AFTER, rc=1,
                    diags=[("case.json", starts[2], keyword)],
                    good=[("case.json", s) for i, s in enumerate(starts) if i != 2])
    add(pretty_case("pretty-missing-colon",
                    lambda t: t.replace(b'"source": "aws.kms"', b'"source" "aws.kms"'), KW_JSON))
    add(pretty_case("pretty-truncated",
                    lambda t: b"\n".join(t.split(b"\n")[:6]), KW_JSON))
    add(pretty_case("pretty-invalid-utf8",
                    lambda t: t.replace(b'"aws.kms"', b'"aws.\xc0\xafkms"'), KW_UTF8))

    # ---- other layouts ---------------------------------------------------
    add(sandwich("gzip-jsonl-malformed", b'{"version":"0","id":"bad-gz",,}', KW_JSON,
                 fname="case.jsonl.gz", transform=lambda d: gzip.compress(d, mtime=0)))
    add(sandwich("stdin-malformed", b'{"version":"0","id":"bad-stdin" "x"}', KW_JSON, stdin=True))
    add(sandwich("crlf-line-endings-malformed", b'{"version":"0","id":"bad-crlf",}', KW_JSON,
                 eol=b"\r\n"))
    data = b"\n".join([BEFORE[0], b'{"id":"bad-a",', BEFORE[1], b'{"id":"bad-b" 1}', AFTER[0]]) + b"\n"
    add(Case("two-bad-records", {"case.jsonl": data}, [OUT_DELETION, OUT_ROTATION, OUT_EXPIRATION],
             rc=1, diags=[("case.jsonl", 2, KW_JSON), ("case.jsonl", 4, KW_JSON)],
             good=[("case.jsonl", 1), ("case.jsonl", 3), ("case.jsonl", 5)]))
    data = b"\n".join([b'{"id":"bad-first" "x"}'] + BEFORE + AFTER) + b"\n"
    add(Case("bad-first-line", {"case.jsonl": data}, OUT_BEFORE + OUT_AFTER, rc=1,
             diags=[("case.jsonl", 1, KW_JSON)],
             good=[("case.jsonl", n) for n in (2, 3, 4, 5)]))
    data = b"\n".join(BEFORE + AFTER + [b'{"version":"0","id":"bad-last","source":"aws.k'])
    add(Case("bad-last-line-no-newline", {"case.jsonl": data}, OUT_BEFORE + OUT_AFTER, rc=1,
             diags=[("case.jsonl", 5, KW_JSON)],
             good=[("case.jsonl", n) for n in (1, 2, 3, 4)]))

    # ---- UTF-8 byte order marks ----------------------------------------
    # Skipped where a file starts (also each member of a multi-member gzip file, and on stdin);
    # anywhere else a mark is bad input like any other.
    bom = b"\xef\xbb\xbf"
    add(Case("bom-at-start-skipped", {"case.jsonl": bom + b"\n".join(BEFORE + AFTER) + b"\n"},
             OUT_BEFORE + OUT_AFTER, rc=0, no_diags=True))
    add(Case("bom-at-start-stdin-skipped", {}, OUT_BEFORE + OUT_AFTER, rc=0, args=[],
             stdin=bom + b"\n".join(BEFORE + AFTER) + b"\n", no_diags=True))
    members = (gzip.compress(bom + b"\n".join(BEFORE) + b"\n", mtime=0) +
               gzip.compress(bom + b"\n".join(AFTER) + b"\n", mtime=0))
    add(Case("bom-gzip-members-skipped", {"case.jsonl.gz": members}, OUT_BEFORE + OUT_AFTER,
             rc=0, no_diags=True))
    add(sandwich("bom-mid-file", bom + compact(event_with(DELETION, "bad-bom")), KW_JSON))

    # ---- usage, config and unreadable-file errors: exit status 2 ---------
    ok = b"\n".join(BEFORE) + b"\n"
    add(Case("usage-missing-input-file", {"present.jsonl": ok}, None, rc=2,
             args=["present.jsonl", "does-not-exist.jsonl"], check_output=False))
    add(Case("usage-directory-as-input", {"present.jsonl": ok}, None, rc=2,
             args=["."], check_output=False))
    add(Case("usage-missing-config", {"case.jsonl": ok}, None, rc=2,
             args=["-c", "no-such-config.json", "case.jsonl"], check_output=False))
    add(Case("usage-malformed-config", {"case.jsonl": ok, "bad-config.json": b'{"sinks": [,'},
             None, rc=2, args=["-c", "bad-config.json", "case.jsonl"], check_output=False))
    add(Case("usage-no-config-option", {"case.jsonl": ok}, None, rc=2,
             args=["NO-CONFIG", "case.jsonl"], check_output=False))
    return cases


# --------------------------------------------------------------------------
# Running.


def parse_stdout(data):
    objs, problems = [], []
    for i, line in enumerate(data.decode("utf-8", errors="replace").split("\n"), 1):
        if not line.strip():
            continue
        try:
            objs.append(json.loads(line))
        except ValueError as e:
            problems.append("stdout line %d is not JSON (%s): %r" % (i, e, line[:200]))
    return objs, problems


def canon(obj):
    return json.dumps(obj, sort_keys=True, ensure_ascii=False)


def command(binary, case):
    if case.args[:1] == ["NO-CONFIG"]:
        return [binary, "match"] + case.args[1:]
    if case.args[:1] == ["-c"]:
        return [binary, "match"] + case.args
    return [binary, "match", "-c", CONFIG] + case.args


def check_run(case, cmd, cwd, timeout, valgrind_log=None):
    problems = []
    try:
        p = subprocess.run(cmd, cwd=cwd, input=case.stdin if case.stdin is not None else b"",
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout)
    except subprocess.TimeoutExpired:
        return ["did not finish within %d s" % timeout]
    stderr = p.stderr.decode("utf-8", errors="replace")
    if p.returncode < 0:
        problems.append("killed by signal %d (crash)" % -p.returncode)
    elif valgrind_log is not None and p.returncode == 99:
        problems.append("valgrind reported errors (exit 99)")
        try:
            with open(valgrind_log, errors="replace") as f:
                problems += ["  vg: " + l.rstrip() for l in f.readlines()[-60:]]
        except OSError:
            pass
    elif p.returncode != case.rc:
        problems.append("exit status %d, expected %d" % (p.returncode, case.rc))

    if case.check_output:
        actual, parse_problems = parse_stdout(p.stdout)
        problems += parse_problems
        wanted = case.out if case.alternatives else [case.out]
        got = [canon(o) for o in actual]
        if not any(got == [canon(o) for o in w] for w in wanted):
            problems.append("stdout differs (expected / actual, parsed JSON):")
            for n, w in enumerate(wanted):
                if len(wanted) > 1:
                    problems.append("  expected, reading %d of %d:" % (n + 1, len(wanted)))
                problems += ["  - " + canon(o) for o in w]
            problems += ["  + " + g[:300] for g in got]

    diag_re = re.compile(r"^(.*?):(\d+): ?(.*)$", re.M)
    diags = [(m.group(1), int(m.group(2)), m.group(3)) for m in diag_re.finditer(stderr)]
    for label, line, keyword in case.diags:
        lines = line if isinstance(line, tuple) else (line,)
        shown = " or ".join("%s:%d:" % (label, n) for n in lines)
        named = [d for d in diags if d[0] == label and d[1] in lines]
        if not named:
            problems.append("stderr has no line '%s ...'" % shown)
        elif not any(re.search(keyword, d[2], re.I) for d in named):
            problems.append("message for %s does not say what is wrong (wanted /%s/): %s"
                            % (shown, keyword, named[0][2][:200]))
    for label, line in case.good:
        for d in diags:
            if d[0] == label and d[1] == line:
                problems.append("diagnostic names a valid record: %s:%d: %s" % (d[0], d[1], d[2][:200]))
    if case.no_diags:
        for d in diags:
            if d[0] in case.args or d[0] == "-":
                problems.append("unexpected diagnostic: %s:%d: %s" % (d[0], d[1], d[2][:200]))

    if problems:
        problems.insert(0, "command: %s (in %s)%s" % (
            " ".join(cmd), cwd, " < stdin" if case.stdin is not None else ""))
        err_lines = [l for l in stderr.splitlines() if not l.startswith("==")]
        if err_lines:
            problems.append("stderr (first lines):")
            problems += ["  " + l[:300] for l in err_lines[:20]]
    return problems


def main(argv):
    if len(argv) < 2:
        print("usage: python3 tests/badinput/run.py PATH_TO_KMSROUTER [CASE_SUBSTRING...]",
              file=sys.stderr)
        return 2
    binary = os.path.abspath(argv[1])
    if not os.access(binary, os.X_OK):
        print("not an executable: %s" % binary, file=sys.stderr)
        return 2
    if VALGRIND and shutil.which("valgrind") is None:
        print("KR_VALGRIND=1 but valgrind is not installed", file=sys.stderr)
        return 2
    filters = argv[2:]
    passed = failed = 0
    with tempfile.TemporaryDirectory(prefix="kr-badinput-") as tmp:
        def run_case(case):
            cwd = os.path.join(tmp, case.name)
            os.mkdir(cwd)
            for name, data in case.files.items():
                with open(os.path.join(cwd, name), "wb") as f:
                    f.write(data)
            cmd = command(binary, case)
            problems = check_run(case, cmd, cwd, TIMEOUT)
            if VALGRIND:
                log = os.path.join(tmp, case.name + ".valgrind.log")
                vg = check_run(case, VALGRIND_CMD + ["--log-file=" + log] + cmd, cwd,
                               VALGRIND_TIMEOUT, valgrind_log=log)
                problems += ["[valgrind] " + p for p in vg]
            return problems

        cases = [c for c in build_cases() if not filters or any(f in c.name for f in filters)]
        # the cases are independent (each in its own folder): under valgrind, which is slow
        # and runs one thread, they run side by side (KR_JOBS, default the number of CPUs);
        # the results are reported in the cases' order
        jobs = int(os.environ.get("KR_JOBS", "0")) or (os.cpu_count() or 1) if VALGRIND else 1
        with concurrent.futures.ThreadPoolExecutor(max_workers=jobs) as pool:
            results = list(pool.map(run_case, cases))
        for case, problems in zip(cases, results):
            cwd = os.path.join(tmp, case.name)
            if problems:
                failed += 1
                print("FAIL  %s" % case.name)
                for p in problems:
                    print("      " + p)
            else:
                passed += 1
                print("ok    %s" % case.name)
            shutil.rmtree(cwd, ignore_errors=True)
    print("badinput: %d passed, %d failed" % (passed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
