#!/bin/sh
# Builds the Debian package and checks it the way a platform team would meet it:
#   1. copies the source tree (the files git knows, tracked or new, that exist) to a work folder,
#      since dpkg-buildpackage writes its results into the parent folder, and builds it there
#      (dpkg-buildpackage -us -uc -b; DEB_BUILD_OPTIONS=nocheck parallel=2);
#   2. runs lintian on the result and fails on any error (E:); warnings are printed;
#   3. makes a clean Debian 12 root with mmdebstrap (--variant=apt, the host's Debian apt sources)
#      with the built .deb and man-db installed through apt, so its Depends are resolved as
#      on a real machine;
#   4. in that root: `kmsrouter --version`, `kmsrouter check -c /etc/kmsrouter/kmsrouter.json`,
#      `kmsrouter run` without -c (the installed examples), the system user and folders, the
#      files the package must hold, `man kmsrouter.conf` holding every option name
#      `kmsrouter help config` prints, `man kmsrouter` every command, the bash completion;
#      then a purge removes the folders.
# Runs as root (mmdebstrap's root mode, chroot); the root is made on a tmpfs when one can be
# mounted. Downloaded packages are kept in
# $KR_PKG_CACHE (default /var/tmp/kmsrouter-package-check-cache) so later runs download only
# apt's index changes; the build and the root are made in $KR_PKG_WORK (default
# /tmp/kmsrouter-package-check), emptied first. KR_PKG_MIRRORS (one or more mmdebstrap MIRROR
# arguments, space separated) overrides the apt sources; KR_PKG_KEEP_ROOT=1 keeps the root
# (purged of the package) for a look. Exits non-zero on the first failure,
# saying what failed; prints how long each step took.
set -eu
cd "$(dirname "$0")/.."
work=${KR_PKG_WORK:-/tmp/kmsrouter-package-check}
cache=${KR_PKG_CACHE:-/var/tmp/kmsrouter-package-check-cache}
start=$(date +%s)

fail() {
	echo "package-check: FAIL: $*" >&2
	exit 1
}
step() {
	echo "== $* ($(($(date +%s) - start)) s)"
}

[ "$(id -u)" -eq 0 ] || fail "run as root (mmdebstrap's root mode and chroot need it)"
for tool in dpkg-buildpackage dh lintian mmdebstrap fakeroot; do
	command -v "$tool" >/dev/null || fail "$tool is not installed (scripts/install-deps.sh installs it)"
done

version=$(dpkg-parsechangelog -l debian/changelog -S Version)
arch=$(dpkg --print-architecture)
case "$work" in
/ | "") fail "KR_PKG_WORK must be a folder of its own" ;;
esac
# a root left by an interrupted run may still have mmdebstrap's mounts: never delete through
# them; the tmpfs of a kept root (KR_PKG_KEEP_ROOT) is unmounted
if grep -q " $work/root/" /proc/mounts; then
	fail "file systems are still mounted under $work/root; unmount them first"
fi
if grep -q " $work/root " /proc/mounts; then
	umount "$work/root"
fi
rm -rf "$work"
mkdir -p "$work/build/kmsrouter-$version" "$work/root" "$cache/archives" "$cache/lists"
# The root on a tmpfs where one can be mounted: it is some 300 MB of small files, which a busy
# disk is slow to write and to delete. Unmounted at the end (unless kept), also on a failure.
root_tmpfs=""
if mount -t tmpfs -o size=2g,mode=0755 kmsrouter-package-check "$work/root" 2>/dev/null; then
	root_tmpfs=1
fi
cleanup() {
	if [ -n "$root_tmpfs" ] && [ -z "${KR_PKG_KEEP_ROOT:-}" ]; then
		umount "$work/root" 2>/dev/null || true
	fi
}
trap cleanup EXIT

step "copying the source tree to $work/build/kmsrouter-$version"
if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
	# tracked and new files that are not ignored; those deleted in the work tree are skipped
	git ls-files -z --cached --others --exclude-standard |
		tar --null -T - --ignore-failed-read --warning=no-failed-read -cf - |
		tar -xf - -C "$work/build/kmsrouter-$version"
else
	tar --exclude='./build*' --exclude=./.venv-aws --exclude=./.git -cf - . |
		tar -xf - -C "$work/build/kmsrouter-$version"
fi

step "building the package (dpkg-buildpackage -us -uc -b)"
if ! (cd "$work/build/kmsrouter-$version" &&
	DEB_BUILD_OPTIONS="nocheck parallel=2" dpkg-buildpackage -us -uc -b) >"$work/build.log" 2>&1; then
	tail -n 40 "$work/build.log" >&2
	fail "dpkg-buildpackage failed (the whole log: $work/build.log)"
fi
deb=$work/build/kmsrouter_${version}_$arch.deb
changes=$work/build/kmsrouter_${version}_$arch.changes
[ -f "$deb" ] || fail "dpkg-buildpackage made no $deb"
echo "built $deb"

step "lintian"
lintian --fail-on none "$changes" >"$work/lintian.txt" 2>&1 || true
cat "$work/lintian.txt"
if grep -q '^E: ' "$work/lintian.txt"; then
	fail "lintian reports errors (above)"
fi
echo "lintian: no errors, $(grep -c '^W: ' "$work/lintian.txt" || true) warnings"

step "a clean Debian 12 root with the package (mmdebstrap)"
if [ -n "${KR_PKG_MIRRORS:-}" ]; then
	mirrors=$KR_PKG_MIRRORS
elif [ -f /etc/apt/sources.list.d/debian.sources ]; then
	mirrors=/etc/apt/sources.list.d/debian.sources # Debian 12's own file (deb822)
elif grep -qs '^deb ' /etc/apt/sources.list; then
	mirrors=/etc/apt/sources.list
else
	mirrors="http://deb.debian.org/debian"
fi
# shellcheck disable=SC2086,SC2016 # $mirrors: one or more arguments; $1 is the hook's
if ! mmdebstrap --variant=apt --mode=root --skip=essential/unlink \
	--include="$deb" --include=man-db \
	--hook-dir=/usr/share/mmdebstrap/hooks/file-mirror-automount \
	--setup-hook='mkdir -p "$1"/var/cache/apt/archives/ "$1"/var/lib/apt/lists/' \
	--setup-hook="sync-in $cache/archives /var/cache/apt/archives/" \
	--setup-hook="sync-in $cache/lists /var/lib/apt/lists/" \
	--customize-hook="sync-out /var/cache/apt/archives $cache/archives" \
	--customize-hook="sync-out /var/lib/apt/lists $cache/lists" \
	bookworm "$work/root" $mirrors >"$work/mmdebstrap.log" 2>&1; then
	tail -n 40 "$work/mmdebstrap.log" >&2
	fail "mmdebstrap failed (the whole log: $work/mmdebstrap.log)"
fi
rm -f "$cache/archives/lock" "$cache/lists/lock"
rm -rf "$cache/archives/partial" "$cache/lists/partial"

step "checks in the root"
in_root() {
	chroot "$work/root" env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LC_ALL=C HOME=/root \
		MANPAGER=cat PAGER=cat "$@"
}
out=$(in_root kmsrouter --version) || fail "kmsrouter --version: exit status $?"
[ "$out" = "kmsrouter $version" ] || fail "kmsrouter --version says \"$out\", not \"kmsrouter $version\""
echo "$out"

in_root kmsrouter check -c /etc/kmsrouter/kmsrouter.json ||
	fail "kmsrouter check -c /etc/kmsrouter/kmsrouter.json failed"

in_root kmsrouter run >"$work/run.out" 2>"$work/run.err" ||
	fail "kmsrouter run (the installed examples) failed: $(cat "$work/run.err")"
grep -q '"rule":"key-deleted"' "$work/run.out" ||
	fail "kmsrouter run without -c delivered nothing from the installed examples"
grep -q "/usr/share/kmsrouter/examples/kmsrouter.json" "$work/run.err" ||
	fail "kmsrouter run without -c did not use /usr/share/kmsrouter/examples: $(cat "$work/run.err")"

# every shared library the binary names (linked, or loaded with dlopen: libcurl, libmicrohttpd,
# librdkafka, libcrypto) is installed by the package's Depends
sonames=$(grep -aoE 'lib[a-z0-9_+-]+\.so\.[0-9]+' "$work/root/usr/bin/kmsrouter" | sort -u)
in_root ldconfig -p >"$work/ldconfig.txt"
for so in $sonames; do
	grep -q "^[[:space:]]$so " "$work/ldconfig.txt" ||
		fail "$so, which kmsrouter loads, is not installed by the package's dependencies"
done
echo "libraries: $(echo "$sonames" | tr '\n' ' ')"

in_root getent passwd kmsrouter >/dev/null || fail "no system user kmsrouter"
for d in /var/lib/kmsrouter /var/lib/kmsrouter/incoming /var/log/kmsrouter; do
	owner=$(in_root stat -c %U:%G:%a "$d") || fail "$d is missing"
	[ "$owner" = kmsrouter:kmsrouter:750 ] || fail "$d is $owner, not kmsrouter:kmsrouter:750"
done
in_root dpkg -L kmsrouter >"$work/files.txt"
for f in /usr/bin/kmsrouter /lib/systemd/system/kmsrouter.service /etc/logrotate.d/kmsrouter \
	/etc/kmsrouter/kmsrouter.json /usr/share/bash-completion/completions/kmsrouter \
	/usr/share/man/man1/kmsrouter.1.gz /usr/share/man/man5/kmsrouter.conf.5.gz \
	/usr/share/kmsrouter/examples/kmsrouter.json /usr/lib/sysusers.d/kmsrouter.conf; do
	grep -qx "$f" "$work/files.txt" || fail "the package does not install $f"
done
grep -q '^ExecStart=/usr/bin/kmsrouter run -c /etc/kmsrouter/kmsrouter.json$' \
	"$work/root/lib/systemd/system/kmsrouter.service" || fail "the unit does not run /usr/bin/kmsrouter"

in_root kmsrouter help config >"$work/help-config.txt"
in_root man kmsrouter.conf >"$work/man5.txt" 2>"$work/man5.err" || fail "man kmsrouter.conf: $(cat "$work/man5.err")"
[ ! -s "$work/man5.err" ] || fail "man kmsrouter.conf: $(cat "$work/man5.err")"
n=0
# shellcheck disable=SC2013 # option names are single words
for name in $(sed -n 's/^ \{1,\}\([A-Za-z_$][A-Za-z0-9_.$-]*\)  (.*)$/\1/p' "$work/help-config.txt" | sort -u); do
	grep -qF -e "$name" "$work/man5.txt" || fail "man kmsrouter.conf has no option $name"
	n=$((n + 1))
done
[ "$n" -ge 50 ] || fail "only $n option names read from kmsrouter help config"
echo "man kmsrouter.conf: all $n option names of kmsrouter help config"
in_root man kmsrouter >"$work/man1.txt" 2>&1 || fail "man kmsrouter: $(cat "$work/man1.txt")"
for c in $(in_root kmsrouter --help | sed -n '/^commands:$/,/^$/s/^  \([a-z][a-z0-9-]*\)  .*/\1/p'); do
	grep -q "^   $c\$" "$work/man1.txt" || fail "man kmsrouter has no command $c"
done
# shellcheck disable=SC2016 # expanded by the bash in the root
comp=$(in_root bash --norc -c '. /usr/share/bash-completion/completions/kmsrouter &&
	COMP_WORDS=(kmsrouter help config "") COMP_CWORD=3 && _kmsrouter && echo "${COMPREPLY[*]}"')
for t in file log http; do
	case " $comp " in
	*" $t "*) ;;
	*) fail "the bash completion of help config TYPE gives \"$comp\", without $t" ;;
	esac
done
echo "bash completion: help config TYPE gives $comp"

in_root dpkg --purge kmsrouter >"$work/purge.log" 2>&1 || fail "dpkg --purge: $(cat "$work/purge.log")"
for d in /var/lib/kmsrouter /var/log/kmsrouter; do
	[ ! -e "$work/root$d" ] || fail "dpkg --purge left $d"
done

if [ -z "${KR_PKG_KEEP_ROOT:-}" ]; then
	cleanup
	rm -rf "$work/root"
fi
step "package-check: ok: $deb"
