"""Real AWS parts for integration tests: moto_server on loopback, and a fault-injecting proxy.

moto is not a Debian package. Where `moto_server` is not on PATH the AWS tests skip (exit 77,
meson's "skipped") saying what to install, unless KR_REQUIRE_MOTO=1 (set by .ci/run), which
makes its absence a failure.
"""
import http.client
import http.server
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from testlib import free_port  # noqa: E402

SKIP = 77
REGION = "us-east-1"



VENV = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", ".venv-aws", "bin")


def need_moto():
    """Exits 77 (skip) when moto_server is missing, or fails when KR_REQUIRE_MOTO=1. Where
    scripts/install-deps.sh put moto into .venv-aws, runs the test again with that Python."""
    have_boto = True
    try:
        import boto3  # noqa: F401
    except ImportError:
        have_boto = False
    if not (shutil.which("moto_server") and have_boto) and os.path.exists(
            os.path.join(VENV, "moto_server")) and not os.environ.get("KR_IN_VENV"):
        env = dict(os.environ, KR_IN_VENV="1", PATH=VENV + os.pathsep + os.environ["PATH"])
        py = os.path.join(VENV, "python3")
        os.execve(py, [py] + sys.argv, env)
    if shutil.which("moto_server"):
        try:
            import boto3  # noqa: F401
            return
        except ImportError:
            what = "boto3"
    else:
        what = "moto_server"
    msg = ("%s is not installed: the AWS tests need moto[server] and boto3 "
           "(pip install 'moto[server]' boto3)" % what)
    if os.environ.get("KR_REQUIRE_MOTO") == "1":
        print("FAIL: " + msg)
        sys.exit(1)
    print("SKIP: " + msg)
    sys.exit(SKIP)


class Moto:
    """moto_server on 127.0.0.1 and a free port. auth_after=N turns on SigV4 and IAM checks
    after N requests (INITIAL_NO_AUTH_ACTION_COUNT): the setup's own calls."""

    def __init__(self, auth_after=None):
        self.port = free_port()
        self.url = "http://127.0.0.1:%d" % self.port
        self.log = tempfile.NamedTemporaryFile(prefix="moto-", suffix=".log", delete=False)
        env = dict(os.environ)
        if auth_after is not None:
            env["INITIAL_NO_AUTH_ACTION_COUNT"] = str(auth_after)
        self.proc = subprocess.Popen(["moto_server", "-H", "127.0.0.1", "-p", str(self.port)],
                                     stdout=self.log, stderr=subprocess.STDOUT, env=env)
        deadline = time.time() + 30
        while time.time() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return
            except OSError:
                if self.proc.poll() is not None:
                    break
                time.sleep(0.1)
        self.stop()
        raise RuntimeError("moto_server did not start: %s" % self.log_text()[-500:])

    def client(self, service, key="testing", secret="testing"):
        import boto3
        return boto3.client(service, region_name=REGION, endpoint_url=self.url,
                            aws_access_key_id=key, aws_secret_access_key=secret)

    def log_text(self):
        with open(self.log.name, errors="replace") as f:
            return f.read()

    def requests(self, pattern=r'"POST / HTTP'):
        """Requests moto logged whose line matches pattern."""
        return len(re.findall(pattern, self.log_text()))

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        os.unlink(self.log.name)


class Served:
    """A threaded HTTP/1.1 server of handler (a BaseHTTPRequestHandler class) on 127.0.0.1 and
    a free port: .url, .port, .stop(). server: the server class."""

    def __init__(self, handler, server=http.server.ThreadingHTTPServer):
        self.httpd = server(("127.0.0.1", 0), handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.url = "http://127.0.0.1:%d" % self.port
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()


class FaultProxy(Served):
    """A loopback HTTP proxy in front of a service: fault(n, body) for request n (from 1) returns
    None to forward it, or (status, headers, body) to answer instead; rewrite(n, status, body)
    may change a forwarded response's body. .requests keeps each request's (body, headers), and
    .paths its path."""

    def __init__(self, target_port, fault=None, rewrite=None):
        self.fault = fault or (lambda n, body: None)
        self.rewrite = rewrite
        self.n = 0
        self.answered = 0  # requests the proxy answered itself
        self.requests = []
        self.paths = []
        self.lock = threading.Lock()
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # an answer goes out in one write, head and body, as a server's would (unbuffered,
            # they are two segments, and the client wakes up twice for one answer)
            wbufsize = 1 << 20

            def do_POST(self):
                length = int(self.headers.get("Content-Length", 0))
                body = self.rfile.read(length)
                with outer.lock:
                    outer.n += 1
                    n = outer.n
                    outer.requests.append((body, dict(self.headers)))
                    outer.paths.append(self.path)
                f = outer.fault(n, body)
                if f is not None:
                    with outer.lock:
                        outer.answered += 1
                    status, headers, payload = f
                else:
                    c = http.client.HTTPConnection("127.0.0.1", target_port, timeout=30)
                    c.request("POST", self.path, body=body, headers=dict(self.headers))
                    r = c.getresponse()
                    payload = r.read()
                    status = r.status
                    headers = {k: v for k, v in r.getheaders()
                               if k.lower() not in ("content-length", "transfer-encoding",
                                                    "connection", "server", "date")}
                    c.close()
                    if outer.rewrite:
                        payload = outer.rewrite(n, status, payload)
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *a):
                pass

        super().__init__(Handler)
