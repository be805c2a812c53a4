#!/usr/bin/env python3
"""The Grafana dashboard (dist/grafana/kmsrouter-dashboard.json) and the Prometheus alerting
rules (dist/prometheus/kmsrouter-alerts.yml) against what kmsrouter really exports.

    python3 tests/integration/observability_test.py PATH_TO_KMSROUTER [CASE]

Cases (all of them without CASE; a whole name runs one, as meson registers them):

  alert_rules_pass_promtool_check       `promtool check rules` accepts the alerts file, and it
                                        finds as many rules as this script's reader does
  alert_rules_unit_tests_pass           `promtool test rules` on kmsrouter-alerts.test.yml
  alert_rules_have_for_severity_and_annotations
                                        every alert has for:, a severity label, a summary and a
                                        description
  dashboard_is_well_formed              valid JSON, unique panel ids, every panel with a data
                                        source and targets with a non-empty expr, template
                                        variables defined, panels inside the grid, no overlap
  dashboard_queries_are_valid_promql    every dashboard query (Grafana variables filled in) is
                                        PromQL that `promtool check rules` accepts
  queries_use_only_series_and_labels_the_binary_exports
                                        runs `kmsrouter run` with metrics on (a file source, an
                                        sqs source on a loopback fake SQS, a failing sink with a
                                        dead letter, an unmatched sink, a failed reload), scrapes
                                        /metrics (`promtool check metrics` accepts it) and checks
                                        every metric name, label and literal label value the
                                        dashboard, the alerts and the alert unit tests use
                                        against the scrape, and that together they show every
                                        family the binary exports
  queries_evaluate_in_prometheus_scraping_the_binary
                                        a real Prometheus scrapes that router with the alerts
                                        loaded: every dashboard query evaluates, returns series
                                        where the series it reads have samples, with the labels
                                        its legend names; every alert evaluates without error,
                                        and the alerts for dead letters, failing sinks, queue
                                        lag, invalid records and failed reloads go pending or
                                        firing while the others stay inactive

The promtool and Prometheus cases exit 77 (meson: skipped) when promtool or prometheus (Debian:
prometheus) is not on PATH; with KR_REQUIRE_PROMETHEUS=1 that is a failure. KR_DASHBOARD and
KR_ALERTS name other files to check instead of the ones in dist/ (to see a defect caught: a copy
with a metric misspelled).
Prints `ok NAME`, `skip NAME: why` or `FAIL NAME: reason` per case; exits 1 if any failed,
else 77 if any was skipped, else 0. Python 3 standard library only.
"""
import hashlib
import http.server
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from testlib import Failure, Skip, check, free_port, http_get, run_cases  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, '..', '..'))
EVENTS_DIR = os.path.join(ROOT, 'tests', 'data', 'events')
DASHBOARD = os.path.abspath(os.environ.get('KR_DASHBOARD') or os.path.join(
    ROOT, 'dist', 'grafana', 'kmsrouter-dashboard.json'))
ALERTS = os.path.abspath(os.environ.get('KR_ALERTS') or os.path.join(
    ROOT, 'dist', 'prometheus', 'kmsrouter-alerts.yml'))
ALERT_TESTS = os.path.join(ROOT, 'dist', 'prometheus', 'kmsrouter-alerts.test.yml')
KR = None  # the binary under test (argv[1])

# Series Prometheus itself makes for every target, with the labels it gives them; and the
# labels it adds to every series it scrapes (the target's). Neither comes from /metrics.
PROMETHEUS_SERIES = {'up': {'job', 'instance'}}
TARGET_LABELS = {'job', 'instance'}
# Grafana's own variables, with a value of the kind they take
GRAFANA_DURATIONS = {'__rate_interval': '5m', '__interval': '1m', '__range': '6h',
                     '__range_s': '21600', '__interval_ms': '60000', '__range_ms': '21600000'}
SEVERITIES = {'critical', 'warning', 'info'}



def rel(path):
    return os.path.relpath(path, ROOT) if path.startswith(ROOT + os.sep) else path


# ---------------------------------------------------------------- a YAML subset

class YamlError(Failure):
    pass


def _unquote(s, path, lineno):
    """A scalar: double-quoted (JSON-like escapes), single-quoted ('' for ') or plain."""
    if s.startswith('"'):
        out, i = [], 1
        esc = {'"': '"', '\\': '\\', 'n': '\n', 't': '\t', '/': '/'}
        while i < len(s) and s[i] != '"':
            if s[i] == '\\':
                if i + 1 >= len(s) or s[i + 1] not in esc:
                    raise YamlError('%s:%d: unsupported escape in a double-quoted string'
                                    % (path, lineno))
                out.append(esc[s[i + 1]])
                i += 2
            else:
                out.append(s[i])
                i += 1
        if i >= len(s) or s[i + 1:].strip():
            raise YamlError('%s:%d: a double-quoted string must end on its line, and nothing may '
                            'follow it' % (path, lineno))
        return ''.join(out)
    if s.startswith("'"):
        m = re.fullmatch(r"'((?:[^']|'')*)'", s)
        if not m:
            raise YamlError('%s:%d: a single-quoted string must end on its line' % (path, lineno))
        return m.group(1).replace("''", "'")
    if s[:1] in ('{', '[', '&', '*', '!', '>', '|', '%', '@', '`'):
        raise YamlError('%s:%d: %r: this reader takes only plain, quoted and "|" block scalars '
                        '(promtool reads the whole YAML; keep this file in the simple form)'
                        % (path, lineno, s[:20]))
    return s


def parse_yaml_subset(text, path):
    """Block mappings and sequences, plain and quoted scalars and `|` block scalars: the form
    the alerts file keeps to, so that it is read without PyYAML. Anything else is an error
    naming FILE:LINE. Returns (tree, {id(mapping): line of its first key})."""
    lines = []  # (lineno, indent, text)
    for n, raw in enumerate(text.split('\n'), 1):
        if '\t' in raw[:len(raw) - len(raw.lstrip())]:
            raise YamlError('%s:%d: a tab in the indentation' % (path, n))
        lines.append((n, len(raw) - len(raw.lstrip(' ')), raw.rstrip()))
    where = {}
    pos = [0]

    def skip_blank():
        while pos[0] < len(lines):
            _, _, t = lines[pos[0]]
            if t.strip() == '' or t.strip().startswith('#'):
                pos[0] += 1
            else:
                return True
        return False

    def block_scalar(parent_indent, style):
        body = []
        while pos[0] < len(lines):
            n, ind, t = lines[pos[0]]
            if t.strip() and ind <= parent_indent:
                break
            body.append((ind, t))
            pos[0] += 1
        while body and not body[-1][1].strip():
            body.pop()
        if not body:
            return ''
        cut = min(ind for ind, t in body if t.strip())
        text = '\n'.join(t[cut:] for _, t in body)
        return text if style == '|-' else text + '\n'

    def value(rest, indent, n):
        rest = rest.strip()
        if rest in ('|', '|-'):
            return block_scalar(indent, rest)
        if rest == '':
            if not skip_blank():
                return None
            _, ind, t = lines[pos[0]]
            if ind > indent or (ind == indent and t.strip().startswith('- ')):
                return node(ind)
            return None
        v = _unquote(rest, path, n)
        # a plain scalar may not go on over further lines here
        save = pos[0]
        if skip_blank() and lines[pos[0]][1] > indent and not rest.startswith(('"', "'")):
            raise YamlError('%s:%d: a plain scalar continued on the next line: quote it or use |'
                            % (path, lines[pos[0]][0]))
        pos[0] = save
        return v

    def mapping(indent, first=None):
        m = {}
        while True:
            if first is not None:
                n, t = first
                first = None
            else:
                if not skip_blank():
                    break
                n, ind, t = lines[pos[0]]
                if ind < indent:
                    break
                if ind > indent:
                    raise YamlError('%s:%d: unexpected indentation' % (path, n))
                if t.strip().startswith('- '):
                    break
                t = t.strip()
                pos[0] += 1
            k, sep, rest = t.partition(':')
            if not sep or not re.fullmatch(r'[A-Za-z_][A-Za-z0-9_.-]*', k) or (
                    rest and not rest.startswith(' ')):
                raise YamlError('%s:%d: expected KEY: VALUE, got %r' % (path, n, t[:40]))
            if k in m:
                raise YamlError('%s:%d: key %r repeated' % (path, n, k))
            if not m:
                where[id(m)] = n
            m[k] = value(rest, indent, n)
        return m

    def sequence(indent):
        seq = []
        while skip_blank():
            n, ind, t = lines[pos[0]]
            if ind != indent or not t.strip().startswith('- '):
                if ind > indent:
                    raise YamlError('%s:%d: unexpected indentation' % (path, n))
                break
            pos[0] += 1
            item = t.strip()[2:].strip()
            if re.match(r'[A-Za-z_][A-Za-z0-9_.-]*:( |$)', item):
                seq.append(mapping(indent + 2, (n, item)))
            else:
                seq.append(_unquote(item, path, n))
        return seq

    def node(indent):
        _, _, t = lines[pos[0]]
        return sequence(indent) if t.strip().startswith('- ') else mapping(indent)

    if not skip_blank():
        raise YamlError('%s: empty' % path)
    tree = node(lines[pos[0]][1])
    if skip_blank():
        raise YamlError('%s:%d: unexpected text' % (path, lines[pos[0]][0]))
    return tree, where


def alert_rules(path):
    """[(group, rule mapping, line)] of the alerts file."""
    with open(path) as f:
        tree, where = parse_yaml_subset(f.read(), rel(path))
    check(isinstance(tree, dict) and isinstance(tree.get('groups'), list) and tree['groups'],
          '%s: no "groups" list at the top' % path)
    out = []
    for g in tree['groups']:
        check(isinstance(g, dict) and isinstance(g.get('rules'), list),
              '%s:%s: a group without a "rules" list' % (path, where.get(id(g), '?')))
        for r in g['rules']:
            check(isinstance(r, dict), '%s: a rule that is not a mapping in group %s'
                  % (path, g.get('name')))
            out.append((g.get('name'), r, where.get(id(r), '?')))
    return out


# ---------------------------------------------------------------- PromQL

AGGREGATIONS = {'sum', 'min', 'max', 'avg', 'group', 'stddev', 'stdvar', 'count',
                'count_values', 'bottomk', 'topk', 'quantile', 'limitk', 'limit_ratio'}
KEYWORDS = {'by', 'without', 'on', 'ignoring', 'group_left', 'group_right', 'bool', 'offset',
            'and', 'or', 'unless', 'atan2', 'inf', 'nan', 'start', 'end'}
TOKEN = re.compile(r'''
    (?P<ws>\s+|\#[^\n]*)
  | (?P<str>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`)
  | (?P<num>(?:\d+(?:ms|[smhdwy]))+|0[xX][0-9a-fA-F]+|(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)
  | (?P<id>[A-Za-z_:][A-Za-z0-9_:]*)
  | (?P<op>==|!=|<=|>=|=~|!~|[-+*/%^<>=(){}\[\],@:])
''', re.X)


def grafana_substitute(expr):
    """Fills Grafana's variables in: its time variables with a duration, the dashboard's own
    ($job, ${instance}, [[sink]], ${sink:regex}) with a regex that matches everything. Returns
    (expr, names of the dashboard variables used)."""
    used = set()

    def repl(m):
        name = m.group(1) or m.group(2) or m.group(3)
        if name in GRAFANA_DURATIONS:
            return GRAFANA_DURATIONS[name]
        used.add(name)
        return '.*'
    out = re.sub(r'\$\{([A-Za-z_]\w*)(?::\w+)?\}|\$([A-Za-z_]\w*)|\[\[([A-Za-z_]\w*)\]\]',
                 repl, expr)
    return out, used


def _string_value(tok):
    s = tok[1:-1]
    if tok[0] == '`':
        return s
    return re.sub(r'\\(.)', lambda m: {'n': '\n', 't': '\t'}.get(m.group(1), m.group(1)), s)


def tokenize(expr, where):
    toks, i = [], 0
    while i < len(expr):
        m = TOKEN.match(expr, i)
        if not m:
            raise Failure('%s: cannot read the query at column %d: %r'
                          % (where, i + 1, expr[i:i + 20]))
        kind = m.lastgroup
        if kind != 'ws':
            toks.append((kind, m.group(), i))
        i = m.end()
    return toks


def _close(toks, i, where):
    """Index of the bracket closing the one at i."""
    pairs = {'(': ')', '[': ']', '{': '}'}
    want, depth = pairs[toks[i][1]], 0
    for j in range(i, len(toks)):
        if toks[j][1] == toks[i][1]:
            depth += 1
        elif toks[j][1] == want:
            depth -= 1
            if depth == 0:
                return j
    raise Failure('%s: the %r at column %d is not closed' % (where, toks[i][1], toks[i][2] + 1))


def analyse(expr, where):
    """What a PromQL expression uses: selectors [(metric, [(label, op, value)], token index)],
    and label lists [(clause, [labels], (first, last) token range it applies to)]. The range of
    `by`/`without` is the aggregation's argument; that of `on`/`ignoring`/`group_*` the whole
    expression."""
    toks = tokenize(expr, where)
    sels, clauses = [], []
    i = 0
    while i < len(toks):
        kind, text, _ = toks[i]
        nxt = toks[i + 1][1] if i + 1 < len(toks) else None
        if kind == 'op' and text == '[':  # a range or subquery: durations only
            i = _close(toks, i, where) + 1
            continue
        if kind == 'id' and text.lower() in KEYWORDS:
            if text in ('by', 'without', 'on', 'ignoring', 'group_left', 'group_right') \
                    and nxt == '(':
                j = _close(toks, i + 1, where)
                labels = [t[1] for t in toks[i + 2:j] if t[0] in ('id', 'str')]
                labels = [_string_value(l) if l[0] in '"\'`' else l for l in labels]
                if text in ('by', 'without'):
                    # `agg by (..) (arg)` or `agg (arg) by (..)`
                    if j + 1 < len(toks) and toks[j + 1][1] == '(':
                        scope = (j + 1, _close(toks, j + 1, where))
                    else:
                        k = i - 1
                        check(k >= 0 and toks[k][1] == ')',
                              '%s: %s (...) neither before nor after an aggregation\'s argument'
                              % (where, text))
                        depth, k2 = 0, k
                        while k2 >= 0:
                            if toks[k2][1] == ')':
                                depth += 1
                            elif toks[k2][1] == '(':
                                depth -= 1
                                if depth == 0:
                                    break
                            k2 -= 1
                        scope = (k2, k)
                else:
                    scope = (0, len(toks) - 1)
                clauses.append((text, labels, scope))
                i = j + 1
                continue
            i += 1
            continue
        if kind == 'id' and (nxt == '(' or text in AGGREGATIONS and nxt in ('by', 'without')):
            # a function, or an aggregation (`sum by (l) (...)`)
            i += 1
            continue
        if kind == 'id' or (kind == 'op' and text == '{'):
            name, start = (text, i + 1) if kind == 'id' else (None, i)
            matchers = []
            end = start - 1
            if start < len(toks) and toks[start][1] == '{':
                end = _close(toks, start, where)
                body = toks[start + 1:end]
                k = 0
                while k < len(body):
                    if body[k][1] == ',':
                        k += 1
                        continue
                    check(k + 2 < len(body) and body[k][0] in ('id', 'str')
                          and body[k + 1][1] in ('=', '!=', '=~', '!~')
                          and body[k + 2][0] == 'str',
                          '%s: cannot read the label matchers of %s' % (where, name or '{...}'))
                    lab = body[k][1] if body[k][0] == 'id' else _string_value(body[k][1])
                    matchers.append((lab, body[k + 1][1], _string_value(body[k + 2][1])))
                    k += 3
            if name is None:
                names = [v for l, op, v in matchers if l == '__name__' and op == '=']
                check(names, '%s: a selector without a metric name' % where)
                name = names[0]
            matchers = [m for m in matchers if m[0] != '__name__']
            sels.append((name, matchers, i))
            i = end + 1
            continue
        i += 1
    return sels, clauses


# ---------------------------------------------------------------- the queries

def dashboard_panels(d):
    """Every panel, those inside rows (collapsed rows keep theirs in "panels") included."""
    out = []

    def walk(ps):
        for p in ps or []:
            out.append(p)
            if isinstance(p, dict) and isinstance(p.get('panels'), list):
                walk(p['panels'])
    walk(d.get('panels'))
    return out


def load_dashboard():
    try:
        with open(DASHBOARD) as f:
            return json.load(f)
    except ValueError as e:
        raise Failure('%s: not valid JSON: %s' % (rel(DASHBOARD), e))


def dashboard_queries(d):
    """[(where, PromQL with the variables filled in, variables used)]: every target's expr and
    every query variable's query (label_values(SELECTOR, LABEL) gives SELECTOR, and LABEL as a
    `by` list so that its existence is checked)."""
    out = []
    for p in dashboard_panels(d):
        if not isinstance(p, dict):
            continue
        for t in p.get('targets') or []:
            if isinstance(t, dict) and t.get('expr'):
                e, used = grafana_substitute(t['expr'])
                out.append(('%s: panel %s "%s" target %s' % (rel(DASHBOARD), p.get('id'),
                                                              p.get('title'), t.get('refId')),
                            e, used))
    for v in (d.get('templating') or {}).get('list') or []:
        if v.get('type') != 'query':
            continue
        q = v.get('query')
        if isinstance(q, dict):
            q = q.get('query')
        where = '%s: variable %s' % (rel(DASHBOARD), v.get('name'))
        check(isinstance(q, str) and q.strip(), '%s: no query' % where)
        q, used = grafana_substitute(q)
        m = re.fullmatch(r'\s*label_values\((.*),\s*([A-Za-z_][A-Za-z0-9_]*)\s*\)\s*', q, re.S)
        if m:
            out.append((where, 'group by (%s) (%s)' % (m.group(2), m.group(1)), used))
            continue
        m = re.fullmatch(r'\s*query_result\((.*)\)\s*', q, re.S)
        check(m, '%s: %r: only label_values(...) and query_result(...) are understood'
              % (where, q))
        out.append((where, m.group(1), used))
    return out


def alert_queries():
    out = []
    for group, r, line in alert_rules(ALERTS):
        name = r.get('alert') or r.get('record')
        out.append(('%s:%s: %s' % (rel(ALERTS), line, name), r.get('expr') or '', set()))
    return out


def alert_test_series():
    """[(where, series)] of the input_series of the alert unit tests, read line by line."""
    out = []
    with open(ALERT_TESTS) as f:
        for n, line in enumerate(f, 1):
            m = re.match(r"\s*-?\s*series:\s*'(.*)'\s*$", line)
            if m:
                out.append(('%s:%d' % (rel(ALERT_TESTS), n), m.group(1)))
    return out


# ---------------------------------------------------------------- the binary



SAMPLE = re.compile(r'([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)(?:\s+-?\d+)?$')
LABEL = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"\s*(,|$)')


def parse_exposition(text):
    """({family: type}, {sample name: {label: set of values}}, {sample name: family}) of
    Prometheus text format; a line that does not parse is a failure naming it."""
    types, labels, family_of = {}, {}, {}
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        if line.startswith('#'):
            m = re.match(r'# TYPE ([a-zA-Z_:][a-zA-Z0-9_:]*) (\w+)$', line)
            if m:
                types[m.group(1)] = m.group(2)
            continue
        m = SAMPLE.match(line)
        check(m, '/metrics line %d does not parse: %r' % (n, line))
        name, body = m.group(1), m.group(2) or ''
        ls = labels.setdefault(name, {})
        pos = 0
        while pos < len(body):
            lm = LABEL.match(body, pos)
            check(lm and lm.end() > pos, '/metrics line %d: labels do not parse: %r' % (n, line))
            ls.setdefault(lm.group(1), set()).add(
                re.sub(r'\\(.)', lambda x: '\n' if x.group(1) == 'n' else x.group(1), lm.group(2)))
            pos = lm.end()
    for fam, typ in types.items():
        names = {'histogram': [fam + '_bucket', fam + '_sum', fam + '_count'],
                 'summary': [fam, fam + '_sum', fam + '_count']}.get(typ, [fam])
        for s in names:
            family_of[s] = fam
    for s in labels:
        check(s in family_of, '/metrics has samples of %s without a # TYPE line for it' % s)
    return types, labels, family_of


def sample_events():
    evs = []
    for name in sorted(os.listdir(EVENTS_DIR)):
        if name.endswith('.json'):
            with open(os.path.join(EVENTS_DIR, name)) as f:
                evs.append(json.load(f))
    return evs


class FakeSQS(http.server.ThreadingHTTPServer):
    """A loopback SQS (JSON protocol) with one message, sent QUEUED_AGE_S ago: ReceiveMessage
    hands it out once and then answers with no messages after a short wait, as long polling
    does; deletes and visibility changes succeed. No signature is checked. It gives the sqs
    source a message to hold, so that kmsrouter_source_lag_seconds has a sample."""
    QUEUED_AGE_S = 600

    def __init__(self):
        super().__init__(('127.0.0.1', 0), FakeSQSHandler)
        self.daemon_threads = True
        self.handed_out = False
        with open(os.path.join(EVENTS_DIR, 'kms-cmk-deletion.json')) as f:
            ev = json.load(f)
        ev.update(id='queued-1', **{'detail-type': 'Queued Test Event'})
        self.body = json.dumps(ev)
        self.sent_ms = int(time.time() * 1000) - self.QUEUED_AGE_S * 1000
        self.thread = threading.Thread(target=self.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self):
        return 'http://127.0.0.1:%d' % self.server_address[1]

    def stop(self):
        self.shutdown()
        self.server_close()


class FakeSQSHandler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *a):
        pass

    def do_POST(self):
        n = int(self.headers.get('Content-Length') or 0)
        try:
            req = json.loads(self.rfile.read(n) or b'{}')
        except ValueError:
            req = {}
        action = (self.headers.get('X-Amz-Target') or '').rpartition('.')[2]
        srv = self.server
        if action == 'ReceiveMessage':
            if srv.handed_out:
                time.sleep(0.5)
                out = {}
            else:
                srv.handed_out = True
                body = srv.body.encode()
                out = {'Messages': [{
                    'MessageId': 'm-queued-1', 'ReceiptHandle': 'rh-queued-1',
                    'Body': srv.body, 'MD5OfBody': hashlib.md5(body).hexdigest(),
                    'Attributes': {'SentTimestamp': str(srv.sent_ms),
                                   'ApproximateReceiveCount': '1',
                                   'ApproximateFirstReceiveTimestamp': str(srv.sent_ms)}}]}
        elif action.endswith('Batch'):
            out = {'Successful': [{'Id': e.get('Id')} for e in req.get('Entries') or []],
                   'Failed': []}
        else:
            out = {}
        data = json.dumps(out).encode()
        try:
            self.send_response(200)
            self.send_header('Content-Type', 'application/x-amz-json-1.0')
            self.send_header('Content-Length', str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # a long poll answered after kmsrouter stopped


class RunningRouter:
    """`kmsrouter run` on a followed file of the sample events and an invalid line, with a sink
    that keeps failing (/dev/full: retries, then dead letters), an unmatched sink, an invalid
    dead letter and metrics on, and an sqs source on FakeSQS whose one message goes to a sink
    that fails until the end (so it is held, and its age is the source's lag: the sink's path
    is a symlink into a folder made just before SIGTERM); wait_until_every_counter_moved() also
    has a reload fail. Use in a with statement: at the end the router is stopped (SIGTERM, by its
    pid) and must then deliver the held message and exit 0 with no sanitizer report (where the
    binary has sanitizers), and FakeSQS is shut down."""

    def __init__(self, tmp):
        self.tmp = tmp
        self.sqs = FakeSQS()
        self.port = free_port()
        self.url = 'http://127.0.0.1:%d/metrics' % self.port
        lines = [json.dumps(e) for e in sample_events()]
        lines.insert(1, '{"id": "bad-1", "source": aws.kms}')
        with open(os.path.join(tmp, 'in.jsonl'), 'w') as f:
            f.write('\n'.join(lines) + '\n')
        retry = {'max_attempts': 2, 'initial_backoff_ms': 10, 'max_backoff_ms': 20}
        cfg = {
            'sources': [{'name': 'events', 'type': 'file', 'paths': ['in.jsonl'],
                         'follow': True, 'poll_interval_ms': 50},
                        {'name': 'queue', 'type': 'sqs', 'endpoint': self.sqs.url,
                         'queue_url': self.sqs.url + '/123456789012/kms-events',
                         'region': 'us-east-1', 'wait_time_seconds': 1,
                         'visibility_timeout': 60, 'concurrency': 1,
                         'access_key_id_env': 'KR_TEST_ACCESS_KEY_ID',
                         'secret_access_key_env': 'KR_TEST_SECRET_ACCESS_KEY'}],
            'sinks': [{'name': 'audit', 'type': 'log', 'path': 'audit.jsonl'},
                      {'name': 'page', 'type': 'log', 'path': '/dev/full', 'retry': retry,
                       'dead_letter': 'dlq'},
                      {'name': 'dlq', 'type': 'log', 'path': 'dlq.jsonl'},
                      {'name': 'other', 'type': 'log', 'path': 'other.jsonl'},
                      {'name': 'stuck', 'type': 'log', 'path': 'stuck.jsonl',
                       'retry': {'max_attempts': 100000, 'max_event_age_seconds': 86400,
                                 'initial_backoff_ms': 100, 'max_backoff_ms': 100}}],
            'rules': [{'name': 'key-deleted', 'targets': ['page', 'audit'],
                       'pattern': {'source': ['aws.kms'], 'detail-type': ['KMS CMK Deletion']}},
                      {'name': 'rotation', 'targets': ['audit'],
                       'pattern': {'source': ['aws.kms'], 'detail-type': ['KMS CMK Rotation']}},
                      {'name': 'queued', 'targets': ['stuck'],
                       'pattern': {'detail-type': ['Queued Test Event']}}],
            'unmatched': 'other',
            'invalid_dead_letter': 'dlq',
            'metrics': {'listen': '127.0.0.1:%d' % self.port},
            'shutdown_grace_seconds': 10,
        }
        self.held = os.path.join(tmp, 'held')
        os.symlink(os.path.join('held', 'stuck.jsonl'), os.path.join(tmp, 'stuck.jsonl'))
        self.cfg_path = os.path.join(tmp, 'config.json')
        with open(self.cfg_path, 'w') as f:
            json.dump(cfg, f)
        # the values of the labels that name things of this config
        self.names = {'events', 'queue', 'audit', 'page', 'dlq', 'other', 'stuck', 'key-deleted',
                      'rotation', 'queued', 'in.jsonl', os.path.join(tmp, 'in.jsonl')}
        self.err_path = os.path.join(tmp, 'kmsrouter.stderr')
        with open(self.err_path, 'wb') as err:
            self.p = subprocess.Popen([KR, 'run', '-c', self.cfg_path], cwd=tmp,
                                      stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                      stderr=err, env=dict(os.environ,
                                                           KR_TEST_ACCESS_KEY_ID='AKIDTEST',
                                                           KR_TEST_SECRET_ACCESS_KEY='secret'))

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        try:
            if self.p.poll() is None:
                # the held delivery can succeed now
                os.mkdir(self.held)
                self.p.send_signal(signal.SIGTERM)
                try:
                    rc = self.p.wait(30)
                except subprocess.TimeoutExpired:
                    self.p.kill()
                    self.p.wait(5)
                    if exc_type is None:
                        raise Failure('kmsrouter still ran 30 s after SIGTERM; stderr: %s'
                                      % self.tail())
                    return False
                if exc_type is None:
                    with open(self.err_path, 'rb') as f:
                        err = f.read().decode('utf-8', 'replace')
                    check(not re.search(r'Sanitizer|runtime error:', err),
                          'kmsrouter\'s stderr has a sanitizer report:\n%s'
                          % err[err.find('====='):][:3000])
                    check(rc == 0, 'kmsrouter exited %s after SIGTERM, want 0 (every record '
                          'delivered or dead-lettered); stderr: %s' % (rc, self.tail()))
        finally:
            self.sqs.stop()
        return False

    def trouble(self):
        """Appends a KMS CMK Deletion event (its delivery to "page" fails and is dead-lettered)
        and an invalid record to the followed file, and sends SIGHUP with the config invalid
        (call after wait_until_every_counter_moved): another failed reload."""
        with open(os.path.join(EVENTS_DIR, 'kms-cmk-deletion.json')) as f:
            ev = json.load(f)
        ev['id'] = 'trouble-%d' % time.monotonic_ns()
        fd = os.open(os.path.join(self.tmp, 'in.jsonl'), os.O_WRONLY | os.O_APPEND)
        try:
            os.write(fd, (json.dumps(ev) + '\n{"id": "bad-2", "source": aws.kms}\n').encode())
        finally:
            os.close(fd)
        self.check_running('before SIGHUP')
        self.p.send_signal(signal.SIGHUP)

    def tail(self):
        with open(self.err_path, 'rb') as f:
            return ' | '.join(f.read().decode('utf-8', 'replace').strip().splitlines()[-5:])

    def check_running(self, what):
        check(self.p.poll() is None, 'kmsrouter exited (status %s) %s; stderr: %s'
              % (self.p.returncode, what, self.tail()))

    def wait_until_every_counter_moved(self):
        """Returns the /metrics text once it counts invalid records, unmatched events, retries,
        dead letters, a failed reload (the config made invalid, then SIGHUP), a record in flight
        and the queue source's lag."""
        text, last = '', ''
        moved = ('kmsrouter_records_invalid_total', 'kmsrouter_events_unmatched_total',
                 'kmsrouter_retries_total', 'kmsrouter_dead_lettered_total',
                 'kmsrouter_reloads_total{result="failure"}', 'kmsrouter_source_lag_seconds',
                 'kmsrouter_in_flight_records')
        hupped = False
        deadline = time.monotonic() + 20
        while True:
            self.check_running('before its metrics showed everything')
            try:
                status, text = http_get(self.url, timeout=1)
            except OSError:
                status = None
            if status == 200:
                last = text
                # the series with a value above 0, by name and by name{labels}
                nonzero = set()
                for l in text.splitlines():
                    if l and not l.startswith('#') and float(l.rsplit(' ', 1)[1]) > 0:
                        nonzero.add(l.rsplit(' ', 1)[0])
                        nonzero.add(re.sub(r'\{.*', '', l.rsplit(' ', 1)[0]))
                if not hupped and 'kmsrouter_dead_lettered_total' in nonzero:
                    with open(self.cfg_path, 'w') as f:
                        f.write('{"sources": [\n')
                    self.p.send_signal(signal.SIGHUP)
                    hupped = True
                if all(m in nonzero for m in moved):
                    return text
            if time.monotonic() > deadline:
                raise Failure('timed out after 20 s waiting for /metrics to count invalid '
                              'records, unmatched events, retries, dead letters, a failed '
                              'reload, a record in flight and the queue source\'s lag; '
                              'last scrape:\n%s\nstderr: %s' % (last, self.tail()))
            time.sleep(0.1)


# ---------------------------------------------------------------- cases

CASES = []


def case(fn):
    CASES.append(fn)
    return fn


def need(tool):
    """The path of a tool of Debian's prometheus package; skips the case when it is missing, or
    fails where KR_REQUIRE_PROMETHEUS=1."""
    path = shutil.which(tool)
    if not path:
        msg = '%s is not on PATH (Debian: apt-get install prometheus)' % tool
        if os.environ.get('KR_REQUIRE_PROMETHEUS') == '1':
            raise Failure(msg + ', and KR_REQUIRE_PROMETHEUS=1')
        raise Skip(msg)
    return path


def promtool():
    return need('promtool')


def run_promtool(args, cwd=None):
    p = subprocess.run([promtool()] + args, cwd=cwd, stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, timeout=120)
    return p.returncode, p.stdout.decode('utf-8', 'replace')


@case
def alert_rules_pass_promtool_check(tmp):
    rc, out = run_promtool(['check', 'rules', ALERTS])
    check(rc == 0, 'promtool check rules %s: exit %d:\n%s' % (rel(ALERTS), rc, out.strip()))
    m = re.search(r'SUCCESS: (\d+) rules found', out)
    check(m, 'promtool check rules did not say how many rules it found:\n%s' % out)
    mine = len(alert_rules(ALERTS))
    check(int(m.group(1)) == mine, 'promtool found %s rules in %s, this script reads %d: the '
          'file left the simple form this script reads' % (m.group(1), rel(ALERTS), mine))


@case
def alert_rules_unit_tests_pass(tmp):
    promtool()
    with open(ALERT_TESTS) as f:
        text = f.read()
    # the unit tests name the rules file next to them; point them at the one under test
    check(re.search(r'(?m)^  - kmsrouter-alerts\.yml$', text),
          '%s: no "rule_files: - kmsrouter-alerts.yml"' % rel(ALERT_TESTS))
    text = re.sub(r'(?m)^  - kmsrouter-alerts\.yml$', '  - ' + json.dumps(ALERTS), text)
    path = os.path.join(tmp, 'alerts.test.yml')
    with open(path, 'w') as f:
        f.write(text)
    rc, out = run_promtool(['test', 'rules', path])
    out = '\n'.join(l for l in out.splitlines() if l.strip())
    check(rc == 0, 'promtool test rules %s: exit %d:\n%s' % (rel(ALERT_TESTS), rc, out))
    # every alert is tested firing (an exp_alerts list that is not [])
    fired = set(re.findall(r'(?m)^\s*alertname:\s*(\S+)\s*\n\s*exp_alerts:\s*\n', text))
    names = {r.get('alert') for _, r, _ in alert_rules(ALERTS) if r.get('alert')}
    check(names <= fired, 'alerts no unit test in %s expects to fire: %s'
          % (rel(ALERT_TESTS), ', '.join(sorted(names - fired))))


@case
def alert_rules_have_for_severity_and_annotations(tmp):
    rules = alert_rules(ALERTS)
    alerts = [(g, r, line) for g, r, line in rules if 'alert' in r]
    check(alerts, '%s: no alerting rules' % rel(ALERTS))
    seen = set()
    for g, r, line in alerts:
        where = '%s:%s: %s' % (rel(ALERTS), line, r.get('alert'))
        check(r['alert'] not in seen, '%s: a second alert of that name' % where)
        seen.add(r['alert'])
        check(isinstance(r.get('expr'), str) and r['expr'].strip(), '%s: no expr' % where)
        check(isinstance(r.get('for'), str) and re.fullmatch(r'(\d+(ms|[smhdwy]))+', r['for']),
              '%s: no for: duration (got %r)' % (where, r.get('for')))
        labels = r.get('labels') or {}
        check(labels.get('severity') in SEVERITIES, '%s: severity label %r, want one of %s'
              % (where, labels.get('severity'), ', '.join(sorted(SEVERITIES))))
        ann = r.get('annotations') or {}
        for k in ('summary', 'description'):
            check(isinstance(ann.get(k), str) and ann[k].strip(), '%s: no %s annotation'
                  % (where, k))
    # what the brief of these alerts promises: down, dead letters, lag, sink failures, reloads
    exprs = ' '.join(r['expr'] for _, r, _ in alerts)
    for needle in ('up{', 'kmsrouter_dead_lettered_total', 'kmsrouter_source_lag_seconds',
                   'kmsrouter_deliveries_total', 'kmsrouter_reloads_total'):
        check(needle in exprs, '%s: no alert uses %s' % (rel(ALERTS), needle))


GRAFANA_BUILTINS = set(GRAFANA_DURATIONS) | {'__dashboard', '__from', '__to', '__user',
                                             '__org', '__name', '__timeFilter'}


@case
def dashboard_is_well_formed(tmp):
    d = load_dashboard()
    name = rel(DASHBOARD)
    check(isinstance(d, dict), '%s: not a JSON object' % name)
    check(isinstance(d.get('schemaVersion'), int) and d['schemaVersion'] >= 37,
          '%s: schemaVersion %r, want an integer >= 37' % (name, d.get('schemaVersion')))
    check(isinstance(d.get('title'), str) and d['title'], '%s: no title' % name)
    check(isinstance(d.get('uid'), str) and re.fullmatch(r'[A-Za-z0-9_-]{1,40}', d['uid']),
          '%s: uid %r: at most 40 letters, digits, - and _' % (name, d.get('uid')))
    check(d.get('id') is None, '%s: an "id" ties the dashboard to one Grafana database: '
          'leave it out' % name)
    tvars = (d.get('templating') or {}).get('list')
    check(isinstance(tvars, list), '%s: no templating.list' % name)
    by_name = {}
    for v in tvars:
        check(isinstance(v, dict) and v.get('name'), '%s: a template variable without a name'
              % name)
        check(v['name'] not in by_name, '%s: template variable %s defined twice'
              % (name, v['name']))
        by_name[v['name']] = v
    for want in ('job', 'instance'):
        check(want in by_name, '%s: no "%s" template variable' % (name, want))
    # the data source: a variable of type datasource, or an input (${DS_...}) to fill at import
    ds_vars = {v['name'] for v in tvars if v.get('type') == 'datasource'}
    inputs = {i.get('name') for i in d.get('__inputs') or [] if i.get('type') == 'datasource'}
    check(ds_vars or inputs, '%s: neither a datasource template variable nor a datasource '
          '__inputs entry' % name)
    for v in ds_vars:
        check(by_name[v].get('query') == 'prometheus', '%s: datasource variable %s is of type '
              '%r, want prometheus' % (name, v, by_name[v].get('query')))
    ds_refs = {'${%s}' % v for v in ds_vars} | {'$%s' % v for v in ds_vars} | \
        {'${%s}' % i for i in inputs}

    def check_ds(ds, where):
        uid = ds.get('uid') if isinstance(ds, dict) else ds
        check(uid in ds_refs, '%s: datasource %r is not the dashboard\'s (%s)'
              % (where, ds, ', '.join(sorted(ds_refs))))
        if isinstance(ds, dict):
            check(ds.get('type') == 'prometheus', '%s: datasource type %r, want prometheus'
                  % (where, ds.get('type')))

    for v in tvars:
        if v.get('type') == 'query':
            check_ds(v.get('datasource'), '%s: variable %s' % (name, v['name']))
    panels = dashboard_panels(d)
    check(panels, '%s: no panels' % name)
    # panels share the grid with the others of their level: the dashboard's, or a collapsed
    # row's (shown in its place when it is opened)
    level = {id(p): 0 for p in d.get('panels') or []}
    for p in panels:
        for q in (p.get('panels') or []) if isinstance(p, dict) else []:
            level[id(q)] = id(p)
    ids, boxes, n_query = {}, [], 0
    for p in panels:
        check(isinstance(p, dict), '%s: a panel that is not an object' % name)
        where = '%s: panel %r "%s"' % (name, p.get('id'), p.get('title'))
        check(isinstance(p.get('id'), int), '%s: no integer id' % where)
        check(p['id'] not in ids, '%s: id %d is also that of panel "%s"'
              % (where, p['id'], ids.get(p['id'])))
        ids[p['id']] = p.get('title')
        check(isinstance(p.get('type'), str) and p['type'], '%s: no type' % where)
        check(isinstance(p.get('title'), str) and p['title'], '%s: no title' % where)
        g = p.get('gridPos') or {}
        check(all(isinstance(g.get(k), int) for k in 'hwxy') and g['w'] > 0 and g['h'] > 0
              and g['x'] >= 0 and g['y'] >= 0 and g['x'] + g['w'] <= 24,
              '%s: gridPos %r is not inside the 24-column grid' % (where, g))
        boxes.append((g, where, level.get(id(p))))
        if p['type'] == 'row':
            continue
        n_query += 1
        check('datasource' in p, '%s: no datasource' % where)
        check_ds(p['datasource'], where)
        ts = p.get('targets')
        check(isinstance(ts, list) and ts, '%s: no targets' % where)
        refs = set()
        for t in ts:
            check(isinstance(t, dict) and isinstance(t.get('expr'), str) and t['expr'].strip(),
                  '%s: a target without an expr' % where)
            check(t.get('refId') and t['refId'] not in refs, '%s: target refId %r missing or '
                  'repeated' % (where, t.get('refId')))
            refs.add(t['refId'])
            if 'datasource' in t:
                check_ds(t['datasource'], '%s target %s' % (where, t['refId']))
    check(n_query >= 10, '%s: only %d panels with queries' % (name, n_query))
    for i, (a, wa, la) in enumerate(boxes):
        for b, wb, lb in boxes[i + 1:]:
            overlap = la == lb and (a['x'] < b['x'] + b['w'] and b['x'] < a['x'] + a['w'] and
                       a['y'] < b['y'] + b['h'] and b['y'] < a['y'] + a['h'])
            check(not overlap, '%s overlaps %s' % (wa, wb))
    # every variable a query uses is defined
    for where, expr, used in dashboard_queries(d):
        undefined = used - set(by_name) - GRAFANA_BUILTINS
        check(not undefined, '%s: uses undefined variable(s) %s'
              % (where, ', '.join('$' + u for u in sorted(undefined))))


@case
def dashboard_queries_are_valid_promql(tmp):
    promtool()
    queries = dashboard_queries(load_dashboard())
    path = os.path.join(tmp, 'dashboard-queries.yml')
    with open(path, 'w') as f:
        f.write('groups:\n  - name: dashboard\n    rules:\n')
        for i, (where, expr, _) in enumerate(queries):
            f.write('      - record: dashboard_query_%d\n        expr: %s\n'
                    % (i, json.dumps(expr)))
    rc, out = run_promtool(['check', 'rules', path])
    if rc != 0:
        # name the queries promtool pointed at (its messages number the rules from 1)
        named = re.sub(r'rule (\d+)',
                       lambda m: '%s (%s)' % (m.group(0), queries[int(m.group(1)) - 1][0])
                       if 0 < int(m.group(1)) <= len(queries) else m.group(0), out)
        raise Failure('promtool rejects dashboard queries:\n%s' % named.strip())
    check('SUCCESS: %d rules found' % len(queries) in out,
          'promtool did not check all %d queries:\n%s' % (len(queries), out))


@case
def queries_use_only_series_and_labels_the_binary_exports(tmp):
    with RunningRouter(tmp) as r:
        text = r.wait_until_every_counter_moved()
    config_names = r.names
    types, labels, family_of = parse_exposition(text)
    check(types, 'no # TYPE line in /metrics:\n%s' % text)
    if shutil.which('promtool'):
        p = subprocess.run(['promtool', 'check', 'metrics'], input=text.encode(),
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=60)
        check(p.returncode == 0, 'promtool check metrics finds problems in /metrics:\n%s'
              % p.stdout.decode('utf-8', 'replace'))
    else:
        print('# promtool is not on PATH: /metrics is not linted with promtool check metrics')
    problems, unchecked, used_names = [], set(), set()

    def labels_of(name):
        """The labels a series has once scraped, or None when /metrics has no sample of it."""
        if name in PROMETHEUS_SERIES:
            return {l: None for l in PROMETHEUS_SERIES[name]}
        ls = labels.get(name)
        if ls is None:
            unchecked.add(name)
            return None
        out = dict(ls)
        for l in TARGET_LABELS:
            out.setdefault(l, None)
        return out

    def known(name, where):
        if name in PROMETHEUS_SERIES or name in family_of:
            used_names.add(name)
            return True
        fam = family_of.get(re.sub(r'_(bucket|sum|count)$', '', name))
        hint = ''
        if name in types and types[name] in ('histogram',):
            hint = ' (a histogram: use %s_bucket, _sum or _count)' % name
        elif fam:
            hint = ' (%s is a %s)' % (fam, types[fam])
        else:
            close = [s for s in family_of if s.split('_')[1:2] == name.split('_')[1:2]]
            if close:
                hint = ' (did you mean %s?)' % ' or '.join(sorted(close)[:3])
        problems.append('%s: %s is not a series kmsrouter exports%s' % (where, name, hint))
        return False

    def check_value(name, lab, op, value, have, where):
        """A literal value must be one the label takes (a regex: match one, and each of a
        plain alternation's words must be one). Labels whose values come from the config
        (sink, rule, source names) are not compared with the test config's names."""
        if have is None or value == '.*':  # a dashboard variable, or everything
            return
        if have & config_names:
            return
        if op in ('=', '!='):
            if value not in have:
                problems.append('%s: %s{%s%s"%s"}: %s never takes that value (it takes %s)'
                                % (where, name, lab, op, value, lab,
                                   ', '.join(sorted(have))))
            return
        try:
            rx = re.compile(value)
        except re.error as e:
            problems.append('%s: %s{%s%s"%s"}: bad regex: %s' % (where, name, lab, op, value, e))
            return
        if re.fullmatch(r'[A-Za-z0-9_.+-]+(\|[A-Za-z0-9_.+-]+)*', value):
            missing = [w for w in value.split('|') if w not in have]
            if missing:
                problems.append('%s: %s{%s%s"%s"}: %s never takes %s (it takes %s)'
                                % (where, name, lab, op, value, lab, ', '.join(missing),
                                   ', '.join(sorted(have))))
        elif not any(rx.fullmatch(v) for v in have):
            problems.append('%s: %s{%s%s"%s"} matches none of the values of %s (%s)'
                            % (where, name, lab, op, value, lab, ', '.join(sorted(have))))

    def check_expr(where, expr):
        sels, clauses = analyse(expr, where)
        check(sels, '%s: no metric in %r' % (where, expr))
        for name, matchers, _ in sels:
            if not known(name, where):
                continue
            have = labels_of(name)
            if have is None:
                continue
            for lab, op, value in matchers:
                if lab not in have:
                    problems.append('%s: %s has no label %s (it has %s)'
                                    % (where, name, lab, ', '.join(sorted(have))))
                elif '$' not in value and lab not in TARGET_LABELS:
                    check_value(name, lab, op, value, have[lab], where)
        for clause, labs, (a, b) in clauses:
            inside = [s for s in sels if a <= s[2] <= b and
                      (s[0] in PROMETHEUS_SERIES or s[0] in family_of)]
            sets = [(s[0], labels_of(s[0])) for s in inside]
            sets = [(n, set(h)) for n, h in sets if h is not None]
            for lab in labs:
                if clause in ('by', 'without'):
                    # the label must be on every series the aggregation reads
                    lacking = [n for n, h in sets if lab not in h]
                    if lacking:
                        problems.append('%s: %s (%s): %s has no label %s'
                                        % (where, clause, ', '.join(labs),
                                           ', '.join(sorted(set(lacking))), lab))
                elif sets and not any(lab in h for _, h in sets):
                    problems.append('%s: %s (%s): no series of the expression has label %s'
                                    % (where, clause, ', '.join(labs), lab))

    queries = dashboard_queries(load_dashboard()) + alert_queries()
    for where, expr, _ in queries:
        check_expr(where, expr)
    series = alert_test_series()
    check(series, '%s: no input_series' % rel(ALERT_TESTS))
    for where, s in series:
        check_expr(where, s)
    # the dashboard and alerts together show every family kmsrouter exports
    shown = {family_of.get(n) for n in used_names}
    not_shown = sorted(set(types) - shown)
    if not_shown:
        problems.append('exported but in no dashboard query or alert: %s'
                        % ', '.join(not_shown))
    check(not problems, '%d problem(s):\n  %s' % (len(problems), '\n  '.join(problems)))
    if unchecked:
        print('# labels not checked (the test config makes no sample of them; the TYPE line '
              'is there): %s' % ', '.join(sorted(unchecked)))
    print('# %d queries and %d test series checked against %d families'
          % (len(queries), len(series), len(types)))


@case
def queries_evaluate_in_prometheus_scraping_the_binary(tmp):
    """A real Prometheus scrapes a running kmsrouter and loads the alerts: every dashboard query
    evaluates without error and, where the series it reads have samples, returns series that
    carry the labels its legend names; every variable query returns values; every alerting
    rule evaluates without error (vector matching errors show only on real data)."""
    prom = need('prometheus')
    queries = dashboard_queries(load_dashboard())
    with RunningRouter(tmp) as r:
        types, labels, family_of = parse_exposition(r.wait_until_every_counter_moved())
        pport = free_port()
        with open(os.path.join(tmp, 'prometheus.yml'), 'w') as f:
            f.write('global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n'
                    'rule_files:\n  - %s\n'
                    'scrape_configs:\n  - job_name: kmsrouter\n    static_configs:\n'
                    '      - targets: ["127.0.0.1:%d"]\n' % (json.dumps(ALERTS), r.port))
        log_path = os.path.join(tmp, 'prometheus.log')
        with open(log_path, 'wb') as log:
            pp = subprocess.Popen(
                [prom, '--config.file=' + os.path.join(tmp, 'prometheus.yml'),
                 '--storage.tsdb.path=' + os.path.join(tmp, 'data'),
                 '--web.listen-address=127.0.0.1:%d' % pport, '--log.level=warn'],
                cwd=tmp, stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        api = 'http://127.0.0.1:%d/api/v1/' % pport

        def log_tail():
            with open(log_path, 'rb') as f:
                return ' | '.join(f.read().decode('utf-8', 'replace').strip().splitlines()[-5:])

        def get(path, **params):
            url = api + path + ('?' + urllib.parse.urlencode(params) if params else '')
            try:
                status, body = http_get(url, timeout=10)
            except OSError:
                return None
            if status == 503:  # still starting (its storage not open yet)
                return None
            try:
                return json.loads(body)
            except ValueError:
                raise Failure('prometheus answered %s with %s: %.300s' % (path, status, body))
        try:
            # at least 3 scrapes of the router, so that rate() has points to work on
            deadline = time.monotonic() + 30
            while True:
                check(pp.poll() is None, 'prometheus exited (status %s): %s'
                      % (pp.returncode, log_tail()))
                r.check_running('while prometheus scraped it')
                a = get('query', query='count_over_time(up{job="kmsrouter"}[1m])')
                b = get('query', query='up{job="kmsrouter"}')
                if a and b and a.get('data', {}).get('result') and \
                        float(a['data']['result'][0]['value'][1]) >= 3:
                    check(float(b['data']['result'][0]['value'][1]) == 1,
                          'prometheus cannot scrape kmsrouter: up = %s'
                          % b['data']['result'][0]['value'][1])
                    break
                check(time.monotonic() < deadline, 'prometheus did not scrape kmsrouter 3 times '
                      'in 30 s; its log: %s' % log_tail())
                time.sleep(0.2)
            # what a router in trouble makes of the alerts: dead letters, a sink that fails every
            # attempt, invalid records and a failed reload while Prometheus watches
            r.trouble()
            want_state = {'KmsrouterDeadLetters': 'pending', 'KmsrouterSinkFailing': 'pending',
                          'KmsrouterSinkFailureRatioHigh': 'pending',
                          'KmsrouterSourceLagHigh': 'pending',
                          'KmsrouterSourceLagRising': 'pending',
                          'KmsrouterInvalidRecords': 'firing', 'KmsrouterReloadFailed': 'firing'}
            problems = []
            legend = {}
            for p in dashboard_panels(load_dashboard()):
                for t in p.get('targets') or []:
                    if isinstance(t, dict) and t.get('expr'):
                        legend[grafana_substitute(t['expr'])[0]] = t.get('legendFormat') or ''
            for where, expr, _ in queries:
                res = get('query', query=expr)
                if not res or res.get('status') != 'success':
                    problems.append('%s: %s: %s' % (where, expr, res and res.get('error')))
                    continue
                sels, _ = analyse(expr, where)
                all_sampled = all(n in PROMETHEUS_SERIES or n in labels for n, _, _ in sels)
                result = res['data']['result']
                if not all_sampled:
                    continue
                if not result:
                    problems.append('%s: no series, though kmsrouter exports samples of every '
                                    'series it reads: %s' % (where, expr))
                    continue
                want = set(re.findall(r'\{\{\s*(\w+)\s*\}\}', legend.get(expr, '')))
                if where.split(': ')[-1].startswith('variable '):
                    want |= set(re.findall(r'group by \((\w+)\)', expr))
                for series in result:
                    lacking = want - set(series.get('metric', {}))
                    if lacking:
                        problems.append('%s: a result series has no label %s, which its legend '
                                        'or variable shows: %s' % (where, ', '.join(sorted(
                                            lacking)), series.get('metric')))
                        break
            # the alerting rules, once each was evaluated and those the trouble should wake
            # are pending or firing (the others stay inactive)
            names = {rr.get('alert') for _, rr, _ in alert_rules(ALERTS) if rr.get('alert')}
            deadline = time.monotonic() + 20
            while True:
                res = get('rules') or {}
                got = {rr.get('name'): rr for g in res.get('data', {}).get('groups', [])
                       for rr in g.get('rules', [])}
                done = {n for n, rr in got.items()
                        if not rr.get('lastEvaluation', '').startswith('0001')}
                state = {n: rr.get('state') for n, rr in got.items()}
                wrong = {n: state.get(n) for n in names
                         if state.get(n) != want_state.get(n, 'inactive')}
                if names <= done and not wrong:
                    break
                if time.monotonic() > deadline:
                    check(names <= done, 'prometheus did not evaluate the alerts %s in 20 s; its '
                          'log: %s' % (', '.join(sorted(names - done)), log_tail()))
                    problems.append('after dead letters, failing deliveries, invalid records and '
                                    'a failed reload, these alerts are not in the state they '
                                    'should be: %s' % ', '.join(
                                        '%s %s (want %s)' % (n, s, want_state.get(n, 'inactive'))
                                        for n, s in sorted(wrong.items())))
                    break
                time.sleep(0.2)
            for n in sorted(names):
                rr = got[n]
                if rr.get('health') != 'ok' or rr.get('lastError'):
                    problems.append('%s: alert %s: health %s: %s' % (rel(ALERTS), n,
                                                                   rr.get('health'),
                                                                   rr.get('lastError')))
        finally:
            if pp.poll() is None:
                pp.terminate()
                try:
                    pp.wait(15)
                except subprocess.TimeoutExpired:
                    pp.kill()
                    pp.wait(5)
    check(not problems, '%d problem(s):\n  %s' % (len(problems), '\n  '.join(problems)))
    print('# %d dashboard queries and %d alerts evaluated' % (len(queries), len(names)))


# ---------------------------------------------------------------- main

def start(kr):
    global KR
    KR = kr


if __name__ == '__main__':
    sys.exit(run_cases(CASES, 'observability', 'kmsrouter-obs-', __doc__, start=start))
