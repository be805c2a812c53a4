#!/usr/bin/env python3
"""Generate the input of bench/match.sh (stdlib only).

    python3 bench/match_gen.py OUTDIR EVENTS [PREFIX]

Writes into OUTDIR:
  events.jsonl              EVENTS EventBridge events, one per line, unique "id"s
  events-head.jsonl         the first PREFIX (default 100,000) of them, for a
                            shorter jq reference run (only if PREFIX < EVENTS)
  config-<R>.json           kmsrouter config with R rules, R in 10, 1000, 10000
  config-<R>.expected.json  what `kmsrouter match` must report for that config
  jqmap-<R>.json            {"<detail-type>|<key-id>": [rule names]} for jq

Event mix (the shapes of tests/data/events/*.json):
  30% KMS CMK Rotation (half the short scheduled shape, half the
      ON_DEMAND shape with key-origin / key-material ids)
  30% KMS CMK Deletion
  30% KMS Imported Key Material Expiration
  10% AWS API Call via CloudTrail (kms Decrypt, ~1.9 KB, padded with a real
      looking userIdentity/sessionContext, encryptionContext, userAgent,
      tlsDetails...; the key id is in detail.requestParameters.keyId; one in
      eight of them is the KMSInvalidStateException "pending deletion" shape)
Key ids: 5,000 random UUID-shaped ids.  Key choice: with probability 1/2 one
of the "hot" keys of the event's detail-type (3 per KMS type, 1 for
CloudTrail: 10 hot (detail-type, key) pairs of ~5% of the events each), else
uniform over the 5,000 keys.

Rule sets (each rule = one detail-type + one key id, order shuffled):
  10     rules: the 10 hot pairs                                ~50% match
  1,000  rules: 9 hot pairs + 1 duplicate of a hot pair (those
         events match two rules) + 990 other pairs             ~48% match
  10,000 rules: 5 hot pairs + 1 duplicate + 9,994 other pairs
         (10 of them duplicated) spread over the 4 detail-types ~50% match
The generator classifies every event itself and writes the expected counts.
Everything is seeded: the events of a smaller EVENTS are a prefix of a
larger run's, and the rule sets do not depend on EVENTS.
"""

import calendar
import json
import os
import random
import sys
import time
import zlib

SEED = 20240301
NKEYS = 5000
RULESETS = (10, 1000, 10000)

ROT = "KMS CMK Rotation"
DEL = "KMS CMK Deletion"
EXP = "KMS Imported Key Material Expiration"
CT = "AWS API Call via CloudTrail"
TYPES = (ROT, DEL, EXP, CT)
# cumulative probabilities of ROT, DEL, EXP; the rest (10%) is CT
P_ROT, P_DEL, P_EXP = 0.30, 0.60, 0.90
HOT_PER_TYPE = {ROT: 3, DEL: 3, EXP: 3, CT: 1}
P_HOT = 0.5

REGIONS = ("us-east-1", "us-east-2", "us-west-2", "eu-west-1", "eu-central-1",
           "ap-southeast-2", "ap-northeast-1", "sa-east-1")


def uuid_like(rng):
    v = rng.getrandbits(128)
    h = "%032x" % v
    return "%s-%s-%s-%s-%s" % (h[0:8], h[8:12], h[12:16], h[16:20], h[20:32])


def uuid4_like(rng):
    h = "%032x" % rng.getrandbits(128)
    return "%s-%s-4%s-%x%s-%s" % (h[0:8], h[8:12], h[13:16],
                                  8 | (int(h[16], 16) & 3), h[17:20], h[20:32])


def main():
    if len(sys.argv) < 3:
        sys.exit("usage: match_gen.py OUTDIR EVENTS [PREFIX]")
    outdir = sys.argv[1]
    nevents = int(sys.argv[2])
    prefix = int(sys.argv[3]) if len(sys.argv) > 3 else 100000
    prefix = min(prefix, nevents)
    os.makedirs(outdir, exist_ok=True)
    t_start = time.time()

    rng = random.Random(SEED)
    accounts = ["%012d" % rng.randrange(10**11, 10**12) for _ in range(12)]
    keys = []
    seen = set()
    while len(keys) < NKEYS:
        k = uuid_like(rng)
        if k not in seen:
            seen.add(k)
            keys.append(k)
    # each key lives in one account / region
    key_home = [(rng.choice(REGIONS), rng.choice(accounts)) for _ in keys]
    key_index = {k: i for i, k in enumerate(keys)}

    hot_keys = rng.sample(keys, sum(HOT_PER_TYPE.values()))
    hot = {}
    pos = 0
    for t in TYPES:
        hot[t] = hot_keys[pos:pos + HOT_PER_TYPE[t]]
        pos += HOT_PER_TYPE[t]
    hot_pairs = [(t, k) for t in TYPES for k in hot[t]]
    hot_set = set(hot_pairs)

    # ---------------------------------------------------------------- rules
    def cold_pairs(n, taken):
        out = []
        while len(out) < n:
            p = (rng.choice(TYPES), rng.choice(keys))
            if p in hot_set or p in taken:
                continue
            taken.add(p)
            out.append(p)
        return out

    rulesets = {}
    # 10: the hot pairs
    rulesets[10] = list(hot_pairs)
    # 1,000: 9 hot + 1 duplicate of a hot one + 990 others
    h = rng.sample(hot_pairs, 9)
    rulesets[1000] = h + [h[0]] + cold_pairs(990, set())
    # 10,000: 5 hot + 1 duplicate + 9,984 others + 10 duplicates of others
    h = rng.sample(hot_pairs, 5)
    c = cold_pairs(9984, set())
    rulesets[10000] = h + [h[0]] + c + rng.sample(c, 10)

    lookup = {}          # R -> {(type, key): [rule names]}
    for nrules, pairs in rulesets.items():
        assert len(pairs) == nrules, (nrules, len(pairs))
        pairs = list(pairs)
        rng.shuffle(pairs)
        rules = []
        m = {}
        for i, (t, k) in enumerate(pairs):
            name = "r%d" % (i + 1)
            if t == CT:
                detail = {"requestParameters": {"keyId": [k]}}
            else:
                detail = {"key-id": [k]}
            rules.append({"name": name,
                          "pattern": {"detail-type": [t], "detail": detail},
                          "targets": ["out"]})
            m.setdefault((t, k), []).append(name)
        lookup[nrules] = m
        cfg = os.path.join(outdir, "config-%d.json" % nrules)
        with open(cfg, "w") as f:
            f.write('{"sinks":[{"name":"out","type":"log","path":"-"}],\n'
                    ' "rules":[\n')
            f.write(",\n".join("  " + json.dumps(r, separators=(",", ":"))
                               for r in rules))
            f.write("\n]}\n")
        with open(os.path.join(outdir, "jqmap-%d.json" % nrules), "w") as f:
            json.dump({"%s|%s" % tk: names for tk, names in m.items()}, f,
                      separators=(",", ":"))

    # --------------------------------------------------------------- events
    erng = random.Random(SEED + 1)
    rnd = erng.random
    getrandbits = erng.getrandbits
    randrange = erng.randrange

    roles = [("app", "AROA%s" % "".join(erng.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567") for _ in range(17))),
             ("lambda-order-processor-role", "AROA%s" % "".join(erng.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567") for _ in range(17))),
             ("ecs-task-payments-api", "AROA%s" % "".join(erng.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567") for _ in range(17))),
             ("ec2-batch-worker", "AROA%s" % "".join(erng.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567") for _ in range(17)))]
    agents = [
        "aws-sdk-java/1.12.470 Linux/5.10.184-175.731.amzn2.x86_64 OpenJDK_64-Bit_Server_VM/17.0.7+7-LTS java/17.0.7 vendor/Amazon.com_Inc. cfg/retry-mode/standard",
        "aws-sdk-go-v2/1.24.1 os/linux lang/go#1.21.6 md/GOOS#linux md/GOARCH#amd64 api/kms#1.27.9 ft/s3-transfer",
        "Boto3/1.34.34 md/Botocore#1.34.34 ua/2.0 os/linux#5.10.205-195.807.amzn2.x86_64 md/arch#x86_64 lang/python#3.12.1 md/pyimpl#CPython exec-env/AWS_Lambda_python3.12 cfg/retry-mode#legacy Botocore/1.34.34",
        "aws-sdk-js/3.515.0 ua/2.0 os/linux#5.10.209-198.858.amzn2.x86_64 lang/js md/nodejs#20.11.0 api/kms#3.515.0 exec-env/AWS_ECS_FARGATE",
    ]
    # encryption contexts: (format with account/region/n) of various services
    contexts = [
        '"aws:lambda:FunctionArn":"arn:aws:lambda:%(r)s:%(a)s:function:order-processor-%(n)d","aws:lambda:Environment":"production","deployment":"blue-green-%(n)d"',
        '"aws:s3:arn":"arn:aws:s3:::data-lake-raw-%(a)s/landing/year=2024/month=03/day=01/part-%(n)05d.parquet","aws-crypto-public-key":"AlBhY2tLZXlFeGFtcGxlUHVibGljS2V5TWF0ZXJpYWxCYXNlNjRFbmNvZGVkU3RyaW5nPT0="',
        '"aws:ebs:id":"vol-0%(n)016x","aws:ebs:snapshot":"snap-0%(n)016x","Name":"batch-worker-scratch-%(n)d"',
        '"SecretARN":"arn:aws:secretsmanager:%(r)s:%(a)s:secret:prod/payments/db-credentials-%(n)d","SecretVersionId":"EXAMPLE1-90ab-cdef-fedc-ba987%(n)07d"',
        '"PARAMETER_ARN":"arn:aws:ssm:%(r)s:%(a)s:parameter/prod/service-%(n)d/config/api-signing-key","aws:ssm:parameterType":"SecureString"',
    ]
    ips = ["10.%d.%d.%d" % (erng.randrange(256), erng.randrange(256), erng.randrange(1, 255)) for _ in range(64)]

    kms_common = ('{"version":"0","id":"%s","detail-type":"%s","source":"aws.kms",'
                  '"account":"%s","time":"%s","region":"%s","resources":'
                  '["arn:aws:kms:%s:%s:key/%s"],"detail":{"key-id":"%s"')
    rot_od_tail = (',"key-origin":"AWS_KMS","rotation-type":"ON_DEMAND",'
                   '"previous-key-material-id":"%064x","current-key-material-id":"%064x"}}\n')
    ct_fmt = (
        '{"version":"0","id":"%(id)s","detail-type":"AWS API Call via CloudTrail","source":"aws.kms",'
        '"account":"%(a)s","time":"%(t)s","region":"%(r)s","resources":[],"detail":{'
        '"eventVersion":"1.09","userIdentity":{"type":"AssumedRole","principalId":"%(pid)s:%(sess)s",'
        '"arn":"arn:aws:sts::%(a)s:assumed-role/%(role)s/%(sess)s","accountId":"%(a)s",'
        '"accessKeyId":"ASIA%(akid)s","sessionContext":{"sessionIssuer":{"type":"Role",'
        '"principalId":"%(pid)s","arn":"arn:aws:iam::%(a)s:role/%(role)s","accountId":"%(a)s",'
        '"userName":"%(role)s"},"attributes":{"creationDate":"%(t)s",'
        '"mfaAuthenticated":"false"}}},"eventTime":"%(t)s","eventSource":"kms.amazonaws.com",'
        '"eventName":"Decrypt","awsRegion":"%(r)s","sourceIPAddress":"%(ip)s","userAgent":"%(ua)s",'
        '%(err)s"requestParameters":{"keyId":"%(k)s","encryptionAlgorithm":"SYMMETRIC_DEFAULT",'
        '"encryptionContext":{%(ctx)s}},"responseElements":null,"requestID":"%(rid)s",'
        '"eventID":"%(eid)s","readOnly":true,"resources":[{"accountId":"%(a)s","type":"AWS::KMS::Key",'
        '"ARN":"arn:aws:kms:%(r)s:%(a)s:key/%(k)s"}],"eventType":"AwsApiCall","managementEvent":true,'
        '"recipientAccountId":"%(a)s","eventCategory":"Management","tlsDetails":{"tlsVersion":"TLSv1.3",'
        '"cipherSuite":"TLS_AES_128_GCM_SHA256","clientProvidedHostHeader":"kms.%(r)s.amazonaws.com"}}}\n')
    err_fmt = ('"errorCode":"KMSInvalidStateException","errorMessage":"arn:aws:kms:%s:%s:key/%s '
               'is pending deletion.",')
    akid_chars = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"

    t0 = calendar.timegm((2024, 3, 1, 0, 0, 0, 0, 0, 0))
    gmtime = time.gmtime
    strftime = time.strftime
    hot_rot, hot_del, hot_exp, hot_ct = hot[ROT], hot[DEL], hot[EXP], hot[CT]

    # expected results
    exp = {}
    for nrules in RULESETS:
        exp[nrules] = {"matched": 0, "hits": 0, "per_rule": {},
                       "prefix_matched": 0, "prefix_hits": 0}
    lk10, lk1k, lk10k = lookup[10], lookup[1000], lookup[10000]
    lks = ((exp[10], lk10), (exp[1000], lk1k), (exp[10000], lk10k))
    counts = {t: 0 for t in TYPES}
    counts["rotation-on-demand"] = 0
    counts["ct-pending-deletion"] = 0
    id_sum = 0
    crc32 = zlib.crc32

    events_path = os.path.join(outdir, "events.jsonl")
    head_path = os.path.join(outdir, "events-head.jsonl")
    if prefix >= nevents:
        head_path = events_path     # the prefix is the whole file
    f = open(events_path, "w")
    fh = open(head_path, "w") if head_path != events_path else None
    buf = []
    nbytes = 0
    for i in range(nevents):
        # unique id: uuid shaped, last group a bijection of i
        r = getrandbits(76)
        eid = "%08x-%04x-4%03x-%04x-%012x" % (
            r >> 44, (r >> 28) & 0xffff, (r >> 16) & 0xfff,
            0x8000 | ((r >> 2) & 0x3fff), (i * 0x9E3779B97F4B + 0x5DEECE66D) & 0xffffffffffff)
        ts = strftime("%Y-%m-%dT%H:%M:%SZ", gmtime(t0 + 3 * i))
        x = rnd()
        if x < P_ROT:
            t = ROT
            hk = hot_rot
        elif x < P_DEL:
            t = DEL
            hk = hot_del
        elif x < P_EXP:
            t = EXP
            hk = hot_exp
        else:
            t = CT
            hk = hot_ct
        if rnd() < P_HOT:
            k = hk[randrange(len(hk))]
        else:
            k = keys[randrange(NKEYS)]
        region, acct = key_home[key_index[k]]
        counts[t] += 1
        if t is CT:
            n = randrange(100000)
            role, pid = roles[n & 3]
            if n % 8 == 0:
                err = err_fmt % (region, acct, k)
                counts["ct-pending-deletion"] += 1
            else:
                err = ""
            ab = getrandbits(80)
            line = ct_fmt % {
                "id": eid, "a": acct, "t": ts, "r": region, "pid": pid,
                "sess": "%s-%d" % (role[:12], n), "role": role,
                "akid": "".join(akid_chars[(ab >> (5 * j)) & 31] for j in range(16)),
                "ip": ips[n & 63], "ua": agents[(n >> 2) & 3], "err": err,
                "k": k, "ctx": contexts[n % 5] % {"r": region, "a": acct, "n": n},
                "rid": uuid4_like(erng), "eid": uuid4_like(erng)}
        else:
            line = kms_common % (eid, t, acct, ts, region, region, acct, k, k)
            if t is ROT and rnd() < 0.5:
                line += rot_od_tail % (getrandbits(256), getrandbits(256))
                counts["rotation-on-demand"] += 1
            else:
                line += "}}\n"
        buf.append(line)
        id_sum += crc32(eid.encode())
        pair = (t, k)
        for e, lk in lks:
            names = lk.get(pair)
            if names:
                e["matched"] += 1
                e["hits"] += len(names)
                pr = e["per_rule"]
                for nm in names:
                    pr[nm] = pr.get(nm, 0) + 1
        if i + 1 == prefix:
            for e, _ in lks:
                e["prefix_matched"] = e["matched"]
                e["prefix_hits"] = e["hits"]
        if len(buf) >= 4096 or i + 1 == prefix:
            s = "".join(buf)
            nbytes += len(s)
            f.write(s)
            if fh is not None and i < prefix:
                fh.write(s)
            buf = []
    if buf:
        s = "".join(buf)
        nbytes += len(s)
        f.write(s)
    f.close()
    if fh is not None:
        fh.close()

    gen_seconds = time.time() - t_start
    for nrules in RULESETS:
        e = exp[nrules]
        doc = {
            "events": nevents,
            "rules": nrules,
            "matched_events": e["matched"],
            "rule_hits": e["hits"],
            "prefix_events": prefix,
            "prefix_matched_events": e["prefix_matched"],
            "prefix_rule_hits": e["prefix_hits"],
            "id_crc32_sum": id_sum,
            "per_rule": e["per_rule"],
        }
        with open(os.path.join(outdir, "config-%d.expected.json" % nrules), "w") as fo:
            json.dump(doc, fo, separators=(",", ":"))
    info = {"events": nevents, "bytes": nbytes, "prefix_events": prefix,
            "prefix_file": os.path.basename(head_path),
            "prefix_bytes": os.path.getsize(head_path),
            "generation_seconds": round(gen_seconds, 2), "counts": counts}
    with open(os.path.join(outdir, "info.json"), "w") as fo:
        json.dump(info, fo, indent=1)
    print("generated %d events, %.1f MB, in %.1f s (%s)" % (
        nevents, nbytes / 1e6, gen_seconds,
        ", ".join("%s: %d" % kv for kv in counts.items())), file=sys.stderr)
    for nrules in RULESETS:
        print("  %5d rules: %d events expected to match (%.1f%%), %d rule hits" % (
            nrules, exp[nrules]["matched"], 100.0 * exp[nrules]["matched"] / max(nevents, 1),
            exp[nrules]["hits"]), file=sys.stderr)


if __name__ == "__main__":
    main()
