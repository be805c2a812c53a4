"""A real Kafka-protocol peer for integration tests: kafka-mock (tests/kafka/kafka_mock.c, which
runs librdkafka's mock cluster on loopback), and kcat to produce and consume.

kcat is a Debian package (apt-get install kcat); kafka-mock is built with kmsrouter, as
build/tests/kafka/kafka-mock. Where either is missing the Kafka tests skip (exit 77, meson's
"skipped") saying what is missing, unless KR_REQUIRE_KAFKA=1, which makes its absence a failure.

The mock keeps everything in memory and speaks enough of the protocol for producers, low-level
consumers and consumer groups; it has no Admin API (topics are created through kafka-mock) and
no authentication.
"""
import json
import os
import queue
import shutil
import subprocess
import sys
import tempfile
import threading

SKIP = 77

# Produce (-P) reads KEY US VALUE RS KEY US VALUE ... from stdin: ASCII unit and record separators,
# which neither JSON events nor the tests' keys contain. A record without US has a null key.
KEY_DELIM = b"\x1f"
MSG_DELIM = b"\x1e"


def missing(msg):
    """Exits 77 (skip), or 1 when KR_REQUIRE_KAFKA=1, saying what is missing."""
    if os.environ.get("KR_REQUIRE_KAFKA") == "1":
        print("FAIL: " + msg)
        sys.exit(1)
    print("SKIP: " + msg)
    sys.exit(SKIP)


def need_kcat():
    """Exits 77 (skip) when kcat is not on PATH, or fails when KR_REQUIRE_KAFKA=1."""
    if not shutil.which("kcat"):
        missing("kcat is not installed: the Kafka tests need it (apt-get install kcat)")


def find_kafka_mock(kmsrouter_path):
    """The kafka-mock built next to kmsrouter (BUILD/kmsrouter -> BUILD/tests/kafka/kafka-mock),
    or None."""
    build = os.path.dirname(os.path.abspath(kmsrouter_path))
    path = os.path.join(build, "tests", "kafka", "kafka-mock")
    return path if os.access(path, os.X_OK) else None


def need_kafka(kmsrouter_path):
    """need_kcat(), and returns the path of kafka-mock; exits 77 (skip) when it was not built,
    or fails when KR_REQUIRE_KAFKA=1."""
    need_kcat()
    mock = find_kafka_mock(kmsrouter_path)
    if mock is None:
        missing("kafka-mock was not built next to %s: it needs librdkafka-dev "
                 "(apt-get install librdkafka-dev, then reconfigure)" % kmsrouter_path)
    return mock


class KafkaMockError(RuntimeError):
    """kafka-mock answered `error: ...`, exited, or did not answer in time."""


class KafkaMock:
    """kafka-mock with `brokers` brokers (ids 1..brokers) and `topics` {name: partitions}:
    .bootstrap ("127.0.0.1:PORT,..."), .command(line), .stop(). A context manager.

    Its stderr (librdkafka's warnings) goes to a temporary file: .log_text()."""

    def __init__(self, binary, brokers=1, topics=None, timeout=10):
        argv = [binary, "--brokers", str(brokers)]
        for name, partitions in (topics or {}).items():
            argv += ["--topic", "%s:%d" % (name, partitions)]
        self.log = tempfile.NamedTemporaryFile(prefix="kafka-mock-", suffix=".log", delete=False)
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=self.log, text=True, bufsize=1)
        # A thread reads the replies, so that each wait can have a timeout.
        self.lines = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        try:
            first = self._reply(timeout)
            if not first.startswith("bootstrap="):
                raise KafkaMockError("kafka-mock said %r" % first)
        except KafkaMockError:
            self.stop()
            raise
        self.bootstrap = first[len("bootstrap="):]

    def _read(self):
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def _reply(self, timeout):
        try:
            line = self.lines.get(timeout=timeout)
        except queue.Empty:
            raise KafkaMockError("kafka-mock did not answer within %g s" % timeout) from None
        if line is None:
            raise KafkaMockError("kafka-mock exited (%s): %s"
                                 % (self.proc.wait(), self.log_text()[-500:]))
        return line

    def command(self, line, timeout=10):
        """Sends one command (see kafka_mock.c: `topic NAME PARTITIONS`, `errors APIKEY COUNT
        ERRCODE`, `broker-down ID`, `broker-up ID`, `rtt ID MS`) and returns the reply; raises
        KafkaMockError on `error: ...`."""
        try:
            self.proc.stdin.write(line + "\n")
            self.proc.stdin.flush()
        except (BrokenPipeError, ValueError):
            raise KafkaMockError("kafka-mock is not running (%r)" % line) from None
        reply = self._reply(timeout)
        if reply.startswith("error:"):
            raise KafkaMockError("%s: %s" % (line, reply))
        return reply

    def log_text(self):
        with open(self.log.name, errors="replace") as f:
            return f.read()

    def stop(self):
        """Sends quit and waits; kills it after 5 s. Safe to call twice."""
        if self.proc.poll() is None:
            try:
                self.proc.stdin.write("quit\n")
                self.proc.stdin.close()
            except (BrokenPipeError, ValueError):
                pass
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if not self.log.closed:
            self.log.close()
            os.unlink(self.log.name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


def _bytes(s):
    return s if isinstance(s, bytes) else s.encode()


def produce(bootstrap, topic, messages, timeout=30, extra=()):
    """Produces messages, a list of (key or None, value) with str or bytes, with one kcat call
    (the default partitioner: a key always goes to the same partition). Keys and values must
    not contain \\x1e or \\x1f, and a null-key value must not be empty. extra: more kcat
    arguments (e.g. ["-H", "name=value"], ["-p", "0"]). Raises RuntimeError when kcat fails
    (a message it could not deliver)."""
    records = []
    for key, value in messages:
        parts = [_bytes(value)] if key is None else [_bytes(key), _bytes(value)]
        if any(KEY_DELIM in b or MSG_DELIM in b for b in parts) or parts == [b""]:
            raise ValueError("kcat cannot send %r in one call" % ((key, value),))
        records.append(KEY_DELIM.join(parts))
    argv = ["kcat", "-P", "-b", bootstrap, "-t", topic,
            "-K", "\\x1f", "-D", "\\x1e"] + list(extra)
    r = subprocess.run(argv, input=MSG_DELIM.join(records), capture_output=True,
                       timeout=timeout)
    if r.returncode != 0:
        raise RuntimeError("kcat -P exited %d: %s"
                           % (r.returncode, r.stderr.decode(errors="replace")))


def consume(bootstrap, topic, count, timeout=10, wait=False, extra=()):
    """Reads up to count messages of topic from the beginning with kcat -J, and returns them as
    dicts: partition, offset, key (str or None), payload (str or None), headers (a list of
    (name, value) pairs, in order; names may repeat), ts (ms). Bytes that are not UTF-8 come back
    as surrogates: s.encode("utf-8", "surrogateescape") gives the bytes.

    kcat stops at the end of every partition (-e), so a message still being produced may be
    missing; wait=True instead waits until count messages arrived, or timeout (for a producer
    that is still sending). Either way, what arrived before the timeout is returned."""
    # -u: kcat's stdout unbuffered, or a kill at the timeout would lose what it had read.
    argv = ["kcat", "-C", "-q", "-u", "-J", "-b", bootstrap, "-t", topic, "-o", "beginning",
            "-c", str(count)] + (["-e"] if not wait else []) + list(extra)
    p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        out, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        out, err = p.communicate()
    else:
        if p.returncode != 0:
            raise RuntimeError("kcat -C exited %d: %s"
                               % (p.returncode, err.decode(errors="replace")))
    messages = []
    for line in out.decode("utf-8", "surrogateescape").splitlines():
        m = json.loads(line)
        h = m.get("headers") or []
        messages.append({
            "partition": m["partition"], "offset": m["offset"], "key": m.get("key"),
            "payload": m.get("payload"), "headers": list(zip(h[0::2], h[1::2])),
            "ts": m.get("ts"),
        })
    return messages
