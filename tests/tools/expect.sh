# expect.sh - sourced by the shell tests: `expect CODE PATTERN COMMAND...`
# runs COMMAND (for at most 20 s) and checks its exit code and that a line of
# its stdout+stderr matches PATTERN (grep). Prints "ok: ..." or "FAIL: ..."
# and counts failures in $fails, which the test sets to 0 first.
expect() {
	want=$1 pattern=$2
	shift 2
	out=$(timeout 20 "$@" 2>&1)
	code=$?
	if [ "$code" -ne "$want" ]; then
		echo "FAIL: $*: exit $code, want $want; output: $out"
		fails=$((fails + 1))
	elif ! printf '%s\n' "$out" | grep -q -- "$pattern"; then
		echo "FAIL: $*: output lacks \"$pattern\": $out"
		fails=$((fails + 1))
	else
		echo "ok: $* -> $code"
	fi
}
