"""A fake AWS on loopback that checks SigV4 and speaks SNS Publish/PublishBatch and Lambda Invoke.

moto checks signatures loosely and cannot fail one entry of a batch or throttle on request 3;
FakeAWS can. It is an HTTP/1.1 keep-alive server on 127.0.0.1 and a free port that verifies the
AWS Signature Version 4 of every request with botocore's own signer (only over the headers the
request names in SignedHeaders, with the values received, as AWS does), answers with the error
shapes AWS uses, records every request, and takes hooks for faults:

    fake = FakeAWS(keys={"AKID": ("secret", None)}, topics={TOPIC}, functions={"fn": None},
                   fault=lambda n, service, rec: throttled(service) if n == 2 else None,
                   entry_result=lambda n, e: ("InternalError", "boom", False) if e["id"] == "1"
                   else None)
    ... point the router at fake.url ...
    fake.requests  # [{"n", "service", "signature_ok", "action", "entries", ...}, ...]
    fake.stop()

keys maps an access key id to (secret, session token or None); a request with another key id, or
a token other than the one registered, gets InvalidClientTokenId / UnrecognizedClientException.
topics is a set of topic ARNs (a name ending in .fifo is a FIFO topic). functions maps a function
name (or "name:qualifier") to a behaviour: callable(payload bytes) -> (None or "Handled"/"Unhandled",
response bytes), or None for one that answers null; fails() builds a failing one. fault(n,
service, record) is asked for request n (from 1, all requests) after the signature check; it returns
None, or (status, headers, body) to answer instead (sns_error, lambda_error, throttled and
server_error build AWS's). entry_result(n, entry) decides each SNS entry: None publishes it,
(code, message, sender_fault) fails it (a Failed member in PublishBatch, an error for Publish).

Only python3's standard library, botocore and aws_harness.Served.
"""
import base64
import calendar
import hashlib
import hmac
import http.server
import json
import re
import sys
import threading
import time
import uuid
from urllib.parse import parse_qsl, unquote, urlsplit
from xml.sax.saxutils import escape

from aws_harness import Served
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.compat import HTTPHeaders
from botocore.credentials import Credentials

ACCOUNT = "123456789012"
SNS_NS = "http://sns.amazonaws.com/doc/2010-03-31/"
LAMBDA_PREFIX = "/2015-03-31/"
AUTH_RE = re.compile(r"AWS4-HMAC-SHA256 Credential=([^/,\s]+)/(\d{8})/([^/,\s]+)/([^/,\s]+)/"
                     r"aws4_request,\s*SignedHeaders=([a-z0-9;_.-]+),\s*Signature=([0-9a-f]{64})$")
FUNCTION_RE = re.compile(r"^(?:(?:arn:aws[a-z-]*:lambda:(?P<region>[a-z0-9-]+):)?(?P<acct>\d{12})"
                         r":function:)?(?P<name>[A-Za-z0-9_-]{1,64})"
                         r"(?::(?P<qual>\$LATEST|[A-Za-z0-9_-]{1,128}))?$")
SIG_MISMATCH = ("The request signature we calculated does not match the signature you provided. "
                "Check your AWS Secret Access Key and signing method.")
BAD_TOKEN = "The security token included in the request is invalid."
# kind of authentication failure -> (SNS status, SNS code, Lambda status, Lambda type)
AUTH_ERRORS = {"missing": (403, "MissingAuthenticationToken", 403,
                           "MissingAuthenticationTokenException"),
               "incomplete": (400, "IncompleteSignature", 403, "IncompleteSignatureException"),
               "token": (403, "InvalidClientTokenId", 403, "UnrecognizedClientException"),
               "mismatch": (403, "SignatureDoesNotMatch", 403, "InvalidSignatureException")}


def sns_error(status, code, message, sender=True):
    """An SNS (query protocol) error response: (status, headers, body)."""
    body = ('<ErrorResponse xmlns="%s"><Error><Type>%s</Type><Code>%s</Code><Message>%s</Message>'
            '</Error><RequestId>%s</RequestId></ErrorResponse>'
            % (SNS_NS, "Sender" if sender else "Receiver", escape(code), escape(message),
               uuid.uuid4()))
    return status, {"Content-Type": "text/xml"}, body.encode()


def lambda_error(status, type_, message, kind="User", **extra):
    """A Lambda (REST-JSON) error response: the type in x-amzn-ErrorType, {"Type", "message"}
    in the body (kind=None leaves Type out, as AWS's authentication errors do)."""
    body = dict({"Type": kind} if kind else {}, message=message, **extra)
    return status, {"Content-Type": "application/json", "x-amzn-ErrorType": type_}, \
        json.dumps(body).encode()


def throttled(service):
    """AWS's throttling answer: SNS 400 Throttling, Lambda 429 TooManyRequestsException."""
    if service == "sns":
        return sns_error(400, "Throttling", "Rate exceeded")
    return lambda_error(429, "TooManyRequestsException", "Rate Exceeded.",
                        Reason="ReservedFunctionConcurrentInvocationLimitExceeded")


def server_error(service, status=500):
    """A 500 (InternalError / ServiceException) or 503 (ServiceUnavailable) from AWS's side."""
    if service == "sns":
        return sns_error(status, "InternalError" if status == 500 else "ServiceUnavailable",
                         "Internal Error" if status == 500 else "Service Unavailable", False)
    return lambda_error(status, "ServiceException" if status == 500 else "ServiceUnavailable",
                        "An error occurred (service)", kind="Service")


def fails(message="boom", type_="Error", how="Unhandled"):
    """A function behaviour that fails: X-Amz-Function-Error and an error payload."""
    body = json.dumps({"errorMessage": message, "errorType": type_}).encode()
    return lambda payload: (how, body)


class _Signer(SigV4Auth):
    """botocore's SigV4 over exactly the headers the request signed: botocore leaves out some
    (user-agent, expect, ...) when it signs, but AWS checks whatever the client signed."""

    def headers_to_sign(self, request):
        return request.headers


class FakeAWS(Served):
    EVENT_LIMIT = 256 * 1024          # Invoke payload limits (AWS raised Event's to 1 MB in 2025)
    SYNC_LIMIT = 6 * 1024 * 1024
    BATCH_LIMIT = 256 * 1024          # SNS: all messages and attributes of one request
    SKEW = 15 * 60                    # seconds X-Amz-Date may be off

    def __init__(self, keys, topics=(), functions=None, fault=None, entry_result=None,
                 region="us-east-1"):
        self.keys, self.topics, self.functions = dict(keys), set(topics), dict(functions or {})
        self.fault = fault or (lambda n, service, rec: None)
        self.entry_result = entry_result or (lambda n, entry: None)
        self.region = region
        self.requests = []
        self.n = 0
        self.seq = 10 ** 19
        self.cond = threading.Condition()
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):
                body = b""
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    while True:
                        size = int(self.rfile.readline().split(b";")[0], 16)
                        if not size:  # skip trailers up to the blank line
                            while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                                pass
                            break
                        body += self.rfile.read(size + 2)[:size]
                else:
                    body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                status, headers, payload = outer._handle(self.command, self.path, self.headers,
                                                         body)
                self.send_response(status)
                headers.setdefault("x-amzn-RequestId", str(uuid.uuid4()))
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_PUT = do_DELETE = do_POST

            def log_message(self, *a):
                pass

        class Server(http.server.ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request, client_address):
                if not isinstance(sys.exc_info()[1], ConnectionError):  # a client hung up
                    super().handle_error(request, client_address)

        super().__init__(Handler, Server)

    def wait(self, count, timeout=10):
        """Waits until count requests have been answered; True if they were."""
        with self.cond:
            return self.cond.wait_for(
                lambda: sum(1 for r in self.requests if "status" in r) >= count, timeout)

    # ---- one request --------------------------------------------------------------------------

    def _handle(self, method, target, headers, body):
        path = urlsplit(target).path
        service = "lambda" if path.startswith(LAMBDA_PREFIX) else "sns"
        with self.cond:
            self.n += 1
            rec = {"n": self.n, "service": service, "method": method, "path": target,
                   "headers": dict(headers.items()), "body": body}
            self.requests.append(rec)
        try:
            answer = self._answer(rec, service, method, target, headers, body)
        except Exception as e:  # a bug here or in a behaviour: say so rather than hang up
            answer = (sns_error(500, "InternalError", repr(e), False) if service == "sns"
                      else lambda_error(500, "ServiceException", repr(e), kind="Service"))
        with self.cond:
            rec["status"] = answer[0]
            self.cond.notify_all()
        return answer[0], dict(answer[1]), answer[2]

    def _answer(self, rec, service, method, target, headers, body):
        parse = self._parse_sns if service == "sns" else self._parse_lambda
        early = parse(rec, method, target, headers, body)
        kind, why = self._verify(rec, service, method, target, headers, body)
        rec["signature_ok"] = kind is None
        if kind:
            rec["auth_error"] = why
            st_sns, code_sns, st_l, type_l = AUTH_ERRORS[kind]
            return (sns_error(st_sns, code_sns, why) if service == "sns"
                    else lambda_error(st_l, type_l, why, kind=None))
        f = self.fault(rec["n"], service, rec)
        if f is not None:
            return f
        if early:
            return early
        return self._sns(rec) if service == "sns" else self._lambda(rec)

    def _verify(self, rec, service, method, target, headers, body):
        """None, or (kind, message) of the authentication failure (a key of AUTH_ERRORS)."""
        auth = headers.get("Authorization")
        if not auth:
            return "missing", ("Request is missing Authentication Token" if service == "sns"
                               else "Missing Authentication Token")
        m = AUTH_RE.match(auth.strip())
        if not m:
            return "incomplete", "Authorization header is not a well-formed AWS4-HMAC-SHA256 one: " \
                + auth
        akid, day, region, svc, signed, sig = m.groups()
        rec["access_key"] = akid
        if akid not in self.keys:
            return "token", BAD_TOKEN
        secret, token = self.keys[akid]
        got_token = headers.get("X-Amz-Security-Token")
        if got_token != token:
            return "token", BAD_TOKEN
        signed = signed.split(";")
        if token and "x-amz-security-token" not in signed:
            return "mismatch", "X-Amz-Security-Token is not among the signed headers"
        if "host" not in signed:
            return "incomplete", ("'Host' or ':authority' must be a 'SignedHeader' in the AWS "
                                  "Authorization.")
        stamp = headers.get("X-Amz-Date", "")
        if not re.match(r"^\d{8}T\d{6}Z$", stamp) or "x-amz-date" not in signed:
            return "incomplete", "Authorization requires a signed X-Amz-Date (YYYYMMDDTHHMMSSZ)"
        if day != stamp[:8]:
            return "mismatch", ("Date in Credential scope does not match YYYYMMDD from ISO-8601 "
                                "version of date from HTTP: '%s' != '%s'" % (day, stamp[:8]))
        if region != self.region:
            return "mismatch", "Credential should be scoped to a valid region. (%s)" % region
        if svc != service:
            return "mismatch", "Credential should be scoped to correct service: '%s'." % service
        when = calendar.timegm(time.strptime(stamp, "%Y%m%dT%H%M%SZ"))
        if abs(when - time.time()) > self.SKEW:
            return "mismatch", "Signature expired: %s is not within 15 minutes of now" % stamp
        hdrs = HTTPHeaders()
        for name in signed:
            values = headers.get_all(name)
            if values is None:
                return "mismatch", "Signed header %s is not in the request" % name
            for v in values:
                hdrs[name] = v
        req = AWSRequest(method=method, url="http://%s%s" % (headers.get("Host"), target),
                         data=body)
        req.headers = hdrs
        req.context["timestamp"] = stamp
        signer = _Signer(Credentials(akid, secret, token), service, self.region)
        canonical = signer.canonical_request(req)
        want = signer.signature(signer.string_to_sign(req, canonical), req)
        if not hmac.compare_digest(want, sig):
            rec["canonical_request"] = canonical
            return "mismatch", SIG_MISMATCH
        sha = headers.get("X-Amz-Content-SHA256")
        if sha and sha != hashlib.sha256(body).hexdigest():
            return "mismatch", "X-Amz-Content-SHA256 is not the SHA-256 of the body"
        return None, None

    # ---- SNS ----------------------------------------------------------------------------------

    @staticmethod
    def _entry(p, prefix):
        """One message: {id, message, subject, group_id, dedup_id, structure, attributes}."""
        attrs, i = {}, 1
        while prefix + "MessageAttributes.entry.%d.Name" % i in p:
            a = prefix + "MessageAttributes.entry.%d." % i
            dtype = p.get(a + "Value.DataType")
            value = p.get(a + "Value.StringValue")
            if a + "Value.BinaryValue" in p:
                value = base64.b64decode(p[a + "Value.BinaryValue"])
            attrs[p[a + "Name"]] = (dtype, value)
            i += 1
        return {"id": p.get(prefix + "Id"), "message": p.get(prefix + "Message"),
                "subject": p.get(prefix + "Subject"), "group_id": p.get(prefix + "MessageGroupId"),
                "dedup_id": p.get(prefix + "MessageDeduplicationId"),
                "structure": p.get(prefix + "MessageStructure"), "attributes": attrs}

    def _parse_sns(self, rec, method, target, headers, body):
        ctype = headers.get("Content-Type", "")
        form = ctype.split(";")[0].strip().lower() == "application/x-www-form-urlencoded"
        p = dict(parse_qsl(urlsplit(target).query, keep_blank_values=True))
        if form:
            p.update(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
        rec.update(params=p, action=p.get("Action"), version=p.get("Version"),
                   topic=p.get("TopicArn"))
        if rec["action"] == "PublishBatch":
            entries, i = [], 1
            while "PublishBatchRequestEntries.member.%d.Id" % i in p:
                entries.append(self._entry(p, "PublishBatchRequestEntries.member.%d." % i))
                i += 1
            rec["entries"] = entries
        elif rec["action"] == "Publish":
            rec["entries"] = [self._entry(p, "")]
        if method != "POST" or urlsplit(target).path != "/":
            return sns_error(404, "InvalidAction", "Unknown operation %s %s" % (method, target))
        if not rec["action"]:
            return sns_error(400, "MissingAction", "Missing Action")
        if rec["action"] not in ("Publish", "PublishBatch"):
            return sns_error(400, "InvalidAction",
                             "The action %s is not valid for this endpoint." % rec["action"])
        return None

    def _sns_check(self, rec):
        """The request's error response, or None."""
        entries, batch = rec["entries"], rec["action"] == "PublishBatch"
        if not rec["topic"]:
            return sns_error(400, "InvalidParameter", "Invalid parameter: TopicArn")
        if rec["topic"] not in self.topics:
            return sns_error(404, "NotFound", "Topic does not exist")
        if batch and not entries:
            return sns_error(400, "EmptyBatchRequest",
                             "The batch request doesn't contain any entries.")
        if len(entries) > 10:
            return sns_error(400, "TooManyEntriesInBatchRequest",
                             "The batch request contains more entries than permissible.")
        ids = [e["id"] for e in entries]
        if batch and len(set(ids)) != len(ids):
            return sns_error(400, "BatchEntryIdsNotDistinct",
                             "Two or more batch entries in the request have the same Id.")
        if batch and not all(re.match(r"^[A-Za-z0-9_-]{1,80}$", i) for i in ids):
            return sns_error(400, "InvalidBatchEntryId", "The Id of a batch entry in a batch "
                             "request doesn't abide by the specification.")
        size = 0
        for e in entries:
            if not e["message"]:
                return sns_error(400, "InvalidParameter", "Invalid parameter: Empty message")
            if len(e["attributes"]) > 10:
                return sns_error(400, "InvalidParameterValue", "Number of message attributes "
                                 "[%d] exceeds the allowed maximum [10]." % len(e["attributes"]))
            if rec["topic"].endswith(".fifo") and not e["group_id"]:
                return sns_error(400, "InvalidParameter", "Invalid parameter: The MessageGroupId "
                                 "parameter is required for FIFO topics")
            size += len(e["message"].encode())
            for name, (dtype, value) in e["attributes"].items():
                value = value if isinstance(value, bytes) else (value or "").encode()
                size += len(name.encode()) + len((dtype or "").encode()) + len(value)
        if size > self.BATCH_LIMIT:
            return (sns_error(400, "BatchRequestTooLong", "The length of all the messages put "
                              "together is more than the limit.") if batch else
                    sns_error(400, "InvalidParameter",
                              "Invalid parameter: Message too long"))
        return None

    def _sns(self, rec):
        err = self._sns_check(rec)
        if err:
            return err
        fifo, ok, failed = rec["topic"].endswith(".fifo"), [], []
        for e in rec["entries"]:
            r = self.entry_result(rec["n"], e)
            if r is not None:
                e["result"] = r
                failed.append("<member><Id>%s</Id><Code>%s</Code><Message>%s</Message>"
                              "<SenderFault>%s</SenderFault></member>"
                              % (escape(e["id"] or ""), escape(r[0]), escape(r[1]),
                                 "true" if r[2] else "false"))
                continue
            e["message_id"] = str(uuid.uuid4())
            seq = ""
            if fifo:
                with self.cond:
                    self.seq += 1000
                    seq = "<SequenceNumber>%d</SequenceNumber>" % self.seq
            ok.append((e, seq))
        meta = "<ResponseMetadata><RequestId>%s</RequestId></ResponseMetadata>" % uuid.uuid4()
        if rec["action"] == "Publish":
            if failed:
                code, message, sender = rec["entries"][0]["result"]
                return sns_error(400 if sender else 500, code, message, sender)
            e, seq = ok[0]
            xml = ('<PublishResponse xmlns="%s"><PublishResult><MessageId>%s</MessageId>%s'
                   '</PublishResult>%s</PublishResponse>' % (SNS_NS, e["message_id"], seq, meta))
        else:
            xml = ('<PublishBatchResponse xmlns="%s"><PublishBatchResult><Successful>%s'
                   '</Successful><Failed>%s</Failed></PublishBatchResult>%s'
                   '</PublishBatchResponse>'
                   % (SNS_NS, "".join("<member><Id>%s</Id><MessageId>%s</MessageId>%s</member>"
                                      % (escape(e["id"]), e["message_id"], seq) for e, seq in ok),
                      "".join(failed), meta))
        return 200, {"Content-Type": "text/xml"}, xml.encode()

    # ---- Lambda -------------------------------------------------------------------------------

    def _parse_lambda(self, rec, method, target, headers, body):
        parts = urlsplit(target)
        m = re.match(r"^%sfunctions/([^/]+)/invocations$" % LAMBDA_PREFIX, parts.path)
        q = dict(parse_qsl(parts.query, keep_blank_values=True))
        rec.update(function_name=unquote(m.group(1)) if m else None, function=None,
                   qualifier=q.get("Qualifier"), payload=body,
                   invocation_type=headers.get("X-Amz-Invocation-Type"))
        if method != "POST" or not m:
            return lambda_error(404, "UnknownOperationException", "Unknown operation")
        f = FUNCTION_RE.match(rec["function_name"])
        if not f:
            return lambda_error(400, "ValidationException", "1 validation error detected: Value "
                                "'%s' at 'functionName' failed to satisfy constraint"
                                % rec["function_name"])
        rec["function"] = f.group("name")
        if f.group("qual"):
            if rec["qualifier"] not in (None, f.group("qual")):
                return lambda_error(400, "InvalidParameterValueException", "The derived qualifier "
                                    "from the function name does not match the specified "
                                    "qualifier.")
            rec["qualifier"] = f.group("qual")
        arn = "arn:aws:lambda:%s:%s:function:%s%s" % (
            f.group("region") or self.region, f.group("acct") or ACCOUNT, f.group("name"),
            ":" + rec["qualifier"] if rec["qualifier"] else "")
        if (f.group("region") or self.region) != self.region or \
                (f.group("acct") or ACCOUNT) != ACCOUNT or \
                not ({rec["function"], "%s:%s" % (rec["function"], rec["qualifier"])}
                     & set(self.functions)):
            return lambda_error(404, "ResourceNotFoundException", "Function not found: " + arn)
        return None

    def _lambda(self, rec):
        itype, payload = rec["invocation_type"] or "RequestResponse", rec["payload"]
        if itype not in ("Event", "RequestResponse", "DryRun"):
            return lambda_error(400, "ValidationException", "1 validation error detected: Value "
                                "'%s' at 'invocationType' failed to satisfy constraint: Member "
                                "must satisfy enum value set: [Event, RequestResponse, DryRun]"
                                % itype)
        limit = self.EVENT_LIMIT if itype == "Event" else self.SYNC_LIMIT
        if len(payload) > limit:
            return lambda_error(413, "RequestTooLargeException", "Request must be smaller than %d "
                                "bytes for the %s operation" % (limit, "InvokeAsync" if itype ==
                                                                "Event" else "InvokeFunction"))
        try:
            if payload.strip():
                json.loads(payload)
        except ValueError as e:
            return lambda_error(400, "InvalidRequestContentException",
                                "Could not parse request body into json: %s" % e)
        if itype != "RequestResponse":
            return 202 if itype == "Event" else 204, {}, b""
        version = rec["qualifier"] if (rec["qualifier"] or "").isdigit() else "$LATEST"
        key = "%s:%s" % (rec["function"], rec["qualifier"])
        behaviour = self.functions.get(key, self.functions.get(rec["function"]))
        error, out = behaviour(payload) if behaviour else (None, b"null")
        headers = {"Content-Type": "application/json", "X-Amz-Executed-Version": version}
        if error:
            headers["X-Amz-Function-Error"] = error
        rec["function_error"] = error
        return 200, headers, out
