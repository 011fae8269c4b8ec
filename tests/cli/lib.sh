# Shared helpers for the shell tests: fail() with a message, expect_exit.
fails=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }
pass() { echo "ok: $*"; }
# expect_exit CODE DESCRIPTION -- COMMAND...: runs COMMAND, output in $OUT.
expect_exit() {
	local want=$1 what=$2 rc
	shift 3
	OUT=$("$@" 2>&1)
	rc=$?
	if [ "$rc" -eq "$want" ]; then pass "$what (exit $rc)"; else fail "$what: exit $rc, expected $want; output: $OUT"; fi
}
expect_out() { # expect_out SUBSTRING DESCRIPTION
	case "$OUT" in *"$1"*) pass "$2" ;; *) fail "$2: output lacks '$1': $OUT" ;; esac
}
finish() {
	if [ "$fails" -ne 0 ]; then echo "$fails check(s) failed"; exit 1; fi
	echo "all checks passed"
}
