# Shell shared by the benchmark scripts (sourced, from the repository's root, with $caller_pwd
# the folder the script was started from). Each function takes the script's name for messages.

# Sets kmsrouter to the binary to measure: $KMSROUTER (relative to the caller's folder or the
# root) or build/kmsrouter, as an absolute path.
bench_kmsrouter() {
	if [ -n "${KMSROUTER:-}" ]; then
		kmsrouter=$KMSROUTER
		case $kmsrouter in
		/*) ;;
		*) [ -e "$caller_pwd/$kmsrouter" ] && kmsrouter=$caller_pwd/$kmsrouter ;;
		esac
	else
		kmsrouter=build/kmsrouter
	fi
	case $kmsrouter in /*) ;; *) kmsrouter=$PWD/$kmsrouter ;; esac
}

# Sets python to one that has boto3, with moto_server on PATH: the python3 on PATH, else the
# .venv-aws of scripts/install-deps.sh; exits 2 when there is neither.
bench_aws_python() {
	python=python3
	if ! { command -v moto_server >/dev/null && python3 -c "import boto3" 2>/dev/null; }; then
		if [ -x .venv-aws/bin/moto_server ]; then
			PATH=$PWD/.venv-aws/bin:$PATH
			python=$PWD/.venv-aws/bin/python3
		else
			echo "$1: moto_server and boto3 are needed (pip install 'moto[server]' boto3, or scripts/install-deps.sh)" >&2
			exit 2
		fi
	fi
}

# Sets copy to a copy of $kmsrouter in folder $2: a rebuild while the benchmark runs (minutes)
# then neither swaps the binary nor leaves it half-written between runs; a copy that does not
# run (caught mid-link) is taken again.
bench_copy_binary() {
	mkdir -p "$2"
	copy=$2/kmsrouter
	local try
	for try in 1 2 3 4 5 6 7 8 9 10; do
		cp "$kmsrouter" "$copy.tmp" && mv "$copy.tmp" "$copy" && "$copy" --version >/dev/null 2>&1 && return 0
		[ "$try" = 10 ] && { echo "$1: $kmsrouter does not run" >&2; exit 1; }
		sleep 3
	done
}
