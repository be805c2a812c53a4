#!/usr/bin/env python3
"""Tests the bash completion (dist/completion/kmsrouter): sources it in `bash --norc`, sets
COMP_WORDS and COMP_CWORD as bash would, calls the completion function and compares COMPREPLY
with what the binary's own --help texts and `check` output say.

  completion_test.py BINARY [COMPLETION_SCRIPT]

Exit status 0 when every case passes, 1 (naming the case and both lists) otherwise, 77 (meson's
skip) when bash is not installed.
"""
import os
import re
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
SCRIPT = os.path.join(HERE, "..", "..", "dist", "completion", "kmsrouter")

failures = []


def complete(script, words, cwd):
    """COMPREPLY for COMP_WORDS=words (the cursor on the last one)."""
    quoted = " ".join("'" + w.replace("'", "'\\''") + "'" for w in words)
    prog = (f"source '{script}' || exit 3\n"
            "complete -p kmsrouter >/dev/null || exit 4\n"
            f"COMP_WORDS=({quoted}); COMP_CWORD={len(words) - 1}\n"
            "COMP_LINE=\"${COMP_WORDS[*]}\"; COMP_POINT=${#COMP_LINE}\n"
            "_kmsrouter; s=$?\n"
            "((${#COMPREPLY[@]})) && printf '%s\\0' \"${COMPREPLY[@]}\"; exit $s\n")
    p = subprocess.run(["bash", "--norc", "--noprofile", "-c", prog], cwd=cwd,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60)
    if p.returncode != 0 or p.stderr:
        raise AssertionError(f"completing {words!r}: exit status {p.returncode}, stderr "
                             f"{p.stderr.decode(errors='replace')!r}")
    out = p.stdout.decode()
    return [w for w in out.split("\0")[:-1]] if out else []


def check(name, got, want, exact=True):
    got_s, want_s = sorted(set(got)), sorted(set(want))
    ok = got_s == want_s if exact else set(want_s) <= set(got_s)
    if len(got) != len(set(got)):
        ok = False
    if ok:
        print(f"ok {name}")
    else:
        failures.append(name)
        print(f"FAIL {name}\n  expected {'exactly ' if exact else 'at least '}{want_s}\n"
              f"  got      {got}")


def help_of(binary, *args):
    return subprocess.run([binary, *args], stdout=subprocess.PIPE, text=True,
                          check=True).stdout


def main():
    if len(sys.argv) not in (2, 3):
        print(__doc__, file=sys.stderr)
        return 2
    if not shutil.which("bash"):
        print("bash is not installed: skipping", file=sys.stderr)
        return 77
    binary = os.path.abspath(sys.argv[1])
    script = os.path.abspath(sys.argv[2] if len(sys.argv) == 3 else SCRIPT)
    examples = os.path.join(HERE, "..", "..", "examples", "kmsrouter.json")

    # what the binary says, read here independently of the completion script
    top = help_of(binary, "--help")
    listed = re.findall(r"^  ([a-z][a-z0-9-]*)  ", top.split("commands:\n", 1)[1].split("\n\n")[0],
                        re.M)
    commands = listed + [c for c in re.findall(r"^  kmsrouter ([a-z][a-z0-9-]*)", top, re.M)
                         if c not in listed]
    assert {"run", "replay", "match", "check", "help"} <= set(commands), commands
    types = re.findall(r'^(?:source|sink) type "([^"]+)"', help_of(binary, "help", "config"),
                       re.M)

    with tempfile.TemporaryDirectory() as tmp:
        for f in ("alpha.json", "alpine.json", "beta.txt"):
            open(os.path.join(tmp, f), "w").close()
        os.mkdir(os.path.join(tmp, "alps"))
        a = os.path.join(tmp, "al")

        check("commands", complete(script, [binary, ""], tmp), commands)
        check("command prefix", complete(script, [binary, "re"], tmp), ["replay"])
        check("top-level options", complete(script, [binary, "--"], tmp),
              ["--help", "--version"])
        # every option each command's --help names, for every command --help lists (a new
        # command is covered without editing this test)
        for c in commands:
            text = help_of(binary, c, "--help")
            longs = set(re.findall(r"(?<![\w-])(--[a-z][a-z0-9-]*)", text)) | {"--help"}
            check(f"options of {c}", complete(script, [binary, c, "--"], tmp), longs)
        check("short and long options of match", complete(script, [binary, "match", "-"], tmp),
              ["-c", "--config", "--max-record", "--help"])
        check("files after -c", complete(script, [binary, "check", "-c", a], tmp),
              [a + "pha.json", a + "pine.json", a + "ps"])
        check("files after --config", complete(script, [binary, "match", "--config",
                                                        os.path.join(tmp, "b")], tmp),
              [os.path.join(tmp, "beta.txt")])
        check("--config=FILE as one word",
              complete(script, [binary, "match", "--config=" + a + "pi"], tmp),
              ["--config=" + a + "pine.json"])
        check("--config = FILE split by bash",
              complete(script, [binary, "match", "--config", "=", a + "pi"], tmp),
              [a + "pine.json"])
        check("FILE... of replay, after its options",
              complete(script, [binary, "replay", "-c", examples, "--rate", "10", a + "pi"], tmp),
              [a + "pine.json"])
        check("FILE... of match repeats",
              complete(script, [binary, "match", "-c", examples, a + "pha.json", a + "pi"], tmp),
              [a + "pine.json"])
        check("no completion for the value of --rate",
              complete(script, [binary, "replay", "-c", examples, "--rate", ""], tmp), [])
        check("run takes no arguments", complete(script, [binary, "run", ""], tmp), [])
        check("@FILE for test-pattern",
              complete(script, [binary, "test-pattern", "@" + a + "ph"], tmp),
              ["@" + a + "pha.json"])
        check("JSON text for test-pattern is not completed",
              complete(script, [binary, "test-pattern", "{"], tmp), [])
        check("help config", complete(script, [binary, "help", ""], tmp), ["config"])
        check("plugin types", complete(script, [binary, "help", "config", ""], tmp), types)
        check("plugin types by prefix", complete(script, [binary, "help", "config", "k"], tmp),
              [t for t in types if t.startswith("k")])
        check("relative path of the binary",
              complete(script, [os.path.relpath(binary, tmp), "che"], tmp), ["check"])

        # rule and sink names come from `check -c CONFIG` wherever a command's --help writes an
        # argument as RULE or SINK; no command of today's binary does, so a wrapper adds one
        # (the names still come from the real binary's check of the real example config)
        fake = os.path.join(tmp, "kmsrouter")
        with open(fake, "w") as f:
            f.write("#!/bin/sh\n"
                    "if [ \"$1\" = describe ]; then\n"
                    "  echo 'usage: kmsrouter describe -c CONFIG [--sink SINK] RULE...'\n"
                    "  echo\n"
                    "  echo '  -c, --config CONFIG  the configuration'\n"
                    "  echo '  --sink SINK          only the deliveries to SINK'\n"
                    "  exit 0\n"
                    "fi\n"
                    f"exec '{binary}' \"$@\"\n")
        os.chmod(fake, 0o755)
        check("sink names from the config",
              complete(script, [fake, "describe", "-c", examples, "--sink", ""], tmp),
              ["page", "audit"])
        check("rule names from the config",
              complete(script, [fake, "describe", "--config", examples, "--sink", "page", "r"],
                       tmp),
              ["rotation-audit"])
        rules = re.findall(r"^rule (\S+) ->", help_of(binary, "check", "-c", examples), re.M)
        check("every rule name", complete(script, [fake, "describe", "-c", examples, ""], tmp),
              rules)
        check("no names without a config",
              complete(script, [fake, "describe", "--sink", ""], tmp), [])
    if failures:
        print(f"{len(failures)} case(s) failed: {', '.join(failures)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
