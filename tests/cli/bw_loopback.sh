#!/usr/bin/env bash
# rdmig bw end to end between two processes: --verify compares every byte,
# --json is well-formed, a dead server is a clear error.
# usage: bw_loopback.sh RDMIG BACKEND HOST
set -u
. "$(dirname "$0")/lib.sh"
R=$1 BACKEND=$2 HOST=$3
tmp=$(mktemp -d)
trap 'kill $srv 2>/dev/null; rm -rf "$tmp"' EXIT

# Port 0: the server picks a free port and says which on stderr.
start_server() {
	"$R" bw --listen "$HOST:0" --backend "$BACKEND" --once 2>"$tmp/srv.err" &
	srv=$!
	for _ in $(seq 100); do
		port=$(sed -nE 's/.*listening on .* port ([0-9]+).*/\1/p' "$tmp/srv.err")
		[ -n "$port" ] && return 0
		sleep 0.1
	done
	fail "server did not start: $(cat "$tmp/srv.err")"
	return 1
}

start_server && {
	expect_exit 0 "bw --verify 2 channels" -- "$R" bw "$HOST:$port" --backend "$BACKEND" \
		--size 64K --channels 2 --duration 1 --verify
	expect_out "verify         ok" "destination matches byte for byte"
	expect_out "bandwidth" "report has bandwidth"
	wait $srv || fail "server exit status $?"
}
start_server && {
	expect_exit 0 "bw --json" -- "$R" bw "$HOST:$port" --backend "$BACKEND" --size 4k \
		--duration 1 --json
	for k in backend size channels bytes seconds gbps mib_per_s msg_rate; do
		expect_out "\"$k\":" "json has $k"
	done
	wait $srv || fail "server exit status $?"
}
# Nobody listens on the port the last server used any more.
expect_exit 1 "bw to a dead server" -- "$R" bw "$HOST:$port" --backend "$BACKEND" --duration 1
expect_out "rdmig bw:" "dead server gives a message"
finish
