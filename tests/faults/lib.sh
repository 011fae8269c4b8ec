# shellcheck shell=bash disable=SC2154 # R, HOST, BACKEND, tmp: the caller's
# Shared by the shell fault tests (net_faults.sh, handover_cli.sh), sourced
# after tests/cli/lib.sh: a background `rdmig listen` and bounded waits.
# They use R, HOST, BACKEND and tmp from the caller.

# start_listener STDOUT [listen options]: starts it, sets $dst and $port.
start_listener() {
	local out=$1
	shift
	: >"$tmp/dst.err" # a stale port from the last destination must not be read
	"$R" listen "$HOST:0" --backend "$BACKEND" "$@" >"$out" 2>"$tmp/dst.err" &
	dst=$!
	port=""
	for _ in $(seq 300); do
		port=$(sed -nE 's/.*waiting on .* port ([0-9]+).*/\1/p' "$tmp/dst.err")
		[ -n "$port" ] && return 0
		kill -0 $dst 2>/dev/null || break
		sleep 0.1
	done
	fail "destination did not start: $(cat "$tmp/dst.err")"
	return 1
}

# wait_pid PID SECONDS: exit status, or 255 after SIGKILL on timeout.
wait_pid() {
	local end=$(($(date +%s) + $2))
	while kill -0 "$1" 2>/dev/null; do
		if [ "$(date +%s)" -ge "$end" ]; then
			kill -9 "$1" 2>/dev/null
			wait "$1" 2>/dev/null
			return 255
		fi
		sleep 0.05
	done
	wait "$1"
}
