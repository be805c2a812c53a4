#!/usr/bin/env python3
"""Differential fuzzer: kmsrouter's event-pattern matcher against aws/event-ruler.

Usage:
    python3 tests/conformance/differential.py --kmsrouter build/kmsrouter \\
        --oracle PATH/TO/oracle --seed N [--cases 20000] [--shrink] [--record FILE]

From one seed it generates random EventBridge event patterns (every operator,
nesting, $or, invalid patterns) and random KMS-shaped events whose values come
from the same pool, so that patterns have a real chance to match.  All cases go,
as one JSON Lines batch, to

    KMSROUTER test-pattern --batch
    ORACLE --mode subrules

(the oracle is aws/event-ruler wrapped in the same batch protocol, see
README.md; subrules mode adds each $or branch as its own rule, which is how
kmsrouter answers).  Answers are compared by class only: true, false or error,
never the message.  It prints how often each operator was used, `agree X/N`,
and the disagreements by answer; with --shrink, by class.

The JSON text of every case is built here, never re-serialized through the
json module, so number literals (3.0e2, -0.5E10, 300.0 ...) and string escapes
reach both programs exactly as generated.

--shrink   reduces each disagreement to a minimal case (drops keys and array
           elements, shortens strings and names) that still gets the same two
           answers, and prints the distinct shrunk cases grouped by class.
--record   writes every case with event-ruler's answer as a conformance file
           (the format of cases.jsonl, which run.py checks), then the shrunk
           disagreements.  Each event loses most of the members its pattern
           never names (event-ruler does not read those), to keep the file
           small; the answers recorded are the oracle's to the lines as written.
           Cases with a number whose acceptance depends on the JDK event-ruler
           runs on (see representable()) are left out.

Run the oracle on a JDK 19 or later (build.sh's wrapper calls `java`; point
it at, say, Temurin 25): on JDK 17, Double.toString makes event-ruler accept or
reject some numbers unlike every later JDK, and those cases are reported as the
class jdk17-double-tostring.  The generator leaves out one deliberate
difference, an empty list inside anything-but (README: Compatibility notes).

Exit status: 0 when every case agrees, 1 when any disagrees, 2 on a usage or
setup problem (a program missing, an oracle that stopped answering).

The oracle is a developer tool: nothing in the build or the tests needs Java.
"""

import argparse
import decimal
import ipaddress
import itertools
import json
import math
import os
import random
import re
import subprocess
import sys
import threading
import time
import unicodedata

TIMEOUT_SECONDS = 900

# ---------------------------------------------------------------------------
# JSON values with their spelling
#
# A generated value is one of: Num (a number literal kept as text), Str (a
# string and how to escape it), Obj (a list of key/value pairs, so duplicate
# keys can be expressed), a Python list (array), True, False or None.
# ---------------------------------------------------------------------------


class Num:
    __slots__ = ("text",)

    def __init__(self, text):
        self.text = text

    def __eq__(self, other):
        return isinstance(other, Num) and other.text == self.text

    def __hash__(self):
        return hash(("num", self.text))


class Str:
    """A string; style says how it is spelled: 'p' plain UTF-8, 'a' ASCII with
    \\u escapes for non-ASCII, 'u' every character \\u-escaped, 's' solidus
    escaped as \\/."""
    __slots__ = ("value", "style")

    def __init__(self, value, style="p"):
        self.value = value
        self.style = style

    def __eq__(self, other):
        return isinstance(other, Str) and (other.value, other.style) == (self.value, self.style)

    def __hash__(self):
        return hash(("str", self.value, self.style))


class Obj:
    __slots__ = ("pairs",)

    def __init__(self, pairs):
        self.pairs = list(pairs)

    def get(self, key):
        for k, v in self.pairs:
            if k == key:
                return v
        return None


def _escape_every_char(s):
    out = []
    for ch in s:
        cp = ord(ch)
        if cp > 0xFFFF:
            cp -= 0x10000
            out.append("\\u%04x\\u%04x" % (0xD800 + (cp >> 10), 0xDC00 + (cp & 0x3FF)))
        else:
            out.append("\\u%04x" % cp)
    return '"' + "".join(out) + '"'


def dump_str(value, style="p"):
    if style == "a":
        return json.dumps(value, ensure_ascii=True)
    if style == "u":
        return _escape_every_char(value)
    text = json.dumps(value, ensure_ascii=False)
    if style == "s":
        text = text.replace("/", "\\/")
    return text


def dump(v):
    """The JSON text of a generated value, on one line."""
    if isinstance(v, Num):
        return v.text
    if isinstance(v, Str):
        return dump_str(v.value, v.style)
    if isinstance(v, str):
        return dump_str(v)
    if v is True:
        return "true"
    if v is False:
        return "false"
    if v is None:
        return "null"
    if isinstance(v, Obj):
        return "{" + ",".join(dump_str(k) + ":" + dump(x) for k, x in v.pairs) + "}"
    if isinstance(v, list):
        return "[" + ",".join(dump(x) for x in v) + "]"
    raise TypeError("cannot dump %r" % (v,))


def svalue(v):
    """The Python string of a Str (or str), else None."""
    if isinstance(v, Str):
        return v.value
    if isinstance(v, str):
        return v
    return None


# ---------------------------------------------------------------------------
# Number spellings
# ---------------------------------------------------------------------------

DEC = decimal.Context(prec=2000, Emax=999999, Emin=-999999)


def dec_of(text):
    return DEC.create_decimal(text)


def respell(rng, text):
    """Another JSON spelling of the same exact decimal value as text."""
    d = dec_of(text)
    sign, digits, exp = d.as_tuple()
    neg = "-" if sign else ""
    ds = "".join(str(x) for x in digits).lstrip("0")
    if not ds:
        return rng.choice(["0", "-0", "0.0", "-0.0", "0e0", "0E+7", "-0e-3", "0.000"])
    while ds.endswith("0"):
        ds = ds[:-1]
        exp += 1
    n = len(ds)
    e_sci = exp + n - 1
    forms = []
    # positional, when not absurdly long
    if -30 <= exp <= 30:
        if exp >= 0:
            forms.append(neg + ds + "0" * exp)
            forms.append(neg + ds + "0" * exp + ".0")
            forms.append(neg + ds + "0" * exp + ".000")
        else:
            whole, frac = (ds[:exp], ds[exp:]) if n > -exp else ("0", "0" * (-exp - n) + ds)
            forms.append(neg + whole + "." + frac)
            forms.append(neg + whole + "." + frac + "00")
    mark = rng.choice(["e", "E"])
    plus = rng.choice(["", "+"])

    def ex(k):
        return mark + ("-" + str(-k) if k < 0 else plus + str(k))

    forms.append(neg + ds[0] + "." + (ds[1:] or "0") + ex(e_sci))
    forms.append(neg + ds + ex(exp))
    forms.append(neg + ds + "000" + ex(exp - 3))
    forms.append(neg + "0." + ds + ex(exp + n))
    if n > 1:
        forms.append(neg + ds[:2] + "." + ds[2:] + ex(e_sci - 1) if n > 2 else neg + ds + ex(exp))
    return rng.choice(forms)


def float_of(text):
    try:
        return float(text)
    except (ValueError, OverflowError):
        return None


def shortest(x):
    """Python's shortest round-trip spelling of a finite double."""
    return repr(float(x))


# Values in several spellings: each row is one exact value.
NUMBER_ROWS = [
    ["0", "-0", "0.0", "0e0", "-0.0E-5"],
    ["1", "1.0", "1e0", "10e-1", "0.1e1"],
    ["7", "7.0", "7e0", "70E-1"],
    ["30", "30.0", "3e1", "3.0E+1"],
    ["32", "32.0", "3.2e1"],
    ["300", "300.0", "3.0e2", "3E+2", "3e2", "30000e-2", "0.3e3"],
    ["301.8", "3.018e2", "3018e-1", "301.80"],
    ["-5000000000", "-0.5E10", "-5E9", "-5000000000E+0", "-5e+9"],
    ["0.5", "5e-1", "5E-1", "0.50"],
    ["-1.5", "-15e-1", "-1.50"],
    ["2048", "2.048e3", "2048.0"],
    ["4096", "4.096E3", "4096.00"],
    ["123456789012", "1.23456789012e11", "123456789012.0"],
    ["111122223333", "1.11122223333E11"],
    ["9007199254740992", "9.007199254740992e15", "9007199254740992.0"],
    ["0.1", "1e-1", "0.10"],
    ["0.30000000000000004", "3.0000000000000004e-1"],
    ["1e21", "1E21", "1000000000000000000000"],
    ["1.7976931348623157e308", "1.7976931348623157E+308"],
    ["-1.7976931348623157e308", "-1.7976931348623157E308"],
    ["1.797e308", "1797e305"],
    ["-1.797e308", "-1.797E+308"],
    ["2.2250738585072014e-308", "2.2250738585072014E-308"],
    ["4.9e-324", "4.9E-324", "49e-325"],
]
# Values that are not exactly the double event-ruler would print back
# (ComparableNumber rejects them), or that overflow a double.
ODD_NUMBER_ROWS = [
    ["5e-324", "5E-324", "0.5e-323"],
    ["9007199254740993", "9.007199254740993e15"],
    ["12345678901234567890", "12345678901234567890.00", "1.234567890123456789e19"],
    ["90071992556417119.2547509920e-1", "9007199255641711.92547509920"],
    ["0.1000000000000000055511151231257827", "1.000000000000000055511151231257827e-1"],
    ["0.10000000000000001"],
    ["3.141592653589793238"],
    ["9223372036854775807"],
    ["-9223372036854775808"],
    ["18446744073709551615"],
    ["1e400", "1E+400"],
    ["-1e400"],
    ["1e-400"],
    ["1.8e308"],
    ["100000000000000000000000", "1e23"],
]

EDGE_BOUNDS = ["1.7976931348623157e308", "-1.7976931348623157e308", "1.797e308", "-1.797e308",
               "5e-324", "4.9e-324", "-4.9e-324", "2.2250738585072014e-308", "0", "-0",
               "1.8e308", "-1.8e308", "1e400", "9007199254740993", "12345678901234567890.00"]


def near_number(rng, text):
    """A number close to text's value: equal (respelled), next double, +-1, scaled."""
    x = float_of(text)
    r = rng.random()
    if x is None or not math.isfinite(x):
        return pool_number(rng)
    if r < 0.35:
        return respell(rng, text)
    if r < 0.5:
        y = math.nextafter(x, math.inf if rng.random() < 0.5 else -math.inf)
        return shortest(y) if math.isfinite(y) else text
    if r < 0.7:
        y = x + rng.choice([1, -1, 0.5, -0.5, 10, -10])
        return respell(rng, shortest(y)) if math.isfinite(y) else text
    if r < 0.8:
        y = -x
        return shortest(y)
    if r < 0.95:
        return pool_number(rng)
    return rng.choice(EDGE_BOUNDS)


# ---------------------------------------------------------------------------
# The shared pool of values (KMS-shaped)
# ---------------------------------------------------------------------------

KEY_IDS = ["1234abcd-12ab-34cd-56ef-1234567890ab", "0987dcba-09fe-87dc-65ba-ab0987654321",
           "mrk-1234abcd12ab34cd56ef1234567890ab", "f00dbabe-0000-4000-8000-00000000beef"]
ACCOUNTS = ["111122223333", "123456789012", "444455556666"]
REGIONS = ["us-east-1", "us-west-2", "eu-central-1", "ap-southeast-2"]
DETAIL_TYPES = ["KMS CMK Rotation", "KMS Imported Key Material Expiration", "KMS CMK Deletion",
                "AWS API Call via CloudTrail", "AWS Service Event via CloudTrail"]
EVENT_NAMES = ["CreateKey", "Decrypt", "Encrypt", "GenerateDataKey", "ScheduleKeyDeletion",
               "DisableKey", "EnableKeyRotation", "RotateKey", "PutKeyPolicy", "CreateAlias",
               "ReEncrypt", "GenerateDataKeyWithoutPlaintext"]
KEY_SPECS = ["SYMMETRIC_DEFAULT", "RSA_2048", "ECC_NIST_P256", "HMAC_256"]
IPS = ["192.0.2.128", "10.0.0.1", "10.1.2.3", "203.0.113.7", "255.255.255.255", "0.0.0.0",
       "172.16.5.4", "2001:db8::1", "2001:DB8:0:0:0:0:0:1", "2001:0db8:0000:0000:0000:0000:0000:0001",
       "2001:db8:85a3::8a2e:370:7334", "::1", "::", "fe80::1", "::ffff:192.0.2.128",
       "::ffff:c000:280", "0:0:0:0:0:ffff:c000:0280", "::192.0.2.128", "010.0.0.1",
       "192.0.2.256", "1.2.3", "kms.amazonaws.com", "AWS Internal", "192.0.2.128 "]
# strings whose case pairs are unusual: lengths differ in UTF-8, one-way folds,
# Turkish i, final sigma, titlecase digraphs, ligatures, non-BMP letters
UNICODE_STRINGS = ["Straße", "STRASSE", "strasse", "ẞig", "ſecret-Key", "Kelvin-\u212a", "kelvin-k",
                   "İstanbul", "ıstanbul", "ISTANBUL", "ΣΊΣΥΦΟΣ", "σίσυφος", "Σίσυφος",
                   "ǅungla", "ǆUNGLA", "Ⱥlpha", "ⱥLPHA", "ȿwash", "ﬀoo", "FFOO", "µ-unit",
                   "Μ-UNIT", "𐐀𐐨-deseret", "ΐota", "ÿes", "Ω-ohm", "\u2126-ohm", "Å-ring",
                   "\u212b-ring", "ǰ-caron", "ŉ-apos", "Ключ-ΑΒΓ", "ключ-αβγ", "東京キー",
                   "😀emoji-Key", "MIXED Ünïcödé", "mixed ünïcödé", "ǈ-lj"]
ODD_STRINGS = ["", " ", "*", "a*b", "star*", "back\\slash", "quote\"d", "tab\there",
               "line\nbreak", "slash/ok", "nul\u0000x", "$or", "prefix", "numeric", "exists",
               "-", "true", "null", "300", "3.0e2", "{\"json\":1}"]
TRICKY_CASE = {"s": ["ſ", "S"], "S": ["ſ", "s"], "k": ["\u212a", "K"], "K": ["\u212a", "k"],
               "ß": ["ẞ", "SS", "ss"], "i": ["İ", "ı", "I"], "I": ["ı", "İ", "i"],
               "σ": ["ς", "Σ"], "Σ": ["ς", "σ"], "ς": ["Σ", "σ"], "ǅ": ["ǆ", "Ǆ"],
               "Ⱥ": ["ⱥ"], "ⱥ": ["Ⱥ"], "ȿ": ["Ȿ"], "ﬀ": ["FF", "ff"], "µ": ["Μ", "μ"],
               "ÿ": ["Ÿ"], "Ω": ["\u2126", "ω"], "Å": ["\u212b", "å"], "𐐀": ["𐐨"],
               "𐐨": ["𐐀"], "ǈ": ["ǉ", "Ǉ"], "ΐ": ["Ϊ́"], "ǰ": ["J̌"], "ŉ": ["ʼN"]}


def pool_string(rng):
    r = rng.random()
    if r < 0.12:
        return rng.choice(KEY_IDS)
    if r < 0.2:
        return arn(rng)
    if r < 0.3:
        return rng.choice(EVENT_NAMES)
    if r < 0.38:
        return rng.choice(IPS)
    if r < 0.55:
        return rng.choice(UNICODE_STRINGS)
    if r < 0.65:
        return rng.choice(ODD_STRINGS)
    if r < 0.72:
        return rng.choice(REGIONS)
    if r < 0.8:
        return rng.choice(DETAIL_TYPES)
    if r < 0.86:
        return rng.choice(["aws.kms", "AWS.KMS", "aws.kms.", "aws.", "kms"])
    return rng.choice(KEY_SPECS + ACCOUNTS + ["AWS_KMS", "EXTERNAL", "ON_DEMAND", "Enabled"])


def arn(rng):
    r = rng.random()
    region, acct, kid = rng.choice(REGIONS), rng.choice(ACCOUNTS), rng.choice(KEY_IDS)
    if r < 0.7:
        return "arn:aws:kms:%s:%s:key/%s" % (region, acct, kid)
    if r < 0.85:
        return "arn:aws:kms:%s:%s:alias/%s" % (region, acct, rng.choice(["ExampleAlias", "prod/Ключ", "a*b"]))
    return "arn:aws:iam::%s:user/%s" % (acct, rng.choice(["Alice", "Ωmega", "bob"]))


def pool_number(rng):
    rows = ODD_NUMBER_ROWS if rng.random() < 0.12 else NUMBER_ROWS
    return rng.choice(rng.choice(rows))


def jstr(rng, value):
    """A Str with a random spelling (mostly plain)."""
    r = rng.random()
    if r < 0.86:
        return Str(value, "p")
    if r < 0.94:
        return Str(value, "a")
    if r < 0.98:
        return Str(value, "s")
    return Str(value, "u")


def pool_scalar(rng):
    r = rng.random()
    if r < 0.6:
        return jstr(rng, pool_string(rng))
    if r < 0.9:
        return Num(pool_number(rng))
    return rng.choice([True, False, None])


# ---------------------------------------------------------------------------
# KMS-shaped events
# ---------------------------------------------------------------------------

def maybe(rng, p=0.5):
    return rng.random() < p


def event_number(rng, options):
    return Num(respell(rng, rng.choice(options)) if maybe(rng, 0.4) else rng.choice(options))


def gen_user_identity(rng):
    acct = rng.choice(ACCOUNTS)
    pairs = [("type", jstr(rng, rng.choice(["IAMUser", "AssumedRole", "AWSService", "Root"])))]
    if maybe(rng):
        pairs.append(("arn", jstr(rng, arn(rng))))
    if maybe(rng):
        pairs.append(("accountId", jstr(rng, acct) if maybe(rng, 0.8) else Num(acct)))
    if maybe(rng, 0.3):
        pairs.append(("sessionContext", Obj([("attributes", Obj([
            ("mfaAuthenticated", jstr(rng, rng.choice(["false", "true"])) if maybe(rng) else rng.choice([True, False])),
            ("creationDate", jstr(rng, "2025-05-23T03:11:54Z"))]))])))
    if maybe(rng, 0.2):
        pairs.append(("invokedBy", jstr(rng, pool_string(rng))))
    return Obj(pairs)


def gen_request_parameters(rng):
    pairs = []
    if maybe(rng, 0.6):
        pairs.append(("keyId", jstr(rng, rng.choice(KEY_IDS) if maybe(rng) else arn(rng))))
    if maybe(rng, 0.4):
        pairs.append(("numberOfBytes", event_number(rng, ["32", "64", "2048", "4096", "1", "0"])))
    if maybe(rng, 0.3):
        pairs.append(("keySpec", jstr(rng, rng.choice(KEY_SPECS))))
    if maybe(rng, 0.3):
        ctx = [(rng.choice(["purpose", "Département", "aws:ebs:id", "Ключ"]), jstr(rng, pool_string(rng)))
               for _ in range(rng.randint(1, 2))]
        pairs.append(("encryptionContext", Obj(ctx)))
    if maybe(rng, 0.25):
        pairs.append(("pendingWindowInDays", event_number(rng, ["7", "30", "7.0", "3e1"])))
    if maybe(rng, 0.2):
        pairs.append(("grantTokens", [jstr(rng, pool_string(rng)) for _ in range(rng.randint(0, 2))]))
    return Obj(pairs)


def gen_cloudtrail_detail(rng):
    pairs = [("eventName", jstr(rng, rng.choice(EVENT_NAMES)))]
    if maybe(rng, 0.6):
        pairs.append(("sourceIPAddress", jstr(rng, rng.choice(IPS))))
    if maybe(rng, 0.35):
        pairs.append(("userIdentity", gen_user_identity(rng)))
    if maybe(rng, 0.15):
        pairs.append(("eventSource", jstr(rng, "kms.amazonaws.com")))
    if maybe(rng, 0.5):
        pairs.append(("requestParameters", gen_request_parameters(rng)))
    if maybe(rng, 0.2):
        pairs.append(("responseElements", None if maybe(rng) else Obj([("keyId", jstr(rng, rng.choice(KEY_IDS)))])))
    if maybe(rng, 0.3):
        pairs.append(("readOnly", rng.choice([True, False])))
    if maybe(rng, 0.3):
        res = []
        for _ in range(rng.randint(1, 2)):
            r = [("ARN", jstr(rng, arn(rng)))]
            if maybe(rng):
                r.append(("accountId", jstr(rng, rng.choice(ACCOUNTS))))
            if maybe(rng):
                r.append(("type", jstr(rng, rng.choice(["AWS::KMS::Key", "AWS::KMS::Alias"]))))
            res.append(Obj(r))
        pairs.append(("resources", res))
    if maybe(rng, 0.3):
        pairs.append(("additionalEventData", Obj([
            ("sizes", [Num(pool_number(rng)) for _ in range(rng.randint(0, 3))]),
            ("ratio", Num(pool_number(rng)))])))
    return pairs


def gen_key_event_detail(rng):
    pairs = [("key-id", jstr(rng, rng.choice(KEY_IDS)))]
    if maybe(rng):
        pairs.append(("key-origin", jstr(rng, rng.choice(["AWS_KMS", "EXTERNAL", "AWS_CLOUDHSM"]))))
    if maybe(rng):
        pairs.append(("rotation-type", jstr(rng, rng.choice(["ON_DEMAND", "AUTOMATIC"]))))
    if maybe(rng, 0.3):
        pairs.append(("pending-window-in-days", event_number(rng, ["7", "30"])))
    if maybe(rng, 0.3):
        pairs.append(("key-state", jstr(rng, rng.choice(["Enabled", "Disabled", "PendingDeletion"]))))
    return pairs


def gen_odd_field(rng):
    """Fields that exercise operators beyond the KMS shape: numbers in many
    spellings, non-ASCII strings, nested arrays, operator-like names."""
    r = rng.random()
    if r < 0.2:
        return ("count", Num(pool_number(rng)))
    if r < 0.35:
        return ("label", jstr(rng, rng.choice(UNICODE_STRINGS)))
    if r < 0.45:
        return ("values", [pool_scalar(rng) for _ in range(rng.randint(0, 3))])
    if r < 0.55:
        return ("matrix", [[pool_scalar(rng) for _ in range(rng.randint(0, 2))] for _ in range(rng.randint(1, 2))])
    if r < 0.65:
        return ("tags", [Obj([("key", jstr(rng, rng.choice(["env", "owner", "Ключ"]))),
                              ("value", pool_scalar(rng))]) for _ in range(rng.randint(1, 3))])
    if r < 0.8:
        name = rng.choice(["$or", "prefix", "numeric", "exists", "anything-but"])
        if maybe(rng, 0.3):
            return (name, Obj([(rng.choice(["a", "source"]), pool_scalar(rng))]))
        return (name, pool_scalar(rng) if maybe(rng) else [pool_scalar(rng), pool_scalar(rng)])
    if r < 0.9:
        return ("flag", rng.choice([True, False, None]))
    return ("odd", jstr(rng, rng.choice(ODD_STRINGS)))


def gen_event(rng):
    dt = rng.choice(DETAIL_TYPES)
    pairs = []
    if maybe(rng, 0.1):
        pairs.append(("version", jstr(rng, "0")))
    if maybe(rng, 0.85):
        pairs.append(("detail-type", jstr(rng, dt)))
    if maybe(rng, 0.85):
        pairs.append(("source", jstr(rng, "aws.kms" if maybe(rng, 0.85) else pool_string(rng))))
    if maybe(rng, 0.3):
        pairs.append(("account", jstr(rng, rng.choice(ACCOUNTS)) if maybe(rng, 0.8) else Num(rng.choice(ACCOUNTS))))
    if maybe(rng, 0.3):
        pairs.append(("region", jstr(rng, rng.choice(REGIONS))))
    if maybe(rng, 0.1):
        pairs.append(("time", jstr(rng, "2025-05-23T03:11:54Z")))
    if maybe(rng, 0.4):
        pairs.append(("resources", [jstr(rng, arn(rng)) for _ in range(rng.choice([0, 1, 1, 2]))]))
    if "CloudTrail" in dt:
        detail = gen_cloudtrail_detail(rng)
    else:
        detail = gen_key_event_detail(rng)
    for _ in range(rng.choice([0, 0, 1, 1, 2])):
        detail.append(gen_odd_field(rng))
    rng.shuffle(detail)
    pairs.append(("detail", Obj(detail)))
    if maybe(rng, 0.15):
        pairs.append(gen_odd_field(rng))
    rng.shuffle(pairs)
    return Obj(pairs)


def leaves(v, path=()):
    """(path, value) for every scalar under v, arrays looked through, plus
    (path, node) for every object and array that is not the root."""
    out = []
    if isinstance(v, Obj):
        if path:
            out.append((path, v))
        for k, x in v.pairs:
            out.extend(leaves(x, path + (k,)))
    elif isinstance(v, list):
        out.append((path, v))
        for x in v:
            sub = leaves(x, path)
            out.extend(s for s in sub if s[0] != path or not isinstance(s[1], list))
    else:
        out.append((path, v))
    return out


# ---------------------------------------------------------------------------
# Patterns
# ---------------------------------------------------------------------------

def case_mutate(rng, s):
    out = []
    for ch in s:
        r = rng.random()
        if ch in TRICKY_CASE and r < 0.5:
            out.append(rng.choice(TRICKY_CASE[ch]))
        elif r < 0.5:
            out.append(ch.upper())
        elif r < 0.9:
            out.append(ch.lower())
        else:
            out.append(ch)
    return "".join(out)


def string_mutate(rng, s):
    """A string close to s: same, case-changed, one character changed, or cut."""
    r = rng.random()
    if r < 0.45 or not s:
        return s
    if r < 0.6:
        return case_mutate(rng, s)
    if r < 0.75:
        i = rng.randrange(len(s))
        return s[:i] + rng.choice(["x", "Z", "ß", "*", "ı", ""]) + s[i + 1:]
    if r < 0.85:
        return s + rng.choice(["x", " ", "\u0307", "s"])
    return pool_string(rng)


def wildcardify(rng, s):
    """A wildcard pattern derived from s: literal * and \\ escaped, random runs replaced by *."""
    out = []
    i = 0
    while i < len(s):
        if rng.random() < 0.2 and (not out or out[-1] != "*"):
            out.append("*")
            i += rng.randint(0, 3)
            continue
        ch = s[i]
        out.append("\\" + ch if ch in "*\\" else ch)
        i += 1
    if rng.random() < 0.15 and (not out or out[-1] != "*"):
        out.append("*")
    text = "".join(out)
    r = rng.random()
    if r < 0.05:
        text += "**"
    elif r < 0.08:
        text += "\\x"
    elif r < 0.16:
        text = case_mutate(rng, text)
    return text


def ip_of(s):
    try:
        return ipaddress.ip_address(s.strip())
    except ValueError:
        return None


def cidr_for(rng, s):
    """A cidr operand near the address s (or a pool address), sometimes malformed."""
    ip = ip_of(s) if s is not None else None
    if ip is None:
        ip = ip_of(rng.choice([a for a in IPS if ip_of(a) is not None]))
    bits = ip.max_prefixlen
    r = rng.random()
    if r < 0.08:
        mask = rng.choice([bits, bits + 1, -1, 999])
    elif r < 0.15:
        mask = rng.choice([0, 1, bits - 1])
    else:
        mask = rng.randint(0, bits - 1)
    if 0 <= mask <= bits:
        base = ipaddress.ip_network("%s/%d" % (ip, mask), strict=False).network_address
    else:
        base = ip
    if rng.random() < 0.3:
        base = ip
    text = str(base)
    if ip.version == 6:
        r = rng.random()
        if r < 0.2:
            text = base.exploded
        elif r < 0.3:
            text = text.upper()
        elif r < 0.4 and base.ipv4_mapped is not None:
            text = "::ffff:" + str(base.ipv4_mapped)
    elif rng.random() < 0.1:
        text = "::ffff:" + text
        mask = mask + 96 if rng.random() < 0.5 else mask
    mask_text = str(mask)
    r = rng.random()
    if r < 0.03:
        mask_text = "+" + mask_text
    elif r < 0.05:
        mask_text = "0" + mask_text
    elif r < 0.07:
        mask_text = mask_text + "/" + mask_text
    elif r < 0.09:
        mask_text = " " + mask_text
    if rng.random() < 0.03:
        return text
    return text + "/" + mask_text


def numeric_matcher(rng, text):
    """A {"numeric": [...]} matcher with bounds near text's value."""
    ops = ["=", "<", "<=", ">", ">="]
    r = rng.random()
    if r < 0.45:
        body = [Str(rng.choice(ops)), Num(near_number(rng, text))]
    elif r < 0.9:
        lo, hi = near_number(rng, text), near_number(rng, text)
        flo, fhi = float_of(lo), float_of(hi)
        if flo is not None and fhi is not None and rng.random() < 0.85:
            if flo > fhi:
                lo, hi = hi, lo
            elif flo == fhi and math.isfinite(flo):
                hi = respell(rng, shortest(flo + max(1.0, abs(flo) / 2)))
        body = [Str(rng.choice([">", ">="])), Num(lo), Str(rng.choice(["<", "<="])), Num(hi)]
    else:
        body = rng.choice([
            [Str(">")], [Str("<"), Str("5")], [Str("=="), Num("1")], [],
            [Str(">"), Num("1"), Str(">"), Num("2")], [Str("<"), Num("5"), Str(">"), Num("1")],
            [Str("="), Num(text), Str("<"), Num("9")], [Str(">"), Num(text), Str("<")],
            [Str(">"), Num("0"), Str("<="), Num(text), Str("<"), Num("1")],
            [Str(">"), Num(rng.choice(EDGE_BOUNDS))], [Str("<"), Num(rng.choice(EDGE_BOUNDS))],
            [Str(">="), Num(rng.choice(EDGE_BOUNDS)), Str("<="), Num(rng.choice(EDGE_BOUNDS))],
        ])
    return Obj([("numeric", body)])


def anything_but_matcher(rng, v):
    s = svalue(v)
    if isinstance(v, Num):
        r = rng.random()
        if r < 0.4:
            return Obj([("anything-but", Num(near_number(rng, v.text)))])
        if r < 0.8:
            return Obj([("anything-but", [Num(near_number(rng, v.text)) for _ in range(rng.randint(1, 3))])])
        if r < 0.9:
            return Obj([("anything-but", jstr(rng, v.text))])
        return Obj([("anything-but", [Num(v.text), Str("x")])])
    if s is None:
        s = pool_string(rng)
    r = rng.random()
    if r < 0.25:
        return Obj([("anything-but", jstr(rng, string_mutate(rng, s)))])
    if r < 0.45:
        return Obj([("anything-but", [jstr(rng, string_mutate(rng, s)) for _ in range(rng.randint(1, 3))])])
    if r < 0.57:
        sub, val = "prefix", s[:rng.randint(0, len(s))] or "a"
    elif r < 0.69:
        sub, val = "suffix", s[rng.randint(0, len(s)):] or "z"
    elif r < 0.83:
        sub, val = "equals-ignore-case", case_mutate(rng, s)
    else:
        sub, val = "wildcard", wildcardify(rng, s)
    if rng.random() < 0.3:
        operand = [jstr(rng, val), jstr(rng, string_mutate(rng, val) or "q")]
    else:
        operand = jstr(rng, val)
    if rng.random() < 0.05:
        # never [] here: event-ruler ignores an empty list after another matcher and throws when
        # it comes first, and kmsrouter rejects it in both places (README: Compatibility notes;
        # cases.jsonl holds those answers), a deliberate difference this fuzzer leaves out
        operand = rng.choice([Num("1"), [Num("1")], Str(""), True])
    return Obj([("anything-but", Obj([(sub, operand)]))])


def string_matcher(rng, s):
    """One matcher for an event string s."""
    r = rng.random()
    if r < 0.22:
        m = string_mutate(rng, s)
        if ip_of(m) is not None and rng.random() < 0.5:
            m = str(ip_of(m)) if rng.random() < 0.5 else m
        return jstr(rng, m)
    if r < 0.32:
        return Obj([("prefix", jstr(rng, string_mutate(rng, s[:rng.randint(0, len(s))])))])
    if r < 0.41:
        return Obj([("suffix", jstr(rng, string_mutate(rng, s[rng.randint(0, len(s)):])))])
    if r < 0.53:
        return Obj([("equals-ignore-case", jstr(rng, case_mutate(rng, s) if rng.random() < 0.85 else string_mutate(rng, s)))])
    if r < 0.58:
        return Obj([("prefix", Obj([("equals-ignore-case", jstr(rng, case_mutate(rng, s[:rng.randint(0, len(s))])))]))])
    if r < 0.63:
        return Obj([("suffix", Obj([("equals-ignore-case", jstr(rng, case_mutate(rng, s[rng.randint(0, len(s)):])))]))])
    if r < 0.75:
        return anything_but_matcher(rng, Str(s))
    if r < 0.85:
        return Obj([("wildcard", jstr(rng, wildcardify(rng, s)))])
    if r < 0.94:
        return Obj([("cidr", jstr(rng, cidr_for(rng, s)))])
    if r < 0.98:
        return Obj([("exists", rng.random() < 0.7)])
    return Num(pool_number(rng))


def number_matcher(rng, text):
    r = rng.random()
    if r < 0.35:
        return Num(near_number(rng, text))
    if r < 0.5:
        return anything_but_matcher(rng, Num(text))
    if r < 0.88:
        return numeric_matcher(rng, text)
    if r < 0.93:
        return Obj([("exists", rng.random() < 0.7)])
    if r < 0.97:
        return jstr(rng, text)
    return Obj([("equals-ignore-case", Str(text))])


def other_matcher(rng, v):
    """Matchers for true/false/null values, objects, arrays or absent fields."""
    r = rng.random()
    if r < 0.35:
        return Obj([("exists", rng.random() < 0.5)])
    if r < 0.6:
        return rng.choice([True, False, None])
    if r < 0.7:
        return jstr(rng, rng.choice(["true", "false", "null"]))
    if r < 0.8:
        return Obj([("anything-but", rng.choice([Str("x"), Num("0"), Str("true"), [Num("1"), Num("0")]]))])
    if r < 0.9:
        return numeric_matcher(rng, "0")
    return pool_scalar(rng)


def matchers_for(rng, v):
    count = rng.choice([1, 1, 1, 1, 2, 2, 3])
    out = []
    for _ in range(count):
        s = svalue(v)
        if s is not None:
            out.append(string_matcher(rng, s))
        elif isinstance(v, Num):
            out.append(number_matcher(rng, v.text))
        else:
            out.append(other_matcher(rng, v))
    return out


class OrNode:
    def __init__(self, branches):
        self.branches = branches


def place(tree, path, leaf):
    """Put leaf (a list of matchers) at path in a dict tree; False on a clash."""
    node = tree
    for key in path[:-1]:
        child = node.get(key)
        if child is None:
            child = {}
            node[key] = child
        if not isinstance(child, dict):
            return False
        node = child
    if path[-1] in node:
        return False
    node[path[-1]] = leaf
    return True


def to_obj(tree):
    pairs = []
    for k, v in tree.items():
        if isinstance(v, OrNode):
            pairs.append(("$or", [to_obj(b) for b in v.branches]))
        elif isinstance(v, dict):
            pairs.append((k, to_obj(v)))
        else:
            pairs.append((k, v))
    return Obj(pairs)


def pick_field(rng, fields):
    """(path, value): a field of the event (mostly) or an absent one."""
    r = rng.random()
    if fields and r < 0.82:
        return rng.choice(fields)
    if fields and r < 0.92:
        path, _ = rng.choice(fields)
        return path[:-1] + (rng.choice(["missing", path[-1] + "x", path[-1].upper()]),), None
    return (rng.choice(["source", "detail", "nope", "$or"]),) + ((rng.choice(["key-id", "x"]),) if maybe(rng) else ()), pool_scalar(rng)


def gen_tree(rng, fields, prefix, depth, reuse=()):
    """A pattern tree (dicts, leaf lists, OrNodes) over the event fields under
    prefix. reuse: (path, value) pairs the enclosing object already names; a
    $or branch sometimes names one again (event-ruler lets the branch's
    condition replace the outer one)."""
    tree = {}
    placed = []
    under = [(p[len(prefix):], v) for p, v in fields if p[:len(prefix)] == prefix and len(p) > len(prefix)]
    for _ in range(rng.choice([1, 1, 1, 2, 2, 3] if depth == 0 else [1, 1, 1, 2])):
        path, v = pick_field(rng, under)
        if not path or (path[-1] == "$or" and maybe(rng, 0.5)):
            continue
        if place(tree, path, matchers_for(rng, v)):
            placed.append((path, v))
    if reuse and rng.random() < 0.35:
        path, v = rng.choice(reuse)
        place(tree, path, matchers_for(rng, v))
    if depth < 2 and rng.random() < 0.15:
        # an $or here, or one level down
        sub_prefix = ()
        if rng.random() < 0.4:
            deeper = sorted({p[:1] for p, v in under if len(p) > 1})
            if deeper:
                sub_prefix = rng.choice(deeper)
        own = [(p[len(sub_prefix):], v) for p, v in placed if p[:len(sub_prefix)] == sub_prefix and len(p) > len(sub_prefix)]
        branches = [gen_tree(rng, fields, prefix + sub_prefix, depth + 1, own) for _ in range(rng.choice([2, 2, 3]))]
        node = tree
        for key in sub_prefix:
            child = node.setdefault(key, {})
            if not isinstance(child, dict):
                break
            node = child
        else:
            if "$or" not in node:
                node["$or"] = OrNode(branches)
                if rng.random() < 0.4:
                    # the $or first: then the fields after it replace the branches' own
                    rest = [(k, v) for k, v in node.items() if k != "$or"]
                    node.clear()
                    node["$or"] = OrNode(branches)
                    node.update(rest)
    if not tree:
        path, v = pick_field(rng, under)
        if path:
            place(tree, path, matchers_for(rng, v))
        else:
            tree["source"] = [Str("aws.kms")]
    return tree


def random_leaf(obj, rng):
    """A (parent Obj, index) of a random leaf array in a pattern, or None."""
    spots = []

    def walk(o):
        if isinstance(o, Obj):
            for i, (k, v) in enumerate(o.pairs):
                if isinstance(v, list) and k != "$or":
                    spots.append((o, i))
                elif k == "$or" and isinstance(v, list):
                    for b in v:
                        walk(b)
                else:
                    walk(v)
    walk(obj)
    return rng.choice(spots) if spots else None


INVALID_MATCHERS = [
    Obj([]), Obj([("regex", Str("a.*"))]), Obj([("Prefix", Str("a"))]), Obj([("begins-with", Str("a"))]),
    Obj([("prefix", Num("5"))]), Obj([("suffix", [Str("a")])]), Obj([("exists", Str("true"))]),
    Obj([("exists", None)]), Obj([("numeric", Str("> 5"))]), Obj([("cidr", Num("10"))]),
    Obj([("equals-ignore-case", [Str("a")])]), Obj([("wildcard", Num("1"))]), Obj([("anything-but", None)]),
    Obj([("anything-but", True)]), Obj([("anything-but", [])]), Obj([("anything-but", Obj([("prefix", Str(""))]))]),
    Obj([("anything-but", [Str("a"), Num("1")])]), Obj([("anything-but", Obj([("foo", Str("x"))]))]),
    Obj([("anything-but", Obj([("exists", True)]))]), Obj([("prefix", Str("a")), ("suffix", Str("b"))]),
    Obj([("wildcard", Str("a**b"))]), Obj([("wildcard", Str("a\\b"))]),
    Obj([("prefix", Obj([("suffix", Str("a"))]))]), Obj([("suffix", Obj([("equals-ignore-case", Num("1"))]))]),
    Obj([("anything-but", Obj([("equals-ignore-case", Num("1"))]))]), Obj([("numeric", [Str("<"), Num("1e400")])]),
    Obj([("anything-but", [Num("12345678901234567890")])]), Obj([("anything-but", Num("1e400"))]),
    Obj([("numeric", [Str(">"), Num("9007199254740993")])]), Obj([("cidr", Str("10.0.0.0/33"))]),
    Obj([("cidr", Str("10.0.0.0/32"))]), Obj([("cidr", Str("2001:db8::/128"))]), Obj([("cidr", Str("::ffff:c000:280/127"))]),
    Obj([("cidr", Str("300.1.1.1/8"))]), Obj([("cidr", Str("/8"))]), Obj([("cidr", Str("10.0.0.0"))]),
    Obj([("anything-but", Obj([("wildcard", Str("a**"))]))]), Obj([("exists", True), ("prefix", Str("a"))]),
]


def make_invalid(rng, pattern):
    """Break a valid pattern in one place (or return a wholly invalid one)."""
    r = rng.random()
    spot = random_leaf(pattern, rng)
    if r < 0.06:
        return rng.choice([[], Num("1"), None, Str("x"), Obj([]), [Obj([("source", [Str("aws.kms")])])]])
    if spot is None or r < 0.12:
        return Obj([("source", Obj([]))] + pattern.pairs)
    parent, i = spot
    key, leaf = parent.pairs[i]
    r = rng.random()
    if r < 0.12:
        parent.pairs[i] = (key, [])
    elif r < 0.24:
        parent.pairs[i] = (key, rng.choice([Str("aws.kms"), Num("1"), True, None]))
    elif r < 0.3:
        parent.pairs[i] = (key, [leaf])
    elif r < 0.9:
        parent.pairs[i] = (key, leaf + [rng.choice(INVALID_MATCHERS)])
    else:
        parent.pairs[i] = (key, [Obj([("numeric", [Str(">"), Num("0")])]), Obj([])])
    return pattern


def or_variant(rng, fields):
    """$or used as something other than an array of at least two objects:
    event-ruler then reads "$or" as an ordinary field name (or rejects)."""
    s = pool_scalar(rng)
    options = [
        lambda: [s],
        lambda: [s, pool_scalar(rng)],
        lambda: Obj([("a", [pool_scalar(rng)])]),
        lambda: s,
        lambda: [],
        lambda: [Obj([("source", [Str("aws.kms")])])],
        lambda: [Obj([("prefix", Str("a"))]), Obj([("suffix", Str("b"))])],
        lambda: [Obj([("numeric", [Str(">"), Num("0")])]), Obj([("exists", True)])],
        lambda: [Obj([("source", [Str("aws.kms")])]), Str("x")],
        lambda: [Obj([]), Obj([("source", [Str("aws.kms")])])],
        lambda: [Obj([("source", [Str("aws.kms")])]), Obj([("$or", Str("x"))])],
        lambda: [Obj([("source", [Str("aws.kms")])]), Obj([("$or", [Obj([("a", [Num("1")])]), Obj([("b", [Num("2")])])])])],
        lambda: [Obj([("exists", False)])],
        lambda: [Obj([("prefix", Str(""))])],
    ]
    value = rng.choice(options)()
    where = rng.random()
    extra = []
    if fields and rng.random() < 0.6:
        path, v = rng.choice(fields)
        extra = [(path, matchers_for(rng, v))]
    pairs = [("$or", value)]
    tree = {}
    for path, leaf in extra:
        place(tree, path, leaf)
    obj = to_obj(tree)
    if where < 0.7:
        obj.pairs = pairs + obj.pairs if rng.random() < 0.5 else obj.pairs + pairs
        return obj
    return Obj(obj.pairs + [("detail", Obj(pairs))]) if "detail" not in tree else Obj(pairs + obj.pairs)


def gen_pattern(rng, event):
    fields = [(p, v) for p, v in leaves(event) if p]
    r = rng.random()
    if r < 0.05:
        pattern = or_variant(rng, fields)
    else:
        pattern = to_obj(gen_tree(rng, fields, (), 0))
    if rng.random() < 0.03 and pattern.pairs:
        # a repeated key: event-ruler compiles every occurrence in turn
        key, v = rng.choice(pattern.pairs)
        if isinstance(v, Obj):
            again = to_obj(gen_tree(rng, fields, (key,), 1)) if rng.random() < 0.8 else Obj([])
        else:
            values = [x for p, x in fields if p == (key,)]
            again = matchers_for(rng, rng.choice(values) if values else pool_scalar(rng))
        pattern.pairs.append((key, again))
    if rng.random() < 0.1:
        pattern = make_invalid(rng, pattern)
    return pattern


def gen_case(rng):
    event = gen_event(rng)
    pattern = gen_pattern(rng, event)
    return pattern, event


# ---------------------------------------------------------------------------
# What a pattern exercises (for the breakdown)
# ---------------------------------------------------------------------------

def looks_ip(s):
    return bool(re.fullmatch(r"[0-9]+\.[0-9]+\.[0-9]+\.[0-9]+", s) or re.fullmatch(r"[0-9a-fA-F:]*:[0-9a-fA-F:]*", s))


def matcher_tag(m):
    if isinstance(m, (Str, str)):
        return "exact-ip" if looks_ip(svalue(m)) else "exact-string"
    if isinstance(m, Num):
        return "exact-number"
    if m is True or m is False or m is None:
        return "exact-true-false-null"
    if isinstance(m, list):
        return "invalid:nested-array"
    if not m.pairs:
        return "invalid:empty-matcher"
    if len(m.pairs) != 1:
        return "invalid:two-keys-in-matcher"
    op, v = m.pairs[0]
    if op in ("prefix", "suffix"):
        if isinstance(v, Obj):
            return op + "-equals-ignore-case"
        return op
    if op == "anything-but":
        if isinstance(v, Obj):
            return "anything-but-" + (v.pairs[0][0] if v.pairs else "?")
        if isinstance(v, list):
            kinds = sorted({"number" if isinstance(x, Num) else "string" if svalue(x) is not None else "other" for x in v})
            return "anything-but-list-" + ("+".join(kinds) or "empty")
        if isinstance(v, Num):
            return "anything-but-number"
        return "anything-but-string" if svalue(v) is not None else "anything-but-other"
    if op == "exists":
        return "exists-" + dump(v)
    if op in ("numeric", "cidr", "wildcard", "equals-ignore-case", "exactly"):
        return op
    return "invalid:unknown-operator"


def pattern_tags(p):
    tags = set()

    def walk_obj(o, top):
        if not o.pairs:
            tags.add("invalid:empty-object")
        keys = [k for k, _ in o.pairs]
        if len(set(keys)) != len(keys):
            tags.add("duplicate-key")
        for k, v in o.pairs:
            if k == "$or":
                if isinstance(v, list) and len(v) >= 2 and all(isinstance(b, Obj) for b in v):
                    tags.add("$or-nested" if not top else "$or")
                    for b in v:
                        walk_obj(b, False)
                    continue
                tags.add("$or-not-array-of-objects")
            if isinstance(v, Obj):
                walk_obj(v, top)
            elif isinstance(v, list):
                if not v:
                    tags.add("invalid:empty-array")
                for m in v:
                    tags.add(matcher_tag(m))
            else:
                tags.add("invalid:field-not-array")

    if not isinstance(p, Obj):
        tags.add("invalid:pattern-not-object")
    else:
        walk_obj(p, True)
    return tags


def java_double_string_value(x):
    """The decimal value of Java's Double.toString(x) as specified since JDK 19:
    the shortest decimal that rounds to x, but with at least two significant
    digits, the one closest to x. (JDK 17's FloatingDecimal sometimes prints
    one more digit; the oracle's own answers are used to find those.)"""
    r = dec_of(repr(x))
    digits = "".join(str(d) for d in r.as_tuple().digits).strip("0")
    if len(digits) >= 2 or x == 0:
        return r
    exact = DEC.create_decimal(x)
    two = exact.quantize(decimal.Decimal(1).scaleb(exact.adjusted() - 1), rounding=decimal.ROUND_HALF_EVEN,
                         context=DEC)
    return two if float(two) == x else r


def representable(text):
    """event-ruler's ComparableNumber.generate rule: the literal's exact decimal
    value must be finite as a double and equal BigDecimal.valueOf(double),
    i.e. the value of the double's Double.toString."""
    try:
        x = float(text)
    except (ValueError, OverflowError):
        return False
    if not math.isfinite(x):
        return False
    return java_double_string_value(x) == dec_of(text)


def numbers_in(v, out=None):
    if out is None:
        out = []
    if isinstance(v, Num):
        out.append(v.text)
    elif isinstance(v, Obj):
        for _, x in v.pairs:
            numbers_in(x, out)
    elif isinstance(v, list):
        for x in v:
            numbers_in(x, out)
    return out


def operand_numbers(p):
    """Number literals in numeric and anything-but operands of a pattern (the
    places where event-ruler rejects a number it cannot compare)."""
    out = []
    if isinstance(p, Obj):
        for k, v in p.pairs:
            if k in ("numeric", "anything-but"):
                numbers_in(v, out)
            else:
                out.extend(operand_numbers(v))
    elif isinstance(p, list):
        for x in p:
            out.extend(operand_numbers(x))
    return out


# Field names JsonRuleCompiler refuses inside a $or branch (Constants.RESERVED_FIELD_NAMES_IN_OR_RELATIONSHIP)
RESERVED_IN_OR = {"exactly", "equals-ignore-case", "prefix", "suffix", "anything-but", "exists", "wildcard",
                  "numeric", "cidr", "=", "<", "<=", ">", ">=", "regex", "not-wildcard", "not-equals-ignore-case",
                  "date-after", "date-on-or-after", "date-before", "date-on-or-before", "in-date-range",
                  "ip-address-in-range", "ip-address-not-in-range"}


def leaf_paths(o, prefix=()):
    out = set()
    for k, v in o.pairs:
        if k == "$or":
            continue
        if isinstance(v, Obj):
            out |= leaf_paths(v, prefix + (k,))
        else:
            out.add(prefix + (k,))
    return out


def or_findings(p):
    """How a pattern uses $or: 'malformed' (not an array of two or more
    objects), 'reserved' (a branch uses an operator name as a field name),
    'override' (a branch names a path that an enclosing level names too)."""
    found = set()

    def walk(o, in_or, inherited):
        here = leaf_paths(o) | inherited
        for k, v in o.pairs:
            if k == "$or":
                if not (isinstance(v, list) and len(v) >= 2 and all(isinstance(b, Obj) for b in v)):
                    found.add("malformed")
                    continue
                for b in v:
                    if leaf_paths(b) & here:
                        found.add("override")
                    walk(b, True, here)
                continue
            if in_or and k in RESERVED_IN_OR:
                found.add("reserved")
            if isinstance(v, Obj):
                walk(v, in_or, {q[1:] for q in here if len(q) > 1 and q[0] == k})

    if isinstance(p, Obj):
        walk(p, False, set())
    return found


def has_duplicate_keys(v):
    if isinstance(v, Obj):
        keys = [k for k, _ in v.pairs]
        return len(set(keys)) != len(keys) or any(has_duplicate_keys(x) for _, x in v.pairs)
    if isinstance(v, list):
        return any(has_duplicate_keys(x) for x in v)
    return False


def empty_anything_but_set(p):
    """True if p holds {"anything-but": {OP: []}}."""
    if isinstance(p, Obj):
        for k, v in p.pairs:
            if k == "anything-but" and isinstance(v, Obj) and any(x == [] for _, x in v.pairs):
                return True
            if empty_anything_but_set(v):
                return True
    elif isinstance(p, list):
        return any(empty_anything_but_set(x) for x in p)
    return False


EIC_TAGS = {"equals-ignore-case", "prefix-equals-ignore-case", "suffix-equals-ignore-case",
            "anything-but-equals-ignore-case"}
NUMERIC_TAGS = {"numeric", "exact-number", "anything-but-number", "anything-but-list-number"}


def classify(pattern, event, oracle_answer, kms_answer, jdk_dependent=frozenset()):
    """Which known class a (preferably shrunk) disagreement belongs to; the
    first rule that applies wins."""
    tags = pattern_tags(pattern)
    if kind(oracle_answer) == "error" and not any(
            x in oracle_answer for x in ("JsonParseException", "IllegalArgumentException", "ParseException")):
        return "event-ruler-internal-exception"
    if jdk_dependent & set(numbers_in(pattern) + numbers_in(event)):
        return "jdk17-double-tostring"
    if "Cannot compare number" in oracle_answer or not all(representable(t) for t in operand_numbers(pattern)):
        return "number-not-representable-in-pattern"
    if tags & NUMERIC_TAGS and not all(representable(t) for t in numbers_in(event)):
        return "number-not-representable-in-event"
    if has_duplicate_keys(pattern):
        return "duplicate-keys-in-pattern"
    if has_duplicate_keys(event):
        return "duplicate-keys-in-event"
    if any(t.startswith("anything-but-") for t in tags) and empty_anything_but_set(pattern):
        return "anything-but-empty-list"
    ors = or_findings(pattern)
    for finding in ("malformed", "reserved", "override"):
        if finding in ors:
            return {"malformed": "$or-not-array-of-objects", "reserved": "$or-reserved-field-name",
                    "override": "$or-branch-overrides-field"}[finding]
    if tags & {"cidr", "exact-ip"}:
        return "cidr-and-ip"
    if tags & EIC_TAGS:
        return "equals-ignore-case"
    if tags & {"exact-number", "anything-but-number", "anything-but-list-number"}:
        return "number-by-value"
    return "other:" + "+".join(sorted(tags))


def jdk_dependent_numbers(runner, cases):
    """Number literals whose acceptance by event-ruler (asked through the
    oracle) differs from the JDK 19+ rule in representable(): answers that
    depend on the JDK event-ruler runs on."""
    literals = sorted({t for p, e in cases for t in numbers_in(p) + numbers_in(e)})
    probes = ['{"pattern":{"a":[{"numeric":["=",%s]}]},"event":{}}' % t for t in literals]
    answers = runner.oracle.run(probes) if probes else []
    return frozenset(t for t, a in zip(literals, answers) if (kind(a) != "error") != representable(t))


# ---------------------------------------------------------------------------
# Running both programs
# ---------------------------------------------------------------------------

def kind(answer):
    if answer.startswith("error"):
        return "error"
    return answer


def case_line(pattern, event):
    return '{"pattern":' + dump(pattern) + ',"event":' + dump(event) + "}"


def run_batch(cmd, lines, label):
    """Answers of a batch program to lines; a line that crashes it is answered
    'crash' and the rest is run again in a fresh process."""
    answers = []
    while len(answers) < len(lines):
        rest = lines[len(answers):]
        data = ("\n".join(rest) + "\n").encode("utf-8")
        try:
            proc = subprocess.run(cmd, input=data, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  timeout=TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            raise SetupError("%s did not answer %d lines within %d s" % (label, len(rest), TIMEOUT_SECONDS))
        except OSError as exc:
            raise SetupError("cannot run %s: %s" % (label, exc))
        out = proc.stdout.decode("utf-8", errors="replace").split("\n")
        if out and out[-1] == "":
            out.pop()
        if len(out) >= len(rest):
            answers.extend(a.rstrip("\r") for a in out[:len(rest)])
            break
        answers.extend(a.rstrip("\r") for a in out)
        answers.append("crash: exit status %d" % proc.returncode)
        if not out and proc.returncode not in (0, 1) and len(answers) == 1 and len(lines) > 1:
            err = proc.stderr.decode("utf-8", errors="replace").strip().splitlines()[-3:]
            print("%s: no output at all (status %d): %s" % (label, proc.returncode, " | ".join(err)),
                  file=sys.stderr)
    return answers


class SetupError(Exception):
    pass


class Persistent:
    """One long-lived batch process (the oracle: a JVM starts slowly) that is
    fed batch after batch; it answers each line and flushes when its input
    runs dry, so a batch's answers can be read back before the next batch."""

    def __init__(self, cmd, label):
        self.cmd, self.label, self.proc = cmd, label, None

    def run(self, lines):
        if self.proc is None:
            try:
                self.proc = subprocess.Popen(self.cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                             stderr=subprocess.DEVNULL)
            except OSError as exc:
                raise SetupError("cannot run %s: %s" % (self.label, exc))
        data = ("\n".join(lines) + "\n").encode("utf-8")
        failure = []

        def feed():
            try:
                self.proc.stdin.write(data)
                self.proc.stdin.flush()
            except OSError as exc:
                failure.append(exc)
        writer = threading.Thread(target=feed, daemon=True)
        writer.start()
        answers = []
        for _ in lines:
            raw = self.proc.stdout.readline()
            if not raw:
                raise SetupError("%s stopped after %d of %d lines (status %s)"
                                 % (self.label, len(answers), len(lines), self.proc.poll()))
            answers.append(raw.decode("utf-8", errors="replace").rstrip("\r\n"))
        writer.join()
        if failure:
            raise SetupError("%s: cannot write: %s" % (self.label, failure[0]))
        return answers

    def close(self):
        if self.proc is not None:
            self.proc.stdin.close()
            self.proc.wait()
            self.proc = None


class Runner:
    """kmsrouter runs afresh for each batch (a crash costs one line); the
    oracle stays up between batches."""

    def __init__(self, kmsrouter, oracle):
        self.kms_cmd = [kmsrouter, "test-pattern", "--batch"]
        self.oracle = Persistent([oracle, "--mode", "subrules"], "oracle")
        self.seconds = {"kmsrouter": 0.0, "oracle": 0.0}

    def run(self, lines):
        t = time.monotonic()
        kms = run_batch(self.kms_cmd, lines, "kmsrouter")
        t2 = time.monotonic()
        ora = self.oracle.run(lines)
        t3 = time.monotonic()
        self.seconds["kmsrouter"] += t2 - t
        self.seconds["oracle"] += t3 - t2
        return ora, kms

    def close(self):
        self.oracle.close()


# ---------------------------------------------------------------------------
# Shrinking
# ---------------------------------------------------------------------------

def variants(v):
    """One-step simplifications of v, the largest first."""
    if isinstance(v, Obj):
        for i in range(len(v.pairs)):
            yield Obj(v.pairs[:i] + v.pairs[i + 1:])
        for i, (k, x) in enumerate(v.pairs):
            # a $or replaced by one of its branches
            if k == "$or" and isinstance(x, list):
                others = {key for key, _ in v.pairs}
                for b in x:
                    if isinstance(b, Obj) and not others & {key for key, _ in b.pairs}:
                        yield Obj(v.pairs[:i] + b.pairs + v.pairs[i + 1:])
        for i, (k, x) in enumerate(v.pairs):
            for w in variants(x):
                yield Obj(v.pairs[:i] + [(k, w)] + v.pairs[i + 1:])
        for i, (k, x) in enumerate(v.pairs):
            short = _shorter_key(k)
            if short is not None:
                yield Obj(v.pairs[:i] + [(short, x)] + v.pairs[i + 1:])
    elif isinstance(v, list):
        for i in range(len(v)):
            yield v[:i] + v[i + 1:]
        for i, x in enumerate(v):
            for w in variants(x):
                yield v[:i] + [w] + v[i + 1:]
    elif isinstance(v, Str):
        s = v.value
        if v.style != "p":
            yield Str(s, "p")
        if len(s) > 1:
            yield Str(s[:len(s) // 2], v.style)
            yield Str(s[len(s) // 2:], v.style)
        if 1 < len(s) <= 24:
            for i in range(len(s)):
                yield Str(s[:i] + s[i + 1:], v.style)
    elif isinstance(v, Num):
        t = v.text
        if t not in ("0", "1"):
            yield Num("0")
            yield Num("1")


def _shorter_key(k):
    """A simpler spelling of a field name (operator names are kept)."""
    if k.startswith("$") or k in ("prefix", "suffix", "numeric", "exists", "anything-but", "cidr",
                                   "wildcard", "equals-ignore-case", "exactly") or len(k) <= 1:
        return None
    return "a" if k != "a" else None


def pattern_keys(v, out=None):
    """Every object key anywhere in v."""
    if out is None:
        out = set()
    if isinstance(v, Obj):
        for k, x in v.pairs:
            out.add(k)
            pattern_keys(x, out)
    elif isinstance(v, list):
        for x in v:
            pattern_keys(x, out)
    return out


def trim_event(v, keys, keep=None):
    """v without the object members whose names the pattern never uses
    (event-ruler does not even read those); keep(), when given, spares some."""
    if isinstance(v, Obj):
        return Obj([(k, trim_event(x, keys, keep)) for k, x in v.pairs
                    if k in keys or (keep is not None and keep())])
    if isinstance(v, list):
        return [trim_event(x, keys, keep) for x in v]
    return v


def case_candidates(pattern, event):
    trimmed = trim_event(event, pattern_keys(pattern))
    if dump(trimmed) != dump(event):
        yield pattern, trimmed
    for e in variants(event):
        yield pattern, e
    for p in variants(pattern):
        yield p, event


def shrink_all(runner, cases, max_rounds=400):
    """Greedy shrinking of every case at once. cases: list of (pattern, event,
    oracle_answer, kms_answer); returns them shrunk, in the same order. A
    candidate is kept when both programs still give the same two answer
    classes. Each round sends one batch holding, for every unfinished case, the
    next few candidates after its cursor; the chunk grows while candidates
    fail and shrinks after a success. A case is done after a full pass over
    its candidates without a success."""
    state = [{"p": p, "e": e, "oa": oa, "ka": ka, "cursor": 0, "chunk": 4,
              "progress": False, "done": False} for p, e, oa, ka in cases]
    for _ in range(max_rounds):
        batch, owners = [], []
        for idx, st in enumerate(state):
            if st["done"]:
                continue
            gen = case_candidates(st["p"], st["e"])
            cands = list(itertools.islice(gen, st["cursor"], st["cursor"] + st["chunk"]))
            st["at_end"] = len(cands) < st["chunk"]
            st["cands"] = cands
            for c in cands:
                batch.append(case_line(*c))
                owners.append(idx)
        if not batch and all(st["done"] for st in state):
            break
        ora, kms = runner.run(batch) if batch else ([], [])
        results = {}
        for i, owner in enumerate(owners):
            results.setdefault(owner, []).append((ora[i], kms[i]))
        for idx, st in enumerate(state):
            if st["done"]:
                continue
            res = results.get(idx, [])
            for j, (oa, ka) in enumerate(res):
                if kind(oa) == kind(st["oa"]) and kind(ka) == kind(st["ka"]):
                    st["p"], st["e"] = st["cands"][j]
                    st["oa"], st["ka"] = oa, ka
                    st["cursor"] += j
                    st["chunk"] = max(4, st["chunk"] // 2)
                    st["progress"] = True
                    break
            else:
                st["cursor"] += len(res)
                st["chunk"] = min(512, st["chunk"] * 2)
                if st["at_end"]:
                    if st["progress"]:
                        st["cursor"], st["chunk"], st["progress"] = 0, 4, False
                    else:
                        st["done"] = True
            st.pop("cands", None)
    return [(st["p"], st["e"], st["oa"], st["ka"]) for st in state]


# ---------------------------------------------------------------------------
# Recording
# ---------------------------------------------------------------------------

def expected_of(answer):
    k = kind(answer)
    return k if k in ("true", "false") else '"error"'


def record_line(name, pattern, event, answer):
    return ('{"name":' + json.dumps(name) + ',"pattern":' + dump(pattern) + ',"event":' + dump(event)
            + ',"expected":' + expected_of(answer) + "}")


def primary_tag(tags):
    order = ["$or-not-array-of-objects", "$or-nested", "$or", "cidr", "exact-ip", "wildcard",
             "equals-ignore-case", "prefix-equals-ignore-case", "suffix-equals-ignore-case", "numeric"]
    invalid = sorted(t for t in tags if t.startswith("invalid:"))
    if invalid:
        return invalid[0].replace("invalid:", "invalid-")
    for t in order:
        if t in tags:
            return t.replace("$", "")
    return sorted(tags)[0].replace("$", "") if tags else "none"


# ---------------------------------------------------------------------------
# Reports
# ---------------------------------------------------------------------------

def print_coverage(tags, ora, bad):
    per_tag = {}
    for i, ts in enumerate(tags):
        for t in ts:
            n = per_tag.setdefault(t, [0, 0, 0])
            n[0] += 1
            n[1] += kind(ora[i]) == "true"
    for i in bad:
        for t in tags[i]:
            per_tag[t][2] += 1
    print("operators: cases using it, of which event-ruler true, disagreements"
          " (a case counts under every operator it uses):")
    for t in sorted(per_tag):
        n = per_tag[t]
        print("  %-36s %6d %6d %6d" % (t, n[0], n[1], n[2]))


def print_disagreements(bad, ora, kms, lines, show):
    pairs = {}
    for i in bad:
        key = "event-ruler %s, kmsrouter %s" % (kind(ora[i]), kind(kms[i]))
        pairs[key] = pairs.get(key, 0) + 1
    print("disagreements by answer:")
    for k in sorted(pairs, key=lambda k: (-pairs[k], k)):
        print("  %-45s %d" % (k, pairs[k]))
    if show:
        print("first disagreements:")
    for i in bad[:show]:
        print("  case %d: event-ruler %s | kmsrouter %s" % (i, ora[i], kms[i]))
        print("    " + lines[i])


def non_ascii_note(line):
    """Names of the non-ASCII characters of a line, which look alike in print."""
    names = []
    for ch in sorted(set(line)):
        if ord(ch) > 0x7E and len(names) < 12:
            names.append("U+%04X %s" % (ord(ch), unicodedata.name(ch, "?")))
    return ("      (" + "; ".join(names) + ")") if names else ""


def print_shrunk(shrunk, jdk_dependent):
    groups = {}
    for p, e, oa, ka in shrunk:
        g = groups.setdefault(classify(p, e, oa, ka, jdk_dependent), {})
        line = case_line(p, e)
        if line not in g:
            g[line] = [0, oa, ka]
        g[line][0] += 1
    total = {cls: sum(x[0] for x in g.values()) for cls, g in groups.items()}
    print("disagreements by class (after shrinking):")
    for cls in sorted(groups, key=lambda c: (-total[c], c)):
        print("  %-44s %5d (%d distinct shrunk cases)" % (cls, total[cls], len(groups[cls])))
    print("shrunk cases, by class (xN: how many disagreements shrank to it):")
    for cls in sorted(groups, key=lambda c: (-total[c], c)):
        print("== " + cls)
        for line, (count, oa, ka) in sorted(groups[cls].items(), key=lambda kv: (-kv[1][0], len(kv[0]), kv[0])):
            print("  x%d  event-ruler %s | kmsrouter %s" % (count, oa, ka))
            print("    " + line)
            note = non_ascii_note(line)
            if note:
                print(note)


def write_record(path, args, runner, cases, tags, shrunk, jdk_dependent):
    """Every case, its event trimmed of most members the pattern never names
    (which event-ruler never reads), with event-ruler's answer to the line as
    written; then the distinct shrunk disagreements. Cases holding a number
    whose answer depends on the JDK event-ruler runs on are left out."""
    rrng = random.Random("record-%d" % args.seed)
    entries = []
    left_out = 0

    def jdk_free(p, e):
        return not (jdk_dependent & set(numbers_in(p) + numbers_in(e)))
    for i, (p, e) in enumerate(cases):
        e2 = trim_event(e, pattern_keys(p), keep=lambda: rrng.random() < 0.05)
        if jdk_free(p, e2):
            entries.append(("s%d-%05d-%s" % (args.seed, i, primary_tag(tags[i])), p, e2))
        else:
            left_out += 1
    seen = set()
    for j, (p, e, oa, ka) in enumerate(shrunk):
        line = case_line(p, e)
        if line not in seen and jdk_free(p, e):
            seen.add(line)
            cls = classify(p, e, oa, ka, jdk_dependent).split(":")[0].replace("$", "")
            entries.append(("s%d-shrunk-%04d-%s" % (args.seed, j, cls), p, e))
    ora, kms = runner.run([case_line(p, e) for _, p, e in entries])
    with open(path, "w", encoding="utf-8") as out:
        out.write("# Generated by: tests/conformance/differential.py --seed %d --cases %d%s --record\n"
                  % (args.seed, args.cases, " --shrink" if args.shrink else ""))
        out.write("# expected is aws/event-ruler's answer (batch oracle, --mode subrules): true, false or \"error\".\n")
        out.write("# Number literals and string escapes are spelled as generated: never re-serialize these lines.\n")
        if args.note:
            out.write("# " + args.note + "\n")
        for (name, p, e), a in zip(entries, ora):
            out.write(record_line(name, p, e, a) + "\n")
    agree = sum(kind(a) == kind(b) for a, b in zip(ora, kms))
    print("recorded %d cases (%d shrunk; %d left out as JDK-dependent) in %s; kmsrouter agrees on %d/%d of them"
          % (len(entries), len(seen), left_out, path, agree, len(entries)))


# ---------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------

def main(argv):
    ap = argparse.ArgumentParser(description="kmsrouter against aws/event-ruler, on random patterns and events.")
    ap.add_argument("--kmsrouter", required=True, help="path to the kmsrouter binary")
    ap.add_argument("--oracle", required=True, help="path to the event-ruler batch oracle (build.sh's OUT/oracle)")
    ap.add_argument("--seed", type=int, required=True)
    ap.add_argument("--cases", type=int, default=20000)
    ap.add_argument("--record", metavar="FILE", help="write every case with event-ruler's answer as a conformance file")
    ap.add_argument("--shrink", action="store_true", help="shrink each disagreement to a minimal case")
    ap.add_argument("--note", help="a comment line for the header of the --record file (say which event-ruler and JDK)")
    ap.add_argument("--show", type=int, default=10, help="how many disagreements to print unshrunk (default 10)")
    args = ap.parse_args(argv[1:])

    for label, path in (("kmsrouter", args.kmsrouter), ("oracle", args.oracle)):
        if not os.path.isfile(path) or not os.access(path, os.X_OK):
            print("differential.py: %s is not an executable file: %s" % (label, path), file=sys.stderr)
            return 2

    started = time.monotonic()
    rng = random.Random(args.seed)
    cases = [gen_case(rng) for _ in range(args.cases)]
    lines = [case_line(p, e) for p, e in cases]
    tags = [pattern_tags(p) for p, _ in cases]
    generated = time.monotonic()
    runner = Runner(args.kmsrouter, args.oracle)
    try:
        ora, kms = runner.run(lines)
        bad = [i for i in range(len(cases)) if kind(ora[i]) != kind(kms[i])]
        print("seed %d: %d cases generated in %.1f s; kmsrouter %.1f s, event-ruler %.1f s"
              % (args.seed, len(cases), generated - started, runner.seconds["kmsrouter"], runner.seconds["oracle"]))
        counts = {}
        for a in ora:
            counts[kind(a)] = counts.get(kind(a), 0) + 1
        print("event-ruler answers: " + ", ".join("%s %d" % (k, counts[k]) for k in sorted(counts)))
        print_coverage(tags, ora, bad)
        jdk_dependent = jdk_dependent_numbers(runner, cases)
        if jdk_dependent:
            print("number literals event-ruler (on this JDK) accepts or rejects unlike the JDK 19+ Double.toString"
                  " rule: " + " ".join(sorted(jdk_dependent)))
        if bad:
            print_disagreements(bad, ora, kms, lines, args.show)
        shrunk = []
        if bad and args.shrink:
            t = time.monotonic()
            shrunk = shrink_all(runner, [(cases[i][0], cases[i][1], ora[i], kms[i]) for i in bad])
            print("shrunk %d disagreements in %.1f s" % (len(bad), time.monotonic() - t))
            print_shrunk(shrunk, jdk_dependent)
        if args.record:
            write_record(args.record, args, runner, cases, tags, shrunk, jdk_dependent)
    except SetupError as exc:
        print("differential.py: " + str(exc), file=sys.stderr)
        return 2
    finally:
        runner.close()
    print("agree %d/%d" % (len(cases) - len(bad), len(cases)))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
