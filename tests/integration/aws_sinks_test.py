#!/usr/bin/env python3
"""The AWS sinks against moto_server (real processes on loopback), with SigV4 and IAM checks on
where moto makes them (SQS), and a fault-injecting proxy in front of moto for throttling, 5xx
and per-entry failures.

    python3 tests/integration/aws_sinks_test.py PATH_TO_KMSROUTER [name-filter]
    python3 tests/integration/aws_sinks_test.py --list

Skips (exit 77) when moto_server or boto3 is missing, unless KR_REQUIRE_MOTO=1.
"""
import base64
import glob
import json
import os
import stat
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import aws_fake  # noqa: E402
import aws_harness  # noqa: E402
from aws_fake import FakeAWS  # noqa: E402
from aws_harness import FaultProxy, Moto, Served  # noqa: E402
from testlib import check, run_cases  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
EVENTS_DIR = os.path.join(HERE, "..", "data", "events")
KR = os.path.abspath(sys.argv[1]) if len(sys.argv) > 1 and sys.argv[1] != "--list" else None
ACCOUNT = "123456789012"  # moto's
FAST = {"max_attempts": 6, "initial_backoff_ms": 20, "max_backoff_ms": 200}


def sample_bodies():
    """What each sample event file should arrive as: the event's bytes as written (an SNS
    notification's Message, which is the event)."""
    out = []
    for path in sorted(glob.glob(os.path.join(EVENTS_DIR, "*.json"))):
        text = open(path).read().strip()
        doc = json.loads(text)
        out.append(doc["Message"] if doc.get("Type") == "Notification" else text)
    return out


def write_jsonl(d, n, big=(), big_size=3000):
    path = os.path.join(d, "events.jsonl")
    with open(path, "w") as f:
        for i in range(n):
            ev = {"version": "0", "id": "ev-%04d" % i, "detail-type": "KMS CMK Deletion",
                  "source": "aws.kms", "account": "111122223333",
                  "time": "2024-03-01T12:00:00Z", "region": "us-west-2",
                  "resources": ["arn:aws:kms:us-west-2:111122223333:key/k%d" % (i % 7)],
                  "detail": {"key-id": "k%d" % (i % 7)}}
            if i in big:
                ev["detail"]["padding"] = "x" * big_size
            f.write(json.dumps(ev) + "\n")
    return path


def run(d, sink, paths, env_extra=None, dead_letter=True, retry=FAST):
    sink = dict(sink, name="out", retry=retry)
    if dead_letter:
        sink["dead_letter"] = "dlq"
    cfg = {"sources": [{"name": "in", "type": "file", "paths": paths}],
           "sinks": [sink, {"name": "dlq", "type": "log", "path": "dlq.jsonl"}],
           "rules": [{"name": "kms", "pattern": {"source": ["aws.kms"]}, "targets": ["out"]}]}
    with open(os.path.join(d, "cfg.json"), "w") as f:
        json.dump(cfg, f)
    env = dict(os.environ)
    for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE",
              "AWS_REGION", "AWS_DEFAULT_REGION", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_SQS"):
        env.pop(k, None)
    env["AWS_SHARED_CREDENTIALS_FILE"] = os.path.join(d, "no-credentials")
    env["AWS_CONFIG_FILE"] = os.path.join(d, "no-config")
    env["AWS_EC2_METADATA_DISABLED"] = "true"  # not this machine's instance role
    env.update(env_extra or {})
    p = subprocess.run([KR, "run", "-c", os.path.join(d, "cfg.json")], cwd=d, env=env,
                       capture_output=True, text=True, timeout=120)
    dlq = []
    if os.path.exists(os.path.join(d, "dlq.jsonl")):
        with open(os.path.join(d, "dlq.jsonl")) as f:
            dlq = [json.loads(line) for line in f if line.strip()]
    return p, dlq


def ok_run(p):
    check(p.returncode == 0, "exit %d: %s" % (p.returncode, p.stderr[-800:]))


def receive_all(sqs, url, expect, attributes=("All",)):
    """Every message of the queue (until expect have come or the queue stays empty)."""
    got = []
    empty = 0
    while len(got) < expect and empty < 3:
        r = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10,
                                MessageAttributeNames=["All"],
                                MessageSystemAttributeNames=list(attributes),
                                WaitTimeSeconds=0)
        msgs = r.get("Messages", [])
        empty = 0 if msgs else empty + 1
        got += msgs
        if msgs:
            sqs.delete_message_batch(QueueUrl=url, Entries=[
                {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(msgs)])
    return got


def attrs(m):
    return {k: v["StringValue"] for k, v in m.get("MessageAttributes", {}).items()}


def iam_user(moto, actions, resource, name="router"):
    """An IAM user allowed only actions on resource; its access key id and secret."""
    iam = moto.client("iam")
    iam.create_user(UserName=name)
    key = iam.create_access_key(UserName=name)["AccessKey"]
    iam.put_user_policy(UserName=name, PolicyName="least-privilege", PolicyDocument=json.dumps(
        {"Version": "2012-10-17",
         "Statement": [{"Effect": "Allow", "Action": actions, "Resource": resource}]}))
    return key["AccessKeyId"], key["SecretAccessKey"]


def signed_setup(moto, actions, resource="*"):
    """With checks on (Moto(auth_after=SETUP_CALLS)): the router's user, allowed actions, and
    a reader allowed everything on SQS, for the test to look into the queue; a queue "kms".
    Returns the router's key, the reader's SQS client and the queue's URL."""
    router = iam_user(moto, actions, resource)
    reader = iam_user(moto, ["sqs:*"], "*", "reader")
    url = moto.client("sqs").create_queue(QueueName="kms")["QueueUrl"]
    return router, moto.client("sqs", *reader), url


# moto 5.2.1 asks for sqs:SendMessageBatch where AWS asks for sqs:SendMessage (AWS has no
# separate batch permission): the test policy names both; the README's names sqs:SendMessage.
SQS_SEND = ["sqs:SendMessage", "sqs:SendMessageBatch"]
# setup calls before SigV4 and IAM checks start: signed_setup's two users (create_user,
# create_access_key, put_user_policy each) and create_queue
SETUP_CALLS = 7


def sqs_sink(moto_url, queue_url, **kw):
    return dict({"type": "sqs", "queue_url": queue_url, "region": aws_harness.REGION,
                 "endpoint": moto_url}, **kw)


def test_sqs_sample_events_arrive_as_sent_with_attributes_signed_least_privilege(d):
    m = Moto(auth_after=SETUP_CALLS)
    try:
        (akid, secret), reader, url = signed_setup(
            m, SQS_SEND, "arn:aws:sqs:us-east-1:%s:kms" % ACCOUNT)
        p, dlq = run(d, sqs_sink(m.url, url), [os.path.join(EVENTS_DIR, "*.json")],
                     {"AWS_ACCESS_KEY_ID": akid, "AWS_SECRET_ACCESS_KEY": secret})
        ok_run(p)
        check(dlq == [], "dead letters: %s" % dlq[:2])
        msgs = receive_all(reader, url, 6)
        bodies = sorted(x["Body"] for x in msgs)
        check(bodies == sorted(sample_bodies()), "bodies differ from the sample events")
        for x in msgs:
            ev = json.loads(x["Body"])
            want = {"detail-type": ev["detail-type"], "source": ev["source"],
                    "account": ev["account"], "region": ev["region"]}
            if "key-id" in ev["detail"]:
                want["key-id"] = ev["detail"]["key-id"]
            check(attrs(x) == want, "attributes %s, want %s" % (attrs(x), want))
        check(secret not in p.stdout + p.stderr, "the secret appears in the output")
    finally:
        m.stop()


def test_sqs_batches_ten_messages_per_request(d):
    m = Moto()
    try:
        url = m.client("sqs").create_queue(QueueName="kms")["QueueUrl"]
        before = m.requests()
        p, dlq = run(d, sqs_sink(m.url, url), [write_jsonl(d, 200)],
                     {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"})
        ok_run(p)
        check(dlq == [], "dead letters: %s" % dlq[:2])
        sent = m.requests() - before
        check(sent <= 20, "%d requests for 200 events (at most 0.1 per event)" % sent)
        msgs = receive_all(m.client("sqs"), url, 200)
        ids = sorted(json.loads(x["Body"])["id"] for x in msgs)
        check(ids == ["ev-%04d" % i for i in range(200)], "got %d messages" % len(ids))
    finally:
        m.stop()


def test_sqs_wrong_secret_dead_letters_every_event_as_a_permanent_auth_error(d):
    m = Moto(auth_after=SETUP_CALLS)
    try:
        (akid, secret), reader, url = signed_setup(m, SQS_SEND)
        wrong = "WRONG" + secret[5:]
        p, dlq = run(d, sqs_sink(m.url, url), [os.path.join(EVENTS_DIR, "*.json")],
                     {"AWS_ACCESS_KEY_ID": akid, "AWS_SECRET_ACCESS_KEY": wrong})
        ok_run(p)
        check(len(dlq) == 6, "%d dead letters, want 6" % len(dlq))
        check(all(x["error_code"] == "SignatureDoesNotMatch" and x["attempts"] == 1
                  for x in dlq), "dead letters: %s" % [(x["error_code"], x["attempts"])
                                                       for x in dlq])
        check(sorted(json.dumps(x["event"]) for x in dlq) ==
              sorted(json.dumps(json.loads(b)) for b in sample_bodies()), "events lost")
        text = p.stdout + p.stderr + open(os.path.join(d, "dlq.jsonl")).read()
        check(wrong not in text and secret not in text, "a secret appears in the output")
        check("6 deliveries dead-lettered" in p.stderr, "summary: %s" % p.stderr[-400:])
    finally:
        m.stop()


def test_sqs_without_permission_is_access_denied_into_the_dead_letter(d):
    m = Moto(auth_after=SETUP_CALLS)
    try:
        (akid, secret), reader, url = signed_setup(m, ["sqs:ReceiveMessage"])
        p, dlq = run(d, sqs_sink(m.url, url), [write_jsonl(d, 5)],
                     {"AWS_ACCESS_KEY_ID": akid, "AWS_SECRET_ACCESS_KEY": secret})
        ok_run(p)
        check(sorted(x["event"]["id"] for x in dlq) == ["ev-%04d" % i for i in range(5)],
              "dead letters: %s" % dlq)
        check(all(x["error_code"] == "AccessDenied" for x in dlq),
              "codes: %s" % [x["error_code"] for x in dlq])
        check("not authorized" in dlq[0]["error_message"], dlq[0]["error_message"])
    finally:
        m.stop()


def test_sqs_fifo_queue_gets_group_and_deduplication_ids(d):
    m = Moto()
    try:
        url = m.client("sqs").create_queue(
            QueueName="kms.fifo", Attributes={"FifoQueue": "true"})["QueueUrl"]
        p, dlq = run(d, sqs_sink(m.url, url), [write_jsonl(d, 30)],
                     {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"})
        ok_run(p)
        check(dlq == [], "dead letters: %s" % dlq[:2])
        msgs = receive_all(m.client("sqs"), url, 30, ("MessageGroupId",
                                                       "MessageDeduplicationId"))
        check(len(msgs) == 30, "%d messages" % len(msgs))
        for x in msgs:
            ev = json.loads(x["Body"])
            a = x["Attributes"]
            check(a["MessageGroupId"] == ev["detail"]["key-id"], "group %s" % a)
            check(a["MessageDeduplicationId"] == ev["id"], "dedup %s" % a)
        # one key's events keep their order
        for k in range(7):
            seq = [json.loads(x["Body"])["id"] for x in msgs
                   if json.loads(x["Body"])["detail"]["key-id"] == "k%d" % k]
            check(seq == sorted(seq), "group k%d out of order: %s" % (k, seq))
    finally:
        m.stop()


def test_sqs_fifo_group_id_template_and_missing_field(d):
    m = Moto()
    try:
        url = m.client("sqs").create_queue(
            QueueName="kms.fifo", Attributes={"FifoQueue": "true",
                                              "ContentBasedDeduplication": "true"})["QueueUrl"]
        path = write_jsonl(d, 4)
        # one event without the field the group id comes from
        with open(path, "a") as f:
            f.write(json.dumps({"id": "no-region", "source": "aws.kms", "detail": {}}) + "\n")
        sink = sqs_sink(m.url, url, message_group_id="acct-<$.account>-<$.region>",
                        deduplication_id="")
        p, dlq = run(d, sink, [path],
                     {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"})
        ok_run(p)
        msgs = receive_all(m.client("sqs"), url, 4, ("MessageGroupId",))
        check(sorted(x["Attributes"]["MessageGroupId"] for x in msgs) ==
              ["acct-111122223333-us-west-2"] * 4, "groups: %s" % [x["Attributes"]
                                                                    for x in msgs])
        check([(x["event"]["id"], x["error_code"]) for x in dlq] ==
              [("no-region", "MissingGroupId")], "dead letters: %s" % dlq)
    finally:
        m.stop()


def test_sqs_throttling_and_5xx_are_retried_until_delivered(d):
    m = Moto()
    try:
        url = m.client("sqs").create_queue(QueueName="kms")["QueueUrl"]
        throttled = json.dumps({"__type": "com.amazonaws.sqs#RequestThrottled",
                                "message": "Rate exceeded"}).encode()

        def fault(n, body):
            if n <= 2:
                return (503, {}, b"Service Unavailable")
            if n <= 4:
                return (400, {"Content-Type": "application/x-amz-json-1.0",
                              "x-amzn-query-error": "RequestThrottled;Sender"}, throttled)
            return None

        proxy = FaultProxy(m.port, fault)
        try:
            p, dlq = run(d, sqs_sink(proxy.url, url), [write_jsonl(d, 10)],
                         {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"},
                         retry={"max_attempts": 8, "initial_backoff_ms": 20,
                                "max_backoff_ms": 100})
        finally:
            proxy.stop()
        ok_run(p)
        check(dlq == [], "dead letters: %s" % dlq[:2])
        check(proxy.answered == 4, "faults answered: %d" % proxy.answered)
        # each delivery's first failure is logged (later ones at most once a second per
        # sink): the ten events went in one batch, which the 503 failed
        check("HTTP503" in p.stderr, "the failed attempts are not logged with their codes")
        msgs = receive_all(m.client("sqs"), url, 10)
        check(sorted(json.loads(x["Body"])["id"] for x in msgs) ==
              ["ev-%04d" % i for i in range(10)], "got %d" % len(msgs))
    finally:
        m.stop()


def test_sqs_partial_batch_failure_retries_only_the_failed_entries(d):
    m = Moto()
    try:
        url = m.client("sqs").create_queue(QueueName="kms")["QueueUrl"]
        requests = []

        def fault(n, body):
            requests.append(json.loads(body))
            return None

        def rewrite(n, status, payload):
            # the first response says entry 1 failed on the service's side (retryable) and
            # entry 2 failed by the sender's fault (permanent); moto did take both
            if n != 1 or status != 200:
                return payload
            r = json.loads(payload)
            r["Successful"] = [e for e in r["Successful"] if e["Id"] not in ("1", "2")]
            r["Failed"] = [{"Id": "1", "SenderFault": False, "Code": "InternalError",
                            "Message": "try again"},
                           {"Id": "2", "SenderFault": True, "Code": "InvalidParameterValue",
                            "Message": "bad entry"}]
            return json.dumps(r).encode()

        proxy = FaultProxy(m.port, fault, rewrite)
        try:
            p, dlq = run(d, sqs_sink(proxy.url, url), [write_jsonl(d, 5)],
                         {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"})
        finally:
            proxy.stop()
        ok_run(p)
        first = [json.loads(e["MessageBody"])["id"] for e in requests[0]["Entries"]]
        check(first == ["ev-%04d" % i for i in range(5)], "first batch: %s" % first)
        later = [json.loads(e["MessageBody"])["id"] for r in requests[1:] for e in r["Entries"]]
        check(later == [first[1]], "sent again: %s" % later)
        check([(x["event"]["id"], x["error_code"], x["error_message"]) for x in dlq] ==
              [(first[2], "InvalidParameterValue", "bad entry")], "dead letters: %s" % dlq)
    finally:
        m.stop()


def test_sqs_entry_over_the_size_limit_is_dead_lettered(d):
    # events are at most 256 KiB (EventBridge's limit, enforced by the parser), so the limit
    # here is a smaller max_batch_bytes
    m = Moto()
    try:
        url = m.client("sqs").create_queue(QueueName="kms")["QueueUrl"]
        p, dlq = run(d, sqs_sink(m.url, url, max_batch_bytes="2KiB"),
                     [write_jsonl(d, 6, big={3})],
                     {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"})
        ok_run(p)
        check([(x["event"]["id"], x["error_code"]) for x in dlq] ==
              [("ev-0003", "EntryTooLarge")], "dead letters: %s" %
              [(x["event"]["id"], x["error_code"]) for x in dlq])
        msgs = receive_all(m.client("sqs"), url, 5)
        check(len(msgs) == 5, "%d delivered" % len(msgs))
    finally:
        m.stop()


def test_sqs_credentials_from_profile_and_credential_process(d):
    m = Moto(auth_after=SETUP_CALLS)
    try:
        (akid, secret), reader, url = signed_setup(m, SQS_SEND)
        creds = os.path.join(d, "credentials")
        with open(creds, "w") as f:
            f.write("[default]\naws_access_key_id = WRONG\naws_secret_access_key = WRONG\n"
                    "[router]\naws_access_key_id = %s\naws_secret_access_key = %s\n"
                    % (akid, secret))
        script = os.path.join(d, "creds.sh")
        with open(script, "w") as f:
            f.write("#!/bin/sh\nprintf '{\"Version\": 1, \"AccessKeyId\": \"%s\", "
                    "\"SecretAccessKey\": \"%s\"}'\n" % (akid, secret))
        os.chmod(script, stat.S_IRWXU)
        config = os.path.join(d, "config")
        with open(config, "w") as f:
            f.write("[profile proc]\ncredential_process = %s\nregion = us-east-1\n" % script)
        sink = {"type": "sqs", "queue_url": url, "endpoint": m.url}
        files = {"AWS_SHARED_CREDENTIALS_FILE": creds, "AWS_CONFIG_FILE": config}
        # the profile's keys, chosen by AWS_PROFILE; the region from the option
        p, dlq = run(d, dict(sink, region="us-east-1"), [write_jsonl(d, 3)],
                     dict(files, AWS_PROFILE="router"))
        ok_run(p)
        check(dlq == [], "profile: dead letters %s" % [x["error_code"] for x in dlq])
        # credential_process, chosen by the profile option; the region from the profile
        p, dlq = run(d, dict(sink, profile="proc"), [write_jsonl(d, 3)], files)
        ok_run(p)
        check(dlq == [], "credential_process: dead letters %s" % [x["error_code"] for x in dlq])
        check(len(receive_all(reader, url, 6)) == 6, "not every message arrived")
        check(secret not in p.stdout + p.stderr, "the secret appears in the output")
        # no credentials anywhere: run refuses to start and says where they may come from
        p, _ = run(d, dict(sink, region="us-east-1"), [write_jsonl(d, 1)])
        check(p.returncode != 0 and "no AWS credentials" in p.stderr,
              "exit %d: %s" % (p.returncode, p.stderr[-300:]))
    finally:
        m.stop()


def test_sqs_credential_process_refreshed_beside_the_deliveries(d):
    """Credentials of a credential_process that expire in 4 minutes are due at once: they are
    fetched again by a thread of their own while the deliveries go on with the ones there are.
    A refresh that fails is logged once and tried again after a pause (not at every request);
    one whose process hangs holds nothing up, and its process is killed when the run ends."""
    m = Moto(auth_after=SETUP_CALLS)
    try:
        (akid, secret), reader, url = signed_setup(m, SQS_SEND)
        expires = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 240))
        calls = os.path.join(d, "calls")
        script = os.path.join(d, "creds.sh")
        config = os.path.join(d, "config")
        with open(config, "w") as f:
            f.write("[profile proc]\ncredential_process = %s\nregion = us-east-1\n" % script)
        sink = sqs_sink(m.url, url, profile="proc", batch_size=10)
        for then, hangs in (("echo 'no credentials today' >&2; exit 3", False),
                            ("exec sleep 317", True)):
            if os.path.exists(calls):
                os.unlink(calls)
            with open(script, "w") as f:
                f.write("#!/bin/sh\necho call >> %s\n"
                        "if [ $(wc -l < %s) -gt 1 ]; then %s; fi\n"
                        "printf '{\"Version\": 1, \"AccessKeyId\": \"%s\", "
                        "\"SecretAccessKey\": \"%s\", \"Expiration\": \"%s\"}'\n"
                        % (calls, calls, then, akid, secret, expires))
            os.chmod(script, stat.S_IRWXU)
            p, dlq = run(d, sink, [write_jsonl(d, 30)], {"AWS_CONFIG_FILE": config})
            ok_run(p)
            check(dlq == [], "%s: dead letters %s" % (then, [x["error_code"] for x in dlq]))
            with open(calls) as f:
                ncalls = len(f.read().splitlines())
            check(ncalls == 2, "%s: the process ran %d times, want 2 (start, one refresh)"
                  % (then, ncalls))
            warned = [l for l in p.stderr.splitlines() if "cannot refresh the credentials" in l]
            if not hangs:
                check(len(warned) == 1 and "exit status 3" in warned[0] and
                      "retry_in_s=5" in warned[0],
                      "a failed refresh: want one warning with its reason and the pause, got %s"
                      % warned)
            else:
                check(warned == [], "a refresh still running is not a failure: %s" % warned)
                left = subprocess.run(["pgrep", "-f", "sleep 317"], capture_output=True,
                                      text=True).stdout.split()
                check(left == [], "the hung credential_process outlived the run: %s" % left)
            check(secret not in p.stdout + p.stderr, "the secret appears in the output")
        check(len(receive_all(reader, url, 60)) == 60, "not every message arrived")
    finally:
        subprocess.run(["pkill", "-f", "sleep 317"])
        m.stop()


def check_rejects(d, sink_type, base, cases, env=None):
    """kmsrouter check rejects each case (options over base) with FILE:LINE:COL and the text."""
    for extra, want in cases:
        sink = dict({"name": "out", "type": sink_type}, **base)
        sink.update(extra)
        cfg = {"sinks": [sink], "rules": [{"name": "r", "pattern": {"source": ["aws.kms"]},
                                            "targets": ["out"]}]}
        path = os.path.join(d, "cfg.json")
        with open(path, "w") as f:
            json.dump(cfg, f, indent=1)
        p = subprocess.run([KR, "check", "-c", path], capture_output=True, text=True,
                           env=dict(os.environ, **(env or {})))
        check(p.returncode != 0, "check accepted %s" % extra)
        check(want in p.stderr and "cfg.json:" in p.stderr,
              "%s: %s" % (extra, p.stderr.strip()))


def sns_topic_with_queue(m, raw, filter_policy=None, name="sub"):
    """A topic "kms" (created once) and a queue subscribed to it; their ARN and URL."""
    sns, sqs = m.client("sns"), m.client("sqs")
    topic = sns.create_topic(Name="kms")["TopicArn"]
    url = sqs.create_queue(QueueName=name)["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"]
    attrs = {"RawMessageDelivery": "true" if raw else "false"}
    if filter_policy:
        attrs["FilterPolicy"] = json.dumps(filter_policy)
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=arn, Attributes=attrs)
    return topic, url


def sns_sink(moto_url, topic, **kw):
    # no region: the topic ARN's (us-east-1 in moto)
    return dict({"type": "sns", "topic_arn": topic, "endpoint": moto_url}, **kw)


TESTING = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}


def test_sns_sample_events_reach_a_subscribed_queue_as_sent_with_attributes(d):
    m = Moto()
    try:
        topic, url = sns_topic_with_queue(m, raw=True)
        p, dlq = run(d, sns_sink(m.url, topic), [os.path.join(EVENTS_DIR, "*.json")], TESTING)
        ok_run(p)
        check(dlq == [], "dead letters: %s" % dlq[:2])
        msgs = receive_all(m.client("sqs"), url, 6)
        check(sorted(x["Body"] for x in msgs) == sorted(sample_bodies()),
              "bodies differ from the sample events")
        for x in msgs:
            ev = json.loads(x["Body"])
            want = {"detail-type": ev["detail-type"], "source": ev["source"],
                    "account": ev["account"], "region": ev["region"]}
            if "key-id" in ev["detail"]:
                want["key-id"] = ev["detail"]["key-id"]
            check(attrs(x) == want, "attributes %s, want %s" % (attrs(x), want))
    finally:
        m.stop()


def test_sns_filter_policy_selects_on_attributes_and_subject_is_filled(d):
    m = Moto()
    try:
        topic, everything = sns_topic_with_queue(m, raw=False)
        _, deletions = sns_topic_with_queue(m, raw=False, name="deletions",
                                            filter_policy={"detail-type": ["KMS CMK Deletion"]})
        p, dlq = run(d, sns_sink(m.url, topic, subject="KMS: <$.detail-type> <$.detail.key-id>"),
                     [os.path.join(EVENTS_DIR, "*.json")], TESTING)
        ok_run(p)
        check(dlq == [], "dead letters: %s" % dlq[:2])
        notes = [json.loads(x["Body"]) for x in receive_all(m.client("sqs"), everything, 6)]
        check(sorted(n["Message"] for n in notes) == sorted(sample_bodies()), "messages differ")
        for n in notes:
            ev = json.loads(n["Message"])
            check(n["MessageAttributes"]["detail-type"] == {"Type": "String",
                                                            "Value": ev["detail-type"]},
                  "attributes %s" % n["MessageAttributes"])
            if "key-id" in ev["detail"]:
                check(n["Subject"] == "KMS: %s %s" % (ev["detail-type"], ev["detail"]["key-id"]),
                      "subject %r" % n.get("Subject"))
            else:  # a field the subject names is missing: no subject
                check(not n.get("Subject"), "subject %r" % n.get("Subject"))
        picked = [json.loads(json.loads(x["Body"])["Message"])["detail-type"]
                  for x in receive_all(m.client("sqs"), deletions, 6)]
        check(picked == ["KMS CMK Deletion"] * 2, "the filtered queue got %s" % picked)
    finally:
        m.stop()


def test_sns_batches_ten_messages_per_request(d):
    m = Moto()
    try:
        topic, url = sns_topic_with_queue(m, raw=True)
        before = m.requests()
        p, dlq = run(d, sns_sink(m.url, topic), [write_jsonl(d, 200)], TESTING)
        ok_run(p)
        check(dlq == [], "dead letters: %s" % dlq[:2])
        sent = m.requests() - before
        check(sent <= 20, "%d requests for 200 events (at most 0.1 per event)" % sent)
        ids = sorted(json.loads(x["Body"])["id"] for x in receive_all(m.client("sqs"), url, 200))
        check(ids == ["ev-%04d" % i for i in range(200)], "got %d messages" % len(ids))
    finally:
        m.stop()


def test_sns_check_reports_bad_options_with_their_place(d):
    cases = [({"topic_arn": "kms-topic"}, "not a topic ARN"),
             ({"topic_arn": "arn:aws:sqs:us-east-1:1:q"}, "not a topic ARN"),
             ({"subject": "<$.detail-type"}, "no '>'"),
             ({"message_attributes": ["$.a", "$.b.a"]}, "both name"),
             ({"max_batch_bytes": "1MiB"}, "262144")]
    check_rejects(d, "sns", {"topic_arn": "arn:aws:sns:us-east-1:123456789012:kms"}, cases)


def moto_lambda(m):
    """moto's Lambda without Docker: it answers every invocation with the payload it got."""
    import urllib.request
    req = urllib.request.Request(m.url + "/moto-api/config", method="POST",
                                 data=json.dumps({"lambda": {"use_docker": False}}).encode(),
                                 headers={"Content-Type": "application/json"})
    urllib.request.urlopen(req, timeout=10).read()


class Recorder:
    """A FaultProxy in front of moto that keeps each request (path, headers, body) and moto's
    answer to it."""

    def __init__(self, m):
        self.sent, self.answers = {}, {}

        def fault(n, body):
            self.sent[n] = body
            return None

        def rewrite(n, status, payload):
            self.answers[n] = (status, payload)
            return payload

        self.proxy = FaultProxy(m.port, fault, rewrite)
        self.url = self.proxy.url

    def stop(self):
        self.proxy.stop()


def test_lambda_sample_events_invoke_the_function_as_sent(d):
    m = Moto()
    rec = None
    try:
        moto_lambda(m)
        rec = Recorder(m)
        p, dlq = run(d, {"type": "lambda", "function": "kms-handler", "endpoint": rec.url,
                         "region": "us-east-1"},
                     [os.path.join(EVENTS_DIR, "*.json")], TESTING)
        ok_run(p)
        check(dlq == [], "dead letters: %s" % dlq[:2])
        check(sorted(v.decode() for v in rec.sent.values()) == sorted(sample_bodies()),
              "payloads differ from the sample events")
        # moto's function got each payload exactly: it answers with it (202: queued)
        check(all(rec.answers[n] == (202, rec.sent[n]) for n in rec.sent),
              "moto's answers: %s" % [a[0] for a in rec.answers.values()])
    finally:
        if rec:
            rec.stop()
        m.stop()


def test_lambda_request_response_by_arn_and_partial_arn_with_qualifier(d):
    m = Moto()
    rec = None
    try:
        moto_lambda(m)
        rec = Recorder(m)
        for fn in ("arn:aws:lambda:us-east-1:123456789012:function:kms-handler",
                   "123456789012:function:kms-handler"):
            rec.sent.clear()
            rec.answers.clear()
            p, dlq = run(d, {"type": "lambda", "function": fn, "qualifier": "prod",
                             "invocation_type": "RequestResponse", "endpoint": rec.url},
                         [write_jsonl(d, 5)], dict(TESTING, AWS_REGION="us-east-1"))
            ok_run(p)
            check(dlq == [], "%s: dead letters %s" % (fn, [x["error_code"] for x in dlq]))
            check(len(rec.sent) == 5 and all(rec.answers[n] == (200, rec.sent[n])
                                             for n in rec.sent), "%s: answers" % fn)
    finally:
        if rec:
            rec.stop()
        m.stop()


def test_lambda_payload_over_the_invocation_limit_is_dead_lettered_unsent(d):
    m = Moto()
    rec = None
    try:
        moto_lambda(m)
        rec = Recorder(m)
        # a transformer that doubles a 200 KB event: a 400 KB payload, over Event's 256 KiB
        sink = {"type": "lambda", "function": "kms-handler", "endpoint": rec.url,
                "region": "us-east-1"}
        path = write_jsonl(d, 3, big={1}, big_size=200000)
        cfg_target = {"sink": "out", "input_transformer": {
            "input_paths": {}, "input_template":
            '{"a": <aws.events.event.json>, "b": <aws.events.event.json>}'}}
        sink = dict(sink, name="out", retry=FAST, dead_letter="dlq")
        cfg = {"sources": [{"name": "in", "type": "file", "paths": [path]}],
               "sinks": [sink, {"name": "dlq", "type": "log", "path": "dlq.jsonl"}],
               "rules": [{"name": "kms", "pattern": {"source": ["aws.kms"]},
                          "targets": [cfg_target]}]}
        with open(os.path.join(d, "cfg.json"), "w") as f:
            json.dump(cfg, f)
        env = dict(os.environ, **TESTING)
        env["AWS_SHARED_CREDENTIALS_FILE"] = env["AWS_CONFIG_FILE"] = os.path.join(d, "none")
        p = subprocess.run([KR, "run", "-c", "cfg.json"], cwd=d, env=env, capture_output=True,
                           text=True, timeout=60)
        ok_run(p)
        dlq = [json.loads(line) for line in open(os.path.join(d, "dlq.jsonl"))]
        check([(x["event"]["id"], x["error_code"]) for x in dlq] ==
              [("ev-0001", "PayloadTooLarge")], "dead letters: %s" %
              [(x["event"]["id"], x["error_code"]) for x in dlq])
        check(len(rec.sent) == 2, "%d invocations sent" % len(rec.sent))
    finally:
        if rec:
            rec.stop()
        m.stop()


def test_lambda_check_reports_bad_options_with_their_place(d):
    cases = [({"function": "bad name"}, "1 to 64 letters"),
             ({"function": "arn:aws:sqs:us-east-1:1:q"}, "not a function ARN"),
             ({"function": "f", "qualifier": "a b"}, "version"),
             ({"function": "f", "invocation_type": "DryRun"}, "Event"),
             ({"function": "f", "retry_function_errors": True}, "only RequestResponse")]
    check_rejects(d, "lambda", {}, cases)


def kinesis_records(m, stream="kms"):
    """Every record of the stream: {shard id: [(partition key, data bytes), ...]} in order."""
    k = m.client("kinesis")
    out = {}
    for sh in k.describe_stream(StreamName=stream)["StreamDescription"]["Shards"]:
        it = k.get_shard_iterator(StreamName=stream, ShardId=sh["ShardId"],
                                  ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
        recs = []
        while it:
            r = k.get_records(ShardIterator=it, Limit=1000)
            recs += [(x["PartitionKey"], x["Data"]) for x in r["Records"]]
            it = r.get("NextShardIterator") if r["Records"] else None
        out[sh["ShardId"]] = recs
    return out


def test_kinesis_sample_events_arrive_as_sent_partitioned_by_key_id(d):
    m = Moto()
    try:
        m.client("kinesis").create_stream(StreamName="kms", ShardCount=2)
        p, dlq = run(d, {"type": "kinesis", "stream_name": "kms", "endpoint": m.url,
                         "region": "us-east-1"}, [os.path.join(EVENTS_DIR, "*.json")], TESTING)
        ok_run(p)
        check(dlq == [], "dead letters: %s" % dlq[:2])
        recs = [r for shard in kinesis_records(m).values() for r in shard]
        check(sorted(data.decode() for _, data in recs) == sorted(sample_bodies()),
              "records differ from the sample events")
        for key, data in recs:
            ev = json.loads(data)
            want = ev["detail"].get("key-id")
            check(key == want if want else len(key) == 16,
                  "partition key %r for %s" % (key, ev["detail-type"]))
    finally:
        m.stop()


def test_kinesis_batches_and_keeps_each_keys_events_in_order_on_one_shard(d):
    m = Moto()
    try:
        m.client("kinesis").create_stream(StreamName="kms", ShardCount=3)
        before = m.requests()
        p, dlq = run(d, {"type": "kinesis", "stream_name": "kms", "endpoint": m.url,
                         "region": "us-east-1"}, [write_jsonl(d, 1000)], TESTING)
        ok_run(p)
        check(dlq == [], "dead letters: %s" % dlq[:2])
        sent = m.requests() - before
        check(sent <= 10, "%d requests for 1,000 events" % sent)
        shards = kinesis_records(m)
        check(sum(len(v) for v in shards.values()) == 1000, "records: %d" %
              sum(len(v) for v in shards.values()))
        for k in range(7):
            where = [sid for sid, recs in shards.items() if any(x == "k%d" % k for x, _ in recs)]
            check(len(where) == 1, "key k%d on shards %s" % (k, where))
            seq = [json.loads(data)["id"] for x, data in shards[where[0]] if x == "k%d" % k]
            check(seq == sorted(seq), "key k%d out of order" % k)
    finally:
        m.stop()


def test_kinesis_failed_records_are_retried_alone_and_refusals_dead_lettered(d):
    m = Moto()
    try:
        m.client("kinesis").create_stream(StreamName="kms", ShardCount=1)
        requests = []

        def fault(n, body):
            requests.append(json.loads(body))
            return None

        def rewrite(n, status, payload):
            if n != 1 or status != 200:
                return payload
            r = json.loads(payload)
            r["Records"][1] = {"ErrorCode": "ProvisionedThroughputExceededException",
                               "ErrorMessage": "Rate exceeded for shard shardId-000000000000"}
            r["Records"][3] = {"ErrorCode": "KMSAccessDeniedException",
                               "ErrorMessage": "access to the stream's key was denied"}
            r["FailedRecordCount"] = 2
            return json.dumps(r).encode()

        proxy = FaultProxy(m.port, fault, rewrite)
        try:
            p, dlq = run(d, {"type": "kinesis", "stream_name": "kms", "endpoint": proxy.url,
                             "region": "us-east-1"}, [write_jsonl(d, 5)], TESTING)
        finally:
            proxy.stop()
        ok_run(p)
        ids = [[json.loads(base64.b64decode(x["Data"]))["id"] for x in r["Records"]]
               for r in requests]
        check(ids[0] == ["ev-%04d" % i for i in range(5)], "first batch: %s" % ids)
        check(ids[1:] == [["ev-0001"]], "sent again: %s" % ids[1:])
        check([(x["event"]["id"], x["error_code"]) for x in dlq] ==
              [("ev-0003", "KMSAccessDeniedException")], "dead letters: %s" % dlq)
    finally:
        m.stop()


def test_kinesis_check_reports_bad_options_with_their_place(d):
    cases = [({}, "give stream_name or stream_arn"),
             ({"stream_name": "a", "stream_arn": "arn:aws:kinesis:us-east-1:1:stream/a"},
              "not both"),
             ({"stream_arn": "arn:aws:kinesis:us-east-1:1:a"}, "not a stream ARN"),
             ({"stream_name": "a b"}, "1 to 128"),
             ({"stream_name": "a", "batch_size": 501}, "from 1 to 500"),
             ({"stream_name": "a", "partition_key": "<$>"}, "JSONPath")]
    check_rejects(d, "kinesis", {}, cases)


def log_events(m, group, stream):
    logs = m.client("logs")
    return logs.get_log_events(logGroupName=group, logStreamName=stream,
                               startFromHead=True, limit=10000)["events"]


def write_timed(d, times_ms, name="timed.jsonl"):
    """One event per time (ms), in the order given, ids ev-0000... in that order."""
    import datetime
    path = os.path.join(d, name)
    with open(path, "w") as f:
        for i, t in enumerate(times_ms):
            iso = datetime.datetime.fromtimestamp(t / 1000, datetime.timezone.utc).strftime(
                "%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
            f.write(json.dumps({"version": "0", "id": "ev-%04d" % i, "source": "aws.kms",
                                "detail-type": "KMS CMK Rotation", "account": "111122223333",
                                "region": "us-west-2", "time": iso,
                                "detail": {"key-id": "k%d" % (i % 3)}}) + "\n")
    return path


def test_cwl_sample_events_create_group_and_streams_from_a_template(d):
    m = Moto()
    try:
        # the samples are years old: timestamp "received" gives them the time they came
        p, dlq = run(d, {"type": "cloudwatch-logs", "log_group": "/kms/events",
                         "log_stream": "<$.account>-<$.region>", "create": True,
                         "timestamp": "received", "endpoint": m.url, "region": "us-east-1"},
                     [os.path.join(EVENTS_DIR, "*.json")], TESTING)
        ok_run(p)
        check(dlq == [], "dead letters: %s" % [(x["error_code"], x["error_message"])
                                               for x in dlq])
        streams = [x["logStreamName"] for x in m.client("logs").describe_log_streams(
            logGroupName="/kms/events")["logStreams"]]
        check(streams == ["111122223333-us-west-2"], "streams: %s" % streams)
        msgs = [e["message"] for e in log_events(m, "/kms/events", streams[0])]
        check(sorted(msgs) == sorted(sample_bodies()), "messages differ from the sample events")
    finally:
        m.stop()


def test_cwl_event_times_sorted_and_too_old_events_dead_lettered(d):
    import time as _time
    m = Moto()
    try:
        logs = m.client("logs")
        logs.create_log_group(logGroupName="kms")
        logs.create_log_stream(logGroupName="kms", logStreamName="kmsrouter")
        now = int(_time.time() * 1000)
        # out of order, and one event 20 days old
        times = [now - 60000, now - 180000, now - 20 * 86400000, now - 120000, now - 1000]
        p, dlq = run(d, {"type": "cloudwatch-logs", "log_group": "kms", "endpoint": m.url,
                         "region": "us-east-1"}, [write_timed(d, times)], TESTING)
        ok_run(p)
        check([(x["event"]["id"], x["error_code"]) for x in dlq] ==
              [("ev-0002", "LogEventTooOld")], "dead letters: %s" % dlq)
        got = [(e["timestamp"], json.loads(e["message"])["id"])
               for e in log_events(m, "kms", "kmsrouter")]
        want = sorted((t, "ev-%04d" % i) for i, t in enumerate(times) if i != 2)
        check(got == want, "log events %s, want %s" % (got, want))
    finally:
        m.stop()


def test_cwl_a_batch_spans_at_most_a_day_and_batches_are_large(d):
    import time as _time
    m = Moto()
    requests = []
    proxy = FaultProxy(m.port, lambda n, body: requests.append(json.loads(body)))
    try:
        logs = m.client("logs")
        logs.create_log_group(logGroupName="kms")
        logs.create_log_stream(logGroupName="kms", logStreamName="kmsrouter")
        now = int(_time.time() * 1000)
        # 1,000 events over the last 30 hours
        times = [now - 30 * 3600000 + i * 108000 for i in range(1000)]
        p, dlq = run(d, {"type": "cloudwatch-logs", "log_group": "kms", "endpoint": proxy.url,
                         "region": "us-east-1"}, [write_timed(d, times)], TESTING)
        ok_run(p)
        check(dlq == [], "dead letters: %s" % [(x["error_code"], x["error_message"])
                                               for x in dlq][:3])
        puts = [r["logEvents"] for r in requests if "logEvents" in r]
        check(2 <= len(puts) <= 10, "%d PutLogEvents for 1,000 events" % len(puts))
        for evs in puts:
            ts = [e["timestamp"] for e in evs]
            check(ts == sorted(ts), "a request's events are not in time order")
            check(ts[-1] - ts[0] <= 24 * 3600000, "a request spans %.1f h" %
                  ((ts[-1] - ts[0]) / 3600000))
        check(len(log_events(m, "kms", "kmsrouter")) == 1000, "not every event arrived")
    finally:
        proxy.stop()
        m.stop()


def test_cwl_signed_least_privilege_and_missing_group_without_create(d):
    m = Moto(auth_after=8)  # two log calls and two users (3 calls each)
    try:
        logs = m.client("logs")
        logs.create_log_group(logGroupName="kms")
        logs.create_log_stream(logGroupName="kms", logStreamName="kmsrouter")
        # moto 5.2.1 authorizes CloudWatch Logs calls against the resource "*" only, so the
        # policy narrows the actions (the README gives the resource ARN for AWS)
        akid, secret = iam_user(m, ["logs:PutLogEvents"], "*")
        reader = iam_user(m, ["logs:*"], "*", "reader")  # noqa: F841 - counted in auth_after
        env = {"AWS_ACCESS_KEY_ID": akid, "AWS_SECRET_ACCESS_KEY": secret}
        p, dlq = run(d, {"type": "cloudwatch-logs", "log_group": "kms", "endpoint": m.url,
                         "region": "us-east-1", "timestamp": "received"},
                     [write_jsonl(d, 20)], env)
        ok_run(p)
        check(dlq == [], "signed: dead letters %s" % [(x["error_code"], x["error_message"])
                                                      for x in dlq][:2])
        got = m.client("logs", *reader).get_log_events(
            logGroupName="kms", logStreamName="kmsrouter", startFromHead=True)["events"]
        check(len(got) == 20, "%d log events" % len(got))
        # a group that does not exist, no create: permanent
        p, dlq = run(d, {"type": "cloudwatch-logs", "log_group": "gone", "endpoint": m.url,
                         "region": "us-east-1", "timestamp": "received"},
                     [write_jsonl(d, 3)], env)
        ok_run(p)
        check([(x["error_code"], x["attempts"]) for x in dlq] ==
              [("ResourceNotFoundException", 1)] * 3, "missing group: %s" % [(x["error_code"], x["attempts"]) for x in dlq])
        # a wrong secret: permanent, and not in the output. Five letters replaced, not one:
        # a random secret starts with the one letter put in its place once in 64 runs
        os.unlink(os.path.join(d, "dlq.jsonl"))
        wrong = "WRONG" + secret[5:]
        check(wrong != secret, "the wrong secret is the secret")
        p, dlq = run(d, {"type": "cloudwatch-logs", "log_group": "kms", "endpoint": m.url,
                         "region": "us-east-1", "timestamp": "received"},
                     [write_jsonl(d, 3)], dict(env, AWS_SECRET_ACCESS_KEY=wrong))
        check([x["attempts"] for x in dlq] == [1] * 3 and
              all(x["error_code"] in ("SignatureDoesNotMatch", "InvalidSignatureException")
                  for x in dlq), "wrong secret: %s" % [x["error_code"] for x in dlq])
        check(secret[5:] not in p.stderr, "the secret appears in the output")
    finally:
        m.stop()


def test_cwl_check_reports_bad_options_with_their_place(d):
    cases = [({}, "log_group"),
             ({"log_group": "a b"}, "only letters"),
             ({"log_group": "g", "log_stream": "a:b"}, "neither ':' nor '*'"),
             ({"log_group": "g", "log_stream": "<$.account"}, "no '>'"),
             ({"log_group": "g", "timestamp": "now"}, "event"),
             ({"log_group": "g", "batch_size": 10001}, "from 1 to 10000")]
    check_rejects(d, "cloudwatch-logs", {}, cases)


class CredServer(Served):
    """Loopback credential endpoints: the container one (GET PATH with an Authorization token)
    and IMDSv2 (PUT /latest/api/token, then GETs with the session token). Serves key and
    secret; expires_in seconds from now; counts what was served."""

    def __init__(self, key, secret, auth_token=None, expires_in=3600):
        import http.server
        import threading
        outer = self
        self.served = 0
        self.refused = 0
        self.lock = threading.Lock()

        def creds():
            import datetime
            exp = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(
                seconds=expires_in)
            return json.dumps({"Code": "Success", "AccessKeyId": key,
                               "SecretAccessKey": secret, "Token": "",
                               "Expiration": exp.strftime("%Y-%m-%dT%H:%M:%SZ")}).encode()

        class H(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def reply(self, code, body):
                self.send_response(code)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_PUT(self):
                if (self.path == "/latest/api/token" and
                        self.headers.get("X-aws-ec2-metadata-token-ttl-seconds")):
                    return self.reply(200, b"imds-session-token")
                self.reply(400, b"")

            def do_GET(self):
                with outer.lock:
                    if self.path.startswith("/latest/"):
                        if self.headers.get("X-aws-ec2-metadata-token") != "imds-session-token":
                            outer.refused += 1
                            return self.reply(401, b"")
                        if self.path == "/latest/meta-data/iam/security-credentials/":
                            return self.reply(200, b"kms-router-role")
                        if self.path == "/latest/meta-data/iam/security-credentials/kms-router-role":
                            outer.served += 1
                            return self.reply(200, creds())
                        return self.reply(404, b"")
                    if auth_token and self.headers.get("Authorization") != auth_token:
                        outer.refused += 1
                        return self.reply(403, b'{"message": "bad token"}')
                    outer.served += 1
                    return self.reply(200, creds())

            def log_message(self, *a):
                pass

        super().__init__(H)


def test_credentials_from_a_container_endpoint_refreshed_before_they_expire(d):
    m = Moto(auth_after=SETUP_CALLS)
    srv = None
    try:
        (akid, secret), reader, url = signed_setup(m, SQS_SEND)
        # credentials that expire in 4 minutes: each send finds them due and fetches again
        srv = CredServer(akid, secret, auth_token="container-token", expires_in=240)
        tf = os.path.join(d, "token")
        with open(tf, "w") as f:
            f.write("container-token\n")
        p, dlq = run(d, sqs_sink(m.url, url), [write_jsonl(d, 30)],
                     {"AWS_CONTAINER_CREDENTIALS_FULL_URI": srv.url + "/v2/credentials/x",
                      "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE": tf})
        ok_run(p)
        check(dlq == [], "dead letters: %s" % [x["error_code"] for x in dlq])
        check(len(receive_all(reader, url, 30)) == 30, "not every message arrived")
        check(srv.served >= 2 and srv.refused == 0,
              "served %d, refused %d: not refreshed" % (srv.served, srv.refused))
        check(secret not in p.stderr, "the secret appears in the output")
        # a wrong authorization token: run refuses to start, saying why
        with open(tf, "w") as f:
            f.write("wrong\n")
        p, _ = run(d, sqs_sink(m.url, url), [write_jsonl(d, 1)],
                   {"AWS_CONTAINER_CREDENTIALS_FULL_URI": srv.url + "/v2/credentials/x",
                    "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE": tf})
        check(p.returncode != 0 and "container credentials endpoint answered HTTP 403" in
              p.stderr, "exit %d: %s" % (p.returncode, p.stderr[-300:]))
    finally:
        if srv:
            srv.stop()
        m.stop()


def test_credentials_from_the_instance_metadata_service_imdsv2(d):
    m = Moto(auth_after=SETUP_CALLS)
    srv = None
    try:
        (akid, secret), reader, url = signed_setup(m, SQS_SEND)
        srv = CredServer(akid, secret)
        p, dlq = run(d, sqs_sink(m.url, url), [write_jsonl(d, 5)],
                     {"AWS_EC2_METADATA_DISABLED": "false",
                      "AWS_EC2_METADATA_SERVICE_ENDPOINT": srv.url})
        ok_run(p)
        check(dlq == [], "dead letters: %s" % [x["error_code"] for x in dlq])
        check(srv.served == 1 and srv.refused == 0, "served %d, refused %d" %
              (srv.served, srv.refused))
        check(len(receive_all(reader, url, 5)) == 5, "not every message arrived")
    finally:
        if srv:
            srv.stop()
        m.stop()


# moto 5.2.1 refuses sts:AssumeRole whatever the policy once its checks are on, and fails
# AssumeRoleWithWebIdentity (unsigned, as AWS has it) with a 500: the STS tests run with the
# checks off, and a recording proxy shows that the SQS calls were signed with the temporary
# credentials STS gave (an ASIA key id and a session token), not with the ones the chain had.

def sqs_signers(requests):
    """(access key id, has a session token) of each recorded request."""
    import re
    out = []
    for _, headers in requests:
        auth = headers.get("Authorization", "")
        m = re.search(r"Credential=([A-Z0-9]+)/", auth)
        out.append((m.group(1) if m else None, "X-Amz-Security-Token" in headers))
    return out


def test_credentials_from_web_identity_through_sts(d):
    m = Moto()
    rec = None
    try:
        url = m.client("sqs").create_queue(QueueName="kms")["QueueUrl"]
        role = "arn:aws:iam::123456789012:role/kms-router"
        tf = os.path.join(d, "web-identity-token")
        with open(tf, "w") as f:
            f.write("eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJzeXN0ZW06c2VydmljZWFjY291bnQifQ.c2ln\n")
        rec = FaultProxy(m.port)
        p, dlq = run(d, sqs_sink(rec.url, url), [write_jsonl(d, 5)],
                     {"AWS_WEB_IDENTITY_TOKEN_FILE": tf, "AWS_ROLE_ARN": role,
                      "AWS_ROLE_SESSION_NAME": "router-test", "AWS_ENDPOINT_URL_STS": m.url})
        ok_run(p)
        check(dlq == [], "dead letters: %s" % [(x["error_code"], x["error_message"])
                                               for x in dlq][:2])
        signers = sqs_signers(rec.requests)
        check(signers and all(k and k.startswith("ASIA") and tok for k, tok in signers),
              "signed with %s" % signers)
        check(len(receive_all(m.client("sqs"), url, 5)) == 5, "not every message arrived")
        # a token file that cannot be read: run refuses to start, naming it
        p, _ = run(d, sqs_sink(rec.url, url), [write_jsonl(d, 1)],
                   {"AWS_WEB_IDENTITY_TOKEN_FILE": tf + "-missing", "AWS_ROLE_ARN": role,
                    "AWS_ENDPOINT_URL_STS": m.url})
        check(p.returncode != 0 and "AWS_WEB_IDENTITY_TOKEN_FILE" in p.stderr,
              "exit %d: %s" % (p.returncode, p.stderr[-300:]))
    finally:
        if rec:
            rec.stop()
        m.stop()


def test_role_arn_is_assumed_through_sts_with_the_chains_credentials(d):
    m = Moto()
    rec = None
    try:
        url = m.client("sqs").create_queue(QueueName="kms")["QueueUrl"]
        rec = FaultProxy(m.port)
        p, dlq = run(d, sqs_sink(rec.url, url, role_arn="arn:aws:iam::123456789012:role/kms",
                                 external_id="kms-ext-1"),
                     [write_jsonl(d, 5)], dict(TESTING, AWS_ENDPOINT_URL_STS=m.url))
        ok_run(p)
        check(dlq == [], "dead letters: %s" % [(x["error_code"], x["error_message"])
                                               for x in dlq][:2])
        signers = sqs_signers(rec.requests)
        check(signers and all(k and k.startswith("ASIA") and tok for k, tok in signers),
              "signed with %s, not the role's credentials" % signers)
        check(len(receive_all(m.client("sqs"), url, 5)) == 5, "not every message arrived")
    finally:
        if rec:
            rec.stop()
        m.stop()


def test_role_arn_refused_by_sts_stops_the_start_with_the_reason(d):
    f_proxy = None
    m = Moto()
    try:
        url = m.client("sqs").create_queue(QueueName="kms")["QueueUrl"]
        denied = (b'<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><Error>'
                  b"<Type>Sender</Type><Code>AccessDenied</Code><Message>User: "
                  b"arn:aws:iam::123456789012:user/base is not authorized to perform: "
                  b"sts:AssumeRole</Message></Error></ErrorResponse>")
        f_proxy = FaultProxy(m.port, lambda n, body: (403, {"Content-Type": "text/xml"}, denied))
        p, _ = run(d, sqs_sink(m.url, url, role_arn="arn:aws:iam::123456789012:role/kms"),
                   [write_jsonl(d, 1)], dict(TESTING, AWS_ENDPOINT_URL_STS=f_proxy.url))
        check(p.returncode != 0 and "AssumeRole (role_arn) failed: AccessDenied: User:" in
              p.stderr, "exit %d: %s" % (p.returncode, p.stderr[-300:]))
        check("testing" not in p.stderr.replace("AWS_", ""), "a key appears in the output")
    finally:
        if f_proxy:
            f_proxy.stop()
        m.stop()


# ---- error paths against FakeAWS (tests/integration/aws_fake.py): a loopback SNS and Lambda
# that verify every signature with botocore's signer, and fail, throttle or reject on request

FAKE_KEY, FAKE_SECRET, FAKE_TOKEN = "AKIDROUTER", "fake-secret-of-the-router", "fake-session-token"
TOPIC = "arn:aws:sns:us-east-1:123456789012:kms"
FAKE_ENV = {"AWS_ACCESS_KEY_ID": FAKE_KEY, "AWS_SECRET_ACCESS_KEY": FAKE_SECRET,
            "AWS_SESSION_TOKEN": FAKE_TOKEN}


def fake(**kw):
    return FakeAWS(keys={FAKE_KEY: (FAKE_SECRET, FAKE_TOKEN)}, topics={TOPIC},
                   functions={"kms-handler": None, "kms-handler:prod": None}, **kw)


def sns_messages(f):
    """The messages the fake SNS took, by event id, in the order they came."""
    return [json.loads(e["message"])["id"] for r in f.requests if r.get("entries")
            for e in r["entries"] if "message_id" in e]


def test_sns_fake_signed_with_a_session_token_and_verified(d):
    f = fake()
    try:
        p, dlq = run(d, {"type": "sns", "topic_arn": TOPIC, "endpoint": f.url},
                     [write_jsonl(d, 12)], FAKE_ENV)
        ok_run(p)
        check(dlq == [], "dead letters: %s" % dlq[:2])
        check(all(r["signature_ok"] for r in f.requests), "a signature did not verify")
        check(sorted(sns_messages(f)) == ["ev-%04d" % i for i in range(12)],
              "published: %s" % sns_messages(f))
        check(FAKE_SECRET not in p.stderr + p.stdout and FAKE_TOKEN not in p.stderr + p.stdout,
              "a secret appears in the output")
    finally:
        f.stop()


def test_sns_fake_wrong_secret_is_a_permanent_signature_error(d):
    f = fake()
    try:
        p, dlq = run(d, {"type": "sns", "topic_arn": TOPIC, "endpoint": f.url},
                     [write_jsonl(d, 12)], dict(FAKE_ENV, AWS_SECRET_ACCESS_KEY="not-the-secret"))
        ok_run(p)
        check(sorted(x["event"]["id"] for x in dlq) == ["ev-%04d" % i for i in range(12)] and
              all(x["error_code"] == "SignatureDoesNotMatch" and x["attempts"] == 1
                  for x in dlq), "dead letters: %s" % [(x["error_code"], x["attempts"])
                                                       for x in dlq])
        check("not-the-secret" not in p.stderr + open(os.path.join(d, "dlq.jsonl")).read(),
              "the secret appears in the output")
    finally:
        f.stop()


def test_sns_fake_throttling_and_5xx_are_retried(d):
    f = fake(fault=lambda n, svc, rec: aws_fake.throttled(svc) if n == 1 else
             aws_fake.server_error(svc, 503) if n == 2 else None)
    try:
        p, dlq = run(d, {"type": "sns", "topic_arn": TOPIC, "endpoint": f.url},
                     [write_jsonl(d, 10)], FAKE_ENV)
        ok_run(p)
        check(dlq == [], "dead letters: %s" % dlq[:2])
        check(sorted(sns_messages(f)) == ["ev-%04d" % i for i in range(10)],
              "published: %s" % sns_messages(f))
        check("Throttling" in p.stderr and "ServiceUnavailable" in p.stderr,
              "the failed attempts are not logged with their codes")
    finally:
        f.stop()


def test_sns_fake_partial_batch_failure_retries_only_the_failed_entry(d):
    def entry_result(n, e):
        if n == 1 and e["id"] == "1":
            return ("InternalError", "try again", False)
        if n == 1 and e["id"] == "2":
            return ("InvalidParameter", "bad message", True)
        return None

    f = fake(entry_result=entry_result)
    try:
        p, dlq = run(d, {"type": "sns", "topic_arn": TOPIC, "endpoint": f.url},
                     [write_jsonl(d, 5)], FAKE_ENV)
        ok_run(p)
        first = [json.loads(e["message"])["id"] for e in f.requests[0]["entries"]]
        later = [json.loads(e["message"])["id"] for r in f.requests[1:] for e in r["entries"]]
        check(later == [first[1]], "sent again: %s" % later)
        check([(x["event"]["id"], x["error_code"], x["error_message"]) for x in dlq] ==
              [(first[2], "InvalidParameter", "bad message")], "dead letters: %s" % dlq)
    finally:
        f.stop()


def test_sns_fake_topic_that_does_not_exist_is_permanent(d):
    f = fake()
    try:
        p, dlq = run(d, {"type": "sns", "topic_arn": TOPIC + "-gone", "endpoint": f.url},
                     [write_jsonl(d, 3)], FAKE_ENV)
        ok_run(p)
        check([x["error_code"] for x in dlq] == ["NotFound"] * 3 and
              all(x["attempts"] == 1 for x in dlq), "dead letters: %s" % dlq)
    finally:
        f.stop()


def lambda_sink(f, **kw):
    return dict({"type": "lambda", "function": "kms-handler", "endpoint": f.url,
                 "region": "us-east-1"}, **kw)


def test_lambda_fake_arn_and_qualifier_are_signed_as_aws_verifies_them(d):
    # the path holds the ARN percent-encoded: AWS (and botocore) encode it once more to sign it
    f = fake()
    try:
        p, dlq = run(d, lambda_sink(f, function="arn:aws:lambda:us-east-1:123456789012:function:"
                                    "kms-handler", qualifier="prod",
                                    invocation_type="RequestResponse"),
                     [write_jsonl(d, 4)], FAKE_ENV)
        ok_run(p)
        check(dlq == [], "dead letters: %s" % [(x["error_code"], x["error_message"])
                                               for x in dlq])
        check(len(f.requests) == 4 and all(r["signature_ok"] and r["qualifier"] == "prod" and
                                           r["invocation_type"] == "RequestResponse"
                                           for r in f.requests), "requests: %s" %
              [(r["signature_ok"], r.get("qualifier")) for r in f.requests])
    finally:
        f.stop()


def test_lambda_fake_function_error_is_dead_lettered_or_retried(d):
    f = FakeAWS(keys={FAKE_KEY: (FAKE_SECRET, FAKE_TOKEN)},
                functions={"kms-handler": aws_fake.fails("no such key", "KeyError")})
    try:
        p, dlq = run(d, lambda_sink(f, invocation_type="RequestResponse"), [write_jsonl(d, 2)],
                     FAKE_ENV)
        ok_run(p)
        check([(x["error_code"], x["attempts"]) for x in dlq] == [("FunctionError", 1)] * 2,
              "dead letters: %s" % [(x["error_code"], x["attempts"]) for x in dlq])
        check("Unhandled function error: KeyError: no such key" in dlq[0]["error_message"],
              dlq[0]["error_message"])
        os.unlink(os.path.join(d, "dlq.jsonl"))
        p, dlq = run(d, lambda_sink(f, invocation_type="RequestResponse",
                                    retry_function_errors=True), [write_jsonl(d, 2)], FAKE_ENV,
                     retry={"max_attempts": 3, "initial_backoff_ms": 10, "max_backoff_ms": 20})
        ok_run(p)
        check([(x["error_code"], x["attempts"]) for x in dlq] == [("FunctionError", 3)] * 2,
              "retried: %s" % [(x["error_code"], x["attempts"]) for x in dlq])
    finally:
        f.stop()


def test_lambda_fake_missing_function_throttling_and_bad_signature(d):
    f = fake(fault=lambda n, svc, rec: aws_fake.throttled(svc) if n <= 2 else None)
    try:
        # throttled twice, then every invocation arrives
        p, dlq = run(d, lambda_sink(f), [write_jsonl(d, 3)], FAKE_ENV)
        ok_run(p)
        check(dlq == [], "throttled: dead letters %s" % dlq)
        check("TooManyRequestsException" in p.stderr, "the throttling is not logged")
        # a function that does not exist: permanent, with Lambda's message
        p, dlq = run(d, lambda_sink(f, function="nope"), [write_jsonl(d, 2)], FAKE_ENV)
        check([(x["error_code"], x["attempts"]) for x in dlq] ==
              [("ResourceNotFoundException", 1)] * 2, "missing: %s" % dlq)
        check("Function not found" in dlq[0]["error_message"], dlq[0]["error_message"])
        os.unlink(os.path.join(d, "dlq.jsonl"))
        # a wrong secret: permanent
        p, dlq = run(d, lambda_sink(f), [write_jsonl(d, 2)],
                     dict(FAKE_ENV, AWS_SECRET_ACCESS_KEY="not-the-secret"))
        check([(x["error_code"], x["attempts"]) for x in dlq] ==
              [("InvalidSignatureException", 1)] * 2, "bad signature: %s" % dlq)
    finally:
        f.stop()


def test_sqs_check_reports_bad_options_with_their_place(d):
    cases = [
        ({"queue_url": "https://sqs.us-east-1.amazonaws.com"}, "must name the queue"),
        ({"queue_url": "ftp://x/1/q"}, "scheme"),
        ({"message_attributes": ["$.a%d" % i for i in range(11)]}, "at most 10"),
        ({"message_attributes": ["$.detail.key-id", "$.other.key-id"]}, "both name"),
        ({"message_attributes": ["detail-type"]}, "JSONPath"),
        ({"message_attributes": ["$.detail.key id"]}, "only letters"),
        ({"message_group_id": "<$.detail.key-id"}, "no '>'"),
        ({"batch_size": 11}, "from 1 to 10"),
        ({"access_key_id_env": "KR_X"}, "go together"),
    ]
    check_rejects(d, "sqs", {"queue_url": "https://sqs.us-east-1.amazonaws.com/1/q"}, cases,
                  {"KR_X": "x"})


CASES = [globals()[k] for k in sorted(k for k in globals() if k.startswith("test_"))]


if __name__ == "__main__":
    sys.exit(run_cases(CASES, "aws sinks", "kmsrouter-aws-", __doc__, start=lambda kr: aws_harness.need_moto()))
