#!/usr/bin/env python3
"""Tests the manual pages generated from the binary (scripts/gen-man.py, dist/meson.build):

  man_test.py BINARY BUILDDIR

reads BUILDDIR/dist/kmsrouter.1 and BUILDDIR/dist/kmsrouter.conf.5 and checks that
  - `man --warnings -l` and `groff -man -ww -z` read both without a warning;
  - kmsrouter.conf(5) has every option `kmsrouter help config` prints, with its help text, each
    plugin's options under that plugin's heading, nested options under their parent's name;
    and every paragraph of the sections' reference text (how each plugin behaves), a plugin's
    under its heading;
  - kmsrouter(1) has every command `kmsrouter --help` lists (and `help`), each as a heading with
    every option its `COMMAND --help` names, and each in the SYNOPSIS.
Exit status 0 when all hold, 1 (saying what is missing) otherwise.
"""
import os
import re
import shutil
import subprocess
import sys

failures = []


def fail(msg):
    failures.append(msg)
    print(f"FAIL {msg}")


def run(*args, **kw):
    return subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          timeout=60, **kw)


def render(page):
    """The page as man prints it, plain ASCII, with its stderr."""
    env = dict(os.environ, LC_ALL="C", MANWIDTH="80", MANPAGER="cat", PAGER="cat")
    env.pop("MAN_KEEP_FORMATTING", None)
    p = run("man", "--warnings", "-l", page, env=env)
    if p.returncode != 0:
        fail(f"man -l {page}: exit status {p.returncode}: {p.stderr.strip()}")
    text = re.sub(r".\x08", "", p.stdout)  # overstrike, should the pager keep it
    return text, p.stderr


def flat(text):
    return " ".join(text.split())


def sections(rendered, heading_re):
    """{heading: its text} for the subsection headings (3-space indent) matching heading_re."""
    out = {}
    current = None
    for ln in rendered.split("\n"):
        if re.match(r"^ {3}\S", ln) or re.match(r"^\S", ln):
            m = re.match(heading_re, ln.strip()) if ln.startswith("   ") else None
            current = m.group(0) if m else None
            if current is not None:
                out[current] = []
            continue
        if current is not None:
            out[current].append(ln)
    return {k: "\n".join(v) for k, v in out.items()}


def parse_config_help(text):
    """[(section title, [(dotted name, help)])] of `kmsrouter help config`."""
    result = []
    lines = text.rstrip("\n").split("\n")
    i = 0
    while i < len(lines) and lines[i].strip():  # the intro
        i += 1
    stack = []
    for j in range(i, len(lines)):
        ln = lines[j]
        if not ln.strip():
            continue
        if not ln.startswith(" "):
            result.append((ln, []))
            stack = []
            continue
        m = re.match(r"^( +)(\S+)  \((.*)\)$", ln)
        if m:
            depth = (len(m.group(1)) - 2) // 4
            stack = stack[:depth] + [m.group(2)]
            helptext = lines[j + 1].strip() if j + 1 < len(lines) else ""
            result[-1][1].append((".".join(stack), m.group(2), helptext))
    return result


def parse_config_docs(text):
    """{section title: [paragraphs]}: the reference text of each section of `kmsrouter help
    config`, the indented paragraphs after a blank line that are not options."""
    docs = {}
    lines = text.rstrip("\n").split("\n")
    i = 0
    while i < len(lines) and lines[i].strip():  # the intro
        i += 1
    title = None
    while i < len(lines):
        ln = lines[i]
        if ln and not ln.startswith(" "):
            title = ln
            docs[title] = []
            i += 1
            continue
        if not ln.strip() and i + 1 < len(lines) and lines[i + 1].startswith(" ") and \
                not re.match(r"^( +)(\S+)  \((.*)\)$", lines[i + 1]):
            para = []
            i += 1
            while i < len(lines) and lines[i].strip():
                para.append(lines[i].strip())
                i += 1
            docs[title].append(" ".join(para))
            continue
        i += 1
    return docs


def main():
    if len(sys.argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    binary, builddir = sys.argv[1], sys.argv[2]
    page1 = os.path.join(builddir, "dist", "kmsrouter.1")
    page5 = os.path.join(builddir, "dist", "kmsrouter.conf.5")
    for page in (page1, page5):
        if not os.path.isfile(page):
            print(f"FAIL {page}: no such file (build with -Dman=true)", file=sys.stderr)
            return 1
    if not shutil.which("man") or not shutil.which("groff"):
        print("FAIL man (man-db) and groff (groff-base) are needed to read the pages",
              file=sys.stderr)
        return 1

    # no warnings from either formatter
    for page in (page1, page5):
        p = run("groff", "-man", "-ww", "-z", page)
        if p.returncode != 0 or p.stderr:
            fail(f"groff -man -ww -z {page}: {p.stderr.strip() or p.returncode}")
    r5, err5 = render(page5)
    r1, err1 = render(page1)
    for page, err in ((page5, err5), (page1, err1)):
        if err.strip():
            fail(f"man --warnings -l {page}: {err.strip()}")

    # kmsrouter.conf(5): every option of help config, its help, in its section
    help_config = run(binary, "help", "config").stdout
    parsed = parse_config_help(help_config)
    if len(parsed) < 6:
        fail(f"help config: only {len(parsed)} sections read; its format changed?")
    all5 = flat(r5)
    plugin_sections = sections(r5, r'^(source|sink) type \S+$')
    nopts = 0
    for title, opts in parsed:
        m = re.match(r'^(source|sink) type "([^"]+)"', title)
        if m:
            heading = f"{m.group(1)} type {m.group(2)}"
            if heading not in plugin_sections:
                fail(f"kmsrouter.conf.5: no heading \"{heading}\"")
                body = ""
            else:
                body = flat(plugin_sections[heading])
        else:
            body = all5
        for dotted, name, helptext in opts:
            nopts += 1
            if not re.search(r"(?<![\w.-])" + re.escape(dotted) + r"(?![\w-])", body):
                fail(f"kmsrouter.conf.5: option {dotted} ({title}) missing")
            if helptext and flat(helptext) not in body:
                fail(f"kmsrouter.conf.5: the help of {dotted} ({title}) missing: {helptext!r}")
    if nopts < 50:
        fail(f"help config: only {nopts} options read; its format changed?")
    ndocs = 0
    for title, paragraphs in parse_config_docs(help_config).items():
        m = re.match(r'^(source|sink) type "([^"]+)"', title)
        body = flat(plugin_sections.get(f"{m.group(1)} type {m.group(2)}", "")) if m else all5
        for para in paragraphs:
            ndocs += 1
            if flat(para) not in body:
                fail(f"kmsrouter.conf.5: a paragraph of the text of {title!r} missing: "
                     f"{para[:80]!r}...")
    if ndocs < 20:
        fail(f"help config: only {ndocs} paragraphs of reference text read; its format "
             f"changed?")
    print(f"kmsrouter.conf.5: {nopts} options and {ndocs} paragraphs checked in {len(parsed)} "
          f"sections")

    # kmsrouter(1): every command, its synopsis and options
    top = run(binary, "--help").stdout
    listed = re.findall(r"^  ([a-z][a-z0-9-]*)  ", top.split("commands:\n", 1)[1].split("\n\n")[0],
                        re.M)
    commands = listed + [c for c in re.findall(r"^  kmsrouter ([a-z][a-z0-9-]*)", top, re.M)
                         if c not in listed]
    if not {"run", "replay", "match", "check", "help"} <= set(commands):
        fail(f"--help: commands read {commands}")
    cmd_sections = sections(r1, r"^[a-z][a-z0-9-]*$")
    synopsis = flat(r1.split("\nSYNOPSIS\n", 1)[-1].split("\nDESCRIPTION\n", 1)[0])
    for c in commands:
        if c not in cmd_sections:
            fail(f"kmsrouter.1: no heading for the command {c}")
            continue
        if f"kmsrouter {c}" not in synopsis:
            fail(f"kmsrouter.1: the command {c} is not in the SYNOPSIS")
        chelp = run(binary, c, "--help").stdout
        body = flat(cmd_sections[c])
        for opt in sorted(set(re.findall(r"(?<![\w-])(--?[a-z][a-z0-9-]*)", chelp))):
            if not re.search(r"(?<![\w-])" + re.escape(opt) + r"(?![\w-])", body):
                fail(f"kmsrouter.1: option {opt} of {c} missing under its heading")
        usage = flat(chelp.split("\n\n", 1)[0].replace("usage: ", ""))
        for word in usage.split():
            if word not in synopsis:
                fail(f"kmsrouter.1: {word!r} of {c}'s usage is not in the SYNOPSIS")
    for part in ("NAME", "SYNOPSIS", "DESCRIPTION", "COMMANDS", "SIGNALS", "EXIT STATUS", "FILES",
                 "SEE ALSO"):
        if not re.search(rf"^{part}$", r1, re.M):
            fail(f"kmsrouter.1: no {part} section")
    print(f"kmsrouter.1: {len(commands)} commands checked: {' '.join(commands)}")
    if failures:
        print(f"{len(failures)} failure(s)", file=sys.stderr)
        return 1
    print("ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
